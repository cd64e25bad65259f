//! `ferrovisor bench --sched`: what the vCPU scheduler costs and how well it
//! keeps time, in one invocation, each figure beside its baseline.
//!
//! 1. **vCPU switch and time slices.** 1, 2 and 4 VMs of cpu-hog in `probe=`
//!    mode share one hart (`-smp 1`); cpu-hog probes on bare QEMU for the
//!    baseline. From the probes laid on one timeline ([`probe`]): the *vCPU
//!    switch* (one vCPU's last instruction to the next vCPU's first on the same
//!    hart), set beside the same guest's *null SBI call* under Ferrovisor (an
//!    exit that returns to the same vCPU) and on bare QEMU; the *time slice*
//!    each VM got, beside the slice the scheduler meant to give (its period
//!    split between `n` equal vCPUs, from the hypervisor's `scheduler:` line);
//!    and the stalls a probe sees when it has the hart to itself (bare QEMU:
//!    QEMU's own; one VM alone: those plus the hypervisor's exits).
//! 2. **Many VMs to userspace.** The Debian Linux guest of
//!    `scripts/fetch-linux.sh` (`quiet`, 1 vCPU, 128 MiB) boots alone and as 8
//!    VMs at once on a 2-hart machine; the wall time from QEMU's start until
//!    every VM printed the initramfs's `FERROVISOR-GUEST-READY`, beside one VM
//!    alone (and the same guest on bare QEMU, 1 vCPU). With perfect sharing 8
//!    single-vCPU VMs on 2 harts take 4 times as long as one.
//!
//! Every figure is the median over runs of each run's own figure (a median of
//! its samples), with the range over runs. Every run's serial log is kept under
//! `target/bench-logs/sched/`.

pub mod probe;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::bench::json::Json;
use crate::bench::linux::console::Console;
use crate::bench::linux::parse::{guest_lines, is_marker, parse_boot};
use crate::bench::stats::{ratio, Stat};
use crate::bench::{
    check_file, prepare_log_dir, qemu_version, run_once, spread, times, utc_date, with_icount,
    BenchError, Side, LOG_SUBDIR,
};
use crate::config::{self, Arch, Machine, VmConfig};
use crate::qemu::QemuConfig;
use crate::{paths, MIB};

use probe::{analyse, parse_probe, quantile, Probe};

/// The probing guest.
pub const GUEST: &str = "cpu-hog";
/// The log subdirectory under `target/bench-logs/`.
pub const LOG_SUBSUBDIR: &str = "sched";
/// Shortest gap the probes record, microseconds.
pub const GAP_US: u64 = 20;

/// What to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Runs (≥ 1).
    pub runs: usize,
    /// The hypervisor ELF.
    pub hypervisor: PathBuf,
    /// The cpu-hog ELF.
    pub guest: PathBuf,
    /// How long each probe runs, milliseconds.
    pub probe_ms: u64,
    /// How many probing VMs share the hart, one configuration each (1 = alone).
    pub shares: Vec<usize>,
    /// Limit on each QEMU run.
    pub timeout: Duration,
    /// Where logs and packages go.
    pub log_dir: PathBuf,
    /// Linux VMs booted at once (0: skip the Linux part).
    pub linux_vms: usize,
    /// Harts of the Linux machine.
    pub linux_harts: u32,
    /// RAM of each Linux VM.
    pub linux_memory_bytes: u64,
    /// The Linux kernel.
    pub kernel: PathBuf,
    /// The initramfs.
    pub initrd: PathBuf,
    /// Run every QEMU under [`crate::bench::ICOUNT_ARGS`]: the probes' gaps
    /// and null calls are then counted in instructions (1 ns = 1 instruction).
    pub icount: bool,
}

impl Options {
    /// The defaults: 3 runs, 3 s probes shared by 1, 2 and 4 VMs, 8 Linux VMs of
    /// 128 MiB on 2 harts, the release builds, logs in `target/bench-logs/sched/`.
    pub fn new() -> Options {
        let current = paths::cache_dir().join("linux").join("current");
        Options {
            runs: 3,
            hypervisor: paths::default_hypervisor(),
            guest: paths::bare_metal_binary(GUEST),
            probe_ms: 3000,
            shares: vec![1, 2, 4],
            timeout: Duration::from_secs(300),
            log_dir: paths::target_dir().join(LOG_SUBDIR).join(LOG_SUBSUBDIR),
            linux_vms: 8,
            linux_harts: 2,
            linux_memory_bytes: 128 * MIB,
            kernel: current.join("Image"),
            initrd: current.join("initramfs.cpio.gz"),
            icount: false,
        }
    }

