//! A driver-side helper for the tests: guest RAM in a `VecMemory`, split
//! rings laid out as Linux's virtio_ring does (descriptor table, then
//! available ring, then used ring, each at its alignment), and the
//! virtio-mmio initialisation sequence of §3.1.1 / §4.2.3.
#![allow(dead_code, clippy::unwrap_used, clippy::panic)]

use fv_addr::GuestPhysAddr;
use fv_virtio::device::VirtioDevice;
use fv_virtio::feature::{bit, VIRTIO_F_VERSION_1};
use fv_virtio::mmio::{self, MmioTransport};
use fv_virtio::queue::{Descriptor, VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE};
use fv_virtio::status;
use fv_vm::{AccessWidth, GuestMemory, GuestMemoryError, VecMemory};

/// Guest RAM base, as on QEMU `virt`.
pub const RAM: u64 = 0x8000_0000;
/// Guest RAM size.
pub const RAM_SIZE: usize = 0x10_0000;
/// Where each queue's rings go: queue `q` at `RAM + q * QUEUE_STRIDE`.
pub const QUEUE_STRIDE: u64 = 0x1_0000;
/// Start of the data area buffers are carved from.
pub const DATA: u64 = RAM + 0x8_0000;

pub fn gpa(a: u64) -> GuestPhysAddr {
    GuestPhysAddr::new(a)
}

/// The driver's view of one split virtqueue.
#[derive(Debug, Clone)]
pub struct DriverQueue {
    pub size: u16,
    pub desc: u64,
    pub avail: u64,
    pub used: u64,
    /// Next free descriptor index (descriptors are handed out in order, wrapping).
    pub next_desc: u16,
    pub avail_idx: u16,
    pub last_used: u16,
}

impl DriverQueue {
    /// Rings for queue `q` of `size` entries, laid out like vring_init().
    pub fn new(q: u16, size: u16) -> Self {
        let desc = RAM + u64::from(q) * QUEUE_STRIDE;
        let avail = desc + 16 * u64::from(size);
        let used = (avail + 6 + 2 * u64::from(size) + 3) & !3;
        Self {
            size,
            desc,
            avail,
            used,
            next_desc: 0,
            avail_idx: 0,
            last_used: 0,
        }
    }

    pub fn write_desc(&self, mem: &mut VecMemory, table: u64, i: u16, d: Descriptor) {
        mem.write(gpa(table + 16 * u64::from(i)), &d.to_bytes())
            .unwrap();
    }

    /// Writes a chain of direct descriptors (addr, len, writable) and returns its head.
    pub fn add_chain(&mut self, mem: &mut VecMemory, segs: &[(u64, u32, bool)]) -> u16 {
        let head = self.next_desc;
        for (k, &(addr, len, w)) in segs.iter().enumerate() {
            let i = (self.next_desc + k as u16) % self.size;
            let last = k + 1 == segs.len();
            let mut flags = if w { VIRTQ_DESC_F_WRITE } else { 0 };
            if !last {
                flags |= VIRTQ_DESC_F_NEXT;
            }
            let next = (i + 1) % self.size;
            self.write_desc(
                mem,
                self.desc,
                i,
                Descriptor {
                    addr: gpa(addr),
                    len,
                    flags,
                    next,
                },
            );
        }
        self.next_desc = (self.next_desc + segs.len() as u16) % self.size;
        head
    }

    /// Writes an indirect table at `table` holding `segs`, and one direct
    /// descriptor pointing at it; returns the head.
    pub fn add_indirect(
        &mut self,
        mem: &mut VecMemory,
        table: u64,
        segs: &[(u64, u32, bool)],
    ) -> u16 {
        for (k, &(addr, len, w)) in segs.iter().enumerate() {
            let last = k + 1 == segs.len();
            let mut flags = if w { VIRTQ_DESC_F_WRITE } else { 0 };
            if !last {
                flags |= VIRTQ_DESC_F_NEXT;
            }
            let d = Descriptor {
                addr: gpa(addr),
                len,
                flags,
                next: k as u16 + 1,
            };
            self.write_desc(mem, table, k as u16, d);
        }
        let head = self.next_desc;
        let d = Descriptor {
            addr: gpa(table),
            len: 16 * segs.len() as u32,
            flags: VIRTQ_DESC_F_INDIRECT,
            next: 0,
        };
        self.write_desc(mem, self.desc, head, d);
        self.next_desc = (self.next_desc + 1) % self.size;
        head
    }

    /// Puts `head` in the available ring and publishes the new index.
    pub fn publish(&mut self, mem: &mut VecMemory, head: u16) {
        let slot = u64::from(self.avail_idx % self.size);
        mem.write(gpa(self.avail + 4 + 2 * slot), &head.to_le_bytes())
            .unwrap();
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.set_avail_idx(mem, self.avail_idx);
    }

    /// [`add_chain`](Self::add_chain) then [`publish`](Self::publish).
    pub fn send(&mut self, mem: &mut VecMemory, segs: &[(u64, u32, bool)]) -> u16 {
        let h = self.add_chain(mem, segs);
        self.publish(mem, h);
        h
    }

    pub fn set_avail_idx(&self, mem: &mut VecMemory, idx: u16) {
        mem.write(gpa(self.avail + 2), &idx.to_le_bytes()).unwrap();
    }

    pub fn set_avail_flags(&self, mem: &mut VecMemory, flags: u16) {
        mem.write(gpa(self.avail), &flags.to_le_bytes()).unwrap();
    }

    pub fn set_used_event(&self, mem: &mut VecMemory, v: u16) {
        mem.write(
            gpa(self.avail + 4 + 2 * u64::from(self.size)),
            &v.to_le_bytes(),
        )
        .unwrap();
    }

