// SPDX-License-Identifier: GPL-2.0

//! The oxdax filesystem, kernel side: the VFS operations of
//! [`crate::sys::fs::FileSystem`] carried out by the pure-logic
//! [`Volume`], and the file data moved directly between user buffers and
//! persistent memory (no page cache).
//!
//! Locking (Documentation/oxdax/filesystem.rst): VFS locks (i_rwsem) are
//! taken by the callers, then a DAX read section, then the volume mutex,
//! held only for one `Volume` call; nothing calls back into the VFS or
//! touches user memory with the mutex held.

mod extents;
mod failure;
mod media;
mod mmap;

use core::{
    fmt,
    sync::atomic::{AtomicU64, Ordering},
};

use kernel::{c_str, fmt, new_mutex, prelude::*, str::CStr, str::CString, sync::Arc, sync::Mutex};

use self::{
    media::{Buffers, PmemMedia},
    mmap::Quiet,
};
use crate::{
    dax::Engine,
    logic::{
        format::{
            inode::{Inode as Record, Timestamp, MAX_FILE_SIZE},
            kinds::NAME_MAX,
            BLOCK_SIZE,
        },
        fs::{
            AttrChange, Error as FsError, MapKind, Mapping, MountError, NewInode, RenameFlags,
            SharedWrite, Volume, END_POSITION, FIRST_POSITION,
        },
        params::FaultEngine,
    },
    params,
    sys::{
        dax::{FsDax, FsDaxError, MapError},
        debugfs, errno,
        fs::mmap::IomapExtent,
        fs::{
            Attributes, DirContext, Fallocate, Fiemap, FileSystem, FsType, Inode, Kiocb, NewOwner,
            SeqFile, StatFs, SuperBlock,
        },
        iov::IovIter,
        memory::{self, PmemMemory},
        mm::{FaultCode, VmFault},
        once::SetOnce,
    },
};

/// `statfs` magic: "OXDA".
const OXDAX_MAGIC: u64 = 0x4f58_4441;

/// Block size as a `u64`, for offset arithmetic.
const BLOCK: u64 = BLOCK_SIZE as u64;

/// Bytes of directory entries gathered per volume call in `readdir`.
const READDIR_BATCH: usize = 4096;

static FS_TYPE: FsType = FsType::new();

/// The oxdax filesystem type.
pub(crate) struct OxdaxFs;

/// Mount options (`dax` is accepted and always on).
#[derive(Default)]
pub(crate) struct Options {
    /// `fault_engine=`: who serves page faults (default: the module
    /// parameter).
    fault_engine: Option<FaultEngine>,
}

type Vol = Volume<PmemMedia, Buffers>;

/// A mounted oxdax filesystem.
#[pin_data]
pub(crate) struct Info {
    /// The filesystem's metadata, one operation at a time.
    #[pin]
    volume: Mutex<Vol>,
    /// The engine's counters in debugfs.
    counters_dir: SetOnce<debugfs::CounterDir<crate::dax::Counters>>,
    /// Page faults, and the mapping file data is copied through (the
    /// volume has its own).
    #[pin]
    engine: Engine,
    /// Who serves this mount's page faults.
    fault_engine: FaultEngine,
    /// The DAX device: held, and checked alive around every access.
    dax: FsDax,
    /// Device name, for log lines.
    id: CString,
    /// The damaged block last reported, so that every access to one
    /// damaged structure does not log again (its errno is still EIO).
    last_damaged: AtomicU64,
}

impl Info {
    /// Device name, for log lines.
    fn id(&self) -> &CStr {
        &self.id
    }

    /// Runs one volume operation: inside a DAX read section (the device is
    /// alive and stays mapped), under the volume mutex. Errors become
    /// errnos, damage is logged.
    fn call<R>(&self, op: impl FnOnce(&mut Vol) -> Result<R, FsError>) -> Result<R> {
        let Some(_alive) = self.dax.read_lock() else {
            return Err(EIO);
        };
        let result = op(&mut self.volume.lock());
        result.map_err(|e| self.errno(e))
    }

