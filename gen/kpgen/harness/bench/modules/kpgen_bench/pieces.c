// SPDX-License-Identifier: GPL-2.0-only
/*
 * kpgen_bench: the module's own ftrace callbacks, each hooking a target of
 * its own: an empty one (the floor of any redirect through ftrace), and the
 * pieces of a live patch's ftrace handler, alone and together, so that the
 * cost of each piece is the difference between two cases of one round:
 *
 *   ftrace_empty  nothing
 *   preempt       preempt_disable_notrace() and preempt_enable_notrace()
 *   guard         the recursion guard, ftrace_test_recursion_trylock() and
 *                 its unlock (which also disable preemption)
 *   guard_nmi     the guard and an in_nmi() test
 *   redirect      the guard and the redirect, to a copy of the target
 *   hash          the guard, an in_nmi() test, a lookup by address in a hash
 *                 of 1024 buckets of hlist entries, the redirect: kpgen's
 *                 handler as it was before its slot table
 *   slot          the guard, a lookup in a table of one word per slot (the
 *                 low 32 bits of the address and of the replacement's), the
 *                 redirect: kpgen's handler with the guard it had
 *   klp           the guard, livepatch's lookup (the first function on its
 *                 ftrace_ops' stack, its transition and nop flags), the
 *                 redirect: livepatch's klp_ftrace_handler()
 *
 * Each lookup finds the one entry set up when the callbacks are hooked.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/bug.h>
#include <linux/ftrace.h>
#include <linux/hash.h>
#include <linux/hashtable.h>
#include <linux/jiffies.h>
#include <linux/kernel.h>
#include <linux/list.h>
#include <linux/livepatch.h>
#include <linux/preempt.h>
#include <linux/rculist.h>
#include <linux/sched.h>
#ifdef CONFIG_X86_KERNEL_IBT
#include <asm/ibt.h>
#endif

#include "kpgen_bench.h"

#ifndef KPGEN_BENCH_SET_IP
#error "KPGEN_BENCH_SET_IP: the ftrace_regs IP setter (kpgen bench adds it to Kbuild)"
#endif

/* The targets: a distinct constant each, so that no two bodies merge. */
noinline unsigned int kpgen_bench_ftrace(const unsigned long j)
{
	return (MSEC_PER_SEC / HZ) * j + 3;
}

noinline unsigned int kpgen_bench_preempt(const unsigned long j)
{
	return (MSEC_PER_SEC / HZ) * j + 10;
}

noinline unsigned int kpgen_bench_guard(const unsigned long j)
{
	return (MSEC_PER_SEC / HZ) * j + 11;
}

noinline unsigned int kpgen_bench_guard_nmi(const unsigned long j)
{
	return (MSEC_PER_SEC / HZ) * j + 12;
}

noinline unsigned int kpgen_bench_redirect(const unsigned long j)
{
	return (MSEC_PER_SEC / HZ) * j + 13;
}

noinline unsigned int kpgen_bench_hash(const unsigned long j)
{
	return (MSEC_PER_SEC / HZ) * j + 14;
}

noinline unsigned int kpgen_bench_slot(const unsigned long j)
{
	return (MSEC_PER_SEC / HZ) * j + 15;
}

noinline unsigned int kpgen_bench_klp(const unsigned long j)
{
	return (MSEC_PER_SEC / HZ) * j + 16;
}

/* Where the redirecting callbacks send their target's calls: the same work. */
static noinline unsigned int kpgen_bench_copy(const unsigned long j)
{
	return (MSEC_PER_SEC / HZ) * j + 17;
}

/* The lookups' data ------------------------------------------------------- */

struct kpgen_bench_entry {
	unsigned long ip;
	void *new_func;
	struct hlist_node node;
};

static DEFINE_HASHTABLE(kpgen_bench_table, 10);
static struct kpgen_bench_entry kpgen_bench_entry;

#define KPGEN_BENCH_SLOT_BITS	12
static unsigned long kpgen_bench_slots[1 << KPGEN_BENCH_SLOT_BITS];

/* livepatch's struct klp_ops and the fields of struct klp_func it reads */
struct kpgen_bench_klp_func {
	struct list_head stack_node;
	void *new_func;
	bool transition;
	bool nop;
};

struct kpgen_bench_klp_ops {
	struct list_head func_stack;
	struct ftrace_ops fops;
};

static struct kpgen_bench_klp_func kpgen_bench_klp_func;

static unsigned long kpgen_bench_nmi_calls;

/* The callbacks ------------------------------------------------------------ */

static void notrace kpgen_bench_empty_cb(unsigned long ip, unsigned long parent_ip,
					 struct ftrace_ops *op,
					 struct ftrace_regs *fregs)
{
}

static void notrace kpgen_bench_preempt_cb(unsigned long ip,
					   unsigned long parent_ip,
					   struct ftrace_ops *op,
					   struct ftrace_regs *fregs)
{
	preempt_disable_notrace();
	preempt_enable_notrace();
}

