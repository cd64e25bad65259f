//! QEMU integration tests: every test guest boots as a VM under the hypervisor.
//!
//! Each guest runs with `-smp 1` and `-smp 4`, each with QEMU's default `rv64` CPU
//! (which has Sstc) and with `-cpu rv64,sstc=false`. A run passes when the guest
//! prints `DONE: <guest> passed=`, no failure line appears (`FAIL:`, a panic, a
//! hypervisor trap dump or fatal error, `failed=` ≠ 0), the hypervisor prints
//! `ferrovisor: all VMs stopped` and QEMU powers off cleanly. Logs are kept under
//! `target/qemu-logs/<guest>-smp<N>[-nosstc].log`. One more test runs the
//! scheduler probe of `ferrovisor bench --sched` once and checks its time slices;
//! another boots a package with a VM too big for the machine (not created, the
//! reason logged, the other VM runs). `host_blk` attaches raw disk images
//! (and a virtio-rng) to QEMU and checks the hypervisor's inventory of the
//! devices it drives; `host_blk::config_devices_at_planned_slots` does so for
//! a config's `disks`, `rng` and uplink, at the slots the host tool's plan
//! predicts.
//!
//! Needs `scripts/build.sh` first (hypervisor and guests, release,
//! riscv64gc-unknown-none-elf). Run with
//! `cargo test -p ferrovisor --test qemu -- --test-threads=1`.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::time::Duration;

use ferrovisor::testing::{self, Case, CaseVms, Pattern};
use ferrovisor::MIB;

/// Hard limit per run. TCG with 4 harts on a 2-core machine is slow.
const TIMEOUT: Duration = Duration::from_secs(180);

/// Runs test guest `guest` (package and binary name) in one VM of `vcpus` vCPUs.
fn run_guest(guest: &str, vcpus: u32, smp: u32, sstc: bool) {
    let cpu = (!sstc).then_some(("rv64,sstc=false", "-nosstc"));
    run_guest_on(guest, vcpus, smp, cpu, &[]);
}

/// As [`run_guest`], on QEMU's `-cpu` `cpu.0` (log name suffix `cpu.1`) when
/// given, and requiring a line starting with each of `also` besides `DONE:`.
fn run_guest_on(guest: &str, vcpus: u32, smp: u32, cpu: Option<(&str, &str)>, also: &[&str]) {
    let name = format!("{guest}-smp{smp}{}", cpu.map_or("", |c| c.1));
    run_guest_named(&name, guest, vcpus, smp, cpu.map(|c| c.0), also);
}

/// As [`run_guest`], with the log named `name`, without Sstc if `!sstc`.
fn run_guest_as(name: &str, guest: &str, vcpus: u32, smp: u32, sstc: bool) {
    let cpu = (!sstc).then_some("rv64,sstc=false");
    run_guest_named(name, guest, vcpus, smp, cpu, &[]);
}

/// One run: test guest `guest` in one VM of `vcpus` vCPUs on `smp` harts of
/// QEMU's `-cpu` `cpu`, its log named `name`; `DONE:` and a line starting
/// with each of `also` required.
fn run_guest_named(
    name: &str,
    guest: &str,
    vcpus: u32,
    smp: u32,
    cpu: Option<&str>,
    also: &[&str],
) {
    let vm = testing::guest_vm(guest, vcpus, 64 * MIB);
    if let Err(e) = testing::require_built(&vm.kernel) {
        panic!("{e}");
    }
    let mut case = Case::new(name, CaseVms::List(vec![vm]));
    case.machine.cpus = Some(smp);
    case.machine.cpu = cpu.map(Into::into);
    case.timeout = TIMEOUT;
    case.success_patterns
        .push(Pattern::LineStart(format!("DONE: {guest} passed=")));
    for line in also {
        case.success_patterns
            .push(Pattern::LineStart((*line).into()));
    }
    if let Err(e) = testing::run_and_report(&case) {
        panic!("{name}: {e}");
    }
}

