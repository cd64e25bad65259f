//! The SBI v2.0 implementation Ferrovisor's guests see.
//!
//! A guest kernel in VS-mode calls its "firmware" with `ecall`; the VM core
//! traps it, packs the registers into an [`SbiCall`] and calls [`handle`]. This
//! crate decodes the call, validates every argument against the SBI v2.0 spec
//! and, only for valid calls, asks the VM (through the [`SbiEnv`] trait the core
//! implements) to do the work. It never touches hardware. The answer is an
//! [`SbiOutcome`]: return to the guest with an [`SbiRet`], stop or suspend the
//! calling vCPU, or reset the whole VM.
//!
//! # Extensions
//!
//! | EID | name | functions |
//! | --- | --- | --- |
//! | `0x10` | BASE | all seven; spec version 2.0 |
//! | `0x54494D45` | TIME | `set_timer` |
//! | `0x735049` | IPI (`sPI`) | `send_ipi` |
//! | `0x52464E43` | RFENCE | `remote_fence_i`, `remote_sfence_vma[_asid]`; the `hfence_*` ones return `SBI_ERR_NOT_SUPPORTED` (no nested virtualisation) |
//! | `0x48534D` | HSM | `hart_start`, `hart_stop`, `hart_get_status`, `hart_suspend` (every non-reserved type: platform-specific retentive types `0x10000000..=0x7FFFFFFF` behave as the default retentive one, platform-specific non-retentive types `0x90000000..=0xFFFFFFFF` as the default non-retentive one) |
//! | `0x53525354` | SRST | `system_reset` (shutdown, cold and warm reboot; reasons "none" and "system failure") |
//! | `0x53555350` | SUSP | `system_suspend` (`SUSPEND_TO_RAM` only, when every other vCPU is STOPPED; resumes like a non-retentive `hart_suspend`) |
//! | `0x4442434E` | DBCN | `console_write`, `console_read`, `console_write_byte` |
//! | `0x46574654` | FWFT | `set`, `get` (SBI v3.0): `MISALIGNED_EXC_DELEG` reads 1 and may not be cleared (misaligned exceptions reaching the hypervisor always go to the guest); `PTE_AD_HW_UPDATING` per vCPU when the hart has Svadu (`henvcfg.ADUE`); the other four return `SBI_ERR_NOT_SUPPORTED` (see below) |
//! | `0x504D55` | PMU | every v2.0 function; per-vCPU virtual counters (cycle, instret, firmware events), no snapshots ([`pmu`]) |
//! | `0x00`, `0x01`, `0x02` | legacy | `set_timer`, `console_putchar`, `console_getchar` |
//!
//! Every other EID (legacy `0x03..=0x0F` included), and every unknown FID of a
//! supported extension, returns `SBI_ERR_NOT_SUPPORTED`; `probe_extension`
//! reports 1 exactly for the EIDs in the table ([`EXTENSIONS`]).
//!
//! ## Knowingly absent
//!
//! The host firmware (OpenSBI 1.5 on QEMU `virt`) also offers these; guests
//! do not get them, for the reason given:
//!
//! | EID | name | why not |
//! | --- | --- | --- |
//! | `0x44425452` | DBTR | needs Sdtrig virtualisation: the trigger CSRs (`tselect`, `tdata1..3`) are M-mode state the firmware owns, shared by every vCPU of the hart. Offering DBTR means multiplexing the host's triggers across vCPUs (reinstalling them through the host's DBTR on every vCPU switch, restricted to VS/VU with `mcontrol6.vs/vu`) and a per-vCPU shared-memory area; QEMU's `rv64` has only a few triggers. Not done. |
//!
//! FWFT features that are `SBI_ERR_NOT_SUPPORTED` ("missing dependencies"):
//! `LANDING_PAD` (Zicfilp), `SHADOW_STACK` (Zicfiss: also `ssp` to switch per
//! vCPU), `DOUBLE_TRAP` (Ssdbltrp: `vsstatus.SDT` handling on every injected
//! trap) and `POINTER_MASKING_PMLEN` (Ssnpm, `henvcfg.PMM`): QEMU's default
//! `rv64` lacks them and the hypervisor does not virtualise their state.
//!
//! # Argument conventions (RV64 guests)
//!
//! * EIDs and FIDs are signed 32-bit values sign-extended into `a7`/`a6`; the
//!   whole register is compared, so stray upper bits mean "not supported".
//! * Arguments the spec declares 32 bits wide (`suspend_type`, `reset_type`,
//!   `reset_reason`) use only the low 32 bits of their register, and 8-bit ones
//!   (`console_write_byte`, legacy `console_putchar`) only the low 8, as the
//!   spec's binary-encoding chapter asks of the SBI implementation.
//! * DBCN's physical address is `base_addr_lo` (the low XLEN = 64 bits) plus
//!   `base_addr_hi` (the bits above 64): with XLEN = 64 a non-zero
//!   `base_addr_hi` is an address beyond 2^64, which is never guest RAM, so it
//!   is `SBI_ERR_INVALID_PARAM`.
//! * The legacy extensions return only `a0`; see [`SbiRet`] for how that maps.
//!
//! # Which error wins
//!
//! When several arguments are wrong, the first failing check decides: the FID,
//! then hart ids / the hart mask, then the target hart's HSM state, then
//! addresses and ranges (`hart_start`: `INVALID_PARAM` before
//! `ALREADY_AVAILABLE` before `INVALID_ADDRESS`). `system_suspend`:
//! `INVALID_PARAM` (sleep type) before `INVALID_ADDRESS` before `DENIED`
//! (another vCPU not STOPPED), as OpenSBI orders them. FWFT `set`: reserved
//! flag bits (`INVALID_PARAM`), then the feature id (`DENIED`, or
//! `NOT_SUPPORTED` for a standard feature this VM cannot offer), then the
//! lock (`DENIED_LOCKED`), then the value (`INVALID_PARAM`). A call rejected
//! for its arguments has asked the [`SbiEnv`] for nothing.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(test)]
extern crate std;

