use super::*;
use std::vec::Vec;

const IRQ: u32 = 10;

/// Records every level change the UART reports.
#[derive(Default)]
struct Recorder {
    events: Vec<(u32, bool)>,
}

impl IrqSink for Recorder {
    fn set_level(&mut self, irq: u32, level: bool) {
        self.events.push((irq, level));
    }
}

impl Recorder {
    fn level(&self) -> bool {
        self.events.last().is_some_and(|&(_, l)| l)
    }
}

struct Rig {
    uart: Uart16550,
    sink: Recorder,
}

impl Rig {
    fn new() -> Self {
        Self::with_capacity(DEFAULT_OUTPUT_CAPACITY)
    }

    fn with_capacity(cap: usize) -> Self {
        Self {
            uart: Uart16550::with_output_capacity(IRQ, cap),
            sink: Recorder::default(),
        }
    }

    fn rd(&mut self, off: u64) -> u8 {
        self.rd_w(off, AccessWidth::Byte) as u8
    }

    fn rd_w(&mut self, off: u64, w: AccessWidth) -> u64 {
        let mut ctx = DeviceCtx::new(&mut self.sink, 0, 0);
        let v = self.uart.read(off, w, &mut ctx);
        self.check();
        v
    }

    fn wr(&mut self, off: u64, v: u8) {
        self.wr_w(off, AccessWidth::Byte, u64::from(v));
    }

    fn wr_w(&mut self, off: u64, w: AccessWidth, v: u64) {
        let mut ctx = DeviceCtx::new(&mut self.sink, 0, 0);
        self.uart.write(off, w, v, &mut ctx);
        self.check();
    }

    fn push(&mut self, b: u8) -> bool {
        let ok = self.uart.push_input(b, &mut self.sink);
        self.check();
        ok
    }

    fn line(&self) -> bool {
        self.sink.level()
    }

    /// The reported line always matches IIR bit 0 and the model's own view.
    fn check(&self) {
        assert_eq!(self.sink.level(), self.uart.irq_line());
        assert_eq!(self.uart.irq_line(), self.uart.iir() & IIR_NO_INT == 0);
        assert!(self.sink.events.iter().all(|&(irq, _)| irq == IRQ));
        // Reports are changes only: consecutive events alternate.
        for pair in self.sink.events.windows(2) {
            assert_ne!(pair[0].1, pair[1].1);
        }
    }
}

#[test]
fn register_offsets_match_datasheet() {
    assert_eq!((RBR, THR, DLL), (0, 0, 0));
    assert_eq!((IER, DLM), (1, 1));
    assert_eq!((IIR, FCR), (2, 2));
    assert_eq!(LCR, 3);
    assert_eq!(MCR, 4);
    assert_eq!(LSR, 5);
    assert_eq!(MSR, 6);
    assert_eq!(SCR, 7);
    assert_eq!(UART_REG_SIZE, 0x100);
}

#[test]
fn bit_positions_match_datasheet() {
    // IER
    assert_eq!(IER_RDI, 0x01);
    assert_eq!(IER_THRI, 0x02);
    assert_eq!(IER_RLSI, 0x04);
    assert_eq!(IER_MSI, 0x08);
    assert_eq!(IER_MASK, 0x0f);
    // IIR
    assert_eq!(IIR_NO_INT, 0x01);
    assert_eq!(IIR_ID_MASK, 0x0e);
    assert_eq!(IIR_MSI, 0x00);
    assert_eq!(IIR_THRI, 0x02);
    assert_eq!(IIR_RDI, 0x04);
    assert_eq!(IIR_RLSI, 0x06);
    assert_eq!(IIR_RX_TIMEOUT, 0x0c);
    assert_eq!(IIR_FIFO_ENABLED, 0xc0);
    // FCR
    assert_eq!(FCR_ENABLE_FIFO, 0x01);
    assert_eq!(FCR_CLEAR_RCVR, 0x02);
    assert_eq!(FCR_CLEAR_XMIT, 0x04);
    assert_eq!(FCR_DMA_SELECT, 0x08);
    assert_eq!(FCR_TRIGGER_MASK, 0xc0);
    assert_eq!(FCR_TRIGGER_SHIFT, 6);
    // LCR
    assert_eq!(LCR_WLEN_MASK, 0x03);
    assert_eq!(LCR_STOP, 0x04);
    assert_eq!(LCR_PARITY, 0x08);
    assert_eq!(LCR_EPAR, 0x10);
    assert_eq!(LCR_SPAR, 0x20);
    assert_eq!(LCR_SBC, 0x40);
    assert_eq!(LCR_DLAB, 0x80);
    // MCR
    assert_eq!(MCR_DTR, 0x01);
    assert_eq!(MCR_RTS, 0x02);
    assert_eq!(MCR_OUT1, 0x04);
    assert_eq!(MCR_OUT2, 0x08);
    assert_eq!(MCR_LOOP, 0x10);
    assert_eq!(MCR_MASK, 0x1f);
    // LSR
    assert_eq!(LSR_DR, 0x01);
    assert_eq!(LSR_OE, 0x02);
    assert_eq!(LSR_PE, 0x04);
    assert_eq!(LSR_FE, 0x08);
    assert_eq!(LSR_BI, 0x10);
    assert_eq!(LSR_THRE, 0x20);
    assert_eq!(LSR_TEMT, 0x40);
    assert_eq!(LSR_FIFOE, 0x80);
    assert_eq!(LSR_BRK_ERROR_BITS, 0x1e);
    // MSR
    assert_eq!(MSR_DCTS, 0x01);
    assert_eq!(MSR_DDSR, 0x02);
    assert_eq!(MSR_TERI, 0x04);
    assert_eq!(MSR_DDCD, 0x08);
    assert_eq!(MSR_CTS, 0x10);
    assert_eq!(MSR_DSR, 0x20);
    assert_eq!(MSR_RI, 0x40);
    assert_eq!(MSR_DCD, 0x80);
    assert_eq!(MSR_ANY_DELTA, 0x0f);
}

