// SPDX-License-Identifier: GPL-2.0

//! Metadata blocks in DRAM: the one way the filesystem reads its metadata.
//!
//! Persistent memory can fail under the filesystem's feet, and a plain CPU
//! load of failed memory in the kernel is a machine check the kernel cannot
//! recover from (a panic). So the filesystem never reads the device
//! through references: [`Media::read`] copies (in the module with
//! `copy_mc_to_kernel`, as the pmem driver's read path does), and a failed
//! copy is an error. Copying a node for every look would cost a 4 KiB copy
//! per tree level; this cache keeps the blocks it copied, as ext4's and
//! xfs's buffer caches keep theirs (a block is copied from the device the
//! first time it is read and whenever its slot was taken by another).
//!
//! A slot holds a block as the committed state has it. Commits put the
//! blocks they write home into the cache; freed blocks are forgotten (they
//! may be written as file data next). Direct-mapped by block number: a
//! collision only costs a copy. Callers copy bytes out; no reference into
//! a slot outlives a call, so a slot may be refilled at any read.
//!
//! The volume is `Sync`: lookups outside transactions take `&self` and
//! may run on several CPUs at once (the module still serialises them, see
//! Documentation/oxdax/concurrency.rst, stage 2), so the memory of each
//! cache here is behind locks its provider supplies: [`CACHE_SHARDS`] for the blocks, one for the lookup caches.
//! Each is held for one slot's copy or look (or one walk of a shard's
//! tags) and sleeps on nothing: a fill is a machine-check-safe copy from
//! the device, inside the device's SRCU read section (which does not
//! sleep either). No other cache lock is taken under it, and it is never
//! taken again inside: the closures called under it read no cache.

use super::{Damage, Error, MapKind, Mapping, Media, MediaFault};
use crate::logic::format::{inode::Inode, BLOCK_SIZE, CHUNK_BLOCKS};

/// Fewest slots a mount's cache has (4 MiB of blocks; the host tools'
/// and tests' cache).
pub const MIN_CACHE_SLOTS: usize = 1024;

/// Most slots a mount's cache has (32 MiB of blocks).
pub const MAX_CACHE_SLOTS: usize = 8192;

/// Locks of the metadata cache: each guards an equal share of its slots
/// (slot `i` is in shard `i % CACHE_SHARDS`), so that concurrent lookups
/// rarely wait for one another.
pub const CACHE_SHARDS: usize = 64;

// The bounds are whole shards.
const _: () = assert!(MIN_CACHE_SLOTS % CACHE_SHARDS == 0 && MAX_CACHE_SLOTS % CACHE_SHARDS == 0);

/// Slots of the metadata cache of a mount on a device of `device_bytes`:
/// one per 128 blocks of the device (8 MiB of DRAM per GiB), within
/// [`MIN_CACHE_SLOTS`] and [`MAX_CACHE_SLOTS`], whole shards. Metadata
/// grows with what the device holds: a directory of 40,000 names is 16 MiB
/// of leaves (a leaf holds 14 fixed-size entries), and with a fixed 4 MiB
/// each unlink in it copied a leaf from the device again.
pub fn cache_slots_for(device_bytes: u64) -> usize {
    let blocks = device_bytes / BLOCK_SIZE as u64;
    let slots = usize::try_from(blocks / 128)
        .unwrap_or(MAX_CACHE_SLOTS)
        .clamp(MIN_CACHE_SLOTS, MAX_CACHE_SLOTS);
    slots - slots % CACHE_SHARDS
}

/// What [`CacheSlots::with_shard`] calls: with a shard's blocks and tags.
pub type ShardUse<'a> = dyn FnMut(&mut [[u8; BLOCK_SIZE]], &mut [u64]) + 'a;

