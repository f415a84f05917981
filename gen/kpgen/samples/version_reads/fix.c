// SPDX-License-Identifier: GPL-2.0-only
/*
 * Replacement for version_proc_show() (fs/proc/version.c): the same banner
 * (linux_proc_banner is not exported: a klp relocation), after a line
 * that counts the reads so far.  The count lives in a shadow variable of
 * init_uts_ns, so that no structure has to change.
 */
#include <linux/livepatch.h>
#include <linux/printk.h>
#include <linux/seq_file.h>
#include <linux/utsname.h>

static void version_reads_free(void *obj, void *shadow_data)
{
	pr_info("/proc/version was read %lu times\n",
		*(unsigned long *)shadow_data);
}

static int version_reads_show(struct seq_file *m, void *v)
{
	unsigned long *reads;

	reads = klp_shadow_get_or_alloc(&init_uts_ns, KPGEN_SHADOW_READS,
					sizeof(*reads), GFP_KERNEL, NULL, NULL);
	if (reads)
		seq_printf(m, "kpgen sample version_reads: read %lu times\n",
			   ++*reads);
	else
		seq_puts(m, "kpgen sample version_reads: no memory to count\n");
	seq_printf(m, linux_proc_banner, utsname()->sysname,
		   utsname()->release, utsname()->version);
	return 0;
}
