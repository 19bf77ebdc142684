// SPDX-License-Identifier: GPL-2.0

//! Tests of names, directories, inode slots and orphans.

use super::*;

#[test]
fn mounts_a_fresh_filesystem() {
    let volume = mount(formatted(32, None));
    let stat = volume.statfs();
    assert!(stat.free_blocks > 0 && stat.free_blocks < stat.blocks);
    assert_eq!(
        volume.lookup(volume.root(), b"nothing"),
        Err(Error::NotFound)
    );
    assert!(listing(&volume).is_empty());
    unmount_and_check(volume);
}

#[test]
fn refuses_what_is_not_a_filesystem() {
    let junk = vec![0u8; 32 << 20];
    assert_eq!(
        Volume::mount(Pmem::new(junk), Buffers::new(), false).err(),
        Some(MountError::NoFilesystem)
    );
    let mut image = formatted(32, None);
    image.truncate(16 << 20);
    assert_eq!(
        Volume::mount(Pmem::new(image), Buffers::new(), false).err(),
        Some(MountError::TooSmall)
    );
    // A damaged primary falls back to the backup.
    let mut image = formatted(32, None);
    image[100] ^= 1;
    let (volume, report) = Volume::mount(Pmem::new(image), Buffers::new(), false).unwrap();
    assert!(report.used_backup);
    unmount_and_check(volume);
}

/// A mount from the backup superblock rewrites the damaged primary at its
/// first commit, even one that leaves the superblock as it was (a
/// filesystem left dirty by a crash): a second crash must find it valid.
#[test]
fn a_mount_from_the_backup_rewrites_the_primary() {
    // A small journal: its wrap writes the backup, marked in use.
    let mut v = mount(formatted(32, Some(1024)));
    let root = v.root();
    let (f, _) = v.create(root, b"f", &file(REG)).unwrap();
    write(&mut v, f, 0, &pattern(8, 100)).unwrap();
    let start = v.journal_offset();
    let mut i = 0u32;
    while v.journal_offset() >= start {
        let name = alloc::format!("w{}", i % 20);
        if v.create(root, name.as_bytes(), &file(REG)).is_err() {
            let gone = v.unlink(root, name.as_bytes(), T0).unwrap();
            v.evict(gone.ino).unwrap();
        }
        i += 1;
    }
    // No orphans for the next mount to free (which would change the
    // superblock), then a crash: the filesystem stays marked in use.
    v.free_evicted().unwrap();
    let mut image = v.media().bytes().to_vec();
    image[100] ^= 1;
    let (mut v, report) = Volume::mount(Pmem::new(image), Buffers::new(), false).unwrap();
    assert!(report.used_backup && report.was_dirty);
    // An overwrite: the file's times change, the superblock does not.
    write(&mut v, f, 0, &pattern(9, 100)).unwrap();
    let image = v.media().bytes().to_vec();
    let (v, report) = Volume::mount(Pmem::new(image), Buffers::new(), false).unwrap();
    assert!(
        !report.used_backup,
        "the primary superblock is still damaged"
    );
    assert_eq!(read(&v, f, 0, 100), pattern(9, 100));
    // The backup is as old as the last wrap of the journal, but its
    // counters were counted again at mount and its roots did not move
    // since: the filesystem checks clean.
    unmount_and_check(v);
}

/// A record that would not read back is never written: a time whose
/// nanoseconds are out of range is refused, and the record stays.
#[test]
fn a_record_that_would_not_read_back_is_refused() {
    let mut v = mount(formatted(32, None));
    let root = v.root();
    let (f, before) = v.create(root, b"f", &file(REG)).unwrap();
    let change = AttrChange {
        mtime: Some(Timestamp {
            sec: 5,
            nsec: 1_000_000_000,
        }),
        ..Default::default()
    };
    assert_eq!(v.set_attr(f, &change), Err(Error::Invalid));
    assert_eq!(v.inode(f), Ok(before));
    assert_eq!(v.inode_uncached(f), Ok(before));
    unmount_and_check(v);
}

