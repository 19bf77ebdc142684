// SPDX-License-Identifier: GPL-2.0

//! Address arithmetic of a pmem namespace: where its data lives, which byte
//! ranges a block request or a DAX access may touch, and how a failed page
//! maps back to a device offset.
//!
//! Every conversion is checked: the inputs come from bios, from DAX callers
//! and from the memory-failure path, and none of them may reach memory
//! outside the namespace.

/// Log2 of the block layer's sector size.
pub const SECTOR_SHIFT: u32 = 9;
/// The block layer's sector size.
pub const SECTOR_SIZE: u64 = 1 << SECTOR_SHIFT;
/// Log2 of the page size oxdax supports (x86-64 base pages).
pub const PAGE_SHIFT: u32 = 12;
/// The page size.
pub const PAGE_SIZE: u64 = 1 << PAGE_SHIFT;
/// `memremap_pages()` maps ZONE_DEVICE memory in sub-sections: 2 MiB on x86-64.
pub const PAGEMAP_ALIGN: u64 = 2 << 20;
/// Bytes of `struct page` the kernel keeps in RAM per mapped page.
pub const STRUCT_PAGE_SIZE: u64 = 64;

/// Where a namespace's data lives.
///
/// The namespace is the physical range `[phys, phys + size)`. Its data area
/// is the largest 2 MiB-aligned range inside it, because that is what
/// `memremap_pages()` can give `struct page`s to; device offsets (sectors,
/// DAX page offsets, failure offsets) count from the start of the data area.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    phys: u64,
    data_offset: u64,
    data_size: u64,
}

/// A byte range inside the data area, as offsets from the data area's
/// start: the base of the mapped memory, sector 0 and bad-block sector 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteRange {
    /// First byte, from the start of the data area.
    pub start: u64,
    /// Length in bytes.
    pub len: u64,
}

impl Geometry {
    /// The geometry of the namespace `[phys, phys + size)`, or `None` if not
    /// even one aligned 2 MiB block fits in it.
    pub fn new(phys: u64, size: u64) -> Option<Self> {
        let end = phys.checked_add(size)?;
        let data_start = phys.checked_next_multiple_of(PAGEMAP_ALIGN)?;
        let data_end = end - end % PAGEMAP_ALIGN;
        if data_end <= data_start {
            return None;
        }
        Some(Self {
            phys,
            data_offset: data_start - phys,
            data_size: data_end - data_start,
        })
    }

    /// Bytes between the namespace start and the data area.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// Physical address of the data area (2 MiB aligned).
    pub fn data_phys(&self) -> u64 {
        self.phys + self.data_offset
    }

    /// Size of the data area in bytes (a multiple of 2 MiB).
    pub fn data_size(&self) -> u64 {
        self.data_size
    }

    /// Capacity of the block device in 512-byte sectors.
    pub fn capacity_sectors(&self) -> u64 {
        self.data_size >> SECTOR_SHIFT
    }

    /// RAM the kernel spends on `struct page`s for the data area.
    pub fn memmap_bytes(&self) -> u64 {
        (self.data_size >> PAGE_SHIFT) * STRUCT_PAGE_SIZE
    }

    /// The bytes of a transfer of `len` bytes at `sector`, if the whole
    /// transfer lies inside the device.
    pub fn sector_range(&self, sector: u64, len: u64) -> Option<ByteRange> {
        let start = sector.checked_mul(SECTOR_SIZE)?;
        let end = start.checked_add(len)?;
        if end > self.data_size {
            return None;
        }
        Some(ByteRange { start, len })
    }

    /// For a DAX access of up to `nr_pages` pages at page offset `pgoff`:
    /// the data-area offset of the first page and how many pages are
    /// available from there to the end of the device (at least one), or
    /// `None` if `pgoff` is outside the device.
    pub fn dax_range(&self, pgoff: u64, nr_pages: u64) -> Option<(u64, u64)> {
        let pages = self.data_size >> PAGE_SHIFT;
        if pgoff >= pages || nr_pages == 0 {
            return None;
        }
        Some((pgoff << PAGE_SHIFT, pages - pgoff))
    }

    /// The device range `(offset, len)` of `nr_pages` pages starting at page
    /// frame `pfn`, clipped to the data area, as `notify_failure` expects it;
    /// `None` if none of it is data.
    pub fn failure_range(&self, pfn: u64, nr_pages: u64) -> Option<(u64, u64)> {
        let start = pfn.checked_mul(PAGE_SIZE)?;
        let end = start.checked_add(nr_pages.checked_mul(PAGE_SIZE)?)?;
        let data_start = self.data_phys();
        let data_end = data_start + self.data_size;
        let start = start.max(data_start);
        let end = end.min(data_end);
        if start >= end {
            return None;
        }
        Some((start - data_start, end - start))
    }
}

