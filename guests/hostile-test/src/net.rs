//! `net`: this VM's virtio-net NICs (virtio-mmio devices with device ID 1),
//! driven as a driver would, but sending what a driver must not: runt
//! frames, oversize frames, frames with another source MAC, headers asking
//! for checksum offload that was not negotiated, notification storms, and
//! valid broadcasts (its own MAC) that flood the switch. Its rings and frames
//! live in buffers of this guest's own; the device writes only the used ring.
//! Each NIC is reset at the end (status 0).

use core::sync::atomic::{fence, AtomicU64, AtomicUsize, Ordering};

use fv_guest_rt::println;

use crate::rng::Rng;
use crate::{device, device_count, DeviceKind, Phase};

/// Queue size used for the transmit queue.
const QSIZE: usize = 8;
/// Bytes of one frame buffer (12-byte header + at most 2036 bytes of frame).
const SLOT: usize = 2048;

/// Descriptor table (words 0..16), available ring (words 16..19), used ring
/// (from word 32): the transmit queue's rings.
#[repr(C, align(4096))]
struct Rings([AtomicU64; 64]);
static RINGS: Rings = Rings([const { AtomicU64::new(0) }; 64]);

#[repr(C, align(4096))]
struct Frames([AtomicU64; QSIZE * SLOT / 8]);
static FRAMES: Frames = Frames([const { AtomicU64::new(0) }; QSIZE * SLOT / 8]);

/// Frames sent by kind: runt, oversize, spoofed, bad header, valid.
static SENT: [AtomicUsize; 5] = [const { AtomicUsize::new(0) }; 5];
static NICS: AtomicUsize = AtomicUsize::new(0);

const MAGIC_VALUE: usize = 0x000;
const DEVICE_ID: usize = 0x008;
const DRIVER_FEATURES: usize = 0x020;
const DRIVER_FEATURES_SEL: usize = 0x024;
const QUEUE_SEL: usize = 0x030;
const QUEUE_NUM: usize = 0x038;
const QUEUE_READY: usize = 0x044;
const QUEUE_NOTIFY: usize = 0x050;
const STATUS: usize = 0x070;
const QUEUE_DESC_LOW: usize = 0x080;
const QUEUE_DRIVER_LOW: usize = 0x090;
const QUEUE_DEVICE_LOW: usize = 0x0a0;
const CONFIG: usize = 0x100;
/// `transmitq1`.
const TRANSMITQ: u32 = 1;

fn rd(base: usize, off: usize) -> u32 {
    // SAFETY: `base` is a virtio-mmio register block this VM's device tree
    // lists (its own, emulated device); a 32-bit read of a register.
    unsafe { core::ptr::read_volatile((base + off) as *const u32) }
}

fn rd8(base: usize, off: usize) -> u8 {
    // SAFETY: as in `rd`: a byte of the device's configuration space.
    unsafe { core::ptr::read_volatile((base + off) as *const u8) }
}

fn wr(base: usize, off: usize, v: u32) {
    // SAFETY: as in `rd`: a 32-bit register write to this VM's own device.
    unsafe { core::ptr::write_volatile((base + off) as *mut u32, v) }
}

/// Clears the counters (boot vCPU, before the phase).
pub fn reset_stats() {
    for c in &SENT {
        c.store(0, Ordering::Relaxed);
    }
    NICS.store(0, Ordering::Relaxed);
}

/// Prints the progress line.
pub fn report(round: usize) {
    let n = |i: usize| SENT.get(i).map_or(0, |c| c.load(Ordering::Relaxed));
    println!(
        "INFO: hostile-test: phase net done: round {round}, {} NICs, {} runt, {} oversize, {} spoofed, {} bad header, {} valid frames sent",
        NICS.load(Ordering::Relaxed),
        n(0),
        n(1),
        n(2),
        n(3),
        n(4)
    );
}

/// Writes the frame of slot `slot`: byte `i` is `byte(i)`, `len` bytes.
fn fill(slot: usize, len: usize, byte: impl Fn(usize) -> u8) {
    for w in 0..len.div_ceil(8) {
        let mut v = 0u64;
        for b in 0..8 {
            v |= u64::from(byte(w * 8 + b)) << (8 * b);
        }
        if let Some(word) = FRAMES.0.get(slot * SLOT / 8 + w) {
            word.store(v, Ordering::Relaxed);
        }
    }
}

