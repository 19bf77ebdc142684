// SPDX-License-Identifier: GPL-2.0

//! Open regular files (`struct file`, `struct kiocb`): `read_iter`,
//! `write_iter`, `fsync`, `release`, and the [`FileOperations`] table a filesystem
//! implements for them; the file operation table of regular files, which
//! also carries the block-map ([`super::extents`]) and mapping
//! ([`super::mmap`]) operations.
//!
//! Locking: reads take the inode's i_rwsem shared, writes exclusively,
//! around the filesystem's method; `fsync` takes none.

use core::{marker::PhantomData, ptr::NonNull};

use kernel::prelude::*;
use kernel::{build_error, error::VTABLE_DEFAULT_ERROR};

use super::{extents, mmap, to_c_int, FileSystem, Inode, Operations};
use crate::{ffi, sys::iov::IovIter};

/// What a filesystem implements to move a file's data. Without `write`
/// the files are read-only (`EINVAL`); without `fsync`, `fsync(2)` fails
/// with `EINVAL`, as the VFS does for any file without it.
#[vtable]
pub(crate) trait FileOperations: FileSystem {
    /// Reads at the iocb's position (i_rwsem held shared, count non-zero).
    fn read(iocb: &mut Kiocb<'_, Self>, iter: &mut IovIter) -> Result<usize>;

    /// Writes at the iocb's position (i_rwsem held; checked, privileges
    /// removed).
    fn write(_iocb: &mut Kiocb<'_, Self>, _iter: &mut IovIter) -> Result<usize> {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// `fsync` of a file or directory; `first..=last`: the pages whose
    /// mapped stores must be written back.
    fn fsync(_inode: &Inode<Self>, _first: u64, _last: u64) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// The last reference to an open file opened for writing is gone (no
    /// lock held; other files of the inode may still be open).
    fn release(_inode: &Inode<Self>) {
        build_error!(VTABLE_DEFAULT_ERROR)
    }
}

/// A read or write request: the file position it works at.
///
/// # Invariants
///
/// `iocb` is the live request of the current `read_iter`/`write_iter`
/// call (`'a`), whose file is an open file of `T` with inode `inode`.
pub(crate) struct Kiocb<'a, T: FileSystem> {
    iocb: NonNull<ffi::kiocb>,
    inode: &'a Inode<T>,
    _call: PhantomData<&'a mut ffi::kiocb>,
}

impl<'a, T: FileSystem> Kiocb<'a, T> {
    /// # Safety
    ///
    /// `iocb` is live for `'a`, used by nobody else meanwhile, and its file
    /// is an open file of `T`.
    unsafe fn from_raw(iocb: *mut ffi::kiocb) -> Self {
        Self {
            // SAFETY: Live (this function's `# Safety`), so not null.
            iocb: unsafe { NonNull::new_unchecked(iocb) },
            // SAFETY: The file is an open file of `T` for `'a` (this
            // function's `# Safety`), which pins its inode.
            inode: unsafe { file_inode::<T>((*iocb).ki_filp) },
            _call: PhantomData,
        }
    }

    /// The file's inode.
    pub(crate) fn inode(&self) -> &'a Inode<T> {
        self.inode
    }

    /// The position.
    pub(crate) fn pos(&self) -> u64 {
        // SAFETY: Live during the call.
        unsafe { (*self.iocb.as_ptr()).ki_pos as u64 }
    }

    /// Moves the position (after bytes were transferred).
    pub(crate) fn set_pos(&mut self, pos: u64) {
        // SAFETY: Live during the call, ours to update.
        unsafe { (*self.iocb.as_ptr()).ki_pos = pos as i64 };
    }
}

/// The operation tables of `T`'s regular files.
pub(super) struct FileTables<T>(PhantomData<T>);

impl<T: Operations> FileTables<T> {
    pub(super) const FILE_OPS: ffi::file_operations = ffi::file_operations {
        llseek: Some(extents::llseek_callback::<T>),
        read_iter: Some(read_iter_callback::<T>),
        write_iter: if T::HAS_WRITE {
            Some(write_iter_callback::<T>)
        } else {
            None
        },
        open: Some(open_callback),
        release: if T::HAS_RELEASE {
            Some(release_callback::<T>)
        } else {
            None
        },
        fsync: if T::HAS_FSYNC {
            Some(fsync_callback::<T>)
        } else {
            None
        },
        fallocate: if T::HAS_FALLOCATE {
            Some(extents::fallocate_callback::<T>)
        } else {
            None
        },
        remap_file_range: if T::HAS_REMAP {
            Some(extents::remap_file_range_callback::<T>)
        } else {
            None
        },
        mmap: Some(mmap::mmap_callback::<T>),
        // Addresses that let PUDs and PMDs map the file.
        get_unmapped_area: Some(mmap::get_unmapped_area_callback),
        fop_flags: ffi::FOP_MMAP_SYNC,
        // sendfile, splice and copy_file_range's fallback (ranges a clone
        // cannot do): through read_iter/write_iter, no page cache.
        splice_read: Some(ffi::copy_splice_read),
        splice_write: Some(ffi::iter_file_splice_write),
        // SAFETY: All-zero is a valid table: no operation.
        ..unsafe { core::mem::zeroed() }
    };

