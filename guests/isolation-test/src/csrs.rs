//! Supervisor CSRs that have no VS copy (`scounteren`, `senvcfg`) belong to
//! this VM: they start at 0 and keep what this VM wrote while it is
//! descheduled.
//!
//! Two VMs on one hart, each with `csr-switch=<n>` in its bootargs (a
//! different `n`), each write their own values and spin long enough to share
//! the hart several times: a hypervisor that leaves the real CSRs to whoever
//! runs next fails "starts zero" in the VM that runs second and "kept" in both.
//! In the same run each VM also counts `cycle` through the SBI PMU while it
//! spins: the count may only cover the time this VM itself ran (its own
//! slices), not the other VM's slices in between (`pmu-cycles-own-slices`).
//!
//! Without the bootarg the check runs briefly with `n` = 5 (alone, it only
//! shows the CSRs hold a value and start at 0). "Starts at 0" is checked only
//! under a hypervisor: on bare QEMU OpenSBI hands its payload `scounteren` = 7.

use core::arch::asm;

use fv_guest_rt::{csr, sbi};
use fv_guest_rt::{println, Platform, Reporter};

/// `scounteren` value without a bootarg: CY | IR.
const DEFAULT_VALUE: usize = 5;
/// How long to spin without / with the bootarg, ms.
const SPIN_MS: [u64; 2] = [20, 300];
/// A gap between two `time` reads at least this long means the vCPU was
/// descheduled, ms.
const DESCHEDULED_MS: u64 = 2;

/// `sbi_get_impl_id` of OpenSBI (SBI spec, "SBI Implementation IDs").
const IMPL_OPENSBI: usize = 1;

/// `senvcfg` bits this check writes: FIOM (bit 0) for odd `n`, CBCFE | CBZE
/// (bits 6, 7) for even `n`.
fn senvcfg_value(n: usize) -> usize {
    if n & 1 != 0 {
        1
    } else {
        0xC0
    }
}

fn read_scounteren() -> usize {
    let v: usize;
    // SAFETY: reading scounteren has no side effect.
    unsafe { asm!("csrr {0}, scounteren", out(reg) v, options(nomem, nostack)) };
    v
}

fn write_scounteren(v: usize) {
    // SAFETY: scounteren only decides which counters U-mode may read; this
    // guest runs nothing in U-mode.
    unsafe { asm!("csrw scounteren, {0}", in(reg) v, options(nomem, nostack)) };
}

fn read_senvcfg() -> usize {
    let v: usize;
    // SAFETY: reading senvcfg (0x10A) has no side effect.
    unsafe { asm!("csrr {0}, 0x10A", out(reg) v, options(nomem, nostack)) };
    v
}

fn write_senvcfg(v: usize) {
    // SAFETY: senvcfg's FIOM/CBCFE/CBZE only shape U-mode fences and cache-block
    // instructions; this guest runs nothing in U-mode.
    unsafe { asm!("csrw 0x10A, {0}", in(reg) v, options(nomem, nostack)) };
}

/// Time spent spinning: ticks between `time` reads closer than the gap, and
/// in gaps (descheduled).
struct Spin {
    ran: u64,
    away: u64,
    descheduled: u32,
}

/// Spins for `ticks`, sorting the time into run and away by `gap`.
fn spin_for(ticks: u64, gap: u64) -> Spin {
    let start = csr::time();
    let mut last = start;
    let mut s = Spin {
        ran: 0,
        away: 0,
        descheduled: 0,
    };
    while last.wrapping_sub(start) < ticks {
        let now = csr::time();
        let d = now.wrapping_sub(last);
        if d >= gap {
            s.descheduled += 1;
            s.away += d;
        } else {
            s.ran += d;
        }
        last = now;
    }
    s
}

/// `SBI_PMU_COUNTER_CONFIG_MATCHING` of `SBI_PMU_HW_CPU_CYCLES` with
/// CLEAR_VALUE | AUTO_START on counter 0 (`cycle`).
fn start_cycle_counter(r: &Reporter) -> bool {
    const EID_PMU: usize = 0x0050_4D55;
    let ret = sbi::call(EID_PMU, 2, [0, 1, 0b110, 1, 0, 0]);
    r.check(
        "pmu-cycle-counter-started",
        ret.error == sbi::SUCCESS && ret.value == 0,
        format_args!("{ret}"),
    )
}

