//! Linux integration tests: an unmodified Debian kernel with a busybox initramfs
//! (fetched by `scripts/fetch-linux.sh`) boots as a VM under the hypervisor, and
//! each test drives its shell through `ferrovisor run` (the host tool's own
//! binary, stdin and stdout piped), step by step, each step with its own timeout:
//!
//! - `vcpus1`, `vcpus2`, `vcpus4`: userspace comes up (`FERROVISOR-GUEST-READY`),
//!   `nproc` is the vCPU count, `/proc/cpuinfo` lists that many processors with a
//!   base ISA of `rv64imafdc` and no `h`, `/proc/interrupts` has one column per
//!   vCPU and its `riscv-timer` and `ttyS0` lines count up between two reads,
//!   `free -m` reports more than 80 % of the VM's memory and no more than all of
//!   it, and `poweroff` ends the VM, the machine and `ferrovisor run` with status 0.
//! - `reboot`: after `reboot` the VM boots again (the marker appears a second
//!   time, uptime restarts) and its shell works; then `poweroff`.
//! - `two_vms`: two Linux VMs at once; console input goes to the first, moves to
//!   the second with the hypervisor's Ctrl-A n, and both power off cleanly.
//! - `virtio_console`: `console: virtio` and `console=hvc0`: the shell on
//!   hvc0, output with the VM's prefix, 84 KB of output complete, hvc0 again
//!   after `reboot`, under a fifth as many MMIO-write exits as bytes printed,
//!   `poweroff`.
//! - `devices_example`: `examples/linux-devices.yaml` (its disk images made in
//!   `target/qemu-cases/`, its forward on a free port) boots to the shell on
//!   hvc0 with two disks, rng and an uplink on QEMU's command line, the
//!   hypervisor finds each at the base the host tool planned, and `poweroff`
//!   ends it cleanly.
//! - `timeout_is_nonzero`: `ferrovisor run --timeout` kills QEMU and exits 124.
//! - `perf_stat_counts`: with the initramfs that has `perf`
//!   (`scripts/fetch-linux.sh --perf`), the kernel's PMU driver is the SBI one
//!   (`riscv-pmu-sbi: SBI PMU extension is available`, not its legacy
//!   fallback, which reads the hart's raw `cycle`/`instret`), and
//!   `perf stat -e cycles,instructions` on a command reports a non-zero count
//!   for both.
//!
//! Any of `Kernel panic`, `Oops`, `Unable to handle kernel`, `FAIL:`,
//! `panicked`, `ferrovisor: FATAL`, `ferrovisor: TRAP` or a VM stopped by the
//! hypervisor fails a test at once. The full transcript (what `ferrovisor run`
//! printed, raw) is kept as `target/qemu-logs/linux-<test>.log`, the steps with
//! their times as `target/qemu-logs/linux-<test>.steps.log`.
//!
//! Needs `scripts/build.sh` (or just the release `ferrovisor-hv`) and
//! `scripts/fetch-linux.sh` first; a missing kernel fails the test with that
//! command. Run with `cargo test -p ferrovisor --test linux -- --test-threads=1`
//! (add `--nocapture` to watch the steps).
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ferrovisor::{paths, MIB};

use common::{linux_files, Console, Vm, BOOT, COMMAND, FETCH, MARKER, POWEROFF, PROMPT};

/// `ferrovisor run --timeout`: the hard limit of a whole test.
const HARD_LIMIT_S: u64 = 900;
/// The VM of the one-VM tests.
const VM: &str = "linux";

/// A Linux VM with `console=ttyS0` (the kernel's boot messages on the console).
fn linux_vm(name: &'static str, vcpus: u32, memory_mib: u64) -> Vm {
    let mut vm = Vm::linux(name, vcpus, memory_mib);
    vm.command_line = "console=ttyS0".into();
    vm
}

/// Writes a config for `vms` on a machine with `cpus` harts and 1 GiB to
/// `target/qemu-cases/linux-<case>.yaml`.
fn write_config(case: &str, cpus: u32, vms: &[Vm]) -> PathBuf {
    common::write_config(&format!("linux-{case}"), cpus, vms)
}

