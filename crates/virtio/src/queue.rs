//! The split virtqueue, device side (§2.7).
//!
//! Layout in guest memory (all fields little-endian, `N` = queue size):
//!
//! | area | alignment | size | contents |
//! | --- | --- | --- | --- |
//! | Descriptor Table | 16 | `16 * N` | `struct virtq_desc { le64 addr; le32 len; le16 flags; le16 next; }` |
//! | Available Ring | 2 | `6 + 2 * N` | `le16 flags; le16 idx; le16 ring[N]; le16 used_event;` |
//! | Used Ring | 4 | `6 + 8 * N` | `le16 flags; le16 idx; struct { le32 id; le32 len; } ring[N]; le16 avail_event;` |
//!
//! The device reads the available ring and descriptors and writes the used
//! ring. A [`Queue`] is the device's state for one virtqueue; it owns no guest
//! memory and reads or writes it only in the calls that take a
//! [`GuestMemory`].
//!
//! # Ordering
//!
//! [`Queue::add_used`] writes the used element before the used index, and
//! [`Queue::pop`] reads the available index before the ring entry. The
//! [`GuestMemory`] implementation must make its accesses visible in program
//! order to other harts (a `fence rw,rw` between calls on RISC-V, or accesses
//! that are themselves ordered) for the driver to see them in that order.

use fv_addr::GuestPhysAddr;
use fv_vm::{GuestMemory, GuestMemoryError};

/// Largest queue size the split layout allows (§2.7: "Queue Size ... maximum
/// 32768").
pub const MAX_QUEUE_SIZE: u16 = 32768;

/// Size of one descriptor in bytes.
pub const DESC_SIZE: u64 = 16;
/// Alignment of the descriptor table (§2.7, table "Virtqueue Part Alignment").
pub const DESC_TABLE_ALIGN: u64 = 16;
/// Alignment of the available ring.
pub const AVAIL_RING_ALIGN: u64 = 2;
/// Alignment of the used ring.
pub const USED_RING_ALIGN: u64 = 4;
/// Size of one used ring element (`le32 id; le32 len;`).
pub const USED_ELEM_SIZE: u64 = 8;

/// This marks a buffer as continuing via the `next` field.
pub const VIRTQ_DESC_F_NEXT: u16 = 1;
/// This marks a buffer as device write-only (otherwise device read-only).
pub const VIRTQ_DESC_F_WRITE: u16 = 2;
/// This means the buffer contains a list of buffer descriptors.
pub const VIRTQ_DESC_F_INDIRECT: u16 = 4;

/// Available ring flag: the driver does not want interrupts for used buffers.
pub const VIRTQ_AVAIL_F_NO_INTERRUPT: u16 = 1;
/// Used ring flag: the device does not want notifications for available buffers.
pub const VIRTQ_USED_F_NO_NOTIFY: u16 = 1;

/// Most entries an indirect table may hold here: a chain is never longer than
/// the largest queue, so neither is one table.
pub const MAX_INDIRECT_ENTRIES: u32 = MAX_QUEUE_SIZE as u32;

/// A queue-level failure: the rings themselves cannot be used.
///
/// After one of these the transport marks the device `DEVICE_NEEDS_RESET`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueError {
    /// The queue is not ready (not set up, or reset).
    NotReady,
    /// Queue size is 0, not a power of two, or above the device's maximum.
    BadSize,
    /// The descriptor table, available ring or used ring address is misaligned.
    Misaligned,
    /// A ring area wraps around the 64-bit address space.
    AddressOverflow,
    /// The available index moved by more than the queue size since the last pop.
    AvailIndexJump,
    /// A head index read from the available ring is not below the queue size.
    HeadOutOfRange,
    /// A ring access hit memory that is not this VM's RAM.
    Memory(GuestMemoryError),
}

