//! The Ferrovisor host tool as a library: VM configuration, kernel loading, boot
//! package building, running QEMU, the integration-test harness and the benchmark.
//!
//! The `ferrovisor` binary (`src/main.rs`) is a thin command-line front end.
#![deny(missing_docs)]

pub mod bench;
pub mod config;
pub mod devices;
pub mod loader;
pub mod package;
pub mod paths;
pub mod qemu;
pub mod testing;

/// The line the hypervisor prints once every VM has stopped, just before it powers
/// the machine off through SBI SRST.
pub const ALL_VMS_STOPPED: &str = "ferrovisor: all VMs stopped";

/// Bytes in a mebibyte.
pub const MIB: u64 = 1 << 20;
