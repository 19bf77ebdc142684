// SPDX-License-Identifier: GPL-2.0

//! Tests of where files' blocks go: every way of getting blocks leaves
//! 2 MiB regions that map whole (one run, 2 MiB-aligned on the device),
//! on a fresh and on an aged filesystem; small files keep no chunk after
//! close.

use super::*;
use crate::logic::format::{CHUNK_BLOCKS, GIB_BLOCKS};

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
        // small files; compaction, after the close, places that region
        // whole.
        place_misplaced(v);
        assert_eq!(whole_regions(v, f, REGIONS), REGIONS, "appends of {step}");
        for i in [0, 1, (64 << 10) / step + 1] {
            let len = step as usize;
            assert!(read(v, f, i * step, len) == pattern(i, len), "{step}: {i}");
        }
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

/// A close has work only while chunks are kept for a file's regions or
/// misplaced regions wait: none after creates, some after a write that
/// took a chunk, none once that file is closed.
#[test]
fn a_close_has_work_only_while_chunks_are_kept() {
    let mut v = mount(formatted(64, None));
    let root = v.root();
    assert!(!v.close_has_work());
    let (f, _) = v.create(root, b"empty", &file(REG)).unwrap();
    assert!(!v.close_has_work());
    v.release(f);
    let (g, _) = v.create(root, b"big", &file(REG)).unwrap();
    write(&mut v, g, 0, &pattern(1, 3 << 20)).unwrap();
    assert!(v.close_has_work());
    v.release(g);
    while let Some((ino, region)) = v.take_misplaced() {
        v.place_region_whole(ino, region).unwrap();
    }
    assert!(!v.close_has_work());
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

/// A 4 KiB write into a reflinked file, the way the kernel's write(2)
/// does it: the regions around it inside the end of file are copied
/// whole (`cow_range`, `copy_shared`), the rest stays shared.
#[test]
fn a_small_write_copies_its_whole_region() {
    let mut v = mount(formatted(64, None));
    let root = v.root();
    let size = 5u64 << 20;
    let data = pattern(1, size as usize);
    let (a, _) = v.create(root, b"a", &file(REG)).unwrap();
    write(&mut v, a, 0, &data).unwrap();
    v.release(a);
    let (b, _) = v.create(root, b"b", &file(REG)).unwrap();
    v.reflink(a, 0, b, 0, size, T0).unwrap();
    let kernel_write = |v: &mut TestVolume, at: u64, bytes: &[u8]| {
        let first = at / 4096;
        let len = (at + bytes.len() as u64).div_ceil(4096) - first;
        let (start, count) = v.cow_range(b, first, len).unwrap();
        v.copy_shared(b, start, count).unwrap();
        write(v, b, at, bytes).unwrap();
        (start, count)
    };
    // Inside region 0: all of it copied.
    assert_eq!(kernel_write(&mut v, 4096 * 7 + 5, &[9u8; 100]), (0, 512));
    assert_eq!(whole_regions(&v, b, 1), 1);
    let m = v.map_read(b, 512, 512).unwrap();
    assert!(m.shared, "region 1 stays shared");
    // Region 2 reaches past the end of file (5 MiB): only the block.
    assert_eq!(
        kernel_write(&mut v, (4 << 20) + 4096, &[8u8; 10]),
        (1025, 1)
    );
    assert!(v.map_read(b, 1024, 1).unwrap().shared);
    let mut expect = data.clone();
    expect[4096 * 7 + 5..4096 * 7 + 105].fill(9);
    expect[(4 << 20) + 4096..(4 << 20) + 4106].fill(8);
    assert!(read(&v, b, 0, size as usize) == expect);
    assert!(read(&v, a, 0, size as usize) == data);
    unmount_and_check(v);
}

/// splitmix64, as tests/lib/oxdax_age.h draws.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E3779B97F4A7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
        z ^ (z >> 31)
    }
}

