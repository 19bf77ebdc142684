// SPDX-License-Identifier: GPL-2.0

//! Mutated and crafted images: mounted or refused, then every operation
//! works or fails cleanly (`OXDAX_FUZZ_IMAGES`).

use super::*;

/// Everything a user could do with a mounted image; errors are fine,
/// panics (the kernel's BUG) and hangs are not.
fn exercise(v: &mut TestVolume) {
    let root = v.root();
    let mut stack = vec![root];
    let mut files = Vec::new();
    let mut visited = 0;
    while let Some(dir) = stack.pop() {
        visited += 1;
        if visited > 200 {
            break;
        }
        let mut entries = Vec::new();
        let _ = v.readdir(dir, FIRST_POSITION, &mut |e| {
            entries.push((e.name.to_vec(), e.ino, e.dtype));
            entries.len() < 100
        });
        for (name, ino, dtype) in entries {
            let _ = v.lookup(dir, &name);
            match v.inode(ino) {
                Ok(inode) if dtype == 4 && inode.file_type() == Some(FileType::Directory) => {
                    stack.push(ino)
                }
                Ok(inode) => files.push((ino, inode.size.min(1 << 20))),
                Err(_) => {}
            }
        }
    }
    for &(ino, size) in files.iter().take(20) {
        let mut block = 0;
        while block * 4096 < size {
            match v.map_read(ino, block, 64) {
                Ok(m) => block = m.file_block + m.len.max(1),
                Err(_) => break,
            }
        }
        let _ = v.map_write(ino, 0, 3, SharedWrite::Copy);
        let _ = v.write_done(ino, 100, T0);
        let _ = v.set_attr(
            ino,
            &AttrChange {
                size: Some(size / 2),
                ..Default::default()
            },
        );
        let _ = v.punch_hole(ino, 0, 8192, T0);
        let _ = v.allocate(ino, 0, 16384, false, T0);
    }
    if let [(a, _), (b, _), ..] = files[..] {
        let _ = v.reflink(a, 0, b, 0, 8192, T0);
    }
    let _ = v.create(root, b"fuzz-new", &file(REG));
    let _ = v.create(root, b"fuzz-dir", &file(DIR));
    let _ = v.rename(
        root,
        b"fuzz-new",
        root,
        b"file3",
        RenameFlags::default(),
        T0,
    );
    if let Ok(gone) = v.unlink(root, b"file3", T0) {
        let _ = v.evict(gone.ino);
    }
    if let Ok(gone) = v.rmdir(root, b"dir", T0) {
        let _ = v.evict(gone.ino);
    }
    let _ = v.statfs();
    // What a memory failure and fsck's repair ask of the reverse map.
    let data_start = v.superblock().layout.data_start;
    let _ = v.owners(data_start, 4096, &mut |_| true);
    let _ = v.repair_space();
    v.unmount();
}

