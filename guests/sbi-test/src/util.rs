//! Helpers shared by the extension modules: raw suspend calls (retentive with
//! a register check, non-retentive with a resume entry), timers, and the
//! virtual UART's transmit interrupt as an external interrupt source.

use core::arch::{asm, global_asm};
use core::sync::atomic::{AtomicUsize, Ordering};

use fv_guest_rt::sbi::{self, Ret};
use fv_guest_rt::{csr, hart, Platform};

/// `sbi_get_impl_id` of Ferrovisor ("FVR\0"): checks of behaviour the spec
/// leaves to the implementation (which extensions are absent, the virtual
/// devices' layout) run only there.
pub const FERROVISOR_IMPL_ID: usize = 0x4656_5200;

/// True when the SBI underneath is Ferrovisor.
pub fn is_ferrovisor() -> bool {
    sbi::call(sbi::EID_BASE, sbi::BASE_GET_IMPL_ID, [0; 6]).value == FERROVISOR_IMPL_ID
}

/// Extension IDs not in `fv_guest_rt::sbi`.
pub const EID_SUSP: usize = 0x5355_5350;
/// FWFT ("FWFT").
pub const EID_FWFT: usize = 0x4657_4654;
/// DBTR ("DBTR").
pub const EID_DBTR: usize = 0x4442_5452;
/// SBI_ERR_DENIED_LOCKED (SBI v3.0).
pub const ERR_DENIED_LOCKED: isize = -14;

/// One SBI call with only `a0..a2` set.
pub fn call3(eid: usize, fid: usize, a0: usize, a1: usize, a2: usize) -> Ret {
    sbi::call(eid, fid, [a0, a1, a2, 0, 0, 0])
}

/// `sbi_set_timer(now + ms)` (TIME extension).
pub fn timer_in_ms(p: &Platform, ms: u64) {
    let at = csr::time() + csr::ms_to_ticks(ms, p.timebase_hz);
    let _ = call3(sbi::EID_TIME, 0, at as usize, 0, 0);
}

/// Cancels the SBI timer (and clears STIP).
pub fn timer_off() {
    let _ = call3(sbi::EID_TIME, 0, usize::MAX, 0, 0);
}

/// Waits (spinning, at most `ms`) until `hartid`'s HSM state is `state`.
pub fn wait_status(p: &Platform, hartid: usize, state: usize, ms: u64) -> bool {
    let deadline = csr::time() + csr::ms_to_ticks(ms, p.timebase_hz);
    csr::spin_until(deadline, || {
        let r = sbi::hart_get_status(hartid);
        r.error == sbi::SUCCESS && r.value == state
    })
}

/// HSM state SUSPENDED.
pub const HART_SUSPENDED: usize = 4;

/// Values put in registers across a retentive suspend (none is a likely
/// leftover).
const MARK: [usize; 8] = [
    0x1111_2222_3333_4444,
    0x5555_6666_7777_8888,
    0x9999_aaaa_bbbb_cccc,
    0xdddd_eeee_ffff_0001,
    0x0123_4567_89ab_cdef,
    0xfedc_ba98_7654_3210,
    0x0f0f_0f0f_f0f0_f0f0,
    0x7777_0000_7777_0000,
];

