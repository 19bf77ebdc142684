// SPDX-License-Identifier: GPL-2.0

//! Journal transactions: every metadata change of an operation is made to
//! shadow copies of the blocks it touches, then committed at once.
//!
//! Commit: the shadows are compared with their home blocks 8 bytes at a
//! time and only the changed runs are logged (a typical operation logs a
//! few hundred bytes, not whole blocks); the log body is written and
//! fenced, then the commit record, fenced again: from then on recovery
//! applies the whole transaction. The changed runs are then written home.
//! Home writes are not fenced on their own: the next transaction's first
//! fence covers them, and until the log wraps recovery would redo them
//! anyway. Before the log wraps to its start, the journal header's tail is
//! moved past everything written home (and fenced first).
//!
//! Blocks a transaction frees are given back only at its commit, after its
//! allocations: a block still mapped in the committed state is never
//! handed out (and zeroed on the device) by the transaction that unmaps it,
//! which a crash before the commit would expose.

use super::{
    cache::BlockCache, checked::CheckedNodes, Damage, Error, Media, Parts, Poisoned, MAX_DEFERRED,
};

static NO_POISON: Poisoned = Poisoned::NONE;
use crate::logic::format::{
    btree::{Blocks, Nodes, Tree, TreeError, TreeKind, Visitor},
    get_u64,
    inode::{self, Inode, INODE_BYTES},
    journal::{JournalHeader, TxWriter, ALIGN},
    kinds::{block_key, InodeChunks, ReverseMap, RmapKey, OWNER_INODE_CHUNKS, RMAP_METADATA},
    layout::Layout,
    space::{Extent, Space, SpaceError, SpaceStore},
    superblock::{Superblock, BACKUP_BLOCK, PRIMARY_BLOCK},
    BLOCK_SHIFT, BLOCK_SIZE, CHUNK_BLOCKS,
};

/// Where the next transaction goes.
#[derive(Clone, Copy, Debug)]
pub(super) struct JournalState {
    /// Device byte where the log starts (after the header block).
    pub(super) log_start: u64,
    /// Bytes of log.
    pub(super) log_len: usize,
    /// Sequence number of the next transaction.
    pub(super) next_seq: u64,
    /// Log offset of the next transaction.
    pub(super) next_offset: usize,
}

/// A change to the reverse map waiting for the reverse map's own tree to
/// be free (tree node allocations happen in the middle of other trees'
/// operations).
#[derive(Clone, Copy, Debug)]
enum RmapChange {
    Add(RmapKey, u64, u64),
    /// The record of this key, which must say this many blocks.
    Remove(RmapKey, u64),
}

impl RmapChange {
    const WORDS: usize = 6;

    fn encode(self) -> [u64; Self::WORDS] {
        match self {
            Self::Add(k, len, flags) => [0, k.start, k.owner, k.offset, len, flags],
            Self::Remove(k, len) => [1, k.start, k.owner, k.offset, len, 0],
        }
    }

    fn decode(words: &[u64]) -> Option<Self> {
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

/// Converts a tree error.
pub(super) fn tree_error(error: TreeError<Error>) -> Error {
    match error {
        TreeError::Store(e) => e,
        TreeError::Corrupt { block, what } => Error::Corrupt(block, Damage::Node(what)),
        TreeError::BadArgument => Error::Invalid,
    }
}

fn space_error(error: SpaceError<Error>) -> Error {
    match error {
        SpaceError::Store(e) => e,
        SpaceError::NoSpace => Error::NoSpace,
        SpaceError::OutOfRange | SpaceError::Inconsistent { .. } => {
            Error::Corrupt(0, Damage::Space)
        }
    }
}

/// Reads blocks of the committed state.
pub(super) struct Committed<'a, M: Media> {
    media: &'a M,
    cache: BlockCache<'a>,
    checked: CheckedNodes<'a>,
    /// Blocks that may hold tree nodes (the data area, once known).
    nodes: core::ops::Range<u64>,
}

impl<'a, M: Media> Committed<'a, M> {
    /// A reader through `cache` that trusts the nodes in `checked`.
    pub(super) fn new(media: &'a M, cache: BlockCache<'a>, checked: CheckedNodes<'a>) -> Self {
        Self {
            media,
            cache,
            checked,
            nodes: 0..u64::MAX,
        }
    }

