// SPDX-License-Identifier: GPL-2.0

//! A bound namespace's DAX disk: the kernel objects that call back into a
//! driver's data (a DAX device, a bio disk with its bad-block list, the
//! `struct page`s of the memory) kept together with that data, published
//! in order and torn down in the opposite order before any of it is freed.
//!
//! Each of those objects keeps a pointer to the data and calls it until it
//! is torn down. Owning them here, next to the data, in one pinned
//! allocation whose teardown only this file and the namespace binding
//! (`sys::nd`, at unbind) can start, is what makes those pointers sound:
//! the driver (`rust/pmem`) implements [`DaxDiskDriver`] and never handles
//! a pointer, a lifetime contract or an `unsafe` block.
//!
//! Locking: publication runs in `probe`, teardown in `remove`, both under
//! the namespace's device lock; the callbacks run concurrently and only
//! read what publication set (`SetOnce`).

use core::{marker::PhantomData, ops::Deref};

use kernel::{prelude::*, str::CStr};

use crate::sys::{
    badblocks::BadBlocks,
    block::{BadBlocksNode, Bio, BioHandler, Disk, DiskOps, Limits},
    dax::{Access, AccessMode, DaxDevice, DaxFlags, DaxOperations, RecoveryWrite},
    memory::PmemMemory,
    nd::{BoundRegion, Namespace, NdData, NdDriver, NvdimmEvent, Probing, Region, Unbinding},
    once::SetOnce,
    pagemap::{HasPageMap, MemoryFailure, PageMap},
};

/// What a driver behind a [`DaxDisk`] does. Each callback gets the whole
/// `DaxDisk`, which derefs to the driver's data, to reach the memory, the
/// bad-block list and the DAX device too.
pub(crate) trait DaxDiskDriver: Send + Sync + Sized + 'static {
    /// Name under `/sys/bus/nd/drivers/`.
    const NAME: &'static CStr;

    /// The `ND_DRIVER_*` namespace types to bind.
    const TYPES: u64;

    /// Reads a namespace being bound: the driver's data and how to publish
    /// it. The binding makes the [`DaxDisk`], publishes it and owns it until
    /// the namespace is unbound.
    fn probe(namespace: &Namespace) -> Result<Publication<Self>>;

    /// The disk and the DAX device are published.
    fn published(_this: &DaxDisk<Self>) {}

    /// The bus asks to re-read media errors or region state.
    fn notify(_this: &DaxDisk<Self>, _event: NvdimmEvent) {}

    /// The system is going down: make what was written durable.
    fn shutdown(_this: &DaxDisk<Self>) {}

    /// Handles `bio` to completion (`Bio::end`), now or later.
    fn submit_bio(this: &DaxDisk<Self>, bio: Bio);

    /// Where `pgoff` is and how many of the `nr_pages` pages from there can
    /// be accessed.
    fn direct_access(
        this: &DaxDisk<Self>,
        pgoff: u64,
        nr_pages: u64,
        mode: AccessMode,
    ) -> Result<Access>;

    /// Zeroes `nr_pages` pages from `pgoff`, clearing poison.
    fn zero_page_range(this: &DaxDisk<Self>, pgoff: u64, nr_pages: u64) -> Result;

    /// Carries out `write` (at `pgoff`), clearing poison first; returns the
    /// bytes copied.
    fn recovery_write(this: &DaxDisk<Self>, pgoff: u64, write: RecoveryWrite<'_>) -> usize;

    /// `nr_pages` pages from `pfn` failed (`mf_flags`: `MF_*`).
    fn memory_failure(this: &DaxDisk<Self>, pfn: u64, nr_pages: u64, mf_flags: i32) -> Result;

    /// The pages are mapped and the memory reachable; neither the DAX
    /// device nor the disk is visible yet (pmem reads its bad blocks here).
    fn pages_mapped(_this: &DaxDisk<Self>) {}

    /// Everything was torn down: nothing calls in any more; the
    /// namespace's `region` is still bound.
    fn stopped(&self, _region: &Region) {}
}

/// What a driver's `probe` found: its data, the memory, and how
/// [`DaxDisk::publish`] makes the disk and the DAX device.
pub(crate) struct Publication<T: DaxDiskDriver> {
    /// The driver's data.
    pub(crate) data: T,
    /// Physical address of the memory the pages map.
    pub(crate) phys: u64,
    /// Bytes of that memory.
    pub(crate) len: u64,
    /// The disk's operations (a `static`).
    pub(crate) ops: &'static DiskOps<DaxDisk<T>>,
    /// Queue limits.
    pub(crate) limits: Limits,
    /// Disk name (NUL-terminated, at most 31 bytes).
    pub(crate) name: [u8; 32],
    /// Capacity in 512-byte sectors.
    pub(crate) capacity_sectors: u64,
    /// DAX behaviour.
    pub(crate) dax: DaxFlags,
}

