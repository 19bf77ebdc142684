// SPDX-License-Identifier: GPL-2.0

//! libnvdimm: namespace drivers, namespaces and regions.

use core::{marker::PhantomData, pin::Pin, ptr::NonNull};

use kernel::{
    error::{from_err_ptr, to_result},
    prelude::*,
    str::CStr,
    types::Opaque,
};

use crate::ffi;

/// A libnvdimm namespace driver.
///
/// The driver core serializes `probe`, `remove`, `shutdown` and `notify` of
/// one device under its device lock, so the per-device data needs no lock of
/// its own for them.
pub(crate) trait NdDriver: 'static {
    /// What the driver keeps for each bound namespace.
    type Data: NdData;

    /// Name under `/sys/bus/nd/drivers/`.
    const NAME: &'static CStr;

    /// The `ND_DRIVER_*` namespace types to bind.
    const TYPES: u64;

    /// Binds a namespace. Only the binding can call it (`Probing`): the
    /// data it returns is the binding's, dropped at unbind.
    fn probe(namespace: &Namespace, probing: Probing) -> Result<Pin<KBox<Self::Data>>>;

    /// The bus asks to re-read media errors or region state.
    fn notify(_data: &Self::Data, _namespace: &Namespace, _event: NvdimmEvent) {}

    /// The system is going down: make what was written durable.
    fn shutdown(_data: &Self::Data, _namespace: &Namespace) {}
}

/// A bound namespace's data.
pub(crate) trait NdData: Send + Sync {
    /// The namespace is being unbound: stop serving it (tear down what
    /// calls into the data, waiting for running callbacks). Runs before the
    /// data is dropped, with only shared references to it, because what is
    /// being torn down may still call into it until it is gone. Only the
    /// binding can call it (`Unbinding`).
    fn unbind(&self, unbinding: Unbinding);
}

/// Proof that the binding is starting: only the probe callback makes one,
/// so the data [`NdDriver::probe`] returns always goes to the binding,
/// which owns it until unbind; no other caller gets one to keep.
pub(crate) struct Probing(());

/// Proof that the binding is ending: only `remove` makes one, so no driver
/// can tear its data down while it still uses what the teardown frees.
pub(crate) struct Unbinding(());

/// What `notify` is told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NvdimmEvent {
    /// The bus's list of media errors changed.
    RevalidatePoison,
    /// The region's state (read-only) changed.
    RevalidateRegion,
}

/// A registered namespace driver; unregistered (unbinding every namespace)
/// when dropped.
///
/// # Invariants
///
/// `driver` is registered with libnvdimm from `new` until `drop`.
#[pin_data(PinnedDrop)]
pub(crate) struct Registration<T: NdDriver> {
    #[pin]
    driver: Opaque<ffi::nd_device_driver>,
    _driver: PhantomData<T>,
}

// SAFETY: The registration is only touched at creation and drop; the driver
// core synchronizes its own use of the structure.
unsafe impl<T: NdDriver> Send for Registration<T> {}
// SAFETY: `&Registration` has no method, so sharing it gives no access; the
// driver core reads the registered driver under its own locks.
unsafe impl<T: NdDriver> Sync for Registration<T> {}

impl<T: NdDriver> Registration<T> {
    /// Registers the driver; namespaces that are already there are probed
    /// before this returns.
    pub(crate) fn new() -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            // SAFETY: `slot` is valid for writes and pinned: the driver core
            // keeps pointers into it until `nd_driver_unregister`, which
            // `drop` calls. On error the driver was not registered.
            driver <- unsafe {
                kernel::init::pin_init_from_closure(|slot: *mut Opaque<ffi::nd_device_driver>| {
                    let drv = Opaque::raw_get(slot);
                    drv.write(ffi::nd_device_driver {
                        drv: ffi::device_driver {
                            name: T::NAME.as_char_ptr(),
                            ..Default::default()
                        },
                        type_: T::TYPES as _,
                        probe: Some(probe_callback::<T>),
                        remove: Some(remove_callback::<T>),
                        shutdown: Some(shutdown_callback::<T>),
                        notify: Some(notify_callback::<T>),
                    });
                    to_result(ffi::oxdax_nd_driver_register(drv))
                })
            },
            _driver: PhantomData,
        })
    }
}

#[pinned_drop]
impl<T: NdDriver> PinnedDrop for Registration<T> {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: The driver was registered by `new`; this removes every
        // binding (calling `remove`) before returning.
        unsafe { ffi::oxdax_nd_driver_unregister(self.driver.get()) };
    }
}

