//! `mmio`: random accesses to this VM's own devices, the ones its DTB lists
//! (under Ferrovisor: emulated by the hypervisor). Any width, offset, value
//! and instruction kind (compressed, AMO, LR, FP, `cbo.zero`, misaligned,
//! jumps into device space); each either completes or traps, and the
//! hypervisor must survive all of it. Devices that could end the VM (syscon,
//! test finisher) are left alone; on a UART only digits are written, so the
//! log stays readable.
//!
//! A virtio-mmio transport (VirtIO 1.2 §4.2) also gets, half of the time,
//! a driver's set-up sequence gone wrong: status and feature writes (now and
//! then refused ones), a random queue index and size, queue addresses from a
//! list of bad ones (0, random, at and across the end of RAM, misaligned) or
//! inside a scratch buffer of random contents (descriptors with random flags,
//! chains that loop, buffers of digits), QueueReady, DRIVER_OK and
//! notifications of real and non-existent queues. Ring addresses are never
//! any other part of this VM's RAM: the device writes its used rings, and
//! this guest must live on. For the same reason random accesses leave the
//! queue address registers alone (they are only read).

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use fv_guest_rt::{println, Region};

use crate::rng::Rng;
use crate::wild::{access, Kind, KINDS};
use crate::{device, device_count, plat, DeviceKind, Phase};

static OPS: AtomicUsize = AtomicUsize::new(0);
static TRAPPED: AtomicUsize = AtomicUsize::new(0);

/// Clears the counters (boot vCPU, before the phase).
pub fn reset_stats() {
    OPS.store(0, Ordering::SeqCst);
    TRAPPED.store(0, Ordering::SeqCst);
    SEQUENCES.store(0, Ordering::SeqCst);
}

/// Prints the progress line.
pub fn report(round: usize, vcpus: usize, finished: usize) {
    // Digits written to the UART share this VM's console line: end it.
    println!();
    let ops = OPS.load(Ordering::SeqCst);
    let trapped = TRAPPED.load(Ordering::SeqCst);
    println!(
        "INFO: hostile-test: phase mmio done: round {round}, {finished}/{vcpus} vCPUs, {ops} device accesses, {} completed, {trapped} trapped, {} virtio set-up sequences",
        ops - trapped,
        SEQUENCES.load(Ordering::SeqCst)
    );
}

/// Kinds whose written value is the one given (or that only read): the only
/// ones used on a UART, so what it prints is a digit.
fn uart_safe(k: Kind) -> bool {
    !matches!(k, Kind::AmoAddW | Kind::AmoSwapD | Kind::Fsd)
}

/// An offset into `r`: mostly the first registers, sometimes PLIC-style
/// context blocks (0x20_0000 + 0x1000 × n), sometimes anywhere.
fn offset(rng: &mut Rng, r: Region) -> usize {
    let len = r.len().max(1);
    let off = match rng.below(4) {
        0 | 1 => rng.below(0x40.min(len)),
        2 => match rng.below(3) {
            0 => rng.below(0x3000),
            1 => 0x20_0000 + rng.below(16) * 0x1000 + rng.below(16),
            _ => 0x2000 + rng.below(16) * 0x80 + rng.below(0x80),
        },
        _ => rng.below(len),
    };
    off % len
}

/// virtio-mmio register offsets (VirtIO 1.2 §4.2.2), also for `vblk`.
pub(crate) mod reg {
    pub const DEVICE_ID: usize = 0x008;
    pub const DEVICE_FEATURES: usize = 0x010;
    pub const DEVICE_FEATURES_SEL: usize = 0x014;
    pub const DRIVER_FEATURES: usize = 0x020;
    pub const DRIVER_FEATURES_SEL: usize = 0x024;
    pub const QUEUE_SEL: usize = 0x030;
    pub const QUEUE_NUM: usize = 0x038;
    pub const QUEUE_READY: usize = 0x044;
    pub const QUEUE_NOTIFY: usize = 0x050;
    pub const INTERRUPT_ACK: usize = 0x064;
    pub const STATUS: usize = 0x070;
    pub const QUEUE_DESC_LOW: usize = 0x080;
    pub const QUEUE_DRIVER_LOW: usize = 0x090;
    pub const QUEUE_DEVICE_LOW: usize = 0x0a0;
    /// End of the queue address registers (QueueDeviceHigh + 4).
    pub const QUEUE_ADDR_END: usize = 0x0a8;
    /// virtio-blk's `capacity` (le64) in the configuration space.
    pub const CAPACITY: usize = 0x100;
}

