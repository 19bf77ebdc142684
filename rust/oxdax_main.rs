// SPDX-License-Identifier: GPL-2.0

//! oxdax: persistent memory for userspace, the fsdax way, in Rust.
//!
//! The crate is layered (Documentation/oxdax/design.rst): raw FFI in [`ffi`],
//! pure logic with no kernel dependency in [`logic`] (the same source is built
//! for host tests and for the userspace tools), and the module's subsystems
//! above them.

use kernel::prelude::*;

mod ffi;
pub mod logic;
mod params;

module! {
    type: Oxdax,
    name: "oxdax",
    author: "The oxdax developers",
    description: "Persistent memory block/DAX driver and DAX filesystem",
    license: "GPL",
}

struct Oxdax;

impl kernel::Module for Oxdax {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        pr_info!(
            "version {} loaded (fault engine: {})\n",
            logic::VERSION,
            params::fault_engine().name()
        );
        Ok(Oxdax)
    }
}

impl Drop for Oxdax {
    fn drop(&mut self) {
        pr_info!("unloaded\n");
    }
}
