//! A virtual ns16550a UART, the console Linux's 8250 driver and OpenSBI-style
//! bare-metal code expect at `0x1000_0000` on `-M virt`.
//!
//! # What is modelled
//!
//! All ten registers of the PC16550D (RBR/THR, IER, IIR/FCR, LCR, MCR, LSR,
//! MSR, SCR, and DLL/DLM while `LCR.DLAB` is set) at byte offsets 0..=7
//! (`reg-shift` 0). The block is [`UART_REG_SIZE`] bytes, as the guest device
//! tree declares; offsets 8 and up read 0 and ignore writes.
//!
//! * **Transmit.** A byte written to THR goes into the transmit FIFO
//!   ([`TX_FIFO_SIZE`] bytes with `FCR.0` set, a single holding register
//!   without), from there into the transmitter shift register (TSR), and from
//!   the TSR onto "the line": an output buffer the hypervisor drains
//!   ([`output`](Uart16550::output), [`clear_output`](Uart16550::clear_output),
//!   [`take_output`](Uart16550::take_output)), so it can batch console output.
//!   There is no baud-rate timing: bytes move on at once while the output
//!   buffer has room, so as long as the host keeps draining it the FIFO is
//!   empty again by the guest's next LSR read, and a driver that writes a
//!   whole FIFO load per THRE (Linux's 8250 driver writes `tx_loadsz` = 16
//!   bytes for a 16550A) loses nothing. The buffer has a fixed capacity; while
//!   it is full the TSR keeps its byte (`LSR.TEMT = 0`), the FIFO fills
//!   (`LSR.THRE = 0` as soon as it holds a byte) and a byte written to a full
//!   FIFO is lost, as on real hardware. Draining the buffer lets the FIFO move
//!   on; when it empties, THRE is set with the THRE interrupt that goes with
//!   it. `LSR.THRE` = FIFO (or THR) empty, `LSR.TEMT` = FIFO and TSR empty
//!   (PC16550D, LSR bits 5 and 6). `FCR.2` clears the FIFO (not the TSR),
//!   and so does switching between FIFO and 16450 mode. What the FIFO saves
//!   in guest exits depends on the driver (Linux's console polls LSR before
//!   every byte until its tty is open): see docs/ARCHITECTURE.md, "Devices
//!   and interrupts".
//! * **Receive.** [`push_input`](Uart16550::push_input) delivers a byte from
//!   the host console into the receive FIFO (16 bytes with `FCR.0` set, a
//!   single holding register without). It refuses (returns `false`) rather
//!   than overrun, so the host keeps the byte for later and input is never lost.
//! * **Interrupts** (IIR identification in priority order): receiver line
//!   status (`OE`, only from an overrun in loopback), received data available
//!   (reported as a character timeout, IIR `0x0c`, while the FIFO holds fewer
//!   bytes than the trigger level: there is no timer, so the timeout is
//!   immediate), THR empty, modem status.
//! * **THRE interrupt** semantics as the 8250 driver relies on them: it is
//!   armed when THR (the FIFO) becomes empty (at once after a THR write while
//!   the output buffer has room, when draining the buffer lets the FIFO
//!   empty, and when `FCR.2` or a FIFO mode change clears bytes from it) and when `IER.ETBEI` goes from
//!   0 to 1 while THR is empty; it is cleared by writing THR, by reading IIR
//!   while THRE is the interrupt IIR reports, and by clearing `IER.ETBEI`.
//! * **Loopback** (`MCR.LOOP`): the transmitter feeds the receive FIFO (an
//!   overflowing byte sets `LSR.OE`; bytes still waiting in the transmitter
//!   when loopback is turned on go there too), host input is refused, and MSR reflects MCR (CTS = RTS,
//!   DSR = DTR, RI = OUT1, DCD = OUT2) with delta bits, as the 8250 probe's
//!   loopback test expects. Outside loopback the modem lines read as a
//!   connected terminal: CTS, DSR and DCD set, RI clear.
//! * **Divisor, word length, parity, stop bits, break** are stored and read
//!   back but have no effect.
//!
//! # Access widths
//!
//! Byte accesses are what drivers use. Wider accesses (naturally aligned,
//! within offsets 0..8) act on the one register at their offset and use or
//! return its value in the low byte, as QEMU's model does, so drivers that
//! declare `reg-io-width = 4` with `reg-shift = 0` still work. Misaligned
//! accesses read 0 and are ignored.
//!
//! # Interrupt line
//!
//! The line (`IIR.0 == 0`) is recomputed after every access and host call
//! that can change it and reported to the [`IrqSink`] whenever it changes,
//! as source [`irq`](Uart16550::irq). The sink must therefore be the same
//! controller for the UART's whole life (its initial level is low).

