//! Decoding and validation of every supported call.

use fv_addr::GuestPhysAddr;
use sbi_spec::{base, dbcn, fwft, hsm, legacy, pmu, rfnc, spi, srst, susp, time};

use crate::{
    ConsoleError, Fence, FwEvent, HartMask, HartState, HsmError, ResetKind, ResetReason, SbiCall,
    SbiEnv, SbiError, SbiOutcome, SbiRet, SuspendType,
};

/// `sbi_get_spec_version` result: v2.0, `major << 24 | minor`.
pub const SPEC_VERSION: u64 = 2 << 24;

/// The most bytes one DBCN `console_write`/`console_read` moves; larger
/// requests are served partially (the spec allows it) and the guest calls again.
pub const DBCN_MAX_CHUNK: u64 = 4096;

/// Smallest instruction (compressed, 2 bytes): a `start_addr`/`resume_addr`
/// must have at least this much guest RAM from it.
const MIN_INSN_BYTES: u64 = 2;

const fn eid(raw: usize) -> u64 {
    raw as u64
}

const EID_LEGACY_SET_TIMER: u64 = eid(legacy::LEGACY_SET_TIMER);
const EID_LEGACY_CONSOLE_PUTCHAR: u64 = eid(legacy::LEGACY_CONSOLE_PUTCHAR);
const EID_LEGACY_CONSOLE_GETCHAR: u64 = eid(legacy::LEGACY_CONSOLE_GETCHAR);
/// Last EID of the legacy range (0x00..=0x0F, 0x09.. reserved).
const EID_LEGACY_LAST: u64 = 0x0F;
const EID_BASE: u64 = eid(base::EID_BASE);
const EID_TIME: u64 = eid(time::EID_TIME);
const EID_IPI: u64 = eid(spi::EID_SPI);
const EID_RFENCE: u64 = eid(rfnc::EID_RFNC);
const EID_HSM: u64 = eid(hsm::EID_HSM);
const EID_SRST: u64 = eid(srst::EID_SRST);
const EID_DBCN: u64 = eid(dbcn::EID_DBCN);
const EID_SUSP: u64 = eid(susp::EID_SUSP);
const EID_FWFT: u64 = eid(fwft::EID_FWFT);
const EID_PMU: u64 = eid(pmu::EID_PMU);

/// Every EID this implementation provides (what `probe_extension` reports as 1).
pub const EXTENSIONS: [u64; 13] = [
    EID_LEGACY_SET_TIMER,
    EID_LEGACY_CONSOLE_PUTCHAR,
    EID_LEGACY_CONSOLE_GETCHAR,
    EID_BASE,
    EID_TIME,
    EID_IPI,
    EID_RFENCE,
    EID_HSM,
    EID_SRST,
    EID_DBCN,
    EID_SUSP,
    EID_FWFT,
    EID_PMU,
];

/// `sbi_probe_extension(extension_id)`: 1 if provided, 0 otherwise.
pub fn probe_extension(extension_id: u64) -> u64 {
    u64::from(EXTENSIONS.contains(&extension_id))
}

/// Handles one SBI call from the vCPU `env` is running. All validation happens
/// here; `env` is only asked to do work that is valid, and on any error
/// nothing has been done.
pub fn handle<E: SbiEnv + ?Sized>(env: &mut E, call: &SbiCall) -> SbiOutcome {
    let ret = match call.eid {
        0..=EID_LEGACY_LAST => return SbiOutcome::Return(legacy_call(env, call)),
        EID_BASE => base_call(env, call),
        EID_TIME => time_call(env, call),
        EID_IPI => ipi_call(env, call),
        EID_RFENCE => rfence_call(env, call),
        EID_HSM => return hsm_call(env, call),
        EID_SRST => return srst_call(call),
        EID_DBCN => dbcn_call(env, call),
        EID_SUSP => return susp_call(env, call),
        EID_FWFT => fwft_call(env, call),
        EID_PMU => {
            let raw = env.pmu_raw();
            env.pmu().call(call.fid, call.args, &raw)
        }
        _ => Err(SbiError::NotSupported),
    };
    SbiOutcome::Return(ret.into())
}

