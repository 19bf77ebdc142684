// SPDX-License-Identifier: GPL-2.0

//! Host build of oxdax's pure logic (`rust/logic/`), for `cargo test` and the
//! userspace tools. The module compiles the very same files as `crate::logic`.

#![no_std]

// The host build's locks (the module's are the kernel's); the logic itself
// uses neither std nor locks of its own.
extern crate std;

#[path = "logic/mod.rs"]
pub mod logic;

pub use logic::*;

/// The host's CRC-32C: the portable one (the module uses the kernel's).
pub type Crc32cImpl = logic::format::crc32c::Table;

extern crate alloc;

/// A volume's working memory ([`fs::Scratch`]) on the heap, for the host
/// tests and the userspace tools (the module allocates its own).
pub struct HeapScratch {
    contexts: alloc::vec::Vec<std::sync::Mutex<HeapContext>>,
    claims: fs::ContextClaims,
    checked: alloc::vec::Vec<core::sync::atomic::AtomicU64>,
    cache: HeapCache,
    lookups: std::sync::Mutex<HeapLookups>,
    journal: std::sync::Mutex<fs::Journal>,
    commit_waits: HostWaits,
    space: std::sync::Mutex<fs::SpaceState>,
    lists: std::sync::Mutex<fs::VolumeLists>,
    reservations: alloc::vec::Vec<core::sync::atomic::AtomicU64>,
    /// Times the space lock was taken (tests of which operations take it).
    space_locks: core::sync::atomic::AtomicU64,
}

impl<T: Send> fs::Locked<T> for std::sync::Mutex<T> {
    fn with_locked(&self, f: &mut dyn FnMut(&mut T)) {
        // A panic under the lock already failed the test that caused it.
        f(&mut self
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner));
    }
}

/// [`fs::Waits`] on the host: a condition variable.
#[derive(Default)]
pub struct HostWaits {
    lock: std::sync::Mutex<()>,
    changed: std::sync::Condvar,
    /// Threads asleep in `wait_until`, for tests that wait for a waiter.
    sleeping: core::sync::atomic::AtomicUsize,
}

impl HostWaits {
    /// How many threads sleep in `wait_until` now.
    pub fn sleepers(&self) -> usize {
        self.sleeping.load(core::sync::atomic::Ordering::SeqCst)
    }
}

impl fs::Waits for HostWaits {
    fn wait_until(&self, ready: &dyn Fn() -> bool) {
        let mut guard = self
            .lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        use core::sync::atomic::Ordering::SeqCst;
        while !ready() {
            self.sleeping.fetch_add(1, SeqCst);
            guard = self
                .changed
                .wait(guard)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            self.sleeping.fetch_sub(1, SeqCst);
        }
    }

    fn wake_all(&self) {
        // Under the lock: a waiter between its check and its sleep holds
        // it, so it cannot miss this.
        let _guard = self
            .lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.changed.notify_all();
    }
}

/// One transaction context's buffers on the heap.
pub struct HeapContext {
    shadows: alloc::vec::Vec<[u8; format::BLOCK_SIZE]>,
    originals: alloc::vec::Vec<[u8; format::BLOCK_SIZE]>,
    tags: alloc::vec::Vec<u64>,
    lines: alloc::vec::Vec<u64>,
    log: alloc::vec::Vec<u8>,
    deferred: alloc::vec::Vec<u64>,
    spare: alloc::boxed::Box<[u8; format::BLOCK_SIZE]>,
}

impl HeapContext {
    fn new() -> Self {
        Self {
            shadows: alloc::vec![[0; format::BLOCK_SIZE]; fs::TX_MAX_BLOCKS],
            originals: alloc::vec![[0; format::BLOCK_SIZE]; fs::TX_MAX_BLOCKS],
            tags: alloc::vec![0; fs::TX_MAX_BLOCKS],
            lines: alloc::vec![0; fs::TX_MAX_BLOCKS],
            log: alloc::vec![0; fs::TX_LOG_BYTES],
            deferred: alloc::vec![0; fs::DEFERRED_WORDS],
            spare: alloc::boxed::Box::new([0; format::BLOCK_SIZE]),
        }
    }
}

/// A [`HeapContext`] checked out of a [`HeapScratch`].
pub struct HeapContextGuard<'a> {
    context: std::sync::MutexGuard<'a, HeapContext>,
    claims: &'a fs::ContextClaims,
    claim: fs::Claim,
}