pub mod regs;
#[cfg(test)]
mod tests;

use alloc::vec::Vec;

use crate::{access_ok, AccessWidth, DeviceCtx, IrqSink, MmioDevice};
use regs::*;

/// Size of the register block (what the guest device tree declares).
pub const UART_REG_SIZE: u64 = 0x100;
/// Depth of the receive FIFO.
pub const RX_FIFO_SIZE: usize = 16;
/// Depth of the transmit FIFO (with `FCR.0` set; 1 byte, THR, without).
pub const TX_FIFO_SIZE: usize = 16;
/// Depth of the ring both FIFOs use.
const FIFO_SIZE: usize = if RX_FIFO_SIZE > TX_FIFO_SIZE {
    RX_FIFO_SIZE
} else {
    TX_FIFO_SIZE
};
/// Output buffer capacity [`Uart16550::new`] chooses.
pub const DEFAULT_OUTPUT_CAPACITY: usize = 4096;
/// Number of byte registers (offsets `0..REG_COUNT`).
const REG_COUNT: u64 = 8;
/// Divisor latch after reset (9600 baud from a 1.8432 MHz clock; informational).
const RESET_DIVISOR: u16 = 12;

/// A FIFO: a ring of up to [`FIFO_SIZE`] bytes (the receive and the
/// transmit FIFO; their callers bound them to their own depth).
#[derive(Clone, Debug, Default)]
struct Fifo {
    buf: [u8; FIFO_SIZE],
    head: usize,
    len: usize,
}

impl Fifo {
    fn push(&mut self, byte: u8) -> bool {
        if self.len >= FIFO_SIZE {
            return false;
        }
        let at = (self.head + self.len) % FIFO_SIZE;
        match self.buf.get_mut(at) {
            Some(slot) => {
                *slot = byte;
                self.len += 1;
                true
            }
            None => false,
        }
    }

    fn pop(&mut self) -> Option<u8> {
        if self.len == 0 {
            return None;
        }
        let byte = self.buf.get(self.head).copied();
        self.head = (self.head + 1) % FIFO_SIZE;
        self.len -= 1;
        byte
    }

    fn clear(&mut self) {
        self.head = 0;
        self.len = 0;
    }
}

/// A virtual ns16550a. See the [module documentation](self) for what it models.
#[derive(Clone, Debug)]
pub struct Uart16550 {
    irq: u32,
    ier: u8,
    lcr: u8,
    mcr: u8,
    /// FCR as last programmed: FIFO enable, DMA mode and trigger bits.
    fcr: u8,
    scr: u8,
    dll: u8,
    dlm: u8,
    /// Sticky LSR error bits (only `OE` is ever set), cleared by reading LSR.
    lsr_errors: u8,
    /// MSR delta bits 3:0, cleared by reading MSR.
    msr_delta: u8,
    rx: Fifo,
    /// The transmit FIFO (THR in 16450 mode).
    tx: Fifo,
    /// The transmitter shift register: a byte taken from the FIFO that the
    /// full output buffer could not take yet.
    tsr: Option<u8>,
    /// The THRE interrupt is armed (see the module documentation).
    thr_ipending: bool,
    out: Vec<u8>,
    out_capacity: usize,
    /// Level last reported to the sink.
    line: bool,
}

impl Uart16550 {
    /// A UART in its reset state that signals interrupt source `irq`, with a
    /// [`DEFAULT_OUTPUT_CAPACITY`]-byte output buffer.
    pub fn new(irq: u32) -> Self {
        Self::with_output_capacity(irq, DEFAULT_OUTPUT_CAPACITY)
    }

