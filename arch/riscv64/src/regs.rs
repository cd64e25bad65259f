//! CSR numbers and bitfields of the RISC-V privileged spec (v1.12+, H extension,
//! Sstc, Smstateen) that the hypervisor uses. Every field is pinned to the spec by
//! a unit test below.

use bitflags::bitflags;

/// CSR numbers (privileged spec, "CSR Listing").
pub mod num {
    /// Supervisor status.
    pub const SSTATUS: u16 = 0x100;
    /// Supervisor interrupt enable.
    pub const SIE: u16 = 0x104;
    /// Supervisor trap vector.
    pub const STVEC: u16 = 0x105;
    /// Supervisor counter enable.
    pub const SCOUNTEREN: u16 = 0x106;
    /// Supervisor environment configuration.
    pub const SENVCFG: u16 = 0x10A;
    /// Supervisor state enable 0 (Smstateen).
    pub const SSTATEEN0: u16 = 0x10C;
    /// Supervisor scratch.
    pub const SSCRATCH: u16 = 0x140;
    /// Supervisor exception pc.
    pub const SEPC: u16 = 0x141;
    /// Supervisor trap cause.
    pub const SCAUSE: u16 = 0x142;
    /// Supervisor trap value.
    pub const STVAL: u16 = 0x143;
    /// Supervisor interrupt pending.
    pub const SIP: u16 = 0x144;
    /// Supervisor timer compare (Sstc).
    pub const STIMECMP: u16 = 0x14D;
    /// Supervisor address translation and protection.
    pub const SATP: u16 = 0x180;
    /// Virtual supervisor status.
    pub const VSSTATUS: u16 = 0x200;
    /// Virtual supervisor interrupt enable.
    pub const VSIE: u16 = 0x204;
    /// Virtual supervisor trap vector.
    pub const VSTVEC: u16 = 0x205;
    /// Virtual supervisor scratch.
    pub const VSSCRATCH: u16 = 0x240;
    /// Virtual supervisor exception pc.
    pub const VSEPC: u16 = 0x241;
    /// Virtual supervisor trap cause.
    pub const VSCAUSE: u16 = 0x242;
    /// Virtual supervisor trap value.
    pub const VSTVAL: u16 = 0x243;
    /// Virtual supervisor interrupt pending.
    pub const VSIP: u16 = 0x244;
    /// Virtual supervisor indirect register select (Ssaia).
    pub const VSISELECT: u16 = 0x250;
    /// Virtual supervisor timer compare (Sstc).
    pub const VSTIMECMP: u16 = 0x24D;
    /// Virtual supervisor address translation and protection.
    pub const VSATP: u16 = 0x280;
    /// Hypervisor status.
    pub const HSTATUS: u16 = 0x600;
    /// Hypervisor exception delegation.
    pub const HEDELEG: u16 = 0x602;
    /// Hypervisor interrupt delegation.
    pub const HIDELEG: u16 = 0x603;
    /// Hypervisor interrupt enable.
    pub const HIE: u16 = 0x604;
    /// Delta between the guest's and the host's `time`.
    pub const HTIMEDELTA: u16 = 0x605;
    /// Hypervisor counter enable.
    pub const HCOUNTEREN: u16 = 0x606;
    /// Hypervisor guest external interrupt enable.
    pub const HGEIE: u16 = 0x607;
    /// Hypervisor environment configuration.
    pub const HENVCFG: u16 = 0x60A;
    /// Hypervisor state enable 0 (Smstateen).
    pub const HSTATEEN0: u16 = 0x60C;
    /// Hypervisor state enable 1 (Smstateen).
    pub const HSTATEEN1: u16 = 0x60D;
    /// Hypervisor state enable 2 (Smstateen).
    pub const HSTATEEN2: u16 = 0x60E;
    /// Hypervisor state enable 3 (Smstateen).
    pub const HSTATEEN3: u16 = 0x60F;
    /// Supervisor-mode context (Sdtrig).
    pub const SCONTEXT: u16 = 0x5A8;
    /// Hypervisor trap value (guest physical address >> 2).
    pub const HTVAL: u16 = 0x643;
    /// Hypervisor interrupt pending.
    pub const HIP: u16 = 0x644;
    /// Hypervisor virtual interrupt pending.
    pub const HVIP: u16 = 0x645;
    /// Hypervisor trap instruction (transformed).
    pub const HTINST: u16 = 0x64A;
    /// Hypervisor guest address translation and protection.
    pub const HGATP: u16 = 0x680;
    /// Cycle counter (read-only shadow of mcycle).
    pub const CYCLE: u16 = 0xC00;
    /// Timer (read-only shadow of mtime).
    pub const TIME: u16 = 0xC01;
    /// Instructions-retired counter (read-only shadow of minstret).
    pub const INSTRET: u16 = 0xC02;
}

