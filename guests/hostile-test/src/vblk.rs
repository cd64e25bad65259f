//! `vblk`: a virtio-blk driver gone bad, against every virtio-blk this VM's
//! DTB lists (DeviceID 2), from the boot vCPU.
//!
//! Each round sets the device up properly (rings and buffers in a static
//! area of this VM's RAM, queue size 16) and then sends, among requests that
//! must work (a write of a pattern to the disk's last sector and its read
//! back, unless the disk is read-only), requests the device must refuse:
//! data buffers at addresses that are not this VM's RAM (0, the UART's MMIO
//! page, the end of RAM, straddling it, wrapping the address space), lengths
//! that overflow, sectors past the end, chains that loop or are longer than
//! the queue, writes to a read-only disk, unknown request types; queue
//! sizes that are not powers of two or above the maximum; a reset and a
//! feature renegotiation while a request is in flight; a notification storm.
//!
//! Every request that completes is counted by status (`ok`, `ioerr`,
//! `unsupp`, `dropped`: used length 0, status untouched). `FAIL:` lines
//! (containment breaches): a refused-by-rule request answered OK, a good
//! request not answered OK or reading back something else, a queue set up
//! with a bad size, a request not completed within 2 s (the hypervisor
//! hung).

use core::cell::UnsafeCell;
use core::ptr::{read_volatile, write_volatile};
use core::sync::atomic::{fence, Ordering};

use fv_guest_rt::{csr, println};

use crate::mmio::reg;
use crate::{breach, device, device_count, plat, DeviceKind};

/// Queue size used.
const QSIZE: u16 = 16;
/// Bytes of the data buffer.
const DATA: usize = 4096;

/// Rings and buffers (this VM's RAM; the bare guest runs with translation
/// off, so an address here is its guest-physical address).
#[repr(C, align(4096))]
struct Area {
    desc: [[u64; 2]; QSIZE as usize],
    avail: [u16; 3 + QSIZE as usize],
    _pad: [u8; 512 - 2 * (3 + QSIZE as usize)],
    used: [u32; 2 + 2 * QSIZE as usize],
    hdr: [u8; 16],
    status: [u8; 16],
    data: [u8; DATA],
}

struct Shared(UnsafeCell<Area>);

// SAFETY: only the boot vCPU runs this phase.
unsafe impl Sync for Shared {}

static AREA: Shared = Shared(UnsafeCell::new(Area {
    desc: [[0; 2]; QSIZE as usize],
    avail: [0; 3 + QSIZE as usize],
    _pad: [0; 512 - 2 * (3 + QSIZE as usize)],
    used: [0; 2 + 2 * QSIZE as usize],
    hdr: [0; 16],
    status: [0; 16],
    data: [0; DATA],
}));

const F_NEXT: u64 = 1;
const F_WRITE: u64 = 2;
const T_IN: u32 = 0;
const T_OUT: u32 = 1;
const S_OK: u8 = 0;
const S_IOERR: u8 = 1;
const S_UNSUPP: u8 = 2;
/// Status byte before a request: none the device gives.
const UNTOUCHED: u8 = 0xee;

fn rd(base: usize, off: usize) -> u32 {
    // SAFETY: `base` is a virtio-mmio register block the DTB lists (this
    // VM's own device); `off` a register offset within it.
    unsafe { read_volatile((base + off) as *const u32) }
}

fn wr(base: usize, off: usize, v: u32) {
    // SAFETY: as in `rd`.
    unsafe { write_volatile((base + off) as *mut u32, v) }
}

fn area() -> *mut Area {
    AREA.0.get()
}

/// Counters of one round.
#[derive(Default)]
struct Tally {
    requests: usize,
    ok: usize,
    ioerr: usize,
    unsupp: usize,
    dropped: usize,
}

/// One device's driver state.
struct Dev {
    base: usize,
    avail_idx: u16,
    used_seen: u16,
    read_only: bool,
    capacity: u64,
}