/// oxdax_age.h's size mix.
fn ager_file_size(r1: u64, r2: u64) -> u64 {
    let classes = [
        (40u64, 12u64, 16u64),
        (30, 16, 20),
        (25, 20, 22),
        (5, 22, 23),
    ];
    let mut pick = r1 % 100;
    let mut i = 0;
    while i + 1 < classes.len() && pick >= classes[i].0 {
        pick -= classes[i].0;
        i += 1;
    }
    let octave = classes[i].1 + (r1 >> 16) % (classes[i].2 - classes[i].1);
    let base = 1u64 << octave;
    base + r2 % base
}

fn ager_chunk_size(r: u64) -> u64 {
    let sizes = [4096, 16384, 65536, 262144, 1048576];
    let pick = (r % 6) as usize;
    if pick < 5 {
        sizes[pick]
    } else {
        1 + (r >> 8) % (128 * 1024)
    }
}

/// Appends `len` bytes to `ino` (size `*size`) as write(2) calls of the
/// ager's sizes would, without data; false on ENOSPC.
fn ager_append(
    v: &mut TestVolume,
    rng: &mut SplitMix,
    ino: u64,
    size: &mut u64,
    mut len: u64,
) -> bool {
    while len > 0 {
        let n = ager_chunk_size(rng.next()).min(len).min(1 << 20);
        let first = *size / 4096;
        let last = (*size + n - 1) / 4096;
        let mut block = first;
        while block <= last {
            match v.map_write(ino, block, last - block + 1, SharedWrite::Copy) {
                Ok(m) => block += m.len.max(1) - (block - m.file_block),
                Err(_) => return false,
            }
        }
        *size += n;
        v.write_done(ino, *size, T0).unwrap();
        len -= n;
    }
    true
}

/// The regions transactions left misplaced placed whole, as the
/// kernel's compaction job does after a writer closes its file.
fn place_misplaced(v: &mut TestVolume) {
    while let Some((ino, region)) = v.take_misplaced() {
        v.place_region_whole(ino, region).unwrap();
    }
}

/// Compaction as the kernel's worker runs it: chunks emptied until there
/// is none to empty; returns the blocks moved.
fn compact(v: &mut TestVolume) -> u64 {
    let mut skipped: Vec<u64> = Vec::new();
    let mut moved = 0;
    while let Some(chunk) = v.compaction_victim(&|c| skipped.contains(&c)).unwrap() {
        let mut pieces = Vec::new();
        if v.chunk_pieces(chunk, &mut |o| pieces.push(o.clone()))
            .unwrap()
        {
            for p in pieces {
                moved += v.relocate(p.owner, p.file_block, p.len, p.start).unwrap();
            }
        }
        skipped.push(chunk);
    }
    moved
}

