//! Interrupt lines and the controller that receives them.

use crate::MmioDevice;

/// Where a device drives its interrupt line.
///
/// `irq` is the interrupt source number the device was configured with (the
/// `interrupts` property in the guest's device tree: a PLIC source ID, later an
/// APLIC source). `level` is the new state of the wire: `true` = asserted.
/// Devices call it whenever their line may have changed; calling it again with
/// the same level must be harmless.
pub trait IrqSink {
    /// Drives interrupt source `irq` to `level`.
    fn set_level(&mut self, irq: u32, level: bool);
}

/// An [`IrqSink`] that drops everything: for devices in a VM without an
/// interrupt controller (the guest then polls).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NullSink;

impl IrqSink for NullSink {
    fn set_level(&mut self, _irq: u32, _level: bool) {}
}

/// A VM's interrupt controller: collects device interrupt lines and decides,
/// per vCPU, whether its VS-level external interrupt is asserted.
///
/// * Device lines arrive through the [`IrqSink`] supertrait:
///   `set_level(src, level)` sets the level of source `src` (sources are
///   numbered from 1; 0 and numbers above [`num_sources`](Self::num_sources)
///   are ignored).
/// * The guest programs it through [`MmioDevice`] (the PLIC's registers; an
///   APLIC's domain registers later).
/// * The core asks [`pending_for`](Self::pending_for) to learn whether a
///   vCPU's external interrupt (`hvip.VSEIP`) should be set, and drains
///   [`take_changed`](Self::take_changed) after every access or line change to
///   learn which vCPUs' lines moved: it then updates that vCPU's `hvip` (if the
///   vCPU is loaded on this hart) or marks it and kicks the hart running it.
///
/// A controller that delivers to vCPUs without the core's help (an IMSIC guest
/// interrupt file written directly by hardware) reports `false` and never has
/// changes.
pub trait InterruptController: MmioDevice + IrqSink {
    /// Number of interrupt sources: valid source numbers are `1..=num_sources()`.
    fn num_sources(&self) -> u32;

    /// Whether vCPU `vcpu`'s external interrupt should be asserted now
    /// (`false` for a vCPU the controller has no target for).
    fn pending_for(&self, vcpu: u32) -> bool;

    /// The next vCPU (lowest index first) whose external interrupt level
    /// differs from the level this method last reported for it (initially
    /// deasserted), with its current level; `None` when all have been reported.
    /// A level that changes and changes back before being taken is not reported.
    fn take_changed(&mut self) -> Option<(u32, bool)>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_sink_accepts_anything() {
        let mut s = NullSink;
        s.set_level(0, true);
        s.set_level(u32::MAX, false);
        let dynamic: &mut dyn IrqSink = &mut s;
        dynamic.set_level(10, true);
    }
}
