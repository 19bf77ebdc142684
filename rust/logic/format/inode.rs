// SPDX-License-Identifier: GPL-2.0

//! Inodes: 256-byte records in 64-slot chunks of four blocks. An inode
//! number encodes where its record is, so finding one is arithmetic.

use super::{crc32c, get_u32, get_u64, put, BLOCK_SIZE};

/// Bytes of an inode record.
pub const INODE_BYTES: usize = 256;
/// Records per block.
pub const INODES_PER_BLOCK: u64 = (BLOCK_SIZE / INODE_BYTES) as u64;
/// Blocks per inode chunk.
pub const CHUNK_INODE_BLOCKS: u64 = 4;
/// Records per chunk.
pub const INODES_PER_CHUNK: u64 = INODES_PER_BLOCK * CHUNK_INODE_BLOCKS;
/// Largest file size the format allows (2^48 bytes, the largest device).
pub const MAX_FILE_SIZE: u64 = 1 << 48;

const SLOT_BITS: u32 = 6;

/// Where an inode's record is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    /// First block of the chunk.
    pub chunk: u64,
    /// Slot in the chunk (0..64).
    pub slot: u64,
    /// Block holding the record.
    pub block: u64,
    /// Byte offset of the record in that block.
    pub offset: usize,
}

/// The inode number of `slot` in the chunk starting at block `chunk`.
pub fn ino(chunk: u64, slot: u64) -> Option<u64> {
    if slot >= INODES_PER_CHUNK || chunk == 0 || chunk >> (64 - SLOT_BITS) != 0 {
        return None;
    }
    Some(chunk << SLOT_BITS | slot)
}

/// Where inode `ino` lives (its chunk must also be recorded as an inode
/// chunk: the caller checks that against the inode-chunk tree).
pub fn location(ino: u64) -> Option<Location> {
    let chunk = ino >> SLOT_BITS;
    let slot = ino & (INODES_PER_CHUNK - 1);
    if chunk == 0 {
        return None;
    }
    Some(Location {
        chunk,
        slot,
        block: chunk + slot / INODES_PER_BLOCK,
        offset: (slot % INODES_PER_BLOCK) as usize * INODE_BYTES,
    })
}

/// File types, as in `S_IFMT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileType {
    /// Regular file.
    Regular,
    /// Directory.
    Directory,
    /// Symbolic link.
    Symlink,
    /// Character device.
    CharDevice,
    /// Block device.
    BlockDevice,
    /// Named pipe.
    Fifo,
    /// Unix socket.
    Socket,
}

/// `S_IFMT`.
pub const S_IFMT: u32 = 0o170000;

impl FileType {
    /// The type of `mode`, if it is one.
    pub fn of_mode(mode: u32) -> Option<Self> {
        Some(match mode & S_IFMT {
            0o100000 => Self::Regular,
            0o040000 => Self::Directory,
            0o120000 => Self::Symlink,
            0o020000 => Self::CharDevice,
            0o060000 => Self::BlockDevice,
            0o010000 => Self::Fifo,
            0o140000 => Self::Socket,
            _ => return None,
        })
    }

    /// The `DT_*` value readdir reports (and directory entries store).
    pub fn dtype(self) -> u8 {
        match self {
            Self::Fifo => 1,
            Self::CharDevice => 2,
            Self::Directory => 4,
            Self::BlockDevice => 6,
            Self::Regular => 8,
            Self::Symlink => 10,
            Self::Socket => 12,
        }
    }
}

/// A timestamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Timestamp {
    /// Seconds since the epoch.
    pub sec: i64,
    /// Nanoseconds, below 10^9.
    pub nsec: u32,
}

/// A decoded, validated inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Inode {
    /// Type and permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Hard links.
    pub nlink: u32,
    /// Size in bytes.
    pub size: u64,
    /// Blocks allocated to the file (st_blocks / 8).
    pub blocks: u64,
    /// Last access.
    pub atime: Timestamp,
    /// Last modification.
    pub mtime: Timestamp,
    /// Last status change.
    pub ctime: Timestamp,
    /// Creation.
    pub btime: Timestamp,
    /// Generation, for file handles.
    pub generation: u32,
    /// Device number of device files, in the kernel's 32-bit encoding
    /// ([`encode_dev`]).
    pub rdev: u32,
    /// Root of the extent tree (files, symlinks) or entry tree
    /// (directories); 0 when there is none yet.
    pub map_root: u64,
    /// Parent directory (directories only; 0 otherwise).
    pub parent: u64,
}

/// Why a record is not a valid inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InodeError {
    /// Checksum mismatch (or a record of another inode number).
    Checksum,
    /// Mode with no valid type or stray bits.
    Mode,
    /// A value out of range (nanoseconds, size, links, parent).
    Field,
    /// Nonzero reserved bytes.
    Reserved,
}

