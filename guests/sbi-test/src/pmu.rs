//! PMU extension (EID `0x504D55`, SBI v2.0): every function and its error
//! cases, and the counters themselves: a started `cycle`/`instret` counter read
//! with `csrr` goes up, a stopped one stays put, a firmware counter counts
//! this hart's `set_timer` calls.
//!
//! The counter layout is discovered with `COUNTER_GET_INFO` (the counters whose
//! CSR is `cycle` / `instret`, a firmware counter). A few checks (marked
//! "Ferrovisor") pin choices of Ferrovisor's implementation that the spec
//! leaves open: index 1 (`time`) is no counter, privilege filters on hardware
//! events are `SBI_ERR_NOT_SUPPORTED`, snapshots are not implemented.

use core::arch::asm;

use fv_guest_rt::sbi::{self, Ret};
use fv_guest_rt::{println, Reporter};

/// `PMU` in ASCII.
const EID_PMU: usize = 0x0050_4D55;
const NUM_COUNTERS: usize = 0;
const COUNTER_GET_INFO: usize = 1;
const CONFIG_MATCHING: usize = 2;
const COUNTER_START: usize = 3;
const COUNTER_STOP: usize = 4;
const FW_READ: usize = 5;
const FW_READ_HI: usize = 6;
const SNAPSHOT_SET_SHMEM: usize = 7;
/// `SBI_PMU_EVENT_GET_INFO` is SBI v3.0: not a v2.0 function.
const EVENT_GET_INFO: usize = 8;

/// Event indices: type in bits 19:16, code in 15:0.
const HW_CPU_CYCLES: usize = 1;
const HW_INSTRUCTIONS: usize = 2;
/// A hardware general event code the spec does not define.
const HW_UNDEFINED: usize = 0x0fff;
/// `SBI_PMU_FW_SET_TIMER`.
const FW_SET_TIMER: usize = (0xf << 16) | 5;

/// `COUNTER_CONFIG_MATCHING` flags.
const CFG_SKIP_MATCH: usize = 1 << 0;
const CFG_CLEAR_VALUE: usize = 1 << 1;
const CFG_AUTO_START: usize = 1 << 2;
const CFG_SET_SINH: usize = 1 << 6;
/// First undefined configuration flag bit.
const CFG_UNDEFINED: usize = 1 << 8;
/// `COUNTER_START` flag `SET_INIT_VALUE`.
const START_INIT_VALUE: usize = 1 << 0;
/// `COUNTER_STOP` flag `RESET`.
const STOP_RESET: usize = 1 << 0;
/// First undefined start/stop flag bit.
const START_STOP_UNDEFINED: usize = 1 << 2;

const CSR_CYCLE: usize = 0xC00;
const CSR_INSTRET: usize = 0xC02;
/// `counter_info.type` (bit XLEN-1): firmware counter.
const INFO_FW: usize = 1 << 63;

fn pmu(fid: usize, args: [usize; 6]) -> Ret {
    sbi::call(EID_PMU, fid, args)
}

fn read_cycle() -> u64 {
    let v: u64;
    // SAFETY: reading `cycle` has no side effect (the hypervisor emulates it).
    unsafe { asm!("csrr {0}, cycle", out(reg) v, options(nomem, nostack)) };
    v
}

fn read_instret() -> u64 {
    let v: u64;
    // SAFETY: reading `instret` has no side effect.
    unsafe { asm!("csrr {0}, instret", out(reg) v, options(nomem, nostack)) };
    v
}

/// Some work between two counter reads.
fn spin() {
    let mut x = 0u64;
    for i in 0..20_000u64 {
        x = core::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
    }
    core::hint::black_box(x);
}

/// The counters `COUNTER_GET_INFO` describes.
struct Layout {
    count: usize,
    /// Every valid counter, as a mask from index 0 (count <= 64 assumed).
    valid: usize,
    cycle: Option<usize>,
    instret: Option<usize>,
    fw: Option<usize>,
}

