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
//! - A hole in an empty region of a file that is not small takes a whole
//!   free chunk: the asked blocks at their congruent place, the rest of the
//!   region mapped unwritten around them, so later writes and faults of the
//!   region find their blocks there and the region stays one extent.
//!   Unwritten blocks past the end of file are speculative: they are given
//!   back when the file is closed ([`Speculation`]).
//! - Small files and files on a nearly full filesystem are packed into
//!   chunks already broken ([`crate::logic::format::space`]).

use super::extents::{extent_before, find_extent, goal_for, put_extent, zero_blocks, Lookup};
use super::TxNodes;
use crate::logic::format::{
    btree::Tree,
    inode::Inode,
    kinds::{Extents, EXTENT_UNWRITTEN},
    space, CHUNK_BLOCKS,
};
use crate::logic::fs::{tx::Tx, Error, Media};

/// A file smaller than this (in blocks) is small: its blocks are packed
/// with other small allocations instead of taking a chunk of their own
/// (64 KiB, ext4's stream-allocation threshold).
pub(super) const SMALL_FILE_BLOCKS: u64 = 16;

/// Whole chunks are handed to regions only while more than this fraction
/// of the data area is free (one eighth): below it, a chunk's unwritten
/// rest would take space that smaller allocations need.
const ROOMY_SHIFT: u32 = 6;

/// Blocks placed for a hole at file block `at`.
pub(super) struct Placed {
    /// The blocks for `at..at + extent.len`.
    pub(super) extent: space::Extent,
    /// The whole chunk the blocks came from, if the region took one: the
    /// region's first file block and the chunk's first device block. The
    /// caller maps the rest of the region to the rest of the chunk,
    /// unwritten.
    pub(super) chunk: Option<(u64, u64)>,
}

/// What a caller knows about the file it places blocks for.
#[derive(Clone, Copy)]
pub(super) struct FileHint {
    /// The file's size in blocks once the operation is done (at least).
    pub(super) blocks: u64,
    /// Blocks past the end of file may be filled speculatively (the
    /// caller has room to remember them, [`Speculation::has_room`]).
    pub(super) may_speculate: bool,
    /// The file's size in blocks now: a chunk's rest from here on is
    /// speculative.
    pub(super) eof: u64,
}

