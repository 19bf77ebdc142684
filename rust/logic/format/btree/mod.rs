// SPDX-License-Identifier: GPL-2.0

//! The one B+tree every oxdax index uses: 4096-byte nodes of fixed-size
//! keys and values, checksummed and validated on every read.
//!
//! Keys compare as byte strings, so tree kinds encode them big-endian. An
//! internal node holds `(key, child)` pairs where key `i` is a lower bound
//! of child `i`'s subtree and greater than every key of child `i - 1`; an
//! insert below a node's first key lowers that key on the way down.
//! Deletion frees nodes that become empty, merges a node left less than a
//! quarter full into a neighbour when both fit in three quarters of one,
//! and collapses a root with one child. Without merging, a tree that once
//! grew could keep its nodes for good: the reverse map holds the records
//! of its own nodes, so the leaf holding them never empties.
//!
//! The tree reaches storage through [`Nodes`] and [`Blocks`]: in the module
//! a journal transaction (reads see the transaction's own writes) or the
//! committed state, in tests memory. Reads copy the bytes they need out of
//! the store: no reference into a node outlives one read, so the module's
//! store can copy nodes out of persistent memory with the kernel's
//! machine-check-safe copy (a failed read is an error, not a crash) and
//! keep them in a cache it may refill at any read.
//!
//! [`node`] reads and validates nodes, [`update`] inserts and removes;
//! this file has the node layout, the storage traits and lookups.

mod node;
#[cfg(test)]
mod tests;
mod update;

use core::ops::ControlFlow;

use super::{crc32c, put, BLOCK_SIZE};
use node::Within;

/// `"OXBT"`, first bytes of every node.
pub const NODE_MAGIC: u32 = u32::from_le_bytes(*b"OXBT");

/// Bytes of the node header.
pub const HEADER_BYTES: usize = 32;

/// Deepest tree accepted (far beyond what 2^48 bytes of entries need).
pub const MAX_LEVELS: u8 = 10;

const OFF_MAGIC: usize = 0;
const OFF_KIND: usize = 4;
const OFF_LEVEL: usize = 5;
const OFF_COUNT: usize = 6;
const OFF_OWNER: usize = 8;
const OFF_BLOCK: usize = 16;
const OFF_RESERVED: usize = 24;
const OFF_CRC: usize = 28;
const CHILD_BYTES: usize = 8;

/// Largest key a tree kind may have.
pub const MAX_KEY_BYTES: usize = 64;

/// Largest entry (key and value) a tree kind may have.
pub const MAX_ENTRY_BYTES: usize = 512;

/// Called with each `(key, value)` of a scan, in key order; `Break` stops.
pub type Visitor<'a> = dyn FnMut(&[u8], &[u8]) -> ControlFlow<()> + 'a;

/// A kind of tree: its entry sizes and the tag its nodes carry.
pub trait TreeKind {
    /// Tag in every node of this kind (catches a pointer into another tree).
    const KIND: u8;
    /// Key size in bytes.
    const KEY: usize;
    /// Value size in bytes.
    const VALUE: usize;
}

/// Where the tree's nodes are read from.
pub trait Nodes {
    /// The storage's own error (I/O, poison, no memory).
    type Error;
    /// Copies the `buf.len()` bytes at byte `offset` of `block`, as it is
    /// now, into `buf` (`offset + buf.len()` is at most the block size).
    fn read(&self, block: u64, offset: usize, buf: &mut [u8]) -> Result<(), Self::Error>;
    /// Calls `look` with `block` as [`Self::read`] would copy it, if the
    /// store holds it in memory, and says whether it did: a binary search
    /// over a node is one call, not one per key. `look` must not use the
    /// store (it may be borrowed meanwhile). By default the store says no,
    /// and callers read what they need.
    fn look(
        &self,
        _block: u64,
        _look: &mut dyn FnMut(&[u8; BLOCK_SIZE]),
    ) -> Result<bool, Self::Error> {
        Ok(false)
    }
    /// Whether `block` may hold a node at all (a filesystem's data area):
    /// a pointer elsewhere is damage, never followed.
    fn may_hold_node(&self, _block: u64) -> bool {
        true
    }
    /// Whether `block` passed the full checks (checksum, key order) since
    /// it was last written by anyone but this filesystem: they are skipped.
    fn checked(&self, _block: u64) -> bool {
        false
    }
    /// Records that `block` passed them.
    fn set_checked(&self, _block: u64) {}
    /// Whether `block` was changed by this store and its checksum is not
    /// written yet ([`Blocks::seal`]): the header checks apply, the
    /// checksum's and the key order's are skipped (the tree code changed it
    /// after loading it checked, or made it).
    fn seal_pending(&self, _block: u64) -> bool {
        false
    }
}

