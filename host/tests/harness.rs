//! Checks the QEMU harness and `ferrovisor run` against real QEMU runs of tiny
//! hand-assembled payloads standing in for the hypervisor (OpenSBI jumps to a flat
//! `-kernel` at 0x8020_0000 in S-mode). The boot package is built and passed as
//! `-initrd` as usual; the payloads ignore it.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use ferrovisor::testing::{self, Case, CaseError, CaseVms, Pattern};

// --- A minimal RV64 encoder (enough for the payloads) -------------------------

const ZERO: u32 = 0;
const S0: u32 = 8;
const A0: u32 = 10;
const A1: u32 = 11;
const A6: u32 = 16;
const A7: u32 = 17;

fn i_type(opcode: u32, rd: u32, funct3: u32, rs1: u32, imm: i32) -> u32 {
    ((imm as u32 & 0xfff) << 20) | (rs1 << 15) | (funct3 << 12) | (rd << 7) | opcode
}
fn addi(rd: u32, rs1: u32, imm: i32) -> u32 {
    i_type(0x13, rd, 0, rs1, imm)
}
fn lbu(rd: u32, rs1: u32, imm: i32) -> u32 {
    i_type(0x03, rd, 4, rs1, imm)
}
fn lui(rd: u32, imm20: u32) -> u32 {
    (imm20 << 12) | (rd << 7) | 0x37
}
fn auipc(rd: u32, imm20: u32) -> u32 {
    (imm20 << 12) | (rd << 7) | 0x17
}
fn beq(rs1: u32, rs2: u32, off: i32) -> u32 {
    let o = off as u32;
    (((o >> 12) & 1) << 31)
        | (((o >> 5) & 0x3f) << 25)
        | (rs2 << 20)
        | (rs1 << 15)
        | (((o >> 1) & 0xf) << 8)
        | (((o >> 11) & 1) << 7)
        | 0x63
}
fn jal(rd: u32, off: i32) -> u32 {
    let o = off as u32;
    (((o >> 20) & 1) << 31)
        | (((o >> 1) & 0x3ff) << 21)
        | (((o >> 11) & 1) << 20)
        | (((o >> 12) & 0xff) << 12)
        | (rd << 7)
        | 0x6f
}
const ECALL: u32 = 0x0000_0073;

#[test]
fn encoder_matches_known_encodings() {
    assert_eq!(addi(A0, ZERO, 1), 0x0010_0513); // li a0, 1
    assert_eq!(lui(A7, 0x53525), 0x5352_58b7);
    assert_eq!(jal(ZERO, 0), 0x0000_006f); // j .
    assert_eq!(jal(ZERO, -20), 0xfedf_f06f);
    assert_eq!(beq(A0, ZERO, 20), 0x0005_0a63);
    assert_eq!(lbu(A0, S0, 0), 0x0004_4503);
    assert_eq!(auipc(S0, 0), 0x0000_0417);
}

/// Prints `message` through the legacy SBI console, then shuts down via SBI SRST.
fn print_and_shutdown(message: &str) -> Vec<u8> {
    const MSG: i32 = 60;
    let code = [
        auipc(S0, 0),        // 0
        addi(S0, S0, MSG),   // 4
        lbu(A0, S0, 0),      // 8: loop
        beq(A0, ZERO, 20),   // 12 -> 32
        addi(A7, ZERO, 1),   // 16: legacy console_putchar
        ECALL,               // 20
        addi(S0, S0, 1),     // 24
        jal(ZERO, -20),      // 28 -> 8
        lui(A7, 0x53525),    // 32: SRST extension 0x53525354
        addi(A7, A7, 0x354), // 36
        addi(A6, ZERO, 0),   // 40: system_reset
        addi(A0, ZERO, 0),   // 44: shutdown
        addi(A1, ZERO, 0),   // 48: no reason
        ECALL,               // 52
        jal(ZERO, 0),        // 56: j .
    ];
    let mut out: Vec<u8> = code.iter().flat_map(|i| i.to_le_bytes()).collect();
    assert_eq!(out.len(), MSG as usize);
    out.extend_from_slice(message.as_bytes());
    out.push(0);
    out
}

