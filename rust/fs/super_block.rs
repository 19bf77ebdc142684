// SPDX-License-Identifier: GPL-2.0

//! Mounting oxdax and its super block operations ([`FileSystem`]): mount
//! options, mapping the device and mounting the volume on it, remount,
//! unmount, `statfs`, `syncfs`, /proc/mounts, and reading and freeing
//! inodes.
//!
//! Locking: the VFS serializes mount, remount and unmount (`s_umount`);
//! each volume call is one [`Info::call`] (lookups) or
//! [`Info::call_mut`] (changes).

use core::{
    fmt::{self, Display},
    sync::atomic::{AtomicBool, AtomicU64},
};

use kernel::{c_str, new_mutex, prelude::*, str::CStr, str::CString, sync::Arc};

use super::mutex_stats::{MutexStats, Use};
use super::{
    info::{attributes, info, inode_info, Info, OxdaxFs, SpaceCounters, Vol},
    media::{Buffers, PmemMedia},
};
use crate::{
    dax::Engine,
    logic::{
        format::{inode::MAX_FILE_SIZE, kinds::NAME_MAX},
        fs::{cache_slots_for, MountError, Volume, MIN_CACHE_SLOTS},
        params::FaultEngine,
    },
    params,
    sys::{
        dax::{DaxMemory, DeviceFrames, FsDax, FsDaxError, MapError},
        errno,
        fs::{
            background::Background, Attributes, FileSystem, FsType, Inode, SeqFile, StatFs,
            SuperBlock,
        },
        memory,
        once::SetOnce,
    },
};

/// `statfs` magic: "OXDA".
const OXDAX_MAGIC: u64 = 0x4f58_4441;

static FS_TYPE: FsType = FsType::new();

