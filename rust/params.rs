// SPDX-License-Identifier: GPL-2.0

//! Module parameters.
//!
//! 6.12's `module!` macro has no parameters, so ffi/helpers.c registers them
//! with `module_param_cb()` and forwards to the functions here. The kernel
//! calls them while loading the module, before `init` runs, which is why the
//! values live in statics rather than in the module object.

use core::sync::atomic::{AtomicU8, Ordering};

use kernel::{error::code::EINVAL, ffi, str::CStr};

use crate::logic::params::FaultEngine;

static FAULT_ENGINE: AtomicU8 = AtomicU8::new(FaultEngine::DEFAULT as u8);

/// The fault engine new mounts use unless they choose one.
pub(crate) fn fault_engine() -> FaultEngine {
    FaultEngine::from_u8(FAULT_ENGINE.load(Ordering::Relaxed)).unwrap_or(FaultEngine::DEFAULT)
}

/// `kernel_param_ops::set` for `fault_engine`. A bad value returns -EINVAL;
/// the kernel then fails the load with one line naming oxdax and the value.
///
/// # Safety
///
/// `val` is NULL or a NUL-terminated string valid for the duration of the call.
#[no_mangle]
unsafe extern "C" fn oxdax_param_fault_engine_set(val: *const ffi::c_char) -> ffi::c_int {
    if val.is_null() {
        return EINVAL.to_errno();
    }
    // SAFETY: `val` is a NUL-terminated string valid for this call (above).
    let val = unsafe { CStr::from_char_ptr(val) };
    match FaultEngine::parse(val.as_bytes()) {
        Some(engine) => {
            FAULT_ENGINE.store(engine as u8, Ordering::Relaxed);
            0
        }
        None => EINVAL.to_errno(),
    }
}

/// The current `fault_engine` as a static NUL-terminated string, for
/// `kernel_param_ops::get`.
#[no_mangle]
extern "C" fn oxdax_param_fault_engine_name() -> *const ffi::c_char {
    fault_engine().c_name().as_ptr().cast()
}
