//! VM configuration files (YAML).
//!
//! Two forms are accepted. A single VM:
//!
//! ```yaml
//! name: demo            # optional, default "vm0"
//! vcpus: 2              # optional, default 1
//! memory: 256M
//! kernel: guest.elf     # ELF64 RISC-V or Linux RISC-V Image (see kernel_format)
//! kernel_format: auto   # optional: auto (default), elf, image or flat
//! initrd: rootfs.cpio   # optional
//! command_line: console=ttyS0   # optional
//! console: uart         # optional: uart (default) or virtio (see ConsoleChoice)
//! weight: 200           # optional scheduling weight, 1..=10000 (default 100)
//! pin: 0                # optional: run every vCPU on this host hart only
//! disks:                # optional: raw disk images (see below)
//!   - { path: disk.img, read_only: false }
//! nics:                 # optional: ports on switches of machine.switches
//!   - { switch: lan, mac: "52:54:00:12:34:56" }   # mac optional
//! rng: true             # optional: a virtio-rng (default false)
//! machine: { ... }      # optional, see below
//! ```
//!
//! Several VMs on one machine:
//!
//! ```yaml
//! machine:              # optional as a whole
//!   arch: riscv64
//!   cpus: 4             # QEMU -smp
//!   memory: 1G          # QEMU -m
//!   cpu: rv64,sstc=false   # optional QEMU -cpu (default rv64)
//!   options: aia=aplic-imsic  # optional extra -machine properties
//!   switches:           # optional: L2 switches inside the hypervisor
//!     - name: lan
//!       uplink: true    # optional: the machine's virtio-net (QEMU user networking)
//!       forwards: ["tcp:8080:80"]   # optional, needs uplink (see PortForward)
//! vms:
//!   - { name: a, memory: 64M, kernel: a.elf }
//!   - { name: b, memory: 64M, kernel: b.elf, vcpus: 2 }
//! ```
//!
//! Devices (see [`crate::devices`] for where each lands): a disk is a raw
//! image file whose size is a non-zero multiple of 512 bytes; a read-write
//! disk's file must be writable (its mode must let someone write it, and this
//! user must be able to open it for writing), and an image given read-write
//! may be used by no other disk (of any VM, not even read-only). `read_only:
//! true` disks may share an image. A NIC names a switch of `machine.switches`;
//! its MAC is unicast, non-zero and unique among all NICs, and defaults to
//! [`MacAddr::derived`] from the VM's name and the NIC's index. The machine
//! has 8 virtio-mmio slots for disks (one each), one virtio-rng (if any VM
//! has `rng: true`) and one virtio-net per switch with an uplink; each VM has
//! 7 slots for its disks, NICs and virtio-rng. At most 16 switches.
//!
//! In `kernel`, `initrd` and disk paths, a leading `~/` (or a lone `~`) stands for `$HOME`, and
//! `${VAR}` for the environment variable `VAR` (it must be set and non-empty; `$$`
//! is a literal `$`), e.g. `kernel: ~/.cache/ferrovisor/linux/current/Image` or
//! `initrd: ${FV_LINUX_INITRD}`. Expansion happens first; a path that is still
//! relative is then relative to the config file. Sizes are a number with an
//! optional binary suffix: `K`, `M`, `G`, `T` (also `KiB`, `MB`, ...; all powers of
//! 1024). Every error names the file, the line, the field and the problem.
//!
//! Checked before anything is built or started: `kernel` and `initrd` must be
//! regular, readable, non-empty files (a directory, an unreadable or an empty
//! file each get their own message); the kernel must be an ELF64 RISC-V
//! executable or a Linux RISC-V Image unless `kernel_format: flat` forces a flat
//! binary (see [`crate::loader`]); and the machine's memory must hold the VMs, the
//! boot package's images and [`HYPERVISOR_RESERVE`] (see [`Config`]).
//! [`Config::check_host_memory`] compares the machine with what this host can give
//! QEMU; `ferrovisor run` calls it before building anything.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_saphyr::{DefaultMessageFormatter, MessageFormatter, Spanned};

use crate::devices::{
    self, DevicePlan, Devices, Disk, HostDeviceKind, MacAddr, Nic, PlanError, PortForward, Switch,
    VmDevices, VmItem, MACHINE_VIRTIO_SLOTS, MAX_SWITCHES, MAX_VM_DEVICES, RESERVED_HOST_SLOTS,
    SECTOR_SIZE,
};
use crate::loader::{self, FormatChoice, KernelFormat};
pub use crate::package::HYPERVISOR_RESERVE;
use crate::qemu::HostMemory;
use crate::MIB;

/// Most vCPUs per VM (the boot package's limit).
pub const MAX_VCPUS: u32 = fv_bootpkg::MAX_VCPUS;
/// Most host CPUs (`-smp`) a machine may have.
pub const MAX_HOST_CPUS: u32 = 64;
/// Most VMs per machine (the boot package's limit).
pub const MAX_VMS: usize = fv_bootpkg::MAX_VMS;
/// When the machine's memory is not given: this much on top of the VMs' memory, for
/// OpenSBI, the hypervisor and the boot package (which holds copies of the images);
/// more when the images need it (see [`default_overhead`]).
pub const DEFAULT_HOST_OVERHEAD: u64 = 256 * MIB;
/// Allowance for the boot package beyond its images (header, VM records, names,
/// command lines, page padding), used only to size a default machine.
pub const PACKAGE_SLACK: u64 = 4 * MIB;
/// The only architecture so far.
pub const ARCHES: &[&str] = &["riscv64"];

/// A configuration problem: which file, where, which field, what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The config file.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<u32>,
    /// The field, as a path (`vms[1].memory`).
    pub field: String,
    /// What is wrong.
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(
                f,
                "{}:{}: `{}`: {}",
                self.file.display(),
                line,
                self.field,
                self.problem
            ),
            None => write!(
                f,
                "{}: `{}`: {}",
                self.file.display(),
                self.field,
                self.problem
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

/// The guest architecture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    /// RISC-V 64 with the H extension, on `qemu-system-riscv64 -M virt`.
    Riscv64,
}

/// The (emulated) host machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Machine {
    /// Guest architecture.
    pub arch: Arch,
    /// Host harts (QEMU `-smp`).
    pub cpus: u32,
    /// Host RAM (QEMU `-m`).
    pub memory_bytes: u64,
    /// QEMU `-cpu` string; `None` means `rv64`.
    pub cpu: Option<String>,
    /// Extra `-machine` properties, appended to `virt,`.
    pub options: Option<String>,
}

/// Which device a VM's console is (`console:`). The ns16550a UART is there
/// either way (Linux's `earlycon`, firmware-style output); the choice says
/// whether the VM also gets a virtio-console and which of the two console
/// input goes to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ConsoleChoice {
    /// `uart`: the ns16550a at `0x1000_0000` (Linux: `console=ttyS0`).
    #[default]
    Uart,
    /// `virtio`: a virtio-console at the first virtio-mmio slot
    /// (`0x1000_1000`, interrupt 1; Linux: `console=hvc0`), which gets the
    /// console input. Its output is batched: a chain of bytes per exit rather
    /// than one exit per byte.
    Virtio,
}

impl ConsoleChoice {
    /// The accepted values, for messages.
    pub const NAMES: &'static str = "uart, virtio";

    /// Parses the config value.
    pub fn parse(text: &str) -> Result<ConsoleChoice, String> {
        match text {
            "uart" => Ok(ConsoleChoice::Uart),
            "virtio" => Ok(ConsoleChoice::Virtio),
            _ => Err(format!(
                "unknown console `{text}`; expected one of: {}",
                Self::NAMES
            )),
        }
    }

    /// The config value.
    pub fn name(self) -> &'static str {
        match self {
            ConsoleChoice::Uart => "uart",
            ConsoleChoice::Virtio => "virtio",
        }
    }
}

/// One VM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmConfig {
    /// Unique name.
    pub name: String,
    /// vCPUs, `1..=MAX_VCPUS`.
    pub vcpus: u32,
    /// Guest RAM, a multiple of 2 MiB.
    pub memory_bytes: u64,
    /// Kernel file (absolute, or relative to the current directory).
    pub kernel: PathBuf,
    /// How to read the kernel file (`kernel_format`; default: recognise ELF or a
    /// Linux Image, refuse anything else).
    pub kernel_format: FormatChoice,
    /// Initial ramdisk file.
    pub initrd: Option<PathBuf>,
    /// Kernel command line.
    pub command_line: String,
    /// The console device (`console:`, default `uart`).
    pub console: ConsoleChoice,
    /// Scheduling weight (share of a hart against other vCPUs on it), 1..=10000.
    pub weight: u32,
    /// The host hart every vCPU is pinned to, if any (`< machine.cpus`).
    pub pin: Option<u32>,
}

/// Where the machine's memory size came from (for messages).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryOrigin {
    /// Given (`machine.memory`, on this line when known; or chosen in code).
    Given(Option<u32>),
    /// Not given: the VMs' memory plus [`default_overhead`].
    Default,
}

/// A validated configuration.
///
/// Validation includes the machine's memory: it must hold the sum of the VMs'
/// memory, the boot package and [`HYPERVISOR_RESERVE`] (32 MiB: OpenSBI's
/// reserved region, the hypervisor image, its heap, frame and G-stage tables).
/// The boot package is counted as the bytes of its images, each kernel and initrd
/// file once (VMs booting the same file share one copy): the `PT_LOAD` data of an
/// ELF kernel, the whole file otherwise. That is a lower bound of the package
/// (which also has a header and page padding), so no config is refused that
/// fits; `package::build` checks the exact size before anything is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The file it came from (used in messages).
    pub path: PathBuf,
    /// The host machine.
    pub machine: Machine,
    /// The VMs, in file order.
    pub vms: Vec<VmConfig>,
    /// Where `machine.memory_bytes` came from.
    pub memory_origin: MemoryOrigin,
    /// The VMs' disks, NICs and virtio-rng and the machine's switches
    /// (`devices.vms[i]` belongs to `vms[i]`).
    pub devices: Devices,
    /// Where each device goes: the machine's virtio-mmio slots (QEMU's
    /// command line) and each VM's (see [`crate::devices`]).
    pub plan: DevicePlan,
    /// Lines of the switches' fields, for [`Config::check_host_ports`].
    switch_lines: Vec<SwitchLines>,
}

/// Reads and validates the config file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let error = |problem: String| ConfigError {
        file: path.to_path_buf(),
        line: None,
        field: "(file)".into(),
        problem,
    };
    let (mut file, _) = open_input_file(path, "config")
        .map_err(|p| error(format!("cannot read the config file: {p}")))?;
    let mut text = String::new();
    file.read_to_string(&mut text)
        .map_err(|e| error(format!("cannot read the config file: {e}")))?;
    parse(&text, path)
}

/// Opens input file `path` (`what` names it in messages: "kernel", "initrd",
/// "hypervisor"), which must exist, be a regular file, be readable and not be
/// empty; returns it and its size. Each problem has its own message naming the
/// path: "does not exist", "is a directory", "permission denied", "is empty".
pub fn open_input_file(path: &Path, what: &str) -> Result<(File, u64), String> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            if let Ok(target) = std::fs::read_link(path) {
                return format!(
                    "{what} file {shown} is a symbolic link to {}, which does not exist",
                    target.display()
                );
            }
        }
        format!("{what} file {shown}: {}", io_problem(&e))
    })?;
    if meta.is_dir() {
        return Err(format!("{what} path {shown} is a directory, not a file"));
    }
    if !meta.is_file() {
        return Err(format!(
            "{what} path {shown} is not a regular file (a device, FIFO or socket)"
        ));
    }
    let file = File::open(path).map_err(|e| format!("{what} file {shown}: {}", io_problem(&e)))?;
    if meta.len() == 0 {
        return Err(format!("{what} file {shown} is empty"));
    }
    Ok((file, meta.len()))
}

/// [`open_input_file`] without keeping the file open: `Ok` with the size.
pub fn check_input_file(path: &Path, what: &str) -> Result<u64, String> {
    open_input_file(path, what).map(|(_, len)| len)
}

/// An I/O error as the end of a sentence: "does not exist", "permission denied
/// (...)", else the OS's words.
fn io_problem(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "does not exist".into(),
        io::ErrorKind::PermissionDenied => {
            "permission denied (it, or a directory on its path, may not be read by this user)"
                .into()
        }
        io::ErrorKind::NotADirectory => {
            "does not exist (a component of its path is a file, not a directory)".into()
        }
        _ => format!("cannot be read: {e}"),
    }
}

/// The format `path` will be loaded as under `choice`, or what is wrong with the
/// file (see [`open_input_file`] and [`loader::identify`]).
pub fn check_kernel_file(path: &Path, choice: FormatChoice) -> Result<KernelFormat, String> {
    let (file, _) = open_input_file(path, "kernel")?;
    let mut header = Vec::with_capacity(loader::HEADER_LEN);
    file.take(loader::HEADER_LEN as u64)
        .read_to_end(&mut header)
        .map_err(|e| format!("kernel file {}: {}", path.display(), io_problem(&e)))?;
    loader::identify(&header, choice).map_err(|e| format!("kernel file {}: {e}", path.display()))
}

/// The bytes of the boot package's images for `vms` (at least): each kernel and
/// initrd file once (by canonical path and format), an ELF kernel by its
/// `PT_LOAD` data, anything else whole. Files that cannot be read count 0 (they
/// are reported on their own).
pub fn image_bytes(vms: &[VmConfig]) -> u64 {
    let mut seen: Vec<(PathBuf, Option<KernelFormat>)> = Vec::new();
    let mut total = 0u64;
    let mut count = |path: &Path, format: Option<KernelFormat>| {
        let key = (
            std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()),
            format,
        );
        if seen.contains(&key) {
            return;
        }
        seen.push(key);
        let bytes = match format {
            Some(f) => loader::image_bytes(path, f).unwrap_or(0),
            None => std::fs::metadata(path).map_or(0, |m| m.len()),
        };
        total = total.saturating_add(bytes);
    };
    for vm in vms {
        if let Ok(format) = check_kernel_file(&vm.kernel, vm.kernel_format) {
            count(&vm.kernel, Some(format));
        }
        if let Some(initrd) = &vm.initrd {
            count(initrd, None);
        }
    }
    total
}

/// What a machine whose memory is not given gets on top of the VMs' memory:
/// [`DEFAULT_HOST_OVERHEAD`], or more when the boot package's `images` (see
/// [`image_bytes`]) plus [`HYPERVISOR_RESERVE`] and [`PACKAGE_SLACK`] need it.
pub fn default_overhead(images: u64) -> u64 {
    images
        .saturating_add(HYPERVISOR_RESERVE + PACKAGE_SLACK)
        .next_multiple_of(MIB)
        .max(DEFAULT_HOST_OVERHEAD)
}

/// Validates config `text`, which came from `path` (relative paths in it are
/// relative to `path`'s directory).
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let raw: RawFile = serde_saphyr::from_str(text).map_err(|e| yaml_error(path, text, &e))?;
    let ctx = Ctx {
        file: path,
        base: path.parent().unwrap_or(Path::new("")),
    };
    ctx.build(raw)
}

