// SPDX-License-Identifier: GPL-2.0

//! The journal with several committers (stage 3 of concurrency.rst): each
//! thread builds a transaction, reserves its place ([`Journal::reserve`],
//! under a lock), writes its body at once with the others, then waits for
//! its turn to write its commit record and its home writes, fences them
//! on its own CPU and hands the turn on. The volume does not run this yet
//! (its lock holds one transaction at a time); these tests hold the
//! journal's pieces to the protocol stage 4 will run, against a memory
//! whose fences make durable only the fencing thread's stores.

use std::sync::{Condvar, Mutex};
use std::thread::{self, ThreadId};

use super::*;
use crate::logic::{
    format::journal::{self, for_each_logged, JournalHeader, ReplayEnd, TxWriter},
    format::superblock::BACKUP_BLOCK,
    fs::tx::Journal,
};

const BS: usize = BLOCK_SIZE;
/// Block of the journal header; the log follows it.
const HEADER_BLOCK: u64 = BACKUP_BLOCK + 1;
/// A small log, so that it wraps many times.
const LOG_BLOCKS: u64 = 6;
const LOG_LEN: usize = LOG_BLOCKS as usize * BS;
const DATA_START: u64 = HEADER_BLOCK + 1 + LOG_BLOCKS;
const DATA_BLOCKS: u64 = 8;
const DEVICE_BYTES: usize = (DATA_START + DATA_BLOCKS) as usize * BS;
const FIRST_SEQ: u64 = 1;

/// One change a transaction logs and writes home.
type Change = (u64, usize, Vec<u8>);

/// What the memory holds, and what a power failure would keep.
struct Stores {
    memory: Vec<u8>,
    durable: Vec<u8>,
    /// Stores not fenced yet, by the thread that made them.
    pending: Vec<(ThreadId, u64, Vec<u8>)>,
    rng: Lcg,
    /// The last transaction whose operation returned: durable.
    acknowledged: u64,
    /// Crash images taken so far, each with the last transaction
    /// acknowledged then, and how many to take.
    images: Vec<(Vec<u8>, u64)>,
    max_images: usize,
}

impl Stores {
    /// The durable bytes plus a random choice of the 8-byte words not
    /// fenced yet, whoever stored them.
    fn crash(&mut self) -> Vec<u8> {
        let mut image = self.durable.clone();
        for (_, offset, data) in &self.pending {
            for (i, word) in data.chunks(8).enumerate() {
                if self.rng.next() % 2 == 0 {
                    let at = *offset as usize + i * 8;
                    image[at..at + word.len()].copy_from_slice(word);
                }
            }
        }
        image
    }
}

/// Memory standing in for pmem that threads share, as CPUs do: a fence
/// makes durable the stores of the thread that issues it, and no other's
/// (I4 in concurrency.rst). It takes crash images at random stores.
struct PerThreadPmem(Mutex<Stores>);

impl PerThreadPmem {
    fn new(memory: Vec<u8>, seed: u64, max_images: usize) -> Self {
        Self(Mutex::new(Stores {
            durable: memory.clone(),
            memory,
            pending: Vec::new(),
            rng: Lcg(seed),
            acknowledged: FIRST_SEQ - 1,
            images: Vec::new(),
            max_images,
        }))
    }

    /// Transaction `seq`'s operation returns: from now on it must
    /// survive a crash.
    fn acknowledge(&self, seq: u64) {
        let mut stores = self.0.lock().unwrap();
        stores.acknowledged = stores.acknowledged.max(seq);
    }

    fn store(&self, offset: u64, data: &[u8]) -> bool {
        let mut stores = self.0.lock().unwrap();
        let start = offset as usize;
        if start + data.len() > stores.memory.len() {
            return false;
        }
        stores.memory[start..start + data.len()].copy_from_slice(data);
        let me = thread::current().id();
        stores.pending.push((me, offset, data.to_vec()));
        // A crash at this store comes while it is under way: any of its
        // words may have reached the media.
        if stores.images.len() < stores.max_images && stores.rng.next() % 8 == 0 {
            let image = stores.crash();
            let acknowledged = stores.acknowledged;
            stores.images.push((image, acknowledged));
        }
        true
    }
}

