// SPDX-License-Identifier: GPL-2.0

//! The oxdax filesystem, kernel side: the VFS operation tables of
//! [`crate::sys::fs::Operations`], each implemented by the file of its
//! concern and carried out by the pure-logic volume, with file data moved
//! directly between user buffers and persistent memory (no page cache).
//!
//! | File             | Table                | What                               |
//! |------------------|----------------------|------------------------------------|
//! | `super_block.rs` | `FileSystem`         | mount, remount, statfs, inodes     |
//! | `dir.rs`         | `DirOperations`      | lookup, create, link, rename, readdir |
//! | `attr.rs`        | `AttrOperations`     | setattr, truncate, times           |
//! | `io.rs`          | `FileOperations`     | read, write, fsync                 |
//! | `extents.rs`     | `ExtentOperations`   | fallocate, SEEK_DATA, reflink, FIEMAP |
//! | `mmap.rs`        | `MmapOperations`, `IomapOperations` | mmap, faults, writeback |
//! | `failure.rs`     | `HolderOperations`   | memory failures (`notify_failure`) |
//!
//! `info.rs` holds the mounted filesystem's state, which they share;
//! `media.rs` the device as the volume sees it; `compact.rs` the
//! background job that keeps free space in whole 2 MiB chunks.
//!
//! Locking (Documentation/oxdax/filesystem.rst): VFS locks (i_rwsem) are
//! taken by the callers, then a DAX read section, then the volume lock
//! (a mutex; `Info::call` for lookups, `Info::call_mut` for changes), held
//! only for one `Volume` call; nothing calls back into the VFS or touches user memory with it
//! held.

mod attr;
mod compact;
mod dir;
mod extents;
mod failure;
mod info;
mod io;
mod media;
mod mmap;
mod mutex_stats;
mod super_block;

pub(crate) use self::info::OxdaxFs;
