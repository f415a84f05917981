// SPDX-License-Identifier: GPL-2.0-only
/*
 * A replacement of pipe_read() (fs/pipe.c) that behaves as the original and
 * counts its calls in the parameter "calls".  The same C serves the livepatch
 * backend (test_lp_pipe), which can switch it while tasks sleep in pipe_read(),
 * and the kpatch backend (test_pipe_kpatch), which must refuse to.
 */
#include <linux/fs.h>
#include <linux/moduleparam.h>
#include <linux/pipe_fs_i.h>
#include <linux/poll.h>
#include <linux/sched/signal.h>
#include <linux/uio.h>
#include <linux/wait.h>
#include <linux/watch_queue.h>

static unsigned long calls;
module_param(calls, ulong, 0444);
MODULE_PARM_DESC(calls, "calls of the replacement pipe_read()");

/* As fs/pipe.c's: data to read, or no writer left. */
static inline bool test_pipe_readable(const struct pipe_inode_info *pipe)
{
	unsigned int head = READ_ONCE(pipe->head);
	unsigned int tail = READ_ONCE(pipe->tail);
	unsigned int writers = READ_ONCE(pipe->writers);

	return !pipe_empty(head, tail) || !writers;
}

/* Consumes an emptied buffer (the spinlock also serves watch queues). */
static unsigned int test_pipe_update_tail(struct pipe_inode_info *pipe,
					  struct pipe_buffer *buf,
					  unsigned int tail)
{
	pipe_buf_release(pipe, buf);
	spin_lock_irq(&pipe->rd_wait.lock);
#ifdef CONFIG_WATCH_QUEUE
	if (buf->flags & PIPE_BUF_FLAG_LOSS)
		pipe->note_loss = true;
#endif
	pipe->tail = ++tail;
	spin_unlock_irq(&pipe->rd_wait.lock);
	return tail;
}

#ifdef CONFIG_WATCH_QUEUE
/* A watch queue's loss notification: 0, or the error that ends the read. */
static ssize_t test_pipe_note_loss(struct pipe_inode_info *pipe,
				   struct iov_iter *to, size_t *total_len,
				   ssize_t *ret)
{
	struct watch_notification n;

	if (*total_len < 8)
		return -ENOBUFS;
	n.type = WATCH_TYPE_META;
	n.subtype = WATCH_META_LOSS_NOTIFICATION;
	n.info = watch_sizeof(n);
	if (copy_to_iter(&n, sizeof(n), to) != sizeof(n))
		return -EFAULT;
	*ret += sizeof(n);
	*total_len -= sizeof(n);
	pipe->note_loss = false;
	return 0;
}
#endif

static ssize_t test_pipe_read(struct kiocb *iocb, struct iov_iter *to)
{
	size_t total_len = iov_iter_count(to);
	struct file *filp = iocb->ki_filp;
	struct pipe_inode_info *pipe = filp->private_data;
	bool was_full, wake_next_reader = false;
	ssize_t ret;

	WRITE_ONCE(calls, READ_ONCE(calls) + 1);
	if (unlikely(total_len == 0))
		return 0;

	ret = 0;
	mutex_lock(&pipe->mutex);
	was_full = pipe_full(pipe->head, pipe->tail, pipe->max_usage);
	for (;;) {
		/* pairs with the writer's store of head, as in fs/pipe.c */
		unsigned int head = smp_load_acquire(&pipe->head);
		unsigned int tail = pipe->tail;
		unsigned int mask = pipe->ring_size - 1;

#ifdef CONFIG_WATCH_QUEUE
		if (pipe->note_loss) {
			ssize_t err = test_pipe_note_loss(pipe, to, &total_len, &ret);

			if (err) {
				if (ret == 0)
					ret = err;
				break;
			}
		}
#endif
		if (!pipe_empty(head, tail)) {
			struct pipe_buffer *buf = &pipe->bufs[tail & mask];
			size_t chars = buf->len;
			size_t written;
			int error;

			if (chars > total_len) {
				if (buf->flags & PIPE_BUF_FLAG_WHOLE) {
					if (ret == 0)
						ret = -ENOBUFS;
					break;
				}
				chars = total_len;
			}
			error = pipe_buf_confirm(pipe, buf);
			if (error) {
				if (!ret)
					ret = error;
				break;
			}
			written = copy_page_to_iter(buf->page, buf->offset, chars, to);
			if (unlikely(written < chars)) {
				if (!ret)
					ret = -EFAULT;
				break;
			}
			ret += chars;
			buf->offset += chars;
			buf->len -= chars;
			if (buf->flags & PIPE_BUF_FLAG_PACKET) {
				total_len = chars;
				buf->len = 0;
			}
			if (!buf->len)
				tail = test_pipe_update_tail(pipe, buf, tail);
			total_len -= chars;
			if (!total_len)
				break;	/* the read is done */
			if (!pipe_empty(head, tail))
				continue;
		}
		if (!pipe->writers)
			break;
		if (ret)
			break;
		if ((filp->f_flags & O_NONBLOCK) || (iocb->ki_flags & IOCB_NOWAIT)) {
			ret = -EAGAIN;
			break;
		}
		mutex_unlock(&pipe->mutex);

		if (unlikely(was_full))
			wake_up_interruptible_sync_poll(&pipe->wr_wait, EPOLLOUT | EPOLLWRNORM);
		kill_fasync(&pipe->fasync_writers, SIGIO, POLL_OUT);

		if (wait_event_interruptible_exclusive(pipe->rd_wait, test_pipe_readable(pipe)) < 0)
			return -ERESTARTSYS;

		mutex_lock(&pipe->mutex);
		was_full = pipe_full(pipe->head, pipe->tail, pipe->max_usage);
		wake_next_reader = true;
	}
	if (pipe_empty(pipe->head, pipe->tail))
		wake_next_reader = false;
	mutex_unlock(&pipe->mutex);

	if (was_full)
		wake_up_interruptible_sync_poll(&pipe->wr_wait, EPOLLOUT | EPOLLWRNORM);
	if (wake_next_reader)
		wake_up_interruptible_sync_poll(&pipe->rd_wait, EPOLLIN | EPOLLRDNORM);
	kill_fasync(&pipe->fasync_writers, SIGIO, POLL_OUT);
	if (ret > 0)
		file_accessed(filp);
	return ret;
}
