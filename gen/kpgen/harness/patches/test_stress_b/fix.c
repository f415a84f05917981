// SPDX-License-Identifier: GPL-2.0-only
/* Replacement for kpgen_stress_target(): version 2. */

static int test_stress_b_target(void)
{
	return 2;
}
