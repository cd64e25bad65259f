//! Guest buffers handed to a physical device without copying.
//!
//! A device model that lets a physical device read or write a chain's data
//! itself (virtio-blk, [`crate::blk::AsyncBlk`]) describes that data as
//! guest-physical [`Segment`]s, cut out of the chain with [`sub_segments`].
//! The hypervisor turns them into host-physical [`HostSegment`]s with
//! [`host_segments`]: every byte translated through the VM's own mapping (a
//! `translate` function that fails for anything but this VM's RAM), pieces
//! split where host memory is not contiguous and merged where it is, the
//! count bounded.

use alloc::vec::Vec;

use fv_addr::GuestPhysAddr;
use fv_vm::GuestMemoryError;

use crate::buffer::Segment;

/// One contiguous host-physical span of a guest buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostSegment {
    /// Host-physical start.
    pub addr: u64,
    /// Length in bytes (never 0).
    pub len: u64,
    /// Whether the device writes it (guest reads it afterwards).
    pub writable: bool,
}

/// Translating a guest buffer failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmaError {
    /// Some byte is not RAM of this VM (or the translation said so).
    Memory(GuestMemoryError),
    /// The translation returned an empty or over-long piece.
    BadPiece,
    /// More host pieces than the caller allows.
    TooManySegments,
}

/// The part `[skip, skip + take)` (in bytes, counted across `segs` in order)
/// of a segment list; shorter if `segs` ends first.
pub fn sub_segments(segs: &[Segment], skip: u64, take: u64) -> Vec<Segment> {
    let mut out = Vec::new();
    let mut pos = 0u64;
    let end = skip.saturating_add(take);
    for s in segs {
        let s_start = pos;
        let s_end = pos.saturating_add(u64::from(s.len));
        pos = s_end;
        let from = s_start.max(skip);
        let to = s_end.min(end);
        if from >= to {
            continue;
        }
        let Ok(addr) = s.addr.checked_add(from - s_start) else {
            continue;
        };
        out.push(Segment {
            addr,
            // `to - from <= s.len`, a u32.
            len: u32::try_from(to - from).unwrap_or(0),
            writable: s.writable,
        });
        if pos >= end {
            break;
        }
    }
    out
}

/// The guest address of byte `at` (counted across `segs` in order).
pub fn byte_at(segs: &[Segment], at: u64) -> Option<GuestPhysAddr> {
    let mut pos = 0u64;
    for s in segs {
        let len = u64::from(s.len);
        if at < pos.saturating_add(len) {
            return s.addr.checked_add(at - pos).ok();
        }
        pos = pos.saturating_add(len);
    }
    None
}

