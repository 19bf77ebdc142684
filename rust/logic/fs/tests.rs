// SPDX-License-Identifier: GPL-2.0

//! Host tests of the volume: operations against a model, remounts, and
//! crashes at every kind of point inside transactions.

extern crate alloc;

use alloc::{boxed::Box, collections::BTreeMap, string::String, vec, vec::Vec};
use core::cell::{Cell, RefCell};

use super::*;
use crate::logic::{
    format::{
        inode::FileType,
        mkfs::{check_filesystem, make_filesystem, Image, MkfsOptions},
        superblock::Label,
        BLOCK_SIZE, CHUNK_BLOCKS,
    },
    testing::Lcg,
};

/// Memory standing in for pmem: what the CPU sees, what is durable, and
/// the stores between the two (not yet fenced).
struct Pmem {
    /// `Box<[u8]>` taken apart: written through the pointer while the
    /// volume holds shared references to other bytes, as on real pmem.
    base: *mut u8,
    len: usize,
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
}

impl Pmem {
    fn new(bytes: Vec<u8>) -> Self {
        Self {
            len: bytes.len(),
            base: Box::into_raw(bytes.clone().into_boxed_slice()).cast::<u8>(),
            durable: RefCell::new(bytes),
            pending: RefCell::new(Vec::new()),
            writes: RefCell::new(0),
            crash_at: Cell::new(None),
            crash_image: RefCell::new(None),
            rng: RefCell::new(Lcg(7)),
            failed: RefCell::new(Vec::new()),
        }
    }

    /// `len` bytes at `offset`, for the tests to look at.
    fn region(&self, offset: u64, len: usize) -> Option<&[u8]> {
        self.bytes()
            .get(offset as usize..(offset as usize).checked_add(len)?)
    }

    /// Block `n`, for the tests to look at.
    fn block(&self, n: u64) -> Option<&[u8; BLOCK_SIZE]> {
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

    fn bytes(&self) -> &[u8] {
        // SAFETY: `base` is a live allocation of `len` bytes; writes go
        // through raw pointers and never to bytes the volume holds a
        // reference to (the property the kernel's pmem mapping needs too).
        unsafe { core::slice::from_raw_parts(self.base, self.len) }
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
        if end > self.bytes().len() {
            return false;
        }
        {
            let mut writes = self.writes.borrow_mut();
            *writes += 1;
            if Some(*writes) == self.crash_at.get() {
                *self.crash_image.borrow_mut() = Some(self.crash());
            }
        }
        // SAFETY: in bounds (checked above); see `bytes`.
        unsafe {
            core::ptr::copy_nonoverlapping(
                data.as_ptr(),
                self.base.add(offset as usize),
                data.len(),
            )
        };
        self.pending.borrow_mut().push((offset, data.to_vec()));
        true
    }
}

impl Drop for Pmem {
    fn drop(&mut self) {
        // SAFETY: `base`/`len` came from `Box::into_raw` of a boxed slice.
        drop(unsafe { Box::from_raw(core::ptr::slice_from_raw_parts_mut(self.base, self.len)) });
    }
}

impl Media for Pmem {
    fn size(&self) -> u64 {
        self.bytes().len() as u64
    }
    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), MediaFault> {
        if self.has_failed(offset, buf.len() as u64) {
            return Err(MediaFault::Failed);
        }
        buf.copy_from_slice(
            self.region(offset, buf.len())
                .ok_or(MediaFault::OutOfRange)?,
        );
        Ok(())
    }
    fn copy(&self, from: u64, to: u64, len: u64) -> Result<(), MediaFault> {
        let mut data = vec![0u8; len as usize];
        self.read(from, &mut data)?;
        if self.store(to, &data) {
            Ok(())
        } else {
            Err(MediaFault::OutOfRange)
        }
    }
    fn write(&self, offset: u64, data: &[u8]) -> bool {
        self.store(offset, data)
    }
    fn zero(&self, offset: u64, len: u64) -> bool {
        self.store(offset, &vec![0u8; len as usize])
    }
    fn fence(&self) {
        let mut durable = self.durable.borrow_mut();
        for (offset, data) in self.pending.borrow_mut().drain(..) {
            durable[offset as usize..offset as usize + data.len()].copy_from_slice(&data);
        }
    }
}

type Buffers = crate::HeapScratch;

struct Flat(Vec<u8>);

