// SPDX-License-Identifier: GPL-2.0

//! A mounted filesystem: its life (mount, read-only, shutdown, unmount),
//! the transactions every operation runs in, and the operations, one file
//! per concern:
//!
//! - [`namei`]: names in directories (lookup, create, link, unlink, rename,
//!   readdir);
//! - [`inodes`]: inode records: slots, attributes;
//! - [`extents`]: a file's block map as records (find, insert, split,
//!   convert) and the blocks it takes from the allocator;
//! - [`data`]: a file's data: mapping it for reads, writes and faults,
//!   fallocate, punch, zero, truncate;
//! - [`placement`]: where a file's new blocks go, so that its 2 MiB
//!   regions map as PMDs;
//! - [`reflink`]: sharing blocks between files and their reference counts;
//! - [`rmap`]: the reverse map's answers (who owns a block), memory
//!   failures and fsck's space repair;
//! - [`compact`]: emptying nearly empty chunks, so that free space
//!   stays in whole 2 MiB chunks;
//! - [`orphans`]: inodes with no links left, freed at eviction or mount.

mod compact;
mod data;
mod extents;
mod inodes;
mod lists;
mod namei;
mod orphans;
mod placement;
mod reflink;
mod rmap;

pub use lists::VolumeLists;
pub use namei::{END_POSITION, FIRST_POSITION};
pub use orphans::EVICT_BATCH;

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::{
    cache::{BlockCache, InodeCache, MappingCache},
    checked::CheckedNodes,
    tx::{
        space_error, write_backup, Chain, Commits, Committed, CommittedSpace, HeldSpace, Journal,
        Reservations, ReservationsMut, SpaceState, Tx, TxTimes,
    },
    Damage, Error, Media, MountError, MountReport, Poisoned, Scratch, StatFs, TxContext,
};
use crate::logic::format::{
    btree::Nodes,
    inode::{CHUNK_INODE_BLOCKS, INODES_PER_CHUNK},
    journal::{self, JournalHeader},
    space::{ChunkCounts, Space, SpaceStore},
    superblock::{Superblock, SuperblockError, BACKUP_BLOCK, PRIMARY_BLOCK, STATE_CLEAN},
    BLOCK_SHIFT, BLOCK_SIZE, CHUNK_BLOCKS,
};
use inodes::is_dir;

/// Shadow slots a step of a long operation leaves unused, for the
/// superblocks, free-space blocks and tree splits of its last change.
const STEP_RESERVE: usize = 48;

/// How many steps of a long operation one transaction takes. A step that
/// needs more room than [`STEP_RESERVE`] guessed (several trees splitting
/// at once) fails the whole transaction with `NoSpace` (nothing of it is
/// written): the operation then retries with half as many steps, down to
/// one, and only a single step that cannot fit is a real `NoSpace`.
struct Budget {
    steps: usize,
}

impl Budget {
    fn new() -> Self {
        Self { steps: usize::MAX }
    }

    /// Whether one more step may go into `tx` after `taken`.
    fn allows<M: Media>(&self, taken: usize, tx: &Tx<'_, M>) -> bool {
        taken < self.steps && tx.room() > STEP_RESERVE && tx.deferred_room() > 8
    }

