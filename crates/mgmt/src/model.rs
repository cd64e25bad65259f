//! What the management layer talks about: VM and vCPU states, the records the
//! hypervisor reports, the errors it returns, and which lifecycle action is
//! allowed in which state.

use crate::counters::{ExitCounts, IrqCounts, SbiCounts};
use core::fmt;

/// Why a VM stopped.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum StopReason {
    /// The guest powered off (SBI SRST shutdown, no reason).
    PowerOff,
    /// The guest powered off reporting a system failure (SRST reason 1).
    GuestFailure,
    /// The hypervisor stopped it after something it cannot continue from.
    Fault,
    /// The operator stopped it (`vm stop`).
    Operator,
}

impl StopReason {
    /// Token used in machine replies (`reason=power-off`).
    pub fn name(self) -> &'static str {
        match self {
            StopReason::PowerOff => "power-off",
            StopReason::GuestFailure => "guest-failure",
            StopReason::Fault => "fault",
            StopReason::Operator => "operator",
        }
    }

    /// Words for people.
    pub fn describe(self) -> &'static str {
        match self {
            StopReason::PowerOff => "powered off",
            StopReason::GuestFailure => "guest reported a failure",
            StopReason::Fault => "stopped after a fault",
            StopReason::Operator => "stopped by the operator",
        }
    }
}

/// Lifecycle state of a VM.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum VmState {
    /// In the configuration, never started: holds no memory or vCPUs.
    Defined,
    /// Its vCPUs may be scheduled.
    Running,
    /// Its vCPUs are not scheduled; memory and state are kept.
    Paused,
    /// Being rebooted (images reloaded); no vCPU enters the guest meanwhile.
    Rebooting,
    /// Stopped for good; memory is kept (inspect it, then destroy or start again).
    Stopped(StopReason),
    /// Destroyed: its memory is free again. It can be started again from the configuration.
    Destroyed,
}

impl VmState {
    /// Token used in machine replies (`state=running`); a stop reason is a separate field.
    pub fn name(self) -> &'static str {
        match self {
            VmState::Defined => "defined",
            VmState::Running => "running",
            VmState::Paused => "paused",
            VmState::Rebooting => "rebooting",
            VmState::Stopped(_) => "stopped",
            VmState::Destroyed => "destroyed",
        }
    }

    /// Whether the VM holds memory and vCPUs in this state.
    pub fn holds_resources(self) -> bool {
        matches!(
            self,
            VmState::Running | VmState::Paused | VmState::Rebooting | VmState::Stopped(_)
        )
    }
}

impl fmt::Display for VmState {
    /// `running`, `stopped (powered off)`, ...
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VmState::Stopped(r) => write!(f, "stopped ({})", r.describe()),
            s => f.write_str(s.name()),
        }
    }
}

/// Scheduling state of one vCPU.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub enum VcpuState {
    /// In the guest on its hart right now.
    Running,
    /// Ready, waiting for its hart.
    Runnable,
    /// Waiting for an interrupt (WFI or retentive suspend).
    Blocked,
    /// HSM stopped, or its VM is not running.
    #[default]
    Stopped,
}

impl VcpuState {
    /// Token used in replies.
    pub fn name(self) -> &'static str {
        match self {
            VcpuState::Running => "running",
            VcpuState::Runnable => "runnable",
            VcpuState::Blocked => "blocked",
            VcpuState::Stopped => "stopped",
        }
    }
}

impl fmt::Display for VcpuState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of harts (logical CPU indices 0..64): bit `n` is hart `n`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct HartSet(u64);

impl HartSet {
    /// No harts.
    pub const EMPTY: HartSet = HartSet(0);
    /// Harts a set can hold: 0..CAPACITY.
    pub const CAPACITY: u32 = 64;

    /// The set whose bit `n` stands for hart `n`.
    pub const fn from_bits(bits: u64) -> Self {
        HartSet(bits)
    }

