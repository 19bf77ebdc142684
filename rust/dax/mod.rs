// SPDX-License-Identifier: GPL-2.0

//! The DAX fault engine: page faults on files whose data lives in
//! persistent memory, served by mapping the memory itself.
//!
//! It sits below the filesystem as fs/dax.c sits below ext4 and xfs: the
//! filesystem answers block-mapping questions through [`BlockMapper`] (the
//! iomap pattern) and the engine keeps the mapping entries, decides what
//! to map, and maps it (PTEs, PMDs, zero pages). Its decisions are pure
//! logic ([`crate::logic::dax`]); Documentation/oxdax/fault-engine.rst has
//! the design, the locking and why.
//!
//! - `fault.rs`: page faults, PTE and PMD in one routine, with zero pages,
//!   copy-on-write and `MAP_SYNC`;
//! - `pud.rs`: 1 GiB faults, as 512 2 MiB entries under one PUD;
//! - `writeback.rs`: `fsync`/`msync` of what was stored through mappings
//!   (dirty and `TOWRITE` tags);
//! - `invalidate.rs`: mappings removed before blocks are freed or shared;
//! - `iomap.rs`: the same block-mapping answers for the kernel's own fault
//!   path (`fault_engine=iomap`);
//! - this file: the engine's state, its entries and region locks.
//!
//! # Lock order
//!
//! Outermost first; each function below says which of these it takes and
//! which its caller must hold.
//!
//! ```text
//! mmap lock (core mm)
//!   sb_start_pagefault                (write faults)
//!     mapping->invalidate_lock        shared: faults; exclusive: truncate,
//!                                     punch, zero range, reflink
//!       region lock                   Engine::regions, by (file, 2 MiB);
//!                                     nobody holds two
//!         volume lock                 inside BlockMapper calls
//!           i_pages lock              inside Entries (exchange, tags)
//! ```
//!
//! A fault holds its region lock from the mapping question to the page
//! table insertion, so that two faults on one index allocate once and
//! PTE and PMD faults of one 2 MiB region see each other's entries.

mod fault;
mod invalidate;
pub(crate) mod iomap;
mod pud;
mod writeback;

use core::sync::atomic::{AtomicU64, Ordering};

use kernel::{
    new_mutex,
    prelude::*,
    sync::{Arc, Mutex},
};

use crate::{
    logic::dax::{Entry, PMD_PAGES},
    sys::{
        dax::{DaxMemory, DeviceFrames},
        debugfs,
        mm::{self, Entries, Tags},
    },
};

/// Page size as a `u64`.
const PAGE: u64 = 4096;

/// How a file range is stored, as the filesystem answers
/// [`BlockMapper::map`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Blocks {
    /// Nothing stored: reads see zeros.
    Hole,
    /// Allocated at this device byte offset, never written: reads see
    /// zeros.
    Unwritten(u64),
    /// Data at this device byte offset.
    Data(u64),
}

/// A block-mapping answer (iomap's `struct iomap`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BlockMap {
    /// First file page answered (the one asked for).
    pub(crate) first: u64,
    /// Pages answered (at least 1).
    pub(crate) pages: u64,
    /// Where they are.
    pub(crate) blocks: Blocks,
    /// Allocated (and zeroed) or converted by this call.
    pub(crate) new: bool,
    /// Shared with other files or ranges (reflink). A write answer that
    /// is shared asks for copy-on-write: the engine removes this file's
    /// mappings of the pages, then calls [`BlockMapper::unshare`].
    pub(crate) shared: bool,
    /// This write answer replaced shared blocks by private copies
    /// (copy-on-write done, data copied): the old blocks must not stay
    /// mapped for this file.
    pub(crate) copied: bool,
    /// The metadata that makes the answer true is not durable yet
    /// (iomap's `IOMAP_F_DIRTY`): a `MAP_SYNC` write must wait for
    /// [`BlockMapper::persist`] before it maps the blocks writable.
    pub(crate) unsynced: bool,
}