/// [`Nodes::read`] for a store that holds its nodes in memory: copies what
/// lies inside `node` (callers stay inside; anything past it reads as
/// zeros, which no node check accepts).
pub fn copy_from_node(node: &[u8; BLOCK_SIZE], offset: usize, buf: &mut [u8]) {
    let inside = node
        .get(offset..)
        .map_or(0, |rest| rest.len().min(buf.len()));
    let (head, tail) = buf.split_at_mut(inside);
    head.copy_from_slice(node.get(offset..offset + inside).unwrap_or(&[]));
    tail.fill(0);
}

/// Where the tree's nodes are written and allocated.
pub trait Blocks: Nodes {
    /// `block`'s contents, to modify (the store keeps the change).
    fn node_mut(&mut self, block: u64) -> Result<&mut [u8; BLOCK_SIZE], Self::Error>;
    /// A fresh block for a node (contents undefined).
    fn allocate(&mut self) -> Result<u64, Self::Error>;
    /// Gives back a block that no longer holds a node.
    fn free(&mut self, block: u64) -> Result<(), Self::Error>;
    /// Node `block` was changed: its checksum must cover the change before
    /// the node is stored anywhere. By default it is written now; a store
    /// that changes a node many times before storing it (a transaction)
    /// may write it once, then ([`Nodes::seal_pending`] until it does).
    fn seal(&mut self, block: u64) -> Result<(), Self::Error> {
        seal(self.node_mut(block)?);
        Ok(())
    }
}

/// What is wrong with a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Corruption {
    /// Not a node (magic).
    Magic,
    /// Checksum mismatch.
    Checksum,
    /// Node of another tree kind.
    Kind,
    /// Written for another block (misdirected write).
    Block,
    /// Belongs to another owner.
    Owner,
    /// Level not what its parent implies, or too deep.
    Level,
    /// More entries than fit, or an internal node with none.
    Count,
    /// Keys out of order or outside the parent's bounds.
    Order,
    /// Nonzero reserved bytes.
    Reserved,
}

/// A tree operation's failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TreeError<E> {
    /// The storage failed.
    Store(E),
    /// A node is damaged: the operation changed nothing visible to readers
    /// of this tree before the damaged node was reached.
    Corrupt {
        /// The damaged node.
        block: u64,
        /// What is wrong with it.
        what: Corruption,
    },
    /// Key or value of the wrong size for the tree kind.
    BadArgument,
}

type TResult<T, E> = Result<T, TreeError<E>>;

/// A tree: its root block and the owner its nodes are stamped with (an
/// inode number, or a fixed id for filesystem-wide trees).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tree<K: TreeKind> {
    /// Root node.
    pub root: u64,
    /// Owner stamped in every node.
    pub owner: u64,
    _kind: core::marker::PhantomData<K>,
}

fn entry_size<K: TreeKind>(level: u8) -> usize {
    K::KEY + if level == 0 { K::VALUE } else { CHILD_BYTES }
}

fn capacity<K: TreeKind>(level: u8) -> usize {
    (BLOCK_SIZE - HEADER_BYTES) / entry_size::<K>(level)
}

fn node_crc(node: &[u8; BLOCK_SIZE]) -> u32 {
    let crc = crc32c::update(0, &node[..OFF_CRC]);
    crc32c::update(crc, &node[OFF_CRC + 4..])
}

fn corrupt<T, E>(block: u64, what: Corruption) -> TResult<T, E> {
    Err(TreeError::Corrupt { block, what })
}

/// Writes `node`'s checksum (for stores that seal later,
/// [`Blocks::seal`]).
pub fn seal(node: &mut [u8; BLOCK_SIZE]) {
    let crc = node_crc(node);
    put(node, OFF_CRC, &crc.to_le_bytes());
}

