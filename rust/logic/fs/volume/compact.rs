// SPDX-License-Identifier: GPL-2.0

//! Compaction: emptying nearly empty chunks, so that free space stays in
//! whole 2 MiB chunks as long as there is enough of it
//! (Documentation/oxdax/allocator.rst, "Compaction").
//!
//! Files deleted at random leave holes in the chunks they shared with
//! other files; no placement avoids that. So free space would end up
//! spread over partly used chunks, where no new 2 MiB region can start.
//! The kernel's compaction worker asks for the partly used chunk with
//! the fewest used blocks ([`Volume::compaction_victim`]), lists the file
//! pieces in it ([`Volume::chunk_pieces`]) and moves each out with
//! [`Volume::relocate`], under that file's locks, into the holes of other
//! partly used chunks. Each move is one transaction (the data is copied
//! to the new blocks before it commits): a crash leaves the file at its
//! old blocks or its new ones, never without.

use super::extents::{
    copy_blocks, existing_extent_tree, find_extent, for_each_record, goal_for, put_extent, Lookup,
};
use super::reflink::shared_run;
use super::{TxNodes, Volume};
use crate::logic::format::{
    btree::Tree,
    inode::{FileType, Inode},
    kinds::{Extents, EXTENT_UNWRITTEN},
    space::{Extent, SpaceStore},
    BLOCK_SIZE, CHUNK_BLOCKS,
};
use crate::logic::fs::{
    tx::{HeldSpace, Tx},
    Error, MapKind, Media, Owned, Scratch, TxContext,
};

/// A chunk with more used blocks than this is never emptied: moving its
/// blocks would cost more copying than the whole chunk it gains.
const COMPACT_MAX_USED: u64 = CHUNK_BLOCKS / 2;

/// Compaction is due while more than this part of the free blocks lie
/// scattered over partly used chunks.
const COMPACT_SCATTERED_PART: u64 = 4;