/// Four tests per guest: smp 1 / 4, with / without Sstc.
macro_rules! guest_tests {
    ($module:ident, $guest:literal, vcpus = $vcpus:literal) => {
        mod $module {
            #[test]
            fn smp1() {
                super::run_guest($guest, $vcpus, 1, true);
            }
            #[test]
            fn smp4() {
                super::run_guest($guest, $vcpus, 4, true);
            }
            #[test]
            fn smp1_nosstc() {
                super::run_guest($guest, $vcpus, 1, false);
            }
            #[test]
            fn smp4_nosstc() {
                super::run_guest($guest, $vcpus, 4, false);
            }
        }
    };
}

// The test guests of guests/ (bench-guest is for `ferrovisor bench`, not a test).
/// The SBI conformance guest with 1, 2 and 4 vCPUs on 2 harts (so vCPUs
/// share harts and migrate), and 2 vCPUs without Sstc (emulated timer).
mod sbi_test {
    fn run(vcpus: u32, sstc: bool) {
        let name = format!(
            "sbi-test-vcpus{vcpus}-smp2{}",
            if sstc { "" } else { "-nosstc" }
        );
        super::run_guest_as(&name, "sbi-test", vcpus, 2, sstc);
    }
    #[test]
    fn vcpus1() {
        run(1, true);
    }
    #[test]
    fn vcpus2() {
        run(2, true);
    }
    #[test]
    fn vcpus4() {
        run(4, true);
    }
    #[test]
    fn vcpus2_nosstc() {
        run(2, false);
    }
}
guest_tests!(timer_test, "timer-test", vcpus = 1);
guest_tests!(smp_test, "smp-test", vcpus = 4);
guest_tests!(isolation_test, "isolation-test", vcpus = 1);
guest_tests!(srst_test, "srst-test", vcpus = 1);

/// isolation-test on a CPU with Zcb (QEMU's default `rv64` has none, so the
/// runs above skip these checks): c.lbu/c.lhu/c.lh/c.sb/c.sh on the UART
/// trap with `htinst` = 0 and are decoded from the fetched instruction. Each
/// check must have run and passed, and an AMO, an FP load and a cache-block
/// flush on the UART must have got the access fault Ferrovisor decides on.
#[test]
fn isolation_test_zcb() {
    let mut checks: Vec<String> = ["c-sb", "c-lbu", "c-sh", "c-lhu", "c-lh"]
        .iter()
        .map(|c| format!("PASS: isolation-test/zcb-{c}"))
        .collect();
    for c in ["amo", "flw", "cbo-flush"] {
        checks.push(format!("INFO: isolation-test: mmio-{c}: access fault"));
    }
    let also: Vec<&str> = checks.iter().map(String::as_str).collect();
    run_guest_on(
        "isolation-test",
        1,
        1,
        Some(("rv64,zcb=true", "-zcb")),
        &also,
    );
}

/// Without the H extension the hypervisor says so and powers the machine off
/// with a failure status (never a hang, never a silent exit 0).
#[test]
fn no_h_extension_is_refused_with_nonzero_exit() {
    let hv = ferrovisor::paths::default_hypervisor();
    if let Err(e) = testing::require_built(&hv) {
        panic!("{e}");
    }
    let out = std::process::Command::new("timeout")
        .args([
            "60",
            "qemu-system-riscv64",
            "-M",
            "virt",
            "-cpu",
            "rv64,h=false",
            "-smp",
            "2",
        ])
        .args([
            "-m", "256M", "-display", "none", "-monitor", "none", "-serial", "stdio",
        ])
        .args(["-bios", "default", "-kernel"])
        .arg(&hv)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let log = ferrovisor::paths::qemu_log_dir().join("no-h-extension.log");
    let _ = std::fs::create_dir_all(ferrovisor::paths::qemu_log_dir());
    let _ = std::fs::write(&log, text.as_bytes());
    assert!(
        text.contains("has no hypervisor (H) extension"),
        "no clear message (log: {})",
        log.display()
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "exit status (log: {})",
        log.display()
    );
}

