// SPDX-License-Identifier: GPL-2.0-only
/*
 * Replacement for kpgen_test_target_value(): 1000 plus the number of reads
 * so far, counted in a shadow variable of the module's kpgen_test_base; 999
 * when the shadow variable cannot be had.  The destructor logs how many
 * reads a freed variable counted.
 */
#include <linux/livepatch.h>
#include <linux/moduleparam.h>
#include <linux/printk.h>

extern int kpgen_test_base;

static bool fail_ctor;
module_param(fail_ctor, bool, 0644);
MODULE_PARM_DESC(fail_ctor, "make the shadow variable's constructor fail");

static int test_shadow_ctor(void *obj, void *shadow_data, void *ctor_data)
{
	int *reads = shadow_data;

	if (READ_ONCE(fail_ctor))
		return -ENOMEM;
	*reads = 0;
	return 0;
}

static void test_shadow_dtor(void *obj, void *shadow_data)
{
	pr_info("freed a read count of %d\n", *(int *)shadow_data);
}

static int test_shadow_value(void)
{
	int *reads;

	reads = klp_shadow_get_or_alloc(&kpgen_test_base, KPGEN_SHADOW_READS,
					sizeof(*reads), GFP_KERNEL,
					test_shadow_ctor, NULL);
	if (!reads)
		return 999;
	return 1000 + ++*reads;
}
