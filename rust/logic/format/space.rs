// SPDX-License-Identifier: GPL-2.0

//! Free space: the bitmap (one bit per block, set = in use) and the summary
//! (free blocks per 2 MiB chunk), and the allocation policy over them.
//!
//! Policy (Documentation/oxdax/allocator.rst): whole free 2 MiB chunks are
//! what PMD mappings need, so they are kept whole as long as possible.
//!
//! - A request of 2 MiB or more gets whole free chunks when there are any,
//!   as many consecutive ones as it wants.
//! - A smaller request (metadata, small files, the tail of a file that
//!   could not be placed in a chunk of its own) is packed: it gets the first
//!   free run at or after the goal in a chunk that is already partly used,
//!   wrapping around, and breaks a whole free chunk only when no partly used
//!   one has room.
//! - A file that wants a 2 MiB region of its own starts it in a whole free
//!   chunk ([`Space::allocate_in_chunk`], which the store then reserves for
//!   it: packed allocations take reserved chunks last) or extends one it
//!   has at exactly the block that keeps its file offset and device offset
//!   congruent ([`Space::allocate_at`]).
//!
//! An allocation may be shorter than asked; callers loop.
//!
//! The maps are reached through [`SpaceStore`]: a journal transaction in
//! the module, memory in tests and in mkfs.

use super::{layout::Layout, CHUNK_BLOCKS};

/// Storage of the bitmap words and summary entries.
pub trait SpaceStore {
    /// The storage's own error.
    type Error;
    /// Bitmap word `index` (blocks `64 * index ..`, bit `i` = block
    /// `64 * index + i`).
    fn word(&self, index: u64) -> Result<u64, Self::Error>;
    /// Sets bitmap word `index`.
    fn set_word(&mut self, index: u64, value: u64) -> Result<(), Self::Error>;
    /// Free blocks in chunk `chunk`.
    fn chunk_free(&self, chunk: u64) -> Result<u32, Self::Error>;
    /// Sets the free count of chunk `chunk`.
    fn set_chunk_free(&mut self, chunk: u64, free: u32) -> Result<(), Self::Error>;
    /// Whether chunk `chunk` is kept for a file's region: allocations
    /// that are not that region's go elsewhere while they can.
    fn reserved(&self, _chunk: u64) -> bool {
        false
    }
}

/// A run of blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    /// First block.
    pub start: u64,
    /// Number of blocks.
    pub len: u64,
}

/// How many 2 MiB chunks of the data area are free whole, partly used
/// and full ([`Space::chunk_counts`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChunkCounts {
    /// Free whole: a 2 MiB extent can still come from each.
    pub free: u64,
    /// Partly used.
    pub partial: u64,
    /// Full.
    pub full: u64,
}

impl ChunkCounts {
    /// Counts one more chunk with `free` free blocks (in the summary).
    pub fn add(&mut self, free: u32) {
        match u64::from(free) {
            0 => self.full += 1,
            CHUNK_BLOCKS => self.free += 1,
            _ => self.partial += 1,
        }
    }
}

/// Why a space operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpaceError<E> {
    /// The storage failed.
    Store(E),
    /// No free block at all.
    NoSpace,
    /// The extent is empty or not inside the data area.
    OutOfRange,
    /// Freeing a free block or taking a used one: the maps disagree with
    /// the caller (corruption, or a bug).
    Inconsistent {
        /// The block in the wrong state.
        block: u64,
    },
}

type SResult<T, E> = Result<T, SpaceError<E>>;

const WORD_BITS: u64 = 64;

/// The free-space maps of one filesystem.
pub struct Space<'a, S: SpaceStore> {
    store: &'a mut S,
    data_start: u64,
    block_count: u64,
}

impl<'a, S: SpaceStore> Space<'a, S> {
    /// The maps of the filesystem laid out as `layout`.
    pub fn new(store: &'a mut S, layout: &Layout) -> Self {
        Self {
            store,
            data_start: layout.data_start,
            block_count: layout.block_count,
        }
    }