/// Mutated images (bit flips, crafted integers, copied blocks) mount or
/// are refused, and then every operation either works or fails cleanly.
/// `OXDAX_FUZZ_IMAGES` sets the count (`make fuzz` runs 10,000).
#[test]
fn fuzzed_images_never_panic() {
    let (base, metadata) = fuzz_base();
    let images: u64 = std::env::var("OXDAX_FUZZ_IMAGES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(300);
    let mut rng = Lcg(0xf022);
    let (mut mounted, mut refused, mut consistent) = (0, 0, 0);
    for round in 0..images {
        let mut image = base.clone();
        for _ in 0..1 + rng.next() % 4 {
            let block = metadata[rng.next() as usize % metadata.len()] as usize;
            let at = block * BLOCK_SIZE + (rng.next() as usize % (BLOCK_SIZE / 8)) * 8;
            if rng.next() % 3 == 0 && craft_record(&mut image, block, &metadata, &mut rng) {
                continue;
            }
            let before = image[block * BLOCK_SIZE..(block + 1) * BLOCK_SIZE].to_vec();
            match rng.next() % 5 {
                0 => image[at + rng.next() as usize % 8] ^= 1 << (rng.next() % 8),
                1 => image[at..at + 8].copy_from_slice(&u64::MAX.to_le_bytes()),
                2 => image[at..at + 8].copy_from_slice(&(rng.next() % 8192).to_le_bytes()),
                3 => image[at..at + 8].copy_from_slice(&0u64.to_le_bytes()),
                _ => {
                    // A whole block copied over another (misdirected write).
                    let other =
                        metadata[rng.next() as usize % metadata.len()] as usize * BLOCK_SIZE;
                    let copy = image[other..other + BLOCK_SIZE].to_vec();
                    image[block * BLOCK_SIZE..(block + 1) * BLOCK_SIZE].copy_from_slice(&copy);
                }
            }
            // Keep a checksummed block's checksum right half the time, so
            // the crafted values get past it and test the checks behind.
            if rng.next() % 2 == 0 {
                let new = &mut image[block * BLOCK_SIZE..(block + 1) * BLOCK_SIZE];
                reseal(new, block as u64);
                reseal_inodes(&before, new, block as u64);
            }
        }
        // The oracle: an image that passes every check fsck runs must still
        // pass them after everything a user could do with it.
        let checks = |image: &[u8]| {
            let media = Pmem::new(image.to_vec());
            check_filesystem(&Flat(image.to_vec())).is_ok()
                && media.block(0).is_some_and(|b| {
                    crate::logic::format::superblock::Superblock::decode(&b)
                        .is_ok_and(|sb| check_files(&media, &sb, &mut |_| {}).is_ok())
                })
        };
        let clean = checks(&image);
        // A hang fails the test instead of blocking it.
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let outcome = match Volume::mount(Pmem::new(image), Buffers::new(), false) {
                Ok((mut v, _)) => {
                    exercise(&mut v);
                    Some(v.media().bytes().to_vec())
                }
                Err(_) => None,
            };
            let _ = done.send(outcome);
        });
        let outcome = finished
            .recv_timeout(std::time::Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("image {round}: still running after 60 s"));
        match outcome {
            Some(after) => {
                mounted += 1;
                if clean {
                    consistent += 1;
                    assert!(
                        checks(&after),
                        "image {round} checked clean, but not after use"
                    );
                }
            }
            None => refused += 1,
        }
    }
    assert!(
        mounted > 0 && refused > 0 && consistent > 0,
        "{mounted} mounted, {refused} refused, {consistent} checked clean"
    );
}

/// Reseals the inode records of block `block` whose checksum was right in
/// `before`: a record's checksum is seeded with its inode number, which
/// the block alone does not tell (it may be any of the four blocks of a
/// chunk), so it is found by trying them.
fn reseal_inodes(before: &[u8], after: &mut [u8], block: u64) {
    use crate::logic::format::{
        crc32c::{checksum, update},
        inode::INODE_BYTES,
    };
    let crc =
        |ino: u64, record: &[u8]| update(checksum(&ino.to_le_bytes()), &record[..INODE_BYTES - 4]);
    for r in 0..BLOCK_SIZE / INODE_BYTES {
        let span = r * INODE_BYTES..(r + 1) * INODE_BYTES;
        let stored = u32::from_le_bytes(before[span.end - 4..span.end].try_into().unwrap());
        for back in 0..4u64 {
            let Some(chunk) = block.checked_sub(back).filter(|&c| c > 0) else {
                continue;
            };
            let ino = chunk << 6 | (back * 16 + r as u64);
            if crc(ino, &before[span.clone()]) == stored {
                let new = crc(ino, &after[span.clone()]);
                after[span.end - 4..span.end].copy_from_slice(&new.to_le_bytes());
                break;
            }
        }
    }
}

