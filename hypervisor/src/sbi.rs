//! The hypervisor's side of the SBI its guests see: [`Env`], the
//! [`SbiEnv`] `fv_guest_sbi` works through, and [`sbi_call`], which turns an
//! [`SbiOutcome`] into what happens to the calling vCPU.

use crate::sched::{host, kick, reboot_vm, stop_vm, Next, Slot, SBI_IMPL_ID};
use crate::vm::{StopReason, Vm, FENCE_I, FENCE_VVMA};
use alloc::vec::Vec;
use core::sync::atomic::Ordering;
use fv_addr::GuestPhysAddr;
use fv_arch_riscv64::regs::Henvcfg;
use fv_arch_riscv64::vcpu::RiscvVcpu;
use fv_guest_sbi::{
    ConsoleError, Fence, FwftFeature, FwftSetError, HartState, HsmError, ResetKind, ResetReason,
    SbiCall, SbiEnv, SbiOutcome, SuspendType,
};
use fv_mgmt::{IrqKind, SbiExtension};
use fv_sched::RunQueue;

/// `henvcfg.ADUE`: what FWFT `PTE_AD_HW_UPDATING` switches per vCPU.
const ADUE: u64 = Henvcfg::ADUE.bits();
use fv_vm::{GuestMemory, Vcpu, VirtualInterrupt};

pub(crate) fn sbi_call(vm: &Vm, slot: &mut Slot, call: SbiCall) -> Next {
    let outcome = {
        let mut env = Env {
            vm,
            fenced: Vec::new(),
            vcpu: slot.vcpu,
            arch: &mut slot.arch,
            timer: &mut slot.timer,
            pmu: &mut slot.pmu,
        };
        fv_guest_sbi::handle(&mut env, &call)
    };
    vm.vcpus[slot.vcpu]
        .sbi
        .record(SbiExtension::from_eid(call.eid));
    match outcome {
        SbiOutcome::Return(r) => {
            slot.arch.complete_sbi(r.error, r.value);
            Next::Continue
        }
        SbiOutcome::StopSelf => {
            let stopped = {
                let mut inner = vm.inner.lock();
                inner
                    .hsm
                    .stop(slot.vcpu)
                    .and_then(|()| inner.hsm.stop_complete(slot.vcpu))
            };
            match stopped {
                Ok(()) => Next::Stopped,
                Err(_) => {
                    slot.arch
                        .complete_sbi(fv_guest_sbi::SbiError::Failed.code(), 0);
                    Next::Continue
                }
            }
        }
        SbiOutcome::Suspend(kind) => {
            // STARTED -> SUSPEND_PENDING -> SUSPENDED under one lock: the other
            // vCPUs see SUSPENDED until `refresh_suspended` resumes it.
            let parked = {
                let mut inner = vm.inner.lock();
                inner
                    .hsm
                    .suspend(slot.vcpu)
                    .and_then(|()| inner.hsm.suspend_complete(slot.vcpu))
            };
            match parked {
                Ok(()) => {
                    slot.suspend = Some(Suspended {
                        kind,
                        generation: slot.generation,
                    });
                    Next::Block
                }
                Err(_) => {
                    slot.arch
                        .complete_sbi(fv_guest_sbi::SbiError::Failed.code(), 0);
                    Next::Continue
                }
            }
        }
        SbiOutcome::SystemReset {
            kind: ResetKind::Shutdown,
            reason,
        } => {
            stop_vm(
                vm,
                if reason == ResetReason::SystemFailure {
                    StopReason::GuestFailure
                } else {
                    StopReason::PowerOff
                },
            );
            Next::Stopped
        }
        SbiOutcome::SystemReset { .. } => {
            reboot_vm(vm, Some(slot.vcpu));
            Next::Yield
        }
    }
}

/// A vCPU suspended through SBI: how it resumes, and the VM generation it
/// belongs to (a reboot or re-creation of the VM ends the suspend).
#[derive(Clone, Copy, Debug)]
pub struct Suspended {
    kind: SuspendType,
    generation: u32,
}

