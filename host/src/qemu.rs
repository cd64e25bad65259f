//! Building the QEMU command line and running QEMU with a hard timeout.
//!
//! Always TCG (QEMU's default accelerator for a foreign architecture); never
//! `-accel kvm`. Serial output (QEMU's stdout with `-nographic`) is read line by
//! line, written to a log file as it arrives and handed to a callback.
//!
//! [`HostMemory`] says how much guest RAM this host can give QEMU; [`run_with`]
//! refuses a larger `-m` before starting anything.
//!
//! The machine's own VirtIO devices that a config asks for (disks, entropy,
//! uplinks; see [`crate::devices`]) go on the command line through
//! [`device_args`], in the order that decides their virtio-mmio slots.

use std::fs::{self, File};
use std::io::{self, IsTerminal, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::config::Machine;
use crate::devices::{DevicePlan, HostDeviceKind};
use crate::MIB;

/// The QEMU binary.
pub const QEMU_RISCV64: &str = "/usr/bin/qemu-system-riscv64";

/// How much guest RAM (`-m`) this host can give QEMU.
///
/// QEMU reserves the guest's RAM as one anonymous mapping when it starts and
/// touches it only as the guest does, so what decides whether it starts is the
/// kernel's overcommit policy, not the memory free right now (`MemAvailable`
/// would refuse a 1 GiB machine on a busy host although its guests use a
/// fraction of it):
/// - `vm.overcommit_memory` 0 (heuristic, the default) or 1 (always): the limit is
///   `MemTotal + SwapTotal`. Under 0 the kernel refuses a larger single
///   allocation (QEMU: "cannot set up guest memory ...: Cannot allocate
///   memory"); under 1 it would hand it out, but it could never be backed.
/// - 2 (strict accounting): `CommitLimit - Committed_AS`, what may still be
///   committed.
///
/// cgroup memory limits are not counted: they charge pages when touched, so
/// they do not stop QEMU from starting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostMemory {
    /// The most guest RAM QEMU can be given, in bytes.
    pub limit: u64,
    /// Where `limit` comes from, for messages (the figures and their source).
    pub source: String,
    /// `MemAvailable`: what is free without swapping right now, if known.
    pub available: Option<u64>,
}

impl HostMemory {
    /// Reads `/proc/meminfo` and `/proc/sys/vm/overcommit_memory`.
    pub fn read() -> io::Result<HostMemory> {
        let meminfo = fs::read_to_string("/proc/meminfo")?;
        let mode = fs::read_to_string("/proc/sys/vm/overcommit_memory")
            .ok()
            .and_then(|m| m.trim().parse().ok());
        HostMemory::from_proc(&meminfo, mode).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "/proc/meminfo has no MemTotal line",
            )
        })
    }

    /// The limit from `/proc/meminfo`'s text and the overcommit mode (see the
    /// type's documentation); `None` without `MemTotal`.
    pub fn from_proc(meminfo: &str, overcommit_mode: Option<u32>) -> Option<HostMemory> {
        let field = |name: &str| -> Option<u64> {
            meminfo.lines().find_map(|l| {
                let rest = l.strip_prefix(name)?.strip_prefix(':')?;
                let kib: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
                kib.checked_mul(1024)
            })
        };
        let total = field("MemTotal")?;
        let available = field("MemAvailable");
        if overcommit_mode == Some(2) {
            if let (Some(limit), Some(committed)) = (field("CommitLimit"), field("Committed_AS")) {
                return Some(HostMemory {
                    limit: limit.saturating_sub(committed),
                    source: format!(
                        "CommitLimit {} - Committed_AS {} in /proc/meminfo; vm.overcommit_memory is 2, strict accounting",
                        mib(limit),
                        mib(committed)
                    ),
                    available,
                });
            }
        }
        let swap = field("SwapTotal").unwrap_or(0);
        Some(HostMemory {
            limit: total.saturating_add(swap),
            source: format!(
                "MemTotal {} + SwapTotal {} in /proc/meminfo",
                mib(total),
                mib(swap)
            ),
            available,
        })
    }
}

/// A byte count in MiB for messages: `24104M`, `1.5M`.
pub fn mib(bytes: u64) -> String {
    if bytes.is_multiple_of(MIB) {
        format!("{}M", bytes / MIB)
    } else {
        format!("{:.1}M", bytes as f64 / MIB as f64)
    }
}

/// Everything that goes on QEMU's command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QemuConfig {
    /// The QEMU binary.
    pub binary: PathBuf,
    /// Extra `-machine` properties (appended to `virt,`).
    pub machine_options: Option<String>,
    /// `-cpu`; `None` means `rv64`.
    pub cpu: Option<String>,
    /// `-smp`.
    pub smp: u32,
    /// `-m`, a whole number of MiB.
    pub memory_bytes: u64,
    /// `-kernel`: the hypervisor (ELF or flat binary).
    pub kernel: PathBuf,
    /// `-initrd`: the boot package.
    pub initrd: Option<PathBuf>,
    /// The machine's VirtIO devices ([`device_args`]), after `-initrd`.
    pub devices: Vec<String>,
    /// Anything else, appended verbatim after the devices.
    pub extra_args: Vec<String>,
}

