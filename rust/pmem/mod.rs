// SPDX-License-Identifier: GPL-2.0

//! The pmem driver: every NVDIMM namespace becomes a bio-based block device
//! (`/dev/oxpmemN`) and a DAX device whose memory has `struct page`s, and
//! memory failures in it reach the DAX device's holder.
//!
//! See Documentation/oxdax/pmem.rst.

use kernel::{c_str, prelude::*, str::CStr};

use crate::{
    ffi,
    logic::pmem::{self as geometry, Geometry, PAGE_SHIFT, PAGE_SIZE, SECTOR_SHIFT},
    sys::{
        block::{Bio, BioOp, BioStatus, DiskOps, Limits, Segment},
        dax::{self, Access, AccessMode, DaxFlags, RecoveryWrite},
        daxdisk::{DaxDisk, DaxDiskBinding, DaxDiskDriver, Publication},
        errno,
        memory::{IomemClaim, PmemMemory},
        nd::{FlushSupport, Namespace, NvdimmEvent, Region},
    },
};

/// Block operations of every oxpmem disk.
static DISK_OPS: DiskOps<DaxDisk<PmemDevice>> = DiskOps::new(&crate::THIS_MODULE);

/// The libnvdimm driver binding NVDIMM namespaces.
pub(crate) type PmemDriver = DaxDiskBinding<PmemDevice>;

/// One bound namespace: where its memory is and what the bus says of it.
/// The kernel objects that call into it (DAX device, disk, pages, bad-block
/// list) and the namespace's region are its [`DaxDisk`]'s, which the
/// binding makes, publishes, and tears down before it is freed.
pub(crate) struct PmemDevice {
    geometry: Geometry,
    name: [u8; 32],
    _claim: IomemClaim,
}

impl PmemDevice {
    /// The disk's queue limits (write-cache and FUA as the region flushes).
    fn limits(namespace: &Namespace) -> Limits {
        let mut features =
            ffi::BLK_FEAT_WRITE_CACHE | ffi::BLK_FEAT_SYNCHRONOUS | ffi::BLK_FEAT_DAX;
        match namespace.region().flush_support() {
            FlushSupport::Hints => features |= ffi::BLK_FEAT_FUA,
            FlushSupport::NotNeeded => {}
            FlushSupport::Unknown => pr_warn!(
                "{}: unable to guarantee persistence of writes\n",
                namespace.name()
            ),
        }
        Limits {
            logical_block_size: 1 << SECTOR_SHIFT,
            physical_block_size: PAGE_SIZE as u32,
            features,
        }
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

    /// Re-reads the bus's media errors into the bad-block list.
    fn populate_badblocks(this: &DaxDisk<Self>) {
        let start = this.geometry.data_phys();
        this.badblocks()
            .populate(this.region(), start, start + this.geometry.data_size() - 1);
        this.notify_badblocks();
    }

    fn flush(&self, region: &Region) {
        if let Err(e) = region.flush() {
            pr_warn!("{}: flush failed: {:?}\n", self.name(), e);
        }
    }

    /// Asks the bus to clear media errors under `[offset, offset + len)` of
    /// the data area and makes the pages usable again; returns the bytes
    /// cleared. The bad-block list is left to the caller (`forget_bad`), so
    /// a recovery write can clear it only once the new data is in place.
    fn clear_media_poison(
        this: &DaxDisk<Self>,
        memory: &PmemMemory,
        offset: u64,
        len: u64,
    ) -> Result<u64> {
        let phys = this.geometry.data_phys() + offset;
        let len32 = u32::try_from(len).map_err(|_| EINVAL)?;
        let cleared = match this.region().clear_poison(phys, len32) {
            Ok(cleared) => cleared.min(len),
            // A bus without the clear-error command (QEMU's NFIT). Pages the
            // kernel saw fail stay failed, as with pmem; a range that is
            // only listed (sysfs, ARS of emulated media) has no page state
            // to restore, and the overwrite is all there is to recover.
            Err(e) if e == ENOTTY => {
                let pages = (phys & (PAGE_SIZE - 1))
                    .saturating_add(len)
                    .div_ceil(PAGE_SIZE);
                if this.pagemap().any_hwpoisoned(phys >> PAGE_SHIFT, pages) {
                    return Err(EIO);
                }
                return Ok(len);
            }
            Err(e) => return Err(e),
        };
        if cleared > 0 {
            this.pagemap()
                .mark_present(phys >> PAGE_SHIFT, cleared >> PAGE_SHIFT);
            memory.invalidate(offset, len as usize)?;
        }
        Ok(cleared)
    }

    fn forget_bad(this: &DaxDisk<Self>, offset: u64, cleared: u64) {
        this.badblocks()
            .clear(offset >> SECTOR_SHIFT, cleared >> SECTOR_SHIFT);
        this.notify_badblocks();
    }

    /// Whether any sector under `[offset, offset + len)` is listed bad.
    fn is_bad(this: &DaxDisk<Self>, offset: u64, len: u64) -> bool {
        let sectors = len.div_ceil(1 << SECTOR_SHIFT);
        this.badblocks()
            .first_bad(offset >> SECTOR_SHIFT, sectors)
            .is_some()
    }

    /// Clears poison under a range about to be overwritten completely.
    fn clear_poison_for_write(
        this: &DaxDisk<Self>,
        memory: &PmemMemory,
        offset: u64,
        len: u64,
    ) -> Result {
        if !Self::is_bad(this, offset, len) {
            return Ok(());
        }
        let cleared = Self::clear_media_poison(this, memory, offset, len)?;
        Self::forget_bad(this, offset, cleared);
        if cleared < len {
            return Err(EIO);
        }
        Ok(())
    }

    fn read_segment(this: &DaxDisk<Self>, memory: &PmemMemory, segment: &Segment<'_>) -> Result {
        let range = this
            .geometry
            .sector_range(segment.sector(), segment.len() as u64)
            .ok_or(EIO)?;
        if Self::is_bad(this, range.start, range.len) {
            return Err(EIO);
        }
        memory.read_into_segment(range.start, segment)
    }

    fn write_segment(this: &DaxDisk<Self>, memory: &PmemMemory, segment: &Segment<'_>) -> Result {
        let range = this
            .geometry
            .sector_range(segment.sector(), segment.len() as u64)
            .ok_or(EIO)?;
        Self::clear_poison_for_write(this, memory, range.start, range.len)?;
        memory.write_from_segment(range.start, segment)
    }

    fn transfer(this: &DaxDisk<Self>, bio: &Bio, op: BioOp) -> BioStatus {
        let Ok(memory) = this.memory() else {
            return BioStatus::IoError;
        };
        let result = bio.for_each_segment(|segment| match op {
            BioOp::Read => Self::read_segment(this, memory, &segment),
            _ => Self::write_segment(this, memory, &segment),
        });
        if result.is_ok() {
            BioStatus::Ok
        } else {
            BioStatus::IoError
        }
    }
}

impl DaxDiskDriver for PmemDevice {
    const NAME: &'static CStr = c_str!("oxdax_pmem");
    // ND_DRIVER_NAMESPACE_*: one bit per ND_DEVICE_NAMESPACE_* type.
    const TYPES: u64 = (1 << ffi::ND_DEVICE_NAMESPACE_IO) | (1 << ffi::ND_DEVICE_NAMESPACE_PMEM);

