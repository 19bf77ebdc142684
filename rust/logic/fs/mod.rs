// SPDX-License-Identifier: GPL-2.0

//! The filesystem's metadata operations, with no kernel dependency.
//!
//! A [`Volume`] is a mounted filesystem seen as records on a [`Media`]: it
//! replays the journal at mount and runs every metadata operation (create,
//! link, unlink, rename, attribute changes, block mapping and allocation,
//! truncation, eviction) as one journal transaction that is durable when the
//! call returns. The kernel side calls it with the filesystem's metadata
//! lock held (`&mut self` for anything that writes), and moves file data
//! itself: a [`Mapping`] says where a file range lives on the device.
//!
//! The host tests run the same code against memory, including crashes at
//! every 8-byte store of a transaction.

pub use cache::{
    cache_slots_for, CacheSlots, InodeSlot, LookupSlots, MappingSlot, ShardUse, CACHE_SHARDS,
    INODE_CACHE_SLOTS, MAPPING_CACHE_SLOTS, MAX_CACHE_SLOTS, MIN_CACHE_SLOTS,
};
pub use checked::CHECKED_SLOTS_PER_CACHE_SLOT;
pub use contexts::{Claim, ContextClaims, MAX_TX_CONTEXTS};
use core::{ops::DerefMut, sync::atomic::AtomicU64};
pub use tx::{Journal, SpaceState, TxTimes, RESERVATION_WORDS};

use crate::logic::format::{
    btree::Corruption,
    inode::{Inode, Timestamp},
    BLOCK_SIZE,
};

/// The device as memory: the whole filesystem mapped at once.
///
/// Writes go straight to persistent memory with the cache lines written
/// back; they are durable after the next [`Media::fence`]. Reads copy: the
/// filesystem never holds a reference into the device, so that memory
/// that failed is an error where it is read ([`MediaFault::Failed`]), not
/// a machine check in the kernel.
pub trait Media {
    /// Device size in bytes.
    fn size(&self) -> u64;
    /// Copies the `buf.len()` bytes at byte `offset` into `buf` (in the
    /// kernel with the machine-check-safe copy).
    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), MediaFault>;
    /// Writes `data` at byte `offset` of the device and writes the cache
    /// lines back. `false` if the range is outside the device.
    fn write(&self, offset: u64, data: &[u8]) -> bool;
    /// Zeroes `len` bytes at `offset`, cache lines written back.
    fn zero(&self, offset: u64, len: u64) -> bool;
    /// Copies `len` bytes from byte `from` to byte `to` of the device (file
    /// data, copy-on-write), reading as [`Media::read`] does, the copy's
    /// cache lines written back.
    fn copy(&self, from: u64, to: u64, len: u64) -> Result<(), MediaFault>;
    /// Orders every earlier write before every later one and makes them
    /// durable (a store fence on pmem).
    fn fence(&self);
    /// Called before every transaction: an operation that takes many
    /// (truncating a file of 100,000 extents) lets the kernel run other
    /// tasks in between rather than hog the CPU (`cond_resched`).
    fn relax(&self) {}

    /// A monotonic clock in nanoseconds, for [`TxTimes`]; 0 without one.
    fn now_ns(&self) -> u64 {
        0
    }
}

/// Why the media could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediaFault {
    /// The range is not inside the device.
    OutOfRange,
    /// The memory failed (poison: the copy survived the machine check).
    Failed,
}