fn read_cycle() -> u64 {
    let v: u64;
    // SAFETY: reading `cycle` has no side effect.
    unsafe { asm!("csrr {0}, cycle", out(reg) v, options(nomem, nostack)) };
    v
}

/// Cycles per `time` tick while this VM runs: the best of a few 1.8 ms
/// windows that were not interrupted by a gap (the two emulated reads of each
/// window are exits whose time is not the guest's: a slight underestimate).
fn cycles_per_tick(gap: u64) -> Option<f64> {
    let mut best: Option<f64> = None;
    for _ in 0..5 {
        let c0 = read_cycle();
        let s = spin_for(gap * 9 / 10, gap);
        let c = read_cycle().wrapping_sub(c0);
        if s.descheduled == 0 && s.ran > 0 {
            let rate = c as f64 / s.ran as f64;
            best = Some(best.map_or(rate, |b: f64| b.max(rate)));
        }
    }
    best
}

/// The `csr-switch=<n>` bootarg, if given.
fn bootarg(p: &Platform, r: &Reporter) -> Option<usize> {
    for arg in p.bootargs().split_ascii_whitespace() {
        if let Some(v) = arg.strip_prefix("csr-switch=") {
            match v.parse::<usize>() {
                Ok(n) if n != 0 && n < 8 => return Some(n),
                _ => r.fail("bootargs", format_args!("`{arg}`: need 1..=7")),
            }
        }
    }
    None
}

/// Runs the check; returns whether the bootarg asked for it alone.
pub fn check(p: &Platform, r: &Reporter) -> bool {
    let arg = bootarg(p, r);
    let n = arg.unwrap_or(DEFAULT_VALUE);
    if sbi::call(sbi::EID_BASE, sbi::BASE_GET_IMPL_ID, [0; 6]).value != IMPL_OPENSBI {
        r.check_eq("scounteren-starts-zero", read_scounteren(), 0);
        r.check_eq("senvcfg-starts-zero", read_senvcfg(), 0);
    }
    write_scounteren(n);
    write_senvcfg(senvcfg_value(n));
    let scounteren = read_scounteren();
    let senvcfg = read_senvcfg();
    r.check(
        "scounteren-holds-a-value",
        scounteren != 0,
        format_args!("wrote {n:#x}, read back 0"),
    );
    r.check(
        "senvcfg-holds-a-value",
        senvcfg != 0,
        format_args!("wrote {:#x}, read back 0", senvcfg_value(n)),
    );
    let spin = csr::ms_to_ticks(SPIN_MS[usize::from(arg.is_some())], p.timebase_hz);
    let gap = csr::ms_to_ticks(DESCHEDULED_MS, p.timebase_hz);
    let counting = arg.is_some() && start_cycle_counter(r);
    let rate = if counting { cycles_per_tick(gap) } else { None };
    let cycle0 = if counting { read_cycle() } else { 0 };
    let s = spin_for(spin, gap);
    let cycles = if counting {
        read_cycle().wrapping_sub(cycle0)
    } else {
        0
    };
    if arg.is_some() {
        r.check(
            "csrs-descheduled",
            s.descheduled > 0,
            format_args!("never descheduled in {} ms", SPIN_MS[1]),
        );
    }
    if let Some(rate) = rate {
        // At the rate measured while running, the other VM's slices (the time
        // away) would add rate * away: allow a third of that.
        let limit = rate * (s.ran + s.away / 3) as f64;
        println!(
            "INFO: isolation-test: {cycles} cycles over {} ticks run + {} ticks away at {rate:.1} cycles/tick",
            s.ran, s.away
        );
        r.check(
            "pmu-cycles-own-slices",
            cycles > 0 && (cycles as f64) < limit && s.away > s.ran / 4,
            format_args!(
                "{cycles} cycles over {} ticks run + {} ticks away at {rate:.1} cycles/tick (limit {limit:.0})",
                s.ran, s.away
            ),
        );
    }
    r.check_eq("scounteren-kept", read_scounteren(), scounteren);
    r.check_eq("senvcfg-kept", read_senvcfg(), senvcfg);
    arg.is_some()
}