    fn probe(namespace: &Namespace) -> Result<Publication<Self>> {
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
        Ok(Publication {
            data: Self {
                geometry,
                name,
                _claim: claim,
            },
            phys: geometry.data_phys(),
            len: geometry.data_size(),
            ops: &DISK_OPS,
            limits: Self::limits(namespace),
            name,
            capacity_sectors: geometry.capacity_sectors(),
            dax: DaxFlags {
                synchronous: region.is_synchronous(),
                write_cache: region.has_cache(),
            },
        })
    }

    fn published(this: &DaxDisk<Self>) {
        pr_info!(
            "{}: {} MiB at {:#x}, memmap {} KiB in RAM{}\n",
            this.name(),
            this.geometry.data_size() >> 20,
            this.geometry.data_phys(),
            this.geometry.memmap_bytes() >> 10,
            if this.region().is_synchronous() {
                ", synchronous"
            } else {
                ""
            }
        );
    }

    fn notify(this: &DaxDisk<Self>, event: NvdimmEvent) {
        match event {
            NvdimmEvent::RevalidatePoison => Self::populate_badblocks(this),
            NvdimmEvent::RevalidateRegion => {
                if let Some(disk) = this.disk() {
                    disk.check_read_only();
                }
            }
        }
    }

    fn shutdown(this: &DaxDisk<Self>) {
        this.flush(this.region());
    }

    fn submit_bio(this: &DaxDisk<Self>, bio: Bio) {
        if bio.preflush() && this.region().flush().is_err() {
            bio.end(BioStatus::IoError);
            return;
        }
        let op = bio.op();
        let accounting = bio.start_accounting();
        let status = match op {
            BioOp::Read | BioOp::Write => Self::transfer(this, &bio, op),
            BioOp::Flush => BioStatus::Ok,
            BioOp::Other => BioStatus::NotSupported,
        };
        bio.end_accounting(accounting);
        if status == BioStatus::Ok && bio.fua() {
            match bio.flush_region(this.region()) {
                Ok(Some(_async)) => return bio.handed_over(),
                Ok(None) => {}
                Err(_) => return bio.end(BioStatus::IoError),
            }
        }
        bio.end(status);
    }

