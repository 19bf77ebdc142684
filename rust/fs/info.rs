// SPDX-License-Identifier: GPL-2.0

//! A mounted oxdax filesystem's state ([`Info`]: the volume, the fault
//! engine, the DAX device) and what every operation uses to reach it: one
//! volume call at a time inside a DAX read section, errors turned into
//! errnos, records copied into VFS inodes.
//!
//! Locking: [`Info::call`] and [`Info::call_mut`] enter a DAX read section,
//! then take the volume lock (a mutex) for one `Volume` call: `call` for
//! lookups of the committed state (`&Vol`, whose caches have locks of
//! their own, so that lookups can share the volume once the lock allows
//! it), `call_mut` for anything that may change it. Nothing calls back
//! into the VFS or touches user memory with the lock held, and no call
//! nests another.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use kernel::{
    prelude::*,
    str::CStr,
    str::CString,
    sync::{Arc, Mutex},
};

use super::media::{Buffers, PmemMedia};
use super::mutex_stats::{now_ns, MutexStats, Use};
use crate::{
    dax::Engine,
    logic::{
        format::{inode::Inode as Record, space::ChunkCounts, BLOCK_SIZE},
        fs::{Error as FsError, Volume},
        params::FaultEngine,
    },
    sys::{
        dax::FsDax,
        debugfs, errno,
        fs::{background::Background, Attributes, Inode, SuperBlock},
        memory,
        once::SetOnce,
    },
};

/// Block size as a `u64`, for offset arithmetic.
pub(super) const BLOCK: u64 = BLOCK_SIZE as u64;

/// The oxdax filesystem type.
pub(crate) struct OxdaxFs;

/// The allocator's counters (debugfs `oxdax/<device>/`): the data area's
/// 2 MiB chunks free whole, partly used and full
/// (Documentation/oxdax/allocator.rst).
#[derive(Default)]
pub(crate) struct SpaceCounters {
    chunks_free: AtomicU64,
    chunks_partial: AtomicU64,
    chunks_full: AtomicU64,
    /// Blocks compaction moved, and chunks it emptied.
    pub(super) compacted_blocks: AtomicU64,
    pub(super) compacted_chunks: AtomicU64,
    /// Misplaced regions compaction placed whole.
    pub(super) placed_regions: AtomicU64,
}

impl SpaceCounters {
    fn show(&self, counts: ChunkCounts) {
        self.chunks_free.store(counts.free, Ordering::Relaxed);
        self.chunks_partial.store(counts.partial, Ordering::Relaxed);
        self.chunks_full.store(counts.full, Ordering::Relaxed);
    }
}

pub(super) type Vol = Volume<PmemMedia, Buffers>;

/// A mounted oxdax filesystem.
#[pin_data]
pub(crate) struct Info {
    /// The filesystem's metadata, one call at a time (an `rw_semaphore`
    /// that let lookups share it lost to this mutex: concurrency.rst,
    /// stage 2).
    #[pin]
    pub(super) volume: Mutex<Vol>,
    /// The engine's and the allocator's counters in debugfs.
    pub(super) counters_dir: SetOnce<debugfs::CounterDir>,
    /// The allocator's counters, as the last volume call left them.
    pub(super) space: Arc<SpaceCounters>,
    /// Time spent waiting for and holding `volume`, per use.
    pub(super) mutex_stats: Arc<MutexStats>,
    /// `Volume::close_has_work` as the last volume call left it: a close
    /// that finds it false skips its call (`io.rs`, `release`).
    pub(super) close_has_work: AtomicBool,
    /// Page faults, and the mapping file data is copied through (the
    /// volume has its own).
    #[pin]
    pub(super) engine: Engine,
    /// Who serves this mount's page faults.
    pub(super) fault_engine: FaultEngine,
    /// The DAX device: held, and checked alive around every access.
    pub(super) dax: Arc<FsDax>,
    /// Device name, for log lines.
    pub(super) id: CString,
    /// The damaged block last reported, so that every access to one
    /// damaged structure does not log again (its errno is still EIO).
    pub(super) last_damaged: AtomicU64,
    /// Compaction in the background (`compact.rs`).
    pub(super) compactor: Arc<Background<OxdaxFs>>,
}

