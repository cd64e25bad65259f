//! vCPU scheduling policy for Ferrovisor.
//!
//! This crate decides *which* vCPU a hart runs next and for how long, and *where*
//! vCPUs live; the hypervisor keeps the mechanism (loading vCPU state, arming the
//! host timer, IPIs, TLB fences). Time is in abstract ticks (on RISC-V: the `time`
//! CSR); nothing here touches hardware, so all of it is tested on the host.
//!
//! # Policy
//!
//! * **One [`RunQueue`] per hart.** Each vCPU lives in exactly one queue, named by
//!   an opaque [`VcpuKey`] the hypervisor chooses.
//! * **Weighted fair queuing.** Every vCPU has a weight ([`MIN_WEIGHT`] ..=
//!   [`MAX_WEIGHT`], default [`DEFAULT_WEIGHT`]; the hypervisor gives all vCPUs of
//!   a VM the VM's weight) and a *virtual runtime* that advances by
//!   `ran_ticks * VRUNTIME_SCALE / weight`. [`RunQueue::pick`] runs the runnable
//!   vCPU with the smallest virtual runtime, so over time CPU-bound vCPUs sharing a
//!   hart get CPU time in proportion to their weights.
//! * **Time slices** come from a scheduling period ([`SchedConfig::latency`],
//!   stretched to `n * min_slice` when `n` vCPUs are runnable) split by weight, and
//!   never shorter than [`SchedConfig::min_slice`]. The hypervisor arms the host
//!   timer for the slice.
//! * **WFI blocks.** A vCPU in WFI is [`State::Blocked`] and never picked until
//!   [`RunQueue::wake`]. A waking vCPU's virtual runtime is raised to the queue's
//!   minimum, so sleeping banks no credit (it can't monopolise the hart after a
//!   long sleep) while a just-woken vCPU still runs soon:
//!   [`RunQueue::slice_end`] shortens the running vCPU's slice once it is more than
//!   the wake-up granularity ahead of a woken one (wake-up preemption).
//! * **Pinning.** A vCPU pinned to hart `h` lives in queue `h` and never moves.
//! * **Migration.** An idle hart pulls work from a busy one
//!   ([`RunQueue::pull_from`], [`Scheduler::steal`]); [`balance`] evens out the
//!   weighted load of all queues. Only runnable, unpinned vCPUs that are not running
//!   move, and only when a move strictly reduces the imbalance, so balanced queues
//!   never ping-pong. A migrated vCPU keeps its lag relative to the queue minimum.
//!
//! Nothing panics on any input: operations on unknown keys, bad weights, bad hart
//! indices and forbidden moves return a [`SchedError`] and change nothing. Only
//! [`RunQueue::add`] and migrations allocate (with `try_reserve`; failure is
//! [`SchedError::OutOfMemory`]).
//!
//! # Integration note for the hypervisor
//!
//! *Keys.* Use any injective map from (VM, vCPU) to [`VcpuKey`], e.g.
//! `VcpuKey((vm_index << 16) | vcpu_index)`.
//!
//! *Locking.* Keep one [`RunQueue`] per hart inside the hart's queue lock, next to
//! the vCPU slots (arch state) of that hart. Every `RunQueue` method takes
//! `&self`/`&mut self`: the caller holds that queue's lock. Methods that touch two
//! queues ([`RunQueue::pull_from`], [`RunQueue::migrate_to`]) need both locks —
//! take them in hart-index order to avoid deadlock; [`balance`] needs every queue's
//! lock (take them all in index order; it accepts the guards directly, as any
//! `DerefMut<Target = RunQueue>`). A hypervisor content with one global lock can use
//! [`Scheduler`] instead, which owns all queues and finds vCPUs by key.
//!
//! *Setup.* `RunQueue::new(hart, SchedConfig::from_timebase(timebase))` per hart.
//! For each vCPU of a VM: `add(key, VcpuParams { weight: vm.weight, pin, stopped })`
//! on its pinned hart, or on the least loaded one; secondary vCPUs start
//! `stopped: true` (HSM STOPPED).
//!
//! *Run loop of hart `h`* (queue lock held):
//!
//! 1. Refresh: for each vCPU of the queue, `wake(key)` if it has an interrupt
//!    pending, `start(key)` on an HSM start request, `stop(key)` if its VM stopped
//!    or was paused.
//! 2. `match q.pick(now)`: `Some(Pick { key, slice })` → load that vCPU, arm the
//!    host timer for `min(now + slice, guest timer)`, run it. After an exit caused
//!    by a host IPI (a kick: another vCPU of this hart may have an interrupt now),
//!    re-run the refresh step; if it woke anything, re-arm the host timer for
//!    `min(q.slice_end(), guest timer)`. End the run when
//!    `q.should_preempt(time())` (or the vCPU blocks or stops):
//!    `q.account(key, ran)` with the ticks it ran; then `q.block(key)` if it
//!    executed WFI with nothing pending, or `q.stop(key)` if it stopped (HSM stop,
//!    VM stopped). A vCPU that merely exhausted its slice stays runnable.
//! 3. `None` → the hart is idle. First try to take work: lock the busiest other
//!    hart's queue (in index order with our own) and call `q.pull_from(&mut busy)`;
//!    if it returns a [`Migration`], move the vCPU's slot along and pick again.
//!    Otherwise WFI until the next guest timer or kick. `pick` keeps the hart's
//!    idle-time accounting ([`RunQueue::hart_stats`]).
//! 4. Periodically (e.g. every 100 ms, on the boot hart): lock all queues in index
//!    order and call [`balance`]; for every [`Migration`] it reports, move the
//!    slot, then kick both harts.
//!
//! *Moving a vCPU* (every [`Migration`]): the scheduler never moves a
//! [`State::Running`] vCPU, so its state is already saved (`put`). The hypervisor
//! moves the slot to queue `to`, updates the hart recorded in the vCPU's shared
//! state (so later IPIs, kicks and remote fences go to the new hart), and before
//! the vCPU's first run on hart `to` executes `HFENCE.VVMA` for the VM's VMID (the
//! new hart may hold VS-stage translations from an earlier stint of this vCPU that
//! the guest has since changed) — and `HFENCE.GVMA` when VMIDs are not in use, as
//! on any VM switch.
//!
//! *WFI and pause.* Blocking on WFI and waking on a pending interrupt is the whole
//! protocol; spurious wake-ups are harmless (WFI may complete at any time). Pause a
//! VM by `stop`ping its vCPUs and resume it by `start`ing them: a vCPU paused while
//! in WFI resumes as runnable, which the guest sees as a spurious WFI wake-up.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

