// SPDX-License-Identifier: GPL-2.0-only
/*
 * kpgen_test_relay: lets a task change a live patch from inside a function
 * that a patch replaces, as a task does whose own path (a write system call,
 * a module load) runs through a patched function.
 *
 * Writing "PATH VALUE MS" to /proc/kpgen_test_relay calls
 * kpgen_test_relay_write(), which writes VALUE to the file PATH (a patch's
 * "enabled", say) and then, still inside the function, sleeps MS
 * milliseconds.  Reading the file shows "result=R version=V": R is what the
 * inner write returned (the count, or a negative errno), V which version of
 * kpgen_test_relay_write() ran (1: the original).
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/delay.h>
#include <linux/err.h>
#include <linux/fs.h>
#include <linux/kernel.h>
#include <linux/module.h>
#include <linux/proc_fs.h>
#include <linux/seq_file.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/uaccess.h>

#define KPGEN_RELAY_MAX	256

static int kpgen_test_relay_result;
static int kpgen_test_relay_version;

/*
 * Writes @value to @path, then sleeps @ms; says which version ran in
 * @version.  Not cloned by gcc (constprop), so that kallsyms has its name.
 */
static noinline __noclone int
kpgen_test_relay_write(const char *path, const char *value, unsigned int ms,
		       int *version)
{
	struct file *file;
	loff_t pos = 0;
	ssize_t ret;

	file = filp_open(path, O_WRONLY, 0);
	if (IS_ERR(file))
		return PTR_ERR(file);
	ret = kernel_write(file, value, strlen(value), &pos);
	filp_close(file, NULL);
	msleep(ms);
	*version = 1;
	return ret;
}

static int kpgen_test_relay_show(struct seq_file *m, void *v)
{
	seq_printf(m, "result=%d version=%d\n",
		   READ_ONCE(kpgen_test_relay_result),
		   READ_ONCE(kpgen_test_relay_version));
	return 0;
}

static int kpgen_test_relay_open(struct inode *inode, struct file *file)
{
	return single_open(file, kpgen_test_relay_show, NULL);
}

static ssize_t kpgen_test_relay_proc_write(struct file *file,
					   const char __user *ubuf,
					   size_t count, loff_t *ppos)
{
	char *buf, *path, *value, *ms;
	int version = 0, ret;
	unsigned int delay;

	if (!count || count >= KPGEN_RELAY_MAX)
		return -EINVAL;
	buf = memdup_user_nul(ubuf, count);
	if (IS_ERR(buf))
		return PTR_ERR(buf);
	value = strim(buf);
	path = strsep(&value, " ");
	ms = value;
	value = strsep(&ms, " ");
	ret = -EINVAL;
	if (!value || !ms || kstrtouint(ms, 10, &delay))
		goto out;
	ret = kpgen_test_relay_write(path, value, delay, &version);
	WRITE_ONCE(kpgen_test_relay_result, ret);
	WRITE_ONCE(kpgen_test_relay_version, version);
	ret = count;
out:
	kfree(buf);
	return ret;
}

static const struct proc_ops kpgen_test_relay_proc_ops = {
	.proc_open = kpgen_test_relay_open,
	.proc_read = seq_read,
	.proc_lseek = seq_lseek,
	.proc_release = single_release,
	.proc_write = kpgen_test_relay_proc_write,
};

static int __init kpgen_test_relay_init(void)
{
	if (!proc_create("kpgen_test_relay", 0600, NULL,
			 &kpgen_test_relay_proc_ops))
		return -ENOMEM;
	return 0;
}

static void __exit kpgen_test_relay_exit(void)
{
	remove_proc_entry("kpgen_test_relay", NULL);
}

module_init(kpgen_test_relay_init);
module_exit(kpgen_test_relay_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Changes a live patch from inside a patched function, for kpgen's boot tests");