#[test]
fn reset_values() {
    let mut r = Rig::new();
    assert_eq!(r.uart.size(), 0x100);
    assert_eq!(r.rd(IER), 0);
    assert_eq!(r.rd(IIR), 0x01);
    assert_eq!(r.rd(LCR), 0);
    assert_eq!(r.rd(MCR), 0);
    assert_eq!(r.rd(LSR), 0x60);
    assert_eq!(r.rd(MSR), 0xb0);
    assert_eq!(r.rd(SCR), 0);
    assert_eq!(r.rd(RBR), 0);
    assert!(!r.line());
    assert!(r.sink.events.is_empty());
    assert_eq!(r.uart.irq(), IRQ);
}

#[test]
fn scratch_and_lcr_read_back_every_bit() {
    let mut r = Rig::new();
    for v in [0x00, 0xff, 0x55, 0xaa, 0x01, 0x80] {
        r.wr(SCR, v);
        assert_eq!(r.rd(SCR), v);
    }
    for v in [0x03, 0x1f, 0x7f, 0x00] {
        r.wr(LCR, v);
        assert_eq!(r.rd(LCR), v);
    }
    // IER keeps bits 3:0, MCR bits 4:0.
    r.wr(IER, 0xff);
    assert_eq!(r.rd(IER), 0x0f);
    r.wr(IER, 0);
    r.wr(MCR, 0xef);
    assert_eq!(r.rd(MCR), 0x0f);
    // LSR and MSR ignore writes.
    r.wr(MCR, 0);
    r.wr(LSR, 0x00);
    assert_eq!(r.rd(LSR), 0x60);
    r.wr(MSR, 0x00);
    assert_eq!(r.rd(MSR), 0xb0);
}

#[test]
fn divisor_latch_behind_dlab() {
    let mut r = Rig::new();
    r.wr(IER, IER_RDI);
    r.wr(LCR, LCR_DLAB | 0x03);
    assert_eq!(r.rd(DLL), 12, "reset divisor 12 (9600 baud)");
    assert_eq!(r.rd(DLM), 0);
    r.wr(DLL, 0x34);
    r.wr(DLM, 0x12);
    assert_eq!(r.rd(DLL), 0x34);
    assert_eq!(r.rd(DLM), 0x12);
    // Offset 2 is still IIR/FCR with DLAB set.
    assert_eq!(r.rd(IIR), 0x01);
    r.wr(LCR, 0x03);
    assert_eq!(r.rd(IER), IER_RDI, "IER untouched by DLM writes");
    assert!(r.uart.output().is_empty(), "DLL writes do not transmit");
    r.wr(LCR, LCR_DLAB);
    assert_eq!((r.rd(DLL), r.rd(DLM)), (0x34, 0x12));
}

