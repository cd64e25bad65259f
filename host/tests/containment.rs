//! Containment: a well-behaved test guest (sbi-test, timer-test, smp-test) runs
//! to `DONE: … failed=0` while `guests/hostile-test` attacks the machine from a
//! second VM on the same harts: wild accesses, random SBI calls, IPI storms,
//! HSM abuse, DBCN abuse, and finally every vCPU spinning with interrupts
//! masked, or its own poweroff / reboot while its vCPUs spin.
//!
//! A case passes when the good VM prints its `DONE:` line with `failed=0`, the
//! hypervisor logs `ferrovisor: VM '<good>' powered off`, the hostile VM got
//! as far as the case requires, and no failure line appears (`FAIL:` from
//! either VM, a panic, a hypervisor trap dump or fatal error). The hostile VM
//! never finishes, so the machine never powers off: QEMU is killed a few
//! seconds after the last success pattern ([`Case::stop_after_success`]),
//! failure patterns still applying until then. The cases with a hostile phase
//! list that repeats also check that the hostile VM was still making progress
//! after the good VM was gone.
//!
//! The hypervisor has no stop reason a guest can trigger except asking for it
//! (an unhandled trap cause stops a VM, but every exception a VS-mode guest can
//! raise is either delegated to it or handled: access faults are injected, SBI
//! calls answered, virtual instructions become illegal instructions). So the
//! "only its VM stops" case is the hostile VM shutting itself down with SRST
//! (reason: system failure) while its other vCPUs spin: the hypervisor must
//! stop all of them, keep the good VM running and, once that is done too,
//! power off with exit status 1.
//!
//! Needs `scripts/build.sh` first (the hypervisor and the guests, release,
//! riscv64gc-unknown-none-elf). Run with
//! `cargo test -p ferrovisor --test containment -- --test-threads=1`.
//! Logs: `target/qemu-logs/containment-<case>.log`.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::Path;
use std::time::Duration;

use ferrovisor::testing::{self, Case, CaseVms, Pattern};
use ferrovisor::MIB;

const HOSTILE: &str = "hostile-test";
/// vCPUs of the hostile VM.
const HOSTILE_VCPUS: u32 = 4;
/// Hard limit per run: TCG, up to 8 vCPUs on one emulated hart, 2 host cores.
const TIMEOUT: Duration = Duration::from_secs(300);
/// How long QEMU keeps running after the last success pattern.
const LINGER: Duration = Duration::from_secs(3);
/// Longer, for cases that check the hostile VM still makes progress after the
/// good VM powered off (a hostile round takes about a second under TCG).
const LINGER_PROGRESS: Duration = Duration::from_secs(8);

/// The good VM's vCPUs, as in `tests/qemu.rs`.
fn good_vcpus(good: &str) -> u32 {
    if good == "smp-test" {
        4
    } else {
        1
    }
}

/// A good VM and a hostile VM with `hostile_args` on its command line, on a
/// machine of `smp` harts. Success: the good VM's DONE line and its poweroff.
fn case(name: &str, good: &str, hostile_args: &str, smp: u32) -> Case {
    let good_vm = testing::guest_vm(good, good_vcpus(good), 64 * MIB);
    let mut hostile = testing::guest_vm(HOSTILE, HOSTILE_VCPUS, 64 * MIB);
    hostile.command_line = hostile_args.to_string();
    for k in [&good_vm.kernel, &hostile.kernel] {
        if let Err(e) = testing::require_built(k) {
            panic!("{e}");
        }
    }
    let mut c = Case::new(
        format!("containment-{name}"),
        CaseVms::List(vec![good_vm, hostile]),
    );
    c.machine.cpus = Some(smp);
    c.timeout = TIMEOUT;
    c.success_patterns = vec![
        Pattern::LineStart(format!("DONE: {good} passed=")),
        Pattern::LineStart(format!("ferrovisor: VM '{good}' powered off")),
    ];
    c.require_clean_exit = false;
    c.stop_after_success = Some(LINGER);
    c
}

