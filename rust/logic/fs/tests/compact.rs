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

#[test]
fn nothing_to_compact_on_a_fresh_filesystem() {
    let (mut v, _, _) = two_partial_chunks();
    // Most free space is whole: compaction is not due.
    assert_eq!(v.compaction_victim(&|_| false).unwrap(), None);
    unmount_and_check(v);
}
