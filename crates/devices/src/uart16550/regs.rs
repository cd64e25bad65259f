//! ns16550a register offsets and bits (TI/National PC16550D datasheet, with
//! the names Linux's `include/uapi/linux/serial_reg.h` uses).
//!
//! Registers are one byte each at consecutive offsets (`reg-shift` 0).

/// Receiver Buffer Register (read, LCR.DLAB = 0).
pub const RBR: u64 = 0;
/// Transmitter Holding Register (write, LCR.DLAB = 0).
pub const THR: u64 = 0;
/// Divisor Latch LSB (LCR.DLAB = 1).
pub const DLL: u64 = 0;
/// Interrupt Enable Register (LCR.DLAB = 0).
pub const IER: u64 = 1;
/// Divisor Latch MSB (LCR.DLAB = 1).
pub const DLM: u64 = 1;
/// Interrupt Identification Register (read).
pub const IIR: u64 = 2;
/// FIFO Control Register (write).
pub const FCR: u64 = 2;
/// Line Control Register.
pub const LCR: u64 = 3;
/// Modem Control Register.
pub const MCR: u64 = 4;
/// Line Status Register (read-only).
pub const LSR: u64 = 5;
/// Modem Status Register (read-only).
pub const MSR: u64 = 6;
/// Scratch Register.
pub const SCR: u64 = 7;

/// IER bit 0, ERBFI: received data available (and character timeout) interrupt.
pub const IER_RDI: u8 = 1 << 0;
/// IER bit 1, ETBEI: transmitter holding register empty interrupt.
pub const IER_THRI: u8 = 1 << 1;
/// IER bit 2, ELSI: receiver line status interrupt.
pub const IER_RLSI: u8 = 1 << 2;
/// IER bit 3, EDSSI: modem status interrupt.
pub const IER_MSI: u8 = 1 << 3;
/// The IER bits a 16550 implements (bits 7:4 read 0).
pub const IER_MASK: u8 = 0x0f;

/// IIR bit 0: 1 when no interrupt is pending.
pub const IIR_NO_INT: u8 = 1 << 0;
/// IIR bits 3:1: interrupt identification field.
pub const IIR_ID_MASK: u8 = 0x0e;
/// IIR id: modem status (priority 4, lowest).
pub const IIR_MSI: u8 = 0x00;
/// IIR id: transmitter holding register empty (priority 3).
pub const IIR_THRI: u8 = 0x02;
/// IIR id: received data available (priority 2).
pub const IIR_RDI: u8 = 0x04;
/// IIR id: receiver line status (priority 1, highest).
pub const IIR_RLSI: u8 = 0x06;
/// IIR id: character timeout (priority 2, FIFO mode only).
pub const IIR_RX_TIMEOUT: u8 = 0x0c;
/// IIR bits 7:6: both set when the FIFOs are enabled (FCR bit 0).
pub const IIR_FIFO_ENABLED: u8 = 0xc0;

/// FCR bit 0: enable the FIFOs.
pub const FCR_ENABLE_FIFO: u8 = 1 << 0;
/// FCR bit 1: clear the receive FIFO (self-clearing).
pub const FCR_CLEAR_RCVR: u8 = 1 << 1;
/// FCR bit 2: clear the transmit FIFO (self-clearing).
pub const FCR_CLEAR_XMIT: u8 = 1 << 2;
/// FCR bit 3: DMA mode select.
pub const FCR_DMA_SELECT: u8 = 1 << 3;
/// FCR bits 7:6: receive FIFO trigger level (1, 4, 8, 14 bytes).
pub const FCR_TRIGGER_MASK: u8 = 0xc0;
/// FCR trigger level field shift.
pub const FCR_TRIGGER_SHIFT: u8 = 6;

/// LCR bits 1:0: word length select.
pub const LCR_WLEN_MASK: u8 = 0x03;
/// LCR bit 2: number of stop bits.
pub const LCR_STOP: u8 = 1 << 2;
/// LCR bit 3: parity enable.
pub const LCR_PARITY: u8 = 1 << 3;
/// LCR bit 4: even parity select.
pub const LCR_EPAR: u8 = 1 << 4;
/// LCR bit 5: stick parity.
pub const LCR_SPAR: u8 = 1 << 5;
/// LCR bit 6: set break.
pub const LCR_SBC: u8 = 1 << 6;
/// LCR bit 7: divisor latch access bit.
pub const LCR_DLAB: u8 = 1 << 7;

/// MCR bit 0: data terminal ready.
pub const MCR_DTR: u8 = 1 << 0;
/// MCR bit 1: request to send.
pub const MCR_RTS: u8 = 1 << 1;
/// MCR bit 2: OUT1.
pub const MCR_OUT1: u8 = 1 << 2;
/// MCR bit 3: OUT2.
pub const MCR_OUT2: u8 = 1 << 3;
/// MCR bit 4: loopback mode.
pub const MCR_LOOP: u8 = 1 << 4;
/// The MCR bits a 16550 implements (bits 7:5 read 0).
pub const MCR_MASK: u8 = 0x1f;

/// LSR bit 0: data ready (receive buffer or FIFO holds a byte).
pub const LSR_DR: u8 = 1 << 0;
/// LSR bit 1: overrun error.
pub const LSR_OE: u8 = 1 << 1;
/// LSR bit 2: parity error.
pub const LSR_PE: u8 = 1 << 2;
/// LSR bit 3: framing error.
pub const LSR_FE: u8 = 1 << 3;
/// LSR bit 4: break interrupt.
pub const LSR_BI: u8 = 1 << 4;
/// LSR bit 5: transmitter holding register empty.
pub const LSR_THRE: u8 = 1 << 5;
/// LSR bit 6: transmitter empty (THR and shift register both empty).
pub const LSR_TEMT: u8 = 1 << 6;
/// LSR bit 7: error in receive FIFO.
pub const LSR_FIFOE: u8 = 1 << 7;
/// LSR bits that raise the receiver line status interrupt.
pub const LSR_BRK_ERROR_BITS: u8 = LSR_OE | LSR_PE | LSR_FE | LSR_BI;

/// MSR bit 0: delta clear to send.
pub const MSR_DCTS: u8 = 1 << 0;
/// MSR bit 1: delta data set ready.
pub const MSR_DDSR: u8 = 1 << 1;
/// MSR bit 2: trailing edge ring indicator.
pub const MSR_TERI: u8 = 1 << 2;
/// MSR bit 3: delta data carrier detect.
pub const MSR_DDCD: u8 = 1 << 3;
/// MSR bit 4: clear to send.
pub const MSR_CTS: u8 = 1 << 4;
/// MSR bit 5: data set ready.
pub const MSR_DSR: u8 = 1 << 5;
/// MSR bit 6: ring indicator.
pub const MSR_RI: u8 = 1 << 6;
/// MSR bit 7: data carrier detect.
pub const MSR_DCD: u8 = 1 << 7;
/// MSR delta bits 3:0.
pub const MSR_ANY_DELTA: u8 = 0x0f;