#[test]
fn namespace_operations_and_errors() {
    let mut v = mount(formatted(32, None));
    let root = v.root();
    let (a, _) = v.create(root, b"a", &file(REG)).unwrap();
    let (d, _) = v.create(root, b"d", &file(DIR)).unwrap();
    assert_eq!(v.create(root, b"a", &file(REG)), Err(Error::Exists));
    assert_eq!(
        v.create(root, &[b'x'; 256], &file(REG)),
        Err(Error::NameTooLong)
    );
    assert!(v.create(root, &[b'x'; 255], &file(REG)).is_ok());
    assert_eq!(v.create(a, b"z", &file(REG)), Err(Error::NotDir));
    assert_eq!(
        v.unlink(root, b"d", T0),
        Err(Error::IsDir).map(|()| unreachable!())
    );
    assert_eq!(v.rmdir(root, b"a", T0).map(|_| ()), Err(Error::NotDir));
    v.create(d, b"inner", &file(REG)).unwrap();
    assert_eq!(v.rmdir(root, b"d", T0).map(|_| ()), Err(Error::NotEmpty));
    // Hard links.
    let linked = v.link(a, d, b"a2", T0).unwrap();
    assert_eq!(linked.nlink, 2);
    assert_eq!(
        v.link(d, root, b"dirlink", T0).map(|_| ()),
        Err(Error::Invalid)
    );
    // Rename within and across directories, over a file, no-replace.
    v.rename(root, b"a", d, b"a3", RenameFlags::default(), T0)
        .unwrap();
    assert_eq!(v.lookup(root, b"a"), Err(Error::NotFound));
    assert_eq!(v.lookup(d, b"a3"), Ok(a));
    assert_eq!(
        v.rename(d, b"a3", d, b"inner", RenameFlags { no_replace: true }, T0)
            .map(|_| ()),
        Err(Error::Exists)
    );
    let (inner, _) = (v.lookup(d, b"inner").unwrap(), ());
    let renamed = v
        .rename(d, b"a3", d, b"inner", RenameFlags::default(), T0)
        .unwrap();
    assert_eq!(
        renamed.replaced.map(|(ino, i)| (ino, i.nlink)),
        Some((inner, 0))
    );
    v.evict(inner).unwrap();
    // Same inode under both names: nothing happens.
    v.rename(d, b"a2", d, b"inner", RenameFlags::default(), T0)
        .unwrap();
    assert_eq!(v.lookup(d, b"a2"), Ok(a));
    // A directory cannot move into itself.
    let (sub, _) = v.create(d, b"sub", &file(DIR)).unwrap();
    assert_eq!(
        v.rename(root, b"d", sub, b"loop", RenameFlags::default(), T0)
            .map(|_| ()),
        Err(Error::Invalid)
    );
    // Directory over an empty directory, across parents.
    v.create(root, b"empty", &file(DIR)).unwrap();
    let r = v
        .rename(d, b"sub", root, b"empty", RenameFlags::default(), T0)
        .unwrap();
    assert_eq!(r.moved.1.parent, root);
    v.evict(r.replaced.unwrap().0).unwrap();
    let list = listing(&v);
    assert_eq!(
        list.keys().cloned().collect::<Vec<_>>(),
        [
            "/d",
            "/d/a2",
            "/d/inner",
            "/empty",
            &alloc::format!("/{}", "x".repeat(255))
        ]
    );
    let image = unmount_and_check(v);
    let v = mount(image);
    assert_eq!(listing(&v), list);
    unmount_and_check(v);
}

