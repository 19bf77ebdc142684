// SPDX-License-Identifier: GPL-2.0

//! Lookups sharing the volume: the module takes its lock shared for
//! lookups of the committed state (`&Volume`) and exclusive for changes,
//! so every `&self` path, with the caches it fills, must be right with
//! several threads in it at once. Here threads do that against a writer
//! that changes the namespace and file data, with a model the writer
//! changes under the same exclusive lock.

use std::sync::{Mutex, RwLock};
use std::thread;

use super::*;

/// Memory standing in for pmem that threads can share: stores are
/// durable at once (crashes are the other tests').
struct SharedPmem(RwLock<Vec<u8>>);

impl Media for SharedPmem {
    fn size(&self) -> u64 {
        self.0.read().unwrap().len() as u64
    }
    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), MediaFault> {
        let memory = self.0.read().unwrap();
        let start = usize::try_from(offset).map_err(|_| MediaFault::OutOfRange)?;
        let bytes = start
            .checked_add(buf.len())
            .and_then(|end| memory.get(start..end))
            .ok_or(MediaFault::OutOfRange)?;
        buf.copy_from_slice(bytes);
        Ok(())
    }
    fn write(&self, offset: u64, data: &[u8]) -> bool {
        let mut memory = self.0.write().unwrap();
        let start = offset as usize;
        match memory.get_mut(start..start + data.len()) {
            Some(bytes) => {
                bytes.copy_from_slice(data);
                true
            }
            None => false,
        }
    }
    fn zero(&self, offset: u64, len: u64) -> bool {
        self.write(offset, &vec![0u8; len as usize])
    }
    fn copy(&self, from: u64, to: u64, len: u64) -> Result<(), MediaFault> {
        copy_through(self, from, to, len)
    }
    fn fence(&self) {}
}

type SharedVolume = Volume<SharedPmem, Buffers>;

/// What the namespace holds: name → (inode, content).
type Model = BTreeMap<Vec<u8>, (u64, Vec<u8>)>;

/// Makes `data` the content of file `ino`: truncated to nothing, then
/// written as write(2) does (blocks mapped for writing, data stored, the
/// size set after).
fn overwrite(v: &mut SharedVolume, ino: u64, data: &[u8]) {
    const BS: usize = BLOCK_SIZE;
    let empty = AttrChange {
        size: Some(0),
        ..AttrChange::default()
    };
    v.set_attr(ino, &empty).unwrap();
    for (i, piece) in data.chunks(BS).enumerate() {
        let mapping = v.map_write(ino, i as u64, 1, SharedWrite::Copy).unwrap();
        assert_eq!(mapping.kind, MapKind::Data);
        assert!(v.media().write(mapping.physical * BS as u64, piece));
    }
    v.write_done(ino, data.len() as u64, T0).unwrap();
}

/// File `ino`'s content, through the shared lookups only.
fn content(v: &SharedVolume, ino: u64) -> Result<Vec<u8>, Error> {
    const BS: u64 = BLOCK_SIZE as u64;
    let size = v.inode(ino)?.size;
    let mut out = vec![0u8; size as usize];
    let mut block = 0;
    while block * BS < size {
        let mapping = v.map_data(ino, block, size.div_ceil(BS) - block)?;
        for i in 0..mapping.len {
            let at = ((block + i) * BS) as usize;
            let end = (at + BS as usize).min(out.len());
            if mapping.kind == MapKind::Data {
                v.media()
                    .read((mapping.physical + i) * BS, &mut out[at..end])
                    .map_err(|_| Error::Invalid)?;
            }
        }
        block += mapping.len;
    }
    Ok(out)
}