/// Linux `drivers/tty/serial/8250/8250_port.c`: `autoconfig()` and
/// `autoconfig_16550a()` as run for an ns16550a, then the LSR check of
/// `serial8250_do_startup()`.
#[test]
fn linux_8250_autoconfig_detects_a_16550a() {
    let mut r = Rig::new();
    // IER test: clear IER, expect 0; write 0x0F, expect 0x0F; restore.
    let scratch = r.rd(IER);
    r.wr(IER, 0);
    let scratch2 = r.rd(IER) & 0x0f;
    r.wr(IER, 0x0f);
    let scratch3 = r.rd(IER) & 0x0f;
    r.wr(IER, scratch);
    assert_eq!((scratch2, scratch3), (0, 0x0f), "IER test");

    // Loopback test: MCR = LOOP | OUT2 | RTS must show DCD | CTS in MSR 7:4.
    let save_mcr = r.rd(MCR);
    let save_lcr = r.rd(LCR);
    r.wr(MCR, MCR_LOOP | 0x0a);
    let status1 = r.rd(MSR) & 0xf0;
    r.wr(MCR, save_mcr);
    assert_eq!(status1, MSR_DCD | MSR_CTS, "LOOP test");

    // EFR probe (LCR = 0xBF) must not find an EFR: offset 2 is IIR/FCR.
    r.wr(LCR, 0xbf);
    r.wr(2, 0); // "EFR" write lands in FCR
    r.wr(LCR, 0);
    // FIFO probe: IIR bits 7:6 == 3 means a 16550A.
    r.wr(FCR, FCR_ENABLE_FIFO);
    let scratch = r.rd(IIR) >> 6;
    assert_eq!(scratch, 3, "16550A FIFO bits");

    // autoconfig_16550a: with DLAB set, offset 2 reads IIR (non-zero), so no
    // ST16C650V1 EFR.
    r.wr(LCR, 0x80);
    assert_ne!(r.rd(2), 0);
    r.wr(LCR, 0xbf);
    assert_ne!(r.rd(2), 0);
    // 16750 test: FCR7_64BYTE must not show up as IIR bit 5.
    r.wr(LCR, 0);
    r.wr(FCR, FCR_ENABLE_FIFO | 0x20);
    let status1 = r.rd(IIR) & 0xe0;
    r.wr(FCR, 0);
    r.wr(LCR, 0);
    assert_eq!(status1, 0xc0, "not a 16750");
    // XScale UUE test: IER bit 6 stays 0.
    let iersave = r.rd(IER);
    r.wr(IER, iersave & !0x40);
    assert_eq!(r.rd(IER) & 0x40, 0);
    r.wr(IER, iersave | 0x40);
    assert_eq!(r.rd(IER) & 0x40, 0, "not an XScale");
    r.wr(IER, iersave);
    r.wr(LCR, save_lcr);

    // serial8250_clear_fifos + "clear the interrupt registers" + LSR check.
    r.wr(FCR, FCR_ENABLE_FIFO);
    r.wr(FCR, FCR_ENABLE_FIFO | FCR_CLEAR_RCVR | FCR_CLEAR_XMIT);
    r.wr(FCR, 0);
    r.rd(LSR);
    r.rd(RBR);
    r.rd(IIR);
    r.rd(MSR);
    assert_ne!(r.rd(LSR), 0xff, "LSR safety check");
    assert!(!r.line());
}

/// `serial8250_do_startup()`'s THRE test: a real 16550 re-asserts THRE when
/// IER.THRI is set again after the interrupt was cleared by reading IIR.
#[test]
fn linux_8250_thre_test_passes() {
    let mut r = Rig::new();
    r.wr(FCR, FCR_ENABLE_FIFO);
    // wait_for_xmitr(UART_LSR_THRE)
    assert_ne!(r.rd(LSR) & LSR_THRE, 0);
    r.wr(IER, IER_THRI);
    assert!(r.line(), "THRE interrupt raised");
    let iir1 = r.rd(IIR);
    assert!(!r.line(), "reading IIR cleared it");
    r.wr(IER, 0);
    r.wr(IER, IER_THRI);
    assert!(r.line(), "re-armed by setting IER.THRI");
    let iir = r.rd(IIR);
    r.wr(IER, 0);
    assert_eq!(iir1, 0xc2);
    assert_eq!(iir, 0xc2);
    // The driver's UART_BUG_THRE condition is false.
    assert!(!(iir1 & IIR_NO_INT == 0 && iir & IIR_NO_INT != 0));
    assert!(!r.line());
    assert_eq!(r.rd(IIR), 0xc1);
}

