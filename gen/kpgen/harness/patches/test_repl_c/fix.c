// SPDX-License-Identifier: GPL-2.0-only
/* Replace test, patch C (cumulative): /proc/cmdline and /proc/version say "C". */
#include <linux/printk.h>
#include <linux/seq_file.h>

static int test_repl_c_cmdline_show(struct seq_file *m, void *v)
{
	seq_puts(m, "kpgen replace: C\n");
	return 0;
}

static int test_repl_c_version_show(struct seq_file *m, void *v)
{
	seq_puts(m, "kpgen replace: C\n");
	return 0;
}

static int test_repl_c_pre_patch(void)
{
	pr_info("C pre_patch\n");
	return 0;
}

static void test_repl_c_post_patch(void)
{
	pr_info("C post_patch\n");
}
