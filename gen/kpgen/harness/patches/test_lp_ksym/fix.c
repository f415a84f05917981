// SPDX-License-Identifier: GPL-2.0-only
/*
 * Livepatch backend: /proc/version shows the unexported saved_command_line,
 * which the module loader relocates as the module loads.
 */
#include <linux/init.h>
#include <linux/seq_file.h>

static int test_lp_ksym_version_show(struct seq_file *m, void *v)
{
	seq_printf(m, "kpgen test lp ksym: %s\n", saved_command_line);
	return 0;
}
