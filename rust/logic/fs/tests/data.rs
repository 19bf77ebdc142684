// SPDX-License-Identifier: GPL-2.0

//! Tests of file data: writes, holes, truncation, fallocate, growth,
//! a full filesystem, against a byte model.

use super::*;

#[test]
fn file_data_holes_truncate_and_alignment() {
    let mut v = mount(formatted(64, None));
    let root = v.root();
    let free_at_start = v.statfs().free_blocks;
    let (f, _) = v.create(root, b"f", &file(REG)).unwrap();
    // Sparse: a write at 1 MiB + 3 leaves a hole that reads as zeros.
    let data = pattern(1, 10_000);
    write(&mut v, f, (1 << 20) + 3, &data).unwrap();
    assert_eq!(v.inode(f).unwrap().size, (1 << 20) + 3 + 10_000);
    assert_eq!(read(&v, f, 0, 4096), vec![0u8; 4096]);
    assert_eq!(read(&v, f, (1 << 20) + 3, 10_000), data);
    assert_eq!(v.map_read(f, 0, 256).unwrap().kind, MapKind::Hole);
    // The write started its 2 MiB region in a chunk of its own, at the
    // place that keeps the region congruent.
    assert_eq!(v.map_read(f, 256, 3).unwrap().physical % CHUNK_BLOCKS, 256);
    // A 4 MiB write at offset 0 gets 2 MiB-aligned physical blocks.
    let (g, _) = v.create(root, b"g", &file(REG)).unwrap();
    let big = pattern(2, 4 << 20);
    write(&mut v, g, 0, &big).unwrap();
    let m = v.map_read(g, 0, 1024).unwrap();
    assert_eq!(m.physical % CHUNK_BLOCKS, 0);
    assert_eq!(m.len, 1024, "one extent");
    // Sequential small appends merge into one extent.
    let (h, _) = v.create(root, b"h", &file(REG)).unwrap();
    for i in 0..64u64 {
        write(&mut v, h, i * 4096, &pattern(i, 4096)).unwrap();
    }
    assert_eq!(v.map_read(h, 0, 64).unwrap().len, 64);
    // Truncate down to a partial block, then up again: zeros past it.
    v.set_attr(
        f,
        &AttrChange {
            size: Some((1 << 20) + 10),
            ..Default::default()
        },
    )
    .unwrap();
    v.set_attr(
        f,
        &AttrChange {
            size: Some((1 << 20) + 5000),
            ..Default::default()
        },
    )
    .unwrap();
    let tail = read(&v, f, (1 << 20) + 3, 4997);
    assert_eq!(&tail[..7], &data[..7]);
    assert!(tail[7..].iter().all(|&b| b == 0));
    let image = unmount_and_check(v);
    let mut v = mount(image);
    assert_eq!(read(&v, g, 0, 4 << 20), big);
    for ino in [f, g, h] {
        let name: &[u8] = match ino {
            x if x == f => b"f",
            x if x == g => b"g",
            _ => b"h",
        };
        let gone = v.unlink(root, name, T0).unwrap();
        v.evict(gone.ino).unwrap();
    }
    assert_eq!(v.statfs().free_blocks, free_at_start);
    unmount_and_check(v);
}

#[test]
fn full_filesystem_keeps_what_was_written() {
    let mut v = mount(formatted(16, None));
    let root = v.root();
    let (f, _) = v.create(root, b"fill", &file(REG)).unwrap();
    let chunk = pattern(3, 64 << 10);
    let mut written = 0u64;
    loop {
        match write(&mut v, f, written, &chunk) {
            Ok(()) => written += chunk.len() as u64,
            Err(Error::NoSpace) => break,
            Err(e) => panic!("{e:?}"),
        }
    }
    assert!(written > 4 << 20);
    assert_eq!(
        v.create(root, b"more", &file(DIR)).map(|_| ()).is_err(),
        true
    );
    let size = v.inode(f).unwrap().size;
    assert!(size >= written);
    let image = unmount_and_check(v);
    let v = mount(image);
    for i in 0..written / chunk.len() as u64 {
        assert_eq!(read(&v, f, i * chunk.len() as u64, chunk.len()), chunk);
    }
    unmount_and_check(v);
}

