// SPDX-License-Identifier: GPL-2.0

//! The superblock: block 0, with a backup in block 1.

use super::{
    crc32c, get_u16, get_u32, get_u64,
    layout::{Layout, LayoutError},
    put, BLOCK_SHIFT, BLOCK_SIZE,
};

/// `"OXDAXFS\x01"`.
pub const MAGIC: [u8; 8] = *b"OXDAXFS\x01";
/// The format's major version; a superblock with another is refused.
pub const VERSION_MAJOR: u16 = 1;
/// The format's minor version (compatible additions).
pub const VERSION_MINOR: u16 = 0;
/// Block of the primary superblock.
pub const PRIMARY_BLOCK: u64 = 0;
/// Block of the backup superblock.
pub const BACKUP_BLOCK: u64 = 1;

/// Incompatible feature: extents may be shared (reflink) and carry
/// reference counts.
pub const INCOMPAT_REFLINK: u64 = 1 << 0;
/// Incompatible feature: the reverse-map tree exists and is kept.
pub const INCOMPAT_RMAP: u64 = 1 << 1;
/// Every incompatible feature this code implements.
pub const INCOMPAT_SUPPORTED: u64 = INCOMPAT_REFLINK | INCOMPAT_RMAP;
/// Read-only-compatible feature: `free_blocks` and `inode_count` are
/// exact only while the filesystem is clean. Mounted, they live in memory
/// and reach the media when the superblock is written for another reason;
/// a mount of a filesystem not marked clean counts them again from the
/// journaled maps (the summary, the inode-chunk tree). A transaction that
/// changes only a counter (a create, an allocation) then leaves block 0
/// alone. Code that does not know it would trust stale counters when
/// writing: read-only for it.
pub const RO_COMPAT_LAZY_COUNTERS: u64 = 1 << 0;
/// Every read-only-compatible feature this code implements.
pub const RO_COMPAT_SUPPORTED: u64 = RO_COMPAT_LAZY_COUNTERS;

/// State flag: the filesystem was unmounted cleanly.
pub const STATE_CLEAN: u64 = 1 << 0;
/// State flag: corruption was detected; fsck should run.
pub const STATE_ERROR: u64 = 1 << 1;

const OFF_MAGIC: usize = 0x000;
const OFF_VERSION_MAJOR: usize = 0x008;
const OFF_VERSION_MINOR: usize = 0x00a;
const OFF_BLOCK_SHIFT: usize = 0x00c;
const OFF_COMPAT: usize = 0x010;
const OFF_RO_COMPAT: usize = 0x018;
const OFF_INCOMPAT: usize = 0x020;
const OFF_UUID: usize = 0x028;
const OFF_LABEL: usize = 0x038;
const OFF_BLOCK_COUNT: usize = 0x058;
const OFF_JOURNAL_START: usize = 0x060;
const OFF_JOURNAL_BLOCKS: usize = 0x068;
const OFF_BITMAP_START: usize = 0x070;
const OFF_BITMAP_BLOCKS: usize = 0x078;
const OFF_SUMMARY_START: usize = 0x080;
const OFF_SUMMARY_BLOCKS: usize = 0x088;
const OFF_DATA_START: usize = 0x090;
const OFF_ROOT_INO: usize = 0x098;
const OFF_INODE_TREE_ROOT: usize = 0x0a0;
const OFF_RMAP_ROOT: usize = 0x0a8;
const OFF_REFCOUNT_ROOT: usize = 0x0b0;
const OFF_FREE_BLOCKS: usize = 0x0b8;
const OFF_INODE_COUNT: usize = 0x0c0;
const OFF_MKFS_TIME: usize = 0x0c8;
const OFF_STATE: usize = 0x0d0;
/// First reserved byte; reserved bytes must be zero.
const OFF_RESERVED: usize = 0x0d8;
const OFF_CHECKSUM: usize = BLOCK_SIZE - 4;
/// Bytes of the label field (the label itself is at most one less).
pub const LABEL_BYTES: usize = 32;

/// A filesystem label: at most 31 bytes of UTF-8, no NUL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Label([u8; LABEL_BYTES]);

