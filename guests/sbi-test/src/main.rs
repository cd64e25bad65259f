//! sbi-test: conformance checks of the SBI implementation underneath (SBI
//! v2.0): versions, probes, and the error codes of invalid calls. Every check
//! holds for any conforming SBI 2.0 implementation.
//!
//! OpenSBI v1.5 hangs on the two `dbcn-write-outside-ram-*` checks (it reads
//! the buffer in M-mode without checking S-mode can access it and takes an
//! access fault); on bare QEMU skip them with
//! `-append "fv.skip=dbcn-write-outside-ram-end,dbcn-write-outside-ram-low"`
//! (they then print FAIL "not run"). They run last for the same reason.
#![no_std]
#![no_main]

mod pmu;

use fv_guest_rt::sbi::{self, Ret};
use fv_guest_rt::{csr, hart, println, Platform, Reporter};

fv_guest_rt::guest_main!("sbi-test", main);

/// An extension ID in the experimental space (0x0800_0000–0x08FF_FFFF) that
/// no implementation we know of uses.
const UNKNOWN_EID: usize = 0x08FE_DCBA;
/// SRST reset type in the reserved range 0x0000_0003–0xEFFF_FFFF.
const RESERVED_RESET_TYPE: usize = 0x1234;
/// HSM suspend types in the reserved ranges (retentive / non-retentive).
const RESERVED_SUSPEND_RETENTIVE: usize = 0x0000_0001;
const RESERVED_SUSPEND_NON_RETENTIVE: usize = 0x8000_0001;

fn main(p: &'static Platform, r: &'static Reporter) {
    println!(
        "INFO: sbi-test: boot hart {} of {} harts, RAM {}, timebase {} Hz, isa {}",
        p.boot_hart,
        p.hart_count(),
        p.ram,
        p.timebase_hz,
        p.isa()
    );
    base(r);
    probes(r);
    unknown_calls(r);
    hsm(p, r);
    ipi_rfence(p, r);
    srst(r);
    console(r);
    pmu::pmu_checks(r);
    hart_suspend(p, r);
    // Last: an SBI implementation that does not validate the buffer may fault
    // or hang here, and everything above is already reported.
    dbcn_outside_ram(p, r);
}

fn base(r: &Reporter) {
    let v = sbi::call(sbi::EID_BASE, sbi::BASE_GET_SPEC_VERSION, [0; 6]);
    let (major, minor) = ((v.value >> 24) & 0x7f, v.value & 0x00ff_ffff);
    println!("INFO: sbi-test: SBI spec version {major}.{minor} ({v})");
    r.check(
        "spec-version-2.0",
        v.error == sbi::SUCCESS && v.value & (1 << 31) == 0 && major >= 2,
        format_args!("{v}: version {major}.{minor}, expected >= 2.0"),
    );

    let id = sbi::call(sbi::EID_BASE, sbi::BASE_GET_IMPL_ID, [0; 6]);
    let ver = sbi::call(sbi::EID_BASE, sbi::BASE_GET_IMPL_VERSION, [0; 6]);
    println!(
        "INFO: sbi-test: impl id {:#x} version {:#x}",
        id.value, ver.value
    );
    r.check(
        "impl-id",
        id.error == sbi::SUCCESS,
        format_args!("get_impl_id returned {id}"),
    );
    r.check(
        "impl-version",
        ver.error == sbi::SUCCESS,
        format_args!("get_impl_version returned {ver}"),
    );
}

fn probes(r: &Reporter) {
    let exts: [(&str, usize); 7] = [
        ("probe-base", sbi::EID_BASE),
        ("probe-time", sbi::EID_TIME),
        ("probe-ipi", sbi::EID_IPI),
        ("probe-rfence", sbi::EID_RFENCE),
        ("probe-hsm", sbi::EID_HSM),
        ("probe-srst", sbi::EID_SRST),
        ("probe-dbcn", sbi::EID_DBCN),
    ];
    for (name, eid) in exts {
        let got = sbi::probe(eid);
        r.check(
            name,
            got.error == sbi::SUCCESS && got.value != 0,
            format_args!("probe_extension({eid:#x}) returned {got}, expected available"),
        );
    }
    let got = sbi::probe(UNKNOWN_EID);
    r.check(
        "probe-unknown-eid",
        got.error == sbi::SUCCESS && got.value == 0,
        format_args!("probe_extension({UNKNOWN_EID:#x}) returned {got}, expected value 0"),
    );
}