impl Dev {
    /// Reset, negotiate VERSION_1, queue 0 of `QSIZE` in [`AREA`], DRIVER_OK.
    fn init(base: usize) -> Dev {
        wr(base, reg::STATUS, 0);
        wr(base, reg::STATUS, 1);
        wr(base, reg::STATUS, 3);
        wr(base, reg::DEVICE_FEATURES_SEL, 0);
        let f0 = rd(base, reg::DEVICE_FEATURES);
        wr(base, reg::DRIVER_FEATURES_SEL, 0);
        wr(base, reg::DRIVER_FEATURES, f0 & (1 << 5)); // RO if offered
        wr(base, reg::DRIVER_FEATURES_SEL, 1);
        wr(base, reg::DRIVER_FEATURES, 1); // VERSION_1
        wr(base, reg::STATUS, 0xb);
        let a = area();
        {
            // SAFETY: only this vCPU touches the area, and the device does
            // not while the device is reset (nothing is set up).
            let area = unsafe { &mut *a };
            area.avail.fill(0);
            area.used.fill(0);
        }
        wr(base, reg::QUEUE_SEL, 0);
        wr(base, reg::QUEUE_NUM, u32::from(QSIZE));
        // SAFETY: addresses of fields of the static area.
        let (d, av, u) = unsafe {
            (
                core::ptr::addr_of!((*a).desc) as u64,
                core::ptr::addr_of!((*a).avail) as u64,
                core::ptr::addr_of!((*a).used) as u64,
            )
        };
        for (low, addr) in [
            (reg::QUEUE_DESC_LOW, d),
            (reg::QUEUE_DRIVER_LOW, av),
            (reg::QUEUE_DEVICE_LOW, u),
        ] {
            wr(base, low, addr as u32);
            wr(base, low + 4, (addr >> 32) as u32);
        }
        wr(base, reg::QUEUE_READY, 1);
        wr(base, reg::STATUS, 0xf);
        let capacity =
            u64::from(rd(base, reg::CAPACITY)) | (u64::from(rd(base, reg::CAPACITY + 4)) << 32);
        Dev {
            base,
            avail_idx: 0,
            used_seen: 0,
            read_only: f0 & (1 << 5) != 0,
            capacity,
        }
    }

    /// Publishes a chain of `descs` (addr, len, flags; NEXT added to all
    /// but the last unless `raw`) starting at descriptor 0 and notifies.
    fn send(&mut self, descs: &[(u64, u32, u64)], raw: bool) {
        let a = area();
        // SAFETY: only this vCPU writes the area.
        unsafe {
            (*a).status[0] = UNTOUCHED;
            for (i, &(addr, len, flags)) in descs.iter().enumerate().take(QSIZE as usize) {
                // A raw chain's last descriptor names the first: a loop.
                let next = if raw && i + 1 == descs.len() {
                    0
                } else {
                    (i + 1) as u64 % u64::from(QSIZE)
                };
                let flags = if raw || i + 1 == descs.len() {
                    flags
                } else {
                    flags | F_NEXT
                };
                (*a).desc[i] = [addr, u64::from(len) | (flags << 32) | (next << 48)];
            }
            let slot = 2 + usize::from(self.avail_idx % QSIZE);
            (*a).avail[slot] = 0;
            fence(Ordering::SeqCst);
            self.avail_idx = self.avail_idx.wrapping_add(1);
            write_volatile(core::ptr::addr_of_mut!((*a).avail[1]), self.avail_idx);
        }
        fence(Ordering::SeqCst);
        wr(self.base, reg::QUEUE_NOTIFY, 0);
    }

    /// Waits (2 s at most) for the next used element: its length.
    fn wait(&mut self) -> Option<u32> {
        let a = area();
        let deadline = csr::time() + crate::ms(2000);
        let got = csr::spin_until(deadline, || {
            // SAFETY: the used index, written by the device.
            let idx = unsafe { read_volatile(core::ptr::addr_of!((*a).used[0])) } >> 16;
            idx as u16 != self.used_seen
        });
        if !got {
            return None;
        }
        let slot = 1 + 2 * usize::from(self.used_seen % QSIZE);
        self.used_seen = self.used_seen.wrapping_add(1);
        wr(self.base, reg::INTERRUPT_ACK, 3);
        // SAFETY: the used element the device published.
        Some(unsafe { read_volatile(core::ptr::addr_of!((*a).used[slot + 1])) })
    }