/// What the engine asks of a filesystem.
pub(crate) trait BlockMapper {
    /// How the filesystem names a file.
    type File: ?Sized;

    /// Maps `pages` pages of `file` from page `first`. `write`: the pages
    /// are about to be written in place: allocate holes (zeroed), convert
    /// unwritten blocks; shared blocks are answered as they are (`shared`,
    /// nothing changed). May answer fewer pages than asked.
    fn map(&self, file: &Self::File, first: u64, pages: u64, write: bool) -> Result<BlockMap>;

    /// Copies the shared blocks of `pages` pages of `file` from page
    /// `first` (a `shared` write answer) to new blocks and maps them
    /// (`copied`). The old blocks may be freed or rewritten by their other
    /// owners as soon as this returns: the engine calls it only after it
    /// removed every mapping of these pages, with the fault's region lock
    /// held so that none comes back.
    fn unshare(&self, file: &Self::File, first: u64, pages: u64) -> Result<BlockMap>;

    /// Makes `file`'s metadata durable (after an `unsynced` answer).
    fn persist(&self, file: &Self::File) -> Result;

    /// The pages a copy-on-write of pages `first..first + pages` copies:
    /// a filesystem may widen it (oxdax: to the 2 MiB region, so that the
    /// copy maps with a PMD). The engine uses the answer only inside the
    /// fault's 2 MiB region.
    fn cow_range(&self, _file: &Self::File, first: u64, pages: u64) -> Result<(u64, u64)> {
        Ok((first, pages))
    }

    /// Copies what is shared of pages `first..first + pages` of `file`
    /// (the widened part of a copy-on-write), with the same precondition
    /// as [`Self::unshare`]. What cannot be copied stays shared.
    fn copy_shared(&self, _file: &Self::File, _first: u64, _pages: u64) -> Result {
        Ok(())
    }
}

/// The file a fault is on.
pub(crate) struct Faulting<'a, M: BlockMapper> {
    /// Who answers block-mapping questions.
    pub(crate) mapper: &'a M,
    /// The file, as the mapper names it.
    pub(crate) file: &'a M::File,
    /// Its mapping entries.
    pub(crate) entries: &'a Entries<'a>,
    /// Its size in bytes (stable under the invalidate lock the caller
    /// holds shared).
    pub(crate) size: u64,
}

