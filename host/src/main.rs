//! `ferrovisor`: the host tool's command line.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use ferrovisor::instance::{cli, rest, runtime, server};
use ferrovisor::qemu::{self, Control, Input, QemuConfig, RunOptions, Stream};
use ferrovisor::{bench as benchmark, config, devices, package, paths, ALL_VMS_STOPPED, MIB};

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
    ///
    /// The serial console (every VM's lines, prefixed `[<vm>] `, and the
    /// hypervisor's) streams to stdout as it arrives; standard input goes to the
    /// serial console, i.e. to the VM that has the console focus (the first).
    /// On a terminal this is an interactive session (QEMU's keys: Ctrl-A x quits,
    /// Ctrl-A h lists them; the hypervisor's Ctrl-A n, input to the next VM, is
    /// typed Ctrl-A Ctrl-A n). Ends when every VM has stopped. Exit status: 0 only if
    /// the hypervisor reports that all VMs stopped and QEMU powers off cleanly;
    /// 1 when a VM failed or QEMU did not exit cleanly; 124 on --timeout; 130 when
    /// interrupted (SIGINT, SIGTERM, SIGHUP).
    Run {
        /// The VM config file (YAML).
        #[arg(long)]
        config: PathBuf,
        /// Kill QEMU and fail after this many seconds (default: no limit).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        timeout: Option<u64>,
        /// The hypervisor binary (ELF or flat) QEMU loads with -kernel.
        #[arg(long)]
        hypervisor: Option<PathBuf>,
        /// The instance's name, for `ferrovisor ps`, `vm`, `stats`, `logs` and
        /// `console` from other terminals (default: the config file's name).
        #[arg(long)]
        name: Option<String>,
        /// Also serve the REST API on this loopback TCP address (IP:PORT,
        /// e.g. 127.0.0.1:8080; port 0 picks a free one). It is always
        /// served on the instance's `http.sock`.
        #[arg(long, value_name = "IP:PORT")]
        http: Option<String>,
    },
    /// List the running instances (`ferrovisor run`s) of this user.
    Ps {
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Act on a VM of a running instance.
    Vm {
        #[command(subcommand)]
        action: VmAction,
        #[command(flatten)]
        target: Target,
    },
    /// Counters per VM and vCPU (and per hart without VM) of a running instance.
    Stats {
        /// One VM (default: all, and the harts).
        vm: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// A VM's console output since its instance started.
    Logs {
        /// The VM.
        vm: String,
        /// Keep printing new output until the instance ends.
        #[arg(short, long)]
        follow: bool,
        /// The instance (needed when several are running).
        #[arg(long)]
        instance: Option<String>,
    },
    /// Print the hypervisor's events (VM state changes, dropped console
    /// output) as they happen, until the instance ends.
    Events {
        #[command(flatten)]
        target: Target,
    },
    /// Attach to a VM's console (input goes to that VM); Ctrl-] detaches.
    Console {
        /// The VM.
        vm: String,
        /// The instance (needed when several are running).
        #[arg(long)]
        instance: Option<String>,
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
    /// target/bench-logs/. With --linux: the Debian Linux guest instead (boot to
    /// userspace, CPU, syscall and page-touching loops in the guest, each against
    /// its target ratio); logs go to target/bench-logs/linux/. With --sched: the
    /// vCPU scheduler (switch cost, time-slice accuracy, 8 Linux VMs booting at
    /// once on 2 harts against one alone); logs go to target/bench-logs/sched/.
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
        #[arg(long, conflicts_with_all = ["linux", "sched"])]
        guest: Option<PathBuf>,
        /// Kill a QEMU run after this many seconds (default 120); with --linux, the
        /// limit on each step of a run (boot to the shell, each benchmark, power-off;
        /// default 180).
        #[arg(long)]
        timeout: Option<u64>,
        /// Benchmark the Linux guest of scripts/fetch-linux.sh instead of bench-guest.
        #[arg(long, conflicts_with = "sched")]
        linux: bool,
        /// Benchmark the vCPU scheduler instead of bench-guest.
        #[arg(long)]
        sched: bool,
        /// With --sched: Linux VMs booted at once on 2 harts (0: skip the Linux part).
        #[arg(long, requires = "sched", default_value_t = 8, value_parser = clap::value_parser!(u32).range(0..=32))]
        linux_vms: u32,
        /// With --linux or --sched: the kernel Image (default: the one
        /// fetch-linux.sh chose last).
        #[arg(long)]
        kernel: Option<PathBuf>,
        /// With --linux or --sched: the initramfs (default: the one fetch-linux.sh
        /// chose last).
        #[arg(long)]
        initrd: Option<PathBuf>,
        /// With --linux: repetitions of each in-guest benchmark per boot.
        #[arg(long, requires = "linux", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
        reps: u32,
        /// With --linux: no uncounted warm-up run of each benchmark before the
        /// repetitions.
        #[arg(long, requires = "linux")]
        no_warmup: bool,
        /// Run QEMU with `-icount shift=0,sleep=off` on both sides: the guest's clock
        /// counts instructions, so the figures the guest times itself (and
        /// their ratios) repeat exactly; wall times stay noisy.
        #[arg(long)]
        icount: bool,
    },
}

/// Which running instance, and how to print.
#[derive(clap::Args, Debug)]
struct Target {
    /// The instance (needed when several are running).
    #[arg(long, global = true)]
    instance: Option<String>,
    /// JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand, Debug)]
enum VmAction {
    /// Every VM, its state and placement.
    List,
    /// One VM and its vCPUs.
    Info {
        /// The VM.
        vm: String,
    },
    /// Stop scheduling its vCPUs (its clock stands still).
    Pause {
        /// The VM.
        vm: String,
    },
    /// Schedule a paused VM again.
    Resume {
        /// The VM.
        vm: String,
    },
    /// Stop it for good (forced).
    Stop {
        /// The VM.
        vm: String,
    },
    /// Reset it and reload its images.
    Reboot {
        /// The VM.
        vm: String,
    },
    /// Stop it and free its memory.
    Destroy {
        /// The VM.
        vm: String,
    },
    /// Create it again from the configuration and run it.
    Start {
        /// The VM.
        vm: String,
    },
}

impl VmAction {
    /// The management command line.
    fn line(&self) -> String {
        match self {
            VmAction::List => "vm list".into(),
            VmAction::Info { vm } => format!("vm info {vm}"),
            VmAction::Pause { vm } => format!("vm pause {vm}"),
            VmAction::Resume { vm } => format!("vm resume {vm}"),
            VmAction::Stop { vm } => format!("vm stop {vm}"),
            VmAction::Reboot { vm } => format!("vm reboot {vm}"),
            VmAction::Destroy { vm } => format!("vm destroy {vm}"),
            VmAction::Start { vm } => format!("vm start {vm}"),
        }
    }
}

/// Exit status of a subcommand acting on a running instance.
fn ctl(r: Result<(), cli::CtlError>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => ExitCode::from(cli::fail(&e)),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run {
            config,
            timeout,
            hypervisor,
            name,
            http,
        } => run(config, timeout, hypervisor, name, http),
        Command::Ps { json } => return ctl(cli::ps(json)),
        Command::Vm { action, target } => {
            return ctl(cli::command(
                target.instance.as_deref(),
                &action.line(),
                target.json,
            ))
        }
        Command::Stats { vm, target } => {
            let line = vm.map_or_else(|| "stats".to_string(), |v| format!("stats {v}"));
            return ctl(cli::command(target.instance.as_deref(), &line, target.json));
        }
        Command::Logs {
            vm,
            follow,
            instance,
        } => return ctl(cli::logs(instance.as_deref(), &vm, follow)),
        Command::Events { target } => {
            return ctl(cli::events(target.instance.as_deref(), target.json))
        }
        Command::Console { vm, instance } => return ctl(cli::console(instance.as_deref(), &vm)),
        Command::Package { config, output } => package_only(config, output),
        Command::Bench {
            runs,
            hypervisor,
            json,
            guest,
            timeout,
            linux: false,
            sched: false,
            icount,
            ..
        } => bench(
            runs,
            hypervisor,
            json,
            guest,
            timeout.unwrap_or(120),
            icount,
        ),
        Command::Bench {
            runs,
            hypervisor,
            json,
            timeout,
            sched: true,
            linux_vms,
            kernel,
            initrd,
            icount,
            ..
        } => bench_sched(
            runs, hypervisor, json, kernel, initrd, timeout, linux_vms, icount,
        ),
        Command::Bench {
            runs,
            hypervisor,
            json,
            timeout,
            linux: true,
            sched: false,
            kernel,
            initrd,
            reps,
            no_warmup,
            icount,
            ..
        } => bench_linux(
            runs, reps, !no_warmup, hypervisor, json, kernel, initrd, timeout, icount,
        ),
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
    if output.is_dir() {
        bail!(
            "`--output` {} is a directory; give the package's file name",
            output.display()
        );
    }
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

/// Set by the signal handler `ferrovisor run` installs; QEMU is stopped when set.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_signal: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Release);
}

/// SIGINT, SIGTERM and SIGHUP set [`INTERRUPTED`] instead of killing us, so the run
/// loop can end QEMU (and restore the terminal) before we exit.
fn catch_signals() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe; signal(2) takes the function's address as an integer.
        unsafe {
            libc::signal(
                sig,
                on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
            );
        }
    }
}

