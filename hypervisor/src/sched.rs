//! Per-hart run loops: pick a runnable vCPU, run it for a time slice, and act
//! on each exit. vCPUs are placed on harts when their VM is created; harts talk
//! to each other only through the atomics in [`crate::vm::VcpuShared`] and IPIs.

use crate::boot::MAX_HARTS;
use crate::log;
use crate::vm::{StopReason, Vm, FENCE_I, FENCE_VVMA};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use fv_addr::GuestPhysAddr;
use fv_arch_riscv64::csr;
use fv_arch_riscv64::firmware::{self, ShutdownReason};
use fv_arch_riscv64::regs::{num, Irq};
use fv_arch_riscv64::vcpu::{HartCsrs, HartFeatures, RiscvVcpu};
use fv_devices::uart16550::Uart16550;
use fv_guest_sbi::SbiCall;
use fv_mgmt::{CounterKey, ExitReason, IrqKind};
use fv_sched::{RunQueue, State, VcpuKey};
use fv_vm::{
    Access, EpochFence, GuestException, HostInterrupt, RunState, Vcpu, VcpuExit, VirtualInterrupt,
};
use spin::{Mutex, Once};

/// Facts about the host every hart needs.
#[derive(Debug)]
pub struct Host {
    /// Per-hart features guests run with (the same on every hart).
    pub features: HartFeatures,
    /// Timer ticks per second.
    pub timebase: u64,
    /// Number of harts in use.
    pub ncpus: usize,
    /// Physical hart ID of each logical CPU.
    pub hartids: [u64; MAX_HARTS],
}

/// Host facts, set once by the boot hart.
pub static HOST: Once<Host> = Once::new();
/// Every VM, created once at boot.
pub static VMS: Once<Vec<Vm>> = Once::new();
/// A hart's run queue: the scheduling policy's view and the vCPUs' state.
pub struct HartQueue {
    /// Who runs next and for how long (`fv_sched`).
    pub rq: RunQueue,
    /// The vCPUs queued here that are not running right now.
    pub slots: Vec<Slot>,
}

/// Each hart's run queue (set up by the boot hart before the harts start).
pub static QUEUES: [Mutex<Option<HartQueue>>; MAX_HARTS] = [const { Mutex::new(None) }; MAX_HARTS];
/// VMs not yet stopped.
pub static RUNNING_VMS: AtomicUsize = AtomicUsize::new(0);
/// Whether any VM ended uncleanly.
static ANY_FAILURE: AtomicBool = AtomicBool::new(false);
/// The host timer deadline each hart last armed.
static ARMED: [AtomicU64; MAX_HARTS] = [const { AtomicU64::new(u64::MAX) }; MAX_HARTS];

/// G-stage fence requests to every hart ([`fence_gstage_all_harts`]); a
/// hart takes part once it has entered its run loop.
static GFENCE: EpochFence<MAX_HARTS> = EpochFence::new();

/// Whether any vCPU has entered a guest yet.
static FIRST_ENTRY: AtomicBool = AtomicBool::new(false);
/// Exits handled, all harts.
pub static EXITS: AtomicU64 = AtomicU64::new(0);

/// Guest SBI implementation ID. Not a registered ID: chosen outside the
/// registered range so no guest mistakes Ferrovisor for another implementation.
pub const SBI_IMPL_ID: u64 = 0x4656_5200; // "FVR\0"

/// A vCPU's place in a run queue.
pub struct Slot {
    /// Its key in the scheduler.
    pub key: VcpuKey,
    /// VM index.
    pub vm: usize,
    /// vCPU index within the VM (= the hart ID the guest sees).
    pub vcpu: usize,
    /// The arch state.
    pub arch: RiscvVcpu,
    /// Emulated guest timer deadline in host `time` (no Sstc).
    pub timer: Option<u64>,
    /// VM generation this vCPU's state belongs to.
    pub generation: u32,
    /// The VM's pause total this vCPU's clock has been adjusted for.
    pub paused_seen: u64,
    /// Blocked because its VM is paused (woken on resume).
    pub parked: bool,
    /// Fence its VMID's G-stage translations before it next runs.
    pub gfence: bool,
    /// Suspended through SBI (HSM `hart_suspend`, SUSP `system_suspend`):
    /// how it resumes once an interrupt it enabled is pending.
    pub suspend: Option<crate::sbi::Suspended>,
    /// Its SBI PMU counters (reset with the vCPU).
    pub pmu: fv_guest_sbi::VcpuPmu,
}

/// What the run loop does after an exit.
pub(crate) enum Next {
    Continue,
    Block,
    Stopped,
    Yield,
}

/// Host facts (set before any hart runs guests).
pub fn host() -> &'static Host {
    HOST.get().expect("HOST is set before any hart runs guests")
}

/// Every VM.
pub fn vms() -> &'static [Vm] {
    VMS.get().map(|v| v.as_slice()).unwrap_or(&[])
}

/// Arms the host timer for `deadline` (host `time`).
fn arm_timer(deadline: u64) {
    // Re-arming with the value already armed is skipped: every write is work
    // for the machine (an SBI call without Sstc, a timer update under QEMU).
    let cpu = crate::boot::cpu_index();
    if let Some(armed) = ARMED.get(cpu) {
        if armed.swap(deadline, Ordering::Relaxed) == deadline {
            return;
        }
    }
    if host().features.sstc {
        // SAFETY: stimecmp only schedules the hypervisor's own timer interrupt.
        unsafe { csr::write::<{ num::STIMECMP }>(deadline) };
    } else {
        firmware::set_timer(deadline);
    }
}

fn clear_ipi() {
    // Only when one is pending: under emulation a write to `sip` costs far more
    // than a read (QEMU re-evaluates the hart's interrupts under its big lock).
    if csr::read::<{ num::SIP }>() & Irq::SSI.bits() != 0 {
        // SAFETY: clearing SSIP acknowledges a host IPI; nothing else depends on it.
        unsafe { csr::clear::<{ num::SIP }>(Irq::SSI.bits()) };
    }
}

/// Interrupts a hart so it re-reads the shared state of its vCPUs.
pub fn kick(cpu: usize) {
    if cpu == crate::boot::cpu_index() {
        return;
    }
    if let Some(id) = host().hartids.get(cpu) {
        firmware::send_ipi(*id as usize);
    }
}

