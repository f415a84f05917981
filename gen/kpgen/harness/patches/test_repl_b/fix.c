// SPDX-License-Identifier: GPL-2.0-only
/* Replace test, patch B: /proc/cmdline says "B". */
#include <linux/seq_file.h>

static int test_repl_b_cmdline_show(struct seq_file *m, void *v)
{
	seq_puts(m, "kpgen replace: B\n");
	return 0;
}
