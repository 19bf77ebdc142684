// SPDX-License-Identifier: GPL-2.0

//! A mounted filesystem: the operations.

use super::{
    AttrChange, DirEntry, Error, Mapping, Media, MountError, MountReport, NewInode, RenameFlags,
    Renamed, Scratch, StatFs, Unlinked,
};
use crate::logic::format::{
    inode::{Inode, Timestamp},
    superblock::Superblock,
};

/// Readdir positions 0 and 1 are `.` and `..` (the VFS emits them); the
/// first entry's position is at least this.
pub const FIRST_POSITION: u64 = 2;
/// The position past the last entry.
pub const END_POSITION: u64 = i64::MAX as u64;

/// A mounted filesystem.
pub struct Volume<M: Media, S: Scratch> {
    media: M,
    scratch: S,
    sb: Superblock,
}

impl<M: Media, S: Scratch> Volume<M, S> {
    /// Mounts the filesystem on `media`: validates the superblock (primary,
    /// else backup), replays the journal, checks the root. Read-only mounts
    /// replay too (like ext4 without `noload`) unless the device itself is
    /// read-only, in which case a dirty journal refuses the mount.
    pub fn mount(media: M, scratch: S, read_only: bool) -> Result<(Self, MountReport), MountError> {
        todo!()
    }
    /// Marks the filesystem clean (if writable); every later call fails.
    pub fn unmount(&mut self) {}
    /// After an error the caller cannot recover from: everything fails with
    /// `Error::Shutdown` from now on.
    pub fn shut_down(&mut self) {}
    /// Whether `shut_down` happened.
    pub fn is_shut_down(&self) -> bool { false }
    /// The device.
    pub fn media(&self) -> &M { &self.media }
    /// The superblock as last committed.
    pub fn superblock(&self) -> &Superblock { &self.sb }
    /// `statfs` numbers.
    pub fn statfs(&self) -> StatFs { todo!() }
    /// The root directory.
    pub fn root(&self) -> u64 { self.sb.root_ino }
    /// The record of inode `ino` (`NotFound` for a free slot or a number
    /// that cannot be an inode).
    pub fn inode(&self, ino: u64) -> Result<Inode, Error> { todo!() }
    /// The inode `name` refers to in directory `dir`.
    pub fn lookup(&self, dir: u64, name: &[u8]) -> Result<u64, Error> { todo!() }
    /// Creates `name` in `dir`: a regular file, directory, symlink-less
    /// special file, by `new.mode`'s type. Returns the new inode and record.
    pub fn create(&mut self, dir: u64, name: &[u8], new: &NewInode) -> Result<(u64, Inode), Error> { todo!() }
    /// A new name `name` in `dir` for `ino` (not a directory).
    pub fn link(&mut self, ino: u64, dir: u64, name: &[u8], now: Timestamp) -> Result<Inode, Error> { todo!() }
    /// Removes `name` (not a directory: `IsDir`) from `dir`.
    pub fn unlink(&mut self, dir: u64, name: &[u8], now: Timestamp) -> Result<Unlinked, Error> { todo!() }
    /// Removes the empty directory `name` from `dir`.
    pub fn rmdir(&mut self, dir: u64, name: &[u8], now: Timestamp) -> Result<Unlinked, Error> { todo!() }
    /// `renameat2` without `RENAME_EXCHANGE`/`RENAME_WHITEOUT`.
    pub fn rename(
        &mut self,
        old_dir: u64,
        old_name: &[u8],
        new_dir: u64,
        new_name: &[u8],
        flags: RenameFlags,
        now: Timestamp,
    ) -> Result<Renamed, Error> { todo!() }
    /// Calls `emit` for each entry of `dir` at or after `position`, in
    /// position order, until it returns `false`.
    pub fn readdir(
        &self,
        dir: u64,
        position: u64,
        emit: &mut dyn FnMut(&DirEntry<'_>) -> bool,
    ) -> Result<(), Error> { todo!() }
    /// Applies `change` (a size change truncates or extends).
    pub fn set_attr(&mut self, ino: u64, change: &AttrChange) -> Result<Inode, Error> { todo!() }
    /// Where file blocks `file_block..file_block + len` of `ino` live (the
    /// first run of one kind).
    pub fn map_read(&self, ino: u64, file_block: u64, len: u64) -> Result<Mapping, Error> { todo!() }
    /// Makes file blocks `file_block..` writable in place: allocates holes
    /// (2 MiB-aligned where the range allows), converts unwritten blocks,
    /// copies shared blocks; new or converted blocks are zeroed and durable
    /// before the mapping is committed. May map fewer blocks than asked.
    pub fn map_write(&mut self, ino: u64, file_block: u64, len: u64, now: Timestamp) -> Result<Mapping, Error> { todo!() }
    /// After data was written up to byte `end`: size becomes at least
    /// `end`, mtime and ctime `now`.
    pub fn write_done(&mut self, ino: u64, end: u64, now: Timestamp) -> Result<Inode, Error> { todo!() }
    /// Frees `ino` and its blocks if it has no links left (called when the
    /// last user is gone); nothing otherwise.
    pub fn evict(&mut self, ino: u64) -> Result<(), Error> { todo!() }
}
