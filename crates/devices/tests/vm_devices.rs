//! A VM's devices end to end: the UART on the bus signalling the PLIC, the
//! guest driving both through MMIO, the core learning which vCPU to interrupt.
// Test code: a panic is how a test fails.
#![allow(clippy::panic, clippy::unwrap_used)]

use fv_addr::GuestPhysAddr;
use fv_devices::plic::{self, Plic};
use fv_devices::uart16550::{regs::*, Uart16550};
use fv_devices::{AccessWidth, BusError, DeviceId, MmioDevice, VmDevices};

const PLIC_BASE: u64 = 0x0c00_0000;
const UART_BASE: u64 = 0x1000_0000;
const UART_IRQ: u32 = 10;

fn gpa(a: u64) -> GuestPhysAddr {
    GuestPhysAddr::new(a)
}

struct Vm {
    dev: VmDevices,
    uart: DeviceId,
}

impl Vm {
    fn new(vcpus: u32) -> Self {
        let mut dev = VmDevices::new();
        dev.set_interrupt_controller(gpa(PLIC_BASE), Box::new(Plic::new(95, vcpus).unwrap()))
            .unwrap();
        let uart = dev
            .add_device(gpa(UART_BASE), Box::new(Uart16550::new(UART_IRQ)))
            .unwrap();
        Self { dev, uart }
    }

    fn rd(&mut self, addr: u64, w: AccessWidth) -> Option<u64> {
        self.dev.read(gpa(addr), w, 0, 0)
    }

    fn wr(&mut self, addr: u64, w: AccessWidth, v: u64) -> bool {
        self.dev.write(gpa(addr), w, v, 0, 0)
    }

    fn uart_rd(&mut self, reg: u64) -> u8 {
        self.rd(UART_BASE + reg, AccessWidth::Byte).unwrap() as u8
    }

    fn uart_wr(&mut self, reg: u64, v: u8) {
        assert!(self.wr(UART_BASE + reg, AccessWidth::Byte, u64::from(v)));
    }

    fn plic_rd(&mut self, off: u64) -> u32 {
        self.rd(PLIC_BASE + off, AccessWidth::Word).unwrap() as u32
    }

    fn plic_wr(&mut self, off: u64, v: u32) {
        assert!(self.wr(PLIC_BASE + off, AccessWidth::Word, u64::from(v)));
    }

    fn push(&mut self, b: u8) -> bool {
        self.dev
            .with_device::<Uart16550, _>(self.uart, |u, irq| u.push_input(b, irq))
            .unwrap()
    }

    fn changes(&mut self) -> Vec<(u32, bool)> {
        core::iter::from_fn(|| self.dev.take_changed()).collect()
    }

    /// What Linux does at boot: PLIC threshold 0 on `ctx`, UART source
    /// enabled there with priority 1; UART FIFOs on, OUT2, RX interrupt.
    fn linux_setup(&mut self, ctx: u32) {
        let c = u64::from(ctx);
        self.plic_wr(plic::CONTEXT_BASE + plic::CONTEXT_STRIDE * c, 0);
        self.plic_wr(plic::PRIORITY_BASE + 4 * u64::from(UART_IRQ), 1);
        self.plic_wr(plic::ENABLE_BASE + plic::ENABLE_STRIDE * c, 1 << UART_IRQ);
        self.uart_wr(FCR, FCR_ENABLE_FIFO | FCR_CLEAR_RCVR | FCR_CLEAR_XMIT);
        self.uart_wr(MCR, MCR_OUT2 | MCR_RTS | MCR_DTR);
        self.uart_wr(IER, IER_RDI);
    }

    fn claim(&mut self, ctx: u32) -> u32 {
        self.plic_rd(
            plic::CONTEXT_BASE + plic::CONTEXT_STRIDE * u64::from(ctx) + plic::CONTEXT_CLAIM,
        )
    }

    fn complete(&mut self, ctx: u32, src: u32) {
        self.plic_wr(
            plic::CONTEXT_BASE + plic::CONTEXT_STRIDE * u64::from(ctx) + plic::CONTEXT_CLAIM,
            src,
        );
    }
}

#[test]
fn a_vms_devices_can_move_between_harts() {
    fn assert_send<T: Send>() {}
    assert_send::<VmDevices>();
    assert_send::<Uart16550>();
    assert_send::<Plic>();
}

