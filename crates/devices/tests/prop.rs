//! Random MMIO sequences: no device, bus or VM ever panics, and the
//! invariants hold after every step. The PLIC is checked against a plain
//! reference model written straight from the spec's prose.
// Test code: a panic is how a test fails.
#![allow(clippy::panic, clippy::unwrap_used)]

use fv_addr::GuestPhysAddr;
use fv_devices::plic::{self, Plic, Trigger};
use fv_devices::uart16550::{regs::*, Uart16550};
use fv_devices::{
    AccessWidth, BusError, DeviceCtx, InterruptController, IrqSink, MmioBus, MmioDevice, VmDevices,
};
use proptest::prelude::*;

fn width() -> impl Strategy<Value = AccessWidth> {
    prop_oneof![
        Just(AccessWidth::Byte),
        Just(AccessWidth::Half),
        Just(AccessWidth::Word),
        Just(AccessWidth::Double),
    ]
}

/// Records the last level of each line and checks reports are changes only.
#[derive(Default)]
struct Lines {
    level: std::collections::BTreeMap<u32, bool>,
}

impl IrqSink for Lines {
    fn set_level(&mut self, irq: u32, level: bool) {
        let old = self.level.insert(irq, level).unwrap_or(false);
        assert_ne!(old, level, "a report that changes nothing");
    }
}

impl Lines {
    fn get(&self, irq: u32) -> bool {
        self.level.get(&irq).copied().unwrap_or(false)
    }
}

// ---------------------------------------------------------------- UART

#[derive(Clone, Debug)]
enum UartOp {
    Read(u64, AccessWidth),
    Write(u64, AccessWidth, u64),
    Push(u8),
    Clear,
    Take,
    /// A burst of THR writes (as a driver fills the transmit FIFO).
    Burst(Vec<u8>),
}

fn uart_op() -> impl Strategy<Value = UartOp> {
    let off = prop_oneof![8 => 0u64..8, 1 => 0u64..0x110, 1 => any::<u64>()];
    let byte_w = prop_oneof![6 => Just(AccessWidth::Byte), 1 => width()];
    let value = prop_oneof![
        3 => any::<u8>().prop_map(u64::from),
        1 => Just(0x1fu64), // MCR with loopback
        1 => Just(0x80u64), // DLAB
        1 => Just(0xc7u64), // FCR: FIFO on, clear, trigger 14
        1 => any::<u64>(),
    ];
    prop_oneof![
        3 => (off.clone(), byte_w.clone()).prop_map(|(o, w)| UartOp::Read(o, w)),
        4 => (off, byte_w, value).prop_map(|(o, w, v)| UartOp::Write(o, w, v)),
        3 => any::<u8>().prop_map(UartOp::Push),
        1 => Just(UartOp::Clear),
        1 => Just(UartOp::Take),
        1 => proptest::collection::vec(any::<u8>(), 1..24).prop_map(UartOp::Burst),
    ]
}

/// Reads a register of a copy, so the probe has no side effects.
fn peek(u: &Uart16550, reg: u64) -> u8 {
    let mut copy = u.clone();
    let mut sink = fv_devices::NullSink;
    copy.read(reg, AccessWidth::Byte, &mut DeviceCtx::new(&mut sink, 0, 0)) as u8
}

const UART_CAP: usize = 8;

