use super::*;
use fv_addr::GuestPhysAddr;
use fv_virtio::console::{Console, RECEIVEQ};
use fv_virtio::mmio::{self, VIRTIO_MMIO_INT_CONFIG};
use fv_virtio::status;
use fv_vm::VecMemory;
use std::vec::Vec;

const IRQ: u32 = 8;

#[derive(Default)]
struct Lines(Vec<(u32, bool)>);

impl IrqSink for Lines {
    fn set_level(&mut self, irq: u32, level: bool) {
        self.0.push((irq, level));
    }
}

type Dev = VirtioMmio<Console<Vec<u8>>>;

fn access(dev: &mut Dev, lines: &mut Lines, offset: u64, value: Option<u32>) -> u32 {
    let mut ctx = DeviceCtx::new(lines, 0, 0);
    match value {
        Some(v) => {
            dev.write(offset, AccessWidth::Word, u64::from(v), &mut ctx);
            0
        }
        None => dev.read(offset, AccessWidth::Word, &mut ctx) as u32,
    }
}

#[test]
fn registers_and_interrupt_line() {
    let mut dev = Dev::new(Console::new(Vec::new(), 16), IRQ).unwrap();
    let mut lines = Lines::default();
    assert_eq!(dev.size(), 0x200);
    assert_eq!(
        access(&mut dev, &mut lines, mmio::MAGIC_VALUE, None),
        0x7472_6976
    );
    assert_eq!(access(&mut dev, &mut lines, mmio::DEVICE_ID, None), 3);
    assert_eq!(
        access(&mut dev, &mut lines, 0x200, None),
        0,
        "past the block"
    );
    // Negotiate VERSION_1 only and start the driver.
    let s = status::ACKNOWLEDGE | status::DRIVER;
    access(&mut dev, &mut lines, mmio::STATUS, Some(s));
    access(&mut dev, &mut lines, mmio::DRIVER_FEATURES_SEL, Some(1));
    access(&mut dev, &mut lines, mmio::DRIVER_FEATURES, Some(1));
    let s = s | status::FEATURES_OK | status::DRIVER_OK;
    access(&mut dev, &mut lines, mmio::STATUS, Some(s));
    assert_eq!(access(&mut dev, &mut lines, mmio::STATUS, None), s);
    assert!(lines.0.is_empty());
    // A configuration change raises the line; InterruptACK lowers it.
    dev.transport_mut().config_changed();
    dev.update_line(&mut lines);
    assert_eq!(lines.0, [(IRQ, true)]);
    access(
        &mut dev,
        &mut lines,
        mmio::INTERRUPT_ACK,
        Some(VIRTIO_MMIO_INT_CONFIG),
    );
    assert_eq!(lines.0, [(IRQ, true), (IRQ, false)]);
    // No queue is ready: processing does nothing and touches no memory.
    dev.transport_mut().notify(RECEIVEQ);
    let mut mem = VecMemory::new(GuestPhysAddr::new(0x8000_0000), 0x1000);
    dev.process(&mut mem, &mut lines);
    assert!(!dev.has_pending());
    // Reset lowers the line and clears the status.
    dev.reset(&mut DeviceCtx::new(&mut lines, 0, 0));
    assert_eq!(access(&mut dev, &mut lines, mmio::STATUS, None), 0);
    assert_eq!(lines.0.last(), Some(&(IRQ, false)));
}