#[test]
fn thre_interrupt_semantics() {
    let mut r = Rig::new();
    r.wr(IER, IER_THRI);
    assert!(r.line());
    // Re-reading IIR after it was cleared: nothing.
    assert_eq!(r.rd(IIR), IIR_THRI);
    assert_eq!(r.rd(IIR), IIR_NO_INT);
    // Writing IER with THRI still set is not a rising edge.
    r.wr(IER, IER_THRI | IER_MSI);
    assert!(!r.line());
    // A THR write empties at once: THRE is armed again.
    r.wr(THR, b'a');
    assert!(r.line());
    assert_eq!(r.uart.output(), b"a");
    assert_eq!(r.rd(LSR) & (LSR_THRE | LSR_TEMT), LSR_THRE | LSR_TEMT);
    // Clearing IER.THRI drops it; setting it again with THR empty re-arms.
    r.wr(IER, 0);
    assert!(!r.line());
    r.wr(IER, IER_THRI);
    assert!(r.line());
    // Reading IIR while a higher-priority interrupt shows leaves THRE armed.
    r.wr(IER, IER_THRI | IER_RDI);
    assert!(r.push(b'x'));
    assert_eq!(r.rd(IIR), IIR_RDI);
    assert_eq!(r.rd(RBR), b'x');
    assert_eq!(r.rd(IIR), IIR_THRI, "THRE still pending behind RX");
    assert_eq!(r.rd(IIR), IIR_NO_INT);
    // THRE armed while disabled does not show until enabled.
    r.wr(IER, IER_RDI);
    r.wr(THR, b'b');
    assert!(!r.line());
}

/// How the 8250 driver transmits: enable THRI, and on each THRE interrupt
/// write up to 16 bytes; clear THRI when the buffer is empty.
#[test]
fn interrupt_driven_transmit_like_linux() {
    let msg: Vec<u8> = (0..100u8).map(|i| b'a' + i % 26).collect();
    let mut r = Rig::new();
    r.wr(FCR, FCR_ENABLE_FIFO);
    r.wr(MCR, MCR_OUT2 | MCR_RTS | MCR_DTR);
    let mut next = 0;
    // start_tx
    r.wr(IER, IER_RDI | IER_THRI);
    let mut interrupts = 0;
    while r.line() {
        interrupts += 1;
        assert!(interrupts < 100, "interrupt storm");
        let iir = r.rd(IIR);
        assert_eq!(iir & IIR_NO_INT, 0);
        let lsr = r.rd(LSR);
        if lsr & LSR_THRE != 0 {
            for _ in 0..16 {
                if next == msg.len() {
                    break;
                }
                r.wr(THR, msg[next]);
                next += 1;
            }
            if next == msg.len() {
                r.wr(IER, IER_RDI); // __stop_tx
            }
        }
    }
    assert_eq!(r.uart.output(), &msg[..]);
    assert_eq!(interrupts, 7, "ceil(100 / 16) THRE interrupts");
}

#[test]
fn rx_interrupt_in_16450_mode() {
    let mut r = Rig::new();
    r.wr(IER, IER_RDI);
    assert!(!r.line());
    assert_eq!(r.uart.rx_space(), 1);
    assert!(r.push(b'h'));
    assert!(r.line());
    assert!(!r.push(b'i'), "holding register full");
    assert_eq!(r.rd(LSR) & LSR_DR, LSR_DR);
    assert_eq!(r.rd(IIR), IIR_RDI);
    assert!(r.line(), "reading IIR does not clear RX data available");
    assert_eq!(r.rd(RBR), b'h');
    assert!(!r.line());
    assert_eq!(r.rd(LSR) & LSR_DR, 0);
    assert_eq!(r.rd(IIR), IIR_NO_INT);
    // Without IER.RDI, data does not interrupt.
    r.wr(IER, 0);
    assert!(r.push(b'i'));
    assert!(!r.line());
    r.wr(IER, IER_RDI);
    assert!(r.line(), "enabling with data waiting interrupts");
}

#[test]
fn rx_fifo_trigger_levels_and_order() {
    let mut r = Rig::new();
    // Trigger level 8.
    r.wr(FCR, FCR_ENABLE_FIFO | (2 << FCR_TRIGGER_SHIFT));
    r.wr(IER, IER_RDI);
    for b in 0..3 {
        assert!(r.push(b));
    }
    assert_eq!(r.uart.iir(), IIR_FIFO_ENABLED | IIR_RX_TIMEOUT);
    for b in 3..8 {
        assert!(r.push(b));
    }
    assert_eq!(r.uart.iir(), IIR_FIFO_ENABLED | IIR_RDI);
    for b in 8..16 {
        assert!(r.push(b));
    }
    assert!(!r.push(16), "FIFO holds 16");
    assert_eq!(r.uart.rx_len(), 16);
    assert_eq!(r.uart.rx_space(), 0);
    for b in 0..16 {
        assert_eq!(r.rd(LSR) & LSR_DR, LSR_DR);
        assert_eq!(r.rd(RBR), b);
    }
    assert_eq!(r.rd(LSR) & LSR_DR, 0);
    assert!(!r.line());
    // Trigger levels 1, 4, 14.
    for (bits, level) in [(0u8, 1usize), (1, 4), (3, 14)] {
        r.wr(FCR, FCR_ENABLE_FIFO | (bits << FCR_TRIGGER_SHIFT));
        for i in 0..level {
            assert!(r.push(0));
            let expect = if i + 1 < level {
                IIR_RX_TIMEOUT
            } else {
                IIR_RDI
            };
            assert_eq!(r.uart.iir() & IIR_ID_MASK, expect, "level {level}");
        }
        r.wr(FCR, FCR_ENABLE_FIFO | FCR_CLEAR_RCVR);
        assert_eq!(r.uart.rx_len(), 0);
        assert!(!r.line());
    }
}

