//! FWFT: `get`/`set` of every standard feature, the LOCK flag, and the
//! errors for reserved features, bad values and flags.

use fv_guest_rt::sbi;
use fv_guest_rt::{println, Reporter};

use crate::util::{call3, EID_FWFT, ERR_DENIED_LOCKED};

const SET: usize = 0;
const GET: usize = 1;
const MISALIGNED_EXC_DELEG: usize = 0;
const PTE_AD_HW_UPDATING: usize = 4;
const LOCK: usize = 1;

pub fn run(r: &Reporter) {
    if sbi::probe(EID_FWFT).value == 0 {
        println!("INFO: sbi-test: FWFT not offered: its checks are skipped");
        return;
    }
    for (name, f) in [
        ("fwft/get-misaligned-exc-deleg", 0),
        ("fwft/get-landing-pad", 1),
        ("fwft/get-shadow-stack", 2),
        ("fwft/get-double-trap", 3),
        ("fwft/get-pte-ad-hw-updating", 4),
        ("fwft/get-pointer-masking-pmlen", 5),
    ] {
        let got = call3(EID_FWFT, GET, f, 0, 0);
        println!("INFO: sbi-test: fwft_get({f}) = {got}");
        let ok = (got.error == sbi::SUCCESS && (f == 5 || got.value <= 1))
            || (got.error == sbi::ERR_NOT_SUPPORTED && got.value == 0);
        r.check(
            name,
            ok,
            format_args!("returned {got}: expected success (0/1) or NOT_SUPPORTED"),
        );
    }
    for (name, f) in [
        ("fwft/get-reserved-feature", 6),
        ("fwft/get-platform-feature", 0x4000_0000),
        ("fwft/get-reserved-global-feature", 0x8000_0000),
        ("fwft/get-platform-global-feature", 0xC000_0000),
    ] {
        r.check_sbi_error(name, call3(EID_FWFT, GET, f, 0, 0), sbi::ERR_DENIED);
    }
    r.check_sbi_error(
        "fwft/set-reserved-feature",
        call3(EID_FWFT, SET, 6, 0, 0),
        sbi::ERR_DENIED,
    );
    let m = call3(EID_FWFT, GET, MISALIGNED_EXC_DELEG, 0, 0);
    if m.error == sbi::SUCCESS {
        r.check_sbi_error(
            "fwft/set-reserved-flags",
            call3(EID_FWFT, SET, MISALIGNED_EXC_DELEG, m.value, 2),
            sbi::ERR_INVALID_PARAM,
        );
        r.check_sbi_error(
            "fwft/set-bad-value",
            call3(EID_FWFT, SET, MISALIGNED_EXC_DELEG, 2, 0),
            sbi::ERR_INVALID_PARAM,
        );
        r.check_sbi_error(
            "fwft/set-current-value",
            call3(EID_FWFT, SET, MISALIGNED_EXC_DELEG, m.value, 0),
            sbi::SUCCESS,
        );
    }
    let ad = call3(EID_FWFT, GET, PTE_AD_HW_UPDATING, 0, 0);
    if ad.error == sbi::ERR_NOT_SUPPORTED {
        r.check_sbi_error(
            "fwft/set-pte-ad-not-supported",
            call3(EID_FWFT, SET, PTE_AD_HW_UPDATING, 1, 0),
            sbi::ERR_NOT_SUPPORTED,
        );
        return;
    }
    let on = call3(EID_FWFT, SET, PTE_AD_HW_UPDATING, 1, 0);
    let read = call3(EID_FWFT, GET, PTE_AD_HW_UPDATING, 0, 0);
    r.check(
        "fwft/set-pte-ad-on",
        on.error == sbi::SUCCESS && read.error == sbi::SUCCESS && read.value == 1,
        format_args!("set 1 returned {on}, get returned {read}"),
    );
    let off = call3(EID_FWFT, SET, PTE_AD_HW_UPDATING, 0, LOCK);
    let read = call3(EID_FWFT, GET, PTE_AD_HW_UPDATING, 0, 0);
    r.check(
        "fwft/set-pte-ad-off-and-lock",
        off.error == sbi::SUCCESS && read.error == sbi::SUCCESS && read.value == 0,
        format_args!("set 0 with LOCK returned {off}, get returned {read}"),
    );
    r.check_sbi_error(
        "fwft/set-locked",
        call3(EID_FWFT, SET, PTE_AD_HW_UPDATING, 1, 0),
        ERR_DENIED_LOCKED,
    );
    let read = call3(EID_FWFT, GET, PTE_AD_HW_UPDATING, 0, 0);
    r.check(
        "fwft/locked-value-kept",
        read.error == sbi::SUCCESS && read.value == 0,
        format_args!("get returned {read}"),
    );
    r.check_sbi_error(
        "fwft/unknown-fid",
        call3(EID_FWFT, 2, 0, 0, 0),
        sbi::ERR_NOT_SUPPORTED,
    );
}
