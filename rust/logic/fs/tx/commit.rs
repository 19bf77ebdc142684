// SPDX-License-Identifier: GPL-2.0

//! Committing a transaction: the changed runs of each shadow are logged,
//! fenced, sealed by the commit record, then written home; the backup
//! superblock follows the primary one.

use crate::logic::fs::{Damage, Error, Media};

use super::{Commits, Effects, Tx, ALL_LINES, LINE_BYTES};
use crate::logic::format::{
    journal::{for_each_logged, Finished, TxWriter, ALIGN},
    superblock::{Superblock, BACKUP_BLOCK, PRIMARY_BLOCK},
    BLOCK_SHIFT, BLOCK_SIZE,
};

/// What shadow `i` changed in its block: the runs that differ from `home`
/// in the 64-byte lines of `lines` (the others did not change, and `home`
/// holds only those), or the whole block if its memory could not be read
/// (bit `i` of `unknown`).
pub(super) fn runs(
    unknown: u128,
    i: usize,
    lines: u64,
    home: &[u8; BLOCK_SIZE],
    shadow: &[u8; BLOCK_SIZE],
) -> ChangedRuns {
    if unknown & 1 << i != 0 {
        return ChangedRuns::whole();
    }
    changed_runs(home, shadow, lines)
}

/// Host builds: the lines of `home` copied as they were marked are the
/// block's (`whole`), and every change marked its lines: the runs are
/// those of a diff of every line against the whole block.
#[cfg(test)]
fn check_runs(
    i: usize,
    lines: u64,
    home: &[u8; BLOCK_SIZE],
    whole_originals: &[[u8; BLOCK_SIZE]],
    shadow: &[u8; BLOCK_SIZE],
) {
    let whole = &whole_originals[i];
    for (line, (kept, was)) in line_pairs(home, whole).enumerate() {
        assert!(
            lines & 1 << line == 0 || kept == was,
            "line {line} of shadow {i}'s original was not kept as it was"
        );
    }
    assert!(
        changed_runs(home, shadow, lines).differ == changed_runs(whole, shadow, u64::MAX).differ,
        "a change to shadow {i} outside its marked lines {lines:#x}"
    );
}

/// Writes `sb` whole into the backup superblock (durable at the next
/// fence).
pub(in crate::logic::fs) fn write_backup<M: Media>(
    media: &M,
    sb: &Superblock,
    spare: &mut [u8; BLOCK_SIZE],
) -> Result<(), Error> {
    sb.encode(spare);
    if media.write(BACKUP_BLOCK << BLOCK_SHIFT, &spare[..]) {
        Ok(())
    } else {
        Err(Error::Corrupt(BACKUP_BLOCK, Damage::Address))
    }
}

/// Words in a block.
const WORDS: usize = BLOCK_SIZE / ALIGN;

/// The 64-byte lines of a block, of `old` and `new` side by side.
fn line_pairs<'b>(
    old: &'b [u8; BLOCK_SIZE],
    new: &'b [u8; BLOCK_SIZE],
) -> impl Iterator<Item = (&'b [u8], &'b [u8])> {
    old.chunks_exact(LINE_BYTES)
        .zip(new.chunks_exact(LINE_BYTES))
}

fn word(bytes: &[u8]) -> u64 {
    u64::from_ne_bytes(bytes.try_into().unwrap_or([0; ALIGN]))
}

/// Bit `l` is set where 64-byte line `l` of `old` and `new` differ, of
/// the lines in `lines`. Every commit diffs every shadow, so this is on
/// the path of each metadata operation: a line is compared by or-ing the
/// xor of its words, without a branch per word (under TCG, where a branch
/// ends a translated block, one per word cost a tenth of an allocating
/// fault).
pub(super) fn differing_lines(old: &[u8; BLOCK_SIZE], new: &[u8; BLOCK_SIZE], lines: u64) -> u64 {
    let mut differ = 0;
    for (line, (o, n)) in line_pairs(old, new).enumerate() {
        if lines & 1 << line == 0 {
            continue;
        }
        let words = o.chunks_exact(ALIGN).zip(n.chunks_exact(ALIGN));
        let any = words.fold(0, |any, (o, n)| any | (word(o) ^ word(n)));
        differ |= u64::from(any != 0) << line;
    }
    differ
}

