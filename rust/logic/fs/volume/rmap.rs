// SPDX-License-Identifier: GPL-2.0

//! The reverse map's answers: who owns a block (for a memory failure),
//! which blocks are poisoned, and fsck's repair of the free-space maps
//! from the owners.

use core::ops::ControlFlow;

use super::extents::MAX_ALLOCATION;
use super::reflink::shared_run;
use super::Volume;
use crate::logic::format::{
    btree::Tree,
    kinds::{self, block_key, InodeChunks, ReverseMap, RmapKey, OWNER_INODE_CHUNKS, RMAP_METADATA},
    space::SpaceStore,
    CHUNK_BLOCKS,
};
use crate::logic::fs::{
    tx::{scan, tree_error},
    Damage, Error, MapKind, Mapping, Media, Owned, Scratch,
};

impl<M: Media, S: Scratch> Volume<M, S> {
    /// `mapping` up to its first poisoned block; `Poisoned` if that is the
    /// first one.
    pub(super) fn healthy_part(&self, mut mapping: Mapping) -> Result<Mapping, Error> {
        if mapping.kind == MapKind::Hole {
            return Ok(mapping);
        }
        match self.poisoned.first_in(mapping.physical, mapping.len) {
            None => Ok(mapping),
            Some(bad) if bad == mapping.physical => Err(Error::Poisoned),
            Some(bad) => {
                mapping.len = bad - mapping.physical;
                Ok(mapping)
            }
        }
    }

    /// Records that device blocks `start..start + len` hold failed memory:
    /// from now on they are never read or mapped for a file, nor handed
    /// out once free. `NoSpace` when the list of poisoned blocks is full
    /// (the caller shuts the volume down: the device is failing).
    ///
    /// A failure in the zero chunk retires it for the rest of the mount: its
    /// whole 2 MiB joins the list, so that the allocator never hands out
    /// blocks that mappings of it may still show (the caller removes them),
    /// and [`Self::reserve_zero_chunk`] picks another.
    pub fn poison(&mut self, start: u64, len: u64) -> Result<(), Error> {
        if !self.poisoned.add(start, len) {
            return Err(Error::NoSpace);
        }
        if let Some(chunk) = self.zero_chunk {
            let first = chunk * CHUNK_BLOCKS;
            if start < first + CHUNK_BLOCKS && first < start.saturating_add(len) {
                if !self.poisoned.add(first, CHUNK_BLOCKS) {
                    // Stays hidden as the zero chunk instead, unused.
                    return Err(Error::NoSpace);
                }
                self.zero_chunk = None;
            }
        }
        Ok(())
    }