bitflags! {
    /// `sstatus` single-bit fields.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Sstatus: u64 {
        /// Supervisor interrupt enable.
        const SIE = 1 << 1;
        /// Supervisor previous interrupt enable.
        const SPIE = 1 << 5;
        /// Supervisor previous privilege (1 = S).
        const SPP = 1 << 8;
        /// Permit supervisor user memory access.
        const SUM = 1 << 18;
        /// Make executable readable.
        const MXR = 1 << 19;
        /// State dirty summary.
        const SD = 1 << 63;
    }
}

/// `sstatus.FS` (bits 14:13) / `vsstatus.FS`: floating-point unit state.
pub mod fs {
    /// Shift of the FS field.
    pub const SHIFT: u32 = 13;
    /// Mask of the FS field (in place).
    pub const MASK: u64 = 0b11 << SHIFT;
    /// FS = Off.
    pub const OFF: u64 = 0;
    /// FS = Initial.
    pub const INITIAL: u64 = 1 << SHIFT;
    /// FS = Clean.
    pub const CLEAN: u64 = 2 << SHIFT;
    /// FS = Dirty.
    pub const DIRTY: u64 = 3 << SHIFT;
}

bitflags! {
    /// `hstatus` single-bit fields (H extension).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Hstatus: u64 {
        /// Guest virtual address: stval holds a guest virtual address.
        const GVA = 1 << 6;
        /// Supervisor previous virtualisation mode.
        const SPV = 1 << 7;
        /// Supervisor previous virtual privilege (for HLV/HSV).
        const SPVP = 1 << 8;
        /// Hypervisor user mode (HLV/HSV from U-mode).
        const HU = 1 << 9;
        /// Trap SFENCE.VMA/SINVAL.VMA/satp access in VS-mode.
        const VTVM = 1 << 20;
        /// Trap WFI in VS-mode (virtual instruction exception).
        const VTW = 1 << 21;
        /// Trap SRET in VS-mode.
        const VTSR = 1 << 22;
    }
}

/// `hstatus.VSXL` (bits 33:32): VS-mode XLEN; 2 = 64-bit.
pub const HSTATUS_VSXL_SHIFT: u32 = 32;
/// `hstatus.VSXL` value for RV64.
pub const HSTATUS_VSXL_64: u64 = 2 << HSTATUS_VSXL_SHIFT;

/// `scause` / `vscause` interrupt bit (RV64).
pub const CAUSE_INTERRUPT: u64 = 1 << 63;

