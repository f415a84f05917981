/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * kpatch-macros.h - kpatch's patch-author API, as kpgen diff reads it.
 *
 * Diffs written for kpatch-build include "kpatch-macros.h". kpgen diff
 * compiles the patched file with this header to learn what the diff asks
 * for, and writes that into the patch module's spec and fix.c; the module
 * never includes this file. What each marker becomes:
 *
 * KPATCH_PRE_PATCH_CALLBACK(fn), KPATCH_POST_PATCH_CALLBACK(fn),
 * KPATCH_PRE_UNPATCH_CALLBACK(fn), KPATCH_POST_UNPATCH_CALLBACK(fn)
 *	fn is a callback of the object (vmlinux or the module) the file is
 *	built into: an [[object]] table of the spec, on either backend.
 *	fn(patch_object *obj) is called with obj->name the module's name
 *	(NULL for vmlinux) and obj->mod the module (NULL for vmlinux). A
 *	pre-patch callback's error refuses the patch, or the module's load.
 * KPATCH_FORCE_UNSAFE(fn)
 *	fn, which the diff changes, is switched without the activeness check
 *	(force = true of its [[function]]); the livepatch backend, which
 *	switches each task on its own, has no use for it.
 * KPATCH_IGNORE_FUNCTION(fn)
 *	the changes of fn are not patched: they are a side effect (kpgen
 *	already leaves out changes of line numbers alone).
 * KPATCH_IGNORE_SECTION(name)
 *	no meaning: kpgen compares functions and data, not sections.
 * KPATCH_PRINTK(fmt, ...), KPATCH_PRINTK_DEFERRED(fmt, ...)
 *	printk() and printk_deferred(), out of line, as in kpatch.
 * KPATCH_STATIC_CALL(name)
 *	the static call's current function, called through a pointer.
 */
#ifndef _KPGEN_KPATCH_MACROS_H
#define _KPGEN_KPATCH_MACROS_H

#include <linux/compiler.h>
#include <linux/module.h>
#include <linux/printk.h>
#include <linux/static_call.h>

/* The object a callback runs for: kpatch's patch_object, with its name and module. */
typedef struct kpgen_patch_object {
	const char *name;
	struct module *mod;
} patch_object;

typedef int (*kpgen_pre_patch_t)(patch_object *obj);
typedef void (*kpgen_patch_t)(patch_object *obj);

/*
 * Each marker leaves a pointer in a section the kernel's build discards: it
 * checks the function's type and keeps the function in the object, where
 * kpgen diff finds it; the patch module is made from the spec and fix.c.
 */
#define __KPGEN_MARK(kind, type, fn)						\
	static type __kpgen_##kind##_##fn __used				\
	__section(".discard.kpgen." #kind) = (fn)

#define KPATCH_PRE_PATCH_CALLBACK(fn)	__KPGEN_MARK(pre_patch, kpgen_pre_patch_t, fn)
#define KPATCH_POST_PATCH_CALLBACK(fn)	__KPGEN_MARK(post_patch, kpgen_patch_t, fn)
#define KPATCH_PRE_UNPATCH_CALLBACK(fn)	__KPGEN_MARK(pre_unpatch, kpgen_patch_t, fn)
#define KPATCH_POST_UNPATCH_CALLBACK(fn) __KPGEN_MARK(post_unpatch, kpgen_patch_t, fn)
#define KPATCH_FORCE_UNSAFE(fn)		__KPGEN_MARK(force, void *, fn)
#define KPATCH_IGNORE_FUNCTION(fn)	__KPGEN_MARK(ignore, void *, fn)
#define KPATCH_IGNORE_SECTION(name)	static_assert(sizeof(name) > 0)

#define KPATCH_PRINTK(fmt, ...)							\
	({ if (1) printk(fmt, ##__VA_ARGS__); })
#define KPATCH_PRINTK_DEFERRED(fmt, ...)					\
	({ if (1) printk_deferred(fmt, ##__VA_ARGS__); })

#define KPATCH_STATIC_CALL(name)						\
	((typeof(STATIC_CALL_TRAMP(name)) *)(STATIC_CALL_KEY(name).func))

#endif /* _KPGEN_KPATCH_MACROS_H */