/// # Safety
///
/// Called by the driver core with a live, locked namespace device.
unsafe extern "C" fn probe_callback<T: NdDriver>(dev: *mut ffi::device) -> kernel::ffi::c_int {
    // SAFETY: `dev` is live and locked for the duration of the call.
    let namespace = unsafe { Namespace::from_raw(dev) };
    match T::probe(&namespace, Probing(())) {
        Ok(data) => {
            // SAFETY: The data is only moved out again in `remove`, which
            // rebuilds the `Pin<KBox>`; it is never moved in between.
            let raw = KBox::into_raw(unsafe { Pin::into_inner_unchecked(data) });
            // SAFETY: `dev` is live; drvdata is ours while bound.
            unsafe { ffi::oxdax_dev_set_drvdata(dev, raw.cast()) };
            0
        }
        Err(e) => e.to_errno(),
    }
}

/// The data `probe` stored for `dev`.
///
/// # Safety
///
/// `dev` is bound to the driver `T` and its device lock is held.
unsafe fn driver_data<'a, T: NdDriver>(dev: *mut ffi::device) -> Option<&'a T::Data> {
    // SAFETY: `dev` is a live device bound to `T` with its lock held (this
    // function's `# Safety`); its drvdata is null or what `probe` stored,
    // which stays valid until `remove`, excluded by the device lock.
    unsafe { ffi::oxdax_dev_get_drvdata(dev).cast::<T::Data>().as_ref() }
}

/// # Safety
///
/// Called by the driver core with a live, locked device bound to `T`.
unsafe extern "C" fn remove_callback<T: NdDriver>(dev: *mut ffi::device) {
    // SAFETY: `dev` is live and locked.
    let raw = unsafe { ffi::oxdax_dev_get_drvdata(dev) }.cast::<T::Data>();
    if raw.is_null() {
        return;
    }
    // SAFETY: `raw` is the live data stored by `probe`, freed only below;
    // shared, as callbacks being torn down may still use it.
    unsafe { &*raw }.unbind(Unbinding(()));
    // SAFETY: `dev` is live; the data is unreachable from here on.
    unsafe { ffi::oxdax_dev_set_drvdata(dev, core::ptr::null_mut()) };
    // SAFETY: `raw` came from `KBox::into_raw` in `probe` and is pinned.
    drop(unsafe { Pin::new_unchecked(KBox::from_raw(raw)) });
}

/// # Safety
///
/// Called by the driver core with a live device bound to `T`.
unsafe extern "C" fn shutdown_callback<T: NdDriver>(dev: *mut ffi::device) {
    // SAFETY: device_shutdown() calls this with a live device bound to `T`
    // and its lock held, what `driver_data` requires.
    if let Some(data) = unsafe { driver_data::<T>(dev) } {
        // SAFETY: `dev` is live for this call: device_shutdown() holds a
        // reference and the device lock around `->shutdown`; the `Namespace`
        // is a temporary that dies with the statement.
        T::shutdown(data, &unsafe { Namespace::from_raw(dev) });
    }
}

/// # Safety
///
/// Called by libnvdimm with a live, locked device bound to `T`.
unsafe extern "C" fn notify_callback<T: NdDriver>(dev: *mut ffi::device, event: ffi::nvdimm_event) {
    let event = match event {
        ffi::nvdimm_event_NVDIMM_REVALIDATE_POISON => NvdimmEvent::RevalidatePoison,
        ffi::nvdimm_event_NVDIMM_REVALIDATE_REGION => NvdimmEvent::RevalidateRegion,
        _ => return,
    };
    // SAFETY: nd_device_notify() calls this with a live device bound to `T`
    // and its lock held, what `driver_data` requires.
    if let Some(data) = unsafe { driver_data::<T>(dev) } {
        // SAFETY: `dev` is live and locked for this call (this callback's
        // `# Safety`: nd_device_notify() holds the device lock); the
        // `Namespace` is a temporary that dies with the statement.
        T::notify(data, &unsafe { Namespace::from_raw(dev) }, event);
    }
}

/// A namespace device while it is being probed or is bound.
///
/// # Invariants
///
/// `dev` is a live namespace device, probed or bound to this driver, while
/// the `Namespace` is used.
pub(crate) struct Namespace {
    dev: NonNull<ffi::device>,
}

/// The part of a namespace `nvdimm_namespace_common_probe()` validated,
/// borrowed from the [`Namespace`] it describes (`'a`).
///
/// # Invariants
///
/// `common` is the live namespace of the device being probed or bound that
/// the `'a` borrow names, so it lives at least as long as the result.
pub(crate) struct NamespaceInfo<'a> {
    /// Physical address of the namespace.
    pub(crate) phys: u64,
    /// Size in bytes.
    pub(crate) size: u64,
    /// The kernel's disk name for it (`pmem0`, `pmem0.1`), NUL-padded.
    pub(crate) kernel_disk_name: [u8; 32],
    common: NonNull<ffi::nd_namespace_common>,
    _namespace: PhantomData<&'a Namespace>,
}

