// SPDX-License-Identifier: GPL-2.0

//! Crashes at every store point, journal wrap and recovery.

use super::*;
use crate::logic::format::journal::{self, JournalHeader};

/// The operations of a crash test, each a whole call into the volume.
fn crash_workload(v: &mut TestVolume, rng: &mut Lcg, steps: usize) {
    let root = v.root();
    for _ in 0..steps {
        let name = alloc::format!("f{}", rng.next() % 12);
        match rng.next() % 8 {
            0 => {
                let _ = v.create(root, name.as_bytes(), &file(REG));
            }
            5 => {
                let other = alloc::format!("f{}", rng.next() % 12);
                if let (Ok(a), Ok(b)) = (
                    v.lookup(root, name.as_bytes()),
                    v.lookup(root, other.as_bytes()),
                ) {
                    let _ = v.reflink(a, 0, b, (rng.next() % 16) * 4096, 6 * 4096, T0);
                }
            }
            6 => {
                if let Ok(ino) = v.lookup(root, name.as_bytes()) {
                    let _ = v.punch_hole(
                        ino,
                        rng.next() % (64 << 10),
                        rng.next() % (64 << 10) + 1,
                        T0,
                    );
                }
            }
            7 => {
                if let Ok(ino) = v.lookup(root, name.as_bytes()) {
                    let _ = v.allocate(ino, rng.next() % (64 << 10), 8192, rng.next() % 2 == 0, T0);
                }
            }
            1 => {
                if let Ok(gone) = v.unlink(root, name.as_bytes(), T0) {
                    v.evict(gone.ino).unwrap();
                }
            }
            2 => {
                let to = alloc::format!("f{}", rng.next() % 12);
                if let Ok(r) = v.rename(
                    root,
                    name.as_bytes(),
                    root,
                    to.as_bytes(),
                    RenameFlags::default(),
                    T0,
                ) {
                    if let Some((ino, _)) = r.replaced {
                        v.evict(ino).unwrap();
                    }
                }
            }
            3 => {
                if let Ok(ino) = v.lookup(root, name.as_bytes()) {
                    let at = rng.next() % (256 << 10);
                    let _ = write(v, ino, at, &pattern(at, 3 * 4096 + 17));
                }
            }
            4 => {
                if let Ok(ino) = v.lookup(root, name.as_bytes()) {
                    let _ = v.set_attr(
                        ino,
                        &AttrChange {
                            size: Some(rng.next() % (128 << 10)),
                            ..Default::default()
                        },
                    );
                }
            }
            _ => unreachable!(),
        }
    }
}

const CRASH_STEPS: usize = 120;

/// Crash at many store points of a workload: each image must mount,
/// replay, and pass the checker, and show a namespace the workload went
/// through (every operation is atomic: before or after, never between).
#[test]
fn crashes_anywhere_leave_a_consistent_filesystem() {
    let base = formatted(32, Some(1024));
    // Record the namespace after each operation.
    let mut states = Vec::new();
    {
        let mut v = mount(base.clone());
        let mut rng = Lcg(99);
        states.push(listing(&v));
        for _ in 0..CRASH_STEPS {
            crash_workload(&mut v, &mut rng, 1);
            states.push(listing(&v));
        }
    }
    let total_writes = {
        let mut v = mount(base.clone());
        *v.media().writes.borrow_mut() = 0;
        crash_workload(&mut v, &mut Lcg(99), CRASH_STEPS);
        let n = *v.media().writes.borrow();
        n
    };
    let mut crash_rng = Lcg(5);
    for trial in 0..200u64 {
        let crash_at = 1 + crash_rng.next() % total_writes;
        let mut v = mount(base.clone());
        *v.media().writes.borrow_mut() = 0;
        v.media().crash_at.set(Some(crash_at));
        crash_workload(&mut v, &mut Lcg(99), CRASH_STEPS);
        let image = v.media().crash_image.borrow_mut().take().unwrap();
        let (recovered, report) = Volume::mount(Pmem::new(image), Buffers::new(), false)
            .unwrap_or_else(|e| panic!("trial {trial}: crash at {crash_at}: {e:?}"));
        assert!(report.was_dirty);
        let seen = listing(&recovered);
        assert!(
            states.iter().any(|s| *s == seen),
            "trial {trial}: crash at {crash_at}: {seen:?} is no state the workload passed"
        );
        unmount_and_check(recovered);
    }
}