extern crate alloc;
#[cfg(test)]
extern crate std;

mod balance;
mod queue;
mod scheduler;

pub use balance::balance;
pub use queue::RunQueue;
pub use scheduler::Scheduler;

use core::fmt;

/// Smallest vCPU weight.
pub const MIN_WEIGHT: u32 = 1;
/// Largest vCPU weight.
pub const MAX_WEIGHT: u32 = 10_000;
/// Weight of a vCPU whose VM configures none.
pub const DEFAULT_WEIGHT: u32 = 100;
/// Virtual runtime advances by `ran_ticks * VRUNTIME_SCALE / weight`. The scale
/// keeps the rounding error of one accounting below 2^-20 ticks at any weight.
pub const VRUNTIME_SCALE: u128 = 1 << 20;

/// Names one vCPU. The scheduler never interprets it; the hypervisor chooses an
/// injective mapping from (VM, vCPU) to keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VcpuKey(pub u32);

/// Scheduling state of a vCPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// Ready to run, waiting for its hart.
    Runnable,
    /// Returned by [`RunQueue::pick`] and running on its hart; the run ends with
    /// [`RunQueue::account`], [`RunQueue::block`], [`RunQueue::stop`],
    /// [`RunQueue::remove`] or the hart's next [`RunQueue::pick`].
    Running,
    /// In WFI (or retentive suspend): waits for [`RunQueue::wake`].
    Blocked,
    /// HSM stopped, or its VM is stopped or paused: waits for [`RunQueue::start`].
    Stopped,
}

impl State {
    /// Whether the vCPU competes for its hart ([`State::Runnable`] or [`State::Running`]).
    pub const fn is_runnable(self) -> bool {
        matches!(self, State::Runnable | State::Running)
    }
}

/// How a vCPU is scheduled, given when it is added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VcpuParams {
    /// Share weight, [`MIN_WEIGHT`] ..= [`MAX_WEIGHT`].
    pub weight: u32,
    /// The hart (queue index) the vCPU is pinned to, if any.
    pub pin: Option<usize>,
    /// Start in [`State::Stopped`] instead of [`State::Runnable`] (a secondary
    /// vCPU waiting for an HSM start).
    pub stopped: bool,
}

