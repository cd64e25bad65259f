//! The world switch: enter VS-mode from HS-mode and come back on the next trap.
//!
//! [`enter_guest`] saves the hypervisor's callee-saved registers in the
//! [`SwitchContext`], swaps `sstatus`, `hstatus`, `stvec` and `sscratch`, loads all
//! guest GPRs and executes `sret` into the guest. While the guest runs, `stvec`
//! points at `__fv_guest_exit` and `sscratch` at the context, so the first trap
//! (an exception the guest may not handle itself, or a host interrupt) saves every
//! guest GPR, restores the hypervisor's CSRs and registers, records the trap CSRs
//! and returns from [`enter_guest`] as if it were an ordinary call.

use core::arch::global_asm;
use core::mem::offset_of;

/// Guest registers kept across exits.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct GuestRegs {
    /// x0..x31 (x0 is never loaded).
    pub x: [u64; 32],
    /// Guest pc (sepc while the guest is out).
    pub sepc: u64,
    /// HS `sstatus` to run the guest with (SPP = guest privilege, FS).
    pub sstatus: u64,
    /// `hstatus` to run the guest with (SPV = 1, VSXL, VTW ...).
    pub hstatus: u64,
}

/// Hypervisor state saved while a guest runs.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct HostRegs {
    /// ra, sp, gp, tp, s0..s11 (indexed by register number; others unused).
    pub x: [u64; 32],
    /// The hypervisor's `sstatus`.
    pub sstatus: u64,
    /// The hypervisor's `hstatus`.
    pub hstatus: u64,
    /// The hypervisor's `stvec`.
    pub stvec: u64,
    /// The hypervisor's `sscratch`.
    pub sscratch: u64,
}

/// Trap CSRs recorded at the exit.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct TrapCsrs {
    /// `scause`.
    pub scause: u64,
    /// `stval`.
    pub stval: u64,
    /// `htval` (guest physical address >> 2 on guest-page faults).
    pub htval: u64,
    /// `htinst` (transformed instruction).
    pub htinst: u64,
}

/// Everything the world switch reads and writes. `#[repr(C)]`: the assembly
/// below addresses fields through `offset_of!` constants.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SwitchContext {
    /// Guest side.
    pub guest: GuestRegs,
    /// Hypervisor side.
    pub host: HostRegs,
    /// Trap CSRs of the last exit.
    pub trap: TrapCsrs,
}

const G_X: usize = offset_of!(SwitchContext, guest) + offset_of!(GuestRegs, x);
const G_SEPC: usize = offset_of!(SwitchContext, guest) + offset_of!(GuestRegs, sepc);
const G_SSTATUS: usize = offset_of!(SwitchContext, guest) + offset_of!(GuestRegs, sstatus);
const G_HSTATUS: usize = offset_of!(SwitchContext, guest) + offset_of!(GuestRegs, hstatus);
const H_X: usize = offset_of!(SwitchContext, host) + offset_of!(HostRegs, x);
const H_SSTATUS: usize = offset_of!(SwitchContext, host) + offset_of!(HostRegs, sstatus);
const H_HSTATUS: usize = offset_of!(SwitchContext, host) + offset_of!(HostRegs, hstatus);
const H_STVEC: usize = offset_of!(SwitchContext, host) + offset_of!(HostRegs, stvec);
const H_SSCRATCH: usize = offset_of!(SwitchContext, host) + offset_of!(HostRegs, sscratch);
const T_SCAUSE: usize = offset_of!(SwitchContext, trap) + offset_of!(TrapCsrs, scause);
const T_STVAL: usize = offset_of!(SwitchContext, trap) + offset_of!(TrapCsrs, stval);
const T_HTVAL: usize = offset_of!(SwitchContext, trap) + offset_of!(TrapCsrs, htval);
const T_HTINST: usize = offset_of!(SwitchContext, trap) + offset_of!(TrapCsrs, htinst);