/// Prints `message` through the legacy SBI console, then loops forever (a
/// machine that never powers off).
fn print_and_spin(message: &str) -> Vec<u8> {
    const MSG: i32 = 36;
    let code = [
        auipc(S0, 0),      // 0
        addi(S0, S0, MSG), // 4
        lbu(A0, S0, 0),    // 8: loop
        beq(A0, ZERO, 20), // 12 -> 32
        addi(A7, ZERO, 1), // 16: legacy console_putchar
        ECALL,             // 20
        addi(S0, S0, 1),   // 24
        jal(ZERO, -20),    // 28 -> 8
        jal(ZERO, 0),      // 32: j .
    ];
    let mut out: Vec<u8> = code.iter().flat_map(|i| i.to_le_bytes()).collect();
    assert_eq!(out.len(), MSG as usize);
    out.extend_from_slice(message.as_bytes());
    out.push(0);
    out
}

fn payload(name: &str, bytes: &[u8]) -> PathBuf {
    testing::scratch_file(&format!("harness-{name}.bin"), bytes).unwrap()
}

/// A case whose "hypervisor" is `hv` and whose one VM is a tiny flat binary.
fn case(name: &str, hv: PathBuf, timeout: u64) -> Case {
    let vm_kernel = payload(&format!("{name}-vm"), &jal(ZERO, 0).to_le_bytes());
    let mut c = Case::new(
        name,
        CaseVms::List(vec![ferrovisor::config::VmConfig {
            kernel: vm_kernel,
            // A 4-byte `j .` has no header: it must be forced flat.
            kernel_format: ferrovisor::loader::FormatChoice::Flat,
            console: ferrovisor::config::ConsoleChoice::Uart,
            ..testing::guest_vm("vm0", 1, 64 << 20)
        }]),
    );
    c.hypervisor = Some(hv);
    c.timeout = Duration::from_secs(timeout);
    c
}

#[test]
fn endless_loop_times_out_and_keeps_the_log() {
    let hv = payload("loop", &jal(ZERO, 0).to_le_bytes());
    let c = case("harness-timeout", hv, 3);
    let err = testing::run_case(&c).unwrap_err();
    let CaseError::Timeout { log, missing, .. } = &err else {
        panic!("expected a timeout, got: {err}");
    };
    assert_eq!(
        missing,
        &[Pattern::Contains(ferrovisor::ALL_VMS_STOPPED.into())]
    );
    assert!(log.ends_with("qemu-logs/harness-timeout.log"));
    let text = std::fs::read_to_string(log).unwrap();
    // OpenSBI's banner made it to the log before the kill.
    assert!(text.contains("OpenSBI"), "{text}");
    assert!(text.contains("timeout"));
    let msg = err.to_string();
    assert!(msg.contains("timeout after 3 s"), "{msg}");
    assert!(msg.contains("harness-timeout.log"), "{msg}");
}

#[test]
fn clean_shutdown_passes() {
    let hv = payload(
        "ok",
        &print_and_shutdown("DONE: fake passed=1 failed=0\nferrovisor: all VMs stopped\n"),
    );
    let mut c = case("harness-ok", hv, 60);
    c.success_patterns
        .push(Pattern::LineStart("DONE: fake passed=".into()));
    let report = testing::run_case(&c).unwrap_or_else(|e| panic!("{e}"));
    let text = std::fs::read_to_string(&report.log_path).unwrap();
    assert!(text.contains("ferrovisor: all VMs stopped"));
}

#[test]
fn failure_line_is_quoted() {
    let hv = payload(
        "fail",
        &print_and_shutdown("FAIL: fake/check: expected 1 got 2\nferrovisor: all VMs stopped\n"),
    );
    let c = case("harness-fail", hv, 60);
    let err = testing::run_case(&c).unwrap_err();
    let CaseError::FailureLine { line, log, .. } = &err else {
        panic!("expected a failure line, got: {err}");
    };
    assert_eq!(line, "FAIL: fake/check: expected 1 got 2");
    assert!(log.exists());
    assert!(err
        .to_string()
        .contains("FAIL: fake/check: expected 1 got 2"));
}

#[test]
fn missing_success_pattern_is_reported() {
    let hv = payload(
        "quiet",
        &print_and_shutdown("ferrovisor: all VMs stopped\n"),
    );
    let mut c = case("harness-missing", hv, 60);
    c.success_patterns
        .push(Pattern::LineStart("DONE: never passed=".into()));
    let err = testing::run_case(&c).unwrap_err();
    assert!(
        matches!(&err, CaseError::MissingSuccess { missing, .. } if missing.len() == 1),
        "{err}"
    );
    assert!(err.to_string().contains("DONE: never passed="), "{err}");
}

