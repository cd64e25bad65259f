//! The device side of VirtIO 1.2 (OASIS, "Virtual I/O Device (VIRTIO)
//! Version 1.2"), portable and host-tested.
//!
//! * [`queue`]: the split virtqueue (§2.7) seen from the device: ring
//!   addresses and their alignment, [`queue::Queue::pop`] of the next available
//!   descriptor chain, the bounded chain walk ([`queue::DescriptorChain`], with
//!   indirect tables, §2.7.5.3), [`queue::Queue::add_used`], and the
//!   interrupt-suppression rules (`VIRTQ_AVAIL_F_NO_INTERRUPT`,
//!   `VIRTIO_F_EVENT_IDX`).
//! * [`buffer`]: a walked chain as a list of guest-physical segments, with
//!   cursors that read the device-readable part and write the device-writable
//!   part across segment boundaries.
//! * [`device`]: the [`device::VirtioDevice`] backend trait the transport
//!   drives.
//! * [`mmio`]: the virtio-mmio transport (§4.2), modern interface (version 2)
//!   only: the register file, feature negotiation, device status, queue set-up,
//!   interrupt status, and the device-specific configuration space at `0x100`.
//! * Device models: [`rng`] (virtio-rng, §5.4), [`console`] (virtio-console,
//!   §5.3, one port), [`blk`] (virtio-blk request handling, §5.2): over a
//!   synchronous [`blk::BlockBackend`] ([`blk::Blk`]), or handing checked
//!   requests to a physical disk and completing them later
//!   ([`blk::AsyncBlk`], [`device::Handled::InFlight`],
//!   [`mmio::MmioTransport::complete`]), and [`net`] (virtio-net, §5.1, no
//!   offloads) over a [`net::NetBackend`] (a switch port).
//! * [`dma`]: a request's data as guest-physical segments, translated into
//!   host-physical ones for a physical device to use without copying.
//!
//! # Guest memory
//!
//! Guest RAM is reached only through [`fv_vm::GuestMemory`], with
//! guest-physical addresses ([`fv_addr::GuestPhysAddr`]). The hypervisor
//! implements it over the VM's G-stage mapping (every span checked against the
//! VM's RAM, split where host memory is not contiguous); tests use
//! [`fv_vm::VecMemory`]. Nothing here holds a pointer into guest memory:
//! every ring field and buffer byte is copied in or out through that trait.
//!
//! # Why not rust-vmm `virtio-queue`
//!
//! rust-vmm's `virtio-queue` (used by Cloud Hypervisor and Firecracker's
//! descendants) is built on `vm-memory`, which needs `std` (mmap regions,
//! `std::io`) and hands out host pointers into guest RAM. Ferrovisor's device
//! models run bare metal in the hypervisor (`no_std`, no `unsafe` in portable
//! crates), so this crate is written from the specification instead.
//!
//! # Guests are hostile
//!
//! Every ring index, descriptor field, register value and config-space access
//! comes from the guest. Nothing here panics on them: every guest-supplied
//! number goes through checked arithmetic, every chain walk is bounded (a
//! looping chain ends in [`queue::ChainError::TooLong`]), every failure is an
//! error value with one variant per cause, and the transport counts them
//! ([`mmio::TransportStats`]). A queue whose avail ring cannot be trusted any
//! more (index jumped by more than the queue size, ring outside RAM) makes the
//! device set `DEVICE_NEEDS_RESET` (§2.1.2) instead of guessing.
//!
//! # Not here yet
//!
//! Packed virtqueues (`VIRTIO_F_RING_PACKED`), `VIRTIO_F_RING_RESET`,
//! `VIRTIO_F_NOTIFICATION_DATA`, shared memory regions, the legacy (version 1)
//! MMIO interface, virtio-net offloads (checksum, TSO, mergeable receive
//! buffers, multiqueue).
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

extern crate alloc;

#[cfg(test)]
extern crate std;

pub mod blk;
pub mod buffer;
pub mod console;
pub mod device;
pub mod dma;
pub mod mmio;
pub mod net;
pub mod queue;
pub mod rng;

/// Device type IDs (§5, "Device Types").
pub mod device_id {
    /// Network card.
    pub const NET: u32 = 1;
    /// Block device.
    pub const BLOCK: u32 = 2;
    /// Console.
    pub const CONSOLE: u32 = 3;
    /// Entropy source.
    pub const ENTROPY: u32 = 4;
}