/// Bit `w` is set where word `w` of `old` and `new` differ, in the lines
/// of `lines` ([`differing_lines`]; only a line that differs is looked at
/// word by word, and most lines of a shadow do not).
fn differing_words(
    old: &[u8; BLOCK_SIZE],
    new: &[u8; BLOCK_SIZE],
    lines: u64,
) -> [u64; WORDS / 64] {
    let lines = differing_lines(old, new, lines);
    let mut differ = [0u64; WORDS / 64];
    for (line, (o, n)) in line_pairs(old, new).enumerate() {
        if lines & 1 << line == 0 {
            continue;
        }
        let bits = o
            .chunks_exact(ALIGN)
            .zip(n.chunks_exact(ALIGN))
            .enumerate()
            .fold(0u64, |bits, (i, (o, n))| {
                bits | u64::from(word(o) != word(n)) << i
            });
        if let Some(group) = differ.get_mut(line / 8) {
            *group |= bits << (line % 8 * 8);
        }
    }
    differ
}

/// The first word at or after `from` whose bit is set.
fn next_differing(differ: &[u64; WORDS / 64], from: usize) -> Option<usize> {
    let mut index = from / 64;
    let mut bits = differ.get(index)? & (!0u64 << (from % 64));
    loop {
        if bits != 0 {
            return Some(index * 64 + bits.trailing_zeros() as usize);
        }
        index += 1;
        bits = *differ.get(index)?;
    }
}

/// Runs of 8-byte words where `new` differs from `old` in the 64-byte
/// lines of `lines`; runs closer than a record header are merged (logging
/// the gap is cheaper than a record). So a block's records cost at most
/// one header more than the block (each later header fits in the gap
/// before it), whatever their number, and no run leaves the marked lines
/// (the gaps it spans lie between two changed words): bytes a transaction
/// did not mark are never logged or written home from its copy, which
/// may be older than another transaction's where the block holds records
/// of several owners (an inode block, stage 4 of
/// Documentation/oxdax/concurrency.rst).
fn changed_runs(old: &[u8; BLOCK_SIZE], new: &[u8; BLOCK_SIZE], lines: u64) -> ChangedRuns {
    ChangedRuns {
        differ: differing_words(old, new, lines),
        from: 0,
    }
}

const MERGE_GAP_WORDS: usize = 2;

/// Byte ranges of changed runs, found as they are asked for.
pub(super) struct ChangedRuns {
    /// Bit `w`: word `w` changed.
    differ: [u64; WORDS / 64],
    /// The next run starts at or after this word.
    from: usize,
}

impl ChangedRuns {
    /// The whole block as one run.
    pub(super) fn whole() -> Self {
        Self {
            differ: [u64::MAX; WORDS / 64],
            from: 0,
        }
    }
}

impl Iterator for ChangedRuns {
    type Item = core::ops::Range<usize>;
    fn next(&mut self) -> Option<Self::Item> {
        let start = next_differing(&self.differ, self.from)?;
        let mut end = start + 1;
        while let Some(next) = next_differing(&self.differ, end) {
            if next - end > MERGE_GAP_WORDS {
                break;
            }
            end = next + 1;
        }
        self.from = end;
        Some(start * ALIGN..end * ALIGN)
    }
}

/// Takes each changed run: `(block, offset, bytes)`.
type RunVisitor<'v> = dyn FnMut(u64, usize, &[u8]) -> Result<(), Error> + 'v;

/// A transaction's shadows, as its commit reads them.
struct Shadows<'s> {
    used: usize,
    tags: &'s [u64],
    shadows: &'s [[u8; BLOCK_SIZE]],
    originals: &'s [[u8; BLOCK_SIZE]],
    lines: &'s [u64],
    unknown: u128,
    #[cfg(test)]
    whole_originals: &'s [[u8; BLOCK_SIZE]],
}

