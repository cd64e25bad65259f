//! isolation-test: what lies outside the guest's memory traps the way real
//! hardware traps, and the guest's RAM is really there.
//!
//! - loads/stores just past the end of RAM (from the DTB) and at addresses the
//!   DTB names no device for: load access fault (5) / store access fault (7);
//! - jumping there: instruction access fault (1);
//! - reading mstatus, the all-zero instruction, and (when the DTB does not
//!   list the H extension) hstatus/hgatp: illegal instruction (2);
//! - when the DTB lists Zihpm, reading `hpmcounter3` does not trap;
//! - the last word of RAM stores and loads back;
//! - at least 1000 stores spread over every 2 MiB block of RAM read back;
//! - guest RAM at the guest-physical addresses where, on the host, the
//!   firmware (OpenSBI, 0x8000_0000..0x8006_0000) and the hypervisor image
//!   (0x8020_0000 and up; 0x80A0_0000 and 0x8100_0000 are used) live is this
//!   guest's own RAM: words stored there read back (addresses the DTB marks
//!   reserved or that hold the image, stacks or DTB are skipped, so on bare
//!   QEMU the firmware range is);
//! - the host's devices the DTB does not list (CLINT 0x0200_0000, PLIC
//!   0x0c00_0000, UART 0x1000_0000, test finisher 0x0010_0000): loads and
//!   stores give access faults. Devices the DTB lists are skipped (all of them
//!   on bare QEMU); the value stored is 0, which the finisher ignores, and the
//!   finisher is never written when the DTB lists it;
//! - when the DTB lists Zcb: its compressed byte/halfword loads and stores
//!   (c.lbu, c.lhu, c.lh, c.sb, c.sh) on the UART the DTB lists reach the
//!   device with the right width, extension and offset (see `mmio`);
//! - an AMO, an FP load and (with Zicbom) a cache-block flush on that UART
//!   either execute correctly (bare QEMU) or raise an access fault (under
//!   Ferrovisor, which does not emulate them on devices), nothing else.
//!
//! - `scounteren` and `senvcfg` start at 0 and keep this VM's values while it
//!   is descheduled (`csrs.rs`; with `csr-switch=<n>` only that check runs).
//!
//! These hold on bare QEMU (unbacked physical addresses raise access faults)
//! and under a hypervisor that injects access faults for unbacked GPAs.
#![no_std]
#![no_main]

mod mmio;

use core::arch::asm;

mod csrs;

use fv_guest_rt::platform::{for_each_device_range, Region};
use fv_guest_rt::report::name;
use fv_guest_rt::trap::{
    self, TrapInfo, ILLEGAL_INSTRUCTION, INSTRUCTION_ACCESS_FAULT, LOAD_ACCESS_FAULT,
    STORE_ACCESS_FAULT,
};
use fv_guest_rt::{println, Platform, Reporter};

fv_guest_rt::guest_main!("isolation-test", main);

const BLOCK: usize = 2 << 20;
/// Addresses in holes of QEMU virt's memory map (and of a Ferrovisor VM's).
/// The first two the DTB does not claim are used.
const HOLE_CANDIDATES: [usize; 5] = [
    0x0900_0000,
    0x1100_0000,
    0x0700_0000,
    0x1800_0000,
    0x0a00_0000,
];

/// Where the host's firmware (OpenSBI) lives on QEMU virt: first word, a
/// word in its data, its last word.
const HOST_FIRMWARE_WORDS: [usize; 4] = [0x8000_0000, 0x8002_0000, 0x8004_0000, 0x8005_fff8];
/// Inside the host's hypervisor image (loaded at 0x8020_0000, some MiB),
/// above this guest's own image.
const HOST_HYPERVISOR_BLOCKS: [usize; 2] = [0x80A0_0000, 0x8100_0000];
/// Bytes checked at each of [`HOST_HYPERVISOR_BLOCKS`].
const HOST_BLOCK_BYTES: usize = 16 << 10;

/// Host devices on QEMU virt that a VM's DTB does not list: name, address.
const HOST_DEVICES: [(&str, usize); 7] = [
    ("clint", 0x0200_0000),
    ("clint-mtime", 0x0200_bff8),
    ("plic", 0x0c00_0000),
    ("plic-context", 0x0c20_0004),
    ("uart", 0x1000_0000),
    ("uart-lsr", 0x1000_0005),
    ("test-finisher", 0x0010_0000),
];