/// Bytes of a line of [`reseal`]'s mask.
pub const RESEAL_LINE_BYTES: usize = BLOCK_SIZE / 64;
const LINE: usize = RESEAL_LINE_BYTES;
// The checksum lies in line 0 (which [`reseal`] reads around it).
const _: () = assert!(OFF_CRC + 4 <= LINE);

/// For each line, the factor that carries a change in it to the end of
/// the checksummed bytes (all but the 4 checksum bytes): line `l` ends
/// at byte `LINE * (l + 1) - 4` of them.
const LINE_FACTORS: [u32; 64] = {
    let mut factors = [0u32; 64];
    let mut line = 0;
    while line < 64 {
        factors[line] = crc32c::zeros_factor(BLOCK_SIZE - LINE * (line + 1));
        line += 1;
    }
    factors
};

/// Writes the checksum of `node`, a changed copy of `original`, from the
/// checksum `original` carries and the 64-byte lines that differ
/// (`lines`, bit `l` for line `l`; every line that differs must be in
/// it): CRC-32C is linear, so the change of each line moves the checksum
/// by a term of its own ([`crc32c::after_zeros`]). A transaction that
/// changed a few entries of a node checksums those lines instead of 4 KiB.
///
/// Only for an `original` whose checksum is right (a node that passed its
/// checks): otherwise the result is as wrong as it was, and the next full
/// check of the node finds it (at the next mount, or by fsck), where
/// [`seal`] would have vouched for the damage.
pub fn reseal(node: &mut [u8; BLOCK_SIZE], original: &[u8; BLOCK_SIZE], lines: u64) {
    let mut stored = [0u8; 4];
    stored.copy_from_slice(&original[OFF_CRC..OFF_CRC + 4]);
    let mut crc = u32::from_le_bytes(stored);
    let mut remaining = lines;
    while remaining != 0 {
        let line = remaining.trailing_zeros() as usize;
        remaining &= remaining - 1;
        let start = line * LINE;
        let (Some(new), Some(old), Some(&factor)) = (
            node.get(start..start + LINE),
            original.get(start..start + LINE),
            LINE_FACTORS.get(line),
        ) else {
            continue;
        };
        let mut delta = [0u8; LINE];
        let word = |bytes: &[u8]| u64::from_ne_bytes(bytes.try_into().unwrap_or([0; 8]));
        for (d, (n, o)) in delta
            .chunks_exact_mut(8)
            .zip(new.chunks_exact(8).zip(old.chunks_exact(8)))
        {
            d.copy_from_slice(&(word(n) ^ word(o)).to_ne_bytes());
        }
        let register = if line == 0 {
            crc32c::register2(&delta[..OFF_CRC], &delta[OFF_CRC + 4..])
        } else {
            crc32c::register(&delta)
        };
        crc ^= crc32c::after_zeros(register, factor);
    }
    put(node, OFF_CRC, &crc.to_le_bytes());
}

impl<K: TreeKind> Tree<K> {
    /// The tree rooted at `root`.
    pub fn open(root: u64, owner: u64) -> Self {
        Self {
            root,
            owner,
            _kind: core::marker::PhantomData,
        }
    }

    /// Makes an empty tree (one empty leaf).
    pub fn create<S: Blocks>(store: &mut S, owner: u64) -> TResult<Self, S::Error> {
        let root = store.allocate().map_err(TreeError::Store)?;
        let tree = Self::open(root, owner);
        tree.init_node(store, root, 0)?;
        Ok(tree)
    }

    fn init_node<S: Blocks>(&self, store: &mut S, block: u64, level: u8) -> TResult<(), S::Error> {
        let node = store.node_mut(block).map_err(TreeError::Store)?;
        node.fill(0);
        put(node, OFF_MAGIC, &NODE_MAGIC.to_le_bytes());
        put(node, OFF_KIND, &[K::KIND, level]);
        put(node, OFF_OWNER, &self.owner.to_le_bytes());
        put(node, OFF_BLOCK, &block.to_le_bytes());
        store.seal(block).map_err(TreeError::Store)?;
        Ok(())
    }

