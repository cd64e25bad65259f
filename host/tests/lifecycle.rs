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
//! - `pause_resume`: a Linux VM next to a CPU-bound bystander (cpu-hog) is
//!   paused from the shell while a background loop in it prints the guest's
//!   uptime every second. While paused, `vm info` says `paused`, no new line
//!   of it reaches the console, `vm log` does not change, and the bystander
//!   keeps running (its run time in `stats` grows). After `vm resume` the loop's next line shows the
//!   guest clock advanced by about one loop period across a pause of 6 s (guest
//!   time stood still), and the guest's shell answers.
//! - `destroy_recreate`: a Linux VM is destroyed (`vm destroy`, while it runs;
//!   in the second round while it is paused) and started again (`vm start`)
//!   three times, next to an idle VM that keeps the machine up; then rebooted
//!   by the operator (`vm reboot`, while paused); then powered off from inside,
//!   destroyed and started once more. Each time it boots to userspace afresh
//!   (uptime starts over) and sees its own memory. The free memory `stats`
//!   reports after every destroy is the same each time (no frames leak) and at
//!   least the VM's RAM more than while it ran.
//! - `fairness`: four CPU-bound VMs (cpu-hog), two pinned to hart 0 with
//!   weights 100 and 200, two pinned to hart 1 with weights 100 and 100. Over
//!   10 s the run time `stats` reports grows in the ratio 1:2 (1.9..=2.1) on
//!   hart 0 and 1:1 (0.95..=1.05) on hart 1. Before that, the shell answers
//!   an unknown VM, an unknown command and a resume of a running VM with an
//!   error line.
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
//! Needs `scripts/build.sh` (the hypervisor, smp-test and cpu-hog) and
//! `scripts/fetch-linux.sh`. Run with
//! `cargo test -p ferrovisor --test lifecycle -- --test-threads=1`
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

use ferrovisor::testing::{self, standard_failure_patterns, Case, CaseVms, Pattern};
use ferrovisor::{paths, MIB};

/// From start (or `vm start`) to the userspace marker.
const BOOT: Duration = Duration::from_secs(240);
/// One shell command (guest or management), sent to answered.
const COMMAND: Duration = Duration::from_secs(30);
/// From `poweroff` (or a stop) to the hypervisor's line and `ferrovisor run` exiting.
const POWEROFF: Duration = Duration::from_secs(60);
/// `ferrovisor run --timeout`: the hard limit of a whole test.
const HARD_LIMIT_S: u64 = 600;

const MARKER: &str = "FERROVISOR-GUEST-READY";
const PROMPT: &str = "guest:~# ";
const SHELL_PROMPT: &str = "fv> ";
const HOG: &str = "cpu-hog";

// ---------------------------------------------------------------------------
// Configs.

/// The kernel and initramfs of `scripts/fetch-linux.sh`, and a check that the
/// hypervisor is built.
fn linux_files() -> (PathBuf, PathBuf) {
    let current = paths::cache_dir().join("linux").join("current");
    let kernel = current.join("Image");
    let initrd = current.join("initramfs.cpio.gz");
    for f in [&kernel, &initrd] {
        assert!(
            f.is_file(),
            "{} does not exist: fetch the Linux guest with `scripts/fetch-linux.sh`",
            f.display()
        );
    }
    hypervisor_built();
    (kernel, initrd)
}

fn hypervisor_built() {
    let hv = paths::default_hypervisor();
    assert!(
        hv.is_file(),
        "{} does not exist; build it with {}",
        hv.display(),
        paths::BUILD_COMMAND
    );
}

/// A bare-metal guest binary, built.
fn guest(name: &str) -> PathBuf {
    let p = paths::bare_metal_binary(name);
    if let Err(e) = testing::require_built(&p) {
        panic!("{e}");
    }
    p
}

/// One VM of a generated config.
struct Vm {
    name: &'static str,
    vcpus: u32,
    memory_mib: u64,
    kernel: PathBuf,
    initrd: Option<PathBuf>,
    command_line: String,
    weight: Option<u32>,
    pin: Option<u32>,
}

impl Vm {
    fn linux(name: &'static str, vcpus: u32, memory_mib: u64) -> Vm {
        let (kernel, initrd) = linux_files();
        Vm {
            name,
            vcpus,
            memory_mib,
            kernel,
            initrd: Some(initrd),
            // `quiet`: a third of the exits at boot (the console traps per byte).
            command_line: "console=ttyS0 quiet".into(),
            weight: None,
            pin: None,
        }
    }

