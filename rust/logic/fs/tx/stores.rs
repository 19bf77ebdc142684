// SPDX-License-Identifier: GPL-2.0

//! The B+tree's view of the filesystem: the committed state (read through
//! the metadata cache) and a transaction's tree store (reads see its own
//! shadows; node allocations and frees go through its allocator), inode
//! records and slots read through either, and scans.

use crate::logic::fs::{cache::BlockCache, checked::CheckedNodes, Damage, Error, Media};

use super::{tree_error, Tx};
use crate::logic::format::{
    btree::{Blocks, Nodes, Tree, TreeKind, Visitor},
    get_u64,
    inode::{self, Inode, INODE_BYTES},
    kinds::{block_key, InodeChunks, RmapKey, OWNER_INODE_CHUNKS, OWNER_REFCOUNTS, RMAP_METADATA},
    layout::Layout,
    space::Extent,
    superblock::Superblock,
    BLOCK_SIZE,
};

/// Reads blocks of the committed state.
pub(in crate::logic::fs) struct Committed<'a, M: Media> {
    media: &'a M,
    cache: BlockCache<'a>,
    checked: CheckedNodes<'a>,
    /// Blocks that may hold tree nodes (the data area, once known).
    nodes: core::ops::Range<u64>,
}

impl<'a, M: Media> Committed<'a, M> {
    /// A reader through `cache` that trusts the nodes in `checked`.
    pub(in crate::logic::fs) fn new(
        media: &'a M,
        cache: BlockCache<'a>,
        checked: CheckedNodes<'a>,
    ) -> Self {
        Self {
            media,
            cache,
            checked,
            nodes: 0..u64::MAX,
        }
    }

    /// The same reader, following tree pointers only into `layout`'s data
    /// area.
    pub(in crate::logic::fs) fn in_area(self, layout: &Layout) -> Self {
        Self {
            nodes: layout.data_start..layout.block_count,
            ..self
        }
    }

    /// A reader that copies every node from the media and checks it in
    /// full (fsck, mount, tests).
    pub(in crate::logic::fs) fn checking_all(media: &'a M) -> Self {
        Self::new(media, BlockCache::none(), CheckedNodes::none())
    }

    /// Inode `ino`'s record.
    pub(in crate::logic::fs) fn inode(&self, ino: u64) -> Result<Inode, Error> {
        read_inode(
            |block, offset, buf| self.cache.read(self.media, block, offset, buf),
            ino,
        )
    }
}

impl<M: Media> Nodes for Committed<'_, M> {
    type Error = Error;
    fn read(&self, block: u64, offset: usize, buf: &mut [u8]) -> Result<(), Error> {
        self.cache.read(self.media, block, offset, buf)
    }
    fn look(&self, block: u64, look: &mut dyn FnMut(&[u8; BLOCK_SIZE])) -> Result<bool, Error> {
        self.cache.look(self.media, block, look)
    }
    fn may_hold_node(&self, block: u64) -> bool {
        self.nodes.contains(&block)
    }
    fn checked(&self, block: u64) -> bool {
        self.checked.contains(block)
    }
    fn set_checked(&self, block: u64) {
        self.checked.insert(block);
    }
}

/// Where inode `ino` lives, if it can live there: inside an inode chunk's
/// place in the data area (`NotFound` otherwise, for numbers taken from
/// damaged or crafted records).
pub(in crate::logic::fs) fn inode_location(
    layout: &Layout,
    ino: u64,
) -> Result<inode::Location, Error> {
    let location = inode::location(ino).ok_or(Error::NotFound)?;
    let chunk_end = location.chunk.checked_add(inode::CHUNK_INODE_BLOCKS);
    if location.chunk < layout.data_start || !chunk_end.is_some_and(|end| end <= layout.block_count)
    {
        return Err(Error::NotFound);
    }
    Ok(location)
}

/// Whether inode `ino`'s slot is marked in use in a recorded inode chunk:
/// a damaged directory entry or parent pointer must not make a data block
/// pass for an inode.
pub(in crate::logic::fs) fn slot_in_use<S: Nodes<Error = Error>>(
    store: &S,
    sb: &Superblock,
    ino: u64,
) -> Result<bool, Error> {
    let location = match inode_location(&sb.layout, ino) {
        Ok(location) => location,
        Err(Error::NotFound) => return Ok(false),
        Err(e) => return Err(e),
    };
    let chunks = Tree::<InodeChunks>::open(sb.inode_tree_root, OWNER_INODE_CHUNKS);
    let mut value = [0u8; 16];
    let recorded = chunks
        .get(store, &block_key(location.chunk), &mut value)
        .map_err(tree_error)?;
    let bits = get_u64(&value, 0).ok_or(Error::Invalid)?;
    Ok(recorded && bits & 1 << location.slot != 0)
}

