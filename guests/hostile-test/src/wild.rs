//! `wild`: memory accesses and jumps where nothing of this VM is.
//!
//! Every access goes to an address that is neither RAM nor a device the DTB
//! lists (checked with [`crate::claimed`]), or straddles an end of RAM, so on
//! hardware and under a hypervisor that isolates the VM each one traps: the
//! trap is caught by the runtime's `expect_trap` and counted by cause. One
//! that does not trap is a containment breach (reported under Ferrovisor).

use core::arch::asm;
use core::sync::atomic::{AtomicUsize, Ordering};

use fv_guest_rt::trap::{self, TrapInfo};
use fv_guest_rt::{println, Region};

use crate::rng::Rng;
use crate::{breach, claimed, plat, strict, Phase};

/// The access instructions used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Lb,
    Lh,
    Lw,
    Ld,
    Lbu,
    Sb,
    Sh,
    Sw,
    Sd,
    CLd,
    CSd,
    AmoSwapD,
    AmoAddW,
    LrD,
    Fld,
    Fsd,
    CboZero,
    LdPlus3,
    Exec,
}

/// Every access kind.
pub const KINDS: [Kind; 19] = [
    Kind::Lb,
    Kind::Lh,
    Kind::Lw,
    Kind::Ld,
    Kind::Lbu,
    Kind::Sb,
    Kind::Sh,
    Kind::Sw,
    Kind::Sd,
    Kind::CLd,
    Kind::CSd,
    Kind::AmoSwapD,
    Kind::AmoAddW,
    Kind::LrD,
    Kind::Fld,
    Kind::Fsd,
    Kind::CboZero,
    Kind::LdPlus3,
    Kind::Exec,
];

/// Bytes around an address that must be free of RAM and devices: the access
/// itself, `+3` of [`Kind::LdPlus3`], the 64-byte block of `cbo.zero`.
const GUARD: usize = 256;

/// Addresses of devices on QEMU virt (and of holes between them): a VM that
/// is not told about them must not reach them.
const DEVICE_ADDRESSES: [usize; 17] = [
    0x0000_0000,
    0x0000_1000, // boot ROM
    0x0010_0000, // test finisher / syscon
    0x0010_1000, // RTC
    0x0200_0000, // CLINT
    0x0200_c000,
    0x0300_0000, // PCIe I/O
    0x0c00_0000, // PLIC
    0x0c20_0000, // PLIC contexts
    0x0d00_0000, // APLIC
    0x1000_0000, // UART
    0x1000_1000, // virtio-mmio
    0x1010_0000, // fw_cfg
    0x2000_0000, // flash
    0x2800_0000, // IMSIC
    0x3000_0000, // PCIe ECAM
    0x4000_0000, // PCIe MMIO
];

static OPS: AtomicUsize = AtomicUsize::new(0);
static SKIPPED: AtomicUsize = AtomicUsize::new(0);
static NO_TRAP: AtomicUsize = AtomicUsize::new(0);
/// Traps by exception code (index 23: any larger code).
static BY_CAUSE: [AtomicUsize; 24] = [const { AtomicUsize::new(0) }; 24];

/// Clears the counters (boot vCPU, before the phase).
pub fn reset_stats() {
    OPS.store(0, Ordering::SeqCst);
    SKIPPED.store(0, Ordering::SeqCst);
    NO_TRAP.store(0, Ordering::SeqCst);
    for c in &BY_CAUSE {
        c.store(0, Ordering::SeqCst);
    }
}

fn cause(code: usize) -> usize {
    BY_CAUSE.get(code).map_or(0, |c| c.load(Ordering::SeqCst))
}

