//! What the tests that drive `ferrovisor run` through its console share
//! (`tests/linux.rs`, `tests/lifecycle.rs`): generated configs of Linux and
//! bare-metal VMs, and [`Console`], which starts `ferrovisor run` (stdin and
//! stdout piped), collects and checks its output as it arrives, types into it
//! and waits for lines, step by step, each step with its own timeout.
//!
//! Every step is noted with its time on stderr and in
//! `target/qemu-logs/<name>.steps.log`; the raw transcript is
//! `target/qemu-logs/<name>.log`. A failure line (see [`Console::spawn`])
//! fails the test at the next step.

// Each test file uses its own part of this module.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use ferrovisor::instance::runtime::RUNTIME_ENV;
use ferrovisor::paths;
use ferrovisor::testing::{self, standard_failure_patterns, Pattern};

/// From start (or a reboot, or `vm start`) to the userspace marker. A boot
/// takes about 10 s under TCG; several VMs on a loaded 2-core machine longer.
pub const BOOT: Duration = Duration::from_secs(240);
/// One shell command (guest or management), sent to answered.
pub const COMMAND: Duration = Duration::from_secs(30);
/// From `poweroff` (or a stop) to the hypervisor's line and `ferrovisor run`
/// exiting.
pub const POWEROFF: Duration = Duration::from_secs(60);

/// The line the initramfs prints when userspace is up.
pub const MARKER: &str = "FERROVISOR-GUEST-READY";
/// The initramfs shell's prompt.
pub const PROMPT: &str = "guest:~# ";
/// Fetches the Linux guest.
pub const FETCH: &str = "scripts/fetch-linux.sh";

// ---------------------------------------------------------------------------
// Configs.

/// The kernel and initramfs `scripts/fetch-linux.sh` points its `current/`
/// symlinks at (it uses `${XDG_CACHE_HOME:-$HOME/.cache}/ferrovisor/linux`, as
/// [`paths::cache_dir`] does), and a check that the hypervisor is built.
pub fn linux_files() -> (PathBuf, PathBuf) {
    let current = paths::cache_dir().join("linux").join("current");
    let kernel = current.join("Image");
    let initrd = current.join("initramfs.cpio.gz");
    for f in [&kernel, &initrd] {
        assert!(
            f.is_file(),
            "{} does not exist: fetch the Linux guest with `{FETCH}` (from the repository root)",
            f.display()
        );
    }
    hypervisor_built();
    (kernel, initrd)
}

/// Fails unless the release hypervisor is built.
pub fn hypervisor_built() {
    let hv = paths::default_hypervisor();
    assert!(
        hv.is_file(),
        "{} does not exist; build it with {}",
        hv.display(),
        paths::BUILD_COMMAND
    );
}

/// A bare-metal guest binary, built.
pub fn guest(name: &str) -> PathBuf {
    let p = paths::bare_metal_binary(name);
    if let Err(e) = testing::require_built(&p) {
        panic!("{e}");
    }
    p
}

/// One VM of a generated config.
pub struct Vm {
    pub name: &'static str,
    pub vcpus: u32,
    pub memory_mib: u64,
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    pub command_line: String,
    pub weight: Option<u32>,
    pub pin: Option<u32>,
    /// `console:` (`None`: not written, the default `uart`).
    pub console: Option<&'static str>,
}

impl Vm {
    /// The fetched Linux guest with `console=ttyS0 quiet`.
    pub fn linux(name: &'static str, vcpus: u32, memory_mib: u64) -> Vm {
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
            console: None,
        }
    }

    /// Bare-metal test guest `binary` with 16 MiB.
    pub fn bare(name: &'static str, binary: &str, vcpus: u32, command_line: &str) -> Vm {
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
            console: None,
        }
    }
}

/// Writes `target/qemu-cases/<name>.yaml`: a machine with `cpus` harts and
/// 1 GiB running `vms`.
pub fn write_config(name: &str, cpus: u32, vms: &[Vm]) -> PathBuf {
    write_config_with_memory(name, cpus, 1024, vms)
}

