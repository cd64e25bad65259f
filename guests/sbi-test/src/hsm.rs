//! HSM: `hart_start`/`hart_stop`/`hart_get_status` with their errors, and
//! `hart_suspend`: reserved types and bad resume addresses, then real
//! suspends woken by a timer, an IPI and an external interrupt (retentive
//! and non-retentive, default and platform-specific types). With a second
//! vCPU, a helper hart watches the suspended one: it must read SUSPENDED,
//! and it delivers the wake-up itself.

use core::sync::atomic::{AtomicUsize, Ordering};

use fv_guest_rt::sbi;
use fv_guest_rt::{csr, hart, platform, Platform, Reporter};

use crate::util::{
    self, non_retentive_suspend, plic_ack, plic_route_uart, retentive_suspend, timer_in_ms,
    timer_off, uart_thre_irq, wait_status, NonRetentive, HART_SUSPENDED,
};

/// HSM suspend types.
pub const RETENTIVE: usize = 0x0000_0000;
/// Default non-retentive.
pub const NON_RETENTIVE: usize = 0x8000_0000;
const PLATFORM_RETENTIVE: usize = 0x1000_0000;
const PLATFORM_NON_RETENTIVE: usize = 0x9000_0000;
const RESERVED_RETENTIVE: usize = 0x0000_0001;
const RESERVED_NON_RETENTIVE: usize = 0x8000_0001;

/// The opaque value non-retentive resumes must hand back in a1.
pub const OPAQUE: usize = 0x0BAD_CAFE_1234_5678;

fn never_runs(hartid: usize, _arg: usize) {
    fv_guest_rt::report::reporter().fail(
        "hsm/hart-start-ran",
        format_args!("hart {hartid} ran although hart_start should have failed"),
    );
}

fn returns_at_once(_hartid: usize, _arg: usize) {}

