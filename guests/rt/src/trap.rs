//! S-mode trap handling: expected exceptions, registered interrupt handlers,
//! and a FAIL report for anything else.
//!
//! The trap entry saves every general-purpose register, `sepc` and `sstatus`
//! on the current stack (there is no U-mode, so no stack switch), calls
//! [`trap_rust`], and restores them (with the possibly updated `sepc`).

use core::arch::{asm, global_asm};
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::{csr, println, MAX_HARTS};

/// `scause` bit XLEN-1: the trap is an interrupt.
pub const SCAUSE_INTERRUPT: usize = 1 << 63;

/// Exception code: instruction address misaligned.
pub const INSTRUCTION_MISALIGNED: usize = 0;
/// Exception code: instruction access fault.
pub const INSTRUCTION_ACCESS_FAULT: usize = 1;
/// Exception code: illegal instruction.
pub const ILLEGAL_INSTRUCTION: usize = 2;
/// Exception code: breakpoint.
pub const BREAKPOINT: usize = 3;
/// Exception code: load address misaligned.
pub const LOAD_MISALIGNED: usize = 4;
/// Exception code: load access fault.
pub const LOAD_ACCESS_FAULT: usize = 5;
/// Exception code: store/AMO address misaligned.
pub const STORE_MISALIGNED: usize = 6;
/// Exception code: store/AMO access fault.
pub const STORE_ACCESS_FAULT: usize = 7;
/// Exception code: environment call from S-mode.
pub const ECALL_FROM_S: usize = 9;
/// Exception code: instruction page fault.
pub const INSTRUCTION_PAGE_FAULT: usize = 12;
/// Exception code: load page fault.
pub const LOAD_PAGE_FAULT: usize = 13;
/// Exception code: store/AMO page fault.
pub const STORE_PAGE_FAULT: usize = 15;

/// Interrupt code: supervisor software interrupt.
pub const IRQ_SOFTWARE: usize = 1;
/// Interrupt code: supervisor timer interrupt.
pub const IRQ_TIMER: usize = 5;
/// Interrupt code: supervisor external interrupt.
pub const IRQ_EXTERNAL: usize = 9;

/// Registers saved by the trap entry. `regs[i]` is `x<i>` (`regs[0]` unused,
/// `regs[2]` is `sp` before the trap).
#[repr(C)]
#[derive(Debug)]
pub struct TrapFrame {
    /// x0..x31 at the time of the trap.
    pub regs: [usize; 32],
    /// `sepc`; the handler may change where the trap returns to.
    pub sepc: usize,
    /// `sstatus` at the time of the trap.
    pub sstatus: usize,
}

/// What an expected exception looked like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrapInfo {
    /// `scause` (exception code; the interrupt bit is clear).
    pub scause: usize,
    /// `stval`.
    pub stval: usize,
    /// `sepc`: the faulting instruction.
    pub sepc: usize,
}

impl core::fmt::Display for TrapInfo {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "scause={:#x} stval={:#x} sepc={:#x}",
            self.scause, self.stval, self.sepc
        )
    }
}