/// The memory of a cache: [`CACHE_SHARDS`] shards of
/// [`Self::shard_slots`] blocks and their tags (block number + 1; 0 is an
/// empty slot), each shard behind its own lock.
pub trait CacheSlots: Sync {
    /// Slots in each shard.
    fn shard_slots(&self) -> usize;
    /// Calls `f` with the blocks and tags of shard `shard` (each
    /// [`Self::shard_slots`] long), that shard locked. Does nothing for a
    /// shard past [`CACHE_SHARDS`].
    fn with_shard(&self, shard: usize, f: &mut ShardUse<'_>);
}

/// Blocks of [`Media`] as last copied from it or written to it.
#[derive(Clone, Copy)]
pub(super) struct BlockCache<'a> {
    slots: Option<&'a dyn CacheSlots>,
}

/// The error of a failed read of block `block` of the media.
pub(super) fn read_error(block: u64, fault: MediaFault) -> Error {
    Error::Corrupt(
        block,
        match fault {
            MediaFault::OutOfRange => Damage::Address,
            MediaFault::Failed => Damage::Unreadable,
        },
    )
}

/// Slot of `key` among `count` slots of a direct-mapped cache, `key`
/// scrambled first (Fibonacci hashing: keys that differ only in their high
/// bits, or by a stride, still spread); `None` if there are none. The
/// scrambled 32 bits are scaled to `count` by a multiplication, not
/// reduced by a division: every read of a cached node entry asks, and
/// under TCG a division is a helper call.
fn hashed_slot(key: u64, count: usize) -> Option<usize> {
    let count = u64::try_from(count)
        .ok()
        .filter(|&n| n > 0 && n <= 1 << 32)?;
    let scrambled = key.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32;
    usize::try_from((scrambled * count) >> 32).ok()
}

impl<'a> BlockCache<'a> {
    /// A cache in `slots`.
    pub(super) fn new(slots: &'a dyn CacheSlots) -> Self {
        Self { slots: Some(slots) }
    }

    /// No cache: every read copies from the media (fsck, mount).
    pub(super) fn none() -> Self {
        Self { slots: None }
    }

    /// The slot of `block` among `count`. Metadata sits at the same
    /// places of different 2 MiB chunks (an inode chunk's blocks, a node
    /// allocated first in a chunk): by the number itself, those blocks
    /// took the same few slots in turn.
    fn slot(block: u64, count: usize) -> Option<usize> {
        hashed_slot(block, count)
    }

    /// Calls `f` with the slot of block `block` (its bytes and its tag),
    /// its shard locked; `None` without a cache.
    fn in_slot<R>(
        &self,
        block: u64,
        f: impl FnOnce(&mut [u8; BLOCK_SIZE], &mut u64) -> R,
    ) -> Option<R> {
        let slots = self.slots?;
        let i = Self::slot(block, slots.shard_slots().checked_mul(CACHE_SHARDS)?)?;
        let (shard, index) = (i % CACHE_SHARDS, i / CACHE_SHARDS);
        let mut f = Some(f);
        let mut result = None;
        slots.with_shard(shard, &mut |blocks, tags| {
            if let (Some(data), Some(tag), Some(f)) =
                (blocks.get_mut(index), tags.get_mut(index), f.take())
            {
                result = Some(f(data, tag));
            }
        });
        result
    }

    /// Copies `buf.len()` bytes at byte `offset` of block `block` into
    /// `buf`, from the cache, or from `media` into the cache first.
    pub(super) fn read<M: Media>(
        &self,
        media: &M,
        block: u64,
        offset: usize,
        buf: &mut [u8],
    ) -> Result<(), Error> {
        let end = offset
            .checked_add(buf.len())
            .filter(|&end| end <= BLOCK_SIZE)
            .ok_or(Error::Invalid)?;
        if self.slots.is_none() {
            let at = block
                .checked_mul(BLOCK_SIZE as u64)
                .and_then(|b| b.checked_add(offset as u64))
                .ok_or(Error::Corrupt(block, Damage::Address))?;
            return media.read(at, buf).map_err(|f| read_error(block, f));
        }
        // The length compared where the copy is: no panic path is left.
        let copied = self.with_block(media, block, |data| match data.get(offset..end) {
            Some(bytes) if bytes.len() == buf.len() => {
                buf.copy_from_slice(bytes);
                Ok(())
            }
            _ => Err(Error::Invalid),
        })?;
        copied.unwrap_or(Err(Error::Invalid))
    }

