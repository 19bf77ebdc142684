// SPDX-License-Identifier: GPL-2.0

//! DAX devices (`struct dax_device`): direct access to a block device's
//! memory, and the holder (a filesystem) that hears about memory failures.

use core::{
    ptr::NonNull,
    sync::atomic::{AtomicBool, AtomicPtr, Ordering},
};

use kernel::{error::from_err_ptr, error::to_result, prelude::*};

use crate::ffi;

/// How a DAX access is meant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AccessMode {
    /// Normal access: poisoned ranges are refused.
    Normal,
    /// A write that will overwrite poisoned memory.
    RecoveryWrite,
}

/// What `direct_access` found.
pub(crate) struct Access {
    /// Pages available from the requested offset.
    pub(crate) pages: u64,
    /// Kernel address of the first page.
    pub(crate) kaddr: *mut u8,
    /// `pfn_t` value of the first page.
    pub(crate) pfn: u64,
}

/// Operations of a DAX device's provider (a pmem driver).
pub(crate) trait DaxOperations: Sync {
    /// Where `pgoff` is and how many of the `nr_pages` pages from there can
    /// be accessed.
    fn direct_access(&self, pgoff: u64, nr_pages: u64, mode: AccessMode) -> Result<Access>;
    /// Zeroes `nr_pages` pages from `pgoff`, clearing poison.
    fn zero_page_range(&self, pgoff: u64, nr_pages: u64) -> Result;
    /// Copies `bytes` from `iter` to `addr` (at `pgoff`), clearing poison
    /// first; returns the bytes copied.
    ///
    /// # Safety
    ///
    /// `addr` was returned by `direct_access` for `pgoff` in recovery mode
    /// and `iter` is a live iterator.
    unsafe fn recovery_write(
        &self,
        pgoff: u64,
        addr: *mut u8,
        bytes: usize,
        iter: *mut ffi::iov_iter,
    ) -> usize;
}

/// A DAX device, alive until dropped (then killed: holders are told the
/// whole device is going away, and new accesses fail).
pub(crate) struct DaxDevice {
    dax: NonNull<ffi::dax_device>,
    host: AtomicPtr<ffi::gendisk>,
    killed: AtomicBool,
}

// SAFETY: dax functions are callable from any thread; `host` is atomic.
unsafe impl Send for DaxDevice {}
// SAFETY: As above.
unsafe impl Sync for DaxDevice {}

struct Table<T: DaxOperations>(core::marker::PhantomData<T>);

impl<T: DaxOperations> Table<T> {
    const OPS: ffi::dax_operations = ffi::dax_operations {
        direct_access: Some(direct_access_callback::<T>),
        dax_supported: None,
        zero_page_range: Some(zero_page_range_callback::<T>),
        recovery_write: Some(recovery_write_callback::<T>),
    };
}

/// Behaviour flags of a new DAX device.
pub(crate) struct DaxFlags {
    /// Stores are durable once out of the CPU cache (MAP_SYNC allowed).
    pub(crate) synchronous: bool,
    /// Whether the CPU caches must be written back for persistence.
    pub(crate) write_cache: bool,
}

impl DaxDevice {
    /// Allocates a DAX device served by `provider`, which must outlive it.
    pub(crate) fn alloc<T: DaxOperations>(provider: &T, flags: &DaxFlags) -> Result<Self> {
        // SAFETY: `provider` outlives the device (caller); the table is static.
        let dax = from_err_ptr(unsafe {
            ffi::alloc_dax(
                core::ptr::from_ref(provider).cast_mut().cast(),
                &Table::<T>::OPS,
            )
        })?;
        let dax = NonNull::new(dax).ok_or(ENOMEM)?;
        // SAFETY: `dax` is a fresh device nobody else sees yet. The provider
        // writes with non-temporal stores and reads with machine-check-safe
        // copies, so the DAX core need do neither.
        unsafe {
            ffi::set_dax_nocache(dax.as_ptr());
            ffi::set_dax_nomc(dax.as_ptr());
            if flags.synchronous {
                ffi::set_dax_synchronous(dax.as_ptr());
            }
            ffi::dax_write_cache(dax.as_ptr(), flags.write_cache);
        }
        Ok(Self {
            dax,
            host: AtomicPtr::new(core::ptr::null_mut()),
            killed: AtomicBool::new(false),
        })
    }

    /// The raw device, for C helpers that take it.
    pub(crate) fn as_ptr(&self) -> *mut ffi::dax_device {
        self.dax.as_ptr()
    }

