//! `ferrovisor bench`: the same guest (bench-guest) under Ferrovisor and on bare
//! QEMU, side by side, in one invocation.
//!
//! Runs alternate (Ferrovisor, bare, Ferrovisor, bare, ...) so that slow phases of
//! a noisy machine hit both sides alike; every figure is the median over the runs
//! (of the guest's own per-run median where the guest reports one), and the two
//! sides are only ever compared with each other, never with fixed numbers.
//!
//! What is measured:
//! 1. bench-guest's `BENCH:` figures on both sides, and their ratio;
//! 2. the hypervisor's time from its first instruction to the first guest
//!    instruction (its own `first guest entry` line);
//! 3. the hypervisor image's size (from its ELF) and its memory per VM besides
//!    guest RAM (its `hypervisor overhead` and `heap in use` lines), with 1 VM and
//!    with several, for the growth per VM;
//! 4. the wall time of a whole QEMU run on both sides.
//!
//! [`linux`] does the same for the Debian Linux guest (`ferrovisor bench
//! --linux`): boot to userspace and loops run inside the guest. [`sched`]
//! (`ferrovisor bench --sched`) measures the vCPU scheduler: switch cost, time
//! slices, and many Linux VMs booting at once.
//!
//! Every run's serial log is kept under `target/bench-logs/`.

pub mod elf;
pub mod json;
pub mod linux;
pub mod parse;
pub mod sched;
pub mod stats;

use std::fmt::{self, Write as _};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::{self, Arch, Config, Machine, VmConfig};
use crate::qemu::{self, Control, QemuConfig, Stream};
use crate::testing::{self, Pattern};
use crate::{package, paths, ALL_VMS_STOPPED, MIB};

use elf::ImageSize;
use json::Json;
use parse::{FigureSpec, HypervisorFigures, LineError, VmReport, GUEST_FIGURES};
use stats::{ratio, Stat};

/// The guest binary's name (`target/riscv64gc-unknown-none-elf/release/<name>`).
pub const GUEST: &str = "bench-guest";
/// How to build the guest.
pub const GUEST_BUILD_COMMAND: &str = "scripts/build.sh  (or: cargo build --release --target riscv64gc-unknown-none-elf -p bench-guest)";
/// The VM's name in the single-VM runs (its lines come prefixed `[bench] `).
pub const VM_NAME: &str = "bench";
/// Where the logs (and boot packages) go, under the target directory.
pub const LOG_SUBDIR: &str = "bench-logs";

/// QEMU's deterministic instruction-count mode (`--icount`): guest time counts
/// executed instructions (one instruction = 1 ns of guest time, MTTCG off), and
/// with `sleep=off` an idle machine's clock jumps to the next timer instead of
/// following the host's, so figures the guest times with its own clock repeat
/// and their ratio is the hypervisor's instruction overhead, free of the
/// host's noise. It
/// hides what TCG itself pays in wall time for V=1 (TLB flushes, two-stage
/// walks): report it beside the wall-time figures, never instead of them.
pub const ICOUNT_ARGS: [&str; 2] = ["-icount", "shift=0,sleep=off"];

/// The line a report under [`ICOUNT_ARGS`] starts its table with.
pub fn icount_note() -> String {
    format!(
        "QEMU {}: guest time counts instructions (1 ns = 1 instruction, one host thread; idle time skipped); wall times are not comparable with a run without it",
        ICOUNT_ARGS.join(" ")
    )
}

/// `cfg` with [`ICOUNT_ARGS`] appended when `icount` is set.
pub fn with_icount(mut cfg: QemuConfig, icount: bool) -> QemuConfig {
    if icount {
        cfg.extra_args
            .extend(ICOUNT_ARGS.iter().map(|a| a.to_string()));
    }
    cfg
}

/// What to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Runs per side (≥ 1).
    pub runs: usize,
    /// The hypervisor ELF.
    pub hypervisor: PathBuf,
    /// The bench-guest ELF.
    pub guest: PathBuf,
    /// Limit on each QEMU run.
    pub timeout: Duration,
    /// Where logs and packages go.
    pub log_dir: PathBuf,
    /// QEMU `-smp`, the same on both sides.
    pub cpus: u32,
    /// The guest's RAM under Ferrovisor.
    pub vm_memory_bytes: u64,
    /// VMs in the run that shows memory growth per VM (≥ 2).
    pub multi_vms: usize,
    /// Run every QEMU under [`ICOUNT_ARGS`] (guest ticks count instructions).
    pub icount: bool,
}

impl Options {
    /// The defaults: 3 runs, the release builds in the target directory, 1 hart,
    /// a 256 MiB VM, 4 VMs for the growth run, logs in `target/bench-logs/`.
    pub fn new() -> Options {
        Options {
            runs: 3,
            hypervisor: paths::default_hypervisor(),
            guest: paths::bare_metal_binary(GUEST),
            timeout: Duration::from_secs(120),
            log_dir: paths::target_dir().join(LOG_SUBDIR),
            cpus: 1,
            vm_memory_bytes: 256 * MIB,
            multi_vms: 4,
            icount: false,
        }
    }

    /// The QEMU machine for `vms` VMs: `-smp` [`Options::cpus`], `-m` the VMs'
    /// RAM plus [`config::DEFAULT_HOST_OVERHEAD`]. Bare QEMU gets the same machine
    /// as the single-VM Ferrovisor runs.
    pub fn machine(&self, vms: usize) -> Machine {
        Machine {
            arch: Arch::Riscv64,
            cpus: self.cpus,
            memory_bytes: self
                .vm_memory_bytes
                .saturating_mul(vms as u64)
                .saturating_add(config::DEFAULT_HOST_OVERHEAD),
            cpu: None,
            options: None,
        }
    }
}

