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

use core::cmp::Ordering;
use core::ops::ControlFlow;

use super::{crc32c, get_u16, get_u32, get_u64, put, BLOCK_SIZE};

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
/// A node holding less than `1 / MERGE_BELOW` of its capacity after a
/// deletion is merged with a neighbour if possible.
const MERGE_BELOW: usize = 4;

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

/// Bytes of a node read at a time to check it whole (its checksum): a
/// small buffer, for kernel stacks.
const CHECK_CHUNK: usize = 512;

/// A key copied out of a node (its first `K::KEY` bytes are the key).
type KeyBuf = [u8; MAX_KEY_BYTES];

/// What a parent says of the child it points to: its level, and the range
/// of keys it may hold (`lower <= key < upper`; `None`: unbounded). Every
/// child is loaded with it: a node reached through a pointer that breaks
/// the order (a crafted tree whose nodes share children, or a separator
/// that does not separate) is damage, so that lookups, scans and removals
/// all find each key in the one place it can be.
#[derive(Clone, Copy)]
struct Within {
    level: u8,
    lower: Option<KeyBuf>,
    upper: Option<KeyBuf>,
}

/// A validated node: where it is and what its header says. Its entries
/// are read from the store when asked for.
struct Node<'s, S: Nodes, K: TreeKind> {
    store: &'s S,
    block: u64,
    level: u8,
    count: usize,
    _kind: core::marker::PhantomData<K>,
}

impl<S: Nodes, K: TreeKind> Node<'_, S, K> {
    /// Copies `buf.len()` bytes of entry `i` from byte `within` of it.
    fn read_entry(&self, i: usize, within: usize, buf: &mut [u8]) -> TResult<(), S::Error> {
        let start = HEADER_BYTES + i * entry_size::<K>(self.level) + within;
        if i >= self.count || start + buf.len() > BLOCK_SIZE {
            return Err(TreeError::BadArgument);
        }
        self.store
            .read(self.block, start, buf)
            .map_err(TreeError::Store)
    }

    /// Key `i` (in the first `K::KEY` bytes).
    fn key(&self, i: usize) -> TResult<KeyBuf, S::Error> {
        let mut key = [0u8; MAX_KEY_BYTES];
        let buf = key.get_mut(..K::KEY).ok_or(TreeError::BadArgument)?;
        self.read_entry(i, 0, buf)?;
        Ok(key)
    }

    /// Copies the value of leaf entry `i` into `value`.
    fn value(&self, i: usize, value: &mut [u8]) -> TResult<(), S::Error> {
        self.read_entry(i, K::KEY, value)
    }

    /// Child `i` of an internal node.
    fn child(&self, i: usize) -> TResult<u64, S::Error> {
        let mut child = [0u8; CHILD_BYTES];
        self.read_entry(i, K::KEY, &mut child)?;
        Ok(u64::from_le_bytes(child))
    }

    /// Leaf: index of `key` or where it would go. Internal: the child whose
    /// subtree holds `key` (key 0 counts as minus infinity).
    fn search(&self, key: &[u8]) -> TResult<Result<usize, usize>, S::Error> {
        let (mut low, mut high) = (0, self.count);
        while low < high {
            let mid = (low + high) / 2;
            match self.key(mid)?.get(..K::KEY).cmp(&Some(key)) {
                Ordering::Less => low = mid + 1,
                Ordering::Greater => high = mid,
                Ordering::Equal => return Ok(Ok(mid)),
            }
        }
        Ok(Err(low))
    }

    /// What this internal node says of child `i`; `outer` is what its own
    /// parent said of it (key 0 bounds nothing below its parent's bound).
    fn within_child(&self, i: usize, outer: Option<&Within>) -> TResult<Within, S::Error> {
        let lower = if i == 0 {
            outer.and_then(|w| w.lower)
        } else {
            Some(self.key(i)?)
        };
        let upper = if i + 1 < self.count {
            Some(self.key(i + 1)?)
        } else {
            outer.and_then(|w| w.upper)
        };
        Ok(Within {
            level: self.level.checked_sub(1).ok_or(TreeError::BadArgument)?,
            lower,
            upper,
        })
    }

    fn child_index(&self, key: &[u8]) -> TResult<usize, S::Error> {
        Ok(match self.search(key)? {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        })
    }

    /// Whether the node's checksum is right (the node read a chunk at a
    /// time; `header` is its first bytes, already read).
    fn check_sum(&self, header: &[u8; HEADER_BYTES]) -> TResult<(), S::Error> {
        let mut crc = crc32c::update(0, &header[..OFF_CRC]);
        crc = crc32c::update(crc, &header[OFF_CRC + 4..]);
        let mut chunk = [0u8; CHECK_CHUNK];
        let mut at = HEADER_BYTES;
        while at < BLOCK_SIZE {
            let len = CHECK_CHUNK.min(BLOCK_SIZE - at);
            let buf = chunk.get_mut(..len).ok_or(TreeError::BadArgument)?;
            self.store
                .read(self.block, at, buf)
                .map_err(TreeError::Store)?;
            crc = crc32c::update(crc, buf);
            at += len;
        }
        if get_u32(header, OFF_CRC) != Some(crc) {
            return corrupt(self.block, Corruption::Checksum);
        }
        Ok(())
    }

    /// Whether the node's keys are in order.
    fn check_order(&self) -> TResult<(), S::Error> {
        let mut previous: Option<KeyBuf> = None;
        for i in 0..self.count {
            let key = self.key(i)?;
            if previous.is_some_and(|p| p[..K::KEY] >= key[..K::KEY]) {
                return corrupt(self.block, Corruption::Order);
            }
            previous = Some(key);
        }
        Ok(())
    }
}