    /// The same reader, following tree pointers only into `layout`'s data
    /// area.
    pub(super) fn in_area(self, layout: &Layout) -> Self {
        Self {
            nodes: layout.data_start..layout.block_count,
            ..self
        }
    }

    /// A reader that copies every node from the media and checks it in
    /// full (fsck, mount, tests).
    pub(super) fn checking_all(media: &'a M) -> Self {
        Self::new(media, BlockCache::none(), CheckedNodes::none())
    }

    /// Inode `ino`'s record.
    pub(super) fn inode(&self, ino: u64) -> Result<Inode, Error> {
        read_inode(
            |block, offset, buf| self.cache.read(self.media, block, offset, buf),
            ino,
        )
    }
}

impl<M: Media> Nodes for Committed<'_, M> {
    type Error = Error;
    fn read(&self, block: u64, offset: usize, buf: &mut [u8]) -> Result<(), Error> {
        self.cache.read(self.media, block, offset, buf)
    }
    fn may_hold_node(&self, block: u64) -> bool {
        self.nodes.contains(&block)
    }
    fn checked(&self, block: u64) -> bool {
        self.checked.contains(block)
    }
    fn set_checked(&self, block: u64) {
        self.checked.insert(block);
    }
}

/// One transaction in progress.
pub(super) struct Tx<'a, M: Media> {
    media: &'a M,
    layout: Layout,
    shadows: &'a mut [[u8; BLOCK_SIZE]],
    /// The shadowed blocks as they were (and still are on the media).
    originals: &'a mut [[u8; BLOCK_SIZE]],
    tags: &'a mut [u64],
    /// Committed blocks (the ones not shadowed) are read through it.
    cache: BlockCache<'a>,
    log: &'a mut [u8],
    spare: &'a mut [u8; BLOCK_SIZE],
    /// Frees (two words each) then reverse-map changes (six each).
    deferred: &'a mut [u64],
    /// Nodes checked since mount (home blocks only: shadows are checked).
    checked: CheckedNodes<'a>,
    used: usize,
    /// Shadows (by index) whose block could not be read: written whole.
    unknown: u128,
    /// The superblock as this transaction leaves it.
    pub(super) sb: Superblock,
    /// The superblock as committed before this transaction.
    base: Superblock,
    free_count: usize,
    rmap_count: usize,
    /// The device blocks were written outside the shadows (new blocks
    /// zeroed): the commit's first fence must cover them.
    pub(super) wrote_direct: bool,
    /// A free 2 MiB chunk the allocator must not hand out (the volume's
    /// zero chunk, reserved in memory only): it reads as fully used.
    pub(super) hidden_chunk: Option<u64>,
    /// Blocks with failed memory: free ones read as used, so that they are
    /// never handed out (their bits stay clear on the device).
    pub(super) poisoned: &'a Poisoned,
}

