// SPDX-License-Identifier: GPL-2.0

//! Tests of compaction: a move keeps the file's data, flags and the
//! filesystem consistent, also when it crashes half done; what cannot
//! move is left; an aged filesystem keeps its free space in whole chunks.

use super::*;

/// Where file block `block` of `ino` is on the device.
fn physical(v: &TestVolume, ino: u64, block: u64) -> u64 {
    v.map_read(ino, block, 1).unwrap().physical
}

/// A volume where file `g` (100 KiB of data, then 2 unwritten blocks)
/// alone uses a chunk and file `h` (100 KiB) another: `(volume, g, g's
/// data)`.
fn two_partial_chunks() -> (TestVolume, u64, Vec<u8>) {
    let mut v = mount(formatted(32, None));
    let root = v.root();
    let (g, _) = v.create(root, b"g", &file(REG)).unwrap();
    let data = pattern(2, 100 << 10);
    write(&mut v, g, 0, &data).unwrap();
    v.allocate(g, 100 << 10, 8 << 10, true, T0).unwrap();
    v.release(g);
    let (h, _) = v.create(root, b"h", &file(REG)).unwrap();
    write(&mut v, h, 0, &pattern(3, 100 << 10)).unwrap();
    v.release(h);
    assert_ne!(
        physical(&v, g, 0) / CHUNK_BLOCKS,
        physical(&v, h, 0) / CHUNK_BLOCKS
    );
    (v, g, data)
}

#[test]
fn a_move_keeps_data_and_unwritten_blocks() {
    let (mut v, g, data) = two_partial_chunks();
    let old = physical(&v, g, 0);
    let free = v.statfs().free_blocks;
    let mut pieces = Vec::new();
    assert!(v
        .chunk_pieces(old / CHUNK_BLOCKS, &mut |o| pieces.push(*o))
        .unwrap());
    // Its two records (written, unwritten), nobody else's.
    let found: Vec<_> = pieces
        .iter()
        .map(|o| (o.owner, o.file_block, o.len))
        .collect();
    assert_eq!(found, [(g, 0, 25), (g, 25, 2)]);
    assert_eq!(v.relocate(g, 0, 27, old).unwrap(), 27);
    let new = physical(&v, g, 0);
    assert_ne!(new / CHUNK_BLOCKS, old / CHUNK_BLOCKS);
    assert_eq!(v.statfs().free_blocks, free);
    assert_eq!(read(&v, g, 0, data.len()), data);
    let tail = v.map_read(g, 25, 2).unwrap();
    assert_eq!((tail.kind, tail.physical), (MapKind::Unwritten, new + 25));
    assert_eq!(v.inode(g).unwrap().size, 100 << 10);
    // Its old place is free: the next small allocation may take it.
    let mut empty = true;
    v.owners(old, 27, &mut |_| {
        empty = false;
        false
    })
    .unwrap();
    assert!(empty);
    // Moved already: nothing is at the old place any more.
    assert_eq!(v.relocate(g, 0, 27, old).unwrap(), 0);
    unmount_and_check(v);
}

#[test]
fn shared_blocks_and_metadata_stay() {
    let (mut v, g, _) = two_partial_chunks();
    let root = v.root();
    let old = physical(&v, g, 0);
    let (copy, _) = v.create(root, b"copy", &file(REG)).unwrap();
    v.reflink(g, 0, copy, 0, 100 << 10, T0).unwrap();
    assert!(!v.chunk_pieces(old / CHUNK_BLOCKS, &mut |_| {}).unwrap());
    assert_eq!(v.relocate(g, 0, 25, old).unwrap(), 0);
    assert_eq!(physical(&v, g, 0), old);
    // The chunk with the root directory's blocks holds metadata.
    let mut meta = None;
    let blocks = v.statfs().blocks;
    for chunk in 0..blocks / CHUNK_BLOCKS {
        let mut has = false;
        v.owners(chunk * CHUNK_BLOCKS, CHUNK_BLOCKS, &mut |o| {
            has |= o.metadata;
            true
        })
        .unwrap();
        if has {
            meta = Some(chunk);
            break;
        }
    }
    assert!(!v.chunk_pieces(meta.unwrap(), &mut |_| {}).unwrap());
    unmount_and_check(v);
}

