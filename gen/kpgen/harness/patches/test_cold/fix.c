// SPDX-License-Identifier: GPL-2.0-only
/* Replacement for kpgen_test_target_cold(): never sleeps. */

static int test_cold_cold(int cmd)
{
	return 7;
}
