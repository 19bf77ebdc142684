// SPDX-License-Identifier: GPL-2.0

//! oxdax file data through `read(2)`, `write(2)` and `fsync`
//! ([`FileOperations`]): data moves directly between user buffers and
//! persistent memory (no page cache), block by block as the volume maps
//! them; writes allocate, convert or copy (shared blocks) first.
//!
//! Locking: i_rwsem is held (shared for reads); the copies run inside a
//! DAX read section with no volume lock held; a write into shared blocks
//! holds faults off them (the invalidate lock) while they are copied.

use core::sync::atomic::Ordering;

use kernel::prelude::*;

use super::mutex_stats::Use;
use super::{
    info::{inode_info, refresh, OxdaxFs, BLOCK},
    mmap::{self, Quiet},
};
use crate::{
    logic::{
        format::inode::Timestamp,
        fs::{MapKind, Mapping, SharedWrite},
    },
    sys::{
        errno,
        fs::{FileOperations, Inode, Kiocb, MmapOperations},
        iov::IovIter,
        memory,
    },
};

#[vtable]
impl FileOperations for OxdaxFs {
    fn read(iocb: &mut Kiocb<'_, Self>, iter: &mut IovIter) -> Result<usize> {
        let inode = iocb.inode();
        let info = inode_info(inode)?;
        let ino = inode.ino();
        let mut pos = iocb.pos();
        let size = inode.size();
        if pos >= size {
            return Ok(0);
        }
        let end = size.min(pos.saturating_add(iter.count() as u64));
        // The mapping stays valid while this read section lasts: a removed
        // device waits for it before its memory is unmapped.
        let Some(memory) = info.engine.memory().access() else {
            return Err(EIO);
        };
        let mut done = 0usize;
        let mut failure = None;
        while pos < end {
            let (first, count) = blocks(pos, end);
            let mapping = match info.call(Use::Read, |v| v.map_data(ino, first, count)) {
                Ok(mapping) => mapping,
                Err(e) => {
                    failure = Some(io_errno(e));
                    break;
                }
            };
            let Some((len, device)) = span(&mapping, pos, end) else {
                pr_err!(
                    "{}: inode {}: bad mapping for block {}\n",
                    info.id(),
                    ino,
                    first
                );
                failure = Some(EIO);
                break;
            };
            let len = len as usize;
            let copied = match mapping.kind {
                MapKind::Hole | MapKind::Unwritten => iter.zero(len),
                MapKind::Data => memory.copy_to_iter(device, len, iter)?,
            };
            pos += copied as u64;
            done += copied;
            if copied < len {
                // A fault on the user buffer, or poisoned media.
                failure = Some(EFAULT);
                break;
            }
        }
        iocb.set_pos(pos);
        match failure {
            Some(e) if done == 0 => Err(e),
            _ => Ok(done),
        }
    }

