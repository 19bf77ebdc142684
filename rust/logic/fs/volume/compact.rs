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
    copy_blocks, extent_tree, find_extent, for_each_record, goal_for, put_extent, Lookup,
};
use super::reflink::shared_run;
use super::{TxNodes, Volume};
use crate::logic::format::{
    inode::FileType,
    kinds::EXTENT_UNWRITTEN,
    space::{Extent, SpaceStore},
    CHUNK_BLOCKS,
};
use crate::logic::fs::{tx::Tx, Error, Media, Owned, Scratch};

/// A chunk with more used blocks than this is never emptied: moving its
/// blocks would cost more copying than the whole chunk it gains.
const COMPACT_MAX_USED: u64 = CHUNK_BLOCKS / 2;

/// Compaction is due while more than this part of the free blocks lie
/// scattered over partly used chunks.
const COMPACT_SCATTERED_PART: u64 = 4;

impl<M: Media, S: Scratch> Volume<M, S> {
    /// The partly used chunk most worth emptying, if compaction is due:
    /// the one with the fewest used blocks (at most [`COMPACT_MAX_USED`]),
    /// not kept for an open file's region, without failed memory, not
    /// `skip`ped (chunks the caller found it cannot empty), whose used
    /// blocks fit in the free blocks of the other partly used chunks (so
    /// that emptying it breaks no whole chunk). `None` when read-only or
    /// shut down. O(chunks).
    pub fn compaction_victim(&mut self, skip: &dyn Fn(u64) -> bool) -> Result<Option<u64>, Error> {
        if self.read_only || self.check_live().is_err() {
            return Ok(None);
        }
        let counts = self.chunk_counts();
        let free = self.statfs().free_blocks;
        let scattered = free.saturating_sub(counts.free.saturating_mul(CHUNK_BLOCKS));
        if scattered < CHUNK_BLOCKS || scattered < free / COMPACT_SCATTERED_PART {
            return Ok(None);
        }
        let layout = self.sb.layout;
        let first = layout.data_start.div_ceil(CHUNK_BLOCKS);
        let end = layout.block_count / CHUNK_BLOCKS;
        // Reads the committed maps (it writes nothing) and knows the
        // reservations.
        let mut tx = Tx::new(&self.media, self.sb, self.scratch.parts());
        tx.hidden_chunk = self.zero_chunk;
        let mut best: Option<(u64, u64)> = None;
        for chunk in first..end {
            let free = u64::from(tx.chunk_free(chunk)?);
            let used = CHUNK_BLOCKS.saturating_sub(free);
            if free == 0
                || used == 0
                || used > COMPACT_MAX_USED
                || best.is_some_and(|(_, least)| used >= least)
                || tx.reserved(chunk)
                || self
                    .poisoned
                    .first_in(chunk * CHUNK_BLOCKS, CHUNK_BLOCKS)
                    .is_some()
                || skip(chunk)
            {
                continue;
            }
            best = Some((chunk, used));
        }
        // Room for its blocks elsewhere: the scattered free blocks but its
        // own.
        Ok(best
            .filter(|&(_, used)| scattered.saturating_sub(CHUNK_BLOCKS - used) >= used)
            .map(|(chunk, _)| chunk))
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
            let mut tree = extent_tree(tx, &mut inode, ino)?;
            // Still there, whole, and the file's alone.
            let mut len = len;
            let mut at = file_block;
            while at < file_block + len {
                let Lookup::Extent(start, extent) =
                    find_extent(&tree, &TxNodes(tx), &tx.sb.layout, at)?
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
            let (shared, run) = shared_run(&tx.sb, &TxNodes(tx), physical, len)?;
            if shared {
                return Ok(0);
            }
            let len = run.min(len);
            let goal = goal_for(&tree, &TxNodes(tx), &tx.sb.layout, file_block)?;
            let new = tx.allocate_packed(len, goal)?;
            let len = new.len;
            for_each_record(tx, &mut tree, file_block, len, |tx, tree, piece| {
                let target = new.start + (piece.at - file_block);
                if piece.extent.flags & EXTENT_UNWRITTEN == 0 {
                    copy_blocks(tx, piece.physical(), target, piece.len)?;
                }
                piece.split_out(tx, tree, &mut inode, ino)?;
                tx.free(Extent {
                    start: piece.physical(),
                    len: piece.len,
                })?;
                put_extent(
                    tx,
                    tree,
                    &mut inode,
                    ino,
                    piece.at,
                    target,
                    piece.len,
                    piece.extent.flags,
                )
            })?;
            inode.map_root = tree.root;
            tx.put_inode(ino, &inode)?;
            Ok(len)
        })
    }
}
