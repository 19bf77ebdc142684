// SPDX-License-Identifier: GPL-2.0

//! The fault engine's decisions, free of the kernel: how a mapping entry
//! is encoded, when a fault may map 2 MiB at once, and what to do with the
//! entry a fault finds (Documentation/oxdax/fault-engine.rst).
//!
//! Entries are what `mapping->i_pages` holds per file index for a DAX
//! file. The engine keeps them there, in fs/dax.c's encoding, because
//! core mm calls fs/dax.c on them (truncate, invalidation, memory
//! failure): `value = pfn << DAX_SHIFT | flags`, stored as an xarray value
//! entry. A PMD entry covers [`PMD_PAGES`] indexes.

/// Bits below the pfn.
pub const DAX_SHIFT: u32 = 4;
/// fs/dax.c's entry lock. The engine never sets it (it cannot wake
/// fs/dax.c's waiters); it waits while fs/dax.c holds one.
pub const DAX_LOCKED: u64 = 1 << 0;
/// The entry covers a PMD (2 MiB).
pub const DAX_PMD: u64 = 1 << 1;
/// A hole or unwritten range mapped by a zero page.
pub const DAX_ZERO_PAGE: u64 = 1 << 2;
/// A placeholder with nothing mapped (fs/dax.c's, while it locks an index).
pub const DAX_EMPTY: u64 = 1 << 3;

/// Order of a PMD mapping (2 MiB) in pages.
pub const PMD_ORDER: u32 = 9;
/// Pages mapped by a PMD.
pub const PMD_PAGES: u64 = 1 << PMD_ORDER;
/// Order of a PUD mapping (1 GiB) in pages.
pub const PUD_ORDER: u32 = 18;
/// Pages mapped by a PUD.
pub const PUD_PAGES: u64 = 1 << PUD_ORDER;

/// One mapping entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry(u64);

/// An xarray slot of a DAX file that holds a pointer, not a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotAValue;

impl Entry {
    /// The entry of an xarray value.
    pub const fn from_value(value: u64) -> Self {
        Self(value)
    }

    /// Block memory from `pfn`, one page or a PMD.
    pub const fn pfn(pfn: u64, pmd: bool) -> Self {
        Self(pfn << DAX_SHIFT | if pmd { DAX_PMD } else { 0 })
    }

    /// A zero page (`pfn`: the zero page's frame, or 0 for a PMD hole
    /// served by a device zero chunk at `pfn`).
    pub const fn zero(pfn: u64, pmd: bool) -> Self {
        Self(pfn << DAX_SHIFT | DAX_ZERO_PAGE | if pmd { DAX_PMD } else { 0 })
    }

    /// The xarray value.
    pub const fn value(self) -> u64 {
        self.0
    }

    /// The entry as the xarray stores it (`xa_mk_value`: shifted up, low
    /// bit set, so it can never be mistaken for a pointer).
    pub const fn to_xa(self) -> u64 {
        self.0 << 1 | 1
    }

    /// The entry an xarray slot holds: `Ok(None)` if it is empty, `Err` if
    /// it is not a value (a pointer: a folio, never in a DAX file).
    pub const fn from_xa(bits: u64) -> Result<Option<Self>, NotAValue> {
        if bits == 0 {
            Ok(None)
        } else if bits & 1 == 1 {
            Ok(Some(Self(bits >> 1)))
        } else {
            Err(NotAValue)
        }
    }

    /// First page frame.
    pub const fn frame(self) -> u64 {
        self.0 >> DAX_SHIFT
    }

    /// Covers a PMD.
    pub const fn is_pmd(self) -> bool {
        self.0 & DAX_PMD != 0
    }

    /// Maps a zero page.
    pub const fn is_zero(self) -> bool {
        self.0 & DAX_ZERO_PAGE != 0
    }

    /// A placeholder.
    pub const fn is_empty(self) -> bool {
        self.0 & DAX_EMPTY != 0
    }

    /// Locked by fs/dax.c.
    pub const fn is_locked(self) -> bool {
        self.0 & DAX_LOCKED != 0
    }

    /// The same entry, unlocked (what fs/dax.c stores back).
    pub const fn unlocked(self) -> Self {
        Self(self.0 & !DAX_LOCKED)
    }

    /// Maps block memory (pages that belong to the file).
    pub const fn maps_blocks(self) -> bool {
        !self.is_zero() && !self.is_empty()
    }

