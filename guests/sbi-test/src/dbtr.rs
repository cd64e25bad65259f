//! DBTR: Ferrovisor does not offer it (see fv_guest_sbi's "Knowingly
//! absent"): the probe says 0 and every function is NOT_SUPPORTED. Where an
//! SBI offers it, `num_triggers` must succeed.

use fv_guest_rt::sbi;
use fv_guest_rt::Reporter;

use crate::util::{call3, EID_DBTR};

pub fn run(r: &Reporter) {
    if sbi::probe(EID_DBTR).value != 0 {
        let got = call3(EID_DBTR, 0, 0, 0, 0);
        r.check(
            "dbtr/num-triggers",
            got.error == sbi::SUCCESS,
            format_args!("num_triggers(0) returned {got}"),
        );
        return;
    }
    let mut bad = None;
    for fid in 0..8 {
        let got = call3(EID_DBTR, fid, 0, 0, 0);
        if got.error != sbi::ERR_NOT_SUPPORTED && bad.is_none() {
            bad = Some((fid, got));
        }
    }
    match bad {
        None => r.pass("dbtr/absent-functions-not-supported"),
        Some((fid, got)) => r.fail(
            "dbtr/absent-functions-not-supported",
            format_args!("FID {fid} returned {got}"),
        ),
    }
}