/// A failed range `offset..offset + len` of a DAX device, as the bytes
/// `(offset, len)` of a filesystem on a block device that covers `size`
/// bytes of it from byte `start` (a partition starts past 0, as xfs's
/// `bt_dax_part_off` says); clipped to those bytes, `None` if none of the
/// failure is there.
pub fn failure_in_partition(offset: u64, len: u64, start: u64, size: u64) -> Option<(u64, u64)> {
    let end = offset.saturating_add(len).min(start.saturating_add(size));
    let first = offset.max(start);
    (first < end).then(|| (first - start, end - first))
}

/// How many pages a recovery-mode DAX access at `sector` may cover when the
/// first bad sector at or after it is `first_bad`: the pages before the bad
/// one, or the one page that holds it, so the caller recovers one page at a
/// time as `dax_recovery_write()` expects.
pub fn recovery_pages(sector: u64, first_bad: u64) -> u64 {
    let good_bytes = first_bad.saturating_sub(sector) << SECTOR_SHIFT;
    (good_bytes.div_ceil(PAGE_SIZE)).max(1)
}

/// One piece of a copy between a bio segment (which may span several
/// contiguous pages) and pmem: `page` pages after the segment's first page,
/// at `offset` in that page, `len` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageChunk {
    /// Pages after the segment's first page.
    pub page: usize,
    /// Offset in that page.
    pub offset: usize,
    /// Bytes in this piece.
    pub len: usize,
}

/// Splits `len` bytes starting at `offset` into the first page of a
/// segment into per-page pieces: each page is mapped on its own.
pub fn page_chunks(offset: usize, len: usize) -> impl Iterator<Item = PageChunk> {
    let page_size = PAGE_SIZE as usize;
    let mut position = offset;
    let end = offset.saturating_add(len);
    core::iter::from_fn(move || {
        if position >= end {
            return None;
        }
        let in_page = position % page_size;
        let chunk = (page_size - in_page).min(end - position);
        let piece = PageChunk {
            page: position / page_size,
            offset: in_page,
            len: chunk,
        };
        position += chunk;
        Some(piece)
    })
}