impl Default for VcpuParams {
    fn default() -> Self {
        VcpuParams {
            weight: DEFAULT_WEIGHT,
            pin: None,
            stopped: false,
        }
    }
}

/// Timing parameters of a run queue, in ticks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SchedConfig {
    latency: u64,
    min_slice: u64,
    wakeup_granularity: u64,
}

impl SchedConfig {
    /// A configuration: every runnable vCPU runs at least once per `latency` ticks
    /// (stretched to `n * min_slice` with `n` runnable vCPUs); no slice is shorter
    /// than `min_slice`; a woken vCPU preempts the running one only when it is more
    /// than `wakeup_granularity` ticks (at the running vCPU's weight) behind.
    ///
    /// # Errors
    ///
    /// [`SchedError::BadConfig`] if `latency` or `min_slice` is zero or
    /// `min_slice > latency`.
    pub const fn new(
        latency: u64,
        min_slice: u64,
        wakeup_granularity: u64,
    ) -> Result<Self, SchedError> {
        if latency == 0 || min_slice == 0 || min_slice > latency {
            return Err(SchedError::BadConfig);
        }
        Ok(SchedConfig {
            latency,
            min_slice,
            wakeup_granularity,
        })
    }

    /// The default configuration for a timer of `timebase` ticks per second:
    /// 20 ms latency (10 ms slices for two equal vCPUs), 1 ms minimum slice, 1 ms
    /// wake-up granularity; each at least one tick.
    pub const fn from_timebase(timebase: u64) -> Self {
        let latency = max1(timebase / 50);
        let min_slice = max1(timebase / 1000);
        SchedConfig {
            latency,
            min_slice,
            wakeup_granularity: min_slice,
        }
    }

    /// Ticks within which every runnable vCPU runs once (before stretching).
    pub const fn latency(&self) -> u64 {
        self.latency
    }

    /// Shortest slice [`RunQueue::pick`] hands out.
    pub const fn min_slice(&self) -> u64 {
        self.min_slice
    }

    /// How far (in ticks at the running vCPU's weight) a runnable vCPU must be
    /// behind the running one for [`RunQueue::should_preempt`].
    pub const fn wakeup_granularity(&self) -> u64 {
        self.wakeup_granularity
    }
}

const fn max1(x: u64) -> u64 {
    if x == 0 {
        1
    } else {
        x
    }
}

/// What [`RunQueue::pick`] chose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pick {
    /// The vCPU to run (now [`State::Running`]).
    pub key: VcpuKey,
    /// How long to run it before preempting it: arm the host timer for
    /// `now + slice`.
    pub slice: u64,
}

/// One vCPU moved from one hart's queue to another's. The hypervisor moves the
/// vCPU's state along and fences the destination hart's guest TLB for its VMID.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Migration {
    /// The vCPU that moved.
    pub key: VcpuKey,
    /// The hart whose queue it left.
    pub from: usize,
    /// The hart whose queue it joined.
    pub to: usize,
}

/// Per-vCPU counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuStats {
    /// Ticks charged with [`RunQueue::account`] (and implicit run ends in
    /// [`RunQueue::pick`]).
    pub run_ticks: u64,
    /// Times [`RunQueue::pick`] chose it.
    pub picks: u64,
    /// Times it moved to another hart.
    pub migrations: u64,
    /// Times [`RunQueue::wake`] or [`RunQueue::start`] made it runnable.
    pub wakeups: u64,
}

/// Per-hart counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HartStats {
    /// Ticks between a [`RunQueue::pick`] that found nothing to run and the next one
    /// that did (including an idle period still under way).
    pub idle_ticks: u64,
    /// Times the hart went idle.
    pub idle_periods: u64,
    /// vCPUs picked to run.
    pub picks: u64,
    /// vCPUs that joined this queue from another.
    pub migrations_in: u64,
    /// vCPUs that left this queue for another.
    pub migrations_out: u64,
}

/// A snapshot of one vCPU's scheduling data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VcpuInfo {
    /// Its key.
    pub key: VcpuKey,
    /// The hart whose queue holds it.
    pub hart: usize,
    /// Share weight.
    pub weight: u32,
    /// The hart it is pinned to, if any.
    pub pin: Option<usize>,
    /// Scheduling state.
    pub state: State,
    /// Virtual runtime (see [`VRUNTIME_SCALE`]); comparable only within a queue.
    pub vruntime: u128,
    /// Counters.
    pub stats: VcpuStats,
}

