//! IPI: `send_ipi` to itself (by mask and with base -1), to another hart,
//! empty mask, invalid harts; unknown FID.

use core::sync::atomic::{AtomicUsize, Ordering};

use fv_guest_rt::sbi;
use fv_guest_rt::{csr, hart, Platform, Reporter};

fn send(mask: usize, base: usize) -> sbi::Ret {
    sbi::call(sbi::EID_IPI, 0, [mask, base, 0, 0, 0, 0])
}

fn ssip_after(f: impl FnOnce() -> sbi::Ret) -> (sbi::Ret, bool) {
    csr::sip_clear(csr::SSI);
    let ret = f();
    let pending = csr::sip() & csr::SSI != 0;
    csr::sip_clear(csr::SSI);
    (ret, pending)
}

static GOT_IPI: AtomicUsize = AtomicUsize::new(0);
/// SSIP was already pending when the hart started (an IPI sent while it was
/// STOPPED, e.g. by `ipi/all-by-base-minus-one`, must not survive hart_start).
static STALE_IPI: AtomicUsize = AtomicUsize::new(0);

fn wait_for_ipi(_hartid: usize, _arg: usize) {
    STALE_IPI.store(usize::from(csr::sip() & csr::SSI != 0), Ordering::SeqCst);
    csr::sip_clear(csr::SSI);
    csr::sie_set(csr::SSI);
    let deadline = csr::time() + csr::ms_to_ticks(2000, fv_guest_rt::platform::get().timebase_hz);
    while csr::sip() & csr::SSI == 0 && csr::time() < deadline {
        csr::wfi();
    }
    if csr::sip() & csr::SSI != 0 {
        GOT_IPI.store(1, Ordering::SeqCst);
    }
    csr::sip_clear(csr::SSI);
    csr::sie_clear(csr::SSI);
}

pub fn run(p: &Platform, r: &Reporter) {
    let me = hart::hart_id();
    let (ret, pending) = ssip_after(|| send(1, me));
    r.check(
        "ipi/self-by-mask",
        ret.error == sbi::SUCCESS && pending,
        format_args!("send_ipi(1, {me}) returned {ret}, SSIP pending {pending}"),
    );
    let (ret, pending) = ssip_after(|| send(0, usize::MAX));
    r.check(
        "ipi/all-by-base-minus-one",
        ret.error == sbi::SUCCESS && pending,
        format_args!("send_ipi(0, -1) returned {ret}, SSIP pending {pending}"),
    );
    let (ret, pending) = ssip_after(|| send(0, me));
    r.check(
        "ipi/empty-mask",
        ret.error == sbi::SUCCESS && !pending,
        format_args!("send_ipi(0, {me}) returned {ret}, SSIP pending {pending}"),
    );
    let absent = p.absent_hart_id();
    r.check_sbi_error("ipi/invalid-hart", send(1, absent), sbi::ERR_INVALID_PARAM);
    r.check_sbi_error(
        "ipi/mask-beyond-last-hart",
        send(1 << 63, 0),
        sbi::ERR_INVALID_PARAM,
    );
    r.check_sbi_error(
        "ipi/unknown-fid",
        sbi::call(sbi::EID_IPI, 1, [1, me, 0, 0, 0, 0]),
        sbi::ERR_NOT_SUPPORTED,
    );
    if let Some(&other) = p.hart_ids().iter().find(|&&h| h != me) {
        GOT_IPI.store(0, Ordering::SeqCst);
        let started = hart::start(other, wait_for_ipi, 0);
        let up = crate::util::wait_status(p, other, sbi::HART_STARTED, 1000);
        // Give it time to enable SSIE and wait.
        let t = csr::time() + csr::ms_to_ticks(20, p.timebase_hz);
        csr::spin_until(t, || false);
        let ret = send(1, other);
        let t = csr::time() + csr::ms_to_ticks(2000, p.timebase_hz);
        let got = csr::spin_until(t, || GOT_IPI.load(Ordering::SeqCst) == 1);
        let stale = STALE_IPI.load(Ordering::SeqCst) == 1;
        r.check(
            "ipi/other-hart",
            started.error == sbi::SUCCESS && up && ret.error == sbi::SUCCESS && got,
            format_args!("start {started}, up {up}, send_ipi {ret}, received {got}"),
        );
        r.check(
            "ipi/none-pending-after-hart-start",
            !stale,
            format_args!("SSIP pending at entry of a freshly started hart"),
        );
        crate::util::wait_status(p, other, sbi::HART_STOPPED, 2000);
    }
}
