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
//!         volume mutex                inside BlockMapper calls
//!           i_pages lock              inside Entries (exchange, tags)
//! ```
//!
//! A fault holds its region lock from the mapping question to the page
//! table insertion, so that two faults on one index allocate once and
//! PTE and PMD faults of one 2 MiB region see each other's entries.

pub(crate) mod iomap;

use core::sync::atomic::{AtomicU64, Ordering};

use kernel::{
    new_mutex,
    prelude::*,
    str::CStr,
    sync::{Arc, Mutex},
};

use crate::{
    logic::dax::{plan, pmd_range, Entry, Fallback, Plan, Want, PMD_ORDER, PMD_PAGES},
    sys::{
        dax::{DaxMemory, DeviceFrames},
        debugfs, memory,
        mm::{self, Entries, FaultCode, Tags, VmFault, FAULT_FALLBACK, FAULT_NOPAGE, FAULT_SIGBUS},
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

/// An entry to install and how.
struct Install {
    entry: Entry,
    /// The blocks are shared with other files (page association).
    shared: bool,
    tags: Tags,
}

/// What one fault maps: the page `first` (`order` 0), or the 2 MiB from
/// `first` (`order` [`PMD_ORDER`]; `first` 2 MiB-aligned in the file).
#[derive(Clone, Copy)]
struct Span {
    first: u64,
    order: u32,
}

impl Span {
    fn pages(self) -> u64 {
        1 << self.order
    }

    fn is_pmd(self) -> bool {
        self.order == PMD_ORDER
    }
}

/// Why a try at a fault stopped: a 2 MiB fault falls back to pages, or
/// the fault failed.
enum Stop {
    Fallback(Fallback),
    Error(Error),
}

impl From<Error> for Stop {
    fn from(e: Error) -> Self {
        Stop::Error(e)
    }
}

/// Fault and writeback counters (debugfs `oxdax/<device>/`).
#[derive(Default)]
pub(crate) struct Counters {
    /// Blocks mapped by a PTE.
    pub(crate) fault_pte: AtomicU64,
    /// Blocks mapped by a PMD.
    pub(crate) fault_pmd: AtomicU64,
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

/// Fences the write-backs issued before it is dropped (on every way out).
struct Fence;

impl Drop for Fence {
    fn drop(&mut self) {
        memory::fence();
    }
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

    /// Publishes the counters in debugfs as `oxdax/<name>/<counter>`; the
    /// directory keeps them alive.
    pub(crate) fn publish(&self, name: &CStr) -> debugfs::CounterDir<Counters> {
        let files: [debugfs::CounterFile<'_, Counters>; 10] = [
            (kernel::c_str!("fault_pte"), |c| &c.fault_pte),
            (kernel::c_str!("fault_pmd"), |c| &c.fault_pmd),
            (kernel::c_str!("fault_zero"), |c| &c.fault_zero),
            (kernel::c_str!("fault_zero_pmd"), |c| &c.fault_zero_pmd),
            (kernel::c_str!("fault_cow"), |c| &c.fault_cow),
            (kernel::c_str!("fault_sync"), |c| &c.fault_sync),
            (kernel::c_str!("fault_fallback"), |c| &c.fault_fallback),
            (kernel::c_str!("fault_mkwrite"), |c| &c.fault_mkwrite),
            (kernel::c_str!("fault_sigbus"), |c| &c.fault_sigbus),
            (kernel::c_str!("writeback_entries"), |c| {
                &c.writeback_entries
            }),
        ];
        debugfs::CounterDir::new(name, self.counters.clone(), &files)
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

    /// Serves a page fault on `target`. `order`: 0 or [`PMD_ORDER`];
    /// `present`: a write to a read-only PTE (`pfn_mkwrite`). Locking: the
    /// caller holds the mmap lock (core mm) and the file's invalidate lock
    /// shared; takes the region lock.
    pub(crate) fn fault<M: BlockMapper>(
        &self,
        target: &Faulting<'_, M>,
        vmf: &VmFault,
        order: u32,
        present: bool,
    ) -> FaultCode {
        let size_pages = target.size.div_ceil(PAGE);
        if present {
            bump(&self.counters.fault_mkwrite);
        }
        if vmf.index() >= size_pages {
            bump(&self.counters.fault_sigbus);
            return FAULT_SIGBUS;
        }
        let result = if order == PMD_ORDER {
            pmd_range(&vmf.window(), vmf.is_write(), size_pages).and_then(|first| {
                let span = Span {
                    first,
                    order: PMD_ORDER,
                };
                self.fault_span(target, vmf, span, present)
            })
        } else if order == 0 {
            let span = Span {
                first: vmf.index(),
                order: 0,
            };
            self.fault_span(target, vmf, span, present)
        } else {
            // PUD faults: always 2 MiB or less.
            return FAULT_FALLBACK;
        };
        match result {
            Ok(code) => {
                if code & FAULT_SIGBUS != 0 {
                    bump(&self.counters.fault_sigbus);
                }
                code
            }
            Err(_) => {
                bump(&self.counters.fault_fallback);
                FAULT_FALLBACK
            }
        }
    }

    /// Asks the mapper; a write to shared blocks copies them once their
    /// mappings are gone; a `MAP_SYNC` write waits for durable metadata.
    /// The caller holds the region lock of `first`.
    fn map_for<M: BlockMapper>(
        &self,
        target: &Faulting<'_, M>,
        vmf: &VmFault,
        first: u64,
        pages: u64,
        write: bool,
    ) -> Result<BlockMap> {
        let mut map = target.mapper.map(target.file, first, pages, write)?;
        if write && map.shared && map.first == first && map.pages > 0 {
            // Copy-on-write: once the copy commits the old blocks are
            // their other owners' alone, to free or rewrite; no page table
            // may still map them for this file (fs/dax.c unmaps in
            // dax_insert_entry before xfs remaps in ->iomap_end). Faults on
            // these pages wait for our region lock.
            target.entries.unmap(map.first, map.pages, false);
            map = target.mapper.unshare(target.file, map.first, map.pages)?;
        }
        if map.pages == 0 || map.first != first || (write && map.shared) {
            return Err(EIO);
        }
        if write && map.copied {
            bump(&self.counters.fault_cow);
        }
        if write && vmf.is_sync() {
            if map.unsynced {
                target.mapper.persist(target.file)?;
            }
            if map.new || map.copied || map.unsynced {
                bump(&self.counters.fault_sync);
            }
        }
        Ok(map)
    }

    /// Removes `old` (at `base`) from the file's page tables and entries;
    /// its dirty cache lines are written back first. Private copies of its
    /// pages stay (they are the processes' own). Locking: the caller holds
    /// the region lock of `base`.
    fn evict(&self, entries: &Entries<'_>, old: Entry, base: u64) -> Result<bool> {
        entries.unmap(base, old.pages(), false);
        self.flush(old);
        entries.exchange(base, old.order(), Some(old), None, false, Tags::default())
    }

    /// Makes the entry at `index` (`order`) say `new`, replacing what
    /// `found` says is there. `Ok(false)`: it changed meanwhile (fs/dax.c
    /// truncated or locked it): retry. Locking: the caller holds the
    /// region lock of `index`.
    fn install(
        &self,
        entries: &Entries<'_>,
        found: Option<(Entry, u64)>,
        index: u64,
        new: Install,
    ) -> Result<bool> {
        let order = new.entry.order();
        let (entry, shared, tags) = (Some(new.entry), new.shared, new.tags);
        if let Some((old, base)) = found {
            if old.order() != order || base != index {
                // A 2 MiB entry gives way to a 4 KiB one.
                if !self.evict(entries, old, base)? {
                    return Ok(false);
                }
                return entries.exchange(index, order, None, entry, shared, tags);
            }
            entries.unmap(base, old.pages(), false);
            self.flush(old);
        }
        entries.exchange(index, order, found.map(|(e, _)| e), entry, shared, tags)
    }

    /// Serves a fault of `span`: one routine for both sizes, as fs/dax.c's
    /// `dax_fault_iter`. Takes the region lock of `span.first` (the caller
    /// holds the file's invalidate lock shared). `present`: a write to a
    /// read-only PTE. A 2 MiB fault that cannot be served whole says why,
    /// and core mm retries it with pages; a page fault never falls back.
    fn fault_span<M: BlockMapper>(
        &self,
        target: &Faulting<'_, M>,
        vmf: &VmFault,
        span: Span,
        present: bool,
    ) -> Result<FaultCode, Fallback> {
        // A private mapping's write copies the page into anonymous memory
        // (core mm does, from a read-only mapping of the file's page); a
        // 2 MiB private write fell back already (`pmd_range`).
        let write = vmf.is_write() && vmf.is_shared();
        let _region = self.region(target.entries, span.first).lock();
        loop {
            match self.try_fault(target, vmf, span, write, present) {
                Ok(Some(code)) => return Ok(code),
                // An entry changed under us (fs/dax.c truncated or locked
                // it): look again.
                Ok(None) => continue,
                Err(Stop::Fallback(why)) if span.is_pmd() => return Err(why),
                Err(Stop::Fallback(_)) => return Ok(mm::fault_code(EIO)),
                Err(Stop::Error(e)) => return Ok(mm::fault_code(e)),
            }
        }
    }

    /// One try of [`Self::fault_span`] (region lock held): `Ok(None)` if an
    /// entry changed meanwhile.
    fn try_fault<M: BlockMapper>(
        &self,
        target: &Faulting<'_, M>,
        vmf: &VmFault,
        span: Span,
        write: bool,
        present: bool,
    ) -> Result<Option<FaultCode>, Stop> {
        let entries = target.entries;
        let found = self.entry_in(entries, span)?;
        let map = self.map_for(target, vmf, span.first, span.pages(), write)?;
        let want = self.want(&map, span, vmf, write)?;
        let tags = Tags {
            dirty: write,
            towrite: write && map.copied,
        };
        let kept = match plan(found, span.first, span.order, want) {
            Plan::Keep => {
                if let (true, Some((entry, base))) = (write, found) {
                    if !entries.retag(base, entry, tags, true)? {
                        return Ok(None);
                    }
                }
                true
            }
            Plan::Store | Plan::Replace => {
                let entry = match want {
                    Want::Blocks(frame) => Entry::pfn(frame, span.is_pmd()),
                    Want::Zero(frame) => Entry::zero(frame, span.is_pmd()),
                };
                let new = Install {
                    entry,
                    shared: map.shared,
                    tags,
                };
                if !self.install(entries, found, span.first, new)? {
                    return Ok(None);
                }
                false
            }
            Plan::Fallback => return Err(Stop::Fallback(Fallback::SmallEntries)),
        };
        if write {
            entries.mark_inode_dirty();
        }
        Ok(Some(self.insert(vmf, span, want, write, present && kept)))
    }

    /// The entry a fault of `span` meets, once fs/dax.c no longer holds it
    /// locked: for a page, the entry covering it; for 2 MiB, the first in
    /// the range, which must be a 2 MiB one.
    fn entry_in(&self, entries: &Entries<'_>, span: Span) -> Result<Option<(Entry, u64)>, Stop> {
        if !span.is_pmd() {
            return Ok(self.settled(entries, span.first)?);
        }
        loop {
            match entries.first_in(span.first, span.first + PMD_PAGES - 1)? {
                Some((entry, _)) if entry.is_locked() => mm::nap(),
                Some((entry, _)) if !entry.is_pmd() => {
                    return Err(Stop::Fallback(Fallback::SmallEntries))
                }
                found => return Ok(found),
            }
        }
    }

    /// What a fault of `span` maps for the mapper's answer `map` (which
    /// starts at `span.first`): a page of it, or its 2 MiB if they are one
    /// aligned extent; zeros for a hole (a 2 MiB read of a hole maps the
    /// zero chunk, if the filesystem gave one).
    fn want(&self, map: &BlockMap, span: Span, vmf: &VmFault, write: bool) -> Result<Want, Stop> {
        if !span.is_pmd() {
            return Ok(match map.blocks {
                Blocks::Hole | Blocks::Unwritten(_) => Want::Zero(vmf.zero_frame()),
                Blocks::Data(offset) => Want::Blocks(self.frame(offset)),
            });
        }
        match map.blocks {
            Blocks::Data(offset)
                if map.pages >= PMD_PAGES && self.frame(offset) % PMD_PAGES == 0 =>
            {
                Ok(Want::Blocks(self.frame(offset)))
            }
            Blocks::Hole | Blocks::Unwritten(_) if map.pages >= PMD_PAGES && !write => {
                match self.zero_chunk.load(Ordering::Relaxed) {
                    // On a device whose frames are not 2 MiB aligned the
                    // chunk cannot be PMD-mapped either.
                    offset if offset != u64::MAX && self.frame(offset) % PMD_PAGES == 0 => {
                        Ok(Want::Zero(self.frame(offset)))
                    }
                    _ => Err(Stop::Fallback(Fallback::Extent)),
                }
            }
            _ => Err(Stop::Fallback(Fallback::Extent)),
        }
    }

    /// Maps `want` into the faulting page table and counts it. `kept`: a
    /// write to a read-only PTE of the entry that is there, which core mm
    /// makes writable once we return 0.
    ///
    /// A frame that is not the device's (a damaged entry) is refused with
    /// `SIGBUS`: only device memory is mapped.
    fn insert(&self, vmf: &VmFault, span: Span, want: Want, write: bool, kept: bool) -> FaultCode {
        let c = &self.counters;
        match (want, span.is_pmd()) {
            (Want::Zero(frame), true) => {
                let Some(frame) = self.frames.pmd(frame) else {
                    return FAULT_SIGBUS;
                };
                bump(&c.fault_zero);
                bump(&c.fault_zero_pmd);
                vmf.insert_pmd(frame, false)
            }
            (Want::Zero(_), false) => {
                bump(&c.fault_zero);
                vmf.insert_zero_page()
            }
            (Want::Blocks(frame), true) => {
                let Some(frame) = self.frames.pmd(frame) else {
                    return FAULT_SIGBUS;
                };
                bump(&c.fault_pmd);
                vmf.insert_pmd(frame, write)
            }
            (Want::Blocks(_), false) if kept => 0,
            (Want::Blocks(frame), false) => {
                let Some(frame) = self.frames.frame(frame) else {
                    return FAULT_SIGBUS;
                };
                bump(&c.fault_pte);
                let code = vmf.insert_page(frame);
                // Mappings that track writes get read-only PTEs; this
                // write is tracked (tagged dirty) already.
                if write && code & !FAULT_NOPAGE == 0 {
                    vmf.make_writable(frame);
                }
                code
            }
        }
    }

    /// Writes back what was written through mappings of pages
    /// `first..=last`: for every dirty entry, its mappings are removed (so
    /// the next store faults and dirties it again), then its cache lines
    /// are written back and it is marked clean. Locking: takes each
    /// entry's region lock in turn; needs no invalidate lock (reflink
    /// calls it with the lock held exclusively).
    pub(crate) fn writeback(&self, entries: &Entries<'_>, first: u64, last: u64) -> Result {
        entries.tag_for_writeback(first, last);
        // The cache-line write-backs are ordered and complete only after a
        // fence (`pmem_wmb`), which must come before writeback reports
        // success to fsync or msync.
        let _fence = Fence;
        let mut index = first;
        while index <= last {
            let Some(tagged) = entries.next_towrite(&mut index, last)? else {
                break;
            };
            let base = index & !(tagged.pages() - 1);
            {
                let _region = self.region(entries, base).lock();
                if let Some((entry, at)) = self.settled(entries, base)? {
                    if at == base {
                        entries.unmap(base, entry.pages(), false);
                        self.flush(entry);
                        let all = Tags {
                            dirty: true,
                            towrite: true,
                        };
                        if entries.retag(base, entry, all, false)? {
                            bump(&self.counters.writeback_entries);
                        }
                    }
                }
            }
            index = base.saturating_add(tagged.pages());
        }
        Ok(())
    }

    /// Removes every entry and mapping of pages `first..=last` (whole
    /// 2 MiB entries that overlap), writing back dirty cache lines: before
    /// blocks are freed or shared, or after `write(2)` put new blocks
    /// under mapped zero pages. `private_from`: private copies (anonymous
    /// pages of `MAP_PRIVATE` mappings) of the pages from this one to
    /// `last` go too, as truncation needs past the new end of file; below
    /// it they are kept (core mm's `truncate_pagecache` keeps them too).
    /// Locking: takes each entry's region lock in turn. Callers that need
    /// the range to stay unmapped (blocks about to be freed or shared)
    /// hold the file's invalidate lock exclusively; `write(2)` after it
    /// allocated does not (faults may map the new blocks at once).
    pub(crate) fn invalidate(
        &self,
        entries: &Entries<'_>,
        first: u64,
        last: u64,
        private_from: Option<u64>,
    ) -> Result {
        let mut index = first;
        while index <= last {
            let Some((entry, base)) = entries.first_in(index, last)? else {
                break;
            };
            {
                let _region = self.region(entries, base).lock();
                if let Some((current, at)) = self.settled(entries, base)? {
                    if at == base && !self.evict(entries, current, base)? {
                        continue;
                    }
                }
            }
            index = base.saturating_add(entry.pages());
        }
        let pages = |from: u64| last.wrapping_sub(from).wrapping_add(1);
        entries.unmap(first, pages(first), false);
        if let Some(from) = private_from.filter(|&from| from <= last) {
            entries.unmap(from, pages(from), true);
        }
        Ok(())
    }
}
