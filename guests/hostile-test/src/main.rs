//! hostile-test: a guest that attacks the machine it runs on, so the
//! containment tests can check that nothing a VM does reaches the hypervisor or
//! another VM. It never prints `DONE:`: it never finishes.
//!
//! Everything random comes from a xorshift generator with a fixed seed
//! (`seed=`), one stream per (round, phase, hart), so a run is reproducible up
//! to the interleaving of the vCPUs.
//!
//! Kernel command line (`/chosen/bootargs`), all optional:
//!
//! - `phase=a,b,…`: the phases to run, in order (default
//!   `wild,sbi,ipi,hsm,dbcn,mmio,spin`). `spin` (unless `spin_ms=` is given)
//!   and `die` never end; without them the list repeats forever, each pass a
//!   "round" (`reboot` reboots only while the VM has been rebooted fewer than
//!   `reboots` times);
//! - `seed=N` (decimal or 0x-hex), `count=N` (operations per vCPU in `wild`, `console`,
//!   `sbi`, `dbcn` and `mmio`, default 2000), `storm_ms=N` (length of the IPI storm,
//!   default 1000), `reboots=N` (cold reboots of `reboot`, default 3),
//!   `die_ms=N` (how long `die` lets the vCPUs spin first, default 500),
//!   `spin_ms=N` (with N > 0, `spin` masks interrupts on every vCPU for N ms
//!   and then ends, so the list goes on and repeats; default 0: forever).
//!
//! Phases (every vCPU the DTB lists takes part; the boot vCPU starts the others
//! with HSM and waits for them):
//!
//! - `wild`: loads, stores, AMOs, LR, FP loads/stores, `cbo.zero` and jumps at
//!   random addresses all over the 64-bit space, just outside RAM and across
//!   its ends, catching its own traps with `expect_trap`;
//! - `sbi`: random SBI calls: EIDs from the real ones and random values,
//!   random FIDs and arguments (calls that would stop, suspend or reset this
//!   VM, or make the SBI write into or print its RAM, are left out);
//! - `ipi`: every vCPU sends IPIs to the others (single, multicast, broadcast,
//!   self) in a tight loop with interrupts on, for `storm_ms`;
//! - `hsm`: start of started harts, start/stop loops racing each other,
//!   `hart_start` to invalid addresses and hart ids, suspend with bad types and
//!   bad resume addresses, a retentive suspend woken by the timer;
//! - `dbcn`: console write/read with wild addresses, huge and overflowing
//!   lengths, non-zero high address halves;
//! - `console`: `count` DBCN writes of 4 KiB per vCPU meant to amplify the
//!   console output, drive the operator's terminal and forge hypervisor lines
//!   (`ferrovisor: VM 'x' powered off`), see `console.rs`;
//! - `mmio`: random accesses of every width and instruction kind to the
//!   devices the DTB lists (this VM's own, emulated), except ones that could
//!   power it off; only digits are written to a UART; a virtio-mmio
//!   transport (`virtio,mmio`) also gets driver-style set-up sequences with
//!   bogus queue addresses (0, random, past and across the end of RAM,
//!   misaligned) and rings of random contents in a scratch buffer, then
//!   queue notifications;
//! - `net`: on the boot vCPU, each virtio-net NIC the DTB lists is set up as
//!   a driver would (its rings in this guest's own buffers) and sent `count`
//!   frames: runts, oversize frames, frames with another source MAC, headers
//!   asking for a checksum offload that was not negotiated and valid
//!   broadcasts, now and then with a storm of notifications; then reset;
//! - `vblk` (boot vCPU only): every virtio-blk the DTB lists gets a driver
//!   gone bad: buffers outside this VM's RAM, overflowing lengths, sectors
//!   past the end, looping and over-long chains, writes to a read-only disk,
//!   bad queue sizes, a reset and a renegotiation mid-request, a
//!   notification storm, beside good requests that must work (see
//!   `vblk.rs`);
//! - `spin`: every vCPU masks interrupts (`csrci sstatus, 2`) and loops
//!   forever (for `spin_ms` with `spin_ms=N`);
//! - `die`: the other vCPUs spin, then the boot vCPU shuts the VM down with SBI
//!   SRST reporting a system failure;
//! - `reboot`: the other vCPUs spin, then the boot vCPU asks for a cold reboot
//!   (`reboots` times per VM life, counted in a RAM word that survives reboots).
//!
//! Progress lines: `INFO: hostile-test: phase <name> done: round <r>, …`.
//! `FAIL:` lines only for containment breaches the guest sees itself: an
//! access outside its RAM and every device its DTB lists that does not trap, a
//! DBCN transfer of a buffer that is not its RAM that succeeds, a `hart_start`
//! to an address outside its RAM that succeeds.
//!
//! Bare QEMU: the checks above assume the hypervisor's rules, so they are made
//! only when the SBI implementation ID is Ferrovisor's. On other SBI
//! implementations the calls known to wreck the machine (OpenSBI reads DBCN
//! buffers in M-mode and hangs; it starts harts at any address) are not made:
//! `sbi`, `dbcn` and `mmio` (the devices are real) are skipped, `hsm` leaves
//! out invalid addresses.
#![no_std]
#![no_main]