const OFF_MODE: usize = 0x00;
const OFF_UID: usize = 0x04;
const OFF_GID: usize = 0x08;
const OFF_NLINK: usize = 0x0c;
const OFF_SIZE: usize = 0x10;
const OFF_BLOCKS: usize = 0x18;
const OFF_SECS: usize = 0x20; // atime, mtime, ctime, btime: i64 each
const OFF_NSECS: usize = 0x40; // u32 each, same order
const OFF_GENERATION: usize = 0x50;
const OFF_RDEV: usize = 0x54;
const OFF_MAP_ROOT: usize = 0x58;
const OFF_PARENT: usize = 0x60;
const OFF_RESERVED: usize = 0x68;
const OFF_CRC: usize = INODE_BYTES - 4;

fn record_crc(ino: u64, record: &[u8]) -> u32 {
    crc32c::update(
        crc32c::checksum(&ino.to_le_bytes()),
        record.get(..OFF_CRC).unwrap_or(&[]),
    )
}

impl Inode {
    /// Serializes the record of inode `ino`; the checksum covers the inode
    /// number, so a record copied to another slot is caught.
    pub fn encode(&self, ino: u64, out: &mut [u8; INODE_BYTES]) {
        out.fill(0);
        put(out, OFF_MODE, &self.mode.to_le_bytes());
        put(out, OFF_UID, &self.uid.to_le_bytes());
        put(out, OFF_GID, &self.gid.to_le_bytes());
        put(out, OFF_NLINK, &self.nlink.to_le_bytes());
        put(out, OFF_SIZE, &self.size.to_le_bytes());
        put(out, OFF_BLOCKS, &self.blocks.to_le_bytes());
        for (i, t) in [self.atime, self.mtime, self.ctime, self.btime]
            .iter()
            .enumerate()
        {
            put(out, OFF_SECS + 8 * i, &t.sec.to_le_bytes());
            put(out, OFF_NSECS + 4 * i, &t.nsec.to_le_bytes());
        }
        put(out, OFF_GENERATION, &self.generation.to_le_bytes());
        put(out, OFF_RDEV, &self.rdev.to_le_bytes());
        put(out, OFF_MAP_ROOT, &self.map_root.to_le_bytes());
        put(out, OFF_PARENT, &self.parent.to_le_bytes());
        let crc = record_crc(ino, out);
        put(out, OFF_CRC, &crc.to_le_bytes());
    }

    /// Decodes the record of inode `ino`: `Ok(None)` for a free slot (all
    /// zero), an error for anything damaged.
    pub fn decode(ino: u64, record: &[u8]) -> Result<Option<Self>, InodeError> {
        let record = record.get(..INODE_BYTES).ok_or(InodeError::Field)?;
        if record.iter().all(|&b| b == 0) {
            return Ok(None);
        }
        if get_u32(record, OFF_CRC) != Some(record_crc(ino, record)) {
            return Err(InodeError::Checksum);
        }
        let u32_at = |o| get_u32(record, o).ok_or(InodeError::Field);
        let u64_at = |o| get_u64(record, o).ok_or(InodeError::Field);
        let mut times = [Timestamp::default(); 4];
        for (i, t) in times.iter_mut().enumerate() {
            t.sec = u64_at(OFF_SECS + 8 * i)? as i64;
            t.nsec = u32_at(OFF_NSECS + 4 * i)?;
        }
        if record
            .get(OFF_RESERVED..OFF_CRC)
            .map_or(true, |r| r.iter().any(|&b| b != 0))
        {
            return Err(InodeError::Reserved);
        }
        let inode = Self {
            mode: u32_at(OFF_MODE)?,
            uid: u32_at(OFF_UID)?,
            gid: u32_at(OFF_GID)?,
            nlink: u32_at(OFF_NLINK)?,
            size: u64_at(OFF_SIZE)?,
            blocks: u64_at(OFF_BLOCKS)?,
            atime: times[0],
            mtime: times[1],
            ctime: times[2],
            btime: times[3],
            generation: u32_at(OFF_GENERATION)?,
            rdev: u32_at(OFF_RDEV)?,
            map_root: u64_at(OFF_MAP_ROOT)?,
            parent: u64_at(OFF_PARENT)?,
        };
        inode.check()?;
        Ok(Some(inode))
    }

    /// Whether [`Self::decode`] would accept this record: what is never
    /// written, so that every record written reads back as it was.
    pub fn check(&self) -> Result<(), InodeError> {
        let times = [self.atime, self.mtime, self.ctime, self.btime];
        if times.iter().any(|t| t.nsec >= 1_000_000_000) {
            return Err(InodeError::Field);
        }
        let file_type = FileType::of_mode(self.mode).ok_or(InodeError::Mode)?;
        if self.mode & !(S_IFMT | 0o7777) != 0 {
            return Err(InodeError::Mode);
        }
        let is_dir = file_type == FileType::Directory;
        if self.size > MAX_FILE_SIZE || is_dir != (self.parent != 0) {
            return Err(InodeError::Field);
        }
        Ok(())
    }

    /// The file type (valid for every decoded inode).
    pub fn file_type(&self) -> Option<FileType> {
        FileType::of_mode(self.mode)
    }
}

