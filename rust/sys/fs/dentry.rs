// SPDX-License-Identifier: GPL-2.0

//! Dentries (`struct dentry`): names in directories.

use core::ptr::NonNull;

use super::{FileSystem, Inode};
use crate::ffi;

/// A dentry borrowed for a VFS call.
pub(crate) struct Dentry(NonNull<ffi::dentry>);

impl Dentry {
    /// # Safety
    ///
    /// `dentry` is live while the result is used, and its name stable (the
    /// VFS holds the parent's i_rwsem, or the dentry is being looked up).
    pub(crate) unsafe fn from_raw(dentry: *mut ffi::dentry) -> Self {
        // SAFETY: The VFS never passes a null dentry where one is due.
        Self(unsafe { NonNull::new_unchecked(dentry) })
    }

    /// The raw dentry.
    pub(crate) fn as_ptr(&self) -> *mut ffi::dentry {
        self.0.as_ptr()
    }

    /// The name (not NUL-terminated).
    pub(crate) fn name(&self) -> &[u8] {
        let mut len = 0;
        // SAFETY: The dentry is live and its name stable (type invariant).
        let name = unsafe { ffi::oxdax_dentry_name(self.0.as_ptr(), &mut len) };
        // SAFETY: `name` points to `len` bytes that live as long as `self`.
        unsafe { core::slice::from_raw_parts(name, len as usize) }
    }

    /// The inode, if the dentry is positive.
    pub(crate) fn inode<T: FileSystem>(&self) -> Option<Inode<T>> {
        // SAFETY: The dentry is live; a positive dentry of a super block of
        // `T` refers to an inode of `T`, alive as long as the dentry.
        let inode = unsafe { (*self.0.as_ptr()).d_inode };
        // SAFETY: Not null, so the dentry is positive and holds a reference
        // on `inode`, which stays attached while the `Dentry` is usable (its
        // invariant: parent's i_rwsem or lookup); a dentry of `T`'s super
        // block has an inode of `T`.
        (!inode.is_null()).then(|| unsafe { Inode::from_raw(inode) })
    }
}
