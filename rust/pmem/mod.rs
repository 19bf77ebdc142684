// SPDX-License-Identifier: GPL-2.0

//! The pmem driver: every NVDIMM namespace becomes a bio-based block device
//! (`/dev/oxpmemN`) and a DAX device whose memory has `struct page`s, and
//! memory failures in it reach the DAX device's holder.
//!
//! See Documentation/oxdax/pmem.rst.

use core::{pin::Pin, ptr::NonNull};

use kernel::{c_str, prelude::*, str::CStr};

use crate::{
    ffi,
    logic::pmem::{self as geometry, Geometry, PAGE_SHIFT, PAGE_SIZE, SECTOR_SHIFT},
    sys::{
        badblocks::BadBlocks,
        block::{BadBlocksNode, Bio, BioHandler, BioOp, BioStatus, Disk, DiskOps, Limits, Segment},
        dax::{self, Access, AccessMode, DaxDevice, DaxFlags, DaxOperations, RecoveryWrite},
        errno,
        memory::{IomemClaim, PmemMemory},
        nd::{FlushSupport, Namespace, NdDriver, NvdimmEvent, Region},
        once::SetOnce,
        pagemap::{MemoryFailure, PageMap},
    },
};

/// Block operations of every oxpmem disk.
static DISK_OPS: DiskOps = DiskOps::new::<PmemDevice>(&crate::THIS_MODULE);

/// The libnvdimm driver binding NVDIMM namespaces.
pub(crate) struct PmemDriver;

impl NdDriver for PmemDriver {
    type Data = PmemDevice;
    const NAME: &'static CStr = c_str!("oxdax_pmem");
    // ND_DRIVER_NAMESPACE_*: one bit per ND_DEVICE_NAMESPACE_* type.
    const TYPES: u64 = (1 << ffi::ND_DEVICE_NAMESPACE_IO) | (1 << ffi::ND_DEVICE_NAMESPACE_PMEM);

    fn probe(namespace: &Namespace) -> Result<Pin<KBox<PmemDevice>>> {
        PmemDevice::probe(namespace)
    }

    fn unbind(device: &PmemDevice, _namespace: &Namespace) {
        device.stop();
    }

    fn notify(device: &PmemDevice, _namespace: &Namespace, event: NvdimmEvent) {
        match event {
            NvdimmEvent::RevalidatePoison => device.populate_badblocks(),
            NvdimmEvent::RevalidateRegion => device.check_read_only(),
        }
    }

    fn shutdown(device: &PmemDevice, _namespace: &Namespace) {
        device.flush();
    }
}

/// One bound namespace.
///
/// Built in three steps so that nothing the kernel can call into is
/// published before everything it needs exists: the pinned allocation, then
/// the DAX device and disk (which point back at it, so they need its final
/// address, and are stored through shared references: `SetOnce`), then
/// publication (pages mapped, DAX host added, disk added). Teardown (`stop`,
/// then drop) runs in the opposite order, and `stop` ends every outside
/// reference (page map last) before anything is freed.
#[pin_data(PinnedDrop)]
pub(crate) struct PmemDevice {
    geometry: Geometry,
    region: Region,
    name: [u8; 32],
    dax: SetOnce<DaxDevice>,
    disk: SetOnce<Disk>,
    badblocks_node: SetOnce<BadBlocksNode>,
    #[pin]
    pagemap: PageMap<PmemDevice>,
    #[pin]
    badblocks: BadBlocks,
    _claim: IomemClaim,
}

impl PmemDevice {
    fn probe(namespace: &Namespace) -> Result<Pin<KBox<Self>>> {
        let info = namespace.info()?;
        let Some(geometry) = Geometry::new(info.phys, info.size) else {
            pr_err!(
                "{}: too small: needs an aligned 2 MiB block\n",
                namespace.name()
            );
            return Err(ENOSPC);
        };
        let mut name = [0u8; 32];
        geometry::disk_name(&info.kernel_disk_name, &mut name).ok_or(EINVAL)?;
        let claim = IomemClaim::request(info.phys, info.size, info.device_name())?;
        let region = namespace.region();

        let device = KBox::pin_init(
            try_pin_init!(Self {
                geometry,
                region,
                name,
                dax: SetOnce::new(),
                disk: SetOnce::new(),
                badblocks_node: SetOnce::new(),
                pagemap <- PageMap::new(geometry.data_phys(), geometry.data_size()),
                badblocks <- BadBlocks::new(),
                _claim: claim,
            }? Error),
            GFP_KERNEL,
        )?;

        // From here on the device is only used through shared references:
        // the DAX device and disk keep pointers to it.
        let this: &Self = &device;
        // SAFETY: `this` is the pinned device, freed only after `stop`
        // killed the DAX device (`PinnedDrop`), which lives in one of its
        // fields.
        let dax = unsafe {
            DaxDevice::alloc(
                this,
                &DaxFlags {
                    synchronous: region.is_synchronous(),
                    write_cache: region.has_cache(),
                },
            )
        }?;
        this.dax.set(dax).map_err(|_| EBUSY)?;
        this.disk
            .set(this.alloc_disk(namespace)?)
            .map_err(|_| EBUSY)?;
        this.publish(namespace)?;

        pr_info!(
            "{}: {} MiB at {:#x}, memmap {} KiB in RAM{}\n",
            device.name(),
            geometry.data_size() >> 20,
            geometry.data_phys(),
            geometry.memmap_bytes() >> 10,
            if region.is_synchronous() {
                ", synchronous"
            } else {
                ""
            }
        );
        Ok(device)
    }

