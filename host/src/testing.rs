//! The integration-test harness: boot a set of VMs under the hypervisor in QEMU and
//! judge the serial output.
//!
//! A case passes when QEMU powers off cleanly (exit status 0) before the timeout,
//! every success pattern matched some line, and no failure pattern matched any.
//! For machines that never power off, [`Case::stop_after_success`] kills QEMU a
//! set time after the last success pattern matched instead.
//! The full log is kept at `target/qemu-logs/<case>.log` either way.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::config::{self, Config, Machine, VmConfig};
use crate::package;
use crate::paths;
use crate::qemu::{self, Control, QemuConfig, Stream};

/// Something to look for in a serial line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pattern {
    /// The line starts with this text, after an optional `[vm-name] ` prefix and
    /// leading spaces (so per-VM console prefixes do not hide a match).
    LineStart(String),
    /// The line contains this text.
    Contains(String),
    /// A `DONE: <guest> passed=<n> failed=<m>` line with `m` ≠ 0.
    DoneWithFailures,
}

impl Pattern {
    /// Whether `line` matches.
    pub fn matches(&self, line: &str) -> bool {
        match self {
            Pattern::LineStart(p) => strip_vm_prefix(line).starts_with(p.as_str()),
            Pattern::Contains(p) => line.contains(p.as_str()),
            Pattern::DoneWithFailures => {
                let l = strip_vm_prefix(line);
                l.starts_with("DONE:")
                    && l.split_whitespace()
                        .filter_map(|w| w.strip_prefix("failed="))
                        .any(|n| n.parse::<u64>() != Ok(0))
            }
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pattern::LineStart(p) => write!(f, "a line starting `{p}`"),
            Pattern::Contains(p) => write!(f, "a line containing `{p}`"),
            Pattern::DoneWithFailures => f.write_str("a `DONE:` line with failed≠0"),
        }
    }
}

fn strip_vm_prefix(line: &str) -> &str {
    let l = line.trim_start();
    if let Some(rest) = l.strip_prefix('[') {
        if let Some((_, after)) = rest.split_once(']') {
            return after.trim_start();
        }
    }
    l
}

/// The failure patterns every case checks: `FAIL:` lines, panics, the
/// hypervisor's trap dumps and fatal errors, and `DONE:` lines reporting failures.
pub fn standard_failure_patterns() -> Vec<Pattern> {
    vec![
        Pattern::LineStart("FAIL:".into()),
        Pattern::Contains("panicked".into()),
        Pattern::Contains("ferrovisor: TRAP".into()),
        Pattern::Contains("ferrovisor: FATAL".into()),
        Pattern::DoneWithFailures,
    ]
}

/// Which VMs a case boots.
#[derive(Clone, Debug)]
pub enum CaseVms {
    /// A config file (its `machine` section is the base for [`MachineArgs`]).
    ConfigFile(PathBuf),
    /// VMs given in code.
    List(Vec<VmConfig>),
}

/// Overrides of the machine (QEMU) settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MachineArgs {
    /// `-smp`.
    pub cpus: Option<u32>,
    /// `-m`.
    pub memory_bytes: Option<u64>,
    /// `-cpu`, e.g. `rv64,sstc=false`.
    pub cpu: Option<String>,
    /// Extra `-machine` properties.
    pub options: Option<String>,
}

/// One integration test.
#[derive(Clone, Debug)]
pub struct Case {
    /// Name; the log goes to `target/qemu-logs/<name>.log`.
    pub name: String,
    /// The VMs.
    pub vms: CaseVms,
    /// Machine settings.
    pub machine: MachineArgs,
    /// Hard limit on QEMU's run time.
    pub timeout: Duration,
    /// Each must match at least one serial line.
    pub success_patterns: Vec<Pattern>,
    /// None may match any serial line.
    pub failure_patterns: Vec<Pattern>,
    /// QEMU must exit by itself with status 0 (a clean poweroff).
    pub require_clean_exit: bool,
    /// The hypervisor binary; `None` means [`paths::default_hypervisor`].
    pub hypervisor: Option<PathBuf>,
    /// For machines that never power off (a VM that runs forever): once every
    /// success pattern has matched, keep QEMU running this much longer (failure
    /// patterns still apply), then kill it; the case then passes without a
    /// clean exit. `None`: wait for QEMU to exit by itself.
    pub stop_after_success: Option<Duration>,
    /// Extra QEMU arguments, appended verbatim (e.g. host devices such as
    /// `-drive …` `-device virtio-blk-device,…` for tests of the hypervisor's
    /// own drivers). For tests only; no config field sets these.
    pub qemu_args: Vec<String>,
    /// Device records for the boot package, per VM (index in `vms`): VM
    /// disks and entropy devices served from the host devices `qemu_args`
    /// attach. For tests only.
    pub vm_devices: Vec<Vec<fv_bootpkg::VmDevice>>,
}