/// The wake-up of a suspended vCPU, from `sched::refresh` (its slot queued,
/// not running). Returns false if `slot` is not suspended: the caller goes on
/// as for any other vCPU. Otherwise the vCPU stays blocked (whatever else woke
/// it, e.g. the VM's resume from a pause) until an interrupt it enabled in
/// `vsie` is pending — timer (Sstc or emulated), IPI, external — as `wfi`
/// waits; then it goes SUSPENDED -> RESUME_PENDING -> STARTED, resumes as its
/// [`SuspendType`] says and is made runnable.
pub(crate) fn refresh_suspended(vm: &Vm, slot: &mut Slot, rq: &mut RunQueue) -> bool {
    let Some(s) = slot.suspend else {
        return false;
    };
    if s.generation != slot.generation {
        // Rebooted or re-created: the HSM states were reset with the VM.
        slot.suspend = None;
        return false;
    }
    let Some(sh) = vm.vcpus.get(slot.vcpu) else {
        return false;
    };
    // An IPI sent to it while suspended (the run loop does this for a running vCPU).
    let irq = sh.pending_irq.swap(0, Ordering::AcqRel);
    if irq & (1 << VirtualInterrupt::Software.hvip_bit()) != 0 {
        slot.arch.set_interrupt(VirtualInterrupt::Software, true);
        sh.irqs.record(IrqKind::Software);
    }
    if !slot.arch.interrupt_pending() {
        let _ = rq.block(slot.key);
        return true;
    }
    let resumed = {
        let mut inner = vm.inner.lock();
        inner
            .hsm
            .resume(slot.vcpu)
            .and_then(|()| inner.hsm.resume_complete(slot.vcpu))
    };
    slot.suspend = None;
    if resumed.is_err() {
        // Not SUSPENDED any more (a reboot is under way): nothing to resume.
        return false;
    }
    match s.kind {
        // `hart_suspend` returns SBI_SUCCESS, after the ecall.
        SuspendType::Retentive => slot.arch.complete_sbi(0, 0),
        SuspendType::NonRetentive {
            resume_addr,
            opaque,
        } => slot.arch.resume_non_retentive(fv_vm::VcpuBoot {
            pc: resume_addr,
            a0: slot.vcpu as u64,
            a1: opaque,
        }),
    }
    let _ = rq.wake(slot.key);
    true
}

/// The SBI implementation's view of the calling vCPU and its VM.
struct Env<'a> {
    vm: &'a Vm,
    /// Remote fences requested by this call, waited for in
    /// `remote_fences_issued`.
    fenced: Vec<(usize, u32)>,
    vcpu: usize,
    arch: &'a mut RiscvVcpu,
    timer: &'a mut Option<u64>,
    pmu: &'a mut fv_guest_sbi::VcpuPmu,
}