impl Label {
    /// The label `text`, if it fits and has no NUL.
    pub fn new(text: &str) -> Option<Self> {
        let bytes = text.as_bytes();
        if bytes.len() >= LABEL_BYTES || bytes.contains(&0) {
            return None;
        }
        let mut label = [0u8; LABEL_BYTES];
        label.get_mut(..bytes.len())?.copy_from_slice(bytes);
        Some(Self(label))
    }

    /// The label text.
    pub fn as_str(&self) -> &str {
        let len = self.0.iter().position(|&b| b == 0).unwrap_or(LABEL_BYTES);
        self.0
            .get(..len)
            .and_then(|b| core::str::from_utf8(b).ok())
            .unwrap_or("")
    }

    fn from_raw(raw: &[u8]) -> Option<Self> {
        let mut label = [0u8; LABEL_BYTES];
        label.copy_from_slice(raw.get(..LABEL_BYTES)?);
        let len = label.iter().position(|&b| b == 0)?;
        // NUL-padded: nothing after the first NUL, and valid UTF-8 before.
        if label.get(len..)?.iter().any(|&b| b != 0) {
            return None;
        }
        core::str::from_utf8(label.get(..len)?).ok()?;
        Some(Self(label))
    }
}

/// A decoded, validated superblock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Superblock {
    /// Minor version that wrote it.
    pub version_minor: u16,
    /// Compatible features (unknown ones are ignored).
    pub feature_compat: u64,
    /// Read-only-compatible features.
    pub feature_ro_compat: u64,
    /// Incompatible features (all known, or decoding fails).
    pub feature_incompat: u64,
    /// Filesystem identity.
    pub uuid: [u8; 16],
    /// Label.
    pub label: Label,
    /// Fixed regions.
    pub layout: Layout,
    /// Inode number of the root directory.
    pub root_ino: u64,
    /// Root block of the inode-chunk tree.
    pub inode_tree_root: u64,
    /// Root block of the reverse-map tree.
    pub rmap_root: u64,
    /// Root block of the refcount tree.
    pub refcount_root: u64,
    /// Free data blocks.
    pub free_blocks: u64,
    /// Allocated inodes.
    pub inode_count: u64,
    /// When mkfs ran, ns since the epoch.
    pub mkfs_time: u64,
    /// `STATE_*` flags.
    pub state: u64,
}

/// Why a block is not a usable superblock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SuperblockError {
    /// Fewer than 4096 bytes.
    Truncated,
    /// Not an oxdax superblock.
    BadMagic,
    /// The checksum does not match the contents.
    BadChecksum {
        /// Stored in the block.
        stored: u32,
        /// Computed from the block.
        computed: u32,
    },
    /// A major version this code does not implement.
    UnsupportedVersion(u16),
    /// A block size other than 4096.
    UnsupportedBlockSize(u8),
    /// Incompatible features this code does not implement.
    UnknownIncompat(u64),
    /// The label is not NUL-padded UTF-8.
    BadLabel,
    /// Reserved bytes are not zero.
    NonzeroReserved,
    /// A field's value is impossible (root, counters, state).
    BadField(&'static str),
    /// The fixed regions are inconsistent.
    BadLayout(LayoutError),
}

impl Superblock {
    /// Serializes into a 4096-byte block, checksum included.
    pub fn encode(&self, block: &mut [u8; BLOCK_SIZE]) {
        block.fill(0);
        put(block, OFF_MAGIC, &MAGIC);
        put(block, OFF_VERSION_MAJOR, &VERSION_MAJOR.to_le_bytes());
        put(block, OFF_VERSION_MINOR, &self.version_minor.to_le_bytes());
        put(block, OFF_BLOCK_SHIFT, &[BLOCK_SHIFT as u8]);
        put(block, OFF_COMPAT, &self.feature_compat.to_le_bytes());
        put(block, OFF_RO_COMPAT, &self.feature_ro_compat.to_le_bytes());
        put(block, OFF_INCOMPAT, &self.feature_incompat.to_le_bytes());
        put(block, OFF_UUID, &self.uuid);
        put(block, OFF_LABEL, &self.label.0);
        let l = &self.layout;
        for (offset, value) in [
            (OFF_BLOCK_COUNT, l.block_count),
            (OFF_JOURNAL_START, l.journal_start),
            (OFF_JOURNAL_BLOCKS, l.journal_blocks),
            (OFF_BITMAP_START, l.bitmap_start),
            (OFF_BITMAP_BLOCKS, l.bitmap_blocks),
            (OFF_SUMMARY_START, l.summary_start),
            (OFF_SUMMARY_BLOCKS, l.summary_blocks),
            (OFF_DATA_START, l.data_start),
            (OFF_ROOT_INO, self.root_ino),
            (OFF_INODE_TREE_ROOT, self.inode_tree_root),
            (OFF_RMAP_ROOT, self.rmap_root),
            (OFF_REFCOUNT_ROOT, self.refcount_root),
            (OFF_FREE_BLOCKS, self.free_blocks),
            (OFF_INODE_COUNT, self.inode_count),
            (OFF_MKFS_TIME, self.mkfs_time),
            (OFF_STATE, self.state),
        ] {
            put(block, offset, &value.to_le_bytes());
        }
        let crc = crc32c::checksum(&block[..OFF_CHECKSUM]);
        put(block, OFF_CHECKSUM, &crc.to_le_bytes());
    }

