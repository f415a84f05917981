// SPDX-License-Identifier: GPL-2.0-only
/*
 * kpgen_test_idle: a kthread that injects idle time, as intel_powerclamp and
 * the idle injection framework do.
 *
 * Writing "start" to /proc/kpgen_test_idle starts a SCHED_FIFO kthread bound
 * to CPU 1 ("kpgen_idle/1"), which calls kpgen_test_idle_step() in a loop;
 * "stop" stops it once its current step is over.  The step runs
 * play_idle_precise() for idle_ms, then sleeps gap_ms, so that the CPU's own
 * kthreads and work items run.  A FIFO task that idles is still an RT task
 * running: half of the time, even with a late timer in an emulated guest,
 * keeps it far below RT throttling's 95%.  While it
 * idles, the kthread carries PF_IDLE: is_idle_task() is true of it although
 * it is not the CPU's idle task, and tasks-RCU does not wait for it.  It is
 * inside the step all the time but between two steps.  Reading the file
 * shows "step=S steps=N": S is what the last step returned (1 from the
 * original), N how many steps ran.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/cpu.h>
#include <linux/delay.h>
#include <linux/err.h>
#include <linux/kthread.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/proc_fs.h>
#include <linux/sched.h>
#include <linux/seq_file.h>
#include <linux/string.h>
#include <linux/time64.h>
#include <linux/uaccess.h>

static unsigned int idle_ms = 250;
module_param(idle_ms, uint, 0644);
MODULE_PARM_DESC(idle_ms, "idle time injected by each step (ms)");

static unsigned int gap_ms = 250;
module_param(gap_ms, uint, 0644);
MODULE_PARM_DESC(gap_ms, "sleep after the idle time of each step (ms)");

static DEFINE_MUTEX(kpgen_test_idle_lock);
static struct task_struct *kpgen_test_idle_task;
static int kpgen_test_idle_last;
static unsigned long kpgen_test_idle_steps;

static noinline int kpgen_test_idle_step(void)
{
	play_idle_precise((u64)READ_ONCE(idle_ms) * NSEC_PER_MSEC, U64_MAX);
	msleep(READ_ONCE(gap_ms));
	return 1;
}

static int kpgen_test_idle_fn(void *data)
{
	while (!kthread_should_stop()) {
		WRITE_ONCE(kpgen_test_idle_last, kpgen_test_idle_step());
		WRITE_ONCE(kpgen_test_idle_steps, kpgen_test_idle_steps + 1);
	}
	return 0;
}

static int kpgen_test_idle_start(void)
{
	struct task_struct *task;

	if (kpgen_test_idle_task)
		return -EBUSY;
	if (!cpu_online(1))
		return -ENODEV;
	task = kthread_create_on_cpu(kpgen_test_idle_fn, NULL, 1,
				     "kpgen_idle/%u");
	if (IS_ERR(task))
		return PTR_ERR(task);
	sched_set_fifo(task);
	kpgen_test_idle_task = task;
	wake_up_process(task);
	return 0;
}

static void kpgen_test_idle_stop(void)
{
	if (!kpgen_test_idle_task)
		return;
	kthread_stop(kpgen_test_idle_task);
	kpgen_test_idle_task = NULL;
}

static int kpgen_test_idle_show(struct seq_file *m, void *v)
{
	seq_printf(m, "step=%d steps=%lu\n", READ_ONCE(kpgen_test_idle_last),
		   READ_ONCE(kpgen_test_idle_steps));
	return 0;
}

static int kpgen_test_idle_open(struct inode *inode, struct file *file)
{
	return single_open(file, kpgen_test_idle_show, NULL);
}

static ssize_t kpgen_test_idle_write(struct file *file,
				     const char __user *ubuf, size_t count,
				     loff_t *ppos)
{
	char buf[8];
	size_t len = min(count, sizeof(buf) - 1);
	int ret = 0;

	if (copy_from_user(buf, ubuf, len))
		return -EFAULT;
	buf[len] = '\0';

	mutex_lock(&kpgen_test_idle_lock);
	if (sysfs_streq(buf, "start"))
		ret = kpgen_test_idle_start();
	else if (sysfs_streq(buf, "stop"))
		kpgen_test_idle_stop();
	else
		ret = -EINVAL;
	mutex_unlock(&kpgen_test_idle_lock);
	return ret ? ret : count;
}

static const struct proc_ops kpgen_test_idle_proc_ops = {
	.proc_open = kpgen_test_idle_open,
	.proc_read = seq_read,
	.proc_lseek = seq_lseek,
	.proc_release = single_release,
	.proc_write = kpgen_test_idle_write,
};

static int __init kpgen_test_idle_init(void)
{
	if (!proc_create("kpgen_test_idle", 0600, NULL, &kpgen_test_idle_proc_ops))
		return -ENOMEM;
	return 0;
}

static void __exit kpgen_test_idle_exit(void)
{
	remove_proc_entry("kpgen_test_idle", NULL);
	kpgen_test_idle_stop();
}

module_init(kpgen_test_idle_init);
module_exit(kpgen_test_idle_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("An idle-injecting kthread whose step kpgen's boot tests patch");
