//! Containment: a well-behaved test guest (sbi-test, timer-test, smp-test) runs
//! to its `DONE:` line while `guests/hostile-test` attacks the machine from a
//! second VM on the same harts: wild accesses, random SBI calls, IPI storms,
//! HSM abuse, DBCN abuse, random accesses to its own emulated devices, and
//! finally every vCPU spinning with interrupts masked, or its own poweroff /
//! reboot while its vCPUs spin.
//!
//! A case passes when the good VM prints `DONE: … failed=0`, the hypervisor
//! logs `ferrovisor: VM '<good>' powered off`, the hostile VM got as far as the
//! case requires, and no failure line appears (`FAIL:` from either VM, a
//! panic, a hypervisor trap dump or fatal error). The hostile VM never
//! finishes, so the machine never powers off: QEMU is killed a few seconds
//! after the last success pattern ([`Case::stop_after_success`]), failure
//! patterns applying until then. Cases whose hostile phases repeat also check
//! that the hostile VM had started before the good VM finished (sbi-test is
//! sometimes done before that: only noted there) and still made progress
//! after the good VM was gone.
//!
//! **timer-test** checks that timers fire at most 20 ms late. The scheduler
//! gives each vCPU 10 ms slices round-robin and does not preempt a running vCPU
//! when a waiting vCPU's timer expires, so with k busy hostile vCPUs on the
//! timer-test's hart a timer can be about k × 10 ms late; and exit-heavy
//! hostile vCPUs on *other* harts (wild accesses, SBI calls, IPIs; not
//! spinning) delay it by tens of ms more under TCG on a 2-core host. Lateness
//! is not containment, so the timer-test cases here accept `fired too late`
//! failures (and only those: every other check must pass, its VM must power
//! off and the hostile VM must not be stopped); the `strict_timer_*` cases,
//! `#[ignore]`d, demand `failed=0` and show the latency problem.
//!
//! The hypervisor has no stop reason a guest can trigger except asking for it
//! (an unhandled trap cause stops a VM, but every exception a VS-mode guest can
//! raise is either delegated to it or handled: access faults are injected, SBI
//! calls answered, virtual instructions become illegal instructions). So the
//! "only its VM stops" case is the hostile VM shutting itself down with SRST
//! (reason: system failure) while its other vCPUs spin: the hypervisor must
//! stop all of them, keep the good VM running and, once that is done too,
//! power off saying a VM failed. (QEMU's exit status should then be 1; it is
//! 0 now and then, see `strict_exit_status_after_vm_failure`.)
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
use fv_mgmt::console_out::render_line;

const HOSTILE: &str = "hostile-test";
/// vCPUs of the hostile VM.
const HOSTILE_VCPUS: u32 = 4;
/// Hard limit per run: TCG, up to 8 vCPUs on one emulated hart, 2 host cores.
const TIMEOUT: Duration = Duration::from_secs(180);
/// How long QEMU keeps running after the last success pattern.
const LINGER: Duration = Duration::from_secs(3);
/// Longer, for cases that check the hostile VM still makes progress after the
/// good VM powered off (a hostile round takes about a second under TCG).
const LINGER_PROGRESS: Duration = Duration::from_secs(8);
/// The only timer-test failure the lateness-tolerant cases accept.
const TOO_LATE: &str = ": fired too late: ";

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
    case_with(name, good, hostile_args, HOSTILE_VCPUS, smp)
}

