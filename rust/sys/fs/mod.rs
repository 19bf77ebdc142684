// SPDX-License-Identifier: GPL-2.0

//! A filesystem seen from the VFS: registration, mount contexts, super
//! blocks, inodes, dentries, files, directory iteration and I/O iterators.
//!
//! 6.12's `kernel` crate has no filesystem abstractions; these are oxdax's.
//! A filesystem implements [`Operations`]: [`FileSystem`] for its super
//! blocks and one table per concern (directories, attributes, file data,
//! block maps, mappings, memory failures), each defined with its C
//! callbacks in the file of that concern. The wrappers install the C
//! operation tables that call it, follow the VFS's protocols (locking,
//! `I_NEW` inodes, dentry instantiation, generic checks) and hand it only
//! safe references. See Documentation/oxdax/filesystem.rst.

pub(crate) mod attr;
pub(crate) mod background;
pub(crate) mod dentry;
pub(crate) mod dir;
pub(crate) mod extents;
pub(crate) mod file;
pub(crate) mod holder;
pub(crate) mod inode;
pub(crate) mod mmap;
pub(crate) mod namei;
pub(crate) mod registration;
pub(crate) mod super_block;

use kernel::{build_error, error::VTABLE_DEFAULT_ERROR};
use kernel::{prelude::*, str::CStr, sync::Arc};

use crate::logic::format::inode::Timestamp;

pub(crate) use self::{
    attr::AttrOperations,
    dir::DirContext,
    extents::{ExtentFlags, ExtentOperations, Fallocate, Fiemap},
    file::{FileOperations, Kiocb},
    holder::HolderOperations,
    inode::Inode,
    mmap::MmapOperations,
    namei::DirOperations,
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

/// A filesystem's super blocks: mounting, the super block operations and
/// the life of its inodes. The other operations are tables of their own,
/// one per concern, which [`Operations`] gathers. Every method runs in
/// process context and may sleep; the wrappers have taken the VFS locks the
/// VFS documents for each operation (Documentation/filesystems/locking.rst)
/// before calling. Optional methods left out are NULL in the C tables: the
/// VFS's own behaviour for a filesystem without them.
#[vtable]
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

    /// The attributes of inode `ino`, to fill a new VFS inode.
    fn read_inode(info: &Self::Info, ino: u64) -> Result<Attributes>;

    /// `mount -o remount`: the read-only state may change. Without it,
    /// remounting changes nothing of the filesystem's.
    fn reconfigure(_sb: &SuperBlock<Self>, _options: &Self::Options, _read_only: bool) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Last use of a mounted super block (inodes are gone).
    fn put_super(_sb: &SuperBlock<Self>) {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// `statfs`.
    fn statfs(_sb: &SuperBlock<Self>) -> Result<StatFs> {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// `sync(2)`, `syncfs(2)`, unmount.
    fn sync_fs(_sb: &SuperBlock<Self>) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Options for /proc/mounts (each with a leading comma).
    fn show_options(_sb: &SuperBlock<Self>, _seq: &mut SeqFile) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// A filled inode's last reference is gone and it has no links left:
    /// its storage is the filesystem's to free.
    fn evict_inode(_inode: &Inode<Self>) {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// The super block's background job, if it has one (stopped when the
    /// super block is killed).
    fn background_of(_info: &Self::Info) -> Option<&background::Background<Self>> {
        None
    }

    /// One run of the background job. It takes freeze protection
    /// ([`SuperBlock::start_write`]) around each change it makes, so that
    /// a freeze waits for one change, not for the run.
    fn background(_sb: &SuperBlock<Self>, _job: &background::Background<Self>) {}
}

/// Everything a mountable filesystem implements: its super blocks
/// ([`FileSystem`]) and one operation table per concern, each in its own
/// file here and implemented by one file of the filesystem.
pub(crate) trait Operations:
    FileSystem
    + DirOperations
    + AttrOperations
    + FileOperations
    + ExtentOperations
    + MmapOperations
    + HolderOperations
{
}

impl<T> Operations for T where
    T: FileSystem
        + DirOperations
        + AttrOperations
        + FileOperations
        + ExtentOperations
        + MmapOperations
        + HolderOperations
{
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
