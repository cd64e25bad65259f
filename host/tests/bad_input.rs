//! `ferrovisor run` and `ferrovisor package` with bad host input: a kernel path
//! that is a directory, a text file as kernel, an empty kernel, an ELF file for
//! another machine, an unknown `console:`, a machine too small for its VMs and one larger than this host
//! can give QEMU. Each must fail at once with a message naming the config file,
//! the line, the field and the problem, having written no boot package and
//! started no QEMU. Needs neither QEMU nor any bare-metal build.
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
        let d = std::env::temp_dir().join(format!("fv-bad-input-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(d.join("kdir")).unwrap();
        fs::write(d.join("notes.txt"), "hello, I am not a kernel\n").unwrap();
        fs::write(d.join("empty.bin"), b"").unwrap();
        fs::write(d.join("x86.elf"), elf_header(62)).unwrap();
        fs::write(d.join("guest.elf"), elf_header(243)).unwrap();
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
fn assert_refused(s: &Scratch, name: &str, (out, took): &(Output, Duration), parts: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
    assert!(
        stderr.contains("ferrovisor: error: "),
        "{name}: no error line in: {stderr}"
    );
    for part in parts {
        assert!(stderr.contains(part), "{name}: no `{part}` in: {stderr}");
    }
    assert!(!stderr.contains("does not exist"), "{name}: {stderr}");
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