impl Config {
    /// A configuration assembled in code (the test harness), checked with the same
    /// rules as a file; `path` names it in messages.
    pub fn from_parts(
        path: &Path,
        machine: Machine,
        vms: Vec<VmConfig>,
    ) -> Result<Config, ConfigError> {
        let devices = Devices::none(vms.len());
        Config::from_parts_with_devices(path, machine, vms, devices)
    }

    /// [`Config::from_parts`] with devices (`devices.vms[i]` for `vms[i]`),
    /// checked like a file's: image files, MACs, switches, slots.
    pub fn from_parts_with_devices(
        path: &Path,
        machine: Machine,
        vms: Vec<VmConfig>,
        devices: Devices,
    ) -> Result<Config, ConfigError> {
        let ctx = Ctx {
            file: path,
            base: Path::new(""),
        };
        let lines = vec![VmLines::default(); vms.len()];
        let machine_lines = MachineLines::default();
        if devices.vms.len() != vms.len() {
            return Err(ctx.err(
                None,
                "vms",
                format!("{} VMs but devices for {}", vms.len(), devices.vms.len()),
            ));
        }
        for (i, vm) in vms.iter().enumerate() {
            let field = |f: &str| format!("vms[{i}].{f}");
            ctx.check_vcpus(vm.vcpus, None, &field("vcpus"))?;
            ctx.check_vm_memory(vm.memory_bytes, None, &field("memory"))?;
            ctx.check_name(&vm.name, None, &field("name"))?;
            check_kernel_file(&vm.kernel, vm.kernel_format)
                .map_err(|p| ctx.err(None, &field("kernel"), p))?;
            if let Some(initrd) = &vm.initrd {
                check_input_file(initrd, "initrd")
                    .map_err(|p| ctx.err(None, &field("initrd"), p))?;
            }
            for (j, d) in devices.vms[i].disks.iter().enumerate() {
                check_disk_image(&d.path, d.read_only)
                    .map_err(|p| ctx.err(None, &field(&format!("disks[{j}].path")), p))?;
            }
        }
        let dev_lines = vec![VmDevLines::default(); vms.len()];
        let switch_lines = vec![SwitchLines::default(); devices.switches.len()];
        ctx.check_switches(&devices.switches, &switch_lines)?;
        ctx.check_machine_values(&machine, &machine_lines)?;
        ctx.cross_checks(&machine, &machine_lines, &vms, &lines, false)?;
        let plan = ctx.check_devices(&vms, &devices, &dev_lines, &switch_lines, false)?;
        Ok(Config {
            path: path.to_path_buf(),
            machine,
            vms,
            memory_origin: MemoryOrigin::Given(None),
            devices,
            plan,
            switch_lines,
        })
    }
}

impl Config {
    /// Checks the machine's memory against what this host can give QEMU
    /// ([`HostMemory`]); the error names the config file, `machine.memory` (its
    /// line, or that it was not set and what it defaulted to) and both numbers.
    pub fn check_host_memory(&self, host: &HostMemory) -> Result<(), ConfigError> {
        let m = self.machine.memory_bytes;
        if m <= host.limit {
            return Ok(());
        }
        let (line, how) = match self.memory_origin {
            MemoryOrigin::Given(line) => (line, format!("the machine's {}", format_size(m))),
            MemoryOrigin::Default => {
                let sum = self
                    .vms
                    .iter()
                    .map(|v| v.memory_bytes)
                    .fold(0u64, u64::saturating_add);
                (
                    None,
                    format!(
                        "not set, so the machine gets the VMs' memory {} + {} = {}, which",
                        format_size(sum),
                        crate::qemu::mib(m.saturating_sub(sum)),
                        format_size(m)
                    ),
                )
            }
        };
        Err(ConfigError {
            file: self.path.clone(),
            line,
            field: "machine.memory".into(),
            problem: format!(
                "{how} is more than this host can give QEMU: {} ({}); QEMU would fail to allocate it. Lower the VMs' memory and machine.memory",
                crate::qemu::mib(host.limit),
                host.source
            ),
        })
    }
}

impl Config {
    /// Checks that every port forward's host port is free on 127.0.0.1 now
    /// (binding it for a moment), so that QEMU will not fail to set it up;
    /// the error names the forward's line and field. `ferrovisor run` calls it
    /// before building anything. (Someone may still take the port before QEMU
    /// does; QEMU then fails and says which rule.)
    pub fn check_host_ports(&self) -> Result<(), ConfigError> {
        let addr = devices::FORWARD_HOST_ADDR;
        for (s, sw) in self.devices.switches.iter().enumerate() {
            for (k, f) in sw.forwards.iter().enumerate() {
                let bound = match f.protocol {
                    devices::Protocol::Tcp => {
                        std::net::TcpListener::bind((addr, f.host_port)).map(drop)
                    }
                    devices::Protocol::Udp => {
                        std::net::UdpSocket::bind((addr, f.host_port)).map(drop)
                    }
                };
                if let Err(e) = bound {
                    let line = self
                        .switch_lines
                        .get(s)
                        .and_then(|l| l.forwards.get(k).copied().flatten());
                    return Err(ConfigError {
                        file: self.path.clone(),
                        line,
                        field: format!("machine.switches[{s}].forwards[{k}]"),
                        problem: format!(
                            "host port {addr}:{} ({}) of `{f}` cannot be used: {e}; another program has it, so QEMU could not forward it. Pick another host port",
                            f.host_port,
                            f.protocol.name()
                        ),
                    });
                }
            }
        }
        Ok(())
    }
}

/// Checks disk image `path` for a disk that is `read_only` or not: a regular,
/// readable, non-empty file (see [`open_input_file`]) whose size is a whole
/// number of 512-byte sectors; for a read-write disk also writable, both by
/// its mode (some write bit set: root could write a mode 0444 file, but it is
/// marked read-only) and for this user (opened for reading and writing, as
/// QEMU will). Returns its size.
pub fn check_disk_image(path: &Path, read_only: bool) -> Result<u64, String> {
    use std::os::unix::fs::PermissionsExt;
    let shown = path.display();
    let (file, len) = open_input_file(path, "disk image")?;
    if !len.is_multiple_of(SECTOR_SIZE) {
        return Err(format!(
            "disk image {shown} is {len} bytes, not a whole number of {SECTOR_SIZE}-byte sectors (its size must be a multiple of {SECTOR_SIZE}); pad it, e.g. `truncate -s {} {shown}`",
            len.next_multiple_of(SECTOR_SIZE)
        ));
    }
    if read_only {
        return Ok(len);
    }
    let mode = file
        .metadata()
        .map_err(|e| format!("disk image {shown}: {}", io_problem(&e)))?
        .permissions()
        .mode();
    if mode & 0o222 == 0 {
        return Err(format!(
            "disk image {shown} is a read-only file (mode {:04o}: no one may write it) but the disk is read-write; give the disk `read_only: true`, or make the file writable (chmod u+w)",
            mode & 0o7777
        ));
    }
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
    {
        let why = match (e.kind(), e.raw_os_error()) {
            (io::ErrorKind::PermissionDenied, _) => "permission denied".to_string(),
            (_, Some(libc::EROFS)) => "it is on a read-only file system".to_string(),
            _ => e.to_string(),
        };
        return Err(format!(
            "disk image {shown} cannot be opened for writing ({why}) but the disk is read-write: for this user it is a read-only file; give the disk `read_only: true`, or make the file writable"
        ));
    }
    Ok(len)
}

/// Parses a size: digits with an optional suffix `K`, `M`, `G`, `T` (case-insensitive,
/// optionally followed by `iB` or `B`; all binary). A bare number is bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, suffix) = t.split_at(digits_end);
    if digits.is_empty() {
        return Err(format!(
            "`{text}` is not a size (expected e.g. 64M, 512M, 1G)"
        ));
    }
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is too large"))?;
    let suffix = suffix.trim_start().to_ascii_uppercase();
    let unit_letter = suffix
        .strip_suffix("IB")
        .or_else(|| suffix.strip_suffix('B'));
    let unit_letter = match unit_letter {
        Some(u) if !u.is_empty() => u,
        Some(_) => "", // "B" alone: bytes
        None => suffix.as_str(),
    };
    let shift = match unit_letter {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(format!("`{text}` has an unknown unit (use K, M, G or T)")),
    };
    let bytes = number
        .checked_mul(1u64 << shift)
        .ok_or_else(|| format!("`{text}` is too large"))?;
    if bytes == 0 {
        return Err("size must not be zero".into());
    }
    Ok(bytes)
}

