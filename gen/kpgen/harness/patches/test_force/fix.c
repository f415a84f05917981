// SPDX-License-Identifier: GPL-2.0-only
/* Replacement for kpgen_test_target_sleep(): the same sleep, answering 6. */
#include <linux/wait.h>

extern wait_queue_head_t kpgen_test_wq;
extern unsigned long kpgen_test_wake_seq;

static int test_force_sleep(void)
{
	unsigned long seq = READ_ONCE(kpgen_test_wake_seq);

	if (wait_event_interruptible(kpgen_test_wq,
				     READ_ONCE(kpgen_test_wake_seq) != seq))
		return -EINTR;
	return 6;
}