global_asm!(
    ".option push",
    ".option arch, +h",
    ".section .text.fv_switch",
    ".global __fv_enter_guest",
    "__fv_enter_guest:",
    // Save the hypervisor's callee-saved registers (and ra, sp, gp, tp).
    "sd ra,  {hx}+1*8(a0)",
    "sd sp,  {hx}+2*8(a0)",
    "sd gp,  {hx}+3*8(a0)",
    "sd tp,  {hx}+4*8(a0)",
    "sd s0,  {hx}+8*8(a0)",
    "sd s1,  {hx}+9*8(a0)",
    "sd s2,  {hx}+18*8(a0)",
    "sd s3,  {hx}+19*8(a0)",
    "sd s4,  {hx}+20*8(a0)",
    "sd s5,  {hx}+21*8(a0)",
    "sd s6,  {hx}+22*8(a0)",
    "sd s7,  {hx}+23*8(a0)",
    "sd s8,  {hx}+24*8(a0)",
    "sd s9,  {hx}+25*8(a0)",
    "sd s10, {hx}+26*8(a0)",
    "sd s11, {hx}+27*8(a0)",
    // Swap in the guest's sstatus/hstatus/sepc, point stvec and sscratch at the exit path.
    "ld t0, {gsstatus}(a0)",
    "ld t1, {ghstatus}(a0)",
    "ld t2, {gsepc}(a0)",
    "la t3, __fv_guest_exit",
    "csrrw t0, sstatus, t0",
    "csrrw t1, hstatus, t1",
    "csrw sepc, t2",
    "csrrw t3, stvec, t3",
    "csrrw t4, sscratch, a0",
    "sd t0, {hsstatus}(a0)",
    "sd t1, {hhstatus}(a0)",
    "sd t3, {hstvec}(a0)",
    "sd t4, {hsscratch}(a0)",
    // Load the guest's GPRs, a0 last.
    "ld ra,  {gx}+1*8(a0)",
    "ld sp,  {gx}+2*8(a0)",
    "ld gp,  {gx}+3*8(a0)",
    "ld tp,  {gx}+4*8(a0)",
    "ld t0,  {gx}+5*8(a0)",
    "ld t1,  {gx}+6*8(a0)",
    "ld t2,  {gx}+7*8(a0)",
    "ld s0,  {gx}+8*8(a0)",
    "ld s1,  {gx}+9*8(a0)",
    "ld a1,  {gx}+11*8(a0)",
    "ld a2,  {gx}+12*8(a0)",
    "ld a3,  {gx}+13*8(a0)",
    "ld a4,  {gx}+14*8(a0)",
    "ld a5,  {gx}+15*8(a0)",
    "ld a6,  {gx}+16*8(a0)",
    "ld a7,  {gx}+17*8(a0)",
    "ld s2,  {gx}+18*8(a0)",
    "ld s3,  {gx}+19*8(a0)",
    "ld s4,  {gx}+20*8(a0)",
    "ld s5,  {gx}+21*8(a0)",
    "ld s6,  {gx}+22*8(a0)",
    "ld s7,  {gx}+23*8(a0)",
    "ld s8,  {gx}+24*8(a0)",
    "ld s9,  {gx}+25*8(a0)",
    "ld s10, {gx}+26*8(a0)",
    "ld s11, {gx}+27*8(a0)",
    "ld t3,  {gx}+28*8(a0)",
    "ld t4,  {gx}+29*8(a0)",
    "ld t5,  {gx}+30*8(a0)",
    "ld t6,  {gx}+31*8(a0)",
    "ld a0,  {gx}+10*8(a0)",
    "sret",
    "",
    ".balign 4",
    ".global __fv_guest_exit",
    "__fv_guest_exit:",
    // a0 <- context, sscratch <- guest a0.
    "csrrw a0, sscratch, a0",
    "sd ra,  {gx}+1*8(a0)",
    "sd sp,  {gx}+2*8(a0)",
    "sd gp,  {gx}+3*8(a0)",
    "sd tp,  {gx}+4*8(a0)",
    "sd t0,  {gx}+5*8(a0)",
    "sd t1,  {gx}+6*8(a0)",
    "sd t2,  {gx}+7*8(a0)",
    "sd s0,  {gx}+8*8(a0)",
    "sd s1,  {gx}+9*8(a0)",
    "sd a1,  {gx}+11*8(a0)",
    "sd a2,  {gx}+12*8(a0)",
    "sd a3,  {gx}+13*8(a0)",
    "sd a4,  {gx}+14*8(a0)",
    "sd a5,  {gx}+15*8(a0)",
    "sd a6,  {gx}+16*8(a0)",
    "sd a7,  {gx}+17*8(a0)",
    "sd s2,  {gx}+18*8(a0)",
    "sd s3,  {gx}+19*8(a0)",
    "sd s4,  {gx}+20*8(a0)",
    "sd s5,  {gx}+21*8(a0)",
    "sd s6,  {gx}+22*8(a0)",
    "sd s7,  {gx}+23*8(a0)",
    "sd s8,  {gx}+24*8(a0)",
    "sd s9,  {gx}+25*8(a0)",
    "sd s10, {gx}+26*8(a0)",
    "sd s11, {gx}+27*8(a0)",
    "sd t3,  {gx}+28*8(a0)",
    "sd t4,  {gx}+29*8(a0)",
    "sd t5,  {gx}+30*8(a0)",
    "sd t6,  {gx}+31*8(a0)",
    "csrr t0, sscratch",
    "sd t0,  {gx}+10*8(a0)",
    "csrr t0, sepc",
    "sd t0, {gsepc}(a0)",
    // Restore the hypervisor's CSRs; keep the guest's sstatus/hstatus for the next entry.
    "ld t1, {hsstatus}(a0)",
    "ld t2, {hhstatus}(a0)",
    "ld t3, {hstvec}(a0)",
    "ld t4, {hsscratch}(a0)",
    "csrrw t1, sstatus, t1",
    "csrrw t2, hstatus, t2",
    "csrw stvec, t3",
    "csrw sscratch, t4",
    "sd t1, {gsstatus}(a0)",
    "sd t2, {ghstatus}(a0)",
    // Record the trap.
    "csrr t0, scause",
    "sd t0, {tscause}(a0)",
    "csrr t0, stval",
    "sd t0, {tstval}(a0)",
    "csrr t0, htval",
    "sd t0, {thtval}(a0)",
    "csrr t0, htinst",
    "sd t0, {thtinst}(a0)",
    // Back to the hypervisor, as a return from __fv_enter_guest.
    "ld ra,  {hx}+1*8(a0)",
    "ld sp,  {hx}+2*8(a0)",
    "ld gp,  {hx}+3*8(a0)",
    "ld tp,  {hx}+4*8(a0)",
    "ld s0,  {hx}+8*8(a0)",
    "ld s1,  {hx}+9*8(a0)",
    "ld s2,  {hx}+18*8(a0)",
    "ld s3,  {hx}+19*8(a0)",
    "ld s4,  {hx}+20*8(a0)",
    "ld s5,  {hx}+21*8(a0)",
    "ld s6,  {hx}+22*8(a0)",
    "ld s7,  {hx}+23*8(a0)",
    "ld s8,  {hx}+24*8(a0)",
    "ld s9,  {hx}+25*8(a0)",
    "ld s10, {hx}+26*8(a0)",
    "ld s11, {hx}+27*8(a0)",
    "ret",
    ".option pop",
    gx = const G_X,
    gsepc = const G_SEPC,
    gsstatus = const G_SSTATUS,
    ghstatus = const G_HSTATUS,
    hx = const H_X,
    hsstatus = const H_SSTATUS,
    hhstatus = const H_HSTATUS,
    hstvec = const H_STVEC,
    hsscratch = const H_SSCRATCH,
    tscause = const T_SCAUSE,
    tstval = const T_STVAL,
    thtval = const T_HTVAL,
    thtinst = const T_HTINST,
);

unsafe extern "C" {
    fn __fv_enter_guest(ctx: *mut SwitchContext);
}

/// Runs the guest described by `ctx` until its next trap, then returns with the
/// guest's registers and the trap CSRs recorded in `ctx`.
///
/// # Safety
/// The caller must have loaded this vCPU's VS CSRs and a valid `hgatp` whose
/// G-stage table maps only this VM's memory, be in HS-mode with
/// `sstatus.SIE = 0`, and `ctx.guest.hstatus` must have SPV set (so `sret` enters
/// a virtualised mode, never HS-mode with guest-chosen registers).
pub unsafe fn enter_guest(ctx: &mut SwitchContext) {
    // SAFETY: the caller guarantees the guest is confined by hgatp and that sret
    // goes to V=1. The assembly saves and restores every register the Rust ABI
    // expects preserved (ra, sp, gp, tp, s0-s11); all others are clobbered as in
    // any call, which the extern "C" declaration tells the compiler.
    unsafe { __fv_enter_guest(ctx) };
}
