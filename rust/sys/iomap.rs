// SPDX-License-Identifier: GPL-2.0

//! The kernel's own DAX fault path (`dax_iomap_fault`, fs/dax.c) with a
//! filesystem's block mapping as its `iomap_begin`: what
//! `fault_engine=iomap` mounts use instead of the module's engine, as a
//! reference to compare it with. The mapping answers come from
//! [`IomapOperations`]; rust/dax/iomap.rs computes them from the engine's
//! block mapper.
//!
//! Locking: the caller holds what a filesystem holds around
//! `dax_iomap_fault` (the invalidate lock shared); fs/dax.c locks the
//! entry around `iomap_begin`.

use core::marker::PhantomData;

use kernel::prelude::*;

use crate::{
    ffi,
    sys::{
        dax::FsDax,
        fs::{FileSystem, Inode},
        mm::{FaultCode, VmFault},
    },
};

/// A filesystem's block mapping in iomap's terms.
pub(crate) trait IomapOperations: FileSystem {
    /// The mapping of pages `first..first + pages` of `inode` (at least the
    /// first page), allocating for a `write`.
    fn iomap_begin(inode: &Inode<Self>, first: u64, pages: u64, write: bool)
        -> Result<IomapExtent>;
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
pub(crate) fn dax_iomap_fault<T: IomapOperations>(vmf: &VmFault, order: u32) -> FaultCode {
    let mut pfn = ffi::pfn_t { val: 0 };
    let mut error = 0;
    // SAFETY: A live fault of a VMA of `T` (VmFault invariant); the
    // operations table is static.
    let code = unsafe {
        ffi::dax_iomap_fault(
            vmf.as_ptr(),
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
        return unsafe { ffi::dax_finish_sync_fault(vmf.as_ptr(), order, pfn) };
    }
    code
}

/// iomap operations of `T`.
struct IomapOps<T: IomapOperations>(PhantomData<T>);

impl<T: IomapOperations> IomapOps<T> {
    const OPS: ffi::iomap_ops = ffi::iomap_ops {
        iomap_begin: Some(iomap_begin_callback::<T>),
        iomap_end: None,
    };
}

/// # Safety
///
/// `iomap_ops::iomap_begin` contract for an inode of `T`.
unsafe extern "C" fn iomap_begin_callback<T: IomapOperations>(
    inode: *mut ffi::inode,
    pos: ffi::loff_t,
    length: ffi::loff_t,
    flags: kernel::ffi::c_uint,
    iomap: *mut ffi::iomap,
    srcmap: *mut ffi::iomap,
) -> kernel::ffi::c_int {
    // SAFETY: fs/dax.c calls `iomap_begin` with the inode of the fault's
    // file, a file of `T` (only `dax_iomap_fault::<T>` passes these
    // operations), referenced by the VMA for the call.
    let file = unsafe { Inode::<T>::from_raw(inode) };
    let Some(info) = file.fs_info() else {
        return kernel::error::code::EIO.to_errno();
    };
    let first = pos as u64 >> 12;
    let pages = ((pos as u64 + length as u64).div_ceil(4096) - first).max(1);
    let write = flags & ffi::IOMAP_WRITE != 0;
    let extent = match T::iomap_begin(file, first, pages, write) {
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

/// The kernel's DAX writeback (`dax_writeback_mapping_range`, fs/dax.c) of
/// pages `first..=last` of `inode` on `dax`: the writeback that goes with
/// [`dax_iomap_fault`]. Its faults lock entries, not the engine's region
/// locks, so only fs/dax.c's own writeback, which waits for those entry
/// locks, keeps a page from being mapped writable behind a clean entry.
pub(crate) fn dax_writeback<T: FileSystem>(
    inode: &Inode<T>,
    dax: &FsDax,
    first: u64,
    last: u64,
) -> Result {
    let byte = |page: u64| i64::try_from(page.saturating_mul(4096)).unwrap_or(i64::MAX);
    let mut wbc = ffi::writeback_control {
        nr_to_write: i64::MAX as _,
        range_start: byte(first),
        range_end: byte(last.saturating_add(1)).saturating_sub(1),
        sync_mode: ffi::writeback_sync_modes_WB_SYNC_ALL,
        ..Default::default()
    };
    // SAFETY: The inode is live (`Inode` invariant) and so is its mapping;
    // `dax` is the device its filesystem maps, held; `wbc` is a local
    // control structure for one integrity pass, which fs/dax.c only reads.
    let ret = unsafe {
        ffi::dax_writeback_mapping_range((*inode.as_ptr()).i_mapping, dax.as_ptr(), &mut wbc)
    };
    if ret < 0 {
        return Err(Error::from_errno(ret));
    }
    Ok(())
}