    /// xarray order: 0 or [`PMD_ORDER`].
    pub const fn order(self) -> u32 {
        if self.is_pmd() {
            PMD_ORDER
        } else {
            0
        }
    }

    /// Indexes covered.
    pub const fn pages(self) -> u64 {
        1 << self.order()
    }

    /// The frame that maps `index` of an entry starting at `base`.
    pub const fn frame_at(self, base: u64, index: u64) -> u64 {
        self.frame() + (index - base)
    }
}

/// The faulting mapping, as the PMD check needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// First address of the VMA.
    pub start: u64,
    /// End address of the VMA (exclusive).
    pub end: u64,
    /// Faulting address.
    pub address: u64,
    /// File page of the faulting address.
    pub index: u64,
    /// Shared mapping (a private write copies a page: never a PMD).
    pub shared: bool,
}

/// Page size.
const PAGE: u64 = 4096;

/// Why a 2 MiB fault becomes 4 KiB ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fallback {
    /// Address and file offset disagree modulo 2 MiB.
    Misaligned,
    /// A private mapping's write.
    PrivateWrite,
    /// The 2 MiB would leave the VMA.
    OutsideVma,
    /// The 2 MiB would extend past the end of file.
    PastEof,
    /// 4 KiB entries exist in the range.
    SmallEntries,
    /// The blocks are fewer than 2 MiB in one run: an extent (or a hole)
    /// ends inside the 2 MiB.
    Split,
    /// The blocks are one run of 2 MiB that is not 2 MiB-aligned on the
    /// device (placed in a fragmented chunk).
    Unaligned,
    /// A 2 MiB hole read with no zero chunk to map it (read-only mounts).
    NoZeroChunk,
}

/// The first file page of the PMD `window` could map, or why not.
/// `size_pages`: pages of the file (rounded up).
pub fn pmd_range(window: &Window, write: bool, size_pages: u64) -> Result<u64, Fallback> {
    huge_range(window, write, size_pages, PMD_ORDER)
}

/// The first file page of the mapping of `order` ([`PMD_ORDER`] or
/// [`PUD_ORDER`]) that `window` could map, or why not: address and file
/// offset congruent modulo its size, all of it inside the VMA and below
/// the end of file (`size_pages`, rounded up), and no private write.
pub fn huge_range(
    window: &Window,
    write: bool,
    size_pages: u64,
    order: u32,
) -> Result<u64, Fallback> {
    let colour = (1u64 << order) - 1;
    let bytes = PAGE << order;
    if (window.address / PAGE) & colour != window.index & colour {
        return Err(Fallback::Misaligned);
    }
    if write && !window.shared {
        return Err(Fallback::PrivateWrite);
    }
    let huge_address = window.address & !(bytes - 1);
    if huge_address < window.start || huge_address.saturating_add(bytes) > window.end {
        return Err(Fallback::OutsideVma);
    }
    let first = window.index & !colour;
    if first.saturating_add(colour) >= size_pages {
        return Err(Fallback::PastEof);
    }
    Ok(first)
}

/// Bytes mapped by a PUD.
const PUD_BYTES: u64 = PAGE * PUD_PAGES;

/// The length to ask of the address-space allocator for a mapping of
/// `len` bytes of a file from byte `offset`, if the mapping covers an
/// aligned GiB of the file (a PUD could map it): a GiB more, so that an
/// address congruent with `offset` modulo 1 GiB lies in it
/// ([`pud_aligned_address`]).
pub fn pud_padded_len(offset: u64, len: u64) -> Option<u64> {
    let end = offset.checked_add(len)?;
    let aligned = offset.checked_next_multiple_of(PUD_BYTES)?;
    if end <= aligned || end - aligned < PUD_BYTES {
        return None;
    }
    let padded = len.checked_add(PUD_BYTES)?;
    offset.checked_add(padded).map(|_| padded)
}

/// The address in a free area at `base` (as long as [`pud_padded_len`]
/// asked) whose distance to file byte `offset` is a multiple of 1 GiB.
pub fn pud_aligned_address(base: u64, offset: u64) -> u64 {
    base + (offset.wrapping_sub(base) & (PUD_BYTES - 1))
}

/// What a fault wants mapped at its index (or PMD).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
    /// Block memory at this frame.
    Blocks(u64),
    /// A zero page (its frame).
    Zero(u64),
}

