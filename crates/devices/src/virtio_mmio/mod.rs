//! A virtio-mmio device (VirtIO 1.2 §4.2, modern interface): the
//! [`fv_virtio::mmio::MmioTransport`] register model in front of a
//! [`fv_virtio::device::VirtioDevice`], as an [`MmioDevice`] with an
//! interrupt line.
//!
//! The transport, queues and device models live in the portable `fv-virtio`
//! crate (which knows nothing of buses or interrupt controllers); this
//! wrapper only maps register accesses onto it and drives interrupt source
//! `irq` from its InterruptStatus (asserted while it is non-zero).
//!
//! # Calling context
//!
//! Register accesses come through the bus like any device's. A write to
//! QueueNotify only marks the queue pending, since an access has no guest
//! memory at hand: the hypervisor then calls [`VirtioMmio::process`] with
//! the VM's guest memory, under the same VM device lock (for instance through
//! [`crate::VmDevices::with_device`] right after the trapped access, or at a
//! later scheduling point), and again while
//! [`VirtioMmio::has_pending`] says work is left. Host-side input (console
//! bytes) goes in through [`VirtioMmio::transport_mut`] followed by
//! [`fv_virtio::mmio::MmioTransport::notify`] and `process`.
//!
//! The hypervisor puts a virtio-console here for VMs configured with
//! `console: virtio` (see `docs/ARCHITECTURE.md`, "VirtIO (device side)"),
//! and a virtio-net NIC for each NIC in a VM's boot package records (see
//! "Networking" there).

use fv_virtio::device::VirtioDevice;
use fv_virtio::mmio::{MmioTransport, TransportError, MMIO_SIZE};
use fv_vm::GuestMemory;

use crate::{AccessWidth, DeviceCtx, IrqSink, MmioDevice};

/// A virtio-mmio device with device model `D` on interrupt source `irq`.
#[derive(Debug)]
pub struct VirtioMmio<D> {
    transport: MmioTransport<D>,
    irq: u32,
    /// The level last reported on `irq`.
    line: bool,
}

impl<D: VirtioDevice> VirtioMmio<D> {
    /// A device in its reset state, interrupting on source `irq`.
    pub fn new(device: D, irq: u32) -> Result<Self, TransportError> {
        Ok(Self {
            transport: MmioTransport::new(device)?,
            irq,
            line: false,
        })
    }

    /// The transport (counters, queues, the device model).
    pub fn transport(&self) -> &MmioTransport<D> {
        &self.transport
    }

    /// The transport, mutably (host-side input; follow with
    /// [`process`](Self::process) so the line follows).
    pub fn transport_mut(&mut self) -> &mut MmioTransport<D> {
        &mut self.transport
    }

    /// Whether notified queues still have work for [`process`](Self::process).
    pub fn has_pending(&self) -> bool {
        self.transport.has_pending()
    }

    /// Handles the notified queues against the VM's memory and updates the
    /// interrupt line.
    pub fn process(&mut self, mem: &mut dyn GuestMemory, irq: &mut dyn IrqSink) {
        self.transport.process(mem);
        self.update_line(irq);
    }

    /// Reports the line if InterruptStatus moved it.
    pub fn update_line(&mut self, irq: &mut dyn IrqSink) {
        let level = self.transport.interrupt_level();
        if level != self.line {
            self.line = level;
            irq.set_level(self.irq, level);
        }
    }
}

impl<D: VirtioDevice> MmioDevice for VirtioMmio<D> {
    fn size(&self) -> u64 {
        MMIO_SIZE
    }

    fn read(&mut self, offset: u64, width: AccessWidth, _ctx: &mut DeviceCtx<'_>) -> u64 {
        if offset >= MMIO_SIZE {
            return 0;
        }
        self.transport.read(offset, width)
    }

    fn write(&mut self, offset: u64, width: AccessWidth, value: u64, ctx: &mut DeviceCtx<'_>) {
        if offset < MMIO_SIZE {
            self.transport.write(offset, width, value);
        }
        self.update_line(ctx.irq);
    }

    fn reset(&mut self, ctx: &mut DeviceCtx<'_>) {
        self.transport.reset();
        self.line = false;
        ctx.irq.set_level(self.irq, false);
    }
}

#[cfg(test)]
mod tests;
