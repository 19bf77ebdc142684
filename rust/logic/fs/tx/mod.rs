// SPDX-License-Identifier: GPL-2.0

//! Journal transactions: every metadata change of an operation is made to
//! shadow copies of the blocks it touches, then committed at once.
//!
//! Commit: the shadows are compared with the blocks as they were 8 bytes
//! at a time, in the 64-byte lines each shadow marked as it changed
//! ([`Tx::write_at`]; a node or the superblock marks all), and only the
//! changed runs are logged (a typical operation logs a few hundred bytes,
//! not whole blocks); the log body is written and fenced, then the commit
//! record, fenced again: from then on recovery applies the whole
//! transaction. The records just logged are then written home.
//! Home writes are not fenced on their own: the next transaction's first
//! fence covers them, and until the log wraps recovery would redo them
//! anyway. Before the log wraps to its start, the journal header's tail is
//! moved past everything written home (and fenced first).
//!
//! Blocks a transaction frees are given back only at its commit, after its
//! allocations: a block still mapped in the committed state is never
//! handed out (and zeroed on the device) by the transaction that unmaps it,
//! which a crash before the commit would expose.
//!
//! This file is the transaction and its shadow blocks; [`commit`] writes
//! it to the journal and home, [`journal`] places it in the log, [`space`] allocates and frees blocks,
//! [`rmap`] keeps the reverse map in step, [`stores`] gives the B+tree its
//! view of the committed state and of a transaction.

mod chain;
mod commit;
mod journal;
mod rmap;
mod space;
mod space_lock;
mod stores;

use super::{
    cache::{BlockCache, InodeCache, Touched},
    checked::CheckedNodes,
    Damage, Error, Media, Poisoned, Scratch, TxParts, MAX_DEFERRED,
};
use crate::logic::format::{
    btree::{self, Nodes, TreeError},
    inode::{Inode, INODE_BYTES},
    layout::Layout,
    space::{ChunkCounts, SpaceError},
    superblock::Superblock,
    BLOCK_SIZE,
};
pub(super) use chain::{Chain, Commits};
pub(super) use commit::write_backup;
pub use journal::Journal;
use rmap::RmapChange;
pub use space::RESERVATION_WORDS;
pub(super) use space::{CommittedSpace, Reservations, ReservationsMut, Taken};
pub(super) use space_lock::HeldSpace;
use space_lock::SpaceHold;
pub use space_lock::SpaceState;
pub(super) use stores::{inode_location, read_inode, scan, slot_in_use, Committed, TreeStore};

/// A new transaction's poisoned blocks until the volume gives it its own
/// list (`Volume::transact`); a read-only look at the free-space summary
/// keeps none.
static NO_POISON: Poisoned = Poisoned::NONE;

/// Converts a tree error.
pub(super) fn tree_error(error: TreeError<Error>) -> Error {
    match error {
        TreeError::Store(e) => e,
        TreeError::Corrupt { block, what } => Error::Corrupt(block, Damage::Node(what)),
        TreeError::BadArgument => Error::Invalid,
    }
}

pub(super) fn space_error(error: SpaceError<Error>) -> Error {
    match error {
        SpaceError::Store(e) => e,
        SpaceError::NoSpace => Error::NoSpace,
        SpaceError::OutOfRange | SpaceError::Inconsistent { .. } => {
            Error::Corrupt(0, Damage::Space)
        }
    }
}

// Shadows are named by bits of a `u128` (`unknown`, `unsealed`,
// `freed_shadows`).
const _: () = assert!(super::TX_MAX_BLOCKS <= 128);