    fn check_sizes<E>(key: &[u8], value: Option<&[u8]>) -> TResult<(), E> {
        if K::KEY > MAX_KEY_BYTES || K::KEY + K::VALUE.max(CHILD_BYTES) > MAX_ENTRY_BYTES {
            return Err(TreeError::BadArgument);
        }
        if key.len() != K::KEY || value.is_some_and(|v| v.len() != K::VALUE) {
            return Err(TreeError::BadArgument);
        }
        Ok(())
    }

    /// The value stored under `key`, copied into `value`.
    pub fn get<S: Nodes>(
        &self,
        store: &S,
        key: &[u8],
        value: &mut [u8],
    ) -> TResult<bool, S::Error> {
        Self::check_sizes(key, Some(value))?;
        let mut block = self.root;
        let mut within = None;
        loop {
            let node = self.load(store, block, within.as_ref())?;
            if node.level == 0 {
                return Ok(match node.search(key)? {
                    Ok(i) => {
                        node.value(i, value)?;
                        true
                    }
                    Err(_) => false,
                });
            }
            let i = node.child_index(key)?;
            block = node.child(i)?;
            within = Some(node.within_child(i, within.as_ref())?);
        }
    }

    /// Visits entries with keys `>= from` in order until `visit` breaks.
    pub fn scan<S: Nodes>(
        &self,
        store: &S,
        from: &[u8],
        visit: &mut Visitor<'_>,
    ) -> TResult<ControlFlow<()>, S::Error> {
        Self::check_sizes(from, None)?;
        self.scan_at(store, self.root, None, from, visit)
    }

    fn scan_at<S: Nodes>(
        &self,
        store: &S,
        block: u64,
        within: Option<&Within>,
        from: &[u8],
        visit: &mut Visitor<'_>,
    ) -> TResult<ControlFlow<()>, S::Error> {
        let node = self.load(store, block, within)?;
        if node.level == 0 {
            let first = node.search(from)?.unwrap_or_else(|i| i);
            let mut entry = [0u8; MAX_ENTRY_BYTES];
            let entry = entry
                .get_mut(..K::KEY + K::VALUE)
                .ok_or(TreeError::BadArgument)?;
            for i in first..node.count {
                node.read_entry(i, 0, entry)?;
                let (key, value) = entry.split_at(K::KEY);
                if visit(key, value).is_break() {
                    return Ok(ControlFlow::Break(()));
                }
            }
            return Ok(ControlFlow::Continue(()));
        }
        for i in node.child_index(from)?..node.count {
            let child_within = node.within_child(i, within)?;
            if self
                .scan_at(store, node.child(i)?, Some(&child_within), from, visit)?
                .is_break()
            {
                return Ok(ControlFlow::Break(()));
            }
        }
        Ok(ControlFlow::Continue(()))
    }

    /// The entry with the greatest key `<= key`, copied out.
    pub fn last_at_or_before<S: Nodes>(
        &self,
        store: &S,
        key: &[u8],
        found_key: &mut [u8],
        value: &mut [u8],
    ) -> TResult<bool, S::Error> {
        Self::check_sizes(key, Some(value))?;
        if found_key.len() != K::KEY {
            return Err(TreeError::BadArgument);
        }
        self.last_at(store, self.root, None, key, found_key, value)
    }

    fn last_at<S: Nodes>(
        &self,
        store: &S,
        block: u64,
        within: Option<&Within>,
        key: &[u8],
        found_key: &mut [u8],
        value: &mut [u8],
    ) -> TResult<bool, S::Error> {
        let node = self.load(store, block, within)?;
        if node.level == 0 {
            let index = match node.search(key)? {
                Ok(i) => i,
                Err(0) => return Ok(false),
                Err(i) => i - 1,
            };
            node.read_entry(index, 0, found_key)?;
            node.value(index, value)?;
            return Ok(true);
        }
        // The entry may sit in an earlier child when this one has nothing
        // at or below `key` (underfull or with a stale lower bound).
        let mut i = node.child_index(key)? + 1;
        while i > 0 {
            i -= 1;
            if self.last_at(
                store,
                node.child(i)?,
                Some(&node.within_child(i, within)?),
                key,
                found_key,
                value,
            )? {
                return Ok(true);
            }
        }
        Ok(false)
    }
}
