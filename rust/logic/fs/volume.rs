// SPDX-License-Identifier: GPL-2.0

//! A mounted filesystem: the operations.

use core::ops::ControlFlow;

use super::{
    cache::BlockCache,
    checked::CheckedNodes,
    tx::{scan, slot_in_use, tree_error, write_backup, Committed, JournalState, TreeStore, Tx},
    AttrChange, Damage, DirEntry, Error, MapKind, Mapping, Media, MediaFault, MountError,
    MountReport, NewInode, Owned, Poisoned, RenameFlags, Renamed, Scratch, SharedWrite, StatFs,
    Unlinked,
};
use crate::logic::format::{
    btree::{Nodes, Tree},
    get_u64,
    inode::{
        self, FileType, Inode, Timestamp, CHUNK_INODE_BLOCKS, INODES_PER_CHUNK, MAX_FILE_SIZE,
    },
    journal::{self, JournalHeader},
    kinds::{
        self, block_key, check_name, dirent_key, parse_block_key, Directory, Dirent, Extent,
        Extents, InodeChunks, NameError, RefCounts, ReverseMap, RmapKey, EXTENT_UNWRITTEN,
        OWNER_INODE_CHUNKS, RMAP_METADATA,
    },
    layout::Layout,
    space::{self, SpaceStore},
    superblock::{Superblock, SuperblockError, BACKUP_BLOCK, PRIMARY_BLOCK, STATE_CLEAN},
    BLOCK_SHIFT, BLOCK_SIZE, CHUNK_BLOCKS,
};

/// Which blocks of a range [`Volume::unmap_range`] releases.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Blocks {
    /// Every block.
    All,
    /// Written blocks only (unwritten ones are preallocations to keep).
    Written,
}

/// Readdir positions 0 and 1 are `.` and `..` (the VFS emits them); the
/// first entry's position is at least this.
pub const FIRST_POSITION: u64 = 2;
/// The position past the last entry.
pub const END_POSITION: u64 = i64::MAX as u64;

/// Most hard links an inode may have (as ext4).
const LINK_MAX: u32 = 65_000;
/// Largest file in blocks.
const MAX_FILE_BLOCKS: u64 = MAX_FILE_SIZE >> BLOCK_SHIFT;
/// Largest extent a single allocation makes (a transaction's deferred work
/// stays small, and lengths fit the extent record).
const MAX_ALLOCATION: u64 = 64 * CHUNK_BLOCKS;
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

/// A mounted filesystem.
pub struct Volume<M: Media, S: Scratch> {
    media: M,
    scratch: S,
    sb: Superblock,
    journal: JournalState,
    read_only: bool,
    shut_down: bool,
    /// A chunk that had a free inode slot, where the next search starts.
    chunk_hint: u64,
    /// Inodes that lost their last link and are not evicted yet: while
    /// there are any, the filesystem is never marked clean, so that the
    /// next mount frees them if this one cannot.
    orphans: u64,
    /// The zero chunk (`reserve_zero_chunk`), if any.
    zero_chunk: Option<u64>,
    /// Blocks with failed memory (`poison`).
    poisoned: Poisoned,
}

fn to_name_error(error: NameError) -> Error {
    match error {
        NameError::TooLong => Error::NameTooLong,
        _ => Error::Invalid,
    }
}

fn is_dir(inode: &Inode) -> bool {
    inode.file_type() == Some(FileType::Directory)
}

/// A directory entry found by name.
struct Found {
    key: [u8; 12],
    ino: u64,
}

