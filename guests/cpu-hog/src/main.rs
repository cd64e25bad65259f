//! cpu-hog: CPU-bound work on every hart, for scheduler tests.
//!
//! Every hart in the device tree is started (SBI HSM) and runs the same busy
//! loop with interrupts masked: chunks of [`CHUNK_ITERATIONS`] steps of an LCG,
//! never waiting for anything, so the only way another vCPU gets the hart is
//! preemption by the hypervisor. Each hart prints
//!
//!     INFO: cpu-hog: hart <id> progress <chunks>
//!
//! every `ms` milliseconds of guest time (through the runtime's console, SBI
//! DBCN).
//!
//! Kernel command line (`/chosen/bootargs`), all optional:
//!
//! - `ms=<n>`: progress line period, milliseconds (default 500; 0: none).
//! - `chunks=<n>`: each hart stops after `n` chunks; the boot hart then waits
//!   (up to 300 s) for the others and checks that each finished
//!   (`hart-<id>-finished`) and that they ran interleaved: every hart had done
//!   a quarter of its chunks before any hart was done with all of them
//!   (`interleaved`), which only holds if the harts share the CPU by time
//!   slices rather than one after the other. Then `DONE:` and SRST shutdown.
//!   Without `chunks=` the harts run forever.
//! - `idle`: no work at all: the boot hart waits for an interrupt with every
//!   interrupt disabled, forever (a VM that keeps the machine running and
//!   costs nothing); no other hart is started.
//! - `touch`: touches all of its RAM once it is told to, for the memory tests:
//!   prints `INFO: cpu-hog: touch: <n> MiB of RAM, waiting for a key`, waits
//!   for a byte on its UART, then stores to every 4 KiB page of every
//!   `/memory` region (a pattern where the page is free, the value already
//!   there where it is in use: image, stacks, DTB), reads the patterns back
//!   (`touched-all-ram`) and prints `INFO: cpu-hog: touched <n> MiB`; then it
//!   idles as with `idle`.
//! - `probe=<ms>`: the scheduler probe of `ferrovisor bench --sched`, on the
//!   boot hart only. For `ms` milliseconds it reads `time` in a tight loop with
//!   interrupts masked and records every *gap*: two consecutive reads more than
//!   `gap_us=<n>` microseconds apart (default 20), i.e. a stretch in which this
//!   vCPU did not run (an exit, another vCPU's time slice, or QEMU's own
//!   stalls). Before that it times [`NULL_CALLS`] SBI calls that do nothing
//!   (`sbi_get_spec_version`: one exit that returns to the same vCPU). It then
//!   prints
//!
//!       INFO: probe: null-call median <ticks> of <n>
//!       INFO: probe: start <t0> ticks <duration> reads <n> gaps <g> dropped <d> threshold <ticks> timebase <hz>
//!       PROBE: <start>+<length> <start>+<length> ...
//!
//!   with each gap's start (the last read before it) as an offset from `t0`
//!   and its length, in ticks of `time`; at most [`MAX_GAPS`] gaps are kept
//!   (`dropped` counts the rest). `t0` is absolute, so the probes of several
//!   VMs on one hart (whose clocks are the host's) can be laid on one
//!   timeline. Then `DONE:` and SRST shutdown.
#![no_std]
#![no_main]

use core::ptr::{read_volatile, write_volatile};
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use fv_guest_rt::platform::for_each_device_range;
use fv_guest_rt::{csr, hart, hart_id, print, println, sbi, Platform, Region, Reporter, MAX_HARTS};

fv_guest_rt::guest_main!("cpu-hog", main);

/// LCG steps per chunk of work (a few milliseconds under QEMU TCG).
const CHUNK_ITERATIONS: u64 = 1 << 20;
/// How long the boot hart waits for the others in `chunks=` mode.
const WAIT_MS: u64 = 300_000;
/// Guest time at which a hart had done a quarter of its chunks (0: not yet).
static QUARTER_AT: [AtomicU64; MAX_HARTS] = [const { AtomicU64::new(0) }; MAX_HARTS];
/// Guest time at which a hart was done (0: not yet).
static DONE_AT: [AtomicU64; MAX_HARTS] = [const { AtomicU64::new(0) }; MAX_HARTS];
/// Harts that entered the work loop.
static STARTED: AtomicUsize = AtomicUsize::new(0);
/// Gaps `probe=` keeps.
const MAX_GAPS: usize = 4096;
/// SBI calls `probe=` times first.
const NULL_CALLS: usize = 501;
/// Gaps per `PROBE:` line.
const GAPS_PER_LINE: usize = 8;
/// `probe=`'s gaps: start offset (high 32 bits) and length (low 32), ticks.
static GAPS: [AtomicU64; MAX_GAPS] = [const { AtomicU64::new(0) }; MAX_GAPS];