    pub fn avail_event(&self, mem: &mut VecMemory) -> u16 {
        let mut b = [0u8; 2];
        mem.read(gpa(self.used + 4 + 8 * u64::from(self.size)), &mut b)
            .unwrap();
        u16::from_le_bytes(b)
    }

    pub fn used_idx(&self, mem: &mut VecMemory) -> u16 {
        let mut b = [0u8; 2];
        mem.read(gpa(self.used + 2), &mut b).unwrap();
        u16::from_le_bytes(b)
    }

    /// The next used element (id, len), if the device published one.
    pub fn pop_used(&mut self, mem: &mut VecMemory) -> Option<(u32, u32)> {
        if self.used_idx(mem) == self.last_used {
            return None;
        }
        let slot = u64::from(self.last_used % self.size);
        let mut b = [0u8; 8];
        mem.read(gpa(self.used + 4 + 8 * slot), &mut b).unwrap();
        self.last_used = self.last_used.wrapping_add(1);
        Some((
            u32::from_le_bytes(b[..4].try_into().unwrap()),
            u32::from_le_bytes(b[4..].try_into().unwrap()),
        ))
    }
}

pub fn rd<D: VirtioDevice>(t: &mut MmioTransport<D>, off: u64) -> u32 {
    t.read(off, AccessWidth::Word) as u32
}

pub fn wr<D: VirtioDevice>(t: &mut MmioTransport<D>, off: u64, v: u32) {
    t.write(off, AccessWidth::Word, u64::from(v));
}

/// Negotiates `features` (VERSION_1 added) and returns whether FEATURES_OK stuck.
pub fn negotiate<D: VirtioDevice>(t: &mut MmioTransport<D>, features: u64) -> bool {
    wr(t, mmio::STATUS, 0);
    wr(t, mmio::STATUS, status::ACKNOWLEDGE);
    wr(t, mmio::STATUS, status::ACKNOWLEDGE | status::DRIVER);
    let f = features | bit(VIRTIO_F_VERSION_1);
    wr(t, mmio::DRIVER_FEATURES_SEL, 0);
    wr(t, mmio::DRIVER_FEATURES, f as u32);
    wr(t, mmio::DRIVER_FEATURES_SEL, 1);
    wr(t, mmio::DRIVER_FEATURES, (f >> 32) as u32);
    let s = status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK;
    wr(t, mmio::STATUS, s);
    rd(t, mmio::STATUS) & status::FEATURES_OK != 0
}

/// Programs queue `q` with the driver's rings and sets it ready.
pub fn setup_queue<D: VirtioDevice>(t: &mut MmioTransport<D>, dq: &DriverQueue, q: u16) {
    wr(t, mmio::QUEUE_SEL, u32::from(q));
    wr(t, mmio::QUEUE_NUM, u32::from(dq.size));
    for (lo, a) in [
        (mmio::QUEUE_DESC_LOW, dq.desc),
        (mmio::QUEUE_DRIVER_LOW, dq.avail),
        (mmio::QUEUE_DEVICE_LOW, dq.used),
    ] {
        wr(t, lo, a as u32);
        wr(t, lo + 4, (a >> 32) as u32);
    }
    wr(t, mmio::QUEUE_READY, 1);
}

/// Full initialisation: negotiate, set up every queue with `size` entries,
/// DRIVER_OK. Returns the driver queues.
pub fn init<D: VirtioDevice>(
    t: &mut MmioTransport<D>,
    features: u64,
    size: u16,
) -> Vec<DriverQueue> {
    assert!(negotiate(t, features));
    let n = t.queues().len() as u16;
    let qs: Vec<_> = (0..n).map(|q| DriverQueue::new(q, size)).collect();
    for (q, dq) in qs.iter().enumerate() {
        setup_queue(t, dq, q as u16);
        assert_eq!(rd(t, mmio::QUEUE_READY), 1, "queue {q} ready");
    }
    let s = rd(t, mmio::STATUS);
    wr(t, mmio::STATUS, s | status::DRIVER_OK);
    assert_eq!(rd(t, mmio::STATUS) & status::DRIVER_OK, status::DRIVER_OK);
    qs
}

/// Notifies queue `q` through QueueNotify and runs the device.
pub fn kick<D: VirtioDevice>(t: &mut MmioTransport<D>, mem: &mut VecMemory, q: u16) {
    wr(t, mmio::QUEUE_NOTIFY, u32::from(q));
    t.process(mem);
}

pub fn new_mem() -> VecMemory {
    VecMemory::new(gpa(RAM), RAM_SIZE)
}

/// A deterministic entropy source: 0, 1, 2, ...
#[derive(Debug, Default)]
pub struct Counter(pub u8);

impl fv_virtio::rng::EntropySource for Counter {
    fn fill(&mut self, buf: &mut [u8]) -> usize {
        for b in buf.iter_mut() {
            *b = self.0;
            self.0 = self.0.wrapping_add(1);
        }
        buf.len()
    }
}

/// Guest memory that records every successful write.
pub struct Recorder {
    pub mem: VecMemory,
    pub writes: Vec<(u64, usize)>,
}

impl GuestMemory for Recorder {
    fn read(&mut self, gpa: GuestPhysAddr, buf: &mut [u8]) -> Result<(), GuestMemoryError> {
        self.mem.read(gpa, buf)
    }
    fn write(&mut self, gpa: GuestPhysAddr, data: &[u8]) -> Result<(), GuestMemoryError> {
        self.mem.write(gpa, data)?;
        self.writes.push((gpa.raw(), data.len()));
        Ok(())
    }
}
