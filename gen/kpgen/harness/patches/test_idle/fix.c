// SPDX-License-Identifier: GPL-2.0-only
/* Replacement for kpgen_test_idle_step(): the same idle injection, answering 2. */
#include <linux/cpu.h>
#include <linux/delay.h>
#include <linux/time64.h>

static int test_idle_step(void)
{
	play_idle_precise(250 * NSEC_PER_MSEC, U64_MAX);
	msleep(250);
	return 2;
}
