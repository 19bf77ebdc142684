// SPDX-License-Identifier: GPL-2.0

//! The journal with several committers (stage 3 of concurrency.rst): each
//! thread builds a transaction and commits it through [`Commits::commit`],
//! the volume's own path: it reserves its place ([`Journal::reserve`],
//! under the journal's lock), writes its body at once with the others,
//! then waits for its turn to write its commit record and its home
//! writes, fences them on its own CPU and hands the turn on. The volume
//! runs one transaction at a time still (its lock); these tests run
//! several, against a memory whose fences make durable only the fencing
//! thread's stores.

use core::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::thread::{self, ThreadId};

use super::*;
use crate::logic::{
    format::journal::{self, for_each_logged, JournalHeader, ReplayEnd, TxWriter},
    format::superblock::BACKUP_BLOCK,
    fs::tx::{Chain, Commits, Journal},
};
use crate::HostWaits;

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
    (
        device,
        sb,
        Journal::new(log_start, LOG_LEN, &end, false, &sb),
    )
}

/// A journal behind its lock, with its commit chain, as a volume has them.
struct Committing {
    journal: Mutex<Journal>,
    waits: HostWaits,
    chain: Chain,
}

impl Committing {
    fn new(journal: Journal) -> Self {
        Self {
            journal: Mutex::new(journal),
            waits: HostWaits::default(),
            chain: Chain::new(FIRST_SEQ - 1),
        }
    }

    /// The sequence number the next transaction gets.
    fn next_seq(&self) -> u64 {
        let mut seq = 0;
        self.journal
            .with_locked(&mut |journal| seq = journal.next_seq());
        seq
    }

    /// Where the next transaction goes in the log.
    fn next_offset(&self) -> usize {
        let mut offset = 0;
        self.journal
            .with_locked(&mut |journal| offset = journal.next_offset());
        offset
    }

    /// The volume's commit path; `fence_home: false` is the negative
    /// control's.
    fn commits(&self, fence_home: bool) -> Commits<'_> {
        Commits {
            journal: &self.journal,
            chain: &self.chain,
            waits: &self.waits,
            fence_home,
        }
    }
}

