/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * kpatch-syscall.h - kpatch's system call macros, as kpgen diff reads them.
 *
 * kpatch-build cannot patch __do_sys_<name>(), an inline and so notrace
 * function, and its KPATCH_SYSCALL_DEFINEn() gives it another name. kpgen
 * diff patches a system call through its entry points (__x64_sys_<name>,
 * __ia32_sys_<name>), which SYSCALL_DEFINEn() makes and ftrace can hook:
 * KPATCH_SYSCALL_DEFINEn() is SYSCALL_DEFINEn() here.
 */
#ifndef _KPGEN_KPATCH_SYSCALL_H
#define _KPGEN_KPATCH_SYSCALL_H

#include <linux/syscalls.h>

#define KPATCH_SYSCALL_DEFINE0(name)		SYSCALL_DEFINE0(name)
#define KPATCH_SYSCALL_DEFINE1(name, ...)	SYSCALL_DEFINE1(name, __VA_ARGS__)
#define KPATCH_SYSCALL_DEFINE2(name, ...)	SYSCALL_DEFINE2(name, __VA_ARGS__)
#define KPATCH_SYSCALL_DEFINE3(name, ...)	SYSCALL_DEFINE3(name, __VA_ARGS__)
#define KPATCH_SYSCALL_DEFINE4(name, ...)	SYSCALL_DEFINE4(name, __VA_ARGS__)
#define KPATCH_SYSCALL_DEFINE5(name, ...)	SYSCALL_DEFINE5(name, __VA_ARGS__)
#define KPATCH_SYSCALL_DEFINE6(name, ...)	SYSCALL_DEFINE6(name, __VA_ARGS__)

#endif /* _KPGEN_KPATCH_SYSCALL_H */