    fn alloc_disk(&self, namespace: &Namespace) -> Result<Disk> {
        let mut features =
            ffi::BLK_FEAT_WRITE_CACHE | ffi::BLK_FEAT_SYNCHRONOUS | ffi::BLK_FEAT_DAX;
        match self.region.flush_support() {
            FlushSupport::Hints => features |= ffi::BLK_FEAT_FUA,
            FlushSupport::NotNeeded => {}
            FlushSupport::Unknown => pr_warn!(
                "{}: unable to guarantee persistence of writes\n",
                namespace.name()
            ),
        }
        // SAFETY: `self` (the handler) and its bad-block list live in this
        // pinned allocation, which `PinnedDrop` frees only after `stop`
        // removed the disk; the disk itself is a field dropped with it.
        let disk = unsafe {
            Disk::alloc(
                &Limits {
                    logical_block_size: 1 << SECTOR_SHIFT,
                    physical_block_size: PAGE_SIZE as u32,
                    features,
                },
                &DISK_OPS,
                self,
                &self.badblocks,
                &self.name,
                self.geometry.capacity_sectors(),
            )
        }?;
        Ok(disk)
    }

    fn publish(&self, namespace: &Namespace) -> Result {
        // SAFETY: The page map is a field of `self`, a pinned allocation
        // that `PinnedDrop` frees only after `stop` unmapped it.
        unsafe { self.pagemap.map(self) }?;
        self.populate_badblocks();
        let (Some(dax), Some(disk)) = (self.dax.get(), self.disk.get()) else {
            return Err(EINVAL);
        };
        dax.add_host(disk)?;
        // The static, NULL-terminated table in ffi/helpers.c; only its
        // address is taken here, and the block layer only reads it.
        disk.add(namespace)?;
        if let Some(node) = BadBlocksNode::of(disk) {
            let _ = self.badblocks_node.set(node);
        } else {
            pr_warn!("{}: 'badblocks' notification disabled\n", self.name());
        }
        self.check_read_only();
        Ok(())
    }

    /// Stops serving the namespace: the DAX device dies first (its holder
    /// is told the device is going away and unmaps it), then the disk goes,
    /// then the pages (waiting for running memory-failure callbacks, which
    /// use the DAX device). Idempotent.
    fn stop(&self) {
        if let Some(dax) = self.dax.get() {
            dax.kill();
        }
        if let Some(disk) = self.disk.get() {
            disk.remove();
        }
        self.pagemap.unmap();
        self.flush();
    }

    fn name(&self) -> &str {
        let len = self
            .name
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(self.name.len());
        self.name
            .get(..len)
            .and_then(|n| core::str::from_utf8(n).ok())
            .unwrap_or("oxpmem?")
    }

    fn memory(&self) -> Result<PmemMemory> {
        let base: NonNull<u8> = self.pagemap.mapped().ok_or(ENXIO)?;
        // SAFETY: `base` maps the data area, which stays mapped until `stop`
        // unmaps the page map, after the disk and DAX device whose callbacks
        // use the memory are gone (their teardown waits for running
        // callbacks); `memory` is called only from those callbacks.
        Ok(unsafe { PmemMemory::new(base, self.geometry.data_size()) })
    }

    fn populate_badblocks(&self) {
        let start = self.geometry.data_phys();
        self.badblocks
            .populate(&self.region, start, start + self.geometry.data_size() - 1);
        self.notify_badblocks();
    }

    fn check_read_only(&self) {
        if let Some(disk) = self.disk.get() {
            disk.check_read_only();
        }
    }

    fn flush(&self) {
        if let Err(e) = self.region.flush() {
            pr_warn!("{}: flush failed: {:?}\n", self.name(), e);
        }
    }