/// Working memory a volume needs, handed over at mount so that no
/// operation allocates and none keeps large buffers on the (kernel) stack.
///
/// Two kinds: what every transaction and lookup shares (the caches, the
/// checked nodes, the reservation words), and the buffers of one
/// transaction ([`TxParts`]), which a transaction checks out as a
/// [`Scratch::Context`] for its whole life. A pool of contexts is what
/// lets transactions build side by side once the volume no longer runs
/// them one at a time (Documentation/oxdax/concurrency.rst, stage 3).
pub trait Scratch {
    /// A checked-out transaction context: its buffers are the holder's
    /// alone until it is dropped.
    type Context<'a>: TxContext
    where
        Self: 'a;
    /// Checks out a transaction context, waiting while every one is in use.
    /// A caller holds one at a time: a second checkout by a holder may wait
    /// for itself.
    fn context(&self) -> Self::Context<'_>;
    /// [`CHECKED_SLOTS_PER_CACHE_SLOT`] slots per slot of [`Scratch::cache`],
    /// zero at mount, that remember the tree nodes already checked (shared
    /// by every transaction and lookup).
    fn checked_nodes(&self) -> &[AtomicU64];
    /// The metadata cache ([`cache_slots_for`] slots, empty at mount;
    /// shared by every transaction and lookup).
    fn cache(&self) -> &dyn CacheSlots;
    /// The slots of the volume's caches of inode records and mappings: a
    /// transaction reads the records it has not touched from them.
    fn lookup_slots(&self) -> &dyn LookupSlots;
    /// [`RESERVATION_WORDS`], zero at mount: the chunks kept for open
    /// files' regions (here rather than in the volume, which a mount moves
    /// on the kernel stack). Read and changed only with the space lock
    /// held ([`Scratch::lock_space`]), which orders every access.
    fn reservations(&self) -> &[AtomicU64];
    /// The journal's place behind its lock (`journal.reserve` in the lock
    /// order of Documentation/oxdax/concurrency.rst), the default
    /// [`Journal`] until a mount sets it.
    fn journal(&self) -> &dyn Locked<Journal>;
    /// Where transactions wait for their turn to commit.
    fn commit_waits(&self) -> &dyn Waits;
    /// The volume's lists of work for later behind their lock (the misc
    /// lock of the lock order: a spinlock in the module), empty until a
    /// mount.
    fn lists(&self) -> &dyn Locked<VolumeLists>;
    /// The space lock held: see [`Scratch::lock_space`].
    type SpaceGuard<'a>: DerefMut<Target = SpaceState>
    where
        Self: 'a;
    /// Locks the volume's [`SpaceState`] (the default until a mount sets
    /// it) until the guard drops: the space lock of the lock order in
    /// Documentation/oxdax/concurrency.rst, which a transaction takes at
    /// its first touch of space and holds until its publication.
    fn lock_space(&self) -> Self::SpaceGuard<'_>;
}

/// State of the logic's behind a lock the environment supplies (a kernel
/// mutex in the module, a `std` one on the host): the logic itself has no
/// locks and no `unsafe`.
pub trait Locked<T>: Sync {
    /// Calls `f` with the state, locked for the call.
    fn with_locked(&self, f: &mut dyn FnMut(&mut T));
}

/// Waiting for a condition other threads make true, from the environment.
pub trait Waits: Sync {
    /// Returns once `ready()` is true, checking it again after every
    /// [`Waits::wake_all`] (in the module: spinning a little first, as a
    /// sleep and wake-up under TCG cost more than most waits last).
    fn wait_until(&self, ready: &dyn Fn() -> bool);
    /// Wakes every waiter to check its condition again; called after the
    /// state a condition reads changed.
    fn wake_all(&self);
}

/// A transaction context checked out of a [`Scratch`].
pub trait TxContext {
    /// Its buffers; each must have the length its field documents.
    fn parts(&mut self) -> TxParts<'_>;
}

/// The buffers of one transaction.
pub struct TxParts<'a> {
    /// `TX_MAX_BLOCKS` shadow copies of the blocks a transaction changes.
    pub shadows: &'a mut [[u8; BLOCK_SIZE]],
    /// `TX_MAX_BLOCKS` copies of those blocks as they were before the
    /// transaction (what its commit compares the shadows with).
    pub originals: &'a mut [[u8; BLOCK_SIZE]],
    /// `TX_MAX_BLOCKS` block numbers of those shadows.
    pub tags: &'a mut [u64],
    /// `TX_MAX_BLOCKS` masks of the 64-byte lines each shadow may have
    /// changed (what its commit diffs).
    pub lines: &'a mut [u64],
    /// `TX_LOG_BYTES` to build a transaction's log bytes in.
    pub log: &'a mut [u8],
    /// `DEFERRED_WORDS` for the frees and reverse-map changes a transaction
    /// defers to its commit.
    pub deferred: &'a mut [u64],
    /// One block to encode whole superblocks and journal headers in.
    pub spare: &'a mut [u8; BLOCK_SIZE],
}

