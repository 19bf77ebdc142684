// SPDX-License-Identifier: GPL-2.0

//! Page faults, both sizes: one routine serves PTE and PMD faults
//! (`fault_span`, as fs/dax.c's `dax_fault_iter`), falling back from a PMD
//! to pages where the extent, the VMA or an entry forbids it. Here too:
//! zero pages over holes, copy-on-write of shared blocks (the old blocks'
//! mappings go before `BlockMapper::unshare`), dirty tagging, and the
//! `MAP_SYNC` guarantee (metadata durable before a writable mapping).
//!
//! Locking: see the lock order in `mod.rs`; each function says what it
//! takes and what its caller holds.

use core::sync::atomic::Ordering;

use kernel::prelude::*;

use super::{bump, BlockMap, BlockMapper, Blocks, Engine, Faulting, PAGE};
use crate::{
    logic::dax::{plan, pmd_range, Entry, Fallback, Plan, Want, PMD_ORDER, PMD_PAGES, PUD_ORDER},
    sys::mm::{
        self, Entries, FaultCode, Tags, VmFault, FAULT_FALLBACK, FAULT_NOPAGE, FAULT_SIGBUS,
    },
};

/// An entry to install and how.
pub(super) struct Install {
    pub(super) entry: Entry,
    /// The blocks are shared with other files (page association).
    pub(super) shared: bool,
    pub(super) tags: Tags,
}

/// What one fault maps: the page `first` (`order` 0), or the 2 MiB from
/// `first` (`order` [`PMD_ORDER`]; `first` 2 MiB-aligned in the file).
#[derive(Clone, Copy)]
pub(super) struct Span {
    pub(super) first: u64,
    pub(super) order: u32,
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
pub(super) enum Stop {
    Fallback(Fallback),
    Error(Error),
}

impl From<Error> for Stop {
    fn from(e: Error) -> Self {
        Stop::Error(e)
    }
}

impl Engine {
    /// Serves a page fault on `target`. `order`: 0, [`PMD_ORDER`] or
    /// [`PUD_ORDER`] (rust/dax/pud.rs);
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
        } else if order == PUD_ORDER {
            return match self.fault_pud(target, vmf) {
                Ok(code) => code,
                Err(_) => {
                    bump(&self.counters.fault_pud_fallback);
                    FAULT_FALLBACK
                }
            };
        } else {
            return FAULT_FALLBACK;
        };
        match result {
            Ok(code) => {
                if code & FAULT_SIGBUS != 0 {
                    bump(&self.counters.fault_sigbus);
                }
                code
            }
            Err(why) => {
                let c = &self.counters;
                bump(&c.fault_fallback);
                bump(match why {
                    Fallback::Misaligned => &c.fallback_misaligned,
                    Fallback::PrivateWrite => &c.fallback_private_write,
                    Fallback::OutsideVma => &c.fallback_outside_vma,
                    Fallback::PastEof => &c.fallback_past_eof,
                    Fallback::SmallEntries => &c.fallback_small_entries,
                    Fallback::Split => &c.fallback_split,
                    Fallback::Unaligned => &c.fallback_unaligned,
                    Fallback::NoZeroChunk => &c.fallback_no_zero_chunk,
                });
                FAULT_FALLBACK
            }
        }
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
            // these pages wait for our region lock. The filesystem may
            // copy the rest of the region too (a PTE fault then leaves
            // it mappable by a PMD): its other entries go first, as they
            // map the old blocks; the region lock covers them.
            let (mut from, mut count) = self.cow_range(target, first, map.pages)?;
            if count > map.pages && target.entries.pinned_page(from, from + count - 1).is_some() {
                // A pinned page of the region (direct I/O, RDMA) keeps
                // its entry, which the layout checks of truncation and
                // compaction look for: copy only the fault's pages.
                (from, count) = (first, map.pages);
            }
            if count > map.pages {
                // The fault's own entry is replaced when it is installed.
                let end = first + map.pages;
                if from < first {
                    self.evict_held(target.entries, from, first - 1)?;
                }
                if end < from + count {
                    self.evict_held(target.entries, end, from + count - 1)?;
                }
                target.entries.unmap(from, count, false);
                target.mapper.copy_shared(target.file, from, count)?;
            }
            target.entries.unmap(map.first, map.pages, false);
            map = target.mapper.unshare(target.file, map.first, map.pages)?;
            // Copied, by this call or just before it.
            map.copied = true;
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

    /// The filesystem's copy-on-write range for pages `first..first +
    /// pages`, if it lies in their 2 MiB region (whose lock the caller
    /// holds) and covers them; else just them.
    fn cow_range<M: BlockMapper>(
        &self,
        target: &Faulting<'_, M>,
        first: u64,
        pages: u64,
    ) -> Result<(u64, u64)> {
        let region = first - first % PMD_PAGES;
        let (from, count) = target.mapper.cow_range(target.file, first, pages)?;
        let inside = from >= region
            && from <= first
            && from
                .checked_add(count)
                .is_some_and(|end| end <= region + PMD_PAGES && end >= first + pages);
        Ok(if inside {
            (from, count)
        } else {
            (first, pages)
        })
    }

    /// Makes the entry at `index` (`order`) say `new`, replacing what
    /// `found` says is there. `Ok(false)`: it changed meanwhile (fs/dax.c
    /// truncated or locked it): retry. Locking: the caller holds the
    /// region lock of `index`.
    pub(super) fn install(
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
                return entries.exchange(&self.frames, index, order, None, entry, shared, tags);
            }
            entries.unmap(base, old.pages(), false);
            self.flush(old);
        }
        entries.exchange(
            &self.frames,
            index,
            order,
            found.map(|(e, _)| e),
            entry,
            shared,
            tags,
        )
    }

    /// The entry a fault of `span` meets, once fs/dax.c no longer holds it
    /// locked: for a page, the entry covering it; for 2 MiB, the first in
    /// the range, which must be a 2 MiB one.
    pub(super) fn entry_in(
        &self,
        entries: &Entries<'_>,
        span: Span,
    ) -> Result<Option<(Entry, u64)>, Stop> {
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
        if map.pages < PMD_PAGES {
            return Err(Stop::Fallback(Fallback::Split));
        }
        match map.blocks {
            Blocks::Data(offset) if self.frame(offset) % PMD_PAGES == 0 => {
                Ok(Want::Blocks(self.frame(offset)))
            }
            Blocks::Data(_) => Err(Stop::Fallback(Fallback::Unaligned)),
            Blocks::Hole | Blocks::Unwritten(_) if !write => {
                match self.zero_chunk.load(Ordering::Relaxed) {
                    // On a device whose frames are not 2 MiB aligned the
                    // chunk cannot be PMD-mapped either.
                    offset if offset != u64::MAX && self.frame(offset) % PMD_PAGES == 0 => {
                        Ok(Want::Zero(self.frame(offset)))
                    }
                    _ => Err(Stop::Fallback(Fallback::NoZeroChunk)),
                }
            }
            // A write answer maps blocks: this one would be the mapper's
            // mistake; 4 KiB faults ask again.
            Blocks::Hole | Blocks::Unwritten(_) => Err(Stop::Fallback(Fallback::Split)),
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
}
