// SPDX-License-Identifier: GPL-2.0

//! Inodes (`struct inode`): allocation from the filesystem's cache, the
//! `iget` protocol (filling a new inode and giving it its type's operation
//! tables), attributes, and eviction.
//!
//! Locking: a new inode is the filler's alone while `I_NEW` is set;
//! attributes are written under the inode's i_rwsem (or `I_NEW`), sizes
//! and block counts through the VFS's own setters.

use core::{
    marker::PhantomData,
    ptr::NonNull,
    sync::atomic::{AtomicBool, AtomicI64, AtomicU32, Ordering},
};

use kernel::{
    error::to_result,
    prelude::*,
    types::{ARef, AlwaysRefCounted, Opaque},
};

use super::{
    attr::AttrInodeOps, dir::DirFileOps, file::FileTables, namei::DirInodeOps, timespec, timestamp,
    Attributes, FileSystem, Operations, Registration, SuperBlock,
};
use crate::{ffi, logic::format::inode::Timestamp, sys::mm::PudState};

/// The VFS inode and what oxdax keeps with it, in one cache object.
#[repr(C)]
struct Container {
    /// Whether `vfs` was filled from a record on the media: only such an
    /// inode is the filesystem's to free at eviction.
    filled: AtomicBool,
    /// What its PUD faults and removals of mappings tell each other
    /// ([`crate::sys::mm::Entries`]), for the inode's life in memory.
    pud: PudState,
    btime_sec: AtomicI64,
    btime_nsec: AtomicU32,
    vfs: ffi::inode,
}

/// Size of the objects of the inode cache.
pub(super) fn container_size<T: Operations>() -> usize {
    core::mem::size_of::<Container>()
}

/// The container of a VFS inode of this filesystem.
///
/// # Safety
///
/// `inode` belongs to a super block of this filesystem (allocated by
/// `alloc_inode_callback`).
unsafe fn container_of(inode: *mut ffi::inode) -> *mut Container {
    // SAFETY: `inode` is the `vfs` field of a container (this function's
    // `# Safety`), so stepping back by its offset stays in that object.
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
pub(super) unsafe extern "C" fn init_once<T: Operations>(object: *mut kernel::ffi::c_void) {
    let container = object.cast::<Container>();
    // SAFETY: `object` is a container-sized object nobody else uses yet.
    unsafe { ffi::inode_init_once(&raw mut (*container).vfs) };
}

/// # Safety
///
/// Called by the VFS for a super block of `T`.
pub(super) unsafe extern "C" fn alloc_inode_callback<T: Operations>(
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
        (&raw mut (*container).pud).write(PudState::default());
        (&raw mut (*container).btime_sec).write(AtomicI64::new(0));
        (&raw mut (*container).btime_nsec).write(AtomicU32::new(0));
        &raw mut (*container).vfs
    }
}

