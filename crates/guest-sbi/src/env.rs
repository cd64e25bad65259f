//! What the SBI layer needs from the VM it serves.

use fv_addr::GuestPhysAddr;

use crate::{FwEvent, FwftFeature, FwftSetError, HartState, HsmError, PmuRaw, VcpuPmu};

/// A remote fence one target vCPU must perform, already validated.
///
/// `start`/`size` are guest-virtual (VS-stage) addresses. The spec's two
/// "whole address space" encodings (`start == 0 && size == 0`, or `size ==
/// 2^XLEN - 1`) both arrive here as `start == 0, size == u64::MAX`
/// ([`Fence::covers_all`]); any other range is non-empty and does not wrap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fence {
    /// `FENCE.I` (`sbi_remote_fence_i`).
    I,
    /// `SFENCE.VMA` over `[start, start + size)` for every ASID (`sbi_remote_sfence_vma`).
    Vma {
        /// First guest-virtual address.
        start: u64,
        /// Length in bytes (`u64::MAX` with `start == 0`: everything).
        size: u64,
    },
    /// `SFENCE.VMA` over `[start, start + size)` for one ASID
    /// (`sbi_remote_sfence_vma_asid`).
    VmaAsid {
        /// First guest-virtual address.
        start: u64,
        /// Length in bytes (`u64::MAX` with `start == 0`: everything).
        size: u64,
        /// The guest's ASID, passed through unchanged (the core masks it to its ASIDLEN).
        asid: u64,
    },
}

impl Fence {
    /// `size` value of a whole-address-space fence.
    pub const ALL: u64 = u64::MAX;

    /// Whether this is an address fence covering the whole address space.
    pub const fn covers_all(&self) -> bool {
        match self {
            Fence::I => false,
            Fence::Vma { start, size } | Fence::VmaAsid { start, size, .. } => {
                *start == 0 && *size == Fence::ALL
            }
        }
    }
}

/// Why the debug console could not move bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsoleError {
    /// An I/O error on the console; the guest sees `SBI_ERR_FAILED`.
    Io,
    /// This VM may not use the console; the guest sees `SBI_ERR_DENIED`.
    Denied,
}

/// Everything the SBI layer needs from the VM it serves, implemented by the VM
/// core. Called on the hart that runs the calling vCPU. Every argument has
/// already been validated by [`crate::handle`]: vCPU indices are below
/// [`SbiEnv::vcpu_count`] and guest ranges passed [`SbiEnv::is_guest_ram`].
pub trait SbiEnv {
    /// Number of vCPUs; the hart ids the guest sees are `0..vcpu_count`.
    fn vcpu_count(&self) -> usize;

    /// Index (= guest hart id) of the calling vCPU.
    fn current_vcpu(&self) -> usize;

    /// HSM state of `vcpu` (`vcpu < vcpu_count`).
    fn hart_state(&self, vcpu: usize) -> HartState;

    /// Starts `vcpu` (seen STOPPED by [`SbiEnv::hart_state`] a moment ago) at
    /// `start_addr` (guest RAM) in VS-mode with `a0 = vcpu`, `a1 = opaque`,
    /// `vsatp = 0`, `vsstatus.SIE = 0`. The core does STOPPED → START_PENDING
    /// atomically (e.g. [`crate::HsmStates::start`] under its lock) and later
    /// START_PENDING → STARTED. If another vCPU started it in between, return
    /// that error: `IllegalTransition` becomes `SBI_ERR_ALREADY_AVAILABLE`,
    /// anything else `SBI_ERR_FAILED`.
    fn start_vcpu(
        &mut self,
        vcpu: usize,
        start_addr: GuestPhysAddr,
        opaque: u64,
    ) -> Result<(), HsmError>;

    /// Programs the calling vCPU's next timer event at `stime_value` (in
    /// `time` units) and clears its pending supervisor timer interrupt.
    fn set_timer(&mut self, stime_value: u64);

