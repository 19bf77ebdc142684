// SPDX-License-Identifier: GPL-2.0

//! Bio-based block devices: `struct gendisk` and `struct bio`.

use core::{marker::PhantomData, ptr::NonNull};

use kernel::{error::from_err_ptr, prelude::*, ThisModule};

use crate::sys::{
    badblocks::BadBlocks,
    dax::DaxDevice,
    nd::{FlushAsync, Namespace, Region},
};

use crate::{ffi, sys::once::Stages};

/// Size of `gendisk::disk_name`, terminating NUL included.
const DISK_NAME_LEN: usize = 32;

/// What a bio-based disk does with the bios submitted to it.
pub(crate) trait BioHandler: Sync {
    /// Handles `bio` to completion (`Bio::end`), now or later.
    fn submit_bio(&self, bio: Bio);

    /// The disk's DAX device, for its `dax/write_cache` sysfs attribute.
    fn dax_device(&self) -> Option<&DaxDevice>;
}

/// The operation table of a bio-based disk, in a `static`: an open block
/// device keeps using it (to drop its module reference) after the disk is
/// deleted and the driver's data freed, so it must live as long as the
/// module, which it names as owner. Naming the owner (the `kernel` crate's
/// tables leave it NULL) makes an open disk pin the module.
///
/// Laid out as `struct oxdax_disk_ops` in ffi/helpers.h, whose sysfs
/// attribute finds `dax_of` from the disk's `fops`.
#[repr(C)]
pub(crate) struct DiskOps<T> {
    table: ffi::block_device_operations,
    dax_of: unsafe extern "C" fn(*mut kernel::ffi::c_void) -> *mut ffi::dax_device,
    /// The handler type the callbacks expect as private data.
    _handler: PhantomData<T>,
}

// SAFETY: The table is immutable; its raw pointers (owner module, unset
// optional operations) are only read by the block layer.
unsafe impl<T> Sync for DiskOps<T> {}

impl<T: BioHandler> DiskOps<T> {
    /// The table for handler type `T`, owned by `module`.
    pub(crate) const fn new(module: &'static ThisModule) -> Self {
        Self {
            table: ffi::block_device_operations {
                owner: module.as_ptr(),
                submit_bio: Some(submit_bio_callback::<T>),
                // SAFETY: All-zero is a valid table: no other operation.
                ..unsafe { core::mem::zeroed() }
            },
            dax_of: dax_of_callback::<T>,
            _handler: PhantomData,
        }
    }
}

/// # Safety
///
/// Called by the `dax/write_cache` sysfs attribute of a disk whose table is
/// `DiskOps::new::<T>`'s, with its private data, while the attribute exists.
unsafe extern "C" fn dax_of_callback<T: BioHandler>(
    private_data: *mut kernel::ffi::c_void,
) -> *mut ffi::dax_device {
    // SAFETY: Only `Disk::alloc::<T>` installs this table, with a `T` as
    // private data that outlives the disk's use of it (`alloc`'s
    // `# Safety`); sysfs removes the attribute, waiting for running
    // show/store calls, when the disk is deleted, before that.
    let handler = unsafe { &*private_data.cast::<T>() };
    handler
        .dax_device()
        .map_or(core::ptr::null_mut(), DaxDevice::as_ptr)
}

/// # Safety
///
/// Called by the block layer with a live bio for a disk whose `private_data`
/// is a `T` (see `Disk::alloc`) that outlives the disk.
unsafe extern "C" fn submit_bio_callback<T: BioHandler>(bio: *mut ffi::bio) {
    // SAFETY: The block layer submits a live bio to a disk whose table is
    // `DiskOps::new::<T>`'s, which only `Disk::alloc::<T>` installs, with a
    // `T` as private data that outlives the disk's use of it (`alloc`'s
    // `# Safety`).
    let handler = unsafe { &*(*(*(*bio).bi_bdev).bd_disk).private_data.cast::<T>() };
    handler.submit_bio(Bio { bio });
}

