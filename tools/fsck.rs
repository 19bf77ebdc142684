// SPDX-License-Identifier: GPL-2.0

//! fsck.oxdax: check an oxdax filesystem (read-only for now).
//!
//!   fsck.oxdax [-n] DEVICE
//!
//! Exit status as e2fsck's: 0 clean, 4 errors left uncorrected, 8
//! operational error, 16 usage error.

use std::cell::{Cell, OnceCell};
use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::process::ExitCode;

use oxdax::format::{
    mkfs::{check_filesystem, FsError, Image},
    BLOCK_SIZE,
};

const USAGE: &str = "usage: fsck.oxdax [-n] DEVICE";

/// The size of a device or image file in bytes.
fn device_size(file: &mut File) -> io::Result<u64> {
    file.seek(SeekFrom::End(0))
}

/// A device read a block at a time, on first use, for fsck.
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
}

impl Image for DeviceImage {
    type Error = ();
    fn block(&self, n: u64) -> Result<&[u8; BLOCK_SIZE], ()> {
        let cell = self.blocks.get(n as usize).ok_or(())?;
        Ok(cell.get_or_init(|| {
            let mut data = Box::new([0u8; BLOCK_SIZE]);
            if self
                .file
                .read_exact_at(&mut data[..], n * BLOCK_SIZE as u64)
                .is_err()
            {
                self.read_error.set(true);
            }
            data
        }))
    }
    fn block_mut(&mut self, _n: u64) -> Result<&mut [u8; BLOCK_SIZE], ()> {
        // fsck does not repair yet: its image is read-only.
        Err(())
    }
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
    let image = match File::open(device).and_then(DeviceImage::open) {
        Ok(image) => image,
        Err(e) => {
            eprintln!("fsck.oxdax: {device}: {e}");
            return ExitCode::from(8);
        }
    };
    let result = check_filesystem(&image);
    if image.had_read_error() {
        eprintln!("fsck.oxdax: {device}: read errors; unreadable blocks were checked as zeros");
    }
    match result {
        Ok(report) => {
            println!(
                "{device}: clean, {} of {} data blocks in use, {} reverse-map records",
                report.used_blocks,
                report.superblock.layout.data_blocks(),
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