/// Thousands of transactions on the smallest journal: it wraps several
/// times, and crashes around a wrap still recover.
#[test]
fn journal_wraps_and_recovers() {
    let mut v = mount(formatted(32, Some(1024)));
    let root = v.root();
    let mut wraps = 0;
    let mut last = v.journal_offset();
    let mut step = 0u64;
    while wraps < 3 {
        churn(&mut v, step);
        let now = v.journal_offset();
        if now < last {
            wraps += 1;
            // Crash within the first transactions after this wrap.
            if wraps == 2 {
                for k in 1..40 {
                    v.media().crash_at.set(Some(*v.media().writes.borrow() + k));
                    let name = alloc::format!("crash{k}");
                    let _ = v.create(root, name.as_bytes(), &file(REG));
                    v.media().crash_at.set(None);
                    let taken = v.media().crash_image.borrow_mut().take();
                    let image = taken.unwrap_or_else(|| v.media().crash());
                    let recovered = Volume::mount(Pmem::new(image), Buffers::new(), false)
                        .map(|(v, _)| v)
                        .unwrap();
                    listing(&recovered);
                    unmount_and_check(recovered);
                }
            }
        }
        last = now;
        step += 1;
    }
    let listed = listing(&v);
    let image = unmount_and_check(v);
    assert_eq!(listing(&mount(image)), listed);
}

/// One step of a namespace churn: creates name `step % 50`, or unlinks it
/// if it exists.
fn churn(v: &mut TestVolume, step: u64) {
    let root = v.root();
    let name = alloc::format!("w{}", step % 50);
    match v.create(root, name.as_bytes(), &file(REG)) {
        Ok(_) => {}
        Err(Error::Exists) => {
            let gone = v.unlink(root, name.as_bytes(), T0).unwrap();
            v.evict(gone.ino).unwrap();
        }
        Err(e) => panic!("{e:?}"),
    }
}

/// The highest sequence number of a committed transaction anywhere in
/// `log`, stale or not: a journal that numbers its next transaction at or
/// below it could walk from its own transactions into the stale ones.
fn highest_committed_seq(log: &[u8]) -> Option<u64> {
    let mut buffer = vec![0u8; TX_LOG_BYTES];
    (0..log.len())
        .step_by(journal::ALIGN)
        .filter(|&at| log[at..at + 4] == journal::TX_MAGIC.to_le_bytes())
        .filter_map(|at| {
            let seq = u64::from_le_bytes(log[at + 8..at + 16].try_into().ok()?);
            // Only the transaction at `at` reads: the walk stops after it.
            let read = |offset: usize, buf: &mut [u8]| match log.get(offset..offset + buf.len()) {
                Some(bytes) if offset == at => {
                    buf.copy_from_slice(bytes);
                    true
                }
                _ => false,
            };
            let mut walk = journal::Log {
                read: &read,
                len: log.len(),
                buffer: &mut buffer,
            };
            let here = JournalHeader {
                tail_seq: seq,
                tail_offset: at as u64,
            };
            let found = journal::replay(&mut walk, &here, &mut |_, _, _| {});
            (found.transactions > 0).then_some(seq)
        })
        .max()
}