/// Queue limits of a new disk.
pub(crate) struct Limits {
    /// Smallest addressable unit, bytes.
    pub(crate) logical_block_size: u32,
    /// Unit of atomic writes the device prefers, bytes.
    pub(crate) physical_block_size: u32,
    /// `BLK_FEAT_*` bits.
    pub(crate) features: u32,
}

/// A gendisk: allocated, then added (visible) until dropped.
///
/// # Invariants
///
/// `disk` is a gendisk this owns a reference to (put when dropped);
/// `stages` says whether it was added and removed.
pub(crate) struct Disk {
    disk: NonNull<ffi::gendisk>,
    /// Added once, removed once (`device_add_disk`, `del_gendisk`).
    stages: Stages,
}

// SAFETY: gendisk functions may be called from any thread; `Disk` only
// changes the gendisk before it is added, and `stages` is atomic.
unsafe impl Send for Disk {}
// SAFETY: `&Disk` only reads the gendisk pointer: `add` and `remove` go
// through the atomic `stages` (one add, one removal), the block layer locks
// the disk's state itself,
// and `Disk` writes gendisk fields only before the disk is added.
unsafe impl Sync for Disk {}

impl Disk {
    /// Allocates a disk whose bios go to `handler`, named `name` (a
    /// NUL-terminated name of at most 31 bytes), showing `badblocks` in
    /// `/sys/block/NAME/badblocks`.
    ///
    /// # Safety
    ///
    /// `handler` and `badblocks` outlive the disk's use of them: they stay
    /// where they are until the disk was removed and dropped (the caller
    /// keeps them in the same pinned allocation, and removes the disk before
    /// dropping it).
    pub(crate) unsafe fn alloc<T: BioHandler>(
        limits: &Limits,
        ops: &'static DiskOps<T>,
        handler: &T,
        badblocks: &BadBlocks,
        name: &[u8],
        capacity_sectors: u64,
    ) -> Result<Self> {
        let mut lim = ffi::queue_limits {
            logical_block_size: limits.logical_block_size,
            physical_block_size: limits.physical_block_size,
            max_hw_sectors: u32::MAX,
            features: limits.features,
            ..Default::default()
        };
        // SAFETY: `lim` is valid for the call; NUMA_NO_NODE is a valid node.
        let disk = from_err_ptr(unsafe { ffi::oxdax_blk_alloc_disk(&mut lim, -1) })?;
        let disk = NonNull::new(disk).ok_or(ENOMEM)?;
        let name = name.split(|&b| b == 0).next().unwrap_or(name);
        let this = Self {
            disk,
            stages: Stages::new(),
        };
        let raw = this.disk.as_ptr();
        if name.is_empty() || name.len() >= DISK_NAME_LEN {
            return Err(EINVAL);
        }
        // SAFETY: The disk is allocated and not yet visible to anyone. The
        // name fits (checked above), `ops` is static, and `handler` and
        // `badblocks` outlive the disk's use of them (this function's
        // `# Safety`).
        unsafe {
            (*raw).fops = &ops.table;
            (*raw).private_data = core::ptr::from_ref(handler).cast_mut().cast();
            (*raw).bb = badblocks.as_ptr().cast();
            // Zeroed by the allocation, so the name stays NUL-terminated.
            for (dest, &byte) in (*raw).disk_name.iter_mut().zip(name) {
                *dest = byte as _;
            }
            ffi::set_capacity(raw, capacity_sectors);
        }
        Ok(this)
    }

    /// The gendisk, for the DAX host table.
    pub(crate) fn as_ptr(&self) -> *mut ffi::gendisk {
        self.disk.as_ptr()
    }

    /// Makes the disk visible as a child of the namespace `parent`, with
    /// pmem's `dax/write_cache` sysfs attribute; partitions are scanned, so
    /// bios arrive before this returns.
    pub(crate) fn add(&self, parent: &Namespace) -> Result {
        // The static, NULL-terminated table in ffi/helpers.c; only its
        // address is taken here, and the block layer only reads it.
        let groups = (&raw mut ffi::oxdax_pmem_attribute_groups).cast();
        // A disk is added once: never again, nor after `remove`.
        self.stages.set_up(|| {
            // SAFETY: The disk is allocated and, `stages` says, neither
            // added nor being added elsewhere; `parent` is a live namespace
            // device (a `Namespace` exists only while it is probed or
            // bound); `groups` is a static table.
            kernel::error::to_result(unsafe {
                ffi::device_add_disk(parent.as_device(), self.disk.as_ptr(), groups)
            })
        })
    }

