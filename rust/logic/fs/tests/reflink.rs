// SPDX-License-Identifier: GPL-2.0

//! Tests of reflink, copy-on-write and the reverse map's answers.

use super::*;

/// Cloning a file of thousands of small extents over another: many
/// transactions, each as full as it can be, none too full.
#[test]
fn clone_of_a_fragmented_file_over_another() {
    const BS: u64 = BLOCK_SIZE as u64;
    let mut v = mount(formatted(64, None));
    let root = v.root();
    let (src, _) = v.create(root, b"src", &file(REG)).unwrap();
    let (dst, _) = v.create(root, b"dst", &file(REG)).unwrap();
    let blocks = 4096u64;
    let mut model = pattern(7, (blocks * BS) as usize);
    write(&mut v, src, 0, &model).unwrap();
    // Every other block punched, then some rewritten, some shared with
    // the file itself: extents of one block, alternating with holes, with
    // refcounts changing along the way.
    for b in (0..blocks).step_by(2) {
        v.punch_hole(src, b * BS, BS, T0).unwrap();
        model[(b * BS) as usize..((b + 1) * BS) as usize].fill(0);
    }
    let (other, _) = v.create(root, b"other", &file(REG)).unwrap();
    for b in (1..blocks).step_by(6) {
        v.reflink(src, b * BS, other, b * BS, BS, T0).unwrap();
    }
    let old = pattern(8, (blocks * BS) as usize);
    write(&mut v, dst, 0, &old).unwrap();
    v.reflink(src, 0, dst, 0, blocks * BS, T0).unwrap();
    assert!(read(&v, dst, 0, model.len()) == model);
    assert!(read(&v, src, 0, model.len()) == model);
    unmount_and_check(v);
}

#[test]
fn reflink_shares_blocks_and_copies_on_write() {
    let mut v = mount(formatted(64, None));
    let root = v.root();
    let free_at_start = v.statfs().free_blocks;
    let (src, _) = v.create(root, b"src", &file(REG)).unwrap();
    let original = pattern(11, (2 << 20) + 5000);
    write(&mut v, src, 0, &original).unwrap();
    let used = free_at_start - v.statfs().free_blocks;
    let (dst, _) = v.create(root, b"dst", &file(REG)).unwrap();
    let inode = v
        .reflink(src, 0, dst, 0, original.len() as u64, T0)
        .unwrap();
    assert_eq!(inode.size, original.len() as u64);
    // Sharing costs no data blocks (only tree nodes).
    assert!(free_at_start - v.statfs().free_blocks < used + 4);
    assert_eq!(read(&v, dst, 0, original.len()), original);
    let m = v.map_read(dst, 0, 10).unwrap();
    assert!(m.shared);
    assert_eq!(m.physical, v.map_read(src, 0, 10).unwrap().physical);

    // Copy on write, after a remount: writing the clone leaves the source
    // alone.
    let mut v = mount(unmount_and_check(v));
    let src = v.lookup(root, b"src").unwrap();
    let dst = v.lookup(root, b"dst").unwrap();
    // The fault engine learns that blocks were copied (old mappings of
    // this file must go); a second write finds them private.
    let copy = v.map_write(dst, 1, 1, SharedWrite::Copy).unwrap();
    assert!(copy.copied && copy.new && !copy.shared);
    let again = v.map_write(dst, 1, 1, SharedWrite::Copy).unwrap();
    assert!(!again.copied && !again.new);
    assert_eq!(again.physical, copy.physical);
    write(&mut v, dst, 4096 + 7, b"changed").unwrap();
    assert_eq!(read(&v, src, 0, original.len()), original);
    let mut expected = original.clone();
    expected[4096 + 7..4096 + 14].copy_from_slice(b"changed");
    assert_eq!(read(&v, dst, 0, original.len()), expected);
    assert!(!v.map_read(dst, 1, 1).unwrap().shared);
    assert!(v.map_read(dst, 2, 1).unwrap().shared);
    // Clone a range into the middle of another file, over its data.
    let (third, _) = v.create(root, b"third", &file(REG)).unwrap();
    write(&mut v, third, 0, &pattern(12, 64 << 10)).unwrap();
    v.reflink(src, 8192, third, 16384, 8192, T0).unwrap();
    assert_eq!(read(&v, third, 16384, 8192), &original[8192..16384]);
    // Same-file overlapping ranges are refused.
    assert_eq!(
        v.reflink(src, 0, src, 4096, 8192, T0).map(|_| ()),
        Err(Error::Invalid)
    );
    // Unlinking the source keeps the clones intact.
    let gone = v.unlink(root, b"src", T0).unwrap();
    v.evict(gone.ino).unwrap();
    assert_eq!(read(&v, dst, 0, original.len()), expected);
    assert_eq!(read(&v, third, 16384, 8192), &original[8192..16384]);
    let image = unmount_and_check(v);
    let mut v = mount(image);
    for name in [&b"dst"[..], b"third"] {
        let gone = v.unlink(root, name, T0).unwrap();
        v.evict(gone.ino).unwrap();
    }
    assert_eq!(owners(&v), [root].into_iter().collect());
    // Every refcount record is gone with the last sharer.
    let sb = *v.superblock();
    let refcounts =
        crate::logic::format::btree::Tree::<crate::logic::format::kinds::RefCounts>::open(
            sb.refcount_root,
            crate::logic::format::kinds::OWNER_REFCOUNTS,
        );
    let mut records = 0;
    let _ = refcounts.scan(
        &super::tx::Committed::checking_all(v.media()),
        &[0u8; 8],
        &mut |_, _| {
            records += 1;
            core::ops::ControlFlow::Continue(())
        },
    );
    assert_eq!(records, 0);
    unmount_and_check(v);
}

