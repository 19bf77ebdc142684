// SPDX-License-Identifier: GPL-2.0

//! A file's data: mapping it for reads, writes and faults, fallocate
//! (allocate, punch, zero), zeroing past EOF on growth, and truncation.

use super::extents::{
    convert_unwritten, copy_blocks, extent_tree, find_extent, last_extent, map_in, put_extent,
    replace_range, split_out, zero_blocks, Blocks, Lookup, MAX_ALLOCATION, MAX_FILE_BLOCKS,
};
use super::placement::{place, place_copy};
use super::reflink::release;
use super::{Budget, TxNodes, Volume};
use crate::logic::format::{
    btree::Tree,
    inode::{FileType, Inode, Timestamp, MAX_FILE_SIZE},
    kinds::{block_key, Extent, Extents, RmapKey, EXTENT_UNWRITTEN},
    space, BLOCK_SHIFT, BLOCK_SIZE, CHUNK_BLOCKS,
};
use crate::logic::fs::{
    tx::{tree_error, TreeStore},
    Damage, Error, MapKind, Mapping, Media, Scratch, SharedWrite,
};

impl<M: Media, S: Scratch> Volume<M, S> {
    /// Makes bytes `size..upto` of `ino` read as zeros, where `size` is its
    /// size, before the file grows over them. What lies past the end of
    /// file is not the file's: stores through a mapping of the end-of-file
    /// page past its end, or blocks of a write or truncation that a crash
    /// cut short. ext4 and xfs zero this gap too. The end-of-file block's
    /// tail is zeroed in place (copied first if shared: the caller has
    /// removed its mappings); written blocks inside the gap are released
    /// (unwritten ones, preallocations, stay: they read as zeros).
    pub fn zero_past_eof(&mut self, ino: u64, upto: u64) -> Result<(), Error> {
        let size = self.regular(ino)?.size;
        if upto <= size {
            return Ok(());
        }
        self.zero_tail(ino, size)?;
        let first = size.div_ceil(BLOCK_SIZE as u64);
        let end = upto.div_ceil(BLOCK_SIZE as u64);
        if first < end {
            self.unmap_range(ino, first, end - first, Blocks::Written)?;
        }
        Ok(())
    }

    /// Zeroes bytes `size..` of the block holding byte `size`, if written.
    pub(super) fn zero_tail(&mut self, ino: u64, size: u64) -> Result<(), Error> {
        let within = size % BLOCK_SIZE as u64;
        if within == 0 {
            return Ok(());
        }
        self.zero_in_block(ino, size, BLOCK_SIZE as u64 - within)
    }

    /// Zeroes `len` bytes at byte `offset` of `ino`, inside one block, if
    /// that block holds written data (a shared block is copied first: the
    /// caller has removed its mappings). `Poisoned` if the block holds
    /// failed memory: it is never written (the caller punches whole blocks
    /// out instead).
    pub(super) fn zero_in_block(&mut self, ino: u64, offset: u64, len: u64) -> Result<(), Error> {
        let block = offset >> BLOCK_SHIFT;
        let mut mapping = self.map_data(ino, block, 1)?;
        if mapping.kind != MapKind::Data || len == 0 {
            return Ok(());
        }
        if mapping.shared {
            mapping = self.map_write(ino, block, 1, SharedWrite::Copy)?;
        }
        let at = (mapping.physical << BLOCK_SHIFT) + offset % BLOCK_SIZE as u64;
        if !self.media.zero(at, len) {
            return Err(Error::Corrupt(mapping.physical, Damage::Address));
        }
        self.media.fence();
        Ok(())
    }

    /// Zeroes the partial blocks at the edges of byte range
    /// `offset..offset + len`; returns the whole blocks inside it.
    fn zero_edges(&mut self, ino: u64, offset: u64, len: u64) -> Result<(u64, u64), Error> {
        let end = offset.checked_add(len).ok_or(Error::TooBig)?;
        let bs = BLOCK_SIZE as u64;
        let first = offset.div_ceil(bs);
        let last = end / bs;
        if first > last {
            // Inside one block.
            self.zero_in_block(ino, offset, len)?;
            return Ok((first, 0));
        }
        if offset % bs != 0 {
            self.zero_in_block(ino, offset, first * bs - offset)?;
        }
        if end % bs != 0 {
            self.zero_in_block(ino, last * bs, end - last * bs)?;
        }
        Ok((first, last - first))
    }

