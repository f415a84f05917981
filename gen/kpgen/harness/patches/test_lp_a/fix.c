// SPDX-License-Identifier: GPL-2.0-only
/* Livepatch backend: /proc/version says which patch answers. */
#include <linux/seq_file.h>

static int test_lp_a_version_show(struct seq_file *m, void *v)
{
	seq_puts(m, "kpgen test lp a\n");
	return 0;
}
