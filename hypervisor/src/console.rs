//! The hypervisor's console: the machine's ns16550a UART (found in the DTB), or
//! the SBI firmware console until then. One lock serialises all harts' output.
//!
//! What reaches the terminal, in which order and how much, is
//! `fv_mgmt::console_out`'s policy: guest output is sanitised and queued per
//! VM, hypervisor output is queued ahead of it, and whoever holds the lock
//! writes at most [`BURST`] bytes, and only while the UART's transmit FIFO is
//! empty: nobody waits for the UART with the lock held, except for the
//! hypervisor's own output when its queue is full, at a VM's stop (its last
//! lines before the hypervisor's) and before power-off.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, Ordering};
use fv_mgmt::console_out::{Transmitter, Tx};
use spin::Mutex;

/// Room for the hypervisor's queued output.
const HV_BYTES: usize = 4096;
/// Most bytes one caller writes to the UART while holding the console.
pub const BURST: usize = 512;
/// The 16550's transmit FIFO.
const FIFO_DEPTH: usize = 16;

struct Console {
    uart: Option<Uart>,
    out: Transmitter<[u8; HV_BYTES]>,
}

/// Output waits to be written (read without the lock by the periodic pump).
static PENDING: AtomicBool = AtomicBool::new(false);

#[derive(Clone, Copy)]
struct Uart {
    base: usize,
    shift: u32,
}

const THR: usize = 0;
const RBR: usize = 0;
const FCR: usize = 2;
const LSR: usize = 5;
const LSR_DR: u8 = 1 << 0;
const LSR_THRE: u8 = 1 << 5;
const FCR_FIFO_ENABLE: u8 = 1 << 0;

impl Uart {
    fn reg(&self, r: usize) -> usize {
        self.base + (r << self.shift)
    }

    fn lsr(&self) -> u8 {
        // SAFETY: `base` is the UART's MMIO window from the DTB, identity-mapped
        // (the hypervisor runs with satp = Bare) and owned by the hypervisor: no
        // guest maps it. Volatile byte accesses are what the 16550 expects.
        unsafe { core::ptr::read_volatile(self.reg(LSR) as *const u8) }
    }

    fn has_input(&self) -> bool {
        self.lsr() & LSR_DR != 0
    }

    fn get(&self) -> Option<u8> {
        // SAFETY: as in `lsr`.
        (self.has_input()).then(|| unsafe { core::ptr::read_volatile(self.reg(RBR) as *const u8) })
    }

    fn enable_fifo(&self) {
        // SAFETY: as in `lsr`. Setting FIFO enable only (no reset bits) keeps
        // the FIFOs' contents when they are already enabled.
        unsafe { core::ptr::write_volatile(self.reg(FCR) as *mut u8, FCR_FIFO_ENABLE) };
    }
}

/// Where the transmitter's bytes go: the UART (only while its FIFO is
/// empty, at most a FIFO's worth), or the firmware console before the UART
/// is known (SBI DBCN, which waits itself).
struct Sink(Option<Uart>);

impl Tx for Sink {
    fn write(&mut self, bytes: &[u8]) -> usize {
        match self.0 {
            Some(u) => {
                if u.lsr() & LSR_THRE == 0 {
                    return 0;
                }
                let n = bytes.len().min(FIFO_DEPTH);
                for &b in bytes.iter().take(n) {
                    // SAFETY: as in `Uart::lsr`; THRE says the FIFO is empty,
                    // so it takes `FIFO_DEPTH` bytes.
                    unsafe { core::ptr::write_volatile(u.reg(THR) as *mut u8, b) };
                }
                n
            }
            None => {
                fv_arch_riscv64::firmware::console_write(bytes);
                bytes.len()
            }
        }
    }
}

static CONSOLE: Mutex<Console> = Mutex::new(Console {
    uart: None,
    out: Transmitter::new([0; HV_BYTES]),
});

impl Console {
    /// Writes a burst and notes whether output is still pending.
    fn pump(&mut self) {
        let pending = self.out.pump(&mut Sink(self.uart), BURST);
        PENDING.store(pending, Ordering::Relaxed);
    }
}

/// Hypervisor text into the console's queue.
struct HvWriter<'a>(&'a mut Console);

impl Write for HvWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let uart = self.0.uart;
        self.0
            .out
            .hypervisor_write_all(&mut Sink(uart), s.as_bytes());
        Ok(())
    }
}