/// Builds the oxdax disk name from the kernel's name for the namespace
/// (`pmem0`, `pmem1.2`): `oxpmem0`, `oxpmem1.2`, NUL-terminated in `out`.
/// Returns the name's length, or `None` if it does not fit.
pub fn disk_name(kernel_name: &[u8], out: &mut [u8]) -> Option<usize> {
    let name = kernel_name.split(|&b| b == 0).next().unwrap_or(kernel_name);
    let len = 2 + name.len();
    let dest = out.get_mut(..=len)?;
    let (prefix, rest) = dest.split_at_mut(2);
    prefix.copy_from_slice(b"ox");
    let (body, nul) = rest.split_at_mut(name.len());
    body.copy_from_slice(name);
    nul.fill(0);
    Some(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    #[test]
    fn failures_are_told_in_the_partitions_bytes() {
        // A partition of 64 MiB from 16 MiB.
        let (start, size) = (16 * MIB, 64 * MIB);
        assert_eq!(failure_in_partition(0, 4096, start, size), None);
        assert_eq!(
            failure_in_partition(16 * MIB - 4096, 4096, start, size),
            None
        );
        assert_eq!(
            failure_in_partition(16 * MIB, 4096, start, size),
            Some((0, 4096))
        );
        assert_eq!(
            failure_in_partition(20 * MIB + 8192, 4096, start, size),
            Some((4 * MIB + 8192, 4096))
        );
        // Straddling either edge: the part inside.
        assert_eq!(
            failure_in_partition(16 * MIB - 4096, 8192, start, size),
            Some((0, 4096))
        );
        assert_eq!(
            failure_in_partition(80 * MIB - 4096, 8192, start, size),
            Some((64 * MIB - 4096, 4096))
        );
        assert_eq!(failure_in_partition(80 * MIB, 4096, start, size), None);
        // The whole device (device removal): the whole partition.
        assert_eq!(
            failure_in_partition(0, u64::MAX, start, size),
            Some((0, size))
        );
        // Whole devices start at 0.
        assert_eq!(
            failure_in_partition(8192, 4096, 0, size),
            Some((8192, 4096))
        );
    }

    #[test]
    fn aligned_namespace_is_all_data() {
        let g = Geometry::new(4 * GIB, GIB).unwrap();
        assert_eq!(g.data_offset(), 0);
        assert_eq!(g.data_size(), GIB);
        assert_eq!(g.capacity_sectors(), GIB / 512);
        assert_eq!(g.memmap_bytes(), 16 * MIB);
    }

    #[test]
    fn unaligned_namespace_keeps_the_aligned_middle() {
        let g = Geometry::new(4 * GIB + 4096, 8 * MIB).unwrap();
        assert_eq!(g.data_phys(), 4 * GIB + 2 * MIB);
        assert_eq!(g.data_offset(), 2 * MIB - 4096);
        assert_eq!(g.data_size(), 6 * MIB);
        assert!(Geometry::new(4 * GIB + 4096, 2 * MIB).is_none());
        assert!(Geometry::new(0, 0).is_none());
        assert!(Geometry::new(u64::MAX - MIB, 4 * MIB).is_none());
    }

    #[test]
    fn sector_ranges_stop_at_the_last_byte() {
        let g = Geometry::new(4 * GIB + 4096, 8 * MIB).unwrap();
        let last = g.capacity_sectors() - 1;
        // Offsets count from the data area, whatever the data offset.
        assert_ne!(g.data_offset(), 0);
        assert_eq!(
            g.sector_range(0, 512),
            Some(ByteRange { start: 0, len: 512 })
        );
        assert_eq!(
            g.sector_range(last, 512),
            Some(ByteRange {
                start: last * 512,
                len: 512
            })
        );
        assert_eq!(g.sector_range(last, 513), None);
        assert_eq!(
            g.sector_range(last + 1, 0),
            Some(ByteRange {
                start: g.data_size(),
                len: 0
            })
        );
        assert_eq!(g.sector_range(last + 2, 0), None);
        assert_eq!(g.sector_range(u64::MAX, 512), None);
        assert_eq!(g.sector_range(0, u64::MAX), None);
    }

    #[test]
    fn dax_ranges() {
        // Unaligned: offsets are still data-relative and stop at its end.
        let g = Geometry::new(4 * GIB + 4096, 8 * MIB).unwrap();
        assert_eq!(g.dax_range(0, 1536), Some((0, 1536)));
        assert_eq!(g.dax_range(1535, 1), Some((1535 * 4096, 1)));
        assert_eq!(g.dax_range(1536, 1), None);
        let g = Geometry::new(4 * GIB, 4 * MIB).unwrap();
        assert_eq!(g.dax_range(0, 1), Some((0, 1024)));
        assert_eq!(g.dax_range(1023, 512), Some((1023 * 4096, 1)));
        assert_eq!(g.dax_range(1024, 1), None);
        assert_eq!(g.dax_range(0, 0), None);
        assert_eq!(g.dax_range(u64::MAX, 1), None);
    }

    #[test]
    fn failure_ranges_are_clipped_to_data() {
        let g = Geometry::new(4 * GIB + 4096, 8 * MIB).unwrap();
        let first = g.data_phys() / 4096;
        assert_eq!(g.failure_range(first, 1), Some((0, 4096)));
        assert_eq!(g.failure_range(first + 3, 2), Some((3 * 4096, 8192)));
        assert_eq!(g.failure_range(first - 1, 1), None);
        assert_eq!(g.failure_range(first - 1, 3), Some((0, 8192)));
        let end = (g.data_phys() + g.data_size()) / 4096;
        assert_eq!(g.failure_range(end, 1), None);
        assert_eq!(
            g.failure_range(end - 1, 10),
            Some((g.data_size() - 4096, 4096))
        );
        assert_eq!(g.failure_range(u64::MAX, 1), None);
    }

    #[test]
    fn recovery_covers_good_pages_or_one() {
        assert_eq!(recovery_pages(0, 0), 1);
        assert_eq!(recovery_pages(0, 1), 1);
        assert_eq!(recovery_pages(0, 8), 1);
        assert_eq!(recovery_pages(0, 9), 2);
        assert_eq!(recovery_pages(16, 40), 3);
        assert_eq!(recovery_pages(16, 8), 1);
    }

    #[test]
    fn page_chunks_cover_the_transfer_exactly() {
        for offset in [0usize, 1, 511, 4095, 4096, 5000] {
            for len in [0usize, 1, 512, 4095, 4096, 4097, 12288, 70000] {
                let chunks: Vec<_> = page_chunks(offset, len).collect();
                assert_eq!(chunks.iter().map(|c| c.len).sum::<usize>(), len);
                let mut position = offset;
                for c in &chunks {
                    assert_eq!(c.page * 4096 + c.offset, position);
                    assert!(c.len > 0 && c.offset + c.len <= 4096);
                    position += c.len;
                }
            }
        }
    }

    #[test]
    fn disk_names() {
        let mut out = [0xffu8; 32];
        assert_eq!(disk_name(b"pmem0\0\0\0", &mut out), Some(7));
        assert_eq!(&out[..8], b"oxpmem0\0");
        assert_eq!(disk_name(b"pmem12.3", &mut out), Some(10));
        assert_eq!(&out[..11], b"oxpmem12.3\0");
        assert_eq!(disk_name(&[b'p'; 29], &mut out), Some(31));
        assert_eq!(disk_name(&[b'p'; 30], &mut out), None);
    }
}