    /// Makes a supervisor software interrupt pending on `vcpu` (may be the caller).
    fn send_ipi(&mut self, vcpu: usize);

    /// Makes `vcpu` (may be the caller) perform `fence` before it next runs
    /// guest code. Returns once the request is queued or done; the call ends
    /// with [`SbiEnv::remote_fences_issued`].
    fn remote_fence(&mut self, vcpu: usize, fence: Fence);

    /// Called once after the [`SbiEnv::remote_fence`] requests of one RFENCE
    /// call: returns only when every target has performed its fence or is out
    /// of the guest and will perform it before it runs guest code again (the
    /// SBI spec's remote fences are complete when the call returns).
    fn remote_fences_issued(&mut self) {}

    /// Whether all `len` bytes from `gpa` are guest RAM (not MMIO, not
    /// unmapped). `len` is at least 1 and `gpa + len` does not overflow.
    fn is_guest_ram(&self, gpa: GuestPhysAddr, len: u64) -> bool;

    /// Writes up to `len` bytes of guest RAM at `gpa` (checked with
    /// [`SbiEnv::is_guest_ram`]; `len <= DBCN_MAX_CHUNK`, may cross one page
    /// boundary) to the console without blocking. Returns how many were
    /// written (`<= len`; 0 if the console is busy).
    fn console_write(&mut self, gpa: GuestPhysAddr, len: u64) -> Result<u64, ConsoleError>;

    /// Reads up to `len` pending console bytes into guest RAM at `gpa`
    /// (same guarantees as [`SbiEnv::console_write`]) without blocking.
    /// Returns how many were stored (`<= len`; 0 if none are pending).
    fn console_read(&mut self, gpa: GuestPhysAddr, len: u64) -> Result<u64, ConsoleError>;

    /// Writes one byte to the console, blocking until it is accepted.
    fn console_putchar(&mut self, byte: u8) -> Result<(), ConsoleError>;

    /// One pending console byte, if any (non-blocking).
    fn console_getchar(&mut self) -> Option<u8>;

    /// FWFT: the calling vCPU's current value of `feature`, or `None` if this
    /// VM cannot offer it (the guest sees `SBI_ERR_NOT_SUPPORTED`).
    fn fwft_get(&self, feature: FwftFeature) -> Option<u64>;

    /// FWFT: whether `feature` is locked on the calling vCPU (until its next
    /// hart reset: `hart_start`, VM reboot).
    fn fwft_locked(&self, feature: FwftFeature) -> bool;

    /// FWFT: sets `feature` (offered: [`SbiEnv::fwft_get`] is `Some`, not
    /// locked) to `value` (valid for it, [`FwftFeature::value_is_valid`]) on
    /// the calling vCPU, and locks it if `lock`. On error nothing changes.
    fn fwft_set(
        &mut self,
        feature: FwftFeature,
        value: u64,
        lock: bool,
    ) -> Result<(), FwftSetError>;

    /// `sbi_get_impl_id` result.
    fn impl_id(&self) -> u64;

    /// `sbi_get_impl_version` result.
    fn impl_version(&self) -> u64;

    /// `sbi_get_mvendorid` result (0 is always legal).
    fn mvendorid(&self) -> u64;

    /// `sbi_get_marchid` result (0 is always legal).
    fn marchid(&self) -> u64;

    /// `sbi_get_mimpid` result (0 is always legal).
    fn mimpid(&self) -> u64;

    /// The calling vCPU's PMU counters.
    fn pmu(&mut self) -> &mut VcpuPmu;

    /// The calling vCPU's event totals now (monotonic; hardware counts only
    /// while this vCPU ran guest code).
    fn pmu_raw(&self) -> PmuRaw;

    /// Counts one firmware `event` on `vcpu` (may be the caller).
    fn count_fw_event(&mut self, vcpu: usize, event: FwEvent);
}