/// One transaction in progress.
pub(super) struct Tx<'a, M: Media> {
    media: &'a M,
    layout: Layout,
    shadows: &'a mut [[u8; BLOCK_SIZE]],
    /// The shadowed blocks as they were (and still are on the media), in
    /// the lines of `lines` only: a line is copied from its shadow when
    /// it is first marked, before it changes ([`Self::mark_lines`]), so
    /// that a change of a few bytes (a bit, a record) costs a line's copy
    /// and not a block's.
    originals: &'a mut [[u8; BLOCK_SIZE]],
    tags: &'a mut [u64],
    /// Bit `l` of `lines[i]`: shadow `i` may differ from its original in
    /// 64-byte line `l` (a change made through [`Self::write_at`] marks
    /// its lines, one through [`Self::write`] all of them); the commit
    /// diffs only those. In every other line the shadow is its original.
    /// [`Self::seal_nodes`] narrows a resealed node's mask to the lines
    /// that differ and line 0, its checksum's.
    lines: &'a mut [u64],
    /// Committed blocks (the ones not shadowed) are read through it.
    cache: BlockCache<'a>,
    /// Committed inode records: those this transaction has not touched
    /// are still what it would read.
    records: InodeCache<'a>,
    log: &'a mut [u8],
    spare: &'a mut [u8; BLOCK_SIZE],
    /// Frees (two words each) then reverse-map changes (six each).
    deferred: &'a mut [u64],
    /// Nodes checked since mount (home blocks only: shadows are checked).
    checked: CheckedNodes<'a>,
    used: usize,
    /// Shadows (by index) whose block could not be read: written whole.
    unknown: u128,
    /// Shadows (by index) of tree nodes changed since their checksum was
    /// written: sealed once, at commit, however often they changed.
    unsealed: u128,
    /// Shadows (by index) whose original passed the node checks since
    /// mount: its checksum is right, so the commit updates it for the
    /// lines that changed ([`btree::reseal`]) instead of checksumming 4 KiB.
    /// Sound because every node content a commit caches or writes home is
    /// sealed, and every free forgets its blocks from the checked table
    /// (`apply_frees`): a block in the table holds the node that passed.
    trusted: u128,
    /// Shadows (by index) of blocks this transaction freed: the cache must
    /// not keep them (a block given back may be zeroed or written as file
    /// data on the device, past the cache; a stale copy would then be the
    /// "original" a later transaction diffs against).
    freed_shadows: u128,
    /// The superblock as this transaction leaves it: changed only with
    /// the space lock ([`Self::sb_mut`]).
    sb: Superblock,
    /// The superblock as committed before this transaction.
    base: Superblock,
    /// The space lock, once this transaction touched space
    /// (`space_lock.rs`).
    space: &'a mut (dyn SpaceHold + 'a),
    /// The primary superblock must be written even if unchanged (the
    /// mount used the backup: the primary may be damaged). Known once the
    /// space lock is held.
    rewrite_primary: bool,
    free_count: usize,
    rmap_count: usize,
    /// The device blocks were written outside the shadows (new blocks
    /// zeroed): the commit's first fence must cover them.
    pub(super) wrote_direct: bool,
    /// A free 2 MiB chunk the allocator must not hand out (the volume's
    /// zero chunk, reserved in memory only): it reads as fully used.
    pub(super) hidden_chunk: Option<u64>,
    /// A chunk being emptied by compaction: until the frees at commit it
    /// reads as fully used, so that nothing moves into it.
    pub(in crate::logic::fs) avoided_chunk: Option<u64>,
    /// Blocks with failed memory: free ones read as used, so that they are
    /// never handed out (their bits stay clear on the device).
    pub(super) poisoned: &'a Poisoned,
    /// How this transaction moved chunks between free whole, partly used
    /// and full (as the device's summary counts them).
    pub(super) chunk_moves: ChunkMoves,
    /// The words of the chunks kept for files' regions ([`Reservations`]:
    /// read with the space lock held).
    reservation_words: &'a [core::sync::atomic::AtomicU64],
    /// Chunks this transaction took for regions, to keep once committed.
    pub(super) taken: Taken,
    /// A region this transaction gave blocks that can never be one
    /// aligned run where they are: `(ino, first block of the region)`,
    /// for compaction to place it whole later.
    pub(in crate::logic::fs) misplaced: Option<(u64, u64)>,
    /// The inode chunk this transaction took a slot of: where the next
    /// inode allocation looks first, once committed.
    pub(in crate::logic::fs) inode_chunk: Option<u64>,
    /// The commit's phases so far (`settle_ns`, `log_ns`, `home_ns`), and
    /// whether it wrote the log (`logged`).
    pub(super) times: TxTimes,
    /// The inodes whose records or trees changed: the volume's lookup
    /// caches forget them after the transaction.
    pub(super) touched: Touched,
    /// Host builds keep every original whole, to check that the lines
    /// copied lazily into `originals` are the blocks' and that no change
    /// escaped its marked lines.
    #[cfg(test)]
    whole_originals: alloc::vec::Vec<[u8; BLOCK_SIZE]>,
}