mod console;
mod mmio;
mod net;
mod rng;
mod sbicalls;
mod smp;
mod vblk;
mod wild;

use core::arch::asm;
use core::ptr::{read_volatile, write_volatile};
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use fv_guest_rt::platform::{self, for_each_device_range, Region};
use fv_guest_rt::sbi;
use fv_guest_rt::trap::{self, IRQ_SOFTWARE, IRQ_TIMER};
use fv_guest_rt::{csr, hart, hart_id, println, Platform, Reporter, MAX_HARTS};

fv_guest_rt::guest_main!("hostile-test", main);

/// The SBI implementation ID Ferrovisor reports (`sched::SBI_IMPL_ID`).
const FERROVISOR_IMPL_ID: usize = 0x4656_5200;

/// Most phases on the command line.
const MAX_PHASES: usize = 16;
/// Most device ranges remembered from the DTB.
const MAX_DEVICES: usize = 64;

/// A phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Phase {
    /// Wild memory accesses and jumps.
    Wild = 1,
    /// Random SBI calls.
    Sbi = 2,
    /// IPI storm.
    Ipi = 3,
    /// HSM abuse.
    Hsm = 4,
    /// DBCN abuse.
    Dbcn = 5,
    /// Spin with interrupts masked: forever, or for `spin_ms`.
    Spin = 6,
    /// Spin, then SRST shutdown reporting a failure.
    Die = 7,
    /// Spin, then SRST cold reboot.
    Reboot = 8,
    /// Random accesses to this VM's own devices.
    Mmio = 9,
    /// Console abuse through DBCN.
    Console = 10,
    /// Bad frames through this VM's virtio-net NICs.
    Net = 11,
    /// A virtio-blk driver gone bad.
    Vblk = 12,
}

impl Phase {
    const ALL: [Phase; 12] = [
        Phase::Wild,
        Phase::Sbi,
        Phase::Ipi,
        Phase::Hsm,
        Phase::Dbcn,
        Phase::Spin,
        Phase::Die,
        Phase::Reboot,
        Phase::Mmio,
        Phase::Console,
        Phase::Net,
        Phase::Vblk,
    ];

    /// The name used on the command line and in progress lines.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Wild => "wild",
            Phase::Sbi => "sbi",
            Phase::Ipi => "ipi",
            Phase::Hsm => "hsm",
            Phase::Dbcn => "dbcn",
            Phase::Spin => "spin",
            Phase::Die => "die",
            Phase::Reboot => "reboot",
            Phase::Mmio => "mmio",
            Phase::Console => "console",
            Phase::Net => "net",
            Phase::Vblk => "vblk",
        }
    }

    fn from_name(s: &str) -> Option<Phase> {
        Phase::ALL.iter().copied().find(|p| p.name() == s)
    }

    fn from_code(c: usize) -> Option<Phase> {
        Phase::ALL.iter().copied().find(|p| *p as usize == c)
    }
}

/// What the command line asked for.
struct Config {
    phases: [Phase; MAX_PHASES],
    nphases: usize,
    seed: u64,
    count: usize,
    storm_ms: u64,
    reboots: usize,
    die_ms: u64,
    spin_ms: u64,
}

impl Config {
    const DEFAULT_PHASES: [Phase; 7] = [
        Phase::Wild,
        Phase::Sbi,
        Phase::Ipi,
        Phase::Hsm,
        Phase::Dbcn,
        Phase::Mmio,
        Phase::Spin,
    ];