fn corrupt<T, E>(block: u64, what: Corruption) -> TResult<T, E> {
    Err(TreeError::Corrupt { block, what })
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
        seal(node);
        Ok(())
    }

    /// Reads and validates `block`'s header (and, the first time since it
    /// was last written, the whole node); `within` is what the parent says
    /// of it (`None` for the root).
    fn load<'s, S: Nodes>(
        &self,
        store: &'s S,
        block: u64,
        within: Option<&Within>,
    ) -> TResult<Node<'s, S, K>, S::Error> {
        if !store.may_hold_node(block) {
            return corrupt(block, Corruption::Block);
        }
        let mut bytes = [0u8; HEADER_BYTES];
        store.read(block, 0, &mut bytes).map_err(TreeError::Store)?;
        let checked = store.checked(block);
        if get_u32(&bytes, OFF_MAGIC) != Some(NODE_MAGIC) {
            return corrupt(block, Corruption::Magic);
        }
        let mut node = Node {
            store,
            block,
            level: bytes[OFF_LEVEL],
            count: 0,
            _kind: core::marker::PhantomData,
        };
        if !checked {
            node.check_sum(&bytes)?;
        }
        if bytes[OFF_KIND] != K::KIND {
            return corrupt(block, Corruption::Kind);
        }
        if get_u64(&bytes, OFF_BLOCK) != Some(block) {
            return corrupt(block, Corruption::Block);
        }
        if get_u64(&bytes, OFF_OWNER) != Some(self.owner) {
            return corrupt(block, Corruption::Owner);
        }
        if get_u32(&bytes, OFF_RESERVED) != Some(0) {
            return corrupt(block, Corruption::Reserved);
        }
        if node.level >= MAX_LEVELS || within.is_some_and(|w| w.level != node.level) {
            return corrupt(block, Corruption::Level);
        }
        let count = usize::from(get_u16(&bytes, OFF_COUNT).unwrap_or(u16::MAX));
        // Only a root leaf is ever empty: emptied children are freed.
        if count > capacity::<K>(node.level) || (count == 0 && (node.level > 0 || within.is_some()))
        {
            return corrupt(block, Corruption::Count);
        }
        node.count = count;
        if !checked {
            node.check_order()?;
            store.set_checked(block);
        }
        if let Some(within) = within {
            let first = node.key(0)?;
            let last = node.key(count - 1)?;
            let below = within.lower.is_some_and(|l| first[..K::KEY] < l[..K::KEY]);
            let above = within.upper.is_some_and(|u| last[..K::KEY] >= u[..K::KEY]);
            if below || above {
                return corrupt(block, Corruption::Order);
            }
        }
        Ok(node)
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

    /// Inserts or replaces `key`; returns whether it replaced an entry. The
    /// root may change (a split): the caller stores `self.root` afterwards.
    pub fn insert<S: Blocks>(
        &mut self,
        store: &mut S,
        key: &[u8],
        value: &[u8],
    ) -> TResult<bool, S::Error> {
        Self::check_sizes(key, Some(value))?;
        let (replaced, split) = self.insert_at(store, self.root, None, key, value)?;
        if let Some((separator, right)) = split {
            // The root split (rare): read its level and first key again.
            let mut first_key = [0u8; MAX_KEY_BYTES];
            let first_key = first_key.get_mut(..K::KEY).ok_or(TreeError::BadArgument)?;
            let root_level = {
                let old_root = self.load(store, self.root, None)?;
                first_key.copy_from_slice(&old_root.key(0)?[..K::KEY]);
                old_root.level
            };
            let new_root = store.allocate().map_err(TreeError::Store)?;
            self.init_node(store, new_root, root_level + 1)?;
            let old_root = self.root;
            let node = store.node_mut(new_root).map_err(TreeError::Store)?;
            let size = entry_size::<K>(root_level + 1);
            if !insert_entry(node, size, 0, 0, first_key, &old_root.to_le_bytes())
                || !insert_entry(node, size, 1, 1, &separator[..K::KEY], &right.to_le_bytes())
            {
                return corrupt(new_root, Corruption::Count);
            }
            seal(node);
            self.root = new_root;
        }
        Ok(replaced)
    }

    /// Inserts below `block` (at `level`, when the parent implies one); on a
    /// split returns the new right sibling and its first key. Each node on
    /// the path is read and validated once.
    #[allow(clippy::type_complexity)]
    fn insert_at<S: Blocks>(
        &self,
        store: &mut S,
        block: u64,
        within: Option<&Within>,
        key: &[u8],
        value: &[u8],
    ) -> TResult<(bool, Option<([u8; MAX_KEY_BYTES], u64)>), S::Error> {
        let node = self.load(store, block, within)?;
        let (level, count) = (node.level, node.count);
        if level == 0 {
            return match node.search(key)? {
                Ok(i) => {
                    let size = entry_size::<K>(0);
                    let bytes = store.node_mut(block).map_err(TreeError::Store)?;
                    let start = HEADER_BYTES + i * size + K::KEY;
                    put(bytes, start, value);
                    seal(bytes);
                    Ok((true, None))
                }
                Err(i) => Ok((
                    false,
                    self.add_entry(store, block, 0, count, i, key, value)?,
                )),
            };
        }
        let index = node.child_index(key)?;
        let child = node.child(index)?;
        let child_within = node.within_child(index, within)?;
        let lowers_first = index == 0 && key < &node.key(0)?[..K::KEY];
        if lowers_first {
            // Key 0 stays a lower bound of its subtree, so separators added
            // after it by a split of child 0 stay ordered.
            let bytes = store.node_mut(block).map_err(TreeError::Store)?;
            put(bytes, HEADER_BYTES, key);
            seal(bytes);
        }
        let (replaced, split) = self.insert_at(store, child, Some(&child_within), key, value)?;
        let Some((separator, right)) = split else {
            return Ok((replaced, None));
        };
        let split = self.add_entry(
            store,
            block,
            level,
            count,
            index + 1,
            &separator[..K::KEY],
            &right.to_le_bytes(),
        )?;
        Ok((replaced, split))
    }

    /// Puts an entry at `index` of `block` (validated by the caller, holding
    /// `count` entries), splitting the node in two if it is full.
    #[allow(clippy::too_many_arguments, clippy::type_complexity)]
    fn add_entry<S: Blocks>(
        &self,
        store: &mut S,
        block: u64,
        level: u8,
        count: usize,
        index: usize,
        key: &[u8],
        payload: &[u8],
    ) -> TResult<Option<([u8; MAX_KEY_BYTES], u64)>, S::Error> {
        let size = entry_size::<K>(level);
        if count < capacity::<K>(level) {
            let node = store.node_mut(block).map_err(TreeError::Store)?;
            if !insert_entry(node, size, count, index, key, payload) {
                return corrupt(block, Corruption::Count);
            }
            seal(node);
            return Ok(None);
        }
        // Split: the upper half moves to a new right sibling.
        let right = store.allocate().map_err(TreeError::Store)?;
        self.init_node(store, right, level)?;
        let keep = count / 2;
        copy_entries(store, size, (block, keep), (right, 0), count - keep)?;
        // The right sibling's first key, the separator for the parent: the
        // new entry never lands before it (an index <= keep goes left).
        let mut separator = [0u8; MAX_KEY_BYTES];
        store
            .read(
                right,
                HEADER_BYTES,
                separator.get_mut(..K::KEY).ok_or(TreeError::BadArgument)?,
            )
            .map_err(TreeError::Store)?;
        {
            let left = store.node_mut(block).map_err(TreeError::Store)?;
            if let Some(tail) =
                left.get_mut(HEADER_BYTES + keep * size..HEADER_BYTES + count * size)
            {
                tail.fill(0);
            }
            put(left, OFF_COUNT, &(keep as u16).to_le_bytes());
            seal(left);
        }
        {
            let node = store.node_mut(right).map_err(TreeError::Store)?;
            put(node, OFF_COUNT, &((count - keep) as u16).to_le_bytes());
            seal(node);
        }
        let (target, target_count, target_index) = if index <= keep {
            (block, keep, index)
        } else {
            (right, count - keep, index - keep)
        };
        let node = store.node_mut(target).map_err(TreeError::Store)?;
        if !insert_entry(node, size, target_count, target_index, key, payload) {
            return corrupt(target, Corruption::Count);
        }
        seal(node);
        Ok(Some((separator, right)))
    }

    /// Removes `key`; returns whether it was there. The root may change.
    pub fn remove<S: Blocks>(&mut self, store: &mut S, key: &[u8]) -> TResult<bool, S::Error> {
        Self::check_sizes(key, None)?;
        let (removed, _) = self.remove_at(store, self.root, None, key)?;
        // Collapse roots left with one child.
        loop {
            let root = self.load(store, self.root, None)?;
            if root.level == 0 || root.count != 1 {
                break;
            }
            // The child is checked as the new root's level implies.
            let child = root.child(0)?;
            self.load(store, child, Some(&root.within_child(0, None)?))?;
            store.free(self.root).map_err(TreeError::Store)?;
            self.root = child;
        }
        Ok(removed)
    }

    /// Removes below `block` (at `level`, when the parent implies one);
    /// returns whether the key was there and how many entries `block` has
    /// left. A child left empty is freed, one left underfull merged with a
    /// neighbour ([`Self::merge_child`]).
    fn remove_at<S: Blocks>(
        &self,
        store: &mut S,
        block: u64,
        within: Option<&Within>,
        key: &[u8],
    ) -> TResult<(bool, usize), S::Error> {
        let (level, count, index, child) = {
            let node = self.load(store, block, within)?;
            let level = node.level;
            if level == 0 {
                match node.search(key)? {
                    Ok(i) => (level, node.count, i, None),
                    Err(_) => return Ok((false, node.count)),
                }
            } else {
                let index = node.child_index(key)?;
                let child = (node.child(index)?, node.within_child(index, within)?);
                (level, node.count, index, Some(child))
            }
        };
        let Some((child, child_within)) = child else {
            self.remove_entry(store, block, level, count, index)?;
            return Ok((true, count - 1));
        };
        let (removed, child_left) = self.remove_at(store, child, Some(&child_within), key)?;
        if !removed {
            return Ok((false, count));
        }
        let gone = if child_left == 0 {
            store.free(child).map_err(TreeError::Store)?;
            Some(index)
        } else if child_left < capacity::<K>(level - 1) / MERGE_BELOW {
            self.merge_child(store, block, level, count, index)?
        } else {
            None
        };
        let Some(gone) = gone else {
            return Ok((removed, count));
        };
        self.remove_entry(store, block, level, count, gone)?;
        Ok((removed, count - 1))
    }

    /// Merges child `index` of `block` (at `level`, holding `count`
    /// entries) with its left or else its right neighbour, the first pair
    /// whose entries fit in three quarters of a node (room left for
    /// inserts, so the next split does not undo the merge): the right one
    /// of the pair moves into the left one and is freed. Returns the index
    /// of the parent entry that must go.
    fn merge_child<S: Blocks>(
        &self,
        store: &mut S,
        block: u64,
        level: u8,
        count: usize,
        index: usize,
    ) -> TResult<Option<usize>, S::Error> {
        let child_level = level - 1;
        let capacity = capacity::<K>(child_level);
        for right_index in [index, index + 1] {
            if right_index == 0 || right_index >= count {
                continue;
            }
            let unbounded = Within {
                level: child_level,
                lower: None,
                upper: None,
            };
            let (left, right) = {
                let parent = self.load(store, block, None)?;
                if parent.level != level {
                    return corrupt(block, Corruption::Level);
                }
                (parent.child(right_index - 1)?, parent.child(right_index)?)
            };
            let left_count = self.load(store, left, Some(&unbounded))?.count;
            let right_count = self.load(store, right, Some(&unbounded))?.count;
            if left_count + right_count <= capacity - capacity / MERGE_BELOW {
                self.append_node(store, left, left_count, right, right_count, child_level)?;
                store.free(right).map_err(TreeError::Store)?;
                return Ok(Some(right_index));
            }
        }
        Ok(None)
    }

    /// Moves the entries of `right` after those of its left neighbour
    /// `left` (both validated at `level`).
    fn append_node<S: Blocks>(
        &self,
        store: &mut S,
        left: u64,
        left_count: usize,
        right: u64,
        right_count: usize,
        level: u8,
    ) -> TResult<(), S::Error> {
        // Appending keeps the order: everything below the right child is
        // at or above the parent's separator, above everything on the left.
        // An internal right child's first key bounds its first subtree
        // from below, so it stays a valid separator inside the left node.
        let size = entry_size::<K>(level);
        copy_entries(store, size, (right, 0), (left, left_count), right_count)?;
        let node = store.node_mut(left).map_err(TreeError::Store)?;
        put(
            node,
            OFF_COUNT,
            &((left_count + right_count) as u16).to_le_bytes(),
        );
        seal(node);
        Ok(())
    }

    /// Deletes entry `index` of `block` (validated by the caller, at
    /// `level`, holding `count` entries).
    fn remove_entry<S: Blocks>(
        &self,
        store: &mut S,
        block: u64,
        level: u8,
        count: usize,
        index: usize,
    ) -> TResult<(), S::Error> {
        let size = entry_size::<K>(level);
        let bytes = store.node_mut(block).map_err(TreeError::Store)?;
        // Entries `index..count` shift down by one.
        let entries = bytes.get_mut(HEADER_BYTES + index * size..HEADER_BYTES + count * size);
        let Some(entries) = entries.filter(|e| e.len() >= size) else {
            return corrupt(block, Corruption::Count);
        };
        entries.copy_within(size.., 0);
        let last = entries.len() - size;
        entries[last..].fill(0);
        put(bytes, OFF_COUNT, &((count - 1) as u16).to_le_bytes());
        seal(bytes);
        Ok(())
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

    /// Checks the whole tree: every node valid, levels consistent, keys in
    /// order across nodes and within their parents' bounds. Calls `node`
    /// with every node block (fsck cross-checks them against the bitmap and
    /// the reverse map) and returns the number of entries.
    pub fn check<S: Nodes>(&self, store: &S, node: &mut dyn FnMut(u64)) -> TResult<u64, S::Error> {
        let mut last = [0u8; MAX_KEY_BYTES];
        let mut have_last = false;
        self.check_at(store, self.root, None, node, &mut last, &mut have_last)
    }

    #[allow(clippy::too_many_arguments)]
    fn check_at<S: Nodes>(
        &self,
        store: &S,
        block: u64,
        within: Option<&Within>,
        visit: &mut dyn FnMut(u64),
        last: &mut [u8; MAX_KEY_BYTES],
        have_last: &mut bool,
    ) -> TResult<u64, S::Error> {
        // Level, bounds and a non-empty child are the load's checks.
        let node = self.load(store, block, within)?;
        visit(block);
        if node.level == 0 {
            for i in 0..node.count {
                let key = node.key(i)?;
                if *have_last && key[..K::KEY] <= last[..K::KEY] {
                    return corrupt(block, Corruption::Order);
                }
                last[..K::KEY].copy_from_slice(&key[..K::KEY]);
                *have_last = true;
            }
            return Ok(node.count as u64);
        }
        let mut entries = 0;
        for i in 0..node.count {
            entries += self.check_at(
                store,
                node.child(i)?,
                Some(&node.within_child(i, within)?),
                visit,
                last,
                have_last,
            )?;
        }
        Ok(entries)
    }
}