    /// Like [`new`](Self::new) with an output buffer of `capacity` bytes
    /// (at least 1), reserved now so that transmitting never allocates.
    pub fn with_output_capacity(irq: u32, capacity: usize) -> Self {
        let capacity = capacity.max(1);
        let [dll, dlm] = RESET_DIVISOR.to_le_bytes();
        Self {
            irq,
            ier: 0,
            lcr: 0,
            mcr: 0,
            fcr: 0,
            scr: 0,
            dll,
            dlm,
            lsr_errors: 0,
            msr_delta: 0,
            rx: Fifo::default(),
            tx: Fifo::default(),
            tsr: None,
            thr_ipending: false,
            out: Vec::with_capacity(capacity),
            out_capacity: capacity,
            line: false,
        }
    }

    /// The interrupt source this UART signals.
    pub fn irq(&self) -> u32 {
        self.irq
    }

    /// Whether the interrupt line is asserted (the level last reported).
    pub fn irq_line(&self) -> bool {
        self.line
    }

    /// The value a read of IIR would return now, without a read's side
    /// effect (clearing a THRE interrupt).
    pub fn iir(&self) -> u8 {
        let fifo = if self.fifo_enabled() {
            IIR_FIFO_ENABLED
        } else {
            0
        };
        let id = if self.ier & IER_RLSI != 0 && self.lsr_errors & LSR_BRK_ERROR_BITS != 0 {
            IIR_RLSI
        } else if self.ier & IER_RDI != 0 && self.rx.len > 0 {
            if self.fifo_enabled() && self.rx.len < self.rx_trigger() {
                IIR_RX_TIMEOUT
            } else {
                IIR_RDI
            }
        } else if self.ier & IER_THRI != 0 && self.thr_ipending && self.thr_empty() {
            IIR_THRI
        } else if self.ier & IER_MSI != 0 && self.msr_delta != 0 {
            IIR_MSI
        } else {
            IIR_NO_INT
        };
        fifo | id
    }

    /// Bytes waiting in the receive FIFO.
    pub fn rx_len(&self) -> usize {
        self.rx.len
    }

    /// How many more bytes [`push_input`](Self::push_input) accepts now
    /// (0 in loopback mode).
    pub fn rx_space(&self) -> usize {
        if self.loopback() {
            0
        } else {
            self.rx_capacity().saturating_sub(self.rx.len)
        }
    }

    /// Delivers `byte` from the host console to the receiver, raising the
    /// received-data interrupt if the guest enabled it. Returns `false`
    /// (and drops nothing: the caller keeps the byte) when the receiver is
    /// full or in loopback mode.
    pub fn push_input(&mut self, byte: u8, irq: &mut dyn IrqSink) -> bool {
        if self.rx_space() == 0 || !self.rx.push(byte) {
            return false;
        }
        self.update_irq(irq);
        true
    }

    /// Bytes waiting in the transmit FIFO (THR in 16450 mode).
    pub fn tx_len(&self) -> usize {
        self.tx.len
    }

    /// Bytes the transmitter holds that have not reached the output buffer
    /// yet: the transmit FIFO plus the shift register. Non-zero only while
    /// the output buffer is full.
    pub fn tx_pending(&self) -> usize {
        self.tx.len + usize::from(self.tsr.is_some())
    }

    /// Bytes the guest transmitted and the host has not drained yet.
    pub fn output(&self) -> &[u8] {
        &self.out
    }

    /// Whether the output buffer is full (further bytes wait in the
    /// transmitter, then are lost, until the host drains it).
    pub fn output_full(&self) -> bool {
        self.out.len() >= self.out_capacity
    }

    /// Empties the output buffer and lets the transmitter move on; if the
    /// transmit FIFO empties, THRE is set and the THRE interrupt armed.
    pub fn clear_output(&mut self, irq: &mut dyn IrqSink) {
        let was_busy = !self.thr_empty();
        self.out.clear();
        self.shift();
        if was_busy && self.thr_empty() {
            self.thr_ipending = true;
        }
        self.update_irq(irq);
    }

    /// Takes the transmitted bytes, leaving a fresh buffer of the same
    /// capacity (this allocates; [`output`](Self::output) +
    /// [`clear_output`](Self::clear_output) does not).
    pub fn take_output(&mut self, irq: &mut dyn IrqSink) -> Vec<u8> {
        let fresh = Vec::with_capacity(self.out_capacity);
        let was_busy = !self.thr_empty();
        let taken = core::mem::replace(&mut self.out, fresh);
        self.shift();
        if was_busy && self.thr_empty() {
            self.thr_ipending = true;
        }
        self.update_irq(irq);
        taken
    }