fn check_uart(u: &Uart16550, lines: &Lines) {
    let iir = u.iir();
    assert_eq!(lines.get(u.irq()), u.irq_line());
    assert_eq!(u.irq_line(), iir & IIR_NO_INT == 0);
    assert!(
        [0x01, 0x06, 0x04, 0x0c, 0x02, 0x00].contains(&(iir & 0x0f)),
        "IIR {iir:#x}"
    );
    assert_eq!(iir & 0x30, 0);
    assert!(iir & 0xc0 == 0 || iir & 0xc0 == 0xc0);
    let fifo = iir & 0xc0 != 0;
    assert!(u.rx_len() <= if fifo { 16 } else { 1 });
    if iir & 0x0f == 0x0c {
        assert!(fifo, "character timeout only in FIFO mode");
    }
    assert!(u.output().len() <= UART_CAP);
    let mcr = peek(u, MCR);
    assert_eq!(mcr & !MCR_MASK, 0);
    if peek(u, LCR) & LCR_DLAB == 0 {
        assert_eq!(peek(u, IER) & !IER_MASK, 0, "IER has 4 bits");
    }
    let lsr = peek(u, LSR);
    assert_eq!(lsr & LSR_DR != 0, u.rx_len() > 0);
    // THRE = transmit FIFO (THR) empty; TEMT = FIFO and shift register empty.
    assert_eq!(lsr & LSR_THRE != 0, u.tx_len() == 0);
    assert_eq!(lsr & LSR_TEMT != 0, u.tx_pending() == 0);
    assert!(u.tx_len() <= if fifo { 16 } else { 1 });
    assert!(u.tx_pending() <= u.tx_len() + 1);
    let loopback = mcr & MCR_LOOP != 0;
    if u.tx_pending() > 0 {
        assert!(
            u.output_full() && !loopback,
            "bytes wait only for a full buffer"
        );
    }
    assert_eq!(lsr & (LSR_PE | LSR_FE | LSR_BI | LSR_FIFOE), 0);
    if loopback {
        assert_eq!(u.rx_space(), 0);
    } else {
        assert_eq!(u.rx_space(), if fifo { 16 } else { 1 } - u.rx_len());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn uart_random_accesses(ops in proptest::collection::vec(uart_op(), 1..200)) {
        let mut u = Uart16550::with_output_capacity(5, UART_CAP);
        let mut lines = Lines::default();
        // Every byte the transmitter accepted, and every byte the host drained.
        let mut accepted: Vec<u8> = Vec::new();
        let mut drained: Vec<u8> = Vec::new();
        for op in ops {
            let pending_before = u.tx_pending();
            let before_out = u.output().len();
            let dlab = peek(&u, LCR) & LCR_DLAB != 0;
            let loopback = peek(&u, MCR) & MCR_LOOP != 0;
            let full = u.output_full();
            match op {
                UartOp::Read(off, w) => {
                    let v = u.read(off, w, &mut DeviceCtx::new(&mut lines, 0, 0));
                    prop_assert!(v <= 0xff);
                    if off >= 8 {
                        prop_assert_eq!(v, 0);
                    }
                    prop_assert_eq!(u.output().len(), before_out);
                }
                UartOp::Write(off, w, v) => {
                    let value = v & w.mask();
                    let fifo_room = u.tx_len() < if u.iir() & 0xc0 != 0 { 16 } else { 1 };
                    u.write(off, w, value, &mut DeviceCtx::new(&mut lines, 0, 0));
                    let is_thr = off == 0 && !dlab;
                    let transmits = is_thr && !loopback && !full;
                    let expect = before_out + usize::from(transmits);
                    prop_assert_eq!(u.output().len(), expect);
                    if transmits {
                        prop_assert_eq!(u.output()[before_out], value as u8);
                    }
                    if is_thr && !loopback && fifo_room {
                        accepted.push(value as u8);
                    }
                    if off == FCR || off == MCR {
                        // FCR may clear the FIFO; loopback takes what the
                        // transmitter held: only waiting bytes can go.
                        let kept = drained.len() + u.output().len() + u.tx_pending();
                        prop_assert!(kept + pending_before >= accepted.len());
                        accepted.truncate(kept);
                    }
                }
                UartOp::Burst(bytes) => {
                    for b in bytes {
                        let lb = peek(&u, MCR) & MCR_LOOP != 0;
                        let dl = peek(&u, LCR) & LCR_DLAB != 0;
                        let fifo_room = u.tx_len() < if u.iir() & 0xc0 != 0 { 16 } else { 1 };
                        u.write(THR, AccessWidth::Byte, u64::from(b), &mut DeviceCtx::new(&mut lines, 0, 0));
                        if !lb && !dl && fifo_room {
                            accepted.push(b);
                        }
                        check_uart(&u, &lines);
                    }
                }
                UartOp::Push(b) => {
                    let (space, len) = (u.rx_space(), u.rx_len());
                    let ok = u.push_input(b, &mut lines);
                    prop_assert_eq!(ok, space > 0);
                    prop_assert_eq!(u.rx_len(), len + usize::from(ok));
                }
                UartOp::Clear => {
                    let before = u.output().to_vec();
                    drained.extend_from_slice(&before);
                    u.clear_output(&mut lines);
                    // What the transmitter held moves on into the buffer.
                    prop_assert_eq!(u.output().len(), pending_before.min(UART_CAP));
                }
                UartOp::Take => {
                    let before = u.output().to_vec();
                    let taken = u.take_output(&mut lines);
                    prop_assert_eq!(&taken, &before);
                    drained.extend_from_slice(&taken);
                    prop_assert_eq!(u.output().len(), pending_before.min(UART_CAP));
                }
            }
            check_uart(&u, &lines);
            // Transmitted bytes are never lost, reordered or invented: what
            // the host drained, then the buffer, then what waits in the
            // transmitter, is exactly what THR accepted.
            let mut seen = drained.clone();
            seen.extend_from_slice(u.output());
            prop_assert!(accepted.starts_with(&seen));
            prop_assert_eq!(accepted.len(), seen.len() + u.tx_pending());
        }
    }
}

// ---------------------------------------------------------------- PLIC

const NDEV: u32 = 70;
const CTXS: u32 = 3;

/// The PLIC as the spec describes it, one `bool` per bit.
#[derive(Clone, Debug)]
struct Model {
    prio: Vec<u32>,
    pending: Vec<bool>,
    claimed: Vec<bool>,
    wire: Vec<bool>,
    edge: Vec<bool>,
    edge_seen: Vec<bool>,
    enable: Vec<Vec<bool>>,
    threshold: Vec<u32>,
}

impl Model {
    fn new(edges: &[u32]) -> Self {
        let n = NDEV as usize + 1;
        let mut edge = vec![false; n];
        for &s in edges {
            edge[s as usize] = true;
        }
        Self {
            prio: vec![0; n],
            pending: vec![false; n],
            claimed: vec![false; n],
            wire: vec![false; n],
            edge,
            edge_seen: vec![false; n],
            enable: vec![vec![false; n]; CTXS as usize],
            threshold: vec![0; CTXS as usize],
        }
    }

    fn sources() -> impl Iterator<Item = usize> {
        1..=NDEV as usize
    }

    fn set_wire(&mut self, src: u32, level: bool) {
        if src == 0 || src > NDEV {
            return;
        }
        let s = src as usize;
        let rising = level && !self.wire[s];
        self.wire[s] = level;
        let request = if self.edge[s] { rising } else { level };
        if request {
            if self.claimed[s] {
                if self.edge[s] {
                    self.edge_seen[s] = true;
                }
            } else {
                self.pending[s] = true;
            }
        }
    }

    fn eip(&self, ctx: usize) -> bool {
        Self::sources()
            .any(|s| self.pending[s] && self.enable[ctx][s] && self.prio[s] > self.threshold[ctx])
    }

    fn best(&self, ctx: usize) -> usize {
        let mut best = 0;
        for s in Self::sources() {
            if self.pending[s]
                && self.enable[ctx][s]
                && self.prio[s] > 0
                && self.prio[s] > self.prio[best]
            {
                best = s;
            }
        }
        best
    }

    fn bits(v: &[bool], word: u64) -> u32 {
        (0..32)
            .filter(|b| {
                let s = word as usize * 32 + b;
                s != 0 && s <= NDEV as usize && v[s]
            })
            .fold(0, |acc, b| acc | 1 << b)
    }

    fn size() -> u64 {
        0x20_0000 + 0x1000 * u64::from(CTXS)
    }

    fn read(&mut self, off: u64, w: AccessWidth) -> u64 {
        if w != AccessWidth::Word || !off.is_multiple_of(4) || off >= Self::size() {
            return 0;
        }
        let v = match off {
            0..0x1000 => {
                let s = (off / 4) as usize;
                if (1..=NDEV as usize).contains(&s) {
                    self.prio[s]
                } else {
                    0
                }
            }
            0x1000..0x1080 => Self::bits(&self.pending, (off - 0x1000) / 4),
            0x2000..0x1f_2000 => {
                let ctx = ((off - 0x2000) / 0x80) as usize;
                if ctx < CTXS as usize {
                    Self::bits(&self.enable[ctx], (off - 0x2000) % 0x80 / 4)
                } else {
                    0
                }
            }
            0x20_0000.. => {
                let ctx = ((off - 0x20_0000) / 0x1000) as usize;
                match (off - 0x20_0000) % 0x1000 {
                    0 => self.threshold[ctx],
                    4 => {
                        let s = self.best(ctx);
                        if s != 0 {
                            // The invariant the brief asks for, stated outright.
                            assert!(self.enable[ctx][s] && self.prio[s] > 0 && self.pending[s]);
                            self.pending[s] = false;
                            self.claimed[s] = true;
                        }
                        s as u32
                    }
                    _ => 0,
                }
            }
            _ => 0,
        };
        u64::from(v)
    }

    fn write(&mut self, off: u64, w: AccessWidth, value: u64) {
        if w != AccessWidth::Word || !off.is_multiple_of(4) || off >= Self::size() {
            return;
        }
        let v = value as u32;
        match off {
            0..0x1000 => {
                let s = (off / 4) as usize;
                if (1..=NDEV as usize).contains(&s) {
                    self.prio[s] = v % 8;
                }
            }
            0x2000..0x1f_2000 => {
                let ctx = ((off - 0x2000) / 0x80) as usize;
                let word = (off - 0x2000) % 0x80 / 4;
                if ctx < CTXS as usize {
                    for b in 0..32 {
                        let s = word as usize * 32 + b;
                        if s != 0 && s <= NDEV as usize {
                            self.enable[ctx][s] = v & 1 << b != 0;
                        }
                    }
                }
            }
            0x20_0000.. => {
                let ctx = ((off - 0x20_0000) / 0x1000) as usize;
                match (off - 0x20_0000) % 0x1000 {
                    0 => self.threshold[ctx] = v % 8,
                    4 => {
                        let s = v as usize;
                        if (1..=NDEV as usize).contains(&s)
                            && self.enable[ctx][s]
                            && self.claimed[s]
                        {
                            self.claimed[s] = false;
                            let again = if self.edge[s] {
                                std::mem::take(&mut self.edge_seen[s])
                            } else {
                                self.wire[s]
                            };
                            if again {
                                self.pending[s] = true;
                            }
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
}

#[derive(Clone, Debug)]
enum PlicOp {
    Wire(u32, bool),
    Read(u64, AccessWidth),
    Write(u64, AccessWidth, u64),
}

fn plic_offset() -> impl Strategy<Value = u64> {
    let ctx = 0..=u64::from(CTXS);
    prop_oneof![
        2 => (1u64..=8).prop_map(|s| 4 * s),
        2 => (0..=u64::from(NDEV) + 2).prop_map(|s| 4 * s),
        1 => (0u64..4).prop_map(|w| 0x1000 + 4 * w),
        3 => (ctx.clone(), 0u64..4).prop_map(|(c, w)| 0x2000 + 0x80 * c + 4 * w),
        2 => ctx.clone().prop_map(|c| 0x20_0000 + 0x1000 * c),
        6 => ctx.clone().prop_map(|c| 0x20_0004 + 0x1000 * c),
        1 => (ctx, 0u64..0x1000).prop_map(|(c, r)| 0x20_0000 + 0x1000 * c + r),
        1 => 0u64..0x40_0000,
        1 => any::<u64>(),
    ]
}

fn plic_op() -> impl Strategy<Value = PlicOp> {
    let src = prop_oneof![8 => 1u32..=8, 4 => 1..=NDEV, 1 => Just(0u32), 1 => any::<u32>()];
    let hot = prop_oneof![3 => 1u32..6, 1 => 0..=NDEV + 1];
    let value = prop_oneof![
        4 => hot.prop_map(u64::from),
        2 => any::<u32>().prop_map(u64::from),
        1 => any::<u64>(),
    ];
    let w = prop_oneof![8 => Just(AccessWidth::Word), 1 => width()];
    prop_oneof![
        4 => (src, any::<bool>()).prop_map(|(s, l)| PlicOp::Wire(s, l)),
        4 => (plic_offset(), w.clone()).prop_map(|(o, w)| PlicOp::Read(o, w)),
        5 => (plic_offset(), w, value).prop_map(|(o, w, v)| PlicOp::Write(o, w, v)),
    ]
}

/// Wires of the first few sources are the ones ops touch most; make some of
/// them edge-triggered.
fn edges() -> impl Strategy<Value = Vec<u32>> {
    proptest::collection::vec(1u32..=8, 0..4)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn plic_matches_the_spec_model(
        edges in edges(),
        ops in proptest::collection::vec(plic_op(), 1..300),
    ) {
        let mut p = Plic::new(NDEV, CTXS).unwrap();
        for &s in &edges {
            p.set_trigger(s, Trigger::Edge).unwrap();
        }
        let mut m = Model::new(&edges);
        let mut seen = [false; CTXS as usize];
        let mut sink = fv_devices::NullSink;
        for op in ops {
            match op {
                PlicOp::Wire(s, l) => {
                    p.set_level(s, l);
                    m.set_wire(s, l);
                }
                PlicOp::Read(off, w) => {
                    let got = p.read(off, w, &mut DeviceCtx::new(&mut sink, 0, 0));
                    prop_assert_eq!(got, m.read(off, w), "read {:#x} {:?}", off, w);
                }
                PlicOp::Write(off, w, v) => {
                    let v = v & w.mask();
                    p.write(off, w, v, &mut DeviceCtx::new(&mut sink, 0, 0));
                    m.write(off, w, v);
                }
            }
            for ctx in 0..CTXS {
                prop_assert_eq!(p.context_irq(ctx), m.eip(ctx as usize), "ctx {}", ctx);
            }
            for word in 0..4u64 {
                let off = 0x1000 + 4 * word;
                let got = p.read(off, AccessWidth::Word, &mut DeviceCtx::new(&mut sink, 0, 0));
                prop_assert_eq!(got, u64::from(Model::bits(&m.pending, word)));
            }
            // The core's view, kept up to date by draining changes.
            while let Some((ctx, level)) = p.take_changed() {
                prop_assert!(ctx < CTXS);
                prop_assert_ne!(seen[ctx as usize], level, "reported a non-change");
                seen[ctx as usize] = level;
            }
            for ctx in 0..CTXS {
                prop_assert_eq!(seen[ctx as usize], p.pending_for(ctx));
            }
        }
    }
}

// ---------------------------------------------------------------- bus

/// Answers every read with the offset it was given.
struct Echo(u64);

impl MmioDevice for Echo {
    fn size(&self) -> u64 {
        self.0
    }
    fn read(&mut self, offset: u64, _: AccessWidth, _: &mut DeviceCtx<'_>) -> u64 {
        offset
    }
    fn write(&mut self, _: u64, _: AccessWidth, _: u64, _: &mut DeviceCtx<'_>) {}
    fn reset(&mut self, _: &mut DeviceCtx<'_>) {}
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn bus_places_and_dispatches(
        devices in proptest::collection::vec(
            (prop_oneof![3 => 0u64..0x4000, 1 => any::<u64>()],
             prop_oneof![3 => 0u64..0x800, 1 => any::<u64>()]),
            1..20),
        probes in proptest::collection::vec(
            (prop_oneof![3 => 0u64..0x5000, 1 => any::<u64>()], width()), 1..100),
    ) {
        let mut bus = MmioBus::new();
        let mut placed: Vec<(u64, u64)> = Vec::new();
        for (base, size) in devices {
            let res = bus.insert(GuestPhysAddr::new(base), Box::new(Echo(size)));
            let expect = if size == 0 {
                Err(BusError::EmptyDevice)
            } else if base.checked_add(size).is_none() {
                Err(BusError::Overflow)
            } else if placed.iter().any(|&(b, s)| base < b + s && b < base + size) {
                Err(BusError::Overlap)
            } else {
                Ok(())
            };
            prop_assert_eq!(res.map(|_| ()), expect);
            if expect.is_ok() {
                placed.push((base, size));
            }
        }
        prop_assert_eq!(bus.len(), placed.len());
        let mut sink = fv_devices::NullSink;
        for (addr, w) in probes {
            let owner = placed.iter().find(|&&(b, s)| addr >= b && addr - b < s);
            let mut ctx = DeviceCtx::new(&mut sink, 0, 0);
            let got = bus.read(GuestPhysAddr::new(addr), w, &mut ctx);
            prop_assert_eq!(got, owner.map(|&(b, _)| (addr - b) & w.mask()));
            prop_assert_eq!(bus.write(GuestPhysAddr::new(addr), w, 0, &mut ctx), owner.is_some());
            prop_assert_eq!(bus.find(GuestPhysAddr::new(addr)).is_some(), owner.is_some());
        }
    }
}

// ---------------------------------------------------------------- VM

const PLIC_BASE: u64 = 0x0c00_0000;
const UART_BASE: u64 = 0x1000_0000;

#[derive(Clone, Debug)]
enum VmOp {
    Read(u64, AccessWidth, u32),
    Write(u64, AccessWidth, u64, u32),
    Push(u8),
    Drain,
    HostLine(u32, bool),
}

fn vm_addr() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => (0u64..8).prop_map(|o| UART_BASE + o),
        4 => plic_offset().prop_map(|o| PLIC_BASE.wrapping_add(o)),
        1 => (0u64..0x200).prop_map(|o| UART_BASE - 0x80 + o),
        1 => any::<u64>(),
    ]
}

fn vm_op() -> impl Strategy<Value = VmOp> {
    let value = prop_oneof![
        3 => any::<u8>().prop_map(u64::from),
        2 => (0u64..16).prop_map(|v| 1 << v),
        1 => any::<u64>(),
    ];
    prop_oneof![
        4 => (vm_addr(), width(), 0u32..3).prop_map(|(a, w, c)| VmOp::Read(a, w, c)),
        5 => (vm_addr(), width(), value, 0u32..3).prop_map(|(a, w, v, c)| VmOp::Write(a, w, v, c)),
        2 => any::<u8>().prop_map(VmOp::Push),
        1 => Just(VmOp::Drain),
        1 => (0u32..100, any::<bool>()).prop_map(|(s, l)| VmOp::HostLine(s, l)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn vm_devices_random_traffic(ops in proptest::collection::vec(vm_op(), 1..300)) {
        let mut dev = VmDevices::new();
        dev.set_interrupt_controller(
            GuestPhysAddr::new(PLIC_BASE),
            Box::new(Plic::new(95, 2).unwrap()),
        ).unwrap();
        let uart = dev
            .add_device(GuestPhysAddr::new(UART_BASE), Box::new(Uart16550::new(10)))
            .unwrap();
        let mapped = |a: u64| {
            (PLIC_BASE..PLIC_BASE + plic::plic_size(2)).contains(&a)
                || (UART_BASE..UART_BASE + 0x100).contains(&a)
        };
        let mut view = [false; 2];
        for op in ops {
            match op {
                VmOp::Read(a, w, c) => {
                    let got = dev.read(GuestPhysAddr::new(a), w, c, 0);
                    prop_assert_eq!(got.is_some(), mapped(a));
                    prop_assert!(got.unwrap_or(0) & !w.mask() == 0);
                }
                VmOp::Write(a, w, v, c) => {
                    let ok = dev.write(GuestPhysAddr::new(a), w, v & w.mask(), c, 0);
                    prop_assert_eq!(ok, mapped(a));
                }
                VmOp::Push(b) => {
                    dev.with_device::<Uart16550, _>(uart, |u, irq| u.push_input(b, irq)).unwrap();
                }
                VmOp::Drain => {
                    dev.with_device::<Uart16550, _>(uart, |u, irq| u.clear_output(irq)).unwrap();
                }
                VmOp::HostLine(s, l) => dev.set_irq_level(s, l),
            }
            // The UART's line always agrees with what the PLIC was told:
            // if it is high, source 10 is pending or claimed (never lost).
            let line = dev.device_mut::<Uart16550>(uart).unwrap().irq_line();
            let pending10 = dev.read(GuestPhysAddr::new(PLIC_BASE + 0x1000), AccessWidth::Word, 0, 0)
                .unwrap() & 1 << 10 != 0;
            if line && !pending10 {
                // Then it must be in service: a completion by a context with
                // it enabled would make it pending again. Check on a copy.
                let plic_copy = dev.interrupt_controller_as::<Plic>().unwrap().clone();
                let mut copy = plic_copy;
                let mut sink = fv_devices::NullSink;
                let mut ctx = DeviceCtx::new(&mut sink, 0, 0);
                copy.write(0x2000, AccessWidth::Word, 1 << 10, &mut ctx);
                copy.write(0x20_0004, AccessWidth::Word, 10, &mut ctx);
                let p = copy.read(0x1000, AccessWidth::Word, &mut ctx);
                prop_assert!(p & 1 << 10 != 0, "asserted UART line lost");
            }
            while let Some((vcpu, level)) = dev.take_changed() {
                prop_assert!(vcpu < 2);
                view[vcpu as usize] = level;
            }
            for vcpu in 0..2 {
                prop_assert_eq!(view[vcpu as usize], dev.pending_for(vcpu));
            }
            let intc = dev.interrupt_controller().unwrap();
            prop_assert!(!intc.pending_for(2));
        }
    }
}
