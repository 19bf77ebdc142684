// SPDX-License-Identifier: GPL-2.0

//! CRC-32C (Castagnoli), the checksum of every oxdax metadata structure.
//!
//! Two implementations compute the same value bit for bit: [`Table`]
//! below, and in the module the kernel's `crc32c()` (the CPU's crc32
//! instruction where the kernel has it: a create or an allocating fault
//! checksums several 4 KiB blocks, and the table costs most of a
//! checksum's time there). The crate that builds this logic chooses one as
//! `crate::Crc32cImpl` (`rust/host.rs`: the table; `rust/oxdax_main.rs`:
//! the kernel's, checked against the table when the module loads), so the
//! logic stays free of kernel code and pays no indirection.

/// A CRC-32C implementation.
pub trait Crc32c {
    /// Continues a CRC-32C over `bytes` (pass 0 to start).
    fn update(crc: u32, bytes: &[u8]) -> u32;
}

/// The portable implementation: slicing by 8 over tables.
pub struct Table;

impl Crc32c for Table {
    fn update(crc: u32, bytes: &[u8]) -> u32 {
        table_update(crc, bytes)
    }
}

const POLY_REFLECTED: u32 = 0x82f6_3b78;

/// Slicing-by-8 tables: `TABLES[0]` is the classic byte table, `TABLES[k]`
/// advances a byte's contribution by `k` more bytes of zeros. Every
/// metadata block read is checked, so the checksum runs on every lookup:
/// eight bytes per step instead of one costs a quarter of the time.
const TABLES: [[u32; 256]; 8] = {
    let mut tables = [[0u32; 256]; 8];
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
        tables[0][i] = crc;
        i += 1;
    }
    let mut k = 1;
    while k < 8 {
        let mut i = 0;
        while i < 256 {
            let prev = tables[k - 1][i];
            tables[k][i] = (prev >> 8) ^ tables[0][(prev & 0xff) as usize];
            i += 1;
        }
        k += 1;
    }
    tables
};

/// `table`'s entry for byte `shift / 8` of `value`.
fn lookup(table: &[u32; 256], value: u32, shift: u32) -> u32 {
    table[((value >> shift) & 0xff) as usize]
}

fn byte_step(crc: u32, byte: u8) -> u32 {
    lookup(&TABLES[0], crc ^ u32::from(byte), 0) ^ (crc >> 8)
}

/// Continues a CRC-32C over `bytes` (pass 0 to start), with this build's
/// implementation.
pub fn update(crc: u32, bytes: &[u8]) -> u32 {
    <crate::Crc32cImpl as Crc32c>::update(crc, bytes)
}

fn table_update(crc: u32, bytes: &[u8]) -> u32 {
    let mut crc = !crc;
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let mut le = [0u8; 8];
        le.copy_from_slice(word);
        let word = u64::from_le_bytes(le);
        let low = word as u32 ^ crc;
        let high = (word >> 32) as u32;
        crc = lookup(&TABLES[7], low, 0)
            ^ lookup(&TABLES[6], low, 8)
            ^ lookup(&TABLES[5], low, 16)
            ^ lookup(&TABLES[4], low, 24)
            ^ lookup(&TABLES[3], high, 0)
            ^ lookup(&TABLES[2], high, 8)
            ^ lookup(&TABLES[1], high, 16)
            ^ lookup(&TABLES[0], high, 24);
    }
    for &byte in words.remainder() {
        crc = byte_step(crc, byte);
    }
    !crc
}

/// The CRC-32C of `bytes`.
pub fn checksum(bytes: &[u8]) -> u32 {
    update(0, bytes)
}

/// The CRC-32C register (started from zero, not inverted at either end)
/// after `bytes`. CRC-32C is linear in this form: for messages `a` and
/// `b` of one length, `checksum(a ^ b) == checksum(a) ^ register(a ^ b
/// placed where it lies)`, which lets a checksum be updated for what
/// changed ([`after_zeros`]).
pub fn register(bytes: &[u8]) -> u32 {
    !update(u32::MAX, bytes)
}

/// [`register`] of `first` followed by `second`.
pub fn register2(first: &[u8], second: &[u8]) -> u32 {
    !update(update(u32::MAX, first), second)
}

/// `a * b` modulo the CRC-32C polynomial, both in the register's
/// reflected bit order (bit 31 is the coefficient of x^0). Branch-free:
/// under TCG a branch ends a translated block.
const fn multiply(a: u32, mut b: u32) -> u32 {
    let mut product = 0;
    let mut bit = 0;
    while bit < 32 {
        product ^= b & 0u32.wrapping_sub((a >> (31 - bit)) & 1);
        b = (b >> 1) ^ (POLY_REFLECTED & 0u32.wrapping_sub(b & 1));
        bit += 1;
    }
    product
}

/// The factor that advances a register over `bytes` zero bytes: x^(8 *
/// bytes) modulo the polynomial, for [`after_zeros`].
pub const fn zeros_factor(bytes: usize) -> u32 {
    let (mut factor, mut square, mut n) = (1u32 << 31, 1u32 << 23, bytes);
    while n > 0 {
        if n & 1 != 0 {
            factor = multiply(factor, square);
        }
        square = multiply(square, square);
        n >>= 1;
    }
    factor
}

