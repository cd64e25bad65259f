//! `console`: abuse of the hypervisor's console through SBI DBCN. Every vCPU
//! writes `count` buffers of 4 KiB, cycling through payloads that would
//! amplify the output (`\rA…`, `a\n…`), drive the operator's terminal (cursor
//! moves, clear screen, OSC title, DCS, C1 controls, backspaces), forge
//! hypervisor lines (`ferrovisor: VM 'x' powered off` after `\n`, `\r`,
//! backspaces or a cursor move) and carry bytes >= 0x80 (valid and invalid
//! UTF-8, bidi overrides). Every payload is whole repetitions of its pattern
//! padded with `A`, so no escape sequence is left open at a buffer's end.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicUsize, Ordering};

use fv_guest_rt::{hart_id, println, sbi, MAX_HARTS};

/// Bytes per DBCN write.
pub const BUF: usize = 4096;

/// Patterns, each repeated to fill a buffer.
const PATTERNS: [&[u8]; 8] = [
    // A redraw storm: each `\r` used to re-print the VM's prefix.
    b"\rA",
    // Short lines: a prefix per two bytes.
    b"a\n",
    // Terminal control: cursor home, clear screen, erase line, cursor left,
    // OSC window title, DCS, save/restore cursor, full reset, C1 CSI (raw and
    // UTF-8 encoded), a colour.
    b"\x1b[H\x1b[2J\x1b[2K\x1b[99D\x1b]0;pwned\x07\x1bPq#0\x1b\\\x1b7\x1b8\x1bc\x9b2J\xc2\x9b2J\x1b[31mred\x1b[0m ",
    // Forged hypervisor lines after a newline, a carriage return, an erase.
    b"\nferrovisor: VM 'x' powered off\n\rferrovisor: VM 'x' powered off\n\x1b[2K\rferrovisor: VM 'x' powered off\n",
    // Forged lines over the prefix: backspaces, cursor to column 1.
    b"\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08ferrovisor: VM 'x' powered off\n\x1b[1Gferrovisor: VM 'x' powered off\n\x1b[80Dferrovisor: VM 'x' powered off\n",
    // Bytes >= 0x80: valid UTF-8, invalid UTF-8, a bidi override, C1 NEL.
    b"caf\xc3\xa9 \xff\xfe\x80\xc0\xaf \xe2\x80\xae:rosivorref \xc2\x85\xed\xa0\x80\n",
    // A partial line of redraws, then the forged line after a redraw.
    b"progress 1%\rprogress 2%\r\rferrovisor: VM 'x' powered off\r\n",
    // NUL, BEL and other C0 controls, DEL.
    b"\x00\x07\x0b\x0c\x0e\x0f\x1a\x7f\n",
];

/// One buffer per hart, in this VM's RAM (the hypervisor reads it through
/// the VM's G-stage table).
struct Buffers(UnsafeCell<[[u8; BUF]; MAX_HARTS]>);

// SAFETY: hart `h` only ever touches buffer `h`.
unsafe impl Sync for Buffers {}

static BUFFERS: Buffers = Buffers(UnsafeCell::new([[0; BUF]; MAX_HARTS]));

/// DBCN writes made (all vCPUs, this round).
static WRITES: AtomicUsize = AtomicUsize::new(0);
/// DBCN writes that did not return SUCCESS.
static REFUSED: AtomicUsize = AtomicUsize::new(0);

/// Fills `buf` with whole repetitions of `pattern`, padded with `A`.
fn fill(buf: &mut [u8; BUF], pattern: &[u8]) {
    buf.fill(b'A');
    if !pattern.is_empty() {
        for chunk in buf.chunks_exact_mut(pattern.len()) {
            chunk.copy_from_slice(pattern);
        }
    }
}

/// Resets the counters of a round.
pub fn reset_stats() {
    WRITES.store(0, Ordering::SeqCst);
    REFUSED.store(0, Ordering::SeqCst);
}

/// This vCPU's share: `count` writes of 4 KiB, cycling through the patterns.
pub fn body() {
    let h = hart_id();
    if h >= MAX_HARTS {
        return;
    }
    // SAFETY: buffer `h` belongs to this hart alone (see `Buffers`).
    let buf = unsafe { &mut (*BUFFERS.0.get())[h] };
    for i in 0..crate::count() {
        let pattern = PATTERNS.get((i + h) % PATTERNS.len()).copied();
        fill(buf, pattern.unwrap_or(b"A"));
        let r = sbi::dbcn_write(&buf[..]);
        WRITES.fetch_add(1, Ordering::Relaxed);
        if r.error != sbi::SUCCESS {
            REFUSED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Prints the `console` progress line (on a line of its own).
pub fn report(round: usize, vcpus: usize, finished: usize) {
    println!();
    println!(
        "INFO: hostile-test: phase console done: round {round}, {finished}/{vcpus} vCPUs, {} writes of {BUF} bytes, {} refused",
        WRITES.load(Ordering::SeqCst),
        REFUSED.load(Ordering::SeqCst)
    );
}
