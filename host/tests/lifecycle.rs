//! Lifecycle, scheduler and management-shell tests: several VMs on one machine,
//! driven through `ferrovisor run` (stdin and stdout piped) on the hypervisor's
//! console: guest shells, the console escapes (`Ctrl-A <digit>` moves the input
//! focus, `Ctrl-A c` enters and leaves the management shell, `Ctrl-A x` stops
//! every VM) and shell commands (`vm pause|resume|destroy|start|stop|info|log`,
//! `stats`).
//!
//! - `three_vms`: on 2 harts, two Linux VMs (2 vCPUs, 256 MiB each) and
//!   smp-test (4 vCPUs) at once. smp-test finishes with `failed=0` (it runs
//!   while the others boot); both Linux VMs reach userspace, `free -m` in each
//!   shows no more than its own 256 MiB (and more than 60 % of it), and a value
//!   written to `/tmp` (tmpfs) in one is not visible in the other, whose own
//!   value stays its own.
//! - `hostile_beside_linux`: on 2 harts, two Linux VMs (2 vCPUs, 256 MiB each)
//!   and hostile-test (2 vCPUs) going through all its attacks over and over
//!   (`phase=wild,sbi,ipi,hsm,dbcn,mmio,spin spin_ms=1000`: wild loads, stores
//!   and jumps, random SBI calls, IPI storms among its vCPUs, HSM and DBCN
//!   abuse, fuzzing of its devices, 1 s with interrupts off on every vCPU).
//!   It completes phases while Linux boots and the hypervisor logs the access
//!   faults it injects. Both Linux VMs reach userspace; then, while every
//!   hostile phase completes at least once more, each sees its own memory
//!   only (`free -m`; a tmpfs file of one is not in the other), sums a file
//!   of 3000 or 4000 numbers written to its tmpfs, and answers at least 10
//!   trivial commands (`echo`), each within 5 s from typed to prompt (median
//!   and maximum noted); then it sums again and reads its own file back.
//!   hostile-test keeps completing phases; it never prints `FAIL:` (a breach
//!   it sees), the hypervisor never stops it (`vm info`: running). Both Linux
//!   VMs power off, the operator stops hostile-test, and the machine ends
//!   clean.
//! - `pause_resume`: a Linux VM next to a CPU-bound bystander (cpu-hog) is
//!   paused from the shell while a background loop in it prints the guest's
//!   uptime every second. While paused, `vm info` says `paused`, no new line
//!   of it reaches the console, `vm log` does not change, and the bystander
//!   keeps running (its run time in `stats` grows). After `vm resume` the loop's next line shows the
//!   guest clock advanced by about one loop period across a pause of 6 s (guest
//!   time stood still), and the guest's shell answers.
//! - `disk_survives_destroy_start`: a Linux VM with an ext4 disk (`disks:`)
//!   writes a file and syncs; `vm destroy` + `vm start`; the new instance
//!   mounts the disk and reads the file; after poweroff the image file on
//!   the host holds it (`debugfs`).
//! - `destroy_recreate`: a Linux VM is destroyed (`vm destroy`, while it runs;
//!   in the second round while it is paused) and started again (`vm start`)
//!   three times, next to an idle VM that keeps the machine up; then rebooted
//!   by the operator (`vm reboot`, while paused); then powered off from inside,
//!   destroyed and started once more. Each time it boots to userspace afresh
//!   (uptime starts over) and sees its own memory. The free memory `stats`
//!   reports after every destroy is the same each time (no frames leak) and at
//!   least the VM's RAM more than while it ran.
//! - `stop_during_reboot`: srst-test (with a 768 MiB initrd, so its reload
//!   takes a while) reboots itself; the operator's `vm stop`, typed as soon as
//!   the reboot is logged, lands while it reloads. The VM stays stopped (the
//!   hypervisor logs that the reboot gave way), prints nothing more, and the
//!   idle keeper VM still runs (the stop was counted once) until it is stopped.
//! - `full_host_first_touch`: on a machine with just the memory
//!   `ferrovisor run` accepts for it, one VM of 2050 MiB (cpu-hog `touch`:
//!   its RAM spans three GiB regions of guest-physical space, the middle one
//!   untouched until then) touches every page
//!   of its RAM on a key press and reads its patterns back (`PASS:
//!   cpu-hog/touched-all-ram`). It keeps running, all of its RAM is resident
//!   (`vm info`), and the free memory `stats` reports is exactly what it was
//!   before the touching: every page-table frame was reserved at creation.
//! - `fairness`: four CPU-bound VMs (cpu-hog), two pinned to hart 0 with
//!   weights 100 and 200, two pinned to hart 1 with weights 100 and 100. Over
//!   10 s the run time `stats` reports grows in the ratio 1:2 (1.9..=2.1) on
//!   hart 0 and 1:1 (0.95..=1.05) on hart 1. Before that, the shell answers
//!   an unknown VM, an unknown command and a resume of a running VM with an
//!   error line.
//! - `periodic_balance`: six cpu-hog VMs (1 vCPU each) on 2 harts, placed 3:3;
//!   two of hart 1's are stopped (3:1, no hart idle, so work stealing never
//!   helps); the periodic balancer moves one (migrations > 0, placement 2:2)
//!   and over 8 s the four run times are even (max/min <= 1.25; unbalanced ~3).
//! - `overcommit_4_vcpus_1_hart`, `overcommit_5_vcpus_2_harts`: cpu-hog with
//!   more CPU-bound vCPUs than harts: every vCPU finishes its work, and all of
//!   them progress side by side (each has done a quarter before any is done),
//!   which takes preemptive time slices.
//!
//! Operator stops (`vm stop`, `Ctrl-A x`, `vm destroy` of a running VM) are
//! deliberate, so they count as clean ends: a machine whose VMs all powered off
//! or were stopped by the operator powers off with `all VMs stopped (all
//! clean)` and exit status 0; the tests expect exactly that.
//!
//! Any of `Kernel panic`, `Oops`, `Unable to handle kernel`, `FAIL:`,
//! `panicked`, `ferrovisor: FATAL`, `ferrovisor: TRAP`, a `DONE:` line with
//! failures or a VM stopped by the hypervisor fails a test at once. The raw
//! transcript is kept as `target/qemu-logs/lifecycle-<test>.log`, the steps with
//! their times as `target/qemu-logs/lifecycle-<test>.steps.log`.
//!
//! Needs `scripts/build.sh` (the hypervisor, smp-test, cpu-hog and hostile-test) and
//! `scripts/fetch-linux.sh`. Run with
//! `cargo test -p ferrovisor --test lifecycle -- --test-threads=1`
//! (add `--nocapture` to watch the steps).
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ferrovisor::testing::{self, Case, CaseVms, Pattern};
use ferrovisor::MIB;

use common::{
    check_memory, hypervisor_built, Console, Vm, BOOT, COMMAND, MARKER, POWEROFF, PROMPT,
};

