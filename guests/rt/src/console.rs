//! Console output through SBI: whole lines with DBCN `console_write` when the
//! SBI implementation has DBCN (probed once), else legacy `console_putchar`.
//!
//! Output of one `print!` is buffered per line, and the console is held by one
//! hart at a time, so lines of different harts never interleave. A hart that
//! re-enters the console (a trap or panic while it prints) writes directly.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use crate::sbi;

const UNKNOWN: u8 = 0;
const DBCN: u8 = 1;
const LEGACY: u8 = 2;

static MODE: AtomicU8 = AtomicU8::new(UNKNOWN);
const NO_OWNER: usize = usize::MAX;
static OWNER: AtomicUsize = AtomicUsize::new(NO_OWNER);

const LINE: usize = 256;

fn mode() -> u8 {
    let m = MODE.load(Ordering::Relaxed);
    if m != UNKNOWN {
        return m;
    }
    let p = sbi::probe(sbi::EID_DBCN);
    let m = if p.error == sbi::SUCCESS && p.value != 0 {
        DBCN
    } else {
        LEGACY
    };
    MODE.store(m, Ordering::Relaxed);
    m
}

/// True if the console writes through SBI DBCN (probed on first use).
pub fn uses_dbcn() -> bool {
    mode() == DBCN
}

/// Writes `bytes` to the SBI console now (no buffering, no lock).
pub fn write_bytes(bytes: &[u8]) {
    if mode() == DBCN {
        let mut rest = bytes;
        let mut stalls = 0;
        while !rest.is_empty() {
            let r = sbi::dbcn_write(rest);
            if r.error != sbi::SUCCESS {
                break;
            }
            if r.value == 0 {
                // The console accepted nothing; give it a few more tries.
                stalls += 1;
                if stalls > 1000 {
                    break;
                }
                continue;
            }
            rest = rest.get(r.value..).unwrap_or(&[]);
        }
        if rest.is_empty() {
            return;
        }
        for &b in rest {
            sbi::legacy_putchar(b);
        }
    } else {
        for &b in bytes {
            sbi::legacy_putchar(b);
        }
    }
}

/// Line buffer: flushed at every `\n`, when full, and when dropped.
struct LineWriter {
    buf: [u8; LINE],
    len: usize,
}

impl LineWriter {
    const fn new() -> Self {
        LineWriter {
            buf: [0; LINE],
            len: 0,
        }
    }

    fn flush(&mut self) {
        if let Some(line) = self.buf.get(..self.len) {
            write_bytes(line);
        }
        self.len = 0;
    }
}

impl Write for LineWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &b in s.as_bytes() {
            if let Some(slot) = self.buf.get_mut(self.len) {
                *slot = b;
                self.len += 1;
            }
            if b == b'\n' || self.len == LINE {
                self.flush();
            }
        }
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Runs `f` holding the console (re-entrant on the same hart).
fn with_console<R>(f: impl FnOnce() -> R) -> R {
    let me = crate::hart_id();
    let reentered = OWNER.load(Ordering::Relaxed) == me;
    if !reentered {
        while OWNER
            .compare_exchange_weak(NO_OWNER, me, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            core::hint::spin_loop();
        }
    }
    let r = f();
    if !reentered {
        OWNER.store(NO_OWNER, Ordering::Release);
    }
    r
}

#[doc(hidden)]
pub fn _print(args: fmt::Arguments<'_>) {
    with_console(|| {
        let mut w = LineWriter::new();
        let _ = w.write_fmt(args);
    });
}

/// Prints to the SBI console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::console::_print(format_args!($($arg)*)) };
}

/// Prints a line to the SBI console.
#[macro_export]
macro_rules! println {
    () => { $crate::console::_print(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::console::_print(format_args!("{}\n", format_args!($($arg)*))) };
}