/// The device range or memory region the DTB names that contains `a`.
fn claimed(p: &Platform, a: usize) -> Option<Region> {
    let mut hit = None;
    if let Some(fdt) = p.fdt() {
        for_each_device_range(&fdt, |_, reg| {
            if reg.contains(a) && hit.is_none() {
                hit = Some(reg);
            }
        });
    }
    if let Some(m) = p.memory().iter().find(|m| m.contains(a)) {
        hit = Some(*m);
    }
    hit
}

fn main(p: &'static Platform, r: &'static Reporter) {
    if csrs::check(p, r) {
        return;
    }
    let ram_end = p.memory().iter().map(|m| m.end).max().unwrap_or(p.ram.end);
    println!(
        "INFO: isolation-test: RAM {} (all memory regions end at {ram_end:#x}), image {}, dtb {}",
        p.ram, p.image, p.dtb
    );
    for x in p.reserved() {
        println!("INFO: isolation-test: reserved {x}");
    }
    let claimed = |a: usize| claimed(p, a);

    // Past the end of RAM: the first byte, the last word of the next page, the
    // next 2 MiB block.
    let past = [ram_end, ram_end + 0x1000 - 8, ram_end + BLOCK];
    for (i, &a) in past.iter().enumerate() {
        if let Some(reg) = claimed(a) {
            r.fail(
                "past-ram-end-unclaimed",
                format_args!("{a:#x} is in {reg} according to the DTB"),
            );
            continue;
        }
        println!("INFO: isolation-test: past RAM end: {a:#x}");
        let l = trap::try_load_u64(a);
        expect_fault(
            r,
            &name("load-past-ram-end-", i),
            a,
            l.map(|_| ()),
            LOAD_ACCESS_FAULT,
        );
        let s = trap::try_store_u64(a, 0x5a5a_5a5a_5a5a_5a5a);
        expect_fault(r, &name("store-past-ram-end-", i), a, s, STORE_ACCESS_FAULT);
    }
    let x = trap::try_exec(ram_end);
    expect_fault(r, "exec-past-ram-end", ram_end, x, INSTRUCTION_ACCESS_FAULT);

    // Holes where the DTB has nothing.
    let holes = HOLE_CANDIDATES
        .iter()
        .copied()
        .filter(|&a| claimed(a).is_none());
    let mut used = 0;
    for a in holes.take(2) {
        println!("INFO: isolation-test: no device at {a:#x} per the DTB");
        let l = trap::try_load_u32(a);
        expect_fault(
            r,
            &name("load-no-device-", used),
            a,
            l.map(|_| ()),
            LOAD_ACCESS_FAULT,
        );
        let s = trap::try_store_u32(a, 0xa5a5_a5a5);
        expect_fault(r, &name("store-no-device-", used), a, s, STORE_ACCESS_FAULT);
        let x = trap::try_exec(a);
        expect_fault(
            r,
            &name("exec-no-device-", used),
            a,
            x,
            INSTRUCTION_ACCESS_FAULT,
        );
        used += 1;
    }
    if used < 2 {
        r.fail(
            "no-device-addresses",
            format_args!("the DTB claims all of {HOLE_CANDIDATES:#x?}"),
        );
    }

    illegal(p, r);
    last_word(p, r, ram_end);
    all_blocks(p, r);
    host_memory_gpas(p, r);
    host_devices(p, r);
    mmio::zcb_on_uart(p, r);
    mmio::not_emulated_on_uart(p, r);
}

/// Why `[a, a + len)` cannot be used for a store/load-back check, if it can't.
fn unusable(p: &Platform, a: usize, len: usize) -> Option<&'static str> {
    let w = Region::with_size(a, len);
    if !p
        .memory()
        .iter()
        .any(|m| m.start <= w.start && w.end <= m.end)
    {
        Some("not RAM in the DTB")
    } else if p.in_use(w) {
        Some("reserved or in use (image, stacks, DTB)")
    } else {
        None
    }
}

/// Most words [`store_load_back`] checks at once.
const MAX_READBACK_WORDS: usize = 256;

/// What went wrong in [`store_load_back`].
enum Readback {
    /// The access at `addr` trapped.
    Trap {
        addr: usize,
        store: bool,
        t: TrapInfo,
    },
    /// `addr` read back `back` after `stored` was stored there.
    Mismatch { addr: usize, stored: u64, back: u64 },
}