/// A failure while walking one descriptor chain. The chain's head is consumed:
/// the caller returns it with a used length of 0 and counts the error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChainError {
    /// A `next` index is not below the size of the table it indexes.
    IndexOutOfRange,
    /// The chain has more descriptors than the queue size (or indirect table) allows: a loop.
    TooLong,
    /// `VIRTQ_DESC_F_INDIRECT` is set but `VIRTIO_F_INDIRECT_DESC` was not negotiated.
    IndirectNotNegotiated,
    /// An indirect table contains a descriptor with `VIRTQ_DESC_F_INDIRECT`.
    NestedIndirect,
    /// A descriptor has both `VIRTQ_DESC_F_INDIRECT` and `VIRTQ_DESC_F_NEXT`.
    IndirectWithNext,
    /// An indirect table's length is 0, not a multiple of 16, or above [`MAX_INDIRECT_ENTRIES`] entries.
    BadIndirectLength,
    /// A descriptor's buffer (`addr + len`) wraps around the address space.
    AddressOverflow,
    /// A device-readable descriptor follows a device-writable one.
    ReadableAfterWritable,
    /// The chain's total length does not fit in 32 bits (the used ring's `len`).
    TotalLengthOverflow,
    /// A descriptor read hit memory that is not this VM's RAM.
    Memory(GuestMemoryError),
}

/// One descriptor as read from guest memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Descriptor {
    /// Guest-physical address of the buffer.
    pub addr: GuestPhysAddr,
    /// Length of the buffer in bytes.
    pub len: u32,
    /// `VIRTQ_DESC_F_*` flags.
    pub flags: u16,
    /// Index of the next descriptor, if `flags` has `VIRTQ_DESC_F_NEXT`.
    pub next: u16,
}

impl Descriptor {
    /// Decodes the 16-byte little-endian `struct virtq_desc`.
    pub fn from_bytes(b: &[u8; 16]) -> Self {
        let [a0, a1, a2, a3, a4, a5, a6, a7, l0, l1, l2, l3, f0, f1, n0, n1] = *b;
        Self {
            addr: GuestPhysAddr::new(u64::from_le_bytes([a0, a1, a2, a3, a4, a5, a6, a7])),
            len: u32::from_le_bytes([l0, l1, l2, l3]),
            flags: u16::from_le_bytes([f0, f1]),
            next: u16::from_le_bytes([n0, n1]),
        }
    }

    /// Encodes as the 16-byte little-endian `struct virtq_desc` (driver side, tests).
    pub fn to_bytes(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        let (addr, rest) = b.split_at_mut(8);
        addr.copy_from_slice(&self.addr.raw().to_le_bytes());
        let (len, rest) = rest.split_at_mut(4);
        len.copy_from_slice(&self.len.to_le_bytes());
        let (flags, next) = rest.split_at_mut(2);
        flags.copy_from_slice(&self.flags.to_le_bytes());
        next.copy_from_slice(&self.next.to_le_bytes());
        b
    }

    /// Whether the device may write this buffer.
    pub fn is_write(&self) -> bool {
        self.flags & VIRTQ_DESC_F_WRITE != 0
    }
}

fn read_u16(mem: &mut dyn GuestMemory, gpa: GuestPhysAddr) -> Result<u16, GuestMemoryError> {
    let mut b = [0u8; 2];
    mem.read(gpa, &mut b)?;
    Ok(u16::from_le_bytes(b))
}

fn write_u16(
    mem: &mut dyn GuestMemory,
    gpa: GuestPhysAddr,
    v: u16,
) -> Result<(), GuestMemoryError> {
    mem.write(gpa, &v.to_le_bytes())
}

/// `base + off`, as a ring error when it wraps.
fn at(base: GuestPhysAddr, off: u64) -> Result<GuestPhysAddr, QueueError> {
    base.checked_add(off)
        .map_err(|_| QueueError::AddressOverflow)
}

/// The device's state for one split virtqueue.
///
/// The transport writes the configuration fields (size, ring addresses) while
/// the queue is not ready, then [`set_ready`](Self::set_ready) validates them.
/// [`reset`](Self::reset) returns to the power-on state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Queue {
    max_size: u16,
    size: u16,
    ready: bool,
    desc_table: GuestPhysAddr,
    avail_ring: GuestPhysAddr,
    used_ring: GuestPhysAddr,
    event_idx: bool,
    indirect: bool,
    next_avail: u16,
    next_used: u16,
    /// Used index at the last interrupt decision (0 when the queue became ready).
    signalled_used: u16,
}