/// A crash inside the transaction that wraps the log, at each of its
/// stores: during the journal header's rewrite the header is torn (a
/// crash keeps any of the words not fenced yet). Every image mounts,
/// shows the namespace from before or after the operation, has a whole
/// header once a transaction follows, numbers its next transaction past
/// every committed one in the log, and checks clean.
#[test]
fn a_crash_while_the_log_wraps_recovers() {
    let log_len = (1024 - 1) * BLOCK_SIZE;
    let mut v = mount(formatted(32, Some(1024)));
    let mut step = 0;
    while v.journal_offset() < log_len - (32 << 10) {
        churn(&mut v, step);
        step += 1;
    }
    let image = v.media().bytes();
    let header_at = v.superblock().layout.journal_start as usize * BLOCK_SIZE;
    // Which operation wraps, the stores it makes, and the namespace
    // before and after it.
    let (wrapping, stores, before, after) = {
        let mut probe = mount(image.clone());
        let mut n = 0;
        loop {
            let (offset, writes, before) = (
                probe.journal_offset(),
                *probe.media().writes.borrow(),
                listing(&probe),
            );
            churn(&mut probe, step + n);
            if probe.journal_offset() < offset {
                let stores = *probe.media().writes.borrow() - writes;
                break (n, stores, before, listing(&probe));
            }
            n += 1;
        }
    };
    let mut torn = 0;
    for k in 1..=stores {
        let mut q = mount(image.clone());
        for n in 0..wrapping {
            churn(&mut q, step + n);
        }
        q.media().crash_at.set(Some(*q.media().writes.borrow() + k));
        churn(&mut q, step + wrapping);
        let crashed = q.media().crash_image.borrow_mut().take().unwrap();
        let (mut recovered, report) = Volume::mount(Pmem::new(crashed), Buffers::new(), false)
            .unwrap_or_else(|e| panic!("crash at store {k} of the wrap: {e:?}"));
        torn += u64::from(report.torn_journal_header);
        let seen = listing(&recovered);
        assert!(
            seen == before || seen == after,
            "crash at store {k}: {seen:?}"
        );
        // The header is whole once a transaction follows.
        churn(&mut recovered, step + wrapping + 1);
        let bytes = recovered.media().bytes();
        assert!(
            JournalHeader::decode(&bytes[header_at..header_at + BLOCK_SIZE], log_len).is_ok(),
            "crash at store {k}"
        );
        let log = &bytes[header_at + BLOCK_SIZE..header_at + BLOCK_SIZE + log_len];
        let stale = highest_committed_seq(log);
        assert!(stale.is_some());
        assert!(
            stale < Some(recovered.journal_seq()),
            "crash at store {k}: transaction {stale:?} is in the log, and the next one gets {}",
            recovered.journal_seq()
        );
        unmount_and_check(recovered);
    }
    assert!(torn > 0, "no crash tore the header in {stores} stores");
}

/// Replaying the whole journal after a crash would rewrite metadata blocks
/// that were freed and now hold file data; recovery replays only the last
/// transaction.
#[test]
fn recovery_does_not_rewrite_reused_blocks() {
    let mut v = mount(formatted(32, Some(1024)));
    let root = v.root();
    let (c, _) = v.create(root, b"c", &file(REG)).unwrap();
    write(&mut v, c, 8192, &pattern(1, 4096)).unwrap();
    // A's extent-tree node is the lowest free block; it is freed with A.
    let (a, _) = v.create(root, b"a", &file(REG)).unwrap();
    write(&mut v, a, 0, &pattern(2, 4096)).unwrap();
    let node = v.inode(a).unwrap().map_root;
    let gone = v.unlink(root, b"a", T0).unwrap();
    v.evict(gone.ino).unwrap();
    // C's new first block takes it, as file data.
    let data = pattern(3, 4096);
    write(&mut v, c, 0, &data).unwrap();
    assert_eq!(
        v.map_read(c, 0, 1).unwrap().physical,
        node,
        "the scenario reuses the node"
    );
    let expected = listing(&v);
    let recovered = mount(v.media().crash());
    assert_eq!(read(&recovered, c, 0, 4096), data);
    assert_eq!(listing(&recovered), expected);
    unmount_and_check(recovered);
}

/// The stored superblock of `image`.
fn stored_superblock(image: &[u8]) -> Superblock {
    Superblock::decode(&image[..BLOCK_SIZE]).unwrap()
}

/// Changes both superblocks of `image` with `edit`.
fn edit_superblocks(image: &mut [u8], edit: impl Fn(&mut Superblock)) {
    for block in [PRIMARY_BLOCK, BACKUP_BLOCK] {
        let at = block as usize * BLOCK_SIZE;
        let mut sb = stored_superblock(&image[at..]);
        edit(&mut sb);
        sb.encode((&mut image[at..at + BLOCK_SIZE]).try_into().unwrap());
    }
}

