//! Building the boot package from a configuration.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use fv_bootpkg::{
    DeviceKind, GuestPhysAddr, PackageBuilder, Segment, VmDescriptor, VmDevice, VmFlags,
};

use crate::config::{Config, VmConfig};
use crate::devices::{DevicePlan, VmDeviceKind};
use crate::loader::{self, KernelFormat, VmLayout};
use crate::MIB;

/// Host memory the hypervisor and OpenSBI need besides the VMs and the package
/// (OpenSBI's reserved region, the hypervisor image, its heap, frame and G-stage
/// tables).
pub const HYPERVISOR_RESERVE: u64 = 32 * MIB;

/// What went into one VM of a package (for messages).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmSummary {
    /// VM name.
    pub name: String,
    /// Kernel format.
    pub format: KernelFormat,
    /// Entry point.
    pub entry: u64,
    /// DTB slot.
    pub dtb_gpa: u64,
    /// Initrd placement.
    pub initrd_gpa: Option<u64>,
}

/// A built package.
#[derive(Clone, Debug)]
pub struct Built {
    /// The package bytes.
    pub bytes: Vec<u8>,
    /// One summary per VM.
    pub vms: Vec<VmSummary>,
}

/// Loads every VM's kernel (and initrd), places them and builds the package.
/// Checks that the VMs plus the package plus [`HYPERVISOR_RESERVE`] fit in the
/// machine's memory.
///
/// The switches and every VM's devices (disks, NICs, rng) go in as
/// `config.plan` places them ([`package_devices`]): each device in its guest
/// slot, a disk or rng with the base of the machine's virtio-mmio device that
/// serves it, each switch with its uplink's base.
pub fn build(config: &Config) -> Result<Built> {
    build_with_devices(config, &[])
}

/// [`build`], giving VM `i` the device records `devices[i]` instead of the
/// plan's (VMs past the end get the plan's). For tests that attach the
/// machine's devices themselves (`testing::Case::vm_devices`).
pub fn build_with_devices(config: &Config, devices: &[Vec<fv_bootpkg::VmDevice>]) -> Result<Built> {
    let mut builder = PackageBuilder::new();
    for (s, sw) in config.devices.switches.iter().enumerate() {
        let uplink = config
            .plan
            .uplinks
            .get(s)
            .copied()
            .flatten()
            .map(|u| u.base);
        builder.add_switch(&sw.name, uplink).map_err(|e| {
            anyhow!(
                "{}: switch `{}`: boot package: {e}",
                config.path.display(),
                sw.name
            )
        })?;
    }
    let mut vms = Vec::new();
    for (i, vm) in config.vms.iter().enumerate() {
        let devices = match devices.get(i) {
            Some(given) => given.clone(),
            None => package_devices(&config.plan, i)
                .with_context(|| format!("{}: VM `{}`", config.path.display(), vm.name))?,
        };
        let summary = add_vm(&mut builder, vm, &devices)
            .with_context(|| format!("{}: VM `{}`", config.path.display(), vm.name))?;
        vms.push(summary);
    }
    let bytes = builder.build();
    // Validate with the hypervisor's own parser: what we hand over must parse.
    fv_bootpkg::Package::parse(&bytes)
        .map_err(|e| anyhow!("internal error: the built package does not parse: {e}"))?;
    let vm_sum: u64 = config.vms.iter().map(|v| v.memory_bytes).sum();
    let needed = vm_sum
        .saturating_add(bytes.len() as u64)
        .saturating_add(HYPERVISOR_RESERVE);
    if needed > config.machine.memory_bytes {
        return Err(anyhow!(
            "{}: `machine.memory`: the machine needs at least {} MiB (VMs {} MiB + boot package {} MiB + hypervisor {} MiB) but has {} MiB",
            config.path.display(),
            needed.div_ceil(MIB),
            vm_sum / MIB,
            (bytes.len() as u64).div_ceil(MIB),
            HYPERVISOR_RESERVE / MIB,
            config.machine.memory_bytes / MIB
        ));
    }
    Ok(Built { bytes, vms })
}

/// The boot package's device records of VM `vm` in `plan` (slot order).
pub fn package_devices(plan: &DevicePlan, vm: usize) -> Result<Vec<VmDevice>> {
    let placed = plan.vms.get(vm).map_or(&[][..], Vec::as_slice);
    placed
        .iter()
        .map(|d| {
            let slot = u8::try_from(d.slot.index)
                .map_err(|_| anyhow!("guest slot {} out of range", d.slot.index))?;
            let kind = match d.kind {
                VmDeviceKind::Disk {
                    host, read_only, ..
                } => DeviceKind::Block {
                    host_base: host.base,
                    read_only,
                },
                VmDeviceKind::Nic { switch, mac, .. } => DeviceKind::Net {
                    switch: u16::try_from(switch)
                        .map_err(|_| anyhow!("switch index {switch} out of range"))?,
                    mac: mac.0,
                },
                VmDeviceKind::Rng { host } => DeviceKind::Rng {
                    host_base: host.base,
                },
            };
            Ok(VmDevice { slot, kind })
        })
        .collect()
}

