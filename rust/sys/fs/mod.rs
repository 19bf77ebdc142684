// SPDX-License-Identifier: GPL-2.0

//! A filesystem seen from the VFS: registration, mount contexts, super
//! blocks, inodes, dentries, files, directory iteration and I/O iterators.
//!
//! 6.12's `kernel` crate has no filesystem abstractions; these are oxdax's.
//! A filesystem implements [`FileSystem`]; the wrappers here install the
//! C operation tables that call it, follow the VFS's protocols (locking,
//! `I_NEW` inodes, dentry instantiation, generic checks) and hand it only
//! safe references. See Documentation/oxdax/filesystem.rst.

pub(crate) mod dentry;
pub(crate) mod dir;
pub(crate) mod file;
pub(crate) mod inode;
pub(crate) mod mmap;
pub(crate) mod registration;
pub(crate) mod super_block;

use kernel::{prelude::*, str::CStr, sync::Arc};

use crate::{
    logic::{format::inode::Timestamp, fs::AttrChange},
    sys::iov::IovIter,
};

pub(crate) use self::{
    dir::DirContext,
    file::{Fallocate, Kiocb},
    inode::Inode,
    inode::{ExtentFlags, Fiemap},
    registration::{FsType, Registration},
    super_block::{SeqFile, SuperBlock},
};

/// An inode's attributes as the filesystem stores them, to copy into the
/// VFS inode.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Attributes {
    /// Type and permission bits.
    pub(crate) mode: u32,
    /// Owner (in the initial user namespace).
    pub(crate) uid: u32,
    /// Group.
    pub(crate) gid: u32,
    /// Hard links.
    pub(crate) nlink: u32,
    /// Size in bytes.
    pub(crate) size: u64,
    /// Bytes allocated.
    pub(crate) allocated: u64,
    /// Last access.
    pub(crate) atime: Timestamp,
    /// Last modification.
    pub(crate) mtime: Timestamp,
    /// Last status change.
    pub(crate) ctime: Timestamp,
    /// Generation (file handles).
    pub(crate) generation: u32,
    /// Device number of device files, in the kernel's 32-bit encoding.
    pub(crate) rdev: u32,
    /// Creation (statx `btime`).
    pub(crate) btime: Timestamp,
}

/// Owner, group and mode of an inode being created, as the VFS computed
/// them (`inode_init_owner`: setgid directories, umask already applied).
#[derive(Clone, Copy, Debug)]
pub(crate) struct NewOwner {
    /// Type and permission bits.
    pub(crate) mode: u32,
    /// Owner.
    pub(crate) uid: u32,
    /// Group.
    pub(crate) gid: u32,
    /// Device number (device files), 32-bit encoding.
    pub(crate) rdev: u32,
}

/// `statfs` answers.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StatFs {
    /// Blocks of the filesystem (of the super block's block size).
    pub(crate) blocks: u64,
    /// Free blocks.
    pub(crate) free_blocks: u64,
    /// Inodes.
    pub(crate) files: u64,
    /// Free inodes.
    pub(crate) free_files: u64,
    /// Longest name.
    pub(crate) name_len: u64,
    /// Filesystem id.
    pub(crate) fsid: u64,
}