/// Prints the progress line.
pub fn report(round: usize, vcpus: usize, finished: usize) {
    let trapped: usize = BY_CAUSE.iter().map(|c| c.load(Ordering::SeqCst)).sum();
    println!(
        "INFO: hostile-test: phase wild done: round {round}, {finished}/{vcpus} vCPUs, {} accesses, {trapped} trapped (fetch access {}, load access {}, store access {}, misaligned {}, illegal {}, other {}), {} did not trap, {} skipped",
        OPS.load(Ordering::SeqCst),
        cause(1),
        cause(5),
        cause(7),
        cause(0) + cause(4) + cause(6),
        cause(2),
        trapped - cause(1) - cause(5) - cause(7) - cause(0) - cause(4) - cause(6) - cause(2),
        NO_TRAP.load(Ordering::SeqCst),
        SKIPPED.load(Ordering::SeqCst),
    );
}

/// A random address: anywhere, at a random width, near RAM, near devices,
/// powers of two, sign-extended "kernel" addresses.
pub fn wild_address(rng: &mut Rng) -> usize {
    let ram = plat().ram;
    match rng.below(10) {
        0 | 1 => rng.word(),
        2 => rng.word() >> rng.below(64),
        // Inside the Sv39x4 / Sv48x4 guest-physical ranges.
        3 => rng.word() & ((1 << 41) - 1),
        4 => rng.word() & ((1 << 50) - 1),
        // Just past RAM, just below it, a few 2 MiB blocks past it.
        5 => ram.end.wrapping_add(rng.below(0x1_0000)),
        6 => ram.start.wrapping_sub(1 + rng.below(0x1_0000)),
        7 => ram
            .end
            .wrapping_add(rng.below(64) << 21)
            .wrapping_add(rng.below(0x1000)),
        8 => rng
            .pick(&DEVICE_ADDRESSES)
            .unwrap_or(0)
            .wrapping_add(rng.below(0x2000)),
        _ => match rng.below(3) {
            0 => (1usize << rng.below(64)).wrapping_add(rng.below(64)),
            1 => (1usize << rng.below(64)).wrapping_sub(1 + rng.below(64)),
            _ => 0xffff_ffff_8000_0000usize.wrapping_add(rng.word() & 0x7fff_ffff),
        },
    }
}

fn raw(kind: Kind, a: usize, v: usize) {
    // SAFETY: (all arms) `a` is an address where this VM has neither RAM nor a
    // device (checked by the caller with `claimed`), an access straddling an
    // end of RAM whose in-RAM part holds nothing in use, or a register of one
    // of this VM's own emulated devices (`mmio` phase: the effects stay in
    // this VM). A fault is expected and `expect_trap` skips the faulting
    // instruction. Destination registers are discarded; `ft0` is declared
    // clobbered.
    unsafe {
        match kind {
            Kind::Lb => asm!("lb {o}, 0({a})", a = in(reg) a, o = out(reg) _, options(nostack)),
            Kind::Lh => asm!("lh {o}, 0({a})", a = in(reg) a, o = out(reg) _, options(nostack)),
            Kind::Lw => asm!("lw {o}, 0({a})", a = in(reg) a, o = out(reg) _, options(nostack)),
            Kind::Ld => asm!("ld {o}, 0({a})", a = in(reg) a, o = out(reg) _, options(nostack)),
            Kind::Lbu => asm!("lbu {o}, 0({a})", a = in(reg) a, o = out(reg) _, options(nostack)),
            Kind::Sb => asm!("sb {v}, 0({a})", a = in(reg) a, v = in(reg) v, options(nostack)),
            Kind::Sh => asm!("sh {v}, 0({a})", a = in(reg) a, v = in(reg) v, options(nostack)),
            Kind::Sw => asm!("sw {v}, 0({a})", a = in(reg) a, v = in(reg) v, options(nostack)),
            Kind::Sd => asm!("sd {v}, 0({a})", a = in(reg) a, v = in(reg) v, options(nostack)),
            Kind::CLd => asm!("c.ld a1, 0(a0)", in("a0") a, out("a1") _, options(nostack)),
            Kind::CSd => asm!("c.sd a1, 0(a0)", in("a0") a, in("a1") v, options(nostack)),
            Kind::AmoSwapD => asm!(
                "amoswap.d {o}, {v}, ({a})",
                a = in(reg) a, v = in(reg) v, o = out(reg) _, options(nostack)
            ),
            Kind::AmoAddW => asm!(
                "amoadd.w {o}, {v}, ({a})",
                a = in(reg) a, v = in(reg) v, o = out(reg) _, options(nostack)
            ),
            Kind::LrD => asm!("lr.d {o}, ({a})", a = in(reg) a, o = out(reg) _, options(nostack)),
            Kind::Fld => asm!("fld ft0, 0({a})", a = in(reg) a, out("ft0") _, options(nostack)),
            Kind::Fsd => asm!("fsd ft0, 0({a})", a = in(reg) a, out("ft0") _, options(nostack)),
            // cbo.zero (a): MISC-MEM, funct3 2, imm 4 (raw: the assembler may
            // not know Zicboz; without it the CPU raises illegal instruction).
            Kind::CboZero => asm!(".insn i 0x0f, 2, x0, {a}, 4", a = in(reg) a, options(nostack)),
            Kind::LdPlus3 => {
                asm!("ld {o}, 3({a})", a = in(reg) a, o = out(reg) _, options(nostack))
            }
            Kind::Exec => {}
        }
    }
}