impl Media for PerThreadPmem {
    fn size(&self) -> u64 {
        self.0.lock().unwrap().memory.len() as u64
    }
    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), MediaFault> {
        let stores = self.0.lock().unwrap();
        let start = offset as usize;
        let bytes = stores
            .memory
            .get(start..start + buf.len())
            .ok_or(MediaFault::OutOfRange)?;
        buf.copy_from_slice(bytes);
        Ok(())
    }
    fn write(&self, offset: u64, data: &[u8]) -> bool {
        self.store(offset, data)
    }
    fn zero(&self, offset: u64, len: u64) -> bool {
        self.store(offset, &vec![0u8; len as usize])
    }
    fn copy(&self, from: u64, to: u64, len: u64) -> Result<(), MediaFault> {
        copy_through(self, from, to, len)
    }
    fn fence(&self) {
        let me = thread::current().id();
        let mut stores = self.0.lock().unwrap();
        let Stores {
            pending, durable, ..
        } = &mut *stores;
        pending.retain(|(thread, offset, data)| {
            if *thread != me {
                return true;
            }
            let at = *offset as usize;
            durable[at..at + data.len()].copy_from_slice(data);
            false
        });
    }
}

/// The turns of the commit records: the last transaction whose home
/// writes are fenced, and a wake-up when it changes.
struct Turns {
    completed: Mutex<u64>,
    changed: Condvar,
}

impl Turns {
    fn completed(&self) -> u64 {
        *self.completed.lock().unwrap()
    }

    /// Waits until transaction `seq` is the next to complete.
    fn wait_for(&self, seq: u64) {
        let mut completed = self.completed.lock().unwrap();
        while completed.wrapping_add(1) != seq {
            completed = self.changed.wait(completed).unwrap();
        }
    }

    /// Waits until the last completed transaction is not `seen`.
    fn wait_past(&self, seen: u64) {
        let mut completed = self.completed.lock().unwrap();
        while *completed == seen {
            completed = self.changed.wait(completed).unwrap();
        }
    }

    fn complete(&self, seq: u64) {
        *self.completed.lock().unwrap() = seq;
        self.changed.notify_all();
    }
}

/// A few changes of random bytes in the data blocks.
fn random_changes(rng: &mut Lcg) -> Vec<Change> {
    (0..1 + rng.next() % 4)
        .map(|_| {
            let len = 1 + (rng.next() % 700) as usize;
            let offset = (rng.next() as usize) % (BS - len + 1);
            let data = (0..len).map(|_| rng.next() as u8).collect();
            (DATA_START + rng.next() % DATA_BLOCKS, offset, data)
        })
        .collect()
}

/// Spins or yields a random while, so that threads interleave.
fn dawdle(rng: &mut Lcg) {
    match rng.next() % 4 {
        0 => thread::yield_now(),
        1 => (0..rng.next() % 2000).for_each(|i| {
            core::hint::black_box(i);
        }),
        _ => {}
    }
}

/// A device with an empty journal whose tail is `FIRST_SEQ` at the log's
/// start, the published superblock the journal writes to the backup
/// block when it wraps, and the journal that goes with them.
fn empty_journal() -> (Vec<u8>, Superblock, Journal) {
    let formatted = formatted(32, None);
    let sb = Superblock::decode(&formatted[..BS]).unwrap();
    let mut device = vec![0u8; DEVICE_BYTES];
    let mut header = [0u8; BS];
    JournalHeader {
        tail_seq: FIRST_SEQ,
        tail_offset: 0,
    }
    .encode(&mut header);
    let at = HEADER_BLOCK as usize * BS;
    device[at..at + BS].copy_from_slice(&header);
    let log_start = (HEADER_BLOCK + 1) * BS as u64;
    let end = ReplayEnd {
        next_seq: FIRST_SEQ,
        next_offset: 0,
        transactions: 0,
    };
    (device, sb, Journal::new(log_start, LOG_LEN, &end, false))
}

