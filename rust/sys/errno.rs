// SPDX-License-Identifier: GPL-2.0

//! Errno values the `kernel` crate of 6.12 has no constant for, taken from
//! the kernel's own headers (`crate::ffi`) rather than written as numbers.

use kernel::error::{code, Error};

use crate::ffi;

/// The error for a positive errno constant of the kernel's headers (all of
/// which are far below `i32::MAX`; `EINVAL` for one that is not).
fn from_header(errno: u32) -> Error {
    i32::try_from(errno).map_or(code::EINVAL, |errno| Error::from_errno(-errno))
}

/// Operation not supported.
pub(crate) fn eopnotsupp() -> Error {
    from_header(ffi::EOPNOTSUPP)
}

/// Memory page has hardware error.
pub(crate) fn ehwpoison() -> Error {
    // bindings.h exports it as a c_int, which shadows the kernel crate's u32.
    from_header(ffi::EHWPOISON.unsigned_abs())
}

/// Structure needs cleaning (a damaged filesystem).
pub(crate) fn euclean() -> Error {
    from_header(ffi::EUCLEAN)
}

/// Directory not empty.
pub(crate) fn enotempty() -> Error {
    from_header(ffi::ENOTEMPTY)
}

/// File name too long.
pub(crate) fn enametoolong() -> Error {
    from_header(ffi::ENAMETOOLONG)
}

/// Stale file handle (a name or handle refers to a free inode).
pub(crate) fn estale() -> Error {
    from_header(ffi::ESTALE)
}

/// Unknown mount parameter: the VFS decides (`source`) or refuses it.
pub(crate) fn enoparam() -> Error {
    code::ENOPARAM
}