impl Shadows<'_> {
    /// Calls `visit(block, offset, bytes)` for each changed run of each
    /// shadow, in order; stops at its first error.
    fn each_change(&self, visit: &mut RunVisitor<'_>) -> Result<(), Error> {
        for i in 0..self.used {
            let (Some(&block), Some(shadow), Some(home), Some(&lines)) = (
                self.tags.get(i),
                self.shadows.get(i),
                self.originals.get(i),
                self.lines.get(i),
            ) else {
                break;
            };
            #[cfg(test)]
            if self.unknown & 1 << i == 0 {
                check_runs(i, lines, home, self.whole_originals, shadow);
            }
            for run in runs(self.unknown, i, lines, home, shadow) {
                let data = shadow.get(run.clone()).ok_or(Error::Invalid)?;
                visit(block, run.start, data)?;
            }
        }
        Ok(())
    }
}

impl<'a, M: Media> Tx<'a, M> {
    fn effects(&self) -> Effects {
        Effects {
            times: self.times,
            chunk_moves: self.chunk_moves,
            taken: self.taken,
            misplaced: self.misplaced,
            inode_chunk: self.inode_chunk,
        }
    }

    /// Makes the transaction durable and applies it. On error nothing of
    /// it is applied (the caller's in-memory state is not updated either).
    pub(in crate::logic::fs) fn commit(
        mut self,
        commits: Commits<'_>,
    ) -> Result<(Superblock, Effects), Error> {
        let committed = self.write_out(commits);
        if committed.is_err() {
            self.forget_shadowed();
        }
        committed
    }

