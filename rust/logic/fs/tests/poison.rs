// SPDX-License-Identifier: GPL-2.0

//! Tests of failed memory: poisoned blocks are never read, mapped,
//! reused or written, and the free-space summary stays right.

use super::*;

#[test]
fn poisoned_blocks_are_never_read_mapped_or_reused() {
    let mut v = mount(formatted(64, None));
    let root = v.root();
    let (f, _) = v.create(root, b"f", &file(REG)).unwrap();
    let data = pattern(21, 8 * 4096);
    write(&mut v, f, 0, &data).unwrap();
    let m = v.map_read(f, 0, 8).unwrap();
    assert_eq!((m.kind, m.len), (MapKind::Data, 8));
    let bad = m.physical + 3;
    v.poison(bad, 1).unwrap();

    // Mappings stop before the poisoned block; the block itself fails, for
    // reads and writes alike (a write must not copy or convert it).
    assert_eq!(v.map_data(f, 0, 8).unwrap().len, 3);
    assert_eq!(v.map_data(f, 3, 1), Err(Error::Poisoned));
    assert_eq!(
        v.map_write(f, 3, 5, SharedWrite::Copy),
        Err(Error::Poisoned)
    );
    assert_eq!(v.map_data(f, 4, 4).unwrap().physical, bad + 1);
    // What the file maps is still told as it is (SEEK_DATA, FIEMAP).
    assert_eq!(v.map_read(f, 0, 8).unwrap().len, 8);

    // Punched, it is free on the device but never handed out again, by
    // small or chunk-sized allocations.
    v.punch_hole(f, 3 * 4096, 4096, T0).unwrap();
    assert_eq!(read(&v, f, 3 * 4096, 4096), vec![0u8; 4096]);
    let (g, _) = v.create(root, b"g", &file(REG)).unwrap();
    for i in 0..64u64 {
        let m = v.map_write(g, i * 7, 1, SharedWrite::Copy).unwrap();
        assert_ne!(m.physical, bad);
    }
    write(&mut v, f, 3 * 4096, &data[3 * 4096..4 * 4096]).unwrap();
    let m = v.map_read(f, 3, 1).unwrap();
    assert_ne!(m.physical, bad, "the rewrite got another block");
    assert_eq!(read(&v, f, 0, data.len()), data);
    let used_before = v.statfs().free_blocks;
    v.allocate(g, 8 << 20, 8 << 20, false, T0).unwrap();
    assert!(v.statfs().free_blocks < used_before);
    let bad_chunk = bad / CHUNK_BLOCKS;
    for i in 0..4 {
        let m = v
            .map_read(g, (8 << 20) / 4096 + i * CHUNK_BLOCKS, 1)
            .unwrap();
        assert_ne!(m.physical / CHUNK_BLOCKS, bad_chunk);
    }

    // Everything freed: the device's maps agree with the reverse map (the
    // poisoned block's bit stayed clear), the check is clean.
    v.unlink(root, b"g", T0).unwrap();
    v.evict(g).unwrap();
    unmount_and_check(v);
}

/// A block with failed memory is never written: truncating or punching
/// into the middle of it fails (EIO) and leaves it alone; whole-block
/// punches still take it out.
#[test]
fn partial_truncate_or_punch_never_writes_a_poisoned_block() {
    const BS: u64 = BLOCK_SIZE as u64;
    let mut v = mount(formatted(64, None));
    let root = v.root();
    let (f, _) = v.create(root, b"f", &file(REG)).unwrap();
    let data = pattern(6, 4 * 4096);
    write(&mut v, f, 0, &data).unwrap();
    let m = v.map_read(f, 0, 4).unwrap();
    let bad = m.physical + 2;
    v.poison(bad, 1).unwrap();
    let before = v.media().region(bad * BS, 4096).unwrap().to_vec();
    let shrink = AttrChange {
        size: Some(2 * BS + 100),
        ..Default::default()
    };
    assert_eq!(v.set_attr(f, &shrink).map(|_| ()), Err(Error::Poisoned));
    assert_eq!(
        v.punch_hole(f, 2 * BS + 10, 100, T0).map(|_| ()),
        Err(Error::Poisoned)
    );
    assert_eq!(v.media().region(bad * BS, 4096).unwrap(), &before[..]);
    assert_eq!(v.inode(f).unwrap().size, data.len() as u64);
    v.punch_hole(f, 2 * BS, BS, T0).unwrap();
    assert_eq!(v.map_read(f, 2, 1).unwrap().kind, MapKind::Hole);
    v.set_attr(f, &shrink).unwrap();
    unmount_and_check(v);
}