/// Blocks a transaction may change; a larger operation is split into
/// several transactions, each leaving the filesystem consistent.
pub const TX_MAX_BLOCKS: usize = 128;
/// Bytes of the log buffer: enough for `TX_MAX_BLOCKS` whole blocks.
pub const TX_LOG_BYTES: usize = TX_MAX_BLOCKS * (BLOCK_SIZE + 16) + 64;
/// Deferred frees and reverse-map changes a transaction can hold.
pub const MAX_DEFERRED: usize = 256;
/// Words of deferred-work memory: two per free, six per change.
pub const DEFERRED_WORDS: usize = MAX_DEFERRED * (2 + 6);

/// Why an operation failed. Each maps to one errno; none leaves a partial
/// change behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// `ENOENT`.
    NotFound,
    /// `EEXIST`.
    Exists,
    /// `ENOTEMPTY`.
    NotEmpty,
    /// `ENOTDIR`.
    NotDir,
    /// `EISDIR`.
    IsDir,
    /// `ENOSPC`: no free block or inode.
    NoSpace,
    /// `ENAMETOOLONG`.
    NameTooLong,
    /// `EINVAL`: a bad name, mode, range or flag combination.
    Invalid,
    /// `EMLINK`.
    TooManyLinks,
    /// `EFBIG`: past the largest file size.
    TooBig,
    /// `EROFS`: the volume is read-only.
    ReadOnly,
    /// `EIO`: a damaged structure (its block, what is wrong).
    Corrupt(u64, Damage),
    /// `EIO`: the volume was shut down after an earlier error.
    Shutdown,
    /// The block holds failed memory (`EIO` for reads and writes, a
    /// machine-check `SIGBUS` for a fault).
    Poisoned,
}

/// What is wrong with a damaged block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Damage {
    /// A tree node failed validation.
    Node(Corruption),
    /// An inode record failed validation.
    Inode,
    /// A record inside a valid node does not make sense (an extent past
    /// the device, a directory entry naming a free inode, ...).
    Record,
    /// The free-space maps disagree with a record.
    Space,
    /// A block number outside the device.
    Address,
    /// The memory holding it failed (a machine check survived by the copy).
    Unreadable,
}

/// Why a mount was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MountError {
    /// Neither superblock is valid (magic, checksum or layout).
    NoFilesystem,
    /// A major version or incompatible feature this code does not know.
    Unsupported,
    /// A read-write mount of a filesystem with a read-only-compatible
    /// feature this code does not know (it may mount read-only).
    ReadOnlyFeatures,
    /// The superblock describes more blocks than the device has.
    TooSmall,
    /// The journal header is damaged.
    Journal,
    /// The root inode or a filesystem-wide tree is damaged.
    Corrupt(u64, Damage),
}

/// What a mount found, for its one log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MountReport {
    /// The primary superblock was bad and the backup was used.
    pub used_backup: bool,
    /// A committed transaction was found in the journal and applied (the
    /// last one; see `journal::replay_last`).
    pub recovered: bool,
    /// A crash had torn the journal header while it was rewritten: nothing
    /// needed replaying, and the log restarted; the header is written
    /// whole before the next transaction (`JournalHeader::recover`).
    pub torn_journal_header: bool,
    /// The filesystem was not unmounted cleanly.
    pub was_dirty: bool,
}

/// `statfs` numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatFs {
    /// Blocks of the filesystem.
    pub blocks: u64,
    /// Free blocks.
    pub free_blocks: u64,
    /// Inodes in use plus those that free space could still hold.
    pub files: u64,
    /// Inodes that free space could still hold.
    pub free_files: u64,
}

/// A new inode's attributes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewInode {
    /// Type and permission bits (`S_IFREG`, `S_IFDIR`, ... and `0o7777`).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Device number (device files).
    pub rdev: u32,
    /// Its birth time, also the parent directory's new mtime and ctime.
    pub now: Timestamp,
}