    fn bare(name: &'static str, binary: &str, vcpus: u32, command_line: &str) -> Vm {
        hypervisor_built();
        Vm {
            name,
            vcpus,
            memory_mib: 16,
            kernel: guest(binary),
            initrd: None,
            command_line: command_line.into(),
            weight: None,
            pin: None,
        }
    }
}

/// Writes `target/qemu-cases/lifecycle-<case>.yaml`: a machine with `cpus`
/// harts and 1 GiB running `vms`.
fn write_config(case: &str, cpus: u32, vms: &[Vm]) -> PathBuf {
    let mut yaml = format!("machine:\n  arch: riscv64\n  cpus: {cpus}\n  memory: 1G\nvms:\n");
    for vm in vms {
        let _ = write!(
            yaml,
            "  - name: {}\n    vcpus: {}\n    memory: {}M\n    kernel: {}\n    command_line: \"{}\"\n",
            vm.name,
            vm.vcpus,
            vm.memory_mib,
            vm.kernel.display(),
            vm.command_line
        );
        if let Some(rd) = &vm.initrd {
            let _ = writeln!(yaml, "    initrd: {}", rd.display());
        }
        if let Some(w) = vm.weight {
            let _ = writeln!(yaml, "    weight: {w}");
        }
        if let Some(p) = vm.pin {
            let _ = writeln!(yaml, "    pin: {p}");
        }
    }
    let path = paths::target_dir()
        .join("qemu-cases")
        .join(format!("lifecycle-{case}.yaml"));
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, yaml).unwrap();
    path
}

// ---------------------------------------------------------------------------
// Driving `ferrovisor run` (as in tests/linux.rs, with per-VM lines and the
// management shell).

/// Removes `\r` and terminal escape sequences from a byte stream that arrives
/// in pieces.
#[derive(Default)]
struct Cleaner {
    state: Esc,
}

#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum Esc {
    #[default]
    Text,
    Start,
    Csi,
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
    stderr: String,
    stderr_scanned: usize,
    open_streams: u32,
    failure: Option<String>,
    failure_patterns: Vec<Pattern>,
    status: Option<ExitStatus>,
    seq: u32,
    /// The VMs' names (to tell their console lines from the hypervisor's).
    vms: Vec<String>,
}

impl Console {
    /// Starts `ferrovisor run --config <config> --timeout HARD_LIMIT_S`.
    fn start(case: &str, config: &Path, vms: &[Vm]) -> Console {
        let logs = paths::qemu_log_dir();
        fs::create_dir_all(&logs).unwrap();
        let transcript_path = logs.join(format!("lifecycle-{case}.log"));
        let transcript = File::create(&transcript_path).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferrovisor"));
        cmd.arg("run")
            .arg("--config")
            .arg(config)
            .arg("--timeout")
            .arg(HARD_LIMIT_S.to_string())
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
            vms: vms.iter().map(|v| v.name.to_string()).collect(),
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

    fn note(&mut self, what: &str) {
        let line = format!("[lifecycle-{} +{:7.3}s] {what}", self.case, self.secs());
        eprintln!("{line}");
        self.steps.push(line);
    }

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

    /// Keeps reading output for `d` (failure lines still end the test).
    fn idle_for(&mut self, d: Duration) {
        let until = Instant::now() + d;
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            self.check_failure("a pause of the test");
            self.pump(left.min(Duration::from_millis(100)));
        }
        self.check_failure("a pause of the test");
    }

    fn check_failure(&mut self, what: &str) {
        if let Some(f) = self.failure.clone() {
            let until = Instant::now() + Duration::from_secs(1);
            while Instant::now() < until && self.open_streams > 0 {
                self.pump(Duration::from_millis(100));
            }
            let msg = self.fail(&format!("during {what}: {f}"));
            panic!("{msg}");
        }
    }