/// [`write_config`] with `memory_mib` MiB of machine memory.
pub fn write_config_with_memory(name: &str, cpus: u32, memory_mib: u64, vms: &[Vm]) -> PathBuf {
    let mut yaml =
        format!("machine:\n  arch: riscv64\n  cpus: {cpus}\n  memory: {memory_mib}M\nvms:\n");
    for vm in vms {
        vm_yaml(&mut yaml, vm);
    }
    write_yaml(name, &yaml)
}

/// Appends `vm` as an entry of a config's `vms:` list.
pub fn vm_yaml(yaml: &mut String, vm: &Vm) {
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
    if let Some(c) = vm.console {
        let _ = writeln!(yaml, "    console: {c}");
    }
}

/// Writes `yaml` to `target/qemu-cases/<name>.yaml` and returns the path.
pub fn write_yaml(name: &str, yaml: &str) -> PathBuf {
    let path = paths::target_dir()
        .join("qemu-cases")
        .join(format!("{name}.yaml"));
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
pub struct Console {
    /// The test's name (`linux-vcpus1`): log file names and step prefixes.
    pub name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    rx: Receiver<(Src, Option<Vec<u8>>)>,
    transcript: File,
    pub transcript_path: PathBuf,
    steps: Vec<String>,
    /// When `ferrovisor run` was started.
    pub start: Instant,
    cleaner: Cleaner,
    /// Cleaned stdout (the serial console).
    pub text: String,
    /// Start of what no step has consumed yet.
    pub cursor: usize,
    /// Start of the first line not yet checked for failure patterns.
    scanned: usize,
    /// ferrovisor's stderr (its own messages, QEMU's).
    pub stderr: String,
    stderr_scanned: usize,
    open_streams: u32,
    failure: Option<String>,
    failure_patterns: Vec<Pattern>,
    status: Option<ExitStatus>,
    seq: u32,
    /// When `ferrovisor run` said it starts QEMU (its command line on stderr),
    /// after building the boot package.
    pub qemu_started: Option<Instant>,
    /// The VMs' names (to tell their console lines from the hypervisor's).
    pub vms: Vec<String>,
}

impl Console {
    /// Starts `ferrovisor run --config <config> --timeout <timeout_s>`; its
    /// logs are named after `name`. Failure lines: the standard ones
    /// ([`standard_failure_patterns`]), `Kernel panic`, `Oops`, `Unable to
    /// handle kernel` and a VM `stopped by the hypervisor`.
    pub fn spawn(name: &str, config: &Path, timeout_s: u64, vms: &[Vm]) -> Console {
        Console::spawn_with(name, config, timeout_s, vms, &[])
    }

    /// [`Console::spawn`] with `extra` arguments to `run` (e.g. `--http`).
    pub fn spawn_with(
        name: &str,
        config: &Path,
        timeout_s: u64,
        vms: &[Vm],
        extra: &[&str],
    ) -> Console {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferrovisor"));
        // Instances of these tests live under this worktree's target
        // directory (unless the test chose a place), so test runs of other
        // worktrees on the same machine never share instance names.
        if std::env::var_os(RUNTIME_ENV).is_none() {
            cmd.env(RUNTIME_ENV, paths::target_dir().join("rt"));
        }
        cmd.arg("run")
            .arg("--config")
            .arg(config)
            .arg("--timeout")
            .arg(timeout_s.to_string())
            .args(extra);
        let what = format!("ferrovisor run --config {}", config.display());
        Console::spawn_command(name, cmd, &what, vms)
    }

    /// Starts `cmd` (`ferrovisor run`, or QEMU itself with a package a test
    /// built) with its standard streams piped, as [`Console::spawn`] does.
    pub fn spawn_command(name: &str, mut cmd: Command, what: &str, vms: &[Vm]) -> Console {
        let logs = paths::qemu_log_dir();
        fs::create_dir_all(&logs).unwrap();
        let transcript_path = logs.join(format!("{name}.log"));
        let transcript = File::create(&transcript_path).unwrap();
        cmd.stdin(Stdio::piped())
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
            name: name.to_string(),
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
            vms: vms.iter().map(|v| v.name.to_string()).collect(),
        };
        c.note(&format!("started {what}"));
        c
    }

    /// The `ferrovisor run` process's id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Seconds since `ferrovisor run` was started.
    pub fn secs(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// Records a step (printed, and kept for the `.steps.log`).
    pub fn note(&mut self, what: &str) {
        let line = format!("[{} +{:7.3}s] {what}", self.name, self.secs());
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

    /// Keeps reading output for `d` (failure lines still end the test).
    pub fn idle_for(&mut self, d: Duration) {
        let until = Instant::now() + d;
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            self.check_failure("a pause of the test");
            self.pump(left.min(Duration::from_millis(100)));
        }
        self.check_failure("a pause of the test");
    }

    /// Fails the test if a failure line has been seen (after collecting a
    /// little more output: a panic spans lines).
    pub fn check_failure(&mut self, what: &str) {
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
    pub fn fail(&mut self, what: &str) -> String {
        self.note(&format!("FAILED: {what}"));
        self.write_steps();
        let t = &self.text;
        let mut from = t.len().saturating_sub(3000);
        while !t.is_char_boundary(from) {
            from += 1;
        }
        format!(
            "{}: {what}\n--- last console output ---\n{}\n--- ferrovisor stderr ---\n{}\n--- transcript: {}",
            self.name,
            &t[from..],
            self.stderr.trim_end(),
            self.transcript_path.display()
        )
    }

    /// Waits until `find` finds something in the unconsumed console output; it
    /// returns how many bytes to consume and a value.
    pub fn wait_for<T>(
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
            self.wait_step(what, timeout, deadline);
        }
    }

    /// One round of a wait for `what` that found nothing yet: fails the test
    /// when `ferrovisor run` has ended or `deadline` (`timeout` from the
    /// start) has passed, else reads output for up to 200 ms.
    fn wait_step(&mut self, what: &str, timeout: Duration, deadline: Instant) {
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

    /// Waits until some whole console line, anywhere in the output so far
    /// (consumed or not), satisfies `pred`; consumes nothing. For lines that
    /// come at an unknown time, such as another VM's.
    pub fn wait_anywhere(&mut self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) {
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
            self.wait_step(what, timeout, deadline);
        }
    }

    /// Waits until `needle` is anywhere in the output so far (a prompt has no
    /// newline); consumes nothing.
    pub fn wait_text_anywhere(&mut self, needle: &str, timeout: Duration) {
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
    pub fn expect_raw_line(
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
    pub fn expect_vm_line(
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
    pub fn expect_log(&mut self, text: &str, timeout: Duration) {
        let want = format!("ferrovisor: {text}");
        self.expect_raw_line(&format!("`{want}`"), timeout, |l| l == want);
    }

    /// Waits for `needle` anywhere in the unconsumed output (a prompt has no
    /// newline).
    pub fn expect_text(&mut self, needle: &str, timeout: Duration) {
        self.wait_for(&format!("`{needle}`"), timeout, |text| {
            text.find(needle).map(|i| (i + needle.len(), ()))
        });
    }

    /// Types `text` into the console.
    pub fn send(&mut self, text: &str) {
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
    pub fn boot(&mut self, vm: &str, since: Instant) -> f64 {
        self.expect_vm_line(vm, &format!("{vm}: userspace marker"), BOOT, |l| {
            l == MARKER
        });
        let s = since.elapsed().as_secs_f64();
        self.note(&format!("{vm}: userspace up after {s:.1} s"));
        s
    }

    /// Console input to VM number `index` (`vm`) with `Ctrl-A <index>`, then a
    /// fresh prompt from its shell.
    pub fn focus(&mut self, index: u32, vm: &str) {
        self.note(&format!("focus: Ctrl-A {index} ({vm})"));
        self.send(&format!("\x01{index}"));
        self.expect_log(&format!("console input goes to VM '{vm}'"), COMMAND);
        self.send("\n");
        self.expect_text(&format!("[{vm}] {PROMPT}"), COMMAND);
    }

    /// Runs shell command `cmd` in VM `vm` (which must have the input focus)
    /// and returns its output lines; fails unless it exits 0. The output is
    /// bracketed by marker lines only the command's output, not the echo of
    /// the typed line, can contain, even when that echo reaches the console
    /// in pieces (another VM's line in between splits it): the begin marker
    /// is typed with an empty quote inside (`-be''gin`), and the end marker
    /// carries the exit status as digits where the echo has `$?`.
    pub fn sh(&mut self, vm: &str, cmd: &str) -> Vec<String> {
        self.seq += 1;
        let tag = format!("FV{}", self.seq);
        self.note(&format!("{vm}$ {cmd}"));
        self.send(&format!("echo {tag}-be''gin; {cmd}; echo {tag}-end-$?\n"));
        let begin = format!("{tag}-begin");
        self.expect_vm_line(vm, &begin, COMMAND, |l| l == begin);
        let end = format!("{tag}-end-");
        let (out, last) = self.expect_vm_line(vm, &end, COMMAND, |l| {
            l.strip_prefix(&end)
                .is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        });
        self.expect_text(&format!("[{vm}] {PROMPT}"), COMMAND);
        if last != format!("{end}0") {
            let msg = self.fail(&format!("`{cmd}` failed ({last}); output: {out:?}"));
            panic!("{msg}");
        }
        out
    }

    /// Waits up to `timeout` for `ferrovisor run` to exit, reading its output.
    pub fn wait_status(&mut self, timeout: Duration) -> Option<ExitStatus> {
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

    /// `ferrovisor run` exits with status `code` (within [`POWEROFF`]), and
    /// no failure line came before.
    pub fn expect_exit(&mut self, code: i32) {
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

    /// The hypervisor's last line and `ferrovisor run`'s exit status: 0 after
    /// `all VMs stopped (all clean)`, 1 after `(some failed)`.
    pub fn expect_machine_end(&mut self, clean: bool) {
        let (summary, code) = if clean {
            ("all VMs stopped (all clean)", 0)
        } else {
            ("all VMs stopped (some failed)", 1)
        };
        let want = format!("ferrovisor: {summary}");
        self.expect_raw_line(&format!("`{want}`"), POWEROFF, |l| l.starts_with(&want));
        self.expect_exit(code);
    }

    /// `poweroff` in VM `vm` (focused); waits for the hypervisor's line.
    pub fn poweroff(&mut self, vm: &str) {
        self.note(&format!("{vm}$ poweroff"));
        self.send("poweroff\n");
        self.expect_log(&format!("VM '{vm}' powered off"), POWEROFF);
    }

    /// Waits for the line number `n` (0-based) of VM `vm` satisfying `pred`,
    /// counted over all its output, and returns it (unprefixed).
    pub fn nth_vm_line(
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
    pub fn vm_lines(&self, vm: &str, pred: impl Fn(&str) -> bool) -> Vec<String> {
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
// What the guest reports.

/// `free -m`'s total, MiB.
pub fn mem_total_mib(out: &[String]) -> Option<u64> {
    out.iter()
        .find_map(|l| l.strip_prefix("Mem:"))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|t| t.parse().ok())
}

/// `free -m` in VM `vm` (focused) shows more than `min_percent` % of its
/// `mib` and no more.
pub fn check_memory(c: &mut Console, vm: &str, mib: u64, min_percent: u64) {
    let out = c.sh(vm, "free -m");
    let total = mem_total_mib(&out).unwrap_or_else(|| panic!("{vm}: no `Mem:` total in {out:?}"));
    c.note(&format!("{vm}: free -m total {total} MiB of {mib} MiB"));
    assert!(
        total * 100 > mib * min_percent && total <= mib,
        "{vm}: free -m total {total} MiB: expected more than {min_percent} % of its {mib} MiB and no more"
    );
}
