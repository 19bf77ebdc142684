// SPDX-License-Identifier: GPL-2.0

//! Sharing blocks between files (FICLONE, FICLONERANGE) and the
//! reference counts that say when a shared block is free.

use core::ops::ControlFlow;

use super::extents::{extent_tree, map_in, put_extent, Blocks, MAX_FILE_BLOCKS};
use super::{Budget, TxNodes, Volume};
use crate::logic::format::{
    btree::{Nodes, Tree},
    get_u64,
    inode::{Inode, Timestamp},
    kinds::{self, block_key, parse_block_key, RefCounts, EXTENT_UNWRITTEN},
    space,
    superblock::Superblock,
    BLOCK_SIZE,
};
use crate::logic::fs::{
    tx::{scan, tree_error, TreeStore, Tx},
    Damage, Error, MapKind, Media, Scratch,
};

/// A refcount record: device blocks `start..end` are shared `count` times.
#[derive(Clone, Copy)]
struct RefCount {
    start: u64,
    end: u64,
    count: u64,
}

/// The refcount record starting at or before device block `block`, if any.
/// Every record read passes here: inside the data area, not empty, shared
/// at least twice, or the tree is damaged.
fn refcount_at_or_before<S: Nodes<Error = Error>>(
    sb: &Superblock,
    store: &S,
    block: u64,
) -> Result<Option<RefCount>, Error> {
    let tree = Tree::<RefCounts>::open(sb.refcount_root, kinds::OWNER_REFCOUNTS);
    let mut key = [0u8; 8];
    let mut value = [0u8; 16];
    if !tree
        .last_at_or_before(store, &block_key(block), &mut key, &mut value)
        .map_err(tree_error)?
    {
        return Ok(None);
    }
    let damaged = Error::Corrupt(sb.refcount_root, Damage::Record);
    let start = parse_block_key(&key).ok_or(damaged)?;
    let len = get_u64(&value, 0).ok_or(damaged)?;
    let count = get_u64(&value, 8).ok_or(damaged)?;
    let end = start.checked_add(len).ok_or(damaged)?;
    let layout = &sb.layout;
    if len == 0 || count < 2 || start < layout.data_start || end > layout.block_count {
        return Err(damaged);
    }
    Ok(Some(RefCount { start, end, count }))
}

/// Whether device block `block` is shared (has a refcount record), and for
/// how many blocks from it that stays the same (at most `len`).
pub(super) fn shared_run<S: Nodes<Error = Error>>(
    sb: &Superblock,
    store: &S,
    block: u64,
    len: u64,
) -> Result<(bool, u64), Error> {
    let tree = Tree::<RefCounts>::open(sb.refcount_root, kinds::OWNER_REFCOUNTS);
    if let Some(record) = refcount_at_or_before(sb, store, block)? {
        if block < record.end {
            return Ok((true, len.min(record.end - block)));
        }
    }
    let mut next = None;
    scan(&tree, store, &block_key(block), &mut |key, _| {
        next = parse_block_key(key);
        ControlFlow::Break(())
    })?;
    Ok((
        false,
        next.map_or(len, |n| len.min(n.saturating_sub(block)).max(1)),
    ))
}

/// Drops one reference to device blocks `start..start + len`: shared
/// blocks lose a count, the rest are freed.
pub(super) fn release<M: Media>(tx: &mut Tx<'_, M>, start: u64, len: u64) -> Result<(), Error> {
    // What is shared decides what is freed: read under the lock.
    tx.hold_space();
    let mut at = start;
    let end = start + len;
    while at < end {
        let (shared, run) = shared_run(tx.sb(), &TxNodes(tx), at, end - at)?;
        if shared {
            adjust_refcount(tx, at, run, -1)?;
        } else {
            tx.free(space::Extent {
                start: at,
                len: run,
            })?;
        }
        at += run;
    }
    Ok(())
}

