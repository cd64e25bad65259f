//! `ferrovisor bench --linux`: an unmodified Debian Linux (the kernel and busybox
//! initramfs of `scripts/fetch-linux.sh`) as a VM under Ferrovisor and directly
//! on QEMU, side by side, in one invocation.
//!
//! Both sides get the same QEMU vCPUs (2 by default) and the same guest memory
//! (512 MiB: the VM's RAM under Ferrovisor on a 1 GiB machine, `-m 512M` on bare
//! QEMU). Each run boots each side twice (which side goes first alternates from
//! run to run):
//!
//! 1. with `console=ttyS0`, one side after the other: the wall time from QEMU's
//!    start to the initramfs's `FERROVISOR-GUEST-READY` line, and the guest's
//!    own uptime on the line before it; then `poweroff -f`;
//! 2. the same with `quiet` added (far fewer console exits); the two quiet
//!    guests then stay up together and the in-guest benchmarks
//!    ([`GUEST_BENCHES`]) alternate between them at their busybox shells: an
//!    uncounted warm-up run of each ([`Options::warmup`]), then
//!    [`Options::reps`] repetitions round-robin, each timed by the guest itself
//!    from its monotonic clock (`now at … nsecs` in `/proc/timer_list`, read by
//!    a shell builtin loop: no process is started to read the clock).
//!
//! Every figure is the median over runs (over runs × repetitions for the
//! in-guest benchmarks) with its range, the ratio Ferrovisor / bare of the
//! medians and whether it meets its target, and the ratio of the minima (the
//! least disturbed values) as a check. Every run's console is kept under
//! `target/bench-logs/linux/`.

pub mod console;
pub mod parse;

use std::fmt::{self, Write as _};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::bench::json::Json;
use crate::bench::parse::{parse_bench_line, parse_hypervisor_output, LineError};
use crate::bench::stats::{ratio, Stat};
use crate::bench::{
    check_file, icount_note, num, prepare_log_dir, qemu_version, spread, times, times_to, utc_date,
    with_icount, write_package, BenchError, Side, LOG_SUBDIR,
};
use crate::config::{Arch, Machine, VmConfig};
use crate::qemu::QemuConfig;
use crate::testing::Pattern;
use crate::{paths, ALL_VMS_STOPPED, MIB};

use console::{Console, Line};
use parse::{guest_lines, is_prompt, BootStatus, READY_MARKER};

/// The VM's name under Ferrovisor (its console lines come prefixed `[linux] `).
pub const VM_NAME: &str = "linux";
/// The log subdirectory under `target/bench-logs/`.
pub const LOG_SUBSUBDIR: &str = "linux";
/// How to get the kernel and initramfs.
pub const FETCH_COMMAND: &str = "scripts/fetch-linux.sh";
/// The kernel command line of the verbose boot (both sides).
pub const CONSOLE_COMMAND_LINE: &str = "console=ttyS0";

/// Boot-time target of the quiet boot: Ferrovisor / bare at most this.
pub const BOOT_TARGET: f64 = 1.15;
/// Boot-time target of the verbose `console=ttyS0` boot (issue 12).
pub const CONSOLE_BOOT_TARGET: f64 = 1.25;
/// Target of every in-guest benchmark under `-icount shift=0`: counted in
/// instructions, the loops must cost the hypervisor (almost) nothing.
pub const ICOUNT_LOOP_TARGET: f64 = 1.001;

/// One in-guest benchmark: a shell command timed by the guest.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GuestBench {
    /// Its name on the `BENCH:` line.
    pub name: &'static str,
    /// What it does (for the table).
    pub what: &'static str,
    /// The command timed (run through the guest's `fvb` function).
    pub command: &'static str,
    /// Run after it, untimed (clean-up).
    pub after: Option<&'static str>,
    /// Ferrovisor / bare at most this.
    pub target: f64,
}

/// The in-guest benchmarks, each sized to take about a second on bare QEMU TCG.
pub const GUEST_BENCHES: &[GuestBench] = &[
    GuestBench {
        name: "cpu_loop",
        what: "CPU-bound: busybox ash arithmetic loop, 20 000 iterations",
        command: "fvc 20000",
        after: None,
        target: 1.03,
    },
    GuestBench {
        name: "syscall_loop",
        what: "syscalls: dd bs=1 count=100000 /dev/zero → /dev/null (200 000 read+write)",
        command: "dd if=/dev/zero of=/dev/null bs=1 count=100000",
        after: None,
        target: 1.05,
    },
    GuestBench {
        name: "pages_tmpfs",
        what: "fresh pages: dd 32 MiB into a new tmpfs file (8192 page-cache pages)",
        command: "dd if=/dev/zero of=/tmp/fvx bs=1M count=32",
        after: Some("rm -f /tmp/fvx"),
        target: 1.20,
    },
    GuestBench {
        name: "pages_anon",
        what: "fresh pages: read 128 MiB of /dev/zero into a new anonymous buffer (32 768 page faults)",
        command: "dd if=/dev/zero of=/dev/null bs=128M count=1",
        after: None,
        target: 1.20,
    },
];

/// Where a timed command's stderr goes in the guest (shown after the timing).
pub const GUEST_STDERR: &str = "/tmp/fv.err";

/// The shell line that runs benchmark `b` with its result named `name`: the
/// command's stderr (dd's statistics) goes to a file in tmpfs and is shown
/// only after the timing, because console output costs guest exits under
/// Ferrovisor and would otherwise be timed with the command.
pub fn command_line(b: &GuestBench, name: &str) -> String {
    let after = b.after.map(|a| format!("; {a}")).unwrap_or_default();
    format!(
        "fvb {name} {} 2>{GUEST_STDERR}; cat {GUEST_STDERR}{after}\n",
        b.command
    )
}

/// The name prefix of a benchmark's warm-up run.
pub const WARMUP_PREFIX: &str = "warmup_";

/// Shell functions typed into the guest before the benchmarks: `fvt` reads the
/// monotonic clock into `T` (ns) with builtins only, `fvb NAME CMD…` times CMD
/// and prints `BENCH: NAME <ns> ns` (NAME-FAILED if CMD failed; written `BEN\CH`
/// so that the echoed command line never looks like a result), `fvc N` counts
/// to N in shell arithmetic.
pub const GUEST_SETUP: &[&str] = &[
    r#"fvt(){ T=;while read -r a b c d;do [ "$a" = now ]&&{ T=$c;return;};done</proc/timer_list;}"#,
    r#"fvb(){ n=$1;shift;fvt;s=$T;"$@"||n=$n-FAILED;fvt;echo BEN\CH: $n $((T-s)) ns;}"#,
    r#"fvc(){ i=0;while [ $i -lt $1 ];do i=$((i+1));done;}"#,
];

/// What to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Runs per side (≥ 1).
    pub runs: usize,
    /// In-guest repetitions of each benchmark per boot (≥ 1).
    pub reps: usize,
    /// Run each benchmark once, not counted, before the repetitions: the
    /// first use of memory in a fresh guest pays one-time costs (QEMU's own
    /// first touch of its RAM on both sides; under Ferrovisor also the G-stage
    /// first-touch faults that `ferrovisor bench` measures by themselves).
    pub warmup: bool,
    /// The hypervisor ELF.
    pub hypervisor: PathBuf,
    /// The Linux kernel (a RISC-V `Image`).
    pub kernel: PathBuf,
    /// The initramfs.
    pub initrd: PathBuf,
    /// Limit on each wait: boot to the shell's prompt, each benchmark, the
    /// power-off.
    pub timeout: Duration,
    /// Where logs and packages go.
    pub log_dir: PathBuf,
    /// QEMU `-smp` on both sides, and the VM's vCPUs.
    pub cpus: u32,
    /// The guest's memory: the VM's RAM, and bare QEMU's `-m`.
    pub guest_memory_bytes: u64,
    /// The machine's memory under Ferrovisor.
    pub machine_memory_bytes: u64,
    /// Run both sides under [`crate::bench::ICOUNT_ARGS`]: the guest's clock
    /// counts instructions, so its figures (uptime, in-guest benchmarks) are
    /// deterministic; the wall times still are wall times.
    pub icount: bool,
}

