//! The management shell on the hypervisor console and the hypervisor's side of
//! `fv_mgmt::Management`: what `vm list`, `vm info`, `stats`, `log`, `vm pause`
//! and friends see and do. The command language, the escape sequences and the
//! formatting are `fv_mgmt`'s; this module only answers from the live VMs,
//! for the shell and for the control channel (`crate::ctrl`).
//!
//! Console input goes through `fv_mgmt::ConsoleInput`: ordinary bytes go to the
//! VM that has the focus, `Ctrl-A c` enters and leaves the shell (prompt
//! `fv> `), `Ctrl-A n` / `Ctrl-A <digit>` move the focus, `Ctrl-A h` prints help,
//! `Ctrl-A x` stops every VM (and so the machine).

use crate::sched::{self, vms};
use crate::vm::{StopReason, Vm};
use crate::{console, log};
use core::fmt;
use core::sync::atomic::{AtomicUsize, Ordering};
use fv_arch_riscv64::csr;
use fv_mgmt::{
    Action, ConsoleInput, Edit, HartSet, HartStats, HostStats, Input, LineEditor, Management,
    MgmtError, Ring, RingView, VcpuState, VcpuStats, VmSelect, VmState, VmSummary,
};
use fv_vm::RunState;
use spin::Mutex;

/// Bytes of hypervisor log kept for `log`.
pub const LOG_BYTES: usize = 16 * 1024;

/// The hypervisor's log ring (every `log!` line).
pub static LOG: Mutex<Ring<[u8; LOG_BYTES]>> = Mutex::new(Ring::new([0; LOG_BYTES]));

/// The VM whose console device (UART or virtio-console) gets console input.
pub static FOCUS: AtomicUsize = AtomicUsize::new(0);

struct Shell {
    input: ConsoleInput,
    editor: LineEditor,
}

static SHELL: Mutex<Shell> = Mutex::new(Shell {
    input: ConsoleInput::new(),
    editor: LineEditor::new(),
});

/// Appends a formatted line to the log ring.
pub fn log_to_ring(args: fmt::Arguments<'_>) {
    struct W<'a>(&'a mut Ring<[u8; LOG_BYTES]>);
    impl fmt::Write for W<'_> {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            self.0.push(s.as_bytes());
            Ok(())
        }
    }
    let mut ring = LOG.lock();
    let _ = fmt::Write::write_fmt(&mut W(&mut ring), args);
}

/// Shell output: straight to the console, never prefixed.
struct Out;

impl fmt::Write for Out {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        console::write_fmt(format_args!("{s}"));
        Ok(())
    }
}

/// One byte typed on the machine's console (called on the boot hart).
pub fn input_byte(b: u8) {
    let mut shell = SHELL.lock();
    let Some(event) = shell.input.feed(b) else {
        return;
    };
    match event {
        Input::Guest(b) => sched::queue_input(FOCUS.load(Ordering::Acquire), b),
        Input::EnterShell => {
            shell.editor.clear();
            console::write_fmt(format_args!(
                "ferrovisor shell: `help` lists commands, Ctrl-A c leaves\nfv> "
            ));
        }
        Input::LeaveShell => console::write_fmt(format_args!("(left the shell)\n")),
        Input::SwitchVm(sel) => focus(sel),
        Input::Help => console::write_fmt(format_args!("{}\n", fv_mgmt::ESCAPE_HELP)),
        Input::UnknownEscape(b'x') => {
            // As QEMU's Ctrl-A x: end everything (the machine powers off once
            // the last VM has stopped).
            log!("Ctrl-A x: stopping every VM");
            drop(shell);
            for vm in vms() {
                if !vm.is_stopped() {
                    sched::stop_vm(vm, StopReason::Operator);
                }
            }
        }
        Input::UnknownEscape(_) => {}
        Input::Shell(b) => {
            let mut line = [0u8; fv_mgmt::MAX_LINE_LEN];
            let mut len = None;
            match shell.editor.feed(b) {
                Edit::Echo(c) => console::write_fmt(format_args!("{}", c as char)),
                Edit::Erase(n) => {
                    for _ in 0..n {
                        console::write_fmt(format_args!("\u{8} \u{8}"));
                    }
                }
                Edit::Bell => console::write_fmt(format_args!("\u{7}")),
                Edit::Line(l) => {
                    let n = l.len().min(line.len());
                    line[..n].copy_from_slice(&l[..n]);
                    len = Some(n);
                }
                Edit::TooLong => console::write_fmt(format_args!("\nerror: line too long\nfv> ")),
                Edit::Cancel => console::write_fmt(format_args!("\nfv> ")),
                Edit::None => {}
            }
            drop(shell);
            if let Some(n) = len {
                console::write_fmt(format_args!("\n"));
                let _ = fv_mgmt::execute_line(&line[..n], &mut Hypervisor, &mut Out);
                console::write_fmt(format_args!("fv> "));
            }
        }
    }
}