fn layout(r: &Reporter) -> Option<Layout> {
    let n = pmu(NUM_COUNTERS, [0; 6]);
    if !r.check(
        "pmu-num-counters",
        n.error == sbi::SUCCESS && (3..=64).contains(&n.value),
        format_args!("{n}: expected 3..=64 counters"),
    ) {
        return None;
    }
    let mut l = Layout {
        count: n.value,
        valid: 0,
        cycle: None,
        instret: None,
        fw: None,
    };
    let mut bad = None;
    for i in 0..l.count {
        let info = pmu(COUNTER_GET_INFO, [i, 0, 0, 0, 0, 0]);
        match info.error {
            sbi::SUCCESS => {
                l.valid |= 1 << i;
                let csr = info.value & 0xfff;
                if info.value & INFO_FW != 0 {
                    l.fw = l.fw.or(Some(i));
                } else if csr == CSR_CYCLE {
                    l.cycle = Some(i);
                } else if csr == CSR_INSTRET {
                    l.instret = Some(i);
                }
            }
            sbi::ERR_INVALID_PARAM => {}
            _ => bad = Some((i, info)),
        }
    }
    match bad {
        Some((i, info)) => r.fail(
            "pmu-get-info-all",
            format_args!("counter {i}: {info}, expected success or ERR_INVALID_PARAM"),
        ),
        None => r.pass("pmu-get-info-all"),
    }
    println!(
        "INFO: sbi-test: PMU {} counters, valid {:#x}, cycle {:?}, instret {:?}, firmware {:?}",
        l.count, l.valid, l.cycle, l.instret, l.fw
    );
    r.check_sbi_error(
        "pmu-get-info-past-end",
        pmu(COUNTER_GET_INFO, [l.count, 0, 0, 0, 0, 0]),
        sbi::ERR_INVALID_PARAM,
    );
    r.check_sbi_error(
        "pmu-get-info-huge-index",
        pmu(COUNTER_GET_INFO, [usize::MAX, 0, 0, 0, 0, 0]),
        sbi::ERR_INVALID_PARAM,
    );
    Some(l)
}

pub fn pmu_checks(r: &Reporter) {
    let probe = sbi::probe(EID_PMU);
    if !r.check(
        "pmu-probe",
        probe.error == sbi::SUCCESS && probe.value != 0,
        format_args!("{probe}"),
    ) {
        return;
    }
    let Some(l) = layout(r) else { return };
    errors(r, &l);
    match l.cycle {
        Some(c) => hw_counter(r, "cycle", c, HW_CPU_CYCLES, l.valid, read_cycle),
        None => r.fail(
            "pmu-cycle-counter",
            format_args!("no counter with CSR cycle"),
        ),
    }
    match l.instret {
        Some(c) => hw_counter(r, "instret", c, HW_INSTRUCTIONS, l.valid, read_instret),
        None => r.fail(
            "pmu-instret-counter",
            format_args!("no counter with CSR instret"),
        ),
    }
    match l.fw {
        Some(c) => fw_counter(r, c, l.count),
        None => r.fail("pmu-fw-counter", format_args!("no firmware counter")),
    }
}

