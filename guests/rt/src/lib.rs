//! Runtime for Ferrovisor's bare-metal RISC-V test guests.
//!
//! A guest is an ordinary S-mode program entered by the Linux RISC-V boot
//! protocol (a0 = hart id, a1 = DTB address, at 0x8020_0000, one hart). It runs
//! unchanged on bare QEMU (OpenSBI underneath) and as a VM under Ferrovisor
//! (VS-mode). This crate provides:
//!
//! - the entry (`_start`): per-hart stack, `stvec`, bss zeroing, then the
//!   guest's main function declared with [`guest_main!`];
//! - a shared linker script (the guest's build script adds
//!   `cargo:rustc-link-arg-bins=-Tfv-guest-rt.ld`);
//! - a console ([`print!`], [`println!`]) writing whole lines through SBI DBCN
//!   when available, else the legacy putchar;
//! - a trap handler with [`trap::expect_trap`] and registered interrupt handlers;
//! - the [`Reporter`] printing the test-guest protocol lines;
//! - a [`Platform`] summary of the device tree;
//! - secondary-hart start through SBI HSM ([`hart::start`]).
//!
//! Test-guest protocol (see docs/ARCHITECTURE.md): one line per check,
//! `PASS: <guest>/<check>` or `FAIL: <guest>/<check>: <detail>`, then
//! `DONE: <guest> passed=<n> failed=<m>` and an SBI SRST shutdown.
#![no_std]
#![deny(missing_docs)]

pub mod console;
pub mod csr;
mod entry;
pub mod hart;
pub mod platform;
pub mod report;
pub mod sbi;
pub mod trap;

pub use fdt;
pub use hart::hart_id;
pub use platform::{Platform, Region};
pub use report::Reporter;
pub use sbi_rt;
pub use trap::{expect_trap, TrapInfo};

/// Harts this runtime has stacks for; harts with a larger id are never run.
/// Keep in sync with `FV_MAX_HARTS` in `link.ld`.
pub const MAX_HARTS: usize = 8;

/// log2 of [`STACK_SIZE`] (global asm cannot rely on the M extension being enabled).
pub const STACK_SHIFT: usize = 15;

/// Stack bytes per hart. Keep in sync with `FV_STACK_SIZE` in `link.ld`.
pub const STACK_SIZE: usize = 1 << STACK_SHIFT;

/// Where the image is linked and entered (RAM base + 2 MiB).
pub const LOAD_ADDRESS: usize = 0x8020_0000;

/// Declares the guest's name and main function.
///
/// ```ignore
/// fv_guest_rt::guest_main!("sbi-test", main);
/// fn main(p: &'static fv_guest_rt::Platform, r: &'static fv_guest_rt::Reporter) { … }
/// ```
///
/// The runtime calls `main` on the boot hart after parsing the device tree;
/// when it returns the runtime prints the `DONE:` line and shuts down.
#[macro_export]
macro_rules! guest_main {
    ($name:literal, $main:path) => {
        #[doc(hidden)]
        #[unsafe(no_mangle)]
        pub static __FV_GUEST_NAME: &str = $name;

        #[doc(hidden)]
        #[unsafe(no_mangle)]
        pub fn __fv_guest_main(
            platform: &'static $crate::Platform,
            reporter: &'static $crate::Reporter,
        ) {
            $main(platform, reporter)
        }
    };
}

extern "Rust" {
    static __FV_GUEST_NAME: &'static str;
    fn __fv_guest_main(platform: &'static Platform, reporter: &'static Reporter);
}

/// The guest's name as given to [`guest_main!`].
pub fn guest_name() -> &'static str {
    // SAFETY: `guest_main!` defines this immutable static in the guest binary;
    // it is initialised at link time and never written.
    unsafe { __FV_GUEST_NAME }
}

/// Rust side of the boot hart's entry, called by `_start` with a0/a1 intact.
extern "C" fn boot_rust(hartid: usize, dtb: usize) -> ! {
    match platform::init(hartid, dtb) {
        Ok(p) => {
            // SAFETY: `guest_main!` defines this function in the guest binary
            // with exactly this signature.
            unsafe { __fv_guest_main(p, report::reporter()) };
            report::reporter().finish()
        }
        Err(e) => {
            println!(
                "FAIL: {}/dtb: cannot read the device tree at {dtb:#x}: {e}",
                guest_name()
            );
            sbi::shutdown(false)
        }
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    match info.location() {
        Some(l) => println!(
            "FAIL: {}/panic: {} at {}:{}",
            guest_name(),
            info.message(),
            l.file(),
            l.line()
        ),
        None => println!("FAIL: {}/panic: {}", guest_name(), info.message()),
    }
    sbi::shutdown(false)
}
