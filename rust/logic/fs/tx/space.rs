// SPDX-License-Identifier: GPL-2.0

//! A transaction's blocks: allocation from the free-space bitmap and its
//! per-chunk summary (never a poisoned block), and frees given back only
//! at commit.

use crate::logic::format::btree::Nodes;
use crate::logic::fs::{Damage, Error, Media, MAX_DEFERRED};

use core::sync::atomic::{AtomicU64, Ordering};

use super::{space_error, Committed, SpaceState, Tx};
use crate::logic::format::{
    layout::Layout,
    space::{Extent, Space, SpaceStore},
    BLOCK_SIZE, CHUNK_BLOCKS,
};

impl<M: Media> Tx<'_, M> {
    /// Bitmap word `index` as the device has it.
    fn media_word(&self, index: u64) -> Result<u64, Error> {
        let (block, offset) = bitmap_word(&self.layout, index)?;
        let mut word = [0u8; 8];
        self.read(block, offset, &mut word)?;
        Ok(u64::from_le_bytes(word))
    }

    /// Poisoned blocks of chunk `chunk` that are free on the device (the
    /// allocator sees them as used).
    fn poisoned_free(&self, chunk: u64) -> Result<u32, Error> {
        if self.poisoned.is_empty() {
            return Ok(0);
        }
        let words = CHUNK_BLOCKS / 64;
        let mut count = 0;
        for index in chunk * words..(chunk + 1) * words {
            let mask = self.poisoned.word_mask(index);
            if mask != 0 {
                count += (mask & !self.media_word(index)?).count_ones();
            }
        }
        Ok(count)
    }
}

/// Most chunks kept for files' regions at once.
const RESERVATIONS: usize = 256;

/// Words of [`crate::logic::fs::Scratch::reservations`]: a count, then
/// `(chunk, ino)` pairs.
pub const RESERVATION_WORDS: usize = 1 + 2 * RESERVATIONS;

/// Chunks kept for the 2 MiB regions of open files (in memory only): a
/// region that took a whole chunk for its first blocks finds the rest of
/// the chunk free when its next blocks come, in whatever order, because
/// packed allocations go to other chunks while they can. A file's
/// reservations end when it is closed or evicted; under space pressure the
/// allocator uses reserved chunks too (Documentation/oxdax/allocator.rst).
///
/// Kept in the scratch memory's words ([`crate::logic::fs::Scratch::reservations`]):
/// a count, then `(chunk, ino)` pairs sorted by chunk (a chunk's first
/// block), for the allocator's lookups. They are the space lock's: a
/// reader shows the [`SpaceState`] it holds, a writer the state it holds
/// to change (`space_lock.rs`). The words are atomics only so that they
/// can be shared; the lock orders every access.
pub(in crate::logic::fs) struct Reservations<'w> {
    words: &'w [AtomicU64],
}

impl<'w> Reservations<'w> {
    /// The reservations in `words`, read with the space lock held.
    pub(in crate::logic::fs) fn new(words: &'w [AtomicU64], _locked: &'w SpaceState) -> Self {
        Self { words }
    }

    fn word(&self, i: usize) -> u64 {
        self.words.get(i).map_or(0, |w| w.load(Ordering::Relaxed))
    }

    fn room(&self) -> usize {
        self.words.len().saturating_sub(1) / 2
    }

    fn len(&self) -> usize {
        usize::try_from(self.word(0)).map_or(self.room(), |n| n.min(self.room()))
    }

    /// Entry `i`: `(chunk, ino)`.
    fn entry(&self, i: usize) -> (u64, u64) {
        (self.word(1 + 2 * i), self.word(2 + 2 * i))
    }

    /// Where `chunk` is, or would go.
    fn search(&self, chunk: u64) -> Result<usize, usize> {
        let (mut low, mut high) = (0, self.len());
        while low < high {
            let mid = low + (high - low) / 2;
            match self.entry(mid).0.cmp(&chunk) {
                core::cmp::Ordering::Less => low = mid + 1,
                core::cmp::Ordering::Greater => high = mid,
                core::cmp::Ordering::Equal => return Ok(mid),
            }
        }
        Err(low)
    }