    /// Gives the fault engine the volume's zero chunk (writable mounts).
    fn reserve_zero_chunk(&self) {
        if let Ok(Some(block)) = self.call(|v| Ok(v.reserve_zero_chunk())) {
            self.engine.set_zero_chunk(block * BLOCK);
        }
    }

    /// The errno of a volume error; damage gets a (rate-limited) line.
    fn errno(&self, e: FsError) -> Error {
        match e {
            FsError::NotFound => ENOENT,
            FsError::Exists => EEXIST,
            FsError::NotEmpty => errno::enotempty(),
            FsError::NotDir => ENOTDIR,
            FsError::IsDir => EISDIR,
            FsError::NoSpace => ENOSPC,
            FsError::NameTooLong => errno::enametoolong(),
            FsError::Invalid => EINVAL,
            FsError::TooManyLinks => EMLINK,
            FsError::TooBig => EFBIG,
            FsError::ReadOnly => EROFS,
            FsError::Shutdown => EIO,
            // Reads and writes turn it into EIO; faults into SIGBUS
            // BUS_MCEERR_AR.
            FsError::Poisoned => errno::ehwpoison(),
            FsError::Corrupt(block, what) => {
                let first = self.last_damaged.swap(block, Ordering::Relaxed) != block;
                if first && memory::log_ratelimit() {
                    pr_err!(
                        "{}: damaged metadata in block {}: {:?}\n",
                        self.id(),
                        block,
                        what
                    );
                }
                EIO
            }
        }
    }
}

/// Runs `op`, a change to directory `dir`, then shows the directory's new
/// record (size, link count, times) in its VFS inode.
fn in_directory<R>(
    info: &Info,
    dir: &Inode<OxdaxFs>,
    op: impl FnOnce(&mut Vol) -> Result<R, FsError>,
) -> Result<R> {
    let (result, record) = info.call(|v| {
        let result = op(v)?;
        Ok((result, v.inode(dir.ino()).ok()))
    })?;
    if let Some(record) = record {
        refresh(dir, &record);
    }
    Ok(result)
}

/// The info of a live super block.
fn info(sb: &SuperBlock<OxdaxFs>) -> Result<&Info> {
    sb.info().ok_or(EIO)
}

/// The info of an inode's super block.
fn inode_info(inode: &Inode<OxdaxFs>) -> Result<&Info> {
    inode.fs_info().ok_or(EIO)
}

/// What the VFS inode shows of a record.
fn attributes(record: &Record) -> Attributes {
    Attributes {
        mode: record.mode,
        uid: record.uid,
        gid: record.gid,
        nlink: record.nlink,
        size: record.size,
        allocated: record.blocks.saturating_mul(BLOCK),
        atime: record.atime,
        mtime: record.mtime,
        ctime: record.ctime,
        generation: record.generation,
        rdev: record.rdev,
        btime: record.btime,
    }
}

/// Copies a record into its VFS inode: the one place that does.
fn refresh(inode: &Inode<OxdaxFs>, record: &Record) {
    inode.set_attributes(&attributes(record));
}

/// Like [`refresh`], when the volume returned a record for inode `ino`
/// that should be `inode`'s.
fn refresh_checked(info: &Info, inode: &Inode<OxdaxFs>, ino: u64, record: &Record) {
    if inode.ino() == ino {
        refresh(inode, record);
    } else {
        pr_err!(
            "{}: operation on inode {} changed inode {}\n",
            info.id(),
            inode.ino(),
            ino
        );
    }
}

/// The one log line of a refused mount, and its errno.
fn mount_error(id: &CStr, e: MountError) -> Error {
    match e {
        MountError::NoFilesystem => {
            pr_err!("{}: no oxdax filesystem\n", id);
            EINVAL
        }
        MountError::Unsupported => {
            pr_err!("{}: unsupported oxdax version or feature\n", id);
            EINVAL
        }
        MountError::TooSmall => {
            pr_err!("{}: filesystem larger than the device\n", id);
            EINVAL
        }
        MountError::Journal => {
            pr_err!("{}: damaged journal\n", id);
            errno::euclean()
        }
        MountError::Corrupt(block, what) => {
            pr_err!("{}: damaged metadata in block {}: {:?}\n", id, block, what);
            errno::euclean()
        }
    }
}

