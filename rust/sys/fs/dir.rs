// SPDX-License-Identifier: GPL-2.0

//! Open directories: iteration (`iterate_shared`, `struct dir_context`)
//! and positions, and the file operation table of directories. What a
//! directory's entries are is the filesystem's [`DirOperations::readdir`].
//!
//! Locking: `iterate_shared` runs with the directory's i_rwsem held
//! shared.

use core::{marker::PhantomData, ptr::NonNull};

use super::{file::file_inode, namei::DirOperations, to_c_int, FileOperations};
use crate::ffi;

/// The file operations of `T`'s directories.
pub(super) struct DirFileOps<T>(PhantomData<T>);

impl<T: DirOperations + FileOperations> DirFileOps<T> {
    pub(super) const OPS: ffi::file_operations = ffi::file_operations {
        llseek: Some(dir_llseek_callback),
        read: Some(ffi::generic_read_dir),
        iterate_shared: Some(iterate_shared_callback::<T>),
        fsync: if T::HAS_FSYNC {
            Some(super::file::fsync_callback::<T>)
        } else {
            None
        },
        // SAFETY: All-zero is a valid table: no operation.
        ..unsafe { core::mem::zeroed() }
    };
}

/// Where a `getdents` call is and where its entries go.
///
/// # Invariants
///
/// `ctx` is the live context of the current `iterate_shared` call (`'a`).
pub(crate) struct DirContext<'a> {
    ctx: NonNull<ffi::dir_context>,
    _call: PhantomData<&'a mut ffi::dir_context>,
}

impl DirContext<'_> {
    /// # Safety
    ///
    /// `ctx` is the live context of an `iterate_shared` call.
    pub(super) unsafe fn from_raw(ctx: *mut ffi::dir_context) -> Self {
        Self {
            // SAFETY: The VFS passes a valid context.
            ctx: unsafe { NonNull::new_unchecked(ctx) },
            _call: PhantomData,
        }
    }

    /// The position to continue from.
    pub(crate) fn pos(&self) -> u64 {
        // SAFETY: Live (type invariant).
        unsafe { (*self.ctx.as_ptr()).pos as u64 }
    }

    /// Sets the position (the file's offset after the call).
    pub(crate) fn set_pos(&mut self, pos: u64) {
        // SAFETY: Live, and ours to update during the call.
        unsafe { (*self.ctx.as_ptr()).pos = pos as i64 };
    }

    /// Hands one entry to the caller; `false` when its buffer is full (the
    /// entry was not taken). Copies to user memory: never call this with a
    /// filesystem lock held.
    pub(crate) fn emit(&mut self, name: &[u8], ino: u64, dtype: u8) -> bool {
        let Ok(len) = i32::try_from(name.len()) else {
            return false;
        };
        // SAFETY: The context is live; `name` is valid for `len` bytes.
        unsafe {
            ffi::oxdax_dir_emit(
                self.ctx.as_ptr(),
                name.as_ptr().cast(),
                len,
                ino,
                dtype.into(),
            )
        }
    }
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
unsafe extern "C" fn iterate_shared_callback<T: DirOperations>(
    file: *mut ffi::file,
    ctx: *mut ffi::dir_context,
) -> kernel::ffi::c_int {
    // SAFETY: Both live during the call.
    if !unsafe { ffi::oxdax_dir_emit_dots(file, ctx) } {
        return 0;
    }
    // SAFETY: `file` is an open directory of `T` (this is `T`'s directory
    // table), which pins its inode; `ctx` is this call's live context, and
    // both wrappers are locals that do not outlive the call.
    let (dir, mut ctx) = unsafe { (file_inode::<T>(file), DirContext::from_raw(ctx)) };
    to_c_int(T::readdir(dir, &mut ctx))
}