/// What to do with the entry found, to map what is wanted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    /// The entry already maps it: insert the page table entry.
    Keep,
    /// No entry: store the new one.
    Store,
    /// Another entry (a zero page, a placeholder, or blocks the file no
    /// longer has there: after copy-on-write): unmap it everywhere, write
    /// back its cache lines if dirty, replace it.
    Replace,
    /// A 2 MiB fault met 4 KiB entries: map 4 KiB pages instead.
    Fallback,
}

/// Decides how a fault of `order` at `index` maps `want`, given the entry
/// found there (`found`: the entry and its first index).
pub fn plan(found: Option<(Entry, u64)>, index: u64, order: u32, want: Want) -> Plan {
    let Some((entry, base)) = found else {
        return Plan::Store;
    };
    if order == PMD_ORDER && !entry.is_pmd() {
        return Plan::Fallback;
    }
    let same = match want {
        Want::Blocks(frame) => {
            entry.maps_blocks()
                && if order == PMD_ORDER {
                    entry.frame() == frame
                } else {
                    // A 4 KiB fault inside a 2 MiB entry uses that entry
                    // when it maps the same memory.
                    entry.frame_at(base, index) == frame
                }
        }
        Want::Zero(frame) => {
            entry.is_zero() && entry.is_pmd() == (order == PMD_ORDER) && { entry.frame() == frame }
        }
    };
    if same {
        Plan::Keep
    } else {
        Plan::Replace
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_through_xarray_values() {
        for entry in [
            Entry::pfn(0x12_3456, false),
            Entry::pfn(0x20_0000, true),
            Entry::zero(7, false),
            Entry::zero(0x40_0000, true),
        ] {
            let bits = entry.to_xa();
            assert_eq!(bits & 1, 1);
            assert_eq!(Entry::from_xa(bits), Ok(Some(entry)));
        }
        assert_eq!(Entry::from_xa(0), Ok(None));
        // A folio pointer (aligned, low bit clear) is not an entry.
        assert_eq!(Entry::from_xa(0xffff_8880_1234_5000), Err(NotAValue));
    }

    const MIB: u64 = 1 << 20;

    fn window(address: u64, index: u64) -> Window {
        Window {
            start: 0x4000_0000,
            end: 0x4000_0000 + 64 * MIB,
            address,
            index,
            shared: true,
        }
    }

    #[test]
    fn entry_encoding_matches_fs_dax() {
        let e = Entry::pfn(0x12345, true);
        assert_eq!(e.value(), 0x12345 << 4 | 2);
        assert!(e.is_pmd() && e.maps_blocks() && !e.is_zero() && !e.is_locked());
        assert_eq!((e.order(), e.pages()), (9, 512));
        assert_eq!(e.frame_at(1024, 1030), 0x12345 + 6);
        let z = Entry::zero(7, false);
        assert_eq!(z.value(), 7 << 4 | 4);
        assert!(z.is_zero() && !z.maps_blocks() && z.order() == 0);
        let locked = Entry::from_value(e.value() | DAX_LOCKED);
        assert!(locked.is_locked());
        assert_eq!(locked.unlocked(), e);
        assert!(!Entry::from_value(DAX_EMPTY).maps_blocks());
    }

    #[test]
    fn pmd_needs_alignment_room_and_file() {
        let base = 0x4000_0000;
        // Address 2 MiB into the VMA, file page 512: aligned.
        assert_eq!(
            pmd_range(&window(base + 2 * MIB + 4096, 513), false, 4096),
            Ok(512)
        );
        // File offset one page off.
        assert_eq!(
            pmd_range(&window(base + 2 * MIB, 513), false, 4096),
            Err(Fallback::Misaligned)
        );
        // The file ends inside the PMD.
        assert_eq!(
            pmd_range(&window(base + 2 * MIB, 512), false, 1000),
            Err(Fallback::PastEof)
        );
        assert_eq!(
            pmd_range(&window(base + 2 * MIB, 512), false, 1024),
            Ok(512)
        );
        // The VMA ends inside the PMD.
        let mut w = window(base + 62 * MIB, 62 * 256);
        w.end = base + 63 * MIB;
        assert_eq!(pmd_range(&w, false, 1 << 20), Err(Fallback::OutsideVma));
        // A private write copies one page.
        let mut w = window(base, 0);
        w.shared = false;
        assert_eq!(pmd_range(&w, true, 1 << 20), Err(Fallback::PrivateWrite));
        assert_eq!(pmd_range(&w, false, 1 << 20), Ok(0));
    }

    #[test]
    fn pud_addresses_are_congruent_with_the_file_offset() {
        const GIB: u64 = 1 << 30;
        // Less than an aligned GiB of the file: no padding.
        assert_eq!(pud_padded_len(0, GIB - 4096), None);
        assert_eq!(pud_padded_len(4096, GIB), None);
        assert_eq!(pud_padded_len(GIB - 4096, GIB + 4096), Some(2 * GIB + 4096));
        assert_eq!(pud_padded_len(u64::MAX - GIB, GIB), None);
        for (base, offset) in [(0x7f00_1234_5000, 0), (0x7f00_0000_0000, 3 * GIB + 8192)] {
            let address = pud_aligned_address(base, offset);
            assert!(address >= base && address < base + GIB);
            assert_eq!((address - offset) % GIB, 0);
        }
    }

    #[test]
    fn pud_needs_alignment_room_and_file() {
        const GIB: u64 = 1 << 30;
        let pud = |address: u64, index: u64, end: u64, size_pages: u64| {
            let w = Window {
                start: GIB,
                end,
                address,
                index,
                shared: true,
            };
            huge_range(&w, true, size_pages, PUD_ORDER)
        };
        // File page 2^18 + 5 at 1 GiB + 5 pages into a VMA at 1 GiB whose
        // file offset is 0: aligned, inside, below the end.
        let index = PUD_PAGES + 5;
        let address = 2 * GIB + 5 * 4096;
        assert_eq!(pud(address, index, 3 * GIB, 2 * PUD_PAGES), Ok(PUD_PAGES));
        // 2 MiB-aligned is not enough.
        assert_eq!(
            pud(address + 2 * MIB, index, 4 * GIB, 4 * PUD_PAGES),
            Err(Fallback::Misaligned)
        );
        // The VMA ends 4 KiB early; the file one page early.
        assert_eq!(
            pud(address, index, 3 * GIB - 4096, 4 * PUD_PAGES),
            Err(Fallback::OutsideVma)
        );
        assert_eq!(
            pud(address, index, 3 * GIB, 2 * PUD_PAGES - 1),
            Err(Fallback::PastEof)
        );
    }

    #[test]
    fn plans() {
        let blocks = Entry::pfn(1000, false);
        let huge = Entry::pfn(4096, true);
        let zero = Entry::zero(9, false);
        let huge_zero = Entry::zero(8192, true);
        assert_eq!(plan(None, 3, 0, Want::Blocks(1000)), Plan::Store);
        assert_eq!(
            plan(Some((blocks, 3)), 3, 0, Want::Blocks(1000)),
            Plan::Keep
        );
        // Copy-on-write moved the page.
        assert_eq!(
            plan(Some((blocks, 3)), 3, 0, Want::Blocks(2000)),
            Plan::Replace
        );
        // A zero page gives way to blocks.
        assert_eq!(
            plan(Some((zero, 3)), 3, 0, Want::Blocks(1000)),
            Plan::Replace
        );
        assert_eq!(plan(Some((zero, 3)), 3, 0, Want::Zero(9)), Plan::Keep);
        // 4 KiB faults inside a 2 MiB entry of the same memory use it.
        assert_eq!(
            plan(Some((huge, 512)), 515, 0, Want::Blocks(4099)),
            Plan::Keep
        );
        assert_eq!(
            plan(Some((huge, 512)), 515, 0, Want::Blocks(77)),
            Plan::Replace
        );
        // A 4 KiB hole read inside a huge zero entry downgrades it.
        assert_eq!(
            plan(Some((huge_zero, 512)), 515, 0, Want::Zero(9)),
            Plan::Replace
        );
        // 2 MiB faults.
        assert_eq!(
            plan(Some((blocks, 3)), 0, 9, Want::Blocks(4096)),
            Plan::Fallback
        );
        assert_eq!(
            plan(Some((huge, 512)), 512, 9, Want::Blocks(4096)),
            Plan::Keep
        );
        assert_eq!(
            plan(Some((huge_zero, 512)), 512, 9, Want::Blocks(4096)),
            Plan::Replace
        );
        assert_eq!(
            plan(Some((huge_zero, 512)), 512, 9, Want::Zero(8192)),
            Plan::Keep
        );
        // fs/dax.c's placeholder is replaced.
        let empty = Entry::from_value(DAX_EMPTY);
        assert_eq!(plan(Some((empty, 3)), 3, 0, Want::Blocks(1)), Plan::Replace);
    }
}
