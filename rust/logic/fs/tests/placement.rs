// SPDX-License-Identifier: GPL-2.0

//! Tests of where files' blocks go: every way of getting blocks leaves
//! 2 MiB regions that map whole (one run, 2 MiB-aligned on the device),
//! on a fresh and on an aged filesystem; small files keep no chunk after
//! close.

use super::*;
use crate::logic::format::CHUNK_BLOCKS;

/// How many of `ino`'s first `regions` 2 MiB regions are one aligned run
/// of written blocks (what a PMD write fault maps at once).
fn whole_regions(v: &TestVolume, ino: u64, regions: u64) -> u64 {
    (0..regions)
        .filter(|r| {
            let m = v.map_read(ino, r * CHUNK_BLOCKS, CHUNK_BLOCKS).unwrap();
            m.kind == MapKind::Data && m.len == CHUNK_BLOCKS && m.physical % CHUNK_BLOCKS == 0
        })
        .count() as u64
}

/// Writes `size` bytes to a new file `name` in calls of `step` bytes at
/// the offsets `order` gives, then closes it.
fn written_file(v: &mut TestVolume, name: &[u8], size: u64, step: u64, order: &[u64]) -> u64 {
    let root = v.root();
    let (f, _) = v.create(root, name, &file(REG)).unwrap();
    for &i in order {
        let len = step.min(size - i * step) as usize;
        write(v, f, i * step, &pattern(i, len)).unwrap();
    }
    v.release(f);
    f
}

const FILE: u64 = 16 << 20;
const REGIONS: u64 = FILE / (2 << 20);

fn sequential(step: u64) -> Vec<u64> {
    (0..FILE.div_ceil(step)).collect()
}

/// A permutation of `0..n` from `seed`.
fn shuffled(n: u64, seed: u64) -> Vec<u64> {
    let mut order: Vec<u64> = (0..n).collect();
    let mut rng = Lcg(seed);
    for i in (1..order.len()).rev() {
        order.swap(i, (rng.next() % (i as u64 + 1)) as usize);
    }
    order
}

/// Every way a file gets blocks, on `v`: each file's regions map whole.
/// One file at a time (each is deleted after it is measured), as
/// `make bench` measures them.
fn every_way_maps_whole_regions(v: &mut TestVolume, tag: u8) {
    let root = v.root();
    let name = |what: &[u8]| {
        let mut n = what.to_vec();
        n.push(tag);
        n
    };
    for step in [4096, 64 << 10, 1 << 20, 3000] {
        let f = written_file(v, &name(b"seq"), FILE, step, &sequential(step));
        // A file grown in small appends packs its first 64 KiB with the
        // small files: its first region may not map whole.
        let least = if step < (64 << 10) {
            REGIONS - 1
        } else {
            REGIONS
        };
        assert!(whole_regions(v, f, REGIONS) >= least, "appends of {step}");
        let last = FILE.div_ceil(step) - 1;
        let len = (FILE - last * step) as usize;
        assert_eq!(read(v, f, last * step, len), pattern(last, len));
        v.unlink(root, &name(b"seq"), T0).unwrap();
        v.evict(f).unwrap();
    }
    // Random writes into a sparse file.
    let (f, _) = v.create(root, &name(b"sparse"), &file(REG)).unwrap();
    v.set_attr(
        f,
        &AttrChange {
            size: Some(FILE),
            ..Default::default()
        },
    )
    .unwrap();
    let step = 64 << 10;
    for i in shuffled(FILE / step, 3 + tag as u64) {
        write(v, f, i * step, &pattern(i, step as usize)).unwrap();
    }
    v.release(f);
    assert_eq!(whole_regions(v, f, REGIONS), REGIONS, "random writes");
    for i in [0, 7, FILE / step - 1] {
        assert_eq!(
            read(v, f, i * step, step as usize),
            pattern(i, step as usize)
        );
    }
    v.unlink(root, &name(b"sparse"), T0).unwrap();
    v.evict(f).unwrap();
    // Page faults: one block at a time, in any order, as PTE faults do.
    let (g, _) = v.create(root, &name(b"faulted"), &file(REG)).unwrap();
    v.set_attr(
        g,
        &AttrChange {
            size: Some(FILE),
            ..Default::default()
        },
    )
    .unwrap();
    for block in shuffled(FILE / 4096, 5) {
        let m = v.map_write(g, block, 1, SharedWrite::Report).unwrap();
        assert_eq!((m.kind, m.file_block), (MapKind::Data, block));
    }
    assert_eq!(whole_regions(v, g, REGIONS), REGIONS, "page faults");
    v.unlink(root, &name(b"faulted"), T0).unwrap();
    v.evict(g).unwrap();
    // fallocate, unaligned, then written.
    let (h, _) = v.create(root, &name(b"falloc"), &file(REG)).unwrap();
    v.allocate(h, 4096 * 3, FILE - 4096 * 3, false, T0).unwrap();
    v.allocate(h, 0, 4096 * 3, false, T0).unwrap();
    write(v, h, 0, &pattern(9, FILE as usize)).unwrap();
    assert_eq!(whole_regions(v, h, REGIONS), REGIONS, "fallocate");
    assert_eq!(
        read(v, h, FILE - 100, 100),
        pattern(9, FILE as usize)[FILE as usize - 100..]
    );
    v.unlink(root, &name(b"falloc"), T0).unwrap();
    v.evict(h).unwrap();
}