impl Options {
    /// The defaults: 3 runs, 3 repetitions, the release hypervisor, the kernel
    /// and initramfs `scripts/fetch-linux.sh` chose last, 2 vCPUs, 512 MiB for the
    /// guest, 1 GiB for Ferrovisor's machine, 180 s per wait.
    pub fn new() -> Options {
        let current = paths::cache_dir().join("linux").join("current");
        Options {
            runs: 3,
            reps: 3,
            warmup: true,
            hypervisor: paths::default_hypervisor(),
            kernel: current.join("Image"),
            initrd: current.join("initramfs.cpio.gz"),
            timeout: Duration::from_secs(180),
            log_dir: paths::target_dir().join(LOG_SUBDIR).join(LOG_SUBSUBDIR),
            cpus: 2,
            guest_memory_bytes: 512 * MIB,
            machine_memory_bytes: 1024 * MIB,
            icount: false,
        }
    }

    /// Ferrovisor's machine.
    pub fn ferrovisor_machine(&self) -> Machine {
        Machine {
            arch: Arch::Riscv64,
            cpus: self.cpus,
            memory_bytes: self.machine_memory_bytes,
            cpu: None,
            options: None,
        }
    }

    /// Bare QEMU's machine: the guest's memory only.
    pub fn bare_machine(&self) -> Machine {
        Machine {
            memory_bytes: self.guest_memory_bytes,
            ..self.ferrovisor_machine()
        }
    }
}

impl Default for Options {
    fn default() -> Self {
        Options::new()
    }
}

/// Which boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Boot {
    /// `console=ttyS0`: every kernel message on the console.
    Console,
    /// `console=ttyS0 quiet`, followed by the in-guest benchmarks.
    Quiet,
}

impl Boot {
    /// The kernel command line.
    pub fn command_line(self) -> String {
        match self {
            Boot::Console => CONSOLE_COMMAND_LINE.to_string(),
            Boot::Quiet => format!("{CONSOLE_COMMAND_LINE} quiet"),
        }
    }

    fn tag(self) -> &'static str {
        match self {
            Boot::Console => "console",
            Boot::Quiet => "quiet",
        }
    }

    /// Ferrovisor / bare at most this for this boot's figures.
    pub fn target(self) -> f64 {
        match self {
            Boot::Console => CONSOLE_BOOT_TARGET,
            Boot::Quiet => BOOT_TARGET,
        }
    }
}

impl fmt::Display for Boot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.command_line())
    }
}

/// One figure on both sides.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// Its key in the JSON output.
    pub key: String,
    /// What it measures.
    pub what: String,
    /// The unit of the values.
    pub unit: &'static str,
    /// Under Ferrovisor.
    pub ferrovisor: Stat,
    /// On bare QEMU.
    pub bare: Stat,
    /// Median under Ferrovisor / median on bare QEMU.
    pub ratio: Option<f64>,
    /// The uncounted warm-up runs (one per boot) under Ferrovisor and on bare
    /// QEMU, for the in-guest benchmarks.
    pub warmup: Option<(Stat, Stat)>,
    /// Minimum under Ferrovisor / minimum on bare QEMU: the least disturbed
    /// values, a check on the median's ratio when the host is busy.
    pub ratio_of_minima: Option<f64>,
    /// The ratio it should stay within.
    pub target: f64,
}

impl Row {
    fn new(
        key: impl Into<String>,
        what: impl Into<String>,
        unit: &'static str,
        ferrovisor: Stat,
        bare: Stat,
        target: f64,
    ) -> Row {
        let r = ratio(ferrovisor.median, bare.median);
        let r_min = ratio(ferrovisor.min, bare.min);
        Row {
            key: key.into(),
            what: what.into(),
            unit,
            ferrovisor,
            bare,
            ratio: r,
            warmup: None,
            ratio_of_minima: r_min,
            target,
        }
    }

    /// Whether the ratio is within the target (`None`: no ratio).
    pub fn met(&self) -> Option<bool> {
        self.ratio.map(|r| r <= self.target)
    }
}

/// Everything one `ferrovisor bench --linux` measured.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// UTC date of the run, `YYYY-MM-DD`.
    pub date: String,
    /// Runs per side.
    pub runs: usize,
    /// In-guest repetitions per boot.
    pub reps: usize,
    /// `qemu-system-riscv64 --version`'s first line, if it answered.
    pub qemu_version: Option<String>,
    /// The guest kernel's release (`uname -r`).
    pub release: String,
    /// The options it ran with.
    pub options: Options,
    /// QEMU's command lines: Ferrovisor console / quiet, bare console / quiet.
    pub commands: [String; 4],
    /// Boot figures, then the in-guest benchmarks.
    pub rows: Vec<Row>,
    /// Hypervisor's first instruction → first guest instruction, µs.
    pub first_entry_us: Stat,
    /// Guest exits per Ferrovisor run: console boot (boot, shell, poweroff).
    pub exits_console: Option<Stat>,
    /// Guest exits per Ferrovisor run: quiet boot and the benchmarks.
    pub exits_quiet: Option<Stat>,
    /// The same per exit reason (as the hypervisor names them), console runs.
    pub exit_kinds_console: Vec<(String, Stat)>,
    /// The same per exit reason, quiet runs.
    pub exit_kinds_quiet: Vec<(String, Stat)>,
    /// Every log, in run order.
    pub logs: Vec<PathBuf>,
    /// The host's load averages (1, 5, 15 min, `/proc/loadavg`) before and
    /// after the runs.
    pub host_load: [Option<String>; 2],
}

impl Report {
    /// The row with JSON key `key`.
    pub fn row(&self, key: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.key == key)
    }

    /// Rows meeting their target, and rows with a ratio.
    pub fn targets_met(&self) -> (usize, usize) {
        let judged: Vec<bool> = self.rows.iter().filter_map(Row::met).collect();
        (judged.iter().filter(|m| **m).count(), judged.len())
    }
}

/// What one boot gave.
#[derive(Clone, Debug)]
struct BootRecord {
    side: Side,
    boot: Boot,
    wall_to_marker_s: f64,
    status: BootStatus,
    /// ns per benchmark, in [`GUEST_BENCHES`] order (quiet boots only).
    samples: Vec<Vec<f64>>,
    /// ns of each benchmark's warm-up run, in the same order (if any).
    warmup: Vec<f64>,
    first_entry_us: Option<f64>,
    exits: Option<f64>,
    /// The hypervisor's exit counts per reason (Ferrovisor only).
    exit_kinds: Vec<(String, u64)>,
    log: PathBuf,
}

/// Lines that end a Linux boot as failed (kernel panics, hypervisor traps).
pub(crate) fn failure_patterns() -> Vec<Pattern> {
    vec![
        Pattern::Contains("Kernel panic".into()),
        Pattern::Contains("Internal error: Oops".into()),
        Pattern::Contains("Unable to handle kernel".into()),
        Pattern::Contains("panicked".into()),
        Pattern::Contains("ferrovisor: TRAP".into()),
        Pattern::Contains("ferrovisor: FATAL".into()),
    ]
}

fn setup(opts: &Options) -> Result<(), BenchError> {
    if opts.runs == 0 || opts.reps == 0 {
        return Err(BenchError::Setup(
            "--runs and the repetitions must be at least 1".into(),
        ));
    }
    crate::bench::check_hypervisor(&opts.hypervisor)?;
    let fetch = format!("get it with {FETCH_COMMAND}");
    check_file(&opts.kernel, "Linux kernel", &fetch)?;
    check_file(&opts.initrd, "initramfs", &fetch)?;
    prepare_log_dir(&opts.log_dir)
}

