// SPDX-License-Identifier: GPL-2.0-only
/* Replacement for meminfo_proc_show() that calls static cmdline_proc_show(). */
#include <linux/seq_file.h>

/* static in fs/proc/cmdline.c: declared here, extern */
extern int cmdline_proc_show(struct seq_file *m, void *v);

static int test_static_sym_meminfo_show(struct seq_file *m, void *v)
{
	seq_puts(m, "kpgen test static: ");
	return cmdline_proc_show(m, v);
}
