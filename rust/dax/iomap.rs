// SPDX-License-Identifier: GPL-2.0

//! The engine's answers for the kernel's DAX fault path: with
//! `fault_engine=iomap`, fs/dax.c's `dax_iomap_fault` serves the faults
//! (a reference to compare this engine with) and asks for block mappings
//! through `iomap_begin`; [`begin`] answers from the same
//! [`BlockMapper`] the engine asks, doing copy-on-write the engine's way.
//!
//! Locking: called by fs/dax.c with the fault's entry locked and the
//! invalidate lock held shared by the filesystem's fault handler; the
//! mapper takes the volume lock inside.

use kernel::prelude::*;

use super::{BlockMapper, Blocks};
use crate::sys::{iomap::IomapExtent, mm::Entries};

/// The mapping of pages `first..first + pages` of `file` for
/// `iomap_begin` (`write`: allocate, and copy shared blocks). `entries`:
/// the file's mapping entries, whose mappings of shared blocks go before
/// the copy commits.
pub(crate) fn begin<M: BlockMapper>(
    mapper: &M,
    file: &M::File,
    entries: Option<&Entries<'_>>,
    first: u64,
    pages: u64,
    write: bool,
) -> Result<IomapExtent> {
    let mut map = mapper.map(file, first, pages, write)?;
    if write && map.shared {
        // Copy-on-write, as the engine does it: this file's mappings of
        // the old blocks go before the copy commits (fs/dax.c holds the
        // entry locked, so no fault maps them again meanwhile).
        if let Some(entries) = entries {
            entries.unmap(map.first, map.pages, false);
        }
        map = mapper.unshare(file, map.first, map.pages)?;
    }
    Ok(IomapExtent {
        first: map.first,
        pages: map.pages,
        device: match map.blocks {
            Blocks::Hole => None,
            Blocks::Unwritten(offset) | Blocks::Data(offset) => Some(offset),
        },
        unwritten: matches!(map.blocks, Blocks::Unwritten(_)),
        new: map.new,
        shared: map.shared,
        copied: map.copied,
    })
}
