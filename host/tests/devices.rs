//! VM devices served from the machine's own devices (issue #9): Debian's
//! kernel in a VM drives a virtio-blk and a virtio-rng the hypervisor serves
//! from QEMU's virtio-blk (a raw ext4 image file the test builds with
//! `mke2fs -d`) and virtio-rng.
//!
//! Each test appends a small uncompressed cpio to the busybox initramfs
//! (`scripts/fetch-linux.sh`): an `/etc/inittab` that runs `/fvtest.sh` on
//! the console instead of a shell, and the script, which does the test's
//! work in the guest, prints `FV-TEST:` lines and powers off (or reboots and
//! finishes in the next boot). The host side checks those lines and, after
//! the machine exited, the image files with `debugfs`.
//!
//! - `disk_persists_across_reboot`: mount the ext4 disk (vda), read a file
//!   the host put there, write a small and a 4 MiB file, `sync`, reboot the
//!   VM, read both back (same checksum), power off; the host finds both in
//!   the image. `/dev/hwrng` gives 64 bytes and `rng_current` names virtio.
//! - `read_only_disk_refuses_writes`: a second disk (vdb) with `read_only`
//!   is read-only to Linux (`/sys/block/vdb/ro` is 1), a direct write to it
//!   fails, its image is unchanged; the writable vda works beside it.
//! - `two_vms_separate_disks`: two VMs, each with its own disk, write
//!   different files; each image has its VM's file and not the other's. Both
//!   read `/dev/hwrng` from one shared machine virtio-rng: different bytes.
//!   The second VM's console is a virtio-console (slot 0) beside its disk.
//! - `reboot_under_io`: the VM reboots (`reboot -f`) while four direct
//!   writes to a raw second disk run; it boots again and its ext4 disk reads
//!   back. (Whether requests were still at the machine's disk at that moment
//!   depends on QEMU's timing: the hypervisor logs `waited for N request(s)`
//!   when it had to wait; the test does not require it.)
//! - `hostile_vblk_beside_linux_io`: hostile-test's `vblk` phase against its
//!   own two disks beside a Linux VM doing disk I/O (see that test).
//! - `missing_or_wrong_host_device_fails_only_that_vm`: records naming a
//!   host virtio-blk that is not there or a virtio-rng: those VMs are not
//!   created, the reason logged; the other VM runs.
//!
//! Device records go into the boot package directly (`Case::vm_devices`)
//! and QEMU gets the host devices through `Case::qemu_args` (QEMU `virt`
//! fills its virtio-mmio slots from the top: the first `-device` is at
//! 0x1000_8000, the next at 0x1000_7000, ...).
//!
//! Needs `scripts/build.sh`, `scripts/fetch-linux.sh` and e2fsprogs. Run
//! with `cargo test -p ferrovisor --test devices -- --test-threads=1`.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ferrovisor::config::{ConsoleChoice, VmConfig};
use ferrovisor::testing::{self, Case, CaseVms, Pattern};
use ferrovisor::{paths, MIB};
use fv_bootpkg::{DeviceKind, VmDevice};

/// Hard limit per run (a Linux boot, a reboot, disk I/O under TCG).
const TIMEOUT: Duration = Duration::from_secs(600);

/// QEMU `virt`'s virtio-mmio slot of the `n`-th `-device` (0-based).
fn host_slot(n: u64) -> u64 {
    0x1000_8000 - n * 0x1000
}

