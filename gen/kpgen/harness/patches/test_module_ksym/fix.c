// SPDX-License-Identifier: GPL-2.0-only
/*
 * Replacement for kpgen_test_target_value() that uses two static symbols of
 * kpgen_test_target: its variable kpgen_test_base (1) and the second of its
 * two kpgen_test_dup() functions (20), so it answers 100 * 1 + 20 = 120.
 */
#include <linux/compiler.h>

/* static in kpgen_test_target: declared here, extern */
extern int kpgen_test_base;
extern int kpgen_test_dup(void);

static int test_module_ksym_value(void)
{
	return 100 * READ_ONCE(kpgen_test_base) + kpgen_test_dup();
}
