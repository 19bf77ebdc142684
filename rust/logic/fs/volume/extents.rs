// SPDX-License-Identifier: GPL-2.0

//! A file's block map as records: finding the extent at a block,
//! inserting, splitting, converting and replacing extents, and where new
//! blocks for a file should come from.

use core::ops::ControlFlow;

use super::inodes::is_dir;
use super::reflink::{release, shared_run};
use super::TxNodes;
use crate::logic::format::{
    btree::{Nodes, Tree},
    inode::{FileType, Inode, MAX_FILE_SIZE},
    kinds::{block_key, parse_block_key, Extent, Extents, RmapKey, EXTENT_UNWRITTEN},
    layout::Layout,
    superblock::Superblock,
    BLOCK_SHIFT, BLOCK_SIZE, CHUNK_BLOCKS,
};
use crate::logic::fs::{
    tx::{scan, tree_error, TreeStore, Tx},
    Damage, Error, MapKind, Mapping, Media, MediaFault,
};

/// Which blocks of a range [`Volume::unmap_range`] releases.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Blocks {
    /// Every block.
    All,
    /// Written blocks only (unwritten ones are preallocations to keep).
    Written,
}

impl Blocks {
    /// Whether an extent with `flags` is among these blocks.
    pub(super) fn takes(self, flags: u32) -> bool {
        match self {
            Blocks::All => true,
            Blocks::Written => flags & EXTENT_UNWRITTEN == 0,
        }
    }
}

/// Largest file in blocks.
pub(super) const MAX_FILE_BLOCKS: u64 = MAX_FILE_SIZE >> BLOCK_SHIFT;

/// Largest extent a single allocation makes (a transaction's deferred work
/// stays small, and lengths fit the extent record).
pub(super) const MAX_ALLOCATION: u64 = 64 * CHUNK_BLOCKS;

/// The extent containing file block `block`, or the hole there and where
/// the next extent starts.
pub(super) enum Lookup {
    Extent(u64, Extent),
    Hole(Option<u64>),
}

pub(super) fn find_extent<S: Nodes<Error = Error>>(
    tree: &Tree<Extents>,
    store: &S,
    layout: &Layout,
    block: u64,
) -> Result<Lookup, Error> {
    let mut key = [0u8; 8];
    let mut value = [0u8; 16];
    if tree
        .last_at_or_before(store, &block_key(block), &mut key, &mut value)
        .map_err(tree_error)?
    {
        let start = parse_block_key(&key).ok_or(Error::Invalid)?;
        let extent = valid_extent(tree, layout, start, &value)?;
        if block < start + u64::from(extent.len) {
            return Ok(Lookup::Extent(start, extent));
        }
    }
    let mut next = None;
    scan(tree, store, &block_key(block), &mut |key, _| {
        next = parse_block_key(key);
        ControlFlow::Break(())
    })?;
    // The next extent starts after `block`, or the tree's order is broken
    // (a hole that ends where it starts would stop its callers' loops).
    if next.is_some_and(|next| next <= block) {
        return Err(Error::Corrupt(tree.root, Damage::Record));
    }
    Ok(Lookup::Hole(next))
}

/// The extent stored under file block `start`, if it makes sense: not
/// empty, its file range inside the largest file and its device range
/// inside the data area. Every extent read from the media passes here
/// before any arithmetic on it.
fn valid_extent(
    tree: &Tree<Extents>,
    layout: &Layout,
    start: u64,
    value: &[u8],
) -> Result<Extent, Error> {
    let damaged = Error::Corrupt(tree.root, Damage::Record);
    let extent = Extent::decode(value).ok_or(damaged)?;
    let len = u64::from(extent.len);
    match (start.checked_add(len), extent.physical.checked_add(len)) {
        (Some(end), Some(device_end))
            if len > 0
                && end <= MAX_FILE_BLOCKS
                && extent.physical >= layout.data_start
                && device_end <= layout.block_count =>
        {
            Ok(extent)
        }
        _ => Err(damaged),
    }
}