    fn write(iocb: &mut Kiocb<'_, Self>, iter: &mut IovIter) -> Result<usize> {
        let inode = iocb.inode();
        let info = inode_info(inode)?;
        let ino = inode.ino();
        let start = iocb.pos();
        let end = start.checked_add(iter.count() as u64).ok_or(EFBIG)?;
        if end == start {
            return Ok(0);
        }
        let now: Timestamp = inode.now();
        let size = inode.size();
        if start > size {
            // What lies past the old end of file is not the file's: the
            // gap reads as zeros once the file grows over it.
            let _faults_off = Quiet::growth(size)
                .map(|range| mmap::quiesce(inode, range))
                .transpose()?;
            info.call_mut(Use::Write, |v| v.zero_past_eof(ino, start))?;
        }
        let Some(memory) = info.engine.memory().access() else {
            return Err(EIO);
        };
        let mut pos = start;
        let mut failure = None;
        // Whether the volume changed the file's blocks (and so its block
        // count), which the VFS inode must then be given.
        let mut blocks_changed = false;
        while pos < end {
            let (first, count) = blocks(pos, end);
            // Allocates (zeroed, durable) or converts blocks as needed.
            let mapping = match map_write(inode, first, count) {
                Ok((mapping, changed)) => {
                    blocks_changed |= changed;
                    mapping
                }
                Err(e)
                    if e == errno::ehwpoison()
                        && pos <= first * BLOCK
                        && end >= (first + 1) * BLOCK =>
                {
                    // The whole block is overwritten: the file gets a new
                    // one and the failed one (freed, remembered as
                    // poisoned) is never used again.
                    if let Err(e) = drop_poisoned_block(inode, first, now) {
                        failure = Some(io_errno(e));
                        break;
                    }
                    continue;
                }
                Err(e) => {
                    // ENOSPC mid-write: what was written is kept.
                    failure = Some(io_errno(e));
                    break;
                }
            };
            if mapping.new && !mapping.copied {
                // Zero pages mapped over the old hole must not stay.
                let start = mapping.file_block * BLOCK;
                if let Err(e) = mmap::remove_mappings(inode, start, start + mapping.len * BLOCK) {
                    failure = Some(e);
                    break;
                }
            }
            let span = span(&mapping, pos, end)
                .filter(|_| mapping.kind == MapKind::Data && !mapping.shared);
            let Some((len, device)) = span else {
                pr_err!(
                    "{}: inode {}: bad write mapping for block {}\n",
                    info.id(),
                    ino,
                    first
                );
                failure = Some(EIO);
                break;
            };
            let len = len as usize;
            let copied = memory.copy_from_iter(device, len, iter)?;
            pos += copied as u64;
            if copied < len {
                failure = Some(EFAULT);
                break;
            }
        }
        // The data must be durable before the size that exposes it.
        memory::fence();
        if pos > start && (blocks_changed || !times_and_size_hold(inode, pos, now)) {
            // Copied back with the volume lock held: the VFS inode then
            // follows the records in the order they were committed (a
            // fault's `update_time` may commit between two writes).
            info.call_mut(Use::Write, |v| {
                let record = v.write_done(ino, pos, now)?;
                refresh(v, inode, &record);
                Ok(())
            })?;
        }
        iocb.set_pos(pos);
        match failure {
            Some(e) if pos == start => Err(e),
            _ => Ok((pos - start) as usize),
        }
    }

    fn fsync(inode: &Inode<Self>, first: u64, last: u64) -> Result {
        // write(2) copies bypass the caches and fence, and metadata is
        // durable per operation: what remains is what was stored through
        // mappings. (Not sync_fs: it waits for compaction, which may want
        // this file's locks.)
        Self::writeback(inode, first, last)?;
        inode_info(inode)?.durable()
    }

    /// A file opened for writing is closed: the chunks kept for its 2 MiB
    /// regions are anyone's again, and regions it left misplaced are
    /// placed whole in the background (Documentation/oxdax/allocator.rst).
    fn release(inode: &Inode<Self>) {
        let Ok(info) = inode_info(inode) else {
            return;
        };
        // The calls that kept chunks for this file, or left regions
        // misplaced, happened before this close and published `true`
        // (Release, in `Info::call_mut`); a later `false` means the volume
        // keeps nothing for any file and nothing waits. So a create and
        // close without a write take no volume call here.
        if !info.close_has_work.load(Ordering::Acquire) {
            return;
        }
        let ino = inode.ino();
        // Nothing to log: memory only, it cannot fail but for a device
        // that is gone, where nothing is allocated any more.
        let misplaced = info.call_mut(Use::Write, |v| {
            v.release(ino);
            Ok(v.has_misplaced())
        });
        if misplaced == Ok(true) {
            info.compact_soon();
        }
    }
}

/// Takes block `block` (with failed memory) out of `inode`'s file, as a
/// punched hole: its mappings go first.
fn drop_poisoned_block(inode: &Inode<OxdaxFs>, block: u64, now: Timestamp) -> Result {
    let info = inode_info(inode)?;
    let ino = inode.ino();
    let start = block * BLOCK;
    let _faults_off = mmap::quiesce(inode, Quiet::range(start, start + BLOCK))?;
    info.call_mut(Use::Write, |v| {
        let record = v.punch_hole(ino, start, BLOCK, now)?;
        refresh(v, inode, &record);
        Ok(())
    })
}

