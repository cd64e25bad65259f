//! Typed addresses.
//!
//! A hypervisor juggles three address spaces: what a guest believes is physical
//! memory ([`GuestPhysAddr`]), what the machine really has ([`HostPhysAddr`]) and
//! what the hypervisor's own code dereferences ([`HostVirtAddr`]). Mixing them up
//! is the classic isolation bug, so each is its own newtype and converting between
//! them is always an explicit step (a G-stage walk, or the arch layer's mapping of
//! host memory). All arithmetic is checked and fails with [`AddrError`].
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use core::fmt;

/// Size of a base page (4 KiB) in bytes.
pub const PAGE_SIZE: u64 = 4096;
/// Size of a megapage (2 MiB) in bytes.
pub const MEGA_PAGE_SIZE: u64 = 2 << 20;
/// Size of a gigapage (1 GiB) in bytes.
pub const GIGA_PAGE_SIZE: u64 = 1 << 30;

/// What can go wrong in address arithmetic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddrError {
    /// The result would not fit in 64 bits (or would go below zero).
    Overflow,
    /// An alignment was requested that is not a power of two.
    BadAlignment,
}

impl fmt::Display for AddrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddrError::Overflow => f.write_str("address arithmetic overflowed"),
            AddrError::BadAlignment => f.write_str("alignment is not a power of two"),
        }
    }
}

macro_rules! address_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        #[repr(transparent)]
        pub struct $name(u64);

        impl $name {
            /// Wraps a raw address.
            pub const fn new(raw: u64) -> Self {
                Self(raw)
            }

            /// The raw address.
            pub const fn raw(self) -> u64 {
                self.0
            }

            /// `self + bytes`, or [`AddrError::Overflow`].
            pub const fn checked_add(self, bytes: u64) -> Result<Self, AddrError> {
                match self.0.checked_add(bytes) {
                    Some(v) => Ok(Self(v)),
                    None => Err(AddrError::Overflow),
                }
            }

            /// `self - bytes`, or [`AddrError::Overflow`].
            pub const fn checked_sub(self, bytes: u64) -> Result<Self, AddrError> {
                match self.0.checked_sub(bytes) {
                    Some(v) => Ok(Self(v)),
                    None => Err(AddrError::Overflow),
                }
            }

            /// Bytes from `base` up to `self`, or [`AddrError::Overflow`] if `self < base`.
            pub const fn offset_from(self, base: Self) -> Result<u64, AddrError> {
                match self.0.checked_sub(base.0) {
                    Some(v) => Ok(v),
                    None => Err(AddrError::Overflow),
                }
            }

            /// Whether the address is a multiple of `align` (false if `align` is not a power of two).
            pub const fn is_aligned(self, align: u64) -> bool {
                align.is_power_of_two() && self.0 & (align - 1) == 0
            }

            /// Rounds down to a multiple of `align`.
            pub const fn align_down(self, align: u64) -> Result<Self, AddrError> {
                if !align.is_power_of_two() {
                    return Err(AddrError::BadAlignment);
                }
                Ok(Self(self.0 & !(align - 1)))
            }

            /// Rounds up to a multiple of `align`.
            pub const fn align_up(self, align: u64) -> Result<Self, AddrError> {
                if !align.is_power_of_two() {
                    return Err(AddrError::BadAlignment);
                }
                match self.0.checked_add(align - 1) {
                    Some(v) => Ok(Self(v & !(align - 1))),
                    None => Err(AddrError::Overflow),
                }
            }

            /// Offset of the address within its 4 KiB page.
            pub const fn page_offset(self) -> u64 {
                self.0 & (PAGE_SIZE - 1)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{:#x}"), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{:#x}"), self.0)
            }
        }
    };
}

address_type!(
    /// An address in a guest's physical address space (what the guest puts in its
    /// own page tables, and what G-stage translation takes as input).
    GuestPhysAddr,
    "gpa:"
);
address_type!(
    /// An address in the machine's physical address space (what G-stage
    /// translation produces, what the frame allocator hands out).
    HostPhysAddr,
    "hpa:"
);
address_type!(
    /// An address the hypervisor's own code dereferences. Only the arch layer turns
    /// a [`HostPhysAddr`] into one of these.
    HostVirtAddr,
    "hva:"
);

/// A half-open range `[start, start + size)` of addresses of one kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range<A> {
    /// First address in the range.
    pub start: A,
    /// Length in bytes.
    pub size: u64,
}

/// What the three address types share, so [`Range`] works over any of them.
pub trait Address: Copy + Ord + fmt::Debug {
    /// The raw address.
    fn to_raw(self) -> u64;
    /// Wraps a raw address.
    fn from_raw(raw: u64) -> Self;
}

impl Address for GuestPhysAddr {
    fn to_raw(self) -> u64 {
        self.0
    }
    fn from_raw(raw: u64) -> Self {
        Self(raw)
    }
}

