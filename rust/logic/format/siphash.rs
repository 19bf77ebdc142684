// SPDX-License-Identifier: GPL-2.0

//! SipHash-2-4: the keyed hash of directory entry names. Keyed by the
//! filesystem's uuid, so names crafted to collide on one filesystem do not
//! collide on another (directories stay O(log n) under hostile names).

fn round(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13) ^ v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16) ^ v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21) ^ v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17) ^ v[2];
    v[2] = v[2].rotate_left(32);
}

/// SipHash-2-4 of `data` under the 128-bit `key`.
pub fn siphash24(key: &[u8; 16], data: &[u8]) -> u64 {
    let mut k = [0u8; 8];
    k.copy_from_slice(&key[..8]);
    let k0 = u64::from_le_bytes(k);
    k.copy_from_slice(&key[8..]);
    let k1 = u64::from_le_bytes(k);
    let mut v = [
        k0 ^ 0x736f_6d65_7073_6575,
        k1 ^ 0x646f_7261_6e64_6f6d,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    ];
    let mut chunks = data.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let m = u64::from_le_bytes(word);
        v[3] ^= m;
        round(&mut v);
        round(&mut v);
        v[0] ^= m;
    }
    let mut last = [0u8; 8];
    let tail = chunks.remainder();
    last[..tail.len()].copy_from_slice(tail);
    last[7] = data.len() as u8;
    let m = u64::from_le_bytes(last);
    v[3] ^= m;
    round(&mut v);
    round(&mut v);
    v[0] ^= m;
    v[2] ^= 0xff;
    for _ in 0..4 {
        round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

#[cfg(test)]
mod tests {
    use super::siphash24;

    #[test]
    fn reference_vectors() {
        // From the SipHash paper's reference implementation (vectors.h):
        // key 00..0f, messages 00..(n-1).
        let key: [u8; 16] = core::array::from_fn(|i| i as u8);
        let message: [u8; 64] = core::array::from_fn(|i| i as u8);
        let expected: [(usize, u64); 5] = [
            (0, 0x726f_db47_dd0e_0e31),
            (1, 0x74f8_39c5_93dc_67fd),
            (7, 0xab02_00f5_8b01_d137),
            (8, 0x93f5_f579_9a93_2462),
            (15, 0xa129_ca61_49be_45e5),
        ];
        for (len, hash) in expected {
            assert_eq!(siphash24(&key, &message[..len]), hash, "length {}", len);
        }
    }
}
