// SPDX-License-Identifier: GPL-2.0

//! Memory failures on the device (`->notify_failure`): who owns the failed
//! blocks, and what happens to them (Documentation/oxdax/failure.rst).
//!
//! - File data: every file sharing the blocks (the reverse map names each
//!   sharer and file offset) has the processes mapping those pages killed
//!   (`mf_dax_kill_procs`: `BUS_MCEERR_AR` for the task that consumed the
//!   poison, `BUS_MCEERR_AO` for others that asked for early kills).
//! - Metadata: the filesystem shuts down.
//! - Free blocks: nothing to kill.
//!
//! When the reverse map cannot answer (shut down, damaged), the mappers
//! are found through the mapping entries of every inode in memory instead.
//! A failure in the zero chunk the engine maps over 2 MiB holes (no file
//! owns it) kills nobody: its mappings are removed, and holes get zero
//! pages from then on. The kernel's generic handling is never left to do it: it
//! dereferences the shared-page marker fs/dax.c puts in pages' `mapping`.
//!
//! In every case the blocks are remembered as poisoned (`Volume::poison`):
//! never read or mapped again for a file (reads fail with `EIO`, faults
//! raise `SIGBUS`), never handed out once free.
//!
//! Device removal (`MF_MEM_PRE_REMOVE`) shuts the filesystem down and
//! takes every mapping of the device's memory away, killing the processes
//! that have them, before the memory goes.

use kernel::{fmt, prelude::*};

use super::{
    info::{Info, OxdaxFs, BLOCK},
    mmap::{self, Quiet},
};
use crate::{
    ffi,
    logic::{
        fs::{Error as FsError, Owned},
        pmem::failure_in_partition,
    },
    sys::{
        errno::eopnotsupp,
        fs::{inode, HolderOperations, Inode, SuperBlock},
    },
};

/// Most owners one failure reports to (each sharer of a reflinked block is
/// one): a failure cannot allocate without bound.
const MAX_OWNERS: usize = 65536;

/// What the reverse map says of a failed range.
#[derive(Default)]
struct Damage {
    /// File ranges mapping the failed blocks.
    data: KVec<Owned>,
    /// A failed metadata block, if any.
    metadata: Option<u64>,
    /// The list of poisoned blocks is full.
    too_many: bool,
    /// Not every owner could be recorded.
    incomplete: bool,
}

#[vtable]
impl HolderOperations for OxdaxFs {
    /// `->notify_failure` of a mounted oxdax filesystem.
    fn dax_failure(
        sb: &SuperBlock<Self>,
        info: &Info,
        offset: u64,
        len: u64,
        mf_flags: i32,
    ) -> Result {
        if mf_flags & ffi::MF_MEM_PRE_REMOVE != 0 {
            revoke_everything(sb, info);
            return Ok(());
        }
        // The DAX device's offsets; the filesystem may be on a partition.
        let Some((offset, len)) =
            failure_in_partition(offset, len, info.dax.start(), info.engine.memory().len())
        else {
            // Another partition's memory: none of our pages failed. The
            // kernel's generic handling serves whoever maps it (a filesystem
            // on another partition that is not the device's holder, ext4 say);
            // xfs answers ENXIO, which leaves those mappers unsignalled.
            return Err(eopnotsupp());
        };
        let first = offset / BLOCK;
        let end = offset.saturating_add(len).div_ceil(BLOCK);
        if end <= first {
            return Err(EINVAL);
        }
        let zero_chunk = info.engine.drop_zero_chunk_in(first * BLOCK, end * BLOCK);
        let damage = match assess(info, first, end - first) {
            Ok(damage) if !zero_chunk && !damage.incomplete => damage,
            // The zeros mapped over holes (no owner in the reverse map), an
            // owner list that could not be completed, nothing to ask (shut
            // down), or a reverse map that failed to answer: the mappers are
            // found through the mapping entries instead.
            outcome => {
                match outcome {
                    Ok(damage) if damage.incomplete => shut_down(
                        info,
                        fmt!("cannot list every owner of failed block {}", first),
                    ),
                    Err(e) if e != FsError::Shutdown => shut_down(
                        info,
                        fmt!("cannot list the owners of failed block {}", first),
                    ),
                    _ => {}
                }
                kill_mappers_of(sb, info, first, end, mf_flags);
                return Ok(());
            }
        };
        let mut result = Ok(());
        for owned in damage.data.iter() {
            // Not in memory: nobody maps it.
            if let Some(inode) = inode::cached(sb, owned.owner) {
                if let Err(e) = kill_mappers(&inode, owned.file_block, owned.len, mf_flags) {
                    result = result.and(Err(e));
                }
            }
        }
        if let Some(block) = damage.metadata {
            shut_down(info, fmt!("memory failure in metadata block {}", block));
        } else if damage.too_many {
            shut_down(info, fmt!("too many blocks with failed memory"));
        }
        result
    }
}

