// SPDX-License-Identifier: GPL-2.0

//! Where the fixed regions of an oxdax filesystem lie on the device.

use super::{BLOCK_SHIFT, BLOCK_SIZE, CHUNK_BLOCKS};

/// Bits per bitmap block: one per filesystem block.
pub const BITS_PER_BITMAP_BLOCK: u64 = (BLOCK_SIZE * 8) as u64;
/// Bytes per free-space summary entry (free blocks in one 2 MiB chunk).
pub const SUMMARY_ENTRY_BYTES: u64 = 4;
/// The journal's first block: after the primary and backup superblocks.
pub const JOURNAL_START: u64 = 2;
/// Smallest journal: 4 MiB.
pub const MIN_JOURNAL_BLOCKS: u64 = 1024;
/// Largest journal mkfs chooses by default: 64 MiB.
pub const MAX_DEFAULT_JOURNAL_BLOCKS: u64 = 16384;
/// Largest journal at all: 1 GiB.
pub const MAX_JOURNAL_BLOCKS: u64 = 262_144;
/// Smallest filesystem: 16 MiB.
pub const MIN_BLOCKS: u64 = 4096;
/// Largest filesystem: 2^48 bytes (block numbers stay far from overflow).
pub const MAX_BLOCKS: u64 = 1 << (48 - BLOCK_SHIFT);
/// Data blocks a filesystem needs beyond its fixed regions (root directory,
/// first inode chunk, tree roots, room to work).
pub const MIN_DATA_BLOCKS: u64 = 2 * CHUNK_BLOCKS;

/// The fixed regions. Block numbers count from the start of the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Blocks in the filesystem.
    pub block_count: u64,
    /// First journal block.
    pub journal_start: u64,
    /// Journal length in blocks.
    pub journal_blocks: u64,
    /// First free-space bitmap block.
    pub bitmap_start: u64,
    /// Bitmap length in blocks.
    pub bitmap_blocks: u64,
    /// First free-space summary block.
    pub summary_start: u64,
    /// Summary length in blocks.
    pub summary_blocks: u64,
    /// First block of the data area (2 MiB aligned).
    pub data_start: u64,
}

/// Why a layout cannot be made or is not valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutError {
    /// The device is smaller than the minimum (`min_bytes`).
    TooSmall {
        /// The smallest device that works.
        min_bytes: u64,
    },
    /// The device is larger than the format supports.
    TooLarge,
    /// The journal size is outside the allowed range.
    BadJournalSize,
    /// Regions overlap, are out of order, or leave the device.
    BadRegions,
    /// The data area does not start on a 2 MiB boundary.
    Misaligned,
}

fn div_ceil(a: u64, b: u64) -> u64 {
    a.div_ceil(b)
}

impl Layout {
    /// The layout mkfs makes on a device of `device_bytes` bytes. The
    /// journal is `journal_blocks` long, or by default 1/256 of the device
    /// within [4 MiB, 64 MiB].
    pub fn for_device(device_bytes: u64, journal_blocks: Option<u64>) -> Result<Self, LayoutError> {
        let block_count = device_bytes >> BLOCK_SHIFT;
        let default_journal =
            (block_count / 256).clamp(MIN_JOURNAL_BLOCKS, MAX_DEFAULT_JOURNAL_BLOCKS);
        let journal_blocks = journal_blocks.unwrap_or(default_journal);
        if block_count > MAX_BLOCKS {
            return Err(LayoutError::TooLarge);
        }
        if !(MIN_JOURNAL_BLOCKS..=MAX_JOURNAL_BLOCKS).contains(&journal_blocks) {
            return Err(LayoutError::BadJournalSize);
        }
        let bitmap_start = JOURNAL_START + journal_blocks;
        let bitmap_blocks = div_ceil(block_count, BITS_PER_BITMAP_BLOCK).max(1);
        let summary_start = bitmap_start + bitmap_blocks;
        let chunks = div_ceil(block_count, CHUNK_BLOCKS);
        let summary_blocks = div_ceil(chunks * SUMMARY_ENTRY_BYTES, BLOCK_SIZE as u64).max(1);
        let data_start = (summary_start + summary_blocks).next_multiple_of(CHUNK_BLOCKS);
        let layout = Self {
            block_count,
            journal_start: JOURNAL_START,
            journal_blocks,
            bitmap_start,
            bitmap_blocks,
            summary_start,
            summary_blocks,
            data_start,
        };
        match layout.validate() {
            Err(LayoutError::BadRegions) | Err(LayoutError::TooSmall { .. }) => {
                Err(LayoutError::TooSmall {
                    min_bytes: Self::min_device_bytes(journal_blocks),
                })
            }
            other => other.map(|()| layout),
        }
    }

    /// The smallest device a filesystem with this journal fits on.
    pub fn min_device_bytes(journal_blocks: u64) -> u64 {
        let fixed = (JOURNAL_START + journal_blocks + 2).next_multiple_of(CHUNK_BLOCKS);
        (fixed + MIN_DATA_BLOCKS).max(MIN_BLOCKS) << BLOCK_SHIFT
    }