/// A VM too big for the memory the host has left is not created: the
/// hypervisor logs why (what it needs, RAM and page tables, and what is
/// free) and runs the other VMs; the machine ends cleanly. `ferrovisor run`
/// refuses such a configuration, so the package is built for a machine of
/// 1 GiB and QEMU then runs with 256 MiB.
#[test]
fn vm_too_big_for_what_is_left_is_not_created() {
    use ferrovisor::config::{Arch, Config, Machine};
    use ferrovisor::qemu::{self, Control, QemuConfig, Stream};
    use ferrovisor::{package, paths};

    let mut big = testing::guest_vm("cpu-hog", 1, 512 * MIB);
    big.name = "big".into();
    big.command_line = "idle".into();
    let mut small = testing::guest_vm("cpu-hog", 1, 64 * MIB);
    small.name = "small".into();
    small.command_line = "chunks=4 ms=0".into();
    let hv = paths::default_hypervisor();
    for f in [&big.kernel, &hv] {
        if let Err(e) = testing::require_built(f) {
            panic!("{e}");
        }
    }
    let mut machine = Machine {
        arch: Arch::Riscv64,
        cpus: 1,
        memory_bytes: 1024 * MIB,
        cpu: None,
        options: None,
    };
    let config = Config::from_parts(
        std::path::Path::new("<too-big>"),
        machine.clone(),
        vec![big, small],
    )
    .unwrap();
    let built = package::build(&config).unwrap();
    let pkg = testing::scratch_file("too-big.fvpkg", &built.bytes).unwrap();
    machine.memory_bytes = 256 * MIB;
    let qemu_cfg = QemuConfig::new(&machine, &hv, Some(&pkg));
    let log = paths::qemu_log_dir().join("too-big-vm.log");
    let mut lines = Vec::new();
    let outcome = qemu::run(&qemu_cfg, TIMEOUT, &log, |stream, line| {
        if stream == Stream::Serial {
            lines.push(line.to_string());
        }
        Control::Continue
    })
    .unwrap();
    let log = log.display();
    for p in testing::standard_failure_patterns() {
        if let Some(l) = lines.iter().find(|l| p.matches(l)) {
            panic!("failure line `{l}` (log: {log})");
        }
    }
    // 512 MiB of RAM and 5 table frames (the root and one L1 table).
    let why = "ferrovisor: VM 'big' not created: not enough free memory: needs 524308 KiB (RAM and page tables), ";
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(why) && l.ends_with(" KiB free")),
        "no `{why}… KiB free` line (log: {log})"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("[small] DONE: cpu-hog passed=")),
        "the other VM did not finish (log: {log})"
    );
    assert!(
        outcome.clean_exit(),
        "QEMU did not power off cleanly: {:?} (log: {log})",
        outcome.status
    );
}

/// The hypervisor drives 8 harts (the most it supports) with an 8-vCPU VM.
#[test]
fn smp_test_on_8_harts() {
    let vm = testing::guest_vm("smp-test", 8, 64 * MIB);
    if let Err(e) = testing::require_built(&vm.kernel) {
        panic!("{e}");
    }
    let mut case = Case::new("smp-test-smp8", CaseVms::List(vec![vm]));
    case.machine.cpus = Some(8);
    case.timeout = TIMEOUT;
    case.success_patterns
        .push(Pattern::LineStart("DONE: smp-test passed=".into()));
    if let Err(e) = testing::run_and_report(&case) {
        panic!("smp-test-smp8: {e}");
    }
}