    /// Marks the disk read-only if its region is (only once it was added:
    /// the check finds the region through the disk's parent).
    pub(crate) fn check_read_only(&self) {
        if self.stages.is_live() {
            // SAFETY: The disk is allocated (until dropped) and was added
            // under its namespace, whose parent is the region the check
            // reads.
            unsafe { ffi::nvdimm_check_and_set_ro(self.disk.as_ptr().cast()) };
        }
    }

    /// Removes the disk from the system (idempotent). Bios may still arrive
    /// while this runs (final writeback); none after it returns.
    pub(crate) fn remove(&self) {
        self.stages.tear_down(|| {
            // SAFETY: The disk was added (`stages`), and this runs once.
            unsafe { ffi::del_gendisk(self.disk.as_ptr()) };
        });
    }
}

/// The disk's `badblocks` sysfs node: pollers are woken when the list
/// changes. Released (`sysfs_put`) when dropped.
///
/// # Invariants
///
/// `node` is a kernfs node this holds a reference to (put when dropped).
pub(crate) struct BadBlocksNode {
    node: NonNull<ffi::kernfs_node>,
}

// SAFETY: kernfs nodes are reference counted and may be notified from any
// thread.
unsafe impl Send for BadBlocksNode {}
// SAFETY: `&BadBlocksNode` only calls kernfs_notify(), which any CPU may call
// at once (RCU for the poll wakeup, `kernfs_notify_lock` for the rest); the
// reference taken in `of` keeps the node alive.
unsafe impl Sync for BadBlocksNode {}

impl BadBlocksNode {
    /// The node of an added disk, if sysfs has one.
    pub(crate) fn of(disk: &Disk) -> Option<Self> {
        // SAFETY: The disk is alive; the helper takes a node reference.
        let node = unsafe { ffi::oxdax_disk_badblocks_dirent(disk.as_ptr()) };
        NonNull::new(node).map(|node| Self { node })
    }

    /// Wakes pollers of the file.
    pub(crate) fn notify(&self) {
        // SAFETY: We hold a reference to the node.
        unsafe { ffi::kernfs_notify(self.node.as_ptr()) };
    }
}

impl Drop for BadBlocksNode {
    fn drop(&mut self) {
        // SAFETY: Drops the reference taken in `of`.
        unsafe { ffi::kernfs_put(self.node.as_ptr()) };
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        self.remove();
        // SAFETY: The disk is ours; this drops the allocation reference.
        unsafe { ffi::put_disk(self.disk.as_ptr()) };
    }
}

/// What a bio asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BioOp {
    /// Read into the bio's pages.
    Read,
    /// Write the bio's pages.
    Write,
    /// Empty flush: make earlier writes durable.
    Flush,
    /// Anything else (discard, write-zeroes, zone operations ...).
    Other,
}

/// Completion status of a bio.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BioStatus {
    /// Success.
    Ok,
    /// The operation is not supported.
    NotSupported,
    /// Media or range error.
    IoError,
}

/// One contiguous piece of a bio's memory, lent for one step of
/// [`Bio::for_each_segment`].
///
/// # Invariants
///
/// `page` is the first of contiguous pages of the live bio covering
/// `offset + len` bytes, for `'a`. Only `for_each_segment` makes one.
pub(crate) struct Segment<'a> {
    page: *mut ffi::page,
    offset: usize,
    len: usize,
    sector: u64,
    _bio: PhantomData<&'a Bio>,
}

impl Segment<'_> {
    /// Device sector this piece starts at.
    pub(crate) fn sector(&self) -> u64 {
        self.sector
    }

    /// Length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The first page, the offset into it and the length (memory copies).
    pub(super) fn pages(&self) -> (*mut ffi::page, usize, usize) {
        (self.page, self.offset, self.len)
    }
}