/// A retentive `hart_suspend(suspend_type)`. Returns the result and whether
/// every register the SBI calling convention preserves (all but `a0`/`a1`;
/// checked: `t0`-`t2`, `a2`-`a7`, `s2`-`s5`) and `sie`, `stvec`, `sscratch`,
/// `satp` came back unchanged.
pub fn retentive_suspend(suspend_type: usize) -> (Ret, bool) {
    let (sie, stvec, satp) = (csr::sie(), read_stvec(), read_satp());
    let scratch_mark = MARK[0] ^ suspend_type;
    write_sscratch(scratch_mark);
    let (error, value): (isize, usize);
    let (t0, t1, t2, a2, a3, a4, a5, s2, s3, s4, s5): (
        usize,
        usize,
        usize,
        usize,
        usize,
        usize,
        usize,
        usize,
        usize,
        usize,
        usize,
    );
    let (a6, a7): (usize, usize);
    // SAFETY: an SBI call (HSM hart_suspend, retentive): per the SBI calling
    // convention it returns to the next instruction with only a0/a1 changed;
    // every register it may touch is an operand here.
    unsafe {
        asm!(
            "ecall",
            inout("a0") suspend_type => error,
            inout("a1") 0usize => value,
            inout("a2") MARK[1] => a2,
            inout("a3") MARK[2] => a3,
            inout("a4") MARK[3] => a4,
            inout("a5") MARK[4] => a5,
            inout("a6") sbi::HSM_HART_SUSPEND => a6,
            inout("a7") sbi::EID_HSM => a7,
            inout("t0") MARK[5] => t0,
            inout("t1") MARK[6] => t1,
            inout("t2") MARK[7] => t2,
            inout("s2") MARK[0] => s2,
            inout("s3") MARK[1] => s3,
            inout("s4") MARK[2] => s4,
            inout("s5") MARK[3] => s5,
            options(nostack)
        );
    }
    let regs_ok = [a2, a3, a4, a5, t0, t1, t2, s2, s3, s4, s5]
        == [
            MARK[1], MARK[2], MARK[3], MARK[4], MARK[5], MARK[6], MARK[7], MARK[0], MARK[1],
            MARK[2], MARK[3],
        ]
        && a6 == sbi::HSM_HART_SUSPEND
        && a7 == sbi::EID_HSM;
    let csrs_ok = csr::sie() == sie
        && read_stvec() == stvec
        && read_satp() == satp
        && read_sscratch() == scratch_mark;
    (Ret { error, value }, regs_ok && csrs_ok)
}

/// What the non-retentive resume entry saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resumed {
    /// `a0` at entry (must be the hart id).
    pub a0: usize,
    /// `a1` at entry (must be the opaque value).
    pub a1: usize,
    /// `satp` at entry (must be 0).
    pub satp: usize,
    /// `sstatus` at entry (SIE must be 0).
    pub sstatus: usize,
    /// `sie` at entry (the enables the wake-up needed).
    pub sie: usize,
}

/// Result of [`non_retentive_suspend`].
#[derive(Clone, Copy, Debug)]
pub enum NonRetentive {
    /// The call returned (an error).
    Returned(Ret),
    /// The hart resumed at the resume entry.
    Resumed(Resumed),
}

/// Context the resume entry restores (one at a time: used by hart 0 only,
/// or by a single hart the test picks). Layout: see the assembly below.
#[repr(C)]
struct NrCtx {
    /// ra, sp, s0..s11, tp, gp, stvec, sstatus (saved by the suspend call).
    saved: [usize; 18],
    /// fs0..fs11.
    fsaved: [u64; 12],
    /// a0, a1, satp, sstatus, sie (recorded by the resume entry).
    seen: [usize; 5],
}

static mut NR_CTX: NrCtx = NrCtx {
    saved: [0; 18],
    fsaved: [0; 12],
    seen: [0; 5],
};

/// Set while a hart owns [`NR_CTX`].
static NR_BUSY: AtomicUsize = AtomicUsize::new(0);

/// Marker the resume entry returns in `a0` (never an SBI error code).
const RESUMED: isize = 0x7E5E;

