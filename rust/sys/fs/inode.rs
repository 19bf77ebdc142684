// SPDX-License-Identifier: GPL-2.0

//! Inodes (`struct inode`): allocation from the filesystem's cache, the
//! `iget` protocol, attributes, and the inode operations.

use core::{
    marker::PhantomData,
    ptr::NonNull,
    sync::atomic::{AtomicBool, AtomicI64, AtomicU32, Ordering},
};

use kernel::{error::to_result, prelude::*};

use super::{
    dentry::Dentry, file, timespec, timestamp, to_c_int, Attributes, FileSystem, NewOwner,
    Registration, SuperBlock,
};
use crate::{
    ffi,
    logic::{format::inode::Timestamp, fs::AttrChange},
};

/// The VFS inode and what oxdax keeps with it, in one cache object.
#[repr(C)]
struct Container {
    /// Whether `vfs` was filled from a record on the media: only such an
    /// inode is the filesystem's to free at eviction.
    filled: AtomicBool,
    btime_sec: AtomicI64,
    btime_nsec: AtomicU32,
    vfs: ffi::inode,
}

/// Size of the objects of the inode cache.
pub(super) fn container_size<T: FileSystem>() -> usize {
    core::mem::size_of::<Container>()
}

/// The container of a VFS inode of this filesystem.
///
/// # Safety
///
/// `inode` belongs to a super block of this filesystem (allocated by
/// `alloc_inode_callback`).
unsafe fn container_of(inode: *mut ffi::inode) -> *mut Container {
    // SAFETY: `inode` is the `vfs` field of a container (caller).
    unsafe {
        inode
            .cast::<u8>()
            .sub(core::mem::offset_of!(Container, vfs))
            .cast()
    }
}

/// Cache constructor: runs once per object, not per allocation.
///
/// # Safety
///
/// Called by the slab allocator with a new object of the inode cache.
pub(super) unsafe extern "C" fn init_once<T: FileSystem>(object: *mut kernel::ffi::c_void) {
    let container = object.cast::<Container>();
    // SAFETY: `object` is a container-sized object nobody else uses yet.
    unsafe { ffi::inode_init_once(&raw mut (*container).vfs) };
}

/// # Safety
///
/// Called by the VFS for a super block of `T`.
pub(super) unsafe extern "C" fn alloc_inode_callback<T: FileSystem>(
    sb: *mut ffi::super_block,
) -> *mut ffi::inode {
    let Some(registration) = Registration::<T>::of() else {
        return core::ptr::null_mut();
    };
    let cache = registration.inode_cache();
    // SAFETY: `sb` is live; the cache's objects are containers.
    let object = unsafe { ffi::oxdax_alloc_inode_sb(sb, cache) };
    let container = object.cast::<Container>();
    if container.is_null() {
        return core::ptr::null_mut();
    }
    // SAFETY: A fresh object: the Rust fields are written before the VFS
    // sees the inode (atomics need no drop).
    unsafe {
        (&raw mut (*container).filled).write(AtomicBool::new(false));
        (&raw mut (*container).btime_sec).write(AtomicI64::new(0));
        (&raw mut (*container).btime_nsec).write(AtomicU32::new(0));
        &raw mut (*container).vfs
    }
}

/// # Safety
///
/// Called by the VFS (after an RCU grace period) for an inode of `T`.
pub(super) unsafe extern "C" fn free_inode_callback<T: FileSystem>(inode: *mut ffi::inode) {
    let Some(registration) = Registration::<T>::of() else {
        return;
    };
    // SAFETY: The inode is ours and unused; its container goes back to the
    // cache it came from (its fields need no drop).
    unsafe {
        ffi::kmem_cache_free(
            registration.inode_cache().cast(),
            container_of(inode).cast(),
        )
    };
}

