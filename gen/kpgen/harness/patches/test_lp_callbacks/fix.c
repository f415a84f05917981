// SPDX-License-Identifier: GPL-2.0-only
/*
 * Replacements of /proc/version and of kpgen_test_target's value, and the
 * callbacks of both objects: each logs "<object> <callback>", and the
 * pre-patch callback of the object named by the parameter refuse fails.
 */
#include <linux/moduleparam.h>
#include <linux/printk.h>
#include <linux/seq_file.h>
#include <linux/string.h>

static char refuse[64];
module_param_string(refuse, refuse, sizeof(refuse), 0644);
MODULE_PARM_DESC(refuse, "the object whose pre-patch callback refuses");

static int test_lp_callbacks_version_show(struct seq_file *m, void *v)
{
	seq_puts(m, "kpgen test callbacks\n");
	return 0;
}

static int test_lp_callbacks_value(void)
{
	return 4;
}

static int test_lp_callbacks_pre(const char *object)
{
	pr_info("%s pre_patch\n", object);
	return sysfs_streq(refuse, object) ? -EPERM : 0;
}

static int test_lp_callbacks_vmlinux_pre_patch(void)
{
	return test_lp_callbacks_pre("vmlinux");
}

static void test_lp_callbacks_vmlinux_post_patch(void)
{
	pr_info("vmlinux post_patch\n");
}

static void test_lp_callbacks_vmlinux_pre_unpatch(void)
{
	pr_info("vmlinux pre_unpatch\n");
}

static void test_lp_callbacks_vmlinux_post_unpatch(void)
{
	pr_info("vmlinux post_unpatch\n");
}

static int test_lp_callbacks_target_pre_patch(void)
{
	return test_lp_callbacks_pre("kpgen_test_target");
}

static void test_lp_callbacks_target_post_patch(void)
{
	pr_info("kpgen_test_target post_patch\n");
}

static void test_lp_callbacks_target_pre_unpatch(void)
{
	pr_info("kpgen_test_target pre_unpatch\n");
}

static void test_lp_callbacks_target_post_unpatch(void)
{
	pr_info("kpgen_test_target post_unpatch\n");
}