/// Translates guest segments into host segments. `translate(gpa, len)`
/// returns the host address of `gpa` and how many bytes from there (at least
/// 1, at most `len`) are host-contiguous and this VM's RAM. Adjacent pieces
/// that are contiguous in host memory and go the same way are merged; more
/// than `max` pieces is [`DmaError::TooManySegments`].
pub fn host_segments(
    segs: &[Segment],
    max: usize,
    mut translate: impl FnMut(GuestPhysAddr, u64) -> Result<(u64, u64), GuestMemoryError>,
) -> Result<Vec<HostSegment>, DmaError> {
    let mut out: Vec<HostSegment> = Vec::new();
    for s in segs {
        let len = u64::from(s.len);
        let mut off = 0u64;
        while off < len {
            let gpa = s
                .addr
                .checked_add(off)
                .map_err(|_| DmaError::Memory(GuestMemoryError::Overflow))?;
            let (hpa, n) = translate(gpa, len - off).map_err(DmaError::Memory)?;
            if n == 0 || n > len - off || hpa.checked_add(n).is_none() {
                return Err(DmaError::BadPiece);
            }
            match out.last_mut() {
                Some(last) if last.writable == s.writable && last.addr + last.len == hpa => {
                    last.len += n;
                }
                _ => {
                    if out.len() >= max {
                        return Err(DmaError::TooManySegments);
                    }
                    out.push(HostSegment {
                        addr: hpa,
                        len: n,
                        writable: s.writable,
                    });
                }
            }
            off += n;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use proptest::prelude::*;

    fn seg(addr: u64, len: u32) -> Segment {
        Segment {
            addr: GuestPhysAddr::new(addr),
            len,
            writable: true,
        }
    }

    #[test]
    fn sub_segments_cuts_across_boundaries() {
        let segs = [seg(0x1000, 16), seg(0x2000, 100), seg(0x3000, 1)];
        assert_eq!(
            sub_segments(&segs, 10, 10),
            vec![seg(0x100a, 6), seg(0x2000, 4)]
        );
        assert_eq!(sub_segments(&segs, 16, 100), vec![seg(0x2000, 100)]);
        assert_eq!(sub_segments(&segs, 116, 5), vec![seg(0x3000, 1)]);
        assert_eq!(sub_segments(&segs, 200, 5), vec![]);
        assert_eq!(byte_at(&segs, 116), Some(GuestPhysAddr::new(0x3000)));
        assert_eq!(byte_at(&segs, 15), Some(GuestPhysAddr::new(0x100f)));
        assert_eq!(byte_at(&segs, 117), None);
    }

    /// RAM at 0x8000_0000 in chunks of `CH` bytes placed at host addresses
    /// in the order `perm` gives (so neighbours may or may not be contiguous).
    const CH: u64 = 0x1000;
    const BASE: u64 = 0x8000_0000;

    fn translator(
        perm: &[u64],
    ) -> impl FnMut(GuestPhysAddr, u64) -> Result<(u64, u64), GuestMemoryError> + '_ {
        move |gpa, len| {
            let off = gpa
                .raw()
                .checked_sub(BASE)
                .ok_or(GuestMemoryError::NotRam)?;
            let idx = usize::try_from(off / CH).map_err(|_| GuestMemoryError::NotRam)?;
            let chunk = perm.get(idx).ok_or(GuestMemoryError::NotRam)?;
            Ok((0x10_0000 + chunk * CH + off % CH, (CH - off % CH).min(len)))
        }
    }

    #[test]
    fn outside_ram_is_refused_and_merging_follows_host_contiguity() {
        let perm = [0, 1, 3, 2];
        let mut t = translator(&perm);
        assert_eq!(
            host_segments(&[seg(BASE + 4 * CH, 1)], 8, &mut t),
            Err(DmaError::Memory(GuestMemoryError::NotRam))
        );
        let got = host_segments(&[seg(BASE + 0x800, 4 * CH as u32 - 0x800)], 8, &mut t).unwrap();
        let a = |c: u64| 0x10_0000 + c * CH;
        assert_eq!(
            got,
            vec![
                HostSegment {
                    addr: a(0) + 0x800,
                    len: 2 * CH - 0x800,
                    writable: true
                },
                HostSegment {
                    addr: a(3),
                    len: CH,
                    writable: true
                },
                HostSegment {
                    addr: a(2),
                    len: CH,
                    writable: true
                },
            ]
        );
        assert_eq!(
            host_segments(&[seg(BASE, 4 * CH as u32)], 2, &mut t),
            Err(DmaError::TooManySegments)
        );
    }

    proptest! {
        /// Every guest byte maps to the host byte the translation names, in
        /// order, none lost or added, and no two neighbouring host segments
        /// could have been merged.
        #[test]
        fn host_segments_cover_exactly(
            perm in Just((0..16u64).collect::<Vec<_>>()).prop_shuffle(),
            raw in proptest::collection::vec((0u64..16 * CH, 1u32..3 * CH as u32, any::<bool>()), 1..6),
        ) {
            let segs: Vec<Segment> = raw
                .iter()
                .map(|&(o, l, w)| Segment {
                    addr: GuestPhysAddr::new(BASE + o),
                    len: l.min((16 * CH - o) as u32).max(1),
                    writable: w,
                })
                .collect();
            let mut t = translator(&perm);
            let got = host_segments(&segs, usize::MAX, &mut t).unwrap();
            let want: Vec<(u64, bool)> = segs
                .iter()
                .flat_map(|s| (0..u64::from(s.len)).map(move |i| (s.addr.raw() + i, s.writable)))
                .map(|(g, w)| {
                    let off = g - BASE;
                    (0x10_0000 + perm[(off / CH) as usize] * CH + off % CH, w)
                })
                .collect();
            let flat: Vec<(u64, bool)> = got
                .iter()
                .flat_map(|h| (0..h.len).map(move |i| (h.addr + i, h.writable)))
                .collect();
            prop_assert_eq!(flat, want);
            for w in got.windows(2) {
                prop_assert!(w[0].addr + w[0].len != w[1].addr || w[0].writable != w[1].writable);
            }
        }

        /// `sub_segments` is the byte range it names.
        #[test]
        fn sub_segments_is_a_byte_range(
            lens in proptest::collection::vec(1u32..50, 1..6),
            skip in 0u64..200,
            take in 0u64..200,
        ) {
            let segs: Vec<Segment> = lens
                .iter()
                .enumerate()
                .map(|(i, &l)| seg(0x1000 * (i as u64 + 1), l))
                .collect();
            let all: Vec<u64> = segs
                .iter()
                .flat_map(|s| (0..u64::from(s.len)).map(move |i| s.addr.raw() + i))
                .collect();
            let want: Vec<u64> = all.iter().copied().skip(skip as usize).take(take as usize).collect();
            let got: Vec<u64> = sub_segments(&segs, skip, take)
                .iter()
                .flat_map(|s| (0..u64::from(s.len)).map(move |i| s.addr.raw() + i))
                .collect();
            prop_assert_eq!(&got, &want);
            for (i, a) in want.iter().enumerate() {
                prop_assert_eq!(byte_at(&segs, skip + i as u64).map(|g| g.raw()), Some(*a));
            }
        }
    }
}