    fn machine(&self, cpus: u32, memory_bytes: u64) -> Machine {
        Machine {
            arch: Arch::Riscv64,
            cpus,
            memory_bytes,
            cpu: None,
            options: None,
        }
    }

    fn probe_args(&self) -> String {
        format!("probe={} gap_us={GAP_US} ms=0", self.probe_ms)
    }
}

impl Default for Options {
    fn default() -> Self {
        Options::new()
    }
}

/// One run's figures of one probe configuration, microseconds.
#[derive(Clone, Debug, Default, PartialEq)]
struct ProbeRun {
    null_call_us: f64,
    stalls_per_s: f64,
    stall_us: Option<f64>,
    switch_us: Option<f64>,
    switch_p90_us: Option<f64>,
    switches: usize,
    slice_us: Option<f64>,
    slice_p10_us: Option<f64>,
    slice_p90_us: Option<f64>,
    anomalies: usize,
}

/// One probe configuration over all runs.
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeRow {
    /// Probing VMs sharing the hart (0: bare QEMU).
    pub vms: usize,
    /// The slice the scheduler means to give each, µs (`None`: bare, or alone).
    pub expected_slice_us: Option<f64>,
    /// The null SBI call, µs.
    pub null_call_us: Stat,
    /// Self gaps (exits without a switch, QEMU's stalls) per second.
    pub stalls_per_s: Stat,
    /// Their median length, µs.
    pub stall_us: Option<Stat>,
    /// The vCPU switch, µs (median of each run's median).
    pub switch_us: Option<Stat>,
    /// Each run's 90th percentile of the switch, µs.
    pub switch_p90_us: Option<Stat>,
    /// Switches seen per run.
    pub switches: Stat,
    /// The time slice, µs.
    pub slice_us: Option<Stat>,
    /// Each run's 10th percentile of the slice, µs.
    pub slice_p10_us: Option<Stat>,
    /// Each run's 90th percentile of the slice, µs.
    pub slice_p90_us: Option<Stat>,
    /// Overlapping gaps seen (all runs).
    pub anomalies: usize,
}

/// The Linux part over all runs.
#[derive(Clone, Debug, PartialEq)]
pub struct LinuxRow {
    /// VMs booted at once.
    pub vms: usize,
    /// Harts of Ferrovisor's machine.
    pub harts: u32,
    /// Each VM's RAM.
    pub memory_bytes: u64,
    /// Bare QEMU, 1 vCPU: QEMU's start to the marker, s.
    pub bare_s: Stat,
    /// One VM alone under Ferrovisor: QEMU's start to the marker, s.
    pub alone_s: Stat,
    /// All VMs: QEMU's start to the last VM's marker, s.
    pub all_s: Stat,
    /// All VMs: to the first VM's marker, s.
    pub first_s: Stat,
    /// All VMs: the guests' own uptime at the marker (median over the VMs), s.
    pub all_uptime_s: Stat,
    /// One VM alone: the guest's uptime at the marker, s.
    pub alone_uptime_s: Stat,
}

/// Everything measured.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// When (UTC date).
    pub date: String,
    /// The options.
    pub options: Options,
    /// QEMU's version line.
    pub qemu_version: Option<String>,
    /// The scheduler's period and minimum slice, µs (from its `scheduler:` line).
    pub period_us: f64,
    /// The minimum slice, µs.
    pub min_slice_us: f64,
    /// Bare QEMU's probe, then one row per entry of [`Options::shares`].
    pub probes: Vec<ProbeRow>,
    /// The Linux part (unless skipped).
    pub linux: Option<LinuxRow>,
    /// Every log.
    pub logs: Vec<PathBuf>,
}

impl Report {
    /// The row of `vms` VMs sharing the hart (0: bare QEMU).
    pub fn probe_row(&self, vms: usize) -> Option<&ProbeRow> {
        self.probes.iter().find(|r| r.vms == vms)
    }
}

fn us(ticks: f64, timebase: u64) -> f64 {
    ticks * 1e6 / timebase as f64
}