#[test]
fn fifo_mode_changes_clear_the_receiver() {
    let mut r = Rig::new();
    r.wr(FCR, FCR_ENABLE_FIFO);
    assert!(r.push(1) && r.push(2));
    r.wr(FCR, FCR_ENABLE_FIFO); // same mode, no clear bit: kept
    assert_eq!(r.uart.rx_len(), 2);
    r.wr(FCR, 0); // leaving FIFO mode empties it
    assert_eq!(r.uart.rx_len(), 0);
    assert_eq!(r.rd(IIR) & IIR_FIFO_ENABLED, 0);
    assert!(r.push(3));
    r.wr(FCR, FCR_ENABLE_FIFO); // entering FIFO mode empties it
    assert_eq!(r.uart.rx_len(), 0);
    // Trigger bits are not programmed without bit 0.
    r.wr(FCR, 0xc0);
    assert_eq!(r.rd(IIR) & IIR_FIFO_ENABLED, 0);
}

#[test]
fn interrupt_priority_order() {
    let mut r = Rig::new();
    r.wr(FCR, FCR_ENABLE_FIFO);
    r.wr(IER, IER_MASK);
    // THRE armed by the rising edge of IER.THRI.
    assert_eq!(r.uart.iir(), 0xc0 | IIR_THRI);
    // Modem status delta (loopback RTS rise) ranks below THRE.
    r.wr(MCR, MCR_LOOP);
    r.wr(MCR, MCR_LOOP | MCR_RTS);
    assert_eq!(r.uart.iir(), 0xc0 | IIR_THRI);
    // Data ranks above THRE (trigger level 1: data available, not timeout).
    r.wr(THR, 1);
    assert_eq!(r.uart.iir(), 0xc0 | IIR_RDI);
    // Overrun ranks above data: fill the FIFO then one more.
    for b in 2..=17 {
        r.wr(THR, b);
    }
    assert_eq!(r.uart.rx_len(), 16);
    assert_eq!(r.uart.iir(), 0xc0 | IIR_RLSI);
    // Reading LSR reports and clears OE.
    assert_eq!(r.rd(LSR) & LSR_OE, LSR_OE);
    assert_eq!(r.rd(LSR) & LSR_OE, 0);
    assert_eq!(r.uart.iir(), 0xc0 | IIR_RDI);
    for b in 1..=16 {
        assert_eq!(r.rd(RBR), b);
    }
    assert_eq!(r.uart.iir(), 0xc0 | IIR_THRI);
    assert_eq!(r.rd(IIR), 0xc0 | IIR_THRI);
    assert_eq!(r.uart.iir(), 0xc0 | IIR_MSI);
    // Entering loopback dropped CTS, DSR, DCD; RTS raised CTS again.
    assert_eq!(r.rd(MSR) & MSR_ANY_DELTA, MSR_DCTS | MSR_DDSR | MSR_DDCD);
    assert_eq!(r.uart.iir(), 0xc0 | IIR_NO_INT);
    assert!(!r.line());
}

