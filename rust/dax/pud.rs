// SPDX-License-Identifier: GPL-2.0

//! 1 GiB faults: a PUD maps a GiB of a file whose blocks are one run that
//! starts on a GiB of the device (Documentation/oxdax/fault-engine.rst,
//! "1 GiB (PUD) mappings"). Anything else falls back to PMDs.
//!
//! The page-cache entry format has no 1 GiB size, so a PUD's entries are
//! the 512 2 MiB entries of its GiB: writeback, truncation and memory
//! failure find them as they find a PMD's. No lock covers a GiB: the
//! fault takes the 512 region locks one at a time, twice.
//!
//! 1. The blocks are asked for with no region lock (the volume serializes
//!    its changes; the invalidate lock, held shared, keeps them). Only
//!    blocks that exist map: a store into a hole falls back to PMDs, which
//!    allocate 2 MiB, not a GiB.
//! 2. The file is marked PUD-mapped ([`crate::sys::mm::Entries::mark_pud_mapped`]):
//!    from then on every removal of mappings covers whole GiBs, because
//!    core mm splits a PUD only under the mmap lock.
//! 3. Each region's entry is made under its lock, as a PMD fault would.
//! 4. The PUD is inserted read-only.
//! 5. Each entry is checked again under its lock, its tags set again: an
//!    entry removed or written back between 3 and 4 (which unmapped the
//!    region before the PUD was there) would leave a PUD that no entry, or
//!    no dirty tag, stands for. If one is gone, the GiB is unmapped and the
//!    access faults again.
//! 6. For a write, the PUD is made writable, under the PUD lock, if no
//!    removal of mappings was counted since 5 began (one may have cleaned
//!    an entry, and the PUD there may be another fault's, read-only over
//!    clean entries). A removal after that removes the whole PUD (2.).

use kernel::prelude::*;

use super::{
    bump,
    fault::{Install, Span, Stop},
    BlockMapper, Blocks, Engine, Faulting, PAGE,
};
use crate::{
    logic::dax::{
        huge_range, plan, Entry, Fallback, Plan, Want, PMD_ORDER, PMD_PAGES, PUD_ORDER, PUD_PAGES,
    },
    sys::mm::{self, FaultCode, Tags, VmFault, FAULT_NOPAGE},
};

/// The blocks of a GiB, as the mapper answered.
struct GibBlocks {
    /// Frame of the first page (1 GiB aligned).
    frame: u64,
    /// Metadata behind the answer is not durable yet.
    unsynced: bool,
    /// Allocated or converted by the answer.
    new: bool,
    /// Some blocks are unwritten (fallocated): reads see zeros.
    unwritten: bool,
}

impl Engine {
    /// Serves a PUD fault on `target`, or says why it falls back to PMDs.
    /// Locking: the caller holds the mmap lock (core mm) and the file's
    /// invalidate lock shared; takes the region locks of the GiB one at a
    /// time.
    pub(super) fn fault_pud<M: BlockMapper>(
        &self,
        target: &Faulting<'_, M>,
        vmf: &VmFault,
    ) -> Result<FaultCode, Fallback> {
        let size_pages = target.size.div_ceil(PAGE);
        let first = huge_range(&vmf.window(), vmf.is_write(), size_pages, PUD_ORDER)?;
        let write = vmf.is_write() && vmf.is_shared();
        let entries = target.entries;
        let blocks = match self.gib_blocks(target, first, write) {
            // Unwritten blocks read as zeros: no 1 GiB zero page.
            Ok(blocks) if blocks.unwritten => return Err(Fallback::NoZeroChunk),
            Ok(blocks) => blocks,
            Err(Stop::Fallback(why)) => return Err(why),
            // A failed block, no room for a conversion's records: PMD faults
            // report what is true of their own 2 MiB.
            Err(Stop::Error(_)) => return Err(Fallback::Split),
        };
        let Some(frame) = self.frames.pud(blocks.frame) else {
            return Err(Fallback::Unaligned);
        };
        if write && vmf.is_sync() {
            if blocks.unsynced {
                if let Err(e) = target.mapper.persist(target.file) {
                    return Ok(mm::fault_code(e));
                }
            }
            if blocks.new || blocks.unsynced {
                bump(&self.counters.fault_sync);
            }
        }
        let tags = Tags {
            dirty: write,
            towrite: false,
        };
        // Before the first region lock (the protocol at the top).
        entries.mark_pud_mapped();
        for region in 0..PUD_PAGES / PMD_PAGES {
            let index = first + region * PMD_PAGES;
            let entry = Entry::pfn(blocks.frame + region * PMD_PAGES, true);
            match self.install_region(target, index, entry, tags) {
                Ok(()) => {}
                Err(Stop::Fallback(why)) => return Err(why),
                Err(Stop::Error(e)) => return Ok(mm::fault_code(e)),
            }
        }
        let code = vmf.insert_pud(frame);
        if code != FAULT_NOPAGE {
            return Ok(code);
        }
        let removals = entries.pud_removals();
        if !self.entries_stayed(target, first, blocks.frame, tags) {
            // Some went meanwhile: so goes the PUD; the access faults again.
            entries.unmap(first, PUD_PAGES, false);
            return Ok(FAULT_NOPAGE);
        }
        if write {
            // After the entries' last dirtying: sync finds the inode dirty.
            entries.mark_inode_dirty();
        }
        // Writable only now that the entries are dirty again, and only if
        // no removal of mappings came since (it may have cleaned them, and
        // the PUD there may be another fault's): else, or if a racing fault
        // put a page table there, the access faults again.
        if vmf.settle_pud(frame, write.then_some((entries, removals))) {
            bump(&self.counters.fault_pud);
        }
        Ok(FAULT_NOPAGE)
    }

