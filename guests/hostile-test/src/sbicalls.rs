//! `sbi`: random SBI calls; `dbcn`: debug-console transfers of buffers that are
//! not this VM's RAM.

use core::sync::atomic::{AtomicUsize, Ordering};

use fv_guest_rt::sbi::{self, Ret};
use fv_guest_rt::{csr, println};

use crate::rng::Rng;
use crate::{breach, in_ram, plat, Phase};

/// Performance monitoring ("PMU").
const EID_PMU: usize = 0x0050_4D55;
/// System suspend ("SUSP").
const EID_SUSP: usize = 0x5355_5350;
/// CPPC ("CPPC").
const EID_CPPC: usize = 0x4350_5043;
/// Nested acceleration ("NACL").
const EID_NACL: usize = 0x4E41_434C;
/// Steal-time accounting ("STA").
const EID_STA: usize = 0x0053_5441;
/// Supervisor software events ("SSE").
const EID_SSE: usize = 0x0053_5345;
/// Firmware features ("FWFT").
const EID_FWFT: usize = 0x4657_4654;
/// Debug triggers ("DBTR").
const EID_DBTR: usize = 0x4442_5452;
/// Message proxy ("MPXY").
const EID_MPXY: usize = 0x4D50_5859;
/// DBCN `console_read`.
const DBCN_CONSOLE_READ: usize = 1;
/// Legacy `sbi_shutdown`.
const EID_LEGACY_SHUTDOWN: usize = 0x08;

/// EIDs defined by the SBI spec (legacy ones included).
const REAL_EIDS: [usize; 25] = [
    sbi::EID_BASE,
    sbi::EID_TIME,
    sbi::EID_IPI,
    sbi::EID_RFENCE,
    sbi::EID_HSM,
    sbi::EID_SRST,
    sbi::EID_DBCN,
    EID_PMU,
    EID_SUSP,
    EID_CPPC,
    EID_NACL,
    EID_STA,
    EID_SSE,
    EID_FWFT,
    EID_DBTR,
    EID_MPXY,
    0x00,
    0x01,
    0x02,
    0x03,
    0x04,
    0x05,
    0x06,
    0x07,
    0x08,
];

static CALLS: AtomicUsize = AtomicUsize::new(0);
static SKIPPED: AtomicUsize = AtomicUsize::new(0);
/// Results by error code: index `-error` for 0..=14, 15 for anything else.
static BY_ERROR: [AtomicUsize; 16] = [const { AtomicUsize::new(0) }; 16];

/// Clears the counters (boot vCPU, before the phase).
pub fn reset_stats() {
    CALLS.store(0, Ordering::SeqCst);
    SKIPPED.store(0, Ordering::SeqCst);
    for c in &BY_ERROR {
        c.store(0, Ordering::SeqCst);
    }
}