/// Exit status of `ferrovisor run` after its `--timeout` (as timeout(1)).
const EXIT_TIMEOUT: u8 = 124;
/// Exit status of `ferrovisor run` after SIGINT/SIGTERM/SIGHUP (128 + SIGINT).
const EXIT_INTERRUPTED: u8 = 130;

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / MIB as f64)
}

fn file_size(path: &std::path::Path) -> String {
    std::fs::metadata(path).map_or_else(|_| "?".into(), |m| mib(m.len()))
}

/// The instance name `ferrovisor run` uses: `--name`, else the config file's
/// name without its extension (when that is a valid name), else `run`.
fn instance_name(given: Option<String>, config: &std::path::Path) -> Result<String> {
    if let Some(n) = given {
        if !runtime::valid_name(&n) {
            bail!("--name `{n}`: use 1 to 64 letters, digits, `.`, `_` or `-`, starting with a letter or digit");
        }
        return Ok(n);
    }
    Ok(config
        .file_stem()
        .and_then(|s| s.to_str())
        .filter(|s| runtime::valid_name(s))
        .unwrap_or("run")
        .to_string())
}

fn run(
    config_path: PathBuf,
    timeout: Option<u64>,
    hypervisor: Option<PathBuf>,
    name: Option<String>,
    http: Option<String>,
) -> Result<ExitCode> {
    let t0 = Instant::now();
    let name = instance_name(name, &config_path)?;
    let http = http
        .map(|a| rest::check_http_addr(&a))
        .transpose()
        .map_err(anyhow::Error::msg)?;
    // Everything that can be checked is, before a package is written or QEMU
    // started: the config (files, formats, devices, the machine's memory), the
    // host's memory and ports, the hypervisor binary.
    let cfg = config::load(&config_path)?;
    cfg.check_host_ports()?;
    match qemu::HostMemory::read() {
        Ok(host) => {
            cfg.check_host_memory(&host)?;
            if let Some(free) = host.available.filter(|&a| a < cfg.machine.memory_bytes) {
                eprintln!(
                    "ferrovisor: note: the machine's {} is more than the {} this host has available now; QEMU takes guest RAM as it is touched, so this may work, or swap",
                    config::format_size(cfg.machine.memory_bytes),
                    qemu::mib(free)
                );
            }
        }
        Err(e) => {
            eprintln!("ferrovisor: warning: cannot tell the host's memory ({e}); not checked")
        }
    }
    let hypervisor = hypervisor.unwrap_or_else(paths::default_hypervisor);
    if let Err(problem) = config::check_input_file(&hypervisor, "hypervisor binary") {
        if hypervisor.exists() {
            bail!("{problem}");
        }
        bail!("{problem}; build it with {}", paths::BUILD_COMMAND);
    }
    eprintln!(
        "ferrovisor: {}: {} VM(s) on a {}-CPU machine with {}",
        config_path.display(),
        cfg.vms.len(),
        cfg.machine.cpus,
        config::format_size(cfg.machine.memory_bytes)
    );
    for vm in &cfg.vms {
        eprintln!(
            "ferrovisor: VM `{}`: {} vCPU(s), {}; kernel {} ({}){}",
            vm.name,
            vm.vcpus,
            config::format_size(vm.memory_bytes),
            vm.kernel.display(),
            file_size(&vm.kernel),
            vm.initrd
                .as_ref()
                .map(|p| format!(", initrd {} ({})", p.display(), file_size(p)))
                .unwrap_or_default()
        );
    }
    let names: Vec<&str> = cfg.vms.iter().map(|v| v.name.as_str()).collect();
    for line in devices::describe(&cfg.devices, &cfg.plan, &names) {
        eprintln!("ferrovisor: {line}");
    }
    eprintln!("ferrovisor: building the boot package ...");
    let built = package::build(&cfg)?;
    let cache = paths::cache_dir();
    let pkg_path = package::cache_path(&cache, &config_path);
    package::write_atomically(&pkg_path, &built.bytes)
        .with_context(|| format!("writing the boot package to {}", pkg_path.display()))?;
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
        "ferrovisor: boot package {} ({}) built in {:.1} s",
        pkg_path.display(),
        mib(built.bytes.len() as u64),
        t0.elapsed().as_secs_f64()
    );
    let stem = pkg_path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "run".into());
    let log = cache.join("logs").join(format!("{stem}.log"));
    let mut qemu_cfg =
        QemuConfig::new(&cfg.machine, &hypervisor, Some(&pkg_path)).with_devices(&cfg.plan);
    // The instance: its runtime directory, its server and the machine's
    // control device. The device goes last on QEMU's command line, after
    // every other virtio device (QEMU's `virt` fills its virtio-mmio slots
    // in command-line order, from the top), so it never moves theirs.
    let dir = runtime::InstanceDir::new(&runtime::base_dir(), &name);
    let sock = dir.qemu_socket().display().to_string();
    if sock.len() > 100 || sock.contains(',') {
        bail!(
            "instance `{name}`: the runtime directory {} makes a socket path QEMU cannot use (over 100 bytes, or a comma); set {} to a shorter directory",
            dir.dir.display(),
            runtime::RUNTIME_ENV
        );
    }
    let token = dir
        .create(&[("config", config_path.display().to_string())])
        .with_context(|| format!("instance `{name}`"))?;
    let _cleanup = RemoveOnDrop(dir.clone());
    let server = server::Server::start(dir.clone(), token).with_context(|| {
        format!(
            "serving instance `{name}` on {}",
            dir.api_socket().display()
        )
    })?;
    let mut rest_server = rest::Rest::start(dir.clone(), dir.token()?, http)
        .with_context(|| format!("serving instance `{name}`'s REST API"))?;
    eprintln!(
        "ferrovisor: REST API on {}{} (bearer tokens: {}, read-only {})",
        dir.http_socket().display(),
        rest_server
            .tcp
            .map(|a| format!(" and http://{a}"))
            .unwrap_or_default(),
        dir.token_file().display(),
        dir.token_ro_file().display()
    );
    qemu_cfg
        .extra_args
        .extend(qemu::control_device_args(&dir.qemu_socket()));
    eprintln!("ferrovisor: {}", qemu_cfg.command_line());
    eprintln!(
        "ferrovisor: instance `{name}` at {} (`ferrovisor ps`, `ferrovisor vm list --instance {name}`)",
        dir.dir.display()
    );
    let interactive = std::io::stdin().is_terminal();
    let first = cfg.vms.first().map_or("", |v| v.name.as_str());
    if interactive {
        let next = if cfg.vms.len() > 1 {
            "; Ctrl-A Ctrl-A n: input to the next VM"
        } else {
            ""
        };
        eprintln!(
            "ferrovisor: typing goes to VM `{first}`{next}; Ctrl-A x: quit QEMU at once, Ctrl-A h: QEMU's keys"
        );
    }
    eprintln!(
        "ferrovisor: serial log at {}; {}",
        log.display(),
        timeout.map_or_else(|| "no timeout".to_string(), |t| format!("timeout {t} s"))
    );

    catch_signals();
    let opts = RunOptions {
        timeout: timeout.map(Duration::from_secs),
        input: Input::Inherit,
        interrupt: Some(&INTERRUPTED),
    };
    let mut stopped_line: Option<String> = None;
    let stdout = std::io::stdout();
    let outcome = qemu::run_with(
        &qemu_cfg,
        &opts,
        &log,
        |stream, line| {
            match stream {
                Stream::Serial => {
                    if stopped_line.is_none() && line.contains(ALL_VMS_STOPPED) {
                        stopped_line = Some(line.trim().to_string());
                    }
                }
                Stream::Stderr => eprintln!("qemu: {line}"),
            }
            Control::Continue
        },
        |stream, bytes| {
            if stream == Stream::Serial {
                let mut out = stdout.lock();
                let _ = out.write_all(bytes);
                let _ = out.flush();
            }
        },
    )?;
    server.shutdown();
    rest_server.shutdown();
    // The console may have stopped mid-line.
    eprintln!();
    eprintln!("ferrovisor: serial log at {}", outcome.log_path.display());
    if outcome.interrupted {
        eprintln!("ferrovisor: interrupted; QEMU killed");
        return Ok(ExitCode::from(EXIT_INTERRUPTED));
    }
    if outcome.timed_out {
        eprintln!(
            "ferrovisor: timed out after {} s; QEMU killed",
            timeout.unwrap_or_default()
        );
        return Ok(ExitCode::from(EXIT_TIMEOUT));
    }
    if !outcome.clean_exit() {
        let status = outcome
            .status
            .map_or_else(|| "unknown status".into(), |s| s.to_string());
        match &stopped_line {
            Some(l) => eprintln!("ferrovisor: not every VM stopped cleanly ({l}); QEMU {status}"),
            None => eprintln!("ferrovisor: QEMU did not power off cleanly ({status})"),
        }
        return Ok(ExitCode::FAILURE);
    }
    if stopped_line.is_none() {
        eprintln!("ferrovisor: QEMU exited without `{ALL_VMS_STOPPED}`");
        return Ok(ExitCode::FAILURE);
    }
    eprintln!(
        "ferrovisor: clean shutdown after {:.1} s",
        outcome.elapsed.as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

/// Removes an instance's runtime directory when `run` returns.
struct RemoveOnDrop(runtime::InstanceDir);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        self.0.remove();
    }
}