    pub(super) const INODE_OPS: ffi::inode_operations = ffi::inode_operations {
        fiemap: if T::HAS_FIEMAP {
            Some(extents::fiemap_callback::<T>)
        } else {
            None
        },
        ..super::attr::AttrInodeOps::<T>::OPS
    };
}

/// The inode of an open file.
///
/// # Safety
///
/// `file` is live and belongs to `T`.
pub(super) unsafe fn file_inode<'a, T: FileSystem>(file: *mut ffi::file) -> &'a Inode<T> {
    // SAFETY: An open file's inode lives as long as the file.
    unsafe { Inode::from_raw((*file).f_inode) }
}

/// Turns a transfer result into `ssize_t`.
fn to_ssize(result: kernel::error::Result<usize>) -> isize {
    match result {
        Ok(n) => n as isize,
        Err(e) => e.to_errno() as isize,
    }
}

/// # Safety
///
/// VFS `read_iter` contract for a regular file of `T`.
unsafe extern "C" fn read_iter_callback<T: FileOperations>(
    iocb: *mut ffi::kiocb,
    iter: *mut ffi::iov_iter,
) -> isize {
    // SAFETY: Live during the call.
    let file = unsafe { (*iocb).ki_filp };
    // SAFETY: `iter` is this `read_iter` call's iterator (VFS contract), live
    // until it returns; the wrapper is a local that does not outlive the
    // call.
    let mut iter = unsafe { IovIter::from_raw(iter) };
    if iter.count() == 0 {
        return 0;
    }
    // SAFETY: Live during the call, its file open.
    let mut kiocb = unsafe { Kiocb::<T>::from_raw(iocb) };
    // Shared: reads run concurrently; writes and truncation, which change
    // where the blocks are, take it exclusively.
    let locked = kiocb.inode().lock_shared();
    let result = T::read(&mut kiocb, &mut iter);
    drop(locked);
    // SAFETY: The file is open; atime is updated outside i_rwsem, as
    // ext4's DAX read does.
    unsafe { ffi::oxdax_file_accessed(file) };
    to_ssize(result)
}

/// # Safety
///
/// VFS `write_iter` contract for a regular file of `T`.
unsafe extern "C" fn write_iter_callback<T: FileOperations>(
    iocb: *mut ffi::kiocb,
    iter: *mut ffi::iov_iter,
) -> isize {
    // SAFETY: Live during the call.
    let file = unsafe { (*iocb).ki_filp };
    // SAFETY: Live during the call, its file open.
    let mut kiocb = unsafe { Kiocb::<T>::from_raw(iocb) };
    let _locked = kiocb.inode().lock();
    // SAFETY: i_rwsem held: limits, O_APPEND position, then setuid/setgid
    // removal, as every write does.
    let checked = unsafe { ffi::generic_write_checks(iocb, iter) };
    let result = if checked <= 0 {
        checked
    } else {
        // SAFETY: `file` is the open file of the live `iocb`, and its inode's
        // i_rwsem is held exclusively (locked above), as file_remove_privs()
        // needs.
        match unsafe { ffi::file_remove_privs(file) } {
            0 => {
                // SAFETY: Live during the call.
                let mut iter = unsafe { IovIter::from_raw(iter) };
                to_ssize(T::write(&mut kiocb, &mut iter))
            }
            err => err as isize,
        }
    };
    // Data and metadata are durable when `write` returns: O_SYNC/O_DSYNC
    // need nothing more.
    result
}

/// # Safety
///
/// VFS `open` contract.
unsafe extern "C" fn open_callback(
    inode: *mut ffi::inode,
    file: *mut ffi::file,
) -> kernel::ffi::c_int {
    // SAFETY: Both live.
    let ret = unsafe { ffi::generic_file_open(inode, file) };
    if ret == 0 {
        // SAFETY: The file is being opened; its mode is ours to set.
        unsafe { ffi::oxdax_file_allow_odirect(file) };
    }
    ret
}

/// # Safety
///
/// VFS `release` contract for a regular file of `T`.
unsafe extern "C" fn release_callback<T: FileOperations>(
    _inode: *mut ffi::inode,
    file: *mut ffi::file,
) -> kernel::ffi::c_int {
    // SAFETY: The file is live until this returns.
    if unsafe { ffi::oxdax_file_writable(file) } {
        // SAFETY: The file is live, its inode one of `T`'s.
        T::release(unsafe { file_inode::<T>(file) });
    }
    0
}

/// # Safety
///
/// VFS `fsync` contract.
pub(super) unsafe extern "C" fn fsync_callback<T: FileOperations>(
    file: *mut ffi::file,
    start: ffi::loff_t,
    end: ffi::loff_t,
    _datasync: kernel::ffi::c_int,
) -> kernel::ffi::c_int {
    // Pages of the byte range (`end` inclusive, LLONG_MAX: to the end).
    let first = start.max(0) as u64 >> 12;
    let last = end.max(0) as u64 >> 12;
    // SAFETY: The file is open.
    to_c_int(T::fsync(unsafe { file_inode::<T>(file) }, first, last))
}
