// SPDX-License-Identifier: GPL-2.0

//! A file's block map seen from the VFS: `fallocate`, `SEEK_DATA` and
//! `SEEK_HOLE`, reflink (`remap_file_range`) and `FIEMAP`, and the
//! [`ExtentOperations`] table a filesystem implements for them.
//!
//! Locking: each callback takes the inode's i_rwsem (both files' for a
//! remap, in the VFS's order) around the filesystem's method: shared for
//! the lookups (`SEEK_*`, `FIEMAP`), exclusive for the changes.

use core::marker::PhantomData;

use kernel::prelude::*;
use kernel::{build_error, error::VTABLE_DEFAULT_ERROR};

use super::{file::file_inode, to_c_int, FileSystem, Inode};
use crate::{ffi, sys::errno::eopnotsupp};

/// What a filesystem implements on its files' block maps. Each is
/// optional: without `fallocate`, `remap` or `fiemap` the VFS answers
/// `EOPNOTSUPP`; without `seek`, `SEEK_DATA`/`SEEK_HOLE` see the whole file
/// as data (`generic_file_llseek`).
#[vtable]
pub(crate) trait ExtentOperations: FileSystem {
    /// `fallocate` (i_rwsem held; a growing size was checked against the
    /// limits; times and privileges updated).
    fn fallocate(_inode: &Inode<Self>, _mode: Fallocate, _offset: u64, _len: u64) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// `SEEK_DATA` (`data`) or `SEEK_HOLE` from `offset` (i_rwsem held
    /// shared): the position found; `ENXIO` at or past the end of file.
    fn seek(_inode: &Inode<Self>, _offset: u64, _data: bool) -> Result<u64> {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Shares `len` bytes of `src` at `src_pos` with `dst` at `dst_pos`
    /// (both locked; the VFS checked alignment, limits and overlap).
    fn remap(
        _src: &Inode<Self>,
        _src_pos: u64,
        _dst: &Inode<Self>,
        _dst_pos: u64,
        _len: u64,
    ) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Reports the extents of `start..start + len` (i_rwsem held shared).
    fn fiemap(_inode: &Inode<Self>, _start: u64, _len: u64, _out: &mut Fiemap<'_>) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }
}

/// What `fallocate` asks for (the modes oxdax implements).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fallocate {
    /// Allocate the range (mode 0, or `KEEP_SIZE`: the size stays).
    Allocate {
        /// `FALLOC_FL_KEEP_SIZE`.
        keep_size: bool,
    },
    /// `FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE`.
    PunchHole,
    /// `FALLOC_FL_ZERO_RANGE`, with or without `KEEP_SIZE`.
    ZeroRange {
        /// `FALLOC_FL_KEEP_SIZE`.
        keep_size: bool,
    },
}

impl Fallocate {
    /// The mode of a `fallocate` call; `None` for modes oxdax does not
    /// implement (collapse, insert, unshare; the VFS refused the invalid
    /// combinations already).
    fn from_mode(mode: u32) -> Option<Self> {
        let keep_size = mode & ffi::FALLOC_FL_KEEP_SIZE != 0;
        match mode & !ffi::FALLOC_FL_KEEP_SIZE {
            0 => Some(Self::Allocate { keep_size }),
            ffi::FALLOC_FL_PUNCH_HOLE if keep_size => Some(Self::PunchHole),
            ffi::FALLOC_FL_ZERO_RANGE => Some(Self::ZeroRange { keep_size }),
            _ => None,
        }
    }

    /// Whether the size may grow.
    fn grows(self) -> bool {
        matches!(
            self,
            Self::Allocate { keep_size: false } | Self::ZeroRange { keep_size: false }
        )
    }
}

/// A `FIEMAP` request being answered.
///
/// # Invariants
///
/// `info` is the live request of the current `fiemap` call (`'a`).
pub(crate) struct Fiemap<'a> {
    info: core::ptr::NonNull<ffi::fiemap_extent_info>,
    _call: PhantomData<&'a mut ffi::fiemap_extent_info>,
}

/// Flags of a reported extent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ExtentFlags {
    /// Allocated, reads as zeros.
    pub(crate) unwritten: bool,
    /// Shared with another file (reflink).
    pub(crate) shared: bool,
    /// The file's last extent.
    pub(crate) last: bool,
}

impl Fiemap<'_> {
    /// Reports an extent; `Ok(false)` when the caller's buffer is full
    /// (stop), an error if copying to it failed.
    pub(crate) fn add(
        &mut self,
        logical: u64,
        physical: u64,
        len: u64,
        flags: ExtentFlags,
    ) -> Result<bool> {
        let mut bits = 0;
        if flags.unwritten {
            bits |= ffi::FIEMAP_EXTENT_UNWRITTEN;
        }
        if flags.shared {
            bits |= ffi::FIEMAP_EXTENT_SHARED;
        }
        if flags.last {
            bits |= ffi::FIEMAP_EXTENT_LAST;
        }
        // SAFETY: `info` is live during the call; this copies to the user
        // buffer it describes and may fault (no locks of ours are held
        // but i_rwsem, which page faults on oxdax files do not take).
        let ret = unsafe {
            ffi::fiemap_fill_next_extent(self.info.as_ptr(), logical, physical, len, bits)
        };
        match ret {
            0 => Ok(true),
            1 => Ok(false),
            e => Err(Error::from_errno(e)),
        }
    }
}