    /// `fallocate(PUNCH_HOLE | KEEP_SIZE)`: bytes `offset..offset + len`
    /// read as zeros afterwards; whole blocks inside are freed.
    pub fn punch_hole(
        &mut self,
        ino: u64,
        offset: u64,
        len: u64,
        now: Timestamp,
    ) -> Result<Inode, Error> {
        self.regular(ino)?;
        let (first, count) = self.zero_edges(ino, offset, len)?;
        self.unmap_range(ino, first, count, Blocks::All)?;
        self.modified(ino, None, now)
    }

    /// `fallocate(ZERO_RANGE)`: like a punch, then the whole blocks are
    /// allocated again (unwritten); the size grows unless `keep_size`.
    pub fn zero_range(
        &mut self,
        ino: u64,
        offset: u64,
        len: u64,
        keep_size: bool,
        now: Timestamp,
    ) -> Result<Inode, Error> {
        self.regular(ino)?;
        let (first, count) = self.zero_edges(ino, offset, len)?;
        self.unmap_range(ino, first, count, Blocks::All)?;
        self.allocate(ino, offset, len, keep_size, now)
    }

    /// `fallocate(0)` or `fallocate(KEEP_SIZE)`: every hole in bytes
    /// `offset..offset + len` gets unwritten blocks (2 MiB-aligned where
    /// the range allows); the size grows to the end unless `keep_size`.
    /// On `NoSpace` what was allocated stays, as ext4 and xfs do.
    pub fn allocate(
        &mut self,
        ino: u64,
        offset: u64,
        len: u64,
        keep_size: bool,
        now: Timestamp,
    ) -> Result<Inode, Error> {
        self.regular(ino)?;
        let end = offset.checked_add(len).ok_or(Error::TooBig)?;
        if end > MAX_FILE_SIZE || len == 0 {
            return Err(if len == 0 {
                Error::Invalid
            } else {
                Error::TooBig
            });
        }
        if !keep_size {
            self.zero_past_eof(ino, end)?;
        }
        let mut block = offset >> BLOCK_SHIFT;
        let last = end.div_ceil(BLOCK_SIZE as u64);
        let mut budget = Budget::new();
        while block < last {
            let mut steps = 0;
            let result = self.transact(|tx| {
                let mut inode = tx.inode(ino)?;
                let mut tree = extent_tree(tx, &mut inode, ino)?;
                let mut at = block;
                while at < last && budget.allows(steps, tx) {
                    steps += 1;
                    // An insertion may have split the root: look the next
                    // hole up in the tree as it is now, not in the old root
                    // (now only its left half).
                    inode.map_root = tree.root;
                    let mapping = map_in(tx.sb(), &TxNodes(tx), ino, &inode, at, last - at)?;
                    if mapping.kind == MapKind::Hole {
                        let size = inode.size.div_ceil(BLOCK_SIZE as u64);
                        let blocks = if keep_size { size } else { size.max(last) };
                        let want = mapping.len.min(MAX_ALLOCATION);
                        let extent = place(tx, &tree, ino, at, want, blocks)?;
                        put_extent(
                            tx,
                            &mut tree,
                            &mut inode,
                            ino,
                            at,
                            extent.start,
                            extent.len,
                            EXTENT_UNWRITTEN,
                        )?;
                        inode.blocks = inode.blocks.saturating_add(extent.len);
                        at += extent.len;
                    } else {
                        at += mapping.len;
                    }
                }
                inode.map_root = tree.root;
                tx.put_inode(ino, &inode)?;
                Ok(at)
            });
            block = budget.settle(result, steps)?.unwrap_or(block);
        }
        self.modified(ino, (!keep_size).then_some(end), now)
    }

