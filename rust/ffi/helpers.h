/* SPDX-License-Identifier: GPL-2.0 */
/*
 * C helpers: only what Rust cannot express (static inline functions, macros).
 * Declared here for bindgen; defined in helpers.c.
 */
#ifndef OXDAX_HELPERS_H
#define OXDAX_HELPERS_H

/*
 * Module parameters are registered with module_param_cb() (a macro) in
 * helpers.c; their values are parsed and kept in Rust (rust/params.rs), which
 * defines these functions.
 */
int oxdax_param_fault_engine_set(const char *val);
const char *oxdax_param_fault_engine_name(void);

#endif /* OXDAX_HELPERS_H */
