// SPDX-License-Identifier: GPL-2.0-only
/*
 * Replacement for cmdline_proc_show() (fs/proc/cmdline.c) that still shows
 * the command line: saved_command_line is declared in <linux/init.h> but not
 * exported, and is used here as if it were.
 */
#include <linux/init.h>
#include <linux/seq_file.h>

static int cmdline_ksym_proc_show(struct seq_file *m, void *v)
{
	seq_printf(m, "kpgen sample cmdline_ksym: %s\n", saved_command_line);
	return 0;
}
