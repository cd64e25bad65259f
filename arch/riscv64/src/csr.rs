//! CSR access. The CSR number is a const generic so every access is a single
//! `csrr`/`csrw` with the number as an immediate; [`crate::regs::num`] names them.

use core::arch::asm;

/// Reads CSR `N`.
///
/// Reading a CSR has no memory-safety effect; reading one the hart lacks traps
/// (use [`probe`] where that can happen).
#[inline(always)]
pub fn read<const N: u16>() -> u64 {
    let v: u64;
    // SAFETY: csrr only reads a CSR into a register; it touches no memory.
    unsafe { asm!("csrr {0}, {csr}", out(reg) v, csr = const N, options(nomem, nostack)) };
    v
}

/// Writes CSR `N`.
///
/// # Safety
/// Writing a CSR can change translation (satp, hgatp), trap vectors (stvec) or
/// privilege state; the caller must make sure the new value keeps the
/// hypervisor's memory and control flow intact.
#[inline(always)]
pub unsafe fn write<const N: u16>(v: u64) {
    // SAFETY: the caller upholds this function's contract.
    unsafe { asm!("csrw {csr}, {0}", in(reg) v, csr = const N, options(nostack)) };
}

/// Sets bits in CSR `N`.
///
/// # Safety
/// As for [`write`].
#[inline(always)]
pub unsafe fn set<const N: u16>(bits: u64) {
    // SAFETY: the caller upholds this function's contract.
    unsafe { asm!("csrs {csr}, {0}", in(reg) bits, csr = const N, options(nostack)) };
}

/// Clears bits in CSR `N`.
///
/// # Safety
/// As for [`write`].
#[inline(always)]
pub unsafe fn clear<const N: u16>(bits: u64) {
    // SAFETY: the caller upholds this function's contract.
    unsafe { asm!("csrc {csr}, {0}", in(reg) bits, csr = const N, options(nostack)) };
}

/// Reads CSR `N` if the hart has it: `None` if the read raised an exception
/// (illegal instruction). Used once at boot to find optional CSRs
/// (stimecmp, hstateen0, henvcfg, ...).
pub fn probe<const N: u16>() -> Option<u64> {
    let v: u64;
    let failed: u64;
    // SAFETY: stvec points at the local label 3 for the duration of one csrr and
    // is restored before the block ends, on both paths. Host interrupts are
    // masked in the hypervisor (sstatus.SIE = 0), so the only trap that can reach
    // label 3 is the csrr's own illegal-instruction exception. The trap changes
    // sepc/scause/stval and sstatus.SPP/SPIE, none of which the hypervisor relies
    // on outside a trap handler.
    unsafe {
        asm!(
            "la {tmp}, 3f",
            "csrrw {old}, stvec, {tmp}",
            "li {failed}, 0",
            "csrr {v}, {csr}",
            "j 4f",
            ".balign 4",
            "3:",
            "li {failed}, 1",
            "li {v}, 0",
            "4:",
            "csrw stvec, {old}",
            tmp = out(reg) _,
            old = out(reg) _,
            failed = out(reg) failed,
            v = out(reg) v,
            csr = const N,
            options(nostack)
        );
    }
    if failed == 0 {
        Some(v)
    } else {
        None
    }
}

/// Writes `value` to CSR `N` and reads it back, if the hart has the CSR;
/// `None` if either access raised an exception. For WARL probing (VMID bits).
///
/// # Safety
/// As for [`write`].
pub unsafe fn probe_write<const N: u16>(value: u64) -> Option<u64> {
    let v: u64;
    let failed: u64;
    // SAFETY: as in `probe`; the caller upholds `write`'s contract for the value.
    unsafe {
        asm!(
            "la {tmp}, 3f",
            "csrrw {old}, stvec, {tmp}",
            "li {failed}, 0",
            "csrw {csr}, {val}",
            "csrr {v}, {csr}",
            "j 4f",
            ".balign 4",
            "3:",
            "li {failed}, 1",
            "li {v}, 0",
            "4:",
            "csrw stvec, {old}",
            tmp = out(reg) _,
            old = out(reg) _,
            failed = out(reg) failed,
            v = out(reg) v,
            val = in(reg) value,
            csr = const N,
            options(nostack)
        );
    }
    if failed == 0 {
        Some(v)
    } else {
        None
    }
}

