// SPDX-License-Identifier: GPL-2.0

//! Dentries (`struct dentry`): names in directories.

use core::marker::PhantomData;

use kernel::types::Opaque;

use super::{FileSystem, Inode};
use crate::ffi;

/// A dentry of a super block of `T`, handed out as a reference for one VFS
/// call.
///
/// # Invariants
///
/// The wrapped dentry belongs to a super block of `T` and is live for the
/// lifetime of every reference to this wrapper; its name and inode are
/// stable meanwhile (the VFS holds its parent's i_rwsem, or the dentry is
/// being looked up).
#[repr(transparent)]
pub(crate) struct Dentry<T: FileSystem>(Opaque<ffi::dentry>, PhantomData<T>);

impl<T: FileSystem> Dentry<T> {
    /// The wrapper of a raw dentry.
    ///
    /// # Safety
    ///
    /// `dentry` is a dentry of a super block of `T`, live for `'a`, whose
    /// name and inode stay as they are for `'a` (the VFS holds its parent's
    /// i_rwsem, or the dentry is being looked up).
    pub(crate) unsafe fn from_raw<'a>(dentry: *mut ffi::dentry) -> &'a Self {
        // SAFETY: `Dentry` is a transparent wrapper of the dentry, which is
        // live for `'a` (this function's `# Safety`).
        unsafe { &*dentry.cast::<Self>() }
    }

    /// The raw dentry.
    pub(crate) fn as_ptr(&self) -> *mut ffi::dentry {
        self.0.get()
    }

    /// The name (not NUL-terminated).
    pub(crate) fn name(&self) -> &[u8] {
        let mut len = 0;
        // SAFETY: The dentry is live and its name stable (type invariant).
        let name = unsafe { ffi::oxdax_dentry_name(self.as_ptr(), &mut len) };
        // SAFETY: `name` points to `len` bytes that stay as they are while
        // the name is stable, which is as long as `self` (type invariant).
        unsafe { core::slice::from_raw_parts(name, len as usize) }
    }

    /// The inode, if the dentry is positive.
    pub(crate) fn inode(&self) -> Option<&Inode<T>> {
        // SAFETY: The dentry is live (type invariant); `d_inode` is stable
        // while it is (type invariant).
        let inode = unsafe { (*self.as_ptr()).d_inode };
        // SAFETY: Not null, so the dentry is positive and holds a reference
        // on `inode`, which stays attached as long as `self` (type
        // invariant); a dentry of `T`'s super block has an inode of `T`.
        (!inode.is_null()).then(|| unsafe { Inode::from_raw(inode) })
    }
}