#[test]
fn console_input_interrupts_the_right_vcpu() {
    let mut vm = Vm::new(2);
    vm.linux_setup(1);
    assert!(vm.changes().is_empty());
    assert!(vm.push(b'l'));
    assert!(vm.push(b's'));
    assert_eq!(vm.changes(), [(1, true)], "vCPU 1 owns the UART's irq");
    assert!(vm.dev.pending_for(1) && !vm.dev.pending_for(0));
    // vCPU 1's handler: claim, drain the UART, complete.
    assert_eq!(vm.claim(1), UART_IRQ);
    assert_eq!(vm.changes(), [(1, false)]);
    assert_eq!(vm.uart_rd(IIR) & IIR_ID_MASK, IIR_RDI, "trigger level 1");
    let mut got = Vec::new();
    while vm.uart_rd(LSR) & LSR_DR != 0 {
        got.push(vm.uart_rd(RBR));
    }
    assert_eq!(got, b"ls");
    vm.complete(1, UART_IRQ);
    assert!(vm.changes().is_empty(), "line low at completion: quiet");
    // Input arriving while the handler runs is delivered after completion.
    assert!(vm.push(b'x'));
    assert_eq!(vm.changes(), [(1, true)]);
    assert_eq!(vm.claim(1), UART_IRQ);
    assert_eq!(vm.changes(), [(1, false)]);
    assert!(vm.push(b'y'));
    assert!(vm.changes().is_empty(), "gateway closed until completion");
    vm.complete(1, UART_IRQ);
    assert_eq!(vm.changes(), [(1, true)], "still asserted: pending again");
}

#[test]
fn console_output_with_thre_interrupts() {
    let mut vm = Vm::new(1);
    vm.linux_setup(0);
    vm.uart_wr(IER, IER_RDI | IER_THRI);
    assert_eq!(vm.changes(), [(0, true)]);
    let text = b"Linux version 6.12\n";
    let mut sent = 0;
    while vm.dev.pending_for(0) {
        let src = vm.claim(0);
        assert_eq!(src, UART_IRQ);
        while vm.uart_rd(IIR) & IIR_NO_INT == 0 {
            if vm.uart_rd(LSR) & LSR_THRE != 0 {
                for &b in text.iter().skip(sent).take(16) {
                    vm.uart_wr(THR, b);
                    sent += 1;
                }
                if sent == text.len() {
                    vm.uart_wr(IER, IER_RDI);
                }
            }
        }
        vm.complete(0, src);
    }
    let out = vm
        .dev
        .with_device::<Uart16550, _>(vm.uart, |u, irq| u.take_output(irq))
        .unwrap();
    assert_eq!(out, text);
}

#[test]
fn unmapped_addresses_fault() {
    let mut vm = Vm::new(1);
    for addr in [
        0,
        PLIC_BASE - 1,
        PLIC_BASE + plic::plic_size(1),
        UART_BASE - 1,
        UART_BASE + 0x100,
        0x8000_0000,
        u64::MAX,
    ] {
        assert_eq!(vm.rd(addr, AccessWidth::Byte), None, "{addr:#x}");
        assert!(!vm.wr(addr, AccessWidth::Byte, 0), "{addr:#x}");
    }
    // Inside a device but no register: reads 0, not a fault.
    assert_eq!(vm.rd(UART_BASE + 0x80, AccessWidth::Byte), Some(0));
    assert_eq!(vm.rd(PLIC_BASE + 0x1f_fff0, AccessWidth::Word), Some(0));
    assert_eq!(vm.rd(PLIC_BASE + 2, AccessWidth::Byte), Some(0));
}

#[test]
fn placement_rules() {
    let mut dev = VmDevices::new();
    dev.add_device(gpa(UART_BASE), Box::new(Uart16550::new(1)))
        .unwrap();
    assert_eq!(
        dev.set_interrupt_controller(
            gpa(UART_BASE - 0x20_0000),
            Box::new(Plic::new(4, 1).unwrap())
        )
        .unwrap_err(),
        BusError::Overlap,
        "PLIC of 1 context is 0x201000 bytes: reaches the UART"
    );
    dev.set_interrupt_controller(gpa(PLIC_BASE), Box::new(Plic::new(4, 1).unwrap()))
        .unwrap();
    assert_eq!(
        dev.set_interrupt_controller(gpa(0), Box::new(Plic::new(4, 1).unwrap()))
            .unwrap_err(),
        BusError::ControllerPresent
    );
    assert_eq!(
        dev.add_device(gpa(PLIC_BASE + 0x20_0f00), Box::new(Uart16550::new(1)))
            .unwrap_err(),
        BusError::Overlap
    );
    assert_eq!(
        dev.add_device(gpa(UART_BASE + 0xff), Box::new(Uart16550::new(1)))
            .unwrap_err(),
        BusError::Overlap
    );
    dev.add_device(gpa(UART_BASE + 0x100), Box::new(Uart16550::new(2)))
        .unwrap();
    assert_eq!(dev.bus().len(), 2);
    assert_eq!(dev.interrupt_controller().unwrap().num_sources(), 4);
    assert_eq!(dev.interrupt_controller_as::<Plic>().unwrap().contexts(), 1);
    assert!(dev.interrupt_controller_as::<OtherIntc>().is_none());
}

