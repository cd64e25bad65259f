//! srst-test: SBI SRST cold reboot.
//!
//! First boot: no magic word near the end of RAM, so write it (with the count
//! of checks passed so far), change a `.data` variable, and request a cold
//! reboot. After the reboot (RAM kept, image reloaded, as QEMU's reset does)
//! the magic is there: check the image was reloaded, clear the magic, print
//! `DONE` with the checks of both boots, and shut down.
//!
//! Devices too: the first boot leaves the UART's registers set and its PLIC
//! source claimed, the second checks they were reset (`devices`).
//!
//! The magic lives in the last 16 bytes of RAM that hold nothing in use
//! (image, stacks, DTB, reserved memory), computed the same way on both boots.
#![no_std]
#![no_main]

use core::ptr::{read_volatile, write_volatile};
use core::sync::atomic::{compiler_fence, Ordering};

mod devices;

use fv_guest_rt::sbi;
use fv_guest_rt::{println, Platform, Region, Reporter};

fv_guest_rt::guest_main!("srst-test", main);

const MAGIC: u64 = 0x5352_5354_5245_424F; // "SRSTREBO"
const DATA_INITIAL: u64 = 0x1111_2222_3333_4444;
const DATA_CHANGED: u64 = 0xdead_beef_dead_beef;

/// In `.data`: the image loader sets it, the first boot changes it.
static mut DATA_PROBE: u64 = DATA_INITIAL;

/// Magic word address (followed by the passed-check count), or None.
fn magic_address(p: &Platform) -> Option<usize> {
    let mut a = (p.ram.end - 16) & !7;
    while a >= p.ram.start && a >= p.image.end {
        if !p.in_use(Region::with_size(a, 16)) {
            return Some(a);
        }
        a -= 4096;
    }
    None
}

fn main(p: &'static Platform, r: &'static Reporter) {
    let Some(at) = magic_address(p) else {
        r.fail(
            "magic-address",
            format_args!("no free 16 bytes in RAM {}", p.ram),
        );
        return;
    };
    let magic = at as *mut u64;
    let count = (at + 8) as *mut u64;
    // SAFETY: `at` is 16 bytes of RAM above the image that neither the image,
    // the stacks, the DTB nor reserved memory use (`magic_address`).
    let seen = unsafe { read_volatile(magic) };
    // SAFETY: DATA_PROBE is only touched here, by the boot hart.
    let data = unsafe { read_volatile(core::ptr::addr_of!(DATA_PROBE)) };
    println!("INFO: srst-test: magic word at {at:#x}: {seen:#x}; data probe {data:#x}");

    let devices = devices::Devices::find(p, r);
    if seen != MAGIC {
        // First boot.
        r.check_eq("data-initial-first-boot", data, DATA_INITIAL);
        if let Some(d) = &devices {
            d.dirty(r);
        }
        r.pass("reboot-requested");
        // SAFETY: as above; DATA_PROBE is written only here.
        unsafe {
            write_volatile(count, r.passed() as u64 | ((r.failed() as u64) << 32));
            write_volatile(magic, MAGIC);
            write_volatile(core::ptr::addr_of_mut!(DATA_PROBE), DATA_CHANGED);
        }
        compiler_fence(Ordering::SeqCst);
        fv_guest_rt::csr::fence();
        let ret = sbi::system_reset(sbi::RESET_TYPE_COLD_REBOOT, sbi::RESET_REASON_NONE);
        // Still here: the reboot failed. Undo the magic so a rerun starts clean.
        // SAFETY: as above.
        unsafe { write_volatile(magic, 0) };
        r.fail(
            "reboot",
            format_args!("system_reset(cold reboot) returned {ret}"),
        );
        return;
    }

    // Second boot.
    // SAFETY: as above.
    let before = unsafe { read_volatile(count) };
    // SAFETY: as above; clearing makes the next fresh run a first boot again.
    unsafe {
        write_volatile(magic, 0);
        write_volatile(count, 0);
    }
    r.add_passed((before & 0xffff_ffff) as usize);
    r.add_failed((before >> 32) as usize);
    r.pass("rebooted");
    if let Some(d) = &devices {
        d.check_reset(r);
    }
    r.check(
        "image-reloaded",
        data == DATA_INITIAL,
        format_args!(
            "data probe is {data:#x} after the reboot, expected the image's {DATA_INITIAL:#x} (first boot set {DATA_CHANGED:#x})"
        ),
    );
}