fn focus(sel: VmSelect) {
    let all = vms();
    if all.is_empty() {
        return;
    }
    let target = match sel {
        VmSelect::Index(i) => Some(usize::from(i)).filter(|&i| i < all.len()),
        VmSelect::Next => {
            let start = FOCUS.load(Ordering::Acquire);
            (1..=all.len())
                .map(|k| (start + k) % all.len())
                .find(|&i| !all[i].is_stopped())
        }
    };
    if let Some(i) = target {
        FOCUS.store(i, Ordering::Release);
        log!("console input goes to VM '{}'", all[i].name);
    }
}

fn find(name: &str) -> Result<(usize, &'static Vm), MgmtError> {
    vms()
        .iter()
        .enumerate()
        .find(|(_, v)| v.name == name)
        .ok_or(MgmtError::UnknownVm)
}

/// The VM's state as the management layer shows it.
pub fn vm_state(vm: &Vm) -> VmState {
    match vm.state.get() {
        RunState::Running => VmState::Running,
        RunState::Paused => VmState::Paused,
        RunState::Rebooting => VmState::Rebooting,
        RunState::Destroyed => VmState::Destroyed,
        RunState::Stopped => VmState::Stopped(match vm.inner.lock().stop_reason {
            Some(StopReason::PowerOff) | None => fv_mgmt::StopReason::PowerOff,
            Some(StopReason::GuestFailure) => fv_mgmt::StopReason::GuestFailure,
            Some(StopReason::Fault) => fv_mgmt::StopReason::Fault,
            Some(StopReason::Operator) => fv_mgmt::StopReason::Operator,
        }),
    }
}

/// The error for a transition the VM's state `_seen` did not allow (the state
/// may have moved on since: report the current one).
fn wrong_state(vm: &Vm, _seen: RunState) -> MgmtError {
    MgmtError::WrongState {
        current: vm_state(vm),
    }
}

/// Runs one command line from the control channel; the reply in the machine
/// line protocol (`fv_mgmt::machine`).
pub fn execute_machine_line(line: &[u8], out: &mut alloc::string::String) {
    let _ = fv_mgmt::execute_line_machine(trim_eol(line), &mut Hypervisor, out);
}

/// Runs one command line from the control channel; the reply as the shell
/// prints it.
pub fn execute_human_line(line: &[u8], out: &mut alloc::string::String) {
    let _ = fv_mgmt::execute_line(trim_eol(line), &mut Hypervisor, out);
}

fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The hypervisor as the management layer sees it.
struct Hypervisor;