/// Copies `count` entries of `size` bytes from entry `from.1` of node
/// `from.0` to entry `to.1` of node `to.0` (another node). One entry at a
/// time through a small buffer: this runs on kernel stacks, where a
/// node-sized buffer does not belong.
fn copy_entries<S: Blocks>(
    store: &mut S,
    size: usize,
    from: (u64, usize),
    to: (u64, usize),
    count: usize,
) -> TResult<(), S::Error> {
    let mut entry = [0u8; MAX_ENTRY_BYTES];
    let entry = entry.get_mut(..size).ok_or(TreeError::BadArgument)?;
    for i in 0..count {
        let at = HEADER_BYTES + (from.1 + i) * size;
        if at + size > BLOCK_SIZE {
            return Err(TreeError::BadArgument);
        }
        store.read(from.0, at, entry).map_err(TreeError::Store)?;
        put(
            store.node_mut(to.0).map_err(TreeError::Store)?,
            HEADER_BYTES + (to.1 + i) * size,
            entry,
        );
    }
    Ok(())
}

/// Inserts an entry at `index` of a node holding `count`; `false` (nothing
/// changed) if it does not fit, which callers checked: a broken invariant.
fn insert_entry(
    node: &mut [u8; BLOCK_SIZE],
    size: usize,
    count: usize,
    index: usize,
    key: &[u8],
    payload: &[u8],
) -> bool {
    let start = HEADER_BYTES + index * size;
    let end = HEADER_BYTES + count * size;
    // Entries `index..count` shift up by one; the region must hold them
    // and the new entry.
    let Some(region) = node.get_mut(start..end + size).filter(|_| index <= count) else {
        return false;
    };
    region.copy_within(..end - start, size);
    put(node, start, key);
    put(node, start + key.len(), payload);
    put(node, OFF_COUNT, &((count + 1) as u16).to_le_bytes());
    true
}