impl Info {
    /// Device name, for log lines.
    pub(super) fn id(&self) -> &CStr {
        &self.id
    }

    /// Runs one volume lookup, for `purpose`: inside a DAX read section
    /// (the device is alive and stays mapped), under the volume lock, with
    /// the volume read-only. Errors become errnos, damage is logged.
    pub(super) fn call<R>(
        &self,
        purpose: Use,
        op: impl FnOnce(&Vol) -> Result<R, FsError>,
    ) -> Result<R> {
        let Some(_alive) = self.dax.read_lock() else {
            return Err(EIO);
        };
        let asked = now_ns();
        let volume = self.volume.lock();
        let taken = now_ns();
        let result = op(&volume);
        drop(volume);
        self.mutex_stats.record(purpose, asked, taken, now_ns());
        result.map_err(|e| self.errno(e))
    }

    /// Runs one volume operation that may change the filesystem, for
    /// `purpose`: as [`Self::call`], with the volume writable; then shows
    /// the counters it may have changed.
    pub(super) fn call_mut<R>(
        &self,
        purpose: Use,
        op: impl FnOnce(&mut Vol) -> Result<R, FsError>,
    ) -> Result<R> {
        let Some(_alive) = self.dax.read_lock() else {
            return Err(EIO);
        };
        let asked = now_ns();
        let mut volume = self.volume.lock();
        let taken = now_ns();
        let result = op(&mut volume);
        self.space.show(volume.chunk_counts());
        self.mutex_stats.show(volume.tx_times());
        self.close_has_work
            .store(volume.close_has_work(), Ordering::Release);
        drop(volume);
        self.mutex_stats.record(purpose, asked, taken, now_ns());
        result.map_err(|e| self.errno(e))
    }

    /// `Ok` if every operation so far is durable: each one is when it
    /// returns, unless the filesystem shut down (then EIO).
    pub(super) fn durable(&self) -> Result {
        self.call(Use::Other, |v| {
            if v.is_shut_down() {
                Err(FsError::Shutdown)
            } else {
                Ok(())
            }
        })
    }

    /// Publishes the engine's and the allocator's counters in debugfs
    /// (`oxdax/<device>/`); a mount without them still works.
    pub(super) fn publish_counters(&self) {
        let mut dir = debugfs::CounterDir::new(&self.id);
        let files: [debugfs::CounterFile<'_, SpaceCounters>; 6] = [
            (kernel::c_str!("chunks_free"), |c| &c.chunks_free),
            (kernel::c_str!("chunks_partial"), |c| &c.chunks_partial),
            (kernel::c_str!("chunks_full"), |c| &c.chunks_full),
            (kernel::c_str!("compacted_blocks"), |c| &c.compacted_blocks),
            (kernel::c_str!("compacted_chunks"), |c| &c.compacted_chunks),
            (kernel::c_str!("placed_regions"), |c| &c.placed_regions),
        ];
        let published = self
            .engine
            .publish(&mut dir)
            .and_then(|()| dir.add(self.space.clone(), &files))
            .and_then(|()| dir.add(self.mutex_stats.clone(), &MutexStats::use_files()))
            .and_then(|()| dir.add(self.mutex_stats.clone(), &MutexStats::tx_files()));
        if published.is_err() {
            pr_warn!("{}: counters not in debugfs\n", self.id());
        }
        let _ = self.counters_dir.set(dir);
    }

    /// Gives the fault engine the volume's zero chunk (writable mounts).
    pub(super) fn reserve_zero_chunk(&self) {
        if let Ok(Some(block)) = self.call_mut(Use::Other, |v| Ok(v.reserve_zero_chunk())) {
            self.engine.set_zero_chunk(block * BLOCK);
        }
    }

