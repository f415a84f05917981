// SPDX-License-Identifier: GPL-2.0-only
/*
 * kpgen_test_target: a module whose functions the boot tests patch.
 *
 * /proc/kpgen_test_target accepts three commands:
 *   "sleep"  the writer sleeps inside kpgen_test_target_sleep() until woken;
 *            the function's return value is stored as "last"
 *   "cold"   the writer sleeps in the part gcc split off
 *            kpgen_test_target_cold() (kpgen_test_target_cold.cold) until
 *            woken; its return value, 5, is stored as "last"
 *   "wake"   wakes every sleeper
 * Reading it shows "last=L value=V dup=D1,D2 notrace=N cold=C": L is 1 from
 * the original sleep function, V is 1 from kpgen_test_target_value(), D1, D2
 * are 10 and 20 from the two functions named kpgen_test_dup() (in this file
 * and in target_dup.c: kallsyms positions 1 and 2), N is 100 and C is 1 from
 * kpgen_test_target_cold()'s hot path.
 *
 * Loaded with init_sleeper=1, its init starts a kthread ("kpgen_sleeper")
 * that sleeps in kpgen_test_target_sleep() until the first "wake"; with
 * init_ms=MS, its init then waits MS milliseconds before the module goes
 * live, so that the kpatch core can load meanwhile without seeing it come.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/completion.h>
#include <linux/delay.h>
#include <linux/err.h>
#include <linux/kthread.h>
#include <linux/module.h>
#include <linux/proc_fs.h>
#include <linux/seq_file.h>
#include <linux/string.h>
#include <linux/uaccess.h>
#include <linux/wait.h>

#include "target.h"

static bool init_sleeper;
module_param(init_sleeper, bool, 0444);
MODULE_PARM_DESC(init_sleeper, "start a kthread sleeping in kpgen_test_target_sleep() at load");

static unsigned int init_ms;
module_param(init_ms, uint, 0444);
MODULE_PARM_DESC(init_ms, "how long the module's init waits before it goes live (ms)");

static DECLARE_WAIT_QUEUE_HEAD(kpgen_test_wq);
static DECLARE_COMPLETION(kpgen_test_sleeper_done);
static unsigned long kpgen_test_wake_seq;
static int kpgen_test_last;
static int kpgen_test_base = 1;

/* Reading a variable keeps the compiler from folding the result into callers. */
static noinline int kpgen_test_target_value(void)
{
	return READ_ONCE(kpgen_test_base);
}

static noinline int kpgen_test_dup(void)
{
	return READ_ONCE(kpgen_test_base) * 10;
}

/* ftrace cannot hook this one: patching it must fail cleanly. */
static notrace noinline int kpgen_test_notrace(void)
{
	return READ_ONCE(kpgen_test_base) * 100;
}

/* Sleeps until the next "wake"; a task in here makes patching it unsafe. */
static noinline int kpgen_test_target_sleep(void)
{
	unsigned long seq = READ_ONCE(kpgen_test_wake_seq);

	if (wait_event_interruptible(kpgen_test_wq,
				     READ_ONCE(kpgen_test_wake_seq) != seq))
		return -EINTR;
	return 1;
}

static void kpgen_test_wake_all(void)
{
	WRITE_ONCE(kpgen_test_wake_seq, kpgen_test_wake_seq + 1);
	wake_up_all(&kpgen_test_wq);
}

static noinline __cold void kpgen_test_cold_note(void)
{
	pr_info("a task sleeps in the cold part of kpgen_test_target_cold()\n");
}

/*
 * The unlikely branch calls a __cold function, so gcc moves it, the sleep
 * included, to kpgen_test_target_cold.cold: a task sleeping there has no
 * return address inside kpgen_test_target_cold() itself.
 */
static noinline int kpgen_test_target_cold(int cmd)
{
	unsigned long seq;

	if (unlikely(cmd == 42)) {
		kpgen_test_cold_note();
		seq = READ_ONCE(kpgen_test_wake_seq);
		if (wait_event_interruptible(kpgen_test_wq,
					     READ_ONCE(kpgen_test_wake_seq) != seq))
			return -EINTR;
		return 5;
	}
	return READ_ONCE(kpgen_test_base);
}

static int kpgen_test_show(struct seq_file *m, void *v)
{
	seq_printf(m, "last=%d value=%d dup=%d,%d notrace=%d cold=%d\n",
		   READ_ONCE(kpgen_test_last), kpgen_test_target_value(),
		   kpgen_test_dup(), kpgen_test_dup2(), kpgen_test_notrace(),
		   kpgen_test_target_cold(0));
	return 0;
}

static int kpgen_test_open(struct inode *inode, struct file *file)
{
	return single_open(file, kpgen_test_show, NULL);
}

static ssize_t kpgen_test_write(struct file *file, const char __user *ubuf,
				size_t count, loff_t *ppos)
{
	char buf[8];
	size_t len = min(count, sizeof(buf) - 1);

	if (copy_from_user(buf, ubuf, len))
		return -EFAULT;
	buf[len] = '\0';

	if (sysfs_streq(buf, "sleep"))
		WRITE_ONCE(kpgen_test_last, kpgen_test_target_sleep());
	else if (sysfs_streq(buf, "cold"))
		WRITE_ONCE(kpgen_test_last, kpgen_test_target_cold(42));
	else if (sysfs_streq(buf, "wake"))
		kpgen_test_wake_all();
	else
		return -EINVAL;
	return count;
}

/* The kthread of init_sleeper: one sleep, then it exits without returning here. */
static int kpgen_test_sleeper(void *data)
{
	WRITE_ONCE(kpgen_test_last, kpgen_test_target_sleep());
	kthread_complete_and_exit(&kpgen_test_sleeper_done, 0);
}

static const struct proc_ops kpgen_test_proc_ops = {
	.proc_open = kpgen_test_open,
	.proc_read = seq_read,
	.proc_lseek = seq_lseek,
	.proc_release = single_release,
	.proc_write = kpgen_test_write,
};

static int __init kpgen_test_init(void)
{
	struct task_struct *task;

	if (!proc_create("kpgen_test_target", 0600, NULL, &kpgen_test_proc_ops))
		return -ENOMEM;
	if (init_sleeper) {
		task = kthread_run(kpgen_test_sleeper, NULL, "kpgen_sleeper");
		if (IS_ERR(task)) {
			remove_proc_entry("kpgen_test_target", NULL);
			return PTR_ERR(task);
		}
	}
	msleep(init_ms);
	return 0;
}

static void __exit kpgen_test_exit(void)
{
	remove_proc_entry("kpgen_test_target", NULL);
	if (init_sleeper) {
		kpgen_test_wake_all();
		wait_for_completion(&kpgen_test_sleeper_done);
	}
}

module_init(kpgen_test_init);
module_exit(kpgen_test_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Target functions for kpgen's boot tests");