fn seal(node: &mut [u8; BLOCK_SIZE]) {
    let crc = node_crc(node);
    put(node, OFF_CRC, &crc.to_le_bytes());
}

#[cfg(test)]
mod tests {
    extern crate alloc;

    use super::*;
    use crate::logic::testing::Lcg;
    use alloc::{boxed::Box, collections::BTreeMap, vec::Vec};

    /// Small nodes would need a smaller block; instead a kind with big
    /// entries keeps fan-out low (16 per leaf) so tests reach many levels.
    struct Fat;
    impl TreeKind for Fat {
        const KIND: u8 = 0x7f;
        const KEY: usize = 8;
        const VALUE: usize = 248;
    }

    #[derive(Default)]
    struct Memory {
        blocks: Vec<Option<Box<[u8; BLOCK_SIZE]>>>,
        free: Vec<u64>,
        live: usize,
    }

    impl Memory {
        fn node(&self, block: u64) -> Result<&[u8; BLOCK_SIZE], ()> {
            self.blocks
                .get(block as usize)
                .and_then(|b| b.as_deref())
                .ok_or(())
        }
    }

    impl Nodes for Memory {
        type Error = ();
        fn read(&self, block: u64, offset: usize, buf: &mut [u8]) -> Result<(), ()> {
            copy_from_node(self.node(block)?, offset, buf);
            Ok(())
        }
    }