/// Error cases that need no configured counter.
fn errors(r: &Reporter, l: &Layout) {
    let all = l.valid;
    let n = l.count;
    // Counter `c` is the cycle counter, which nothing configured yet: start,
    // stop and SKIP_MATCH have no counter to act on; FW_READ is for firmware
    // counters only. (No cycle counter at all already failed `layout`.)
    let c = l.cycle.unwrap_or(0);
    let cases: [(&str, usize, [usize; 6], isize); 14] = [
        (
            "pmu-config-counter-past-end",
            CONFIG_MATCHING,
            [n, 1, 0, HW_CPU_CYCLES, 0, 0],
            sbi::ERR_INVALID_PARAM,
        ),
        (
            "pmu-config-undefined-flag",
            CONFIG_MATCHING,
            [0, all, CFG_UNDEFINED, HW_CPU_CYCLES, 0, 0],
            sbi::ERR_INVALID_PARAM,
        ),
        (
            "pmu-config-unsupported-event",
            CONFIG_MATCHING,
            [0, all, 0, HW_UNDEFINED, 0, 0],
            sbi::ERR_NOT_SUPPORTED,
        ),
        (
            "pmu-start-past-end",
            COUNTER_START,
            [n, 1, 0, 0, 0, 0],
            sbi::ERR_INVALID_PARAM,
        ),
        (
            "pmu-stop-past-end",
            COUNTER_STOP,
            [n, 1, 0, 0, 0, 0],
            sbi::ERR_INVALID_PARAM,
        ),
        (
            "pmu-fw-read-past-end",
            FW_READ,
            [n, 0, 0, 0, 0, 0],
            sbi::ERR_INVALID_PARAM,
        ),
        (
            "pmu-fw-read-hi-past-end",
            FW_READ_HI,
            [n, 0, 0, 0, 0, 0],
            sbi::ERR_INVALID_PARAM,
        ),
        (
            "pmu-mask-with-time-index-ferrovisor",
            CONFIG_MATCHING,
            [1, 1, 0, HW_CPU_CYCLES, 0, 0],
            sbi::ERR_INVALID_PARAM,
        ),
        (
            "pmu-event-get-info-is-v3",
            EVENT_GET_INFO,
            [0; 6],
            sbi::ERR_NOT_SUPPORTED,
        ),
        (
            "pmu-fw-read-hardware-counter",
            FW_READ,
            [c, 0, 0, 0, 0, 0],
            sbi::ERR_INVALID_PARAM,
        ),
        (
            "pmu-start-unconfigured",
            COUNTER_START,
            [c, 1, 0, 0, 0, 0],
            sbi::ERR_INVALID_PARAM,
        ),
        (
            "pmu-stop-unconfigured",
            COUNTER_STOP,
            [c, 1, 0, 0, 0, 0],
            sbi::ERR_INVALID_PARAM,
        ),
        (
            "pmu-config-skip-match-unconfigured",
            CONFIG_MATCHING,
            [c, 1, CFG_SKIP_MATCH, HW_CPU_CYCLES, 0, 0],
            sbi::ERR_INVALID_PARAM,
        ),
        (
            "pmu-config-sinh-hardware-ferrovisor",
            CONFIG_MATCHING,
            [c, 1, CFG_SET_SINH, HW_CPU_CYCLES, 0, 0],
            sbi::ERR_NOT_SUPPORTED,
        ),
    ];
    for (check, fid, args, want) in cases {
        r.check_sbi_error(check, pmu(fid, args), want);
    }
    r.check_sbi_error(
        "pmu-snapshot-not-supported-ferrovisor",
        pmu(SNAPSHOT_SET_SHMEM, [0x8000_0000, 0, 0, 0, 0, 0]),
        sbi::ERR_NOT_SUPPORTED,
    );
}

/// Configures `event` on the counter set `valid`, expects counter `idx`,
/// and checks start/stop and the CSR reads.
fn hw_counter(r: &Reporter, what: &str, idx: usize, event: usize, valid: usize, read: fn() -> u64) {
    let name = |s: &str| {
        let mut n = fv_guest_rt::report::Name::new("pmu-");
        n.push(what).push("-").push(s);
        n
    };
    let cfg = pmu(
        CONFIG_MATCHING,
        [0, valid, CFG_CLEAR_VALUE | CFG_AUTO_START, event, 0, 0],
    );
    if !r.check(
        &name("config-matching"),
        cfg.error == sbi::SUCCESS && cfg.value == idx,
        format_args!("{cfg}, expected counter {idx}"),
    ) {
        return;
    }
    let a = read();
    spin();
    let b = read();
    r.check(
        &name("started-increases"),
        b > a,
        format_args!("read {a} then {b}"),
    );
    r.check_sbi_error(
        &name("start-already-started"),
        pmu(COUNTER_START, [idx, 1, 0, 0, 0, 0]),
        sbi::ERR_ALREADY_STARTED,
    );
    r.check_sbi_error(
        &name("start-undefined-flag"),
        pmu(COUNTER_START, [idx, 1, START_STOP_UNDEFINED, 0, 0, 0]),
        sbi::ERR_INVALID_PARAM,
    );
    r.check_sbi_error(
        &name("stop"),
        pmu(COUNTER_STOP, [idx, 1, 0, 0, 0, 0]),
        sbi::SUCCESS,
    );
    let c = read();
    spin();
    let d = read();
    r.check(
        &name("stopped-stays"),
        c == d && c >= b,
        format_args!("read {c} then {d} (before stop {b})"),
    );
    r.check_sbi_error(
        &name("stop-already-stopped"),
        pmu(COUNTER_STOP, [idx, 1, 0, 0, 0, 0]),
        sbi::ERR_ALREADY_STOPPED,
    );
    r.check_sbi_error(
        &name("stop-undefined-flag"),
        pmu(COUNTER_STOP, [idx, 1, START_STOP_UNDEFINED, 0, 0, 0]),
        sbi::ERR_INVALID_PARAM,
    );
    // SET_INIT_VALUE: counting resumes from the given value.
    const INIT: u64 = 1 << 40;
    r.check_sbi_error(
        &name("start-init-value"),
        pmu(
            COUNTER_START,
            [idx, 1, START_INIT_VALUE, INIT as usize, 0, 0],
        ),
        sbi::SUCCESS,
    );
    let e = read();
    r.check(
        &name("init-value-read"),
        e >= INIT && e - INIT < (1 << 32),
        format_args!("read {e:#x} after starting at {INIT:#x}"),
    );
    // Stop and release the counter (RESET), then it is free for a new match.
    r.check_sbi_error(
        &name("stop-reset"),
        pmu(COUNTER_STOP, [idx, 1, STOP_RESET, 0, 0, 0]),
        sbi::SUCCESS,
    );
    let again = pmu(CONFIG_MATCHING, [0, valid, 0, event, 0, 0]);
    r.check(
        &name("reconfigure-after-reset"),
        again.error == sbi::SUCCESS && again.value == idx,
        format_args!("{again}, expected counter {idx}"),
    );
    // SKIP_MATCH on the now configured counter.
    let skip = pmu(CONFIG_MATCHING, [idx, 1, CFG_SKIP_MATCH, event, 0, 0]);
    r.check(
        &name("config-skip-match"),
        skip.error == sbi::SUCCESS && skip.value == idx,
        format_args!("{skip}, expected counter {idx}"),
    );
    // Stopping a stopped counter with RESET releases it (and says so).
    r.check_sbi_error(
        &name("stop-reset-stopped"),
        pmu(COUNTER_STOP, [idx, 1, STOP_RESET, 0, 0, 0]),
        sbi::ERR_ALREADY_STOPPED,
    );
}

