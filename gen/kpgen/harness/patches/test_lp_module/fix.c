// SPDX-License-Identifier: GPL-2.0-only
/* Livepatch backend: kpgen_test_target's value becomes 7. */

static int test_lp_module_value(void)
{
	return 7;
}