    /// Calls `look` with block `block` as the cache holds it (copied from
    /// `media` first if it does not); `false` without a cache (`look` is
    /// not called). `look` must not read the cache: its shard is locked.
    pub(super) fn look<M: Media>(
        &self,
        media: &M,
        block: u64,
        look: &mut dyn FnMut(&[u8; BLOCK_SIZE]),
    ) -> Result<bool, Error> {
        Ok(self.with_block(media, block, look)?.is_some())
    }

    /// `use_block(block's bytes)`, from the cache, or from `media` into
    /// the cache first; `None` without a cache.
    fn with_block<M: Media, R>(
        &self,
        media: &M,
        block: u64,
        use_block: impl FnOnce(&[u8; BLOCK_SIZE]) -> R,
    ) -> Result<Option<R>, Error> {
        if self.slots.is_none() {
            return Ok(None);
        }
        let used = self.in_slot(block, |data, tag| {
            if *tag != block.wrapping_add(1) {
                *tag = 0;
                let start = block
                    .checked_mul(BLOCK_SIZE as u64)
                    .ok_or(Error::Corrupt(block, Damage::Address))?;
                media
                    .read(start, &mut data[..])
                    .map_err(|f| read_error(block, f))?;
                *tag = block.wrapping_add(1);
            }
            Ok(use_block(data))
        });
        // A cache with no slot for it is a cache of no slots.
        used.ok_or(Error::Invalid)?.map(Some)
    }

    /// Records that block `block` now holds `content` on the media.
    pub(super) fn put(&self, block: u64, content: &[u8; BLOCK_SIZE]) {
        self.in_slot(block, |data, tag| {
            data.copy_from_slice(content);
            *tag = block.wrapping_add(1);
        });
    }

    /// Block `block` changed on the media by `data` at byte `offset`,
    /// from the committed content the cache holds if it holds the block:
    /// the cached copy is changed the same way (a commit's changed runs
    /// cost their bytes, not a block's copy). Whether it held the block.
    pub(super) fn patch(&self, block: u64, offset: usize, data: &[u8]) -> bool {
        let patched = self.in_slot(block, |slot, tag| {
            if *tag != block.wrapping_add(1) {
                return false;
            }
            let bytes = offset
                .checked_add(data.len())
                .and_then(|end| slot.get_mut(offset..end));
            match bytes {
                Some(bytes) if bytes.len() == data.len() => {
                    bytes.copy_from_slice(data);
                    true
                }
                _ => {
                    // Not a change of this block: its copy is not trusted.
                    *tag = 0;
                    false
                }
            }
        });
        patched == Some(true)
    }

    /// Whether block `block` is cached.
    pub(super) fn holds(&self, block: u64) -> bool {
        self.in_slot(block, |_, tag| *tag == block.wrapping_add(1)) == Some(true)
    }

    /// The cached copy of block `block`, if any (host checks).
    #[cfg(test)]
    pub(super) fn cached(&self, block: u64) -> Option<[u8; BLOCK_SIZE]> {
        self.in_slot(block, |data, tag| {
            (*tag == block.wrapping_add(1)).then_some(*data)
        })
        .flatten()
    }

    /// Forgets block `block` (one slot to look at).
    pub(super) fn forget_block(&self, block: u64) {
        self.forget(block, 1);
    }

