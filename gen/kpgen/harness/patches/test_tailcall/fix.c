// SPDX-License-Identifier: GPL-2.0-only
/*
 * Replacement for kpgen_test_target_sleep(): the same sleep, in a helper of
 * the patch module that the replacement reaches by a tail call (gcc emits a
 * jmp), and answering 3.
 */
#include <linux/wait.h>

/* the test target's own wait queue and wake counter (static there) */
extern wait_queue_head_t kpgen_test_wq;
extern unsigned long kpgen_test_wake_seq;

static noinline int test_tailcall_wait(void)
{
	unsigned long seq = READ_ONCE(kpgen_test_wake_seq);

	if (wait_event_interruptible(kpgen_test_wq,
				     READ_ONCE(kpgen_test_wake_seq) != seq))
		return -EINTR;
	return 3;
}

static int test_tailcall_sleep(void)
{
	return test_tailcall_wait();
}