impl QemuConfig {
    /// A command for `machine`, booting `kernel` with `initrd`.
    pub fn new(machine: &Machine, kernel: &Path, initrd: Option<&Path>) -> Self {
        QemuConfig {
            binary: PathBuf::from(QEMU_RISCV64),
            machine_options: machine.options.clone(),
            cpu: machine.cpu.clone(),
            smp: machine.cpus,
            memory_bytes: machine.memory_bytes,
            kernel: kernel.to_path_buf(),
            initrd: initrd.map(Path::to_path_buf),
            devices: Vec::new(),
            extra_args: Vec::new(),
        }
    }

    /// The same command with the devices of `plan` ([`device_args`]).
    pub fn with_devices(mut self, plan: &DevicePlan) -> Self {
        self.devices = device_args(plan);
        self
    }

    /// The arguments (without the binary).
    pub fn args(&self) -> Vec<String> {
        let machine = match &self.machine_options {
            Some(o) if !o.is_empty() => format!("virt,{o}"),
            _ => "virt".to_string(),
        };
        let mut a: Vec<String> = vec![
            "-M".into(),
            machine,
            "-cpu".into(),
            self.cpu.clone().unwrap_or_else(|| "rv64".into()),
            "-smp".into(),
            self.smp.to_string(),
            "-m".into(),
            format!("{}M", self.memory_bytes.div_ceil(MIB)),
            // The serial port on stdio without QEMU's multiplexer, so Ctrl-A
            // (Ferrovisor's console escape) and Ctrl-C reach the hypervisor.
            "-display".into(),
            "none".into(),
            "-monitor".into(),
            "none".into(),
            "-chardev".into(),
            "stdio,id=con0,signal=off".into(),
            "-serial".into(),
            "chardev:con0".into(),
            "-bios".into(),
            "default".into(),
            // A reset request ends QEMU instead of looping through another boot.
            "-no-reboot".into(),
            "-kernel".into(),
            self.kernel.display().to_string(),
        ];
        if let Some(initrd) = &self.initrd {
            a.push("-initrd".into());
            a.push(initrd.display().to_string());
        }
        a.extend(self.devices.iter().cloned());
        a.extend(self.extra_args.iter().cloned());
        a
    }

    /// The command line as one shell-pasteable string (for logs and messages).
    pub fn command_line(&self) -> String {
        std::iter::once(self.binary.display().to_string())
            .chain(self.args())
            .map(|a| shell_quote(&a))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// QEMU arguments for the machine's devices of `plan`, one `-device` per
/// virtio-mmio slot in [`DevicePlan::host`] order, which is what puts each in
/// the slot the plan says (QEMU gives the first `-device` the highest free slot;
/// see [`crate::devices::host_slot`]). Empty when there are none.
///
/// - `-global virtio-mmio.force-legacy=false` first: QEMU 10's virtio-mmio
///   transports default to the legacy interface (version 1); this makes them
///   virtio-mmio version 2 (VirtIO 1.x, modern), which the hypervisor's driver
///   (`virtio-drivers`' modern MMIO transport) is meant to use. The hypervisor
///   drives either and logs which one it found (`hypervisor/src/hostdev.rs`).
/// - A disk: `-drive file=PATH,format=raw,if=none,id=diskV-D,readonly=on|off,cache=writeback`
///   and `-device virtio-blk-device,drive=diskV-D` (V: the VM's index, D: the
///   disk's). `format=raw` so that QEMU never probes the image's content;
///   commas in the path are doubled (QEMU's escape). `cache=writeback` is
///   QEMU's default, written out: a completed write is in the host's page cache,
///   i.e. in the image file for anyone reading it, even if QEMU is killed, and
///   the device offers `VIRTIO_BLK_F_FLUSH`, which QEMU honours with
///   `fdatasync` on the image (only `cache=unsafe` or `cache.no-flush=on`
///   would ignore it). QEMU locks the image: no other program (or second
///   QEMU) may write it while this one runs; read-only disks take a shared lock.
/// - The virtio-rng: `-device virtio-rng-device`, on QEMU's default backend
///   (`rng-builtin`: the host's `getrandom(2)`), so no `-object` is needed.
/// - An uplink: `-netdev user,id=uplinkS[,hostfwd=tcp:127.0.0.1:H-10.0.2.15:G...]`
///   (QEMU's user-mode network: the guest side is 10.0.2.0/24, the gateway
///   10.0.2.2 is the host's loopback) and `-device virtio-net-device,netdev=uplinkS,mac=M`
///   (S: the switch's index, M: [`crate::devices::uplink_mac`]).
pub fn device_args(plan: &DevicePlan) -> Vec<String> {
    if !plan.has_host_devices() {
        return Vec::new();
    }
    let mut a: Vec<String> = vec!["-global".into(), "virtio-mmio.force-legacy=false".into()];
    for d in &plan.host {
        match &d.kind {
            // A device of the hypervisor's own, after the config's (none yet):
            // its owner adds its `-device` here, as the position decides its slot.
            HostDeviceKind::Reserved => {}
            HostDeviceKind::Disk {
                vm,
                disk,
                path,
                read_only,
            } => {
                let id = format!("disk{vm}-{disk}");
                let path = std::path::absolute(path).unwrap_or_else(|_| path.clone());
                a.push("-drive".into());
                a.push(format!(
                    "file={},format=raw,if=none,id={id},readonly={},cache=writeback",
                    path.display().to_string().replace(',', ",,"),
                    if *read_only { "on" } else { "off" }
                ));
                a.push("-device".into());
                a.push(format!("virtio-blk-device,drive={id}"));
            }
            HostDeviceKind::Rng => {
                a.push("-device".into());
                a.push("virtio-rng-device".into());
            }
            HostDeviceKind::Uplink {
                switch,
                forwards,
                mac,
            } => {
                let id = format!("uplink{switch}");
                let mut netdev = format!("user,id={id}");
                for f in forwards {
                    netdev.push_str(",hostfwd=");
                    netdev.push_str(&f.hostfwd());
                }
                a.push("-netdev".into());
                a.push(netdev);
                a.push("-device".into());
                a.push(format!("virtio-net-device,netdev={id},mac={mac}"));
            }
        }
    }
    a
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./,=:+@%".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Which output stream a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// QEMU's stdout: the serial console.
    Serial,
    /// QEMU's stderr: QEMU's own messages.
    Stderr,
}

/// What the line callback wants next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Keep running.
    Continue,
    /// Kill QEMU now.
    Stop,
    /// Keep collecting output for at most this long, then kill QEMU.
    StopWithin(Duration),
}

/// Where QEMU's standard input comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    /// `/dev/null`: nothing reaches the serial console (tests, benchmarks).
    Null,
    /// This process's standard input, inherited: whatever is typed or piped in
    /// reaches the serial console. When it is a terminal, QEMU (`-nographic`)
    /// switches it to raw mode, so QEMU stays in this process's (foreground)
    /// process group to be allowed to read it, and [`run_with`] restores the
    /// terminal's settings after QEMU has ended, however it ended.
    Inherit,
}