    impl Blocks for Memory {
        fn node_mut(&mut self, block: u64) -> Result<&mut [u8; BLOCK_SIZE], ()> {
            self.blocks
                .get_mut(block as usize)
                .and_then(|b| b.as_deref_mut())
                .ok_or(())
        }
        fn allocate(&mut self) -> Result<u64, ()> {
            self.live += 1;
            let block = self.free.pop().unwrap_or(self.blocks.len() as u64);
            if block as usize == self.blocks.len() {
                self.blocks.push(None);
            }
            self.blocks[block as usize] = Some(Box::new([0xa5; BLOCK_SIZE]));
            Ok(block)
        }
        fn free(&mut self, block: u64) -> Result<(), ()> {
            self.live -= 1;
            self.blocks[block as usize].take().ok_or(())?;
            self.free.push(block);
            Ok(())
        }
    }

    fn key(k: u64) -> [u8; 8] {
        k.to_be_bytes()
    }

    fn value(k: u64, generation: u8) -> [u8; 248] {
        let mut v = [generation; 248];
        v[..8].copy_from_slice(&k.to_le_bytes());
        v
    }

    fn check_matches(tree: &Tree<Fat>, store: &Memory, model: &BTreeMap<u64, [u8; 248]>) {
        let mut nodes = 0;
        assert_eq!(
            tree.check(store, &mut |_| nodes += 1),
            Ok(model.len() as u64)
        );
        assert_eq!(nodes, store.live, "nodes reachable vs allocated");
        let mut seen = Vec::new();
        let _ = tree
            .scan(store, &key(0), &mut |k, v| {
                seen.push((u64::from_be_bytes(k.try_into().unwrap()), v[8]));
                ControlFlow::Continue(())
            })
            .unwrap();
        let want: Vec<_> = model.iter().map(|(k, v)| (*k, v[8])).collect();
        assert_eq!(seen, want);
    }