/// # Safety
///
/// Called by the VFS (after an RCU grace period) for an inode of `T`.
pub(super) unsafe extern "C" fn free_inode_callback<T: Operations>(inode: *mut ffi::inode) {
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
pub(super) unsafe extern "C" fn evict_inode_callback<T: Operations>(inode: *mut ffi::inode) {
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
    if T::HAS_EVICT_INODE && filled && unlinked && !bad {
        // SAFETY: The inode stays allocated until `free_inode`.
        T::evict_inode(unsafe { Inode::<T>::from_raw(inode) });
    }
}

/// An inode of filesystem `T`, handed out as a reference for as long as
/// the VFS keeps it alive (a call's argument, a dentry's inode) or as an
/// [`ARef`] that owns a reference count (`ihold`/`iput`).
///
/// # Invariants
///
/// The wrapped `struct inode` is live for the lifetime of every reference
/// to this wrapper, and it is an inode of a super block of `T`, allocated
/// by `T`'s inode cache: the `vfs` field of a [`Container`].
#[repr(transparent)]
pub(crate) struct Inode<T: FileSystem>(Opaque<ffi::inode>, PhantomData<T>);

// SAFETY: The VFS lets any thread use an inode it holds a reference to; the
// wrapper's methods use only thread-safe accessors (the VFS's own, atomics,
// or fields the VFS documents as stable), and dropping the last count
// (`iput`) may happen on any thread.
unsafe impl<T: FileSystem> Send for Inode<T> {}
// SAFETY: `&Inode` methods are safe to call concurrently: they read fields
// fixed while the inode lives or go through the VFS's locked setters.
unsafe impl<T: FileSystem> Sync for Inode<T> {}

// SAFETY: `ihold` and `iput` are the inode's reference count; an inode
// stays allocated while a count is held (the type's invariant for `ARef`).
unsafe impl<T: FileSystem> AlwaysRefCounted for Inode<T> {
    fn inc_ref(&self) {
        // SAFETY: The inode is live (type invariant) and already referenced
        // by whoever lent `self`, as `ihold` requires.
        unsafe { ffi::ihold(self.as_ptr()) };
    }

    unsafe fn dec_ref(obj: NonNull<Self>) {
        // SAFETY: The caller owns one count on this live inode, which
        // `iput` drops (`Inode` is a transparent wrapper of the inode).
        unsafe { ffi::iput(obj.as_ptr().cast()) };
    }
}

impl<T: FileSystem> Inode<T> {
    /// The wrapper of a raw inode.
    ///
    /// # Safety
    ///
    /// `inode` is an inode of a super block of `T` that stays live for
    /// `'a`.
    pub(crate) unsafe fn from_raw<'a>(inode: *mut ffi::inode) -> &'a Self {
        // SAFETY: `Inode` is a transparent wrapper of the inode, which is
        // live for `'a` (this function's `# Safety`).
        unsafe { &*inode.cast::<Self>() }
    }

    /// The raw inode, for the other wrappers.
    pub(crate) fn as_ptr(&self) -> *mut ffi::inode {
        self.0.get()
    }

    /// Inode number.
    pub(crate) fn ino(&self) -> u64 {
        // SAFETY: The inode is live; the number is fixed once hashed.
        unsafe { (*self.as_ptr()).i_ino as u64 }
    }

    /// The filesystem's data of the inode's super block.
    pub(crate) fn fs_info(&self) -> Option<&T::Info> {
        // SAFETY: A live inode's super block outlives it; `s_fs_info` is
        // null or the `Arc` `fill_super` stored, kept until `put_super`,
        // which runs after every inode was evicted.
        unsafe {
            (*(*self.as_ptr()).i_sb)
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
            ffi::mf_dax_kill_procs((*self.as_ptr()).i_mapping, first as _, count as _, mf_flags)
        })
    }

    /// Its super block.
    pub(crate) fn super_block(&self) -> &SuperBlock<T> {
        // SAFETY: A live inode's super block outlives it.
        unsafe { SuperBlock::from_raw((*self.as_ptr()).i_sb) }
    }

    /// Type and permission bits.
    pub(crate) fn mode(&self) -> u32 {
        // SAFETY: The inode is live.
        unsafe { (*self.as_ptr()).i_mode.into() }
    }

    /// The mapping entries of a regular file (DAX).
    pub(crate) fn entries(&self) -> Option<crate::sys::mm::Entries<'_>> {
        // SAFETY: The inode's mapping lives as long as the inode, which is
        // live for the borrow of `self` the entries are tied to (type
        // invariant), and so does its container (an inode of `T` is in one),
        // whose flag is the mapping's only one.
        unsafe {
            let pud = &(*container_of(self.as_ptr())).pud;
            crate::sys::mm::Entries::from_raw((*self.as_ptr()).i_mapping, pud)
        }
    }

    /// Takes the file's invalidate lock (see [`crate::sys::mm::InvalidateGuard`]).
    pub(crate) fn invalidate_lock(
        &self,
        exclusive: bool,
    ) -> Option<crate::sys::mm::InvalidateGuard<'_>> {
        // SAFETY: The inode's mapping lives as long as the inode, which is
        // live for the borrow of `self` the guard is tied to (type invariant).
        unsafe { crate::sys::mm::InvalidateGuard::lock((*self.as_ptr()).i_mapping, exclusive) }
    }

    /// Takes this file's and `other`'s invalidate locks exclusively.
    pub(crate) fn invalidate_lock_two<'a>(
        &'a self,
        other: &'a Self,
    ) -> crate::sys::mm::InvalidateTwo<'a> {
        // SAFETY: Both inodes, and so their mappings, are live for `'a`,
        // the borrows the guard is tied to (type invariant).
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
        unsafe { ffi::oxdax_i_size_read(self.as_ptr()) as u64 }
    }

    /// Owner.
    pub(crate) fn uid(&self) -> u32 {
        // SAFETY: The inode is live.
        unsafe { ffi::oxdax_i_uid_read(self.as_ptr()) }
    }

    /// Group.
    pub(crate) fn gid(&self) -> u32 {
        // SAFETY: The inode is live.
        unsafe { ffi::oxdax_i_gid_read(self.as_ptr()) }
    }

    /// Access, modification and change times.
    pub(crate) fn times(&self) -> (Timestamp, Timestamp, Timestamp) {
        let mut t = [ffi::timespec64::default(); 3];
        let [a, m, c] = &mut t;
        // SAFETY: The inode is live; the outputs are valid.
        unsafe { ffi::oxdax_inode_get_times(self.as_ptr(), a, m, c) };
        (timestamp(a), timestamp(m), timestamp(c))
    }

    /// The current time, at the filesystem's granularity.
    pub(crate) fn now(&self) -> Timestamp {
        // SAFETY: The inode is live.
        timestamp(&unsafe { ffi::current_time(self.as_ptr()) })
    }

    /// Copies the filesystem's attributes into the VFS inode. The caller
    /// holds what makes them stable (the inode's i_rwsem, or `I_NEW`).
    pub(crate) fn set_attributes(&self, attrs: &Attributes) {
        let inode = self.as_ptr();
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
                self.as_ptr(),
                &timespec(&attrs.atime),
                &timespec(&attrs.mtime),
                &timespec(&attrs.ctime),
            )
        };
    }

    pub(super) fn btime(&self) -> ffi::timespec64 {
        // SAFETY: The inode is live and of this filesystem.
        let container = unsafe { &*container_of(self.as_ptr()) };
        ffi::timespec64 {
            tv_sec: container.btime_sec.load(Ordering::Relaxed),
            tv_nsec: container.btime_nsec.load(Ordering::Relaxed) as _,
        }
    }
}

