// SPDX-License-Identifier: GPL-2.0

//! Thin safe wrappers around the kernel objects oxdax uses.
//!
//! Every `unsafe` block of the module outside `ffi` lives in this layer, each
//! with its `// SAFETY:` argument. A wrapper owns one kernel object's
//! lifetime rule (who frees it, when it may be used) and exposes safe methods;
//! the subsystems above never touch a raw pointer.

pub(crate) mod badblocks;
pub(crate) mod block;
pub(crate) mod crc32c;
pub(crate) mod dax;
pub(crate) mod daxdisk;
pub(crate) mod debugfs;
pub(crate) mod errno;
pub(crate) mod fs;
pub(crate) mod iomap;
pub(crate) mod iov;
pub(crate) mod memory;
pub(crate) mod mm;
pub(crate) mod nd;
pub(crate) mod once;
pub(crate) mod pagemap;
pub(crate) mod param;

use kernel::error::{Error, Result};

/// Lets the scheduler run another task if this one has run long enough;
/// may sleep, so only for process context without spinlocks held (the
/// debug kernel's `might_resched` check says so loudly otherwise).
pub(crate) fn cond_resched() {
    // SAFETY: no arguments, no memory touched; sleeping is allowed in the
    // contexts documented above.
    unsafe { crate::ffi::oxdax_cond_resched() }
}

/// Turns a C `long` result (count or negative errno) into a `Result`.
pub(crate) fn to_count(ret: i64) -> Result<u64> {
    if ret < 0 {
        let errno = i32::try_from(ret).unwrap_or(-(crate::ffi::EINVAL as i32));
        Err(Error::from_errno(errno))
    } else {
        Ok(ret.unsigned_abs())
    }
}