fn add_vm(builder: &mut PackageBuilder, vm: &VmConfig, devices: &[VmDevice]) -> Result<VmSummary> {
    let kernel_bytes =
        fs::read(&vm.kernel).with_context(|| format!("reading kernel {}", vm.kernel.display()))?;
    let kernel = loader::load_kernel_as(&kernel_bytes, vm.kernel_format)
        .with_context(|| format!("kernel {}", vm.kernel.display()))?;
    let initrd_bytes = match &vm.initrd {
        Some(p) => Some(fs::read(p).with_context(|| format!("reading initrd {}", p.display()))?),
        None => None,
    };
    let layout: VmLayout = loader::plan(
        kernel,
        initrd_bytes.as_ref().map(|b| b.len() as u64),
        vm.memory_bytes,
    )
    .with_context(|| {
        format!(
            "placing kernel {} in {} MiB of RAM",
            vm.kernel.display(),
            vm.memory_bytes / MIB
        )
    })?;
    let segments: Vec<Segment<'_>> = layout
        .kernel
        .segments
        .iter()
        .map(|s| Segment {
            gpa: GuestPhysAddr::new(s.gpa),
            data: &s.data,
            mem_size: s.mem_size,
        })
        .collect();
    let initrd = match (&initrd_bytes, layout.initrd_gpa) {
        (Some(data), Some(gpa)) => Some(Segment {
            gpa: GuestPhysAddr::new(gpa),
            data,
            mem_size: data.len() as u64,
        }),
        _ => None,
    };
    builder
        .add_vm(&VmDescriptor {
            sched: fv_bootpkg::VmSched {
                weight: vm.weight,
                pin: vm.pin,
            },
            name: &vm.name,
            vcpus: vm.vcpus,
            memory_bytes: vm.memory_bytes,
            entry: GuestPhysAddr::new(layout.kernel.entry),
            dtb_gpa: GuestPhysAddr::new(layout.dtb_gpa),
            initrd,
            cmdline: &vm.command_line,
            flags: vm_flags(vm),
            segments: &segments,
            devices,
        })
        .map_err(|e| anyhow!("boot package: {e}"))?;
    Ok(VmSummary {
        name: vm.name.clone(),
        format: layout.kernel.format,
        entry: layout.kernel.entry,
        dtb_gpa: layout.dtb_gpa,
        initrd_gpa: layout.initrd_gpa,
    })
}

/// The boot package flags of `vm`: the UART is always there and the VM
/// starts at boot; `console: virtio` adds the virtio-console.
pub fn vm_flags(vm: &VmConfig) -> VmFlags {
    let mut flags = VmFlags::CONSOLE_UART | VmFlags::AUTOSTART;
    if vm.console == crate::config::ConsoleChoice::Virtio {
        flags |= VmFlags::CONSOLE_VIRTIO;
    }
    flags
}

/// Writes `bytes` to `path` atomically (temporary file, then rename).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