/// Exception codes (`scause` with the interrupt bit clear).
pub mod exception {
    /// Instruction address misaligned.
    pub const INSTRUCTION_MISALIGNED: u64 = 0;
    /// Instruction access fault.
    pub const INSTRUCTION_ACCESS_FAULT: u64 = 1;
    /// Illegal instruction.
    pub const ILLEGAL_INSTRUCTION: u64 = 2;
    /// Breakpoint.
    pub const BREAKPOINT: u64 = 3;
    /// Load address misaligned.
    pub const LOAD_MISALIGNED: u64 = 4;
    /// Load access fault.
    pub const LOAD_ACCESS_FAULT: u64 = 5;
    /// Store/AMO address misaligned.
    pub const STORE_MISALIGNED: u64 = 6;
    /// Store/AMO access fault.
    pub const STORE_ACCESS_FAULT: u64 = 7;
    /// Environment call from U-mode or VU-mode.
    pub const ECALL_FROM_U: u64 = 8;
    /// Environment call from HS-mode.
    pub const ECALL_FROM_HS: u64 = 9;
    /// Environment call from VS-mode.
    pub const ECALL_FROM_VS: u64 = 10;
    /// Instruction page fault.
    pub const INSTRUCTION_PAGE_FAULT: u64 = 12;
    /// Load page fault.
    pub const LOAD_PAGE_FAULT: u64 = 13;
    /// Store/AMO page fault.
    pub const STORE_PAGE_FAULT: u64 = 15;
    /// Instruction guest-page fault.
    pub const INSTRUCTION_GUEST_PAGE_FAULT: u64 = 20;
    /// Load guest-page fault.
    pub const LOAD_GUEST_PAGE_FAULT: u64 = 21;
    /// Virtual instruction.
    pub const VIRTUAL_INSTRUCTION: u64 = 22;
    /// Store/AMO guest-page fault.
    pub const STORE_GUEST_PAGE_FAULT: u64 = 23;
}

/// Interrupt codes (`scause` with the interrupt bit set) and their `sip`/`sie` bits.
pub mod interrupt {
    /// Supervisor software interrupt.
    pub const SUPERVISOR_SOFTWARE: u64 = 1;
    /// Virtual supervisor software interrupt.
    pub const VIRTUAL_SUPERVISOR_SOFTWARE: u64 = 2;
    /// Supervisor timer interrupt.
    pub const SUPERVISOR_TIMER: u64 = 5;
    /// Virtual supervisor timer interrupt.
    pub const VIRTUAL_SUPERVISOR_TIMER: u64 = 6;
    /// Supervisor external interrupt.
    pub const SUPERVISOR_EXTERNAL: u64 = 9;
    /// Virtual supervisor external interrupt.
    pub const VIRTUAL_SUPERVISOR_EXTERNAL: u64 = 10;
    /// Supervisor guest external interrupt.
    pub const SUPERVISOR_GUEST_EXTERNAL: u64 = 12;
}

bitflags! {
    /// Interrupt bits of `sip`/`sie`/`hip`/`hie`/`hvip`/`hideleg`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Irq: u64 {
        /// SSIP / SSIE.
        const SSI = 1 << interrupt::SUPERVISOR_SOFTWARE;
        /// VSSIP / VSSIE.
        const VSSI = 1 << interrupt::VIRTUAL_SUPERVISOR_SOFTWARE;
        /// STIP / STIE.
        const STI = 1 << interrupt::SUPERVISOR_TIMER;
        /// VSTIP / VSTIE.
        const VSTI = 1 << interrupt::VIRTUAL_SUPERVISOR_TIMER;
        /// SEIP / SEIE.
        const SEI = 1 << interrupt::SUPERVISOR_EXTERNAL;
        /// VSEIP / VSEIE.
        const VSEI = 1 << interrupt::VIRTUAL_SUPERVISOR_EXTERNAL;
        /// SGEIP / SGEIE.
        const SGEI = 1 << interrupt::SUPERVISOR_GUEST_EXTERNAL;
    }
}

bitflags! {
    /// `henvcfg` fields.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Henvcfg: u64 {
        /// Fence of I/O implies memory.
        const FIOM = 1 << 0;
        /// Cache-block invalidate enable (CBIE, bits 5:4 = 01: flush).
        const CBIE_FLUSH = 1 << 4;
        /// Cache-block invalidate enable (CBIE, bits 5:4 = 11: invalidate).
        const CBIE_INVAL = 0b11 << 4;
        /// Cache-block clean/flush enable.
        const CBCFE = 1 << 6;
        /// Cache-block zero enable.
        const CBZE = 1 << 7;
        /// Hardware A/D updating for VS-stage (Svadu).
        const ADUE = 1 << 61;
        /// Page-based memory types for VS-stage (Svpbmt).
        const PBMTE = 1 << 62;
        /// Sstc enable for VS-mode (vstimecmp).
        const STCE = 1 << 63;
    }
}

