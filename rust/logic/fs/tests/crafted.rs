// SPDX-License-Identifier: GPL-2.0

//! Crafted images with valid checksums: damage only the record-level
//! checks can see. The per-file checks catch records that disagree with
//! each other; and the cases an audit of the media-derived values found
//! dangerous are each an error where they are read (two panicked, one
//! looped forever, two freed blocks another file still used).

use super::*;

/// The per-file checks notice records that disagree with each other even
/// when every checksum is right.
#[test]
fn file_checks_catch_consistent_looking_damage() {
    use crate::logic::format::inode::{location, INODE_BYTES};
    let mut v = mount(formatted(32, None));
    let root = v.root();
    let (f, _) = v.create(root, b"f", &file(REG)).unwrap();
    write(&mut v, f, 0, &pattern(1, 20_000)).unwrap();
    let (d, _) = v.create(root, b"d", &file(DIR)).unwrap();
    let image = unmount_and_check(v);
    let damaged = |ino: u64, change: &dyn Fn(&mut Inode)| {
        let mut bytes = image.clone();
        let at = location(ino).unwrap();
        let offset = at.block as usize * BLOCK_SIZE + at.offset;
        let mut inode = Inode::decode(ino, &bytes[offset..offset + INODE_BYTES])
            .unwrap()
            .unwrap();
        change(&mut inode);
        let mut record = [0u8; INODE_BYTES];
        inode.encode(ino, &mut record);
        bytes[offset..offset + INODE_BYTES].copy_from_slice(&record);
        let media = Pmem::new(bytes);
        let sb =
            crate::logic::format::superblock::Superblock::decode(&media.block(0).unwrap()).unwrap();
        check_files(&media, &sb, &mut |_| {})
            .err()
            .map(|p| (p.ino, p.what))
    };
    assert_eq!(damaged(f, &|i| i.blocks += 1), Some((f, "block count")));
    assert_eq!(
        damaged(d, &|i| i.size = 3),
        Some((d, "directory size is not its entry count"))
    );
    assert_eq!(
        damaged(root, &|i| i.nlink = 2),
        Some((root, "directory link count"))
    );
    assert_eq!(
        damaged(d, &|i| i.parent = d),
        Some((root, "subdirectory's parent"))
    );
    assert!(damaged(f, &|i| i.map_root = i.map_root + 1).is_some());
}

use crate::logic::format::{crc32c, journal::JournalHeader, superblock::Superblock};

fn reseal_superblock(image: &mut [u8], block: usize) {
    let b = &mut image[block * BLOCK_SIZE..(block + 1) * BLOCK_SIZE];
    let crc = crc32c::checksum(&b[..BLOCK_SIZE - 4]);
    b[BLOCK_SIZE - 4..].copy_from_slice(&crc.to_le_bytes());
}

fn node(image: &mut [u8], block: u64) -> &mut [u8] {
    &mut image[block as usize * BLOCK_SIZE..(block as usize + 1) * BLOCK_SIZE]
}

#[test]
fn a_journal_sequence_near_its_end_is_refused() {
    let mut image = formatted(32, None);
    let sb = Superblock::decode(&image[..BLOCK_SIZE]).unwrap();
    let mut block = [0u8; BLOCK_SIZE];
    JournalHeader {
        tail_seq: u64::MAX,
        tail_offset: 0,
    }
    .encode(&mut block);
    node(&mut image, sb.layout.journal_start).copy_from_slice(&block);
    let mounted = Volume::mount(Pmem::new(image), Buffers::new(), false);
    assert_eq!(mounted.err(), Some(MountError::Journal));
}

#[test]
fn an_inode_count_past_what_fits_is_refused() {
    let mut image = formatted(32, None);
    for b in 0..2 {
        image[b * BLOCK_SIZE + 0xc0..b * BLOCK_SIZE + 0xc8]
            .copy_from_slice(&u64::MAX.to_le_bytes());
        reseal_superblock(&mut image, b);
    }
    assert!(Volume::mount(Pmem::new(image), Buffers::new(), false).is_err());
}