impl Console {
    /// Starts `ferrovisor run --config <config> --timeout <timeout_s>`, logs
    /// `target/qemu-logs/linux-<case>.*`.
    fn start(case: &str, config: &Path, timeout_s: u64) -> Console {
        Console::spawn(&format!("linux-{case}"), config, timeout_s, &[])
    }

    /// Waits for VM `vm`'s first shell prompt after a (re)boot; returns the
    /// seconds from `since` (QEMU's start when `None`) to the userspace marker.
    fn boot_to_prompt(&mut self, vm: &str, since: Option<Instant>) -> f64 {
        let since = since.or(self.qemu_started).unwrap_or(self.start);
        let boot_s = self.boot(vm, since);
        // The init script's line just before the marker: kernel, CPUs, uptime.
        let info = self
            .vm_lines(vm, |l| l.starts_with("ferrovisor-guest: kernel"))
            .pop()
            .unwrap_or_else(|| "(no ferrovisor-guest line)".into());
        self.expect_text(&format!("[{vm}] {PROMPT}"), COMMAND);
        self.note(&format!("{vm}: {info}"));
        boot_s
    }
}

// ---------------------------------------------------------------------------
// What the guest reports.

/// The per-CPU counts of the `/proc/interrupts` line whose description contains
/// `what` (as `riscv-timer`, `ttyS0`), and the number of CPU columns.
fn interrupt_counts(lines: &[String], what: &str) -> Option<Vec<u64>> {
    let cpus = lines
        .iter()
        .find(|l| l.trim_start().starts_with("CPU0"))?
        .split_whitespace()
        .count();
    let line = lines.iter().find(|l| l.contains(what))?;
    let counts: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(cpus)
        .map(|t| t.parse().ok())
        .collect::<Option<_>>()?;
    (counts.len() == cpus).then_some(counts)
}

fn check_nproc(c: &mut Console, vcpus: u32) {
    let out = c.sh(VM, "nproc");
    let n: Vec<u32> = out.iter().filter_map(|l| l.trim().parse().ok()).collect();
    assert_eq!(n, [vcpus], "nproc said {out:?}, expected {vcpus}");
}

fn check_cpuinfo(c: &mut Console, vcpus: u32) {
    let out = c.sh(VM, "cat /proc/cpuinfo");
    let field = |l: &str, key: &str| {
        l.split_once(':')
            .filter(|(k, _)| k.trim() == key)
            .map(|(_, v)| v.trim().to_string())
    };
    let processors: Vec<String> = out.iter().filter_map(|l| field(l, "processor")).collect();
    let expected: Vec<String> = (0..vcpus).map(|i| i.to_string()).collect();
    assert_eq!(processors, expected, "/proc/cpuinfo processors: {out:?}");
    let isas: Vec<String> = out.iter().filter_map(|l| field(l, "isa")).collect();
    assert_eq!(isas.len(), vcpus as usize, "isa lines: {out:?}");
    for isa in isas {
        // The single-letter extensions come before the first `_`; the guest must
        // not be told about H (the hypervisor does not virtualise it).
        let base = isa.split('_').next().unwrap_or("");
        assert!(
            base.starts_with("rv64imafdc") && !base["rv64".len()..].contains('h'),
            "isa `{isa}`: expected base rv64imafdc without h"
        );
    }
}

fn check_interrupts(c: &mut Console, vcpus: u32) {
    let first = c.sh(VM, "cat /proc/interrupts");
    let second = c.sh(VM, "sleep 1; cat /proc/interrupts");
    for what in ["riscv-timer", "ttyS0"] {
        let a = interrupt_counts(&first, what)
            .unwrap_or_else(|| panic!("no {what} line with a count per CPU in {first:?}"));
        let b = interrupt_counts(&second, what)
            .unwrap_or_else(|| panic!("no {what} line with a count per CPU in {second:?}"));
        assert_eq!(a.len(), vcpus as usize, "CPU columns: {first:?}");
        let (sa, sb) = (a.iter().sum::<u64>(), b.iter().sum::<u64>());
        c.note(&format!("{what}: {a:?} -> {b:?}"));
        assert!(sb > sa, "{what} did not count up: {a:?} then {b:?}");
        if what == "riscv-timer" {
            // Every vCPU has taken timer interrupts.
            assert!(
                b.iter().all(|&n| n > 0),
                "a vCPU without timer interrupts: {b:?}"
            );
        }
    }
}