impl fs::TxContext for HeapContextGuard<'_> {
    fn parts(&mut self) -> fs::TxParts<'_> {
        let context = &mut *self.context;
        fs::TxParts {
            shadows: &mut context.shadows,
            originals: &mut context.originals,
            tags: &mut context.tags,
            lines: &mut context.lines,
            log: &mut context.log,
            deferred: &mut context.deferred,
            spare: &mut context.spare,
        }
    }
}

impl Drop for HeapContextGuard<'_> {
    fn drop(&mut self) {
        // Just before the lock is released, as in the module.
        self.claims.release(&self.claim);
    }
}

/// The lookup caches' memory on the heap.
struct HeapLookups {
    inodes: alloc::vec::Vec<fs::InodeSlot>,
    mappings: alloc::vec::Vec<fs::MappingSlot>,
}

impl fs::LookupSlots for std::sync::Mutex<HeapLookups> {
    fn with_slots(&self, f: &mut dyn FnMut(&mut [fs::InodeSlot], &mut [fs::MappingSlot])) {
        // A panic under the lock already failed the test that caused it.
        let mut lookups = self
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let HeapLookups { inodes, mappings } = &mut *lookups;
        f(inodes, mappings);
    }
}

/// A metadata cache's memory on the heap: its shards, each blocks and tags.
struct HeapCache {
    shards: alloc::vec::Vec<std::sync::Mutex<HeapShard>>,
    shard_slots: usize,
}

/// One shard of a [`HeapCache`].
struct HeapShard {
    blocks: alloc::vec::Vec<[u8; format::BLOCK_SIZE]>,
    tags: alloc::vec::Vec<u64>,
}

impl HeapCache {
    /// An empty cache of `slots` slots (whole shards).
    fn new(slots: usize) -> Self {
        let shard_slots = slots / fs::CACHE_SHARDS;
        let shards = (0..fs::CACHE_SHARDS)
            .map(|_| {
                std::sync::Mutex::new(HeapShard {
                    blocks: alloc::vec![[0; format::BLOCK_SIZE]; shard_slots],
                    tags: alloc::vec![0; shard_slots],
                })
            })
            .collect();
        Self {
            shards,
            shard_slots,
        }
    }
}

impl fs::CacheSlots for HeapCache {
    fn shard_slots(&self) -> usize {
        self.shard_slots
    }

    fn with_shard(&self, shard: usize, f: &mut fs::ShardUse<'_>) {
        if let Some(shard) = self.shards.get(shard) {
            let mut shard = shard
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let HeapShard { blocks, tags } = &mut *shard;
            f(blocks, tags);
        }
    }
}

impl HeapScratch {
    /// How many times the space lock was taken.
    pub fn space_locks(&self) -> u64 {
        self.space_locks.load(core::sync::atomic::Ordering::Relaxed)
    }

    /// Zeroed buffers of the sizes the volume asks for.
    pub fn new() -> Self {
        Self::with_cache_slots(fs::MIN_CACHE_SLOTS)
    }

    /// The same with a metadata cache of `cache_slots` slots (whole
    /// shards), for tests that want blocks evicted all the time.
    pub fn with_cache_slots(cache_slots: usize) -> Self {
        Self::with_contexts(cache_slots, 1)
    }

    /// The same with `contexts` transaction contexts (1 to
    /// [`fs::MAX_TX_CONTEXTS`]).
    pub fn with_contexts(cache_slots: usize, contexts: usize) -> Self {
        let claims = fs::ContextClaims::new(contexts);
        Self {
            contexts: (0..claims.count())
                .map(|_| std::sync::Mutex::new(HeapContext::new()))
                .collect(),
            claims,
            checked: (0..cache_slots * fs::CHECKED_SLOTS_PER_CACHE_SLOT)
                .map(|_| core::sync::atomic::AtomicU64::new(0))
                .collect(),
            cache: HeapCache::new(cache_slots),
            lookups: std::sync::Mutex::new(HeapLookups {
                inodes: alloc::vec![None; fs::INODE_CACHE_SLOTS],
                mappings: alloc::vec![None; fs::MAPPING_CACHE_SLOTS],
            }),
            journal: std::sync::Mutex::default(),
            commit_waits: HostWaits::default(),
            space: std::sync::Mutex::default(),
            lists: std::sync::Mutex::default(),
            reservations: (0..fs::RESERVATION_WORDS)
                .map(|_| core::sync::atomic::AtomicU64::new(0))
                .collect(),
            space_locks: core::sync::atomic::AtomicU64::new(0),
        }
    }
}

impl Default for HeapScratch {
    fn default() -> Self {
        Self::new()
    }
}

impl fs::Scratch for HeapScratch {
    type Context<'a> = HeapContextGuard<'a>;

