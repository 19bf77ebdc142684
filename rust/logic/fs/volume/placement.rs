// SPDX-License-Identifier: GPL-2.0

//! Where a file's new blocks go, so that its 2 MiB regions map as PMDs
//! (Documentation/oxdax/allocator.rst). A region (file blocks
//! `512 k .. 512 (k + 1)`) maps as one PMD when its blocks are one run
//! that starts on a 2 MiB boundary of the device: file offset and device
//! offset congruent modulo 2 MiB, nothing else in between.
//!
//! - A hole in a region that already has blocks gets the blocks at exactly
//!   the place that keeps the region's blocks congruent (before or after
//!   the neighbour), whoever asks: write(2) of any size and order, page
//!   faults, fallocate.
//! - A hole in an empty region of a file that is not small starts the
//!   region in a whole free chunk, at its congruent place; the rest of the
//!   chunk is reserved for the file while it is open (in memory:
//!   [`crate::logic::fs::tx::Reservations`]), so that the region's later
//!   blocks, in whatever order they come, find their places free.
//! - A whole GiB of a file that is at least that long (fallocate, a write
//!   or fault into a file sized beforehand) starts on a free GiB of the
//!   device when there is one, and its later pieces continue it: it can
//!   map as one PUD (rust/dax/pud.rs).
//! - Small files, and regions when no chunk is free whole, are packed into
//!   chunks already broken ([`crate::logic::format::space`]).

use super::extents::{extent_before, find_extent, goal_for, Lookup};
use super::reflink::shared_run;
use super::TxNodes;
use crate::logic::format::{btree::Tree, kinds::Extents, space::Extent, CHUNK_BLOCKS, GIB_BLOCKS};
use crate::logic::fs::{tx::Tx, Error, Mapping, Media};

/// A file smaller than this (in blocks) is small: its blocks are packed
/// with other small allocations instead of taking a chunk of their own
/// (64 KiB, ext4's stream-allocation threshold).
pub(super) const SMALL_FILE_BLOCKS: u64 = 16;

/// Places up to `want` new blocks for the hole at file block `at` (at
/// most `want` long) of inode `ino`, whose extent tree is `tree` and which
/// is `blocks` long once the operation is done.
pub(super) fn place<M: Media>(
    tx: &mut Tx<'_, M>,
    tree: &Tree<Extents>,
    ino: u64,
    at: u64,
    want: u64,
    blocks: u64,
) -> Result<Extent, Error> {
    let region = at - at % CHUNK_BLOCKS;
    let region_end = region + CHUNK_BLOCKS;
    let mut goal = goal_for(tree, &TxNodes(tx), &tx.sb().layout, at)?;
    if at % GIB_BLOCKS == 0 && blocks >= at.saturating_add(GIB_BLOCKS) {
        // A whole GiB of the file begins: start it on a free GiB of the
        // device, so that it can map as one PUD; its later pieces
        // continue it (their goal is the end of the blocks before).
        if let Some(start) = tx.aligned_free_run(GIB_BLOCKS)? {
            goal = start;
        }
    }
    if at == region && want >= CHUNK_BLOCKS {
        // Whole regions: whole chunks, as many as there are.
        return tx.allocate_data(want, goal);
    }
    let want = want.min(region_end - at);
    if let Some(congruent) = neighbour_place(tx, tree, at, region)? {
        if let Some(block) = congruent {
            if block % CHUNK_BLOCKS != at % CHUNK_BLOCKS {
                // The region began packed (a small file that grew): it
                // continues there, but compaction may place it whole.
                tx.misplaced = Some((ino, region));
            }
            if let Some(extent) = tx.allocate_at(block, want)? {
                return Ok(extent);
            }
        }
        // Taken: the region cannot be one run any more; stay close, and
        // let compaction place it whole once it is complete.
        tx.misplaced = Some((ino, region));
        return tx.allocate_data(want, congruent.unwrap_or(goal));
    }
    start_region(tx, ino, at, want, blocks, goal)
}

