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
    unnecessary_transmutes,
    clippy::all,
    clippy::as_underscore,
    clippy::undocumented_unsafe_blocks
)]
mod generated {
    // One namespace for every C item. Items kernel::bindings defines were
    // blocklisted at generation (scripts/module-bindgen) and come from this
    // glob; what is generated here is defined explicitly, and an explicit
    // item shadows a glob import: so the full definitions generated for
    // structs the kernel crate only declares opaquely win.
    #[allow(unused_imports)]
    pub use kernel::bindings::*;
    use kernel::ffi;

    include!("bindings_generated.rs");
}

#[allow(unused_imports)]
pub(crate) use generated::*;
