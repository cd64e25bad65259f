//! BASE: every function, probes of every offered extension, unknown FIDs and EIDs.

use fv_guest_rt::sbi;
use fv_guest_rt::{println, Reporter};

use crate::util::{EID_FWFT, EID_SUSP};

/// An extension ID in the experimental space (0x0800_0000–0x08FF_FFFF) that
/// no implementation we know of uses.
pub const UNKNOWN_EID: usize = 0x08FE_DCBA;

pub fn run(r: &Reporter) {
    let v = sbi::call(sbi::EID_BASE, sbi::BASE_GET_SPEC_VERSION, [0; 6]);
    let (major, minor) = ((v.value >> 24) & 0x7f, v.value & 0x00ff_ffff);
    println!("INFO: sbi-test: SBI spec version {major}.{minor} ({v})");
    r.check(
        "base/spec-version-2.0",
        v.error == sbi::SUCCESS && v.value & (1 << 31) == 0 && major >= 2,
        format_args!("{v}: version {major}.{minor}, expected >= 2.0"),
    );
    for (name, fid) in [
        ("base/impl-id", sbi::BASE_GET_IMPL_ID),
        ("base/impl-version", sbi::BASE_GET_IMPL_VERSION),
        ("base/mvendorid", 4),
        ("base/marchid", 5),
        ("base/mimpid", 6),
    ] {
        let got = sbi::call(sbi::EID_BASE, fid, [0; 6]);
        println!("INFO: sbi-test: {name} = {:#x}", got.value);
        r.check(
            name,
            got.error == sbi::SUCCESS,
            format_args!("returned {got}"),
        );
    }
    // SUSP and FWFT are optional (OpenSBI 1.5 has no SUSP on QEMU `virt`):
    // required here only of Ferrovisor, which offers them.
    let ferrovisor = crate::util::is_ferrovisor();
    let exts: [(&str, usize); 12] = [
        ("base/probe-base", sbi::EID_BASE),
        ("base/probe-time", sbi::EID_TIME),
        ("base/probe-ipi", sbi::EID_IPI),
        ("base/probe-rfence", sbi::EID_RFENCE),
        ("base/probe-hsm", sbi::EID_HSM),
        ("base/probe-srst", sbi::EID_SRST),
        ("base/probe-dbcn", sbi::EID_DBCN),
        ("base/probe-susp", EID_SUSP),
        ("base/probe-fwft", EID_FWFT),
        ("base/probe-legacy-set-timer", 0x00),
        ("base/probe-legacy-putchar", 0x01),
        ("base/probe-legacy-getchar", 0x02),
    ];
    for (name, eid) in exts {
        if (eid == EID_SUSP || eid == EID_FWFT) && !ferrovisor {
            continue;
        }
        let got = sbi::probe(eid);
        r.check(
            name,
            got.error == sbi::SUCCESS && got.value != 0,
            format_args!("probe_extension({eid:#x}) returned {got}, expected available"),
        );
    }
    let got = sbi::probe(UNKNOWN_EID);
    r.check(
        "base/probe-unknown-eid",
        got.error == sbi::SUCCESS && got.value == 0,
        format_args!("probe_extension({UNKNOWN_EID:#x}) returned {got}, expected value 0"),
    );
    r.check_sbi_error(
        "base/unknown-fid",
        sbi::call(sbi::EID_BASE, 0x100, [0; 6]),
        sbi::ERR_NOT_SUPPORTED,
    );
    r.check_sbi_error(
        "base/unknown-eid",
        sbi::call(UNKNOWN_EID, 0, [0; 6]),
        sbi::ERR_NOT_SUPPORTED,
    );
}