/// Builds the one-VM package for `boot`; returns its path.
fn package_for(opts: &Options, boot: Boot) -> Result<PathBuf, BenchError> {
    let vm = VmConfig {
        name: VM_NAME.into(),
        vcpus: opts.cpus,
        memory_bytes: opts.guest_memory_bytes,
        kernel: opts.kernel.clone(),
        kernel_format: crate::loader::FormatChoice::Auto,
        console: crate::config::ConsoleChoice::Uart,
        initrd: Some(opts.initrd.clone()),
        command_line: boot.command_line(),
        weight: fv_bootpkg::DEFAULT_WEIGHT,
        pin: None,
    };
    write_package(
        "<ferrovisor bench --linux>",
        &opts.ferrovisor_machine(),
        vec![vm],
        &opts.log_dir,
        &format!("linux-{}.fvpkg", boot.tag()),
    )
}

/// The QEMU command for `side` and `boot`.
fn qemu_config(opts: &Options, side: Side, boot: Boot, pkg: &Path) -> QemuConfig {
    let cfg = match side {
        Side::Ferrovisor => {
            QemuConfig::new(&opts.ferrovisor_machine(), &opts.hypervisor, Some(pkg))
        }
        Side::Bare => {
            let mut q = QemuConfig::new(&opts.bare_machine(), &opts.kernel, Some(&opts.initrd));
            q.extra_args = vec!["-append".into(), boot.command_line()];
            q
        }
    };
    with_icount(cfg, opts.icount)
}

/// The lines' texts.
fn texts(lines: &[Line]) -> Vec<&str> {
    lines.iter().map(|l| l.text.as_str()).collect()
}

/// Whether one of `lines` is a guest's `BENCH:` line of `name` (or of its
/// failure).
fn has_result(lines: &[Line], vm: Option<&str>, name: &str) -> bool {
    let t = texts(lines);
    let found = guest_lines(&t, vm).any(|(_, l)| {
        parse_bench_line(l.trim_end()).is_some_and(|r| {
            r.is_ok_and(|b| {
                b.name == name || b.name.strip_suffix(parse::FAILED_SUFFIX) == Some(name)
            })
        })
    });
    found
}

/// One guest booted to its shell, in a running QEMU.
struct Session<'o> {
    opts: &'o Options,
    side: Side,
    boot: Boot,
    vm: Option<&'static str>,
    console: Console,
    log: PathBuf,
    marker_index: usize,
    wall_to_marker_s: f64,
    status: BootStatus,
}

impl fmt::Debug for Session<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Session({} {}, {})",
            self.side,
            self.boot,
            self.log.display()
        )
    }
}

impl<'o> Session<'o> {
    fn run_err(&self, problem: String) -> BenchError {
        BenchError::Run {
            side: self.side,
            problem,
            log: self.log.clone(),
        }
    }

    fn parse_err(&self, error: LineError) -> BenchError {
        BenchError::Parse {
            side: self.side,
            error,
            log: self.log.clone(),
        }
    }

    fn who(&self) -> String {
        self.vm.map(|v| format!("[{v}] ")).unwrap_or_default()
    }

    /// Starts QEMU and waits for the marker and then the shell's prompt.
    fn boot(
        opts: &'o Options,
        side: Side,
        boot: Boot,
        cfg: &QemuConfig,
        log: &Path,
    ) -> Result<Session<'o>, BenchError> {
        let vm = match side {
            Side::Ferrovisor => Some(VM_NAME),
            Side::Bare => None,
        };
        let run_err = |problem: String| BenchError::Run {
            side,
            problem,
            log: log.to_path_buf(),
        };
        let mut console =
            Console::spawn(cfg, log, failure_patterns()).map_err(|e| BenchError::Launch {
                message: e.to_string(),
                log: log.to_path_buf(),
            })?;
        let who = vm.map(|v| format!("[{v}] ")).unwrap_or_default();
        let mut scanned = 0;
        let (marker_index, marker_at) = console
            .wait_for(
                &format!("`{who}{READY_MARKER}`"),
                opts.timeout,
                |lines, _| {
                    let new = lines.get(scanned..).unwrap_or_default();
                    let t = texts(new);
                    let found = guest_lines(&t, vm)
                        .find(|(_, l)| parse::is_marker(l))
                        .and_then(|(i, _)| new.get(i).map(|l| (scanned + i, l.at)));
                    scanned = lines.len();
                    found
                },
            )
            .map_err(|e| run_err(e.to_string()))?;
        let status =
            parse::parse_boot(&texts(console.lines()), vm).map_err(|error| BenchError::Parse {
                side,
                error,
                log: log.to_path_buf(),
            })?;
        if status.cpus != opts.cpus {
            return Err(run_err(format!(
                "the guest saw {} CPU(s), expected {}",
                status.cpus, opts.cpus
            )));
        }
        let mut s = Session {
            opts,
            side,
            boot,
            vm,
            console,
            log: log.to_path_buf(),
            marker_index,
            wall_to_marker_s: marker_at.as_secs_f64(),
            status,
        };
        s.prompt(marker_index, "the shell's prompt")?;
        Ok(s)
    }

    /// Waits for the shell's prompt after line `after` (the echo of what was
    /// typed comes first).
    fn prompt(&mut self, after: usize, what: &str) -> Result<(), BenchError> {
        let r = self
            .console
            .wait_for(what, self.opts.timeout, |lines, partial| {
                (lines.len() > after && is_prompt(partial)).then_some(())
            });
        r.map_err(|e| self.run_err(e.to_string()))
    }

    /// Types the helper functions into the shell.
    fn define_functions(&mut self) -> Result<(), BenchError> {
        for line in GUEST_SETUP {
            let n = self.console.lines().len();
            self.send(&format!("{line}\n"))?;
            self.prompt(n, "the shell's prompt after defining a function")?;
        }
        Ok(())
    }

    fn send(&mut self, text: &str) -> Result<(), BenchError> {
        let r = self.console.send(text);
        r.map_err(|e| self.run_err(e.to_string()))
    }

    /// Runs one benchmark, its result named `name`, and waits for the result
    /// and the next prompt.
    fn bench(&mut self, b: &GuestBench, name: &str) -> Result<(), BenchError> {
        let n = self.console.lines().len();
        let cmd = command_line(b, name);
        self.send(&cmd)?;
        let what = format!("`{}BENCH: {name} <ns> ns` and a prompt", self.who());
        let vm = self.vm;
        let r = self
            .console
            .wait_for(&what, self.opts.timeout, |lines, partial| {
                let new = lines.get(n..).unwrap_or_default();
                (has_result(new, vm, name) && is_prompt(partial)).then_some(())
            });
        r.map_err(|e| self.run_err(e.to_string()))
    }

    /// Reads the benchmarks' results (a warm-up if `warmup` and `reps` of
    /// each), powers the guest off and checks that QEMU ended cleanly; reads the
    /// hypervisor's figures.
    fn finish(mut self, reps: usize, warmup: bool) -> Result<BootRecord, BenchError> {
        let mut warmups = Vec::new();
        let samples = if reps == 0 {
            Vec::new()
        } else {
            let warm_names: Vec<String> = GUEST_BENCHES
                .iter()
                .map(|b| format!("{WARMUP_PREFIX}{}", b.name))
                .collect();
            let mut expected: Vec<(&str, usize)> =
                GUEST_BENCHES.iter().map(|b| (b.name, reps)).collect();
            if warmup {
                expected.extend(warm_names.iter().map(|n| (n.as_str(), 1)));
            }
            let mut samples = parse::parse_results(
                &texts(self.console.lines()),
                self.vm,
                self.marker_index,
                &expected,
            )
            .map_err(|e| self.parse_err(e))?;
            if warmup {
                warmups = samples
                    .split_off(GUEST_BENCHES.len())
                    .into_iter()
                    .flatten()
                    .collect();
            }
            if let Some(b) = GUEST_BENCHES
                .iter()
                .zip(&samples)
                .find(|(_, s)| s.iter().any(|v| *v <= 0.0))
                .map(|(b, _)| b)
            {
                return Err(self.parse_err(LineError::Malformed {
                    line: format!("BENCH: {} 0 ns", b.name),
                    problem: "the guest's clock did not advance (is /proc/timer_list readable?)"
                        .into(),
                }));
            }
            samples
        };
        self.send("poweroff -f\n")?;
        let r = self.console.wait_exit(self.opts.timeout);
        let code = r.map_err(|e| self.run_err(e.to_string()))?;
        if !code.success() {
            let mut problem = format!("QEMU did not power off cleanly ({code})");
            for l in self.console.stderr_tail() {
                problem.push_str("\n    qemu: ");
                problem.push_str(l);
            }
            return Err(self.run_err(problem));
        }
        let (first_entry_us, exits, exit_kinds) = match self.side {
            Side::Ferrovisor => {
                let lines = texts(self.console.lines());
                if !lines.iter().any(|l| l.contains(ALL_VMS_STOPPED)) {
                    return Err(self.run_err(format!("no `{ALL_VMS_STOPPED}` line")));
                }
                let h = parse_hypervisor_output(&lines).map_err(|e| self.parse_err(e))?;
                let kinds = parse::parse_exit_kinds(&lines, VM_NAME)
                    .map_err(|e| self.parse_err(e))?
                    .unwrap_or_default();
                (
                    Some(h.first_entry_us as f64),
                    h.exits.map(|e| e as f64),
                    kinds,
                )
            }
            Side::Bare => (None, None, Vec::new()),
        };
        Ok(BootRecord {
            side: self.side,
            boot: self.boot,
            wall_to_marker_s: self.wall_to_marker_s,
            status: self.status,
            samples,
            warmup: warmups,
            first_entry_us,
            exits,
            exit_kinds,
            log: self.log,
        })
    }
}

