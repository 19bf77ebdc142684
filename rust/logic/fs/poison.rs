// SPDX-License-Identifier: GPL-2.0

//! Device blocks known to hold failed memory (poison), as the filesystem
//! learned them from memory-failure notifications while mounted.
//!
//! The list lives in memory only: poison is a property of the device, which
//! tells again (its bad-block list, a machine check) after a remount. A
//! poisoned block is never read or mapped for a file (reads fail, faults
//! signal), and once freed it is never handed out again: the allocator
//! sees it as used (see `Tx`'s space store). A short fixed list, because a
//! device that keeps failing is not one to keep writing to: when it is full
//! the filesystem shuts down.

use crate::logic::format::space::Extent;

/// Runs of poisoned blocks the list holds.
pub const MAX_POISONED: usize = 32;

/// Poisoned device blocks: sorted, disjoint, non-adjacent runs.
#[derive(Clone, Copy, Debug)]
pub struct Poisoned {
    runs: [Extent; MAX_POISONED],
    count: usize,
}

impl Default for Poisoned {
    fn default() -> Self {
        Self::NONE
    }
}

impl Poisoned {
    /// No poisoned block.
    pub const NONE: Self = Self {
        runs: [Extent { start: 0, len: 0 }; MAX_POISONED],
        count: 0,
    };

    /// The runs, in block order.
    pub fn runs(&self) -> &[Extent] {
        self.runs.get(..self.count).unwrap_or(&[])
    }

    /// Whether no block is poisoned.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Adds `start..start + len`, merging with runs it touches; `false`
    /// (nothing changed) when the list is full.
    pub fn add(&mut self, start: u64, len: u64) -> bool {
        if len == 0 {
            return true;
        }
        let mut new = Extent {
            start,
            len: len.min(u64::MAX - start),
        };
        // Runs that overlap or touch the new one merge into it.
        let first = self
            .runs()
            .iter()
            .position(|r| r.start + r.len >= new.start)
            .unwrap_or(self.count);
        let mut last = first;
        while let Some(r) = self.runs().get(last) {
            if r.start > new.start + new.len {
                break;
            }
            let end = (r.start + r.len).max(new.start + new.len);
            new.start = new.start.min(r.start);
            new.len = end - new.start;
            last += 1;
        }
        let merged = last - first;
        if merged == 0 && self.count == MAX_POISONED {
            return false;
        }
        // Replace runs `first..last` by the one new run.
        let count = self.count;
        if merged == 0 {
            self.runs.copy_within(first..count, first + 1);
        } else {
            self.runs.copy_within(last..count, first + 1);
        }
        if let Some(slot) = self.runs.get_mut(first) {
            *slot = new;
        }
        self.count = count + 1 - merged;
        true
    }

    /// The first poisoned block of `start..start + len`.
    pub fn first_in(&self, start: u64, len: u64) -> Option<u64> {
        let end = start.saturating_add(len);
        self.runs()
            .iter()
            .find(|r| r.start + r.len > start && r.start < end)
            .map(|r| r.start.max(start))
    }

    /// The poisoned blocks among the 64 of bitmap word `index`, as bits.
    pub fn word_mask(&self, index: u64) -> u64 {
        let first = index.saturating_mul(64);
        let mut mask = 0;
        for r in self.runs() {
            let start = r.start.max(first);
            let end = (r.start + r.len).min(first.saturating_add(64));
            if start < end {
                let bits = end - start;
                let run = if bits == 64 {
                    u64::MAX
                } else {
                    (1 << bits) - 1
                };
                mask |= run << (start - first);
            }
        }
        mask
    }
}

#[cfg(test)]
mod tests {
    extern crate alloc;

    use super::*;
    use crate::logic::testing::Lcg;
    use alloc::{collections::BTreeSet, vec::Vec};

    fn blocks(p: &Poisoned) -> BTreeSet<u64> {
        p.runs()
            .iter()
            .flat_map(|r| r.start..r.start + r.len)
            .collect()
    }

    #[test]
    fn runs_merge_and_stay_sorted() {
        let mut rng = Lcg(7);
        for _ in 0..200 {
            let mut p = Poisoned::default();
            let mut model = BTreeSet::new();
            for _ in 0..40 {
                let start = rng.next() % 300;
                let len = rng.next() % 5;
                if p.add(start, len) {
                    model.extend(start..start + len);
                } else {
                    assert_eq!(p.runs().len(), MAX_POISONED);
                }
                assert_eq!(blocks(&p), model);
                let runs: Vec<_> = p.runs().to_vec();
                for pair in runs.windows(2) {
                    assert!(pair[0].start + pair[0].len < pair[1].start, "{:?}", runs);
                }
                assert!(runs.iter().all(|r| r.len > 0));
            }
            for start in 0..310 {
                let want = (start..start + 7).find(|b| model.contains(b));
                assert_eq!(p.first_in(start, 7), want);
            }
            for index in 0..6 {
                let want = (0..64)
                    .filter(|bit| model.contains(&(index * 64 + bit)))
                    .fold(0u64, |m, bit| m | 1 << bit);
                assert_eq!(p.word_mask(index), want);
            }
        }
    }

    #[test]
    fn a_full_list_refuses_new_runs_but_merges() {
        let mut p = Poisoned::default();
        for i in 0..MAX_POISONED as u64 {
            assert!(p.add(i * 10, 1));
        }
        assert!(!p.add(1000, 1));
        assert!(p.add(11, 2), "touches a run: merges");
        assert!(!p.add(5, 1));
        assert_eq!(p.first_in(12, 1), Some(12));
        assert_eq!(p.word_mask(0) & 0b1_1000_0000_0000, 0b1_1000_0000_0000);
    }
}