    #[test]
    fn random_operations_match_a_model() {
        for seed in 1..=6u64 {
            let mut store = Memory::default();
            let mut tree = Tree::<Fat>::create(&mut store, 42).unwrap();
            let mut model = BTreeMap::new();
            let mut rng = Lcg(seed);
            let range = [50, 400, 3000][seed as usize % 3];
            for step in 0..4000u32 {
                let k = rng.next() % range;
                if rng.next() % 3 == 0 {
                    assert_eq!(
                        tree.remove(&mut store, &key(k)).unwrap(),
                        model.remove(&k).is_some()
                    );
                } else {
                    let v = value(k, step as u8);
                    assert_eq!(
                        tree.insert(&mut store, &key(k), &v).unwrap(),
                        model.insert(k, v).is_some()
                    );
                }
                if step % 500 == 0 {
                    check_matches(&tree, &store, &model);
                }
                let probe = rng.next() % range;
                let mut got = [0u8; 248];
                let found = tree.get(&store, &key(probe), &mut got).unwrap();
                assert_eq!(found.then_some(got), model.get(&probe).copied());
                let (mut fk, mut fv) = ([0u8; 8], [0u8; 248]);
                let below = tree
                    .last_at_or_before(&store, &key(probe), &mut fk, &mut fv)
                    .unwrap();
                let want = model.range(..=probe).next_back().map(|(k, _)| *k);
                assert_eq!(below.then(|| u64::from_be_bytes(fk)), want);
            }
            check_matches(&tree, &store, &model);
            // Emptying the tree gives every node but the root back.
            let keys: Vec<u64> = model.keys().copied().collect();
            for k in keys {
                assert!(tree.remove(&mut store, &key(k)).unwrap());
            }
            assert_eq!(store.live, 1);
            check_matches(&tree, &store, &BTreeMap::new());
        }
    }