/// Formats a byte count the way [`parse_size`] reads it, in the largest exact unit.
pub fn format_size(bytes: u64) -> String {
    for (shift, unit) in [(40, "T"), (30, "G"), (20, "M"), (10, "K")] {
        if bytes != 0 && bytes.is_multiple_of(1u64 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

// ---------------------------------------------------------------------------
// The YAML shape.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    name: Option<Spanned<String>>,
    vcpus: Option<Spanned<u32>>,
    memory: Option<Spanned<String>>,
    kernel: Option<Spanned<String>>,
    kernel_format: Option<Spanned<String>>,
    initrd: Option<Spanned<String>>,
    command_line: Option<Spanned<String>>,
    console: Option<Spanned<String>>,
    weight: Option<Spanned<u32>>,
    pin: Option<Spanned<u32>>,
    disks: Option<Spanned<Vec<Spanned<RawDisk>>>>,
    nics: Option<Spanned<Vec<Spanned<RawNic>>>>,
    rng: Option<Spanned<bool>>,
    machine: Option<Spanned<RawMachine>>,
    vms: Option<Spanned<Vec<Spanned<RawVm>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVm {
    name: Option<Spanned<String>>,
    vcpus: Option<Spanned<u32>>,
    memory: Option<Spanned<String>>,
    kernel: Option<Spanned<String>>,
    kernel_format: Option<Spanned<String>>,
    initrd: Option<Spanned<String>>,
    command_line: Option<Spanned<String>>,
    console: Option<Spanned<String>>,
    weight: Option<Spanned<u32>>,
    pin: Option<Spanned<u32>>,
    disks: Option<Spanned<Vec<Spanned<RawDisk>>>>,
    nics: Option<Spanned<Vec<Spanned<RawNic>>>>,
    rng: Option<Spanned<bool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDisk {
    path: Option<Spanned<String>>,
    read_only: Option<Spanned<bool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNic {
    switch: Option<Spanned<String>>,
    mac: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMachine {
    arch: Option<Spanned<String>>,
    cpus: Option<Spanned<u32>>,
    memory: Option<Spanned<String>>,
    cpu: Option<Spanned<String>>,
    options: Option<Spanned<String>>,
    switches: Option<Spanned<Vec<Spanned<RawSwitch>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSwitch {
    name: Option<Spanned<String>>,
    uplink: Option<Spanned<bool>>,
    forwards: Option<Spanned<Vec<Spanned<String>>>>,
}

fn line_of<T>(s: &Spanned<T>) -> Option<u32> {
    u32::try_from(s.referenced.line()).ok().filter(|&l| l > 0)
}

/// Lines of a VM's fields, for cross-VM messages.
#[derive(Clone, Copy, Debug, Default)]
struct VmLines {
    pin: Option<u32>,
    start: Option<u32>,
    name: Option<u32>,
    memory: Option<u32>,
}

/// Lines of one disk's fields.
#[derive(Clone, Copy, Debug, Default)]
struct DiskLines {
    start: Option<u32>,
    path: Option<u32>,
}

/// Lines of one NIC's fields.
#[derive(Clone, Copy, Debug, Default)]
struct NicLines {
    start: Option<u32>,
    switch: Option<u32>,
    mac: Option<u32>,
}

/// Lines of a VM's device fields.
#[derive(Clone, Debug, Default)]
struct VmDevLines {
    start: Option<u32>,
    disks: Vec<DiskLines>,
    nics: Vec<NicLines>,
    rng: Option<u32>,
}

/// Lines of one switch's fields.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct SwitchLines {
    start: Option<u32>,
    name: Option<u32>,
    uplink: Option<u32>,
    forwards: Vec<Option<u32>>,
}

#[derive(Clone, Copy, Debug, Default)]
struct MachineLines {
    start: Option<u32>,
    memory: Option<u32>,
    /// `machine.memory` was given (not defaulted).
    given: bool,
}

struct Ctx<'a> {
    file: &'a Path,
    base: &'a Path,
}

impl Ctx<'_> {
    fn err(&self, line: Option<u32>, field: &str, problem: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.to_path_buf(),
            line,
            field: field.into(),
            problem: problem.into(),
        }
    }

    fn build(&self, mut raw: RawFile) -> Result<Config, ConfigError> {
        let mut vms = Vec::new();
        let mut lines = Vec::new();
        let mut vm_devices = Vec::new();
        let mut dev_lines = Vec::new();
        let single_form = raw.vms.is_none();
        match raw.vms {
            Some(list) => {
                // Single-VM keys next to `vms:` are a mistake, not a default.
                let stray = [
                    ("name", raw.name.as_ref().and_then(line_of)),
                    ("vcpus", raw.vcpus.as_ref().and_then(line_of)),
                    ("memory", raw.memory.as_ref().and_then(line_of)),
                    ("kernel", raw.kernel.as_ref().and_then(line_of)),
                    (
                        "kernel_format",
                        raw.kernel_format.as_ref().and_then(line_of),
                    ),
                    ("initrd", raw.initrd.as_ref().and_then(line_of)),
                    ("command_line", raw.command_line.as_ref().and_then(line_of)),
                    ("console", raw.console.as_ref().and_then(line_of)),
                    ("weight", raw.weight.as_ref().and_then(line_of)),
                    ("pin", raw.pin.as_ref().and_then(line_of)),
                    ("disks", raw.disks.as_ref().and_then(line_of)),
                    ("nics", raw.nics.as_ref().and_then(line_of)),
                    ("rng", raw.rng.as_ref().and_then(line_of)),
                ];
                let present = [
                    raw.name.is_some(),
                    raw.vcpus.is_some(),
                    raw.memory.is_some(),
                    raw.kernel.is_some(),
                    raw.kernel_format.is_some(),
                    raw.initrd.is_some(),
                    raw.command_line.is_some(),
                    raw.console.is_some(),
                    raw.weight.is_some(),
                    raw.pin.is_some(),
                    raw.disks.is_some(),
                    raw.nics.is_some(),
                    raw.rng.is_some(),
                ];
                if let Some(((key, line), _)) =
                    stray.iter().zip(present).find(|(_, present)| *present)
                {
                    return Err(self.err(
                        *line,
                        key,
                        "a single-VM key at the top level next to `vms:`; move it into a VM of the `vms` list",
                    ));
                }
                if list.value.is_empty() {
                    return Err(self.err(line_of(&list), "vms", "the list is empty"));
                }
                if list.value.len() > MAX_VMS {
                    return Err(self.err(
                        line_of(&list),
                        "vms",
                        format!("{} VMs; at most {MAX_VMS} are supported", list.value.len()),
                    ));
                }
                for (i, vm) in list.value.into_iter().enumerate() {
                    let start = line_of(&vm);
                    let (cfg, l, d, dl) = self.vm(vm.value, &format!("vms[{i}]."), i, start)?;
                    vms.push(cfg);
                    lines.push(l);
                    vm_devices.push(d);
                    dev_lines.push(dl);
                }
            }
            None => {
                let vm = RawVm {
                    name: raw.name,
                    vcpus: raw.vcpus,
                    memory: raw.memory,
                    kernel: raw.kernel,
                    kernel_format: raw.kernel_format,
                    initrd: raw.initrd,
                    command_line: raw.command_line,
                    console: raw.console,
                    weight: raw.weight,
                    pin: raw.pin,
                    disks: raw.disks,
                    nics: raw.nics,
                    rng: raw.rng,
                };
                let (cfg, l, d, dl) = self.vm(vm, "", 0, Some(1))?;
                vms.push(cfg);
                lines.push(l);
                vm_devices.push(d);
                dev_lines.push(dl);
            }
        }
        let raw_switches = raw.machine.as_mut().and_then(|m| m.value.switches.take());
        let (switches, switch_lines) = self.switches(raw_switches)?;
        self.check_switches(&switches, &switch_lines)?;
        let (machine, machine_lines) = self.machine(raw.machine, &vms)?;
        self.cross_checks(&machine, &machine_lines, &vms, &lines, single_form)?;
        let devices = Devices {
            vms: vm_devices,
            switches,
        };
        let plan = self.check_devices(&vms, &devices, &dev_lines, &switch_lines, single_form)?;
        let memory_origin = if machine_lines.given {
            MemoryOrigin::Given(machine_lines.memory)
        } else {
            MemoryOrigin::Default
        };
        Ok(Config {
            path: self.file.to_path_buf(),
            machine,
            vms,
            memory_origin,
            devices,
            plan,
            switch_lines,
        })
    }

    fn vm(
        &self,
        raw: RawVm,
        prefix: &str,
        index: usize,
        start: Option<u32>,
    ) -> Result<(VmConfig, VmLines, VmDevices, VmDevLines), ConfigError> {
        let field = |f: &str| format!("{prefix}{f}");
        let name = match &raw.name {
            Some(n) => {
                self.check_name(&n.value, line_of(n), &field("name"))?;
                n.value.clone()
            }
            None => format!("vm{index}"),
        };
        let vcpus = match &raw.vcpus {
            Some(v) => {
                self.check_vcpus(v.value, line_of(v), &field("vcpus"))?;
                v.value
            }
            None => 1,
        };
        let memory = raw
            .memory
            .as_ref()
            .ok_or_else(|| self.err(start, &field("memory"), "missing (e.g. `memory: 64M`)"))?;
        let memory_bytes = parse_size(&memory.value)
            .map_err(|p| self.err(line_of(memory), &field("memory"), p))?;
        self.check_vm_memory(memory_bytes, line_of(memory), &field("memory"))?;
        let kernel = raw.kernel.as_ref().ok_or_else(|| {
            self.err(
                start,
                &field("kernel"),
                "missing (the guest kernel or test binary)",
            )
        })?;
        let kernel_format = match &raw.kernel_format {
            Some(f) => FormatChoice::parse(&f.value)
                .map_err(|p| self.err(line_of(f), &field(loader::FORMAT_FIELD), p))?,
            None => FormatChoice::Auto,
        };
        let kernel_path = self.resolve(&kernel.value, line_of(kernel), &field("kernel"))?;
        check_kernel_file(&kernel_path, kernel_format)
            .map_err(|p| self.err(line_of(kernel), &field("kernel"), p))?;
        let initrd = match &raw.initrd {
            Some(i) => {
                let p = self.resolve(&i.value, line_of(i), &field("initrd"))?;
                check_input_file(&p, "initrd")
                    .map_err(|problem| self.err(line_of(i), &field("initrd"), problem))?;
                Some(p)
            }
            None => None,
        };
        let command_line = match &raw.command_line {
            Some(c) => {
                if c.value.len() > fv_bootpkg::MAX_CMDLINE_LEN || c.value.contains('\0') {
                    return Err(self.err(
                        line_of(c),
                        &field("command_line"),
                        format!(
                            "must be at most {} bytes without NUL",
                            fv_bootpkg::MAX_CMDLINE_LEN
                        ),
                    ));
                }
                c.value.clone()
            }
            None => String::new(),
        };
        let console = match &raw.console {
            Some(c) => ConsoleChoice::parse(&c.value)
                .map_err(|p| self.err(line_of(c), &field("console"), p))?,
            None => ConsoleChoice::Uart,
        };
        let weight = match &raw.weight {
            Some(w) if w.value == 0 || w.value > fv_bootpkg::MAX_WEIGHT => {
                return Err(self.err(
                    line_of(w),
                    &field("weight"),
                    format!("{} is out of range 1..={}", w.value, fv_bootpkg::MAX_WEIGHT),
                ));
            }
            Some(w) => w.value,
            None => fv_bootpkg::DEFAULT_WEIGHT,
        };
        let pin = raw.pin.as_ref().map(|p| p.value);
        let lines = VmLines {
            pin: raw.pin.as_ref().and_then(line_of),
            start,
            name: raw.name.as_ref().and_then(line_of),
            memory: line_of(memory),
        };
        let (devices, dev_lines) = self.vm_devices(&raw, prefix, &name, start)?;
        Ok((
            VmConfig {
                name,
                vcpus,
                memory_bytes,
                kernel: kernel_path,
                kernel_format,
                initrd,
                command_line,
                console,
                weight,
                pin,
            },
            lines,
            devices,
            dev_lines,
        ))
    }

    /// A VM's `disks`, `nics` and `rng`: each disk's image checked
    /// ([`check_disk_image`]), each given MAC parsed and checked, the others
    /// derived from `vm_name`.
    fn vm_devices(
        &self,
        raw: &RawVm,
        prefix: &str,
        vm_name: &str,
        start: Option<u32>,
    ) -> Result<(VmDevices, VmDevLines), ConfigError> {
        let mut devices = VmDevices::default();
        let mut lines = VmDevLines {
            start,
            ..VmDevLines::default()
        };
        for (j, d) in raw.disks.iter().flat_map(|l| l.value.iter()).enumerate() {
            let field = format!("{prefix}disks[{j}].path");
            let path = d.value.path.as_ref().ok_or_else(|| {
                self.err(
                    line_of(d),
                    &field,
                    "missing (the disk's raw image file, e.g. `path: disk.img`)",
                )
            })?;
            let resolved = self.resolve(&path.value, line_of(path), &field)?;
            let read_only = d.value.read_only.as_ref().is_some_and(|r| r.value);
            check_disk_image(&resolved, read_only)
                .map_err(|p| self.err(line_of(path), &field, p))?;
            devices.disks.push(Disk {
                path: resolved,
                read_only,
            });
            lines.disks.push(DiskLines {
                start: line_of(d),
                path: line_of(path),
            });
        }
        for (j, n) in raw.nics.iter().flat_map(|l| l.value.iter()).enumerate() {
            let switch = n.value.switch.as_ref().ok_or_else(|| {
                self.err(
                    line_of(n),
                    &format!("{prefix}nics[{j}].switch"),
                    "missing (the name of a switch of machine.switches, e.g. `switch: lan`)",
                )
            })?;
            let (mac, mac_given) = match &n.value.mac {
                Some(m) => {
                    let field = format!("{prefix}nics[{j}].mac");
                    let mac = MacAddr::parse(m.value.trim())
                        .map_err(|p| self.err(line_of(m), &field, p))?;
                    if let Some(p) = mac.nic_problem() {
                        return Err(self.err(line_of(m), &field, p));
                    }
                    (mac, true)
                }
                None => (MacAddr::derived(vm_name, j), false),
            };
            devices.nics.push(Nic {
                switch: switch.value.clone(),
                mac,
                mac_given,
            });
            lines.nics.push(NicLines {
                start: line_of(n),
                switch: line_of(switch),
                mac: n.value.mac.as_ref().and_then(line_of),
            });
        }
        if let Some(r) = &raw.rng {
            devices.rng = r.value;
            lines.rng = line_of(r);
        }
        Ok((devices, lines))
    }

    /// `machine.switches`: names given, forwards parsed (see
    /// [`Ctx::check_switches`] for the rules between them).
    fn switches(
        &self,
        raw: Option<Spanned<Vec<Spanned<RawSwitch>>>>,
    ) -> Result<(Vec<Switch>, Vec<SwitchLines>), ConfigError> {
        let mut switches = Vec::new();
        let mut lines = Vec::new();
        for (s, sw) in raw.into_iter().flat_map(|l| l.value).enumerate() {
            let start = line_of(&sw);
            let sw = sw.value;
            let name = sw.name.as_ref().ok_or_else(|| {
                self.err(
                    start,
                    &format!("machine.switches[{s}].name"),
                    "missing (the name NICs refer to, e.g. `name: lan`)",
                )
            })?;
            let mut forwards = Vec::new();
            let mut forward_lines = Vec::new();
            for (k, f) in sw.forwards.iter().flat_map(|l| l.value.iter()).enumerate() {
                let parsed = PortForward::parse(f.value.trim()).map_err(|p| {
                    self.err(
                        line_of(f),
                        &format!("machine.switches[{s}].forwards[{k}]"),
                        p,
                    )
                })?;
                forwards.push(parsed);
                forward_lines.push(line_of(f));
            }
            switches.push(Switch {
                name: name.value.clone(),
                uplink: sw.uplink.as_ref().is_some_and(|u| u.value),
                forwards,
            });
            lines.push(SwitchLines {
                start,
                name: line_of(name),
                uplink: sw.uplink.as_ref().and_then(line_of),
                forwards: forward_lines,
            });
        }
        Ok((switches, lines))
    }

    /// Rules between switches: at most [`MAX_SWITCHES`]; valid, unique names;
    /// forwards only with an uplink; no host port (per protocol) forwarded
    /// twice.
    fn check_switches(
        &self,
        switches: &[Switch],
        lines: &[SwitchLines],
    ) -> Result<(), ConfigError> {
        let line = |s: usize, pick: &dyn Fn(&SwitchLines) -> Option<u32>| {
            lines.get(s).and_then(|l| pick(l).or(l.start))
        };
        if switches.len() > MAX_SWITCHES {
            return Err(self.err(
                line(MAX_SWITCHES, &|l| l.name),
                &format!("machine.switches[{MAX_SWITCHES}]"),
                format!(
                    "{} switches; a machine may have at most {MAX_SWITCHES}",
                    switches.len()
                ),
            ));
        }
        let mut forwarded: Vec<(usize, usize)> = Vec::new();
        for (s, sw) in switches.iter().enumerate() {
            let field = |f: &str| format!("machine.switches[{s}].{f}");
            self.check_label(&sw.name, "switch", line(s, &|l| l.name), &field("name"))?;
            if let Some(o) = switches[..s].iter().position(|o| o.name == sw.name) {
                return Err(self.err(
                    line(s, &|l| l.name),
                    &field("name"),
                    format!(
                        "duplicate switch name `{}` (also machine.switches[{o}])",
                        sw.name
                    ),
                ));
            }
            for (k, f) in sw.forwards.iter().enumerate() {
                let fline = lines
                    .get(s)
                    .and_then(|l| l.forwards.get(k).copied().flatten())
                    .or(line(s, &|l| l.start));
                let ffield = field(&format!("forwards[{k}]"));
                if !sw.uplink {
                    return Err(self.err(
                        fline,
                        &ffield,
                        format!(
                            "port forward `{f}` on switch `{}`, which has no uplink: forwards are QEMU user networking's, which only an uplink switch is connected to; add `uplink: true` to the switch",
                            sw.name
                        ),
                    ));
                }
                let clash = forwarded.iter().find(|&&(os, ok)| {
                    let o = &switches[os].forwards[ok];
                    o.protocol == f.protocol && o.host_port == f.host_port
                });
                if let Some(&(os, ok)) = clash {
                    return Err(self.err(
                        fline,
                        &ffield,
                        format!(
                            "port forward `{f}` collides with machine.switches[{os}].forwards[{ok}] (`{}`): host port {} ({}) is forwarded twice",
                            switches[os].forwards[ok],
                            f.host_port,
                            f.protocol.name()
                        ),
                    ));
                }
                forwarded.push((s, k));
            }
        }
        Ok(())
    }

    /// Rules between the VMs' devices and the machine: NICs on defined
    /// switches with valid, unique MACs; no image given read-write to one disk
    /// and to any other; the slots of the machine and of each VM (see
    /// [`devices::plan`]). Returns the plan.
    fn check_devices(
        &self,
        vms: &[VmConfig],
        devices: &Devices,
        dev_lines: &[VmDevLines],
        switch_lines: &[SwitchLines],
        single_form: bool,
    ) -> Result<DevicePlan, ConfigError> {
        let prefix = |i: usize| {
            if single_form {
                String::new()
            } else {
                format!("vms[{i}].")
            }
        };
        let vm_line = |i: usize| dev_lines.get(i).and_then(|l| l.start);
        let disk_line = |i: usize, j: usize| {
            dev_lines
                .get(i)
                .and_then(|l| l.disks.get(j))
                .and_then(|d| d.path.or(d.start))
                .or(vm_line(i))
        };
        let nic_line = |i: usize, j: usize, pick: fn(&NicLines) -> Option<u32>| {
            dev_lines
                .get(i)
                .and_then(|l| l.nics.get(j))
                .and_then(|n| pick(n).or(n.start))
                .or(vm_line(i))
        };
        let uplink_macs: Vec<MacAddr> = (0..devices.uplink_count())
            .map(devices::uplink_mac)
            .collect();
        let mut macs: Vec<(MacAddr, usize, usize)> = Vec::new();
        for (i, vd) in devices.vms.iter().enumerate() {
            let vm_name = vms.get(i).map_or("", |v| v.name.as_str());
            for (j, nic) in vd.nics.iter().enumerate() {
                if !devices.switches.iter().any(|s| s.name == nic.switch) {
                    let defined: Vec<&str> =
                        devices.switches.iter().map(|s| s.name.as_str()).collect();
                    let known = if defined.is_empty() {
                        "no switch is defined; add it under machine.switches (e.g. `switches: [{ name: lan }]`)".to_string()
                    } else {
                        format!("machine.switches defines: {}", defined.join(", "))
                    };
                    return Err(self.err(
                        nic_line(i, j, |n| n.switch),
                        &format!("{}nics[{j}].switch", prefix(i)),
                        format!("switch `{}` is not defined; {known}", nic.switch),
                    ));
                }
                let mac_field = format!("{}nics[{j}].mac", prefix(i));
                let mac_line = nic_line(i, j, |n| n.mac);
                let how = if nic.mac_given {
                    String::new()
                } else {
                    format!(" (derived from the VM name `{vm_name}` and the NIC's index {j})")
                };
                if let Some(p) = nic.mac.nic_problem() {
                    return Err(self.err(mac_line, &mac_field, p));
                }
                if let Some(&(_, oi, oj)) = macs.iter().find(|(m, _, _)| *m == nic.mac) {
                    return Err(self.err(
                        mac_line,
                        &mac_field,
                        format!(
                            "duplicate MAC address {}{how}: {}nics[{oj}] (VM `{}`) has it too; every NIC needs its own",
                            nic.mac,
                            prefix(oi),
                            vms.get(oi).map_or("", |v| v.name.as_str())
                        ),
                    ));
                }
                if uplink_macs.contains(&nic.mac) {
                    return Err(self.err(
                        mac_line,
                        &mac_field,
                        format!(
                            "MAC address {}{how} is that of the machine's virtio-net for an uplink; pick another",
                            nic.mac
                        ),
                    ));
                }
                macs.push((nic.mac, i, j));
            }
        }
        // The same file given read-write to one disk and to any other.
        let mut files: Vec<((u64, u64), usize, usize, bool)> = Vec::new();
        for (i, vd) in devices.vms.iter().enumerate() {
            for (j, d) in vd.disks.iter().enumerate() {
                let Ok(meta) = std::fs::metadata(&d.path) else {
                    continue;
                };
                let id = {
                    use std::os::unix::fs::MetadataExt;
                    (meta.dev(), meta.ino())
                };
                let other = files
                    .iter()
                    .find(|&&(fid, _, _, ro)| fid == id && !(ro && d.read_only));
                if let Some(&(_, oi, oj, other_ro)) = other {
                    let (first, then) = if other_ro {
                        ("read-only", "and here read-write")
                    } else if d.read_only {
                        ("read-write", "and here read-only")
                    } else {
                        ("read-write", "and here read-write again")
                    };
                    return Err(self.err(
                        disk_line(i, j),
                        &format!("{}disks[{j}].path", prefix(i)),
                        format!(
                            "disk image {} is already {}disks[{oj}] (VM `{}`, {first}), {then}: an image given read-write may be used by no other disk, not even read-only (they would see or make inconsistent writes); give every read-write disk its own image, or make all users `read_only: true`",
                            d.path.display(),
                            prefix(oi),
                            vms.get(oi).map_or("", |v| v.name.as_str())
                        ),
                    ));
                }
                files.push((id, i, j, d.read_only));
            }
        }
        devices::plan(devices).map_err(|e| match e {
            PlanError::MachineSlots {
                needed,
                first_unplaced,
            } => {
                let (line, field) = match first_unplaced {
                    HostDeviceKind::Disk { vm, disk, .. } => {
                        (disk_line(vm, disk), format!("{}disks[{disk}]", prefix(vm)))
                    }
                    HostDeviceKind::Rng => {
                        let vm = devices.vms.iter().position(|v| v.rng).unwrap_or(0);
                        (
                            dev_lines.get(vm).and_then(|l| l.rng).or(vm_line(vm)),
                            format!("{}rng", prefix(vm)),
                        )
                    }
                    HostDeviceKind::Uplink { switch, .. } => (
                        switch_lines
                            .get(switch)
                            .and_then(|l| l.uplink.or(l.start)),
                        format!("machine.switches[{switch}].uplink"),
                    ),
                    HostDeviceKind::Reserved => (None, "machine".to_string()),
                };
                let rng = if devices.any_rng() {
                    " + 1 virtio-rng (one, shared by the VMs with `rng: true`)"
                } else {
                    ""
                };
                let reserved = match RESERVED_HOST_SLOTS {
                    0 => String::new(),
                    n => format!(" + {n} kept for the hypervisor"),
                };
                self.err(
                    line,
                    &field,
                    format!(
                        "too many devices for the machine: it has {MACHINE_VIRTIO_SLOTS} virtio-mmio slots, and this config needs {needed}: {} disk(s) (one physical virtio-blk each){rng} + {} uplink(s){reserved}. VM NICs need no slot; remove disks",
                        devices.disk_count(),
                        devices.uplink_count()
                    ),
                )
            }
            PlanError::VmSlots {
                vm,
                needed,
                first_unplaced,
            } => {
                let (line, field) = match first_unplaced {
                    VmItem::Disk(j) => (disk_line(vm, j), format!("{}disks[{j}]", prefix(vm))),
                    VmItem::Nic(j) => (
                        nic_line(vm, j, |n| n.start),
                        format!("{}nics[{j}]", prefix(vm)),
                    ),
                    VmItem::Rng => (
                        dev_lines.get(vm).and_then(|l| l.rng).or(vm_line(vm)),
                        format!("{}rng", prefix(vm)),
                    ),
                };
                let v = &devices.vms[vm];
                self.err(
                    line,
                    &field,
                    format!(
                        "too many devices for VM `{}`: {needed} ({} disk(s) + {} NIC(s) + {} virtio-rng), but a VM has {MAX_VM_DEVICES} virtio-mmio slots for them (0x10002000..=0x10008000; 0x10001000 is the console's)",
                        vms.get(vm).map_or("", |v| v.name.as_str()),
                        v.disks.len(),
                        v.nics.len(),
                        usize::from(v.rng)
                    ),
                )
            }
            PlanError::UnknownSwitch { vm, nic } => self.err(
                nic_line(vm, nic, |n| n.switch),
                &format!("{}nics[{nic}].switch", prefix(vm)),
                "switch not defined",
            ),
        })
    }

    fn machine(
        &self,
        raw: Option<Spanned<RawMachine>>,
        vms: &[VmConfig],
    ) -> Result<(Machine, MachineLines), ConfigError> {
        let vm_sum: u64 = vms
            .iter()
            .map(|v| v.memory_bytes)
            .fold(0, u64::saturating_add);
        let max_vcpus = vms.iter().map(|v| v.vcpus).max().unwrap_or(1);
        let default_cpus = max_vcpus.min(MAX_HOST_CPUS);
        let default_memory = vm_sum.saturating_add(default_overhead(image_bytes(vms)));
        let Some(raw) = raw else {
            let m = Machine {
                arch: Arch::Riscv64,
                cpus: default_cpus,
                memory_bytes: default_memory,
                cpu: None,
                options: None,
            };
            return Ok((m, MachineLines::default()));
        };
        let start = line_of(&raw);
        let raw = raw.value;
        let arch = match &raw.arch {
            Some(a) if a.value == "riscv64" => Arch::Riscv64,
            Some(a) => {
                return Err(self.err(
                    line_of(a),
                    "machine.arch",
                    format!(
                        "unsupported arch `{}`; supported: {}",
                        a.value,
                        ARCHES.join(", ")
                    ),
                ))
            }
            None => Arch::Riscv64,
        };
        let cpus = match &raw.cpus {
            Some(c) => {
                if !(1..=MAX_HOST_CPUS).contains(&c.value) {
                    return Err(self.err(
                        line_of(c),
                        "machine.cpus",
                        format!("{} is out of range 1..={MAX_HOST_CPUS}", c.value),
                    ));
                }
                c.value
            }
            None => default_cpus,
        };
        let (memory_bytes, memory_line) = match &raw.memory {
            Some(m) => {
                let bytes =
                    parse_size(&m.value).map_err(|p| self.err(line_of(m), "machine.memory", p))?;
                if !bytes.is_multiple_of(MIB) {
                    return Err(self.err(
                        line_of(m),
                        "machine.memory",
                        format!("bad size `{}`: must be a whole number of MiB", m.value),
                    ));
                }
                (bytes, line_of(m))
            }
            None => (default_memory, None),
        };
        let text = |v: &Option<Spanned<String>>,
                    field: &str|
         -> Result<Option<String>, ConfigError> {
            match v {
                Some(s) if s.value.trim().is_empty() || s.value.contains(char::is_whitespace) => {
                    Err(self.err(line_of(s), field, "must be non-empty and contain no spaces"))
                }
                Some(s) => Ok(Some(s.value.clone())),
                None => Ok(None),
            }
        };
        let machine = Machine {
            arch,
            cpus,
            memory_bytes,
            cpu: text(&raw.cpu, "machine.cpu")?,
            options: text(&raw.options, "machine.options")?,
        };
        Ok((
            machine,
            MachineLines {
                start,
                memory: memory_line,
                given: raw.memory.is_some(),
            },
        ))
    }

    fn check_machine_values(&self, m: &Machine, l: &MachineLines) -> Result<(), ConfigError> {
        if !(1..=MAX_HOST_CPUS).contains(&m.cpus) {
            return Err(self.err(
                l.start,
                "machine.cpus",
                format!("{} is out of range 1..={MAX_HOST_CPUS}", m.cpus),
            ));
        }
        if m.memory_bytes == 0 || !m.memory_bytes.is_multiple_of(MIB) {
            return Err(self.err(
                l.memory,
                "machine.memory",
                "bad size: must be a non-zero whole number of MiB",
            ));
        }
        Ok(())
    }

    /// Checks across VMs: unique names, memory against the machine's.
    fn cross_checks(
        &self,
        machine: &Machine,
        ml: &MachineLines,
        vms: &[VmConfig],
        lines: &[VmLines],
        single_form: bool,
    ) -> Result<(), ConfigError> {
        if vms.is_empty() {
            return Err(self.err(None, "vms", "no VM configured"));
        }
        if vms.len() > MAX_VMS {
            return Err(self.err(
                None,
                "vms",
                format!("{} VMs; at most {MAX_VMS} are supported", vms.len()),
            ));
        }
        let prefix = |i: usize| {
            if single_form {
                String::new()
            } else {
                format!("vms[{i}].")
            }
        };
        for (i, vm) in vms.iter().enumerate() {
            let l = lines.get(i).copied().unwrap_or_default();
            if let Some(p) = vm.pin {
                if p >= machine.cpus {
                    return Err(self.err(
                        l.pin.or(l.start),
                        &format!("{}pin", prefix(i)),
                        format!(
                            "hart {p} does not exist: the machine has {} hart(s) (0..={})",
                            machine.cpus,
                            machine.cpus.saturating_sub(1)
                        ),
                    ));
                }
            }
            if let Some(j) = vms[..i].iter().position(|o| o.name == vm.name) {
                return Err(self.err(
                    l.name.or(l.start),
                    &format!("{}name", prefix(i)),
                    format!("duplicate VM name `{}` (also VM {j})", vm.name),
                ));
            }
            if vm.memory_bytes > machine.memory_bytes {
                return Err(self.err(
                    l.memory.or(l.start),
                    &format!("{}memory", prefix(i)),
                    format!(
                        "VM memory {} is larger than the host's memory {} (machine.memory)",
                        format_size(vm.memory_bytes),
                        format_size(machine.memory_bytes)
                    ),
                ));
            }
        }
        let sum = vms
            .iter()
            .map(|v| v.memory_bytes)
            .fold(0u64, u64::saturating_add);
        if sum > machine.memory_bytes {
            return Err(self.err(
                ml.memory.or(ml.start),
                "machine.memory",
                format!(
                    "the sum of VM memory {} is larger than the host's memory {}",
                    format_size(sum),
                    format_size(machine.memory_bytes)
                ),
            ));
        }
        let images = image_bytes(vms);
        let needed = sum
            .saturating_add(images)
            .saturating_add(HYPERVISOR_RESERVE);
        if needed > machine.memory_bytes {
            return Err(self.err(
                ml.memory.or(ml.start),
                "machine.memory",
                format!(
                    "the machine needs at least {} (the VMs' memory {} + the boot package's kernel and initrd images {} + {} for OpenSBI and the hypervisor) but machine.memory is {}; raise it or give the VMs less",
                    format_size(needed.next_multiple_of(MIB)),
                    format_size(sum),
                    crate::qemu::mib(images),
                    format_size(HYPERVISOR_RESERVE),
                    format_size(machine.memory_bytes)
                ),
            ));
        }
        Ok(())
    }

    fn check_name(&self, name: &str, line: Option<u32>, field: &str) -> Result<(), ConfigError> {
        self.check_label(name, "VM", line, field)
    }

    /// A VM or switch (`what`) name: 1..=MAX_NAME_LEN characters of A-Z a-z
    /// 0-9 - _ . starting with a letter or digit.
    fn check_label(
        &self,
        name: &str,
        what: &str,
        line: Option<u32>,
        field: &str,
    ) -> Result<(), ConfigError> {
        let ok_chars = name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        let starts_ok = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric());
        if name.is_empty() || name.len() > fv_bootpkg::MAX_NAME_LEN || !ok_chars || !starts_ok {
            return Err(self.err(
                line,
                field,
                format!(
                    "bad {what} name `{name}`: use 1..={} characters from A-Z a-z 0-9 - _ . starting with a letter or digit",
                    fv_bootpkg::MAX_NAME_LEN
                ),
            ));
        }
        Ok(())
    }

    fn check_vcpus(&self, vcpus: u32, line: Option<u32>, field: &str) -> Result<(), ConfigError> {
        if !(1..=MAX_VCPUS).contains(&vcpus) {
            return Err(self.err(
                line,
                field,
                format!("vcpus {vcpus} is out of range 1..={MAX_VCPUS}"),
            ));
        }
        Ok(())
    }

    fn check_vm_memory(
        &self,
        bytes: u64,
        line: Option<u32>,
        field: &str,
    ) -> Result<(), ConfigError> {
        if !bytes.is_multiple_of(fv_bootpkg::MEMORY_GRANULE) {
            return Err(self.err(
                line,
                field,
                format!(
                    "bad size {}: VM memory must be a multiple of 2M",
                    format_size(bytes)
                ),
            ));
        }
        Ok(())
    }

    /// Expands `~/` and `${VAR}` in path `p` (see the module documentation) and
    /// makes a relative result relative to the config file.
    fn resolve(&self, p: &str, line: Option<u32>, field: &str) -> Result<PathBuf, ConfigError> {
        let expanded = expand_path(p, |var| std::env::var_os(var))
            .map_err(|problem| self.err(line, field, problem))?;
        let p = Path::new(&expanded);
        Ok(if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        })
    }
}

/// Expands a path from a config file: a leading `~` followed by `/` or nothing
/// becomes `$HOME`, `${VAR}` becomes the value of environment variable `VAR` (read
/// through `lookup`), `$$` becomes `$`. An unset or empty variable, `~user`, a `$`
/// not followed by `{` or `$`, an unterminated `${` and a bad variable name are
/// errors; the message names the variable and what to do.
pub fn expand_path(
    text: &str,
    lookup: impl Fn(&str) -> Option<std::ffi::OsString>,
) -> Result<String, String> {
    let var = |name: &str, how: &str| -> Result<String, String> {
        match lookup(name) {
            None => Err(format!(
                "{how} is used in `{text}` but the environment variable `{name}` is not set"
            )),
            Some(v) if v.is_empty() => Err(format!(
                "{how} is used in `{text}` but the environment variable `{name}` is empty"
            )),
            Some(v) => v.into_string().map_err(|_| {
                format!("the environment variable `{name}` (used in `{text}`) is not valid UTF-8")
            }),
        }
    };
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    if let Some(after) = rest.strip_prefix('~') {
        if after.is_empty() || after.starts_with('/') {
            out.push_str(&var("HOME", "`~`")?);
            rest = after;
        } else {
            return Err(format!(
                "`{text}`: only `~/` (your home directory) is supported, not `~user`"
            ));
        }
    }
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('{') {
            let Some(end) = inner.find('}') else {
                return Err(format!("`{text}`: `${{` without a closing `}}`"));
            };
            let name = &inner[..end];
            let name_ok = name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !name_ok {
                return Err(format!(
                    "`{text}`: `${{{name}}}` is not a variable name (letters, digits and `_`, not starting with a digit)"
                ));
            }
            out.push_str(&var(name, &format!("`${{{name}}}`"))?);
            rest = &inner[end + 1..];
        } else {
            return Err(format!(
                "`{text}`: a `$` must start `${{VAR}}` (braces required) or be doubled (`$$`) for a literal `$`"
            ));
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Turns a YAML/serde error into a [`ConfigError`] naming the field.
fn yaml_error(file: &Path, text: &str, e: &serde_saphyr::Error) -> ConfigError {
    let line = e
        .location()
        .and_then(|l| u32::try_from(l.line()).ok())
        .filter(|&l| l > 0);
    let message = DefaultMessageFormatter
        .format_message(e.without_snippet())
        .escape_debug()
        .to_string();
    let field = unknown_field(&message)
        .or_else(|| line.and_then(|l| key_at_line(text, l)))
        .unwrap_or_else(|| "(document)".into());
    ConfigError {
        file: file.to_path_buf(),
        line,
        field,
        problem: message,
    }
}

/// The name in serde's "unknown field `x`, expected ...".
fn unknown_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    Some(rest.split('`').next()?.to_string())
}

/// The mapping key on 1-based `line` of `text` (`  - vcpus: 3` gives `vcpus`).
fn key_at_line(text: &str, line: u32) -> Option<String> {
    let l = text
        .lines()
        .nth(usize::try_from(line).ok()?.checked_sub(1)?)?;
    let l = l.trim_start().trim_start_matches(['-', ' ', '{']);
    let (key, _) = l.split_once(':')?;
    let key = key.trim();
    (!key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .then(|| key.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;
    use std::fs;

    /// A temporary directory with a kernel file in it.
    struct Dir(PathBuf);

    /// The 64-byte header of an ELF64 RISC-V executable without segments (the
    /// config only looks at the header).
    fn elf_header(machine: u16) -> Vec<u8> {
        let mut h = vec![0u8; 64];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = 2; // ELF64
        h[5] = 1; // little-endian
        h[6] = 1;
        h[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        h[18..20].copy_from_slice(&machine.to_le_bytes());
        h[52..54].copy_from_slice(&64u16.to_le_bytes());
        h[54..56].copy_from_slice(&56u16.to_le_bytes());
        h
    }

    /// What `k.elf` holds.
    fn riscv_elf() -> Vec<u8> {
        elf_header(243)
    }

    impl Dir {
        fn new(tag: &str) -> Dir {
            // Under target/tmp: the tests' files stay in this tree.
            let d = crate::paths::target_dir()
                .join("tmp")
                .join(format!("fv-config-{tag}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&d);
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join("k.elf"), riscv_elf()).unwrap();
            fs::write(d.join("rd.cpio"), b"initrd").unwrap();
            Dir(d)
        }
        fn cfg(&self) -> PathBuf {
            self.0.join("vm.yaml")
        }
        fn parse(&self, yaml: &str) -> Result<Config, ConfigError> {
            parse(yaml, &self.cfg())
        }
        /// `yaml` is refused with an error as [`assert_error`] checks it.
        fn expect_error(&self, yaml: &str, line: u32, field: &str, problem: &str) {
            match self.parse(yaml) {
                Ok(_) => panic!("accepted: {yaml}"),
                Err(e) => assert_error(&e, line, field, problem),
            }
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// The error names the file, the line, the field, and says `problem`.
    fn assert_error(e: &ConfigError, line: u32, field: &str, problem: &str) {
        let msg = e.to_string();
        assert!(msg.contains("vm.yaml"), "no file in: {msg}");
        assert!(
            msg.contains(&format!(":{line}:")),
            "no line {line} in: {msg}"
        );
        assert!(
            msg.contains(&format!("`{field}`")),
            "no field {field} in: {msg}"
        );
        assert!(msg.contains(problem), "no `{problem}` in: {msg}");
        assert_eq!(e.line, Some(line), "{msg}");
        assert_eq!(e.field, field, "{msg}");
    }

    #[test]
    fn weight_and_pin() {
        let d = Dir::new("sched");
        let c = d
            .parse("machine:\n  cpus: 2\n  memory: 1G\nvms:\n  - name: a\n    memory: 64M\n    kernel: k.elf\n    weight: 200\n    pin: 1\n  - name: b\n    memory: 64M\n    kernel: k.elf\n")
            .unwrap();
        assert_eq!((c.vms[0].weight, c.vms[0].pin), (200, Some(1)));
        assert_eq!(
            (c.vms[1].weight, c.vms[1].pin),
            (fv_bootpkg::DEFAULT_WEIGHT, None)
        );
        d.expect_error("machine:\n  cpus: 2\n  memory: 1G\nvms:\n  - name: a\n    memory: 64M\n    kernel: k.elf\n    pin: 2\n", 8, "vms[0].pin", "hart 2 does not exist");
        d.expect_error(
            "name: a\nmemory: 64M\nkernel: k.elf\nweight: 0\n",
            4,
            "weight",
            "out of range",
        );
        d.expect_error(
            "name: a\nmemory: 64M\nkernel: k.elf\nweight: 10001\n",
            4,
            "weight",
            "out of range",
        );
    }

    /// `console:` is `uart` (the default) or `virtio`, per VM; anything else,
    /// or the key at the top level next to `vms:`, is refused naming file,
    /// line and field.
    #[test]
    fn console_choice() {
        let d = Dir::new("console");
        let c = d
            .parse("machine:\n  memory: 1G\nvms:\n  - name: a\n    memory: 64M\n    kernel: k.elf\n    console: virtio\n  - name: b\n    memory: 64M\n    kernel: k.elf\n    console: uart\n  - name: c\n    memory: 64M\n    kernel: k.elf\n")
            .unwrap();
        let got: Vec<ConsoleChoice> = c.vms.iter().map(|v| v.console).collect();
        assert_eq!(
            got,
            [
                ConsoleChoice::Virtio,
                ConsoleChoice::Uart,
                ConsoleChoice::Uart
            ]
        );
        let c = d
            .parse("name: a\nmemory: 64M\nkernel: k.elf\nconsole: virtio\n")
            .unwrap();
        assert_eq!(c.vms[0].console, ConsoleChoice::Virtio);
        d.expect_error(
            "name: a\nmemory: 64M\nkernel: k.elf\nconsole: hvc0\n",
            4,
            "console",
            "unknown console `hvc0`; expected one of: uart, virtio",
        );
        d.expect_error(
            "vms:\n  - name: a\n    memory: 64M\n    kernel: k.elf\n  - name: b\n    memory: 64M\n    kernel: k.elf\n    console: VIRTIO\n",
            8,
            "vms[1].console",
            "unknown console `VIRTIO`",
        );
        d.expect_error(
            "console: virtio\nvms:\n  - name: a\n    memory: 64M\n    kernel: k.elf\n",
            1,
            "console",
            "single-VM key at the top level",
        );
        assert_eq!(ConsoleChoice::default(), ConsoleChoice::Uart);
        for c in [ConsoleChoice::Uart, ConsoleChoice::Virtio] {
            assert_eq!(ConsoleChoice::parse(c.name()), Ok(c));
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("64m"), Ok(64 << 20));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("2 GB"), Ok(2 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("16K"), Ok(16 << 10));
        assert!(parse_size("0").is_err());
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("M").is_err());
        assert!(parse_size("-1G").is_err());
        assert!(parse_size("99999999999999999999").is_err());
        assert!(parse_size("17179869184G").is_err());
        assert_eq!(format_size(1 << 30), "1G");
        assert_eq!(format_size(768 << 20), "768M");
        assert_eq!(format_size(4097), "4097");
    }

    #[test]
    fn single_vm_form() {
        let d = Dir::new("single");
        let c = d
            .parse("name: demo\nvcpus: 2\nmemory: 64M\nkernel: k.elf\ninitrd: rd.cpio\ncommand_line: console=ttyS0\n")
            .unwrap();
        assert_eq!(c.vms.len(), 1);
        let vm = &c.vms[0];
        assert_eq!(vm.name, "demo");
        assert_eq!(vm.vcpus, 2);
        assert_eq!(vm.memory_bytes, 64 << 20);
        assert_eq!(vm.kernel, d.0.join("k.elf"));
        assert_eq!(vm.initrd, Some(d.0.join("rd.cpio")));
        assert_eq!(vm.command_line, "console=ttyS0");
        assert_eq!(c.machine.arch, Arch::Riscv64);
        assert_eq!(c.machine.cpus, 2);
        assert_eq!(c.machine.memory_bytes, (64 << 20) + DEFAULT_HOST_OVERHEAD);
        assert_eq!(c.machine.cpu, None);
    }

    #[test]
    fn multi_vm_form() {
        let d = Dir::new("multi");
        let kernel = d.0.join("k.elf");
        let yaml = format!(
            "machine:\n  arch: riscv64\n  cpus: 4\n  memory: 1G\n  cpu: rv64,sstc=false\n  options: aia=aplic-imsic\nvms:\n  - name: a\n    memory: 128M\n    kernel: k.elf\n  - name: b\n    vcpus: 3\n    memory: 256M\n    kernel: {}\n",
            kernel.display()
        );
        let c = d.parse(&yaml).unwrap();
        assert_eq!(
            c.machine,
            Machine {
                arch: Arch::Riscv64,
                cpus: 4,
                memory_bytes: 1 << 30,
                cpu: Some("rv64,sstc=false".into()),
                options: Some("aia=aplic-imsic".into()),
            }
        );
        assert_eq!(c.vms.len(), 2);
        assert_eq!(c.vms[1].name, "b");
        assert_eq!(c.vms[1].vcpus, 3);
        assert_eq!(c.vms[1].kernel, kernel);
        assert_eq!(c.vms[0].command_line, "");
    }

    #[test]
    fn defaults_without_machine() {
        let d = Dir::new("defaults");
        let c = d
            .parse("vms:\n  - memory: 64M\n    kernel: k.elf\n  - memory: 32M\n    vcpus: 3\n    kernel: k.elf\n")
            .unwrap();
        assert_eq!(c.vms[0].name, "vm0");
        assert_eq!(c.vms[1].name, "vm1");
        assert_eq!(c.machine.cpus, 3);
        assert_eq!(c.machine.memory_bytes, (96 << 20) + DEFAULT_HOST_OVERHEAD);
    }

    #[test]
    fn unknown_field() {
        let d = Dir::new("unknown");
        d.expect_error(
            "vms:\n  - name: a\n    memory: 64M\n    kernel: k.elf\n    kernal: x\n",
            5,
            "kernal",
            "unknown field",
        );
        d.expect_error(
            "machine:\n  cpus: 2\n  ram: 1G\nvms: []\n",
            3,
            "ram",
            "unknown field",
        );
    }

    #[test]
    fn bad_size() {
        let d = Dir::new("size");
        d.expect_error("memory: 64Q\nkernel: k.elf\n", 1, "memory", "unknown unit");
        d.expect_error("memory: 3M\nkernel: k.elf\n", 1, "memory", "multiple of 2M");
        d.expect_error(
            "machine:\n  memory: lots\nvms:\n  - memory: 64M\n    kernel: k.elf\n",
            2,
            "machine.memory",
            "not a size",
        );
    }

    #[test]
    fn missing_kernel() {
        let d = Dir::new("kernel");
        let e = d
            .parse("vms:\n  - name: a\n    memory: 64M\n    kernel: nope.elf\n")
            .unwrap_err();
        assert_error(&e, 4, "vms[0].kernel", "does not exist");
        assert!(e.problem.contains("nope.elf"));
        d.expect_error("name: a\nmemory: 64M\n", 1, "kernel", "missing");
        d.expect_error(
            "memory: 64M\nkernel: k.elf\ninitrd: gone.cpio\n",
            3,
            "initrd",
            "does not exist",
        );
    }

    #[test]
    fn vm_memory_larger_than_host() {
        let d = Dir::new("vmmem");
        d.expect_error(
            "machine:\n  memory: 512M\nvms:\n  - name: a\n    memory: 1G\n    kernel: k.elf\n",
            5,
            "vms[0].memory",
            "larger than the host's memory",
        );
    }

    #[test]
    fn vm_memory_sum_larger_than_host() {
        let d = Dir::new("summem");
        d.expect_error("machine:\n  memory: 512M\nvms:\n  - name: a\n    memory: 256M\n    kernel: k.elf\n  - name: b\n    memory: 300M\n    kernel: k.elf\n", 2, "machine.memory", "sum of VM memory");
    }

    #[test]
    fn vcpus_out_of_range() {
        let d = Dir::new("vcpus");
        d.expect_error(
            "vms:\n  - name: a\n    vcpus: 65\n    memory: 64M\n    kernel: k.elf\n",
            3,
            "vms[0].vcpus",
            "out of range 1..=64",
        );
        d.expect_error(
            "vcpus: 0\nmemory: 64M\nkernel: k.elf\n",
            1,
            "vcpus",
            "out of range",
        );
        // Not a number at all: serde's error, still with field and line.
        d.expect_error(
            "memory: 64M\nkernel: k.elf\nvcpus: -1\n",
            3,
            "vcpus",
            "invalid",
        );
        d.expect_error(
            "machine:\n  cpus: 65\nvms:\n  - memory: 64M\n    kernel: k.elf\n",
            2,
            "machine.cpus",
            "out of range",
        );
    }

    #[test]
    fn duplicate_names() {
        let d = Dir::new("dup");
        d.expect_error("vms:\n  - name: a\n    memory: 64M\n    kernel: k.elf\n  - name: a\n    memory: 64M\n    kernel: k.elf\n", 5, "vms[1].name", "duplicate VM name `a`");
    }

    #[test]
    fn bad_arch() {
        let d = Dir::new("arch");
        d.expect_error(
            "machine:\n  arch: aarch64\nvms:\n  - memory: 64M\n    kernel: k.elf\n",
            2,
            "machine.arch",
            "unsupported arch `aarch64`",
        );
    }

    #[test]
    fn bad_name_and_stray_keys() {
        let d = Dir::new("name");
        d.expect_error(
            "name: has space\nmemory: 64M\nkernel: k.elf\n",
            1,
            "name",
            "bad VM name",
        );
        d.expect_error(
            "memory: 64M\nvms:\n  - memory: 64M\n    kernel: k.elf\n",
            1,
            "memory",
            "move it into a VM",
        );
        d.expect_error("vms: []\n", 1, "vms", "empty");
    }

    #[test]
    fn yaml_syntax_error_names_the_line() {
        let d = Dir::new("syntax");
        let e = d.parse("memory: 64M\nkernel: [k.elf\n").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("vm.yaml:"), "{msg}");
        assert!(e.line.is_some(), "{msg}");
    }

    #[test]
    fn from_parts_checks_like_a_file() {
        let d = Dir::new("parts");
        let vm = VmConfig {
            name: "a".into(),
            vcpus: 1,
            memory_bytes: 64 << 20,
            kernel: d.0.join("k.elf"),
            kernel_format: FormatChoice::Auto,
            console: ConsoleChoice::Uart,
            initrd: None,
            command_line: String::new(),
            weight: fv_bootpkg::DEFAULT_WEIGHT,
            pin: None,
        };
        let machine = Machine {
            arch: Arch::Riscv64,
            cpus: 1,
            memory_bytes: 100 << 20,
            cpu: None,
            options: None,
        };
        let path = d.cfg();
        assert!(Config::from_parts(&path, machine.clone(), vec![vm.clone()]).is_ok());
        let e =
            Config::from_parts(&path, machine.clone(), vec![vm.clone(), vm.clone()]).unwrap_err();
        assert!(e.problem.contains("duplicate VM name"), "{e}");
        let e = Config::from_parts(
            &path,
            machine,
            vec![VmConfig {
                kernel: d.0.join("missing"),
                ..vm
            }],
        )
        .unwrap_err();
        assert_eq!(e.field, "vms[0].kernel");
        assert!(e.problem.contains("does not exist"), "{e}");
    }

    /// A lookup over a fixed set of variables.
    fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<std::ffi::OsString> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.into())
    }

    #[test]
    fn expand_home_and_variables() {
        let env = env_of(&[
            ("HOME", "/home/u"),
            ("FV_LINUX", "/cache/linux"),
            ("EMPTY", ""),
            ("_x1", "y"),
        ]);
        let ok = |t: &str| expand_path(t, &env).unwrap();
        assert_eq!(ok("~/.cache/k"), "/home/u/.cache/k");
        assert_eq!(ok("~"), "/home/u");
        assert_eq!(ok("${FV_LINUX}/Image"), "/cache/linux/Image");
        assert_eq!(ok("~/a/${FV_LINUX}/${_x1}"), "/home/u/a//cache/linux/y");
        assert_eq!(ok("a$${FV_LINUX}$$"), "a${FV_LINUX}$");
        // `~` is special only at the very start.
        assert_eq!(ok("a/~/b"), "a/~/b");
        assert_eq!(ok("plain/path.elf"), "plain/path.elf");
        // A variable's value is not expanded again.
        let env2 = env_of(&[("A", "${B}"), ("B", "no")]);
        assert_eq!(expand_path("${A}", &env2).unwrap(), "${B}");
    }

    #[test]
    fn expand_errors_name_the_variable() {
        let env = env_of(&[("EMPTY", "")]);
        let err = |t: &str| expand_path(t, &env).unwrap_err();
        let e = err("${NOPE}/Image");
        assert!(e.contains("`NOPE` is not set"), "{e}");
        assert!(e.contains("${NOPE}/Image"), "{e}");
        assert!(err("${EMPTY}").contains("`EMPTY` is empty"));
        assert!(err("~/x").contains("`HOME` is not set"));
        assert!(err("~root/x").contains("not `~user`"));
        assert!(err("${UNCLOSED/x").contains("without a closing"));
        assert!(err("${}").contains("not a variable name"));
        assert!(err("${1A}").contains("not a variable name"));
        assert!(err("${A-B}").contains("not a variable name"));
        assert!(err("$HOME/x").contains("braces required"));
        assert!(err("x$").contains("braces required"));
    }

    #[test]
    fn config_paths_expand_home_and_variables() {
        let d = Dir::new("expand");
        let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) else {
            panic!("HOME is not set in the test environment");
        };
        // `~/` resolves against $HOME, not the config's directory: a missing file
        // there names the expanded path.
        let e = d
            .parse("memory: 64M\nkernel: ~/fv-no-such-kernel-7d1e.elf\n")
            .unwrap_err();
        assert_error(&e, 2, "kernel", "does not exist");
        let want = PathBuf::from(&home).join("fv-no-such-kernel-7d1e.elf");
        assert!(e.problem.contains(&want.display().to_string()), "{e}");
        // The real files, reached from $HOME through `..` (`~/` for the kernel,
        // `${HOME}` for the initrd): both resolve to the files in the temp dir.
        let up = PathBuf::from(&home)
            .components()
            .skip(1)
            .map(|_| "..")
            .collect::<Vec<_>>()
            .join("/");
        let kernel = format!("~/{up}{}", d.0.join("k.elf").display());
        let initrd = format!("${{HOME}}/{up}{}", d.0.join("rd.cpio").display());
        let c = d
            .parse(&format!(
                "memory: 64M\nkernel: {kernel}\ninitrd: {initrd}\n"
            ))
            .unwrap();
        let (k, rd) = (&c.vms[0].kernel, c.vms[0].initrd.as_ref().unwrap());
        assert!(
            k.starts_with(&home) && k.ends_with("k.elf") && k.is_file(),
            "{k:?}"
        );
        assert!(
            rd.starts_with(&home) && rd.ends_with("rd.cpio") && rd.is_file(),
            "{rd:?}"
        );
        assert_eq!(std::fs::read(k).unwrap(), riscv_elf());
        assert_eq!(std::fs::read(rd).unwrap(), b"initrd");
    }

    #[test]
    fn config_unset_variable_names_file_line_and_field() {
        let d = Dir::new("unset");
        let e = d
            .parse("vms:\n  - name: a\n    memory: 64M\n    kernel: k.elf\n    initrd: ${FV_TEST_SURELY_UNSET_5B9C}/rd.cpio\n")
            .unwrap_err();
        assert_error(
            &e,
            5,
            "vms[0].initrd",
            "`FV_TEST_SURELY_UNSET_5B9C` is not set",
        );
        d.expect_error(
            "memory: 64M\nkernel: $FV_TEST_SURELY_UNSET_5B9C\n",
            2,
            "kernel",
            "braces required",
        );
    }

    #[test]
    fn load_reports_unreadable_file() {
        let e = load(Path::new("/nonexistent/vm.yaml")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/vm.yaml"));
        assert!(e.problem.contains("cannot read"));
        assert!(e.problem.contains("does not exist"), "{e}");
        let d = Dir::new("cfgdir");
        let e = load(&d.0).unwrap_err();
        assert!(e.problem.contains("is a directory"), "{e}");
        assert!(!e.problem.contains("does not exist"), "{e}");
        fs::write(d.cfg(), "name: a\nmemory: 64M\nkernel: k.elf\n").unwrap();
        assert!(load(&d.cfg()).is_ok());
    }

    // --- Bad host input: paths, kernel formats, memory -------------------------

    /// A kernel or initrd path that is a directory says so, never "does not
    /// exist"; in both forms and through `from_parts`.
    #[test]
    fn image_path_that_is_a_directory() {
        let d = Dir::new("isdir");
        fs::create_dir_all(d.0.join("kdir")).unwrap();
        let e = d.parse("name: a\nmemory: 64M\nkernel: kdir\n").unwrap_err();
        assert_error(&e, 3, "kernel", "is a directory, not a file");
        assert!(!e.problem.contains("does not exist"), "{e}");
        assert!(e.problem.contains("kdir"), "{e}");
        d.expect_error(
            "vms:\n  - name: a\n    memory: 64M\n    kernel: k.elf\n    initrd: kdir\n",
            5,
            "vms[0].initrd",
            "initrd path",
        );
        d.expect_error(
            "memory: 64M\nkernel: k.elf\ninitrd: kdir\n",
            3,
            "initrd",
            "is a directory",
        );
        let vm = VmConfig {
            kernel: d.0.join("kdir"),
            ..vm_in(&d)
        };
        let e = Config::from_parts(&d.cfg(), machine_of(256), vec![vm]).unwrap_err();
        assert_eq!(e.field, "vms[0].kernel");
        assert!(e.problem.contains("is a directory"), "{e}");
    }

    /// An empty kernel or initrd is refused as empty.
    #[test]
    fn empty_image_files() {
        let d = Dir::new("empty");
        fs::write(d.0.join("empty.bin"), b"").unwrap();
        let e = d
            .parse("name: a\nmemory: 64M\nkernel: empty.bin\n")
            .unwrap_err();
        assert_error(&e, 3, "kernel", "is empty");
        assert!(e.problem.contains("empty.bin"), "{e}");
        // Forcing flat does not make an empty file a kernel.
        d.expect_error(
            "name: a\nmemory: 64M\nkernel: empty.bin\nkernel_format: flat\n",
            3,
            "kernel",
            "is empty",
        );
        d.expect_error(
            "name: a\nmemory: 64M\nkernel: k.elf\ninitrd: empty.bin\n",
            4,
            "initrd",
            "initrd file",
        );
        d.expect_error(
            "name: a\nmemory: 64M\nkernel: k.elf\ninitrd: empty.bin\n",
            4,
            "initrd",
            "is empty",
        );
    }

    /// A path whose target is gone, and a path through a file.
    #[test]
    fn dangling_link_and_file_in_the_path() {
        let d = Dir::new("dangling");
        std::os::unix::fs::symlink(d.0.join("gone.elf"), d.0.join("link.elf")).unwrap();
        let e = d.parse("memory: 64M\nkernel: link.elf\n").unwrap_err();
        assert_error(&e, 2, "kernel", "is a symbolic link to");
        assert!(e.problem.contains("gone.elf, which does not exist"), "{e}");
        d.expect_error(
            "memory: 64M\nkernel: k.elf/inside\n",
            2,
            "kernel",
            "does not exist",
        );
    }

    /// A file this user may not read: permission denied, not "does not exist".
    /// As root (who reads anything) a write-only sysfs attribute stands in, if
    /// there is one.
    #[test]
    fn unreadable_image_file() {
        let d = Dir::new("perm");
        // SAFETY: geteuid has no preconditions and touches no memory.
        let root = unsafe { libc::geteuid() } == 0;
        let path = if root {
            let denied = ["/sys/bus/pci/rescan", "/sys/bus/platform/drivers_probe"]
                .into_iter()
                .map(PathBuf::from)
                .find(|p| {
                    fs::File::open(p)
                        .is_err_and(|e| e.kind() == std::io::ErrorKind::PermissionDenied)
                });
            let Some(p) = denied else {
                eprintln!(
                    "unreadable_image_file: running as root and no unreadable file found; skipped"
                );
                return;
            };
            p
        } else {
            let p = d.0.join("secret.elf");
            fs::write(&p, riscv_elf()).unwrap();
            let mut perms = fs::metadata(&p).unwrap().permissions();
            std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o000);
            fs::set_permissions(&p, perms).unwrap();
            p
        };
        let yaml = format!("memory: 64M\nkernel: {}\n", path.display());
        d.expect_error(&yaml, 2, "kernel", "permission denied");
        let yaml = format!("memory: 64M\nkernel: k.elf\ninitrd: {}\n", path.display());
        let e = d.parse(&yaml).unwrap_err();
        assert_error(&e, 3, "initrd", "permission denied");
        assert!(!e.problem.contains("does not exist"), "{e}");
    }

    /// A text file is no kernel: refused with what it looks like, the accepted
    /// formats and how to force a flat binary. The field names its line.
    #[test]
    fn text_file_as_kernel() {
        let d = Dir::new("text");
        fs::write(d.0.join("notes.txt"), "hello, I am not a kernel\n").unwrap();
        let e = d
            .parse("vms:\n  - name: a\n    memory: 64M\n    kernel: notes.txt\n")
            .unwrap_err();
        assert_error(
            &e,
            4,
            "vms[0].kernel",
            "not a kernel format Ferrovisor recognises",
        );
        for part in [
            "notes.txt",
            "text (it starts `hello, I am not a kernel`)",
            "ELF64 RISC-V (riscv64) executable",
            "Linux RISC-V Image",
            "`kernel_format: flat`",
        ] {
            assert!(e.problem.contains(part), "no `{part}` in: {e}");
        }
    }

    /// An ELF file for another machine is refused naming its architecture.
    #[test]
    fn wrong_architecture_elf_kernel() {
        let d = Dir::new("arch-elf");
        fs::write(d.0.join("x86.elf"), elf_header(62)).unwrap();
        fs::write(d.0.join("arm.elf"), elf_header(183)).unwrap();
        let e = d
            .parse("name: a\nmemory: 64M\nkernel: x86.elf\n")
            .unwrap_err();
        assert_error(&e, 3, "kernel", "ELF file for x86-64 (e_machine 62)");
        assert!(e.problem.contains("riscv64"), "{e}");
        d.expect_error(
            "name: a\nmemory: 64M\nkernel: arm.elf\n",
            3,
            "kernel",
            "AArch64",
        );
    }

    /// `kernel_format: flat` loads anything as a flat binary; other values are
    /// checked; a forced format must match; the key is per VM.
    #[test]
    fn kernel_format_field() {
        let d = Dir::new("format");
        fs::write(d.0.join("payload.bin"), [0x6f, 0, 0, 0]).unwrap();
        let c = d
            .parse("name: a\nmemory: 64M\nkernel: payload.bin\nkernel_format: flat\n")
            .unwrap();
        assert_eq!(c.vms[0].kernel_format, FormatChoice::Flat);
        let c = d.parse("name: a\nmemory: 64M\nkernel: k.elf\n").unwrap();
        assert_eq!(c.vms[0].kernel_format, FormatChoice::Auto);
        let c = d
            .parse("vms:\n  - name: a\n    memory: 64M\n    kernel: k.elf\n    kernel_format: elf\n  - name: b\n    memory: 64M\n    kernel: payload.bin\n    kernel_format: flat\n")
            .unwrap();
        assert_eq!(
            (c.vms[0].kernel_format, c.vms[1].kernel_format),
            (FormatChoice::Elf, FormatChoice::Flat)
        );
        // Without it, the same file is refused and told about it.
        d.expect_error(
            "name: a\nmemory: 64M\nkernel: payload.bin\n",
            3,
            "kernel",
            "first bytes 6f 00 00 00",
        );
        d.expect_error(
            "name: a\nmemory: 64M\nkernel: payload.bin\nkernel_format: binary\n",
            4,
            "kernel_format",
            "unknown kernel format `binary`; use `auto`",
        );
        d.expect_error(
            "vms:\n  - name: a\n    memory: 64M\n    kernel: payload.bin\n    kernel_format: image\n",
            4,
            "vms[0].kernel",
            "`kernel_format: image` but the file is not a Linux RISC-V Image",
        );
        d.expect_error(
            "kernel_format: flat\nvms:\n  - name: a\n    memory: 64M\n    kernel: payload.bin\n",
            1,
            "kernel_format",
            "move it into a VM",
        );
        // from_parts checks the format as a file does.
        let vm = VmConfig {
            kernel: d.0.join("payload.bin"),
            ..vm_in(&d)
        };
        let e = Config::from_parts(&d.cfg(), machine_of(256), vec![vm.clone()]).unwrap_err();
        assert_eq!(e.field, "vms[0].kernel");
        assert!(e.problem.contains("kernel_format: flat"), "{e}");
        let flat = VmConfig {
            kernel_format: FormatChoice::Flat,
            console: ConsoleChoice::Uart,
            ..vm
        };
        assert!(Config::from_parts(&d.cfg(), machine_of(256), vec![flat]).is_ok());
    }

    /// The machine must hold the VMs, the images and 32M for OpenSBI and the
    /// hypervisor; the images of a file used twice count once.
    #[test]
    fn machine_memory_too_small_for_vms_and_overhead() {
        let d = Dir::new("overhead");
        let f = fs::File::create(d.0.join("big.bin")).unwrap();
        f.set_len(3 * MIB).unwrap();
        let yaml = |machine: &str| {
            format!("machine:\n  memory: {machine}\nvms:\n  - name: a\n    memory: 64M\n    kernel: big.bin\n    kernel_format: flat\n  - name: b\n    memory: 64M\n    kernel: big.bin\n    kernel_format: flat\n")
        };
        // 128M of VMs + 3M of image (once) + 32M = 163M.
        let e = d.parse(&yaml("162M")).unwrap_err();
        assert_error(&e, 2, "machine.memory", "the machine needs at least 163M");
        for part in [
            "the VMs' memory 128M",
            "kernel and initrd images 3M",
            "32M for OpenSBI and the hypervisor",
            "machine.memory is 162M",
        ] {
            assert!(e.problem.contains(part), "no `{part}` in: {e}");
        }
        assert!(d.parse(&yaml("163M")).is_ok());
        // The same through from_parts (no lines).
        let vm = VmConfig {
            kernel: d.0.join("big.bin"),
            kernel_format: FormatChoice::Flat,
            console: ConsoleChoice::Uart,
            ..vm_in(&d)
        };
        let e = Config::from_parts(&d.cfg(), machine_of(98), vec![vm.clone()]).unwrap_err();
        assert_eq!((e.field.as_str(), e.line), ("machine.memory", None));
        assert!(e.problem.contains("needs at least 99M"), "{e}");
        assert!(Config::from_parts(&d.cfg(), machine_of(99), vec![vm]).is_ok());
    }

    /// Without `machine.memory`, the machine gets room for large images.
    #[test]
    fn default_machine_memory_grows_with_the_images() {
        let d = Dir::new("bigdefault");
        let f = fs::File::create(d.0.join("rootfs.cpio")).unwrap();
        f.set_len(300 * MIB).unwrap();
        let c = d
            .parse("memory: 512M\nkernel: k.elf\ninitrd: rootfs.cpio\n")
            .unwrap();
        // 300M + 32M + 4M is more than the usual 256M.
        assert_eq!(c.machine.memory_bytes, (512 + 336) * MIB);
        assert_eq!(c.memory_origin, MemoryOrigin::Default);
        let c = d.parse("memory: 64M\nkernel: k.elf\n").unwrap();
        assert_eq!(c.machine.memory_bytes, 64 * MIB + DEFAULT_HOST_OVERHEAD);
    }

    fn host(limit: u64) -> HostMemory {
        HostMemory {
            limit,
            source: "MemTotal 1024M + SwapTotal 0M in /proc/meminfo".into(),
            available: None,
        }
    }

    /// A machine larger than the host can give QEMU: refused naming both numbers,
    /// the line of `machine.memory`, or that it was the default.
    #[test]
    fn machine_memory_more_than_the_host_has() {
        let d = Dir::new("host");
        let c = d
            .parse("machine:\n  cpus: 1\n  memory: 2G\nvms:\n  - name: a\n    memory: 64M\n    kernel: k.elf\n")
            .unwrap();
        assert_eq!(c.memory_origin, MemoryOrigin::Given(Some(3)));
        let e = c.check_host_memory(&host(1 << 30)).unwrap_err();
        assert_error(
            &e,
            3,
            "machine.memory",
            "the machine's 2G is more than this host can give QEMU: 1024M",
        );
        assert!(e.problem.contains("MemTotal 1024M + SwapTotal 0M"), "{e}");
        assert!(c.check_host_memory(&host(2 << 30)).is_ok());
        // Not given: the default is what is too large, and the message says so.
        let c = d.parse("name: a\nmemory: 1G\nkernel: k.elf\n").unwrap();
        let e = c.check_host_memory(&host(1 << 30)).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("vm.yaml: `machine.memory`"), "{msg}");
        assert!(
            msg.contains("not set, so the machine gets the VMs' memory 1G + 256M = 1280M"),
            "{msg}"
        );
        assert!(msg.contains("1024M"), "{msg}");
        // This host: a 16T machine is more than any test machine has.
        let c = d
            .parse("machine:\n  memory: 16T\nvms:\n  - memory: 64M\n    kernel: k.elf\n")
            .unwrap();
        let e = c
            .check_host_memory(&HostMemory::read().unwrap())
            .unwrap_err();
        assert_error(
            &e,
            2,
            "machine.memory",
            "16T is more than this host can give QEMU",
        );
    }

    fn vm_in(d: &Dir) -> VmConfig {
        VmConfig {
            name: "a".into(),
            vcpus: 1,
            memory_bytes: 64 << 20,
            kernel: d.0.join("k.elf"),
            kernel_format: FormatChoice::Auto,
            console: ConsoleChoice::Uart,
            initrd: None,
            command_line: String::new(),
            weight: fv_bootpkg::DEFAULT_WEIGHT,
            pin: None,
        }
    }

    fn machine_of(mib: u64) -> Machine {
        Machine {
            arch: Arch::Riscv64,
            cpus: 1,
            memory_bytes: mib * MIB,
            cpu: None,
            options: None,
        }
    }

    // --- Devices: disks, NICs, rng, switches -----------------------------------

    /// `sectors` sectors of zeros at `name` in the test directory.
    fn image(d: &Dir, name: &str, sectors: u64) -> PathBuf {
        let p = d.0.join(name);
        fs::write(&p, vec![0u8; (sectors * SECTOR_SIZE) as usize]).unwrap();
        p
    }

    fn set_mode(p: &Path, mode: u32) {
        let mut perms = fs::metadata(p).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, mode);
        fs::set_permissions(p, perms).unwrap();
    }

    /// Two VMs and two switches: every device field, its defaults, and the
    /// plan they give.
    #[test]
    fn devices_multi_vm_form() {
        let d = Dir::new("dev-multi");
        image(&d, "a.img", 2048);
        image(&d, "shared.img", 8);
        let yaml = "machine:
  memory: 1G
  switches:
    - name: lan
      uplink: true
      forwards: [\"tcp:8080:80\", udp:5353:10.0.2.16:53]
    - name: back
vms:
  - name: a
    memory: 64M
    kernel: k.elf
    disks:
      - path: a.img
      - path: shared.img
        read_only: true
    nics:
      - switch: lan
        mac: 52:54:00:12:34:56
      - { switch: back }
    rng: true
  - name: b
    memory: 64M
    kernel: k.elf
    disks: [{ path: shared.img, read_only: true }]
    nics: [{ switch: back, mac: \"02:AA:bb:00:00:01\" }]
    rng: false
  - name: c
    memory: 64M
    kernel: k.elf
";
        let c = d.parse(yaml).unwrap();
        let devs = &c.devices;
        assert_eq!(devs.vms.len(), 3);
        assert_eq!(
            devs.vms[0].disks,
            [
                Disk {
                    path: d.0.join("a.img"),
                    read_only: false
                },
                Disk {
                    path: d.0.join("shared.img"),
                    read_only: true
                }
            ]
        );
        assert_eq!(devs.vms[0].nics[0].mac.to_string(), "52:54:00:12:34:56");
        assert!(devs.vms[0].nics[0].mac_given);
        assert_eq!(devs.vms[0].nics[1].mac, MacAddr::derived("a", 1));
        assert!(!devs.vms[0].nics[1].mac_given);
        assert_eq!(devs.vms[0].nics[1].switch, "back");
        assert!(devs.vms[0].rng && !devs.vms[1].rng && !devs.vms[2].rng);
        assert_eq!(devs.vms[1].nics[0].mac.to_string(), "02:aa:bb:00:00:01");
        assert_eq!(devs.vms[2], VmDevices::default());
        assert_eq!(devs.switches.len(), 2);
        assert!(devs.switches[0].uplink && !devs.switches[1].uplink);
        let fw: Vec<String> = devs.switches[0]
            .forwards
            .iter()
            .map(PortForward::hostfwd)
            .collect();
        assert_eq!(
            fw,
            [
                "tcp:127.0.0.1:8080-10.0.2.15:80",
                "udp:127.0.0.1:5353-10.0.2.16:53"
            ]
        );
        // Three disks, one rng, one uplink; VM a: 2 disks, 2 NICs, rng.
        let bases: Vec<u64> = c.plan.host.iter().map(|h| h.slot.base).collect();
        assert_eq!(
            bases,
            [
                0x1000_8000,
                0x1000_7000,
                0x1000_6000,
                0x1000_5000,
                0x1000_4000
            ]
        );
        assert_eq!(c.plan.vms[0].len(), 5);
        assert_eq!(c.plan.vms[1].len(), 2);
        assert!(c.plan.vms[2].is_empty());
        assert_eq!(c.switch_lines[0].forwards, [Some(6), Some(6)]);
    }

    /// The single-VM form takes `disks`, `nics` and `rng` at the top level,
    /// with fields named without `vms[0].`; disk paths expand like kernel's.
    #[test]
    fn devices_single_vm_form() {
        let d = Dir::new("dev-single");
        image(&d, "d.img", 1);
        fs::create_dir_all(d.0.join("sub")).unwrap();
        image(&d, "sub/e.img", 4);
        let c = d
            .parse("name: x\nmemory: 64M\nkernel: k.elf\ndisks: [{ path: d.img }, { path: sub/e.img, read_only: true }]\nnics: [{ switch: s }]\nrng: true\nmachine:\n  switches: [{ name: s }]\n")
            .unwrap();
        assert_eq!(c.devices.vms[0].disks.len(), 2);
        assert_eq!(c.devices.vms[0].disks[1].path, d.0.join("sub/e.img"));
        assert_eq!(c.devices.vms[0].nics[0].mac, MacAddr::derived("x", 0));
        assert_eq!(c.plan.host.len(), 3);
        d.expect_error(
            "name: x\nmemory: 64M\nkernel: k.elf\ndisks:\n  - path: nope.img\n",
            5,
            "disks[0].path",
            "disk image file",
        );
        d.expect_error(
            "name: x\nmemory: 64M\nkernel: k.elf\nnics:\n  - switch: lan\n",
            5,
            "nics[0].switch",
            "switch `lan` is not defined; no switch is defined",
        );
        d.expect_error(
            "disks: []\nvms:\n  - name: a\n    memory: 64M\n    kernel: k.elf\n",
            1,
            "disks",
            "single-VM key at the top level",
        );
        d.expect_error(
            "rng: true\nvms:\n  - name: a\n    memory: 64M\n    kernel: k.elf\n",
            1,
            "rng",
            "move it into a VM",
        );
        // Paths expand `~/` and `${VAR}`: an unset variable is named.
        d.expect_error(
            "name: x\nmemory: 64M\nkernel: k.elf\ndisks:\n  - path: ${FV_TEST_SURELY_UNSET_DISK}/d.img\n",
            5,
            "disks[0].path",
            "`FV_TEST_SURELY_UNSET_DISK` is not set",
        );
    }

    /// Bad images: missing, directory, empty, not whole sectors, read-only
    /// file used read-write; each names file, line and field.
    #[test]
    fn bad_disk_images() {
        let d = Dir::new("dev-img");
        fs::create_dir_all(d.0.join("dir.img")).unwrap();
        fs::write(d.0.join("empty.img"), b"").unwrap();
        fs::write(d.0.join("odd.img"), vec![0u8; 1000]).unwrap();
        let ro = image(&d, "ro.img", 2);
        set_mode(&ro, 0o444);
        let vm = |disk: &str| {
            format!("vms:\n  - name: a\n    memory: 64M\n    kernel: k.elf\n    disks:\n      - read_only: false\n        path: {disk}\n")
        };
        d.expect_error(
            &vm("gone.img"),
            7,
            "vms[0].disks[0].path",
            "gone.img: does not exist",
        );
        d.expect_error(&vm("dir.img"), 7, "vms[0].disks[0].path", "is a directory");
        d.expect_error(
            &vm("empty.img"),
            7,
            "vms[0].disks[0].path",
            "empty.img is empty",
        );
        let e = d.parse(&vm("odd.img")).unwrap_err();
        assert_error(
            &e,
            7,
            "vms[0].disks[0].path",
            "is 1000 bytes, not a whole number of 512-byte sectors",
        );
        assert!(e.problem.contains("truncate -s 1024"), "{e}");
        let e = d.parse(&vm("ro.img")).unwrap_err();
        assert_error(
            &e,
            7,
            "vms[0].disks[0].path",
            "is a read-only file (mode 0444",
        );
        assert!(e.problem.contains("read_only: true"), "{e}");
        // Read-only use of the same file is fine.
        d.parse("vms:\n  - name: a\n    memory: 64M\n    kernel: k.elf\n    disks:\n      - path: ro.img\n        read_only: true\n")
            .unwrap();
        d.expect_error(
            "vms:\n  - name: a\n    memory: 64M\n    kernel: k.elf\n    disks:\n      - read_only: true\n",
            6,
            "vms[0].disks[0].path",
            "missing",
        );
        d.expect_error(
            "vms:\n  - name: a\n    memory: 64M\n    kernel: k.elf\n    disks:\n      - path: ro.img\n        readonly: true\n",
            7,
            "readonly",
            "unknown field",
        );
        d.expect_error(
            "vms:\n  - name: a\n    memory: 64M\n    kernel: k.elf\n    disks:\n      - path: ro.img\n        read_only: yes please\n",
            7,
            "read_only",
            "",
        );
    }

    /// A file this user cannot open for writing although its mode allows it
    /// (immutable, `chattr +i`, which stops even root): refused for a
    /// read-write disk, accepted read-only. Skipped where chattr does not work.
    #[test]
    fn unwritable_image_used_read_write() {
        let d = Dir::new("dev-immutable");
        let p = image(&d, "imm.img", 2);
        let chattr = |flag: &str| {
            std::process::Command::new("chattr")
                .arg(flag)
                .arg(&p)
                .output()
                .is_ok_and(|o| o.status.success())
        };
        if !chattr("+i") {
            eprintln!("unwritable_image_used_read_write: chattr +i failed here; skipped");
            return;
        }
        let rw = d.parse("name: a\nmemory: 64M\nkernel: k.elf\ndisks:\n  - path: imm.img\n");
        let ro = d.parse(
            "name: a\nmemory: 64M\nkernel: k.elf\ndisks:\n  - { path: imm.img, read_only: true }\n",
        );
        assert!(chattr("-i"), "could not undo chattr +i on {}", p.display());
        let e = rw.unwrap_err();
        assert_error(
            &e,
            5,
            "disks[0].path",
            "cannot be opened for writing (permission denied) but the disk is read-write",
        );
        assert!(ro.is_ok(), "{ro:?}");
    }

    /// An image given read-write may be used by no other disk: twice in one
    /// VM, in two VMs, through a symbolic or hard link, or read-only beside it.
    /// Read-only disks may share one.
    #[test]
    fn same_writable_image_twice() {
        let d = Dir::new("dev-dup");
        image(&d, "w.img", 8);
        std::os::unix::fs::symlink(d.0.join("w.img"), d.0.join("sym.img")).unwrap();
        fs::hard_link(d.0.join("w.img"), d.0.join("hard.img")).unwrap();
        let two = |a: &str, b: &str| {
            format!("vms:\n  - name: a\n    memory: 64M\n    kernel: k.elf\n    disks:\n      - {a}\n  - name: b\n    memory: 64M\n    kernel: k.elf\n    disks:\n      - {b}\n")
        };
        let e = d.parse(&two("path: w.img", "path: w.img")).unwrap_err();
        assert_error(
            &e,
            11,
            "vms[1].disks[0].path",
            "is already vms[0].disks[0] (VM `a`, read-write), and here read-write again",
        );
        d.expect_error(
            &two("path: w.img", "path: sym.img"),
            11,
            "vms[1].disks[0].path",
            "is already vms[0].disks[0]",
        );
        d.expect_error(
            &two("path: hard.img", "path: ./w.img"),
            11,
            "vms[1].disks[0].path",
            "is already vms[0].disks[0]",
        );
        d.expect_error(
            &two("{ path: w.img, read_only: true }", "path: w.img"),
            11,
            "vms[1].disks[0].path",
            "(VM `a`, read-only), and here read-write",
        );
        d.expect_error(
            &two("path: w.img", "{ path: w.img, read_only: true }"),
            11,
            "vms[1].disks[0].path",
            "(VM `a`, read-write), and here read-only",
        );
        d.expect_error(
            "name: a\nmemory: 64M\nkernel: k.elf\ndisks:\n  - path: w.img\n  - path: w.img\n",
            6,
            "disks[1].path",
            "is already disks[0] (VM `a`, read-write)",
        );
        let c = d
            .parse(&two(
                "{ path: w.img, read_only: true }",
                "{ path: sym.img, read_only: true }",
            ))
            .unwrap();
        assert_eq!(c.plan.host.len(), 2);
    }

    /// 8 virtio-mmio slots on the machine: disks (one each), one rng, the
    /// uplink. The first device without a slot is named.
    #[test]
    fn too_many_devices_for_the_machine() {
        let d = Dir::new("dev-slots");
        let mut yaml = String::from(
            "machine:\n  memory: 1G\n  switches:\n    - name: lan\n      uplink: true\nvms:\n",
        );
        // Lines 7..: 3 VMs of 5 lines + 3 disks each (lines 12-14, 20-22, 28-30).
        for v in 0..3 {
            yaml.push_str(&format!(
                "  - name: v{v}\n    memory: 64M\n    kernel: k.elf\n    rng: true\n    disks:\n"
            ));
            for k in 0..3 {
                let name = format!("v{v}d{k}.img");
                image(&d, &name, 1);
                yaml.push_str(&format!("      - path: {name}\n"));
            }
        }
        let e = d.parse(&yaml).unwrap_err();
        assert_error(&e, 30, "vms[2].disks[2]", "too many devices for the machine: it has 8 virtio-mmio slots, and this config needs 11: 9 disk(s) (one physical virtio-blk each) + 1 virtio-rng");
        assert!(e.problem.contains("+ 1 uplink(s)"), "{e}");
        // 7 disks + rng fill it; the uplink is then the one too many.
        let cut = yaml.rfind("      - path: v2d1.img").unwrap();
        let seven = &yaml[..cut];
        let e = d.parse(seven).unwrap_err();
        assert_error(&e, 5, "machine.switches[0].uplink", "needs 9: 7 disk(s)");
        let six = &yaml[..yaml.rfind("      - path: v2d0.img").unwrap()];
        let c = d.parse(six).unwrap();
        assert_eq!(c.plan.host.len(), 8);
        assert_eq!(c.plan.host[7].slot.base, 0x1000_1000);
    }

    /// 7 slots per VM for disks, NICs and rng.
    #[test]
    fn too_many_devices_for_a_vm() {
        let d = Dir::new("dev-vmslots");
        image(&d, "d.img", 1);
        let nics = |n: usize| "      - switch: s\n".repeat(n);
        let yaml = |n: usize, rng: bool| {
            format!("machine:\n  switches: [{{ name: s }}]\nvms:\n  - name: a\n    memory: 64M\n    kernel: k.elf\n    disks: [{{ path: d.img, read_only: true }}]\n    rng: {rng}\n    nics:\n{}", nics(n))
        };
        assert_eq!(d.parse(&yaml(5, true)).unwrap().plan.vms[0].len(), 7);
        assert_eq!(d.parse(&yaml(6, false)).unwrap().plan.vms[0].len(), 7);
        let e = d.parse(&yaml(7, false)).unwrap_err();
        assert_error(&e, 16, "vms[0].nics[6]", "too many devices for VM `a`: 8 (1 disk(s) + 7 NIC(s) + 0 virtio-rng), but a VM has 7 virtio-mmio slots");
        d.expect_error(
            &yaml(6, true),
            8,
            "vms[0].rng",
            "a VM has 7 virtio-mmio slots for them",
        );
    }

    /// MACs: syntax, multicast, zero, duplicates among all NICs (given or
    /// derived), the uplink NIC's.
    #[test]
    fn bad_macs() {
        let d = Dir::new("dev-mac");
        let one = |mac: &str| {
            format!("machine:\n  switches: [{{ name: s }}]\nvms:\n  - name: a\n    memory: 64M\n    kernel: k.elf\n    nics:\n      - switch: s\n        mac: {mac}\n")
        };
        d.expect_error(
            &one("\"52:54:00:12:34\""),
            9,
            "vms[0].nics[0].mac",
            "`52:54:00:12:34` is not a MAC address: expected six two-digit hex bytes",
        );
        d.expect_error(
            &one("52-54-00-12-34-56"),
            9,
            "vms[0].nics[0].mac",
            "is not a MAC address",
        );
        d.expect_error(
            &one("\"01:00:5e:00:00:01\""),
            9,
            "vms[0].nics[0].mac",
            "is a multicast address",
        );
        d.expect_error(
            &one("ff:ff:ff:ff:ff:ff"),
            9,
            "vms[0].nics[0].mac",
            "multicast",
        );
        d.expect_error(
            &one("\"00:00:00:00:00:00\""),
            9,
            "vms[0].nics[0].mac",
            "all zero",
        );
        // Unquoted is a string too (YAML 1.2 has no base-60 numbers).
        let c = d.parse(&one("52:54:00:12:34:56")).unwrap();
        assert_eq!(
            c.devices.vms[0].nics[0].mac.to_string(),
            "52:54:00:12:34:56"
        );
        let two = "machine:\n  switches: [{ name: s }]\nvms:\n  - name: a\n    memory: 64M\n    kernel: k.elf\n    nics:\n      - { switch: s, mac: \"02:00:00:00:00:01\" }\n  - name: b\n    memory: 64M\n    kernel: k.elf\n    nics:\n      - { switch: s }\n      - { switch: s, mac: \"02:00:00:00:00:01\" }\n";
        d.expect_error(
            two,
            14,
            "vms[1].nics[1].mac",
            "duplicate MAC address 02:00:00:00:00:01: vms[0].nics[0] (VM `a`) has it too",
        );
        // A given MAC equal to another NIC's derived one: the derived side is explained.
        let derived = MacAddr::derived("a", 0);
        let clash = format!("machine:\n  switches: [{{ name: s }}]\nvms:\n  - name: b\n    memory: 64M\n    kernel: k.elf\n    nics:\n      - {{ switch: s, mac: \"{derived}\" }}\n  - name: a\n    memory: 64M\n    kernel: k.elf\n    nics:\n      - {{ switch: s }}\n");
        d.expect_error(&clash, 13, "vms[1].nics[0].mac", &format!("duplicate MAC address {derived} (derived from the VM name `a` and the NIC's index 0)"));
        let uplink = "machine:\n  switches: [{ name: s, uplink: true }, { name: t, uplink: true }]\nvms:\n  - name: a\n    memory: 64M\n    kernel: k.elf\n    nics:\n      - switch: s\n        mac: \"52:54:00:fe:00:02\"\n";
        d.expect_error(
            uplink,
            9,
            "vms[0].nics[0].mac",
            "MAC address 52:54:00:fe:00:02 is that of the machine's virtio-net for an uplink",
        );
        // Without uplinks that address is a VM's like any other.
        d.parse(&uplink.replace("uplink: true", "uplink: false"))
            .unwrap();
        d.expect_error(
            "machine:\n  switches: [{ name: s }]\nvms:\n  - name: a\n    memory: 64M\n    kernel: k.elf\n    nics:\n      - mac: \"02:00:00:00:00:01\"\n",
            8,
            "vms[0].nics[0].switch",
            "missing",
        );
    }

    /// Switches: names, the NICs' references, uplinks and port forwards.
    #[test]
    fn bad_switches_and_forwards() {
        let d = Dir::new("dev-switch");
        let cfg = |switches: &str, nic: &str| {
            format!("machine:\n  switches:\n{switches}vms:\n  - name: a\n    memory: 64M\n    kernel: k.elf\n    nics: [{{ switch: {nic} }}]\n")
        };
        d.expect_error(
            &cfg("    - name: lan\n    - name: dmz\n", "wan"),
            9,
            "vms[0].nics[0].switch",
            "switch `wan` is not defined; machine.switches defines: lan, dmz",
        );
        d.expect_error(
            &cfg("    - name: lan\n    - name: lan\n", "lan"),
            4,
            "machine.switches[1].name",
            "duplicate switch name `lan` (also machine.switches[0])",
        );
        d.expect_error(
            &cfg("    - name: \"my lan\"\n", "lan"),
            3,
            "machine.switches[0].name",
            "bad switch name `my lan`",
        );
        d.expect_error(
            &cfg("    - uplink: true\n", "lan"),
            3,
            "machine.switches[0].name",
            "missing",
        );
        // Two uplinks: one virtio-net each.
        let c = d
            .parse(&cfg(
                "    - name: lan\n      uplink: true\n    - name: wan\n      uplink: true\n",
                "lan",
            ))
            .unwrap();
        assert_eq!(
            c.plan.uplinks,
            [devices::host_slot(0), devices::host_slot(1)]
        );
        let many: String = (0..17).map(|i| format!("    - name: s{i}\n")).collect();
        d.expect_error(
            &cfg(&many, "s0"),
            19,
            "machine.switches[16]",
            "17 switches; a machine may have at most 16",
        );
        d.expect_error(
            &cfg(
                "    - name: lan\n      forwards: [\"tcp:8080:80\"]\n",
                "lan",
            ),
            4,
            "machine.switches[0].forwards[0]",
            "port forward `tcp:8080:80` on switch `lan`, which has no uplink",
        );
        let fw = |list: &str| {
            cfg(
                &format!("    - name: lan\n      uplink: true\n      forwards:\n{list}"),
                "lan",
            )
        };
        d.expect_error(
            &fw("        - tcp:8080:80\n        - udp:8080:80\n        - tcp:8080:10.0.2.16:22\n"),
            8,
            "machine.switches[0].forwards[2]",
            "port forward `tcp:8080:10.0.2.16:22` collides with machine.switches[0].forwards[0] (`tcp:8080:80`): host port 8080 (tcp) is forwarded twice",
        );
        d.expect_error(
            &fw("        - tcp:0:80\n"),
            6,
            "machine.switches[0].forwards[0]",
            "host port `0` is not a port number 1..=65535",
        );
        d.expect_error(
            &fw("        - tcp:8080:70000\n"),
            6,
            "machine.switches[0].forwards[0]",
            "guest port `70000`",
        );
        d.expect_error(
            &fw("        - http:8080:80\n"),
            6,
            "machine.switches[0].forwards[0]",
            "unknown protocol `http`; expected tcp or udp",
        );
        d.expect_error(
            &fw("        - \"8080:80\"\n"),
            6,
            "machine.switches[0].forwards[0]",
            "`8080:80` is not a port forward",
        );
        d.expect_error(
            &fw("        - tcp:8080\n"),
            6,
            "machine.switches[0].forwards[0]",
            "is not a port forward: expected PROTO:HOSTPORT:GUESTPORT",
        );
        d.expect_error(
            &fw("        - tcp:8080:10.0.2.2:80\n"),
            6,
            "machine.switches[0].forwards[0]",
            "not a guest address",
        );
        let c = d
            .parse(&fw("        - tcp:8080:80\n        - udp:8080:80\n"))
            .unwrap();
        assert_eq!(c.devices.switches[0].forwards.len(), 2);
        assert_eq!(c.plan.uplinks, [devices::host_slot(0)]);
    }

    /// A forward to a host port another program listens on is refused by
    /// `check_host_ports` naming the forward; a free one passes.
    #[test]
    fn host_port_in_use() {
        let d = Dir::new("dev-port");
        let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = busy.local_addr().unwrap().port();
        let yaml = format!("machine:\n  switches:\n    - name: lan\n      uplink: true\n      forwards:\n        - udp:{port}:53\n        - tcp:{port}:80\nvms:\n  - name: a\n    memory: 64M\n    kernel: k.elf\n");
        let c = d.parse(&yaml).unwrap();
        let e = c.check_host_ports().unwrap_err();
        assert_error(
            &e,
            7,
            "machine.switches[0].forwards[1]",
            &format!("host port 127.0.0.1:{port} (tcp) of `tcp:{port}:80` cannot be used"),
        );
        drop(busy);
        c.check_host_ports().unwrap();
    }

    /// `from_parts_with_devices` applies the same rules (no lines).
    #[test]
    fn from_parts_with_devices_checks_like_a_file() {
        let d = Dir::new("dev-parts");
        let img = image(&d, "p.img", 4);
        let disk = |read_only| Disk {
            path: img.clone(),
            read_only,
        };
        let devs = |disks: Vec<Disk>, nics: Vec<Nic>, switches: Vec<Switch>| Devices {
            vms: vec![VmDevices {
                disks,
                nics,
                rng: true,
            }],
            switches,
        };
        let lan = Switch {
            name: "lan".into(),
            uplink: false,
            forwards: Vec::new(),
        };
        let nic = |mac: &str| Nic {
            switch: "lan".into(),
            mac: MacAddr::parse(mac).unwrap(),
            mac_given: true,
        };
        let path = d.cfg();
        let c = Config::from_parts_with_devices(
            &path,
            machine_of(256),
            vec![vm_in(&d)],
            devs(
                vec![disk(false)],
                vec![nic("02:00:00:00:00:02")],
                vec![lan.clone()],
            ),
        )
        .unwrap();
        assert_eq!(c.plan.host.len(), 2);
        let e = Config::from_parts_with_devices(
            &path,
            machine_of(256),
            vec![vm_in(&d)],
            devs(vec![disk(false), disk(true)], Vec::new(), Vec::new()),
        )
        .unwrap_err();
        assert_eq!(e.field, "vms[0].disks[1].path");
        assert!(e.problem.contains("is already vms[0].disks[0]"), "{e}");
        let e = Config::from_parts_with_devices(
            &path,
            machine_of(256),
            vec![vm_in(&d)],
            devs(Vec::new(), vec![nic("03:00:00:00:00:02")], vec![lan]),
        )
        .unwrap_err();
        assert_eq!(e.field, "vms[0].nics[0].mac");
        assert!(e.problem.contains("multicast"), "{e}");
        let e = Config::from_parts_with_devices(
            &path,
            machine_of(256),
            vec![vm_in(&d)],
            Devices::none(2),
        )
        .unwrap_err();
        assert!(e.problem.contains("devices for 2"), "{e}");
        let missing = Disk {
            path: d.0.join("nope.img"),
            read_only: true,
        };
        let e = Config::from_parts_with_devices(
            &path,
            machine_of(256),
            vec![vm_in(&d)],
            devs(vec![missing], Vec::new(), Vec::new()),
        )
        .unwrap_err();
        assert_eq!(e.field, "vms[0].disks[0].path");
        assert!(e.problem.contains("does not exist"), "{e}");
    }
}