fn unknown_calls(r: &Reporter) {
    r.check_sbi_error(
        "unknown-eid",
        sbi::call(UNKNOWN_EID, 0, [0; 6]),
        sbi::ERR_NOT_SUPPORTED,
    );
    r.check_sbi_error(
        "unknown-fid-base",
        sbi::call(sbi::EID_BASE, 0x100, [0; 6]),
        sbi::ERR_NOT_SUPPORTED,
    );
    r.check_sbi_error(
        "unknown-fid-time",
        sbi::call(sbi::EID_TIME, 0x100, [0; 6]),
        sbi::ERR_NOT_SUPPORTED,
    );
    r.check_sbi_error(
        "unknown-fid-hsm",
        sbi::call(sbi::EID_HSM, 0x100, [0; 6]),
        sbi::ERR_NOT_SUPPORTED,
    );
}

fn never_runs(hartid: usize, _arg: usize) {
    fv_guest_rt::report::reporter().fail(
        "hart-start-ran",
        format_args!("hart {hartid} ran although hart_start should have failed"),
    );
}

/// hart_start through the runtime (so a wrongly started hart reports itself).
fn hart_start(hartid: usize) -> Ret {
    if hartid < fv_guest_rt::MAX_HARTS {
        hart::start(hartid, never_runs, 0)
    } else {
        sbi::call(
            sbi::EID_HSM,
            sbi::HSM_HART_START,
            [hartid, hart::secondary_entry_address(), 0, 0, 0, 0],
        )
    }
}

fn hsm(p: &Platform, r: &Reporter) {
    let absent = p.absent_hart_id();
    println!("INFO: sbi-test: using hart id {absent} as a hart that does not exist");
    r.check_sbi_error(
        "hart-start-invalid-hartid",
        hart_start(absent),
        sbi::ERR_INVALID_PARAM,
    );
    r.check_sbi_error(
        "hart-start-running-hart",
        hart_start(p.boot_hart),
        sbi::ERR_ALREADY_AVAILABLE,
    );
    r.check_sbi_error(
        "hart-get-status-invalid-hartid",
        sbi::hart_get_status(absent),
        sbi::ERR_INVALID_PARAM,
    );
    let st = sbi::hart_get_status(p.boot_hart);
    r.check(
        "hart-get-status-self-started",
        st.error == sbi::SUCCESS && st.value == sbi::HART_STARTED,
        format_args!(
            "hart_get_status({}) returned {st}, expected STARTED (0)",
            p.boot_hart
        ),
    );
}

fn ipi_rfence(p: &Platform, r: &Reporter) {
    let absent = p.absent_hart_id();
    // hart_mask = 1, hart_mask_base = absent: names exactly the absent hart.
    r.check_sbi_error(
        "send-ipi-invalid-hart",
        sbi::call(sbi::EID_IPI, 0, [1, absent, 0, 0, 0, 0]),
        sbi::ERR_INVALID_PARAM,
    );
    r.check_sbi_error(
        "remote-fence-i-invalid-hart",
        sbi::call(sbi::EID_RFENCE, 0, [1, absent, 0, 0, 0, 0]),
        sbi::ERR_INVALID_PARAM,
    );
    r.check_sbi_error(
        "remote-sfence-vma-invalid-hart",
        sbi::call(sbi::EID_RFENCE, 1, [1, absent, 0, usize::MAX, 0, 0]),
        sbi::ERR_INVALID_PARAM,
    );
}

fn srst(r: &Reporter) {
    r.check_sbi_error(
        "srst-reserved-reset-type",
        sbi::system_reset(RESERVED_RESET_TYPE, sbi::RESET_REASON_NONE),
        sbi::ERR_INVALID_PARAM,
    );
}

fn console(r: &Reporter) {
    let line = b"sbi-test: this line was written with DBCN console_write\n";
    let got = sbi::dbcn_write(line);
    r.check(
        "dbcn-write",
        got.error == sbi::SUCCESS && got.value == line.len(),
        format_args!("console_write of {} bytes returned {got}", line.len()),
    );

    let mut bad = None;
    for &b in b"sbi-test: this line was written with DBCN console_write_byte\n" {
        let got = sbi::call(
            sbi::EID_DBCN,
            sbi::DBCN_CONSOLE_WRITE_BYTE,
            [b as usize, 0, 0, 0, 0, 0],
        );
        if got.error != sbi::SUCCESS && bad.is_none() {
            bad = Some(got);
        }
    }
    r.check(
        "dbcn-write-byte",
        bad.is_none(),
        format_args!(
            "console_write_byte returned {}",
            bad.unwrap_or(Ret { error: 0, value: 0 })
        ),
    );

    let mut bad = None;
    for &b in b"sbi-test: this line was written with legacy console_putchar\n" {
        let got = sbi::legacy_putchar(b);
        if got != 0 && bad.is_none() {
            bad = Some(got);
        }
    }
    r.check(
        "legacy-putchar",
        bad.is_none(),
        format_args!("console_putchar returned {}", bad.unwrap_or(0)),
    );
}