/// A newc cpio archive of `files` (path without leading `/`, mode, data).
fn cpio(files: &[(&str, u32, &[u8])]) -> Vec<u8> {
    fn entry(out: &mut Vec<u8>, ino: u32, name: &str, mode: u32, data: &[u8]) {
        let fields = [
            ino,
            mode,
            0,
            0,
            1,
            0,
            data.len() as u32,
            0,
            0,
            0,
            0,
            name.len() as u32 + 1,
            0,
        ];
        out.extend_from_slice(b"070701");
        for f in fields {
            out.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
        out.extend_from_slice(data);
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
    }
    let mut out = Vec::new();
    for (i, (name, mode, data)) in files.iter().enumerate() {
        entry(&mut out, i as u32 + 1, name, *mode, data);
    }
    entry(&mut out, 0, "TRAILER!!!", 0, &[]);
    out
}

/// The fetched initramfs with `/fvtest.sh` (`script`) run by init instead
/// of a shell; written to target/qemu-cases/<name>.cpio.
fn initrd_with(name: &str, script: &str) -> PathBuf {
    let base = paths::cache_dir()
        .join("linux")
        .join("current")
        .join("initramfs.cpio.gz");
    let mut bytes = fs::read(&base).unwrap_or_else(|e| {
        panic!(
            "{}: {e}: fetch the Linux guest with scripts/fetch-linux.sh",
            base.display()
        )
    });
    // The kernel takes concatenated archives; an uncompressed one starts
    // 4-byte aligned.
    while !bytes.len().is_multiple_of(4) {
        bytes.push(0);
    }
    let inittab = "::once:/fvtest.sh\n::shutdown:/bin/sync\n";
    bytes.extend(cpio(&[
        ("etc/inittab", 0o100644, inittab.as_bytes()),
        ("fvtest.sh", 0o100755, script.as_bytes()),
    ]));
    testing::scratch_file(&format!("{name}.initrd"), &bytes).unwrap()
}

/// An ext4 image of `mib` MiB holding `files`, built with `mke2fs -d`.
fn ext4_image(name: &str, mib: u32, files: &[(&str, &str)]) -> PathBuf {
    let dir = paths::target_dir()
        .join("qemu-cases")
        .join(format!("{name}.d"));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    for (f, text) in files {
        fs::write(dir.join(f), text).unwrap();
    }
    let img = paths::target_dir()
        .join("qemu-cases")
        .join(format!("{name}.img"));
    let _ = fs::remove_file(&img);
    let out = Command::new("mke2fs")
        .args(["-F", "-q", "-t", "ext4", "-d"])
        .arg(&dir)
        .arg(&img)
        .arg(format!("{mib}M"))
        .output()
        .expect("mke2fs (e2fsprogs) must be installed");
    assert!(
        out.status.success(),
        "mke2fs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    img
}

/// `debugfs -R 'cat <path>' img`: the file's bytes in the image.
fn image_file(img: &Path, path: &str) -> Vec<u8> {
    let out = Command::new("debugfs")
        .arg("-R")
        .arg(format!("cat {path}"))
        .arg(img)
        .output()
        .expect("debugfs (e2fsprogs) must be installed");
    assert!(out.status.success(), "debugfs on {}", img.display());
    out.stdout
}

/// A Linux VM booting the fetched kernel with `initrd`.
fn linux_vm(name: &str, initrd: PathBuf) -> VmConfig {
    let kernel = paths::cache_dir()
        .join("linux")
        .join("current")
        .join("Image");
    assert!(
        kernel.is_file(),
        "{}: run scripts/fetch-linux.sh",
        kernel.display()
    );
    let mut vm = testing::guest_vm(name, 1, 256 * MIB);
    vm.kernel = kernel;
    vm.kernel_format = ferrovisor::loader::FormatChoice::Auto;
    vm.initrd = Some(initrd);
    vm.command_line = "console=ttyS0 quiet".into();
    vm.console = ConsoleChoice::Uart;
    vm
}

/// QEMU arguments attaching `img` as the next virtio-blk (modern transport).
fn drive(id: &str, img: &Path, read_only: bool) -> Vec<String> {
    let ro = if read_only { ",readonly=on" } else { "" };
    vec![
        "-drive".into(),
        format!("file={},if=none,format=raw,id={id}{ro}", img.display()),
        "-device".into(),
        format!("virtio-blk-device,drive={id}"),
    ]
}

fn block(slot: u8, host: u64, read_only: bool) -> VmDevice {
    VmDevice {
        slot,
        kind: DeviceKind::Block {
            host_base: host,
            read_only,
        },
    }
}

/// Runs `vms` on 2 harts with `qemu_args` (the modern virtio-mmio transport
/// added), `devices` in the package and a line containing each of `expect`
/// required; any `FV-TEST: FAIL` fails it.
fn run(
    name: &str,
    vms: Vec<VmConfig>,
    mut qemu_args: Vec<String>,
    devices: Vec<Vec<VmDevice>>,
    expect: &[&str],
) {
    let mut case = Case::new(name, CaseVms::List(vms));
    case.machine.cpus = Some(2);
    case.timeout = TIMEOUT;
    qemu_args.extend(["-global".into(), "virtio-mmio.force-legacy=false".into()]);
    case.qemu_args = qemu_args;
    case.vm_devices = devices;
    for p in expect {
        case.success_patterns.push(Pattern::Contains((*p).into()));
    }
    case.failure_patterns
        .push(Pattern::Contains("FV-TEST: FAIL".into()));
    if let Err(e) = testing::run_and_report(&case) {
        panic!("{name}: {e}");
    }
}

/// One Linux VM running `script` with `imgs[0]` as vda and `imgs[1]` as vdb
/// (read-only to the VM if `vdb_ro`).
fn linux_two_disks(name: &str, script: &str, imgs: [&Path; 2], vdb_ro: bool, expect: &[&str]) {
    let initrd = initrd_with(name, script);
    let mut args = drive("d0", imgs[0], false);
    args.extend(drive("d1", imgs[1], false));
    run(
        name,
        vec![linux_vm("linux", initrd)],
        args,
        vec![vec![
            block(1, host_slot(0), false),
            block(2, host_slot(1), vdb_ro),
        ]],
        expect,
    );
}

/// The part of a test script every test shares: helpers and the mount of vda.
const PRELUDE: &str = r#"#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
fail() { echo "FV-TEST: FAIL: $*"; poweroff -f; }
[ -b /dev/vda ] || fail "no /dev/vda"
mkdir -p /mnt
mount -t ext4 /dev/vda /mnt || fail "mount vda"
"#;

#[test]
fn disk_persists_across_reboot() {
    let name = "devices-disk-reboot";
    let img = ext4_image(name, 32, &[("known.txt", "known-from-host-4711\n")]);
    let script = format!(
        "{PRELUDE}{}",
        r#"if [ -f /mnt/new.txt ]; then
    echo "FV-TEST: after reboot: $(cat /mnt/new.txt)"
    [ "$(md5sum /mnt/big | cut -d' ' -f1)" = "$(cat /mnt/big.md5)" ] && echo "FV-TEST: big intact"
    umount /mnt || fail "umount"
    poweroff
else
    echo "FV-TEST: known: $(cat /mnt/known.txt)"
    echo "written-by-guest-0815" > /mnt/new.txt
    dd if=/dev/urandom of=/mnt/big bs=64k count=64 2>/dev/null || fail "dd"
    md5sum /mnt/big | cut -d' ' -f1 > /mnt/big.md5
    sync
    echo "FV-TEST: hwrng $(head -c 64 /dev/hwrng | wc -c) bytes: $(head -c 16 /dev/hwrng | od -An -tx1 | tr -d ' \n')"
    echo "FV-TEST: rng_current $(cat /sys/class/misc/hw_random/rng_current)"
    umount /mnt || fail "umount"
    reboot
fi
"#
    );
    let initrd = initrd_with(name, &script);
    let mut args = drive("d0", &img, false);
    args.extend(["-device".into(), "virtio-rng-device".into()]);
    let rng = VmDevice {
        slot: 2,
        kind: DeviceKind::Rng {
            host_base: host_slot(1),
        },
    };
    run(
        name,
        vec![linux_vm("linux", initrd)],
        args,
        vec![vec![block(1, host_slot(0), false), rng]],
        &[
            "FV-TEST: known: known-from-host-4711",
            "FV-TEST: hwrng 64 bytes: ",
            "FV-TEST: rng_current virtio_rng",
            "FV-TEST: after reboot: written-by-guest-0815",
            "FV-TEST: big intact",
            "rebooting",
        ],
    );
    assert_eq!(image_file(&img, "/new.txt"), b"written-by-guest-0815\n");
    let big = image_file(&img, "/big");
    assert_eq!(big.len(), 64 * 64 * 1024, "the 4 MiB file is in the image");
    let md5 = String::from_utf8(image_file(&img, "/big.md5")).unwrap();
    assert_eq!(md5.trim().len(), 32, "its checksum too");
}

#[test]
fn read_only_disk_refuses_writes() {
    let name = "devices-disk-ro";
    let rw = ext4_image(name, 16, &[("a.txt", "rw-disk\n")]);
    let ro = ext4_image(&format!("{name}-ro"), 16, &[("b.txt", "ro-disk\n")]);
    let before = fs::read(&ro).unwrap();
    let script = format!(
        "{PRELUDE}{}",
        r#"echo "FV-TEST: vdb ro=$(cat /sys/block/vdb/ro)"
mkdir -p /ro
mount -t ext4 -o ro /dev/vdb /ro || fail "mount vdb"
echo "FV-TEST: vdb says $(cat /ro/b.txt)"
umount /ro
if dd if=/dev/zero of=/dev/vdb bs=4096 count=1 oflag=direct 2>/dev/null; then
    echo "FV-TEST: FAIL: write to vdb succeeded"
else
    echo "FV-TEST: write to vdb refused"
fi
echo "also-written" > /mnt/c.txt
sync
umount /mnt
echo "FV-TEST: done"
poweroff
"#
    );
    // The host device itself is writable: the VM's record alone makes it read-only.
    linux_two_disks(
        name,
        &script,
        [&rw, &ro],
        true,
        &[
            "FV-TEST: vdb ro=1",
            "FV-TEST: vdb says ro-disk",
            "FV-TEST: write to vdb refused",
            "FV-TEST: done",
        ],
    );
    assert!(
        fs::read(&ro).unwrap() == before,
        "the read-only image is unchanged"
    );
    assert_eq!(image_file(&rw, "/c.txt"), b"also-written\n");
}

#[test]
fn two_vms_separate_disks() {
    let name = "devices-two-vms";
    let imgs = [
        ext4_image(&format!("{name}-a"), 16, &[("who", "a\n")]),
        ext4_image(&format!("{name}-b"), 16, &[("who", "b\n")]),
    ];
    let script = format!(
        "{PRELUDE}{}",
        r#"who=$(cat /mnt/who)
echo "FV-TEST: disk of $who"
echo "FV-TEST: hwrng of $who: $(head -c 32 /dev/hwrng | od -An -tx1 | tr -d ' \n')"
echo "from-$who" > "/mnt/from-$who"
sync
umount /mnt
poweroff
"#
    );
    let initrd = initrd_with(name, &script);
    // vmb has a virtio-console in slot 0 beside its disk (slot 1) and rng (slot 2).
    let mut vmb = linux_vm("vmb", initrd.clone());
    vmb.console = ConsoleChoice::Virtio;
    vmb.command_line = "console=hvc0 quiet".into();
    let vms = vec![linux_vm("vma", initrd), vmb];
    let mut args = drive("d0", &imgs[0], false);
    args.extend(drive("d1", &imgs[1], false));
    // One machine virtio-rng shared by both VMs.
    args.extend(["-device".into(), "virtio-rng-device".into()]);
    let rng = VmDevice {
        slot: 2,
        kind: DeviceKind::Rng {
            host_base: host_slot(2),
        },
    };
    run(
        name,
        vms,
        args,
        vec![
            vec![block(1, host_slot(0), false), rng],
            vec![block(1, host_slot(1), false), rng],
        ],
        &[
            "[vma] FV-TEST: disk of a",
            "[vmb] FV-TEST: disk of b",
            "[vma] FV-TEST: hwrng of a: ",
            "[vmb] FV-TEST: hwrng of b: ",
        ],
    );
    // Each VM got its own bytes: 32 of them, not the other's.
    let log = fs::read_to_string(paths::qemu_log_dir().join(format!("{name}.log"))).unwrap();
    let bytes = |who: &str| {
        let tag = format!("FV-TEST: hwrng of {who}: ");
        let l = log.lines().find(|l| l.contains(&tag)).unwrap();
        l[l.find(&tag).unwrap() + tag.len()..].trim().to_string()
    };
    let (a, b) = (bytes("a"), bytes("b"));
    assert_eq!((a.len(), b.len()), (64, 64), "32 bytes each: {a} / {b}");
    assert_ne!(a, b, "the VMs share no entropy");
    assert_eq!(image_file(&imgs[0], "/from-a"), b"from-a\n");
    assert_eq!(image_file(&imgs[1], "/from-b"), b"from-b\n");
    assert!(image_file(&imgs[0], "/from-b").is_empty());
    assert!(image_file(&imgs[1], "/from-a").is_empty());
}

/// hostile-test's `vblk` phase (three rounds, then it shuts itself down
/// reporting a failure) against its own two disks (one read-only), beside a
/// Linux VM writing, re-reading and checking 4 MiB on its disk: the Linux
/// VM's data is intact (in the guest after dropping its caches, and in the
/// image afterwards), no breach is seen, and the hostile VM's refusals are
/// counted in the log.
#[test]
fn hostile_vblk_beside_linux_io() {
    let name = "devices-hostile-vblk";
    let img = ext4_image(name, 32, &[("known.txt", "linux-disk\n")]);
    let hostile_rw = testing::scratch_file(&format!("{name}-h0.img"), &vec![0u8; 1 << 20]).unwrap();
    let hostile_ro_bytes: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
    let hostile_ro = testing::scratch_file(&format!("{name}-h1.img"), &hostile_ro_bytes).unwrap();
    let script = format!(
        "{PRELUDE}{}",
        r#"for i in 1 2 3; do
    dd if=/dev/urandom of=/mnt/big$i bs=64k count=64 2>/dev/null || fail "dd"
    md5sum /mnt/big$i | cut -d' ' -f1 > /mnt/big$i.md5
done
sync
echo 3 > /proc/sys/vm/drop_caches
for i in 1 2 3; do
    [ "$(md5sum /mnt/big$i | cut -d' ' -f1)" = "$(cat /mnt/big$i.md5)" ] || fail "big$i differs"
done
echo "FV-TEST: data intact"
umount /mnt
poweroff
"#
    );
    let initrd = initrd_with(name, &script);
    let mut hostile = testing::guest_vm("hostile-test", 1, 64 * MIB);
    if let Err(e) = testing::require_built(&hostile.kernel) {
        panic!("{e}");
    }
    hostile.command_line = "phase=vblk,vblk,vblk,die".into();
    let mut args = drive("d0", &img, false);
    args.extend(drive("d1", &hostile_rw, false));
    args.extend(drive("d2", &hostile_ro, false));
    let mut case = Case::new(
        name,
        CaseVms::List(vec![linux_vm("linux", initrd), hostile]),
    );
    case.machine.cpus = Some(2);
    case.timeout = TIMEOUT;
    args.extend(["-global".into(), "virtio-mmio.force-legacy=false".into()]);
    case.qemu_args = args;
    case.vm_devices = vec![
        vec![block(1, host_slot(0), false)],
        vec![block(1, host_slot(1), false), block(2, host_slot(2), true)],
    ];
    // The hostile VM ends with a reported failure: the machine's exit status says so.
    case.require_clean_exit = false;
    case.success_patterns = [
        "[linux] FV-TEST: data intact",
        "ferrovisor: VM 'linux' powered off",
        ", 2 virtio-blk, 36 requests: ",
        "ferrovisor: VM 'hostile-test' virtio-blk slot 2 (host 0x10006000)",
        "ferrovisor: all VMs stopped",
    ]
    .iter()
    .map(|p| Pattern::Contains((*p).into()))
    .collect();
    case.failure_patterns
        .push(Pattern::Contains("FV-TEST: FAIL".into()));
    let report = testing::run_and_report(&case).unwrap_or_else(|e| panic!("{name}: {e}"));
    let log = fs::read_to_string(&report.log_path).unwrap();
    let rounds = log
        .lines()
        .filter(|l| {
            l.contains("INFO: hostile-test: phase vblk done: ") && l.contains(", 2 virtio-blk, ")
        })
        .count();
    assert_eq!(rounds, 3, "three vblk rounds against both disks");
    // Its refusals are counted: read-only writes on slot 2, bad chains and
    // refused DMA on both.
    let line = |slot: u8| {
        log.lines()
            .find(|l| l.contains(&format!("VM 'hostile-test' virtio-blk slot {slot} ")))
            .unwrap_or_else(|| panic!("no counters of hostile slot {slot}"))
            .to_string()
    };
    let count = |l: &str, what: &str| -> u64 {
        let i = l.find(what).unwrap_or_else(|| panic!("`{what}` in {l}"));
        let before = l[..i].trim_end();
        let n = before.rsplit([' ', ',']).next().unwrap();
        n.parse()
            .unwrap_or_else(|_| panic!("number before `{what}` in {l}"))
    };
    let (s1, s2) = (line(1), line(2));
    for l in [&s1, &s2] {
        assert!(count(l, "refused DMA") > 0, "{l}");
        assert!(count(l, "bad chains") > 0, "{l}");
    }
    let ro_writes: u64 = s2
        .rsplit("read-only writes ")
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        ro_writes >= 3,
        "the read-only disk refused the writes: {s2}"
    );
    assert_eq!(
        fs::read(&hostile_ro).unwrap(),
        hostile_ro_bytes,
        "read-only image unchanged"
    );
    // Linux's data is in its image.
    for i in 1..=3 {
        let big = image_file(&img, &format!("/big{i}"));
        assert_eq!(big.len(), 4 << 20, "big{i} in the image");
        let md5 = Command::new("md5sum")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(&big)?;
                c.wait_with_output()
            })
            .unwrap();
        let host_md5 = String::from_utf8_lossy(&md5.stdout);
        let guest_md5 = String::from_utf8(image_file(&img, &format!("/big{i}.md5"))).unwrap();
        assert_eq!(
            host_md5.split_whitespace().next(),
            Some(guest_md5.trim()),
            "big{i}: what the guest wrote is what the image holds"
        );
    }
}

