// SPDX-License-Identifier: GPL-2.0

//! Memory mappings of a filesystem's files: `->mmap`, the VMA operations
//! (faults), `->writepages` for what was written through mappings, and the
//! [`MmapOperations`] table a filesystem implements for them.
//!
//! Locking: `->mmap` runs with the mmap lock held for writing; faults
//! with the mmap lock or the VMA lock held for reading (the filesystem
//! takes its own, see rust/dax/mod.rs); `->writepages` with none.

use core::marker::PhantomData;

use kernel::prelude::*;
use kernel::{build_error, error::VTABLE_DEFAULT_ERROR};

use super::{FileSystem, Inode};
use crate::{
    ffi,
    logic::dax::{pud_aligned_address, pud_padded_len},
    sys::mm::{FaultCode, VmFault, FAULT_SIGBUS},
};

/// What a filesystem implements for mappings of its files.
#[vtable]
pub(crate) trait MmapOperations: FileSystem {
    /// `mmap` of a regular file (`sync`: `MAP_SYNC`); may refuse. Without
    /// it every mapping is accepted.
    fn mmap(_inode: &Inode<Self>, _sync: bool) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// A page fault on a mapping of `inode`: `order` 0 (a page), a PMD or
    /// a PUD; `present`: a write to a page mapped read-only.
    fn fault(inode: &Inode<Self>, vmf: &VmFault, order: u32, present: bool) -> FaultCode;

    /// Writes back what was stored through mappings of pages
    /// `first..=last` (sync, fsync). Without it integrity writeback has
    /// nothing to do.
    fn writeback(_inode: &Inode<Self>, _first: u64, _last: u64) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }
}

/// The VMA operations of `T`'s mappings.
struct VmOps<T: MmapOperations>(PhantomData<T>);

impl<T: MmapOperations> VmOps<T> {
    const OPS: ffi::vm_operations_struct = ffi::vm_operations_struct {
        fault: Some(fault_callback::<T>),
        huge_fault: Some(huge_fault_callback::<T>),
        // A write to a read-only PTE: DAX pages have no `struct page` core
        // mm counts (pfn_mkwrite); page_mkwrite for completeness.
        page_mkwrite: Some(mkwrite_callback::<T>),
        pfn_mkwrite: Some(mkwrite_callback::<T>),
        // SAFETY: All-zero is a valid table: no operation.
        ..unsafe { core::mem::zeroed() }
    };
}

/// # Safety
///
/// `file` is open on a regular file of `T` and `vma` is being set up for
/// it (`->mmap` contract: mmap lock held for writing).
pub(super) unsafe extern "C" fn mmap_callback<T: MmapOperations>(
    file: *mut ffi::file,
    vma: *mut ffi::vm_area_struct,
) -> kernel::ffi::c_int {
    // SAFETY: `file` is an open regular file of `T` (`->mmap` is only in
    // `T`'s file table), which pins its inode for the call.
    let inode = unsafe { Inode::<T>::from_raw((*file).f_inode) };
    // SAFETY: `vma` is being set up under the mmap write lock (`->mmap`
    // contract): live, its flags only read here.
    let sync = unsafe { ffi::oxdax_vma_flags(vma) } as u64 & u64::from(ffi::VM_SYNC) != 0;
    if T::HAS_MMAP {
        if let Err(e) = T::mmap(inode, sync) {
            return e.to_errno();
        }
    }
    // SAFETY: `file` is open (`->mmap` contract), so its atime may be
    // updated; `vma` is being set up under the mmap write lock, so its
    // `vm_ops` and flags are ours to set; `VmOps::<T>::OPS` is a `'static`
    // constant.
    unsafe {
        ffi::oxdax_file_accessed(file);
        (*vma).vm_ops = &VmOps::<T>::OPS;
        ffi::oxdax_vma_set_dax_flags(vma);
    }
    0
}

/// `get_unmapped_area`: for a mapping that covers an aligned GiB of the
/// file, an address congruent with the file offset modulo 1 GiB (a PUD can
/// map it, as device DAX does); else modulo 2 MiB
/// (`thp_get_unmapped_area`). An address the caller asks for, or fixes, is
/// kept.
///
/// # Safety
///
/// `file_operations::get_unmapped_area` contract (`mmap` of `file` by the
/// current task, mmap lock held for writing).
pub(super) unsafe extern "C" fn get_unmapped_area_callback(
    file: *mut ffi::file,
    addr: kernel::ffi::c_ulong,
    len: kernel::ffi::c_ulong,
    pgoff: kernel::ffi::c_ulong,
    flags: kernel::ffi::c_ulong,
) -> kernel::ffi::c_ulong {
    /// Values from `-MAX_ERRNO` on are errors (`IS_ERR_VALUE`).
    const FIRST_ERROR: u64 = (-4095i64) as u64;
    let padded = (pgoff as u64)
        .checked_mul(4096)
        .and_then(|offset| Some((offset, pud_padded_len(offset, len as u64)?)));
    // A fixed address (`MAP_FIXED`, `MAP_FIXED_NOREPLACE`, `mremap` to a
    // chosen place) is the caller's, even 0: only a free choice is ours.
    let free_choice = addr == 0 && flags as u64 & u64::from(ffi::MAP_FIXED) == 0;
    if let (true, Some((offset, padded))) = (free_choice, padded) {
        // SAFETY: Called for an `mmap` by the current task, whose mm is
        // live and locked for writing (this function's `# Safety`), as the
        // allocator requires; it only looks for a free range.
        let base = unsafe {
            ffi::mm_get_unmapped_area(ffi::oxdax_current_mm(), file, 0, padded as _, pgoff, flags)
        };
        if (base as u64) < FIRST_ERROR {
            return pud_aligned_address(base as u64, offset) as _;
        }
    }
    // SAFETY: The same contract as ours.
    unsafe { ffi::thp_get_unmapped_area(file, addr, len, pgoff, flags) }
}