/// Kicks every hart that runs one of `vm`'s vCPUs.
pub fn kick_vm(vm: &Vm) {
    let mut seen = [false; MAX_HARTS];
    for v in &vm.vcpus {
        let cpu = v.cpu.load(Ordering::Acquire);
        if let Some(s) = seen.get_mut(cpu) {
            if !*s {
                *s = true;
                kick(cpu);
            }
        }
    }
}

/// The run loop of logical CPU `cpu`. Never returns: the boot hart shuts the
/// machine down when every VM has stopped; the others park.
///
/// The policy (who runs next, for how long, who moves) is `fv_sched`'s; this
/// loop is the mechanism. A vCPU's slot is taken out of the queue while it
/// runs, so the queue lock is never held while a guest executes and an idle
/// hart can take waiting vCPUs from a busy one.
pub fn run_hart(cpu: usize) -> ! {
    // Host interrupts we take while a guest runs: IPIs and the timer.
    // SAFETY: enables interrupt sources; sstatus.SIE stays 0 so the hypervisor
    // itself is never interrupted (they only cause exits from the guest).
    unsafe { csr::set::<{ num::SIE }>((Irq::SSI | Irq::STI).bits()) };
    let mut last = HartHistory::new(vms().len());
    let queue = &QUEUES[cpu];
    // The boot hart evens out the harts' loads every `balance_period` ticks.
    let balance_period = (host().timebase / BALANCE_HZ).max(1);
    let mut next_balance = 0u64;
    let poll_period = (host().timebase / 1000).max(1);
    let mut next_poll = 0u64;
    GFENCE.set_online(cpu);
    loop {
        clear_ipi();
        gstage_fence_check(cpu);
        if RUNNING_VMS.load(Ordering::Acquire) == 0 {
            finish(cpu);
        }
        if cpu == 0 {
            // The console is polled at most every millisecond: the poll reads
            // the machine's UART, which is slow under emulation and would
            // otherwise lengthen every vCPU switch on this hart.
            let now = csr::time();
            if now >= next_poll {
                next_poll = now.saturating_add(poll_period);
                crate::vconsole::service_console();
                crate::ctrl::poll();
                service_virtio();
                crate::net::service();
                crate::vconsole::flush_stale_lines(now);
            }
            if now >= next_balance {
                next_balance = now.saturating_add(balance_period);
                balance_harts();
            }
        }
        let now = csr::time();
        let picked = {
            let mut guard = queue.lock();
            let Some(hq) = guard.as_mut() else {
                drop(guard);
                idle(cpu, now, None);
                continue;
            };
            for slot in hq.slots.iter_mut() {
                refresh(slot, now, &mut hq.rq);
            }
            match hq.rq.pick(now) {
                Some(p) => hq.slots.iter().position(|s| s.key == p.key).map(|i| {
                    let slot = hq.slots.swap_remove(i);
                    (slot, p.slice, earliest_wake(&hq.slots, &hq.rq, now))
                }),
                None => {
                    let wake = earliest_wake(&hq.slots, &hq.rq, now);
                    drop(guard);
                    if !steal(cpu) {
                        idle(cpu, now, wake);
                    }
                    continue;
                }
            }
        };
        let Some((mut slot, slice, wake)) = picked else {
            continue;
        };
        let started = csr::time();
        let end = run_slot(&mut slot, &mut last, started.saturating_add(slice), wake);
        let ran = csr::time().saturating_sub(started);
        let mut guard = queue.lock();
        if let Some(hq) = guard.as_mut() {
            match end {
                Next::Block => {
                    let _ = hq.rq.block(slot.key);
                }
                Next::Stopped => {
                    let _ = hq.rq.stop(slot.key);
                }
                Next::Continue | Next::Yield => {}
            }
            let _ = hq.rq.account(slot.key, ran);
            if let Some(sh) = vms().get(slot.vm).and_then(|v| v.vcpus.get(slot.vcpu)) {
                sh.run_ticks.fetch_add(ran, Ordering::Relaxed);
            }
            hq.slots.push(slot);
        }
    }
}