/// A firmware counter on `SBI_PMU_FW_SET_TIMER` counts this hart's
/// `set_timer` calls.
fn fw_counter(r: &Reporter, first_fw: usize, count: usize) {
    let mask = 1usize
        .checked_shl((count - first_fw) as u32)
        .map_or(usize::MAX, |m| m - 1);
    let cfg = pmu(
        CONFIG_MATCHING,
        [
            first_fw,
            mask,
            CFG_CLEAR_VALUE | CFG_AUTO_START,
            FW_SET_TIMER,
            0,
            0,
        ],
    );
    if !r.check(
        "pmu-fw-config-matching",
        cfg.error == sbi::SUCCESS && cfg.value >= first_fw && cfg.value < count,
        format_args!("{cfg}"),
    ) {
        return;
    }
    let idx = cfg.value;
    let before = pmu(FW_READ, [idx, 0, 0, 0, 0, 0]);
    for _ in 0..3 {
        sbi::call(sbi::EID_TIME, 0, [usize::MAX, 0, 0, 0, 0, 0]);
    }
    let after = pmu(FW_READ, [idx, 0, 0, 0, 0, 0]);
    r.check(
        "pmu-fw-counts-set-timer",
        before.error == sbi::SUCCESS
            && after.error == sbi::SUCCESS
            && after.value == before.value + 3,
        format_args!("before {before}, after 3 set_timer calls {after}"),
    );
    let hi = pmu(FW_READ_HI, [idx, 0, 0, 0, 0, 0]);
    r.check(
        "pmu-fw-read-hi-is-zero",
        hi.error == sbi::SUCCESS && hi.value == 0,
        format_args!("{hi}"),
    );
    r.check_sbi_error(
        "pmu-fw-stop",
        pmu(COUNTER_STOP, [idx, 1, 0, 0, 0, 0]),
        sbi::SUCCESS,
    );
    sbi::call(sbi::EID_TIME, 0, [usize::MAX, 0, 0, 0, 0, 0]);
    let stopped = pmu(FW_READ, [idx, 0, 0, 0, 0, 0]);
    r.check(
        "pmu-fw-stopped-stays",
        stopped.value == after.value,
        format_args!("{stopped} after a set_timer while stopped, was {after}"),
    );
    r.check_sbi_error(
        "pmu-fw-stop-reset-stopped",
        pmu(COUNTER_STOP, [idx, 1, STOP_RESET, 0, 0, 0]),
        sbi::ERR_ALREADY_STOPPED,
    );
}