/// An inode's i_rwsem, held (shared or exclusive) until dropped.
///
/// # Invariants
///
/// This guard holds `inode`'s i_rwsem in the mode `exclusive` says.
pub(crate) struct InodeLock<'a, T: FileSystem> {
    inode: &'a Inode<T>,
    exclusive: bool,
}

impl<T: FileSystem> Inode<T> {
    /// Takes i_rwsem exclusively (writes, block map changes). The VFS calls
    /// the filesystem with it held or not as each operation documents; only
    /// the wrappers that must take it themselves do, and background work
    /// that holds no other lock.
    pub(crate) fn lock(&self) -> InodeLock<'_, T> {
        // SAFETY: The inode is live (type invariant); may sleep (every
        // caller is a VFS callback or a workqueue job, process context).
        unsafe { ffi::oxdax_inode_lock(self.as_ptr()) };
        InodeLock {
            inode: self,
            exclusive: true,
        }
    }

    /// Takes i_rwsem shared (reads, lookups of the block map).
    pub(super) fn lock_shared(&self) -> InodeLock<'_, T> {
        // SAFETY: The inode is live (type invariant); may sleep (every
        // caller is a VFS callback in process context).
        unsafe { ffi::oxdax_inode_lock_shared(self.as_ptr()) };
        InodeLock {
            inode: self,
            exclusive: false,
        }
    }
}

impl<T: FileSystem> Drop for InodeLock<'_, T> {
    fn drop(&mut self) {
        let inode = self.inode.as_ptr();
        // SAFETY: The inode is live (borrowed by the guard) and its i_rwsem
        // held in this mode (type invariant); released once.
        unsafe {
            if self.exclusive {
                ffi::oxdax_inode_unlock(inode)
            } else {
                ffi::oxdax_inode_unlock_shared(inode)
            }
        };
    }
}

/// Fills a new (`I_NEW`) inode from its record and sets its operations.
///
/// # Safety
///
/// `inode` is locked new, of `T`, with `i_ino` set.
pub(super) unsafe fn fill_new<T: Operations>(inode: *mut ffi::inode, info: &T::Info) -> Result {
    // SAFETY: `inode` is a new, locked inode of `T` we hold a reference to
    // (this function's `# Safety`): live for the call the wrapper does not
    // outlive.
    let ino = unsafe { Inode::<T>::from_raw(inode) }.ino();
    let attrs = T::read_inode(info, ino)?;
    // SAFETY: As this function's.
    unsafe { fill_with::<T>(inode, &attrs) }
}