/// Failed memory in the zero chunk retires it: never mapped again (also
/// after a read-only remount made writable), never allocated while
/// mounted, and the next one chosen has no failed block.
#[test]
fn a_failed_zero_chunk_is_retired() {
    let mut v = mount(formatted(16, None));
    let first = v.reserve_zero_chunk().unwrap();
    // A poisoned free block keeps the next pick away from its chunk (the
    // chunk picked next otherwise: they go from the end).
    let second = first - CHUNK_BLOCKS;
    v.poison(second + 3, 1).unwrap();
    v.set_read_only(true).unwrap();
    v.poison(first + 7, 1).unwrap();
    assert_eq!(v.reserve_zero_chunk(), None, "read-only");
    v.set_read_only(false).unwrap();
    let third = v.reserve_zero_chunk().unwrap();
    assert!(third != first && third != second);
    assert_eq!(v.reserve_zero_chunk(), Some(third));
    let root = v.root();
    let (f, _) = v.create(root, b"fill", &file(REG)).unwrap();
    let data = pattern(7, 256 << 10);
    let mut written = 0u64;
    while write(&mut v, f, written, &data).is_ok() {
        written += data.len() as u64;
    }
    let mut block = 0;
    while block < written / BLOCK_SIZE as u64 {
        let m = v.map_read(f, block, u64::MAX / 2).unwrap();
        for chunk in [first, third] {
            assert!(
                m.physical + m.len <= chunk || m.physical >= chunk + CHUNK_BLOCKS,
                "{m:?} in chunk {chunk}"
            );
        }
        assert!(!(m.physical..m.physical + m.len).contains(&(second + 3)));
        block += m.len;
    }
    unmount_and_check(v);
}

/// A poisoned block freed with the rest of a fully used chunk (a large
/// file unlinked or punched): the device's summary counts it free, as its
/// bitmap does, while the allocator never hands it out.
#[test]
fn freeing_a_poisoned_block_of_a_full_chunk_keeps_the_summary() {
    let mut v = mount(formatted(64, None));
    let root = v.root();
    for how in ["unlink", "punch"] {
        let (f, _) = v.create(root, how.as_bytes(), &file(REG)).unwrap();
        v.allocate(f, 0, 4 << 20, false, T0).unwrap();
        write(&mut v, f, 0, &pattern(8, 4 << 20)).unwrap();
        let m = v.map_read(f, 0, 1024).unwrap();
        assert_eq!(m.physical % CHUNK_BLOCKS, 0, "{m:?}");
        v.poison(m.physical + 100, 1).unwrap();
        if how == "unlink" {
            v.unlink(root, b"unlink", T0).unwrap();
            v.evict(f).unwrap();
        } else {
            v.punch_hole(f, 0, 4 << 20, T0).unwrap();
        }
        let (g, _) = v.create(root, b"g", &file(REG)).unwrap();
        v.allocate(g, 0, 8 << 20, false, T0).unwrap();
        let mut block = 0;
        while block < 2048 {
            let m2 = v.map_read(g, block, 2048).unwrap();
            assert!(!(m2.physical..m2.physical + m2.len).contains(&(m.physical + 100)));
            block += m2.len;
        }
        v.unlink(root, b"g", T0).unwrap();
        v.evict(g).unwrap();
    }
    unmount_and_check(v);
}

/// Metadata and data are read only by copying, and a copy of failed memory
/// is an error: a damaged tree node fails the operations that need it with
/// "unreadable" (EIO), a copy-on-write from a failed block with
/// `Poisoned`, a failed primary superblock mounts from the backup. Nothing
/// panics, nothing else is affected.
#[test]
fn failed_memory_is_an_error_where_it_is_read() {
    const BS: u64 = BLOCK_SIZE as u64;
    let mut v = mount(formatted(64, None));
    let root = v.root();
    let (a, _) = v.create(root, b"a", &file(REG)).unwrap();
    let (b, _) = v.create(root, b"b", &file(REG)).unwrap();
    for i in 0..40 {
        // Enough extents for a tree of its own, not a single leaf.
        write(&mut v, a, i * 2 * BS, &pattern(i, BLOCK_SIZE)).unwrap();
    }
    let data = pattern(9, 3 * BLOCK_SIZE);
    write(&mut v, b, 0, &data).unwrap();
    let (c, _) = v.create(root, b"c", &file(REG)).unwrap();
    v.reflink(b, 0, c, 0, 3 * BS, T0).unwrap();
    let a_root = v.inode(a).unwrap().map_root;
    let shared = v.map_read(c, 1, 1).unwrap().physical;
    let image = unmount_and_check(v);

    let mut v = mount(image.clone());
    v.media().fail_block(a_root);
    assert_eq!(
        v.map_read(a, 0, 1).map(|_| ()),
        Err(Error::Corrupt(a_root, Damage::Unreadable))
    );
    assert!(v.map_write(a, 200, 1, SharedWrite::Copy).is_err());
    assert_eq!(read(&v, b, 0, data.len()), data, "other files still read");
    v.media().fail_block(shared);
    assert_eq!(
        v.map_write(c, 1, 1, SharedWrite::Copy).map(|_| ()),
        Err(Error::Poisoned),
        "copy-on-write from a failed block"
    );
    assert!(v.map_read(c, 0, 3).is_ok(), "the mapping is still told");
    v.unmount();

    let v = Volume::mount(Pmem::new(image), Buffers::new(), false);
    let (mut v, report) = match v {
        Ok(mounted) => mounted,
        Err(e) => panic!("{e:?}"),
    };
    assert!(!report.used_backup);
    v.unmount();
    let pmem = Pmem::new(unmount_and_check(mount(formatted(64, None))));
    pmem.fail_block(0);
    let (mut v, report) = Volume::mount(pmem, Buffers::new(), false).unwrap();
    assert!(report.used_backup, "the primary superblock failed");
    v.unmount();
}
