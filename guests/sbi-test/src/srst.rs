//! SRST error cases (shutdown and reboot themselves: guests/srst-test).

use fv_guest_rt::sbi;
use fv_guest_rt::Reporter;

pub fn run(r: &Reporter) {
    for (name, t, reason) in [
        (
            "srst/reserved-reset-type",
            0x1234usize,
            sbi::RESET_REASON_NONE,
        ),
        (
            "srst/reserved-reset-type-top",
            0xEFFF_FFFF,
            sbi::RESET_REASON_NONE,
        ),
        (
            "srst/vendor-reset-type",
            0xF000_0000,
            sbi::RESET_REASON_NONE,
        ),
        ("srst/reserved-reset-reason", sbi::RESET_TYPE_SHUTDOWN, 2),
        (
            "srst/vendor-reset-reason",
            sbi::RESET_TYPE_SHUTDOWN,
            0xF000_0000,
        ),
    ] {
        r.check_sbi_error(name, sbi::system_reset(t, reason), sbi::ERR_INVALID_PARAM);
    }
    r.check_sbi_error(
        "srst/unknown-fid",
        sbi::call(sbi::EID_SRST, 1, [0; 6]),
        sbi::ERR_NOT_SUPPORTED,
    );
}