#[derive(Clone, Copy)]
struct Config {
    /// Progress period in timer ticks (0: never).
    period: u64,
    /// Chunks per hart (`None`: forever).
    chunks: Option<u64>,
    idle: bool,
    /// `touch`: touch all RAM on a key, then idle.
    touch: bool,
    /// `probe=`: how long to probe, ticks.
    probe: Option<u64>,
    /// `gap_us=`: the shortest gap `probe=` records, ticks.
    gap: u64,
}

static CONFIG_PERIOD: AtomicU64 = AtomicU64::new(0);
/// `u64::MAX` means forever.
static CONFIG_CHUNKS: AtomicU64 = AtomicU64::new(u64::MAX);

fn parse(args: &str, timebase: u64, r: &Reporter) -> Config {
    let mut c = Config {
        period: csr::ms_to_ticks(500, timebase),
        chunks: None,
        idle: false,
        touch: false,
        probe: None,
        gap: csr::ms_to_ticks(1, timebase) / 50,
    };
    for arg in args.split_ascii_whitespace() {
        match arg.split_once('=') {
            Some(("ms", v)) => match v.parse::<u64>() {
                Ok(ms) => c.period = csr::ms_to_ticks(ms, timebase),
                Err(_) => r.fail("bootargs", format_args!("`{arg}`: not a number")),
            },
            Some(("chunks", v)) => match v.parse::<u64>() {
                Ok(n) if n >= 4 => c.chunks = Some(n),
                _ => r.fail("bootargs", format_args!("`{arg}`: need a number >= 4")),
            },
            Some(("probe", v)) => match v.parse::<u64>() {
                Ok(ms) if (1..=600_000).contains(&ms) => {
                    c.probe = Some(csr::ms_to_ticks(ms, timebase));
                }
                _ => r.fail("bootargs", format_args!("`{arg}`: need 1..=600000 ms")),
            },
            Some(("gap_us", v)) => match v.parse::<u64>() {
                Ok(us) if us >= 1 => c.gap = (timebase.saturating_mul(us) / 1_000_000).max(1),
                _ => r.fail("bootargs", format_args!("`{arg}`: need a number >= 1")),
            },
            None if arg == "idle" => c.idle = true,
            None if arg == "touch" => c.touch = true,
            _ => {}
        }
    }
    c
}

/// One chunk of work the compiler cannot remove.
#[inline(never)]
fn chunk(mut x: u64) -> u64 {
    for _ in 0..CHUNK_ITERATIONS {
        x = core::hint::black_box(
            x.wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407),
        );
    }
    x
}

/// The work loop of one hart; returns when its chunks are done (never without
/// `chunks=`).
fn work(me: usize, _arg: usize) {
    csr::interrupts_disable();
    STARTED.fetch_add(1, Ordering::SeqCst);
    let period = CONFIG_PERIOD.load(Ordering::SeqCst);
    let total = CONFIG_CHUNKS.load(Ordering::SeqCst);
    let quarter = total / 4;
    let mut x = me as u64;
    let mut done: u64 = 0;
    let mut next = csr::time().saturating_add(period);
    while done < total {
        x = chunk(x);
        done += 1;
        let now = csr::time();
        if done == quarter {
            if let Some(q) = QUARTER_AT.get(me) {
                q.store(now.max(1), Ordering::SeqCst);
            }
        }
        if period != 0 && now >= next {
            println!("INFO: cpu-hog: hart {me} progress {done}");
            next = next.saturating_add(period).max(now);
        }
    }
    core::hint::black_box(x);
    let now = csr::time();
    println!("INFO: cpu-hog: hart {me} finished {done} chunks");
    if let Some(d) = DONE_AT.get(me) {
        d.store(now.max(1), Ordering::SeqCst);
    }
}

