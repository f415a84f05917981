// SPDX-License-Identifier: GPL-2.0-only
/* Replacement for kpgen_test_target_sleep(): never sleeps. */

static int test_busy_sleep(void)
{
	return 2;
}