impl core::fmt::Display for Readback {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Readback::Trap { addr, store, t } => write!(
                f,
                "{} at {addr:#x} trapped: {t}",
                if *store { "store" } else { "load" }
            ),
            Readback::Mismatch { addr, stored, back } => {
                write!(f, "at {addr:#x}: stored {stored:#x}, read back {back:#x}")
            }
        }
    }
}

fn load(addr: usize) -> Result<u64, Readback> {
    trap::try_load_u64(addr).map_err(|t| Readback::Trap {
        addr,
        store: false,
        t,
    })
}

fn store(addr: usize, v: u64) -> Result<(), Readback> {
    trap::try_store_u64(addr, v).map_err(|t| Readback::Trap {
        addr,
        store: true,
        t,
    })
}

/// Stores [`pattern`] at every word of `words` (at most
/// [`MAX_READBACK_WORDS`]), then reads each back and restores its old value:
/// the number checked, or the first mismatch or trap. All stores come before
/// the loads, so words aliasing each other show up too.
fn store_load_back(words: impl Iterator<Item = usize>) -> Result<usize, Readback> {
    let mut old = [(0usize, 0u64); MAX_READBACK_WORDS];
    let mut n = 0;
    for (slot, a) in old.iter_mut().zip(words) {
        *slot = (a, load(a)?);
        n += 1;
        store(a, pattern(a))?;
    }
    let mut bad = None;
    for &(a, v) in old.get(..n).unwrap_or(&[]) {
        let back = load(a)?;
        if back != pattern(a) && bad.is_none() {
            bad = Some(Readback::Mismatch {
                addr: a,
                stored: pattern(a),
                back,
            });
        }
        store(a, v)?;
    }
    bad.map_or(Ok(n), Err)
}

/// Guest RAM at the GPAs where the host's firmware and hypervisor live is the
/// guest's own: what is stored there reads back.
fn host_memory_gpas(p: &Platform, r: &Reporter) {
    let mut firmware = [0usize; HOST_FIRMWARE_WORDS.len()];
    let mut nfw = 0;
    for &a in &HOST_FIRMWARE_WORDS {
        match unusable(p, a, 8) {
            Some(why) => println!("INFO: isolation-test: host firmware GPA {a:#x} skipped: {why}"),
            None => {
                if let Some(slot) = firmware.get_mut(nfw) {
                    *slot = a;
                    nfw += 1;
                }
            }
        }
    }
    if nfw > 0 {
        let words = firmware.get(..nfw).unwrap_or(&[]).iter().copied();
        readback_check(r, "ram-at-host-firmware-gpa", words);
    }
    for (i, &base) in HOST_HYPERVISOR_BLOCKS.iter().enumerate() {
        if let Some(why) = unusable(p, base, HOST_BLOCK_BYTES) {
            println!(
                "INFO: isolation-test: host hypervisor GPA block {} skipped: {why}",
                Region::with_size(base, HOST_BLOCK_BYTES)
            );
            continue;
        }
        // One word in every 64 bytes.
        let words = (base..base + HOST_BLOCK_BYTES).step_by(64);
        readback_check(r, &name("ram-at-host-hypervisor-gpa-", i), words);
    }
}

fn readback_check(r: &Reporter, check: &str, words: impl Iterator<Item = usize> + Clone) {
    let first = words.clone().next().unwrap_or(0);
    match store_load_back(words) {
        Ok(n) => {
            println!(
                "INFO: isolation-test: {check}: {n} words from {first:#x} stored and read back"
            );
            r.pass(check);
        }
        Err(e) => r.fail(check, format_args!("{e}")),
    }
}

/// The host's devices that the DTB does not list fault like any hole.
fn host_devices(p: &Platform, r: &Reporter) {
    for (dev, a) in HOST_DEVICES {
        if let Some(reg) = claimed(p, a) {
            println!(
                "INFO: isolation-test: host {dev} at {a:#x} skipped: the DTB lists {reg} there"
            );
            continue;
        }
        let l = trap::try_load_u32(a);
        expect_fault(
            r,
            &check_name("load-host-", dev),
            a,
            l.map(|_| ()),
            LOAD_ACCESS_FAULT,
        );
        // 0: no command for the test finisher (it acts on 0x3333, 0x5555 and
        // 0x7777 only), were it there after all.
        let s = trap::try_store_u32(a, 0);
        expect_fault(r, &check_name("store-host-", dev), a, s, STORE_ACCESS_FAULT);
    }
}