/// A bio being handled; ended exactly once, by `end` (or by a flush that
/// took it over).
///
/// # Invariants
///
/// `bio` is a live bio submitted to one of our disks, not yet ended: `end`
/// and `handed_over` consume the `Bio`.
pub(crate) struct Bio {
    bio: *mut ffi::bio,
}

impl Bio {
    /// Flushes `region`'s write-pending queues for this bio (`REQ_FUA`): an
    /// asynchronous region (virtio-pmem) may take over its completion.
    pub(crate) fn flush_region(&self, region: &Region) -> Result<Option<FlushAsync>> {
        // SAFETY: The bio is live until ended (type invariant) and being
        // submitted: what `flush_for` needs (the region only chains a flush
        // to it, or ignores it).
        unsafe { region.flush_for(self.bio) }
    }
    fn opf(&self) -> u32 {
        // SAFETY: The bio is live until ended (type invariant).
        unsafe { (*self.bio).bi_opf }
    }

    /// The operation.
    pub(crate) fn op(&self) -> BioOp {
        // SAFETY: The bio is live.
        match unsafe { ffi::oxdax_bio_op(self.bio) } {
            ffi::req_op_REQ_OP_READ => BioOp::Read,
            ffi::req_op_REQ_OP_WRITE => BioOp::Write,
            ffi::req_op_REQ_OP_FLUSH => BioOp::Flush,
            _ => BioOp::Other,
        }
    }

    /// Earlier writes must be durable before this bio's data is written.
    pub(crate) fn preflush(&self) -> bool {
        self.opf() & ffi::REQ_PREFLUSH != 0
    }

    /// This bio's data must be durable when it completes.
    pub(crate) fn fua(&self) -> bool {
        self.opf() & ffi::REQ_FUA != 0
    }

    /// Calls `f` for each segment in order; stops at the first error.
    pub(crate) fn for_each_segment(&self, mut f: impl FnMut(Segment<'_>) -> Result) -> Result {
        // SAFETY: The bio is live; iterating a copy of its iterator leaves
        // the bio unchanged.
        let mut iter = unsafe { (*self.bio).bi_iter };
        let mut bvec = ffi::bio_vec::default();
        let mut sector: u64 = 0;
        // SAFETY: The bio, iterator and out pointers are valid.
        while unsafe { ffi::oxdax_bio_next_segment(self.bio, &mut iter, &mut bvec, &mut sector) } {
            f(Segment {
                page: bvec.bv_page,
                offset: bvec.bv_offset as usize,
                len: bvec.bv_len as usize,
                sector,
                _bio: PhantomData,
            })?;
        }
        Ok(())
    }

    /// Starts I/O accounting (a no-op when the queue does not account).
    pub(crate) fn start_accounting(&self) -> usize {
        // SAFETY: The bio is live.
        unsafe { ffi::oxdax_bio_start_io_acct(self.bio) as usize }
    }

    /// Ends I/O accounting started with `start_accounting`.
    pub(crate) fn end_accounting(&self, start: usize) {
        // SAFETY: The bio is live; `start` came from `start_accounting`.
        unsafe { ffi::oxdax_bio_end_io_acct(self.bio, start as _) };
    }

    /// Completes the bio.
    pub(crate) fn end(self, status: BioStatus) {
        let status = match status {
            BioStatus::Ok => ffi::BLK_STS_OK as ffi::blk_status_t,
            BioStatus::NotSupported => ffi::BLK_STS_NOTSUPP as ffi::blk_status_t,
            BioStatus::IoError => ffi::BLK_STS_IOERR as ffi::blk_status_t,
        };
        // SAFETY: The bio is live and ended exactly once: `self` is consumed.
        unsafe {
            (*self.bio).bi_status = status;
            ffi::bio_endio(self.bio);
        }
    }

    /// Leaves completion to whoever took the bio over (an asynchronous
    /// flush).
    pub(crate) fn handed_over(self) {}
}
