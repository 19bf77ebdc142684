// SPDX-License-Identifier: GPL-2.0

//! Mappings of oxdax files: the filesystem's side of the fault engine
//! ([`crate::dax`]). It answers block-mapping questions from the volume
//! and keeps mappings away from blocks while they are freed or shared.
//!
//! Locking (Documentation/oxdax/fault-engine.rst): faults take the
//! invalidate lock shared; truncation, hole punching, zeroing and reflink
//! take it exclusively, wait for pinned pages, and remove the mappings of
//! the range before the volume changes it. `write(2)` holds i_rwsem only:
//! it removes the mappings of blocks it allocated or copied afterwards,
//! under the engine's region locks.

use kernel::prelude::*;

use super::info::{attributes, inode_info, Info, OxdaxFs, BLOCK};
use super::mutex_stats::Use;
use crate::{
    dax::{BlockMap, BlockMapper, Blocks, Faulting},
    logic::{
        format::BLOCK_SIZE,
        fs::{MapKind, SharedWrite},
        params::FaultEngine,
    },
    sys::{
        self,
        errno::eopnotsupp,
        fs::{Inode, MmapOperations},
        iomap::{IomapExtent, IomapOperations},
        memory,
        mm::{Entries, FaultCode, InvalidateGuard, InvalidateTwo, VmFault, FAULT_SIGBUS},
    },
};

// The engine maps pages; the volume maps blocks: one and the same.
const _: () = assert!(BLOCK_SIZE == 4096);

impl Info {
    /// The volume's answer for pages `first..first + pages` of `inode`, as
    /// the fault engines want it (`shared` write answers copy nothing).
    fn block_map(
        &self,
        inode: &Inode<OxdaxFs>,
        first: u64,
        pages: u64,
        write: Option<SharedWrite>,
    ) -> Result<BlockMap> {
        let ino = inode.ino();
        // A read fault only looks up (`call`); a write fault may change
        // the file's blocks, even where they are already writable
        // (`call_mut`; asking `call` first cost a second hand-off of the
        // lock whenever they were not: concurrency.rst, stage 2).
        let mapping = match write {
            None => self.call(Use::Fault, |v| v.map_data(ino, first, pages))?,
            Some(shared) => self.call_mut(Use::Fault, |v| {
                let mapping = v.map_write(ino, first, pages, shared)?;
                // New blocks show in stat(2)'s block count, with the
                // volume lock held (`info::refresh`). Only the block
                // count: the size is the VFS's to set under i_rwsem (a
                // fault's older record must not undo a write's newer size,
                // which truncation compares against).
                if mapping.new {
                    if let Ok(record) = v.inode(ino) {
                        inode.set_allocated(attributes(&record).allocated);
                    }
                }
                Ok(mapping)
            })?,
        };
        Ok(BlockMap {
            first: mapping.file_block,
            pages: mapping.len,
            blocks: match mapping.kind {
                MapKind::Hole => Blocks::Hole,
                MapKind::Unwritten => Blocks::Unwritten(mapping.physical * BLOCK),
                MapKind::Data => Blocks::Data(mapping.physical * BLOCK),
            },
            new: mapping.new,
            shared: mapping.shared,
            copied: mapping.copied,
            // Every volume transaction is durable when it returns.
            unsynced: false,
        })
    }
}

impl BlockMapper for Info {
    type File = Inode<OxdaxFs>;

    fn map(&self, inode: &Inode<OxdaxFs>, first: u64, pages: u64, write: bool) -> Result<BlockMap> {
        self.block_map(inode, first, pages, write.then_some(SharedWrite::Report))
    }

    fn unshare(&self, inode: &Inode<OxdaxFs>, first: u64, pages: u64) -> Result<BlockMap> {
        self.block_map(inode, first, pages, Some(SharedWrite::Copy))
    }

    fn persist(&self, _inode: &Inode<OxdaxFs>) -> Result {
        Ok(())
    }

    fn cow_range(&self, inode: &Inode<OxdaxFs>, first: u64, pages: u64) -> Result<(u64, u64)> {
        let ino = inode.ino();
        self.call(Use::Fault, |v| v.cow_range(ino, first, pages))
    }

    fn copy_shared(&self, inode: &Inode<OxdaxFs>, first: u64, pages: u64) -> Result {
        let ino = inode.ino();
        // What cannot be copied (no room for the region, failed memory)
        // stays shared: the fault's own pages are copied next, or fail
        // with their own error.
        self.call_mut(Use::Fault, |v| {
            let _ = v.copy_shared(ino, first, pages);
            let record = v.inode(ino)?;
            inode.set_allocated(attributes(&record).allocated);
            Ok(())
        })
    }
}