/// Fault and writeback counters (debugfs `oxdax/<device>/`).
#[derive(Default)]
pub(crate) struct Counters {
    /// Blocks mapped by a PTE.
    pub(crate) fault_pte: AtomicU64,
    /// Blocks mapped by a PMD.
    pub(crate) fault_pmd: AtomicU64,
    /// GiBs mapped by a PUD (made writable, for a write).
    pub(crate) fault_pud: AtomicU64,
    /// PUD faults served by PMDs instead (misaligned mapping or blocks,
    /// blocks not one run, a hole read, 2 MiB entries in the way).
    pub(crate) fault_pud_fallback: AtomicU64,
    /// Holes and unwritten ranges read through a zero page.
    pub(crate) fault_zero: AtomicU64,
    /// The PMD-size part of `fault_zero`.
    pub(crate) fault_zero_pmd: AtomicU64,
    /// Write faults that copied shared blocks.
    pub(crate) fault_cow: AtomicU64,
    /// `MAP_SYNC` write faults that allocated or remapped blocks (their
    /// metadata durable before the mapping became writable).
    pub(crate) fault_sync: AtomicU64,
    /// PMD faults served by PTEs instead.
    pub(crate) fault_fallback: AtomicU64,
    /// The fallbacks by reason ([`Fallback`]): address and file offset
    /// disagree modulo 2 MiB.
    pub(crate) fallback_misaligned: AtomicU64,
    /// A private mapping's write.
    pub(crate) fallback_private_write: AtomicU64,
    /// The 2 MiB would leave the VMA.
    pub(crate) fallback_outside_vma: AtomicU64,
    /// The 2 MiB would extend past the end of file.
    pub(crate) fallback_past_eof: AtomicU64,
    /// 4 KiB entries exist in the range.
    pub(crate) fallback_small_entries: AtomicU64,
    /// The blocks are fewer than 2 MiB in one run (an extent ends inside).
    pub(crate) fallback_split: AtomicU64,
    /// One run, not 2 MiB-aligned on the device (a fragmented chunk).
    pub(crate) fallback_unaligned: AtomicU64,
    /// A 2 MiB hole with no zero chunk to map (read-only mounts).
    pub(crate) fallback_no_zero_chunk: AtomicU64,
    /// Writes to read-only PTEs (`pfn_mkwrite`).
    pub(crate) fault_mkwrite: AtomicU64,
    /// Faults refused with SIGBUS (past the end of file, I/O errors).
    pub(crate) fault_sigbus: AtomicU64,
    /// Entries written back (cache lines flushed, mappings removed).
    pub(crate) writeback_entries: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Locks serializing faults, writeback and invalidation per 2 MiB of a
/// file (hashed: unrelated regions may share one; nobody holds two).
const REGION_LOCKS: usize = 64;

/// One filesystem's fault engine.
#[pin_data]
pub(crate) struct Engine {
    /// Region locks (see [`REGION_LOCKS`]).
    #[pin]
    regions: [Mutex<()>; REGION_LOCKS],
    /// The whole device, mapped (cache flushes, copies).
    memory: DaxMemory,
    /// The device's page frames.
    frames: DeviceFrames,
    /// Device offset of a 2 MiB-aligned range of zeros that nothing
    /// writes while mounted, mapped read-only for 2 MiB hole reads (the
    /// kernel's huge zero page is not exported to modules); `u64::MAX`
    /// until the filesystem has one (read-only mounts): 4 KiB zero pages.
    zero_chunk: AtomicU64,
    /// Counters (shared with their debugfs directory).
    counters: Arc<Counters>,
}

impl Engine {
    /// An engine over the device mapped at `memory`, whose page frames are
    /// `frames`.
    pub(crate) fn new(
        memory: DaxMemory,
        frames: DeviceFrames,
    ) -> Result<impl PinInit<Self, Error>> {
        let counters = Arc::new(Counters::default(), GFP_KERNEL)?;
        Ok(try_pin_init!(Self {
            regions <- kernel::init::pin_init_array_from_fn(|_| new_mutex!((), "oxdax_region")),
            memory,
            frames,
            zero_chunk: AtomicU64::new(u64::MAX),
            counters,
        }? Error))
    }

    /// Maps 2 MiB holes to the zeros at device offset `offset` (2 MiB
    /// aligned, never written while mounted) from now on.
    pub(crate) fn set_zero_chunk(&self, offset: u64) {
        if offset % (PMD_PAGES * PAGE) == 0 && offset < self.memory.len() {
            self.zero_chunk.store(offset, Ordering::Relaxed);
        }
    }

    /// Stops mapping holes to the zero chunk if it lies in device bytes
    /// `start..end` (its memory failed); returns whether it did.
    pub(crate) fn drop_zero_chunk_in(&self, start: u64, end: u64) -> bool {
        let chunk = self.zero_chunk.load(Ordering::Relaxed);
        let hit = chunk != u64::MAX && chunk < end && start < chunk + PMD_PAGES * PAGE;
        if hit {
            self.zero_chunk.store(u64::MAX, Ordering::Relaxed);
        }
        hit
    }

    /// The page frames of device bytes `start..end`.
    pub(crate) fn frames(&self, start: u64, end: u64) -> core::ops::Range<u64> {
        self.frame(start)..self.frame(end.saturating_add(PAGE - 1))
    }

    /// The mapped device.
    pub(crate) fn memory(&self) -> &DaxMemory {
        &self.memory
    }

