// SPDX-License-Identifier: GPL-2.0

//! DAX devices (`struct dax_device`): direct access to a block device's
//! memory, and the holder (a filesystem) that hears about memory failures.

pub(crate) mod holder;

use core::{
    ptr::NonNull,
    sync::atomic::{AtomicBool, AtomicPtr, Ordering},
};

use kernel::{error::from_err_ptr, error::to_result, prelude::*, sync::Arc};

use crate::{
    ffi,
    sys::{block::Disk, memory::PmemMemory, once::Stages},
};

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

/// The `pfn_t` of device memory with a page map at physical address
/// `phys` (`PFN_DEV | PFN_MAP`), as `direct_access` answers it.
pub(crate) fn devmap_pfn(phys: u64) -> u64 {
    // SAFETY: Arithmetic on the number only (a helper for the static
    // inline `phys_to_pfn_t`); nothing is dereferenced.
    unsafe { ffi::oxdax_phys_to_pfn_t(phys, ffi::PFN_DEV | ffi::PFN_MAP) }
}

/// Operations of a DAX device's provider (a pmem driver).
pub(crate) trait DaxOperations: Sync {
    /// Where `pgoff` is and how many of the `nr_pages` pages from there can
    /// be accessed.
    fn direct_access(&self, pgoff: u64, nr_pages: u64, mode: AccessMode) -> Result<Access>;
    /// Zeroes `nr_pages` pages from `pgoff`, clearing poison.
    fn zero_page_range(&self, pgoff: u64, nr_pages: u64) -> Result;
    /// Carries out `write` (at `pgoff`), clearing poison first; returns
    /// the bytes copied.
    fn recovery_write(&self, pgoff: u64, write: RecoveryWrite<'_>) -> usize;
}

/// A write the DAX core asks a provider to make over poisoned memory
/// (`dax_recovery_write`): bytes from the caller's iterator to an address
/// `direct_access` gave in recovery mode. Only the DAX callback makes one,
/// for the length of the call.
///
/// # Invariants
///
/// `addr..addr + bytes` is device memory `direct_access` mapped for the
/// write's page offset in recovery mode, and `iter` is the live iterator of
/// the call (`'a`).
pub(crate) struct RecoveryWrite<'a> {
    addr: *mut u8,
    bytes: usize,
    iter: *mut ffi::iov_iter,
    _call: core::marker::PhantomData<&'a mut ffi::iov_iter>,
}

impl RecoveryWrite<'_> {
    /// Offset of the destination in its page.
    pub(crate) fn offset_in_page(&self) -> usize {
        self.addr as usize % crate::logic::pmem::PAGE_SIZE as usize
    }

    /// Bytes to write.
    pub(crate) fn len(&self) -> usize {
        self.bytes
    }

    /// Copies the bytes, bypassing the CPU cache; returns the bytes copied.
    pub(crate) fn copy(self) -> usize {
        // SAFETY: The destination is mapped device memory for `bytes` bytes
        // and `iter` the call's live iterator (type invariant).
        unsafe { ffi::_copy_from_iter_flushcache(self.addr.cast(), self.bytes, self.iter) }
    }
}

/// A DAX device, alive until dropped (then killed: holders are told the
/// whole device is going away, and new accesses fail).
///
/// # Invariants
///
/// `dax` is a DAX device this owns a reference to (put when dropped).
/// `hosting` is live exactly while `dax_hosts` has an entry for the device,
/// keyed by `host`: at most one entry, always removed before the reference
/// is put.
pub(crate) struct DaxDevice {
    dax: NonNull<ffi::dax_device>,
    /// The disk the device was published for (its `dax_hosts` key).
    host: AtomicPtr<ffi::gendisk>,
    /// Published once (`add_host`), unpublished once (`kill` or `drop`).
    hosting: Stages,
    killed: AtomicBool,
}

