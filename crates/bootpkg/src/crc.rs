//! CRC-32 (the IEEE polynomial, reflected, as used by zlib, PNG and Ethernet),
//! computed by `crc32fast`: on RISC-V its portable slice-by-16 code. The
//! hypervisor checks the whole boot package at boot (hundreds of MiB with
//! several Linux VMs), under emulation, where a byte-at-a-time table is several
//! times slower.

/// An incremental CRC-32 computation.
#[derive(Clone, Debug)]
pub struct Crc32(crc32fast::Hasher);

impl Crc32 {
    /// A computation over no bytes yet.
    pub fn new() -> Self {
        Self(crc32fast::Hasher::new())
    }

    /// Feeds `bytes`.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The CRC of everything fed so far.
    pub fn finish(self) -> u32 {
        self.0.finalize()
    }
}

impl Default for Crc32 {
    fn default() -> Self {
        Self::new()
    }
}

/// CRC-32 of `bytes`.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut c = Crc32::new();
    c.update(bytes);
    c.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_values() {
        // The standard check value of CRC-32/ISO-HDLC.
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(crc32(b""), 0);
        let mut c = Crc32::new();
        c.update(b"1234");
        c.update(b"56789");
        assert_eq!(c.finish(), 0xcbf4_3926);
    }

    /// The definition, one bit at a time.
    fn bitwise(bytes: &[u8]) -> u32 {
        let mut c = !0u32;
        for &b in bytes {
            c ^= u32::from(b);
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xedb8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
        }
        !c
    }

    #[test]
    fn long_buffers_in_pieces_match_the_definition() {
        let mut x = 0x1234_5678u32;
        let data: alloc::vec::Vec<u8> = (0..10_000)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                (x >> 16) as u8
            })
            .collect();
        assert_eq!(crc32(&data), bitwise(&data));
        let mut c = Crc32::new();
        for piece in data.chunks(777) {
            c.update(piece);
        }
        assert_eq!(c.finish(), bitwise(&data));
    }
}