    fn parse(args: &str, r: &Reporter) -> Config {
        let mut c = Config {
            phases: [Phase::Spin; MAX_PHASES],
            nphases: 0,
            seed: 0x5EED_F00D_CAFE_1234,
            count: 2000,
            storm_ms: 1000,
            reboots: 3,
            die_ms: 500,
            spin_ms: 0,
        };
        for arg in args.split_ascii_whitespace() {
            let Some((key, value)) = arg.split_once('=') else {
                continue;
            };
            let num = parse_number(value);
            match (key, num) {
                ("phase" | "phases", _) => {
                    for name in value.split(',').filter(|s| !s.is_empty()) {
                        match (Phase::from_name(name), c.phases.get_mut(c.nphases)) {
                            (Some(p), Some(slot)) => {
                                *slot = p;
                                c.nphases += 1;
                            }
                            (None, _) => r.fail(
                                "bootargs",
                                format_args!("unknown phase `{name}` in `{arg}`"),
                            ),
                            (Some(_), None) => r.fail(
                                "bootargs",
                                format_args!("more than {MAX_PHASES} phases in `{arg}`"),
                            ),
                        }
                    }
                }
                ("seed", Some(n)) => c.seed = n,
                ("count", Some(n)) => c.count = n as usize,
                ("storm_ms", Some(n)) => c.storm_ms = n,
                ("reboots", Some(n)) => c.reboots = n as usize,
                ("die_ms", Some(n)) => c.die_ms = n,
                ("spin_ms", Some(n)) => c.spin_ms = n,
                ("seed" | "count" | "storm_ms" | "reboots" | "die_ms" | "spin_ms", None) => r.fail(
                    "bootargs",
                    format_args!("`{arg}`: not a number (decimal or 0x-hex)"),
                ),
                _ => {}
            }
        }
        if c.nphases == 0 {
            for (slot, p) in c.phases.iter_mut().zip(Self::DEFAULT_PHASES) {
                *slot = p;
            }
            c.nphases = Self::DEFAULT_PHASES.len();
        }
        c
    }

    fn phases(&self) -> &[Phase] {
        self.phases.get(..self.nphases).unwrap_or(&[])
    }
}

fn parse_number(s: &str) -> Option<u64> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

// ---------------------------------------------------------------------------
// State shared by all vCPUs (written by the boot vCPU before it starts others).

/// Seed of the PRNG streams.
static SEED: AtomicUsize = AtomicUsize::new(0);
/// Operations per vCPU in `wild`, `sbi`, `dbcn`.
static COUNT: AtomicUsize = AtomicUsize::new(0);
/// Current round (1-based).
static ROUND: AtomicUsize = AtomicUsize::new(1);
/// Whether the SBI is Ferrovisor's (checks and dangerous calls are made).
static STRICT: AtomicUsize = AtomicUsize::new(0);
/// Workers that finished the current phase.
static FINISHED: AtomicUsize = AtomicUsize::new(0);
/// vCPUs spinning for good.
static SPINNING: AtomicUsize = AtomicUsize::new(0);
/// How long `spin` lasts, `time` ticks; 0: forever.
static SPIN_TICKS: AtomicU64 = AtomicU64::new(0);
/// Device ranges from the DTB: `[start, end)` pairs.
static DEV_START: [AtomicUsize; MAX_DEVICES] = [const { AtomicUsize::new(0) }; MAX_DEVICES];
static DEV_END: [AtomicUsize; MAX_DEVICES] = [const { AtomicUsize::new(0) }; MAX_DEVICES];
static DEV_KIND: [AtomicUsize; MAX_DEVICES] = [const { AtomicUsize::new(0) }; MAX_DEVICES];
static DEV_COUNT: AtomicUsize = AtomicUsize::new(0);

/// What the `mmio` phase may do with a device the DTB lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceKind {
    /// Anything.
    Any,
    /// A UART: only digits are written.
    Uart,
    /// Could power off or reset the VM (syscon, test finisher): not touched.
    Avoid,
    /// A virtio-mmio transport: driver-style register sequences with bogus
    /// queue addresses and rings of random contents (see `mmio.rs`).
    Virtio,
}

