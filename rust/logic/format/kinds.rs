// SPDX-License-Identifier: GPL-2.0

//! The tree kinds of an oxdax filesystem and their key and value encodings.
//! Keys are big-endian (byte order = numeric order); values little-endian.

use super::{btree::TreeKind, get_u32, get_u64, put, siphash};

/// Inode chunks: chunk start block → which of its 64 slots are in use.
pub struct InodeChunks;
impl TreeKind for InodeChunks {
    const KIND: u8 = 1;
    const KEY: usize = 8;
    const VALUE: usize = 16;
}

/// A file's extent map: file block → (physical block, length, flags).
pub struct Extents;
impl TreeKind for Extents {
    const KIND: u8 = 2;
    const KEY: usize = 8;
    const VALUE: usize = 16;
}

/// A directory: (name hash, collision index) → entry.
pub struct Directory;
impl TreeKind for Directory {
    const KIND: u8 = 3;
    const KEY: usize = 12;
    const VALUE: usize = DIRENT_BYTES;
}

/// The reverse map: (start block, owner, file offset) → (length, flags).
pub struct ReverseMap;
impl TreeKind for ReverseMap {
    const KIND: u8 = 4;
    const KEY: usize = 24;
    const VALUE: usize = 16;
}

/// Reference counts of shared blocks: start block → (length, count >= 2).
pub struct RefCounts;
impl TreeKind for RefCounts {
    const KIND: u8 = 5;
    const KEY: usize = 8;
    const VALUE: usize = 16;
}

/// Node owner of the filesystem-wide trees (per-inode trees use the inode
/// number, which is never this large).
pub const OWNER_INODE_CHUNKS: u64 = u64::MAX - 1;
/// Node owner of the reverse-map tree.
pub const OWNER_REVERSE_MAP: u64 = u64::MAX - 2;
/// Node owner of the refcount tree.
pub const OWNER_REFCOUNTS: u64 = u64::MAX - 3;

/// A big-endian `u64` key.
pub fn block_key(block: u64) -> [u8; 8] {
    block.to_be_bytes()
}

/// Reads a big-endian `u64` key.
pub fn parse_block_key(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.get(..8)?.try_into().ok()?))
}

/// Extent flag: allocated but unwritten (reads as zeros).
pub const EXTENT_UNWRITTEN: u32 = 1 << 0;

/// A mapping of file blocks to device blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    /// First device block.
    pub physical: u64,
    /// Blocks in the extent.
    pub len: u32,
    /// `EXTENT_*` flags.
    pub flags: u32,
}

impl Extent {
    /// The tree value.
    pub fn encode(&self) -> [u8; 16] {
        let mut value = [0u8; 16];
        put(&mut value, 0, &self.physical.to_le_bytes());
        put(&mut value, 8, &self.len.to_le_bytes());
        put(&mut value, 12, &self.flags.to_le_bytes());
        value
    }

    /// From a tree value; `None` for unknown flags or an empty extent.
    pub fn decode(value: &[u8]) -> Option<Self> {
        let extent = Self {
            physical: get_u64(value, 0)?,
            len: get_u32(value, 8)?,
            flags: get_u32(value, 12)?,
        };
        (extent.len > 0 && extent.flags & !EXTENT_UNWRITTEN == 0).then_some(extent)
    }
}

/// Reverse-map flag: the owner is metadata, not file data.
pub const RMAP_METADATA: u64 = 1 << 0;

/// Owner of a range of device blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RmapKey {
    /// First device block.
    pub start: u64,
    /// Inode (data, or its per-inode tree nodes) or `OWNER_*` (metadata).
    pub owner: u64,
    /// File block of `start` for data; 0 for metadata.
    pub offset: u64,
}

impl RmapKey {
    /// The tree key.
    pub fn encode(&self) -> [u8; 24] {
        let mut key = [0u8; 24];
        put(&mut key, 0, &self.start.to_be_bytes());
        put(&mut key, 8, &self.owner.to_be_bytes());
        put(&mut key, 16, &self.offset.to_be_bytes());
        key
    }

    /// From a tree key.
    pub fn decode(key: &[u8]) -> Option<Self> {
        Some(Self {
            start: parse_block_key(key)?,
            owner: parse_block_key(key.get(8..)?)?,
            offset: parse_block_key(key.get(16..)?)?,
        })
    }
}

/// Bytes of a directory entry value: inode (8), type (1), name length (1),
/// name (up to 255), padding.
pub const DIRENT_BYTES: usize = 268;
/// Longest name.
pub const NAME_MAX: usize = 255;

/// Why a name cannot be a directory entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameError {
    /// Empty, `.` or `..` (implicit entries, never stored).
    Reserved,
    /// Longer than 255 bytes (ENAMETOOLONG).
    TooLong,
    /// Contains `/` or NUL.
    BadByte,
}

/// Checks that `name` may be stored in a directory.
pub fn check_name(name: &[u8]) -> Result<(), NameError> {
    if name.is_empty() || name == b"." || name == b".." {
        return Err(NameError::Reserved);
    }
    if name.len() > NAME_MAX {
        return Err(NameError::TooLong);
    }
    if name.iter().any(|&b| b == b'/' || b == 0) {
        return Err(NameError::BadByte);
    }
    Ok(())
}

/// Bytes of a directory key that are the name's hash (the rest is the
/// collision index).
pub const DIRENT_HASH_BYTES: usize = 8;

/// The directory key of `name` with collision index `index`, hashed with
/// the filesystem's `uuid` as SipHash key. Entries whose names hash alike
/// take the next free index; lookup scans the indexes of one hash.
pub fn dirent_key(uuid: &[u8; 16], name: &[u8], index: u32) -> [u8; 12] {
    let mut key = [0u8; 12];
    put(&mut key, 0, &siphash::siphash24(uuid, name).to_be_bytes());
    put(&mut key, 8, &index.to_be_bytes());
    key
}

