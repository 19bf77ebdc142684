// SPDX-License-Identifier: GPL-2.0

//! Host tests of the volume: operations against a model, remounts, and
//! crashes at every kind of point inside transactions. This file is the
//! harness (memory standing in for pmem, with unfenced stores), helpers
//! shared by the topics, one file each.

extern crate alloc;

mod compact;
mod concurrent;
mod crafted;
mod crash;
mod data;
mod fuzz;
mod journal;
mod namespace;
mod placement;
mod poison;
mod reflink;

use alloc::{collections::BTreeMap, string::String, vec, vec::Vec};
use core::cell::{Cell, RefCell};

use super::*;
use crate::logic::{
    format::{
        inode::FileType,
        mkfs::{check_filesystem, make_filesystem, FsError, MkfsOptions},
        superblock::{
            Label, Superblock, BACKUP_BLOCK, PRIMARY_BLOCK, RO_COMPAT_LAZY_COUNTERS, STATE_CLEAN,
        },
        BLOCK_SIZE, CHUNK_BLOCKS,
    },
    testing::Lcg,
};
use crate::MemoryImage as Flat;

/// Memory standing in for pmem: what the CPU sees, what is durable, and
/// the stores between the two (not yet fenced).
struct Pmem {
    /// What the CPU sees. The volume reads by copying ([`Media::read`]),
    /// so it never holds a reference into it while a store changes it.
    memory: RefCell<Vec<u8>>,
    durable: RefCell<Vec<u8>>,
    pending: RefCell<Vec<(u64, Vec<u8>)>>,
    /// Writes so far, and the write at which to take a crash image.
    writes: RefCell<u64>,
    crash_at: Cell<Option<u64>>,
    crash_image: RefCell<Option<Vec<u8>>>,
    rng: RefCell<Lcg>,
    /// Byte ranges whose memory failed: reads of them fail, as the
    /// kernel's machine-check-safe copy does.
    failed: RefCell<Vec<core::ops::Range<u64>>>,
    /// A clock that ticks once per reading.
    clock: Cell<u64>,
}

impl Pmem {
    fn new(bytes: Vec<u8>) -> Self {
        Self {
            memory: RefCell::new(bytes.clone()),
            durable: RefCell::new(bytes),
            pending: RefCell::new(Vec::new()),
            writes: RefCell::new(0),
            crash_at: Cell::new(None),
            crash_image: RefCell::new(None),
            rng: RefCell::new(Lcg(7)),
            failed: RefCell::new(Vec::new()),
            clock: Cell::new(0),
        }
    }

    /// A copy of the `len` bytes at `offset`, for the tests to look at.
    fn region(&self, offset: u64, len: usize) -> Option<Vec<u8>> {
        self.memory
            .borrow()
            .get(offset as usize..(offset as usize).checked_add(len)?)
            .map(<[u8]>::to_vec)
    }

    /// A copy of block `n`, for the tests to look at.
    fn block(&self, n: u64) -> Option<[u8; BLOCK_SIZE]> {
        self.region(n * BLOCK_SIZE as u64, BLOCK_SIZE)?
            .try_into()
            .ok()
    }

    /// Makes block `n`'s memory fail: reads of it fail from now on.
    fn fail_block(&self, n: u64) {
        let start = n * BLOCK_SIZE as u64;
        self.failed
            .borrow_mut()
            .push(start..start + BLOCK_SIZE as u64);
    }

    /// Whether any byte of `offset..offset + len` failed.
    fn has_failed(&self, offset: u64, len: u64) -> bool {
        self.failed
            .borrow()
            .iter()
            .any(|r| r.start < offset + len && offset < r.end)
    }

    /// A copy of the whole device.
    fn bytes(&self) -> Vec<u8> {
        self.memory.borrow().clone()
    }

    /// The durable bytes plus a random subset of the pending 8-byte words:
    /// what a power failure now could leave.
    fn crash(&self) -> Vec<u8> {
        let mut image = self.durable.borrow().clone();
        let mut rng = self.rng.borrow_mut();
        for (offset, data) in self.pending.borrow().iter() {
            for (i, word) in data.chunks(8).enumerate() {
                if rng.next() % 2 == 0 {
                    let at = *offset as usize + i * 8;
                    image[at..at + word.len()].copy_from_slice(word);
                }
            }
        }
        image
    }