/// Readers check lookups, records, mappings, file contents and readdir
/// against the model while a writer creates, rewrites, truncates and
/// unlinks files. The cache has one slot per shard, so that the readers
/// fill and evict each other's blocks all the time.
#[test]
fn readers_see_committed_state_while_a_writer_runs() {
    const FILES: u64 = 24;
    const ROUNDS: u64 = 300;
    const READERS: u64 = 3;
    let mut v = Volume::mount(
        SharedPmem(RwLock::new(formatted(64, None))),
        Buffers::with_cache_slots(CACHE_SHARDS),
        false,
    )
    .map(|(v, _)| v)
    .unwrap();
    let root = v.root();
    let mut model = Model::new();
    for i in 0..FILES {
        let name = alloc::format!("f{i}").into_bytes();
        let (ino, _) = v.create(root, &name, &file(REG)).unwrap();
        let data = pattern(i, (1 + i as usize % 5) * BLOCK_SIZE + 100);
        overwrite(&mut v, ino, &data);
        model.insert(name, (ino, data));
    }
    let volume = RwLock::new(v);
    let model = Mutex::new(model);
    let checked = Mutex::new(0u64);
    let done = std::sync::atomic::AtomicBool::new(false);
    thread::scope(|s| {
        s.spawn(|| {
            let mut rng = Lcg(99);
            for round in 0..ROUNDS {
                let mut v = volume.write().unwrap();
                let mut model = model.lock().unwrap();
                let i = rng.next() % (2 * FILES);
                let name = alloc::format!("f{i}").into_bytes();
                match (model.get(&name).cloned(), round % 3) {
                    (None, _) => {
                        let (ino, _) = v.create(root, &name, &file(REG)).unwrap();
                        let data = pattern(round, 1 + rng.next() as usize % (4 * BLOCK_SIZE));
                        overwrite(&mut v, ino, &data);
                        model.insert(name, (ino, data));
                    }
                    (Some((ino, _)), 0) => {
                        v.unlink(root, &name, T0).unwrap();
                        v.evict(ino).unwrap();
                        model.remove(&name);
                    }
                    (Some((ino, _)), _) => {
                        let data = pattern(round, 1 + rng.next() as usize % (6 * BLOCK_SIZE));
                        overwrite(&mut v, ino, &data);
                        model.insert(name, (ino, data));
                    }
                }
            }
            done.store(true, std::sync::atomic::Ordering::Relaxed);
        });
        for reader in 0..READERS {
            let (volume, model, checked, done) = (&volume, &model, &checked, &done);
            s.spawn(move || {
                let mut rng = Lcg(reader + 1);
                let mut mine = 0;
                while !done.load(std::sync::atomic::Ordering::Relaxed) || mine < 50 {
                    let v = volume.read().unwrap();
                    // The writer changes the model only under the volume's
                    // exclusive lock: with it shared, the two agree.
                    let expected = model.lock().unwrap().clone();
                    let i = rng.next() % (2 * FILES);
                    let name = alloc::format!("f{i}").into_bytes();
                    match expected.get(&name) {
                        Some((ino, data)) => {
                            assert_eq!(v.lookup(root, &name), Ok(*ino), "lookup of f{i}");
                            assert_eq!(v.inode(*ino).unwrap().size, data.len() as u64);
                            assert!(content(&v, *ino).unwrap() == *data, "content of f{i}");
                        }
                        None => assert_eq!(v.lookup(root, &name), Err(Error::NotFound)),
                    }
                    if rng.next() % 8 == 0 {
                        let mut names = Vec::new();
                        v.readdir(root, FIRST_POSITION, &mut |e| {
                            names.push((e.name.to_vec(), e.ino));
                            true
                        })
                        .unwrap();
                        names.sort();
                        let listed: Vec<(Vec<u8>, u64)> = expected
                            .iter()
                            .map(|(n, (ino, _))| (n.clone(), *ino))
                            .collect();
                        assert_eq!(names, listed, "readdir");
                    }
                    mine += 1;
                }
                *checked.lock().unwrap() += mine;
            });
        }
    });
    assert!(*checked.lock().unwrap() >= READERS * 50);
    let mut v = volume.into_inner().unwrap();
    v.unmount();
    let image = v.media().0.read().unwrap().clone();
    check_filesystem(&Flat(image)).unwrap();
}