    fn direct_access(
        this: &DaxDisk<Self>,
        pgoff: u64,
        nr_pages: u64,
        mode: AccessMode,
    ) -> Result<Access> {
        let (offset, available) = this.geometry.dax_range(pgoff, nr_pages).ok_or(ERANGE)?;
        let memory = this.memory()?;
        let kaddr = memory.kaddr(offset)?;
        let phys = this.geometry.data_phys() + offset;
        let pfn = dax::devmap_pfn(phys);
        // badblocks_check() takes an int count of sectors.
        let wanted = nr_pages
            .min(available)
            .min(i32::MAX as u64 >> (PAGE_SHIFT - SECTOR_SHIFT));
        let sector = offset >> SECTOR_SHIFT;
        let pages = match this
            .badblocks()
            .first_bad(sector, wanted << (PAGE_SHIFT - SECTOR_SHIFT))
        {
            Some(_) if mode == AccessMode::Normal => return Err(errno::ehwpoison()),
            Some((first_bad, _)) => geometry::recovery_pages(sector, first_bad),
            // With bad blocks elsewhere, promise no more than was asked for:
            // the caller checks again for the next range.
            None if !this.badblocks().is_empty() => wanted,
            None => available,
        };
        Ok(Access { pages, kaddr, pfn })
    }

    fn zero_page_range(this: &DaxDisk<Self>, pgoff: u64, nr_pages: u64) -> Result {
        let memory = this.memory()?;
        for page in pgoff..pgoff.checked_add(nr_pages).ok_or(ERANGE)? {
            let (offset, _) = this.geometry.dax_range(page, 1).ok_or(ERANGE)?;
            Self::clear_poison_for_write(this, memory, offset, PAGE_SIZE)?;
            memory.zero(offset, PAGE_SIZE as usize)?;
        }
        Ok(())
    }

    fn recovery_write(this: &DaxDisk<Self>, pgoff: u64, write: RecoveryWrite<'_>) -> usize {
        let Some((offset, _)) = this.geometry.dax_range(pgoff, 1) else {
            return 0;
        };
        let (in_page, bytes) = (write.offset_in_page(), write.len());
        let len = (in_page + bytes).next_multiple_of(PAGE_SIZE as usize) as u64;
        if !Self::is_bad(this, offset, len) {
            return write.copy();
        }
        // Poison is cleared a page at a time; a partial page cannot be.
        if in_page != 0 || bytes % PAGE_SIZE as usize != 0 {
            return 0;
        }
        let Ok(memory) = this.memory() else {
            return 0;
        };
        match Self::clear_media_poison(this, memory, offset, len) {
            Ok(cleared) if cleared == len => {
                // The range's poison was just cleared.
                let copied = write.copy();
                // Readers keep getting EIO until the new data is in place.
                Self::forget_bad(this, offset, cleared);
                copied
            }
            _ => 0,
        }
    }

    fn memory_failure(this: &DaxDisk<Self>, pfn: u64, nr_pages: u64, mf_flags: i32) -> Result {
        let (offset, len) = this
            .geometry
            .failure_range(pfn, nr_pages)
            .ok_or_else(errno::eopnotsupp)?;
        let dax = this.dax().ok_or_else(errno::eopnotsupp)?;
        let result = dax.notify_failure(offset, len, mf_flags);
        // One line per event: memory failures are rare and an administrator
        // wants to know who dealt with each one.
        match &result {
            Ok(()) => pr_warn!(
                "{}: memory failure at {:#x}+{:#x}: handled by the filesystem\n",
                this.name(),
                offset,
                len
            ),
            Err(e) if *e == ENXIO => pr_warn!(
                "{}: memory failure at {:#x}+{:#x}: not handled (outside the holder's filesystem, or the device is going away)\n",
                this.name(),
                offset,
                len
            ),
            Err(e) if *e == errno::eopnotsupp() => pr_warn!(
                "{}: memory failure at {:#x}+{:#x}: no DAX holder, or not its filesystem's: generic handling\n",
                this.name(),
                offset,
                len
            ),
            Err(e) => pr_warn!(
                "{}: memory failure at {:#x}+{:#x}: the filesystem failed to handle it ({:?})\n",
                this.name(),
                offset,
                len,
                e
            ),
        }
        result
    }

    fn pages_mapped(this: &DaxDisk<Self>) {
        Self::populate_badblocks(this);
    }

    fn stopped(&self, region: &Region) {
        self.flush(region);
    }
}