/// Legacy extensions: the FID is ignored, the result goes in `a0` only and
/// the caller's `a1` is handed back unchanged in `value`.
fn legacy_call<E: SbiEnv + ?Sized>(env: &mut E, call: &SbiCall) -> SbiRet {
    let [a0, a1, ..] = call.args;
    let result: i64 = match call.eid {
        EID_LEGACY_SET_TIMER => {
            set_timer(env, a0);
            0
        }
        EID_LEGACY_CONSOLE_PUTCHAR => match env.console_putchar(a0 as u8) {
            Ok(()) => 0,
            Err(e) => console_error(e).code(),
        },
        // The byte on success, -1 when there is none.
        EID_LEGACY_CONSOLE_GETCHAR => env.console_getchar().map_or(-1, i64::from),
        _ => SbiError::NotSupported.code(),
    };
    SbiRet {
        error: result,
        value: a1,
    }
}

fn base_call<E: SbiEnv + ?Sized>(env: &mut E, call: &SbiCall) -> Result<u64, SbiError> {
    Ok(match fid(call.fid)? {
        base::GET_SBI_SPEC_VERSION => SPEC_VERSION,
        base::GET_SBI_IMPL_ID => env.impl_id(),
        base::GET_SBI_IMPL_VERSION => env.impl_version(),
        base::PROBE_EXTENSION => probe_extension(call.args[0]),
        base::GET_MVENDORID => env.mvendorid(),
        base::GET_MARCHID => env.marchid(),
        base::GET_MIMPID => env.mimpid(),
        _ => return Err(SbiError::NotSupported),
    })
}

fn time_call<E: SbiEnv + ?Sized>(env: &mut E, call: &SbiCall) -> Result<u64, SbiError> {
    match fid(call.fid)? {
        time::SET_TIMER => {
            set_timer(env, call.args[0]);
            Ok(0)
        }
        _ => Err(SbiError::NotSupported),
    }
}

fn set_timer<E: SbiEnv + ?Sized>(env: &mut E, stime_value: u64) {
    env.set_timer(stime_value);
    let me = env.current_vcpu();
    env.count_fw_event(me, FwEvent::SetTimer);
}

fn ipi_call<E: SbiEnv + ?Sized>(env: &mut E, call: &SbiCall) -> Result<u64, SbiError> {
    match fid(call.fid)? {
        spi::SEND_IPI => {
            let targets = HartMask::decode(call.args[0], call.args[1], env.vcpu_count())?;
            let me = env.current_vcpu();
            for vcpu in &targets {
                env.send_ipi(vcpu);
                env.count_fw_event(me, FwEvent::IpiSent);
                env.count_fw_event(vcpu, FwEvent::IpiReceived);
            }
            Ok(0)
        }
        _ => Err(SbiError::NotSupported),
    }
}

fn rfence_call<E: SbiEnv + ?Sized>(env: &mut E, call: &SbiCall) -> Result<u64, SbiError> {
    let [hart_mask, hart_mask_base, start, size, asid, _] = call.args;
    let fid = fid(call.fid)?;
    match fid {
        rfnc::REMOTE_FENCE_I | rfnc::REMOTE_SFENCE_VMA | rfnc::REMOTE_SFENCE_VMA_ASID => {}
        // REMOTE_HFENCE_* (3..=6) are for guests that are hypervisors
        // themselves: no nested virtualisation here.
        _ => return Err(SbiError::NotSupported),
    }
    let targets = HartMask::decode(hart_mask, hart_mask_base, env.vcpu_count())?;
    let fence = if fid == rfnc::REMOTE_FENCE_I {
        Fence::I
    } else {
        let Some((start, size)) = va_range(start, size)? else {
            // An empty range: nothing to fence anywhere.
            return Ok(0);
        };
        if fid == rfnc::REMOTE_SFENCE_VMA {
            Fence::Vma { start, size }
        } else {
            Fence::VmaAsid { start, size, asid }
        }
    };
    let (sent, received) = match fence {
        Fence::I => (FwEvent::FenceISent, FwEvent::FenceIReceived),
        Fence::Vma { .. } => (FwEvent::SfenceVmaSent, FwEvent::SfenceVmaReceived),
        Fence::VmaAsid { .. } => (FwEvent::SfenceVmaAsidSent, FwEvent::SfenceVmaAsidReceived),
    };
    let me = env.current_vcpu();
    for vcpu in &targets {
        env.remote_fence(vcpu, fence);
        env.count_fw_event(me, sent);
        env.count_fw_event(vcpu, received);
    }
    env.remote_fences_issued();
    Ok(0)
}