impl Queue {
    /// A queue whose size the driver may set up to `max_size` (clamped to
    /// [`MAX_QUEUE_SIZE`]). The initial size is the maximum, as QueueNum's
    /// reset value in §4.2.2 suggests.
    pub fn new(max_size: u16) -> Self {
        let max_size = max_size.min(MAX_QUEUE_SIZE);
        Self {
            max_size,
            size: max_size,
            ready: false,
            desc_table: GuestPhysAddr::new(0),
            avail_ring: GuestPhysAddr::new(0),
            used_ring: GuestPhysAddr::new(0),
            event_idx: false,
            indirect: false,
            next_avail: 0,
            next_used: 0,
            signalled_used: 0,
        }
    }

    /// Back to the state [`new`](Self::new) returned.
    pub fn reset(&mut self) {
        *self = Self::new(self.max_size);
    }

    /// The largest size the driver may choose (QueueNumMax).
    pub fn max_size(&self) -> u16 {
        self.max_size
    }

    /// The size the driver chose (QueueNum).
    pub fn size(&self) -> u16 {
        self.size
    }

    /// Whether the queue is ready (QueueReady).
    pub fn ready(&self) -> bool {
        self.ready
    }

    /// Index of the next available ring entry the device will pop.
    pub fn next_avail(&self) -> u16 {
        self.next_avail
    }

    /// The device's used index (what [`add_used`](Self::add_used) last published).
    pub fn next_used(&self) -> u16 {
        self.next_used
    }

    /// Descriptor table, available ring, used ring addresses.
    pub fn addresses(&self) -> (GuestPhysAddr, GuestPhysAddr, GuestPhysAddr) {
        (self.desc_table, self.avail_ring, self.used_ring)
    }

    /// Sets the size (QueueNum); ignored (returns `false`) while ready.
    /// Validity is checked by [`set_ready`](Self::set_ready).
    pub fn set_size(&mut self, size: u16) -> bool {
        if self.ready {
            return false;
        }
        self.size = size;
        true
    }

    /// Sets the three ring addresses; ignored (returns `false`) while ready.
    pub fn set_addresses(
        &mut self,
        desc: GuestPhysAddr,
        avail: GuestPhysAddr,
        used: GuestPhysAddr,
    ) -> bool {
        if self.ready {
            return false;
        }
        self.desc_table = desc;
        self.avail_ring = avail;
        self.used_ring = used;
        true
    }

    /// Which negotiated features the queue honours: `VIRTIO_F_EVENT_IDX` and
    /// `VIRTIO_F_INDIRECT_DESC`.
    pub fn set_features(&mut self, event_idx: bool, indirect: bool) {
        self.event_idx = event_idx;
        self.indirect = indirect;
    }

    /// Checks the size and ring layout and marks the queue ready; on error the
    /// queue stays not ready.
    pub fn set_ready(&mut self) -> Result<(), QueueError> {
        self.validate()?;
        self.ready = true;
        self.next_avail = 0;
        self.next_used = 0;
        self.signalled_used = 0;
        Ok(())
    }

    /// Marks the queue not ready (the driver wrote 0 to QueueReady); the
    /// configuration is kept.
    pub fn set_not_ready(&mut self) {
        self.ready = false;
    }

    fn validate(&self) -> Result<(), QueueError> {
        let n = u64::from(self.size);
        if self.size == 0 || !self.size.is_power_of_two() || self.size > self.max_size {
            return Err(QueueError::BadSize);
        }
        if !self.desc_table.is_aligned(DESC_TABLE_ALIGN)
            || !self.avail_ring.is_aligned(AVAIL_RING_ALIGN)
            || !self.used_ring.is_aligned(USED_RING_ALIGN)
        {
            return Err(QueueError::Misaligned);
        }
        // Whole areas, including the event fields, must not wrap. n <= 32768,
        // so the products cannot overflow u64.
        at(self.desc_table, DESC_SIZE * n)?;
        at(self.avail_ring, 6 + 2 * n)?;
        at(self.used_ring, 6 + USED_ELEM_SIZE * n)?;
        Ok(())
    }

