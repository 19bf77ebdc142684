// SPDX-License-Identifier: GPL-2.0

//! Moving data between pages and persistent memory.

use core::ptr::NonNull;

use kernel::{
    prelude::*,
    str::{CStr, CString},
};

use crate::{
    ffi,
    logic::pmem::page_chunks,
    sys::{block::Segment, iov::IovIter},
};

/// A mapped range of persistent memory: `len` bytes at `base` in the
/// kernel's direct map. Offsets are checked against `len` on every access.
///
/// # Invariants
///
/// `base..base + len` is mapped persistent memory for as long as the
/// `PmemMemory` is reachable: its owners (`DaxMemory`, `DaxDisk`) hand it
/// out only while the mapping lasts.
pub(crate) struct PmemMemory {
    base: NonNull<u8>,
    len: u64,
}

// SAFETY: The mapping is plain memory; concurrent accesses to the same bytes
// are the block layer's or the filesystem's to order, as for any disk.
unsafe impl Send for PmemMemory {}
// SAFETY: `&PmemMemory` touches the memory only through C copies (flushcache,
// machine-check-safe) on raw pointers, never Rust references, as a DMA engine
// would; ordering accesses to the same bytes is the users' job.
unsafe impl Sync for PmemMemory {}

impl PmemMemory {
    /// # Safety
    ///
    /// `[base, base + len)` is mapped persistent memory that stays mapped
    /// for the life of the result.
    pub(crate) unsafe fn new(base: NonNull<u8>, len: u64) -> Self {
        Self { base, len }
    }

    /// The address of `offset`, if `[offset, offset + len)` is inside.
    fn at(&self, offset: u64, len: usize) -> Result<*mut u8> {
        let end = offset.checked_add(len as u64).ok_or(EINVAL)?;
        if end > self.len {
            return Err(EINVAL);
        }
        // SAFETY: `offset < len`, inside the mapping (type invariant).
        Ok(unsafe { self.base.as_ptr().add(offset as usize) })
    }

    /// Kernel address of `offset`, for DAX direct access.
    pub(crate) fn kaddr(&self, offset: u64) -> Result<*mut u8> {
        self.at(offset, 0)
    }

    /// Calls `copy(pmem, mapped, len)` for each piece of a transfer of
    /// `len` bytes between `offset` and `page` (at `page_offset`, continuing
    /// into the following pages), with each page mapped for its piece;
    /// stops at the first error.
    fn for_each_piece(
        &self,
        offset: u64,
        segment: &Segment<'_>,
        mut copy: impl FnMut(*mut u8, *mut u8, usize) -> Result,
    ) -> Result {
        let (page, page_offset, len) = segment.pages();
        let mut pmem = self.at(offset, len)?;
        for chunk in page_chunks(page_offset, len) {
            // SAFETY: `page` is the first of the contiguous pages of a live
            // bio segment covering `page_offset + len` bytes (`Segment`
            // invariant), so
            // `page + chunk.page` is one of them; it stays mapped until the
            // copy returns. `pmem..pmem + len` was checked by `at`.
            let result = unsafe {
                let mapped = ffi::kmap_local_page(page.add(chunk.page)).cast::<u8>();
                let result = copy(pmem, mapped.add(chunk.offset), chunk.len);
                ffi::kunmap_local(mapped.cast());
                pmem = pmem.add(chunk.len);
                result
            };
            result?;
        }
        Ok(())
    }

    /// Copies a bio segment's bytes to `offset`, bypassing the CPU cache so
    /// the data is durable once the region is flushed.
    pub(crate) fn write_from_segment(&self, offset: u64, segment: &Segment<'_>) -> Result {
        self.for_each_piece(offset, segment, |pmem, mapped, len| {
            // SAFETY: Both ranges are valid for `len` bytes (`for_each_piece`).
            unsafe { ffi::oxdax_memcpy_flushcache(pmem.cast(), mapped.cast(), len) };
            Ok(())
        })
    }