/// hart_start through the runtime (so a wrongly started hart reports itself).
fn hart_start(hartid: usize) -> sbi::Ret {
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

pub fn run(p: &Platform, r: &Reporter) {
    basics(p, r);
    suspend_errors(r);
    suspends(p, r);
}

fn basics(p: &Platform, r: &Reporter) {
    let me = hart::hart_id();
    let absent = p.absent_hart_id();
    r.check_sbi_error(
        "hsm/hart-start-invalid-hartid",
        hart_start(absent),
        sbi::ERR_INVALID_PARAM,
    );
    r.check_sbi_error(
        "hsm/hart-start-running-hart",
        hart_start(me),
        sbi::ERR_ALREADY_AVAILABLE,
    );
    r.check_sbi_error(
        "hsm/hart-get-status-invalid-hartid",
        sbi::hart_get_status(absent),
        sbi::ERR_INVALID_PARAM,
    );
    let st = sbi::hart_get_status(me);
    r.check(
        "hsm/hart-get-status-self-started",
        st.error == sbi::SUCCESS && st.value == sbi::HART_STARTED,
        format_args!("hart_get_status({me}) returned {st}, expected STARTED (0)"),
    );
    r.check_sbi_error(
        "hsm/unknown-fid",
        sbi::call(sbi::EID_HSM, 0x100, [0; 6]),
        sbi::ERR_NOT_SUPPORTED,
    );
    let Some(&other) = p.hart_ids().iter().find(|&&h| h != me) else {
        return;
    };
    let st = sbi::hart_get_status(other);
    r.check(
        "hsm/hart-get-status-other-stopped",
        st.error == sbi::SUCCESS && st.value == sbi::HART_STOPPED,
        format_args!("hart_get_status({other}) returned {st}, expected STOPPED (1)"),
    );
    if util::is_ferrovisor() {
        // Nothing at 0x1000 in a Ferrovisor VM.
        r.check_sbi_error(
            "hsm/hart-start-bad-address",
            sbi::call(
                sbi::EID_HSM,
                sbi::HSM_HART_START,
                [other, 0x1000, 0, 0, 0, 0],
            ),
            sbi::ERR_INVALID_ADDRESS,
        );
    }
    let ret = hart::start(other, returns_at_once, 0);
    let stopped = ret.error == sbi::SUCCESS && wait_status(p, other, sbi::HART_STOPPED, 2000);
    r.check(
        "hsm/hart-start-then-stop",
        stopped,
        format_args!("hart_start({other}) returned {ret}; STOPPED again: {stopped}"),
    );
}

fn suspend_errors(r: &Reporter) {
    // A conforming SBI rejects these at once (no interrupt is enabled, so a
    // wrongly accepted suspend would never return).
    csr::sie_clear(csr::SSI | csr::STI | csr::SEI);
    for (name, typ) in [
        ("hsm/suspend-reserved-retentive", RESERVED_RETENTIVE),
        ("hsm/suspend-reserved-retentive-top", 0x0FFF_FFFF),
        ("hsm/suspend-reserved-non-retentive", RESERVED_NON_RETENTIVE),
        ("hsm/suspend-reserved-non-retentive-top", 0x8FFF_FFFF),
    ] {
        let ret = sbi::call(
            sbi::EID_HSM,
            sbi::HSM_HART_SUSPEND,
            [
                typ,
                hart::secondary_entry_address(),
                hart::UNEXPECTED_ENTRY_OPAQUE,
                0,
                0,
                0,
            ],
        );
        r.check_sbi_error(name, ret, sbi::ERR_INVALID_PARAM);
    }
    if util::is_ferrovisor() {
        for (name, typ) in [
            ("hsm/suspend-non-retentive-bad-resume-addr", NON_RETENTIVE),
            (
                "hsm/suspend-platform-non-retentive-bad-resume-addr",
                PLATFORM_NON_RETENTIVE,
            ),
        ] {
            let ret = sbi::call(
                sbi::EID_HSM,
                sbi::HSM_HART_SUSPEND,
                [typ, 0x1000, hart::UNEXPECTED_ENTRY_OPAQUE, 0, 0, 0],
            );
            r.check_sbi_error(name, ret, sbi::ERR_INVALID_ADDRESS);
        }
    }
}

fn suspend_forever(_me: usize, _arg: usize) {
    csr::interrupts_disable();
    csr::sie_clear(csr::SSI | csr::STI | csr::SEI);
    let ret = retentive_suspend(RETENTIVE).0;
    fv_guest_rt::report::reporter().fail(
        "hsm/suspended-at-shutdown",
        format_args!("a suspend with no interrupt enabled returned {ret}"),
    );
}

/// Last check of the run: a helper hart suspends with no interrupt enabled
/// and stays SUSPENDED while the boot hart shuts the VM down (SRST), which
/// must still power off cleanly.
pub fn leave_one_suspended(p: &Platform, r: &Reporter) {
    let me = hart::hart_id();
    let Some(other) = p.hart_ids().iter().copied().find(|&h| h != me) else {
        return;
    };
    let ret = hart::start(other, suspend_forever, 0);
    let seen = wait_status(p, other, HART_SUSPENDED, 2000);
    r.check(
        "hsm/suspended-at-shutdown",
        ret.error == sbi::SUCCESS && seen,
        format_args!("hart_start({other}) returned {ret}; SUSPENDED seen: {seen}"),
    );
}

/// How the wake-up comes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wake {
    /// The SBI timer (set before suspending).
    Timer,
    /// An IPI (from the helper, or sent to itself beforehand).
    Ipi,
    /// The UART's transmit interrupt through the PLIC.
    External,
    /// The timer, after an IPI that is *not* enabled in `sie` (must not wake).
    TimerAfterMaskedIpi,
}

static MODE: AtomicUsize = AtomicUsize::new(0);
static SAW_SUSPENDED: AtomicUsize = AtomicUsize::new(0);
static STAYED: AtomicUsize = AtomicUsize::new(0);
static RESCUED: AtomicUsize = AtomicUsize::new(0);

fn wake_of(v: usize) -> Wake {
    match v {
        1 => Wake::Ipi,
        2 => Wake::External,
        3 => Wake::TimerAfterMaskedIpi,
        _ => Wake::Timer,
    }
}

fn code_of(w: Wake) -> usize {
    match w {
        Wake::Timer => 0,
        Wake::Ipi => 1,
        Wake::External => 2,
        Wake::TimerAfterMaskedIpi => 3,
    }
}

fn ipi(target: usize) {
    let _ = sbi::call(sbi::EID_IPI, 0, [1, target, 0, 0, 0, 0]);
}

