// SPDX-License-Identifier: GPL-2.0

//! Open files (`struct file`, `struct kiocb`) and the file operations.

use core::{marker::PhantomData, ptr::NonNull};

use super::{dir::DirContext, to_c_int, FileSystem, Inode};
use crate::sys::iov::IovIter;
use crate::{ffi, sys::errno::eopnotsupp};

/// What `fallocate` asks for (the modes oxdax implements).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fallocate {
    /// Allocate the range (mode 0, or `KEEP_SIZE`: the size stays).
    Allocate {
        /// `FALLOC_FL_KEEP_SIZE`.
        keep_size: bool,
    },
    /// `FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE`.
    PunchHole,
    /// `FALLOC_FL_ZERO_RANGE`, with or without `KEEP_SIZE`.
    ZeroRange {
        /// `FALLOC_FL_KEEP_SIZE`.
        keep_size: bool,
    },
}

impl Fallocate {
    /// The mode of a `fallocate` call; `None` for modes oxdax does not
    /// implement (collapse, insert, unshare; the VFS refused the invalid
    /// combinations already).
    fn from_mode(mode: u32) -> Option<Self> {
        let keep_size = mode & ffi::FALLOC_FL_KEEP_SIZE != 0;
        match mode & !ffi::FALLOC_FL_KEEP_SIZE {
            0 => Some(Self::Allocate { keep_size }),
            ffi::FALLOC_FL_PUNCH_HOLE if keep_size => Some(Self::PunchHole),
            ffi::FALLOC_FL_ZERO_RANGE => Some(Self::ZeroRange { keep_size }),
            _ => None,
        }
    }

    /// Whether the size may grow.
    fn grows(self) -> bool {
        matches!(
            self,
            Self::Allocate { keep_size: false } | Self::ZeroRange { keep_size: false }
        )
    }
}

/// A read or write request: the file position it works at.
pub(crate) struct Kiocb<'a, T: FileSystem> {
    iocb: NonNull<ffi::kiocb>,
    inode: Inode<T>,
    _call: PhantomData<&'a mut ffi::kiocb>,
}

impl<T: FileSystem> Kiocb<'_, T> {
    /// # Safety
    ///
    /// `iocb` is live for the call and its file is an open file of `T`.
    unsafe fn from_raw(iocb: *mut ffi::kiocb) -> Self {
        Self {
            // SAFETY: Live (caller), so not null.
            iocb: unsafe { NonNull::new_unchecked(iocb) },
            // SAFETY: The file is open (caller).
            inode: unsafe { file_inode::<T>((*iocb).ki_filp) },
            _call: PhantomData,
        }
    }

    /// The file's inode.
    pub(crate) fn inode(&self) -> &Inode<T> {
        &self.inode
    }

    /// The position.
    pub(crate) fn pos(&self) -> u64 {
        // SAFETY: Live during the call.
        unsafe { (*self.iocb.as_ptr()).ki_pos as u64 }
    }

    /// Moves the position (after bytes were transferred).
    pub(crate) fn set_pos(&mut self, pos: u64) {
        // SAFETY: Live during the call, ours to update.
        unsafe { (*self.iocb.as_ptr()).ki_pos = pos as i64 };
    }
}

/// File operation tables of `T`.
pub(super) struct FileOps<T: FileSystem>(PhantomData<T>);

