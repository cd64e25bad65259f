//! virtio-mmio transport behaviour: registers, negotiation, queue set-up,
//! notifications, interrupts, and hostile rings.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use common::*;
use fv_virtio::feature::{
    bit, VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_RING_RESET, VIRTIO_F_VERSION_1,
};
use fv_virtio::mmio::{self, MmioTransport};
use fv_virtio::queue::{
    Descriptor, VIRTQ_AVAIL_F_NO_INTERRUPT, VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT,
    VIRTQ_DESC_F_WRITE,
};
use fv_virtio::rng::Rng;
use fv_virtio::status;
use fv_vm::AccessWidth;

type RngT = MmioTransport<Rng<Counter>>;

fn rng() -> RngT {
    MmioTransport::new(Rng::new(Counter::default())).unwrap()
}

#[test]
fn identification_registers() {
    let mut t = rng();
    assert_eq!(rd(&mut t, mmio::MAGIC_VALUE), 0x7472_6976);
    assert_eq!(rd(&mut t, mmio::VERSION), 2);
    assert_eq!(rd(&mut t, mmio::DEVICE_ID), 4);
    assert_eq!(rd(&mut t, mmio::VENDOR_ID), mmio::FERROVISOR_VENDOR_ID);
    wr(&mut t, mmio::DEVICE_FEATURES_SEL, 0);
    let lo = rd(&mut t, mmio::DEVICE_FEATURES);
    wr(&mut t, mmio::DEVICE_FEATURES_SEL, 1);
    let hi = rd(&mut t, mmio::DEVICE_FEATURES);
    let f = u64::from(lo) | (u64::from(hi) << 32);
    assert_eq!(
        f,
        bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_F_INDIRECT_DESC) | bit(VIRTIO_F_EVENT_IDX)
    );
    assert_eq!(f & bit(VIRTIO_F_RING_RESET), 0);
    wr(&mut t, mmio::DEVICE_FEATURES_SEL, 2);
    assert_eq!(rd(&mut t, mmio::DEVICE_FEATURES), 0);
    assert_eq!(rd(&mut t, mmio::QUEUE_NUM_MAX), 64);
    wr(&mut t, mmio::QUEUE_SEL, 1);
    assert_eq!(rd(&mut t, mmio::QUEUE_NUM_MAX), 0, "no queue 1");
    assert_eq!(rd(&mut t, mmio::QUEUE_READY), 0);
    // No shared memory regions: length and base -1.
    assert_eq!(rd(&mut t, mmio::SHM_LEN_LOW), u32::MAX);
    assert_eq!(rd(&mut t, mmio::SHM_LEN_HIGH), u32::MAX);
    assert_eq!(rd(&mut t, mmio::SHM_BASE_LOW), u32::MAX);
    assert_eq!(rd(&mut t, mmio::SHM_BASE_HIGH), u32::MAX);
    // QueueReset not offered: reads 0.
    assert_eq!(rd(&mut t, mmio::QUEUE_RESET), 0);
    assert_eq!(rd(&mut t, mmio::CONFIG_GENERATION), 0);
}

#[test]
fn wrong_widths_and_offsets_read_zero_and_count() {
    let mut t = rng();
    assert_eq!(t.read(mmio::MAGIC_VALUE, AccessWidth::Byte), 0);
    assert_eq!(t.read(mmio::MAGIC_VALUE, AccessWidth::Half), 0);
    assert_eq!(t.read(mmio::MAGIC_VALUE, AccessWidth::Double), 0);
    assert_eq!(t.read(mmio::MAGIC_VALUE + 2, AccessWidth::Word), 0);
    assert_eq!(t.read(0x0f8, AccessWidth::Word), 0);
    t.write(mmio::STATUS, AccessWidth::Byte, 1);
    assert_eq!(rd(&mut t, mmio::STATUS), 0);
    // rng has no config space: every access there is refused.
    assert_eq!(t.read(mmio::CONFIG, AccessWidth::Byte), 0);
    assert_eq!(t.stats().bad_access, 7);
    // Far past the block: still no panic.
    assert_eq!(t.read(u64::MAX - 3, AccessWidth::Word), 0);
    t.write(u64::MAX, AccessWidth::Double, u64::MAX);
}