    /// Decodes and validates a superblock. Every field is checked, so a
    /// caller can trust the result's regions and roots to lie inside the
    /// filesystem.
    pub fn decode(block: &[u8]) -> Result<Self, SuperblockError> {
        let block = block.get(..BLOCK_SIZE).ok_or(SuperblockError::Truncated)?;
        if block.get(..8) != Some(&MAGIC[..]) {
            return Err(SuperblockError::BadMagic);
        }
        let field = |offset| get_u64(block, offset).ok_or(SuperblockError::Truncated);
        let stored = get_u32(block, OFF_CHECKSUM).ok_or(SuperblockError::Truncated)?;
        let computed = crc32c::checksum(
            block
                .get(..OFF_CHECKSUM)
                .ok_or(SuperblockError::Truncated)?,
        );
        if stored != computed {
            return Err(SuperblockError::BadChecksum { stored, computed });
        }
        let major = get_u16(block, OFF_VERSION_MAJOR).ok_or(SuperblockError::Truncated)?;
        if major != VERSION_MAJOR {
            return Err(SuperblockError::UnsupportedVersion(major));
        }
        let shift = *block
            .get(OFF_BLOCK_SHIFT)
            .ok_or(SuperblockError::Truncated)?;
        if u32::from(shift) != BLOCK_SHIFT {
            return Err(SuperblockError::UnsupportedBlockSize(shift));
        }
        let incompat = field(OFF_INCOMPAT)?;
        if incompat & !INCOMPAT_SUPPORTED != 0 {
            return Err(SuperblockError::UnknownIncompat(
                incompat & !INCOMPAT_SUPPORTED,
            ));
        }
        let zero_gaps = [OFF_BLOCK_SHIFT + 1..OFF_COMPAT, OFF_RESERVED..OFF_CHECKSUM];
        if zero_gaps.into_iter().any(|gap| {
            block
                .get(gap)
                .map_or(true, |bytes| bytes.iter().any(|&b| b != 0))
        }) {
            return Err(SuperblockError::NonzeroReserved);
        }
        let label = block
            .get(OFF_LABEL..OFF_LABEL + LABEL_BYTES)
            .and_then(Label::from_raw)
            .ok_or(SuperblockError::BadLabel)?;
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(
            block
                .get(OFF_UUID..OFF_UUID + 16)
                .ok_or(SuperblockError::Truncated)?,
        );
        let layout = Layout {
            block_count: field(OFF_BLOCK_COUNT)?,
            journal_start: field(OFF_JOURNAL_START)?,
            journal_blocks: field(OFF_JOURNAL_BLOCKS)?,
            bitmap_start: field(OFF_BITMAP_START)?,
            bitmap_blocks: field(OFF_BITMAP_BLOCKS)?,
            summary_start: field(OFF_SUMMARY_START)?,
            summary_blocks: field(OFF_SUMMARY_BLOCKS)?,
            data_start: field(OFF_DATA_START)?,
        };
        layout.validate().map_err(SuperblockError::BadLayout)?;
        let sb = Self {
            version_minor: get_u16(block, OFF_VERSION_MINOR).ok_or(SuperblockError::Truncated)?,
            feature_compat: field(OFF_COMPAT)?,
            feature_ro_compat: field(OFF_RO_COMPAT)?,
            feature_incompat: incompat,
            uuid,
            label,
            layout,
            root_ino: field(OFF_ROOT_INO)?,
            inode_tree_root: field(OFF_INODE_TREE_ROOT)?,
            rmap_root: field(OFF_RMAP_ROOT)?,
            refcount_root: field(OFF_REFCOUNT_ROOT)?,
            free_blocks: field(OFF_FREE_BLOCKS)?,
            inode_count: field(OFF_INODE_COUNT)?,
            mkfs_time: field(OFF_MKFS_TIME)?,
            state: field(OFF_STATE)?,
        };
        sb.check_fields()?;
        Ok(sb)
    }