    /// Whether the chunk starting at block `chunk` is kept for a file.
    pub(in crate::logic::fs) fn contains(&self, chunk: u64) -> bool {
        self.search(chunk).is_ok()
    }

    /// Whether no chunk is kept for any file.
    pub(in crate::logic::fs) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether one more can be kept.
    pub(in crate::logic::fs) fn has_room(&self) -> bool {
        self.len() < self.room()
    }
}

/// [`Reservations`] to change, with the space lock held.
pub(in crate::logic::fs) struct ReservationsMut<'w> {
    kept: Reservations<'w>,
}

impl<'w> ReservationsMut<'w> {
    /// The reservations in `words`, to change with the space lock held.
    pub(in crate::logic::fs) fn new(words: &'w [AtomicU64], _locked: &'w mut SpaceState) -> Self {
        Self {
            kept: Reservations { words },
        }
    }

    fn set_word(&mut self, i: usize, value: u64) {
        if let Some(word) = self.kept.words.get(i) {
            word.store(value, Ordering::Relaxed);
        }
    }

    fn set(&mut self, i: usize, (chunk, ino): (u64, u64)) {
        self.set_word(1 + 2 * i, chunk);
        self.set_word(2 + 2 * i, ino);
    }

    /// Keeps the chunk starting at block `chunk` for inode `ino` (nothing
    /// if there is no room).
    pub(in crate::logic::fs) fn add(&mut self, chunk: u64, ino: u64) {
        let Err(at) = self.kept.search(chunk) else {
            return;
        };
        if !self.kept.has_room() {
            return;
        }
        let len = self.kept.len();
        for i in (at..len).rev() {
            let entry = self.kept.entry(i);
            self.set(i + 1, entry);
        }
        self.set(at, (chunk, ino));
        self.set_word(0, len as u64 + 1);
    }

    /// Ends the reservations of inode `ino`.
    pub(in crate::logic::fs) fn release(&mut self, ino: u64) {
        let mut kept = 0;
        for i in 0..self.kept.len() {
            let entry = self.kept.entry(i);
            if entry.1 != ino {
                self.set(kept, entry);
                kept += 1;
            }
        }
        self.set_word(0, kept as u64);
    }
}

/// Chunks a transaction took for regions, kept once it commits.
#[derive(Clone, Copy, Default)]
pub(in crate::logic::fs) struct Taken {
    chunks: [(u64, u64); 4],
    len: usize,
}

impl Taken {
    /// Whether the chunk starting at `chunk` is one of them.
    fn contains(&self, chunk: u64) -> bool {
        self.chunks.iter().take(self.len).any(|e| e.0 == chunk)
    }

    /// Each `(chunk, ino)`.
    pub(in crate::logic::fs) fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.chunks.iter().take(self.len).copied()
    }
}