/// How [`run_with`] runs QEMU.
#[derive(Clone, Copy, Debug)]
pub struct RunOptions {
    /// Kill QEMU after this long; `None`: no limit.
    pub timeout: Option<Duration>,
    /// QEMU's standard input.
    pub input: Input,
    /// Checked at least every 100 ms: once it is true (set by a signal handler,
    /// say), QEMU is killed and the outcome says `interrupted`.
    pub interrupt: Option<&'static AtomicBool>,
}

impl RunOptions {
    /// A run with `/dev/null` as input, killed after `timeout`.
    pub fn with_timeout(timeout: Duration) -> RunOptions {
        RunOptions {
            timeout: Some(timeout),
            input: Input::Null,
            interrupt: None,
        }
    }
}

/// How a run ended.
#[derive(Clone, Debug)]
pub struct RunOutcome {
    /// QEMU's exit status (after a kill it reports the signal).
    pub status: Option<ExitStatus>,
    /// The timeout expired and QEMU was killed.
    pub timed_out: bool,
    /// The callback asked to stop and QEMU was killed.
    pub stopped: bool,
    /// [`RunOptions::interrupt`] became true and QEMU was killed.
    pub interrupted: bool,
    /// Serial lines seen.
    pub serial_lines: usize,
    /// The last lines QEMU wrote to stderr.
    pub stderr_tail: Vec<String>,
    /// The log file.
    pub log_path: PathBuf,
    /// Wall time.
    pub elapsed: Duration,
}

impl RunOutcome {
    /// QEMU exited by itself with status 0 (a clean poweroff).
    pub fn clean_exit(&self) -> bool {
        !self.timed_out
            && !self.stopped
            && !self.interrupted
            && self.status.is_some_and(|s| s.success())
    }
}

