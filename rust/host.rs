// SPDX-License-Identifier: GPL-2.0

//! Host build of oxdax's pure logic (`rust/logic/`), for `cargo test` and the
//! userspace tools. The module compiles the very same files as `crate::logic`.

#![no_std]

#[cfg(test)]
extern crate std;

#[path = "logic/mod.rs"]
pub mod logic;

pub use logic::*;

#[cfg(test)]
mod tests {
    #[test]
    fn version_file_matches_cargo_manifest() {
        assert_eq!(super::VERSION, env!("CARGO_PKG_VERSION"));
    }
}