/// Words of the scratch buffer rings may point into (16 KiB: a 64-entry
/// queue's rings fit anywhere in its first 12 KiB).
const SCRATCH_WORDS: usize = 2048;
/// Where queue rings may lie in RAM: nowhere else (the device writes used
/// rings). Shared by every vCPU, which scribble on it at once.
static SCRATCH: [AtomicU64; SCRATCH_WORDS] = [const { AtomicU64::new(0) }; SCRATCH_WORDS];
/// Bytes of [`DIGITS`]: more than the device reads of one chain (its 4 KiB
/// output sink) past any address descriptors are given (within its first 32
/// bytes), so whatever length a random word lends a descriptor, the console
/// shows digits and never this guest's other memory (its strings include
/// `FAIL:`).
const DIGITS_LEN: usize = 8192;
/// What valid-looking descriptors point at.
static DIGITS: [u8; DIGITS_LEN] = digits();

const fn digits() -> [u8; DIGITS_LEN] {
    let mut d = [0u8; DIGITS_LEN];
    let mut i = 0;
    while i < DIGITS_LEN {
        d[i] = b'0' + (i % 10) as u8;
        i += 1;
    }
    d
}

/// Sequences run against virtio-mmio transports.
static SEQUENCES: AtomicUsize = AtomicUsize::new(0);

fn scratch_base() -> usize {
    SCRATCH.as_ptr() as usize
}

/// A queue ring address no part of this VM but the scratch buffer lies at.
/// `written`: the device writes this ring (the used ring), so it may not
/// straddle the end of RAM either (its first bytes would be this VM's).
fn ring_address(rng: &mut Rng, len: usize, written: bool) -> u64 {
    let ram_end = plat().memory().first().map_or(0, |m| m.end);
    let scratch = scratch_base();
    // Half of the time a bad address, half of the time the scratch buffer.
    match rng.below(12) {
        0 => 0,
        1 => rng.next(),
        // At the end of RAM, and straddling it.
        2 => ram_end as u64,
        3 if !written => ram_end.saturating_sub(len / 2) as u64,
        3 => ram_end as u64 + 4,
        4 => (scratch + 1 + rng.below(3)) as u64, // misaligned
        5 => u64::MAX - rng.below(len.max(1)) as u64, // wraps
        _ => (scratch + (rng.below(SCRATCH_WORDS * 8 - 0x1000 - len.min(0x1000)) & !15)) as u64,
    }
}

/// Random scratch contents with some descriptors made to look right: a
/// buffer of digits, random flags (NEXT, WRITE, INDIRECT), a random next.
fn scribble(rng: &mut Rng) {
    for _ in 0..rng.below(64) {
        let i = rng.below(SCRATCH_WORDS);
        let v = if rng.one_in(2) {
            // Descriptor first word: an address; or ring indices.
            if rng.one_in(2) {
                (DIGITS.as_ptr() as u64).wrapping_add(rng.below(32) as u64)
            } else {
                rng.next() & 0x003f_003f_003f_003f
            }
        } else if rng.one_in(2) {
            // Descriptor second word: len | flags << 32 | next << 48.
            (rng.below(33) as u64) | ((rng.below(8) as u64) << 32) | ((rng.below(64) as u64) << 48)
        } else {
            rng.next()
        };
        if let Some(w) = SCRATCH.get(i) {
            w.store(v, Ordering::Relaxed);
        }
    }
}

/// The scratch word at guest-physical `addr`, if `addr` is a word of it.
fn scratch_word(addr: u64) -> Option<&'static AtomicU64> {
    let off = usize::try_from(addr).ok()?.checked_sub(scratch_base())?;
    if off % 8 != 0 {
        return None;
    }
    SCRATCH.get(off / 8)
}

/// When the descriptor table and available ring lie in the scratch buffer:
/// descriptor 0 a buffer of digits, and a few available entries naming it,
/// so some chains really reach the device's transmit path (or its receive
/// path, whichever queue this is).
fn well_formed(rng: &mut Rng, desc: u64, avail: u64) {
    let (Some(d0), Some(d1), Some(a0), Some(a1)) = (
        scratch_word(desc),
        scratch_word(desc.wrapping_add(8)),
        scratch_word(avail),
        scratch_word(avail.wrapping_add(8)),
    ) else {
        return;
    };
    d0.store(
        (DIGITS.as_ptr() as u64).wrapping_add(rng.below(32) as u64),
        Ordering::Relaxed,
    );
    // len 1..=64, no flags, next 0.
    d1.store(1 + rng.below(64) as u64, Ordering::Relaxed);
    // flags 0, idx 1..=4, ring[0..4] = 0 (descriptor 0).
    a0.store((1 + rng.below(4) as u64) << 16, Ordering::Relaxed);
    a1.store(0, Ordering::Relaxed);
}

