// SPDX-License-Identifier: GPL-2.0

//! Super blocks (`struct super_block`) and their operations.

use core::{marker::PhantomData, ptr::NonNull};

use kernel::{
    prelude::*,
    str::CStr,
    sync::Arc,
    types::{ARef, Opaque},
};

use super::{holder::SuperBlockHolder, inode, to_c_int, FileSystem, Operations, Registration};
use crate::{
    ffi,
    sys::dax::{FsDax, FsDaxError},
};

/// Operations of every super block of `T`.
struct SuperOps<T>(PhantomData<T>);

impl<T: Operations> SuperOps<T> {
    const OPS: ffi::super_operations = ffi::super_operations {
        alloc_inode: Some(inode::alloc_inode_callback::<T>),
        free_inode: Some(inode::free_inode_callback::<T>),
        evict_inode: Some(inode::evict_inode_callback::<T>),
        put_super: Some(put_super_callback::<T>),
        sync_fs: if T::HAS_SYNC_FS {
            Some(sync_fs_callback::<T>)
        } else {
            None
        },
        statfs: if T::HAS_STATFS {
            Some(statfs_callback::<T>)
        } else {
            None
        },
        show_options: if T::HAS_SHOW_OPTIONS {
            Some(show_options_callback::<T>)
        } else {
            None
        },
        // SAFETY: All-zero is a valid table: no operation.
        ..unsafe { core::mem::zeroed() }
    };
}

/// A super block of filesystem `T`, handed out as a reference for as long
/// as the VFS keeps it alive (a call's argument, an inode's super block).
///
/// # Invariants
///
/// The wrapped `struct super_block` is a super block of `T`'s type, live
/// for the lifetime of every reference to this wrapper.
#[repr(transparent)]
pub(crate) struct SuperBlock<T: FileSystem>(Opaque<ffi::super_block>, PhantomData<T>);

// SAFETY: The VFS lets any thread use a live super block; the wrapper reads
// fields fixed while it is mounted, or plain flag words.
unsafe impl<T: FileSystem> Send for SuperBlock<T> {}
// SAFETY: `&SuperBlock` methods only read fields that are fixed while the
// super block lives (or flag words read whole), and `T::Info` is `Sync`.
unsafe impl<T: FileSystem> Sync for SuperBlock<T> {}

/// A mounted super block pinned with an active reference (unmount cannot
/// begin until it is dropped).
///
/// # Invariants
///
/// `sb` is a super block of `T` on which this holds one active reference.
pub(crate) struct ActiveSuperBlock<T: FileSystem> {
    sb: NonNull<SuperBlock<T>>,
}

impl<T: FileSystem> ActiveSuperBlock<T> {
    /// An active reference on `sb` if it is mounted and its unmount has
    /// not begun.
    ///
    /// # Safety
    ///
    /// `sb` is a super block of `T` that is not freed during the call.
    pub(crate) unsafe fn get(sb: *mut ffi::super_block) -> Option<Self> {
        // SAFETY: Not freed during the call (this function's `# Safety`);
        // the helper only reads the flags and takes the reference if
        // `s_active` is not zero.
        if unsafe { ffi::oxdax_sb_get_active(sb) } {
            // The reference keeps it alive until dropped.
            NonNull::new(sb.cast()).map(|sb| Self { sb })
        } else {
            None
        }
    }
}

impl<T: FileSystem> core::ops::Deref for ActiveSuperBlock<T> {
    type Target = SuperBlock<T>;
    fn deref(&self) -> &SuperBlock<T> {
        // SAFETY: The active reference keeps the super block alive while
        // `self` lives (type invariant).
        unsafe { self.sb.as_ref() }
    }
}

impl<T: FileSystem> Drop for ActiveSuperBlock<T> {
    fn drop(&mut self) {
        // SAFETY: This holds one active reference (type invariant), given
        // back once; dropping the last one unmounts (the caller holds no
        // lock the unmount takes).
        unsafe { ffi::deactivate_super(self.as_ptr()) };
    }
}

/// Freeze protection (`sb_start_write`), held until dropped: the
/// filesystem is not frozen meanwhile.
///
/// # Invariants
///
/// Holds `sb`'s write freeze protection, taken once.
pub(crate) struct Writing<'a, T: FileSystem> {
    sb: &'a SuperBlock<T>,
}

impl<T: FileSystem> Drop for Writing<'_, T> {
    fn drop(&mut self) {
        // SAFETY: Taken by `start_write` (type invariant), released once.
        unsafe { ffi::oxdax_sb_end_write(self.sb.as_ptr()) };
    }
}

