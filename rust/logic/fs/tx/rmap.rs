// SPDX-License-Identifier: GPL-2.0

//! The reverse map's changes in a transaction: every extent a transaction
//! gives or takes is queued as an add or a removal (with the length the
//! caller believes the record has) and applied to the reverse-map tree at
//! commit, where a record that does not match is damage.

use crate::logic::fs::{Damage, Error, Media, MAX_DEFERRED, OWNER_REVERSE_MAP};

use super::stores::TreeStore;
use super::{tree_error, Tx};
use crate::logic::format::{
    btree::Tree,
    get_u64,
    kinds::{ReverseMap, RmapKey},
};

/// A change to the reverse map waiting for the reverse map's own tree to
/// be free (tree node allocations happen in the middle of other trees'
/// operations).
#[derive(Clone, Copy, Debug)]
pub(super) enum RmapChange {
    Add(RmapKey, u64, u64),
    /// The record of this key, which must say this many blocks.
    Remove(RmapKey, u64),
}

impl RmapChange {
    pub(super) const WORDS: usize = 6;

    pub(super) fn encode(self) -> [u64; Self::WORDS] {
        match self {
            Self::Add(k, len, flags) => [0, k.start, k.owner, k.offset, len, flags],
            Self::Remove(k, len) => [1, k.start, k.owner, k.offset, len, 0],
        }
    }

    pub(super) fn decode(words: &[u64]) -> Option<Self> {
        let &[kind, start, owner, offset, len, flags] = words else {
            return None;
        };
        let key = RmapKey {
            start,
            owner,
            offset,
        };
        Some(if kind == 0 {
            Self::Add(key, len, flags)
        } else {
            Self::Remove(key, len)
        })
    }
}

impl<'a, M: Media> Tx<'a, M> {
    /// Adds the reverse-map record `key` → (`len`, `flags`).
    pub(in crate::logic::fs) fn rmap_add(
        &mut self,
        key: RmapKey,
        len: u64,
        flags: u64,
    ) -> Result<(), Error> {
        self.queue_rmap(RmapChange::Add(key, len, flags))
    }

    /// Removes the reverse-map record `key`, which must be of `len`
    /// blocks.
    pub(in crate::logic::fs) fn rmap_remove(
        &mut self,
        key: RmapKey,
        len: u64,
    ) -> Result<(), Error> {
        self.queue_rmap(RmapChange::Remove(key, len))
    }

    fn queue_rmap(&mut self, change: RmapChange) -> Result<(), Error> {
        if self.rmap_count >= MAX_DEFERRED {
            return Err(Error::NoSpace);
        }
        let slot = self.rmap_words(self.rmap_count).ok_or(Error::NoSpace)?;
        slot.copy_from_slice(&change.encode());
        self.rmap_count += 1;
        Ok(())
    }

    /// Applies queued reverse-map changes; changing the reverse map's tree
    /// can queue more (its own nodes), so this runs until none is left.
    pub(super) fn settle_rmap(&mut self) -> Result<(), Error> {
        let mut tree = Tree::<ReverseMap>::open(self.sb.rmap_root, OWNER_REVERSE_MAP);
        let mut next = 0;
        while next < self.rmap_count {
            let change = self
                .rmap_words(next)
                .and_then(|w| RmapChange::decode(w))
                .ok_or(Error::NoSpace)?;
            next += 1;
            let mut store = TreeStore::new(self, OWNER_REVERSE_MAP);
            match change {
                RmapChange::Add(key, len, flags) => {
                    let mut value = [0u8; 16];
                    value[..8].copy_from_slice(&len.to_le_bytes());
                    value[8..].copy_from_slice(&flags.to_le_bytes());
                    tree.insert(&mut store, &key.encode(), &value)
                        .map_err(tree_error)?;
                }
                RmapChange::Remove(key, len) => {
                    // The blocks freed with this record are the ones it
                    // names: a longer extent (damaged, or crafted) must
                    // not free another owner's blocks.
                    let mut value = [0u8; 16];
                    let found = tree
                        .get(&store, &key.encode(), &mut value)
                        .map_err(tree_error)?;
                    if !found || get_u64(&value, 0) != Some(len) {
                        return Err(Error::Corrupt(key.start, Damage::Record));
                    }
                    if !tree.remove(&mut store, &key.encode()).map_err(tree_error)? {
                        return Err(Error::Corrupt(key.start, Damage::Record));
                    }
                }
            }
        }
        self.rmap_count = 0;
        self.sb.rmap_root = tree.root;
        Ok(())
    }
}
