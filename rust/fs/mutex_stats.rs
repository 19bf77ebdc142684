// SPDX-License-Identifier: GPL-2.0

//! How long each kind of operation waits for the volume mutex and holds it
//! (debugfs `oxdax/<device>/mutex_<use>_{calls,wait_ns,hold_ns}`), and
//! where committed transactions' time goes
//! (`tx_{logged,build_ns,settle_ns,log_ns,home_ns}`): stage 0 of
//! Documentation/oxdax/concurrency.rst, the numbers that decide how the
//! lock is split. `make bench` reads them around its concurrency rows.
//!
//! Not counted: the failure handler's and unmount's direct uses of the
//! lock (rare, and a dying device's), and finding the root at mount.
//!
//! Always on: three clock reads per call (a volume call costs microseconds;
//! a clock read tens of nanoseconds), relaxed atomic adds.

use core::sync::atomic::{AtomicU64, Ordering};

use kernel::{c_str, time::Ktime};

use crate::{logic::fs::TxTimes, sys::debugfs::CounterFile};

/// What a volume call is for.
#[derive(Clone, Copy)]
pub(super) enum Use {
    /// Names: lookup, create, link, unlink, rmdir, rename, readdir.
    Namespace,
    /// Records and block maps read: iget, read(2), FIEMAP, SEEK_DATA.
    Read,
    /// write(2), truncation, fallocate, reflink, attribute changes.
    Write,
    /// Page faults and their writeback (`mmap.rs`).
    Fault,
    /// Times updated by the VFS (`update_time`: reads, mmap, write faults).
    Times,
    /// Unlinked inodes evicted and freed.
    Evict,
    /// The compaction worker.
    Compaction,
    /// statfs, sync, remount, mount-time setup.
    Other,
}

/// One use's totals.
#[derive(Default)]
pub(crate) struct UseCounters {
    calls: AtomicU64,
    /// From asking for the mutex to holding it.
    wait_ns: AtomicU64,
    /// From holding it to letting it go.
    hold_ns: AtomicU64,
}

/// Every use's totals since the mount.
#[derive(Default)]
pub(crate) struct MutexStats {
    namespace: UseCounters,
    read: UseCounters,
    write: UseCounters,
    fault: UseCounters,
    times: UseCounters,
    evict: UseCounters,
    compaction: UseCounters,
    other: UseCounters,
    /// The volume's [`TxTimes`], as the last call left them.
    tx_logged: AtomicU64,
    tx_build_ns: AtomicU64,
    tx_settle_ns: AtomicU64,
    tx_log_ns: AtomicU64,
    tx_home_ns: AtomicU64,
}

/// The monotonic clock in nanoseconds.
pub(super) fn now_ns() -> u64 {
    u64::try_from(Ktime::ktime_get().to_ns()).unwrap_or(0)
}

/// The debugfs files of a [`MutexStats`]: three per use.
macro_rules! files_of {
    ($($use:ident),+) => {
        [$(
            (
                c_str!(concat!("mutex_", stringify!($use), "_calls")),
                |s: &MutexStats| &s.$use.calls,
            ),
            (
                c_str!(concat!("mutex_", stringify!($use), "_wait_ns")),
                |s: &MutexStats| &s.$use.wait_ns,
            ),
            (
                c_str!(concat!("mutex_", stringify!($use), "_hold_ns")),
                |s: &MutexStats| &s.$use.hold_ns,
            ),
        )+]
    };
}

impl MutexStats {
    fn of(&self, u: Use) -> &UseCounters {
        match u {
            Use::Namespace => &self.namespace,
            Use::Read => &self.read,
            Use::Write => &self.write,
            Use::Fault => &self.fault,
            Use::Times => &self.times,
            Use::Evict => &self.evict,
            Use::Compaction => &self.compaction,
            Use::Other => &self.other,
        }
    }

    /// Counts one call: asked for the mutex at `asked`, held it from
    /// `taken` to `released` (clock readings of [`now_ns`]).
    pub(super) fn record(&self, u: Use, asked: u64, taken: u64, released: u64) {
        let counters = self.of(u);
        counters.calls.fetch_add(1, Ordering::Relaxed);
        counters
            .wait_ns
            .fetch_add(taken.saturating_sub(asked), Ordering::Relaxed);
        counters
            .hold_ns
            .fetch_add(released.saturating_sub(taken), Ordering::Relaxed);
    }

    /// Shows the volume's transaction times (called with the mutex held).
    pub(super) fn show(&self, times: TxTimes) {
        self.tx_logged.store(times.logged, Ordering::Relaxed);
        self.tx_build_ns.store(times.build_ns, Ordering::Relaxed);
        self.tx_settle_ns.store(times.settle_ns, Ordering::Relaxed);
        self.tx_log_ns.store(times.log_ns, Ordering::Relaxed);
        self.tx_home_ns.store(times.home_ns, Ordering::Relaxed);
    }

    /// The files that show the mutex's counters, per use.
    pub(super) fn use_files() -> [CounterFile<'static, MutexStats>; 24] {
        files_of!(namespace, read, write, fault, times, evict, compaction, other)
    }

    /// The files that show the transaction times.
    pub(super) fn tx_files() -> [CounterFile<'static, MutexStats>; 5] {
        [
            (c_str!("tx_logged"), |s| &s.tx_logged),
            (c_str!("tx_build_ns"), |s| &s.tx_build_ns),
            (c_str!("tx_settle_ns"), |s| &s.tx_settle_ns),
            (c_str!("tx_log_ns"), |s| &s.tx_log_ns),
            (c_str!("tx_home_ns"), |s| &s.tx_home_ns),
        ]
    }
}