fn check_name(prefix: &str, dev: &str) -> fv_guest_rt::report::Name {
    let mut n = fv_guest_rt::report::Name::new(prefix);
    n.push(dev);
    n
}

fn expect_fault(r: &Reporter, check: &str, addr: usize, got: Result<(), TrapInfo>, cause: usize) {
    match got {
        Ok(()) => r.check(
            check,
            false,
            format_args!("access at {addr:#x} did not trap, expected scause {cause}"),
        ),
        // stval holds the faulting address, or 0 where the platform never
        // writes it.
        Err(t) => r.check(
            check,
            t.scause == cause && (t.stval == addr || t.stval == 0),
            format_args!("access at {addr:#x}: {t}, expected scause {cause} and stval {addr:#x}"),
        ),
    };
}

fn illegal(p: &Platform, r: &Reporter) {
    let t = trap::expect_trap(|| {
        // SAFETY: reading mstatus (0x300) below M-mode raises an
        // illegal-instruction exception, which expect_trap records and skips.
        unsafe { asm!("csrr {0}, 0x300", out(reg) _, options(nomem, nostack)) };
    });
    illegal_check(r, "illegal-csr-mstatus", t);
    let t = trap::expect_trap(|| {
        // SAFETY: the all-zero 16-bit encoding is defined to be illegal; the
        // exception is recorded and the 2 bytes skipped.
        unsafe { asm!(".2byte 0x0000", options(nomem, nostack)) };
    });
    illegal_check(r, "illegal-instruction-zero", t);
    zihpm_counter(p, r);
    if p.has_extension("h") {
        // This S-mode program is HS-mode here: hypervisor CSRs exist.
        println!(
            "INFO: isolation-test: the DTB lists the H extension: hstatus/hgatp checks not run"
        );
        return;
    }
    let t = trap::expect_trap(|| {
        // SAFETY: without the H extension (per the DTB), hstatus (0x600) does
        // not exist for this S-mode program: illegal instruction, recorded and
        // skipped by expect_trap.
        unsafe { asm!("csrr {0}, 0x600", out(reg) _, options(nomem, nostack)) };
    });
    illegal_check(r, "illegal-csr-hstatus", t);
    let t = trap::expect_trap(|| {
        // SAFETY: as above, hgatp (0x680).
        unsafe { asm!("csrr {0}, 0x680", out(reg) _, options(nomem, nostack)) };
    });
    illegal_check(r, "illegal-csr-hgatp", t);
}

/// Zihpm promises the `hpmcounter` CSRs exist (possibly reading zero): when
/// the DTB lists it, reading `hpmcounter3` must not trap.
fn zihpm_counter(p: &Platform, r: &Reporter) {
    if !p.has_extension("zihpm") {
        println!("INFO: isolation-test: the DTB does not list Zihpm: hpmcounter3 not read");
        return;
    }
    let t = trap::expect_trap(|| {
        // SAFETY: reading hpmcounter3 (0xC03) has no side effects; a trap is
        // recorded and skipped by expect_trap.
        unsafe { asm!("csrr {0}, 0xc03", out(reg) _, options(nomem, nostack)) };
    });
    match t {
        None => r.pass("zihpm-hpmcounter3-readable"),
        Some(t) => r.fail(
            "zihpm-hpmcounter3-readable",
            format_args!("the DTB lists Zihpm, but reading hpmcounter3 trapped: {t}"),
        ),
    }
}

fn illegal_check(r: &Reporter, check: &str, t: Option<TrapInfo>) {
    match t {
        None => r.check(check, false, format_args!("no trap")),
        Some(t) => r.check(
            check,
            t.scause == ILLEGAL_INSTRUCTION,
            format_args!("{t}, expected scause {ILLEGAL_INSTRUCTION}"),
        ),
    };
}