/// The last extent of a file.
pub(super) fn last_extent<S: Nodes<Error = Error>>(
    tree: &Tree<Extents>,
    store: &S,
    layout: &Layout,
) -> Result<Option<(u64, Extent)>, Error> {
    let mut key = [0u8; 8];
    let mut value = [0u8; 16];
    if !tree
        .last_at_or_before(store, &block_key(u64::MAX), &mut key, &mut value)
        .map_err(tree_error)?
    {
        return Ok(None);
    }
    let start = parse_block_key(&key).ok_or(Error::Invalid)?;
    let extent = valid_extent(tree, layout, start, &value)?;
    Ok(Some((start, extent)))
}

/// The extent tree of file `ino`, created if it has none yet. A created
/// root is a node of the transaction: the caller puts `inode` (whose
/// `map_root` this sets) in the same transaction, or the node stays
/// allocated with nothing pointing at it. A caller that may find nothing
/// to do takes [`existing_extent_tree`].
pub(super) fn extent_tree<M: Media>(
    tx: &mut Tx<'_, M>,
    inode: &mut Inode,
    ino: u64,
) -> Result<Tree<Extents>, Error> {
    if inode.map_root != 0 {
        return Ok(Tree::open(inode.map_root, ino));
    }
    let mut store = TreeStore::new(tx, ino);
    let tree = Tree::<Extents>::create(&mut store, ino).map_err(tree_error)?;
    inode.blocks = inode.blocks.saturating_add_signed(store.node_delta);
    inode.map_root = tree.root;
    Ok(tree)
}

/// The extent tree of file `ino` if it has one (no blocks mapped ever, or
/// since it was truncated to nothing: none).
pub(super) fn existing_extent_tree(inode: &Inode, ino: u64) -> Option<Tree<Extents>> {
    (inode.map_root != 0).then(|| Tree::open(inode.map_root, ino))
}

/// The mapping of `file_block..+len` of `inode` as `store` sees it.
pub(super) fn map_in<S: Nodes<Error = Error>>(
    sb: &Superblock,
    store: &S,
    ino: u64,
    inode: &Inode,
    file_block: u64,
    len: u64,
) -> Result<Mapping, Error> {
    let hole = |len| Mapping {
        file_block,
        len,
        physical: 0,
        kind: MapKind::Hole,
        new: false,
        shared: false,
        copied: false,
    };
    if inode.file_type() != Some(FileType::Regular) {
        return Err(if is_dir(inode) {
            Error::IsDir
        } else {
            Error::Invalid
        });
    }
    if inode.map_root == 0 {
        return Ok(hole(len));
    }
    let tree = Tree::<Extents>::open(inode.map_root, ino);
    match find_extent(&tree, store, &sb.layout, file_block)? {
        // The next extent starts after `file_block`, or the tree's order
        // is broken (a zero-length hole would loop its callers forever).
        Lookup::Hole(Some(next)) if next <= file_block => {
            Err(Error::Corrupt(tree.root, Damage::Record))
        }
        Lookup::Hole(next) => Ok(hole(next.map_or(len, |n| len.min(n - file_block)))),
        Lookup::Extent(start, extent) => {
            let skip = file_block - start;
            let physical = extent.physical + skip;
            let run = len.min(u64::from(extent.len) - skip);
            let run = contiguous_run(
                &tree,
                store,
                &sb.layout,
                (start, extent),
                file_block,
                run,
                len,
            )?;
            let end = physical.checked_add(run).ok_or(Error::Invalid)?;
            if physical < sb.layout.data_start || end > sb.layout.block_count {
                return Err(Error::Corrupt(tree.root, Damage::Record));
            }
            let (shared, run) = shared_run(sb, store, physical, run)?;
            Ok(Mapping {
                file_block,
                len: run,
                physical,
                kind: if extent.flags & EXTENT_UNWRITTEN != 0 {
                    MapKind::Unwritten
                } else {
                    MapKind::Data
                },
                new: false,
                shared,
                copied: false,
            })
        }
    }
}

