// SPDX-License-Identifier: GPL-2.0-only
/* Replacement for one of the kpgen_test_dup() functions, but which? */

static int test_ambiguous_dup(void)
{
	return 0;
}
