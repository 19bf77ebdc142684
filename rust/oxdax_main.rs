// SPDX-License-Identifier: GPL-2.0

//! oxdax: persistent memory for userspace, the fsdax way, in Rust.
//!
//! The crate is layered (Documentation/oxdax/design.rst): raw FFI in [`ffi`],
//! pure logic with no kernel dependency in [`logic`] (the same source is built
//! for host tests and for the userspace tools), and the module's subsystems
//! above them.

use kernel::prelude::*;

mod dax;
mod ffi;
mod fs;
pub mod logic;
mod params;
mod pmem;
mod sys;

module! {
    type: Oxdax,
    name: "oxdax",
    author: "The oxdax developers",
    description: "Persistent memory block/DAX driver and DAX filesystem",
    license: "GPL",
}

/// The logic's CRC-32C (`logic::format::crc32c`): the kernel's.
pub(crate) type Crc32cImpl = sys::crc32c::Kernel;

struct Oxdax {
    // Dropped in declaration order: the filesystem type goes before the
    // pmem driver, whose devices a mounted filesystem would use (mounts
    // hold a module reference, so none exists at unload).
    _fs: Pin<KBox<sys::fs::Registration<fs::OxdaxFs>>>,
    _pmem: Pin<KBox<sys::nd::Registration<pmem::PmemDriver>>>,
    // Mounts put their counters in it; none outlives the module.
    _debugfs: sys::debugfs::Root,
}

impl kernel::Module for Oxdax {
    fn init(module: &'static ThisModule) -> Result<Self> {
        // Every checksum on the media must match what mkfs and fsck
        // compute: a kernel whose crc32c() does not is refused here rather
        // than found to "corrupt" every filesystem it mounts.
        if !logic::format::crc32c::agrees_with_table::<Crc32cImpl>() {
            pr_err!("the kernel's crc32c() does not compute CRC-32C; not loading\n");
            return Err(EINVAL);
        }
        // Registering binds the namespaces already there (their devices are
        // logged before the version line).
        let debugfs = sys::debugfs::Root::create(kernel::c_str!("oxdax"));
        let pmem = KBox::pin_init(sys::nd::Registration::new(), GFP_KERNEL)?;
        let fs = sys::fs::Registration::<fs::OxdaxFs>::new(module)?;
        pr_info!(
            "version {} loaded (fault engine: {})\n",
            logic::VERSION,
            params::fault_engine().name()
        );
        Ok(Oxdax {
            _fs: fs,
            _pmem: pmem,
            _debugfs: debugfs,
        })
    }
}

impl Drop for Oxdax {
    fn drop(&mut self) {
        pr_info!("unloaded\n");
    }
}