    fn check_range(&self, extent: Extent) -> SResult<(), S::Error> {
        let end = extent
            .start
            .checked_add(extent.len)
            .ok_or(SpaceError::OutOfRange)?;
        if extent.len == 0 || extent.start < self.data_start || end > self.block_count {
            return Err(SpaceError::OutOfRange);
        }
        Ok(())
    }

    fn is_used(&self, block: u64) -> SResult<bool, S::Error> {
        let word = self
            .store
            .word(block / WORD_BITS)
            .map_err(SpaceError::Store)?;
        Ok(word & (1 << (block % WORD_BITS)) != 0)
    }

    /// Sets (`used`) or clears the bits of `extent`, which must all be in
    /// the other state, and updates the summary.
    fn flip(&mut self, extent: Extent, used: bool) -> SResult<(), S::Error> {
        self.check_range(extent)?;
        // Check everything first, so an inconsistent request changes nothing.
        for block in extent.start..extent.start + extent.len {
            if self.is_used(block)? == used {
                return Err(SpaceError::Inconsistent { block });
            }
        }
        // Chunk by chunk: a chunk's summary entry moves by the bits that
        // really changed in its words, read back after they were set. A
        // store may keep some bits as they were (a poisoned block stays in
        // use in the allocator's view when freed) and its summary entry
        // may depend on its words: it is read before them and set after.
        let end = extent.start + extent.len;
        let mut block = extent.start;
        while block < end {
            let chunk = block / CHUNK_BLOCKS;
            let chunk_end = ((chunk + 1) * CHUNK_BLOCKS).min(end);
            let free = self.store.chunk_free(chunk).map_err(SpaceError::Store)?;
            let mut changed = 0u32;
            while block < chunk_end {
                let index = block / WORD_BITS;
                let first = block % WORD_BITS;
                let count = (WORD_BITS - first).min(chunk_end - block);
                let mask = if count == WORD_BITS {
                    u64::MAX
                } else {
                    ((1u64 << count) - 1) << first
                };
                let before = self.store.word(index).map_err(SpaceError::Store)?;
                let word = if used { before | mask } else { before & !mask };
                self.store
                    .set_word(index, word)
                    .map_err(SpaceError::Store)?;
                let after = self.store.word(index).map_err(SpaceError::Store)?;
                changed += ((before ^ after) & mask).count_ones();
                block += count;
            }
            let free = if used {
                free.checked_sub(changed)
            } else {
                free.checked_add(changed)
                    .filter(|&f| u64::from(f) <= CHUNK_BLOCKS)
            }
            .ok_or(SpaceError::Inconsistent { block })?;
            self.store
                .set_chunk_free(chunk, free)
                .map_err(SpaceError::Store)?;
        }
        Ok(())
    }

    /// Marks `extent` in use (mkfs, metadata at known places).
    pub fn mark_used(&mut self, extent: Extent) -> SResult<(), S::Error> {
        self.flip(extent, true)
    }

    /// Gives `extent` back.
    pub fn free(&mut self, extent: Extent) -> SResult<(), S::Error> {
        self.flip(extent, false)
    }

    fn chunks(&self) -> (u64, u64) {
        (
            self.data_start / CHUNK_BLOCKS,
            self.block_count.div_ceil(CHUNK_BLOCKS),
        )
    }

    /// Whether chunk `chunk` is entirely inside the data area and free.
    fn chunk_is_free(&self, chunk: u64) -> SResult<bool, S::Error> {
        let whole = chunk * CHUNK_BLOCKS >= self.data_start
            && (chunk + 1) * CHUNK_BLOCKS <= self.block_count;
        Ok(whole
            && u64::from(self.store.chunk_free(chunk).map_err(SpaceError::Store)?) == CHUNK_BLOCKS)
    }