    /// Publishes the counters in `dir` (debugfs `oxdax/<device>/`), which
    /// keeps them alive.
    pub(crate) fn publish(&self, dir: &mut debugfs::CounterDir) -> Result {
        let files: [debugfs::CounterFile<'_, Counters>; 20] = [
            (kernel::c_str!("fault_pte"), |c| &c.fault_pte),
            (kernel::c_str!("fault_pmd"), |c| &c.fault_pmd),
            (kernel::c_str!("fault_pud"), |c| &c.fault_pud),
            (kernel::c_str!("fault_pud_fallback"), |c| {
                &c.fault_pud_fallback
            }),
            (kernel::c_str!("fault_zero"), |c| &c.fault_zero),
            (kernel::c_str!("fault_zero_pmd"), |c| &c.fault_zero_pmd),
            (kernel::c_str!("fault_cow"), |c| &c.fault_cow),
            (kernel::c_str!("fault_sync"), |c| &c.fault_sync),
            (kernel::c_str!("fault_fallback"), |c| &c.fault_fallback),
            (kernel::c_str!("fallback_misaligned"), |c| {
                &c.fallback_misaligned
            }),
            (kernel::c_str!("fallback_private_write"), |c| {
                &c.fallback_private_write
            }),
            (kernel::c_str!("fallback_outside_vma"), |c| {
                &c.fallback_outside_vma
            }),
            (kernel::c_str!("fallback_past_eof"), |c| {
                &c.fallback_past_eof
            }),
            (kernel::c_str!("fallback_small_entries"), |c| {
                &c.fallback_small_entries
            }),
            (kernel::c_str!("fallback_split"), |c| &c.fallback_split),
            (kernel::c_str!("fallback_unaligned"), |c| {
                &c.fallback_unaligned
            }),
            (kernel::c_str!("fallback_no_zero_chunk"), |c| {
                &c.fallback_no_zero_chunk
            }),
            (kernel::c_str!("fault_mkwrite"), |c| &c.fault_mkwrite),
            (kernel::c_str!("fault_sigbus"), |c| &c.fault_sigbus),
            (kernel::c_str!("writeback_entries"), |c| {
                &c.writeback_entries
            }),
        ];
        dir.add(self.counters.clone(), &files)
    }

    /// The region lock of `index` in `entries`' file.
    fn region(&self, entries: &Entries<'_>, index: u64) -> &Mutex<()> {
        let key = (entries.key() >> 6) ^ (index / PMD_PAGES).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let slot = (key ^ (key >> 29)) as usize % REGION_LOCKS;
        &self.regions[slot]
    }

    /// The page frame of device byte `offset`.
    fn frame(&self, offset: u64) -> u64 {
        self.frames.first() + offset / PAGE
    }

    /// Writes back the CPU cache lines of an entry's blocks.
    fn flush(&self, entry: Entry) {
        if let Some(offset) = entry.frame().checked_sub(self.frames.first()) {
            if entry.maps_blocks() {
                // A dead device has nothing left to write back.
                if let Some(memory) = self.memory.access() {
                    // Frames outside the device cannot be in an entry of
                    // ours.
                    let _ = memory.write_back(offset * PAGE, (entry.pages() * PAGE) as usize);
                }
            }
        }
    }

    /// The entry covering `index`, waiting while fs/dax.c holds it locked
    /// (memory failure handling, briefly). Locking: the caller holds the
    /// region lock of `index` (what it finds stays until it lets go).
    fn settled(&self, entries: &Entries<'_>, index: u64) -> Result<Option<(Entry, u64)>> {
        loop {
            match entries.load(index)? {
                Some((entry, _)) if entry.is_locked() => mm::nap(),
                found => return Ok(found),
            }
        }
    }

    /// Removes `old` (at `base`) from the file's page tables and entries;
    /// its dirty cache lines are written back first. Private copies of its
    /// pages stay (they are the processes' own). Locking: the caller holds
    /// the region lock of `base`.
    fn evict(&self, entries: &Entries<'_>, old: Entry, base: u64) -> Result<bool> {
        entries.unmap(base, old.pages(), false);
        self.flush(old);
        entries.exchange(
            &self.frames,
            base,
            old.order(),
            Some(old),
            None,
            false,
            Tags::default(),
        )
    }
}