/// Blocks `first..first + count` of `inode`, writable in place for
/// `write(2)`, and whether the volume changed the file's blocks to give
/// them (allocated, converted or copied). Shared blocks are copied first,
/// with faults held off and the old blocks' mappings and pins gone: they
/// belong to their other owners once the copy commits.
fn map_write(inode: &Inode<OxdaxFs>, first: u64, count: u64) -> Result<(Mapping, bool)> {
    let info = inode_info(inode)?;
    let ino = inode.ino();
    // `call_mut` at once, even where the blocks are there already: asking
    // `call` first costs a second hand-off of the lock whenever they are
    // not (Documentation/oxdax/concurrency.rst, stage 2).
    let mapping = info.call_mut(Use::Write, |v| {
        v.map_write(ino, first, count, SharedWrite::Report)
    })?;
    if !mapping.shared {
        return Ok((mapping, mapping.new));
    }
    // Copied by whole 2 MiB regions where the file covers them, so that
    // the copy maps with PMDs (Documentation/oxdax/allocator.rst).
    let (start, len) = info.call(Use::Write, |v| {
        v.cow_range(ino, mapping.file_block, mapping.len)
    })?;
    let own = mapping.file_block * BLOCK;
    let _faults_off = inode.invalidate_lock(true).ok_or(EIO)?;
    let wide = Quiet::range(start * BLOCK, (start + len) * BLOCK);
    // A page pinned around the write (not in it) is not waited for: the
    // region is then not widened.
    if len > mapping.len && mmap::quiesce_unless_pinned(inode, wide)? {
        // Whatever could not be copied around the write (no room for a
        // whole region, failed memory in it) stays shared; the write's
        // own blocks are copied next, or that fails with its own error.
        let _ = info.call_mut(Use::Write, |v| v.copy_shared(ino, start, len));
    } else {
        mmap::quiesce_locked(inode, Quiet::range(own, own + mapping.len * BLOCK))?;
    }
    let copy = info.call_mut(Use::Write, |v| {
        v.map_write(ino, mapping.file_block, mapping.len, SharedWrite::Copy)
    })?;
    Ok((copy, true))
}

/// Whether a write up to byte `end` at time `now` that allocated nothing
/// leaves `inode`'s record as it is: it does not grow the file, and the
/// modification and change times are already `now` (the clock is coarse:
/// most writes of a burst find them so). Then the volume is not called:
/// its answer would be the same (`Volume::write_done`). Under i_rwsem
/// the VFS inode's size is the record's (only callers holding i_rwsem set
/// it). Its clock-read times may lag the record's but are never later:
/// `update_time`, the one path that commits times without i_rwsem, reads
/// the clock and copies the times back with the volume lock held, so a
/// record committed after another i_rwsem holder's (setattr, fallocate, a
/// link change) carries a time at least as late, whenever that holder
/// copies its own back. A ctime equal to now in the VFS inode is then now
/// in the record, and so is the mtime set with it.
fn times_and_size_hold(inode: &Inode<OxdaxFs>, end: u64, now: Timestamp) -> bool {
    let (_, mtime, ctime) = inode.times();
    end <= inode.size() && mtime == now && ctime == now
}

/// The block range a transfer of `pos..end` still needs.
fn blocks(pos: u64, end: u64) -> (u64, u64) {
    let first = pos / BLOCK;
    (first, (end - 1) / BLOCK + 1 - first)
}

/// Bytes of `mapping` from `pos` up to `end`, and where they are on the
/// device; `None` if the volume answered for another range.
fn span(mapping: &Mapping, pos: u64, end: u64) -> Option<(u64, u64)> {
    let start = mapping.file_block.checked_mul(BLOCK)?;
    let stop = mapping
        .file_block
        .checked_add(mapping.len)?
        .checked_mul(BLOCK)?;
    if pos < start || pos >= stop || mapping.len == 0 {
        return None;
    }
    let device = mapping
        .physical
        .checked_mul(BLOCK)?
        .checked_add(pos - start)?;
    Some((stop.min(end) - pos, device))
}

/// The errno of a failed read or write: `EIO` for failed memory.
fn io_errno(e: Error) -> Error {
    if e == errno::ehwpoison() {
        EIO
    } else {
        e
    }
}
