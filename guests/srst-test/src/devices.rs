//! Device and interrupt state across a reboot: the first boot leaves the
//! UART's registers set and its PLIC source claimed but not completed (as a
//! reboot from inside the UART interrupt handler does); after the reboot both
//! must be as at power-on, and the source claimable again.
//!
//! The UART and PLIC are found in the DTB, and so is the PLIC context of this
//! hart's S-mode external interrupt, so the checks run unchanged on bare QEMU.

use core::ptr::{read_volatile, write_volatile};

use fv_guest_rt::fdt::Fdt;
use fv_guest_rt::{hart_id, Platform, Reporter};

/// 16550 registers (byte offsets, no reg-shift on QEMU `virt`).
const UART_IER: usize = 1;
const UART_SCR: usize = 7;
/// IER: transmitter holding register empty interrupt.
const IER_THRI: u8 = 1 << 1;
/// What the first boot leaves in the scratch register.
const SCR_MARK: u8 = 0x5a;

/// PLIC layout (the SiFive/RISC-V PLIC specification).
const PLIC_ENABLE: usize = 0x2000;
const PLIC_ENABLE_STRIDE: usize = 0x80;
const PLIC_CONTEXT: usize = 0x20_0000;
const PLIC_CONTEXT_STRIDE: usize = 0x1000;
const PLIC_CLAIM: usize = 4;
/// `interrupts-extended` cause of the S-mode external interrupt.
const IRQ_S_EXT: u32 = 9;

/// The devices the checks use.
pub struct Devices {
    uart: usize,
    uart_irq: u32,
    plic: usize,
    context: usize,
}

fn reg_base(fdt: &Fdt<'_>, compatible: &[&str]) -> Option<(usize, Option<u32>)> {
    let node = fdt.find_compatible(compatible)?;
    let base = node.reg()?.next()?.starting_address as usize;
    let irq = node
        .property("interrupts")
        .and_then(|p| p.value.get(..4))
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    Some((base, irq))
}

/// This hart's S-mode external-interrupt context of the PLIC: the position
/// of (this hart's interrupt controller, 9) in the PLIC's
/// `interrupts-extended`.
fn context(fdt: &Fdt<'_>) -> Option<usize> {
    let me = hart_id();
    let cpu = fdt
        .find_node("/cpus")?
        .children()
        .find(|c| c.property("reg").and_then(|r| r.as_usize()) == Some(me))?;
    let intc = cpu
        .children()
        .find(|c| c.name.starts_with("interrupt-controller"))?
        .property("phandle")?
        .as_usize()? as u32;
    let plic = fdt.find_compatible(&["riscv,plic0", "sifive,plic-1.0.0"])?;
    let cells = plic.property("interrupts-extended")?.value;
    cells.chunks_exact(8).position(|c| {
        u32::from_be_bytes([c[0], c[1], c[2], c[3]]) == intc
            && u32::from_be_bytes([c[4], c[5], c[6], c[7]]) == IRQ_S_EXT
    })
}

impl Devices {
    /// Finds the UART, its interrupt and this hart's PLIC context.
    pub fn find(p: &Platform, r: &Reporter) -> Option<Devices> {
        let found = p.fdt().and_then(|fdt| {
            let (uart, irq) = reg_base(&fdt, &["ns16550a"])?;
            let (plic, _) = reg_base(&fdt, &["riscv,plic0", "sifive,plic-1.0.0"])?;
            Some(Devices {
                uart,
                uart_irq: irq?,
                plic,
                context: context(&fdt)?,
            })
        });
        if found.is_none() {
            r.fail(
                "devices-found",
                format_args!("no ns16550a/PLIC/context in the DTB"),
            );
        }
        found
    }

    fn uart_read(&self, reg: usize) -> u8 {
        // SAFETY: a register of the UART the DTB names (MMIO).
        unsafe { read_volatile((self.uart + reg) as *const u8) }
    }

    fn uart_write(&self, reg: usize, v: u8) {
        // SAFETY: as in `uart_read`.
        unsafe { write_volatile((self.uart + reg) as *mut u8, v) }
    }

    fn plic_read(&self, off: usize) -> u32 {
        // SAFETY: a 32-bit register of the PLIC the DTB names (MMIO).
        unsafe { read_volatile((self.plic + off) as *const u32) }
    }

    fn plic_write(&self, off: usize, v: u32) {
        // SAFETY: as in `plic_read`.
        unsafe { write_volatile((self.plic + off) as *mut u32, v) }
    }

    fn priority_off(&self) -> usize {
        4 * self.uart_irq as usize
    }

    fn enable_off(&self) -> usize {
        PLIC_ENABLE + PLIC_ENABLE_STRIDE * self.context + 4 * (self.uart_irq as usize / 32)
    }

    fn claim_off(&self) -> usize {
        PLIC_CONTEXT + PLIC_CONTEXT_STRIDE * self.context + PLIC_CLAIM
    }

    /// Raises the UART's interrupt (THR empty) through the PLIC and claims it
    /// (interrupts stay masked in `sie`, so nothing is taken). Returns what
    /// the claim register gave.
    fn raise_and_claim(&self) -> u32 {
        self.plic_write(self.priority_off(), 1);
        let en = self.plic_read(self.enable_off());
        self.plic_write(self.enable_off(), en | 1 << (self.uart_irq % 32));
        self.plic_write(PLIC_CONTEXT + PLIC_CONTEXT_STRIDE * self.context, 0);
        self.uart_write(UART_IER, IER_THRI);
        self.plic_read(self.claim_off())
    }

    /// First boot: leave state behind, the UART's source claimed.
    pub fn dirty(&self, r: &Reporter) {
        self.uart_write(UART_SCR, SCR_MARK);
        let claimed = self.raise_and_claim();
        r.check_eq("uart-irq-claimed-before-reboot", claimed, self.uart_irq);
    }

    /// Second boot: all of it as at power-on, and the source claimable again.
    pub fn check_reset(&self, r: &Reporter) {
        r.check_eq("uart-ier-reset", self.uart_read(UART_IER), 0);
        r.check_eq("uart-scr-reset", self.uart_read(UART_SCR), 0);
        r.check_eq(
            "plic-priority-reset",
            self.plic_read(self.priority_off()),
            0,
        );
        r.check_eq(
            "plic-enable-reset",
            self.plic_read(self.enable_off()) & 1 << (self.uart_irq % 32),
            0,
        );
        let claimed = self.raise_and_claim();
        r.check_eq("plic-claim-released-by-reboot", claimed, self.uart_irq);
        // Leave it clean.
        self.uart_write(UART_IER, 0);
        if claimed != 0 {
            self.plic_write(self.claim_off(), claimed);
        }
        self.plic_write(self.priority_off(), 0);
    }
}
