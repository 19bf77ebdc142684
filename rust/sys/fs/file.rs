// SPDX-License-Identifier: GPL-2.0

//! Open files (`struct file`, `struct kiocb`) and the file operations.

use core::{marker::PhantomData, ptr::NonNull};

use super::{dir::DirContext, iov::IovIter, to_c_int, FileSystem, Inode};
use crate::ffi;

/// A read or write request: the file position it works at.
pub(crate) struct Kiocb<'a, T: FileSystem> {
    iocb: NonNull<ffi::kiocb>,
    inode: Inode<T>,
    _call: PhantomData<&'a mut ffi::kiocb>,
}

impl<T: FileSystem> Kiocb<'_, T> {
    /// The file's inode.
    pub(crate) fn inode(&self) -> &Inode<T> {
        &self.inode
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

/// File operation tables of `T`. No `mmap` yet.
pub(super) struct FileOps<T: FileSystem>(PhantomData<T>);

impl<T: FileSystem> FileOps<T> {
    pub(super) const FILE: ffi::file_operations = ffi::file_operations {
        llseek: Some(ffi::generic_file_llseek),
        read_iter: Some(read_iter_callback::<T>),
        write_iter: Some(write_iter_callback::<T>),
        open: Some(open_callback),
        fsync: Some(fsync_callback::<T>),
        // SAFETY: All-zero is a valid table: no operation.
        ..unsafe { core::mem::zeroed() }
    };
    pub(super) const DIR: ffi::file_operations = ffi::file_operations {
        llseek: Some(dir_llseek_callback),
        read: Some(ffi::generic_read_dir),
        iterate_shared: Some(iterate_shared_callback::<T>),
        fsync: Some(fsync_callback::<T>),
        // SAFETY: All-zero is a valid table: no operation.
        ..unsafe { core::mem::zeroed() }
    };
}

/// The inode of an open file.
///
/// # Safety
///
/// `file` is live and belongs to `T`.
unsafe fn file_inode<T: FileSystem>(file: *mut ffi::file) -> Inode<T> {
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
unsafe extern "C" fn read_iter_callback<T: FileSystem>(
    iocb: *mut ffi::kiocb,
    iter: *mut ffi::iov_iter,
) -> isize {
    // SAFETY: Live during the call.
    let file = unsafe { (*iocb).ki_filp };
    // SAFETY: As above.
    let mut iter = unsafe { IovIter::from_raw(iter) };
    if iter.count() == 0 {
        return 0;
    }
    let mut kiocb = Kiocb {
        iocb: NonNull::from(
            // SAFETY: Live during the call.
            unsafe { &mut *iocb },
        ),
        // SAFETY: The file is open.
        inode: unsafe { file_inode::<T>(file) },
        _call: PhantomData,
    };
    let inode = kiocb.inode.as_ptr();
    // Shared: reads run concurrently; writes and truncation, which change
    // where the blocks are, take it exclusively.
    // SAFETY: The inode is live.
    unsafe { ffi::oxdax_inode_lock_shared(inode) };
    let result = T::read(&mut kiocb, &mut iter);
    // SAFETY: Locked above.
    unsafe { ffi::oxdax_inode_unlock_shared(inode) };
    // SAFETY: The file is open; atime is updated outside i_rwsem, as
    // ext4's DAX read does.
    unsafe { ffi::oxdax_file_accessed(file) };
    to_ssize(result)
}

/// # Safety
///
/// VFS `write_iter` contract for a regular file of `T`.
unsafe extern "C" fn write_iter_callback<T: FileSystem>(
    iocb: *mut ffi::kiocb,
    iter: *mut ffi::iov_iter,
) -> isize {
    // SAFETY: Live during the call.
    let file = unsafe { (*iocb).ki_filp };
    let mut kiocb = Kiocb {
        iocb: NonNull::from(
            // SAFETY: Live during the call.
            unsafe { &mut *iocb },
        ),
        // SAFETY: The file is open.
        inode: unsafe { file_inode::<T>(file) },
        _call: PhantomData,
    };
    let inode = kiocb.inode.as_ptr();
    // SAFETY: The inode is live.
    unsafe { ffi::oxdax_inode_lock(inode) };
    // SAFETY: i_rwsem held: limits, O_APPEND position, then setuid/setgid
    // removal, as every write does.
    let checked = unsafe { ffi::generic_write_checks(iocb, iter) };
    let result = if checked <= 0 {
        checked
    } else {
        // SAFETY: As above.
        match unsafe { ffi::file_remove_privs(file) } {
            0 => {
                // SAFETY: Live during the call.
                let mut iter = unsafe { IovIter::from_raw(iter) };
                to_ssize(T::write(&mut kiocb, &mut iter))
            }
            err => err as isize,
        }
    };
    // SAFETY: Locked above.
    unsafe { ffi::oxdax_inode_unlock(inode) };
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
/// VFS `fsync` contract.
unsafe extern "C" fn fsync_callback<T: FileSystem>(
    file: *mut ffi::file,
    _start: ffi::loff_t,
    _end: ffi::loff_t,
    _datasync: kernel::ffi::c_int,
) -> kernel::ffi::c_int {
    // SAFETY: The file is open.
    to_c_int(T::fsync(&unsafe { file_inode::<T>(file) }))
}

/// Directory positions are cookies up to `i64::MAX` (the end), not
/// bounded by the file size limit.
///
/// # Safety
///
/// VFS `llseek` contract.
unsafe extern "C" fn dir_llseek_callback(
    file: *mut ffi::file,
    offset: ffi::loff_t,
    whence: kernel::ffi::c_int,
) -> ffi::loff_t {
    // SAFETY: The file is open.
    unsafe {
        ffi::generic_file_llseek_size(
            file,
            offset,
            whence,
            ffi::MAX_LFS_FILESIZE,
            ffi::MAX_LFS_FILESIZE,
        )
    }
}

/// # Safety
///
/// VFS `iterate_shared` contract (directory i_rwsem held shared).
unsafe extern "C" fn iterate_shared_callback<T: FileSystem>(
    file: *mut ffi::file,
    ctx: *mut ffi::dir_context,
) -> kernel::ffi::c_int {
    // SAFETY: Both live during the call.
    if !unsafe { ffi::oxdax_dir_emit_dots(file, ctx) } {
        return 0;
    }
    // SAFETY: As above.
    let (dir, mut ctx) = unsafe { (file_inode::<T>(file), DirContext::from_raw(ctx)) };
    to_c_int(T::readdir(&dir, &mut ctx))
}
