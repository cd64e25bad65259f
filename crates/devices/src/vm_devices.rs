//! One VM's devices: the MMIO bus plus the interrupt controller its devices
//! signal.

use alloc::boxed::Box;
use core::any::Any;
use core::fmt;

use fv_addr::{GuestPhysAddr, Range};

use crate::{
    AccessWidth, BusError, DeviceCtx, DeviceId, InterruptController, IrqSink, MmioBus, MmioDevice,
    NullSink,
};

struct Controller {
    range: Range<GuestPhysAddr>,
    intc: Box<dyn InterruptController>,
}

/// Everything a VM has behind MMIO: ordinary devices on an [`MmioBus`] and,
/// optionally, one [`InterruptController`] at its own range.
///
/// The controller is kept off the bus so that, while a device on the bus is
/// being accessed, its interrupt line can be delivered straight to the
/// controller (the controller is the device's [`IrqSink`]). Without a
/// controller, lines go to a [`NullSink`].
///
/// After every call that may move an interrupt line ([`read`](Self::read),
/// [`write`](Self::write), [`with_device`](Self::with_device),
/// [`set_irq_level`](Self::set_irq_level), [`reset`](Self::reset)), the core
/// drains [`take_changed`](Self::take_changed) and updates those vCPUs'
/// `hvip.VSEIP`.
#[derive(Default)]
pub struct VmDevices {
    bus: MmioBus,
    intc: Option<Controller>,
}

impl fmt::Debug for VmDevices {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VmDevices")
            .field("bus", &self.bus)
            .field("intc", &self.intc.as_ref().map(|c| c.range))
            .finish()
    }
}

impl VmDevices {
    /// No devices, no interrupt controller.
    pub const fn new() -> Self {
        Self {
            bus: MmioBus::new(),
            intc: None,
        }
    }

    /// Installs the VM's interrupt controller at `base` (covering its
    /// [`MmioDevice::size`]).
    pub fn set_interrupt_controller(
        &mut self,
        base: GuestPhysAddr,
        intc: Box<dyn InterruptController>,
    ) -> Result<(), BusError> {
        if self.intc.is_some() {
            return Err(BusError::ControllerPresent);
        }
        let range = MmioBus::range_for(base, intc.size())?;
        if !self.bus.is_free(&range) {
            return Err(BusError::Overlap);
        }
        self.intc = Some(Controller { range, intc });
        Ok(())
    }

    /// Places a device at `base` (covering its [`MmioDevice::size`]).
    pub fn add_device(
        &mut self,
        base: GuestPhysAddr,
        device: Box<dyn MmioDevice>,
    ) -> Result<DeviceId, BusError> {
        let range = MmioBus::range_for(base, device.size())?;
        if self.intc.as_ref().is_some_and(|c| c.range.overlaps(&range)) {
            return Err(BusError::Overlap);
        }
        self.bus.insert(base, device)
    }

    /// The bus holding every device but the interrupt controller.
    pub fn bus(&self) -> &MmioBus {
        &self.bus
    }

    /// The interrupt controller, if the VM has one.
    pub fn interrupt_controller(&self) -> Option<&dyn InterruptController> {
        self.intc.as_ref().map(|c| &*c.intc)
    }

    /// The interrupt controller, if the VM has one.
    pub fn interrupt_controller_mut(&mut self) -> Option<&mut dyn InterruptController> {
        match &mut self.intc {
            Some(c) => Some(&mut *c.intc),
            None => None,
        }
    }

    /// The interrupt controller as its concrete type, if it is a `T`.
    pub fn interrupt_controller_as<T: InterruptController>(&mut self) -> Option<&mut T> {
        let intc: &mut dyn Any = &mut *self.intc.as_mut()?.intc;
        intc.downcast_mut::<T>()
    }

    /// Device `id` as its concrete type, if it is a `T`.
    pub fn device_mut<T: MmioDevice>(&mut self, id: DeviceId) -> Option<&mut T> {
        self.bus.device_mut(id)
    }