/// Why a scheduler operation was refused. A refused operation changes nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SchedError {
    /// No vCPU with this key is in the queue (or, for [`Scheduler`], in any queue).
    UnknownKey,
    /// A vCPU with this key is already queued (on this hart or, for
    /// [`Scheduler`] and migrations, in the destination or any queue).
    DuplicateKey,
    /// The weight is outside [`MIN_WEIGHT`] ..= [`MAX_WEIGHT`].
    BadWeight,
    /// The hart index is not one the scheduler has.
    BadHart,
    /// The vCPU is pinned to a different hart than the operation needs.
    Pinned,
    /// The vCPU is running on its hart, so it cannot move.
    Running,
    /// The vCPU is stopped: it must be started before it can block.
    Stopped,
    /// Timing parameters are inconsistent (zero latency or minimum slice, minimum
    /// slice above latency) or a scheduler was asked for zero harts.
    BadConfig,
    /// The heap could not grow a run queue.
    OutOfMemory,
}

impl fmt::Display for SchedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SchedError::UnknownKey => "no such vCPU in the run queue",
            SchedError::DuplicateKey => "vCPU is already queued",
            SchedError::BadWeight => "weight out of range 1..=10000",
            SchedError::BadHart => "no such hart",
            SchedError::Pinned => "vCPU is pinned to another hart",
            SchedError::Running => "vCPU is running and cannot move",
            SchedError::Stopped => "vCPU is stopped",
            SchedError::BadConfig => "inconsistent scheduler configuration",
            SchedError::OutOfMemory => "out of memory for the run queue",
        })
    }
}

impl core::error::Error for SchedError {}

/// Checks a weight against [`MIN_WEIGHT`] ..= [`MAX_WEIGHT`].
fn check_weight(weight: u32) -> Result<u32, SchedError> {
    if (MIN_WEIGHT..=MAX_WEIGHT).contains(&weight) {
        Ok(weight)
    } else {
        Err(SchedError::BadWeight)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn config_validation() {
        assert_eq!(SchedConfig::new(0, 1, 1), Err(SchedError::BadConfig));
        assert_eq!(SchedConfig::new(10, 0, 1), Err(SchedError::BadConfig));
        assert_eq!(SchedConfig::new(10, 11, 1), Err(SchedError::BadConfig));
        let c = SchedConfig::new(10, 10, 0).unwrap();
        assert_eq!(
            (c.latency(), c.min_slice(), c.wakeup_granularity()),
            (10, 10, 0)
        );
    }

    #[test]
    fn config_from_timebase() {
        let c = SchedConfig::from_timebase(10_000_000);
        assert_eq!(c.latency(), 200_000);
        assert_eq!(c.min_slice(), 10_000);
        assert_eq!(c.wakeup_granularity(), 10_000);
        // Degenerate timebases still give a valid configuration.
        for tb in [0, 1, 49, 999] {
            let c = SchedConfig::from_timebase(tb);
            assert!(SchedConfig::new(c.latency(), c.min_slice(), c.wakeup_granularity()).is_ok());
        }
    }

    #[test]
    fn weights() {
        assert_eq!(check_weight(0), Err(SchedError::BadWeight));
        assert_eq!(check_weight(MIN_WEIGHT), Ok(1));
        assert_eq!(check_weight(MAX_WEIGHT), Ok(10_000));
        assert_eq!(check_weight(MAX_WEIGHT + 1), Err(SchedError::BadWeight));
        assert_eq!(VcpuParams::default().weight, DEFAULT_WEIGHT);
        assert_eq!(VcpuParams::default().pin, None);
        assert!(!VcpuParams::default().stopped);
    }

    #[test]
    fn state_runnable() {
        assert!(State::Runnable.is_runnable());
        assert!(State::Running.is_runnable());
        assert!(!State::Blocked.is_runnable());
        assert!(!State::Stopped.is_runnable());
    }

    #[test]
    fn errors_display() {
        for e in [
            SchedError::UnknownKey,
            SchedError::DuplicateKey,
            SchedError::BadWeight,
            SchedError::BadHart,
            SchedError::Pinned,
            SchedError::Running,
            SchedError::Stopped,
            SchedError::BadConfig,
            SchedError::OutOfMemory,
        ] {
            assert!(!e.to_string().is_empty());
        }
    }
}
