// SPDX-License-Identifier: GPL-2.0

//! Filesystem registration (`struct file_system_type`) with its inode
//! cache and holder registry, and mount contexts (`struct fs_context`).

use core::{
    marker::PhantomData,
    pin::Pin,
    ptr::NonNull,
    sync::atomic::{AtomicPtr, Ordering},
};

use kernel::{error::to_result, prelude::*, str::CStr, types::Opaque};

use super::{
    holder::SuperBlockHolder,
    inode,
    super_block::{self},
    to_c_int, Operations, SuperBlock,
};
use crate::{ffi, sys::dax::holder::Holders};

/// The `file_system_type` of a filesystem, in static memory: lockdep only
/// accepts lock class keys there, and the super block locks take theirs
/// from this structure.
///
/// # Invariants
///
/// `registration` is null or points at the pinned `Registration` whose type
/// this is, from registration until unregistration.
pub(crate) struct FsType {
    raw: Opaque<ffi::file_system_type>,
    registration: AtomicPtr<kernel::ffi::c_void>,
}

// SAFETY: The structure is written only by `Registration::new` before it is
// registered and read by the VFS under its own locks afterwards; the pointer
// is atomic.
unsafe impl Sync for FsType {}

impl FsType {
    /// An unregistered type, for a `static`.
    pub(crate) const fn new() -> Self {
        Self {
            raw: Opaque::uninit(),
            registration: AtomicPtr::new(core::ptr::null_mut()),
        }
    }

    /// The registration of `T` this type belongs to, while registered.
    fn registration<T: Operations>(&self) -> Option<&Registration<T>> {
        let reg = self.registration.load(Ordering::Acquire);
        // SAFETY: Only `Registration::<T>::new` stores a pointer here (to
        // itself, pinned) and its drop clears it after unregistering the
        // type, when no super block of it exists any more: every caller
        // runs on behalf of one.
        unsafe { reg.cast::<Registration<T>>().as_ref() }
    }
}

/// A `kmem_cache` of inode containers; destroyed when dropped.
struct InodeCache(NonNull<ffi::kmem_cache>);

impl InodeCache {
    fn new<T: Operations>() -> Result<Self> {
        // SAFETY: The name is static; the ctor initializes the VFS inode of
        // a container of this size, as `inode_init_once` requires.
        let cache = unsafe {
            ffi::oxdax_kmem_cache_create(
                T::NAME.as_char_ptr(),
                u32::try_from(inode::container_size::<T>()).map_err(|_| EINVAL)?,
                Some(inode::init_once::<T>),
            )
        };
        NonNull::new(cache).map(Self).ok_or(ENOMEM)
    }
}

impl Drop for InodeCache {
    fn drop(&mut self) {
        // SAFETY: Inodes are freed by RCU callbacks (`free_inode`): wait
        // for them, then no object of the cache is left.
        unsafe {
            ffi::rcu_barrier();
            ffi::kmem_cache_destroy(self.0.as_ptr().cast());
        }
    }
}

/// A registered filesystem type with its inode cache; unregistered when
/// dropped (the module cannot be unloaded while a super block exists: each
/// holds a module reference).
#[pin_data(PinnedDrop)]
pub(crate) struct Registration<T: Operations> {
    inode_cache: InodeCache,
    /// The DAX devices this filesystem's mounts hold: the memory-failure
    /// callback finds its super block here instead of dereferencing a
    /// holder pointer that unmount may free.
    #[pin]
    holders: Holders<SuperBlockHolder<T>>,
    registered: bool,
}

// SAFETY: The cache pointer is only used through kmem_cache functions,
// which are thread-safe; the holder registry is under its mutex.
unsafe impl<T: Operations> Send for Registration<T> {}
// SAFETY: `&Registration` only hands out the cache pointer, for the
// thread-safe kmem_cache_alloc/free, and the holder registry, which is
// under its mutex (`T::Info` is `Send + Sync`); the cache is destroyed only
// in `drop`.
unsafe impl<T: Operations> Sync for Registration<T> {}

/// Context operations, one table per filesystem type.
struct ContextOps<T: Operations>(PhantomData<T>);

impl<T: Operations> ContextOps<T> {
    const OPS: ffi::fs_context_operations = ffi::fs_context_operations {
        free: Some(context_free::<T>),
        dup: None,
        parse_param: Some(parse_param_callback::<T>),
        parse_monolithic: None,
        get_tree: Some(get_tree_callback::<T>),
        reconfigure: if T::HAS_RECONFIGURE {
            Some(reconfigure_callback::<T>)
        } else {
            None
        },
    };
}

