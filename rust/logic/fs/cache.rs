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

use core::cell::RefCell;

use super::{Damage, Error, MapKind, Mapping, Media, MediaFault};
use crate::logic::format::{inode::Inode, BLOCK_SIZE, CHUNK_BLOCKS};

/// Fewest slots a mount's cache has (4 MiB of blocks; the host tools'
/// and tests' cache).
pub const MIN_CACHE_SLOTS: usize = 1024;

/// Most slots a mount's cache has (32 MiB of blocks).
pub const MAX_CACHE_SLOTS: usize = 8192;

/// Slots of the metadata cache of a mount on a device of `device_bytes`:
/// one per 128 blocks of the device (8 MiB of DRAM per GiB), within
/// [`MIN_CACHE_SLOTS`] and [`MAX_CACHE_SLOTS`]. Metadata grows with what
/// the device holds: a directory of 40,000 names is 16 MiB of leaves (a
/// leaf holds 14 fixed-size entries), and with a fixed 4 MiB each unlink
/// in it copied a leaf from the device again.
pub fn cache_slots_for(device_bytes: u64) -> usize {
    let blocks = device_bytes / BLOCK_SIZE as u64;
    usize::try_from(blocks / 128)
        .unwrap_or(MAX_CACHE_SLOTS)
        .clamp(MIN_CACHE_SLOTS, MAX_CACHE_SLOTS)
}

/// The memory of a cache: its blocks and their tags (block number + 1; 0
/// is an empty slot), of equal length.
pub trait CacheSlots {
    /// The blocks and their tags.
    fn slots(&mut self) -> (&mut [[u8; BLOCK_SIZE]], &mut [u64]);
}