mod dispatch;
mod env;
mod fwft;
mod hart_mask;
mod hsm;
pub mod pmu;
mod ret;

use fv_addr::GuestPhysAddr;
use sbi_spec::srst;

pub use dispatch::{handle, probe_extension, DBCN_MAX_CHUNK, EXTENSIONS, SPEC_VERSION};
pub use env::{ConsoleError, Fence, SbiEnv};
pub use fwft::{FwftFeature, FwftSetError, FWFT_FLAG_LOCK};
pub use hart_mask::{HartMask, HartMaskIter, HART_MASK_BASE_ALL};
pub use hsm::{HartState, HsmError, HsmStates, MAX_VCPUS};
pub use pmu::{FwEvent, PmuRaw, VcpuPmu};
pub use ret::{SbiError, SbiRet};

/// One trapped `ecall` from VS-mode: `a7` = EID, `a6` = FID, `a0..a5` = arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SbiCall {
    /// Extension ID (`a7`).
    pub eid: u64,
    /// Function ID (`a6`); ignored by the legacy extensions.
    pub fid: u64,
    /// `a0..a5`.
    pub args: [u64; 6],
}

impl SbiCall {
    /// A call with the given registers.
    pub const fn new(eid: u64, fid: u64, args: [u64; 6]) -> Self {
        Self { eid, fid, args }
    }
}

/// What the VM core must do after a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SbiOutcome {
    /// Write `a0 = error`, `a1 = value`, advance `sepc` past the `ecall` (4
    /// bytes) and keep running the vCPU.
    Return(SbiRet),
    /// `sbi_hart_stop`: the calling vCPU stops itself. Do not return to it;
    /// move it STARTED → STOP_PENDING → STOPPED. (Were that ever to fail, return
    /// `SBI_ERR_FAILED` to the caller instead.)
    StopSelf,
    /// `sbi_hart_suspend` or `sbi_system_suspend` (which arrives as a
    /// non-retentive suspend: the other vCPUs are all STOPPED, so the "system"
    /// is this vCPU): park the calling vCPU (STARTED → SUSPEND_PENDING →
    /// SUSPENDED, seen by the other vCPUs' `hart_get_status`) until an
    /// interrupt it enabled in `sie` is pending (as `wfi` waits, whatever
    /// `sstatus.SIE` says), then (SUSPENDED → RESUME_PENDING → STARTED) resume
    /// it as the [`SuspendType`] says. Its interrupt enables stay as they are
    /// while it waits.
    Suspend(SuspendType),
    /// `sbi_system_reset`: shut down or reboot the whole VM.
    SystemReset {
        /// Shutdown, cold or warm reboot.
        kind: ResetKind,
        /// Why the guest asked.
        reason: ResetReason,
    },
}