    fn check_fields(&self) -> Result<(), SuperblockError> {
        let data = self.layout.data_start..self.layout.block_count;
        for (name, root) in [
            ("inode_tree_root", self.inode_tree_root),
            ("rmap_root", self.rmap_root),
            ("refcount_root", self.refcount_root),
        ] {
            if !data.contains(&root) {
                return Err(SuperblockError::BadField(name));
            }
        }
        if self.free_blocks > self.layout.data_blocks() {
            return Err(SuperblockError::BadField("free_blocks"));
        }
        if self.root_ino == 0 || self.inode_count == 0 {
            return Err(SuperblockError::BadField("root_ino"));
        }
        // Inodes live in four-block chunks of the data area.
        let most = self
            .layout
            .data_blocks()
            .saturating_mul(super::inode::INODES_PER_CHUNK / super::inode::CHUNK_INODE_BLOCKS);
        if self.inode_count > most {
            return Err(SuperblockError::BadField("inode_count"));
        }
        if self.state & !(STATE_CLEAN | STATE_ERROR) != 0 {
            return Err(SuperblockError::BadField("state"));
        }
        Ok(())
    }

    /// Whether unknown read-only-compatible features forbid writing.
    pub fn read_only_required(&self) -> bool {
        self.feature_ro_compat & !RO_COMPAT_SUPPORTED != 0
    }

    /// Whether `free_blocks` and `inode_count` as stored may be stale
    /// ([`RO_COMPAT_LAZY_COUNTERS`] on a filesystem not marked clean): the
    /// maps say what they are.
    pub fn counters_may_be_stale(&self) -> bool {
        self.feature_ro_compat & RO_COMPAT_LAZY_COUNTERS != 0 && self.state & STATE_CLEAN == 0
    }