#[vtable]
impl MmapOperations for OxdaxFs {
    /// `mmap`: any mapping; `MAP_SYNC` only where CPU stores that left the
    /// caches are persistent (a synchronous DAX device).
    fn mmap(inode: &Inode<Self>, sync: bool) -> Result {
        let info = inode_info(inode)?;
        if sync && !info.dax.is_synchronous() {
            if memory::log_ratelimit() {
                pr_info!(
                    "{}: MAP_SYNC refused: the device is not synchronous\n",
                    info.id()
                );
            }
            return Err(eopnotsupp());
        }
        Ok(())
    }

    /// A page fault on a mapping of `inode`.
    fn fault(inode: &Inode<Self>, vmf: &VmFault, order: u32, present: bool) -> FaultCode {
        let (Ok(info), Some(entries)) = (inode_info(inode), inode.entries()) else {
            return FAULT_SIGBUS;
        };
        let dirtying = vmf.is_write() && vmf.is_shared();
        // As ext4 and xfs: a write fault is a write (freeze protection, times).
        let _writing = dirtying.then(|| vmf.start_write());
        if dirtying {
            vmf.update_time();
        }
        let Some(_invalidate) = inode.invalidate_lock(false) else {
            return FAULT_SIGBUS;
        };
        let Some(_alive) = info.dax.read_lock() else {
            return FAULT_SIGBUS;
        };
        if info.fault_engine == FaultEngine::Iomap {
            // The kernel's path, with the same block-mapping answers: a
            // reference to compare the engine with. Past the end of file and
            // pfn_mkwrite are its business too.
            return sys::iomap::dax_iomap_fault::<OxdaxFs>(vmf, order);
        }
        let target = Faulting {
            mapper: info,
            file: inode,
            entries: &entries,
            size: inode.size(),
        };
        info.engine.fault(&target, vmf, order, present)
    }

    /// Writes back what was stored through mappings of pages `first..=last`.
    fn writeback(inode: &Inode<Self>, first: u64, last: u64) -> Result {
        let info = inode_info(inode)?;
        let Some(entries) = inode.entries() else {
            return Ok(());
        };
        let Some(_alive) = info.dax.read_lock() else {
            return Err(EIO);
        };
        if info.fault_engine == FaultEngine::Iomap {
            // fs/dax.c's faults take its entry locks, not the engine's
            // region locks: its writeback is the one that excludes them.
            return sys::iomap::dax_writeback(inode, &info.dax, first, last);
        }
        info.engine.writeback(&entries, first, last)
    }
}

impl IomapOperations for OxdaxFs {
    /// The volume's answer for the kernel's fault path (`fault_engine=iomap`).
    fn iomap_begin(
        inode: &Inode<Self>,
        first: u64,
        pages: u64,
        write: bool,
    ) -> Result<IomapExtent> {
        crate::dax::iomap::begin(
            inode_info(inode)?,
            inode,
            inode.entries().as_ref(),
            first,
            pages,
            write,
        )
    }
}

/// Pages of bytes `start..end` (at least one page); to the last page a
/// file can have with `end == u64::MAX`.
fn pages(start: u64, end: u64) -> (u64, u64) {
    let first = start / BLOCK;
    if end == u64::MAX {
        return (first, u64::MAX / BLOCK);
    }
    let last = (end.max(start + 1) - 1) / BLOCK;
    (first, last)
}

/// Removes every mapping of bytes `start..end` of `inode` (after `write`
/// allocated blocks there: zero pages mapped over the hole must go).
pub(super) fn remove_mappings(inode: &Inode<OxdaxFs>, start: u64, end: u64) -> Result {
    let info = inode_info(inode)?;
    let Some(entries) = inode.entries() else {
        return Ok(());
    };
    let (first, last) = pages(start, end);
    info.engine.invalidate_written(&entries, first, last)
}

/// Bytes of a file whose blocks are about to be freed, shared, copied or
/// zeroed: no page may stay mapped or pinned there.
#[derive(Clone, Copy)]
pub(super) struct Quiet {
    /// First byte.
    pub(super) start: u64,
    /// End (exclusive; `u64::MAX`: to the end of any file).
    pub(super) end: u64,
    /// Private copies (`MAP_PRIVATE` pages written by their process) of
    /// pages from this byte on go too (truncation, past the new end of
    /// file); below it they stay theirs.
    pub(super) private_from: Option<u64>,
}