    /// A request: header `ty`/`sector`, then `data` descriptors, then the
    /// status byte. Returns the status (or None: dropped / timed out).
    fn request(
        &mut self,
        t: &mut Tally,
        ty: u32,
        sector: u64,
        data: &[(u64, u32, u64)],
    ) -> Option<u8> {
        let a = area();
        let mut descs = [(0u64, 0u32, 0u64); 8];
        // SAFETY: addresses of fields of the static area; only this vCPU writes it.
        let (hdr, status) = unsafe {
            (&mut (*a).hdr)[..4].copy_from_slice(&ty.to_le_bytes());
            (&mut (*a).hdr)[8..].copy_from_slice(&sector.to_le_bytes());
            (
                core::ptr::addr_of!((*a).hdr) as u64,
                core::ptr::addr_of!((*a).status) as u64,
            )
        };
        descs[0] = (hdr, 16, 0);
        let n = data.len().min(6);
        descs[1..=n].copy_from_slice(&data[..n]);
        descs[n + 1] = (status, 1, F_WRITE);
        self.send(&descs[..n + 2], false);
        t.requests += 1;
        let Some(len) = self.wait() else {
            breach(
                "vblk-timeout",
                format_args!("request type {ty} sector {sector} not completed in 2 s"),
            );
            return None;
        };
        // SAFETY: the status byte, written by the device.
        let s = unsafe { read_volatile(core::ptr::addr_of!((*a).status[0])) };
        match (len, s) {
            (0, _) | (_, UNTOUCHED) => {
                t.dropped += 1;
                None
            }
            (_, S_OK) => {
                t.ok += 1;
                Some(S_OK)
            }
            (_, S_IOERR) => {
                t.ioerr += 1;
                Some(S_IOERR)
            }
            (_, other) => {
                t.unsupp += usize::from(other == S_UNSUPP);
                Some(other)
            }
        }
    }
}

fn data_addr() -> u64 {
    // SAFETY: address of a field of the static area.
    unsafe { core::ptr::addr_of!((*area()).data) as u64 }
}

fn must_refuse(what: &str, got: Option<u8>) {
    if got == Some(S_OK) {
        breach(
            "vblk-accepted",
            format_args!("{what}: answered OK, must be refused"),
        );
    }
}

/// The phase: every virtio-blk the DTB lists. Returns (disks, tally).
fn run_all(round: usize) -> (usize, Tally) {
    let mut t = Tally::default();
    let mut disks = 0;
    let ram = plat().memory().first().copied();
    let ram_end = ram.map_or(0, |r| r.end) as u64;
    for i in 0..device_count() {
        let Some((r, DeviceKind::Virtio)) = device(i) else {
            continue;
        };
        if rd(r.start, reg::DEVICE_ID) != 2 {
            continue;
        }
        disks += 1;
        attack(r.start, round, ram_end, &mut t);
    }
    (disks, t)
}

