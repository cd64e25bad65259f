//! `ferrovisor run` and `ferrovisor package` with bad host input: a kernel path
//! that is a directory, a text file as kernel, an empty kernel, an ELF file for
//! another machine, an unknown `console:`, a machine too small for its VMs and one larger than this host
//! can give QEMU; and bad devices: disk images missing, a directory, empty, not
//! whole sectors, read-only but used read-write, one writable image twice, more
//! devices than the machine's 8 virtio-mmio slots or a VM's 7, malformed,
//! multicast, zero and duplicate MACs (also an uplink's), a NIC on an undefined
//! switch, duplicate or too many switches, port forwards that do not parse, collide, have no
//! uplink or whose host port is taken. Each must fail at once with a message
//! naming the config file, the line, the field and the problem, having written
//! no boot package and started no QEMU. Needs neither QEMU nor any bare-metal
//! build.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// A scratch directory with the bad inputs, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    /// A directory of its own for each test (`tag`): tests run in parallel.
    fn new(tag: &str) -> Scratch {
        // Cargo's temporary directory for integration tests: target/tmp.
        let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("fv-bad-input-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(d.join("kdir")).unwrap();
        fs::write(d.join("notes.txt"), "hello, I am not a kernel\n").unwrap();
        fs::write(d.join("empty.bin"), b"").unwrap();
        fs::write(d.join("x86.elf"), elf_header(62)).unwrap();
        fs::write(d.join("guest.elf"), elf_header(243)).unwrap();
        // Disk images: 4 sectors, a second one, 1000 bytes, a read-only file.
        fs::write(d.join("disk.img"), vec![0u8; 2048]).unwrap();
        fs::write(d.join("disk2.img"), vec![0u8; 2048]).unwrap();
        fs::write(d.join("odd.img"), vec![0u8; 1000]).unwrap();
        fs::write(d.join("ro.img"), vec![0u8; 512]).unwrap();
        let mut perms = fs::metadata(d.join("ro.img")).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o444);
        fs::set_permissions(d.join("ro.img"), perms).unwrap();
        // Never run: the checks must stop `run` before QEMU would load it.
        fs::write(d.join("hv.bin"), [0x6f, 0, 0, 0]).unwrap();
        Scratch(d)
    }

    fn config(&self, name: &str, yaml: &str) -> PathBuf {
        let p = self.0.join(format!("{name}.yaml"));
        fs::write(&p, yaml).unwrap();
        p
    }

    fn cache(&self, name: &str) -> PathBuf {
        self.0.join(format!("cache-{name}"))
    }

    /// `ferrovisor run --config <name>.yaml` with its own cache directory.
    fn run(&self, name: &str, yaml: &str) -> (Output, Duration) {
        let cfg = self.config(name, yaml);
        let t0 = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_ferrovisor"))
            .args(["run", "--timeout", "60", "--config"])
            .arg(&cfg)
            .arg("--hypervisor")
            .arg(self.0.join("hv.bin"))
            .env("XDG_CACHE_HOME", self.cache(name))
            .output()
            .unwrap();
        (out, t0.elapsed())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The 64-byte header of an ELF64 little-endian executable for `machine`.
fn elf_header(machine: u16) -> Vec<u8> {
    let mut h = vec![0u8; 64];
    h[..4].copy_from_slice(b"\x7fELF");
    h[4] = 2;
    h[5] = 1;
    h[6] = 1;
    h[16..18].copy_from_slice(&2u16.to_le_bytes());
    h[18..20].copy_from_slice(&machine.to_le_bytes());
    h[54..56].copy_from_slice(&56u16.to_le_bytes());
    h
}

/// Every file under `dir` (none if it does not exist).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .flat_map(|e| {
            let p = e.path();
            if p.is_dir() {
                files_under(&p)
            } else {
                vec![p]
            }
        })
        .collect()
}

/// `run` failed at once with `parts` in its message, before any package or QEMU.
fn assert_refused(s: &Scratch, name: &str, r: &(Output, Duration), parts: &[&str]) {
    let stderr = String::from_utf8_lossy(&r.0.stderr);
    assert!(!stderr.contains("does not exist"), "{name}: {stderr}");
    assert_refused_saying(s, name, r, parts);
}

