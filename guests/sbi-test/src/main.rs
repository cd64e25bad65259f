//! sbi-test: conformance checks of the SBI implementation underneath (SBI
//! v2.0, plus FWFT and DBTR of v3.0), one module per extension: every
//! function of every offered extension, its error cases, and multi-hart
//! behaviour (HSM states seen across harts, IPIs, suspend wake-ups) when the
//! device tree has more than one hart (run with 1, 2 and 4 vCPUs). Checks of
//! behaviour the spec leaves open (which extensions exist, the VM's device
//! layout for the external-interrupt wake-up) run only under Ferrovisor.
//!
//! On bare QEMU, OpenSBI v1.5 (SBI 2.0 with draft FWFT) fails some checks
//! where it departs from the spec text: `ipi/mask-beyond-last-hart` and
//! `rfence/*-wrapping-range` succeed instead of INVALID_PARAM /
//! INVALID_ADDRESS, `dbcn/*-base-addr-hi` return FAILED instead of
//! INVALID_PARAM, and its pre-v3.0 FWFT returns DENIED for
//! `POINTER_MASKING_PMLEN` and for a locked feature (v3.0: DENIED_LOCKED).
//!
//! OpenSBI v1.5 hangs on the two `dbcn/write-outside-ram-*` checks (it reads
//! the buffer in M-mode without checking S-mode can access it and takes an
//! access fault); on bare QEMU skip them with
//! `-append "fv.skip=dbcn/write-outside-ram-end,dbcn/write-outside-ram-low"`
//! (they then print FAIL "not run"). They run last for the same reason.
#![no_std]
#![no_main]

mod base;
mod dbcn;
mod dbtr;
mod fwft;
mod hsm;
mod ipi;
mod legacy;
mod pmu;
mod rfence;
mod srst;
mod susp;
mod time;
mod util;

use fv_guest_rt::{println, Platform, Reporter};

fv_guest_rt::guest_main!("sbi-test", main);

fn main(p: &'static Platform, r: &'static Reporter) {
    println!(
        "INFO: sbi-test: boot hart {} of {} harts, RAM {}, timebase {} Hz, isa {}",
        p.boot_hart,
        p.hart_count(),
        p.ram,
        p.timebase_hz,
        p.isa()
    );
    base::run(r);
    time::run(p, r);
    ipi::run(p, r);
    rfence::run(p, r);
    hsm::run(p, r);
    susp::run(p, r);
    dbcn::run(r);
    fwft::run(r);
    dbtr::run(r);
    legacy::run(p, r);
    srst::run(r);
    pmu::pmu_checks(r);
    dbcn::outside_ram(p, r);
    // The VM then powers off with this hart still SUSPENDED.
    hsm::leave_one_suspended(p, r);
}
