// SPDX-License-Identifier: GPL-2.0-only
/*
 * Livepatch backend: kpgen_test_target's value from its static variable
 * kpgen_test_base (1) and the second of its two kpgen_test_dup() functions
 * (20; the first returns 10): 400 + 20 * 1 + 20 = 440.
 */
#include <linux/compiler.h>

/* static in kpgen_test_target: declared here, extern */
extern int kpgen_test_base;
extern int kpgen_test_dup(void);

static int test_lp_modsym_value(void)
{
	return 400 + 20 * READ_ONCE(kpgen_test_base) + kpgen_test_dup();
}