    fn check_ready(&self) -> Result<(), QueueError> {
        if self.ready {
            Ok(())
        } else {
            Err(QueueError::NotReady)
        }
    }

    /// The driver's available index (`avail->idx`).
    pub fn avail_idx(&self, mem: &mut dyn GuestMemory) -> Result<u16, QueueError> {
        read_u16(mem, at(self.avail_ring, 2)?).map_err(QueueError::Memory)
    }

    /// Number of chains the driver has made available and the device has not popped.
    pub fn pending(&self, mem: &mut dyn GuestMemory) -> Result<u16, QueueError> {
        self.check_ready()?;
        let pending = self.avail_idx(mem)?.wrapping_sub(self.next_avail);
        if pending > self.size {
            return Err(QueueError::AvailIndexJump);
        }
        Ok(pending)
    }

    /// Takes the next available descriptor chain, or `None` if the driver has
    /// made nothing new available. The chain is consumed from the available
    /// ring: the caller must eventually [`add_used`](Self::add_used) its head
    /// (or [`undo_pop`](Self::undo_pop) it to retry later).
    ///
    /// With `VIRTIO_F_EVENT_IDX` the device also publishes `avail_event` = the
    /// new `next_avail`, asking to be notified as soon as anything more arrives.
    pub fn pop(
        &mut self,
        mem: &mut dyn GuestMemory,
    ) -> Result<Option<DescriptorChain>, QueueError> {
        if self.pending(mem)? == 0 {
            return Ok(None);
        }
        let slot = u64::from(self.next_avail % self.size);
        let head = read_u16(mem, at(self.avail_ring, 4 + 2 * slot)?).map_err(QueueError::Memory)?;
        if head >= self.size {
            return Err(QueueError::HeadOutOfRange);
        }
        self.next_avail = self.next_avail.wrapping_add(1);
        if self.event_idx {
            self.set_avail_event(mem, self.next_avail)?;
        }
        Ok(Some(DescriptorChain::new(
            self.desc_table,
            u32::from(self.size),
            head,
            self.indirect,
        )))
    }

    /// Gives back the last popped chain: the next [`pop`](Self::pop) returns it
    /// again (a device with nothing to put in a buffer yet).
    pub fn undo_pop(&mut self) {
        self.next_avail = self.next_avail.wrapping_sub(1);
    }

    fn set_avail_event(&self, mem: &mut dyn GuestMemory, v: u16) -> Result<(), QueueError> {
        let off = 4 + USED_ELEM_SIZE * u64::from(self.size);
        write_u16(mem, at(self.used_ring, off)?, v).map_err(QueueError::Memory)
    }

    /// Returns chain `head` to the driver with `len` bytes written into its
    /// device-writable part: writes the used element, then the used index.
    pub fn add_used(
        &mut self,
        mem: &mut dyn GuestMemory,
        head: u16,
        len: u32,
    ) -> Result<(), QueueError> {
        self.check_ready()?;
        if head >= self.size {
            return Err(QueueError::HeadOutOfRange);
        }
        let slot = u64::from(self.next_used % self.size);
        let mut elem = [0u8; 8];
        let (id, l) = elem.split_at_mut(4);
        id.copy_from_slice(&u32::from(head).to_le_bytes());
        l.copy_from_slice(&len.to_le_bytes());
        mem.write(at(self.used_ring, 4 + USED_ELEM_SIZE * slot)?, &elem)
            .map_err(QueueError::Memory)?;
        let idx = self.next_used.wrapping_add(1);
        write_u16(mem, at(self.used_ring, 2)?, idx).map_err(QueueError::Memory)?;
        self.next_used = idx;
        Ok(())
    }