/// One driver-style set-up of a virtio-mmio transport at `base` gone wrong.
/// Returns (accesses, trapped).
fn virtio_sequence(rng: &mut Rng, base: usize) -> (usize, usize) {
    let mut ops = 0;
    let mut trapped = 0;
    let mut w = |off: usize, v: u64| {
        ops += 1;
        if access(Kind::Sw, base + off, v as usize).is_some() {
            trapped += 1;
        }
    };
    if !rng.one_in(3) {
        w(reg::STATUS, 0); // reset (also out of DEVICE_NEEDS_RESET)
    }
    w(reg::STATUS, 1);
    w(reg::STATUS, 3);
    w(reg::DRIVER_FEATURES_SEL, 0);
    w(reg::DRIVER_FEATURES, rng.next() & ((1 << 28) | (1 << 29)));
    w(reg::DRIVER_FEATURES_SEL, 1);
    // VERSION_1, or now and then something refused.
    w(
        reg::DRIVER_FEATURES,
        if rng.one_in(8) { rng.next() } else { 1 },
    );
    w(reg::STATUS, 0xb);
    w(reg::QUEUE_SEL, rng.below(3) as u64);
    let num = [1u64, 2, 8, 64, 3, 128, 0, rng.next()];
    w(reg::QUEUE_NUM, rng.pick(&num).unwrap_or(8));
    let mut rings = [0u64; 3];
    for ((low, len, written), ring) in [
        (reg::QUEUE_DESC_LOW, 16 * 64, false),
        (reg::QUEUE_DRIVER_LOW, 6 + 2 * 64, false),
        (reg::QUEUE_DEVICE_LOW, 6 + 8 * 64, true),
    ]
    .into_iter()
    .zip(rings.iter_mut())
    {
        let a = ring_address(rng, len, written);
        *ring = a;
        w(low, a & 0xffff_ffff);
        w(low + 4, a >> 32);
    }
    scribble(rng);
    if rng.one_in(2) {
        well_formed(rng, rings[0], rings[1]);
    }
    w(reg::QUEUE_READY, 1);
    w(reg::STATUS, 0xf);
    for _ in 0..=rng.below(4) {
        let q = if rng.one_in(8) {
            rng.next()
        } else {
            rng.below(3) as u64
        };
        w(reg::QUEUE_NOTIFY, q);
    }
    if rng.one_in(4) {
        w(reg::INTERRUPT_ACK, rng.next());
    }
    (ops, trapped)
}

/// This vCPU's share of the phase.
pub fn body() {
    let n = device_count();
    let mut rng = crate::stream(Phase::Mmio);
    let usable: usize = (0..n)
        .filter(|&i| device(i).is_some_and(|(_, k)| k != DeviceKind::Avoid))
        .count();
    if usable == 0 {
        return;
    }
    for _ in 0..crate::count() {
        let Some((r, kind)) = device(rng.below(n)) else {
            continue;
        };
        if kind == DeviceKind::Avoid || r.is_empty() {
            continue;
        }
        if kind == DeviceKind::Virtio && rng.one_in(2) {
            let (ops, trapped) = virtio_sequence(&mut rng, r.start);
            OPS.fetch_add(ops, Ordering::Relaxed);
            TRAPPED.fetch_add(trapped, Ordering::Relaxed);
            SEQUENCES.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let off = offset(&mut rng, r);
        let a = r.start + off;
        let mut k = rng.pick(&KINDS).unwrap_or(Kind::Lw);
        if kind == DeviceKind::Virtio && (reg::QUEUE_DESC_LOW..reg::QUEUE_ADDR_END).contains(&off) {
            // Ring addresses come only from `ring_address`.
            k = Kind::Lw;
        }
        let mut v = rng.word();
        if kind == DeviceKind::Uart {
            if !uart_safe(k) {
                k = Kind::Sb;
            }
            v = usize::from(b'0') + v % 10;
        }
        OPS.fetch_add(1, Ordering::Relaxed);
        if access(k, a, v).is_some() {
            TRAPPED.fetch_add(1, Ordering::Relaxed);
        }
    }
}