/// With lazy counters (what mkfs makes), creates and allocations leave
/// the superblock on the media alone, so its counters fall behind; a
/// crash at any point between operations recounts them at mount from the
/// maps to exactly what the live volume had, and fsck's checks accept
/// the stale ones only while the filesystem is not marked clean.
#[test]
fn lazy_counters_are_recounted_after_a_crash() {
    let mut v = mount(formatted(32, None));
    assert!(v.superblock().feature_ro_compat & RO_COMPAT_LAZY_COUNTERS != 0);
    let mut rng = Lcg(7);
    let mut stale = 0;
    for step in 0..150 {
        crash_workload(&mut v, &mut rng, 1);
        // Evicted inodes wait in memory to be freed in a batch: the mount
        // after a crash frees them, so the live count must not have them.
        v.free_evicted().unwrap();
        let live = *v.superblock();
        let stored = stored_superblock(&v.media().bytes());
        let image = v.media().crash();
        if (stored.free_blocks, stored.inode_count) != (live.free_blocks, live.inode_count) {
            stale += 1;
        }
        let (recovered, report) = Volume::mount(Pmem::new(image), Buffers::new(), false).unwrap();
        assert!(report.was_dirty);
        let counted = *recovered.superblock();
        assert_eq!(
            (counted.free_blocks, counted.inode_count),
            (live.free_blocks, live.inode_count),
            "step {step}: counters after the crash"
        );
        if step % 10 != 0 {
            continue;
        }
        // What the recovery wrote home is a dirty filesystem fsck passes,
        // however stale its stored counters...
        let dirty = recovered.media().bytes().to_vec();
        check_filesystem(&Flat(dirty.clone())).unwrap();
        let mut sb = stored_superblock(&dirty);
        assert!(sb.counters_may_be_stale());
        check_files(recovered.media(), &sb, &mut |_| {}).unwrap();
        // ...and that a clean one would not, where they are.
        sb.state |= STATE_CLEAN;
        let mut marked = dirty;
        sb.encode((&mut marked[..BLOCK_SIZE]).try_into().unwrap());
        if sb.free_blocks != live.free_blocks {
            assert_eq!(
                check_filesystem(&Flat(marked)).map(|_| ()),
                Err(FsError::Corrupt("free block count"))
            );
        }
        unmount_and_check(recovered);
    }
    assert!(
        stale > 100,
        "the stored counters were stale after {stale} of 150 steps"
    );
    unmount_and_check(v);
}

/// A filesystem made without lazy counters (by an older mkfs) keeps them
/// exact on the media after every transaction, as before.
#[test]
fn counters_without_the_lazy_feature_are_written_by_every_change() {
    let mut image = formatted(32, None);
    edit_superblocks(&mut image, |sb| {
        sb.feature_ro_compat &= !RO_COMPAT_LAZY_COUNTERS
    });
    let mut v = mount(image);
    let mut rng = Lcg(7);
    for step in 0..60 {
        crash_workload(&mut v, &mut rng, 1);
        let live = *v.superblock();
        let stored = stored_superblock(&v.media().bytes());
        assert!(!stored.counters_may_be_stale());
        assert_eq!(
            (stored.free_blocks, stored.inode_count),
            (live.free_blocks, live.inode_count),
            "step {step}"
        );
    }
    unmount_and_check(v);
}

/// A read-only-compatible feature this code does not know: a read-write
/// mount is refused, a read-only one works and cannot be made writable
/// (the feature may make the stored state mean something this code would
/// not keep).
#[test]
fn unknown_read_only_features_allow_only_read_only_mounts() {
    let mut image = formatted(32, None);
    edit_superblocks(&mut image, |sb| sb.feature_ro_compat |= 1 << 9);
    assert_eq!(
        Volume::mount(Pmem::new(image.clone()), Buffers::new(), false).map(|_| ()),
        Err(MountError::ReadOnlyFeatures)
    );
    let (mut v, _) = Volume::mount(Pmem::new(image.clone()), Buffers::new(), true).unwrap();
    let root = v.root();
    assert_eq!(v.set_read_only(false), Err(Error::ReadOnly));
    assert_eq!(
        v.create(root, b"f", &file(REG)).map(|_| ()),
        Err(Error::ReadOnly)
    );
    v.unmount();
    assert!(v.media().bytes() == image, "a read-only mount wrote");
}

/// Counters stored wrong in a filesystem marked clean (by a module that
/// did not know lazy counters, which mounts it read-write and trusts
/// them) are counted again at the next mount, which stores them exact.
#[test]
fn wrong_counters_marked_clean_are_counted_again_at_mount() {
    let mut v = mount(formatted(32, None));
    let root = v.root();
    for i in 0..10 {
        let name = alloc::format!("f{i}");
        let (f, _) = v.create(root, name.as_bytes(), &file(REG)).unwrap();
        write(&mut v, f, 0, &pattern(i, 30_000)).unwrap();
    }
    let exact = *v.superblock();
    let mut image = unmount_and_check(v);
    edit_superblocks(&mut image, |sb| {
        assert!(!sb.counters_may_be_stale());
        sb.free_blocks += 40;
        sb.inode_count -= 3;
    });
    let v = mount(image);
    let counted = *v.superblock();
    assert_eq!(
        (counted.free_blocks, counted.inode_count),
        (exact.free_blocks, exact.inode_count)
    );
    unmount_and_check(v);
}
