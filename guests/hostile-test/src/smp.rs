//! `ipi`: an IPI storm among this VM's vCPUs; `hsm`: hart state management
//! abuse.

use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use fv_guest_rt::hart::{self, UNEXPECTED_ENTRY_OPAQUE};
use fv_guest_rt::sbi::{self, Ret};
use fv_guest_rt::{csr, hart_id, println};

use crate::{breach, in_ram, ms, plat, secondaries, strict, wait_stopped, Phase};

// ---------------------------------------------------------------------------
// IPI storm.

static STORM_TICKS: AtomicU64 = AtomicU64::new(0);
static IPI_SENT: AtomicUsize = AtomicUsize::new(0);
static IPI_ERRORS: AtomicUsize = AtomicUsize::new(0);
static IPI_RECEIVED: AtomicUsize = AtomicUsize::new(0);

/// Counts a software interrupt (the IRQ handler).
pub fn count_ipi() {
    IPI_RECEIVED.fetch_add(1, Ordering::Relaxed);
}

/// Sets the storm length and clears the counters (boot vCPU, before the phase).
pub fn storm_prepare(storm_ms: u64) {
    STORM_TICKS.store(ms(storm_ms), Ordering::SeqCst);
    IPI_SENT.store(0, Ordering::SeqCst);
    IPI_ERRORS.store(0, Ordering::SeqCst);
    IPI_RECEIVED.store(0, Ordering::SeqCst);
}

/// This vCPU's storm: IPIs to one hart, the others, all (broadcast), itself,
/// with software interrupts enabled, for the storm length.
pub fn storm() {
    let p = plat();
    let me = hart_id();
    let ids = p.hart_ids();
    let all: usize = ids
        .iter()
        .filter(|&&h| h < 64)
        .fold(0, |m, &h| m | (1 << h));
    let others = all & !(1usize << (me % 64));
    let mut rng = crate::stream(Phase::Ipi);
    let (mut sent, mut errors) = (0usize, 0usize);
    csr::sie_set(csr::SSI);
    csr::interrupts_enable();
    let end = csr::time() + STORM_TICKS.load(Ordering::SeqCst);
    while csr::time() < end {
        let (mask, base) = match rng.below(5) {
            0 => (1, rng.pick(ids).unwrap_or(me)),
            1 => (others, 0),
            2 => (0, usize::MAX),
            3 => (1, me),
            _ => (all, 0),
        };
        let r = sbi::call(sbi::EID_IPI, 0, [mask, base, 0, 0, 0, 0]);
        if r.error == sbi::SUCCESS {
            sent += 1;
        } else {
            errors += 1;
        }
    }
    csr::interrupts_disable();
    csr::sie_clear(csr::SSI);
    csr::sip_clear(csr::SSI);
    IPI_SENT.fetch_add(sent, Ordering::SeqCst);
    IPI_ERRORS.fetch_add(errors, Ordering::SeqCst);
}

/// Prints the `ipi` progress line.
pub fn report_storm(round: usize, vcpus: usize, finished: usize) {
    println!(
        "INFO: hostile-test: phase ipi done: round {round}, {finished}/{vcpus} vCPUs, {} send_ipi calls succeeded, {} failed, {} software interrupts taken",
        IPI_SENT.load(Ordering::SeqCst),
        IPI_ERRORS.load(Ordering::SeqCst),
        IPI_RECEIVED.load(Ordering::SeqCst),
    );
}

// ---------------------------------------------------------------------------
// HSM abuse.

/// Secondary arrivals (every start that ran).
static ARRIVALS: AtomicUsize = AtomicUsize::new(0);
/// Successful `hart_start` calls (by any hart).
static STARTS_OK: AtomicUsize = AtomicUsize::new(0);
/// `hart_start` calls refused.
static STARTS_REFUSED: AtomicUsize = AtomicUsize::new(0);
/// Harts parked in `park`.
static PARKED: AtomicUsize = AtomicUsize::new(0);
/// Lets parked harts return (and stop).
static RELEASE: AtomicBool = AtomicBool::new(false);
/// Results that differ from what the SBI spec (and Ferrovisor) give.
static UNEXPECTED: AtomicUsize = AtomicUsize::new(0);

/// Start/stop rounds per secondary.
const LOOPS: usize = 25;

fn park(_me: usize, _arg: usize) {
    ARRIVALS.fetch_add(1, Ordering::SeqCst);
    PARKED.fetch_add(1, Ordering::SeqCst);
    while !RELEASE.load(Ordering::SeqCst) {
        core::hint::spin_loop();
    }
}

/// Arrives and stops again; with `arg` = 1 + a hart id, first races to start
/// that hart too.
fn quick(_me: usize, arg: usize) {
    ARRIVALS.fetch_add(1, Ordering::SeqCst);
    if let Some(target) = arg.checked_sub(1) {
        count_start(hart::start(target, quick, 0));
    }
}

fn count_start(r: Ret) {
    if r.error == sbi::SUCCESS {
        STARTS_OK.fetch_add(1, Ordering::SeqCst);
    } else {
        STARTS_REFUSED.fetch_add(1, Ordering::SeqCst);
    }
}