/// A crash anywhere in a move: the file has its data, at its old blocks
/// or its new ones, and the filesystem checks clean.
#[test]
fn a_move_crashed_anywhere_keeps_the_data() {
    let (v, g, data) = two_partial_chunks();
    let image = unmount_and_check(v);
    let writes = {
        let mut v = mount(image.clone());
        let old = physical(&v, g, 0);
        *v.media().writes.borrow_mut() = 0;
        assert_eq!(v.relocate(g, 0, 27, old).unwrap(), 27);
        let n = *v.media().writes.borrow();
        n
    };
    assert!(writes > 2);
    for crash_at in 1..=writes {
        let mut v = mount(image.clone());
        let old = physical(&v, g, 0);
        *v.media().writes.borrow_mut() = 0;
        v.media().crash_at.set(Some(crash_at));
        v.relocate(g, 0, 27, old).unwrap();
        let crashed = v.media().crash_image.borrow_mut().take().unwrap();
        let (recovered, _) = Volume::mount(Pmem::new(crashed), Buffers::new(), false)
            .unwrap_or_else(|e| panic!("crash at {crash_at}: {e:?}"));
        assert_eq!(
            read(&recovered, g, 0, data.len()),
            data,
            "crash at {crash_at}"
        );
        let tail = recovered.map_read(g, 25, 2).unwrap();
        assert_eq!(tail.kind, MapKind::Unwritten);
        unmount_and_check(recovered);
    }
}

/// Pieces listed before their file lost every block (truncated to
/// nothing, or unlinked and evicted, its slot not freed yet: no tree at
/// all) move nothing, and the move leaves no tree behind (it used to
/// create an empty root the file never pointed at: a node and a
/// reverse-map record that fsck found without their file).
#[test]
fn a_piece_of_a_file_emptied_since_moves_nothing() {
    let (mut v, g, _) = two_partial_chunks();
    let old = physical(&v, g, 0);
    let change = AttrChange {
        size: Some(0),
        ..Default::default()
    };
    v.set_attr(g, &change).unwrap();
    assert_eq!(v.relocate(g, 0, 27, old).unwrap(), 0);
    let root = v.root();
    let h = v.lookup(root, b"h").unwrap();
    let h_old = physical(&v, h, 0);
    v.unlink(root, b"h", T0).unwrap();
    v.evict(h).unwrap();
    assert_eq!(v.inode(h).unwrap().map_root, 0);
    assert_eq!(v.relocate(h, 0, 25, h_old).unwrap(), 0);
    assert_eq!(v.inode(h).unwrap().map_root, 0);
    v.free_evicted().unwrap();
    unmount_and_check(v);
}

#[test]
fn nothing_to_compact_on_a_fresh_filesystem() {
    let (mut v, _, _) = two_partial_chunks();
    // Most free space is whole: compaction is not due.
    assert_eq!(v.compaction_victim(&|_| false).unwrap(), None);
    unmount_and_check(v);
}

/// A file of the interleaving test: its number, name and contents.
struct Churned {
    ino: u64,
    name: Vec<u8>,
    data: Vec<u8>,
}

/// The kernel's compaction job as steps that other operations interleave
/// with, as they do in the kernel: the job lists a chunk's pieces under
/// the volume lock, then moves them one at a time, each under its file's
/// locks, while other files are written, truncated and deleted between
/// the moves (and a listed piece may be gone or changed by then).
#[derive(Default)]
pub(super) struct Job {
    pieces: Vec<Owned>,
    tried: Vec<u64>,
}