    /// Asks the bus to clear media errors under `[offset, offset + len)` of
    /// the data area and makes the pages usable again; returns the bytes
    /// cleared. The bad-block list is left to the caller (`forget_bad`), so
    /// a recovery write can clear it only once the new data is in place.
    fn clear_media_poison(&self, memory: &PmemMemory, offset: u64, len: u64) -> Result<u64> {
        let phys = self.geometry.data_phys() + offset;
        let len32 = u32::try_from(len).map_err(|_| EINVAL)?;
        let cleared = match self.region.clear_poison(phys, len32) {
            Ok(cleared) => cleared.min(len),
            // A bus without the clear-error command (QEMU's NFIT). Pages the
            // kernel saw fail stay failed, as with pmem; a range that is
            // only listed (sysfs, ARS of emulated media) has no page state
            // to restore, and the overwrite is all there is to recover.
            Err(e) if e == ENOTTY => {
                let pages = (phys & (PAGE_SIZE - 1))
                    .saturating_add(len)
                    .div_ceil(PAGE_SIZE);
                if self.pagemap.any_hwpoisoned(phys >> PAGE_SHIFT, pages) {
                    return Err(EIO);
                }
                return Ok(len);
            }
            Err(e) => return Err(e),
        };
        if cleared > 0 {
            self.pagemap
                .mark_present(phys >> PAGE_SHIFT, cleared >> PAGE_SHIFT);
            memory.invalidate(offset, len as usize)?;
        }
        Ok(cleared)
    }

    fn forget_bad(&self, offset: u64, cleared: u64) {
        self.badblocks
            .clear(offset >> SECTOR_SHIFT, cleared >> SECTOR_SHIFT);
        self.notify_badblocks();
    }

    /// Wakes pollers of /sys/block/oxpmemN/badblocks after a change.
    fn notify_badblocks(&self) {
        if let Some(node) = self.badblocks_node.get() {
            node.notify();
        }
    }

    /// Whether any sector under `[offset, offset + len)` is listed bad.
    fn is_bad(&self, offset: u64, len: u64) -> bool {
        let sectors = len.div_ceil(1 << SECTOR_SHIFT);
        self.badblocks
            .first_bad(offset >> SECTOR_SHIFT, sectors)
            .is_some()
    }

    /// Clears poison under a range about to be overwritten completely.
    fn clear_poison_for_write(&self, memory: &PmemMemory, offset: u64, len: u64) -> Result {
        if !self.is_bad(offset, len) {
            return Ok(());
        }
        let cleared = self.clear_media_poison(memory, offset, len)?;
        self.forget_bad(offset, cleared);
        if cleared < len {
            return Err(EIO);
        }
        Ok(())
    }

    fn read_segment(&self, memory: &PmemMemory, segment: &Segment) -> Result {
        let range = self
            .geometry
            .sector_range(segment.sector, segment.len as u64)
            .ok_or(EIO)?;
        if self.is_bad(range.start, range.len) {
            return Err(EIO);
        }
        memory.read_into_page(range.start, segment.page, segment.offset, segment.len)
    }

    fn write_segment(&self, memory: &PmemMemory, segment: &Segment) -> Result {
        let range = self
            .geometry
            .sector_range(segment.sector, segment.len as u64)
            .ok_or(EIO)?;
        self.clear_poison_for_write(memory, range.start, range.len)?;
        memory.write_from_page(range.start, segment.page, segment.offset, segment.len)
    }

    fn transfer(&self, bio: &Bio, op: BioOp) -> BioStatus {
        let Ok(memory) = self.memory() else {
            return BioStatus::IoError;
        };
        let result = bio.for_each_segment(|segment| match op {
            BioOp::Read => self.read_segment(&memory, &segment),
            _ => self.write_segment(&memory, &segment),
        });
        if result.is_ok() {
            BioStatus::Ok
        } else {
            BioStatus::IoError
        }
    }
}

impl BioHandler for PmemDevice {
    fn dax_device(&self) -> Option<&DaxDevice> {
        self.dax.get()
    }

    fn submit_bio(&self, bio: Bio) {
        if bio.preflush() && self.region.flush().is_err() {
            bio.end(BioStatus::IoError);
            return;
        }
        let op = bio.op();
        let accounting = bio.start_accounting();
        let status = match op {
            BioOp::Read | BioOp::Write => self.transfer(&bio, op),
            BioOp::Flush => BioStatus::Ok,
            BioOp::Other => BioStatus::NotSupported,
        };
        bio.end_accounting(accounting);
        if status == BioStatus::Ok && bio.fua() {
            match bio.flush_region(&self.region) {
                Ok(Some(_async)) => return bio.handed_over(),
                Ok(None) => {}
                Err(_) => return bio.end(BioStatus::IoError),
            }
        }
        bio.end(status);
    }
}

