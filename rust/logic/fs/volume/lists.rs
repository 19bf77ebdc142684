// SPDX-License-Identifier: GPL-2.0

//! The volume's lists of work for later: evicted inodes waiting to be
//! freed together (`orphans.rs`), regions to place whole and the chunks
//! compaction found worth emptying (`compact.rs`). They are behind one
//! lock the environment supplies ([`Scratch::lists`](crate::logic::fs::Scratch::lists)):
//! the "misc" lock of Documentation/oxdax/concurrency.rst's lock order, a
//! spinlock in the module, held only to change a list (no I/O under it,
//! nothing taken under it), so that calls that share the volume can each
//! add and take.

use super::{compact, orphans, Volume};
use crate::logic::fs::{Media, Scratch};

/// The lists.
#[derive(Default)]
pub struct VolumeLists {
    /// Evicted orphans waiting to be freed together.
    pub(super) evicted: orphans::Evicted,
    /// Regions whose blocks can never map whole where they are, for
    /// compaction to place whole: `(ino, first block)`.
    pub(super) misplaced: compact::Misplaced,
    /// Chunks the last compaction scan found worth emptying.
    pub(super) candidates: compact::Candidates,
}

impl<M: Media, S: Scratch> Volume<M, S> {
    /// `change(lists)`, with the lists' lock held.
    pub(super) fn with_lists<R: Default>(&self, change: impl FnOnce(&mut VolumeLists) -> R) -> R {
        let mut change = Some(change);
        let mut result = None;
        self.scratch.lists().with_locked(&mut |lists| {
            result = change.take().map(|change| change(lists));
        });
        // (The lock calls the closure once: the default is never used.)
        result.unwrap_or_default()
    }
}
