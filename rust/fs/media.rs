// SPDX-License-Identifier: GPL-2.0

//! The device as the filesystem logic sees it: the whole DAX mapping
//! ([`Media`], read only by machine-check-safe copies) and the working
//! memory of its transactions and metadata cache ([`Scratch`]), with the
//! locks the logic's shared state is behind.
//!
//! # Lock order (inside the volume lock, outermost first)
//!
//!   oxdax_tx_context     one per transaction context; a call holds one
//!   oxdax_space          the space state ([`SpaceState`]): from a transaction's
//!                        first touch of space until its commit published
//!   oxdax_journal        the journal's place ([`Journal`])
//!   oxdax_commit_waits   a leaf: the commit turn's condition variable
//!   oxdax_lists, oxdax_cache_shard, oxdax_lookup_caches   spinlocks, leaves
//!                        under any

use core::sync::atomic::{fence, AtomicU64, AtomicUsize, Ordering};
use kernel::{
    new_condvar, new_mutex, new_spinlock,
    prelude::*,
    sync::{
        lock::{mutex::MutexBackend, Guard},
        CondVar, Mutex, SpinLock,
    },
};

use crate::{
    logic::{
        format::BLOCK_SIZE,
        fs::{
            CacheSlots, Claim, ContextClaims, InodeSlot, Journal, Locked, LookupSlots, MappingSlot,
            Media, MediaFault, Scratch, ShardUse, SpaceState, TxContext, TxParts, VolumeLists,
            Waits, CACHE_SHARDS, CHECKED_SLOTS_PER_CACHE_SLOT, DEFERRED_WORDS, INODE_CACHE_SLOTS,
            MAPPING_CACHE_SLOTS, RESERVATION_WORDS, TX_LOG_BYTES, TX_MAX_BLOCKS,
        },
    },
    sys::{dax::DaxMemory, memory},
};

/// The mapped device. Each access is inside a DAX read section that found
/// the device alive (the filesystem calls the volume inside one too, so
/// that a device cannot die in the middle of a transaction): after the
/// device is gone, reads fail and writes do not happen.
pub(crate) struct PmemMedia {
    memory: DaxMemory,
}

impl PmemMedia {
    /// The media over a whole-device mapping.
    pub(crate) fn new(memory: DaxMemory) -> Self {
        Self { memory }
    }
}

impl Media for PmemMedia {
    fn size(&self) -> u64 {
        self.memory.len()
    }

    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), MediaFault> {
        let memory = self.memory.access().ok_or(MediaFault::Failed)?;
        memory.read(offset, buf).map_err(fault)
    }

    fn copy(&self, from: u64, to: u64, len: u64) -> Result<(), MediaFault> {
        let len = usize::try_from(len).map_err(|_| MediaFault::OutOfRange)?;
        let memory = self.memory.access().ok_or(MediaFault::Failed)?;
        memory.copy_within(from, to, len).map_err(fault)
    }

    fn write(&self, offset: u64, data: &[u8]) -> bool {
        self.memory
            .access()
            .is_some_and(|memory| memory.write(offset, data).is_ok())
    }

    fn zero(&self, offset: u64, len: u64) -> bool {
        let (Ok(len), Some(memory)) = (usize::try_from(len), self.memory.access()) else {
            return false;
        };
        memory.zero(offset, len).is_ok()
    }

    fn fence(&self) {
        memory::fence();
    }

    fn relax(&self) {
        crate::sys::cond_resched();
    }

    fn now_ns(&self) -> u64 {
        super::mutex_stats::now_ns()
    }
}

/// A failed access's kind: `EIO` is failed memory, anything else a range
/// outside the device.
fn fault(e: Error) -> MediaFault {
    if e == EIO {
        MediaFault::Failed
    } else {
        MediaFault::OutOfRange
    }
}

/// One shard of the metadata cache: its blocks and their tags.
struct CacheShard {
    blocks: VVec<u8>,
    tags: KVec<u64>,
}

