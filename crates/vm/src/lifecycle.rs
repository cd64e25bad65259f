//! A VM's run state and its transitions, each one atomic step.
//!
//! Several parties change a VM's state at once: any of its vCPUs (SBI SRST
//! shutdown or reboot, on any hart), the hypervisor (a fault), and the
//! operator (`vm stop`, `vm destroy`, `vm pause` …). Every transition here is a
//! single compare-and-swap from the states it is allowed from, and says whether
//! *this* call made it, so exactly one party does what follows a transition
//! (count the VM as stopped, log it, free its memory):
//!
//! ```text
//!            pause            begin_reboot
//!   Paused <------> Running -------------> Rebooting
//!     |     resume   |   ^   finish_reboot     |
//!     |              |   +---------------------+
//!     | stop         | stop                    | stop / fail_reboot
//!     +------------> Stopped <-----------------+
//!                     |  ^
//!             destroy |  | (vm start: Destroyed -> Running, `start`)
//!                     v  |
//!                   Destroyed
//! ```
//!
//! A reboot that loses the race to a stop ([`Lifecycle::finish_reboot`] returns
//! false) must not revive the VM: the stop has already been counted.
//!
//! Ordering: every operation is `SeqCst`. The hypervisor pairs a vCPU's "I am
//! entering the guest" store with a load of this state, and a stopper's
//! transition with a load of that flag (a store-then-load handshake on each
//! side); only sequentially consistent operations keep either side from
//! missing the other (with Release/Acquire, RISC-V lets the later load be
//! performed before the earlier store).

use core::sync::atomic::{AtomicU8, Ordering};

/// The run state of a VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum RunState {
    /// vCPUs may be scheduled and enter the guest.
    Running = 0,
    /// Being rebooted: no vCPU may enter the guest until the reboot finishes.
    Rebooting = 1,
    /// Stopped for good (memory still allocated).
    Stopped = 2,
    /// Paused by the operator: no vCPU is scheduled, guest time stands still.
    Paused = 3,
    /// Stopped and its memory freed; `vm start` builds it again.
    Destroyed = 4,
}

impl RunState {
    fn from_raw(raw: u8) -> RunState {
        match raw {
            0 => RunState::Running,
            1 => RunState::Rebooting,
            3 => RunState::Paused,
            4 => RunState::Destroyed,
            _ => RunState::Stopped,
        }
    }

    /// Whether no vCPU of the VM may run (stopped or destroyed).
    pub fn is_stopped(self) -> bool {
        matches!(self, RunState::Stopped | RunState::Destroyed)
    }
}

/// A VM's run state, shared by every hart.
#[derive(Debug)]
pub struct Lifecycle(AtomicU8);

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle::new()
    }
}

impl Lifecycle {
    /// A VM that runs.
    pub const fn new() -> Lifecycle {
        Lifecycle(AtomicU8::new(RunState::Running as u8))
    }

    /// The current state.
    pub fn get(&self) -> RunState {
        RunState::from_raw(self.0.load(Ordering::SeqCst))
    }

    /// Whether no vCPU of the VM may run.
    pub fn is_stopped(&self) -> bool {
        self.get().is_stopped()
    }

    /// One transition: from a state `allowed` accepts to `to`. Returns the
    /// state it left, or `Err(current)` if the current state is not allowed.
    fn transition(
        &self,
        allowed: impl Fn(RunState) -> bool,
        to: RunState,
    ) -> Result<RunState, RunState> {
        let mut cur = self.0.load(Ordering::SeqCst);
        loop {
            let state = RunState::from_raw(cur);
            if !allowed(state) {
                return Err(state);
            }
            match self
                .0
                .compare_exchange_weak(cur, to as u8, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return Ok(state),
                Err(now) => cur = now,
            }
        }
    }

    /// Stops the VM from running, paused or rebooting. Returns the state it
    /// left if this call stopped it (the caller then counts the VM as stopped,
    /// exactly once), `None` if it was already stopped or destroyed.
    pub fn stop(&self) -> Option<RunState> {
        self.transition(
            |s| {
                matches!(
                    s,
                    RunState::Running | RunState::Paused | RunState::Rebooting
                )
            },
            RunState::Stopped,
        )
        .ok()
    }

    /// Running → rebooting. False if the VM was not running (a second reboot
    /// request, a pause or a stop came first).
    pub fn begin_reboot(&self) -> bool {
        self.transition(|s| s == RunState::Running, RunState::Rebooting)
            .is_ok()
    }

    /// Rebooting → running, once the reboot is done. False if the VM was
    /// stopped meanwhile: it stays stopped (the stop was counted already).
    pub fn finish_reboot(&self) -> bool {
        self.transition(|s| s == RunState::Rebooting, RunState::Running)
            .is_ok()
    }