    /// Allocates up to `want` blocks, near `goal` when possible.
    pub fn allocate(&mut self, want: u64, goal: u64) -> SResult<Extent, S::Error> {
        self.allocate_run(want, goal, 1)
    }

    /// Allocates the free run that starts exactly at block `start`, up to
    /// `want` blocks long; `None` if `start` is in use or outside the data
    /// area.
    pub fn allocate_at(&mut self, start: u64, want: u64) -> SResult<Option<Extent>, S::Error> {
        if want == 0 {
            return Err(SpaceError::OutOfRange);
        }
        if start < self.data_start || start >= self.block_count || self.is_used(start)? {
            return Ok(None);
        }
        let Some(extent) = self.first_free_run(start, start + 1, want, 1, self.block_count)? else {
            return Ok(None);
        };
        self.mark_used(extent)?;
        Ok(Some(extent))
    }

    /// Allocates blocks `offset..offset + len` (inside one chunk) of the
    /// first whole free chunk at or after `goal`'s that is not reserved,
    /// wrapping around; `None` if there is none.
    pub fn allocate_in_chunk(
        &mut self,
        goal: u64,
        offset: u64,
        len: u64,
    ) -> SResult<Option<Extent>, S::Error> {
        if len == 0 || offset + len > CHUNK_BLOCKS {
            return Err(SpaceError::OutOfRange);
        }
        let (first_chunk, end_chunk) = self.chunks();
        let chunk_count = end_chunk - first_chunk;
        let goal_chunk = (goal / CHUNK_BLOCKS).clamp(first_chunk, end_chunk - 1);
        for i in 0..chunk_count {
            let chunk = first_chunk + (goal_chunk - first_chunk + i) % chunk_count;
            if self.chunk_is_free(chunk)? && !self.store.reserved(chunk) {
                let extent = Extent {
                    start: chunk * CHUNK_BLOCKS + offset,
                    len,
                };
                self.mark_used(extent)?;
                return Ok(Some(extent));
            }
        }
        Ok(None)
    }

    /// The free blocks of the data area, as the summary counts them:
    /// O(chunks).
    pub fn free_blocks(&self) -> SResult<u64, S::Error> {
        let (first_chunk, end_chunk) = self.chunks();
        let mut free = 0u64;
        for chunk in first_chunk..end_chunk {
            let in_chunk = self.store.chunk_free(chunk).map_err(SpaceError::Store)?;
            free = free.saturating_add(u64::from(in_chunk));
        }
        Ok(free)
    }

    /// How the data area's chunks stand: free whole, partly used, full.
    /// Chunks the data area covers only in part count as partly used
    /// until full.
    pub fn chunk_counts(&self) -> SResult<ChunkCounts, S::Error> {
        let (first_chunk, end_chunk) = self.chunks();
        let mut counts = ChunkCounts::default();
        for chunk in first_chunk..end_chunk {
            // Only a chunk wholly inside the data area can have every
            // block free.
            counts.add(self.store.chunk_free(chunk).map_err(SpaceError::Store)?);
        }
        Ok(counts)
    }