    /// Publishes the device as the DAX device of `disk`, so that
    /// `fs_dax_get_by_bdev()` finds it. `disk` must outlive the device.
    pub(crate) fn add_host(&self, disk: *mut ffi::gendisk) -> Result {
        // SAFETY: The device is alive and `disk` outlives it (caller).
        to_result(unsafe { ffi::dax_add_host(self.dax.as_ptr(), disk.cast()) })?;
        self.host.store(disk, Ordering::Release);
        Ok(())
    }

    /// Tells the holder (the filesystem mounted on the disk) that
    /// `[offset, offset + len)` failed. `EOPNOTSUPP` without a holder.
    pub(crate) fn notify_failure(&self, offset: u64, len: u64, mf_flags: i32) -> Result {
        // SAFETY: The device is alive.
        to_result(unsafe {
            ffi::dax_holder_notify_failure(self.dax.as_ptr(), offset, len, mf_flags)
        })
    }

    /// Unpublishes and kills the device (idempotent): the holder is told
    /// the whole device is going away (`MF_MEM_PRE_REMOVE`) and unmaps it,
    /// and new accesses fail. Provider callbacks may run until this returns.
    pub(crate) fn kill(&self) {
        if self.killed.swap(true, Ordering::AcqRel) {
            return;
        }
        let host = self.host.swap(core::ptr::null_mut(), Ordering::AcqRel);
        // SAFETY: The device is alive; the order is pmem's.
        unsafe {
            if !host.is_null() {
                ffi::dax_remove_host(host.cast());
            }
            ffi::kill_dax(self.dax.as_ptr());
        }
    }
}

impl Drop for DaxDevice {
    fn drop(&mut self) {
        self.kill();
        // SAFETY: The device is ours and dead; this drops our reference.
        unsafe { ffi::put_dax(self.dax.as_ptr()) };
    }
}

/// # Safety
///
/// Called by the DAX core for a device allocated by `DaxDevice::alloc::<T>`.
unsafe fn provider<'a, T: DaxOperations>(dax: *mut ffi::dax_device) -> &'a T {
    // SAFETY: The private pointer is the provider, which outlives the device.
    unsafe { &*ffi::dax_get_private(dax).cast::<T>() }
}

/// # Safety
///
/// Called by the DAX core (within a `dax_read_lock` section).
unsafe extern "C" fn direct_access_callback<T: DaxOperations>(
    dax: *mut ffi::dax_device,
    pgoff: kernel::ffi::c_ulong,
    nr_pages: kernel::ffi::c_long,
    mode: ffi::dax_access_mode,
    kaddr: *mut *mut kernel::ffi::c_void,
    pfn: *mut ffi::pfn_t,
) -> kernel::ffi::c_long {
    let mode = if mode == ffi::dax_access_mode_DAX_RECOVERY_WRITE {
        AccessMode::RecoveryWrite
    } else {
        AccessMode::Normal
    };
    let Ok(nr_pages) = u64::try_from(nr_pages) else {
        return EINVAL.to_errno() as _;
    };
    // SAFETY: See `provider`.
    match unsafe { provider::<T>(dax) }.direct_access(pgoff as u64, nr_pages, mode) {
        Ok(access) => {
            // SAFETY: The out pointers are null or valid (DAX core contract).
            unsafe {
                if !kaddr.is_null() {
                    *kaddr = access.kaddr.cast();
                }
                if !pfn.is_null() {
                    (*pfn).val = access.pfn;
                }
            }
            access.pages as _
        }
        Err(e) => e.to_errno() as _,
    }
}

/// # Safety
///
/// Called by the DAX core.
unsafe extern "C" fn zero_page_range_callback<T: DaxOperations>(
    dax: *mut ffi::dax_device,
    pgoff: kernel::ffi::c_ulong,
    nr_pages: usize,
) -> kernel::ffi::c_int {
    // SAFETY: See `provider`.
    match unsafe { provider::<T>(dax) }.zero_page_range(pgoff as u64, nr_pages as u64) {
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    }
}

/// # Safety
///
/// Called by the DAX core with an address from `direct_access` in recovery
/// mode and a live iterator.
unsafe extern "C" fn recovery_write_callback<T: DaxOperations>(
    dax: *mut ffi::dax_device,
    pgoff: kernel::ffi::c_ulong,
    addr: *mut kernel::ffi::c_void,
    bytes: usize,
    iter: *mut ffi::iov_iter,
) -> usize {
    // SAFETY: See `provider`; the address and iterator are as the trait
    // method requires (caller).
    unsafe { provider::<T>(dax).recovery_write(pgoff as u64, addr.cast(), bytes, iter.cast()) }
}