impl<M: Media, S: Scratch> Volume<M, S> {
    /// The partly used chunk most worth emptying, if compaction is due:
    /// one with the fewest used blocks (at most [`COMPACT_MAX_USED`]), not
    /// kept for an open file's region, without failed memory, not
    /// `skip`ped (chunks the caller found it cannot empty), whose used
    /// blocks fit in the free blocks of the other partly used chunks (so
    /// that emptying it breaks no whole chunk). `None` when read-only or
    /// shut down. A scan of the summary (O(chunks)) keeps the
    /// [`CANDIDATES`] emptiest; the next calls take them, each checked
    /// again (O(1)), until they run out.
    pub fn compaction_victim(&mut self, skip: &dyn Fn(u64) -> bool) -> Result<Option<u64>, Error> {
        if self.read_only || self.check_live().is_err() {
            return Ok(None);
        }
        let counts = self.chunk_counts();
        let free = self.statfs().free_blocks;
        let scattered = free.saturating_sub(counts.free.saturating_mul(CHUNK_BLOCKS));
        if scattered < CHUNK_BLOCKS || scattered < free / COMPACT_SCATTERED_PART {
            self.with_lists(|lists| lists.candidates = Candidates::default());
            return Ok(None);
        }
        // Reads the committed maps (it writes nothing) and knows the
        // reservations.
        let mut context = self.scratch.context();
        let mut space = HeldSpace::new(&self.scratch);
        let mut tx = Tx::new(
            &self.media,
            self.sb,
            context.parts(),
            &self.scratch,
            &mut space,
        );
        tx.hidden_chunk = self.zero_chunk;
        // The reservations are the space state's.
        tx.hold_space();
        let poisoned = &self.poisoned;
        // Its used blocks if `chunk` may be emptied now.
        let usable = |tx: &Tx<'_, M>, chunk: u64| -> Result<Option<u64>, Error> {
            let free = u64::from(tx.chunk_free(chunk)?);
            let used = CHUNK_BLOCKS.saturating_sub(free);
            let fits = scattered.saturating_sub(CHUNK_BLOCKS - used) >= used;
            Ok((free > 0
                && used > 0
                && used <= COMPACT_MAX_USED
                && fits
                && !tx.reserved(chunk)
                && poisoned
                    .first_in(chunk * CHUNK_BLOCKS, CHUNK_BLOCKS)
                    .is_none()
                && !skip(chunk))
            .then_some(used))
        };
        while let Some(chunk) = self.with_lists(|lists| lists.candidates.pop()) {
            if usable(&tx, chunk)?.is_some() {
                return Ok(Some(chunk));
            }
        }
        let layout = self.sb.layout;
        let first = layout.data_start.div_ceil(CHUNK_BLOCKS);
        let end = layout.block_count / CHUNK_BLOCKS;
        let mut found = Candidates::default();
        for chunk in first..end {
            if let Some(used) = usable(&tx, chunk)? {
                found.keep(chunk, used);
            }
        }
        Ok(self.with_lists(|lists| {
            lists.candidates = found;
            lists.candidates.pop()
        }))
    }

    /// Calls `visit` for each piece of file data in chunk `chunk`; `false`
    /// (and stops) if the chunk holds anything compaction cannot move:
    /// metadata, or blocks shared between files (a move would have to
    /// change every sharer at once).
    pub fn chunk_pieces(&self, chunk: u64, visit: &mut dyn FnMut(&Owned)) -> Result<bool, Error> {
        let start = chunk.checked_mul(CHUNK_BLOCKS).ok_or(Error::Invalid)?;
        let mut movable = true;
        self.owners(start, CHUNK_BLOCKS, &mut |owned| {
            movable = !owned.metadata;
            if movable {
                visit(owned);
            }
            movable
        })?;
        if movable {
            let store = self.committed();
            let mut at = start;
            while at < start + CHUNK_BLOCKS {
                let (shared, run) = shared_run(&self.sb, &store, at, start + CHUNK_BLOCKS - at)?;
                if shared {
                    return Ok(false);
                }
                at += run.max(1);
            }
        }
        Ok(movable)
    }

    /// Moves file blocks `file_block..file_block + len` of regular file
    /// `ino`, found at device blocks `physical..` by [`Self::chunk_pieces`],
    /// out of their chunk into free blocks of other partly used chunks:
    /// the data is copied, then one transaction points the file at the
    /// copy and frees the old blocks. Returns how many blocks moved, from
    /// `file_block` on: 0 when the file no longer has those blocks there
    /// (it changed since) or they are shared now.
    ///
    /// The caller holds the file's locks against writes and page faults
    /// and has unmapped the range: the old blocks are free once this
    /// returns.
    pub fn relocate(
        &mut self,
        ino: u64,
        file_block: u64,
        len: u64,
        physical: u64,
    ) -> Result<u64, Error> {
        let chunk = physical / CHUNK_BLOCKS;
        let len = len.min((chunk + 1) * CHUNK_BLOCKS - physical);
        self.transact(|tx| {
            tx.avoided_chunk = Some(chunk);
            let mut inode = tx.inode(ino)?;
            if inode.file_type() != Some(FileType::Regular) {
                return Ok(0);
            }
            // Truncated to nothing, or evicted, since the piece was
            // listed: nothing to move (and no root to create).
            let Some(mut tree) = existing_extent_tree(&inode, ino) else {
                return Ok(0);
            };
            // Still there, whole, and the file's alone.
            let mut len = len;
            let mut at = file_block;
            while at < file_block + len {
                let Lookup::Extent(start, extent) =
                    find_extent(&tree, &TxNodes(tx), &tx.sb().layout, at)?
                else {
                    len = at - file_block;
                    break;
                };
                let end = (start + u64::from(extent.len)).min(file_block + len);
                if extent.physical + (at - start) != physical + (at - file_block) {
                    len = at - file_block;
                    break;
                }
                at = end;
            }
            if len == 0 {
                return Ok(0);
            }
            let (shared, run) = shared_run(tx.sb(), &TxNodes(tx), physical, len)?;
            if shared {
                return Ok(0);
            }
            let len = run.min(len);
            let goal = goal_for(&tree, &TxNodes(tx), &tx.sb().layout, file_block)?;
            let new = tx.allocate_packed(len, goal)?;
            move_blocks(tx, &mut tree, &mut inode, ino, file_block, new)?;
            Ok(new.len)
        })
    }

    /// A region some transaction left misplaced, to place whole
    /// ([`Self::place_region_whole`]); `None` if there is none.
    pub fn take_misplaced(&mut self) -> Option<(u64, u64)> {
        self.with_lists(|lists| lists.misplaced.take())
    }

    /// Whether a region waits to be placed whole.
    pub fn has_misplaced(&self) -> bool {
        self.with_lists(|lists| lists.misplaced.len > 0)
    }

    /// Moves region `region` (its first block) of regular file `ino` into
    /// a whole free chunk, each block at its congruent place, so that it
    /// maps with a PMD: a region a small file began packed, or whose
    /// places were taken. Only a complete region (every block mapped,
    /// none shared, inside the end of file) that is not one aligned run
    /// already moves: `false` otherwise, and when no chunk is free whole
    /// (nothing changed). The data is copied, then one transaction points
    /// the file at the copy; the caller holds the file's locks against
    /// writes and faults and has unmapped the region, as for
    /// [`Self::relocate`].
    pub fn place_region_whole(&mut self, ino: u64, region: u64) -> Result<bool, Error> {
        if region % CHUNK_BLOCKS != 0 {
            return Err(Error::Invalid);
        }
        let inode = self.regular(ino)?;
        if inode.size < (region + CHUNK_BLOCKS).saturating_mul(BLOCK_SIZE as u64) {
            return Ok(false);
        }
        let mut at = region;
        while at < region + CHUNK_BLOCKS {
            let m = self.map_read(ino, at, region + CHUNK_BLOCKS - at)?;
            if m.kind == MapKind::Hole || m.shared {
                return Ok(false);
            }
            if at == region && m.len == CHUNK_BLOCKS && m.physical % CHUNK_BLOCKS == 0 {
                return Ok(false);
            }
            at += m.len.max(1);
        }
        let moved = self.transact(|tx| {
            let mut inode = tx.inode(ino)?;
            // Complete a moment ago, under the same mutex: it has a tree.
            let mut tree = existing_extent_tree(&inode, ino).ok_or(Error::Invalid)?;
            let goal = goal_for(&tree, &TxNodes(tx), &tx.sb().layout, region)?;
            let new = tx.allocate_data(CHUNK_BLOCKS, goal)?;
            if new.len != CHUNK_BLOCKS || new.start % CHUNK_BLOCKS != 0 {
                // No chunk free whole: give the blocks back (nothing
                // commits).
                return Err(Error::NoSpace);
            }
            move_blocks(tx, &mut tree, &mut inode, ino, region, new)?;
            Ok(true)
        });
        match moved {
            Err(Error::NoSpace) => Ok(false),
            other => other,
        }
    }
}