global_asm!(
    r#"
    .pushsection .text, "ax", @progbits
    .globl _fv_trap_entry
    .p2align 2
_fv_trap_entry:
    addi    sp, sp, -{frame}
    sd      x1, 1*8(sp)
    sd      x3, 3*8(sp)
    sd      x4, 4*8(sp)
    sd      x5, 5*8(sp)
    sd      x6, 6*8(sp)
    sd      x7, 7*8(sp)
    sd      x8, 8*8(sp)
    sd      x9, 9*8(sp)
    sd      x10, 10*8(sp)
    sd      x11, 11*8(sp)
    sd      x12, 12*8(sp)
    sd      x13, 13*8(sp)
    sd      x14, 14*8(sp)
    sd      x15, 15*8(sp)
    sd      x16, 16*8(sp)
    sd      x17, 17*8(sp)
    sd      x18, 18*8(sp)
    sd      x19, 19*8(sp)
    sd      x20, 20*8(sp)
    sd      x21, 21*8(sp)
    sd      x22, 22*8(sp)
    sd      x23, 23*8(sp)
    sd      x24, 24*8(sp)
    sd      x25, 25*8(sp)
    sd      x26, 26*8(sp)
    sd      x27, 27*8(sp)
    sd      x28, 28*8(sp)
    sd      x29, 29*8(sp)
    sd      x30, 30*8(sp)
    sd      x31, 31*8(sp)
    addi    t0, sp, {frame}
    sd      t0, 2*8(sp)
    sd      zero, 0(sp)
    csrr    t0, sepc
    sd      t0, 32*8(sp)
    csrr    t0, sstatus
    sd      t0, 33*8(sp)
    mv      a0, sp
    call    {handler}
    ld      t0, 33*8(sp)
    csrw    sstatus, t0
    ld      t0, 32*8(sp)
    csrw    sepc, t0
    ld      x1, 1*8(sp)
    ld      x3, 3*8(sp)
    ld      x4, 4*8(sp)
    ld      x5, 5*8(sp)
    ld      x6, 6*8(sp)
    ld      x7, 7*8(sp)
    ld      x8, 8*8(sp)
    ld      x9, 9*8(sp)
    ld      x10, 10*8(sp)
    ld      x11, 11*8(sp)
    ld      x12, 12*8(sp)
    ld      x13, 13*8(sp)
    ld      x14, 14*8(sp)
    ld      x15, 15*8(sp)
    ld      x16, 16*8(sp)
    ld      x17, 17*8(sp)
    ld      x18, 18*8(sp)
    ld      x19, 19*8(sp)
    ld      x20, 20*8(sp)
    ld      x21, 21*8(sp)
    ld      x22, 22*8(sp)
    ld      x23, 23*8(sp)
    ld      x24, 24*8(sp)
    ld      x25, 25*8(sp)
    ld      x26, 26*8(sp)
    ld      x27, 27*8(sp)
    ld      x28, 28*8(sp)
    ld      x29, 29*8(sp)
    ld      x30, 30*8(sp)
    ld      x31, 31*8(sp)
    addi    sp, sp, {frame}
    sret
    .popsection
"#,
    frame = const core::mem::size_of::<TrapFrame>(),
    handler = sym trap_rust,
);

// scause: the interrupt flag is bit XLEN-1 (63 on RV64); exception and
// interrupt codes as in the privileged spec's scause table.
const _: () = {
    assert!(SCAUSE_INTERRUPT.count_ones() == 1 && SCAUSE_INTERRUPT.trailing_zeros() == 63);
    assert!(LOAD_ACCESS_FAULT == 5 && STORE_ACCESS_FAULT == 7 && INSTRUCTION_ACCESS_FAULT == 1);
    assert!(ILLEGAL_INSTRUCTION == 2 && BREAKPOINT == 3 && ECALL_FROM_S == 9);
    assert!(IRQ_SOFTWARE == 1 && IRQ_TIMER == 5 && IRQ_EXTERNAL == 9);
    // An interrupt code is the bit number of its sip/sie bit.
    assert!(1 << IRQ_SOFTWARE == crate::csr::SSI);
    assert!(1 << IRQ_TIMER == crate::csr::STI);
    assert!(1 << IRQ_EXTERNAL == crate::csr::SEI);
};

const _: () = assert!(core::mem::size_of::<TrapFrame>() == 34 * 8);
const _: () = assert!(core::mem::size_of::<TrapFrame>().is_multiple_of(16));

/// Per-hart state of [`expect_trap`].
struct Expect {
    active: AtomicBool,
    taken: AtomicBool,
    count: AtomicUsize,
    scause: AtomicUsize,
    stval: AtomicUsize,
    sepc: AtomicUsize,
}

#[allow(clippy::declare_interior_mutable_const)]
const EXPECT_INIT: Expect = Expect {
    active: AtomicBool::new(false),
    taken: AtomicBool::new(false),
    count: AtomicUsize::new(0),
    scause: AtomicUsize::new(0),
    stval: AtomicUsize::new(0),
    sepc: AtomicUsize::new(0),
};

static EXPECT: [Expect; MAX_HARTS] = [EXPECT_INIT; MAX_HARTS];

