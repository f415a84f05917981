/* SPDX-License-Identifier: GPL-2.0-only */
#ifndef _KPGEN_TEST_TARGET_H
#define _KPGEN_TEST_TARGET_H

int kpgen_test_dup2(void);

#endif /* _KPGEN_TEST_TARGET_H */
