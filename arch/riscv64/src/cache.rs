//! Zeroing memory fast. Guest RAM is zeroed in 2 MiB chunks on first touch;
//! with Zicboz one `cbo.zero` clears a whole cache block (64 bytes on QEMU), an
//! order of magnitude fewer instructions than stores under emulation.

use core::arch::asm;

/// Zeroes `[addr, addr + len)` with `cbo.zero`, `block` bytes at a time.
///
/// # Safety
/// The range must be writable memory owned by the caller, `addr` and `len`
/// multiples of `block`, and `block` the hart's Zicboz block size with
/// `cbo.zero` enabled for S-mode (probe with [`probe_cbo_zero`]).
pub unsafe fn cbo_zero(addr: u64, len: u64, block: u64) {
    let mut a = addr;
    let end = addr.saturating_add(len);
    while a < end {
        // SAFETY: the caller owns [addr, addr+len) and a is block-aligned within it.
        unsafe {
            asm!(".option push", ".option arch, +zicboz", "cbo.zero ({0})", ".option pop", in(reg) a, options(nostack))
        };
        a += block;
    }
}

/// Zeroes `[addr, addr + len)` with 64-bit stores.
///
/// # Safety
/// The range must be writable memory owned by the caller, 8-byte aligned.
pub unsafe fn store_zero(addr: u64, len: u64) {
    let p = addr as *mut u64;
    for i in 0..(len / 8) as usize {
        // SAFETY: the caller owns the range; i < len / 8.
        unsafe { p.add(i).write_volatile(0) };
    }
}

/// Whether `cbo.zero` works in S-mode here: executes it on `scratch` (one
/// block the caller owns) with a trap guard.
///
/// # Safety
/// `scratch` must be a writable, `block`-aligned block owned by the caller.
pub unsafe fn probe_cbo_zero(scratch: u64) -> bool {
    let failed: u64;
    // SAFETY: stvec points at local label 3 only around the one cbo.zero and is
    // restored on both paths; interrupts are masked, so only its own
    // illegal-instruction fault can land there. The caller owns `scratch`.
    unsafe {
        asm!(
            ".option push",
            ".option arch, +zicboz",
            "la {tmp}, 3f",
            "csrrw {old}, stvec, {tmp}",
            "li {failed}, 0",
            "cbo.zero ({addr})",
            "j 4f",
            ".balign 4",
            "3:",
            "li {failed}, 1",
            "4:",
            "csrw stvec, {old}",
            ".option pop",
            tmp = out(reg) _,
            old = out(reg) _,
            failed = out(reg) failed,
            addr = in(reg) scratch,
            options(nostack)
        );
    }
    failed == 0
}
