//! A mock hypervisor for the command layer's tests.
#![allow(dead_code)]

use fv_mgmt::*;
use std::cell::Cell;

pub struct MockVm {
    pub name: String,
    pub state: VmState,
    pub memory: u64,
    pub resident: u64,
    pub harts: HartSet,
    pub weight: u32,
    pub vmid: Option<u16>,
    pub vcpus: Vec<VcpuStats>,
    pub console: Option<Ring>,
}

pub struct Mock {
    pub vms: Vec<MockVm>,
    pub focus: usize,
    pub host: HostStats,
    pub harts: Vec<HartStats>,
    pub log: Ring,
    /// Returned by the next lifecycle or console call instead of doing it.
    pub fail_next: Option<MgmtError>,
    /// Set while a callback runs: the command layer must not call back in.
    in_callback: Cell<bool>,
    /// Lifecycle and console calls made, as "op name".
    pub calls: Vec<String>,
}

fn vcpu(vcpu: u32, hart: Option<u32>, state: VcpuState, run: u64, migr: u64) -> VcpuStats {
    VcpuStats {
        vcpu,
        state,
        hart,
        pinned: false,
        run_ticks: run,
        migrations: migr,
        ..VcpuStats::default()
    }
}

pub const MIB: u64 = 1 << 20;

impl Mock {
    pub fn new() -> Self {
        let mut v0 = vcpu(0, Some(0), VcpuState::Running, 6_170_000, 1);
        v0.exits.add(ExitReason::Sbi, 300);
        v0.exits.add(ExitReason::Wfi, 20);
        v0.exits.add(ExitReason::MmioWrite, 5);
        v0.sbi.add(SbiExtension::Time, 290);
        v0.sbi.add(SbiExtension::Base, 10);
        v0.irqs.add(IrqKind::Timer, 40);
        v0.irqs.add(IrqKind::External, 5);
        let mut v1 = vcpu(1, Some(1), VcpuState::Blocked, 6_170_000, 2);
        v1.pinned = true;
        v1.exits.add(ExitReason::Sbi, 378);
        v1.exits.add(ExitReason::Wfi, 20);
        v1.sbi.add(SbiExtension::Time, 370);
        v1.sbi.add(SbiExtension::Hsm, 8);
        v1.irqs.add(IrqKind::Timer, 45);
        let mut t0 = vcpu(0, Some(0), VcpuState::Stopped, 1000, 0);
        t0.exits.add(ExitReason::Sbi, 7);
        t0.sbi.add(SbiExtension::Base, 4);
        t0.sbi.add(SbiExtension::Dbcn, 3);
        t0.exceptions_injected = 2;
        let mut linux_console = Ring::with_capacity(4096).unwrap();
        linux_console.push(b"Linux version 6.12\r\nWelcome\r\n/ # ");
        let mut log = Ring::with_capacity(4096).unwrap();
        log.push(b"ferrovisor: boot\nferrovisor: VM 'test' powered off\n");
        Mock {
            vms: vec![
                MockVm {
                    name: "linux0".into(),
                    state: VmState::Running,
                    memory: 256 * MIB,
                    resident: 12 * MIB,
                    harts: HartSet::from_bits(0b11),
                    weight: 1,
                    vmid: Some(1),
                    vcpus: vec![v0, v1],
                    console: Some(linux_console),
                },
                MockVm {
                    name: "test".into(),
                    state: VmState::Stopped(StopReason::PowerOff),
                    memory: 16 * MIB,
                    resident: 4 * MIB,
                    harts: HartSet::from_bits(0b1),
                    weight: 2,
                    vmid: Some(2),
                    vcpus: vec![t0],
                    console: Some(Ring::with_capacity(64).unwrap()),
                },
                MockVm {
                    name: "spare".into(),
                    state: VmState::Defined,
                    memory: 64 * MIB,
                    resident: 0,
                    harts: HartSet::EMPTY,
                    weight: 1,
                    vmid: None,
                    vcpus: vec![vcpu(0, None, VcpuState::Stopped, 0, 0)],
                    console: None,
                },
            ],
            focus: 0,
            host: HostStats {
                timebase_hz: 10_000_000,
                uptime_ticks: 123_456_789,
                memory_bytes: 512 * MIB,
                free_bytes: 200 * MIB,
                harts: 2,
            },
            harts: vec![
                HartStats {
                    hart: 0,
                    hartid: 0,
                    vcpus: 3,
                    run_ticks: 8_000_000,
                    idle_ticks: 2_000_000,
                },
                HartStats {
                    hart: 1,
                    hartid: 1,
                    vcpus: 1,
                    run_ticks: 6_000_000,
                    idle_ticks: 4_000_000,
                },
            ],
            log,
            fail_next: None,
            in_callback: Cell::new(false),
            calls: Vec::new(),
        }
    }

    pub fn empty() -> Self {
        let mut m = Mock::new();
        m.vms.clear();
        m
    }

