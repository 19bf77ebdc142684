// SPDX-License-Identifier: GPL-2.0

//! The on-media format: the single definition shared by the module,
//! `mkfs.oxdax` and `fsck.oxdax` (Documentation/oxdax/format.rst).

pub mod btree;
pub mod crc32c;
pub mod inode;
pub mod journal;
pub mod kinds;
pub mod layout;
pub mod mkfs;
pub mod siphash;
pub mod space;
pub mod superblock;

/// Log2 of the filesystem block size.
pub const BLOCK_SHIFT: u32 = 12;
/// The filesystem block size: the page size, so a block maps as one PTE.
pub const BLOCK_SIZE: usize = 1 << BLOCK_SHIFT;
/// Blocks per 2 MiB chunk: the unit of PMD mappings and of the free-space
/// summary.
pub const CHUNK_BLOCKS: u64 = 512;
/// Blocks in 1 GiB: a PUD mapping needs this many in one run, aligned.
pub const GIB_BLOCKS: u64 = 512 * CHUNK_BLOCKS;

/// Reads a little-endian `u64` at `offset` of `bytes`, if it is inside.
pub(crate) fn get_u64(bytes: &[u8], offset: usize) -> Option<u64> {
    let raw = bytes.get(offset..offset.checked_add(8)?)?;
    let mut word = [0u8; 8];
    word.copy_from_slice(raw);
    Some(u64::from_le_bytes(word))
}

/// Reads a little-endian `u32` at `offset` of `bytes`, if it is inside.
pub(crate) fn get_u32(bytes: &[u8], offset: usize) -> Option<u32> {
    let raw = bytes.get(offset..offset.checked_add(4)?)?;
    let mut word = [0u8; 4];
    word.copy_from_slice(raw);
    Some(u32::from_le_bytes(word))
}

/// Reads a little-endian `u16` at `offset` of `bytes`, if it is inside.
pub(crate) fn get_u16(bytes: &[u8], offset: usize) -> Option<u16> {
    let raw = bytes.get(offset..offset.checked_add(2)?)?;
    Some(u16::from_le_bytes([raw[0], raw[1]]))
}

/// Writes `value` little-endian at `offset` of `bytes` (which the caller
/// sized; a write outside is dropped, and the tests catch such a layout).
pub(crate) fn put(bytes: &mut [u8], offset: usize, value: &[u8]) {
    if let Some(dest) = offset
        .checked_add(value.len())
        .and_then(|end| bytes.get_mut(offset..end))
    {
        dest.copy_from_slice(value);
    }
}