/// `register` advanced over the zero bytes `factor` stands for
/// ([`zeros_factor`]): the register of a change followed by that many
/// unchanged bytes.
pub fn after_zeros(register: u32, factor: u32) -> u32 {
    multiply(register, factor)
}

/// Whether `I` computes CRC-32C: the known check values, and [`Table`]'s
/// results over every length up to 64 and larger ones up to 1 KiB (around
/// the 512 bytes where a kernel driver may change method) at 16 alignments of a
/// pseudo-random buffer, from zero, from a running value and from the one
/// [`register`] starts from, and over 16 KB
/// fed in pieces. (The buffer is small: the module runs this on the
/// kernel's stack when it loads.)
pub fn agrees_with_table<I: Crc32c>() -> bool {
    let mut data = [0u8; 1024 + 16];
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for byte in data.iter_mut() {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        *byte = (seed >> 56) as u8;
    }
    if I::update(0, b"123456789") != 0xe306_9283 || I::update(0, &[0u8; 32]) != 0x8a91_36aa {
        return false;
    }
    let agree = |part: &[u8], crc: u32| I::update(crc, part) == Table::update(crc, part);
    let pieces = (0..16).try_fold((0u32, 0u32), |(mine, table), i| {
        let part = data.get(i..i + 1000)?;
        Some((I::update(mine, part), Table::update(table, part)))
    });
    pieces.is_some_and(|(mine, table)| mine == table)
        && (0..16).all(|start| {
            (0..=64)
                .chain([100, 255, 256, 511, 512, 513, 777, 1000, 1023, 1024])
                .all(|len| {
                    data.get(start..start + len).is_some_and(|part| {
                        agree(part, 0) && agree(part, 0x1234_5678) && agree(part, u32::MAX)
                    })
                })
        })
}

#[cfg(test)]
mod tests {
    extern crate alloc;

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

    /// The one-byte-at-a-time definition, for comparison.
    fn bytewise(crc: u32, bytes: &[u8]) -> u32 {
        !bytes.iter().fold(!crc, |crc, &b| byte_step(crc, b))
    }

    #[test]
    fn eight_bytes_at_a_time_match_one() {
        let mut rng = crate::logic::testing::Lcg(11);
        let data: [u8; 4200] = core::array::from_fn(|_| rng.next() as u8);
        for start in 0..9 {
            for len in [0, 1, 7, 8, 9, 63, 64, 65, 4096, 4191 - start] {
                let part = &data[start..start + len];
                assert_eq!(table_update(0, part), bytewise(0, part), "{start}+{len}");
                assert_eq!(table_update(0x1234_5678, part), bytewise(0x1234_5678, part));
            }
        }
    }

    #[test]
    fn the_table_agrees_with_itself_and_the_check_values() {
        assert!(agrees_with_table::<Table>());
    }

    /// An implementation that is wrong for one length only.
    struct OffByOne;
    impl Crc32c for OffByOne {
        fn update(crc: u32, bytes: &[u8]) -> u32 {
            Table::update(crc, bytes) ^ u32::from(bytes.len() == 777)
        }
    }

    #[test]
    fn a_wrong_implementation_is_caught() {
        assert!(!agrees_with_table::<OffByOne>());
    }

    #[test]
    fn a_checksum_updates_by_what_changed() {
        let mut rng = crate::logic::testing::Lcg(5);
        let old: [u8; 4096] = core::array::from_fn(|_| rng.next() as u8);
        assert_eq!(register(b"123456789"), !update(u32::MAX, b"123456789"));
        for _ in 0..300 {
            let mut new = old;
            let mut crc = checksum(&old);
            // One to three changed ranges anywhere, of 1 to 100 bytes.
            for _ in 0..1 + rng.next() % 3 {
                let len = 1 + (rng.next() % 100) as usize;
                let at = (rng.next() as usize) % (old.len() - len + 1);
                let before = new;
                for b in &mut new[at..at + len] {
                    *b ^= rng.next() as u8 | 1;
                }
                let delta: alloc::vec::Vec<u8> =
                    (at..at + len).map(|i| before[i] ^ new[i]).collect();
                let (first, second) = delta.split_at(len / 2);
                assert_eq!(register2(first, second), register(&delta));
                crc ^= after_zeros(register(&delta), zeros_factor(old.len() - at - len));
            }
            assert_eq!(crc, checksum(&new));
        }
        assert_eq!(zeros_factor(0), 1 << 31);
        assert_eq!(after_zeros(0x1234_5678, zeros_factor(0)), 0x1234_5678);
        // Advancing over zeros is what feeding zeros does.
        let zeros = [0u8; 77];
        assert_eq!(
            after_zeros(0xdead_beef, zeros_factor(77)),
            !update(!0xdead_beef, &zeros)
        );
    }

    #[test]
    fn update_is_incremental() {
        let data = b"oxdax persistent memory";
        let (a, b) = data.split_at(9);
        assert_eq!(update(update(0, a), b), checksum(data));
    }
}
