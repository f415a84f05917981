// SPDX-License-Identifier: GPL-2.0-only
/* Replacement for start_kernel(), which is long gone after boot. */

static void test_init_start_kernel(void)
{
}
