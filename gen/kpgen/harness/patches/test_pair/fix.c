// SPDX-License-Identifier: GPL-2.0-only
/* Replacements of two /proc files, switched together. */
#include <linux/seq_file.h>

static int test_pair_cmdline_show(struct seq_file *m, void *v)
{
	seq_puts(m, "kpgen test pair: cmdline\n");
	return 0;
}

static int test_pair_meminfo_show(struct seq_file *m, void *v)
{
	seq_puts(m, "kpgen test pair: meminfo\n");
	return 0;
}