/// The hostile VM's progress line for `phase`.
fn progress(phase: &str) -> Pattern {
    Pattern::LineStart(format!("INFO: {HOSTILE}: phase {phase} done"))
}

/// The hostile VM's line just before it spins for good.
fn spinning() -> Pattern {
    Pattern::LineStart(format!("INFO: {HOSTILE}: phase spin: "))
}

fn run(c: &Case) -> Vec<String> {
    let report = testing::run_and_report(c).unwrap_or_else(|e| panic!("{}: {e}", c.name));
    read_log(&report.log_path)
}

fn read_log(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(str::to_string)
        .collect()
}

/// Index of the first line exactly equal to `line` (hypervisor lines have no
/// VM prefix, so a guest cannot forge them).
fn exact(log: &[String], line: &str) -> usize {
    log.iter()
        .position(|l| l == line)
        .unwrap_or_else(|| panic!("no line `{line}` in the log"))
}

/// Index of the first hostile-VM console line starting with `text`.
fn hostile_line(log: &[String], text: &str) -> Option<usize> {
    let prefix = format!("[{HOSTILE}] {text}");
    log.iter().position(|l| l.starts_with(&prefix))
}

/// Checks every run makes: the good VM finished cleanly per the hypervisor's
/// own line, and the hypervisor did not stop the hostile VM behind our back.
fn common_checks(log: &[String], good: &str) -> usize {
    let off = exact(log, &format!("ferrovisor: VM '{good}' powered off"));
    assert!(
        !log.iter().any(|l| l.starts_with("ferrovisor: VM 'hostile-test' stopped")),
        "the hypervisor stopped the hostile VM"
    );
    off
}

/// The hostile VM runs phases that repeat forever: it must have printed
/// progress lines both before the good VM's DONE line and after the
/// hypervisor logged the good VM's poweroff.
fn assert_progress_around(log: &[String], good: &str) {
    let off = common_checks(log, good);
    let done = log
        .iter()
        .position(|l| l.starts_with(&format!("[{good}] DONE: {good}")))
        .unwrap();
    let is_progress = |l: &String| l.starts_with(&format!("[{HOSTILE}] INFO: {HOSTILE}: phase "));
    let before = log[..done].iter().filter(|l| is_progress(l)).count();
    let after = log[off..].iter().filter(|l| is_progress(l)).count();
    assert!(
        before >= 1,
        "the hostile VM made no progress while the good VM ran"
    );
    assert!(
        after >= 1,
        "the hostile VM printed no progress after the good VM powered off (stalled?)"
    );
}

/// Every hostile phase in sequence (`wild,sbi,ipi,hsm,dbcn`), then all its
/// vCPUs spin: the good VM must finish, and the hostile VM must get through
/// every phase.
fn all_phases(good: &str, smp: u32) {
    let mut c = case(&format!("{good}-all-smp{smp}"), good, "", smp);
    for ph in ["wild", "sbi", "ipi", "hsm", "dbcn"] {
        c.success_patterns.push(progress(ph));
    }
    c.success_patterns.push(spinning());
    let log = run(&c);
    common_checks(&log, good);
}

macro_rules! all_phases_tests {
    ($module:ident, $good:literal) => {
        mod $module {
            #[test]
            fn smp1() {
                super::all_phases($good, 1);
            }
            #[test]
            fn smp2() {
                super::all_phases($good, 2);
            }
            #[test]
            fn smp4() {
                super::all_phases($good, 4);
            }
        }
    };
}

all_phases_tests!(sbi_test_all, "sbi-test");
all_phases_tests!(timer_test_all, "timer-test");
all_phases_tests!(smp_test_all, "smp-test");

/// One hostile phase list repeating forever next to `good`.
fn repeating(good: &str, phases: &str, smp: u32) {
    let mut c = case(
        &format!("{good}-{}-smp{smp}", phases.replace(',', "-")),
        good,
        &format!("phase={phases}"),
        smp,
    );
    for ph in phases.split(',') {
        c.success_patterns.push(progress(ph));
    }
    c.stop_after_success = Some(LINGER_PROGRESS);
    let log = run(&c);
    assert_progress_around(&log, good);
}