/// Performs one access; the trap it caused, if any.
pub fn access(kind: Kind, a: usize, v: usize) -> Option<TrapInfo> {
    match kind {
        Kind::Exec => trap::try_exec(a).err(),
        _ => trap::expect_trap(|| raw(kind, a, v)),
    }
}

fn record(kind: Kind, a: usize, t: Option<TrapInfo>) {
    OPS.fetch_add(1, Ordering::Relaxed);
    match t {
        Some(t) => {
            if let Some(c) = BY_CAUSE.get(t.scause.min(23)) {
                c.fetch_add(1, Ordering::Relaxed);
            }
        }
        None => {
            NO_TRAP.fetch_add(1, Ordering::Relaxed);
            if strict() {
                breach(
                    "wild-access-did-not-trap",
                    format_args!("{kind:?} at {a:#x} (not RAM, no device in the DTB) did not trap"),
                );
            }
        }
    }
}

/// Accesses straddling the ends of RAM: part inside, part outside. Loads at
/// the top end; stores only at the bottom, where the first bytes are outside
/// (so nothing of this VM can be written even if the CPU split the store).
fn straddles() {
    let p = plat();
    let ram = p.ram;
    let top: [(Kind, usize); 4] = [
        (Kind::Ld, ram.end - 4),
        (Kind::Lw, ram.end - 2),
        (Kind::Lh, ram.end - 1),
        (Kind::CLd, ram.end - 6),
    ];
    let bottom: [(Kind, usize); 3] = [
        (Kind::Sd, ram.start.wrapping_sub(4)),
        (Kind::Sw, ram.start.wrapping_sub(2)),
        (Kind::Sh, ram.start.wrapping_sub(1)),
    ];
    // Only where the outside part really is outside everything.
    if !claimed(ram.end, 8) {
        for (k, a) in top {
            record(k, a, access(k, a, 0));
        }
    }
    let inside_free = !p.in_use(Region::with_size(ram.start, 8));
    if ram.start >= 8 && !claimed(ram.start - 8, 8) && inside_free {
        for (k, a) in bottom {
            record(k, a, access(k, a, 0x5a5a_5a5a_5a5a_5a5a));
        }
    }
}

/// This vCPU's share of the phase.
pub fn body() {
    let mut rng = crate::stream(Phase::Wild);
    straddles();
    for _ in 0..crate::count() {
        let a = wild_address(&mut rng);
        let kind = rng.pick(&KINDS).unwrap_or(Kind::Ld);
        let v = rng.word();
        if claimed(a & !63, GUARD) {
            SKIPPED.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        record(kind, a, access(kind, a, v));
    }
}