impl<'a, M: Media> Tx<'a, M> {
    pub(super) fn new(media: &'a M, sb: Superblock, parts: Parts<'a>) -> Self {
        Self {
            media,
            layout: sb.layout,
            shadows: parts.shadows,
            originals: parts.originals,
            tags: parts.tags,
            cache: BlockCache::new(parts.cache),
            log: parts.log,
            spare: parts.spare,
            deferred: parts.deferred,
            checked: CheckedNodes::new(parts.checked),
            used: 0,
            unknown: 0,
            sb,
            base: sb,
            free_count: 0,
            rmap_count: 0,
            wrote_direct: false,
            hidden_chunk: None,
            poisoned: &NO_POISON,
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

    /// Block `block`, to change in this transaction.
    pub(super) fn write(&mut self, block: u64) -> Result<&mut [u8; BLOCK_SIZE], Error> {
        self.shadow(block, false)
    }

    /// Block `block`, to overwrite whole in this transaction: its memory
    /// may have failed (the commit then writes the whole block, not only
    /// what changed).
    pub(super) fn write_whole(&mut self, block: u64) -> Result<&mut [u8; BLOCK_SIZE], Error> {
        self.shadow(block, true)
    }

    fn shadow(&mut self, block: u64, whole: bool) -> Result<&mut [u8; BLOCK_SIZE], Error> {
        let index = match self.slot(block) {
            Some(i) => i,
            None => {
                let i = self.used;
                let (Some(shadow), Some(original), Some(tag)) = (
                    self.shadows.get_mut(i),
                    self.originals.get_mut(i),
                    self.tags.get_mut(i),
                ) else {
                    // An operation larger than a transaction can hold:
                    // operations that can grow split themselves first.
                    return Err(Error::NoSpace);
                };
                match self.cache.read(self.media, block, 0, &mut original[..]) {
                    Ok(()) => shadow.copy_from_slice(&original[..]),
                    Err(Error::Corrupt(_, Damage::Unreadable)) if whole => {
                        shadow.fill(0);
                        self.unknown |= 1 << i;
                    }
                    Err(e) => return Err(e),
                }
                *tag = block;
                self.used += 1;
                i
            }
        };
        self.shadows
            .get_mut(index)
            .ok_or(Error::Corrupt(block, Damage::Address))
    }

    /// The record of inode `ino`.
    pub(super) fn inode(&self, ino: u64) -> Result<Inode, Error> {
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
        let mut record = [0u8; INODE_BYTES];
        inode.encode(ino, &mut record);
        let block = self.write(location.block)?;
        block
            .get_mut(location.offset..location.offset + INODE_BYTES)
            .ok_or(Error::Corrupt(location.block, Damage::Address))?
            .copy_from_slice(&record);
        Ok(())
    }

    /// Clears the record of inode `ino` (a free slot is all zeros).
    pub(super) fn clear_inode(&mut self, ino: u64) -> Result<(), Error> {
        let location = inode_location(&self.layout, ino)?;
        let block = self.write(location.block)?;
        block
            .get_mut(location.offset..location.offset + INODE_BYTES)
            .ok_or(Error::Corrupt(location.block, Damage::Address))?
            .fill(0);
        Ok(())
    }

    /// Allocates up to `want` blocks near `goal`; the caller records their
    /// owner in the reverse map.
    pub(super) fn allocate_data(&mut self, want: u64, goal: u64) -> Result<Extent, Error> {
        self.allocate(want, goal, false)
    }

    /// Allocates exactly `len` contiguous blocks (at most a chunk) near
    /// `goal`; the caller records their owner in the reverse map.
    pub(super) fn allocate_contiguous(&mut self, len: u64, goal: u64) -> Result<Extent, Error> {
        self.allocate(len, goal, true)
    }

    fn allocate(&mut self, want: u64, goal: u64, contiguous: bool) -> Result<Extent, Error> {
        if self.deferred_room() < 4 {
            return Err(Error::NoSpace);
        }
        let layout = self.layout;
        let mut space = Space::new(self, &layout);
        let extent = if contiguous {
            space.allocate_contiguous(want, goal)
        } else {
            space.allocate(want, goal)
        }
        .map_err(space_error)?;
        self.sb.free_blocks = self.sb.free_blocks.saturating_sub(extent.len);
        Ok(extent)
    }

    /// Frees `extent` at commit; the caller removes its reverse-map record
    /// (`rmap_remove`).
    pub(super) fn free(&mut self, extent: Extent) -> Result<(), Error> {
        if self.free_count >= MAX_DEFERRED {
            return Err(Error::NoSpace);
        }
        let slot = self.free_words(self.free_count).ok_or(Error::NoSpace)?;
        slot.copy_from_slice(&[extent.start, extent.len]);
        self.free_count += 1;
        Ok(())
    }

    /// Adds the reverse-map record `key` → (`len`, `flags`).
    pub(super) fn rmap_add(&mut self, key: RmapKey, len: u64, flags: u64) -> Result<(), Error> {
        self.queue_rmap(RmapChange::Add(key, len, flags))
    }

    /// Removes the reverse-map record `key`, which must be of `len`
    /// blocks.
    pub(super) fn rmap_remove(&mut self, key: RmapKey, len: u64) -> Result<(), Error> {
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
    fn settle_rmap(&mut self) -> Result<(), Error> {
        let mut tree = Tree::<ReverseMap>::open(self.sb.rmap_root, super::OWNER_REVERSE_MAP);
        let mut next = 0;
        while next < self.rmap_count {
            let change = self
                .rmap_words(next)
                .and_then(|w| RmapChange::decode(w))
                .ok_or(Error::NoSpace)?;
            next += 1;
            let mut store = TreeStore::new(self, super::OWNER_REVERSE_MAP);
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

    /// Gives the deferred frees back to the free-space maps.
    fn apply_frees(&mut self) -> Result<(), Error> {
        let layout = self.layout;
        let count = self.free_count;
        self.free_count = 0;
        for i in 0..count {
            let extent = match self.free_words(i) {
                Some(&mut [start, len]) => Extent { start, len },
                _ => return Err(Error::NoSpace),
            };
            Space::new(self, &layout)
                .free(extent)
                .map_err(space_error)?;
            self.checked.forget(extent.start, extent.len);
            self.cache.forget(extent.start, extent.len);
            self.sb.free_blocks = self.sb.free_blocks.saturating_add(extent.len);
        }
        Ok(())
    }

    /// Makes the transaction durable and applies it. On error nothing of
    /// it is applied (the caller's in-memory state is not updated either).
    pub(super) fn commit(mut self, journal: &mut JournalState) -> Result<Superblock, Error> {
        // Frees and reverse-map changes feed each other (a freed rmap node
        // is a deferred free); each pass shrinks what is left.
        while self.rmap_count > 0 || self.free_count > 0 {
            self.settle_rmap()?;
            self.apply_frees()?;
        }
        // Only the primary is journaled. The backup is rewritten whole
        // when the log wraps (below) and at unmount, never while the
        // primary's home write could be torn: a crash leaves at least one
        // of them valid, and both have the same layout, which is all that
        // mount needs before replaying the journal.
        let sb = self.sb;
        sb.encode(self.write_whole(PRIMARY_BLOCK)?);

        let media = self.media;
        let mut writer =
            TxWriter::begin(self.log, 0, journal.next_seq).map_err(|_| Error::NoSpace)?;
        let mut changes = 0usize;
        for i in 0..self.used {
            let (Some(&block), Some(shadow), Some(home)) =
                (self.tags.get(i), self.shadows.get(i), self.originals.get(i))
            else {
                break;
            };
            for run in runs(self.unknown, i, home, shadow) {
                let data = shadow.get(run.clone()).ok_or(Error::Invalid)?;
                writer
                    .record(block, run.start, data)
                    .map_err(|_| Error::NoSpace)?;
                changes += 1;
            }
        }
        if changes == 0 && !self.wrote_direct {
            return Ok(sb);
        }
        let body = writer.seal_body();
        let (commit, end) = writer.commit();
        if journal.next_offset + end > journal.log_len {
            // Wrap: everything before is home (the fence below makes it
            // durable), so recovery may start at the log's beginning. The
            // backup superblock catches up with that state first.
            write_backup(media, &self.base, self.spare)?;
            media.fence();
            JournalHeader {
                tail_seq: journal.next_seq,
                tail_offset: 0,
            }
            .encode(self.spare);
            let header_byte = journal.log_start - BLOCK_SIZE as u64;
            if !media.write(header_byte, &self.spare[..]) {
                return Err(Error::Corrupt(header_byte >> 12, Damage::Address));
            }
            journal.next_offset = 0;
        }
        let at = journal.log_start + journal.next_offset as u64;
        let log = &*self.log;
        let (Some(body_bytes), Some(commit_bytes)) =
            (log.get(body.clone()), log.get(commit.clone()))
        else {
            return Err(Error::Invalid);
        };
        if !media.write(at + body.start as u64, body_bytes) {
            return Err(Error::Corrupt(at >> 12, Damage::Address));
        }
        media.fence();
        if !media.write(at + commit.start as u64, commit_bytes) {
            return Err(Error::Corrupt(at >> 12, Damage::Address));
        }
        media.fence();
        journal.next_seq = journal.next_seq.wrapping_add(1);
        journal.next_offset += end;

        for i in 0..self.used {
            let (Some(&block), Some(shadow), Some(home)) =
                (self.tags.get(i), self.shadows.get(i), self.originals.get(i))
            else {
                break;
            };
            for run in runs(self.unknown, i, home, shadow) {
                let data = shadow.get(run.clone()).ok_or(Error::Invalid)?;
                media.write(block * BLOCK_SIZE as u64 + run.start as u64, data);
            }
            // What the media holds now (or the journal, if a home write
            // failed: recovery writes it).
            self.cache.put(block, shadow);
        }
        Ok(sb)
    }
}

/// What shadow `i` changed in its block: the runs that differ from `home`,
/// or the whole block if its memory could not be read (bit `i` of
/// `unknown`).
fn runs(
    unknown: u128,
    i: usize,
    home: &[u8; BLOCK_SIZE],
    shadow: &[u8; BLOCK_SIZE],
) -> ChangedRuns {
    if unknown & 1 << i != 0 {
        ChangedRuns::whole()
    } else {
        changed_runs(home, shadow)
    }
}

/// Writes `sb` whole into the backup superblock (durable at the next
/// fence).
pub(super) fn write_backup<M: Media>(
    media: &M,
    sb: &Superblock,
    spare: &mut [u8; BLOCK_SIZE],
) -> Result<(), Error> {
    sb.encode(spare);
    if media.write(BACKUP_BLOCK << BLOCK_SHIFT, &spare[..]) {
        Ok(())
    } else {
        Err(Error::Corrupt(BACKUP_BLOCK, Damage::Address))
    }
}

/// Runs of 8-byte words where `new` differs from `old`; runs closer than a
/// record header are merged (logging the gap is cheaper than a record).
fn changed_runs(old: &[u8; BLOCK_SIZE], new: &[u8; BLOCK_SIZE]) -> ChangedRuns {
    let mut runs = ChangedRuns {
        runs: [(0, 0); MAX_RUNS],
        count: 0,
        next: 0,
    };
    let mut word = 0;
    let words = BLOCK_SIZE / ALIGN;
    while word < words {
        let differs =
            |w: usize| old.get(w * ALIGN..(w + 1) * ALIGN) != new.get(w * ALIGN..(w + 1) * ALIGN);
        if !differs(word) {
            word += 1;
            continue;
        }
        let start = word;
        let mut end = word + 1;
        let mut probe = end;
        while probe < words && probe - end <= MERGE_GAP_WORDS {
            if differs(probe) {
                end = probe + 1;
            }
            probe += 1;
        }
        if runs.count == MAX_RUNS {
            // Too fragmented to list: log the rest of the block whole.
            if let Some(last) = runs.runs.last_mut() {
                last.1 = words;
            }
            break;
        }
        if let Some(slot) = runs.runs.get_mut(runs.count) {
            *slot = (start, end);
        }
        runs.count += 1;
        word = end;
    }
    runs
}

const MAX_RUNS: usize = 64;
const MERGE_GAP_WORDS: usize = 2;

/// Byte ranges of changed runs.
struct ChangedRuns {
    runs: [(usize, usize); MAX_RUNS],
    count: usize,
    next: usize,
}

impl ChangedRuns {
    /// The whole block as one run.
    fn whole() -> Self {
        let mut runs = [(0, 0); MAX_RUNS];
        runs[0] = (0, BLOCK_SIZE / ALIGN);
        Self {
            runs,
            count: 1,
            next: 0,
        }
    }
}

impl Iterator for ChangedRuns {
    type Item = core::ops::Range<usize>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.count {
            return None;
        }
        let (start, end) = *self.runs.get(self.next)?;
        self.next += 1;
        Some(start * ALIGN..end * ALIGN)
    }
}

impl<M: Media> Tx<'_, M> {
    /// Bitmap word `index` as the device has it.
    fn media_word(&self, index: u64) -> Result<u64, Error> {
        let (block, offset) = bitmap_word(&self.layout, index)?;
        let mut word = [0u8; 8];
        self.read(block, offset, &mut word)?;
        Ok(u64::from_le_bytes(word))
    }

    /// Poisoned blocks of chunk `chunk` that are free on the device (the
    /// allocator sees them as used).
    fn poisoned_free(&self, chunk: u64) -> Result<u32, Error> {
        if self.poisoned.is_empty() {
            return Ok(0);
        }
        let words = CHUNK_BLOCKS / 64;
        let mut count = 0;
        for index in chunk * words..(chunk + 1) * words {
            let mask = self.poisoned.word_mask(index);
            if mask != 0 {
                count += (mask & !self.media_word(index)?).count_ones();
            }
        }
        Ok(count)
    }
}

impl<M: Media> SpaceStore for Tx<'_, M> {
    type Error = Error;
    fn word(&self, index: u64) -> Result<u64, Error> {
        // A chunk's bitmap words are its own (512 blocks = 8 words), so a
        // hidden chunk's words are never written back with these bits.
        if self.hidden_chunk == Some(index * 64 / CHUNK_BLOCKS) {
            return Ok(u64::MAX);
        }
        Ok(self.media_word(index)? | self.poisoned.word_mask(index))
    }
    fn set_word(&mut self, index: u64, value: u64) -> Result<(), Error> {
        // Poisoned blocks free on the device stay free there: only the
        // allocator's view has them used.
        let poisoned = self.poisoned.word_mask(index);
        let keep_free = if poisoned == 0 {
            0
        } else {
            poisoned & !self.media_word(index)?
        };
        let (block, offset) = bitmap_word(&self.layout, index)?;
        put(
            self.write(block)?,
            offset,
            &(value & !keep_free).to_le_bytes(),
        )
    }
    fn chunk_free(&self, chunk: u64) -> Result<u32, Error> {
        if self.hidden_chunk == Some(chunk) {
            return Ok(0);
        }
        let (block, offset) = summary_entry(&self.layout, chunk)?;
        let mut free = [0u8; 4];
        self.read(block, offset, &mut free)?;
        Ok(u32::from_le_bytes(free).saturating_sub(self.poisoned_free(chunk)?))
    }
    fn set_chunk_free(&mut self, chunk: u64, free: u32) -> Result<(), Error> {
        // The count the device keeps includes the hidden poisoned blocks
        // (`set_word` already left their bits as the device has them).
        let free = free.saturating_add(self.poisoned_free(chunk)?);
        let (block, offset) = summary_entry(&self.layout, chunk)?;
        put(self.write(block)?, offset, &free.to_le_bytes())
    }
}

fn put(bytes: &mut [u8], offset: usize, value: &[u8]) -> Result<(), Error> {
    bytes
        .get_mut(offset..offset + value.len())
        .ok_or(Error::Invalid)?
        .copy_from_slice(value);
    Ok(())
}

fn bitmap_word(layout: &Layout, index: u64) -> Result<(u64, usize), Error> {
    let per_block = (BLOCK_SIZE / 8) as u64;
    if index / per_block >= layout.bitmap_blocks {
        return Err(Error::Corrupt(index / per_block, Damage::Space));
    }
    Ok((
        layout.bitmap_start + index / per_block,
        (index % per_block) as usize * 8,
    ))
}

fn summary_entry(layout: &Layout, chunk: u64) -> Result<(u64, usize), Error> {
    let per_block = (BLOCK_SIZE / 4) as u64;
    if chunk / per_block >= layout.summary_blocks {
        return Err(Error::Corrupt(chunk / per_block, Damage::Space));
    }
    Ok((
        layout.summary_start + chunk / per_block,
        (chunk % per_block) as usize * 4,
    ))
}

/// Where inode `ino` lives, if it can live there: inside an inode chunk's
/// place in the data area (`NotFound` otherwise, for numbers taken from
/// damaged or crafted records).
pub(super) fn inode_location(layout: &Layout, ino: u64) -> Result<inode::Location, Error> {
    let location = inode::location(ino).ok_or(Error::NotFound)?;
    let chunk_end = location.chunk.checked_add(inode::CHUNK_INODE_BLOCKS);
    if location.chunk < layout.data_start || !chunk_end.is_some_and(|end| end <= layout.block_count)
    {
        return Err(Error::NotFound);
    }
    Ok(location)
}

/// Whether inode `ino`'s slot is marked in use in a recorded inode chunk:
/// a damaged directory entry or parent pointer must not make a data block
/// pass for an inode.
pub(super) fn slot_in_use<S: Nodes<Error = Error>>(
    store: &S,
    sb: &Superblock,
    ino: u64,
) -> Result<bool, Error> {
    let location = match inode_location(&sb.layout, ino) {
        Ok(location) => location,
        Err(Error::NotFound) => return Ok(false),
        Err(e) => return Err(e),
    };
    let chunks = Tree::<InodeChunks>::open(sb.inode_tree_root, OWNER_INODE_CHUNKS);
    let mut value = [0u8; 16];
    let recorded = chunks
        .get(store, &block_key(location.chunk), &mut value)
        .map_err(tree_error)?;
    let bits = get_u64(&value, 0).ok_or(Error::Invalid)?;
    Ok(recorded && bits & 1 << location.slot != 0)
}

/// Reads inode `ino` through `read(block, offset, buf)`, which copies bytes
/// of a block.
pub(super) fn read_inode(
    read: impl FnOnce(u64, usize, &mut [u8]) -> Result<(), Error>,
    ino: u64,
) -> Result<Inode, Error> {
    let location = inode::location(ino).ok_or(Error::NotFound)?;
    let mut record = [0u8; INODE_BYTES];
    read(location.block, location.offset, &mut record)?;
    match Inode::decode(ino, &record) {
        Ok(Some(inode)) => Ok(inode),
        Ok(None) => Err(Error::NotFound),
        Err(_) => Err(Error::Corrupt(location.block, Damage::Inode)),
    }
}

impl<M: Media> Nodes for Tx<'_, M> {
    type Error = Error;
    fn read(&self, block: u64, offset: usize, buf: &mut [u8]) -> Result<(), Error> {
        Tx::read(self, block, offset, buf)
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
}

/// A tree's view of a transaction: nodes it allocates belong to `owner`
/// and are counted, so the owning inode's block count can follow.
pub(super) struct TreeStore<'t, 'a, M: Media> {
    tx: &'t mut Tx<'a, M>,
    owner: u64,
    /// Nodes allocated minus nodes freed.
    pub(super) node_delta: i64,
}

impl<'t, 'a, M: Media> TreeStore<'t, 'a, M> {
    pub(super) fn new(tx: &'t mut Tx<'a, M>, owner: u64) -> Self {
        Self {
            tx,
            owner,
            node_delta: 0,
        }
    }
}

impl<M: Media> Nodes for TreeStore<'_, '_, M> {
    type Error = Error;
    fn read(&self, block: u64, offset: usize, buf: &mut [u8]) -> Result<(), Error> {
        self.tx.read(block, offset, buf)
    }
    fn may_hold_node(&self, block: u64) -> bool {
        self.tx.may_hold_node(block)
    }
    fn checked(&self, block: u64) -> bool {
        self.tx.checked(block)
    }
    fn set_checked(&self, block: u64) {
        self.tx.set_checked(block);
    }
}

impl<M: Media> Blocks for TreeStore<'_, '_, M> {
    fn node_mut(&mut self, block: u64) -> Result<&mut [u8; BLOCK_SIZE], Error> {
        self.tx.write(block)
    }
    fn allocate(&mut self) -> Result<u64, Error> {
        let goal = self.tx.layout.data_start;
        let extent = self.tx.allocate_data(1, goal)?;
        self.tx.rmap_add(
            RmapKey {
                start: extent.start,
                owner: self.owner,
                offset: 0,
            },
            1,
            RMAP_METADATA,
        )?;
        self.node_delta += 1;
        Ok(extent.start)
    }
    fn free(&mut self, block: u64) -> Result<(), Error> {
        self.tx.free(Extent {
            start: block,
            len: 1,
        })?;
        self.tx.rmap_remove(
            RmapKey {
                start: block,
                owner: self.owner,
                offset: 0,
            },
            1,
        )?;
        self.node_delta -= 1;
        Ok(())
    }
}

/// Visits the entries of `tree` from `from` with a typed visitor.
pub(super) fn scan<K: TreeKind, S: Nodes<Error = Error>>(
    tree: &Tree<K>,
    store: &S,
    from: &[u8],
    visit: &mut Visitor<'_>,
) -> Result<(), Error> {
    let _stopped_early = tree.scan(store, from, visit).map_err(tree_error)?;
    Ok(())
}