    /// The result of a transaction of `taken` steps: its progress, `None`
    /// to retry it smaller, or the error.
    fn settle<T>(&mut self, result: Result<T, Error>, taken: usize) -> Result<Option<T>, Error> {
        match result {
            Ok(progress) => Ok(Some(progress)),
            Err(Error::NoSpace) if taken > 1 => {
                self.steps = taken / 2;
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}

/// Free blocks below which evicted inodes are freed before every
/// transaction rather than in batches (16 MiB).
const NEARLY_FULL_BLOCKS: u64 = 4096;

/// A mounted filesystem.
pub struct Volume<M: Media, S: Scratch> {
    media: M,
    scratch: S,
    sb: Superblock,
    /// The order transactions commit in (the journal's place is the
    /// scratch's, behind its lock).
    chain: Chain,
    read_only: bool,
    /// Every call fails from now on (an atomic: calls that share the
    /// volume set and read it).
    shut_down: AtomicBool,
    /// Inodes that lost their last link and are not evicted yet: while
    /// there are any, the filesystem is never marked clean, so that the
    /// next mount frees them if this one cannot.
    orphans: AtomicU64,
    /// The zero chunk (`reserve_zero_chunk`), if any.
    zero_chunk: Option<u64>,
    /// Blocks with failed memory (`poison`).
    poisoned: Poisoned,
    /// Where committed transactions' time went.
    times: TxTimes,
    /// What the space state said when it last changed, for what every
    /// call reads after it (`chunk_counts`, `close_has_work`) without
    /// taking the space lock.
    published: PublishedSpace,
}

/// A copy of what the space state counts, made with its lock held.
#[derive(Clone, Copy, Default)]
struct PublishedSpace {
    /// The data area's chunks: free whole, partly used, full.
    chunks: ChunkCounts,
    /// Whether chunks are kept for any file's regions.
    reservations: bool,
}

impl PublishedSpace {
    /// What `state`, held, says (its reservations in `words`).
    fn of(state: &SpaceState, words: &[AtomicU64]) -> Self {
        Self {
            chunks: state.chunks,
            reservations: !Reservations::new(words, state).is_empty(),
        }
    }
}

impl<M: Media, S: Scratch> Volume<M, S> {
    /// Mounts the filesystem on `media`: validates the superblock (primary,
    /// else backup), replays the journal, checks the root and, after an
    /// unclean shutdown, frees orphans. `read_only`: the device must not be
    /// written; a journal with transactions to replay then refuses the
    /// mount.
    pub fn mount(media: M, scratch: S, read_only: bool) -> Result<(Self, MountReport), MountError> {
        let device_blocks = media.size() >> BLOCK_SHIFT;
        let mut context = scratch.context();
        let parts = context.parts();
        let (mut sb, used_backup) = Self::read_superblock(&media, parts.spare)?;
        if sb.layout.block_count > device_blocks {
            return Err(MountError::TooSmall);
        }
        if !read_only && sb.read_only_required() {
            return Err(MountError::ReadOnlyFeatures);
        }
        let layout = sb.layout;
        let header_byte = layout.journal_start << BLOCK_SHIFT;
        let log_start = header_byte + BLOCK_SIZE as u64;
        let log_len = ((layout.journal_blocks - 1) << BLOCK_SHIFT) as usize;
        let (header, torn_header) = media
            .read(header_byte, &mut parts.spare[..])
            .map_err(|_| MountError::Journal)
            .and_then(|()| {
                JournalHeader::recover(&parts.spare[..], log_len).map_err(|_| MountError::Journal)
            })?;
        let read =
            |offset: usize, buf: &mut [u8]| media.read(log_start + offset as u64, buf).is_ok();
        let mut log = journal::Log {
            read: &read,
            len: log_len,
            buffer: parts.log,
        };
        let pending = journal::replay(&mut log, &header, &mut |_, _, _| {});
        if pending.transactions > 0 {
            if read_only {
                return Err(MountError::Journal);
            }
            let mut bad = false;
            journal::replay_last(&mut log, &header, &mut |block, offset, data| {
                let inside = block >= layout.data_start
                    || block < layout.journal_start
                    || block >= layout.journal_start + layout.journal_blocks;
                if block < layout.block_count && inside {
                    bad |= !media.write((block << BLOCK_SHIFT) + offset as u64, data);
                } else {
                    bad = true;
                }
            });
            media.fence();
            if bad {
                return Err(MountError::Journal);
            }
            // The journal's place and the device's size were decided by the
            // superblock before recovery: the one after must agree.
            let recovered = Self::read_superblock(&media, parts.spare)?.0;
            if recovered.layout != sb.layout || recovered.uuid != sb.uuid {
                return Err(MountError::Journal);
            }
            sb = recovered;
        }
        let was_dirty = sb.state & STATE_CLEAN == 0;
        let journal = Journal::new(log_start, log_len, &pending, torn_header, &sb);
        drop(context);
        scratch.journal().with_locked(&mut |place| *place = journal);
        let mut volume = Self {
            media,
            scratch,
            sb,
            chain: Chain::new(pending.next_seq.wrapping_sub(1)),
            read_only,
            shut_down: AtomicBool::new(false),
            orphans: AtomicU64::new(0),
            zero_chunk: None,
            poisoned: Poisoned::NONE,
            times: TxTimes::default(),
            published: PublishedSpace::default(),
        };
        let chunks = volume.count_chunks().map_err(|e| match e {
            Error::Corrupt(block, what) => MountError::Corrupt(block, what),
            _ => MountError::Corrupt(layout.summary_start, Damage::Space),
        })?;
        // Counted at every mount, not only after a crash: a module that
        // did not know lazy counters may have stored stale ones as clean,
        // and so may a mount from an old backup. Where the stored ones
        // are exact, or nothing will be written, a tree that cannot be
        // counted does not stop the mount (its inodes fail on their own).
        if let Err(e) = volume.recount() {
            if volume.sb.counters_may_be_stale() && !read_only {
                return Err(match e {
                    Error::Corrupt(block, what) => MountError::Corrupt(block, what),
                    _ => MountError::Corrupt(layout.summary_start, Damage::Space),
                });
            }
        }
        let state = SpaceState::new(volume.sb, chunks, used_backup);
        *volume.scratch.lock_space() = state;
        volume.published = PublishedSpace::of(&state, volume.scratch.reservations());
        let root = volume.inode(volume.sb.root_ino).map_err(|e| match e {
            Error::Corrupt(block, what) => MountError::Corrupt(block, what),
            _ => MountError::Corrupt(volume.sb.root_ino >> 6, Damage::Inode),
        })?;
        if !is_dir(&root) {
            return Err(MountError::Corrupt(volume.sb.root_ino >> 6, Damage::Inode));
        }
        if !read_only {
            let mark = volume.transact(|tx| {
                tx.sb_mut().state &= !STATE_CLEAN;
                Ok(())
            });
            let orphans = if was_dirty {
                volume.free_orphans()
            } else {
                Ok(())
            };
            if let Err(Error::Corrupt(block, what)) = mark.and(orphans) {
                return Err(MountError::Corrupt(block, what));
            }
        }
        Ok((
            volume,
            MountReport {
                used_backup,
                recovered: pending.transactions > 0,
                torn_journal_header: torn_header,
                was_dirty,
            },
        ))
    }

    /// The primary superblock, else the backup (`true`), read through
    /// `buffer`.
    fn read_superblock(
        media: &M,
        buffer: &mut [u8; BLOCK_SIZE],
    ) -> Result<(Superblock, bool), MountError> {
        let mut decode = |n: u64| match media.read(n << BLOCK_SHIFT, &mut buffer[..]) {
            Ok(()) => Superblock::decode(&buffer[..]),
            Err(_) => Err(SuperblockError::Truncated),
        };
        match decode(PRIMARY_BLOCK) {
            Ok(sb) => Ok((sb, false)),
            Err(primary) => match decode(BACKUP_BLOCK) {
                Ok(sb) => Ok((sb, true)),
                Err(_) => Err(match primary {
                    SuperblockError::UnsupportedVersion(_)
                    | SuperblockError::UnsupportedBlockSize(_)
                    | SuperblockError::UnknownIncompat(_) => MountError::Unsupported,
                    _ => MountError::NoFilesystem,
                }),
            },
        }
    }

    /// Marks the filesystem clean (if writable); every later call fails.
    pub fn unmount(&mut self) {
        self.mark_clean();
        self.shut_down.store(true, Ordering::Release);
    }

    /// Switches between read-write and read-only (remount). Going
    /// read-only marks the filesystem clean, as an unmount would; going
    /// read-write marks it in use.
    pub fn set_read_only(&mut self, read_only: bool) -> Result<(), Error> {
        self.check_live()?;
        if read_only == self.read_only {
            return Ok(());
        }
        if read_only {
            self.mark_clean();
            self.read_only = true;
            return Ok(());
        }
        if self.sb.read_only_required() {
            return Err(Error::ReadOnly);
        }
        self.read_only = false;
        let marked = self.transact(|tx| {
            tx.sb_mut().state &= !STATE_CLEAN;
            Ok(())
        });
        if marked.is_err() {
            self.read_only = true;
        }
        marked
    }

    fn mark_clean(&mut self) {
        if !self.read_only && !self.is_shut_down() {
            // Best effort, as below: orphans left are the next mount's.
            let _ = self.free_evicted();
        }
        if !self.read_only && !self.is_shut_down() && self.orphans.load(Ordering::Acquire) == 0 {
            // Best effort: if this fails the next mount sees a dirty
            // filesystem and checks for orphans, which is still correct.
            let clean = self.transact(|tx| {
                tx.sb_mut().state |= STATE_CLEAN;
                Ok(())
            });
            let mut context = self.scratch.context();
            let spare = context.parts().spare;
            if clean.is_ok() && write_backup(&self.media, &self.sb, spare).is_ok() {
                // Everything is home: the next mount has nothing to replay.
                self.media.fence();
                let media = &self.media;
                self.scratch.journal().with_locked(&mut |journal| {
                    let _ = journal.empty(media, spare);
                });
            }
        }
    }

    /// After an error the caller cannot recover from: everything fails with
    /// `Error::Shutdown` from now on.
    pub fn shut_down(&mut self) {
        self.shut_down.store(true, Ordering::Release);
    }

    /// Whether `shut_down` happened.
    pub fn is_shut_down(&self) -> bool {
        self.shut_down.load(Ordering::Acquire)
    }

    /// The device.
    pub fn media(&self) -> &M {
        &self.media
    }

    /// The superblock as last committed.
    pub fn superblock(&self) -> &Superblock {
        &self.sb
    }

    /// `statfs` numbers. Inodes are allocated from free space, so the
    /// inode total is what a quarter of the filesystem could hold (as
    /// xfs's `imaxpct`), or less when free space is short: the free count
    /// does not fall with every data block written.
    pub fn statfs(&self) -> StatFs {
        let per_block = INODES_PER_CHUNK / CHUNK_INODE_BLOCKS;
        let limit = (self.sb.layout.data_blocks() / 4).saturating_mul(per_block);
        let possible = self
            .sb
            .inode_count
            .saturating_add(self.sb.free_blocks.saturating_mul(per_block));
        let files = possible.min(limit.max(self.sb.inode_count));
        StatFs {
            blocks: self.sb.layout.data_blocks(),
            free_blocks: self
                .sb
                .free_blocks
                .saturating_sub(if self.zero_chunk.is_some() {
                    CHUNK_BLOCKS
                } else {
                    0
                }),
            files,
            free_files: files - self.sb.inode_count,
        }
    }

    /// Where committed transactions' time went since the mount.
    pub fn tx_times(&self) -> TxTimes {
        self.times
    }

    /// How many 2 MiB chunks of the data area are free whole, partly used
    /// and full (the zero chunk counts as full: nothing else gets it).
    /// Kept up to date by every transaction: O(1).
    pub fn chunk_counts(&self) -> ChunkCounts {
        #[cfg(test)]
        assert_eq!(self.published.chunks, self.scratch.lock_space().chunks);
        let mut counts = self.published.chunks;
        if self.zero_chunk.is_some() && counts.free > 0 {
            counts.free -= 1;
            counts.full += 1;
        }
        counts
    }

    /// Counts the chunks from the free-space summary (at mount, after a
    /// repair): O(chunks).
    fn count_chunks(&self) -> Result<ChunkCounts, Error> {
        let reader = self.committed();
        let mut store = CommittedSpace {
            reader: &reader,
            layout: self.sb.layout,
        };
        let layout = self.sb.layout;
        Space::new(&mut store, &layout)
            .chunk_counts()
            .map_err(space_error)
    }

    /// Counts the free blocks and the inodes in use again, from the maps
    /// (at mount: `RO_COMPAT_LAZY_COUNTERS`). They are kept in memory;
    /// the next transaction that writes the superblock stores them.
    fn recount(&mut self) -> Result<(), Error> {
        let reader = self.committed();
        let layout = self.sb.layout;
        let mut store = CommittedSpace {
            reader: &reader,
            layout,
        };
        let free_blocks = Space::new(&mut store, &layout)
            .free_blocks()
            .map_err(space_error)?;
        let inode_count = inodes::inodes_in_use(&reader, &self.sb)?;
        self.sb.free_blocks = free_blocks;
        self.sb.inode_count = inode_count;
        Ok(())
    }

    /// Sets aside a free, 2 MiB-aligned chunk of zeros for this mount:
    /// the fault engine maps it read-only for 2 MiB reads of holes (the
    /// kernel's huge zero page is not available to modules). Nothing is
    /// written to the maps or the journal: the chunk stays free on the
    /// media (a crash or the next mount forgets it) and the allocator
    /// skips it while mounted. Returns its first block; `None` when
    /// read-only or no chunk is free.
    pub fn reserve_zero_chunk(&mut self) -> Option<u64> {
        if let Some(chunk) = self.zero_chunk {
            // Kept hidden but never mapped again if its memory failed.
            let start = chunk * CHUNK_BLOCKS;
            return self
                .poisoned
                .first_in(start, CHUNK_BLOCKS)
                .is_none()
                .then_some(start);
        }
        if self.read_only || self.check_live().is_err() {
            return None;
        }
        let layout = self.sb.layout;
        let first = layout.data_start.div_ceil(CHUNK_BLOCKS);
        let end = layout.block_count / CHUNK_BLOCKS;
        // From the end of the device: where allocations come last.
        let mut context = self.scratch.context();
        let mut space = HeldSpace::new(&self.scratch);
        let tx = Tx::new(
            &self.media,
            self.sb,
            context.parts(),
            &self.scratch,
            &mut space,
        );
        // Not a chunk with failed memory, free or not: it is never
        // written, nor is a zero chunk that failed reused (`poison`).
        let chunk = (first..end).rev().find(|&chunk| {
            tx.chunk_free(chunk) == Ok(CHUNK_BLOCKS as u32)
                && self
                    .poisoned
                    .first_in(chunk * CHUNK_BLOCKS, CHUNK_BLOCKS)
                    .is_none()
        })?;
        let start = chunk * CHUNK_BLOCKS;
        if !self
            .media
            .zero(start << BLOCK_SHIFT, CHUNK_BLOCKS << BLOCK_SHIFT)
        {
            return None;
        }
        self.media.fence();
        self.zero_chunk = Some(chunk);
        Some(start)
    }

    /// Where the next transaction goes in the log (tests watch it wrap).
    #[cfg(test)]
    pub(in crate::logic::fs) fn journal_offset(&self) -> usize {
        let mut offset = 0;
        self.scratch
            .journal()
            .with_locked(&mut |journal| offset = journal.next_offset());
        offset
    }

    /// The sequence number the next transaction gets (tests check that
    /// no committed one in the log has it or a later one).
    #[cfg(test)]
    pub(in crate::logic::fs) fn journal_seq(&self) -> u64 {
        let mut seq = 0;
        self.scratch
            .journal()
            .with_locked(&mut |journal| seq = journal.next_seq());
        seq
    }

    /// Host tests: stores inode `ino`'s record `inode` in a transaction
    /// while another commits `beside`'s record (`tx.commit_beside`).
    #[cfg(test)]
    pub(in crate::logic::fs) fn put_inode_beside(
        &mut self,
        ino: u64,
        inode: &crate::logic::format::inode::Inode,
        beside: (u64, &crate::logic::format::inode::Inode),
    ) -> Result<(), Error> {
        let (other, record) = beside;
        let location = super::tx::inode_location(&self.sb.layout, other)?;
        let mut bytes = [0u8; crate::logic::format::inode::INODE_BYTES];
        record.encode(other, &mut bytes);
        self.transact(|tx| {
            tx.put_inode(ino, inode)?;
            tx.commit_beside(location.block, location.offset, &bytes);
            Ok(())
        })
    }

    /// The working memory (host tests look at its locks).
    #[cfg(test)]
    pub(in crate::logic::fs) fn scratch(&self) -> &S {
        &self.scratch
    }

    /// The root directory.
    pub fn root(&self) -> u64 {
        self.sb.root_ino
    }

    fn check_live(&self) -> Result<(), Error> {
        if self.is_shut_down() {
            Err(Error::Shutdown)
        } else {
            Ok(())
        }
    }

    /// Runs `op` as one transaction and commits it. A damaged structure
    /// found on the way shuts nothing down by itself: it fails this
    /// operation only (the damaged object gives `EIO`). A failed commit
    /// does shut the volume down: the device and memory may disagree.
    ///
    /// On a nearly full device the evicted inodes that wait (`orphans.rs`)
    /// are freed first: their inode slots and tree nodes may be what the
    /// operation needs.
    fn transact<T>(
        &mut self,
        op: impl FnOnce(&mut Tx<'_, M>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        if self.evicted_waiting() && self.sb.free_blocks < NEARLY_FULL_BLOCKS {
            self.free_evicted()?;
        }
        self.transact_once(op)
    }

    fn transact_once<T>(
        &mut self,
        op: impl FnOnce(&mut Tx<'_, M>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        self.check_live()?;
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        self.media.relax();
        let mut context = self.scratch.context();
        let mut space = HeldSpace::new(&self.scratch);
        let mut tx = Tx::new(
            &self.media,
            self.sb,
            context.parts(),
            &self.scratch,
            &mut space,
        );
        tx.hidden_chunk = self.zero_chunk;
        tx.poisoned = &self.poisoned;
        let start = self.media.now_ns();
        let result = op(&mut tx);
        // Whatever happens to the transaction, what the lookup caches
        // say about the inodes it touched is not trusted after it.
        let touched = core::mem::take(&mut tx.touched);
        let value = match result {
            Ok(value) => value,
            Err(e) => {
                // The blocks it shadowed leave the block cache, and with
                // them every record and run the lookup caches hold (the
                // copy in the cache may have been the one readable copy of
                // failed memory, and a hit must be what a lookup finds).
                // Failed transactions are rare: a full filesystem, a
                // refused rmdir or create.
                tx.forget_shadowed();
                self.inodes().clear();
                return Err(e);
            }
        };
        let built = self.media.now_ns().saturating_sub(start);
        let committed = tx.commit(self.commits());
        // Published with the space lock held, if the transaction took it
        // (nothing of space changed otherwise); then released.
        let words = self.scratch.reservations();
        let published = match (&committed, space.taken()) {
            (Ok((sb, effects)), Some(state)) => {
                state.set_sb(*sb);
                state.rewrite_primary = false;
                effects.chunk_moves.apply(&mut state.chunks);
                if let Some(chunk) = effects.inode_chunk {
                    state.chunk_hint = chunk;
                }
                let mut reservations = ReservationsMut::new(words, state);
                for (chunk, ino) in effects.taken.iter() {
                    reservations.add(chunk, ino);
                }
                Some(PublishedSpace::of(state, words))
            }
            _ => None,
        };
        drop(space);
        if let Some(published) = published {
            self.published = published;
        }
        // Its home writes are done: the buffers are free for the next.
        drop(context);
        self.inodes().forget(&touched);
        match committed {
            Ok((sb, effects)) => {
                self.inodes().put_written(&touched);
                self.times.add(built, &effects.times);
                self.sb = sb;
                if let Some((ino, region)) = effects.misplaced {
                    self.with_lists(|lists| lists.misplaced.add(ino, region));
                }
                Ok(value)
            }
            Err(e) => {
                // As above: the commit forgot the blocks it shadowed.
                self.inodes().clear();
                // A failed chain commits nothing more (and what it
                // committed last may not be in memory).
                if matches!(e, Error::Corrupt(..)) || self.chain.failed() {
                    self.shut_down.store(true, Ordering::Release);
                }
                Err(e)
            }
        }
    }

    /// The log and its commit order.
    fn commits(&self) -> Commits<'_> {
        Commits {
            journal: self.scratch.journal(),
            chain: &self.chain,
            waits: self.scratch.commit_waits(),
            #[cfg(test)]
            fence_home: true,
        }
    }

    /// Ends the reservations of inode `ino` (its file was closed or
    /// evicted).
    fn end_reservations(&mut self, ino: u64) {
        let mut state = self.scratch.lock_space();
        let words = self.scratch.reservations();
        ReservationsMut::new(words, &mut state).release(ino);
        self.published = PublishedSpace::of(&state, words);
    }

    /// Whether chunks are kept for any file's regions.
    fn any_reservations(&self) -> bool {
        #[cfg(test)]
        assert_eq!(
            self.published.reservations,
            PublishedSpace::of(&self.scratch.lock_space(), self.scratch.reservations())
                .reservations
        );
        self.published.reservations
    }

    /// Committed inode records (`inode`), forgotten by the transactions
    /// that touch them.
    fn inodes(&self) -> InodeCache<'_> {
        InodeCache::new(self.scratch.lookup_slots())
    }

    /// Committed mappings (`map_read`), forgotten with the records.
    fn mappings(&self) -> MappingCache<'_> {
        MappingCache::new(self.scratch.lookup_slots())
    }

    /// A reader of the committed state, through the cache, that trusts the
    /// nodes checked since mount.
    fn committed(&self) -> Committed<'_, M> {
        Committed::new(
            &self.media,
            BlockCache::new(self.scratch.cache()),
            CheckedNodes::new(self.scratch.checked_nodes()),
        )
        .in_area(&self.sb.layout)
    }
}

/// A transaction as a node reader for directory and extent lookups.
struct TxNodes<'t, 'a, M: Media>(&'t Tx<'a, M>);

impl<M: Media> Nodes for TxNodes<'_, '_, M> {
    type Error = Error;
    fn read(&self, block: u64, offset: usize, buf: &mut [u8]) -> Result<(), Error> {
        self.0.read(block, offset, buf)
    }
    fn look(&self, block: u64, look: &mut dyn FnMut(&[u8; BLOCK_SIZE])) -> Result<bool, Error> {
        self.0.look(block, look)
    }
    fn may_hold_node(&self, block: u64) -> bool {
        self.0.may_hold_node(block)
    }
    fn checked(&self, block: u64) -> bool {
        self.0.checked(block)
    }
    fn set_checked(&self, block: u64) {
        self.0.set_checked(block);
    }
    fn seal_pending(&self, block: u64) -> bool {
        self.0.seal_pending(block)
    }
}
