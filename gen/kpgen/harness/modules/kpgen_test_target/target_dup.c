// SPDX-License-Identifier: GPL-2.0-only
/*
 * The second kpgen_test_dup() of kpgen_test_target: same name as the one in
 * target_main.c, so patching either needs its kallsyms position (sympos).
 */
#include <linux/compiler.h>

#include "target.h"

static int kpgen_test_dup_base = 20;

static noinline int kpgen_test_dup(void)
{
	return READ_ONCE(kpgen_test_dup_base);
}

int kpgen_test_dup2(void)
{
	return kpgen_test_dup();
}
