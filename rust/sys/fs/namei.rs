// SPDX-License-Identifier: GPL-2.0

//! Names in directories: the directory inode operations (`lookup`,
//! `create`, `mkdir`, `mknod`, `link`, `unlink`, `rmdir`, `rename`) and
//! the [`DirOperations`] table a filesystem implements for them.
//!
//! Locking (Documentation/filesystems/locking.rst): the VFS holds the
//! directories' i_rwsem (and the victims' for removals) around every
//! callback here; the filesystem's methods run with them held.

use kernel::{build_error, error::VTABLE_DEFAULT_ERROR};
use kernel::{prelude::*, types::ARef};

use super::{
    dentry::Dentry,
    inode::{fill_with, iget},
    to_c_int, Attributes, DirContext, FileSystem, Inode, NewOwner, Operations,
};
use crate::ffi;

/// What a filesystem implements for its directories. Without `create`,
/// `link`, `unlink`, `rmdir` or `rename`, the VFS refuses that operation
/// (`EPERM`), as for any filesystem that leaves the operation out.
#[vtable]
pub(crate) trait DirOperations: FileSystem {
    /// `name` in `dir`, `None` if there is no such entry.
    fn lookup(dir: &Inode<Self>, name: &[u8]) -> Result<Option<u64>>;

