// SPDX-License-Identifier: GPL-2.0

//! fsck.oxdax: check an oxdax filesystem (read-only for now).
//!
//!   fsck.oxdax [-n] DEVICE
//!
//! Exit status as e2fsck's: 0 clean, 4 errors left uncorrected, 8
//! operational error, 16 usage error.

use std::cell::{Cell, OnceCell};
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::process::ExitCode;

use oxdax::format::{
    journal::{self, JournalHeader},
    mkfs::{check_filesystem, FsError, Image},
    superblock::Superblock,
    BLOCK_SIZE,
};
use oxdax::fs::{check_files, Fact, Media};

const USAGE: &str = "usage: fsck.oxdax [-n] DEVICE";

/// The size of a device or image file in bytes.
fn device_size(file: &mut File) -> io::Result<u64> {
    file.seek(SeekFrom::End(0))
}

/// A block buffer aligned for `O_DIRECT`.
#[repr(align(4096))]
struct Aligned([u8; BLOCK_SIZE]);

/// Opens `path` for reading, bypassing the page cache where the kernel
/// allows it: a mounted (or just unmounted) DAX filesystem writes the
/// device's memory directly, so the block device's page cache can hold
/// stale blocks.
fn open_uncached(path: &str) -> io::Result<File> {
    const O_DIRECT: i32 = 0o40000;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(O_DIRECT)
        .open(path)
        .or_else(|_| File::open(path))
}

/// A device read a block at a time, on first use, for fsck; blocks that
/// committed journal transactions change are kept replayed in memory, so
/// the check sees what the next mount will (the device is not written).
struct DeviceImage {
    file: File,
    blocks: Vec<OnceCell<Box<[u8; BLOCK_SIZE]>>>,
    read_error: Cell<bool>,
}

impl DeviceImage {
    /// The device behind `file`.
    fn open(mut file: File) -> io::Result<Self> {
        let blocks = device_size(&mut file)? / BLOCK_SIZE as u64;
        Ok(Self {
            file,
            blocks: (0..blocks).map(|_| OnceCell::new()).collect(),
            read_error: Cell::new(false),
        })
    }

    /// Whether a read failed (the block then read as zeros).
    fn had_read_error(&self) -> bool {
        self.read_error.get()
    }

    /// Block `n`, with a message for fsck's report.
    fn read(&self, n: u64) -> Result<&[u8; BLOCK_SIZE], &'static str> {
        Image::block(self, n).map_err(|()| "device read")
    }

    /// Applies the committed transactions of the journal to the in-memory
    /// blocks; returns how many there were.
    fn replay_journal(&mut self) -> Result<u64, &'static str> {
        let backup = self.read(1)?;
        let sb = Superblock::decode(self.read(0)?)
            .or_else(|_| Superblock::decode(backup))
            .map_err(|_| "no valid superblock")?;
        let layout = sb.layout;
        let log_len = ((layout.journal_blocks - 1) * BLOCK_SIZE as u64) as usize;
        let header = JournalHeader::decode(self.read(layout.journal_start)?, log_len)
            .map_err(|_| "journal header")?;
        let mut log = Vec::with_capacity(log_len);
        for block in layout.journal_start + 1..layout.journal_start + layout.journal_blocks {
            log.extend_from_slice(self.read(block)?);
        }
        let mut bad = false;
        let end = journal::replay(&log, &header, &mut |block, offset, data| match self
            .block_mut(block)
        {
            Ok(bytes) => bytes[offset..offset + data.len()].copy_from_slice(data),
            Err(()) => bad = true,
        });
        if bad {
            return Err("journal record outside the device");
        }
        Ok(end.transactions)
    }
}

impl Image for DeviceImage {
    type Error = ();
    fn block(&self, n: u64) -> Result<&[u8; BLOCK_SIZE], ()> {
        let cell = self.blocks.get(n as usize).ok_or(())?;
        Ok(cell.get_or_init(|| {
            // O_DIRECT wants an aligned buffer.
            let mut aligned = Box::new(Aligned([0u8; BLOCK_SIZE]));
            if self
                .file
                .read_exact_at(&mut aligned.0[..], n * BLOCK_SIZE as u64)
                .is_err()
            {
                self.read_error.set(true);
            }
            Box::new(aligned.0)
        }))
    }
    fn block_mut(&mut self, n: u64) -> Result<&mut [u8; BLOCK_SIZE], ()> {
        // Changes stay in memory (journal replay): fsck does not write.
        Image::block(self, n)?;
        self.blocks
            .get_mut(n as usize)
            .and_then(|cell| cell.get_mut())
            .map(|b| &mut **b)
            .ok_or(())
    }
}

