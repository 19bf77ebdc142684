// SPDX-License-Identifier: GPL-2.0

//! Inode records: finding a free slot in the inode chunks and giving it
//! back, reading an inode, and changing its attributes.

use core::ops::ControlFlow;

use super::extents::zero_blocks;
use super::{TxNodes, Volume};
use crate::logic::format::{
    btree::{Nodes, Tree},
    get_u64,
    inode::{self, FileType, Inode, Timestamp, CHUNK_INODE_BLOCKS, MAX_FILE_SIZE},
    kinds::{block_key, parse_block_key, InodeChunks, RmapKey, OWNER_INODE_CHUNKS, RMAP_METADATA},
    space,
    superblock::Superblock,
    BLOCK_SIZE,
};
use crate::logic::fs::{
    tx::{scan, slot_in_use, tree_error, TreeStore, Tx},
    AttrChange, Damage, Error, Media, Scratch,
};

/// Whether `inode` is a directory.
pub(super) fn is_dir(inode: &Inode) -> bool {
    inode.file_type() == Some(FileType::Directory)
}

/// Applies `change` to `inode`'s attributes other than the size.
fn apply_attrs(inode: &mut Inode, change: &AttrChange) {
    if let Some(mode) = change.mode {
        inode.mode = (inode.mode & inode::S_IFMT) | (mode & 0o7777);
    }
    if let Some(uid) = change.uid {
        inode.uid = uid;
    }
    if let Some(gid) = change.gid {
        inode.gid = gid;
    }
    if let Some(t) = change.atime {
        inode.atime = t;
    }
    if let Some(t) = change.mtime {
        inode.mtime = t;
    }
    if let Some(t) = change.ctime {
        inode.ctime = t;
    }
}