    /// Nodes reachable from the root, level by level (leaves first).
    fn nodes_per_level(tree: &Tree<Fat>, store: &Memory) -> Vec<usize> {
        let mut levels = Vec::new();
        tree.check(store, &mut |block| {
            let level = usize::from(store.node(block).unwrap()[OFF_LEVEL]);
            if levels.len() <= level {
                levels.resize(level + 1, 0);
            }
            levels[level] += 1;
        })
        .unwrap();
        levels
    }

    #[test]
    fn deleting_most_entries_merges_the_tree_back() {
        for seed in 1..=4u64 {
            let mut store = Memory::default();
            let mut tree = Tree::<Fat>::create(&mut store, 3).unwrap();
            let mut model = BTreeMap::new();
            for k in 0..3000u64 {
                tree.insert(&mut store, &key(k), &value(k, 0)).unwrap();
                model.insert(k, value(k, 0));
            }
            assert!(nodes_per_level(&tree, &store).len() >= 3);
            // Remove all but every 1000th key, in random order.
            let mut doomed: Vec<u64> = (0..3000).filter(|k| k % 1000 != 7).collect();
            let mut rng = Lcg(seed);
            for i in (1..doomed.len()).rev() {
                doomed.swap(i, (rng.next() % (i as u64 + 1)) as usize);
            }
            for k in doomed {
                assert!(tree.remove(&mut store, &key(k)).unwrap());
                model.remove(&k);
            }
            check_matches(&tree, &store, &model);
            // Merges and root collapses bring the tree back to one leaf.
            assert_eq!(nodes_per_level(&tree, &store), [1], "seed {seed}");
        }
    }

    #[test]
    fn a_leaf_that_never_empties_still_merges() {
        // The reverse map's shape: entries at the far end (records of the
        // tree's own nodes) stay while everything between them goes.
        let mut store = Memory::default();
        let mut tree = Tree::<Fat>::create(&mut store, 4).unwrap();
        for k in 0..40u64 {
            tree.insert(&mut store, &key(k), &value(k, 0)).unwrap();
        }
        assert_eq!(nodes_per_level(&tree, &store).len(), 2);
        for k in 3..38u64 {
            assert!(tree.remove(&mut store, &key(k)).unwrap());
        }
        let model: BTreeMap<u64, [u8; 248]> = [0, 1, 2, 38, 39]
            .into_iter()
            .map(|k| (k, value(k, 0)))
            .collect();
        check_matches(&tree, &store, &model);
        assert_eq!(nodes_per_level(&tree, &store), [1]);
    }

