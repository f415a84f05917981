// SPDX-License-Identifier: GPL-2.0-only
/* Replacement for kpgen_test_target_value(), stacked on test_module_value. */

static int test_value_b_value(void)
{
	return 3;
}