    /// [`Self::commit`]'s work.
    fn write_out(&mut self, commits: Commits<'_>) -> Result<(Superblock, Effects), Error> {
        let media = self.media;
        let start = media.now_ns();
        // Frees and reverse-map changes feed each other (a freed rmap node
        // is a deferred free); each pass shrinks what is left.
        if self.rmap_count > 0 || self.free_count > 0 {
            self.hold_space();
        }
        while self.rmap_count > 0 || self.free_count > 0 {
            self.settle_rmap()?;
            self.apply_frees()?;
        }
        self.seal_nodes();
        let settled = media.now_ns();
        self.times.settle_ns = settled.saturating_sub(start);
        // Only the primary is journaled. The backup is rewritten whole
        // when the log wraps (below) and at unmount, never while the
        // primary's home write could be torn: a crash leaves at least one
        // of them valid, and both have the same layout, which is all that
        // mount needs before replaying the journal.
        let sb = self.sb;
        // Most operations change no root and no state, and lazy counters
        // are written with the next change that does (or at unmount):
        // encoding and diffing the block would cost a checksum of 4 KiB.
        let writes_primary = sb.must_be_written_over(&self.base) || self.rewrite_primary;
        if writes_primary {
            sb.encode(self.write_whole(PRIMARY_BLOCK)?);
        }

        let mut writer = TxWriter::begin(self.log, 0).map_err(|_| Error::NoSpace)?;
        let mut changes = 0usize;
        let shadows = Shadows {
            used: self.used,
            tags: self.tags,
            shadows: self.shadows,
            originals: self.originals,
            lines: self.lines,
            unknown: self.unknown,
            #[cfg(test)]
            whole_originals: &self.whole_originals,
        };
        shadows.each_change(&mut |block, offset, data| {
            writer
                .record(block, offset, data)
                .map_err(|_| Error::NoSpace)?;
            changes += 1;
            Ok(())
        })?;
        if changes == 0 && !self.wrote_direct {
            self.times.log_ns = media.now_ns().saturating_sub(settled);
            return Ok((sb, self.effects()));
        }
        let cache = self.cache;
        let (used, unknown, freed_shadows) = (self.used, self.unknown, self.freed_shadows);
        let tags: &[u64] = self.tags;
        let marked: &[u64] = self.lines;
        let shadow_blocks: &[[u8; BLOCK_SIZE]] = self.shadows;
        let mut logged = settled;
        let mut write_home = |finished: &Finished<'_>| -> Result<(), Error> {
            logged = media.now_ns();
            // Home: the records just logged, as recovery would apply them
            // (the runs are not diffed a second time). A failed home write
            // is left to recovery, which applies the journal. The cache
            // holds the committed state: a block it holds gets the same
            // runs (it held the original, which the runs change into the
            // shadow). Blocks freed now are not among them: `apply_frees`
            // made it forget them.
            // Shadows (by index) with a run the media did not take.
            let mut unwritten = 0u128;
            let write_run = &mut |block: u64, offset: usize, data: &[u8]| {
                let written = block
                    .checked_mul(BLOCK_SIZE as u64)
                    .and_then(|b| b.checked_add(offset as u64))
                    .is_some_and(|at| media.write(at, data));
                if !written {
                    if let Some(i) = tags.iter().take(used).position(|&tag| tag == block) {
                        unwritten |= 1 << i;
                    }
                }
                cache.patch(block, offset, data);
            };
            if !for_each_logged(finished.log, finished.body.clone(), write_run) {
                // The writer made these bytes just now: a walk that fails
                // is a bug (host tests stop here). The runs then go home
                // from the shadows, as they were logged.
                #[cfg(test)]
                panic!("the log body just written does not walk");
                #[allow(unreachable_code)]
                shadows.each_change(&mut |block, offset, data| {
                    write_run(block, offset, data);
                    Ok(())
                })?;
            }
            for i in 0..used {
                let (Some(&block), Some(shadow), Some(&lines)) =
                    (tags.get(i), shadow_blocks.get(i), marked.get(i))
                else {
                    break;
                };
                // What the media holds now (or the journal, if a home
                // write failed: recovery writes it), unless the block is
                // free now; a block the cache held was patched above.
                // (Shadows that share a slot are put in turn: the last one
                // stays, as before.) Only a copy the transaction owns
                // whole: lines it did not mark are as it read them, which
                // may be older than another transaction's commit of them
                // once several run (an inode block holds sixteen owners'
                // records); the next read of such a block fills it. Unless
                // the media did not take its runs: then the copy is the
                // one readable version of them, and with one transaction
                // at a time it is current (stage 4b must shut down here).
                let patched = unknown & 1 << i == 0 && cache.holds(block);
                let owned = lines == ALL_LINES || unwritten & 1 << i != 0;
                if freed_shadows & 1 << i == 0 && !patched && owned {
                    cache.put(block, shadow);
                }
            }
            Ok(())
        };
        let written = writes_primary.then_some(&sb);
        commits.commit(media, writer, written, self.spare, &mut write_home)?;
        self.times.log_ns = logged.saturating_sub(settled);
        self.times.logged = 1;
        #[cfg(test)]
        for i in 0..self.used {
            let (Some(&block), Some(shadow)) = (self.tags.get(i), self.shadows.get(i)) else {
                break;
            };
            if let Some(cached) = self.cache.cached(block) {
                assert!(
                    self.freed_shadows & 1 << i == 0,
                    "block {block}, freed by the transaction, is cached"
                );
                assert!(
                    cached == *shadow,
                    "block {block}'s cached copy is not what was committed"
                );
            }
        }
        self.times.home_ns = media.now_ns().saturating_sub(logged);
        Ok((sb, self.effects()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    /// The runs the way the first version found them: word by word.
    fn reference(old: &[u8; BLOCK_SIZE], new: &[u8; BLOCK_SIZE]) -> Vec<(usize, usize)> {
        let differs = |w: usize| old[w * ALIGN..(w + 1) * ALIGN] != new[w * ALIGN..(w + 1) * ALIGN];
        let mut runs: Vec<(usize, usize)> = Vec::new();
        let mut word = 0;
        while word < WORDS {
            if !differs(word) {
                word += 1;
                continue;
            }
            let start = word;
            let mut end = word + 1;
            let mut probe = end;
            while probe < WORDS && probe - end <= MERGE_GAP_WORDS {
                if differs(probe) {
                    end = probe + 1;
                }
                probe += 1;
            }
            runs.push((start, end));
            word = end;
        }
        runs.iter().map(|&(s, e)| (s * ALIGN, e * ALIGN)).collect()
    }

    #[test]
    fn line_masks_cover_exactly_their_bytes() {
        use super::super::line_mask;
        for start in 0..BLOCK_SIZE {
            for end in [start + 1, start + 8, start + 64, start + 100, BLOCK_SIZE] {
                let end = end.min(BLOCK_SIZE);
                if end <= start {
                    continue;
                }
                let mask = line_mask(start, end);
                for line in 0..64 {
                    let covers = line * 64 < end && start < (line + 1) * 64;
                    assert_eq!(mask & 1 << line != 0, covers, "{start}..{end} line {line}");
                }
            }
        }
    }

    #[test]
    fn a_diff_of_the_marked_lines_finds_every_change_in_them() {
        use super::super::line_mask;
        let old = [0u8; BLOCK_SIZE];
        let mut seed = 3u64;
        for case in 0..2000 {
            let mut new = old;
            let mut marked = 0u64;
            for _ in 0..1 + case % 7 {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let at = (seed >> 33) as usize % BLOCK_SIZE;
                let end = (at + 1 + (seed >> 20) as usize % 70).min(BLOCK_SIZE);
                for b in new[at..end].iter_mut() {
                    *b = b.wrapping_add(1);
                }
                marked |= line_mask(at, end);
            }
            let full: Vec<_> = changed_runs(&old, &new, u64::MAX).collect();
            let masked: Vec<_> = changed_runs(&old, &new, marked).collect();
            assert_eq!(masked, full, "case {case}");
            // Unmarked lines are not looked at.
            let unmarked: Vec<_> = changed_runs(&old, &new, !marked).collect();
            assert!(unmarked.is_empty(), "case {case}");
        }
    }

    #[test]
    fn changed_runs_match_a_word_by_word_diff() {
        let old = [0u8; BLOCK_SIZE];
        let mut seed = 7u64;
        for case in 0..2000 {
            let mut new = old;
            // From one changed byte to a block too fragmented to list.
            let changes = [1, 2, 5, 40, 100, 300][case % 6];
            for _ in 0..changes {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let at = (seed >> 33) as usize % BLOCK_SIZE;
                // Clusters as well as scattered words.
                let len = 1 + (seed >> 20) as usize % 40;
                for b in new[at..(at + len).min(BLOCK_SIZE)].iter_mut() {
                    *b = b.wrapping_add(1);
                }
            }
            let got: Vec<(usize, usize)> = changed_runs(&old, &new, u64::MAX)
                .map(|r| (r.start, r.end))
                .collect();
            assert_eq!(got, reference(&old, &new), "case {case}");
        }
        assert_eq!(changed_runs(&old, &old, u64::MAX).count(), 0);
        let mut last = old;
        last[BLOCK_SIZE - 1] = 1;
        let got: Vec<_> = changed_runs(&old, &last, u64::MAX).collect();
        assert_eq!(got, [BLOCK_SIZE - ALIGN..BLOCK_SIZE]);
    }

    /// However fragmented a block's changes, its runs stay in the lines a
    /// transaction marked (the others may be another owner's, newer than
    /// its copy), and its records cost at most one header more than the
    /// block.
    #[test]
    fn fragmented_changes_stay_in_their_lines_and_cost_at_most_a_block() {
        use crate::logic::format::journal::RECORD_HEADER_BYTES;
        let old = [0u8; BLOCK_SIZE];
        for (stride, marked) in [(32, u64::MAX), (32, 0x5555_5555_5555_5557), (40, 0xff00)] {
            let mut new = old;
            for line in 0..64 {
                if marked & 1 << line == 0 {
                    continue;
                }
                for at in (line * 64..(line + 1) * 64).step_by(stride) {
                    new[at] = 1;
                }
            }
            let runs: Vec<_> = changed_runs(&old, &new, marked).collect();
            assert!(runs.len() > 64 || marked != u64::MAX, "fragmented");
            let logged: usize = runs.iter().map(|r| RECORD_HEADER_BYTES + r.len()).sum();
            assert!(logged <= BLOCK_SIZE + RECORD_HEADER_BYTES, "{logged} bytes");
            for run in &runs {
                let lines = super::super::line_mask(run.start, run.end);
                assert_eq!(lines & !marked, 0, "run {run:?} leaves lines {marked:#x}");
            }
            let mut applied = old;
            for run in runs {
                applied[run.clone()].copy_from_slice(&new[run]);
            }
            assert!(applied == new);
        }
    }
}
