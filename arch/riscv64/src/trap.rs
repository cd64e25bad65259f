//! The hypervisor's own trap vector (HS-mode traps while no guest runs).
//!
//! The hypervisor runs with interrupts masked and expects no exception of its own
//! (the few places that may fault, like CSR probes and HLVX, install a local
//! recovery vector). Anything reaching this vector is a hypervisor bug: it is
//! reported through the hook the binary installs, which logs and stops the machine.

use core::arch::global_asm;

/// What the hypervisor knew when it trapped.
#[derive(Clone, Copy, Debug)]
pub struct HostTrap {
    /// `scause`.
    pub scause: u64,
    /// `stval`.
    pub stval: u64,
    /// `sepc`.
    pub sepc: u64,
}

static HOOK: spin::Once<fn(&HostTrap) -> !> = spin::Once::new();

/// Installs the function called on an unexpected hypervisor trap (first call wins).
pub fn set_fatal_hook(hook: fn(&HostTrap) -> !) {
    HOOK.call_once(|| hook);
}

global_asm!(
    ".section .text.fv_host_trap",
    ".balign 4",
    ".global __fv_host_trap",
    "__fv_host_trap:",
    "csrr a0, scause",
    "csrr a1, stval",
    "csrr a2, sepc",
    "call {handler}",
    "1: wfi",
    "j 1b",
    handler = sym fv_host_trap,
);

extern "C" fn fv_host_trap(scause: u64, stval: u64, sepc: u64) -> ! {
    let t = HostTrap {
        scause,
        stval,
        sepc,
    };
    if let Some(hook) = HOOK.get() {
        hook(&t);
    }
    crate::firmware::console_write(b"ferrovisor: FATAL: trap in hypervisor, no hook installed\n");
    crate::firmware::shutdown(crate::firmware::ShutdownReason::Failure)
}

unsafe extern "C" {
    fn __fv_host_trap();
}

/// Installs the hypervisor trap vector on this hart.
pub fn install() {
    let addr = __fv_host_trap as *const () as u64;
    // SAFETY: __fv_host_trap is a 4-byte-aligned handler that never returns
    // into interrupted code; direct mode (low bits 0).
    unsafe { crate::csr::write::<{ crate::regs::num::STVEC }>(addr) };
}