    /// Copies the bytes at `offset` into a bio segment, surviving machine
    /// checks: a poisoned source gives `EIO`, not a crash.
    pub(crate) fn read_into_segment(&self, offset: u64, segment: &Segment<'_>) -> Result {
        self.for_each_piece(offset, segment, |pmem, mapped, len| {
            // SAFETY: Both ranges are valid for `len` bytes (`for_each_piece`).
            let left = unsafe { ffi::copy_mc_to_kernel(mapped.cast(), pmem.cast(), len as _) };
            if left == 0 {
                Ok(())
            } else {
                Err(EIO)
            }
        })
    }

    /// Writes `len` zero bytes at `offset`, bypassing the CPU cache.
    pub(crate) fn zero(&self, offset: u64, len: usize) -> Result {
        static ZEROES: [u8; 512] = [0; 512];
        let mut dst = self.at(offset, len)?;
        let mut left = len;
        while left > 0 {
            let chunk = left.min(ZEROES.len());
            // SAFETY: `dst..dst + chunk` is inside the checked range.
            unsafe {
                ffi::oxdax_memcpy_flushcache(dst.cast(), ZEROES.as_ptr().cast(), chunk);
                dst = dst.add(chunk);
            }
            left -= chunk;
        }
        Ok(())
    }

    /// Writes back CPU cache lines over `[offset, offset + len)` (stores
    /// made through user mappings of this memory), as `dax_flush` does.
    pub(crate) fn write_back(&self, offset: u64, len: usize) -> Result {
        let addr = self.at(offset, len)?;
        // SAFETY: The range is inside the mapping.
        unsafe { ffi::arch_wb_cache_pmem(addr.cast(), len) };
        Ok(())
    }

    /// Writes back and invalidates cached lines of `[offset, offset + len)`
    /// after the media under them changed (poison cleared).
    pub(crate) fn invalidate(&self, offset: u64, len: usize) -> Result {
        let addr = self.at(offset, len)?;
        // SAFETY: The range is inside the mapping.
        unsafe { ffi::arch_invalidate_pmem(addr.cast(), len) };
        Ok(())
    }
}

/// A busy iomem resource: the namespace's memory, claimed for this driver
/// (visible in /proc/iomem) until dropped.
pub(crate) struct IomemClaim {
    start: u64,
    len: u64,
    /// The resource's name: the resource points at it until released.
    _name: CString,
}

impl IomemClaim {
    /// Claims `[start, start + len)` under (a copy of) `name`; `EBUSY` if
    /// someone else has it.
    pub(crate) fn request(start: u64, len: u64, name: &CStr) -> Result<Self> {
        let name = CString::try_from_fmt(kernel::fmt!("{}", name))?;
        // SAFETY: `name` is a NUL-terminated string owned by the claim, so
        // it outlives the resource, which `drop` releases first.
        let res = unsafe { ffi::oxdax_request_mem_region(start, len, name.as_char_ptr()) };
        if res.is_null() {
            return Err(EBUSY);
        }
        Ok(Self {
            start,
            len,
            _name: name,
        })
    }
}

impl Drop for IomemClaim {
    fn drop(&mut self) {
        // SAFETY: The range was claimed by `request`.
        unsafe { ffi::oxdax_release_mem_region(self.start, self.len) };
    }
}

impl PmemMemory {
    /// Size of the mapping in bytes.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Copies the `buf.len()` bytes at `offset` into `buf`, surviving
    /// machine checks (`copy_mc_to_kernel`, as the pmem driver reads): a
    /// load of failed memory is `EIO` here, not a kernel machine check.
    pub(crate) fn read(&self, offset: u64, buf: &mut [u8]) -> Result {
        let src = self.at(offset, buf.len())?;
        let (dst, len) = (buf.as_mut_ptr().cast(), buf.len() as _);
        // SAFETY: The source range is inside the mapping; `buf` is ours.
        let left = unsafe { ffi::copy_mc_to_kernel(dst, src.cast(), len) };
        if left == 0 {
            Ok(())
        } else {
            Err(EIO)
        }
    }

