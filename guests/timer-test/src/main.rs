//! timer-test: the supervisor timer. SBI `set_timer` deadlines fire neither
//! early nor much late, `set_timer(u64::MAX)` clears a pending timer, Sstc's
//! `stimecmp` works when the DTB lists Sstc, and `time` never goes backwards.
#![no_std]
#![no_main]

use core::arch::asm;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use fv_guest_rt::sbi;
use fv_guest_rt::trap::{self, IRQ_TIMER};
use fv_guest_rt::{csr, println, Platform, Reporter};

fv_guest_rt::guest_main!("timer-test", main);

/// Timer deadline used by the firing checks.
const DEADLINE_MS: u64 = 10;
/// Allowed lateness (guest time) of a timer interrupt; generous for TCG.
const MAX_LATE_MS: u64 = 20;
/// Repetitions of the SBI set_timer check.
const SBI_ROUNDS: usize = 20;
/// Repetitions of the stimecmp check.
const SSTC_ROUNDS: usize = 5;

/// How the handler silences the timer: through SBI or by writing stimecmp.
const MODE_SBI: usize = 0;
const MODE_SSTC: usize = 1;
static MODE: AtomicUsize = AtomicUsize::new(MODE_SBI);
/// `time` when the handler last ran (0 = not since reset).
static FIRED_AT: AtomicU64 = AtomicU64::new(0);
/// Handler runs since reset.
static FIRES: AtomicUsize = AtomicUsize::new(0);

fn on_timer(_irq: usize) {
    let now = csr::time();
    if MODE.load(Ordering::SeqCst) == MODE_SSTC {
        csr::set_stimecmp(u64::MAX);
    } else {
        let _ = sbi_rt::set_timer(u64::MAX);
    }
    FIRED_AT.store(now, Ordering::SeqCst);
    FIRES.fetch_add(1, Ordering::SeqCst);
}

fn main(p: &'static Platform, r: &'static Reporter) {
    let tb = p.timebase_hz;
    let sstc = p.has_sstc();
    println!(
        "INFO: timer-test: timebase {tb} Hz, sstc {}, deadline {DEADLINE_MS} ms, allowed lateness {MAX_LATE_MS} ms",
        if sstc { "listed in the DTB" } else { "not listed" }
    );
    trap::set_handler(IRQ_TIMER, on_timer);

    time_monotonic(r);
    sbi_timer_rounds(p, r);
    sbi_timer_clear(p, r);
    if sstc {
        sstc_rounds(p, r);
        sstc_clear(p, r);
    } else {
        println!("INFO: timer-test: the DTB does not list sstc: stimecmp checks not run");
    }
    // Timer still monotonic after all the interrupts and SBI calls.
    time_monotonic_sbi(r, "time-monotonic-after-timers");
}

/// Arms a timer `DEADLINE_MS` out with `arm`, waits for the interrupt, and
/// returns (deadline, when the handler saw it) or None on timeout.
fn one_round(tb: u64, arm: impl FnOnce(u64)) -> Option<(u64, u64)> {
    FIRED_AT.store(0, Ordering::SeqCst);
    let fires_before = FIRES.load(Ordering::SeqCst);
    let deadline = csr::time() + csr::ms_to_ticks(DEADLINE_MS, tb);
    arm(deadline);
    csr::sie_set(csr::STI);
    csr::interrupts_enable();
    let give_up = deadline + csr::ms_to_ticks(1000, tb);
    let fired = csr::spin_until(give_up, || FIRES.load(Ordering::SeqCst) != fires_before);
    csr::interrupts_disable();
    csr::sie_clear(csr::STI);
    if fired {
        Some((deadline, FIRED_AT.load(Ordering::SeqCst)))
    } else {
        None
    }
}

fn rounds(r: &Reporter, tb: u64, check: &str, n: usize, mut arm: impl FnMut(u64)) {
    let max_late = csr::ms_to_ticks(MAX_LATE_MS, tb);
    let (mut min_l, mut max_l) = (u64::MAX, 0u64);
    let mut bad: Option<(usize, &str, u64, u64)> = None;
    for i in 0..n {
        match one_round(tb, &mut arm) {
            None => {
                bad.get_or_insert((i, "never fired (waited 1 s)", 0, 0));
            }
            Some((deadline, at)) if at < deadline => {
                bad.get_or_insert((i, "fired early", deadline, at));
            }
            Some((deadline, at)) => {
                let late = at - deadline;
                min_l = min_l.min(late);
                max_l = max_l.max(late);
                if late > max_late {
                    bad.get_or_insert((i, "fired too late", deadline, at));
                }
            }
        }
    }
    if max_l > 0 || min_l != u64::MAX {
        println!(
            "INFO: timer-test: {check}: lateness min {} us, max {} us over {n} rounds",
            csr::ticks_to_us(min_l, tb),
            csr::ticks_to_us(max_l, tb)
        );
    }
    match bad {
        None => r.pass(check),
        Some((i, what, deadline, at)) => r.fail(
            check,
            format_args!(
                "round {i}: {what}: deadline {deadline:#x}, handler ran at {at:#x} (lateness limit {MAX_LATE_MS} ms)"
            ),
        ),
    }
}

fn sbi_timer_rounds(p: &Platform, r: &Reporter) {
    MODE.store(MODE_SBI, Ordering::SeqCst);
    let mut errors = None;
    rounds(
        r,
        p.timebase_hz,
        "sbi-set-timer-fires",
        SBI_ROUNDS,
        |deadline| {
            let ret: sbi::Ret = sbi_rt::set_timer(deadline).into();
            if ret.error != sbi::SUCCESS {
                errors.get_or_insert(ret);
            }
        },
    );
    r.check(
        "sbi-set-timer-returns-success",
        errors.is_none(),
        format_args!(
            "set_timer returned {}",
            errors.unwrap_or(sbi::Ret { error: 0, value: 0 })
        ),
    );
}