    /// Whether the superblock must be written for `self` to be what the
    /// media holds once `base` was: any field differs, the counters
    /// only where they are not lazy.
    pub fn must_be_written_over(&self, base: &Superblock) -> bool {
        if self.feature_ro_compat & RO_COMPAT_LAZY_COUNTERS == 0 {
            return self != base;
        }
        let counters_as_in = |sb: &Superblock| Superblock {
            free_blocks: 0,
            inode_count: 0,
            ..*sb
        };
        counters_as_in(self) != counters_as_in(base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Superblock {
        let layout = Layout::for_device(1 << 30, None).unwrap();
        Superblock {
            version_minor: VERSION_MINOR,
            feature_compat: 0,
            feature_ro_compat: 0,
            feature_incompat: INCOMPAT_SUPPORTED,
            uuid: *b"0123456789abcdef",
            label: Label::new("pmem-home").unwrap(),
            layout,
            root_ino: 1,
            inode_tree_root: layout.data_start,
            rmap_root: layout.data_start + 1,
            refcount_root: layout.data_start + 2,
            free_blocks: layout.data_blocks() - 8,
            inode_count: 1,
            mkfs_time: 1_790_000_000_000_000_000,
            state: STATE_CLEAN,
        }
    }

    fn encoded(sb: &Superblock) -> [u8; BLOCK_SIZE] {
        let mut block = [0u8; BLOCK_SIZE];
        sb.encode(&mut block);
        block
    }

    /// Rewrites the checksum after a deliberate edit, to reach the checks
    /// behind it.
    fn reseal(block: &mut [u8; BLOCK_SIZE]) {
        let crc = crc32c::checksum(&block[..OFF_CHECKSUM]);
        block[OFF_CHECKSUM..].copy_from_slice(&crc.to_le_bytes());
    }

    #[test]
    fn round_trips() {
        let sb = sample();
        assert_eq!(Superblock::decode(&encoded(&sb)), Ok(sb));
        assert_eq!(sb.label.as_str(), "pmem-home");
        assert!(!sb.read_only_required());
    }

    #[test]
    fn every_single_bit_flip_is_rejected() {
        let block = encoded(&sample());
        for bit in 0..BLOCK_SIZE * 8 {
            let mut bad = block;
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(
                Superblock::decode(&bad).is_err(),
                "bit {} flipped went unnoticed",
                bit
            );
        }
    }

    #[test]
    fn rejects_wrong_identity_and_versions() {
        let sb = sample();
        assert_eq!(
            Superblock::decode(&[0u8; 100]),
            Err(SuperblockError::Truncated)
        );
        assert_eq!(
            Superblock::decode(&[0u8; BLOCK_SIZE]),
            Err(SuperblockError::BadMagic)
        );

        let mut block = encoded(&sb);
        block[OFF_VERSION_MAJOR] = 2;
        reseal(&mut block);
        assert_eq!(
            Superblock::decode(&block),
            Err(SuperblockError::UnsupportedVersion(2))
        );

        let mut block = encoded(&sb);
        block[OFF_BLOCK_SHIFT] = 16;
        reseal(&mut block);
        assert_eq!(
            Superblock::decode(&block),
            Err(SuperblockError::UnsupportedBlockSize(16))
        );

        let mut block = encoded(&sb);
        block[OFF_VERSION_MINOR] = 7;
        reseal(&mut block);
        assert_eq!(Superblock::decode(&block).map(|s| s.version_minor), Ok(7));
    }

    #[test]
    fn features_decide_between_refuse_read_only_and_ignore() {
        let sb = Superblock {
            feature_incompat: INCOMPAT_SUPPORTED | 1 << 40,
            ..sample()
        };
        assert_eq!(
            Superblock::decode(&encoded(&sb)),
            Err(SuperblockError::UnknownIncompat(1 << 40))
        );
        let sb = Superblock {
            feature_ro_compat: 1 << 3,
            ..sample()
        };
        assert!(Superblock::decode(&encoded(&sb))
            .unwrap()
            .read_only_required());
        let sb = Superblock {
            feature_compat: u64::MAX,
            ..sample()
        };
        assert!(!Superblock::decode(&encoded(&sb))
            .unwrap()
            .read_only_required());
    }

    #[test]
    fn rejects_crafted_values_with_valid_checksums() {
        let good = sample();
        let data_end = good.layout.block_count;
        let cases = [
            Superblock {
                rmap_root: 0,
                ..good
            },
            Superblock {
                refcount_root: data_end,
                ..good
            },
            Superblock {
                inode_tree_root: good.layout.summary_start,
                ..good
            },
            Superblock {
                free_blocks: good.layout.data_blocks() + 1,
                ..good
            },
            Superblock {
                root_ino: 0,
                ..good
            },
            Superblock {
                state: 1 << 5,
                ..good
            },
        ];
        for bad in cases {
            assert!(matches!(
                Superblock::decode(&encoded(&bad)),
                Err(SuperblockError::BadField(_))
            ));
        }
        let bad = Superblock {
            layout: Layout {
                data_start: 0,
                ..good.layout
            },
            ..good
        };
        assert!(matches!(
            Superblock::decode(&encoded(&bad)),
            Err(SuperblockError::BadLayout(_))
        ));

        let mut block = encoded(&good);
        block[OFF_RESERVED + 100] = 1;
        reseal(&mut block);
        assert_eq!(
            Superblock::decode(&block),
            Err(SuperblockError::NonzeroReserved)
        );

        let mut block = encoded(&good);
        block[OFF_LABEL + 20] = b'x'; // after the NUL terminator
        reseal(&mut block);
        assert_eq!(Superblock::decode(&block), Err(SuperblockError::BadLabel));
        let mut block = encoded(&good);
        block[OFF_LABEL] = 0xff; // not UTF-8
        reseal(&mut block);
        assert_eq!(Superblock::decode(&block), Err(SuperblockError::BadLabel));
    }

    #[test]
    fn labels() {
        assert_eq!(
            Label::new(&"x".repeat(31)).map(|l| l.as_str().len()),
            Some(31)
        );
        assert_eq!(Label::new(&"x".repeat(32)), None);
        assert_eq!(Label::new("a\0b"), None);
        assert_eq!(Label::new("").map(|l| l.as_str().len()), Some(0));
        assert_eq!(Label::new("pmém").map(|l| l.as_str().len()), Some(5));
    }
}