/// Validates an RFENCE address range: `Some((0, u64::MAX))` for the two
/// whole-address-space encodings, `None` for an empty range, and
/// `SBI_ERR_INVALID_ADDRESS` for a range that runs past the top of the
/// address space (ending exactly at 2^64 is fine).
fn va_range(start: u64, size: u64) -> Result<Option<(u64, u64)>, SbiError> {
    if (start == 0 && size == 0) || size == Fence::ALL {
        return Ok(Some((0, Fence::ALL)));
    }
    if size == 0 {
        return Ok(None);
    }
    // Bytes from `start` to the top of the address space, minus one.
    if size - 1 > u64::MAX - start {
        return Err(SbiError::InvalidAddress);
    }
    Ok(Some((start, size)))
}

fn hsm_call<E: SbiEnv + ?Sized>(env: &mut E, call: &SbiCall) -> SbiOutcome {
    let [a0, a1, a2, ..] = call.args;
    let ret = match fid(call.fid) {
        Ok(hsm::HART_START) => hart_start(env, a0, a1, a2),
        Ok(hsm::HART_STOP) => {
            return match caller_started(env) {
                Ok(()) => SbiOutcome::StopSelf,
                Err(e) => SbiOutcome::Return(SbiRet::err(e)),
            }
        }
        Ok(hsm::HART_GET_STATUS) => vcpu_index(env, a0).map(|v| env.hart_state(v).id()),
        Ok(hsm::HART_SUSPEND) => {
            return match hart_suspend(env, a0, a1, a2) {
                Ok(t) => SbiOutcome::Suspend(t),
                Err(e) => SbiOutcome::Return(SbiRet::err(e)),
            }
        }
        Ok(_) | Err(_) => Err(SbiError::NotSupported),
    };
    SbiOutcome::Return(ret.into())
}

/// `sbi_hart_start(hartid, start_addr, opaque)`.
fn hart_start<E: SbiEnv + ?Sized>(
    env: &mut E,
    hartid: u64,
    start_addr: u64,
    opaque: u64,
) -> Result<u64, SbiError> {
    let vcpu = vcpu_index(env, hartid)?;
    if env.hart_state(vcpu) != HartState::Stopped {
        return Err(SbiError::AlreadyAvailable);
    }
    let start_addr = entry_point(env, start_addr)?;
    env.start_vcpu(vcpu, start_addr, opaque)
        .map_err(|e| match e {
            // Someone else started it since we looked.
            HsmError::IllegalTransition { .. } => SbiError::AlreadyAvailable,
            HsmError::InvalidVcpu | HsmError::BadVcpuCount => SbiError::Failed,
        })?;
    Ok(0)
}

/// Platform-specific retentive suspend types (treated as the default one).
const SUSPEND_PLATFORM_RETENTIVE: core::ops::RangeInclusive<u32> = 0x1000_0000..=0x7FFF_FFFF;
/// Platform-specific non-retentive suspend types (treated as the default one).
const SUSPEND_PLATFORM_NON_RETENTIVE: core::ops::RangeInclusive<u32> = 0x9000_0000..=0xFFFF_FFFF;