/// Ages `v` as tests/lib/oxdax_age.h does (the same draws and size mix,
/// write(2) calls without data): churn at `full_pct` % until `written_x10`
/// tenths of its size were written, then thinned to `final_pct` %. With
/// `compaction`, compacts after each delete as the kernel's worker does.
/// Returns the blocks compaction moved.
fn age(
    v: &mut TestVolume,
    seed: u64,
    full_pct: u64,
    written_x10: u64,
    final_pct: u64,
    compaction: bool,
) -> u64 {
    let root = v.root();
    let total = v.statfs().blocks;
    let capacity = total * 4096;
    let mut used = (total - v.statfs().free_blocks) * 4096;
    let pages = |b: u64| b.div_ceil(4096) * 4096;
    let mut rng = SplitMix(seed);
    let mut live: Vec<(u64, u64, Vec<u8>)> = Vec::new();
    let mut written = 0u64;
    let mut moved = 0u64;
    let mut next = 0u64;
    let target = capacity / 10 * written_x10;
    let mut delete =
        |v: &mut TestVolume, live: &mut Vec<(u64, u64, Vec<u8>)>, used: &mut u64, r: u64| {
            if live.is_empty() {
                return;
            }
            let (f, size, name) = live.swap_remove((r % live.len() as u64) as usize);
            v.unlink(root, &name, T0).unwrap();
            v.evict(f).unwrap();
            *used -= pages(size);
            if compaction {
                moved += compact(v);
            }
        };
    while written < target || used * 100 / capacity < full_pct {
        let grow = used * 100 / capacity < full_pct;
        let (r_op, r_file, r1, r2) = (rng.next(), rng.next(), rng.next(), rng.next());
        let op = r_op % 100;
        if !grow || op >= 80 {
            delete(v, &mut live, &mut used, r_file);
            continue;
        }
        let (i, len) = if op < 55 || live.is_empty() {
            let name = alloc::format!("{next:08x}").into_bytes();
            next += 1;
            let (f, _) = v.create(root, &name, &file(REG)).unwrap();
            live.push((f, 0, name));
            (live.len() - 1, ager_file_size(r1, r2))
        } else {
            (
                (r_file % live.len() as u64) as usize,
                ager_file_size(r1, r2) / 4 + 1,
            )
        };
        let (f, before) = (live[i].0, live[i].1);
        let mut size = before;
        let ok = ager_append(v, &mut rng, f, &mut size, len);
        v.release(f);
        live[i].1 = size;
        written += size - before;
        used += pages(size) - pages(before);
        if !ok {
            let r = rng.next();
            delete(v, &mut live, &mut used, r);
        }
    }
    while used * 100 / capacity > final_pct && !live.is_empty() {
        let r = rng.next();
        delete(v, &mut live, &mut used, r);
    }
    moved
}

/// How many of the first `regions` regions of `ino` could map whole
/// (written or unwritten: fallocated blocks are zeroed by the fault).
fn aligned_regions(v: &TestVolume, ino: u64, regions: u64) -> u64 {
    (0..regions)
        .filter(|r| {
            let m = v.map_read(ino, r * CHUNK_BLOCKS, CHUNK_BLOCKS).unwrap();
            m.kind != MapKind::Hole && m.len == CHUNK_BLOCKS && m.physical % CHUNK_BLOCKS == 0
        })
        .count() as u64
}

/// `make bench`'s aging measure on the host: a new file of an eighth of
/// the filesystem fallocated, then one written in 1 MiB calls; how many
/// of each one's regions map whole.
fn new_files_after_aging(v: &mut TestVolume) -> (u64, u64, u64) {
    let size = v.statfs().blocks * 4096 / 8;
    let regions = size / (2 << 20);
    let root = v.root();
    let (h, _) = v.create(root, b"falloc", &file(REG)).unwrap();
    v.allocate(h, 0, size, false, T0).unwrap();
    let fallocated = aligned_regions(v, h, regions);
    v.unlink(root, b"falloc", T0).unwrap();
    v.evict(h).unwrap();
    let (w, _) = v.create(root, b"written", &file(REG)).unwrap();
    let mut at = 0;
    while at < size {
        let m = v.map_write(w, at / 4096, 256, SharedWrite::Copy).unwrap();
        at += m.len * 4096;
        v.write_done(w, at, T0).unwrap();
    }
    v.release(w);
    let written = aligned_regions(v, w, regions);
    v.unlink(root, b"written", T0).unwrap();
    v.evict(w).unwrap();
    (fallocated, written, regions)
}

#[test]
fn an_aged_filesystem_still_maps_whole_regions() {
    let mut v = mount(formatted(512, None));
    let moved = age(&mut v, 1, 85, 30, 60, true);
    let counts = v.chunk_counts();
    // Kept by every transaction, they agree with a count at mount.
    let image = unmount_and_check(v);
    let mut v = mount(image);
    assert_eq!(v.chunk_counts(), counts);
    // Measured (seed 1): 63 of the 253 chunks free whole (31 without
    // compaction), 98 chunks' worth of blocks free; compaction moved an
    // eighth of what was written.
    let free = v.statfs().free_blocks;
    assert!(
        counts.free * CHUNK_BLOCKS * 2 >= free,
        "{counts:?}, {free} free"
    );
    assert!(moved * 4096 < 3 * (512 << 20) / 4, "{moved}");
    let (fallocated, written, regions) = new_files_after_aging(&mut v);
    assert_eq!((fallocated, written), (regions, regions));
    every_way_maps_whole_regions(&mut v, b'b');
    unmount_and_check(v);
}