/// When the first blocked vCPU of this queue has its timer due (emulated or
/// Sstc), so the hart can wake it then rather than at the end of a slice.
/// Deadlines already past are left out: such a vCPU has its interrupt masked
/// (else `refresh` would have woken it) and must not cut every slice short.
fn earliest_wake(slots: &[Slot], rq: &RunQueue, now: u64) -> Option<u64> {
    slots
        .iter()
        .filter(|s| rq.state(s.key) == Ok(State::Blocked))
        .filter_map(|s| match (s.timer, s.arch.hw_timer_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
        .filter(|&d| d > now)
        .min()
}

/// Sleeps until an interrupt, at the latest at `wake` (a blocked vCPU's timer).
fn idle(cpu: usize, now: u64, wake: Option<u64>) {
    // The boot hart polls console input: it never sleeps long, and while
    // console output waits for the UART or the network needs polling
    // (`net::poll_soon`), 1 ms at most.
    let longest = if cpu == 0 && (crate::console::output_pending() || crate::net::poll_soon(now)) {
        host().timebase / 1000
    } else if cpu == 0 {
        host().timebase / 50
    } else {
        host().timebase
    };
    arm_timer(wake.unwrap_or(u64::MAX).min(now.saturating_add(longest)));
    csr::wfi();
}

/// An idle hart takes one waiting vCPU from the busiest other hart (never a
/// pinned or running one). Returns whether it got one.
fn steal(cpu: usize) -> bool {
    let ncpus = host().ncpus;
    let mut busiest: Option<(usize, u64)> = None;
    for other in (0..ncpus).filter(|&o| o != cpu) {
        let load = QUEUES[other].lock().as_ref().map_or(0, |q| {
            if q.rq.nr_runnable() > usize::from(q.rq.running().is_some()) {
                q.rq.load()
            } else {
                0
            }
        });
        if load > 0 && busiest.is_none_or(|(_, l)| load > l) {
            busiest = Some((other, load));
        }
    }
    let Some((victim, _)) = busiest else {
        return false;
    };
    // Both locks, in hart order (every hart does the same: no deadlock).
    let (lo, hi) = if cpu < victim {
        (cpu, victim)
    } else {
        (victim, cpu)
    };
    let mut first = QUEUES[lo].lock();
    let mut second = QUEUES[hi].lock();
    let (mine, theirs) = if cpu < victim {
        (&mut *first, &mut *second)
    } else {
        (&mut *second, &mut *first)
    };
    let (Some(mine), Some(theirs)) = (mine.as_mut(), theirs.as_mut()) else {
        return false;
    };
    let Some(m) = mine.rq.pull_from(&mut theirs.rq) else {
        return false;
    };
    let Some(i) = theirs.slots.iter().position(|s| s.key == m.key) else {
        // The policy moved a key whose slot is not there: put it back.
        let _ = mine.rq.migrate_to(&mut theirs.rq, m.key);
        return false;
    };
    let slot = theirs.slots.swap_remove(i);
    moved(&slot, cpu);
    mine.slots.push(slot);
    true
}

/// Records that `slot`'s vCPU now lives on hart `to` (its queue lock held):
/// later IPIs, kicks and remote fences go there, and it fences its VS-stage
/// translations and instruction fetch on `to` before it next enters the
/// guest. `run_slot` flushes VS-stage entries only when the hart switches
/// vCPUs, but `to` may still have this very vCPU as the last one it ran (it
/// left and came back), with translations and instructions the guest has
/// since changed and fenced only on the hart it ran on in between.
fn moved(slot: &Slot, to: usize) {
    if let Some(sh) = vms().get(slot.vm).and_then(|vm| vm.vcpus.get(slot.vcpu)) {
        sh.fences.request(FENCE_I | FENCE_VVMA);
        sh.cpu.store(to, Ordering::Release);
        sh.migrations.fetch_add(1, Ordering::Relaxed);
    }
}

/// How many times a second the boot hart balances the harts' loads.
const BALANCE_HZ: u64 = 10;

/// Most moves of a vCPU whose slot is missing that one balancing can undo.
const MAX_ORPHANS: usize = 8;

/// Periodic load balancing (boot hart, `BALANCE_HZ` times a second): evens out
/// the weighted loads of every hart's queue with `fv_sched::balance`, which
/// moves only waiting, unpinned vCPUs and only when that strictly reduces the
/// imbalance. Unlike `steal`, this also helps when no hart is idle (3 vCPUs on
/// one hart, 1 on the other). Each moved vCPU's slot follows it; then both
/// harts are kicked (the destination may be asleep in WFI).
fn balance_harts() {
    let ncpus = host().ncpus.min(MAX_HARTS);
    if ncpus < 2 {
        return;
    }
    let mut kicks = [false; MAX_HARTS];
    {
        // Every queue's lock, in hart order (as `steal` takes its two).
        let mut guards: [Option<spin::MutexGuard<'static, Option<HartQueue>>>; MAX_HARTS] =
            [const { None }; MAX_HARTS];
        for (g, q) in guards.iter_mut().zip(QUEUES.iter()).take(ncpus) {
            *g = Some(q.lock());
        }
        // Each queue split into its policy half (what `balance` sees, index =
        // hart) and its slots.
        let mut rqs: Vec<&mut RunQueue> = Vec::new();
        if rqs.try_reserve_exact(ncpus).is_err() {
            return;
        }
        let mut slots: [Option<&mut Vec<Slot>>; MAX_HARTS] = [const { None }; MAX_HARTS];
        for (hart, g) in guards.iter_mut().enumerate().take(ncpus) {
            let Some(HartQueue { rq, slots: s }) = g.as_deref_mut().and_then(Option::as_mut) else {
                return;
            };
            if rq.hart() != hart {
                return;
            }
            rqs.push(rq);
            if let Some(e) = slots.get_mut(hart) {
                *e = Some(s);
            }
        }
        let mut orphans = [None; MAX_ORPHANS];
        fv_sched::balance(&mut rqs, |m| {
            if move_slot(&mut slots, m) {
                for h in [m.from, m.to] {
                    if let Some(k) = kicks.get_mut(h) {
                        *k = true;
                    }
                }
            } else if let Some(o) = orphans.iter_mut().find(|o| o.is_none()) {
                *o = Some(m);
            } else {
                log!("balance: lost track of vCPU key {:#x}", m.key.0);
            }
        });
        // A key whose slot was not where the policy took it from (it would have
        // to be running, which the policy never moves) goes back there, as in
        // `steal`. Only its first move counts: later ones started where the
        // slot never was.
        for (i, m) in orphans.iter().enumerate() {
            let Some(m) = *m else { break };
            if orphans[..i].iter().flatten().any(|p| p.key == m.key) {
                continue;
            }
            let Some(at) = rqs.iter().position(|q| q.contains(m.key)) else {
                continue;
            };
            if let Some((cur, home)) = pair_mut(&mut rqs, at, m.from) {
                let _ = cur.migrate_to(home, m.key);
            }
        }
    }
    for (cpu, k) in kicks.iter().enumerate() {
        if *k {
            kick(cpu);
        }
    }
}

/// Moves the slot of the vCPU `m` names from hart `m.from`'s slots to hart
/// `m.to`'s. Returns false (and moves nothing) if the slot is not there or the
/// destination cannot grow.
fn move_slot(slots: &mut [Option<&mut Vec<Slot>>], m: fv_sched::Migration) -> bool {
    let Some((Some(from), Some(to))) = pair_mut(slots, m.from, m.to) else {
        return false;
    };
    let Some(i) = from.iter().position(|s| s.key == m.key) else {
        return false;
    };
    if to.try_reserve(1).is_err() {
        return false;
    }
    let slot = from.swap_remove(i);
    moved(&slot, m.to);
    to.push(slot);
    true
}

/// Two distinct elements of a slice, mutably (`None` if `a == b` or either is
/// out of bounds).
fn pair_mut<T>(s: &mut [T], a: usize, b: usize) -> Option<(&mut T, &mut T)> {
    if a == b {
        return None;
    }
    let (lo, hi) = (a.min(b), a.max(b));
    let (left, right) = s.split_at_mut_checked(hi)?;
    let x = left.get_mut(lo)?;
    let y = right.first_mut()?;
    Some(if a < b { (x, y) } else { (y, x) })
}

/// Brings a queued vCPU up to date with requests made while it was not running.
fn refresh(slot: &mut Slot, now: u64, rq: &mut RunQueue) {
    let Some(vm) = vms().get(slot.vm) else { return };
    let key = slot.key;
    if vm.is_stopped() {
        let _ = rq.stop(key);
        return;
    }
    if vm.state.get() == RunState::Paused {
        // Parked: not picked until the VM resumes (blocked, not stopped, so
        // its HSM state is untouched).
        if rq.block(key).is_ok() {
            slot.parked = true;
        }
        return;
    }
    // Guest time stands still while the VM is paused: shift the guest clock
    // and any emulated timer deadline by the time spent paused.
    let paused = vm.paused_ticks.load(Ordering::Acquire);
    if paused != slot.paused_seen {
        let shift = paused.wrapping_sub(slot.paused_seen);
        slot.paused_seen = paused;
        slot.arch.set_htimedelta(0u64.wrapping_sub(paused));
        slot.timer = slot.timer.map(|t| t.saturating_add(shift));
    }
    if slot.parked {
        slot.parked = false;
        let _ = rq.wake(key);
    }
    let generation = vm.generation.load(Ordering::Acquire);
    if generation != slot.generation {
        slot.generation = generation;
        slot.timer = None;
        // The VM may have been re-created with a new G-stage table under the
        // same VMID: switch to it and fence the VMID before running.
        // SAFETY: the VM's hgatp selects its own current table.
        unsafe { slot.arch.set_hgatp(vm.hgatp.load(Ordering::Acquire)) };
        slot.gfence = true;
        slot.paused_seen = vm.paused_ticks.load(Ordering::Acquire);
        slot.arch
            .set_htimedelta(0u64.wrapping_sub(slot.paused_seen));
        slot.pmu.reset();
        if slot.vcpu == 0 {
            slot.arch.reset(vm.boot_state());
            let _ = rq.start(key);
            let _ = rq.wake(key);
        } else {
            let _ = rq.stop(key);
        }
    }
    let sh = &vm.vcpus[slot.vcpu];
    if rq.state(key) == Ok(State::Stopped) {
        if let Some(boot) = sh.start.lock().take() {
            slot.arch.reset(boot);
            slot.pmu.reset();
            slot.timer = None;
            let _ = rq.start(key);
            let _ = vm.inner.lock().hsm.start_complete(slot.vcpu);
        }
    }
    if let Some(d) = slot.timer {
        if now >= d {
            slot.arch.set_interrupt(VirtualInterrupt::Timer, true);
            vm.vcpus[slot.vcpu].irqs.record(IrqKind::Timer);
            slot.timer = None;
        }
    }
    slot.arch
        .set_interrupt(VirtualInterrupt::External, sh.eip.load(Ordering::Acquire));
    if crate::sbi::refresh_suspended(vm, slot, rq) {
        return;
    }
    if rq.state(key) == Ok(State::Blocked)
        && (sh.pending_irq.load(Ordering::Acquire) != 0 || slot.arch.interrupt_pending())
    {
        let _ = rq.wake(key);
    }
}

/// What one hart ran, for the fences and CSR writes a vCPU switch needs.
struct HartHistory {
    /// The (VM, vCPU) that ran last.
    last: Option<(usize, usize)>,
    /// Per VM (its index), which of its vCPUs ran last on this hart: with
    /// VMIDs, the VS-stage TLB entries here tagged with that VM's VMID are
    /// that vCPU's, and only another vCPU of the same VM needs them dropped.
    by_vm: Vec<Option<usize>>,
    /// What the hart's non-per-vCPU CSRs hold.
    csrs: HartCsrs,
}

impl HartHistory {
    fn new(vms: usize) -> Self {
        HartHistory {
            last: None,
            by_vm: alloc::vec![None; vms],
            csrs: HartCsrs::default(),
        }
    }

    /// Whether `me` must drop the VS-stage entries on this hart before it
    /// runs: another vCPU ran since that may have left entries `me` must not
    /// use. With VMIDs (`vmids`), `hfence.vvma` and the entries are per VMID, so
    /// only another vCPU of the same VM counts; without, any other vCPU does.
    /// (A vCPU that moved harts and came back is fenced through its
    /// `VcpuFences` instead, see `moved`.)
    fn needs_vs_flush(&self, me: (usize, usize), vmids: bool) -> bool {
        if vmids {
            self.by_vm.get(me.0).is_none_or(|v| *v != Some(me.1))
        } else {
            self.last != Some(me)
        }
    }

    fn ran(&mut self, me: (usize, usize)) {
        self.last = Some(me);
        if let Some(v) = self.by_vm.get_mut(me.0) {
            *v = Some(me.1);
        }
    }
}

/// Runs one vCPU on this hart until its slice ends at `slice_end`, it blocks,
/// stops, or its VM changes state. Returns why it came back.
fn run_slot(slot: &mut Slot, last: &mut HartHistory, slice_end: u64, wake: Option<u64>) -> Next {
    // A waiting vCPU's timer ends the slice early: it is woken and the
    // scheduler (which credits waking vCPUs) decides who runs.
    let slice_end = wake.map_or(slice_end, |w| w.min(slice_end));
    let Some(vm) = vms().get(slot.vm) else {
        return Next::Stopped;
    };
    let loading_from = csr::time();
    match vm.load_pending_images() {
        Ok(0) => {}
        Ok(bytes) => log!(
            "VM '{}': {} KiB of images loaded in {} us",
            vm.name,
            bytes >> 10,
            crate::ticks_to_us(csr::time().saturating_sub(loading_from), host().timebase)
        ),
        Err(e) => {
            log!("VM '{}': cannot load its images: {}", vm.name, e);
            stop_vm(vm, StopReason::Fault);
            return Next::Stopped;
        }
    }
    let sh = &vm.vcpus[slot.vcpu];
    let me = (slot.vm, slot.vcpu);
    let vmids = host().features.vmid_bits != 0;
    let table_changed = core::mem::take(&mut slot.gfence);
    let flush_gstage = table_changed || (!vmids && last.last.map(|l| l.0) != Some(slot.vm));
    let flush_vs = table_changed || last.needs_vs_flush(me, vmids);
    // SeqCst: a stopper or rebooter changes the VM state and then reads
    // `running`; this side stores `running` and then reads the state (in the
    // loop below). Only sequential consistency keeps both from missing each
    // other (RISC-V may perform a load before an earlier store otherwise).
    sh.running.store(true, Ordering::SeqCst);
    slot.arch.load(&mut last.csrs, flush_vs, flush_gstage);
    last.ran(me);
    if !FIRST_ENTRY.swap(true, Ordering::AcqRel) {
        let ticks = csr::time().saturating_sub(crate::BOOT_TIME.load(Ordering::Relaxed));
        log!(
            "first guest entry {} ticks ({} us) after the hypervisor's first instruction",
            ticks,
            crate::ticks_to_us(ticks, host().timebase)
        );
    }
    let mut end = Next::Yield;
    loop {
        slot.arch
            .set_interrupt(VirtualInterrupt::External, sh.eip.load(Ordering::Acquire));
        let irq = sh.pending_irq.swap(0, Ordering::AcqRel);
        if irq & (1 << VirtualInterrupt::Software.hvip_bit()) != 0 {
            slot.arch.set_interrupt(VirtualInterrupt::Software, true);
            sh.irqs.record(IrqKind::Software);
        }
        // Entering: announce it and take the fence requests made so far
        // (`VcpuFences`): a request this misses sees the vCPU in the guest
        // and waits until it has left (`wait_fenced`).
        let fences = sh.fences.enter();
        gstage_fence_check(crate::boot::cpu_index());
        if fences & FENCE_I != 0 {
            // SAFETY: fence.i only synchronises instruction fetch.
            unsafe { core::arch::asm!("fence.i") };
        }
        if fences & FENCE_VVMA != 0 {
            csr::hfence_vvma_all();
        }
        if vm.state.get() != RunState::Running
            || vm.generation.load(Ordering::Acquire) != slot.generation
        {
            sh.fences.leave();
            break;
        }
        let now = csr::time();
        if let Some(d) = slot.timer {
            if now >= d {
                slot.arch.set_interrupt(VirtualInterrupt::Timer, true);
                slot.timer = None;
            }
        }
        // The slice always ends on time, even with nothing else queued: requests
        // that made another vCPU of this hart runnable are seen between slices.
        arm_timer(slot.timer.map_or(slice_end, |t| t.min(slice_end)));
        let exit = slot.arch.run();
        sh.fences.leave();
        EXITS.fetch_add(1, Ordering::Relaxed);
        sh.exits.record(exit_reason(&exit));
        match handle_exit(vm, slot, exit) {
            Next::Continue => {}
            other => {
                end = other;
                break;
            }
        }
        // Console input (and shell commands, which may wait for vCPUs to leave
        // the guest) is served at the top of the boot hart's loop, never with
        // a vCPU loaded: end the slice early when a key is waiting.
        if csr::time() >= slice_end
            || (crate::boot::cpu_index() == 0
                && matches!(exit, VcpuExit::HostInterrupt(_))
                && crate::console::input_waiting())
        {
            break;
        }
    }
    slot.arch.put(&mut last.csrs);
    sh.running.store(false, Ordering::SeqCst);
    end
}

/// The statistics bucket of an exit.
fn exit_reason(exit: &VcpuExit) -> ExitReason {
    match exit {
        VcpuExit::SbiCall { .. } => ExitReason::Sbi,
        VcpuExit::MmioRead { .. } => ExitReason::MmioRead,
        VcpuExit::MmioWrite { .. } => ExitReason::MmioWrite,
        VcpuExit::GuestPageFault { .. } => ExitReason::GuestPageFault,
        VcpuExit::Wfi => ExitReason::Wfi,
        VcpuExit::VirtualInstruction { .. } => ExitReason::VirtualInstruction,
        VcpuExit::HostInterrupt(HostInterrupt::Timer) => ExitReason::HostTimer,
        VcpuExit::HostInterrupt(HostInterrupt::Software) => ExitReason::HostIpi,
        VcpuExit::HostInterrupt(HostInterrupt::External) => ExitReason::HostExternal,
        VcpuExit::HostInterrupt(HostInterrupt::Other(_)) => ExitReason::HostOther,
        VcpuExit::Unhandled { .. } => ExitReason::Unhandled,
    }
}

fn handle_exit(vm: &Vm, slot: &mut Slot, exit: VcpuExit) -> Next {
    match exit {
        VcpuExit::HostInterrupt(HostInterrupt::Software) => {
            clear_ipi();
            Next::Continue
        }
        VcpuExit::HostInterrupt(_) => Next::Continue,
        VcpuExit::SbiCall { eid, fid, args } => {
            crate::sbi::sbi_call(vm, slot, SbiCall { eid, fid, args })
        }
        VcpuExit::MmioRead { addr, width, .. } if !vm.ram.contains(addr) => {
            let value = {
                let mut inner = vm.inner.lock();
                let v = inner
                    .devices
                    .read(addr, width, slot.vcpu as u32, csr::time());
                device_side_effects(vm, &mut inner);
                v
            };
            match value {
                Some(v) => {
                    slot.arch.complete_mmio_read(v);
                    Next::Continue
                }
                None => memory_exit(vm, slot, addr, Access::Load),
            }
        }
        VcpuExit::MmioWrite { addr, width, value } if !vm.ram.contains(addr) => {
            let done = {
                let mut inner = vm.inner.lock();
                let done = inner
                    .devices
                    .write(addr, width, value, slot.vcpu as u32, csr::time());
                device_side_effects(vm, &mut inner);
                done
            };
            if done {
                slot.arch.complete_mmio_write();
                Next::Continue
            } else {
                memory_exit(vm, slot, addr, Access::Store)
            }
        }
        VcpuExit::MmioRead { addr, .. } => memory_exit(vm, slot, addr, Access::Load),
        VcpuExit::MmioWrite { addr, .. } => memory_exit(vm, slot, addr, Access::Store),
        VcpuExit::GuestPageFault { addr, access } => memory_exit(vm, slot, addr, access),
        VcpuExit::Wfi => {
            slot.arch.skip_instruction();
            if slot.arch.interrupt_pending()
                || vm.vcpus[slot.vcpu].pending_irq.load(Ordering::Acquire) != 0
            {
                Next::Continue
            } else {
                // The guest waits (for input, say): what it printed shows now.
                crate::vconsole::flush_line(vm);
                Next::Block
            }
        }
        VcpuExit::VirtualInstruction { insn }
            if crate::pmu::emulate_counter_read(
                &mut slot.arch,
                &slot.pmu,
                &vm.vcpus[slot.vcpu].fw_events,
                insn,
            ) =>
        {
            Next::Continue
        }
        VcpuExit::VirtualInstruction { insn } => {
            // Not emulated: to the guest it is an instruction it may not execute.
            slot.arch
                .inject_exception(GuestException::IllegalInstruction, insn);
            vm.vcpus[slot.vcpu].injected.fetch_add(1, Ordering::Relaxed);
            Next::Continue
        }
        VcpuExit::Unhandled { cause, tval, pc } => {
            log!(
                "VM '{}' vCPU {}: unhandled trap scause={:#x} stval={:#x} pc={:#x}",
                vm.name,
                slot.vcpu,
                cause,
                tval,
                pc
            );
            stop_vm(vm, StopReason::Fault);
            Next::Stopped
        }
    }
}

/// Rounds of virtio-console work (input in, `process`, output drained) per
/// [`device_side_effects`]: each copies at most one queue's worth of chains
/// and [`crate::vm::HVC_OUTPUT_BYTES`] per chain, so one call's work is
/// bounded whatever the guest queued. What is left is marked in
/// [`Vm::hvc_pending`] and done from the boot hart's loop.
const HVC_ROUNDS: usize = 4;

/// After any device access: print what the UART and the virtio-console
/// transmitted, feed them console input, run the virtio-console's notified
/// queues, and propagate interrupt-line changes to the vCPUs (kicking their
/// harts).
pub fn device_side_effects(vm: &Vm, inner: &mut crate::vm::VmInner) {
    device_side_effects_local(vm, inner);
    if !inner.nics.is_empty() {
        // Frames this VM sent: to their receivers now if their locks are free.
        crate::net::deliver_if_sent(vm.id);
    }
}

/// [`device_side_effects`] without handing frames on to other VMs (what a
/// sender does for a receiver: never more than one VM deep).
pub fn device_side_effects_local(vm: &Vm, inner: &mut crate::vm::VmInner) {
    if !inner.nics.is_empty() {
        nic_side_effects(vm, inner);
    }
    if let Some(hvc) = inner.hvc {
        hvc_side_effects(vm, inner, hvc);
    }
    if !inner.disks.is_empty() || !inner.rngs.is_empty() {
        crate::vdisk::service(vm, inner);
    }
    if let Some(uart) = inner.uart {
        // Feed queued console input as the receive FIFO makes room (unless
        // the virtio-console takes it).
        while let Some(&b) = inner.input.front().filter(|_| inner.hvc.is_none()) {
            let taken = inner
                .devices
                .with_device::<Uart16550, _>(uart, |u, irq| u.push_input(b, irq));
            if taken != Some(true) {
                break;
            }
            inner.input.pop_front();
        }
        let crate::vm::VmInner {
            devices, history, ..
        } = &mut *inner;
        let _ = devices.with_device::<Uart16550, _>(uart, |u, irq| {
            if u.output().is_empty() {
                return;
            }
            crate::vconsole::console_bytes(vm, history, u.output());
            u.clear_output(irq);
        });
    }
    while let Some((vcpu, level)) = inner.devices.take_changed() {
        if let Some(sh) = vm.vcpus.get(vcpu as usize) {
            if sh.eip.swap(level, Ordering::AcqRel) != level && level {
                sh.irqs.record(IrqKind::External);
                kick(sh.cpu.load(Ordering::Acquire));
            }
        }
    }
}

/// The NICs' part of [`device_side_effects`]: frames waiting at a NIC's
/// switch port go into its receive queue, notified queues are processed
/// (transmitted frames go to the switch), interrupt lines follow. Each call
/// handles at most a queue's worth of chains per queue; what is left sets
/// [`Vm::net_pending`].
fn nic_side_effects(vm: &Vm, inner: &mut crate::vm::VmInner) {
    use fv_virtio::net::RECEIVEQ;
    let crate::vm::VmInner {
        devices,
        memory,
        nics,
        ..
    } = inner;
    let mut left = false;
    for n in nics.iter() {
        left |= devices
            .with_device::<crate::vm::NicDevice, _>(n.dev, |d, irq| {
                if d.transport().device().backend().has_frames() {
                    d.transport_mut().notify(RECEIVEQ);
                }
                if d.has_pending() {
                    let mut mem = crate::vm::GStageMemory {
                        memory: &mut *memory,
                        ram: vm.ram,
                    };
                    d.process(&mut mem, irq);
                }
                d.has_pending()
            })
            .unwrap_or(false);
    }
    vm.net_pending.store(left, Ordering::Release);
}

/// The virtio-console's part of [`device_side_effects`]: queued console input
/// into its buffer (a receiveq notification if any is waiting), its notified
/// queues processed against the VM's RAM, what the guest transmitted handed
/// to the console multiplexer (after the guest-memory access, never during
/// it), and a transmitq chain that waited for the drained buffer taken again.
fn hvc_side_effects(vm: &Vm, inner: &mut crate::vm::VmInner, id: fv_devices::DeviceId) {
    use fv_virtio::console::{RECEIVEQ, TRANSMITQ};
    let crate::vm::VmInner {
        devices,
        memory,
        history,
        input,
        ..
    } = inner;
    let mut pending = false;
    let mut held_back = false;
    for _ in 0..HVC_ROUNDS {
        let (work, held) = devices
            .with_device::<crate::vm::HvcDevice, _>(id, |d, irq| {
                let console = d.transport_mut().device_mut();
                let (a, b) = input.as_slices();
                let mut took = console.push_input(a);
                if took == a.len() {
                    took += console.push_input(b);
                }
                input.drain(..took.min(input.len()));
                if console.pending_input() > 0 {
                    d.transport_mut().notify(RECEIVEQ);
                }
                let mut mem = crate::vm::GStageMemory {
                    memory: &mut *memory,
                    ram: vm.ram,
                };
                d.process(&mut mem, irq);
                let out = d.transport_mut().device_mut().output_mut();
                if hvc_hand_over(vm, history, out) > 0 {
                    d.transport_mut().notify(TRANSMITQ);
                }
                let held = !d.transport().device().output().bytes().is_empty();
                (d.has_pending(), held)
            })
            .unwrap_or((false, false));
        pending = work;
        held_back = held;
        if !work {
            break;
        }
    }
    vm.hvc_pending
        .store(pending || held_back, Ordering::Release);
}

/// Hands as much of a virtio-console's output to the console as the VM's
/// console queue surely takes (`vconsole::output_room`); returns how many
/// bytes. Takes the console lock only when there is output.
fn hvc_hand_over(vm: &Vm, history: &mut fv_mgmt::Ring, out: &mut crate::vm::HvcOutput) -> usize {
    let n = match out.bytes().len() {
        0 => return 0,
        len => len.min(crate::vconsole::output_room(vm)),
    };
    if n > 0 {
        crate::vconsole::console_bytes(vm, history, out.bytes().get(..n).unwrap_or(&[]));
        out.consume(n);
    }
    n
}

/// Hands everything a VM's virtio-console still holds to the console,
/// waiting for the terminal when its queue is full (the VM stops or resets:
/// nothing of what it transmitted is lost).
pub fn hvc_flush(vm: &Vm, inner: &mut crate::vm::VmInner) {
    let Some(id) = inner.hvc else { return };
    let crate::vm::VmInner {
        devices, history, ..
    } = inner;
    for _ in 0..64 {
        let left = devices
            .with_device::<crate::vm::HvcDevice, _>(id, |d, _| {
                let out = d.transport_mut().device_mut().output_mut();
                hvc_hand_over(vm, history, out);
                !out.bytes().is_empty()
            })
            .unwrap_or(false);
        if !left {
            break;
        }
        crate::vconsole::finish_output(vm);
    }
}

/// Finishes virtio work [`device_side_effects`] left (boot hart, every
/// console poll): a guest that spins on its transmitq without exiting still
/// gets its output out, and host disk completions and fresh entropy reach
/// VMs that do not exit.
pub fn service_virtio() {
    crate::hostdev::poll_entropy();
    for vm in vms() {
        let pending =
            vm.hvc_pending.load(Ordering::Acquire) || vm.io_pending.load(Ordering::Acquire);
        if pending && !vm.is_stopped() {
            let mut inner = vm.inner.lock();
            device_side_effects(vm, &mut inner);
        }
    }
}

/// Queues a byte of console input for VM `index`'s console device (its
/// virtio-console with `console: virtio`, else its UART).
pub fn queue_input(index: usize, b: u8) {
    let Some(vm) = vms().get(index) else { return };
    let mut inner = vm.inner.lock();
    // Queued until the guest's UART has room; beyond 4 KiB of typed-ahead
    // input, bytes are dropped (a real UART would overrun far sooner).
    if inner.input.len() < 4096 && inner.input.try_reserve(1).is_ok() {
        inner.input.push_back(b);
    }
    device_side_effects(vm, &mut inner);
}

/// A queued vCPU's scheduling state as the management layer shows it.
pub fn vcpu_state(cpu: usize, vm: usize, vcpu: usize) -> fv_mgmt::VcpuState {
    let key = VcpuKey(((vm as u32) << 16) | vcpu as u32);
    match QUEUES
        .get(cpu)
        .and_then(|q| q.lock().as_ref().map(|q| q.rq.state(key)))
    {
        Some(Ok(State::Running)) => fv_mgmt::VcpuState::Running,
        Some(Ok(State::Runnable)) => fv_mgmt::VcpuState::Runnable,
        Some(Ok(State::Blocked)) => fv_mgmt::VcpuState::Blocked,
        _ => fv_mgmt::VcpuState::Stopped,
    }
}

/// A guest access to a guest-physical address that the G-stage table does not
/// map: first touch of RAM (map it), or nothing there (access fault, as
/// hardware raises for an unbacked physical address).
fn memory_exit(vm: &Vm, slot: &mut Slot, addr: GuestPhysAddr, access: Access) -> Next {
    if vm.ram.contains(addr) {
        let mut inner = vm.inner.lock();
        match inner.ensure_mapped(addr) {
            Ok(true) => {}
            // Mapped already: this hart saw a stale invalid entry.
            Ok(false) => csr::hfence_gvma_addr(addr.raw(), u64::from(vm.vmid)),
            Err(e) => {
                drop(inner);
                log!("VM '{}': cannot map guest RAM at {}: {}", vm.name, addr, e);
                stop_vm(vm, StopReason::Fault);
                return Next::Stopped;
            }
        }
        return Next::Continue;
    }
    let cause = match access {
        Access::Load => GuestException::LoadAccessFault,
        Access::Store => GuestException::StoreAccessFault,
        Access::Fetch => GuestException::InstructionAccessFault,
    };
    let n = vm.vcpus[slot.vcpu].injected.fetch_add(1, Ordering::Relaxed) + 1;
    if n <= 8 {
        log!(
            "VM '{}' vCPU {}: {:?} at {} (nothing there): access fault injected",
            vm.name,
            slot.vcpu,
            access,
            addr
        );
    }
    let gva = slot.arch.fault_gva();
    slot.arch.inject_exception(cause, gva);
    Next::Continue
}

/// Stops a VM for good and logs why. Only the call that makes the transition
/// (see [`fv_vm::Lifecycle::stop`]) logs and counts it: a VM is counted as
/// stopped exactly once, whoever races to stop it.
pub fn stop_vm(vm: &Vm, reason: StopReason) {
    if vm.state.stop().is_some() {
        stopped(vm, reason);
    }
}

/// What follows a VM's transition to stopped (made by the caller): record
/// the reason, log it with the VM's exit counts, and count it out of the
/// running VMs (the machine powers off when none is left).
fn stopped(vm: &Vm, reason: StopReason) {
    hvc_flush(vm, &mut vm.inner.lock());
    crate::vconsole::finish_output(vm);
    vm.inner.lock().stop_reason = Some(reason);
    let why = match reason {
        StopReason::PowerOff => "powered off",
        StopReason::GuestFailure => "powered off reporting a failure",
        StopReason::Fault => "stopped by the hypervisor",
        StopReason::Operator => "stopped by the operator",
    };
    log!("VM '{}' {}", vm.name, why);
    let mut line = alloc::string::String::new();
    for &r in ExitReason::ALL {
        let n: u64 = vm.vcpus.iter().map(|v| v.exits.get(r)).sum();
        if n != 0 {
            let _ = core::fmt::Write::write_fmt(&mut line, format_args!(" {} {n}", r.name()));
        }
    }
    log!("VM '{}' exits:{}", vm.name, line);
    let hvc = {
        let mut inner = vm.inner.lock();
        match inner.hvc {
            Some(id) => inner
                .devices
                .device_mut::<crate::vm::HvcDevice>(id)
                .map(|d| (*d.transport().stats(), d.transport().device().dropped())),
            None => None,
        }
    };
    if let Some((st, dropped)) = hvc {
        log!(
            "VM '{}' virtio-console: {} chains, refused: {} accesses, {} writes, {} notifies, {} queue set-ups, {} feature sets; {} bad chains, {} device errors, {} broken queues, {} output bytes dropped",
            vm.name,
            st.chains,
            st.bad_access,
            st.bad_write,
            st.bad_notify,
            st.queue_setup_refused,
            st.features_refused,
            st.chain_errors,
            st.device_errors,
            st.queue_errors,
            dropped
        );
    }
    report_nics(vm);
    crate::vdisk::report(vm, &mut vm.inner.lock());
    if !reason.is_clean() {
        ANY_FAILURE.store(true, Ordering::Release);
    }
    kick_vm(vm);
    if RUNNING_VMS.fetch_sub(1, Ordering::AcqRel) == 1 {
        for cpu in 0..host().ncpus {
            kick(cpu);
        }
    }
}

/// Logs a stopped VM's NIC counters.
fn report_nics(vm: &Vm) {
    let mut inner = vm.inner.lock();
    for n in inner.nics.clone() {
        let Some(d) = inner.devices.device_mut::<crate::vm::NicDevice>(n.dev) else {
            continue;
        };
        let (t, s) = (*d.transport().stats(), *d.transport().device().stats());
        log!(
            "VM '{}' virtio-net {}: tx {} frames {} bytes, rx {} frames {} bytes; dropped: {} runt, {} oversize, {} spoofed, {} bad header, {} too big for the buffer; refused: {} accesses, {} writes, {} notifies; {} bad chains, {} device errors, {} broken queues",
            vm.name,
            crate::net::MacFmt(n.mac),
            s.tx_frames,
            s.tx_bytes,
            s.rx_frames,
            s.rx_bytes,
            s.tx_runt,
            s.tx_oversize,
            s.tx_spoofed,
            s.tx_bad_header,
            s.rx_too_big,
            t.bad_access,
            t.bad_write,
            t.bad_notify,
            t.chain_errors,
            t.device_errors,
            t.queue_errors
        );
    }
}

/// Waits until none of `vm`'s vCPUs is in the guest (they leave at their next
/// exit once kicked, and a stopped VM's vCPUs never enter again). `except` is
/// a vCPU not to wait for (the caller's own).
pub fn wait_vcpus_out(vm: &Vm, except: Option<usize>) {
    kick_vm(vm);
    for (i, v) in vm.vcpus.iter().enumerate() {
        if Some(i) == except {
            continue;
        }
        // SeqCst: pairs with the vCPU's own store of `running` before it
        // reads the VM state (see `run_slot`).
        while v.running.load(Ordering::SeqCst) {
            core::hint::spin_loop();
        }
    }
}

/// Reboots a VM: stops all its vCPUs, gives it the state of a fresh power-on
/// (devices, interrupt controller, pending interrupts, console input, HSM),
/// reloads its images, restarts vCPU 0. `caller` is the vCPU asking (SBI
/// SRST), `None` for the operator. Returns false if the VM was not running,
/// or was stopped while it rebooted (it then stays stopped).
pub fn reboot_vm(vm: &Vm, caller: Option<usize>) -> bool {
    if !vm.state.begin_reboot() {
        return false;
    }
    log!("VM '{}' rebooting", vm.name);
    wait_vcpus_out(vm, caller);
    for v in &vm.vcpus {
        v.pending_irq.store(0, Ordering::Release);
        v.fences.clear();
        *v.start.lock() = None;
    }
    vm.reset_devices();
    if let Err(e) = vm.load_images() {
        log!("VM '{}': reboot failed: {}", vm.name, e);
        // Unless a stop came first (and was counted), this stops it.
        if vm.state.fail_reboot() {
            stopped(vm, StopReason::Fault);
        }
        return false;
    }
    // The new generation first: every vCPU resets itself when it sees it,
    // and none may run the old state once the VM is running again.
    vm.generation.fetch_add(1, Ordering::AcqRel);
    if !vm.state.finish_reboot() {
        // Stopped (or destroyed) while rebooting: it stays so.
        log!("VM '{}' was stopped during its reboot", vm.name);
        return false;
    }
    kick_vm(vm);
    true
}

/// Makes every hart drop every G-stage translation it holds, and returns once
/// they all have (each online hart acknowledges at its next loop or guest
/// entry; a hart running a guest is kicked out of it). Called before a VM's
/// table and RAM frames are freed: a hart that ran the VM might otherwise
/// still translate its guest addresses to frames that now belong to another
/// VM.
///
/// Context: any hart, no vCPU of the calling hart in the guest, no lock held
/// that a hart needs to reach its next loop or guest entry.
pub fn fence_gstage_all_harts() {
    let me = crate::boot::cpu_index();
    let epoch = GFENCE.request();
    gstage_fence_check(me);
    let ncpus = host().ncpus.min(MAX_HARTS);
    for cpu in (0..ncpus).filter(|&c| c != me) {
        kick(cpu);
    }
    for cpu in (0..ncpus).filter(|&c| c != me) {
        let mut spins = 0u64;
        while GFENCE.must_wait(cpu, epoch) {
            spins += 1;
            if spins.is_multiple_of(RE_KICK_SPINS) {
                kick(cpu);
            }
            core::hint::spin_loop();
        }
    }
}

/// Performs the G-stage fence other harts asked for, if any (cheap otherwise:
/// one load). Called at the top of every hart's loop and before every guest
/// entry.
fn gstage_fence_check(cpu: usize) {
    GFENCE.check(cpu, csr::hfence_gvma_all);
}

/// Spins between two kicks of a hart that has not answered yet (an IPI that
/// arrived while the hart was about to clear its last one is not lost, but a
/// second one costs nothing).
const RE_KICK_SPINS: u64 = 1 << 16;

/// Waits until `vcpu` has performed the fences in `bits` that were requested
/// of it, or is out of the guest (it performs them before it enters again).
/// The request was made before this call (SeqCst, see `run_slot`).
pub(crate) fn wait_fenced(vm: &Vm, vcpu: usize, bits: u32) {
    let Some(sh) = vm.vcpus.get(vcpu) else { return };
    let me = crate::boot::cpu_index();
    let mut spins = 0u64;
    while sh.fences.must_wait(bits) {
        spins += 1;
        if spins.is_multiple_of(RE_KICK_SPINS) {
            kick(sh.cpu.load(Ordering::Acquire));
        }
        // Never keep another hart's G-stage fence waiting on this one.
        gstage_fence_check(me);
        core::hint::spin_loop();
    }
}

fn finish(cpu: usize) -> ! {
    if cpu != 0 {
        loop {
            csr::wfi();
            clear_ipi();
            gstage_fence_check(cpu);
        }
    }
    crate::net::report();
    let failed = ANY_FAILURE.load(Ordering::Acquire);
    log!(
        "all VMs stopped ({}); {} exits handled",
        if failed { "some failed" } else { "all clean" },
        EXITS.load(Ordering::Relaxed)
    );
    crate::power_off(if failed {
        ShutdownReason::Failure
    } else {
        ShutdownReason::Clean
    })
}

/// Logs a summary of one VM's resource use (for the benchmark).
pub fn report_vm(vm: &Vm) {
    log!(
        "VM '{}': vmid {} vcpus {} ram {} MiB, hypervisor overhead {} bytes",
        vm.name,
        vm.vmid,
        vm.vcpus.len(),
        vm.ram.size >> 20,
        vm.overhead_bytes.load(Ordering::Relaxed)
    );
}
