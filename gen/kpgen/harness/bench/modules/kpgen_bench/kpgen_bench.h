/* SPDX-License-Identifier: GPL-2.0-only */
#ifndef _KPGEN_BENCH_H
#define _KPGEN_BENCH_H

/* kpgen_bench_fn_000() .. kpgen_bench_fn_999(), defined in funcs.c */
#define KPGEN_BENCH_FUNCS	1000

extern int (*const kpgen_bench_fns[KPGEN_BENCH_FUNCS])(void);

#endif /* _KPGEN_BENCH_H */