impl DeviceKind {
    fn of(node: &str) -> DeviceKind {
        if ["test", "poweroff", "reboot", "syscon"]
            .iter()
            .any(|n| node.contains(n))
        {
            DeviceKind::Avoid
        } else if node.starts_with("serial") || node.starts_with("uart") {
            DeviceKind::Uart
        } else if node.starts_with("virtio_mmio") || node.starts_with("virtio-mmio") {
            DeviceKind::Virtio
        } else {
            DeviceKind::Any
        }
    }
}

/// Number of device ranges recorded from the DTB.
pub fn device_count() -> usize {
    DEV_COUNT.load(Ordering::Acquire).min(MAX_DEVICES)
}

/// Device range `i` from the DTB and what may be done with it.
pub fn device(i: usize) -> Option<(Region, DeviceKind)> {
    if i >= device_count() {
        return None;
    }
    let start = DEV_START.get(i)?.load(Ordering::Relaxed);
    let end = DEV_END.get(i)?.load(Ordering::Relaxed);
    let kind = match DEV_KIND.get(i)?.load(Ordering::Relaxed) {
        0 => DeviceKind::Any,
        1 => DeviceKind::Uart,
        3 => DeviceKind::Virtio,
        _ => DeviceKind::Avoid,
    };
    Some((Region { start, end }, kind))
}
/// FAIL lines printed (breach reports are capped so a broken hypervisor does
/// not flood the log).
static FAILS_PRINTED: AtomicUsize = AtomicUsize::new(0);
/// Timer interrupts taken (any hart).
pub static TIMER_IRQS: AtomicUsize = AtomicUsize::new(0);

/// Whether the SBI implementation is Ferrovisor's.
pub fn strict() -> bool {
    STRICT.load(Ordering::Relaxed) != 0
}

/// The per-vCPU operation count.
pub fn count() -> usize {
    COUNT.load(Ordering::Relaxed)
}

/// The PRNG stream of `phase` on this hart in the current round.
pub fn stream(phase: Phase) -> rng::Rng {
    let round = ROUND.load(Ordering::Relaxed) as u64;
    let id = (round << 16) | ((phase as u64) << 8) | hart_id() as u64;
    rng::Rng::new(SEED.load(Ordering::Relaxed) as u64, id)
}

/// The platform summary (after boot).
pub fn plat() -> &'static Platform {
    platform::get()
}

/// Reports a containment breach (at most 20 lines per run).
pub fn breach(check: &str, detail: core::fmt::Arguments<'_>) {
    if FAILS_PRINTED.fetch_add(1, Ordering::SeqCst) < 20 {
        fv_guest_rt::report::reporter().fail(check, detail);
    }
}

/// True if `[start, start + len)` (saturating) overlaps RAM or a device the
/// DTB lists: memory the guest must not scribble on or that answers.
pub fn claimed(start: usize, len: usize) -> bool {
    let r = Region::with_size(start, len);
    if plat().memory().iter().any(|m| m.overlaps(&r)) {
        return true;
    }
    (0..device_count()).any(|i| device(i).is_some_and(|(d, _)| d.overlaps(&r)))
}

/// True if `[start, start + len)` lies entirely in one RAM region.
pub fn in_ram(start: usize, len: usize) -> bool {
    match start.checked_add(len) {
        Some(end) => plat()
            .memory()
            .iter()
            .any(|m| m.start <= start && end <= m.end),
        None => false,
    }
}

fn record_devices(p: &Platform) {
    let mut n = 0usize;
    if let Some(fdt) = p.fdt() {
        for_each_device_range(&fdt, |node, reg| {
            if reg.is_empty() {
                return;
            }
            if let (Some(s), Some(e), Some(k)) = (DEV_START.get(n), DEV_END.get(n), DEV_KIND.get(n))
            {
                s.store(reg.start, Ordering::Relaxed);
                e.store(reg.end, Ordering::Relaxed);
                k.store(DeviceKind::of(node) as usize, Ordering::Relaxed);
                n += 1;
            }
        });
    }
    DEV_COUNT.store(n, Ordering::Release);
}

fn on_ipi(_irq: usize) {
    smp::count_ipi();
}

fn on_timer(_irq: usize) {
    let _ = sbi::call(sbi::EID_TIME, 0, [usize::MAX, 0, 0, 0, 0, 0]);
    TIMER_IRQS.fetch_add(1, Ordering::SeqCst);
}

// ---------------------------------------------------------------------------
// Workers: the boot vCPU starts every other hart to run a phase with it.