/// The aging measure without and with compaction, for tuning
/// (`cargo test --release aging_report -- --ignored --nocapture`;
/// AGE_MIB and AGE_SEED at build time).
#[test]
#[ignore]
fn aging_report() {
    let mib: u64 = option_env!("AGE_MIB").map_or(2048, |s| s.parse().unwrap_or(2048));
    let seed: u64 = option_env!("AGE_SEED").map_or(1, |s| s.parse().unwrap_or(1));
    for compaction in [false, true] {
        let mut v = mount(formatted(mib, None));
        let moved = age(&mut v, seed, 85, 30, 60, compaction);
        let c = v.chunk_counts();
        let free = v.statfs().free_blocks / CHUNK_BLOCKS;
        let (fallocated, written, regions) = new_files_after_aging(&mut v);
        std::println!(
            "compaction {compaction}: moved {} MiB of {} MiB written; {c:?}, {free} chunks' \
             worth free; of {regions} regions: fallocated {fallocated}, written {written}",
            moved >> 8,
            3 * mib
        );
        if compaction {
            assert_eq!((fallocated, written), (regions, regions));
        }
        unmount_and_check(v);
    }
}

/// The first device block of `ino`'s GiB from file block `first`, if it
/// is one run of blocks (a PUD could map it once they are written).
fn gib_run(v: &TestVolume, ino: u64, first: u64) -> Option<u64> {
    let start = v.map_read(ino, first, 1).unwrap().physical;
    let mut at = 0;
    while at < GIB_BLOCKS {
        let m = v.map_read(ino, first + at, GIB_BLOCKS - at).unwrap();
        if m.kind == MapKind::Hole || m.physical != start + at {
            return None;
        }
        at += m.len;
    }
    Some(start)
}

#[test]
fn a_gib_of_a_file_sized_for_it_starts_on_a_gib_of_the_device() {
    // GiB 0 of the device holds the metadata; 1 and 2 are free.
    let mut v = mount(formatted(3 << 10, None));
    let root = v.root();
    // fallocate of a GiB and a bit.
    let (f, _) = v.create(root, b"falloc", &file(REG)).unwrap();
    v.allocate(f, 0, (1 << 30) + (4 << 20), false, T0).unwrap();
    let run = gib_run(&v, f, 0).expect("one run");
    assert_eq!(run % GIB_BLOCKS, 0);
    // Writes (or faults) into a file sized first, in 1 MiB pieces.
    let (w, _) = v.create(root, b"sized", &file(REG)).unwrap();
    let size = AttrChange {
        size: Some(1 << 30),
        ..Default::default()
    };
    v.set_attr(w, &size).unwrap();
    let mut at = 0;
    while at < GIB_BLOCKS {
        at += v.map_write(w, at, 256, SharedWrite::Copy).unwrap().len;
    }
    let second = gib_run(&v, w, 0).expect("one run");
    assert_eq!(second % GIB_BLOCKS, 0);
    assert_ne!(second, run);
    // No free GiB is left: the next file still gets whole chunks.
    let (g, _) = v.create(root, b"third", &file(REG)).unwrap();
    v.allocate(g, 0, 64 << 20, false, T0).unwrap();
    assert_eq!(aligned_regions(&v, g, 32), 32);
    // A file smaller than a GiB does not take one.
    v.unlink(root, b"falloc", T0).unwrap();
    v.evict(f).unwrap();
    let (s, _) = v.create(root, b"small", &file(REG)).unwrap();
    v.allocate(s, 0, 512 << 20, false, T0).unwrap();
    assert_ne!(v.map_read(s, 0, 1).unwrap().physical % GIB_BLOCKS, 0);
    unmount_and_check(v);
}