    /// Creates `name` in `dir` (files, directories, device nodes, FIFOs and
    /// sockets); returns the new inode number and its attributes as
    /// committed (the new VFS inode is filled from them, with no second
    /// read of the record).
    fn create(_dir: &Inode<Self>, _name: &[u8], _owner: &NewOwner) -> Result<(u64, Attributes)> {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// A new name for `inode`.
    fn link(_inode: &Inode<Self>, _dir: &Inode<Self>, _name: &[u8]) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Removes `name` (which refers to `victim`, not a directory).
    fn unlink(_dir: &Inode<Self>, _name: &[u8], _victim: &Inode<Self>) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Removes the empty directory `name` (`victim`).
    fn rmdir(_dir: &Inode<Self>, _name: &[u8], _victim: &Inode<Self>) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Renames; `replaced` is what `new_name` referred to.
    #[allow(clippy::too_many_arguments)]
    fn rename(
        _old_dir: &Inode<Self>,
        _old_name: &[u8],
        _moved: &Inode<Self>,
        _new_dir: &Inode<Self>,
        _new_name: &[u8],
        _replaced: Option<&Inode<Self>>,
        _no_replace: bool,
    ) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Emits directory entries from `ctx.pos()` (at least 2: the wrapper
    /// emitted `.` and `..`).
    fn readdir(dir: &Inode<Self>, ctx: &mut DirContext<'_>) -> Result;
}

/// The inode operations of `T`'s directories.
pub(super) struct DirInodeOps<T>(core::marker::PhantomData<T>);

impl<T: Operations> DirInodeOps<T> {
    pub(super) const OPS: ffi::inode_operations = ffi::inode_operations {
        lookup: Some(lookup_callback::<T>),
        create: if T::HAS_CREATE {
            Some(create_callback::<T>)
        } else {
            None
        },
        mkdir: if T::HAS_CREATE {
            Some(mkdir_callback::<T>)
        } else {
            None
        },
        mknod: if T::HAS_CREATE {
            Some(mknod_callback::<T>)
        } else {
            None
        },
        link: if T::HAS_LINK {
            Some(link_callback::<T>)
        } else {
            None
        },
        unlink: if T::HAS_UNLINK {
            Some(unlink_callback::<T>)
        } else {
            None
        },
        rmdir: if T::HAS_RMDIR {
            Some(rmdir_callback::<T>)
        } else {
            None
        },
        rename: if T::HAS_RENAME {
            Some(rename_callback::<T>)
        } else {
            None
        },
        ..super::attr::AttrInodeOps::<T>::OPS
    };
}

/// An `ERR_PTR`.
fn err_ptr<P>(e: Error) -> *mut P {
    e.to_errno() as isize as *mut P
}

/// # Safety
///
/// Called by the VFS with a live directory of `T` (i_rwsem held at least
/// shared) and a negative dentry in it.
unsafe extern "C" fn lookup_callback<T: Operations>(
    dir: *mut ffi::inode,
    dentry: *mut ffi::dentry,
    _flags: kernel::ffi::c_uint,
) -> *mut ffi::dentry {
    // SAFETY: The VFS calls `lookup` with `dir`, a directory of `T` (the
    // table is `T`'s) it holds with i_rwsem taken, and `dentry`, a negative
    // dentry being looked up in it whose name is stable: both live for the
    // call, which the wrappers do not outlive.
    let (dir, dentry) = unsafe { (Inode::<T>::from_raw(dir), Dentry::<T>::from_raw(dentry)) };
    let inode = match T::lookup(dir, dentry.name()) {
        Ok(Some(ino)) => match iget(dir.super_block(), ino) {
            Ok(inode) => ARef::into_raw(inode).as_ptr().cast(),
            Err(e) => return err_ptr(e),
        },
        Ok(None) => core::ptr::null_mut(),
        Err(e) => return err_ptr(e),
    };
    // SAFETY: `inode` is null or a reference we own, which this consumes.
    unsafe { ffi::d_splice_alias(inode, dentry.as_ptr()) }
}

/// Creates an inode for `dentry` in `dir`: the VFS computes its owner and
/// mode, the filesystem stores it, then it is hashed, filled and
/// instantiated.
///
/// # Safety
///
/// `dir` is a live directory of `T` with i_rwsem held; `dentry` is a
/// negative dentry in it; `idmap` is the mount's.
unsafe fn make_node<T: Operations>(
    idmap: *mut kernel::bindings::mnt_idmap,
    dir: *mut ffi::inode,
    dentry: *mut ffi::dentry,
    mode: ffi::umode_t,
    rdev: ffi::dev_t,
) -> Result {
    // SAFETY: `dir` is a live directory of `T` with i_rwsem held (this
    // function's `# Safety`), live for the call the wrapper does not
    // outlive.
    let dir_ref = unsafe { Inode::<T>::from_raw(dir) };
    // SAFETY: `dentry` is a negative dentry in `dir` (this function's
    // `# Safety`): live, its name stable, for the call.
    let dentry_ref = unsafe { Dentry::<T>::from_raw(dentry) };
    let sb = dir_ref.super_block();
    // SAFETY: `sb` is live.
    let inode = unsafe { ffi::new_inode(sb.as_ptr()) };
    if inode.is_null() {
        return Err(ENOMEM);
    }
    // SAFETY: `inode` is new and ours; `dir` and `idmap` are live.
    unsafe { ffi::inode_init_owner(idmap, inode, dir, mode) };
    // SAFETY: `inode` was allocated by `new_inode` on `sb`, a super block of
    // `T`, and our reference keeps it live until `iput` or
    // `d_instantiate_new` below, after the last use of `new`.
    let new = unsafe { Inode::<T>::from_raw(inode) };
    let owner = NewOwner {
        mode: new.mode(),
        uid: new.uid(),
        gid: new.gid(),
        rdev: crate::logic::format::inode::encode_dev(rdev),
    };
    let (ino, attrs) = match T::create(dir_ref, dentry_ref.name(), &owner) {
        Ok(created) => created,
        Err(e) => {
            // SAFETY: Not filled, so eviction leaves the media alone.
            unsafe { ffi::iput(inode) };
            return Err(e);
        }
    };
    // SAFETY: Still ours: give it its number and hash it, locked new.
    unsafe { (*inode).i_ino = ino as _ };
    // SAFETY: `inode` is live (our reference from `new_inode`) and not hashed
    // yet, so nobody else sees it; this hashes it locked (`I_NEW`) for the
    // fill.
    if unsafe { ffi::insert_inode_locked(inode) } != 0 {
        // SAFETY: Not filled, not hashed: its eviction leaves the media
        // alone.
        unsafe { ffi::iput(inode) };
        // Another inode with this number is cached. The number was free
        // until the create committed, so whoever looked it up since
        // (background compaction, a file handle) read the new record: use
        // their inode. A cached inode of another type means damage.
        let existing = iget(sb, ino)?;
        if existing.mode() != owner.mode {
            pr_err!("{}: new inode {} is already in use\n", sb.id(), ino);
            return Err(EIO);
        }
        // SAFETY: `dentry` is a negative dentry of `dir` (this function's
        // `# Safety`); `d_instantiate` takes over our reference.
        unsafe { ffi::d_instantiate(dentry, ARef::into_raw(existing).as_ptr().cast()) };
        return Ok(());
    }
    // SAFETY: Locked new, number set.
    if let Err(e) = unsafe { fill_with::<T>(inode, &attrs) } {
        // SAFETY: Marks it bad, unlocks and drops the reference.
        unsafe { ffi::iget_failed(inode) };
        return Err(e);
    }
    // SAFETY: Consumes our reference and unlocks the new inode.
    unsafe { ffi::d_instantiate_new(dentry, inode) };
    Ok(())
}

/// # Safety
///
/// VFS `create` contract.
unsafe extern "C" fn create_callback<T: Operations>(
    idmap: *mut kernel::bindings::mnt_idmap,
    dir: *mut ffi::inode,
    dentry: *mut ffi::dentry,
    mode: ffi::umode_t,
    _excl: bool,
) -> kernel::ffi::c_int {
    // SAFETY: The VFS calls this with `dir`, a directory of `T` (the table is
    // `T`'s) whose i_rwsem it holds, a negative `dentry` in it and the
    // mount's `idmap`, all live for the call: what `make_node` requires.
    to_c_int(unsafe { make_node::<T>(idmap, dir, dentry, mode | ffi::S_IFREG as ffi::umode_t, 0) })
}

/// # Safety
///
/// VFS `mkdir` contract.
unsafe extern "C" fn mkdir_callback<T: Operations>(
    idmap: *mut kernel::bindings::mnt_idmap,
    dir: *mut ffi::inode,
    dentry: *mut ffi::dentry,
    mode: ffi::umode_t,
) -> kernel::ffi::c_int {
    // SAFETY: The VFS calls this with `dir`, a directory of `T` (the table is
    // `T`'s) whose i_rwsem it holds, a negative `dentry` in it and the
    // mount's `idmap`, all live for the call: what `make_node` requires.
    to_c_int(unsafe { make_node::<T>(idmap, dir, dentry, mode | ffi::S_IFDIR as ffi::umode_t, 0) })
}

/// # Safety
///
/// VFS `mknod` contract.
unsafe extern "C" fn mknod_callback<T: Operations>(
    idmap: *mut kernel::bindings::mnt_idmap,
    dir: *mut ffi::inode,
    dentry: *mut ffi::dentry,
    mode: ffi::umode_t,
    rdev: ffi::dev_t,
) -> kernel::ffi::c_int {
    // SAFETY: The VFS calls this with `dir`, a directory of `T` (the table is
    // `T`'s) whose i_rwsem it holds, a negative `dentry` in it and the
    // mount's `idmap`, all live for the call: what `make_node` requires.
    to_c_int(unsafe { make_node::<T>(idmap, dir, dentry, mode, rdev) })
}

/// # Safety
///
/// VFS `link` contract: `old` is positive, `dir` locked, `new` negative.
unsafe extern "C" fn link_callback<T: Operations>(
    old: *mut ffi::dentry,
    dir: *mut ffi::inode,
    new: *mut ffi::dentry,
) -> kernel::ffi::c_int {
    // SAFETY: The VFS holds `dir`'s i_rwsem (a directory of `T`: the table is
    // `T`'s), references `old`, positive, with its inode locked, and `new`,
    // negative in `dir`; all live for the call, and only `new`'s name, stable
    // under `dir`'s lock, is read.
    let (old, dir, new) = unsafe {
        (
            Dentry::<T>::from_raw(old),
            Inode::<T>::from_raw(dir),
            Dentry::<T>::from_raw(new),
        )
    };
    let Some(inode) = old.inode() else {
        return ENOENT.to_errno();
    };
    if let Err(e) = T::link(inode, dir, new.name()) {
        return e.to_errno();
    }
    // SAFETY: The new dentry takes a reference of its own.
    unsafe {
        ffi::ihold(inode.as_ptr());
        ffi::d_instantiate(new.as_ptr(), inode.as_ptr());
    }
    0
}

/// # Safety
///
/// VFS `unlink` contract: `dir` and the victim locked.
unsafe extern "C" fn unlink_callback<T: Operations>(
    dir: *mut ffi::inode,
    dentry: *mut ffi::dentry,
) -> kernel::ffi::c_int {
    // SAFETY: The VFS holds the i_rwsem of `dir` (a directory of `T`: the
    // table is `T`'s) and of the victim, and a reference on `dentry`; both
    // live for the call, and `dentry`'s name is stable under `dir`'s lock.
    let (dir, dentry) = unsafe { (Inode::<T>::from_raw(dir), Dentry::<T>::from_raw(dentry)) };
    match dentry.inode() {
        Some(victim) => to_c_int(T::unlink(dir, dentry.name(), victim)),
        None => ENOENT.to_errno(),
    }
}

/// # Safety
///
/// VFS `rmdir` contract.
unsafe extern "C" fn rmdir_callback<T: Operations>(
    dir: *mut ffi::inode,
    dentry: *mut ffi::dentry,
) -> kernel::ffi::c_int {
    // SAFETY: The VFS holds the i_rwsem of `dir` (a directory of `T`: the
    // table is `T`'s) and of the victim, and a reference on `dentry`; both
    // live for the call, and `dentry`'s name is stable under `dir`'s lock.
    let (dir, dentry) = unsafe { (Inode::<T>::from_raw(dir), Dentry::<T>::from_raw(dentry)) };
    match dentry.inode() {
        Some(victim) => to_c_int(T::rmdir(dir, dentry.name(), victim)),
        None => ENOENT.to_errno(),
    }
}

/// # Safety
///
/// VFS `rename` contract: both directories and both inodes locked.
unsafe extern "C" fn rename_callback<T: Operations>(
    _idmap: *mut kernel::bindings::mnt_idmap,
    old_dir: *mut ffi::inode,
    old_dentry: *mut ffi::dentry,
    new_dir: *mut ffi::inode,
    new_dentry: *mut ffi::dentry,
    flags: kernel::ffi::c_uint,
) -> kernel::ffi::c_int {
    // RENAME_EXCHANGE and RENAME_WHITEOUT are not implemented.
    if flags & !ffi::RENAME_NOREPLACE != 0 {
        return EINVAL.to_errno();
    }
    // SAFETY: The VFS holds both directories' i_rwsem (`lock_rename`;
    // directories of `T`: the table is `T`'s) and references on both
    // dentries; all live for the call, and their names are stable under the
    // directory locks.
    let (old_dir, old_dentry, new_dir, new_dentry) = unsafe {
        (
            Inode::<T>::from_raw(old_dir),
            Dentry::<T>::from_raw(old_dentry),
            Inode::<T>::from_raw(new_dir),
            Dentry::<T>::from_raw(new_dentry),
        )
    };
    let Some(moved) = old_dentry.inode() else {
        return ENOENT.to_errno();
    };
    let replaced = new_dentry.inode();
    to_c_int(T::rename(
        old_dir,
        old_dentry.name(),
        moved,
        new_dir,
        new_dentry.name(),
        replaced,
        flags & ffi::RENAME_NOREPLACE != 0,
    ))
}
