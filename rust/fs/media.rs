// SPDX-License-Identifier: GPL-2.0

//! The device as the filesystem logic sees it: the whole DAX mapping
//! ([`Media`], read only by machine-check-safe copies) and the working
//! memory of its transactions and metadata cache ([`Scratch`]).

use core::{cell::RefCell, sync::atomic::AtomicU64};
use kernel::prelude::*;

use crate::{
    logic::{
        format::BLOCK_SIZE,
        fs::{
            CacheSlots, InodeSlot, LookupSlots, MappingSlot, Media, MediaFault, Parts, Scratch,
            CHECKED_SLOTS_PER_CACHE_SLOT, DEFERRED_WORDS, INODE_CACHE_SLOTS, MAPPING_CACHE_SLOTS,
            RESERVATION_WORDS, TX_LOG_BYTES, TX_MAX_BLOCKS,
        },
    },
    sys::{dax::DaxMemory, memory},
};

/// The mapped device. Each access is inside a DAX read section that found
/// the device alive (the filesystem calls the volume inside one too, so
/// that a device cannot die in the middle of a transaction): after the
/// device is gone, reads fail and writes do not happen.
pub(crate) struct PmemMedia {
    memory: DaxMemory,
}

impl PmemMedia {
    /// The media over a whole-device mapping.
    pub(crate) fn new(memory: DaxMemory) -> Self {
        Self { memory }
    }
}

impl Media for PmemMedia {
    fn size(&self) -> u64 {
        self.memory.len()
    }

    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), MediaFault> {
        let memory = self.memory.access().ok_or(MediaFault::Failed)?;
        memory.read(offset, buf).map_err(fault)
    }

    fn copy(&self, from: u64, to: u64, len: u64) -> Result<(), MediaFault> {
        let len = usize::try_from(len).map_err(|_| MediaFault::OutOfRange)?;
        let memory = self.memory.access().ok_or(MediaFault::Failed)?;
        memory.copy_within(from, to, len).map_err(fault)
    }

    fn write(&self, offset: u64, data: &[u8]) -> bool {
        self.memory
            .access()
            .is_some_and(|memory| memory.write(offset, data).is_ok())
    }

    fn zero(&self, offset: u64, len: u64) -> bool {
        let (Ok(len), Some(memory)) = (usize::try_from(len), self.memory.access()) else {
            return false;
        };
        memory.zero(offset, len).is_ok()
    }

    fn fence(&self) {
        memory::fence();
    }

    fn relax(&self) {
        crate::sys::cond_resched();
    }

    fn now_ns(&self) -> u64 {
        super::mutex_stats::now_ns()
    }
}

/// A failed access's kind: `EIO` is failed memory, anything else a range
/// outside the device.
fn fault(e: Error) -> MediaFault {
    if e == EIO {
        MediaFault::Failed
    } else {
        MediaFault::OutOfRange
    }
}

/// The metadata cache's memory.
struct CacheMemory {
    slots: VVec<u8>,
    tags: KVec<u64>,
}

impl CacheSlots for CacheMemory {
    fn slots(&mut self) -> (&mut [[u8; BLOCK_SIZE]], &mut [u64]) {
        (
            memory::as_blocks_mut::<BLOCK_SIZE>(&mut self.slots),
            &mut self.tags,
        )
    }
}

/// The lookup caches' memory (inode records, mappings).
struct LookupMemory {
    inodes: KVec<InodeSlot>,
    mappings: KVec<MappingSlot>,
}

impl LookupSlots for LookupMemory {
    fn inodes(&mut self) -> &mut [InodeSlot] {
        &mut self.inodes
    }
    fn mappings(&mut self) -> &mut [MappingSlot] {
        &mut self.mappings
    }
}