/// Reads one probe configuration's run: the VMs' probes, analysed together.
fn probe_run(probes: &[Probe]) -> Result<ProbeRun, String> {
    let timebase = probes.first().map(|p| p.timebase).ok_or("no probe")?;
    if probes.iter().any(|p| p.timebase != timebase) {
        return Err("the probes report different timebases".into());
    }
    if let Some(p) = probes.iter().find(|p| p.dropped > 0) {
        return Err(format!(
            "a probe dropped {} gaps (its buffer was full)",
            p.dropped
        ));
    }
    let a = analyse(probes).ok_or("the VMs' probes never ran at the same time")?;
    let nulls: Vec<u64> = probes.iter().map(|p| p.null_call_ticks).collect();
    let q = |v: &[u64], x: f64| quantile(v, x).map(|t| us(t as f64, timebase));
    Ok(ProbeRun {
        null_call_us: q(&nulls, 0.5).unwrap_or(f64::NAN),
        stalls_per_s: a.self_gaps.len() as f64 / (a.window_ticks as f64 / timebase as f64),
        stall_us: q(&a.self_gaps, 0.5),
        switch_us: q(&a.switches, 0.5),
        switch_p90_us: q(&a.switches, 0.9),
        switches: a.switches.len(),
        slice_us: q(&a.slices, 0.5),
        slice_p10_us: q(&a.slices, 0.1),
        slice_p90_us: q(&a.slices, 0.9),
        anomalies: a.anomalies,
    })
}

/// The scheduler's `period <n> us, min slice <n> us` from its boot line.
fn parse_scheduler_line<S: AsRef<str>>(lines: &[S]) -> Option<(f64, f64)> {
    let line = lines
        .iter()
        .map(AsRef::as_ref)
        .find_map(|l| l.trim_start().strip_prefix("ferrovisor: scheduler: "))?;
    let num = |key: &str| -> Option<f64> {
        let rest = line.split_once(key)?.1.trim_start();
        rest.split_whitespace().next()?.parse().ok()
    };
    Some((num("period ")?, num("min slice ")?))
}

/// The slice the scheduler gives each of `n` equal, CPU-bound vCPUs: its period
/// split `n` ways, never below the minimum slice.
pub fn expected_slice_us(period_us: f64, min_slice_us: f64, n: usize) -> f64 {
    (period_us / n.max(1) as f64).max(min_slice_us)
}

fn setup(opts: &Options) -> Result<(), BenchError> {
    if opts.runs == 0 {
        return Err(BenchError::Setup("--runs must be at least 1".into()));
    }
    if opts.shares.is_empty() || opts.shares.contains(&0) {
        return Err(BenchError::Setup(
            "every probe configuration needs at least 1 VM".into(),
        ));
    }
    crate::bench::check_hypervisor(&opts.hypervisor)?;
    check_file(
        &opts.guest,
        "guest binary",
        "build it with scripts/build.sh",
    )?;
    if opts.linux_vms > 0 {
        check_file(
            &opts.kernel,
            "Linux kernel",
            "fetch it with scripts/fetch-linux.sh",
        )?;
        check_file(
            &opts.initrd,
            "initramfs",
            "fetch it with scripts/fetch-linux.sh",
        )?;
    }
    prepare_log_dir(&opts.log_dir)
}

/// Builds a package of `vms` and writes it as `name`.
fn write_package(
    opts: &Options,
    machine: &Machine,
    vms: Vec<VmConfig>,
    name: &str,
) -> Result<PathBuf, BenchError> {
    crate::bench::write_package(
        "<ferrovisor bench --sched>",
        machine,
        vms,
        &opts.log_dir,
        name,
    )
}

/// The QEMU commands of the probe configurations: bare first, then each share.
fn probe_configs(opts: &Options) -> Result<Vec<(usize, QemuConfig)>, BenchError> {
    const PROBE_VM_MEMORY: u64 = 32 * MIB;
    let mut out = Vec::new();
    let bare_machine = opts.machine(1, 128 * MIB);
    let mut bare = QemuConfig::new(&bare_machine, &opts.guest, None);
    bare.extra_args = vec!["-append".into(), opts.probe_args()];
    out.push((0, with_icount(bare, opts.icount)));
    for &n in &opts.shares {
        let machine = opts.machine(
            1,
            PROBE_VM_MEMORY
                .saturating_mul(n as u64)
                .saturating_add(config::DEFAULT_HOST_OVERHEAD),
        );
        let vms = (1..=n)
            .map(|i| VmConfig {
                name: format!("p{i}"),
                vcpus: 1,
                memory_bytes: PROBE_VM_MEMORY,
                kernel: opts.guest.clone(),
                kernel_format: crate::loader::FormatChoice::Auto,
                console: crate::config::ConsoleChoice::Uart,
                initrd: None,
                command_line: opts.probe_args(),
                weight: fv_bootpkg::DEFAULT_WEIGHT,
                pin: None,
            })
            .collect();
        let pkg = write_package(opts, &machine, vms, &format!("probe-{n}vm.fvpkg"))?;
        out.push((
            n,
            with_icount(
                QemuConfig::new(&machine, &opts.hypervisor, Some(&pkg)),
                opts.icount,
            ),
        ));
    }
    Ok(out)
}