/// What a filesystem implements. Every method runs in process context and
/// may sleep; the wrappers have taken the VFS locks the VFS documents for
/// each operation (Documentation/filesystems/locking.rst) before calling.
pub(crate) trait FileSystem: Sized + 'static {
    /// Parsed mount options (the mount context's private data).
    type Options: Default + Send;
    /// Per-super-block data, alive from `fill_super` to `put_super`, and
    /// as long as the memory-failure holder needs it.
    type Info: Send + Sync;

    /// Name in /proc/filesystems and `mount -t`.
    const NAME: &'static CStr;
    /// `statfs` magic.
    const MAGIC: u64;
    /// Largest file size.
    const MAX_BYTES: u64;

    /// The static `file_system_type` (lockdep needs its keys static).
    fn fs_type() -> &'static FsType;

    /// One mount option (`key` or `key=value`). `ENOPARAM` lets the VFS
    /// handle or refuse it (`source`, unknown keys).
    fn parse_param(options: &mut Self::Options, key: &CStr, value: Option<&CStr>) -> Result;

    /// Reads the filesystem on `sb`'s device. The super block's block size,
    /// limits and operations are set; its root is not.
    fn fill_super(sb: &SuperBlock<Self>, options: &Self::Options) -> Result<Arc<Self::Info>>;

    /// The DAX device `info` holds.
    fn dax(info: &Self::Info) -> &crate::sys::dax::FsDax;

    /// The root directory's inode number.
    fn root(info: &Self::Info) -> u64;

    /// `mount -o remount`: the read-only state may change.
    fn reconfigure(sb: &SuperBlock<Self>, options: &Self::Options, read_only: bool) -> Result;

    /// Last use of a mounted super block (inodes are gone).
    fn put_super(sb: &SuperBlock<Self>);

    /// `statfs`.
    fn statfs(sb: &SuperBlock<Self>) -> Result<StatFs>;

    /// `sync(2)`, `syncfs(2)`, unmount.
    fn sync_fs(sb: &SuperBlock<Self>) -> Result;

    /// Options for /proc/mounts (each with a leading comma).
    fn show_options(sb: &SuperBlock<Self>, seq: &mut SeqFile) -> Result;

    /// The DAX device reports failed memory at device bytes
    /// `offset..offset + len` (`mf_flags`: `MF_*`; `MF_MEM_PRE_REMOVE`: the
    /// whole device is going away). `sb` is mounted and stays so during the
    /// call. `EOPNOTSUPP` leaves the failure to the kernel.
    fn dax_failure(
        sb: &SuperBlock<Self>,
        info: &Self::Info,
        offset: u64,
        len: u64,
        mf_flags: i32,
    ) -> Result;

    /// The attributes of inode `ino`, to fill a new VFS inode.
    fn read_inode(info: &Self::Info, ino: u64) -> Result<Attributes>;

    /// A filled inode's last reference is gone and it has no links left.
    fn evict_inode(inode: &Inode<Self>);

    /// `name` in `dir`, `None` if there is no such entry.
    fn lookup(dir: &Inode<Self>, name: &[u8]) -> Result<Option<u64>>;

    /// Creates `name` in `dir`; returns the new inode number.
    fn create(dir: &Inode<Self>, name: &[u8], owner: &NewOwner) -> Result<u64>;

    /// A new name for `inode`.
    fn link(inode: &Inode<Self>, dir: &Inode<Self>, name: &[u8]) -> Result;

    /// Removes `name` (which refers to `victim`, not a directory).
    fn unlink(dir: &Inode<Self>, name: &[u8], victim: &Inode<Self>) -> Result;

    /// Removes the empty directory `name` (`victim`).
    fn rmdir(dir: &Inode<Self>, name: &[u8], victim: &Inode<Self>) -> Result;

    /// Renames; `replaced` is what `new_name` referred to.
    #[allow(clippy::too_many_arguments)]
    fn rename(
        old_dir: &Inode<Self>,
        old_name: &[u8],
        moved: &Inode<Self>,
        new_dir: &Inode<Self>,
        new_name: &[u8],
        replaced: Option<&Inode<Self>>,
        no_replace: bool,
    ) -> Result;

    /// Stores an attribute change the VFS validated and already applied
    /// to the VFS inode (`setattr_copy`); a size change truncates or
    /// extends. On failure, the filesystem restores the VFS inode.
    fn setattr(inode: &Inode<Self>, change: &AttrChange) -> Result;

    /// Timestamps the VFS wants updated (`touch_atime`).
    fn update_time(inode: &Inode<Self>, change: &AttrChange) -> Result;

    /// Reads at the iocb's position (i_rwsem held shared, count non-zero).
    fn read(iocb: &mut Kiocb<'_, Self>, iter: &mut IovIter) -> Result<usize>;

    /// Writes at the iocb's position (i_rwsem held; checked, privileges
    /// removed).
    fn write(iocb: &mut Kiocb<'_, Self>, iter: &mut IovIter) -> Result<usize>;

    /// `fsync` of a file or directory; `first..=last`: the pages whose
    /// mapped stores must be written back.
    fn fsync(inode: &Inode<Self>, first: u64, last: u64) -> Result;

    /// Emits directory entries from `ctx.pos()` (at least 2: the wrapper
    /// emitted `.` and `..`).
    fn readdir(dir: &Inode<Self>, ctx: &mut DirContext<'_>) -> Result;

    /// `fallocate` (i_rwsem held; a growing size was checked against the
    /// limits; times and privileges updated).
    fn fallocate(inode: &Inode<Self>, mode: Fallocate, offset: u64, len: u64) -> Result;

    /// `SEEK_DATA` (`data`) or `SEEK_HOLE` from `offset` (i_rwsem held
    /// shared): the position found; `ENXIO` at or past the end of file.
    fn seek(inode: &Inode<Self>, offset: u64, data: bool) -> Result<u64>;

    /// Shares `len` bytes of `src` at `src_pos` with `dst` at `dst_pos`
    /// (both locked; the VFS checked alignment, limits and overlap).
    fn remap(src: &Inode<Self>, src_pos: u64, dst: &Inode<Self>, dst_pos: u64, len: u64) -> Result;

    /// Reports the extents of `start..start + len` (i_rwsem held shared).
    fn fiemap(inode: &Inode<Self>, start: u64, len: u64, out: &mut Fiemap<'_>) -> Result;

    /// `mmap` of a regular file (`sync`: `MAP_SYNC`); may refuse.
    fn mmap(inode: &Inode<Self>, sync: bool) -> Result;

    /// A page fault on a mapping of `inode`: `order` 0 (a page) or a PMD;
    /// `present`: a write to a page mapped read-only.
    fn fault(
        inode: &Inode<Self>,
        vmf: &crate::sys::mm::VmFault,
        order: u32,
        present: bool,
    ) -> crate::sys::mm::FaultCode;

    /// Writes back what was stored through mappings of pages
    /// `first..=last` (sync, fsync).
    fn writeback(inode: &Inode<Self>, first: u64, last: u64) -> Result;

    /// Block mapping for the kernel's fault path (`fault_engine=iomap`):
    /// as the engine's `BlockMapper::map`.
    fn iomap(inode: &Inode<Self>, first: u64, pages: u64, write: bool)
        -> Result<mmap::IomapExtent>;
}

/// A VFS time as a filesystem timestamp.
fn timestamp(ts: &crate::ffi::timespec64) -> Timestamp {
    Timestamp {
        sec: ts.tv_sec,
        nsec: u32::try_from(ts.tv_nsec).unwrap_or(0),
    }
}

/// A filesystem timestamp as a VFS time.
fn timespec(ts: &Timestamp) -> crate::ffi::timespec64 {
    crate::ffi::timespec64 {
        tv_sec: ts.sec,
        tv_nsec: ts.nsec as _,
    }
}

/// Turns a callback's result into a C int.
fn to_c_int(result: Result) -> kernel::ffi::c_int {
    match result {
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    }
}
