// SPDX-License-Identifier: GPL-2.0-only
/* Replacement for kpgen_test_target_value() that reads a variable the module lacks. */
#include <linux/compiler.h>

/* kpgen_test_target has no such variable */
extern int kpgen_no_such_symbol;

static int test_lp_mod_nosym_value(void)
{
	return READ_ONCE(kpgen_no_such_symbol);
}