/// The Linux QEMU commands: bare (1 vCPU), one VM alone, all VMs.
fn linux_configs(opts: &Options) -> Result<[(QemuConfig, Vec<String>); 3], BenchError> {
    let cmdline = "console=ttyS0 quiet".to_string();
    let vm = |name: String| VmConfig {
        name,
        vcpus: 1,
        memory_bytes: opts.linux_memory_bytes,
        kernel: opts.kernel.clone(),
        kernel_format: crate::loader::FormatChoice::Auto,
        console: crate::config::ConsoleChoice::Uart,
        initrd: Some(opts.initrd.clone()),
        command_line: cmdline.clone(),
        weight: fv_bootpkg::DEFAULT_WEIGHT,
        pin: None,
    };
    // Room for the VMs, the hypervisor and the boot package (which carries one
    // copy of the kernel and initramfs, about 31 MiB, shared by the VMs).
    let machine = |n: usize| {
        opts.machine(
            opts.linux_harts,
            opts.linux_memory_bytes
                .saturating_mul(n as u64)
                .saturating_add(config::DEFAULT_HOST_OVERHEAD),
        )
    };
    let mut bare = QemuConfig::new(
        &opts.machine(1, opts.linux_memory_bytes),
        &opts.kernel,
        Some(&opts.initrd),
    );
    bare.extra_args = vec!["-append".into(), cmdline.clone()];
    let alone_pkg = write_package(
        opts,
        &machine(1),
        vec![vm("linux".into())],
        "linux-1vm.fvpkg",
    )?;
    let names: Vec<String> = (1..=opts.linux_vms).map(|i| format!("linux{i}")).collect();
    let all_pkg = write_package(
        opts,
        &machine(opts.linux_vms),
        names.iter().cloned().map(vm).collect(),
        &format!("linux-{}vm.fvpkg", opts.linux_vms),
    )?;
    let ic = |q: QemuConfig| with_icount(q, opts.icount);
    Ok([
        (ic(bare), vec![String::new()]),
        (
            ic(QemuConfig::new(
                &machine(1),
                &opts.hypervisor,
                Some(&alone_pkg),
            )),
            vec!["linux".into()],
        ),
        (
            ic(QemuConfig::new(
                &machine(opts.linux_vms),
                &opts.hypervisor,
                Some(&all_pkg),
            )),
            names,
        ),
    ])
}

/// One VM's boot to its readiness marker.
#[derive(Clone, Copy, Debug, PartialEq)]
struct BootTime {
    /// From QEMU's start, s.
    wall_s: f64,
    /// The guest's own uptime then, s.
    uptime_s: f64,
}

/// Boots `cfg` and waits for the marker of every VM in `vms` (`""`: bare QEMU,
/// unprefixed). Returns each VM's boot time.
fn linux_boot(
    cfg: &QemuConfig,
    vms: &[String],
    timeout: Duration,
    log: &Path,
) -> Result<Vec<BootTime>, BenchError> {
    let side = if vms.iter().any(|v| v.is_empty()) {
        Side::Bare
    } else {
        Side::Ferrovisor
    };
    let fail = |problem: String| BenchError::Run {
        side,
        problem,
        log: log.to_path_buf(),
    };
    let mut console =
        Console::spawn(cfg, log, crate::bench::linux::failure_patterns()).map_err(|e| {
            BenchError::Launch {
                message: e.to_string(),
                log: log.to_path_buf(),
            }
        })?;
    let mut at: Vec<Option<f64>> = vec![None; vms.len()];
    console
        .wait_for(
            &format!("the readiness marker of {} VM(s)", vms.len()),
            timeout,
            |lines, _| {
                let texts: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
                for (slot, vm) in at.iter_mut().zip(vms) {
                    if slot.is_none() {
                        *slot = guest_lines(&texts, name(vm))
                            .find(|(_, l)| is_marker(l))
                            .and_then(|(i, _)| lines.get(i))
                            .map(|l| l.at.as_secs_f64());
                    }
                }
                at.iter().all(Option::is_some).then_some(())
            },
        )
        .map_err(|e| fail(e.to_string()))?;
    let texts: Vec<&str> = console.lines().iter().map(|l| l.text.as_str()).collect();
    let mut out = Vec::new();
    for (vm, t) in vms.iter().zip(&at) {
        let status = parse_boot(&texts, name(vm)).map_err(|error| BenchError::Parse {
            side,
            error,
            log: log.to_path_buf(),
        })?;
        if status.cpus != 1 {
            return Err(fail(format!(
                "VM {vm:?} saw {} CPUs, expected 1",
                status.cpus
            )));
        }
        out.push(BootTime {
            wall_s: t.unwrap_or(f64::NAN),
            uptime_s: status.uptime_s,
        });
    }
    // Dropping the console kills QEMU: the boots are all this measures.
    drop(console);
    Ok(out)
}

