//! FWFT: `get`/`set` of every standard feature, the LOCK flag, and the
//! errors for reserved features, bad values and flags.

use core::arch::asm;

use fv_guest_rt::sbi;
use fv_guest_rt::trap::{self, TrapInfo};
use fv_guest_rt::{println, Reporter};

use crate::util::{call3, EID_FWFT, ERR_DENIED_LOCKED};

const SET: usize = 0;
const GET: usize = 1;
const MISALIGNED_EXC_DELEG: usize = 0;
const PTE_AD_HW_UPDATING: usize = 4;
const LOCK: usize = 1;

/// An Sv39 root table: two 1 GiB leaves, both onto RAM at 0x8000_0000.
#[repr(C, align(4096))]
struct Table([u64; 512]);

static mut ROOT: Table = Table([0; 512]);
/// What the probe load reads through the A=0 mapping.
static TARGET: u64 = 0x5AD0_0000_0000_00AD;

const PTE_V: u64 = 1 << 0;
const PTE_R: u64 = 1 << 1;
const PTE_W: u64 = 1 << 2;
const PTE_X: u64 = 1 << 3;
const PTE_A: u64 = 1 << 6;
const PTE_D: u64 = 1 << 7;
const RAM: u64 = 0x8000_0000;
/// VA of the second leaf (VPN[2] = 3), mapped with A = D = 0.
const ALIAS: u64 = 0xC000_0000;

/// Loads `TARGET` through a leaf PTE whose A bit is clear (Sv39, identity
/// map of RAM beside it). Returns the load's result and whether the PTE's A
/// bit is set afterwards: with hardware A/D updating the load succeeds and
/// sets A; without it (Svade) it takes a load page fault.
fn load_through_unaccessed_pte() -> (Result<u64, TrapInfo>, bool) {
    let root = core::ptr::addr_of_mut!(ROOT);
    let leaf = (RAM >> 12) << 10;
    // SAFETY: this hart alone uses ROOT, with paging off.
    unsafe {
        (*root).0[2] = leaf | PTE_V | PTE_R | PTE_W | PTE_X | PTE_A | PTE_D;
        (*root).0[3] = leaf | PTE_V | PTE_R | PTE_W;
    }
    let satp = (8u64 << 60) | (root as u64 >> 12);
    let target = core::ptr::addr_of!(TARGET) as u64;
    // SAFETY: the code, stack, trap vector and ROOT are all in RAM, which
    // the first leaf maps at the same address; nothing prints while paging
    // is on (the console hands physical addresses to the SBI).
    unsafe { asm!("csrw satp, {0}", "sfence.vma", in(reg) satp, options(nostack)) };
    let got = trap::try_load_u64((target - RAM + ALIAS) as usize);
    // SAFETY: back to bare addressing.
    unsafe { asm!("csrw satp, zero", "sfence.vma", options(nostack)) };
    // SAFETY: paging is off again; the PTE may have been updated by the walk.
    let pte = unsafe { core::ptr::read_volatile(core::ptr::addr_of!((*root).0[3])) };
    (got, pte & PTE_A != 0)
}

