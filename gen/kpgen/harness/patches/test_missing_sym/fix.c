// SPDX-License-Identifier: GPL-2.0-only
/* Replacement for cmdline_proc_show() that reads a variable no kernel has. */
#include <linux/seq_file.h>

/* no kernel defines it */
extern int kpgen_no_such_symbol;

static int test_missing_sym_show(struct seq_file *m, void *v)
{
	seq_printf(m, "%d\n", kpgen_no_such_symbol);
	return 0;
}
