// SPDX-License-Identifier: GPL-2.0

//! Writeback of what was stored through mappings (`fsync`, `msync`,
//! `sync`): dirty entries are tagged `TOWRITE`, write-protected, their
//! cache lines written back and fenced, then marked clean.
//!
//! Entries are taken a 2 MiB region at a time, under that region's lock,
//! and each run of consecutive tagged entries loses its page-table entries
//! in one removal: a removal walks every mapping of the file and flushes
//! TLBs, and one per 4 KiB entry was what made fsync of many dirty pages
//! slower than on ext4 and xfs (Documentation/oxdax/benchmarks.rst).

use kernel::prelude::*;

use super::{bump, Engine};
use crate::{
    logic::dax::{Entry, PMD_PAGES},
    sys::{
        memory,
        mm::{Entries, Tags},
    },
};

/// Fences the write-backs issued before it is dropped (on every way out).
struct Fence;

impl Drop for Fence {
    fn drop(&mut self) {
        memory::fence();
    }
}

/// The pages `first..=last` of an entry found at `index`.
fn extent(entry: Entry, index: u64) -> (u64, u64) {
    let first = index & !(entry.pages() - 1);
    (first, first.saturating_add(entry.pages() - 1))
}

/// Calls `visit` with the first and last page of each `TOWRITE` entry of
/// `first..=last`; `visit` returns the last page it dealt with, and the
/// walk goes on after it (it ends at the last page there is: a wrap would
/// restart it).
fn for_each_tagged(
    entries: &Entries<'_>,
    first: u64,
    last: u64,
    mut visit: impl FnMut(u64, u64) -> Result<u64>,
) -> Result {
    let mut index = first;
    while index <= last {
        let Some(tagged) = entries.next_towrite(&mut index, last)? else {
            break;
        };
        let (base, entry_last) = extent(tagged, index);
        let Some(next) = visit(base, entry_last)?.checked_add(1) else {
            break;
        };
        index = next;
    }
    Ok(())
}

impl Engine {
    /// Writes back what was written through mappings of pages
    /// `first..=last`: for every dirty entry, its mappings are removed (so
    /// the next store faults and dirties it again), then its cache lines
    /// are written back and it is marked clean. Locking: takes each 2 MiB
    /// region's lock in turn; needs no invalidate lock (reflink calls it
    /// with the lock held exclusively).
    pub(crate) fn writeback(&self, entries: &Entries<'_>, first: u64, last: u64) -> Result {
        entries.tag_for_writeback(first, last);
        // The cache-line write-backs are ordered and complete only after a
        // fence (`pmem_wmb`), which must come before writeback reports
        // success to fsync or msync.
        let _fence = Fence;
        for_each_tagged(entries, first, last, |base, _| {
            let region_last = (base | (PMD_PAGES - 1)).min(last);
            let _region = self.region(entries, base).lock();
            self.writeback_region(entries, base, region_last)?;
            Ok(region_last)
        })
    }

    /// [`Engine::writeback`] of the tagged entries in `first..=last`, one
    /// run of consecutive entries at a time. Locking: the caller holds the
    /// region lock of these pages (all in one 2 MiB region), so no fault
    /// maps a page again between the removal of its run's mappings and
    /// the entry being marked clean.
    fn writeback_region(&self, entries: &Entries<'_>, first: u64, last: u64) -> Result {
        for_each_tagged(entries, first, last, |run_first, mut run_last| {
            while let Some(mut next) = run_last.checked_add(1).filter(|&next| next <= last) {
                let start = next;
                match entries.next_towrite(&mut next, last)? {
                    Some(entry) if next == start => run_last = extent(entry, next).1,
                    _ => break,
                }
            }
            // Entries tagged after this point (another fsync) inside the
            // run are unmapped too: the region lock keeps faults out.
            entries.unmap(
                run_first,
                run_last.saturating_sub(run_first).saturating_add(1),
                false,
            );
            self.clean_run(entries, run_first, run_last)?;
            Ok(run_last)
        })
    }

    /// Writes back and marks clean every tagged entry of a run whose
    /// mappings were just removed. Locking: the caller holds the run's
    /// region lock.
    fn clean_run(&self, entries: &Entries<'_>, first: u64, last: u64) -> Result {
        let clean = Tags {
            dirty: true,
            towrite: true,
        };
        for_each_tagged(entries, first, last, |base, entry_last| {
            if let Some((entry, at)) = self.settled(entries, base)? {
                if at == base {
                    self.flush(entry);
                    if entries.retag(base, entry, clean, false)? {
                        bump(&self.counters.writeback_entries);
                    }
                }
            }
            Ok(entry_last)
        })
    }
}