/// Reads inode `ino` through `read(block, offset, buf)`, which copies bytes
/// of a block.
pub(in crate::logic::fs) fn read_inode(
    read: impl FnOnce(u64, usize, &mut [u8]) -> Result<(), Error>,
    ino: u64,
) -> Result<Inode, Error> {
    let location = inode::location(ino).ok_or(Error::NotFound)?;
    let mut record = [0u8; INODE_BYTES];
    read(location.block, location.offset, &mut record)?;
    match Inode::decode(ino, &record) {
        Ok(Some(inode)) => Ok(inode),
        Ok(None) => Err(Error::NotFound),
        Err(_) => Err(Error::Corrupt(location.block, Damage::Inode)),
    }
}

/// A tree's view of a transaction: nodes it allocates belong to `owner`
/// and are counted, so the owning inode's block count can follow.
pub(in crate::logic::fs) struct TreeStore<'t, 'a, M: Media> {
    tx: &'t mut Tx<'a, M>,
    owner: u64,
    /// Nodes allocated minus nodes freed.
    pub(in crate::logic::fs) node_delta: i64,
}

impl<'t, 'a, M: Media> TreeStore<'t, 'a, M> {
    pub(in crate::logic::fs) fn new(tx: &'t mut Tx<'a, M>, owner: u64) -> Self {
        // Not known yet whether the tree will change, but a store is
        // opened to change it: an inode's runs may be cached.
        if owner < OWNER_REFCOUNTS {
            tx.touched.changing_tree(owner);
        } else {
            // The inode-chunk, reverse-map and refcount trees are space.
            tx.hold_space();
        }
        Self {
            tx,
            owner,
            node_delta: 0,
        }
    }
}

impl<M: Media> Nodes for TreeStore<'_, '_, M> {
    type Error = Error;
    fn read(&self, block: u64, offset: usize, buf: &mut [u8]) -> Result<(), Error> {
        self.tx.read(block, offset, buf)
    }
    fn look(&self, block: u64, look: &mut dyn FnMut(&[u8; BLOCK_SIZE])) -> Result<bool, Error> {
        self.tx.look(block, look)
    }
    fn may_hold_node(&self, block: u64) -> bool {
        self.tx.may_hold_node(block)
    }
    fn checked(&self, block: u64) -> bool {
        self.tx.checked(block)
    }
    fn set_checked(&self, block: u64) {
        self.tx.set_checked(block);
    }
    fn seal_pending(&self, block: u64) -> bool {
        self.tx.seal_pending(block)
    }
}

impl<M: Media> Blocks for TreeStore<'_, '_, M> {
    fn node_mut(&mut self, block: u64) -> Result<&mut [u8; BLOCK_SIZE], Error> {
        self.tx.write(block)
    }
    fn seal(&mut self, block: u64) -> Result<(), Error> {
        self.tx.seal_at_commit(block)
    }
    fn allocate(&mut self) -> Result<u64, Error> {
        let goal = self.tx.layout.data_start;
        let extent = self.tx.allocate_data(1, goal)?;
        self.tx.rmap_add(
            RmapKey {
                start: extent.start,
                owner: self.owner,
                offset: 0,
            },
            1,
            RMAP_METADATA,
        )?;
        self.node_delta += 1;
        Ok(extent.start)
    }
    fn free(&mut self, block: u64) -> Result<(), Error> {
        self.tx.free(Extent {
            start: block,
            len: 1,
        })?;
        self.tx.rmap_remove(
            RmapKey {
                start: block,
                owner: self.owner,
                offset: 0,
            },
            1,
        )?;
        self.node_delta -= 1;
        Ok(())
    }
}

/// Visits the entries of `tree` from `from` with a typed visitor.
pub(in crate::logic::fs) fn scan<K: TreeKind, S: Nodes<Error = Error>>(
    tree: &Tree<K>,
    store: &S,
    from: &[u8],
    visit: &mut Visitor<'_>,
) -> Result<(), Error> {
    let _stopped_early = tree.scan(store, from, visit).map_err(tree_error)?;
    Ok(())
}