/// `ferrovisor run --timeout`: the hard limit of a whole test.
const HARD_LIMIT_S: u64 = 600;

const SHELL_PROMPT: &str = "fv> ";
const HOG: &str = "cpu-hog";

/// Writes `target/qemu-cases/lifecycle-<case>.yaml`: a machine with `cpus`
/// harts and 1 GiB running `vms`.
fn write_config(case: &str, cpus: u32, vms: &[Vm]) -> PathBuf {
    common::write_config(&format!("lifecycle-{case}"), cpus, vms)
}

// ---------------------------------------------------------------------------
// The management shell (the rest of the console driver is in `common`).

impl Console {
    /// Starts `ferrovisor run --config <config> --timeout HARD_LIMIT_S` for
    /// `vms`, logs `target/qemu-logs/lifecycle-<case>.*`.
    fn start(case: &str, config: &Path, vms: &[Vm]) -> Console {
        Console::spawn(&format!("lifecycle-{case}"), config, HARD_LIMIT_S, vms)
    }

    /// `Ctrl-A c`: into the management shell, up to its first prompt.
    fn enter_shell(&mut self) {
        self.note("Ctrl-A c: enter the shell");
        self.send("\x01c");
        self.expect_raw_line("the shell's banner", COMMAND, |l| {
            l.starts_with("ferrovisor shell:")
        });
        self.expect_text(SHELL_PROMPT, COMMAND);
    }

    /// `Ctrl-A c` again: back to the VMs.
    fn leave_shell(&mut self) {
        self.note("Ctrl-A c: leave the shell");
        self.send("\x01c");
        self.expect_raw_line("`(left the shell)`", COMMAND, |l| {
            l.ends_with("(left the shell)")
        });
    }

    /// `Ctrl-A x` (outside the shell): every VM stops, and the machine ends
    /// cleanly (operator stops are clean ends).
    fn stop_everything(&mut self) {
        self.note("Ctrl-A x");
        self.send("\x01x");
        self.expect_log("Ctrl-A x: stopping every VM", COMMAND);
        self.expect_machine_end(true);
    }

    /// Whether `line` is a console line of one of the VMs.
    fn is_guest_line(&self, line: &str) -> bool {
        self.vms.iter().any(|n| {
            line.strip_prefix('[')
                .and_then(|r| r.strip_prefix(n.as_str()))
                .is_some_and(|r| r.starts_with("] "))
        })
    }

    /// Runs management command `cmd` (in the shell, at its prompt) and returns
    /// the reply's lines, without guest lines and hypervisor log lines that
    /// came in between. The echo of the typed command may be split by such
    /// lines; its pieces are put together and checked.
    fn mgmt(&mut self, cmd: &str) -> Vec<String> {
        self.note(&format!("{SHELL_PROMPT}{cmd}"));
        self.send(&format!("{cmd}\n"));
        let needle = format!("\n{SHELL_PROMPT}");
        let region = self.wait_for(&format!("the reply to `{cmd}`"), COMMAND, |text| {
            text.find(&needle)
                .map(|i| (i + needle.len(), text[..=i].to_string()))
        });
        let kept: Vec<String> = region
            .lines()
            .filter(|l| !self.is_guest_line(l) && !l.starts_with("ferrovisor: "))
            .map(str::to_string)
            .collect();
        let mut lines = kept.into_iter();
        let mut echo = String::new();
        while echo.len() < cmd.len() {
            match lines.next() {
                Some(l) => echo.push_str(&l),
                None => break,
            }
        }
        if echo != cmd {
            let msg = self.fail(&format!(
                "the shell echoed {echo:?} for `{cmd}`; reply region: {region:?}"
            ));
            panic!("{msg}");
        }
        lines.collect()
    }

    /// `mgmt(cmd)` whose reply must contain the line `want`.
    fn mgmt_expect(&mut self, cmd: &str, want: &str) -> Vec<String> {
        let reply = self.mgmt(cmd);
        if !reply.iter().any(|l| l == want) {
            let msg = self.fail(&format!(
                "`{cmd}` answered {reply:#?}, expected a line `{want}`"
            ));
            panic!("{msg}");
        }
        self.note(&format!("  -> {want}"));
        reply
    }

    /// The `state:` of `vm info NAME`.
    fn vm_state(&mut self, vm: &str) -> String {
        let reply = self.mgmt(&format!("vm info {vm}"));
        match field(&reply, "state") {
            Some(s) => {
                self.note(&format!("  -> state: {s}"));
                s
            }
            None => {
                let msg = self.fail(&format!("no `state:` in `vm info {vm}`: {reply:#?}"));
                panic!("{msg}");
            }
        }
    }

    /// `stats`: the machine's free memory, bytes.
    fn free_memory(&mut self) -> u64 {
        let reply = self.mgmt("stats");
        match free_bytes(&reply) {
            Some(b) => {
                self.note(&format!("  -> {} KiB free", b >> 10));
                b
            }
            None => {
                let msg = self.fail(&format!(
                    "no `memory: ... free` line in `stats`: {reply:#?}"
                ));
                panic!("{msg}");
            }
        }
    }