/// [`case`] with a hostile VM of `hostile_vcpus` vCPUs.
fn case_with(name: &str, good: &str, hostile_args: &str, hostile_vcpus: u32, smp: u32) -> Case {
    let good_vm = testing::guest_vm(good, good_vcpus(good), 64 * MIB);
    let mut hostile = testing::guest_vm(HOSTILE, hostile_vcpus, 64 * MIB);
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

/// [`case`] with the hostile VM first in the list: vCPUs are placed on harts
/// round-robin in VM order, so its vCPU 0 shares the boot hart with the good
/// VM's vCPU 0 and runs first there. Used where the hostile VM must be under
/// way before a short good VM (sbi-test takes a fraction of a second) is done.
fn case_hostile_first(name: &str, good: &str, hostile_args: &str, smp: u32) -> Case {
    let mut c = case(name, good, hostile_args, smp);
    if let CaseVms::List(vms) = &mut c.vms {
        vms.reverse();
    }
    c
}

/// Lets `c` (a timer-test case) through timer-test's `fired too late`
/// failures: its `FAIL:` lines and `failed=` count are checked afterwards by
/// [`check_good`] instead. The hostile VM's `FAIL:` lines still end the run.
fn tolerate_lateness(c: &mut Case) {
    c.failure_patterns.retain(|p| {
        !matches!(p, Pattern::DoneWithFailures)
            && !matches!(p, Pattern::LineStart(s) if s == "FAIL:")
    });
    c.failure_patterns
        .push(Pattern::LineStart(format!("FAIL: {HOSTILE}/")));
}

/// Gives the hostile VM of `c` a virtio-console (`console: virtio`), which its
/// `mmio` phase then attacks.
fn hostile_on_virtio_console(c: &mut Case) {
    if let CaseVms::List(vms) = &mut c.vms {
        for vm in vms.iter_mut().filter(|v| v.name == HOSTILE) {
            vm.console = ferrovisor::config::ConsoleChoice::Virtio;
        }
    }
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

/// Index of the first console line of VM `vm` starting with `text`.
fn vm_line(log: &[String], vm: &str, text: &str) -> Option<usize> {
    let prefix = format!("[{vm}] {text}");
    log.iter().position(|l| l.starts_with(&prefix))
}

/// What every run checks of the good VM: its DONE line, its poweroff as the
/// hypervisor logged it, no `FAIL:` line of its own but (where `tolerant`)
/// timer lateness. Returns (index of DONE, index of the poweroff line).
fn check_good(log: &[String], good: &str, tolerant: bool) -> (usize, usize) {
    let done = vm_line(log, good, &format!("DONE: {good} passed="))
        .unwrap_or_else(|| panic!("no DONE line of {good}"));
    let failed: usize = log[done]
        .split_whitespace()
        .find_map(|w| w.strip_prefix("failed="))
        .and_then(|n| n.parse().ok())
        .unwrap();
    let fails: Vec<&String> = log
        .iter()
        .filter(|l| l.starts_with(&format!("[{good}] FAIL:")))
        .collect();
    if tolerant {
        assert!(
            fails.iter().all(|l| l.contains(TOO_LATE)),
            "{good} failed other than by lateness: {fails:#?}"
        );
        assert_eq!(failed, fails.len(), "{good}: failed= vs FAIL lines");
        if !fails.is_empty() {
            eprintln!(
                "note: {good}: {} check(s) failed on timer lateness only (tolerated): {fails:#?}",
                fails.len()
            );
        }
    } else {
        assert!(fails.is_empty() && failed == 0, "{good}: {fails:#?}");
    }
    let off = if failed == 0 {
        exact(log, &format!("ferrovisor: VM '{good}' powered off"))
    } else {
        exact(
            log,
            &format!("ferrovisor: VM '{good}' powered off reporting a failure"),
        )
    };
    assert!(
        !log.iter()
            .any(|l| l.starts_with(&format!("ferrovisor: VM '{HOSTILE}' stopped"))),
        "the hypervisor stopped the hostile VM"
    );
    (done, off)
}

/// Checks the hostile VM had started before the good VM finished. sbi-test
/// is done in a fraction of a second, sometimes before the hostile VM printed
/// its first line: for it this is only noted; smp-test and timer-test run long
/// enough to demand it.
fn check_overlap(log: &[String], good: &str, done: usize) {
    let banner = vm_line(log, HOSTILE, &format!("INFO: {HOSTILE}: boot hart")).unwrap();
    if good == "sbi-test" {
        eprintln!(
            "note: the hostile VM printed its first line {} {good} finished",
            if banner < done {
                "before"
            } else {
                "only after"
            }
        );
    } else {
        assert!(
            banner < done,
            "the hostile VM started after the good VM finished"
        );
    }
}

/// The hostile VM runs phases that repeat forever: it must have been running
/// alongside the good VM ([`check_overlap`]) and printed progress lines after
/// the hypervisor logged the good VM's poweroff.
fn assert_overlap_and_progress(log: &[String], good: &str, tolerant: bool) {
    let (done, off) = check_good(log, good, tolerant);
    check_overlap(log, good, done);
    let prefix = format!("[{HOSTILE}] INFO: {HOSTILE}: phase ");
    let after = log[off..].iter().filter(|l| l.starts_with(&prefix)).count();
    assert!(
        after >= 1,
        "the hostile VM printed no progress after the good VM powered off (stalled?)"
    );
}

/// Every hostile phase in sequence (`wild,sbi,ipi,hsm,dbcn,mmio`), then all
/// its vCPUs spin: the good VM must finish, and the hostile VM must get
/// through every phase.
fn all_phases(good: &str, smp: u32) {
    let mut c = case(&format!("{good}-all-smp{smp}"), good, "", smp);
    for ph in ["wild", "sbi", "ipi", "hsm", "dbcn", "mmio"] {
        c.success_patterns.push(progress(ph));
    }
    c.success_patterns.push(spinning());
    let tolerant = good == "timer-test";
    if tolerant {
        tolerate_lateness(&mut c);
    }
    let log = run(&c);
    check_good(&log, good, tolerant);
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

/// Without Sstc the hypervisor emulates every guest timer through SBI
/// set_timer and its own timer queue.
#[test]
fn smp_test_all_nosstc_smp2() {
    let good = "smp-test";
    let mut c = case("smp-test-all-nosstc-smp2", good, "", 2);
    c.machine.cpu = Some("rv64,sstc=false".into());
    for ph in ["wild", "sbi", "ipi", "hsm", "dbcn", "mmio"] {
        c.success_patterns.push(progress(ph));
    }
    c.success_patterns.push(spinning());
    let log = run(&c);
    check_good(&log, good, false);
}

all_phases_tests!(sbi_test_all, "sbi-test");
all_phases_tests!(timer_test_all, "timer-test");
all_phases_tests!(smp_test_all, "smp-test");

/// One hostile phase list repeating forever next to `good` (the hostile VM
/// first, so it is under way before a short good VM is done).
fn repeating(good: &str, phases: &str, smp: u32) {
    let mut c = case_hostile_first(
        &format!("{good}-{}-smp{smp}", phases.replace(',', "-")),
        good,
        &format!("phase={phases}"),
        smp,
    );
    for ph in phases.split(',') {
        c.success_patterns.push(progress(ph));
    }
    c.stop_after_success = Some(LINGER_PROGRESS);
    let tolerant = good == "timer-test";
    if tolerant {
        tolerate_lateness(&mut c);
    }
    let log = run(&c);
    assert_overlap_and_progress(&log, good, tolerant);
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

#[test]
fn hsm_dbcn_vs_sbi_test_smp1() {
    repeating("sbi-test", "hsm,dbcn", 1);
}

#[test]
fn mmio_vs_sbi_test_smp2() {
    repeating("sbi-test", "mmio", 2);
}

#[test]
fn mmio_vs_smp_test_smp4() {
    repeating("smp-test", "mmio", 4);
}

/// The hostile VM with `console: virtio`: its `mmio` phase also sets up the
/// virtio-console's queues with bogus addresses and rings of random contents
/// and notifies them, on all its vCPUs at once, round after round, next to
/// smp-test. smp-test must finish, the hostile VM must never be stopped by
/// the hypervisor and must keep making progress, and its progress lines must
/// show the set-up sequences really ran.
#[test]
fn mmio_virtio_console_vs_smp_test_smp2() {
    let good = "smp-test";
    let mut c = case_hostile_first("smp-test-mmio-virtio-smp2", good, "phase=mmio", 2);
    hostile_on_virtio_console(&mut c);
    c.success_patterns.push(progress("mmio"));
    c.stop_after_success = Some(LINGER_PROGRESS);
    let log = run(&c);
    assert_overlap_and_progress(&log, good, false);
    let sequences: Vec<u64> = log
        .iter()
        .filter(|l| l.starts_with(&format!("[{HOSTILE}] INFO: {HOSTILE}: phase mmio done")))
        .filter_map(|l| {
            l.strip_suffix(" virtio set-up sequences")?
                .rsplit(' ')
                .next()?
                .parse()
                .ok()
        })
        .collect();
    assert!(
        !sequences.is_empty() && sequences.iter().all(|&n| n > 0),
        "the hostile VM ran no virtio set-up sequences: {sequences:?}"
    );
}

/// Every hostile vCPU spins with interrupts masked from the start: the good VM
/// still gets its time slices, timers and IPIs. The hostile VM comes first,
/// so one of its vCPUs shares the good VM's boot hart. (A short good VM may
/// finish before the last hostile vCPU spins; the note says which happened.)
fn spin_from_start(good: &str, smp: u32) {
    let mut c = case_hostile_first(&format!("{good}-spin-smp{smp}"), good, "phase=spin", smp);
    c.success_patterns.push(spinning());
    let tolerant = good == "timer-test";
    if tolerant {
        tolerate_lateness(&mut c);
    }
    let log = run(&c);
    let (done, _) = check_good(&log, good, tolerant);
    check_overlap(&log, good, done);
    let spin = vm_line(&log, HOSTILE, &format!("INFO: {HOSTILE}: phase spin: ")).unwrap();
    eprintln!(
        "note: every hostile vCPU was spinning {} the good VM finished",
        if spin < done { "before" } else { "only after" }
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

/// The virtio-console attack again, ending with the hostile VM's own SRST
/// shutdown, so the hypervisor logs what its virtio-console counted: the
/// bogus set-ups, notifications and rings were refused or broke queues
/// (counted, `DEVICE_NEEDS_RESET`), none stopped the VM (it powers off by
/// itself, reporting the failure it was told to), and smp-test finishes.
#[test]
fn virtio_console_abuse_is_counted_smp2() {
    let good = "smp-test";
    let mut c = case(
        "smp-test-virtio-counted-smp2",
        good,
        "phase=mmio,mmio,die die_ms=0",
        2,
    );
    hostile_on_virtio_console(&mut c);
    c.stop_after_success = None;
    let died = format!("ferrovisor: VM '{HOSTILE}' powered off reporting a failure");
    c.success_patterns.extend([
        Pattern::LineStart(died.clone()),
        Pattern::LineStart("ferrovisor: all VMs stopped (some failed)".into()),
    ]);
    let log = run(&c);
    check_good(&log, good, false);
    exact(&log, &died);
    let stats = log
        .iter()
        .find_map(|l| l.strip_prefix(&format!("ferrovisor: VM '{HOSTILE}' virtio-console: ")))
        .unwrap_or_else(|| panic!("no virtio-console counters of the hostile VM"));
    eprintln!("note: hostile virtio-console: {stats}");
    // "<n> <what>" pairs: every counter the attack must have moved.
    let count = |what: &str| -> u64 {
        let words: Vec<&str> = stats
            .split([' ', ',', ';', ':'])
            .filter(|w| !w.is_empty())
            .collect();
        words
            .windows(2)
            .find(|w| w[1] == what)
            .and_then(|w| w[0].parse().ok())
            .unwrap_or_else(|| panic!("no `{what}` count in {stats}"))
    };
    for what in ["accesses", "writes", "notifies", "broken"] {
        assert!(count(what) > 0, "{what}: 0 in {stats}");
    }
}

/// The case of [`hostile_dies_next_to_smp_test_smp2`]: the hostile VM starts
/// its other vCPUs spinning with interrupts masked and shuts itself down with
/// SRST reporting a failure. Checks that only its VM stopped (all four vCPUs,
/// two of them on the other hart) while the good VM still ran, that the good
/// VM then finished, and that the hypervisor ended the machine itself, saying
/// a VM failed. Returns the last lines of the log.
fn hostile_dies(name: &str) -> Vec<String> {
    let good = "smp-test";
    let mut c = case(name, good, "phase=die die_ms=0", 2);
    c.stop_after_success = None;
    let stopped = format!("ferrovisor: VM '{HOSTILE}' powered off reporting a failure");
    c.success_patterns.extend([
        Pattern::LineStart(format!("INFO: {HOSTILE}: phase die: ")),
        Pattern::LineStart(stopped.clone()),
        Pattern::LineStart("ferrovisor: all VMs stopped (some failed)".into()),
    ]);
    let log = run(&c);
    let (done, _) = check_good(&log, good, false);
    let died = exact(&log, &stopped);
    assert!(
        died < done,
        "the hostile VM should be stopped while the good VM still runs"
    );
    let tail = &log[log.len().saturating_sub(4)..];
    assert!(
        tail.last()
            .is_some_and(|l| l.starts_with("# qemu exited: ")),
        "QEMU should power off by itself, log ends: {tail:#?}"
    );
    tail.to_vec()
}

#[test]
fn hostile_dies_next_to_smp_test_smp2() {
    hostile_dies("smp-test-die-smp2");
}

/// The same, 30 times, demanding QEMU's exit status 1 (a VM failed) every
/// time: fails today about once in 10–30 runs with exit status 0 after
/// `ferrovisor: all VMs stopped (some failed)`. Likely cause: `power_off`
/// writes FINISHER_FAIL to the test finisher and then still calls SBI SRST,
/// whose syscon poweroff in OpenSBI writes FINISHER_PASS; QEMU acts on
/// shutdown requests asynchronously, so the second write can win.
#[test]
#[ignore = "known: exit status 0 instead of 1 now and then (FINISHER_FAIL then SRST poweroff)"]
fn strict_exit_status_after_vm_failure() {
    for i in 0..30 {
        let tail = hostile_dies("strict-exit-status");
        assert!(
            tail.last()
                .is_some_and(|l| l.starts_with("# qemu exited: exit status: 1")),
            "run {i}: QEMU should exit with status 1 (a VM failed), log ends: {tail:#?}"
        );
    }
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
        Pattern::LineStart(format!(
            "INFO: {HOSTILE}: phase reboot done: 3 cold reboots"
        )),
        progress("wild"),
    ]);
    let log = run(&c);
    check_good(&log, good, false);
    let reboots = log
        .iter()
        .filter(|l| *l == &format!("ferrovisor: VM '{HOSTILE}' rebooting"))
        .count();
    assert_eq!(reboots, 3, "the hypervisor should log 3 reboots");
}

/// timer-test with `failed=0` demanded, next to 4 spinning hostile vCPUs on
/// its only hart: fails today (timers about 20–40 ms late, see the module
/// documentation).
#[test]
#[ignore = "known: timer latency ≈ 10 ms × busy vCPUs sharing the hart (no preemption on timer expiry)"]
fn strict_timer_latency_same_hart_smp1() {
    let mut c = case("strict-timer-spin-smp1", "timer-test", "phase=spin", 1);
    c.success_patterns.push(spinning());
    let log = run(&c);
    check_good(&log, "timer-test", false);
}

/// timer-test with `failed=0` demanded, alone on hart 0 while 3 hostile
/// vCPUs on harts 1–3 make exits at a high rate: fails in most runs here
/// (timers up to about 100 ms late, see the module documentation); how often
/// depends on the host's load.
#[test]
#[ignore = "known: exit-heavy vCPUs on other harts delay timers by tens of ms (TCG, 2 host cores)"]
fn strict_timer_latency_other_harts_smp4() {
    let mut c = case_with("strict-timer-wild-smp4", "timer-test", "phase=wild", 3, 4);
    c.success_patterns.push(progress("wild"));
    let log = run(&c);
    check_good(&log, "timer-test", false);
}

/// The console-abuse VM's name: 64 characters, the longest a VM may have, so
/// every prefix it costs is as long as it gets.
const LONG_NAME: &str = "hostile-console-abuse-with-the-longest-name-a-vm-may-have-012345";
/// DBCN writes of 4 KiB per hostile vCPU and round of `phase=console`.
const CONSOLE_WRITES: usize = 40;
/// How long the good VM may take to its poweroff beside the console abuse
/// (QEMU's start included): smp-test takes a few seconds.
const CONSOLE_BOUND: Duration = Duration::from_secs(30);

/// Where `line` has an escape sequence other than SGR (`ESC [ digits;… m`),
/// the sequence's start.
fn non_sgr_escape(line: &str) -> Option<&str> {
    let mut rest = line;
    while let Some(i) = rest.find('\u{1b}') {
        let seq = &rest[i..];
        let body = seq.strip_prefix("\u{1b}[")?;
        let end = body.find(|c: char| !(c.is_ascii_digit() || c == ';'));
        match end {
            Some(e) if body[e..].starts_with('m') => rest = &body[e + 1..],
            _ => return Some(seq),
        }
    }
    None
}

/// Control characters a guest must not get to the operator's terminal (what
/// the console may emit itself, tab, backspace within a guest's own text and
/// `\r` before a re-printed prefix, is judged by [`render_line`]), C1 controls and
/// bidi overrides.
fn forbidden_char(c: char) -> bool {
    (c.is_control() && !matches!(c, '\t' | '\r' | '\u{8}' | '\u{1b}'))
        || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `guests/hostile-test` with `phase=console`, `vcpus` vCPUs and a
/// 64-character name writes 4 KiB DBCN buffers of `\rA…`, `a\n…`, escape sequences (cursor moves, clear
/// screen, OSC title, DCS, C1), forged `ferrovisor: VM 'x' powered off` lines
/// (after newlines, carriage returns, backspaces, cursor moves) and bytes >=
/// 0x80, while `good` runs to its end on the same `smp` harts. Asserts:
/// `good` passes and powers off within [`CONSOLE_BOUND`] (the console does not stall the machine); no line of the serial log, as a terminal shows it, starts
/// with `ferrovisor:` unless the hypervisor wrote it (the forged text only
/// ever appears after the hostile VM's `[name] ` prefix); no escape sequence
/// but SGR colours, no C0/C1 control but tab, backspace and `\r`, no bidi
/// override; and the hostile VM's share of the log is no larger than what it
/// wrote (no amplification).
fn console_abuse(good: &str, smp: u32, vcpus: u32) {
    assert_eq!(LONG_NAME.len(), 64);
    let mut c = case_with(
        &format!("console-abuse-{good}-smp{smp}"),
        good,
        &format!("phase=console count={CONSOLE_WRITES}"),
        vcpus,
        smp,
    );
    if let CaseVms::List(vms) = &mut c.vms {
        vms[1].name = LONG_NAME.to_string();
        // The hostile VM first: its vCPUs share the harts with the good VM's.
        vms.reverse();
    }
    // Success: the good VM's DONE and poweroff only, so that the run's time
    // is its (plus the linger, in which the hostile VM goes on).
    c.timeout = CONSOLE_BOUND + LINGER_PROGRESS;
    c.stop_after_success = Some(LINGER_PROGRESS);
    let t0 = std::time::Instant::now();
    let report = testing::run_and_report(&c);
    let took = t0.elapsed();
    let report = report.unwrap_or_else(|e| panic!("{}: {e}", c.name));
    let bytes = std::fs::read(&report.log_path).unwrap();
    let log: Vec<String> = String::from_utf8_lossy(&bytes)
        .lines()
        .map(str::to_string)
        .collect();
    eprintln!(
        "note: console-abuse: {} s, log {} bytes, {} lines",
        took.as_secs(),
        bytes.len(),
        log.len()
    );
    let (done, _) = check_good(&log, good, false);
    let prefix = format!("[{LONG_NAME}] ");
    check_overlap_named(&log, &prefix, done);
    let mut hostile_bytes = 0usize;
    for (i, raw) in log.iter().enumerate() {
        if let Some(seq) = non_sgr_escape(raw) {
            panic!("line {i}: an escape sequence other than SGR: {seq:?} in {raw:?}");
        }
        if let Some(ch) = raw.chars().find(|&ch| forbidden_char(ch)) {
            panic!("line {i}: control character {ch:?} in {raw:?}");
        }
        let shown = render_line(raw);
        if shown.contains("ferrovisor: VM 'x'") {
            assert!(
                shown.starts_with(&prefix),
                "line {i}: a forged hypervisor line shows as {shown:?} (raw {raw:?})"
            );
        }
        if shown.starts_with("ferrovisor:") {
            // Trailing blanks aside (a terminal shows none): under this flood
            // QEMU's serial port drops bytes when its host side is congested,
            // which can cut a line short after a space.
            assert_eq!(
                shown.trim_end(),
                raw.trim_end(),
                "line {i}: a `ferrovisor:` line that the terminal shows differently from what was sent"
            );
        }
        if shown.starts_with(&prefix) {
            hostile_bytes += raw.len() + 1;
        }
    }
    // What the hostile VM reported writing, plus the round in progress when
    // QEMU was stopped.
    let written: usize = log
        .iter()
        .filter_map(|l| {
            let rest = l.strip_prefix(&format!("{prefix}INFO: {HOSTILE}: phase console done: "))?;
            let n = rest.split(", ").nth(2)?.split(' ').next()?;
            n.parse::<usize>().ok()
        })
        .sum::<usize>()
        + CONSOLE_WRITES * vcpus as usize;
    assert!(
        written > CONSOLE_WRITES * vcpus as usize,
        "the hostile VM finished no round of console writes"
    );
    let input = written * 4096;
    assert!(
        hostile_bytes <= input,
        "the hostile VM's lines take {hostile_bytes} bytes of the log, more than the {input} bytes it wrote"
    );
    assert!(
        took <= CONSOLE_BOUND + LINGER_PROGRESS,
        "{good} took {took:?} beside the console abuse"
    );
}

/// Two hostile vCPUs, one per hart, beside smp-test.
#[test]
fn console_abuse_vs_smp_test_smp2() {
    console_abuse("smp-test", 2, 2);
}

/// [`check_overlap`] for a VM whose lines start with `prefix`.
fn check_overlap_named(log: &[String], prefix: &str, done: usize) {
    let banner = log
        .iter()
        .position(|l| l.starts_with(&format!("{prefix}INFO: {HOSTILE}: boot hart")))
        .unwrap_or_else(|| panic!("no banner line of the hostile VM"));
    assert!(
        banner < done,
        "the hostile VM started after the good VM finished"
    );
}