/// Notes a result the spec does not allow (INFO line for the first few).
fn expect(what: core::fmt::Arguments<'_>, got: Ret, allowed: &[isize]) {
    if !strict() || allowed.contains(&got.error) {
        return;
    }
    if UNEXPECTED.fetch_add(1, Ordering::SeqCst) < 5 {
        println!("INFO: hostile-test: hsm: {what} returned {got}, expected error in {allowed:?}");
    }
}

/// Raw `hart_start`: the runtime's secondary entry with the never-start
/// opaque, so a start that should have been refused but ran is reported by the
/// runtime (`unexpected-hart-entry`).
fn raw_start(h: usize, addr: usize) -> Ret {
    sbi::call(
        sbi::EID_HSM,
        sbi::HSM_HART_START,
        [h, addr, UNEXPECTED_ENTRY_OPAQUE, 0, 0, 0],
    )
}

fn suspend(ty: usize, resume: usize) -> Ret {
    sbi::call(
        sbi::EID_HSM,
        sbi::HSM_HART_SUSPEND,
        [ty, resume, UNEXPECTED_ENTRY_OPAQUE, 0, 0, 0],
    )
}

/// Waits until every secondary is STOPPED and every successful start has
/// arrived (10 s at most); false if not.
fn quiesce() -> bool {
    csr::spin_until(csr::time() + ms(10_000), || {
        secondaries().all(|h| {
            let st = sbi::hart_get_status(h);
            st.error == sbi::SUCCESS && st.value == sbi::HART_STOPPED
        }) && ARRIVALS.load(Ordering::SeqCst) == STARTS_OK.load(Ordering::SeqCst)
    })
}

/// Arms the timer `ms_from_now` out with STIE enabled (interrupts masked), so
/// a suspend that was accepted against expectations wakes up again.
fn arm_wakeup(ms_from_now: u64) {
    csr::sie_set(csr::STI);
    let _ = sbi::call(
        sbi::EID_TIME,
        0,
        [(csr::time() + ms(ms_from_now)) as usize, 0, 0, 0, 0, 0],
    );
}

fn disarm_wakeup() {
    let _ = sbi::call(sbi::EID_TIME, 0, [usize::MAX, 0, 0, 0, 0, 0]);
    csr::sie_clear(csr::STI);
}

