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

use super::{attributes, inode_info, Info, OxdaxFs, BLOCK};
use crate::{
    dax::{BlockMap, BlockMapper, Blocks, Faulting},
    logic::{format::BLOCK_SIZE, fs::MapKind, params::FaultEngine},
    sys::{
        self,
        errno::eopnotsupp,
        fs::{mmap::IomapExtent, Inode},
        memory,
        mm::{FaultCode, InvalidateGuard, VmFault, FAULT_SIGBUS},
    },
};

// The engine maps pages; the volume maps blocks: one and the same.
const _: () = assert!(BLOCK_SIZE == 4096);

impl BlockMapper for Info {
    type File = Inode<OxdaxFs>;

    fn map(&self, inode: &Inode<OxdaxFs>, first: u64, pages: u64, write: bool) -> Result<BlockMap> {
        let ino = inode.ino();
        let (mapping, record) = self.call(|v| {
            let mapping = if write {
                v.map_write(ino, first, pages)?
            } else {
                v.map_data(ino, first, pages)?
            };
            // New blocks show in stat(2)'s block count.
            let record = if mapping.new { v.inode(ino).ok() } else { None };
            Ok((mapping, record))
        })?;
        if let Some(record) = record {
            // Only the block count: the size is the VFS's to set under
            // i_rwsem (a fault's older record must not undo a write's
            // newer size, which truncation compares against).
            inode.set_allocated(attributes(&record).allocated);
        }
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

    fn persist(&self, _inode: &Inode<OxdaxFs>) -> Result {
        Ok(())
    }
}

/// `mmap`: any mapping; `MAP_SYNC` only where CPU stores that left the
/// caches are persistent (a synchronous DAX device).
pub(super) fn mmap(inode: &Inode<OxdaxFs>, sync: bool) -> Result {
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
pub(super) fn fault(inode: &Inode<OxdaxFs>, vmf: &VmFault, order: u32, present: bool) -> FaultCode {
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
        return sys::fs::mmap::iomap_fault::<OxdaxFs>(vmf, order);
    }
    let target = Faulting {
        mapper: info,
        file: inode,
        entries: &entries,
        size: inode.size(),
    };
    info.engine.fault(&target, vmf, order, present)
}

/// The volume's answer for the kernel's fault path (`fault_engine=iomap`).
pub(super) fn iomap(
    inode: &Inode<OxdaxFs>,
    first: u64,
    pages: u64,
    write: bool,
) -> Result<IomapExtent> {
    let info = inode_info(inode)?;
    let map = info.map(inode, first, pages, write)?;
    Ok(IomapExtent {
        first: map.first,
        pages: map.pages,
        device: match map.blocks {
            Blocks::Hole => None,
            Blocks::Unwritten(offset) | Blocks::Data(offset) => Some(offset),
        },
        unwritten: matches!(map.blocks, Blocks::Unwritten(_)),
        new: map.new,
        shared: map.shared,
        copied: map.copied,
    })
}

/// Writes back what was stored through mappings of pages `first..=last`.
pub(super) fn writeback(inode: &Inode<OxdaxFs>, first: u64, last: u64) -> Result {
    let info = inode_info(inode)?;
    let Some(entries) = inode.entries() else {
        return Ok(());
    };
    let Some(_alive) = info.dax.read_lock() else {
        return Err(EIO);
    };
    info.engine.writeback(&entries, first, last)
}

/// Pages of bytes `start..end` (at least one page).
fn pages(start: u64, end: u64) -> (u64, u64) {
    let first = start / BLOCK;
    let last = (end.max(start + 1) - 1) / BLOCK;
    (first, last)
}

/// Removes every mapping of bytes `start..end` of `inode` (after `write`
/// allocated or copied blocks there: zero pages and old copies must go).
pub(super) fn remove_mappings(inode: &Inode<OxdaxFs>, start: u64, end: u64) -> Result {
    let info = inode_info(inode)?;
    let Some(entries) = inode.entries() else {
        return Ok(());
    };
    let (first, last) = pages(start, end);
    info.engine.invalidate(&entries, first, last, false)
}

/// Keeps faults off `inode` while the blocks of bytes `start..end` (to
/// the end of file with `end == u64::MAX`) are freed or shared: takes the
/// invalidate lock exclusively, waits for pinned pages of the range, and
/// removes its mappings (`even_cows`: private copies too, as truncation
/// needs). Holds faults off until the guard is dropped.
pub(super) fn quiesce(
    inode: &Inode<OxdaxFs>,
    start: u64,
    end: u64,
    even_cows: bool,
) -> Result<InvalidateGuard> {
    let guard = inode.invalidate_lock(true).ok_or(EIO)?;
    quiesce_locked(inode, start, end, even_cows)?;
    Ok(guard)
}

/// [`quiesce`] for a caller that holds the invalidate lock exclusively.
pub(super) fn quiesce_locked(
    inode: &Inode<OxdaxFs>,
    start: u64,
    end: u64,
    even_cows: bool,
) -> Result {
    let info = inode_info(inode)?;
    let Some(entries) = inode.entries() else {
        return Ok(());
    };
    let (first, last) = if end == u64::MAX {
        (start / BLOCK, u64::MAX >> 12)
    } else {
        pages(start, end)
    };
    entries.wait_unpinned(first, last)?;
    let Some(_alive) = info.dax.read_lock() else {
        return Err(EIO);
    };
    info.engine.invalidate(&entries, first, last, even_cows)
}
