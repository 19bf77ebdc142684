// SPDX-License-Identifier: GPL-2.0

//! Raw FFI: the module's own bindgen output and C helpers.
//!
//! This is the only layer that names C items directly. It adds nothing of its
//! own: safe wrappers around these live one layer up.

#[allow(
    dead_code,
    improper_ctypes,
    missing_docs,
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals,
    unreachable_pub,
    unsafe_op_in_unsafe_fn,
    clippy::all,
    clippy::undocumented_unsafe_blocks
)]
mod generated {
    // Types kernel::bindings already defines were blocklisted at generation
    // (scripts/module-bindgen); this import is where their names resolve.
    use kernel::bindings::*;
    use kernel::ffi;

    include!("bindings_generated.rs");
}

#[allow(unused_imports)]
pub(crate) use generated::*;