/// The last extent that starts before file block `block`.
pub(super) fn extent_before<S: Nodes<Error = Error>>(
    tree: &Tree<Extents>,
    store: &S,
    layout: &Layout,
    block: u64,
) -> Result<Option<(u64, Extent)>, Error> {
    let mut key = [0u8; 8];
    let mut value = [0u8; 16];
    if block == 0
        || !tree
            .last_at_or_before(store, &block_key(block - 1), &mut key, &mut value)
            .map_err(tree_error)?
    {
        return Ok(None);
    }
    let start = parse_block_key(&key).ok_or(Error::Invalid)?;
    Ok(valid_extent(tree, layout, start, &value)
        .ok()
        .map(|extent| (start, extent)))
}

/// Records an answer spans at most: enough for 2 MiB made of the pieces
/// that unwritten conversions and writes in any order leave.
const SPAN_RECORDS: usize = 64;

/// `run` blocks from file block `file_block` of extent (`start`,
/// `extent`) answer a lookup of `len` blocks; extends them over the
/// records after it that continue them on the device with the same flags,
/// up to `len`: blocks that are one run on the device are one answer (one
/// PMD) however many records hold them.
fn contiguous_run<S: Nodes<Error = Error>>(
    tree: &Tree<Extents>,
    store: &S,
    layout: &Layout,
    (start, extent): (u64, Extent),
    file_block: u64,
    mut run: u64,
    len: u64,
) -> Result<u64, Error> {
    let mut next_start = start + u64::from(extent.len);
    let mut next_physical = extent.physical + u64::from(extent.len);
    // An answer may become a record (reflink): no longer than one.
    let len = len.min(MAX_ALLOCATION);
    for _ in 0..SPAN_RECORDS {
        if run >= len || file_block + run != next_start {
            break;
        }
        let Lookup::Extent(following, more) = find_extent(tree, store, layout, next_start)? else {
            break;
        };
        if following != next_start || more.physical != next_physical || more.flags != extent.flags {
            break;
        }
        run += (len - run).min(u64::from(more.len));
        next_start += u64::from(more.len);
        next_physical += u64::from(more.len);
    }
    Ok(run)
}

/// Where to allocate for file block `file_block`: right after the blocks
/// of the extent before it, so that sequential writes stay contiguous.
pub(super) fn goal_for<S: Nodes<Error = Error>>(
    tree: &Tree<Extents>,
    store: &S,
    layout: &Layout,
    file_block: u64,
) -> Result<u64, Error> {
    // A goal past the device is clamped by the allocator.
    Ok(extent_before(tree, store, layout, file_block)?
        .map_or(layout.data_start, |(start, extent)| {
            extent.physical.saturating_add(file_block - start)
        }))
}

/// Zeroes blocks on the device before the transaction that maps them
/// commits (they are free in the committed state, so nothing sees them).
pub(super) fn zero_blocks<M: Media>(tx: &mut Tx<'_, M>, start: u64, len: u64) -> Result<(), Error> {
    if !tx.media().zero(start << BLOCK_SHIFT, len << BLOCK_SHIFT) {
        return Err(Error::Corrupt(start, Damage::Address));
    }
    tx.wrote_direct = true;
    Ok(())
}

/// Copies blocks on the device (copy-on-write of shared data): `Poisoned`
/// if the source's memory failed (found by the copy, which survives it).
pub(super) fn copy_blocks<M: Media>(
    tx: &mut Tx<'_, M>,
    from: u64,
    to: u64,
    len: u64,
) -> Result<(), Error> {
    let at = |block: u64| block.checked_mul(BLOCK_SIZE as u64);
    let (Some(source), Some(target), Some(bytes)) = (at(from), at(to), at(len)) else {
        return Err(Error::Corrupt(from, Damage::Address));
    };
    match tx.media().copy(source, target, bytes) {
        Ok(()) => {}
        Err(MediaFault::Failed) => return Err(Error::Poisoned),
        Err(MediaFault::OutOfRange) => return Err(Error::Corrupt(from, Damage::Address)),
    }
    tx.wrote_direct = true;
    Ok(())
}