impl<T: FileSystem> FileOps<T> {
    pub(super) const FILE: ffi::file_operations = ffi::file_operations {
        llseek: Some(llseek_callback::<T>),
        read_iter: Some(read_iter_callback::<T>),
        write_iter: Some(write_iter_callback::<T>),
        open: Some(open_callback),
        fsync: Some(fsync_callback::<T>),
        fallocate: Some(fallocate_callback::<T>),
        remap_file_range: Some(remap_file_range_callback::<T>),
        mmap: Some(super::mmap::mmap_callback::<T>),
        // 2 MiB-aligned addresses for mappings that can take PMDs.
        get_unmapped_area: Some(ffi::thp_get_unmapped_area),
        fop_flags: ffi::FOP_MMAP_SYNC,
        // sendfile, splice and copy_file_range's fallback (ranges a clone
        // cannot do): through read_iter/write_iter, no page cache.
        splice_read: Some(ffi::copy_splice_read),
        splice_write: Some(ffi::iter_file_splice_write),
        // SAFETY: All-zero is a valid table: no operation.
        ..unsafe { core::mem::zeroed() }
    };
    pub(super) const DIR: ffi::file_operations = ffi::file_operations {
        llseek: Some(dir_llseek_callback),
        read: Some(ffi::generic_read_dir),
        iterate_shared: Some(iterate_shared_callback::<T>),
        fsync: Some(fsync_callback::<T>),
        // SAFETY: All-zero is a valid table: no operation.
        ..unsafe { core::mem::zeroed() }
    };
}

/// The inode of an open file.
///
/// # Safety
///
/// `file` is live and belongs to `T`.
unsafe fn file_inode<T: FileSystem>(file: *mut ffi::file) -> Inode<T> {
    // SAFETY: An open file's inode lives as long as the file.
    unsafe { Inode::from_raw((*file).f_inode) }
}

/// Turns a transfer result into `ssize_t`.
fn to_ssize(result: kernel::error::Result<usize>) -> isize {
    match result {
        Ok(n) => n as isize,
        Err(e) => e.to_errno() as isize,
    }
}

/// # Safety
///
/// VFS `read_iter` contract for a regular file of `T`.
unsafe extern "C" fn read_iter_callback<T: FileSystem>(
    iocb: *mut ffi::kiocb,
    iter: *mut ffi::iov_iter,
) -> isize {
    // SAFETY: Live during the call.
    let file = unsafe { (*iocb).ki_filp };
    // SAFETY: `iter` is this `read_iter` call's iterator (VFS contract), live
    // until it returns; the wrapper is a local that does not outlive the
    // call.
    let mut iter = unsafe { IovIter::from_raw(iter) };
    if iter.count() == 0 {
        return 0;
    }
    // SAFETY: Live during the call, its file open.
    let mut kiocb = unsafe { Kiocb::<T>::from_raw(iocb) };
    let inode = kiocb.inode.as_ptr();
    // Shared: reads run concurrently; writes and truncation, which change
    // where the blocks are, take it exclusively.
    // SAFETY: The inode is live.
    unsafe { ffi::oxdax_inode_lock_shared(inode) };
    let result = T::read(&mut kiocb, &mut iter);
    // SAFETY: Locked above.
    unsafe { ffi::oxdax_inode_unlock_shared(inode) };
    // SAFETY: The file is open; atime is updated outside i_rwsem, as
    // ext4's DAX read does.
    unsafe { ffi::oxdax_file_accessed(file) };
    to_ssize(result)
}

/// # Safety
///
/// VFS `write_iter` contract for a regular file of `T`.
unsafe extern "C" fn write_iter_callback<T: FileSystem>(
    iocb: *mut ffi::kiocb,
    iter: *mut ffi::iov_iter,
) -> isize {
    // SAFETY: Live during the call.
    let file = unsafe { (*iocb).ki_filp };
    // SAFETY: Live during the call, its file open.
    let mut kiocb = unsafe { Kiocb::<T>::from_raw(iocb) };
    let inode = kiocb.inode.as_ptr();
    // SAFETY: The inode is live.
    unsafe { ffi::oxdax_inode_lock(inode) };
    // SAFETY: i_rwsem held: limits, O_APPEND position, then setuid/setgid
    // removal, as every write does.
    let checked = unsafe { ffi::generic_write_checks(iocb, iter) };
    let result = if checked <= 0 {
        checked
    } else {
        // SAFETY: `file` is the open file of the live `iocb`, and its inode's
        // i_rwsem is held exclusively (locked above), as file_remove_privs()
        // needs.
        match unsafe { ffi::file_remove_privs(file) } {
            0 => {
                // SAFETY: Live during the call.
                let mut iter = unsafe { IovIter::from_raw(iter) };
                to_ssize(T::write(&mut kiocb, &mut iter))
            }
            err => err as isize,
        }
    };
    // SAFETY: Locked above.
    unsafe { ffi::oxdax_inode_unlock(inode) };
    // Data and metadata are durable when `write` returns: O_SYNC/O_DSYNC
    // need nothing more.
    result
}