/// Where the time of transactions that committed went, summed since the mount
/// (the media's clock, [`super::Media::now_ns`]): what stage 0 of
/// Documentation/oxdax/concurrency.rst measures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TxTimes {
    /// Transactions that wrote the log (the others changed nothing).
    pub logged: u64,
    /// The operation itself: reading and changing shadows of blocks.
    pub build_ns: u64,
    /// Reverse-map changes, frees and node seals at commit.
    pub settle_ns: u64,
    /// Diffing the shadows into the log and writing it, with its fences
    /// and the wait for its turn (since the commit chain).
    pub log_ns: u64,
    /// Writing the logged changes home and into the block cache, and
    /// (since the commit chain) their fence and the hand-over of the turn.
    pub home_ns: u64,
}

impl TxTimes {
    /// Adds one committed transaction's `build_ns` and `commit`'s phases
    /// (`commit.logged`: whether it wrote the log).
    pub(super) fn add(&mut self, build_ns: u64, commit: &TxTimes) {
        self.logged = self.logged.wrapping_add(commit.logged);
        self.build_ns = self.build_ns.wrapping_add(build_ns);
        self.settle_ns = self.settle_ns.wrapping_add(commit.settle_ns);
        self.log_ns = self.log_ns.wrapping_add(commit.log_ns);
        self.home_ns = self.home_ns.wrapping_add(commit.home_ns);
    }
}

/// What a committed transaction leaves for the volume's memory.
pub(super) struct Effects {
    /// How long its commit's phases took.
    pub(super) times: TxTimes,
    /// How chunks moved between free whole, partly used and full.
    pub(super) chunk_moves: ChunkMoves,
    /// Chunks taken for regions: `(chunk, ino)`.
    pub(super) taken: Taken,
    /// A misplaced region (`Tx::misplaced`).
    pub(super) misplaced: Option<(u64, u64)>,
    /// `Tx::inode_chunk`.
    pub(super) inode_chunk: Option<u64>,
}

/// Changes to [`ChunkCounts`] by a transaction: the counts of the chunks
/// it changed, before and after.
#[derive(Clone, Copy, Default)]
pub(in crate::logic::fs) struct ChunkMoves {
    before: ChunkCounts,
    after: ChunkCounts,
}

impl ChunkMoves {
    /// A chunk's free count went from `before` to `after`.
    pub(super) fn moved(&mut self, before: u32, after: u32) {
        self.before.add(before);
        self.after.add(after);
    }

    /// `counts` after these moves.
    pub(in crate::logic::fs) fn apply(self, counts: &mut ChunkCounts) {
        // A chunk changed twice counts in both; the sum comes out right.
        let apply =
            |count: u64, before: u64, after: u64| count.wrapping_sub(before).wrapping_add(after);
        counts.free = apply(counts.free, self.before.free, self.after.free);
        counts.partial = apply(counts.partial, self.before.partial, self.after.partial);
        counts.full = apply(counts.full, self.before.full, self.after.full);
    }
}

/// Lines changed up to which a node's checksum is updated rather than
/// computed again: each costs about a sixteenth of a whole checksum.
const RESEAL_MAX_LINES: u32 = 16;