#[test]
fn every_way_of_getting_blocks_maps_whole_regions() {
    let mut v = mount(formatted(128, None));
    every_way_maps_whole_regions(&mut v, b'a');
    unmount_and_check(v);
}

#[test]
fn small_files_keep_no_chunk_after_close() {
    let mut v = mount(formatted(64, None));
    let root = v.root();
    let free = v.statfs().free_blocks;
    let mut files = Vec::new();
    for (i, size) in [4096u64, 100 << 10, 1 << 20, 3 << 20]
        .into_iter()
        .enumerate()
    {
        let name = [b'f', b'0' + i as u8];
        let (f, _) = v.create(root, &name, &file(REG)).unwrap();
        write(&mut v, f, 0, &pattern(i as u64, size as usize)).unwrap();
        v.release(f);
        let inode = v.inode(f).unwrap();
        // Data blocks plus the extent tree's root.
        assert!(
            inode.blocks <= size.div_ceil(4096) + 2,
            "{size}: {}",
            inode.blocks
        );
        files.push((f, size));
    }
    let used: u64 = files.iter().map(|(_, s)| s.div_ceil(4096) + 2).sum();
    assert!(free - v.statfs().free_blocks <= used + 8);
    // The 3 MiB file's first region is whole.
    assert_eq!(whole_regions(&v, files[3].0, 1), 1);
    for (f, size) in files {
        assert_eq!(v.inode(f).unwrap().size, size);
    }
    unmount_and_check(v);
}

#[test]
fn a_region_keeps_its_chunk_while_other_files_come_and_go() {
    let mut v = mount(formatted(64, None));
    let root = v.root();
    let (big, _) = v.create(root, b"big", &file(REG)).unwrap();
    write(&mut v, big, 0, &pattern(1, 1 << 20)).unwrap();
    // Small files, their metadata and another file's region meanwhile.
    for i in 0..200u64 {
        let name = alloc::format!("s{i}").into_bytes();
        let (f, _) = v.create(root, &name, &file(REG)).unwrap();
        write(&mut v, f, 0, &pattern(i, 4096 * (1 + i as usize % 3))).unwrap();
        v.release(f);
    }
    let (other, _) = v.create(root, b"other", &file(REG)).unwrap();
    write(&mut v, other, 4096, &pattern(2, 300 << 10)).unwrap();
    write(&mut v, big, 1 << 20, &pattern(3, 1 << 20)).unwrap();
    v.release(big);
    v.release(other);
    assert_eq!(whole_regions(&v, big, 1), 1);
    // Closed, its chunk's free blocks are anyone's again: a full
    // filesystem uses them.
    let (last, _) = v.create(root, b"last", &file(REG)).unwrap();
    let mut at = 0;
    while write(&mut v, last, at, &[9u8; 4096]).is_ok() {
        at += 4096;
    }
    assert!(v.statfs().free_blocks < 8, "{}", v.statfs().free_blocks);
    unmount_and_check(v);
}