    /// Bit `n` set when hart `n` is in the set.
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// Adds `hart`; false (and no change) when it is not below [`HartSet::CAPACITY`].
    pub fn insert(&mut self, hart: u32) -> bool {
        match 1u64.checked_shl(hart) {
            Some(bit) => {
                self.0 |= bit;
                true
            }
            None => false,
        }
    }

    /// Whether `hart` is in the set.
    pub fn contains(self, hart: u32) -> bool {
        1u64.checked_shl(hart).is_some_and(|bit| self.0 & bit != 0)
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Number of harts in the set.
    pub fn len(self) -> u32 {
        self.0.count_ones()
    }

    /// The harts, lowest first.
    pub fn iter(self) -> impl Iterator<Item = u32> {
        (0..Self::CAPACITY).filter(move |&h| self.contains(h))
    }
}

impl fmt::Display for HartSet {
    /// `0,1,3`; `-` when empty.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("-");
        }
        for (i, h) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{h}")?;
        }
        Ok(())
    }
}

/// One VM as `vm list` shows it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct VmSummary<'a> {
    /// Position in the configuration (what Ctrl-A followed by a digit selects).
    pub index: u32,
    /// Name from the configuration.
    pub name: &'a str,
    /// Lifecycle state.
    pub state: VmState,
    /// vCPUs configured.
    pub vcpus: u32,
    /// Guest RAM configured, bytes.
    pub memory_bytes: u64,
    /// Guest RAM currently backed by host frames, bytes (0 unless it holds resources).
    pub resident_bytes: u64,
    /// Harts its vCPUs are placed on.
    pub harts: HartSet,
    /// Scheduling weight (share of a hart relative to other vCPUs on it).
    pub weight: u32,
    /// VMID in `hgatp`, while it holds one.
    pub vmid: Option<u16>,
    /// Whether console input goes to this VM.
    pub console_focus: bool,
}

/// One vCPU: placement, state and counters since its VM was (re)created.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct VcpuStats {
    /// vCPU index in its VM (the hart ID the guest sees).
    pub vcpu: u32,
    /// Scheduling state.
    pub state: VcpuState,
    /// Hart (logical CPU) whose run queue holds it; `None` while the VM holds no resources.
    pub hart: Option<u32>,
    /// Whether the configuration pins it to that hart.
    pub pinned: bool,
    /// Time spent in the guest, in timer ticks ([`HostStats::timebase_hz`]).
    pub run_ticks: u64,
    /// Times it moved to another hart.
    pub migrations: u64,
    /// Exits by reason.
    pub exits: ExitCounts,
    /// SBI calls by extension.
    pub sbi: SbiCounts,
    /// Virtual interrupts injected, by kind.
    pub irqs: IrqCounts,
    /// Exceptions injected into the guest (access faults, illegal instruction).
    pub exceptions_injected: u64,
}

/// One hart of the host.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct HartStats {
    /// Logical CPU index.
    pub hart: u32,
    /// Hart ID (`mhartid`) of that CPU.
    pub hartid: u64,
    /// vCPUs in its run queue.
    pub vcpus: u32,
    /// Ticks spent running guests.
    pub run_ticks: u64,
    /// Ticks spent idle (in WFI with nothing runnable).
    pub idle_ticks: u64,
}

/// The machine as a whole.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct HostStats {
    /// Timer ticks per second (the DTB's `timebase-frequency`); 0 if unknown.
    pub timebase_hz: u64,
    /// Ticks since the hypervisor started.
    pub uptime_ticks: u64,
    /// RAM the frame allocator manages, bytes.
    pub memory_bytes: u64,
    /// Of that, free, bytes.
    pub free_bytes: u64,
    /// Harts in use.
    pub harts: u32,
}

/// A resource the hypervisor ran out of.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Resource {
    /// Free host frames for guest RAM or page tables.
    Memory,
    /// A free VMID.
    Vmid,
    /// The hypervisor's own heap.
    Heap,
}

