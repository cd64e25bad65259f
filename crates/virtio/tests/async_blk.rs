//! virtio-blk with an asynchronous disk (`AsyncBlk`): requests are taken,
//! carried out later by a fake physical disk that moves bytes straight
//! between its sectors and the guest segments (as DMA would), and finished.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use common::*;
use fv_virtio::blk::*;
use fv_virtio::feature::bit;
use fv_virtio::mmio::{self, MmioTransport};
use fv_vm::{GuestMemory, VecMemory};
use proptest::prelude::*;

type T = MmioTransport<AsyncBlk>;

const SECTORS: usize = 16;

fn dev(read_only: bool) -> T {
    MmioTransport::new(AsyncBlk::new(
        SECTORS as u64,
        read_only,
        *b"fv-test-disk-0000000",
    ))
    .unwrap()
}

/// The physical disk: carries a request out against `disk` through the
/// request's guest segments only.
fn carry_out(disk: &mut MemDisk, req: &BlkRequest, mem: &mut VecMemory) -> u8 {
    let mut off = usize::try_from(req.sector).unwrap() * 512;
    for s in &req.data {
        let n = s.len as usize;
        let span = off..off + n;
        match req.op {
            BlkOp::Read => mem.write(s.addr, &disk.bytes()[span]).unwrap(),
            BlkOp::Write => mem.read(s.addr, &mut disk.bytes_mut()[span]).unwrap(),
            BlkOp::Flush => unreachable!("a flush has no data"),
        }
        off += n;
    }
    VIRTIO_BLK_S_OK
}

fn header(mem: &mut VecMemory, at: u64, ty: u32, sector: u64) {
    let mut h = [0u8; 16];
    h[..4].copy_from_slice(&ty.to_le_bytes());
    h[8..].copy_from_slice(&sector.to_le_bytes());
    mem.write(gpa(at), &h).unwrap();
}

fn status(mem: &mut VecMemory, at: u64) -> u8 {
    let mut b = [0u8; 1];
    mem.read(gpa(at), &mut b).unwrap();
    b[0]
}

/// Request `i` lives at DATA + i * 0x2000: header, status at +0x100, data at +0x1000.
fn send(mem: &mut VecMemory, q: &mut DriverQueue, i: u64, ty: u32, sector: u64, data: u32) -> u16 {
    let base = DATA + i * 0x2000;
    header(mem, base, ty, sector);
    mem.write(gpa(base + 0x100), &[0xff]).unwrap();
    let w = ty != VIRTIO_BLK_T_OUT;
    // The data in two pieces, as a scattered guest buffer.
    let mut segs = vec![(base, 16, false)];
    if data > 0 {
        let half = (data / 2).max(1);
        segs.push((base + 0x1000, half, w));
        if data > half {
            segs.push((base + 0x1800, data - half, w));
        }
    }
    segs.push((base + 0x100, 1, true));
    q.send(mem, &segs)
}

#[test]
fn requests_complete_only_when_the_disk_is_done() {
    let mut t = dev(false);
    let mut mem = new_mem();
    let mut disk = MemDisk::new(SECTORS, false);
    disk.bytes_mut()[512..1024].fill(0xab);
    let mut qs = init(&mut t, bit(VIRTIO_BLK_F_FLUSH), 16);
    let q = &mut qs[0];
    let h = send(&mut mem, q, 0, VIRTIO_BLK_T_IN, 1, 512);
    kick(&mut t, &mut mem, 0);
    assert_eq!(
        q.pop_used(&mut mem),
        None,
        "nothing used before the disk finished"
    );
    assert!(!t.interrupt_level());
    let reqs: Vec<BlkRequest> = t.device_mut().take_submitted().collect();
    assert_eq!(reqs.len(), 1);
    assert_eq!(
        (reqs[0].op, reqs[0].sector, reqs[0].data_len),
        (BlkOp::Read, 1, 512)
    );
    assert_eq!(reqs[0].data.len(), 2, "scattered data stays two segments");
    assert_eq!(t.device().outstanding(), 1);
    let st = carry_out(&mut disk, &reqs[0], &mut mem);
    assert!(AsyncBlk::finish(&mut t, &reqs[0], st, &mut mem));
    assert!(t.interrupt_level());
    assert_eq!(q.pop_used(&mut mem), Some((u32::from(h), 513)));
    assert_eq!(status(&mut mem, DATA + 0x100), VIRTIO_BLK_S_OK);
    let mut got = vec![0u8; 512];
    mem.read(gpa(DATA + 0x1000), &mut got[..256]).unwrap();
    mem.read(gpa(DATA + 0x1800), &mut got[256..]).unwrap();
    assert_eq!(got, vec![0xab; 512]);
    assert_eq!(t.device().outstanding(), 0);

    // Write then flush; GET_ID is answered at once.
    mem.write(gpa(DATA + 0x2000 + 0x1000), &[0x5a; 512])
        .unwrap();
    mem.write(gpa(DATA + 0x2000 + 0x1800), &[0x5a; 512])
        .unwrap();
    send(&mut mem, q, 1, VIRTIO_BLK_T_OUT, 14, 1024);
    send(&mut mem, q, 2, VIRTIO_BLK_T_FLUSH, 0, 0);
    let id = send(&mut mem, q, 3, VIRTIO_BLK_T_GET_ID, 0, 20);
    kick(&mut t, &mut mem, 0);
    assert_eq!(q.pop_used(&mut mem), Some((u32::from(id), 21)));
    let reqs: Vec<BlkRequest> = t.device_mut().take_submitted().collect();
    assert_eq!(
        reqs.iter().map(|r| r.op).collect::<Vec<_>>(),
        [BlkOp::Write, BlkOp::Flush]
    );
    for r in &reqs {
        let st = if r.op == BlkOp::Flush {
            VIRTIO_BLK_S_OK
        } else {
            carry_out(&mut disk, r, &mut mem)
        };
        assert!(AsyncBlk::finish(&mut t, r, st, &mut mem));
    }
    assert_eq!(&disk.bytes()[14 * 512..], &[0x5a; 1024][..]);
    assert_eq!(q.pop_used(&mut mem).map(|u| u.1), Some(1));
    assert_eq!(q.pop_used(&mut mem).map(|u| u.1), Some(1));
}