/// # Safety
///
/// Called by the VFS when the last reference to an inode of `T` is gone.
pub(super) unsafe extern "C" fn evict_inode_callback<T: FileSystem>(inode: *mut ffi::inode) {
    // SAFETY: The inode is being evicted and ours alone.
    let (filled, unlinked, bad) = unsafe {
        ffi::truncate_inode_pages_final(&raw mut (*inode).i_data);
        ffi::clear_inode(inode);
        (
            (*container_of(inode)).filled.load(Ordering::Acquire),
            (*inode).__bindgen_anon_1.i_nlink == 0,
            ffi::is_bad_inode(inode),
        )
    };
    if filled && unlinked && !bad {
        // SAFETY: The inode stays allocated until `free_inode`.
        T::evict_inode(&unsafe { Inode::<T>::from_raw(inode) });
    }
}

/// An inode of filesystem `T`, borrowed for a VFS call.
pub(crate) struct Inode<T: FileSystem> {
    inode: NonNull<ffi::inode>,
    _type: PhantomData<T>,
}

impl<T: FileSystem> Inode<T> {
    /// # Safety
    ///
    /// `inode` is a live inode of `T` while the result is used.
    pub(crate) unsafe fn from_raw(inode: *mut ffi::inode) -> Self {
        Self {
            // SAFETY: The VFS never passes a null inode where one is due.
            inode: unsafe { NonNull::new_unchecked(inode) },
            _type: PhantomData,
        }
    }

    /// The raw inode, for the other wrappers.
    pub(crate) fn as_ptr(&self) -> *mut ffi::inode {
        self.inode.as_ptr()
    }

    /// Inode number.
    pub(crate) fn ino(&self) -> u64 {
        // SAFETY: The inode is live; the number is fixed once hashed.
        unsafe { (*self.inode.as_ptr()).i_ino as u64 }
    }

    /// The filesystem's data of the inode's super block.
    pub(crate) fn fs_info(&self) -> Option<&T::Info> {
        // SAFETY: A live inode's super block outlives it; `s_fs_info` is
        // null or the `Arc` `fill_super` stored, kept until `put_super`,
        // which runs after every inode was evicted.
        unsafe {
            (*(*self.inode.as_ptr()).i_sb)
                .s_fs_info
                .cast::<T::Info>()
                .as_ref()
        }
    }

    /// Memory failure of pages `first..first + count` of the file: the
    /// processes mapping them get `SIGBUS` and lose those mappings
    /// (`mf_dax_kill_procs`; `mf_flags` as the failure came).
    pub(crate) fn kill_mapping_procs(&self, first: u64, count: u64, mf_flags: i32) -> Result {
        // SAFETY: The inode and its mapping are live; the kernel locks the
        // entries (fs/dax.c's encoding, which the fault engine keeps).
        to_result(unsafe {
            ffi::mf_dax_kill_procs(
                (*self.inode.as_ptr()).i_mapping,
                first as _,
                count as _,
                mf_flags,
            )
        })
    }

    /// Its super block.
    pub(crate) fn super_block(&self) -> SuperBlock<T> {
        // SAFETY: A live inode's super block outlives it.
        unsafe { SuperBlock::from_raw((*self.inode.as_ptr()).i_sb) }
    }

    /// Type and permission bits.
    pub(crate) fn mode(&self) -> u32 {
        // SAFETY: The inode is live.
        unsafe { (*self.inode.as_ptr()).i_mode.into() }
    }

    /// The mapping entries of a regular file (DAX).
    pub(crate) fn entries(&self) -> Option<crate::sys::mm::Entries> {
        // SAFETY: The inode, and so its mapping, lives as long as `self`.
        unsafe { crate::sys::mm::Entries::from_raw((*self.as_ptr()).i_mapping) }
    }

    /// Takes the file's invalidate lock (see [`crate::sys::mm::InvalidateGuard`]).
    pub(crate) fn invalidate_lock(
        &self,
        exclusive: bool,
    ) -> Option<crate::sys::mm::InvalidateGuard> {
        // SAFETY: The mapping lives as long as the inode; callers keep the
        // inode (a VFS reference or call) while they hold the guard.
        unsafe { crate::sys::mm::InvalidateGuard::lock((*self.as_ptr()).i_mapping, exclusive) }
    }

