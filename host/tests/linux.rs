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
//! - `timeout_is_nonzero`: `ferrovisor run --timeout` kills QEMU and exits 124.
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

use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use ferrovisor::testing::{standard_failure_patterns, Pattern};
use ferrovisor::{paths, MIB};

/// From start (or `reboot`) to the userspace marker. A boot takes about 10 s
/// under TCG; 4 vCPUs on a loaded 2-core machine take longer.
const BOOT: Duration = Duration::from_secs(240);
/// One shell command, marker to marker.
const COMMAND: Duration = Duration::from_secs(30);
/// From `poweroff` to `ferrovisor run` exiting.
const POWEROFF: Duration = Duration::from_secs(60);
/// `ferrovisor run --timeout`: the hard limit of a whole test.
const HARD_LIMIT_S: u64 = 900;

const MARKER: &str = "FERROVISOR-GUEST-READY";
const PROMPT: &str = "guest:~# ";
const FETCH: &str = "scripts/fetch-linux.sh";

/// The kernel and initramfs `scripts/fetch-linux.sh` points its `current/`
/// symlinks at (it uses `${XDG_CACHE_HOME:-$HOME/.cache}/ferrovisor/linux`, as
/// [`paths::cache_dir`] does).
fn linux_files() -> (PathBuf, PathBuf) {
    let current = paths::cache_dir().join("linux").join("current");
    let kernel = current.join("Image");
    let initrd = current.join("initramfs.cpio.gz");
    for f in [&kernel, &initrd] {
        if !f.is_file() {
            panic!(
                "{} does not exist: fetch the Linux guest with `{FETCH}` (from the repository root)",
                f.display()
            );
        }
    }
    let hv = paths::default_hypervisor();
    if !hv.is_file() {
        panic!(
            "{} does not exist; build it with {}",
            hv.display(),
            paths::BUILD_COMMAND
        );
    }
    (kernel, initrd)
}

/// One VM of a generated config.
struct VmSpec {
    name: &'static str,
    vcpus: u32,
    memory_mib: u64,
}

/// Writes a config for `vms` on a machine with `cpus` harts and 1 GiB to
/// `target/qemu-cases/linux-<case>.yaml`.
fn write_config(case: &str, cpus: u32, vms: &[VmSpec]) -> PathBuf {
    let (kernel, initrd) = linux_files();
    let mut yaml = format!("machine:\n  arch: riscv64\n  cpus: {cpus}\n  memory: 1G\nvms:\n");
    for vm in vms {
        let _ = write!(
            yaml,
            "  - name: {}\n    vcpus: {}\n    memory: {}M\n    kernel: {}\n    initrd: {}\n    command_line: console=ttyS0\n",
            vm.name,
            vm.vcpus,
            vm.memory_mib,
            kernel.display(),
            initrd.display()
        );
    }
    let path = paths::target_dir()
        .join("qemu-cases")
        .join(format!("linux-{case}.yaml"));
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, yaml).unwrap();
    path
}

// ---------------------------------------------------------------------------
// Driving `ferrovisor run`.

/// Removes `\r` and terminal escape sequences (the shell's `ESC[6n` after each
/// prompt, colours) from a byte stream that arrives in pieces.
#[derive(Default)]
struct Cleaner {
    state: Esc,
}

#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum Esc {
    #[default]
    Text,
    /// After ESC.
    Start,
    /// In `ESC [ ... final`.
    Csi,
    /// In `ESC ] ... BEL` (or `ESC \`).
    Osc,
}

