// SPDX-License-Identifier: GPL-2.0-only
/*
 * kpgen_bench: measures what a call of a patched function costs.
 *
 * The module holds identical small functions, the targets, each hooked in
 * its own way by the benchmark (one unpatched, one patched by one kpgen
 * patch, one by 2 and one by 10 stacked kpgen patches, one by a kpgen patch
 * hooked with an ftrace direct call, one by a
 * hand-written upstream livepatch, one by a patch kpgen's livepatch backend
 * made; and those the module hooks itself, pieces.c: an empty ftrace
 * callback and the pieces of a handler), and the stub: one more copy, never
 * hooked, the baseline.  Each is called through a function pointer read anew
 * at each call (a volatile access).
 *
 * A run is made of rounds.  Each round times one chunk of CALLS calls of the
 * stub and of every target in one order and then again in the reverse order
 * (A B C ... C B A), so that a drift of the emulator's speed hits every case
 * alike, and the host divides each case by the stub of the same round.  Each
 * chunk runs with interrupts off (the caller keeps CALLS small enough for a
 * chunk to stay far below a millisecond); interrupts are on between chunks,
 * and the task may be rescheduled between rounds.
 *
 * The functions the patches of many functions hook are in a module of their
 * own, kpgen_bench_funcs: applying those patches rewrites none of this
 * module's pages.
 *
 * /proc/kpgen_bench accepts:
 *   "run ROUNDS CALLS"  a run of ROUNDS rounds, CALLS calls per chunk
 *   "ftrace 1|0"        hook or unhook the callbacks of pieces.c
 * Reading it shows the last run: a "#" line naming the cases, then one line
 * per round, the nanoseconds of each case's two chunks added up.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/irqflags.h>
#include <linux/jiffies.h>
#include <linux/kernel.h>
#include <linux/ktime.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/proc_fs.h>
#include <linux/sched.h>
#include <linux/seq_file.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "kpgen_bench.h"

#define KPGEN_BENCH_MAX_ROUNDS	20000
/* with interrupts off: a chunk of this many calls stays well below 1 ms */
#define KPGEN_BENCH_MAX_CALLS	5000

/*
 * The stub and the targets: the same work, distinct functions (noinline, and
 * each address taken), each traceable so that ftrace can hook it.
 */
/* a distinct constant each: no two bodies alike for the compiler to merge */
static noinline unsigned int kpgen_bench_stub(const unsigned long j)
{
	return (MSEC_PER_SEC / HZ) * j + 1;
}

static noinline unsigned int kpgen_bench_plain(const unsigned long j)
{
	return (MSEC_PER_SEC / HZ) * j + 2;
}

static noinline unsigned int kpgen_bench_kpgen_1(const unsigned long j)
{
	return (MSEC_PER_SEC / HZ) * j + 4;
}

static noinline unsigned int kpgen_bench_kpgen_2(const unsigned long j)
{
	return (MSEC_PER_SEC / HZ) * j + 5;
}

static noinline unsigned int kpgen_bench_kpgen_10(const unsigned long j)
{
	return (MSEC_PER_SEC / HZ) * j + 6;
}

static noinline unsigned int kpgen_bench_kpgen_direct(const unsigned long j)
{
	return (MSEC_PER_SEC / HZ) * j + 9;
}

static noinline unsigned int kpgen_bench_livepatch(const unsigned long j)
{
	return (MSEC_PER_SEC / HZ) * j + 7;
}

static noinline unsigned int kpgen_bench_lp_backend(const unsigned long j)
{
	return (MSEC_PER_SEC / HZ) * j + 8;
}

/* In the order of the "#" line; the stub first. */
static const char *const kpgen_bench_names[] = {
	"stub", "unpatched", "ftrace_empty", "preempt", "guard", "guard_nmi",
	"redirect",
	"hash", "slot", "klp", "kpgen_1", "kpgen_2", "kpgen_10", "kpgen_direct",
	"livepatch", "lp_backend",
};

