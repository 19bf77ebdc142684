// SPDX-License-Identifier: GPL-2.0

//! The space lock: what allocations and frees change beyond their blocks
//! (the superblock's roots, counters and state; the chunk counts; where
//! inode allocation looks first) is one [`SpaceState`] behind a lock the
//! environment supplies ([`Scratch::lock_space`]).
//!
//! A transaction takes it at its first touch of space, before it reads
//! what it will change (the allocators, the inode-slot and reverse-map and
//! refcount changes, any change of the superblock: [`Tx::hold_space`]), and
//! holds it until the volume has published the transaction's state after
//! its home writes ([`HeldSpace`], dropped by the caller of the commit).
//! One that touches no space (a rename, most unlinks) never takes it.
//!
//! Stage 4 of Documentation/oxdax/concurrency.rst; the volume still admits
//! one transaction at a time, so the lock is never contended yet, and host
//! builds check that nothing changed the state behind a transaction's back.

use core::ops::DerefMut;

use super::Tx;
use crate::logic::{
    format::{space::ChunkCounts, superblock::Superblock},
    fs::{Media, Scratch},
};

/// What the space lock guards (and the reservation words, which are the
/// scratch's: `Reservations`). The default is an unmounted volume's.
#[derive(Clone, Copy, Debug, Default)]
pub struct SpaceState {
    /// The superblock as the last transaction that held the lock left it
    /// (`None` until a mount sets it).
    sb: Option<Superblock>,
    /// The data area's chunks: free whole, partly used, full.
    pub(in crate::logic::fs) chunks: ChunkCounts,
    /// A chunk that had a free inode slot, where the next search starts
    /// (set by a committed inode allocation).
    pub(in crate::logic::fs) chunk_hint: u64,
    /// The mount used the backup superblock: the next transaction that
    /// takes the lock writes the primary whether or not it changed it.
    pub(in crate::logic::fs) rewrite_primary: bool,
}

impl SpaceState {
    /// A mounted volume's: its superblock `sb`, `chunks` as counted, and
    /// whether the primary superblock must be rewritten.
    pub(in crate::logic::fs) fn new(sb: Superblock, chunks: ChunkCounts, rewrite: bool) -> Self {
        Self {
            sb: Some(sb),
            chunks,
            chunk_hint: 0,
            rewrite_primary: rewrite,
        }
    }

    /// A transaction holding the lock committed `sb`.
    pub(in crate::logic::fs) fn set_sb(&mut self, sb: Superblock) {
        self.sb = Some(sb);
    }
}

/// The space lock as a transaction holds it: taken at the first
/// [`hold`](Self::hold), released when dropped.
pub(in crate::logic::fs) trait SpaceHold {
    /// The state, locked now if it is not yet.
    fn hold(&mut self) -> &mut SpaceState;
    /// The state, if the lock is taken.
    fn state(&self) -> Option<&SpaceState>;
}

/// [`SpaceHold`] over a [`Scratch`]'s lock. The caller of a commit keeps it
/// until it has published the transaction's state, then drops it.
pub(in crate::logic::fs) struct HeldSpace<'s, S: Scratch> {
    scratch: &'s S,
    guard: Option<S::SpaceGuard<'s>>,
}

impl<'s, S: Scratch> HeldSpace<'s, S> {
    /// Not held yet.
    pub(in crate::logic::fs) fn new(scratch: &'s S) -> Self {
        Self {
            scratch,
            guard: None,
        }
    }

    /// The state, if the transaction took the lock.
    pub(in crate::logic::fs) fn taken(&mut self) -> Option<&mut SpaceState> {
        self.guard.as_deref_mut()
    }
}

impl<S: Scratch> SpaceHold for HeldSpace<'_, S> {
    fn hold(&mut self) -> &mut SpaceState {
        let scratch = self.scratch;
        self.guard
            .get_or_insert_with(|| scratch.lock_space())
            .deref_mut()
    }

    fn state(&self) -> Option<&SpaceState> {
        self.guard.as_deref()
    }
}

impl<M: Media> Tx<'_, M> {
    /// Takes the space lock if this transaction does not hold it yet: from
    /// then on its superblock is the state's (which, with one transaction
    /// at a time, is the one it started from), and it holds the lock until
    /// the volume published its commit.
    pub(in crate::logic::fs) fn hold_space(&mut self) -> &mut SpaceState {
        if self.space.state().is_none() {
            let state = self.space.hold();
            if let Some(sb) = state.sb {
                // Everything that changes the superblock takes the lock
                // first; and nothing else ran since this one started.
                #[cfg(test)]
                assert!(
                    self.sb == self.base && sb == self.base,
                    "the superblock changed outside the space lock"
                );
                self.sb = sb;
                self.base = sb;
            }
            self.rewrite_primary = state.rewrite_primary;
        }
        self.space.hold()
    }

    /// The superblock, to change: with the space lock.
    pub(in crate::logic::fs) fn sb_mut(&mut self) -> &mut Superblock {
        self.hold_space();
        &mut self.sb
    }

    /// The superblock as this transaction sees it.
    pub(in crate::logic::fs) fn sb(&self) -> &Superblock {
        &self.sb
    }

    /// The space state, if this transaction holds the lock: what reads
    /// the allocator's reservations (without the lock there is no
    /// allocation to make).
    pub(in crate::logic::fs) fn held_space(&self) -> Option<&SpaceState> {
        self.space.state()
    }
}