bitflags! {
    /// `hstateen0` fields (Smstateen).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Hstateen0: u64 {
        /// Custom state.
        const C = 1 << 0;
        /// Floating point in integer registers (Zfinx).
        const FCSR = 1 << 1;
        /// The scontext CSR.
        const CONTEXT = 1 << 57;
        /// IMSIC state (Ssaia).
        const IMSIC = 1 << 58;
        /// AIA state other than IMSIC.
        const AIA = 1 << 59;
        /// siselect/sireg (Sscsrind).
        const CSRIND = 1 << 60;
        /// senvcfg.
        const ENVCFG = 1 << 62;
        /// sstateen0.
        const SE0 = 1 << 63;
    }
}

bitflags! {
    /// `hcounteren` / `scounteren` fields.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Counteren: u64 {
        /// cycle.
        const CY = 1 << 0;
        /// time.
        const TM = 1 << 1;
        /// instret.
        const IR = 1 << 2;
    }
}

/// Exceptions the hypervisor delegates straight to VS-mode (`hedeleg`): the guest
/// handles them itself without an exit, as on real hardware.
pub const HEDELEG_GUEST: u64 = (1 << exception::INSTRUCTION_MISALIGNED)
    | (1 << exception::ILLEGAL_INSTRUCTION)
    | (1 << exception::BREAKPOINT)
    | (1 << exception::LOAD_MISALIGNED)
    | (1 << exception::STORE_MISALIGNED)
    | (1 << exception::ECALL_FROM_U)
    | (1 << exception::INSTRUCTION_PAGE_FAULT)
    | (1 << exception::LOAD_PAGE_FAULT)
    | (1 << exception::STORE_PAGE_FAULT);

/// Interrupts delegated to VS-mode (`hideleg`): the VS software, timer and external lines.
pub const HIDELEG_GUEST: u64 = Irq::VSSI.bits() | Irq::VSTI.bits() | Irq::VSEI.bits();

/// `hgatp` fields (RV64).
pub mod hgatp {
    /// Shift of MODE (bits 63:60).
    pub const MODE_SHIFT: u32 = 60;
    /// Shift of VMID (bits 57:44).
    pub const VMID_SHIFT: u32 = 44;
    /// Mask of VMID (14 bits, in place).
    pub const VMID_MASK: u64 = 0x3fff << VMID_SHIFT;
    /// Mask of PPN (bits 43:0).
    pub const PPN_MASK: u64 = (1 << 44) - 1;
    /// MODE = Bare.
    pub const MODE_BARE: u64 = 0;
    /// MODE = Sv39x4.
    pub const MODE_SV39X4: u64 = 8;
    /// MODE = Sv48x4.
    pub const MODE_SV48X4: u64 = 9;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sstatus_bits() {
        assert_eq!(Sstatus::SIE.bits(), 0x2);
        assert_eq!(Sstatus::SPIE.bits(), 0x20);
        assert_eq!(Sstatus::SPP.bits(), 0x100);
        assert_eq!(Sstatus::SUM.bits(), 0x4_0000);
        assert_eq!(Sstatus::MXR.bits(), 0x8_0000);
        assert_eq!(Sstatus::SD.bits(), 0x8000_0000_0000_0000);
        assert_eq!(fs::MASK, 0x6000);
        assert_eq!(fs::DIRTY, 0x6000);
        assert_eq!(fs::CLEAN, 0x4000);
        assert_eq!(fs::INITIAL, 0x2000);
    }

    #[test]
    fn hstatus_bits() {
        assert_eq!(Hstatus::GVA.bits(), 0x40);
        assert_eq!(Hstatus::SPV.bits(), 0x80);
        assert_eq!(Hstatus::SPVP.bits(), 0x100);
        assert_eq!(Hstatus::HU.bits(), 0x200);
        assert_eq!(Hstatus::VTVM.bits(), 0x10_0000);
        assert_eq!(Hstatus::VTW.bits(), 0x20_0000);
        assert_eq!(Hstatus::VTSR.bits(), 0x40_0000);
        assert_eq!(HSTATUS_VSXL_64, 0x2_0000_0000);
    }