    /// Releases the blocks (`which` of them) mapped at file blocks
    /// `first..first + count` (they become a hole), in bounded
    /// transactions.
    pub(super) fn unmap_range(
        &mut self,
        ino: u64,
        first: u64,
        count: u64,
        which: Blocks,
    ) -> Result<(), Error> {
        let end = first.saturating_add(count);
        let mut cursor = first;
        let mut budget = Budget::new();
        while cursor < end {
            let mut steps = 0;
            let result = self.transact(|tx| {
                let mut inode = tx.inode(ino)?;
                if inode.map_root == 0 {
                    return Ok(end);
                }
                let mut tree = Tree::<Extents>::open(inode.map_root, ino);
                let mut at = cursor;
                while at < end && budget.allows(steps, tx) {
                    steps += 1;
                    match find_extent(&tree, &TxNodes(tx), &tx.sb().layout, at)? {
                        Lookup::Hole(next) => at = next.map_or(end, |n| n.min(end)),
                        Lookup::Extent(start, extent) if !which.takes(extent.flags) => {
                            at = (start + u64::from(extent.len)).min(end);
                        }
                        Lookup::Extent(start, extent) => {
                            let stop = (start + u64::from(extent.len)).min(end);
                            let len = stop - at;
                            split_out(tx, &mut tree, &mut inode, ino, start, extent, at, len)?;
                            release(tx, extent.physical + (at - start), len)?;
                            inode.blocks = inode.blocks.saturating_sub(len);
                            at = stop;
                        }
                    }
                }
                inode.map_root = tree.root;
                tx.put_inode(ino, &inode)?;
                Ok(at)
            });
            cursor = budget.settle(result, steps)?.unwrap_or(cursor);
        }
        Ok(())
    }

    /// Frees the blocks of `ino` from file block `first` on, in as many
    /// transactions as needed (each leaves a consistent file: blocks past
    /// the end of file are allowed). With `whole`, the emptied tree's root
    /// goes too.
    pub(super) fn trim(&mut self, ino: u64, first: u64, whole: bool) -> Result<Inode, Error> {
        let mut budget = Budget::new();
        loop {
            let mut steps = 0;
            let result = self.transact(|tx| {
                let mut inode = tx.inode(ino)?;
                if inode.map_root == 0 {
                    return Ok((inode, true));
                }
                let mut tree = Tree::<Extents>::open(inode.map_root, ino);
                let mut done = false;
                while budget.allows(steps, tx) {
                    steps += 1;
                    let Some((start, extent)) = last_extent(&tree, &TxNodes(tx), &tx.sb().layout)?
                    else {
                        done = true;
                        break;
                    };
                    let end = start + u64::from(extent.len);
                    if end <= first {
                        done = true;
                        break;
                    }
                    let keep = first.saturating_sub(start);
                    let mut store = TreeStore::new(tx, ino);
                    if keep == 0 {
                        if !tree
                            .remove(&mut store, &block_key(start))
                            .map_err(tree_error)?
                        {
                            return Err(Error::Corrupt(tree.root, Damage::Record));
                        }
                    } else {
                        let shorter = Extent {
                            len: keep as u32,
                            ..extent
                        };
                        tree.insert(&mut store, &block_key(start), &shorter.encode())
                            .map_err(tree_error)?;
                    }
                    let delta = store.node_delta;
                    inode.blocks = inode.blocks.saturating_add_signed(delta);
                    let rmap = RmapKey {
                        start: extent.physical,
                        owner: ino,
                        offset: start,
                    };
                    tx.rmap_remove(rmap, u64::from(extent.len))?;
                    if keep > 0 {
                        tx.rmap_add(rmap, keep, 0)?;
                    }
                    let freed = u64::from(extent.len) - keep;
                    release(tx, extent.physical + keep, freed)?;
                    inode.blocks = inode.blocks.saturating_sub(freed);
                }
                inode.map_root = tree.root;
                if done && whole {
                    tx.free(space::Extent {
                        start: tree.root,
                        len: 1,
                    })?;
                    tx.rmap_remove(
                        RmapKey {
                            start: tree.root,
                            owner: ino,
                            offset: 0,
                        },
                        1,
                    )?;
                    inode.map_root = 0;
                    inode.blocks = inode.blocks.saturating_sub(1);
                }
                tx.put_inode(ino, &inode)?;
                Ok((inode, done))
            });
            if let Some((inode, true)) = budget.settle(result, steps)? {
                return Ok(inode);
            }
        }
    }

