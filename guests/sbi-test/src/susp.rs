//! SUSP: `system_suspend`'s errors (reserved and platform sleep types, bad
//! resume address, another hart not STOPPED) and a suspend to RAM woken by
//! the timer, resuming at the resume address with the spec's registers.

use core::sync::atomic::{AtomicUsize, Ordering};

use fv_guest_rt::sbi;
use fv_guest_rt::{csr, hart, platform, println, Platform, Reporter};

use crate::hsm::OPAQUE;
use crate::util::{self, call3, non_retentive_suspend, timer_in_ms, timer_off, wait_status};
use crate::util::{NonRetentive, EID_SUSP};

static RELEASE: AtomicUsize = AtomicUsize::new(0);

fn wait_release(_me: usize, _arg: usize) {
    let p = platform::get();
    let t = csr::time() + csr::ms_to_ticks(3000, p.timebase_hz);
    csr::spin_until(t, || RELEASE.load(Ordering::SeqCst) == 1);
}

pub fn run(p: &Platform, r: &Reporter) {
    let me = hart::hart_id();
    if sbi::probe(EID_SUSP).value == 0 {
        println!("INFO: sbi-test: SUSP not offered: its checks are skipped");
        return;
    }
    csr::sie_clear(csr::SSI | csr::STI | csr::SEI);
    for (name, t) in [
        ("susp/reserved-sleep-type", 1),
        ("susp/reserved-sleep-type-top", 0x7FFF_FFFF),
        ("susp/platform-sleep-type", 0x8000_0000),
        ("susp/platform-sleep-type-top", 0xFFFF_FFFF),
    ] {
        r.check_sbi_error(
            name,
            call3(EID_SUSP, 0, t, util::resume_entry(), OPAQUE),
            sbi::ERR_INVALID_PARAM,
        );
    }
    if util::is_ferrovisor() {
        r.check_sbi_error(
            "susp/bad-resume-addr",
            call3(EID_SUSP, 0, 0, 0x1000, OPAQUE),
            sbi::ERR_INVALID_ADDRESS,
        );
    }
    r.check_sbi_error(
        "susp/unknown-fid",
        call3(EID_SUSP, 1, 0, util::resume_entry(), OPAQUE),
        sbi::ERR_NOT_SUPPORTED,
    );
    if let Some(&other) = p.hart_ids().iter().find(|&&h| h != me) {
        RELEASE.store(0, Ordering::SeqCst);
        let _ = hart::start(other, wait_release, 0);
        wait_status(p, other, sbi::HART_STARTED, 1000);
        r.check_sbi_error(
            "susp/denied-while-another-hart-runs",
            call3(EID_SUSP, 0, 0, util::resume_entry(), OPAQUE),
            sbi::ERR_DENIED,
        );
        RELEASE.store(1, Ordering::SeqCst);
        wait_status(p, other, sbi::HART_STOPPED, 3000);
    }
    csr::interrupts_disable();
    timer_in_ms(p, 30);
    csr::sie_set(csr::STI);
    let got = non_retentive_suspend(EID_SUSP, 0, 0, OPAQUE);
    let sip = csr::sip();
    csr::sie_clear(csr::STI);
    timer_off();
    match got {
        NonRetentive::Resumed(s) => {
            r.check(
                "susp/suspend-to-ram-timer-wake",
                sip & csr::STI != 0,
                format_args!("resumed with sip {sip:#x}, STIP not pending"),
            );
            r.check(
                "susp/resume-registers",
                s.a0 == me && s.a1 == OPAQUE && s.satp == 0 && s.sstatus & csr::SSTATUS_SIE == 0,
                format_args!(
                    "a0 {:#x} (hart {me}), a1 {:#x} (opaque {OPAQUE:#x}), satp {:#x}, sstatus {:#x}",
                    s.a0, s.a1, s.satp, s.sstatus
                ),
            );
        }
        NonRetentive::Returned(ret) => r.fail(
            "susp/suspend-to-ram-timer-wake",
            format_args!("system_suspend returned {ret}"),
        ),
    }
}