    fn store(&self, offset: u64, data: &[u8]) -> bool {
        let end = offset as usize + data.len();
        if end > self.memory.borrow().len() {
            return false;
        }
        self.memory.borrow_mut()[offset as usize..end].copy_from_slice(data);
        self.pending.borrow_mut().push((offset, data.to_vec()));
        // A crash at this store comes while it is under way: any of its
        // words may have reached the media, as any not fenced before it.
        let mut writes = self.writes.borrow_mut();
        *writes += 1;
        if Some(*writes) == self.crash_at.get() {
            *self.crash_image.borrow_mut() = Some(self.crash());
        }
        true
    }
}

impl Media for Pmem {
    fn size(&self) -> u64 {
        self.memory.borrow().len() as u64
    }
    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), MediaFault> {
        if self.has_failed(offset, buf.len() as u64) {
            return Err(MediaFault::Failed);
        }
        buf.copy_from_slice(
            &self
                .region(offset, buf.len())
                .ok_or(MediaFault::OutOfRange)?,
        );
        Ok(())
    }
    fn copy(&self, from: u64, to: u64, len: u64) -> Result<(), MediaFault> {
        copy_through(self, from, to, len)
    }
    fn write(&self, offset: u64, data: &[u8]) -> bool {
        self.store(offset, data)
    }
    fn zero(&self, offset: u64, len: u64) -> bool {
        self.store(offset, &vec![0u8; len as usize])
    }
    fn now_ns(&self) -> u64 {
        self.clock.set(self.clock.get() + 1);
        self.clock.get()
    }
    fn fence(&self) {
        let mut durable = self.durable.borrow_mut();
        for (offset, data) in self.pending.borrow_mut().drain(..) {
            durable[offset as usize..offset as usize + data.len()].copy_from_slice(&data);
        }
    }
}

/// [`Media::copy`] for test media: one read, then one write.
fn copy_through(media: &impl Media, from: u64, to: u64, len: u64) -> Result<(), MediaFault> {
    let mut data = vec![0u8; len as usize];
    media.read(from, &mut data)?;
    if media.write(to, &data) {
        Ok(())
    } else {
        Err(MediaFault::OutOfRange)
    }
}

type Buffers = crate::HeapScratch;

const T0: Timestamp = Timestamp {
    sec: 1_790_000_000,
    nsec: 0,
};

fn formatted(mib: u64, journal_blocks: Option<u64>) -> Vec<u8> {
    let mut image = Flat(vec![0x5au8; (mib << 20) as usize]);
    make_filesystem(
        &mut image,
        mib << 20,
        &MkfsOptions {
            uuid: *b"oxdax-volume-tst",
            label: Label::new("vol").unwrap(),
            journal_blocks,
            now: T0,
        },
    )
    .unwrap();
    image.0
}

type TestVolume = Volume<Pmem, Buffers>;

fn mount(bytes: Vec<u8>) -> TestVolume {
    Volume::mount(Pmem::new(bytes), Buffers::new(), false)
        .map(|(v, _)| v)
        .unwrap()
}

/// Unmounts and checks the image with the checks fsck runs, link counts
/// included.
fn unmount_and_check(mut volume: TestVolume) -> Vec<u8> {
    volume.unmount();
    let image = volume.media().bytes().to_vec();
    check_filesystem(&Flat(image.clone())).unwrap();
    let sb = *volume.superblock();
    let mut names: BTreeMap<u64, u32> = BTreeMap::new();
    let mut links: BTreeMap<u64, (u32, bool)> = BTreeMap::new();
    check_files(volume.media(), &sb, &mut |fact| match fact {
        Fact::Name { ino, .. } => *names.entry(ino).or_default() += 1,
        Fact::Inode { ino, nlink, is_dir } => {
            links.insert(ino, (nlink, is_dir));
        }
    })
    .unwrap();
    for (ino, (nlink, is_dir)) in links {
        let named = names.get(&ino).copied().unwrap_or(0);
        if is_dir {
            let expected = if ino == sb.root_ino {
                0
            } else {
                u32::from(nlink != 0)
            };
            assert_eq!(named, expected, "names of directory {ino}");
        } else {
            assert_eq!(named, nlink, "link count of {ino}");
        }
    }
    image
}