impl<T: FileSystem> SuperBlock<T> {
    /// Freeze protection for a write the filesystem starts itself;
    /// `None` while the filesystem is frozen (or freezing).
    pub(crate) fn start_write(&self) -> Option<Writing<'_, T>> {
        // SAFETY: The super block is live (type invariant); a trylock
        // never sleeps.
        unsafe { ffi::oxdax_sb_start_write_trylock(self.as_ptr()) }.then_some(Writing { sb: self })
    }

    /// The wrapper of a raw super block.
    ///
    /// # Safety
    ///
    /// `sb` is a super block of `T` that stays live for `'a`.
    pub(crate) unsafe fn from_raw<'a>(sb: *mut ffi::super_block) -> &'a Self {
        // SAFETY: `SuperBlock` is a transparent wrapper of the super block,
        // which is live for `'a` (this function's `# Safety`).
        unsafe { &*sb.cast::<Self>() }
    }

    /// The raw super block, for the other wrappers.
    pub(crate) fn as_ptr(&self) -> *mut ffi::super_block {
        self.0.get()
    }

    /// The filesystem's data, once `fill_super` returned it.
    pub(crate) fn info(&self) -> Option<&T::Info> {
        // SAFETY: `s_fs_info` is null or an `Arc<T::Info>` stored by
        // `fill_super` and released only by `put_super`/`kill_sb`, after
        // which the VFS calls nothing that reaches here.
        unsafe { (*self.as_ptr()).s_fs_info.cast::<T::Info>().as_ref() }
    }

    /// The device name (`oxpmem0`), for log lines.
    pub(crate) fn id(&self) -> &CStr {
        // SAFETY: `s_id` is a NUL-terminated array set before `fill_super`.
        unsafe { CStr::from_char_ptr((*self.as_ptr()).s_id.as_ptr()) }
    }

    /// Whether the super block is read-only.
    pub(crate) fn is_read_only(&self) -> bool {
        // SAFETY: The super block is live; the flags are a plain word.
        unsafe { (*self.as_ptr()).s_flags & ffi::SB_RDONLY != 0 }
    }

    /// Size of the block device in bytes.
    pub(crate) fn device_bytes(&self) -> u64 {
        // SAFETY: A block-device super block keeps its device open.
        unsafe { (*(*self.as_ptr()).s_bdev).bd_nr_sectors << 9 }
    }

    /// Takes the device's DAX device with this filesystem as its holder
    /// (memory failures are reported to `T::dax_failure`).
    pub(crate) fn get_dax(&self) -> Result<FsDax, FsDaxError>
    where
        T: Operations,
    {
        let holders = Registration::<T>::holders().ok_or(FsDaxError::NotDax)?;
        let (holder, ops) = holders.holder();
        // SAFETY: The super block's device is open while it lives.
        unsafe { FsDax::get((*self.as_ptr()).s_bdev, holder, ops) }
    }
}

/// Sets the super block up and reads the filesystem: its info in
/// `s_fs_info`, the holder registered, the root dentry made.
///
/// # Safety
///
/// `sb` is a new super block of `T` being set up by `get_tree_bdev`.
pub(super) unsafe fn fill_super<T: Operations>(
    sb: *mut ffi::super_block,
    options: &T::Options,
) -> Result {
    // SAFETY: The new super block is ours to set up; its device is open.
    unsafe {
        if ffi::sb_set_blocksize(sb, crate::logic::format::BLOCK_SIZE as _) == 0 {
            return Err(EINVAL);
        }
        (*sb).s_magic = T::MAGIC as _;
        (*sb).s_maxbytes = T::MAX_BYTES as _;
        (*sb).s_time_gran = 1;
        (*sb).s_op = &SuperOps::<T>::OPS;
        (*sb).s_flags |= ffi::SB_NOSEC;
    }
    // SAFETY: `sb` is live for the whole call.
    let this = unsafe { SuperBlock::<T>::from_raw(sb) };
    let info = T::fill_super(this, options)?;
    let holders = Registration::<T>::holders().ok_or(ENODEV)?;
    holders.add(T::dax(&info), SuperBlockHolder::new(this, info.clone()))?;
    // SAFETY: Published for the callbacks below and every later one;
    // `release_info` takes it back.
    unsafe { (*sb).s_fs_info = Arc::into_raw(info).cast_mut().cast() };
    let root = inode::iget::<T>(this, T::root(this.info().ok_or(EINVAL)?))?;
    // SAFETY: `root` is a live, referenced inode; `d_make_root` consumes the
    // reference (also on failure).
    let dentry = unsafe { ffi::d_make_root(ARef::into_raw(root).as_ptr().cast()) };
    if dentry.is_null() {
        return Err(ENOMEM);
    }
    // SAFETY: The super block is still being set up.
    unsafe { (*sb).s_root = dentry };
    Ok(())
}