/// Kills the processes mapping pages `first..first + count` of `inode`
/// (`mf_dax_kill_procs`), with faults held off. Where a PUD may map the
/// file, the GiBs around the pages lose every mapping first: the kernel's
/// own removal covers the largest mapping of the processes it signals only,
/// and would split another process's PUD from the file side, which core mm
/// does not allow (rust/dax/pud.rs). Their mappers then learn of the
/// failure at their next access (SIGBUS `BUS_MCEERR_AR` from the refused
/// block), not before.
fn kill_mappers(inode: &Inode<OxdaxFs>, first: u64, count: u64, mf_flags: i32) -> Result {
    let _faults_off = inode.invalidate_lock(true).ok_or(EIO)?;
    if let Some(entries) = inode.entries() {
        if entries.may_be_pud_mapped() {
            entries.unmap(first, count, false);
        }
    }
    inode.kill_mapping_procs(first, count, mf_flags)
}

/// Kills the processes mapping device blocks `first..end`, found through
/// the mapping entries of every inode in memory (no reverse map needed);
/// mappings of the zero chunk there are removed instead.
fn kill_mappers_of(sb: &SuperBlock<OxdaxFs>, info: &Info, first: u64, end: u64, mf_flags: i32) {
    let failed = info.engine.frames(first * BLOCK, end * BLOCK);
    inode::for_each_mapped(sb, |inode: &Inode<OxdaxFs>| {
        let Some(entries) = inode.entries() else {
            return;
        };
        entries.for_each(|entry, at| {
            let frames = entry.frame()..entry.frame() + entry.pages();
            let (low, high) = (frames.start.max(failed.start), frames.end.min(failed.end));
            if entry.maps_blocks() && low < high {
                let _ = kill_mappers(inode, at + (low - frames.start), high - low, mf_flags);
            } else if entry.is_zero() && low < high {
                // The zero chunk: nothing is lost, so nobody is killed. Its
                // mappings go and the next access maps a zero page.
                let (start, end) = (at * BLOCK, (at + entry.pages()) * BLOCK);
                if let Err(e) = mmap::quiesce(inode, Quiet::range(start, end)) {
                    pr_err!(
                        "{}: inode {}: zero chunk still mapped: {:?}\n",
                        info.id(),
                        inode.ino(),
                        e
                    );
                }
            }
        });
    });
}

/// Records blocks `first..first + count` as poisoned and lists their owners.
fn assess(info: &Info, first: u64, count: u64) -> Result<Damage, FsError> {
    let Some(_alive) = info.dax.read_lock() else {
        return Err(FsError::Shutdown);
    };
    let mut volume = info.volume.lock();
    let mut damage = Damage::default();
    let data_start = volume.superblock().layout.data_start;
    if first < data_start {
        // The fixed areas (superblocks, journal, free-space maps) are not
        // in the reverse map.
        damage.metadata = Some(first);
    }
    match volume.poison(first, count) {
        Ok(()) => {}
        Err(FsError::NoSpace) => damage.too_many = true,
        Err(e) => return Err(e),
    }
    let start = first.max(data_start);
    let end = first + count;
    if start < end {
        volume.owners(start, end - start, &mut |owned| {
            if owned.metadata {
                damage.metadata.get_or_insert(owned.start);
            } else if damage.data.len() >= MAX_OWNERS
                || damage.data.push(*owned, GFP_KERNEL).is_err()
            {
                damage.incomplete = true;
                return false;
            }
            true
        })?;
    }
    Ok(damage)
}

/// Shuts the filesystem down, with one line saying why.
fn shut_down(info: &Info, why: core::fmt::Arguments<'_>) {
    let mut volume = info.volume.lock();
    if !volume.is_shut_down() {
        pr_crit!("{}: {}: shutting down\n", info.id(), why);
        volume.shut_down();
    }
}

/// The device is going away: no new fault may map its memory (the volume
/// is shut down, so every fault fails), and every mapping there is goes,
/// its processes killed as xfs does.
fn revoke_everything(sb: &SuperBlock<OxdaxFs>, info: &Info) {
    shut_down(info, fmt!("device is being removed"));
    inode::for_each_mapped(sb, |inode: &Inode<OxdaxFs>| {
        // Exclusive: waits for the faults in flight, which may have mapped
        // blocks before the shutdown.
        let Some(_faults_off) = inode.invalidate_lock(true) else {
            return;
        };
        let Some(entries) = inode.entries() else {
            return;
        };
        // One page of each entry: the kill unmaps the whole PMD. Where a
        // PUD may map the file, the kill's unmap could split one that it
        // did not count (a process whose leader has no mm): the GiB goes
        // first, as in `kill_mappers`.
        entries.for_each(|_, at| {
            if entries.may_be_pud_mapped() {
                entries.unmap(at, 1, false);
            }
            let _ = inode.kill_mapping_procs(at, 1, ffi::MF_MEM_PRE_REMOVE);
        });
        let everything = Quiet {
            start: 0,
            end: u64::MAX,
            private_from: Some(0),
        };
        if let Err(e) = mmap::quiesce_locked(inode, everything) {
            pr_err!(
                "{}: inode {}: mappings not removed: {:?}\n",
                info.id(),
                inode.ino(),
                e
            );
        }
    });
}