/// Interrupt handlers by interrupt code (a `fn(usize)` stored as usize; 0 = none).
static HANDLERS: [AtomicUsize; 16] = [const { AtomicUsize::new(0) }; 16];

/// Runs `f` with exceptions on this hart expected: the first exception `f`
/// causes is recorded and returned, and execution continues after it.
///
/// A faulting load/store/other instruction is skipped (2- or 4-byte
/// encodings); its destination register keeps whatever it held. For an
/// instruction fetch fault (misaligned, access or page fault) there is no
/// instruction to skip: execution resumes at `ra`, so jump to the bad address
/// with a call (`jalr ra, …`), as [`try_exec`] does. Later exceptions inside
/// the same `f` are skipped too; [`expect_trap_count`] tells how many there were.
///
/// Prefer the helpers [`try_load_u64`], [`try_store_u64`], [`try_load_u8`],
/// [`try_exec`], whose faulting instruction is known.
pub fn expect_trap(f: impl FnOnce()) -> Option<TrapInfo> {
    let Some(e) = EXPECT.get(crate::hart_id()) else {
        f();
        return None;
    };
    e.taken.store(false, Ordering::SeqCst);
    e.count.store(0, Ordering::SeqCst);
    e.active.store(true, Ordering::SeqCst);
    f();
    e.active.store(false, Ordering::SeqCst);
    if e.taken.load(Ordering::SeqCst) {
        Some(TrapInfo {
            scause: e.scause.load(Ordering::SeqCst),
            stval: e.stval.load(Ordering::SeqCst),
            sepc: e.sepc.load(Ordering::SeqCst),
        })
    } else {
        None
    }
}

/// Exceptions taken during this hart's last [`expect_trap`].
pub fn expect_trap_count() -> usize {
    EXPECT
        .get(crate::hart_id())
        .map_or(0, |e| e.count.load(Ordering::SeqCst))
}

/// Loads a u64 from `addr` with `ld`: `Ok(value)` or the trap it caused.
pub fn try_load_u64(addr: usize) -> Result<u64, TrapInfo> {
    let mut v: u64 = 0;
    let t = expect_trap(|| {
        // SAFETY: the access may fault; the fault is expected and skipped. The
        // caller picks addresses that are either unbacked or free for tests.
        unsafe { asm!("ld {v}, 0({a})", a = in(reg) addr, v = inout(reg) v, options(nostack)) };
    });
    t.map_or(Ok(v), Err)
}

/// Loads a u32 from `addr` with `lw`: `Ok(value)` or the trap it caused.
pub fn try_load_u32(addr: usize) -> Result<u32, TrapInfo> {
    let mut v: usize = 0;
    let t = expect_trap(|| {
        // SAFETY: as in `try_load_u64`.
        unsafe { asm!("lwu {v}, 0({a})", a = in(reg) addr, v = inout(reg) v, options(nostack)) };
    });
    t.map_or(Ok(v as u32), Err)
}

/// Loads a byte from `addr` with `lbu`: `Ok(value)` or the trap it caused.
pub fn try_load_u8(addr: usize) -> Result<u8, TrapInfo> {
    let mut v: usize = 0;
    let t = expect_trap(|| {
        // SAFETY: as in `try_load_u64`.
        unsafe { asm!("lbu {v}, 0({a})", a = in(reg) addr, v = inout(reg) v, options(nostack)) };
    });
    t.map_or(Ok(v as u8), Err)
}

/// Stores `v` to `addr` with `sd`: `Ok(())` or the trap it caused.
pub fn try_store_u64(addr: usize, v: u64) -> Result<(), TrapInfo> {
    let t = expect_trap(|| {
        // SAFETY: the access may fault; the fault is expected and skipped. The
        // caller picks addresses that are either unbacked or free for tests.
        unsafe { asm!("sd {v}, 0({a})", a = in(reg) addr, v = in(reg) v, options(nostack)) };
    });
    t.map_or(Ok(()), Err)
}