/// [`assert_refused`] for a problem that may be that something does not exist.
fn assert_refused_saying(
    s: &Scratch,
    name: &str,
    (out, took): &(Output, Duration),
    parts: &[&str],
) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
    assert!(
        stderr.contains("ferrovisor: error: "),
        "{name}: no error line in: {stderr}"
    );
    for part in parts {
        assert!(stderr.contains(part), "{name}: no `{part}` in: {stderr}");
    }
    // Nothing started: no package built or written, no QEMU command line, no
    // serial log, and back long before the 60 s timeout.
    for never in [
        "building the boot package",
        "qemu-system-riscv64",
        "serial log",
    ] {
        assert!(!stderr.contains(never), "{name}: `{never}` in: {stderr}");
    }
    let left = files_under(&s.cache(name));
    assert!(left.is_empty(), "{name}: wrote {left:?}");
    assert!(
        out.stdout.is_empty(),
        "{name}: QEMU output? {:?}",
        out.stdout
    );
    assert!(*took < Duration::from_secs(10), "{name}: took {took:?}");
}

#[test]
fn run_refuses_bad_input_before_starting_anything() {
    let s = Scratch::new("run");
    let vm = |kernel: &str| format!("name: a\nmemory: 64M\nkernel: {kernel}\n");

    let r = s.run("dir", &vm("kdir"));
    assert_refused(
        &s,
        "dir",
        &r,
        &["dir.yaml:3: `kernel`", "kdir is a directory"],
    );

    let r = s.run("text", &vm("notes.txt"));
    assert_refused(
        &s,
        "text",
        &r,
        &[
            "text.yaml:3: `kernel`",
            "not a kernel format Ferrovisor recognises",
            "text (it starts `hello, I am not a kernel`)",
            "ELF64 RISC-V",
            "Linux RISC-V Image",
            "`kernel_format: flat`",
        ],
    );

    let r = s.run("empty", &vm("empty.bin"));
    assert_refused(
        &s,
        "empty",
        &r,
        &["empty.yaml:3: `kernel`", "empty.bin is empty"],
    );

    let r = s.run("x86", &vm("x86.elf"));
    assert_refused(
        &s,
        "x86",
        &r,
        &[
            "x86.yaml:3: `kernel`",
            "ELF file for x86-64 (e_machine 62)",
            "riscv64",
        ],
    );

    let r = s.run(
        "initrd-dir",
        "name: a\nmemory: 64M\nkernel: guest.elf\ninitrd: kdir\n",
    );
    assert_refused(
        &s,
        "initrd-dir",
        &r,
        &["initrd-dir.yaml:4: `initrd`", "is a directory"],
    );

    let r = s.run(
        "format",
        "name: a\nmemory: 64M\nkernel: notes.txt\nkernel_format: bzimage\n",
    );
    assert_refused(
        &s,
        "format",
        &r,
        &[
            "format.yaml:4: `kernel_format`",
            "unknown kernel format `bzimage`",
        ],
    );

    let r = s.run(
        "console",
        "vms:\n  - name: a\n    memory: 64M\n    kernel: guest.elf\n    console: hvc0\n",
    );
    assert_refused(
        &s,
        "console",
        &r,
        &[
            "console.yaml:5: `vms[0].console`",
            "unknown console `hvc0`; expected one of: uart, virtio",
        ],
    );

    // 64M + 64M of VMs + 32M for OpenSBI and the hypervisor > 150M.
    let r = s.run(
        "small",
        "machine:\n  memory: 150M\nvms:\n  - name: a\n    memory: 64M\n    kernel: guest.elf\n  - name: b\n    memory: 64M\n    kernel: guest.elf\n",
    );
    assert_refused(
        &s,
        "small",
        &r,
        &[
            "small.yaml:2: `machine.memory`",
            "the machine needs at least 160M",
            "machine.memory is 150M",
        ],
    );

    // More than any machine running this test has.
    let r = s.run(
        "huge",
        "machine:\n  memory: 16T\nvms:\n  - name: a\n    memory: 64M\n    kernel: guest.elf\n",
    );
    assert_refused(
        &s,
        "huge",
        &r,
        &[
            "huge.yaml:2: `machine.memory`",
            "the machine's 16T is more than this host can give QEMU",
            "MemTotal",
        ],
    );
}