fn file(mode: u32) -> NewInode {
    NewInode {
        mode,
        uid: 1000,
        gid: 100,
        rdev: 0,
        now: T0,
    }
}

const REG: u32 = 0o100644;

const DIR: u32 = 0o040755;

/// The whole namespace as (path → (type, nlink, size)), from readdir.
fn listing(volume: &TestVolume) -> BTreeMap<String, (bool, u32, u64, u64)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![(volume.root(), String::new())];
    while let Some((dir, path)) = stack.pop() {
        let mut entries = Vec::new();
        volume
            .readdir(dir, FIRST_POSITION, &mut |e| {
                entries.push((String::from_utf8(e.name.to_vec()).unwrap(), e.ino, e.dtype));
                true
            })
            .unwrap();
        let parent = volume.inode(dir).unwrap();
        assert_eq!(
            parent.size,
            entries.len() as u64,
            "directory size counts entries"
        );
        let subdirs = entries.iter().filter(|e| e.2 == 4).count() as u32;
        assert_eq!(parent.nlink, 2 + subdirs, "directory link count");
        for (name, ino, dtype) in entries {
            let inode = volume.inode(ino).unwrap();
            let is_dir = inode.file_type() == Some(FileType::Directory);
            assert_eq!(dtype, inode.file_type().unwrap().dtype());
            assert_eq!(volume.lookup(dir, name.as_bytes()), Ok(ino));
            let full = alloc::format!("{path}/{name}");
            if is_dir {
                assert_eq!(inode.parent, dir);
                stack.push((ino, full.clone()));
            }
            let content = if is_dir {
                0
            } else {
                read(volume, ino, 0, inode.size as usize)
                    .iter()
                    .fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
                        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
                    })
            };
            out.insert(full, (is_dir, inode.nlink, inode.size, content));
        }
    }
    out
}

/// Owners of blocks other than the filesystem-wide trees.
fn owners(v: &TestVolume) -> alloc::collections::BTreeSet<u64> {
    use crate::logic::format::{btree::Tree, kinds};
    let sb = *v.superblock();
    let rmap = Tree::<kinds::ReverseMap>::open(sb.rmap_root, kinds::OWNER_REVERSE_MAP);
    let mut owners = alloc::collections::BTreeSet::new();
    let _complete = rmap
        .scan(
            &super::tx::Committed::checking_all(v.media()),
            &[0u8; 24],
            &mut |k, _| {
                let key = kinds::RmapKey::decode(k).unwrap();
                if key.owner < kinds::OWNER_REFCOUNTS {
                    owners.insert(key.owner);
                }
                core::ops::ControlFlow::Continue(())
            },
        )
        .unwrap();
    owners
}

/// Writes `data` at byte `offset` of `ino` the way the kernel does: zero
/// the gap past the end of file, map for write, copy into the blocks, then
/// update the size.
fn write(v: &mut TestVolume, ino: u64, offset: u64, data: &[u8]) -> Result<(), Error> {
    v.zero_past_eof(ino, offset)?;
    let mut done = 0usize;
    while done < data.len() {
        let at = offset + done as u64;
        let first = at / BLOCK_SIZE as u64;
        let last = (offset + data.len() as u64 - 1) / BLOCK_SIZE as u64;
        let mapping = v.map_write(ino, first, last - first + 1, SharedWrite::Copy)?;
        assert_eq!(mapping.kind, MapKind::Data);
        let within = (at % BLOCK_SIZE as u64) as usize;
        let room = mapping.len as usize * BLOCK_SIZE - within;
        let n = room.min(data.len() - done);
        assert!(v.media().write(
            mapping.physical * BLOCK_SIZE as u64 + within as u64,
            &data[done..done + n]
        ));
        v.media().fence();
        done += n;
        v.write_done(ino, at + n as u64, T0)?;
    }
    Ok(())
}

