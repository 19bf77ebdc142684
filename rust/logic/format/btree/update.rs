// SPDX-License-Identifier: GPL-2.0

//! Changing a B+tree: insertion with node splits, removal with merges of
//! nodes left under a quarter full and collapse of a root with one child.

use super::node::Within;
use super::{
    capacity, corrupt, entry_size, Blocks, Corruption, TResult, Tree, TreeError, TreeKind,
    HEADER_BYTES, MAX_ENTRY_BYTES, MAX_KEY_BYTES, OFF_COUNT,
};
use crate::logic::format::{put, BLOCK_SIZE};

/// Says whether a removal wants the entry whose value it is shown
/// ([`Tree::remove_if`]).
type ValueFilter<'a> = &'a mut dyn FnMut(&[u8]) -> bool;

/// What an insertion did at the leaf.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Put {
    Added,
    Replaced,
    /// [`Tree::insert_first`]: a key with the same prefix is in the tree.
    Refused,
}

/// A node holding less than `1 / MERGE_BELOW` of its capacity after a
/// deletion is merged with a neighbour if possible.
const MERGE_BELOW: usize = 4;

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

impl<K: TreeKind> Tree<K> {
    /// Inserts or replaces `key`; returns whether it replaced an entry. The
    /// root may change (a split): the caller stores `self.root` afterwards.
    pub fn insert<S: Blocks>(
        &mut self,
        store: &mut S,
        key: &[u8],
        value: &[u8],
    ) -> TResult<bool, S::Error> {
        Ok(self.put(store, key, value, None)? == Put::Replaced)
    }

    /// Inserts `key`, the least key of its first `prefix` bytes (the rest
    /// zeros: a directory entry's hash with collision index 0), unless
    /// some key with that prefix is in the tree; whether it did. In one
    /// descent: the entries with the prefix would follow `key` in its
    /// leaf, or start the next one. Refused, the tree holds the same
    /// entries (an internal node's first key may have been lowered to
    /// `key`, which stays a lower bound of its subtree).
    pub fn insert_first<S: Blocks>(
        &mut self,
        store: &mut S,
        key: &[u8],
        value: &[u8],
        prefix: usize,
    ) -> TResult<bool, S::Error> {
        let least = key
            .get(prefix..)
            .is_some_and(|rest| rest.iter().all(|&b| b == 0));
        if !least {
            return Err(TreeError::BadArgument);
        }
        Ok(self.put(store, key, value, Some(prefix))? == Put::Added)
    }

    fn put<S: Blocks>(
        &mut self,
        store: &mut S,
        key: &[u8],
        value: &[u8],
        first_of: Option<usize>,
    ) -> TResult<Put, S::Error> {
        Self::check_sizes(key, Some(value))?;
        let (put, split) = self.insert_at(store, self.root, None, key, value, first_of)?;
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
            store.seal(new_root).map_err(TreeError::Store)?;
            self.root = new_root;
        }
        Ok(put)
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
        first_of: Option<usize>,
    ) -> TResult<(Put, Option<([u8; MAX_KEY_BYTES], u64)>), S::Error> {
        let node = self.load(store, block, within)?;
        let (level, count) = (node.level, node.count);
        if level == 0 {
            let found = node.search(key)?;
            if let Some(prefix) = first_of {
                let same = |other: &[u8]| other.get(..prefix) == key.get(..prefix);
                let taken = match found {
                    Ok(_) => true,
                    Err(i) if i < count => same(&node.key(i)?),
                    Err(_) => within.and_then(|w| w.upper).is_some_and(|u| same(&u)),
                };
                if taken {
                    return Ok((Put::Refused, None));
                }
            }
            return match found {
                Ok(i) => {
                    let size = entry_size::<K>(0);
                    let bytes = store.node_mut(block).map_err(TreeError::Store)?;
                    let start = HEADER_BYTES + i * size + K::KEY;
                    put(bytes, start, value);
                    store.seal(block).map_err(TreeError::Store)?;
                    Ok((Put::Replaced, None))
                }
                Err(i) => Ok((
                    Put::Added,
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
            store.seal(block).map_err(TreeError::Store)?;
        }
        let (put, split) =
            self.insert_at(store, child, Some(&child_within), key, value, first_of)?;
        let Some((separator, right)) = split else {
            return Ok((put, None));
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
        Ok((put, split))
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
            store.seal(block).map_err(TreeError::Store)?;
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
            store.seal(block).map_err(TreeError::Store)?;
        }
        {
            let node = store.node_mut(right).map_err(TreeError::Store)?;
            put(node, OFF_COUNT, &((count - keep) as u16).to_le_bytes());
            store.seal(right).map_err(TreeError::Store)?;
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
        store.seal(target).map_err(TreeError::Store)?;
        Ok(Some((separator, right)))
    }

    /// Removes `key`; returns whether it was there. The root may change.
    pub fn remove<S: Blocks>(&mut self, store: &mut S, key: &[u8]) -> TResult<bool, S::Error> {
        self.remove_matching(store, key, None)
    }

    /// Removes `key` if `wanted` says yes to its value, in one descent
    /// (a directory entry found by its hash is removed only if it holds
    /// the name); returns whether it did. Nothing changes otherwise.
    pub fn remove_if<S: Blocks>(
        &mut self,
        store: &mut S,
        key: &[u8],
        wanted: &mut dyn FnMut(&[u8]) -> bool,
    ) -> TResult<bool, S::Error> {
        self.remove_matching(store, key, Some(wanted))
    }

    fn remove_matching<S: Blocks>(
        &mut self,
        store: &mut S,
        key: &[u8],
        mut wanted: Option<ValueFilter<'_>>,
    ) -> TResult<bool, S::Error> {
        Self::check_sizes(key, None)?;
        let (removed, _) = self.remove_at(store, self.root, None, key, &mut wanted)?;
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
        wanted: &mut Option<ValueFilter<'_>>,
    ) -> TResult<(bool, usize), S::Error> {
        let (level, count, index, child) = {
            let node = self.load(store, block, within)?;
            let level = node.level;
            if level == 0 {
                let Ok(i) = node.search(key)? else {
                    return Ok((false, node.count));
                };
                if let Some(wanted) = wanted {
                    let mut value = [0u8; MAX_ENTRY_BYTES];
                    let value = value.get_mut(..K::VALUE).ok_or(TreeError::BadArgument)?;
                    node.value(i, value)?;
                    if !wanted(value) {
                        return Ok((false, node.count));
                    }
                }
                (level, node.count, i, None)
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
        let (removed, child_left) =
            self.remove_at(store, child, Some(&child_within), key, wanted)?;
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
            // Each within the bounds its separators give it, so the merged
            // node is in order (its checks are not run again before the
            // commit seals it).
            let (left, left_within, right, right_within) = {
                let parent = self.load(store, block, None)?;
                if parent.level != level {
                    return corrupt(block, Corruption::Level);
                }
                (
                    parent.child(right_index - 1)?,
                    parent.within_child(right_index - 1, None)?,
                    parent.child(right_index)?,
                    parent.within_child(right_index, None)?,
                )
            };
            let left_count = self.load(store, left, Some(&left_within))?.count;
            let right_count = self.load(store, right, Some(&right_within))?.count;
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
        store.seal(left).map_err(TreeError::Store)?;
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
        store.seal(block).map_err(TreeError::Store)?;
        Ok(())
    }
}