/// The host's 1, 5 and 15 minute load averages.
fn host_load() -> Option<String> {
    let text = fs::read_to_string("/proc/loadavg").ok()?;
    let fields: Vec<&str> = text.split_whitespace().take(3).collect();
    (fields.len() == 3).then(|| fields.join(" "))
}

fn stat(values: &[f64], what: &str) -> Result<Stat, BenchError> {
    Stat::of(values).ok_or_else(|| BenchError::Inconsistent(format!("no usable values of {what}")))
}

fn progress_line(i: usize, runs: usize, rec: &BootRecord) -> String {
    let mut msg = format!(
        "run {i}/{runs} {} {}: marker after {:.2} s, guest uptime {:.2} s",
        rec.side, rec.boot, rec.wall_to_marker_s, rec.status.uptime_s
    );
    for (k, (b, s)) in GUEST_BENCHES.iter().zip(&rec.samples).enumerate() {
        let mut ms: Vec<String> = s.iter().map(|v| format!("{:.0}", v / 1e6)).collect();
        if let Some(w) = rec.warmup.get(k) {
            ms.insert(0, format!("({:.0})", w / 1e6));
        }
        if !ms.is_empty() {
            let _ = write!(msg, "; {} {} ms", b.name, ms.join("/"));
        }
    }
    if let Some(e) = rec.exits {
        let _ = write!(msg, "; {e} exits");
    }
    let _ = write!(msg, " (log: {})", rec.log.display());
    msg
}

/// The two sides in the order run `i` (1-based) starts them: Ferrovisor first in
/// odd runs, bare QEMU first in even ones.
pub fn side_order(i: usize) -> [Side; 2] {
    if i % 2 == 1 {
        [Side::Ferrovisor, Side::Bare]
    } else {
        [Side::Bare, Side::Ferrovisor]
    }
}

/// Runs the whole Linux benchmark; `progress` gets one line per QEMU run.
///
/// Each run: the console boots of the two sides one after the other (each
/// powered off before the next starts); then the quiet boots, the second
/// started once the first waits at its shell prompt, and the benchmarks
/// alternating between the two guests (each benchmark runs on one side, then
/// at once on the other, so that both see the same moment of a noisy host; the
/// idle guest meanwhile costs next to nothing).
pub fn run(opts: &Options, progress: &mut dyn FnMut(&str)) -> Result<Report, BenchError> {
    setup(opts)?;
    let load_before = host_load();
    let pkg_console = package_for(opts, Boot::Console)?;
    let pkg_quiet = package_for(opts, Boot::Quiet)?;
    let config = |side: Side, boot: Boot| {
        let pkg = match boot {
            Boot::Console => &pkg_console,
            Boot::Quiet => &pkg_quiet,
        };
        qemu_config(opts, side, boot, pkg)
    };
    let log_for = |side: Side, boot: Boot, i: usize| {
        let tag = match side {
            Side::Ferrovisor => "ferrovisor",
            Side::Bare => "bare",
        };
        opts.log_dir.join(format!("{tag}-{}-{i}.log", boot.tag()))
    };

    let mut records: Vec<BootRecord> = Vec::new();
    for i in 1..=opts.runs {
        let order = side_order(i);
        for side in order {
            let boot = Boot::Console;
            let s = Session::boot(
                opts,
                side,
                boot,
                &config(side, boot),
                &log_for(side, boot, i),
            )?;
            let rec = s.finish(0, false)?;
            progress(&progress_line(i, opts.runs, &rec));
            records.push(rec);
        }
        let boot = Boot::Quiet;
        let mut pair = Vec::with_capacity(2);
        for side in order {
            pair.push(Session::boot(
                opts,
                side,
                boot,
                &config(side, boot),
                &log_for(side, boot, i),
            )?);
        }
        for s in &mut pair {
            s.define_functions()?;
        }
        if opts.warmup {
            for b in GUEST_BENCHES {
                let name = format!("{WARMUP_PREFIX}{}", b.name);
                for s in &mut pair {
                    s.bench(b, &name)?;
                }
            }
        }
        for rep in 0..opts.reps {
            // Which side goes first alternates between repetitions, too.
            let turns = if rep % 2 == 0 { [0, 1] } else { [1, 0] };
            for b in GUEST_BENCHES {
                for k in turns {
                    if let Some(s) = pair.get_mut(k) {
                        s.bench(b, b.name)?;
                    }
                }
            }
        }
        for s in pair {
            let rec = s.finish(opts.reps, opts.warmup)?;
            progress(&progress_line(i, opts.runs, &rec));
            records.push(rec);
        }
    }
    let mut r = report(opts, &records, |side, boot| {
        config(side, boot).command_line()
    })?;
    r.host_load = [load_before, host_load()];
    Ok(r)
}