#[test]
fn loopback_mirrors_modem_lines_and_refuses_input() {
    let mut r = Rig::new();
    r.wr(MCR, MCR_LOOP);
    assert_eq!(r.rd(MSR), MSR_DDSR | MSR_DDCD | MSR_DCTS, "all lines fell");
    for (mcr, msr) in [
        (MCR_RTS, MSR_CTS),
        (MCR_DTR, MSR_DSR),
        (MCR_OUT1, MSR_RI),
        (MCR_OUT2, MSR_DCD),
    ] {
        r.wr(MCR, MCR_LOOP | mcr);
        assert_eq!(r.rd(MSR) & 0xf0, msr);
        r.wr(MCR, MCR_LOOP);
        r.rd(MSR);
    }
    // RI: only the trailing edge sets TERI.
    r.wr(MCR, MCR_LOOP | MCR_OUT1);
    assert_eq!(r.rd(MSR) & MSR_ANY_DELTA, 0);
    r.wr(MCR, MCR_LOOP);
    assert_eq!(r.rd(MSR) & MSR_ANY_DELTA, MSR_TERI);
    // Transmit loops back into the receiver; the output sees nothing.
    r.wr(THR, 0x42);
    assert_eq!(r.uart.output(), b"");
    assert_eq!(r.rd(LSR) & LSR_DR, LSR_DR);
    assert_eq!(r.rd(RBR), 0x42);
    assert_eq!(r.uart.rx_space(), 0);
    assert!(!r.push(1), "no external input in loopback");
    r.wr(MCR, 0);
    assert_eq!(r.rd(MSR), 0xb0 | MSR_DCTS | MSR_DDSR | MSR_DDCD);
    assert!(r.push(1));
}

#[test]
fn modem_status_interrupt() {
    let mut r = Rig::new();
    r.wr(IER, IER_MSI);
    r.wr(MCR, MCR_LOOP | MCR_RTS | MCR_DTR | MCR_OUT2);
    assert!(!r.line(), "CTS, DSR and DCD all stay high: no delta");
    r.wr(MCR, MCR_LOOP | MCR_RTS | MCR_DTR);
    assert!(r.line(), "DCD fell");
    assert_eq!(r.rd(IIR), IIR_MSI);
    assert!(r.line(), "IIR does not clear modem status");
    assert_eq!(r.rd(MSR), MSR_CTS | MSR_DSR | MSR_DDCD);
    assert!(!r.line(), "reading MSR does");
}

/// 16450 mode (`FCR.0` clear): THR is a one-byte holding register in front
/// of the shift register.
#[test]
fn output_backpressure_and_drain() {
    let mut r = Rig::with_capacity(4);
    r.wr(IER, IER_THRI);
    r.rd(IIR);
    for b in b"abcd" {
        assert_ne!(r.rd(LSR) & LSR_THRE, 0);
        r.wr(THR, *b);
    }
    assert!(r.uart.output_full());
    // The output buffer is full: the next byte waits in the shift register.
    r.wr(THR, b'e');
    assert_eq!(r.rd(LSR) & (LSR_THRE | LSR_TEMT), LSR_THRE, "TSR busy");
    assert!(r.line(), "THR itself is empty again");
    r.rd(IIR);
    // The one after in THR; THR busy, no THRE interrupt.
    r.wr(THR, b'f');
    assert_eq!(r.rd(LSR) & (LSR_THRE | LSR_TEMT), 0, "transmitter busy");
    assert!(!r.line(), "no THRE interrupt while busy");
    assert_eq!(r.uart.tx_len(), 1);
    assert_eq!(r.uart.tx_pending(), 2);
    r.wr(THR, b'x'); // lost, as on hardware
    assert_eq!(r.uart.output(), b"abcd");
    // Draining lets the transmitter move on, empties THR and raises THRE.
    r.uart.clear_output(&mut r.sink);
    r.check();
    assert!(r.line());
    assert_eq!(r.uart.output(), b"ef");
    assert_eq!(r.uart.tx_pending(), 0);
    assert_eq!(r.rd(LSR) & (LSR_THRE | LSR_TEMT), LSR_THRE | LSR_TEMT);
    r.wr(THR, b'g');
    let taken = r.uart.take_output(&mut r.sink);
    r.check();
    assert_eq!(taken, b"efg");
    assert!(r.uart.output().is_empty());
    // Draining a buffer that was not full does not invent a THRE interrupt.
    r.rd(IIR);
    assert!(!r.line());
    r.uart.clear_output(&mut r.sink);
    assert!(!r.line());
    assert_eq!(Uart16550::with_output_capacity(1, 0).out_capacity, 1);
}