/// The reverse map answers, for every block, exactly the files and file
/// blocks that map it (all sharers of reflinked blocks) or the metadata
/// that owns it.
#[test]
fn owners_of_every_block_match_the_files() {
    let mut v = mount(formatted(32, None));
    let root = v.root();
    let mut rng = Lcg(8);
    let mut files = Vec::new();
    for i in 0..12u64 {
        let (f, _) = v
            .create(root, alloc::format!("f{i}").as_bytes(), &file(REG))
            .unwrap();
        write(
            &mut v,
            f,
            (rng.next() % 64) * 4096,
            &pattern(i, 4096 * (1 + rng.next() as usize % 40)),
        )
        .unwrap();
        files.push(f);
    }
    for _ in 0..10 {
        let (a, b) = (
            files[rng.next() as usize % 12],
            files[rng.next() as usize % 12],
        );
        let _ = v.reflink(
            a,
            (rng.next() % 8) * 4096,
            b,
            (rng.next() % 80) * 4096,
            8 * 4096,
            T0,
        );
        let _ = v.punch_hole(b, (rng.next() % 80) * 4096, 3 * 4096, T0);
        let _ = write(&mut v, a, (rng.next() % 40) * 4096, &pattern(99, 5000));
    }
    let mut expected: BTreeMap<u64, Vec<(u64, u64)>> = BTreeMap::new();
    for &f in &files {
        // Past the end of file too: a 2 MiB region's unwritten rest.
        let size_blocks = v
            .inode(f)
            .unwrap()
            .size
            .div_ceil(4096)
            .next_multiple_of(512)
            + 8;
        let mut block = 0;
        while block < size_blocks {
            let m = v.map_read(f, block, size_blocks - block).unwrap();
            if m.kind != MapKind::Hole {
                for i in 0..m.len {
                    expected
                        .entry(m.physical + i)
                        .or_default()
                        .push((f, m.file_block + i));
                }
            }
            block = m.file_block + m.len;
        }
    }
    assert!(
        expected.values().any(|o| o.len() >= 2),
        "the workload shares blocks"
    );
    let sb = *v.superblock();
    for block in sb.layout.data_start..sb.layout.data_start + 3000 {
        let mut data = Vec::new();
        let mut metadata = 0;
        v.owners(block, 1, &mut |o| {
            assert_eq!((o.start, o.len), (block, 1));
            if o.metadata {
                metadata += 1;
            } else {
                data.push((o.owner, o.file_block));
            }
            true
        })
        .unwrap();
        data.sort();
        let mut want = expected.get(&block).cloned().unwrap_or_default();
        want.sort();
        assert_eq!(data, want, "owners of block {block}");
        assert!(metadata == 0 || data.is_empty(), "block {block} is both");
    }
    // The root directory's tree root is metadata of the root.
    let node = v.inode(root).unwrap().map_root;
    let mut found = Vec::new();
    v.owners(node, 1, &mut |o| {
        found.push((o.owner, o.metadata));
        true
    })
    .unwrap();
    assert_eq!(found, [(root, true)]);
    unmount_and_check(v);
}

