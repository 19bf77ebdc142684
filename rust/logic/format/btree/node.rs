// SPDX-License-Identifier: GPL-2.0

//! Reading a B+tree node: every node is validated when it is loaded (magic,
//! kind, owner, block, level, checksum, key order, and the bounds its
//! parent gives it), and a whole tree can be checked node by node.

use core::cmp::Ordering;

use super::{
    capacity, corrupt, entry_size, Corruption, Nodes, TResult, Tree, TreeError, TreeKind,
    CHILD_BYTES, HEADER_BYTES, MAX_KEY_BYTES, MAX_LEVELS, NODE_MAGIC, OFF_BLOCK, OFF_COUNT,
    OFF_CRC, OFF_KIND, OFF_LEVEL, OFF_MAGIC, OFF_OWNER, OFF_RESERVED,
};
use crate::logic::format::{crc32c, get_u16, get_u32, get_u64, BLOCK_SIZE};

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
pub(super) struct Within {
    pub(super) level: u8,
    pub(super) lower: Option<KeyBuf>,
    pub(super) upper: Option<KeyBuf>,
}

/// A validated node: where it is and what its header says. Its entries
/// are read from the store when asked for.
pub(super) struct Node<'s, S: Nodes, K: TreeKind> {
    pub(super) store: &'s S,
    pub(super) block: u64,
    pub(super) level: u8,
    pub(super) count: usize,
    pub(super) _kind: core::marker::PhantomData<K>,
}

impl<S: Nodes, K: TreeKind> Node<'_, S, K> {
    /// Copies `buf.len()` bytes of entry `i` from byte `within` of it.
    pub(super) fn read_entry(
        &self,
        i: usize,
        within: usize,
        buf: &mut [u8],
    ) -> TResult<(), S::Error> {
        let start = HEADER_BYTES + i * entry_size::<K>(self.level) + within;
        if i >= self.count || start + buf.len() > BLOCK_SIZE {
            return Err(TreeError::BadArgument);
        }
        self.store
            .read(self.block, start, buf)
            .map_err(TreeError::Store)
    }

    /// Key `i` (in the first `K::KEY` bytes).
    pub(super) fn key(&self, i: usize) -> TResult<KeyBuf, S::Error> {
        let mut key = [0u8; MAX_KEY_BYTES];
        let buf = key.get_mut(..K::KEY).ok_or(TreeError::BadArgument)?;
        self.read_entry(i, 0, buf)?;
        Ok(key)
    }

    /// Copies the value of leaf entry `i` into `value`.
    pub(super) fn value(&self, i: usize, value: &mut [u8]) -> TResult<(), S::Error> {
        self.read_entry(i, K::KEY, value)
    }

    /// Child `i` of an internal node.
    pub(super) fn child(&self, i: usize) -> TResult<u64, S::Error> {
        let mut child = [0u8; CHILD_BYTES];
        self.read_entry(i, K::KEY, &mut child)?;
        Ok(u64::from_le_bytes(child))
    }

    /// Leaf: index of `key` or where it would go. Internal: the child whose
    /// subtree holds `key` (key 0 counts as minus infinity).
    pub(super) fn search(&self, key: &[u8]) -> TResult<Result<usize, usize>, S::Error> {
        let mut found = None;
        let looked = self
            .store
            .look(self.block, &mut |node| found = self.search_in(node, key))
            .map_err(TreeError::Store)?;
        if let (true, Some(found)) = (looked, found) {
            #[cfg(test)]
            assert!(
                self.search_by_reads(key).ok() == Some(found),
                "node {}: a search in place disagrees with one by reads",
                self.block
            );
            return Ok(found);
        }
        self.search_by_reads(key)
    }

    /// [`Self::search`] in `node`, the node's bytes; `None` if an entry
    /// lies outside them (the load's count check makes that impossible).
    fn search_in(&self, node: &[u8; BLOCK_SIZE], key: &[u8]) -> Option<Result<usize, usize>> {
        let size = entry_size::<K>(self.level);
        let (mut low, mut high) = (0, self.count);
        while low < high {
            let mid = (low + high) / 2;
            let at = HEADER_BYTES + mid * size;
            match node.get(at..at + K::KEY)?.cmp(key) {
                Ordering::Less => low = mid + 1,
                Ordering::Greater => high = mid,
                Ordering::Equal => return Some(Ok(mid)),
            }
        }
        Some(Err(low))
    }

    /// [`Self::search`], one key read at a time.
    fn search_by_reads(&self, key: &[u8]) -> TResult<Result<usize, usize>, S::Error> {
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
    pub(super) fn within_child(
        &self,
        i: usize,
        outer: Option<&Within>,
    ) -> TResult<Within, S::Error> {
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

    pub(super) fn child_index(&self, key: &[u8]) -> TResult<usize, S::Error> {
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

impl<K: TreeKind> Tree<K> {
    /// Reads and validates `block`'s header (and, the first time since it
    /// was last written, the whole node); `within` is what the parent says
    /// of it (`None` for the root).
    pub(super) fn load<'s, S: Nodes>(
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
        // A node this store changed and has not sealed yet was loaded with
        // every check before its first change (or made empty), and only the
        // tree code changed it since, keeping its keys in order: neither its
        // checksum (not written yet) nor its order is checked again. The
        // header and the parent's bounds still are.
        let verify = !store.checked(block) && !store.seal_pending(block);
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
        if verify {
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
        if verify {
            node.check_order()?;
            store.set_checked(block);
        }
        // Host builds hold the tree code to the claim above.
        #[cfg(test)]
        if !verify && store.seal_pending(block) {
            assert!(
                node.check_order().is_ok(),
                "node {block} changed out of key order"
            );
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