impl Resource {
    /// Token used in machine replies.
    pub fn name(self) -> &'static str {
        match self {
            Resource::Memory => "memory",
            Resource::Vmid => "vmid",
            Resource::Heap => "heap",
        }
    }

    /// Words for people.
    pub fn describe(self) -> &'static str {
        match self {
            Resource::Memory => "not enough free memory",
            Resource::Vmid => "no free VMID",
            Resource::Heap => "the hypervisor is out of heap memory",
        }
    }
}

/// Why a management operation was refused or failed.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum MgmtError {
    /// No VM has that name.
    UnknownVm,
    /// The operation is not allowed in the VM's current state.
    WrongState {
        /// The state the VM is in.
        current: VmState,
    },
    /// Not enough of a resource to do it.
    NoResources(Resource),
    /// The VM has no console to switch input to.
    NoConsole,
    /// This hypervisor does not implement the operation (yet).
    Unsupported,
    /// The hypervisor tried and failed; its log says why.
    Failed,
}

impl MgmtError {
    /// Token used in machine replies (`error code=unknown-vm`).
    pub fn code(self) -> &'static str {
        match self {
            MgmtError::UnknownVm => "unknown-vm",
            MgmtError::WrongState { .. } => "wrong-state",
            MgmtError::NoResources(_) => "no-resources",
            MgmtError::NoConsole => "no-console",
            MgmtError::Unsupported => "unsupported",
            MgmtError::Failed => "failed",
        }
    }
}

impl fmt::Display for MgmtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MgmtError::UnknownVm => f.write_str("no such VM"),
            MgmtError::WrongState { current } => write!(f, "the VM is {current}"),
            MgmtError::NoResources(r) => f.write_str(r.describe()),
            MgmtError::NoConsole => f.write_str("the VM has no console"),
            MgmtError::Unsupported => f.write_str("not supported by this hypervisor"),
            MgmtError::Failed => f.write_str("the operation failed (see 'log')"),
        }
    }
}

/// A lifecycle operation, with the states it is allowed from. The hypervisor
/// should use [`Action::check`] so every front end enforces the same rules.
///
/// | action  | allowed from                            | leads to                    |
/// | ------- | --------------------------------------- | --------------------------- |
/// | start   | defined, stopped, destroyed             | running (fresh from config) |
/// | pause   | running                                 | paused                      |
/// | resume  | paused                                  | running                     |
/// | stop    | running, paused, rebooting              | stopped (operator)          |
/// | reboot  | running, paused                         | rebooting, then running     |
/// | destroy | running, paused, rebooting, stopped     | destroyed (memory freed)    |
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Action {
    /// Create the VM from its configuration and run it.
    Start,
    /// Stop scheduling its vCPUs, keeping everything.
    Pause,
    /// Schedule a paused VM's vCPUs again.
    Resume,
    /// Stop it for good (forced; the guest is not asked).
    Stop,
    /// Reset its vCPUs and reload its images.
    Reboot,
    /// Stop it if needed and free its memory.
    Destroy,
}

impl Action {
    /// Every action.
    pub const ALL: [Action; 6] = [
        Action::Start,
        Action::Pause,
        Action::Resume,
        Action::Stop,
        Action::Reboot,
        Action::Destroy,
    ];