    /// A failure report: what went wrong, the recent console output, the logs.
    fn fail(&mut self, what: &str) -> String {
        self.note(&format!("FAILED: {what}"));
        self.write_steps();
        let t = &self.text;
        let mut from = t.len().saturating_sub(3000);
        while !t.is_char_boundary(from) {
            from += 1;
        }
        format!(
            "lifecycle-{}: {what}\n--- last console output ---\n{}\n--- ferrovisor stderr ---\n{}\n--- transcript: {}",
            self.case,
            &t[from..],
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
            self.check_failure(&format!("waiting for {what}"));
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

    /// Waits until some whole console line, anywhere in the output so far
    /// (consumed or not), satisfies `pred`; consumes nothing. For lines that
    /// come at an unknown time, such as another VM's.
    fn wait_anywhere(&mut self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + timeout;
        let mut checked = 0;
        loop {
            self.check_failure(&format!("waiting for {what}"));
            // Only whole lines; `checked` is the start of the first unchecked one.
            while let Some(end) = self.text[checked..].find('\n') {
                if pred(&self.text[checked..checked + end]) {
                    self.note(&format!("saw {what}"));
                    return;
                }
                checked += end + 1;
            }
            if self.open_streams == 0 {
                let msg = self.fail(&format!("ferrovisor run ended before {what} appeared"));
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

    /// Waits until `needle` is anywhere in the output so far (a prompt has no
    /// newline); consumes nothing.
    fn wait_text_anywhere(&mut self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.text.contains(needle) {
            self.check_failure(&format!("waiting for `{needle}`"));
            if self.open_streams == 0 || Instant::now() >= deadline {
                let msg = self.fail(&format!("no `{needle}` (within {} s)", timeout.as_secs()));
                panic!("{msg}");
            }
            self.pump(Duration::from_millis(200));
        }
        self.note(&format!("saw `{needle}`"));
    }

    /// Waits for a whole console line equal to or satisfying `pred` (the raw
    /// line, prefix included); returns the lines before it and the line.
    fn expect_raw_line(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> (Vec<String>, String) {
        let r = self.wait_for(what, timeout, |text| {
            let mut before = Vec::new();
            let mut pos = 0;
            while let Some(end) = text[pos..].find('\n') {
                let line = &text[pos..pos + end];
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

    /// Waits for a line of VM `vm` (its prefix stripped) satisfying `pred`;
    /// returns that VM's lines before it (unprefixed) and the line.
    fn expect_vm_line(
        &mut self,
        vm: &str,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> (Vec<String>, String) {
        let prefix = format!("[{vm}] ");
        let (before, line) = self.expect_raw_line(what, timeout, |l| {
            l.strip_prefix(&prefix).is_some_and(&pred)
        });
        let before = before
            .iter()
            .filter_map(|l| l.strip_prefix(&prefix))
            .map(str::to_string)
            .collect();
        (before, line[prefix.len()..].to_string())
    }

    /// A hypervisor log line (`ferrovisor: <text>`), exactly.
    fn expect_log(&mut self, text: &str, timeout: Duration) {
        let want = format!("ferrovisor: {text}");
        self.expect_raw_line(&format!("`{want}`"), timeout, |l| l == want);
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

    /// Waits for VM `vm`'s userspace marker (after the cursor); returns the
    /// time since `since`.
    fn boot(&mut self, vm: &str, since: Instant) -> f64 {
        self.expect_vm_line(vm, &format!("{vm}: userspace marker"), BOOT, |l| {
            l == MARKER
        });
        let s = since.elapsed().as_secs_f64();
        self.note(&format!("{vm}: userspace up after {s:.1} s"));
        s
    }

    /// Console input to VM number `index` (`vm`) with `Ctrl-A <index>`, then a
    /// fresh prompt from its shell.
    fn focus(&mut self, index: u32, vm: &str) {
        self.note(&format!("focus: Ctrl-A {index} ({vm})"));
        self.send(&format!("\x01{index}"));
        self.expect_log(&format!("console input goes to VM '{vm}'"), COMMAND);
        self.send("\n");
        self.expect_text(&format!("[{vm}] {PROMPT}"), COMMAND);
    }

    /// Runs shell command `cmd` in VM `vm` (which must have the input focus)
    /// and returns its output lines; fails unless it exits 0. The output is
    /// bracketed by marker lines only the command's output, not the echo of
    /// the typed line, can contain.
    fn sh(&mut self, vm: &str, cmd: &str) -> Vec<String> {
        self.seq += 1;
        let tag = format!("FV{}", self.seq);
        self.note(&format!("{vm}$ {cmd}"));
        self.send(&format!("echo {tag}-begin; {cmd}; echo {tag}-end-$?\n"));
        let begin = format!("{tag}-begin");
        self.expect_vm_line(vm, &begin, COMMAND, |l| l == begin);
        let end = format!("{tag}-end-");
        let (out, last) = self.expect_vm_line(vm, &end, COMMAND, |l| l.starts_with(&end));
        self.expect_text(&format!("[{vm}] {PROMPT}"), COMMAND);
        if last != format!("{end}0") {
            let msg = self.fail(&format!("`{cmd}` failed ({last}); output: {out:?}"));
            panic!("{msg}");
        }
        out
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

    /// Waits up to `timeout` for `ferrovisor run` to exit, reading its output.
    fn wait_status(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while self.status.is_none() && Instant::now() < deadline {
            self.pump(Duration::from_millis(100));
        }
        while self.open_streams > 0 && Instant::now() < deadline + Duration::from_secs(2) {
            self.pump(Duration::from_millis(100));
        }
        self.status
    }

    /// The hypervisor's last line and `ferrovisor run`'s exit status: 0 after
    /// `all VMs stopped (all clean)`, 1 after `(some failed)`.
    fn expect_machine_end(&mut self, clean: bool) {
        let (summary, code) = if clean {
            ("all VMs stopped (all clean)", 0)
        } else {
            ("all VMs stopped (some failed)", 1)
        };
        let want = format!("ferrovisor: {summary}");
        self.expect_raw_line(&format!("`{want}`"), POWEROFF, |l| l.starts_with(&want));
        let status = self.wait_status(POWEROFF);
        self.note(&format!("ferrovisor run exited: {status:?}"));
        if status.and_then(|s| s.code()) != Some(code) {
            let msg = self.fail(&format!(
                "ferrovisor run exited with {status:?}, expected status {code}"
            ));
            panic!("{msg}");
        }
        self.check_failure("the end of the run");
        self.write_steps();
    }

    /// `poweroff` in VM `vm` (focused); waits for the hypervisor's line.
    fn poweroff(&mut self, vm: &str) {
        self.note(&format!("{vm}$ poweroff"));
        self.send("poweroff\n");
        self.expect_log(&format!("VM '{vm}' powered off"), POWEROFF);
    }

    /// Waits for the line number `n` (0-based) of VM `vm` satisfying `pred`,
    /// counted over all its output, and returns it (unprefixed).
    fn nth_vm_line(
        &mut self,
        vm: &str,
        what: &str,
        n: usize,
        pred: impl Fn(&str) -> bool + Copy,
    ) -> String {
        let deadline = Instant::now() + COMMAND;
        loop {
            self.check_failure(&format!("waiting for {what}"));
            if let Some(l) = self.vm_lines(vm, pred).into_iter().nth(n) {
                self.note(&format!("saw {what}: {l}"));
                return l;
            }
            if self.open_streams == 0 || Instant::now() >= deadline {
                let msg = self.fail(&format!("no {what} (within {} s)", COMMAND.as_secs()));
                panic!("{msg}");
            }
            self.pump(Duration::from_millis(200));
        }
    }

    /// Lines of VM `vm` so far (all output, unprefixed) satisfying `pred`.
    fn vm_lines(&self, vm: &str, pred: impl Fn(&str) -> bool) -> Vec<String> {
        let prefix = format!("[{vm}] ");
        self.text
            .lines()
            .filter_map(|l| l.strip_prefix(&prefix))
            .filter(|l| pred(l))
            .map(str::to_string)
            .collect()
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

/// `free -m`'s total, MiB.
fn mem_total_mib(out: &[String]) -> Option<u64> {
    out.iter()
        .find_map(|l| l.strip_prefix("Mem:"))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|t| t.parse().ok())
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
    let out = c.sh(vm, "free -m");
    let total = mem_total_mib(&out).unwrap_or_else(|| panic!("{vm}: no `Mem:` total in {out:?}"));
    c.note(&format!("{vm}: free -m total {total} MiB of {mib} MiB"));
    assert!(
        total * 100 > mib * 60 && total <= mib,
        "{vm}: free -m total {total} MiB: expected more than 60 % of its {mib} MiB and no more"
    );
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
    c.note("Ctrl-A x");
    c.send("\x01x");
    c.expect_log("Ctrl-A x: stopping every VM", COMMAND);
    c.expect_machine_end(true);
    eprintln!("[lifecycle-fairness] PASS in {:.1} s", c.secs());
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