/// Reads the `time` CSR.
#[inline(always)]
pub fn time() -> u64 {
    read::<{ crate::regs::num::TIME }>()
}

/// `hfence.gvma x0, x0`: invalidates every G-stage translation of every VMID on this hart.
#[inline(always)]
pub fn hfence_gvma_all() {
    // SAFETY: a TLB fence only discards cached translations.
    unsafe {
        asm!(
            ".option push",
            ".option arch, +h",
            "hfence.gvma zero, zero",
            ".option pop",
            options(nostack)
        )
    };
}

/// `hfence.gvma x0, vmid`: invalidates the G-stage translations of one VMID on this hart.
#[inline(always)]
pub fn hfence_gvma_vmid(vmid: u64) {
    // SAFETY: a TLB fence only discards cached translations.
    unsafe {
        asm!(".option push", ".option arch, +h", "hfence.gvma zero, {0}", ".option pop", in(reg) vmid, options(nostack))
    };
}

/// `hfence.gvma gpa>>2, vmid`: invalidates one guest-physical page of one VMID on this hart.
#[inline(always)]
pub fn hfence_gvma_addr(gpa: u64, vmid: u64) {
    // SAFETY: a TLB fence only discards cached translations.
    unsafe {
        asm!(".option push", ".option arch, +h", "hfence.gvma {0}, {1}", ".option pop", in(reg) gpa >> 2, in(reg) vmid, options(nostack))
    };
}

/// `hfence.vvma` for the VMID currently in hgatp: invalidates the guest's
/// VS-stage translations on this hart.
#[inline(always)]
pub fn hfence_vvma_all() {
    // SAFETY: a TLB fence only discards cached translations.
    unsafe {
        asm!(
            ".option push",
            ".option arch, +h",
            "hfence.vvma zero, zero",
            ".option pop",
            options(nostack)
        )
    };
}

/// Waits for an interrupt (returns also when one is pending but masked).
#[inline(always)]
pub fn wfi() {
    // SAFETY: wfi only stalls the hart until an interrupt is pending.
    unsafe { asm!("wfi", options(nomem, nostack)) };
}

/// Reads a halfword of guest memory at guest-virtual `addr` with the guest's
/// translation and execute permission (HLVX.HU), as the guest would fetch it.
/// `None` if the access faulted. Used to fetch a trapped instruction when
/// `htinst` is zero.
pub fn hlvx_hu(addr: u64) -> Option<u16> {
    let v: u64;
    let failed: u64;
    // SAFETY: stvec points at the local label 3 only for the one HLVX.HU and is
    // restored on both paths; interrupts are masked, so only the load's own fault
    // can land there. HLVX reads guest memory through the guest's two-stage
    // translation: it can never reach hypervisor memory that the G-stage table
    // does not map for this guest.
    unsafe {
        asm!(
            ".option push",
            ".option arch, +h",
            "la {tmp}, 3f",
            "csrrw {old}, stvec, {tmp}",
            "li {failed}, 0",
            "hlvx.hu {v}, ({addr})",
            "j 4f",
            ".balign 4",
            "3:",
            "li {failed}, 1",
            "li {v}, 0",
            "4:",
            "csrw stvec, {old}",
            ".option pop",
            tmp = out(reg) _,
            old = out(reg) _,
            failed = out(reg) failed,
            v = out(reg) v,
            addr = in(reg) addr,
            options(nostack, readonly)
        );
    }
    if failed == 0 {
        Some(v as u16)
    } else {
        None
    }
}
