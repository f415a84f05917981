// SPDX-License-Identifier: GPL-2.0-only
/*
 * kpgen_bench: measures what a call of a patched kernel function costs.
 *
 * The target is jiffies_to_msecs(): exported, cheap, free of side effects
 * and hooked by ftrace.  It is called through a function pointer read anew at
 * each call (a volatile access), in chunks interleaved with chunks of an
 * identical function of this module (the stub), so that emulator noise hits
 * both alike: the difference per call is the price of whatever hooks the
 * target.
 *
 * The module also holds KPGEN_BENCH_FUNCS functions (funcs.c, written by
 * kpgen bench) for patches that apply many functions at once, and an empty
 * ftrace callback (the floor of every ftrace-based redirect) that can be
 * hooked onto the target on demand.
 *
 * /proc/kpgen_bench accepts:
 *   "run REPS CALLS"  REPS repetitions of one chunk of CALLS target calls
 *                     and one of CALLS stub calls, in alternating order
 *   "ftrace 1|0"      hook or unhook the empty callback on the target
 * Reading it shows the last run, one line per repetition: "TARGET STUB",
 * the nanoseconds each chunk took.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/ftrace.h>
#include <linux/jiffies.h>
#include <linux/ktime.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/proc_fs.h>
#include <linux/sched.h>
#include <linux/seq_file.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "kpgen_bench.h"

#if MSEC_PER_SEC % HZ
#error "the stub copies jiffies_to_msecs() for HZ dividing 1000 only"
#endif

#define KPGEN_BENCH_MAX_REPS	10000
#define KPGEN_BENCH_MAX_CALLS	1000000

typedef unsigned int (*kpgen_bench_fn)(const unsigned long j);

/* The same work as jiffies_to_msecs() on this kernel's HZ. */
static noinline unsigned int kpgen_bench_stub(const unsigned long j)
{
	return (MSEC_PER_SEC / HZ) * j;
}

/* Read with READ_ONCE() at each call: the compiler can neither inline nor hoist. */
static kpgen_bench_fn kpgen_bench_target_ptr = jiffies_to_msecs;
static kpgen_bench_fn kpgen_bench_stub_ptr = kpgen_bench_stub;
static unsigned long kpgen_bench_sink;

static DEFINE_MUTEX(kpgen_bench_mutex);
static u64 *kpgen_bench_results;
static unsigned int kpgen_bench_reps;

/* The empty ftrace callback ------------------------------------------------ */

static void notrace kpgen_bench_empty(unsigned long ip, unsigned long parent_ip,
				      struct ftrace_ops *op,
				      struct ftrace_regs *fregs)
{
}

static struct ftrace_ops kpgen_bench_ops = {
	.func = kpgen_bench_empty,
};

static bool kpgen_bench_hooked;

static int kpgen_bench_hook(bool on)
{
	int ret;

	if (on == kpgen_bench_hooked)
		return 0;
	if (!on) {
		ret = unregister_ftrace_function(&kpgen_bench_ops);
		if (ret)
			return ret;
		kpgen_bench_hooked = false;
		return ftrace_set_filter(&kpgen_bench_ops, NULL, 0, 1);
	}
	ret = ftrace_set_filter(&kpgen_bench_ops, "jiffies_to_msecs",
				strlen("jiffies_to_msecs"), 1);
	if (ret)
		return ret;
	ret = register_ftrace_function(&kpgen_bench_ops);
	if (ret) {
		ftrace_set_filter(&kpgen_bench_ops, NULL, 0, 1);
		return ret;
	}
	kpgen_bench_hooked = true;
	return 0;
}

/* Measuring ---------------------------------------------------------------- */

static u64 kpgen_bench_chunk(kpgen_bench_fn *fn, unsigned int calls)
{
	unsigned long sink = 0;
	unsigned int i;
	u64 start, end;

	preempt_disable();
	start = ktime_get_ns();
	for (i = 0; i < calls; i++)
		sink += READ_ONCE(*fn)(i);
	end = ktime_get_ns();
	preempt_enable();
	WRITE_ONCE(kpgen_bench_sink, sink);
	return end - start;
}

static int kpgen_bench_run(unsigned int reps, unsigned int calls)
{
	u64 *results;
	unsigned int r;

	if (!reps || reps > KPGEN_BENCH_MAX_REPS || !calls ||
	    calls > KPGEN_BENCH_MAX_CALLS)
		return -EINVAL;
	results = kcalloc(2 * reps, sizeof(*results), GFP_KERNEL);
	if (!results)
		return -ENOMEM;
	for (r = 0; r < reps; r++) {
		if (r % 2) {
			results[2 * r + 1] = kpgen_bench_chunk(&kpgen_bench_stub_ptr, calls);
			results[2 * r] = kpgen_bench_chunk(&kpgen_bench_target_ptr, calls);
		} else {
			results[2 * r] = kpgen_bench_chunk(&kpgen_bench_target_ptr, calls);
			results[2 * r + 1] = kpgen_bench_chunk(&kpgen_bench_stub_ptr, calls);
		}
		cond_resched();
	}
	kfree(kpgen_bench_results);
	kpgen_bench_results = results;
	kpgen_bench_reps = reps;
	return 0;
}

static int kpgen_bench_show(struct seq_file *m, void *v)
{
	unsigned int r;

	mutex_lock(&kpgen_bench_mutex);
	for (r = 0; r < kpgen_bench_reps; r++)
		seq_printf(m, "%llu %llu\n", kpgen_bench_results[2 * r],
			   kpgen_bench_results[2 * r + 1]);
	mutex_unlock(&kpgen_bench_mutex);
	return 0;
}

static int kpgen_bench_open(struct inode *inode, struct file *file)
{
	return single_open_size(file, kpgen_bench_show, NULL,
				kpgen_bench_reps * 48 + 64);
}

static ssize_t kpgen_bench_write(struct file *file, const char __user *ubuf,
				 size_t count, loff_t *ppos)
{
	unsigned int reps, calls, on;
	char buf[32];
	size_t len = min(count, sizeof(buf) - 1);
	int ret;

	if (copy_from_user(buf, ubuf, len))
		return -EFAULT;
	buf[len] = '\0';

	mutex_lock(&kpgen_bench_mutex);
	if (sscanf(buf, "run %u %u", &reps, &calls) == 2)
		ret = kpgen_bench_run(reps, calls);
	else if (sscanf(buf, "ftrace %u", &on) == 1 && on <= 1)
		ret = kpgen_bench_hook(on);
	else
		ret = -EINVAL;
	mutex_unlock(&kpgen_bench_mutex);
	return ret ? ret : count;
}

static const struct proc_ops kpgen_bench_proc_ops = {
	.proc_open = kpgen_bench_open,
	.proc_read = seq_read,
	.proc_lseek = seq_lseek,
	.proc_release = single_release,
	.proc_write = kpgen_bench_write,
};

static int __init kpgen_bench_init(void)
{
	if (!proc_create("kpgen_bench", 0600, NULL, &kpgen_bench_proc_ops))
		return -ENOMEM;
	return 0;
}

static void __exit kpgen_bench_exit(void)
{
	remove_proc_entry("kpgen_bench", NULL);
	kpgen_bench_hook(false);
	kfree(kpgen_bench_results);
}

module_init(kpgen_bench_init);
module_exit(kpgen_bench_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Per-call cost of patched functions, for kpgen's benchmarks");