/// Random namespace operations against a model, checked through readdir
/// and lookups, then after a remount; the free-space and reverse-map
/// checker runs at the end.
#[test]
fn random_namespace_operations_match_a_model() {
    let mut v = mount(formatted(64, None));
    let mut rng = Lcg(42);
    let mut dirs: Vec<(u64, String)> = vec![(v.root(), String::new())];
    let mut model: BTreeMap<String, bool> = BTreeMap::new();
    let free_at_start = v.statfs().free_blocks;
    for step in 0..3000 {
        let (dir, path) = dirs[rng.next() as usize % dirs.len()].clone();
        let name = alloc::format!("n{}", rng.next() % 40);
        let full = alloc::format!("{path}/{name}");
        match rng.next() % 6 {
            0 | 1 => {
                let make_dir = rng.next() % 3 == 0;
                let result = v.create(
                    dir,
                    name.as_bytes(),
                    &file(if make_dir { DIR } else { REG }),
                );
                if model.contains_key(&full) {
                    assert_eq!(result.map(|_| ()), Err(Error::Exists));
                } else {
                    let (ino, _) = result.unwrap();
                    model.insert(full.clone(), make_dir);
                    if make_dir {
                        dirs.push((ino, full));
                    }
                }
            }
            2 => {
                let result = v.unlink(dir, name.as_bytes(), T0);
                match model.get(&full) {
                    None => assert_eq!(result.map(|_| ()), Err(Error::NotFound)),
                    Some(true) => assert_eq!(result.map(|_| ()), Err(Error::IsDir)),
                    Some(false) => {
                        let gone = result.unwrap();
                        assert_eq!(gone.inode.nlink, 0);
                        v.evict(gone.ino).unwrap();
                        model.remove(&full);
                    }
                }
            }
            3 => {
                let result = v.rmdir(dir, name.as_bytes(), T0);
                let prefix = alloc::format!("{full}/");
                match model.get(&full) {
                    None => assert_eq!(result.map(|_| ()), Err(Error::NotFound)),
                    Some(false) => assert_eq!(result.map(|_| ()), Err(Error::NotDir)),
                    Some(true) if model.keys().any(|k| k.starts_with(&prefix)) => {
                        assert_eq!(result.map(|_| ()), Err(Error::NotEmpty))
                    }
                    Some(true) => {
                        let gone = result.unwrap();
                        v.evict(gone.ino).unwrap();
                        model.remove(&full);
                        dirs.retain(|(_, p)| *p != full);
                    }
                }
            }
            _ => {
                // Rename files only (directories move in the fixed test).
                let (to_dir, to_path) = dirs[rng.next() as usize % dirs.len()].clone();
                let to_name = alloc::format!("n{}", rng.next() % 40);
                let to_full = alloc::format!("{to_path}/{to_name}");
                if model.get(&full) != Some(&false) || to_full == full {
                    continue;
                }
                let result = v.rename(
                    dir,
                    name.as_bytes(),
                    to_dir,
                    to_name.as_bytes(),
                    RenameFlags::default(),
                    T0,
                );
                match model.get(&to_full) {
                    Some(true) => assert_eq!(result.map(|_| ()), Err(Error::IsDir)),
                    _ => {
                        let renamed = result.unwrap();
                        if let Some((ino, inode)) = renamed.replaced {
                            assert_eq!(inode.nlink, 0);
                            v.evict(ino).unwrap();
                        }
                        model.remove(&full);
                        model.insert(to_full, false);
                    }
                }
            }
        }
        if step % 500 == 0 {
            let seen = listing(&v);
            assert_eq!(seen.len(), model.len(), "step {step}");
        }
    }
    let seen: BTreeMap<String, bool> = listing(&v).into_iter().map(|(k, v)| (k, v.0)).collect();
    assert_eq!(seen, model);
    let image = unmount_and_check(v);
    let mut v = mount(image);
    let seen: BTreeMap<String, bool> = listing(&v).into_iter().map(|(k, v)| (k, v.0)).collect();
    assert_eq!(seen, model);
    // Removing everything gives every block back.
    let mut paths: Vec<_> = model.iter().collect();
    paths.sort_by_key(|(p, _)| core::cmp::Reverse(p.len()));
    for (path, is_dir) in paths {
        let (parent, name) = path.rsplit_once('/').unwrap();
        let dir = parent
            .split('/')
            .skip(1)
            .fold(v.root(), |d, n| v.lookup(d, n.as_bytes()).unwrap());
        let gone = if *is_dir {
            v.rmdir(dir, name.as_bytes(), T0)
        } else {
            v.unlink(dir, name.as_bytes(), T0)
        }
        .unwrap();
        v.evict(gone.ino).unwrap();
    }
    // The last evicted inodes are freed together (as statfs does first).
    v.free_evicted().unwrap();
    // Nothing of any file or directory is left: only the filesystem-wide
    // trees and the root's own tree own blocks, and they shrank back.
    assert_eq!(owners(&v), [v.root()].into_iter().collect());
    assert_eq!(v.statfs().free_blocks, free_at_start);
    unmount_and_check(v);
}