impl Namespace {
    /// # Safety
    ///
    /// `dev` is a live namespace device and stays so while the result is used.
    unsafe fn from_raw(dev: *mut ffi::device) -> Self {
        Self {
            // SAFETY: The driver core never passes a null device.
            dev: unsafe { NonNull::new_unchecked(dev) },
        }
    }

    /// The namespace's device name (`namespace0.0`), for log messages.
    pub(crate) fn name(&self) -> &CStr {
        // SAFETY: The device is live, so is its name, a NUL-terminated string.
        unsafe { CStr::from_char_ptr(ffi::oxdax_dev_name(self.dev.as_ptr())) }
    }

    /// The device, as libnvdimm and the block layer want it.
    pub(super) fn as_device(&self) -> *mut ffi::device {
        self.dev.as_ptr()
    }

    /// Validates the namespace (claimed by nobody else, configured, sized)
    /// and reads its placement.
    pub(crate) fn info(&self) -> Result<NamespaceInfo<'_>> {
        // SAFETY: `dev` is a live namespace device (type invariant).
        let common = unsafe { ffi::nvdimm_namespace_common_probe(self.dev.as_ptr()) };
        let common = NonNull::new(from_err_ptr(common)?).ok_or(ENODEV)?;
        // A BTT, PFN or device-DAX instance of the namespace matches the
        // driver too (same bus type); its namespace has an info block this
        // driver does not parse, so only the namespace itself is bound.
        // SAFETY: `common` is live (above).
        if unsafe { &raw mut (*common.as_ptr()).dev } != self.dev.as_ptr() {
            return Err(ENXIO);
        }
        // SAFETY: `common` is the live namespace `dev` belongs to; an IO or
        // PMEM namespace (the only types this driver binds) is embedded in an
        // `nd_namespace_io`.
        let io = unsafe { ffi::oxdax_to_nd_namespace_io(common.as_ptr()) };
        // SAFETY: `io` is valid (above); its resource is fixed while bound.
        let res = unsafe { (*io).res };
        let size = res
            .end
            .checked_sub(res.start)
            .and_then(|s| s.checked_add(1))
            .ok_or(EINVAL)?;
        let mut kernel_disk_name = [0u8; 32];
        // SAFETY: `common` is live and the buffer holds DISK_NAME_LEN (32)
        // bytes, what the function writes at most.
        unsafe {
            ffi::nvdimm_namespace_disk_name(common.as_ptr(), kernel_disk_name.as_mut_ptr().cast())
        };
        Ok(NamespaceInfo {
            phys: res.start,
            size,
            kernel_disk_name,
            common,
            _namespace: PhantomData,
        })
    }

    /// The region the namespace belongs to, for as long as the namespace
    /// is borrowed: a region outlives its namespaces' bindings.
    pub(crate) fn region(&self) -> &Region {
        // SAFETY: A namespace device's parent is its region's device, and
        // libnvdimm unbinds a region's namespaces before it disables or
        // frees the region; `dev` is probed or bound while `self` is
        // borrowed (type invariant), so the region is live and enabled for
        // the result's lifetime. `Region` is a transparent `Opaque` over
        // `nd_region`, which any bit pattern may be.
        unsafe { &*ffi::to_nd_region((*self.dev.as_ptr()).parent).cast::<Region>() }
    }
}

impl NamespaceInfo<'_> {
    /// The namespace's device name (`namespace0.0`), for resource names.
    pub(crate) fn device_name(&self) -> &CStr {
        // SAFETY: `common` is live for as long as `self` (type invariant:
        // `self` borrows the `Namespace` being probed or bound), and so is
        // its device's name, a NUL-terminated string the result borrows
        // no longer than `self`.
        unsafe { CStr::from_char_ptr(ffi::oxdax_dev_name(&raw mut (*self.common.as_ptr()).dev)) }
    }
}

/// The region a namespace lives in (`struct nd_region`), handed out only
/// as a reference whose lifetime ends with the namespace's binding.
///
/// # Invariants
///
/// A `&Region` exists only while the region is live and enabled: it is
/// borrowed from a [`Namespace`] being probed or bound, or from a
/// [`BoundRegion`], which lives no longer than the binding.
#[repr(transparent)]
pub(crate) struct Region(Opaque<ffi::nd_region>);

// SAFETY: Shared use only passes the region to libnvdimm functions that pmem
// also calls from concurrent bio submissions: they read the region or
// serialize themselves (per-CPU flush index, bus commands).
unsafe impl Sync for Region {}