impl<T: Operations> Registration<T> {
    /// Creates the inode cache and registers the type.
    pub(crate) fn new(module: &'static ThisModule) -> Result<Pin<KBox<Self>>> {
        let fs_type = T::fs_type();
        if !fs_type.registration.load(Ordering::Acquire).is_null() {
            return Err(EBUSY);
        }
        let mut this = KBox::pin_init(
            try_pin_init!(Self {
                inode_cache: InodeCache::new::<T>()?,
                holders <- Holders::new(),
                registered: false,
            }? Error),
            GFP_KERNEL,
        )?;
        let raw = fs_type.raw.get();
        // SAFETY: `raw` is static and not registered, so nobody reads it;
        // zeroed is its initial state (lock class keys included).
        unsafe {
            raw.write(core::mem::zeroed());
            (*raw).name = T::NAME.as_char_ptr();
            (*raw).fs_flags = ffi::FS_REQUIRES_DEV as _;
            (*raw).init_fs_context = Some(init_fs_context::<T>);
            (*raw).kill_sb = Some(kill_sb_callback::<T>);
            (*raw).owner = module.as_ptr();
        }
        fs_type.registration.store(
            core::ptr::from_ref::<Self>(&this).cast_mut().cast(),
            Ordering::Release,
        );
        // SAFETY: The type is fully initialized and static.
        if let Err(e) = to_result(unsafe { ffi::register_filesystem(raw) }) {
            fs_type
                .registration
                .store(core::ptr::null_mut(), Ordering::Release);
            return Err(e);
        }
        // SAFETY: Only a plain field changes; nothing is moved.
        unsafe { this.as_mut().get_unchecked_mut().registered = true };
        Ok(this)
    }

    /// The inode cache.
    pub(crate) fn inode_cache(&self) -> *mut ffi::kmem_cache {
        self.inode_cache.0.as_ptr()
    }

    /// The registration of `T`, while registered.
    pub(crate) fn of() -> Option<&'static Self> {
        T::fs_type().registration::<T>()
    }

    /// The holder registry of `T`'s mounts, while `T` is registered.
    pub(super) fn holders() -> Option<&'static Holders<SuperBlockHolder<T>>> {
        Self::of().map(|registration| &registration.holders)
    }
}

#[pinned_drop]
impl<T: Operations> PinnedDrop for Registration<T> {
    fn drop(self: Pin<&mut Self>) {
        if !self.registered {
            return;
        }
        let fs_type = T::fs_type();
        // SAFETY: The type was registered by `new`, and no super block of
        // it exists (each holds a reference on the module being unloaded).
        unsafe { ffi::unregister_filesystem(fs_type.raw.get()) };
        fs_type
            .registration
            .store(core::ptr::null_mut(), Ordering::Release);
    }
}

/// The options a mount context collects.
///
/// # Safety
///
/// `fc` is a context of `T`'s type whose private data `init_fs_context`
/// set.
unsafe fn options<'a, T: Operations>(fc: *mut ffi::fs_context) -> &'a mut T::Options {
    // SAFETY: `fc` is a context of `T`'s type, so its `fs_private` is the
    // boxed `T::Options` that `init_fs_context::<T>` set, freed only by
    // `free` (this function's `# Safety`); the VFS serializes the context's
    // operations, so the `&mut` is the only reference.
    unsafe { &mut *(*fc).fs_private.cast::<T::Options>() }
}

/// # Safety
///
/// Called by the VFS with a new context of this type.
unsafe extern "C" fn init_fs_context<T: Operations>(
    fc: *mut kernel::bindings::fs_context,
) -> kernel::ffi::c_int {
    // The kernel crate only declares the context; oxdax's bindings define it.
    let fc = fc.cast::<ffi::fs_context>();
    let options = match KBox::new(T::Options::default(), GFP_KERNEL) {
        Ok(options) => options,
        Err(_) => return ENOMEM.to_errno(),
    };
    // SAFETY: `fc` is the new context; its private data and operations are
    // the filesystem's to set. `free` releases the options.
    unsafe {
        (*fc).fs_private = KBox::into_raw(options).cast();
        (*fc).ops = &ContextOps::<T>::OPS;
    }
    0
}

/// # Safety
///
/// Called by the VFS when the context goes away.
unsafe extern "C" fn context_free<T: Operations>(fc: *mut ffi::fs_context) {
    // SAFETY: `fs_private` is null or the options `init_fs_context` boxed.
    let options = unsafe { (*fc).fs_private.cast::<T::Options>() };
    if !options.is_null() {
        // SAFETY: Not null, so `options` is the `KBox<T::Options>` that
        // `init_fs_context::<T>` leaked into `fs_private`; `free` is the
        // context's last operation and runs once, so nothing uses the options
        // afterwards.
        drop(unsafe { KBox::from_raw(options) });
    }
}

