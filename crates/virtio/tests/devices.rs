//! Device models behind the transport: virtio-rng, virtio-console, virtio-blk.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use common::*;
use fv_virtio::blk::*;
use fv_virtio::console::{Console, RECEIVEQ, TRANSMITQ};
use fv_virtio::feature::bit;
use fv_virtio::mmio::{self, MmioTransport};
use fv_virtio::rng::Rng;
use fv_vm::{AccessWidth, GuestMemory, VecMemory};

fn read(mem: &mut VecMemory, a: u64, n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    mem.read(gpa(a), &mut v).unwrap();
    v
}

#[test]
fn rng_fills_writable_buffers_across_segments() {
    let mut t = MmioTransport::new(Rng::new(Counter::default())).unwrap();
    let mut mem = new_mem();
    let mut qs = init(&mut t, 0, 16);
    let h = qs[0].send(&mut mem, &[(DATA, 3, true), (DATA + 0x100, 5, true)]);
    kick(&mut t, &mut mem, 0);
    assert_eq!(qs[0].pop_used(&mut mem), Some((u32::from(h), 8)));
    assert_eq!(read(&mut mem, DATA, 3), [0, 1, 2]);
    assert_eq!(read(&mut mem, DATA + 0x100, 5), [3, 4, 5, 6, 7]);
    // A chain with nothing writable is an error, returned empty.
    let h = qs[0].send(&mut mem, &[(DATA, 3, false)]);
    kick(&mut t, &mut mem, 0);
    assert_eq!(qs[0].pop_used(&mut mem), Some((u32::from(h), 0)));
    assert_eq!(t.stats().device_errors, 1);
}

type ConsoleT = MmioTransport<Console<Vec<u8>>>;

#[test]
fn console_transmit_and_receive() {
    let mut t: ConsoleT = MmioTransport::new(Console::new(Vec::new(), 64)).unwrap();
    let mut mem = new_mem();
    assert_eq!(rd(&mut t, mmio::DEVICE_ID), 3);
    assert_eq!(t.read(mmio::CONFIG, AccessWidth::Half), 0, "cols");
    let mut qs = init(&mut t, 0, 16);
    // transmitq
    mem.write(gpa(DATA), b"hello, ").unwrap();
    mem.write(gpa(DATA + 0x100), b"world").unwrap();
    let h = qs[1].send(&mut mem, &[(DATA, 7, false), (DATA + 0x100, 5, false)]);
    kick(&mut t, &mut mem, TRANSMITQ);
    assert_eq!(qs[1].pop_used(&mut mem), Some((u32::from(h), 0)));
    assert_eq!(t.device().output(), b"hello, world");

    // receiveq: the buffer waits until input arrives.
    let h = qs[0].send(&mut mem, &[(DATA + 0x200, 4, true)]);
    kick(&mut t, &mut mem, RECEIVEQ);
    assert_eq!(qs[0].pop_used(&mut mem), None);
    assert_eq!(t.device_mut().push_input(b"abcdef"), 6);
    t.notify(RECEIVEQ);
    t.process(&mut mem);
    assert_eq!(qs[0].pop_used(&mut mem), Some((u32::from(h), 4)));
    assert_eq!(read(&mut mem, DATA + 0x200, 4), b"abcd");
    assert_eq!(t.device().pending_input(), 2);
    let h = qs[0].send(&mut mem, &[(DATA + 0x300, 16, true)]);
    kick(&mut t, &mut mem, RECEIVEQ);
    assert_eq!(qs[0].pop_used(&mut mem), Some((u32::from(h), 2)));
    assert_eq!(read(&mut mem, DATA + 0x300, 2), b"ef");
    // Input capacity is enforced.
    assert_eq!(t.device_mut().push_input(&[0; 100]), 64);
}

/// A sink of at most `cap` bytes, drained by the test (as the hypervisor's).
#[derive(Default)]
struct Bounded {
    buf: Vec<u8>,
    cap: usize,
}