/// A VM whose records name a host device that is not there, or of another
/// type, is not created (the reason logged); the other VM runs.
#[test]
fn missing_or_wrong_host_device_fails_only_that_vm() {
    let name = "devices-missing-host";
    let good = testing::guest_vm("sbi-test", 1, 32 * MIB);
    let mut missing = testing::guest_vm("sbi-test", 1, 32 * MIB);
    missing.name = "nodisk".into();
    let mut wrong = testing::guest_vm("sbi-test", 1, 32 * MIB);
    wrong.name = "wrongtype".into();
    if let Err(e) = testing::require_built(&good.kernel) {
        panic!("{e}");
    }
    let mut case = Case::new(name, CaseVms::List(vec![good, missing, wrong]));
    case.machine.cpus = Some(1);
    case.timeout = TIMEOUT;
    // Only a virtio-rng (at 0x1000_8000): no virtio-blk at all.
    case.qemu_args = vec!["-device".into(), "virtio-rng-device".into()];
    case.vm_devices = vec![
        Vec::new(),
        vec![block(1, host_slot(1), false)],
        vec![block(1, host_slot(0), false)],
    ];
    case.success_patterns = [
        "ferrovisor: VM 'nodisk' not created: device in guest slot 1: no free host virtio-blk at that address",
        "ferrovisor: VM 'wrongtype' not created: device in guest slot 1: no free host virtio-blk at that address",
        "DONE: sbi-test passed=",
        "ferrovisor: all VMs stopped",
    ]
    .iter()
    .map(|p| Pattern::Contains((*p).into()))
    .collect();
    if let Err(e) = testing::run_and_report(&case) {
        panic!("{name}: {e}");
    }
}

