//! virtio-net: behaviour with a Linux-like driver, and hostile rings.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::collections::VecDeque;

use common::*;
use fv_addr::GuestPhysAddr;
use fv_virtio::feature::{bit, VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC};
use fv_virtio::mmio::{self, MmioTransport};
use fv_virtio::net::*;
use fv_virtio::queue::{Descriptor, VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_WRITE};
use fv_virtio::status;
use fv_vm::{AccessWidth, GuestMemory, VecMemory};
use proptest::prelude::*;

const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

#[derive(Debug, Default)]
struct Port {
    sent: Vec<Vec<u8>>,
    waiting: VecDeque<Vec<u8>>,
}

impl NetBackend for Port {
    fn transmit(&mut self, frame: &[u8]) {
        self.sent.push(frame.to_vec());
    }
    fn receive(&mut self) -> Option<Vec<u8>> {
        self.waiting.pop_front()
    }
}

fn net() -> MmioTransport<Net<Port>> {
    MmioTransport::new(Net::new(MAC, Port::default())).unwrap()
}

fn frame(dst: [u8; 6], src: [u8; 6], len: usize) -> Vec<u8> {
    let mut f: Vec<u8> = (0..len).map(|i| i as u8).collect();
    f[..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    f
}

fn read(mem: &mut VecMemory, a: u64, n: usize) -> Vec<u8> {
    let mut v = vec![0; n];
    mem.read(GuestPhysAddr::new(a), &mut v).unwrap();
    v
}

#[test]
fn identity_features_and_config() {
    let mut t = net();
    assert_eq!(rd(&mut t, mmio::DEVICE_ID), 1);
    wr(&mut t, mmio::DEVICE_FEATURES_SEL, 0);
    let lo = rd(&mut t, mmio::DEVICE_FEATURES);
    assert_eq!(
        lo,
        (1 << VIRTIO_NET_F_MAC) | (1 << VIRTIO_NET_F_STATUS) | (1 << 28) | (1 << 29)
    );
    wr(&mut t, mmio::DEVICE_FEATURES_SEL, 1);
    assert_eq!(
        rd(&mut t, mmio::DEVICE_FEATURES),
        1,
        "VERSION_1 only above bit 31"
    );
    let mac: Vec<u8> = (0..6)
        .map(|i| t.read(mmio::CONFIG + i, AccessWidth::Byte) as u8)
        .collect();
    assert_eq!(mac, MAC);
    assert_eq!(
        t.read(mmio::CONFIG + u64::from(CONFIG_STATUS), AccessWidth::Half),
        u64::from(VIRTIO_NET_S_LINK_UP)
    );
    // Beyond the 8 bytes: refused.
    let bad = t.stats().bad_access;
    assert_eq!(t.read(mmio::CONFIG + 8, AccessWidth::Half), 0);
    assert_eq!(t.stats().bad_access, bad + 1);
    // Offloads are not offered: asking for CSUM fails FEATURES_OK.
    assert!(!negotiate(&mut t, bit(VIRTIO_NET_F_CSUM)));
    assert!(negotiate(
        &mut t,
        bit(VIRTIO_NET_F_MAC) | bit(VIRTIO_NET_F_STATUS)
    ));
}

#[test]
fn transmit_checks_bounds_header_and_source() {
    let mut t = net();
    let mut mem = new_mem();
    let mut qs = init(&mut t, 0, 16);
    let tx = TRANSMITQ as usize;
    let other = [0x52, 0x54, 0, 0, 0, 9];
    // Header and frame in separate descriptors, as Linux does when it cannot push.
    mem.write(gpa(DATA), &[0u8; 12]).unwrap();
    let cases: Vec<(usize, [u8; 6], u8)> = vec![
        (60, MAC, 0),   // ok
        (14, MAC, 0),   // ok: smallest
        (1514, MAC, 0), // ok: largest
        (13, MAC, 0),   // runt
        (1515, MAC, 0), // oversize
        (60, other, 0), // spoofed
        (60, MAC, 1),   // NEEDS_CSUM without CSUM
    ];
    for (i, &(len, src, flags)) in cases.iter().enumerate() {
        let f = frame([0xff; 6], src, len);
        let a = DATA + 0x1000 + i as u64 * 0x800;
        mem.write(gpa(a), &f).unwrap();
        let h = DATA + 0x100 + 16 * i as u64;
        mem.write(gpa(h), &[flags, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
            .unwrap();
        qs[tx].send(&mut mem, &[(h, 12, false), (a, len as u32, false)]);
    }
    kick(&mut t, &mut mem, TRANSMITQ);
    for _ in &cases {
        assert_eq!(qs[tx].pop_used(&mut mem).map(|(_, l)| l), Some(0));
    }
    let dev = t.device();
    let sent: Vec<usize> = dev.backend().sent.iter().map(Vec::len).collect();
    assert_eq!(sent, vec![60, 14, 1514]);
    assert_eq!(dev.backend().sent[0], frame([0xff; 6], MAC, 60));
    let s = dev.stats();
    assert_eq!((s.tx_frames, s.tx_bytes), (3, 60 + 14 + 1514));
    assert_eq!(
        (s.tx_runt, s.tx_oversize, s.tx_spoofed, s.tx_bad_header),
        (1, 1, 1, 1)
    );
    assert!(t.interrupt_level());
}

#[test]
fn receive_writes_header_and_frame_or_waits() {
    let mut t = net();
    let mut mem = new_mem();
    let mut qs = init(&mut t, 0, 16);
    let rx = RECEIVEQ as usize;
    // No frame: the buffer stays available.
    qs[rx].send(&mut mem, &[(DATA, 12 + 1514, true)]);
    kick(&mut t, &mut mem, RECEIVEQ);
    assert_eq!(qs[rx].pop_used(&mut mem), None);
    // A frame arrives: host-side notify, then process.
    mem.write(gpa(DATA), &[0xee; 64]).unwrap();
    let f = frame(MAC, [0x52, 0x54, 0, 0, 0, 9], 42);
    t.device_mut().backend_mut().waiting.push_back(f.clone());
    t.notify(RECEIVEQ);
    t.process(&mut mem);
    assert_eq!(qs[rx].pop_used(&mut mem).map(|(_, l)| l), Some(12 + 42));
    assert_eq!(
        read(&mut mem, DATA, 12),
        vec![0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]
    );
    assert_eq!(read(&mut mem, DATA + 12, 42), f);
    assert!(t.interrupt_level());
    // A frame too big for the next buffer is dropped; the buffer takes the next one.
    qs[rx].send(
        &mut mem,
        &[(DATA + 0x1000, 6, true), (DATA + 0x2000, 60, true)],
    );
    let big = frame(MAC, [2, 0, 0, 0, 0, 1], 100);
    let small = frame(MAC, [2, 0, 0, 0, 0, 1], 50);
    t.device_mut()
        .backend_mut()
        .waiting
        .extend([big, small.clone()]);
    t.notify(RECEIVEQ);
    t.process(&mut mem);
    assert_eq!(qs[rx].pop_used(&mut mem).map(|(_, l)| l), Some(62));
    let mut got = read(&mut mem, DATA + 0x1000, 6);
    got.extend(read(&mut mem, DATA + 0x2000, 56));
    assert_eq!(&got[12..], &small[..]);
    let s = t.device().stats();
    assert_eq!((s.rx_frames, s.rx_bytes, s.rx_too_big), (2, 92, 1));
}

fn addr() -> impl Strategy<Value = u64> {
    prop_oneof![
        12 => (0..0x1_0000u64).prop_map(|o| DATA + o),
        1 => Just(RAM + RAM_SIZE as u64 - 8),
        1 => 0..RAM,
        1 => any::<u64>(),
    ]
}

fn desc(size: u16) -> impl Strategy<Value = Descriptor> {
    (
        addr(),
        prop_oneof![4 => 0..64u32, 4 => 1500..1600u32, 1 => any::<u32>()],
        prop_oneof![12 => 0..4u16, 2 => 0..8u16, 1 => any::<u16>()],
        prop_oneof![12 => 0..size, 1 => any::<u16>()],
    )
        .prop_map(|(a, len, flags, next)| Descriptor {
            addr: gpa(if flags & VIRTQ_DESC_F_INDIRECT != 0 {
                RAM + 0x4_0000
            } else {
                a
            }),
            len,
            flags,
            next,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Hostile rings on both queues, arbitrary frame bytes in memory,
    /// frames of any size waiting: no panic, writes only to the used rings
    /// and device-writable buffers, every transmitted frame within bounds and
    /// carrying the device's MAC.
    #[test]
    fn hostile_rings(
        size in prop_oneof![Just(4u16), Just(8), Just(16)],
        tables in prop::collection::vec(prop::collection::vec(desc(16), 16), 2),
        indirect in prop::collection::vec(desc(16), 16),
        avail in prop::collection::vec(prop::collection::vec(0..20u16, 16), 2),
        avail_idx in prop::collection::vec(prop_oneof![8 => 0..=16u16, 1 => any::<u16>()], 2),
        junk in prop::collection::vec(any::<u8>(), 0x100),
        waiting in prop::collection::vec(0..2000usize, 0..8),
        f in 0..4u64,
        rounds in 1..4usize,
    ) {
        let mut t = net();
        let mut mem = new_mem();
        let features = ((f & 1) * bit(VIRTIO_F_EVENT_IDX)) | ((f >> 1) * bit(VIRTIO_F_INDIRECT_DESC));
        let qs = init(&mut t, features, size);
        for (q, dq) in qs.iter().enumerate() {
            for (i, d) in tables[q].iter().take(usize::from(size)).enumerate() {
                dq.write_desc(&mut mem, dq.desc, i as u16, *d);
            }
            for (i, h) in avail[q].iter().take(usize::from(size)).enumerate() {
                mem.write(gpa(dq.avail + 4 + 2 * i as u64), &h.to_le_bytes()).unwrap();
            }
            dq.set_avail_idx(&mut mem, avail_idx[q]);
        }
        for (i, d) in indirect.iter().enumerate() {
            qs[0].write_desc(&mut mem, RAM + 0x4_0000, i as u16, *d);
        }
        // Frame-like bytes where buffers point: sometimes our MAC as source.
        for k in 0..0x100u64 {
            let mut j = junk.clone();
            if k % 2 == 0 { j[6..12].copy_from_slice(&MAC); j[18..24].copy_from_slice(&MAC); }
            mem.write(gpa(DATA + k * 0x100), &j).unwrap();
        }
        for &n in &waiting {
            t.device_mut().backend_mut().waiting.push_back(vec![0xab; n]);
        }
        let mut rec = Recorder { mem, writes: Vec::new() };
        for _ in 0..rounds {
            wr(&mut t, mmio::QUEUE_NOTIFY, u32::from(TRANSMITQ));
            wr(&mut t, mmio::QUEUE_NOTIFY, u32::from(RECEIVEQ));
            t.process(&mut rec);
        }
        let writable: Vec<&Descriptor> = tables.iter().flatten().chain(&indirect)
            .filter(|d| d.flags & VIRTQ_DESC_F_WRITE != 0 && d.flags & VIRTQ_DESC_F_INDIRECT == 0)
            .collect();
        for &(a, n) in &rec.writes {
            let in_used = qs.iter().any(|dq| a >= dq.used && a + n as u64 <= dq.used + 6 + 8 * u64::from(size));
            let in_desc = writable.iter().any(|d| {
                let (s, e) = (u128::from(d.addr.raw()), u128::from(d.addr.raw()) + u128::from(d.len));
                u128::from(a) >= s && u128::from(a) + n as u128 <= e
            });
            prop_assert!(in_used || in_desc, "write of {} bytes at {:#x}", n, a);
        }
        for sent in &t.device().backend().sent {
            prop_assert!((MIN_FRAME..=MAX_FRAME).contains(&sent.len()));
            prop_assert_eq!(&sent[6..12], &MAC[..]);
        }
        let s = *t.device().stats();
        prop_assert_eq!(s.tx_frames as usize, t.device().backend().sent.len());
        prop_assert!(s.rx_frames + s.rx_too_big <= waiting.len() as u64);
        // Reset mid-way leaves a working device.
        wr(&mut t, mmio::STATUS, 0);
        prop_assert_eq!(t.status(), 0);
        let mut mem = new_mem();
        let mut qs = init(&mut t, 0, 16);
        mem.write(gpa(DATA), &[0u8; 12]).unwrap();
        mem.write(gpa(DATA + 12), &frame([0xff; 6], MAC, 60)).unwrap();
        let before = t.device().stats().tx_frames;
        qs[1].send(&mut mem, &[(DATA, 72, false)]);
        kick(&mut t, &mut mem, TRANSMITQ);
        prop_assert_eq!(t.device().stats().tx_frames, before + 1);
        prop_assert_eq!(status::DRIVER_OK & t.status(), status::DRIVER_OK);
    }
}