/// Stores `v` to `addr` with `sw`: `Ok(())` or the trap it caused.
pub fn try_store_u32(addr: usize, v: u32) -> Result<(), TrapInfo> {
    let t = expect_trap(|| {
        // SAFETY: as in `try_store_u64`.
        unsafe { asm!("sw {v}, 0({a})", a = in(reg) addr, v = in(reg) v, options(nostack)) };
    });
    t.map_or(Ok(()), Err)
}

/// Jumps to `addr` with `jalr ra`; the code there must return (`ret`) or
/// fault on fetch. `Ok(())` if it returned, else the trap.
pub fn try_exec(addr: usize) -> Result<(), TrapInfo> {
    let t = expect_trap(|| {
        // SAFETY: the jump target either faults on fetch (expected; the handler
        // resumes at `ra`) or is code the caller placed there that returns.
        // All caller-saved registers are declared clobbered.
        unsafe {
            asm!(
                "jalr ra, 0({a})",
                a = in(reg) addr,
                clobber_abi("C"),
            )
        };
    });
    t.map_or(Ok(()), Err)
}

/// Registers `handler` for interrupt code `irq` ([`IRQ_SOFTWARE`],
/// [`IRQ_TIMER`], [`IRQ_EXTERNAL`]), for all harts. The handler gets the
/// interrupt code; software interrupts are acknowledged (SSIP cleared) before
/// it runs, a timer handler must clear the timer itself.
pub fn set_handler(irq: usize, handler: fn(usize)) {
    if let Some(h) = HANDLERS.get(irq) {
        h.store(handler as usize, Ordering::SeqCst);
    }
}

/// Removes the handler for interrupt code `irq`.
pub fn clear_handler(irq: usize) {
    if let Some(h) = HANDLERS.get(irq) {
        h.store(0, Ordering::SeqCst);
    }
}

fn instruction_length(addr: usize) -> usize {
    // SAFETY: `addr` is the `sepc` of an exception that is not a fetch fault,
    // so the instruction there was fetched successfully and is readable code in
    // RAM; 2-byte alignment is guaranteed with the C extension.
    let low = unsafe { core::ptr::read_volatile(addr as *const u16) };
    if low & 0b11 == 0b11 {
        4
    } else {
        2
    }
}

extern "C" fn trap_rust(frame: &mut TrapFrame) {
    let scause = csr::scause();
    let stval = csr::stval();
    if scause & SCAUSE_INTERRUPT != 0 {
        let code = scause & !SCAUSE_INTERRUPT;
        if code == IRQ_SOFTWARE {
            csr::sip_clear(csr::SSI);
        }
        let h = HANDLERS.get(code).map_or(0, |h| h.load(Ordering::SeqCst));
        if h != 0 {
            // SAFETY: only `set_handler` stores non-zero values here, and it
            // stores a `fn(usize)`.
            let f: fn(usize) = unsafe { core::mem::transmute::<usize, fn(usize)>(h) };
            f(code);
            return;
        }
        unexpected(scause, stval, frame.sepc);
    }
    if let Some(e) = EXPECT.get(crate::hart_id()) {
        if e.active.load(Ordering::SeqCst) {
            if !e.taken.load(Ordering::SeqCst) {
                e.scause.store(scause, Ordering::SeqCst);
                e.stval.store(stval, Ordering::SeqCst);
                e.sepc.store(frame.sepc, Ordering::SeqCst);
                e.taken.store(true, Ordering::SeqCst);
            }
            e.count.fetch_add(1, Ordering::SeqCst);
            match scause {
                INSTRUCTION_MISALIGNED | INSTRUCTION_ACCESS_FAULT | INSTRUCTION_PAGE_FAULT => {
                    frame.sepc = frame.regs[1];
                }
                _ => frame.sepc = frame.sepc.wrapping_add(instruction_length(frame.sepc)),
            }
            return;
        }
    }
    unexpected(scause, stval, frame.sepc);
}

fn unexpected(scause: usize, stval: usize, sepc: usize) -> ! {
    println!(
        "FAIL: {}/unexpected-trap: scause={:#x} stval={:#x} sepc={:#x} hart={}",
        crate::guest_name(),
        scause,
        stval,
        sepc,
        crate::hart_id()
    );
    crate::sbi::shutdown(false)
}