/// The `hsm` phase (boot vCPU; secondaries run `park` and `quick`).
pub fn hsm_phase(round: usize) {
    let p = plat();
    let me = p.boot_hart;
    let ram = p.ram;
    let valid_entry = hart::secondary_entry_address();
    ARRIVALS.store(0, Ordering::SeqCst);
    STARTS_OK.store(0, Ordering::SeqCst);
    STARTS_REFUSED.store(0, Ordering::SeqCst);
    UNEXPECTED.store(0, Ordering::SeqCst);
    for h in secondaries() {
        wait_stopped(h);
    }

    // Status of every hart and of ids that do not exist.
    for &h in p.hart_ids() {
        let r = sbi::hart_get_status(h);
        expect(format_args!("hart_get_status({h})"), r, &[sbi::SUCCESS]);
    }
    let absent = p.absent_hart_id();
    let bad_ids = [absent, absent + 7, 1 << 32, usize::MAX];
    for h in bad_ids {
        let r = sbi::hart_get_status(h);
        expect(
            format_args!("hart_get_status({h:#x})"),
            r,
            &[sbi::ERR_INVALID_PARAM],
        );
        let r = raw_start(h, valid_entry);
        expect(
            format_args!("hart_start({h:#x})"),
            r,
            &[sbi::ERR_INVALID_PARAM],
        );
    }

    // Start the running boot hart, again and again.
    for _ in 0..20 {
        let r = raw_start(me, valid_entry);
        count_start(r);
        expect(
            format_args!("hart_start(self)"),
            r,
            &[sbi::ERR_ALREADY_AVAILABLE],
        );
    }

    // Park the others, then hammer hart_start on them while they run.
    RELEASE.store(false, Ordering::SeqCst);
    PARKED.store(0, Ordering::SeqCst);
    let mut parked = 0;
    for h in secondaries() {
        let r = hart::start(h, park, 0);
        count_start(r);
        if r.error == sbi::SUCCESS {
            parked += 1;
        }
    }
    csr::spin_until(csr::time() + ms(10_000), || {
        PARKED.load(Ordering::SeqCst) >= parked
    });
    for _ in 0..20 {
        for h in secondaries() {
            let r = raw_start(h, valid_entry);
            count_start(r);
            expect(
                format_args!("hart_start({h}) of a started hart"),
                r,
                &[sbi::ERR_ALREADY_AVAILABLE],
            );
        }
    }
    RELEASE.store(true, Ordering::SeqCst);
    quiesce();

    // Start/stop loops; every started hart races to start another one.
    let others: [usize; fv_guest_rt::MAX_HARTS] = {
        let mut a = [0; fv_guest_rt::MAX_HARTS];
        for (slot, h) in a.iter_mut().zip(secondaries()) {
            *slot = h;
        }
        a
    };
    let nothers = secondaries().count();
    let list = others.get(..nothers).unwrap_or(&[]);
    let mut rng = crate::stream(Phase::Hsm);
    let mut lost = false;
    for _ in 0..LOOPS {
        for &h in list {
            let chain = if rng.one_in(2) {
                rng.pick(list).map_or(0, |t| t + 1)
            } else {
                0
            };
            count_start(hart::start(h, quick, chain));
            count_start(hart::start(h, quick, 0));
        }
        if !quiesce() {
            lost = true;
            break;
        }
    }
    if lost {
        println!(
            "INFO: hostile-test: hsm: after start/stop loops {} starts succeeded but {} arrived, or a hart did not stop",
            STARTS_OK.load(Ordering::SeqCst),
            ARRIVALS.load(Ordering::SeqCst)
        );
        if strict() {
            UNEXPECTED.fetch_add(1, Ordering::SeqCst);
        }
    }

    // hart_start at addresses that are not this VM's RAM.
    if strict() {
        let bad_addrs = [
            0,
            2,
            0x1000,
            0x0010_0000,
            0x0200_0000,
            0x0c00_0000,
            0x1000_0000,
            ram.start - 2,
            ram.end - 1,
            ram.end,
            ram.end + 0x1000,
            1 << 41,
            1 << 63,
            usize::MAX - 1,
            usize::MAX,
            rng.word() | (1 << 62),
        ];
        for &h in list {
            for a in bad_addrs {
                let r = raw_start(h, a);
                count_start(r);
                if r.error == sbi::SUCCESS {
                    breach(
                        "hart-start-outside-ram-accepted",
                        format_args!("hart_start({h}, {a:#x}) returned {r}"),
                    );
                }
                expect(
                    format_args!("hart_start({h}, {a:#x})"),
                    r,
                    &[sbi::ERR_INVALID_ADDRESS],
                );
                let st = sbi::hart_get_status(h);
                if st.value != sbi::HART_STOPPED {
                    breach(
                        "hart-start-outside-ram-state",
                        format_args!(
                            "hart {h} is in state {} after hart_start({h}, {a:#x}) returned {r}",
                            st.value
                        ),
                    );
                    wait_stopped(h);
                }
            }
        }
        for a in bad_addrs {
            let r = raw_start(me, a);
            expect(
                format_args!("hart_start(self, {a:#x})"),
                r,
                &[sbi::ERR_ALREADY_AVAILABLE, sbi::ERR_INVALID_ADDRESS],
            );
        }
    }

    // Suspend with reserved and platform-specific types (a timer is armed
    // so that an accepted retentive suspend still ends).
    let reserved_types: [usize; 6] = [
        1,
        2,
        0x0fff_ffff,
        0x8000_0001,
        0x8fff_ffff,
        0xdead_0000_0000_0007,
    ];
    for ty in reserved_types {
        arm_wakeup(20);
        let r = suspend(ty, valid_entry);
        disarm_wakeup();
        expect(
            format_args!("hart_suspend({ty:#x})"),
            r,
            &[sbi::ERR_INVALID_PARAM],
        );
    }
    if strict() {
        // Platform-specific retentive types behave as the default one under
        // Ferrovisor: the armed timer ends them. (Non-retentive ones would
        // resume at the entry with the never-start opaque: not tried here.)
        for ty in [0x1000_0000usize, 0x7fff_ffff] {
            arm_wakeup(20);
            let r = suspend(ty, valid_entry);
            disarm_wakeup();
            expect(format_args!("hart_suspend({ty:#x})"), r, &[sbi::SUCCESS]);
        }
        // Non-retentive suspend resuming outside RAM.
        for a in [
            0,
            0x1000_0000,
            ram.start - 2,
            ram.end,
            ram.end - 1,
            usize::MAX,
        ] {
            if in_ram(a, 2) {
                continue;
            }
            arm_wakeup(20);
            let r = suspend(0x8000_0000, a);
            disarm_wakeup();
            expect(
                format_args!("non-retentive hart_suspend resuming at {a:#x}"),
                r,
                &[sbi::ERR_INVALID_ADDRESS],
            );
        }
    }

    // A retentive suspend the timer ends.
    let fired = crate::TIMER_IRQS.load(Ordering::SeqCst);
    arm_wakeup(5);
    let r = suspend(0, 0);
    let woke_pending = csr::sip() & csr::STI != 0;
    // Take the timer interrupt (its handler silences the timer).
    csr::interrupts_enable();
    csr::interrupts_disable();
    disarm_wakeup();
    expect(format_args!("retentive hart_suspend"), r, &[sbi::SUCCESS]);
    let took = crate::TIMER_IRQS.load(Ordering::SeqCst) - fired;

    println!(
        "INFO: hostile-test: phase hsm done: round {round}, {} starts succeeded, {} arrived, {} refused, retentive suspend returned {} (timer pending {woke_pending}, taken {took}), {} unexpected results",
        STARTS_OK.load(Ordering::SeqCst),
        ARRIVALS.load(Ordering::SeqCst),
        STARTS_REFUSED.load(Ordering::SeqCst),
        sbi::error_name(r.error),
        UNEXPECTED.load(Ordering::SeqCst)
    );
}