    /// Takes this file's and `other`'s invalidate locks exclusively.
    pub(crate) fn invalidate_lock_two(&self, other: &Self) -> crate::sys::mm::InvalidateTwo {
        // SAFETY: Both inodes, and so their mappings, are live while the
        // caller holds them (a VFS call).
        unsafe {
            crate::sys::mm::InvalidateTwo::lock(
                (*self.as_ptr()).i_mapping,
                (*other.as_ptr()).i_mapping,
            )
        }
    }

    /// Sets the bytes allocated (stat's block count) only: for paths that
    /// do not hold i_rwsem and so must not touch the size (page faults).
    pub(crate) fn set_allocated(&self, bytes: u64) {
        // SAFETY: The inode is live; the helper takes i_lock.
        unsafe { ffi::oxdax_inode_set_bytes_locked(self.as_ptr(), bytes as i64) };
    }

    /// Size in bytes.
    pub(crate) fn size(&self) -> u64 {
        // SAFETY: The inode is live.
        unsafe { ffi::oxdax_i_size_read(self.inode.as_ptr()) as u64 }
    }

    /// Owner.
    pub(crate) fn uid(&self) -> u32 {
        // SAFETY: The inode is live.
        unsafe { ffi::oxdax_i_uid_read(self.inode.as_ptr()) }
    }

    /// Group.
    pub(crate) fn gid(&self) -> u32 {
        // SAFETY: The inode is live.
        unsafe { ffi::oxdax_i_gid_read(self.inode.as_ptr()) }
    }

    /// Access, modification and change times.
    pub(crate) fn times(&self) -> (Timestamp, Timestamp, Timestamp) {
        let mut t = [ffi::timespec64::default(); 3];
        let [a, m, c] = &mut t;
        // SAFETY: The inode is live; the outputs are valid.
        unsafe { ffi::oxdax_inode_get_times(self.inode.as_ptr(), a, m, c) };
        (timestamp(a), timestamp(m), timestamp(c))
    }

    /// The current time, at the filesystem's granularity.
    pub(crate) fn now(&self) -> Timestamp {
        // SAFETY: The inode is live.
        timestamp(&unsafe { ffi::current_time(self.inode.as_ptr()) })
    }

    /// Copies the filesystem's attributes into the VFS inode. The caller
    /// holds what makes them stable (the inode's i_rwsem, or `I_NEW`).
    pub(crate) fn set_attributes(&self, attrs: &Attributes) {
        let inode = self.inode.as_ptr();
        // SAFETY: The inode is live; these are the VFS's own setters, or
        // fields the VFS lets the filesystem write under i_rwsem.
        unsafe {
            (*inode).i_mode = attrs.mode as _;
            ffi::oxdax_i_uid_write(inode, attrs.uid);
            ffi::oxdax_i_gid_write(inode, attrs.gid);
            ffi::set_nlink(inode, attrs.nlink);
            ffi::oxdax_i_size_write(inode, attrs.size as i64);
            ffi::inode_set_bytes(inode, attrs.allocated as i64);
            ffi::oxdax_inode_set_times(
                inode,
                &timespec(&attrs.atime),
                &timespec(&attrs.mtime),
                &timespec(&attrs.ctime),
            );
            (*inode).i_generation = attrs.generation;
            (*inode).i_rdev = crate::logic::format::inode::decode_dev(attrs.rdev);
            let container = container_of(inode);
            (*container)
                .btime_sec
                .store(attrs.btime.sec, Ordering::Relaxed);
            (*container)
                .btime_nsec
                .store(attrs.btime.nsec, Ordering::Relaxed);
        }
    }