    /// Calls `visit` for every owner of device blocks `start..start + len`
    /// (clipped to the range) until it returns `false`: the inodes and file
    /// blocks of data — every sharer of a reflinked block — or the
    /// metadata structure. Free blocks have no owner.
    ///
    /// Cost: where the range is not shared, one lookup of the record
    /// before it plus the records starting inside it, O(log n + k). Shared
    /// blocks can be covered by records starting up to one largest extent
    /// (128 MiB) earlier, and those are scanned too; so is that window for
    /// an unshared block whose record before it has shared blocks (a
    /// record partly shared may reach past it).
    pub fn owners(
        &self,
        start: u64,
        len: u64,
        visit: &mut dyn FnMut(&Owned) -> bool,
    ) -> Result<(), Error> {
        self.check_live()?;
        let end = start.checked_add(len).ok_or(Error::Invalid)?;
        let store = self.committed();
        let rmap = Tree::<ReverseMap>::open(self.sb.rmap_root, kinds::OWNER_REVERSE_MAP);
        let mut any_shared = false;
        let mut at = start;
        while at < end {
            let (shared, run) = shared_run(&self.sb, &store, at, end - at)?;
            any_shared |= shared;
            at += run.max(1);
        }
        let earliest = start.saturating_sub(MAX_ALLOCATION - 1);
        let from = if any_shared {
            earliest
        } else {
            // The one record that can cover `start` starts before it: the
            // last record that does, unless that one ends before `start`
            // and has shared blocks (a longer record may start earlier and
            // run through them to `start`).
            let mut key = [0u8; 24];
            let mut value = [0u8; 16];
            let found = start > 0
                && rmap
                    .last_at_or_before(
                        &store,
                        &RmapKey {
                            start: start - 1,
                            owner: u64::MAX,
                            offset: u64::MAX,
                        }
                        .encode(),
                        &mut key,
                        &mut value,
                    )
                    .map_err(tree_error)?;
            let record_len = value
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_le_bytes);
            match (found, RmapKey::decode(&key), record_len) {
                (true, Some(k), Some(len)) if k.start.saturating_add(len) > start => k.start,
                (true, Some(k), Some(len)) => {
                    let len = len.min(start - k.start).max(1);
                    let mut at = k.start;
                    let mut shared_inside = false;
                    while at < k.start + len && !shared_inside {
                        let (shared, run) = shared_run(&self.sb, &store, at, k.start + len - at)?;
                        shared_inside = shared;
                        at += run.max(1);
                    }
                    if shared_inside {
                        earliest
                    } else {
                        start
                    }
                }
                _ => start,
            }
        };
        let mut damaged = false;
        scan(
            &rmap,
            &store,
            &RmapKey {
                start: from,
                owner: 0,
                offset: 0,
            }
            .encode(),
            &mut |key, value| {
                let (Some(key), Some(record_len), Some(flags)) = (
                    RmapKey::decode(key),
                    value
                        .get(..8)
                        .and_then(|b| b.try_into().ok())
                        .map(u64::from_le_bytes),
                    value
                        .get(8..16)
                        .and_then(|b| b.try_into().ok())
                        .map(u64::from_le_bytes),
                ) else {
                    damaged = true;
                    return ControlFlow::Break(());
                };
                if key.start >= end {
                    return ControlFlow::Break(());
                }
                let record_end = key.start.saturating_add(record_len);
                if record_end <= start {
                    return ControlFlow::Continue(());
                }
                let first = key.start.max(start);
                let metadata = flags & RMAP_METADATA != 0;
                let owned = Owned {
                    start: first,
                    len: record_end.min(end) - first,
                    owner: key.owner,
                    file_block: if metadata {
                        0
                    } else {
                        // A crafted offset must not overflow: the owner's
                        // own lookups bound file blocks.
                        key.offset.saturating_add(first - key.start)
                    },
                    metadata,
                };
                if visit(&owned) {
                    ControlFlow::Continue(())
                } else {
                    ControlFlow::Break(())
                }
            },
        )?;
        if damaged {
            return Err(Error::Corrupt(self.sb.rmap_root, Damage::Record));
        }
        Ok(())
    }

    /// fsck's repair of the free-space maps: each data-area block is marked
    /// in use exactly when the reverse map gives it an owner (a leaked
    /// block is freed; an owned block marked free, which could be handed
    /// out twice, is marked used), the summary is recounted and the
    /// superblock's free-block and inode counts are recomputed. Returns the
    /// blocks whose state changed. The trees themselves must be sound (the
    /// checks run first).
    pub fn repair_space(&mut self) -> Result<u64, Error> {
        let layout = self.sb.layout;
        let mut changed = 0u64;
        let first_chunk = layout.data_start / CHUNK_BLOCKS;
        let chunks = layout.block_count.div_ceil(CHUNK_BLOCKS);
        let mut free_total = 0u64;
        for chunk in first_chunk..chunks {
            let base = chunk * CHUNK_BLOCKS;
            let mut owned = [0u64; (CHUNK_BLOCKS / 64) as usize];
            self.owners(base, CHUNK_BLOCKS, &mut |o| {
                for block in o.start..o.start + o.len {
                    if let Some(word) = owned.get_mut(((block - base) / 64) as usize) {
                        *word |= 1 << ((block - base) % 64);
                    }
                }
                true
            })?;
            // Past the end of the filesystem counts as used.
            for block in base..base + CHUNK_BLOCKS {
                if block >= layout.block_count {
                    if let Some(word) = owned.get_mut(((block - base) / 64) as usize) {
                        *word |= 1 << ((block - base) % 64);
                    }
                }
            }
            let free = CHUNK_BLOCKS - owned.iter().map(|w| u64::from(w.count_ones())).sum::<u64>();
            free_total += free;
            let fixed = self.transact(|tx| {
                tx.hold_space();
                let mut fixed = 0u64;
                for (i, &want) in owned.iter().enumerate() {
                    let index = base / 64 + i as u64;
                    let have = tx.word(index)?;
                    if have != want {
                        fixed += u64::from((have ^ want).count_ones());
                        tx.set_word(index, want)?;
                    }
                }
                if u64::from(tx.chunk_free(chunk)?) != free {
                    tx.set_chunk_free(chunk, free as u32)?;
                }
                Ok(fixed)
            })?;
            changed += fixed;
        }
        let tree = Tree::<InodeChunks>::open(self.sb.inode_tree_root, OWNER_INODE_CHUNKS);
        let mut inodes = 0u64;
        scan(&tree, &self.committed(), &block_key(0), &mut |_, value| {
            inodes += value
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .map_or(0, |b| u64::from(u64::from_le_bytes(b).count_ones()));
            ControlFlow::Continue(())
        })?;
        self.transact(|tx| {
            let sb = tx.sb_mut();
            sb.free_blocks = free_total;
            sb.inode_count = inodes;
            Ok(())
        })?;
        Ok(changed)
    }
}
