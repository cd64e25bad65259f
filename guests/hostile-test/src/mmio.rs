//! `mmio`: random accesses to this VM's own devices, the ones its DTB lists
//! (under Ferrovisor: emulated by the hypervisor). Any width, offset, value
//! and instruction kind (compressed, AMO, LR, FP, `cbo.zero`, misaligned,
//! jumps into device space); each either completes or traps, and the
//! hypervisor must survive all of it. Devices that could end the VM (syscon,
//! test finisher) are left alone; on a UART only digits are written, so the
//! log stays readable.

use core::sync::atomic::{AtomicUsize, Ordering};

use fv_guest_rt::{println, Region};

use crate::rng::Rng;
use crate::wild::{access, Kind, KINDS};
use crate::{device, device_count, DeviceKind, Phase};

static OPS: AtomicUsize = AtomicUsize::new(0);
static TRAPPED: AtomicUsize = AtomicUsize::new(0);

/// Clears the counters (boot vCPU, before the phase).
pub fn reset_stats() {
    OPS.store(0, Ordering::SeqCst);
    TRAPPED.store(0, Ordering::SeqCst);
}

/// Prints the progress line.
pub fn report(round: usize, vcpus: usize, finished: usize) {
    // Digits written to the UART share this VM's console line: end it.
    println!();
    let ops = OPS.load(Ordering::SeqCst);
    let trapped = TRAPPED.load(Ordering::SeqCst);
    println!(
        "INFO: hostile-test: phase mmio done: round {round}, {finished}/{vcpus} vCPUs, {ops} device accesses, {} completed, {trapped} trapped",
        ops - trapped
    );
}

/// Kinds whose written value is the one given (or that only read): the only
/// ones used on a UART, so what it prints is a digit.
fn uart_safe(k: Kind) -> bool {
    !matches!(k, Kind::AmoAddW | Kind::AmoSwapD | Kind::Fsd)
}

/// An offset into `r`: mostly the first registers, sometimes PLIC-style
/// context blocks (0x20_0000 + 0x1000 × n), sometimes anywhere.
fn offset(rng: &mut Rng, r: Region) -> usize {
    let len = r.len().max(1);
    let off = match rng.below(4) {
        0 | 1 => rng.below(0x40.min(len)),
        2 => match rng.below(3) {
            0 => rng.below(0x3000),
            1 => 0x20_0000 + rng.below(16) * 0x1000 + rng.below(16),
            _ => 0x2000 + rng.below(16) * 0x80 + rng.below(0x80),
        },
        _ => rng.below(len),
    };
    off % len
}

/// This vCPU's share of the phase.
pub fn body() {
    let n = device_count();
    let mut rng = crate::stream(Phase::Mmio);
    let usable: usize = (0..n)
        .filter(|&i| device(i).is_some_and(|(_, k)| k != DeviceKind::Avoid))
        .count();
    if usable == 0 {
        return;
    }
    for _ in 0..crate::count() {
        let Some((r, kind)) = device(rng.below(n)) else {
            continue;
        };
        if kind == DeviceKind::Avoid || r.is_empty() {
            continue;
        }
        let a = r.start + offset(&mut rng, r);
        let mut k = rng.pick(&KINDS).unwrap_or(Kind::Lw);
        let mut v = rng.word();
        if kind == DeviceKind::Uart {
            if !uart_safe(k) {
                k = Kind::Sb;
            }
            v = usize::from(b'0') + v % 10;
        }
        OPS.fetch_add(1, Ordering::Relaxed);
        if access(k, a, v).is_some() {
            TRAPPED.fetch_add(1, Ordering::Relaxed);
        }
    }
}