// SAFETY: dax functions are callable from any thread; `host` is atomic.
unsafe impl Send for DaxDevice {}
// SAFETY: `&DaxDevice` only calls DAX core functions that synchronize
// themselves (atomic flag bits, the `dax_srcu` section, the `dax_hosts`
// xarray), `host` and `killed` are atomics, and the provider is `Sync`.
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
    /// Allocates a DAX device served by `provider`.
    ///
    /// # Safety
    ///
    /// `provider` stays where it is until the device was killed
    /// ([`DaxDevice::kill`]: no callback runs after it) and dropped (the
    /// caller keeps it in the same pinned allocation and kills the device
    /// before dropping it).
    pub(crate) unsafe fn alloc<T: DaxOperations>(provider: &T, flags: &DaxFlags) -> Result<Self> {
        // SAFETY: `provider` outlives every callback of the device (this
        // function's `# Safety`); the table is static.
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
            hosting: Stages::new(),
            killed: AtomicBool::new(false),
        })
    }

    /// The raw device, for C helpers that take it.
    pub(crate) fn as_ptr(&self) -> *mut ffi::dax_device {
        self.dax.as_ptr()
    }

    /// Publishes the device as the DAX device of `disk`, so that
    /// `fs_dax_get_by_bdev()` finds it, until [`DaxDevice::kill`]. Once
    /// only: `EBUSY` for a second call (or one after `kill`), and for a
    /// disk another DAX device was published for. The table only keys on
    /// the disk's address: a disk dropped first leaves a stale key, never
    /// dereferenced, that `kill` removes.
    pub(crate) fn add_host(&self, disk: &Disk) -> Result {
        if self.killed.load(Ordering::Acquire) {
            return Err(EBUSY);
        }
        self.hosting.set_up(|| {
            let disk = disk.as_ptr();
            // SAFETY: The device is alive (we hold a reference) and `disk`
            // is a live gendisk for the call; the DAX core only stores its
            // address as the key of an entry pointing at the device.
            // `hosting` lets this run once, so the device has no other
            // entry, and the one made here is removed before the reference
            // is put (type invariant).
            to_result(unsafe { ffi::dax_add_host(self.dax.as_ptr(), disk.cast()) })?;
            self.host.store(disk, Ordering::Release);
            Ok(())
        })
    }

    /// Removes the device's `dax_hosts` entry, if `add_host` made one and
    /// it was not removed yet.
    fn remove_host(&self) {
        self.hosting.tear_down(|| {
            let host = self.host.swap(core::ptr::null_mut(), Ordering::AcqRel);
            // SAFETY: `add_host` inserted an entry keyed by `host` (the
            // set-up succeeded: `hosting`), and this runs once; the DAX
            // core only erases the key, never dereferencing the disk.
            unsafe { ffi::dax_remove_host(host.cast()) };
        });
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
        // Unpublished first, as pmem does: no new holder finds it.
        self.remove_host();
        // SAFETY: The device is alive (we hold a reference); killing it
        // twice is excluded by `killed`.
        unsafe { ffi::kill_dax(self.dax.as_ptr()) };
    }
}

impl Drop for DaxDevice {
    fn drop(&mut self) {
        self.kill();
        // An `add_host` that raced with `kill` finished its entry after
        // `kill` looked: removed here, before the reference goes.
        self.remove_host();
        // SAFETY: The device is ours and dead, and no `dax_hosts` entry
        // points at it any more (`remove_host` above): this drops our
        // reference.
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
    // SAFETY: `dax` was allocated by `DaxDevice::alloc::<T>`, the only place
    // that installs `Table::<T>::OPS`, whose callback this is, so its private
    // data is a `T` that outlives the device (`alloc`'s contract).
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
    // SAFETY: `dax` was allocated by `DaxDevice::alloc::<T>`, the only place
    // that installs `Table::<T>::OPS`, whose callback this is, so its private
    // data is a `T` that outlives the device (`alloc`'s contract).
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
    let write = RecoveryWrite {
        addr: addr.cast(),
        bytes,
        iter: iter.cast(),
        _call: core::marker::PhantomData,
    };
    // SAFETY: `dax` was allocated by `DaxDevice::alloc::<T>`, the only place
    // that installs `Table::<T>::OPS`, whose callback this is, so its private
    // data is a `T` that outlives the device (`alloc`'s contract). `write`
    // meets its invariant: `addr` came from `direct_access` for `pgoff` in
    // recovery mode and `iter` is live (this callback's `# Safety`).
    unsafe { provider::<T>(dax) }.recovery_write(pgoff as u64, write)
}

/// Why a block device's DAX device could not be taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FsDaxError {
    /// No DAX device (or one another filesystem holds).
    NotDax,
}

/// A block device's DAX device, taken by a filesystem as holder
/// (`fs_dax_get_by_bdev`); released (`fs_put_dax`) when dropped.
///
/// # Invariants
///
/// `dax` was taken with `fs_dax_get_by_bdev` for `holder` and is released
/// (`fs_put_dax`) only when dropped.
pub(crate) struct FsDax {
    dax: NonNull<ffi::dax_device>,
    holder: *mut kernel::ffi::c_void,
    start: u64,
}