impl fv_virtio::console::ConsoleOutput for Bounded {
    fn write(&mut self, bytes: &[u8]) {
        assert!(
            bytes.len() <= self.cap - self.buf.len(),
            "wrote past room()"
        );
        self.buf.extend_from_slice(bytes);
    }
    fn room(&self) -> usize {
        self.cap - self.buf.len()
    }
    fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// A bounded sink: a chain that does not fit behind earlier output waits
/// (left available) until the sink is drained and the queue notified again;
/// a chain larger than the whole sink is cut to it, the rest counted dropped,
/// and only that much guest memory is read.
#[test]
fn console_transmit_is_bounded_by_the_sink() {
    let sink = Bounded {
        buf: Vec::new(),
        cap: 8,
    };
    let mut t = MmioTransport::new(Console::new(sink, 4)).unwrap();
    let mut mem = new_mem();
    let mut qs = init(&mut t, 0, 16);
    mem.write(gpa(DATA), b"12345").unwrap();
    mem.write(gpa(DATA + 0x100), b"abcdef").unwrap();
    let h1 = qs[1].send(&mut mem, &[(DATA, 5, false)]);
    let h2 = qs[1].send(&mut mem, &[(DATA + 0x100, 6, false)]);
    kick(&mut t, &mut mem, TRANSMITQ);
    // The first fits; the second (6 > 3 bytes of room) waits.
    assert_eq!(qs[1].pop_used(&mut mem), Some((u32::from(h1), 0)));
    assert_eq!(qs[1].pop_used(&mut mem), None);
    assert_eq!(t.device().output().buf, b"12345");
    assert!(!t.has_pending());
    t.device_mut().output_mut().buf.clear();
    t.notify(TRANSMITQ);
    t.process(&mut mem);
    assert_eq!(qs[1].pop_used(&mut mem), Some((u32::from(h2), 0)));
    assert_eq!(t.device().output().buf, b"abcdef");
    assert_eq!(t.device().dropped(), 0);
    // Larger than the whole sink: the first 8 bytes, 2 dropped. The chain's
    // tail lies outside RAM: it is never read, so no error.
    t.device_mut().output_mut().buf.clear();
    mem.write(gpa(DATA + 0x200), b"0123456789").unwrap();
    let end = RAM + RAM_SIZE as u64;
    let h3 = qs[1].send(&mut mem, &[(DATA + 0x200, 8, false), (end, 0x1000, false)]);
    kick(&mut t, &mut mem, TRANSMITQ);
    assert_eq!(qs[1].pop_used(&mut mem), Some((u32::from(h3), 0)));
    assert_eq!(t.device().output().buf, b"01234567");
    assert_eq!(t.device().dropped(), 0x1000);
    assert_eq!(t.stats().device_errors, 0);
    // Host input cleared on VM reset.
    assert_eq!(t.device_mut().push_input(b"xyz"), 3);
    t.device_mut().clear_input();
    assert_eq!(t.device().pending_input(), 0);
}

type BlkT = MmioTransport<Blk<MemDisk>>;

struct Req {
    hdr: u64,
    data: u64,
    status: u64,
}

const REQ: Req = Req {
    hdr: DATA,
    data: DATA + 0x1000,
    status: DATA + 0x100,
};

fn header(mem: &mut VecMemory, ty: u32, sector: u64) {
    let mut h = [0u8; 16];
    h[..4].copy_from_slice(&ty.to_le_bytes());
    h[8..].copy_from_slice(&sector.to_le_bytes());
    mem.write(gpa(REQ.hdr), &h).unwrap();
}

/// Submits one request; returns (used len, status byte).
fn submit(
    t: &mut BlkT,
    mem: &mut VecMemory,
    q: &mut DriverQueue,
    ty: u32,
    sector: u64,
    data_len: u32,
    data_writable: bool,
) -> (u32, u8) {
    header(mem, ty, sector);
    mem.write(gpa(REQ.status), &[0xff]).unwrap();
    let mut segs = vec![(REQ.hdr, 16, false)];
    if data_len > 0 {
        segs.push((REQ.data, data_len, data_writable));
    }
    segs.push((REQ.status, 1, true));
    let h = q.add_chain(mem, &segs);
    q.publish(mem, h);
    kick(t, mem, 0);
    let (id, len) = q.pop_used(mem).unwrap();
    assert_eq!(id, u32::from(h));
    (len, read(mem, REQ.status, 1)[0])
}

#[test]
fn blk_read_write_flush_get_id() {
    let mut disk = MemDisk::new(16, false);
    disk.bytes_mut()[512..1024].fill(0xab);
    let mut t: BlkT = MmioTransport::new(Blk::new(disk)).unwrap();
    let mut mem = new_mem();
    assert_eq!(rd(&mut t, mmio::DEVICE_ID), 2);
    assert_eq!(t.read(mmio::CONFIG, AccessWidth::Word), 16, "capacity low");
    assert_eq!(
        t.read(mmio::CONFIG + 4, AccessWidth::Word),
        0,
        "capacity high"
    );
    assert_eq!(t.read(mmio::CONFIG, AccessWidth::Byte), 16);
    assert_eq!(
        t.read(mmio::CONFIG + 12, AccessWidth::Word),
        u64::from(SEG_MAX),
        "seg_max"
    );
    assert_eq!(t.read(mmio::CONFIG + 1, AccessWidth::Half), 0, "misaligned");
    assert_eq!(
        t.read(mmio::CONFIG, AccessWidth::Double),
        0,
        "64-bit refused"
    );
    assert_eq!(t.stats().bad_access, 2);
    let mut qs = init(&mut t, bit(VIRTIO_BLK_F_FLUSH), 16);
    let q = &mut qs[0];

    assert_eq!(
        submit(&mut t, &mut mem, q, VIRTIO_BLK_T_IN, 1, 512, true),
        (513, VIRTIO_BLK_S_OK)
    );
    assert_eq!(read(&mut mem, REQ.data, 512), vec![0xab; 512]);

    mem.write(gpa(REQ.data), &[0x5a; 1024]).unwrap();
    assert_eq!(
        submit(&mut t, &mut mem, q, VIRTIO_BLK_T_OUT, 14, 1024, false),
        (1, VIRTIO_BLK_S_OK)
    );
    assert_eq!(&t.device().backend().bytes()[14 * 512..], &[0x5a; 1024][..]);

    assert_eq!(
        submit(&mut t, &mut mem, q, VIRTIO_BLK_T_FLUSH, 0, 0, false),
        (1, VIRTIO_BLK_S_OK)
    );
    assert_eq!(
        submit(&mut t, &mut mem, q, VIRTIO_BLK_T_GET_ID, 0, 20, true),
        (21, VIRTIO_BLK_S_OK)
    );
    assert_eq!(&read(&mut mem, REQ.data, 7), b"memdisk");
}

#[test]
fn blk_refuses_bad_requests() {
    let mut t: BlkT = MmioTransport::new(Blk::new(MemDisk::new(16, false))).unwrap();
    let mut mem = new_mem();
    let mut qs = init(&mut t, 0, 16);
    let q = &mut qs[0];
    // Past the end, straddling the end, sector overflow.
    assert_eq!(
        submit(&mut t, &mut mem, q, VIRTIO_BLK_T_IN, 16, 512, true),
        (1, VIRTIO_BLK_S_IOERR)
    );
    assert_eq!(
        submit(&mut t, &mut mem, q, VIRTIO_BLK_T_OUT, 15, 1024, false),
        (1, VIRTIO_BLK_S_IOERR)
    );
    assert_eq!(
        submit(&mut t, &mut mem, q, VIRTIO_BLK_T_IN, u64::MAX, 512, true),
        (1, VIRTIO_BLK_S_IOERR)
    );
    // Not a multiple of 512.
    assert_eq!(
        submit(&mut t, &mut mem, q, VIRTIO_BLK_T_IN, 0, 100, true),
        (1, VIRTIO_BLK_S_IOERR)
    );
    // Unknown types.
    for ty in [
        2,
        7,
        VIRTIO_BLK_T_DISCARD,
        VIRTIO_BLK_T_WRITE_ZEROES,
        u32::MAX,
    ] {
        assert_eq!(
            submit(&mut t, &mut mem, q, ty, 0, 0, false),
            (1, VIRTIO_BLK_S_UNSUPP)
        );
    }
    assert_eq!(t.device().stats().ioerr, 4);
    assert_eq!(t.device().stats().unsupp, 5);
    // A runt header.
    let h = q.send(&mut mem, &[(REQ.hdr, 8, false), (REQ.status, 1, true)]);
    kick(&mut t, &mut mem, 0);
    assert_eq!(q.pop_used(&mut mem), Some((u32::from(h), 1)));
    assert_eq!(read(&mut mem, REQ.status, 1), [VIRTIO_BLK_S_IOERR]);
    // No status byte: returned with 0 and counted.
    let h = q.send(&mut mem, &[(REQ.hdr, 16, false)]);
    kick(&mut t, &mut mem, 0);
    assert_eq!(q.pop_used(&mut mem), Some((u32::from(h), 0)));
    assert_eq!(t.stats().device_errors, 1);
    // The disk is untouched.
    assert!(t.device().backend().bytes().iter().all(|&b| b == 0));
}

#[test]
fn blk_read_only_refuses_writes() {
    let mut t: BlkT = MmioTransport::new(Blk::new(MemDisk::new(16, true))).unwrap();
    let mut mem = new_mem();
    wr(&mut t, mmio::DEVICE_FEATURES_SEL, 0);
    assert_ne!(
        rd(&mut t, mmio::DEVICE_FEATURES) & (1 << VIRTIO_BLK_F_RO),
        0
    );
    let mut qs = init(&mut t, bit(VIRTIO_BLK_F_RO), 16);
    mem.write(gpa(REQ.data), &[0x5a; 512]).unwrap();
    assert_eq!(
        submit(
            &mut t,
            &mut mem,
            &mut qs[0],
            VIRTIO_BLK_T_OUT,
            0,
            512,
            false
        ),
        (1, VIRTIO_BLK_S_IOERR)
    );
    assert_eq!(t.device().stats().read_only_writes, 1);
    assert!(t.device().backend().bytes().iter().all(|&b| b == 0));
    assert_eq!(
        submit(&mut t, &mut mem, &mut qs[0], VIRTIO_BLK_T_IN, 0, 512, true),
        (513, VIRTIO_BLK_S_OK)
    );
}

#[test]
fn blk_get_id_fits_short_buffers() {
    let mut t: BlkT = MmioTransport::new(Blk::new(MemDisk::new(1, false))).unwrap();
    let mut mem = new_mem();
    let mut qs = init(&mut t, 0, 16);
    assert_eq!(
        submit(
            &mut t,
            &mut mem,
            &mut qs[0],
            VIRTIO_BLK_T_GET_ID,
            0,
            3,
            true
        ),
        (4, VIRTIO_BLK_S_OK)
    );
    assert_eq!(&read(&mut mem, REQ.data, 3), b"mem");
}

/// An entropy source that has run dry.
struct Dry;

impl fv_virtio::rng::EntropySource for Dry {
    fn fill(&mut self, _buf: &mut [u8]) -> usize {
        0
    }
}

#[test]
fn rng_without_entropy_keeps_the_buffer() {
    let mut t = MmioTransport::new(Rng::new(Dry)).unwrap();
    let mut mem = new_mem();
    let mut qs = init(&mut t, 0, 16);
    qs[0].send(&mut mem, &[(DATA, 8, true)]);
    kick(&mut t, &mut mem, 0);
    assert_eq!(qs[0].used_idx(&mut mem), 0);
    assert_eq!(t.queues()[0].next_avail(), 0, "chain given back");
    assert!(!t.interrupt_level());
}

#[test]
fn blk_indirect_multi_segment_read_with_event_idx() {
    use fv_virtio::feature::{VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC};
    let mut disk = MemDisk::new(16, false);
    for (i, b) in disk.bytes_mut().iter_mut().enumerate() {
        *b = (i / 512) as u8;
    }
    let mut t: BlkT = MmioTransport::new(Blk::new(disk)).unwrap();
    let mut mem = new_mem();
    let f = bit(VIRTIO_F_EVENT_IDX) | bit(VIRTIO_F_INDIRECT_DESC) | bit(VIRTIO_BLK_F_SEG_MAX);
    let mut qs = init(&mut t, f, 16);
    header(&mut mem, VIRTIO_BLK_T_IN, 4);
    // Sectors 4..7 into three scattered segments (512 + 1024 + 512 bytes).
    let segs = [
        (REQ.hdr, 16, false),
        (DATA + 0x2000, 512, true),
        (DATA + 0x4000, 1024, true),
        (DATA + 0x3000, 512, true),
        (REQ.status, 1, true),
    ];
    let h = qs[0].add_indirect(&mut mem, DATA + 0x6000, &segs);
    qs[0].publish(&mut mem, h);
    kick(&mut t, &mut mem, 0);
    assert_eq!(qs[0].pop_used(&mut mem), Some((u32::from(h), 2049)));
    assert_eq!(read(&mut mem, REQ.status, 1), [VIRTIO_BLK_S_OK]);
    assert_eq!(read(&mut mem, DATA + 0x2000, 512), vec![4; 512]);
    assert_eq!(
        read(&mut mem, DATA + 0x4000, 1024),
        [vec![5; 512], vec![6; 512]].concat()
    );
    assert_eq!(read(&mut mem, DATA + 0x3000, 512), vec![7; 512]);
    assert!(t.interrupt_level());
}