/// Mount options (`dax` is accepted and always on).
#[derive(Default)]
pub(crate) struct Options {
    /// `fault_engine=`: who serves page faults (default: the module
    /// parameter).
    fault_engine: Option<FaultEngine>,
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
        MountError::ReadOnlyFeatures => {
            pr_err!(
                "{}: unknown read-only-compatible oxdax features: mount read-only\n",
                id
            );
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

impl Display for Uuid<'_> {
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
fn map_device(id: &CStr, dax: &Arc<FsDax>, len: u64) -> Result<(DaxMemory, DeviceFrames)> {
    FsDax::map_all(dax, len).map_err(|e| match e {
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
fn mount_volume(id: &CStr, dax: &Arc<FsDax>, len: u64, read_only: bool) -> Result<Vol> {
    let media = PmemMedia::new(map_device(id, dax, len)?.0);
    // A large device's cache is worth having, not worth failing a mount
    // for when memory is short.
    let slots = cache_slots_for(len);
    let buffers = match Buffers::new(slots) {
        Ok(buffers) => buffers,
        Err(_) if slots > MIN_CACHE_SLOTS => {
            pr_warn!(
                "{}: no memory for a {} MiB metadata cache, using {} MiB\n",
                id,
                slots / 256,
                MIN_CACHE_SLOTS / 256
            );
            Buffers::new(MIN_CACHE_SLOTS)?
        }
        Err(e) => return Err(e),
    };
    let (volume, report) =
        Volume::mount(media, buffers, read_only).map_err(|e| mount_error(id, e))?;
    let sb = volume.superblock();
    pr_info!(
        "{}: mounted{} label \"{}\" uuid {}{}{}{}{}\n",
        id,
        if read_only { " read-only," } else { "" },
        sb.label.as_str(),
        Uuid(&sb.uuid),
        if report.recovered {
            ", journal recovered"
        } else {
            ""
        },
        if report.torn_journal_header {
            ", journal header torn by a crash, log restarted"
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

#[vtable]
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
        let id = CString::try_from_fmt(kernel::fmt!("{}", sb.id()))?;
        let dax = sb.get_dax().map_err(|FsDaxError::NotDax| {
            pr_err!("{}: not a DAX device\n", &*id);
            EINVAL
        })?;
        let dax = Arc::new(dax, GFP_KERNEL)?;
        let len = sb.device_bytes();
        let (data, frames) = map_device(&id, &dax, len)?;
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
                space: Arc::new(SpaceCounters::default(), GFP_KERNEL)?,
                mutex_stats: Arc::new(MutexStats::default(), GFP_KERNEL)?,
                close_has_work: AtomicBool::new(false),
                engine <- Engine::new(data, frames)?,
                fault_engine: options.fault_engine.unwrap_or_else(params::fault_engine),
                dax,
                id,
                last_damaged: AtomicU64::new(u64::MAX),
                compactor: Background::new(sb)?,
            }? Error),
            GFP_KERNEL,
        )?;
        info.publish_counters();
        info.reserve_zero_chunk();
        Ok(info)
    }

    fn dax(info: &Info) -> &FsDax {
        &info.dax
    }

    fn root(info: &Info) -> u64 {
        info.volume.lock().root()
    }

    fn read_inode(info: &Info, ino: u64) -> Result<Attributes> {
        let record = info.call(Use::Read, |v| v.inode(ino)).map_err(|e| {
            if e == ENOENT {
                // A name or handle refers to a free inode.
                errno::estale()
            } else {
                e
            }
        })?;
        // No links and not in memory: an orphan whose last user is gone
        // (evicted; its slot waits for the next batch of frees). Brought
        // back to life (by compaction's iget of a piece listed before the
        // unlink), its eviction would run again, perhaps after the slot
        // went to a new file, which `create` would then be handed this
        // stale inode for. ext4_iget refuses such an inode the same way.
        if record.nlink == 0 {
            return Err(errno::estale());
        }
        Ok(attributes(&record))
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
        let switched = info.call_mut(Use::Other, |volume| volume.set_read_only(read_only));
        if switched == Err(EROFS) {
            pr_err!(
                "{}: unknown read-only-compatible oxdax features: stays read-only\n",
                info.id()
            );
        }
        switched?;
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
        // Inodes evicted but not freed yet are counted as free.
        free_evicted(info);
        let (stat, uuid) = info.call(Use::Other, |v| Ok((v.statfs(), v.superblock().uuid)))?;
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
        // Compaction queued by what was deleted before is done first (as
        // xfs's sync_fs waits for its background inode freeing).
        let info = info(sb)?;
        // A frozen filesystem must have nothing left to write.
        free_evicted(info);
        info.compactor.flush();
        info.durable()
    }

    fn show_options(sb: &SuperBlock<Self>, seq: &mut SeqFile) -> Result {
        seq.puts(c_str!(",dax"));
        if info(sb)?.fault_engine == FaultEngine::Iomap {
            seq.puts(c_str!(",fault_engine=iomap"));
        }
        Ok(())
    }

    fn evict_inode(inode: &Inode<Self>) {
        let Ok(info) = inode_info(inode) else {
            return;
        };
        let ino = inode.ino();
        match info.call_mut(Use::Evict, |v| v.evict(ino)) {
            // Queuing the job wakes a worker: only worth it when blocks
            // were freed (an empty file's unlink spent a quarter of its
            // time here under TCG).
            Ok(true) => info.compact_soon(),
            Ok(false) => {}
            Err(e) => {
                if e != EIO && memory::log_ratelimit() {
                    pr_warn!("{}: inode {} not freed: {:?}\n", info.id(), ino, e);
                }
                info.compact_soon();
            }
        }
    }

    fn background_of(info: &Info) -> Option<&Background<Self>> {
        Some(&info.compactor)
    }

    fn background(sb: &SuperBlock<Self>, job: &Background<Self>) {
        super::compact::run(sb, job);
    }
}

/// Frees the evicted inodes that wait (`Volume::free_evicted`). Freeing
/// can fail as an eviction can (a device too full for the reverse map to
/// change): they stay orphans, freed by the next mount, and the caller
/// goes on.
fn free_evicted(info: &Info) {
    if let Err(e) = info.call_mut(Use::Evict, |v| v.free_evicted()) {
        if e != EIO && memory::log_ratelimit() {
            pr_warn!("{}: evicted inodes not freed: {:?}\n", info.id(), e);
        }
    }
}
