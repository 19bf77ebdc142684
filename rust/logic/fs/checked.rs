// SPDX-License-Identifier: GPL-2.0

//! Tree nodes already checked during this mount.
//!
//! A node read from the device is checked in full before it is trusted: its
//! checksum over 4 KiB and the order of its keys. Without memory of what it
//! checked every lookup paid that again for every node on its path (make
//! bench: a 4 KiB fault on a preallocated file cost five times ext4's); the
//! metadata cache (`cache.rs`) holds far fewer blocks than this table
//! remembers, and a block it evicts needs no new check. ext4 and xfs check
//! a block when it comes into their buffer cache, not on every use; this is
//! the same trust: a node that passed stays trusted until its block is
//! freed, since only this mount writes it and every node it writes is
//! sealed with a fresh checksum. The cheap header checks (magic, kind,
//! owner, block number, level, count) still run on every read.
//!
//! A direct-mapped table of block numbers: a collision evicts, so it can
//! only forget, never trust a block that was not checked.

use core::sync::atomic::{AtomicU64, Ordering};

/// Slots of the table per slot of the metadata cache (8 bytes for each 4
/// KiB the cache holds): the table remembers more nodes than the cache
/// holds, so a node the cache dropped costs a copy when it is read again,
/// not a checksum and an order check.
pub const CHECKED_SLOTS_PER_CACHE_SLOT: usize = 4;

/// The nodes checked since mount, in a table of slots (block + 1; 0 is
/// empty). An empty table remembers nothing: every read is checked.
#[derive(Clone, Copy)]
pub(super) struct CheckedNodes<'a> {
    slots: &'a [AtomicU64],
}

impl<'a> CheckedNodes<'a> {
    pub(super) fn new(slots: &'a [AtomicU64]) -> Self {
        Self { slots }
    }

    /// Remembers nothing (fsck: every node is checked).
    pub(super) fn none() -> Self {
        Self { slots: &[] }
    }

    fn slot(&self, block: u64) -> Option<&'a AtomicU64> {
        let count = u64::try_from(self.slots.len()).ok().filter(|&n| n > 0)?;
        self.slots.get(usize::try_from(block % count).ok()?)
    }

    /// Whether `block` passed every check since it was last freed.
    pub(super) fn contains(&self, block: u64) -> bool {
        self.slot(block)
            .is_some_and(|slot| slot.load(Ordering::Relaxed) == block.wrapping_add(1))
    }

    /// Records that `block` passed every check.
    pub(super) fn insert(&self, block: u64) {
        if let Some(slot) = self.slot(block) {
            slot.store(block.wrapping_add(1), Ordering::Relaxed);
        }
    }

    /// Forgets blocks `start..start + len` (freed: they may come back as
    /// anything).
    pub(super) fn forget(&self, start: u64, len: u64) {
        let end = start.saturating_add(len);
        if len >= self.slots.len() as u64 {
            for slot in self.slots {
                let held = slot.load(Ordering::Relaxed);
                if held != 0 && (start..end).contains(&(held - 1)) {
                    slot.store(0, Ordering::Relaxed);
                }
            }
            return;
        }
        for block in start..end {
            if let Some(slot) = self.slot(block) {
                let _ = slot.compare_exchange(
                    block.wrapping_add(1),
                    0,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_until_forgotten_or_evicted() {
        let slots: [AtomicU64; 8] = Default::default();
        let checked = CheckedNodes::new(&slots);
        assert!(!checked.contains(3));
        checked.insert(3);
        assert!(checked.contains(3));
        assert!(!checked.contains(11), "same slot, other block");
        checked.insert(11);
        assert!(!checked.contains(3), "evicted by a collision");
        checked.insert(4);
        checked.forget(0, 5);
        assert!(!checked.contains(4));
        assert!(checked.contains(11), "outside the freed range");
        checked.insert(5);
        checked.forget(0, 100);
        assert!(!checked.contains(11) && !checked.contains(5));
        checked.insert(0);
        assert!(checked.contains(0), "block 0 is not the empty slot");
    }

    #[test]
    fn an_empty_table_remembers_nothing() {
        let checked = CheckedNodes::none();
        checked.insert(1);
        assert!(!checked.contains(1));
        checked.forget(0, u64::MAX);
    }
}