/// Only here to check that downcasting to the wrong controller type fails.
struct OtherIntc;
impl MmioDevice for OtherIntc {
    fn size(&self) -> u64 {
        4
    }
    fn read(&mut self, _: u64, _: AccessWidth, _: &mut fv_devices::DeviceCtx<'_>) -> u64 {
        0
    }
    fn write(&mut self, _: u64, _: AccessWidth, _: u64, _: &mut fv_devices::DeviceCtx<'_>) {}
    fn reset(&mut self, _: &mut fv_devices::DeviceCtx<'_>) {}
}
impl fv_devices::IrqSink for OtherIntc {
    fn set_level(&mut self, _: u32, _: bool) {}
}
impl fv_devices::InterruptController for OtherIntc {
    fn num_sources(&self) -> u32 {
        0
    }
    fn pending_for(&self, _: u32) -> bool {
        false
    }
    fn take_changed(&mut self) -> Option<(u32, bool)> {
        None
    }
}

#[test]
fn without_a_controller_the_uart_still_works_polled() {
    let mut dev = VmDevices::new();
    let id = dev
        .add_device(gpa(UART_BASE), Box::new(Uart16550::new(UART_IRQ)))
        .unwrap();
    assert!(dev.write(gpa(UART_BASE + IER), AccessWidth::Byte, 0x0f, 0, 0));
    assert!(dev.write(gpa(UART_BASE), AccessWidth::Byte, u64::from(b'k'), 0, 0));
    assert!(dev
        .with_device::<Uart16550, _>(id, |u, irq| u.push_input(b'i', irq))
        .unwrap());
    assert_eq!(
        dev.read(gpa(UART_BASE + LSR), AccessWidth::Byte, 0, 0),
        Some(0x61)
    );
    assert_eq!(
        dev.read(gpa(UART_BASE), AccessWidth::Byte, 0, 0),
        Some(u64::from(b'i'))
    );
    assert_eq!(dev.device_mut::<Uart16550>(id).unwrap().output(), b"k");
    assert_eq!(dev.take_changed(), None);
    assert!(!dev.pending_for(0));
    assert!(dev.interrupt_controller_mut().is_none());
    dev.set_irq_level(3, true);
    dev.reset();
}

#[test]
fn host_driven_lines_and_vm_reset() {
    let mut vm = Vm::new(1);
    vm.linux_setup(0);
    vm.plic_wr(plic::PRIORITY_BASE + 4 * 3, 2);
    vm.plic_wr(plic::ENABLE_BASE, 1 << UART_IRQ | 1 << 3);
    vm.dev.set_irq_level(3, true);
    assert!(vm.push(b'a'));
    assert_eq!(vm.changes(), [(0, true)]);
    assert_eq!(vm.claim(0), 3, "priority 2 beats the UART's 1");
    assert_eq!(vm.claim(0), UART_IRQ);
    // Reboot: the UART drops its line, the PLIC forgets everything but
    // source 3's wire, which is still high (and pending: enable it to see).
    vm.dev.reset();
    assert_eq!(vm.changes(), [(0, false)]);
    assert_eq!(vm.plic_rd(plic::PENDING_BASE), 1 << 3);
    assert_eq!(vm.uart_rd(IER), 0);
    assert_eq!(vm.uart_rd(LSR), 0x60, "receiver emptied");
    vm.dev.set_irq_level(3, false);
    vm.linux_setup(0);
    assert!(vm.push(b'b'));
    assert_eq!(vm.changes(), [(0, true)]);
    assert_eq!(vm.claim(0), UART_IRQ);
}