    /// Where file blocks `file_block..file_block + len` of `ino` live (the
    /// first run of one kind).
    /// Blocks with failed memory are reported like the others (for
    /// `SEEK_DATA` and `FIEMAP`); [`Self::map_data`] is for reaching data.
    pub fn map_read(&self, ino: u64, file_block: u64, len: u64) -> Result<Mapping, Error> {
        let len = len.max(1);
        self.check_live()?;
        if let Some(mapping) = self.mappings().get(ino, file_block, len) {
            return Ok(mapping);
        }
        let inode = self.inode(ino)?;
        // Looked up to the end of the 2 MiB region at least, for the
        // cache: the answer for `len` is that run cut to `len` (a run
        // ends where the extent, the contiguity or the sharing does,
        // wherever the lookup started in it). A wider look that meets
        // damage the narrow one would not is retried narrow.
        let region_end = (file_block / CHUNK_BLOCKS)
            .saturating_add(1)
            .saturating_mul(CHUNK_BLOCKS);
        let wide = len.max(region_end.saturating_sub(file_block));
        let committed = self.committed();
        let run = match map_in(&self.sb, &committed, ino, &inode, file_block, wide) {
            Ok(run) => {
                self.mappings().put(ino, &run);
                run
            }
            Err(_) if wide > len => map_in(&self.sb, &committed, ino, &inode, file_block, len)?,
            Err(e) => return Err(e),
        };
        Ok(Mapping {
            len: run.len.min(len),
            ..run
        })
    }

    /// [`Self::map_read`] without its caches (records and mappings), for
    /// tests to compare with.
    #[cfg(test)]
    pub(crate) fn map_read_uncached(
        &self,
        ino: u64,
        file_block: u64,
        len: u64,
    ) -> Result<Mapping, Error> {
        // The record as `map_read` finds it: its slot checked first.
        let inode = self.inode_uncached(ino)?;
        map_in(
            &self.sb,
            &self.committed(),
            ino,
            &inode,
            file_block,
            len.max(1),
        )
    }

    /// [`Self::map_read`] for reading or mapping the data: `Poisoned` if
    /// the first block holds failed memory (`poison`), else the run ends
    /// before the first block that does.
    pub fn map_data(&self, ino: u64, file_block: u64, len: u64) -> Result<Mapping, Error> {
        self.healthy_part(self.map_read(ino, file_block, len)?)
    }

    /// Makes file blocks `file_block..` writable in place: allocates holes
    /// (2 MiB-aligned where the range allows), converts unwritten blocks,
    /// and copies shared blocks or reports them (`shared`). New or
    /// converted blocks are zeroed and durable before the mapping is
    /// committed. May map fewer blocks than asked.
    pub fn map_write(
        &mut self,
        ino: u64,
        file_block: u64,
        len: u64,
        shared: SharedWrite,
    ) -> Result<Mapping, Error> {
        let len = len.clamp(1, MAX_ALLOCATION);
        if file_block.saturating_add(len) > MAX_FILE_BLOCKS {
            return Err(Error::TooBig);
        }
        let current = self.map_data(ino, file_block, len)?;
        if current.kind == MapKind::Data && !current.shared {
            return Ok(current);
        }
        if current.shared && shared == SharedWrite::Report {
            return Ok(current);
        }
        // Never past a poisoned block (`map_data` stopped before it).
        let len = current.len;
        self.transact(|tx| {
            let mut inode = tx.inode(ino)?;
            if inode.file_type() != Some(FileType::Regular) {
                return Err(Error::Invalid);
            }
            let mapping = map_in(tx.sb(), &TxNodes(tx), ino, &inode, file_block, len)?;
            let mut tree = extent_tree(tx, &mut inode, ino)?;
            let result = match mapping.kind {
                MapKind::Data if !mapping.shared => mapping,
                MapKind::Data | MapKind::Unwritten if mapping.shared => {
                    // Shared: copy to new blocks (zeros for unwritten
                    // ones), then point the range at them; the old blocks
                    // lose one reference. Never write a shared block in
                    // place, unwritten or not.
                    let size = inode.size.div_ceil(BLOCK_SIZE as u64);
                    let extent = place_copy(tx, &tree, ino, &mapping, size)?;
                    if mapping.kind == MapKind::Data {
                        copy_blocks(tx, mapping.physical, extent.start, extent.len)?;
                    } else {
                        zero_blocks(tx, extent.start, extent.len)?;
                    }
                    replace_range(
                        tx,
                        &mut tree,
                        &mut inode,
                        ino,
                        file_block,
                        extent.len,
                        extent.start,
                    )?;
                    Mapping {
                        file_block,
                        len: extent.len,
                        physical: extent.start,
                        kind: MapKind::Data,
                        new: true,
                        shared: false,
                        copied: true,
                    }
                }
                MapKind::Hole => {
                    let size = inode.size.div_ceil(BLOCK_SIZE as u64);
                    let blocks = size.max(file_block + mapping.len);
                    let extent = place(tx, &tree, ino, file_block, mapping.len, blocks)?;
                    zero_blocks(tx, extent.start, extent.len)?;
                    put_extent(
                        tx,
                        &mut tree,
                        &mut inode,
                        ino,
                        file_block,
                        extent.start,
                        extent.len,
                        0,
                    )?;
                    inode.blocks = inode.blocks.saturating_add(extent.len);
                    Mapping {
                        file_block,
                        len: extent.len,
                        physical: extent.start,
                        kind: MapKind::Data,
                        new: true,
                        shared: false,
                        copied: false,
                    }
                }
                MapKind::Unwritten | MapKind::Data => {
                    zero_blocks(tx, mapping.physical, mapping.len)?;
                    convert_unwritten(tx, &mut tree, &mut inode, ino, &mapping)?;
                    Mapping {
                        kind: MapKind::Data,
                        new: true,
                        ..mapping
                    }
                }
            };
            inode.map_root = tree.root;
            tx.put_inode(ino, &inode)?;
            Ok(result)
        })
    }

