//! HSM hart states (SBI v2.0 §9, table "HSM Hart States") and a fixed-capacity
//! per-VM state machine the VM core can embed.
//!
//! The legal transitions are the edges of the spec's HSM state machine:
//!
//! ```text
//! STOPPED --hart_start (by another hart)--> START_PENDING --core starts it--> STARTED
//! STARTED --hart_stop (by itself)--------> STOP_PENDING  --core stops it---> STOPPED
//! STARTED --hart_suspend (by itself)-----> SUSPEND_PENDING --core parks it-> SUSPENDED
//! SUSPENDED --interrupt / event----------> RESUME_PENDING --core resumes it-> STARTED
//! ```

use core::fmt;

use sbi_spec::hsm::hart_state as spec;

/// The most vCPUs one VM can have ([`HsmStates`] capacity).
pub const MAX_VCPUS: usize = 64;

/// An HSM hart state; the discriminant is the spec's HSM state id, returned
/// in `sbiret.value` by `sbi_hart_get_status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u64)]
pub enum HartState {
    /// `STARTED` (0): the hart is executing normally.
    Started = spec::STARTED as u64,
    /// `STOPPED` (1): the hart is not executing in supervisor mode or below.
    Stopped = spec::STOPPED as u64,
    /// `START_PENDING` (2): another hart asked to start it; not yet STARTED.
    StartPending = spec::START_PENDING as u64,
    /// `STOP_PENDING` (3): the hart asked to stop itself; not yet STOPPED.
    StopPending = spec::STOP_PENDING as u64,
    /// `SUSPENDED` (4): the hart is in a (virtual) suspend state.
    Suspended = spec::SUSPENDED as u64,
    /// `SUSPEND_PENDING` (5): the hart asked to suspend; not yet SUSPENDED.
    SuspendPending = spec::SUSPEND_PENDING as u64,
    /// `RESUME_PENDING` (6): a wake-up event arrived; not yet STARTED again.
    ResumePending = spec::RESUME_PENDING as u64,
}

impl HartState {
    /// The HSM state id (`sbiret.value` of `sbi_hart_get_status`).
    pub const fn id(self) -> u64 {
        self as u64
    }

    /// The state with this HSM state id, if any.
    pub const fn from_id(id: u64) -> Option<Self> {
        Some(match id {
            0 => HartState::Started,
            1 => HartState::Stopped,
            2 => HartState::StartPending,
            3 => HartState::StopPending,
            4 => HartState::Suspended,
            5 => HartState::SuspendPending,
            6 => HartState::ResumePending,
            _ => return None,
        })
    }

    /// Whether the spec's state machine has an edge from `self` to `to`.
    pub const fn can_transition_to(self, to: HartState) -> bool {
        use HartState::*;
        matches!(
            (self, to),
            (Stopped, StartPending)
                | (StartPending, Started)
                | (Started, StopPending)
                | (StopPending, Stopped)
                | (Started, SuspendPending)
                | (SuspendPending, Suspended)
                | (Suspended, ResumePending)
                | (ResumePending, Started)
        )
    }
}

/// What [`HsmStates`] rejects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HsmError {
    /// The vCPU count is 0 or above [`MAX_VCPUS`].
    BadVcpuCount,
    /// The vCPU index is not below the VM's vCPU count.
    InvalidVcpu,
    /// The spec's state machine has no edge from `from` to `to`.
    IllegalTransition {
        /// The vCPU's current state.
        from: HartState,
        /// The state that was requested.
        to: HartState,
    },
}

impl fmt::Display for HsmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HsmError::BadVcpuCount => write!(f, "vCPU count must be 1..={MAX_VCPUS}"),
            HsmError::InvalidVcpu => f.write_str("no such vCPU"),
            HsmError::IllegalTransition { from, to } => {
                write!(f, "illegal HSM transition {from:?} -> {to:?}")
            }
        }
    }
}