/// The metadata cache's memory: [`CACHE_SHARDS`] shards, each behind a
/// spinlock (held for one slot's copy or look: concurrent lookups rarely
/// meet on one).
struct CacheMemory {
    shards: KVec<Pin<KBox<SpinLock<CacheShard>>>>,
    shard_slots: usize,
}

impl CacheMemory {
    /// An empty cache of `slots` slots, whole shards.
    fn new(slots: usize) -> Result<Self> {
        let shard_slots = slots / CACHE_SHARDS;
        let mut shards = KVec::with_capacity(CACHE_SHARDS, GFP_KERNEL)?;
        for _ in 0..CACHE_SHARDS {
            let mut blocks = VVec::new();
            blocks.extend_with(shard_slots * BLOCK_SIZE, 0u8, GFP_KERNEL)?;
            let mut tags = KVec::new();
            tags.extend_with(shard_slots, 0u64, GFP_KERNEL)?;
            let shard = new_spinlock!(CacheShard { blocks, tags }, "oxdax_cache_shard");
            shards.push(KBox::pin_init(shard, GFP_KERNEL)?, GFP_KERNEL)?;
        }
        Ok(Self {
            shards,
            shard_slots,
        })
    }
}

impl CacheSlots for CacheMemory {
    fn shard_slots(&self) -> usize {
        self.shard_slots
    }

    fn with_shard(&self, shard: usize, f: &mut ShardUse<'_>) {
        if let Some(shard) = self.shards.get(shard) {
            let mut shard = shard.lock();
            let CacheShard { blocks, tags } = &mut *shard;
            f(memory::as_blocks_mut::<BLOCK_SIZE>(blocks), tags);
        }
    }
}

/// The lookup caches' memory (inode records, mappings).
struct LookupSlotsMemory {
    inodes: KVec<InodeSlot>,
    mappings: KVec<MappingSlot>,
}

/// The lookup caches' memory behind a spinlock (held for one lookup or
/// one forgetting walk).
struct LookupMemory(Pin<KBox<SpinLock<LookupSlotsMemory>>>);

impl LookupSlots for LookupMemory {
    fn with_slots(&self, f: &mut dyn FnMut(&mut [InodeSlot], &mut [MappingSlot])) {
        let mut slots = self.0.lock();
        let LookupSlotsMemory { inodes, mappings } = &mut *slots;
        f(inodes, mappings);
    }
}

/// One transaction context's buffers (about 1.5 MiB, vmalloc).
struct TxBuffers {
    shadows: VVec<u8>,
    originals: VVec<u8>,
    numbers: KVec<u64>,
    lines: KVec<u64>,
    log: VVec<u8>,
    deferred: KVec<u64>,
    spare: KBox<[u8; BLOCK_SIZE]>,
}

impl TxBuffers {
    fn new() -> Result<Self> {
        let mut shadows = VVec::new();
        shadows.extend_with(TX_MAX_BLOCKS * BLOCK_SIZE, 0u8, GFP_KERNEL)?;
        let mut originals = VVec::new();
        originals.extend_with(TX_MAX_BLOCKS * BLOCK_SIZE, 0u8, GFP_KERNEL)?;
        let mut numbers = KVec::new();
        numbers.extend_with(TX_MAX_BLOCKS, 0u64, GFP_KERNEL)?;
        let mut lines = KVec::new();
        lines.extend_with(TX_MAX_BLOCKS, 0u64, GFP_KERNEL)?;
        let mut log = VVec::new();
        log.extend_with(TX_LOG_BYTES, 0u8, GFP_KERNEL)?;
        let mut deferred = KVec::new();
        deferred.extend_with(DEFERRED_WORDS, 0u64, GFP_KERNEL)?;
        Ok(Self {
            shadows,
            originals,
            numbers,
            lines,
            log,
            deferred,
            spare: KBox::init(kernel::init::zeroed(), GFP_KERNEL)?,
        })
    }
}

/// A [`TxBuffers`] checked out of [`Buffers`]: its mutex held.
pub(crate) struct TxContextGuard<'a> {
    buffers: Guard<'a, TxBuffers, MutexBackend>,
    claims: &'a ContextClaims,
    claim: Claim,
}