impl Default for Options {
    fn default() -> Self {
        Options::new()
    }
}

/// Which side of the comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The guest as a VM under Ferrovisor.
    Ferrovisor,
    /// The guest directly on QEMU with OpenSBI.
    Bare,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Ferrovisor => "ferrovisor",
            Side::Bare => "bare QEMU",
        })
    }
}

/// Why the benchmark did not produce figures.
#[derive(Clone, Debug)]
pub enum BenchError {
    /// Nothing ran: a binary is missing, the config or package could not be made,
    /// or the log directory could not be prepared.
    Setup(String),
    /// QEMU could not be started (or its log written).
    Launch {
        /// What went wrong.
        message: String,
        /// The log file.
        log: PathBuf,
    },
    /// A run did not end as it must: timeout, a failure line, no clean poweroff,
    /// no `all VMs stopped` or no `DONE:` line.
    Run {
        /// Which side.
        side: Side,
        /// What went wrong.
        problem: String,
        /// The log file.
        log: PathBuf,
    },
    /// A figure's line is missing or unreadable.
    Parse {
        /// Which side.
        side: Side,
        /// What is missing or wrong.
        error: LineError,
        /// The log file.
        log: PathBuf,
    },
    /// The two sides' figures cannot be compared (e.g. different timebases).
    Inconsistent(String),
}

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BenchError::Setup(m) => f.write_str(m),
            BenchError::Launch { message, log } => {
                write!(f, "{message} (log: {})", log.display())
            }
            BenchError::Run { side, problem, log } => {
                write!(f, "{side} run: {problem} (log: {})", log.display())
            }
            BenchError::Parse { side, error, log } => {
                write!(f, "{side} run: {error} (log: {})", log.display())
            }
            BenchError::Inconsistent(m) => write!(f, "figures not comparable: {m}"),
        }
    }
}

impl std::error::Error for BenchError {}

/// One bench-guest figure on both sides.
#[derive(Clone, Debug, PartialEq)]
pub struct GuestRow {
    /// Which figure.
    pub spec: FigureSpec,
    /// Under Ferrovisor: each run's value, median, range.
    pub ferrovisor: Stat,
    /// On bare QEMU.
    pub bare: Stat,
    /// Median under Ferrovisor / median on bare QEMU, for compared figures.
    pub ratio: Option<f64>,
}

/// What the hypervisor reported in the multi-VM run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MultiVm {
    /// Each VM's report.
    pub vms: Vec<VmReport>,
    /// Heap in use once all VMs were created, KiB.
    pub heap_kib: u64,
    /// Its log.
    pub log: PathBuf,
}

/// Everything one `ferrovisor bench` measured.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// UTC date of the run, `YYYY-MM-DD`.
    pub date: String,
    /// Runs per side.
    pub runs: usize,
    /// Whether QEMU ran under [`ICOUNT_ARGS`] (guest ticks count instructions).
    pub icount: bool,
    /// `qemu-system-riscv64 --version`'s first line, if it answered.
    pub qemu_version: Option<String>,
    /// The machine of the single-VM and bare runs.
    pub machine: Machine,
    /// The guest's RAM under Ferrovisor.
    pub vm_memory_bytes: u64,
    /// The hypervisor ELF.
    pub hypervisor: PathBuf,
    /// The guest ELF.
    pub guest: PathBuf,
    /// QEMU's command line under Ferrovisor.
    pub ferrovisor_command: String,
    /// QEMU's command line on bare QEMU.
    pub bare_command: String,
    /// bench-guest's figures, in [`GUEST_FIGURES`] order.
    pub guest_rows: Vec<GuestRow>,
    /// First guest entry, `time` ticks after the hypervisor's first instruction.
    pub first_entry_ticks: Stat,
    /// The same in µs (the hypervisor's conversion).
    pub first_entry_us: Stat,
    /// Guest exits handled per single-VM run, if the hypervisor printed it.
    pub exits: Option<Stat>,
    /// Wall time of a whole QEMU run under Ferrovisor, seconds.
    pub wall_ferrovisor_s: Stat,
    /// Wall time of a whole QEMU run on bare QEMU, seconds.
    pub wall_bare_s: Stat,
    /// The hypervisor image.
    pub image: ImageSize,
    /// Per-VM overhead (bytes) in the single-VM runs.
    pub one_vm_overhead_bytes: Stat,
    /// Heap in use (KiB) in the single-VM runs.
    pub one_vm_heap_kib: Stat,
    /// The multi-VM run.
    pub multi: MultiVm,
    /// Every log, in run order.
    pub logs: Vec<PathBuf>,
    /// Things the reader should know (figures that disagree between runs etc.).
    pub notes: Vec<String>,
}

impl Report {
    /// The row of guest figure `name`.
    pub fn row(&self, name: &str) -> Option<&GuestRow> {
        self.guest_rows.iter().find(|r| r.spec.name == name)
    }

    /// Wall time under Ferrovisor / on bare QEMU (medians).
    pub fn wall_ratio(&self) -> Option<f64> {
        ratio(self.wall_ferrovisor_s.median, self.wall_bare_s.median)
    }

    /// Heap growth per additional VM, KiB: (multi − single) / (VMs − 1).
    pub fn heap_per_vm_kib(&self) -> Option<f64> {
        let extra = self.multi.vms.len().checked_sub(1).filter(|&n| n > 0)?;
        Some((self.multi.heap_kib as f64 - self.one_vm_heap_kib.median) / extra as f64)
    }

