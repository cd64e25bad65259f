//! The VM and vCPU model, independent of any architecture.
//!
//! * [`Vcpu`] is the contract every architecture implements: `run()` enters the
//!   guest and returns a decoded [`VcpuExit`].
//! * The core (this crate) decides what an exit means for the VM: emulate MMIO,
//!   answer SBI, inject a fault, yield on WFI, or stop the VM with a reason.
//! * [`VcpuFences`] and [`EpochFence`] are the cross-hart fence handshakes.
//! * [`Lifecycle`] is a VM's run state, every transition one atomic step.
//! * [`GuestMemory`] is how the core and device models reach guest RAM.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod exit;
pub mod fence;
pub mod lifecycle;
pub mod memory;
pub mod vcpu;

pub use exit::{Access, AccessWidth, HostInterrupt, VcpuExit};
pub use fence::{EpochFence, VcpuFences};
pub use lifecycle::{Lifecycle, RunState};
pub use memory::{GuestMemory, GuestMemoryError, VecMemory};
pub use vcpu::{GuestException, Vcpu, VcpuBoot, VirtualInterrupt};