/// A VM reboots while its direct writes to a raw disk are in flight: the
/// hypervisor waits for the machine's disk before reloading the VM's RAM,
/// the VM boots again and its ext4 disk still reads back.
#[test]
fn reboot_under_io() {
    let name = "devices-reboot-under-io";
    let img = ext4_image(name, 16, &[("known.txt", "still-here\n")]);
    let raw = testing::scratch_file(&format!("{name}-raw.img"), &vec![0u8; 64 << 20]).unwrap();
    let script = format!(
        "{PRELUDE}{}",
        r#"if [ -f /mnt/rebooted ]; then
    echo "FV-TEST: after reboot: $(cat /mnt/known.txt)"
    umount /mnt
    poweroff
else
    touch /mnt/rebooted
    sync
    umount /mnt
    for i in 1 2 3 4; do
        dd if=/dev/urandom of=/dev/vdb bs=1M count=16 seek=$((i * 12)) oflag=direct 2>/dev/null &
    done
    sleep 1
    echo "FV-TEST: rebooting under I/O"
    reboot -f
fi
"#
    );
    linux_two_disks(
        name,
        &script,
        [&img, &raw],
        false,
        &[
            "FV-TEST: rebooting under I/O",
            "ferrovisor: VM 'linux' rebooting",
            "FV-TEST: after reboot: still-here",
        ],
    );
}