fn bench(
    runs: u32,
    hypervisor: Option<PathBuf>,
    json: Option<PathBuf>,
    guest: Option<PathBuf>,
    timeout: u64,
    icount: bool,
) -> Result<ExitCode> {
    let defaults = benchmark::Options::new();
    let opts = benchmark::Options {
        runs: runs as usize,
        icount,
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
    report_bench(
        "ferrovisor bench",
        &benchmark::render(&report),
        &benchmark::to_json(&report),
        json,
    )
}

/// Prints a benchmark's table and, with `--json PATH`, writes its figures.
fn report_bench(
    tag: &str,
    table: &str,
    figures: &benchmark::json::Json,
    json: Option<PathBuf>,
) -> Result<ExitCode> {
    print!("{table}");
    if let Some(path) = json {
        package::write_atomically(&path, figures.pretty().as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("{tag}: figures written to {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

#[allow(clippy::too_many_arguments)]
fn bench_sched(
    runs: u32,
    hypervisor: Option<PathBuf>,
    json: Option<PathBuf>,
    kernel: Option<PathBuf>,
    initrd: Option<PathBuf>,
    timeout: Option<u64>,
    linux_vms: u32,
    icount: bool,
) -> Result<ExitCode> {
    let defaults = benchmark::sched::Options::new();
    let opts = benchmark::sched::Options {
        icount,
        runs: runs as usize,
        hypervisor: hypervisor.unwrap_or(defaults.hypervisor),
        kernel: kernel.unwrap_or(defaults.kernel),
        initrd: initrd.unwrap_or(defaults.initrd),
        timeout: timeout.map_or(defaults.timeout, Duration::from_secs),
        linux_vms: linux_vms as usize,
        ..defaults
    };
    eprintln!(
        "ferrovisor bench --sched: {} run(s): probes sharing one hart ({:?} VMs, and bare QEMU), then {} Linux VMs on {} harts",
        opts.runs, opts.shares, opts.linux_vms, opts.linux_harts
    );
    let report = benchmark::sched::run(&opts, &mut |line| {
        eprintln!("ferrovisor bench --sched: {line}")
    })?;
    report_bench(
        "ferrovisor bench --sched",
        &benchmark::sched::render(&report),
        &benchmark::sched::to_json(&report),
        json,
    )
}

#[allow(clippy::too_many_arguments)]
fn bench_linux(
    runs: u32,
    reps: u32,
    warmup: bool,
    hypervisor: Option<PathBuf>,
    json: Option<PathBuf>,
    kernel: Option<PathBuf>,
    initrd: Option<PathBuf>,
    timeout: Option<u64>,
    icount: bool,
) -> Result<ExitCode> {
    let defaults = benchmark::linux::Options::new();
    let opts = benchmark::linux::Options {
        runs: runs as usize,
        icount,
        reps: reps as usize,
        warmup,
        hypervisor: hypervisor.unwrap_or(defaults.hypervisor),
        kernel: kernel.unwrap_or(defaults.kernel),
        initrd: initrd.unwrap_or(defaults.initrd),
        timeout: timeout.map_or(defaults.timeout, Duration::from_secs),
        ..defaults
    };
    eprintln!(
        "ferrovisor bench --linux: {} run(s) per side of {} + {} (under {} / bare QEMU)",
        opts.runs,
        opts.kernel.display(),
        opts.initrd.display(),
        opts.hypervisor.display()
    );
    let report = benchmark::linux::run(&opts, &mut |line| {
        eprintln!("ferrovisor bench --linux: {line}")
    })?;
    report_bench(
        "ferrovisor bench --linux",
        &benchmark::linux::render(&report),
        &benchmark::linux::to_json(&report),
        json,
    )
}
