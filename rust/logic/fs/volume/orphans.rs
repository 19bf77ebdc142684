// SPDX-License-Identifier: GPL-2.0

//! Inodes with no links left: freed when their last user is gone, or at
//! mount after a crash.

use core::{ops::ControlFlow, sync::atomic::Ordering};

use super::inodes::free_inode_slot;
use super::inodes::is_dir;
use super::Volume;
use crate::logic::format::{
    btree::Tree,
    inode::{self, INODES_PER_CHUNK},
    kinds::{block_key, parse_block_key, InodeChunks, RmapKey, OWNER_INODE_CHUNKS},
    space,
};
use crate::logic::fs::{
    tx::{scan, Committed, Tx},
    Damage, Error, Media, Scratch,
};

/// Evicted inodes freed together in one transaction. Freeing an empty
/// file (its record, its inode slot, the superblock's count) is a
/// transaction as large as the unlink that made it an orphan; sixteen of
/// them in one cost little more than one. Until then each is an orphan
/// (no links, slot in use): a crash leaves it to the next mount, which
/// frees orphans, and `free_evicted` runs before the filesystem is marked
/// clean and before `statfs` counts inodes. Their data is freed at
/// eviction; what waits is a record, a slot and at most one tree node each.
pub const EVICT_BATCH: usize = 16;

/// Inodes evicted and not freed yet.
#[derive(Default)]
pub(super) struct Evicted {
    inos: [u64; EVICT_BATCH],
    count: usize,
}

impl Evicted {
    fn as_slice(&self) -> &[u64] {
        self.inos.get(..self.count).unwrap_or(&[])
    }
}

/// Frees orphan `ino`'s record, slot and tree root in `tx` (its data is
/// freed already).
fn release<M: Media>(tx: &mut Tx<'_, M>, ino: u64) -> Result<(), Error> {
    let inode = tx.inode(ino)?;
    if inode.nlink != 0 {
        return Err(Error::Corrupt(ino >> 6, Damage::Inode));
    }
    if inode.map_root != 0 {
        // An empty directory's (or file's) single root node.
        tx.free(space::Extent {
            start: inode.map_root,
            len: 1,
        })?;
        tx.rmap_remove(
            RmapKey {
                start: inode.map_root,
                owner: ino,
                offset: 0,
            },
            1,
        )?;
    }
    tx.clear_inode(ino)?;
    free_inode_slot(tx, ino)?;
    let count = &mut tx.sb_mut().inode_count;
    *count = count.saturating_sub(1);
    Ok(())
}

impl<M: Media, S: Scratch> Volume<M, S> {
    /// Frees `ino`'s blocks if it has no links left (called when the last
    /// user is gone) and queues the inode itself for [`Self::free_evicted`];
    /// nothing otherwise. `true` if blocks were freed, the file's or a
    /// batch's (compaction may find chunks worth emptying).
    pub fn evict(&mut self, ino: u64) -> Result<bool, Error> {
        // Its reservations ended at close; a number used again must not
        // find any, nor regions waiting to be placed whole.
        self.end_reservations(ino);
        self.with_lists(|lists| lists.misplaced.forget(ino));
        let inode = self.inode(ino)?;
        if inode.nlink != 0 {
            return Ok(false);
        }
        if is_dir(&inode) && inode.size != 0 {
            return Err(Error::Corrupt(inode.map_root, Damage::Record));
        }
        let mut freed_blocks = !is_dir(&inode) && inode.map_root != 0;
        if freed_blocks {
            self.trim(ino, 0, true)?;
        }
        // What the transaction would refuse, refused now rather than
        // queued.
        self.check_live()?;
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        // Queued now or before (`None`); but a full batch is taken off the
        // list first (under its lock, so that it is freed once) and freed:
        // inode chunks may empty, and nodes go.
        while let Some(batch) = self.with_lists(|lists| {
            let evicted = &mut lists.evicted;
            if evicted.as_slice().contains(&ino) {
                return None;
            }
            if evicted.count == EVICT_BATCH {
                return Some(core::mem::take(evicted));
            }
            if let Some(slot) = evicted.inos.get_mut(evicted.count) {
                *slot = ino;
                evicted.count += 1;
            }
            None
        }) {
            self.free_batch(&batch)?;
            freed_blocks = true;
        }
        Ok(freed_blocks)
    }