// SAFETY: DAX functions are callable from any thread; the holder pointer
// is only compared, never dereferenced here.
unsafe impl Send for FsDax {}
// SAFETY: `&FsDax` only tests the device's flag bits, enters `dax_srcu` read
// sections and calls `dax_direct_access` in them, all of which the DAX core
// allows concurrently; `holder` is never dereferenced here.
unsafe impl Sync for FsDax {}

/// A DAX read section (`dax_read_lock`) in which the device was alive:
/// memory it mapped stays mapped until the guard is dropped, because
/// `kill_dax` waits for every such section before the driver unmaps it.
pub(crate) struct DaxReadGuard {
    id: kernel::ffi::c_int,
}

impl Drop for DaxReadGuard {
    fn drop(&mut self) {
        // SAFETY: `id` came from `dax_read_lock` and is unlocked once.
        unsafe { ffi::dax_read_unlock(self.id) };
    }
}

/// What mapping the whole device found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MapError {
    /// Only this many of the pages are contiguous.
    Partial(u64),
    /// The range holds poisoned memory.
    Poisoned,
    /// The device is dead.
    Dead,
    /// Another error (errno).
    Other(i32),
}

impl FsDax {
    /// Takes `bdev`'s DAX device with `holder` and its operations.
    ///
    /// # Safety
    ///
    /// `bdev` is an open block device; `holder` and `ops` outlive the
    /// result and any callback the DAX core may still be running after it
    /// was dropped.
    pub(crate) unsafe fn get(
        bdev: *mut ffi::block_device,
        holder: *mut kernel::ffi::c_void,
        ops: *const ffi::dax_holder_operations,
    ) -> Result<Self, FsDaxError> {
        let mut start = 0u64;
        // SAFETY: `bdev` is an open block device, and `holder` and `ops`
        // outlive the result and any callback still running after it is
        // dropped (this function's `# Safety`); `start` is a local valid for
        // writes.
        let dax = unsafe { ffi::fs_dax_get_by_bdev(bdev.cast(), &mut start, holder, ops) };
        let dax = NonNull::new(dax).ok_or(FsDaxError::NotDax)?;
        Ok(Self { dax, holder, start })
    }

    /// The raw device (identity, for the holder registry).
    pub(crate) fn as_ptr(&self) -> *mut ffi::dax_device {
        self.dax.as_ptr()
    }

    /// Byte offset of the block device's start in the DAX device.
    pub(crate) fn start(&self) -> u64 {
        self.start
    }

    /// CPU stores that left the caches are persistent (`MAP_SYNC` is
    /// honest on this device).
    pub(crate) fn is_synchronous(&self) -> bool {
        // SAFETY: We hold a reference on the device.
        unsafe { ffi::dax_synchronous(self.dax.as_ptr()) }
    }

    /// Enters a read section if the device is alive.
    pub(crate) fn read_lock(&self) -> Option<DaxReadGuard> {
        // SAFETY: Always allowed; the section ends when the guard drops.
        let id = unsafe { ffi::dax_read_lock() };
        let guard = DaxReadGuard { id };
        // SAFETY: We hold a reference on the device.
        unsafe { ffi::dax_alive(self.dax.as_ptr()) }.then_some(guard)
    }

    /// Maps `len` bytes from the block device's start, all contiguous;
    /// returns their mapping, reachable only while the device is alive
    /// ([`DaxMemory::access`]), and their page frames (the frames of
    /// device memory are contiguous too: one `pfn_t` run).
    pub(crate) fn map_all(
        dax: &Arc<Self>,
        len: u64,
    ) -> Result<(DaxMemory, DeviceFrames), MapError> {
        let this = &**dax;
        let page = crate::logic::pmem::PAGE_SIZE;
        let pages = len / page;
        let _guard = this.read_lock().ok_or(MapError::Dead)?;
        let mut kaddr = core::ptr::null_mut();
        let mut pfn = ffi::pfn_t { val: 0 };
        // SAFETY: We hold a reference on the live device and are in a read
        // section; `kaddr` and `pfn` are valid for writes.
        let got = unsafe {
            ffi::dax_direct_access(
                this.dax.as_ptr(),
                (this.start / page) as _,
                pages as _,
                ffi::dax_access_mode_DAX_ACCESS,
                &mut kaddr,
                &mut pfn,
            )
        };
        if got < 0 {
            return Err(if got == -(ffi::EHWPOISON as isize) {
                MapError::Poisoned
            } else {
                MapError::Other(got as i32)
            });
        }
        if (got as u64) < pages {
            return Err(MapError::Partial(got as u64));
        }
        let base = NonNull::new(kaddr.cast()).ok_or(MapError::Other(-(ffi::EIO as i32)))?;
        // SAFETY: `direct_access` mapped `pages` pages (at least `len`
        // bytes rounded down) contiguously; they stay mapped while the
        // device is alive, and `DaxMemory` hands the memory out only inside
        // read sections that found it alive.
        let memory = unsafe { PmemMemory::new(base, pages * page) };
        let memory = DaxMemory {
            memory,
            dax: dax.clone(),
        };
        // pfn_t keeps its flags in the top 12 bits (PFN_FLAGS_MASK).
        let frames = DeviceFrames {
            first: pfn.val & ((1u64 << 52) - 1),
            pages,
        };
        Ok((memory, frames))
    }
}

