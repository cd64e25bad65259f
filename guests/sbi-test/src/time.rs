//! TIME: `set_timer` fires (STIP) and a far deadline clears it; unknown FID.

use fv_guest_rt::sbi;
use fv_guest_rt::{csr, Platform, Reporter};

use crate::util::{timer_in_ms, timer_off};

/// Whether STIP becomes pending within `ms` (SIE off: polled, not taken).
pub fn stip_within(p: &Platform, ms: u64) -> bool {
    let deadline = csr::time() + csr::ms_to_ticks(ms, p.timebase_hz);
    csr::spin_until(deadline, || csr::sip() & csr::STI != 0)
}

pub fn run(p: &Platform, r: &Reporter) {
    timer_in_ms(p, 5);
    r.check(
        "time/set-timer-fires",
        stip_within(p, 1000),
        format_args!("STIP not pending 1 s after set_timer(now + 5 ms)"),
    );
    timer_off();
    r.check(
        "time/set-timer-far-clears-stip",
        csr::sip() & csr::STI == 0,
        format_args!("STIP still pending after set_timer(u64::MAX)"),
    );
    r.check_sbi_error(
        "time/unknown-fid",
        sbi::call(sbi::EID_TIME, 0x100, [0; 6]),
        sbi::ERR_NOT_SUPPORTED,
    );
}