impl Quiet {
    /// Bytes `start..end`; private copies stay.
    pub(super) fn range(start: u64, end: u64) -> Self {
        Self {
            start,
            end,
            private_from: None,
        }
    }

    /// Truncation to `size`: the page holding the new end of file (its
    /// tail is zeroed, perhaps in a new copy of a shared block) and all
    /// after; private copies from the first page wholly past the end.
    pub(super) fn truncation(size: u64) -> Self {
        Self {
            start: size - size % BLOCK,
            end: u64::MAX,
            private_from: Some(size.next_multiple_of(BLOCK)),
        }
    }

    /// Growth of a file of `size` bytes: the page holding the end of file,
    /// whose tail past the end is zeroed (none if `size` is block aligned).
    pub(super) fn growth(size: u64) -> Option<Self> {
        (size % BLOCK != 0).then(|| Self::range(size, size + 1))
    }

    /// The smallest range covering `self` and `other`.
    pub(super) fn union(self, other: Option<Self>) -> Self {
        let Some(other) = other else {
            return self;
        };
        Self {
            start: self.start.min(other.start),
            end: self.end.max(other.end),
            private_from: match (self.private_from, other.private_from) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
        }
    }
}

/// Keeps faults off `inode` while the blocks of `range` are freed, shared,
/// copied or zeroed: takes the invalidate lock exclusively, waits for
/// pinned pages of the range, and removes its entries and mappings. Holds
/// faults off until the guard is dropped.
pub(super) fn quiesce(inode: &Inode<OxdaxFs>, range: Quiet) -> Result<InvalidateGuard<'_>> {
    let guard = inode.invalidate_lock(true).ok_or(EIO)?;
    quiesce_locked(inode, range)?;
    Ok(guard)
}

/// [`quiesce`] for a caller that holds the invalidate lock exclusively.
pub(super) fn quiesce_locked(inode: &Inode<OxdaxFs>, range: Quiet) -> Result {
    let Some(entries) = inode.entries() else {
        return Ok(());
    };
    let (first, last) = pages(range.start, range.end);
    entries.wait_unpinned(first, last)?;
    invalidate(inode, &entries, range)
}

/// [`quiesce_locked`] that does not wait: `false` (nothing removed) if a
/// page of the range is pinned. For background work, which must not wait
/// on a pin whoever holds it (RDMA may hold one for good).
pub(super) fn quiesce_unless_pinned(inode: &Inode<OxdaxFs>, range: Quiet) -> Result<bool> {
    let Some(entries) = inode.entries() else {
        return Ok(true);
    };
    let (first, last) = pages(range.start, range.end);
    if entries.pinned_page(first, last).is_some() {
        return Ok(false);
    }
    invalidate(inode, &entries, range)?;
    Ok(true)
}

/// Removes the entries and mappings of `range` of `inode`.
fn invalidate(inode: &Inode<OxdaxFs>, entries: &Entries<'_>, range: Quiet) -> Result {
    let info = inode_info(inode)?;
    let (first, last) = pages(range.start, range.end);
    let private_from = range.private_from.map(|at| at / BLOCK);
    let Some(_alive) = info.dax.read_lock() else {
        return Err(EIO);
    };
    info.engine.invalidate(entries, first, last, private_from)
}

/// [`quiesce`] for two ranges at once (reflink's destination and source,
/// perhaps in one file): both invalidate locks exclusively. A page pinned
/// in either range is waited for with neither lock held, since whoever
/// holds the pin may need to fault on either file to let go of it; then
/// both ranges are looked at again, so no fault got in unseen.
pub(super) fn quiesce_two<'a>(
    (a, a_range): (&'a Inode<OxdaxFs>, Quiet),
    (b, b_range): (&'a Inode<OxdaxFs>, Quiet),
) -> Result<InvalidateTwo<'a>> {
    let (Some(a_entries), Some(b_entries)) = (a.entries(), b.entries()) else {
        return Err(EIO);
    };
    loop {
        let guard = a.invalidate_lock_two(b);
        let busy = [(&a_entries, a_range), (&b_entries, b_range)]
            .into_iter()
            .find_map(|(entries, range)| {
                let (first, last) = pages(range.start, range.end);
                entries.pinned_page(first, last)
            });
        match busy {
            Some(page) => {
                drop(guard);
                page.wait_unpinned()?;
            }
            None => {
                invalidate(a, &a_entries, a_range)?;
                invalidate(b, &b_entries, b_range)?;
                return Ok(guard);
            }
        }
    }
}
