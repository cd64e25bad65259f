//! Why a vCPU stopped running guest code: the arch layer's decoded view of a trap.

use fv_addr::GuestPhysAddr;

/// Width of a guest memory access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessWidth {
    /// 1 byte.
    Byte,
    /// 2 bytes.
    Half,
    /// 4 bytes.
    Word,
    /// 8 bytes.
    Double,
}

impl AccessWidth {
    /// The access size in bytes.
    pub const fn bytes(self) -> u64 {
        match self {
            AccessWidth::Byte => 1,
            AccessWidth::Half => 2,
            AccessWidth::Word => 4,
            AccessWidth::Double => 8,
        }
    }

    /// The width for a size in bytes, if it is 1, 2, 4 or 8.
    pub const fn from_bytes(bytes: u64) -> Option<Self> {
        match bytes {
            1 => Some(AccessWidth::Byte),
            2 => Some(AccessWidth::Half),
            4 => Some(AccessWidth::Word),
            8 => Some(AccessWidth::Double),
            _ => None,
        }
    }

    /// Mask of the bits an access of this width carries.
    pub const fn mask(self) -> u64 {
        match self {
            AccessWidth::Double => u64::MAX,
            w => (1u64 << (w.bytes() * 8)) - 1,
        }
    }
}

/// Kind of guest memory access that faulted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// A load (or the read half of an AMO the arch could not split).
    Load,
    /// A store or AMO.
    Store,
    /// An instruction fetch.
    Fetch,
}

/// A host interrupt that arrived while the guest ran (the hypervisor owns these).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostInterrupt {
    /// The host timer fired (time slice end or an emulated guest timer deadline).
    Timer,
    /// An inter-processor interrupt from another hart of the hypervisor.
    Software,
    /// A host external interrupt (PLIC/APLIC).
    External,
    /// Any other interrupt cause, by number.
    Other(u64),
}

/// Why [`crate::Vcpu::run`] returned. The arch layer decodes the trap; the core
/// ([`crate::handle`]) decides what it means for the VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VcpuExit {
    /// A guest load from a guest-physical address that is not mapped RAM. Complete
    /// it with [`crate::Vcpu::complete_mmio_read`], or leave it to be retried after
    /// mapping the address.
    MmioRead {
        /// Guest-physical address accessed.
        addr: GuestPhysAddr,
        /// Access width.
        width: AccessWidth,
        /// Destination general-purpose register (x0..x31).
        reg: u8,
        /// Whether the loaded value is sign-extended (LB/LH/LW) or zero-extended.
        signed: bool,
    },
    /// A guest store to a guest-physical address that is not mapped RAM.
    MmioWrite {
        /// Guest-physical address accessed.
        addr: GuestPhysAddr,
        /// Access width.
        width: AccessWidth,
        /// Value stored (already masked to `width`).
        value: u64,
    },
    /// An `ecall` from VS-mode: an SBI call (a7 = EID, a6 = FID, a0..a5).
    SbiCall {
        /// Extension ID (a7).
        eid: u64,
        /// Function ID (a6).
        fid: u64,
        /// Arguments a0..a5.
        args: [u64; 6],
    },
    /// A guest-page fault the arch could not express as MMIO (instruction fetch,
    /// AMO, LR/SC, an undecodable instruction, a fault during the guest's own
    /// page-table walk).
    GuestPageFault {
        /// Guest-physical address that faulted.
        addr: GuestPhysAddr,
        /// What kind of access.
        access: Access,
    },
    /// The guest executed WFI (trapped so the hart can run something else).
    Wfi,
    /// An instruction the guest may not execute at its privilege (virtual
    /// instruction exception the arch does not emulate). `insn` is the raw
    /// instruction bits when known, else 0.
    VirtualInstruction {
        /// The instruction bits (stval / htinst).
        insn: u64,
    },
    /// A host interrupt arrived while the guest ran.
    HostInterrupt(HostInterrupt),
    /// An exception from the guest that neither the arch layer nor the core
    /// knows how to handle; the VM is stopped with this logged.
    Unhandled {
        /// The trap cause (scause).
        cause: u64,
        /// The trap value (stval).
        tval: u64,
        /// The guest pc.
        pc: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths() {
        for (b, w) in [
            (1, AccessWidth::Byte),
            (2, AccessWidth::Half),
            (4, AccessWidth::Word),
            (8, AccessWidth::Double),
        ] {
            assert_eq!(AccessWidth::from_bytes(b), Some(w));
            assert_eq!(w.bytes(), b);
        }
        assert_eq!(AccessWidth::from_bytes(3), None);
        assert_eq!(AccessWidth::Byte.mask(), 0xff);
        assert_eq!(AccessWidth::Word.mask(), 0xffff_ffff);
        assert_eq!(AccessWidth::Double.mask(), u64::MAX);
    }
}