/// The HSM state of every vCPU of one VM. Fixed capacity ([`MAX_VCPUS`]), no
/// allocation. The VM core keeps one per VM behind its own lock and calls the
/// transition methods as it starts, stops, parks and wakes vCPUs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HsmStates {
    states: [HartState; MAX_VCPUS],
    count: usize,
}

impl HsmStates {
    /// `vcpu_count` vCPUs, `boot_vcpu` STARTED and every other one STOPPED.
    pub fn new(vcpu_count: usize, boot_vcpu: usize) -> Result<Self, HsmError> {
        if vcpu_count == 0 || vcpu_count > MAX_VCPUS {
            return Err(HsmError::BadVcpuCount);
        }
        if boot_vcpu >= vcpu_count {
            return Err(HsmError::InvalidVcpu);
        }
        let mut s = Self {
            states: [HartState::Stopped; MAX_VCPUS],
            count: vcpu_count,
        };
        s.reset(boot_vcpu)?;
        Ok(s)
    }

    /// Puts every vCPU back to STOPPED and `boot_vcpu` to STARTED (VM reboot).
    pub fn reset(&mut self, boot_vcpu: usize) -> Result<(), HsmError> {
        if boot_vcpu >= self.count {
            return Err(HsmError::InvalidVcpu);
        }
        for (i, s) in self.states.iter_mut().enumerate() {
            *s = if i == boot_vcpu {
                HartState::Started
            } else {
                HartState::Stopped
            };
        }
        Ok(())
    }

    /// Number of vCPUs.
    pub fn vcpu_count(&self) -> usize {
        self.count
    }

    /// State of `vcpu`, or `None` if there is no such vCPU.
    pub fn get(&self, vcpu: usize) -> Option<HartState> {
        if vcpu >= self.count {
            return None;
        }
        self.states.get(vcpu).copied()
    }

    /// Moves `vcpu` to `to` if the spec's state machine allows it from its
    /// current state. Returns the previous state.
    pub fn transition(&mut self, vcpu: usize, to: HartState) -> Result<HartState, HsmError> {
        if vcpu >= self.count {
            return Err(HsmError::InvalidVcpu);
        }
        let slot = self.states.get_mut(vcpu).ok_or(HsmError::InvalidVcpu)?;
        let from = *slot;
        if !from.can_transition_to(to) {
            return Err(HsmError::IllegalTransition { from, to });
        }
        *slot = to;
        Ok(from)
    }

    /// `hart_start` accepted: STOPPED → START_PENDING.
    pub fn start(&mut self, vcpu: usize) -> Result<(), HsmError> {
        self.step(vcpu, HartState::Stopped, HartState::StartPending)
    }

    /// The core is about to run the started vCPU: START_PENDING → STARTED.
    pub fn start_complete(&mut self, vcpu: usize) -> Result<(), HsmError> {
        self.step(vcpu, HartState::StartPending, HartState::Started)
    }

    /// `hart_stop` by the vCPU itself: STARTED → STOP_PENDING.
    pub fn stop(&mut self, vcpu: usize) -> Result<(), HsmError> {
        self.step(vcpu, HartState::Started, HartState::StopPending)
    }

    /// The core has stopped running the vCPU: STOP_PENDING → STOPPED.
    pub fn stop_complete(&mut self, vcpu: usize) -> Result<(), HsmError> {
        self.step(vcpu, HartState::StopPending, HartState::Stopped)
    }

    /// `hart_suspend` by the vCPU itself: STARTED → SUSPEND_PENDING.
    pub fn suspend(&mut self, vcpu: usize) -> Result<(), HsmError> {
        self.step(vcpu, HartState::Started, HartState::SuspendPending)
    }

    /// The core has parked the vCPU: SUSPEND_PENDING → SUSPENDED.
    pub fn suspend_complete(&mut self, vcpu: usize) -> Result<(), HsmError> {
        self.step(vcpu, HartState::SuspendPending, HartState::Suspended)
    }