/// Waits up to `ms` for STIP to reach `want`.
fn wait_stip(tb: u64, ms: u64, want: bool) -> bool {
    csr::spin_until(csr::time() + csr::ms_to_ticks(ms, tb), || {
        (csr::sip() & csr::STI != 0) == want
    })
}

fn sbi_timer_clear(p: &Platform, r: &Reporter) {
    let tb = p.timebase_hz;
    MODE.store(MODE_SBI, Ordering::SeqCst);
    // STIE off: the pending bit is observed in sip, nothing is taken.
    csr::sie_clear(csr::STI);
    let _ = sbi_rt::set_timer(csr::time());
    r.check(
        "sbi-set-timer-past-pends",
        wait_stip(tb, 100, true),
        format_args!(
            "sip.STIP not set 100 ms after set_timer(now); sip={:#x}",
            csr::sip()
        ),
    );
    let _ = sbi_rt::set_timer(u64::MAX);
    let sip = csr::sip();
    r.check(
        "sbi-set-timer-max-clears-pending",
        sip & csr::STI == 0,
        format_args!("sip.STIP still set right after set_timer(u64::MAX); sip={sip:#x}"),
    );
    // …and stays clear.
    let still_clear = !wait_stip(tb, 2 * DEADLINE_MS, true);
    r.check(
        "sbi-set-timer-max-stays-clear",
        still_clear,
        format_args!(
            "sip.STIP set again within {} ms of set_timer(u64::MAX)",
            2 * DEADLINE_MS
        ),
    );
}

fn sstc_rounds(p: &Platform, r: &Reporter) {
    MODE.store(MODE_SSTC, Ordering::SeqCst);
    let probe = csr::time() + csr::ms_to_ticks(1000, p.timebase_hz);
    let t = trap::expect_trap(|| csr::set_stimecmp(probe));
    let back = csr::stimecmp();
    csr::set_stimecmp(u64::MAX);
    if let Some(t) = t {
        r.fail(
            "stimecmp-accessible",
            format_args!("the DTB lists sstc but writing stimecmp trapped: {t}"),
        );
        return;
    }
    r.pass("stimecmp-accessible");
    r.check_eq("stimecmp-reads-back", back, probe);
    rounds(
        r,
        p.timebase_hz,
        "stimecmp-fires",
        SSTC_ROUNDS,
        csr::set_stimecmp,
    );
    MODE.store(MODE_SBI, Ordering::SeqCst);
}

fn sstc_clear(p: &Platform, r: &Reporter) {
    let tb = p.timebase_hz;
    csr::sie_clear(csr::STI);
    csr::set_stimecmp(csr::time());
    r.check(
        "stimecmp-past-pends",
        wait_stip(tb, 100, true),
        format_args!(
            "sip.STIP not set 100 ms after stimecmp = now; sip={:#x}",
            csr::sip()
        ),
    );
    csr::set_stimecmp(u64::MAX);
    let sip = csr::sip();
    r.check(
        "stimecmp-max-clears-pending",
        sip & csr::STI == 0,
        format_args!("sip.STIP still set right after stimecmp = u64::MAX; sip={sip:#x}"),
    );
}

fn time_monotonic(r: &Reporter) {
    const READS: usize = 100_000;
    let first = csr::time();
    let mut prev = first;
    let mut bad = None;
    for i in 0..READS {
        let t = csr::time();
        if t < prev && bad.is_none() {
            bad = Some((i, prev, t));
        }
        prev = t;
    }
    match bad {
        None => r.pass("time-monotonic-reads"),
        Some((i, a, b)) => r.fail(
            "time-monotonic-reads",
            format_args!("read {i}: time went from {a:#x} to {b:#x}"),
        ),
    }
    r.check(
        "time-advances",
        prev > first,
        format_args!("time stayed at {first:#x} over {READS} reads"),
    );
    time_monotonic_sbi(r, "time-monotonic-sbi-calls");
    time_monotonic_traps(r);
}

/// `time` read before and after each of many SBI calls (each an exit to the
/// SBI implementation).
fn time_monotonic_sbi(r: &Reporter, check: &str) {
    let mut prev = csr::time();
    let mut bad = None;
    for i in 0..1000 {
        let _ = sbi_rt::get_spec_version();
        let t = csr::time();
        if t < prev && bad.is_none() {
            bad = Some((i, prev, t));
        }
        prev = t;
    }
    match bad {
        None => r.pass(check),
        Some((i, a, b)) => r.fail(
            check,
            format_args!("around SBI call {i}: time went from {a:#x} to {b:#x}"),
        ),
    }
}

/// `time` read before and after each of many trapped instructions.
fn time_monotonic_traps(r: &Reporter) {
    let mut prev = csr::time();
    let mut bad = None;
    for i in 0..200 {
        let t = trap::expect_trap(|| {
            // SAFETY: `ebreak` raises a breakpoint exception, which
            // `expect_trap` records and skips.
            unsafe { asm!("ebreak", options(nostack)) };
        });
        let now = csr::time();
        if (t.is_none() || now < prev) && bad.is_none() {
            bad = Some((i, prev, now, t.is_some()));
        }
        prev = now;
    }
    match bad {
        None => r.pass("time-monotonic-traps"),
        Some((i, a, b, trapped)) => r.fail(
            "time-monotonic-traps",
            format_args!("around ebreak {i}: trapped={trapped}, time went from {a:#x} to {b:#x}"),
        ),
    }
}