/* Read with READ_ONCE() at each call: the compiler can neither inline nor hoist. */
static kpgen_bench_fn kpgen_bench_ptrs[] = {
	kpgen_bench_stub, kpgen_bench_plain, kpgen_bench_ftrace,
	kpgen_bench_preempt, kpgen_bench_guard, kpgen_bench_guard_nmi,
	kpgen_bench_redirect,
	kpgen_bench_hash, kpgen_bench_slot, kpgen_bench_klp,
	kpgen_bench_kpgen_1, kpgen_bench_kpgen_2, kpgen_bench_kpgen_10,
	kpgen_bench_kpgen_direct, kpgen_bench_livepatch, kpgen_bench_lp_backend,
};

#define KPGEN_BENCH_CASES	ARRAY_SIZE(kpgen_bench_ptrs)

static unsigned long kpgen_bench_sink;

static DEFINE_MUTEX(kpgen_bench_mutex);
static u64 *kpgen_bench_results;
static unsigned int kpgen_bench_rounds;

/* Measuring ---------------------------------------------------------------- */

static u64 kpgen_bench_chunk(kpgen_bench_fn *fn, unsigned int calls)
{
	unsigned long sink = 0, flags;
	unsigned int i;
	u64 start, end;

	local_irq_save(flags);
	start = ktime_get_ns();
	for (i = 0; i < calls; i++)
		sink += READ_ONCE(*fn)(i);
	end = ktime_get_ns();
	local_irq_restore(flags);
	WRITE_ONCE(kpgen_bench_sink, sink);
	return end - start;
}

static int kpgen_bench_run(unsigned int rounds, unsigned int calls)
{
	unsigned int r, c;
	u64 *results, *row;

	if (!rounds || rounds > KPGEN_BENCH_MAX_ROUNDS || !calls ||
	    calls > KPGEN_BENCH_MAX_CALLS)
		return -EINVAL;
	results = kvcalloc(rounds * KPGEN_BENCH_CASES, sizeof(*results),
			   GFP_KERNEL);
	if (!results)
		return -ENOMEM;
	for (r = 0; r < rounds; r++) {
		row = &results[r * KPGEN_BENCH_CASES];
		for (c = 0; c < KPGEN_BENCH_CASES; c++)
			row[c] += kpgen_bench_chunk(&kpgen_bench_ptrs[c], calls);
		for (c = KPGEN_BENCH_CASES; c-- > 0; )
			row[c] += kpgen_bench_chunk(&kpgen_bench_ptrs[c], calls);
		cond_resched();
		if (fatal_signal_pending(current)) {
			kvfree(results);
			return -EINTR;
		}
	}
	kvfree(kpgen_bench_results);
	kpgen_bench_results = results;
	kpgen_bench_rounds = rounds;
	return 0;
}

static int kpgen_bench_show(struct seq_file *m, void *v)
{
	unsigned int r, c;

	mutex_lock(&kpgen_bench_mutex);
	if (kpgen_bench_rounds) {
		seq_puts(m, "#");
		for (c = 0; c < KPGEN_BENCH_CASES; c++)
			seq_printf(m, " %s", kpgen_bench_names[c]);
		seq_putc(m, '\n');
	}
	for (r = 0; r < kpgen_bench_rounds; r++) {
		for (c = 0; c < KPGEN_BENCH_CASES; c++)
			seq_printf(m, "%s%llu", c ? " " : "",
				   kpgen_bench_results[r * KPGEN_BENCH_CASES + c]);
		seq_putc(m, '\n');
	}
	mutex_unlock(&kpgen_bench_mutex);
	return 0;
}

static int kpgen_bench_open(struct inode *inode, struct file *file)
{
	return single_open_size(file, kpgen_bench_show, NULL,
				kpgen_bench_rounds * KPGEN_BENCH_CASES * 21 + 128);
}

static ssize_t kpgen_bench_write(struct file *file, const char __user *ubuf,
				 size_t count, loff_t *ppos)
{
	unsigned int rounds, calls, on;
	char buf[32];
	size_t len = min(count, sizeof(buf) - 1);
	int ret;

	if (copy_from_user(buf, ubuf, len))
		return -EFAULT;
	buf[len] = '\0';

	mutex_lock(&kpgen_bench_mutex);
	if (sscanf(buf, "run %u %u", &rounds, &calls) == 2)
		ret = kpgen_bench_run(rounds, calls);
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
	kvfree(kpgen_bench_results);
}

module_init(kpgen_bench_init);
module_exit(kpgen_bench_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Per-call cost of patched functions, for kpgen's benchmarks");
