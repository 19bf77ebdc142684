// SPDX-License-Identifier: GPL-2.0

//! fsck.oxdax: check, and repair what is safe to repair, of an oxdax
//! filesystem.
//!
//!   fsck.oxdax [-n | -p | -y] DEVICE
//!
//! Without a flag or with `-n` the device is only read (committed journal
//! transactions are checked as replayed, in memory). With `-p` or `-y` it
//! repairs what can be repaired without guessing: it replays the journal,
//! frees orphaned inodes (unlinked while open at a crash), restores a
//! damaged primary superblock from the backup, and rebuilds the free-space
//! maps and the superblock's counters from the reverse map; then it checks
//! again. Damaged trees or records are reported, never rewritten.
//!
//! Exit status as e2fsck's: 0 clean, 1 errors corrected, 4 errors left
//! uncorrected, 8 operational error, 16 usage error.

use std::cell::{Cell, OnceCell, RefCell};
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
use oxdax::fs::{check_files, Fact, Media, MediaFault, Volume};

const USAGE: &str = "usage: fsck.oxdax [-n | -p | -y] DEVICE";

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
    /// blocks; returns how many there were, and whether a crash had torn
    /// the journal header (then nothing is replayed and mount restarts the
    /// log; so does this, in memory).
    fn replay_journal(&mut self) -> Result<(u64, bool), &'static str> {
        let backup = self.read(1)?;
        let sb = Superblock::decode(self.read(0)?)
            .or_else(|_| Superblock::decode(backup))
            .map_err(|_| "no valid superblock")?;
        let layout = sb.layout;
        let log_len = ((layout.journal_blocks - 1) * BLOCK_SIZE as u64) as usize;
        let (header, torn) = JournalHeader::recover(self.read(layout.journal_start)?, log_len)
            .map_err(|_| "journal header")?;
        let mut log = Vec::with_capacity(log_len);
        for block in layout.journal_start + 1..layout.journal_start + layout.journal_blocks {
            log.extend_from_slice(self.read(block)?);
        }
        let read = |offset: usize, buf: &mut [u8]| match log.get(offset..offset + buf.len()) {
            Some(bytes) => {
                buf.copy_from_slice(bytes);
                true
            }
            None => false,
        };
        let mut buffer = vec![0u8; oxdax::fs::TX_LOG_BYTES];
        let mut log = journal::Log {
            read: &read,
            len: log_len,
            buffer: &mut buffer,
        };
        // As mount recovers: only the last committed transaction (the
        // others are home), never into the journal itself.
        let journal_blocks = layout.journal_start..layout.journal_start + layout.journal_blocks;
        let mut bad = false;
        let end = journal::replay_last(&mut log, &header, &mut |block, offset, data| {
            if journal_blocks.contains(&block) || block >= layout.block_count {
                bad = true;
                return;
            }
            match self.block_mut(block) {
                Ok(bytes) => bytes[offset..offset + data.len()].copy_from_slice(data),
                Err(()) => bad = true,
            }
        });
        if bad {
            return Err("journal record outside the device or inside the journal");
        }
        if torn {
            // The restart tail recover() gave, which the walk found empty:
            // the header mount writes before its first transaction.
            let block = self
                .block_mut(layout.journal_start)
                .map_err(|()| "device read")?;
            header.encode(block);
        }
        Ok((end.transactions, torn))
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
    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), MediaFault> {
        let mut done = 0usize;
        while done < buf.len() {
            let at = offset + done as u64;
            let within = (at % BLOCK_SIZE as u64) as usize;
            let part = (BLOCK_SIZE - within).min(buf.len() - done);
            let block =
                Image::block(self, at / BLOCK_SIZE as u64).map_err(|()| MediaFault::OutOfRange)?;
            buf[done..done + part].copy_from_slice(&block[within..within + part]);
            done += part;
        }
        Ok(())
    }
    fn write(&self, _offset: u64, _data: &[u8]) -> bool {
        false
    }
    fn zero(&self, _offset: u64, _len: u64) -> bool {
        false
    }
    fn copy(&self, _from: u64, _to: u64, _len: u64) -> Result<(), MediaFault> {
        Err(MediaFault::OutOfRange)
    }
    fn fence(&self) {}
}

/// The device opened for repair: blocks cached on first use, and every
/// write sent to the device at once, a whole aligned block at a time.
struct RepairDevice {
    file: File,
    blocks: Vec<OnceCell<RefCell<Box<Aligned>>>>,
    failed: Cell<bool>,
}