/// `ferrovisor run` exits 0 on a clean shutdown and non-zero on a timeout.
#[test]
fn run_command_exit_codes() {
    let dir = std::env::temp_dir().join(format!("fv-run-cmd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("guest.bin"), jal(ZERO, 0).to_le_bytes()).unwrap();
    let cfg = dir.join("vm.yaml");
    std::fs::write(
        &cfg,
        "name: g\nmemory: 64M\nkernel: guest.bin\nkernel_format: flat\n",
    )
    .unwrap();
    let ok_hv = payload(
        "cmd-ok",
        &print_and_shutdown("ferrovisor: all VMs stopped\n"),
    );
    let loop_hv = payload("cmd-loop", &jal(ZERO, 0).to_le_bytes());
    let bin = env!("CARGO_BIN_EXE_ferrovisor");
    let rt = std::env::temp_dir().join(format!("fv-harness-{}", std::process::id()));
    let run = |hv: &PathBuf, timeout: &str| {
        Command::new(bin)
            .args(["run", "--config"])
            .arg(&cfg)
            .args(["--timeout", timeout, "--hypervisor"])
            .arg(hv)
            .env("XDG_CACHE_HOME", dir.join("cache"))
            // Its own instance directory, never shared with other test runs.
            .env(ferrovisor::instance::runtime::RUNTIME_ENV, &rt)
            .output()
            .unwrap()
    };
    let ok = run(&ok_hv, "60");
    let stdout = String::from_utf8_lossy(&ok.stdout);
    let stderr = String::from_utf8_lossy(&ok.stderr);
    assert!(ok.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("ferrovisor: all VMs stopped"));
    assert!(stderr.contains("clean shutdown"), "{stderr}");
    assert!(dir.join("cache/ferrovisor/packages").is_dir());
    // The instance was served while it ran and its directory is gone.
    assert!(stderr.contains("ferrovisor: instance `"), "{stderr}");
    assert!(rt.is_dir() && std::fs::read_dir(&rt).unwrap().next().is_none());

    let hang = run(&loop_hv, "2");
    assert!(!hang.status.success());
    assert!(String::from_utf8_lossy(&hang.stderr).contains("timed out"));

    let missing = run(&dir.join("no-hypervisor"), "2");
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("scripts/build.sh"));
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&rt);
}

/// `stop_after_success`: a machine that never powers off passes once every
/// success pattern matched (QEMU killed after the linger time), still fails on
/// a failure line seen during the linger, and without the option times out.
#[test]
fn stop_after_success_ends_endless_runs() {
    let hv = payload("endless", &print_and_spin("DONE: fake passed=1 failed=0\n"));
    let mut c = case("harness-endless-ok", hv.clone(), 60);
    c.success_patterns = vec![Pattern::LineStart("DONE: fake passed=".into())];
    c.require_clean_exit = false;
    c.stop_after_success = Some(Duration::from_millis(500));
    let t0 = std::time::Instant::now();
    let report = testing::run_case(&c).unwrap_or_else(|e| panic!("{e}"));
    assert!(t0.elapsed() < Duration::from_secs(30), "{:?}", t0.elapsed());
    let text = std::fs::read_to_string(&report.log_path).unwrap();
    assert!(text.contains("killed on request"), "{text}");

    let hv = payload(
        "endless-fail",
        &print_and_spin("DONE: fake passed=1 failed=0\nFAIL: fake/late: after DONE\n"),
    );
    let mut c = case("harness-endless-fail", hv.clone(), 60);
    c.success_patterns = vec![Pattern::LineStart("DONE: fake passed=".into())];
    c.require_clean_exit = false;
    c.stop_after_success = Some(Duration::from_secs(2));
    let err = testing::run_case(&c).unwrap_err();
    assert!(
        matches!(&err, CaseError::FailureLine { line, .. } if line == "FAIL: fake/late: after DONE"),
        "{err}"
    );

    let mut c = case("harness-endless-timeout", hv, 3);
    c.success_patterns = vec![Pattern::LineStart("DONE: fake passed=".into())];
    c.failure_patterns.clear();
    let err = testing::run_case(&c).unwrap_err();
    assert!(matches!(&err, CaseError::Timeout { .. }), "{err}");
}