/// FIFO mode: 16 bytes wait behind the shift register while the output
/// buffer is full; THRE = FIFO empty, TEMT = FIFO and TSR empty (PC16550D
/// LSR bits 5 and 6); the THRE interrupt comes when the FIFO drains; the
/// 18th byte (4 in the buffer + TSR + 16) is lost; nothing is reordered.
#[test]
fn transmit_fifo_backpressure_and_order() {
    let mut r = Rig::with_capacity(4);
    r.wr(FCR, FCR_ENABLE_FIFO);
    r.wr(IER, IER_THRI);
    r.rd(IIR);
    let msg: Vec<u8> = (0..4 + 1 + TX_FIFO_SIZE as u8).collect();
    for (i, &b) in msg.iter().enumerate() {
        r.wr(THR, b);
        let lsr = r.rd(LSR) & (LSR_THRE | LSR_TEMT);
        match i {
            0..=3 => assert_eq!(lsr, LSR_THRE | LSR_TEMT, "byte {i} went out"),
            4 => assert_eq!(lsr, LSR_THRE, "byte 4 waits in the TSR"),
            _ => assert_eq!(lsr, 0, "byte {i} waits in the FIFO"),
        }
    }
    assert_eq!(r.uart.tx_len(), TX_FIFO_SIZE);
    assert!(!r.line(), "no THRE interrupt while the FIFO holds bytes");
    r.wr(THR, 0xee); // FIFO full: lost
    assert_eq!(r.uart.tx_pending(), 1 + TX_FIFO_SIZE);
    let mut got = Vec::new();
    for _ in 0..6 {
        got.extend_from_slice(&r.uart.take_output(&mut r.sink));
        r.check();
        let tx_len = r.uart.tx_len();
        assert_eq!(
            r.line(),
            tx_len == 0,
            "THRE interrupt once the FIFO drained"
        );
    }
    assert_eq!(got, msg, "every accepted byte, in order, and nothing else");
    assert_eq!(r.rd(IIR), IIR_FIFO_ENABLED | IIR_THRI);
    assert_eq!(r.rd(LSR) & (LSR_THRE | LSR_TEMT), LSR_THRE | LSR_TEMT);
}

/// `FCR.2` clears the transmit FIFO but not the shift register (PC16550D
/// FCR bit 2); leaving FIFO mode clears it too; either empties THR, which
/// arms the THRE interrupt.
#[test]
fn fcr_clears_the_transmit_fifo_not_the_shift_register() {
    let mut r = Rig::with_capacity(1);
    r.wr(FCR, FCR_ENABLE_FIFO);
    r.wr(IER, IER_THRI);
    for b in b"abcde" {
        r.wr(THR, *b);
    }
    assert_eq!(r.uart.output(), b"a");
    assert_eq!((r.uart.tx_pending(), r.uart.tx_len()), (4, 3));
    assert!(!r.line());
    r.wr(FCR, FCR_ENABLE_FIFO | FCR_CLEAR_XMIT);
    assert_eq!((r.uart.tx_pending(), r.uart.tx_len()), (1, 0));
    assert_eq!(r.rd(LSR) & (LSR_THRE | LSR_TEMT), LSR_THRE);
    assert_eq!(r.rd(IIR), IIR_FIFO_ENABLED | IIR_THRI);
    r.wr(THR, b'f');
    r.wr(THR, b'g');
    r.wr(FCR, 0);
    assert_eq!(r.uart.tx_pending(), 1, "mode change clears only the FIFO");
    assert!(r.line());
    assert_eq!(r.uart.take_output(&mut r.sink), b"a");
    assert_eq!(
        r.uart.output(),
        b"b",
        "the shift register's byte still goes out"
    );
    // Clearing an empty FIFO does not invent an interrupt.
    r.uart.take_output(&mut r.sink);
    r.rd(IIR);
    r.wr(FCR, FCR_ENABLE_FIFO | FCR_CLEAR_XMIT);
    assert!(!r.line());
}

/// What Linux's 8250 console does once the tty port is open
/// (`serial8250_console_fifo_write`: one `LSR.THRE` wait per `tx_loadsz`
/// = 16 bytes) and what the tty path does (`serial8250_tx_chars`: 16 bytes
/// per THRE interrupt): with the host draining after each access, THRE is
/// set again at each LSR read and no byte is lost.
#[test]
fn linux_fifo_writes_lose_nothing_while_the_host_drains() {
    let mut r = Rig::with_capacity(64);
    r.wr(
        FCR,
        FCR_ENABLE_FIFO | FCR_CLEAR_RCVR | FCR_CLEAR_XMIT | 0x80,
    );
    let msg: Vec<u8> = (0..200u16).map(|i| b'!' + (i % 90) as u8).collect();
    let mut host = Vec::new();
    let mut lsr_reads = 0;
    for load in msg.chunks(TX_FIFO_SIZE) {
        lsr_reads += 1;
        assert_ne!(r.rd(LSR) & LSR_THRE, 0, "wait_for_lsr(UART_LSR_THRE)");
        for &b in load {
            r.wr(THR, b);
            // What device_side_effects does after every exit.
            host.extend_from_slice(r.uart.output());
            r.uart.clear_output(&mut r.sink);
        }
    }
    assert_eq!(host, msg);
    assert_eq!(lsr_reads, 13, "ceil(200 / 16) LSR reads for 200 bytes");
    // Even a host that drains only between FIFO loads loses nothing once
    // its buffer holds a load.
    let mut r = Rig::with_capacity(TX_FIFO_SIZE);
    r.wr(FCR, FCR_ENABLE_FIFO);
    let mut host = Vec::new();
    for load in msg.chunks(TX_FIFO_SIZE) {
        assert_ne!(r.rd(LSR) & LSR_THRE, 0);
        for &b in load {
            r.wr(THR, b);
        }
        host.extend_from_slice(&r.uart.take_output(&mut r.sink));
    }
    assert_eq!(host, msg);
}

