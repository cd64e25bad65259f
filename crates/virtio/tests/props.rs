//! Property tests: hostile rings, descriptor tables and register sequences.
//!
//! Whatever the guest puts in memory or writes to the registers: no panic,
//! chain walks end, the device writes only into the used ring and
//! device-writable buffers (never a readable buffer, the descriptor table, the
//! available ring or an indirect table), the used index advances exactly by the chains completed, and a reset
//! returns the transport to its power-on state.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use common::*;
use fv_virtio::blk::{Blk, MemDisk, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP};
use fv_virtio::buffer::Buffer;
use fv_virtio::feature::{bit, VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC};
use fv_virtio::mmio::{self, MmioTransport};
use fv_virtio::queue::{
    Descriptor, DescriptorChain, MAX_INDIRECT_ENTRIES, VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_WRITE,
};
use fv_virtio::rng::Rng;
use fv_virtio::status;
use fv_vm::{AccessWidth, GuestMemory, VecMemory};
use proptest::prelude::*;

/// Where random indirect tables live.
const IND: u64 = RAM + 0x4_0000;
/// Size of the area random buffers start in, at `DATA`.
const DATA_SIZE: u64 = 0x1_0000;

/// A buffer address: mostly in the buffer area, sometimes at the very end of
/// RAM, below it, or anywhere.
fn addr() -> impl Strategy<Value = u64> {
    prop_oneof![
        12 => (0..DATA_SIZE).prop_map(|o| DATA + o),
        1 => Just(RAM + RAM_SIZE as u64 - 8),
        1 => 0..RAM,
        1 => any::<u64>(),
    ]
}

/// An indirect table address: mostly in the random table area (misaligned
/// ones too), sometimes any buffer address.
fn table_addr() -> impl Strategy<Value = u64> {
    prop_oneof![3 => (0..0x400u64).prop_map(|o| IND + o), 1 => addr()]
}

fn len() -> impl Strategy<Value = u32> {
    prop_oneof![8 => 0..256u32, 2 => (1..64u32).prop_map(|n| 16 * n), 1 => any::<u32>()]
}

fn desc(size: u16) -> impl Strategy<Value = Descriptor> {
    (
        addr(),
        table_addr(),
        len(),
        prop_oneof![12 => 0..4u16, 4 => 0..8u16, 1 => any::<u16>()],
        prop_oneof![12 => 0..size, 1 => any::<u16>()],
    )
        .prop_map(|(a, t, len, flags, next)| Descriptor {
            addr: gpa(if flags & VIRTQ_DESC_F_INDIRECT != 0 {
                t
            } else {
                a
            }),
            len,
            flags,
            next,
        })
}

#[derive(Debug, Clone)]
struct Ring {
    size: u16,
    table: Vec<Descriptor>,
    indirect: Vec<Descriptor>,
    avail: Vec<u16>,
    avail_idx: u16,
    features: u64,
}

fn ring() -> impl Strategy<Value = Ring> {
    prop_oneof![Just(4u16), Just(8), Just(16)].prop_flat_map(|size| {
        (
            prop::collection::vec(desc(size), usize::from(size)),
            prop::collection::vec(desc(size), 0x40),
            prop::collection::vec(
                prop_oneof![24 => 0..size, 1 => any::<u16>()],
                usize::from(size),
            ),
            prop_oneof![12 => 0..=size, 1 => any::<u16>()],
            0..4u64,
        )
            .prop_map(move |(table, indirect, avail, avail_idx, f)| Ring {
                size,
                table,
                indirect,
                avail,
                avail_idx,
                features: ((f & 1) * bit(VIRTIO_F_EVENT_IDX))
                    | ((f >> 1) * bit(VIRTIO_F_INDIRECT_DESC)),
            })
    })
}