/// The scheduler probe of `ferrovisor bench --sched`, once: two CPU-bound VMs
/// (cpu-hog `probe=`, interrupts masked) share one hart. Each must get time
/// slices of the length the scheduler means (its period split two ways; within
/// -20 %..+25 %), the two must alternate (about one switch per slice over the
/// probe), no gaps may overlap (one hart runs one vCPU at a time), and a
/// switch must take a small part of a slice. Logs in
/// `target/qemu-logs/sched-probe/`.
#[test]
fn two_vms_share_one_hart_in_time_slices() {
    use ferrovisor::bench::sched;
    let opts = sched::Options {
        runs: 1,
        probe_ms: 2000,
        shares: vec![2],
        linux_vms: 0,
        timeout: TIMEOUT,
        log_dir: ferrovisor::paths::target_dir()
            .join("qemu-logs")
            .join("sched-probe"),
        ..sched::Options::new()
    };
    let r = sched::run(&opts, &mut |l| eprintln!("[sched-probe] {l}"))
        .unwrap_or_else(|e| panic!("{e}"));
    let row = r.probe_row(2).expect("a row for 2 VMs");
    let expected = row.expected_slice_us.expect("an expected slice");
    let slice = row.slice_us.as_ref().expect("slices measured").median;
    let switch = row.switch_us.as_ref().expect("switches measured").median;
    eprintln!(
        "[sched-probe] slice {slice:.0} µs (meant {expected:.0}), switch {switch:.1} µs, {} switches",
        row.switches.median
    );
    assert!(
        (0.8 * expected..=1.25 * expected).contains(&slice),
        "slices of {slice:.0} µs, the scheduler means {expected:.0} µs"
    );
    let slices_in_probe = opts.probe_ms as f64 * 1000.0 / expected;
    assert!(
        row.switches.median >= 0.5 * slices_in_probe,
        "{} switches in {} ms of slices of {expected:.0} µs: the VMs did not alternate",
        row.switches.median,
        opts.probe_ms
    );
    assert_eq!(
        row.anomalies, 0,
        "overlapping gaps: two vCPUs ran at once on one hart"
    );
    assert!(
        switch < expected / 10.0,
        "a vCPU switch takes {switch:.1} µs, more than a tenth of a {expected:.0} µs slice"
    );
}

/// Supervisor CSRs without a VS copy are per vCPU: two isolation-test VMs
/// share one hart (`csr-switch=5` and `=6`), each starts with `scounteren` and
/// `senvcfg` at 0 and keeps its own values across many time slices; and each
/// one's SBI PMU `cycle` counter counts its own slices only, not the other's.
#[test]
fn scounteren_and_senvcfg_are_per_vcpu() {
    let vms: Vec<_> = [("csr-a", 5), ("csr-b", 6)]
        .into_iter()
        .map(|(name, n)| ferrovisor::config::VmConfig {
            name: name.into(),
            command_line: format!("csr-switch={n}"),
            ..testing::guest_vm("isolation-test", 1, 32 * MIB)
        })
        .collect();
    if let Err(e) = testing::require_built(&vms[0].kernel) {
        panic!("{e}");
    }
    let mut case = Case::new("csr-switch-smp1", CaseVms::List(vms));
    case.machine.cpus = Some(1);
    case.timeout = TIMEOUT;
    for vm in ["csr-a", "csr-b"] {
        case.success_patterns.push(Pattern::Contains(format!(
            "[{vm}] DONE: isolation-test passed=9 failed=0"
        )));
    }
    if let Err(e) = testing::run_and_report(&case) {
        panic!("csr-switch-smp1: {e}");
    }
}

/// The hypervisor drives the machine's own virtio-blk devices (issue #9,
/// point 2; no VM uses them yet): QEMU gets a raw image the test writes, the
/// hypervisor's boot inventory must list it with the image's size in sectors,
/// its read-only flag and the CRC-32 of sector 0 as read through the driver,
/// and the guest beside it must still pass. Three short runs of timer-test on
/// one hart.
mod host_blk {
    use super::*;