/// # Safety
///
/// Called by the VFS with a context of this type and a live parameter.
unsafe extern "C" fn parse_param_callback<T: Operations>(
    fc: *mut ffi::fs_context,
    param: *mut ffi::fs_parameter,
) -> kernel::ffi::c_int {
    let mut key = core::ptr::null();
    let mut value = core::ptr::null();
    // SAFETY: `param` is live; the out pointers are valid.
    if unsafe { ffi::oxdax_fs_param(param, &mut key, &mut value) } != 0 {
        // A file descriptor or binary blob: no oxdax option takes one.
        return crate::sys::errno::enoparam().to_errno();
    }
    // SAFETY: The key is a NUL-terminated string that outlives the call.
    let key = unsafe { CStr::from_char_ptr(key) };
    // SAFETY: When not null, `value` is `param->string`, NUL-terminated and
    // owned by `param`, which the VFS keeps alive for this call.
    let value = (!value.is_null()).then(|| unsafe { CStr::from_char_ptr(value) });
    // SAFETY: The VFS calls `parse_param` only on contexts of `T`'s type,
    // whose private data `init_fs_context::<T>` set: what `options`
    // requires.
    to_c_int(T::parse_param(unsafe { options::<T>(fc) }, key, value))
}

/// # Safety
///
/// Called by the VFS with a context of this type.
unsafe extern "C" fn get_tree_callback<T: Operations>(
    fc: *mut ffi::fs_context,
) -> kernel::ffi::c_int {
    // SAFETY: `fc` is live; `fill_super_callback` matches the prototype.
    unsafe { ffi::get_tree_bdev(fc, Some(fill_super_callback::<T>)) }
}

/// # Safety
///
/// Called by `get_tree_bdev` with a new, locked super block (its device
/// opened) and the context.
unsafe extern "C" fn fill_super_callback<T: Operations>(
    sb: *mut ffi::super_block,
    fc: *mut ffi::fs_context,
) -> kernel::ffi::c_int {
    // SAFETY: `sb` is new and ours until this returns; `fc` is live.
    to_c_int(unsafe { super_block::fill_super::<T>(sb, options::<T>(fc)) })
}

/// # Safety
///
/// Called by the VFS with a context for a mounted super block of this type.
unsafe extern "C" fn reconfigure_callback<T: Operations>(
    fc: *mut ffi::fs_context,
) -> kernel::ffi::c_int {
    // SAFETY: `fc->root` is the mounted root; its super block is live and
    // `s_umount` is held for writing while reconfiguring.
    let (sb, read_only) = unsafe {
        (
            (*(*fc).root).d_sb,
            (*fc).sb_flags & ffi::SB_RDONLY as u32 != 0,
        )
    };
    // SAFETY: `sb` is the super block of `fc->root`, a mount of `T` (this
    // callback is only in `T`'s context table); the reconfiguration context
    // holds an active reference on it and the caller `s_umount` for writing,
    // across this call, which `sb` does not outlive.
    let sb = unsafe { SuperBlock::<T>::from_raw(sb) };
    // SAFETY: Pending writes reach the filesystem before its state changes.
    unsafe { ffi::sync_filesystem(sb.as_ptr()) };
    // SAFETY: `fc` is a context of this type.
    to_c_int(T::reconfigure(sb, unsafe { options::<T>(fc) }, read_only))
}

/// # Safety
///
/// Called by the VFS to destroy a super block of this type.
unsafe extern "C" fn kill_sb_callback<T: Operations>(sb: *mut ffi::super_block) {
    // Background work ends before the shutdown evicts the inodes it uses.
    // SAFETY: `sb` is a live super block of `T`, for this call.
    if let Some(info) = unsafe { SuperBlock::<T>::from_raw(sb) }.info() {
        if let Some(job) = T::background_of(info) {
            job.stop();
        }
    }
    // SAFETY: `sb` is live; this shuts it down (calling `put_super` if it
    // was mounted) and releases its device.
    unsafe { ffi::kill_block_super(sb) };
    // A mount that failed after `fill_super` created its info never got a
    // `put_super`: release the info here.
    // SAFETY: `sb` is still allocated (the VFS frees it after `kill_sb`).
    unsafe { super_block::release_info::<T>(sb) };
}
