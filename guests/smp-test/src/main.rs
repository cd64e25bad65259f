//! smp-test: secondary harts through SBI HSM, IPIs in both directions and
//! remote fences.
//!
//! With one hart in the DTB only the checks that need no second hart run
//! (status of the boot hart, IPI to itself, fences); with more, every
//! secondary hart (id < MAX_HARTS) is started, reports in, receives and sends
//! IPIs, is stopped and restarted.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicUsize, Ordering};

use fv_guest_rt::report::{name, Name};
use fv_guest_rt::sbi::{self, Ret};
use fv_guest_rt::trap::{self, IRQ_SOFTWARE};
use fv_guest_rt::{csr, hart, hart_id, println, Platform, Reporter, MAX_HARTS};

fv_guest_rt::guest_main!("smp-test", main);

/// How long to wait for another hart to react.
const WAIT_MS: u64 = 2000;

const CMD_NONE: usize = 0;
/// Secondary: call hart_stop.
const CMD_STOP: usize = 1;
/// Secondary: send an IPI to the hart whose id is in `TARGET`.
const CMD_IPI: usize = 2;

/// Arrivals of each hart in `secondary` (counts restarts).
static ARRIVED: [AtomicUsize; MAX_HARTS] = [const { AtomicUsize::new(0) }; MAX_HARTS];
/// Software interrupts taken by each hart.
static IPIS: [AtomicUsize; MAX_HARTS] = [const { AtomicUsize::new(0) }; MAX_HARTS];
/// Command for each secondary.
static CMD: [AtomicUsize; MAX_HARTS] = [const { AtomicUsize::new(CMD_NONE) }; MAX_HARTS];
/// IPIs each secondary sent on command, and the last SBI error of doing so.
static SENT: [AtomicUsize; MAX_HARTS] = [const { AtomicUsize::new(0) }; MAX_HARTS];
static SEND_ERROR: [AtomicUsize; MAX_HARTS] = [const { AtomicUsize::new(0) }; MAX_HARTS];
/// Target hart of CMD_IPI.
static TARGET: AtomicUsize = AtomicUsize::new(0);
/// The `arg` each secondary was started with.
static ARG_SEEN: [AtomicUsize; MAX_HARTS] = [const { AtomicUsize::new(0) }; MAX_HARTS];

fn on_ipi(_irq: usize) {
    if let Some(c) = IPIS.get(hart_id()) {
        c.fetch_add(1, Ordering::SeqCst);
    }
}

fn count(a: &[AtomicUsize; MAX_HARTS], h: usize) -> usize {
    a.get(h).map_or(0, |c| c.load(Ordering::SeqCst))
}

fn send_ipi_to(h: usize) -> Ret {
    sbi::call(sbi::EID_IPI, 0, [1, h, 0, 0, 0, 0])
}

/// Runs on every started secondary: report in, then serve commands; idle in
/// `wfi` with SSIP enabled (IPIs wake it and are counted).
fn secondary(me: usize, arg: usize) {
    if let Some(a) = ARG_SEEN.get(me) {
        a.store(arg, Ordering::SeqCst);
    }
    csr::sie_set(csr::SSI);
    if let Some(a) = ARRIVED.get(me) {
        a.fetch_add(1, Ordering::SeqCst);
    }
    let Some(cmd) = CMD.get(me) else { return };
    loop {
        // Check for work with interrupts masked, then wfi: an IPI arriving in
        // between stays pending and ends the wfi, so no wake-up is lost.
        csr::interrupts_disable();
        match cmd.swap(CMD_NONE, Ordering::SeqCst) {
            CMD_STOP => {
                csr::sie_clear(csr::SSI);
                return; // the runtime calls hart_stop
            }
            CMD_IPI => {
                let ret = send_ipi_to(TARGET.load(Ordering::SeqCst));
                if let Some(e) = SEND_ERROR.get(me) {
                    e.store(ret.error as usize, Ordering::SeqCst);
                }
                if let Some(s) = SENT.get(me) {
                    s.fetch_add(1, Ordering::SeqCst);
                }
            }
            _ => csr::wfi(),
        }
        csr::interrupts_enable();
    }
}

