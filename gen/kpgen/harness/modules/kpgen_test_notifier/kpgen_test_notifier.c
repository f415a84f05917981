// SPDX-License-Identifier: GPL-2.0-only
/*
 * kpgen_test_notifier: a module notifier that runs before every other one
 * and, for the module named by the parameter refuse, waits delay_ms and then
 * makes its load fail.  The module stays in the COMING state meanwhile,
 * without the kpatch core having seen it come.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/delay.h>
#include <linux/limits.h>
#include <linux/module.h>
#include <linux/notifier.h>
#include <linux/string.h>

static char refuse[MODULE_NAME_LEN];
module_param_string(refuse, refuse, sizeof(refuse), 0644);
MODULE_PARM_DESC(refuse, "the module whose load fails");

static unsigned int delay_ms = 3000;
module_param(delay_ms, uint, 0644);
MODULE_PARM_DESC(delay_ms, "how long the module stays coming before it fails");

static int kpgen_test_notify(struct notifier_block *nb, unsigned long action,
			     void *data)
{
	struct module *mod = data;

	if (action != MODULE_STATE_COMING || strcmp(mod->name, refuse))
		return NOTIFY_DONE;
	pr_notice("holding module '%s' for %u ms, then refusing it\n",
		  mod->name, delay_ms);
	msleep(delay_ms);
	return notifier_from_errno(-EINVAL);
}

static struct notifier_block kpgen_test_nb = {
	.notifier_call = kpgen_test_notify,
	.priority = INT_MAX,
};

static int __init kpgen_test_notifier_init(void)
{
	return register_module_notifier(&kpgen_test_nb);
}

static void __exit kpgen_test_notifier_exit(void)
{
	unregister_module_notifier(&kpgen_test_nb);
}

module_init(kpgen_test_notifier_init);
module_exit(kpgen_test_notifier_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("A module notifier that fails one module's load, for kpgen's boot tests");
