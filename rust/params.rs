// SPDX-License-Identifier: GPL-2.0

//! Module parameters.
//!
//! 6.12's `module!` macro has no parameters, so ffi/helpers.c registers them
//! with `module_param_cb()` and forwards to the callbacks `sys::param`
//! defines around the functions here. The kernel
//! calls them while loading the module, before `init` runs, which is why the
//! values live in statics rather than in the module object.

use core::sync::atomic::{AtomicU8, Ordering};

use kernel::{error::code::EINVAL, prelude::*, str::CStr};

use crate::{logic::params::FaultEngine, sys::param::param_ops};

static FAULT_ENGINE: AtomicU8 = AtomicU8::new(FaultEngine::DEFAULT as u8);

/// The fault engine new mounts use unless they choose one.
pub(crate) fn fault_engine() -> FaultEngine {
    FaultEngine::from_u8(FAULT_ENGINE.load(Ordering::Relaxed)).unwrap_or(FaultEngine::DEFAULT)
}

/// Sets `fault_engine` from the user's text; a value that names no engine
/// is `EINVAL` (the kernel then fails the load, or the write to sysfs, with
/// one line naming oxdax and the value).
fn set_fault_engine(value: &[u8]) -> Result {
    let engine = FaultEngine::parse(value).ok_or(EINVAL)?;
    FAULT_ENGINE.store(engine as u8, Ordering::Relaxed);
    Ok(())
}

/// The current `fault_engine`'s name.
fn fault_engine_name() -> &'static CStr {
    // Every name is NUL-terminated without an inner NUL (a logic test
    // checks); an empty string would show if one were not.
    CStr::from_bytes_with_nul(fault_engine().c_name()).unwrap_or(kernel::c_str!(""))
}

param_ops!(
    oxdax_param_fault_engine_set,
    set_fault_engine,
    oxdax_param_fault_engine_name,
    fault_engine_name
);