impl<M: Media> SpaceStore for Tx<'_, M> {
    type Error = Error;
    fn reserved(&self, chunk: u64) -> bool {
        let start = chunk * CHUNK_BLOCKS;
        #[cfg(test)]
        assert!(
            self.space.state().is_some(),
            "reservations read without the space lock"
        );
        // (Without the lock nothing is allocated: every chunk reads as kept.)
        self.held_space().map_or(true, |state| {
            Reservations::new(self.reservation_words, state).contains(start)
        }) || self.taken.contains(start)
    }
    fn word(&self, index: u64) -> Result<u64, Error> {
        // A chunk's bitmap words are its own (512 blocks = 8 words), so a
        // hidden chunk's words are never written back with these bits.
        let chunk = Some(index * 64 / CHUNK_BLOCKS);
        if self.hidden_chunk == chunk || self.avoided_chunk == chunk {
            return Ok(u64::MAX);
        }
        Ok(self.media_word(index)? | self.poisoned.word_mask(index))
    }
    fn set_word(&mut self, index: u64, value: u64) -> Result<(), Error> {
        #[cfg(test)]
        assert!(
            self.space.state().is_some(),
            "a bitmap change without the space lock"
        );
        // Poisoned blocks free on the device stay free there: only the
        // allocator's view has them used.
        let poisoned = self.poisoned.word_mask(index);
        let keep_free = if poisoned == 0 {
            0
        } else {
            poisoned & !self.media_word(index)?
        };
        let (block, offset) = bitmap_word(&self.layout, index)?;
        self.write_at(block, offset, 8)?
            .copy_from_slice(&(value & !keep_free).to_le_bytes());
        Ok(())
    }
    fn chunk_free(&self, chunk: u64) -> Result<u32, Error> {
        if self.hidden_chunk == Some(chunk) || self.avoided_chunk == Some(chunk) {
            return Ok(0);
        }
        let (block, offset) = summary_entry(&self.layout, chunk)?;
        let mut free = [0u8; 4];
        self.read(block, offset, &mut free)?;
        Ok(u32::from_le_bytes(free).saturating_sub(self.poisoned_free(chunk)?))
    }
    fn set_chunk_free(&mut self, chunk: u64, free: u32) -> Result<(), Error> {
        #[cfg(test)]
        assert!(
            self.space.state().is_some(),
            "a summary change without the space lock"
        );
        // The count the device keeps includes the hidden poisoned blocks
        // (`set_word` already left their bits as the device has them).
        let free = free.saturating_add(self.poisoned_free(chunk)?);
        let (block, offset) = summary_entry(&self.layout, chunk)?;
        let mut before = [0u8; 4];
        self.read(block, offset, &mut before)?;
        self.chunk_moves.moved(u32::from_le_bytes(before), free);
        self.write_at(block, offset, 4)?
            .copy_from_slice(&free.to_le_bytes());
        Ok(())
    }
}

/// The committed free-space maps, read only (counts for debugfs and
/// fsck); a write is refused.
pub(in crate::logic::fs) struct CommittedSpace<'r, 'a, M: Media> {
    pub(in crate::logic::fs) reader: &'r Committed<'a, M>,
    pub(in crate::logic::fs) layout: Layout,
}

impl<M: Media> SpaceStore for CommittedSpace<'_, '_, M> {
    type Error = Error;
    fn word(&self, index: u64) -> Result<u64, Error> {
        let (block, offset) = bitmap_word(&self.layout, index)?;
        let mut word = [0u8; 8];
        self.reader.read(block, offset, &mut word)?;
        Ok(u64::from_le_bytes(word))
    }
    fn set_word(&mut self, _: u64, _: u64) -> Result<(), Error> {
        Err(Error::ReadOnly)
    }
    fn chunk_free(&self, chunk: u64) -> Result<u32, Error> {
        let (block, offset) = summary_entry(&self.layout, chunk)?;
        let mut free = [0u8; 4];
        self.reader.read(block, offset, &mut free)?;
        Ok(u32::from_le_bytes(free))
    }
    fn set_chunk_free(&mut self, _: u64, _: u32) -> Result<(), Error> {
        Err(Error::ReadOnly)
    }
}

fn bitmap_word(layout: &Layout, index: u64) -> Result<(u64, usize), Error> {
    let per_block = (BLOCK_SIZE / 8) as u64;
    if index / per_block >= layout.bitmap_blocks {
        return Err(Error::Corrupt(index / per_block, Damage::Space));
    }
    Ok((
        layout.bitmap_start + index / per_block,
        (index % per_block) as usize * 8,
    ))
}

fn summary_entry(layout: &Layout, chunk: u64) -> Result<(u64, usize), Error> {
    let per_block = (BLOCK_SIZE / 4) as u64;
    if chunk / per_block >= layout.summary_blocks {
        return Err(Error::Corrupt(chunk / per_block, Damage::Space));
    }
    Ok((
        layout.summary_start + chunk / per_block,
        (chunk % per_block) as usize * 4,
    ))
}