    /// Whether the driver wants an interrupt for the used buffers added since
    /// the last call (§2.7.7.2, §2.7.10). Call once after a batch of
    /// [`add_used`](Self::add_used).
    ///
    /// Without `VIRTIO_F_EVENT_IDX`: unless `VIRTQ_AVAIL_F_NO_INTERRUPT` is set.
    /// With it: if the used index passed `used_event` since the last call
    /// (`vring_need_event`).
    pub fn needs_interrupt(&mut self, mem: &mut dyn GuestMemory) -> Result<bool, QueueError> {
        self.check_ready()?;
        let new = self.next_used;
        let old = core::mem::replace(&mut self.signalled_used, new);
        if old == new {
            return Ok(false);
        }
        if self.event_idx {
            let off = 4 + 2 * u64::from(self.size);
            let used_event =
                read_u16(mem, at(self.avail_ring, off)?).map_err(QueueError::Memory)?;
            Ok(need_event(used_event, new, old))
        } else {
            let flags = read_u16(mem, self.avail_ring).map_err(QueueError::Memory)?;
            Ok(flags & VIRTQ_AVAIL_F_NO_INTERRUPT == 0)
        }
    }
}

/// `vring_need_event` (§2.7.10): whether moving an index from `old` to `new`
/// crossed `event` (all modulo 2^16).
pub fn need_event(event: u16, new: u16, old: u16) -> bool {
    new.wrapping_sub(event).wrapping_sub(1) < new.wrapping_sub(old)
}

/// A bounded walk over one descriptor chain (§2.7.5), following `next`
/// links and at most one indirect table (§2.7.5.3).
///
/// Zero or more direct descriptors may precede one descriptor with
/// `VIRTQ_DESC_F_INDIRECT` (which must not also have `VIRTQ_DESC_F_NEXT`);
/// the walk then continues in the indirect table at entry 0, whose
/// descriptors must not be indirect. The direct part is at most the queue
/// size long and the indirect part at most the table's entry count, so a
/// looping chain ends in [`ChainError::TooLong`]. After the first error the
/// walk is over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DescriptorChain {
    head: u16,
    table: GuestPhysAddr,
    table_len: u32,
    next: Option<u16>,
    seen: u32,
    in_indirect: bool,
    indirect_allowed: bool,
}

impl DescriptorChain {
    /// A walk from `head` in the descriptor table at `table` of `table_len`
    /// entries; `indirect_allowed` if `VIRTIO_F_INDIRECT_DESC` was negotiated.
    pub fn new(table: GuestPhysAddr, table_len: u32, head: u16, indirect_allowed: bool) -> Self {
        Self {
            head,
            table,
            table_len,
            next: Some(head),
            seen: 0,
            in_indirect: false,
            indirect_allowed,
        }
    }

    /// The head index: what [`Queue::add_used`] takes.
    pub fn head(&self) -> u16 {
        self.head
    }

    fn fail(&mut self, e: ChainError) -> Result<Option<Descriptor>, ChainError> {
        self.next = None;
        Err(e)
    }

