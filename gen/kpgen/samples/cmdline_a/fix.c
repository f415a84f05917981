// SPDX-License-Identifier: GPL-2.0-only
/* Replacement for cmdline_proc_show() (fs/proc/cmdline.c). */
#include <linux/seq_file.h>

static int cmdline_a_proc_show(struct seq_file *m, void *v)
{
	seq_puts(m, "kpgen sample cmdline_a: this function is live patched\n");
	return 0;
}
