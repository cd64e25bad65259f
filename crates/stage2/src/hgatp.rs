//! The `hgatp` CSR (hypervisor guest address translation and protection), RV64:
//!
//! ```text
//!  63..60 | 59..58 | 57..44 | 43..0
//!   MODE  |   0    |  VMID  |  PPN
//! ```
//! PPN is the root table's physical page number; for the x4 modes the root is
//! 16 KiB aligned, so PPN[1:0] are zero. How many VMID bits a hart implements
//! (VMIDLEN, at most 14) is found by writing all ones and reading back; that
//! probe belongs to the arch layer.

/// First bit of the MODE field.
pub const MODE_SHIFT: u32 = 60;
/// MODE field mask (after shifting down).
pub const MODE_MASK: u64 = 0xf;
/// First bit of the VMID field.
pub const VMID_SHIFT: u32 = 44;
/// Maximum VMID width on RV64 (VMIDMAX).
pub const VMID_BITS: u32 = 14;
/// VMID field mask (after shifting down).
pub const VMID_MASK: u64 = (1 << VMID_BITS) - 1;
/// First bit of the PPN field.
pub const PPN_SHIFT: u32 = 0;
/// PPN field mask (after shifting down).
pub const PPN_MASK: u64 = (1 << 44) - 1;

/// MODE: no translation or protection.
pub const MODE_BARE: u64 = 0;
/// MODE: Sv39x4.
pub const MODE_SV39X4: u64 = 8;
/// MODE: Sv48x4.
pub const MODE_SV48X4: u64 = 9;
/// MODE: Sv57x4.
pub const MODE_SV57X4: u64 = 10;

/// An `hgatp` value. Each argument is truncated to its field width.
pub const fn encode(mode: u64, vmid: u16, ppn: u64) -> u64 {
    ((mode & MODE_MASK) << MODE_SHIFT)
        | (((vmid as u64) & VMID_MASK) << VMID_SHIFT)
        | ((ppn & PPN_MASK) << PPN_SHIFT)
}

/// The MODE field of `hgatp`.
pub const fn mode(hgatp: u64) -> u64 {
    (hgatp >> MODE_SHIFT) & MODE_MASK
}

/// The VMID field of `hgatp`.
pub const fn vmid(hgatp: u64) -> u16 {
    ((hgatp >> VMID_SHIFT) & VMID_MASK) as u16
}

/// The PPN field of `hgatp`.
pub const fn ppn(hgatp: u64) -> u64 {
    (hgatp >> PPN_SHIFT) & PPN_MASK
}