    /// Median per-VM overhead in the multi-VM run, bytes.
    pub fn multi_overhead_median(&self) -> Option<f64> {
        let v: Vec<f64> = self
            .multi
            .vms
            .iter()
            .map(|v| v.overhead_bytes as f64)
            .collect();
        stats::median(&v)
    }
}

/// Serial output and wall time of one QEMU run that ended cleanly.
#[derive(Clone, Debug)]
pub(crate) struct RunRecord {
    pub(crate) lines: Vec<String>,
    pub(crate) elapsed: Duration,
    pub(crate) log: PathBuf,
}

/// After a failure line, keep logging this long (a trap dump spans several lines).
const FAILURE_GRACE: Duration = Duration::from_secs(1);

/// The `DONE:` line a test guest prints at its end (bench-guest's is
/// `DONE: bench-guest passed=<n> failed=<m>`; any guest's counts here, so that a
/// wrong guest is reported by the missing `BENCH:` lines it did not print).
const DONE: &str = "DONE: ";

/// Runs QEMU once and checks that the run ended as it must: no failure line, no
/// timeout, a clean poweroff, `vms` `DONE:` lines and, under the hypervisor,
/// `all VMs stopped`.
pub(crate) fn run_once(
    cfg: &QemuConfig,
    side: Side,
    vms: usize,
    timeout: Duration,
    log: &Path,
) -> Result<RunRecord, BenchError> {
    let failures = testing::standard_failure_patterns();
    let mut lines = Vec::new();
    let mut failure: Option<(String, Pattern)> = None;
    let outcome = qemu::run(cfg, timeout, log, |stream, line| {
        if stream != Stream::Serial {
            return Control::Continue;
        }
        lines.push(line.to_string());
        if failure.is_none() {
            if let Some(p) = failures.iter().find(|p| p.matches(line)) {
                failure = Some((line.to_string(), p.clone()));
                return Control::StopWithin(FAILURE_GRACE);
            }
        }
        Control::Continue
    })
    .map_err(|e| BenchError::Launch {
        message: e.to_string(),
        log: log.to_path_buf(),
    })?;
    let fail = |problem: String| BenchError::Run {
        side,
        problem,
        log: log.to_path_buf(),
    };
    if let Some((line, pattern)) = failure {
        return Err(fail(format!("failure line (matched {pattern}): `{line}`")));
    }
    if outcome.timed_out {
        return Err(fail(format!("timed out after {} s", timeout.as_secs_f64())));
    }
    if !outcome.clean_exit() {
        let status = outcome
            .status
            .map_or_else(|| "unknown status".into(), |s| s.to_string());
        let mut problem = format!("QEMU did not power off cleanly ({status})");
        for l in &outcome.stderr_tail {
            problem.push_str("\n    qemu: ");
            problem.push_str(l);
        }
        return Err(fail(problem));
    }
    if side == Side::Ferrovisor && !lines.iter().any(|l| l.contains(ALL_VMS_STOPPED)) {
        return Err(fail(format!("no `{ALL_VMS_STOPPED}` line")));
    }
    let done = lines
        .iter()
        .filter(|l| parse::split_vm_prefix(l).1.starts_with(DONE))
        .count();
    if done != vms {
        return Err(fail(format!("{done} `{DONE}…` line(s), expected {vms}")));
    }
    Ok(RunRecord {
        lines,
        elapsed: outcome.elapsed,
        log: log.to_path_buf(),
    })
}

fn vm(name: &str, opts: &Options) -> VmConfig {
    VmConfig {
        name: name.to_string(),
        vcpus: 1,
        memory_bytes: opts.vm_memory_bytes,
        kernel: opts.guest.clone(),
        kernel_format: crate::loader::FormatChoice::Auto,
        console: crate::config::ConsoleChoice::Uart,
        initrd: None,
        command_line: String::new(),
        weight: fv_bootpkg::DEFAULT_WEIGHT,
        pin: None,
    }
}

/// Builds the package of `vms` on `machine` and writes it to `dir/name`
/// (`origin` names the benchmark in config errors); returns its path.
pub(crate) fn write_package(
    origin: &str,
    machine: &Machine,
    vms: Vec<VmConfig>,
    dir: &Path,
    name: &str,
) -> Result<PathBuf, BenchError> {
    let cfg = Config::from_parts(Path::new(origin), machine.clone(), vms)
        .map_err(|e| BenchError::Setup(e.to_string()))?;
    let built = package::build(&cfg).map_err(|e| BenchError::Setup(format!("{e:#}")))?;
    let path = dir.join(name);
    package::write_atomically(&path, &built.bytes)
        .map_err(|e| BenchError::Setup(format!("{e:#}")))?;
    Ok(path)
}

/// `Ok` if `path` is a file; else a setup error naming it as `what` and saying
/// `how` to get it.
pub(crate) fn check_file(path: &Path, what: &str, how: &str) -> Result<(), BenchError> {
    if path.is_file() {
        Ok(())
    } else {
        Err(BenchError::Setup(format!(
            "{what} {} does not exist; {how}",
            path.display()
        )))
    }
}

/// Creates the log directory and removes the `*.log` and `*.fvpkg` files an
/// earlier run left there.
pub(crate) fn prepare_log_dir(dir: &Path) -> Result<(), BenchError> {
    fs::create_dir_all(dir)
        .map_err(|e| BenchError::Setup(format!("cannot create {}: {e}", dir.display())))?;
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if matches!(
                p.extension().and_then(|x| x.to_str()),
                Some("log" | "fvpkg")
            ) {
                let _ = fs::remove_file(&p);
            }
        }
    }
    Ok(())
}