/// Adds `delta` to the reference count of blocks `start..start + len`,
/// which lie inside one refcount record or none (count 1). Records are
/// split where the range ends inside them; a count reaching 1 drops the
/// record.
fn adjust_refcount<M: Media>(
    tx: &mut Tx<'_, M>,
    start: u64,
    len: u64,
    delta: i64,
) -> Result<(), Error> {
    tx.hold_space();
    let mut tree = Tree::<RefCounts>::open(tx.sb().refcount_root, kinds::OWNER_REFCOUNTS);
    let damaged = Error::Corrupt(tx.sb().refcount_root, Damage::Record);
    let end = start.checked_add(len).ok_or(damaged)?;
    let (record_start, record_end, count) =
        match refcount_at_or_before(tx.sb(), &TxNodes(tx), start)? {
            Some(record) if start < record.end => (record.start, record.end, record.count),
            _ => (start, end, 1),
        };
    if end > record_end {
        return Err(damaged);
    }
    let new_count = count
        .checked_add_signed(delta)
        .ok_or(Error::Corrupt(tx.sb().refcount_root, Damage::Record))?;
    // Whether blocks are shared is cached with files' runs, and the
    // other sharers' records and trees do not change.
    tx.touched.all();
    let mut store = TreeStore::new(tx, kinds::OWNER_REFCOUNTS);
    if count >= 2
        && !tree
            .remove(&mut store, &block_key(record_start))
            .map_err(tree_error)?
    {
        return Err(damaged);
    }
    // Inside the record: record_start <= start < end <= record_end.
    let pieces = [
        (record_start, start - record_start, count),
        (start, len, new_count),
        (end, record_end - end, count),
    ];
    for (piece_start, piece_len, piece_count) in pieces {
        if piece_len == 0 || piece_count < 2 {
            continue;
        }
        let mut value = [0u8; 16];
        value[..8].copy_from_slice(&piece_len.to_le_bytes());
        value[8..].copy_from_slice(&piece_count.to_le_bytes());
        tree.insert(&mut store, &block_key(piece_start), &value)
            .map_err(tree_error)?;
    }
    tx.sb_mut().refcount_root = tree.root;
    Ok(())
}

impl<M: Media, S: Scratch> Volume<M, S> {
    /// Shares blocks `src_offset..src_offset + len` of `src` with `dst` at
    /// `dst_offset` (`FICLONE`, `FICLONERANGE`, `copy_file_range`): what
    /// `dst` had there is released, the shared blocks gain a reference,
    /// holes stay holes. Offsets are block-aligned; `len` is rounded up to
    /// whole blocks (a clone may end at the source's end of file). `dst`'s
    /// size grows to `dst_offset + len` if smaller. Done in steps, each a
    /// transaction leaving both files consistent.
    pub fn reflink(
        &mut self,
        src: u64,
        src_offset: u64,
        dst: u64,
        dst_offset: u64,
        len: u64,
        now: Timestamp,
    ) -> Result<Inode, Error> {
        let bs = BLOCK_SIZE as u64;
        if src_offset % bs != 0 || dst_offset % bs != 0 {
            return Err(Error::Invalid);
        }
        let count = len.div_ceil(bs);
        let (src_first, dst_first) = (src_offset / bs, dst_offset / bs);
        if dst_first.saturating_add(count) > MAX_FILE_BLOCKS
            || src_first.saturating_add(count) > MAX_FILE_BLOCKS
        {
            return Err(Error::TooBig);
        }
        if src == dst && src_first < dst_first + count && dst_first < src_first + count {
            return Err(Error::Invalid);
        }
        self.regular(src)?;
        self.regular(dst)?;
        self.zero_past_eof(dst, dst_offset)?;
        self.unmap_range(dst, dst_first, count, Blocks::All)?;
        let mut done = 0;
        let mut budget = Budget::new();
        while done < count {
            let mut steps = 0;
            let result = self.transact(|tx| {
                let source = tx.inode(src)?;
                let mut inode = tx.inode(dst)?;
                let mut tree = extent_tree(tx, &mut inode, dst)?;
                let mut at = done;
                while at < count && budget.allows(steps, tx) {
                    steps += 1;
                    // Within one file the source is the tree being
                    // changed: its root may have split since `source` was
                    // read.
                    let mut source = source;
                    if src == dst {
                        source.map_root = tree.root;
                    }
                    let mapping = map_in(
                        tx.sb(),
                        &TxNodes(tx),
                        src,
                        &source,
                        src_first + at,
                        count - at,
                    )?;
                    if mapping.kind == MapKind::Hole {
                        at += mapping.len;
                        continue;
                    }
                    // One refcount record (or none) per step: `map_in`
                    // stops where sharing changes.
                    adjust_refcount(tx, mapping.physical, mapping.len, 1)?;
                    let flags = if mapping.kind == MapKind::Unwritten {
                        EXTENT_UNWRITTEN
                    } else {
                        0
                    };
                    put_extent(
                        tx,
                        &mut tree,
                        &mut inode,
                        dst,
                        dst_first + at,
                        mapping.physical,
                        mapping.len,
                        flags,
                    )?;
                    inode.blocks = inode.blocks.saturating_add(mapping.len);
                    at += mapping.len;
                }
                inode.map_root = tree.root;
                tx.put_inode(dst, &inode)?;
                Ok(at)
            });
            done = budget.settle(result, steps)?.unwrap_or(done);
        }
        // A clone that ends at the source's end of file inside a block
        // brings that block's tail, which is not the source's data, into
        // the middle of a larger destination: zero it there.
        let end = dst_offset.saturating_add(len);
        let tail = end % bs;
        if tail != 0 && self.inode(dst)?.size > end {
            self.zero_in_block(dst, end, bs - tail)?;
        }
        self.modified(dst, Some(end), now)
    }
}
