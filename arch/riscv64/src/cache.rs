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

/// Copies `len` bytes from `src` to `dst` 64 bytes (eight 64-bit loads, then
/// eight stores) per loop step. `memcpy`'s word loop costs about 5
/// instructions per 8 bytes, this about 2.4, which matters under emulation
/// for the tens of MiB of images copied before a guest's first instruction.
///
/// # Safety
/// Both ranges must be 8-byte aligned memory the caller may read (`src`) and
/// owns (`dst`), not overlapping; `len` must be a multiple of 64.
pub unsafe fn copy_blocks(dst: u64, src: u64, len: u64) {
    let (d, s) = (dst as *mut u64, src as *const u64);
    let mut i = 0usize;
    let n = (len / 8) as usize;
    while i + 8 <= n {
        // SAFETY: i + 8 <= len / 8 words of both ranges, per the contract.
        // Volatile keeps the compiler from turning the loop back into a
        // word-at-a-time `memcpy` call.
        unsafe {
            let (s, d) = (s.add(i), d.add(i));
            let (w0, w1, w2, w3) = (
                s.read_volatile(),
                s.add(1).read_volatile(),
                s.add(2).read_volatile(),
                s.add(3).read_volatile(),
            );
            let (w4, w5, w6, w7) = (
                s.add(4).read_volatile(),
                s.add(5).read_volatile(),
                s.add(6).read_volatile(),
                s.add(7).read_volatile(),
            );
            d.write_volatile(w0);
            d.add(1).write_volatile(w1);
            d.add(2).write_volatile(w2);
            d.add(3).write_volatile(w3);
            d.add(4).write_volatile(w4);
            d.add(5).write_volatile(w5);
            d.add(6).write_volatile(w6);
            d.add(7).write_volatile(w7);
        }
        i += 8;
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