    /// Sets the timestamps only: for `update_time`, which runs without
    /// i_rwsem (page faults, `touch_atime`) and so must not touch the size.
    pub(crate) fn set_times(&self, attrs: &Attributes) {
        // SAFETY: The inode is live; the VFS updates times this way
        // without i_rwsem too (generic_update_time).
        unsafe {
            ffi::oxdax_inode_set_times(
                self.inode.as_ptr(),
                &timespec(&attrs.atime),
                &timespec(&attrs.mtime),
                &timespec(&attrs.ctime),
            )
        };
    }

    fn btime(&self) -> ffi::timespec64 {
        // SAFETY: The inode is live and of this filesystem.
        let container = unsafe { &*container_of(self.inode.as_ptr()) };
        ffi::timespec64 {
            tv_sec: container.btime_sec.load(Ordering::Relaxed),
            tv_nsec: container.btime_nsec.load(Ordering::Relaxed) as _,
        }
    }
}

/// A counted inode reference (`iput` when dropped).
pub(crate) struct InodeRef<T: FileSystem>(Inode<T>);

impl<T: FileSystem> InodeRef<T> {
    /// Gives the reference to the caller (a dentry).
    pub(crate) fn into_raw(self) -> *mut ffi::inode {
        let raw = self.0.as_ptr();
        core::mem::forget(self);
        raw
    }
}

impl<T: FileSystem> core::ops::Deref for InodeRef<T> {
    type Target = Inode<T>;
    fn deref(&self) -> &Inode<T> {
        &self.0
    }
}

impl<T: FileSystem> Drop for InodeRef<T> {
    fn drop(&mut self) {
        // SAFETY: We own one reference.
        unsafe { ffi::iput(self.0.as_ptr()) };
    }
}

/// Fills a new (`I_NEW`) inode from its record and sets its operations.
///
/// # Safety
///
/// `inode` is locked new, of `T`, with `i_ino` set.
unsafe fn fill_new<T: FileSystem>(inode: *mut ffi::inode, info: &T::Info) -> Result {
    // SAFETY: Live (caller).
    let this = unsafe { Inode::<T>::from_raw(inode) };
    let attrs = T::read_inode(info, this.ino())?;
    this.set_attributes(&attrs);
    let mode = attrs.mode;
    // SAFETY: A new inode is ours alone until unlocked; the operation
    // tables are static.
    unsafe {
        match mode & ffi::S_IFMT {
            ffi::S_IFREG => {
                (*inode).i_op = &Ops::<T>::FILE;
                (*inode).__bindgen_anon_3.i_fop = &file::FileOps::<T>::FILE;
                (*(*inode).i_mapping).a_ops = &DaxAops::<T>::AOPS;
                (*inode).i_flags |= ffi::S_DAX;
            }
            ffi::S_IFDIR => {
                (*inode).i_op = &Ops::<T>::DIR;
                (*inode).__bindgen_anon_3.i_fop = &file::FileOps::<T>::DIR;
            }
            ffi::S_IFCHR | ffi::S_IFBLK | ffi::S_IFIFO | ffi::S_IFSOCK => {
                (*inode).i_op = &Ops::<T>::SPECIAL;
                ffi::init_special_inode(inode, mode as _, (*inode).i_rdev);
            }
            // Symbolic links are not supported yet: refuse the inode
            // rather than give it operations it cannot serve.
            _ => return Err(EIO),
        }
        (*container_of(inode)).filled.store(true, Ordering::Release);
    }
    Ok(())
}