/// Runs `threads` committers of `per_thread` transactions each through
/// the journal on `media`. With `fence_home`, each fences its home writes
/// before handing the turn on, as the protocol says; without, it leaves
/// them to its next fence, as one committer at a time may. The changes
/// each sequence number made.
fn commit_from_threads(
    media: &PerThreadPmem,
    sb: &Superblock,
    journal: Journal,
    threads: u64,
    per_thread: u64,
    fence_home: bool,
) -> BTreeMap<u64, Vec<Change>> {
    let journal = Mutex::new(journal);
    let turns = Turns {
        completed: Mutex::new(FIRST_SEQ - 1),
        changed: Condvar::new(),
    };
    let committed = Mutex::new(BTreeMap::new());
    thread::scope(|s| {
        for t in 0..threads {
            let (journal, turns, committed) = (&journal, &turns, &committed);
            s.spawn(move || {
                let mut rng = Lcg(0x5eed + t);
                let mut log = vec![0u8; LOG_LEN];
                let mut spare = [0u8; BS];
                for _ in 0..per_thread {
                    let changes = random_changes(&mut rng);
                    let mut tx = TxWriter::begin(&mut log, 0).unwrap();
                    for (block, offset, data) in &changes {
                        tx.record(*block, *offset, data).unwrap();
                    }
                    dawdle(&mut rng);
                    let ticket = {
                        let mut journal = journal.lock().unwrap();
                        loop {
                            let completed = turns.completed();
                            let reserved = journal
                                .reserve(media, tx.log_bytes(), completed, sb, &mut spare)
                                .unwrap();
                            match reserved {
                                Some(ticket) => break ticket,
                                // The log wraps: the earlier ones first.
                                None => turns.wait_past(completed),
                            }
                        }
                    };
                    dawdle(&mut rng);
                    let finished = ticket.write_body(media, tx).unwrap();
                    dawdle(&mut rng);
                    turns.wait_for(ticket.seq());
                    ticket.write_commit(media, &finished).unwrap();
                    let walked = for_each_logged(
                        finished.log,
                        finished.body.clone(),
                        &mut |block, offset, data| {
                            assert!(media.write(block * BS as u64 + offset as u64, data));
                        },
                    );
                    assert!(walked);
                    if fence_home {
                        media.fence();
                    }
                    committed.lock().unwrap().insert(ticket.seq(), changes);
                    turns.complete(ticket.seq());
                    media.acknowledge(ticket.seq());
                    dawdle(&mut rng);
                }
                media.fence();
            });
        }
    });
    committed.into_inner().unwrap()
}

/// What recovery makes of `image`, as mount does: the data blocks after
/// replaying the last committed transaction, the sequence number that
/// would come next, and whether the header was torn (then nothing is
/// replayed and the log restarts).
fn recover(image: &[u8]) -> (Vec<u8>, u64, bool) {
    let header_at = HEADER_BLOCK as usize * BS;
    let (header, torn) =
        JournalHeader::recover(&image[header_at..header_at + BS], LOG_LEN).unwrap();
    let log_start = header_at + BS;
    let read = |offset: usize, buf: &mut [u8]| match image.get(log_start + offset..) {
        Some(bytes) if bytes.len() >= buf.len() => {
            buf.copy_from_slice(&bytes[..buf.len()]);
            true
        }
        _ => false,
    };
    let mut buffer = vec![0u8; LOG_LEN];
    let mut log = journal::Log {
        read: &read,
        len: LOG_LEN,
        buffer: &mut buffer,
    };
    let mut device = image.to_vec();
    let end = journal::replay_last(&mut log, &header, &mut |block, offset, data| {
        let at = block as usize * BS + offset;
        device[at..at + data.len()].copy_from_slice(data);
    });
    (
        device[DATA_START as usize * BS..].to_vec(),
        end.next_seq,
        torn,
    )
}