    #[test]
    fn interrupt_bits() {
        assert_eq!(Irq::SSI.bits(), 0x2);
        assert_eq!(Irq::VSSI.bits(), 0x4);
        assert_eq!(Irq::STI.bits(), 0x20);
        assert_eq!(Irq::VSTI.bits(), 0x40);
        assert_eq!(Irq::SEI.bits(), 0x200);
        assert_eq!(Irq::VSEI.bits(), 0x400);
        assert_eq!(Irq::SGEI.bits(), 0x1000);
        assert_eq!(HIDELEG_GUEST, 0x444);
    }

    #[test]
    fn delegation_bits() {
        // misaligned fetch, illegal, breakpoint, misaligned load/store, U ecall, page faults
        assert_eq!(HEDELEG_GUEST, 0b1011_0001_0101_1101);
        // Never delegate VS ecalls (SBI) or guest-page faults: they are ours.
        assert_eq!(HEDELEG_GUEST & (1 << exception::ECALL_FROM_VS), 0);
        assert_eq!(HEDELEG_GUEST & (1 << exception::LOAD_GUEST_PAGE_FAULT), 0);
    }

    #[test]
    fn exception_codes() {
        assert_eq!(exception::ECALL_FROM_VS, 10);
        assert_eq!(exception::INSTRUCTION_GUEST_PAGE_FAULT, 20);
        assert_eq!(exception::LOAD_GUEST_PAGE_FAULT, 21);
        assert_eq!(exception::VIRTUAL_INSTRUCTION, 22);
        assert_eq!(exception::STORE_GUEST_PAGE_FAULT, 23);
    }

    #[test]
    fn envcfg_and_stateen_bits() {
        assert_eq!(Henvcfg::STCE.bits(), 1 << 63);
        assert_eq!(Henvcfg::PBMTE.bits(), 1 << 62);
        assert_eq!(Henvcfg::ADUE.bits(), 1 << 61);
        assert_eq!(Henvcfg::CBZE.bits(), 0x80);
        assert_eq!(Henvcfg::CBCFE.bits(), 0x40);
        assert_eq!(Henvcfg::CBIE_INVAL.bits(), 0x30);
        assert_eq!(Hstateen0::SE0.bits(), 1 << 63);
        assert_eq!(Hstateen0::ENVCFG.bits(), 1 << 62);
        assert_eq!(Hstateen0::AIA.bits(), 1 << 59);
        assert_eq!(Hstateen0::IMSIC.bits(), 1 << 58);
        assert_eq!(Counteren::TM.bits(), 2);
    }

    #[test]
    fn csr_numbers() {
        // Privileged spec "CSR Listing"; Smstateen; Ssaia; Sdtrig.
        assert_eq!(num::SCOUNTEREN, 0x106);
        assert_eq!(num::SENVCFG, 0x10A);
        assert_eq!(num::SSTATEEN0, 0x10C);
        assert_eq!(num::VSISELECT, 0x250);
        assert_eq!(num::HCOUNTEREN, 0x606);
        assert_eq!(
            [
                num::HSTATEEN0,
                num::HSTATEEN1,
                num::HSTATEEN2,
                num::HSTATEEN3
            ],
            [0x60C, 0x60D, 0x60E, 0x60F]
        );
        assert_eq!(num::SCONTEXT, 0x5A8);
        assert_eq!([num::CYCLE, num::TIME, num::INSTRET], [0xC00, 0xC01, 0xC02]);
    }

    #[test]
    fn hgatp_fields() {
        assert_eq!(hgatp::VMID_MASK, 0x03ff_f000_0000_0000);
        assert_eq!(hgatp::PPN_MASK, 0x0000_0fff_ffff_ffff);
        assert_eq!(
            hgatp::MODE_SV39X4 << hgatp::MODE_SHIFT,
            0x8000_0000_0000_0000
        );
        assert_eq!(
            hgatp::MODE_SV48X4 << hgatp::MODE_SHIFT,
            0x9000_0000_0000_0000
        );
    }
}