impl<'a, M: Media> Tx<'a, M> {
    /// Allocates up to `want` blocks near `goal`; the caller records their
    /// owner in the reverse map.
    pub(in crate::logic::fs) fn allocate_data(
        &mut self,
        want: u64,
        goal: u64,
    ) -> Result<Extent, Error> {
        self.allocate(want, goal, false)
    }

    /// Allocates exactly `len` contiguous blocks (at most a chunk) near
    /// `goal`; the caller records their owner in the reverse map.
    pub(in crate::logic::fs) fn allocate_contiguous(
        &mut self,
        len: u64,
        goal: u64,
    ) -> Result<Extent, Error> {
        self.allocate(len, goal, true)
    }

    /// The first block of a free run of `align` blocks that starts on a
    /// multiple of `align`, if there is one (a goal, nothing allocated).
    pub(in crate::logic::fs) fn aligned_free_run(
        &mut self,
        align: u64,
    ) -> Result<Option<u64>, Error> {
        self.hold_space();
        let layout = self.layout;
        Space::new(self, &layout)
            .aligned_free_run(align)
            .map_err(space_error)
    }

    /// Allocates up to `want` blocks in partly used chunks near `goal`,
    /// never in a whole free chunk nor one kept for a region (compaction's
    /// moves); `NoSpace` if none has a free block.
    pub(in crate::logic::fs) fn allocate_packed(
        &mut self,
        want: u64,
        goal: u64,
    ) -> Result<Extent, Error> {
        if self.deferred_room() < 4 {
            return Err(Error::NoSpace);
        }
        self.hold_space();
        let layout = self.layout;
        let extent = Space::new(self, &layout)
            .allocate_packed(want, goal)
            .map_err(space_error)?;
        self.sb.free_blocks = self.sb.free_blocks.saturating_sub(extent.len);
        Ok(extent)
    }

    /// Allocates the free run starting exactly at `start`, up to `want`
    /// blocks (`None` if `start` is taken); the caller records the owner.
    pub(in crate::logic::fs) fn allocate_at(
        &mut self,
        start: u64,
        want: u64,
    ) -> Result<Option<Extent>, Error> {
        if self.deferred_room() < 4 {
            return Err(Error::NoSpace);
        }
        self.hold_space();
        let layout = self.layout;
        let extent = Space::new(self, &layout)
            .allocate_at(start, want)
            .map_err(space_error)?;
        if let Some(extent) = extent {
            self.sb.free_blocks = self.sb.free_blocks.saturating_sub(extent.len);
        }
        Ok(extent)
    }

    /// Whether a region may take a chunk of its own now (the transaction
    /// and the volume can remember one more).
    pub(in crate::logic::fs) fn may_take_chunk(&self) -> bool {
        self.taken.len < self.taken.chunks.len()
            && self
                .held_space()
                .is_some_and(|state| Reservations::new(self.reservation_words, state).has_room())
    }

    /// Allocates blocks `offset..offset + len` of a whole free chunk near
    /// `goal` and keeps the rest of the chunk for inode `ino` (from the
    /// commit on); `None` if no chunk is free whole or none can be kept.
    pub(in crate::logic::fs) fn allocate_in_chunk(
        &mut self,
        goal: u64,
        offset: u64,
        len: u64,
        ino: u64,
    ) -> Result<Option<Extent>, Error> {
        if self.deferred_room() < 4 {
            return Ok(None);
        }
        self.hold_space();
        if !self.may_take_chunk() {
            return Ok(None);
        }
        let layout = self.layout;
        let extent = Space::new(self, &layout)
            .allocate_in_chunk(goal, offset, len)
            .map_err(space_error)?;
        if let Some(extent) = extent {
            self.sb.free_blocks = self.sb.free_blocks.saturating_sub(extent.len);
            let chunk = extent.start - extent.start % CHUNK_BLOCKS;
            if let Some(slot) = self.taken.chunks.get_mut(self.taken.len) {
                *slot = (chunk, ino);
                self.taken.len += 1;
            }
        }
        Ok(extent)
    }