/// Reserved (device-independent) feature bits (§6, "Reserved Feature Bits").
pub mod feature {
    /// The driver can use descriptors with `VIRTQ_DESC_F_INDIRECT` (§2.7.5.3).
    pub const VIRTIO_F_INDIRECT_DESC: u32 = 28;
    /// The `used_event` / `avail_event` fields are used (§2.7.7, §2.7.10).
    pub const VIRTIO_F_EVENT_IDX: u32 = 29;
    /// Compliance with VirtIO 1.0 and later (the modern interface).
    pub const VIRTIO_F_VERSION_1: u32 = 32;
    /// The device is behind an IOMMU / platform-specific address translation.
    pub const VIRTIO_F_ACCESS_PLATFORM: u32 = 33;
    /// Packed virtqueue layout (§2.8).
    pub const VIRTIO_F_RING_PACKED: u32 = 34;
    /// Buffers are used in the order they were made available.
    pub const VIRTIO_F_IN_ORDER: u32 = 35;
    /// Memory accesses are ordered as the platform requires.
    pub const VIRTIO_F_ORDER_PLATFORM: u32 = 36;
    /// Single Root I/O Virtualization (PCI only).
    pub const VIRTIO_F_SR_IOV: u32 = 37;
    /// The driver passes extra data in its device notifications.
    pub const VIRTIO_F_NOTIFICATION_DATA: u32 = 38;
    /// The driver uses the data the device provides for notifications.
    pub const VIRTIO_F_NOTIF_CONFIG_DATA: u32 = 39;
    /// Individual virtqueues can be reset (`QueueReset`).
    pub const VIRTIO_F_RING_RESET: u32 = 40;

    /// First bit of the reserved (transport and ring) range (§6: bits 24 to 40,
    /// with 41 to 49 reserved for future extensions).
    pub const RESERVED_FIRST: u32 = 24;
    /// Last bit of the reserved range.
    pub const RESERVED_LAST: u32 = 49;

    /// The feature mask for one bit number.
    pub const fn bit(n: u32) -> u64 {
        1u64 << n
    }
}

/// Device status bits (§2.1).
pub mod status {
    /// The guest OS has found the device and recognized it.
    pub const ACKNOWLEDGE: u32 = 1;
    /// The guest OS knows how to drive the device.
    pub const DRIVER: u32 = 2;
    /// The driver is set up and ready to drive the device.
    pub const DRIVER_OK: u32 = 4;
    /// The driver has acknowledged the features it understands; negotiation is complete.
    pub const FEATURES_OK: u32 = 8;
    /// The device has experienced an error from which it cannot recover.
    pub const DEVICE_NEEDS_RESET: u32 = 64;
    /// Something went wrong in the guest and it has given up on the device.
    pub const FAILED: u32 = 128;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_ids_match_spec() {
        assert_eq!(device_id::NET, 1);
        assert_eq!(device_id::BLOCK, 2);
        assert_eq!(device_id::CONSOLE, 3);
        assert_eq!(device_id::ENTROPY, 4);
    }

    #[test]
    fn reserved_feature_bits_match_spec() {
        use feature::*;
        assert_eq!(VIRTIO_F_INDIRECT_DESC, 28);
        assert_eq!(VIRTIO_F_EVENT_IDX, 29);
        assert_eq!(VIRTIO_F_VERSION_1, 32);
        assert_eq!(VIRTIO_F_ACCESS_PLATFORM, 33);
        assert_eq!(VIRTIO_F_RING_PACKED, 34);
        assert_eq!(VIRTIO_F_IN_ORDER, 35);
        assert_eq!(VIRTIO_F_ORDER_PLATFORM, 36);
        assert_eq!(VIRTIO_F_SR_IOV, 37);
        assert_eq!(VIRTIO_F_NOTIFICATION_DATA, 38);
        assert_eq!(VIRTIO_F_NOTIF_CONFIG_DATA, 39);
        assert_eq!(VIRTIO_F_RING_RESET, 40);
        assert_eq!((RESERVED_FIRST, RESERVED_LAST), (24, 49));
        assert_eq!(bit(VIRTIO_F_VERSION_1), 0x1_0000_0000);
    }

    #[test]
    fn status_bits_match_spec() {
        use status::*;
        assert_eq!(ACKNOWLEDGE, 1);
        assert_eq!(DRIVER, 2);
        assert_eq!(DRIVER_OK, 4);
        assert_eq!(FEATURES_OK, 8);
        assert_eq!(DEVICE_NEEDS_RESET, 64);
        assert_eq!(FAILED, 128);
    }
}