/// Fills a new (`I_NEW`) inode from `attrs`, its record as committed, and
/// sets its operations.
///
/// # Safety
///
/// `inode` is locked new, of `T`, with `i_ino` set.
pub(super) unsafe fn fill_with<T: Operations>(
    inode: *mut ffi::inode,
    attrs: &Attributes,
) -> Result {
    // SAFETY: `inode` is a new, locked inode of `T` we hold a reference to
    // (this function's `# Safety`): live for the call the wrapper does not
    // outlive.
    let this = unsafe { Inode::<T>::from_raw(inode) };
    this.set_attributes(attrs);
    let mode = attrs.mode;
    // SAFETY: A new inode is ours alone until unlocked; the operation
    // tables are static.
    unsafe {
        match mode & ffi::S_IFMT {
            ffi::S_IFREG => {
                (*inode).i_op = &FileTables::<T>::INODE_OPS;
                (*inode).__bindgen_anon_3.i_fop = &FileTables::<T>::FILE_OPS;
                (*(*inode).i_mapping).a_ops = &DaxAops::<T>::AOPS;
                (*inode).i_flags |= ffi::S_DAX;
            }
            ffi::S_IFDIR => {
                (*inode).i_op = &DirInodeOps::<T>::OPS;
                (*inode).__bindgen_anon_3.i_fop = &DirFileOps::<T>::OPS;
            }
            ffi::S_IFCHR | ffi::S_IFBLK | ffi::S_IFIFO | ffi::S_IFSOCK => {
                (*inode).i_op = &AttrInodeOps::<T>::OPS;
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
pub(crate) fn iget<T: Operations>(sb: &SuperBlock<T>, ino: u64) -> Result<ARef<Inode<T>>> {
    let info = sb.info().ok_or(EINVAL)?;
    // SAFETY: `sb` is live; `ino` fits an unsigned long on 64-bit.
    let inode = unsafe { ffi::iget_locked(sb.as_ptr(), ino as _) };
    if inode.is_null() {
        return Err(ENOMEM);
    }
    // SAFETY: `iget_locked` returned a live inode of `sb` (a super block of
    // `T`) with a reference we own, which the `ARef` takes over.
    let owned = unsafe { owned::<T>(inode) };
    // SAFETY: `iget_locked` returned a referenced inode.
    if unsafe { (*inode).i_state } & ffi::I_NEW == 0 {
        // A cached inode was filled before it was unlocked.
        return Ok(owned);
    }
    // SAFETY: New and locked, ours to fill.
    match unsafe { fill_new::<T>(inode, info) } {
        Ok(()) => {
            // SAFETY: Filled; publish it.
            unsafe { ffi::unlock_new_inode(inode) };
            Ok(owned)
        }
        Err(e) => {
            // `iget_failed` drops the reference itself.
            let _ = ARef::into_raw(owned);
            // SAFETY: Marks it bad, unlocks and drops our reference.
            unsafe { ffi::iget_failed(inode) };
            Err(e)
        }
    }
}

/// The inode `ino` of `sb` if it is in memory (never read from the media:
/// an inode nobody holds has no mappings to revoke).
pub(crate) fn cached<T: Operations>(sb: &SuperBlock<T>, ino: u64) -> Option<ARef<Inode<T>>> {
    // SAFETY: `sb` is live; `ilookup` returns a referenced, filled inode or
    // null, and never creates one.
    let inode = unsafe { ffi::ilookup(sb.as_ptr(), ino as _) };
    // SAFETY: `ilookup` found `inode` on `sb`, a super block of `T`, and took
    // a reference for us, which the `ARef` owns and drops.
    (!inode.is_null()).then(|| unsafe { owned::<T>(inode) })
}

/// Takes ownership of a counted reference to `inode`.
///
/// # Safety
///
/// `inode` is a live inode of a super block of `T` on which the caller owns
/// one reference count, given to the result.
pub(super) unsafe fn owned<T: FileSystem>(inode: *mut ffi::inode) -> ARef<Inode<T>> {
    // SAFETY: Live, of `T`, with a count the caller gives away (this
    // function's `# Safety`); `Inode` is a transparent wrapper, so the cast
    // pointer is the wrapper's and not null.
    unsafe { ARef::from_raw(NonNull::new_unchecked(inode.cast())) }
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
        visit(unsafe { Inode::from_raw(inode) });
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
struct DaxAops<T>(PhantomData<T>);

impl<T: Operations> DaxAops<T> {
    const AOPS: ffi::address_space_operations = ffi::address_space_operations {
        writepages: if T::HAS_WRITEBACK {
            Some(super::mmap::writepages_callback::<T>)
        } else {
            None
        },
        dirty_folio: Some(ffi::noop_dirty_folio),
        direct_IO: Some(ffi::noop_direct_IO),
        // SAFETY: All-zero is a valid table: no operation.
        ..unsafe { core::mem::zeroed() }
    };
}