    /// The next buffer descriptor of the chain (indirect descriptors are
    /// followed, not returned), `Ok(None)` at the end.
    pub fn next_descriptor(
        &mut self,
        mem: &mut dyn GuestMemory,
    ) -> Result<Option<Descriptor>, ChainError> {
        loop {
            let Some(idx) = self.next else {
                return Ok(None);
            };
            if u32::from(idx) >= self.table_len {
                return self.fail(ChainError::IndexOutOfRange);
            }
            if self.seen >= self.table_len {
                return self.fail(ChainError::TooLong);
            }
            self.seen += 1;
            let Ok(gpa) = self.table.checked_add(DESC_SIZE * u64::from(idx)) else {
                return self.fail(ChainError::AddressOverflow);
            };
            let mut raw = [0u8; 16];
            if let Err(e) = mem.read(gpa, &mut raw) {
                return self.fail(ChainError::Memory(e));
            }
            let d = Descriptor::from_bytes(&raw);
            if d.flags & VIRTQ_DESC_F_INDIRECT != 0 {
                if self.in_indirect {
                    return self.fail(ChainError::NestedIndirect);
                }
                if !self.indirect_allowed {
                    return self.fail(ChainError::IndirectNotNegotiated);
                }
                if d.flags & VIRTQ_DESC_F_NEXT != 0 {
                    return self.fail(ChainError::IndirectWithNext);
                }
                let entries = d.len / 16;
                if d.len == 0 || !d.len.is_multiple_of(16) || entries > MAX_INDIRECT_ENTRIES {
                    return self.fail(ChainError::BadIndirectLength);
                }
                if d.addr.checked_add(u64::from(d.len)).is_err() {
                    return self.fail(ChainError::AddressOverflow);
                }
                // The WRITE flag of the descriptor naming the table is ignored (§2.7.5.3.2).
                self.table = d.addr;
                self.table_len = entries;
                self.seen = 0;
                self.in_indirect = true;
                self.next = Some(0);
                continue;
            }
            self.next = (d.flags & VIRTQ_DESC_F_NEXT != 0).then_some(d.next);
            return Ok(Some(d));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_constants_match_spec() {
        assert_eq!(MAX_QUEUE_SIZE, 32768);
        assert_eq!(DESC_SIZE, 16);
        assert_eq!(
            (DESC_TABLE_ALIGN, AVAIL_RING_ALIGN, USED_RING_ALIGN),
            (16, 2, 4)
        );
        assert_eq!(USED_ELEM_SIZE, 8);
    }

    #[test]
    fn flags_match_spec() {
        assert_eq!(VIRTQ_DESC_F_NEXT, 1);
        assert_eq!(VIRTQ_DESC_F_WRITE, 2);
        assert_eq!(VIRTQ_DESC_F_INDIRECT, 4);
        assert_eq!(VIRTQ_AVAIL_F_NO_INTERRUPT, 1);
        assert_eq!(VIRTQ_USED_F_NO_NOTIFY, 1);
    }

    #[test]
    fn descriptor_round_trips_little_endian() {
        let d = Descriptor {
            addr: GuestPhysAddr::new(0x1122_3344_5566_7788),
            len: 0x99aa_bbcc,
            flags: 0x0003,
            next: 0x0102,
        };
        let b = d.to_bytes();
        assert_eq!(b[0], 0x88);
        assert_eq!(b[8], 0xcc);
        assert_eq!(b[12], 0x03);
        assert_eq!(b[14], 0x02);
        assert_eq!(Descriptor::from_bytes(&b), d);
    }

    #[test]
    fn need_event_matches_vring_need_event() {
        // Interrupt when used idx moves past used_event.
        assert!(need_event(0, 1, 0));
        assert!(!need_event(1, 1, 0));
        assert!(need_event(5, 10, 3));
        assert!(!need_event(10, 10, 3));
        // Wrap-around.
        assert!(need_event(0xffff, 1, 0xfffe));
    }

    #[test]
    fn set_ready_checks_size_and_alignment() {
        let mut q = Queue::new(256);
        let g = GuestPhysAddr::new;
        q.set_addresses(g(0x1000), g(0x2000), g(0x3000));
        for bad in [0, 3, 100, 512] {
            q.set_size(bad);
            assert_eq!(q.set_ready(), Err(QueueError::BadSize));
        }
        q.set_size(128);
        q.set_addresses(g(0x1008), g(0x2000), g(0x3000));
        assert_eq!(q.set_ready(), Err(QueueError::Misaligned));
        q.set_addresses(g(0x1000), g(0x2001), g(0x3000));
        assert_eq!(q.set_ready(), Err(QueueError::Misaligned));
        q.set_addresses(g(0x1000), g(0x2000), g(0x3002));
        assert_eq!(q.set_ready(), Err(QueueError::Misaligned));
        q.set_addresses(g(u64::MAX - 15), g(0x2000), g(0x3000));
        assert_eq!(q.set_ready(), Err(QueueError::AddressOverflow));
        q.set_addresses(g(0x1000), g(0x2000), g(0x3000));
        assert_eq!(q.set_ready(), Ok(()));
        assert!(!q.set_size(64));
        assert_eq!(q.size(), 128);
        q.reset();
        assert_eq!(q, Queue::new(256));
    }
}