/// A volume's working memory, allocated once per mount (vmalloc):
/// transaction buffers (about 1.5 MiB) and the metadata cache
/// ([`crate::logic::fs::cache_slots_for`]: 4 to 32 MiB).
pub(crate) struct Buffers {
    shadows: VVec<u8>,
    originals: VVec<u8>,
    numbers: KVec<u64>,
    lines: KVec<u64>,
    log: VVec<u8>,
    deferred: KVec<u64>,
    reservations: KVec<u64>,
    spare: KBox<[u8; BLOCK_SIZE]>,
    checked: VVec<AtomicU64>,
    cache: RefCell<CacheMemory>,
    lookups: RefCell<LookupMemory>,
}

impl Buffers {
    /// Zeroed buffers of the sizes the logic asks for, with a metadata
    /// cache of `cache_slots` blocks.
    pub(crate) fn new(cache_slots: usize) -> Result<Self> {
        let checked_slots = cache_slots
            .checked_mul(CHECKED_SLOTS_PER_CACHE_SLOT)
            .ok_or(EINVAL)?;
        let cache_bytes = cache_slots.checked_mul(BLOCK_SIZE).ok_or(EINVAL)?;
        let mut shadows = VVec::new();
        shadows.extend_with(TX_MAX_BLOCKS * BLOCK_SIZE, 0u8, GFP_KERNEL)?;
        let mut originals = VVec::new();
        originals.extend_with(TX_MAX_BLOCKS * BLOCK_SIZE, 0u8, GFP_KERNEL)?;
        let mut slots = VVec::new();
        slots.extend_with(cache_bytes, 0u8, GFP_KERNEL)?;
        let mut tags = KVec::new();
        tags.extend_with(cache_slots, 0u64, GFP_KERNEL)?;
        let mut numbers = KVec::new();
        numbers.extend_with(TX_MAX_BLOCKS, 0u64, GFP_KERNEL)?;
        let mut lines = KVec::new();
        lines.extend_with(TX_MAX_BLOCKS, 0u64, GFP_KERNEL)?;
        let mut log = VVec::new();
        log.extend_with(TX_LOG_BYTES, 0u8, GFP_KERNEL)?;
        let mut deferred = KVec::new();
        deferred.extend_with(DEFERRED_WORDS, 0u64, GFP_KERNEL)?;
        let mut reservations = KVec::new();
        reservations.extend_with(RESERVATION_WORDS, 0u64, GFP_KERNEL)?;
        let spare = KBox::init(kernel::init::zeroed(), GFP_KERNEL)?;
        let mut inodes = KVec::new();
        inodes.extend_with(INODE_CACHE_SLOTS, None, GFP_KERNEL)?;
        let mut mappings = KVec::new();
        mappings.extend_with(MAPPING_CACHE_SLOTS, None, GFP_KERNEL)?;
        // Up to 256 KiB: virtually contiguous, like the cache.
        let mut checked = VVec::with_capacity(checked_slots, GFP_KERNEL)?;
        for _ in 0..checked_slots {
            checked.push(AtomicU64::new(0), GFP_KERNEL)?;
        }
        Ok(Self {
            shadows,
            originals,
            numbers,
            lines,
            log,
            deferred,
            reservations,
            spare,
            checked,
            cache: RefCell::new(CacheMemory { slots, tags }),
            lookups: RefCell::new(LookupMemory { inodes, mappings }),
        })
    }
}

impl Scratch for Buffers {
    fn parts(&mut self) -> Parts<'_> {
        Parts {
            shadows: memory::as_blocks_mut::<BLOCK_SIZE>(&mut self.shadows),
            originals: memory::as_blocks_mut::<BLOCK_SIZE>(&mut self.originals),
            tags: &mut self.numbers,
            lines: &mut self.lines,
            log: &mut self.log,
            deferred: &mut self.deferred,
            spare: &mut self.spare,
            checked: &self.checked,
            cache: &self.cache,
            lookups: &self.lookups,
            reservations: &mut self.reservations,
        }
    }

    fn checked_nodes(&self) -> &[AtomicU64] {
        &self.checked
    }

    fn cache(&self) -> &RefCell<dyn CacheSlots + '_> {
        &self.cache
    }

    fn lookup_slots(&self) -> &RefCell<dyn LookupSlots + '_> {
        &self.lookups
    }
}
