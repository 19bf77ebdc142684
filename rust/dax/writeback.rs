// SPDX-License-Identifier: GPL-2.0

//! Writeback of what was stored through mappings (`fsync`, `msync`,
//! `sync`): dirty entries are tagged `TOWRITE`, write-protected, their
//! cache lines written back and fenced, then marked clean.

use kernel::prelude::*;

use super::{bump, Engine};
use crate::sys::{
    memory,
    mm::{Entries, Tags},
};

/// Fences the write-backs issued before it is dropped (on every way out).
struct Fence;

impl Drop for Fence {
    fn drop(&mut self) {
        memory::fence();
    }
}

impl Engine {
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
}
