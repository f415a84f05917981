// SPDX-License-Identifier: GPL-2.0-only
/* Replacement for a function that no kernel has. */

static int test_missing_replacement(void)
{
	return 0;
}