/// Harts other than the boot hart that this runtime can start.
pub fn secondaries() -> impl Iterator<Item = usize> {
    let p = plat();
    p.hart_ids()
        .iter()
        .copied()
        .filter(move |&h| h != p.boot_hart && h < MAX_HARTS)
}

/// `time` ticks in `ms` milliseconds.
pub fn ms(ms: u64) -> u64 {
    csr::ms_to_ticks(ms, plat().timebase_hz)
}

/// Waits (up to 10 s) until hart `h` is STOPPED; true if it is.
pub fn wait_stopped(h: usize) -> bool {
    csr::spin_until(csr::time() + ms(10_000), || {
        let st = sbi::hart_get_status(h);
        st.error == sbi::SUCCESS && st.value == sbi::HART_STOPPED
    })
}

/// Starts every secondary hart on `phase` (after waiting for it to be
/// STOPPED); returns how many started.
fn start_workers(phase: Phase) -> usize {
    FINISHED.store(0, Ordering::SeqCst);
    let mut started = 0;
    for h in secondaries() {
        if !wait_stopped(h) {
            println!(
                "INFO: hostile-test: hart {h} not STOPPED 10 s after its last phase; not started for {}",
                phase.name()
            );
            continue;
        }
        let r = hart::start(h, worker, phase as usize);
        if r.error == sbi::SUCCESS {
            started += 1;
        } else {
            println!(
                "INFO: hostile-test: hart_start({h}) for phase {} returned {r}",
                phase.name()
            );
        }
    }
    started
}

/// Waits (up to `limit_ms`) for `n` workers to finish; returns how many did.
fn wait_workers(n: usize, limit_ms: u64) -> usize {
    csr::spin_until(csr::time() + ms(limit_ms), || {
        FINISHED.load(Ordering::SeqCst) >= n
    });
    FINISHED.load(Ordering::SeqCst)
}

/// Entry of a secondary hart: runs its share of `phase`.
fn worker(_me: usize, phase: usize) {
    match Phase::from_code(phase) {
        Some(Phase::Wild) => wild::body(),
        Some(Phase::Sbi) => sbicalls::sbi_body(),
        Some(Phase::Dbcn) => sbicalls::dbcn_body(),
        Some(Phase::Ipi) => smp::storm(),
        Some(Phase::Mmio) => mmio::body(),
        Some(Phase::Console) => console::body(),
        Some(Phase::Spin) if SPIN_TICKS.load(Ordering::SeqCst) != 0 => spin_timed(),
        Some(Phase::Spin | Phase::Die | Phase::Reboot) => {
            SPINNING.fetch_add(1, Ordering::SeqCst);
            spin_forever()
        }
        Some(Phase::Hsm | Phase::Net | Phase::Vblk) | None => {}
    }
    FINISHED.fetch_add(1, Ordering::SeqCst);
}

/// Runs `phase` on every vCPU: the secondaries as workers, the boot vCPU
/// itself; returns the number of vCPUs that took part and finished.
fn on_all_vcpus(phase: Phase, body: fn()) -> (usize, usize) {
    let started = start_workers(phase);
    body();
    // Generous: with -smp 1 every vCPU of every VM shares one hart.
    let finished = wait_workers(started, 120_000);
    if finished < started {
        println!(
            "INFO: hostile-test: phase {}: only {finished} of {started} secondaries finished within 120 s",
            phase.name()
        );
    }
    (started + 1, finished + 1)
}

/// Masks interrupts and loops forever.
pub fn spin_forever() -> ! {
    // SAFETY: masks this hart's interrupts (sstatus.SIE, sie) and loops on one
    // instruction; touches no memory.
    unsafe {
        asm!(
            "csrci sstatus, 2",
            "csrw sie, zero",
            "1:",
            "j 1b",
            options(noreturn, nomem, nostack)
        )
    }
}

/// Masks this vCPU's interrupts (`sstatus.SIE` and `sie`), loops until
/// `SPIN_TICKS` have passed, then restores both.
fn spin_timed() {
    let sie = csr::sie();
    let enabled = csr::sstatus() & csr::SSTATUS_SIE != 0;
    csr::interrupts_disable();
    csr::sie_clear(sie);
    let end = csr::time() + SPIN_TICKS.load(Ordering::SeqCst);
    while csr::time() < end {
        core::hint::spin_loop();
    }
    csr::sie_set(sie);
    if enabled {
        csr::interrupts_enable();
    }
}