/// Crafts one field of one record of tree node `block` (if it is one)
/// and reseals the node, so the crafted record passes the checksum and
/// reaches the checks behind it. In a leaf, a value at an edge — past the
/// device, at its last block, zero, near `u64::MAX` — or a length one
/// longer: extents' device blocks and lengths, refcount and reverse-map
/// ranges and counts, inode-chunk maps, directory entries' inode numbers.
/// In an internal node, a separator moved to a neighbour's key or one off
/// it, or a child pointer to another node (of `metadata`). Returns whether
/// it did.
fn craft_record(image: &mut [u8], block: usize, metadata: &[u64], rng: &mut Lcg) -> bool {
    let block_count = (image.len() / BLOCK_SIZE) as u64;
    let node = &mut image[block * BLOCK_SIZE..(block + 1) * BLOCK_SIZE];
    let count = u16::from_le_bytes([node[6], node[7]]) as usize;
    if node[..4] != *b"OXBT" || count == 0 {
        return false;
    }
    if node[5] > 0 {
        let key = match node[4] {
            3 => 12,
            4 => 24,
            _ => 8,
        };
        let size = key + 8;
        let i = rng.next() as usize % count;
        let at = 32 + i * size;
        if rng.next() % 2 == 0 {
            // The child pointer: another metadata block, or a neighbour's.
            let to = if rng.next() % 2 == 0 {
                metadata[rng.next() as usize % metadata.len()]
            } else {
                let j = rng.next() as usize % count;
                u64::from_le_bytes(
                    node[32 + j * size + key..32 + j * size + size]
                        .try_into()
                        .unwrap(),
                )
            };
            node[at + key..at + size].copy_from_slice(&to.to_le_bytes());
        } else {
            // The separator's last 8 bytes: a neighbour's, or one off.
            let j = if i + 1 < count && rng.next() % 2 == 0 {
                i + 1
            } else {
                i.saturating_sub(1)
            };
            let from = 32 + j * size + key - 8;
            let mut word = u64::from_be_bytes(node[from..from + 8].try_into().unwrap());
            word = match rng.next() % 3 {
                0 => word,
                1 => word.wrapping_add(1),
                _ => word.wrapping_sub(1),
            };
            node[at + key - 8..at + key].copy_from_slice(&word.to_be_bytes());
        }
        reseal(node, block as u64);
        return true;
    }
    let edges = [
        u64::MAX,
        u64::MAX - 1,
        u64::MAX - 512,
        1 << 63,
        u64::from(u32::MAX),
        block_count,
        block_count - 1,
        0,
        1,
        2,
    ];
    let mut value = edges[rng.next() as usize % edges.len()];
    // (key bytes, value bytes) per kind, and the fields worth crafting:
    // (offset in the entry, width, big-endian key field).
    let fields: &[(usize, usize, bool)] = match node[4] {
        1 => &[(0, 8, true), (8, 8, false)],
        2 => &[(0, 8, true), (8, 8, false), (16, 4, false)],
        3 => &[(12, 8, false)],
        4 => &[(0, 8, true), (8, 8, true), (16, 8, true), (24, 8, false)],
        5 => &[(0, 8, true), (8, 8, false), (16, 8, false)],
        _ => return false,
    };
    let entry_size = match node[4] {
        1 | 2 | 5 => 24,
        3 => 12 + crate::logic::format::kinds::DIRENT_BYTES,
        _ => 40,
    };
    let (offset, width, big_endian) = fields[rng.next() as usize % fields.len()];
    let at = 32 + (rng.next() as usize % count) * entry_size + offset;
    if rng.next() % 3 == 0 {
        // In range but inconsistent: the field one more than it was.
        let mut old = [0u8; 8];
        if big_endian {
            old[8 - width..].copy_from_slice(&node[at..at + width]);
            value = u64::from_be_bytes(old).wrapping_add(1);
        } else {
            old[..width].copy_from_slice(&node[at..at + width]);
            value = u64::from_le_bytes(old).wrapping_add(1);
        }
    }
    let bytes = if big_endian {
        value.to_be_bytes()
    } else {
        value.to_le_bytes()
    };
    let bytes = if big_endian {
        &bytes[8 - width..]
    } else {
        &bytes[..width]
    };
    node[at..at + width].copy_from_slice(bytes);
    reseal(node, block as u64);
    true
}
