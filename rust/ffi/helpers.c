// SPDX-License-Identifier: GPL-2.0
/*
 * C helpers for oxdax: only what Rust cannot express (static inline
 * functions, macros). Keep each one tiny; logic belongs in Rust.
 */
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/sysfs.h>

#include "helpers.h"

MODULE_VERSION(OXDAX_VERSION);

/* Runs at insmod time, before the Rust module's init. */
static int fault_engine_set(const char *val, const struct kernel_param *kp)
{
	return oxdax_param_fault_engine_set(val);
}

static int fault_engine_get(char *buf, const struct kernel_param *kp)
{
	return sysfs_emit(buf, "%s\n", oxdax_param_fault_engine_name());
}

static const struct kernel_param_ops fault_engine_ops = {
	.set = fault_engine_set,
	.get = fault_engine_get,
};
module_param_cb(fault_engine, &fault_engine_ops, NULL, 0444);
MODULE_PARM_DESC(fault_engine,
		 "Default page-fault engine for oxdax mounts: oxdax (the module's own, default) or iomap (the kernel's dax_iomap_fault)");