impl Address for HostPhysAddr {
    fn to_raw(self) -> u64 {
        self.0
    }
    fn from_raw(raw: u64) -> Self {
        Self(raw)
    }
}

impl Address for HostVirtAddr {
    fn to_raw(self) -> u64 {
        self.0
    }
    fn from_raw(raw: u64) -> Self {
        Self(raw)
    }
}

impl<A: Address> Range<A> {
    /// A range, or [`AddrError::Overflow`] if it would wrap around the address space.
    pub fn new(start: A, size: u64) -> Result<Self, AddrError> {
        match start.to_raw().checked_add(size) {
            Some(_) => Ok(Self { start, size }),
            None => Err(AddrError::Overflow),
        }
    }

    /// One past the last address (cannot overflow: checked at construction).
    pub fn end(&self) -> A {
        A::from_raw(self.start.to_raw().saturating_add(self.size))
    }

    /// Whether `addr` lies in the range.
    pub fn contains(&self, addr: A) -> bool {
        let (a, s) = (addr.to_raw(), self.start.to_raw());
        a >= s && a - s < self.size
    }

    /// Whether the `len` bytes starting at `addr` lie entirely in the range.
    pub fn contains_span(&self, addr: A, len: u64) -> bool {
        let (a, s) = (addr.to_raw(), self.start.to_raw());
        if a < s {
            return false;
        }
        match (a - s).checked_add(len) {
            Some(end) => end <= self.size,
            None => false,
        }
    }

    /// Whether the two ranges share at least one byte.
    pub fn overlaps(&self, other: &Self) -> bool {
        self.size != 0
            && other.size != 0
            && self.start.to_raw() < other.end().to_raw()
            && other.start.to_raw() < self.end().to_raw()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checked_arithmetic_reports_overflow() {
        let a = GuestPhysAddr::new(u64::MAX - 1);
        assert_eq!(a.checked_add(1), Ok(GuestPhysAddr::new(u64::MAX)));
        assert_eq!(a.checked_add(2), Err(AddrError::Overflow));
        assert_eq!(
            HostPhysAddr::new(3).checked_sub(4),
            Err(AddrError::Overflow)
        );
        assert_eq!(
            HostPhysAddr::new(0x1000).offset_from(HostPhysAddr::new(0x2000)),
            Err(AddrError::Overflow)
        );
    }

    #[test]
    fn alignment() {
        let a = HostPhysAddr::new(0x8020_0123);
        assert_eq!(a.align_down(PAGE_SIZE), Ok(HostPhysAddr::new(0x8020_0000)));
        assert_eq!(a.align_up(PAGE_SIZE), Ok(HostPhysAddr::new(0x8020_1000)));
        assert_eq!(a.align_up(3), Err(AddrError::BadAlignment));
        assert_eq!(
            HostPhysAddr::new(u64::MAX).align_up(PAGE_SIZE),
            Err(AddrError::Overflow)
        );
        assert!(HostPhysAddr::new(0x20_0000).is_aligned(MEGA_PAGE_SIZE));
        assert!(!HostPhysAddr::new(0x20_1000).is_aligned(MEGA_PAGE_SIZE));
        assert!(!HostPhysAddr::new(0).is_aligned(0));
    }

    #[test]
    fn ranges() {
        let r = Range::<GuestPhysAddr>::new(GuestPhysAddr::new(0x8000_0000), 0x1000).unwrap();
        assert!(r.contains(GuestPhysAddr::new(0x8000_0fff)));
        assert!(!r.contains(GuestPhysAddr::new(0x8000_1000)));
        assert!(!r.contains(GuestPhysAddr::new(0x7fff_ffff)));
        assert!(r.contains_span(GuestPhysAddr::new(0x8000_0ff8), 8));
        assert!(!r.contains_span(GuestPhysAddr::new(0x8000_0ff9), 8));
        assert!(!r.contains_span(GuestPhysAddr::new(0x8000_0000), u64::MAX));
        assert!(Range::<GuestPhysAddr>::new(GuestPhysAddr::new(u64::MAX), 2).is_err());
        let s = Range::<GuestPhysAddr>::new(GuestPhysAddr::new(0x8000_0fff), 1).unwrap();
        assert!(r.overlaps(&s));
        let t = Range::<GuestPhysAddr>::new(GuestPhysAddr::new(0x8000_1000), 1).unwrap();
        assert!(!r.overlaps(&t));
    }

    #[test]
    fn debug_names_the_space() {
        extern crate std;
        use std::format;
        assert_eq!(format!("{:?}", GuestPhysAddr::new(0x10)), "gpa:0x10");
        assert_eq!(format!("{}", HostPhysAddr::new(0x10)), "hpa:0x10");
    }
}