    /// A wake-up event for a suspended vCPU: SUSPENDED → RESUME_PENDING.
    pub fn resume(&mut self, vcpu: usize) -> Result<(), HsmError> {
        self.step(vcpu, HartState::Suspended, HartState::ResumePending)
    }

    /// The core runs the woken vCPU again: RESUME_PENDING → STARTED.
    pub fn resume_complete(&mut self, vcpu: usize) -> Result<(), HsmError> {
        self.step(vcpu, HartState::ResumePending, HartState::Started)
    }

    /// Moves `vcpu` from exactly `from` to `to` (an edge of the state machine).
    fn step(&mut self, vcpu: usize, from: HartState, to: HartState) -> Result<(), HsmError> {
        let current = self.get(vcpu).ok_or(HsmError::InvalidVcpu)?;
        if current != from {
            return Err(HsmError::IllegalTransition { from: current, to });
        }
        self.transition(vcpu, to).map(drop)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code: a panic is how a test fails
mod tests {
    use super::*;
    use HartState::*;

    const ALL: [HartState; 7] = [
        Started,
        Stopped,
        StartPending,
        StopPending,
        Suspended,
        SuspendPending,
        ResumePending,
    ];

    #[test]
    fn state_ids_match_the_spec_table() {
        let expected = [
            (Started, 0),
            (Stopped, 1),
            (StartPending, 2),
            (StopPending, 3),
            (Suspended, 4),
            (SuspendPending, 5),
            (ResumePending, 6),
        ];
        for (s, id) in expected {
            assert_eq!(s.id(), id);
            assert_eq!(HartState::from_id(id), Some(s));
        }
        assert_eq!(HartState::from_id(7), None);
        assert_eq!(HartState::from_id(u64::MAX), None);
    }

    #[test]
    fn exactly_the_spec_edges_are_legal() {
        let edges = [
            (Stopped, StartPending),
            (StartPending, Started),
            (Started, StopPending),
            (StopPending, Stopped),
            (Started, SuspendPending),
            (SuspendPending, Suspended),
            (Suspended, ResumePending),
            (ResumePending, Started),
        ];
        for from in ALL {
            for to in ALL {
                assert_eq!(
                    from.can_transition_to(to),
                    edges.contains(&(from, to)),
                    "{from:?} -> {to:?}"
                );
            }
        }
    }

    #[test]
    fn new_checks_count_and_boot_vcpu() {
        assert_eq!(HsmStates::new(0, 0), Err(HsmError::BadVcpuCount));
        assert_eq!(
            HsmStates::new(MAX_VCPUS + 1, 0),
            Err(HsmError::BadVcpuCount)
        );
        assert_eq!(HsmStates::new(2, 2), Err(HsmError::InvalidVcpu));
        let s = HsmStates::new(MAX_VCPUS, MAX_VCPUS - 1).unwrap();
        assert_eq!(s.vcpu_count(), MAX_VCPUS);
        assert_eq!(s.get(MAX_VCPUS - 1), Some(Started));
        assert_eq!(s.get(0), Some(Stopped));
        assert_eq!(s.get(MAX_VCPUS), None);
    }

    #[test]
    fn full_lifecycle() {
        let mut s = HsmStates::new(2, 0).unwrap();
        assert_eq!(s.get(0), Some(Started));
        assert_eq!(s.get(1), Some(Stopped));
        s.start(1).unwrap();
        assert_eq!(s.get(1), Some(StartPending));
        s.start_complete(1).unwrap();
        assert_eq!(s.get(1), Some(Started));
        s.suspend(1).unwrap();
        assert_eq!(s.get(1), Some(SuspendPending));
        s.suspend_complete(1).unwrap();
        assert_eq!(s.get(1), Some(Suspended));
        s.resume(1).unwrap();
        assert_eq!(s.get(1), Some(ResumePending));
        s.resume_complete(1).unwrap();
        assert_eq!(s.get(1), Some(Started));
        s.stop(1).unwrap();
        assert_eq!(s.get(1), Some(StopPending));
        s.stop_complete(1).unwrap();
        assert_eq!(s.get(1), Some(Stopped));
        // vCPU 0 untouched throughout.
        assert_eq!(s.get(0), Some(Started));
    }

    #[test]
    fn illegal_transitions_are_rejected_and_change_nothing() {
        let mut s = HsmStates::new(2, 0).unwrap();
        let before = s.clone();
        assert_eq!(
            s.start(0),
            Err(HsmError::IllegalTransition {
                from: Started,
                to: StartPending
            })
        );
        assert_eq!(
            s.stop(1),
            Err(HsmError::IllegalTransition {
                from: Stopped,
                to: StopPending
            })
        );
        assert_eq!(
            s.start_complete(1),
            Err(HsmError::IllegalTransition {
                from: Stopped,
                to: Started
            })
        );
        assert_eq!(
            s.suspend(1),
            Err(HsmError::IllegalTransition {
                from: Stopped,
                to: SuspendPending
            })
        );
        assert_eq!(s.start(2), Err(HsmError::InvalidVcpu));
        assert_eq!(s.transition(5, Started), Err(HsmError::InvalidVcpu));
        assert_eq!(s, before);

        // Both edges into STARTED exist, but each *_complete only takes its own.
        s.start(1).unwrap();
        assert_eq!(
            s.resume_complete(1),
            Err(HsmError::IllegalTransition {
                from: StartPending,
                to: Started
            })
        );
        assert_eq!(s.get(1), Some(StartPending));
        // A second start of a START_PENDING vCPU fails.
        assert!(matches!(
            s.start(1),
            Err(HsmError::IllegalTransition { .. })
        ));
        s.start_complete(1).unwrap();
        s.suspend(1).unwrap();
        s.suspend_complete(1).unwrap();
        s.resume(1).unwrap();
        assert_eq!(
            s.start_complete(1),
            Err(HsmError::IllegalTransition {
                from: ResumePending,
                to: Started
            })
        );
        assert_eq!(s.get(1), Some(ResumePending));
    }

    #[test]
    fn generic_transition_returns_previous_state() {
        let mut s = HsmStates::new(1, 0).unwrap();
        assert_eq!(s.transition(0, StopPending), Ok(Started));
        assert_eq!(s.transition(0, Stopped), Ok(StopPending));
    }

    #[test]
    fn suspended_vcpu_is_reset_by_a_reboot_and_cannot_be_started() {
        let mut s = HsmStates::new(2, 0).unwrap();
        s.start(1).unwrap();
        s.start_complete(1).unwrap();
        s.suspend(1).unwrap();
        s.suspend_complete(1).unwrap();
        // Seen as SUSPENDED; neither hart_start nor hart_stop applies to it.
        assert_eq!(s.get(1), Some(Suspended));
        assert!(s.start(1).is_err());
        assert!(s.stop(1).is_err());
        assert!(s.suspend(1).is_err());
        assert_eq!(s.get(1), Some(Suspended));
        // A reboot while suspended: the boot layout, and no resume left over.
        s.reset(0).unwrap();
        assert_eq!([s.get(0), s.get(1)], [Some(Started), Some(Stopped)]);
        assert!(s.resume(1).is_err());
    }

    #[test]
    fn reset_restores_boot_layout() {
        let mut s = HsmStates::new(3, 0).unwrap();
        s.start(1).unwrap();
        s.start(2).unwrap();
        s.start_complete(2).unwrap();
        s.reset(1).unwrap();
        assert_eq!(
            [s.get(0), s.get(1), s.get(2)],
            [Some(Stopped), Some(Started), Some(Stopped)]
        );
        assert_eq!(s.reset(3), Err(HsmError::InvalidVcpu));
    }
}