    /// The errno of a volume error; damage gets a (rate-limited) line.
    pub(super) fn errno(&self, e: FsError) -> Error {
        match e {
            FsError::NotFound => ENOENT,
            FsError::Exists => EEXIST,
            FsError::NotEmpty => errno::enotempty(),
            FsError::NotDir => ENOTDIR,
            FsError::IsDir => EISDIR,
            FsError::NoSpace => ENOSPC,
            FsError::NameTooLong => errno::enametoolong(),
            FsError::Invalid => EINVAL,
            FsError::TooManyLinks => EMLINK,
            FsError::TooBig => EFBIG,
            FsError::ReadOnly => EROFS,
            FsError::Shutdown => EIO,
            // Reads and writes turn it into EIO; faults into SIGBUS
            // BUS_MCEERR_AR.
            FsError::Poisoned => errno::ehwpoison(),
            FsError::Corrupt(block, what) => {
                let first = self.last_damaged.swap(block, Ordering::Relaxed) != block;
                if first && memory::log_ratelimit() {
                    pr_err!(
                        "{}: damaged metadata in block {}: {:?}\n",
                        self.id(),
                        block,
                        what
                    );
                }
                EIO
            }
        }
    }
}

/// Runs `op`, a change to directory `dir`, then shows the directory's new
/// record (size, link count, times) in its VFS inode, with the volume
/// lock still held (see [`refresh`]).
pub(super) fn in_directory<R>(
    info: &Info,
    dir: &Inode<OxdaxFs>,
    op: impl FnOnce(&mut Vol) -> Result<R, FsError>,
) -> Result<R> {
    info.call_mut(Use::Namespace, |v| {
        let result = op(v)?;
        if let Ok(record) = v.inode(dir.ino()) {
            refresh(v, dir, &record);
        }
        Ok(result)
    })
}

/// The info of a live super block.
pub(super) fn info(sb: &SuperBlock<OxdaxFs>) -> Result<&Info> {
    sb.info().ok_or(EIO)
}

/// The info of an inode's super block.
pub(super) fn inode_info(inode: &Inode<OxdaxFs>) -> Result<&Info> {
    inode.fs_info().ok_or(EIO)
}

/// What the VFS inode shows of a record.
pub(super) fn attributes(record: &Record) -> Attributes {
    Attributes {
        mode: record.mode,
        uid: record.uid,
        gid: record.gid,
        nlink: record.nlink,
        size: record.size,
        allocated: record.blocks.saturating_mul(BLOCK),
        atime: record.atime,
        mtime: record.mtime,
        ctime: record.ctime,
        generation: record.generation,
        rdev: record.rdev,
        btime: record.btime,
    }
}

/// Copies a record into its VFS inode: the one place that does. Called
/// with the volume lock held (`_locked`, which only [`Info::call`] and
/// [`Info::call_mut`] hand out, is the proof), from the call that changed
/// or read the record: the VFS inode then shows the records in the order
/// they were committed (a fault's `update_time` commits times without
/// `i_rwsem`, and an older record copied after it would show older times).
pub(super) fn refresh(_locked: &Vol, inode: &Inode<OxdaxFs>, record: &Record) {
    inode.set_attributes(&attributes(record));
}

/// Like [`refresh`], for the times alone (`update_time`, which must not
/// change anything else the VFS keeps).
pub(super) fn refresh_times(_locked: &Vol, inode: &Inode<OxdaxFs>, record: &Record) {
    inode.set_times(&attributes(record));
}

/// Like [`refresh`], when the volume returned a record for inode `ino`
/// that should be `inode`'s.
pub(super) fn refresh_checked(
    locked: &Vol,
    info: &Info,
    inode: &Inode<OxdaxFs>,
    ino: u64,
    record: &Record,
) {
    if inode.ino() == ino {
        refresh(locked, inode, record);
    } else {
        pr_err!(
            "{}: operation on inode {} changed inode {}\n",
            info.id(),
            inode.ino(),
            ino
        );
    }
}