    /// Rebooting → stopped, when the reboot failed. True if this call stopped
    /// the VM (the caller counts it), false if someone else already had.
    pub fn fail_reboot(&self) -> bool {
        self.transition(|s| s == RunState::Rebooting, RunState::Stopped)
            .is_ok()
    }

    /// Running → paused. Err(current) otherwise.
    pub fn pause(&self) -> Result<(), RunState> {
        self.transition(|s| s == RunState::Running, RunState::Paused)
            .map(|_| ())
    }

    /// Paused → running. Err(current) otherwise.
    pub fn resume(&self) -> Result<(), RunState> {
        self.transition(|s| s == RunState::Paused, RunState::Running)
            .map(|_| ())
    }

    /// Stopped → destroyed, after its memory was freed. Err(current) otherwise.
    pub fn destroyed(&self) -> Result<(), RunState> {
        self.transition(|s| s == RunState::Stopped, RunState::Destroyed)
            .map(|_| ())
    }

    /// Destroyed → running, once it was built again. Err(current) otherwise.
    pub fn start(&self) -> Result<(), RunState> {
        self.transition(|s| s == RunState::Destroyed, RunState::Running)
            .map(|_| ())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn state_values_are_stable() {
        for s in [
            RunState::Running,
            RunState::Rebooting,
            RunState::Stopped,
            RunState::Paused,
            RunState::Destroyed,
        ] {
            assert_eq!(RunState::from_raw(s as u8), s);
        }
    }

    /// The audit's race: vCPU 0 starts a reboot, vCPU 1 (or the operator)
    /// stops the VM meanwhile. The stop wins and is counted once; the reboot
    /// must neither revive the VM nor count it a second time.
    #[test]
    fn stop_during_reboot_is_not_undone() {
        let l = Lifecycle::new();
        assert!(l.begin_reboot());
        assert_eq!(l.stop(), Some(RunState::Rebooting));
        assert!(!l.finish_reboot());
        assert_eq!(l.get(), RunState::Stopped);
        assert!(!l.fail_reboot(), "the stop was already counted");
        assert_eq!(l.stop(), None);
    }

    #[test]
    fn failed_reboot_stops_once() {
        let l = Lifecycle::new();
        assert!(l.begin_reboot());
        assert!(l.fail_reboot());
        assert_eq!(l.stop(), None);
        assert_eq!(l.get(), RunState::Stopped);
    }

    #[test]
    fn only_one_reboot_at_a_time() {
        let l = Lifecycle::new();
        assert!(l.begin_reboot());
        assert!(!l.begin_reboot());
        assert!(l.finish_reboot());
        assert_eq!(l.get(), RunState::Running);
    }

    #[test]
    fn pause_resume_destroy_start() {
        let l = Lifecycle::new();
        assert_eq!(l.resume(), Err(RunState::Running));
        l.pause().unwrap();
        assert!(!l.begin_reboot(), "a paused VM is resumed before a reboot");
        assert_eq!(l.destroyed(), Err(RunState::Paused));
        l.resume().unwrap();
        assert_eq!(l.stop(), Some(RunState::Running));
        assert_eq!(l.start(), Err(RunState::Stopped));
        l.destroyed().unwrap();
        assert_eq!(l.stop(), None, "destroyed is stopped already");
        assert!(l.is_stopped());
        l.start().unwrap();
        assert_eq!(l.get(), RunState::Running);
    }

    /// Many threads race every transition: each stop is counted exactly once
    /// per run, and a VM once stopped never runs again without `start`.
    #[test]
    fn racing_transitions_count_each_stop_once() {
        use std::sync::atomic::AtomicUsize;
        use std::sync::Arc;
        for round in 0..200 {
            let l = Arc::new(Lifecycle::new());
            let stops = Arc::new(AtomicUsize::new(0));
            let threads: std::vec::Vec<_> = (0..4)
                .map(|t| {
                    let l = Arc::clone(&l);
                    let stops = Arc::clone(&stops);
                    std::thread::spawn(move || {
                        for i in 0..50 {
                            match (t + i + round) % 4 {
                                0 => {
                                    if l.begin_reboot() && !l.finish_reboot() {
                                        assert!(l.is_stopped());
                                    }
                                }
                                1 => {
                                    if l.stop().is_some() {
                                        stops.fetch_add(1, Ordering::SeqCst);
                                    }
                                }
                                2 => {
                                    if l.begin_reboot() && l.fail_reboot() {
                                        stops.fetch_add(1, Ordering::SeqCst);
                                    }
                                }
                                _ => {
                                    if l.pause().is_ok() {
                                        let _ = l.resume();
                                    }
                                }
                            }
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            assert_eq!(stops.load(Ordering::SeqCst), 1, "round {round}");
            assert_eq!(l.get(), RunState::Stopped);
        }
    }
}