/// Moves file blocks `first..first + new.len` of `ino` (mapped, its own)
/// to device blocks `new` (allocated in `tx`): written blocks are copied,
/// unwritten ones keep their flag, the old blocks are freed at commit.
fn move_blocks<M: Media>(
    tx: &mut Tx<'_, M>,
    tree: &mut Tree<Extents>,
    inode: &mut Inode,
    ino: u64,
    first: u64,
    new: Extent,
) -> Result<(), Error> {
    for_each_record(tx, tree, first, new.len, |tx, tree, piece| {
        let target = new.start + (piece.at - first);
        if piece.extent.flags & EXTENT_UNWRITTEN == 0 {
            copy_blocks(tx, piece.physical(), target, piece.len)?;
        }
        piece.split_out(tx, tree, inode, ino)?;
        tx.free(Extent {
            start: piece.physical(),
            len: piece.len,
        })?;
        put_extent(
            tx,
            tree,
            inode,
            ino,
            piece.at,
            target,
            piece.len,
            piece.extent.flags,
        )
    })?;
    inode.map_root = tree.root;
    tx.put_inode(ino, inode)
}

/// How many chunks one scan keeps for [`Volume::compaction_victim`].
const CANDIDATES: usize = 32;

/// The emptiest chunks a scan found, fewest used blocks last (taken
/// first).
#[derive(Default)]
pub(super) struct Candidates {
    /// `(used, chunk)`, most used first.
    chunks: [(u64, u64); CANDIDATES],
    len: usize,
}

impl Candidates {
    /// Keeps `chunk` if it is among the emptiest so far.
    fn keep(&mut self, chunk: u64, used: u64) {
        // Full: the most used one gives way to a less used one.
        if self.len == CANDIDATES {
            match self.chunks.first() {
                Some(&(most, _)) if used < most => {
                    self.chunks.copy_within(1.., 0);
                    self.len -= 1;
                }
                _ => return,
            }
        }
        let Some(kept) = self.chunks.get(..self.len) else {
            return;
        };
        let at = kept.partition_point(|&(u, _)| u > used);
        // `at <= len < CANDIDATES`: the shift stays inside the array.
        if self.len < CANDIDATES {
            self.chunks.copy_within(at..self.len, at + 1);
            if let Some(slot) = self.chunks.get_mut(at) {
                *slot = (used, chunk);
                self.len += 1;
            }
        }
    }

    /// The emptiest chunk left.
    fn pop(&mut self) -> Option<u64> {
        self.len = self.len.checked_sub(1)?;
        self.chunks.get(self.len).map(|&(_, chunk)| chunk)
    }
}

/// Regions waiting to be placed whole: a few, in memory (a crash forgets
/// them, which costs only huge pages).
#[derive(Default)]
pub(super) struct Misplaced {
    regions: [(u64, u64); 16],
    len: usize,
}

impl Misplaced {
    /// Remembers region `region` of `ino` (once; dropped when full).
    pub(super) fn add(&mut self, ino: u64, region: u64) {
        let entry = (ino, region);
        if self.regions[..self.len].contains(&entry) {
            return;
        }
        if let Some(slot) = self.regions.get_mut(self.len) {
            *slot = entry;
            self.len += 1;
        }
    }

    /// Forgets `ino`'s regions (it is gone).
    pub(super) fn forget(&mut self, ino: u64) {
        let mut kept = 0;
        for i in 0..self.len {
            if let Some(&entry) = self.regions.get(i) {
                if entry.0 != ino {
                    if let Some(slot) = self.regions.get_mut(kept) {
                        *slot = entry;
                    }
                    kept += 1;
                }
            }
        }
        self.len = kept;
    }

    fn take(&mut self) -> Option<(u64, u64)> {
        self.len = self.len.checked_sub(1)?;
        self.regions.get(self.len).copied()
    }
}
