//! The hypervisor's console: the machine's ns16550a UART (found in the DTB), or
//! the SBI firmware console until then. One lock serialises all harts' output.

use core::fmt::{self, Write};
use spin::Mutex;

struct Console {
    uart: Option<Uart>,
    /// VM whose output is on the current (unfinished) line, if any.
    owner: Option<usize>,
    /// Whether the cursor is at the start of a line.
    line_start: bool,
    /// The owner's last byte was a carriage return, not yet acted on.
    cr_pending: bool,
}

#[derive(Clone, Copy)]
struct Uart {
    base: usize,
    shift: u32,
}

const THR: usize = 0;
const RBR: usize = 0;
const LSR: usize = 5;
const LSR_DR: u8 = 1 << 0;
const LSR_THRE: u8 = 1 << 5;

impl Uart {
    fn has_input(&self) -> bool {
        let lsr = (self.base + (LSR << self.shift)) as *const u8;
        // SAFETY: as in `put`: the hypervisor's own UART, identity-mapped MMIO.
        unsafe { core::ptr::read_volatile(lsr) & LSR_DR != 0 }
    }

    fn get(&self) -> Option<u8> {
        let lsr = (self.base + (LSR << self.shift)) as *const u8;
        let rbr = (self.base + (RBR << self.shift)) as *const u8;
        // SAFETY: as in `put`: the hypervisor's own UART, identity-mapped MMIO.
        unsafe {
            (core::ptr::read_volatile(lsr) & LSR_DR != 0).then(|| core::ptr::read_volatile(rbr))
        }
    }

    fn put(&self, b: u8) {
        let lsr = (self.base + (LSR << self.shift)) as *const u8;
        let thr = (self.base + (THR << self.shift)) as *mut u8;
        // SAFETY: `base` is the UART's MMIO window from the DTB, identity-mapped
        // (the hypervisor runs with satp = Bare) and owned by the hypervisor: no
        // guest maps it. Volatile byte accesses are what the 16550 expects.
        unsafe {
            while core::ptr::read_volatile(lsr) & LSR_THRE == 0 {}
            core::ptr::write_volatile(thr, b);
        }
    }
}

impl Console {
    fn put_raw(&mut self, b: u8) -> fmt::Result {
        match self.uart {
            Some(u) => u.put(b),
            None => fv_arch_riscv64::firmware::console_write(&[b]),
        }
        Ok(())
    }
}

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        match self.uart {
            Some(u) => {
                for b in s.bytes() {
                    if b == b'\n' {
                        u.put(b'\r');
                    }
                    u.put(b);
                }
            }
            None => fv_arch_riscv64::firmware::console_write(s.as_bytes()),
        }
        Ok(())
    }
}

static CONSOLE: Mutex<Console> = Mutex::new(Console {
    uart: None,
    owner: None,
    line_start: true,
    cr_pending: false,
});

/// Switches output to the UART at `base` (registers `1 << shift` bytes apart).
pub fn use_uart(base: u64, shift: u32) {
    CONSOLE.lock().uart = Some(Uart {
        base: base as usize,
        shift,
    });
}

/// Writes text of the hypervisor's own (shell output, log lines). If a
/// guest's line is unfinished, it is ended first so the two never mix.
pub fn write_fmt(args: fmt::Arguments<'_>) {
    let mut c = CONSOLE.lock();
    if c.owner.is_some() && (!c.line_start || c.cr_pending) {
        let _ = c.write_str("\n");
        c.line_start = true;
    }
    c.cr_pending = false;
    c.owner = None;
    let mut w = Tracking {
        console: &mut c,
        last: None,
    };
    let _ = w.write_fmt(args);
    if let Some(last) = w.last {
        c.line_start = last == b'\n';
    }
}

/// A log line: kept in the log ring (`log` in the shell), then printed as
/// `ferrovisor: <line>`. The ring is written before the console is taken, so
/// the two locks are never held together in that order.
pub fn log_line(args: fmt::Arguments<'_>) {
    crate::mgmt::log_to_ring(format_args!("{args}\n"));
    let mut c = CONSOLE.lock();
    if !c.line_start || c.cr_pending {
        let _ = c.write_str("\n");
    }
    c.cr_pending = false;
    c.owner = None;
    let _ = c.write_fmt(format_args!("ferrovisor: {args}\n"));
    c.line_start = true;
}

/// Remembers the last byte written, to know whether a line is open.
struct Tracking<'a> {
    console: &'a mut Console,
    last: Option<u8>,
}

impl Write for Tracking<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if let Some(&b) = s.as_bytes().last() {
            self.last = Some(b);
        }
        self.console.write_str(s)
    }
}

/// Writes a guest's console output. Every line starts with `[<vm name>] `; when
/// another VM (or the hypervisor) wrote last and left its line unfinished, a
/// newline comes first, so each line on the console belongs to exactly one VM.
/// Bytes go straight out (no buffering), so a shell prompt appears at once.
pub fn guest_output(vm: usize, name: &str, bytes: &[u8]) {
    let mut c = CONSOLE.lock();
    for &b in bytes {
        if c.owner != Some(vm) {
            // Someone else's line is open (or a carriage return of theirs is
            // pending): end it before this VM's output starts.
            if !c.line_start || c.cr_pending {
                let _ = c.write_str("\n");
                c.line_start = true;
            }
            c.cr_pending = false;
        }
        c.owner = Some(vm);
        // A carriage return followed by anything but a newline (a shell
        // redrawing its line) goes out, and the redrawn line gets the prefix
        // again; "\r\n" is an ordinary line end.
        if core::mem::take(&mut c.cr_pending) && b != b'\n' {
            let _ = c.write_str("\r");
            c.line_start = true;
        }
        if b == b'\r' {
            c.cr_pending = true;
            continue;
        }
        if c.line_start && b != b'\n' {
            let _ = write!(c, "[{name}] ");
            c.line_start = false;
        }
        match b {
            b'\n' => {
                let _ = c.write_str("\n");
                c.line_start = true;
            }
            // Control characters a terminal would act on (other than tab,
            // backspace and escape for prompts) are shown as '?'.
            0x08 | 0x09 | 0x1b | 0x20..=0x7e => {
                let _ = c.put_raw(b);
            }
            0x80..=0xff => {
                let _ = c.put_raw(b);
            }
            _ => {
                let _ = c.write_str("?");
            }
        }
    }
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