impl Image for Flat {
    type Error = ();
    fn block(&self, n: u64) -> Result<&[u8; BLOCK_SIZE], ()> {
        let at = n as usize * BLOCK_SIZE;
        self.0
            .get(at..at + BLOCK_SIZE)
            .and_then(|b| b.try_into().ok())
            .ok_or(())
    }
    fn block_mut(&mut self, n: u64) -> Result<&mut [u8; BLOCK_SIZE], ()> {
        let at = n as usize * BLOCK_SIZE;
        self.0
            .get_mut(at..at + BLOCK_SIZE)
            .and_then(|b| b.try_into().ok())
            .ok_or(())
    }
}

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

#[test]
fn mounts_a_fresh_filesystem() {
    let volume = mount(formatted(32, None));
    let stat = volume.statfs();
    assert!(stat.free_blocks > 0 && stat.free_blocks < stat.blocks);
    assert_eq!(
        volume.lookup(volume.root(), b"nothing"),
        Err(Error::NotFound)
    );
    assert!(listing(&volume).is_empty());
    unmount_and_check(volume);
}

#[test]
fn refuses_what_is_not_a_filesystem() {
    let junk = vec![0u8; 32 << 20];
    assert_eq!(
        Volume::mount(Pmem::new(junk), Buffers::new(), false).err(),
        Some(MountError::NoFilesystem)
    );
    let mut image = formatted(32, None);
    image.truncate(16 << 20);
    assert_eq!(
        Volume::mount(Pmem::new(image), Buffers::new(), false).err(),
        Some(MountError::TooSmall)
    );
    // A damaged primary falls back to the backup.
    let mut image = formatted(32, None);
    image[100] ^= 1;
    let (volume, report) = Volume::mount(Pmem::new(image), Buffers::new(), false).unwrap();
    assert!(report.used_backup);
    unmount_and_check(volume);
}

#[test]
fn namespace_operations_and_errors() {
    let mut v = mount(formatted(32, None));
    let root = v.root();
    let (a, _) = v.create(root, b"a", &file(REG)).unwrap();
    let (d, _) = v.create(root, b"d", &file(DIR)).unwrap();
    assert_eq!(v.create(root, b"a", &file(REG)), Err(Error::Exists));
    assert_eq!(
        v.create(root, &[b'x'; 256], &file(REG)),
        Err(Error::NameTooLong)
    );
    assert!(v.create(root, &[b'x'; 255], &file(REG)).is_ok());
    assert_eq!(v.create(a, b"z", &file(REG)), Err(Error::NotDir));
    assert_eq!(
        v.unlink(root, b"d", T0),
        Err(Error::IsDir).map(|()| unreachable!())
    );
    assert_eq!(v.rmdir(root, b"a", T0).map(|_| ()), Err(Error::NotDir));
    v.create(d, b"inner", &file(REG)).unwrap();
    assert_eq!(v.rmdir(root, b"d", T0).map(|_| ()), Err(Error::NotEmpty));
    // Hard links.
    let linked = v.link(a, d, b"a2", T0).unwrap();
    assert_eq!(linked.nlink, 2);
    assert_eq!(
        v.link(d, root, b"dirlink", T0).map(|_| ()),
        Err(Error::Invalid)
    );
    // Rename within and across directories, over a file, no-replace.
    v.rename(root, b"a", d, b"a3", RenameFlags::default(), T0)
        .unwrap();
    assert_eq!(v.lookup(root, b"a"), Err(Error::NotFound));
    assert_eq!(v.lookup(d, b"a3"), Ok(a));
    assert_eq!(
        v.rename(d, b"a3", d, b"inner", RenameFlags { no_replace: true }, T0)
            .map(|_| ()),
        Err(Error::Exists)
    );
    let (inner, _) = (v.lookup(d, b"inner").unwrap(), ());
    let renamed = v
        .rename(d, b"a3", d, b"inner", RenameFlags::default(), T0)
        .unwrap();
    assert_eq!(
        renamed.replaced.map(|(ino, i)| (ino, i.nlink)),
        Some((inner, 0))
    );
    v.evict(inner).unwrap();
    // Same inode under both names: nothing happens.
    v.rename(d, b"a2", d, b"inner", RenameFlags::default(), T0)
        .unwrap();
    assert_eq!(v.lookup(d, b"a2"), Ok(a));
    // A directory cannot move into itself.
    let (sub, _) = v.create(d, b"sub", &file(DIR)).unwrap();
    assert_eq!(
        v.rename(root, b"d", sub, b"loop", RenameFlags::default(), T0)
            .map(|_| ()),
        Err(Error::Invalid)
    );
    // Directory over an empty directory, across parents.
    v.create(root, b"empty", &file(DIR)).unwrap();
    let r = v
        .rename(d, b"sub", root, b"empty", RenameFlags::default(), T0)
        .unwrap();
    assert_eq!(r.moved.1.parent, root);
    v.evict(r.replaced.unwrap().0).unwrap();
    let list = listing(&v);
    assert_eq!(
        list.keys().cloned().collect::<Vec<_>>(),
        [
            "/d",
            "/d/a2",
            "/d/inner",
            "/empty",
            &alloc::format!("/{}", "x".repeat(255))
        ]
    );
    let image = unmount_and_check(v);
    let v = mount(image);
    assert_eq!(listing(&v), list);
    unmount_and_check(v);
}

