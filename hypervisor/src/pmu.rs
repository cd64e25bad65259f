//! The hypervisor's side of the guests' SBI PMU (`fv_guest_sbi::pmu`): where
//! each vCPU's event totals come from, and the emulation of guest reads of the
//! `cycle` / `instret` CSRs.
//!
//! Hardware totals are the host's `cycle` and `instret` accumulated by
//! `RiscvVcpu::run` between guest entry and exit only, so a vCPU never counts
//! another vCPU's, another VM's or the hypervisor's work. Firmware totals are
//! per-vCPU atomics ([`FwCounts`]) the SBI layer bumps (another vCPU's IPI or
//! fence request counts as received on its target). The per-vCPU counter
//! state (`VcpuPmu`) lives in the vCPU's `Slot` and is reset with the vCPU.
//!
//! With `hcounteren.CY`/`IR` clear, every guest read of `cycle`/`instret`
//! (and `rdcycle`/`rdinstret`) is a virtual-instruction exit that
//! [`emulate_counter_read`] answers from the vCPU's virtual counters.

use core::sync::atomic::{AtomicU64, Ordering};

use fv_arch_riscv64::decode::decode_csr_read;
use fv_arch_riscv64::regs::Counteren;
use fv_arch_riscv64::vcpu::RiscvVcpu;
use fv_guest_sbi::pmu::{CSR_CYCLE, CSR_INSTRET, NUM_FW_COUNTERS};
use fv_guest_sbi::{FwEvent, PmuRaw, VcpuPmu};

/// One vCPU's firmware-event totals (monotonic; bumped from any hart).
#[derive(Debug, Default)]
pub struct FwCounts([AtomicU64; NUM_FW_COUNTERS]);

impl FwCounts {
    /// Counts one `event`.
    pub fn count(&self, event: FwEvent) {
        if let Some(c) = self.0.get(event.index()) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn snapshot(&self) -> [u64; NUM_FW_COUNTERS] {
        core::array::from_fn(|i| self.0.get(i).map_or(0, |c| c.load(Ordering::Relaxed)))
    }
}

/// The vCPU's event totals now.
pub fn raw(arch: &RiscvVcpu, fw: &FwCounts) -> PmuRaw {
    let (cycles, instructions) = arch.guest_counts();
    PmuRaw {
        cycles,
        instructions,
        fw: fw.snapshot(),
    }
}

/// Emulates the virtual instruction `insn` if it is a read of `cycle` or
/// `instret` the guest may make (from VU-mode only when its `scounteren`
/// allows it, as on hardware): writes `rd` and moves past it. Returns false
/// for anything else (the caller injects an illegal instruction).
pub fn emulate_counter_read(arch: &mut RiscvVcpu, pmu: &VcpuPmu, fw: &FwCounts, insn: u64) -> bool {
    let Some((rd, csr)) = decode_csr_read(insn) else {
        return false;
    };
    if csr != CSR_CYCLE && csr != CSR_INSTRET {
        return false;
    }
    if arch.exited_from_user() {
        let bit = if csr == CSR_CYCLE {
            Counteren::CY
        } else {
            Counteren::IR
        };
        if arch.scounteren() & bit.bits() == 0 {
            return false;
        }
    }
    match pmu.read_csr(csr, &raw(arch, fw)) {
        Some(v) => {
            arch.complete_csr_read(rd, v);
            true
        }
        None => false,
    }
}