#[test]
fn large_directory_lookups_and_readdir() {
    let mut v = mount(formatted(64, None));
    let root = v.root();
    let (dir, _) = v.create(root, b"big", &file(DIR)).unwrap();
    const N: usize = 20_000;
    for i in 0..N {
        v.create(dir, alloc::format!("entry-{i}").as_bytes(), &file(REG))
            .unwrap();
    }
    let mut seen = Vec::new();
    // Resume readdir every 100 entries, as getdents with a small buffer.
    let mut position = FIRST_POSITION;
    loop {
        let mut batch = 0;
        let mut last_next = None;
        v.readdir(dir, position, &mut |e| {
            if batch == 100 {
                return false;
            }
            batch += 1;
            seen.push(String::from_utf8(e.name.to_vec()).unwrap());
            last_next = Some(e.next_cookie);
            true
        })
        .unwrap();
        match last_next {
            Some(next) if batch == 100 => position = next,
            _ => break,
        }
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), N);
    for i in (0..N).step_by(7) {
        assert!(v
            .lookup(dir, alloc::format!("entry-{i}").as_bytes())
            .is_ok());
    }
    for i in (0..N).step_by(2) {
        let gone = v
            .unlink(dir, alloc::format!("entry-{i}").as_bytes(), T0)
            .unwrap();
        v.evict(gone.ino).unwrap();
    }
    assert_eq!(v.inode(dir).unwrap().size, (N / 2) as u64);
    unmount_and_check(v);
}

/// An inode unlinked while open and never evicted (a read-only remount,
/// a crash) keeps the filesystem from being marked clean; the next mount
/// frees it.
#[test]
fn orphans_survive_until_the_next_mount() {
    let mut v = mount(formatted(32, None));
    let root = v.root();
    let free_at_start = v.statfs().free_blocks;
    let (f, _) = v.create(root, b"open", &file(REG)).unwrap();
    write(&mut v, f, 0, &pattern(4, 100_000)).unwrap();
    let gone = v.unlink(root, b"open", T0).unwrap();
    assert_eq!((gone.ino, gone.inode.nlink), (f, 0));
    v.set_read_only(true).unwrap();
    assert_eq!(v.evict(f), Err(Error::ReadOnly));
    v.set_read_only(false).unwrap();
    v.set_read_only(true).unwrap();
    let image = unmount_and_check(v);
    let (v, report) = Volume::mount(Pmem::new(image), Buffers::new(), false).unwrap();
    assert!(report.was_dirty);
    assert_eq!(v.inode(f), Err(Error::NotFound));
    assert_eq!(v.statfs().free_blocks, free_at_start);
    unmount_and_check(v);
}

/// Evicted inodes are freed in batches: until then they are orphans, which
/// a crash leaves to the next mount and an unmount or `statfs` frees; a
/// full batch is freed by the next eviction, whatever fits in one
/// transaction at once.
#[test]
fn evicted_inodes_are_freed_in_batches() {
    let mut v = mount(formatted(32, None));
    let root = v.root();
    let start = v.statfs();
    let count = EVICT_BATCH as u32 * 2 + 3;
    let mut inos = Vec::new();
    for i in 0..count {
        let name = alloc::format!("f{i}");
        let (ino, _) = v.create(root, name.as_bytes(), &file(REG)).unwrap();
        if i % 3 == 0 {
            write(&mut v, ino, 0, &pattern(u64::from(i), 5000)).unwrap();
        }
        inos.push(ino);
    }
    let crash_image = |v: &TestVolume| v.media().bytes().to_vec();
    for (i, &ino) in inos.iter().enumerate() {
        let name = alloc::format!("f{i}");
        v.unlink(root, name.as_bytes(), T0).unwrap();
        // Only a file that had blocks, or a batch of inodes freed, frees
        // blocks (compaction is told).
        let batch = i > 0 && i % EVICT_BATCH == 0;
        assert_eq!(v.evict(ino), Ok(i % 3 == 0 || batch), "f{i}");
        // Evicting twice (or a number already queued) queues it once.
        assert_eq!(v.evict(ino), Ok(false), "f{i} again");
    }
    // Two full batches were freed by the evictions after them; the last
    // three wait, in use with no links.
    let waiting = &inos[inos.len() - 3..];
    for &ino in &inos[..inos.len() - 3] {
        assert_eq!(v.inode(ino), Err(Error::NotFound), "{ino}");
    }
    for &ino in waiting {
        assert_eq!(v.inode(ino).unwrap().nlink, 0);
    }
    // A crash now: the next mount frees them.
    let (after_crash, report) =
        Volume::mount(Pmem::new(crash_image(&v)), Buffers::new(), false).unwrap();
    assert!(report.was_dirty);
    for &ino in waiting {
        assert_eq!(after_crash.inode(ino), Err(Error::NotFound));
    }
    assert_eq!(after_crash.statfs(), start);
    unmount_and_check(after_crash);
    // Without a crash, freeing them gives everything back.
    v.free_evicted().unwrap();
    for &ino in waiting {
        assert_eq!(v.inode(ino), Err(Error::NotFound));
    }
    assert_eq!(v.statfs(), start);
    assert_eq!(owners(&v), [v.root()].into_iter().collect());
    // An unmount frees what waits too, and marks the filesystem clean.
    let (f, _) = v.create(root, b"last", &file(REG)).unwrap();
    v.unlink(root, b"last", T0).unwrap();
    v.evict(f).unwrap();
    let image = unmount_and_check(v);
    let (v, report) = Volume::mount(Pmem::new(image), Buffers::new(), false).unwrap();
    assert!(!report.was_dirty);
    assert_eq!(v.inode(f), Err(Error::NotFound));
    assert_eq!(v.statfs(), start);
    unmount_and_check(v);
}