/// Maps file blocks `file_block..+len` to `physical..` in `tree`, merging
/// with the extents before and after when they are contiguous (sequential
/// writes make one extent, not one per write), and records the reverse map.
#[allow(clippy::too_many_arguments)]
pub(super) fn put_extent<M: Media>(
    tx: &mut Tx<'_, M>,
    tree: &mut Tree<Extents>,
    inode: &mut Inode,
    ino: u64,
    file_block: u64,
    physical: u64,
    len: u64,
    flags: u32,
) -> Result<(), Error> {
    let mut key = [0u8; 8];
    let mut value = [0u8; 16];
    let mut start = file_block;
    let mut extent = Extent {
        physical,
        len: u32::try_from(len).map_err(|_| Error::Invalid)?,
        flags,
    };
    if file_block > 0
        && tree
            .last_at_or_before(
                &TxNodes(tx),
                &block_key(file_block - 1),
                &mut key,
                &mut value,
            )
            .map_err(tree_error)?
    {
        let before_start = parse_block_key(&key).ok_or(Error::Invalid)?;
        if let Ok(before) = valid_extent(tree, &tx.sb().layout, before_start, &value) {
            let before_len = u64::from(before.len);
            let merged = before_len + len;
            if before_start + before_len == file_block
                && before.physical + before_len == physical
                && before.flags == flags
                && merged <= MAX_ALLOCATION
            {
                // Only unshared neighbours merge: one extent, one owner.
                let (shared, _) = shared_run(tx.sb(), &TxNodes(tx), before.physical, before_len)?;
                if !shared {
                    start = before_start;
                    extent = Extent {
                        physical: before.physical,
                        len: merged as u32,
                        flags,
                    };
                }
            }
        }
    }
    // And with the extent after: blocks written in any order end as one
    // record, not one per write.
    let end = start + u64::from(extent.len);
    if let Lookup::Extent(after_start, after) =
        find_extent(tree, &TxNodes(tx), &tx.sb().layout, end)?
    {
        let merged = u64::from(extent.len) + u64::from(after.len);
        if after_start == end
            && after.physical == extent.physical + u64::from(extent.len)
            && after.flags == flags
            && merged <= MAX_ALLOCATION
        {
            let (shared, _) =
                shared_run(tx.sb(), &TxNodes(tx), after.physical, u64::from(after.len))?;
            if !shared {
                let mut store = TreeStore::new(tx, ino);
                if !tree
                    .remove(&mut store, &block_key(after_start))
                    .map_err(tree_error)?
                {
                    return Err(Error::Corrupt(tree.root, Damage::Record));
                }
                inode.blocks = inode.blocks.saturating_add_signed(store.node_delta);
                tx.rmap_remove(
                    RmapKey {
                        start: after.physical,
                        owner: ino,
                        offset: after_start,
                    },
                    u64::from(after.len),
                )?;
                extent.len = merged as u32;
            }
        }
    }
    let mut store = TreeStore::new(tx, ino);
    tree.insert(&mut store, &block_key(start), &extent.encode())
        .map_err(tree_error)?;
    inode.blocks = inode.blocks.saturating_add_signed(store.node_delta);
    tx.rmap_add(
        RmapKey {
            start: extent.physical,
            owner: ino,
            offset: start,
        },
        u64::from(extent.len),
        0,
    )
}

/// Clears the unwritten flag of `mapping`'s range, splitting its
/// extents (an answer may span several records).
pub(super) fn convert_unwritten<M: Media>(
    tx: &mut Tx<'_, M>,
    tree: &mut Tree<Extents>,
    inode: &mut Inode,
    ino: u64,
    mapping: &Mapping,
) -> Result<(), Error> {
    for_each_record(
        tx,
        tree,
        mapping.file_block,
        mapping.len,
        |tx, tree, piece| {
            piece.split_out(tx, tree, inode, ino)?;
            put_extent(
                tx,
                tree,
                inode,
                ino,
                piece.at,
                piece.physical(),
                piece.len,
                0,
            )
        },
    )
}

/// The part of one record that a range covers.
pub(super) struct Piece {
    start: u64,
    pub(super) extent: Extent,
    pub(super) at: u64,
    pub(super) len: u64,
}

impl Piece {
    /// Device block of `at`.
    pub(super) fn physical(&self) -> u64 {
        self.extent.physical + (self.at - self.start)
    }

