//! `_start` (boot hart) and `_fv_secondary_start` (harts started via SBI HSM).
//!
//! Both: a0 = hart id, a1 = DTB address (boot) or the opaque value (HSM start).
//! Harts with id >= MAX_HARTS have no stack: the boot hart then shuts the system
//! down with "system failure", a secondary stops itself.
//!
//! Register conventions set here and relied on by the rest of the runtime:
//! `tp` holds the hart id (no TLS in this runtime, so the compiler never touches
//! it), `stvec` points to the trap entry (direct mode), `sie` = 0,
//! `sstatus.SIE` = 0, `sstatus.FS` = Initial.

use core::arch::global_asm;

global_asm!(
    r#"
    .pushsection .text.entry, "ax", @progbits
    .globl _start
    .p2align 2
_start:
    li      t0, {max_harts}
    bgeu    a0, t0, 9f
    mv      tp, a0
    la      t0, _fv_trap_entry
    csrw    stvec, t0
    csrw    sie, zero
    csrci   sstatus, 0x2
    li      t0, 0x2000
    csrs    sstatus, t0
    la      sp, __fv_stacks_start
    addi    t0, a0, 1
    slli    t0, t0, {stack_shift}
    add     sp, sp, t0
    la      t0, __fv_bss_start
    la      t1, __fv_bss_end
1:
    bgeu    t0, t1, 2f
    sd      zero, 0(t0)
    addi    t0, t0, 8
    j       1b
2:
    call    {boot_rust}
9:
    /* SRST: shutdown (a0 = 0), reason system failure (a1 = 1). */
    li      a7, 0x53525354
    li      a6, 0
    li      a0, 0
    li      a1, 1
    ecall
    wfi
    j       9b
    .popsection

    .pushsection .text, "ax", @progbits
    .globl _fv_secondary_start
    .p2align 2
_fv_secondary_start:
    li      t0, {max_harts}
    bgeu    a0, t0, 9f
    mv      tp, a0
    la      t0, _fv_trap_entry
    csrw    stvec, t0
    csrw    sie, zero
    csrci   sstatus, 0x2
    li      t0, 0x2000
    csrs    sstatus, t0
    la      sp, __fv_stacks_start
    addi    t0, a0, 1
    slli    t0, t0, {stack_shift}
    add     sp, sp, t0
    call    {secondary_rust}
9:
    /* HSM hart_stop (EID "HSM", FID 1). */
    li      a7, 0x48534D
    li      a6, 1
    ecall
    wfi
    j       9b
    .popsection
"#,
    max_harts = const crate::MAX_HARTS,
    stack_shift = const crate::STACK_SHIFT,
    boot_rust = sym crate::boot_rust,
    secondary_rust = sym crate::hart::secondary_rust,
);

extern "C" {
    /// Entry point for harts started with SBI HSM `hart_start`.
    pub(crate) fn _fv_secondary_start();
}