/// `sbi_hart_suspend(suspend_type, resume_addr, opaque)`.
fn hart_suspend<E: SbiEnv + ?Sized>(
    env: &mut E,
    suspend_type: u64,
    resume_addr: u64,
    opaque: u64,
) -> Result<SuspendType, SbiError> {
    // `suspend_type` is 32 bits wide: only the low half of the register counts.
    let t = match suspend_type as u32 {
        t if t == hsm::suspend_type::RETENTIVE || SUSPEND_PLATFORM_RETENTIVE.contains(&t) => {
            SuspendType::Retentive
        }
        t if t == hsm::suspend_type::NON_RETENTIVE
            || SUSPEND_PLATFORM_NON_RETENTIVE.contains(&t) =>
        {
            SuspendType::NonRetentive {
                resume_addr: entry_point(env, resume_addr)?,
                opaque,
            }
        }
        // 0x00000001..=0x0FFFFFFF and 0x80000001..=0x8FFFFFFF: reserved.
        _ => return Err(SbiError::InvalidParam),
    };
    caller_started(env)?;
    Ok(t)
}

/// The calling vCPU must be a real, STARTED vCPU (it is running, so anything
/// else means the core's bookkeeping is off): `SBI_ERR_FAILED` otherwise.
fn caller_started<E: SbiEnv + ?Sized>(env: &E) -> Result<(), SbiError> {
    let me = env.current_vcpu();
    if me < env.vcpu_count() && env.hart_state(me) == HartState::Started {
        Ok(())
    } else {
        Err(SbiError::Failed)
    }
}

/// A guest hart id as a vCPU index, or `SBI_ERR_INVALID_PARAM`.
fn vcpu_index<E: SbiEnv + ?Sized>(env: &E, hartid: u64) -> Result<usize, SbiError> {
    match usize::try_from(hartid) {
        Ok(v) if v < env.vcpu_count() => Ok(v),
        _ => Err(SbiError::InvalidParam),
    }
}

/// A `start_addr`/`resume_addr` that must be executable guest RAM, or
/// `SBI_ERR_INVALID_ADDRESS`.
fn entry_point<E: SbiEnv + ?Sized>(env: &E, addr: u64) -> Result<GuestPhysAddr, SbiError> {
    let gpa = GuestPhysAddr::new(addr);
    if gpa.checked_add(MIN_INSN_BYTES).is_ok() && env.is_guest_ram(gpa, MIN_INSN_BYTES) {
        Ok(gpa)
    } else {
        Err(SbiError::InvalidAddress)
    }
}

/// `SUSPEND_TO_RAM`, the one sleep type of `sbi_system_suspend`.
const SLEEP_TYPE_SUSPEND_TO_RAM: u32 = 0;

fn susp_call<E: SbiEnv + ?Sized>(env: &mut E, call: &SbiCall) -> SbiOutcome {
    let [sleep_type, resume_addr, opaque, ..] = call.args;
    let r = match fid(call.fid) {
        Ok(susp::SUSPEND) => system_suspend(env, sleep_type, resume_addr, opaque),
        Ok(_) | Err(_) => Err(SbiError::NotSupported),
    };
    match r {
        Ok(t) => SbiOutcome::Suspend(t),
        Err(e) => SbiOutcome::Return(SbiRet::err(e)),
    }
}

/// `sbi_system_suspend(sleep_type, resume_addr, opaque)`: the VM is
/// suspended to RAM by parking its only running vCPU.
fn system_suspend<E: SbiEnv + ?Sized>(
    env: &mut E,
    sleep_type: u64,
    resume_addr: u64,
    opaque: u64,
) -> Result<SuspendType, SbiError> {
    // `sleep_type` is 32 bits wide. 0x1..=0x7FFFFFFF reserved,
    // 0x80000000.. platform-specific: none implemented.
    if sleep_type as u32 != SLEEP_TYPE_SUSPEND_TO_RAM {
        return Err(SbiError::InvalidParam);
    }
    let resume_addr = entry_point(env, resume_addr)?;
    caller_started(env)?;
    let me = env.current_vcpu();
    if (0..env.vcpu_count()).any(|v| v != me && env.hart_state(v) != HartState::Stopped) {
        // Entry criterion: every other hart STOPPED.
        return Err(SbiError::Denied);
    }
    Ok(SuspendType::NonRetentive {
        resume_addr,
        opaque,
    })
}

