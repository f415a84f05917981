// SPDX-License-Identifier: GPL-2.0-only
/* Replacement for kpgen_test_notrace(), which cannot be hooked. */

static int test_notrace_replacement(void)
{
	return 0;
}