/// A file of 200 one-block extents at even file blocks: a two-level
/// extent tree. Returns the image, the file and its root node.
fn two_level_file() -> (Vec<u8>, u64, u64) {
    let mut v = mount(formatted(64, None));
    let root = v.root();
    let (f, _) = v.create(root, b"f", &file(REG)).unwrap();
    for i in 0..200u64 {
        write(&mut v, f, 2 * i * 4096, &pattern(i, 4096)).unwrap();
    }
    let top = v.inode(f).unwrap().map_root;
    (unmount_and_check(v), f, top)
}

#[test]
fn a_raised_separator_fails_instead_of_looping() {
    let (mut image, f, top) = two_level_file();
    let n = node(&mut image, top);
    assert_eq!(n[5], 1, "the root is internal");
    let k1 = u64::from_be_bytes(n[48..56].try_into().unwrap());
    n[48..56].copy_from_slice(&(k1 + 1).to_be_bytes());
    reseal(n, top);
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut v = mount(image);
        let _ = done.send(v.punch_hole(f, k1 * 4096, 4096, T0).map(|_| ()));
    });
    let result = finished
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("punch_hole still running after 20 s");
    assert!(matches!(result, Err(Error::Corrupt(..))), "{result:?}");
}

#[test]
fn a_lowered_separator_frees_nothing_still_mapped() {
    let (mut image, f, top) = two_level_file();
    let k1 = u64::from_be_bytes(node(&mut image, top)[48..56].try_into().unwrap());
    // The left leaf's last key (extents at even blocks).
    let target = k1 - 2;
    let physical = {
        let v = mount(image.clone());
        v.map_read(f, target, 1).unwrap().physical
    };
    let n = node(&mut image, top);
    n[48..56].copy_from_slice(&target.to_be_bytes());
    reseal(n, top);
    let mut v = mount(image);
    let root = v.root();
    assert!(matches!(
        v.punch_hole(f, target * 4096, 4096, T0),
        Err(Error::Corrupt(..))
    ));
    let (g, _) = v.create(root, b"g", &file(REG)).unwrap();
    for i in 0..400 {
        if let Ok(m) = v.map_write(g, i, 1, SharedWrite::Copy) {
            assert_ne!(m.physical, physical, "f's block handed to g");
        }
    }
}

#[test]
fn an_extent_longer_than_its_reverse_map_record_frees_nothing() {
    let mut v = mount(formatted(32, None));
    let root = v.root();
    let (a, _) = v.create(root, b"a", &file(REG)).unwrap();
    write(&mut v, a, 0, &pattern(1, 4096)).unwrap();
    let (b, _) = v.create(root, b"b", &file(REG)).unwrap();
    write(&mut v, b, 0, &pattern(2, 4096)).unwrap();
    let pa = v.map_read(a, 0, 1).unwrap().physical;
    let pb = v.map_read(b, 0, 1).unwrap().physical;
    assert!(pb > pa);
    let leaf = v.inode(a).unwrap().map_root;
    let mut image = unmount_and_check(v);
    let n = node(&mut image, leaf);
    n[48..52].copy_from_slice(&((pb - pa + 1) as u32).to_le_bytes());
    reseal(n, leaf);
    let mut v = mount(image);
    let gone = v.unlink(root, b"a", T0).unwrap();
    // Found at the commit: nothing of the transaction is applied, and
    // the volume shuts down (the media and memory may disagree).
    assert!(matches!(v.evict(gone.ino), Err(Error::Corrupt(..))));
    assert!(v.is_shut_down());
    assert_eq!(
        v.media().region(pb * BLOCK_SIZE as u64, 4096).unwrap(),
        &pattern(2, 4096)[..],
        "b's block untouched"
    );
    let image = v.media().bytes().to_vec();
    let media = Pmem::new(image);
    let sb = Superblock::decode(&media.block(0).unwrap()).unwrap();
    assert!(
        check_files(&media, &sb, &mut |_| {}).is_err(),
        "fsck sees the damage"
    );
}
