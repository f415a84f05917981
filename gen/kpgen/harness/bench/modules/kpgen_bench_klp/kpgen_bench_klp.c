// SPDX-License-Identifier: GPL-2.0-only
/*
 * kpgen_bench_klp: an upstream livepatch of kpgen_bench_livepatch(), one of
 * the bench module's targets, for a side-by-side comparison with the targets
 * kpgen patches.  The replacement does the same work as the original.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/jiffies.h>
#include <linux/kernel.h>
#include <linux/livepatch.h>
#include <linux/module.h>

static unsigned int kpgen_bench_klp_msecs(const unsigned long j)
{
	return (MSEC_PER_SEC / HZ) * j + 7;
}

static struct klp_func kpgen_bench_klp_funcs[] = {
	{
		.old_name = "kpgen_bench_livepatch",
		.new_func = kpgen_bench_klp_msecs,
	},
	{ }
};

static struct klp_object kpgen_bench_klp_objs[] = {
	{
		.name = "kpgen_bench",
		.funcs = kpgen_bench_klp_funcs,
	},
	{ }
};

static struct klp_patch kpgen_bench_klp_patch = {
	.mod = THIS_MODULE,
	.objs = kpgen_bench_klp_objs,
};

static int __init kpgen_bench_klp_init(void)
{
	return klp_enable_patch(&kpgen_bench_klp_patch);
}

static void __exit kpgen_bench_klp_exit(void)
{
}

module_init(kpgen_bench_klp_init);
module_exit(kpgen_bench_klp_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Upstream livepatch of a bench module function, for kpgen's benchmarks");
MODULE_INFO(livepatch, "Y");