impl Job {
    /// One step: places a misplaced region, or moves the next listed
    /// piece, or lists the next victim's pieces. `false` when it found
    /// nothing to do.
    pub(super) fn step(&mut self, v: &mut TestVolume, rng: &mut Lcg) -> bool {
        if rng.next() % 4 == 0 {
            if let Some((ino, region)) = v.take_misplaced() {
                match v.place_region_whole(ino, region) {
                    Ok(_) | Err(Error::NotFound | Error::NoSpace) => return true,
                    Err(e) => panic!("place_region_whole: {e:?}"),
                }
            }
        }
        if let Some(p) = self.pieces.pop() {
            match v.relocate(p.owner, p.file_block, p.len, p.start) {
                // Its file may be gone since (freed, or its slot used
                // again: then the blocks are not where the piece says);
                // short of space the chunk stays, as in the kernel.
                Ok(_) | Err(Error::NotFound | Error::NoSpace) => {}
                Err(e) => panic!("relocate {p:?}: {e:?}"),
            }
            return true;
        }
        let tried = &self.tried;
        let Some(chunk) = v.compaction_victim(&|c| tried.contains(&c)).unwrap() else {
            self.tried.clear();
            return false;
        };
        self.tried.push(chunk);
        let mut pieces = Vec::new();
        if v.chunk_pieces(chunk, &mut |o| pieces.push(*o)).unwrap() {
            pieces.reverse();
            self.pieces = pieces;
        }
        true
    }
}

