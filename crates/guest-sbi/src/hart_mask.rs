//! The "hart list parameter" (SBI v2.0 §3.1): `hart_mask` + `hart_mask_base`.
//!
//! Bit `i` of `hart_mask` names hart `hart_mask_base + i`; `hart_mask_base ==
//! -1` (all ones) means "every hart", and `hart_mask` is then ignored. A hart id
//! that does not exist in the VM (or that would overflow XLEN) makes the whole
//! call fail with `SBI_ERR_INVALID_PARAM`, so the mask is validated completely
//! before any hart is acted on. A zero mask with any other base names no hart:
//! the call succeeds and does nothing.

use crate::SbiError;

/// `hart_mask_base` value meaning "all harts" (`(unsigned long)-1`).
pub const HART_MASK_BASE_ALL: u64 = u64::MAX;

/// A validated set of target vCPUs, decoded from `hart_mask` and `hart_mask_base`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HartMask {
    targets: Targets,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Targets {
    /// Every vCPU `0..count`.
    All { count: usize },
    /// vCPU `base + i` for each set bit `i` of `mask`; all checked to exist.
    Bits { mask: u64, base: usize },
}

impl HartMask {
    /// Decodes and validates the pair against a VM of `vcpu_count` vCPUs
    /// (hart ids `0..vcpu_count`). Fails with [`SbiError::InvalidParam`] if any
    /// named hart id is `>= vcpu_count` or not representable.
    pub fn decode(
        hart_mask: u64,
        hart_mask_base: u64,
        vcpu_count: usize,
    ) -> Result<Self, SbiError> {
        if hart_mask_base == HART_MASK_BASE_ALL {
            return Ok(Self {
                targets: Targets::All { count: vcpu_count },
            });
        }
        if hart_mask == 0 {
            return Ok(Self {
                targets: Targets::Bits { mask: 0, base: 0 },
            });
        }
        // Hart ids grow with the bit index, so the highest set bit names the
        // largest id: if that one exists, all of them do.
        let top_bit = u64::from(63 - hart_mask.leading_zeros());
        let top_id = hart_mask_base
            .checked_add(top_bit)
            .ok_or(SbiError::InvalidParam)?;
        let count = u64::try_from(vcpu_count).map_err(|_| SbiError::InvalidParam)?;
        if top_id >= count {
            return Err(SbiError::InvalidParam);
        }
        let base = usize::try_from(hart_mask_base).map_err(|_| SbiError::InvalidParam)?;
        Ok(Self {
            targets: Targets::Bits {
                mask: hart_mask,
                base,
            },
        })
    }

    /// Whether no vCPU is targeted.
    pub fn is_empty(&self) -> bool {
        match self.targets {
            Targets::All { count } => count == 0,
            Targets::Bits { mask, .. } => mask == 0,
        }
    }

    /// Whether `vcpu` is targeted.
    pub fn contains(&self, vcpu: usize) -> bool {
        match self.targets {
            Targets::All { count } => vcpu < count,
            Targets::Bits { mask, base } => match vcpu.checked_sub(base) {
                Some(bit) if bit < 64 => mask & (1u64 << bit) != 0,
                _ => false,
            },
        }
    }

    /// The targeted vCPUs in increasing order.
    pub fn iter(&self) -> HartMaskIter {
        match self.targets {
            Targets::All { count } => HartMaskIter {
                inner: IterInner::All { next: 0, count },
            },
            Targets::Bits { mask, base } => HartMaskIter {
                inner: IterInner::Bits { mask, base },
            },
        }
    }
}

impl IntoIterator for &HartMask {
    type Item = usize;
    type IntoIter = HartMaskIter;
    fn into_iter(self) -> HartMaskIter {
        self.iter()
    }
}

/// Iterator over the vCPUs of a [`HartMask`].
#[derive(Clone, Debug)]
pub struct HartMaskIter {
    inner: IterInner,
}

#[derive(Clone, Debug)]
enum IterInner {
    All { next: usize, count: usize },
    Bits { mask: u64, base: usize },
}

impl Iterator for HartMaskIter {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        match &mut self.inner {
            IterInner::All { next, count } => {
                if *next >= *count {
                    return None;
                }
                let v = *next;
                *next += 1;
                Some(v)
            }
            IterInner::Bits { mask, base } => {
                if *mask == 0 {
                    return None;
                }
                let bit = mask.trailing_zeros();
                *mask &= *mask - 1;
                // Cannot overflow: `decode` checked base + highest bit < vcpu_count.
                base.checked_add(bit as usize)
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code: a panic is how a test fails
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    fn ids(m: &HartMask) -> Vec<usize> {
        m.iter().collect()
    }

    #[test]
    fn bit_i_names_base_plus_i() {
        let m = HartMask::decode(0b1010_0001, 2, 10).unwrap();
        assert_eq!(ids(&m), [2, 7, 9]);
        assert!(m.contains(7) && !m.contains(3) && !m.contains(1) && !m.contains(100));
    }

    #[test]
    fn base_minus_one_means_all_and_ignores_mask() {
        for mask in [0, 1, u64::MAX, 0xdead_beef] {
            let m = HartMask::decode(mask, u64::MAX, 3).unwrap();
            assert_eq!(ids(&m), [0, 1, 2]);
        }
    }

    #[test]
    fn any_missing_hart_invalidates_the_whole_mask() {
        assert_eq!(HartMask::decode(0b100, 0, 2), Err(SbiError::InvalidParam));
        assert_eq!(HartMask::decode(0b11, 1, 2), Err(SbiError::InvalidParam));
        assert_eq!(HartMask::decode(1, 2, 2), Err(SbiError::InvalidParam));
        assert_eq!(
            HartMask::decode(1 << 63, 0, 64).map(|m| ids(&m)),
            Ok([63].to_vec())
        );
        assert_eq!(
            HartMask::decode(1 << 63, 1, 64),
            Err(SbiError::InvalidParam)
        );
    }

    #[test]
    fn base_plus_bit_overflow_is_invalid_not_a_wrap() {
        // u64::MAX - 1 + bit 1 would wrap to 0 (a real vCPU) if unchecked.
        assert_eq!(
            HartMask::decode(0b10, u64::MAX - 1, 4),
            Err(SbiError::InvalidParam)
        );
        assert_eq!(
            HartMask::decode(0b11, u64::MAX - 1, 4),
            Err(SbiError::InvalidParam)
        );
        assert_eq!(
            HartMask::decode(1 << 63, 1 << 63, 4),
            Err(SbiError::InvalidParam)
        );
    }

    #[test]
    fn zero_mask_names_nobody() {
        let m = HartMask::decode(0, 12345, 2).unwrap();
        assert!(m.is_empty());
        assert_eq!(ids(&m), []);
        assert!(!HartMask::decode(0, u64::MAX, 1).unwrap().is_empty());
    }
}
