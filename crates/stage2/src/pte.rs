//! G-stage page-table entries (RV64, Sv39/Sv48/Sv57 PTE format).
//!
//! ```text
//!  63 | 62..61 | 60..54   | 53..10 | 9..8 | 7 | 6 | 5 | 4 | 3 | 2 | 1 | 0
//!   N |  PBMT  | reserved |  PPN   | RSW  | D | A | G | U | X | W | R | V
//! ```
//! This crate leaves N, PBMT, the reserved bits and RSW at 0.

bitflags::bitflags! {
    /// The low flag bits of a PTE.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct PteFlags: u64 {
        /// Valid.
        const V = 1 << 0;
        /// Readable.
        const R = 1 << 1;
        /// Writable.
        const W = 1 << 2;
        /// Executable.
        const X = 1 << 3;
        /// User: G-stage leaves must have it set (all G-stage accesses are U-mode).
        const U = 1 << 4;
        /// Global: unused by the G-stage, kept 0.
        const G = 1 << 5;
        /// Accessed.
        const A = 1 << 6;
        /// Dirty.
        const D = 1 << 7;
    }
}

/// First bit of the RSW field (reserved for supervisor software), two bits wide.
pub const RSW_SHIFT: u32 = 8;
/// The RSW field, bits 9..=8.
pub const RSW_MASK: u64 = 0b11 << RSW_SHIFT;
/// First bit of the PPN field.
pub const PPN_SHIFT: u32 = 10;
/// Width of the PPN field.
pub const PPN_BITS: u32 = 44;
/// The PPN field, bits 53..=10.
pub const PPN_MASK: u64 = ((1 << PPN_BITS) - 1) << PPN_SHIFT;
/// First bit of the PBMT field (Svpbmt), two bits wide.
pub const PBMT_SHIFT: u32 = 61;
/// The PBMT field, bits 62..=61.
pub const PBMT_MASK: u64 = 0b11 << PBMT_SHIFT;
/// The N bit (Svnapot), bit 63.
pub const N: u64 = 1 << 63;

/// The PPN field of `pte`.
pub const fn ppn(pte: u64) -> u64 {
    (pte & PPN_MASK) >> PPN_SHIFT
}

/// A PTE with the given PPN (truncated to 44 bits) and flag bits (bits 7..=0).
pub const fn make(ppn: u64, flags: u64) -> u64 {
    ((ppn << PPN_SHIFT) & PPN_MASK) | (flags & 0xff)
}

/// A non-leaf PTE pointing at the table with PPN `ppn`: only V set (R=W=X=0, and
/// U, A, D, G are reserved/zero for non-leaf G-stage entries).
pub const fn table(ppn: u64) -> u64 {
    make(ppn, PteFlags::V.bits())
}

/// Whether a valid `pte` is a leaf (any of R, W, X set).
pub const fn is_leaf(pte: u64) -> bool {
    pte & (PteFlags::R.bits() | PteFlags::W.bits() | PteFlags::X.bits()) != 0
}
