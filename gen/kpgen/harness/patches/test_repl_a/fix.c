// SPDX-License-Identifier: GPL-2.0-only
/* Replace test, patch A: /proc/cmdline and /proc/meminfo say "A". */
#include <linux/printk.h>
#include <linux/seq_file.h>

static int test_repl_a_cmdline_show(struct seq_file *m, void *v)
{
	seq_puts(m, "kpgen replace: A\n");
	return 0;
}

static int test_repl_a_meminfo_show(struct seq_file *m, void *v)
{
	seq_puts(m, "kpgen replace: A\n");
	return 0;
}

static void test_repl_a_post_unpatch(void)
{
	pr_info("A post_unpatch\n");
}