global_asm!(
    r#"
    .pushsection .text, "ax", @progbits
    .globl sbi_test_nr_suspend
    .p2align 2
/* a0 = eid, a1 = fid, a2 = type, a3 = opaque. Returns (a0, a1) of the ecall,
   or (RESUMED, 0) through sbi_test_nr_resume. */
sbi_test_nr_suspend:
    la      t0, {ctx}
    sd      ra, 0*8(t0)
    sd      sp, 1*8(t0)
    sd      s0, 2*8(t0)
    sd      s1, 3*8(t0)
    sd      s2, 4*8(t0)
    sd      s3, 5*8(t0)
    sd      s4, 6*8(t0)
    sd      s5, 7*8(t0)
    sd      s6, 8*8(t0)
    sd      s7, 9*8(t0)
    sd      s8, 10*8(t0)
    sd      s9, 11*8(t0)
    sd      s10, 12*8(t0)
    sd      s11, 13*8(t0)
    sd      tp, 14*8(t0)
    sd      gp, 15*8(t0)
    csrr    t1, stvec
    sd      t1, 16*8(t0)
    csrr    t1, sstatus
    sd      t1, 17*8(t0)
    fsd     fs0, 18*8(t0)
    fsd     fs1, 19*8(t0)
    fsd     fs2, 20*8(t0)
    fsd     fs3, 21*8(t0)
    fsd     fs4, 22*8(t0)
    fsd     fs5, 23*8(t0)
    fsd     fs6, 24*8(t0)
    fsd     fs7, 25*8(t0)
    fsd     fs8, 26*8(t0)
    fsd     fs9, 27*8(t0)
    fsd     fs10, 28*8(t0)
    fsd     fs11, 29*8(t0)
    mv      a7, a0
    mv      a6, a1
    mv      a0, a2
    la      a1, sbi_test_nr_resume
    mv      a2, a3
    ecall
    ret

    .globl sbi_test_nr_resume
    .p2align 2
sbi_test_nr_resume:
    la      t0, {ctx}
    sd      a0, 30*8(t0)
    sd      a1, 31*8(t0)
    csrr    t1, satp
    sd      t1, 32*8(t0)
    csrr    t1, sstatus
    sd      t1, 33*8(t0)
    csrr    t1, sie
    sd      t1, 34*8(t0)
    ld      t1, 16*8(t0)
    csrw    stvec, t1
    li      t1, 0x2000
    csrs    sstatus, t1
    ld      ra, 0*8(t0)
    ld      sp, 1*8(t0)
    ld      s0, 2*8(t0)
    ld      s1, 3*8(t0)
    ld      s2, 4*8(t0)
    ld      s3, 5*8(t0)
    ld      s4, 6*8(t0)
    ld      s5, 7*8(t0)
    ld      s6, 8*8(t0)
    ld      s7, 9*8(t0)
    ld      s8, 10*8(t0)
    ld      s9, 11*8(t0)
    ld      s10, 12*8(t0)
    ld      s11, 13*8(t0)
    ld      tp, 14*8(t0)
    ld      gp, 15*8(t0)
    fld     fs0, 18*8(t0)
    fld     fs1, 19*8(t0)
    fld     fs2, 20*8(t0)
    fld     fs3, 21*8(t0)
    fld     fs4, 22*8(t0)
    fld     fs5, 23*8(t0)
    fld     fs6, 24*8(t0)
    fld     fs7, 25*8(t0)
    fld     fs8, 26*8(t0)
    fld     fs9, 27*8(t0)
    fld     fs10, 28*8(t0)
    fld     fs11, 29*8(t0)
    li      a0, {resumed}
    li      a1, 0
    ret
    .popsection
"#,
    ctx = sym NR_CTX,
    resumed = const RESUMED,
);

#[repr(C)]
struct RawRet {
    a0: isize,
    a1: usize,
}

extern "C" {
    fn sbi_test_nr_suspend(eid: usize, fid: usize, typ: usize, opaque: usize) -> RawRet;
    fn sbi_test_nr_resume();
}

/// The resume entry's address (for calls that must reject it elsewhere).
pub fn resume_entry() -> usize {
    sbi_test_nr_resume as *const () as usize
}