/// The phase (boot vCPU only).
pub fn body() {
    let mut rng = crate::stream(Phase::Net);
    for i in 0..device_count() {
        let Some((r, DeviceKind::Virtio)) = device(i) else {
            continue;
        };
        let base = r.start;
        if rd(base, MAGIC_VALUE) != 0x7472_6976 || rd(base, DEVICE_ID) != 1 {
            continue;
        }
        NICS.fetch_add(1, Ordering::Relaxed);
        attack(base, &mut rng);
    }
}

fn attack(base: usize, rng: &mut Rng) {
    wr(base, STATUS, 0);
    wr(base, STATUS, 1);
    wr(base, STATUS, 3);
    wr(base, DRIVER_FEATURES_SEL, 0);
    wr(base, DRIVER_FEATURES, 1 << 5); // VIRTIO_NET_F_MAC
    wr(base, DRIVER_FEATURES_SEL, 1);
    wr(base, DRIVER_FEATURES, 1); // VIRTIO_F_VERSION_1
    wr(base, STATUS, 0xb);
    let rings = RINGS.0.as_ptr() as u64;
    wr(base, QUEUE_SEL, TRANSMITQ);
    wr(base, QUEUE_NUM, QSIZE as u32);
    for (reg, addr) in [
        (QUEUE_DESC_LOW, rings),
        (QUEUE_DRIVER_LOW, rings + 128),
        (QUEUE_DEVICE_LOW, rings + 256),
    ] {
        wr(base, reg, addr as u32);
        wr(base, reg + 4, (addr >> 32) as u32);
    }
    // Available ring: entry j names descriptor j; flags 0.
    if let (Some(w17), Some(w18)) = (RINGS.0.get(17), RINGS.0.get(18)) {
        w17.store(2 | 3 << 16 | 4 << 32 | 5 << 48, Ordering::Relaxed);
        w18.store(6 | 7 << 16, Ordering::Relaxed);
    }
    wr(base, QUEUE_READY, 1);
    wr(base, STATUS, 0xf);
    let mac: [u8; 6] = core::array::from_fn(|k| rd8(base, CONFIG + k));
    let mut idx: u16 = 0;
    for k in 0..crate::count() {
        let slot = k % QSIZE;
        let kind = rng.below(5);
        let other = rng.next().to_le_bytes();
        let len = match kind {
            0 => 12 + rng.below(14),
            1 => 12 + 1515 + rng.below(SLOT - 12 - 1515),
            _ => 12 + 60,
        };
        fill(slot, len, |i| match i {
            0 if kind == 3 => 1, // VIRTIO_NET_HDR_F_NEEDS_CSUM
            0..12 => 0,
            12..18 => 0xff,
            18..24 if kind == 2 => other.get(i - 18).copied().unwrap_or(2) & 0xfe,
            18..24 => mac.get(i - 18).copied().unwrap_or(0),
            24 => 0x88,
            25 => 0xb5,
            _ => b'0' + (i % 10) as u8,
        });
        let addr = FRAMES.0.as_ptr() as u64 + (slot * SLOT) as u64;
        if let (Some(d0), Some(d1)) = (RINGS.0.get(2 * slot), RINGS.0.get(2 * slot + 1)) {
            d0.store(addr, Ordering::Relaxed);
            d1.store(len as u64, Ordering::Relaxed);
        }
        idx = idx.wrapping_add(1);
        if let Some(w16) = RINGS.0.get(16) {
            // flags 0, idx, ring[0] = 0, ring[1] = 1.
            w16.store(u64::from(idx) << 16 | 1 << 48, Ordering::Relaxed);
        }
        fence(Ordering::SeqCst);
        let storm = if rng.one_in(16) { 8 } else { 1 };
        for _ in 0..storm {
            wr(base, QUEUE_NOTIFY, TRANSMITQ);
        }
        if let Some(c) = SENT.get(kind) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }
    wr(base, STATUS, 0);
}