impl SbiEnv for Env<'_> {
    fn vcpu_count(&self) -> usize {
        self.vm.vcpus.len()
    }

    fn current_vcpu(&self) -> usize {
        self.vcpu
    }

    fn hart_state(&self, vcpu: usize) -> HartState {
        self.vm
            .inner
            .lock()
            .hsm
            .get(vcpu)
            .unwrap_or(HartState::Stopped)
    }

    fn start_vcpu(
        &mut self,
        vcpu: usize,
        start_addr: GuestPhysAddr,
        opaque: u64,
    ) -> Result<(), HsmError> {
        self.vm.inner.lock().hsm.start(vcpu)?;
        let sh = &self.vm.vcpus[vcpu];
        // A started hart begins clean: IPIs sent to it while it was STOPPED
        // (`send_ipi` with hart_mask_base -1 reaches every hart) are dropped.
        sh.pending_irq.store(0, Ordering::Release);
        *sh.start.lock() = Some(fv_vm::VcpuBoot {
            pc: start_addr,
            a0: vcpu as u64,
            a1: opaque,
        });
        kick(sh.cpu.load(Ordering::Acquire));
        Ok(())
    }

    fn set_timer(&mut self, stime_value: u64) {
        let host_deadline = self.arch.set_timer(stime_value);
        *self.timer = if stime_value == u64::MAX {
            None
        } else {
            host_deadline
        };
    }

    fn send_ipi(&mut self, vcpu: usize) {
        let sh = &self.vm.vcpus[vcpu];
        sh.pending_irq
            .fetch_or(1 << VirtualInterrupt::Software.hvip_bit(), Ordering::AcqRel);
        kick(sh.cpu.load(Ordering::Acquire));
    }

    fn remote_fence(&mut self, vcpu: usize, fence: Fence) {
        let bit = match fence {
            Fence::I => FENCE_I,
            _ => FENCE_VVMA,
        };
        if let Some(sh) = self.vm.vcpus.get(vcpu) {
            sh.fences.request(bit);
            kick(sh.cpu.load(Ordering::Acquire));
            self.fenced.push((vcpu, bit));
        }
    }

    fn remote_fences_issued(&mut self) {
        // Every target has fenced, or is out of the guest and fences before
        // it enters again: SBI RFENCE returns only then (Linux relies on it).
        for (vcpu, bit) in core::mem::take(&mut self.fenced) {
            crate::sched::wait_fenced(self.vm, vcpu, bit);
        }
    }

    fn is_guest_ram(&self, gpa: GuestPhysAddr, len: u64) -> bool {
        self.vm.ram.contains_span(gpa, len)
    }

    fn console_write(&mut self, gpa: GuestPhysAddr, len: u64) -> Result<u64, ConsoleError> {
        let mut buf = [0u8; fv_guest_sbi::DBCN_MAX_CHUNK as usize];
        let n = (len as usize).min(buf.len());
        {
            let mut inner = self.vm.inner.lock();
            let mut memory = crate::vm::GStageMemory {
                memory: &mut inner.memory,
                ram: self.vm.ram,
            };
            memory
                .read(gpa, &mut buf[..n])
                .map_err(|_| ConsoleError::Denied)?;
        }
        let history = &mut self.vm.inner.lock().history;
        crate::vconsole::console_bytes(self.vm, history, &buf[..n]);
        Ok(n as u64)
    }

    fn console_read(&mut self, _gpa: GuestPhysAddr, _len: u64) -> Result<u64, ConsoleError> {
        Ok(0) // Console input arrives with the virtual UART.
    }

    fn console_putchar(&mut self, byte: u8) -> Result<(), ConsoleError> {
        let history = &mut self.vm.inner.lock().history;
        crate::vconsole::console_bytes(self.vm, history, &[byte]);
        Ok(())
    }

    fn console_getchar(&mut self) -> Option<u8> {
        None
    }

    fn fwft_get(&self, feature: FwftFeature) -> Option<u64> {
        match feature {
            // hedeleg always passes misaligned exceptions that reach the
            // hypervisor on to the guest.
            FwftFeature::MisalignedExcDeleg => Some(1),
            FwftFeature::PteAdHwUpdating => (host().features.fwft_henvcfg & ADUE != 0)
                .then(|| u64::from(self.arch.fwft_henvcfg() & ADUE != 0)),
            // Not virtualised: see fv_guest_sbi's "Knowingly absent".
            FwftFeature::LandingPad
            | FwftFeature::ShadowStack
            | FwftFeature::DoubleTrap
            | FwftFeature::PointerMaskingPmlen => None,
        }
    }

    fn fwft_locked(&self, feature: FwftFeature) -> bool {
        self.arch.fwft_locked() & 1u32.checked_shl(feature.id()).unwrap_or(0) != 0
    }

    fn fwft_set(
        &mut self,
        feature: FwftFeature,
        value: u64,
        lock: bool,
    ) -> Result<(), FwftSetError> {
        match feature {
            FwftFeature::MisalignedExcDeleg if value == 1 => {}
            // Passed through, never emulated: the spec's note allows a
            // hypervisor to deny changes to this delegation.
            FwftFeature::MisalignedExcDeleg => return Err(FwftSetError::Denied),
            FwftFeature::PteAdHwUpdating => self.arch.set_fwft_henvcfg(ADUE, value == 1),
            _ => return Err(FwftSetError::Denied),
        }
        if lock {
            self.arch.lock_fwft(feature.id());
        }
        Ok(())
    }

    fn impl_id(&self) -> u64 {
        SBI_IMPL_ID
    }

    fn impl_version(&self) -> u64 {
        0x0001_0000
    }

    fn mvendorid(&self) -> u64 {
        0
    }

    fn marchid(&self) -> u64 {
        0
    }

    fn mimpid(&self) -> u64 {
        0
    }

    fn pmu(&mut self) -> &mut fv_guest_sbi::VcpuPmu {
        self.pmu
    }

    fn pmu_raw(&self) -> fv_guest_sbi::PmuRaw {
        crate::pmu::raw(self.arch, &self.vm.vcpus[self.vcpu].fw_events)
    }

    fn count_fw_event(&mut self, vcpu: usize, event: fv_guest_sbi::FwEvent) {
        if let Some(v) = self.vm.vcpus.get(vcpu) {
            v.fw_events.count(event);
        }
    }
}