/// Builds the package for `vms` copies of the guest and writes it to the log
/// directory; returns its path and the machine.
fn package_for(opts: &Options, vms: usize) -> Result<(PathBuf, Machine), BenchError> {
    let list: Vec<VmConfig> = if vms == 1 {
        vec![vm(VM_NAME, opts)]
    } else {
        (1..=vms)
            .map(|i| vm(&format!("{VM_NAME}-{i}"), opts))
            .collect()
    };
    let machine = opts.machine(vms);
    let path = write_package(
        "<ferrovisor bench>",
        &machine,
        list,
        &opts.log_dir,
        &format!("ferrovisor-{vms}vm.fvpkg"),
    )?;
    Ok((path, machine))
}

/// Checks both binaries exist (saying how to build a missing one) and prepares
/// the log directory (old `*.log` / `*.fvpkg` files in it are removed).
fn setup(opts: &Options) -> Result<(), BenchError> {
    if opts.runs == 0 {
        return Err(BenchError::Setup("--runs must be at least 1".into()));
    }
    if opts.multi_vms < 2 {
        return Err(BenchError::Setup(
            "the growth run needs at least 2 VMs".into(),
        ));
    }
    check_hypervisor(&opts.hypervisor)?;
    check_file(
        &opts.guest,
        "guest binary",
        &format!("build it with {GUEST_BUILD_COMMAND}"),
    )?;
    prepare_log_dir(&opts.log_dir)
}

fn parse_err(side: Side, log: &Path) -> impl Fn(LineError) -> BenchError + '_ {
    move |error| BenchError::Parse {
        side,
        error,
        log: log.to_path_buf(),
    }
}

fn stat(values: &[f64], what: &str) -> Result<Stat, BenchError> {
    Stat::of(values).ok_or_else(|| BenchError::Inconsistent(format!("no usable values of {what}")))
}

/// Runs the whole benchmark; `progress` gets one line per QEMU run.
pub fn run(opts: &Options, progress: &mut dyn FnMut(&str)) -> Result<Report, BenchError> {
    setup(opts)?;
    let image_bytes = fs::read(&opts.hypervisor).map_err(|e| {
        BenchError::Setup(format!("cannot read {}: {e}", opts.hypervisor.display()))
    })?;
    let image = elf::image_size(&image_bytes)
        .map_err(|e| BenchError::Setup(format!("hypervisor {}: {e}", opts.hypervisor.display())))?;
    let (pkg, machine) = package_for(opts, 1)?;
    let fv_cfg = with_icount(
        QemuConfig::new(&machine, &opts.hypervisor, Some(&pkg)),
        opts.icount,
    );
    let bare_cfg = with_icount(QemuConfig::new(&machine, &opts.guest, None), opts.icount);

    let mut fv_guest = Vec::new();
    let mut fv_hv: Vec<HypervisorFigures> = Vec::new();
    let mut bare_guest = Vec::new();
    let mut wall_fv = Vec::new();
    let mut wall_bare = Vec::new();
    let mut logs = Vec::new();
    for i in 1..=opts.runs {
        for (side, cfg) in [(Side::Ferrovisor, &fv_cfg), (Side::Bare, &bare_cfg)] {
            let tag = match side {
                Side::Ferrovisor => "ferrovisor",
                Side::Bare => "bare",
            };
            let log = opts.log_dir.join(format!("{tag}-{i}.log"));
            let rec = run_once(cfg, side, 1, opts.timeout, &log)?;
            logs.push(rec.log.clone());
            let err = parse_err(side, &rec.log);
            match side {
                Side::Ferrovisor => {
                    fv_guest
                        .push(parse::parse_guest_output(&rec.lines, Some(VM_NAME)).map_err(&err)?);
                    fv_hv.push(parse::parse_hypervisor_output(&rec.lines).map_err(&err)?);
                    wall_fv.push(rec.elapsed.as_secs_f64());
                }
                Side::Bare => {
                    bare_guest.push(parse::parse_guest_output(&rec.lines, None).map_err(&err)?);
                    wall_bare.push(rec.elapsed.as_secs_f64());
                }
            }
            progress(&format!(
                "run {i}/{} {side}: {:.2} s (log: {})",
                opts.runs,
                rec.elapsed.as_secs_f64(),
                rec.log.display()
            ));
        }
    }

    let (multi_pkg, multi_machine) = package_for(opts, opts.multi_vms)?;
    let multi_cfg = with_icount(
        QemuConfig::new(&multi_machine, &opts.hypervisor, Some(&multi_pkg)),
        opts.icount,
    );
    let multi_log = opts
        .log_dir
        .join(format!("ferrovisor-{}vms.log", opts.multi_vms));
    let rec = run_once(
        &multi_cfg,
        Side::Ferrovisor,
        opts.multi_vms,
        opts.timeout,
        &multi_log,
    )?;
    logs.push(rec.log.clone());
    let hv = parse::parse_hypervisor_output(&rec.lines)
        .map_err(parse_err(Side::Ferrovisor, &rec.log))?;
    if hv.vms.len() != opts.multi_vms {
        return Err(BenchError::Run {
            side: Side::Ferrovisor,
            problem: format!(
                "the hypervisor reported {} VM(s), expected {}",
                hv.vms.len(),
                opts.multi_vms
            ),
            log: rec.log,
        });
    }
    progress(&format!(
        "{} VMs under ferrovisor: {:.2} s (log: {})",
        opts.multi_vms,
        rec.elapsed.as_secs_f64(),
        rec.log.display()
    ));
    let multi = MultiVm {
        vms: hv.vms,
        heap_kib: hv.heap_kib,
        log: rec.log,
    };

    let mut notes = Vec::new();
    let mut guest_rows = Vec::new();
    for spec in GUEST_FIGURES {
        // parse_guest_output guarantees every spec'd figure is present.
        let fv: Vec<f64> = fv_guest.iter().filter_map(|g| g.get(spec.name)).collect();
        let bare: Vec<f64> = bare_guest.iter().filter_map(|g| g.get(spec.name)).collect();
        let ferrovisor = stat(&fv, spec.name)?;
        let bare = stat(&bare, spec.name)?;
        let r = if spec.compared {
            ratio(ferrovisor.median, bare.median)
        } else {
            None
        };
        if !spec.compared && ferrovisor.median != bare.median {
            if spec.name == "timebase" {
                return Err(BenchError::Inconsistent(format!(
                    "timebase {} Hz under Ferrovisor but {} Hz on bare QEMU: ticks differ",
                    ferrovisor.median, bare.median
                )));
            }
            notes.push(format!(
                "{} differs: {} under Ferrovisor, {} on bare QEMU",
                spec.name, ferrovisor.median, bare.median
            ));
        }
        guest_rows.push(GuestRow {
            spec: *spec,
            ferrovisor,
            bare,
            ratio: r,
        });
    }

    let col = |f: &dyn Fn(&HypervisorFigures) -> f64| -> Vec<f64> { fv_hv.iter().map(f).collect() };
    let overheads = col(&|h| h.vms.first().map_or(f64::NAN, |v| v.overhead_bytes as f64));
    let heaps = col(&|h| h.heap_kib as f64);
    let one_vm_overhead_bytes = stat(&overheads, "the VM's hypervisor overhead")?;
    let one_vm_heap_kib = stat(&heaps, "heap in use")?;
    if !one_vm_overhead_bytes.is_constant() || !one_vm_heap_kib.is_constant() {
        notes.push("the hypervisor's memory figures differ between runs (medians shown)".into());
    }
    let exits: Vec<f64> = fv_hv
        .iter()
        .filter_map(|h| h.exits.map(|e| e as f64))
        .collect();
    let exits = if exits.len() == fv_hv.len() {
        Stat::of(&exits)
    } else {
        None
    };

    Ok(Report {
        icount: opts.icount,
        date: utc_date(SystemTime::now()),
        runs: opts.runs,
        qemu_version: qemu_version(&fv_cfg.binary),
        machine,
        vm_memory_bytes: opts.vm_memory_bytes,
        hypervisor: opts.hypervisor.clone(),
        guest: opts.guest.clone(),
        ferrovisor_command: fv_cfg.command_line(),
        bare_command: bare_cfg.command_line(),
        guest_rows,
        first_entry_ticks: stat(&col(&|h| h.first_entry_ticks as f64), "first guest entry")?,
        first_entry_us: stat(&col(&|h| h.first_entry_us as f64), "first guest entry")?,
        exits,
        wall_ferrovisor_s: stat(&wall_fv, "wall time")?,
        wall_bare_s: stat(&wall_bare, "wall time")?,
        image,
        one_vm_overhead_bytes,
        one_vm_heap_kib,
        multi,
        logs,
        notes,
    })
}

