// SPDX-License-Identifier: GPL-2.0

//! Host build of oxdax's pure logic (`rust/logic/`), for `cargo test` and the
//! userspace tools. The module compiles the very same files as `crate::logic`.

#![no_std]

#[cfg(test)]
extern crate std;

#[path = "logic/mod.rs"]
pub mod logic;

pub use logic::*;

/// The host's CRC-32C: the portable one (the module uses the kernel's).
pub type Crc32cImpl = logic::format::crc32c::Table;

extern crate alloc;

/// A volume's working memory ([`fs::Scratch`]) on the heap, for the host
/// tests and the userspace tools (the module allocates its own).
pub struct HeapScratch {
    shadows: alloc::vec::Vec<[u8; format::BLOCK_SIZE]>,
    originals: alloc::vec::Vec<[u8; format::BLOCK_SIZE]>,
    tags: alloc::vec::Vec<u64>,
    lines: alloc::vec::Vec<u64>,
    log: alloc::vec::Vec<u8>,
    deferred: alloc::vec::Vec<u64>,
    reservations: alloc::vec::Vec<u64>,
    spare: alloc::boxed::Box<[u8; format::BLOCK_SIZE]>,
    checked: alloc::vec::Vec<core::sync::atomic::AtomicU64>,
    cache: core::cell::RefCell<HeapCache>,
    lookups: core::cell::RefCell<HeapLookups>,
}

/// The lookup caches' memory on the heap.
struct HeapLookups {
    inodes: alloc::vec::Vec<fs::InodeSlot>,
    mappings: alloc::vec::Vec<fs::MappingSlot>,
}

impl fs::LookupSlots for HeapLookups {
    fn inodes(&mut self) -> &mut [fs::InodeSlot] {
        &mut self.inodes
    }
    fn mappings(&mut self) -> &mut [fs::MappingSlot] {
        &mut self.mappings
    }
}

/// A metadata cache's memory on the heap.
struct HeapCache {
    slots: alloc::vec::Vec<[u8; format::BLOCK_SIZE]>,
    tags: alloc::vec::Vec<u64>,
}

impl fs::CacheSlots for HeapCache {
    fn slots(&mut self) -> (&mut [[u8; format::BLOCK_SIZE]], &mut [u64]) {
        (&mut self.slots, &mut self.tags)
    }
}

impl HeapScratch {
    /// Zeroed buffers of the sizes the volume asks for.
    pub fn new() -> Self {
        Self {
            shadows: alloc::vec![[0; format::BLOCK_SIZE]; fs::TX_MAX_BLOCKS],
            originals: alloc::vec![[0; format::BLOCK_SIZE]; fs::TX_MAX_BLOCKS],
            tags: alloc::vec![0; fs::TX_MAX_BLOCKS],
            lines: alloc::vec![0; fs::TX_MAX_BLOCKS],
            log: alloc::vec![0; fs::TX_LOG_BYTES],
            deferred: alloc::vec![0; fs::DEFERRED_WORDS],
            reservations: alloc::vec![0; fs::RESERVATION_WORDS],
            spare: alloc::boxed::Box::new([0; format::BLOCK_SIZE]),
            checked: (0..fs::MIN_CACHE_SLOTS * fs::CHECKED_SLOTS_PER_CACHE_SLOT)
                .map(|_| core::sync::atomic::AtomicU64::new(0))
                .collect(),
            cache: core::cell::RefCell::new(HeapCache {
                slots: alloc::vec![[0; format::BLOCK_SIZE]; fs::MIN_CACHE_SLOTS],
                tags: alloc::vec![0; fs::MIN_CACHE_SLOTS],
            }),
            lookups: core::cell::RefCell::new(HeapLookups {
                inodes: alloc::vec![None; fs::INODE_CACHE_SLOTS],
                mappings: alloc::vec![None; fs::MAPPING_CACHE_SLOTS],
            }),
        }
    }
}

impl Default for HeapScratch {
    fn default() -> Self {
        Self::new()
    }
}

impl fs::Scratch for HeapScratch {
    fn parts(&mut self) -> fs::Parts<'_> {
        fs::Parts {
            shadows: &mut self.shadows,
            originals: &mut self.originals,
            tags: &mut self.tags,
            lines: &mut self.lines,
            log: &mut self.log,
            deferred: &mut self.deferred,
            spare: &mut self.spare,
            checked: &self.checked,
            cache: &self.cache,
            lookups: &self.lookups,
            reservations: &mut self.reservations,
        }
    }

    fn checked_nodes(&self) -> &[core::sync::atomic::AtomicU64] {
        &self.checked
    }

    fn cache(&self) -> &core::cell::RefCell<dyn fs::CacheSlots + '_> {
        &self.cache
    }

    fn lookup_slots(&self) -> &core::cell::RefCell<dyn fs::LookupSlots + '_> {
        &self.lookups
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn version_file_matches_cargo_manifest() {
        assert_eq!(super::VERSION, env!("CARGO_PKG_VERSION"));
    }
}
