// SPDX-License-Identifier: GPL-2.0

//! Module parameters' C callbacks. 6.12's `module!` macro has no
//! parameters, so `ffi/helpers.c` registers each with `module_param_cb()`
//! and its `kernel_param_ops` call two functions by name; [`param_ops!`]
//! defines them around safe Rust functions, so that the raw string the
//! kernel passes is turned into bytes here and nowhere else.

/// Defines the C callbacks of one module parameter:
///
/// - `$set`: `kernel_param_ops::set`, called with the value the user gave
///   (NULL for a bare `name`); calls `$parse(&[u8]) -> Result` and returns
///   0 or its negative errno (the kernel then refuses the value with one
///   line naming the module and the parameter);
/// - `$show`: `kernel_param_ops::get`'s text, from
///   `$name() -> &'static CStr`.
macro_rules! param_ops {
    ($set:ident, $parse:path, $show:ident, $name:path) => {
        /// `kernel_param_ops::set` (see `sys::param`).
        ///
        /// # Safety
        ///
        /// `val` is NULL or a NUL-terminated string valid for the call, as
        /// the kernel passes it.
        #[no_mangle]
        unsafe extern "C" fn $set(val: *const kernel::ffi::c_char) -> kernel::ffi::c_int {
            if val.is_null() {
                return kernel::error::code::EINVAL.to_errno();
            }
            // SAFETY: `val` is a NUL-terminated string valid for this call
            // (the function's contract, which the kernel's param code
            // keeps).
            let val = unsafe { kernel::str::CStr::from_char_ptr(val) };
            match $parse(val.as_bytes()) {
                Ok(()) => 0,
                Err(e) => e.to_errno(),
            }
        }

        /// The current value as a static NUL-terminated string, for
        /// `kernel_param_ops::get`.
        #[no_mangle]
        extern "C" fn $show() -> *const kernel::ffi::c_char {
            let name: &'static kernel::str::CStr = $name();
            name.as_char_ptr()
        }
    };
}

pub(crate) use param_ops;