#[test]
fn features_ok_needs_subset_and_version_1() {
    let mut t = rng();
    // Without VERSION_1.
    wr(&mut t, mmio::STATUS, status::ACKNOWLEDGE);
    wr(&mut t, mmio::STATUS, status::ACKNOWLEDGE | status::DRIVER);
    wr(
        &mut t,
        mmio::STATUS,
        status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK,
    );
    assert_eq!(rd(&mut t, mmio::STATUS) & status::FEATURES_OK, 0);
    // A feature the device does not offer.
    assert!(!negotiate(&mut t, bit(VIRTIO_F_RING_RESET)));
    assert!(!negotiate(&mut t, 1));
    // A bit beyond 64.
    wr(&mut t, mmio::STATUS, 0);
    wr(&mut t, mmio::STATUS, status::ACKNOWLEDGE | status::DRIVER);
    wr(&mut t, mmio::DRIVER_FEATURES_SEL, 1);
    wr(&mut t, mmio::DRIVER_FEATURES, 1);
    wr(&mut t, mmio::DRIVER_FEATURES_SEL, 2);
    wr(&mut t, mmio::DRIVER_FEATURES, 1);
    wr(
        &mut t,
        mmio::STATUS,
        status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK,
    );
    assert_eq!(rd(&mut t, mmio::STATUS) & status::FEATURES_OK, 0);
    assert_eq!(t.stats().features_refused, 4);
    // The good case.
    assert!(negotiate(&mut t, bit(VIRTIO_F_EVENT_IDX)));
    assert_eq!(
        t.driver_features(),
        bit(VIRTIO_F_EVENT_IDX) | bit(VIRTIO_F_VERSION_1)
    );
    // Features cannot change after FEATURES_OK.
    wr(&mut t, mmio::DRIVER_FEATURES_SEL, 0);
    wr(&mut t, mmio::DRIVER_FEATURES, 0);
    assert_eq!(
        t.driver_features(),
        bit(VIRTIO_F_EVENT_IDX) | bit(VIRTIO_F_VERSION_1)
    );
}

#[test]
fn status_bits_cannot_be_cleared_and_driver_ok_needs_features_ok() {
    let mut t = rng();
    wr(&mut t, mmio::STATUS, status::ACKNOWLEDGE | status::DRIVER);
    wr(&mut t, mmio::STATUS, status::ACKNOWLEDGE);
    assert_eq!(
        rd(&mut t, mmio::STATUS),
        status::ACKNOWLEDGE | status::DRIVER
    );
    wr(
        &mut t,
        mmio::STATUS,
        status::ACKNOWLEDGE | status::DRIVER | status::DRIVER_OK,
    );
    assert_eq!(rd(&mut t, mmio::STATUS) & status::DRIVER_OK, 0);
    // The driver cannot set NEEDS_RESET.
    wr(
        &mut t,
        mmio::STATUS,
        status::ACKNOWLEDGE | status::DRIVER | status::DEVICE_NEEDS_RESET,
    );
    assert_eq!(rd(&mut t, mmio::STATUS) & status::DEVICE_NEEDS_RESET, 0);
    assert_eq!(t.stats().bad_write, 2);
}

#[test]
fn queue_ready_checks_size_and_alignment() {
    let mut t = rng();
    // Not before FEATURES_OK.
    wr(&mut t, mmio::STATUS, status::ACKNOWLEDGE | status::DRIVER);
    setup_queue(&mut t, &DriverQueue::new(0, 16), 0);
    assert_eq!(rd(&mut t, mmio::QUEUE_READY), 0);
    assert_eq!(t.stats().bad_write, 1);
    assert!(negotiate(&mut t, 0));
    let mut dq = DriverQueue::new(0, 16);
    for bad in [0u16, 3, 24, 128] {
        dq.size = bad;
        setup_queue(&mut t, &dq, 0);
        assert_eq!(rd(&mut t, mmio::QUEUE_READY), 0, "size {bad}");
    }
    dq.size = 16;
    dq.desc += 8;
    setup_queue(&mut t, &dq, 0);
    assert_eq!(rd(&mut t, mmio::QUEUE_READY), 0);
    wr(&mut t, mmio::QUEUE_NUM, 0x1_0010);
    dq.desc -= 8;
    setup_queue(&mut t, &dq, 0);
    assert_eq!(rd(&mut t, mmio::QUEUE_READY), 1);
    assert_eq!(t.stats().queue_setup_refused, 5);
    // Set-up registers are frozen while ready.
    wr(&mut t, mmio::QUEUE_NUM, 8);
    assert_eq!(t.queues()[0].size(), 16);
    // A queue that does not exist cannot be made ready.
    setup_queue(&mut t, &dq, 5);
    assert_eq!(rd(&mut t, mmio::QUEUE_READY), 0);
}

