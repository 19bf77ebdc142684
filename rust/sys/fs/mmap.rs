// SPDX-License-Identifier: GPL-2.0

//! Memory mappings of a filesystem's files: `->mmap`, the VMA operations
//! (faults), and `->writepages` for what was written through mappings.

use core::marker::PhantomData;

use super::{FileSystem, Inode};
use crate::{
    ffi,
    sys::mm::{FaultCode, VmFault, FAULT_SIGBUS},
};

/// The VMA operations of `T`'s mappings.
struct VmOps<T: FileSystem>(PhantomData<T>);

impl<T: FileSystem> VmOps<T> {
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
pub(super) unsafe extern "C" fn mmap_callback<T: FileSystem>(
    file: *mut ffi::file,
    vma: *mut ffi::vm_area_struct,
) -> kernel::ffi::c_int {
    // SAFETY: Open file (contract).
    let inode = unsafe { Inode::<T>::from_raw((*file).f_inode) };
    // SAFETY: The VMA is being set up (contract).
    let sync = unsafe { ffi::oxdax_vma_flags(vma) } as u64 & u64::from(ffi::VM_SYNC) != 0;
    if let Err(e) = T::mmap(&inode, sync) {
        return e.to_errno();
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

/// The inode and fault of a VMA callback.
///
/// # Safety
///
/// `vmf` is the live fault of a VMA set up by `mmap_callback::<T>`.
unsafe fn fault_parts<T: FileSystem>(vmf: *mut ffi::vm_fault) -> Option<(Inode<T>, VmFault)> {
    // SAFETY: `vmf` is the live fault of a VMA of `T` (this function's
    // `# Safety`), and the three callbacks that call this use the result only
    // during their call, as `VmFault::from_raw` requires.
    let fault = unsafe { VmFault::from_raw(vmf) }?;
    // SAFETY: The fault's VMA is live while core mm holds its mmap or VMA
    // lock; set up by `mmap_callback::<T>`, it holds a reference on
    // `vm_file`, an open file of `T` whose inode lives as long as the file.
    let inode = unsafe { Inode::from_raw((*(*(*vmf).__bindgen_anon_1.vma).vm_file).f_inode) };
    Some((inode, fault))
}

/// # Safety
///
/// `vm_operations_struct::fault` contract for a VMA of `T`.
unsafe extern "C" fn fault_callback<T: FileSystem>(vmf: *mut ffi::vm_fault) -> FaultCode {
    // SAFETY: Core mm passes the live fault of a VMA whose `vm_ops` is
    // `VmOps::<T>::OPS`, which only `mmap_callback::<T>` installs (splits and
    // forks copy it with the file): what `fault_parts::<T>` requires.
    match unsafe { fault_parts::<T>(vmf) } {
        Some((inode, fault)) => T::fault(&inode, &fault, 0, false),
        None => FAULT_SIGBUS,
    }
}

/// # Safety
///
/// `vm_operations_struct::huge_fault` contract for a VMA of `T`.
unsafe extern "C" fn huge_fault_callback<T: FileSystem>(
    vmf: *mut ffi::vm_fault,
    order: kernel::ffi::c_uint,
) -> FaultCode {
    // SAFETY: As for `fault`: core mm passes the live fault of a VMA whose
    // `vm_ops` is `VmOps::<T>::OPS`, only installed by `mmap_callback::<T>`.
    match unsafe { fault_parts::<T>(vmf) } {
        Some((inode, fault)) => T::fault(&inode, &fault, order, false),
        None => FAULT_SIGBUS,
    }
}

/// # Safety
///
/// `pfn_mkwrite`/`page_mkwrite` contract for a VMA of `T`.
unsafe extern "C" fn mkwrite_callback<T: FileSystem>(vmf: *mut ffi::vm_fault) -> FaultCode {
    // SAFETY: Core mm calls `pfn_mkwrite`/`page_mkwrite` with the live fault
    // of a VMA whose `vm_ops` is `VmOps::<T>::OPS`, only installed by
    // `mmap_callback::<T>`: what `fault_parts::<T>` requires.
    match unsafe { fault_parts::<T>(vmf) } {
        Some((inode, fault)) => T::fault(&inode, &fault, 0, true),
        None => FAULT_SIGBUS,
    }
}

/// # Safety
///
/// `address_space_operations::writepages` contract for a file of `T`.
pub(super) unsafe extern "C" fn writepages_callback<T: FileSystem>(
    mapping: *mut ffi::address_space,
    wbc: *mut ffi::writeback_control,
) -> kernel::ffi::c_int {
    // Only integrity writeback (sync, fsync) writes DAX data back: the
    // others would unmap pages for nothing (as fs/dax.c decides too).
    // SAFETY: Live for the call (contract).
    let (mode, start, end) = unsafe { ((*wbc).sync_mode, (*wbc).range_start, (*wbc).range_end) };
    if mode != ffi::writeback_sync_modes_WB_SYNC_ALL {
        return 0;
    }
    // SAFETY: A file mapping's host is its live inode.
    let inode = unsafe { Inode::<T>::from_raw((*mapping).host) };
    let first = (start.max(0) as u64) >> 12;
    let last = (end.max(0) as u64) >> 12;
    match T::writeback(&inode, first, last) {
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    }
}

/// A block-mapping answer in iomap's terms, for the kernel's fault path
/// (`dax_iomap_fault`), which `fault_engine=iomap` mounts use instead of
/// the module's engine.
#[derive(Clone, Copy, Debug)]
pub(crate) struct IomapExtent {
    /// First file page answered.
    pub(crate) first: u64,
    /// Pages answered.
    pub(crate) pages: u64,
    /// Device byte offset (from the DAX device's start); `None`: a hole.
    pub(crate) device: Option<u64>,
    /// Allocated but never written: reads see zeros.
    pub(crate) unwritten: bool,
    /// Allocated or converted by this call.
    pub(crate) new: bool,
    /// Shared with other files or ranges (read answers): fs/dax.c counts
    /// the pages' sharers instead of giving them one owner.
    pub(crate) shared: bool,
    /// Shared blocks were copied to these by this call: fs/dax.c must
    /// replace the entry (IOMAP_F_SHARED on a write).
    pub(crate) copied: bool,
}

/// The kernel's DAX fault path on a file of `T`, with `T::iomap` as the
/// block-mapping callback (iomap_begin). The caller holds the locks a
/// filesystem holds around `dax_iomap_fault` (invalidate lock shared).
pub(crate) fn iomap_fault<T: FileSystem>(vmf: &VmFault, order: u32) -> FaultCode {
    let mut pfn = ffi::pfn_t { val: 0 };
    let mut error = 0;
    // SAFETY: A live fault of a VMA of `T` (VmFault invariant); the
    // operations table is static.
    let code = unsafe {
        ffi::dax_iomap_fault(
            vmf.as_raw(),
            order,
            &mut pfn,
            &mut error,
            &IomapOps::<T>::OPS,
        )
    };
    if code & ffi::vm_fault_reason_VM_FAULT_NEEDDSYNC != 0 {
        // SAFETY: `vmf` is still the live fault of a VMA of `T` (`VmFault`
        // invariant), in the locks ext4 and xfs hold here; `pfn` is the frame
        // `dax_iomap_fault` filled when it answered `VM_FAULT_NEEDDSYNC`.
        return unsafe { ffi::dax_finish_sync_fault(vmf.as_raw(), order, pfn) };
    }
    code
}

/// iomap operations of `T`.
struct IomapOps<T: FileSystem>(PhantomData<T>);

impl<T: FileSystem> IomapOps<T> {
    const OPS: ffi::iomap_ops = ffi::iomap_ops {
        iomap_begin: Some(iomap_begin_callback::<T>),
        iomap_end: None,
    };
}

/// # Safety
///
/// `iomap_ops::iomap_begin` contract for an inode of `T`.
unsafe extern "C" fn iomap_begin_callback<T: FileSystem>(
    inode: *mut ffi::inode,
    pos: ffi::loff_t,
    length: ffi::loff_t,
    flags: kernel::ffi::c_uint,
    iomap: *mut ffi::iomap,
    srcmap: *mut ffi::iomap,
) -> kernel::ffi::c_int {
    // SAFETY: Live inode of `T` (contract).
    let file = unsafe { Inode::<T>::from_raw(inode) };
    let Some(info) = file.fs_info() else {
        return kernel::error::code::EIO.to_errno();
    };
    let first = pos as u64 >> 12;
    let pages = ((pos as u64 + length as u64).div_ceil(4096) - first).max(1);
    let write = flags & ffi::IOMAP_WRITE != 0;
    let extent = match T::iomap(&file, first, pages, write) {
        Ok(extent) => extent,
        Err(e) => return e.to_errno(),
    };
    let dax = T::dax(info);
    // SAFETY: `iomap` and `srcmap` are the caller's to fill; the inode's
    // super block and its device are live.
    unsafe {
        let map = &mut *iomap;
        map.offset = (extent.first << 12) as ffi::loff_t;
        map.length = extent.pages << 12;
        map.bdev = (*(*inode).i_sb).s_bdev.cast();
        map.dax_dev = dax.as_ptr();
        map.flags = 0;
        match extent.device {
            None => {
                map.type_ = ffi::IOMAP_HOLE as u16;
                map.addr = u64::MAX; // IOMAP_NULL_ADDR
            }
            Some(offset) => {
                map.type_ = if extent.unwritten {
                    ffi::IOMAP_UNWRITTEN
                } else {
                    ffi::IOMAP_MAPPED
                } as u16;
                map.addr = dax.start() + offset;
            }
        }
        if extent.new {
            map.flags |= ffi::IOMAP_F_NEW as u16;
        }
        if extent.shared {
            map.flags |= ffi::IOMAP_F_SHARED as u16;
        }
        if write && extent.copied {
            // The copy is done: the source fs/dax.c copies from is the
            // new blocks themselves (an identity copy), while the SHARED
            // flag makes it replace this file's old entry.
            core::ptr::copy_nonoverlapping(iomap.cast_const(), srcmap, 1);
            (*iomap).flags |= ffi::IOMAP_F_SHARED as u16;
        }
    }
    0
}