static void notrace kpgen_bench_guard_cb(unsigned long ip, unsigned long parent_ip,
					 struct ftrace_ops *op,
					 struct ftrace_regs *fregs)
{
	int bit;

	bit = ftrace_test_recursion_trylock(ip, parent_ip);
	if (WARN_ON_ONCE(bit < 0))
		return;
	ftrace_test_recursion_unlock(bit);
}

static void notrace kpgen_bench_guard_nmi_cb(unsigned long ip,
					     unsigned long parent_ip,
					     struct ftrace_ops *op,
					     struct ftrace_regs *fregs)
{
	int bit;

	bit = ftrace_test_recursion_trylock(ip, parent_ip);
	if (WARN_ON_ONCE(bit < 0))
		return;
	if (unlikely(in_nmi()))
		WRITE_ONCE(kpgen_bench_nmi_calls, kpgen_bench_nmi_calls + 1);
	ftrace_test_recursion_unlock(bit);
}

static void notrace kpgen_bench_redirect_cb(unsigned long ip,
					    unsigned long parent_ip,
					    struct ftrace_ops *op,
					    struct ftrace_regs *fregs)
{
	int bit;

	bit = ftrace_test_recursion_trylock(ip, parent_ip);
	if (WARN_ON_ONCE(bit < 0))
		return;
	KPGEN_BENCH_SET_IP(fregs, (unsigned long)kpgen_bench_copy);
	ftrace_test_recursion_unlock(bit);
}

static void notrace kpgen_bench_hash_cb(unsigned long ip, unsigned long parent_ip,
					struct ftrace_ops *op,
					struct ftrace_regs *fregs)
{
	struct kpgen_bench_entry *entry, *found = NULL;
	int bit;

	bit = ftrace_test_recursion_trylock(ip, parent_ip);
	if (WARN_ON_ONCE(bit < 0))
		return;
	if (likely(!in_nmi())) {
		hash_for_each_possible_rcu_notrace(kpgen_bench_table, entry,
						   node, ip) {
			if (entry->ip == ip) {
				found = entry;
				break;
			}
		}
	}
	if (found)
		KPGEN_BENCH_SET_IP(fregs, (unsigned long)found->new_func);
	ftrace_test_recursion_unlock(bit);
}

static void notrace kpgen_bench_slot_cb(unsigned long ip, unsigned long parent_ip,
					struct ftrace_ops *op,
					struct ftrace_regs *fregs)
{
	unsigned long slot;
	int bit;

	bit = ftrace_test_recursion_trylock(ip, parent_ip);
	if (WARN_ON_ONCE(bit < 0))
		return;
	slot = READ_ONCE(kpgen_bench_slots[hash_min(ip, KPGEN_BENCH_SLOT_BITS)]);
	if (likely((u32)slot == (u32)ip))
		KPGEN_BENCH_SET_IP(fregs, (unsigned long)((long)slot >> 32));
	ftrace_test_recursion_unlock(bit);
}

static void notrace kpgen_bench_klp_cb(unsigned long ip, unsigned long parent_ip,
				       struct ftrace_ops *fops,
				       struct ftrace_regs *fregs)
{
	struct kpgen_bench_klp_ops *ops;
	struct kpgen_bench_klp_func *func;
	int bit;

	ops = container_of(fops, struct kpgen_bench_klp_ops, fops);
	bit = ftrace_test_recursion_trylock(ip, parent_ip);
	if (WARN_ON_ONCE(bit < 0))
		return;
	func = list_first_or_null_rcu(&ops->func_stack,
				      struct kpgen_bench_klp_func, stack_node);
	if (WARN_ON_ONCE(!func))
		goto unlock;
	/* as livepatch: read func->transition after the func (klp_init_transition) */
	smp_rmb();
	if (unlikely(func->transition)) {
		/* as livepatch: read patch_state after func->transition */
		smp_rmb();
		if (current->patch_state == 0) {
			func = list_entry_rcu(func->stack_node.next,
					      struct kpgen_bench_klp_func,
					      stack_node);
			if (&func->stack_node == &ops->func_stack)
				goto unlock;
		}
	}
	if (func->nop)
		goto unlock;
	KPGEN_BENCH_SET_IP(fregs, (unsigned long)func->new_func);
unlock:
	ftrace_test_recursion_unlock(bit);
}

/* Hooking ------------------------------------------------------------------ */

#ifdef CONFIG_DYNAMIC_FTRACE_WITH_ARGS
#define KPGEN_BENCH_REDIRECT_FLAGS	FTRACE_OPS_FL_IPMODIFY
#else
#define KPGEN_BENCH_REDIRECT_FLAGS	(FTRACE_OPS_FL_IPMODIFY | FTRACE_OPS_FL_SAVE_REGS)
#endif

static struct kpgen_bench_klp_ops kpgen_bench_klp_ops = {
	.func_stack = LIST_HEAD_INIT(kpgen_bench_klp_ops.func_stack),
	.fops = {
		.func = kpgen_bench_klp_cb,
		.flags = KPGEN_BENCH_REDIRECT_FLAGS,
	},
};