/// Host builds check every resealed node against a whole checksum, and
/// that its original, trusted, carried a right one.
#[cfg(test)]
fn check_resealed(node: &[u8; BLOCK_SIZE], original: &[u8; BLOCK_SIZE]) {
    let mut resealed_original = *original;
    btree::seal(&mut resealed_original);
    assert!(
        resealed_original == *original,
        "a trusted node's original has a wrong checksum"
    );
    let mut full = *node;
    btree::seal(&mut full);
    assert!(
        full == *node,
        "a resealed node's checksum differs from a full one"
    );
}

#[cfg(not(test))]
fn check_resealed(_node: &[u8; BLOCK_SIZE], _original: &[u8; BLOCK_SIZE]) {}

/// Bytes in a line of [`Tx::lines`]: the lines [`btree::reseal`] takes.
const LINE_BYTES: usize = BLOCK_SIZE / 64;
const _: () = assert!(LINE_BYTES == btree::RESEAL_LINE_BYTES);
const ALL_LINES: u64 = u64::MAX;

/// The lines of bytes `start..end` of a block (`start < end <= BLOCK_SIZE`).
fn line_mask(start: usize, end: usize) -> u64 {
    let (first, last) = (start / LINE_BYTES, (end - 1) / LINE_BYTES);
    let upto = |line: usize| {
        if line >= 63 {
            ALL_LINES
        } else {
            (2u64 << line) - 1
        }
    };
    upto(last) & !(upto(first) >> 1)
}

impl<M: Media> Nodes for Tx<'_, M> {
    type Error = Error;
    fn read(&self, block: u64, offset: usize, buf: &mut [u8]) -> Result<(), Error> {
        Tx::read(self, block, offset, buf)
    }
    fn look(&self, block: u64, look: &mut dyn FnMut(&[u8; BLOCK_SIZE])) -> Result<bool, Error> {
        Tx::look(self, block, look)
    }
    fn may_hold_node(&self, block: u64) -> bool {
        Tx::may_hold_node(self, block)
    }
    fn checked(&self, block: u64) -> bool {
        Tx::checked(self, block)
    }
    fn set_checked(&self, block: u64) {
        Tx::set_checked(self, block);
    }
    fn seal_pending(&self, block: u64) -> bool {
        Tx::seal_pending(self, block)
    }
}