/// Starts the secondaries spinning and waits (up to 10 s) until they all are;
/// returns how many spin.
fn secondaries_spin(phase: Phase) -> usize {
    SPINNING.store(0, Ordering::SeqCst);
    let started = start_workers(phase);
    csr::spin_until(csr::time() + ms(10_000), || {
        SPINNING.load(Ordering::SeqCst) >= started
    });
    SPINNING.load(Ordering::SeqCst)
}

// ---------------------------------------------------------------------------
// Terminal phases.

fn spin_phase() -> ! {
    let n = secondaries_spin(Phase::Spin);
    println!(
        "INFO: hostile-test: phase spin: {} vCPUs spinning forever with interrupts disabled",
        n + 1
    );
    spin_forever()
}

fn die_phase(die_ms: u64) -> ! {
    let n = secondaries_spin(Phase::Die);
    let until = csr::time() + ms(die_ms);
    while csr::time() < until {
        core::hint::spin_loop();
    }
    println!(
        "INFO: hostile-test: phase die: SRST shutdown (system failure) while {n} other vCPUs spin"
    );
    let r = sbi::system_reset(sbi::RESET_TYPE_SHUTDOWN, sbi::RESET_REASON_SYSTEM_FAILURE);
    fv_guest_rt::report::reporter().fail(
        "die-srst-returned",
        format_args!("SRST shutdown returned {r}"),
    );
    spin_forever()
}

const REBOOT_MAGIC: u64 = 0x484F_5354_5245_424F; // "HOSTREBO"

/// Where the reboot counter lives: 16 bytes in the middle of RAM that nothing
/// uses, found the same way on every boot.
fn reboot_word(p: &Platform) -> Option<usize> {
    let mut a = (p.ram.start + p.ram.len() / 2) & !0xfff;
    while a >= p.image.end && a >= p.ram.start {
        if !p.in_use(Region::with_size(a, 16)) {
            return Some(a);
        }
        a -= 4096;
    }
    None
}

fn reboots_so_far(p: &Platform) -> usize {
    let Some(a) = reboot_word(p) else { return 0 };
    // SAFETY: `a` is 16 bytes of the guest's RAM that nothing else uses
    // (`reboot_word`), 8-byte aligned.
    let (magic, n) = unsafe {
        (
            read_volatile(a as *const u64),
            read_volatile((a + 8) as *const u64),
        )
    };
    if magic == REBOOT_MAGIC {
        n as usize
    } else {
        0
    }
}

/// Reboots if this VM has been rebooted fewer than `max` times; returns when
/// the phase is over.
fn reboot_phase(p: &Platform, max: usize) {
    let done = reboots_so_far(p);
    if done >= max {
        println!("INFO: hostile-test: phase reboot done: {done} cold reboots");
        return;
    }
    let Some(a) = reboot_word(p) else {
        println!("INFO: hostile-test: phase reboot done: no free RAM word for the counter");
        return;
    };
    // SAFETY: as in `reboots_so_far`.
    unsafe {
        write_volatile(a as *mut u64, REBOOT_MAGIC);
        write_volatile((a + 8) as *mut u64, (done + 1) as u64);
    }
    csr::fence();
    let n = secondaries_spin(Phase::Reboot);
    let until = csr::time() + ms(200);
    while csr::time() < until {
        core::hint::spin_loop();
    }
    println!(
        "INFO: hostile-test: phase reboot: cold reboot {} of {max} while {n} other vCPUs spin",
        done + 1
    );
    let r = sbi::system_reset(sbi::RESET_TYPE_COLD_REBOOT, sbi::RESET_REASON_NONE);
    fv_guest_rt::report::reporter().fail(
        "reboot-srst-returned",
        format_args!("SRST cold reboot returned {r}"),
    );
    spin_forever()
}

// ---------------------------------------------------------------------------