impl Management for Hypervisor {
    fn for_each_vm(&self, f: &mut dyn FnMut(&VmSummary<'_>)) {
        let focus = FOCUS.load(Ordering::Acquire);
        for (i, vm) in vms().iter().enumerate() {
            let mut harts = HartSet::default();
            for v in &vm.vcpus {
                harts.insert(v.cpu.load(Ordering::Relaxed) as u32);
            }
            let resident = vm.inner.lock().resident_bytes();
            f(&VmSummary {
                index: i as u32,
                name: &vm.name,
                state: vm_state(vm),
                vcpus: vm.vcpus.len() as u32,
                memory_bytes: vm.ram.size,
                resident_bytes: resident,
                harts,
                weight: vm.spec.sched.weight,
                vmid: (sched::host().features.vmid_bits != 0).then_some(vm.vmid),
                console_focus: i == focus,
            });
        }
    }

    fn for_each_vcpu(&self, name: &str, f: &mut dyn FnMut(&VcpuStats)) -> Result<(), MgmtError> {
        let (_, vm) = find(name)?;
        let stopped = vm.is_stopped();
        for (j, sh) in vm.vcpus.iter().enumerate() {
            let hart = sh.cpu.load(Ordering::Relaxed);
            let state = if stopped {
                VcpuState::Stopped
            } else if sh.running.load(Ordering::Relaxed) {
                VcpuState::Running
            } else {
                sched::vcpu_state(hart, vm.id, j)
            };
            f(&VcpuStats {
                vcpu: j as u32,
                state,
                hart: Some(hart as u32),
                pinned: vm.spec.sched.pin.is_some(),
                run_ticks: sh.run_ticks.load(Ordering::Relaxed),
                migrations: sh.migrations.load(Ordering::Relaxed),
                exits: sh.exits.snapshot(),
                sbi: sh.sbi.snapshot(),
                irqs: sh.irqs.snapshot(),
                exceptions_injected: sh.injected.load(Ordering::Relaxed),
            });
        }
        Ok(())
    }

    fn host(&self) -> HostStats {
        let (memory, free) = crate::mem::FRAMES.lock().as_ref().map_or((0, 0), |fa| {
            (
                fa.total_frames() as u64 * fv_addr::PAGE_SIZE,
                fa.free_frames() as u64 * fv_addr::PAGE_SIZE,
            )
        });
        HostStats {
            timebase_hz: sched::host().timebase,
            uptime_ticks: csr::time().saturating_sub(crate::BOOT_TIME.load(Ordering::Relaxed)),
            memory_bytes: memory,
            free_bytes: free,
            harts: sched::host().ncpus as u32,
        }
    }

    fn for_each_hart(&self, f: &mut dyn FnMut(&HartStats)) {
        let now = csr::time();
        let up = now.saturating_sub(crate::BOOT_TIME.load(Ordering::Relaxed));
        for cpu in 0..sched::host().ncpus {
            let (vcpus, idle) = sched::QUEUES[cpu].lock().as_ref().map_or((0, 0), |q| {
                (q.rq.len() as u32, q.rq.hart_stats(now).idle_ticks)
            });
            f(&HartStats {
                hart: cpu as u32,
                hartid: sched::host().hartids.get(cpu).copied().unwrap_or(0),
                vcpus,
                run_ticks: up.saturating_sub(idle),
                idle_ticks: idle,
            });
        }
    }

    fn with_hypervisor_log(&self, f: &mut dyn FnMut(RingView<'_>)) {
        f(LOG.lock().view());
    }

    fn with_console_history(
        &self,
        name: &str,
        f: &mut dyn FnMut(RingView<'_>),
    ) -> Result<(), MgmtError> {
        let (_, vm) = find(name)?;
        f(vm.inner.lock().history.view());
        Ok(())
    }

    fn start(&mut self, name: &str) -> Result<(), MgmtError> {
        let (_, vm) = find(name)?;
        Action::Start.check(vm_state(vm))?;
        if vm.state.get() == RunState::Stopped {
            sched::wait_vcpus_out(vm, None);
            vm.release();
            vm.state.destroyed().map_err(|s| wrong_state(vm, s))?;
        }
        if let Err(e) = vm.recreate() {
            log!("VM '{}' not started: {}", vm.name, e);
            return Err(MgmtError::NoResources(fv_mgmt::Resource::Memory));
        }
        sched::RUNNING_VMS.fetch_add(1, Ordering::AcqRel);
        vm.generation.fetch_add(1, Ordering::AcqRel);
        if let Err(s) = vm.state.start() {
            sched::RUNNING_VMS.fetch_sub(1, Ordering::AcqRel);
            return Err(wrong_state(vm, s));
        }
        sched::kick_vm(vm);
        log!("VM '{}' started", vm.name);
        Ok(())
    }

    fn pause(&mut self, name: &str) -> Result<(), MgmtError> {
        let (_, vm) = find(name)?;
        Action::Pause.check(vm_state(vm))?;
        vm.paused_at.store(csr::time(), Ordering::Release);
        vm.state.pause().map_err(|s| wrong_state(vm, s))?;
        sched::kick_vm(vm);
        log!("VM '{}' paused", vm.name);
        Ok(())
    }

    fn resume(&mut self, name: &str) -> Result<(), MgmtError> {
        let (_, vm) = find(name)?;
        Action::Resume.check(vm_state(vm))?;
        let paused_for = csr::time().saturating_sub(vm.paused_at.load(Ordering::Acquire));
        vm.paused_ticks.fetch_add(paused_for, Ordering::AcqRel);
        if let Err(s) = vm.state.resume() {
            vm.paused_ticks.fetch_sub(paused_for, Ordering::AcqRel);
            return Err(wrong_state(vm, s));
        }
        sched::kick_vm(vm);
        log!("VM '{}' resumed after {} ticks", vm.name, paused_for);
        Ok(())
    }

    fn stop(&mut self, name: &str) -> Result<(), MgmtError> {
        let (_, vm) = find(name)?;
        Action::Stop.check(vm_state(vm))?;
        sched::stop_vm(vm, StopReason::Operator);
        Ok(())
    }

    fn reboot(&mut self, name: &str) -> Result<(), MgmtError> {
        let (_, vm) = find(name)?;
        Action::Reboot.check(vm_state(vm))?;
        if vm.state.get() == RunState::Paused {
            self.resume(name)?;
        }
        if sched::reboot_vm(vm, None) {
            Ok(())
        } else {
            Err(MgmtError::WrongState {
                current: vm_state(vm),
            })
        }
    }

    fn destroy(&mut self, name: &str) -> Result<(), MgmtError> {
        let (_, vm) = find(name)?;
        Action::Destroy.check(vm_state(vm))?;
        if !vm.is_stopped() {
            sched::stop_vm(vm, StopReason::Operator);
        }
        sched::wait_vcpus_out(vm, None);
        let freed = vm.release();
        vm.state.destroyed().map_err(|s| wrong_state(vm, s))?;
        log!("VM '{}' destroyed: {} KiB freed", vm.name, freed >> 10);
        Ok(())
    }

    fn focus_console(&mut self, name: &str) -> Result<(), MgmtError> {
        let (i, vm) = find(name)?;
        if vm.inner.lock().uart.is_none() {
            return Err(MgmtError::NoConsole);
        }
        FOCUS.store(i, Ordering::Release);
        Ok(())
    }
}
