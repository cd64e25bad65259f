//! The backend trait a transport drives.

use fv_vm::GuestMemory;

use crate::buffer::{Buffer, BufferError};

/// What a device did with one available chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handled {
    /// Done: return the chain to the driver with this many bytes written into
    /// its device-writable part.
    Used(u32),
    /// Nothing to put in it yet (e.g. no console input): leave the chain
    /// available and stop processing this queue until the next notification.
    Later,
    /// Taken: the device carries the request out asynchronously (a physical
    /// device) and returns the chain later with
    /// [`crate::mmio::MmioTransport::complete`]. Nothing is added to the used
    /// ring now.
    InFlight,
}

/// A device could not handle a chain. The transport returns the chain with a
/// used length of 0 and counts the error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceError {
    /// Reading or writing the chain's buffers failed.
    Buffer(BufferError),
    /// The chain has no device-writable byte for a required status or reply.
    NoWritable,
    /// The queue index is not one of this device's queues.
    BadQueue,
}

impl From<BufferError> for DeviceError {
    fn from(e: BufferError) -> Self {
        DeviceError::Buffer(e)
    }
}

/// A VirtIO device model behind a transport (virtio-mmio today).
///
/// The transport owns feature negotiation, status, queues and interrupts; the
/// device says what it is and handles one descriptor chain at a time. Every
/// method is called in the hypervisor with the VM's device lock held
/// (see [`crate::mmio`]). None may panic, whatever the guest put in memory.
pub trait VirtioDevice: Send + 'static {
    /// The device type (§5), e.g. [`crate::device_id::ENTROPY`].
    fn device_id(&self) -> u32;

    /// Device-specific feature bits offered (bits 0..=23 and 50..=63; none by
    /// default). The transport adds the reserved bits it implements
    /// (`VIRTIO_F_VERSION_1`, `VIRTIO_F_INDIRECT_DESC`, `VIRTIO_F_EVENT_IDX`)
    /// and clears the others.
    fn features(&self) -> u64 {
        0
    }

    /// Number of virtqueues (at most 64).
    fn num_queues(&self) -> u16;

    /// Largest size queue `queue` may have (a power of two, at most 32768).
    fn queue_max_size(&self, queue: u16) -> u16;

    /// Size of the device-specific configuration space in bytes (none by default).
    fn config_len(&self) -> u32 {
        0
    }

    /// Reads `data.len()` bytes of configuration space at `offset` (already
    /// checked to lie within [`config_len`](Self::config_len)). The default
    /// reads zeros.
    fn read_config(&self, _offset: u32, data: &mut [u8]) {
        data.fill(0);
    }

    /// A driver write of `data` at `offset` (within `config_len`). Most
    /// configuration fields are read-only: the default ignores the write.
    fn write_config(&mut self, _offset: u32, _data: &[u8]) {}

    /// The driver set `DRIVER_OK` with these negotiated features.
    fn activate(&mut self, _features: u64) {}

    /// Handles one available chain of queue `queue`.
    fn handle(
        &mut self,
        queue: u16,
        buffer: &Buffer,
        mem: &mut dyn GuestMemory,
    ) -> Result<Handled, DeviceError>;

    /// Device reset (status written to 0, or VM reset): forget negotiated
    /// state. Host-side data the device keeps (queued console input, disk
    /// contents) survives. The default keeps nothing to forget.
    fn reset(&mut self) {}
}