impl TxContext for TxContextGuard<'_> {
    fn parts(&mut self) -> TxParts<'_> {
        let buffers = &mut *self.buffers;
        TxParts {
            shadows: memory::as_blocks_mut::<BLOCK_SIZE>(&mut buffers.shadows),
            originals: memory::as_blocks_mut::<BLOCK_SIZE>(&mut buffers.originals),
            tags: &mut buffers.numbers,
            lines: &mut buffers.lines,
            log: &mut buffers.log,
            deferred: &mut buffers.deferred,
            spare: &mut buffers.spare,
        }
    }
}

impl Drop for TxContextGuard<'_> {
    fn drop(&mut self) {
        // Just before the mutex is released: a checkout that claims the
        // context in between waits for that release only.
        self.claims.release(&self.claim);
    }
}

impl<T: Send> Locked<T> for Mutex<T> {
    fn with_locked(&self, f: &mut dyn FnMut(&mut T)) {
        f(&mut self.lock());
    }
}

/// For state held only to change it, without I/O or sleeping.
impl<T: Send> Locked<T> for SpinLock<T> {
    fn with_locked(&self, f: &mut dyn FnMut(&mut T)) {
        f(&mut self.lock());
    }
}

/// Checks of a commit turn's condition before a waiter sleeps: most waits
/// end while the transaction before runs on the other CPU, and under TCG
/// a sleep and wake-up cost tens of microseconds
/// (Documentation/oxdax/concurrency.rst, stage 2).
const COMMIT_SPINS: u32 = 2000;

/// [`Waits`] in the module: a spin, then a condition variable.
#[pin_data]
struct CommitWaits {
    #[pin]
    lock: Mutex<()>,
    #[pin]
    changed: CondVar,
    /// Waiters past their spin: a wake-up with none takes no lock (every
    /// transaction wakes, and almost never anyone).
    sleepers: AtomicUsize,
}

impl Waits for CommitWaits {
    fn wait_until(&self, ready: &dyn Fn() -> bool) {
        for _ in 0..COMMIT_SPINS {
            if ready() {
                return;
            }
            core::hint::spin_loop();
        }
        let mut guard = self.lock.lock();
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        // Pairs with `wake_all`'s: either this check sees the change, or
        // that one sees this sleeper and takes the lock, which this holds
        // until the condition variable's wait releases it.
        fence(Ordering::SeqCst);
        while !ready() {
            self.changed.wait(&mut guard);
        }
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
    }

    fn wake_all(&self) {
        // After the change the woken check (see `wait_until`).
        fence(Ordering::SeqCst);
        if self.sleepers.load(Ordering::SeqCst) == 0 {
            return;
        }
        let _guard = self.lock.lock();
        self.changed.notify_all();
    }
}

/// Transaction contexts a mount allocates: one while the volume runs its
/// transactions one at a time (Documentation/oxdax/concurrency.rst,
/// stage 3); stage 4's shared volume lock is what more would be for.
const TX_CONTEXTS: usize = 1;

/// A volume's working memory, allocated once per mount (vmalloc):
/// transaction contexts (about 1.5 MiB each) and the metadata cache
/// ([`crate::logic::fs::cache_slots_for`]: 4 to 32 MiB).
pub(crate) struct Buffers {
    /// The first transaction context, and the others: at least one.
    first_context: Pin<KBox<Mutex<TxBuffers>>>,
    more_contexts: KVec<Pin<KBox<Mutex<TxBuffers>>>>,
    claims: ContextClaims,
    checked: VVec<AtomicU64>,
    cache: CacheMemory,
    lookups: LookupMemory,
    journal: Pin<KBox<Mutex<Journal>>>,
    commit_waits: Pin<KBox<CommitWaits>>,
    space: Pin<KBox<Mutex<SpaceState>>>,
    lists: Pin<KBox<SpinLock<VolumeLists>>>,
    reservations: KVec<AtomicU64>,
}

