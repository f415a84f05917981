// SPDX-License-Identifier: GPL-2.0-only
/*
 * kpgen_test_stress: threads that call a patchable function without pause,
 * counting which version answered, while the boot tests load, disable,
 * enable and unload patches of it.
 *
 * kpgen_stress_target() answers 0; the test patches make it answer 1 or 2.
 * Reading /proc/kpgen_test_stress calls it once more ("now=") and shows the
 * counts so far; the final counts are logged when the module is removed.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/atomic.h>
#include <linux/delay.h>
#include <linux/kthread.h>
#include <linux/module.h>
#include <linux/proc_fs.h>
#include <linux/sched.h>
#include <linux/seq_file.h>

#define KPGEN_STRESS_THREADS	2
#define KPGEN_STRESS_VERSIONS	3
#define KPGEN_STRESS_BURST	50

static int kpgen_stress_base;
static atomic_long_t kpgen_stress_calls;
static atomic_long_t kpgen_stress_counts[KPGEN_STRESS_VERSIONS];
static atomic_long_t kpgen_stress_bad;
static struct task_struct *kpgen_stress_tasks[KPGEN_STRESS_THREADS];

static noinline int kpgen_stress_target(void)
{
	return READ_ONCE(kpgen_stress_base);
}

static void kpgen_stress_count(int version)
{
	if (version >= 0 && version < KPGEN_STRESS_VERSIONS)
		atomic_long_inc(&kpgen_stress_counts[version]);
	else
		atomic_long_inc(&kpgen_stress_bad);
	atomic_long_inc(&kpgen_stress_calls);
}

/*
 * Bursts of calls with short sleeps between them: under emulation, threads
 * that never sleep would starve the test's own shell on a 2-CPU guest.
 */
static int kpgen_stress_thread(void *data)
{
	int i;

	while (!kthread_should_stop()) {
		for (i = 0; i < KPGEN_STRESS_BURST; i++)
			kpgen_stress_count(kpgen_stress_target());
		usleep_range(2000, 4000);
	}
	return 0;
}

static void kpgen_stress_print(struct seq_file *m)
{
	long calls = atomic_long_read(&kpgen_stress_calls);
	long v0 = atomic_long_read(&kpgen_stress_counts[0]);
	long v1 = atomic_long_read(&kpgen_stress_counts[1]);
	long v2 = atomic_long_read(&kpgen_stress_counts[2]);
	long bad = atomic_long_read(&kpgen_stress_bad);

	if (m)
		seq_printf(m, "calls=%ld v0=%ld v1=%ld v2=%ld bad=%ld now=%d\n",
			   calls, v0, v1, v2, bad, kpgen_stress_target());
	else
		pr_info("calls=%ld v0=%ld v1=%ld v2=%ld bad=%ld\n",
			calls, v0, v1, v2, bad);
}

static int kpgen_stress_show(struct seq_file *m, void *v)
{
	kpgen_stress_print(m);
	return 0;
}

static void kpgen_stress_stop(void)
{
	int i;

	for (i = 0; i < KPGEN_STRESS_THREADS; i++) {
		if (kpgen_stress_tasks[i])
			kthread_stop(kpgen_stress_tasks[i]);
		kpgen_stress_tasks[i] = NULL;
	}
}

static int __init kpgen_stress_init(void)
{
	int i;

	for (i = 0; i < KPGEN_STRESS_THREADS; i++) {
		kpgen_stress_tasks[i] = kthread_run(kpgen_stress_thread, NULL,
						    "kpgen_stress/%d", i);
		if (IS_ERR(kpgen_stress_tasks[i])) {
			int ret = PTR_ERR(kpgen_stress_tasks[i]);

			kpgen_stress_tasks[i] = NULL;
			kpgen_stress_stop();
			return ret;
		}
	}
	if (!proc_create_single("kpgen_test_stress", 0400, NULL,
				kpgen_stress_show)) {
		kpgen_stress_stop();
		return -ENOMEM;
	}
	return 0;
}

static void __exit kpgen_stress_exit(void)
{
	remove_proc_entry("kpgen_test_stress", NULL);
	kpgen_stress_stop();
	kpgen_stress_print(NULL);
}

module_init(kpgen_stress_init);
module_exit(kpgen_stress_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Callers of a patchable function for kpgen's stress test");