/// Blocks for `at..at + want` (inside one region) where the region has
/// no blocks of the file yet: the start of a whole chunk kept for the
/// file, unless the file is small or no chunk is free whole; else packed
/// near `goal`.
fn start_region<M: Media>(
    tx: &mut Tx<'_, M>,
    ino: u64,
    at: u64,
    want: u64,
    blocks: u64,
    goal: u64,
) -> Result<Extent, Error> {
    let small = blocks < SMALL_FILE_BLOCKS && want < SMALL_FILE_BLOCKS;
    if !small {
        let offset = at % CHUNK_BLOCKS;
        if let Some(extent) = tx.allocate_in_chunk(goal, offset, want, ino)? {
            return Ok(extent);
        }
        // No chunk can be kept for the region now (the open files keep as
        // many as the volume remembers): still start it at its congruent
        // place after the blocks before it, unkept.
        if goal % CHUNK_BLOCKS == offset {
            if let Some(extent) = tx.allocate_at(goal, want)? {
                return Ok(extent);
            }
        }
    }
    tx.allocate_data(want, goal)
}

/// Places the new blocks for a copy of shared blocks `shared` (the file's
/// blocks from `shared.file_block`, copy-on-write) of inode `ino`, which
/// is `blocks` long: as [`place`] would for a hole, except that shared
/// blocks around are no neighbours (they are not the file's own run) and
/// the copy's first blocks are placed, at most up to the region's end
/// (callers loop).
pub(super) fn place_copy<M: Media>(
    tx: &mut Tx<'_, M>,
    tree: &Tree<Extents>,
    ino: u64,
    shared: &Mapping,
    blocks: u64,
) -> Result<Extent, Error> {
    let at = shared.file_block;
    let want = shared.len;
    let region = at - at % CHUNK_BLOCKS;
    if at == region && want >= CHUNK_BLOCKS {
        return tx.allocate_data(want, shared.physical);
    }
    let want = want.min(region + CHUNK_BLOCKS - at);
    // The file's own blocks just before, in the region: continue them.
    if let Some((start, extent)) = extent_before(tree, &TxNodes(tx), &tx.sb().layout, at)? {
        let end = start + u64::from(extent.len);
        let (shared_before, _) = shared_run(
            tx.sb(),
            &TxNodes(tx),
            extent.physical,
            u64::from(extent.len),
        )?;
        if end == at && start < at && end > region && !shared_before {
            let block = extent.physical + (at - start);
            if let Some(extent) = tx.allocate_at(block, want)? {
                return Ok(extent);
            }
        }
    }
    start_region(tx, ino, at, want, blocks, shared.physical)
}

/// If the region of file block `at` has blocks already (the extent before
/// `at` or the next one lies in it): the device block that would keep
/// `at` congruent with them, if there is one. `None` if the region is
/// empty.
fn neighbour_place<M: Media>(
    tx: &Tx<'_, M>,
    tree: &Tree<Extents>,
    at: u64,
    region: u64,
) -> Result<Option<Option<u64>>, Error> {
    let nodes = TxNodes(tx);
    let layout = &tx.sb().layout;
    let next = match find_extent(tree, &nodes, layout, at)? {
        Lookup::Hole(next) => next,
        // Not a hole: nothing to place (the caller asked for a hole).
        Lookup::Extent(..) => return Err(Error::Invalid),
    };
    if let Some((start, extent)) = extent_before(tree, &nodes, layout, at)? {
        if start + u64::from(extent.len) > region {
            return Ok(Some(extent.physical.checked_add(at - start)));
        }
    }
    if let Some(next) = next.filter(|&n| n > at && n < region + CHUNK_BLOCKS) {
        if let Lookup::Extent(start, extent) = find_extent(tree, &nodes, layout, next)? {
            return Ok(Some(extent.physical.checked_sub(start - at)));
        }
    }
    Ok(None)
}