fn deadline(p: &Platform) -> u64 {
    csr::time() + csr::ms_to_ticks(WAIT_MS, p.timebase_hz)
}

/// Gives secondary `h` a command and wakes it with an IPI.
fn command(h: usize, c: usize) -> Ret {
    if let Some(slot) = CMD.get(h) {
        slot.store(c, Ordering::SeqCst);
    }
    send_ipi_to(h)
}

fn main(p: &'static Platform, r: &'static Reporter) {
    let me = p.boot_hart;
    println!(
        "INFO: smp-test: boot hart {me}, harts in DTB {:?}",
        p.hart_ids()
    );
    trap::set_handler(IRQ_SOFTWARE, on_ipi);
    csr::sie_set(csr::SSI);
    csr::interrupts_enable();

    let st = sbi::hart_get_status(me);
    r.check(
        "status-boot-hart-started",
        st.error == sbi::SUCCESS && st.value == sbi::HART_STARTED,
        format_args!("hart_get_status({me}) returned {st}"),
    );
    r.check_sbi_error(
        "hart-start-boot-hart-already-available",
        hart::start(me, secondary, 0),
        sbi::ERR_ALREADY_AVAILABLE,
    );
    let before = count(&IPIS, me);
    let ret = send_ipi_to(me);
    let got = csr::spin_until(deadline(p), || count(&IPIS, me) > before);
    r.check(
        "ipi-self",
        ret.error == sbi::SUCCESS && got,
        format_args!("send_ipi to self returned {ret}, interrupt taken: {got}"),
    );
    fences(r, "all", usize::MAX, 0);
    fences(r, "self", me, 1);

    let secondaries: [Option<usize>; MAX_HARTS] = {
        let mut s = [None; MAX_HARTS];
        let mut n = 0;
        for &h in p.hart_ids() {
            if h == me {
                continue;
            }
            if h >= MAX_HARTS {
                println!("INFO: smp-test: hart {h} has no stack in this runtime (id >= {MAX_HARTS}); not started");
                continue;
            }
            if let Some(slot) = s.get_mut(n) {
                *slot = Some(h);
                n += 1;
            }
        }
        s
    };
    let secs = || secondaries.iter().flatten().copied();
    if secs().next().is_none() {
        println!("INFO: smp-test: only one usable hart: multi-hart checks not run");
        return;
    }

    for h in secs() {
        let st = sbi::hart_get_status(h);
        r.check(
            &name("status-stopped-before-start-hart", h),
            st.error == sbi::SUCCESS && st.value == sbi::HART_STOPPED,
            format_args!("hart_get_status({h}) returned {st}, expected STOPPED (1)"),
        );
    }
    for h in secs() {
        let ret = hart::start(h, secondary, 0x1000 + h);
        r.check_sbi_error(&name("hart-start-hart", h), ret, sbi::SUCCESS);
    }
    for h in secs() {
        let ok = csr::spin_until(deadline(p), || count(&ARRIVED, h) >= 1);
        let arg = count(&ARG_SEEN, h);
        r.check(
            &name("arrived-hart", h),
            ok && arg == 0x1000 + h,
            format_args!(
                "hart {h}: arrived {ok}, saw argument {arg:#x} (expected {:#x})",
                0x1000 + h
            ),
        );
    }
    for h in secs() {
        let st = sbi::hart_get_status(h);
        r.check(
            &name("status-started-hart", h),
            st.error == sbi::SUCCESS && st.value == sbi::HART_STARTED,
            format_args!("hart_get_status({h}) returned {st}, expected STARTED (0)"),
        );
        r.check_sbi_error(
            &name("hart-start-again-hart", h),
            hart::start(h, secondary, 0),
            sbi::ERR_ALREADY_AVAILABLE,
        );
    }

    // IPIs from the boot hart to each secondary, then to all of them at once.
    for h in secs() {
        let before = count(&IPIS, h);
        let ret = send_ipi_to(h);
        let got = csr::spin_until(deadline(p), || count(&IPIS, h) > before);
        r.check(
            &name("ipi-to-hart", h),
            ret.error == sbi::SUCCESS && got,
            format_args!("send_ipi to hart {h} returned {ret}, interrupt taken: {got}"),
        );
    }
    let mut mask = 0usize;
    let mut befores = [0usize; MAX_HARTS];
    for h in secs() {
        mask |= 1 << h;
        if let Some(b) = befores.get_mut(h) {
            *b = count(&IPIS, h);
        }
    }
    let ret = sbi::call(sbi::EID_IPI, 0, [mask, 0, 0, 0, 0, 0]);
    let got = csr::spin_until(deadline(p), || {
        secs().all(|h| count(&IPIS, h) > befores.get(h).copied().unwrap_or(0))
    });
    r.check(
        "ipi-multicast",
        ret.error == sbi::SUCCESS && got,
        format_args!(
            "send_ipi(mask {mask:#x}, base 0) returned {ret}, all interrupts taken: {got}"
        ),
    );

    // IPIs from each secondary to the boot hart.
    TARGET.store(me, Ordering::SeqCst);
    for h in secs() {
        let before = count(&IPIS, me);
        let sent_before = count(&SENT, h);
        let _ = command(h, CMD_IPI);
        let sent = csr::spin_until(deadline(p), || count(&SENT, h) > sent_before);
        let got = csr::spin_until(deadline(p), || count(&IPIS, me) > before);
        let err = count(&SEND_ERROR, h) as isize;
        r.check(
            &name("ipi-from-hart", h),
            sent && err == sbi::SUCCESS && got,
            format_args!("hart {h}: sent {sent} (error {err}), boot hart interrupt taken: {got}"),
        );
    }

    // Fences naming every started hart.
    fences(r, "all-started", usize::MAX, 0);
    let mut all = mask;
    all |= 1 << me;
    fences(r, "mask", 0, all);

    // Stop each secondary from itself, then start it again.
    for h in secs() {
        let _ = command(h, CMD_STOP);
        let mut last = sbi::Ret {
            error: 0,
            value: usize::MAX,
        };
        let stopped = csr::spin_until(deadline(p), || {
            last = sbi::hart_get_status(h);
            last.error == sbi::SUCCESS && last.value == sbi::HART_STOPPED
        });
        r.check(
            &name("hart-stop-hart", h),
            stopped,
            format_args!("hart {h} asked to hart_stop: hart_get_status returned {last}"),
        );
        if !stopped {
            continue;
        }
        let arrived = count(&ARRIVED, h);
        let ret = hart::start(h, secondary, 0x2000 + h);
        let back = csr::spin_until(deadline(p), || count(&ARRIVED, h) > arrived);
        let st = sbi::hart_get_status(h);
        r.check(
            &name("hart-restart-hart", h),
            ret.error == sbi::SUCCESS
                && back
                && count(&ARG_SEEN, h) == 0x2000 + h
                && st.value == sbi::HART_STARTED,
            format_args!("hart_start returned {ret}, arrived again {back}, status {st}"),
        );
        let before = count(&IPIS, h);
        let ret = send_ipi_to(h);
        let got = csr::spin_until(deadline(p), || count(&IPIS, h) > before);
        r.check(
            &name("ipi-after-restart-hart", h),
            ret.error == sbi::SUCCESS && got,
            format_args!("send_ipi to hart {h} returned {ret}, interrupt taken: {got}"),
        );
    }
}

/// remote_fence_i and remote_sfence_vma with (base, mask).
fn fences(r: &Reporter, what: &str, base: usize, mask: usize) {
    let ret = sbi::call(sbi::EID_RFENCE, 0, [mask, base, 0, 0, 0, 0]);
    r.check_sbi_error(&name2("remote-fence-i-", what), ret, sbi::SUCCESS);
    let ret = sbi::call(sbi::EID_RFENCE, 1, [mask, base, 0, usize::MAX, 0, 0]);
    r.check_sbi_error(&name2("remote-sfence-vma-", what), ret, sbi::SUCCESS);
}

fn name2(a: &str, b: &str) -> Name {
    let mut s = Name::new(a);
    s.push(b);
    s
}
