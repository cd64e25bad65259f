//! bench-guest: micro-benchmarks measured with the `time` CSR, printed as
//! machine-parseable lines `BENCH: <name> <value> <unit>`:
//!
//! - `timebase` (Hz), the `time` tick rate from the DTB;
//! - `loop_overhead_median` (ticks): the measuring loop with nothing in it;
//! - `sbi_null_call_median` (ticks) over 2001 calls of sbi_get_spec_version,
//!   and `sbi_null_call_mean` (ns) over a batch of 10000;
//! - `first_touch_2m_median` / `_max` (ticks): the first store to a fresh
//!   2 MiB-aligned block above the image (what a lazily mapped G-stage costs;
//!   a plain store on bare hardware), over up to 64 blocks, and
//!   `second_touch_2m_median` for the same blocks touched again.
#![no_std]
#![no_main]

use core::ptr::{addr_of_mut, read_volatile, write_volatile};

use fv_guest_rt::sbi;
use fv_guest_rt::{csr, println, Platform, Region, Reporter};

fv_guest_rt::guest_main!("bench-guest", main);

const ITERATIONS: usize = 2001;
const BATCH: u64 = 10_000;
const BLOCK: usize = 2 << 20;
const MAX_BLOCKS: usize = 64;

static mut SAMPLES: [u64; ITERATIONS] = [0; ITERATIONS];

fn samples() -> &'static mut [u64; ITERATIONS] {
    // SAFETY: only the boot hart runs this guest, and each caller finishes
    // with the buffer before the next call.
    unsafe { &mut *addr_of_mut!(SAMPLES) }
}

fn median(v: &mut [u64]) -> u64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

fn bench(name: &str, value: u64, unit: &str) {
    println!("BENCH: {name} {value} {unit}");
}

fn main(p: &'static Platform, r: &'static Reporter) {
    let tb = p.timebase_hz;
    bench("timebase", tb, "Hz");

    // Calibration: the same loop as below without the call.
    let s = samples();
    for slot in s.iter_mut() {
        let t0 = csr::time();
        let t1 = csr::time();
        *slot = t1.wrapping_sub(t0);
    }
    bench("loop_overhead_median", median(s), "ticks");

    let s = samples();
    let mut failed = None;
    for slot in s.iter_mut() {
        let t0 = csr::time();
        let v = sbi::call(sbi::EID_BASE, sbi::BASE_GET_SPEC_VERSION, [0; 6]);
        let t1 = csr::time();
        *slot = t1.wrapping_sub(t0);
        if v.error != sbi::SUCCESS {
            failed.get_or_insert(v);
        }
    }
    bench("sbi_null_call_median", median(s), "ticks");
    let t0 = csr::time();
    for _ in 0..BATCH {
        let _ = sbi::call(sbi::EID_BASE, sbi::BASE_GET_SPEC_VERSION, [0; 6]);
    }
    let total = csr::time().wrapping_sub(t0);
    bench(
        "sbi_null_call_mean",
        csr::ticks_to_ns(total, tb) / BATCH,
        "ns",
    );
    r.check(
        "sbi-null-call",
        failed.is_none(),
        format_args!(
            "sbi_get_spec_version returned {}",
            failed.unwrap_or(sbi::Ret { error: 0, value: 0 })
        ),
    );

    first_touch(p, r);
}

fn first_touch(p: &Platform, r: &Reporter) {
    let start = p.image.end.next_multiple_of(BLOCK);
    let mut blocks = [0usize; MAX_BLOCKS];
    let mut n = 0;
    let mut b = start;
    while b + BLOCK <= p.ram.end && n < MAX_BLOCKS {
        if !p.in_use(Region::with_size(b, BLOCK)) {
            if let Some(slot) = blocks.get_mut(n) {
                *slot = b;
                n += 1;
            }
        }
        b += BLOCK;
    }
    let blocks = blocks.get(..n).unwrap_or(&[]);
    println!(
        "INFO: bench-guest: first touch of {n} blocks of 2 MiB from {:#x} to {:#x}",
        blocks.first().copied().unwrap_or(0),
        blocks.last().copied().unwrap_or(0)
    );
    if blocks.is_empty() {
        r.fail(
            "first-touch",
            format_args!("no free 2 MiB block above the image in RAM {}", p.ram),
        );
        return;
    }
    let mut first = [0u64; MAX_BLOCKS];
    let mut second = [0u64; MAX_BLOCKS];
    for (i, &a) in blocks.iter().enumerate() {
        let t0 = csr::time();
        // SAFETY: `a` starts a 2 MiB block of RAM above the image that holds
        // nothing in use (checked with `in_use`).
        unsafe { write_volatile(a as *mut u8, i as u8) };
        let t1 = csr::time();
        if let Some(s) = first.get_mut(i) {
            *s = t1.wrapping_sub(t0);
        }
    }
    let mut bad = None;
    for (i, &a) in blocks.iter().enumerate() {
        let t0 = csr::time();
        // SAFETY: as above.
        unsafe { write_volatile((a + 64) as *mut u8, i as u8) };
        let t1 = csr::time();
        if let Some(s) = second.get_mut(i) {
            *s = t1.wrapping_sub(t0);
        }
        // SAFETY: as above.
        let v = unsafe { read_volatile(a as *const u8) };
        if v != i as u8 {
            bad.get_or_insert((a, v, i as u8));
        }
    }
    let first = first.get_mut(..n).unwrap_or(&mut []);
    let max = first.iter().copied().max().unwrap_or(0);
    bench("first_touch_2m_median", median(first), "ticks");
    bench("first_touch_2m_max", max, "ticks");
    bench(
        "second_touch_2m_median",
        median(second.get_mut(..n).unwrap_or(&mut [])),
        "ticks",
    );
    bench("first_touch_2m_blocks", n as u64, "blocks");
    r.check(
        "first-touch",
        bad.is_none(),
        format_args!("read back {:?} (address, got, expected)", bad),
    );
}