fn count_result(r: Ret) {
    CALLS.fetch_add(1, Ordering::Relaxed);
    let i = if (-14..=0).contains(&r.error) {
        (-r.error) as usize
    } else {
        15
    };
    if let Some(c) = BY_ERROR.get(i) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

fn errors(i: usize) -> usize {
    BY_ERROR.get(i).map_or(0, |c| c.load(Ordering::SeqCst))
}

/// Prints the `sbi` progress line.
pub fn report_sbi(round: usize, vcpus: usize, finished: usize) {
    println!(
        "INFO: hostile-test: phase sbi done: round {round}, {finished}/{vcpus} vCPUs, {} calls (SUCCESS {}, FAILED {}, NOT_SUPPORTED {}, INVALID_PARAM {}, DENIED {}, INVALID_ADDRESS {}, ALREADY_AVAILABLE {}, other {}), {} left out",
        CALLS.load(Ordering::SeqCst),
        errors(0),
        errors(1),
        errors(2),
        errors(3),
        errors(4),
        errors(5),
        errors(6),
        (7..16).map(errors).sum::<usize>(),
        SKIPPED.load(Ordering::SeqCst),
    );
}

/// Prints the `dbcn` progress line.
pub fn report_dbcn(round: usize, vcpus: usize, finished: usize) {
    println!(
        "INFO: hostile-test: phase dbcn done: round {round}, {finished}/{vcpus} vCPUs, {} transfers (SUCCESS {}, INVALID_PARAM {}, DENIED {}, other {}), {} left out",
        CALLS.load(Ordering::SeqCst),
        errors(0),
        errors(3),
        errors(4),
        CALLS.load(Ordering::SeqCst) - errors(0) - errors(3) - errors(4),
        SKIPPED.load(Ordering::SeqCst),
    );
}

/// A random argument: small numbers, hart ids, all ones, random bits,
/// addresses in and just past RAM, powers of two.
fn wild_arg(rng: &mut Rng) -> usize {
    let p = plat();
    match rng.below(9) {
        0 => 0,
        1 => rng.below(p.hart_count() + 3),
        2 => usize::MAX - rng.below(4),
        3 | 4 => rng.word(),
        5 => p.ram.start + rng.below(p.ram.len()),
        6 => p.ram.end.wrapping_add(rng.below(0x1_0000)),
        7 => 1usize << rng.below(64),
        _ => rng.below(0x100),
    }
}

fn is_hart(id: usize) -> bool {
    plat().has_hart(id)
}

/// A printable digit for console-output calls (keeps the log readable and
/// free of anything that looks like a protocol line).
fn digit(v: usize) -> usize {
    usize::from(b'0') + v % 10
}

/// Leaves out (None) or tames calls that would stop, suspend, reset or park
/// this VM or one of its harts, or make the SBI print or overwrite this VM's
/// own memory: the point is to attack the SBI implementation, not to end the
/// attack. Anything else goes through unchanged.
fn tame(eid: usize, fid: usize, mut args: [usize; 6]) -> Option<[usize; 6]> {
    let [a0, a1, a2, ..] = args;
    match (eid, fid) {
        (sbi::EID_SRST, sbi::SRST_SYSTEM_RESET) if (a0 as u32) <= 2 => None,
        (EID_LEGACY_SHUTDOWN, _) => None,
        (EID_SUSP, 0) if a0 as u32 == 0 => None,
        (sbi::EID_HSM, sbi::HSM_HART_STOP) => None,
        // Every suspend type that is not reserved (the defaults and the
        // platform-specific ranges, which behave as the defaults).
        (sbi::EID_HSM, sbi::HSM_HART_SUSPEND)
            if matches!(
                a0 as u32,
                0 | 0x1000_0000..=0x7fff_ffff | 0x8000_0000 | 0x9000_0000..=0xffff_ffff
            ) =>
        {
            None
        }
        (sbi::EID_HSM, sbi::HSM_HART_START) if is_hart(a0) && in_ram(a1, 2) => None,
        (sbi::EID_DBCN, sbi::DBCN_CONSOLE_WRITE | DBCN_CONSOLE_READ)
            if a2 == 0 && in_ram(a1, a0) =>
        {
            None
        }
        (sbi::EID_DBCN, sbi::DBCN_CONSOLE_WRITE_BYTE) | (sbi::EID_LEGACY_CONSOLE_PUTCHAR, _) => {
            args[0] = digit(a0);
            Some(args)
        }
        _ => Some(args),
    }
}

/// This vCPU's share of the `sbi` phase.
pub fn sbi_body() {
    let mut rng = crate::stream(Phase::Sbi);
    for _ in 0..crate::count() {
        let eid = match rng.below(5) {
            0 | 1 => rng.pick(&REAL_EIDS).unwrap_or(sbi::EID_BASE),
            2 => rng.word(),
            3 => rng.word() & 0xffff_ffff,
            // Vendor (0x0900_0000..) and firmware (0x0A00_0000..) ranges, low EIDs.
            _ => match rng.below(3) {
                0 => 0x0900_0000 + rng.below(0x100_0000),
                1 => 0x0A00_0000 + rng.below(0x100_0000),
                _ => rng.below(0x40),
            },
        };
        let fid = if rng.one_in(4) {
            rng.word()
        } else {
            rng.below(12)
        };
        let args = [
            wild_arg(&mut rng),
            wild_arg(&mut rng),
            wild_arg(&mut rng),
            wild_arg(&mut rng),
            wild_arg(&mut rng),
            wild_arg(&mut rng),
        ];
        match tame(eid, fid, args) {
            Some(args) => count_result(sbi::call(eid, fid, args)),
            None => {
                SKIPPED.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    // Undo what random calls may have left behind for this hart.
    let _ = sbi::call(sbi::EID_TIME, 0, [usize::MAX, 0, 0, 0, 0, 0]);
    csr::sip_clear(csr::SSI);
    // Console bytes from putchar calls end up on a line of their own.
    let _ = sbi::legacy_putchar(b'\n');
}

/// This vCPU's share of the `dbcn` phase: write/read with buffers that are
/// not (entirely) RAM. Each must fail; a success is a breach.
pub fn dbcn_body() {
    let p = plat();
    let ram = p.ram;
    let mut rng = crate::stream(Phase::Dbcn);
    for _ in 0..crate::count() {
        let in_ram_addr = ram.start + rng.below(ram.len());
        let (len, lo, hi) = match rng.below(7) {
            // Wild address, wild length.
            0 => (rng.word(), rng.word(), 0),
            // Wild address, small length.
            1 => (1 + rng.below(4096), crate::wild::wild_address(&mut rng), 0),
            // Starts in RAM, runs far past its end.
            2 => (
                ram.len() + 1 + (rng.word() >> rng.below(64)),
                in_ram_addr,
                0,
            ),
            // Length that overflows the address space.
            3 => (usize::MAX - rng.below(16), in_ram_addr, 0),
            4 => (usize::MAX - in_ram_addr + 1 + rng.below(64), in_ram_addr, 0),
            // Base address bits above XLEN.
            5 => (1 + rng.below(64), in_ram_addr, 1 + (rng.word() >> 1)),
            // Crosses the end of RAM by a little.
            _ => (1 + rng.below(64), ram.end.wrapping_sub(rng.below(32)), 0),
        };
        if len == 0 || (hi == 0 && in_ram(lo, len)) {
            SKIPPED.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let fid = if rng.one_in(4) {
            DBCN_CONSOLE_READ
        } else {
            sbi::DBCN_CONSOLE_WRITE
        };
        let r = sbi::call(sbi::EID_DBCN, fid, [len, lo, hi, 0, 0, 0]);
        count_result(r);
        if r.error == sbi::SUCCESS {
            breach(
                "dbcn-outside-ram-accepted",
                format_args!(
                    "DBCN fid {fid} of {len:#x} bytes at {lo:#x} (high {hi:#x}) returned {r}: the buffer is not this VM's RAM"
                ),
            );
        }
    }
}