/// Looks `name` up in directory tree `tree`; also returns the first free
/// collision index for the name's hash.
fn dir_find<S: Nodes<Error = Error>>(
    tree: &Tree<Directory>,
    store: &S,
    uuid: &[u8; 16],
    name: &[u8],
) -> Result<(Option<Found>, u32), Error> {
    let first = dirent_key(uuid, name, 0);
    let mut found = None;
    let mut free_index = 0u32;
    let mut damaged = false;
    scan(tree, store, &first, &mut |key, value| {
        if key.get(..8) != first.get(..8) {
            return ControlFlow::Break(());
        }
        let Some(entry) = Dirent::decode(value) else {
            damaged = true;
            return ControlFlow::Break(());
        };
        let index = key
            .get(8..12)
            .and_then(|b| b.try_into().ok())
            .map_or(u32::MAX, u32::from_be_bytes);
        if index == free_index {
            free_index = free_index.saturating_add(1);
        }
        if entry.name == name {
            // A directory key is 12 bytes; `copy_from_slice` would panic
            // on any other length (and leaves objtool a call it does not
            // know to be noreturn).
            let Ok(key) = <[u8; 12]>::try_from(key) else {
                damaged = true;
                return ControlFlow::Break(());
            };
            found = Some(Found {
                key,
                ino: entry.ino,
            });
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    })?;
    if damaged {
        return Err(Error::Corrupt(tree.root, Damage::Record));
    }
    Ok((found, free_index))
}

/// The extent containing file block `block`, or the hole there and where
/// the next extent starts.
enum Lookup {
    Extent(u64, Extent),
    Hole(Option<u64>),
}

fn find_extent<S: Nodes<Error = Error>>(
    tree: &Tree<Extents>,
    store: &S,
    layout: &Layout,
    block: u64,
) -> Result<Lookup, Error> {
    let mut key = [0u8; 8];
    let mut value = [0u8; 16];
    if tree
        .last_at_or_before(store, &block_key(block), &mut key, &mut value)
        .map_err(tree_error)?
    {
        let start = parse_block_key(&key).ok_or(Error::Invalid)?;
        let extent = valid_extent(tree, layout, start, &value)?;
        if block < start + u64::from(extent.len) {
            return Ok(Lookup::Extent(start, extent));
        }
    }
    let mut next = None;
    scan(tree, store, &block_key(block), &mut |key, _| {
        next = parse_block_key(key);
        ControlFlow::Break(())
    })?;
    // The next extent starts after `block`, or the tree's order is broken
    // (a hole that ends where it starts would stop its callers' loops).
    if next.is_some_and(|next| next <= block) {
        return Err(Error::Corrupt(tree.root, Damage::Record));
    }
    Ok(Lookup::Hole(next))
}

/// The extent stored under file block `start`, if it makes sense: not
/// empty, its file range inside the largest file and its device range
/// inside the data area. Every extent read from the media passes here
/// before any arithmetic on it.
fn valid_extent(
    tree: &Tree<Extents>,
    layout: &Layout,
    start: u64,
    value: &[u8],
) -> Result<Extent, Error> {
    let damaged = Error::Corrupt(tree.root, Damage::Record);
    let extent = Extent::decode(value).ok_or(damaged)?;
    let len = u64::from(extent.len);
    match (start.checked_add(len), extent.physical.checked_add(len)) {
        (Some(end), Some(device_end))
            if len > 0
                && end <= MAX_FILE_BLOCKS
                && extent.physical >= layout.data_start
                && device_end <= layout.block_count =>
        {
            Ok(extent)
        }
        _ => Err(damaged),
    }
}

/// The last extent of a file.
fn last_extent<S: Nodes<Error = Error>>(
    tree: &Tree<Extents>,
    store: &S,
    layout: &Layout,
) -> Result<Option<(u64, Extent)>, Error> {
    let mut key = [0u8; 8];
    let mut value = [0u8; 16];
    if !tree
        .last_at_or_before(store, &block_key(u64::MAX), &mut key, &mut value)
        .map_err(tree_error)?
    {
        return Ok(None);
    }
    let start = parse_block_key(&key).ok_or(Error::Invalid)?;
    let extent = valid_extent(tree, layout, start, &value)?;
    Ok(Some((start, extent)))
}

/// A refcount record: device blocks `start..end` are shared `count` times.
#[derive(Clone, Copy)]
struct RefCount {
    start: u64,
    end: u64,
    count: u64,
}

/// The refcount record starting at or before device block `block`, if any.
/// Every record read passes here: inside the data area, not empty, shared
/// at least twice, or the tree is damaged.
fn refcount_at_or_before<S: Nodes<Error = Error>>(
    sb: &Superblock,
    store: &S,
    block: u64,
) -> Result<Option<RefCount>, Error> {
    let tree = Tree::<RefCounts>::open(sb.refcount_root, kinds::OWNER_REFCOUNTS);
    let mut key = [0u8; 8];
    let mut value = [0u8; 16];
    if !tree
        .last_at_or_before(store, &block_key(block), &mut key, &mut value)
        .map_err(tree_error)?
    {
        return Ok(None);
    }
    let damaged = Error::Corrupt(sb.refcount_root, Damage::Record);
    let start = parse_block_key(&key).ok_or(damaged)?;
    let len = get_u64(&value, 0).ok_or(damaged)?;
    let count = get_u64(&value, 8).ok_or(damaged)?;
    let end = start.checked_add(len).ok_or(damaged)?;
    let layout = &sb.layout;
    if len == 0 || count < 2 || start < layout.data_start || end > layout.block_count {
        return Err(damaged);
    }
    Ok(Some(RefCount { start, end, count }))
}

/// Whether device block `block` is shared (has a refcount record), and for
/// how many blocks from it that stays the same (at most `len`).
fn shared_run<S: Nodes<Error = Error>>(
    sb: &Superblock,
    store: &S,
    block: u64,
    len: u64,
) -> Result<(bool, u64), Error> {
    let tree = Tree::<RefCounts>::open(sb.refcount_root, kinds::OWNER_REFCOUNTS);
    if let Some(record) = refcount_at_or_before(sb, store, block)? {
        if block < record.end {
            return Ok((true, len.min(record.end - block)));
        }
    }
    let mut next = None;
    scan(&tree, store, &block_key(block), &mut |key, _| {
        next = parse_block_key(key);
        ControlFlow::Break(())
    })?;
    Ok((
        false,
        next.map_or(len, |n| len.min(n.saturating_sub(block)).max(1)),
    ))
}

/// Applies `change` to `inode`'s attributes other than the size.
fn apply_attrs(inode: &mut Inode, change: &AttrChange) {
    if let Some(mode) = change.mode {
        inode.mode = (inode.mode & inode::S_IFMT) | (mode & 0o7777);
    }
    if let Some(uid) = change.uid {
        inode.uid = uid;
    }
    if let Some(gid) = change.gid {
        inode.gid = gid;
    }
    if let Some(t) = change.atime {
        inode.atime = t;
    }
    if let Some(t) = change.mtime {
        inode.mtime = t;
    }
    if let Some(t) = change.ctime {
        inode.ctime = t;
    }
}

impl<M: Media, S: Scratch> Volume<M, S> {
    /// Mounts the filesystem on `media`: validates the superblock (primary,
    /// else backup), replays the journal, checks the root and, after an
    /// unclean shutdown, frees orphans. `read_only`: the device must not be
    /// written; a journal with transactions to replay then refuses the
    /// mount.
    pub fn mount(
        media: M,
        mut scratch: S,
        read_only: bool,
    ) -> Result<(Self, MountReport), MountError> {
        let device_blocks = media.size() >> BLOCK_SHIFT;
        let parts = scratch.parts();
        let (mut sb, used_backup) = Self::read_superblock(&media, parts.spare)?;
        if sb.layout.block_count > device_blocks {
            return Err(MountError::TooSmall);
        }
        let layout = sb.layout;
        let header_byte = layout.journal_start << BLOCK_SHIFT;
        let log_start = header_byte + BLOCK_SIZE as u64;
        let log_len = ((layout.journal_blocks - 1) << BLOCK_SHIFT) as usize;
        let header = media
            .read(header_byte, &mut parts.spare[..])
            .map_err(|_| MountError::Journal)
            .and_then(|()| {
                JournalHeader::decode(&parts.spare[..], log_len).map_err(|_| MountError::Journal)
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
        let mut volume = Self {
            media,
            scratch,
            sb,
            journal: JournalState {
                log_start,
                log_len,
                next_seq: pending.next_seq,
                next_offset: pending.next_offset,
            },
            read_only,
            shut_down: false,
            chunk_hint: 0,
            orphans: 0,
            zero_chunk: None,
            poisoned: Poisoned::NONE,
        };
        let root = volume.inode(volume.sb.root_ino).map_err(|e| match e {
            Error::Corrupt(block, what) => MountError::Corrupt(block, what),
            _ => MountError::Corrupt(volume.sb.root_ino >> 6, Damage::Inode),
        })?;
        if !is_dir(&root) {
            return Err(MountError::Corrupt(volume.sb.root_ino >> 6, Damage::Inode));
        }
        if !read_only {
            let mark = volume.transact(|tx| {
                tx.sb.state &= !STATE_CLEAN;
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
        self.shut_down = true;
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
        self.read_only = false;
        let marked = self.transact(|tx| {
            tx.sb.state &= !STATE_CLEAN;
            Ok(())
        });
        if marked.is_err() {
            self.read_only = true;
        }
        marked
    }

    fn mark_clean(&mut self) {
        if !self.read_only && !self.shut_down && self.orphans == 0 {
            // Best effort: if this fails the next mount sees a dirty
            // filesystem and checks for orphans, which is still correct.
            let clean = self.transact(|tx| {
                tx.sb.state |= STATE_CLEAN;
                Ok(())
            });
            let spare = self.scratch.parts().spare;
            if clean.is_ok() && write_backup(&self.media, &self.sb, spare).is_ok() {
                // Everything is home: the next mount has nothing to replay.
                self.media.fence();
                // A log filled exactly to its end continues at its start.
                let offset = self.journal.next_offset;
                JournalHeader {
                    tail_seq: self.journal.next_seq,
                    tail_offset: if offset < self.journal.log_len {
                        offset as u64
                    } else {
                        0
                    },
                }
                .encode(spare);
                if self
                    .media
                    .write(self.journal.log_start - BLOCK_SIZE as u64, &spare[..])
                {
                    self.media.fence();
                }
            }
        }
    }

    /// After an error the caller cannot recover from: everything fails with
    /// `Error::Shutdown` from now on.
    pub fn shut_down(&mut self) {
        self.shut_down = true;
    }

    /// Whether `shut_down` happened.
    pub fn is_shut_down(&self) -> bool {
        self.shut_down
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
        let tx = Tx::new(&self.media, self.sb, self.scratch.parts());
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
    pub(super) fn journal_offset(&self) -> usize {
        self.journal.next_offset
    }

    /// The root directory.
    pub fn root(&self) -> u64 {
        self.sb.root_ino
    }

    fn check_live(&self) -> Result<(), Error> {
        if self.shut_down {
            Err(Error::Shutdown)
        } else {
            Ok(())
        }
    }

    /// Runs `op` as one transaction and commits it. A damaged structure
    /// found on the way shuts nothing down by itself: it fails this
    /// operation only (the damaged object gives `EIO`). A failed commit
    /// does shut the volume down: the device and memory may disagree.
    fn transact<T>(
        &mut self,
        op: impl FnOnce(&mut Tx<'_, M>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        self.check_live()?;
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        self.media.relax();
        let mut tx = Tx::new(&self.media, self.sb, self.scratch.parts());
        tx.hidden_chunk = self.zero_chunk;
        tx.poisoned = &self.poisoned;
        let value = op(&mut tx)?;
        match tx.commit(&mut self.journal) {
            Ok(sb) => {
                self.sb = sb;
                Ok(value)
            }
            Err(e) => {
                if matches!(e, Error::Corrupt(..)) {
                    self.shut_down = true;
                }
                Err(e)
            }
        }
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

    /// The record of inode `ino` (`NotFound` for a free slot or a number
    /// that cannot be an inode).
    pub fn inode(&self, ino: u64) -> Result<Inode, Error> {
        self.check_live()?;
        if !slot_in_use(&self.committed(), &self.sb, ino)? {
            return Err(Error::NotFound);
        }
        self.committed().inode(ino)
    }

    fn directory(&self, ino: u64) -> Result<(Inode, Tree<Directory>), Error> {
        let dir = self.inode(ino)?;
        if !is_dir(&dir) {
            return Err(Error::NotDir);
        }
        Ok((dir, Tree::open(dir.map_root, ino)))
    }

    /// The inode `name` refers to in directory `dir`.
    pub fn lookup(&self, dir: u64, name: &[u8]) -> Result<u64, Error> {
        check_name(name).map_err(to_name_error)?;
        let (_, tree) = self.directory(dir)?;
        let (found, _) = dir_find(&tree, &self.committed(), &self.sb.uuid, name)?;
        found.map(|f| f.ino).ok_or(Error::NotFound)
    }

    /// Creates `name` in `dir`: a regular file, directory or special file,
    /// by `new.mode`'s type. Returns the new inode and its record.
    pub fn create(&mut self, dir: u64, name: &[u8], new: &NewInode) -> Result<(u64, Inode), Error> {
        check_name(name).map_err(to_name_error)?;
        let file_type = FileType::of_mode(new.mode).ok_or(Error::Invalid)?;
        if new.mode & !(inode::S_IFMT | 0o7777) != 0 || file_type == FileType::Symlink {
            return Err(Error::Invalid);
        }
        let hint = self.chunk_hint;
        let mut used_chunk = hint;
        let created = self.transact(|tx| {
            let mut parent = live_directory(tx, dir)?;
            let uuid = tx.sb.uuid;
            let mut tree = Tree::<Directory>::open(parent.map_root, dir);
            let (found, index) = dir_find(&tree, &TxNodes(tx), &uuid, name)?;
            if found.is_some() {
                return Err(Error::Exists);
            }
            let new_dir = file_type == FileType::Directory;
            if new_dir && parent.nlink >= LINK_MAX {
                return Err(Error::TooManyLinks);
            }
            let (ino, chunk) = allocate_inode(tx, hint)?;
            used_chunk = chunk;
            let mut record = Inode {
                mode: new.mode,
                uid: new.uid,
                gid: new.gid,
                nlink: if new_dir { 2 } else { 1 },
                size: 0,
                blocks: 0,
                atime: new.now,
                mtime: new.now,
                ctime: new.now,
                btime: new.now,
                generation: new.now.nsec ^ (ino as u32),
                rdev: new.rdev,
                map_root: 0,
                parent: if new_dir { dir } else { 0 },
            };
            if new_dir {
                let mut store = TreeStore::new(tx, ino);
                let entries = Tree::<Directory>::create(&mut store, ino).map_err(tree_error)?;
                record.blocks = store.node_delta.unsigned_abs();
                record.map_root = entries.root;
            }
            tx.put_inode(ino, &record)?;

            let entry = Dirent {
                ino,
                dtype: file_type.dtype(),
                name,
            }
            .encode()
            .ok_or(Error::Invalid)?;
            let mut store = TreeStore::new(tx, dir);
            tree.insert(&mut store, &dirent_key(&uuid, name, index), &entry)
                .map_err(tree_error)?;
            let delta = store.node_delta;
            parent.map_root = tree.root;
            parent.blocks = parent.blocks.saturating_add_signed(delta);
            parent.size = parent.size.saturating_add(1);
            if new_dir {
                parent.nlink += 1;
            }
            parent.mtime = new.now;
            parent.ctime = new.now;
            tx.put_inode(dir, &parent)?;
            tx.sb.inode_count = tx
                .sb
                .inode_count
                .checked_add(1)
                .ok_or(Error::Corrupt(PRIMARY_BLOCK, Damage::Record))?;
            Ok((ino, record))
        })?;
        self.chunk_hint = used_chunk;
        Ok(created)
    }

    /// A new name `name` in `dir` for `ino` (not a directory).
    pub fn link(
        &mut self,
        ino: u64,
        dir: u64,
        name: &[u8],
        now: Timestamp,
    ) -> Result<Inode, Error> {
        check_name(name).map_err(to_name_error)?;
        self.transact(|tx| {
            let mut target = tx.inode(ino)?;
            if is_dir(&target) {
                return Err(Error::Invalid);
            }
            if target.nlink == 0 {
                return Err(Error::NotFound);
            }
            if target.nlink >= LINK_MAX {
                return Err(Error::TooManyLinks);
            }
            let mut parent = live_directory(tx, dir)?;
            let uuid = tx.sb.uuid;
            let mut tree = Tree::<Directory>::open(parent.map_root, dir);
            let (found, index) = dir_find(&tree, &TxNodes(tx), &uuid, name)?;
            if found.is_some() {
                return Err(Error::Exists);
            }
            let entry = Dirent {
                ino,
                dtype: target.file_type().map_or(0, FileType::dtype),
                name,
            }
            .encode()
            .ok_or(Error::Invalid)?;
            let mut store = TreeStore::new(tx, dir);
            tree.insert(&mut store, &dirent_key(&uuid, name, index), &entry)
                .map_err(tree_error)?;
            let delta = store.node_delta;
            parent.map_root = tree.root;
            parent.blocks = parent.blocks.saturating_add_signed(delta);
            parent.size = parent.size.saturating_add(1);
            parent.mtime = now;
            parent.ctime = now;
            tx.put_inode(dir, &parent)?;
            target.nlink += 1;
            target.ctime = now;
            tx.put_inode(ino, &target)?;
            Ok(target)
        })
    }

    /// Removes `name` (not a directory: `IsDir`) from `dir`.
    pub fn unlink(&mut self, dir: u64, name: &[u8], now: Timestamp) -> Result<Unlinked, Error> {
        self.remove_name(dir, name, now, false)
    }

    /// Removes the empty directory `name` from `dir`.
    pub fn rmdir(&mut self, dir: u64, name: &[u8], now: Timestamp) -> Result<Unlinked, Error> {
        self.remove_name(dir, name, now, true)
    }

    fn remove_name(
        &mut self,
        dir: u64,
        name: &[u8],
        now: Timestamp,
        want_dir: bool,
    ) -> Result<Unlinked, Error> {
        check_name(name).map_err(to_name_error)?;
        let unlinked = self.transact(|tx| {
            let mut parent = live_directory(tx, dir)?;
            let uuid = tx.sb.uuid;
            let mut tree = Tree::<Directory>::open(parent.map_root, dir);
            let (found, _) = dir_find(&tree, &TxNodes(tx), &uuid, name)?;
            let found = found.ok_or(Error::NotFound)?;
            let mut target = tx.inode(found.ino)?;
            match (want_dir, is_dir(&target)) {
                (false, true) => return Err(Error::IsDir),
                (true, false) => return Err(Error::NotDir),
                (true, true) if target.size != 0 => return Err(Error::NotEmpty),
                _ => {}
            }
            let mut store = TreeStore::new(tx, dir);
            if !tree.remove(&mut store, &found.key).map_err(tree_error)? {
                return Err(Error::Corrupt(parent.map_root, Damage::Record));
            }
            let delta = store.node_delta;
            parent.map_root = tree.root;
            parent.blocks = parent.blocks.saturating_add_signed(delta);
            parent.size = parent.size.saturating_sub(1);
            parent.mtime = now;
            parent.ctime = now;
            if want_dir {
                parent.nlink = parent.nlink.saturating_sub(1);
                target.nlink = 0;
            } else {
                target.nlink = target.nlink.saturating_sub(1);
            }
            target.ctime = now;
            tx.put_inode(dir, &parent)?;
            tx.put_inode(found.ino, &target)?;
            Ok(Unlinked {
                ino: found.ino,
                inode: target,
            })
        })?;
        if unlinked.inode.nlink == 0 {
            self.orphans += 1;
        }
        Ok(unlinked)
    }

    /// `renameat2` without `RENAME_EXCHANGE`/`RENAME_WHITEOUT`.
    pub fn rename(
        &mut self,
        old_dir: u64,
        old_name: &[u8],
        new_dir: u64,
        new_name: &[u8],
        flags: RenameFlags,
        now: Timestamp,
    ) -> Result<Renamed, Error> {
        check_name(old_name).map_err(to_name_error)?;
        check_name(new_name).map_err(to_name_error)?;
        let renamed = self.transact(|tx| {
            let uuid = tx.sb.uuid;
            let old_parent = live_directory(tx, old_dir)?;
            let old_tree = Tree::<Directory>::open(old_parent.map_root, old_dir);
            let (source, _) = dir_find(&old_tree, &TxNodes(tx), &uuid, old_name)?;
            let source = source.ok_or(Error::NotFound)?;
            let mut moved = tx.inode(source.ino)?;
            let new_parent = if new_dir == old_dir {
                old_parent
            } else {
                live_directory(tx, new_dir)?
            };
            let new_tree = Tree::<Directory>::open(new_parent.map_root, new_dir);
            let (target, _) = dir_find(&new_tree, &TxNodes(tx), &uuid, new_name)?;
            let moving_dir = is_dir(&moved);
            let mut replaced = None;
            if let Some(target) = &target {
                if flags.no_replace {
                    return Err(Error::Exists);
                }
                if target.ino == source.ino {
                    // Two names of one inode: POSIX says do nothing.
                    return Ok(Renamed {
                        moved: (source.ino, moved),
                        replaced: None,
                    });
                }
                let victim = tx.inode(target.ino)?;
                match (moving_dir, is_dir(&victim)) {
                    (true, false) => return Err(Error::NotDir),
                    (false, true) => return Err(Error::IsDir),
                    (true, true) if victim.size != 0 => return Err(Error::NotEmpty),
                    _ => {}
                }
                replaced = Some((target.ino, victim));
            }
            if moving_dir && new_dir != old_dir {
                // The VFS refuses moving a directory under itself; a
                // damaged tree must not make a loop either.
                let mut at = new_dir;
                for _ in 0..4096 {
                    if at == source.ino {
                        return Err(Error::Invalid);
                    }
                    if at == tx.sb.root_ino {
                        break;
                    }
                    at = tx.inode(at)?.parent;
                }
                if new_parent.nlink >= LINK_MAX && replaced.is_none() {
                    return Err(Error::TooManyLinks);
                }
            }

            // Remove the old name, then the replaced target's name, then
            // add the new one; reread the parents in between since they
            // may be the same inode.
            let mut parents = [(old_dir, 0i64, 0i64), (new_dir, 0, 0)];
            remove_entry(tx, old_dir, &source.key)?;
            if let Some((victim_ino, mut victim)) = replaced {
                let key = target.as_ref().map(|t| t.key).ok_or(Error::Invalid)?;
                remove_entry(tx, new_dir, &key)?;
                if is_dir(&victim) {
                    victim.nlink = 0;
                    parents[1].2 -= 1;
                } else {
                    victim.nlink = victim.nlink.saturating_sub(1);
                }
                victim.ctime = now;
                tx.put_inode(victim_ino, &victim)?;
                replaced = Some((victim_ino, victim));
                parents[1].1 -= 1;
            }
            let mut parent = tx.inode(new_dir)?;
            let mut tree = Tree::<Directory>::open(parent.map_root, new_dir);
            let (_, index) = dir_find(&tree, &TxNodes(tx), &uuid, new_name)?;
            let entry = Dirent {
                ino: source.ino,
                dtype: moved.file_type().map_or(0, FileType::dtype),
                name: new_name,
            }
            .encode()
            .ok_or(Error::Invalid)?;
            let mut store = TreeStore::new(tx, new_dir);
            tree.insert(&mut store, &dirent_key(&uuid, new_name, index), &entry)
                .map_err(tree_error)?;
            let delta = store.node_delta;
            parent.map_root = tree.root;
            parent.blocks = parent.blocks.saturating_add_signed(delta);
            tx.put_inode(new_dir, &parent)?;
            parents[0].1 -= 1;
            parents[1].1 += 1;
            if moving_dir && new_dir != old_dir {
                parents[0].2 -= 1;
                parents[1].2 += 1;
                moved.parent = new_dir;
            }
            for (ino, size_delta, link_delta) in parents {
                let mut parent = tx.inode(ino)?;
                parent.size = parent.size.saturating_add_signed(size_delta);
                parent.nlink = parent.nlink.saturating_add_signed(link_delta as i32);
                parent.mtime = now;
                parent.ctime = now;
                // With one parent both entries apply to it in turn.
                tx.put_inode(ino, &parent)?;
            }
            moved.ctime = now;
            tx.put_inode(source.ino, &moved)?;
            Ok(Renamed {
                moved: (source.ino, moved),
                replaced,
            })
        })?;
        if renamed.replaced.is_some_and(|(_, inode)| inode.nlink == 0) {
            self.orphans += 1;
        }
        Ok(renamed)
    }

    /// Calls `emit` for each entry of `dir` at or after `position`, in
    /// position order, until it returns `false`.
    ///
    /// Positions are the top 62 bits of the name hash, offset past `.` and
    /// `..`: stable across inserts and removals. Names whose hashes agree
    /// in those bits share a position and are emitted together; if `emit`
    /// stops in the middle of such a group, the next call repeats it.
    pub fn readdir(
        &self,
        dir: u64,
        position: u64,
        emit: &mut dyn FnMut(&DirEntry<'_>) -> bool,
    ) -> Result<(), Error> {
        let (directory, tree) = self.directory(dir)?;
        if position >= END_POSITION {
            return Ok(());
        }
        let hash_from = position.saturating_sub(FIRST_POSITION) << 2;
        let mut from = [0u8; 12];
        from[..8].copy_from_slice(&hash_from.to_be_bytes());
        let mut damaged = false;
        scan(&tree, &self.committed(), &from, &mut |key, value| {
            let Some(entry) = Dirent::decode(value) else {
                damaged = true;
                return ControlFlow::Break(());
            };
            let hash = parse_block_key(key).unwrap_or(u64::MAX);
            let at = (hash >> 2) + FIRST_POSITION;
            let reported = DirEntry {
                name: entry.name,
                ino: entry.ino,
                dtype: entry.dtype,
                position: at,
                next_cookie: at + 1,
            };
            if emit(&reported) {
                ControlFlow::Continue(())
            } else {
                ControlFlow::Break(())
            }
        })?;
        if damaged {
            return Err(Error::Corrupt(directory.map_root, Damage::Record));
        }
        Ok(())
    }

    /// Applies `change` (a size change truncates or extends).
    pub fn set_attr(&mut self, ino: u64, change: &AttrChange) -> Result<Inode, Error> {
        let old = self.inode(ino)?;
        let new_size = change.size.unwrap_or(old.size);
        if new_size > MAX_FILE_SIZE {
            return Err(Error::TooBig);
        }
        if change.size.is_some() && old.file_type() != Some(FileType::Regular) {
            return Err(if is_dir(&old) {
                Error::IsDir
            } else {
                Error::Invalid
            });
        }
        if new_size < old.size {
            // Zero the rest of the new last block so that a later extension
            // reads zeros there; blocks past it are freed below.
            self.zero_tail(ino, new_size)?;
        } else if new_size > old.size {
            self.zero_past_eof(ino, new_size)?;
        }
        let inode = self.transact(|tx| {
            let mut inode = tx.inode(ino)?;
            apply_attrs(&mut inode, change);
            inode.size = new_size;
            tx.put_inode(ino, &inode)?;
            Ok(inode)
        })?;
        if new_size < old.size {
            return self.trim(ino, new_size.div_ceil(BLOCK_SIZE as u64), false);
        }
        Ok(inode)
    }

    /// Makes bytes `size..upto` of `ino` read as zeros, where `size` is its
    /// size, before the file grows over them. What lies past the end of
    /// file is not the file's: stores through a mapping of the end-of-file
    /// page past its end, or blocks of a write or truncation that a crash
    /// cut short. ext4 and xfs zero this gap too. The end-of-file block's
    /// tail is zeroed in place (copied first if shared: the caller has
    /// removed its mappings); written blocks inside the gap are released
    /// (unwritten ones, preallocations, stay: they read as zeros).
    pub fn zero_past_eof(&mut self, ino: u64, upto: u64) -> Result<(), Error> {
        let size = self.regular(ino)?.size;
        if upto <= size {
            return Ok(());
        }
        self.zero_tail(ino, size)?;
        let first = size.div_ceil(BLOCK_SIZE as u64);
        let end = upto.div_ceil(BLOCK_SIZE as u64);
        if first < end {
            self.unmap_range(ino, first, end - first, Blocks::Written)?;
        }
        Ok(())
    }

    /// Zeroes bytes `size..` of the block holding byte `size`, if written.
    fn zero_tail(&mut self, ino: u64, size: u64) -> Result<(), Error> {
        let within = size % BLOCK_SIZE as u64;
        if within == 0 {
            return Ok(());
        }
        self.zero_in_block(ino, size, BLOCK_SIZE as u64 - within)
    }

    /// Zeroes `len` bytes at byte `offset` of `ino`, inside one block, if
    /// that block holds written data (a shared block is copied first: the
    /// caller has removed its mappings). `Poisoned` if the block holds
    /// failed memory: it is never written (the caller punches whole blocks
    /// out instead).
    fn zero_in_block(&mut self, ino: u64, offset: u64, len: u64) -> Result<(), Error> {
        let block = offset >> BLOCK_SHIFT;
        let mut mapping = self.map_data(ino, block, 1)?;
        if mapping.kind != MapKind::Data || len == 0 {
            return Ok(());
        }
        if mapping.shared {
            mapping = self.map_write(ino, block, 1, SharedWrite::Copy)?;
        }
        let at = (mapping.physical << BLOCK_SHIFT) + offset % BLOCK_SIZE as u64;
        if !self.media.zero(at, len) {
            return Err(Error::Corrupt(mapping.physical, Damage::Address));
        }
        self.media.fence();
        Ok(())
    }

    /// Zeroes the partial blocks at the edges of byte range
    /// `offset..offset + len`; returns the whole blocks inside it.
    fn zero_edges(&mut self, ino: u64, offset: u64, len: u64) -> Result<(u64, u64), Error> {
        let end = offset.checked_add(len).ok_or(Error::TooBig)?;
        let bs = BLOCK_SIZE as u64;
        let first = offset.div_ceil(bs);
        let last = end / bs;
        if first > last {
            // Inside one block.
            self.zero_in_block(ino, offset, len)?;
            return Ok((first, 0));
        }
        if offset % bs != 0 {
            self.zero_in_block(ino, offset, first * bs - offset)?;
        }
        if end % bs != 0 {
            self.zero_in_block(ino, last * bs, end - last * bs)?;
        }
        Ok((first, last - first))
    }

    /// `fallocate(PUNCH_HOLE | KEEP_SIZE)`: bytes `offset..offset + len`
    /// read as zeros afterwards; whole blocks inside are freed.
    pub fn punch_hole(
        &mut self,
        ino: u64,
        offset: u64,
        len: u64,
        now: Timestamp,
    ) -> Result<Inode, Error> {
        self.regular(ino)?;
        let (first, count) = self.zero_edges(ino, offset, len)?;
        self.unmap_range(ino, first, count, Blocks::All)?;
        self.modified(ino, None, now)
    }

    /// `fallocate(ZERO_RANGE)`: like a punch, then the whole blocks are
    /// allocated again (unwritten); the size grows unless `keep_size`.
    pub fn zero_range(
        &mut self,
        ino: u64,
        offset: u64,
        len: u64,
        keep_size: bool,
        now: Timestamp,
    ) -> Result<Inode, Error> {
        self.regular(ino)?;
        let (first, count) = self.zero_edges(ino, offset, len)?;
        self.unmap_range(ino, first, count, Blocks::All)?;
        self.allocate(ino, offset, len, keep_size, now)
    }

    /// `fallocate(0)` or `fallocate(KEEP_SIZE)`: every hole in bytes
    /// `offset..offset + len` gets unwritten blocks (2 MiB-aligned where
    /// the range allows); the size grows to the end unless `keep_size`.
    /// On `NoSpace` what was allocated stays, as ext4 and xfs do.
    pub fn allocate(
        &mut self,
        ino: u64,
        offset: u64,
        len: u64,
        keep_size: bool,
        now: Timestamp,
    ) -> Result<Inode, Error> {
        self.regular(ino)?;
        let end = offset.checked_add(len).ok_or(Error::TooBig)?;
        if end > MAX_FILE_SIZE || len == 0 {
            return Err(if len == 0 {
                Error::Invalid
            } else {
                Error::TooBig
            });
        }
        if !keep_size {
            self.zero_past_eof(ino, end)?;
        }
        let mut block = offset >> BLOCK_SHIFT;
        let last = end.div_ceil(BLOCK_SIZE as u64);
        let mut budget = Budget::new();
        while block < last {
            let mut steps = 0;
            let result = self.transact(|tx| {
                let mut inode = tx.inode(ino)?;
                let mut tree = extent_tree(tx, &mut inode, ino)?;
                let mut at = block;
                while at < last && budget.allows(steps, tx) {
                    steps += 1;
                    // An insertion may have split the root: look the next
                    // hole up in the tree as it is now, not in the old root
                    // (now only its left half).
                    inode.map_root = tree.root;
                    let mapping = map_in(&tx.sb, &TxNodes(tx), ino, &inode, at, last - at)?;
                    if mapping.kind == MapKind::Hole {
                        let want = if at % CHUNK_BLOCKS == 0 {
                            mapping.len.min(MAX_ALLOCATION)
                        } else {
                            mapping.len.min(CHUNK_BLOCKS - at % CHUNK_BLOCKS)
                        };
                        let goal = goal_for(&tree, &TxNodes(tx), &tx.sb.layout, at)?;
                        let extent = tx.allocate_data(want, goal)?;
                        put_extent(
                            tx,
                            &mut tree,
                            &mut inode,
                            ino,
                            at,
                            extent.start,
                            extent.len,
                            EXTENT_UNWRITTEN,
                        )?;
                        inode.blocks = inode.blocks.saturating_add(extent.len);
                        at += extent.len;
                    } else {
                        at += mapping.len;
                    }
                }
                inode.map_root = tree.root;
                tx.put_inode(ino, &inode)?;
                Ok(at)
            });
            block = budget.settle(result, steps)?.unwrap_or(block);
        }
        self.modified(ino, (!keep_size).then_some(end), now)
    }

    /// Shares blocks `src_offset..src_offset + len` of `src` with `dst` at
    /// `dst_offset` (`FICLONE`, `FICLONERANGE`, `copy_file_range`): what
    /// `dst` had there is released, the shared blocks gain a reference,
    /// holes stay holes. Offsets are block-aligned; `len` is rounded up to
    /// whole blocks (a clone may end at the source's end of file). `dst`'s
    /// size grows to `dst_offset + len` if smaller. Done in steps, each a
    /// transaction leaving both files consistent.
    pub fn reflink(
        &mut self,
        src: u64,
        src_offset: u64,
        dst: u64,
        dst_offset: u64,
        len: u64,
        now: Timestamp,
    ) -> Result<Inode, Error> {
        let bs = BLOCK_SIZE as u64;
        if src_offset % bs != 0 || dst_offset % bs != 0 {
            return Err(Error::Invalid);
        }
        let count = len.div_ceil(bs);
        let (src_first, dst_first) = (src_offset / bs, dst_offset / bs);
        if dst_first.saturating_add(count) > MAX_FILE_BLOCKS
            || src_first.saturating_add(count) > MAX_FILE_BLOCKS
        {
            return Err(Error::TooBig);
        }
        if src == dst && src_first < dst_first + count && dst_first < src_first + count {
            return Err(Error::Invalid);
        }
        self.regular(src)?;
        self.regular(dst)?;
        self.zero_past_eof(dst, dst_offset)?;
        self.unmap_range(dst, dst_first, count, Blocks::All)?;
        let mut done = 0;
        let mut budget = Budget::new();
        while done < count {
            let mut steps = 0;
            let result = self.transact(|tx| {
                let source = tx.inode(src)?;
                let mut inode = tx.inode(dst)?;
                let mut tree = extent_tree(tx, &mut inode, dst)?;
                let mut at = done;
                while at < count && budget.allows(steps, tx) {
                    steps += 1;
                    // Within one file the source is the tree being
                    // changed: its root may have split since `source` was
                    // read.
                    let mut source = source;
                    if src == dst {
                        source.map_root = tree.root;
                    }
                    let mapping = map_in(
                        &tx.sb,
                        &TxNodes(tx),
                        src,
                        &source,
                        src_first + at,
                        count - at,
                    )?;
                    if mapping.kind == MapKind::Hole {
                        at += mapping.len;
                        continue;
                    }
                    // One refcount record (or none) per step: `map_in`
                    // stops where sharing changes.
                    adjust_refcount(tx, mapping.physical, mapping.len, 1)?;
                    let flags = if mapping.kind == MapKind::Unwritten {
                        EXTENT_UNWRITTEN
                    } else {
                        0
                    };
                    put_extent(
                        tx,
                        &mut tree,
                        &mut inode,
                        dst,
                        dst_first + at,
                        mapping.physical,
                        mapping.len,
                        flags,
                    )?;
                    inode.blocks = inode.blocks.saturating_add(mapping.len);
                    at += mapping.len;
                }
                inode.map_root = tree.root;
                tx.put_inode(dst, &inode)?;
                Ok(at)
            });
            done = budget.settle(result, steps)?.unwrap_or(done);
        }
        // A clone that ends at the source's end of file inside a block
        // brings that block's tail, which is not the source's data, into
        // the middle of a larger destination: zero it there.
        let end = dst_offset.saturating_add(len);
        let tail = end % bs;
        if tail != 0 && self.inode(dst)?.size > end {
            self.zero_in_block(dst, end, bs - tail)?;
        }
        self.modified(dst, Some(end), now)
    }

    /// `ino`, which must be a regular file.
    fn regular(&self, ino: u64) -> Result<Inode, Error> {
        let inode = self.inode(ino)?;
        match inode.file_type() {
            Some(FileType::Regular) => Ok(inode),
            Some(FileType::Directory) => Err(Error::IsDir),
            _ => Err(Error::Invalid),
        }
    }

    /// Sets mtime and ctime to `now`, and the size to at least `grow_to`.
    fn modified(&mut self, ino: u64, grow_to: Option<u64>, now: Timestamp) -> Result<Inode, Error> {
        // The kernel's clock is coarse (a tick): a burst of writes mostly
        // finds the times already at `now`. Then nothing changes and no
        // transaction is needed, as the VFS skips updating times that are
        // current (`inode_needs_update_time`).
        let current = self.inode(ino)?;
        if grow_to.unwrap_or(0) <= current.size && current.mtime == now && current.ctime == now {
            return Ok(current);
        }
        self.transact(|tx| {
            let mut inode = tx.inode(ino)?;
            inode.size = inode.size.max(grow_to.unwrap_or(0));
            inode.mtime = now;
            inode.ctime = now;
            tx.put_inode(ino, &inode)?;
            Ok(inode)
        })
    }

    /// Releases the blocks (`which` of them) mapped at file blocks
    /// `first..first + count` (they become a hole), in bounded
    /// transactions.
    fn unmap_range(
        &mut self,
        ino: u64,
        first: u64,
        count: u64,
        which: Blocks,
    ) -> Result<(), Error> {
        let end = first.saturating_add(count);
        let mut cursor = first;
        let mut budget = Budget::new();
        while cursor < end {
            let mut steps = 0;
            let result = self.transact(|tx| {
                let mut inode = tx.inode(ino)?;
                if inode.map_root == 0 {
                    return Ok(end);
                }
                let mut tree = Tree::<Extents>::open(inode.map_root, ino);
                let mut at = cursor;
                while at < end && budget.allows(steps, tx) {
                    steps += 1;
                    match find_extent(&tree, &TxNodes(tx), &tx.sb.layout, at)? {
                        Lookup::Hole(next) => at = next.map_or(end, |n| n.min(end)),
                        Lookup::Extent(start, extent)
                            if which == Blocks::Written && extent.flags & EXTENT_UNWRITTEN != 0 =>
                        {
                            at = (start + u64::from(extent.len)).min(end);
                        }
                        Lookup::Extent(start, extent) => {
                            let stop = (start + u64::from(extent.len)).min(end);
                            let len = stop - at;
                            split_out(tx, &mut tree, &mut inode, ino, start, extent, at, len)?;
                            release(tx, extent.physical + (at - start), len)?;
                            inode.blocks = inode.blocks.saturating_sub(len);
                            at = stop;
                        }
                    }
                }
                inode.map_root = tree.root;
                tx.put_inode(ino, &inode)?;
                Ok(at)
            });
            cursor = budget.settle(result, steps)?.unwrap_or(cursor);
        }
        Ok(())
    }

    /// Frees the blocks of `ino` from file block `first` on, in as many
    /// transactions as needed (each leaves a consistent file: blocks past
    /// the end of file are allowed). With `whole`, the emptied tree's root
    /// goes too.
    fn trim(&mut self, ino: u64, first: u64, whole: bool) -> Result<Inode, Error> {
        let mut budget = Budget::new();
        loop {
            let mut steps = 0;
            let result = self.transact(|tx| {
                let mut inode = tx.inode(ino)?;
                if inode.map_root == 0 {
                    return Ok((inode, true));
                }
                let mut tree = Tree::<Extents>::open(inode.map_root, ino);
                let mut done = false;
                while budget.allows(steps, tx) {
                    steps += 1;
                    let Some((start, extent)) = last_extent(&tree, &TxNodes(tx), &tx.sb.layout)?
                    else {
                        done = true;
                        break;
                    };
                    let end = start + u64::from(extent.len);
                    if end <= first {
                        done = true;
                        break;
                    }
                    let keep = first.saturating_sub(start);
                    let mut store = TreeStore::new(tx, ino);
                    if keep == 0 {
                        if !tree
                            .remove(&mut store, &block_key(start))
                            .map_err(tree_error)?
                        {
                            return Err(Error::Corrupt(tree.root, Damage::Record));
                        }
                    } else {
                        let shorter = Extent {
                            len: keep as u32,
                            ..extent
                        };
                        tree.insert(&mut store, &block_key(start), &shorter.encode())
                            .map_err(tree_error)?;
                    }
                    let delta = store.node_delta;
                    inode.blocks = inode.blocks.saturating_add_signed(delta);
                    let rmap = RmapKey {
                        start: extent.physical,
                        owner: ino,
                        offset: start,
                    };
                    tx.rmap_remove(rmap, u64::from(extent.len))?;
                    if keep > 0 {
                        tx.rmap_add(rmap, keep, 0)?;
                    }
                    let freed = u64::from(extent.len) - keep;
                    release(tx, extent.physical + keep, freed)?;
                    inode.blocks = inode.blocks.saturating_sub(freed);
                }
                inode.map_root = tree.root;
                if done && whole {
                    tx.free(space::Extent {
                        start: tree.root,
                        len: 1,
                    })?;
                    tx.rmap_remove(
                        RmapKey {
                            start: tree.root,
                            owner: ino,
                            offset: 0,
                        },
                        1,
                    )?;
                    inode.map_root = 0;
                    inode.blocks = inode.blocks.saturating_sub(1);
                }
                tx.put_inode(ino, &inode)?;
                Ok((inode, done))
            });
            if let Some((inode, true)) = budget.settle(result, steps)? {
                return Ok(inode);
            }
        }
    }

    /// Where file blocks `file_block..file_block + len` of `ino` live (the
    /// first run of one kind).
    /// Blocks with failed memory are reported like the others (for
    /// `SEEK_DATA` and `FIEMAP`); [`Self::map_data`] is for reaching data.
    pub fn map_read(&self, ino: u64, file_block: u64, len: u64) -> Result<Mapping, Error> {
        let inode = self.inode(ino)?;
        map_in(
            &self.sb,
            &self.committed(),
            ino,
            &inode,
            file_block,
            len.max(1),
        )
    }

    /// [`Self::map_read`] for reading or mapping the data: `Poisoned` if
    /// the first block holds failed memory (`poison`), else the run ends
    /// before the first block that does.
    pub fn map_data(&self, ino: u64, file_block: u64, len: u64) -> Result<Mapping, Error> {
        self.healthy_part(self.map_read(ino, file_block, len)?)
    }

    /// `mapping` up to its first poisoned block; `Poisoned` if that is the
    /// first one.
    fn healthy_part(&self, mut mapping: Mapping) -> Result<Mapping, Error> {
        if mapping.kind == MapKind::Hole {
            return Ok(mapping);
        }
        match self.poisoned.first_in(mapping.physical, mapping.len) {
            None => Ok(mapping),
            Some(bad) if bad == mapping.physical => Err(Error::Poisoned),
            Some(bad) => {
                mapping.len = bad - mapping.physical;
                Ok(mapping)
            }
        }
    }

    /// Records that device blocks `start..start + len` hold failed memory:
    /// from now on they are never read or mapped for a file, nor handed
    /// out once free. `NoSpace` when the list of poisoned blocks is full
    /// (the caller shuts the volume down: the device is failing).
    ///
    /// A failure in the zero chunk retires it for the rest of the mount: its
    /// whole 2 MiB joins the list, so that the allocator never hands out
    /// blocks that mappings of it may still show (the caller removes them),
    /// and [`Self::reserve_zero_chunk`] picks another.
    pub fn poison(&mut self, start: u64, len: u64) -> Result<(), Error> {
        if !self.poisoned.add(start, len) {
            return Err(Error::NoSpace);
        }
        if let Some(chunk) = self.zero_chunk {
            let first = chunk * CHUNK_BLOCKS;
            if start < first + CHUNK_BLOCKS && first < start.saturating_add(len) {
                if !self.poisoned.add(first, CHUNK_BLOCKS) {
                    // Stays hidden as the zero chunk instead, unused.
                    return Err(Error::NoSpace);
                }
                self.zero_chunk = None;
            }
        }
        Ok(())
    }

    /// Makes file blocks `file_block..` writable in place: allocates holes
    /// (2 MiB-aligned where the range allows), converts unwritten blocks,
    /// and copies shared blocks or reports them (`shared`). New or
    /// converted blocks are zeroed and durable before the mapping is
    /// committed. May map fewer blocks than asked.
    pub fn map_write(
        &mut self,
        ino: u64,
        file_block: u64,
        len: u64,
        shared: SharedWrite,
    ) -> Result<Mapping, Error> {
        let len = len.clamp(1, MAX_ALLOCATION);
        if file_block.saturating_add(len) > MAX_FILE_BLOCKS {
            return Err(Error::TooBig);
        }
        let current = self.map_data(ino, file_block, len)?;
        if current.kind == MapKind::Data && !current.shared {
            return Ok(current);
        }
        if current.shared && shared == SharedWrite::Report {
            return Ok(current);
        }
        // Never past a poisoned block (`map_data` stopped before it).
        let len = current.len;
        self.transact(|tx| {
            let mut inode = tx.inode(ino)?;
            if inode.file_type() != Some(FileType::Regular) {
                return Err(Error::Invalid);
            }
            let mapping = map_in(&tx.sb, &TxNodes(tx), ino, &inode, file_block, len)?;
            let mut tree = extent_tree(tx, &mut inode, ino)?;
            let result = match mapping.kind {
                MapKind::Data if !mapping.shared => mapping,
                MapKind::Data | MapKind::Unwritten if mapping.shared => {
                    // Shared: copy to new blocks (zeros for unwritten
                    // ones), then point the range at them; the old blocks
                    // lose one reference. Never write a shared block in
                    // place, unwritten or not.
                    let goal = mapping.physical;
                    let extent = tx.allocate_data(mapping.len, goal)?;
                    if mapping.kind == MapKind::Data {
                        copy_blocks(tx, mapping.physical, extent.start, extent.len)?;
                    } else {
                        zero_blocks(tx, extent.start, extent.len)?;
                    }
                    replace_range(
                        tx,
                        &mut tree,
                        &mut inode,
                        ino,
                        file_block,
                        extent.len,
                        extent.start,
                    )?;
                    Mapping {
                        file_block,
                        len: extent.len,
                        physical: extent.start,
                        kind: MapKind::Data,
                        new: true,
                        shared: false,
                        copied: true,
                    }
                }
                MapKind::Hole => {
                    let goal = goal_for(&tree, &TxNodes(tx), &tx.sb.layout, file_block)?;
                    let want = if file_block % CHUNK_BLOCKS == 0 {
                        mapping.len
                    } else {
                        // Stop at the next 2 MiB boundary of the file, so the
                        // following allocation can be chunk-aligned.
                        mapping.len.min(CHUNK_BLOCKS - file_block % CHUNK_BLOCKS)
                    };
                    let extent = tx.allocate_data(want, goal)?;
                    zero_blocks(tx, extent.start, extent.len)?;
                    put_extent(
                        tx,
                        &mut tree,
                        &mut inode,
                        ino,
                        file_block,
                        extent.start,
                        extent.len,
                        0,
                    )?;
                    inode.blocks = inode.blocks.saturating_add(extent.len);
                    Mapping {
                        file_block,
                        len: extent.len,
                        physical: extent.start,
                        kind: MapKind::Data,
                        new: true,
                        shared: false,
                        copied: false,
                    }
                }
                MapKind::Unwritten | MapKind::Data => {
                    zero_blocks(tx, mapping.physical, mapping.len)?;
                    convert_unwritten(tx, &mut tree, &mut inode, ino, &mapping)?;
                    Mapping {
                        kind: MapKind::Data,
                        new: true,
                        ..mapping
                    }
                }
            };
            inode.map_root = tree.root;
            tx.put_inode(ino, &inode)?;
            Ok(result)
        })
    }

    /// After data was written up to byte `end`: size becomes at least
    /// `end`, mtime and ctime `now`.
    pub fn write_done(&mut self, ino: u64, end: u64, now: Timestamp) -> Result<Inode, Error> {
        if end > MAX_FILE_SIZE {
            return Err(Error::TooBig);
        }
        self.modified(ino, Some(end), now)
    }

    /// Calls `visit` for every owner of device blocks `start..start + len`
    /// (clipped to the range) until it returns `false`: the inodes and file
    /// blocks of data — every sharer of a reflinked block — or the
    /// metadata structure. Free blocks have no owner.
    ///
    /// Cost: where the range is not shared, one lookup of the record
    /// before it plus the records starting inside it, O(log n + k). Shared
    /// blocks can be covered by records starting up to one largest extent
    /// (128 MiB) earlier, and those are scanned too.
    pub fn owners(
        &self,
        start: u64,
        len: u64,
        visit: &mut dyn FnMut(&Owned) -> bool,
    ) -> Result<(), Error> {
        self.check_live()?;
        let end = start.checked_add(len).ok_or(Error::Invalid)?;
        let store = self.committed();
        let rmap = Tree::<ReverseMap>::open(self.sb.rmap_root, kinds::OWNER_REVERSE_MAP);
        let mut any_shared = false;
        let mut at = start;
        while at < end {
            let (shared, run) = shared_run(&self.sb, &store, at, end - at)?;
            any_shared |= shared;
            at += run.max(1);
        }
        let from = if any_shared {
            start.saturating_sub(MAX_ALLOCATION - 1)
        } else {
            // The one record that can start before `start` and reach it.
            let mut key = [0u8; 24];
            let mut value = [0u8; 16];
            let found = start > 0
                && rmap
                    .last_at_or_before(
                        &store,
                        &RmapKey {
                            start: start - 1,
                            owner: u64::MAX,
                            offset: u64::MAX,
                        }
                        .encode(),
                        &mut key,
                        &mut value,
                    )
                    .map_err(tree_error)?;
            if found {
                RmapKey::decode(&key).map_or(start, |k| k.start)
            } else {
                start
            }
        };
        let mut damaged = false;
        scan(
            &rmap,
            &store,
            &RmapKey {
                start: from,
                owner: 0,
                offset: 0,
            }
            .encode(),
            &mut |key, value| {
                let (Some(key), Some(record_len), Some(flags)) = (
                    RmapKey::decode(key),
                    value
                        .get(..8)
                        .and_then(|b| b.try_into().ok())
                        .map(u64::from_le_bytes),
                    value
                        .get(8..16)
                        .and_then(|b| b.try_into().ok())
                        .map(u64::from_le_bytes),
                ) else {
                    damaged = true;
                    return ControlFlow::Break(());
                };
                if key.start >= end {
                    return ControlFlow::Break(());
                }
                let record_end = key.start.saturating_add(record_len);
                if record_end <= start {
                    return ControlFlow::Continue(());
                }
                let first = key.start.max(start);
                let metadata = flags & RMAP_METADATA != 0;
                let owned = Owned {
                    start: first,
                    len: record_end.min(end) - first,
                    owner: key.owner,
                    file_block: if metadata {
                        0
                    } else {
                        // A crafted offset must not overflow: the owner's
                        // own lookups bound file blocks.
                        key.offset.saturating_add(first - key.start)
                    },
                    metadata,
                };
                if visit(&owned) {
                    ControlFlow::Continue(())
                } else {
                    ControlFlow::Break(())
                }
            },
        )?;
        if damaged {
            return Err(Error::Corrupt(self.sb.rmap_root, Damage::Record));
        }
        Ok(())
    }

    /// fsck's repair of the free-space maps: each data-area block is marked
    /// in use exactly when the reverse map gives it an owner (a leaked
    /// block is freed; an owned block marked free, which could be handed
    /// out twice, is marked used), the summary is recounted and the
    /// superblock's free-block and inode counts are recomputed. Returns the
    /// blocks whose state changed. The trees themselves must be sound (the
    /// checks run first).
    pub fn repair_space(&mut self) -> Result<u64, Error> {
        let layout = self.sb.layout;
        let mut changed = 0u64;
        let first_chunk = layout.data_start / CHUNK_BLOCKS;
        let chunks = layout.block_count.div_ceil(CHUNK_BLOCKS);
        let mut free_total = 0u64;
        for chunk in first_chunk..chunks {
            let base = chunk * CHUNK_BLOCKS;
            let mut owned = [0u64; (CHUNK_BLOCKS / 64) as usize];
            self.owners(base, CHUNK_BLOCKS, &mut |o| {
                for block in o.start..o.start + o.len {
                    if let Some(word) = owned.get_mut(((block - base) / 64) as usize) {
                        *word |= 1 << ((block - base) % 64);
                    }
                }
                true
            })?;
            // Past the end of the filesystem counts as used.
            for block in base..base + CHUNK_BLOCKS {
                if block >= layout.block_count {
                    if let Some(word) = owned.get_mut(((block - base) / 64) as usize) {
                        *word |= 1 << ((block - base) % 64);
                    }
                }
            }
            let free = CHUNK_BLOCKS - owned.iter().map(|w| u64::from(w.count_ones())).sum::<u64>();
            free_total += free;
            let fixed = self.transact(|tx| {
                let mut fixed = 0u64;
                for (i, &want) in owned.iter().enumerate() {
                    let index = base / 64 + i as u64;
                    let have = tx.word(index)?;
                    if have != want {
                        fixed += u64::from((have ^ want).count_ones());
                        tx.set_word(index, want)?;
                    }
                }
                if u64::from(tx.chunk_free(chunk)?) != free {
                    tx.set_chunk_free(chunk, free as u32)?;
                }
                Ok(fixed)
            })?;
            changed += fixed;
        }
        let tree = Tree::<InodeChunks>::open(self.sb.inode_tree_root, OWNER_INODE_CHUNKS);
        let mut inodes = 0u64;
        scan(&tree, &self.committed(), &block_key(0), &mut |_, value| {
            inodes += value
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .map_or(0, |b| u64::from(u64::from_le_bytes(b).count_ones()));
            ControlFlow::Continue(())
        })?;
        self.transact(|tx| {
            tx.sb.free_blocks = free_total;
            tx.sb.inode_count = inodes;
            Ok(())
        })?;
        Ok(changed)
    }

    /// Frees `ino` and its blocks if it has no links left (called when the
    /// last user is gone); nothing otherwise.
    pub fn evict(&mut self, ino: u64) -> Result<(), Error> {
        let inode = self.inode(ino)?;
        if inode.nlink != 0 {
            return Ok(());
        }
        if is_dir(&inode) {
            if inode.size != 0 {
                return Err(Error::Corrupt(inode.map_root, Damage::Record));
            }
        } else if inode.map_root != 0 {
            self.trim(ino, 0, true)?;
        }
        self.transact(|tx| {
            let inode = tx.inode(ino)?;
            if inode.map_root != 0 {
                // An empty directory's (or file's) single root node.
                tx.free(space::Extent {
                    start: inode.map_root,
                    len: 1,
                })?;
                tx.rmap_remove(
                    RmapKey {
                        start: inode.map_root,
                        owner: ino,
                        offset: 0,
                    },
                    1,
                )?;
            }
            tx.clear_inode(ino)?;
            free_inode_slot(tx, ino)?;
            tx.sb.inode_count = tx.sb.inode_count.saturating_sub(1);
            Ok(())
        })?;
        self.orphans = self.orphans.saturating_sub(1);
        Ok(())
    }

    /// Frees every inode with no links (left by a crash while they were
    /// open). Runs at mount after an unclean shutdown.
    fn free_orphans(&mut self) -> Result<(), Error> {
        let tree = Tree::<InodeChunks>::open(self.sb.inode_tree_root, OWNER_INODE_CHUNKS);
        let mut from = 0u64;
        loop {
            let mut batch = [0u64; 64];
            let mut count = 0;
            let mut next = None;
            let media = &self.media;
            let mut failure = None;
            scan(
                &tree,
                &Committed::checking_all(media).in_area(&self.sb.layout),
                &block_key(from),
                &mut |key, value| {
                    let chunk = parse_block_key(key).unwrap_or(0);
                    let bits = value
                        .get(..8)
                        .and_then(|b| b.try_into().ok())
                        .map_or(0, u64::from_le_bytes);
                    for slot in 0..INODES_PER_CHUNK {
                        if bits & (1 << slot) == 0 {
                            continue;
                        }
                        let Some(ino) = inode::ino(chunk, slot) else {
                            continue;
                        };
                        match Committed::checking_all(media).inode(ino) {
                            Ok(inode) if inode.nlink == 0 => {
                                if let Some(slot) = batch.get_mut(count) {
                                    *slot = ino;
                                    count += 1;
                                }
                            }
                            Ok(_) => {}
                            Err(e) => failure = Some(e),
                        }
                    }
                    if count + INODES_PER_CHUNK as usize > batch.len() {
                        next = Some(chunk + 1);
                        return ControlFlow::Break(());
                    }
                    ControlFlow::Continue(())
                },
            )?;
            if let Some(e) = failure {
                return Err(e);
            }
            for &ino in batch.iter().take(count) {
                self.evict(ino)?;
            }
            match next {
                Some(n) => from = n,
                None => return Ok(()),
            }
        }
    }
}

/// A transaction as a node reader for directory and extent lookups.
struct TxNodes<'t, 'a, M: Media>(&'t Tx<'a, M>);

impl<M: Media> Nodes for TxNodes<'_, '_, M> {
    type Error = Error;
    fn read(&self, block: u64, offset: usize, buf: &mut [u8]) -> Result<(), Error> {
        self.0.read(block, offset, buf)
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
}

/// The extent tree of file `ino`, created if it has none yet.
fn extent_tree<M: Media>(
    tx: &mut Tx<'_, M>,
    inode: &mut Inode,
    ino: u64,
) -> Result<Tree<Extents>, Error> {
    if inode.map_root != 0 {
        return Ok(Tree::open(inode.map_root, ino));
    }
    let mut store = TreeStore::new(tx, ino);
    let tree = Tree::<Extents>::create(&mut store, ino).map_err(tree_error)?;
    inode.blocks = inode.blocks.saturating_add_signed(store.node_delta);
    inode.map_root = tree.root;
    Ok(tree)
}

/// Directory `dir`, which must still be linked.
fn live_directory<M: Media>(tx: &Tx<'_, M>, dir: u64) -> Result<Inode, Error> {
    let parent = tx.inode(dir)?;
    if !is_dir(&parent) {
        return Err(Error::NotDir);
    }
    if parent.nlink == 0 {
        return Err(Error::NotFound);
    }
    Ok(parent)
}

/// Removes the entry `key` from directory `dir` (tree and block count).
fn remove_entry<M: Media>(tx: &mut Tx<'_, M>, dir: u64, key: &[u8; 12]) -> Result<(), Error> {
    let mut parent = tx.inode(dir)?;
    let mut tree = Tree::<Directory>::open(parent.map_root, dir);
    let mut store = TreeStore::new(tx, dir);
    if !tree.remove(&mut store, key).map_err(tree_error)? {
        return Err(Error::Corrupt(parent.map_root, Damage::Record));
    }
    let delta = store.node_delta;
    parent.map_root = tree.root;
    parent.blocks = parent.blocks.saturating_add_signed(delta);
    tx.put_inode(dir, &parent)
}

/// Takes a free inode slot, from a chunk with room (searching from
/// `hint`) or a new chunk. Returns the inode and its chunk.
fn allocate_inode<M: Media>(tx: &mut Tx<'_, M>, hint: u64) -> Result<(u64, u64), Error> {
    let mut tree = Tree::<InodeChunks>::open(tx.sb.inode_tree_root, OWNER_INODE_CHUNKS);
    let mut found = None;
    for from in [hint, 0] {
        scan(&tree, &TxNodes(tx), &block_key(from), &mut |key, value| {
            let bits = value
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .map_or(u64::MAX, u64::from_le_bytes);
            if bits != u64::MAX {
                found = parse_block_key(key).map(|chunk| (chunk, bits));
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        })?;
        if found.is_some() {
            break;
        }
    }
    let (chunk, bits) = match found {
        Some(found) => found,
        None => (new_inode_chunk(tx)?, 0),
    };
    let slot = u64::from(bits.trailing_ones());
    let ino = inode::ino(chunk, slot).ok_or(Error::Corrupt(chunk, Damage::Record))?;
    // The slot must really be free: a damaged map must not hand out a
    // live inode twice.
    match tx.inode_record(ino) {
        Err(Error::NotFound) => {}
        Ok(_) => return Err(Error::Corrupt(chunk, Damage::Record)),
        Err(e) => return Err(e),
    }
    let mut value = [0u8; 16];
    value[..8].copy_from_slice(&(bits | 1 << slot).to_le_bytes());
    let mut store = TreeStore::new(tx, OWNER_INODE_CHUNKS);
    tree.insert(&mut store, &block_key(chunk), &value)
        .map_err(tree_error)?;
    tx.sb.inode_tree_root = tree.root;
    Ok((ino, chunk))
}

/// Allocates and zeroes a new inode chunk (four contiguous blocks).
fn new_inode_chunk<M: Media>(tx: &mut Tx<'_, M>) -> Result<u64, Error> {
    let extent = tx.allocate_contiguous(CHUNK_INODE_BLOCKS, tx.sb.layout.data_start)?;
    zero_blocks(tx, extent.start, extent.len)?;
    tx.rmap_add(
        RmapKey {
            start: extent.start,
            owner: OWNER_INODE_CHUNKS,
            offset: 0,
        },
        CHUNK_INODE_BLOCKS,
        RMAP_METADATA,
    )?;
    Ok(extent.start)
}

/// Gives inode `ino`'s slot back; an emptied chunk (other than the root's)
/// is freed.
fn free_inode_slot<M: Media>(tx: &mut Tx<'_, M>, ino: u64) -> Result<(), Error> {
    let location = inode::location(ino).ok_or(Error::NotFound)?;
    let chunk = location.chunk;
    let mut tree = Tree::<InodeChunks>::open(tx.sb.inode_tree_root, OWNER_INODE_CHUNKS);
    let mut value = [0u8; 16];
    if !tree
        .get(&TxNodes(tx), &block_key(chunk), &mut value)
        .map_err(tree_error)?
    {
        return Err(Error::Corrupt(chunk, Damage::Record));
    }
    let bits = u64::from_le_bytes(value[..8].try_into().map_err(|_| Error::Invalid)?);
    let remaining = bits & !(1 << location.slot);
    let root_chunk = inode::location(tx.sb.root_ino).map(|l| l.chunk);
    let mut store = TreeStore::new(tx, OWNER_INODE_CHUNKS);
    if remaining == 0 && root_chunk != Some(chunk) {
        if !tree
            .remove(&mut store, &block_key(chunk))
            .map_err(tree_error)?
        {
            return Err(Error::Corrupt(tree.root, Damage::Record));
        }
        tx.sb.inode_tree_root = tree.root;
        tx.free(space::Extent {
            start: chunk,
            len: CHUNK_INODE_BLOCKS,
        })?;
        tx.rmap_remove(
            RmapKey {
                start: chunk,
                owner: OWNER_INODE_CHUNKS,
                offset: 0,
            },
            CHUNK_INODE_BLOCKS,
        )?;
    } else {
        value[..8].copy_from_slice(&remaining.to_le_bytes());
        tree.insert(&mut store, &block_key(chunk), &value)
            .map_err(tree_error)?;
        tx.sb.inode_tree_root = tree.root;
    }
    Ok(())
}

/// The mapping of `file_block..+len` of `inode` as `store` sees it.
fn map_in<S: Nodes<Error = Error>>(
    sb: &Superblock,
    store: &S,
    ino: u64,
    inode: &Inode,
    file_block: u64,
    len: u64,
) -> Result<Mapping, Error> {
    let hole = |len| Mapping {
        file_block,
        len,
        physical: 0,
        kind: MapKind::Hole,
        new: false,
        shared: false,
        copied: false,
    };
    if inode.file_type() != Some(FileType::Regular) {
        return Err(if is_dir(inode) {
            Error::IsDir
        } else {
            Error::Invalid
        });
    }
    if inode.map_root == 0 {
        return Ok(hole(len));
    }
    let tree = Tree::<Extents>::open(inode.map_root, ino);
    match find_extent(&tree, store, &sb.layout, file_block)? {
        // The next extent starts after `file_block`, or the tree's order
        // is broken (a zero-length hole would loop its callers forever).
        Lookup::Hole(Some(next)) if next <= file_block => {
            Err(Error::Corrupt(tree.root, Damage::Record))
        }
        Lookup::Hole(next) => Ok(hole(next.map_or(len, |n| len.min(n - file_block)))),
        Lookup::Extent(start, extent) => {
            let skip = file_block - start;
            let physical = extent.physical + skip;
            let run = len.min(u64::from(extent.len) - skip);
            let end = physical.checked_add(run).ok_or(Error::Invalid)?;
            if physical < sb.layout.data_start || end > sb.layout.block_count {
                return Err(Error::Corrupt(tree.root, Damage::Record));
            }
            let (shared, run) = shared_run(sb, store, physical, run)?;
            Ok(Mapping {
                file_block,
                len: run,
                physical,
                kind: if extent.flags & EXTENT_UNWRITTEN != 0 {
                    MapKind::Unwritten
                } else {
                    MapKind::Data
                },
                new: false,
                shared,
                copied: false,
            })
        }
    }
}

/// Where to allocate for file block `file_block`: right after the blocks
/// of the extent before it, so that sequential writes stay contiguous.
fn goal_for<S: Nodes<Error = Error>>(
    tree: &Tree<Extents>,
    store: &S,
    layout: &Layout,
    file_block: u64,
) -> Result<u64, Error> {
    let mut key = [0u8; 8];
    let mut value = [0u8; 16];
    if file_block > 0
        && tree
            .last_at_or_before(store, &block_key(file_block - 1), &mut key, &mut value)
            .map_err(tree_error)?
    {
        let start = parse_block_key(&key).ok_or(Error::Invalid)?;
        if let Ok(extent) = valid_extent(tree, layout, start, &value) {
            // A goal past the device is clamped by the allocator.
            return Ok(extent.physical.saturating_add(file_block - start));
        }
    }
    Ok(layout.data_start)
}

/// Zeroes blocks on the device before the transaction that maps them
/// commits (they are free in the committed state, so nothing sees them).
fn zero_blocks<M: Media>(tx: &mut Tx<'_, M>, start: u64, len: u64) -> Result<(), Error> {
    if !tx.media().zero(start << BLOCK_SHIFT, len << BLOCK_SHIFT) {
        return Err(Error::Corrupt(start, Damage::Address));
    }
    tx.wrote_direct = true;
    Ok(())
}

/// Copies blocks on the device (copy-on-write of shared data): `Poisoned`
/// if the source's memory failed (found by the copy, which survives it).
fn copy_blocks<M: Media>(tx: &mut Tx<'_, M>, from: u64, to: u64, len: u64) -> Result<(), Error> {
    let at = |block: u64| block.checked_mul(BLOCK_SIZE as u64);
    let (Some(source), Some(target), Some(bytes)) = (at(from), at(to), at(len)) else {
        return Err(Error::Corrupt(from, Damage::Address));
    };
    match tx.media().copy(source, target, bytes) {
        Ok(()) => {}
        Err(MediaFault::Failed) => return Err(Error::Poisoned),
        Err(MediaFault::OutOfRange) => return Err(Error::Corrupt(from, Damage::Address)),
    }
    tx.wrote_direct = true;
    Ok(())
}

/// Maps file blocks `file_block..+len` to `physical..` in `tree`, merging
/// with the extent before when both are contiguous (sequential writes make
/// one extent, not one per write), and records the reverse map.
#[allow(clippy::too_many_arguments)]
fn put_extent<M: Media>(
    tx: &mut Tx<'_, M>,
    tree: &mut Tree<Extents>,
    inode: &mut Inode,
    ino: u64,
    file_block: u64,
    physical: u64,
    len: u64,
    flags: u32,
) -> Result<(), Error> {
    let mut key = [0u8; 8];
    let mut value = [0u8; 16];
    let mut start = file_block;
    let mut extent = Extent {
        physical,
        len: u32::try_from(len).map_err(|_| Error::Invalid)?,
        flags,
    };
    if file_block > 0
        && tree
            .last_at_or_before(
                &TxNodes(tx),
                &block_key(file_block - 1),
                &mut key,
                &mut value,
            )
            .map_err(tree_error)?
    {
        let before_start = parse_block_key(&key).ok_or(Error::Invalid)?;
        if let Ok(before) = valid_extent(tree, &tx.sb.layout, before_start, &value) {
            let before_len = u64::from(before.len);
            let merged = before_len + len;
            if before_start + before_len == file_block
                && before.physical + before_len == physical
                && before.flags == flags
                && merged <= MAX_ALLOCATION
            {
                // Only unshared neighbours merge: one extent, one owner.
                let (shared, _) = shared_run(&tx.sb, &TxNodes(tx), before.physical, before_len)?;
                if !shared {
                    start = before_start;
                    extent = Extent {
                        physical: before.physical,
                        len: merged as u32,
                        flags,
                    };
                }
            }
        }
    }
    let mut store = TreeStore::new(tx, ino);
    tree.insert(&mut store, &block_key(start), &extent.encode())
        .map_err(tree_error)?;
    inode.blocks = inode.blocks.saturating_add_signed(store.node_delta);
    tx.rmap_add(
        RmapKey {
            start: extent.physical,
            owner: ino,
            offset: start,
        },
        u64::from(extent.len),
        0,
    )
}

/// Clears the unwritten flag of `mapping`'s range, splitting its extent.
fn convert_unwritten<M: Media>(
    tx: &mut Tx<'_, M>,
    tree: &mut Tree<Extents>,
    inode: &mut Inode,
    ino: u64,
    mapping: &Mapping,
) -> Result<(), Error> {
    let Lookup::Extent(start, extent) =
        find_extent(tree, &TxNodes(tx), &tx.sb.layout, mapping.file_block)?
    else {
        return Err(Error::Invalid);
    };
    split_out(
        tx,
        tree,
        inode,
        ino,
        start,
        extent,
        mapping.file_block,
        mapping.len,
    )?;
    put_extent(
        tx,
        tree,
        inode,
        ino,
        mapping.file_block,
        mapping.physical,
        mapping.len,
        0,
    )
}

/// Removes file blocks `from..from + len` from extent (`start`, `extent`),
/// keeping the pieces before and after (with their reverse-map records).
/// The removed blocks' own reverse-map record is removed; their space is
/// the caller's to keep or release.
#[allow(clippy::too_many_arguments)]
fn split_out<M: Media>(
    tx: &mut Tx<'_, M>,
    tree: &mut Tree<Extents>,
    inode: &mut Inode,
    ino: u64,
    start: u64,
    extent: Extent,
    from: u64,
    len: u64,
) -> Result<(), Error> {
    let end = start + u64::from(extent.len);
    if from < start || from + len > end {
        return Err(Error::Invalid);
    }
    tx.rmap_remove(
        RmapKey {
            start: extent.physical,
            owner: ino,
            offset: start,
        },
        u64::from(extent.len),
    )?;
    let mut store = TreeStore::new(tx, ino);
    if !tree
        .remove(&mut store, &block_key(start))
        .map_err(tree_error)?
    {
        return Err(Error::Corrupt(tree.root, Damage::Record));
    }
    let pieces = [
        (start, extent.physical, from - start),
        (
            from + len,
            extent.physical + (from + len - start),
            end - (from + len),
        ),
    ];
    for (piece_start, physical, piece_len) in pieces {
        if piece_len == 0 {
            continue;
        }
        let piece = Extent {
            physical,
            len: piece_len as u32,
            flags: extent.flags,
        };
        tree.insert(&mut store, &block_key(piece_start), &piece.encode())
            .map_err(tree_error)?;
    }
    let delta = store.node_delta;
    inode.blocks = inode.blocks.saturating_add_signed(delta);
    for (piece_start, physical, piece_len) in pieces {
        if piece_len > 0 {
            tx.rmap_add(
                RmapKey {
                    start: physical,
                    owner: ino,
                    offset: piece_start,
                },
                piece_len,
                0,
            )?;
        }
    }
    Ok(())
}

/// Points file blocks `file_block..+len` (inside one shared extent) at new
/// blocks `physical..`; the old blocks lose a reference.
#[allow(clippy::too_many_arguments)]
fn replace_range<M: Media>(
    tx: &mut Tx<'_, M>,
    tree: &mut Tree<Extents>,
    inode: &mut Inode,
    ino: u64,
    file_block: u64,
    len: u64,
    physical: u64,
) -> Result<(), Error> {
    let Lookup::Extent(start, extent) = find_extent(tree, &TxNodes(tx), &tx.sb.layout, file_block)?
    else {
        return Err(Error::Invalid);
    };
    let old = extent.physical + (file_block - start);
    split_out(tx, tree, inode, ino, start, extent, file_block, len)?;
    release(tx, old, len)?;
    put_extent(tx, tree, inode, ino, file_block, physical, len, 0)
}

/// Drops one reference to device blocks `start..start + len`: shared
/// blocks lose a count, the rest are freed.
fn release<M: Media>(tx: &mut Tx<'_, M>, start: u64, len: u64) -> Result<(), Error> {
    let mut at = start;
    let end = start + len;
    while at < end {
        let (shared, run) = shared_run(&tx.sb, &TxNodes(tx), at, end - at)?;
        if shared {
            adjust_refcount(tx, at, run, -1)?;
        } else {
            tx.free(space::Extent {
                start: at,
                len: run,
            })?;
        }
        at += run;
    }
    Ok(())
}

/// Adds `delta` to the reference count of blocks `start..start + len`,
/// which lie inside one refcount record or none (count 1). Records are
/// split where the range ends inside them; a count reaching 1 drops the
/// record.
fn adjust_refcount<M: Media>(
    tx: &mut Tx<'_, M>,
    start: u64,
    len: u64,
    delta: i64,
) -> Result<(), Error> {
    let mut tree = Tree::<RefCounts>::open(tx.sb.refcount_root, kinds::OWNER_REFCOUNTS);
    let damaged = Error::Corrupt(tx.sb.refcount_root, Damage::Record);
    let end = start.checked_add(len).ok_or(damaged)?;
    let (record_start, record_end, count) =
        match refcount_at_or_before(&tx.sb, &TxNodes(tx), start)? {
            Some(record) if start < record.end => (record.start, record.end, record.count),
            _ => (start, end, 1),
        };
    if end > record_end {
        return Err(damaged);
    }
    let new_count = count
        .checked_add_signed(delta)
        .ok_or(Error::Corrupt(tx.sb.refcount_root, Damage::Record))?;
    let mut store = TreeStore::new(tx, kinds::OWNER_REFCOUNTS);
    if count >= 2
        && !tree
            .remove(&mut store, &block_key(record_start))
            .map_err(tree_error)?
    {
        return Err(damaged);
    }
    // Inside the record: record_start <= start < end <= record_end.
    let pieces = [
        (record_start, start - record_start, count),
        (start, len, new_count),
        (end, record_end - end, count),
    ];
    for (piece_start, piece_len, piece_count) in pieces {
        if piece_len == 0 || piece_count < 2 {
            continue;
        }
        let mut value = [0u8; 16];
        value[..8].copy_from_slice(&piece_len.to_le_bytes());
        value[8..].copy_from_slice(&piece_count.to_le_bytes());
        tree.insert(&mut store, &block_key(piece_start), &value)
            .map_err(tree_error)?;
    }
    tx.sb.refcount_root = tree.root;
    Ok(())
}