/// An attribute change (`setattr`); `None` leaves a field alone. Setting
/// `size` truncates or extends (extending leaves a hole).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AttrChange {
    /// Permission bits (the type is kept).
    pub mode: Option<u32>,
    /// Owner.
    pub uid: Option<u32>,
    /// Group.
    pub gid: Option<u32>,
    /// New size.
    pub size: Option<u64>,
    /// Access time.
    pub atime: Option<Timestamp>,
    /// Modification time.
    pub mtime: Option<Timestamp>,
    /// Status change time.
    pub ctime: Option<Timestamp>,
}

/// `renameat2` flags oxdax implements.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RenameFlags {
    /// `RENAME_NOREPLACE`: fail with `Exists` if the target exists.
    pub no_replace: bool,
}

/// What a rename did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Renamed {
    /// The inode that moved, as it is now (its ctime changed).
    pub moved: (u64, Inode),
    /// The inode the target name referred to before, as it is now (one
    /// link fewer; `nlink == 0` means evict it once unused).
    pub replaced: Option<(u64, Inode)>,
}

/// What an unlink or rmdir did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unlinked {
    /// The inode the name referred to, as it is now (`nlink == 0`: evict
    /// it once unused).
    pub ino: u64,
    /// Its record.
    pub inode: Inode,
}

/// How a file range is stored (the answer to an iomap-style query).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapKind {
    /// No blocks: reads as zeros.
    Hole,
    /// Allocated but unwritten: reads as zeros.
    Unwritten,
    /// Written data at `Mapping::physical`.
    Data,
}

/// Where `len` blocks of a file starting at file block `file_block` live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// First file block of the range.
    pub file_block: u64,
    /// Blocks in the range (at least 1, at most what was asked).
    pub len: u64,
    /// Device block of `file_block` (0 for a hole).
    pub physical: u64,
    /// How the range is stored.
    pub kind: MapKind,
    /// The blocks were allocated by this call (and zeroed).
    pub new: bool,
    /// The blocks are shared with another file or range (reflink): a write
    /// must copy them first (`map_write` returns shared blocks only when
    /// asked to report them, [`SharedWrite::Report`]).
    pub shared: bool,
    /// `map_write` copied shared blocks to these new ones: whatever mapped
    /// the old ones for this file (page tables) must go.
    pub copied: bool,
}

/// What `Volume::map_write` does with blocks shared with another file or
/// range (copy-on-write).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SharedWrite {
    /// Copies them to new blocks and maps those (`copied` in the answer).
    Copy,
    /// Answers them as they are (`shared`), changing nothing. The old blocks
    /// may be handed to their other owner (and freed or rewritten there) the
    /// moment the copy commits, so a caller that maps blocks into page
    /// tables removes every mapping of the range first, then asks again
    /// with [`SharedWrite::Copy`].
    Report,
}

/// An owner of device blocks, as the reverse map answers (`Volume::owners`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owned {
    /// First device block of the owned part inside the queried range.
    pub start: u64,
    /// Blocks owned from `start`.
    pub len: u64,
    /// The inode (data, or the nodes of its trees), or a filesystem-wide
    /// structure (`OWNER_*` of `format::kinds`).
    pub owner: u64,
    /// File block of `start` (file data only).
    pub file_block: u64,
    /// Metadata rather than file data.
    pub metadata: bool,
}

/// A directory entry as `readdir` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirEntry<'a> {
    /// The name.
    pub name: &'a [u8],
    /// Its inode.
    pub ino: u64,
    /// `DT_*` type.
    pub dtype: u8,
    /// This entry's position.
    pub position: u64,
    /// Position to resume after this entry (`readdir`'s next `ctx->pos`).
    pub next_cookie: u64,
}

mod cache;
mod check;
mod checked;
mod contexts;
mod poison;
#[cfg(test)]
mod tests;
mod tx;
mod volume;

pub use check::{check_files, Fact, FileReport, Problem};

/// Owner of the reverse map's own nodes.
const OWNER_REVERSE_MAP: u64 = crate::logic::format::kinds::OWNER_REVERSE_MAP;

pub use poison::{Poisoned, MAX_POISONED};
pub use volume::{Volume, VolumeLists, END_POSITION, EVICT_BATCH, FIRST_POSITION};