/// A block a transaction both changes and frees (the last record of an
/// inode chunk cleared, a directory leaf merged away) must not stay in the
/// metadata cache: reused, it is zeroed or written on the device past the
/// cache, and a stale copy would be what the next transaction diffs and
/// checks against (the guest's benchmark met it: creating files after
/// deleting many failed with a damaged inode record).
#[test]
fn blocks_freed_by_a_commit_leave_the_cache() {
    let mut v = mount(formatted(64, None));
    let root = v.root();
    for round in 0..6u32 {
        let dir_name = alloc::format!("d{round}");
        let (dir, _) = v.create(root, dir_name.as_bytes(), &file(DIR)).unwrap();
        let count = 300 + 100 * round;
        let mut inos = Vec::new();
        for i in 0..count {
            let name = alloc::format!("{}-{i}", "x".repeat((i % 40) as usize));
            let (ino, _) = v
                .create(dir, name.as_bytes(), &file(REG))
                .unwrap_or_else(|e| panic!("round {round}: creating file {i}: {e:?}"));
            if i % 7 == 0 {
                write(&mut v, ino, 0, &pattern(u64::from(i), 9000)).unwrap();
            }
            inos.push(ino);
        }
        // Every other file first: leaves empty out in the middle.
        for pass in 0..2u32 {
            for (i, &ino) in inos.iter().enumerate() {
                if i as u32 % 2 != pass {
                    continue;
                }
                let name = alloc::format!("{}-{i}", "x".repeat(i % 40));
                v.unlink(dir, name.as_bytes(), T0).unwrap();
                v.evict(ino).unwrap();
            }
        }
        let gone = v.rmdir(root, dir_name.as_bytes(), T0).unwrap();
        v.evict(gone.ino).unwrap();
    }
    let image = unmount_and_check(v);
    let v = mount(image);
    assert!(listing(&v).is_empty());
    unmount_and_check(v);
}

/// A transaction that changed one record of an inode block does not put
/// its copy of the whole block in the cache: the other records in it are
/// as it read them, and once several transactions run, another may have
/// committed one of them meanwhile (here its home write is made by hand,
/// with the block gone from the cache, as a busy cache lets it go).
#[test]
fn a_record_change_does_not_cache_its_copy_of_the_other_records() {
    let mut v = mount(formatted(32, None));
    let root = v.root();
    let (a, _) = v.create(root, b"a", &file(REG)).unwrap();
    let (b, old_b) = v.create(root, b"b", &file(REG)).unwrap();
    assert_eq!(a >> 4, b >> 4, "both records in one block");
    let mut new_a = v.inode(a).unwrap();
    new_a.mtime.sec += 1;
    let mut new_b = old_b;
    new_b.mtime.sec += 7;
    v.put_inode_beside(a, &new_a, (b, &new_b)).unwrap();
    assert_eq!(v.inode_uncached(a), Ok(new_a));
    assert_eq!(
        v.inode_uncached(b),
        Ok(new_b),
        "the other record as the media holds it"
    );
    let v = mount(unmount_and_check(v));
    assert_eq!(v.inode(b), Ok(new_b));
}