    /// CRC-32 (IEEE, as zlib): bitwise, independent of the hypervisor's crc32fast.
    fn crc32(data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = (crc >> 1) ^ (0xedb8_8320 & (crc & 1).wrapping_neg());
            }
        }
        !crc
    }

    /// A raw image of `sectors` sectors under target/qemu-cases/; sector 0
    /// holds a pattern derived from `seed`, every other sector its number.
    /// Returns its path and sector 0's CRC-32.
    fn image(name: &str, sectors: usize, seed: u8) -> (std::path::PathBuf, u32) {
        let mut bytes = vec![0u8; sectors * 512];
        for (i, b) in bytes[..512].iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(31).wrapping_add(seed);
        }
        for (n, s) in bytes.chunks_mut(512).enumerate().skip(1) {
            s[..8].copy_from_slice(&(n as u64).to_le_bytes());
        }
        let crc = crc32(&bytes[..512]);
        (testing::scratch_file(name, &bytes).unwrap(), crc)
    }

    /// timer-test on one hart with `args` appended to QEMU's command line;
    /// `also` must each be in some serial line, `never` in none.
    fn run(name: &str, args: Vec<String>, also: &[String], never: &[&str]) {
        let vm = testing::guest_vm("timer-test", 1, 32 * MIB);
        if let Err(e) = testing::require_built(&vm.kernel) {
            panic!("{e}");
        }
        let mut case = Case::new(name, CaseVms::List(vec![vm]));
        case.machine.cpus = Some(1);
        case.timeout = TIMEOUT;
        case.qemu_args = args;
        case.success_patterns
            .push(Pattern::LineStart("DONE: timer-test passed=".into()));
        for a in also {
            case.success_patterns.push(Pattern::Contains(a.clone()));
        }
        for n in never {
            case.failure_patterns.push(Pattern::Contains((*n).into()));
        }
        if let Err(e) = testing::run_and_report(&case) {
            panic!("{name}: {e}");
        }
    }

    fn drive(img: &std::path::Path, extra: &str) -> Vec<String> {
        vec![
            "-drive".into(),
            format!("file={},if=none,format=raw,id=d0{extra}", img.display()),
            "-device".into(),
            "virtio-blk-device,drive=d0".into(),
        ]
    }

    /// A writable 1 MiB disk on QEMU's default (legacy, version 1)
    /// virtio-mmio transport, and a virtio-rng beside it.
    #[test]
    fn writable_disk_and_rng_are_driven() {
        let (img, crc) = image("host-blk-rw.img", 2048, 0x5a);
        let mut args = drive(&img, "");
        args.extend(["-device".into(), "virtio-rng-device".into()]);
        run(
            "host-blk-rw",
            args,
            &[
                format!("ferrovisor: host virtio-blk at 0x10008000 (virtio-mmio v1 (legacy)): 2048 sectors, rw, sector 0 crc32 {crc:#010x}"),
                "ferrovisor: host virtio-rng at 0x10007000 (virtio-mmio v1 (legacy))".into(),
                "ferrovisor: host devices: 1 virtio-blk, 1 virtio-rng, 0 virtio-net (8 virtio-mmio slots, 6 empty)".into(),
            ],
            &["not used:", "unreadable"],
        );
    }

    /// A read-only 64 KiB disk on the modern (version 2) transport.
    #[test]
    fn readonly_disk_on_modern_transport_shows_ro() {
        let (img, crc) = image("host-blk-ro.img", 128, 0xc3);
        let mut args = drive(&img, ",readonly=on");
        args.extend(["-global".into(), "virtio-mmio.force-legacy=false".into()]);
        run(
            "host-blk-ro",
            args,
            &[
                format!("ferrovisor: host virtio-blk at 0x10008000 (virtio-mmio v2): 128 sectors, ro, sector 0 crc32 {crc:#010x}"),
                "ferrovisor: host devices: 1 virtio-blk, 0 virtio-rng, 0 virtio-net (8 virtio-mmio slots, 7 empty)".into(),
            ],
            &["not used:", "unreadable"],
        );
    }

    /// A config with two VMs: `a` has a read-write and a read-only disk, a NIC
    /// and rng, `b` the same read-only image (QEMU's image locking lets
    /// read-only users share it) and rng; the switch has an uplink with a port
    /// forward. The guests are srst-test (no timing checks, so a loaded
    /// machine cannot fail it). The host tool puts 3 virtio-blk, one virtio-rng and one
    /// virtio-net on QEMU's command line, modern transport; the hypervisor
    /// must find each at the base the plan (`devices::plan`) gave it.
    #[test]
    fn config_devices_at_planned_slots() {
        use ferrovisor::devices::HostDeviceKind;

        let (rw, rw_crc) = image("cfg-dev-rw.img", 2048, 0x11);
        let (ro, ro_crc) = image("cfg-dev-ro.img", 128, 0x22);
        let kernel = ferrovisor::paths::bare_metal_binary("srst-test");
        if let Err(e) = testing::require_built(&kernel) {
            panic!("{e}");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let yaml = format!(
            "machine:
  cpus: 2
  memory: 256M
  switches:
    - name: lan
      uplink: true
      forwards: [\"tcp:{port}:80\"]
vms:
  - name: a
    memory: 32M
    kernel: {k}
    disks:
      - path: {rw}
      - path: {ro}
        read_only: true
    nics: [{{ switch: lan }}]
    rng: true
  - name: b
    memory: 32M
    kernel: {k}
    disks: [{{ path: {ro}, read_only: true }}]
    rng: true
",
            k = kernel.display(),
            rw = rw.display(),
            ro = ro.display()
        );
        let cfg_path = testing::scratch_file("cfg-devices.yaml", yaml.as_bytes()).unwrap();
        let cfg = ferrovisor::config::load(&cfg_path).unwrap();
        // The plan: disks first (a's two, b's one), then the rng, then the uplink,
        // from the top slot down, then the control channel's (empty here:
        // only `ferrovisor run` adds it).
        let mut expect = Vec::new();
        for d in &cfg.plan.host {
            let base = d.slot.base;
            expect.push(match &d.kind {
                HostDeviceKind::Disk { vm: 0, disk: 0, .. } => format!(
                    "ferrovisor: host virtio-blk at {base:#x} (virtio-mmio v2): 2048 sectors, rw, sector 0 crc32 {rw_crc:#010x}"
                ),
                HostDeviceKind::Disk { .. } => format!(
                    "ferrovisor: host virtio-blk at {base:#x} (virtio-mmio v2): 128 sectors, ro, sector 0 crc32 {ro_crc:#010x}"
                ),
                HostDeviceKind::Rng => {
                    format!("ferrovisor: host virtio-rng at {base:#x} (virtio-mmio v2)")
                }
                // Not driven yet: the hypervisor names the slot either way.
                HostDeviceKind::Uplink { .. } => format!("at {base:#x}"),
                HostDeviceKind::Reserved => continue,
            });
        }
        let bases: Vec<u64> = cfg.plan.host.iter().map(|d| d.slot.base).collect();
        assert_eq!(
            bases,
            [
                0x1000_8000,
                0x1000_7000,
                0x1000_6000,
                0x1000_5000,
                0x1000_4000,
                0x1000_3000
            ]
        );
        expect.push(
            "ferrovisor: host devices: 3 virtio-blk, 1 virtio-rng, 1 virtio-net (8 virtio-mmio slots, 3 empty)"
                .into(),
        );
        let mut case = Case::new("cfg-devices", CaseVms::ConfigFile(cfg_path));
        case.timeout = TIMEOUT;
        case.success_patterns
            .push(Pattern::LineStart("DONE: srst-test passed=".into()));
        for e in expect {
            case.success_patterns.push(Pattern::Contains(e));
        }
        for never in ["not used:", "unreadable", "virtio-mmio v1"] {
            case.failure_patterns.push(Pattern::Contains(never.into()));
        }
        if let Err(e) = testing::run_and_report(&case) {
            panic!("cfg-devices: {e}");
        }
    }

    /// Without a disk no block device is listed (every slot is empty).
    #[test]
    fn no_disk_lists_no_block_device() {
        run(
            "host-blk-none",
            Vec::new(),
            &["ferrovisor: host devices: 0 virtio-blk, 0 virtio-rng, 0 virtio-net (8 virtio-mmio slots, 8 empty)".into()],
            &["host virtio-blk at", "host virtio-mmio at"],
        );
    }
}