fn report(
    opts: &Options,
    records: &[BootRecord],
    command: impl Fn(Side, Boot) -> String,
) -> Result<Report, BenchError> {
    let select = |side: Side, boot: Boot| -> Vec<&BootRecord> {
        records
            .iter()
            .filter(|r| r.side == side && r.boot == boot)
            .collect()
    };
    let col = |recs: &[&BootRecord], f: &dyn Fn(&BootRecord) -> f64| -> Vec<f64> {
        recs.iter().map(|r| f(r)).collect()
    };
    let mut rows = Vec::new();
    for boot in [Boot::Console, Boot::Quiet] {
        let (f, b) = (select(Side::Ferrovisor, boot), select(Side::Bare, boot));
        rows.push(Row::new(
            format!("boot_wall_{}", boot.tag()),
            format!("boot to {READY_MARKER}, wall time from QEMU's start ({boot})"),
            "s",
            stat(&col(&f, &|r| r.wall_to_marker_s), "wall time to the marker")?,
            stat(&col(&b, &|r| r.wall_to_marker_s), "wall time to the marker")?,
            boot.target(),
        ));
        rows.push(Row::new(
            format!("boot_uptime_{}", boot.tag()),
            format!("boot to {READY_MARKER}, the guest's uptime ({boot})"),
            "s",
            stat(&col(&f, &|r| r.status.uptime_s), "the guest's uptime")?,
            stat(&col(&b, &|r| r.status.uptime_s), "the guest's uptime")?,
            boot.target(),
        ));
    }
    for (k, bench) in GUEST_BENCHES.iter().enumerate() {
        let pool = |side: Side| -> Vec<f64> {
            select(side, Boot::Quiet)
                .iter()
                .flat_map(|r| r.samples.get(k).cloned().unwrap_or_default())
                .map(|ns| ns / 1e6)
                .collect()
        };
        let mut row = Row::new(
            bench.name,
            bench.what,
            "ms",
            stat(&pool(Side::Ferrovisor), bench.name)?,
            stat(&pool(Side::Bare), bench.name)?,
            if opts.icount {
                ICOUNT_LOOP_TARGET
            } else {
                bench.target
            },
        );
        let warm = |side: Side| -> Vec<f64> {
            select(side, Boot::Quiet)
                .iter()
                .filter_map(|r| r.warmup.get(k).map(|ns| ns / 1e6))
                .collect()
        };
        row.warmup = Stat::of(&warm(Side::Ferrovisor)).zip(Stat::of(&warm(Side::Bare)));
        rows.push(row);
    }

    let fv_all: Vec<&BootRecord> = records
        .iter()
        .filter(|r| r.side == Side::Ferrovisor)
        .collect();
    let first: Vec<f64> = fv_all.iter().filter_map(|r| r.first_entry_us).collect();
    let exits = |boot: Boot| {
        let recs = select(Side::Ferrovisor, boot);
        let e: Vec<f64> = recs.iter().filter_map(|r| r.exits).collect();
        (e.len() == recs.len()).then(|| Stat::of(&e)).flatten()
    };
    let kinds = |boot: Boot| -> Vec<(String, Stat)> {
        let recs = select(Side::Ferrovisor, boot);
        let mut names: Vec<&str> = Vec::new();
        for r in &recs {
            for (k, _) in &r.exit_kinds {
                if !names.contains(&k.as_str()) {
                    names.push(k);
                }
            }
        }
        names
            .iter()
            .filter_map(|name| {
                let v: Vec<f64> = recs
                    .iter()
                    .map(|r| {
                        r.exit_kinds
                            .iter()
                            .find(|(k, _)| k == name)
                            .map_or(0.0, |(_, n)| *n as f64)
                    })
                    .collect();
                Stat::of(&v).map(|s| (name.to_string(), s))
            })
            .collect()
    };
    let release = records
        .first()
        .map(|r| r.status.release.clone())
        .unwrap_or_default();
    if let Some(other) = records.iter().find(|r| r.status.release != release) {
        return Err(BenchError::Inconsistent(format!(
            "kernel {} in {} but {release} elsewhere",
            other.status.release,
            other.log.display()
        )));
    }
    Ok(Report {
        date: utc_date(SystemTime::now()),
        runs: opts.runs,
        reps: opts.reps,
        qemu_version: qemu_version(Path::new(crate::qemu::QEMU_RISCV64)),
        release,
        options: opts.clone(),
        commands: [
            command(Side::Ferrovisor, Boot::Console),
            command(Side::Ferrovisor, Boot::Quiet),
            command(Side::Bare, Boot::Console),
            command(Side::Bare, Boot::Quiet),
        ],
        rows,
        first_entry_us: stat(&first, "first guest entry")?,
        exits_console: exits(Boot::Console),
        exits_quiet: exits(Boot::Quiet),
        exit_kinds_console: kinds(Boot::Console),
        exit_kinds_quiet: kinds(Boot::Quiet),
        logs: records.iter().map(|r| r.log.clone()).collect(),
        host_load: [None, None],
    })
}

// ---------------------------------------------------------------------------
// Output.

fn verdict(row: &Row, decimals: usize) -> String {
    match (row.met(), row.ratio) {
        (Some(true), _) => "yes".into(),
        (Some(false), Some(r)) => format!(
            "NO, by {:.decimals$}× ({:.prec$}% over)",
            r - row.target,
            (r / row.target - 1.0) * 100.0,
            prec = decimals.saturating_sub(2)
        ),
        _ => "n/a".into(),
    }
}

/// The report as a human-readable table.
pub fn render(r: &Report) -> String {
    let mut o = String::new();
    let w = &mut o;
    let opts = &r.options;
    let _ = writeln!(
        w,
        "ferrovisor bench --linux, {}: {} run(s) per side, alternating; {}",
        r.date,
        r.runs,
        r.qemu_version
            .as_deref()
            .unwrap_or("QEMU (version unknown)")
    );
    let _ = writeln!(
        w,
        "guest: Linux {} ({}) + {}, {} vCPU(s), {} MiB",
        r.release,
        opts.kernel.display(),
        opts.initrd.display(),
        opts.cpus,
        opts.guest_memory_bytes / MIB
    );
    let _ = writeln!(
        w,
        "Ferrovisor: -smp {} -m {}M with the guest as its one VM; bare QEMU: -smp {} -m {}M",
        opts.cpus,
        opts.machine_memory_bytes / MIB,
        opts.cpus,
        opts.guest_memory_bytes / MIB
    );
    if opts.icount {
        let _ = writeln!(
            w,
            "{}: uptime and in-guest figures are instruction counts (ns = instructions), wall times stay wall times",
            icount_note()
        );
    }
    let _ = writeln!(
        w,
        "in-guest benchmarks: after the quiet boot, {}{} repetition(s) each per boot, timed by the guest's clock;\nmedian over runs (× repetitions)  [min–max]; ratio = ferrovisor median / bare median\n",
        if opts.warmup { "a warm-up run and " } else { "" },
        r.reps
    );
    let _ = writeln!(
        w,
        "   {:<19} {:>4}  {:>22}  {:>22}  {:>6}  {:>7}  {:>7}  met? (by the ratio of medians)",
        "figure", "unit", "ferrovisor", "bare QEMU", "ratio", "of min", "target"
    );
    // Instruction counts repeat exactly: show them (and their ratios) to the
    // digits that the 1.001× target needs.
    let rd = if opts.icount { 4 } else { 2 };
    for row in &r.rows {
        let decimals = match (row.unit == "s", opts.icount) {
            (true, true) => 4,
            (true, false) => 2,
            (false, true) => 3,
            (false, false) => 0,
        };
        let _ = writeln!(
            w,
            "   {:<19} {:>4}  {:>22}  {:>22}  {:>6}  {:>7}  {:>7}  {}",
            row.key,
            row.unit,
            fixed(&row.ferrovisor, decimals),
            fixed(&row.bare, decimals),
            times_to(row.ratio, rd),
            times_to(row.ratio_of_minima, rd),
            format!("≤{:.prec$}×", row.target, prec = rd.max(3) - 1),
            verdict(row, rd)
        );
    }
    let (met, judged) = r.targets_met();
    let _ = writeln!(w, "   targets met: {met} of {judged}");
    let warm: Vec<&Row> = r.rows.iter().filter(|row| row.warmup.is_some()).collect();
    if !warm.is_empty() {
        let _ = writeln!(
            w,
            "\n   warm-up runs (each benchmark's first run in a fresh guest, not counted above):"
        );
        for row in warm {
            if let Some((f, b)) = &row.warmup {
                let _ = writeln!(
                    w,
                    "   {:<19} {:>4}  {:>22}  {:>22}  {:>6}",
                    row.key,
                    row.unit,
                    fixed(f, 0),
                    fixed(b, 0),
                    times(ratio(f.median, b.median))
                );
            }
        }
    }
    let _ = writeln!(w, "\n   what each figure is:");
    for row in &r.rows {
        let _ = writeln!(w, "   {:<19} {}", row.key, row.what);
    }
    let _ = writeln!(
        w,
        "\nHypervisor's first instruction → first guest instruction: {} ms",
        spread_scaled(&r.first_entry_us, 1e-3, 1)
    );
    let exits = |s: &Option<Stat>| s.as_ref().map_or("n/a".into(), |s| spread(s, 0));
    let kinds = |k: &[(String, Stat)]| -> String {
        if k.is_empty() {
            return String::new();
        }
        let parts: Vec<String> = k
            .iter()
            .map(|(name, s)| format!("{name} {}", num(s.median, 0)))
            .collect();
        format!("\n      by reason (medians): {}", parts.join(", "))
    };
    let _ = writeln!(
        w,
        "Guest exits per Ferrovisor run:\n   console boot, shell, poweroff: {}{}\n   quiet boot, benchmarks (typed in, output echoed), poweroff: {}{}",
        exits(&r.exits_console),
        kinds(&r.exit_kinds_console),
        exits(&r.exits_quiet),
        kinds(&r.exit_kinds_quiet)
    );
    let load = |l: &Option<String>| l.clone().unwrap_or_else(|| "unknown".into());
    let _ = writeln!(
        w,
        "Host load average (1/5/15 min): {} before, {} after",
        load(&r.host_load[0]),
        load(&r.host_load[1])
    );
    let _ = writeln!(w, "\ncommands:");
    let labels = [
        "ferrovisor console",
        "ferrovisor quiet",
        "bare console",
        "bare quiet",
    ];
    for (l, c) in labels.iter().zip(&r.commands) {
        let _ = writeln!(w, "   {l:<18} {c}");
    }
    if let Some(dir) = r.logs.first().and_then(|l| l.parent()) {
        let _ = writeln!(w, "logs: {}", dir.display());
    }
    o
}