/// Only what changes space takes the space lock (stage 4 of
/// Documentation/oxdax/concurrency.rst): a create allocates an inode, but
/// a rename, a link, an attribute change and an unlink whose inode is not
/// freed yet change only names and records, and would run beside it.
#[test]
fn only_changes_of_space_take_the_space_lock() {
    let mut v = mount(formatted(32, None));
    let root = v.root();
    let (dir, _) = v.create(root, b"d", &file(DIR)).unwrap();
    let (ino, _) = v.create(dir, b"f", &file(REG)).unwrap();
    let taken = |v: &TestVolume| v.scratch().space_locks();
    let before = taken(&v);
    v.rename(dir, b"f", root, b"g", RenameFlags::default(), T0)
        .unwrap();
    v.link(ino, dir, b"h", T0).unwrap();
    let change = AttrChange {
        mode: Some(0o600),
        ..AttrChange::default()
    };
    v.set_attr(ino, &change).unwrap();
    v.unlink(root, b"g", T0).unwrap();
    v.unlink(dir, b"h", T0).unwrap();
    assert_eq!(taken(&v), before, "names and records only");
    v.create(dir, b"new", &file(REG)).unwrap();
    assert_eq!(taken(&v), before + 1, "a create allocates an inode");
    v.evict(ino).unwrap();
    unmount_and_check(v);
}

/// A new inode chunk needs four contiguous blocks: one-block holes left
/// near the start of the data area by a deleted file, however many, must
/// not make creating files fail while there is room further on.
#[test]
fn inode_chunks_are_found_past_many_one_block_holes() {
    let mut v = mount(formatted(64, None));
    let root = v.root();
    let (a, _) = v.create(root, b"a", &file(REG)).unwrap();
    let (b, _) = v.create(root, b"b", &file(REG)).unwrap();
    let block = pattern(3, 4096);
    // Interleaved one-block writes: a's and b's blocks alternate on disk.
    for i in 0..40u64 {
        write(&mut v, a, i * 2 * 4096, &block).unwrap();
        write(&mut v, b, i * 2 * 4096, &block).unwrap();
    }
    v.unlink(root, b"b", T0).unwrap();
    v.evict(b).unwrap();
    for i in 0..300u32 {
        let name = alloc::format!("f{i}");
        v.create(root, name.as_bytes(), &file(REG))
            .unwrap_or_else(|e| panic!("creating file {i}: {e:?}"));
    }
    unmount_and_check(v);
}

/// A name at collision index 1 of its hash (another name came first with
/// the same hash, crafted here by moving two entries) is found and
/// removed by unlink, which tries index 0 first, and the other entry
/// stays.
#[test]
fn a_name_past_a_hash_collision_is_unlinked_and_the_other_stays() {
    use crate::logic::format::kinds::dirent_key;
    let mut v = mount(formatted(32, None));
    let root = v.root();
    let (d, _) = v.create(root, b"d", &file(DIR)).unwrap();
    let (a, _) = v.create(d, b"a", &file(REG)).unwrap();
    let (z, _) = v.create(d, b"z", &file(REG)).unwrap();
    let uuid = v.superblock().uuid;
    v.rekey_dirent(d, b"a", &dirent_key(&uuid, b"a", 1));
    v.rekey_dirent(d, b"z", &dirent_key(&uuid, b"a", 0));
    assert_eq!(v.lookup(d, b"a"), Ok(a));
    let gone = v.unlink(d, b"a", T0).unwrap();
    assert_eq!((gone.ino, gone.inode.nlink), (a, 0));
    assert_eq!(v.lookup(d, b"a"), Err(Error::NotFound));
    assert_eq!(v.unlink(d, b"a", T0).err(), Some(Error::NotFound));
    let mut names = Vec::new();
    v.readdir(d, FIRST_POSITION, &mut |e| {
        names.push((e.name.to_vec(), e.ino));
        true
    })
    .unwrap();
    assert_eq!(names, vec![(b"z".to_vec(), z)]);
    assert_eq!(v.inode(d).unwrap().size, 1);
    // Created again, the name takes the next free index of its hash, and
    // a create of a name at index 1 finds it there.
    let (again, _) = v.create(d, b"a", &file(REG)).unwrap();
    assert_eq!(v.lookup(d, b"a"), Ok(again));
    assert_eq!(v.create(d, b"a", &file(REG)).err(), Some(Error::Exists));
    assert_eq!(v.inode(d).unwrap().size, 2);
}