pub(crate) fn qemu_version(binary: &Path) -> Option<String> {
    let out = Command::new(binary).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().next().map(|l| l.trim().to_string())
}

/// The UTC calendar date of `t` as `YYYY-MM-DD` (proleptic Gregorian).
pub fn utc_date(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Year, month, day of the `days`-th day after 1970-01-01 (Gregorian calendar,
/// counted in 400-year eras of 146 097 days, years starting in March so that the
/// leap day comes last).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468; // days since 0000-03-01
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, 0..146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // 0..399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of the March-based year
    let mp = (5 * doy + 2) / 153; // month from March = 0
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

// ---------------------------------------------------------------------------
// Output.

/// A number as the table shows it: whole numbers without decimals, others with
/// `decimals` places.
fn num(v: f64, decimals: usize) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v:.decimals$}")
    }
}

/// A byte count in B, KiB or MiB.
pub fn bytes(v: f64) -> String {
    if v >= MIB as f64 {
        format!("{:.1} MiB", v / MIB as f64)
    } else if v >= 1024.0 {
        format!("{:.1} KiB", v / 1024.0)
    } else {
        format!("{} B", num(v, 0))
    }
}

/// A ratio as `6.65×`, or `n/a`.
/// A ratio with `decimals` places (instruction-count ratios need 4).
pub fn times_to(r: Option<f64>, decimals: usize) -> String {
    r.map_or_else(|| "n/a".into(), |r| format!("{r:.decimals$}×"))
}

/// A ratio, 2 decimals (1 from 10×).
pub fn times(r: Option<f64>) -> String {
    match r {
        Some(r) if r >= 10.0 => format!("{r:.1}×"),
        Some(r) => format!("{r:.2}×"),
        None => "n/a".into(),
    }
}

/// `median [min–max]`, or just the value when every run agreed.
pub(crate) fn spread(s: &Stat, decimals: usize) -> String {
    if s.is_constant() {
        num(s.median, decimals)
    } else {
        format!(
            "{} [{}–{}]",
            num(s.median, decimals),
            num(s.min, decimals),
            num(s.max, decimals)
        )
    }
}

fn ticks_to_us(ticks: f64, timebase: f64) -> Option<f64> {
    ratio(ticks * 1e6, timebase)
}