/// Pattern stored in a free page at `addr`.
fn pattern(addr: usize) -> u64 {
    (addr as u64) ^ 0x70c4_ed00_5eed_0000
}

/// The UART the device tree names (its first `serial` node), if any.
fn uart(p: &Platform) -> Option<usize> {
    let mut at = None;
    if let Some(fdt) = p.fdt() {
        for_each_device_range(&fdt, |node, reg| {
            if at.is_none() && node.starts_with("serial") && !reg.is_empty() {
                at = Some(reg.start);
            }
        });
    }
    at
}

/// Waits until the UART at `base` (an ns16550a) has received a byte; takes it.
fn wait_for_key(base: usize, timebase: u64) {
    const RBR: usize = 0;
    const LSR: usize = 5;
    const LSR_DR: u8 = 1;
    loop {
        // SAFETY: `base` is the UART the device tree names; its LSR and RBR
        // are byte registers that may be read at any time.
        if unsafe { read_volatile((base + LSR) as *const u8) } & LSR_DR != 0 {
            // SAFETY: as above.
            let _ = unsafe { read_volatile((base + RBR) as *const u8) };
            return;
        }
        let later = csr::time().saturating_add(csr::ms_to_ticks(1, timebase));
        csr::spin_until(later, || false);
    }
}

/// `touch`: see the module documentation.
fn touch_all_ram(p: &Platform, r: &Reporter) -> ! {
    const PAGE: usize = 4096;
    let total: usize = p.memory().iter().map(Region::len).sum();
    let Some(base) = uart(p) else {
        r.fail(
            "touched-all-ram",
            format_args!("no UART in the device tree"),
        );
        idle_forever();
    };
    println!(
        "INFO: cpu-hog: touch: {} MiB of RAM, waiting for a key",
        total >> 20
    );
    wait_for_key(base, p.timebase_hz);
    let pages = || {
        p.memory()
            .iter()
            .flat_map(|m| (m.start..m.end).step_by(PAGE))
            .map(|a| (a, p.in_use(Region::with_size(a, PAGE))))
    };
    for (a, in_use) in pages() {
        let w = a as *mut u64;
        // SAFETY: `a` is a page of this guest's RAM; a page in use gets the
        // value it already holds (one hart runs, interrupts are off), a free
        // page a pattern.
        unsafe {
            let v = if in_use { read_volatile(w) } else { pattern(a) };
            write_volatile(w, v);
        }
    }
    let mut bad = 0usize;
    let mut first_bad = 0usize;
    for (a, _) in pages().filter(|(_, in_use)| !in_use) {
        // SAFETY: a free page of this guest's RAM, written above.
        if unsafe { read_volatile(a as *const u64) } != pattern(a) {
            if bad == 0 {
                first_bad = a;
            }
            bad += 1;
        }
    }
    r.check(
        "touched-all-ram",
        bad == 0,
        format_args!("{bad} pages lost what was stored, the first at {first_bad:#x}"),
    );
    println!("INFO: cpu-hog: touched {} MiB", total >> 20);
    idle_forever();
}

fn idle_forever() -> ! {
    println!("INFO: cpu-hog: idle");
    loop {
        csr::interrupts_disable();
        csr::sie_clear(usize::MAX);
        csr::wfi();
    }
}