/// Kills QEMU: its whole process group when it leads one (`own_group`), else just
/// QEMU.
fn kill_qemu(child: &mut Child, own_group: bool) {
    if own_group {
        if let Ok(pid) = libc::pid_t::try_from(child.id()) {
            // SAFETY: kill(2) takes plain integers and touches no memory of ours;
            // the negative pid names the process group we created for this child
            // (`process_group(0)`), whose leader we have not yet reaped, so the id
            // cannot have been reused.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
    }
    let _ = child.kill();
}

/// The terminal settings of standard input, put back when dropped (QEMU leaves
/// the terminal in raw mode when it is killed).
struct SavedTerminal(Option<libc::termios>);

impl SavedTerminal {
    fn save_stdin() -> SavedTerminal {
        let mut t = std::mem::MaybeUninit::<libc::termios>::uninit();
        // SAFETY: tcgetattr(3) writes one `termios` through the pointer, which
        // points to a local of exactly that type; fd 0 is only queried.
        let ok = unsafe { libc::tcgetattr(libc::STDIN_FILENO, t.as_mut_ptr()) } == 0;
        // SAFETY: tcgetattr returned 0, so it filled in the whole struct.
        SavedTerminal(ok.then(|| unsafe { t.assume_init() }))
    }
}

impl Drop for SavedTerminal {
    fn drop(&mut self) {
        if let Some(t) = &self.0 {
            // SAFETY: tcsetattr(3) only reads the `termios` we saved from this
            // very fd; restoring a terminal's own earlier settings is always valid.
            unsafe {
                libc::tcsetattr(libc::STDIN_FILENO, libc::TCSAFLUSH, t);
            }
        }
    }
}

/// What a reader thread hands the run loop.
enum Msg {
    /// Bytes as they arrived (a prompt without a newline, say).
    Chunk(Stream, Vec<u8>),
    /// A whole line, without its line ending (`\n`, `\r\n`); the last,
    /// unterminated piece of output also counts as a line.
    Line(Stream, String),
}

fn send_line(tx: &mpsc::Sender<Msg>, kind: Stream, mut line: Vec<u8>) -> bool {
    while matches!(line.last(), Some(b'\n' | b'\r')) {
        line.pop();
    }
    tx.send(Msg::Line(kind, String::from_utf8_lossy(&line).into_owned()))
        .is_ok()
}

fn spawn_reader<R: Read + Send + 'static>(
    mut stream: R,
    kind: Stream,
    tx: mpsc::Sender<Msg>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let mut pending: Vec<u8> = Vec::new();
        loop {
            let n = match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            let Some(data) = buf.get(..n) else { break };
            if tx.send(Msg::Chunk(kind, data.to_vec())).is_err() {
                return;
            }
            pending.extend_from_slice(data);
            while let Some(pos) = pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = pending.drain(..=pos).collect();
                if !send_line(&tx, kind, line) {
                    return;
                }
            }
        }
        if !pending.is_empty() {
            send_line(&tx, kind, pending);
        }
    })
}

/// Runs QEMU for at most `timeout`, writing every output line to `log_path`
/// (serial lines as they are, QEMU's stderr prefixed `[qemu stderr] `) and handing
/// it to `on_line`. QEMU's input is `/dev/null`. On timeout, or when `on_line`
/// asks, the process group is killed.
pub fn run(
    cfg: &QemuConfig,
    timeout: Duration,
    log_path: &Path,
    on_line: impl FnMut(Stream, &str) -> Control,
) -> io::Result<RunOutcome> {
    run_with(
        cfg,
        &RunOptions::with_timeout(timeout),
        log_path,
        on_line,
        |_, _| {},
    )
}