pub fn run(r: &Reporter) {
    if sbi::probe(EID_FWFT).value == 0 {
        println!("INFO: sbi-test: FWFT not offered: its checks are skipped");
        return;
    }
    for (name, f) in [
        ("fwft/get-misaligned-exc-deleg", 0),
        ("fwft/get-landing-pad", 1),
        ("fwft/get-shadow-stack", 2),
        ("fwft/get-double-trap", 3),
        ("fwft/get-pte-ad-hw-updating", 4),
        ("fwft/get-pointer-masking-pmlen", 5),
    ] {
        let got = call3(EID_FWFT, GET, f, 0, 0);
        println!("INFO: sbi-test: fwft_get({f}) = {got}");
        let ok = (got.error == sbi::SUCCESS && (f == 5 || got.value <= 1))
            || (got.error == sbi::ERR_NOT_SUPPORTED && got.value == 0);
        r.check(
            name,
            ok,
            format_args!("returned {got}: expected success (0/1) or NOT_SUPPORTED"),
        );
    }
    for (name, f) in [
        ("fwft/get-reserved-feature", 6),
        ("fwft/get-platform-feature", 0x4000_0000),
        ("fwft/get-reserved-global-feature", 0x8000_0000),
        ("fwft/get-platform-global-feature", 0xC000_0000),
    ] {
        r.check_sbi_error(name, call3(EID_FWFT, GET, f, 0, 0), sbi::ERR_DENIED);
    }
    r.check_sbi_error(
        "fwft/set-reserved-feature",
        call3(EID_FWFT, SET, 6, 0, 0),
        sbi::ERR_DENIED,
    );
    let m = call3(EID_FWFT, GET, MISALIGNED_EXC_DELEG, 0, 0);
    if m.error == sbi::SUCCESS {
        r.check_sbi_error(
            "fwft/set-reserved-flags",
            call3(EID_FWFT, SET, MISALIGNED_EXC_DELEG, m.value, 2),
            sbi::ERR_INVALID_PARAM,
        );
        r.check_sbi_error(
            "fwft/set-bad-value",
            call3(EID_FWFT, SET, MISALIGNED_EXC_DELEG, 2, 0),
            sbi::ERR_INVALID_PARAM,
        );
        r.check_sbi_error(
            "fwft/set-current-value",
            call3(EID_FWFT, SET, MISALIGNED_EXC_DELEG, m.value, 0),
            sbi::SUCCESS,
        );
    }
    let ad = call3(EID_FWFT, GET, PTE_AD_HW_UPDATING, 0, 0);
    if ad.error == sbi::ERR_NOT_SUPPORTED {
        r.check_sbi_error(
            "fwft/set-pte-ad-not-supported",
            call3(EID_FWFT, SET, PTE_AD_HW_UPDATING, 1, 0),
            sbi::ERR_NOT_SUPPORTED,
        );
        return;
    }
    if ad.error == sbi::SUCCESS && ad.value == 0 {
        let (got, a) = load_through_unaccessed_pte();
        r.check(
            "fwft/pte-ad-off-faults",
            matches!(got, Err(t) if t.scause == trap::LOAD_PAGE_FAULT) && !a,
            format_args!("load through a PTE with A=0 gave {got:x?}, A set {a}"),
        );
    }
    let on = call3(EID_FWFT, SET, PTE_AD_HW_UPDATING, 1, 0);
    let read = call3(EID_FWFT, GET, PTE_AD_HW_UPDATING, 0, 0);
    r.check(
        "fwft/set-pte-ad-on",
        on.error == sbi::SUCCESS && read.error == sbi::SUCCESS && read.value == 1,
        format_args!("set 1 returned {on}, get returned {read}"),
    );
    let (got, a) = load_through_unaccessed_pte();
    r.check(
        "fwft/pte-ad-on-sets-a",
        got == Ok(TARGET) && a,
        format_args!("load through a PTE with A=0 gave {got:x?}, A set {a}"),
    );
    let off = call3(EID_FWFT, SET, PTE_AD_HW_UPDATING, 0, LOCK);
    let read = call3(EID_FWFT, GET, PTE_AD_HW_UPDATING, 0, 0);
    r.check(
        "fwft/set-pte-ad-off-and-lock",
        off.error == sbi::SUCCESS && read.error == sbi::SUCCESS && read.value == 0,
        format_args!("set 0 with LOCK returned {off}, get returned {read}"),
    );
    r.check_sbi_error(
        "fwft/set-locked",
        call3(EID_FWFT, SET, PTE_AD_HW_UPDATING, 1, 0),
        ERR_DENIED_LOCKED,
    );
    let read = call3(EID_FWFT, GET, PTE_AD_HW_UPDATING, 0, 0);
    r.check(
        "fwft/locked-value-kept",
        read.error == sbi::SUCCESS && read.value == 0,
        format_args!("get returned {read}"),
    );
    r.check_sbi_error(
        "fwft/unknown-fid",
        call3(EID_FWFT, 2, 0, 0, 0),
        sbi::ERR_NOT_SUPPORTED,
    );
}