    /// The first block of the last run of free, unreserved chunks that
    /// starts on a multiple of `align` blocks and is `align` long, if any:
    /// the goal for a file range a PUD could map (1 GiB), whose pieces are
    /// then allocated one after the other there. The last: other big
    /// allocations look from their goal upwards, and wrap around past the
    /// end of the device to its start, so they meet these runs last.
    pub fn aligned_free_run(&self, align: u64) -> SResult<Option<u64>, S::Error> {
        if align < CHUNK_BLOCKS || align % CHUNK_BLOCKS != 0 {
            return Err(SpaceError::OutOfRange);
        }
        let per_run = align / CHUNK_BLOCKS;
        let (first_chunk, end_chunk) = self.chunks();
        let mut chunk = end_chunk - end_chunk % per_run;
        'runs: while chunk >= first_chunk + per_run {
            chunk -= per_run;
            for i in (0..per_run).rev() {
                if !self.chunk_is_free(chunk + i)? || self.store.reserved(chunk + i) {
                    // The next run that could be free ends before this
                    // chunk.
                    chunk = (chunk + i) - (chunk + i) % per_run;
                    continue 'runs;
                }
            }
            return Ok(Some(chunk * CHUNK_BLOCKS));
        }
        Ok(None)
    }

    /// Allocates exactly `len` contiguous blocks (at most a chunk), near
    /// `goal` when possible: for metadata that must be one run. Fails only
    /// when no free run is that long, however many shorter ones there are.
    pub fn allocate_contiguous(&mut self, len: u64, goal: u64) -> SResult<Extent, S::Error> {
        if len > CHUNK_BLOCKS {
            return Err(SpaceError::OutOfRange);
        }
        self.allocate_run(len, goal, len)
    }

    /// Allocates a run of `min..=want` blocks near `goal`.
    fn allocate_run(&mut self, want: u64, goal: u64, min: u64) -> SResult<Extent, S::Error> {
        if want == 0 || min > want {
            return Err(SpaceError::OutOfRange);
        }
        let (first_chunk, end_chunk) = self.chunks();
        let chunk_count = end_chunk - first_chunk;
        let goal_chunk = (goal / CHUNK_BLOCKS).clamp(first_chunk, end_chunk - 1);
        let order = |i: u64| first_chunk + (goal_chunk - first_chunk + i) % chunk_count;

        if want >= CHUNK_BLOCKS {
            for i in 0..chunk_count {
                let chunk = order(i);
                if !self.chunk_is_free(chunk)? || self.store.reserved(chunk) {
                    continue;
                }
                let mut len = CHUNK_BLOCKS;
                while len + CHUNK_BLOCKS <= want - want % CHUNK_BLOCKS
                    && (chunk * CHUNK_BLOCKS + len) / CHUNK_BLOCKS < end_chunk
                    && self.chunk_is_free(chunk + len / CHUNK_BLOCKS)?
                    && !self.store.reserved(chunk + len / CHUNK_BLOCKS)
                {
                    len += CHUNK_BLOCKS;
                }
                let extent = Extent {
                    start: chunk * CHUNK_BLOCKS,
                    len,
                };
                self.mark_used(extent)?;
                return Ok(extent);
            }
        }
        // Packed: partly used chunks first, whole free ones only if none
        // of those has room, chunks reserved for files' regions last.
        self.allocate_in_passes(
            &[(false, false), (true, false), (false, true), (true, true)],
            want,
            goal,
            min,
        )
    }

    /// Allocates up to `want` blocks in partly used chunks that are not
    /// reserved, near `goal`: never breaks a whole free chunk.
    pub fn allocate_packed(&mut self, want: u64, goal: u64) -> SResult<Extent, S::Error> {
        if want == 0 {
            return Err(SpaceError::OutOfRange);
        }
        self.allocate_in_passes(&[(false, false)], want, goal, 1)
    }

    /// A packed run of `min..=want` blocks near `goal`, looking at the
    /// chunks of each `(whole, reserved)` kind in turn.
    fn allocate_in_passes(
        &mut self,
        passes: &[(bool, bool)],
        want: u64,
        goal: u64,
        min: u64,
    ) -> SResult<Extent, S::Error> {
        let (first_chunk, end_chunk) = self.chunks();
        let chunk_count = end_chunk - first_chunk;
        let goal_chunk = (goal / CHUNK_BLOCKS).clamp(first_chunk, end_chunk - 1);
        let order = |i: u64| first_chunk + (goal_chunk - first_chunk + i) % chunk_count;
        for &(whole, reserved) in passes {
            for i in 0..chunk_count {
                let chunk = order(i);
                if self.store.chunk_free(chunk).map_err(SpaceError::Store)? == 0
                    || self.chunk_is_free(chunk)? != whole
                    || self.store.reserved(chunk) != reserved
                {
                    continue;
                }
                // A packed run stays in its chunk (it must not break the
                // whole free chunk after it) and starts a whole chunk it
                // breaks at its beginning, leaving the rest one run.
                let bound = ((chunk + 1) * CHUNK_BLOCKS).min(self.block_count);
                let goal = if whole { chunk * CHUNK_BLOCKS } else { goal };
                let run = self.run_in_chunk(chunk, goal_chunk, goal, want, min, bound)?;
                if let Some(extent) = run {
                    self.mark_used(extent)?;
                    return Ok(extent);
                }
            }
        }
        Err(SpaceError::NoSpace)
    }

    /// The first free run of `min..=want` blocks starting in chunk
    /// `chunk`: at or after `goal` in the goal's chunk, then before it.
    fn run_in_chunk(
        &self,
        chunk: u64,
        goal_chunk: u64,
        goal: u64,
        want: u64,
        min: u64,
        bound: u64,
    ) -> SResult<Option<Extent>, S::Error> {
        let start = (chunk * CHUNK_BLOCKS).max(self.data_start);
        let end = ((chunk + 1) * CHUNK_BLOCKS).min(self.block_count);
        let from = if chunk == goal_chunk {
            goal.clamp(start, end - 1)
        } else {
            start
        };
        if let Some(extent) = self.first_free_run(from, end, want, min, bound)? {
            return Ok(Some(extent));
        }
        if from > start {
            return self.first_free_run(start, from, want, min, bound);
        }
        Ok(None)
    }

    /// The first free run starting in `[from, end)` at least `min` and at
    /// most `want` long, ending at `bound` at the latest (runs may continue
    /// past `end` into the next chunk up to there).
    fn first_free_run(
        &self,
        from: u64,
        end: u64,
        want: u64,
        min: u64,
        bound: u64,
    ) -> SResult<Option<Extent>, S::Error> {
        let mut block = from;
        while block < end {
            if self.is_used(block)? {
                // Skip whole used words quickly.
                let word = self
                    .store
                    .word(block / WORD_BITS)
                    .map_err(SpaceError::Store)?;
                if word == u64::MAX && block % WORD_BITS == 0 {
                    block += WORD_BITS;
                } else {
                    block += 1;
                }
                continue;
            }
            let mut len = 1;
            while len < want && block + len < bound && !self.is_used(block + len)? {
                len += 1;
            }
            if len >= min {
                return Ok(Some(Extent { start: block, len }));
            }
            block += len;
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    extern crate alloc;

    use super::*;
    use crate::logic::testing::Lcg;
    use alloc::{vec, vec::Vec};

    struct Maps {
        words: Vec<u64>,
        summary: Vec<u32>,
    }

    impl SpaceStore for Maps {
        type Error = ();
        fn word(&self, index: u64) -> Result<u64, ()> {
            self.words.get(index as usize).copied().ok_or(())
        }
        fn set_word(&mut self, index: u64, value: u64) -> Result<(), ()> {
            *self.words.get_mut(index as usize).ok_or(())? = value;
            Ok(())
        }
        fn chunk_free(&self, chunk: u64) -> Result<u32, ()> {
            self.summary.get(chunk as usize).copied().ok_or(())
        }
        fn set_chunk_free(&mut self, chunk: u64, free: u32) -> Result<(), ()> {
            *self.summary.get_mut(chunk as usize).ok_or(())? = free;
            Ok(())
        }
    }

    /// Maps for a fresh filesystem: fixed regions used, the rest free.
    fn fresh(layout: &Layout) -> Maps {
        let chunks = layout.block_count.div_ceil(CHUNK_BLOCKS) as usize;
        let mut maps = Maps {
            words: vec![0; layout.block_count.div_ceil(64) as usize],
            summary: vec![0; chunks],
        };
        for block in 0..layout.block_count {
            if block < layout.data_start {
                maps.words[(block / 64) as usize] |= 1 << (block % 64);
            } else {
                maps.summary[(block / CHUNK_BLOCKS) as usize] += 1;
            }
        }
        maps
    }

    fn check(maps: &Maps, layout: &Layout, model: &[bool]) {
        for block in 0..layout.block_count {
            let used = maps.words[(block / 64) as usize] & (1 << (block % 64)) != 0;
            assert_eq!(
                used,
                block < layout.data_start || model[block as usize],
                "block {}",
                block
            );
        }
        for (chunk, &free) in maps.summary.iter().enumerate() {
            let range = chunk as u64 * CHUNK_BLOCKS
                ..((chunk as u64 + 1) * CHUNK_BLOCKS).min(layout.block_count);
            let want = range
                .filter(|&b| b >= layout.data_start && !model[b as usize])
                .count();
            assert_eq!(free as usize, want, "chunk {}", chunk);
        }
    }

    #[test]
    fn big_requests_get_aligned_chunks() {
        let layout = Layout::for_device(64 << 20, None).unwrap();
        let mut maps = fresh(&layout);
        let mut space = Space::new(&mut maps, &layout);
        let small = space.allocate(3, 0).unwrap();
        assert_eq!(
            small,
            Extent {
                start: layout.data_start,
                len: 3
            }
        );
        let big = space.allocate(3 * CHUNK_BLOCKS + 100, 0).unwrap();
        assert_eq!(big.start % CHUNK_BLOCKS, 0);
        assert_eq!(big.len, 3 * CHUNK_BLOCKS);
        assert!(big.start > small.start);
    }

    #[test]
    fn aligned_runs_start_on_the_alignment_and_skip_broken_ones() {
        // 32 chunks; runs of 8 chunks (the 1 GiB rule, scaled down).
        let layout = Layout::for_device(64 << 20, None).unwrap();
        let align = 8 * CHUNK_BLOCKS;
        assert!(layout.data_start < align);
        let mut maps = fresh(&layout);
        let mut space = Space::new(&mut maps, &layout);
        // The last run first: 24..32.
        assert_eq!(space.aligned_free_run(align).unwrap(), Some(3 * align));
        let first = space.allocate(2 * CHUNK_BLOCKS, 3 * align).unwrap();
        assert_eq!(first.start, 3 * align);
        // The run 16..24 has a used block in chunk 17: the next is 8..16.
        assert!(space
            .allocate_at(17 * CHUNK_BLOCKS + 3, 1)
            .unwrap()
            .is_some());
        assert_eq!(space.aligned_free_run(align).unwrap(), Some(align));
        assert_eq!(space.allocate(align, align).unwrap().start, align);
        // No whole run is left (0..8 holds the metadata).
        assert_eq!(space.aligned_free_run(align).unwrap(), None);
        assert!(space.aligned_free_run(CHUNK_BLOCKS - 1).is_err());
    }

    /// A whole free chunk, all of it allocated: its first block.
    fn take_chunk(space: &mut Space<'_, Maps>, goal: u64) -> Option<u64> {
        let e = space.allocate_in_chunk(goal, 0, CHUNK_BLOCKS).unwrap()?;
        assert_eq!((e.start % CHUNK_BLOCKS, e.len), (0, CHUNK_BLOCKS));
        Some(e.start)
    }

    #[test]
    fn small_requests_fill_broken_chunks_before_whole_ones() {
        let layout = Layout::for_device(64 << 20, None).unwrap();
        let mut maps = fresh(&layout);
        let mut space = Space::new(&mut maps, &layout);
        // A chunk taken whole, then mostly given back: it is broken.
        let chunk = take_chunk(&mut space, layout.block_count / 2).unwrap();
        assert_eq!(chunk % CHUNK_BLOCKS, 0);
        space
            .free(Extent {
                start: chunk + 1,
                len: CHUNK_BLOCKS - 1,
            })
            .unwrap();
        // Goals anywhere, whole free chunks included: a whole chunk is
        // broken only when no partly used one has a free block left, and
        // a run never leaves the chunk it starts in.
        let mut broke = 0;
        for i in 0..400u64 {
            let before = space.chunk_counts().unwrap();
            let goal = (i * 7919) % layout.block_count;
            let e = match space.allocate(1 + i % 300, goal) {
                Ok(e) => e,
                Err(SpaceError::NoSpace) => break,
                Err(e) => panic!("{:?}", e),
            };
            assert_eq!(e.start / CHUNK_BLOCKS, (e.start + e.len - 1) / CHUNK_BLOCKS);
            let after = space.chunk_counts().unwrap();
            if after.free < before.free {
                assert_eq!(
                    before.partial, 0,
                    "step {}: {:?} then {:?}",
                    i, before, after
                );
                broke += 1;
            }
        }
        assert!(broke > 3);
        assert_eq!(space.chunk_counts().unwrap().free, 0);
    }

    #[test]
    fn exact_and_whole_chunk_allocations() {
        let layout = Layout::for_device(64 << 20, None).unwrap();
        let mut maps = fresh(&layout);
        let mut space = Space::new(&mut maps, &layout);
        let chunk = take_chunk(&mut space, 0).unwrap();
        assert!(chunk >= layout.data_start && chunk % CHUNK_BLOCKS == 0);
        space
            .free(Extent {
                start: chunk + 100,
                len: 50,
            })
            .unwrap();
        // Exactly where asked, no longer than the free run.
        assert_eq!(
            space.allocate_at(chunk + 110, 100).unwrap(),
            Some(Extent {
                start: chunk + 110,
                len: 40
            })
        );
        assert_eq!(space.allocate_at(chunk + 110, 1).unwrap(), None);
        assert_eq!(space.allocate_at(0, 1).unwrap(), None);
        assert_eq!(space.allocate_at(layout.block_count, 1).unwrap(), None);
        // Until no chunk is free whole.
        let mut taken = 1;
        while let Some(c) = take_chunk(&mut space, chunk) {
            assert_eq!(c % CHUNK_BLOCKS, 0);
            taken += 1;
        }
        let counts = space.chunk_counts().unwrap();
        assert_eq!(counts.free, 0);
        assert!(taken >= 2 && counts.full >= taken - 1);
    }

    #[test]
    fn contiguous_requests_skip_short_runs() {
        let layout = Layout::for_device(64 << 20, None).unwrap();
        let mut maps = fresh(&layout);
        let mut space = Space::new(&mut maps, &layout);
        // Every other block of the first 64 in use: 32 one-block holes,
        // then free space.
        let start = layout.data_start;
        let mut used = Vec::new();
        for i in 0..64 {
            let extent = space.allocate(1, start + i).unwrap();
            assert_eq!(extent.start, start + i);
            used.push(extent);
        }
        for extent in used.iter().step_by(2) {
            space.free(*extent).unwrap();
        }
        assert_eq!(space.allocate(4, start).unwrap().len, 1);
        let run = space.allocate_contiguous(4, start).unwrap();
        assert_eq!(
            run,
            Extent {
                start: start + 64,
                len: 4
            }
        );
        // Near a goal past the end, it wraps round to the first long run.
        let run = space
            .allocate_contiguous(3, layout.block_count - 1)
            .unwrap();
        assert!(run.len == 3 && run.start >= start + 64);
        assert_eq!(
            space.allocate_contiguous(CHUNK_BLOCKS + 1, start),
            Err(SpaceError::OutOfRange)
        );
    }

    #[test]
    fn random_allocations_match_a_model() {
        let layout = Layout::for_device(48 << 20, None).unwrap();
        let mut maps = fresh(&layout);
        let mut model = vec![false; layout.block_count as usize];
        let mut live: Vec<Extent> = Vec::new();
        let mut rng = Lcg(7);
        let mut aligned_requests = 0;
        for step in 0..3000 {
            let mut space = Space::new(&mut maps, &layout);
            if !live.is_empty() && rng.next() % 5 < 2 {
                let extent = live.swap_remove((rng.next() % live.len() as u64) as usize);
                space.free(extent).unwrap();
                for b in extent.start..extent.start + extent.len {
                    model[b as usize] = false;
                }
            } else {
                let want = if rng.next() % 8 == 0 {
                    CHUNK_BLOCKS * (1 + rng.next() % 3)
                } else {
                    1 + rng.next() % 40
                };
                let goal = rng.next() % layout.block_count;
                let whole_chunk_free = (0..layout.block_count / CHUNK_BLOCKS).any(|c| {
                    let r = c * CHUNK_BLOCKS..(c + 1) * CHUNK_BLOCKS;
                    r.start >= layout.data_start && r.clone().all(|b| !model[b as usize])
                });
                match space.allocate(want, goal) {
                    Ok(extent) => {
                        assert!(extent.len >= 1 && extent.len <= want);
                        for b in extent.start..extent.start + extent.len {
                            assert!(!model[b as usize], "block {} handed out twice", b);
                            model[b as usize] = true;
                        }
                        if want >= CHUNK_BLOCKS && whole_chunk_free {
                            assert_eq!(extent.start % CHUNK_BLOCKS, 0, "step {}", step);
                            assert_eq!(extent.len % CHUNK_BLOCKS, 0);
                            aligned_requests += 1;
                        }
                        live.push(extent);
                    }
                    Err(SpaceError::NoSpace) => {
                        assert!(model[layout.data_start as usize..].iter().all(|&u| u))
                    }
                    Err(e) => panic!("{:?}", e),
                }
            }
            if step % 300 == 0 {
                check(&maps, &layout, &model);
            }
        }
        check(&maps, &layout, &model);
        assert!(aligned_requests > 10);
    }

    #[test]
    fn inconsistent_requests_change_nothing() {
        let layout = Layout::for_device(32 << 20, None).unwrap();
        let mut maps = fresh(&layout);
        let mut space = Space::new(&mut maps, &layout);
        let e = space.allocate(10, 0).unwrap();
        assert_eq!(
            space.mark_used(Extent {
                start: e.start + 5,
                len: 10
            }),
            Err(SpaceError::Inconsistent { block: e.start + 5 })
        );
        assert_eq!(
            space.free(Extent {
                start: e.start + 8,
                len: 5
            }),
            Err(SpaceError::Inconsistent {
                block: e.start + 10
            })
        );
        assert_eq!(
            space.free(Extent { start: 0, len: 1 }),
            Err(SpaceError::OutOfRange)
        );
        assert_eq!(
            space.free(Extent {
                start: layout.block_count - 1,
                len: 2
            }),
            Err(SpaceError::OutOfRange)
        );
        assert_eq!(
            space.free(Extent {
                start: e.start,
                len: 0
            }),
            Err(SpaceError::OutOfRange)
        );
        let mut model = vec![false; layout.block_count as usize];
        for b in e.start..e.start + e.len {
            model[b as usize] = true;
        }
        check(&maps, &layout, &model);
    }

    #[test]
    fn fills_up_and_says_so() {
        let layout = Layout::for_device(Layout::min_device_bytes(1024), None).unwrap();
        let mut maps = fresh(&layout);
        let mut space = Space::new(&mut maps, &layout);
        let mut total = 0;
        loop {
            match space.allocate(1000, 0) {
                Ok(e) => total += e.len,
                Err(SpaceError::NoSpace) => break,
                Err(e) => panic!("{:?}", e),
            }
        }
        assert_eq!(total, layout.data_blocks());
    }
}