/// fsck's space repair: a leaked block (in use, no owner), an owned block
/// marked free and wrong counters are all put right.
#[test]
fn repair_space_fixes_the_maps_from_the_reverse_map() {
    let (image, _) = fuzz_base();
    let sb = {
        let v = mount(image.clone());
        *v.superblock()
    };
    let mut damaged = image.clone();
    let bitmap = sb.layout.bitmap_start as usize * BLOCK_SIZE;
    // A leak: the last data block marked used.
    let last = sb.layout.block_count - 1;
    damaged[bitmap + (last / 8) as usize] |= 1 << (last % 8);
    // An owned block (the root's directory node) marked free.
    let root = mount(image.clone()).inode(sb.root_ino).unwrap().map_root;
    damaged[bitmap + (root / 8) as usize] &= !(1 << (root % 8));
    assert!(check_filesystem(&Flat(damaged.clone())).is_err());
    let mut v = mount(damaged);
    assert_eq!(v.repair_space(), Ok(2));
    assert_eq!(v.repair_space(), Ok(0));
    let repaired = unmount_and_check(v);
    let report = check_filesystem(&Flat(repaired)).unwrap();
    assert_eq!(report.superblock.free_blocks, sb.free_blocks);
}

#[test]
fn clone_within_a_file_splitting_the_root() {
    for extents in [60u64, 100, 150, 200, 300] {
        let (mut v, f, model) = fragmented_file(extents);
        let len = model.len() as u64;
        // The copy's extents go into the tree the source is read from.
        v.reflink(f, 0, f, len, len, T0).unwrap();
        assert!(read(&v, f, 0, model.len()) == model, "{extents} extents");
        assert!(
            read(&v, f, len, model.len()) == model,
            "{extents} extents, copy"
        );
        unmount_and_check(v);
    }
}

/// A clone that ends at the source's end of file inside a block, into the
/// middle of a larger file, brings only the source's bytes: the rest of
/// that block reads as zeros there (and the source is left alone).
#[test]
fn a_clone_ending_inside_the_sources_last_block_brings_no_tail() {
    const BS: u64 = BLOCK_SIZE as u64;
    let mut v = mount(formatted(64, None));
    let root = v.root();
    let (src, _) = v.create(root, b"src", &file(REG)).unwrap();
    let data = pattern(3, 5000);
    write(&mut v, src, 0, &data).unwrap();
    let tail = v.map_read(src, 1, 1).unwrap();
    assert!(v.media().write(tail.physical * BS + 1000, &[0xee; 100]));
    let (dst, _) = v.create(root, b"dst", &file(REG)).unwrap();
    let old = pattern(4, 16384);
    write(&mut v, dst, 0, &old).unwrap();
    v.reflink(src, 0, dst, 0, 5000, T0).unwrap();
    let content = read(&v, dst, 0, 16384);
    assert_eq!(&content[..5000], &data[..]);
    assert!(content[5000..8192].iter().all(|&b| b == 0));
    assert_eq!(&content[8192..], &old[8192..]);
    let mut expected_tail = vec![0u8; 4096];
    expected_tail[..5000 - 4096].copy_from_slice(&data[4096..]);
    expected_tail[1000..1100].fill(0xee);
    assert_eq!(
        v.media().region(tail.physical * BS, 4096).unwrap(),
        &expected_tail[..],
        "the source's block is not written"
    );
    unmount_and_check(v);
}

/// `SharedWrite::Report` answers shared blocks as they are and changes
/// nothing; `Copy` then copies them.
#[test]
fn shared_blocks_are_reported_before_they_are_copied() {
    let mut v = mount(formatted(64, None));
    let root = v.root();
    let (src, _) = v.create(root, b"src", &file(REG)).unwrap();
    let data = pattern(5, 3 * 4096);
    write(&mut v, src, 0, &data).unwrap();
    let (dst, _) = v.create(root, b"dst", &file(REG)).unwrap();
    v.reflink(src, 0, dst, 0, data.len() as u64, T0).unwrap();
    let shared = v.map_read(src, 0, 3).unwrap();
    let free = v.statfs().free_blocks;
    let report = v.map_write(dst, 1, 2, SharedWrite::Report).unwrap();
    assert!(report.shared && !report.copied && !report.new);
    assert_eq!(report.physical, shared.physical + 1);
    assert_eq!(v.statfs().free_blocks, free, "nothing allocated");
    assert!(v.map_read(dst, 1, 1).unwrap().shared);
    let copy = v.map_write(dst, 1, 2, SharedWrite::Copy).unwrap();
    assert!(copy.copied && !copy.shared && copy.physical != report.physical);
    assert_eq!(read(&v, dst, 0, data.len()), data);
    unmount_and_check(v);
}