    /// Checks a layout read from a superblock: every region where the
    /// format puts it, in order, inside the filesystem, sized for it.
    pub fn validate(&self) -> Result<(), LayoutError> {
        if self.block_count > MAX_BLOCKS {
            return Err(LayoutError::TooLarge);
        }
        if !(MIN_JOURNAL_BLOCKS..=MAX_JOURNAL_BLOCKS).contains(&self.journal_blocks) {
            return Err(LayoutError::BadJournalSize);
        }
        let chunks = div_ceil(self.block_count, CHUNK_BLOCKS);
        let regions_fit = self.journal_start == JOURNAL_START
            && self.bitmap_start == self.journal_start + self.journal_blocks
            && self.bitmap_blocks == div_ceil(self.block_count, BITS_PER_BITMAP_BLOCK).max(1)
            && self.summary_start == self.bitmap_start + self.bitmap_blocks
            && self.summary_blocks
                == div_ceil(chunks * SUMMARY_ENTRY_BYTES, BLOCK_SIZE as u64).max(1)
            && self.data_start >= self.summary_start + self.summary_blocks;
        if !regions_fit {
            return Err(LayoutError::BadRegions);
        }
        if self.data_start % CHUNK_BLOCKS != 0 {
            return Err(LayoutError::Misaligned);
        }
        if self.block_count < MIN_BLOCKS
            || self.data_start.saturating_add(MIN_DATA_BLOCKS) > self.block_count
        {
            return Err(LayoutError::TooSmall {
                min_bytes: Self::min_device_bytes(self.journal_blocks),
            });
        }
        Ok(())
    }

    /// Blocks in the data area.
    pub fn data_blocks(&self) -> u64 {
        self.block_count - self.data_start
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    #[test]
    fn one_gib_default() {
        let l = Layout::for_device(GIB, None).unwrap();
        assert_eq!(l.block_count, 262_144);
        assert_eq!(l.journal_blocks, 1024);
        assert_eq!(l.bitmap_start, 1026);
        assert_eq!(l.bitmap_blocks, 8);
        assert_eq!(l.summary_blocks, 1);
        assert_eq!(l.data_start, 1536);
        assert_eq!(l.data_start * 4096 % (2 * MIB), 0);
    }

    #[test]
    fn sizes_from_minimum_to_huge_make_valid_layouts() {
        let min = Layout::min_device_bytes(MIN_JOURNAL_BLOCKS);
        assert_eq!(
            Layout::for_device(min - 4096, None),
            Err(LayoutError::TooSmall { min_bytes: min })
        );
        let mut size = min;
        while size <= (1 << 46) {
            let l = Layout::for_device(size, None).unwrap();
            assert_eq!(l.validate(), Ok(()));
            assert!(l.data_blocks() >= MIN_DATA_BLOCKS);
            assert!(l.journal_blocks <= MAX_DEFAULT_JOURNAL_BLOCKS);
            assert!(l.bitmap_blocks * BITS_PER_BITMAP_BLOCK >= l.block_count);
            size = size * 3 / 2 + 4096;
        }
        assert_eq!(
            Layout::for_device(1 << 49, None),
            Err(LayoutError::TooLarge)
        );
    }

    #[test]
    fn explicit_journal_sizes() {
        assert_eq!(
            Layout::for_device(GIB, Some(1023)),
            Err(LayoutError::BadJournalSize)
        );
        assert_eq!(
            Layout::for_device(GIB, Some(MAX_JOURNAL_BLOCKS + 1)),
            Err(LayoutError::BadJournalSize)
        );
        let l = Layout::for_device(GIB, Some(8192)).unwrap();
        assert_eq!(l.journal_blocks, 8192);
        assert!(matches!(
            Layout::for_device(16 * MIB, Some(8192)),
            Err(LayoutError::TooSmall { .. })
        ));
    }

    #[test]
    fn validate_rejects_tampering() {
        let good = Layout::for_device(GIB, None).unwrap();
        let cases = [
            Layout {
                journal_start: 3,
                ..good
            },
            Layout {
                bitmap_start: good.bitmap_start - 1,
                ..good
            },
            Layout {
                bitmap_blocks: 1,
                ..good
            },
            Layout {
                summary_start: good.summary_start + 1,
                ..good
            },
            Layout {
                summary_blocks: 0,
                ..good
            },
            Layout {
                data_start: good.summary_start,
                ..good
            },
        ];
        for bad in cases {
            assert_eq!(bad.validate(), Err(LayoutError::BadRegions), "{:?}", bad);
        }
        assert_eq!(
            Layout {
                data_start: good.data_start + 1,
                ..good
            }
            .validate(),
            Err(LayoutError::Misaligned)
        );
        assert!(matches!(
            Layout {
                block_count: good.data_start + 10,
                ..good
            }
            .validate(),
            Err(LayoutError::BadRegions) | Err(LayoutError::TooSmall { .. })
        ));
        assert_eq!(
            Layout {
                block_count: u64::MAX,
                ..good
            }
            .validate(),
            Err(LayoutError::TooLarge)
        );
    }
}
