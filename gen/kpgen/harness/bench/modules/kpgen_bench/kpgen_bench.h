/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * kpgen_bench: what main.c (the measuring) and pieces.c (the module's own
 * ftrace callbacks) share.
 */
#ifndef _KPGEN_BENCH_H
#define _KPGEN_BENCH_H

#include <linux/types.h>

typedef unsigned int (*kpgen_bench_fn)(const unsigned long j);

/* pieces.c: the targets its callbacks hook, one callback each */
unsigned int kpgen_bench_ftrace(const unsigned long j);
unsigned int kpgen_bench_preempt(const unsigned long j);
unsigned int kpgen_bench_guard(const unsigned long j);
unsigned int kpgen_bench_guard_nmi(const unsigned long j);
unsigned int kpgen_bench_redirect(const unsigned long j);
unsigned int kpgen_bench_hash(const unsigned long j);
unsigned int kpgen_bench_slot(const unsigned long j);
unsigned int kpgen_bench_klp(const unsigned long j);

int kpgen_bench_hook(bool on);

#endif /* _KPGEN_BENCH_H */