/// Places up to `want` new blocks for the hole at file block `at` (at
/// most `want` long) of the file whose extent tree is `tree`.
pub(super) fn place<M: Media>(
    tx: &mut Tx<'_, M>,
    tree: &Tree<Extents>,
    at: u64,
    want: u64,
    hint: FileHint,
) -> Result<Placed, Error> {
    let region = at - at % CHUNK_BLOCKS;
    let region_end = region + CHUNK_BLOCKS;
    let goal = goal_for(tree, &TxNodes(tx), &tx.sb.layout, at)?;
    if at == region && want >= CHUNK_BLOCKS {
        // Whole regions: whole chunks, as many as there are.
        let extent = tx.allocate_data(want, goal)?;
        return Ok(Placed {
            extent,
            chunk: None,
        });
    }
    let want = want.min(region_end - at);
    if let Some(congruent) = neighbour_place(tx, tree, at, region)? {
        if let Some(extent) = congruent
            .map(|block| tx.allocate_at(block, want))
            .transpose()?
            .flatten()
        {
            return Ok(Placed {
                extent,
                chunk: None,
            });
        }
        // Taken: the region cannot be one extent any more; stay close.
        let extent = tx.allocate_data(want, congruent.unwrap_or(goal))?;
        return Ok(Placed {
            extent,
            chunk: None,
        });
    }
    let small = hint.blocks < SMALL_FILE_BLOCKS && want < SMALL_FILE_BLOCKS;
    let speculative = region_end > hint.eof;
    let roomy = tx.sb.free_blocks > (tx.sb.layout.data_blocks() >> ROOMY_SHIFT) + CHUNK_BLOCKS;
    if !small && roomy && (hint.may_speculate || !speculative) {
        if let Some(chunk) = tx.take_chunk(goal)? {
            return Ok(Placed {
                extent: space::Extent {
                    start: chunk + (at - region),
                    len: want,
                },
                chunk: Some((region, chunk)),
            });
        }
    }
    let extent = tx.allocate_data(want, goal)?;
    Ok(Placed {
        extent,
        chunk: None,
    })
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
    let layout = &tx.sb.layout;
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

/// Maps `placed` into the file at file block `at`: its blocks with `flags`
/// (written ones zeroed first), and the rest of a chunk it took unwritten
/// around them. Returns the blocks past `eof` that are speculative.
#[allow(clippy::too_many_arguments)]
pub(super) fn map_placed<M: Media>(
    tx: &mut Tx<'_, M>,
    tree: &mut Tree<Extents>,
    inode: &mut Inode,
    ino: u64,
    at: u64,
    placed: &Placed,
    flags: u32,
    eof: u64,
) -> Result<Option<(u64, u64)>, Error> {
    let extent = placed.extent;
    if flags & EXTENT_UNWRITTEN == 0 {
        zero_blocks(tx, extent.start, extent.len)?;
    }
    let Some((region, chunk)) = placed.chunk else {
        put_extent(tx, tree, inode, ino, at, extent.start, extent.len, flags)?;
        inode.blocks = inode.blocks.saturating_add(extent.len);
        return Ok(None);
    };
    let after = at + extent.len;
    let region_end = region + CHUNK_BLOCKS;
    if at > region {
        put_extent(
            tx,
            tree,
            inode,
            ino,
            region,
            chunk,
            at - region,
            EXTENT_UNWRITTEN,
        )?;
    }
    put_extent(tx, tree, inode, ino, at, extent.start, extent.len, flags)?;
    if after < region_end {
        let physical = chunk + (after - region);
        put_extent(
            tx,
            tree,
            inode,
            ino,
            after,
            physical,
            region_end - after,
            EXTENT_UNWRITTEN,
        )?;
    }
    inode.blocks = inode.blocks.saturating_add(CHUNK_BLOCKS);
    let first = region.max(eof);
    Ok((first < region_end).then_some((first, region_end)))
}

/// Slots of [`Speculation`].
const SPECULATION_SLOTS: usize = 128;

/// Speculative blocks: the unwritten rest of chunks that regions took past
/// the end of open files (appends fill them), given back at close
/// ([`super::Volume::release`]) if they are still unwritten and past the
/// end of file. Memory only: after a crash they stay with their file, as
/// blocks fallocated past its end would, until it is truncated or deleted.
pub(super) struct Speculation {
    /// `(ino, first, end)` file block ranges; `ino` 0 is a free slot.
    ranges: [(u64, u64, u64); SPECULATION_SLOTS],
}

impl Speculation {
    pub(super) const fn new() -> Self {
        Self {
            ranges: [(0, 0, 0); SPECULATION_SLOTS],
        }
    }

    /// Whether one more range can be remembered.
    pub(super) fn has_room(&self) -> bool {
        self.ranges.iter().any(|r| r.0 == 0)
    }

    /// Remembers blocks `first..end` of `ino` (joined with a range of the
    /// same file they touch).
    pub(super) fn add(&mut self, ino: u64, first: u64, end: u64) {
        if ino == 0 || first >= end {
            return;
        }
        if let Some(r) = self
            .ranges
            .iter_mut()
            .find(|r| r.0 == ino && first <= r.2 && r.1 <= end)
        {
            *r = (ino, r.1.min(first), r.2.max(end));
        } else if let Some(r) = self.ranges.iter_mut().find(|r| r.0 == 0) {
            *r = (ino, first, end);
        }
    }

    /// Takes one range of `ino`.
    pub(super) fn take(&mut self, ino: u64) -> Option<(u64, u64)> {
        let r = self.ranges.iter_mut().find(|r| r.0 == ino && ino != 0)?;
        let (first, end) = (r.1, r.2);
        *r = (0, 0, 0);
        Some((first, end))
    }

    /// Forgets the ranges of `ino` that overlap `first..end` (its blocks
    /// there are the file's for good: fallocated, or the file is gone).
    pub(super) fn forget(&mut self, ino: u64, first: u64, end: u64) {
        for r in self.ranges.iter_mut() {
            if r.0 == ino && r.1 < end && first < r.2 {
                *r = (0, 0, 0);
            }
        }
    }
}
