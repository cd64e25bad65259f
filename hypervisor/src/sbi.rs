//! The hypervisor's side of the SBI its guests see: [`Env`], the
//! [`SbiEnv`] `fv_guest_sbi` works through, and [`sbi_call`], which turns an
//! [`SbiOutcome`] into what happens to the calling vCPU.

use crate::sched::{console_bytes, kick, reboot_vm, stop_vm, Next, Slot, SBI_IMPL_ID};
use crate::vm::{StopReason, Vm, FENCE_I, FENCE_VVMA};
use core::sync::atomic::Ordering;
use fv_addr::GuestPhysAddr;
use fv_arch_riscv64::vcpu::RiscvVcpu;
use fv_guest_sbi::{
    ConsoleError, Fence, HartState, HsmError, ResetKind, ResetReason, SbiCall, SbiEnv, SbiOutcome,
    SuspendType,
};
use fv_mgmt::SbiExtension;
use fv_vm::{GuestMemory, Vcpu, VirtualInterrupt};

pub(crate) fn sbi_call(vm: &Vm, slot: &mut Slot, call: SbiCall) -> Next {
    let outcome = {
        let mut env = Env {
            vm,
            vcpu: slot.vcpu,
            arch: &mut slot.arch,
            timer: &mut slot.timer,
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
            match kind {
                SuspendType::Retentive => slot.arch.complete_sbi(0, 0),
                SuspendType::NonRetentive {
                    resume_addr,
                    opaque,
                } => slot.arch.reset(fv_vm::VcpuBoot {
                    pc: resume_addr,
                    a0: slot.vcpu as u64,
                    a1: opaque,
                }),
            }
            // The vCPU waits as in WFI; it is STARTED again by the time it can
            // observe its own state.
            let mut inner = vm.inner.lock();
            let _ = inner.hsm.suspend(slot.vcpu);
            let _ = inner.hsm.suspend_complete(slot.vcpu);
            let _ = inner.hsm.resume(slot.vcpu);
            let _ = inner.hsm.resume_complete(slot.vcpu);
            Next::Block
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

/// The SBI implementation's view of the calling vCPU and its VM.
struct Env<'a> {
    vm: &'a Vm,
    vcpu: usize,
    arch: &'a mut RiscvVcpu,
    timer: &'a mut Option<u64>,
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
        let sh = &self.vm.vcpus[vcpu];
        let bit = match fence {
            Fence::I => FENCE_I,
            _ => FENCE_VVMA,
        };
        sh.fence.fetch_or(bit, Ordering::AcqRel);
        kick(sh.cpu.load(Ordering::Acquire));
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
                inner: &mut inner,
                ram: self.vm.ram,
            };
            memory
                .read(gpa, &mut buf[..n])
                .map_err(|_| ConsoleError::Denied)?;
        }
        let mut inner = self.vm.inner.lock();
        let crate::vm::VmInner {
            history,
            line,
            line_since,
            ..
        } = &mut *inner;
        console_bytes(self.vm, history, line, line_since, &buf[..n]);
        Ok(n as u64)
    }

    fn console_read(&mut self, _gpa: GuestPhysAddr, _len: u64) -> Result<u64, ConsoleError> {
        Ok(0) // Console input arrives with the virtual UART.
    }

    fn console_putchar(&mut self, byte: u8) -> Result<(), ConsoleError> {
        let mut inner = self.vm.inner.lock();
        let crate::vm::VmInner {
            history,
            line,
            line_since,
            ..
        } = &mut *inner;
        console_bytes(self.vm, history, line, line_since, &[byte]);
        Ok(())
    }

    fn console_getchar(&mut self) -> Option<u8> {
        None
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
}