fn fwft_call<E: SbiEnv + ?Sized>(env: &mut E, call: &SbiCall) -> Result<u64, SbiError> {
    let [feature, value, flags, ..] = call.args;
    match fid(call.fid)? {
        fwft::SET => crate::fwft::set(env, feature, value, flags),
        fwft::GET => crate::fwft::get(env, feature),
        _ => Err(SbiError::NotSupported),
    }
}

fn srst_call(call: &SbiCall) -> SbiOutcome {
    match fid(call.fid) {
        Ok(srst::SYSTEM_RESET) => match system_reset(call.args[0], call.args[1]) {
            Ok((kind, reason)) => SbiOutcome::SystemReset { kind, reason },
            Err(e) => SbiOutcome::Return(SbiRet::err(e)),
        },
        Ok(_) | Err(_) => SbiOutcome::Return(SbiRet::err(SbiError::NotSupported)),
    }
}

/// `sbi_system_reset(reset_type, reset_reason)`; both are 32 bits wide.
fn system_reset(reset_type: u64, reset_reason: u64) -> Result<(ResetKind, ResetReason), SbiError> {
    let kind = match reset_type as u32 {
        srst::RESET_TYPE_SHUTDOWN => ResetKind::Shutdown,
        srst::RESET_TYPE_COLD_REBOOT => ResetKind::ColdReboot,
        srst::RESET_TYPE_WARM_REBOOT => ResetKind::WarmReboot,
        // 0x3..=0xEFFFFFFF reserved; 0xF0000000.. vendor-specific, none implemented.
        _ => return Err(SbiError::InvalidParam),
    };
    let reason = match reset_reason as u32 {
        srst::RESET_REASON_NO_REASON => ResetReason::NoReason,
        srst::RESET_REASON_SYSTEM_FAILURE => ResetReason::SystemFailure,
        // 0x2..=0xDFFFFFFF reserved; 0xE0000000.. SBI-implementation and
        // 0xF0000000.. vendor-specific reasons: none implemented.
        _ => return Err(SbiError::InvalidParam),
    };
    Ok((kind, reason))
}

fn dbcn_call<E: SbiEnv + ?Sized>(env: &mut E, call: &SbiCall) -> Result<u64, SbiError> {
    let [num_bytes, base_addr_lo, base_addr_hi, ..] = call.args;
    match fid(call.fid)? {
        dbcn::CONSOLE_WRITE => {
            console_transfer(env, num_bytes, base_addr_lo, base_addr_hi, Direction::Write)
        }
        dbcn::CONSOLE_READ => {
            console_transfer(env, num_bytes, base_addr_lo, base_addr_hi, Direction::Read)
        }
        dbcn::CONSOLE_WRITE_BYTE => {
            // `uint8_t byte`: only the low 8 bits count.
            env.console_putchar(call.args[0] as u8)
                .map_err(console_error)?;
            Ok(0)
        }
        _ => Err(SbiError::NotSupported),
    }
}

#[derive(Clone, Copy)]
enum Direction {
    Write,
    Read,
}