impl Case {
    /// A case with the standard failure patterns, success meaning
    /// [`crate::ALL_VMS_STOPPED`] and a clean exit, and a 60 s timeout.
    pub fn new(name: impl Into<String>, vms: CaseVms) -> Case {
        Case {
            name: name.into(),
            vms,
            machine: MachineArgs::default(),
            timeout: Duration::from_secs(60),
            success_patterns: vec![Pattern::Contains(crate::ALL_VMS_STOPPED.into())],
            failure_patterns: standard_failure_patterns(),
            require_clean_exit: true,
            hypervisor: None,
            stop_after_success: None,
            qemu_args: Vec::new(),
            vm_devices: Vec::new(),
        }
    }
}

/// A passed case.
#[derive(Clone, Debug)]
pub struct CaseReport {
    /// The full serial log.
    pub log_path: PathBuf,
    /// QEMU's wall time.
    pub elapsed: Duration,
    /// Serial lines seen.
    pub serial_lines: usize,
}

/// Why a case failed. Every variant that ran QEMU carries the log path.
#[derive(Clone, Debug)]
pub enum CaseError {
    /// The case could not be set up (config, package, missing hypervisor).
    Setup(String),
    /// QEMU could not be started.
    Launch {
        /// What went wrong.
        message: String,
        /// The log file.
        log: PathBuf,
    },
    /// A failure pattern matched.
    FailureLine {
        /// The serial line.
        line: String,
        /// The pattern it matched.
        pattern: Pattern,
        /// The log file.
        log: PathBuf,
    },
    /// QEMU ran into the timeout.
    Timeout {
        /// The timeout.
        after: Duration,
        /// Success patterns not seen by then.
        missing: Vec<Pattern>,
        /// The log file.
        log: PathBuf,
    },
    /// QEMU exited but a success pattern never matched.
    MissingSuccess {
        /// The patterns not seen.
        missing: Vec<Pattern>,
        /// QEMU's exit status.
        status: String,
        /// The log file.
        log: PathBuf,
    },
    /// QEMU exited with a non-zero status (not a clean poweroff).
    QemuExit {
        /// QEMU's exit status.
        status: String,
        /// Its last stderr lines.
        stderr: Vec<String>,
        /// The log file.
        log: PathBuf,
    },
}

fn list(patterns: &[Pattern]) -> String {
    patterns
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for CaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CaseError::Setup(m) => write!(f, "setup failed: {m}"),
            CaseError::Launch { message, log } => {
                write!(f, "{message} (log: {})", log.display())
            }
            CaseError::FailureLine { line, pattern, log } => write!(
                f,
                "failure line (matched {pattern}):\n    {line}\nlog: {}",
                log.display()
            ),
            CaseError::Timeout {
                after,
                missing,
                log,
            } => {
                write!(f, "timeout after {} s", after.as_secs_f64())?;
                if !missing.is_empty() {
                    write!(f, "; never saw {}", list(missing))?;
                }
                write!(f, "\nlog: {}", log.display())
            }
            CaseError::MissingSuccess {
                missing,
                status,
                log,
            } => write!(
                f,
                "QEMU ended ({status}) without {}\nlog: {}",
                list(missing),
                log.display()
            ),
            CaseError::QemuExit {
                status,
                stderr,
                log,
            } => {
                write!(f, "QEMU did not power off cleanly ({status})")?;
                for l in stderr {
                    write!(f, "\n    qemu: {l}")?;
                }
                write!(f, "\nlog: {}", log.display())
            }
        }
    }
}

impl std::error::Error for CaseError {}

/// After a failure line, keep logging this long (a trap dump spans several lines).
const FAILURE_GRACE: Duration = Duration::from_secs(1);

