// SPDX-License-Identifier: GPL-2.0

//! The device as the filesystem logic sees it: the whole DAX mapping
//! ([`Media`]) and the working memory of its transactions ([`Scratch`]).

use core::sync::atomic::AtomicU64;
use kernel::prelude::*;

use crate::{
    logic::{
        format::BLOCK_SIZE,
        fs::{
            Media, Parts, Scratch, CHECKED_NODE_SLOTS, DEFERRED_WORDS, TX_LOG_BYTES, TX_MAX_BLOCKS,
        },
    },
    sys::memory::{self, PmemMemory},
};

/// The mapped device. Valid while the DAX device is alive: the filesystem
/// calls the volume only inside a DAX read section that found it alive.
pub(crate) struct PmemMedia {
    memory: PmemMemory,
}

impl PmemMedia {
    /// The media over a whole-device mapping.
    pub(crate) fn new(memory: PmemMemory) -> Self {
        Self { memory }
    }
}

impl Media for PmemMedia {
    fn size(&self) -> u64 {
        self.memory.len()
    }

    fn region(&self, offset: u64, len: usize) -> Option<&[u8]> {
        self.memory.region(offset, len)
    }

    fn write(&self, offset: u64, data: &[u8]) -> bool {
        self.memory.write(offset, data).is_ok()
    }

    fn zero(&self, offset: u64, len: u64) -> bool {
        usize::try_from(len)
            .ok()
            .and_then(|len| self.memory.zero(offset, len).ok())
            .is_some()
    }

    fn fence(&self) {
        memory::fence();
    }

    fn relax(&self) {
        crate::sys::cond_resched();
    }
}

/// Transaction buffers, allocated once per mount (about 1 MiB: vmalloc).
pub(crate) struct Buffers {
    shadows: VVec<u8>,
    numbers: KVec<u64>,
    log: VVec<u8>,
    deferred: KVec<u64>,
    spare: KBox<[u8; BLOCK_SIZE]>,
    checked: KVec<AtomicU64>,
}

impl Buffers {
    /// Zeroed buffers of the sizes the logic asks for.
    pub(crate) fn new() -> Result<Self> {
        let mut shadows = VVec::new();
        shadows.extend_with(TX_MAX_BLOCKS * BLOCK_SIZE, 0u8, GFP_KERNEL)?;
        let mut numbers = KVec::new();
        numbers.extend_with(TX_MAX_BLOCKS, 0u64, GFP_KERNEL)?;
        let mut log = VVec::new();
        log.extend_with(TX_LOG_BYTES, 0u8, GFP_KERNEL)?;
        let mut deferred = KVec::new();
        deferred.extend_with(DEFERRED_WORDS, 0u64, GFP_KERNEL)?;
        let spare = KBox::init(kernel::init::zeroed(), GFP_KERNEL)?;
        let mut checked = KVec::with_capacity(CHECKED_NODE_SLOTS, GFP_KERNEL)?;
        for _ in 0..CHECKED_NODE_SLOTS {
            checked.push(AtomicU64::new(0), GFP_KERNEL)?;
        }
        Ok(Self {
            shadows,
            numbers,
            log,
            deferred,
            spare,
            checked,
        })
    }
}

impl Scratch for Buffers {
    fn parts(&mut self) -> Parts<'_> {
        Parts {
            shadows: memory::as_blocks_mut::<BLOCK_SIZE>(&mut self.shadows),
            tags: &mut self.numbers,
            log: &mut self.log,
            deferred: &mut self.deferred,
            spare: &mut self.spare,
            checked: &self.checked,
        }
    }

    fn checked_nodes(&self) -> &[AtomicU64] {
        &self.checked
    }
}
