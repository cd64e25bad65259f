//! Supervisor CSRs that have no VS copy (`scounteren`, `senvcfg`) belong to
//! this VM: they start at 0 and keep what this VM wrote while it is
//! descheduled.
//!
//! Two VMs on one hart, each with `csr-switch=<n>` in its bootargs (a
//! different `n`), each write their own values and spin long enough to share
//! the hart several times: a hypervisor that leaves the real CSRs to whoever
//! runs next fails "starts zero" in the VM that runs second and "kept" in both.
//! Without the bootarg the check runs briefly with `n` = 5 (alone, it only
//! shows the CSRs hold a value and start at 0). "Starts at 0" is checked only
//! under a hypervisor: on bare QEMU OpenSBI hands its payload `scounteren` = 7.

use core::arch::asm;

use fv_guest_rt::{csr, sbi};
use fv_guest_rt::{Platform, Reporter};

/// `scounteren` value without a bootarg: CY | IR.
const DEFAULT_VALUE: usize = 5;
/// How long to spin without / with the bootarg, ms.
const SPIN_MS: [u64; 2] = [20, 300];
/// A gap between two `time` reads at least this long means the vCPU was
/// descheduled, ms.
const DESCHEDULED_MS: u64 = 2;

/// `sbi_get_impl_id` of OpenSBI (SBI spec, "SBI Implementation IDs").
const IMPL_OPENSBI: usize = 1;

/// `senvcfg` bits this check writes: FIOM (bit 0) for odd `n`, CBCFE | CBZE
/// (bits 6, 7) for even `n`.
fn senvcfg_value(n: usize) -> usize {
    if n & 1 != 0 {
        1
    } else {
        0xC0
    }
}

fn read_scounteren() -> usize {
    let v: usize;
    // SAFETY: reading scounteren has no side effect.
    unsafe { asm!("csrr {0}, scounteren", out(reg) v, options(nomem, nostack)) };
    v
}

fn write_scounteren(v: usize) {
    // SAFETY: scounteren only decides which counters U-mode may read; this
    // guest runs nothing in U-mode.
    unsafe { asm!("csrw scounteren, {0}", in(reg) v, options(nomem, nostack)) };
}

fn read_senvcfg() -> usize {
    let v: usize;
    // SAFETY: reading senvcfg (0x10A) has no side effect.
    unsafe { asm!("csrr {0}, 0x10A", out(reg) v, options(nomem, nostack)) };
    v
}

fn write_senvcfg(v: usize) {
    // SAFETY: senvcfg's FIOM/CBCFE/CBZE only shape U-mode fences and cache-block
    // instructions; this guest runs nothing in U-mode.
    unsafe { asm!("csrw 0x10A, {0}", in(reg) v, options(nomem, nostack)) };
}

/// The `csr-switch=<n>` bootarg, if given.
fn bootarg(p: &Platform, r: &Reporter) -> Option<usize> {
    for arg in p.bootargs().split_ascii_whitespace() {
        if let Some(v) = arg.strip_prefix("csr-switch=") {
            match v.parse::<usize>() {
                Ok(n) if n != 0 && n < 8 => return Some(n),
                _ => r.fail("bootargs", format_args!("`{arg}`: need 1..=7")),
            }
        }
    }
    None
}

/// Runs the check; returns whether the bootarg asked for it alone.
pub fn check(p: &Platform, r: &Reporter) -> bool {
    let arg = bootarg(p, r);
    let n = arg.unwrap_or(DEFAULT_VALUE);
    if sbi::call(sbi::EID_BASE, sbi::BASE_GET_IMPL_ID, [0; 6]).value != IMPL_OPENSBI {
        r.check_eq("scounteren-starts-zero", read_scounteren(), 0);
        r.check_eq("senvcfg-starts-zero", read_senvcfg(), 0);
    }
    write_scounteren(n);
    write_senvcfg(senvcfg_value(n));
    let scounteren = read_scounteren();
    let senvcfg = read_senvcfg();
    r.check(
        "scounteren-holds-a-value",
        scounteren != 0,
        format_args!("wrote {n:#x}, read back 0"),
    );
    r.check(
        "senvcfg-holds-a-value",
        senvcfg != 0,
        format_args!("wrote {:#x}, read back 0", senvcfg_value(n)),
    );
    let spin = csr::ms_to_ticks(SPIN_MS[usize::from(arg.is_some())], p.timebase_hz);
    let gap = csr::ms_to_ticks(DESCHEDULED_MS, p.timebase_hz);
    let start = csr::time();
    let mut last = start;
    let mut descheduled = 0u32;
    while last.wrapping_sub(start) < spin {
        let now = csr::time();
        if now.wrapping_sub(last) >= gap {
            descheduled += 1;
        }
        last = now;
    }
    if arg.is_some() {
        r.check(
            "csrs-descheduled",
            descheduled > 0,
            format_args!("never descheduled in {} ms", SPIN_MS[1]),
        );
    }
    r.check_eq("scounteren-kept", read_scounteren(), scounteren);
    r.check_eq("senvcfg-kept", read_senvcfg(), senvcfg);
    arg.is_some()
}