/// `sbi_debug_console_{write,read}(num_bytes, base_addr_lo, base_addr_hi)`.
fn console_transfer<E: SbiEnv + ?Sized>(
    env: &mut E,
    num_bytes: u64,
    base_addr_lo: u64,
    base_addr_hi: u64,
    dir: Direction,
) -> Result<u64, SbiError> {
    // XLEN = 64: base_addr_hi holds address bits 64 and up.
    if base_addr_hi != 0 {
        return Err(SbiError::InvalidParam);
    }
    if num_bytes == 0 {
        return Ok(0);
    }
    let gpa = GuestPhysAddr::new(base_addr_lo);
    // The whole buffer the guest named must be guest RAM, even if only the
    // first chunk is used now.
    if gpa.checked_add(num_bytes).is_err() || !env.is_guest_ram(gpa, num_bytes) {
        return Err(SbiError::InvalidParam);
    }
    let chunk = num_bytes.min(DBCN_MAX_CHUNK);
    let done = match dir {
        Direction::Write => env.console_write(gpa, chunk),
        Direction::Read => env.console_read(gpa, chunk),
    }
    .map_err(console_error)?;
    Ok(done.min(chunk))
}

fn console_error(e: ConsoleError) -> SbiError {
    match e {
        ConsoleError::Io => SbiError::Failed,
        ConsoleError::Denied => SbiError::Denied,
    }
}

/// A FID as the `usize` sbi-spec's constants use; a FID that does not fit is
/// not one of them.
fn fid(raw: u64) -> Result<usize, SbiError> {
    usize::try_from(raw).map_err(|_| SbiError::NotSupported)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extension_ids_match_the_spec() {
        assert_eq!(EID_BASE, 0x10);
        assert_eq!(EID_TIME, 0x5449_4D45);
        assert_eq!(EID_IPI, 0x0073_5049);
        assert_eq!(EID_RFENCE, 0x5246_4E43);
        assert_eq!(EID_HSM, 0x0048_534D);
        assert_eq!(EID_SRST, 0x5352_5354);
        assert_eq!(EID_DBCN, 0x4442_434E);
        assert_eq!(EID_SUSP, 0x5355_5350);
        assert_eq!(EID_FWFT, 0x4657_4654);
        assert_eq!(EID_PMU, 0x0050_4D55);
        assert_eq!(
            (
                EID_LEGACY_SET_TIMER,
                EID_LEGACY_CONSOLE_PUTCHAR,
                EID_LEGACY_CONSOLE_GETCHAR
            ),
            (0, 1, 2)
        );
    }

    #[test]
    fn spec_version_is_2_0() {
        // Minor in bits 23:0, major in bits 30:24, bit 31 and above zero.
        assert_eq!(SPEC_VERSION, 0x0200_0000);
        assert_eq!(SPEC_VERSION & 0xff_ffff, 0);
        assert_eq!((SPEC_VERSION >> 24) & 0x7f, 2);
        let v = base::Version::from_raw(SPEC_VERSION as usize);
        assert_eq!(v, base::Version::V2_0);
    }

    #[test]
    fn va_range_rules() {
        assert_eq!(va_range(0, 0), Ok(Some((0, u64::MAX))));
        assert_eq!(va_range(0x1234, u64::MAX), Ok(Some((0, u64::MAX))));
        assert_eq!(va_range(0x1000, 0), Ok(None));
        assert_eq!(va_range(0x1000, 0x2000), Ok(Some((0x1000, 0x2000))));
        // Ends exactly at 2^64: the last page of the address space.
        assert_eq!(
            va_range(0xffff_ffff_ffff_f000, 0x1000),
            Ok(Some((0xffff_ffff_ffff_f000, 0x1000)))
        );
        assert_eq!(
            va_range(0xffff_ffff_ffff_f000, 0x1001),
            Err(SbiError::InvalidAddress)
        );
        assert_eq!(va_range(u64::MAX, 2), Err(SbiError::InvalidAddress));
        // 2 + (2^64 - 2) = 2^64 exactly; one more is too far.
        assert_eq!(va_range(2, u64::MAX - 1), Ok(Some((2, u64::MAX - 1))));
        assert_eq!(va_range(3, u64::MAX - 1), Err(SbiError::InvalidAddress));
    }
}