fn main(p: &'static Platform, r: &'static Reporter) {
    let cfg = Config::parse(p.bootargs(), r);
    SEED.store(cfg.seed as usize, Ordering::Relaxed);
    COUNT.store(cfg.count, Ordering::Relaxed);
    let impl_id = sbi::call(sbi::EID_BASE, sbi::BASE_GET_IMPL_ID, [0; 6]);
    let strict = impl_id.error == sbi::SUCCESS && impl_id.value == FERROVISOR_IMPL_ID;
    STRICT.store(usize::from(strict), Ordering::Relaxed);
    record_devices(p);
    trap::set_handler(IRQ_SOFTWARE, on_ipi);
    trap::set_handler(IRQ_TIMER, on_timer);

    let mut names = fv_guest_rt::report::Name::new("");
    for (i, ph) in cfg.phases().iter().enumerate() {
        if i > 0 {
            names.push(",");
        }
        names.push(ph.name());
    }
    println!(
        "INFO: hostile-test: boot hart {}, harts {:?}, RAM {}, seed {:#x}, count {}, phases {}, reboots so far {}",
        p.boot_hart,
        p.hart_ids(),
        p.ram,
        cfg.seed,
        cfg.count,
        names.as_str(),
        reboots_so_far(p)
    );
    println!(
        "INFO: hostile-test: SBI implementation {:#x}: {}; {} device ranges in the DTB",
        impl_id.value,
        if strict {
            "Ferrovisor, containment checks on"
        } else {
            "not Ferrovisor, containment checks off, machine-wrecking calls left out"
        },
        DEV_COUNT.load(Ordering::Relaxed)
    );

    loop {
        let round = ROUND.load(Ordering::Relaxed);
        for &ph in cfg.phases() {
            match ph {
                Phase::Wild => {
                    wild::reset_stats();
                    let (n, fin) = on_all_vcpus(ph, wild::body);
                    wild::report(round, n, fin);
                }
                Phase::Sbi => {
                    if !strict {
                        println!("INFO: hostile-test: phase sbi done: round {round}, skipped (not Ferrovisor)");
                        continue;
                    }
                    sbicalls::reset_stats();
                    let (n, fin) = on_all_vcpus(ph, sbicalls::sbi_body);
                    sbicalls::report_sbi(round, n, fin);
                }
                Phase::Dbcn => {
                    if !strict {
                        println!("INFO: hostile-test: phase dbcn done: round {round}, skipped (not Ferrovisor)");
                        continue;
                    }
                    sbicalls::reset_stats();
                    let (n, fin) = on_all_vcpus(ph, sbicalls::dbcn_body);
                    sbicalls::report_dbcn(round, n, fin);
                }
                Phase::Mmio => {
                    if !strict {
                        println!("INFO: hostile-test: phase mmio done: round {round}, skipped (not Ferrovisor: the devices are real)");
                        continue;
                    }
                    mmio::reset_stats();
                    let (n, fin) = on_all_vcpus(ph, mmio::body);
                    mmio::report(round, n, fin);
                }
                Phase::Console => {
                    if !strict {
                        println!("INFO: hostile-test: phase console done: round {round}, skipped (not Ferrovisor)");
                        continue;
                    }
                    console::reset_stats();
                    let (n, fin) = on_all_vcpus(ph, console::body);
                    console::report(round, n, fin);
                }
                Phase::Vblk => {
                    if !strict {
                        println!("INFO: hostile-test: phase vblk done: round {round}, skipped (not Ferrovisor: the devices are real)");
                        continue;
                    }
                    vblk::phase(round);
                }
                Phase::Ipi => {
                    smp::storm_prepare(cfg.storm_ms);
                    let (n, fin) = on_all_vcpus(ph, smp::storm);
                    smp::report_storm(round, n, fin);
                }
                Phase::Hsm => smp::hsm_phase(round),
                Phase::Net => {
                    if !strict {
                        println!("INFO: hostile-test: phase net done: round {round}, skipped (not Ferrovisor: the devices are real)");
                        continue;
                    }
                    net::reset_stats();
                    net::body();
                    net::report(round);
                }
                Phase::Spin if cfg.spin_ms != 0 => {
                    SPIN_TICKS.store(ms(cfg.spin_ms), Ordering::SeqCst);
                    let (n, fin) = on_all_vcpus(ph, spin_timed);
                    println!(
                        "INFO: hostile-test: phase spin done: round {round}, {fin}/{n} vCPUs, {} ms each with interrupts disabled",
                        cfg.spin_ms
                    );
                }
                Phase::Spin => spin_phase(),
                Phase::Die => die_phase(cfg.die_ms),
                Phase::Reboot => reboot_phase(p, cfg.reboots),
            }
        }
        ROUND.store(round + 1, Ordering::Relaxed);
        println!("INFO: hostile-test: round {} starts", round + 1);
    }
}