/// The data blocks after the transactions before `next_seq`, in order.
fn prefix(committed: &BTreeMap<u64, Vec<Change>>, next_seq: u64) -> Vec<u8> {
    let mut data = vec![0u8; DATA_BLOCKS as usize * BS];
    for (_, changes) in committed.range(..next_seq) {
        for (block, offset, bytes) in changes {
            let at = (block - DATA_START) as usize * BS + offset;
            data[at..at + bytes.len()].copy_from_slice(bytes);
        }
    }
    data
}

/// Whether recovery brings `image`, taken when `acknowledged` was the
/// last transaction acknowledged, back to the transactions before some
/// sequence number past it, in order: the one recovery found the log to
/// end at, or, if the header was torn (nothing to replay), any.
fn recovers_a_prefix(
    committed: &BTreeMap<u64, Vec<Change>>,
    image: &[u8],
    acknowledged: u64,
) -> bool {
    let (data, next_seq, torn) = recover(image);
    let last = FIRST_SEQ + committed.len() as u64;
    if torn {
        (acknowledged + 1..=last).any(|k| data == prefix(committed, k))
    } else {
        next_seq > acknowledged && data == prefix(committed, next_seq)
    }
}

/// Crash images of one run that recovery does not bring back to a
/// prefix of the transactions in sequence order that holds every one
/// acknowledged, all images taken, and those with a torn header.
fn images_off_prefix(seed: u64, fence_home: bool) -> (usize, usize, usize) {
    let (device, sb, journal) = empty_journal();
    let media = PerThreadPmem::new(device, seed, 64);
    let committed = commit_from_threads(&media, &sb, journal, 3, 60, fence_home);
    let images = core::mem::take(&mut media.0.lock().unwrap().images);
    let off = images
        .iter()
        .filter(|(image, acknowledged)| !recovers_a_prefix(&committed, image, *acknowledged))
        .count();
    let torn = images.iter().filter(|(image, _)| recover(image).2).count();
    (off, images.len(), torn)
}

/// Every transaction commits, in sequence order, and the log walks from
/// its tail to the last one: the memory holds them all applied in order.
#[test]
fn journal_threads_commit_in_seq_order() {
    let (device, sb, journal) = empty_journal();
    let media = PerThreadPmem::new(device, 1, 0);
    let committed = commit_from_threads(&media, &sb, journal, 4, 150, true);
    assert_eq!(committed.len(), 600);
    assert_eq!(
        committed.keys().copied().collect::<Vec<_>>(),
        (FIRST_SEQ..FIRST_SEQ + 600).collect::<Vec<_>>()
    );
    let stores = media.0.lock().unwrap();
    assert!(stores.pending.is_empty());
    assert!(stores.memory == stores.durable);
    let (data, next_seq, torn) = recover(&stores.durable);
    assert!(!torn);
    assert_eq!(next_seq, FIRST_SEQ + 600);
    assert!(data == prefix(&committed, next_seq));
    // 600 transactions of up to 2.9 KiB in a log of 24 KiB: it wrapped.
    let header_at = HEADER_BLOCK as usize * BS;
    let header =
        JournalHeader::decode(&stores.durable[header_at..header_at + BS], LOG_LEN).unwrap();
    assert!(header.tail_seq > FIRST_SEQ);
}

/// A crash at any store, keeping any of the words not fenced yet,
/// recovers to a prefix of the transactions in sequence order that holds
/// every one acknowledged, across wraps of the log, torn headers among
/// them. Without the fence of each committer's home writes before the
/// next commit record (I4), it does not.
#[test]
fn a_crash_with_per_thread_fences_applies_a_prefix() {
    let (mut taken, mut torn) = (0, 0);
    for seed in 0..100 {
        let (off, images, torn_here) = images_off_prefix(seed, true);
        torn += torn_here;
        assert_eq!(
            off, 0,
            "seed {seed}: {off} of {images} crash images are not a prefix"
        );
        taken += images;
    }
    assert!(taken >= 100 * 60);
    assert!(torn > 0, "no crash image caught a header rewrite");
    let broken = (0..40).any(|seed| images_off_prefix(seed, false).0 > 0);
    assert!(
        broken,
        "home writes left unfenced across threads were never lost"
    );
}