    /// `freed` orphans were freed.
    fn forget_orphans(&self, freed: u64) {
        let _ = self
            .orphans
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                Some(n.saturating_sub(freed))
            });
    }

    /// Whether evicted inodes wait to be freed.
    pub(super) fn evicted_waiting(&self) -> bool {
        self.with_lists(|lists| lists.evicted.count > 0)
    }

    /// Frees the inodes [`Self::evict`] queued: in one transaction, or one
    /// by one if they do not fit in one. On an error the rest stay
    /// orphans, for the next mount.
    pub fn free_evicted(&mut self) -> Result<(), Error> {
        let evicted = self.with_lists(|lists| core::mem::take(&mut lists.evicted));
        self.free_batch(&evicted)
    }

    /// Frees the inodes of `evicted`, taken off the list.
    fn free_batch(&mut self, evicted: &Evicted) -> Result<(), Error> {
        let inos = evicted.as_slice();
        if inos.is_empty() {
            return Ok(());
        }
        match self.transact(|tx| inos.iter().try_for_each(|&ino| release(tx, ino))) {
            Ok(()) => {}
            Err(Error::NoSpace) if inos.len() > 1 => {
                for &ino in inos {
                    self.transact(|tx| release(tx, ino))?;
                    self.forget_orphans(1);
                }
                return Ok(());
            }
            Err(e) => return Err(e),
        }
        self.forget_orphans(inos.len() as u64);
        Ok(())
    }

    /// Frees every inode with no links (left by a crash while they were
    /// open). Runs at mount after an unclean shutdown.
    pub(super) fn free_orphans(&mut self) -> Result<(), Error> {
        let tree = Tree::<InodeChunks>::open(self.sb.inode_tree_root, OWNER_INODE_CHUNKS);
        let mut from = 0u64;
        loop {
            let mut batch = [0u64; 64];
            let mut count = 0;
            let mut next = None;
            let media = &self.media;
            let mut failure = None;
            scan(
                &tree,
                &Committed::checking_all(media).in_area(&self.sb.layout),
                &block_key(from),
                &mut |key, value| {
                    let chunk = parse_block_key(key).unwrap_or(0);
                    let bits = value
                        .get(..8)
                        .and_then(|b| b.try_into().ok())
                        .map_or(0, u64::from_le_bytes);
                    for slot in 0..INODES_PER_CHUNK {
                        if bits & (1 << slot) == 0 {
                            continue;
                        }
                        let Some(ino) = inode::ino(chunk, slot) else {
                            continue;
                        };
                        match Committed::checking_all(media).inode(ino) {
                            Ok(inode) if inode.nlink == 0 => {
                                if let Some(slot) = batch.get_mut(count) {
                                    *slot = ino;
                                    count += 1;
                                }
                            }
                            Ok(_) => {}
                            Err(e) => failure = Some(e),
                        }
                    }
                    if count + INODES_PER_CHUNK as usize > batch.len() {
                        next = Some(chunk + 1);
                        return ControlFlow::Break(());
                    }
                    ControlFlow::Continue(())
                },
            )?;
            if let Some(e) = failure {
                return Err(e);
            }
            for &ino in batch.iter().take(count) {
                // An orphan until freed: if this fails, the filesystem is
                // not marked clean and the next mount tries again.
                self.orphans.fetch_add(1, Ordering::AcqRel);
                self.evict(ino)?;
            }
            self.free_evicted()?;
            match next {
                Some(n) => from = n,
                None => return Ok(()),
            }
        }
    }
}
