// SPDX-License-Identifier: GPL-2.0-only
/* Would replace kpgen_test_target's module init function: refused. */

static int test_module_init_fn(void)
{
	return 0;
}