/// Boots one Linux VM with `vcpus` vCPUs on `cpus` harts, checks it, powers off.
fn boot_and_check(case: &str, vcpus: u32, cpus: u32) {
    let memory_mib = 512;
    let config = write_config(case, cpus, &[linux_vm(VM, vcpus, memory_mib)]);
    let mut c = Console::start(case, &config, HARD_LIMIT_S);
    let boot_s = c.boot_to_prompt(VM, None);
    let ready = c
        .vm_lines(VM, |l| l.starts_with("ferrovisor-guest: kernel"))
        .into_iter()
        .next()
        .unwrap_or_default();
    assert!(
        ready.contains(&format!(", {vcpus} cpu(s),")),
        "the init script saw other than {vcpus} CPUs: {ready:?}"
    );
    check_nproc(&mut c, vcpus);
    check_cpuinfo(&mut c, vcpus);
    check_interrupts(&mut c, vcpus);
    common::check_memory(&mut c, VM, memory_mib, 80);
    c.poweroff(VM);
    c.expect_machine_end(true);
    eprintln!(
        "[linux-{case}] PASS: {vcpus} vCPU(s) on {cpus} harts, userspace {boot_s:.1} s after QEMU start, whole run {:.1} s (transcript {})",
        c.secs(),
        c.transcript_path.display()
    );
}

// ---------------------------------------------------------------------------
// The tests.

#[test]
fn vcpus1() {
    boot_and_check("vcpus1", 1, 2);
}

#[test]
fn vcpus2() {
    boot_and_check("vcpus2", 2, 2);
}

#[test]
fn vcpus4() {
    boot_and_check("vcpus4", 4, 4);
}