/// `probe=`: records the gaps in this vCPU's run for `duration` ticks, then
/// prints them (see the module documentation).
fn probe(duration: u64, threshold: u64, timebase: u64) {
    csr::interrupts_disable();
    let mut calls = [0u32; NULL_CALLS];
    for c in calls.iter_mut() {
        let t0 = csr::time();
        let _ = sbi::call(sbi::EID_BASE, sbi::BASE_GET_SPEC_VERSION, [0; 6]);
        *c = u32::try_from(csr::time().wrapping_sub(t0)).unwrap_or(u32::MAX);
    }
    calls.sort_unstable();
    println!(
        "INFO: probe: null-call median {} of {NULL_CALLS}",
        calls[NULL_CALLS / 2]
    );
    let start = csr::time();
    let end = start.saturating_add(duration);
    let mut prev = start;
    let mut reads: u64 = 0;
    let mut kept = 0usize;
    let mut dropped: u64 = 0;
    while prev < end {
        let now = csr::time();
        reads += 1;
        let gap = now.wrapping_sub(prev);
        if gap >= threshold {
            // Offsets and lengths fit 32 bits for probes up to 429 s at 10 MHz
            // (probe= allows at most 600 s at any timebase: saturate).
            let off = u32::try_from(prev - start).unwrap_or(u32::MAX);
            let len = u32::try_from(gap).unwrap_or(u32::MAX);
            match GAPS.get(kept) {
                Some(g) => {
                    g.store((u64::from(off) << 32) | u64::from(len), Ordering::Relaxed);
                    kept += 1;
                }
                None => dropped += 1,
            }
        }
        prev = now;
    }
    println!(
        "INFO: probe: start {start} ticks {} reads {reads} gaps {kept} dropped {dropped} threshold {threshold} timebase {timebase}",
        prev - start
    );
    for (i, g) in GAPS.iter().take(kept).enumerate() {
        if i % GAPS_PER_LINE == 0 {
            print!("PROBE:");
        }
        let v = g.load(Ordering::Relaxed);
        print!(" {}+{}", v >> 32, v & u64::from(u32::MAX));
        if i % GAPS_PER_LINE == GAPS_PER_LINE - 1 || i + 1 == kept {
            println!();
        }
    }
}

fn main(p: &'static Platform, r: &'static Reporter) {
    let c = parse(p.bootargs(), p.timebase_hz, r);
    if c.idle {
        idle_forever();
    }
    if c.touch {
        csr::interrupts_disable();
        touch_all_ram(p, r);
    }
    if let Some(duration) = c.probe {
        probe(duration, c.gap, p.timebase_hz);
        return;
    }
    CONFIG_PERIOD.store(c.period, Ordering::SeqCst);
    CONFIG_CHUNKS.store(c.chunks.unwrap_or(u64::MAX), Ordering::SeqCst);
    let me = hart_id();
    let mut harts = [usize::MAX; MAX_HARTS];
    let mut n = 0;
    for &h in p.hart_ids().iter().filter(|&&h| h != me && h < MAX_HARTS) {
        let ret = hart::start(h, work, 0);
        if r.check(
            "hart-start",
            ret.error == 0,
            format_args!("hart_start({h}) returned {ret}"),
        ) {
            if let Some(s) = harts.get_mut(n) {
                *s = h;
                n += 1;
            }
        }
    }
    println!(
        "INFO: cpu-hog: {} hart(s) working, chunks={}",
        n + 1,
        c.chunks.map_or(-1, |v| v as i64)
    );
    work(me, 0);
    // Only with `chunks=`: wait for the others, then judge.
    let all = harts.iter().take(n).copied().chain(core::iter::once(me));
    let deadline = csr::time().saturating_add(csr::ms_to_ticks(WAIT_MS, p.timebase_hz));
    let finished = |h: usize| {
        DONE_AT
            .get(h)
            .is_some_and(|d| d.load(Ordering::SeqCst) != 0)
    };
    csr::spin_until(deadline, || all.clone().all(finished));
    let mut first_done = u64::MAX;
    let mut last_quarter = 0;
    for h in all.clone() {
        let mut name = fv_guest_rt::report::name("hart-", h);
        name.push("-finished");
        r.check(
            name.as_str(),
            finished(h),
            format_args!("hart {h} did not finish its chunks within {WAIT_MS} ms"),
        );
        if let (Some(q), Some(d)) = (QUARTER_AT.get(h), DONE_AT.get(h)) {
            last_quarter = last_quarter.max(q.load(Ordering::SeqCst));
            let d = d.load(Ordering::SeqCst);
            if d != 0 {
                first_done = first_done.min(d);
            }
        }
    }
    if n > 0 {
        r.check(
            "interleaved",
            last_quarter < first_done,
            format_args!(
                "a hart finished (time {first_done}) before every hart had done a quarter (last at {last_quarter}): no time slicing"
            ),
        );
    }
    println!(
        "INFO: cpu-hog: {} harts started work",
        STARTED.load(Ordering::SeqCst)
    );
}
