//! SBI constants (SBI spec v2.0) and the calls `sbi-rt` does not cover the way
//! the tests need them (raw register set-up, signed error codes).

use sbi_rt::raw::sbi_call_6;
pub use sbi_rt::SbiRet;

/// Base extension.
pub const EID_BASE: usize = 0x10;
/// Timer extension ("TIME").
pub const EID_TIME: usize = 0x5449_4D45;
/// IPI extension ("sPI").
pub const EID_IPI: usize = 0x0073_5049;
/// RFENCE extension ("RFNC").
pub const EID_RFENCE: usize = 0x5246_4E43;
/// Hart state management extension ("HSM").
pub const EID_HSM: usize = 0x0048_534D;
/// System reset extension ("SRST").
pub const EID_SRST: usize = 0x5352_5354;
/// Debug console extension ("DBCN").
pub const EID_DBCN: usize = 0x4442_434E;
/// Legacy extension: console putchar.
pub const EID_LEGACY_CONSOLE_PUTCHAR: usize = 0x01;
/// Legacy extension: shutdown.
pub const EID_LEGACY_SHUTDOWN: usize = 0x08;

/// Base: `sbi_get_spec_version`.
pub const BASE_GET_SPEC_VERSION: usize = 0;
/// Base: `sbi_get_impl_id`.
pub const BASE_GET_IMPL_ID: usize = 1;
/// Base: `sbi_get_impl_version`.
pub const BASE_GET_IMPL_VERSION: usize = 2;
/// Base: `sbi_probe_extension`.
pub const BASE_PROBE_EXTENSION: usize = 3;

/// HSM: `sbi_hart_start`.
pub const HSM_HART_START: usize = 0;
/// HSM: `sbi_hart_stop`.
pub const HSM_HART_STOP: usize = 1;
/// HSM: `sbi_hart_get_status`.
pub const HSM_HART_GET_STATUS: usize = 2;
/// HSM: `sbi_hart_suspend`.
pub const HSM_HART_SUSPEND: usize = 3;

/// HSM hart state STARTED.
pub const HART_STARTED: usize = 0;
/// HSM hart state STOPPED.
pub const HART_STOPPED: usize = 1;
/// HSM hart state START_PENDING.
pub const HART_START_PENDING: usize = 2;
/// HSM hart state STOP_PENDING.
pub const HART_STOP_PENDING: usize = 3;

/// DBCN: `sbi_debug_console_write`.
pub const DBCN_CONSOLE_WRITE: usize = 0;
/// DBCN: `sbi_debug_console_write_byte`.
pub const DBCN_CONSOLE_WRITE_BYTE: usize = 2;

/// SRST: `sbi_system_reset`.
pub const SRST_SYSTEM_RESET: usize = 0;
/// SRST reset type: shutdown.
pub const RESET_TYPE_SHUTDOWN: usize = 0;
/// SRST reset type: cold reboot.
pub const RESET_TYPE_COLD_REBOOT: usize = 1;
/// SRST reset reason: no reason.
pub const RESET_REASON_NONE: usize = 0;
/// SRST reset reason: system failure.
pub const RESET_REASON_SYSTEM_FAILURE: usize = 1;

/// SBI_SUCCESS.
pub const SUCCESS: isize = 0;
/// SBI_ERR_FAILED.
pub const ERR_FAILED: isize = -1;
/// SBI_ERR_NOT_SUPPORTED.
pub const ERR_NOT_SUPPORTED: isize = -2;
/// SBI_ERR_INVALID_PARAM.
pub const ERR_INVALID_PARAM: isize = -3;
/// SBI_ERR_DENIED.
pub const ERR_DENIED: isize = -4;
/// SBI_ERR_INVALID_ADDRESS.
pub const ERR_INVALID_ADDRESS: isize = -5;
/// SBI_ERR_ALREADY_AVAILABLE.
pub const ERR_ALREADY_AVAILABLE: isize = -6;
/// SBI_ERR_ALREADY_STARTED.
pub const ERR_ALREADY_STARTED: isize = -7;
/// SBI_ERR_ALREADY_STOPPED.
pub const ERR_ALREADY_STOPPED: isize = -8;