#[test]
fn wild_vs_smp_test_smp2() {
    repeating("smp-test", "wild", 2);
}

#[test]
fn wild_vs_timer_test_smp1() {
    repeating("timer-test", "wild", 1);
}

#[test]
fn sbi_vs_sbi_test_smp4() {
    repeating("sbi-test", "sbi", 4);
}

#[test]
fn ipi_vs_smp_test_smp4() {
    repeating("smp-test", "ipi", 4);
}

#[test]
fn ipi_vs_timer_test_smp2() {
    repeating("timer-test", "ipi", 2);
}

#[test]
fn hsm_dbcn_vs_smp_test_smp2() {
    repeating("smp-test", "hsm,dbcn", 2);
}

/// Every hostile vCPU spins with interrupts masked from the start: the good VM
/// still gets its time slices, timers and IPIs.
fn spin_from_start(good: &str, smp: u32) {
    let mut c = case(&format!("{good}-spin-smp{smp}"), good, "phase=spin", smp);
    c.success_patterns.push(spinning());
    let log = run(&c);
    common_checks(&log, good);
    let spin = hostile_line(&log, &format!("INFO: {HOSTILE}: phase spin: ")).unwrap();
    let done = log
        .iter()
        .position(|l| l.starts_with(&format!("[{good}] DONE: {good}")))
        .unwrap();
    assert!(
        spin < done,
        "the hostile VM was not spinning yet when the good VM finished"
    );
}

#[test]
fn spin_vs_timer_test_smp1() {
    spin_from_start("timer-test", 1);
}

#[test]
fn spin_vs_smp_test_smp2() {
    spin_from_start("smp-test", 2);
}

#[test]
fn spin_vs_sbi_test_smp4() {
    spin_from_start("sbi-test", 4);
}

/// The hostile VM storms IPIs, then shuts itself down with SRST reporting a
/// failure while its other vCPUs spin with interrupts masked: only its VM
/// stops, the good VM finishes, and the machine powers off by itself with
/// exit status 1 (a VM failed).
#[test]
fn hostile_dies_next_to_smp_test_smp2() {
    let good = "smp-test";
    let mut c = case("smp-test-die-smp2", good, "phase=ipi,die die_ms=300", 2);
    c.stop_after_success = None;
    c.success_patterns.extend([
        progress("ipi"),
        Pattern::LineStart(format!("INFO: {HOSTILE}: phase die: ")),
        Pattern::LineStart(format!(
            "ferrovisor: VM '{HOSTILE}' powered off reporting a failure"
        )),
        Pattern::LineStart("ferrovisor: all VMs stopped (some failed)".into()),
    ]);
    let log = run(&c);
    common_checks(&log, good);
    exact(
        &log,
        &format!("ferrovisor: VM '{HOSTILE}' powered off reporting a failure"),
    );
    let last = log.last().map(String::as_str).unwrap_or("");
    assert!(
        last.starts_with("# qemu exited: exit status: 1"),
        "QEMU should power off with status 1 (a VM failed), log ends: {last}"
    );
}

/// The hostile VM cold-reboots itself three times while its other vCPUs spin
/// (the hypervisor must pull them out of the guest to reload the VM), then
/// goes wild; the good VM finishes undisturbed.
#[test]
fn hostile_reboots_next_to_sbi_test_smp2() {
    let good = "sbi-test";
    let mut c = case(
        "sbi-test-reboot-smp2",
        good,
        "phase=reboot,wild reboots=3",
        2,
    );
    c.success_patterns.extend([
        Pattern::LineStart(format!("INFO: {HOSTILE}: phase reboot done: 3 cold reboots")),
        progress("wild"),
    ]);
    let log = run(&c);
    common_checks(&log, good);
    let reboots = log
        .iter()
        .filter(|l| *l == &format!("ferrovisor: VM '{HOSTILE}' rebooting"))
        .count();
    assert_eq!(reboots, 3, "the hypervisor should log 3 reboots");
}