fn hart_suspend(p: &Platform, r: &Reporter) {
    // A conforming SBI rejects these at once. Should it suspend the hart
    // instead, a timer 100 ms out wakes it (STIE enabled, SIE clear: wakes
    // `wfi` without taking the interrupt), and the check fails.
    let wake = csr::time() + csr::ms_to_ticks(100, p.timebase_hz);
    let _ = sbi::call(sbi::EID_TIME, 0, [wake as usize, 0, 0, 0, 0, 0]);
    csr::sie_set(csr::STI);
    let ret = sbi::call(
        sbi::EID_HSM,
        sbi::HSM_HART_SUSPEND,
        [RESERVED_SUSPEND_RETENTIVE, 0, 0, 0, 0, 0],
    );
    r.check_sbi_error(
        "hart-suspend-reserved-retentive",
        ret,
        sbi::ERR_INVALID_PARAM,
    );
    let ret = sbi::call(
        sbi::EID_HSM,
        sbi::HSM_HART_SUSPEND,
        [
            RESERVED_SUSPEND_NON_RETENTIVE,
            hart::secondary_entry_address(),
            hart::UNEXPECTED_ENTRY_OPAQUE,
            0,
            0,
            0,
        ],
    );
    r.check_sbi_error(
        "hart-suspend-reserved-non-retentive",
        ret,
        sbi::ERR_INVALID_PARAM,
    );
    csr::sie_clear(csr::STI);
    let _ = sbi::call(sbi::EID_TIME, 0, [usize::MAX, 0, 0, 0, 0, 0]);
}

/// Low addresses tried, in order, for a buffer S-mode cannot access: 0x1000
/// (nothing in a Ferrovisor VM; QEMU's boot ROM on bare QEMU, which S-mode can
/// read), then holes of QEMU's `virt` memory map.
const LOW_CANDIDATES: [usize; 3] = [0x1000, 0x0900_0000, 0x1100_0000];

/// True if a load from `addr` by this S-mode program faults (checked with a
/// real load; the fault is expected).
fn inaccessible(addr: usize) -> bool {
    fv_guest_rt::trap::try_load_u8(addr).is_err()
}

fn dbcn_outside_ram(p: &Platform, r: &Reporter) {
    // The spec's rule (SBI v2.0, shared memory physical address range): the
    // SBI must check that S-mode may access the buffer, else
    // SBI_ERR_INVALID_PARAM. Each address is first shown to be inaccessible to
    // this program with a load, so the expectation holds on any platform.
    let check = "dbcn-write-outside-ram-end";
    let ram_end = p.ram.end;
    if r.should_run(check) {
        if inaccessible(ram_end) {
            println!("INFO: sbi-test: DBCN console_write of 16 bytes at {ram_end:#x} (RAM end; a load there faults)");
            r.check_sbi_error(
                check,
                sbi::dbcn_write_raw(16, ram_end, 0),
                sbi::ERR_INVALID_PARAM,
            );
        } else {
            r.fail(
                check,
                format_args!("a load at RAM end {ram_end:#x} does not fault"),
            );
        }
    }

    let check = "dbcn-write-outside-ram-low";
    if r.should_run(check) {
        let pick = LOW_CANDIDATES
            .iter()
            .copied()
            .find(|&a| !p.memory().iter().any(|m| m.contains(a)) && inaccessible(a));
        match pick {
            Some(low) => {
                println!("INFO: sbi-test: DBCN console_write of 16 bytes at {low:#x} (a load there faults)");
                r.check_sbi_error(
                    check,
                    sbi::dbcn_write_raw(16, low, 0),
                    sbi::ERR_INVALID_PARAM,
                );
            }
            None => r.fail(
                check,
                format_args!("none of {LOW_CANDIDATES:#x?} is inaccessible to S-mode"),
            ),
        }
    }
}