    /// Takes this part out of its record ([`split_out`]).
    pub(super) fn split_out<M: Media>(
        &self,
        tx: &mut Tx<'_, M>,
        tree: &mut Tree<Extents>,
        inode: &mut Inode,
        ino: u64,
    ) -> Result<(), Error> {
        split_out(
            tx,
            tree,
            inode,
            ino,
            self.start,
            self.extent,
            self.at,
            self.len,
        )
    }
}

/// Runs `op` on each record's part of file blocks `first..first + len`,
/// in order, looking each up after the last changed the tree; `Invalid`
/// if the range has a hole.
pub(super) fn for_each_record<M: Media>(
    tx: &mut Tx<'_, M>,
    tree: &mut Tree<Extents>,
    first: u64,
    len: u64,
    mut op: impl FnMut(&mut Tx<'_, M>, &mut Tree<Extents>, Piece) -> Result<(), Error>,
) -> Result<(), Error> {
    let end = first.checked_add(len).ok_or(Error::Invalid)?;
    let mut at = first;
    while at < end {
        let Lookup::Extent(start, extent) = find_extent(tree, &TxNodes(tx), &tx.sb().layout, at)?
        else {
            return Err(Error::Invalid);
        };
        let len = (start + u64::from(extent.len)).min(end) - at;
        op(
            tx,
            tree,
            Piece {
                start,
                extent,
                at,
                len,
            },
        )?;
        at += len;
    }
    Ok(())
}

/// Removes file blocks `from..from + len` from extent (`start`, `extent`),
/// keeping the pieces before and after (with their reverse-map records).
/// The removed blocks' own reverse-map record is removed; their space is
/// the caller's to keep or release.
#[allow(clippy::too_many_arguments)]
pub(super) fn split_out<M: Media>(
    tx: &mut Tx<'_, M>,
    tree: &mut Tree<Extents>,
    inode: &mut Inode,
    ino: u64,
    start: u64,
    extent: Extent,
    from: u64,
    len: u64,
) -> Result<(), Error> {
    let end = start + u64::from(extent.len);
    if from < start || from + len > end {
        return Err(Error::Invalid);
    }
    tx.rmap_remove(
        RmapKey {
            start: extent.physical,
            owner: ino,
            offset: start,
        },
        u64::from(extent.len),
    )?;
    let mut store = TreeStore::new(tx, ino);
    if !tree
        .remove(&mut store, &block_key(start))
        .map_err(tree_error)?
    {
        return Err(Error::Corrupt(tree.root, Damage::Record));
    }
    let pieces = [
        (start, extent.physical, from - start),
        (
            from + len,
            extent.physical + (from + len - start),
            end - (from + len),
        ),
    ];
    for (piece_start, physical, piece_len) in pieces {
        if piece_len == 0 {
            continue;
        }
        let piece = Extent {
            physical,
            len: piece_len as u32,
            flags: extent.flags,
        };
        tree.insert(&mut store, &block_key(piece_start), &piece.encode())
            .map_err(tree_error)?;
    }
    let delta = store.node_delta;
    inode.blocks = inode.blocks.saturating_add_signed(delta);
    for (piece_start, physical, piece_len) in pieces {
        if piece_len > 0 {
            tx.rmap_add(
                RmapKey {
                    start: physical,
                    owner: ino,
                    offset: piece_start,
                },
                piece_len,
                0,
            )?;
        }
    }
    Ok(())
}

/// Points file blocks `file_block..+len` (shared extents) at new blocks
/// `physical..`; the old blocks lose a reference.
#[allow(clippy::too_many_arguments)]
pub(super) fn replace_range<M: Media>(
    tx: &mut Tx<'_, M>,
    tree: &mut Tree<Extents>,
    inode: &mut Inode,
    ino: u64,
    file_block: u64,
    len: u64,
    physical: u64,
) -> Result<(), Error> {
    for_each_record(tx, tree, file_block, len, |tx, tree, piece| {
        piece.split_out(tx, tree, inode, ino)?;
        release(tx, piece.physical(), piece.len)?;
        let new = physical + (piece.at - file_block);
        put_extent(tx, tree, inode, ino, piece.at, new, piece.len, 0)
    })
}
