// SPDX-License-Identifier: GPL-2.0

//! CRC-32C (Castagnoli), the checksum of every oxdax metadata structure:
//! the kernel's `crc32c()` computes the same value, so userspace tools and
//! the module agree bit for bit.

const POLY_REFLECTED: u32 = 0x82f6_3b78;

const TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ POLY_REFLECTED
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

/// Continues a CRC-32C over `bytes` (pass 0 to start).
pub fn update(crc: u32, bytes: &[u8]) -> u32 {
    let mut crc = !crc;
    for &byte in bytes {
        crc = TABLE[((crc ^ u32::from(byte)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

/// The CRC-32C of `bytes`.
pub fn checksum(bytes: &[u8]) -> u32 {
    update(0, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors() {
        // RFC 3720 (iSCSI) appendix B.4 and the common check value.
        assert_eq!(checksum(b"123456789"), 0xe306_9283);
        assert_eq!(checksum(&[0u8; 32]), 0x8a91_36aa);
        assert_eq!(checksum(&[0xffu8; 32]), 0x62a8_ab43);
        let ascending: [u8; 32] = core::array::from_fn(|i| i as u8);
        assert_eq!(checksum(&ascending), 0x46dd_794e);
        assert_eq!(checksum(b""), 0);
    }

    #[test]
    fn update_is_incremental() {
        let data = b"oxdax persistent memory";
        let (a, b) = data.split_at(9);
        assert_eq!(update(update(0, a), b), checksum(data));
    }
}
