// SPDX-License-Identifier: GPL-2.0

//! Inode attributes: `setattr` (chmod, chown, truncate, utimes),
//! `getattr` (stat) and `update_time`, and the [`AttrOperations`] table a
//! filesystem implements to store them.
//!
//! Locking: `setattr` runs with the inode's i_rwsem held (`notify_change`);
//! `update_time` and `getattr` without it.

use kernel::prelude::*;
use kernel::{build_error, error::VTABLE_DEFAULT_ERROR};

use super::{dentry::Dentry, to_c_int, FileSystem, Inode};
use crate::{ffi, logic::fs::AttrChange};

/// What a filesystem implements to store attribute changes. Without
/// `setattr` the VFS changes only its own inode (`simple_setattr`);
/// without `update_time` it marks the inode dirty.
#[vtable]
pub(crate) trait AttrOperations: FileSystem {
    /// Stores an attribute change the VFS validated and already applied
    /// to the VFS inode (`setattr_copy`); a size change truncates or
    /// extends. On failure, the filesystem restores the VFS inode.
    fn setattr(_inode: &Inode<Self>, _change: &AttrChange) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Timestamps the VFS wants updated (`touch_atime`, faults).
    fn update_time(_inode: &Inode<Self>, _change: &AttrChange) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }
}

/// The attribute operations every inode of `T` has; the per-type tables
/// add theirs to these.
pub(super) struct AttrInodeOps<T>(core::marker::PhantomData<T>);

impl<T: AttrOperations> AttrInodeOps<T> {
    pub(super) const OPS: ffi::inode_operations = ffi::inode_operations {
        setattr: if T::HAS_SETATTR {
            Some(setattr_callback::<T>)
        } else {
            None
        },
        getattr: Some(getattr_callback::<T>),
        update_time: if T::HAS_UPDATE_TIME {
            Some(update_time_callback::<T>)
        } else {
            None
        },
        // SAFETY: All-zero is a valid table: no operation.
        ..unsafe { core::mem::zeroed() }
    };
}

/// # Safety
///
/// VFS `setattr` contract: the inode's i_rwsem held.
unsafe extern "C" fn setattr_callback<T: AttrOperations>(
    idmap: *mut kernel::bindings::mnt_idmap,
    dentry: *mut ffi::dentry,
    attr: *mut ffi::iattr,
) -> kernel::ffi::c_int {
    // SAFETY: `notify_change` holds a reference on `dentry`, a dentry of `T`,
    // and its inode's i_rwsem for the call; only the inode is read, not the
    // name.
    let dentry_ref = unsafe { Dentry::<T>::from_raw(dentry) };
    let Some(inode) = dentry_ref.inode() else {
        return ENOENT.to_errno();
    };
    // SAFETY: `idmap`, `dentry` and `attr` are this call's live arguments,
    // and the inode's i_rwsem is held (`notify_change`), as setattr_prepare
    // expects.
    let ret = unsafe { ffi::setattr_prepare(idmap, dentry, attr) };
    if ret != 0 {
        return ret;
    }
    // SAFETY: `attr` is this `setattr` call's live request (`notify_change`
    // passes it), only read here.
    let (valid, new_size) = unsafe { ((*attr).ia_valid, (*attr).ia_size) };
    let size = (valid & ffi::ATTR_SIZE != 0).then_some(new_size as u64);
    // A shrinking size: the filesystem unmaps what lies past the new end
    // before it frees the blocks (under the invalidate lock).
    // SAFETY: Validated above; applies owner, mode and times to the VFS
    // inode, whose values are then stored.
    unsafe { ffi::setattr_copy(idmap, inode.as_ptr(), attr) };
    let (atime, mtime, ctime) = inode.times();
    let change = AttrChange {
        mode: (valid & ffi::ATTR_MODE != 0).then(|| inode.mode() & 0o7777),
        uid: (valid & ffi::ATTR_UID != 0).then(|| inode.uid()),
        gid: (valid & ffi::ATTR_GID != 0).then(|| inode.gid()),
        size,
        atime: (valid & ffi::ATTR_ATIME != 0).then_some(atime),
        mtime: (valid & ffi::ATTR_MTIME != 0).then_some(mtime),
        ctime: (valid & ffi::ATTR_CTIME != 0).then_some(ctime),
    };
    if change == AttrChange::default() {
        return 0;
    }
    to_c_int(T::setattr(inode, &change))
}

/// # Safety
///
/// VFS `getattr` contract.
unsafe extern "C" fn getattr_callback<T: AttrOperations>(
    idmap: *mut kernel::bindings::mnt_idmap,
    path: *const ffi::path,
    stat: *mut ffi::kstat,
    request_mask: u32,
    _flags: kernel::ffi::c_uint,
) -> kernel::ffi::c_int {
    // SAFETY: The path's dentry is positive and live.
    let inode = unsafe { Inode::<T>::from_raw((*(*path).dentry).d_inode) };
    // SAFETY: All live; `stat` is ours to fill.
    unsafe {
        ffi::generic_fillattr(idmap, request_mask, inode.as_ptr(), stat);
        (*stat).btime = inode.btime();
        (*stat).result_mask |= ffi::STATX_BTIME;
    }
    0
}

/// # Safety
///
/// VFS `update_time` contract.
unsafe extern "C" fn update_time_callback<T: AttrOperations>(
    inode: *mut ffi::inode,
    flags: kernel::ffi::c_int,
) -> kernel::ffi::c_int {
    // SAFETY: The VFS calls `update_time` on an inode of `T` (the table is
    // `T`'s) that it holds a reference to for the call, which the wrapper
    // does not outlive.
    let inode = unsafe { Inode::<T>::from_raw(inode) };
    let now = inode.now();
    let change = AttrChange {
        atime: (flags & ffi::S_ATIME != 0).then_some(now),
        mtime: (flags & ffi::S_MTIME != 0).then_some(now),
        ctime: (flags & ffi::S_CTIME != 0).then_some(now),
        ..AttrChange::default()
    };
    if change == AttrChange::default() {
        return 0;
    }
    to_c_int(T::update_time(inode, &change))
}