/// The helper hart: sees `target` SUSPENDED, wakes it as `MODE` says, and
/// if it has not resumed a second later sends it an IPI (a rescue, so a
/// broken wake-up fails the check instead of hanging the run).
fn helper(_me: usize, target: usize) {
    let p = platform::get();
    let saw = wait_status(p, target, HART_SUSPENDED, 1000);
    SAW_SUSPENDED.store(usize::from(saw), Ordering::SeqCst);
    match wake_of(MODE.load(Ordering::SeqCst)) {
        Wake::Timer => {}
        Wake::Ipi => ipi(target),
        Wake::External => uart_thre_irq(true),
        Wake::TimerAfterMaskedIpi => {
            ipi(target);
            let t = csr::time() + csr::ms_to_ticks(50, p.timebase_hz);
            csr::spin_until(t, || false);
            let st = sbi::hart_get_status(target);
            STAYED.store(
                usize::from(st.error == sbi::SUCCESS && st.value == HART_SUSPENDED),
                Ordering::SeqCst,
            );
        }
    }
    if !wait_status(p, target, sbi::HART_STARTED, 1000) {
        RESCUED.store(1, Ordering::SeqCst);
        ipi(target);
    }
}

/// What one suspend did.
struct Outcome {
    /// Retentive: the call's result and whether registers/CSRs were intact.
    retentive: Option<(sbi::Ret, bool)>,
    /// Non-retentive: what came back.
    non_retentive: Option<NonRetentive>,
    /// `sip` right after the wake-up.
    sip: usize,
    /// PLIC source claimed after an external wake-up.
    claimed: u32,
}

fn suspend_once(p: &Platform, typ: usize, wake: Wake, helper_hart: Option<usize>) -> Outcome {
    let me = hart::hart_id();
    MODE.store(code_of(wake), Ordering::SeqCst);
    SAW_SUSPENDED.store(0, Ordering::SeqCst);
    STAYED.store(0, Ordering::SeqCst);
    RESCUED.store(0, Ordering::SeqCst);
    csr::interrupts_disable();
    csr::sie_clear(csr::SSI | csr::STI | csr::SEI);
    csr::sip_clear(csr::SSI);
    let enable = match wake {
        Wake::Timer | Wake::TimerAfterMaskedIpi => csr::STI,
        Wake::Ipi => csr::SSI,
        Wake::External => csr::SEI,
    };
    if wake == Wake::External {
        plic_route_uart(me);
    }
    if let Some(h) = helper_hart {
        // Running before the timer is armed, so it has the whole wait to
        // read SUSPENDED (a helper that starts late would miss a short one).
        let _ = hart::start(h, helper, me);
        wait_status(p, h, sbi::HART_STARTED, 1000);
    }
    // Long enough for the helper to look (vCPUs share harts here).
    let timer_ms = if helper_hart.is_some() { 200 } else { 30 };
    match wake {
        Wake::Timer => timer_in_ms(p, timer_ms),
        Wake::TimerAfterMaskedIpi => timer_in_ms(p, 2 * timer_ms),
        Wake::External | Wake::Ipi => {}
    }
    if helper_hart.is_none() {
        // Alone: the wake-up is pending before the suspend (it returns at once).
        match wake {
            Wake::Ipi => ipi(me),
            Wake::External => uart_thre_irq(true),
            _ => {}
        }
    }
    csr::sie_set(enable);
    let mut out = Outcome {
        retentive: None,
        non_retentive: None,
        sip: 0,
        claimed: 0,
    };
    if typ & NON_RETENTIVE == 0 {
        out.retentive = Some(retentive_suspend(typ));
    } else {
        out.non_retentive = Some(non_retentive_suspend(
            sbi::EID_HSM,
            sbi::HSM_HART_SUSPEND,
            typ,
            OPAQUE,
        ));
    }
    out.sip = csr::sip();
    csr::sie_clear(csr::SSI | csr::STI | csr::SEI);
    timer_off();
    if wake == Wake::External {
        uart_thre_irq(false);
        out.claimed = plic_ack(me);
    }
    if let Some(h) = helper_hart {
        wait_status(p, h, sbi::HART_STOPPED, 3000);
    }
    csr::sip_clear(csr::SSI);
    out
}