/// Runs one case (see the module documentation for what passing means).
pub fn run_case(case: &Case) -> Result<CaseReport, CaseError> {
    let safe = paths::sanitize(&case.name);
    let log = paths::qemu_log_dir().join(format!("{safe}.log"));
    let config = case_config(case).map_err(CaseError::Setup)?;
    let hypervisor = case
        .hypervisor
        .clone()
        .unwrap_or_else(paths::default_hypervisor);
    if !hypervisor.is_file() {
        return Err(CaseError::Setup(format!(
            "hypervisor binary {} does not exist; build it with {}",
            hypervisor.display(),
            paths::BUILD_COMMAND
        )));
    }
    let built = package::build_with_devices(&config, &case.vm_devices)
        .map_err(|e| CaseError::Setup(format!("{e:#}")))?;
    let pkg_path = paths::target_dir()
        .join("qemu-cases")
        .join(format!("{safe}.fvpkg"));
    package::write_atomically(&pkg_path, &built.bytes)
        .map_err(|e| CaseError::Setup(format!("{e:#}")))?;
    let mut qemu_cfg =
        QemuConfig::new(&config.machine, &hypervisor, Some(&pkg_path)).with_devices(&config.plan);
    qemu_cfg.extra_args.clone_from(&case.qemu_args);

    let mut seen = vec![false; case.success_patterns.len()];
    let mut failure: Option<(String, Pattern)> = None;
    let mut stopping = false;
    let outcome = qemu::run(&qemu_cfg, case.timeout, &log, |stream, line| {
        if stream != Stream::Serial {
            return Control::Continue;
        }
        for (s, p) in seen.iter_mut().zip(&case.success_patterns) {
            if !*s && p.matches(line) {
                *s = true;
            }
        }
        if failure.is_none() {
            if let Some(p) = case.failure_patterns.iter().find(|p| p.matches(line)) {
                failure = Some((line.to_string(), p.clone()));
                return Control::StopWithin(FAILURE_GRACE);
            }
        }
        if let Some(linger) = case.stop_after_success {
            if !stopping && seen.iter().all(|s| *s) {
                stopping = true;
                return Control::StopWithin(linger);
            }
        }
        Control::Continue
    })
    .map_err(|e| CaseError::Launch {
        message: e.to_string(),
        log: log.clone(),
    })?;

    if let Some((line, pattern)) = failure {
        return Err(CaseError::FailureLine { line, pattern, log });
    }
    let missing: Vec<Pattern> = case
        .success_patterns
        .iter()
        .zip(&seen)
        .filter(|(_, s)| !**s)
        .map(|(p, _)| p.clone())
        .collect();
    if outcome.timed_out {
        return Err(CaseError::Timeout {
            after: case.timeout,
            missing,
            log,
        });
    }
    let status = outcome
        .status
        .map_or_else(|| "unknown status".to_string(), |s| s.to_string());
    // Killed on request after every success pattern matched (and no failure).
    let stopped_on_success =
        case.stop_after_success.is_some() && outcome.stopped && missing.is_empty();
    if case.require_clean_exit && !outcome.clean_exit() && !stopped_on_success {
        return Err(CaseError::QemuExit {
            status,
            stderr: outcome.stderr_tail,
            log,
        });
    }
    if !missing.is_empty() {
        return Err(CaseError::MissingSuccess {
            missing,
            status,
            log,
        });
    }
    Ok(CaseReport {
        log_path: log,
        elapsed: outcome.elapsed,
        serial_lines: outcome.serial_lines,
    })
}

/// The case's configuration, machine overrides applied.
fn case_config(case: &Case) -> Result<Config, String> {
    let (path, mut machine, vms, devices) = match &case.vms {
        CaseVms::ConfigFile(p) => {
            let c = config::load(p).map_err(|e| e.to_string())?;
            (c.path, c.machine, c.vms, c.devices)
        }
        CaseVms::List(vms) => {
            let sum: u64 = vms.iter().map(|v| v.memory_bytes).sum();
            let machine = Machine {
                arch: config::Arch::Riscv64,
                cpus: vms.iter().map(|v| v.vcpus).max().unwrap_or(1),
                memory_bytes: sum.saturating_add(config::DEFAULT_HOST_OVERHEAD),
                cpu: None,
                options: None,
            };
            (
                PathBuf::from(format!("<case {}>", case.name)),
                machine,
                vms.clone(),
                crate::devices::Devices::none(vms.len()),
            )
        }
    };
    let m = &case.machine;
    if let Some(c) = m.cpus {
        machine.cpus = c;
    }
    if let Some(b) = m.memory_bytes {
        machine.memory_bytes = b;
    }
    if m.cpu.is_some() {
        machine.cpu = m.cpu.clone();
    }
    if m.options.is_some() {
        machine.options = m.options.clone();
    }
    Config::from_parts_with_devices(&path, machine, vms, devices).map_err(|e| e.to_string())
}

/// A VM running one test-guest binary (`target/riscv64gc-unknown-none-elf/release/<guest>`).
pub fn guest_vm(guest: &str, vcpus: u32, memory_bytes: u64) -> VmConfig {
    VmConfig {
        name: guest.to_string(),
        vcpus,
        memory_bytes,
        kernel: paths::bare_metal_binary(guest),
        kernel_format: crate::loader::FormatChoice::Auto,
        console: crate::config::ConsoleChoice::Uart,
        initrd: None,
        command_line: String::new(),
        weight: fv_bootpkg::DEFAULT_WEIGHT,
        pin: None,
    }
}