#[test]
fn reset_returns_to_initial_state() {
    let mut t = rng();
    let mut mem = new_mem();
    let mut qs = init(&mut t, 0, 16);
    qs[0].send(&mut mem, &[(DATA, 8, true)]);
    kick(&mut t, &mut mem, 0);
    assert!(t.interrupt_level());
    wr(&mut t, mmio::STATUS, 0);
    let fresh = rng();
    assert_eq!(rd(&mut t, mmio::STATUS), 0);
    assert!(!t.interrupt_level());
    assert_eq!(t.queues(), fresh.queues());
    assert_eq!(t.driver_features(), 0);
    assert!(!t.has_pending());
    // Notifications after reset are refused.
    wr(&mut t, mmio::QUEUE_NOTIFY, 0);
    assert!(!t.has_pending());
}

#[test]
fn interrupt_status_and_ack() {
    let mut t = rng();
    let mut mem = new_mem();
    let mut qs = init(&mut t, 0, 16);
    qs[0].send(&mut mem, &[(DATA, 8, true)]);
    kick(&mut t, &mut mem, 0);
    assert_eq!(
        rd(&mut t, mmio::INTERRUPT_STATUS),
        mmio::VIRTIO_MMIO_INT_VRING
    );
    wr(&mut t, mmio::INTERRUPT_ACK, mmio::VIRTIO_MMIO_INT_CONFIG);
    assert!(t.interrupt_level());
    wr(&mut t, mmio::INTERRUPT_ACK, mmio::VIRTIO_MMIO_INT_VRING);
    assert!(!t.interrupt_level());
    t.config_changed();
    assert_eq!(
        rd(&mut t, mmio::INTERRUPT_STATUS),
        mmio::VIRTIO_MMIO_INT_CONFIG
    );
    assert_eq!(rd(&mut t, mmio::CONFIG_GENERATION), 1);
}

#[test]
fn no_interrupt_flag_suppresses_used_interrupt() {
    let mut t = rng();
    let mut mem = new_mem();
    let mut qs = init(&mut t, 0, 16);
    qs[0].set_avail_flags(&mut mem, VIRTQ_AVAIL_F_NO_INTERRUPT);
    let h = qs[0].send(&mut mem, &[(DATA, 8, true)]);
    kick(&mut t, &mut mem, 0);
    assert_eq!(qs[0].pop_used(&mut mem), Some((u32::from(h), 8)));
    assert!(!t.interrupt_level());
}

#[test]
fn event_idx_interrupts_only_past_used_event() {
    let mut t = rng();
    let mut mem = new_mem();
    let mut qs = init(&mut t, bit(VIRTIO_F_EVENT_IDX), 16);
    // First completion always interrupts.
    qs[0].send(&mut mem, &[(DATA, 8, true)]);
    kick(&mut t, &mut mem, 0);
    assert!(t.interrupt_level());
    assert_eq!(
        qs[0].avail_event(&mut mem),
        1,
        "device asks to be notified at avail idx 1"
    );
    wr(&mut t, mmio::INTERRUPT_ACK, 1);
    // Driver wants an interrupt only once used idx passes 3.
    qs[0].set_used_event(&mut mem, 3);
    for n in 0..3 {
        qs[0].send(&mut mem, &[(DATA, 8, true)]);
        kick(&mut t, &mut mem, 0);
        // used idx after this kick: 2, 3, 4: interrupt when it goes 3 -> 4.
        assert_eq!(t.interrupt_level(), n == 2, "kick {n}");
    }
}

