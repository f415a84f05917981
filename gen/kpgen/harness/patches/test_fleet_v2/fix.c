// SPDX-License-Identifier: GPL-2.0-only
/* cmdline_proc_show() (fs/proc/cmdline.c) as fix.patch changes it: version 2. */
#include <linux/seq_file.h>

static int test_fleet_v2_cmdline_show(struct seq_file *m, void *v)
{
	seq_puts(m, "kpgen fleet v2\n");
	return 0;
}