/// A non-retentive suspend (`eid`/`fid`: HSM `hart_suspend` or SUSP
/// `system_suspend`) of type `typ` resuming at the test's resume entry with
/// `opaque`. Returns what the call returned, or what the entry saw.
pub fn non_retentive_suspend(eid: usize, fid: usize, typ: usize, opaque: usize) -> NonRetentive {
    while NR_BUSY
        .compare_exchange(0, hart::hart_id() + 1, Ordering::SeqCst, Ordering::SeqCst)
        .is_err()
    {
        core::hint::spin_loop();
    }
    // SAFETY: the assembly saves the callee-saved registers, makes the SBI
    // call and either returns from it or comes back through the resume entry,
    // which restores them (and sp, ra, tp, gp, stvec, FS) before returning
    // here; NR_CTX is owned by this hart (NR_BUSY).
    let r = unsafe { sbi_test_nr_suspend(eid, fid, typ, opaque) };
    let out = if r.a0 == RESUMED {
        // SAFETY: written by the resume entry of this hart; NR_BUSY held.
        let seen = unsafe { (*core::ptr::addr_of!(NR_CTX)).seen };
        NonRetentive::Resumed(Resumed {
            a0: seen[0],
            a1: seen[1],
            satp: seen[2],
            sstatus: seen[3],
            sie: seen[4],
        })
    } else {
        NonRetentive::Returned(Ret {
            error: r.a0,
            value: r.a1,
        })
    };
    NR_BUSY.store(0, Ordering::SeqCst);
    out
}

fn read_stvec() -> usize {
    let v: usize;
    // SAFETY: reading stvec has no side effects.
    unsafe { asm!("csrr {0}, stvec", out(reg) v, options(nomem, nostack)) };
    v
}

fn read_satp() -> usize {
    let v: usize;
    // SAFETY: reading satp has no side effects.
    unsafe { asm!("csrr {0}, satp", out(reg) v, options(nomem, nostack)) };
    v
}

fn read_sscratch() -> usize {
    let v: usize;
    // SAFETY: reading sscratch has no side effects.
    unsafe { asm!("csrr {0}, sscratch", out(reg) v, options(nomem, nostack)) };
    v
}

fn write_sscratch(v: usize) {
    // SAFETY: the runtime does not use sscratch (its trap entry keeps sp).
    unsafe { asm!("csrw sscratch, {0}", in(reg) v, options(nomem, nostack)) };
}

/// Ferrovisor's virtual UART (ns16550a) and PLIC (ARCHITECTURE.md's guest map).
const UART: usize = 0x1000_0000;
const UART_IER: usize = UART + 1;
const UART_IRQ: usize = 10;
const PLIC: usize = 0x0c00_0000;

fn mmio_w8(addr: usize, v: u8) {
    // SAFETY: a device register of the VM's virtual UART.
    unsafe { core::ptr::write_volatile(addr as *mut u8, v) };
}

fn mmio_w32(addr: usize, v: u32) {
    // SAFETY: a register of the VM's virtual PLIC.
    unsafe { core::ptr::write_volatile(addr as *mut u32, v) };
}

fn mmio_r32(addr: usize) -> u32 {
    // SAFETY: a register of the VM's virtual PLIC.
    unsafe { core::ptr::read_volatile(addr as *const u32) }
}

/// Routes the UART's interrupt (PLIC source 10) to `hartid`'s S-mode context
/// (context = hart id under Ferrovisor), priority 1, threshold 0.
pub fn plic_route_uart(hartid: usize) {
    mmio_w32(PLIC + 4 * UART_IRQ, 1);
    mmio_w32(PLIC + 0x2000 + 0x80 * hartid, 1 << UART_IRQ);
    mmio_w32(PLIC + 0x20_0000 + 0x1000 * hartid, 0);
}

/// Enables (or disables) the UART's transmitter-empty interrupt (IER bit 1):
/// with an empty transmitter it raises its line at once.
pub fn uart_thre_irq(on: bool) {
    mmio_w8(UART_IER, if on { 0x2 } else { 0 });
}

/// Claims and completes whatever `hartid`'s PLIC context has pending; turns
/// the UART source off for it. Returns the claimed source (0: none).
pub fn plic_ack(hartid: usize) -> u32 {
    let claim = PLIC + 0x20_0004 + 0x1000 * hartid;
    let src = mmio_r32(claim);
    if src != 0 {
        mmio_w32(claim, src);
    }
    mmio_w32(PLIC + 0x2000 + 0x80 * hartid, 0);
    src
}