/// The first VM of the device configs: `extra` (lines 5 on) indented as its fields.
fn vm_a(extra: &str) -> String {
    format!("vms:\n  - name: a\n    memory: 64M\n    kernel: guest.elf\n{extra}")
}

/// A second VM `b` after [`vm_a`]'s (its first line is `name`).
fn vm_b(extra: &str) -> String {
    format!("  - name: b\n    memory: 64M\n    kernel: guest.elf\n{extra}")
}

/// Bad disks, NICs, switches and port forwards (issue #9, point 7): refused
/// with file, line, field and problem, nothing written, no QEMU.
#[test]
fn run_refuses_bad_devices_before_starting_anything() {
    let s = Scratch::new("devices");
    let disk = |path: &str| format!("    disks:\n      - path: {path}\n");

    let r = s.run("img-missing", &vm_a(&disk("gone.img")));
    assert_refused_saying(
        &s,
        "img-missing",
        &r,
        &[
            "img-missing.yaml:6: `vms[0].disks[0].path`",
            "disk image file",
            "gone.img: does not exist",
        ],
    );
    let r = s.run("img-dir", &vm_a(&disk("kdir")));
    assert_refused(
        &s,
        "img-dir",
        &r,
        &[
            "img-dir.yaml:6: `vms[0].disks[0].path`",
            "kdir is a directory",
        ],
    );
    let r = s.run("img-empty", &vm_a(&disk("empty.bin")));
    assert_refused(
        &s,
        "img-empty",
        &r,
        &[
            "img-empty.yaml:6: `vms[0].disks[0].path`",
            "empty.bin is empty",
        ],
    );
    let r = s.run("img-odd", &vm_a(&disk("odd.img")));
    assert_refused(
        &s,
        "img-odd",
        &r,
        &[
            "img-odd.yaml:6: `vms[0].disks[0].path`",
            "odd.img is 1000 bytes, not a whole number of 512-byte sectors",
        ],
    );
    let r = s.run("img-ro", &vm_a(&disk("ro.img")));
    assert_refused(
        &s,
        "img-ro",
        &r,
        &[
            "img-ro.yaml:6: `vms[0].disks[0].path`",
            "ro.img is a read-only file (mode 0444",
            "but the disk is read-write",
            "read_only: true",
        ],
    );
    // The same writable image for two VMs, and twice for one.
    let yaml = vm_a(&disk("disk.img")) + &vm_b(&disk("./disk.img"));
    let r = s.run("img-twice", &yaml);
    assert_refused(
        &s,
        "img-twice",
        &r,
        &[
            "img-twice.yaml:11: `vms[1].disks[0].path`",
            "is already vms[0].disks[0] (VM `a`, read-write), and here read-write again",
        ],
    );
    let r = s.run(
        "img-twice-one-vm",
        &vm_a(
            "    disks:\n      - path: disk.img\n      - path: disk.img\n        read_only: true\n",
        ),
    );
    assert_refused(
        &s,
        "img-twice-one-vm",
        &r,
        &[
            "img-twice-one-vm.yaml:7: `vms[0].disks[1].path`",
            "(VM `a`, read-write), and here read-only",
        ],
    );

    // 9 devices for 8 slots: 7 disks, the rng, the uplink.
    let mut many = String::from("machine:\n  switches: [{ name: lan, uplink: true }]\n");
    for v in 0..7 {
        let img = format!("many{v}.img");
        fs::write(s.0.join(&img), vec![0u8; 512]).unwrap();
        many.push_str(&format!(
            "{}    disks: [{{ path: {img} }}]\n",
            if v == 0 {
                "vms:\n  - name: v0\n    memory: 32M\n    kernel: guest.elf\n    rng: true\n"
                    .to_string()
            } else {
                format!("  - name: v{v}\n    memory: 32M\n    kernel: guest.elf\n")
            }
        ));
    }
    let r = s.run("slots-machine", &many);
    assert_refused(
        &s,
        "slots-machine",
        &r,
        &[
            "slots-machine.yaml:2: `machine.switches[0].uplink`",
            "it has 8 virtio-mmio slots, and this config needs 9: 7 disk(s)",
            "+ 1 virtio-rng",
            "+ 1 uplink(s)",
        ],
    );
    // 8 devices for a VM's 7 slots.
    let nics = "      - switch: lan\n".repeat(7);
    let r = s.run(
        "slots-vm",
        &format!(
            "machine:\n  switches: [{{ name: lan }}]\n{}",
            vm_a(&format!("    rng: true\n    nics:\n{nics}"))
        ),
    );
    assert_refused(
        &s,
        "slots-vm",
        &r,
        &[
            "slots-vm.yaml:7: `vms[0].rng`",
            "too many devices for VM `a`: 8 (0 disk(s) + 7 NIC(s) + 1 virtio-rng), but a VM has 7 virtio-mmio slots",
        ],
    );

    // MACs.
    let lan = "machine:\n  switches:\n    - name: lan\n";
    let nic = |mac: &str| format!("    nics:\n      - switch: lan\n        mac: \"{mac}\"\n");
    for (name, mac, says) in [
        (
            "mac-malformed",
            "52:54:00:12:34",
            "`52:54:00:12:34` is not a MAC address",
        ),
        (
            "mac-multicast",
            "33:33:00:00:00:01",
            "33:33:00:00:00:01 is a multicast address",
        ),
        ("mac-zero", "00:00:00:00:00:00", "all zero"),
    ] {
        let r = s.run(name, &format!("{lan}{}", vm_a(&nic(mac))));
        assert_refused(
            &s,
            name,
            &r,
            &[&format!("{name}.yaml:10: `vms[0].nics[0].mac`"), says],
        );
    }
    let yaml = format!(
        "{lan}{}{}",
        vm_a(&nic("02:00:00:00:00:07")),
        vm_b(&nic("02:00:00:00:00:07"))
    );
    let r = s.run("mac-twice", &yaml);
    assert_refused(
        &s,
        "mac-twice",
        &r,
        &[
            "mac-twice.yaml:16: `vms[1].nics[0].mac`",
            "duplicate MAC address 02:00:00:00:00:07: vms[0].nics[0] (VM `a`) has it too",
        ],
    );

    // Switches.
    let r = s.run(
        "switch-undefined",
        &format!("{lan}{}", vm_a("    nics: [{ switch: wan }]\n")),
    );
    assert_refused(
        &s,
        "switch-undefined",
        &r,
        &[
            "switch-undefined.yaml:8: `vms[0].nics[0].switch`",
            "switch `wan` is not defined; machine.switches defines: lan",
        ],
    );
    let r = s.run(
        "switch-twice",
        &format!("{lan}    - name: lan\n{}", vm_a("")),
    );
    assert_refused(
        &s,
        "switch-twice",
        &r,
        &[
            "switch-twice.yaml:4: `machine.switches[1].name`",
            "duplicate switch name `lan`",
        ],
    );
    let switches: String = (0..17).map(|i| format!("    - name: s{i}\n")).collect();
    let r = s.run(
        "switches-17",
        &format!("machine:\n  switches:\n{switches}{}", vm_a("")),
    );
    assert_refused(
        &s,
        "switches-17",
        &r,
        &[
            "switches-17.yaml:19: `machine.switches[16]`",
            "17 switches; a machine may have at most 16",
        ],
    );
    // A VM NIC with the MAC of the machine's uplink virtio-net.
    let r = s.run(
        "mac-uplink",
        &format!(
            "machine:\n  switches:\n    - {{ name: lan, uplink: true }}\n{}",
            vm_a(&nic("52:54:00:fe:00:01"))
        ),
    );
    assert_refused(
        &s,
        "mac-uplink",
        &r,
        &[
            "mac-uplink.yaml:10: `vms[0].nics[0].mac`",
            "is that of the machine's virtio-net for an uplink",
        ],
    );

    // Port forwards.
    let fw = |list: &str, uplink: bool| {
        format!(
            "machine:\n  switches:\n    - name: lan\n      uplink: {uplink}\n      forwards:\n{list}{}",
            vm_a("")
        )
    };
    for (name, forward, says) in [
        (
            "fw-syntax",
            "tcp:8080",
            "`tcp:8080` is not a port forward: expected PROTO:HOSTPORT:GUESTPORT",
        ),
        (
            "fw-proto",
            "icmp:8080:80",
            "unknown protocol `icmp`; expected tcp or udp",
        ),
        (
            "fw-port",
            "tcp:65536:80",
            "host port `65536` is not a port number 1..=65535",
        ),
        (
            "fw-zero",
            "udp:53:0",
            "guest port `0` is not a port number 1..=65535",
        ),
    ] {
        let r = s.run(name, &fw(&format!("        - \"{forward}\"\n"), true));
        assert_refused(
            &s,
            name,
            &r,
            &[
                &format!("{name}.yaml:6: `machine.switches[0].forwards[0]`"),
                says,
            ],
        );
    }
    let r = s.run(
        "fw-collide",
        &fw("        - tcp:18080:80\n        - tcp:18080:8080\n", true),
    );
    assert_refused(
        &s,
        "fw-collide",
        &r,
        &[
            "fw-collide.yaml:7: `machine.switches[0].forwards[1]`",
            "collides with machine.switches[0].forwards[0] (`tcp:18080:80`): host port 18080 (tcp) is forwarded twice",
        ],
    );
    let r = s.run("fw-no-uplink", &fw("        - tcp:18080:80\n", false));
    assert_refused(
        &s,
        "fw-no-uplink",
        &r,
        &[
            "fw-no-uplink.yaml:6: `machine.switches[0].forwards[0]`",
            "on switch `lan`, which has no uplink",
        ],
    );
    // A host port another program has: refused before QEMU would fail on it.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let r = s.run("fw-busy", &fw(&format!("        - tcp:{port}:80\n"), true));
    assert_refused(
        &s,
        "fw-busy",
        &r,
        &[
            "fw-busy.yaml:6: `machine.switches[0].forwards[0]`",
            &format!("host port 127.0.0.1:{port} (tcp) of `tcp:{port}:80` cannot be used"),
        ],
    );
    drop(busy);
}