/// Fails with a clear message if a bare-metal binary has not been built.
pub fn require_built(binary: &Path) -> Result<(), CaseError> {
    if binary.is_file() {
        Ok(())
    } else {
        Err(CaseError::Setup(format!(
            "{} does not exist; build it with scripts/build.sh",
            binary.display()
        )))
    }
}

/// Runs `case` and prints a one-line verdict plus, on failure, the error; returns
/// the result for the test to assert on.
pub fn run_and_report(case: &Case) -> Result<CaseReport, CaseError> {
    let t0 = Instant::now();
    let r = run_case(case);
    match &r {
        Ok(rep) => eprintln!(
            "[{}] PASS in {:.1} s (log: {})",
            case.name,
            t0.elapsed().as_secs_f64(),
            rep.log_path.display()
        ),
        Err(e) => eprintln!("[{}] FAIL: {e}", case.name),
    }
    r
}

/// Writes `bytes` to a fresh file under `target/qemu-cases/` and returns its path
/// (for tests that make their own payloads).
pub fn scratch_file(name: &str, bytes: &[u8]) -> std::io::Result<PathBuf> {
    let p = paths::target_dir()
        .join("qemu-cases")
        .join(paths::sanitize(name));
    if let Some(d) = p.parent() {
        fs::create_dir_all(d)?;
    }
    fs::write(&p, bytes)?;
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_patterns() {
        let f = standard_failure_patterns();
        let hit = |l: &str| f.iter().any(|p| p.matches(l));
        assert!(hit("FAIL: sbi-test/probe: got -2"));
        assert!(hit("[vm0] FAIL: sbi-test/probe: got -2"));
        assert!(hit("ferrovisor: panicked at src/main.rs:3:5"));
        assert!(hit("ferrovisor: TRAP scause=0x5 sepc=0x80200000"));
        assert!(hit("ferrovisor: FATAL: no memory"));
        assert!(hit("DONE: sbi-test passed=3 failed=1"));
        assert!(!hit("DONE: sbi-test passed=3 failed=0"));
        assert!(!hit("PASS: sbi-test/probe"));
        assert!(!hit("a test that says FAIL: in the middle"));
        assert!(!hit("ferrovisor: all VMs stopped"));
    }

    #[test]
    fn line_start_ignores_vm_prefix_only() {
        let p = Pattern::LineStart("DONE: sbi-test passed=".into());
        assert!(p.matches("DONE: sbi-test passed=5 failed=0"));
        assert!(p.matches("  [sbi-test] DONE: sbi-test passed=5 failed=0"));
        assert!(!p.matches("xDONE: sbi-test passed=5"));
    }

    #[test]
    fn case_config_applies_overrides() {
        let dir = std::env::temp_dir().join(format!("fv-case-{}", std::process::id()));
        fs::create_dir_all(&dir).ok();
        let k = dir.join("k.bin");
        fs::write(&k, [0x6f, 0, 0, 0]).ok();
        let vm = VmConfig {
            kernel: k,
            kernel_format: crate::loader::FormatChoice::Flat,
            console: crate::config::ConsoleChoice::Uart,
            ..guest_vm("g", 2, 64 << 20)
        };
        let mut case = Case::new("c", CaseVms::List(vec![vm]));
        case.machine.cpus = Some(4);
        case.machine.cpu = Some("rv64,sstc=false".into());
        let c = case_config(&case);
        assert!(c.is_ok(), "{c:?}");
        if let Ok(c) = c {
            assert_eq!(c.machine.cpus, 4);
            assert_eq!(c.machine.cpu.as_deref(), Some("rv64,sstc=false"));
            assert_eq!(
                c.machine.memory_bytes,
                (64 << 20) + config::DEFAULT_HOST_OVERHEAD
            );
        }
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn missing_hypervisor_says_how_to_build_it() {
        let dir = std::env::temp_dir().join(format!("fv-case-hv-{}", std::process::id()));
        fs::create_dir_all(&dir).ok();
        let k = dir.join("k.bin");
        fs::write(&k, [0x6f, 0, 0, 0]).ok();
        let mut case = Case::new(
            "nohv",
            CaseVms::List(vec![VmConfig {
                kernel: k,
                kernel_format: crate::loader::FormatChoice::Flat,
                console: crate::config::ConsoleChoice::Uart,
                ..guest_vm("g", 1, 64 << 20)
            }]),
        );
        case.hypervisor = Some(dir.join("no-such-hypervisor"));
        let e = run_case(&case).map(|_| ()).err().map(|e| e.to_string());
        let e = e.unwrap_or_default();
        assert!(e.contains("no-such-hypervisor"), "{e}");
        assert!(e.contains("scripts/build.sh"), "{e}");
        let _ = fs::remove_dir_all(&dir);
    }
}
