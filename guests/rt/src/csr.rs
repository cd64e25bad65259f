//! S-mode CSR access used by the test guests (RISC-V privileged spec names).

use core::arch::asm;

/// `sip`/`sie` bit 1: supervisor software interrupt (SSIP / SSIE).
pub const SSI: usize = 1 << 1;
/// `sip`/`sie` bit 5: supervisor timer interrupt (STIP / STIE).
pub const STI: usize = 1 << 5;
/// `sip`/`sie` bit 9: supervisor external interrupt (SEIP / SEIE).
pub const SEI: usize = 1 << 9;

/// `sstatus` bit 1: SIE, supervisor interrupts enabled.
pub const SSTATUS_SIE: usize = 1 << 1;

/// CSR number of `stimecmp` (Sstc).
pub const STIMECMP: usize = 0x14D;

// Bit positions pinned to the privileged spec (no host test harness for this
// bare-metal crate, so checked at compile time): sip/sie SSIP/SSIE = bit 1,
// STIP/STIE = bit 5, SEIP/SEIE = bit 9; sstatus.SIE = bit 1.
const _: () = {
    assert!(SSI.count_ones() == 1 && SSI.trailing_zeros() == 1);
    assert!(STI.count_ones() == 1 && STI.trailing_zeros() == 5);
    assert!(SEI.count_ones() == 1 && SEI.trailing_zeros() == 9);
    assert!(SSTATUS_SIE.count_ones() == 1 && SSTATUS_SIE.trailing_zeros() == 1);
    assert!(STIMECMP == 0x14D);
};

/// Reads the `time` CSR (`rdtime`).
#[inline(always)]
pub fn time() -> u64 {
    let t: u64;
    // SAFETY: reading `time` has no side effect beyond a possible trap, which
    // the trap handler reports.
    unsafe { asm!("csrr {0}, time", out(reg) t, options(nomem, nostack)) };
    t
}

/// Reads `sip`.
#[inline(always)]
pub fn sip() -> usize {
    let v: usize;
    // SAFETY: reading `sip` has no side effects.
    unsafe { asm!("csrr {0}, sip", out(reg) v, options(nomem, nostack)) };
    v
}

/// Clears bits in `sip` (only SSIP is writable by S-mode).
#[inline(always)]
pub fn sip_clear(bits: usize) {
    // SAFETY: clearing pending bits only affects interrupt delivery on this hart.
    unsafe { asm!("csrc sip, {0}", in(reg) bits, options(nomem, nostack)) };
}

/// Sets bits in `sip` (only SSIP is writable by S-mode).
#[inline(always)]
pub fn sip_set(bits: usize) {
    // SAFETY: raising SSIP only affects interrupt delivery on this hart.
    unsafe { asm!("csrs sip, {0}", in(reg) bits, options(nomem, nostack)) };
}

/// Reads `sie`.
#[inline(always)]
pub fn sie() -> usize {
    let v: usize;
    // SAFETY: reading `sie` has no side effects.
    unsafe { asm!("csrr {0}, sie", out(reg) v, options(nomem, nostack)) };
    v
}

/// Enables the given interrupts in `sie`.
#[inline(always)]
pub fn sie_set(bits: usize) {
    // SAFETY: enabling interrupt sources; the trap handler dispatches them to
    // registered handlers and reports any without a handler.
    unsafe { asm!("csrs sie, {0}", in(reg) bits, options(nomem, nostack)) };
}

/// Disables the given interrupts in `sie`.
#[inline(always)]
pub fn sie_clear(bits: usize) {
    // SAFETY: disabling interrupt sources is always safe.
    unsafe { asm!("csrc sie, {0}", in(reg) bits, options(nomem, nostack)) };
}

/// Sets `sstatus.SIE`: interrupts enabled in `sie` are now taken.
#[inline(always)]
pub fn interrupts_enable() {
    // SAFETY: see `sie_set`. Not `nomem`: handlers run and touch memory.
    unsafe { asm!("csrsi sstatus, 0x2", options(nostack)) };
}

/// Clears `sstatus.SIE`.
#[inline(always)]
pub fn interrupts_disable() {
    // SAFETY: masking interrupts is always safe.
    unsafe { asm!("csrci sstatus, 0x2", options(nostack)) };
}

/// Reads `sstatus`.
#[inline(always)]
pub fn sstatus() -> usize {
    let v: usize;
    // SAFETY: reading `sstatus` has no side effects.
    unsafe { asm!("csrr {0}, sstatus", out(reg) v, options(nomem, nostack)) };
    v
}

/// Waits for an interrupt (`wfi`). Returns when one is pending in `sip & sie`
/// (even with `sstatus.SIE` clear), or earlier: `wfi` may return at any time.
#[inline(always)]
pub fn wfi() {
    // SAFETY: `wfi` is a hint; with SIE set a pending interrupt is taken by the
    // trap handler.
    unsafe { asm!("wfi", options(nostack)) };
}

/// Reads `stimecmp` (CSR 0x14D, Sstc).
#[inline(always)]
pub fn stimecmp() -> u64 {
    let v: u64;
    // SAFETY: reading `stimecmp` has no side effects; without Sstc it traps.
    unsafe { asm!("csrr {0}, 0x14D", out(reg) v, options(nomem, nostack)) };
    v
}

/// Writes `stimecmp` (CSR 0x14D, Sstc).
#[inline(always)]
pub fn set_stimecmp(v: u64) {
    // SAFETY: programs this hart's timer compare; without Sstc it traps.
    unsafe { asm!("csrw 0x14D, {0}", in(reg) v, options(nomem, nostack)) };
}

/// Reads `scause`.
#[inline(always)]
pub fn scause() -> usize {
    let v: usize;
    // SAFETY: reading `scause` has no side effects.
    unsafe { asm!("csrr {0}, scause", out(reg) v, options(nomem, nostack)) };
    v
}

/// Reads `stval`.
#[inline(always)]
pub fn stval() -> usize {
    let v: usize;
    // SAFETY: reading `stval` has no side effects.
    unsafe { asm!("csrr {0}, stval", out(reg) v, options(nomem, nostack)) };
    v
}

/// `fence` (all memory accesses ordered).
#[inline(always)]
pub fn fence() {
    // SAFETY: a fence only orders memory accesses.
    unsafe { asm!("fence rw, rw", options(nostack)) };
}

/// Converts milliseconds to `time` ticks at `timebase_hz`.
pub fn ms_to_ticks(ms: u64, timebase_hz: u64) -> u64 {
    ms.saturating_mul(timebase_hz) / 1000
}

/// Converts `time` ticks at `timebase_hz` to nanoseconds.
pub fn ticks_to_ns(ticks: u64, timebase_hz: u64) -> u64 {
    if timebase_hz == 0 {
        return 0;
    }
    ((ticks as u128 * 1_000_000_000) / timebase_hz as u128) as u64
}

/// Converts `time` ticks at `timebase_hz` to microseconds.
pub fn ticks_to_us(ticks: u64, timebase_hz: u64) -> u64 {
    if timebase_hz == 0 {
        return 0;
    }
    ((ticks as u128 * 1_000_000) / timebase_hz as u128) as u64
}

/// Spins until `done()` holds or `time` reaches `deadline`; true if `done()`.
pub fn spin_until(deadline: u64, mut done: impl FnMut() -> bool) -> bool {
    loop {
        if done() {
            return true;
        }
        if time() >= deadline {
            return done();
        }
        core::hint::spin_loop();
    }
}