/// Takes a free inode slot, from a chunk with room (searching from where
/// the last one was found) or a new chunk. Returns the inode.
pub(super) fn allocate_inode<M: Media>(tx: &mut Tx<'_, M>) -> Result<u64, Error> {
    let hint = tx.hold_space().chunk_hint;
    let mut tree = Tree::<InodeChunks>::open(tx.sb().inode_tree_root, OWNER_INODE_CHUNKS);
    let mut found = None;
    for from in [hint, 0] {
        scan(&tree, &TxNodes(tx), &block_key(from), &mut |key, value| {
            let bits = value
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .map_or(u64::MAX, u64::from_le_bytes);
            if bits != u64::MAX {
                found = parse_block_key(key).map(|chunk| (chunk, bits));
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        })?;
        if found.is_some() {
            break;
        }
    }
    let (chunk, bits) = match found {
        Some(found) => found,
        None => (new_inode_chunk(tx)?, 0),
    };
    let slot = u64::from(bits.trailing_ones());
    let ino = inode::ino(chunk, slot).ok_or(Error::Corrupt(chunk, Damage::Record))?;
    // The slot must really be free: a damaged map must not hand out a
    // live inode twice.
    match tx.inode_record(ino) {
        Err(Error::NotFound) => {}
        Ok(_) => return Err(Error::Corrupt(chunk, Damage::Record)),
        Err(e) => return Err(e),
    }
    let mut value = [0u8; 16];
    value[..8].copy_from_slice(&(bits | 1 << slot).to_le_bytes());
    let mut store = TreeStore::new(tx, OWNER_INODE_CHUNKS);
    tree.insert(&mut store, &block_key(chunk), &value)
        .map_err(tree_error)?;
    tx.sb_mut().inode_tree_root = tree.root;
    tx.inode_chunk = Some(chunk);
    Ok(ino)
}

/// Allocates and zeroes a new inode chunk (four contiguous blocks).
fn new_inode_chunk<M: Media>(tx: &mut Tx<'_, M>) -> Result<u64, Error> {
    let extent = tx.allocate_contiguous(CHUNK_INODE_BLOCKS, tx.sb().layout.data_start)?;
    zero_blocks(tx, extent.start, extent.len)?;
    tx.rmap_add(
        RmapKey {
            start: extent.start,
            owner: OWNER_INODE_CHUNKS,
            offset: 0,
        },
        CHUNK_INODE_BLOCKS,
        RMAP_METADATA,
    )?;
    Ok(extent.start)
}

/// Gives inode `ino`'s slot back; an emptied chunk (other than the root's)
/// is freed.
pub(super) fn free_inode_slot<M: Media>(tx: &mut Tx<'_, M>, ino: u64) -> Result<(), Error> {
    let location = inode::location(ino).ok_or(Error::NotFound)?;
    tx.hold_space();
    let chunk = location.chunk;
    let mut tree = Tree::<InodeChunks>::open(tx.sb().inode_tree_root, OWNER_INODE_CHUNKS);
    let mut value = [0u8; 16];
    if !tree
        .get(&TxNodes(tx), &block_key(chunk), &mut value)
        .map_err(tree_error)?
    {
        return Err(Error::Corrupt(chunk, Damage::Record));
    }
    let bits = u64::from_le_bytes(value[..8].try_into().map_err(|_| Error::Invalid)?);
    let remaining = bits & !(1 << location.slot);
    let root_chunk = inode::location(tx.sb().root_ino).map(|l| l.chunk);
    let mut store = TreeStore::new(tx, OWNER_INODE_CHUNKS);
    if remaining == 0 && root_chunk != Some(chunk) {
        if !tree
            .remove(&mut store, &block_key(chunk))
            .map_err(tree_error)?
        {
            return Err(Error::Corrupt(tree.root, Damage::Record));
        }
        tx.sb_mut().inode_tree_root = tree.root;
        tx.free(space::Extent {
            start: chunk,
            len: CHUNK_INODE_BLOCKS,
        })?;
        tx.rmap_remove(
            RmapKey {
                start: chunk,
                owner: OWNER_INODE_CHUNKS,
                offset: 0,
            },
            CHUNK_INODE_BLOCKS,
        )?;
    } else {
        value[..8].copy_from_slice(&remaining.to_le_bytes());
        tree.insert(&mut store, &block_key(chunk), &value)
            .map_err(tree_error)?;
        tx.sb_mut().inode_tree_root = tree.root;
    }
    Ok(())
}

/// The inodes in use, as the inode-chunk tree marks their slots (orphans
/// waiting to be freed included): O(inodes / 64).
pub(super) fn inodes_in_use<N: Nodes<Error = Error>>(
    store: &N,
    sb: &Superblock,
) -> Result<u64, Error> {
    let tree = Tree::<InodeChunks>::open(sb.inode_tree_root, OWNER_INODE_CHUNKS);
    let mut count = 0u64;
    scan(&tree, store, &block_key(0), &mut |_, value| {
        let bits = get_u64(value, 0).unwrap_or(0);
        count = count.saturating_add(u64::from(bits.count_ones()));
        ControlFlow::Continue(())
    })?;
    Ok(count)
}

impl<M: Media, S: Scratch> Volume<M, S> {
    /// The record of inode `ino` (`NotFound` for a free slot or a number
    /// that cannot be an inode).
    pub fn inode(&self, ino: u64) -> Result<Inode, Error> {
        self.check_live()?;
        if let Some(inode) = self.inodes().get(ino) {
            return Ok(inode);
        }
        if !slot_in_use(&self.committed(), &self.sb, ino)? {
            return Err(Error::NotFound);
        }
        let inode = self.committed().inode(ino)?;
        self.inodes().put(ino, &inode);
        Ok(inode)
    }

    /// [`Self::inode`] without the record cache, for tests to compare with.
    #[cfg(test)]
    pub(crate) fn inode_uncached(&self, ino: u64) -> Result<Inode, Error> {
        if !slot_in_use(&self.committed(), &self.sb, ino)? {
            return Err(Error::NotFound);
        }
        self.committed().inode(ino)
    }

    /// Applies `change` (a size change truncates or extends).
    pub fn set_attr(&mut self, ino: u64, change: &AttrChange) -> Result<Inode, Error> {
        let old = self.inode(ino)?;
        let new_size = change.size.unwrap_or(old.size);
        if new_size > MAX_FILE_SIZE {
            return Err(Error::TooBig);
        }
        if change.size.is_some() && old.file_type() != Some(FileType::Regular) {
            return Err(if is_dir(&old) {
                Error::IsDir
            } else {
                Error::Invalid
            });
        }
        if new_size < old.size {
            // Zero the rest of the new last block so that a later extension
            // reads zeros there; blocks past it are freed below.
            self.zero_tail(ino, new_size)?;
        } else if new_size > old.size {
            self.zero_past_eof(ino, new_size)?;
        }
        let inode = self.transact(|tx| {
            let mut inode = tx.inode(ino)?;
            apply_attrs(&mut inode, change);
            inode.size = new_size;
            tx.put_inode(ino, &inode)?;
            Ok(inode)
        })?;
        if new_size < old.size {
            return self.trim(ino, new_size.div_ceil(BLOCK_SIZE as u64), false);
        }
        Ok(inode)
    }

    /// `ino`, which must be a regular file.
    pub(super) fn regular(&self, ino: u64) -> Result<Inode, Error> {
        let inode = self.inode(ino)?;
        match inode.file_type() {
            Some(FileType::Regular) => Ok(inode),
            Some(FileType::Directory) => Err(Error::IsDir),
            _ => Err(Error::Invalid),
        }
    }

    /// Sets mtime and ctime to `now`, and the size to at least `grow_to`.
    pub(super) fn modified(
        &mut self,
        ino: u64,
        grow_to: Option<u64>,
        now: Timestamp,
    ) -> Result<Inode, Error> {
        // The kernel's clock is coarse (a tick): a burst of writes mostly
        // finds the times already at `now`. Then nothing changes and no
        // transaction is needed, as the VFS skips updating times that are
        // current (`inode_needs_update_time`).
        let current = self.inode(ino)?;
        if grow_to.unwrap_or(0) <= current.size && current.mtime == now && current.ctime == now {
            return Ok(current);
        }
        self.transact(|tx| {
            let mut inode = tx.inode(ino)?;
            inode.size = inode.size.max(grow_to.unwrap_or(0));
            inode.mtime = now;
            inode.ctime = now;
            tx.put_inode(ino, &inode)?;
            Ok(inode)
        })
    }
}