/// [`run`] with options (input, no timeout, interruption) and a second callback,
/// `on_output`, that gets QEMU's output as it arrives, before it forms whole
/// lines (for passing a console through: a shell prompt has no newline). For each
/// piece of output `on_output` is called before `on_line` sees the lines it ends.
pub fn run_with(
    cfg: &QemuConfig,
    opts: &RunOptions,
    log_path: &Path,
    mut on_line: impl FnMut(Stream, &str) -> Control,
    mut on_output: impl FnMut(Stream, &[u8]),
) -> io::Result<RunOutcome> {
    // A machine the host cannot give QEMU fails in QEMU; say so before starting.
    if let Ok(host) = HostMemory::read() {
        if cfg.memory_bytes > host.limit {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "QEMU's -m {} is more than this host can give it: {} ({}); not started",
                    mib(cfg.memory_bytes),
                    mib(host.limit),
                    host.source
                ),
            ));
        }
    }
    if let Some(dir) = log_path.parent() {
        fs::create_dir_all(dir)?;
    }
    let mut log = File::create(log_path)?;
    writeln!(log, "# {}", cfg.command_line())?;
    match opts.timeout {
        Some(t) => writeln!(log, "# timeout {} s", t.as_secs_f64())?,
        None => writeln!(log, "# no timeout")?,
    }

    let terminal_input = opts.input == Input::Inherit && io::stdin().is_terminal();
    let mut cmd = Command::new(&cfg.binary);
    cmd.args(cfg.args())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match opts.input {
        Input::Null => cmd.stdin(Stdio::null()),
        Input::Inherit => cmd.stdin(Stdio::inherit()),
    };
    // QEMU leads its own process group, so a kill reaches anything it starts, and
    // a Ctrl-C on our terminal is ours to handle, not QEMU's; except when it reads
    // the terminal: only the foreground group may.
    let own_group = !terminal_input;
    if own_group {
        cmd.process_group(0);
    }
    // If this process dies without ending QEMU (killed, say), the kernel ends it.
    let parent = std::process::id();
    // SAFETY: the closure runs in the child between fork and exec and calls only
    // async-signal-safe functions (prctl, getppid, _exit) on plain integers.
    unsafe {
        cmd.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            if u32::try_from(libc::getppid()).ok() != Some(parent) {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    let saved_terminal = terminal_input.then(SavedTerminal::save_stdin);
    let start = Instant::now();
    let mut child = cmd.spawn().map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot start {}: {e}", cfg.binary.display()),
        )
    })?;
    let (tx, rx) = mpsc::channel();
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        readers.push(spawn_reader(out, Stream::Serial, tx.clone()));
    }
    if let Some(err) = child.stderr.take() {
        readers.push(spawn_reader(err, Stream::Stderr, tx.clone()));
    }
    drop(tx);

    let mut deadline = opts.timeout.map(|t| start + t);
    let mut timed_out = false;
    let mut stopped = false;
    let mut interrupted = false;
    let mut stop_requested = false;
    let mut serial_lines = 0usize;
    let mut stderr_tail: Vec<String> = Vec::new();
    let mut record = |kind: Stream, line: &str, log: &mut File| -> io::Result<()> {
        match kind {
            Stream::Serial => {
                serial_lines += 1;
                writeln!(log, "{line}")?;
            }
            Stream::Stderr => {
                writeln!(log, "[qemu stderr] {line}")?;
                if stderr_tail.len() == 20 {
                    stderr_tail.remove(0);
                }
                stderr_tail.push(line.to_string());
            }
        }
        log.flush()
    };
    // How long one wait for output may take: until the deadline, and no more than
    // the interruption check's period.
    const POLL: Duration = Duration::from_millis(100);
    const FOREVER: Duration = Duration::from_secs(3600);

    loop {
        if opts.interrupt.is_some_and(|f| f.load(Ordering::Acquire)) {
            interrupted = true;
            kill_qemu(&mut child, own_group);
            break;
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            if stop_requested {
                stopped = true;
            } else {
                timed_out = true;
            }
            kill_qemu(&mut child, own_group);
            break;
        }
        let mut wait = deadline.map_or(FOREVER, |d| d - now);
        if opts.interrupt.is_some() {
            wait = wait.min(POLL);
        }
        match rx.recv_timeout(wait) {
            Ok(Msg::Chunk(kind, bytes)) => on_output(kind, &bytes),
            Ok(Msg::Line(kind, line)) => {
                record(kind, &line, &mut log)?;
                match on_line(kind, &line) {
                    Control::Continue => {}
                    Control::Stop => {
                        stopped = true;
                        kill_qemu(&mut child, own_group);
                        break;
                    }
                    Control::StopWithin(grace) => {
                        stop_requested = true;
                        let until = Instant::now() + grace;
                        deadline = Some(deadline.map_or(until, |d| d.min(until)));
                    }
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            // Both streams closed: QEMU has exited.
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let status = child.wait().ok();
    drop(saved_terminal);
    // Whatever was still buffered goes to the log (not to the callbacks).
    let drain_until = Instant::now() + Duration::from_secs(2);
    while let Some(left) = drain_until.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(Msg::Line(kind, line)) => record(kind, &line, &mut log)?,
            Ok(Msg::Chunk(..)) => {}
            Err(_) => break,
        }
    }
    let elapsed = start.elapsed();
    let how = if timed_out {
        format!(
            "killed after the {} s timeout",
            opts.timeout.unwrap_or_default().as_secs_f64()
        )
    } else if interrupted {
        "killed: interrupted".to_string()
    } else if stopped {
        "killed on request".to_string()
    } else {
        match status {
            Some(s) => format!("exited: {s}"),
            None => "exit status unknown".to_string(),
        }
    };
    writeln!(log, "# qemu {how} ({:.1} s)", elapsed.as_secs_f64())?;
    for r in readers {
        if r.is_finished() {
            let _ = r.join();
        }
    }
    Ok(RunOutcome {
        status,
        timed_out,
        stopped,
        interrupted,
        serial_lines,
        stderr_tail,
        log_path: log_path.to_path_buf(),
        elapsed,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;
    use crate::config::Arch;

    fn machine() -> Machine {
        Machine {
            arch: Arch::Riscv64,
            cpus: 4,
            memory_bytes: 1 << 30,
            cpu: None,
            options: None,
        }
    }

    #[test]
    fn command_line_defaults() {
        let q = QemuConfig::new(
            &machine(),
            Path::new("/t/ferrovisor-hv"),
            Some(Path::new("/c/p.fvpkg")),
        );
        assert_eq!(
            q.args(),
            [
                "-M",
                "virt",
                "-cpu",
                "rv64",
                "-smp",
                "4",
                "-m",
                "1024M",
                "-display",
                "none",
                "-monitor",
                "none",
                "-chardev",
                "stdio,id=con0,signal=off",
                "-serial",
                "chardev:con0",
                "-bios",
                "default",
                "-no-reboot",
                "-kernel",
                "/t/ferrovisor-hv",
                "-initrd",
                "/c/p.fvpkg"
            ]
        );
        assert!(!q.args().iter().any(|a| a.contains("kvm")));
        assert_eq!(
            q.command_line(),
            "/usr/bin/qemu-system-riscv64 -M virt -cpu rv64 -smp 4 -m 1024M -display none -monitor none -chardev stdio,id=con0,signal=off -serial chardev:con0 -bios default -no-reboot -kernel /t/ferrovisor-hv -initrd /c/p.fvpkg"
        );
    }

    #[test]
    fn command_line_with_machine_options_and_cpu() {
        let m = Machine {
            cpus: 1,
            memory_bytes: 512 << 20,
            cpu: Some("rv64,sstc=false".into()),
            options: Some("aia=aplic-imsic".into()),
            ..machine()
        };
        let mut q = QemuConfig::new(&m, Path::new("hv"), None);
        q.extra_args = vec!["-d".into(), "guest_errors".into()];
        let args = q.args();
        assert_eq!(args[0..2], ["-M", "virt,aia=aplic-imsic"]);
        assert_eq!(args[2..4], ["-cpu", "rv64,sstc=false"]);
        assert_eq!(args[4..6], ["-smp", "1"]);
        assert_eq!(args[6..8], ["-m", "512M"]);
        assert!(!args.contains(&"-initrd".to_string()));
        assert_eq!(args[args.len() - 2..], ["-d", "guest_errors"]);
    }

    /// The devices of a plan: the modern-transport switch, then one `-device`
    /// per slot in plan order (disks, rng, uplink), each disk's `-drive`
    /// before it; commas in paths doubled; nothing without devices.
    #[test]
    fn device_arguments() {
        use crate::devices::{self, Devices, Disk, PortForward, Switch, VmDevices};
        assert!(device_args(&devices::plan(&Devices::none(3)).unwrap()).is_empty());
        let d = Devices {
            vms: vec![
                VmDevices {
                    disks: vec![
                        Disk {
                            path: PathBuf::from("/i/a,b.img"),
                            read_only: false,
                        },
                        Disk {
                            path: PathBuf::from("/i/ro.img"),
                            read_only: true,
                        },
                    ],
                    nics: Vec::new(),
                    rng: false,
                },
                VmDevices {
                    rng: true,
                    ..VmDevices::default()
                },
            ],
            switches: vec![Switch {
                name: "lan".into(),
                uplink: true,
                forwards: vec![
                    PortForward::parse("tcp:8080:80").unwrap(),
                    PortForward::parse("udp:5353:10.0.2.16:53").unwrap(),
                ],
            }],
        };
        let plan = devices::plan(&d).unwrap();
        assert_eq!(
            device_args(&plan),
            [
                "-global",
                "virtio-mmio.force-legacy=false",
                "-drive",
                "file=/i/a,,b.img,format=raw,if=none,id=disk0-0,readonly=off,cache=writeback",
                "-device",
                "virtio-blk-device,drive=disk0-0",
                "-drive",
                "file=/i/ro.img,format=raw,if=none,id=disk0-1,readonly=on,cache=writeback",
                "-device",
                "virtio-blk-device,drive=disk0-1",
                "-device",
                "virtio-rng-device",
                "-netdev",
                "user,id=uplink0,hostfwd=tcp:127.0.0.1:8080-10.0.2.15:80,hostfwd=udp:127.0.0.1:5353-10.0.2.16:53",
                "-device",
                "virtio-net-device,netdev=uplink0,mac=52:54:00:fe:00:01",
            ]
        );
        // After -initrd, before the extra arguments.
        let mut q =
            QemuConfig::new(&machine(), Path::new("hv"), Some(Path::new("p"))).with_devices(&plan);
        q.extra_args = vec!["-d".into(), "guest_errors".into()];
        let args = q.args();
        let at = |a: &str| args.iter().position(|x| x == a).unwrap();
        assert!(at("-initrd") < at("-global"));
        assert!(at("virtio-net-device,netdev=uplink0,mac=52:54:00:fe:00:01") < at("-d"));
        // A relative image path is made absolute (QEMU runs in our directory
        // anyway, but the command line can be pasted elsewhere).
        let rel = Devices {
            vms: vec![VmDevices {
                disks: vec![Disk {
                    path: PathBuf::from("rel.img"),
                    read_only: true,
                }],
                ..VmDevices::default()
            }],
            switches: Vec::new(),
        };
        let a = device_args(&devices::plan(&rel).unwrap());
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(
            a[3],
            format!(
                "file={},format=raw,if=none,id=disk0-0,readonly=on,cache=writeback",
                cwd.join("rel.img").display()
            )
        );
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote("rv64,sstc=false"), "rv64,sstc=false");
        assert_eq!(shell_quote(""), "''");
    }

    /// `run` with a shell script standing in for QEMU: lines are logged and passed
    /// on, the exit status is reported.
    #[test]
    fn run_captures_lines_and_exit_status() {
        let dir = std::env::temp_dir().join(format!("fv-qemu-run-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let script = dir.join("fake-qemu.sh");
        fs::write(
            &script,
            "#!/bin/sh\necho 'hello\r'\necho oops >&2\nprintf 'no newline'\nexit 3\n",
        )
        .unwrap();
        let log = dir.join("run.log");
        let mut seen = Vec::new();
        let outcome = run_with_program(&script, Duration::from_secs(10), &log, |k, l| {
            seen.push((k, l.to_string()));
            Control::Continue
        })
        .unwrap();
        assert_eq!(outcome.status.unwrap().code(), Some(3));
        assert!(!outcome.timed_out);
        assert!(!outcome.clean_exit());
        assert!(seen.contains(&(Stream::Serial, "hello".to_string())));
        assert!(seen.contains(&(Stream::Serial, "no newline".to_string())));
        assert!(seen.contains(&(Stream::Stderr, "oops".to_string())));
        assert_eq!(outcome.serial_lines, 2);
        let text = fs::read_to_string(&log).unwrap();
        assert!(text.contains("hello\n"));
        assert!(text.contains("[qemu stderr] oops"));
        assert!(text.contains("exited"));
        let _ = fs::remove_dir_all(&dir);
    }

    /// The timeout kills the whole process group, children included.
    #[test]
    fn timeout_kills_the_process_group() {
        let dir = std::env::temp_dir().join(format!("fv-qemu-kill-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let pidfile = dir.join("child.pid");
        let script = dir.join("hang.sh");
        fs::write(
            &script,
            format!(
                "#!/bin/sh\nsleep 300 &\necho $! > {}\necho started\nwait\n",
                pidfile.display()
            ),
        )
        .unwrap();
        let log = dir.join("hang.log");
        let t0 = Instant::now();
        let outcome = run_with_program(&script, Duration::from_millis(800), &log, |_, _| {
            Control::Continue
        })
        .unwrap();
        assert!(outcome.timed_out);
        assert!(t0.elapsed() < Duration::from_secs(5));
        let pid = fs::read_to_string(&pidfile).unwrap();
        let pid = pid.trim();
        // The background `sleep` was in the group and is gone too.
        thread::sleep(Duration::from_millis(200));
        let alive = Path::new(&format!("/proc/{pid}")).exists()
            && !fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap_or_default()
                .contains(") Z ");
        assert!(!alive, "child {pid} survived the timeout");
        assert!(fs::read_to_string(&log).unwrap().contains("timeout"));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn stop_within_ends_the_run_early() {
        let dir = std::env::temp_dir().join(format!("fv-qemu-stop-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let script = dir.join("talk.sh");
        fs::write(&script, "#!/bin/sh\necho BAD\necho more\nexec sleep 300\n").unwrap();
        let log = dir.join("stop.log");
        let t0 = Instant::now();
        let outcome = run_with_program(&script, Duration::from_secs(60), &log, |_, l| {
            if l == "BAD" {
                Control::StopWithin(Duration::from_millis(300))
            } else {
                Control::Continue
            }
        })
        .unwrap();
        assert!(outcome.stopped);
        assert!(!outcome.timed_out);
        assert!(t0.elapsed() < Duration::from_secs(10));
        assert!(fs::read_to_string(&log).unwrap().contains("more"));
        let _ = fs::remove_dir_all(&dir);
    }

    /// Output reaches `on_output` as it arrives, before its line is complete: a
    /// prompt without a newline is seen while the program still runs.
    #[test]
    fn output_arrives_before_the_newline() {
        let dir = std::env::temp_dir().join(format!("fv-qemu-chunk-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let script = dir.join("prompt.sh");
        fs::write(
            &script,
            "#!/bin/sh\nprintf 'line one\\r\\nguest:~# '\nsleep 2\necho typed\n",
        )
        .unwrap();
        make_executable(&script);
        let log = dir.join("prompt.log");
        let q = fake_qemu(&script);
        let t0 = Instant::now();
        let mut raw = Vec::new();
        let mut prompt_at = None;
        let mut lines = Vec::new();
        let opts = RunOptions {
            timeout: None,
            input: Input::Null,
            interrupt: None,
        };
        let outcome = run_with(
            &q,
            &opts,
            &log,
            |k, l| {
                lines.push((k, l.to_string()));
                Control::Continue
            },
            |k, bytes| {
                if k == Stream::Serial {
                    raw.extend_from_slice(bytes);
                    if prompt_at.is_none() && raw.ends_with(b"guest:~# ") {
                        prompt_at = Some(t0.elapsed());
                    }
                }
            },
        )
        .unwrap();
        assert!(outcome.clean_exit(), "{outcome:?}");
        let prompt_at = prompt_at.expect("the prompt never arrived on its own");
        assert!(prompt_at < Duration::from_millis(1500), "{prompt_at:?}");
        assert!(outcome.elapsed >= Duration::from_secs(2));
        assert_eq!(raw, b"line one\r\nguest:~# typed\n");
        assert_eq!(
            lines,
            [
                (Stream::Serial, "line one".to_string()),
                (Stream::Serial, "guest:~# typed".to_string())
            ]
        );
        let text = fs::read_to_string(&log).unwrap();
        assert!(text.contains("# no timeout"), "{text}");
        let _ = fs::remove_dir_all(&dir);
    }

    /// Setting the interrupt flag kills the program within a poll period or so.
    #[test]
    fn interrupt_flag_kills_the_run() {
        static STOP: AtomicBool = AtomicBool::new(false);
        let dir = std::env::temp_dir().join(format!("fv-qemu-intr-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let script = dir.join("forever.sh");
        fs::write(&script, "#!/bin/sh\necho up\nexec sleep 300\n").unwrap();
        make_executable(&script);
        let opts = RunOptions {
            timeout: Some(Duration::from_secs(60)),
            input: Input::Null,
            interrupt: Some(&STOP),
        };
        let t0 = Instant::now();
        let outcome = run_with(
            &fake_qemu(&script),
            &opts,
            &dir.join("intr.log"),
            |_, l| {
                if l == "up" {
                    STOP.store(true, Ordering::Release);
                }
                Control::Continue
            },
            |_, _| {},
        )
        .unwrap();
        assert!(outcome.interrupted);
        assert!(!outcome.timed_out && !outcome.stopped);
        assert!(!outcome.clean_exit());
        assert!(t0.elapsed() < Duration::from_secs(10));
        let text = fs::read_to_string(dir.join("intr.log")).unwrap();
        assert!(text.contains("interrupted"), "{text}");
        let _ = fs::remove_dir_all(&dir);
    }

    fn make_executable(script: &Path) {
        let mut perms = fs::metadata(script).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        fs::set_permissions(script, perms).unwrap();
    }

    fn fake_qemu(script: &Path) -> QemuConfig {
        QemuConfig {
            binary: script.to_path_buf(),
            ..QemuConfig::new(&machine(), Path::new("hv"), None)
        }
    }

    /// Runs `script` as if it were QEMU through [`run`] (it ignores QEMU's
    /// arguments).
    fn run_with_program(
        script: &Path,
        timeout: Duration,
        log: &Path,
        on_line: impl FnMut(Stream, &str) -> Control,
    ) -> io::Result<RunOutcome> {
        let q = QemuConfig {
            binary: script.to_path_buf(),
            ..QemuConfig::new(&machine(), Path::new("hv"), None)
        };
        let mut perms = fs::metadata(script)?.permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        fs::set_permissions(script, perms)?;
        run(&q, timeout, log, on_line)
    }

    const MEMINFO: &str = "MemTotal:       24683664 kB\nMemFree:        21408048 kB\nMemAvailable:   24159396 kB\nSwapTotal:       2097152 kB\nCommitLimit:    12341832 kB\nCommitted_AS:    1660596 kB\n";

    #[test]
    fn host_memory_from_meminfo() {
        let h = HostMemory::from_proc(MEMINFO, Some(0)).unwrap();
        assert_eq!(h.limit, (24_683_664 + 2_097_152) * 1024);
        assert_eq!(h.available, Some(24_159_396 * 1024));
        assert_eq!(
            h.source,
            "MemTotal 24105.1M + SwapTotal 2048M in /proc/meminfo"
        );
        assert_eq!(HostMemory::from_proc(MEMINFO, None).unwrap().limit, h.limit);
        assert_eq!(
            HostMemory::from_proc(MEMINFO, Some(1)).unwrap().limit,
            h.limit
        );
        let strict = HostMemory::from_proc(MEMINFO, Some(2)).unwrap();
        assert_eq!(strict.limit, (12_341_832 - 1_660_596) * 1024);
        assert!(strict.source.contains("strict"), "{}", strict.source);
        assert_eq!(HostMemory::from_proc("MemFree: 1 kB\n", Some(0)), None);
        // This machine's own figures parse.
        let here = HostMemory::read().unwrap();
        assert!(here.limit >= 64 * MIB, "{here:?}");
    }

    /// `run_with` refuses a `-m` the host cannot give before starting anything:
    /// no log file, the program not run.
    #[test]
    fn run_refuses_more_memory_than_the_host_has() {
        let dir = std::env::temp_dir().join(format!("fv-qemu-mem-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let marker = dir.join("ran");
        let script = dir.join("q.sh");
        fs::write(&script, format!("#!/bin/sh\ntouch {}\n", marker.display())).unwrap();
        make_executable(&script);
        let mut q = fake_qemu(&script);
        q.memory_bytes = 1 << 50; // 1 PiB
        let log = dir.join("mem.log");
        let e = run(&q, Duration::from_secs(10), &log, |_, _| Control::Continue).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("-m 1073741824M is more than this host can give it"),
            "{msg}"
        );
        assert!(msg.contains("MemTotal"), "{msg}");
        assert!(!log.exists() && !marker.exists());
        let _ = fs::remove_dir_all(&dir);
    }
}