    /// Copies `len` bytes from `from` to `to` within the mapping, reading
    /// as [`Self::read`] does and writing as [`Self::write`] does (durable
    /// after the next [`fence`]). The ranges must not overlap.
    ///
    /// The copy goes through a small buffer on the stack: a
    /// machine-check-safe read into it, then non-temporal stores out of
    /// it. One `copy_mc_to_kernel` from device to device would have to
    /// read every destination line into the cache and write it back line
    /// by line after; and under TCG its `rep movsb`, alternating between
    /// two device pages whose addresses differ only above 2 MiB, ran at
    /// 25 MB/s (a 2 MiB copy-on-write fault took 80 ms, 99 % of it in that
    /// copy; `make bench-profile PROFILE_OPS=cow2m`).
    pub(crate) fn copy_within(&self, from: u64, to: u64, len: usize) -> Result {
        let src = self.at(from, len)?;
        let dst = self.at(to, len)?;
        if from < to.saturating_add(len as u64) && to < from.saturating_add(len as u64) {
            return Err(EINVAL);
        }
        let mut bounce = [0u8; 512];
        let mut done = 0;
        while done < len {
            let chunk = (len - done).min(bounce.len());
            // SAFETY: `src + done..src + done + chunk` is inside the
            // checked source range; `bounce` is ours and holds `chunk`.
            let left = unsafe {
                ffi::copy_mc_to_kernel(bounce.as_mut_ptr().cast(), src.add(done).cast(), chunk as _)
            };
            if left != 0 {
                return Err(EIO);
            }
            // SAFETY: `dst + done..dst + done + chunk` is inside the
            // checked destination range, disjoint from `bounce`.
            unsafe {
                ffi::oxdax_memcpy_flushcache(dst.add(done).cast(), bounce.as_ptr().cast(), chunk)
            };
            done += chunk;
        }
        Ok(())
    }

    /// Copies `data` to `offset`, bypassing the CPU cache (durable after
    /// the next [`fence`]).
    pub(crate) fn write(&self, offset: u64, data: &[u8]) -> Result {
        let dst = self.at(offset, data.len())?;
        // SAFETY: Both ranges are valid for `data.len()` bytes.
        unsafe { ffi::oxdax_memcpy_flushcache(dst.cast(), data.as_ptr().cast(), data.len()) };
        Ok(())
    }

    /// Copies up to `len` bytes at `offset` into `iter`, surviving machine
    /// checks; returns the bytes copied (short on a fault or poison).
    pub(crate) fn copy_to_iter(
        &self,
        offset: u64,
        len: usize,
        iter: &mut IovIter,
    ) -> Result<usize> {
        let src = self.at(offset, len)?;
        // SAFETY: The source range is inside the mapping; the iterator is
        // live (its wrapper's invariant).
        Ok(unsafe { ffi::_copy_mc_to_iter(src.cast(), len, iter.as_ptr()) })
    }

    /// Copies up to `len` bytes from `iter` to `offset`, bypassing the CPU
    /// cache; returns the bytes copied (short on a fault).
    pub(crate) fn copy_from_iter(
        &self,
        offset: u64,
        len: usize,
        iter: &mut IovIter,
    ) -> Result<usize> {
        let dst = self.at(offset, len)?;
        // SAFETY: `dst..dst + len` is inside the mapping (checked by `at`),
        // which stays mapped while `self` exists (`new`'s contract); `iter`
        // is the live iterator of the current read or write (`IovIter`
        // invariant), borrowed mutably.
        Ok(unsafe { ffi::_copy_from_iter_flushcache(dst.cast(), len, iter.as_ptr()) })
    }
}

/// Orders every earlier flushcache store before every later store and
/// drains them to the persistence domain (`pmem_wmb`).
pub(crate) fn fence() {
    // SAFETY: A barrier; no memory is named.
    unsafe { ffi::oxdax_pmem_wmb() };
}

/// `bytes` seen as whole `N`-byte blocks (a trailing partial block is
/// left out).
pub(crate) fn as_blocks_mut<const N: usize>(bytes: &mut [u8]) -> &mut [[u8; N]] {
    let count = bytes.len().checked_div(N).unwrap_or(0);
    // SAFETY: `[u8; N]` has alignment 1 and no invalid values; `count`
    // blocks of N bytes lie inside `bytes`, which the result borrows.
    unsafe { core::slice::from_raw_parts_mut(bytes.as_mut_ptr().cast(), count) }
}

/// Whether a rate-limited message may be printed now (the kernel's
/// default interval and burst, one state for the module).
pub(crate) fn log_ratelimit() -> bool {
    // SAFETY: The helper only updates its own static state, under its lock.
    unsafe { ffi::oxdax_ratelimit() }
}