    fn fifo_enabled(&self) -> bool {
        self.fcr & FCR_ENABLE_FIFO != 0
    }

    fn loopback(&self) -> bool {
        self.mcr & MCR_LOOP != 0
    }

    fn dlab(&self) -> bool {
        self.lcr & LCR_DLAB != 0
    }

    fn rx_capacity(&self) -> usize {
        if self.fifo_enabled() {
            RX_FIFO_SIZE
        } else {
            1
        }
    }

    fn tx_capacity(&self) -> usize {
        if self.fifo_enabled() {
            TX_FIFO_SIZE
        } else {
            1
        }
    }

    fn rx_trigger(&self) -> usize {
        match (self.fcr & FCR_TRIGGER_MASK) >> FCR_TRIGGER_SHIFT {
            0 => 1,
            1 => 4,
            2 => 8,
            _ => 14,
        }
    }

    /// `LSR.THRE`: the transmit FIFO (THR in 16450 mode) is empty.
    fn thr_empty(&self) -> bool {
        self.tx.len == 0
    }

    /// `LSR.TEMT`: the transmit FIFO and the shift register are both empty.
    fn transmitter_empty(&self) -> bool {
        self.thr_empty() && self.tsr.is_none()
    }

    fn lsr(&self) -> u8 {
        let mut lsr = self.lsr_errors;
        if self.rx.len > 0 {
            lsr |= LSR_DR;
        }
        if self.thr_empty() {
            lsr |= LSR_THRE;
        }
        if self.transmitter_empty() {
            lsr |= LSR_TEMT;
        }
        lsr
    }

    /// MSR bits 7:4: the modem input lines.
    fn msr_status(&self) -> u8 {
        if self.loopback() {
            let mut s = 0;
            if self.mcr & MCR_RTS != 0 {
                s |= MSR_CTS;
            }
            if self.mcr & MCR_DTR != 0 {
                s |= MSR_DSR;
            }
            if self.mcr & MCR_OUT1 != 0 {
                s |= MSR_RI;
            }
            if self.mcr & MCR_OUT2 != 0 {
                s |= MSR_DCD;
            }
            s
        } else {
            MSR_DCD | MSR_DSR | MSR_CTS
        }
    }

    fn update_irq(&mut self, irq: &mut dyn IrqSink) {
        let level = self.iir() & IIR_NO_INT == 0;
        if level != self.line {
            self.line = level;
            irq.set_level(self.irq, level);
        }
    }

    fn read_reg(&mut self, reg: u64) -> u8 {
        match reg {
            RBR if self.dlab() => self.dll,
            RBR => self.rx.pop().unwrap_or(0),
            IER if self.dlab() => self.dlm,
            IER => self.ier,
            IIR => {
                let iir = self.iir();
                if iir & IIR_NO_INT == 0 && iir & IIR_ID_MASK == IIR_THRI {
                    self.thr_ipending = false;
                }
                iir
            }
            LCR => self.lcr,
            MCR => self.mcr,
            LSR => {
                let lsr = self.lsr();
                self.lsr_errors = 0;
                lsr
            }
            MSR => {
                let msr = self.msr_status() | self.msr_delta;
                self.msr_delta = 0;
                msr
            }
            SCR => self.scr,
            _ => 0,
        }
    }