/// `len` bytes of 8-byte words that differ from seed to seed and word to
/// word (cheaper than [`pattern`] for megabytes).
fn words(seed: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    for i in 0..len.div_ceil(8) as u64 {
        out.extend_from_slice(&(seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Writes `len` bytes of new data at `offset` of `f` in write(2) calls of
/// random sizes, with compaction steps between the calls; `false` on
/// ENOSPC (what was written stays).
fn churn_write(
    v: &mut TestVolume,
    job: &mut Job,
    rng: &mut Lcg,
    f: &mut Churned,
    offset: u64,
    len: u64,
) -> bool {
    let mut at = offset;
    while at < offset + len {
        let n = (1 + rng.next() % (300 << 10)).min(offset + len - at);
        let data = words(rng.next(), n as usize);
        match write(v, f.ino, at, &data) {
            Ok(()) => {}
            Err(Error::NoSpace) => {
                // The size covers what was written before the error.
                let size = v.inode(f.ino).unwrap().size;
                f.data.resize(size as usize, 0);
                return false;
            }
            Err(e) => panic!("write: {e:?}"),
        }
        let end = (at + n) as usize;
        if f.data.len() < end {
            f.data.resize(end, 0);
        }
        f.data[at as usize..end].copy_from_slice(&data);
        at += n;
        for _ in 0..rng.next() % 3 {
            job.step(v, rng);
        }
    }
    true
}

/// Compaction interleaved with creates, appends, truncations, hole
/// punches and deletes of files kept open or evicted late, on a small
/// volume kept nearly full: every file keeps its data, and the volume
/// checks clean (each tree node with its reverse-map record, each block
/// owned once) at every check point and at the end.
#[test]
fn compaction_interleaved_with_churn_keeps_files_and_checks_clean() {
    const BS: u64 = BLOCK_SIZE as u64;
    for seed in 1..=8u64 {
        let mut rng = Lcg(seed);
        let mut v = mount(formatted(48, None));
        let root = v.root();
        let capacity = v.statfs().blocks;
        let mut job = Job::default();
        let mut live: Vec<Churned> = Vec::new();
        // Unlinked, not evicted yet (held open, or by the job's iget).
        let mut held: Vec<Churned> = Vec::new();
        let mut next_name = 0u32;
        for step in 0..1500u32 {
            let used = capacity - v.statfs().free_blocks;
            let full = used * 100 / capacity >= 85;
            match rng.next() % 100 {
                0..=29 if !full => {
                    let name = alloc::format!("f{next_name}").into_bytes();
                    next_name += 1;
                    let (ino, _) = v.create(root, &name, &file(REG)).unwrap();
                    let mut f = Churned {
                        ino,
                        name,
                        data: Vec::new(),
                    };
                    let len = 1 + rng.next() % (3 << 20);
                    churn_write(&mut v, &mut job, &mut rng, &mut f, 0, len);
                    v.release(f.ino);
                    live.push(f);
                }
                30..=44 if !full && !live.is_empty() => {
                    let i = (rng.next() % live.len() as u64) as usize;
                    let f = &mut live[i];
                    // Appends, or writes inside, or past the end.
                    let size = f.data.len() as u64;
                    let offset = match rng.next() % 3 {
                        0 => size,
                        1 => rng.next() % (size + 1),
                        _ => size + rng.next() % (1 << 20),
                    };
                    let len = 1 + rng.next() % (1 << 20);
                    churn_write(&mut v, &mut job, &mut rng, f, offset, len);
                    v.release(f.ino);
                }
                45..=52 if !live.is_empty() => {
                    let i = (rng.next() % live.len() as u64) as usize;
                    let f = &mut live[i];
                    let size = rng.next() % (f.data.len() as u64 + (512 << 10));
                    let change = AttrChange {
                        size: Some(size),
                        ..Default::default()
                    };
                    match v.set_attr(f.ino, &change) {
                        Ok(_) => f.data.resize(size as usize, 0),
                        Err(Error::NoSpace) => {}
                        Err(e) => panic!("truncate: {e:?}"),
                    }
                }
                53..=57 if !live.is_empty() => {
                    let i = (rng.next() % live.len() as u64) as usize;
                    let f = &mut live[i];
                    let size = f.data.len() as u64;
                    let offset = rng.next() % (size + 1);
                    let len = (1 + rng.next() % (1 << 20)).min(size - offset + BS);
                    match v.punch_hole(f.ino, offset, len, T0) {
                        Ok(_) => {
                            let end = (offset + len).min(size) as usize;
                            f.data[offset as usize..end].fill(0);
                        }
                        Err(Error::NoSpace) => {}
                        Err(e) => panic!("punch: {e:?}"),
                    }
                }
                58..=89 if !live.is_empty() => {
                    let i = (rng.next() % live.len() as u64) as usize;
                    let f = live.swap_remove(i);
                    v.unlink(root, &f.name, T0).unwrap();
                    if rng.next() % 4 == 0 {
                        held.push(f);
                    } else {
                        v.evict(f.ino).unwrap();
                    }
                }
                90..=93 if !held.is_empty() => {
                    let f = held.swap_remove((rng.next() % held.len() as u64) as usize);
                    v.evict(f.ino).unwrap();
                }
                94..=95 => v.free_evicted().unwrap(),
                _ => {
                    for _ in 0..1 + rng.next() % 8 {
                        if !job.step(&mut v, &mut rng) {
                            break;
                        }
                    }
                }
            }
            if step % 250 != 249 {
                continue;
            }
            for f in &live {
                let got = read(&v, f.ino, 0, f.data.len());
                assert!(
                    got == f.data,
                    "seed {seed} step {step}: data of {:?}",
                    core::str::from_utf8(&f.name)
                );
            }
            // A crash now: what the media holds recovers and checks clean.
            let crashed = v.media().bytes().to_vec();
            let (recovered, _) = Volume::mount(Pmem::new(crashed), Buffers::new(), false)
                .unwrap_or_else(|e| panic!("seed {seed} step {step}: {e:?}"));
            unmount_and_check(recovered);
            // And a remount: what only the mounted volume knew is gone.
            for f in held.drain(..) {
                v.evict(f.ino).unwrap();
            }
            job = Job::default();
            v = mount(unmount_and_check(v));
        }
        for f in held.drain(..) {
            v.evict(f.ino).unwrap();
        }
        unmount_and_check(v);
    }
}
