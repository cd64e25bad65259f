//! DBCN: `console_write`, `console_write_byte`, `console_read` and their
//! errors (a buffer above 2^64, a buffer outside guest RAM); unknown FID.

use fv_guest_rt::sbi::{self, Ret};
use fv_guest_rt::{println, Platform, Reporter};

use crate::util::call3;

pub fn run(r: &Reporter) {
    console(r);
    r.check_sbi_error(
        "dbcn/write-base-addr-hi",
        sbi::dbcn_write_raw(1, 0x8020_0000, 1),
        sbi::ERR_INVALID_PARAM,
    );
    let mut buf = [0u8; 16];
    let got = call3(sbi::EID_DBCN, 1, buf.len(), buf.as_mut_ptr() as usize, 0);
    r.check(
        "dbcn/read",
        got.error == sbi::SUCCESS && got.value <= buf.len(),
        format_args!("console_read of {} bytes returned {got}", buf.len()),
    );
    r.check_sbi_error(
        "dbcn/read-base-addr-hi",
        call3(sbi::EID_DBCN, 1, 1, buf.as_mut_ptr() as usize, 1),
        sbi::ERR_INVALID_PARAM,
    );
    r.check_sbi_error(
        "dbcn/write-zero-bytes",
        sbi::dbcn_write_raw(0, 0x8020_0000, 0),
        sbi::SUCCESS,
    );
    r.check_sbi_error(
        "dbcn/unknown-fid",
        call3(sbi::EID_DBCN, 3, 0, 0, 0),
        sbi::ERR_NOT_SUPPORTED,
    );
}

fn console(r: &Reporter) {
    let line = b"sbi-test: this line was written with DBCN console_write\n";
    let got = sbi::dbcn_write(line);
    r.check(
        "dbcn/write",
        got.error == sbi::SUCCESS && got.value == line.len(),
        format_args!("console_write of {} bytes returned {got}", line.len()),
    );

    let mut bad = None;
    for &b in b"sbi-test: this line was written with DBCN console_write_byte\n" {
        let got = sbi::call(
            sbi::EID_DBCN,
            sbi::DBCN_CONSOLE_WRITE_BYTE,
            [b as usize, 0, 0, 0, 0, 0],
        );
        if got.error != sbi::SUCCESS && bad.is_none() {
            bad = Some(got);
        }
    }
    r.check(
        "dbcn/write-byte",
        bad.is_none(),
        format_args!(
            "console_write_byte returned {}",
            bad.unwrap_or(Ret { error: 0, value: 0 })
        ),
    );
}

/// Low addresses tried, in order, for a buffer S-mode cannot access: 0x1000
/// (nothing in a Ferrovisor VM; QEMU's boot ROM on bare QEMU, which S-mode can
/// read), then holes of QEMU's `virt` memory map.
const LOW_CANDIDATES: [usize; 3] = [0x1000, 0x0900_0000, 0x1100_0000];

/// True if a load from `addr` by this S-mode program faults (checked with a
/// real load; the fault is expected).
fn inaccessible(addr: usize) -> bool {
    fv_guest_rt::trap::try_load_u8(addr).is_err()
}

/// Last: an SBI implementation that does not validate the buffer may fault
/// or hang here, and everything else is already reported.
pub fn outside_ram(p: &Platform, r: &Reporter) {
    // The spec's rule (SBI v2.0, shared memory physical address range): the
    // SBI must check that S-mode may access the buffer, else
    // SBI_ERR_INVALID_PARAM. Each address is first shown to be inaccessible to
    // this program with a load, so the expectation holds on any platform.
    let check = "dbcn/write-outside-ram-end";
    let ram_end = p.ram.end;
    if r.should_run(check) {
        if inaccessible(ram_end) {
            println!("INFO: sbi-test: DBCN console_write of 16 bytes at {ram_end:#x} (RAM end; a load there faults)");
            r.check_sbi_error(
                check,
                sbi::dbcn_write_raw(16, ram_end, 0),
                sbi::ERR_INVALID_PARAM,
            );
        } else {
            r.fail(
                check,
                format_args!("a load at RAM end {ram_end:#x} does not fault"),
            );
        }
    }

    let check = "dbcn/write-outside-ram-low";
    if r.should_run(check) {
        let pick = LOW_CANDIDATES
            .iter()
            .copied()
            .find(|&a| !p.memory().iter().any(|m| m.contains(a)) && inaccessible(a));
        match pick {
            Some(low) => {
                println!("INFO: sbi-test: DBCN console_write of 16 bytes at {low:#x} (a load there faults)");
                r.check_sbi_error(
                    check,
                    sbi::dbcn_write_raw(16, low, 0),
                    sbi::ERR_INVALID_PARAM,
                );
            }
            None => r.fail(
                check,
                format_args!("none of {LOW_CANDIDATES:#x?} is inaccessible to S-mode"),
            ),
        }
    }
}
