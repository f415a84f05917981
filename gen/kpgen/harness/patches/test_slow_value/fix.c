// SPDX-License-Identifier: GPL-2.0-only
/* Replacement for kpgen_test_target_value(): sleeps 12 s, then answers 4. */
#include <linux/delay.h>

static int test_slow_value_value(void)
{
	msleep(12000);
	return 4;
}
