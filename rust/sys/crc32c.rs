// SPDX-License-Identifier: GPL-2.0

//! The kernel's CRC-32C for the logic's checksums
//! (`logic::format::crc32c`): `crc32c()` goes through the crypto API to
//! the fastest driver the kernel has (crc32c-intel: the CPU's crc32
//! instruction), where the logic's own is a table walk.

use crate::logic::format::crc32c::Crc32c;

/// `crc32c()` of lib/libcrc32c.c.
pub(crate) struct Kernel;

impl Crc32c for Kernel {
    fn update(crc: u32, bytes: &[u8]) -> u32 {
        // The kernel's function continues a raw register (ext4 and btrfs
        // start it at !0 and invert the result); the logic's `update`
        // takes and returns finished values, as the table does.
        let mut register = !crc;
        // `length` is 32-bit; a metadata buffer is a few blocks, but a
        // safe function takes any slice.
        for part in bytes.chunks(u32::MAX as usize) {
            let (address, length) = (part.as_ptr().cast(), part.len() as u32);
            // SAFETY: `address` points to `length` live bytes (`part`, which
            // fits `u32` by the chunking) that `crc32c()` only reads.
            // `crc32c()` neither sleeps nor takes locks (its transform is
            // set up when the built-in libcrc32c initialises, before any
            // module loads), so any context may call it.
            let next = unsafe { crate::ffi::crc32c(register, address, length) };
            register = next;
        }
        !register
    }
}