/// # Safety
///
/// VFS `llseek` contract for a regular file of `T`.
pub(super) unsafe extern "C" fn llseek_callback<T: ExtentOperations>(
    file: *mut ffi::file,
    offset: ffi::loff_t,
    whence: kernel::ffi::c_int,
) -> ffi::loff_t {
    let data = match whence as u32 {
        ffi::SEEK_DATA if T::HAS_SEEK => true,
        ffi::SEEK_HOLE if T::HAS_SEEK => false,
        // SAFETY: The file is open.
        _ => return unsafe { ffi::generic_file_llseek(file, offset, whence) },
    };
    let Ok(offset) = u64::try_from(offset) else {
        return kernel::error::code::ENXIO.to_errno().into();
    };
    // SAFETY: The file is open.
    let inode = unsafe { file_inode::<T>(file) };
    // Shared, as reads: the mapping must not change under the search.
    let found = {
        let _locked = inode.lock_shared();
        T::seek(inode, offset, data)
    };
    match found {
        // SAFETY: The file is open; `vfs_setpos` checks the limit.
        Ok(pos) => unsafe {
            ffi::vfs_setpos(file, pos as ffi::loff_t, T::MAX_BYTES as ffi::loff_t)
        },
        Err(e) => e.to_errno().into(),
    }
}

/// # Safety
///
/// VFS `fallocate` contract (the VFS checked the mode's combinations,
/// the range, write access and took freeze protection).
pub(super) unsafe extern "C" fn fallocate_callback<T: ExtentOperations>(
    file: *mut ffi::file,
    mode: kernel::ffi::c_int,
    offset: ffi::loff_t,
    len: ffi::loff_t,
) -> kernel::ffi::c_long {
    let Some(mode) = Fallocate::from_mode(mode as u32) else {
        return eopnotsupp().to_errno() as kernel::ffi::c_long;
    };
    let (offset, len) = (offset as u64, len as u64);
    // SAFETY: The file is open.
    let inode = unsafe { file_inode::<T>(file) };
    let raw = inode.as_ptr();
    // Exclusive, as writes: the mapping changes.
    let _locked = inode.lock();
    let end = offset.saturating_add(len);
    let mut ret = 0;
    if mode.grows() && end > inode.size() {
        // SAFETY: i_rwsem held.
        ret = unsafe { ffi::inode_newsize_ok(raw, end as ffi::loff_t) };
    }
    if ret == 0 {
        // SAFETY: i_rwsem held: setuid/setgid removal and times, as a
        // write.
        ret = unsafe { ffi::file_modified(file) };
    }
    if ret == 0 {
        ret = to_c_int(T::fallocate(inode, mode, offset, len));
    }
    ret as kernel::ffi::c_long
}

/// # Safety
///
/// VFS `remap_file_range` contract: both files of `T` on one super
/// block, `file_out` open for writing.
pub(super) unsafe extern "C" fn remap_file_range_callback<T: ExtentOperations>(
    file_in: *mut ffi::file,
    pos_in: ffi::loff_t,
    file_out: *mut ffi::file,
    pos_out: ffi::loff_t,
    len: ffi::loff_t,
    remap_flags: kernel::ffi::c_uint,
) -> ffi::loff_t {
    if remap_flags & !(ffi::REMAP_FILE_DEDUP | ffi::REMAP_FILE_ADVISORY) != 0 {
        return kernel::error::code::EINVAL.to_errno().into();
    }
    if remap_flags & ffi::REMAP_FILE_DEDUP != 0 {
        // Comparing DAX contents needs the iomap read path oxdax does not
        // use; deduplication is not offered.
        return eopnotsupp().to_errno().into();
    }
    // SAFETY: Both files are open.
    let (src, dst) = unsafe { (file_inode::<T>(file_in), file_inode::<T>(file_out)) };
    // SAFETY: Both live; the VFS's lock order for two files (same inode
    // is fine).
    unsafe { ffi::lock_two_nondirectories(src.as_ptr(), dst.as_ptr()) };
    let mut len = len;
    // SAFETY: Both inodes locked: limits, alignment, EOF rounding, times
    // and privileges of the destination.
    let mut ret = unsafe {
        ffi::generic_remap_file_range_prep(
            file_in,
            pos_in,
            file_out,
            pos_out,
            &mut len,
            remap_flags,
        )
    } as ffi::loff_t;
    if ret == 0 && len > 0 {
        ret = match T::remap(src, pos_in as u64, dst, pos_out as u64, len as u64) {
            Ok(()) => len,
            Err(e) => e.to_errno().into(),
        };
    }
    // SAFETY: Locked above.
    unsafe { ffi::unlock_two_nondirectories(src.as_ptr(), dst.as_ptr()) };
    ret
}

/// # Safety
///
/// VFS `fiemap` contract for a regular file of `T`.
pub(super) unsafe extern "C" fn fiemap_callback<T: ExtentOperations>(
    inode: *mut ffi::inode,
    info: *mut kernel::bindings::fiemap_extent_info,
    start: u64,
    len: u64,
) -> kernel::ffi::c_int {
    let mut len = len;
    let info = info.cast::<ffi::fiemap_extent_info>();
    // SAFETY: Both live (the same C type, declared twice by bindgen):
    // checks flags (none supported) and clamps the range to the limit.
    let ret = unsafe { ffi::fiemap_prep(inode, info, start, &mut len, 0) };
    if ret != 0 {
        return ret;
    }
    let Some(info) = core::ptr::NonNull::new(info) else {
        return EINVAL.to_errno();
    };
    // SAFETY: The VFS calls `fiemap` on a regular file of `T` (the table is
    // `T`'s) it holds a reference to for the call, which the wrapper does
    // not outlive.
    let inode = unsafe { Inode::<T>::from_raw(inode) };
    let _locked = inode.lock_shared();
    let mut out = Fiemap {
        info,
        _call: PhantomData,
    };
    to_c_int(T::fiemap(inode, start, len, &mut out))
}