    /// The GiB of `target` from page `first` as one run of written blocks
    /// on a GiB of the device; for a write, unwritten blocks (fallocated)
    /// are converted, 1 GiB at once. A hole falls back, read or written:
    /// there is no 1 GiB zero page, and a store into a sparse file must not
    /// allocate (and zero) a GiB, where a PMD fault allocates 2 MiB. So do
    /// shared blocks (a store copies them region by region). Locking: no
    /// region lock (the volume serializes its changes; the invalidate lock
    /// the caller holds keeps the blocks).
    fn gib_blocks<M: BlockMapper>(
        &self,
        target: &Faulting<'_, M>,
        first: u64,
        write: bool,
    ) -> Result<GibBlocks, Stop> {
        let run = self.gib_run(target, first, false)?;
        if write && run.unwritten {
            return self.gib_run(target, first, true);
        }
        Ok(run)
    }

    /// The mapper's answers for the GiB from page `first` (`write`: blocks
    /// are converted), which must continue each other from a GiB of the
    /// device: the mapper answers at most an extent's worth at a time.
    fn gib_run<M: BlockMapper>(
        &self,
        target: &Faulting<'_, M>,
        first: u64,
        write: bool,
    ) -> Result<GibBlocks, Stop> {
        let mut run = GibBlocks {
            frame: 0,
            unsynced: false,
            new: false,
            unwritten: false,
        };
        let mut done = 0;
        while done < PUD_PAGES {
            let at = first + done;
            let map = target
                .mapper
                .map(target.file, at, PUD_PAGES - done, write)?;
            if map.first != at || map.pages == 0 {
                return Err(Stop::Error(EIO));
            }
            if map.shared {
                return Err(Stop::Fallback(Fallback::Split));
            }
            let offset = match map.blocks {
                Blocks::Data(offset) => offset,
                Blocks::Unwritten(offset) if !write => {
                    run.unwritten = true;
                    offset
                }
                Blocks::Unwritten(_) | Blocks::Hole => {
                    return Err(Stop::Fallback(Fallback::NoZeroChunk))
                }
            };
            let frame = self.frame(offset);
            if done == 0 {
                if frame % PUD_PAGES != 0 {
                    return Err(Stop::Fallback(Fallback::Unaligned));
                }
                run.frame = frame;
            } else if frame != run.frame + done {
                return Err(Stop::Fallback(Fallback::Split));
            }
            run.unsynced |= map.unsynced;
            run.new |= map.new;
            done += map.pages.min(PUD_PAGES - done);
        }
        Ok(run)
    }

    /// Makes the 2 MiB entry at `index` say `entry` (tagged `tags`), as a
    /// PMD fault would, under the region's lock. 4 KiB entries in the
    /// region fall back.
    fn install_region<M: BlockMapper>(
        &self,
        target: &Faulting<'_, M>,
        index: u64,
        entry: Entry,
        tags: Tags,
    ) -> Result<(), Stop> {
        let entries = target.entries;
        let _region = self.region(entries, index).lock();
        loop {
            let span = Span {
                first: index,
                order: PMD_ORDER,
            };
            let found = self.entry_in(entries, span)?;
            match plan(found, index, entry.order(), Want::Blocks(entry.frame())) {
                Plan::Keep => {
                    let Some((kept, base)) = found else {
                        return Err(Stop::Error(EIO));
                    };
                    if !tags.dirty || entries.retag(base, kept, tags, true)? {
                        return Ok(());
                    }
                }
                Plan::Store | Plan::Replace => {
                    let new = Install {
                        entry,
                        shared: false,
                        tags,
                    };
                    if self.install(entries, found, index, new)? {
                        return Ok(());
                    }
                }
                Plan::Fallback => return Err(Stop::Fallback(Fallback::SmallEntries)),
            }
        }
    }

    /// Whether every 2 MiB entry of the GiB from `first` (mapping from
    /// `frame`) is still there, each looked at under its region lock with
    /// its `tags` set again.
    fn entries_stayed<M: BlockMapper>(
        &self,
        target: &Faulting<'_, M>,
        first: u64,
        frame: u64,
        tags: Tags,
    ) -> bool {
        let entries = target.entries;
        (0..PUD_PAGES / PMD_PAGES).all(|region| {
            let index = first + region * PMD_PAGES;
            let entry = Entry::pfn(frame + region * PMD_PAGES, true);
            let _region = self.region(entries, index).lock();
            matches!(entries.retag(index, entry, tags, true), Ok(true))
        })
    }
}
