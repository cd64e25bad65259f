//! The package checksum of format version 2: a 64-bit multiply-rotate hash
//! over the package's little-endian 64-bit words, folded to 32 bits.
//!
//! It replaced CRC-32 (format version 1) because the hypervisor checks the
//! whole package before the first guest instruction, under emulation: CRC-32
//! (slice-by-16, byte loads) cost about 6 instructions per byte, 186 ms for a
//! 31 MiB Linux package under TCG; this costs about 0.6 instructions per byte
//! when the package is 8-byte aligned (QEMU loads it page-aligned).
//!
//! Definition: the bytes, zero-padded to a multiple of 16, are read as
//! little-endian 64-bit word pairs `(a, b)`; `h = SEED ^ len`, and for each
//! pair `h = ((h ^ a) * K1 ^ b) * K2; h ^= h >> 29` (wrapping); the checksum is
//! `(h ^ (h >> 32)) as u32`. Each step is a bijection of `h` for given words,
//! so changing any single word always changes the 64-bit state.

use zerocopy::FromBytes;

const SEED: u64 = 0x6676_626f_6f74_706b; // "fvbootpk"
const K1: u64 = 0x9e37_79b9_7f4a_7c15; // odd: multiplication is a bijection
const K2: u64 = 0xc2b2_ae3d_27d4_eb4f; // odd

/// Bytes of the head, hashed from a copy (where a field can be zeroed).
const HEAD: usize = 64;

fn step(h: u64, a: u64, b: u64) -> u64 {
    let h = ((h ^ a).wrapping_mul(K1) ^ b).wrapping_mul(K2);
    h ^ (h >> 29)
}

fn word(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    u64::from_le_bytes(a)
}

/// Absorbs `bytes`, zero-padded to a multiple of 16, from any alignment.
fn absorb_bytes(mut h: u64, bytes: &[u8]) -> u64 {
    let whole = bytes.len() - bytes.len() % 16;
    let (body, tail) = bytes.split_at(whole);
    for c in body.chunks_exact(16) {
        h = step(h, word(&c[..8]), word(&c[8..]));
    }
    if !tail.is_empty() {
        let mut last = [0u8; 16];
        last[..tail.len()].copy_from_slice(tail);
        h = step(h, word(&last[..8]), word(&last[8..]));
    }
    h
}

/// The hash state of `bytes` with the 4 bytes at `field` (if inside the first
/// [`HEAD`] bytes) taken as zero.
fn hash(bytes: &[u8], field: Option<usize>) -> u64 {
    let h = SEED ^ bytes.len() as u64;
    let (head, rest) = bytes.split_at(bytes.len().min(HEAD));
    let mut copy = [0u8; HEAD];
    copy[..head.len()].copy_from_slice(head);
    if let Some(f) = field.filter(|f| f + 4 <= head.len()) {
        copy[f..f + 4].fill(0);
    }
    let mut h = absorb_bytes(h, &copy[..head.len()]);
    let whole = rest.len() - rest.len() % 16;
    let (body, tail) = rest.split_at(whole);
    match <[u64]>::ref_from_bytes(body) {
        // Aligned: one load per word.
        Ok(words) => {
            for p in words.chunks_exact(2) {
                h = step(h, u64::from_le(p[0]), u64::from_le(p[1]));
            }
            absorb_bytes(h, tail)
        }
        Err(_) => absorb_bytes(h, rest),
    }
}

fn fold(h: u64) -> u32 {
    (h ^ (h >> 32)) as u32
}

/// The checksum of `bytes` with the 4 bytes at `field` (which must lie in the
/// first 64 bytes, as the package header's does) taken as zero.
pub fn checksum_without(bytes: &[u8], field: usize) -> u32 {
    fold(hash(bytes, Some(field)))
}

/// The checksum of `bytes`.
pub fn checksum(bytes: &[u8]) -> u32 {
    fold(hash(bytes, None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    fn data(n: usize) -> Vec<u8> {
        let mut x = 0x1234_5678u32;
        (0..n)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                (x >> 16) as u8
            })
            .collect()
    }

    /// The definition, byte by byte, as the module documents it.
    fn reference(bytes: &[u8]) -> u32 {
        let mut padded = bytes.to_vec();
        padded.resize(bytes.len().div_ceil(16) * 16, 0);
        let mut h = SEED ^ bytes.len() as u64;
        for c in padded.chunks(16) {
            let w =
                |k: usize| -> u64 { (0..8).fold(0, |acc, i| acc | u64::from(c[k + i]) << (8 * i)) };
            h = ((h ^ w(0)).wrapping_mul(K1) ^ w(8)).wrapping_mul(K2);
            h ^= h >> 29;
        }
        (h ^ (h >> 32)) as u32
    }

    #[test]
    fn pinned_values() {
        // Pinned: the host tool and the hypervisor must agree across builds.
        assert_eq!(checksum(b""), reference(b""));
        assert_eq!(checksum(b"123456789"), reference(b"123456789"));
        assert_eq!(checksum(b"123456789"), 0x74c9_a4d8);
        assert_eq!(checksum(b""), 0x0902_1204);
    }

    #[test]
    fn aligned_and_unaligned_views_agree() {
        for n in [0, 1, 15, 16, 17, 63, 64, 65, 80, 4099] {
            assert_eq!(checksum(&data(n)), reference(&data(n)), "length {n}");
        }
        let d = data(4099);
        for off in 0..8 {
            let mut buf = Vec::with_capacity(d.len() + 16);
            buf.resize(off, 0);
            buf.extend_from_slice(&d);
            assert_eq!(checksum(&buf[off..]), reference(&d), "offset {off}");
        }
    }

    #[test]
    fn every_single_bit_flip_is_seen() {
        let d = data(256);
        let c = checksum(&d);
        for i in 0..d.len() * 8 {
            let mut e = d.clone();
            e[i / 8] ^= 1 << (i % 8);
            assert_ne!(checksum(&e), c, "bit {i}");
        }
        // A longer input with zeros appended differs (the length is hashed).
        let mut longer = d.clone();
        longer.push(0);
        assert_ne!(checksum(&longer), c);
    }

    #[test]
    fn field_is_taken_as_zero() {
        let mut d = data(64);
        for field in [0usize, 24, 28, 32, 60] {
            let mut z = d.clone();
            z[field..field + 4].fill(0);
            d[field..field + 4].copy_from_slice(&[1, 2, 3, 4]);
            assert_eq!(checksum_without(&d, field), checksum(&z), "field {field}");
        }
    }
}