#[test]
fn notify_rules() {
    let mut t = rng();
    wr(&mut t, mmio::QUEUE_NOTIFY, 0);
    assert_eq!(t.stats().bad_notify, 1, "before DRIVER_OK");
    let _qs = init(&mut t, 0, 16);
    wr(&mut t, mmio::QUEUE_NOTIFY, 7);
    wr(&mut t, mmio::QUEUE_NOTIFY, u32::MAX);
    assert_eq!(t.stats().bad_notify, 3);
    assert!(!t.has_pending());
    wr(&mut t, mmio::QUEUE_NOTIFY, 0);
    assert!(t.has_pending());
}

#[test]
fn looping_chain_is_bounded_and_returned() {
    let mut t = rng();
    let mut mem = new_mem();
    let mut qs = init(&mut t, 0, 16);
    let dq = &mut qs[0];
    // 0 -> 1 -> 0 -> ...
    for (i, next) in [(0u16, 1u16), (1, 0)] {
        let d = Descriptor {
            addr: gpa(DATA),
            len: 8,
            flags: VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE,
            next,
        };
        dq.write_desc(&mut mem, dq.desc, i, d);
    }
    dq.publish(&mut mem, 0);
    kick(&mut t, &mut mem, 0);
    assert_eq!(qs[0].pop_used(&mut mem), Some((0, 0)));
    assert_eq!(t.stats().chain_errors, 1);
    assert_eq!(rd(&mut t, mmio::STATUS) & status::DEVICE_NEEDS_RESET, 0);
}

#[test]
fn indirect_rules() {
    let mut mem = new_mem();
    // Not negotiated.
    let mut t = rng();
    let mut qs = init(&mut t, 0, 16);
    let h = qs[0].add_indirect(&mut mem, DATA + 0x1000, &[(DATA, 8, true)]);
    qs[0].publish(&mut mem, h);
    kick(&mut t, &mut mem, 0);
    assert_eq!(qs[0].pop_used(&mut mem), Some((u32::from(h), 0)));
    assert_eq!(t.stats().chain_errors, 1);

    // Negotiated: a good table, then nested, with NEXT, and bad lengths.
    let mut mem = new_mem();
    let mut t = rng();
    let mut qs = init(&mut t, bit(VIRTIO_F_INDIRECT_DESC), 16);
    let table = DATA + 0x1000;
    let h = qs[0].add_indirect(&mut mem, table, &[(DATA, 4, true), (DATA + 4, 4, true)]);
    qs[0].publish(&mut mem, h);
    kick(&mut t, &mut mem, 0);
    assert_eq!(qs[0].pop_used(&mut mem), Some((u32::from(h), 8)));
    assert_eq!(t.stats().chain_errors, 0);

    let dq = &mut qs[0];
    let nested = Descriptor {
        addr: gpa(table),
        len: 16,
        flags: VIRTQ_DESC_F_INDIRECT,
        next: 0,
    };
    dq.write_desc(&mut mem, table, 0, nested);
    dq.write_desc(&mut mem, dq.desc, 5, nested);
    dq.publish(&mut mem, 5);
    let with_next = Descriptor {
        flags: VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT,
        ..nested
    };
    dq.write_desc(&mut mem, dq.desc, 6, with_next);
    dq.publish(&mut mem, 6);
    for len in [0, 17, 8] {
        dq.write_desc(&mut mem, dq.desc, 7, Descriptor { len, ..nested });
        dq.publish(&mut mem, 7);
    }
    // An indirect table whose entries loop: bounded by the table's length.
    let looping = Descriptor {
        addr: gpa(DATA),
        len: 1,
        flags: VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE,
        next: 0,
    };
    dq.write_desc(&mut mem, table + 0x100, 0, looping);
    dq.write_desc(
        &mut mem,
        dq.desc,
        8,
        Descriptor {
            addr: gpa(table + 0x100),
            len: 16,
            ..nested
        },
    );
    dq.publish(&mut mem, 8);
    kick(&mut t, &mut mem, 0);
    for h in [5, 6, 7, 7, 7, 8] {
        assert_eq!(qs[0].pop_used(&mut mem), Some((h, 0)));
    }
    assert_eq!(t.stats().chain_errors, 6);
}