/// A driver's data `T` with the DAX device, disk, page map and bad-block
/// list that call into it.
///
/// # Invariants
///
/// The kernel objects below point at this pinned allocation only while
/// published; `stop` tears every one of them down (waiting for running
/// callbacks) and runs before any field is dropped: at unbind, or in
/// `drop` for a device whose probe failed. Only the binding
/// ([`DaxDiskBinding`]) makes a `DaxDisk`, and it owns it until the
/// namespace is unbound: a driver only ever borrows one, so none outlives
/// the binding (nor, with it, `region`).
#[pin_data(PinnedDrop)]
pub(crate) struct DaxDisk<T: DaxDiskDriver> {
    dax: SetOnce<DaxDevice>,
    disk: SetOnce<Disk>,
    badblocks_node: SetOnce<BadBlocksNode>,
    memory: SetOnce<PmemMemory>,
    #[pin]
    pagemap: PageMap<Self>,
    /// After `disk`: the disk points at it until dropped.
    #[pin]
    badblocks: BadBlocks,
    /// The namespace's region, kept as long as the binding.
    region: BoundRegion,
    /// Last: what the driver holds (its claim on the memory, say) goes
    /// after every kernel object over it.
    data: T,
}

impl<T: DaxDiskDriver> DaxDisk<T> {
    /// `data`, for the memory at physical `[phys, phys + len)` in the
    /// namespace's `region`; nothing is published yet.
    fn new(data: T, phys: u64, len: u64, region: BoundRegion) -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            dax: SetOnce::new(),
            disk: SetOnce::new(),
            badblocks_node: SetOnce::new(),
            memory: SetOnce::new(),
            pagemap <- PageMap::new(phys, len),
            badblocks <- BadBlocks::new(),
            region,
            data,
        }? Error)
    }

    /// Makes the DAX device and the disk, maps the pages, then publishes
    /// the DAX device and the disk (bios arrive before this returns). Runs
    /// once; a failure leaves the rest to teardown.
    fn publish(
        self: Pin<&Self>,
        namespace: &Namespace,
        ops: &'static DiskOps<Self>,
        limits: &Limits,
        name: &[u8],
        capacity_sectors: u64,
        dax: &DaxFlags,
    ) -> Result {
        let this = self.get_ref();
        // SAFETY: `this` is pinned and `stop` kills the device before any
        // field is dropped (type invariant): the provider outlives every
        // callback.
        let dax = unsafe { DaxDevice::alloc(this, dax) }?;
        this.dax.set(dax).map_err(|_| EBUSY)?;
        let (badblocks, capacity) = (&this.badblocks, capacity_sectors);
        // SAFETY: `this` (the handler) and its bad-block list are pinned,
        // and `stop` removes the disk before any field is dropped, the
        // bad-block list after the disk (type invariant).
        let disk = unsafe { Disk::alloc(limits, ops, this, badblocks, name, capacity) }?;
        this.disk.set(disk).map_err(|_| EBUSY)?;
        let base = PageMap::map(self)?;
        // SAFETY: `base` maps the page map's range, which stays mapped
        // until `stop` unmaps it; the memory is handed out only as a borrow
        // of `this`, to callbacks that `stop` waits for before unmapping.
        let memory = unsafe { PmemMemory::new(base, this.pagemap.len()) };
        this.memory.set(memory).map_err(|_| EBUSY)?;
        T::pages_mapped(this);
        let (Some(dax), Some(disk)) = (this.dax.get(), this.disk.get()) else {
            return Err(EINVAL);
        };
        dax.add_host(disk)?;
        disk.add(namespace)?;
        if let Some(node) = BadBlocksNode::of(disk) {
            let _ = this.badblocks_node.set(node);
        } else {
            pr_warn!("{}: 'badblocks' notification disabled\n", namespace.name());
        }
        disk.check_read_only();
        Ok(())
    }

    /// Tears down what was published, waiting for running callbacks: the
    /// DAX device dies first (its holder is told the device is going away
    /// and unmaps it), then the disk goes, then the pages (waiting for
    /// running memory-failure callbacks, which use the DAX device).
    /// Idempotent.
    fn stop(&self) {
        if let Some(dax) = self.dax.get() {
            dax.kill();
        }
        if let Some(disk) = self.disk.get() {
            disk.remove();
        }
        self.pagemap.unmap();
        self.data.stopped(self.region.get());
    }

    /// The memory, once the pages are mapped.
    pub(crate) fn memory(&self) -> Result<&PmemMemory> {
        self.memory.get().ok_or(ENXIO)
    }

    /// The page map (page flags of the memory).
    pub(crate) fn pagemap(&self) -> &PageMap<Self> {
        &self.pagemap
    }

    /// The region of the bound namespace.
    pub(crate) fn region(&self) -> &Region {
        self.region.get()
    }

    /// The bad-block list.
    pub(crate) fn badblocks(&self) -> &BadBlocks {
        &self.badblocks
    }

    /// The DAX device, once made.
    pub(crate) fn dax(&self) -> Option<&DaxDevice> {
        self.dax.get()
    }

    /// The disk, once made.
    pub(crate) fn disk(&self) -> Option<&Disk> {
        self.disk.get()
    }

    /// Wakes pollers of /sys/block/NAME/badblocks after a change.
    pub(crate) fn notify_badblocks(&self) {
        if let Some(node) = self.badblocks_node.get() {
            node.notify();
        }
    }
}