    fn context(&self) -> HeapContextGuard<'_> {
        let claim = self.claims.claim();
        // `claim` is below the claims' count, which is the pool's length.
        let context = self.contexts[claim.index]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        HeapContextGuard {
            context,
            claims: &self.claims,
            claim,
        }
    }

    fn checked_nodes(&self) -> &[core::sync::atomic::AtomicU64] {
        &self.checked
    }

    fn cache(&self) -> &dyn fs::CacheSlots {
        &self.cache
    }

    fn lookup_slots(&self) -> &dyn fs::LookupSlots {
        &self.lookups
    }

    fn journal(&self) -> &dyn fs::Locked<fs::Journal> {
        &self.journal
    }

    fn commit_waits(&self) -> &dyn fs::Waits {
        &self.commit_waits
    }

    fn reservations(&self) -> &[core::sync::atomic::AtomicU64] {
        &self.reservations
    }

    fn lists(&self) -> &dyn fs::Locked<fs::VolumeLists> {
        &self.lists
    }

    type SpaceGuard<'a> = std::sync::MutexGuard<'a, fs::SpaceState>;

    fn lock_space(&self) -> Self::SpaceGuard<'_> {
        self.space_locks
            .fetch_add(1, core::sync::atomic::Ordering::Relaxed);
        // A panic while holding it fails the test that panicked.
        self.space
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A whole device in memory, block after block, for mkfs and the checks
/// ([`format::mkfs::Image`]) in the host tests and the tools' tests.
pub struct MemoryImage(pub alloc::vec::Vec<u8>);

impl MemoryImage {
    /// The bytes of block `n`.
    fn range(n: u64) -> Option<core::ops::Range<usize>> {
        let at = usize::try_from(n).ok()?.checked_mul(format::BLOCK_SIZE)?;
        Some(at..at.checked_add(format::BLOCK_SIZE)?)
    }
}

impl format::mkfs::Image for MemoryImage {
    type Error = ();
    fn block(&self, n: u64) -> Result<&[u8; format::BLOCK_SIZE], ()> {
        Self::range(n)
            .and_then(|r| self.0.get(r))
            .and_then(|b| b.try_into().ok())
            .ok_or(())
    }
    fn block_mut(&mut self, n: u64) -> Result<&mut [u8; format::BLOCK_SIZE], ()> {
        Self::range(n)
            .and_then(|r| self.0.get_mut(r))
            .and_then(|b| b.try_into().ok())
            .ok_or(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn version_file_matches_cargo_manifest() {
        assert_eq!(super::VERSION, env!("CARGO_PKG_VERSION"));
    }

    /// Holders of a pool's contexts never share one, and as many hold
    /// theirs at once as there are contexts.
    #[test]
    fn transaction_contexts_are_each_one_holders() {
        use crate::fs::{Scratch, TxContext, MIN_CACHE_SLOTS};
        use core::sync::atomic::{AtomicUsize, Ordering};
        const CONTEXTS: usize = 2;
        let scratch = super::HeapScratch::with_contexts(MIN_CACHE_SLOTS, CONTEXTS);
        // The first holders meet while they hold their contexts: two of
        // them on one context would wait for each other for ever. The
        // others start after, not to be sent to a context whose holder
        // waits to meet.
        let met = std::sync::Barrier::new(CONTEXTS + 1);
        let holding = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        let hold = |thread: usize, meet: Option<&std::sync::Barrier>| {
            for round in 0..300usize {
                let mut context = scratch.context();
                let now = holding.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                if let (0, Some(meet)) = (round, meet) {
                    meet.wait();
                }
                let mark = (thread * 1000 + round) as u64;
                let parts = context.parts();
                parts.tags[0] = mark;
                parts.log[..8].copy_from_slice(&mark.to_le_bytes());
                parts.spare[..8].copy_from_slice(&mark.to_le_bytes());
                std::thread::yield_now();
                let parts = context.parts();
                assert_eq!(parts.tags[0], mark);
                assert_eq!(parts.log[..8], mark.to_le_bytes());
                assert_eq!(parts.spare[..8], mark.to_le_bytes());
                holding.fetch_sub(1, Ordering::SeqCst);
            }
        };
        std::thread::scope(|s| {
            for thread in 0..CONTEXTS {
                let (hold, met) = (&hold, &met);
                s.spawn(move || hold(thread, Some(met)));
            }
            met.wait();
            for thread in CONTEXTS..2 * CONTEXTS {
                let hold = &hold;
                s.spawn(move || hold(thread, None));
            }
        });
        assert_eq!(most.load(Ordering::SeqCst), CONTEXTS);
    }
}
