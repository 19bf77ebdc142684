// SPDX-License-Identifier: GPL-2.0

//! Operations on a file's block map: `fallocate`, `SEEK_DATA`/`SEEK_HOLE`,
//! reflink (`remap_file_range`) and `FIEMAP`.
//!
//! Each volume call takes the volume lock briefly; nothing here touches
//! user memory with it held (`FIEMAP` copies each extent out after the
//! lock is dropped).

use kernel::prelude::*;

use super::mutex_stats::Use;
use super::{
    info::{inode_info, refresh, OxdaxFs, BLOCK},
    mmap::{quiesce, quiesce_two, Quiet},
};
use crate::{
    logic::fs::MapKind,
    sys::fs::{ExtentFlags, ExtentOperations, Fallocate, Fiemap, Inode},
};
#[vtable]
impl ExtentOperations for OxdaxFs {
    /// `fallocate` in one of the modes [`Fallocate`] names.
    fn fallocate(inode: &Inode<Self>, mode: Fallocate, offset: u64, len: u64) -> Result {
        let info = inode_info(inode)?;
        let ino = inode.ino();
        let now = inode.now();
        let end = offset.saturating_add(len);
        // A file that grows has the bytes past its old end zeroed first.
        let growth = match mode {
            Fallocate::Allocate { keep_size: false }
            | Fallocate::ZeroRange { keep_size: false }
                if end > inode.size() =>
            {
                Quiet::growth(inode.size())
            }
            _ => None,
        };
        // Punching and zeroing free or rewrite blocks: no mapping of the range
        // may stay (allocation only turns holes into unwritten blocks, which
        // read as the zero pages that may map them).
        let quiet = match mode {
            Fallocate::PunchHole | Fallocate::ZeroRange { .. } => {
                Some(Quiet::range(offset, end).union(growth))
            }
            Fallocate::Allocate { .. } => growth,
        };
        let _faults_off = quiet.map(|range| quiesce(inode, range)).transpose()?;
        info.call_mut(Use::Write, |v| {
            let result = match mode {
                Fallocate::Allocate { keep_size } => v.allocate(ino, offset, len, keep_size, now),
                Fallocate::PunchHole => v.punch_hole(ino, offset, len, now),
                Fallocate::ZeroRange { keep_size } => {
                    v.zero_range(ino, offset, len, keep_size, now)
                }
            };
            // A failed allocation may still have allocated part of the
            // range (as ext4 and xfs leave it): the inode is shown as it is
            // either way, with the volume held (`refresh`).
            if let Ok(record) = result.or_else(|_| v.inode(ino)) {
                refresh(v, inode, &record);
            }
            result.map(|_| ())
        })?;
        if matches!(mode, Fallocate::PunchHole) {
            info.compact_soon();
        }
        Ok(())
    }

    /// The first data (`data`) or hole at or after `offset`. Unwritten blocks
    /// read as zeros and count as a hole, as on ext4 and xfs with DAX; the end
    /// of file is a hole.
    fn seek(inode: &Inode<Self>, offset: u64, data: bool) -> Result<u64> {
        let size = inode.size();
        if offset >= size {
            return Err(ENXIO);
        }
        let info = inode_info(inode)?;
        let ino = inode.ino();
        let last = size.div_ceil(BLOCK);
        info.call(Use::Read, |v| {
            let mut block = offset / BLOCK;
            while block < last {
                let mapping = v.map_read(ino, block, last - block)?;
                if (mapping.kind == MapKind::Data) == data {
                    return Ok(offset.max(block * BLOCK));
                }
                block += mapping.len;
            }
            Ok(u64::MAX)
        })
        .and_then(|pos| match (pos, data) {
            (u64::MAX, true) => Err(ENXIO),
            (u64::MAX, false) => Ok(size),
            (pos, _) => Ok(pos.min(size)),
        })
    }

    /// Shares `len` bytes of `src` at `src_pos` with `dst` at `dst_pos`.
    fn remap(src: &Inode<Self>, src_pos: u64, dst: &Inode<Self>, dst_pos: u64, len: u64) -> Result {
        let info = inode_info(dst)?;
        let (from, to) = (src.ino(), dst.ino());
        let now = dst.now();
        // The destination's blocks are replaced (and, cloned past its end, the
        // bytes past its old end zeroed), the source's become shared: neither
        // may stay mapped (a write through a source mapping must fault and
        // copy), nor be pinned for I/O that would land after the clone.
        let end = |pos: u64| pos.saturating_add(len.max(1));
        let dst_range = Quiet::range(dst_pos, end(dst_pos)).union(if dst_pos > dst.size() {
            Quiet::growth(dst.size())
        } else {
            None
        });
        let _faults_off =
            quiesce_two((dst, dst_range), (src, Quiet::range(src_pos, end(src_pos))))?;
        info.call_mut(Use::Write, |v| {
            let result = v.reflink(from, src_pos, to, dst_pos, len, now);
            // Part of a large clone may be done when a later step fails:
            // the destination is shown as it is either way, with the
            // volume held (`refresh`).
            if let Ok(record) = result.or_else(|_| v.inode(to)) {
                refresh(v, dst, &record);
            }
            result.map(|_| ())
        })
    }

    /// Reports the extents of `start..start + len` with their device offsets
    /// (physical offsets are 2 MiB aligned where the allocator could: tools
    /// check PMD eligibility with them).
    fn fiemap(inode: &Inode<Self>, start: u64, len: u64, out: &mut Fiemap<'_>) -> Result {
        let info = inode_info(inode)?;
        let ino = inode.ino();
        let last = inode.size().div_ceil(BLOCK);
        let end = start.saturating_add(len).div_ceil(BLOCK).min(last);
        let mut block = start / BLOCK;
        let mut pending: Option<Run> = None;
        while block < end {
            let mapping = info.call(Use::Read, |v| v.map_read(ino, block, end - block))?;
            block = mapping.file_block + mapping.len;
            if mapping.kind == MapKind::Hole {
                continue;
            }
            let run = Run {
                logical: mapping.file_block * BLOCK,
                physical: mapping.physical * BLOCK,
                len: mapping.len * BLOCK,
                flags: ExtentFlags {
                    unwritten: mapping.kind == MapKind::Unwritten,
                    shared: mapping.shared,
                    last: false,
                },
            };
            match pending {
                Some(p)
                    if p.logical + p.len == run.logical
                        && p.physical + p.len == run.physical
                        && p.flags == run.flags =>
                {
                    pending = Some(Run {
                        len: p.len + run.len,
                        ..p
                    });
                }
                Some(p) => {
                    if !out.add(p.logical, p.physical, p.len, p.flags)? {
                        return Ok(());
                    }
                    pending = Some(run);
                }
                None => pending = Some(run),
            }
        }
        if let Some(mut p) = pending {
            // The last extent of the file if nothing but holes follow it.
            let after = p.logical / BLOCK + p.len / BLOCK;
            p.flags.last = after >= last
                || info
                    .call(Use::Read, |v| v.map_read(ino, after, last - after))
                    .is_ok_and(|m| m.kind == MapKind::Hole && m.file_block + m.len >= last);
            out.add(p.logical, p.physical, p.len, p.flags)?;
        }
        Ok(())
    }
}

/// One run of the file for `FIEMAP`: logical and physical byte offsets,
/// length and flags.
#[derive(Clone, Copy)]
struct Run {
    logical: u64,
    physical: u64,
    len: u64,
    flags: ExtentFlags,
}
