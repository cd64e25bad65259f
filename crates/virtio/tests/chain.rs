//! Every `ChainError` and `QueueError` variant, provoked directly on a
//! `Queue` / `DescriptorChain` / `Buffer` over a `VecMemory` guest.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use common::*;
use fv_virtio::buffer::Buffer;
use fv_virtio::queue::*;
use fv_vm::GuestMemoryError;

const TABLE: u64 = RAM;
const IND: u64 = RAM + 0x4_0000;

fn d(addr: u64, len: u32, flags: u16, next: u16) -> Descriptor {
    Descriptor {
        addr: gpa(addr),
        len,
        flags,
        next,
    }
}

/// Writes `descs` at `table` and walks the chain from entry 0.
fn walk(
    descs: &[Descriptor],
    indirect_table: &[Descriptor],
    indirect: bool,
) -> Result<Buffer, ChainError> {
    let mut mem = new_mem();
    let dq = DriverQueue::new(0, 8);
    for (i, x) in descs.iter().enumerate() {
        dq.write_desc(&mut mem, TABLE, i as u16, *x);
    }
    for (i, x) in indirect_table.iter().enumerate() {
        dq.write_desc(&mut mem, IND, i as u16, *x);
    }
    Buffer::walk(DescriptorChain::new(gpa(TABLE), 8, 0, indirect), &mut mem)
}

const N: u16 = VIRTQ_DESC_F_NEXT;
const W: u16 = VIRTQ_DESC_F_WRITE;
const I: u16 = VIRTQ_DESC_F_INDIRECT;

#[test]
fn chain_errors() {
    use ChainError::*;
    assert_eq!(walk(&[d(DATA, 4, N, 8)], &[], false), Err(IndexOutOfRange));
    assert_eq!(
        walk(&[d(DATA, 4, N, 1), d(DATA, 4, N, 0)], &[], false),
        Err(TooLong)
    );
    assert_eq!(walk(&[d(DATA, 4, N, 0)], &[], false), Err(TooLong));
    assert_eq!(
        walk(&[d(IND, 16, I, 0)], &[d(DATA, 4, 0, 0)], false),
        Err(IndirectNotNegotiated)
    );
    assert_eq!(
        walk(&[d(IND, 16, I, 0)], &[d(IND, 16, I, 0)], true),
        Err(NestedIndirect)
    );
    assert_eq!(
        walk(&[d(IND, 16, I | N, 1)], &[d(DATA, 4, 0, 0)], true),
        Err(IndirectWithNext)
    );
    for len in [0, 8, 24, (MAX_INDIRECT_ENTRIES + 1) * 16] {
        assert_eq!(
            walk(&[d(IND, len, I, 0)], &[], true),
            Err(BadIndirectLength),
            "len {len}"
        );
    }
    assert_eq!(
        walk(&[d(IND, 16, I, 0)], &[d(DATA, 4, N, 1)], true),
        Err(IndexOutOfRange)
    );
    assert_eq!(
        walk(
            &[d(IND, 32, I, 0)],
            &[d(DATA, 4, N, 1), d(DATA, 4, N, 0)],
            true
        ),
        Err(TooLong)
    );
    assert_eq!(
        walk(&[d(u64::MAX - 3, 8, 0, 0)], &[], false),
        Err(AddressOverflow)
    );
    assert_eq!(
        walk(&[d(u64::MAX - 15, 32, I, 0)], &[], true),
        Err(AddressOverflow)
    );
    assert_eq!(
        walk(&[d(DATA, 4, W | N, 1), d(DATA, 4, 0, 0)], &[], false),
        Err(ReadableAfterWritable)
    );
    assert_eq!(
        walk(
            &[d(DATA, 0x8000_0000, W | N, 1), d(DATA, 0x8000_0000, W, 0)],
            &[],
            false
        ),
        Err(TotalLengthOverflow)
    );
    assert_eq!(
        walk(
            &[d(DATA, 0x8000_0000, N, 1), d(DATA, 0x8000_0000, W, 0)],
            &[],
            false
        ),
        Err(TotalLengthOverflow)
    );
    assert_eq!(
        walk(&[d(IND + 0x10_0000, 16, I, 0)], &[], true),
        Err(Memory(GuestMemoryError::NotRam))
    );
    // A table outside RAM.
    let mut mem = new_mem();
    let chain = DescriptorChain::new(gpa(0x1000), 8, 0, false);
    assert_eq!(
        Buffer::walk(chain, &mut mem),
        Err(Memory(GuestMemoryError::NotRam))
    );
}

#[test]
fn good_chain_segments() {
    let b = walk(
        &[
            d(DATA, 4, N, 3),
            d(0, 0, 0, 0),
            d(0, 0, 0, 0),
            d(DATA + 8, 0, N, 4),
            d(IND, 32, I | W, 0),
        ],
        &[d(DATA + 16, 2, N, 1), d(DATA + 32, 6, W, 0)],
        true,
    )
    .unwrap();
    assert_eq!(b.head(), 0);
    assert_eq!((b.readable_len(), b.writable_len()), (6, 6));
    // The zero-length descriptor is skipped.
    assert_eq!(b.segments().len(), 3);
    assert!(b.segments()[2].writable);
}

fn ready_queue(size: u16) -> (Queue, DriverQueue) {
    let dq = DriverQueue::new(0, size);
    let mut q = Queue::new(size);
    q.set_addresses(gpa(dq.desc), gpa(dq.avail), gpa(dq.used));
    q.set_ready().unwrap();
    (q, dq)
}

#[test]
fn queue_errors() {
    let mut mem = new_mem();
    let mut q = Queue::new(8);
    assert_eq!(q.pop(&mut mem), Err(QueueError::NotReady));
    assert_eq!(q.add_used(&mut mem, 0, 0), Err(QueueError::NotReady));
    assert_eq!(q.needs_interrupt(&mut mem), Err(QueueError::NotReady));

    let (mut q, mut dq) = ready_queue(8);
    assert_eq!(q.pop(&mut mem), Ok(None));
    dq.publish(&mut mem, 8);
    assert_eq!(q.pop(&mut mem), Err(QueueError::HeadOutOfRange));
    assert_eq!(q.add_used(&mut mem, 8, 0), Err(QueueError::HeadOutOfRange));
    dq.set_avail_idx(&mut mem, 9);
    assert_eq!(q.pop(&mut mem), Err(QueueError::AvailIndexJump));
    assert_eq!(q.next_used(), 0);

    let mut q = Queue::new(8);
    q.set_addresses(gpa(0x1000), gpa(0x2000), gpa(0x3000));
    q.set_ready().unwrap();
    assert_eq!(
        q.pop(&mut mem),
        Err(QueueError::Memory(GuestMemoryError::NotRam))
    );
}

#[test]
fn pop_add_used_round_trip_with_wrapping_indices() {
    let mut mem = new_mem();
    let (mut q, mut dq) = ready_queue(4);
    // Run the 16-bit indices through a wrap.
    for i in 0..70_000u32 {
        let h = dq.add_chain(&mut mem, &[(DATA, 4, true)]);
        dq.publish(&mut mem, h);
        let chain = q.pop(&mut mem).unwrap().unwrap();
        assert_eq!(chain.head(), h);
        q.add_used(&mut mem, chain.head(), i).unwrap();
        assert_eq!(dq.pop_used(&mut mem), Some((u32::from(h), i)));
    }
    assert_eq!(q.next_avail(), (70_000 % 65_536) as u16);
    assert_eq!(q.pop(&mut mem), Ok(None));
}