/// A directory entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dirent<'a> {
    /// Inode the name refers to.
    pub ino: u64,
    /// `DT_*` type of that inode.
    pub dtype: u8,
    /// The name.
    pub name: &'a [u8],
}

impl<'a> Dirent<'a> {
    /// The tree value; `None` if the name is not storable.
    pub fn encode(&self) -> Option<[u8; DIRENT_BYTES]> {
        check_name(self.name).ok()?;
        let mut value = [0u8; DIRENT_BYTES];
        put(&mut value, 0, &self.ino.to_le_bytes());
        put(&mut value, 8, &[self.dtype, self.name.len() as u8]);
        put(&mut value, 10, self.name);
        Some(value)
    }

    /// From a tree value; `None` if damaged (bad name, nonzero padding).
    pub fn decode(value: &'a [u8]) -> Option<Self> {
        let len = usize::from(*value.get(9)?);
        let name = value.get(10..10 + len)?;
        check_name(name).ok()?;
        if value.get(10 + len..DIRENT_BYTES)?.iter().any(|&b| b != 0) {
            return None;
        }
        let ino = get_u64(value, 0)?;
        (ino != 0).then_some(Self {
            ino,
            dtype: *value.get(8)?,
            name,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logic::format::btree::{TreeKind, HEADER_BYTES};
    use crate::logic::format::BLOCK_SIZE;

    #[test]
    fn kinds_are_distinct_and_fit() {
        fn fan_out<K: TreeKind>() -> usize {
            (BLOCK_SIZE - HEADER_BYTES) / (K::KEY + K::VALUE)
        }
        let kinds = [
            InodeChunks::KIND,
            Extents::KIND,
            Directory::KIND,
            ReverseMap::KIND,
            RefCounts::KIND,
        ];
        for (i, a) in kinds.iter().enumerate() {
            assert!(kinds[i + 1..].iter().all(|b| a != b));
        }
        assert_eq!(fan_out::<Directory>(), 14);
        assert_eq!(fan_out::<ReverseMap>(), 101);
        assert_eq!(fan_out::<Extents>(), 169);
    }

    #[test]
    fn keys_sort_numerically() {
        let a = RmapKey {
            start: 5,
            owner: u64::MAX,
            offset: 0,
        }
        .encode();
        let b = RmapKey {
            start: 6,
            owner: 1,
            offset: 0,
        }
        .encode();
        let c = RmapKey {
            start: 6,
            owner: 1,
            offset: 1 << 40,
        }
        .encode();
        assert!(a < b && b < c);
        assert_eq!(
            RmapKey::decode(&c),
            Some(RmapKey {
                start: 6,
                owner: 1,
                offset: 1 << 40
            })
        );
        assert!(block_key(255) < block_key(256));
        assert_eq!(parse_block_key(&block_key(1 << 33)), Some(1 << 33));
    }

    #[test]
    fn extents_round_trip_and_reject_damage() {
        let e = Extent {
            physical: 1 << 30,
            len: 512,
            flags: EXTENT_UNWRITTEN,
        };
        assert_eq!(Extent::decode(&e.encode()), Some(e));
        assert_eq!(Extent::decode(&Extent { len: 0, ..e }.encode()), None);
        assert_eq!(Extent::decode(&Extent { flags: 2, ..e }.encode()), None);
    }

    #[test]
    fn names() {
        assert_eq!(check_name(b"file.txt"), Ok(()));
        assert_eq!(check_name(&[b'x'; 255]), Ok(()));
        assert_eq!(check_name(&[b'x'; 256]), Err(NameError::TooLong));
        assert_eq!(check_name(b"."), Err(NameError::Reserved));
        assert_eq!(check_name(b".."), Err(NameError::Reserved));
        assert_eq!(check_name(b""), Err(NameError::Reserved));
        assert_eq!(check_name(b"a/b"), Err(NameError::BadByte));
        assert_eq!(check_name(b"a\0b"), Err(NameError::BadByte));
    }

    #[test]
    fn dirents_round_trip_and_reject_damage() {
        let long = [b'n'; 255];
        for name in [&b"a"[..], b"hello world", &long] {
            let d = Dirent {
                ino: 4242,
                dtype: 8,
                name,
            };
            let value = d.encode().unwrap();
            assert_eq!(Dirent::decode(&value), Some(d));
        }
        let mut value = Dirent {
            ino: 1,
            dtype: 4,
            name: b"dir",
        }
        .encode()
        .unwrap();
        value[200] = 1;
        assert_eq!(Dirent::decode(&value), None);
        let mut value = Dirent {
            ino: 1,
            dtype: 4,
            name: b"dir",
        }
        .encode()
        .unwrap();
        value[11] = b'/';
        assert_eq!(Dirent::decode(&value), None);
        assert_eq!(
            Dirent {
                ino: 0,
                dtype: 8,
                name: b"x"
            }
            .encode()
            .and_then(|v| Dirent::decode(&v).map(|_| ())),
            None
        );
        assert_eq!(
            Dirent {
                ino: 1,
                dtype: 8,
                name: b".."
            }
            .encode(),
            None
        );
    }

    #[test]
    fn dirent_keys_depend_on_the_filesystem() {
        let a = dirent_key(&[1; 16], b"name", 0);
        let b = dirent_key(&[2; 16], b"name", 0);
        assert_ne!(a[..8], b[..8]);
        assert_eq!(a[..8], dirent_key(&[1; 16], b"name", 7)[..8]);
        assert!(dirent_key(&[1; 16], b"name", 0) < dirent_key(&[1; 16], b"name", 1));
    }
}