/// The inode `ino` of `sb`, read from the media if not cached.
pub(crate) fn iget<T: FileSystem>(sb: &SuperBlock<T>, ino: u64) -> Result<InodeRef<T>> {
    let info = sb.info().ok_or(EINVAL)?;
    // SAFETY: `sb` is live; `ino` fits an unsigned long on 64-bit.
    let inode = unsafe { ffi::iget_locked(sb.as_ptr(), ino as _) };
    if inode.is_null() {
        return Err(ENOMEM);
    }
    // SAFETY: `iget_locked` returned a referenced inode.
    if unsafe { (*inode).i_state } & ffi::I_NEW == 0 {
        // SAFETY: A cached inode was filled before it was unlocked.
        return Ok(InodeRef(unsafe { Inode::from_raw(inode) }));
    }
    // SAFETY: New and locked, ours to fill.
    match unsafe { fill_new::<T>(inode, info) } {
        Ok(()) => {
            // SAFETY: Filled; publish it.
            unsafe { ffi::unlock_new_inode(inode) };
            // SAFETY: We own the reference `iget_locked` took.
            Ok(InodeRef(unsafe { Inode::from_raw(inode) }))
        }
        Err(e) => {
            // SAFETY: Marks it bad, unlocks and drops our reference.
            unsafe { ffi::iget_failed(inode) };
            Err(e)
        }
    }
}

/// The inode `ino` of `sb` if it is in memory (never read from the media:
/// an inode nobody holds has no mappings to revoke).
pub(crate) fn cached<T: FileSystem>(sb: &SuperBlock<T>, ino: u64) -> Option<InodeRef<T>> {
    // SAFETY: `sb` is live; `ilookup` returns a referenced, filled inode or
    // null, and never creates one.
    let inode = unsafe { ffi::ilookup(sb.as_ptr(), ino as _) };
    // SAFETY: `ilookup` found `inode` on `sb`, a super block of `T`, and took
    // a reference for us, which the `InodeRef` owns and drops.
    NonNull::new(inode).map(|inode| InodeRef(unsafe { Inode::from_raw(inode.as_ptr()) }))
}

/// Calls `visit` with every inode of `sb` that has DAX mapping entries
/// (held referenced during the call, no lock held).
pub(crate) fn for_each_mapped<T: FileSystem, F: FnMut(&Inode<T>)>(sb: &SuperBlock<T>, visit: F) {
    /// # Safety
    ///
    /// `data` is the `F` below; `inode` a referenced inode of `T`.
    unsafe extern "C" fn trampoline<T: FileSystem, F: FnMut(&Inode<T>)>(
        inode: *mut ffi::inode,
        data: *mut kernel::ffi::c_void,
    ) {
        // SAFETY: `data` is the `&mut visit` that `for_each_mapped` passed,
        // live for the whole walk, which calls this on that thread, one call
        // at a time: the `&mut` is the only reference.
        let visit = unsafe { &mut *data.cast::<F>() };
        // SAFETY: Referenced by the walk for the call.
        visit(&unsafe { Inode::from_raw(inode) });
    }
    let mut visit = visit;
    // SAFETY: `sb` is live; the walk calls the trampoline with `visit`,
    // which outlives it, from this thread only.
    unsafe {
        ffi::oxdax_sb_for_each_mapped_inode(
            sb.as_ptr(),
            Some(trampoline::<T, F>),
            core::ptr::from_mut(&mut visit).cast(),
        )
    };
}

/// Address-space operations of DAX files: no page cache, so nothing to
/// dirty or read ahead (as ext4's `ext4_dax_aops`); writeback writes back
/// what was stored through mappings; O_DIRECT is accepted
/// (`noop_direct_IO`), every access being direct.
struct DaxAops<T: FileSystem>(PhantomData<T>);

impl<T: FileSystem> DaxAops<T> {
    const AOPS: ffi::address_space_operations = ffi::address_space_operations {
        writepages: Some(super::mmap::writepages_callback::<T>),
        dirty_folio: Some(ffi::noop_dirty_folio),
        direct_IO: Some(ffi::noop_direct_IO),
        // SAFETY: All-zero is a valid table: no operation.
        ..unsafe { core::mem::zeroed() }
    };
}

/// Inode operation tables of `T`.
struct Ops<T: FileSystem>(PhantomData<T>);