/// A VM's name as `guest_lines` takes it: `None` for bare QEMU's `""`.
fn name(v: &str) -> Option<&str> {
    (!v.is_empty()).then_some(v)
}

fn stat(values: &[f64], what: &str) -> Result<Stat, BenchError> {
    Stat::of(values).ok_or_else(|| BenchError::Inconsistent(format!("no usable values of {what}")))
}

/// `Some(stat)` if every run gave a value, else `None`.
fn opt_stat(values: &[Option<f64>]) -> Option<Stat> {
    let v: Option<Vec<f64>> = values.iter().copied().collect();
    Stat::of(&v?)
}

fn median_of(values: &[f64]) -> f64 {
    crate::bench::stats::median(values).unwrap_or(f64::NAN)
}

/// Runs the whole benchmark; `progress` gets one line per QEMU run.
pub fn run(opts: &Options, progress: &mut dyn FnMut(&str)) -> Result<Report, BenchError> {
    setup(opts)?;
    let probes = probe_configs(opts)?;
    let linux = if opts.linux_vms > 0 {
        Some(linux_configs(opts)?)
    } else {
        None
    };
    let mut per_config: Vec<Vec<ProbeRun>> = vec![Vec::new(); probes.len()];
    let mut sched_line: Option<(f64, f64)> = None;
    let mut linux_runs: [Vec<Vec<BootTime>>; 3] = Default::default();
    let mut logs = Vec::new();
    for i in 1..=opts.runs {
        for ((n, cfg), runs) in probes.iter().zip(per_config.iter_mut()) {
            let (side, tag) = if *n == 0 {
                (Side::Bare, "bare".to_string())
            } else {
                (Side::Ferrovisor, format!("{n}vm"))
            };
            let log = opts.log_dir.join(format!("probe-{tag}-{i}.log"));
            let rec = run_once(cfg, side, (*n).max(1), opts.timeout, &log)?;
            logs.push(log.clone());
            let names: Vec<Option<String>> = if *n == 0 {
                vec![None]
            } else {
                (1..=*n).map(|k| Some(format!("p{k}"))).collect()
            };
            let parsed = names
                .iter()
                .map(|v| parse_probe(&rec.lines, v.as_deref()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|error| BenchError::Parse {
                    side,
                    error,
                    log: log.clone(),
                })?;
            if side == Side::Ferrovisor && sched_line.is_none() {
                sched_line = parse_scheduler_line(&rec.lines);
            }
            let r = probe_run(&parsed).map_err(|problem| BenchError::Run {
                side,
                problem,
                log: log.clone(),
            })?;
            progress(&format!(
                "run {i}/{} probe {tag}: switch {} µs, slice {} µs, null call {:.1} µs (log: {})",
                opts.runs,
                r.switch_us.map_or("-".into(), |v| format!("{v:.1}")),
                r.slice_us.map_or("-".into(), |v| format!("{v:.0}")),
                r.null_call_us,
                log.display()
            ));
            runs.push(r);
        }
        if let Some(configs) = &linux {
            for ((cfg, vms), (tag, out)) in configs.iter().zip(
                ["bare", "alone", "all"]
                    .into_iter()
                    .zip(linux_runs.iter_mut()),
            ) {
                let log = opts.log_dir.join(format!("linux-{tag}-{i}.log"));
                let boots = linux_boot(cfg, vms, opts.timeout, &log)?;
                logs.push(log.clone());
                let last = boots.iter().map(|b| b.wall_s).fold(0.0, f64::max);
                progress(&format!(
                    "run {i}/{} linux {tag}: {} VM(s) in userspace after {last:.2} s (log: {})",
                    opts.runs,
                    boots.len(),
                    log.display()
                ));
                out.push(boots);
            }
        }
    }
    let (period_us, min_slice_us) = sched_line.ok_or_else(|| {
        BenchError::Inconsistent("no `ferrovisor: scheduler: period …` line in any run".into())
    })?;
    let mut rows = Vec::new();
    for ((n, _), runs) in probes.iter().zip(&per_config) {
        let col = |f: &dyn Fn(&ProbeRun) -> Option<f64>| -> Vec<Option<f64>> {
            runs.iter().map(f).collect()
        };
        let switches: Vec<f64> = runs.iter().map(|r| r.switches as f64).collect();
        let nulls: Vec<f64> = runs.iter().map(|r| r.null_call_us).collect();
        let stalls: Vec<f64> = runs.iter().map(|r| r.stalls_per_s).collect();
        rows.push(ProbeRow {
            vms: *n,
            expected_slice_us: (*n >= 2).then(|| expected_slice_us(period_us, min_slice_us, *n)),
            null_call_us: stat(&nulls, "the null call")?,
            stalls_per_s: stat(&stalls, "stalls")?,
            stall_us: opt_stat(&col(&|r| r.stall_us)),
            switch_us: opt_stat(&col(&|r| r.switch_us)),
            switch_p90_us: opt_stat(&col(&|r| r.switch_p90_us)),
            switches: stat(&switches, "switches")?,
            slice_us: opt_stat(&col(&|r| r.slice_us)),
            slice_p10_us: opt_stat(&col(&|r| r.slice_p10_us)),
            slice_p90_us: opt_stat(&col(&|r| r.slice_p90_us)),
            anomalies: runs.iter().map(|r| r.anomalies).sum(),
        });
    }
    let linux = if linux.is_some() {
        let [bare, alone, all] = &linux_runs;
        let per_run = |runs: &[Vec<BootTime>], f: &dyn Fn(&[BootTime]) -> f64| -> Vec<f64> {
            runs.iter().map(|r| f(r)).collect()
        };
        let last_wall = |r: &[BootTime]| r.iter().map(|b| b.wall_s).fold(f64::NAN, f64::max);
        let first_wall = |r: &[BootTime]| r.iter().map(|b| b.wall_s).fold(f64::NAN, f64::min);
        let uptime = |r: &[BootTime]| median_of(&r.iter().map(|b| b.uptime_s).collect::<Vec<_>>());
        Some(LinuxRow {
            vms: opts.linux_vms,
            harts: opts.linux_harts,
            memory_bytes: opts.linux_memory_bytes,
            bare_s: stat(&per_run(bare, &last_wall), "bare boot")?,
            alone_s: stat(&per_run(alone, &last_wall), "boot alone")?,
            all_s: stat(&per_run(all, &last_wall), "boot of all VMs")?,
            first_s: stat(&per_run(all, &first_wall), "first boot")?,
            all_uptime_s: stat(&per_run(all, &uptime), "uptime")?,
            alone_uptime_s: stat(&per_run(alone, &uptime), "uptime")?,
        })
    } else {
        None
    };
    Ok(Report {
        date: utc_date(SystemTime::now()),
        options: opts.clone(),
        qemu_version: probes.first().and_then(|(_, c)| qemu_version(&c.binary)),
        period_us,
        min_slice_us,
        probes: rows,
        linux,
        logs,
    })
}

fn opt_spread(s: Option<&Stat>, decimals: usize) -> String {
    s.map_or("-".into(), |s| spread(s, decimals))
}

/// The report as a human-readable table.
pub fn render(r: &Report) -> String {
    let mut o = String::new();
    let w = &mut o;
    let opts = &r.options;
    let _ = writeln!(
        w,
        "ferrovisor bench --sched, {}: {} run(s); {}",
        r.date,
        opts.runs,
        r.qemu_version
            .as_deref()
            .unwrap_or("QEMU (version unknown)")
    );
    if opts.icount {
        let _ = writeln!(w, "{}", crate::bench::icount_note());
    }
    let _ = writeln!(
        w,
        "scheduler: period {} µs, min slice {} µs; probes: cpu-hog `{}` on -smp 1, 32 MiB per VM",
        r.period_us,
        r.min_slice_us,
        opts.probe_args()
    );
    let _ = writeln!(
        w,
        "each cell: median over runs of each run's median [range over runs]"
    );
    let _ = writeln!(w);
    let _ = writeln!(
        w,
        "| on one hart | null SBI call, µs | vCPU switch, µs (p90) | switch / null call | slice, µs (p10–p90) | meant, µs | slice / meant | stalls/s (median µs) |"
    );
    let _ = writeln!(w, "|---|---|---|---|---|---|---|---|");
    for row in &r.probes {
        let who = match row.vms {
            0 => "bare QEMU".to_string(),
            1 => "1 VM alone".to_string(),
            n => format!("{n} VMs"),
        };
        let switch_ratio = row
            .switch_us
            .as_ref()
            .and_then(|s| ratio(s.median, row.null_call_us.median));
        let slice_ratio = row
            .slice_us
            .as_ref()
            .zip(row.expected_slice_us)
            .and_then(|(s, e)| ratio(s.median, e));
        let _ = writeln!(
            w,
            "| {who} | {} | {}{} | {} | {}{} | {} | {} | {} ({}) |",
            spread(&row.null_call_us, 1),
            opt_spread(row.switch_us.as_ref(), 1),
            row.switch_p90_us
                .as_ref()
                .map_or(String::new(), |p| format!(" ({:.1})", p.median)),
            if row.switch_us.is_some() {
                times(switch_ratio)
            } else {
                "-".into()
            },
            opt_spread(row.slice_us.as_ref(), 0),
            match (&row.slice_p10_us, &row.slice_p90_us) {
                (Some(a), Some(b)) => format!(" ({:.0}–{:.0})", a.median, b.median),
                _ => String::new(),
            },
            row.expected_slice_us
                .map_or("-".into(), |e| format!("{e:.0}")),
            if row.slice_us.is_some() {
                times(slice_ratio)
            } else {
                "-".into()
            },
            spread(&row.stalls_per_s, 0),
            opt_spread(row.stall_us.as_ref(), 1),
        );
    }
    let anomalies: usize = r.probes.iter().map(|p| p.anomalies).sum();
    if anomalies > 0 {
        let _ = writeln!(
            w,
            "note: {anomalies} overlapping gap(s) (a switch shorter than {GAP_US} µs, or the probes' clocks disagree)"
        );
    }
    if let Some(l) = &r.linux {
        let _ = writeln!(w);
        let _ = writeln!(
            w,
            "Linux (`console=ttyS0 quiet`, 1 vCPU, {} MiB per VM) to `FERROVISOR-GUEST-READY`, wall time from QEMU's start, s:",
            l.memory_bytes / MIB
        );
        let _ = writeln!(w);
        let _ = writeln!(
            w,
            "| | wall, s | guest uptime at marker, s | / 1 VM alone |"
        );
        let _ = writeln!(w, "|---|---|---|---|");
        let _ = writeln!(
            w,
            "| bare QEMU, -smp 1 | {} | - | {} |",
            spread(&l.bare_s, 2),
            times(ratio(l.bare_s.median, l.alone_s.median))
        );
        let _ = writeln!(
            w,
            "| Ferrovisor, 1 VM alone, {} harts | {} | {} | 1.00× |",
            l.harts,
            spread(&l.alone_s, 2),
            spread(&l.alone_uptime_s, 2)
        );
        let _ = writeln!(
            w,
            "| Ferrovisor, {} VMs on {} harts, first in userspace | {} | - | {} |",
            l.vms,
            l.harts,
            spread(&l.first_s, 2),
            times(ratio(l.first_s.median, l.alone_s.median))
        );
        let _ = writeln!(
            w,
            "| Ferrovisor, {} VMs on {} harts, all in userspace | {} | {} (median VM) | {} |",
            l.vms,
            l.harts,
            spread(&l.all_s, 2),
            spread(&l.all_uptime_s, 2),
            times(ratio(l.all_s.median, l.alone_s.median))
        );
        let _ = writeln!(
            w,
            "perfect sharing: {} single-vCPU VMs on {} harts take {:.2}× one VM alone",
            l.vms,
            l.harts,
            l.vms as f64 / f64::from(l.harts.max(1))
        );
    }
    let _ = writeln!(w);
    let _ = writeln!(w, "logs: {}", opts.log_dir.display());
    o
}

fn stat_json(s: &Stat) -> Json {
    Json::obj([
        ("median", Json::Num(s.median)),
        ("min", Json::Num(s.min)),
        ("max", Json::Num(s.max)),
        (
            "runs",
            Json::Arr(s.runs.iter().map(|v| Json::Num(*v)).collect()),
        ),
    ])
}

fn opt_json(s: Option<&Stat>) -> Json {
    s.map_or(Json::Null, stat_json)
}

/// The report as JSON.
pub fn to_json(r: &Report) -> Json {
    let probes = r
        .probes
        .iter()
        .map(|p| {
            Json::obj([
                ("vms", Json::Num(p.vms as f64)),
                ("expected_slice_us", Json::opt(p.expected_slice_us)),
                ("null_call_us", stat_json(&p.null_call_us)),
                ("stalls_per_s", stat_json(&p.stalls_per_s)),
                ("stall_us", opt_json(p.stall_us.as_ref())),
                ("switch_us", opt_json(p.switch_us.as_ref())),
                ("switch_p90_us", opt_json(p.switch_p90_us.as_ref())),
                ("switches", stat_json(&p.switches)),
                ("slice_us", opt_json(p.slice_us.as_ref())),
                ("slice_p10_us", opt_json(p.slice_p10_us.as_ref())),
                ("slice_p90_us", opt_json(p.slice_p90_us.as_ref())),
                ("anomalies", Json::Num(p.anomalies as f64)),
            ])
        })
        .collect();
    let linux = r.linux.as_ref().map_or(Json::Null, |l| {
        Json::obj([
            ("vms", Json::Num(l.vms as f64)),
            ("harts", Json::Num(f64::from(l.harts))),
            ("memory_bytes", Json::Num(l.memory_bytes as f64)),
            ("bare_s", stat_json(&l.bare_s)),
            ("alone_s", stat_json(&l.alone_s)),
            ("first_s", stat_json(&l.first_s)),
            ("all_s", stat_json(&l.all_s)),
            (
                "all_over_alone",
                Json::opt(ratio(l.all_s.median, l.alone_s.median)),
            ),
            ("alone_uptime_s", stat_json(&l.alone_uptime_s)),
            ("all_uptime_s", stat_json(&l.all_uptime_s)),
        ])
    });
    Json::obj([
        ("date", Json::str(r.date.clone())),
        ("runs", Json::Num(r.options.runs as f64)),
        ("qemu", r.qemu_version.clone().map_or(Json::Null, Json::Str)),
        ("period_us", Json::Num(r.period_us)),
        ("min_slice_us", Json::Num(r.min_slice_us)),
        ("probes", Json::Arr(probes)),
        ("linux", linux),
        ("logs", crate::bench::logs_json(&r.logs)),
    ])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use probe::Gap;

    #[test]
    fn scheduler_line() {
        let lines = [
            "ferrovisor: booting",
            "ferrovisor: scheduler: period 20000 us, min slice 1000 us, wake-up granularity 1000 us",
        ];
        assert_eq!(parse_scheduler_line(&lines), Some((20000.0, 1000.0)));
        assert_eq!(
            parse_scheduler_line(&["ferrovisor: scheduler: nonsense"]),
            None
        );
        assert_eq!(parse_scheduler_line::<&str>(&[]), None);
    }

    #[test]
    fn expected_slices() {
        assert_eq!(expected_slice_us(20000.0, 1000.0, 2), 10000.0);
        assert_eq!(expected_slice_us(20000.0, 1000.0, 4), 5000.0);
        assert_eq!(expected_slice_us(20000.0, 1000.0, 40), 1000.0);
        assert_eq!(expected_slice_us(20000.0, 1000.0, 0), 20000.0);
    }

    fn probe(start: u64, gaps: &[(u64, u64)], dropped: u64) -> Probe {
        Probe {
            null_call_ticks: 400,
            start,
            ticks: 100_000,
            reads: 1,
            dropped,
            threshold: 200,
            timebase: 10_000_000,
            gaps: gaps
                .iter()
                .map(|&(s, l)| Gap { start: s, len: l })
                .collect(),
        }
    }

    #[test]
    fn a_run_in_microseconds() {
        // Two VMs taking turns in 10 000-tick (1 ms) slices with 500-tick
        // (50 µs) switches: a runs from 0, b from 10 500.
        let a: Vec<(u64, u64)> = (0..4).map(|k| (21_000 * k + 10_000, 11_000)).collect();
        let b: Vec<(u64, u64)> = (0..4).map(|k| (21_000 * k + 20_500, 11_000)).collect();
        let r = probe_run(&[probe(0, &a, 0), probe(10_500, &b, 0)]).unwrap();
        assert_eq!(r.switch_us, Some(50.0));
        assert_eq!(r.slice_us, Some(1000.0));
        assert_eq!(r.null_call_us, 40.0);
        assert_eq!(r.anomalies, 0);
        assert!(r.switches >= 6, "{r:?}");
        let e = probe_run(&[probe(0, &a, 3)]).unwrap_err();
        assert!(e.contains("dropped 3"), "{e}");
        assert!(probe_run(&[]).is_err());
    }

    #[test]
    fn missing_binaries_say_how_to_build_them() {
        let dir = std::env::temp_dir().join(format!("fv-sched-bench-{}", std::process::id()));
        let opts = Options {
            hypervisor: dir.join("nope"),
            log_dir: dir.clone(),
            ..Options::new()
        };
        let e = setup(&opts).unwrap_err().to_string();
        assert!(e.contains("nope") && e.contains("build"), "{e}");
        let e = setup(&Options {
            runs: 0,
            ..opts.clone()
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("--runs"), "{e}");
        let e = setup(&Options {
            shares: vec![2, 0],
            ..opts
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("at least 1 VM"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