    #[test]
    fn grows_several_levels_and_scans_from_the_middle() {
        let mut store = Memory::default();
        let mut tree = Tree::<Fat>::create(&mut store, 1).unwrap();
        for k in 0..5000u64 {
            tree.insert(&mut store, &key(k * 2), &value(k, 1)).unwrap();
        }
        let root_level = store.node(tree.root).unwrap()[OFF_LEVEL];
        assert!(root_level >= 2, "level {}", root_level);
        let mut first = Vec::new();
        let _ = tree
            .scan(&store, &key(777), &mut |k, _| {
                first.push(u64::from_be_bytes(k.try_into().unwrap()));
                if first.len() == 3 {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })
            .unwrap();
        assert_eq!(first, [778, 780, 782]);
    }

    #[test]
    fn damaged_nodes_are_reported_not_trusted() {
        let mut store = Memory::default();
        let mut tree = Tree::<Fat>::create(&mut store, 9).unwrap();
        for k in 0..200u64 {
            tree.insert(&mut store, &key(k), &value(k, 0)).unwrap();
        }
        let mut nodes = Vec::new();
        tree.check(&store, &mut |b| nodes.push(b)).unwrap();
        let mut v = [0u8; 248];
        // Any bit flip in any node is caught by every operation reaching it.
        for &block in &nodes {
            for bit in (0..BLOCK_SIZE * 8).step_by(97) {
                store.node_mut(block).unwrap()[bit / 8] ^= 1 << (bit % 8);
                assert!(matches!(
                    tree.check(&store, &mut |_| {}),
                    Err(TreeError::Corrupt { .. })
                ));
                store.node_mut(block).unwrap()[bit / 8] ^= 1 << (bit % 8);
            }
        }
        // Well-formed nodes in the wrong place: another owner, another block.
        let other = Tree::<Fat>::open(tree.root, 10);
        assert_eq!(
            other.get(&store, &key(1), &mut v),
            Err(TreeError::Corrupt {
                block: tree.root,
                what: Corruption::Owner
            })
        );
        let leaf = *nodes.last().unwrap();
        let copy = *store.node(leaf).unwrap();
        *store.node_mut(nodes[0]).unwrap() = copy;
        assert!(matches!(
            tree.get(&store, &key(1), &mut v),
            Err(TreeError::Corrupt { .. })
        ));
        assert_eq!(
            tree.get(&store, &[0u8; 3], &mut v),
            Err(TreeError::BadArgument)
        );
    }

    /// A crafted tree whose internal nodes all point at one child (levels
    /// decrease, so no cycle) would be walked once per path: fan-out to
    /// the power of the depth. Bounds and non-empty children make the
    /// second path to a node an error at once.
    #[test]
    fn shared_children_are_damage_not_work() {
        struct Counting {
            nodes: Vec<Box<[u8; BLOCK_SIZE]>>,
            reads: core::cell::Cell<u64>,
        }
        impl Nodes for Counting {
            type Error = ();
            fn read(&self, block: u64, offset: usize, buf: &mut [u8]) -> Result<(), ()> {
                if offset == 0 {
                    self.reads.set(self.reads.get() + 1);
                }
                copy_from_node(self.nodes.get(block as usize).ok_or(())?, offset, buf);
                Ok(())
            }
        }
        let (fan, top) = (8usize, 6u8);
        let mut nodes = Vec::new();
        for level in 0..=top {
            let mut n = Box::new([0u8; BLOCK_SIZE]);
            put(&mut *n, OFF_MAGIC, &NODE_MAGIC.to_le_bytes());
            put(&mut *n, OFF_KIND, &[Fat::KIND, level]);
            put(&mut *n, OFF_OWNER, &42u64.to_le_bytes());
            put(&mut *n, OFF_BLOCK, &u64::from(level).to_le_bytes());
            if level > 0 {
                let base = 1000 * u64::from(top - level);
                for i in 0..fan {
                    let at = HEADER_BYTES + i * 16;
                    put(&mut *n, at, &(base + i as u64).to_be_bytes());
                    put(&mut *n, at + 8, &(u64::from(level) - 1).to_le_bytes());
                }
                put(&mut *n, OFF_COUNT, &(fan as u16).to_le_bytes());
            }
            seal(&mut n);
            nodes.push(n);
        }
        let store = Counting {
            nodes,
            reads: core::cell::Cell::new(0),
        };
        let tree = Tree::<Fat>::open(u64::from(top), 42);
        assert!(tree.check(&store, &mut |_| {}).is_err());
        let mut k = [0u8; 8];
        let mut v = [0u8; 248];
        assert!(tree
            .last_at_or_before(&store, &u64::MAX.to_be_bytes(), &mut k, &mut v)
            .is_err());
        assert!(tree
            .scan(&store, &0u64.to_be_bytes(), &mut |_, _| {
                ControlFlow::Continue(())
            })
            .is_err());
        assert!(store.reads.get() < 100, "{} node reads", store.reads.get());
    }
}