impl<T: DaxDiskDriver> Deref for DaxDisk<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.data
    }
}

/// The namespace driver of a [`DaxDiskDriver`]: it makes, publishes and
/// owns each bound namespace's [`DaxDisk`].
pub(crate) struct DaxDiskBinding<T>(PhantomData<T>);

impl<T: DaxDiskDriver> NdDriver for DaxDiskBinding<T> {
    type Data = DaxDisk<T>;
    const NAME: &'static CStr = T::NAME;
    const TYPES: u64 = T::TYPES;

    fn probe(namespace: &Namespace, _: Probing) -> Result<Pin<KBox<DaxDisk<T>>>> {
        let p = T::probe(namespace)?;
        // SAFETY: The region goes into the `DaxDisk` returned to the binding
        // (only the binding calls this: `Probing`), which owns it and drops
        // it at `remove`, before the namespace is unbound; if the probe
        // fails it is dropped before this returns.
        let region = unsafe { BoundRegion::new(namespace.region()) };
        let disk = KBox::pin_init(DaxDisk::new(p.data, p.phys, p.len, region), GFP_KERNEL)?;
        disk.as_ref().publish(
            namespace,
            p.ops,
            &p.limits,
            &p.name,
            p.capacity_sectors,
            &p.dax,
        )?;
        T::published(&disk);
        Ok(disk)
    }

    fn notify(data: &DaxDisk<T>, _namespace: &Namespace, event: NvdimmEvent) {
        T::notify(data, event);
    }

    fn shutdown(data: &DaxDisk<T>, _namespace: &Namespace) {
        T::shutdown(data);
    }
}

impl<T: DaxDiskDriver> NdData for DaxDisk<T> {
    fn unbind(&self, _: Unbinding) {
        self.stop();
    }
}

#[pinned_drop]
impl<T: DaxDiskDriver> PinnedDrop for DaxDisk<T> {
    fn drop(self: Pin<&mut Self>) {
        // After unbind this does nothing; after a failed probe it tears
        // down what was published. The fields then drop in declaration
        // order.
        self.stop();
    }
}

impl<T: DaxDiskDriver> BioHandler for DaxDisk<T> {
    fn submit_bio(&self, bio: Bio) {
        T::submit_bio(self, bio);
    }

    fn dax_device(&self) -> Option<&DaxDevice> {
        self.dax.get()
    }
}

impl<T: DaxDiskDriver> DaxOperations for DaxDisk<T> {
    fn direct_access(&self, pgoff: u64, nr_pages: u64, mode: AccessMode) -> Result<Access> {
        T::direct_access(self, pgoff, nr_pages, mode)
    }

    fn zero_page_range(&self, pgoff: u64, nr_pages: u64) -> Result {
        T::zero_page_range(self, pgoff, nr_pages)
    }

    fn recovery_write(&self, pgoff: u64, write: RecoveryWrite<'_>) -> usize {
        T::recovery_write(self, pgoff, write)
    }
}

// SAFETY: `page_map` returns the `pagemap` field, and `stop`, which
// `PinnedDrop` runs before any field is dropped, unmaps it.
unsafe impl<T: DaxDiskDriver> HasPageMap for DaxDisk<T> {
    fn page_map(&self) -> &PageMap<Self> {
        &self.pagemap
    }
}

impl<T: DaxDiskDriver> MemoryFailure for DaxDisk<T> {
    fn memory_failure(&self, pfn: u64, nr_pages: u64, mf_flags: i32) -> Result {
        T::memory_failure(self, pfn, nr_pages, mf_flags)
    }
}