fn attack(base: usize, round: usize, ram_end: u64, t: &mut Tally) {
    let mut d = Dev::init(base);
    let data = data_addr();
    let last = d.capacity.saturating_sub(1);
    // Good requests: write a pattern to the last sector, read it back.
    let pattern = (round as u8).wrapping_mul(37).wrapping_add(11);
    // SAFETY: only this vCPU touches the area.
    unsafe { (&mut (*area()).data)[..512].fill(pattern) };
    let w = d.request(t, T_OUT, last, &[(data, 512, 0)]);
    if d.read_only {
        must_refuse("write to a read-only disk", w);
    } else if w != Some(S_OK) {
        breach("vblk-good", format_args!("write of sector {last}: {w:?}"));
    }
    // SAFETY: as above.
    unsafe { (&mut (*area()).data)[..512].fill(!pattern) };
    let r = d.request(t, T_IN, last, &[(data, 512, F_WRITE)]);
    // SAFETY: as above; the device wrote it.
    let back = unsafe { read_volatile(core::ptr::addr_of!((*area()).data[0])) };
    if r != Some(S_OK) || (!d.read_only && back != pattern) {
        breach(
            "vblk-good",
            format_args!("read of sector {last}: {r:?}, byte {back:#x} (wrote {pattern:#x})"),
        );
    }
    // Data buffers that are not this VM's RAM, both ways.
    let bad = [
        0u64,
        0x1000_0000,
        ram_end,
        ram_end.wrapping_sub(256),
        u64::MAX - 255,
        0x0c00_0000,
    ];
    for &addr in &bad {
        must_refuse(
            "read into memory not the VM's",
            d.request(t, T_IN, 0, &[(addr, 512, F_WRITE)]),
        );
        if !d.read_only {
            must_refuse(
                "write from memory not the VM's",
                d.request(t, T_OUT, 0, &[(addr, 512, 0)]),
            );
        }
    }
    // Overflowing lengths, sectors past the end, unknown types.
    must_refuse(
        "length u32::MAX",
        d.request(t, T_IN, 0, &[(data, u32::MAX, F_WRITE)]),
    );
    must_refuse(
        "sector past the end",
        d.request(t, T_IN, d.capacity, &[(data, 512, F_WRITE)]),
    );
    must_refuse(
        "sector u64::MAX",
        d.request(t, T_IN, u64::MAX, &[(data, 512, F_WRITE)]),
    );
    must_refuse(
        "unknown type",
        d.request(t, 0x7777, 0, &[(data, 512, F_WRITE)]),
    );
    // A chain that loops (descriptor 0 names itself) and one through every
    // descriptor back to the first: no status byte ever, returned with 0.
    d.send(&[(data, 16, F_NEXT)], true);
    t.requests += 1;
    match d.wait() {
        Some(0) => t.dropped += 1,
        other => breach("vblk-loop", format_args!("looping chain: used {other:?}")),
    }
    let long = [(data, 16, F_NEXT); QSIZE as usize];
    d.send(&long, true);
    t.requests += 1;
    match d.wait() {
        Some(0) => t.dropped += 1,
        other => breach(
            "vblk-loop",
            format_args!("chain past the queue: used {other:?}"),
        ),
    }
    // A storm of notifications, of queue 0 and of queues that do not exist.
    for i in 0..20_000u32 {
        wr(base, reg::QUEUE_NOTIFY, if i % 7 == 0 { i } else { 0 });
    }
    // Renegotiation and reset while a request is in flight: the request is
    // never answered into the new rings, and the device works afterwards.
    {
        // SAFETY: only this vCPU touches the area.
        let a = unsafe { &mut *area() };
        a.hdr = [0; 16]; // T_IN, sector 0
    }
    // SAFETY: addresses of fields of the static area.
    let (hdr, status) = unsafe {
        (
            core::ptr::addr_of!((*area()).hdr) as u64,
            core::ptr::addr_of!((*area()).status) as u64,
        )
    };
    d.send(
        &[
            (hdr, 16, 0),
            (data, DATA as u32, F_WRITE),
            (status, 1, F_WRITE),
        ],
        false,
    );
    wr(base, reg::DRIVER_FEATURES_SEL, 0);
    wr(base, reg::DRIVER_FEATURES, 0xffff_ffff);
    wr(base, reg::STATUS, 1);
    wr(base, reg::STATUS, 0);
    // Queue sizes the device must refuse.
    for bad_num in [3u32, 1024, 0, 100] {
        wr(base, reg::STATUS, 1);
        wr(base, reg::STATUS, 3);
        wr(base, reg::DRIVER_FEATURES_SEL, 1);
        wr(base, reg::DRIVER_FEATURES, 1);
        wr(base, reg::STATUS, 0xb);
        wr(base, reg::QUEUE_SEL, 0);
        wr(base, reg::QUEUE_NUM, bad_num);
        wr(base, reg::QUEUE_READY, 1);
        if rd(base, reg::QUEUE_READY) != 0 {
            breach(
                "vblk-queue-size",
                format_args!("queue of size {bad_num} accepted"),
            );
        }
        wr(base, reg::STATUS, 0);
    }
    let mut d = Dev::init(base);
    let again = d.request(t, T_IN, 0, &[(data, 512, F_WRITE)]);
    if again != Some(S_OK) {
        breach(
            "vblk-good",
            format_args!("read after reset mid-request: {again:?}"),
        );
    }
    wr(base, reg::STATUS, 0);
}

/// Runs the phase on the boot vCPU and prints its progress line.
pub fn phase(round: usize) {
    let (disks, t) = run_all(round);
    println!(
        "INFO: hostile-test: phase vblk done: round {round}, {disks} virtio-blk, {} requests: {} ok, {} ioerr, {} unsupp, {} dropped",
        t.requests, t.ok, t.ioerr, t.unsupp, t.dropped
    );
}