/// Releases `s_fs_info` and the holder entry, if still there.
///
/// # Safety
///
/// `sb` is a super block of `T` that the VFS no longer calls into for
/// inodes or files (shut down or never mounted).
pub(super) unsafe fn release_info<T: Operations>(sb: *mut ffi::super_block) {
    // SAFETY: The VFS no longer calls into `sb` for inodes or files (this
    // function's `# Safety`), so nothing races with reading `s_fs_info`,
    // which is null or our `Arc`.
    let raw = unsafe { (*sb).s_fs_info.cast::<T::Info>() };
    if raw.is_null() {
        return;
    }
    // SAFETY: The VFS no longer calls into `sb` for inodes or files (this
    // function's `# Safety`), so nothing reads `s_fs_info` any more.
    unsafe { (*sb).s_fs_info = core::ptr::null_mut() };
    // SAFETY: `raw` came from `Arc::into_raw` in `fill_super`.
    let info = unsafe { Arc::from_raw(raw) };
    // The entry may hold the last reference but one to the info: dropped
    // here, outside the registry lock.
    let entry = Registration::<T>::holders().and_then(|holders| holders.remove(T::dax(&info)));
    drop(entry);
    // A memory-failure callback may still hold a reference: the info (and
    // its DAX device reference) goes when that returns.
    drop(info);
}

/// # Safety
///
/// Called by `generic_shutdown_super` for a mounted super block, after its
/// inodes were evicted.
unsafe extern "C" fn put_super_callback<T: Operations>(sb: *mut ffi::super_block) {
    if T::HAS_PUT_SUPER {
        // SAFETY: `sb` is live.
        T::put_super(unsafe { SuperBlock::<T>::from_raw(sb) });
    }
    // SAFETY: Nothing calls into the super block after `put_super`.
    unsafe { release_info::<T>(sb) };
}

/// # Safety
///
/// Called by the VFS with a mounted super block.
unsafe extern "C" fn sync_fs_callback<T: Operations>(
    sb: *mut ffi::super_block,
    _wait: kernel::ffi::c_int,
) -> kernel::ffi::c_int {
    // SAFETY: `sb` is live.
    to_c_int(T::sync_fs(unsafe { SuperBlock::<T>::from_raw(sb) }))
}

/// # Safety
///
/// Called by the VFS with a dentry of a mounted super block and a zeroed
/// `kstatfs`.
unsafe extern "C" fn statfs_callback<T: Operations>(
    dentry: *mut ffi::dentry,
    buf: *mut kernel::bindings::kstatfs,
) -> kernel::ffi::c_int {
    // The kernel crate only declares `kstatfs`; oxdax's bindings define it.
    let buf = buf.cast::<ffi::kstatfs>();
    // SAFETY: The dentry and its super block are live.
    let sb = unsafe { SuperBlock::<T>::from_raw((*dentry).d_sb) };
    let stat = match T::statfs(sb) {
        Ok(stat) => stat,
        Err(e) => return e.to_errno(),
    };
    let block_size = crate::logic::format::BLOCK_SIZE as isize;
    // SAFETY: `buf` is the `kstatfs` the VFS passed for this call to fill,
    // valid for writes and ours alone during it.
    unsafe {
        (*buf).f_type = T::MAGIC as _;
        (*buf).f_bsize = block_size;
        (*buf).f_frsize = block_size;
        (*buf).f_blocks = stat.blocks;
        (*buf).f_bfree = stat.free_blocks;
        (*buf).f_bavail = stat.free_blocks;
        (*buf).f_files = stat.files;
        (*buf).f_ffree = stat.free_files;
        (*buf).f_namelen = stat.name_len as _;
        (*buf).f_fsid.val = [stat.fsid as u32 as i32, (stat.fsid >> 32) as u32 as i32];
    }
    0
}

/// `/proc/mounts` output.
///
/// # Invariants
///
/// The seq file is the live one of the current `show_options` call.
pub(crate) struct SeqFile(NonNull<ffi::seq_file>);

impl SeqFile {
    /// Appends `s`.
    pub(crate) fn puts(&mut self, s: &CStr) {
        // SAFETY: The seq file is live during `show_options`.
        unsafe { ffi::__seq_puts(self.0.as_ptr(), s.as_char_ptr()) };
    }
}

/// # Safety
///
/// Called by the VFS with a live seq file and a mounted root.
unsafe extern "C" fn show_options_callback<T: Operations>(
    seq: *mut ffi::seq_file,
    root: *mut ffi::dentry,
) -> kernel::ffi::c_int {
    let Some(seq) = NonNull::new(seq) else {
        return EINVAL.to_errno();
    };
    // SAFETY: The root and its super block are live.
    let sb = unsafe { SuperBlock::<T>::from_raw((*root).d_sb) };
    to_c_int(T::show_options(sb, &mut SeqFile(seq)))
}