/// Runs `threads` committers of `per_thread` transactions each through
/// the journal on `media`. With `fence_home`, each fences its home writes
/// before handing the turn on, as the protocol says; without, it leaves
/// them to its next fence, as one committer at a time may. The changes
/// each sequence number made.
fn commit_from_threads(
    media: &PerThreadPmem,
    journal: Journal,
    threads: u64,
    per_thread: u64,
    fence_home: bool,
) -> BTreeMap<u64, Vec<Change>> {
    let committing = Committing::new(journal);
    let commits = committing.commits(fence_home);
    let committed = Mutex::new(BTreeMap::new());
    thread::scope(|s| {
        for t in 0..threads {
            let committed = &committed;
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
                    let seq = commits
                        .commit(media, tx, None, &mut spare, &mut |finished| {
                            dawdle(&mut rng);
                            let walked = for_each_logged(
                                finished.log,
                                finished.body.clone(),
                                &mut |block, offset, data| {
                                    assert!(media.write(block * BS as u64 + offset as u64, data));
                                },
                            );
                            assert!(walked);
                            Ok(())
                        })
                        .unwrap();
                    committed.lock().unwrap().insert(seq, changes);
                    media.acknowledge(seq);
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
    let (device, _, journal) = empty_journal();
    let media = PerThreadPmem::new(device, seed, 64);
    let committed = commit_from_threads(&media, journal, 3, 60, fence_home);
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
    let (device, _, journal) = empty_journal();
    let media = PerThreadPmem::new(device, 1, 0);
    let committed = commit_from_threads(&media, journal, 4, 150, true);
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

/// The memory of a [`PerThreadPmem`] whose writes fail where `fails`
/// says (called with the device byte a write starts at).
struct FailingWrites<'m> {
    pmem: &'m PerThreadPmem,
    fails: &'m (dyn Fn(u64) -> bool + Sync),
}

impl Media for FailingWrites<'_> {
    fn size(&self) -> u64 {
        self.pmem.size()
    }
    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), MediaFault> {
        self.pmem.read(offset, buf)
    }
    fn write(&self, offset: u64, data: &[u8]) -> bool {
        !(self.fails)(offset) && self.pmem.write(offset, data)
    }
    fn zero(&self, offset: u64, len: u64) -> bool {
        !(self.fails)(offset) && self.pmem.zero(offset, len)
    }
    fn copy(&self, from: u64, to: u64, len: u64) -> Result<(), MediaFault> {
        copy_through(self, from, to, len)
    }
    fn fence(&self) {
        self.pmem.fence();
    }
}

/// Device byte where the log starts.
const LOG_START: u64 = (HEADER_BLOCK + 1) * BS as u64;

/// One change of `len` bytes at the start of the first data block.
fn sized_changes(len: usize, fill: u8) -> Vec<Change> {
    vec![(DATA_START, 0, vec![fill; len])]
}

/// One transaction of `changes` through `commits`, its records written
/// home by `home` first; it writes the superblock `written`, if any.
fn commit_one(
    commits: &Commits<'_>,
    media: &impl Media,
    written: Option<&Superblock>,
    changes: &[Change],
    home: &mut dyn FnMut() -> Result<(), Error>,
) -> Result<u64, Error> {
    let mut log = vec![0u8; LOG_LEN];
    let mut tx = TxWriter::begin(&mut log, 0).unwrap();
    for (block, offset, data) in changes {
        tx.record(*block, *offset, data).unwrap();
    }
    let mut spare = [0u8; BS];
    commits.commit(media, tx, written, &mut spare, &mut |finished| {
        home()?;
        for_each_logged(
            finished.log,
            finished.body.clone(),
            &mut |block, offset, data| {
                assert!(media.write(block * BS as u64 + offset as u64, data));
            },
        );
        Ok(())
    })
}

/// A transaction that fails before its commit record while no other was
/// placed after it gives its place and number back: the next one takes
/// them, and recovery finds it.
#[test]
fn a_commit_that_fails_alone_gives_its_place_back() {
    let (device, _, journal) = empty_journal();
    let pmem = PerThreadPmem::new(device, 1, 0);
    let failing = AtomicBool::new(true);
    let media = FailingWrites {
        pmem: &pmem,
        fails: &|_| failing.load(Ordering::SeqCst),
    };
    let committing = Committing::new(journal);
    let commits = committing.commits(true);
    let mut rng = Lcg(7);
    let lost = random_changes(&mut rng);
    assert!(matches!(
        commit_one(&commits, &media, None, &lost, &mut || Ok(())),
        Err(Error::Corrupt(..))
    ));
    failing.store(false, Ordering::SeqCst);
    let kept = random_changes(&mut rng);
    assert_eq!(
        commit_one(&commits, &media, None, &kept, &mut || Ok(())),
        Ok(FIRST_SEQ)
    );
    let (data, next_seq, _) = recover(&pmem.0.lock().unwrap().durable);
    assert_eq!(next_seq, FIRST_SEQ + 1);
    assert!(data == prefix(&BTreeMap::from([(FIRST_SEQ, kept)]), next_seq));
}

/// A transaction that fails after another was placed behind it stops the
/// chain: the one behind never writes its commit record (recovery would
/// stop at the gap, or replay it without the earlier one's home writes),
/// and every later commit fails as the volume does once shut down.
#[test]
fn a_failure_after_the_commit_record_stops_the_chain() {
    let (device, _, journal) = empty_journal();
    let media = PerThreadPmem::new(device, 1, 0);
    let committing = Committing::new(journal);
    let commits = committing.commits(true);
    let mut rng = Lcg(9);
    let (first, second) = (random_changes(&mut rng), random_changes(&mut rng));
    let next_seq = || committing.next_seq();
    thread::scope(|s| {
        let failing = s.spawn(|| {
            // Committed, then its home writes fail once the second
            // transaction has its place.
            commit_one(&commits, &media, None, &first, &mut || {
                while next_seq() != FIRST_SEQ + 2 {
                    thread::yield_now();
                }
                Err(Error::Invalid)
            })
        });
        while next_seq() != FIRST_SEQ + 1 {
            thread::yield_now();
        }
        let behind = commit_one(&commits, &media, None, &second, &mut || Ok(()));
        assert_eq!(behind, Err(Error::Shutdown));
        assert_eq!(failing.join().unwrap(), Err(Error::Invalid));
    });
    assert_eq!(
        commit_one(&commits, &media, None, &second, &mut || Ok(())),
        Err(Error::Shutdown)
    );
    media.fence();
    let (_, next_seq, _) = recover(&media.0.lock().unwrap().durable);
    assert_eq!(next_seq, FIRST_SEQ + 1, "only the first one committed");
}

/// A transaction whose body cannot be written after another was placed
/// behind it stops the chain: it cannot give its place back over the one
/// behind, which never writes its commit record.
#[test]
fn a_failure_before_the_commit_record_with_a_successor_stops_the_chain() {
    let (device, _, journal) = empty_journal();
    let pmem = PerThreadPmem::new(device, 1, 0);
    let committing = Committing::new(journal);
    let commits = committing.commits(true);
    let next_seq = || committing.next_seq();
    // The first transaction's body, at the log's start, fails once the
    // second has its place.
    let fails = |offset: u64| {
        if offset != LOG_START {
            return false;
        }
        while next_seq() != FIRST_SEQ + 2 {
            thread::yield_now();
        }
        true
    };
    let media = FailingWrites {
        pmem: &pmem,
        fails: &fails,
    };
    let (first, second) = (sized_changes(100, 1), sized_changes(200, 2));
    thread::scope(|s| {
        let failing = s.spawn(|| commit_one(&commits, &media, None, &first, &mut || Ok(())));
        while next_seq() != FIRST_SEQ + 1 {
            thread::yield_now();
        }
        let behind = commit_one(&commits, &media, None, &second, &mut || Ok(()));
        assert_eq!(behind, Err(Error::Shutdown));
        assert!(matches!(failing.join().unwrap(), Err(Error::Corrupt(..))));
    });
    assert!(committing.chain.failed());
    assert_eq!(
        commit_one(&commits, &media, None, &second, &mut || Ok(())),
        Err(Error::Shutdown)
    );
    pmem.fence();
    let (_, next_seq, _) = recover(&pmem.0.lock().unwrap().durable);
    assert_eq!(next_seq, FIRST_SEQ, "nothing committed");
}

/// A transaction that must wrap the log waits for the one before it; if
/// that one fails alone and gives its place back, the wrap goes on (it
/// waits with the journal's lock released, which the giving back needs).
#[test]
fn a_wrap_goes_on_when_the_transaction_it_waits_for_gives_its_place_back() {
    let (device, _, journal) = empty_journal();
    let pmem = PerThreadPmem::new(device, 1, 0);
    let committing = Committing::new(journal);
    let commits = committing.commits(true);
    let (small, big) = (sized_changes(8, 3), sized_changes(3000, 4));
    let bytes = |changes: &[Change]| {
        let mut log = vec![0u8; LOG_LEN];
        let mut tx = TxWriter::begin(&mut log, 0).unwrap();
        for (block, offset, data) in changes {
            tx.record(*block, *offset, data).unwrap();
        }
        tx.log_bytes()
    };
    let (small_len, big_len) = (bytes(&small), bytes(&big));
    let offset = || committing.next_offset();
    // Fill the log until the small one fits and the big one after it
    // does not.
    let mut committed = BTreeMap::new();
    while LOG_LEN - offset() >= small_len + big_len {
        let seq = commit_one(&commits, &pmem, None, &big, &mut || Ok(())).unwrap();
        committed.insert(seq, big.clone());
    }
    let small_at = LOG_START + offset() as u64;
    let small_seq = FIRST_SEQ + committed.len() as u64;
    // The small one's body fails once the big one sleeps, waiting to wrap.
    let fails = |at: u64| {
        if at != small_at {
            return false;
        }
        while committing.waits.sleepers() == 0 {
            thread::yield_now();
        }
        true
    };
    let media = FailingWrites {
        pmem: &pmem,
        fails: &fails,
    };
    let next_seq = || committing.next_seq();
    thread::scope(|s| {
        let failing = s.spawn(|| commit_one(&commits, &media, None, &small, &mut || Ok(())));
        while next_seq() != small_seq + 1 {
            thread::yield_now();
        }
        let wrapped = commit_one(&commits, &media, None, &big, &mut || Ok(()));
        assert_eq!(wrapped, Ok(small_seq), "it took the place given back");
        assert!(matches!(failing.join().unwrap(), Err(Error::Corrupt(..))));
    });
    assert!(!committing.chain.failed());
    assert_eq!(offset(), big_len, "the log wrapped");
    committed.insert(small_seq, big);
    let (data, next_seq, _) = recover(&pmem.0.lock().unwrap().durable);
    assert_eq!(next_seq, small_seq + 1);
    assert!(data == prefix(&committed, next_seq));
}

/// A wrap of the log backs up the superblock as the last transaction that
/// wrote it left it, not the one the wrapping transaction was built on:
/// with several built at once, that one can be older than a complete
/// transaction's, whose roots it would bring back after a mount from the
/// backup.
#[test]
fn a_wrap_backs_up_the_superblock_the_last_transaction_wrote() {
    let (device, built_on, journal) = empty_journal();
    let pmem = PerThreadPmem::new(device, 1, 0);
    let committing = Committing::new(journal);
    let commits = committing.commits(true);
    let written = Superblock {
        inode_count: built_on.inode_count + 1,
        free_blocks: built_on.free_blocks - 4,
        ..built_on
    };
    let change = sized_changes(3000, 5);
    commit_one(&commits, &pmem, Some(&written), &change, &mut || Ok(())).unwrap();
    // Transactions that leave the superblock as it was, until one wraps.
    let mut last_offset = committing.next_offset();
    loop {
        commit_one(&commits, &pmem, None, &change, &mut || Ok(())).unwrap();
        let offset = committing.next_offset();
        if offset < last_offset {
            break;
        }
        last_offset = offset;
    }
    let durable = &pmem.0.lock().unwrap().durable;
    let at = BACKUP_BLOCK as usize * BS;
    let backup = Superblock::decode(&durable[at..at + BS]).unwrap();
    assert_eq!(backup, written);
}
