//! Calls from the hypervisor down to the SBI firmware (OpenSBI in M-mode).

/// Why the machine is being shut down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutdownReason {
    /// Everything ended as it should (QEMU exits with status 0).
    Clean,
    /// Something failed (QEMU exits non-zero).
    Failure,
}

/// Powers the machine off through SBI SRST. Never returns: if the firmware
/// refuses, the hart parks in WFI forever.
pub fn shutdown(reason: ShutdownReason) -> ! {
    match reason {
        ShutdownReason::Clean => {
            let _ = sbi_rt::system_reset(sbi_rt::Shutdown, sbi_rt::NoReason);
        }
        ShutdownReason::Failure => {
            let _ = sbi_rt::system_reset(sbi_rt::Shutdown, sbi_rt::SystemFailure);
        }
    }
    loop {
        crate::csr::wfi();
    }
}

/// Writes bytes to the firmware console (SBI DBCN, one byte per call).
/// For early boot and fatal paths, before or instead of the hypervisor's own UART.
pub fn console_write(bytes: &[u8]) {
    for &b in bytes {
        let _ = sbi_rt::console_write_byte(b);
    }
}

/// Programs the host timer through SBI TIME (when the hart lacks Sstc).
pub fn set_timer(deadline: u64) {
    let _ = sbi_rt::set_timer(deadline);
}

/// Sends a host IPI (supervisor software interrupt) to one hart.
pub fn send_ipi(hartid: usize) {
    let _ = sbi_rt::send_ipi(sbi_rt::HartMask::from_mask_base(1, hartid));
}

/// Starts a stopped hart at physical `entry` with `a1 = opaque`. Returns the SBI error code on failure.
pub fn hart_start(hartid: usize, entry: usize, opaque: usize) -> Result<(), isize> {
    let r = sbi_rt::hart_start(hartid, entry, opaque);
    if r.is_ok() {
        Ok(())
    } else {
        Err(r.error as isize)
    }
}