/// Name of an SBI error code as the spec spells it.
pub fn error_name(e: isize) -> &'static str {
    match e {
        0 => "SUCCESS",
        -1 => "ERR_FAILED",
        -2 => "ERR_NOT_SUPPORTED",
        -3 => "ERR_INVALID_PARAM",
        -4 => "ERR_DENIED",
        -5 => "ERR_INVALID_ADDRESS",
        -6 => "ERR_ALREADY_AVAILABLE",
        -7 => "ERR_ALREADY_STARTED",
        -8 => "ERR_ALREADY_STOPPED",
        -9 => "ERR_NO_SHMEM",
        -10 => "ERR_INVALID_STATE",
        -11 => "ERR_BAD_RANGE",
        -12 => "ERR_TIMEOUT",
        -13 => "ERR_IO",
        -14 => "ERR_DENIED_LOCKED",
        _ => "unknown error code",
    }
}

/// An SBI call's result with the error as the spec's signed code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ret {
    /// `a0`: error code.
    pub error: isize,
    /// `a1`: value.
    pub value: usize,
}

impl From<SbiRet> for Ret {
    fn from(r: SbiRet) -> Self {
        Ret {
            error: r.error as isize,
            value: r.value,
        }
    }
}

impl core::fmt::Display for Ret {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "error={} ({}) value={:#x}",
            self.error,
            error_name(self.error),
            self.value
        )
    }
}

/// Raw SBI call: `a7` = `eid`, `a6` = `fid`, `a0..a5` = `args`.
pub fn call(eid: usize, fid: usize, args: [usize; 6]) -> Ret {
    let [a0, a1, a2, a3, a4, a5] = args;
    // SAFETY: an `ecall` to the SBI implementation; it returns to the next
    // instruction with only a0/a1 changed (SBI calling convention). Calls with
    // effects on this program (reset, hart stop) are the caller's intent.
    unsafe { sbi_call_6(eid, fid, a0, a1, a2, a3, a4, a5) }.into()
}

/// `sbi_probe_extension(eid)`: the raw result (value 0 = not available).
pub fn probe(eid: usize) -> Ret {
    call(EID_BASE, BASE_PROBE_EXTENSION, [eid, 0, 0, 0, 0, 0])
}

/// Legacy `sbi_console_putchar` (EID 0x01): returns the legacy a0 value.
pub fn legacy_putchar(c: u8) -> isize {
    call(EID_LEGACY_CONSOLE_PUTCHAR, 0, [c as usize, 0, 0, 0, 0, 0]).error
}

/// `sbi_debug_console_write` of `bytes` (physical = virtual: no paging here).
pub fn dbcn_write(bytes: &[u8]) -> Ret {
    dbcn_write_raw(bytes.len(), bytes.as_ptr() as usize, 0)
}

/// `sbi_debug_console_write` with explicit register values.
pub fn dbcn_write_raw(num_bytes: usize, base_lo: usize, base_hi: usize) -> Ret {
    call(
        EID_DBCN,
        DBCN_CONSOLE_WRITE,
        [num_bytes, base_lo, base_hi, 0, 0, 0],
    )
}

/// `sbi_hart_get_status(hartid)`.
pub fn hart_get_status(hartid: usize) -> Ret {
    call(EID_HSM, HSM_HART_GET_STATUS, [hartid, 0, 0, 0, 0, 0])
}

/// `sbi_system_reset(reset_type, reset_reason)`; returns only on failure.
pub fn system_reset(reset_type: usize, reset_reason: usize) -> Ret {
    call(
        EID_SRST,
        SRST_SYSTEM_RESET,
        [reset_type, reset_reason, 0, 0, 0, 0],
    )
}

/// Shuts the system (VM) down: SRST shutdown with reason "no reason" if `ok`,
/// else "system failure"; falls back to the legacy shutdown, then parks.
pub fn shutdown(ok: bool) -> ! {
    let reason = if ok {
        RESET_REASON_NONE
    } else {
        RESET_REASON_SYSTEM_FAILURE
    };
    let _ = system_reset(RESET_TYPE_SHUTDOWN, reason);
    let _ = call(EID_LEGACY_SHUTDOWN, 0, [0; 6]);
    loop {
        crate::csr::interrupts_disable();
        crate::csr::wfi();
    }
}