#[test]
fn zero_chunk_is_zero_and_never_allocated() {
    let mut v = mount(formatted(16, None));
    let free = v.statfs().free_blocks;
    let start = v.reserve_zero_chunk().unwrap();
    assert_eq!(start % CHUNK_BLOCKS, 0);
    assert_eq!(v.reserve_zero_chunk(), Some(start));
    assert_eq!(v.statfs().free_blocks, free - CHUNK_BLOCKS);
    let zeros = vec![0u8; (CHUNK_BLOCKS as usize) * BLOCK_SIZE];
    let chunk = |v: &TestVolume| {
        v.media()
            .region(start * BLOCK_SIZE as u64, zeros.len())
            .unwrap()
            .to_vec()
    };
    assert!(chunk(&v) == zeros);
    // Fill the filesystem: nothing lands in the chunk.
    let root = v.root();
    let (f, _) = v.create(root, b"fill", &file(REG)).unwrap();
    let data = pattern(5, 256 << 10);
    let mut written = 0u64;
    while write(&mut v, f, written, &data).is_ok() {
        written += data.len() as u64;
    }
    assert!(written > 4 << 20);
    let mut block = 0;
    while block < written / BLOCK_SIZE as u64 {
        let m = v.map_read(f, block, u64::MAX / 2).unwrap();
        let end = m.physical + m.len;
        assert!(end <= start || m.physical >= start + CHUNK_BLOCKS, "{m:?}");
        block += m.len;
    }
    assert!(chunk(&v) == zeros);
    // On the media the chunk is free: the next mount can use it.
    let mut v = mount(unmount_and_check(v));
    let f = v.lookup(root, b"fill").unwrap();
    v.set_attr(
        f,
        &AttrChange {
            size: Some(0),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(v.statfs().free_blocks, free - 1);
    unmount_and_check(v);
    // Read-only mounts leave the media alone: no chunk.
    let mut ro = Volume::mount(Pmem::new(formatted(16, None)), Buffers::new(), true)
        .map(|(v, _)| v)
        .unwrap();
    assert_eq!(ro.reserve_zero_chunk(), None);
}

/// Random data operations on three files (writes of any length through
/// `map_write`, punch, zero range, preallocation, clones between and within
/// files, truncation) against a byte model, the filesystem checked after
/// every step: fragmented files and clones over fragmented ranges are
/// where extent bookkeeping breaks.
#[test]
fn random_data_operations_match_a_model() {
    let seeds: u64 = std::env::var("OXDAX_DATA_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    for seed in 0..seeds {
        random_data_operations(seed, 400);
    }
}

fn random_data_operations(seed: u64, steps: usize) {
    const BS: u64 = BLOCK_SIZE as u64;
    const MAX_BLOCKS: u64 = 2048;
    let mut rng = Lcg(seed.wrapping_mul(0x9e37_79b9) + 1);
    let mut v = mount(formatted(64, None));
    let root = v.root();
    let mut files = Vec::new();
    let mut model: Vec<Vec<u8>> = Vec::new();
    for name in [&b"a"[..], b"b", b"c"] {
        files.push(v.create(root, name, &file(REG)).unwrap().0);
        model.push(Vec::new());
    }
    for step in 0..steps {
        let f = (rng.next() % 3) as usize;
        let ino = files[f];
        let blocks = |rng: &mut Lcg, max: u64| 1 + rng.next() % max;
        if rng.next() % 4 == 0 {
            past_eof_garbage(&mut v, ino, &mut rng);
        }
        let op = rng.next() % 8;
        let what;
        match op {
            0 | 1 => {
                let at = rng.next() % (MAX_BLOCKS * BS);
                let len = (rng.next() % (600 * BS) + 1).min(MAX_BLOCKS * BS - at) as usize;
                let data = pattern(rng.next(), len);
                write(&mut v, ino, at, &data).unwrap();
                let m = &mut model[f];
                if m.len() < at as usize + len {
                    m.resize(at as usize + len, 0);
                }
                m[at as usize..at as usize + len].copy_from_slice(&data);
                what = alloc::format!("write {f} {at} {len}");
            }
            2 | 3 => {
                // Byte ranges: partial blocks are zeroed in place.
                // Byte ranges, also past the end of file.
                let size = model[f].len() as u64;
                let at = rng.next() % (size + 64 * BS).min(MAX_BLOCKS * BS - 1);
                let len = (rng.next() % (300 * BS) + 1).min(MAX_BLOCKS * BS - at);
                let keep_size = op == 2 || rng.next() % 2 == 0;
                if op == 2 {
                    v.punch_hole(ino, at, len, T0).unwrap();
                } else {
                    v.zero_range(ino, at, len, keep_size, T0).unwrap();
                }
                let m = &mut model[f];
                if !keep_size && (m.len() as u64) < at + len {
                    m.resize((at + len) as usize, 0);
                }
                let end = ((at + len) as usize).min(m.len());
                if (at as usize) < end {
                    m[at as usize..end].fill(0);
                }
                what = alloc::format!("punch/zero {op} {f} {at} {len}");
            }
            4 => {
                let at = rng.next() % MAX_BLOCKS;
                let len = blocks(&mut rng, 600).min(MAX_BLOCKS - at);
                let keep_size = rng.next() % 2 == 0;
                v.allocate(ino, at * BS, len * BS, keep_size, T0).unwrap();
                if !keep_size && model[f].len() < ((at + len) * BS) as usize {
                    model[f].resize(((at + len) * BS) as usize, 0);
                }
                // What the fault engine asks: one page, or a 2 MiB-aligned
                // 512, for writing in place (allocate, convert, copy).
                let page = if rng.next() % 2 == 0 {
                    rng.next() % MAX_BLOCKS
                } else {
                    rng.next() % (MAX_BLOCKS / 512) * 512
                };
                let m = v
                    .map_write(
                        ino,
                        page,
                        if page % 512 == 0 { 512 } else { 1 },
                        SharedWrite::Copy,
                    )
                    .unwrap();
                assert!(m.kind == MapKind::Data && !m.shared && m.len >= 1);
                what = alloc::format!("allocate {f} {at} {len} {keep_size}, map_write {page}");
            }
            5 | 6 => {
                let g = (rng.next() % 3) as usize;
                let size = (model[g].len() as u64).div_ceil(BS);
                if size == 0 {
                    continue;
                }
                let from = rng.next() % size;
                let len = blocks(&mut rng, 800).min(size - from);
                let to = rng.next() % (MAX_BLOCKS - len);
                if g == f && from < to + len && to < from + len {
                    continue;
                }
                // Up to the source's end of file, which may end a block
                // early (the VFS allows that tail only there, and only onto
                // the destination's end or past it).
                let bytes = (len * BS).min(model[g].len() as u64 - from * BS);
                if bytes % BS != 0 && to * BS + bytes < model[f].len() as u64 {
                    continue;
                }
                v.reflink(files[g], from * BS, ino, to * BS, bytes, T0)
                    .unwrap();
                let src = model[g][(from * BS) as usize..(from * BS + bytes) as usize].to_vec();
                let m = &mut model[f];
                let end = (to * BS + bytes) as usize;
                if m.len() < end {
                    m.resize(end, 0);
                }
                m[(to * BS) as usize..end].copy_from_slice(&src);
                what = alloc::format!("reflink {g}:{from} -> {f}:{to} {len}");
            }
            _ => {
                let size = rng.next() % (MAX_BLOCKS * BS);
                v.set_attr(
                    ino,
                    &AttrChange {
                        size: Some(size),
                        ..Default::default()
                    },
                )
                .unwrap();
                model[f].resize(size as usize, 0);
                what = alloc::format!("truncate {f} {size}");
            }
        }
        let sb = *v.superblock();
        check_files(v.media(), &sb, &mut |_| {})
            .unwrap_or_else(|e| panic!("seed {seed} step {step} ({what}): {e:?}"));
        for (i, &ino) in files.iter().enumerate() {
            assert_eq!(v.inode(ino).unwrap().size, model[i].len() as u64);
            if step % 25 == 0 || i == f {
                assert!(
                    read(&v, ino, 0, model[i].len()) == model[i],
                    "seed {seed} step {step} ({what}): file {i} differs"
                );
            }
        }
    }
    unmount_and_check(v);
}

/// Puts bytes that are not the file's past its end, as the kernel may leave
/// them: a store through a mapping into the end-of-file page past the end,
/// or a write past the end that a crash cut short (blocks mapped and
/// written, size not committed).
fn past_eof_garbage(v: &mut TestVolume, ino: u64, rng: &mut Lcg) {
    const BS: u64 = BLOCK_SIZE as u64;
    let size = v.inode(ino).unwrap().size;
    if size % BS != 0 {
        if let Ok(m) = v.map_data(ino, size / BS, 1) {
            if m.kind == MapKind::Data && !m.shared {
                let within = size % BS;
                let garbage = pattern(rng.next(), (BS - within) as usize);
                assert!(v.media().write(m.physical * BS + within, &garbage));
            }
        }
    }
    let first = size.div_ceil(BS) + rng.next() % 4;
    if let Ok(m) = v.map_write(ino, first, 1 + rng.next() % 8, SharedWrite::Copy) {
        let garbage = pattern(rng.next(), (m.len * BS) as usize);
        assert!(v.media().write(m.physical * BS, &garbage));
    }
    v.media().fence();
}

#[test]
fn fallocate_punch_and_zero_range() {
    let mut v = mount(formatted(64, None));
    let root = v.root();
    let (f, _) = v.create(root, b"f", &file(REG)).unwrap();
    // Preallocation: unwritten, 2 MiB aligned, reads as zeros, size set.
    let inode = v.allocate(f, 0, 4 << 20, false, T0).unwrap();
    assert_eq!(inode.size, 4 << 20);
    let m = v.map_read(f, 0, 1024).unwrap();
    assert_eq!(
        (m.kind, m.physical % CHUNK_BLOCKS, m.len),
        (MapKind::Unwritten, 0, 1024)
    );
    assert_eq!(read(&v, f, 4096 * 3, 4096), vec![0u8; 4096]);
    // KEEP_SIZE past the end keeps the size.
    let inode = v.allocate(f, 4 << 20, 1 << 20, true, T0).unwrap();
    assert_eq!(inode.size, 4 << 20);
    // Writing into unwritten blocks converts just that range.
    let data = pattern(9, 3 * 4096);
    write(&mut v, f, 8192, &data).unwrap();
    assert_eq!(read(&v, f, 8192, data.len()), data);
    assert_eq!(v.map_read(f, 0, 2).unwrap().kind, MapKind::Unwritten);
    assert_eq!(v.map_read(f, 2, 3).unwrap().kind, MapKind::Data);
    // Punch a hole through the middle of the written range, unaligned.
    let before = v.inode(f).unwrap().blocks;
    v.punch_hole(f, 8192 + 100, 4096 * 2, T0).unwrap();
    let got = read(&v, f, 8192, data.len());
    assert_eq!(&got[..100], &data[..100]);
    assert!(got[100..100 + 8192].iter().all(|&b| b == 0));
    assert_eq!(&got[100 + 8192..], &data[100 + 8192..]);
    assert_eq!(
        v.inode(f).unwrap().blocks,
        before - 1,
        "one whole block freed"
    );
    assert_eq!(v.map_read(f, 3, 1).unwrap().kind, MapKind::Hole);
    // Zero range: zeros, blocks allocated again.
    write(&mut v, f, 0, &pattern(10, 64 << 10)).unwrap();
    v.zero_range(f, 4096, 8192, true, T0).unwrap();
    assert_eq!(read(&v, f, 4096, 8192), vec![0u8; 8192]);
    assert_eq!(v.map_read(f, 1, 2).unwrap().kind, MapKind::Unwritten);
    assert_eq!(v.inode(f).unwrap().size, 4 << 20);
    let image = unmount_and_check(v);
    let mut v = mount(image);
    let gone = v.unlink(root, b"f", T0).unwrap();
    v.evict(gone.ino).unwrap();
    assert_eq!(owners(&v), [root].into_iter().collect());
    unmount_and_check(v);
}

#[test]
fn allocate_over_a_fragmented_file_splitting_the_root() {
    for extents in [60u64, 100, 150, 200, 300] {
        let (mut v, f, model) = fragmented_file(extents);
        // One call fills every hole: as many new extents as there are.
        v.allocate(f, 0, model.len() as u64, false, T0).unwrap();
        assert!(read(&v, f, 0, model.len()) == model, "{extents} extents");
        unmount_and_check(v);
    }
}

/// An overwrite within the file at the time the file already has changes
/// nothing on the device (no transaction); a later time or a larger size
/// is committed.
#[test]
fn writes_that_change_no_time_or_size_commit_nothing() {
    let mut v = mount(formatted(64, None));
    let root = v.root();
    let (f, _) = v.create(root, b"f", &file(REG)).unwrap();
    write(&mut v, f, 0, &pattern(5, 8192)).unwrap();
    let later = Timestamp {
        sec: T0.sec + 1,
        ..T0
    };
    v.write_done(f, 8192, later).unwrap();

    let writes = *v.media().writes.borrow();
    let inode = v.write_done(f, 4096, later).unwrap();
    assert_eq!(*v.media().writes.borrow(), writes, "nothing to commit");
    assert_eq!((inode.size, inode.mtime), (8192, later));

    v.write_done(f, 12288, later).unwrap();
    assert!(*v.media().writes.borrow() > writes, "the size grew");
    assert_eq!(v.inode(f).unwrap().size, 12288);
    let even_later = Timestamp {
        sec: T0.sec + 2,
        ..T0
    };
    let writes = *v.media().writes.borrow();
    v.write_done(f, 100, even_later).unwrap();
    assert!(*v.media().writes.borrow() > writes, "the times moved");
    let inode = v.inode(f).unwrap();
    assert_eq!(
        (inode.size, inode.mtime, inode.ctime),
        (12288, even_later, even_later)
    );
    unmount_and_check(v);
}

/// Bytes past the end of file (stored through a mapping of the end-of-file
/// page past its end, or left by a write a crash cut short before its size
/// was committed) never become file content when the file grows: by
/// truncation, a write past the end, preallocation, zeroing or a clone past
/// the end. ext4 and xfs zero this gap too.
#[test]
fn growing_a_file_shows_zeros_past_the_old_end() {
    const BS: u64 = BLOCK_SIZE as u64;
    let mut v = mount(formatted(64, None));
    let root = v.root();
    let (src, _) = v.create(root, b"src", &file(REG)).unwrap();
    write(&mut v, src, 0, &pattern(2, 4096)).unwrap();
    let grow_to = 6 * BS + 123;
    for how in ["truncate", "write", "allocate", "zero_range", "reflink"] {
        let (f, _) = v.create(root, how.as_bytes(), &file(REG)).unwrap();
        let data = pattern(1, 5000);
        write(&mut v, f, 0, &data).unwrap();
        let tail = v.map_read(f, 1, 1).unwrap();
        assert!(v
            .media()
            .write(tail.physical * BS + (5000 - BS) + 10, &[0xee; 100]));
        let cut_short = v.map_write(f, 3, 2, SharedWrite::Copy).unwrap();
        assert_eq!(cut_short.len, 2);
        assert!(v.media().write(cut_short.physical * BS, &[0xdd; 8192]));
        v.media().fence();
        let grown = match how {
            "truncate" => v.set_attr(
                f,
                &AttrChange {
                    size: Some(grow_to),
                    ..Default::default()
                },
            ),
            "write" => write(&mut v, f, grow_to - 10, b"0123456789").map(|()| v.inode(f).unwrap()),
            "allocate" => v.allocate(f, grow_to - 100, 100, false, T0),
            "zero_range" => v.zero_range(f, grow_to - 100, 100, false, T0),
            _ => v.reflink(src, 0, f, 6 * BS, 4096, T0),
        }
        .unwrap();
        let content = read(&v, f, 0, grown.size as usize);
        assert_eq!(&content[..5000], &data[..], "{how}: data kept");
        let gap_end = if how == "reflink" {
            6 * BS
        } else {
            grow_to - 100
        };
        assert!(
            content[5000..gap_end as usize].iter().all(|&b| b == 0),
            "{how}: the old end-of-file block's tail or the blocks past the end show"
        );
    }
    unmount_and_check(v);
}

/// Cached mappings are what a lookup finds: random queries (in and across
/// 2 MiB regions, one block to several MiB) over files of written,
/// fallocated, punched, shared and fragmented ranges, between changes of
/// every kind, always get the uncached lookup's answer.
#[test]
fn cached_mappings_are_what_a_lookup_finds() {
    let mut v = mount(formatted(96, None));
    let root = v.root();
    let (a, _) = v.create(root, b"a", &file(REG)).unwrap();
    let (b, _) = v.create(root, b"b", &file(REG)).unwrap();
    let mut rng = crate::logic::testing::Lcg(17);
    let span = 12u64 << 20;
    for round in 0..60 {
        let at = rng.next() % (span / 4096) * 4096;
        let len = (1 + rng.next() % 300) * 4096;
        let _ = match round % 6 {
            0 => write(&mut v, a, at, &pattern(round, len as usize)).map(|_| ()),
            1 => v.allocate(a, at, len, rng.next() % 2 == 0, T0).map(|_| ()),
            2 => v.punch_hole(a, at, len, T0).map(|_| ()),
            3 => v
                .reflink(a, at, b, rng.next() % (span / 4096) * 4096, len, T0)
                .map(|_| ()),
            4 => write(&mut v, b, at, &pattern(round, 4096)).map(|_| ()),
            _ => {
                // One-block extents, every other block.
                for i in 0..20 {
                    let _ = write(&mut v, a, at + i * 8192, &pattern(i, 4096));
                }
                Ok(())
            }
        };
        for _ in 0..200 {
            let ino = if rng.next() % 3 == 0 { b } else { a };
            let block = rng.next() % (span / 4096 + 600);
            let len = match rng.next() % 4 {
                0 => 1,
                1 => 1 + rng.next() % 16,
                2 => 1 + rng.next() % 512,
                _ => 1 + rng.next() % 3000,
            };
            assert_eq!(
                v.map_read(ino, block, len),
                v.map_read_uncached(ino, block, len),
                "round {round}: inode {ino}, blocks {block}+{len}"
            );
        }
    }
    unmount_and_check(v);
}

/// The record and mapping caches survive transactions of other inodes:
/// after every change of every kind (creates, links, renames over files,
/// unlinks and late evictions, batch frees, writes, truncations, hole
/// punches, preallocation, reflinks both ways, compaction moves, failed
/// memory), every inode ever used, live or freed, and random runs of
/// every file read the same through the caches as without them. The
/// caches are filled before each change, so a stale entry shows.
#[test]
fn lookup_caches_are_what_a_lookup_finds_after_every_change() {
    const BS: u64 = BLOCK_SIZE as u64;
    for seed in 1..=4u64 {
        let mut rng = crate::logic::testing::Lcg(seed);
        let mut v = mount(formatted(64, None));
        let root = v.root();
        let (sub, _) = v.create(root, b"d", &file(DIR)).unwrap();
        let dirs = [root, sub];
        let mut seen: Vec<u64> = vec![root, sub];
        let mut held: Vec<u64> = Vec::new();
        let mut job = compact::Job::default();
        let mut failed_memory = false;
        for step in 0..700u32 {
            let dir = dirs[(rng.next() % 2) as usize];
            let name = alloc::format!("f{}", rng.next() % 24);
            let found = v.lookup(dir, name.as_bytes());
            let op = rng.next() % 14;
            let _ = match (op, found) {
                (0 | 1, _) => v.create(dir, name.as_bytes(), &file(REG)).map(|(ino, _)| {
                    seen.push(ino);
                }),
                (2, Ok(ino)) => {
                    let other = dirs[(rng.next() % 2) as usize];
                    let to = alloc::format!("f{}", rng.next() % 24);
                    v.link(ino, other, to.as_bytes(), T0).map(|_| ())
                }
                (3, Ok(_)) => {
                    let other = dirs[(rng.next() % 2) as usize];
                    let to = alloc::format!("f{}", rng.next() % 24);
                    let flags = RenameFlags::default();
                    v.rename(dir, name.as_bytes(), other, to.as_bytes(), flags, T0)
                        .map(|r| held.extend(r.replaced.map(|(ino, _)| ino)))
                }
                (4, Ok(_)) => v
                    .unlink(dir, name.as_bytes(), T0)
                    .map(|gone| held.push(gone.ino)),
                (5, _) if !held.is_empty() => {
                    let ino = held.swap_remove((rng.next() % held.len() as u64) as usize);
                    v.evict(ino).map(|_| ())
                }
                (6 | 7, Ok(ino)) => {
                    let at = rng.next() % (6 << 20);
                    let len = 1 + rng.next() % (300 << 10);
                    write(&mut v, ino, at, &pattern(at, len as usize))
                }
                (8, Ok(ino)) => {
                    let size = Some(rng.next() % (6 << 20));
                    v.set_attr(
                        ino,
                        &AttrChange {
                            size,
                            ..Default::default()
                        },
                    )
                    .map(|_| ())
                }
                (9, Ok(ino)) => {
                    let at = rng.next() % (6 << 20);
                    v.punch_hole(ino, at, 1 + rng.next() % (1 << 20), T0)
                        .map(|_| ())
                }
                (10, Ok(ino)) => {
                    let at = rng.next() % (6 << 20);
                    v.allocate(ino, at, 1 + rng.next() % (3 << 20), rng.next() % 2 == 0, T0)
                        .map(|_| ())
                }
                (11, Ok(ino)) => {
                    let other = seen[(rng.next() % seen.len() as u64) as usize];
                    let (from, to) = if rng.next() % 2 == 0 {
                        (ino, other)
                    } else {
                        (other, ino)
                    };
                    let at = rng.next() % 1024 * BS;
                    let len = (1 + rng.next() % 600) * BS;
                    v.reflink(from, rng.next() % 1024 * BS, to, at, len, T0)
                        .map(|_| ())
                }
                // The job expects memory that reads.
                (12, _) if !failed_memory => {
                    for _ in 0..1 + rng.next() % 6 {
                        job.step(&mut v, &mut rng);
                    }
                    Ok(())
                }
                (13, Ok(ino)) if step % 5 == 0 => {
                    // Memory fails under one of the file's blocks: its
                    // data, its extent tree's root or its record's.
                    let failed = match rng.next() % 3 {
                        0 => v
                            .map_read(ino, rng.next() % 1536, 1)
                            .ok()
                            .filter(|run| run.kind != MapKind::Hole)
                            .map(|run| run.physical),
                        1 => v.inode(ino).ok().map(|i| i.map_root).filter(|&b| b != 0),
                        _ => crate::logic::format::inode::location(ino).map(|at| at.block),
                    };
                    match failed {
                        Some(block) => {
                            failed_memory = true;
                            v.media().fail_block(block);
                            v.poison(block, 1)
                        }
                        None => Ok(()),
                    }
                }
                _ => v.free_evicted(),
            };
            for &ino in &seen {
                assert_eq!(
                    v.inode(ino),
                    v.inode_uncached(ino),
                    "seed {seed} step {step} (op {op}): record of inode {ino}"
                );
                for _ in 0..6 {
                    let block = rng.next() % 1600;
                    let len = match rng.next() % 3 {
                        0 => 1,
                        1 => 1 + rng.next() % 64,
                        _ => 1 + rng.next() % 1024,
                    };
                    assert_eq!(
                        v.map_read(ino, block, len),
                        v.map_read_uncached(ino, block, len),
                        "seed {seed} step {step} (op {op}): inode {ino}, blocks {block}+{len}"
                    );
                }
            }
        }
        for ino in held {
            v.evict(ino).unwrap();
        }
        v.free_evicted().unwrap();
    }
}

/// Every transaction that writes the log is counted, with time in each
/// of its phases (the test media's clock ticks once per reading); one
/// refused is not, nor one that changes nothing (a move of blocks that
/// are gone), nor a call without a transaction.
#[test]
fn committed_transactions_count_their_phases() {
    let mut v = mount(formatted(32, None));
    let root = v.root();
    let before = v.tx_times();
    let (f, _) = v.create(root, b"t", &file(REG)).unwrap();
    let created = v.tx_times();
    assert_eq!(created.logged, before.logged + 1);
    assert!(created.build_ns > before.build_ns);
    assert!(created.settle_ns > before.settle_ns);
    assert!(created.log_ns > before.log_ns);
    assert!(created.home_ns > before.home_ns);
    assert_eq!(v.create(root, b"t", &file(REG)), Err(Error::Exists));
    v.map_read(f, 0, 1).unwrap();
    assert_eq!(v.tx_times(), created);
    assert_eq!(v.relocate(f, 0, 1, 12345), Ok(0));
    let empty = v.tx_times();
    assert_eq!(empty.logged, created.logged);
    assert!(empty.build_ns > created.build_ns);
    write(&mut v, f, 0, &pattern(4, 3 << 12)).unwrap();
    assert!(v.tx_times().logged > created.logged);
    unmount_and_check(v);
}