/// # Safety
///
/// VFS `open` contract.
unsafe extern "C" fn open_callback(
    inode: *mut ffi::inode,
    file: *mut ffi::file,
) -> kernel::ffi::c_int {
    // SAFETY: Both live.
    let ret = unsafe { ffi::generic_file_open(inode, file) };
    if ret == 0 {
        // SAFETY: The file is being opened; its mode is ours to set.
        unsafe { ffi::oxdax_file_allow_odirect(file) };
    }
    ret
}

/// # Safety
///
/// VFS `fsync` contract.
unsafe extern "C" fn fsync_callback<T: FileSystem>(
    file: *mut ffi::file,
    start: ffi::loff_t,
    end: ffi::loff_t,
    _datasync: kernel::ffi::c_int,
) -> kernel::ffi::c_int {
    // Pages of the byte range (`end` inclusive, LLONG_MAX: to the end).
    let first = start.max(0) as u64 >> 12;
    let last = end.max(0) as u64 >> 12;
    // SAFETY: The file is open.
    to_c_int(T::fsync(&unsafe { file_inode::<T>(file) }, first, last))
}

/// Directory positions are cookies up to `i64::MAX` (the end), not
/// bounded by the file size limit.
///
/// # Safety
///
/// VFS `llseek` contract.
unsafe extern "C" fn dir_llseek_callback(
    file: *mut ffi::file,
    offset: ffi::loff_t,
    whence: kernel::ffi::c_int,
) -> ffi::loff_t {
    // SAFETY: The file is open.
    unsafe {
        ffi::generic_file_llseek_size(
            file,
            offset,
            whence,
            ffi::MAX_LFS_FILESIZE,
            ffi::MAX_LFS_FILESIZE,
        )
    }
}

/// # Safety
///
/// VFS `iterate_shared` contract (directory i_rwsem held shared).
unsafe extern "C" fn iterate_shared_callback<T: FileSystem>(
    file: *mut ffi::file,
    ctx: *mut ffi::dir_context,
) -> kernel::ffi::c_int {
    // SAFETY: Both live during the call.
    if !unsafe { ffi::oxdax_dir_emit_dots(file, ctx) } {
        return 0;
    }
    // SAFETY: `file` is an open directory of `T` (this is `T`'s directory
    // table), which pins its inode; `ctx` is this call's live context, and
    // both wrappers are locals that do not outlive the call.
    let (dir, mut ctx) = unsafe { (file_inode::<T>(file), DirContext::from_raw(ctx)) };
    to_c_int(T::readdir(&dir, &mut ctx))
}

/// # Safety
///
/// VFS `llseek` contract for a regular file of `T`.
unsafe extern "C" fn llseek_callback<T: FileSystem>(
    file: *mut ffi::file,
    offset: ffi::loff_t,
    whence: kernel::ffi::c_int,
) -> ffi::loff_t {
    let data = match whence as u32 {
        ffi::SEEK_DATA => true,
        ffi::SEEK_HOLE => false,
        // SAFETY: The file is open.
        _ => return unsafe { ffi::generic_file_llseek(file, offset, whence) },
    };
    let Ok(offset) = u64::try_from(offset) else {
        return kernel::error::code::ENXIO.to_errno().into();
    };
    // SAFETY: The file is open.
    let inode = unsafe { file_inode::<T>(file) };
    // SAFETY: The inode is live; shared, as reads: the mapping must not
    // change under the search.
    unsafe { ffi::oxdax_inode_lock_shared(inode.as_ptr()) };
    let found = T::seek(&inode, offset, data);
    // SAFETY: Locked above.
    unsafe { ffi::oxdax_inode_unlock_shared(inode.as_ptr()) };
    match found {
        // SAFETY: The file is open; `vfs_setpos` checks the limit.
        Ok(pos) => unsafe {
            ffi::vfs_setpos(file, pos as ffi::loff_t, T::MAX_BYTES as ffi::loff_t)
        },
        Err(e) => e.to_errno().into(),
    }
}