impl Media for DeviceImage {
    fn size(&self) -> u64 {
        self.blocks.len() as u64 * BLOCK_SIZE as u64
    }
    fn region(&self, offset: u64, len: usize) -> Option<&[u8]> {
        // The checks read blocks only.
        let within = (offset % BLOCK_SIZE as u64) as usize;
        let block = Image::block(self, offset / BLOCK_SIZE as u64).ok()?;
        block.get(within..within.checked_add(len)?)
    }
    fn write(&self, _offset: u64, _data: &[u8]) -> bool {
        false
    }
    fn zero(&self, _offset: u64, _len: u64) -> bool {
        false
    }
    fn fence(&self) {}
}

/// Link counts against the names found: `None` if they agree.
fn link_problem(
    names: &HashMap<u64, u32>,
    links: &[(u64, u32, bool)],
    root: u64,
) -> Option<String> {
    for &(ino, nlink, is_dir) in links {
        let named = names.get(&ino).copied().unwrap_or(0);
        let expected = match (is_dir, ino == root) {
            (true, true) => 0,
            (true, false) => u32::from(nlink != 0),
            (false, _) => nlink,
        };
        if named != expected {
            return Some(format!("inode {ino}: {named} names but link count {nlink}"));
        }
    }
    None
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let device = match args.as_slice() {
        [flag] if flag == "-h" || flag == "--help" => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        [device] if !device.starts_with('-') => device,
        [flag, device] if flag == "-n" => device,
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(16);
        }
    };
    let mut image = match open_uncached(device).and_then(DeviceImage::open) {
        Ok(image) => image,
        Err(e) => {
            eprintln!("fsck.oxdax: {device}: {e}");
            return ExitCode::from(8);
        }
    };
    match image.replay_journal() {
        Ok(0) => {}
        Ok(n) => println!("{device}: journal not empty ({n} transactions since the tail; the last checked as replayed)"),
        Err(what) => {
            println!("{device}: errors found: {what}");
            return ExitCode::from(4);
        }
    }
    let result = check_filesystem(&image);
    if image.had_read_error() {
        eprintln!("fsck.oxdax: {device}: read errors; unreadable blocks were checked as zeros");
    }
    match result {
        Ok(report) => {
            let sb = report.superblock;
            let mut names: HashMap<u64, u32> = HashMap::new();
            let mut links = Vec::new();
            let files = check_files(&image, &sb, &mut |fact| match fact {
                Fact::Name { ino, .. } => *names.entry(ino).or_default() += 1,
                Fact::Inode { ino, nlink, is_dir } => links.push((ino, nlink, is_dir)),
            });
            let files = match files {
                Ok(files) => files,
                Err(p) => {
                    println!("{device}: errors found: inode {}: {}", p.ino, p.what);
                    return ExitCode::from(4);
                }
            };
            if let Some(what) = link_problem(&names, &links, sb.root_ino) {
                println!("{device}: errors found: {what}");
                return ExitCode::from(4);
            }
            if files.orphans > 0 {
                println!(
                    "{device}: {} unlinked inodes still allocated (freed at the next mount)",
                    files.orphans
                );
            }
            println!(
                "{device}: clean, {} inodes ({} directories), {} extents, {} of {} data blocks in use, {} reverse-map records",
                files.inodes,
                files.directories,
                files.extents,
                report.used_blocks,
                sb.layout.data_blocks(),
                report.rmap_records
            );
            ExitCode::SUCCESS
        }
        Err(FsError::Corrupt(what)) => {
            println!("{device}: errors found: {what}");
            ExitCode::from(4)
        }
        Err(e) => {
            eprintln!("fsck.oxdax: {device}: {e:?}");
            ExitCode::from(8)
        }
    }
}
