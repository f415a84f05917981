// SPDX-License-Identifier: GPL-2.0-only
/*
 * kpgen_test_kprobe: a kprobe with a post handler on cmdline_proc_show().  On
 * an ftrace location such a kprobe needs to modify the instruction pointer,
 * like kpgen's core, so the two must refuse each other cleanly.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/kprobes.h>
#include <linux/module.h>

static unsigned long kpgen_test_kprobe_hits;

static int kpgen_test_kprobe_pre(struct kprobe *p, struct pt_regs *regs)
{
	return 0;
}

static void kpgen_test_kprobe_post(struct kprobe *p, struct pt_regs *regs,
				   unsigned long flags)
{
	kpgen_test_kprobe_hits++;
}

static struct kprobe kpgen_test_kprobe_kp = {
	.symbol_name = "cmdline_proc_show",
	.pre_handler = kpgen_test_kprobe_pre,
	.post_handler = kpgen_test_kprobe_post,
};

static int __init kpgen_test_kprobe_init(void)
{
	int ret = register_kprobe(&kpgen_test_kprobe_kp);

	if (ret)
		pr_err("cannot register a kprobe on cmdline_proc_show: %d\n", ret);
	return ret;
}

static void __exit kpgen_test_kprobe_exit(void)
{
	unregister_kprobe(&kpgen_test_kprobe_kp);
	pr_info("%lu hits\n", kpgen_test_kprobe_hits);
}

module_init(kpgen_test_kprobe_init);
module_exit(kpgen_test_kprobe_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("A kprobe with a post handler, for kpgen's boot tests");
