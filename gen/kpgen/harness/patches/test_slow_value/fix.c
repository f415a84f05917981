// SPDX-License-Identifier: GPL-2.0-only
/* Replacement for kpgen_test_target_value(): sleeps sleep_ms, then answers 4. */
#include <linux/delay.h>
#include <linux/moduleparam.h>

static unsigned int sleep_ms = 12000;
module_param(sleep_ms, uint, 0644);
MODULE_PARM_DESC(sleep_ms, "how long a call of the replacement sleeps (ms)");

static int test_slow_value_value(void)
{
	msleep(READ_ONCE(sleep_ms));
	return 4;
}