/// Blocks of [`Media`] as last copied from it or written to it.
#[derive(Clone, Copy)]
pub(super) struct BlockCache<'a> {
    slots: Option<&'a RefCell<dyn CacheSlots + 'a>>,
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
    pub(super) fn new(slots: &'a RefCell<dyn CacheSlots + 'a>) -> Self {
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
        let copied = self.with_block(media, block, |data| {
            buf.copy_from_slice(data.get(offset..end).ok_or(Error::Invalid)?);
            Ok(())
        })?;
        copied.unwrap_or(Err(Error::Invalid))
    }

    /// Calls `look` with block `block` as the cache holds it (copied from
    /// `media` first if it does not); `false` without a cache (`look` is
    /// not called). `look` must not read the cache: it is borrowed.
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
        let Some(cell) = self.slots else {
            return Ok(None);
        };
        // Never held across a call that reads again: cannot be taken.
        let mut store = cell.try_borrow_mut().map_err(|_| Error::Invalid)?;
        let (slots, tags) = store.slots();
        let i = Self::slot(block, slots.len().min(tags.len())).ok_or(Error::Invalid)?;
        let (Some(data), Some(tag)) = (slots.get_mut(i), tags.get_mut(i)) else {
            return Err(Error::Invalid);
        };
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
        Ok(Some(use_block(data)))
    }

    /// Records that block `block` now holds `content` on the media.
    pub(super) fn put(&self, block: u64, content: &[u8; BLOCK_SIZE]) {
        let Some(mut store) = self.slots.and_then(|c| c.try_borrow_mut().ok()) else {
            return;
        };
        let (slots, tags) = store.slots();
        let Some(i) = Self::slot(block, slots.len().min(tags.len())) else {
            return;
        };
        if let (Some(data), Some(tag)) = (slots.get_mut(i), tags.get_mut(i)) {
            data.copy_from_slice(content);
            *tag = block.wrapping_add(1);
        }
    }

    /// Block `block` changed on the media by `data` at byte `offset`,
    /// from the committed content the cache holds if it holds the block:
    /// the cached copy is changed the same way (a commit's changed runs
    /// cost their bytes, not a block's copy). Whether it held the block.
    pub(super) fn patch(&self, block: u64, offset: usize, data: &[u8]) -> bool {
        let Some(mut store) = self.slots.and_then(|c| c.try_borrow_mut().ok()) else {
            return false;
        };
        let (slots, tags) = store.slots();
        let Some(i) = Self::slot(block, slots.len().min(tags.len())) else {
            return false;
        };
        if tags.get(i) != Some(&block.wrapping_add(1)) {
            return false;
        }
        let end = offset.checked_add(data.len());
        match slots
            .get_mut(i)
            .zip(end)
            .and_then(|(slot, end)| slot.get_mut(offset..end))
        {
            Some(bytes) => {
                bytes.copy_from_slice(data);
                true
            }
            None => {
                // Not a change of this block: its copy is not trusted.
                if let Some(tag) = tags.get_mut(i) {
                    *tag = 0;
                }
                false
            }
        }
    }

    /// Whether block `block` is cached.
    pub(super) fn holds(&self, block: u64) -> bool {
        let Some(mut store) = self.slots.and_then(|c| c.try_borrow_mut().ok()) else {
            return false;
        };
        let (slots, tags) = store.slots();
        Self::slot(block, slots.len().min(tags.len()))
            .and_then(|i| tags.get(i))
            .is_some_and(|&tag| tag == block.wrapping_add(1))
    }

    /// The cached copy of block `block`, if any (host checks).
    #[cfg(test)]
    pub(super) fn cached(&self, block: u64) -> Option<[u8; BLOCK_SIZE]> {
        let mut store = self.slots?.try_borrow_mut().ok()?;
        let (slots, tags) = store.slots();
        let i = Self::slot(block, slots.len().min(tags.len()))?;
        (tags.get(i) == Some(&block.wrapping_add(1)))
            .then(|| slots.get(i).copied())
            .flatten()
    }

    /// Forgets block `block` (one slot to look at).
    pub(super) fn forget_block(&self, block: u64) {
        self.forget(block, 1);
    }

    /// Forgets blocks `start..start + len`. Direct-mapped, a block can only
    /// be in its own slot: a range shorter than the cache looks at its
    /// blocks' slots (most freed extents are a few blocks: a tree node, a
    /// small file's data), a longer one at every tag.
    pub(super) fn forget(&self, start: u64, len: u64) {
        let Some(mut store) = self.slots.and_then(|c| c.try_borrow_mut().ok()) else {
            return;
        };
        let (slots, tags) = store.slots();
        let count = slots.len().min(tags.len());
        let end = start.saturating_add(len);
        if end - start < count as u64 {
            for block in start..end {
                let slot = Self::slot(block, count).and_then(|i| tags.get_mut(i));
                if let Some(tag) = slot.filter(|tag| **tag == block.wrapping_add(1)) {
                    *tag = 0;
                }
            }
            return;
        }
        for tag in tags.iter_mut() {
            let block = tag.wrapping_sub(1);
            if *tag != 0 && (start..end).contains(&block) {
                *tag = 0;
            }
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

    struct Slots {
        blocks: Vec<[u8; BLOCK_SIZE]>,
        tags: Vec<u64>,
    }

    impl CacheSlots for Slots {
        fn slots(&mut self) -> (&mut [[u8; BLOCK_SIZE]], &mut [u64]) {
            (&mut self.blocks, &mut self.tags)
        }
    }

    /// Forgetting a range by its blocks' slots leaves the tags a walk of
    /// every tag leaves, for short and long ranges, at any offset.
    #[test]
    fn forgetting_by_slot_matches_a_walk_of_every_tag() {
        const SLOTS: usize = 64;
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
            let cell = RefCell::new(Slots {
                blocks: vec![[0u8; BLOCK_SIZE]; SLOTS],
                tags: tags.clone(),
            });
            let cache = BlockCache::new(&cell);
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
            let kept = cell.borrow().tags.clone();
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
/// [`MappingCache`]).
pub trait LookupSlots {
    /// [`INODE_CACHE_SLOTS`] inode slots.
    fn inodes(&mut self) -> &mut [InodeSlot];
    /// [`MAPPING_CACHE_SLOTS`] mapping slots.
    fn mappings(&mut self) -> &mut [MappingSlot];
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
    slots: &'a RefCell<dyn LookupSlots + 'a>,
}

impl<'a> InodeCache<'a> {
    /// A cache in `slots` ([`INODE_CACHE_SLOTS`] of them, `None` at mount).
    pub(super) fn new(slots: &'a RefCell<dyn LookupSlots + 'a>) -> Self {
        Self { slots }
    }

    fn slot(ino: u64, count: usize) -> Option<usize> {
        hashed_slot(ino, count)
    }

    /// Inode `ino`'s record, if cached.
    pub(super) fn get(&self, ino: u64) -> Option<Inode> {
        let mut store = self.slots.try_borrow_mut().ok()?;
        let slots = store.inodes();
        match slots.get(Self::slot(ino, slots.len())?) {
            Some(Some((cached, inode))) if *cached == ino => Some(*inode),
            _ => None,
        }
    }

    /// Keeps `inode` as inode `ino`'s committed record.
    pub(super) fn put(&self, ino: u64, inode: &Inode) {
        if let Ok(mut store) = self.slots.try_borrow_mut() {
            let slots = store.inodes();
            let count = slots.len();
            if let Some(slot) = Self::slot(ino, count).and_then(|i| slots.get_mut(i)) {
                *slot = Some((ino, *inode));
            }
        }
    }

    /// Forgets every record, and every mapping (they were looked up
    /// through records).
    pub(super) fn clear(&self) {
        if let Ok(mut store) = self.slots.try_borrow_mut() {
            store.inodes().fill(None);
            store.mappings().fill(None);
        }
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
        let Ok(mut store) = self.slots.try_borrow_mut() else {
            return;
        };
        let slots = store.inodes();
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
        for slot in store.mappings() {
            if matches!(slot, Some((cached, _)) if touched.tree_changed(*cached)) {
                *slot = None;
            }
        }
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
    slots: &'a RefCell<dyn LookupSlots + 'a>,
}

impl<'a> MappingCache<'a> {
    /// A cache in `slots`.
    pub(super) fn new(slots: &'a RefCell<dyn LookupSlots + 'a>) -> Self {
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
        let mut store = self.slots.try_borrow_mut().ok()?;
        let slots = store.mappings();
        let (cached_ino, run) = (*slots.get(Self::slot(ino, file_block, slots.len())?)?)?;
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
        if let Ok(mut store) = self.slots.try_borrow_mut() {
            let slots = store.mappings();
            let count = slots.len();
            let slot = Self::slot(ino, run.file_block, count).and_then(|i| slots.get_mut(i));
            if let Some(slot) = slot {
                *slot = Some((ino, *run));
            }
        }
    }
}