impl Buffers {
    /// Zeroed buffers of the sizes the logic asks for, with a metadata
    /// cache of `cache_slots` blocks.
    pub(crate) fn new(cache_slots: usize) -> Result<Self> {
        let checked_slots = cache_slots
            .checked_mul(CHECKED_SLOTS_PER_CACHE_SLOT)
            .ok_or(EINVAL)?;
        let claims = ContextClaims::new(TX_CONTEXTS);
        let context = || {
            KBox::pin_init(
                new_mutex!(TxBuffers::new()?, "oxdax_tx_context"),
                GFP_KERNEL,
            )
        };
        let first_context = context()?;
        let mut more_contexts = KVec::with_capacity(claims.count() - 1, GFP_KERNEL)?;
        for _ in 1..claims.count() {
            more_contexts.push(context()?, GFP_KERNEL)?;
        }
        let mut inodes = KVec::new();
        inodes.extend_with(INODE_CACHE_SLOTS, None, GFP_KERNEL)?;
        let mut mappings = KVec::new();
        mappings.extend_with(MAPPING_CACHE_SLOTS, None, GFP_KERNEL)?;
        let mut reservations = KVec::with_capacity(RESERVATION_WORDS, GFP_KERNEL)?;
        for _ in 0..RESERVATION_WORDS {
            reservations.push(AtomicU64::new(0), GFP_KERNEL)?;
        }
        // Up to 256 KiB: virtually contiguous, like the cache.
        let mut checked = VVec::with_capacity(checked_slots, GFP_KERNEL)?;
        for _ in 0..checked_slots {
            checked.push(AtomicU64::new(0), GFP_KERNEL)?;
        }
        Ok(Self {
            first_context,
            more_contexts,
            claims,
            checked,
            cache: CacheMemory::new(cache_slots)?,
            lookups: LookupMemory(KBox::pin_init(
                new_spinlock!(
                    LookupSlotsMemory { inodes, mappings },
                    "oxdax_lookup_caches"
                ),
                GFP_KERNEL,
            )?),
            journal: KBox::pin_init(new_mutex!(Journal::default(), "oxdax_journal"), GFP_KERNEL)?,
            commit_waits: KBox::pin_init(
                pin_init!(CommitWaits {
                    lock <- new_mutex!((), "oxdax_commit_waits"),
                    changed <- new_condvar!("oxdax_commit_turn"),
                    sleepers: AtomicUsize::new(0),
                }),
                GFP_KERNEL,
            )?,
            space: KBox::pin_init(new_mutex!(SpaceState::default(), "oxdax_space"), GFP_KERNEL)?,
            lists: KBox::pin_init(
                new_spinlock!(VolumeLists::default(), "oxdax_lists"),
                GFP_KERNEL,
            )?,
            reservations,
        })
    }
}

impl Scratch for Buffers {
    type Context<'a> = TxContextGuard<'a>;

    fn context(&self) -> TxContextGuard<'_> {
        let claim = self.claims.claim();
        // The claim's index is below the claims' count, which is how many
        // contexts `new` made.
        let context = claim
            .index
            .checked_sub(1)
            .and_then(|more| self.more_contexts.get(more))
            .unwrap_or(&self.first_context);
        TxContextGuard {
            buffers: context.lock(),
            claims: &self.claims,
            claim,
        }
    }

    fn checked_nodes(&self) -> &[AtomicU64] {
        &self.checked
    }

    fn cache(&self) -> &dyn CacheSlots {
        &self.cache
    }

    fn lookup_slots(&self) -> &dyn LookupSlots {
        &self.lookups
    }

    fn journal(&self) -> &dyn Locked<Journal> {
        &*self.journal
    }

    fn commit_waits(&self) -> &dyn Waits {
        &*self.commit_waits
    }

    fn reservations(&self) -> &[AtomicU64] {
        &self.reservations
    }

    fn lists(&self) -> &dyn Locked<VolumeLists> {
        &*self.lists
    }

    type SpaceGuard<'a> = Guard<'a, SpaceState, MutexBackend>;

    fn lock_space(&self) -> Self::SpaceGuard<'_> {
        self.space.lock()
    }
}