    /// Forgets blocks `start..start + len`. Direct-mapped, a block can only
    /// be in its own slot: a short range looks at its blocks' slots (most
    /// freed extents are a few blocks: a tree node, a small file's data),
    /// a longer one at every tag. Each probe takes its shard's lock, a walk
    /// each shard's once: past an eighth of the cache the walk is cheaper.
    pub(super) fn forget(&self, start: u64, len: u64) {
        let Some(slots) = self.slots else {
            return;
        };
        let count = slots.shard_slots().saturating_mul(CACHE_SHARDS);
        let end = start.saturating_add(len);
        if (end - start).saturating_mul(8) < count as u64 {
            for block in start..end {
                self.in_slot(block, |_, tag| {
                    if *tag == block.wrapping_add(1) {
                        *tag = 0;
                    }
                });
            }
            return;
        }
        for shard in 0..CACHE_SHARDS {
            slots.with_shard(shard, &mut |_, tags| {
                for tag in tags.iter_mut() {
                    let block = tag.wrapping_sub(1);
                    if *tag != 0 && (start..end).contains(&block) {
                        *tag = 0;
                    }
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logic::testing::Lcg;
    use alloc::{vec, vec::Vec};

    #[test]
    fn the_cache_grows_with_the_device_within_its_bounds() {
        const GIB: u64 = 1 << 30;
        assert_eq!(cache_slots_for(0), MIN_CACHE_SLOTS);
        assert_eq!(cache_slots_for(GIB / 2), MIN_CACHE_SLOTS);
        assert_eq!(cache_slots_for(2 * GIB), 4096);
        assert_eq!(cache_slots_for(2 * GIB + 4095), 4096);
        assert_eq!(cache_slots_for(4 * GIB), MAX_CACHE_SLOTS);
        assert_eq!(cache_slots_for(u64::MAX), MAX_CACHE_SLOTS);
    }

    /// Shards of a test cache, as one array of tags by slot number.
    struct Slots(Vec<std::sync::Mutex<(Vec<[u8; BLOCK_SIZE]>, Vec<u64>)>>);

    impl Slots {
        fn new(tags: &[u64]) -> Self {
            let per_shard = tags.len() / CACHE_SHARDS;
            Self(
                (0..CACHE_SHARDS)
                    .map(|shard| {
                        let tags = (0..per_shard)
                            .map(|i| tags[i * CACHE_SHARDS + shard])
                            .collect();
                        std::sync::Mutex::new((vec![[0u8; BLOCK_SIZE]; per_shard], tags))
                    })
                    .collect(),
            )
        }

        fn tags(&self) -> Vec<u64> {
            let shards: Vec<Vec<u64>> =
                self.0.iter().map(|s| s.lock().unwrap().1.clone()).collect();
            let per_shard = shards[0].len();
            (0..per_shard * CACHE_SHARDS)
                .map(|i| shards[i % CACHE_SHARDS][i / CACHE_SHARDS])
                .collect()
        }
    }

    impl CacheSlots for Slots {
        fn shard_slots(&self) -> usize {
            self.0[0].lock().unwrap().1.len()
        }
        fn with_shard(&self, shard: usize, f: &mut ShardUse<'_>) {
            if let Some(shard) = self.0.get(shard) {
                let (blocks, tags) = &mut *shard.lock().unwrap();
                f(blocks, tags);
            }
        }
    }

    /// Forgetting a range by its blocks' slots leaves the tags a walk of
    /// every tag leaves, for short and long ranges, at any offset.
    #[test]
    fn forgetting_by_slot_matches_a_walk_of_every_tag() {
        const SLOTS: usize = 2 * CACHE_SHARDS;
        let mut rng = Lcg(5);
        for round in 0..2000 {
            let tags: Vec<u64> = (0..SLOTS)
                .map(|_| match rng.next() % 4 {
                    0 => 0,
                    _ => 1 + rng.next() % 300,
                })
                .collect();
            let start = rng.next() % 300;
            let len = match round % 3 {
                0 => rng.next() % 4,
                1 => rng.next() % SLOTS as u64,
                _ => rng.next() % (3 * SLOTS as u64),
            };
            let slots = Slots::new(&tags);
            let cache = BlockCache::new(&slots);
            cache.forget(start, len);
            let end = start + len;
            let walked: Vec<u64> = tags
                .iter()
                .map(|&tag| {
                    if tag != 0 && (start..end).contains(&(tag - 1)) {
                        0
                    } else {
                        tag
                    }
                })
                .collect();
            // Only tags in their block's own slot can be in the cache at
            // all: the random ones elsewhere are never looked at by a read.
            let reachable = |tags: &[u64]| -> Vec<u64> {
                tags.iter()
                    .enumerate()
                    .map(|(i, &tag)| {
                        if tag != 0 && BlockCache::slot(tag - 1, SLOTS) == Some(i) {
                            tag
                        } else {
                            0
                        }
                    })
                    .collect()
            };
            let kept = slots.tags();
            assert_eq!(reachable(&kept), reachable(&walked), "round {round}");
        }
    }
}

/// Inode records an [`InodeCache`] keeps.
pub const INODE_CACHE_SLOTS: usize = 64;

/// A slot of an [`InodeCache`]: inode number and record, if any.
pub type InodeSlot = Option<(u64, Inode)>;

/// Mappings a [`MappingCache`] keeps.
pub const MAPPING_CACHE_SLOTS: usize = 256;

/// A slot of a [`MappingCache`]: inode number and a run of its blocks.
pub type MappingSlot = Option<(u64, Mapping)>;

/// The memory of the volume's lookup caches ([`InodeCache`],
/// [`MappingCache`]), behind one lock.
pub trait LookupSlots: Sync {
    /// Calls `f` with the [`INODE_CACHE_SLOTS`] inode slots and the
    /// [`MAPPING_CACHE_SLOTS`] mapping slots, locked.
    fn with_slots(&self, f: &mut dyn FnMut(&mut [InodeSlot], &mut [MappingSlot]));
}

/// Calls `f` with the slots of `lookups`, locked.
fn with_lookups<R>(
    lookups: &dyn LookupSlots,
    f: impl FnOnce(&mut [InodeSlot], &mut [MappingSlot]) -> R,
) -> Option<R> {
    let mut f = Some(f);
    let mut result = None;
    lookups.with_slots(&mut |inodes, mappings| {
        result = f.take().map(|f| f(inodes, mappings));
    });
    result
}

/// Decoded records of the committed state. Every read, write(2) and page
/// fault starts with its inode's record: an inode-chunk tree walk, a copy,
/// a checksum and a decode that this does once per inode until a
/// transaction changes it.
///
/// Records change only through a transaction, which notes the inodes
/// whose records it writes or clears ([`Touched`]); the volume forgets
/// those after it commits, and everything after it fails, so a hit is
/// exactly what the lookup would find. Direct-mapped by inode
/// number: a collision only costs a lookup. Its slots (8 KiB) live in the
/// volume's scratch memory, not in the volume (which is moved on the
/// kernel's stack at mount).
#[derive(Clone, Copy)]
pub(super) struct InodeCache<'a> {
    slots: &'a dyn LookupSlots,
}

impl<'a> InodeCache<'a> {
    /// A cache in `slots` ([`INODE_CACHE_SLOTS`] of them, `None` at mount).
    pub(super) fn new(slots: &'a dyn LookupSlots) -> Self {
        Self { slots }
    }

    fn slot(ino: u64, count: usize) -> Option<usize> {
        hashed_slot(ino, count)
    }

    /// Inode `ino`'s record, if cached.
    pub(super) fn get(&self, ino: u64) -> Option<Inode> {
        with_lookups(self.slots, |slots, _| {
            match slots.get(Self::slot(ino, slots.len())?) {
                Some(Some((cached, inode))) if *cached == ino => Some(*inode),
                _ => None,
            }
        })
        .flatten()
    }

    /// Keeps `inode` as inode `ino`'s committed record.
    pub(super) fn put(&self, ino: u64, inode: &Inode) {
        with_lookups(self.slots, |slots, _| {
            let count = slots.len();
            if let Some(slot) = Self::slot(ino, count).and_then(|i| slots.get_mut(i)) {
                *slot = Some((ino, *inode));
            }
        });
    }

    /// Forgets every record, and every mapping (they were looked up
    /// through records).
    pub(super) fn clear(&self) {
        with_lookups(self.slots, |inodes, mappings| {
            inodes.fill(None);
            mappings.fill(None);
        });
    }

    /// Keeps the records a committed transaction wrote ([`Touched`]),
    /// after [`Self::forget`].
    pub(super) fn put_written(&self, touched: &Touched) {
        for (ino, inode) in touched.written.iter().flatten() {
            self.put(*ino, inode);
        }
    }

    /// Forgets the records of the inodes a transaction `touched`, and the
    /// mappings of those whose trees it changed or records it cleared
    /// (all of them if it lost count or changed sharing).
    pub(super) fn forget(&self, touched: &Touched) {
        let Some(inos) = touched.inodes() else {
            self.clear();
            return;
        };
        if inos.is_empty() {
            return;
        }
        with_lookups(self.slots, |slots, mappings| {
            let count = slots.len();
            for &ino in inos {
                if let Some(slot) = Self::slot(ino, count).and_then(|i| slots.get_mut(i)) {
                    if matches!(slot, Some((cached, _)) if *cached == ino) {
                        *slot = None;
                    }
                }
            }
            // A file's runs are spread over slots by region: look at each,
            // unless only records changed (a write's times, a create's new
            // inode: no run of theirs changed).
            if touched.trees == 0 {
                return;
            }
            for slot in mappings {
                if matches!(slot, Some((cached, _)) if touched.tree_changed(*cached)) {
                    *slot = None;
                }
            }
        });
    }
}

/// Inodes whose records the lookup caches may have kept.
const TOUCHED_INODES: usize = 8;
// `Touched::trees` has a bit per inode.
const _: () = assert!(TOUCHED_INODES <= u8::BITS as usize);

/// Records a transaction wrote that the cache gets once it committed: a
/// create's directory and new inode, an unlink's directory and victim, a
/// fault's file. Each is read again right after the call.
const WRITTEN_RECORDS: usize = 2;

/// The inodes a transaction changed: whose records it wrote or cleared,
/// whose trees it changed. What the lookup caches say about any other
/// inode stays true after it, with one exception the transaction says
/// with [`Self::all`]: a change of reference counts changes whether other
/// files' blocks are shared (a reflink's source is not written). A run
/// depends on the inode's tree only (its root changes with the tree, its
/// type never), so the mappings of an inode whose record alone changed
/// stay true.
#[derive(Default)]
pub(super) struct Touched {
    inodes: [u64; TOUCHED_INODES],
    len: usize,
    /// Bit `i`: the tree of `inodes[i]` changed, or its record was cleared
    /// (the number may name another file next).
    trees: u8,
    all: bool,
    /// The last record written of the first inodes written, as the
    /// transaction leaves them.
    written: [Option<(u64, Inode)>; WRITTEN_RECORDS],
}

impl Touched {
    /// Notes that inode `ino`'s record changed; its index among the
    /// inodes noted, `None` once they are too many.
    fn add(&mut self, ino: u64) -> Option<usize> {
        if self.all {
            return None;
        }
        let known = self.inodes.get(..self.len)?.iter().position(|&i| i == ino);
        if known.is_some() {
            return known;
        }
        match self.inodes.get_mut(self.len) {
            Some(slot) => {
                *slot = ino;
                self.len += 1;
                Some(self.len - 1)
            }
            None => {
                self.all = true;
                None
            }
        }
    }

    /// Notes that inode `ino`'s tree is opened for change (its runs may
    /// change).
    pub(super) fn changing_tree(&mut self, ino: u64) {
        if let Some(i) = self.add(ino) {
            self.trees |= 1 << i;
        }
    }

    /// Whether the runs of inode `ino` may have changed.
    fn tree_changed(&self, ino: u64) -> bool {
        self.all
            || self
                .inodes
                .iter()
                .take(self.len)
                .zip(0..)
                .any(|(&i, bit)| i == ino && self.trees & 1 << bit != 0)
    }

    /// Notes that inode `ino`'s record is now `inode`.
    pub(super) fn wrote(&mut self, ino: u64, inode: &Inode) {
        self.add(ino);
        let kept = self
            .written
            .iter()
            .position(|slot| matches!(slot, Some((kept, _)) if *kept == ino))
            .or_else(|| self.written.iter().position(Option::is_none));
        if let Some(slot) = kept.and_then(|i| self.written.get_mut(i)) {
            *slot = Some((ino, *inode));
        }
    }

    /// Notes that inode `ino`'s record was cleared (its slot freed).
    pub(super) fn cleared(&mut self, ino: u64) {
        self.changing_tree(ino);
        for slot in &mut self.written {
            if matches!(slot, Some((kept, _)) if *kept == ino) {
                *slot = None;
            }
        }
    }

    /// Whether inode `ino`'s record, slot or tree may have changed.
    pub(super) fn may_have_changed(&self, ino: u64) -> bool {
        self.inodes().map_or(true, |inos| inos.contains(&ino))
    }

    /// Notes a change that may concern any inode.
    pub(super) fn all(&mut self) {
        self.all = true;
    }

    /// The inodes touched, or `None` for any.
    fn inodes(&self) -> Option<&[u64]> {
        if self.all {
            None
        } else {
            self.inodes.get(..self.len)
        }
    }
}

/// Runs of files' blocks as the committed state maps them
/// (`Volume::map_read`): a write(2) or a fault on allocated blocks looked
/// them up in the extent and refcount trees each time (twice for a
/// write). Like [`InodeCache`], a file's runs are forgotten after every
/// transaction that changed its record or its extent tree, and all of
/// them after one that changed reference counts; a run is
/// cached as the lookup found it (one kind, one sharing state, contiguous
/// on the device, to the end of its 2 MiB region at most), and a query is
/// answered only if it lies inside a cached run, so the answer is the
/// lookup's. Direct-mapped by inode and 2 MiB region.
#[derive(Clone, Copy)]
pub(super) struct MappingCache<'a> {
    slots: &'a dyn LookupSlots,
}

impl<'a> MappingCache<'a> {
    /// A cache in `slots`.
    pub(super) fn new(slots: &'a dyn LookupSlots) -> Self {
        Self { slots }
    }

    fn slot(ino: u64, file_block: u64, count: usize) -> Option<usize> {
        hashed_slot(
            ino.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (file_block / CHUNK_BLOCKS),
            count,
        )
    }

    /// The mapping of `file_block..+len` of inode `ino`, if a cached run
    /// covers all of it.
    pub(super) fn get(&self, ino: u64, file_block: u64, len: u64) -> Option<Mapping> {
        let cached = with_lookups(self.slots, |_, slots| {
            slots
                .get(Self::slot(ino, file_block, slots.len())?)
                .copied()
                .flatten()
        });
        let (cached_ino, run) = cached.flatten()?;
        let end = file_block.checked_add(len)?;
        if cached_ino != ino
            || file_block < run.file_block
            || end > run.file_block.checked_add(run.len)?
        {
            return None;
        }
        let physical = match run.kind {
            MapKind::Hole => 0,
            _ => run.physical.checked_add(file_block - run.file_block)?,
        };
        Some(Mapping {
            file_block,
            len,
            physical,
            ..run
        })
    }

    /// Keeps `run` (as the committed state maps it) for inode `ino`.
    pub(super) fn put(&self, ino: u64, run: &Mapping) {
        with_lookups(self.slots, |_, slots| {
            let count = slots.len();
            let slot = Self::slot(ino, run.file_block, count).and_then(|i| slots.get_mut(i));
            if let Some(slot) = slot {
                *slot = Some((ino, *run));
            }
        });
    }
}
