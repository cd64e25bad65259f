//! The arch contract: what the core asks of one virtual CPU.

use crate::exit::VcpuExit;
use fv_addr::GuestPhysAddr;

/// Exceptions the core injects into a guest, with their RISC-V `scause` codes
/// (privileged spec, table "Supervisor cause register (scause) values").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum GuestException {
    /// Instruction access fault (cause 1): fetch from a GPA with nothing behind it.
    InstructionAccessFault = 1,
    /// Illegal instruction (cause 2): an instruction the guest may not execute.
    IllegalInstruction = 2,
    /// Load access fault (cause 5): load from a GPA with nothing behind it.
    LoadAccessFault = 5,
    /// Store/AMO access fault (cause 7): store to a GPA with nothing behind it.
    StoreAccessFault = 7,
}

impl GuestException {
    /// The `scause` exception code.
    pub const fn code(self) -> u64 {
        self as u64
    }
}

/// A virtual-supervisor interrupt line of a vCPU (bits of `hvip` / `vsip`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VirtualInterrupt {
    /// VS-level software interrupt (VSSIP, hvip bit 2): guest IPIs.
    Software,
    /// VS-level timer interrupt (VSTIP, hvip bit 6): emulated guest timer.
    Timer,
    /// VS-level external interrupt (VSEIP, hvip bit 10): virtual interrupt controller.
    External,
}

impl VirtualInterrupt {
    /// Bit of this interrupt in `hvip` (privileged spec, "Hypervisor Interrupt Registers").
    pub const fn hvip_bit(self) -> u32 {
        match self {
            VirtualInterrupt::Software => 2,
            VirtualInterrupt::Timer => 6,
            VirtualInterrupt::External => 10,
        }
    }
}

/// The state a vCPU starts from (reset, HSM `hart_start`, reboot).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VcpuBoot {
    /// First guest pc.
    pub pc: GuestPhysAddr,
    /// Value of a0 (the hart ID the guest sees).
    pub a0: u64,
    /// Value of a1 (DTB address at boot, `opaque` for HSM start).
    pub a1: u64,
}

/// One virtual CPU as the arch layer implements it.
///
/// Calling context for every method: the hart the vCPU is currently loaded on,
/// in the hypervisor (HS-mode) with host interrupts masked (`sstatus.SIE = 0`).
/// A vCPU is never used from two harts at once: it is owned by whichever hart's
/// run queue holds it.
pub trait Vcpu {
    /// Enters the guest and runs it until the next exit the core must see.
    /// Exits the arch layer handles itself (none today) never surface here.
    fn run(&mut self) -> VcpuExit;

    /// Completes an [`VcpuExit::SbiCall`]: writes `a0 = error`, `a1 = value`
    /// and advances the pc past the `ecall`.
    fn complete_sbi(&mut self, error: i64, value: u64);

    /// Completes an [`VcpuExit::MmioRead`]: writes `value` (extended as the
    /// access demands) to the destination register and advances the pc.
    fn complete_mmio_read(&mut self, value: u64);

    /// Completes an [`VcpuExit::MmioWrite`] by advancing the pc.
    fn complete_mmio_write(&mut self);

    /// The guest-virtual address of the access behind the current memory exit
    /// (what a native access fault reports in `stval`).
    fn fault_gva(&self) -> u64;

    /// Advances the pc past the trapping instruction (WFI, an emulated CSR access).
    fn skip_instruction(&mut self);

    /// Redirects the guest into its own trap handler with `cause` and `tval`,
    /// as if the hardware had raised the exception in VS/VU-mode.
    fn inject_exception(&mut self, cause: GuestException, tval: u64);

    /// Asserts or clears a virtual interrupt line.
    fn set_interrupt(&mut self, irq: VirtualInterrupt, pending: bool);

    /// Whether the guest has an interrupt pending that it has enabled (so a
    /// WFI should end), including a timer that has reached its deadline.
    fn interrupt_pending(&self) -> bool;

    /// Programs the guest timer (SBI `set_timer`): the VS timer interrupt is
    /// pending once the guest's `time` reaches `deadline`. Writing a new value
    /// clears a pending timer interrupt. Returns the deadline in host `time`
    /// units if the core must emulate it (no Sstc), or `None` if the hardware
    /// delivers it (Sstc: `vstimecmp`).
    fn set_timer(&mut self, deadline: u64) -> Option<u64>;

    /// Resets the vCPU's architectural state and makes it start at `boot`.
    fn reset(&mut self, boot: VcpuBoot);

    /// Current guest pc (for logs).
    fn pc(&self) -> u64;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exception_codes_match_scause_table() {
        assert_eq!(GuestException::InstructionAccessFault.code(), 1);
        assert_eq!(GuestException::IllegalInstruction.code(), 2);
        assert_eq!(GuestException::LoadAccessFault.code(), 5);
        assert_eq!(GuestException::StoreAccessFault.code(), 7);
    }

    #[test]
    fn hvip_bits_match_spec() {
        assert_eq!(VirtualInterrupt::Software.hvip_bit(), 2);
        assert_eq!(VirtualInterrupt::Timer.hvip_bit(), 6);
        assert_eq!(VirtualInterrupt::External.hvip_bit(), 10);
    }
}