/// A UUID in its usual text form.
struct Uuid<'a>(&'a [u8; 16]);

impl fmt::Display for Uuid<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{:02x}", b)?;
        }
        Ok(())
    }
}

/// Maps the whole device; one log line if it cannot.
fn map_device(id: &CStr, dax: &FsDax, len: u64) -> Result<(PmemMemory, u64)> {
    dax.map_all(len).map_err(|e| match e {
        MapError::Partial(pages) => {
            pr_err!(
                "{}: only {} of {} pages map contiguously\n",
                id,
                pages,
                len / crate::logic::pmem::PAGE_SIZE
            );
            EINVAL
        }
        MapError::Poisoned => {
            pr_err!("{}: device has poisoned memory, not mounting\n", id);
            EIO
        }
        MapError::Dead => {
            pr_err!("{}: DAX device is gone\n", id);
            ENXIO
        }
        MapError::Other(errno) => {
            pr_err!("{}: cannot map the device (errno {})\n", id, errno);
            Error::from_errno(errno)
        }
    })
}

/// Mounts a volume on a fresh mapping of `dax` (called inside a DAX read
/// section).
fn mount_volume(id: &CStr, dax: &FsDax, len: u64, read_only: bool) -> Result<Vol> {
    let media = PmemMedia::new(map_device(id, dax, len)?.0);
    let (volume, report) =
        Volume::mount(media, Buffers::new()?, read_only).map_err(|e| mount_error(id, e))?;
    let sb = volume.superblock();
    pr_info!(
        "{}: mounted{} label \"{}\" uuid {}{}{}{}\n",
        id,
        if read_only { " read-only," } else { "" },
        sb.label.as_str(),
        Uuid(&sb.uuid),
        if report.recovered {
            ", journal recovered"
        } else {
            ""
        },
        if report.used_backup {
            ", backup superblock used"
        } else {
            ""
        },
        if report.was_dirty {
            ", was not unmounted cleanly"
        } else {
            ""
        },
    );
    Ok(volume)
}

impl OxdaxFs {
    /// Takes block `block` (with failed memory) out of `inode`'s file, as a
    /// punched hole: its mappings go first.
    fn drop_poisoned_block(inode: &Inode<Self>, block: u64, now: Timestamp) -> Result {
        let info = inode_info(inode)?;
        let ino = inode.ino();
        let start = block * BLOCK;
        let _faults_off = mmap::quiesce(inode, Quiet::range(start, start + BLOCK))?;
        let record = info.call(|v| v.punch_hole(ino, start, BLOCK, now))?;
        refresh(inode, &record);
        Ok(())
    }

    /// Blocks `first..first + count` of `inode`, writable in place for
    /// `write(2)`. Shared blocks are copied first, with faults held off
    /// and the old blocks' mappings and pins gone: they belong to their
    /// other owners once the copy commits.
    fn map_write(inode: &Inode<Self>, first: u64, count: u64) -> Result<Mapping> {
        let info = inode_info(inode)?;
        let ino = inode.ino();
        let mapping = info.call(|v| v.map_write(ino, first, count, SharedWrite::Report))?;
        if !mapping.shared {
            return Ok(mapping);
        }
        let start = mapping.file_block * BLOCK;
        let range = Quiet::range(start, start + mapping.len * BLOCK);
        let _faults_off = mmap::quiesce(inode, range)?;
        info.call(|v| v.map_write(ino, mapping.file_block, mapping.len, SharedWrite::Copy))
    }

    /// The block range a transfer of `pos..end` still needs.
    fn blocks(pos: u64, end: u64) -> (u64, u64) {
        let first = pos / BLOCK;
        (first, (end - 1) / BLOCK + 1 - first)
    }

    /// Bytes of `mapping` from `pos` up to `end`, and where they are on the
    /// device; `None` if the volume answered for another range.
    fn span(mapping: &Mapping, pos: u64, end: u64) -> Option<(u64, u64)> {
        let start = mapping.file_block.checked_mul(BLOCK)?;
        let stop = mapping
            .file_block
            .checked_add(mapping.len)?
            .checked_mul(BLOCK)?;
        if pos < start || pos >= stop || mapping.len == 0 {
            return None;
        }
        let device = mapping
            .physical
            .checked_mul(BLOCK)?
            .checked_add(pos - start)?;
        Some((stop.min(end) - pos, device))
    }
}

