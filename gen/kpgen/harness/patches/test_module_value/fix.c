// SPDX-License-Identifier: GPL-2.0-only
/* Replacement for kpgen_test_target_value(). */

static int test_module_value_value(void)
{
	return 2;
}