#[test]
fn avail_index_jump_needs_reset() {
    let mut t = rng();
    let mut mem = new_mem();
    let qs = init(&mut t, 0, 16);
    qs[0].set_avail_idx(&mut mem, 17);
    kick(&mut t, &mut mem, 0);
    assert_eq!(
        rd(&mut t, mmio::STATUS) & status::DEVICE_NEEDS_RESET,
        status::DEVICE_NEEDS_RESET
    );
    assert_eq!(
        rd(&mut t, mmio::INTERRUPT_STATUS),
        mmio::VIRTIO_MMIO_INT_CONFIG
    );
    assert_eq!(qs[0].used_idx(&mut mem), 0);
    assert_eq!(t.stats().queue_errors, 1);
    // Nothing more is processed until reset.
    qs[0].set_avail_idx(&mut mem, 1);
    kick(&mut t, &mut mem, 0);
    assert_eq!(qs[0].used_idx(&mut mem), 0);
    let _ = init(&mut t, 0, 16);
    assert_eq!(rd(&mut t, mmio::STATUS) & status::DEVICE_NEEDS_RESET, 0);
}

#[test]
fn rings_outside_ram_need_reset() {
    let mut t = rng();
    let mut mem = new_mem();
    assert!(negotiate(&mut t, 0));
    let mut dq = DriverQueue::new(0, 16);
    dq.avail = 0x1000; // not RAM
    setup_queue(&mut t, &dq, 0);
    let s = rd(&mut t, mmio::STATUS);
    wr(&mut t, mmio::STATUS, s | status::DRIVER_OK);
    kick(&mut t, &mut mem, 0);
    assert_ne!(rd(&mut t, mmio::STATUS) & status::DEVICE_NEEDS_RESET, 0);
}

#[test]
fn buffers_outside_ram_are_returned_empty() {
    let mut t = rng();
    let mut mem = new_mem();
    let mut qs = init(&mut t, 0, 16);
    let h1 = qs[0].add_chain(&mut mem, &[(0x1000, 8, true)]);
    let h2 = qs[0].add_chain(&mut mem, &[(RAM + RAM_SIZE as u64 - 4, 8, true)]);
    let h3 = qs[0].add_chain(&mut mem, &[(u64::MAX - 3, 8, true)]);
    for h in [h1, h2, h3] {
        qs[0].publish(&mut mem, h);
    }
    kick(&mut t, &mut mem, 0);
    for h in [h1, h2, h3] {
        assert_eq!(qs[0].pop_used(&mut mem), Some((u32::from(h), 0)));
    }
    assert_eq!(t.stats().device_errors + t.stats().chain_errors, 3);
}

#[test]
fn process_is_bounded_per_call() {
    let mut t = rng();
    let mut mem = new_mem();
    let mut qs = init(&mut t, 0, 4);
    for _ in 0..4 {
        qs[0].send(&mut mem, &[(DATA, 1, true)]);
    }
    kick(&mut t, &mut mem, 0);
    assert_eq!(qs[0].used_idx(&mut mem), 4);
    // Still pending: the device does not know the ring is empty until it looks.
    assert!(t.has_pending());
    t.process(&mut mem);
    assert!(!t.has_pending());
}

#[test]
fn notification_storm_is_one_pending_bit() {
    let mut t = rng();
    let mut mem = new_mem();
    let mut qs = init(&mut t, 0, 16);
    for _ in 0..10_000 {
        wr(&mut t, mmio::QUEUE_NOTIFY, 0);
    }
    t.process(&mut mem);
    assert_eq!(qs[0].used_idx(&mut mem), 0);
    assert!(!t.interrupt_level());
    assert!(!t.has_pending());
    qs[0].send(&mut mem, &[(DATA, 4, true)]);
    kick(&mut t, &mut mem, 0);
    assert_eq!(qs[0].used_idx(&mut mem), 1);
}

