//! The machine as the hypervisor sees it, and the machine each guest sees.
//!
//! * [`parse`] reads the device tree OpenSBI hands the hypervisor (in `a1`)
//!   into a [`PlatformInfo`]: RAM, reserved regions, harts and their ISA,
//!   timebase, console UART, interrupt controllers (PLIC, or APLIC/IMSIC),
//!   CLINT/ACLINT, virtio-mmio slots, syscon poweroff/reboot, initrd and
//!   bootargs. It never panics, whatever the bytes: malformed input is a
//!   [`PlatformError`].
//! * [`build_guest_fdt`] writes a guest's device tree from a
//!   [`GuestFdtConfig`], and [`guest_isa`] derives the ISA a guest may be told
//!   about from a host hart's.
//! * [`dtb`] is the small checked device-tree reader underneath [`parse`].
//!
//! OpenSBI's tree differs from QEMU's `dumpdtb`: it adds `/reserved-memory`
//! for its own image, rewrites the PLIC's M-mode contexts to `0xffffffff`
//! ([`IRQ_UNUSABLE`]), disables the M-level APLIC/IMSIC and drops the PMU
//! event maps. `testdata/` holds both kinds, captured from QEMU 10.0.2.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

extern crate alloc;

pub mod dtb;
mod guest;
mod host;
mod isa;

pub use guest::{
    build_guest_fdt, guest_plic_size, FdtWriteError, GuestFdtConfig, GuestPlic, GuestSyscon,
    GuestUart, GuestVirtioMmio, Stdout, PLIC_CONTEXT_BASE, PLIC_CONTEXT_STRIDE, PLIC_MAX_CONTEXTS,
    PLIC_MAX_NDEV, SYSCON_POWEROFF_VALUE, SYSCON_REBOOT_VALUE, SYSCON_REG_SIZE, UART_CLOCK_HZ,
    UART_REG_SIZE,
};
pub use host::{
    parse, Aplic, AplicDelivery, HartInfo, Imsic, PlatformError, PlatformInfo, Plic, PlicContext,
    PrivMode, SysconAction, Uart, VirtioMmio, IRQ_M_EXT, IRQ_S_EXT, IRQ_UNUSABLE,
};
pub use isa::{
    guest_isa, isa_string_from_list, GuestIsa, IsaExtensions, MmuType, GUEST_EXTENSION_ALLOW_LIST,
};