#[test]
fn copy_on_write_in_pieces_makes_whole_regions() {
    let mut v = mount(formatted(64, None));
    let root = v.root();
    let size = 4u64 << 20;
    let (a, _) = v.create(root, b"a", &file(REG)).unwrap();
    write(&mut v, a, 0, &pattern(1, size as usize)).unwrap();
    let (b, _) = v.create(root, b"b", &file(REG)).unwrap();
    v.reflink(a, 0, b, 0, size, T0).unwrap();
    // Overwritten in 1 MiB and 64 KiB pieces: each copy continues the
    // one before it in a chunk of its own.
    for (i, step) in [(0u64, 1u64 << 20), (1, 64 << 10)] {
        let region = i * (2 << 20);
        for at in (region..region + (2 << 20)).step_by(step as usize) {
            write(&mut v, b, at, &pattern(at, step as usize)).unwrap();
        }
    }
    v.release(b);
    assert_eq!(whole_regions(&v, b, 2), 2);
    assert!(read(&v, a, 0, size as usize) == pattern(1, size as usize));
    assert!(read(&v, b, 3 << 20, 4096) == pattern(3 << 20, 64 << 10)[..4096]);
    unmount_and_check(v);
}

/// Ages `v`: files of 4 KiB to 6 MiB created, appended to and deleted
/// until `written` bytes went in and it is `full_pct` full, then deleted
/// down to `keep_pct`.
fn age(v: &mut TestVolume, seed: u64, written: u64, full_pct: u64, keep_pct: u64) {
    let root = v.root();
    let total = v.statfs().blocks;
    let mut rng = Lcg(seed);
    let mut live: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut done = 0u64;
    let mut n = 0u64;
    let used = |v: &TestVolume| (total - v.statfs().free_blocks) * 100 / total;
    while done < written || used(v) < full_pct {
        if used(v) >= full_pct || (!live.is_empty() && rng.next() % 3 == 0) {
            let (f, name) = live.swap_remove((rng.next() % live.len() as u64) as usize);
            v.unlink(root, &name, T0).unwrap();
            v.evict(f).unwrap();
            continue;
        }
        let size = match rng.next() % 4 {
            0 => 4096 * (1 + rng.next() % 4),
            1 => 4096 * (1 + rng.next() % 64),
            2 => 4096 * (1 + rng.next() % 512),
            _ => 4096 * (1 + rng.next() % 1536),
        };
        let name = alloc::format!("age{n}").into_bytes();
        n += 1;
        let (f, _) = v.create(root, &name, &file(REG)).unwrap();
        let step = [4096, 16384, 1 << 20][(rng.next() % 3) as usize];
        let mut at = 0;
        while at < size {
            let len = step.min(size - at);
            if write(v, f, at, &vec![7u8; len as usize]).is_err() {
                break;
            }
            at += len;
        }
        v.release(f);
        done += at;
        live.push((f, name));
    }
    while used(v) > keep_pct && !live.is_empty() {
        let (f, name) = live.swap_remove((rng.next() % live.len() as u64) as usize);
        v.unlink(root, &name, T0).unwrap();
        v.evict(f).unwrap();
    }
}

#[test]
fn an_aged_filesystem_still_maps_whole_regions() {
    let mut v = mount(formatted(256, None));
    let bytes = v.statfs().blocks * 4096;
    age(&mut v, 11, 3 * bytes, 85, 60);
    let counts = v.chunk_counts();
    // Kept by every transaction, they agree with a count at mount.
    let image = unmount_and_check(v);
    let mut v = mount(image);
    assert_eq!(v.chunk_counts(), counts);
    // Measured (seed 11): 19 of the 125 chunks free whole, 83 partly
    // used, with 40 % of the blocks free; a file needs 8.
    assert!(counts.free >= REGIONS, "{:?}", counts);
    every_way_maps_whole_regions(&mut v, b'b');
    unmount_and_check(v);
}
