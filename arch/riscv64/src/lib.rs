//! The RISC-V arch layer of Ferrovisor (HS-mode, H extension).
//!
//! * [`regs`] and [`decode`] are portable (host-tested): CSR bitfields and the
//!   decoder that turns a trapped load/store into an MMIO access.
//! * [`csr`], [`switch`], [`trap`], [`vcpu`], [`firmware`] only exist on riscv64:
//!   CSR access, the world switch, trap vectors, the [`fv_vm::Vcpu`]
//!   implementation and calls down to the SBI firmware (OpenSBI).
#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]

pub mod decode;
pub mod regs;

#[cfg(target_arch = "riscv64")]
pub mod cache;
#[cfg(target_arch = "riscv64")]
pub mod csr;
#[cfg(target_arch = "riscv64")]
pub mod firmware;
#[cfg(target_arch = "riscv64")]
pub mod switch;
#[cfg(target_arch = "riscv64")]
pub mod trap;
#[cfg(target_arch = "riscv64")]
pub mod vcpu;
