// SPDX-License-Identifier: GPL-2.0-only
/*
 * kpgen_test_warn: a module whose load prints a kernel warning on purpose.
 * The harness's own test loads it to prove that a warning anywhere in the
 * guest's kernel log fails a boot test and is named in the report.  No guest
 * scenario loads it.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/bug.h>
#include <linux/module.h>

static int __init kpgen_test_warn_init(void)
{
	WARN(1, "kpgen_test_warn: a warning injected on purpose\n");
	return 0;
}

static void __exit kpgen_test_warn_exit(void)
{
}

module_init(kpgen_test_warn_init);
module_exit(kpgen_test_warn_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("A module that warns on load, for kpgen's harness test");