    fn find(&self, name: &str) -> Result<usize, MgmtError> {
        self.vms
            .iter()
            .position(|v| v.name == name)
            .ok_or(MgmtError::UnknownVm)
    }

    fn enter(&self) {
        assert!(
            !self.in_callback.get(),
            "called back into Management from a callback"
        );
    }

    fn callback<R>(&self, f: impl FnOnce() -> R) -> R {
        self.enter();
        self.in_callback.set(true);
        let r = f();
        self.in_callback.set(false);
        r
    }

    fn summary(&self, i: usize) -> VmSummary<'_> {
        let v = &self.vms[i];
        VmSummary {
            index: i as u32,
            name: &v.name,
            state: v.state,
            vcpus: v.vcpus.len() as u32,
            memory_bytes: v.memory,
            resident_bytes: v.resident,
            harts: v.harts,
            weight: v.weight,
            vmid: v.vmid,
            console_focus: self.focus == i,
        }
    }

    fn lifecycle(&mut self, action: Action, name: &str) -> Result<(), MgmtError> {
        self.enter();
        self.calls.push(format!("{} {name}", action.verb()));
        let i = self.find(name)?;
        if let Some(e) = self.fail_next.take() {
            return Err(e);
        }
        let free = self.host.free_bytes;
        let vm = &mut self.vms[i];
        action.check(vm.state)?;
        match action {
            Action::Start => {
                if vm.state.holds_resources() {
                    self.host.free_bytes += vm.resident;
                    vm.resident = 0;
                }
                if vm.memory > self.host.free_bytes {
                    return Err(MgmtError::NoResources(Resource::Memory));
                }
                let _ = free;
                vm.resident = 2 * MIB;
                self.host.free_bytes -= vm.resident;
                vm.vmid = Some(9);
                vm.harts = HartSet::from_bits(1);
            }
            Action::Destroy => {
                self.host.free_bytes += vm.resident;
                vm.resident = 0;
                vm.vmid = None;
                vm.harts = HartSet::EMPTY;
            }
            _ => {}
        }
        vm.state = action.outcome();
        Ok(())
    }
}

impl Management for Mock {
    fn for_each_vm(&self, f: &mut dyn FnMut(&VmSummary<'_>)) {
        for i in 0..self.vms.len() {
            let s = self.summary(i);
            self.callback(|| f(&s));
        }
    }

    fn for_each_vcpu(&self, name: &str, f: &mut dyn FnMut(&VcpuStats)) -> Result<(), MgmtError> {
        self.enter();
        let i = self.find(name)?;
        for v in &self.vms[i].vcpus {
            self.callback(|| f(v));
        }
        Ok(())
    }

    fn host(&self) -> HostStats {
        self.enter();
        self.host
    }

    fn for_each_hart(&self, f: &mut dyn FnMut(&HartStats)) {
        for h in &self.harts {
            self.callback(|| f(h));
        }
    }

    fn with_hypervisor_log(&self, f: &mut dyn FnMut(RingView<'_>)) {
        self.callback(|| f(self.log.view()));
    }

    fn with_console_history(
        &self,
        name: &str,
        f: &mut dyn FnMut(RingView<'_>),
    ) -> Result<(), MgmtError> {
        self.enter();
        let i = self.find(name)?;
        match &self.vms[i].console {
            Some(r) => {
                self.callback(|| f(r.view()));
                Ok(())
            }
            None => Err(MgmtError::NoConsole),
        }
    }

    fn start(&mut self, name: &str) -> Result<(), MgmtError> {
        self.lifecycle(Action::Start, name)
    }
    fn pause(&mut self, name: &str) -> Result<(), MgmtError> {
        self.lifecycle(Action::Pause, name)
    }
    fn resume(&mut self, name: &str) -> Result<(), MgmtError> {
        self.lifecycle(Action::Resume, name)
    }
    fn stop(&mut self, name: &str) -> Result<(), MgmtError> {
        self.lifecycle(Action::Stop, name)
    }
    fn reboot(&mut self, name: &str) -> Result<(), MgmtError> {
        self.lifecycle(Action::Reboot, name)
    }
    fn destroy(&mut self, name: &str) -> Result<(), MgmtError> {
        self.lifecycle(Action::Destroy, name)
    }

    fn focus_console(&mut self, name: &str) -> Result<(), MgmtError> {
        self.enter();
        self.calls.push(format!("console {name}"));
        let i = self.find(name)?;
        if let Some(e) = self.fail_next.take() {
            return Err(e);
        }
        if self.vms[i].console.is_none() {
            return Err(MgmtError::NoConsole);
        }
        self.focus = i;
        Ok(())
    }
}

/// Human reply to `line`.
pub fn run(m: &mut Mock, line: &str) -> String {
    let mut s = String::new();
    fv_mgmt::execute_line(line.as_bytes(), m, &mut s).unwrap();
    s
}

/// Machine reply to `line`.
pub fn run_machine(m: &mut Mock, line: &str) -> String {
    let mut s = String::new();
    fv_mgmt::execute_line_machine(line.as_bytes(), m, &mut s).unwrap();
    s
}