    fn write_reg(&mut self, reg: u64, value: u8) {
        match reg {
            DLL if self.dlab() => self.dll = value,
            THR => self.transmit(value),
            DLM if self.dlab() => self.dlm = value,
            IER => {
                let new = value & IER_MASK;
                let changed = new ^ self.ier;
                self.ier = new;
                if changed & IER_THRI != 0 {
                    self.thr_ipending = new & IER_THRI != 0 && self.thr_empty();
                }
            }
            FCR => {
                if (value ^ self.fcr) & FCR_ENABLE_FIFO != 0 {
                    // Switching between FIFO and 16450 mode empties the FIFOs
                    // (not the shift register).
                    self.rx.clear();
                    self.tx.clear();
                }
                if value & FCR_ENABLE_FIFO == 0 {
                    // The other bits are only programmed with bit 0 set.
                    self.fcr = 0;
                } else {
                    if value & FCR_CLEAR_RCVR != 0 {
                        self.rx.clear();
                    }
                    if value & FCR_CLEAR_XMIT != 0 {
                        self.tx.clear();
                    }
                    self.fcr = value & (FCR_ENABLE_FIFO | FCR_DMA_SELECT | FCR_TRIGGER_MASK);
                }
            }
            LCR => self.lcr = value,
            MCR => {
                let before = self.msr_status();
                self.mcr = value & MCR_MASK;
                let after = self.msr_status();
                let changed = before ^ after;
                if changed & MSR_CTS != 0 {
                    self.msr_delta |= MSR_DCTS;
                }
                if changed & MSR_DSR != 0 {
                    self.msr_delta |= MSR_DDSR;
                }
                if before & MSR_RI != 0 && after & MSR_RI == 0 {
                    self.msr_delta |= MSR_TERI;
                }
                if changed & MSR_DCD != 0 {
                    self.msr_delta |= MSR_DDCD;
                }
            }
            SCR => self.scr = value,
            // LSR and MSR are read-only.
            _ => {}
        }
    }

    /// A THR write: into the transmit FIFO, then on as far as it can go.
    fn transmit(&mut self, byte: u8) {
        self.thr_ipending = false;
        // A byte written to a full FIFO (THR) is lost, as on hardware.
        if self.tx.len < self.tx_capacity() {
            let _ = self.tx.push(byte);
        }
        self.shift();
        // THR empties at once unless the output buffer is full.
        self.thr_ipending = self.thr_empty();
    }

    /// Moves bytes FIFO → shift register → line as far as they go: in
    /// loopback into the receive FIFO (an overflowing byte sets `LSR.OE`),
    /// otherwise into the output buffer while it has room.
    fn shift(&mut self) {
        loop {
            if let Some(byte) = self.tsr {
                if self.loopback() {
                    if self.rx.len >= self.rx_capacity() || !self.rx.push(byte) {
                        self.lsr_errors |= LSR_OE;
                    }
                } else if self.out.len() < self.out_capacity {
                    self.out.push(byte);
                } else {
                    return;
                }
                self.tsr = None;
            }
            match self.tx.pop() {
                Some(byte) => self.tsr = Some(byte),
                None => return,
            }
        }
    }
}

impl MmioDevice for Uart16550 {
    fn size(&self) -> u64 {
        UART_REG_SIZE
    }

    fn read(&mut self, offset: u64, width: AccessWidth, ctx: &mut DeviceCtx<'_>) -> u64 {
        if !access_ok(offset, width, REG_COUNT) {
            return 0;
        }
        let value = self.read_reg(offset);
        self.update_irq(ctx.irq);
        u64::from(value)
    }

    fn write(&mut self, offset: u64, width: AccessWidth, value: u64, ctx: &mut DeviceCtx<'_>) {
        if !access_ok(offset, width, REG_COUNT) {
            return;
        }
        let thr_was_empty = self.thr_empty();
        self.write_reg(offset, value.to_le_bytes()[0]);
        // Loopback turned on sends what the transmitter held to the receiver.
        self.shift();
        if !thr_was_empty && self.thr_empty() {
            // FCR cleared the FIFO, or loopback emptied it.
            self.thr_ipending = true;
        }
        self.update_irq(ctx.irq);
    }

    /// Power-on state (PC16550D "Reset" table: both FIFOs and the shift
    /// register empty, `LSR = 0x60`). The output buffer keeps any bytes the
    /// host has not drained: they were already transmitted.
    fn reset(&mut self, ctx: &mut DeviceCtx<'_>) {
        let [dll, dlm] = RESET_DIVISOR.to_le_bytes();
        self.ier = 0;
        self.lcr = 0;
        self.mcr = 0;
        self.fcr = 0;
        self.scr = 0;
        self.dll = dll;
        self.dlm = dlm;
        self.lsr_errors = 0;
        self.msr_delta = 0;
        self.rx.clear();
        self.tx.clear();
        self.tsr = None;
        self.thr_ipending = false;
        self.update_irq(ctx.irq);
    }
}