static struct ftrace_ops kpgen_bench_ops[] = {
	{ .func = kpgen_bench_empty_cb },
	{ .func = kpgen_bench_preempt_cb },
	{ .func = kpgen_bench_guard_cb },
	{ .func = kpgen_bench_guard_nmi_cb },
	{ .func = kpgen_bench_redirect_cb, .flags = KPGEN_BENCH_REDIRECT_FLAGS },
	{ .func = kpgen_bench_hash_cb, .flags = KPGEN_BENCH_REDIRECT_FLAGS },
	{ .func = kpgen_bench_slot_cb, .flags = KPGEN_BENCH_REDIRECT_FLAGS },
};

/* What each ftrace_ops hooks, in the order of kpgen_bench_ops, then livepatch's. */
static const kpgen_bench_fn kpgen_bench_hooked[] = {
	kpgen_bench_ftrace, kpgen_bench_preempt, kpgen_bench_guard,
	kpgen_bench_guard_nmi,
	kpgen_bench_redirect, kpgen_bench_hash, kpgen_bench_slot,
	kpgen_bench_klp,
};

#define KPGEN_BENCH_HOOKS	ARRAY_SIZE(kpgen_bench_hooked)

static struct ftrace_ops *kpgen_bench_hook_ops(unsigned int i)
{
	return i < ARRAY_SIZE(kpgen_bench_ops) ? &kpgen_bench_ops[i] :
	       &kpgen_bench_klp_ops.fops;
}

/* The address ftrace hooks: the first byte, or the one after the ENDBR. */
static unsigned long kpgen_bench_ftrace_ip(kpgen_bench_fn fn)
{
	unsigned long addr = (unsigned long)fn;

	/* computed at run time: a reference to fn + 4 would be one past an ENDBR */
	OPTIMIZER_HIDE_VAR(addr);
#ifdef CONFIG_X86_KERNEL_IBT
	if (is_endbr(*(u32 *)addr))
		return addr + ENDBR_INSN_SIZE;
#endif
	return addr;
}

static bool kpgen_bench_hooked_now;

/* Sets up the lookups' one entry each, for their targets. */
static void kpgen_bench_fill(void)
{
	unsigned long ip, copy = (unsigned long)kpgen_bench_copy;

	ip = kpgen_bench_ftrace_ip(kpgen_bench_hash);
	kpgen_bench_entry.ip = ip;
	kpgen_bench_entry.new_func = kpgen_bench_copy;
	hash_add_rcu(kpgen_bench_table, &kpgen_bench_entry.node, ip);

	ip = kpgen_bench_ftrace_ip(kpgen_bench_slot);
	WRITE_ONCE(kpgen_bench_slots[hash_min(ip, KPGEN_BENCH_SLOT_BITS)],
		   (u32)ip | (copy << 32));

	kpgen_bench_klp_func.new_func = kpgen_bench_copy;
	list_add_rcu(&kpgen_bench_klp_func.stack_node,
		     &kpgen_bench_klp_ops.func_stack);
}

static void kpgen_bench_empty_out(void)
{
	unsigned long ip = kpgen_bench_ftrace_ip(kpgen_bench_slot);

	hash_del_rcu(&kpgen_bench_entry.node);
	WRITE_ONCE(kpgen_bench_slots[hash_min(ip, KPGEN_BENCH_SLOT_BITS)], 0);
	list_del_rcu(&kpgen_bench_klp_func.stack_node);
}

static void kpgen_bench_unhook(unsigned int nr)
{
	struct ftrace_ops *ops;

	while (nr-- > 0) {
		ops = kpgen_bench_hook_ops(nr);
		if (WARN_ON(unregister_ftrace_function(ops)))
			continue;
		ftrace_set_filter(ops, NULL, 0, 1);
	}
}

/* Hooks (on) or unhooks every target of this file with its callback. */
int kpgen_bench_hook(bool on)
{
	struct ftrace_ops *ops;
	unsigned int i;
	int ret;

	if (on == kpgen_bench_hooked_now)
		return 0;
	if (!on) {
		kpgen_bench_unhook(KPGEN_BENCH_HOOKS);
		/* no callback runs any more: the lookups' entries can go */
		synchronize_rcu_tasks();
		kpgen_bench_empty_out();
		kpgen_bench_hooked_now = false;
		return 0;
	}
	kpgen_bench_fill();
	for (i = 0; i < KPGEN_BENCH_HOOKS; i++) {
		ops = kpgen_bench_hook_ops(i);
		ret = ftrace_set_filter_ip(ops,
					   kpgen_bench_ftrace_ip(kpgen_bench_hooked[i]),
					   0, 1);
		if (!ret) {
			ret = register_ftrace_function(ops);
			if (ret)
				ftrace_set_filter(ops, NULL, 0, 1);
		}
		if (ret) {
			pr_err("cannot hook target %u: %d\n", i, ret);
			kpgen_bench_unhook(i);
			synchronize_rcu_tasks();
			kpgen_bench_empty_out();
			return ret;
		}
	}
	kpgen_bench_hooked_now = true;
	return 0;
}