/// The inode and fault of a VMA callback.
///
/// # Safety
///
/// `vmf` is the live fault of a VMA set up by `mmap_callback::<T>`, with
/// the mmap or VMA lock held, and `'a` ends before the callback returns
/// (the results are used only during the callback).
unsafe fn fault_parts<'a, T: MmapOperations>(
    vmf: *mut ffi::vm_fault,
) -> Option<(&'a Inode<T>, &'a VmFault)> {
    if vmf.is_null() {
        return None;
    }
    // SAFETY: `vmf` is the live fault of a VMA of `T`, used only during the
    // callback (this function's `# Safety`), as `VmFault::from_raw` requires.
    let fault = unsafe { VmFault::from_raw(vmf) };
    // SAFETY: The fault's VMA is live while core mm holds its mmap or VMA
    // lock; set up by `mmap_callback::<T>`, it holds a reference on
    // `vm_file`, an open file of `T` whose inode lives as long as the file,
    // longer than `'a`.
    let inode = unsafe { Inode::from_raw((*(*(*vmf).__bindgen_anon_1.vma).vm_file).f_inode) };
    Some((inode, fault))
}

/// # Safety
///
/// `vm_operations_struct::fault` contract for a VMA of `T`.
unsafe extern "C" fn fault_callback<T: MmapOperations>(vmf: *mut ffi::vm_fault) -> FaultCode {
    // SAFETY: Core mm passes the live fault of a VMA whose `vm_ops` is
    // `VmOps::<T>::OPS`, which only `mmap_callback::<T>` installs (splits and
    // forks copy it with the file): what `fault_parts::<T>` requires.
    match unsafe { fault_parts::<T>(vmf) } {
        Some((inode, fault)) => T::fault(inode, fault, 0, false),
        None => FAULT_SIGBUS,
    }
}

/// # Safety
///
/// `vm_operations_struct::huge_fault` contract for a VMA of `T`.
unsafe extern "C" fn huge_fault_callback<T: MmapOperations>(
    vmf: *mut ffi::vm_fault,
    order: kernel::ffi::c_uint,
) -> FaultCode {
    // SAFETY: As for `fault`: core mm passes the live fault of a VMA whose
    // `vm_ops` is `VmOps::<T>::OPS`, only installed by `mmap_callback::<T>`.
    match unsafe { fault_parts::<T>(vmf) } {
        Some((inode, fault)) => T::fault(inode, fault, order, false),
        None => FAULT_SIGBUS,
    }
}

/// # Safety
///
/// `pfn_mkwrite`/`page_mkwrite` contract for a VMA of `T`.
unsafe extern "C" fn mkwrite_callback<T: MmapOperations>(vmf: *mut ffi::vm_fault) -> FaultCode {
    // SAFETY: Core mm calls `pfn_mkwrite`/`page_mkwrite` with the live fault
    // of a VMA whose `vm_ops` is `VmOps::<T>::OPS`, only installed by
    // `mmap_callback::<T>`: what `fault_parts::<T>` requires.
    match unsafe { fault_parts::<T>(vmf) } {
        Some((inode, fault)) => T::fault(inode, fault, 0, true),
        None => FAULT_SIGBUS,
    }
}

/// # Safety
///
/// `address_space_operations::writepages` contract for a file of `T`.
pub(super) unsafe extern "C" fn writepages_callback<T: MmapOperations>(
    mapping: *mut ffi::address_space,
    wbc: *mut ffi::writeback_control,
) -> kernel::ffi::c_int {
    // Only integrity writeback (sync, fsync) writes DAX data back: the
    // others would unmap pages for nothing (as fs/dax.c decides too).
    // SAFETY: `wbc` is this `writepages` call's live control structure,
    // only read here.
    let (mode, start, end) = unsafe { ((*wbc).sync_mode, (*wbc).range_start, (*wbc).range_end) };
    if mode != ffi::writeback_sync_modes_WB_SYNC_ALL {
        return 0;
    }
    // SAFETY: A file mapping's host is its live inode.
    let inode = unsafe { Inode::<T>::from_raw((*mapping).host) };
    let first = (start.max(0) as u64) >> 12;
    let last = (end.max(0) as u64) >> 12;
    match T::writeback(inode, first, last) {
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    }
}