impl<'a, M: Media> Tx<'a, M> {
    pub(super) fn new(
        media: &'a M,
        sb: Superblock,
        parts: TxParts<'a>,
        scratch: &'a impl Scratch,
        space: &'a mut (dyn SpaceHold + 'a),
    ) -> Self {
        Self {
            media,
            layout: sb.layout,
            shadows: parts.shadows,
            originals: parts.originals,
            tags: parts.tags,
            lines: parts.lines,
            cache: BlockCache::new(scratch.cache()),
            records: InodeCache::new(scratch.lookup_slots()),
            log: parts.log,
            spare: parts.spare,
            deferred: parts.deferred,
            checked: CheckedNodes::new(scratch.checked_nodes()),
            used: 0,
            unknown: 0,
            unsealed: 0,
            trusted: 0,
            freed_shadows: 0,
            sb,
            base: sb,
            space,
            rewrite_primary: false,
            free_count: 0,
            rmap_count: 0,
            wrote_direct: false,
            hidden_chunk: None,
            avoided_chunk: None,
            chunk_moves: ChunkMoves::default(),
            poisoned: &NO_POISON,
            reservation_words: scratch.reservations(),
            taken: Taken::default(),
            misplaced: None,
            inode_chunk: None,
            times: TxTimes::default(),
            touched: Touched::default(),
            #[cfg(test)]
            whole_originals: alloc::vec::Vec::new(),
        }
    }

    fn free_words(&mut self, i: usize) -> Option<&mut [u64]> {
        self.deferred.get_mut(2 * i..2 * i + 2)
    }

    fn rmap_words(&mut self, i: usize) -> Option<&mut [u64]> {
        let at = 2 * MAX_DEFERRED + RmapChange::WORDS * i;
        self.deferred.get_mut(at..at + RmapChange::WORDS)
    }

    pub(super) fn media(&self) -> &'a M {
        self.media
    }

    /// Shadow slots still free: operations that loop commit before this
    /// runs low.
    pub(super) fn room(&self) -> usize {
        self.shadows
            .len()
            .min(self.originals.len())
            .min(self.tags.len())
            .min(self.lines.len())
            .saturating_sub(self.used)
    }

    /// Deferred-work slots still free.
    pub(super) fn deferred_room(&self) -> usize {
        MAX_DEFERRED - self.free_count.max(self.rmap_count)
    }

    fn slot(&self, block: u64) -> Option<usize> {
        self.tags.get(..self.used)?.iter().position(|&b| b == block)
    }

    /// Copies the `buf.len()` bytes at byte `offset` of block `block`, as
    /// this transaction sees it, into `buf`.
    pub(super) fn read(&self, block: u64, offset: usize, buf: &mut [u8]) -> Result<(), Error> {
        match self.slot(block) {
            Some(i) => {
                let bytes = self
                    .shadows
                    .get(i)
                    .and_then(|shadow| shadow.get(offset..offset.checked_add(buf.len())?))
                    .ok_or(Error::Invalid)?;
                buf.copy_from_slice(bytes);
                Ok(())
            }
            None => self.cache.read(self.media, block, offset, buf),
        }
    }

    /// [`Nodes::look`]: `block` as this transaction sees it.
    pub(super) fn look(
        &self,
        block: u64,
        look: &mut dyn FnMut(&[u8; BLOCK_SIZE]),
    ) -> Result<bool, Error> {
        match self.slot(block) {
            Some(i) => {
                let shadow = self.shadows.get(i).ok_or(Error::Invalid)?;
                look(shadow);
                Ok(true)
            }
            None => self.cache.look(self.media, block, look),
        }
    }

    /// Whether `block` lies in the data area, where tree nodes live.
    pub(super) fn may_hold_node(&self, block: u64) -> bool {
        (self.layout.data_start..self.layout.block_count).contains(&block)
    }

    /// Whether `block` is a node checked since mount, as this transaction
    /// sees it: a block it changed (a shadow) is always checked again.
    pub(super) fn checked(&self, block: u64) -> bool {
        self.slot(block).is_none() && self.checked.contains(block)
    }

    /// Records that the home copy of `block` passed the node checks.
    pub(super) fn set_checked(&self, block: u64) {
        if self.slot(block).is_none() {
            self.checked.insert(block);
        }
    }

    /// Node `block` (a shadow) changed: its checksum is written at commit.
    pub(super) fn seal_at_commit(&mut self, block: u64) -> Result<(), Error> {
        let index = self.shadow_index(block, false)?;
        // A reseal reads the original's checksum and changed lines; a node
        // is changed through `write`, which marked them all already.
        self.mark_lines(index, ALL_LINES);
        self.unsealed |= 1 << index;
        Ok(())
    }

    /// Whether node `block` changed in this transaction and is not sealed
    /// yet (its checksum is not checked until then).
    pub(super) fn seal_pending(&self, block: u64) -> bool {
        self.slot(block)
            .is_some_and(|index| self.unsealed & 1 << index != 0)
    }

    /// Forgets the blocks this transaction shadowed from the cache, when it
    /// failed: making a shadow read its block into the cache, a block
    /// being allocated included, which is free and may then be zeroed or
    /// written as file data on the device past the cache.
    pub(super) fn forget_shadowed(&self) {
        for &block in self.tags.iter().take(self.used) {
            self.cache.forget_block(block);
        }
    }

    /// Writes the checksums of the nodes changed ([`Self::seal_at_commit`]):
    /// a node whose original is trusted and that changed in a few lines
    /// has its checksum updated for them, and only those lines are diffed
    /// again for the log; any other is checksummed whole.
    pub(super) fn seal_nodes(&mut self) {
        for index in 0..self.used {
            if self.unsealed & 1 << index == 0 {
                continue;
            }
            let (Some(shadow), Some(original), Some(lines)) = (
                self.shadows.get_mut(index),
                self.originals.get(index),
                self.lines.get_mut(index),
            ) else {
                continue;
            };
            // A node made in this transaction is checksummed whole: no need
            // to look for what changed.
            let changed = if self.trusted & 1 << index != 0 {
                commit::differing_lines(original, shadow, *lines)
            } else {
                ALL_LINES
            };
            if changed.count_ones() <= RESEAL_MAX_LINES {
                btree::reseal(shadow, original, changed);
                check_resealed(shadow, original);
                // The checksum is in line 0.
                *lines = changed | 1;
            } else {
                btree::seal(shadow);
                *lines |= 1;
            }
        }
        self.unsealed = 0;
    }

    /// Block `block`, to change anywhere in this transaction.
    pub(super) fn write(&mut self, block: u64) -> Result<&mut [u8; BLOCK_SIZE], Error> {
        self.shadow(block, false)
    }

    /// Block `block`, to overwrite whole in this transaction: its memory
    /// may have failed (the commit then writes the whole block, not only
    /// what changed).
    pub(super) fn write_whole(&mut self, block: u64) -> Result<&mut [u8; BLOCK_SIZE], Error> {
        self.shadow(block, true)
    }

    /// The `len` bytes at byte `offset` of block `block`, to change in this
    /// transaction: only their lines are diffed at commit.
    pub(super) fn write_at(
        &mut self,
        block: u64,
        offset: usize,
        len: usize,
    ) -> Result<&mut [u8], Error> {
        let end = offset
            .checked_add(len)
            .filter(|&end| end <= BLOCK_SIZE && len > 0)
            .ok_or(Error::Corrupt(block, Damage::Address))?;
        let index = self.shadow_index(block, false)?;
        self.mark_lines(index, line_mask(offset, end));
        self.shadows
            .get_mut(index)
            .and_then(|shadow| shadow.get_mut(offset..end))
            .ok_or(Error::Corrupt(block, Damage::Address))
    }

    fn shadow(&mut self, block: u64, whole: bool) -> Result<&mut [u8; BLOCK_SIZE], Error> {
        let index = self.shadow_index(block, whole)?;
        self.mark_lines(index, ALL_LINES);
        self.shadows
            .get_mut(index)
            .ok_or(Error::Corrupt(block, Damage::Address))
    }

    /// Lines `mask` of shadow `index` may change from now on: the ones
    /// not marked before are still the original's, and are kept as the
    /// original ([`Self::originals`]) before they can change.
    fn mark_lines(&mut self, index: usize, mask: u64) {
        let (Some(lines), Some(shadow), Some(original)) = (
            self.lines.get_mut(index),
            self.shadows.get(index),
            self.originals.get_mut(index),
        ) else {
            return;
        };
        let mut new = mask & !*lines;
        *lines |= mask;
        while new != 0 {
            // One copy per run of consecutive new lines.
            let first = new.trailing_zeros();
            let count = (new >> first).trailing_ones();
            let run = if count == 64 {
                ALL_LINES
            } else {
                ((1u64 << count) - 1) << first
            };
            new &= !run;
            let bytes = first as usize * LINE_BYTES..(first + count) as usize * LINE_BYTES;
            if let (Some(to), Some(from)) = (original.get_mut(bytes.clone()), shadow.get(bytes)) {
                to.copy_from_slice(from);
            }
        }
    }

    /// The index of `block`'s shadow, made now if it has none
    /// ([`Self::shadow`]).
    fn shadow_index(&mut self, block: u64, whole: bool) -> Result<usize, Error> {
        Ok(match self.slot(block) {
            Some(i) => i,
            None => {
                let i = self.used;
                let (Some(shadow), Some(tag), Some(lines), true) = (
                    self.shadows.get_mut(i),
                    self.tags.get_mut(i),
                    self.lines.get_mut(i),
                    i < self.originals.len(),
                ) else {
                    // An operation larger than a transaction can hold:
                    // operations that can grow split themselves first.
                    return Err(Error::NoSpace);
                };
                // The original is copied line by line as lines are marked.
                match self.cache.read(self.media, block, 0, &mut shadow[..]) {
                    Ok(()) => {
                        #[cfg(test)]
                        {
                            self.whole_originals.truncate(i);
                            self.whole_originals.push(*shadow);
                        }
                        if self.checked.contains(block) {
                            self.trusted |= 1 << i;
                        } else {
                            self.trusted &= !(1 << i);
                        }
                    }
                    Err(Error::Corrupt(_, Damage::Unreadable)) if whole => {
                        shadow.fill(0);
                        #[cfg(test)]
                        {
                            self.whole_originals.truncate(i);
                            self.whole_originals.push(*shadow);
                        }
                        self.unknown |= 1 << i;
                        self.trusted &= !(1 << i);
                    }
                    Err(e) => return Err(e),
                }
                *tag = block;
                *lines = 0;
                self.used += 1;
                i
            }
        })
    }

    /// The record of inode `ino`.
    pub(super) fn inode(&self, ino: u64) -> Result<Inode, Error> {
        // An inode whose record and slot this transaction has not changed
        // reads as committed: the cache's record, if it has one (an
        // unlink's batch of frees reads sixteen records).
        let cached = if self.touched.may_have_changed(ino) {
            None
        } else {
            self.records.get(ino)
        };
        #[cfg(test)]
        if let Some(cached) = cached {
            let looked_up = self.inode_uncached(ino);
            assert!(
                looked_up == Ok(cached),
                "inode {ino}: cached {cached:?}, looked up {looked_up:?}"
            );
        }
        match cached {
            Some(inode) => Ok(inode),
            None => self.inode_uncached(ino),
        }
    }

    /// The record of inode `ino`, as this transaction's blocks hold it.
    fn inode_uncached(&self, ino: u64) -> Result<Inode, Error> {
        if !slot_in_use(self, &self.sb, ino)? {
            return Err(Error::NotFound);
        }
        self.inode_record(ino)
    }

    /// The record in inode `ino`'s slot, whether the slot is in use or not
    /// (allocation checks that a free slot is blank).
    pub(super) fn inode_record(&self, ino: u64) -> Result<Inode, Error> {
        inode_location(&self.layout, ino)?;
        read_inode(|block, offset, buf| self.read(block, offset, buf), ino)
    }

    /// Stores the record of inode `ino`.
    pub(super) fn put_inode(&mut self, ino: u64, inode: &Inode) -> Result<(), Error> {
        let location = inode_location(&self.layout, ino)?;
        // A record mount or a lookup would refuse is not written (the
        // caches keep what was written: `Touched`).
        inode.check().map_err(|_| Error::Invalid)?;
        self.touched.wrote(ino, inode);
        // Encoded in place: `write_at` returns exactly the bytes asked for
        // (a `copy_from_slice` here kept a length-mismatch panic that
        // objtool does not know as noreturn in 6.12).
        let record: &mut [u8; INODE_BYTES] = self
            .write_at(location.block, location.offset, INODE_BYTES)?
            .try_into()
            .map_err(|_| Error::Invalid)?;
        inode.encode(ino, record);
        Ok(())
    }

    /// Host tests: another transaction committed `data` at byte `offset`
    /// of block `block`, of which this one holds a shadow, and the cache
    /// let the block go meanwhile (as can happen once several run).
    #[cfg(test)]
    pub(super) fn commit_beside(&self, block: u64, offset: usize, data: &[u8]) {
        assert!(self
            .media
            .write(block * BLOCK_SIZE as u64 + offset as u64, data));
        self.media.fence();
        self.cache.forget_block(block);
    }

    /// Clears the record of inode `ino` (a free slot is all zeros).
    pub(super) fn clear_inode(&mut self, ino: u64) -> Result<(), Error> {
        let location = inode_location(&self.layout, ino)?;
        self.touched.cleared(ino);
        self.write_at(location.block, location.offset, INODE_BYTES)?
            .fill(0);
        Ok(())
    }
}