impl<T: FileSystem> Ops<T> {
    const DIR: ffi::inode_operations = ffi::inode_operations {
        lookup: Some(lookup_callback::<T>),
        create: Some(create_callback::<T>),
        mkdir: Some(mkdir_callback::<T>),
        mknod: Some(mknod_callback::<T>),
        link: Some(link_callback::<T>),
        unlink: Some(unlink_callback::<T>),
        rmdir: Some(rmdir_callback::<T>),
        rename: Some(rename_callback::<T>),
        setattr: Some(setattr_callback::<T>),
        getattr: Some(getattr_callback::<T>),
        update_time: Some(update_time_callback::<T>),
        // SAFETY: All-zero is a valid table: no operation.
        ..unsafe { core::mem::zeroed() }
    };
    const FILE: ffi::inode_operations = ffi::inode_operations {
        setattr: Some(setattr_callback::<T>),
        getattr: Some(getattr_callback::<T>),
        update_time: Some(update_time_callback::<T>),
        fiemap: Some(fiemap_callback::<T>),
        // SAFETY: All-zero is a valid table: no operation.
        ..unsafe { core::mem::zeroed() }
    };
    const SPECIAL: ffi::inode_operations = ffi::inode_operations {
        fiemap: None,
        ..Self::FILE
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
unsafe extern "C" fn lookup_callback<T: FileSystem>(
    dir: *mut ffi::inode,
    dentry: *mut ffi::dentry,
    _flags: kernel::ffi::c_uint,
) -> *mut ffi::dentry {
    // SAFETY: Live (caller).
    let (dir, dentry) = unsafe { (Inode::<T>::from_raw(dir), Dentry::from_raw(dentry)) };
    let inode = match T::lookup(&dir, dentry.name()) {
        Ok(Some(ino)) => match iget(&dir.super_block(), ino) {
            Ok(inode) => inode.into_raw(),
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
unsafe fn make_node<T: FileSystem>(
    idmap: *mut kernel::bindings::mnt_idmap,
    dir: *mut ffi::inode,
    dentry: *mut ffi::dentry,
    mode: ffi::umode_t,
    rdev: ffi::dev_t,
) -> Result {
    // SAFETY: Live (caller).
    let (dir_ref, dentry_ref) = unsafe { (Inode::<T>::from_raw(dir), Dentry::from_raw(dentry)) };
    let sb = dir_ref.super_block();
    let info = sb.info().ok_or(EINVAL)?;
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
    let ino = match T::create(&dir_ref, dentry_ref.name(), &owner) {
        Ok(ino) => ino,
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
        // Another inode with this number is cached: the media handed out a
        // number in use, which only damage explains.
        pr_err!("{}: new inode {} is already in use\n", sb.id(), ino);
        // SAFETY: Not filled, not hashed.
        unsafe { ffi::iput(inode) };
        return Err(EIO);
    }
    // SAFETY: Locked new, number set.
    if let Err(e) = unsafe { fill_new::<T>(inode, info) } {
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
unsafe extern "C" fn create_callback<T: FileSystem>(
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
unsafe extern "C" fn mkdir_callback<T: FileSystem>(
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
unsafe extern "C" fn mknod_callback<T: FileSystem>(
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
unsafe extern "C" fn link_callback<T: FileSystem>(
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
            Dentry::from_raw(old),
            Inode::<T>::from_raw(dir),
            Dentry::from_raw(new),
        )
    };
    let Some(inode) = old.inode::<T>() else {
        return ENOENT.to_errno();
    };
    if let Err(e) = T::link(&inode, &dir, new.name()) {
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
unsafe extern "C" fn unlink_callback<T: FileSystem>(
    dir: *mut ffi::inode,
    dentry: *mut ffi::dentry,
) -> kernel::ffi::c_int {
    // SAFETY: The VFS holds the i_rwsem of `dir` (a directory of `T`: the
    // table is `T`'s) and of the victim, and a reference on `dentry`; both
    // live for the call, and `dentry`'s name is stable under `dir`'s lock.
    let (dir, dentry) = unsafe { (Inode::<T>::from_raw(dir), Dentry::from_raw(dentry)) };
    match dentry.inode::<T>() {
        Some(victim) => to_c_int(T::unlink(&dir, dentry.name(), &victim)),
        None => ENOENT.to_errno(),
    }
}

/// # Safety
///
/// VFS `rmdir` contract.
unsafe extern "C" fn rmdir_callback<T: FileSystem>(
    dir: *mut ffi::inode,
    dentry: *mut ffi::dentry,
) -> kernel::ffi::c_int {
    // SAFETY: The VFS holds the i_rwsem of `dir` (a directory of `T`: the
    // table is `T`'s) and of the victim, and a reference on `dentry`; both
    // live for the call, and `dentry`'s name is stable under `dir`'s lock.
    let (dir, dentry) = unsafe { (Inode::<T>::from_raw(dir), Dentry::from_raw(dentry)) };
    match dentry.inode::<T>() {
        Some(victim) => to_c_int(T::rmdir(&dir, dentry.name(), &victim)),
        None => ENOENT.to_errno(),
    }
}

/// # Safety
///
/// VFS `rename` contract: both directories and both inodes locked.
unsafe extern "C" fn rename_callback<T: FileSystem>(
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
            Dentry::from_raw(old_dentry),
            Inode::<T>::from_raw(new_dir),
            Dentry::from_raw(new_dentry),
        )
    };
    let Some(moved) = old_dentry.inode::<T>() else {
        return ENOENT.to_errno();
    };
    let replaced = new_dentry.inode::<T>();
    to_c_int(T::rename(
        &old_dir,
        old_dentry.name(),
        &moved,
        &new_dir,
        new_dentry.name(),
        replaced.as_ref(),
        flags & ffi::RENAME_NOREPLACE != 0,
    ))
}

/// # Safety
///
/// VFS `setattr` contract: the inode's i_rwsem held.
unsafe extern "C" fn setattr_callback<T: FileSystem>(
    idmap: *mut kernel::bindings::mnt_idmap,
    dentry: *mut ffi::dentry,
    attr: *mut ffi::iattr,
) -> kernel::ffi::c_int {
    // SAFETY: `notify_change` holds a reference on `dentry`, a dentry of `T`,
    // and its inode's i_rwsem for the call; only the inode is read, not the
    // name.
    let dentry_ref = unsafe { Dentry::from_raw(dentry) };
    let Some(inode) = dentry_ref.inode::<T>() else {
        return ENOENT.to_errno();
    };
    // SAFETY: `idmap`, `dentry` and `attr` are this call's live arguments,
    // and the inode's i_rwsem is held (`notify_change`), as setattr_prepare
    // expects.
    let ret = unsafe { ffi::setattr_prepare(idmap, dentry, attr) };
    if ret != 0 {
        return ret;
    }
    // SAFETY: Live (caller).
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
    to_c_int(T::setattr(&inode, &change))
}

/// # Safety
///
/// VFS `getattr` contract.
unsafe extern "C" fn getattr_callback<T: FileSystem>(
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
unsafe extern "C" fn update_time_callback<T: FileSystem>(
    inode: *mut ffi::inode,
    flags: kernel::ffi::c_int,
) -> kernel::ffi::c_int {
    // SAFETY: Live (caller).
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
    to_c_int(T::update_time(&inode, &change))
}

/// A `FIEMAP` request being answered.
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
/// VFS `fiemap` contract for a regular file of `T`.
unsafe extern "C" fn fiemap_callback<T: FileSystem>(
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
    // SAFETY: Live (caller).
    let inode = unsafe { Inode::<T>::from_raw(inode) };
    // SAFETY: Live; shared, as reads.
    unsafe { ffi::oxdax_inode_lock_shared(inode.as_ptr()) };
    let mut out = Fiemap {
        info,
        _call: PhantomData,
    };
    let result = T::fiemap(&inode, start, len, &mut out);
    // SAFETY: Locked above.
    unsafe { ffi::oxdax_inode_unlock_shared(inode.as_ptr()) };
    to_c_int(result)
}