impl Cleaner {
    fn clean(&mut self, bytes: &[u8]) -> String {
        let mut out = Vec::with_capacity(bytes.len());
        for &b in bytes {
            self.state = match (self.state, b) {
                (Esc::Text, 0x1b) => Esc::Start,
                (Esc::Text, b'\r') => Esc::Text,
                (Esc::Text, _) => {
                    out.push(b);
                    Esc::Text
                }
                (Esc::Start, b'[') => Esc::Csi,
                (Esc::Start, b']') => Esc::Osc,
                (Esc::Start, _) => Esc::Text,
                (Esc::Csi, 0x40..=0x7e) => Esc::Text,
                (Esc::Csi, _) => Esc::Csi,
                (Esc::Osc, 0x07 | 0x1b) => Esc::Text,
                (Esc::Osc, _) => Esc::Osc,
            };
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Src {
    Out,
    Err,
}

/// A running `ferrovisor run`, its console output collected as it arrives.
struct Console {
    case: String,
    child: Child,
    stdin: Option<ChildStdin>,
    rx: Receiver<(Src, Option<Vec<u8>>)>,
    transcript: File,
    transcript_path: PathBuf,
    steps: Vec<String>,
    start: Instant,
    cleaner: Cleaner,
    /// Cleaned stdout (the serial console).
    text: String,
    /// Start of what no step has consumed yet.
    cursor: usize,
    /// Start of the first line not yet checked for failure patterns.
    scanned: usize,
    /// ferrovisor's stderr (its own messages, QEMU's).
    stderr: String,
    stderr_scanned: usize,
    open_streams: u32,
    failure: Option<String>,
    failure_patterns: Vec<Pattern>,
    status: Option<ExitStatus>,
    seq: u32,
    /// When `ferrovisor run` said it starts QEMU (its command line on stderr),
    /// after building the boot package.
    qemu_started: Option<Instant>,
}

impl Console {
    /// Starts `ferrovisor run --config <config> --timeout <timeout_s>`.
    fn start(case: &str, config: &Path, timeout_s: u64) -> Console {
        let logs = paths::qemu_log_dir();
        fs::create_dir_all(&logs).unwrap();
        let transcript_path = logs.join(format!("linux-{case}.log"));
        let transcript = File::create(&transcript_path).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferrovisor"));
        cmd.arg("run")
            .arg("--config")
            .arg(config)
            .arg("--timeout")
            .arg(timeout_s.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let start = Instant::now();
        let mut child = cmd.spawn().unwrap();
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        for (src, mut stream) in [
            (Src::Out, Box::new(out) as Box<dyn Read + Send>),
            (Src::Err, Box::new(err)),
        ] {
            let tx = tx.clone();
            thread::spawn(move || {
                let mut buf = [0u8; 8192];
                loop {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => {
                            let _ = tx.send((src, None));
                            return;
                        }
                        Ok(n) => {
                            if tx.send((src, Some(buf[..n].to_vec()))).is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
        let mut failure_patterns = standard_failure_patterns();
        for p in [
            "Kernel panic",
            "Oops",
            "Unable to handle kernel",
            "stopped by the hypervisor",
        ] {
            failure_patterns.push(Pattern::Contains(p.into()));
        }
        let mut c = Console {
            case: case.to_string(),
            stdin: child.stdin.take(),
            child,
            rx,
            transcript,
            transcript_path,
            steps: Vec::new(),
            start,
            cleaner: Cleaner::default(),
            text: String::new(),
            cursor: 0,
            scanned: 0,
            stderr: String::new(),
            stderr_scanned: 0,
            open_streams: 2,
            failure: None,
            failure_patterns,
            status: None,
            seq: 0,
            qemu_started: None,
        };
        c.note(&format!(
            "started ferrovisor run --config {}",
            config.display()
        ));
        c
    }

    fn secs(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// Records a step (printed, and kept for the `.steps.log`).
    fn note(&mut self, what: &str) {
        let line = format!("[linux-{} +{:7.3}s] {what}", self.case, self.secs());
        eprintln!("{line}");
        self.steps.push(line);
    }

    /// Checks complete lines of `text` from `*scanned` on for failure patterns.
    fn scan(text: &str, scanned: &mut usize, patterns: &[Pattern], failure: &mut Option<String>) {
        while let Some(end) = text[*scanned..].find('\n') {
            let line = &text[*scanned..*scanned + end];
            if failure.is_none() {
                if let Some(p) = patterns.iter().find(|p| p.matches(line)) {
                    *failure = Some(format!("failure line (matched {p}): {line}"));
                }
            }
            *scanned += end + 1;
        }
    }

    /// Takes what arrived within `wait` into the transcript and buffers.
    fn pump(&mut self, wait: Duration) {
        match self.rx.recv_timeout(wait) {
            Ok((src, Some(bytes))) => {
                let _ = self.transcript.write_all(&bytes);
                let _ = self.transcript.flush();
                match src {
                    Src::Out => {
                        let t = self.cleaner.clean(&bytes);
                        self.text.push_str(&t);
                        Self::scan(
                            &self.text,
                            &mut self.scanned,
                            &self.failure_patterns,
                            &mut self.failure,
                        );
                    }
                    Src::Err => {
                        self.stderr.push_str(&String::from_utf8_lossy(&bytes));
                        if self.qemu_started.is_none()
                            && self.stderr.contains("qemu-system-riscv64 -M virt")
                        {
                            self.qemu_started = Some(Instant::now());
                        }
                        Self::scan(
                            &self.stderr,
                            &mut self.stderr_scanned,
                            &self.failure_patterns,
                            &mut self.failure,
                        );
                    }
                }
            }
            Ok((_, None)) => self.open_streams = self.open_streams.saturating_sub(1),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                self.open_streams = 0;
                thread::sleep(wait.min(Duration::from_millis(50)));
            }
        }
        if self.status.is_none() {
            if let Ok(Some(s)) = self.child.try_wait() {
                self.status = Some(s);
            }
        }
    }

    /// A failure report: what went wrong, the recent console output, the logs.
    fn fail(&mut self, what: &str) -> String {
        self.note(&format!("FAILED: {what}"));
        self.write_steps();
        let tail: String = {
            let t = &self.text;
            let mut from = t.len().saturating_sub(2500);
            while !t.is_char_boundary(from) {
                from += 1;
            }
            t[from..].to_string()
        };
        format!(
            "linux-{}: {what}\n--- last console output ---\n{tail}\n--- ferrovisor stderr ---\n{}\n--- transcript: {}",
            self.case,
            self.stderr.trim_end(),
            self.transcript_path.display()
        )
    }

    /// Waits until `find` finds something in the unconsumed console output; it
    /// returns how many bytes to consume and a value.
    fn wait_for<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        mut find: impl FnMut(&str) -> Option<(usize, T)>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(f) = self.failure.clone() {
                // Collect a little more output (a panic spans lines) first.
                let until = Instant::now() + Duration::from_secs(1);
                while Instant::now() < until && self.open_streams > 0 {
                    self.pump(Duration::from_millis(100));
                }
                let msg = self.fail(&format!("while waiting for {what}: {f}"));
                panic!("{msg}");
            }
            if let Some((len, v)) = find(&self.text[self.cursor..]) {
                self.cursor += len;
                return v;
            }
            if self.open_streams == 0 {
                let status = self.wait_status(Duration::from_secs(5));
                let msg = self.fail(&format!(
                    "ferrovisor run ended ({status:?}) before {what} appeared"
                ));
                panic!("{msg}");
            }
            let now = Instant::now();
            if now >= deadline {
                let msg = self.fail(&format!(
                    "timeout ({} s) waiting for {what}",
                    timeout.as_secs()
                ));
                panic!("{msg}");
            }
            self.pump((deadline - now).min(Duration::from_millis(200)));
        }
    }

    /// Waits for a whole console line that, without its `[<vm>] ` prefix,
    /// satisfies `pred`; returns the lines before it (unprefixed) and the line.
    fn expect_line(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> (Vec<String>, String) {
        let r = self.wait_for(what, timeout, |text| {
            let mut before = Vec::new();
            let mut pos = 0;
            while let Some(end) = text[pos..].find('\n') {
                let line = unprefixed(&text[pos..pos + end]);
                pos += end + 1;
                if pred(line) {
                    return Some((pos, (before, line.to_string())));
                }
                before.push(line.to_string());
            }
            None
        });
        self.note(&format!("saw {what}: {}", r.1));
        r
    }

    /// Waits for `needle` anywhere in the unconsumed output (a prompt has no
    /// newline).
    fn expect_text(&mut self, needle: &str, timeout: Duration) {
        self.wait_for(&format!("`{needle}`"), timeout, |text| {
            text.find(needle).map(|i| (i + needle.len(), ()))
        });
    }

    fn send(&mut self, text: &str) {
        let ok = match &mut self.stdin {
            Some(s) => s
                .write_all(text.as_bytes())
                .and_then(|()| s.flush())
                .is_ok(),
            None => false,
        };
        if !ok {
            let msg = self.fail(&format!(
                "cannot send {text:?}: ferrovisor run's stdin is closed"
            ));
            panic!("{msg}");
        }
    }

    /// Waits for the first shell prompt after a (re)boot; returns the seconds
    /// from `since` (QEMU's start, or `reboot`) to the userspace marker.
    fn boot(&mut self, since: Option<Instant>) -> f64 {
        let since = since.or(self.qemu_started).unwrap_or(self.start);
        self.expect_line(MARKER, BOOT, |l| l == MARKER);
        let boot_s = since.elapsed().as_secs_f64();
        // The init script's line just before the marker: kernel, CPUs, uptime.
        let info = self
            .text
            .lines()
            .rev()
            .map(unprefixed)
            .find(|l| l.starts_with("ferrovisor-guest: kernel"))
            .unwrap_or("(no ferrovisor-guest line)")
            .to_string();
        self.expect_text(PROMPT, COMMAND);
        self.note(&format!(
            "userspace up {boot_s:.1} s after QEMU start/reboot; {info}"
        ));
        boot_s
    }

    /// Runs shell command `cmd` in the focused VM and returns its output lines;
    /// fails unless it exits 0. Output is bracketed by marker lines that only
    /// the command's output, not the echo of the typed line, can contain.
    fn sh(&mut self, cmd: &str) -> Vec<String> {
        self.seq += 1;
        let tag = format!("FV{}", self.seq);
        self.note(&format!("$ {cmd}"));
        self.send(&format!("echo {tag}-begin; {cmd}; echo {tag}-end-$?\n"));
        let begin = format!("{tag}-begin");
        self.expect_line(&begin, COMMAND, |l| l == begin);
        let end = format!("{tag}-end-");
        let (out, last) = self.expect_line(&end, COMMAND, |l| l.starts_with(&end));
        self.expect_text(PROMPT, COMMAND);
        if last != format!("{end}0") {
            let msg = self.fail(&format!("`{cmd}` failed ({last}); output: {out:?}"));
            panic!("{msg}");
        }
        out
    }

    /// Waits up to `timeout` for `ferrovisor run` to exit, reading its output.
    fn wait_status(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while self.status.is_none() && Instant::now() < deadline {
            self.pump(Duration::from_millis(100));
        }
        // Whatever is still in the pipes.
        while self.open_streams > 0 && Instant::now() < deadline + Duration::from_secs(2) {
            self.pump(Duration::from_millis(100));
        }
        self.status
    }

    /// `poweroff` in the focused VM when it is the last one: the VM, then the
    /// machine power off, and `ferrovisor run` exits 0.
    fn poweroff_last(&mut self, vm: &str) {
        self.note("$ poweroff");
        self.send("poweroff\n");
        self.expect_powered_off(vm);
        self.expect_line("all VMs stopped", POWEROFF, |l| {
            l.starts_with("ferrovisor: all VMs stopped (all clean)")
        });
        self.expect_exit(0);
    }

    fn expect_powered_off(&mut self, vm: &str) {
        let want = format!("ferrovisor: VM '{vm}' powered off");
        self.expect_line(&want, POWEROFF, |l| l == want);
    }

    fn expect_exit(&mut self, code: i32) {
        let status = self.wait_status(POWEROFF);
        self.note(&format!("ferrovisor run exited: {status:?}"));
        if status.and_then(|s| s.code()) != Some(code) {
            let msg = self.fail(&format!(
                "ferrovisor run exited with {status:?}, expected status {code}"
            ));
            panic!("{msg}");
        }
        if let Some(f) = self.failure.clone() {
            let msg = self.fail(&f);
            panic!("{msg}");
        }
        self.write_steps();
    }

    fn write_steps(&mut self) {
        let path = self.transcript_path.with_extension("steps.log");
        let _ = fs::write(&path, self.steps.join("\n") + "\n");
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        // A failed test must not leave QEMU behind: killing ferrovisor (SIGKILL)
        // ends QEMU too (its parent-death signal).
        if self.status.is_none() && matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        self.write_steps();
    }
}

/// A console line without the hypervisor's `[<vm>] ` prefix.
fn unprefixed(line: &str) -> &str {
    if let Some(rest) = line.strip_prefix('[') {
        if let Some((name, after)) = rest.split_once("] ") {
            if !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            {
                return after;
            }
        }
    }
    line
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
    let out = c.sh("nproc");
    let n: Vec<u32> = out.iter().filter_map(|l| l.trim().parse().ok()).collect();
    assert_eq!(n, [vcpus], "nproc said {out:?}, expected {vcpus}");
}

fn check_cpuinfo(c: &mut Console, vcpus: u32) {
    let out = c.sh("cat /proc/cpuinfo");
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
    let first = c.sh("cat /proc/interrupts");
    let second = c.sh("sleep 1; cat /proc/interrupts");
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

fn check_memory(c: &mut Console, memory_mib: u64) {
    let out = c.sh("free -m");
    let total: u64 = out
        .iter()
        .find_map(|l| l.strip_prefix("Mem:"))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no `Mem:` total in {out:?}"));
    c.note(&format!("free -m: total {total} MiB of {memory_mib} MiB"));
    assert!(
        total * 100 > memory_mib * 80 && total <= memory_mib,
        "free -m total {total} MiB: expected more than 80 % of {memory_mib} MiB and no more"
    );
}

/// Boots one Linux VM with `vcpus` vCPUs on `cpus` harts, checks it, powers off.
fn boot_and_check(case: &str, vcpus: u32, cpus: u32) {
    let memory_mib = 512;
    let config = write_config(
        case,
        cpus,
        &[VmSpec {
            name: "linux",
            vcpus,
            memory_mib,
        }],
    );
    let mut c = Console::start(case, &config, HARD_LIMIT_S);
    let boot_s = c.boot(None);
    let ready = c
        .text
        .lines()
        .map(unprefixed)
        .find(|l| l.starts_with("ferrovisor-guest: kernel"))
        .unwrap_or("")
        .to_string();
    assert!(
        ready.contains(&format!(", {vcpus} cpu(s),")),
        "the init script saw other than {vcpus} CPUs: {ready:?}"
    );
    check_nproc(&mut c, vcpus);
    check_cpuinfo(&mut c, vcpus);
    check_interrupts(&mut c, vcpus);
    check_memory(&mut c, memory_mib);
    c.poweroff_last("linux");
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
    let config = write_config(
        "reboot",
        2,
        &[VmSpec {
            name: "linux",
            vcpus: 2,
            memory_mib: 512,
        }],
    );
    let mut c = Console::start("reboot", &config, HARD_LIMIT_S);
    c.boot(None);
    let uptime = |c: &mut Console| -> f64 {
        let out = c.sh("cat /proc/uptime");
        out.iter()
            .find_map(|l| l.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no uptime in {out:?}"))
    };
    let before = uptime(&mut c);
    c.sh("echo first boot > /run/fv-boot-mark");
    c.note("$ reboot");
    c.send("reboot\n");
    c.expect_line("the hypervisor rebooting the VM", POWEROFF, |l| {
        l == "ferrovisor: VM 'linux' rebooting"
    });
    let t_reboot = c.secs();
    let second_boot = c.boot(Some(Instant::now()));
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
    let out = c.sh("ls /run");
    assert!(
        !out.iter().any(|l| l.contains("fv-boot-mark")),
        "/run survived the reboot: {out:?}"
    );
    check_nproc(&mut c, 2);
    c.poweroff_last("linux");
    eprintln!("[linux-reboot] PASS: second boot to userspace in {second_boot:.1} s");
}

/// Two Linux VMs on one machine; console input goes to the first, then, after
/// Ctrl-A n, to the second.
#[test]
fn two_vms() {
    let vm = |name| VmSpec {
        name,
        vcpus: 1,
        memory_mib: 256,
    };
    let config = write_config("two-vms", 2, &[vm("a"), vm("b")]);
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
    let out = c.sh("echo typed-into-a");
    assert!(out.iter().any(|l| l == "typed-into-a"), "{out:?}");
    assert!(
        c.text.lines().any(|l| l == "[a] typed-into-a"),
        "the output did not come from VM a"
    );
    // Ctrl-A n: the hypervisor's escape (QEMU runs without its multiplexer).
    c.note("focus: Ctrl-A n");
    c.send("\x01n");
    c.expect_line("the focus moving to VM b", COMMAND, |l| {
        l.starts_with("ferrovisor: console input goes to VM 'b'")
    });
    c.send("\n");
    c.expect_text(PROMPT, COMMAND);
    c.sh("echo typed-into-b");
    assert!(
        c.text.lines().any(|l| l == "[b] typed-into-b"),
        "the output did not come from VM b"
    );
    c.note("$ poweroff (b)");
    c.send("poweroff\n");
    c.expect_powered_off("b");
    // Back to `a` (the only running VM) and power it off too.
    c.send("\x01n");
    c.expect_line("the focus moving to VM a", COMMAND, |l| {
        l.starts_with("ferrovisor: console input goes to VM 'a'")
    });
    c.send("\n");
    c.expect_text(PROMPT, COMMAND);
    c.poweroff_last("a");
}

/// `ferrovisor run --timeout` stops QEMU and exits non-zero (124) while the VM
/// still runs.
#[test]
fn timeout_is_nonzero() {
    let config = write_config(
        "timeout",
        1,
        &[VmSpec {
            name: "linux",
            vcpus: 1,
            memory_mib: 256,
        }],
    );
    let t0 = Instant::now();
    let mut c = Console::start("timeout", &config, 4);
    c.expect_line("the VM starting", Duration::from_secs(30), |l| {
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