fn suspends(p: &Platform, r: &Reporter) {
    let me = hart::hart_id();
    let helper_hart = p.hart_ids().iter().copied().find(|&h| h != me);
    let ferrovisor = util::is_ferrovisor();
    let cases: [(&str, usize, Wake); 7] = [
        ("retentive-timer", RETENTIVE, Wake::Timer),
        ("retentive-ipi", RETENTIVE, Wake::Ipi),
        ("retentive-external", RETENTIVE, Wake::External),
        ("platform-retentive-timer", PLATFORM_RETENTIVE, Wake::Timer),
        ("non-retentive-timer", NON_RETENTIVE, Wake::Timer),
        ("non-retentive-external", NON_RETENTIVE, Wake::External),
        (
            "platform-non-retentive-ipi",
            PLATFORM_NON_RETENTIVE,
            Wake::Ipi,
        ),
    ];
    for (name, typ, wake) in cases {
        // Only under Ferrovisor: the virtual UART/PLIC layout is its own,
        // and platform-specific types are implementation-defined (OpenSBI
        // 1.5 has none on QEMU `virt`).
        let platform_type = typ == PLATFORM_RETENTIVE || typ == PLATFORM_NON_RETENTIVE;
        if (wake == Wake::External || platform_type) && !ferrovisor {
            continue;
        }
        check_suspend(p, r, name, typ, wake, helper_hart);
    }
    // The spec lets a hart resume on any interrupt; Ferrovisor resumes only
    // on ones enabled in `sie` (OpenSBI 1.5 resumes on a masked IPI too).
    if helper_hart.is_some() && ferrovisor {
        check_suspend(
            p,
            r,
            "retentive-ignores-masked-ipi",
            RETENTIVE,
            Wake::TimerAfterMaskedIpi,
            helper_hart,
        );
    }
}

fn check_suspend(
    p: &Platform,
    r: &Reporter,
    name: &str,
    typ: usize,
    wake: Wake,
    helper_hart: Option<usize>,
) {
    let me = hart::hart_id();
    let o = suspend_once(p, typ, wake, helper_hart);
    let mut n = fv_guest_rt::report::Name::new("hsm/suspend-");
    n.push(name);
    let pending_bit = match wake {
        Wake::Timer | Wake::TimerAfterMaskedIpi => csr::STI,
        Wake::Ipi => csr::SSI,
        Wake::External => csr::SEI,
    };
    let woke_by_it = o.sip & pending_bit != 0 || (wake == Wake::External && o.claimed == 10);
    let rescued = RESCUED.load(Ordering::SeqCst) == 1;
    match (o.retentive, o.non_retentive) {
        (Some((ret, intact)), _) => {
            r.check(
                &n,
                ret.error == sbi::SUCCESS && woke_by_it && !rescued,
                format_args!(
                    "returned {ret}, sip {:#x} (wake-up bit {pending_bit:#x}), woken only by the helper's rescue IPI: {rescued}",
                    o.sip
                ),
            );
            n.push("-state-kept");
            r.check(
                &n,
                intact,
                format_args!("registers or sie/stvec/satp/sscratch changed across the suspend"),
            );
        }
        (None, Some(NonRetentive::Resumed(s))) => {
            r.check(
                &n,
                woke_by_it && !rescued,
                format_args!(
                    "sip {:#x} (wake-up bit {pending_bit:#x}), woken only by the helper's rescue IPI: {rescued}",
                    o.sip
                ),
            );
            n.push("-entry-registers");
            r.check(
                &n,
                s.a0 == me
                    && s.a1 == OPAQUE
                    && s.satp == 0
                    && s.sstatus & csr::SSTATUS_SIE == 0
                    && (s.sie & pending_bit != 0 || !util::is_ferrovisor()),
                format_args!(
                    "a0 {:#x} (hart {me}), a1 {:#x} (opaque {OPAQUE:#x}), satp {:#x}, sstatus {:#x} (SIE must be 0), sie {:#x} (Ferrovisor keeps {pending_bit:#x}; the spec leaves it undefined)",
                    s.a0, s.a1, s.satp, s.sstatus, s.sie
                ),
            );
        }
        (None, Some(NonRetentive::Returned(ret))) => {
            r.fail(&n, format_args!("non-retentive suspend returned {ret}"));
        }
        (None, None) => r.fail(&n, format_args!("no suspend made")),
    }
    if helper_hart.is_some() {
        let mut n = fv_guest_rt::report::Name::new("hsm/suspend-");
        n.push(name);
        n.push("-seen-suspended");
        r.check(
            &n,
            SAW_SUSPENDED.load(Ordering::SeqCst) == 1,
            format_args!("the helper hart never read SUSPENDED from hart_get_status({me})"),
        );
        if wake == Wake::TimerAfterMaskedIpi {
            r.check(
                "hsm/suspend-masked-ipi-does-not-wake",
                STAYED.load(Ordering::SeqCst) == 1,
                format_args!("an IPI with SSIE clear ended the suspend"),
            );
        }
    }
}