/// Random namespace operations against a model, checked through readdir
/// and lookups, then after a remount; the free-space and reverse-map
/// checker runs at the end.
#[test]
fn random_namespace_operations_match_a_model() {
    let mut v = mount(formatted(64, None));
    let mut rng = Lcg(42);
    let mut dirs: Vec<(u64, String)> = vec![(v.root(), String::new())];
    let mut model: BTreeMap<String, bool> = BTreeMap::new();
    let free_at_start = v.statfs().free_blocks;
    for step in 0..3000 {
        let (dir, path) = dirs[rng.next() as usize % dirs.len()].clone();
        let name = alloc::format!("n{}", rng.next() % 40);
        let full = alloc::format!("{path}/{name}");
        match rng.next() % 6 {
            0 | 1 => {
                let make_dir = rng.next() % 3 == 0;
                let result = v.create(
                    dir,
                    name.as_bytes(),
                    &file(if make_dir { DIR } else { REG }),
                );
                if model.contains_key(&full) {
                    assert_eq!(result.map(|_| ()), Err(Error::Exists));
                } else {
                    let (ino, _) = result.unwrap();
                    model.insert(full.clone(), make_dir);
                    if make_dir {
                        dirs.push((ino, full));
                    }
                }
            }
            2 => {
                let result = v.unlink(dir, name.as_bytes(), T0);
                match model.get(&full) {
                    None => assert_eq!(result.map(|_| ()), Err(Error::NotFound)),
                    Some(true) => assert_eq!(result.map(|_| ()), Err(Error::IsDir)),
                    Some(false) => {
                        let gone = result.unwrap();
                        assert_eq!(gone.inode.nlink, 0);
                        v.evict(gone.ino).unwrap();
                        model.remove(&full);
                    }
                }
            }
            3 => {
                let result = v.rmdir(dir, name.as_bytes(), T0);
                let prefix = alloc::format!("{full}/");
                match model.get(&full) {
                    None => assert_eq!(result.map(|_| ()), Err(Error::NotFound)),
                    Some(false) => assert_eq!(result.map(|_| ()), Err(Error::NotDir)),
                    Some(true) if model.keys().any(|k| k.starts_with(&prefix)) => {
                        assert_eq!(result.map(|_| ()), Err(Error::NotEmpty))
                    }
                    Some(true) => {
                        let gone = result.unwrap();
                        v.evict(gone.ino).unwrap();
                        model.remove(&full);
                        dirs.retain(|(_, p)| *p != full);
                    }
                }
            }
            _ => {
                // Rename files only (directories move in the fixed test).
                let (to_dir, to_path) = dirs[rng.next() as usize % dirs.len()].clone();
                let to_name = alloc::format!("n{}", rng.next() % 40);
                let to_full = alloc::format!("{to_path}/{to_name}");
                if model.get(&full) != Some(&false) || to_full == full {
                    continue;
                }
                let result = v.rename(
                    dir,
                    name.as_bytes(),
                    to_dir,
                    to_name.as_bytes(),
                    RenameFlags::default(),
                    T0,
                );
                match model.get(&to_full) {
                    Some(true) => assert_eq!(result.map(|_| ()), Err(Error::IsDir)),
                    _ => {
                        let renamed = result.unwrap();
                        if let Some((ino, inode)) = renamed.replaced {
                            assert_eq!(inode.nlink, 0);
                            v.evict(ino).unwrap();
                        }
                        model.remove(&full);
                        model.insert(to_full, false);
                    }
                }
            }
        }
        if step % 500 == 0 {
            let seen = listing(&v);
            assert_eq!(seen.len(), model.len(), "step {step}");
        }
    }
    let seen: BTreeMap<String, bool> = listing(&v).into_iter().map(|(k, v)| (k, v.0)).collect();
    assert_eq!(seen, model);
    let image = unmount_and_check(v);
    let mut v = mount(image);
    let seen: BTreeMap<String, bool> = listing(&v).into_iter().map(|(k, v)| (k, v.0)).collect();
    assert_eq!(seen, model);
    // Removing everything gives every block back.
    let mut paths: Vec<_> = model.iter().collect();
    paths.sort_by_key(|(p, _)| core::cmp::Reverse(p.len()));
    for (path, is_dir) in paths {
        let (parent, name) = path.rsplit_once('/').unwrap();
        let dir = parent
            .split('/')
            .skip(1)
            .fold(v.root(), |d, n| v.lookup(d, n.as_bytes()).unwrap());
        let gone = if *is_dir {
            v.rmdir(dir, name.as_bytes(), T0)
        } else {
            v.unlink(dir, name.as_bytes(), T0)
        }
        .unwrap();
        v.evict(gone.ino).unwrap();
    }
    // Nothing of any file or directory is left: only the filesystem-wide
    // trees and the root's own tree own blocks, and they shrank back.
    assert_eq!(owners(&v), [v.root()].into_iter().collect());
    assert_eq!(v.statfs().free_blocks, free_at_start);
    unmount_and_check(v);
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

#[test]
fn large_directory_lookups_and_readdir() {
    let mut v = mount(formatted(64, None));
    let root = v.root();
    let (dir, _) = v.create(root, b"big", &file(DIR)).unwrap();
    const N: usize = 20_000;
    for i in 0..N {
        v.create(dir, alloc::format!("entry-{i}").as_bytes(), &file(REG))
            .unwrap();
    }
    let mut seen = Vec::new();
    // Resume readdir every 100 entries, as getdents with a small buffer.
    let mut position = FIRST_POSITION;
    loop {
        let mut batch = 0;
        let mut last_next = None;
        v.readdir(dir, position, &mut |e| {
            if batch == 100 {
                return false;
            }
            batch += 1;
            seen.push(String::from_utf8(e.name.to_vec()).unwrap());
            last_next = Some(e.next_cookie);
            true
        })
        .unwrap();
        match last_next {
            Some(next) if batch == 100 => position = next,
            _ => break,
        }
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), N);
    for i in (0..N).step_by(7) {
        assert!(v
            .lookup(dir, alloc::format!("entry-{i}").as_bytes())
            .is_ok());
    }
    for i in (0..N).step_by(2) {
        let gone = v
            .unlink(dir, alloc::format!("entry-{i}").as_bytes(), T0)
            .unwrap();
        v.evict(gone.ino).unwrap();
    }
    assert_eq!(v.inode(dir).unwrap().size, (N / 2) as u64);
    unmount_and_check(v);
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
                v.media()
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

/// The operations of a crash test, each a whole call into the volume.
fn crash_workload(v: &mut TestVolume, rng: &mut Lcg, steps: usize) {
    let root = v.root();
    for _ in 0..steps {
        let name = alloc::format!("f{}", rng.next() % 12);
        match rng.next() % 8 {
            0 => {
                let _ = v.create(root, name.as_bytes(), &file(REG));
            }
            5 => {
                let other = alloc::format!("f{}", rng.next() % 12);
                if let (Ok(a), Ok(b)) = (
                    v.lookup(root, name.as_bytes()),
                    v.lookup(root, other.as_bytes()),
                ) {
                    let _ = v.reflink(a, 0, b, (rng.next() % 16) * 4096, 6 * 4096, T0);
                }
            }
            6 => {
                if let Ok(ino) = v.lookup(root, name.as_bytes()) {
                    let _ = v.punch_hole(
                        ino,
                        rng.next() % (64 << 10),
                        rng.next() % (64 << 10) + 1,
                        T0,
                    );
                }
            }
            7 => {
                if let Ok(ino) = v.lookup(root, name.as_bytes()) {
                    let _ = v.allocate(ino, rng.next() % (64 << 10), 8192, rng.next() % 2 == 0, T0);
                }
            }
            1 => {
                if let Ok(gone) = v.unlink(root, name.as_bytes(), T0) {
                    v.evict(gone.ino).unwrap();
                }
            }
            2 => {
                let to = alloc::format!("f{}", rng.next() % 12);
                if let Ok(r) = v.rename(
                    root,
                    name.as_bytes(),
                    root,
                    to.as_bytes(),
                    RenameFlags::default(),
                    T0,
                ) {
                    if let Some((ino, _)) = r.replaced {
                        v.evict(ino).unwrap();
                    }
                }
            }
            3 => {
                if let Ok(ino) = v.lookup(root, name.as_bytes()) {
                    let at = rng.next() % (256 << 10);
                    let _ = write(v, ino, at, &pattern(at, 3 * 4096 + 17));
                }
            }
            4 => {
                if let Ok(ino) = v.lookup(root, name.as_bytes()) {
                    let _ = v.set_attr(
                        ino,
                        &AttrChange {
                            size: Some(rng.next() % (128 << 10)),
                            ..Default::default()
                        },
                    );
                }
            }
            _ => unreachable!(),
        }
    }
}

const CRASH_STEPS: usize = 120;

/// Crash at many store points of a workload: each image must mount,
/// replay, and pass the checker, and show a namespace the workload went
/// through (every operation is atomic: before or after, never between).
#[test]
fn crashes_anywhere_leave_a_consistent_filesystem() {
    let base = formatted(32, Some(1024));
    // Record the namespace after each operation.
    let mut states = Vec::new();
    {
        let mut v = mount(base.clone());
        let mut rng = Lcg(99);
        states.push(listing(&v));
        for _ in 0..CRASH_STEPS {
            crash_workload(&mut v, &mut rng, 1);
            states.push(listing(&v));
        }
    }
    let total_writes = {
        let mut v = mount(base.clone());
        *v.media().writes.borrow_mut() = 0;
        crash_workload(&mut v, &mut Lcg(99), CRASH_STEPS);
        let n = *v.media().writes.borrow();
        n
    };
    let mut crash_rng = Lcg(5);
    for trial in 0..200u64 {
        let crash_at = 1 + crash_rng.next() % total_writes;
        let mut v = mount(base.clone());
        *v.media().writes.borrow_mut() = 0;
        v.media().crash_at.set(Some(crash_at));
        crash_workload(&mut v, &mut Lcg(99), CRASH_STEPS);
        let image = v.media().crash_image.borrow_mut().take().unwrap();
        let (recovered, report) = Volume::mount(Pmem::new(image), Buffers::new(), false)
            .unwrap_or_else(|e| panic!("trial {trial}: crash at {crash_at}: {e:?}"));
        assert!(report.was_dirty);
        let seen = listing(&recovered);
        assert!(
            states.iter().any(|s| *s == seen),
            "trial {trial}: crash at {crash_at}: {seen:?} is no state the workload passed"
        );
        unmount_and_check(recovered);
    }
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

/// Thousands of transactions on the smallest journal: it wraps several
/// times, and crashes around a wrap still recover.
#[test]
fn journal_wraps_and_recovers() {
    let mut v = mount(formatted(32, Some(1024)));
    let root = v.root();
    let mut wraps = 0;
    let mut last = v.journal_offset();
    let mut step = 0u64;
    while wraps < 3 {
        let name = alloc::format!("w{}", step % 50);
        match v.create(root, name.as_bytes(), &file(REG)) {
            Ok(_) => {}
            Err(Error::Exists) => {
                let gone = v.unlink(root, name.as_bytes(), T0).unwrap();
                v.evict(gone.ino).unwrap();
            }
            Err(e) => panic!("{e:?}"),
        }
        let now = v.journal_offset();
        if now < last {
            wraps += 1;
            // Crash within the first transactions after this wrap.
            if wraps == 2 {
                for k in 1..40 {
                    v.media().crash_at.set(Some(*v.media().writes.borrow() + k));
                    let name = alloc::format!("crash{k}");
                    let _ = v.create(root, name.as_bytes(), &file(REG));
                    v.media().crash_at.set(None);
                    let taken = v.media().crash_image.borrow_mut().take();
                    let image = taken.unwrap_or_else(|| v.media().crash());
                    let recovered = Volume::mount(Pmem::new(image), Buffers::new(), false)
                        .map(|(v, _)| v)
                        .unwrap();
                    listing(&recovered);
                    unmount_and_check(recovered);
                }
            }
        }
        last = now;
        step += 1;
    }
    let listed = listing(&v);
    let image = unmount_and_check(v);
    assert_eq!(listing(&mount(image)), listed);
}

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
            crate::logic::format::superblock::Superblock::decode(media.block(0).unwrap()).unwrap();
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

/// An inode unlinked while open and never evicted (a read-only remount,
/// a crash) keeps the filesystem from being marked clean; the next mount
/// frees it.
#[test]
fn orphans_survive_until_the_next_mount() {
    let mut v = mount(formatted(32, None));
    let root = v.root();
    let free_at_start = v.statfs().free_blocks;
    let (f, _) = v.create(root, b"open", &file(REG)).unwrap();
    write(&mut v, f, 0, &pattern(4, 100_000)).unwrap();
    let gone = v.unlink(root, b"open", T0).unwrap();
    assert_eq!((gone.ino, gone.inode.nlink), (f, 0));
    v.set_read_only(true).unwrap();
    assert_eq!(v.evict(f), Err(Error::ReadOnly));
    v.set_read_only(false).unwrap();
    v.set_read_only(true).unwrap();
    let image = unmount_and_check(v);
    let (v, report) = Volume::mount(Pmem::new(image), Buffers::new(), false).unwrap();
    assert!(report.was_dirty);
    assert_eq!(v.inode(f), Err(Error::NotFound));
    assert_eq!(v.statfs().free_blocks, free_at_start);
    unmount_and_check(v);
}

/// Replaying the whole journal after a crash would rewrite metadata blocks
/// that were freed and now hold file data; recovery replays only the last
/// transaction.
#[test]
fn recovery_does_not_rewrite_reused_blocks() {
    let mut v = mount(formatted(32, Some(1024)));
    let root = v.root();
    let (c, _) = v.create(root, b"c", &file(REG)).unwrap();
    write(&mut v, c, 8192, &pattern(1, 4096)).unwrap();
    // A's extent-tree node is the lowest free block; it is freed with A.
    let (a, _) = v.create(root, b"a", &file(REG)).unwrap();
    write(&mut v, a, 0, &pattern(2, 4096)).unwrap();
    let node = v.inode(a).unwrap().map_root;
    let gone = v.unlink(root, b"a", T0).unwrap();
    v.evict(gone.ino).unwrap();
    // C's new first block takes it, as file data.
    let data = pattern(3, 4096);
    write(&mut v, c, 0, &data).unwrap();
    assert_eq!(
        v.map_read(c, 0, 1).unwrap().physical,
        node,
        "the scenario reuses the node"
    );
    let expected = listing(&v);
    let recovered = mount(v.media().crash());
    assert_eq!(read(&recovered, c, 0, 4096), data);
    assert_eq!(listing(&recovered), expected);
    unmount_and_check(recovered);
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
                    crate::logic::format::superblock::Superblock::decode(b)
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
        let size_blocks = v.inode(f).unwrap().size.div_ceil(4096) + 8;
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

/// A new inode chunk needs four contiguous blocks: one-block holes left
/// near the start of the data area by a deleted file, however many, must
/// not make creating files fail while there is room further on.
#[test]
fn inode_chunks_are_found_past_many_one_block_holes() {
    let mut v = mount(formatted(64, None));
    let root = v.root();
    let (a, _) = v.create(root, b"a", &file(REG)).unwrap();
    let (b, _) = v.create(root, b"b", &file(REG)).unwrap();
    let block = pattern(3, 4096);
    // Interleaved one-block writes: a's and b's blocks alternate on disk.
    for i in 0..40u64 {
        write(&mut v, a, i * 2 * 4096, &block).unwrap();
        write(&mut v, b, i * 2 * 4096, &block).unwrap();
    }
    v.unlink(root, b"b", T0).unwrap();
    v.evict(b).unwrap();
    for i in 0..300u32 {
        let name = alloc::format!("f{i}");
        v.create(root, name.as_bytes(), &file(REG))
            .unwrap_or_else(|e| panic!("creating file {i}: {e:?}"));
    }
    unmount_and_check(v);
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

/// Crafted images an audit of the media-derived values found dangerous,
/// each now an error where it is read (the first two panicked, the third
/// looped forever, the last two freed blocks another file still used).
mod crafted {
    use super::*;
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
        let sb = Superblock::decode(media.block(0).unwrap()).unwrap();
        assert!(
            check_files(&media, &sb, &mut |_| {}).is_err(),
            "fsck sees the damage"
        );
    }
}