/// How a suspended vCPU resumes (`suspend_type` of `sbi_hart_suspend`).
///
/// SBI v2.0 §9.4's types: `0x00000000` default retentive, `0x10000000..=0x7FFFFFFF`
/// platform-specific retentive (here: the default retentive one),
/// `0x80000000` default non-retentive, `0x90000000..=0xFFFFFFFF`
/// platform-specific non-retentive (here: the default non-retentive one);
/// `0x00000001..=0x0FFFFFFF` and `0x80000001..=0x8FFFFFFF` are reserved
/// (`SBI_ERR_INVALID_PARAM`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SuspendType {
    /// Default retentive suspend (`0x00000000`): on wake-up the call returns
    /// `SBI_SUCCESS` (write `a0 = 0`, `a1 = 0`, `sepc += 4`); all other state is kept.
    Retentive,
    /// Default non-retentive suspend (`0x80000000`): on wake-up the vCPU
    /// resumes in VS-mode at `resume_addr` with `a0` = its hart id, `a1 =
    /// opaque`, `vsatp = 0` and `vsstatus.SIE = 0` (the spec's "HSM hart
    /// resume register state"; every other register is undefined by the spec,
    /// and the core keeps CSRs such as `vsie`, `vstvec` and pending
    /// interrupts, so the interrupt that woke it is still pending).
    NonRetentive {
        /// Where to resume (checked to be guest RAM).
        resume_addr: GuestPhysAddr,
        /// Value for `a1` on resume.
        opaque: u64,
    },
}

impl SuspendType {
    /// The spec's `suspend_type` value.
    pub const fn raw(&self) -> u32 {
        match self {
            SuspendType::Retentive => sbi_spec::hsm::suspend_type::RETENTIVE,
            SuspendType::NonRetentive { .. } => sbi_spec::hsm::suspend_type::NON_RETENTIVE,
        }
    }
}

/// `reset_type` of `sbi_system_reset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum ResetKind {
    /// Shutdown (`0x00000000`): power the VM off.
    Shutdown = srst::RESET_TYPE_SHUTDOWN,
    /// Cold reboot (`0x00000001`): reset the whole VM, devices included.
    ColdReboot = srst::RESET_TYPE_COLD_REBOOT,
    /// Warm reboot (`0x00000002`): reset the vCPUs and "parts of the system".
    WarmReboot = srst::RESET_TYPE_WARM_REBOOT,
}

impl ResetKind {
    /// The spec's `reset_type` value.
    pub const fn raw(self) -> u32 {
        self as u32
    }
}

/// `reset_reason` of `sbi_system_reset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum ResetReason {
    /// No reason (`0x00000000`).
    NoReason = srst::RESET_REASON_NO_REASON,
    /// System failure (`0x00000001`).
    SystemFailure = srst::RESET_REASON_SYSTEM_FAILURE,
}

impl ResetReason {
    /// The spec's `reset_reason` value.
    pub const fn raw(self) -> u32 {
        self as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn srst_and_suspend_values_match_the_spec() {
        assert_eq!(ResetKind::Shutdown.raw(), 0);
        assert_eq!(ResetKind::ColdReboot.raw(), 1);
        assert_eq!(ResetKind::WarmReboot.raw(), 2);
        assert_eq!(ResetReason::NoReason.raw(), 0);
        assert_eq!(ResetReason::SystemFailure.raw(), 1);
        assert_eq!(SuspendType::Retentive.raw(), 0);
        let nr = SuspendType::NonRetentive {
            resume_addr: GuestPhysAddr::new(0),
            opaque: 0,
        };
        assert_eq!(nr.raw(), 0x8000_0000);
    }
}