/// The hypervisor given as a directory says so (and gives no build hint).
#[test]
fn run_refuses_a_hypervisor_directory() {
    let s = Scratch::new("hv");
    let cfg = s.config("hv", "name: a\nmemory: 64M\nkernel: guest.elf\n");
    let out = Command::new(env!("CARGO_BIN_EXE_ferrovisor"))
        .args(["run", "--config"])
        .arg(&cfg)
        .arg("--hypervisor")
        .arg(s.0.join("kdir"))
        .env("XDG_CACHE_HOME", s.cache("hv"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("hypervisor binary path") && stderr.contains("kdir is a directory"),
        "{stderr}"
    );
    assert!(!stderr.contains("does not exist"), "{stderr}");
    assert!(files_under(&s.cache("hv")).is_empty());
}

/// `ferrovisor package` refuses the same input and writes no package; with
/// `kernel_format: flat` the text file is taken as a flat binary.
#[test]
fn package_refuses_bad_kernels_and_honours_flat() {
    let s = Scratch::new("package");
    let package = |name: &str, yaml: &str| {
        let cfg = s.config(name, yaml);
        let output = s.0.join(format!("{name}.fvpkg"));
        let out = Command::new(env!("CARGO_BIN_EXE_ferrovisor"))
            .args(["package", "--config"])
            .arg(&cfg)
            .arg("--output")
            .arg(&output)
            .output()
            .unwrap();
        (out, output)
    };
    let (out, pkg) = package("ptext", "name: a\nmemory: 64M\nkernel: notes.txt\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("ptext.yaml:3: `kernel`"), "{stderr}");
    assert!(stderr.contains("kernel_format: flat"), "{stderr}");
    assert!(!pkg.exists());

    let (out, pkg) = package(
        "pflat",
        "name: a\nmemory: 64M\nkernel: notes.txt\nkernel_format: flat\n",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("flat binary entry 0x80200000"), "{stderr}");
    assert!(pkg.is_file());

    // A device problem stops `package` too.
    let (out, pkg) = package(
        "pdisk",
        "name: a\nmemory: 64M\nkernel: guest.elf\ndisks:\n  - path: odd.img\n",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("pdisk.yaml:5: `disks[0].path`")
            && stderr.contains("not a whole number of 512-byte sectors"),
        "{stderr}"
    );
    assert!(!pkg.exists());

    let cfg = s.config("pout", "name: a\nmemory: 64M\nkernel: guest.elf\n");
    let out = Command::new(env!("CARGO_BIN_EXE_ferrovisor"))
        .args(["package", "--config"])
        .arg(&cfg)
        .arg("--output")
        .arg(s.0.join("kdir"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("`--output`") && stderr.contains("is a directory"),
        "{stderr}"
    );
}