    /// The word the shell uses (`vm pause`).
    pub fn verb(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Pause => "pause",
            Action::Resume => "resume",
            Action::Stop => "stop",
            Action::Reboot => "reboot",
            Action::Destroy => "destroy",
        }
    }

    /// Whether the action is allowed when the VM is in `state`.
    pub fn allowed_from(self, state: VmState) -> bool {
        use VmState::*;
        match self {
            Action::Start => matches!(state, Defined | Stopped(_) | Destroyed),
            Action::Pause => state == Running,
            Action::Resume => state == Paused,
            Action::Stop => matches!(state, Running | Paused | Rebooting),
            Action::Reboot => matches!(state, Running | Paused),
            Action::Destroy => state.holds_resources(),
        }
    }

    /// `Ok` if allowed from `current`, else [`MgmtError::WrongState`].
    pub fn check(self, current: VmState) -> Result<(), MgmtError> {
        if self.allowed_from(current) {
            Ok(())
        } else {
            Err(MgmtError::WrongState { current })
        }
    }

    /// The state the VM is in once the action is done.
    pub fn outcome(self) -> VmState {
        match self {
            Action::Start | Action::Resume | Action::Reboot => VmState::Running,
            Action::Pause => VmState::Paused,
            Action::Stop => VmState::Stopped(StopReason::Operator),
            Action::Destroy => VmState::Destroyed,
        }
    }

    /// The states it is allowed from, in words (`running or paused`).
    pub fn needs(self) -> &'static str {
        match self {
            Action::Start => "defined, stopped or destroyed",
            Action::Pause => "running",
            Action::Resume => "paused",
            Action::Stop => "running, paused or rebooting",
            Action::Reboot => "running or paused",
            Action::Destroy => "running, paused, rebooting or stopped",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn hart_set_bit_n_is_hart_n() {
        let mut s = HartSet::EMPTY;
        assert!(s.insert(0));
        assert_eq!(s.bits(), 0b1);
        assert!(s.insert(3));
        assert_eq!(s.bits(), 0b1001);
        assert!(s.insert(63));
        assert_eq!(s.bits(), 0x8000_0000_0000_0009);
        assert!(!s.insert(64));
        assert!(!s.insert(u32::MAX));
        assert_eq!(s.bits(), 0x8000_0000_0000_0009);
        assert!(s.contains(3) && !s.contains(2) && !s.contains(64));
        assert_eq!(s.len(), 3);
        assert_eq!(s.to_string(), "0,3,63");
        assert_eq!(HartSet::from_bits(0b110).to_string(), "1,2");
        assert_eq!(HartSet::EMPTY.to_string(), "-");
    }

    #[test]
    fn state_display() {
        assert_eq!(VmState::Running.to_string(), "running");
        assert_eq!(
            VmState::Stopped(StopReason::PowerOff).to_string(),
            "stopped (powered off)"
        );
        assert_eq!(VmState::Stopped(StopReason::Fault).name(), "stopped");
    }

    #[test]
    fn transition_table() {
        use StopReason::*;
        let states = [
            VmState::Defined,
            VmState::Running,
            VmState::Paused,
            VmState::Rebooting,
            VmState::Stopped(PowerOff),
            VmState::Stopped(Operator),
            VmState::Destroyed,
        ];
        // Rows: states above; columns: Action::ALL order (start pause resume stop reboot destroy).
        let expect = [
            [true, false, false, false, false, false],
            [false, true, false, true, true, true],
            [false, false, true, true, true, true],
            [false, false, false, true, false, true],
            [true, false, false, false, false, true],
            [true, false, false, false, false, true],
            [true, false, false, false, false, false],
        ];
        for (s, row) in states.iter().zip(expect) {
            for (a, ok) in Action::ALL.iter().zip(row) {
                assert_eq!(a.allowed_from(*s), ok, "{a:?} from {s:?}");
                assert_eq!(
                    a.check(*s),
                    if ok {
                        Ok(())
                    } else {
                        Err(MgmtError::WrongState { current: *s })
                    }
                );
            }
        }
        // Every action's outcome state allows what should follow.
        assert!(Action::Pause.outcome() == VmState::Paused);
        assert!(Action::Resume.allowed_from(Action::Pause.outcome()));
        assert!(Action::Start.allowed_from(Action::Destroy.outcome()));
        assert!(Action::Destroy.allowed_from(Action::Stop.outcome()));
    }
}