impl RepairDevice {
    fn open(path: &str) -> io::Result<Self> {
        const O_DIRECT: i32 = 0o40000;
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(O_DIRECT)
            .open(path)
            .or_else(|_| {
                std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(path)
            })?;
        let blocks = device_size(&mut file)? / BLOCK_SIZE as u64;
        Ok(Self {
            file,
            blocks: (0..blocks).map(|_| OnceCell::new()).collect(),
            failed: Cell::new(false),
        })
    }

    /// Block `n`, read from the device on first use.
    fn cell(&self, n: u64) -> Option<&RefCell<Box<Aligned>>> {
        let cell = self.blocks.get(n as usize)?;
        Some(cell.get_or_init(|| {
            let mut aligned = Box::new(Aligned([0u8; BLOCK_SIZE]));
            if self
                .file
                .read_exact_at(&mut aligned.0[..], n * BLOCK_SIZE as u64)
                .is_err()
            {
                self.failed.set(true);
            }
            RefCell::new(aligned)
        }))
    }
}

impl Media for RepairDevice {
    fn size(&self) -> u64 {
        self.blocks.len() as u64 * BLOCK_SIZE as u64
    }
    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), MediaFault> {
        let mut done = 0usize;
        while done < buf.len() {
            let at = offset + done as u64;
            let within = (at % BLOCK_SIZE as u64) as usize;
            let part = (BLOCK_SIZE - within).min(buf.len() - done);
            let cell = self
                .cell(at / BLOCK_SIZE as u64)
                .ok_or(MediaFault::OutOfRange)?;
            buf[done..done + part].copy_from_slice(&cell.borrow().0[within..within + part]);
            done += part;
        }
        Ok(())
    }
    fn write(&self, offset: u64, data: &[u8]) -> bool {
        let mut done = 0usize;
        while done < data.len() {
            let at = offset + done as u64;
            let (n, within) = (at / BLOCK_SIZE as u64, (at % BLOCK_SIZE as u64) as usize);
            let part = (BLOCK_SIZE - within).min(data.len() - done);
            let Some(cell) = self.cell(n) else {
                return false;
            };
            let mut block = cell.borrow_mut();
            block.0[within..within + part].copy_from_slice(&data[done..done + part]);
            if self
                .file
                .write_all_at(&block.0, n * BLOCK_SIZE as u64)
                .is_err()
            {
                self.failed.set(true);
                return false;
            }
            done += part;
        }
        true
    }
    fn zero(&self, offset: u64, len: u64) -> bool {
        self.write(offset, &vec![0u8; len as usize])
    }
    fn copy(&self, from: u64, to: u64, len: u64) -> Result<(), MediaFault> {
        let mut data = vec![0u8; len as usize];
        self.read(from, &mut data)?;
        if self.write(to, &data) {
            Ok(())
        } else {
            Err(MediaFault::OutOfRange)
        }
    }
    fn fence(&self) {
        if self.file.sync_data().is_err() {
            self.failed.set(true);
        }
    }
}

