//! Device models guests see, emulated by the hypervisor on MMIO traps.
//!
//! When a guest loads from or stores to a guest-physical address that is not
//! RAM, the arch layer decodes the trapped instruction into a
//! [`fv_vm::VcpuExit::MmioRead`] / [`fv_vm::VcpuExit::MmioWrite`] (address,
//! width, value). The core hands it to this crate:
//!
//! * [`MmioDevice`] is the one trait every device model implements: a register
//!   block of [`MmioDevice::size`] bytes, read and written at offsets.
//! * [`MmioBus`] maps devices at guest-physical ranges (no overlaps) and
//!   dispatches an access by address; `None` / `false` means nothing is there
//!   and the core injects an access fault.
//! * [`IrqSink`] is how a device drives its interrupt line;
//!   [`InterruptController`] is what receives those lines and decides which
//!   vCPU's external interrupt (`hvip.VSEIP`) is asserted. [`plic::Plic`]
//!   implements it today; a virtual APLIC + IMSIC guest file can replace it.
//! * [`VmDevices`] is one VM's complete set: the bus plus its interrupt
//!   controller, wired so that device interrupt lines reach the controller.
//!
//! Device models: [`uart16550::Uart16550`] (ns16550a console),
//! [`plic::Plic`] (RISC-V PLIC v1.0.0) and [`virtio_mmio::VirtioMmio`]
//! (virtio-mmio in front of a device model from `fv-virtio`; the hypervisor
//! uses it for the virtio-console).
//!
//! # How the core uses it
//!
//! ```
//! use fv_addr::GuestPhysAddr;
//! use fv_devices::{plic::Plic, uart16550::Uart16550, AccessWidth, VmDevices};
//!
//! let mut devices = VmDevices::new();
//! let plic = Plic::new(95, 1).unwrap(); // riscv,ndev = 95, one vCPU
//! devices
//!     .set_interrupt_controller(GuestPhysAddr::new(0x0c00_0000), Box::new(plic))
//!     .unwrap();
//! let uart = devices
//!     .add_device(GuestPhysAddr::new(0x1000_0000), Box::new(Uart16550::new(10)))
//!     .unwrap();
//!
//! // VcpuExit::MmioWrite from vCPU 0: a store of 'h' to THR.
//! let hit = devices.write(GuestPhysAddr::new(0x1000_0000), AccessWidth::Byte, 0x68, 0, 0);
//! assert!(hit); // false: inject a store access fault instead
//! // VcpuExit::MmioRead: `None` means inject a load access fault.
//! assert_eq!(devices.read(GuestPhysAddr::new(0x2000_0000), AccessWidth::Word, 0, 0), None);
//!
//! // After every exit: move hvip.VSEIP of each vCPU whose line changed.
//! while let Some((_vcpu, _asserted)) = devices.take_changed() {}
//!
//! // Whenever it suits the hypervisor: batch the console output.
//! let out = devices
//!     .with_device::<Uart16550, _>(uart, |u, irq| u.take_output(irq))
//!     .unwrap();
//! assert_eq!(out, b"h");
//! ```
//!
//! # Calling context
//!
//! Every method of every device, of the bus and of [`VmDevices`] runs in the
//! hypervisor (HS-mode) on the hart whose vCPU trapped, with host interrupts
//! masked, and with the VM's device lock held: the devices of one VM are one
//! [`VmDevices`], accessed by one hart at a time (vCPUs of the same VM on other
//! harts wait for the lock). Nothing here blocks, allocates on the access path
//! (the UART's output buffer is reserved up front), or takes time that depends
//! on anything but the register touched and the VM's configured sizes.
//!
//! # Guests are hostile
//!
//! Every value, offset and width comes from the guest. Device models never
//! panic on them: an access with a width the register does not support, a
//! misaligned access, or an offset with no register behind it reads as 0 and
//! ignores writes, as a real bus would. Models are deterministic: the same
//! sequence of accesses and host inputs always gives the same results.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

extern crate alloc;

#[cfg(test)]
extern crate std;