#[test]
fn read_only_disk_refuses_writes_without_the_disk() {
    let mut t = dev(true);
    let mut mem = new_mem();
    wr(&mut t, mmio::DEVICE_FEATURES_SEL, 0);
    assert_ne!(
        rd(&mut t, mmio::DEVICE_FEATURES) & (1 << VIRTIO_BLK_F_RO),
        0
    );
    let mut qs = init(&mut t, bit(VIRTIO_BLK_F_RO), 16);
    let h = send(&mut mem, &mut qs[0], 0, VIRTIO_BLK_T_OUT, 0, 512);
    kick(&mut t, &mut mem, 0);
    assert_eq!(qs[0].pop_used(&mut mem), Some((u32::from(h), 1)));
    assert_eq!(status(&mut mem, DATA + 0x100), VIRTIO_BLK_S_IOERR);
    assert!(!t.device().has_submitted());
    assert_eq!(t.device().stats().read_only_writes, 1);
}

#[test]
fn reset_mid_request_drops_the_completion() {
    let mut t = dev(false);
    let mut mem = new_mem();
    let mut disk = MemDisk::new(SECTORS, false);
    let mut qs = init(&mut t, 0, 16);
    send(&mut mem, &mut qs[0], 0, VIRTIO_BLK_T_IN, 0, 512);
    kick(&mut t, &mut mem, 0);
    let reqs: Vec<BlkRequest> = t.device_mut().take_submitted().collect();
    // The driver resets and sets the device up again while the disk works.
    let mut qs = init(&mut t, 0, 16);
    let st = carry_out(&mut disk, &reqs[0], &mut mem);
    assert!(!AsyncBlk::finish(&mut t, &reqs[0], st, &mut mem));
    assert_eq!(
        qs[0].pop_used(&mut mem),
        None,
        "nothing reaches the new rings"
    );
    assert_eq!(t.stats().stale_completions, 1);
    assert_eq!(t.device().outstanding(), 0);
    // The new instance works.
    let h = send(&mut mem, &mut qs[0], 1, VIRTIO_BLK_T_FLUSH, 0, 0);
    kick(&mut t, &mut mem, 0);
    let reqs: Vec<BlkRequest> = t.device_mut().take_submitted().collect();
    assert!(AsyncBlk::finish(
        &mut t,
        &reqs[0],
        VIRTIO_BLK_S_OK,
        &mut mem
    ));
    assert_eq!(qs[0].pop_used(&mut mem), Some((u32::from(h), 1)));
}

#[test]
fn outstanding_requests_are_bounded_by_the_queue_size() {
    let mut t = dev(false);
    let mut mem = new_mem();
    let mut qs = init(&mut t, 0, QUEUE_SIZE);
    let q = &mut qs[0];
    // A guest re-publishing the same head over and over, never waiting.
    let h = q.add_chain(&mut mem, &[(DATA, 16, false), (DATA + 0x100, 1, true)]);
    header(&mut mem, DATA, VIRTIO_BLK_T_FLUSH, 0);
    let mut taken = 0usize;
    for _ in 0..4 {
        for _ in 0..QUEUE_SIZE {
            q.publish(&mut mem, h);
        }
        kick(&mut t, &mut mem, 0);
        taken += t.device_mut().take_submitted().count();
        // Nothing completes: the chains wait in the ring.
        q.avail_idx = t.queues()[0].next_avail();
        q.set_avail_idx(&mut mem, q.avail_idx);
    }
    assert_eq!(taken, usize::from(QUEUE_SIZE));
    assert_eq!(t.device().outstanding(), u32::from(QUEUE_SIZE));
}

