// SPDX-License-Identifier: GPL-2.0

//! Compaction in the background (Documentation/oxdax/allocator.rst,
//! "Compaction"): after files are deleted or shrink, a job on the unbound
//! workqueue empties nearly empty chunks by moving their files' blocks
//! into other partly used chunks, so that free space stays in whole 2 MiB
//! chunks and new files keep getting PMD mappings on an aged filesystem;
//! after a writer closes a file that left a region misplaced (begun packed
//! while the file was small), the job moves that region into a whole
//! chunk.
//! The volume decides what to move ([`crate::logic::fs::Volume::
//! compaction_victim`], `chunk_pieces`, `relocate`); this file takes the
//! locks a move needs.
//!
//! Locking: for each piece the job takes freeze protection (a trylock:
//! frozen, it stops), then the file's i_rwsem exclusively (no read or write of it runs: a read
//! must not copy from blocks freed under it), then its invalidate lock
//! exclusively (no fault), removes the range's mappings, and calls the
//! volume (its lock exclusive, inside [`Info::call_mut`]): the order of a hole punch.
//! A page of the range that is pinned (direct I/O, RDMA) is never waited
//! for: the chunk is left as it is.

use core::sync::atomic::Ordering;

use kernel::{alloc::KVec, prelude::*};

use super::mutex_stats::Use;
use super::{
    info::{info, refresh, Info, OxdaxFs, Vol, BLOCK},
    mmap::{quiesce_unless_pinned, Quiet},
};
use crate::{
    logic::{
        format::{inode::FileType, CHUNK_BLOCKS},
        fs::Owned,
    },
    sys::{
        self,
        fs::{background::Background, inode::iget, Inode, SuperBlock},
    },
};

/// Chunks one run looks at, at most: each costs a scan of the summary.
const CHUNKS_PER_RUN: usize = 1024;

impl Info {
    /// Files lost blocks, or a writer left a region misplaced: queues the
    /// job.
    pub(super) fn compact_soon(&self) {
        Background::queue(&self.compactor);
    }
}

/// One run: places misplaced regions whole, then empties chunks until
/// none is worth emptying, the super block shuts down, or
/// [`CHUNKS_PER_RUN`] were tried (the next deletion queues another run).
pub(super) fn run(sb: &SuperBlock<OxdaxFs>, job: &Background<OxdaxFs>) {
    let Ok(info) = info(sb) else {
        return;
    };
    while !job.is_stopped() {
        let Ok(Some((ino, region))) = info.call_mut(Use::Compaction, |v| Ok(v.take_misplaced()))
        else {
            break;
        };
        if place_region_whole(sb, info, ino, region) {
            info.space.placed_regions.fetch_add(1, Ordering::Relaxed);
        }
        sys::cond_resched();
    }
    let Ok(mut tried) = KVec::<u64>::with_capacity(CHUNKS_PER_RUN, GFP_KERNEL) else {
        return;
    };
    while tried.len() < CHUNKS_PER_RUN && !job.is_stopped() {
        let Ok(Some(chunk)) = info.call_mut(Use::Compaction, |v| {
            v.compaction_victim(&|c| tried.contains(&c))
        }) else {
            return;
        };
        if tried.push(chunk, GFP_KERNEL).is_err() {
            return;
        }
        // A chunk holds at most one piece per block; allocated before the
        // volume lock is taken, so that none happens under it.
        let Ok(mut pieces) = KVec::<Owned>::with_capacity(CHUNK_BLOCKS as usize, GFP_KERNEL) else {
            return;
        };
        let movable = info.call(Use::Compaction, |v| {
            v.chunk_pieces(chunk, &mut |owned| {
                // Within the capacity: never allocates.
                let _ = pieces.push(*owned, GFP_NOWAIT);
            })
        });
        if movable != Ok(true) {
            continue;
        }
        let mut moved = 0;
        for piece in pieces.iter() {
            if job.is_stopped() || !move_piece(sb, info, piece) {
                break;
            }
            moved += piece.len;
        }
        let counters = &info.space;
        counters
            .compacted_blocks
            .fetch_add(moved, Ordering::Relaxed);
        if moved > 0 && moved == pieces.iter().map(|p| p.len).sum::<u64>() {
            counters.compacted_chunks.fetch_add(1, Ordering::Relaxed);
        }
        sys::cond_resched();
    }
}

/// Moves region `region` (first block) of file `ino` into a whole chunk,
/// under its locks; `false` if it stays (complete or aligned already,
/// no chunk free whole, pinned, gone).
fn place_region_whole(sb: &SuperBlock<OxdaxFs>, info: &Info, ino: u64, region: u64) -> bool {
    let Some(_writing) = sb.start_write() else {
        return false;
    };
    let Ok(inode) = iget(sb, ino) else {
        return false;
    };
    let _writers = inode.lock();
    let Some(_faults) = inode.invalidate_lock(true) else {
        return false;
    };
    let start = region.saturating_mul(BLOCK);
    let end = region.saturating_add(CHUNK_BLOCKS).saturating_mul(BLOCK);
    if quiesce_unless_pinned(&inode, Quiet::range(start, end)) != Ok(true) {
        return false;
    }
    info.call_mut(Use::Compaction, |v| {
        let placed = v.place_region_whole(ino, region)?;
        refresh_blocks(v, &inode, ino);
        Ok(placed)
    }) == Ok(true)
}

/// Moves one piece out of its chunk, under its file's locks; `false` if
/// it stays (pinned, gone, or an error: the chunk is left).
fn move_piece(sb: &SuperBlock<OxdaxFs>, info: &Info, piece: &Owned) -> bool {
    // Frozen: nothing may change; the next deletion queues the job again.
    let Some(_writing) = sb.start_write() else {
        return false;
    };
    let Ok(inode) = iget(sb, piece.owner) else {
        return false;
    };
    // A directory's blocks stay (only regular files' data moves).
    if FileType::of_mode(inode.mode()) != Some(FileType::Regular) {
        return false;
    }
    let _writers = inode.lock();
    let Some(_faults) = inode.invalidate_lock(true) else {
        return false;
    };
    let start = piece.file_block.saturating_mul(BLOCK);
    let end = piece
        .file_block
        .saturating_add(piece.len)
        .saturating_mul(BLOCK);
    if quiesce_unless_pinned(&inode, Quiet::range(start, end)) != Ok(true) {
        return false;
    }
    let moved = info.call_mut(Use::Compaction, |v| {
        let moved = v.relocate(piece.owner, piece.file_block, piece.len, piece.start)?;
        refresh_blocks(v, &inode, piece.owner);
        Ok(moved)
    });
    moved == Ok(piece.len)
}

/// Gives `inode` (number `ino`) its record after a move, with the volume
/// lock held as for every refresh: the move rewrote its extent tree, which may
/// have gained or lost a node, and `st_blocks` counts the tree's nodes.
fn refresh_blocks(v: &Vol, inode: &Inode<OxdaxFs>, ino: u64) {
    if let Ok(record) = v.inode(ino) {
        refresh(v, inode, &record);
    }
}