fn read(v: &TestVolume, ino: u64, offset: u64, len: usize) -> Vec<u8> {
    let size = v.inode(ino).unwrap().size;
    let end = (offset + len as u64).min(size);
    let mut out = Vec::new();
    let mut at = offset;
    while at < end {
        let block = at / BLOCK_SIZE as u64;
        let mapping = v
            .map_read(ino, block, (end - at).div_ceil(BLOCK_SIZE as u64))
            .unwrap();
        let within = at % BLOCK_SIZE as u64;
        let n = ((mapping.len * BLOCK_SIZE as u64 - within).min(end - at)) as usize;
        match mapping.kind {
            MapKind::Data => out.extend_from_slice(
                &v.media()
                    .region(mapping.physical * BLOCK_SIZE as u64 + within, n)
                    .unwrap(),
            ),
            _ => out.extend(core::iter::repeat(0).take(n)),
        }
        at += n as u64;
    }
    out
}

fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = Lcg(seed);
    (0..len).map(|_| rng.next() as u8).collect()
}

/// A file of `extents` one-block extents alternating with holes, written
/// backwards so they do not merge, and its contents.
fn fragmented_file(extents: u64) -> (TestVolume, u64, Vec<u8>) {
    const BS: u64 = BLOCK_SIZE as u64;
    let mut v = mount(formatted(64, None));
    let root = v.root();
    let (f, _) = v.create(root, b"f", &file(REG)).unwrap();
    let mut model = vec![0u8; (extents * 2 * BS) as usize];
    for b in (0..extents).rev().map(|i| i * 2) {
        let data = pattern(b, BS as usize);
        write(&mut v, f, b * BS, &data).unwrap();
        model[(b * BS) as usize..((b + 1) * BS) as usize].copy_from_slice(&data);
    }
    (v, f, model)
}

/// A populated image, unmounted cleanly, and the blocks that hold its
/// metadata (where mutations hurt most).
fn fuzz_base() -> (Vec<u8>, Vec<u64>) {
    let mut v = mount(formatted(16, Some(1024)));
    let root = v.root();
    let (d, _) = v.create(root, b"dir", &file(DIR)).unwrap();
    for i in 0..40u64 {
        let parent = if i % 3 == 0 { d } else { root };
        let (f, _) = v
            .create(parent, alloc::format!("file{i}").as_bytes(), &file(REG))
            .unwrap();
        write(&mut v, f, i * 1000, &pattern(i, 3000 + i as usize * 100)).unwrap();
    }
    let src = v.lookup(root, b"file1").unwrap();
    let dst = v.lookup(root, b"file2").unwrap();
    v.reflink(src, 0, dst, 0, 4096, T0).unwrap();
    let _ = v.allocate(src, 1 << 20, 1 << 20, true, T0);
    let sb = *v.superblock();
    let image = unmount_and_check(v);
    // Metadata: fixed regions' first blocks and every reverse-map record
    // flagged metadata (tree nodes, inode chunks).
    let mut blocks = vec![
        0,
        1,
        sb.layout.journal_start,
        sb.layout.bitmap_start,
        sb.layout.summary_start,
    ];
    let v = mount(image.clone());
    use crate::logic::format::{btree::Tree, kinds};
    let rmap = Tree::<kinds::ReverseMap>::open(v.superblock().rmap_root, kinds::OWNER_REVERSE_MAP);
    let _complete = rmap
        .scan(
            &super::tx::Committed::checking_all(v.media()),
            &[0u8; 24],
            &mut |k, val| {
                let key = kinds::RmapKey::decode(k).unwrap();
                let len = u64::from_le_bytes(val[..8].try_into().unwrap());
                if val[8] & 1 != 0 {
                    blocks.extend(key.start..key.start + len);
                }
                core::ops::ControlFlow::Continue(())
            },
        )
        .unwrap();
    (image, blocks)
}

/// Recomputes the checksum of a superblock or tree node in place (inode
/// records are seeded by their number and left as they are).
fn reseal(block: &mut [u8], number: u64) {
    use crate::logic::format::crc32c::{checksum, update};
    // Superblocks, and the journal header (always block 2).
    if number <= 2 {
        let crc = checksum(&block[..BLOCK_SIZE - 4]);
        block[BLOCK_SIZE - 4..].copy_from_slice(&crc.to_le_bytes());
    } else if block[..4] == *b"OXBT" {
        let crc = update(update(0, &block[..28]), &block[32..]);
        block[28..32].copy_from_slice(&crc.to_le_bytes());
    }
}
