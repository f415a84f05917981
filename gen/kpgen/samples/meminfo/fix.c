// SPDX-License-Identifier: GPL-2.0-only
/* Replacement for meminfo_proc_show() (fs/proc/meminfo.c). */
#include <linux/mm.h>
#include <linux/seq_file.h>

static int meminfo_short_proc_show(struct seq_file *m, void *v)
{
	struct sysinfo info;

	si_meminfo(&info);
	seq_puts(m, "kpgen sample meminfo: this function is live patched\n");
	seq_printf(m, "MemTotal:       %8lu kB\n",
		   info.totalram << (PAGE_SHIFT - 10));
	seq_printf(m, "MemFree:        %8lu kB\n",
		   info.freeram << (PAGE_SHIFT - 10));
	return 0;
}