/// `reboot` reboots the VM (not the machine): the marker appears again, uptime
/// starts over, the shell works; then `poweroff`.
#[test]
fn reboot() {
    let config = write_config("reboot", 2, &[linux_vm(VM, 2, 512)]);
    let mut c = Console::start("reboot", &config, HARD_LIMIT_S);
    c.boot_to_prompt(VM, None);
    let uptime = |c: &mut Console| -> f64 {
        let out = c.sh(VM, "cat /proc/uptime");
        out.iter()
            .find_map(|l| l.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no uptime in {out:?}"))
    };
    let before = uptime(&mut c);
    c.sh(VM, "echo first boot > /run/fv-boot-mark");
    c.note("$ reboot");
    c.send("reboot\n");
    c.expect_log("VM 'linux' rebooting", POWEROFF);
    let t_reboot = c.secs();
    let second_boot = c.boot_to_prompt(VM, Some(Instant::now()));
    let after = uptime(&mut c);
    let since = c.secs() - t_reboot;
    c.note(&format!(
        "uptime {before:.1} s before the reboot, {after:.1} s after it ({since:.1} s since)"
    ));
    assert!(
        after < since + 1.0,
        "uptime {after} s did not start over at the reboot ({since:.1} s ago)"
    );
    // A fresh tmpfs: nothing of the first boot is left.
    let out = c.sh(VM, "ls /run");
    assert!(
        !out.iter().any(|l| l.contains("fv-boot-mark")),
        "/run survived the reboot: {out:?}"
    );
    check_nproc(&mut c, 2);
    c.poweroff(VM);
    c.expect_machine_end(true);
    eprintln!("[linux-reboot] PASS: second boot to userspace in {second_boot:.1} s");
}

/// Two Linux VMs on one machine; console input goes to the first, then, after
/// Ctrl-A n, to the second.
#[test]
fn two_vms() {
    let config = write_config(
        "two-vms",
        2,
        &[linux_vm("a", 1, 256), linux_vm("b", 1, 256)],
    );
    let mut c = Console::start("two-vms", &config, HARD_LIMIT_S);
    // Both reach userspace (in either order).
    let mut ready = Vec::new();
    for _ in 0..2 {
        let t = c.wait_for("a VM's userspace marker", BOOT, |text| {
            let mut pos = 0;
            while let Some(end) = text[pos..].find('\n') {
                let line = &text[pos..pos + end];
                pos += end + 1;
                for name in ["a", "b"] {
                    if line == format!("[{name}] {MARKER}") {
                        return Some((pos, name));
                    }
                }
            }
            None
        });
        c.note(&format!("VM {t} is up"));
        ready.push(t);
    }
    ready.sort_unstable();
    assert_eq!(ready, ["a", "b"]);
    // Input goes to `a` first.
    let out = c.sh("a", "echo typed-into-a");
    assert!(out.iter().any(|l| l == "typed-into-a"), "{out:?}");
    assert!(
        c.text.lines().any(|l| l == "[a] typed-into-a"),
        "the output did not come from VM a"
    );
    // Ctrl-A n: the hypervisor's escape (QEMU runs without its multiplexer);
    // then a fresh prompt of `vm`.
    let next = |c: &mut Console, vm: &str| {
        c.note("focus: Ctrl-A n");
        c.send("\x01n");
        let want = format!("ferrovisor: console input goes to VM '{vm}'");
        c.expect_raw_line(&format!("the focus moving to VM {vm}"), COMMAND, |l| {
            l.starts_with(&want)
        });
        c.send("\n");
        c.expect_text(&format!("[{vm}] {PROMPT}"), COMMAND);
    };
    next(&mut c, "b");
    c.sh("b", "echo typed-into-b");
    assert!(
        c.text.lines().any(|l| l == "[b] typed-into-b"),
        "the output did not come from VM b"
    );
    c.poweroff("b");
    // Back to `a` (the only running VM) and power it off too.
    next(&mut c, "a");
    c.poweroff("a");
    c.expect_machine_end(true);
}

/// `console: virtio` with `console=hvc0`: the initramfs loads virtio_mmio
/// first and moves init and the shell to /dev/hvc0; the shell is reached,
/// a command's output comes back with the VM's prefix, the kernel's
/// console is hvc0 and the shell's tty /dev/hvc0, the console interrupt is
/// the virtio one, 84 KB of output (`cat` of 400 long lines) arrive complete
/// and in order (the batched path holds the guest back rather than dropping
/// when the terminal is behind); after `reboot` (the device reset) the shell
/// is on hvc0 again; then `poweroff`. Batching: the whole run,
/// that output included, costs fewer MMIO-write exits than a fifth of the
/// bytes printed after the marker (on the UART each byte costs at least one
/// transmit-register write).
#[test]
fn virtio_console() {
    let mut vm = Vm::linux(VM, 1, 256);
    vm.command_line = "earlycon=sbi console=hvc0".into();
    vm.console = Some("virtio");
    let config = write_config("virtio-console", 2, &[vm]);
    let mut c = Console::start("virtio-console", &config, HARD_LIMIT_S);
    c.boot_to_prompt(VM, None);
    let marker_at = c.text.len();
    let out = c.sh(
        VM,
        "echo hvc-$((6 * 7)); cat /sys/class/tty/console/active; tty",
    );
    assert_eq!(out, ["hvc-42", "hvc0", "/dev/hvc0"], "{out:?}");
    assert!(
        c.text.lines().any(|l| l == format!("[{VM}] hvc-42")),
        "the output did not come with the VM's prefix"
    );
    let irqs = c.sh(VM, "grep -c virtio /proc/interrupts");
    assert_eq!(irqs.first().map(String::as_str), Some("1"), "{irqs:?}");
    // 400 lines of 200-odd bytes, written to the console by `cat` in blocks.
    c.sh(
        VM,
        "pad=$(printf '%0200d' 0); i=1; while [ $i -le 400 ]; do echo \"line-$i-$pad\"; i=$((i + 1)); done > /tmp/big",
    );
    let big = c.sh(VM, "cat /tmp/big");
    let pad = "0".repeat(200);
    let want: Vec<String> = (1..=400).map(|i| format!("line-{i}-{pad}")).collect();
    assert!(
        big == want,
        "cat /tmp/big: {} lines, first differences: {:?}",
        big.len(),
        big.iter()
            .zip(&want)
            .filter(|(a, b)| a != b)
            .take(2)
            .collect::<Vec<_>>()
    );
    let printed: usize = c.text[marker_at..]
        .lines()
        .filter_map(|l| l.strip_prefix(&format!("[{VM}] ")))
        .map(|l| l.len() + 1)
        .sum();
    // A reboot resets the device; the new kernel finds it and uses it again.
    c.note("$ reboot");
    c.send("reboot\n");
    c.expect_log(&format!("VM '{VM}' rebooting"), POWEROFF);
    c.boot_to_prompt(VM, Some(Instant::now()));
    let out = c.sh(VM, "echo second-$((6 * 7)); tty");
    assert_eq!(out, ["second-42", "/dev/hvc0"], "{out:?}");
    c.poweroff(VM);
    c.expect_machine_end(true);
    assert!(
        !c.text.contains("bytes of console output dropped"),
        "console output was dropped"
    );
    let exits = c
        .text
        .lines()
        .find_map(|l| l.strip_prefix(&format!("ferrovisor: VM '{VM}' exits:")))
        .unwrap_or_else(|| panic!("no exit summary of VM {VM}"))
        .to_string();
    let count = |what: &str| -> u64 {
        let words: Vec<&str> = exits.split_whitespace().collect();
        words
            .windows(2)
            .find(|w| w[0] == what)
            .and_then(|w| w[1].parse().ok())
            .unwrap_or(0)
    };
    let mmio_writes = count("mmio-write");
    c.note(&format!(
        "exits:{exits}; {printed} bytes printed after the marker, {mmio_writes} MMIO-write exits in the whole run"
    ));
    eprintln!("[linux-virtio-console] {printed} bytes printed after the marker; exits:{exits}");
    assert!(
        mmio_writes > 0 && mmio_writes * 5 < printed as u64,
        "{mmio_writes} MMIO-write exits for {printed} bytes: not batched"
    );
}

/// `examples/linux-devices.yaml`, as `scripts/run.sh --config` boots it but
/// with its disk images in `target/qemu-cases/` and its port forward on a free
/// port: the shell comes up on hvc0, the hypervisor finds the read-write and
/// the read-only disk, the rng and the uplink's virtio-net at the bases
/// `ferrovisor run` printed for them (the host tool's plan, on the modern
/// transport), and `poweroff` ends the machine cleanly.
#[test]
fn devices_example() {
    linux_files();
    let example = paths::workspace_root().join("examples/linux-devices.yaml");
    let text = fs::read_to_string(&example).unwrap();
    let dir = paths::target_dir().join("qemu-cases/linux-devices-disks");
    fs::create_dir_all(&dir).unwrap();
    let mut sector0 = vec![0u8; 512];
    sector0[..8].copy_from_slice(b"fv-disk!");
    for (name, sectors) in [("data.img", 4096usize), ("tools.img", 1024)] {
        let mut img = vec![0u8; sectors * 512];
        img[..512].copy_from_slice(&sector0);
        fs::write(dir.join(name), img).unwrap();
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    assert!(text.contains("~/.cache/ferrovisor/disks/") && text.contains("tcp:18080:80"));
    let yaml = text
        .replace("~/.cache/ferrovisor/disks/", &format!("{}/", dir.display()))
        .replace("tcp:18080:80", &format!("tcp:{port}:80"));
    let config = paths::target_dir().join("qemu-cases/linux-devices.yaml");
    fs::write(&config, yaml).unwrap();
    let mut c = Console::start("devices", &config, HARD_LIMIT_S);
    c.boot_to_prompt(VM, None);
    assert_eq!(
        c.sh(VM, "echo dev-$((6 * 7)); tty"),
        ["dev-42", "/dev/hvc0"]
    );
    // What `ferrovisor run` planned (stderr) is what the hypervisor found.
    for (planned, found) in [
        (
            "disk 0 at 0x10002000",
            "host virtio-blk at 0x10008000 (virtio-mmio v2): 4096 sectors, rw",
        ),
        (
            "disk 1 at 0x10003000",
            "host virtio-blk at 0x10007000 (virtio-mmio v2): 1024 sectors, ro",
        ),
        (
            "the machine's virtio-rng at 0x10006000",
            "host virtio-rng at 0x10006000 (virtio-mmio v2)",
        ),
        ("the machine's virtio-net at 0x10005000", "at 0x10005000"),
    ] {
        assert!(
            c.stderr.contains(planned),
            "no `{planned}` in: {}",
            c.stderr
        );
        assert!(
            c.text
                .lines()
                .any(|l| l.starts_with("ferrovisor: host") && l.contains(found)),
            "the hypervisor did not log `{found}`"
        );
    }
    assert!(c
        .stderr
        .contains(&format!("127.0.0.1:{port} (tcp) -> 10.0.2.15:80")));
    c.poweroff(VM);
    c.expect_machine_end(true);
}

/// `ferrovisor run --timeout` stops QEMU and exits non-zero (124) while the VM
/// still runs.
#[test]
fn timeout_is_nonzero() {
    let config = write_config("timeout", 1, &[linux_vm(VM, 1, 256)]);
    let t0 = Instant::now();
    let mut c = Console::start("timeout", &config, 4);
    c.expect_raw_line("the VM starting", Duration::from_secs(30), |l| {
        l.starts_with("OpenSBI") || l.starts_with("ferrovisor:")
    });
    c.expect_exit(124);
    assert!(
        t0.elapsed() < Duration::from_secs(30),
        "took {:?}",
        t0.elapsed()
    );
    assert!(c.stderr.contains("timed out after 4 s"), "{}", c.stderr);
}

/// The example configs name the files `scripts/fetch-linux.sh` provides.
#[test]
fn example_configs_point_at_the_fetched_linux() {
    let (kernel, initrd) = linux_files();
    let examples = paths::workspace_root().join("examples");
    for (file, vms) in [("linux.yaml", 1), ("linux-multi.yaml", 2)] {
        let cfg = ferrovisor::config::load(&examples.join(file))
            .unwrap_or_else(|e| panic!("{e} (the kernel comes from `{FETCH}`)"));
        assert_eq!(cfg.vms.len(), vms, "{file}");
        for vm in &cfg.vms {
            assert_eq!(
                fs::canonicalize(&vm.kernel).unwrap(),
                fs::canonicalize(&kernel).unwrap()
            );
            let rd = vm.initrd.as_ref().unwrap();
            assert_eq!(
                fs::canonicalize(rd).unwrap(),
                fs::canonicalize(&initrd).unwrap()
            );
            assert_eq!(vm.command_line, "console=ttyS0");
        }
    }
    let linux = ferrovisor::config::load(&examples.join("linux.yaml")).unwrap();
    assert_eq!(linux.machine.cpus, 2);
    assert_eq!(linux.machine.memory_bytes, 1024 * MIB);
    assert_eq!(linux.vms[0].name, "linux");
    assert_eq!(linux.vms[0].vcpus, 2);
    assert_eq!(linux.vms[0].memory_bytes, 512 * MIB);
}

/// `perf stat -e cycles,instructions` counts both through the guest's SBI PMU
/// (Linux's `riscv_pmu_sbi`; its legacy fallback would read the hart's raw
/// counters, other VMs' work included): each line of `perf stat -x,` must
/// carry a number greater than zero, not `<not supported>` or `<not counted>`.
#[test]
fn perf_stat_counts() {
    let initrd = paths::cache_dir()
        .join("linux")
        .join("current")
        .join("initramfs-perf.cpio.gz");
    assert!(
        initrd.is_file(),
        "{} does not exist: fetch it with `{FETCH} --perf`",
        initrd.display()
    );
    let mut vm = linux_vm(VM, 1, 512);
    vm.initrd = Some(initrd);
    let config = write_config("perf", 1, &[vm]);
    let mut c = Console::start("perf", &config, HARD_LIMIT_S);
    c.boot_to_prompt(VM, None);
    let dmesg = c.sh(VM, "dmesg | grep -i pmu");
    assert!(
        dmesg
            .iter()
            .any(|l| l.contains("riscv-pmu-sbi: SBI PMU extension is available")),
        "the guest kernel does not use the SBI PMU: {dmesg:?}"
    );
    let out = c.sh(
        VM,
        "perf stat -x, -e cycles,instructions -- ls -R /lib > /dev/null 2> /tmp/perf.txt; cat /tmp/perf.txt",
    );
    for event in ["cycles", "instructions"] {
        // CSV: value,unit,event,run time,percentage,...
        let line = out
            .iter()
            .find(|l| l.split(',').nth(2).is_some_and(|e| e.starts_with(event)))
            .unwrap_or_else(|| panic!("no `{event}` line in perf's output {out:?}"));
        let value = line.split(',').next().unwrap_or("");
        c.note(&format!("perf stat: {line}"));
        assert!(
            value.parse::<u64>().is_ok_and(|v| v > 0),
            "`{event}` was not counted: {line:?} (all output: {out:?})"
        );
    }
    c.poweroff(VM);
    c.expect_machine_end(true);
}