#[test]
fn seg_max_is_offered_and_enforced() {
    let mut t: T =
        MmioTransport::new(AsyncBlk::new(SECTORS as u64, false, [0; ID_LEN]).with_seg_max(1))
            .unwrap();
    assert_eq!(t.read(mmio::CONFIG + 12, fv_vm::AccessWidth::Word), 1);
    let mut mem = new_mem();
    let mut qs = init(&mut t, 0, 16);
    // Two data segments where one is allowed: refused, never at the disk.
    let h = send(&mut mem, &mut qs[0], 0, VIRTIO_BLK_T_IN, 0, 1024);
    kick(&mut t, &mut mem, 0);
    assert_eq!(qs[0].pop_used(&mut mem), Some((u32::from(h), 1)));
    assert_eq!(status(&mut mem, DATA + 0x100), VIRTIO_BLK_S_IOERR);
    assert!(!t.device().has_submitted());
}

#[derive(Clone, Debug)]
struct Op {
    ty: u32,
    sector: u64,
    len: u32,
}

fn op() -> impl Strategy<Value = Op> {
    (
        prop_oneof![
            Just(VIRTIO_BLK_T_IN),
            Just(VIRTIO_BLK_T_OUT),
            Just(VIRTIO_BLK_T_FLUSH),
            Just(VIRTIO_BLK_T_GET_ID),
            Just(VIRTIO_BLK_T_DISCARD),
        ],
        0u64..20,
        prop_oneof![Just(0u32), Just(512), Just(1024), Just(2048), 1u32..2100],
    )
        .prop_map(|(ty, sector, len)| Op { ty, sector, len })
}

proptest! {
    /// Whatever the requests, the asynchronous device answers each with the
    /// status and used length the synchronous model gives, and leaves the
    /// disk (and the guest's data buffers) the same.
    #[test]
    fn async_matches_sync(ops in proptest::collection::vec(op(), 1..12), ro in any::<bool>()) {
        let mut sync_t: MmioTransport<Blk<MemDisk>> =
            MmioTransport::new(Blk::new(MemDisk::new(SECTORS, ro))).unwrap();
        let mut async_t = dev(ro);
        let mut disk = MemDisk::new(SECTORS, ro);
        for (i, b) in disk.bytes_mut().iter_mut().enumerate() {
            *b = (i % 251) as u8;
        }
        sync_t.device_mut().backend_mut().bytes_mut().copy_from_slice(disk.bytes());
        let (mut m1, mut m2) = (new_mem(), new_mem());
        let mut q1 = init(&mut sync_t, 0, 16).remove(0);
        let mut q2 = init(&mut async_t, 0, 16).remove(0);
        for (i, o) in ops.iter().enumerate() {
            let fill = vec![i as u8; 0x1000];
            for m in [&mut m1, &mut m2] {
                m.write(gpa(DATA + 0x1000), &fill).unwrap();
            }
            send(&mut m1, &mut q1, 0, o.ty, o.sector, o.len);
            send(&mut m2, &mut q2, 0, o.ty, o.sector, o.len);
            kick(&mut sync_t, &mut m1, 0);
            kick(&mut async_t, &mut m2, 0);
            let reqs: Vec<BlkRequest> = async_t.device_mut().take_submitted().collect();
            for r in &reqs {
                let st = if r.op == BlkOp::Flush { VIRTIO_BLK_S_OK } else { carry_out(&mut disk, r, &mut m2) };
                prop_assert!(AsyncBlk::finish(&mut async_t, r, st, &mut m2));
            }
            let u1 = q1.pop_used(&mut m1);
            let u2 = q2.pop_used(&mut m2);
            prop_assert_eq!(u1.map(|u| u.1), u2.map(|u| u.1), "used length of {:?}", o);
            prop_assert_eq!(status(&mut m1, DATA + 0x100), status(&mut m2, DATA + 0x100));
            if o.ty == VIRTIO_BLK_T_IN {
                let (mut a, mut b) = (vec![0u8; 0x1000], vec![0u8; 0x1000]);
                m1.read(gpa(DATA + 0x1000), &mut a).unwrap();
                m2.read(gpa(DATA + 0x1000), &mut b).unwrap();
                prop_assert_eq!(a, b);
            }
        }
        prop_assert_eq!(sync_t.device().backend().bytes(), disk.bytes());
    }
}