/// Where the package for config file `config_path` is cached:
/// `<cache>/packages/<stem>-<hash of the absolute path>.fvpkg`.
pub fn cache_path(cache_dir: &Path, config_path: &Path) -> PathBuf {
    let abs = fs::canonicalize(config_path).unwrap_or_else(|_| config_path.to_path_buf());
    let stem = config_path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "config".into());
    // FNV-1a: a stable, dependency-free name for the path.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in abs.to_string_lossy().bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    cache_dir.join("packages").join(format!(
        "{}-{:08x}.fvpkg",
        crate::paths::sanitize(&stem),
        h as u32
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;
    use crate::config::{self, Arch, Machine};
    use fv_bootpkg::Package;

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("fv-pkg-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn builds_a_parseable_package_from_a_config() {
        let d = tmp("build");
        fs::write(d.join("a.bin"), [0x6f, 0, 0, 0]).unwrap();
        fs::write(d.join("rd"), vec![7u8; 5000]).unwrap();
        let yaml = "machine:\n  memory: 512M\nvms:\n  - name: a\n    memory: 64M\n    kernel: a.bin\n    kernel_format: flat\n    initrd: rd\n    command_line: hello\n  - name: b\n    vcpus: 2\n    memory: 32M\n    kernel: a.bin\n    kernel_format: flat\n";
        let cfg = config::parse(yaml, &d.join("two.yaml")).unwrap();
        let built = build(&cfg).unwrap();
        let pkg = Package::parse(&built.bytes).unwrap();
        let vms: Vec<_> = pkg.vms().collect();
        assert_eq!(vms.len(), 2);
        assert_eq!(vms[0].name, "a");
        assert_eq!(vms[0].cmdline, "hello");
        assert_eq!(vms[0].entry.raw(), 0x8020_0000);
        assert_eq!(vms[0].dtb_gpa.raw(), 0x8000_0000 + 62 * MIB);
        assert_eq!(vms[0].initrd.unwrap().data, &vec![7u8; 5000][..]);
        assert_eq!(vms[1].vcpus, 2);
        assert_eq!(vms[1].initrd, None);
        assert_eq!(vms[1].segments().next().unwrap().data, &[0x6f, 0, 0, 0][..]);
        assert_eq!(built.vms[0].format, KernelFormat::Raw);
        let _ = fs::remove_dir_all(&d);
    }

    /// `console: virtio` sets CONSOLE_VIRTIO (bit 2) next to the UART and
    /// autostart bits; the default leaves it clear.
    #[test]
    fn console_virtio_sets_its_flag() {
        let d = tmp("hvc");
        fs::write(d.join("a.bin"), [0x6f, 0, 0, 0]).unwrap();
        let yaml = "machine:\n  memory: 512M\nvms:\n  - name: a\n    memory: 64M\n    kernel: a.bin\n    kernel_format: flat\n    console: virtio\n  - name: b\n    memory: 64M\n    kernel: a.bin\n    kernel_format: flat\n";
        let cfg = config::parse(yaml, &d.join("hvc.yaml")).unwrap();
        let built = build(&cfg).unwrap();
        let pkg = Package::parse(&built.bytes).unwrap();
        let flags: Vec<u32> = pkg.vms().map(|v| v.flags.bits()).collect();
        assert_eq!(flags, [0b111, 0b011]);
        let _ = fs::remove_dir_all(&d);
    }

    /// Switches and devices go into the package as the plan places them:
    /// guest slots from 1 (disks, NICs, rng), the disks' and rng's machine
    /// bases from 0x10008000 down, the uplink's base on its switch.
    #[test]
    fn devices_and_switches_go_into_the_package() {
        let d = tmp("devices");
        fs::write(d.join("a.bin"), [0x6f, 0, 0, 0]).unwrap();
        fs::write(d.join("rw.img"), vec![0u8; 4096]).unwrap();
        fs::write(d.join("ro.img"), vec![0u8; 512]).unwrap();
        let yaml = "machine:\n  memory: 512M\n  switches:\n    - { name: lan, uplink: true, forwards: [\"tcp:18080:80\"] }\n    - { name: back }\nvms:\n  - name: a\n    memory: 64M\n    kernel: a.bin\n    kernel_format: flat\n    console: virtio\n    disks: [{ path: rw.img }, { path: ro.img, read_only: true }]\n    nics: [{ switch: back, mac: \"02:00:00:00:00:0a\" }, { switch: lan }]\n    rng: true\n  - name: b\n    memory: 64M\n    kernel: a.bin\n    kernel_format: flat\n    disks: [{ path: ro.img, read_only: true }]\n    rng: true\n  - name: c\n    memory: 64M\n    kernel: a.bin\n    kernel_format: flat\n";
        let cfg = config::parse(yaml, &d.join("dev.yaml")).unwrap();
        let built = build(&cfg).unwrap();
        let pkg = Package::parse(&built.bytes).unwrap();
        let switches: Vec<(String, Option<u64>)> = pkg
            .switches()
            .map(|s| (s.name.to_string(), s.uplink))
            .collect();
        // Disks at 0x10008000..0x10006000, rng 0x10005000, uplink 0x10004000.
        assert_eq!(
            switches,
            [
                ("lan".to_string(), Some(0x1000_4000)),
                ("back".to_string(), None)
            ]
        );
        let vms: Vec<_> = pkg.vms().collect();
        let a: Vec<VmDevice> = vms[0].devices().collect();
        assert_eq!(
            a,
            [
                VmDevice {
                    slot: 1,
                    kind: DeviceKind::Block {
                        host_base: 0x1000_8000,
                        read_only: false
                    }
                },
                VmDevice {
                    slot: 2,
                    kind: DeviceKind::Block {
                        host_base: 0x1000_7000,
                        read_only: true
                    }
                },
                VmDevice {
                    slot: 3,
                    kind: DeviceKind::Net {
                        switch: 1,
                        mac: [2, 0, 0, 0, 0, 0x0a]
                    }
                },
                VmDevice {
                    slot: 4,
                    kind: DeviceKind::Net {
                        switch: 0,
                        mac: crate::devices::MacAddr::derived("a", 1).0
                    }
                },
                VmDevice {
                    slot: 5,
                    kind: DeviceKind::Rng {
                        host_base: 0x1000_5000
                    }
                },
            ]
        );
        assert_eq!(vms[0].devices().next().unwrap().gpa().raw(), 0x1000_2000);
        let b: Vec<VmDevice> = vms[1].devices().collect();
        assert_eq!(
            b,
            [
                VmDevice {
                    slot: 1,
                    kind: DeviceKind::Block {
                        host_base: 0x1000_6000,
                        read_only: true
                    }
                },
                VmDevice {
                    slot: 2,
                    kind: DeviceKind::Rng {
                        host_base: 0x1000_5000
                    }
                },
            ]
        );
        assert_eq!(vms[2].device_count(), 0);
        let _ = fs::remove_dir_all(&d);
    }

    /// The config's check counts the images only (a lower bound); the package's
    /// header and page padding can still tip it over, which `build` catches
    /// before anything is written.
    #[test]
    fn rejects_a_machine_too_small_for_the_package() {
        let d = tmp("small");
        // 3 MiB less 100 bytes: the config's 64M + 3M - 100 + 32M fits in 99M; the
        // package (a header page, then the image padded to a page) does not.
        fs::write(d.join("big.bin"), vec![1u8; (3 << 20) - 100]).unwrap();
        let vm = VmConfig {
            name: "a".into(),
            vcpus: 1,
            memory_bytes: 64 * MIB,
            kernel: d.join("big.bin"),
            kernel_format: loader::FormatChoice::Flat,
            console: crate::config::ConsoleChoice::Uart,
            initrd: None,
            command_line: String::new(),
            weight: fv_bootpkg::DEFAULT_WEIGHT,
            pin: None,
        };
        let machine = Machine {
            arch: Arch::Riscv64,
            cpus: 1,
            memory_bytes: 99 * MIB,
            cpu: None,
            options: None,
        };
        let cfg = Config::from_parts(&d.join("c.yaml"), machine, vec![vm]).unwrap();
        let e = build(&cfg).unwrap_err().to_string();
        assert!(e.contains("machine.memory"), "{e}");
        assert!(e.contains("boot package"), "{e}");
        assert!(e.contains("needs at least 100 MiB"), "{e}");
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn kernel_errors_name_the_vm_and_file() {
        let d = tmp("kerr");
        // 32-bit ELF header.
        let mut f = vec![0u8; 64];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 1;
        fs::write(d.join("k32"), &f).unwrap();
        // The config refuses it already, naming the field.
        let e = config::parse("name: x\nmemory: 64M\nkernel: k32\n", &d.join("c.yaml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("c.yaml:3: `kernel`"), "{e}");
        assert!(e.contains("k32"), "{e}");
        assert!(e.contains("32-bit"), "{e}");
        // A kernel whose header is fine but whose body is not: `build` names the VM.
        let mut f = vec![0u8; 64];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 2;
        f[5] = 1;
        f[16..18].copy_from_slice(&2u16.to_le_bytes());
        f[18..20].copy_from_slice(&243u16.to_le_bytes());
        f[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
        f[54..56].copy_from_slice(&56u16.to_le_bytes());
        f[56..58].copy_from_slice(&1u16.to_le_bytes()); // one header, past the end
        fs::write(d.join("trunc"), &f).unwrap();
        let cfg =
            config::parse("name: x\nmemory: 64M\nkernel: trunc\n", &d.join("c.yaml")).unwrap();
        let e = format!("{:#}", build(&cfg).unwrap_err());
        assert!(e.contains("VM `x`"), "{e}");
        assert!(e.contains("trunc"), "{e}");
        assert!(e.contains("malformed"), "{e}");
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn cache_path_is_stable_and_per_config() {
        let a = cache_path(Path::new("/c"), Path::new("/x/vm.yaml"));
        assert_eq!(a, cache_path(Path::new("/c"), Path::new("/x/vm.yaml")));
        assert_ne!(a, cache_path(Path::new("/c"), Path::new("/y/vm.yaml")));
        assert!(a.starts_with("/c/packages"));
        assert!(a.to_string_lossy().ends_with(".fvpkg"));
    }
}