impl Drop for FsDax {
    fn drop(&mut self) {
        // SAFETY: Taken by `get` with this holder; released once.
        unsafe { ffi::fs_put_dax(self.dax.as_ptr(), self.holder) };
    }
}

/// The page frames of a DAX device's memory, as [`FsDax::map_all`] found
/// them: the only frames a fault may map besides the zero page.
///
/// # Invariants
///
/// `first..first + pages` are the frames of device memory (ZONE_DEVICE
/// pages of a DAX device) that `map_all` mapped.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DeviceFrames {
    first: u64,
    pages: u64,
}

/// A page frame of device memory: one of [`DeviceFrames`], or the first of
/// a 2 MiB run of them for [`DeviceFrames::pmd`]. Only those can make one,
/// so a page table insertion of a `DeviceFrame` maps device memory, never
/// arbitrary physical memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DeviceFrame(u64);

impl DeviceFrame {
    /// The frame number.
    pub(crate) fn number(self) -> u64 {
        self.0
    }
}

impl DeviceFrames {
    /// Frame of device byte 0.
    pub(crate) fn first(&self) -> u64 {
        self.first
    }

    /// Whether frames `frame..frame + count` are all device memory.
    pub(crate) fn contains(&self, frame: u64, count: u64) -> bool {
        frame
            .checked_sub(self.first)
            .and_then(|page| page.checked_add(count))
            .is_some_and(|end| end <= self.pages)
    }

    /// Frame number `frame`, if it is device memory.
    pub(crate) fn frame(&self, frame: u64) -> Option<DeviceFrame> {
        self.contains(frame, 1).then_some(DeviceFrame(frame))
    }

    /// Frame number `frame` as the start of a PMD mapping, if it is 2 MiB
    /// aligned and the whole 2 MiB is device memory.
    pub(crate) fn pmd(&self, frame: u64) -> Option<DeviceFrame> {
        let pmd_pages = crate::logic::dax::PMD_PAGES;
        (frame % pmd_pages == 0 && self.contains(frame, pmd_pages)).then_some(DeviceFrame(frame))
    }

    /// Frame number `frame` as the start of a PUD mapping, if it is 1 GiB
    /// aligned and the whole GiB is device memory.
    pub(crate) fn pud(&self, frame: u64) -> Option<DeviceFrame> {
        let pud_pages = crate::logic::dax::PUD_PAGES;
        (frame % pud_pages == 0 && self.contains(frame, pud_pages)).then_some(DeviceFrame(frame))
    }
}

/// A filesystem's mapping of its whole DAX device. The memory is reached
/// only through [`DaxMemory::access`], a read section in which the device
/// was found alive: `kill_dax` waits for such sections before the driver
/// unmaps the memory, so no access can touch it after the device is gone.
pub(crate) struct DaxMemory {
    memory: PmemMemory,
    /// The device the memory belongs to (kept held while mapped).
    dax: Arc<FsDax>,
}

/// Access to a [`DaxMemory`]: the memory, valid until the guard is
/// dropped.
pub(crate) struct MemoryAccess<'a> {
    memory: &'a PmemMemory,
    _alive: DaxReadGuard,
}

impl DaxMemory {
    /// Bytes mapped.
    pub(crate) fn len(&self) -> u64 {
        self.memory.len()
    }

    /// The memory, if the device is alive; it stays mapped until the
    /// result is dropped. Read sections nest: a caller may hold one.
    pub(crate) fn access(&self) -> Option<MemoryAccess<'_>> {
        let alive = self.dax.read_lock()?;
        Some(MemoryAccess {
            memory: &self.memory,
            _alive: alive,
        })
    }
}

impl core::ops::Deref for MemoryAccess<'_> {
    type Target = PmemMemory;

    fn deref(&self) -> &PmemMemory {
        self.memory
    }
}