#[test]
fn direct_descriptors_then_indirect_table() {
    let mut t = rng();
    let mut mem = new_mem();
    let mut qs = init(&mut t, bit(VIRTIO_F_INDIRECT_DESC), 16);
    let table = DATA + 0x1000;
    let dq = &mut qs[0];
    // Indirect table: two writable buffers.
    for (i, (a, l, next)) in [(DATA + 0x10, 4, 1), (DATA + 0x20, 4, 0)]
        .into_iter()
        .enumerate()
    {
        let flags = VIRTQ_DESC_F_WRITE | if i == 0 { VIRTQ_DESC_F_NEXT } else { 0 };
        dq.write_desc(
            &mut mem,
            table,
            i as u16,
            Descriptor {
                addr: gpa(a),
                len: l,
                flags,
                next,
            },
        );
    }
    // Head: one direct writable descriptor, then the indirect one.
    let direct = Descriptor {
        addr: gpa(DATA),
        len: 4,
        flags: VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT,
        next: 1,
    };
    dq.write_desc(&mut mem, dq.desc, 0, direct);
    // WRITE on the descriptor naming the table is ignored.
    let ind = Descriptor {
        addr: gpa(table),
        len: 32,
        flags: VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_WRITE,
        next: 0,
    };
    dq.write_desc(&mut mem, dq.desc, 1, ind);
    dq.publish(&mut mem, 0);
    kick(&mut t, &mut mem, 0);
    assert_eq!(qs[0].pop_used(&mut mem), Some((0, 12)));
    assert_eq!(t.stats().chain_errors, 0);
}

#[test]
fn readable_after_writable_is_refused() {
    let mut t = rng();
    let mut mem = new_mem();
    let mut qs = init(&mut t, 0, 16);
    let h = qs[0].send(&mut mem, &[(DATA, 4, true), (DATA + 0x10, 4, false)]);
    kick(&mut t, &mut mem, 0);
    assert_eq!(qs[0].pop_used(&mut mem), Some((u32::from(h), 0)));
    assert_eq!(t.stats().chain_errors, 1);
}

#[test]
fn reset_in_the_middle_of_requests() {
    let mut t = rng();
    let mut mem = new_mem();
    let mut qs = init(&mut t, 0, 16);
    qs[0].send(&mut mem, &[(DATA, 4, true)]);
    wr(&mut t, mmio::QUEUE_NOTIFY, 0);
    // The driver resets before the hypervisor got to the queue.
    wr(&mut t, mmio::STATUS, 0);
    t.process(&mut mem);
    assert_eq!(qs[0].used_idx(&mut mem), 0, "nothing used after reset");
    // Renegotiation with new rings starts from index 0 again.
    let mut mem = new_mem();
    let mut qs = init(&mut t, bit(VIRTIO_F_EVENT_IDX), 8);
    let h = qs[0].send(&mut mem, &[(DATA, 4, true)]);
    kick(&mut t, &mut mem, 0);
    assert_eq!(qs[0].pop_used(&mut mem), Some((u32::from(h), 4)));
}

#[test]
fn queue_can_be_disabled_and_set_up_again() {
    let mut t = rng();
    let mut mem = new_mem();
    assert!(negotiate(&mut t, 0));
    let dq = DriverQueue::new(0, 16);
    setup_queue(&mut t, &dq, 0);
    wr(&mut t, mmio::QUEUE_READY, 0);
    assert_eq!(rd(&mut t, mmio::QUEUE_READY), 0);
    let mut dq = DriverQueue::new(1, 8); // other rings, other size
    setup_queue(&mut t, &dq, 0);
    assert_eq!(rd(&mut t, mmio::QUEUE_READY), 1);
    let s = rd(&mut t, mmio::STATUS);
    wr(&mut t, mmio::STATUS, s | status::DRIVER_OK);
    let h = dq.send(&mut mem, &[(DATA, 4, true)]);
    kick(&mut t, &mut mem, 0);
    assert_eq!(dq.pop_used(&mut mem), Some((u32::from(h), 4)));
}