/// Bytes still in the transmitter when loopback is turned on go to the
/// receiver, not to the host.
#[test]
fn loopback_takes_what_the_transmitter_held() {
    let mut r = Rig::with_capacity(1);
    r.wr(FCR, FCR_ENABLE_FIFO);
    for b in b"abc" {
        r.wr(THR, *b);
    }
    assert_eq!(r.uart.tx_pending(), 2);
    r.wr(MCR, MCR_LOOP);
    assert_eq!(r.uart.tx_pending(), 0);
    assert_eq!([r.rd(RBR), r.rd(RBR)], [b'b', b'c']);
    assert_eq!(r.uart.output(), b"a");
}

#[test]
fn widths_and_offsets() {
    let mut r = Rig::new();
    r.wr(SCR, 0x5a);
    // Wider aligned accesses act on the register at their offset.
    assert_eq!(r.rd_w(LSR - 1, AccessWidth::Word), 0, "MCR via a word read");
    assert_eq!(r.rd_w(RBR, AccessWidth::Double), 0);
    r.wr_w(SCR - 1, AccessWidth::Half, 0xffff); // MSR: read-only
    assert_eq!(r.rd(SCR), 0x5a);
    r.wr_w(4, AccessWidth::Word, 0x1234_5603); // MCR = 0x03
    assert_eq!(r.rd(MCR), 0x03);
    r.wr_w(0, AccessWidth::Word, u64::from(b'Z') | 0xffff_ff00);
    assert_eq!(r.uart.output(), b"Z");
    // Misaligned: nothing.
    assert_eq!(r.rd_w(SCR, AccessWidth::Half), 0);
    r.wr_w(1, AccessWidth::Half, 0x0f0f);
    assert_eq!(r.rd(IER), 0);
    // Past the registers but inside the block, and past the block.
    for off in [8, 9, 0x10, 0xff, 0x100, u64::MAX] {
        assert_eq!(r.rd(off), 0);
        r.wr(off, 0xff);
    }
    assert_eq!(r.rd(SCR), 0x5a);
    assert_eq!(r.uart.output(), b"Z");
}

#[test]
fn reset_restores_power_on_state_and_lowers_the_line() {
    let mut r = Rig::new();
    r.wr(FCR, FCR_ENABLE_FIFO);
    r.wr(IER, IER_MASK);
    r.wr(LCR, 0x83);
    r.wr(DLL, 1);
    r.wr(MCR, 0x1f);
    r.wr(SCR, 9);
    r.wr(LCR, 0x03);
    r.wr(THR, b'q');
    assert!(r.line());
    r.wr(MCR, 0x0f);
    let mut full = Rig::with_capacity(1);
    full.wr(FCR, FCR_ENABLE_FIFO);
    for b in b"xyz" {
        full.wr(THR, *b);
    }
    let mut ctx = DeviceCtx::new(&mut full.sink, 0, 0);
    full.uart.reset(&mut ctx);
    assert_eq!(full.uart.tx_pending(), 0, "reset empties the FIFO and TSR");
    assert_eq!(full.rd(LSR), 0x60);
    assert_eq!(full.uart.take_output(&mut full.sink), b"x");
    assert!(full.uart.output().is_empty());
    let mut ctx = DeviceCtx::new(&mut r.sink, 0, 0);
    r.uart.reset(&mut ctx);
    r.check();
    assert!(!r.line());
    assert_eq!(
        [
            r.rd(IER),
            r.rd(IIR),
            r.rd(LCR),
            r.rd(MCR),
            r.rd(LSR),
            r.rd(MSR),
            r.rd(SCR)
        ],
        [0, 0x01, 0, 0, 0x60, 0xb0, 0]
    );
    assert_eq!(r.uart.rx_len(), 0);
    assert_eq!(
        r.uart.output(),
        b"",
        "loopback output never reached the host"
    );
}