/// A bound namespace's region, kept by the data of the binding.
///
/// # Invariants
///
/// `region` is the region of a namespace whose binding owns this value and
/// drops it when the namespace is unbound (before libnvdimm disables the
/// region), so it is live and enabled while `self` exists.
pub(crate) struct BoundRegion {
    region: NonNull<Region>,
}

// SAFETY: A `BoundRegion` only lends `&Region`, which is `Sync`; the region
// lives as long as the value, wherever it is sent.
unsafe impl Send for BoundRegion {}
// SAFETY: Shared use only lends `&Region`, which is `Sync`.
unsafe impl Sync for BoundRegion {}

impl BoundRegion {
    /// Keeps `region` past its borrow.
    ///
    /// # Safety
    ///
    /// The result is dropped before the namespace `region` was borrowed
    /// from is unbound: the binding's data keeps it, and the binding drops
    /// its data in `remove`.
    pub(super) unsafe fn new(region: &Region) -> Self {
        Self {
            region: NonNull::from(region),
        }
    }

    /// The region, while the namespace is bound.
    pub(crate) fn get(&self) -> &Region {
        // SAFETY: The region is live and enabled while `self` exists (type
        // invariant), and the result borrows `self`.
        unsafe { self.region.as_ref() }
    }
}

/// Whether a region can make writes durable, and how.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FlushSupport {
    /// Writes are durable once out of the CPU caches (ADR platforms).
    NotNeeded,
    /// The region has flush hints: REQ_FUA/PREFLUSH must write them.
    Hints,
    /// Persistence cannot be guaranteed.
    Unknown,
}

/// `nvdimm_flush()` accepted a bio and completes it itself.
pub(crate) struct FlushAsync;

impl Region {
    /// The raw region, for libnvdimm calls made by other wrappers.
    pub(crate) fn as_ptr(&self) -> *mut ffi::nd_region {
        self.0.get()
    }

    /// Flushes the region's write-pending queues.
    pub(crate) fn flush(&self) -> Result {
        // SAFETY: `flush_for` takes a null bio, which asks `nvdimm_flush`
        // for a synchronous flush.
        unsafe { self.flush_for(core::ptr::null_mut()) }.map(|_| ())
    }

    /// Flushes the region's write-pending queues for `bio` (see
    /// [`Bio::flush_region`](crate::sys::block::Bio::flush_region)): an
    /// asynchronous region (virtio-pmem) may take over its completion.
    ///
    /// # Safety
    ///
    /// `bio` is null or a live bio being submitted.
    pub(crate) unsafe fn flush_for(&self, bio: *mut ffi::bio) -> Result<Option<FlushAsync>> {
        // SAFETY: The region is live and enabled (type invariant); `bio` is
        // null or a live bio being submitted (this function's `# Safety`).
        let ret = unsafe { ffi::nvdimm_flush(self.as_ptr(), bio.cast()) };
        if ret == ffi::NVDIMM_FLUSH_ASYNC as i32 {
            return Ok(Some(FlushAsync));
        }
        to_result(ret).map(|()| None)
    }

    /// How writes to this region become durable.
    pub(crate) fn flush_support(&self) -> FlushSupport {
        // SAFETY: The region is live and enabled (type invariant).
        match unsafe { ffi::nvdimm_has_flush(self.as_ptr()) } {
            0 => FlushSupport::NotNeeded,
            r if r > 0 => FlushSupport::Hints,
            _ => FlushSupport::Unknown,
        }
    }

    /// Whether the CPU caches must be flushed for persistence.
    pub(crate) fn has_cache(&self) -> bool {
        // SAFETY: The region is live and enabled (type invariant).
        unsafe { ffi::nvdimm_has_cache(self.as_ptr()) != 0 }
    }

    /// Whether a CPU cache flush alone makes a store durable (MAP_SYNC is
    /// only honest on such regions).
    pub(crate) fn is_synchronous(&self) -> bool {
        // SAFETY: The region is live and enabled (type invariant).
        unsafe { ffi::is_nvdimm_sync(self.as_ptr()) }
    }

    /// Asks the bus to clear media errors in `[phys, phys + len)`; returns
    /// the bytes cleared.
    pub(crate) fn clear_poison(&self, phys: u64, len: u32) -> Result<u64> {
        // SAFETY: The region is live (type invariant); the function only
        // takes the address of its embedded device.
        let dev = unsafe { ffi::nd_region_dev(self.as_ptr()) };
        // SAFETY: `dev` is the live region's device (above).
        // `nvdimm_clear_poison` only walks up from it to the bus, as it
        // would from the namespace device, whose parent the region is.
        super::to_count(unsafe { ffi::nvdimm_clear_poison(dev, phys, len) } as i64)
    }
}