/// Switches output to the UART at `base` (registers `1 << shift` bytes apart).
pub fn use_uart(base: u64, shift: u32) {
    let mut c = CONSOLE.lock();
    // What was queued for the firmware console goes out there first.
    c.out.drain_all(&mut Sink(None));
    let u = Uart {
        base: base as usize,
        shift,
    };
    u.enable_fifo();
    c.uart = Some(u);
}

/// Writes text of the hypervisor's own (shell output, log lines). If a
/// guest's line is unfinished on the terminal, it is ended first so the two
/// never mix.
pub fn write_fmt(args: fmt::Arguments<'_>) {
    let mut c = CONSOLE.lock();
    let _ = HvWriter(&mut c).write_fmt(args);
    c.pump();
}

/// A log line: kept in the log ring (`log` in the shell), then printed as
/// `ferrovisor: <line>`. The ring is written before the console is taken, so
/// the two locks are never held together in that order.
pub fn log_line(args: fmt::Arguments<'_>) {
    crate::mgmt::log_to_ring(format_args!("{args}\n"));
    write_fmt(format_args!("ferrovisor: {args}\n"));
}

/// Takes a guest's console output (written at host time `now`): sanitised,
/// queued as whole lines (see `fv_mgmt::console_out`), and a burst written.
/// Costs O(`bytes.len()` + [`BURST`]); output that does not fit the VM's
/// queue is dropped (and reported).
pub fn guest_output(vm: usize, name: &str, bytes: &[u8], now: u64) {
    let mut c = CONSOLE.lock();
    if let Some(v) = c.out.vm(vm, name) {
        v.write(bytes, now);
    }
    c.pump();
}

/// How many bytes of guest output VM `vm` (named `name`) may hand to
/// [`guest_output`] now without any being dropped (`fv_mgmt`'s
/// `VmOutput::room`): what a virtio-console passes on at a time, holding the
/// guest back while the terminal is behind.
pub fn guest_output_room(vm: usize, name: &str) -> usize {
    let mut c = CONSOLE.lock();
    c.out.vm(vm, name).map_or(0, |v| v.room())
}

/// Queues VM `vm`'s unfinished line now (a prompt, an echo).
pub fn flush_vm(vm: usize) {
    let mut c = CONSOLE.lock();
    if let Some(v) = c.out.existing_vm(vm) {
        v.flush();
    }
    c.pump();
}

/// Writes all of VM `vm`'s output now, waiting for the UART (at its stop, so
/// its last lines come before the hypervisor's about it).
pub fn drain_vm(vm: usize) {
    let mut c = CONSOLE.lock();
    if let Some(v) = c.out.existing_vm(vm) {
        v.flush();
    }
    let uart = c.uart;
    c.out.drain_vm(&mut Sink(uart), vm);
    c.pump();
}

/// Queues lines that have waited longer than `limit` since their first byte,
/// and writes a burst of whatever is pending.
pub fn flush_stale(now: u64, limit: u64) {
    let mut c = CONSOLE.lock();
    for v in c.out.vms_mut() {
        if v.line.is_stale(now, limit) {
            v.flush();
        }
    }
    c.pump();
}

/// Whether output waits to be written.
pub fn output_pending() -> bool {
    PENDING.load(Ordering::Relaxed)
}

/// Writes everything, waiting for the UART (before the machine powers off).
pub fn drain_all() {
    let mut c = CONSOLE.lock();
    for v in c.out.vms_mut() {
        v.flush();
    }
    let uart = c.uart;
    c.out.drain_all(&mut Sink(uart));
    PENDING.store(false, Ordering::Relaxed);
}

/// Whether a byte typed on the machine's console is waiting.
pub fn input_waiting() -> bool {
    let c = CONSOLE.lock();
    c.uart.is_some_and(|u| u.has_input())
}

/// One byte typed on the machine's console, if any (polls the UART).
pub fn poll_input() -> Option<u8> {
    let c = CONSOLE.lock();
    c.uart.and_then(|u| u.get())
}

/// Breaks the console lock for a fatal report (another hart may hold it forever).
pub fn force_unlock() {
    // SAFETY: used only on the fatal path right before the machine stops, when
    // interleaved output is preferable to no report at all.
    unsafe { CONSOLE.force_unlock() };
}

/// Prints a line prefixed with `ferrovisor: `.
#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => {
        $crate::console::log_line(format_args!($($arg)*))
    };
}