    pub(super) fn allocate(
        &mut self,
        want: u64,
        goal: u64,
        contiguous: bool,
    ) -> Result<Extent, Error> {
        if self.deferred_room() < 4 {
            return Err(Error::NoSpace);
        }
        self.hold_space();
        let layout = self.layout;
        let mut space = Space::new(self, &layout);
        let extent = if contiguous {
            space.allocate_contiguous(want, goal)
        } else {
            space.allocate(want, goal)
        }
        .map_err(space_error)?;
        self.sb.free_blocks = self.sb.free_blocks.saturating_sub(extent.len);
        Ok(extent)
    }

    /// Frees `extent` at commit; the caller removes its reverse-map record
    /// (`rmap_remove`).
    pub(in crate::logic::fs) fn free(&mut self, extent: Extent) -> Result<(), Error> {
        if self.free_count >= MAX_DEFERRED {
            return Err(Error::NoSpace);
        }
        let slot = self.free_words(self.free_count).ok_or(Error::NoSpace)?;
        slot.copy_from_slice(&[extent.start, extent.len]);
        self.free_count += 1;
        Ok(())
    }

    /// Gives the deferred frees back to the free-space maps.
    pub(super) fn apply_frees(&mut self) -> Result<(), Error> {
        // The chunk compaction empties gets its blocks back now.
        self.avoided_chunk = None;
        let layout = self.layout;
        let count = self.free_count;
        self.free_count = 0;
        for i in 0..count {
            let extent = match self.free_words(i) {
                Some(&mut [start, len]) => Extent { start, len },
                _ => return Err(Error::NoSpace),
            };
            Space::new(self, &layout)
                .free(extent)
                .map_err(space_error)?;
            self.checked.forget(extent.start, extent.len);
            self.cache.forget(extent.start, extent.len);
            let end = extent.start.saturating_add(extent.len);
            for (index, &block) in self.tags.iter().enumerate().take(self.used) {
                if (extent.start..end).contains(&block) {
                    self.freed_shadows |= 1 << index;
                }
            }
            self.sb.free_blocks = self.sb.free_blocks.saturating_add(extent.len);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_stay_sorted_and_end_per_file() {
        let words: std::vec::Vec<AtomicU64> =
            (0..RESERVATION_WORDS).map(|_| AtomicU64::new(0)).collect();
        let mut state = SpaceState::default();
        let mut r = ReservationsMut::new(&words, &mut state);
        for (i, chunk) in [5u64, 1, 9, 3, 7].into_iter().enumerate() {
            r.add(chunk * CHUNK_BLOCKS, 100 + i as u64 % 2);
        }
        r.add(3 * CHUNK_BLOCKS, 42);
        assert_eq!(r.kept.len(), 5);
        assert!((0..4).all(|i| r.kept.entry(i).0 < r.kept.entry(i + 1).0));
        assert!(r.kept.contains(7 * CHUNK_BLOCKS) && !r.kept.contains(2 * CHUNK_BLOCKS));
        r.release(100);
        assert_eq!(r.kept.len(), 2);
        assert!(r.kept.contains(1 * CHUNK_BLOCKS) && r.kept.contains(3 * CHUNK_BLOCKS));
        assert!(!r.kept.contains(5 * CHUNK_BLOCKS));
        for chunk in 10..10 + RESERVATIONS as u64 {
            r.add(chunk * CHUNK_BLOCKS, 7);
        }
        assert!(!r.kept.has_room() && r.kept.len() == RESERVATIONS);
        // A count the words cannot hold reads as what they hold.
        words[0].store(u64::MAX, Ordering::Relaxed);
        assert_eq!(Reservations::new(&words, &state).len(), RESERVATIONS);
    }
}
