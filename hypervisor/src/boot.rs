//! Power-on: the first instructions, per-hart stacks, and the entry of secondary harts.
//!
//! OpenSBI (fw_dynamic) jumps to `_start` in S-mode on one hart with
//! `a0 = hartid`, `a1 = physical address of the DTB`. The other harts stay in
//! OpenSBI's HSM "stopped" state until [`start_secondary`] starts them at
//! `_start_secondary` with `a1 = logical CPU index`.

use core::arch::global_asm;

/// Maximum number of harts the hypervisor drives.
pub const MAX_HARTS: usize = 8;
/// Stack size of each hart.
pub const STACK_SIZE: usize = 64 * 1024;

#[repr(C, align(4096))]
struct Stacks([[u8; STACK_SIZE]; MAX_HARTS]);

#[unsafe(link_section = ".noinit.stacks")]
#[unsafe(no_mangle)]
static mut __FV_STACKS: Stacks = Stacks([[0; STACK_SIZE]; MAX_HARTS]);

global_asm!(
    ".section .text.entry",
    ".global _start",
    "_start:",
    // The very first instruction: when the hypervisor started (boot-latency figure).
    "csrr a2, time",
    // Ferrovisor is linked to run where fw_dynamic puts it on QEMU virt. If the
    // firmware jumped anywhere else, absolute addresses would be wrong: say so
    // through the firmware console and power off instead of running astray.
    "lla t0, _start",
    "ld t1, {link}",
    "bne t0, t1, 9f",
    // Boot hart: logical CPU 0. tp holds the logical CPU index while in the hypervisor.
    "li tp, 0",
    "la sp, __FV_STACKS",
    "li t0, {stack_size}",
    "add sp, sp, t0",
    // Zero .bss (stacks and heap live in .noinit and are not cleared).
    "la t0, __bss_start",
    "la t1, __bss_end",
    "1: bgeu t0, t1, 2f",
    "sd zero, (t0)",
    "addi t0, t0, 8",
    "j 1b",
    "2:",
    "call {main}",
    "3: wfi",
    "j 3b",
    "9:",
    "lla s0, {msg}",
    "5: lbu a0, 0(s0)",
    "beqz a0, 6f",
    "li a7, 0x4442434E", // DBCN console_write_byte
    "li a6, 2",
    "ecall",
    "addi s0, s0, 1",
    "j 5b",
    "6: li a7, 0x53525354", // SRST: shutdown, system failure
    "li a6, 0",
    "li a0, 0",
    "li a1, 1",
    "ecall",
    "j 3b",
    "",
    ".global _start_secondary",
    "_start_secondary:",
    // a0 = hartid, a1 = logical CPU index (the opaque value we passed to hart_start).
    "mv tp, a1",
    "la sp, __FV_STACKS",
    "li t0, {stack_size}",
    "addi t1, a1, 1",
    "mul t0, t0, t1",
    "add sp, sp, t0",
    "call {secondary}",
    "4: wfi",
    "j 4b",
    stack_size = const STACK_SIZE,
    link = sym LINK_ADDRESS,
    msg = sym WRONG_ADDRESS_MSG,
    main = sym crate::rust_main,
    secondary = sym crate::secondary_main,
);

/// Where `_start` was linked (an absolute address, compared with where it runs).
#[unsafe(no_mangle)]
static LINK_ADDRESS: unsafe extern "C" fn() = _start;

/// Printed when the firmware entered the image somewhere it was not linked for.
static WRONG_ADDRESS_MSG: [u8; 74] =
    *b"ferrovisor: FATAL: loaded at the wrong address (linked for 0x80200000)\r\n\0\0";

unsafe extern "C" {
    fn _start();
    fn _start_secondary();
    static __image_start: u8;
    static __image_end: u8;
}

/// Physical address range of the hypervisor image (text, data, bss, stacks).
pub fn image_range() -> (u64, u64) {
    (
        core::ptr::addr_of!(__image_start) as u64,
        core::ptr::addr_of!(__image_end) as u64,
    )
}

/// The logical CPU index of the calling hart (kept in `tp` while in the hypervisor).
pub fn cpu_index() -> usize {
    let tp: usize;
    // SAFETY: reads a register.
    unsafe { core::arch::asm!("mv {0}, tp", out(reg) tp, options(nomem, nostack)) };
    tp
}

/// Starts hart `hartid` as logical CPU `index` through SBI HSM.
pub fn start_secondary(hartid: u64, index: usize) -> Result<(), isize> {
    fv_arch_riscv64::firmware::hart_start(
        hartid as usize,
        _start_secondary as *const () as usize,
        index,
    )
}
