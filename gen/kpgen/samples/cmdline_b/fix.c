// SPDX-License-Identifier: GPL-2.0-only
/* Another replacement for cmdline_proc_show() (fs/proc/cmdline.c). */
#include <linux/seq_file.h>

static int cmdline_b_proc_show(struct seq_file *m, void *v)
{
	seq_puts(m, "kpgen sample cmdline_b: this function is live patched\n");
	return 0;
}