    /// The blocks a `write(2)` to shared blocks `first..first + len` of
    /// `ino` copies: the whole 2 MiB regions around them that lie inside
    /// the end of file, so that the copy can map with PMDs (a copy of just
    /// the blocks written would leave the region to 4 KiB pages for good);
    /// just the range where a region reaches past the end of file (it
    /// cannot map whole anyway), or when free space is short. The caller
    /// removes the range's mappings,
    /// then [`Self::copy_shared`] copies what in it is shared.
    pub fn cow_range(&self, ino: u64, first: u64, len: u64) -> Result<(u64, u64), Error> {
        let eof = self.regular(ino)?.size.div_ceil(BLOCK_SIZE as u64);
        let end = first.checked_add(len).ok_or(Error::Invalid)?;
        let region_first = first - first % CHUNK_BLOCKS;
        let region_end = end.next_multiple_of(CHUNK_BLOCKS);
        let start = if region_first + CHUNK_BLOCKS <= eof {
            region_first
        } else {
            first
        };
        let stop = if region_end <= eof { region_end } else { end };
        let widened = stop.max(end) - start;
        // Short of space, the write's own copy comes first: widening
        // could take the blocks it needs.
        if self.sb.free_blocks < widened.saturating_mul(2) + CHUNK_BLOCKS {
            return Ok((first, len));
        }
        Ok((start, widened))
    }

    /// Copies the shared blocks of file blocks `first..first + len` of
    /// `ino` to new ones (holes and blocks of its own stay as they are):
    /// [`Self::map_write`] with [`SharedWrite::Copy`] for each shared run.
    pub fn copy_shared(&mut self, ino: u64, first: u64, len: u64) -> Result<(), Error> {
        let end = first.checked_add(len).ok_or(Error::Invalid)?;
        let mut at = first;
        while at < end {
            let found = self.map_data(ino, at, end - at)?;
            let done = if found.shared {
                self.map_write(ino, at, found.len, SharedWrite::Copy)?.len
            } else {
                found.len
            };
            at += done.max(1);
        }
        Ok(())
    }

    /// A file opened for writing was closed: the chunks kept for its
    /// regions are free for any allocation again.
    pub fn release(&mut self, ino: u64) {
        self.end_reservations(ino);
    }

    /// Whether closing a file opened for writing could change anything:
    /// chunks are kept for some file's regions ([`Self::release`]), or
    /// misplaced regions wait (the close queues compaction). When not, a
    /// close need not call the volume at all: only an allocation or a
    /// transaction, each a later volume call, changes this.
    pub fn close_has_work(&mut self) -> bool {
        self.any_reservations() || self.has_misplaced()
    }

    /// After data was written up to byte `end`: size becomes at least
    /// `end`, mtime and ctime `now`.
    pub fn write_done(&mut self, ino: u64, end: u64, now: Timestamp) -> Result<Inode, Error> {
        if end > MAX_FILE_SIZE {
            return Err(Error::TooBig);
        }
        self.modified(ino, Some(end), now)
    }
}