    /// `stats NAME`: the VM's run time so far, seconds.
    fn run_time(&mut self, vm: &str) -> f64 {
        let reply = self.mgmt(&format!("stats {vm}"));
        match run_time(&reply, vm) {
            Some(s) => {
                self.note(&format!("  -> run time {s:.3} s"));
                s
            }
            None => {
                let msg = self.fail(&format!("no run time in `stats {vm}`: {reply:#?}"));
                panic!("{msg}");
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Reading replies.

/// The value of `key:` in a `vm info` reply (`state:    paused` → `paused`).
fn field(reply: &[String], key: &str) -> Option<String> {
    reply.iter().find_map(|l| {
        l.split_once(':')
            .filter(|(k, _)| k.trim() == key)
            .map(|(_, v)| v.trim().to_string())
    })
}

/// A size as the shell prints it: `0`, `512M`, `449280K`, `4096B`.
fn parse_size(s: &str) -> Option<u64> {
    if s == "0" {
        return Some(0);
    }
    let (num, shift) = match s.as_bytes().last()? {
        b'T' => (&s[..s.len() - 1], 40),
        b'G' => (&s[..s.len() - 1], 30),
        b'M' => (&s[..s.len() - 1], 20),
        b'K' => (&s[..s.len() - 1], 10),
        b'B' => (&s[..s.len() - 1], 0),
        _ => return None,
    };
    num.parse::<u64>().ok()?.checked_mul(1 << shift)
}

/// Free bytes from `stats`' `memory: <total> total, <free> free; uptime ...`.
fn free_bytes(reply: &[String]) -> Option<u64> {
    let line = reply.iter().find(|l| l.starts_with("memory:"))?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let i = words
        .iter()
        .position(|w| w.trim_end_matches(';') == "free")?;
    parse_size(words.get(i.checked_sub(1)?)?.trim_end_matches(','))
}

/// Seconds of run time of VM `vm` in a `stats` reply: the `all` row of its
/// table (`all  4.384s  0  627 ...`).
fn run_time(reply: &[String], vm: &str) -> Option<f64> {
    let head = format!("VM '{vm}':");
    let start = reply.iter().position(|l| l.starts_with(&head))?;
    reply[start + 1..]
        .iter()
        .take_while(|l| !l.starts_with("VM '"))
        .find(|l| l.split_whitespace().next() == Some("all"))?
        .split_whitespace()
        .find_map(|w| w.strip_suffix('s')?.parse().ok())
}

/// The first number on a line of the form `<word> <number> ...`.
fn uptime_of(out: &[String]) -> Option<f64> {
    out.iter()
        .find_map(|l| l.split_whitespace().next()?.parse().ok())
}

// ---------------------------------------------------------------------------
// The tests.

/// `free -m` in VM `vm` shows more than 60 % of its `mib` and no more (the
/// kernel keeps about 70 MiB of 256 MiB for itself: its image, page structs).
fn check_own_memory(c: &mut Console, vm: &str, mib: u64) {
    check_memory(c, vm, mib, 60);
}

/// Two Linux VMs and smp-test at once on 2 harts: all work, and each Linux VM
/// sees only its own memory and files.
#[test]
fn three_vms() {
    const MIB_EACH: u64 = 256;
    let vms = [
        Vm::linux("a", 2, MIB_EACH),
        Vm::linux("b", 2, MIB_EACH),
        Vm::bare("smp-test", "smp-test", 4, ""),
    ];
    let config = write_config("three-vms", 2, &vms);
    let mut c = Console::start("three-vms", &config, &vms);
    for vm in ["a", "b"] {
        let marker = format!("[{vm}] {MARKER}");
        c.wait_anywhere(&format!("{vm}'s userspace marker"), BOOT, |l| l == marker);
    }
    // Both shells are up and quiet: output of one VM while a line of the other
    // is unfinished would split that line on the console.
    for vm in ["a", "b"] {
        c.wait_text_anywhere(&format!("[{vm}] {PROMPT}"), COMMAND);
    }
    c.wait_anywhere("smp-test's DONE line", BOOT, |l| {
        l.starts_with("[smp-test] DONE: smp-test passed=")
    });
    c.wait_anywhere("smp-test powering off", POWEROFF, |l| {
        l == "ferrovisor: VM 'smp-test' powered off"
    });
    let done = c.vm_lines("smp-test", |l| l.starts_with("DONE:"));
    assert!(
        done.len() == 1 && done[0].ends_with(" failed=0"),
        "smp-test: {done:?}"
    );
    // At once: smp-test started before either Linux VM was up.
    let first = |c: &Console, line: &str| c.text.lines().position(|l| l.starts_with(line));
    let smp_first = first(&c, "[smp-test] ").unwrap();
    for vm in ["a", "b"] {
        let up = first(&c, &format!("[{vm}] {MARKER}")).unwrap();
        assert!(
            smp_first < up,
            "smp-test printed its first line only after {vm} was up"
        );
    }

    let nonce = format!(
        "{}-{}",
        std::process::id(),
        Instant::now().duration_since(c.start).as_nanos()
    );
    let secret = |vm: &str| format!("fv-secret-{vm}-{nonce}");
    // a: its own memory, a value in its tmpfs.
    c.focus(0, "a");
    check_own_memory(&mut c, "a", MIB_EACH);
    let n = c.sh("a", "nproc");
    assert!(n.iter().any(|l| l.trim() == "2"), "a: nproc {n:?}");
    c.sh("a", &format!("echo {} > /tmp/fv-secret", secret("a")));
    // b: its own memory; a's file is not there; then a value of its own.
    c.focus(1, "b");
    check_own_memory(&mut c, "b", MIB_EACH);
    let out = c.sh("b", "cat /tmp/fv-secret 2>/dev/null || echo fv-no-secret");
    assert!(
        out.iter().all(|l| !l.contains(&secret("a"))),
        "b sees a's tmpfs file: {out:?}"
    );
    assert!(
        out.iter().any(|l| l == "fv-no-secret"),
        "b: /tmp/fv-secret should not exist: {out:?}"
    );
    c.sh("b", &format!("echo {} > /tmp/fv-secret", secret("b")));
    // a still reads its own value.
    c.focus(0, "a");
    let out = c.sh("a", "cat /tmp/fv-secret");
    assert_eq!(out, [secret("a")], "a's tmpfs file changed");
    c.focus(1, "b");
    let out = c.sh("b", "cat /tmp/fv-secret");
    assert_eq!(out, [secret("b")], "b's tmpfs file");
    c.poweroff("b");
    c.focus(0, "a");
    c.poweroff("a");
    c.expect_machine_end(true);
    eprintln!("[lifecycle-three-vms] PASS in {:.1} s", c.secs());
}

/// Two Linux VMs stay contained, working and responsive beside hostile-test
/// attacking from a third VM (see the module documentation).
#[test]
fn hostile_beside_linux() {
    const MIB_EACH: u64 = 256;
    const HOSTILE: &str = "hostile-test";
    /// Every attack of hostile-test; `spin` lasts `spin_ms`, so the list
    /// repeats for as long as the VM runs.
    const PHASES: [&str; 7] = ["wild", "sbi", "ipi", "hsm", "dbcn", "mmio", "spin"];
    /// Each trivial command's answer, typed to prompt, must come within this.
    const RTT_LIMIT: Duration = Duration::from_secs(5);
    /// Trivial commands per Linux VM, at least.
    const PINGS: usize = 10;
    /// The measured phase ends once every hostile phase has also completed in
    /// it; this long at the most.
    const WINDOW_LIMIT: Duration = Duration::from_secs(60);
    let mut hostile = Vm::bare(
        HOSTILE,
        HOSTILE,
        2,
        &format!("phase={} spin_ms=1000", PHASES.join(",")),
    );
    hostile.memory_mib = 64;
    let vms = [
        Vm::linux("a", 2, MIB_EACH),
        Vm::linux("b", 2, MIB_EACH),
        hostile,
    ];
    let config = write_config("hostile-beside-linux", 2, &vms);
    let mut c = Console::start("hostile-beside-linux", &config, &vms);
    let hostile_line = format!("[{HOSTILE}] INFO: {HOSTILE}: ");
    c.wait_anywhere("hostile-test under way with its checks on", COMMAND, |l| {
        l.strip_prefix(&hostile_line)
            .is_some_and(|r| r.contains("Ferrovisor, containment checks on"))
    });
    // The hostile phases a stretch of console output shows completed.
    let progress = format!("{hostile_line}phase ");
    let phases_in = |text: &str| -> Vec<String> {
        text.lines()
            .filter_map(|l| l.strip_prefix(&progress)?.split_once(" done: "))
            .map(|(p, _)| p.to_string())
            .collect()
    };
    for vm in ["a", "b"] {
        let marker = format!("[{vm}] {MARKER}");
        c.wait_anywhere(&format!("{vm}'s userspace marker"), BOOT, |l| l == marker);
    }
    for vm in ["a", "b"] {
        c.wait_text_anywhere(&format!("[{vm}] {PROMPT}"), COMMAND);
    }
    // The attack ran while Linux booted.
    let first_up = ["a", "b"]
        .iter()
        .filter_map(|vm| c.text.find(&format!("[{vm}] {MARKER}")))
        .min()
        .unwrap();
    let during_boot = phases_in(&c.text[..first_up]);
    c.note(&format!(
        "hostile phases done before a Linux VM was up: {}",
        during_boot.len()
    ));
    assert!(
        !during_boot.is_empty(),
        "hostile-test completed no phase while the Linux VMs booted"
    );
    // Its wild accesses reach the hypervisor, which answers them with faults.
    let injected = format!("ferrovisor: VM '{HOSTILE}' vCPU ");
    c.wait_anywhere("an access fault injected into hostile-test", COMMAND, |l| {
        l.starts_with(&injected) && l.ends_with("(nothing there): access fault injected")
    });

    // The measured phase: real work, isolation and round trips in both VMs
    // while hostile-test goes through its phases.
    let window_from = c.text.len();
    let window = Instant::now();
    // Writes 1..=n to a tmpfs file, reads it back and sums it in the shell.
    let work = |c: &mut Console, vm: &str, n: u64| {
        let out = c.sh(
            vm,
            &format!(
                "seq 1 {n} > /tmp/fv-work && s=0 && while read k; do s=$((s+k)); done < /tmp/fv-work && echo fv-work lines=$(wc -l < /tmp/fv-work) sum=$s"
            ),
        );
        let want = format!("fv-work lines={n} sum={}", n * (n + 1) / 2);
        assert_eq!(out, [want], "{vm}: the sum of its file");
    };
    // Each VM's own file, still its own.
    let read_back = |c: &mut Console, vm: &str, n: u64| {
        let out = c.sh(vm, "wc -l < /tmp/fv-work; tail -n 1 /tmp/fv-work");
        assert_eq!(out, [n.to_string(), n.to_string()], "{vm}: /tmp/fv-work");
    };
    let own_n = |vm: &str| if vm == "a" { 3000 } else { 4000 };
    c.focus(0, "a");
    check_own_memory(&mut c, "a", MIB_EACH);
    work(&mut c, "a", own_n("a"));
    c.focus(1, "b");
    check_own_memory(&mut c, "b", MIB_EACH);
    let out = c.sh("b", "test -e /tmp/fv-work || echo fv-no-work");
    assert_eq!(out, ["fv-no-work"], "b sees a file of a's tmpfs");
    work(&mut c, "b", own_n("b"));
    // Round trips of a trivial command, alternating between the VMs, until
    // every hostile phase has completed during the measured phase.
    let mut rtts: Vec<(&str, f64)> = Vec::new();
    let mut pings = 0;
    loop {
        let seen = phases_in(&c.text[window_from..]);
        let count = |vm: &str| rtts.iter().filter(|(v, _)| *v == vm).count();
        if count("a") >= PINGS
            && count("b") >= PINGS
            && PHASES.iter().all(|p| seen.iter().any(|s| s == p))
        {
            break;
        }
        if window.elapsed() > WINDOW_LIMIT {
            let msg = c.fail(&format!(
                "after {} s, hostile phases done in the measured phase: {seen:?} (want all of {PHASES:?})",
                WINDOW_LIMIT.as_secs()
            ));
            panic!("{msg}");
        }
        for (i, vm) in [(0, "a"), (1, "b")] {
            c.focus(i, vm);
            for _ in 0..5 {
                pings += 1;
                let token = format!("fv-ping-{vm}-{pings}");
                let t = Instant::now();
                let out = c.sh(vm, &format!("echo {token}"));
                let rtt = t.elapsed();
                assert_eq!(out, [token], "{vm}: the echo");
                c.note(&format!(
                    "{vm}: round trip {:.0} ms",
                    rtt.as_secs_f64() * 1e3
                ));
                assert!(
                    rtt < RTT_LIMIT,
                    "{vm}: `echo` answered after {rtt:?} (limit {RTT_LIMIT:?}) beside hostile-test"
                );
                rtts.push((vm, rtt.as_secs_f64()));
            }
        }
    }
    // Still working, each with its own file.
    for (i, vm) in [(0, "a"), (1, "b")] {
        c.focus(i, vm);
        read_back(&mut c, vm, own_n(vm));
        work(&mut c, vm, own_n(vm));
    }
    let window_s = window.elapsed().as_secs_f64();
    let seen = phases_in(&c.text[window_from..]);
    let stats = |vm: Option<&str>| -> (usize, f64, f64) {
        let mut v: Vec<f64> = rtts
            .iter()
            .filter(|(x, _)| vm.is_none_or(|vm| vm == *x))
            .map(|(_, t)| *t * 1e3)
            .collect();
        v.sort_by(f64::total_cmp);
        (v.len(), v[v.len() / 2], v[v.len() - 1])
    };
    let mut summary = String::new();
    for (label, vm) in [("a", Some("a")), ("b", Some("b")), ("all", None)] {
        let (n, median, max) = stats(vm);
        let _ = write!(
            summary,
            "{label}: {n} round trips, median {median:.0} ms, max {max:.0} ms; "
        );
    }
    let summary = format!(
        "beside hostile-test for {window_s:.1} s ({} hostile phases done meanwhile): {summary}limit {} ms each",
        seen.len(),
        RTT_LIMIT.as_millis()
    );
    c.note(&summary);
    eprintln!("[lifecycle-hostile-beside-linux] {summary}");
    // hostile-test is still at it: another phase completes.
    let done_before = phases_in(&c.text).len();
    let deadline = Instant::now() + COMMAND;
    while phases_in(&c.text).len() == done_before {
        assert!(
            Instant::now() < deadline,
            "hostile-test completed no phase within {COMMAND:?} after the measured phase"
        );
        c.idle_for(Duration::from_millis(200));
    }
    // The end: both Linux VMs power off while it still attacks; it is still
    // running (the hypervisor had no reason to stop it) until the operator
    // stops it, a clean end.
    c.focus(1, "b");
    c.poweroff("b");
    c.focus(0, "a");
    c.poweroff("a");
    c.enter_shell();
    assert_eq!(c.vm_state(HOSTILE), "running");
    c.mgmt_expect(
        &format!("vm stop {HOSTILE}"),
        &format!("VM '{HOSTILE}' stopped"),
    );
    let stopped = format!("ferrovisor: VM '{HOSTILE}' stopped by the operator");
    c.wait_anywhere("the operator's stop logged", COMMAND, |l| l == stopped);
    c.expect_machine_end(true);
    eprintln!("[lifecycle-hostile-beside-linux] PASS in {:.1} s", c.secs());
}

/// Pause and resume a Linux VM from the shell (see the module documentation).
#[test]
fn pause_resume() {
    const PAUSE: Duration = Duration::from_secs(6);
    // No progress lines: a line of one VM printed while another VM's line is
    // unfinished splits that line on the console, which would garble the
    // Linux VM's output. Its run time in `stats` shows it progressing.
    let mut hog = Vm::bare("hog", HOG, 1, "ms=0");
    // The bystander yields to the Linux VM whenever that has work.
    hog.weight = Some(10);
    hog.pin = Some(1);
    let vms = [Vm::linux("linux", 2, 256), hog];
    let config = write_config("pause-resume", 2, &vms);
    let mut c = Console::start("pause-resume", &config, &vms);
    let t0 = Instant::now();
    c.boot("linux", t0);
    c.wait_anywhere("the bystander working", COMMAND, |l| {
        l.starts_with("[hog] INFO: cpu-hog: 1 hart(s) working")
    });
    c.focus(0, "linux");
    // A loop printing the guest's uptime every second, in the background.
    c.sh(
        "linux",
        "( while :; do read u _ < /proc/uptime; echo fv-tick $u; sleep 1; done & echo $! > /tmp/fv-ticker.pid )",
    );
    let is_tick = |l: &str| l.starts_with("fv-tick ");
    c.expect_vm_line("linux", "a tick", COMMAND, is_tick);
    c.expect_vm_line("linux", "another tick", COMMAND, is_tick);

    c.enter_shell();
    c.mgmt_expect("vm pause linux", "VM 'linux' paused");
    let paused_at = Instant::now();
    // The last tick printed before the pause took effect (one may still be
    // on its way when the command returns: wait a moment first).
    c.idle_for(Duration::from_secs(1));
    let ticks_paused = c.vm_lines("linux", is_tick);
    let last_before = ticks_paused.last().cloned().unwrap();
    assert_eq!(c.vm_state("linux"), "paused");
    let log_then = c.mgmt("vm log linux 5");
    let hog_then = c.run_time("hog");
    let window = Instant::now();
    c.idle_for(PAUSE - Duration::from_secs(1));
    let ticks_now = c.vm_lines("linux", is_tick);
    assert_eq!(
        ticks_now.len(),
        ticks_paused.len(),
        "the paused VM printed: {:?}",
        &ticks_now[ticks_paused.len()..]
    );
    let log_now = c.mgmt("vm log linux 5");
    assert_eq!(log_now, log_then, "the paused VM's console history grew");
    assert!(
        log_now.iter().any(|l| l == &last_before),
        "`vm log linux 5` should end with the last tick {last_before:?}: {log_now:?}"
    );
    let hog_ran = c.run_time("hog") - hog_then;
    let window = window.elapsed().as_secs_f64();
    c.note(&format!(
        "while paused: the bystander ran {hog_ran:.3} s of {window:.1} s"
    ));
    assert!(
        hog_ran > 0.5 * window,
        "the bystander VM ran only {hog_ran:.3} s of {window:.1} s while the other was paused"
    );
    assert_eq!(c.vm_state("linux"), "paused");
    c.mgmt_expect("vm resume linux", "VM 'linux' resumed");
    let paused_for = paused_at.elapsed().as_secs_f64();
    assert_eq!(c.vm_state("linux"), "running");
    c.leave_shell();

    // Guest time stood still: the next tick is about one period after the last.
    let first_after = c.nth_vm_line(
        "linux",
        "the first tick after the pause",
        ticks_paused.len(),
        is_tick,
    );
    let up = |l: &str| -> f64 {
        l.trim_start_matches("fv-tick ")
            .parse()
            .unwrap_or_else(|_| panic!("bad tick line {l:?}"))
    };
    let (before, after) = (up(&last_before), up(&first_after));
    c.note(&format!(
        "guest uptime {before:.2} s before the pause, {after:.2} s after it; paused for {paused_for:.1} s"
    ));
    assert!(
        after > before && after - before < 3.0,
        "guest time advanced {:.2} s across a pause of {paused_for:.1} s (ticks every 1 s): \
         the pause did not freeze guest time",
        after - before
    );
    // The shell in the VM answers; the loop ends.
    c.sh("linux", "kill $(cat /tmp/fv-ticker.pid)");
    let out = c.sh("linux", "echo still-$((20 + 22))");
    assert_eq!(out, ["still-42"]);
    c.poweroff("linux");
    c.enter_shell();
    c.mgmt_expect("vm stop hog", "VM 'hog' stopped");
    c.expect_machine_end(true);
    eprintln!("[lifecycle-pause-resume] PASS in {:.1} s", c.secs());
}

/// Destroy and start a Linux VM again, repeatedly, watching free memory (see
/// the module documentation).
#[test]
fn destroy_recreate() {
    const VM_MIB: u64 = 256;
    const ROUNDS: usize = 3;
    let vms = [
        Vm::linux("victim", 2, VM_MIB),
        Vm::bare("keeper", HOG, 1, "idle"),
    ];
    let config = write_config("destroy-recreate", 2, &vms);
    let mut c = Console::start("destroy-recreate", &config, &vms);
    c.boot("victim", Instant::now());
    c.focus(0, "victim");
    check_own_memory(&mut c, "victim", VM_MIB);
    c.enter_shell();
    let running_free = c.free_memory();
    let mut free_after = Vec::new();
    // `cmd` (at the shell prompt) makes the victim boot afresh: to userspace,
    // its uptime started over, its memory its own.
    let boot_afresh = |c: &mut Console, cmd: &str, reply: &str| {
        c.mgmt_expect(cmd, reply);
        let started = Instant::now();
        c.leave_shell();
        let boot_s = c.boot("victim", started);
        c.send("\n");
        c.expect_text(&format!("[victim] {PROMPT}"), COMMAND);
        let out = c.sh("victim", "cat /proc/uptime");
        let up = uptime_of(&out).unwrap_or_else(|| panic!("no uptime in {out:?}"));
        let since = started.elapsed().as_secs_f64();
        assert!(
            up < since + 1.0,
            "victim's uptime {up} s: no fresh boot ({since:.1} s since `{cmd}`)"
        );
        check_own_memory(c, "victim", VM_MIB);
        boot_s
    };
    let start = |c: &mut Console| boot_afresh(c, "vm start victim", "VM 'victim' started");
    let mut boots = Vec::new();
    for round in 1..=ROUNDS {
        if round == 2 {
            c.note(&format!("round {round}: destroy the VM while it is paused"));
            c.mgmt_expect("vm pause victim", "VM 'victim' paused");
        } else {
            c.note(&format!("round {round}: destroy the running VM"));
        }
        c.mgmt_expect(
            "vm destroy victim",
            "VM 'victim' destroyed; its memory is free",
        );
        assert_eq!(c.vm_state("victim"), "destroyed");
        free_after.push(c.free_memory());
        boots.push(start(&mut c));
        c.enter_shell();
        assert_eq!(c.vm_state("victim"), "running");
    }
    // The operator reboots it (paused first: `vm reboot` resumes it).
    c.mgmt_expect("vm pause victim", "VM 'victim' paused");
    boots.push(boot_afresh(
        &mut c,
        "vm reboot victim",
        "VM 'victim' is rebooting",
    ));
    // Powered off from inside (its shell has the input), then destroyed (no
    // forced stop), then started again.
    c.poweroff("victim");
    c.enter_shell();
    let state = c.vm_state("victim");
    assert!(state.starts_with("stopped"), "after poweroff: {state}");
    c.mgmt_expect(
        "vm destroy victim",
        "VM 'victim' destroyed; its memory is free",
    );
    free_after.push(c.free_memory());
    boots.push(start(&mut c));
    c.enter_shell();
    c.note(&format!(
        "free while running first: {} KiB; after each destroy: {:?} KiB; boots {boots:.1?} s",
        running_free >> 10,
        free_after.iter().map(|b| b >> 10).collect::<Vec<_>>()
    ));
    assert!(
        free_after.iter().all(|&f| f == free_after[0]),
        "free memory after destroy changed from round to round (a leak?): {free_after:?}"
    );
    assert!(
        free_after[0] >= running_free + VM_MIB * MIB,
        "destroy freed less than the VM's RAM: {running_free} bytes free while it ran, {} after",
        free_after[0]
    );
    // The end: the last victim and the keeper stopped by the operator.
    c.mgmt_expect("vm stop victim", "VM 'victim' stopped");
    c.mgmt_expect("vm stop keeper", "VM 'keeper' stopped");
    c.expect_machine_end(true);
    eprintln!("[lifecycle-destroy-recreate] PASS in {:.1} s", c.secs());
}

/// A stop that lands while a VM reboots wins: the reboot neither revives the
/// VM nor counts it stopped a second time (which powered the machine off with
/// other VMs still running). srst-test reboots itself right after it starts;
/// a 768 MiB initrd of zeros makes the reload take long enough (about a
/// second) for the operator's `vm stop`, typed as soon as the reboot is
/// logged, to land in it.
#[test]
fn stop_during_reboot() {
    const INITRD_MIB: u64 = 768;
    let zeros = ferrovisor::paths::target_dir()
        .join("qemu-cases")
        .join("zeros-768m.bin");
    std::fs::create_dir_all(zeros.parent().unwrap()).unwrap();
    std::fs::File::create(&zeros)
        .and_then(|f| f.set_len(INITRD_MIB * MIB))
        .unwrap();
    let mut racer = Vm::bare("racer", "srst-test", 1, "");
    racer.memory_mib = 1024;
    racer.initrd = Some(zeros);
    racer.pin = Some(1);
    let mut keeper = Vm::bare("keeper", HOG, 1, "idle");
    keeper.pin = Some(0);
    let vms = [racer, keeper];
    // The package holds the initrd once and the VM's RAM a copy: 2 GiB.
    let config = common::write_config_with_memory("lifecycle-stop-during-reboot", 2, 2048, &vms);
    let mut c = Console::start("stop-during-reboot", &config, &vms);
    c.expect_log("VM 'racer' rebooting", BOOT);
    // At once, in one write: the shell and the stop.
    c.note("Ctrl-A c + `vm stop racer` while racer reboots");
    c.send("\x01cvm stop racer\n");
    // The two sides log in either order.
    c.wait_text_anywhere("ferrovisor: VM 'racer' stopped by the operator", COMMAND);
    c.wait_text_anywhere(
        "ferrovisor: VM 'racer' was stopped during its reboot",
        COMMAND,
    );
    c.expect_raw_line("the reply `VM 'racer' stopped`", COMMAND, |l| {
        l == "VM 'racer' stopped"
    });
    c.expect_text(SHELL_PROMPT, COMMAND);
    // It stays stopped: no second boot, nothing more from it.
    let lines_before = c.vm_lines("racer", |_| true).len();
    c.idle_for(Duration::from_secs(3));
    let state = c.vm_state("racer");
    assert!(
        state.starts_with("stopped"),
        "racer after the stop: {state}"
    );
    let after = c.vm_lines("racer", |_| true);
    assert_eq!(
        after.len(),
        lines_before,
        "racer printed after it was stopped: {:?}",
        &after[lines_before..]
    );
    // The machine still runs the keeper (the stop was counted once).
    assert_eq!(c.vm_state("keeper"), "running");
    c.mgmt_expect("vm stop keeper", "VM 'keeper' stopped");
    c.expect_machine_end(true);
    eprintln!("[lifecycle-stop-during-reboot] PASS in {:.1} s", c.secs());
}

/// A VM that takes almost all of the machine's memory touches all of its RAM,
/// which spans three GiB regions of guest-physical space: its kernel is in
/// the first and its DTB (at the end of RAM) in the last, so the G-stage
/// table first needs an intermediate table for the middle one when the guest
/// touches it. The VM keeps running and the machine's free memory does not
/// change, because the frames of every table its RAM can need were reserved
/// when it was created. (When tables came from the shared pool on first
/// touch, a fully committed host stopped the VM there: "cannot map guest
/// RAM".)
#[test]
fn full_host_first_touch() {
    const VM_MIB: u64 = 2050;
    let mut vm = Vm::bare("toucher", HOG, 1, "touch");
    vm.memory_mib = VM_MIB;
    let vms = [vm];
    // Just what `ferrovisor run` accepts: the VM, its package and 32 MiB for
    // the hypervisor and OpenSBI.
    let config =
        common::write_config_with_memory("lifecycle-full-host-first-touch", 1, VM_MIB + 34, &vms);
    let mut c = Console::start("full-host-first-touch", &config, &vms);
    c.expect_vm_line("toucher", "the toucher waiting", BOOT, |l| {
        l == format!("INFO: cpu-hog: touch: {VM_MIB} MiB of RAM, waiting for a key")
    });
    c.enter_shell();
    let before = c.free_memory();
    let info = c.mgmt("vm info toucher");
    let resident_before = field(&info, "memory").unwrap_or_default();
    c.leave_shell();
    c.send("t");
    c.expect_vm_line("toucher", "all RAM touched", BOOT, |l| {
        l == format!("INFO: cpu-hog: touched {VM_MIB} MiB")
    });
    c.enter_shell();
    assert_eq!(c.vm_state("toucher"), "running");
    let info = c.mgmt("vm info toucher");
    let resident_after = field(&info, "memory").unwrap_or_default();
    let after = c.free_memory();
    c.note(&format!(
        "free {} KiB before touching, {} KiB after; memory {resident_before} before, {resident_after} after",
        before >> 10,
        after >> 10
    ));
    assert_eq!(
        resident_after,
        format!("{VM_MIB}M ({VM_MIB}M resident)"),
        "not all RAM mapped"
    );
    assert_eq!(
        after, before,
        "touching guest RAM took host memory (page tables from the shared pool)"
    );
    c.mgmt_expect("vm stop toucher", "VM 'toucher' stopped");
    c.expect_machine_end(true);
    eprintln!(
        "[lifecycle-full-host-first-touch] PASS in {:.1} s",
        c.secs()
    );
}

/// Weighted shares on one hart: 1:2 on hart 0, 1:1 on hart 1.
#[test]
fn fairness() {
    const WINDOW: Duration = Duration::from_secs(10);
    let hog = |name, weight, pin| {
        // No progress lines: they would interleave with the shell's replies.
        let mut v = Vm::bare(name, HOG, 1, "ms=0");
        v.weight = Some(weight);
        v.pin = Some(pin);
        v
    };
    let vms = [
        hog("hog-a", 100, 0),
        hog("hog-b", 200, 0),
        hog("hog-c", 100, 1),
        hog("hog-d", 100, 1),
    ];
    let config = write_config("fairness", 2, &vms);
    let mut c = Console::start("fairness", &config, &vms);
    for vm in ["hog-a", "hog-b", "hog-c", "hog-d"] {
        let l = format!("[{vm}] INFO: cpu-hog: 1 hart(s) working");
        c.wait_anywhere(&format!("{vm} working"), COMMAND, |x| x.starts_with(&l));
    }
    c.enter_shell();
    // Refusals are answered with a clear message, and change nothing.
    c.mgmt_expect(
        "vm pause nosuch",
        "error: no VM named 'nosuch' (see 'vm list')",
    );
    c.mgmt_expect(
        "frobnicate",
        "error: unknown command 'frobnicate' (try 'help')",
    );
    c.mgmt_expect(
        "vm resume hog-a",
        "error: cannot resume VM 'hog-a': it is running (it must be paused)",
    );
    for (vm, hart) in [("hog-a", 0), ("hog-b", 0), ("hog-c", 1), ("hog-d", 1)] {
        let reply = c.mgmt(&format!("vm info {vm}"));
        assert_eq!(
            field(&reply, "harts").as_deref(),
            Some(hart.to_string().as_str()),
            "{vm}: {reply:#?}"
        );
    }
    let read = |c: &mut Console| -> Vec<f64> {
        let reply = c.mgmt("stats");
        ["hog-a", "hog-b", "hog-c", "hog-d"]
            .iter()
            .map(|vm| {
                run_time(&reply, vm).unwrap_or_else(|| panic!("no run time of {vm}: {reply:#?}"))
            })
            .collect()
    };
    let first = read(&mut c);
    let t = Instant::now();
    c.idle_for(WINDOW);
    let second = read(&mut c);
    let wall = t.elapsed().as_secs_f64();
    let d: Vec<f64> = first.iter().zip(&second).map(|(a, b)| b - a).collect();
    let r0 = d[1] / d[0];
    let r1 = d[3] / d[2];
    c.note(&format!(
        "run time over {wall:.1} s: hog-a {:.3} s, hog-b {:.3} s (ratio {r0:.3}); hog-c {:.3} s, hog-d {:.3} s (ratio {r1:.3})",
        d[0], d[1], d[2], d[3]
    ));
    for (pair, sum) in [("hart 0", d[0] + d[1]), ("hart 1", d[2] + d[3])] {
        assert!(
            sum > 0.8 * wall,
            "{pair}: its two VMs ran {sum:.2} s of {wall:.1} s"
        );
    }
    assert!(
        (1.9..=2.1).contains(&r0),
        "weights 100:200 on hart 0 gave run times {:.3} s : {:.3} s (ratio {r0:.3}, want 1.9..=2.1)",
        d[0],
        d[1]
    );
    assert!(
        (0.95..=1.05).contains(&r1),
        "weights 100:100 on hart 1 gave run times {:.3} s : {:.3} s (ratio {r1:.3}, want 0.95..=1.05)",
        d[2],
        d[3]
    );
    c.leave_shell();
    c.stop_everything();
    eprintln!("[lifecycle-fairness] PASS in {:.1} s", c.secs());
}

/// Periodic load balancing: 3 runnable vCPUs on hart 0 and 1 on hart 1 (no
/// hart idle, so work stealing never moves anything) become 2:2, and the four
/// get even run times.
#[test]
fn periodic_balance() {
    const SETTLE: Duration = Duration::from_secs(1);
    const WINDOW: Duration = Duration::from_secs(8);
    const NAMES: [&str; 6] = ["hog0", "hog1", "hog2", "hog3", "hog4", "hog5"];
    const KEPT: [&str; 4] = ["hog0", "hog1", "hog2", "hog4"];
    /// Migrations of VM `vm` in a `stats` reply: the number after the run time
    /// in the `all` row of its table (`all  4.384s  1  627 ...`).
    fn migrations(reply: &[String], vm: &str) -> Option<u64> {
        let head = format!("VM '{vm}':");
        let start = reply.iter().position(|l| l.starts_with(&head))?;
        let row = reply[start + 1..]
            .iter()
            .take_while(|l| !l.starts_with("VM '"))
            .find(|l| l.split_whitespace().next() == Some("all"))?;
        let mut words = row.split_whitespace();
        words.find(|w| {
            w.strip_suffix('s')
                .is_some_and(|n| n.parse::<f64>().is_ok())
        })?;
        words.next()?.parse().ok()
    }
    fn harts(c: &mut Console, vm: &str) -> String {
        let reply = c.mgmt(&format!("vm info {vm}"));
        field(&reply, "harts").unwrap_or_else(|| panic!("no `harts:` for {vm}: {reply:#?}"))
    }
    // 1 vCPU each, running forever; no progress lines (they would interleave
    // with the shell's replies).
    let vms: Vec<Vm> = NAMES.iter().map(|&n| Vm::bare(n, HOG, 1, "ms=0")).collect();
    let config = write_config("periodic-balance", 2, &vms);
    let mut c = Console::start("periodic-balance", &config, &vms);
    for vm in NAMES {
        let l = format!("[{vm}] INFO: cpu-hog: 1 hart(s) working");
        c.wait_anywhere(&format!("{vm} working"), COMMAND, |x| x.starts_with(&l));
    }
    c.enter_shell();
    // Placed round-robin, 3:3: already even, so nothing moved.
    for (i, vm) in NAMES.iter().enumerate() {
        let h = harts(&mut c, vm);
        assert_eq!(h, (i % 2).to_string(), "{vm} placed on hart {h}");
    }
    // Leave hart 1 one vCPU: 3:1, and hart 1 is never idle.
    c.mgmt_expect("vm stop hog3", "VM 'hog3' stopped");
    c.mgmt_expect("vm stop hog5", "VM 'hog5' stopped");
    c.idle_for(SETTLE);
    let read = |c: &mut Console| -> (Vec<f64>, Vec<u64>) {
        let reply = c.mgmt("stats");
        let get = |vm: &&str| {
            let t = run_time(&reply, vm);
            let m = migrations(&reply, vm);
            t.zip(m)
                .unwrap_or_else(|| panic!("no run time/migrations of {vm}: {reply:#?}"))
        };
        KEPT.iter().map(get).unzip()
    };
    let (first, _) = read(&mut c);
    let t = Instant::now();
    c.idle_for(WINDOW);
    let (second, moves) = read(&mut c);
    let wall = t.elapsed().as_secs_f64();
    let placement: Vec<String> = KEPT.iter().map(|vm| harts(&mut c, vm)).collect();
    let d: Vec<f64> = first.iter().zip(&second).map(|(a, b)| b - a).collect();
    let (min, max) = d
        .iter()
        .fold((f64::MAX, 0f64), |(lo, hi), &x| (lo.min(x), hi.max(x)));
    let ratio = max / min.max(1e-9);
    let mut summary = String::new();
    for (i, vm) in KEPT.iter().enumerate() {
        let _ = write!(
            summary,
            "{vm} {:.3} s (hart {}, {} migrations); ",
            d[i], placement[i], moves[i]
        );
    }
    c.note(&format!(
        "run time over {wall:.1} s: {summary}max/min {ratio:.3}"
    ));
    let on0 = placement.iter().filter(|h| *h == "0").count();
    let on1 = placement.iter().filter(|h| *h == "1").count();
    assert!(
        moves.iter().sum::<u64>() > 0 && (on0, on1) == (2, 2),
        "no balancing: {summary}harts 0:1 hold {on0}:{on1}"
    );
    assert!(
        d.iter().sum::<f64>() > 1.6 * wall,
        "the four hogs ran {:.2} s of 2 x {wall:.1} s",
        d.iter().sum::<f64>()
    );
    assert!(
        ratio <= 1.25,
        "uneven run times after balancing: {summary}max/min {ratio:.3} (want <= 1.25)"
    );
    c.leave_shell();
    c.stop_everything();
    eprintln!("[lifecycle-periodic-balance] PASS in {:.1} s", c.secs());
}

/// cpu-hog with `vcpus` CPU-bound vCPUs on `harts` harts: every vCPU finishes
/// and they all progress side by side (the guest checks both).
fn overcommit(name: &str, vcpus: u32, harts: u32, chunks: u32) {
    hypervisor_built();
    let mut vm = testing::guest_vm(HOG, vcpus, 16 * MIB);
    vm.command_line = format!("chunks={chunks} ms=1000");
    if let Err(e) = testing::require_built(&vm.kernel) {
        panic!("{e}");
    }
    let mut case = Case::new(format!("lifecycle-{name}"), CaseVms::List(vec![vm]));
    case.machine.cpus = Some(harts);
    case.timeout = Duration::from_secs(180);
    case.success_patterns.extend([
        Pattern::LineStart(format!("DONE: {HOG} passed=")),
        Pattern::LineStart(format!("PASS: {HOG}/interleaved")),
    ]);
    for h in 0..vcpus {
        case.success_patterns
            .push(Pattern::LineStart(format!("PASS: {HOG}/hart-{h}-finished")));
        case.success_patterns.push(Pattern::LineStart(format!(
            "INFO: {HOG}: hart {h} progress "
        )));
    }
    let report = testing::run_and_report(&case).unwrap_or_else(|e| panic!("{}: {e}", case.name));
    eprintln!(
        "[lifecycle-{name}] {vcpus} CPU-bound vCPUs on {harts} hart(s): {:.1} s",
        report.elapsed.as_secs_f64()
    );
}

#[test]
fn overcommit_4_vcpus_1_hart() {
    overcommit("overcommit-4-on-1", 4, 1, 300);
}

#[test]
fn overcommit_5_vcpus_2_harts() {
    overcommit("overcommit-5-on-2", 5, 2, 300);
}

#[test]
fn disk_survives_destroy_start() {
    let dir = ferrovisor::paths::target_dir().join("qemu-cases/lifecycle-disk.d");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("root")).unwrap();
    std::fs::write(dir.join("root/hello.txt"), "from-the-host\n").unwrap();
    let img = dir.join("disk.img");
    let mk = std::process::Command::new("mke2fs")
        .args(["-F", "-q", "-t", "ext4", "-d"])
        .arg(dir.join("root"))
        .arg(&img)
        .arg("32M")
        .output()
        .expect("mke2fs (e2fsprogs) must be installed");
    assert!(
        mk.status.success(),
        "mke2fs: {}",
        String::from_utf8_lossy(&mk.stderr)
    );
    // The keeper keeps the machine up while the disk VM is destroyed.
    let vms = [
        Vm::bare("keeper", HOG, 1, "idle"),
        Vm::linux("disk", 1, 256),
    ];
    let config = write_config("disk", 2, &vms);
    let mut yaml = std::fs::read_to_string(&config).unwrap();
    // The disk VM is the last entry: its `disks:` go at the end.
    let _ = write!(yaml, "    disks:\n      - path: {}\n", img.display());
    std::fs::write(&config, yaml).unwrap();
    let mut c = Console::start("disk", &config, &vms);
    c.boot("disk", Instant::now());
    c.focus(1, "disk");
    c.send("\n");
    c.expect_text(&format!("[disk] {PROMPT}"), COMMAND);
    assert_eq!(
        c.sh(
            "disk",
            "mkdir -p /mnt && mount -t ext4 /dev/vda /mnt && cat /mnt/hello.txt && echo before-destroy > /mnt/persist.txt && sync && echo synced"
        ),
        ["from-the-host", "synced"]
    );
    c.enter_shell();
    c.mgmt_expect("vm destroy disk", "VM 'disk' destroyed; its memory is free");
    c.mgmt_expect("vm start disk", "VM 'disk' started");
    let started = Instant::now();
    c.leave_shell();
    c.boot("disk", started);
    c.send("\n");
    c.expect_text(&format!("[disk] {PROMPT}"), COMMAND);
    assert_eq!(
        c.sh(
            "disk",
            "mkdir -p /mnt && mount -t ext4 /dev/vda /mnt && cat /mnt/persist.txt && umount /mnt && echo unmounted"
        ),
        ["before-destroy", "unmounted"]
    );
    c.poweroff("disk");
    c.stop_everything();
    let out = std::process::Command::new("debugfs")
        .args(["-R", "cat /persist.txt"])
        .arg(&img)
        .output()
        .expect("debugfs (e2fsprogs) must be installed");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "before-destroy\n");
}
