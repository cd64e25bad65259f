//! RFENCE: every function with valid and invalid arguments.

use fv_guest_rt::sbi;
use fv_guest_rt::{hart, Platform, Reporter};

fn rf(fid: usize, mask: usize, base: usize, start: usize, size: usize, asid: usize) -> sbi::Ret {
    sbi::call(sbi::EID_RFENCE, fid, [mask, base, start, size, asid, 0])
}

pub fn run(p: &Platform, r: &Reporter) {
    let me = hart::hart_id();
    let all = usize::MAX;
    r.check_sbi_error("rfence/fence-i-all", rf(0, 0, all, 0, 0, 0), sbi::SUCCESS);
    r.check_sbi_error("rfence/fence-i-self", rf(0, 1, me, 0, 0, 0), sbi::SUCCESS);
    r.check_sbi_error(
        "rfence/sfence-vma-all",
        rf(1, 0, all, 0, 0, 0),
        sbi::SUCCESS,
    );
    r.check_sbi_error(
        "rfence/sfence-vma-range",
        rf(1, 1, me, 0x8020_0000, 0x2000, 0),
        sbi::SUCCESS,
    );
    r.check_sbi_error(
        "rfence/sfence-vma-whole-space-size",
        rf(1, 0, all, 0x1000, usize::MAX, 0),
        sbi::SUCCESS,
    );
    r.check_sbi_error(
        "rfence/sfence-vma-asid",
        rf(2, 0, all, 0x8020_0000, 0x1000, 1),
        sbi::SUCCESS,
    );
    r.check_sbi_error(
        "rfence/sfence-vma-wrapping-range",
        rf(1, 1, me, usize::MAX - 0xfff, 0x2000, 0),
        sbi::ERR_INVALID_ADDRESS,
    );
    r.check_sbi_error(
        "rfence/sfence-vma-asid-wrapping-range",
        rf(2, 1, me, usize::MAX - 0xfff, 0x2000, 0),
        sbi::ERR_INVALID_ADDRESS,
    );
    let absent = p.absent_hart_id();
    for (name, fid) in [
        ("rfence/fence-i-invalid-hart", 0),
        ("rfence/sfence-vma-invalid-hart", 1),
        ("rfence/sfence-vma-asid-invalid-hart", 2),
    ] {
        r.check_sbi_error(name, rf(fid, 1, absent, 0, 0, 0), sbi::ERR_INVALID_PARAM);
    }
    // hfence_* are for harts with the H extension: a VM's vCPUs have none
    // (on bare QEMU the harts do, and OpenSBI implements them).
    if crate::util::is_ferrovisor() {
        for (name, fid) in [
            ("rfence/hfence-gvma-vmid", 3),
            ("rfence/hfence-gvma", 4),
            ("rfence/hfence-vvma-asid", 5),
            ("rfence/hfence-vvma", 6),
        ] {
            r.check_sbi_error(name, rf(fid, 0, all, 0, 0, 0), sbi::ERR_NOT_SUPPORTED);
        }
    }
    r.check_sbi_error(
        "rfence/unknown-fid",
        rf(7, 0, all, 0, 0, 0),
        sbi::ERR_NOT_SUPPORTED,
    );
}