fn last_word(p: &Platform, r: &Reporter, ram_end: usize) {
    let a = ram_end - 8;
    println!("INFO: isolation-test: last word of RAM: {a:#x}");
    let w = Region::with_size(a, 8);
    if p.reserved().iter().any(|x| x.overlaps(&w)) {
        r.fail("ram-last-word", format_args!("{a:#x} is reserved memory"));
        return;
    }
    // Save and restore: the DTB may live there under a hypervisor.
    let res = trap::try_load_u64(a).and_then(|orig| {
        let pattern = 0x0123_4567_89ab_cdef_u64 ^ a as u64;
        trap::try_store_u64(a, pattern)?;
        let back = trap::try_load_u64(a)?;
        trap::try_store_u64(a, orig)?;
        Ok((pattern, back))
    });
    match res {
        Ok((pattern, back)) => r.check(
            "ram-last-word",
            back == pattern,
            format_args!("wrote {pattern:#x} at {a:#x}, read back {back:#x}"),
        ),
        Err(t) => r.check(
            "ram-last-word",
            false,
            format_args!("access at {a:#x} trapped: {t}"),
        ),
    };
}

/// Value stored at `a`: depends only on the address, so two stores to one
/// address agree, and a block aliasing another shows up as a wrong value.
fn pattern(a: usize) -> u64 {
    (a as u64)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .rotate_left(17)
        ^ 0xA5A5_5A5A_F00D_CAFE
}

/// Address of store `i` of `count` spread over the 2 MiB blocks of `ram`, not
/// touching memory in use (image, stacks, DTB, reserved), or None.
fn store_address(p: &Platform, i: usize, nblocks: usize) -> Option<usize> {
    let ram = p.ram;
    let block = i % nblocks;
    let round = i / nblocks;
    let base = ram.start + block * BLOCK;
    let end = (base + BLOCK).min(ram.end);
    let slots = (end - base) / 8;
    if slots == 0 {
        return None;
    }
    // 4099 is prime, so rounds land on distinct slots of a block.
    let slot = (round.wrapping_mul(4099) + block.wrapping_mul(131)) % slots;
    let first = base + slot * 8;
    // Step past memory in use, 4 KiB at a time, wrapping inside the block.
    for step in 0..=(BLOCK / 4096) {
        let a = base + (first - base + step * 4096) % (end - base);
        let a = a & !7;
        if !p.in_use(Region::with_size(a, 8)) {
            return Some(a);
        }
    }
    None
}

fn all_blocks(p: &Platform, r: &Reporter) {
    let ram = p.ram;
    let nblocks = ram.len().div_ceil(BLOCK);
    if nblocks == 0 {
        r.fail("ram-blocks-readback", format_args!("RAM {ram} is empty"));
        return;
    }
    let count = nblocks.max(1000);
    let mut stored = 0usize;
    let mut blocks_hit = 0usize;
    let mut last_block = usize::MAX;
    let (mut lo, mut hi) = (usize::MAX, 0usize);
    let mut trapped = None;
    for i in 0..count {
        let Some(a) = store_address(p, i, nblocks) else {
            continue;
        };
        if let Err(t) = trap::try_store_u64(a, pattern(a)) {
            trapped.get_or_insert((a, t));
            continue;
        }
        stored += 1;
        lo = lo.min(a);
        hi = hi.max(a);
        let b = (a - ram.start) / BLOCK;
        if i < nblocks && b != last_block {
            blocks_hit += 1;
            last_block = b;
        }
    }
    println!(
        "INFO: isolation-test: {stored} stores of {count} over {nblocks} blocks of 2 MiB in {ram}, addresses {lo:#x}..={hi:#x}"
    );
    if let Some((a, t)) = trapped {
        r.fail(
            "ram-blocks-store",
            format_args!("store at {a:#x} trapped: {t}"),
        );
    }
    let mut bad = None;
    let mut checked = 0usize;
    for i in 0..count {
        let Some(a) = store_address(p, i, nblocks) else {
            continue;
        };
        match trap::try_load_u64(a) {
            Ok(v) if v == pattern(a) => checked += 1,
            Ok(v) => {
                bad.get_or_insert((a, v, None));
            }
            Err(t) => {
                bad.get_or_insert((a, 0, Some(t)));
            }
        }
    }
    match bad {
        None => r.check(
            "ram-blocks-readback",
            checked >= 1000.min(count) && blocks_hit == nblocks,
            format_args!(
                "{checked} of {count} stores checked, {blocks_hit} of {nblocks} blocks had room"
            ),
        ),
        Some((a, v, t)) => r.check(
            "ram-blocks-readback",
            false,
            format_args!(
                "at {a:#x}: read {v:#x}, expected {:#x}, trap {:?}",
                pattern(a),
                t
            ),
        ),
    };
}
