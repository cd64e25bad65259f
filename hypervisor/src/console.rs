//! The hypervisor's console: the machine's ns16550a UART (found in the DTB), or
//! the SBI firmware console until then. One lock serialises all harts' output.

use core::fmt::{self, Write};
use spin::Mutex;

struct Console {
    uart: Option<Uart>,
}

#[derive(Clone, Copy)]
struct Uart {
    base: usize,
    shift: u32,
}

const THR: usize = 0;
const LSR: usize = 5;
const LSR_THRE: u8 = 1 << 5;

impl Uart {
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

static CONSOLE: Mutex<Console> = Mutex::new(Console { uart: None });

/// Switches output to the UART at `base` (registers `1 << shift` bytes apart).
pub fn use_uart(base: u64, shift: u32) {
    CONSOLE.lock().uart = Some(Uart {
        base: base as usize,
        shift,
    });
}

/// Writes formatted text (used by the macros).
pub fn write_fmt(args: fmt::Arguments<'_>) {
    let _ = CONSOLE.lock().write_fmt(args);
}

/// Writes raw bytes (guest console output), turning `\n` into `\r\n`.
pub fn write_bytes(bytes: &[u8]) {
    let mut c = CONSOLE.lock();
    for chunk in bytes.utf8_chunks() {
        let _ = c.write_str(chunk.valid());
        if !chunk.invalid().is_empty() {
            let _ = c.write_str("?");
        }
    }
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
        $crate::console::write_fmt(format_args!("ferrovisor: {}\n", format_args!($($arg)*)))
    };
}