/// Writes the ring contents into memory for driver queue `dq`.
fn lay_out(mem: &mut VecMemory, dq: &DriverQueue, r: &Ring) {
    for (i, d) in r.table.iter().enumerate() {
        dq.write_desc(mem, dq.desc, i as u16, *d);
    }
    for (i, d) in r.indirect.iter().enumerate() {
        dq.write_desc(mem, IND, i as u16, *d);
    }
    for (i, h) in r.avail.iter().enumerate() {
        mem.write(gpa(dq.avail + 4 + 2 * i as u64), &h.to_le_bytes())
            .unwrap();
    }
    dq.set_avail_idx(mem, r.avail_idx);
}

fn inside(a: u64, n: usize, start: u64, len: u64) -> bool {
    a >= start && a + n as u64 <= start + len
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Arbitrary rings through the whole transport and the rng device.
    #[test]
    fn hostile_rings(r in ring(), rounds in 1..4usize) {
        let mut t = MmioTransport::new(Rng::new(Counter::default())).unwrap();
        let mut mem = new_mem();
        let qs = init(&mut t, r.features, r.size);
        let dq = &qs[0];
        lay_out(&mut mem, dq, &r);
        let mut rec = Recorder { mem, writes: Vec::new() };
        for _ in 0..rounds {
            wr(&mut t, mmio::QUEUE_NOTIFY, 0);
            t.process(&mut rec);
        }
        // Every write lands in the used ring or inside a device-writable
        // descriptor of the table or the indirect area: never in a readable
        // buffer, a ring the driver owns, or anywhere else.
        let used_ring_len = 6 + 8 * u64::from(r.size);
        let writable: Vec<&Descriptor> = r
            .table
            .iter()
            .chain(&r.indirect)
            .filter(|d| d.flags & VIRTQ_DESC_F_WRITE != 0 && d.flags & VIRTQ_DESC_F_INDIRECT == 0)
            .collect();
        for &(a, n) in &rec.writes {
            let in_desc = writable.iter().any(|d| {
                let (start, end) = (u128::from(d.addr.raw()), u128::from(d.addr.raw()) + u128::from(d.len));
                u128::from(a) >= start && u128::from(a) + n as u128 <= end
            });
            prop_assert!(
                inside(a, n, dq.used, used_ring_len) || in_desc,
                "write of {} bytes at {:#x} outside the used ring and writable buffers", n, a
            );
        }
        let used = dq.used_idx(&mut rec.mem);
        let stats = *t.stats();
        prop_assert_eq!(u64::from(used), stats.chains);
        let broken = t.status() & status::DEVICE_NEEDS_RESET != 0;
        let pending = r.avail_idx;
        if pending <= r.size {
            prop_assert!(used <= pending);
        }
        if pending > r.size {
            prop_assert!(broken);
            prop_assert_eq!(used, 0);
        }
        prop_assert_eq!(stats.queue_errors > 0, broken);
        // Reset brings everything back.
        wr(&mut t, mmio::STATUS, 0);
        let fresh = MmioTransport::new(Rng::new(Counter::default())).unwrap();
        prop_assert_eq!(t.queues(), fresh.queues());
        prop_assert_eq!(t.status(), 0);
        prop_assert!(!t.interrupt_level());
        prop_assert!(!t.has_pending());
    }

    /// Arbitrary rings through the asynchronous virtio-blk: every request it
    /// hands to the disk names only bytes of descriptors the guest offered
    /// the right way (device-writable for a read, device-readable for a
    /// write), never more requests than the queue size are outstanding, and
    /// once the disk has finished them, every write lands in the used ring
    /// or a device-writable buffer and the used index counts the chains.
    #[test]
    fn hostile_rings_async_blk(r in ring(), rounds in 1..4usize) {
        use fv_virtio::blk::{AsyncBlk, BlkOp, QUEUE_SIZE};
        let mut t = MmioTransport::new(AsyncBlk::new(64, false, [0; 20])).unwrap();
        let mut mem = new_mem();
        let qs = init(&mut t, r.features, r.size.min(QUEUE_SIZE));
        let dq = &qs[0];
        lay_out(&mut mem, dq, &r);
        let mut rec = Recorder { mem, writes: Vec::new() };
        let descs: Vec<&Descriptor> = r
            .table
            .iter()
            .chain(&r.indirect)
            .filter(|d| d.flags & VIRTQ_DESC_F_INDIRECT == 0)
            .collect();
        let within = |a: u64, n: u64, writable: bool| {
            descs.iter().any(|d| {
                (d.flags & VIRTQ_DESC_F_WRITE != 0) == writable
                    && u128::from(a) >= u128::from(d.addr.raw())
                    && u128::from(a) + u128::from(n)
                        <= u128::from(d.addr.raw()) + u128::from(d.len)
            })
        };
        for _ in 0..rounds {
            wr(&mut t, mmio::QUEUE_NOTIFY, 0);
            t.process(&mut rec);
            prop_assert!(t.device().outstanding() <= u32::from(QUEUE_SIZE));
            let reqs: Vec<_> = t.device_mut().take_submitted().collect();
            for q in &reqs {
                for seg in &q.data {
                    let writable = q.op == BlkOp::Read;
                    prop_assert!(
                        within(seg.addr.raw(), u64::from(seg.len), writable),
                        "{:?} segment {:?} outside the guest's buffers", q.op, seg
                    );
                }
                prop_assert!(within(q.status.raw(), 1, true), "status byte not writable");
                AsyncBlk::finish(&mut t, q, VIRTIO_BLK_S_OK, &mut rec);
            }
        }
        let used_ring_len = 6 + 8 * u64::from(r.size.min(QUEUE_SIZE));
        for &(a, n) in &rec.writes {
            prop_assert!(
                inside(a, n, dq.used, used_ring_len) || within(a, n as u64, true),
                "write of {} bytes at {:#x} outside the used ring and writable buffers", n, a
            );
        }
        let used = dq.used_idx(&mut rec.mem);
        prop_assert_eq!(u64::from(used), t.stats().chains);
    }

    /// A chain walk over an arbitrary table ends, within the bound.
    #[test]
    fn chain_walk_is_bounded(r in ring(), head in 0..16u16) {
        let mut mem = new_mem();
        let dq = DriverQueue::new(0, r.size);
        lay_out(&mut mem, &dq, &r);
        let indirect = r.features & bit(VIRTIO_F_INDIRECT_DESC) != 0;
        let mut chain = DescriptorChain::new(gpa(dq.desc), u32::from(r.size), head % r.size, indirect);
        let bound = u32::from(r.size) + MAX_INDIRECT_ENTRIES + 1;
        let mut n = 0;
        while let Ok(Some(_)) = chain.next_descriptor(&mut mem) {
            n += 1;
            prop_assert!(n <= bound);
        }
        // The buffer view agrees, and its totals fit.
        let chain = DescriptorChain::new(gpa(dq.desc), u32::from(r.size), head % r.size, indirect);
        if let Ok(b) = Buffer::walk(chain, &mut mem) {
            let sum: u64 = b.segments().iter().map(|s| u64::from(s.len)).sum();
            prop_assert_eq!(sum, u64::from(b.readable_len()) + u64::from(b.writable_len()));
            prop_assert!(sum <= u64::from(u32::MAX));
            let first_w = b.segments().iter().position(|s| s.writable).unwrap_or(b.segments().len());
            prop_assert!(b.segments()[first_w..].iter().all(|s| s.writable));
        }
    }

    /// Arbitrary register accesses, with processing in between: no panic, and
    /// a final reset returns to the power-on state.
    #[test]
    fn register_storm(
        ops in prop::collection::vec(
            (
                prop_oneof![
                    4 => prop::sample::select(vec![
                        mmio::DEVICE_FEATURES_SEL, mmio::DRIVER_FEATURES, mmio::DRIVER_FEATURES_SEL,
                        mmio::QUEUE_SEL, mmio::QUEUE_NUM, mmio::QUEUE_READY, mmio::QUEUE_NOTIFY,
                        mmio::INTERRUPT_ACK, mmio::STATUS, mmio::QUEUE_DESC_LOW, mmio::QUEUE_DESC_HIGH,
                        mmio::QUEUE_DRIVER_LOW, mmio::QUEUE_DRIVER_HIGH, mmio::QUEUE_DEVICE_LOW,
                        mmio::QUEUE_DEVICE_HIGH, mmio::SHM_SEL, mmio::QUEUE_RESET, mmio::CONFIG,
                    ]),
                    1 => 0..0x200u64,
                    1 => any::<u64>(),
                ],
                prop_oneof![4 => Just(AccessWidth::Word), 1 => Just(AccessWidth::Byte), 1 => Just(AccessWidth::Double)],
                prop_oneof![
                    2 => 0..16u64,
                    1 => (0..RAM_SIZE as u64).prop_map(|o| RAM + o),
                    1 => any::<u64>(),
                ],
                any::<bool>(),
            ),
            0..64,
        ),
        r in ring(),
    ) {
        let mut t = MmioTransport::new(Blk::new(MemDisk::new(8, false))).unwrap();
        let mut mem = new_mem();
        // Start from a working device half the time.
        if ops.len() % 2 == 0 {
            let qs = init(&mut t, r.features, r.size);
            lay_out(&mut mem, &qs[0], &r);
        }
        for (off, width, value, process) in ops {
            t.write(off, width, value);
            let _ = t.read(off, width);
            if process {
                t.process(&mut mem);
            }
        }
        t.process(&mut mem);
        wr(&mut t, mmio::STATUS, 0);
        let fresh = MmioTransport::new(Blk::new(MemDisk::new(8, false))).unwrap();
        prop_assert_eq!(t.queues(), fresh.queues());
        for reg in [mmio::STATUS, mmio::INTERRUPT_STATUS, mmio::QUEUE_READY] {
            prop_assert_eq!(rd(&mut t, reg), 0);
        }
        prop_assert_eq!(rd(&mut t, mmio::QUEUE_NUM_MAX), 128);
        prop_assert_eq!(t.driver_features(), 0);
        prop_assert!(!t.has_pending());
        // And the device still works after the storm.
        let mut mem = new_mem();
        let mut qs = init(&mut t, 0, 16);
        qs[0].send(&mut mem, &[(DATA, 16, false), (DATA + 0x100, 1, true)]);
        kick(&mut t, &mut mem, 0);
        prop_assert_eq!(qs[0].pop_used(&mut mem).map(|(_, l)| l), Some(1));
    }

    /// Arbitrary block requests: the status is always one of the three, the
    /// used length never exceeds the writable part, and reads never change the disk.
    #[test]
    fn blk_requests(
        ty in prop_oneof![0..16u32, any::<u32>()],
        sector in prop_oneof![0..20u64, any::<u64>()],
        data_len in prop_oneof![Just(0u32), (1..4u32).prop_map(|n| 512 * n), 0..2000u32],
        writable in any::<bool>(),
        read_only in any::<bool>(),
    ) {
        let mut t = MmioTransport::new(Blk::new(MemDisk::new(16, read_only))).unwrap();
        let mut mem = new_mem();
        let mut qs = init(&mut t, 0, 16);
        let mut h = [0u8; 16];
        h[..4].copy_from_slice(&ty.to_le_bytes());
        h[8..].copy_from_slice(&sector.to_le_bytes());
        mem.write(gpa(DATA), &h).unwrap();
        mem.write(gpa(DATA + 0x1000), &[0x77; 2000]).unwrap();
        let mut segs = vec![(DATA, 16, false)];
        if data_len > 0 {
            segs.push((DATA + 0x1000, data_len, writable));
        }
        segs.push((DATA + 0x100, 1, true));
        qs[0].send(&mut mem, &segs);
        kick(&mut t, &mut mem, 0);
        let (_, used) = qs[0].pop_used(&mut mem).unwrap();
        let mut st = [0u8];
        mem.read(gpa(DATA + 0x100), &mut st).unwrap();
        prop_assert!([VIRTIO_BLK_S_OK, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_UNSUPP].contains(&st[0]));
        let writable_len = 1 + if writable { data_len } else { 0 };
        prop_assert!(used >= 1 && used <= writable_len);
        if read_only || ty != 1 {
            prop_assert!(t.device().backend().bytes().iter().all(|&b| b == 0));
        }
    }
}