impl DaxOperations for PmemDevice {
    fn direct_access(&self, pgoff: u64, nr_pages: u64, mode: AccessMode) -> Result<Access> {
        let (offset, available) = self.geometry.dax_range(pgoff, nr_pages).ok_or(ERANGE)?;
        let memory = self.memory()?;
        let kaddr = memory.kaddr(offset)?;
        let phys = self.geometry.data_phys() + offset;
        let pfn = dax::devmap_pfn(phys);
        // badblocks_check() takes an int count of sectors.
        let wanted = nr_pages
            .min(available)
            .min(i32::MAX as u64 >> (PAGE_SHIFT - SECTOR_SHIFT));
        let sector = offset >> SECTOR_SHIFT;
        let pages = match self
            .badblocks
            .first_bad(sector, wanted << (PAGE_SHIFT - SECTOR_SHIFT))
        {
            Some(_) if mode == AccessMode::Normal => return Err(errno::ehwpoison()),
            Some((first_bad, _)) => geometry::recovery_pages(sector, first_bad),
            // With bad blocks elsewhere, promise no more than was asked for:
            // the caller checks again for the next range.
            None if !self.badblocks.is_empty() => wanted,
            None => available,
        };
        Ok(Access { pages, kaddr, pfn })
    }

    fn zero_page_range(&self, pgoff: u64, nr_pages: u64) -> Result {
        let memory = self.memory()?;
        for page in pgoff..pgoff.checked_add(nr_pages).ok_or(ERANGE)? {
            let (offset, _) = self.geometry.dax_range(page, 1).ok_or(ERANGE)?;
            self.clear_poison_for_write(&memory, offset, PAGE_SIZE)?;
            memory.zero(offset, PAGE_SIZE as usize)?;
        }
        Ok(())
    }

    fn recovery_write(&self, pgoff: u64, write: RecoveryWrite<'_>) -> usize {
        let Some((offset, _)) = self.geometry.dax_range(pgoff, 1) else {
            return 0;
        };
        let (in_page, bytes) = (write.offset_in_page(), write.len());
        let len = (in_page + bytes).next_multiple_of(PAGE_SIZE as usize) as u64;
        if !self.is_bad(offset, len) {
            return write.copy();
        }
        // Poison is cleared a page at a time; a partial page cannot be.
        if in_page != 0 || bytes % PAGE_SIZE as usize != 0 {
            return 0;
        }
        let Ok(memory) = self.memory() else {
            return 0;
        };
        match self.clear_media_poison(&memory, offset, len) {
            Ok(cleared) if cleared == len => {
                // The range's poison was just cleared.
                let copied = write.copy();
                // Readers keep getting EIO until the new data is in place.
                self.forget_bad(offset, cleared);
                copied
            }
            _ => 0,
        }
    }
}

impl MemoryFailure for PmemDevice {
    fn memory_failure(&self, pfn: u64, nr_pages: u64, mf_flags: i32) -> Result {
        let (offset, len) = self
            .geometry
            .failure_range(pfn, nr_pages)
            .ok_or_else(errno::eopnotsupp)?;
        let dax = self.dax.get().ok_or_else(errno::eopnotsupp)?;
        let result = dax.notify_failure(offset, len, mf_flags);
        // One line per event: memory failures are rare and an administrator
        // wants to know who dealt with each one.
        match &result {
            Ok(()) => pr_warn!(
                "{}: memory failure at {:#x}+{:#x}: handled by the filesystem\n",
                self.name(),
                offset,
                len
            ),
            Err(e) if *e == ENXIO => pr_warn!(
                "{}: memory failure at {:#x}+{:#x}: not handled (outside the holder's filesystem, or the device is going away)\n",
                self.name(),
                offset,
                len
            ),
            Err(e) if *e == errno::eopnotsupp() => pr_warn!(
                "{}: memory failure at {:#x}+{:#x}: no DAX holder, or not its filesystem's: generic handling\n",
                self.name(),
                offset,
                len
            ),
            Err(e) => pr_warn!(
                "{}: memory failure at {:#x}+{:#x}: the filesystem failed to handle it ({:?})\n",
                self.name(),
                offset,
                len,
                e
            ),
        }
        result
    }
}

#[pinned_drop]
impl PinnedDrop for PmemDevice {
    fn drop(self: Pin<&mut Self>) {
        // After a failed probe nothing was stopped yet; after `unbind` this
        // does nothing. The remaining fields then drop in declaration order.
        self.stop();
    }
}