    /// Runs `f` on device `id` (if it is a `T`) with the VM's interrupt sink,
    /// for host-side calls that can move the device's line (console input,
    /// draining console output).
    pub fn with_device<T: MmioDevice, R>(
        &mut self,
        id: DeviceId,
        f: impl FnOnce(&mut T, &mut dyn IrqSink) -> R,
    ) -> Option<R> {
        let dev = self.bus.device_mut::<T>(id)?;
        let mut null = NullSink;
        let sink: &mut dyn IrqSink = match &mut self.intc {
            Some(c) => &mut *c.intc,
            None => &mut null,
        };
        Some(f(dev, sink))
    }

    /// Drives interrupt source `irq` from the host side (a device modelled
    /// outside this crate). Ignored without an interrupt controller.
    pub fn set_irq_level(&mut self, irq: u32, level: bool) {
        if let Some(c) = &mut self.intc {
            c.intc.set_level(irq, level);
        }
    }

    /// A guest load by `vcpu` at `addr` (guest time `time`), masked to
    /// `width`; `None` if nothing is there (inject a load access fault).
    pub fn read(
        &mut self,
        addr: GuestPhysAddr,
        width: AccessWidth,
        vcpu: u32,
        time: u64,
    ) -> Option<u64> {
        if let Some(c) = &mut self.intc {
            if c.range.contains(addr) {
                let offset = addr.offset_from(c.range.start).ok()?;
                let mut null = NullSink;
                let mut ctx = DeviceCtx::new(&mut null, vcpu, time);
                return Some(c.intc.read(offset, width, &mut ctx) & width.mask());
            }
        }
        let mut null = NullSink;
        let sink: &mut dyn IrqSink = match &mut self.intc {
            Some(c) => &mut *c.intc,
            None => &mut null,
        };
        self.bus
            .read(addr, width, &mut DeviceCtx::new(sink, vcpu, time))
    }

    /// A guest store by `vcpu` at `addr` (guest time `time`); `false` if
    /// nothing is there (inject a store/AMO access fault).
    #[must_use]
    pub fn write(
        &mut self,
        addr: GuestPhysAddr,
        width: AccessWidth,
        value: u64,
        vcpu: u32,
        time: u64,
    ) -> bool {
        if let Some(c) = &mut self.intc {
            if c.range.contains(addr) {
                let Ok(offset) = addr.offset_from(c.range.start) else {
                    return false;
                };
                let mut null = NullSink;
                let mut ctx = DeviceCtx::new(&mut null, vcpu, time);
                c.intc.write(offset, width, value & width.mask(), &mut ctx);
                return true;
            }
        }
        let mut null = NullSink;
        let sink: &mut dyn IrqSink = match &mut self.intc {
            Some(c) => &mut *c.intc,
            None => &mut null,
        };
        self.bus
            .write(addr, width, value, &mut DeviceCtx::new(sink, vcpu, time))
    }

    /// Whether vCPU `vcpu`'s external interrupt should be asserted.
    pub fn pending_for(&self, vcpu: u32) -> bool {
        self.intc.as_ref().is_some_and(|c| c.intc.pending_for(vcpu))
    }

    /// The next vCPU whose external interrupt level changed, with its level
    /// (see [`InterruptController::take_changed`]).
    pub fn take_changed(&mut self) -> Option<(u32, bool)> {
        self.intc.as_mut()?.intc.take_changed()
    }

    /// Resets every device, then the interrupt controller (VM reboot).
    pub fn reset(&mut self) {
        let mut null = NullSink;
        {
            let sink: &mut dyn IrqSink = match &mut self.intc {
                Some(c) => &mut *c.intc,
                None => &mut null,
            };
            self.bus.reset(&mut DeviceCtx::new(sink, 0, 0));
        }
        if let Some(c) = &mut self.intc {
            c.intc.reset(&mut DeviceCtx::new(&mut null, 0, 0));
        }
    }
}
