// SPDX-License-Identifier: GPL-2.0

//! Removing a file range's entries and mappings before the filesystem
//! frees, shares, copies or zeroes its blocks (truncate, hole punching,
//! zeroing, reflink, writes over holes).

use kernel::prelude::*;

use super::Engine;
use crate::logic::dax::PMD_PAGES;
use crate::sys::mm::Entries;

impl Engine {
    /// Removes every entry and mapping of pages `first..=last` (whole
    /// 2 MiB entries that overlap), writing back dirty cache lines: before
    /// blocks are freed or shared, or after `write(2)` put new blocks
    /// under mapped zero pages. `private_from`: private copies (anonymous
    /// pages of `MAP_PRIVATE` mappings) of the pages from this one to
    /// `last` go too, as truncation needs past the new end of file; below
    /// it they are kept (core mm's `truncate_pagecache` keeps them too).
    /// Locking: takes each entry's region lock in turn; the caller holds
    /// the file's invalidate lock exclusively (the range stays unmapped
    /// until it lets go; `write(2)`, which does not, calls
    /// [`Self::invalidate_written`]).
    pub(crate) fn invalidate(
        &self,
        entries: &Entries<'_>,
        first: u64,
        last: u64,
        private_from: Option<u64>,
    ) -> Result {
        self.evict_entries(entries, first, last, true)?;
        let pages = |from: u64| last.wrapping_sub(from).wrapping_add(1);
        entries.unmap(first, pages(first), false);
        if let Some(from) = private_from.filter(|&from| from <= last) {
            entries.unmap(from, pages(from), true);
        }
        Ok(())
    }

    /// [`Self::invalidate`] for `write(2)`, which allocated blocks where
    /// zero pages may be mapped and holds no invalidate lock: region by
    /// region, the entries and the mappings go under the region's lock, so
    /// that each removal either ends before a PUD fault on the GiB takes
    /// that lock, or sees the file marked PUD-mapped and covers the whole
    /// GiB (rust/dax/pud.rs).
    pub(crate) fn invalidate_written(
        &self,
        entries: &Entries<'_>,
        first: u64,
        last: u64,
    ) -> Result {
        let mut region = first - first % PMD_PAGES;
        while region <= last {
            let from = region.max(first);
            let to = (region + PMD_PAGES - 1).min(last);
            {
                let _region = self.region(entries, region).lock();
                self.evict_entries(entries, from, to, false)?;
                entries.unmap(from, to - from + 1, false);
            }
            let Some(next) = region.checked_add(PMD_PAGES) else {
                break;
            };
            region = next;
        }
        Ok(())
    }

    /// Removes every entry of pages `first..=last`, all inside one 2 MiB
    /// region whose lock the caller holds (a copy-on-write fault that
    /// copies the region), writing back dirty cache lines. The caller
    /// unmaps the pages.
    pub(super) fn evict_held(&self, entries: &Entries<'_>, first: u64, last: u64) -> Result {
        self.evict_entries(entries, first, last, false)
    }

    /// The entries of pages `first..=last` evicted, each under its region
    /// lock (taken here if `lock`, else held by the caller).
    fn evict_entries(&self, entries: &Entries<'_>, first: u64, last: u64, lock: bool) -> Result {
        let mut index = first;
        while index <= last {
            let Some((entry, base)) = entries.first_in(index, last)? else {
                break;
            };
            {
                let _region = lock.then(|| self.region(entries, base).lock());
                if let Some((current, at)) = self.settled(entries, base)? {
                    if at == base && !self.evict(entries, current, base)? {
                        continue;
                    }
                }
            }
            index = base.saturating_add(entry.pages());
        }
        Ok(())
    }
}