/// The report as a human-readable table.
pub fn render(r: &Report) -> String {
    let mut o = String::new();
    let w = &mut o;
    let _ = writeln!(
        w,
        "ferrovisor bench, {}: {} run(s) per side, alternating; {}",
        r.date,
        r.runs,
        r.qemu_version
            .as_deref()
            .unwrap_or("QEMU (version unknown)")
    );
    let _ = writeln!(
        w,
        "machine: -smp {} -m {}M (both sides); guest: {} ({} vCPU, {} MiB RAM under Ferrovisor, all of -m on bare QEMU)",
        r.machine.cpus,
        r.machine.memory_bytes / MIB,
        GUEST,
        1,
        r.vm_memory_bytes / MIB
    );
    if r.icount {
        let _ = writeln!(w, "{}", icount_note());
    }
    let timebase = r.row("timebase").map_or(0.0, |t| t.ferrovisor.median);

    let _ = writeln!(
        w,
        "\n1. bench-guest figures: median over runs of each run's figure  [min–max over runs]"
    );
    let _ = writeln!(
        w,
        "   {:<24} {:>6}  {:>28}  {:>28}  {:>8}",
        "figure", "unit", "ferrovisor", "bare QEMU", "ratio"
    );
    for row in &r.guest_rows {
        let _ = writeln!(
            w,
            "   {:<24} {:>6}  {:>28}  {:>28}  {:>8}",
            row.spec.name,
            row.spec.unit,
            spread(&row.ferrovisor, 0),
            spread(&row.bare, 0),
            if row.spec.compared {
                times(row.ratio)
            } else {
                String::new()
            }
        );
    }
    let _ = writeln!(
        w,
        "   (a tick is 1/timebase s; ratio = ferrovisor median / bare median)"
    );
    for name in ["sbi_null_call_median", "first_touch_2m_median"] {
        if let Some(row) = r.row(name) {
            let fv = ticks_to_us(row.ferrovisor.median, timebase);
            let bare = ticks_to_us(row.bare.median, timebase);
            if let (Some(fv), Some(bare)) = (fv, bare) {
                let _ = writeln!(w, "   {name}: {fv:.1} µs vs {bare:.1} µs");
            }
        }
    }
    let _ = writeln!(
        w,
        "   note: on bare QEMU the guest runs with satp = Bare and no G-stage, so its first touch is no guest\n   page fault; it times QEMU's own first write to that host memory."
    );

    let _ = writeln!(
        w,
        "\n2. Hypervisor's first instruction → first guest instruction: {} ticks = {} µs",
        spread(&r.first_entry_ticks, 0),
        spread(&r.first_entry_us, 0)
    );

    let i = &r.image;
    let _ = writeln!(w, "\n3. Hypervisor image ({})", r.hypervisor.display());
    let _ = writeln!(
        w,
        "   loadable {} = text {} + rodata {} + data {}",
        bytes(i.loadable() as f64),
        bytes(i.text as f64),
        bytes(i.rodata as f64),
        bytes(i.data as f64)
    );
    let _ = writeln!(
        w,
        "   zero-fill {}: .bss {} (cleared at boot), .noinit {} (boot stacks + heap, not cleared); spans {} of RAM",
        bytes(i.zero_fill as f64),
        bytes(i.bss as f64),
        bytes(i.noinit as f64),
        bytes(i.span as f64)
    );
    let _ = writeln!(
        w,
        "   memory besides guest RAM, as the hypervisor reports it once all VMs are created:"
    );
    let _ = writeln!(
        w,
        "   1 VM : overhead {} bytes for the VM, heap in use {} KiB",
        spread(&r.one_vm_overhead_bytes, 0),
        spread(&r.one_vm_heap_kib, 1)
    );
    let overheads: Vec<String> = r
        .multi
        .vms
        .iter()
        .map(|v| v.overhead_bytes.to_string())
        .collect();
    let _ = writeln!(
        w,
        "   {} VMs: overhead {} bytes per VM, heap in use {} KiB → heap +{} KiB per extra VM",
        r.multi.vms.len(),
        overheads.join(" / "),
        r.multi.heap_kib,
        r.heap_per_vm_kib().map_or("n/a".into(), |v| num(v, 1))
    );

    let _ = writeln!(
        w,
        "\n4. Wall time of a whole QEMU run (start → exit), informational"
    );
    let _ = writeln!(
        w,
        "   ferrovisor {} s, bare QEMU {} s, ratio {}",
        spread(&r.wall_ferrovisor_s, 2),
        spread(&r.wall_bare_s, 2),
        times(r.wall_ratio())
    );
    if let Some(e) = &r.exits {
        let _ = writeln!(
            w,
            "   guest exits handled per Ferrovisor run: {}",
            spread(e, 0)
        );
    }
    for n in &r.notes {
        let _ = writeln!(w, "\nnote: {n}");
    }
    if let Some(dir) = r.logs.first().and_then(|l| l.parent()) {
        let _ = writeln!(w, "\nlogs: {}", dir.display());
    }
    o
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

fn path_json(p: &Path) -> Json {
    Json::str(p.display().to_string())
}

/// The logs as a JSON array of paths.
pub(crate) fn logs_json(logs: &[PathBuf]) -> Json {
    Json::Arr(logs.iter().map(|p| path_json(p)).collect())
}

/// [`check_file`] for the hypervisor binary.
pub(crate) fn check_hypervisor(path: &Path) -> Result<(), BenchError> {
    check_file(
        path,
        "hypervisor binary",
        &format!("build it with {}", paths::BUILD_COMMAND),
    )
}

fn vm_json(v: &VmReport) -> Json {
    Json::obj([
        ("name", Json::str(v.name.clone())),
        ("vmid", Json::Num(v.vmid as f64)),
        ("vcpus", Json::Num(v.vcpus as f64)),
        ("ram_mib", Json::Num(v.ram_mib as f64)),
        ("overhead_bytes", Json::Num(v.overhead_bytes as f64)),
    ])
}

/// The report as JSON (every figure, every run's value, the commands and logs).
pub fn to_json(r: &Report) -> Json {
    let i = &r.image;
    Json::obj([
        ("date", Json::str(r.date.clone())),
        ("runs_per_side", Json::Num(r.runs as f64)),
        ("icount", Json::Bool(r.icount)),
        (
            "qemu_version",
            r.qemu_version.clone().map_or(Json::Null, Json::Str),
        ),
        (
            "machine",
            Json::obj([
                ("cpus", Json::Num(f64::from(r.machine.cpus))),
                ("memory_bytes", Json::Num(r.machine.memory_bytes as f64)),
            ]),
        ),
        ("vm_memory_bytes", Json::Num(r.vm_memory_bytes as f64)),
        ("hypervisor", path_json(&r.hypervisor)),
        ("guest", path_json(&r.guest)),
        (
            "commands",
            Json::obj([
                ("ferrovisor", Json::str(r.ferrovisor_command.clone())),
                ("bare", Json::str(r.bare_command.clone())),
            ]),
        ),
        (
            "guest_figures",
            Json::Arr(
                r.guest_rows
                    .iter()
                    .map(|row| {
                        Json::obj([
                            ("name", Json::str(row.spec.name)),
                            ("unit", Json::str(row.spec.unit)),
                            ("what", Json::str(row.spec.what)),
                            ("ferrovisor", stat_json(&row.ferrovisor)),
                            ("bare", stat_json(&row.bare)),
                            ("ratio", Json::opt(row.ratio)),
                        ])
                    })
                    .collect(),
            ),
        ),
        (
            "first_guest_entry",
            Json::obj([
                ("ticks", stat_json(&r.first_entry_ticks)),
                ("us", stat_json(&r.first_entry_us)),
            ]),
        ),
        (
            "exits_handled",
            r.exits.as_ref().map_or(Json::Null, stat_json),
        ),
        (
            "image",
            Json::obj([
                ("text_bytes", Json::Num(i.text as f64)),
                ("rodata_bytes", Json::Num(i.rodata as f64)),
                ("data_bytes", Json::Num(i.data as f64)),
                ("loadable_bytes", Json::Num(i.loadable() as f64)),
                ("zero_fill_bytes", Json::Num(i.zero_fill as f64)),
                ("bss_bytes", Json::Num(i.bss as f64)),
                ("noinit_bytes", Json::Num(i.noinit as f64)),
                ("span_bytes", Json::Num(i.span as f64)),
            ]),
        ),
        (
            "memory",
            Json::obj([
                (
                    "one_vm",
                    Json::obj([
                        ("overhead_bytes", stat_json(&r.one_vm_overhead_bytes)),
                        ("heap_in_use_kib", stat_json(&r.one_vm_heap_kib)),
                    ]),
                ),
                (
                    "multi_vm",
                    Json::obj([
                        ("vms", Json::Arr(r.multi.vms.iter().map(vm_json).collect())),
                        ("heap_in_use_kib", Json::Num(r.multi.heap_kib as f64)),
                        ("log", path_json(&r.multi.log)),
                    ]),
                ),
                ("heap_per_extra_vm_kib", Json::opt(r.heap_per_vm_kib())),
                (
                    "overhead_per_vm_bytes_multi_median",
                    Json::opt(r.multi_overhead_median()),
                ),
            ]),
        ),
        (
            "wall_clock_s",
            Json::obj([
                ("ferrovisor", stat_json(&r.wall_ferrovisor_s)),
                ("bare", stat_json(&r.wall_bare_s)),
                ("ratio", Json::opt(r.wall_ratio())),
            ]),
        ),
        (
            "notes",
            Json::Arr(r.notes.iter().map(|n| Json::str(n.clone())).collect()),
        ),
        ("logs", logs_json(&r.logs)),
    ])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    #[test]
    fn icount_appends_the_deterministic_clock_only_when_asked() {
        let o = Options::new();
        let m = o.machine(1);
        let plain = with_icount(QemuConfig::new(&m, Path::new("k"), None), false).args();
        assert!(!plain.iter().any(|a| a == "-icount"));
        let mut q = QemuConfig::new(&m, Path::new("k"), None);
        q.extra_args = vec!["-append".into(), "x".into()];
        let a = with_icount(q, true).args();
        assert_eq!(
            a[a.len() - 4..],
            ["-append", "x", "-icount", "shift=0,sleep=off"]
        );
    }

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(11_017), (2000, 3, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(20_513), (2026, 3, 1));
        assert_eq!(
            utc_date(UNIX_EPOCH + Duration::from_secs(1_709_251_199)),
            "2024-02-29"
        );
    }

    #[test]
    fn formatting() {
        assert_eq!(num(173.0, 2), "173");
        assert_eq!(num(1.234, 2), "1.23");
        assert_eq!(bytes(480.0), "480 B");
        assert_eq!(bytes(23927.0), "23.4 KiB");
        assert_eq!(bytes(8.5 * MIB as f64), "8.5 MiB");
        assert_eq!(times(Some(6.6538)), "6.65×");
        assert_eq!(times(Some(12.34)), "12.3×");
        assert_eq!(times(None), "n/a");
        let s = Stat::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!(spread(&s, 0), "2 [1–3]");
        assert_eq!(spread(&Stat::of(&[5.0, 5.0]).unwrap(), 0), "5");
    }

    #[test]
    fn machine_has_room_for_the_vms() {
        let o = Options::new();
        assert_eq!(
            o.machine(1).memory_bytes,
            256 * MIB + config::DEFAULT_HOST_OVERHEAD
        );
        assert_eq!(
            o.machine(4).memory_bytes,
            1024 * MIB + config::DEFAULT_HOST_OVERHEAD
        );
        assert_eq!(o.machine(4).cpus, o.machine(1).cpus);
    }

    #[test]
    fn missing_guest_says_how_to_build_it() {
        let dir = std::env::temp_dir().join(format!("fv-bench-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let hv = dir.join("hv");
        fs::write(&hv, b"x").unwrap();
        let o = Options {
            hypervisor: hv,
            guest: dir.join("no-bench-guest"),
            log_dir: dir.join("logs"),
            ..Options::new()
        };
        let e = run(&o, &mut |_| {}).unwrap_err().to_string();
        assert!(e.contains("no-bench-guest"), "{e}");
        assert!(e.contains("scripts/build.sh"), "{e}");
        let o = Options {
            hypervisor: dir.join("no-hv"),
            ..o
        };
        let e = run(&o, &mut |_| {}).unwrap_err().to_string();
        assert!(e.contains("no-hv") && e.contains("scripts/build.sh"), "{e}");
        let _ = fs::remove_dir_all(&dir);
    }

    fn sample_report() -> Report {
        let s = |v: &[f64]| Stat::of(v).unwrap();
        let rows = GUEST_FIGURES
            .iter()
            .map(|spec| {
                let (fv, bare) = match spec.name {
                    "sbi_null_call_median" => (s(&[173.0, 180.0, 170.0]), s(&[26.0, 20.0, 30.0])),
                    "timebase" => (s(&[1e7; 3]), s(&[1e7; 3])),
                    _ => (s(&[10.0; 3]), s(&[5.0; 3])),
                };
                let ratio = spec.compared.then(|| fv.median / bare.median);
                GuestRow {
                    spec: *spec,
                    ferrovisor: fv,
                    bare,
                    ratio,
                }
            })
            .collect();
        Report {
            icount: false,
            date: "2026-11-20".into(),
            runs: 3,
            qemu_version: Some("QEMU emulator version 10.0.2".into()),
            machine: Options::new().machine(1),
            vm_memory_bytes: 256 * MIB,
            hypervisor: "hv".into(),
            guest: "g".into(),
            ferrovisor_command: "qemu a".into(),
            bare_command: "qemu b".into(),
            guest_rows: rows,
            first_entry_ticks: s(&[320_799.0]),
            first_entry_us: s(&[32_079.0]),
            exits: Some(s(&[12_083.0])),
            wall_ferrovisor_s: s(&[1.0, 1.2, 1.1]),
            wall_bare_s: s(&[0.5, 0.6, 0.55]),
            image: ImageSize {
                text: 0x177e0,
                rodata: 0x3d18,
                data: 0x178,
                zero_fill: 0x88_1e88,
                bss: 0x1e0,
                noinit: 0x88_0000,
                span: 0x89_e000,
            },
            one_vm_overhead_bytes: s(&[23_927.0]),
            one_vm_heap_kib: s(&[30.0]),
            multi: MultiVm {
                vms: (1..=4)
                    .map(|i| VmReport {
                        name: format!("bench-{i}"),
                        vmid: i,
                        vcpus: 1,
                        ram_mib: 256,
                        overhead_bytes: 23_927,
                    })
                    .collect(),
                heap_kib: 60,
                log: "l4".into(),
            },
            logs: vec!["target/bench-logs/ferrovisor-1.log".into()],
            notes: vec![],
        }
    }

    #[test]
    fn derived_figures() {
        let r = sample_report();
        assert_eq!(r.heap_per_vm_kib(), Some(10.0));
        assert_eq!(r.multi_overhead_median(), Some(23_927.0));
        assert_eq!(r.wall_ratio(), Some(2.0));
        assert_eq!(
            r.row("sbi_null_call_median").unwrap().ferrovisor.median,
            173.0
        );
    }

    #[test]
    fn table_shows_medians_ranges_and_ratios() {
        let t = render(&sample_report());
        let line = t
            .lines()
            .find(|l| l.trim_start().starts_with("sbi_null_call_median"))
            .unwrap();
        assert!(line.contains("173 [170–180]"), "{line}");
        assert!(line.contains("26 [20–30]"), "{line}");
        assert!(line.contains("6.65×"), "{line}");
        assert!(t.contains("17.3 µs vs 2.6 µs"), "{t}");
        assert!(t.contains("320799 ticks = 32079 µs"), "{t}");
        assert!(t.contains("heap +10 KiB per extra VM"), "{t}");
        assert!(t.contains("ratio 2.00×"), "{t}");
        assert!(t.contains(".noinit 8.5 MiB"), "{t}");
    }

    #[test]
    fn json_has_every_figure() {
        let j = to_json(&sample_report()).pretty();
        for key in [
            "\"sbi_null_call_median\"",
            "\"first_touch_2m_median\"",
            "\"loop_overhead_median\"",
            "\"first_guest_entry\"",
            "\"text_bytes\": 96224",
            "\"heap_per_extra_vm_kib\": 10",
            "\"ratio\": 2",
            "\"runs\": [173, 180, 170]",
            "\"exits_handled\"",
        ] {
            assert!(j.contains(key), "{key} missing in {j}");
        }
    }
}
