//! Harts: the running hart's id and starting secondary harts through SBI HSM.
//!
//! [`start`] records the function and argument in a per-hart slot and passes
//! the slot's address as HSM's `opaque` value; the secondary entry checks that
//! `a1` really is that address (so an SBI that loses `opaque` is caught), runs
//! the function, and calls `hart_stop` when it returns.

use core::arch::asm;
use core::sync::atomic::{AtomicUsize, Ordering};

use crate::{println, sbi, MAX_HARTS};

/// The running hart's id (kept in `tp` since entry).
#[inline(always)]
pub fn hart_id() -> usize {
    let id: usize;
    // SAFETY: reads `tp`, which the entry code set to the hart id and nothing
    // else writes (no TLS in this runtime).
    unsafe { asm!("mv {0}, tp", out(reg) id, options(nomem, nostack, preserves_flags)) };
    id
}

struct Slot {
    entry: AtomicUsize,
    arg: AtomicUsize,
}

static SLOTS: [Slot; MAX_HARTS] = [const {
    Slot {
        entry: AtomicUsize::new(0),
        arg: AtomicUsize::new(0),
    }
}; MAX_HARTS];

/// Physical address secondary harts must be started at (for raw HSM calls).
pub fn secondary_entry_address() -> usize {
    crate::entry::_fv_secondary_start as *const () as usize
}

/// The `opaque` value [`start`] passes for `hartid` (address of its slot), or
/// `None` if the runtime has no stack for that hart.
pub fn opaque_for(hartid: usize) -> Option<usize> {
    SLOTS.get(hartid).map(|s| s as *const Slot as usize)
}

/// Starts hart `hartid` with SBI `hart_start`; it runs `entry(hartid, arg)`
/// on its own stack and stops itself (`hart_stop`) when `entry` returns.
/// Returns the SBI result; harts without a stack (id >= [`MAX_HARTS`]) get
/// `ERR_INVALID_PARAM` without an SBI call.
pub fn start(hartid: usize, entry: fn(usize, usize), arg: usize) -> sbi::Ret {
    let (Some(slot), Some(opaque)) = (SLOTS.get(hartid), opaque_for(hartid)) else {
        return sbi::Ret {
            error: sbi::ERR_INVALID_PARAM,
            value: 0,
        };
    };
    slot.entry.store(entry as usize, Ordering::SeqCst);
    slot.arg.store(arg, Ordering::SeqCst);
    sbi::call(
        sbi::EID_HSM,
        sbi::HSM_HART_START,
        [hartid, secondary_entry_address(), opaque, 0, 0, 0],
    )
}

/// SBI `hart_stop` of the running hart; returns only on failure.
pub fn stop() -> sbi::Ret {
    sbi::call(sbi::EID_HSM, sbi::HSM_HART_STOP, [0; 6])
}

/// `opaque` value for tests that must never see a hart (re)start, e.g. as the
/// resume opaque of a non-retentive suspend the SBI should reject: a hart
/// entering with it reports `FAIL: <guest>/unexpected-hart-entry` and ends the
/// run.
pub const UNEXPECTED_ENTRY_OPAQUE: usize = 0x5EC0_DEAD;

/// Rust side of `_fv_secondary_start` (a0 = hart id, a1 = opaque).
pub(crate) extern "C" fn secondary_rust(hartid: usize, opaque: usize) -> ! {
    if opaque == UNEXPECTED_ENTRY_OPAQUE {
        crate::report::reporter().fail(
            "unexpected-hart-entry",
            format_args!("hart {hartid} entered the secondary entry with the never-start opaque"),
        );
        crate::report::reporter().finish();
    }
    match (SLOTS.get(hartid), opaque_for(hartid)) {
        (Some(slot), Some(expected)) if opaque == expected => {
            let e = slot.entry.load(Ordering::SeqCst);
            let arg = slot.arg.load(Ordering::SeqCst);
            if e != 0 {
                // SAFETY: only `start` stores non-zero values in `entry`, and it
                // stores a `fn(usize, usize)`.
                let f: fn(usize, usize) = unsafe { core::mem::transmute::<usize, fn(usize, usize)>(e) };
                f(hartid, arg);
            } else {
                println!(
                    "FAIL: {}/secondary-entry: hart {hartid} started with no entry function",
                    crate::guest_name()
                );
            }
        }
        _ => println!(
            "FAIL: {}/secondary-entry: hart {hartid} started with opaque {opaque:#x}, expected {:#x}",
            crate::guest_name(),
            opaque_for(hartid).unwrap_or(0)
        ),
    }
    let r = stop();
    println!(
        "FAIL: {}/secondary-stop: hart_stop on hart {hartid} returned {r}",
        crate::guest_name()
    );
    loop {
        crate::csr::interrupts_disable();
        crate::csr::wfi();
    }
}
