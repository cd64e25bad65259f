//! Legacy extensions (v0.1): `set_timer`, `console_putchar`,
//! `console_getchar`; the reserved legacy EIDs 0x09..=0x0F.

use fv_guest_rt::sbi;
use fv_guest_rt::{csr, Platform, Reporter};

pub fn run(p: &Platform, r: &Reporter) {
    let mut bad = None;
    for &b in b"sbi-test: this line was written with legacy console_putchar\n" {
        let got = sbi::legacy_putchar(b);
        if got != 0 && bad.is_none() {
            bad = Some(got);
        }
    }
    r.check(
        "legacy/putchar",
        bad.is_none(),
        format_args!("console_putchar returned {}", bad.unwrap_or(0)),
    );

    let at = csr::time() + csr::ms_to_ticks(5, p.timebase_hz);
    let ret = sbi::call(0x00, 0, [at as usize, 0, 0, 0, 0, 0]);
    let fired = crate::time::stip_within(p, 1000);
    crate::util::timer_off();
    r.check(
        "legacy/set-timer",
        ret.error == 0 && fired,
        format_args!(
            "legacy set_timer returned {}, STIP pending {fired}",
            ret.error
        ),
    );
    let got = sbi::call(0x02, 0, [0; 6]);
    r.check(
        "legacy/getchar",
        got.error == -1 || (0..=255).contains(&got.error),
        format_args!("legacy console_getchar returned {}", got.error),
    );
    for eid in [0x09usize, 0x0F] {
        let got = sbi::call(eid, 0, [0; 6]);
        r.check(
            &fv_guest_rt::report::name("legacy/reserved-eid-", eid),
            got.error == sbi::ERR_NOT_SUPPORTED,
            format_args!("legacy EID {eid:#x} returned {}", got.error),
        );
    }
}
