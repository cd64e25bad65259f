//! `ferrovisor`: the host tool's command line.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use ferrovisor::qemu::{self, Control, QemuConfig, Stream};
use ferrovisor::{bench as benchmark, config, package, paths, ALL_VMS_STOPPED};

/// Ferrovisor host tool: builds the boot package and boots the hypervisor in QEMU.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Build the boot package for a config and boot it under the hypervisor in QEMU.
    /// Exits 0 only if the hypervisor reports that all VMs stopped and QEMU powers
    /// off cleanly.
    Run {
        /// The VM config file (YAML).
        #[arg(long)]
        config: PathBuf,
        /// Kill QEMU after this many seconds.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
        /// The hypervisor binary (ELF or flat) QEMU loads with -kernel.
        #[arg(long)]
        hypervisor: Option<PathBuf>,
    },
    /// Build the boot package for a config and write it to a file (no QEMU).
    Package {
        /// The VM config file (YAML).
        #[arg(long)]
        config: PathBuf,
        /// Where to write the package.
        #[arg(long, short)]
        output: PathBuf,
    },
    /// Benchmark: bench-guest under Ferrovisor and on bare QEMU, side by side (null
    /// SBI call, first touch of guest RAM, boot time to the first guest
    /// instruction, image size and memory per VM, wall time). Logs go to
    /// target/bench-logs/.
    Bench {
        /// Runs per side, alternating Ferrovisor and bare QEMU.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=1000))]
        runs: u32,
        /// The hypervisor ELF.
        #[arg(long)]
        hypervisor: Option<PathBuf>,
        /// Also write every figure as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
        /// The bench-guest ELF (default: its release build in the target directory).
        #[arg(long)]
        guest: Option<PathBuf>,
        /// Kill a QEMU run after this many seconds.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run {
            config,
            timeout,
            hypervisor,
        } => run(config, timeout, hypervisor),
        Command::Package { config, output } => package_only(config, output),
        Command::Bench {
            runs,
            hypervisor,
            json,
            guest,
            timeout,
        } => bench(runs, hypervisor, json, guest, timeout),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ferrovisor: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn package_only(config_path: PathBuf, output: PathBuf) -> Result<ExitCode> {
    let cfg = config::load(&config_path)?;
    let built = package::build(&cfg)?;
    package::write_atomically(&output, &built.bytes)?;
    for vm in &built.vms {
        eprintln!(
            "ferrovisor: VM `{}`: {} entry {:#x}, DTB at {:#x}{}",
            vm.name,
            vm.format,
            vm.entry,
            vm.dtb_gpa,
            vm.initrd_gpa
                .map(|g| format!(", initrd at {g:#x}"))
                .unwrap_or_default()
        );
    }
    eprintln!(
        "ferrovisor: wrote {} ({} bytes)",
        output.display(),
        built.bytes.len()
    );
    Ok(ExitCode::SUCCESS)
}

fn run(config_path: PathBuf, timeout: u64, hypervisor: Option<PathBuf>) -> Result<ExitCode> {
    let cfg = config::load(&config_path)?;
    let hypervisor = hypervisor.unwrap_or_else(paths::default_hypervisor);
    if !hypervisor.is_file() {
        bail!(
            "hypervisor binary {} does not exist; build it with {}",
            hypervisor.display(),
            paths::BUILD_COMMAND
        );
    }
    let built = package::build(&cfg)?;
    let cache = paths::cache_dir();
    let pkg_path = package::cache_path(&cache, &config_path);
    package::write_atomically(&pkg_path, &built.bytes)
        .with_context(|| format!("writing the boot package to {}", pkg_path.display()))?;
    let stem = pkg_path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "run".into());
    let log = cache.join("logs").join(format!("{stem}.log"));
    let qemu_cfg = QemuConfig::new(&cfg.machine, &hypervisor, Some(&pkg_path));
    eprintln!("ferrovisor: {}", qemu_cfg.command_line());

    let mut stopped_line = false;
    let stdout = std::io::stdout();
    let outcome = qemu::run(
        &qemu_cfg,
        Duration::from_secs(timeout),
        &log,
        |stream, line| {
            match stream {
                Stream::Serial => {
                    let mut out = stdout.lock();
                    let _ = writeln!(out, "{line}");
                    let _ = out.flush();
                    if line.contains(ALL_VMS_STOPPED) {
                        stopped_line = true;
                    }
                }
                Stream::Stderr => eprintln!("qemu: {line}"),
            }
            Control::Continue
        },
    )?;
    eprintln!("ferrovisor: log at {}", outcome.log_path.display());
    if outcome.timed_out {
        eprintln!("ferrovisor: timed out after {timeout} s; QEMU killed");
        return Ok(ExitCode::FAILURE);
    }
    if !outcome.clean_exit() {
        let status = outcome
            .status
            .map_or_else(|| "unknown status".into(), |s| s.to_string());
        eprintln!("ferrovisor: QEMU did not power off cleanly ({status})");
        return Ok(ExitCode::FAILURE);
    }
    if !stopped_line {
        eprintln!("ferrovisor: QEMU exited without `{ALL_VMS_STOPPED}`");
        return Ok(ExitCode::FAILURE);
    }
    eprintln!(
        "ferrovisor: clean shutdown after {:.1} s",
        outcome.elapsed.as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

fn bench(
    runs: u32,
    hypervisor: Option<PathBuf>,
    json: Option<PathBuf>,
    guest: Option<PathBuf>,
    timeout: u64,
) -> Result<ExitCode> {
    let defaults = benchmark::Options::new();
    let opts = benchmark::Options {
        runs: runs as usize,
        hypervisor: hypervisor.unwrap_or(defaults.hypervisor),
        guest: guest.unwrap_or(defaults.guest),
        timeout: Duration::from_secs(timeout),
        ..defaults
    };
    eprintln!(
        "ferrovisor bench: {} run(s) per side of {} (under {} / bare QEMU)",
        opts.runs,
        opts.guest.display(),
        opts.hypervisor.display()
    );
    let report = benchmark::run(&opts, &mut |line| eprintln!("ferrovisor bench: {line}"))?;
    print!("{}", benchmark::render(&report));
    if let Some(path) = json {
        let text = benchmark::json::Json::pretty(&benchmark::to_json(&report));
        package::write_atomically(&path, text.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("ferrovisor bench: figures written to {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
