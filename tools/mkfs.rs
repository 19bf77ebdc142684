// SPDX-License-Identifier: GPL-2.0

//! mkfs.oxdax: make an oxdax filesystem.
//!
//!   mkfs.oxdax [-f] [-L LABEL] [-J JOURNAL_BLOCKS] DEVICE [SIZE]
//!
//! SIZE (bytes, or with a K, M, G or T suffix) limits the filesystem to
//! the start of the device, as mke2fs's fs-size does.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use oxdax::format::{
    inode::Timestamp,
    mkfs::{check_filesystem, make_filesystem, FsError, Image, MkfsOptions},
    superblock::{Label, MAGIC},
    BLOCK_SIZE,
};

const USAGE: &str = "usage: mkfs.oxdax [-f] [-L LABEL] [-J JOURNAL_BLOCKS] DEVICE [SIZE]";

/// A size argument: bytes, or a number with a K, M, G or T suffix.
fn parse_size(text: &str) -> Option<u64> {
    let (digits, shift) = match text.as_bytes().last()? {
        b'K' | b'k' => (&text[..text.len() - 1], 10),
        b'M' | b'm' => (&text[..text.len() - 1], 20),
        b'G' | b'g' => (&text[..text.len() - 1], 30),
        b'T' | b't' => (&text[..text.len() - 1], 40),
        _ => (text, 0),
    };
    digits.parse::<u64>().ok()?.checked_mul(1 << shift)
}

static ZERO: [u8; BLOCK_SIZE] = [0; BLOCK_SIZE];

/// The size of a device or image file in bytes.
fn device_size(file: &mut File) -> io::Result<u64> {
    file.seek(SeekFrom::End(0))
}

/// Whether `device` is mounted (listed in /proc/mounts).
fn is_mounted(device: &Path) -> io::Result<bool> {
    let wanted = std::fs::canonicalize(device)?;
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    Ok(mounts
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .any(|source| {
            std::fs::canonicalize(source)
                .map(|p| p == wanted)
                .unwrap_or(false)
        }))
}

/// A device image that starts all zero and keeps what is written, for
/// mkfs: it never needs the device's old contents.
#[derive(Default)]
struct NewImage {
    blocks: BTreeMap<u64, Box<[u8; BLOCK_SIZE]>>,
    block_count: u64,
}

impl NewImage {
    /// An image of `block_count` blocks.
    fn new(block_count: u64) -> Self {
        Self {
            blocks: BTreeMap::new(),
            block_count,
        }
    }

    /// Writes every block written so far to `file`, then syncs it.
    fn write_to(&self, file: &File) -> io::Result<()> {
        for (block, data) in &self.blocks {
            file.write_all_at(&data[..], block * BLOCK_SIZE as u64)?;
        }
        file.sync_all()
    }
}

impl Image for NewImage {
    type Error = ();
    fn block(&self, n: u64) -> Result<&[u8; BLOCK_SIZE], ()> {
        if n >= self.block_count {
            return Err(());
        }
        Ok(self.blocks.get(&n).map_or(&ZERO, |b| &**b))
    }
    fn block_mut(&mut self, n: u64) -> Result<&mut [u8; BLOCK_SIZE], ()> {
        if n >= self.block_count {
            return Err(());
        }
        Ok(&mut **self
            .blocks
            .entry(n)
            .or_insert_with(|| Box::new([0; BLOCK_SIZE])))
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("mkfs.oxdax: {message}");
    ExitCode::FAILURE
}

/// The filesystem already on the device, if one is recognisable.
fn existing_filesystem(head: &[u8]) -> Option<&'static str> {
    if head.get(..8) == Some(&MAGIC[..]) {
        Some("oxdax")
    } else if head.get(1080..1082) == Some(&[0x53, 0xef]) {
        Some("ext2/3/4")
    } else if head.get(..4) == Some(b"XFSB") {
        Some("xfs")
    } else {
        None
    }
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (mut force, mut label, mut journal, mut device) = (false, String::new(), None, None);
    let mut wanted_size = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-f" => force = true,
            "-L" => match args.next() {
                Some(l) => label = l,
                None => return fail(USAGE),
            },
            "-J" => match args.next().and_then(|j| j.parse::<u64>().ok()) {
                Some(j) => journal = Some(j),
                None => return fail(USAGE),
            },
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            _ if device.is_none() && !arg.starts_with('-') => device = Some(arg),
            _ if wanted_size.is_none() && device.is_some() => match parse_size(&arg) {
                Some(size) => wanted_size = Some(size),
                None => return fail(&format!("bad size '{arg}'\n{USAGE}")),
            },
            _ => return fail(USAGE),
        }
    }
    let Some(device) = device else {
        return fail(USAGE);
    };
    let Some(label) = Label::new(&label) else {
        return fail("label must be at most 31 bytes, without NUL");
    };
    match is_mounted(device.as_ref()) {
        Ok(true) => {
            return fail(&format!(
                "{device} is mounted; will not make a filesystem here"
            ))
        }
        Ok(false) => {}
        Err(e) => return fail(&format!("{device}: {e}")),
    }
    let mut file = match OpenOptions::new().read(true).write(true).open(&device) {
        Ok(file) => file,
        Err(e) => return fail(&format!("{device}: {e}")),
    };
    let mut head = vec![0u8; 2 * BLOCK_SIZE];
    let _ = (&file).read(&mut head);
    if let (Some(kind), false) = (existing_filesystem(&head), force) {
        return fail(&format!(
            "{device} contains an existing {kind} filesystem; use -f to overwrite it"
        ));
    }
    let size = match device_size(&mut file) {
        Ok(size) => size,
        Err(e) => return fail(&format!("{device}: {e}")),
    };
    let size = match wanted_size {
        Some(wanted) if wanted > size => {
            return fail(&format!(
                "{device}: {wanted} bytes asked, the device has {size}"
            ))
        }
        Some(wanted) => wanted,
        None => size,
    };
    let mut uuid = [0u8; 16];
    if let Err(e) = std::fs::File::open("/dev/urandom").and_then(|mut r| r.read_exact(&mut uuid)) {
        return fail(&format!("/dev/urandom: {e}"));
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let options = MkfsOptions {
        uuid,
        label,
        journal_blocks: journal,
        now: Timestamp {
            sec: now.as_secs() as i64,
            nsec: now.subsec_nanos(),
        },
    };
    let mut image = NewImage::new(size / BLOCK_SIZE as u64);
    let sb = match make_filesystem(&mut image, size, &options) {
        Ok(sb) => sb,
        Err(FsError::Layout(e)) => {
            return fail(&format!("{device}: cannot hold a filesystem: {e:?}"))
        }
        Err(e) => return fail(&format!("{device}: {e:?}")),
    };
    if let Err(e) = check_filesystem(&image) {
        return fail(&format!(
            "internal error: the new filesystem does not check: {e:?}"
        ));
    }
    if let Err(e) = image.write_to(&file) {
        return fail(&format!("{device}: {e}"));
    }
    let uuid: String = sb.uuid.iter().map(|b| format!("{b:02x}")).collect();
    println!(
        "oxdax filesystem on {device}: {} MiB in {} blocks of 4 KiB, journal {} KiB, {} blocks free",
        (sb.layout.block_count * BLOCK_SIZE as u64) >> 20,
        sb.layout.block_count,
        sb.layout.journal_blocks * 4,
        sb.free_blocks
    );
    println!("uuid {uuid}, label \"{}\"", sb.label.as_str());
    ExitCode::SUCCESS
}