/// Repairs what is safe (see the top of the file); `Ok(true)` if anything
/// changed.
fn repair(device: &str) -> Result<bool, String> {
    let media = RepairDevice::open(device).map_err(|e| format!("{device}: {e}"))?;
    let buffers = oxdax::HeapScratch::new();
    let (mut volume, report) = Volume::mount(media, buffers, false)
        .map_err(|e| format!("{device}: cannot be repaired: {e:?}"))?;
    let mut changed = false;
    if report.torn_journal_header {
        println!("{device}: journal header, torn by a crash, rewritten");
        changed = true;
    }
    if report.recovered {
        println!("{device}: journal replayed");
        changed = true;
    }
    if report.used_backup {
        println!("{device}: primary superblock restored from the backup");
        changed = true;
    }
    let fixed = volume
        .repair_space()
        .map_err(|e| format!("{device}: free-space repair failed: {e:?}"))?;
    if fixed > 0 {
        println!("{device}: free-space maps: {fixed} blocks corrected");
        changed = true;
    }
    volume.unmount();
    if volume.media().failed.get() {
        return Err(format!("{device}: I/O errors during the repair"));
    }
    Ok(changed)
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

/// Every linked inode must be reachable from the root: names and parent
/// pointers can agree with each other inside a cycle of directories cut
/// off from the tree. `None` if all are reachable.
fn unreachable(
    children: &HashMap<u64, Vec<u64>>,
    links: &[(u64, u32, bool)],
    root: u64,
) -> Option<String> {
    let mut seen = std::collections::HashSet::from([root]);
    let mut stack = vec![root];
    while let Some(dir) = stack.pop() {
        for &child in children.get(&dir).map_or(&[][..], |c| &c[..]) {
            if seen.insert(child) {
                stack.push(child);
            }
        }
    }
    links
        .iter()
        .find(|&&(ino, nlink, _)| nlink > 0 && !seen.contains(&ino))
        .map(|&(ino, _, _)| format!("inode {ino} is linked but not reachable from the root"))
}

/// The outcome of one read-only check.
enum Checked {
    /// Consistent; the line to print.
    Clean(String),
    /// A problem: what, and whether repairing the free-space maps, the
    /// counters, the journal or the superblock can fix it.
    Damaged(String, bool),
    /// The device could not be read.
    Failed(String),
}

/// Problems of the free-space maps, counters and superblocks, which
/// `repair` rebuilds from the trees (when those are sound).
fn repairable(what: &str) -> bool {
    [
        "summary",
        "bitmap",
        "free block count",
        "used blocks without an owner",
        "rmap record over a free block",
        "primary superblock",
        "superblocks disagree",
        "inode count in the superblock",
    ]
    .iter()
    .any(|w| what.contains(w))
}

/// Checks `device` without writing; `journal` tells whether committed
/// transactions wait to be replayed.
fn check(device: &str, journal: &mut bool) -> Checked {
    let mut image = match open_uncached(device).and_then(DeviceImage::open) {
        Ok(image) => image,
        Err(e) => return Checked::Failed(format!("{device}: {e}")),
    };
    match image.replay_journal() {
        Ok((0, false)) => {}
        Ok((n, torn)) => {
            *journal = true;
            if torn {
                println!("{device}: journal header torn by a crash while it was rewritten (mount restarts the log)");
            }
            if n > 0 {
                println!("{device}: journal not empty ({n} transactions since its tail; the last checked as replayed)");
            }
        }
        Err(what) => return Checked::Damaged(what.to_string(), false),
    }
    let result = check_filesystem(&image);
    if image.had_read_error() {
        eprintln!("fsck.oxdax: {device}: read errors; unreadable blocks were checked as zeros");
    }
    let report = match result {
        Ok(report) => report,
        Err(FsError::Corrupt(what)) => return Checked::Damaged(what.to_string(), repairable(what)),
        Err(e) => return Checked::Failed(format!("{device}: {e:?}")),
    };
    let sb = report.superblock;
    let mut names: HashMap<u64, u32> = HashMap::new();
    let mut children: HashMap<u64, Vec<u64>> = HashMap::new();
    let mut links = Vec::new();
    let files = check_files(&image, &sb, &mut |fact| match fact {
        Fact::Name { dir, ino } => {
            *names.entry(ino).or_default() += 1;
            children.entry(dir).or_default().push(ino);
        }
        Fact::Inode { ino, nlink, is_dir } => links.push((ino, nlink, is_dir)),
    });
    let files = match files {
        Ok(files) => files,
        Err(p) => {
            return Checked::Damaged(format!("inode {}: {}", p.ino, p.what), repairable(p.what))
        }
    };
    if let Some(what) = link_problem(&names, &links, sb.root_ino)
        .or_else(|| unreachable(&children, &links, sb.root_ino))
    {
        return Checked::Damaged(what, false);
    }
    if files.orphans > 0 {
        println!(
            "{device}: {} unlinked inodes still allocated (freed at the next mount)",
            files.orphans
        );
    }
    let chunks = report.chunks;
    Checked::Clean(format!(
        "{} inodes ({} directories), {} extents, {} of {} data blocks in use, {} reverse-map records, \
         2 MiB chunks: {} free whole, {} partly used, {} full",
        files.inodes,
        files.directories,
        files.extents,
        report.used_blocks,
        sb.layout.data_blocks(),
        report.rmap_records,
        chunks.free,
        chunks.partial,
        chunks.full
    ))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (device, fix) = match args.as_slice() {
        [flag] if flag == "-h" || flag == "--help" => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        [device] if !device.starts_with('-') => (device, false),
        [flag, device] if flag == "-n" => (device, false),
        [flag, device] if flag == "-p" || flag == "-y" => (device, true),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(16);
        }
    };
    let mut journal = false;
    let first = check(device, &mut journal);
    // Repair only what is known to be safe: never over damaged trees.
    let safe = match &first {
        Checked::Clean(_) => journal,
        Checked::Damaged(_, repairable) => *repairable,
        Checked::Failed(_) => false,
    };
    let mut corrected = false;
    let outcome = if fix && safe {
        if let Checked::Damaged(what, _) = &first {
            println!("{device}: {what}: repairing");
        }
        match repair(device) {
            Ok(changed) => corrected = changed,
            Err(message) => {
                println!("{message}");
                return ExitCode::from(4);
            }
        }
        check(device, &mut journal)
    } else {
        first
    };
    match outcome {
        Checked::Clean(summary) => {
            let state = if corrected {
                "errors corrected, now clean"
            } else {
                "clean"
            };
            println!("{device}: {state}, {summary}");
            ExitCode::from(u8::from(corrected))
        }
        Checked::Damaged(what, _) => {
            println!("{device}: errors found: {what}");
            ExitCode::from(4)
        }
        Checked::Failed(message) => {
            eprintln!("fsck.oxdax: {message}");
            ExitCode::from(8)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: u64 = 64;

    /// A crash tore the journal header while it was rewritten: the check
    /// reports it and finds the filesystem clean, as mount would; a repair
    /// writes it whole.
    #[test]
    fn a_torn_journal_header_is_reported_and_rewritten() {
        use oxdax::format::{inode::Timestamp, mkfs, superblock::Label};
        let mut image = oxdax::MemoryImage(vec![0u8; 32 << 20]);
        let options = mkfs::MkfsOptions {
            uuid: *b"oxdax-fsck-torn!",
            label: Label::new("torn").unwrap(),
            journal_blocks: None,
            now: Timestamp { sec: 1, nsec: 0 },
        };
        mkfs::make_filesystem(&mut image, 32 << 20, &options).unwrap();
        let sb = Superblock::decode(image.block(0).unwrap()).unwrap();
        // Torn during a rewrite: its check word zeroed, its tail half new.
        let header = image.block_mut(sb.layout.journal_start).unwrap();
        header[JournalHeader::CHECK_WORD..].fill(0);
        header[8..16].copy_from_slice(&9u64.to_le_bytes());
        let path = std::env::temp_dir().join(format!("oxdax-fsck-torn-{}", std::process::id()));
        std::fs::write(&path, &image.0).unwrap();
        let device = path.to_str().unwrap();

        let mut journal = false;
        assert!(matches!(check(device, &mut journal), Checked::Clean(_)));
        assert!(journal, "the torn header is reported");
        assert_eq!(repair(device), Ok(true));
        let mut journal = false;
        assert!(matches!(check(device, &mut journal), Checked::Clean(_)));
        assert!(!journal, "the header is whole after the repair");
        let repaired = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let at = sb.layout.journal_start as usize * BLOCK_SIZE;
        let log_len = ((sb.layout.journal_blocks - 1) * BLOCK_SIZE as u64) as usize;
        assert!(JournalHeader::decode(&repaired[at..at + BLOCK_SIZE], log_len).is_ok());
    }

    #[test]
    fn link_counts_must_match_the_names() {
        // Root, a subdirectory, a file with two names.
        let names = HashMap::from([(65, 1), (66, 2)]);
        let good = [(ROOT, 3, true), (65, 2, true), (66, 2, false)];
        assert_eq!(link_problem(&names, &good, ROOT), None);
        assert!(link_problem(&names, &[(66, 3, false)], ROOT).is_some());
        // An orphan (no links) has no name; a named one must have links.
        assert_eq!(link_problem(&HashMap::new(), &[(67, 0, false)], ROOT), None);
        assert!(link_problem(&names, &[(65, 0, true)], ROOT).is_some());
    }

    #[test]
    fn a_detached_cycle_of_directories_is_unreachable() {
        let links = [(ROOT, 3, true), (65, 2, true), (70, 3, true), (71, 3, true)];
        let tree = HashMap::from([(ROOT, vec![65])]);
        // 70 and 71 name each other (and agree on parents), cut off from /.
        let mut cycle = tree.clone();
        cycle.insert(70, vec![71]);
        cycle.insert(71, vec![70]);
        assert!(unreachable(&cycle, &links, ROOT).is_some());
        let mut attached = cycle;
        attached.insert(65, vec![70]);
        assert_eq!(unreachable(&attached, &links, ROOT), None);
        // Orphans are not expected to be reachable.
        assert_eq!(
            unreachable(&tree, &[(ROOT, 2, true), (80, 0, false)], ROOT),
            None
        );
    }
}
