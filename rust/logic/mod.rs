// SPDX-License-Identifier: GPL-2.0

//! Pure logic: no kernel dependency, no allocation unless a caller hands it
//! memory. The same files are compiled into oxdax.ko (as `crate::logic`) and,
//! through `rust/host.rs`, into the host crate that `cargo test` and the
//! userspace tools use. Nothing here may use `std` or `kernel`.

pub mod dax;
pub mod format;
pub mod fs;
pub mod params;
pub mod pmem;
#[cfg(test)]
pub(crate) mod testing;

/// oxdax's version: the `VERSION` file at the top of the tree, which also
/// feeds `MODULE_VERSION` and the host crate.
pub const VERSION: &str = trim_line_end(include_str!("../../VERSION"));

/// `s` without trailing ASCII whitespace, usable in constants on the
/// kernel's minimum Rust (1.78; `str::trim_ascii_end` is const since 1.80).
const fn trim_line_end(s: &str) -> &str {
    let mut bytes = s.as_bytes();
    while let [rest @ .., last] = bytes {
        if !last.is_ascii_whitespace() {
            break;
        }
        bytes = rest;
    }
    match core::str::from_utf8(bytes) {
        Ok(trimmed) => trimmed,
        // Unreachable: cutting ASCII off a `str` leaves valid UTF-8.
        Err(_) => s,
    }
}
