// SPDX-License-Identifier: GPL-2.0-only
/*
 * kpgen_test_klp: an upstream livepatch (klp) of cmdline_proc_show(), for the
 * boot tests that check kpgen's core and livepatch refuse each other cleanly
 * on the same function instead of both claiming it.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/kernel.h>
#include <linux/livepatch.h>
#include <linux/module.h>
#include <linux/seq_file.h>

static int kpgen_test_klp_cmdline_show(struct seq_file *m, void *v)
{
	seq_puts(m, "kpgen test klp: this function is live patched\n");
	return 0;
}

static struct klp_func kpgen_test_klp_funcs[] = {
	{
		.old_name = "cmdline_proc_show",
		.new_func = kpgen_test_klp_cmdline_show,
	},
	{ }
};

static struct klp_object kpgen_test_klp_objs[] = {
	{
		/* name == NULL: vmlinux */
		.funcs = kpgen_test_klp_funcs,
	},
	{ }
};

static struct klp_patch kpgen_test_klp_patch = {
	.mod = THIS_MODULE,
	.objs = kpgen_test_klp_objs,
};

static int __init kpgen_test_klp_init(void)
{
	return klp_enable_patch(&kpgen_test_klp_patch);
}

static void __exit kpgen_test_klp_exit(void)
{
}

module_init(kpgen_test_klp_init);
module_exit(kpgen_test_klp_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Upstream livepatch of cmdline_proc_show for kpgen's boot tests");
MODULE_INFO(livepatch, "Y");