/// A kernel `dev_t` (major in the top 12 bits, minor in the low 20) in
/// the 32-bit encoding inode records keep (`new_encode_dev`: stable across
/// kernels, and what `stat` and `mknod` exchange).
pub const fn encode_dev(dev: u32) -> u32 {
    let (major, minor) = (dev >> 20, dev & 0xfffff);
    (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12)
}

/// The kernel `dev_t` of a record's 32-bit device number
/// (`new_decode_dev`).
pub const fn decode_dev(encoded: u32) -> u32 {
    let major = (encoded & 0xfff00) >> 8;
    let minor = (encoded & 0xff) | ((encoded >> 12) & 0xfff00);
    (major << 20) | minor
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `makedev(major, minor)` as the kernel's `dev_t` (`MKDEV`).
    fn mkdev(major: u32, minor: u32) -> u32 {
        major << 20 | minor
    }

    #[test]
    fn device_numbers_encode_as_the_kernel_does() {
        // Values `new_encode_dev` gives (and `stat`'s st_rdev shows):
        // /dev/sda1 8:1, /dev/null 1:3, a large minor 259:65536.
        assert_eq!(encode_dev(mkdev(8, 1)), 0x801);
        assert_eq!(encode_dev(mkdev(1, 3)), 0x103);
        assert_eq!(encode_dev(mkdev(259, 65536)), 0x1001_0300);
        for (major, minor) in [(0, 0), (8, 1), (4095, 0xfffff), (259, 65536), (1, 256)] {
            let dev = mkdev(major, minor);
            assert_eq!(decode_dev(encode_dev(dev)), dev, "{major}:{minor}");
        }
    }

    fn sample() -> Inode {
        Inode {
            mode: 0o100644,
            uid: 1000,
            gid: 100,
            nlink: 2,
            size: 12345,
            blocks: 4,
            atime: Timestamp {
                sec: 1_790_000_000,
                nsec: 1,
            },
            mtime: Timestamp {
                sec: -5,
                nsec: 999_999_999,
            },
            ctime: Timestamp { sec: 0, nsec: 0 },
            btime: Timestamp { sec: 1, nsec: 2 },
            generation: 77,
            rdev: 0,
            map_root: 9000,
            parent: 0,
        }
    }

    #[test]
    fn numbers_encode_locations() {
        let ino = ino(1536, 37).unwrap();
        assert_eq!(
            location(ino),
            Some(Location {
                chunk: 1536,
                slot: 37,
                block: 1538,
                offset: 5 * 256
            })
        );
        assert_eq!(location(ino).map(|l| (l.chunk, l.slot)), Some((1536, 37)));
        assert_eq!(super::ino(1536, 64), None);
        assert_eq!(super::ino(0, 1), None);
        assert_eq!(location(5), None);
        for slot in 0..64 {
            let loc = location(super::ino(2048, slot).unwrap()).unwrap();
            assert!(loc.block >= 2048 && loc.block < 2048 + CHUNK_INODE_BLOCKS);
            assert!(loc.offset + INODE_BYTES <= BLOCK_SIZE);
        }
    }

    #[test]
    fn round_trips_and_free_slots() {
        let mut record = [0u8; INODE_BYTES];
        sample().encode(98_365, &mut record);
        assert_eq!(Inode::decode(98_365, &record), Ok(Some(sample())));
        assert_eq!(Inode::decode(98_365, &[0u8; INODE_BYTES]), Ok(None));
        // The same bytes in another slot are not that slot's inode.
        assert_eq!(Inode::decode(98_366, &record), Err(InodeError::Checksum));
        let dir = Inode {
            mode: 0o040755,
            parent: 98_365,
            ..sample()
        };
        dir.encode(98_400, &mut record);
        assert_eq!(
            Inode::decode(98_400, &record).unwrap().unwrap().file_type(),
            Some(FileType::Directory)
        );
    }

    #[test]
    fn every_bit_flip_and_bad_field_is_caught() {
        let mut record = [0u8; INODE_BYTES];
        sample().encode(7 << 6, &mut record);
        for bit in 0..INODE_BYTES * 8 {
            let mut bad = record;
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(Inode::decode(7 << 6, &bad).is_err(), "bit {}", bit);
        }
        let cases = [
            (
                Inode {
                    mode: 0o000644,
                    ..sample()
                },
                InodeError::Mode,
            ),
            (
                Inode {
                    mode: 0o100644 | 1 << 20,
                    ..sample()
                },
                InodeError::Mode,
            ),
            (
                Inode {
                    size: MAX_FILE_SIZE + 1,
                    ..sample()
                },
                InodeError::Field,
            ),
            (
                Inode {
                    parent: 5,
                    ..sample()
                },
                InodeError::Field,
            ),
            (
                Inode {
                    mode: 0o040755,
                    parent: 0,
                    ..sample()
                },
                InodeError::Field,
            ),
            (
                Inode {
                    atime: Timestamp {
                        sec: 0,
                        nsec: 1_000_000_000,
                    },
                    ..sample()
                },
                InodeError::Field,
            ),
        ];
        for (inode, error) in cases {
            inode.encode(99, &mut record);
            assert_eq!(Inode::decode(99, &record), Err(error), "{:?}", inode);
        }
    }
}