/// The errno of a failed read or write: `EIO` for failed memory.
fn io_errno(e: Error) -> Error {
    if e == errno::ehwpoison() {
        EIO
    } else {
        e
    }
}

impl FileSystem for OxdaxFs {
    type Options = Options;
    type Info = Info;

    const NAME: &'static CStr = c_str!("oxdax");
    const MAGIC: u64 = OXDAX_MAGIC;
    const MAX_BYTES: u64 = MAX_FILE_SIZE;

    fn fs_type() -> &'static FsType {
        &FS_TYPE
    }

    fn parse_param(options: &mut Options, key: &CStr, value: Option<&CStr>) -> Result {
        if key.as_bytes() == b"fault_engine" {
            let engine = value.and_then(|v| FaultEngine::parse(v.as_bytes()));
            if engine.is_none() {
                pr_err!("fault_engine= takes oxdax or iomap\n");
                return Err(EINVAL);
            }
            options.fault_engine = engine;
            return Ok(());
        }
        if key.as_bytes() != b"dax" {
            // `source` is the VFS's; anything else it refuses, with one
            // "oxdax: Unknown parameter" line.
            return Err(errno::enoparam());
        }
        match value {
            None => Ok(()),
            Some(v) if v.as_bytes() == b"always" => Ok(()),
            Some(v) => {
                pr_err!("dax={} is not supported: DAX is always on\n", v);
                Err(EINVAL)
            }
        }
    }

    fn fill_super(sb: &SuperBlock<Self>, options: &Options) -> Result<Arc<Info>> {
        let id = CString::try_from_fmt(fmt!("{}", sb.id()))?;
        let dax = sb.get_dax().map_err(|FsDaxError::NotDax| {
            pr_err!("{}: not a DAX device\n", &*id);
            EINVAL
        })?;
        let len = sb.device_bytes();
        let (data, first_frame) = map_device(&id, &dax, len)?;
        let volume = {
            let Some(_alive) = dax.read_lock() else {
                pr_err!("{}: DAX device is gone\n", &*id);
                return Err(ENXIO);
            };
            mount_volume(&id, &dax, len, sb.is_read_only())?
        };
        let info = Arc::pin_init(
            try_pin_init!(Info {
                volume <- new_mutex!(volume, "oxdax_volume"),
                counters_dir: SetOnce::new(),
                engine <- Engine::new(data, first_frame)?,
                fault_engine: options.fault_engine.unwrap_or_else(params::fault_engine),
                dax,
                id,
                last_damaged: AtomicU64::new(u64::MAX),
            }? Error),
            GFP_KERNEL,
        )?;
        let _ = info.counters_dir.set(info.engine.publish(&info.id));
        info.reserve_zero_chunk();
        Ok(info)
    }

    fn dax(info: &Info) -> &FsDax {
        &info.dax
    }

    fn root(info: &Info) -> u64 {
        info.volume.lock().root()
    }

    fn reconfigure(sb: &SuperBlock<Self>, options: &Options, read_only: bool) -> Result {
        if let (Ok(info), Some(engine)) = (info(sb), options.fault_engine) {
            if engine != info.fault_engine {
                pr_err!("{}: fault_engine cannot change on remount\n", info.id());
                return Err(EINVAL);
            }
        }
        if read_only == sb.is_read_only() {
            return Ok(());
        }
        let info = info(sb)?;
        info.call(|volume| volume.set_read_only(read_only))?;
        info.reserve_zero_chunk();
        Ok(())
    }

    fn put_super(sb: &SuperBlock<Self>) {
        if let Ok(info) = info(sb) {
            // A dead device is not written to: its memory may be unmapped.
            if let Some(_alive) = info.dax.read_lock() {
                info.volume.lock().unmount();
            }
        }
    }

    fn statfs(sb: &SuperBlock<Self>) -> Result<StatFs> {
        let info = info(sb)?;
        let (stat, uuid) = info.call(|v| Ok((v.statfs(), v.superblock().uuid)))?;
        let (low, high) = uuid.split_at(8);
        let fold = |b: &[u8]| b.iter().fold(0u64, |acc, &x| acc << 8 | u64::from(x));
        Ok(StatFs {
            blocks: stat.blocks,
            free_blocks: stat.free_blocks,
            files: stat.files,
            free_files: stat.free_files,
            name_len: NAME_MAX as u64,
            fsid: fold(low) ^ fold(high),
        })
    }

    fn sync_fs(sb: &SuperBlock<Self>) -> Result {
        // Every operation is durable when it returns: only report a
        // filesystem that can no longer keep that promise.
        let info = info(sb)?;
        info.call(|v| {
            if v.is_shut_down() {
                Err(FsError::Shutdown)
            } else {
                Ok(())
            }
        })
    }

    fn show_options(sb: &SuperBlock<Self>, seq: &mut SeqFile) -> Result {
        seq.puts(c_str!(",dax"));
        if info(sb)?.fault_engine == FaultEngine::Iomap {
            seq.puts(c_str!(",fault_engine=iomap"));
        }
        Ok(())
    }

    fn dax_failure(
        sb: &SuperBlock<Self>,
        info: &Info,
        offset: u64,
        len: u64,
        mf_flags: i32,
    ) -> Result {
        failure::dax_failure(sb, info, offset, len, mf_flags)
    }

    fn read_inode(info: &Info, ino: u64) -> Result<Attributes> {
        let record = info.call(|v| v.inode(ino)).map_err(|e| {
            if e == ENOENT {
                // A name or handle refers to a free inode.
                errno::estale()
            } else {
                e
            }
        })?;
        Ok(attributes(&record))
    }

    fn evict_inode(inode: &Inode<Self>) {
        let Ok(info) = inode_info(inode) else {
            return;
        };
        let ino = inode.ino();
        if let Err(e) = info.call(|v| v.evict(ino)) {
            if e != EIO && memory::log_ratelimit() {
                pr_warn!("{}: inode {} not freed: {:?}\n", info.id(), ino, e);
            }
        }
    }

    fn lookup(dir: &Inode<Self>, name: &[u8]) -> Result<Option<u64>> {
        let info = inode_info(dir)?;
        info.call(|v| match v.lookup(dir.ino(), name) {
            Ok(ino) => Ok(Some(ino)),
            Err(FsError::NotFound) => Ok(None),
            Err(e) => Err(e),
        })
    }

    fn create(dir: &Inode<Self>, name: &[u8], owner: &NewOwner) -> Result<u64> {
        let info = inode_info(dir)?;
        let new = NewInode {
            mode: owner.mode,
            uid: owner.uid,
            gid: owner.gid,
            rdev: owner.rdev,
            now: dir.now(),
        };
        in_directory(info, dir, |v| {
            v.create(dir.ino(), name, &new).map(|(ino, _)| ino)
        })
    }

    fn link(inode: &Inode<Self>, dir: &Inode<Self>, name: &[u8]) -> Result {
        let info = inode_info(dir)?;
        let now = dir.now();
        let record = in_directory(info, dir, |v| v.link(inode.ino(), dir.ino(), name, now))?;
        refresh(inode, &record);
        Ok(())
    }

    fn unlink(dir: &Inode<Self>, name: &[u8], victim: &Inode<Self>) -> Result {
        let info = inode_info(dir)?;
        let now = dir.now();
        let unlinked = in_directory(info, dir, |v| v.unlink(dir.ino(), name, now))?;
        refresh_checked(info, victim, unlinked.ino, &unlinked.inode);
        Ok(())
    }

    fn rmdir(dir: &Inode<Self>, name: &[u8], victim: &Inode<Self>) -> Result {
        let info = inode_info(dir)?;
        let now = dir.now();
        let unlinked = in_directory(info, dir, |v| v.rmdir(dir.ino(), name, now))?;
        refresh_checked(info, victim, unlinked.ino, &unlinked.inode);
        Ok(())
    }

    fn rename(
        old_dir: &Inode<Self>,
        old_name: &[u8],
        moved: &Inode<Self>,
        new_dir: &Inode<Self>,
        new_name: &[u8],
        replaced: Option<&Inode<Self>>,
        no_replace: bool,
    ) -> Result {
        let info = inode_info(old_dir)?;
        let now = old_dir.now();
        let same_dir = old_dir.ino() == new_dir.ino();
        let (renamed, old_record, new_record) = info.call(|v| {
            let renamed = v.rename(
                old_dir.ino(),
                old_name,
                new_dir.ino(),
                new_name,
                RenameFlags { no_replace },
                now,
            )?;
            let old_record = v.inode(old_dir.ino()).ok();
            let new_record = if same_dir {
                None
            } else {
                v.inode(new_dir.ino()).ok()
            };
            Ok((renamed, old_record, new_record))
        })?;
        refresh_checked(info, moved, renamed.moved.0, &renamed.moved.1);
        match (replaced, renamed.replaced) {
            (Some(inode), Some((ino, record))) => refresh_checked(info, inode, ino, &record),
            (None, None) => {}
            _ => pr_err!(
                "{}: rename target in directory {} disagrees with the dentry cache\n",
                info.id(),
                new_dir.ino()
            ),
        }
        if let Some(record) = old_record {
            refresh(old_dir, &record);
        }
        if let Some(record) = new_record {
            refresh(new_dir, &record);
        }
        Ok(())
    }

    fn setattr(inode: &Inode<Self>, change: &AttrChange) -> Result {
        let info = inode_info(inode)?;
        let ino = inode.ino();
        // Shrinking: nothing may map the pages past the new end when
        // their blocks are freed (private copies there go too: SIGBUS), nor
        // the page of the new end, whose tail is zeroed (in a copy if it is
        // shared). Growing: the old end's page, whose tail is zeroed.
        let quiet = match change.size {
            Some(size) if size < inode.size() => Some(Quiet::truncation(size)),
            Some(size) if size > inode.size() => Quiet::growth(inode.size()),
            _ => None,
        };
        let _faults_off = quiet.map(|range| mmap::quiesce(inode, range)).transpose()?;
        let mut current = None;
        let result = info.call(|v| match v.set_attr(ino, change) {
            Ok(record) => Ok(record),
            Err(e) => {
                // The VFS inode already shows the change: restore it.
                current = v.inode(ino).ok();
                Err(e)
            }
        });
        match result {
            Ok(record) => {
                refresh(inode, &record);
                Ok(())
            }
            Err(e) => {
                if let Some(record) = current {
                    refresh(inode, &record);
                }
                Err(e)
            }
        }
    }

    fn update_time(inode: &Inode<Self>, change: &AttrChange) -> Result {
        // Called without i_rwsem (page faults, reads): only the times
        // change, and only they are copied back; the record's size may
        // already be older than a concurrent write's.
        let info = inode_info(inode)?;
        let ino = inode.ino();
        let record = info.call(|v| v.set_attr(ino, change))?;
        inode.set_times(&attributes(&record));
        Ok(())
    }

    fn fallocate(inode: &Inode<Self>, mode: Fallocate, offset: u64, len: u64) -> Result {
        extents::fallocate(inode, mode, offset, len)
    }

    fn seek(inode: &Inode<Self>, offset: u64, data: bool) -> Result<u64> {
        extents::seek(inode, offset, data)
    }

    fn remap(src: &Inode<Self>, src_pos: u64, dst: &Inode<Self>, dst_pos: u64, len: u64) -> Result {
        extents::remap(src, src_pos, dst, dst_pos, len)
    }

    fn fiemap(inode: &Inode<Self>, start: u64, len: u64, out: &mut Fiemap<'_>) -> Result {
        extents::fiemap(inode, start, len, out)
    }

    fn read(iocb: &mut Kiocb<'_, Self>, iter: &mut IovIter) -> Result<usize> {
        let inode = iocb.inode();
        let info = inode_info(inode)?;
        let ino = inode.ino();
        let mut pos = iocb.pos();
        let size = inode.size();
        if pos >= size {
            return Ok(0);
        }
        let end = size.min(pos.saturating_add(iter.count() as u64));
        // The mapping stays valid while this read section lasts: a removed
        // device waits for it before its memory is unmapped.
        let Some(_alive) = info.dax.read_lock() else {
            return Err(EIO);
        };
        let mut done = 0usize;
        let mut failure = None;
        while pos < end {
            let (first, count) = Self::blocks(pos, end);
            let mapping = match info.call(|v| v.map_data(ino, first, count)) {
                Ok(mapping) => mapping,
                Err(e) => {
                    failure = Some(io_errno(e));
                    break;
                }
            };
            let Some((len, device)) = Self::span(&mapping, pos, end) else {
                pr_err!(
                    "{}: inode {}: bad mapping for block {}\n",
                    info.id(),
                    ino,
                    first
                );
                failure = Some(EIO);
                break;
            };
            let len = len as usize;
            let copied = match mapping.kind {
                MapKind::Hole | MapKind::Unwritten => iter.zero(len),
                MapKind::Data => info.engine.memory().copy_to_iter(device, len, iter)?,
            };
            pos += copied as u64;
            done += copied;
            if copied < len {
                // A fault on the user buffer, or poisoned media.
                failure = Some(EFAULT);
                break;
            }
        }
        iocb.set_pos(pos);
        match failure {
            Some(e) if done == 0 => Err(e),
            _ => Ok(done),
        }
    }

    fn write(iocb: &mut Kiocb<'_, Self>, iter: &mut IovIter) -> Result<usize> {
        let inode = iocb.inode();
        let info = inode_info(inode)?;
        let ino = inode.ino();
        let start = iocb.pos();
        let end = start.checked_add(iter.count() as u64).ok_or(EFBIG)?;
        if end == start {
            return Ok(0);
        }
        let now: Timestamp = inode.now();
        let size = inode.size();
        if start > size {
            // What lies past the old end of file is not the file's: the
            // gap reads as zeros once the file grows over it.
            let _faults_off = Quiet::growth(size)
                .map(|range| mmap::quiesce(inode, range))
                .transpose()?;
            info.call(|v| v.zero_past_eof(ino, start))?;
        }
        let Some(_alive) = info.dax.read_lock() else {
            return Err(EIO);
        };
        let mut pos = start;
        let mut failure = None;
        while pos < end {
            let (first, count) = Self::blocks(pos, end);
            // Allocates (zeroed, durable) or converts blocks as needed.
            let mapping = match Self::map_write(inode, first, count) {
                Ok(mapping) => mapping,
                Err(e)
                    if e == errno::ehwpoison()
                        && pos <= first * BLOCK
                        && end >= (first + 1) * BLOCK =>
                {
                    // The whole block is overwritten: the file gets a new
                    // one and the failed one (freed, remembered as
                    // poisoned) is never used again.
                    if let Err(e) = Self::drop_poisoned_block(inode, first, now) {
                        failure = Some(io_errno(e));
                        break;
                    }
                    continue;
                }
                Err(e) => {
                    // ENOSPC mid-write: what was written is kept.
                    failure = Some(io_errno(e));
                    break;
                }
            };
            if mapping.new && !mapping.copied {
                // Zero pages mapped over the old hole must not stay.
                let start = mapping.file_block * BLOCK;
                if let Err(e) = mmap::remove_mappings(inode, start, start + mapping.len * BLOCK) {
                    failure = Some(e);
                    break;
                }
            }
            let span = Self::span(&mapping, pos, end)
                .filter(|_| mapping.kind == MapKind::Data && !mapping.shared);
            let Some((len, device)) = span else {
                pr_err!(
                    "{}: inode {}: bad write mapping for block {}\n",
                    info.id(),
                    ino,
                    first
                );
                failure = Some(EIO);
                break;
            };
            let len = len as usize;
            let copied = info.engine.memory().copy_from_iter(device, len, iter)?;
            pos += copied as u64;
            if copied < len {
                failure = Some(EFAULT);
                break;
            }
        }
        // The data must be durable before the size that exposes it.
        memory::fence();
        if pos > start {
            let record = info.call(|v| v.write_done(ino, pos, now))?;
            refresh(inode, &record);
        }
        iocb.set_pos(pos);
        match failure {
            Some(e) if pos == start => Err(e),
            _ => Ok((pos - start) as usize),
        }
    }

    fn fsync(inode: &Inode<Self>, first: u64, last: u64) -> Result {
        // write(2) copies bypass the caches and fence, and metadata is
        // durable per operation: what remains is what was stored through
        // mappings.
        mmap::writeback(inode, first, last)?;
        Self::sync_fs(&inode.super_block())
    }

    fn mmap(inode: &Inode<Self>, sync: bool) -> Result {
        mmap::mmap(inode, sync)
    }

    fn fault(inode: &Inode<Self>, vmf: &VmFault, order: u32, present: bool) -> FaultCode {
        mmap::fault(inode, vmf, order, present)
    }

    fn writeback(inode: &Inode<Self>, first: u64, last: u64) -> Result {
        mmap::writeback(inode, first, last)
    }

    fn iomap(inode: &Inode<Self>, first: u64, pages: u64, write: bool) -> Result<IomapExtent> {
        mmap::iomap(inode, first, pages, write)
    }

    fn readdir(dir: &Inode<Self>, ctx: &mut DirContext<'_>) -> Result {
        let info = inode_info(dir)?;
        let ino = dir.ino();
        let mut pos = ctx.pos().max(FIRST_POSITION);
        if pos >= END_POSITION {
            return Ok(());
        }
        // Entries are gathered under the volume mutex, then emitted without
        // it: emitting copies to user memory, which may fault.
        loop {
            let mut batch = KVec::with_capacity(READDIR_BATCH, GFP_KERNEL)?;
            let mut complete = true;
            info.call(|v| {
                v.readdir(ino, pos, &mut |entry| {
                    let Ok(len) = u8::try_from(entry.name.len()) else {
                        return true;
                    };
                    let need = 18 + entry.name.len();
                    if READDIR_BATCH - batch.len() < need {
                        complete = false;
                        return false;
                    }
                    // Capacity was checked: these do not allocate.
                    let fits = batch
                        .extend_from_slice(&entry.ino.to_le_bytes(), GFP_NOWAIT)
                        .and_then(|()| {
                            batch.extend_from_slice(&entry.next_cookie.to_le_bytes(), GFP_NOWAIT)
                        })
                        .and_then(|()| batch.extend_from_slice(&[entry.dtype, len], GFP_NOWAIT))
                        .and_then(|()| batch.extend_from_slice(entry.name, GFP_NOWAIT));
                    if fits.is_err() {
                        complete = false;
                    }
                    fits.is_ok()
                })
            })?;
            let mut rest: &[u8] = &batch;
            let mut emitted = false;
            while let Some((entry, tail)) = decode_entry(rest) {
                if !ctx.emit(entry.name, entry.ino, entry.dtype) {
                    return Ok(());
                }
                ctx.set_pos(entry.next_cookie);
                pos = entry.next_cookie;
                rest = tail;
                emitted = true;
            }
            if complete {
                ctx.set_pos(END_POSITION);
                return Ok(());
            }
            if !emitted {
                return Err(EIO);
            }
        }
    }
}

/// A directory entry as a readdir batch holds it.
struct BatchEntry<'a> {
    ino: u64,
    next_cookie: u64,
    dtype: u8,
    name: &'a [u8],
}

/// The first entry of a readdir batch, and the rest of the batch.
fn decode_entry(bytes: &[u8]) -> Option<(BatchEntry<'_>, &[u8])> {
    let ino = u64::from_le_bytes(bytes.get(0..8)?.try_into().ok()?);
    let next_cookie = u64::from_le_bytes(bytes.get(8..16)?.try_into().ok()?);
    let dtype = *bytes.get(16)?;
    let len = usize::from(*bytes.get(17)?);
    let name = bytes.get(18..18 + len)?;
    let entry = BatchEntry {
        ino,
        next_cookie,
        dtype,
        name,
    };
    Some((entry, bytes.get(18 + len..)?))
}
