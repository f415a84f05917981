// SPDX-License-Identifier: GPL-2.0-only
/*
 * kpgen_test_filler: a module that does nothing.  Loaded after another
 * module's load failed, it takes the address that module had, so that the
 * module comes back elsewhere; and it is a module load that must not wait
 * for a busy patch.
 */
#include <linux/module.h>

static int __init kpgen_test_filler_init(void)
{
	return 0;
}

static void __exit kpgen_test_filler_exit(void)
{
}

module_init(kpgen_test_filler_init);
module_exit(kpgen_test_filler_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("An empty module for kpgen's boot tests");