/// # Safety
///
/// VFS `fallocate` contract (the VFS checked the mode's combinations,
/// the range, write access and took freeze protection).
unsafe extern "C" fn fallocate_callback<T: FileSystem>(
    file: *mut ffi::file,
    mode: kernel::ffi::c_int,
    offset: ffi::loff_t,
    len: ffi::loff_t,
) -> kernel::ffi::c_long {
    let Some(mode) = Fallocate::from_mode(mode as u32) else {
        return eopnotsupp().to_errno() as kernel::ffi::c_long;
    };
    let (offset, len) = (offset as u64, len as u64);
    // SAFETY: The file is open.
    let inode = unsafe { file_inode::<T>(file) };
    let raw = inode.as_ptr();
    // SAFETY: Live; exclusive, as writes: the mapping changes.
    unsafe { ffi::oxdax_inode_lock(raw) };
    let end = offset.saturating_add(len);
    let mut ret = 0;
    if mode.grows() && end > inode.size() {
        // SAFETY: i_rwsem held.
        ret = unsafe { ffi::inode_newsize_ok(raw, end as ffi::loff_t) };
    }
    if ret == 0 {
        // SAFETY: i_rwsem held: setuid/setgid removal and times, as a
        // write.
        ret = unsafe { ffi::file_modified(file) };
    }
    if ret == 0 {
        ret = to_c_int(T::fallocate(&inode, mode, offset, len));
    }
    // SAFETY: Locked above.
    unsafe { ffi::oxdax_inode_unlock(raw) };
    ret as kernel::ffi::c_long
}

/// # Safety
///
/// VFS `remap_file_range` contract: both files of `T` on one super
/// block, `file_out` open for writing.
unsafe extern "C" fn remap_file_range_callback<T: FileSystem>(
    file_in: *mut ffi::file,
    pos_in: ffi::loff_t,
    file_out: *mut ffi::file,
    pos_out: ffi::loff_t,
    len: ffi::loff_t,
    remap_flags: kernel::ffi::c_uint,
) -> ffi::loff_t {
    if remap_flags & !(ffi::REMAP_FILE_DEDUP | ffi::REMAP_FILE_ADVISORY) != 0 {
        return kernel::error::code::EINVAL.to_errno().into();
    }
    if remap_flags & ffi::REMAP_FILE_DEDUP != 0 {
        // Comparing DAX contents needs the iomap read path oxdax does not
        // use; deduplication is not offered.
        return eopnotsupp().to_errno().into();
    }
    // SAFETY: Both files are open.
    let (src, dst) = unsafe { (file_inode::<T>(file_in), file_inode::<T>(file_out)) };
    // SAFETY: Both live; the VFS's lock order for two files (same inode
    // is fine).
    unsafe { ffi::lock_two_nondirectories(src.as_ptr(), dst.as_ptr()) };
    let mut len = len;
    // SAFETY: Both inodes locked: limits, alignment, EOF rounding, times
    // and privileges of the destination.
    let mut ret = unsafe {
        ffi::generic_remap_file_range_prep(
            file_in,
            pos_in,
            file_out,
            pos_out,
            &mut len,
            remap_flags,
        )
    } as ffi::loff_t;
    if ret == 0 && len > 0 {
        ret = match T::remap(&src, pos_in as u64, &dst, pos_out as u64, len as u64) {
            Ok(()) => len,
            Err(e) => e.to_errno().into(),
        };
    }
    // SAFETY: Locked above.
    unsafe { ffi::unlock_two_nondirectories(src.as_ptr(), dst.as_ptr()) };
    ret
}