/// `median [min–max]` with `decimals` places throughout, or just the median when
/// every value agreed.
fn fixed(s: &Stat, decimals: usize) -> String {
    if s.is_constant() {
        format!("{:.decimals$}", s.median)
    } else {
        format!(
            "{:.decimals$} [{:.decimals$}–{:.decimals$}]",
            s.median, s.min, s.max
        )
    }
}

fn spread_scaled(s: &Stat, k: f64, decimals: usize) -> String {
    let scaled = Stat::of(&s.runs.iter().map(|v| v * k).collect::<Vec<_>>());
    scaled.map_or_else(|| "n/a".into(), |s| spread(&s, decimals))
}

fn stat_json(s: &Stat) -> Json {
    Json::obj([
        ("median", Json::Num(s.median)),
        ("min", Json::Num(s.min)),
        ("max", Json::Num(s.max)),
        (
            "runs",
            Json::Arr(s.runs.iter().map(|&v| Json::Num(v)).collect()),
        ),
    ])
}

fn kinds_json(k: &[(String, Stat)]) -> Json {
    Json::Obj(k.iter().map(|(n, s)| (n.clone(), stat_json(s))).collect())
}

/// The report as JSON (every figure with every run's value, targets, commands,
/// logs).
pub fn to_json(r: &Report) -> Json {
    let o = &r.options;
    let (met, judged) = r.targets_met();
    let command_of = |key: &str| {
        GUEST_BENCHES
            .iter()
            .find(|b| b.name == key)
            .map_or(Json::Null, |b| Json::str(b.command))
    };
    Json::obj([
        ("date", Json::str(r.date.clone())),
        ("runs_per_side", Json::Num(r.runs as f64)),
        ("repetitions_per_boot", Json::Num(r.reps as f64)),
        ("warmup_run_per_boot", Json::Bool(o.warmup)),
        ("icount", Json::Bool(o.icount)),
        (
            "qemu_version",
            r.qemu_version.clone().map_or(Json::Null, Json::Str),
        ),
        (
            "guest",
            Json::obj([
                ("kernel", Json::str(o.kernel.display().to_string())),
                ("release", Json::str(r.release.clone())),
                ("initrd", Json::str(o.initrd.display().to_string())),
                ("vcpus", Json::Num(f64::from(o.cpus))),
                ("memory_bytes", Json::Num(o.guest_memory_bytes as f64)),
            ]),
        ),
        (
            "machines",
            Json::obj([
                (
                    "ferrovisor",
                    Json::obj([
                        ("cpus", Json::Num(f64::from(o.cpus))),
                        ("memory_bytes", Json::Num(o.machine_memory_bytes as f64)),
                    ]),
                ),
                (
                    "bare",
                    Json::obj([
                        ("cpus", Json::Num(f64::from(o.cpus))),
                        ("memory_bytes", Json::Num(o.guest_memory_bytes as f64)),
                    ]),
                ),
            ]),
        ),
        (
            "commands",
            Json::obj([
                ("ferrovisor_console", Json::str(r.commands[0].clone())),
                ("ferrovisor_quiet", Json::str(r.commands[1].clone())),
                ("bare_console", Json::str(r.commands[2].clone())),
                ("bare_quiet", Json::str(r.commands[3].clone())),
            ]),
        ),
        (
            "figures",
            Json::Arr(
                r.rows
                    .iter()
                    .map(|row| {
                        Json::obj([
                            ("name", Json::str(row.key.clone())),
                            ("what", Json::str(row.what.clone())),
                            ("guest_command", command_of(&row.key)),
                            ("unit", Json::str(row.unit)),
                            ("ferrovisor", stat_json(&row.ferrovisor)),
                            ("bare", stat_json(&row.bare)),
                            ("ratio", Json::opt(row.ratio)),
                            ("ratio_of_minima", Json::opt(row.ratio_of_minima)),
                            (
                                "warmup",
                                row.warmup.as_ref().map_or(Json::Null, |(f, b)| {
                                    Json::obj([
                                        ("ferrovisor", stat_json(f)),
                                        ("bare", stat_json(b)),
                                    ])
                                }),
                            ),
                            ("target", Json::Num(row.target)),
                            ("target_met", row.met().map_or(Json::Null, Json::Bool)),
                        ])
                    })
                    .collect(),
            ),
        ),
        ("targets_met", Json::Num(met as f64)),
        ("targets_judged", Json::Num(judged as f64)),
        (
            "hypervisor",
            Json::obj([
                ("first_guest_entry_us", stat_json(&r.first_entry_us)),
                (
                    "exits_console_run",
                    r.exits_console.as_ref().map_or(Json::Null, stat_json),
                ),
                (
                    "exits_quiet_run_with_benchmarks",
                    r.exits_quiet.as_ref().map_or(Json::Null, stat_json),
                ),
                (
                    "exits_by_reason_console_run",
                    kinds_json(&r.exit_kinds_console),
                ),
                ("exits_by_reason_quiet_run", kinds_json(&r.exit_kinds_quiet)),
            ]),
        ),
        (
            "host_load_average",
            Json::obj([
                (
                    "before",
                    r.host_load[0].clone().map_or(Json::Null, Json::Str),
                ),
                (
                    "after",
                    r.host_load[1].clone().map_or(Json::Null, Json::Str),
                ),
            ]),
        ),
        ("logs", crate::bench::logs_json(&r.logs)),
    ])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    fn s(v: &[f64]) -> Stat {
        Stat::of(v).unwrap()
    }

    fn sample_report() -> Report {
        let mut rows = vec![
            Row::new(
                "boot_wall_console",
                "boot wall",
                "s",
                s(&[6.8, 7.0, 6.9]),
                s(&[6.7, 6.75, 6.8]),
                BOOT_TARGET,
            ),
            Row::new(
                "boot_uptime_quiet",
                "uptime",
                "s",
                s(&[4.9, 5.2, 5.0]),
                s(&[4.0, 4.0, 4.0]),
                BOOT_TARGET,
            ),
        ];
        let mut cpu = Row::new(
            "cpu_loop",
            GUEST_BENCHES[0].what,
            "ms",
            s(&[1010.0, 1020.0, 1000.0]),
            s(&[1000.0]),
            1.03,
        );
        cpu.warmup = Some((s(&[1500.0]), s(&[1200.0])));
        rows.push(cpu);
        Report {
            date: "2026-11-21".into(),
            runs: 3,
            reps: 1,
            qemu_version: Some("QEMU emulator version 10.0.2".into()),
            release: "6.12.107+deb13-riscv64".into(),
            options: Options::new(),
            commands: ["a".into(), "b".into(), "c".into(), "d".into()],
            rows,
            first_entry_us: s(&[337_518.0]),
            exits_console: Some(s(&[28_104.0])),
            exits_quiet: None,
            exit_kinds_console: vec![("mmio-write".into(), s(&[12_000.0]))],
            exit_kinds_quiet: vec![],
            logs: vec!["target/bench-logs/linux/ferrovisor-console-1.log".into()],
            host_load: [Some("0.50 0.40 0.30".into()), None],
        }
    }

    #[test]
    fn targets_and_verdicts() {
        let r = sample_report();
        let wall = r.row("boot_wall_console").unwrap();
        assert_eq!(wall.ratio, Some(6.9 / 6.75));
        assert_eq!(wall.met(), Some(true));
        let up = r.row("boot_uptime_quiet").unwrap();
        assert_eq!(up.met(), Some(false));
        // 1.25 vs 1.15: 0.10× over, 9 % over.
        assert_eq!(up.ratio, Some(1.25));
        assert_eq!(verdict(up, 2), "NO, by 0.10× (9% over)");
        assert_eq!(r.targets_met(), (2, 3));
        let none = Row::new("x", "x", "s", s(&[1.0]), s(&[0.0]), 1.0);
        assert_eq!(none.met(), None);
        assert_eq!(verdict(&none, 2), "n/a");
    }

    #[test]
    fn table() {
        let t = render(&sample_report());
        let line = t
            .lines()
            .find(|l| l.trim_start().starts_with("boot_uptime_quiet"))
            .unwrap();
        assert!(line.contains("5.00 [4.90–5.20]"), "{line}");
        assert!(line.contains(" 4.00 "), "{line}");
        assert!(
            line.contains(" 1.25× ") && line.contains(" 1.23× "),
            "{line}"
        );
        assert!(line.contains("≤1.15×"), "{line}");
        assert!(line.contains("NO, by"), "{line}");
        let cpu = t
            .lines()
            .find(|l| l.trim_start().starts_with("cpu_loop"))
            .unwrap();
        assert!(
            cpu.contains("1010 [1000–1020]") && cpu.contains("yes"),
            "{cpu}"
        );
        assert!(t.contains("targets met: 2 of 3"), "{t}");
        let warm = t
            .lines()
            .skip_while(|l| !l.contains("warm-up runs"))
            .nth(1)
            .unwrap();
        assert!(
            warm.contains("cpu_loop") && warm.contains("1500") && warm.contains("1.25×"),
            "{warm}"
        );
        assert!(t.contains("first guest instruction: 337.5 ms"), "{t}");
        assert!(t.contains("console boot, shell, poweroff: 28104"), "{t}");
        assert!(t.contains("by reason (medians): mmio-write 12000"), "{t}");
        assert!(t.contains("poweroff: n/a"), "{t}");
        assert!(
            t.contains("(1/5/15 min): 0.50 0.40 0.30 before, unknown after"),
            "{t}"
        );
    }

    #[test]
    fn json_has_every_figure_and_target() {
        let j = to_json(&sample_report()).pretty();
        for key in [
            "\"boot_wall_console\"",
            "\"boot_uptime_quiet\"",
            "\"cpu_loop\"",
            "\"guest_command\": \"fvc 20000\"",
            "\"target\": 1.15",
            "\"target_met\": false",
            "\"warmup_run_per_boot\": true",
            "\"exits_by_reason_console_run\": {",
            "\"mmio-write\": {",
            "\"warmup\": null",
            "\"target_met\": true",
            "\"targets_met\": 2",
            "\"runs\": [6.8, 7, 6.9]",
            "\"exits_quiet_run_with_benchmarks\": null",
            "\"ratio_of_minima\": 1.225",
            "\"before\": \"0.50 0.40 0.30\"",
            "\"release\": \"6.12.107+deb13-riscv64\"",
        ] {
            assert!(j.contains(key), "{key} missing in {j}");
        }
    }

    #[test]
    fn boots_and_machines() {
        let o = Options::new();
        assert_eq!(Boot::Console.command_line(), "console=ttyS0");
        assert_eq!(Boot::Quiet.command_line(), "console=ttyS0 quiet");
        assert_eq!(o.ferrovisor_machine().memory_bytes, 1024 * MIB);
        assert_eq!(o.bare_machine().memory_bytes, 512 * MIB);
        assert_eq!(o.bare_machine().cpus, 2);
        let pkg = Path::new("p.fvpkg");
        let bare = qemu_config(&o, Side::Bare, Boot::Quiet, pkg).args();
        assert_eq!(bare[bare.len() - 2..], ["-append", "console=ttyS0 quiet"]);
        assert!(bare.contains(&"512M".to_string()));
        assert!(bare.contains(&o.initrd.display().to_string()));
        let fv = qemu_config(&o, Side::Ferrovisor, Boot::Quiet, pkg).args();
        assert!(fv.contains(&"1024M".to_string()));
        assert!(fv.contains(&"p.fvpkg".to_string()));
        assert!(!fv.contains(&"-append".to_string()));
        assert!(!fv.iter().any(|a| a == "-icount"));
        assert!(!bare.iter().any(|a| a == "-icount"));
    }

    #[test]
    fn icount_mode_runs_both_sides_counting_instructions() {
        let o = Options {
            icount: true,
            ..Options::new()
        };
        let pkg = Path::new("p.fvpkg");
        for side in [Side::Ferrovisor, Side::Bare] {
            for boot in [Boot::Console, Boot::Quiet] {
                let a = qemu_config(&o, side, boot, pkg).args();
                let at = a.iter().position(|x| x == "-icount").unwrap();
                assert_eq!(a[at + 1], "shift=0,sleep=off", "{side} {boot}");
            }
        }
        // The bare side still gets its command line.
        let bare = qemu_config(&o, Side::Bare, Boot::Quiet, pkg).args();
        assert!(bare.contains(&"console=ttyS0 quiet".to_string()));
    }

    #[test]
    fn guest_script_is_what_the_parser_reads() {
        // The typed commands never contain a result line's text.
        for line in GUEST_SETUP {
            assert!(!line.contains("BENCH:"), "{line}");
        }
        assert!(GUEST_SETUP[1].contains(r"echo BEN\CH: $n $((T-s)) ns"));
        assert!(GUEST_SETUP[1].contains(parse::FAILED_SUFFIX));
        let names: Vec<&str> = GUEST_BENCHES.iter().map(|b| b.name).collect();
        assert_eq!(
            names,
            ["cpu_loop", "syscall_loop", "pages_tmpfs", "pages_anon"]
        );
        for b in GUEST_BENCHES {
            assert!(!b.name.contains(' ') && !b.command.contains("BENCH"));
        }
    }

    #[test]
    fn benchmark_command_lines() {
        let tmpfs = GUEST_BENCHES
            .iter()
            .find(|b| b.name == "pages_tmpfs")
            .unwrap();
        assert_eq!(
            command_line(tmpfs, "warmup_pages_tmpfs"),
            "fvb warmup_pages_tmpfs dd if=/dev/zero of=/tmp/fvx bs=1M count=32 2>/tmp/fv.err; cat /tmp/fv.err; rm -f /tmp/fvx\n"
        );
        assert_eq!(
            command_line(&GUEST_BENCHES[0], "cpu_loop"),
            "fvb cpu_loop fvc 20000 2>/tmp/fv.err; cat /tmp/fv.err\n"
        );
    }

    #[test]
    fn has_result_sees_only_new_lines_of_the_right_vm() {
        let mk = |t: &str| Line {
            at: Duration::ZERO,
            text: t.to_string(),
        };
        let lines = vec![
            mk("[linux] BENCH: cpu_loop 5 ns"),
            mk("[linux] guest:~# fvb cpu_loop fvc 20000"),
            mk("[other] BENCH: pages_anon 5 ns"),
            mk("[linux] BENCH: syscall_loop-FAILED 7 ns"),
        ];
        assert!(has_result(&lines, Some("linux"), "cpu_loop"));
        assert!(!has_result(&lines[1..], Some("linux"), "cpu_loop"));
        assert!(!has_result(&lines, Some("linux"), "pages_anon"));
        assert!(has_result(&lines[1..], Some("linux"), "syscall_loop"));
        assert!(!has_result(&lines, None, "cpu_loop"));
    }

    fn record(
        side: Side,
        boot: Boot,
        wall: f64,
        uptime: f64,
        samples: Vec<Vec<f64>>,
    ) -> BootRecord {
        BootRecord {
            side,
            boot,
            wall_to_marker_s: wall,
            status: BootStatus {
                release: "6.12".into(),
                cpus: 2,
                uptime_s: uptime,
                marker_index: 0,
            },
            warmup: if boot == Boot::Quiet {
                vec![1e9; GUEST_BENCHES.len()]
            } else {
                vec![]
            },
            samples,
            first_entry_us: (side == Side::Ferrovisor).then_some(300_000.0),
            exits: (side == Side::Ferrovisor).then_some(if boot == Boot::Quiet {
                18_000.0
            } else {
                29_000.0
            }),
            exit_kinds: if side == Side::Ferrovisor {
                vec![("wfi".into(), 7), ("sbi".into(), 3)]
            } else {
                vec![]
            },
            log: format!("{side}-{boot}.log").into(),
        }
    }

    #[test]
    fn report_pools_runs_and_repetitions_per_side() {
        let ms = |v: &[f64]| v.iter().map(|x| x * 1e6).collect::<Vec<f64>>();
        let quiet = |side, wall, a: &[f64], b: &[f64], c: &[f64], d: &[f64]| {
            record(
                side,
                Boot::Quiet,
                wall,
                wall - 2.0,
                vec![ms(a), ms(b), ms(c), ms(d)],
            )
        };
        let records = vec![
            record(Side::Ferrovisor, Boot::Console, 7.0, 5.0, vec![]),
            record(Side::Bare, Boot::Console, 6.5, 5.0, vec![]),
            quiet(
                Side::Ferrovisor,
                6.0,
                &[100.0, 110.0],
                &[50.0, 52.0],
                &[30.0, 40.0],
                &[20.0, 20.0],
            ),
            quiet(
                Side::Bare,
                5.5,
                &[100.0, 90.0],
                &[50.0, 50.0],
                &[20.0, 20.0],
                &[20.0, 22.0],
            ),
            record(Side::Bare, Boot::Console, 6.7, 5.2, vec![]),
            record(Side::Ferrovisor, Boot::Console, 7.4, 5.1, vec![]),
            quiet(
                Side::Bare,
                5.6,
                &[95.0, 100.0],
                &[48.0, 49.0],
                &[20.0, 20.0],
                &[21.0, 20.0],
            ),
            quiet(
                Side::Ferrovisor,
                6.2,
                &[105.0, 100.0],
                &[51.0, 50.0],
                &[35.0, 30.0],
                &[21.0, 20.0],
            ),
        ];
        let o = Options {
            runs: 2,
            reps: 2,
            ..Options::new()
        };
        let r = report(&o, &records, |side, boot| format!("{side} {boot}")).unwrap();
        let wall = r.row("boot_wall_console").unwrap();
        assert_eq!(wall.target, CONSOLE_BOOT_TARGET);
        assert_eq!(r.row("boot_wall_quiet").unwrap().target, BOOT_TARGET);
        assert_eq!(wall.ferrovisor.runs, vec![7.0, 7.4]);
        assert_eq!(wall.bare.runs, vec![6.5, 6.7]);
        assert_eq!(wall.ratio, Some(7.2 / 6.6));
        let up = r.row("boot_uptime_quiet").unwrap();
        assert_eq!(up.ferrovisor.runs, vec![4.0, 4.2]);
        let cpu = r.row("cpu_loop").unwrap();
        assert_eq!(cpu.ferrovisor.runs, vec![100.0, 110.0, 105.0, 100.0]);
        assert_eq!(cpu.ferrovisor.median, 102.5);
        assert_eq!(cpu.bare.median, 97.5);
        assert_eq!(cpu.unit, "ms");
        let tmpfs = r.row("pages_tmpfs").unwrap();
        assert_eq!(tmpfs.ratio, Some(32.5 / 20.0));
        assert_eq!(tmpfs.ratio_of_minima, Some(1.5));
        assert_eq!(tmpfs.met(), Some(false));
        let (wf, wb) = tmpfs.warmup.as_ref().unwrap();
        assert_eq!((wf.runs.len(), wb.median), (2, 1000.0));
        assert!(r.row("boot_wall_quiet").unwrap().warmup.is_none());
        assert_eq!(r.rows.len(), 4 + GUEST_BENCHES.len());
        assert_eq!(r.exits_console.as_ref().unwrap().median, 29_000.0);
        assert_eq!(r.exits_quiet.as_ref().unwrap().median, 18_000.0);
        assert_eq!(r.exit_kinds_quiet.len(), 2);
        assert_eq!(r.exit_kinds_quiet[0].0, "wfi");
        assert_eq!(r.exit_kinds_quiet[0].1.runs, vec![7.0, 7.0]);
        assert_eq!(r.first_entry_us.runs.len(), 4);
        assert_eq!(r.commands[3], "bare QEMU console=ttyS0 quiet");
        assert_eq!(r.logs.len(), records.len());

        // A different kernel on one run is an error.
        let mut odd = records.clone();
        odd[3].status.release = "6.1".into();
        let e = report(&o, &odd, |_, _| String::new()).unwrap_err();
        assert!(matches!(e, BenchError::Inconsistent(_)), "{e}");

        // Under -icount the loops are judged against the instruction-count
        // target, the boots keep theirs.
        let oi = Options { icount: true, ..o };
        let ri = report(&oi, &records, |_, _| String::new()).unwrap();
        assert_eq!(ri.row("cpu_loop").unwrap().target, ICOUNT_LOOP_TARGET);
        assert_eq!(ri.row("boot_wall_quiet").unwrap().target, BOOT_TARGET);
        assert!(render(&ri).contains("-icount shift=0,sleep=off"));
        assert!(render(&ri).contains(&times_to(ri.row("cpu_loop").unwrap().ratio, 4)));
        assert!(!render(&r).contains("-icount"));
    }

    #[test]
    fn sides_alternate_which_goes_first() {
        assert_eq!(side_order(1), [Side::Ferrovisor, Side::Bare]);
        assert_eq!(side_order(2), [Side::Bare, Side::Ferrovisor]);
        assert_eq!(side_order(3), side_order(1));
    }

    #[test]
    fn missing_kernel_says_how_to_fetch_it() {
        let dir = std::env::temp_dir().join(format!("fv-bench-linux-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let hv = dir.join("hv");
        fs::write(&hv, b"x").unwrap();
        let o = Options {
            hypervisor: hv,
            kernel: dir.join("no-Image"),
            initrd: dir.join("no-initrd"),
            log_dir: dir.join("logs"),
            ..Options::new()
        };
        let e = run(&o, &mut |_| {}).unwrap_err().to_string();
        assert!(e.contains("no-Image") && e.contains(FETCH_COMMAND), "{e}");
        let o = Options {
            hypervisor: dir.join("no-hv"),
            ..o
        };
        let e = run(&o, &mut |_| {}).unwrap_err().to_string();
        assert!(e.contains("no-hv") && e.contains("scripts/build.sh"), "{e}");
        let o = Options {
            runs: 0,
            ..Options::new()
        };
        assert!(run(&o, &mut |_| {}).is_err());
        let _ = fs::remove_dir_all(&dir);
    }
}