mod bus;
mod irq;
pub mod plic;
pub mod uart16550;
pub mod virtio_mmio;
mod vm_devices;

pub use bus::{BusError, DeviceId, MmioBus};
pub use fv_vm::AccessWidth;
pub use irq::{InterruptController, IrqSink, NullSink};
pub use vm_devices::VmDevices;

use core::any::Any;

/// What a device sees of the world during one access.
///
/// Built by whoever dispatches the access ([`MmioBus`], [`VmDevices`]) for
/// exactly that access; devices must not keep anything from it.
pub struct DeviceCtx<'a> {
    /// Where the device reports its interrupt line (normally the VM's
    /// [`InterruptController`]; a [`NullSink`] when the VM has none).
    pub irq: &'a mut dyn IrqSink,
    /// Index of the vCPU whose access this is (0-based; the hart ID the guest sees).
    pub vcpu: u32,
    /// The guest's `time` CSR value at the access, in timebase ticks. Devices
    /// with a notion of time (none yet) read it here rather than keeping a clock.
    pub time: u64,
}

impl<'a> DeviceCtx<'a> {
    /// A context for an access by `vcpu` at guest time `time`.
    pub fn new(irq: &'a mut dyn IrqSink, vcpu: u32, time: u64) -> Self {
        Self { irq, vcpu, time }
    }
}

impl core::fmt::Debug for DeviceCtx<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DeviceCtx")
            .field("vcpu", &self.vcpu)
            .field("time", &self.time)
            .finish_non_exhaustive()
    }
}

/// A memory-mapped device model: a register block of [`size`](Self::size)
/// bytes that the guest reads and writes.
///
/// `offset` is relative to the start of the block; `value` (writes) carries
/// only the low `width` bytes. A read returns the value in the low `width`
/// bytes (callers mask anything above). An access with a width the register
/// does not support, misaligned, or at an offset with no register (including
/// anything at or past `size`) reads 0 and is ignored on write. Neither method
/// may panic, whatever the arguments.
///
/// `Any` lets the owner of a bus get the concrete model back
/// ([`MmioBus::device_mut`]); `Send` lets a VM's devices live behind a lock
/// shared between harts.
pub trait MmioDevice: Any + Send {
    /// Size of the register block in bytes (constant for the device's lifetime).
    fn size(&self) -> u64;

    /// A guest load of `width` bytes at `offset`.
    fn read(&mut self, offset: u64, width: AccessWidth, ctx: &mut DeviceCtx<'_>) -> u64;

    /// A guest store of the low `width` bytes of `value` at `offset`.
    fn write(&mut self, offset: u64, width: AccessWidth, value: u64, ctx: &mut DeviceCtx<'_>);

    /// Puts the device back in its power-on state (VM reset), reporting any
    /// interrupt line that changes through `ctx`.
    fn reset(&mut self, ctx: &mut DeviceCtx<'_>);
}

/// Whether an access of `width` at `offset` is naturally aligned and lies
/// entirely within a block of `size` bytes.
pub(crate) fn access_ok(offset: u64, width: AccessWidth, size: u64) -> bool {
    let bytes = width.bytes();
    offset.is_multiple_of(bytes) && offset.checked_add(bytes).is_some_and(|end| end <= size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_ok_checks_alignment_and_bounds() {
        assert!(access_ok(0, AccessWidth::Byte, 1));
        assert!(!access_ok(1, AccessWidth::Byte, 1));
        assert!(access_ok(4, AccessWidth::Word, 8));
        assert!(!access_ok(2, AccessWidth::Word, 8));
        assert!(!access_ok(8, AccessWidth::Word, 8));
        assert!(!access_ok(u64::MAX - 3, AccessWidth::Word, u64::MAX));
        assert!(!access_ok(u64::MAX, AccessWidth::Byte, u64::MAX));
        assert!(access_ok(u64::MAX - 1, AccessWidth::Byte, u64::MAX));
        assert!(!access_ok(0, AccessWidth::Double, 4));
    }
}
