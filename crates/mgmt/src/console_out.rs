//! Console output policy: what guest bytes may reach the operator's terminal,
//! and in which order and quantity.
//!
//! The pieces, from a guest's bytes to the machine's UART:
//!
//! * [`Sanitizer`] decodes a byte stream into [`Token`]s: printable ASCII,
//!   valid UTF-8 characters (C1 controls and bidi/invisible format characters
//!   become `?`, invalid UTF-8 U+FFFD), tab, backspace, `\r`, `\n` and SGR
//!   colour sequences (`ESC [ digits;… m`). Every other escape sequence (cursor
//!   moves, erase, OSC titles, DCS, …) and C0 control is dropped or shown as `?`.
//! * [`LineFormatter`] (one per VM) turns tokens into [`Record`]s in the VM's
//!   [`OutQueue`]: a line is queued when it ends (`\n`), when it is flushed (a
//!   prompt: the VM waits, or the line is stale) or when it reaches
//!   [`LINE_MAX`] bytes. A `\r` followed by more text starts the line over:
//!   text not yet queued is dropped (a redraw keeps only its final content),
//!   and if part of the line was already queued, the next record is a
//!   *redraw*. A record that used SGR ends with a reset (`ESC [ 0 m`).
//! * [`OutQueue`] is a bounded FIFO of records (`QUEUE_BYTES`); a record that
//!   does not fit is dropped and counted, and the next record carries the
//!   count (a *gap*).
//! * [`Transmitter`] owns the terminal: the hypervisor's own output (raw,
//!   first) and the VMs' queues, drained one record at a time, round-robin, so
//!   one chatty VM cannot starve the others. It writes only as much as the
//!   [`Tx`] takes (the UART's FIFO room) and at most a given budget per call:
//!   nobody waits for the UART while holding the console. It adds the
//!   `[<vm name>] ` prefix when a VM's text starts a terminal line, ends
//!   another VM's (or the hypervisor's) unfinished line first, re-prints the
//!   prefix after `\r` for a redraw, and lets a backspace through only over
//!   the VM's own characters of the current terminal line. A gap becomes a
//!   hypervisor line `ferrovisor: VM '<name>': <n> bytes of console output
//!   dropped`.
//!
//! So every terminal line starts with a VM's prefix or is the hypervisor's,
//! and no guest can move the cursor before its prefix, clear or retitle the
//! terminal, or make a line look like `ferrovisor: …`.

use alloc::boxed::Box;
use alloc::vec::Vec;

/// Longest line text held back before it is queued anyway.
pub const LINE_MAX: usize = 512;
/// Per-VM queue capacity, bytes (records with their headers).
pub const QUEUE_BYTES: usize = 4096;
/// Longest SGR parameter string let through (`ESC [` params `m`).
pub const SGR_MAX: usize = 32;
/// Bytes the transmitter may stage at once (one record and what it adds).
const STAGE: usize = 1024;
/// SGR reset appended to records that used colours.
const SGR_RESET: &[u8] = b"\x1b[0m";

/// One unit of sanitised output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Token<'a> {
    /// A printable character, UTF-8 encoded (ASCII: one byte).
    Char(&'a [u8]),
    /// Horizontal tab.
    Tab,
    /// Backspace.
    Backspace,
    /// Carriage return.
    CarriageReturn,
    /// Line feed.
    Newline,
    /// An SGR sequence's parameters (digits and `;`): `ESC [` params `m`.
    Sgr(&'a [u8]),
}

/// Decoder state of a [`Sanitizer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Plain text.
    Ground,
    /// Inside a UTF-8 sequence of `need` bytes, `have` so far.
    Utf8 { need: u8, have: u8 },
    /// After ESC.
    Esc,
    /// After `ESC` and intermediate bytes: until a final byte.
    EscIntermediate,
    /// In `ESC [`; `sgr` while it can still be an SGR sequence.
    Csi { sgr: bool },
    /// In an OSC/DCS/SOS/PM/APC string, until BEL or `ESC \`.
    Str,
    /// ESC inside such a string.
    StrEsc,
}

/// Streaming decoder of guest console bytes into [`Token`]s.
#[derive(Clone, Debug)]
pub struct Sanitizer {
    state: State,
    buf: [u8; SGR_MAX],
    len: usize,
}

impl Default for Sanitizer {
    fn default() -> Self {
        Self::new()
    }
}

/// A replacement for an unprintable character.
const QUESTION: &[u8] = b"?";
/// U+FFFD, for invalid UTF-8.
const REPLACEMENT: &[u8] = "\u{fffd}".as_bytes();

/// Whether a decoded character must not reach a terminal: C0/C1 controls and
/// invisible format characters (bidi embeddings, overrides and isolates, zero
/// width characters, the BOM), which could reorder or hide what is shown.
pub fn is_hidden_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{206f}'
                | '\u{feff}'
                | '\u{fff9}'..='\u{fffb}'
        )
}

impl Sanitizer {
    /// A decoder in its initial state.
    pub const fn new() -> Self {
        Sanitizer {
            state: State::Ground,
            buf: [0; SGR_MAX],
            len: 0,
        }
    }

    /// Decodes `b`, handing any resulting tokens to `out`.
    pub fn feed(&mut self, b: u8, out: &mut dyn FnMut(Token<'_>)) {
        match self.state {
            State::Ground => self.ground(b, out),
            State::Utf8 { need, have } => {
                if b & 0xc0 != 0x80 {
                    // Sequence cut short.
                    out(Token::Char(REPLACEMENT));
                    self.state = State::Ground;
                    self.ground(b, out);
                    return;
                }
                if let Some(slot) = self.buf.get_mut(usize::from(have)) {
                    *slot = b;
                }
                let have = have + 1;
                if have < need {
                    self.state = State::Utf8 { need, have };
                    return;
                }
                self.state = State::Ground;
                let bytes = self.buf.get(..usize::from(need)).unwrap_or(&[]);
                match core::str::from_utf8(bytes)
                    .ok()
                    .and_then(|s| s.chars().next())
                {
                    Some(c) if is_hidden_char(c) => out(Token::Char(QUESTION)),
                    Some(_) => out(Token::Char(bytes)),
                    None => out(Token::Char(REPLACEMENT)),
                }
            }
            State::Esc => match b {
                b'[' => {
                    self.len = 0;
                    self.state = State::Csi { sgr: true };
                }
                b']' | b'P' | b'X' | b'^' | b'_' => self.state = State::Str,
                0x20..=0x2f => self.state = State::EscIntermediate,
                0x30..=0x7e => self.state = State::Ground,
                _ => {
                    self.state = State::Ground;
                    self.ground(b, out);
                }
            },
            State::EscIntermediate => match b {
                0x20..=0x2f => {}
                0x30..=0x7e => self.state = State::Ground,
                _ => {
                    self.state = State::Ground;
                    self.ground(b, out);
                }
            },
            State::Csi { sgr } => match b {
                b'0'..=b'9' | b';' => match self.buf.get_mut(self.len) {
                    Some(slot) if sgr => {
                        *slot = b;
                        self.len += 1;
                    }
                    _ => self.state = State::Csi { sgr: false },
                },
                // Other parameter and intermediate bytes: not an SGR we pass.
                0x20..=0x3f => self.state = State::Csi { sgr: false },
                0x40..=0x7e => {
                    self.state = State::Ground;
                    if sgr && b == b'm' {
                        out(Token::Sgr(self.buf.get(..self.len).unwrap_or(&[])));
                    }
                }
                _ => {
                    self.state = State::Ground;
                    self.ground(b, out);
                }
            },
            State::Str => match b {
                0x07 => self.state = State::Ground,
                0x1b => self.state = State::StrEsc,
                // A line end ends an unterminated string (so one stray
                // `ESC ]` cannot swallow the rest of a guest's output).
                b'\n' => {
                    self.state = State::Ground;
                    out(Token::Newline);
                }
                _ => {}
            },
            State::StrEsc => match b {
                b'\\' => self.state = State::Ground,
                _ => {
                    self.state = State::Esc;
                    self.feed(b, out);
                }
            },
        }
    }

    fn ground(&mut self, b: u8, out: &mut dyn FnMut(Token<'_>)) {
        match b {
            b'\n' => out(Token::Newline),
            b'\r' => out(Token::CarriageReturn),
            b'\t' => out(Token::Tab),
            0x08 => out(Token::Backspace),
            0x1b => self.state = State::Esc,
            0x20..=0x7e => {
                self.buf[0] = b;
                out(Token::Char(self.buf.get(..1).unwrap_or(QUESTION)));
            }
            0x00..=0x1f | 0x7f => out(Token::Char(QUESTION)),
            0xc2..=0xf4 => {
                self.buf[0] = b;
                let need = match b {
                    0xc2..=0xdf => 2,
                    0xe0..=0xef => 3,
                    _ => 4,
                };
                self.state = State::Utf8 { need, have: 1 };
            }
            _ => out(Token::Char(REPLACEMENT)),
        }
    }

    /// Ends the input: an unfinished UTF-8 sequence becomes U+FFFD, an
    /// unfinished escape sequence is dropped.
    pub fn finish(&mut self, out: &mut dyn FnMut(Token<'_>)) {
        if matches!(self.state, State::Utf8 { .. }) {
            out(Token::Char(REPLACEMENT));
        }
        self.state = State::Ground;
    }
}

/// Writes bytes from a guest or the log for a terminal, as one line: valid
/// UTF-8 as is, tab kept, `\r`, `\n` and escape sequences dropped, other
/// control characters (C0, DEL, C1, backspace) and invisible format
/// characters as `?`, invalid UTF-8 as U+FFFD.
pub fn write_sanitized(
    out: &mut dyn core::fmt::Write,
    bytes: impl Iterator<Item = u8>,
) -> core::fmt::Result {
    let mut s = Sanitizer::new();
    let mut r = Ok(());
    let mut emit = |t: Token<'_>| {
        let piece = match t {
            Token::Char(c) => core::str::from_utf8(c).unwrap_or("\u{fffd}"),
            Token::Tab => "\t",
            Token::Backspace => "?",
            Token::CarriageReturn | Token::Newline | Token::Sgr(_) => "",
        };
        if r.is_ok() {
            r = out.write_str(piece);
        }
    };
    for b in bytes {
        s.feed(b, &mut emit);
    }
    s.finish(&mut emit);
    r
}

/// How a record relates to the VM's previous one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKind {
    /// Starts a new line.
    Fresh,
    /// Continues the line of the previous record.
    Continue,
    /// Redraws the line of the previous record from its start (after `\r`).
    Redraw,
}

/// A piece of one VM's output, as queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// How it relates to the previous record.
    pub kind: RecordKind,
    /// Whether the line ends after it.
    pub end: bool,
    /// Bytes of output dropped just before it (queue full).
    pub gap: u32,
    /// Sanitised text: characters, tabs, backspaces, SGR sequences.
    pub text: &'a [u8],
}

/// Record header: flags, length (2 bytes, little endian), gap (4 bytes).
const HEADER: usize = 7;
/// Queue bytes one guest byte can cost at most (see [`VmOutput::room`]): a
/// 3-byte replacement character, or a line end's record header and colour
/// reset.
pub const ROOM_FACTOR: usize = 16;
const FLAG_END: u8 = 1 << 2;

/// A fixed-capacity FIFO of bytes.
#[derive(Clone, Debug)]
struct Fifo<S> {
    storage: S,
    head: usize,
    len: usize,
}

impl<S: AsRef<[u8]> + AsMut<[u8]>> Fifo<S> {
    const fn over(storage: S) -> Self {
        Fifo {
            storage,
            head: 0,
            len: 0,
        }
    }

    fn capacity(&self) -> usize {
        self.storage.as_ref().len()
    }

    fn free(&self) -> usize {
        self.capacity() - self.len
    }

    /// Appends all of `bytes` or nothing.
    fn push(&mut self, bytes: &[u8]) -> bool {
        if bytes.len() > self.free() {
            return false;
        }
        let cap = self.capacity();
        let mut at = (self.head + self.len) % cap.max(1);
        let storage = self.storage.as_mut();
        for &b in bytes {
            if let Some(slot) = storage.get_mut(at) {
                *slot = b;
            }
            at = (at + 1) % cap;
        }
        self.len += bytes.len();
        true
    }

    fn peek(&self, i: usize) -> Option<u8> {
        if i >= self.len {
            return None;
        }
        let cap = self.capacity();
        self.storage.as_ref().get((self.head + i) % cap).copied()
    }

    /// Removes up to `n` bytes from the front, handing each to `f`.
    fn pop(&mut self, n: usize, f: &mut dyn FnMut(u8)) {
        let n = n.min(self.len);
        let cap = self.capacity();
        for _ in 0..n {
            if let Some(&b) = self.storage.as_ref().get(self.head) {
                f(b);
            }
            self.head = (self.head + 1) % cap;
        }
        self.len -= n;
    }
}

/// A VM's bounded queue of [`Record`]s.
#[derive(Clone, Debug)]
pub struct OutQueue {
    fifo: Fifo<Box<[u8]>>,
    /// Bytes dropped since the last record queued.
    gap: u32,
    /// Bytes dropped ever.
    dropped: u64,
}

/// The queue's storage could not be allocated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueError {
    /// The heap has no room for it.
    OutOfMemory,
}

impl OutQueue {
    /// An empty queue of `capacity` bytes, allocated now and never again.
    pub fn with_capacity(capacity: usize) -> Result<Self, QueueError> {
        let mut v = Vec::new();
        v.try_reserve_exact(capacity)
            .map_err(|_| QueueError::OutOfMemory)?;
        v.resize(capacity, 0);
        Ok(OutQueue {
            fifo: Fifo::over(v.into_boxed_slice()),
            gap: 0,
            dropped: 0,
        })
    }

    /// Queues a record; if it does not fit, drops it and counts its text.
    pub fn push(&mut self, kind: RecordKind, end: bool, text: &[u8]) -> bool {
        let fits = HEADER + text.len() <= self.fifo.free() && text.len() <= usize::from(u16::MAX);
        if !fits {
            let n = u32::try_from(text.len()).unwrap_or(u32::MAX).max(1);
            self.gap = self.gap.saturating_add(n);
            self.dropped = self.dropped.saturating_add(u64::from(n));
            return false;
        }
        let kind_bits = match kind {
            RecordKind::Fresh => 0,
            RecordKind::Continue => 1,
            RecordKind::Redraw => 2,
        };
        let flags = kind_bits | if end { FLAG_END } else { 0 };
        let len = (text.len() as u16).to_le_bytes();
        let gap = core::mem::take(&mut self.gap).to_le_bytes();
        let header = [flags, len[0], len[1], gap[0], gap[1], gap[2], gap[3]];
        self.fifo.push(&header) && self.fifo.push(text)
    }

    /// Whether nothing is queued (a gap may still be pending).
    pub fn is_empty(&self) -> bool {
        self.fifo.len == 0
    }

    /// Bytes of output dropped ever (queue full).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Bytes queued.
    pub fn len(&self) -> usize {
        self.fifo.len
    }

    /// Takes the oldest record, handing it to `f` (its text in one slice,
    /// copied to `scratch`).
    fn pop<R>(&mut self, scratch: &mut Vec<u8>, f: impl FnOnce(Record<'_>) -> R) -> Option<R> {
        if self.fifo.len < HEADER {
            return None;
        }
        let mut h = [0u8; HEADER];
        for (i, slot) in h.iter_mut().enumerate() {
            *slot = self.fifo.peek(i)?;
        }
        let len = usize::from(u16::from_le_bytes([h[1], h[2]]));
        let gap = u32::from_le_bytes([h[3], h[4], h[5], h[6]]);
        self.fifo.pop(HEADER, &mut |_| {});
        scratch.clear();
        self.fifo.pop(len, &mut |b| scratch.push(b));
        let kind = match h[0] & 3 {
            1 => RecordKind::Continue,
            2 => RecordKind::Redraw,
            _ => RecordKind::Fresh,
        };
        Some(f(Record {
            kind,
            end: h[0] & FLAG_END != 0,
            gap,
            text: scratch,
        }))
    }
}

/// One VM's line in the making: sanitises its bytes and queues records.
#[derive(Clone, Debug)]
pub struct LineFormatter {
    sanitizer: Sanitizer,
    buf: Vec<u8>,
    /// A `\r` came and nothing after it yet.
    cr: bool,
    /// Part of the current line is already queued.
    open: bool,
    /// The next record redraws the line.
    redraw: bool,
    /// `buf` holds an SGR sequence.
    sgr: bool,
    /// Host time at which `buf` got its first byte.
    since: u64,
}

impl Default for LineFormatter {
    fn default() -> Self {
        Self::new()
    }
}

impl LineFormatter {
    /// An empty line (allocates nothing until the first byte).
    pub const fn new() -> Self {
        LineFormatter {
            sanitizer: Sanitizer::new(),
            buf: Vec::new(),
            cr: false,
            open: false,
            redraw: false,
            sgr: false,
            since: 0,
        }
    }

    /// Takes guest bytes written at time `now`, queuing whole records in `q`.
    /// Work is linear in `bytes.len()`.
    pub fn feed(&mut self, bytes: &[u8], now: u64, q: &mut OutQueue) {
        let mut s = core::mem::take(&mut self.sanitizer);
        for &b in bytes {
            s.feed(b, &mut |t| self.token(t, now, q));
        }
        self.sanitizer = s;
    }

    fn token(&mut self, t: Token<'_>, now: u64, q: &mut OutQueue) {
        match t {
            Token::Newline => {
                self.cr = false;
                self.queue(true, q);
                return;
            }
            Token::CarriageReturn => {
                self.cr = true;
                return;
            }
            _ => {}
        }
        if core::mem::take(&mut self.cr) {
            // The line starts over: what was not queued yet is overwritten.
            self.buf.clear();
            self.sgr = false;
            if self.open {
                self.redraw = true;
            }
        }
        if self.buf.is_empty() {
            self.since = now;
            if self.buf.capacity() == 0
                && self.buf.try_reserve_exact(LINE_MAX + SGR_MAX + 8).is_err()
            {
                return;
            }
        }
        match t {
            Token::Char(c) => self.buf.extend_from_slice(c),
            Token::Tab => self.buf.push(b'\t'),
            Token::Backspace => self.buf.push(0x08),
            Token::Sgr(p) => {
                self.buf.extend_from_slice(b"\x1b[");
                self.buf.extend_from_slice(p);
                self.buf.push(b'm');
                self.sgr = true;
            }
            Token::Newline | Token::CarriageReturn => {}
        }
        if self.buf.len() >= LINE_MAX {
            self.queue(false, q);
        }
    }

    /// Queues the buffered text as a record (ending the line if `end`).
    fn queue(&mut self, end: bool, q: &mut OutQueue) {
        let kind = if self.redraw {
            RecordKind::Redraw
        } else if self.open {
            RecordKind::Continue
        } else {
            RecordKind::Fresh
        };
        if self.sgr {
            self.buf.extend_from_slice(SGR_RESET);
        }
        q.push(kind, end, &self.buf);
        self.buf.clear();
        self.sgr = false;
        self.redraw = false;
        self.open = !end;
    }

    /// Queues an unfinished line now (a prompt, an echo).
    pub fn flush(&mut self, q: &mut OutQueue) {
        if !self.buf.is_empty() {
            self.queue(false, q);
        }
    }

    /// Whether text has waited in the line for more than `limit` since its
    /// first byte.
    pub fn is_stale(&self, now: u64, limit: u64) -> bool {
        !self.buf.is_empty() && now.saturating_sub(self.since) > limit
    }

    /// Whether text is waiting in the line.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// Where the machine's console takes bytes.
pub trait Tx {
    /// Writes a prefix of `bytes` without waiting; returns how many bytes
    /// were taken (0 while the UART has no room).
    fn write(&mut self, bytes: &[u8]) -> usize;
}

/// One VM's output: its prefix, line and queue.
#[derive(Debug)]
pub struct VmOutput {
    prefix: Vec<u8>,
    /// The line in the making.
    pub line: LineFormatter,
    /// Records waiting for the terminal.
    pub queue: OutQueue,
}

impl VmOutput {
    /// Output of VM `name`, with a queue of `capacity` bytes.
    pub fn new(name: &str, capacity: usize) -> Result<Self, QueueError> {
        let mut prefix = Vec::new();
        prefix
            .try_reserve_exact(name.len() + 3)
            .map_err(|_| QueueError::OutOfMemory)?;
        prefix.push(b'[');
        prefix.extend_from_slice(name.as_bytes());
        prefix.extend_from_slice(b"] ");
        Ok(VmOutput {
            prefix,
            line: LineFormatter::new(),
            queue: OutQueue::with_capacity(capacity)?,
        })
    }

    /// Takes guest bytes (see [`LineFormatter::feed`]).
    pub fn write(&mut self, bytes: &[u8], now: u64) {
        self.line.feed(bytes, now, &mut self.queue);
    }

    /// Queues the unfinished line.
    pub fn flush(&mut self) {
        self.line.flush(&mut self.queue);
    }

    /// How many bytes of guest output [`write`](Self::write) surely queues
    /// now without dropping any, whatever they are. Counted for the worst
    /// case: the line in the making queued whole, then every byte a
    /// replacement character or a line end with its record header
    /// ([`ROOM_FACTOR`] queue bytes per byte). A device that can hold the
    /// guest back (virtio-console) takes only this much, so its output is
    /// never dropped.
    pub fn room(&self) -> usize {
        self.queue
            .fifo
            .free()
            .saturating_sub(LINE_MAX + SGR_MAX + 8 + HEADER + SGR_RESET.len())
            / ROOM_FACTOR
    }

    /// The VM's name.
    pub fn name(&self) -> &[u8] {
        let end = self.prefix.len().saturating_sub(2);
        self.prefix.get(1..end).unwrap_or(&[])
    }
}

/// Who wrote the terminal's current (unfinished) line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Owner {
    /// The cursor is at the start of a line.
    None,
    /// The hypervisor.
    Hypervisor,
    /// VM `i`.
    Vm(usize),
}

/// The machine's console: the hypervisor's output and the VMs', merged into
/// whole lines for one terminal (see the module documentation).
#[derive(Debug)]
pub struct Transmitter<S> {
    hv: Fifo<S>,
    vms: Vec<Option<VmOutput>>,
    next: usize,
    stage: [u8; STAGE],
    stage_len: usize,
    stage_pos: usize,
    owner: Owner,
    /// Characters the owning VM has on the terminal line (for backspaces).
    cols: usize,
    scratch: Vec<u8>,
}

impl<S: AsRef<[u8]> + AsMut<[u8]>> Transmitter<S> {
    /// A console whose hypervisor output waits in `storage` (its length is
    /// the capacity).
    pub const fn new(storage: S) -> Self {
        Transmitter {
            hv: Fifo::over(storage),
            vms: Vec::new(),
            next: 0,
            stage: [0; STAGE],
            stage_len: 0,
            stage_pos: 0,
            owner: Owner::None,
            cols: 0,
            scratch: Vec::new(),
        }
    }

    /// VM `id`'s output, created (named `name`, queue of [`QUEUE_BYTES`]) on
    /// first use; `None` if there is no memory for it.
    pub fn vm(&mut self, id: usize, name: &str) -> Option<&mut VmOutput> {
        if self.vms.len() <= id {
            self.vms.try_reserve(id + 1 - self.vms.len()).ok()?;
            self.vms.resize_with(id + 1, || None);
        }
        let slot = self.vms.get_mut(id)?;
        if slot.is_none() {
            *slot = Some(VmOutput::new(name, QUEUE_BYTES).ok()?);
        }
        slot.as_mut()
    }

    /// VM `id`'s output, if it has any.
    pub fn existing_vm(&mut self, id: usize) -> Option<&mut VmOutput> {
        self.vms.get_mut(id)?.as_mut()
    }

    /// Every VM's output.
    pub fn vms_mut(&mut self) -> impl Iterator<Item = &mut VmOutput> {
        self.vms.iter_mut().flatten()
    }

    /// Queues hypervisor output (all of it or nothing; `\n` becomes `\r\n`
    /// on the terminal). False when it does not fit: drain and retry.
    pub fn hypervisor_write(&mut self, bytes: &[u8]) -> bool {
        self.hv.push(bytes)
    }

    /// Free room for hypervisor output.
    pub fn hypervisor_room(&self) -> usize {
        self.hv.free()
    }

    /// Whether anything waits to be written.
    pub fn pending(&self) -> bool {
        self.stage_pos < self.stage_len
            || self.hv.len > 0
            || self
                .vms
                .iter()
                .flatten()
                .any(|v| !v.queue.is_empty() || v.queue.gap > 0)
    }

    /// Writes up to `budget` bytes to `tx`, as long as it takes them. Returns
    /// whether output is still pending.
    pub fn pump(&mut self, tx: &mut dyn Tx, mut budget: usize) -> bool {
        while budget > 0 {
            if self.stage_pos >= self.stage_len && !self.stage_next() {
                return false;
            }
            let end = self.stage_len.min(self.stage_pos.saturating_add(budget));
            let chunk = self.stage.get(self.stage_pos..end).unwrap_or(&[]);
            let n = tx.write(chunk).min(chunk.len());
            if n == 0 {
                return true;
            }
            self.stage_pos += n;
            budget -= n;
        }
        self.pending()
    }

    /// Writes the staged bytes to `tx`, waiting for room (busy-wait).
    fn write_stage_blocking(&mut self, tx: &mut dyn Tx) {
        while self.stage_pos < self.stage_len {
            let chunk = self
                .stage
                .get(self.stage_pos..self.stage_len)
                .unwrap_or(&[]);
            match tx.write(chunk).min(chunk.len()) {
                0 => core::hint::spin_loop(),
                n => self.stage_pos += n,
            }
        }
    }

    /// Queues all of `bytes` as hypervisor output, first writing (and
    /// waiting for the UART) as much older hypervisor output as it takes to
    /// make room: the hypervisor's output is never dropped. Only the
    /// hypervisor's own output waits here, never a VM's.
    pub fn hypervisor_write_all(&mut self, tx: &mut dyn Tx, bytes: &[u8]) {
        let cap = self.hv.capacity().max(1);
        for piece in bytes.chunks(cap) {
            while self.hv.free() < piece.len() {
                self.write_stage_blocking(tx);
                if self.hv.len == 0 {
                    break;
                }
                self.stage_hypervisor();
            }
            self.hv.push(piece);
        }
    }

    /// Writes everything VM `id` has queued (after what is staged and the
    /// hypervisor's output), waiting for the UART: so that a line the
    /// hypervisor writes about the VM comes after its last output.
    pub fn drain_vm(&mut self, tx: &mut dyn Tx, id: usize) {
        loop {
            self.write_stage_blocking(tx);
            self.stage_len = 0;
            self.stage_pos = 0;
            if self.hv.len > 0 {
                self.stage_hypervisor();
            } else if !self.stage_vm(id) {
                return;
            }
        }
    }

    /// Writes everything (staged, hypervisor, every VM's queue), waiting for
    /// the UART: before the machine powers off.
    pub fn drain_all(&mut self, tx: &mut dyn Tx) {
        loop {
            self.write_stage_blocking(tx);
            if !self.stage_next() {
                return;
            }
        }
    }

    fn put(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if let Some(slot) = self.stage.get_mut(self.stage_len) {
                *slot = b;
                self.stage_len += 1;
            }
        }
    }

    /// Ends an unfinished terminal line.
    fn close_line(&mut self) {
        if self.owner != Owner::None {
            self.put(b"\r\n");
            self.owner = Owner::None;
        }
    }

    /// Stages the next piece of output: hypervisor output first, then one
    /// record of the next VM in turn. False if nothing waits.
    fn stage_next(&mut self) -> bool {
        self.stage_len = 0;
        self.stage_pos = 0;
        if self.hv.len > 0 {
            self.stage_hypervisor();
            return true;
        }
        let n = self.vms.len();
        for k in 0..n {
            let i = (self.next + k) % n;
            if self.stage_vm(i) {
                self.next = i + 1;
                return true;
            }
        }
        false
    }

    /// Stages hypervisor output: up to a line end, at most half the stage.
    fn stage_hypervisor(&mut self) {
        self.stage_len = 0;
        self.stage_pos = 0;
        {
            if matches!(self.owner, Owner::Vm(_)) {
                self.close_line();
            }
            // Up to a line end, at most half the stage (`\n` doubles).
            let mut n = 0;
            while n < STAGE / 2 - 2 {
                let Some(b) = self.hv.peek(n) else { break };
                n += 1;
                if b == b'\n' {
                    break;
                }
            }
            let mut tmp = [0u8; STAGE / 2];
            let mut k = 0;
            self.hv.pop(n, &mut |b| {
                if let Some(slot) = tmp.get_mut(k) {
                    *slot = b;
                    k += 1;
                }
            });
            for &b in tmp.get(..k).unwrap_or(&[]) {
                if b == b'\n' {
                    self.put(b"\r\n");
                    self.owner = Owner::None;
                } else {
                    self.put(&[b]);
                    self.owner = Owner::Hypervisor;
                }
            }
        }
    }

    /// Stages VM `i`'s next record (or its pending gap notice).
    fn stage_vm(&mut self, i: usize) -> bool {
        let mut scratch = core::mem::take(&mut self.scratch);
        if scratch.capacity() == 0 && scratch.try_reserve_exact(STAGE).is_err() {
            return false;
        }
        let Some(Some(vm)) = self.vms.get_mut(i) else {
            self.scratch = scratch;
            return false;
        };
        let mut prefix = [0u8; 80];
        let plen = vm.prefix.len().min(prefix.len());
        prefix[..plen].copy_from_slice(vm.prefix.get(..plen).unwrap_or(&[]));
        let popped = vm.queue.pop(&mut scratch, |r| (r.kind, r.end, r.gap));
        let (kind, end, gap, tail_gap) = match popped {
            Some((k, e, g)) => (k, e, g, 0),
            None if vm.queue.gap > 0 => (
                RecordKind::Fresh,
                false,
                0,
                core::mem::take(&mut vm.queue.gap),
            ),
            None => {
                self.scratch = scratch;
                return false;
            }
        };
        let prefix = prefix.get(..plen).unwrap_or(&[]);
        for g in [gap, tail_gap] {
            if g > 0 {
                self.close_line();
                self.put(b"ferrovisor: VM '");
                self.put(prefix.get(1..plen.saturating_sub(2)).unwrap_or(&[]));
                self.put(b"': ");
                let mut digits = [0u8; 10];
                let mut d = digits.len();
                let mut v = g;
                loop {
                    d -= 1;
                    digits[d] = b'0' + (v % 10) as u8;
                    v /= 10;
                    if v == 0 {
                        break;
                    }
                }
                self.put(digits.get(d..).unwrap_or(&[]));
                self.put(b" bytes of console output dropped (queue full)\r\n");
            }
        }
        if tail_gap > 0 {
            self.scratch = scratch;
            return true;
        }
        let ours = self.owner == Owner::Vm(i);
        match (ours, kind) {
            (true, RecordKind::Continue) => {}
            (true, RecordKind::Redraw) if !scratch.is_empty() => {
                self.put(b"\r");
                self.put(prefix);
                self.cols = 0;
            }
            (true, RecordKind::Redraw) => {}
            _ => {
                if !scratch.is_empty() {
                    self.close_line();
                    self.put(prefix);
                    self.owner = Owner::Vm(i);
                    self.cols = 0;
                } else if end && kind == RecordKind::Fresh {
                    // An empty line: no prefix.
                    self.close_line();
                    self.put(b"\r\n");
                }
            }
        }
        // The text; backspaces only over this VM's own characters.
        let mut in_sgr = false;
        for &b in scratch.iter() {
            if in_sgr {
                in_sgr = b != b'm';
            } else if b == 0x1b {
                in_sgr = true;
            } else if b == 0x08 {
                if self.cols == 0 {
                    continue;
                }
                self.cols -= 1;
            } else if (0x20..0x7f).contains(&b) {
                self.cols += 1;
            }
            self.put(&[b]);
        }
        if end && self.owner == Owner::Vm(i) {
            self.put(b"\r\n");
            self.owner = Owner::None;
        }
        self.scratch = scratch;
        true
    }
}

/// What a terminal shows of one line of console output (without its line
/// end): `\r` returns to column 0, backspace moves one column left (never
/// past column 0), tab to the next multiple of 8, escape sequences are taken
/// for SGR (up to `m`) and show nothing; any other character overwrites the
/// cell under the cursor. Trailing blanks are left out. A model for checking
/// what the console emits (tests).
pub fn render_line(line: &str) -> alloc::string::String {
    let mut cells: Vec<char> = Vec::new();
    let mut col = 0usize;
    let mut chars = line.chars();
    while let Some(ch) = chars.next() {
        match ch {
            '\r' => col = 0,
            '\u{8}' => col = col.saturating_sub(1),
            '\t' => col = (col / 8 + 1) * 8,
            '\u{1b}' => {
                for d in chars.by_ref() {
                    if d == 'm' {
                        break;
                    }
                }
            }
            _ => {
                if cells.len() <= col {
                    cells.resize(col + 1, ' ');
                }
                if let Some(cell) = cells.get_mut(col) {
                    *cell = ch;
                }
                col += 1;
            }
        }
    }
    let mut s: alloc::string::String = cells.into_iter().collect();
    s.truncate(s.trim_end().len());
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;
    use alloc::string::String;
    use proptest::prelude::*;

    /// A UART that takes `room` bytes per call (0: none) and keeps them all.
    struct Sink {
        out: Vec<u8>,
        room: usize,
    }

    impl Tx for Sink {
        fn write(&mut self, bytes: &[u8]) -> usize {
            let n = bytes.len().min(self.room);
            self.out.extend_from_slice(&bytes[..n]);
            n
        }
    }

    fn sink() -> Sink {
        Sink {
            out: Vec::new(),
            room: 16,
        }
    }

    type Console = Transmitter<[u8; 4096]>;

    fn console() -> Console {
        Transmitter::new([0; 4096])
    }

    /// Writes `bytes` as VM `id` (`name`), flushes its line, drains everything.
    fn run(c: &mut Console, id: usize, name: &str, bytes: &[u8]) -> String {
        let vm = c.vm(id, name).unwrap();
        vm.write(bytes, 0);
        vm.flush();
        drain(c)
    }

    fn drain(c: &mut Console) -> String {
        let mut s = sink();
        while c.pump(&mut s, 64) {}
        String::from_utf8(s.out).unwrap()
    }

    /// The terminal lines of `out`, as a terminal shows them.
    fn render(out: &str) -> Vec<String> {
        out.split("\r\n").map(render_line).collect()
    }

    proptest! {
        /// Whatever the guest writes, up to `room()` bytes at a time are
        /// queued without a byte dropped (the terminal never drains here).
        #[test]
        fn room_is_never_exceeded(chunks in prop::collection::vec(
            prop::collection::vec(prop_oneof![
                Just(b'\n'), Just(b'\r'), Just(0x1b), Just(b'['), Just(b'm'), Just(0xff),
                Just(0x07), Just(b'\t'), any::<u8>()
            ], 0..300), 1..40)) {
            let mut v = VmOutput::new("vm", QUEUE_BYTES).unwrap();
            for c in chunks {
                let n = c.len().min(v.room());
                v.write(&c[..n], 0);
                prop_assert_eq!(v.queue.dropped(), 0);
            }
            v.flush();
            prop_assert_eq!(v.queue.dropped(), 0);
        }
    }

    #[test]
    fn room_shrinks_as_the_queue_fills() {
        let mut v = VmOutput::new("vm", QUEUE_BYTES).unwrap();
        let empty = v.room();
        assert_eq!(
            empty,
            (QUEUE_BYTES - LINE_MAX - SGR_MAX - 8 - HEADER - SGR_RESET.len()) / ROOM_FACTOR
        );
        v.write(b"0123456789\n", 0);
        assert!(v.room() < empty);
        // Fill it up: room reaches 0 before anything is dropped.
        while v.room() > 0 {
            let mut chunk = [b'x'; 41];
            let n = v.room().min(chunk.len());
            chunk[n - 1] = b'\n';
            v.write(&chunk[..n], 0);
        }
        assert_eq!(v.queue.dropped(), 0);
    }

    #[test]
    fn lines_get_the_prefix_once() {
        let mut c = console();
        assert_eq!(
            run(&mut c, 0, "a", b"hello\r\nworld\n"),
            "[a] hello\r\n[a] world\r\n"
        );
        // Empty lines carry no prefix.
        assert_eq!(run(&mut c, 0, "a", b"\n\nx\n"), "\r\n\r\n[a] x\r\n");
    }

    #[test]
    fn carriage_returns_collapse() {
        let mut c = console();
        let mut storm = Vec::new();
        for _ in 0..2048 {
            storm.extend_from_slice(b"\rA");
        }
        // 4 KiB of redraws: one line, one prefix.
        assert_eq!(run(&mut c, 0, "vm", &storm), "[vm] A");
        // A redraw of an already printed prompt re-prints the prefix once.
        let out = run(&mut c, 0, "vm", b"\r\rprogress 2%\rprogress 3%\n");
        assert_eq!(out, "\r[vm] progress 3%\r\n");
        assert_eq!(render(&out), ["[vm] progress 3%", ""]);
    }

    #[test]
    fn partial_lines_continue_or_break() {
        let mut c = console();
        assert_eq!(run(&mut c, 0, "a", b"guest:~# "), "[a] guest:~# ");
        assert_eq!(run(&mut c, 0, "a", b"ls"), "ls");
        // Another VM's line ends the open one; the rest gets a new prefix.
        assert_eq!(run(&mut c, 1, "b", b"hi\n"), "\r\n[b] hi\r\n");
        assert_eq!(run(&mut c, 0, "a", b"\r\n"), "");
        assert_eq!(run(&mut c, 0, "a", b"x"), "[a] x");
        // The hypervisor's lines too.
        assert!(c.hypervisor_write(b"ferrovisor: hello\n"));
        assert_eq!(drain(&mut c), "\r\nferrovisor: hello\r\n");
    }

    #[test]
    fn backspaces_stay_within_the_guests_text() {
        let mut c = console();
        assert_eq!(run(&mut c, 0, "a", b"ab"), "[a] ab");
        // The shell's echo of a typed backspace erases the guest's own text;
        // beyond it, backspaces are dropped.
        let out = run(
            &mut c,
            0,
            "a",
            b"\x08 \x08\x08\x08\x08\x08\x08\x08\x08ferrovisor: x\n",
        );
        assert_eq!(render(&format!("[a] ab{out}"))[0], "[a] ferrovisor: x");
        // After another VM's line, backspaces cannot reach the new prefix.
        run(&mut c, 0, "a", b"abc");
        run(&mut c, 1, "b", b"x\n");
        let out = run(&mut c, 0, "a", b"\x08\x08\x08\x08\x08\x08ferrovisor: y\n");
        assert_eq!(render(&out), ["[a] ferrovisor: y", ""]);
    }

    #[test]
    fn escapes_are_dropped_but_colours() {
        let mut c = console();
        let out = run(
            &mut c,
            0,
            "a",
            b"\x1b[H\x1b[2J\x1b[1Gx\x1b]0;title\x07\x1bPq\x1b\\\x1b7\x1bc\x1b[?25l\x1b[31mred\x1b[0m\x1b[1;32\n",
        );
        assert_eq!(out, "[a] x\x1b[31mred\x1b[0m\x1b[0m\r\n");
        // An unterminated OSC string ends at the line end.
        assert_eq!(
            run(&mut c, 0, "a", b"\x1b]0;never ends\nnext\n"),
            "\r\n[a] next\r\n"
        );
    }

    #[test]
    fn high_bytes() {
        let mut c = console();
        let out = run(
            &mut c,
            0,
            "a",
            "caf\u{e9} \u{202e}x\u{85}\u{200b}".as_bytes(),
        );
        assert_eq!(out, "[a] caf\u{e9} ?x??");
        let out = run(
            &mut c,
            0,
            "a",
            b"\n\xff\x9b2J\xc0\xaf\xed\xa0\x80\xe2\x82\n",
        );
        assert_eq!(
            out,
            "\r\n[a] \u{fffd}\u{fffd}2J\u{fffd}\u{fffd}\u{fffd}\u{fffd}\r\n"
        );
    }

    #[test]
    fn full_queue_drops_and_says_so() {
        let mut c = console();
        let vm = c.vm(0, "a").unwrap();
        let mut lines = Vec::new();
        for _ in 0..2048 {
            lines.extend_from_slice(b"a\n");
        }
        vm.write(&lines, 0);
        let dropped = vm.queue.dropped();
        // Each record costs its header: 4096 / (7 + 1) records fit.
        assert_eq!(dropped, 2048 - (QUEUE_BYTES / (HEADER + 1)) as u64);
        // One line out frees room for one more record, which says how much
        // was lost before it.
        let mut s = sink();
        c.pump(&mut s, "[a] a\r\n".len());
        c.vm(0, "a").unwrap().write(b"b\n", 0);
        // Nothing fits now: dropped, and said at the end.
        c.vm(0, "a").unwrap().write(b"cc\n", 0);
        let out = drain(&mut c);
        let expected = format!(
            "ferrovisor: VM 'a': {dropped} bytes of console output dropped (queue full)\r\n[a] b\r\n\
             ferrovisor: VM 'a': 2 bytes of console output dropped (queue full)\r\n"
        );
        assert!(out.ends_with(&expected), "{out}");
        assert_eq!(out.len(), 511 * "[a] a\r\n".len() + expected.len());
        assert_eq!(c.vm(0, "a").unwrap().queue.dropped(), dropped + 2);
    }

    #[test]
    fn round_robin_is_fair() {
        let mut c = console();
        let mut flood = Vec::new();
        for _ in 0..400 {
            flood.extend_from_slice(b"xxxxxxxxx\n");
        }
        c.vm(0, "loud").unwrap().write(&flood, 0);
        c.vm(1, "quiet").unwrap().write(b"one\ntwo\n", 0);
        let out = drain(&mut c);
        let lines: Vec<&str> = out.split("\r\n").collect();
        // The quiet VM's lines come second and fourth, not after the flood.
        assert_eq!(lines[1], "[quiet] one");
        assert_eq!(lines[3], "[quiet] two");
    }

    #[test]
    fn hypervisor_output_goes_first_and_waits_for_room() {
        let mut c = console();
        c.vm(0, "a").unwrap().write(b"one\ntwo\n", 0);
        let mut s = Sink {
            out: Vec::new(),
            room: 0,
        };
        // No room: nothing written, still pending, no waiting.
        assert!(c.pump(&mut s, 100));
        assert!(s.out.is_empty());
        s.room = 4;
        assert!(c.pump(&mut s, 4));
        assert_eq!(s.out, b"[a] ");
        assert!(c.hypervisor_write(b"log\n"));
        while c.pump(&mut s, 3) {}
        assert_eq!(
            String::from_utf8(s.out).unwrap(),
            "[a] one\r\nlog\r\n[a] two\r\n"
        );
    }

    #[test]
    fn hypervisor_output_is_never_dropped() {
        let mut c = console();
        let mut s = sink();
        let text: Vec<u8> = (0..10_000).map(|i| b"abcdefghi\n"[i % 10]).collect();
        // More than the queue holds: older output is written to make room.
        c.hypervisor_write_all(&mut s, &text);
        c.hypervisor_write_all(&mut s, b"last\n");
        while c.pump(&mut s, 100) {}
        let out = String::from_utf8(s.out).unwrap();
        assert_eq!(out.matches("abcdefghi\r\n").count(), 1000);
        assert!(out.ends_with("abcdefghi\r\nlast\r\n"));
    }

    #[test]
    fn draining_one_vm() {
        let mut c = console();
        c.vm(0, "a").unwrap().write(b"a1\na2\n", 0);
        c.vm(1, "b").unwrap().write(b"b1\nb2\nb3", 0);
        c.vm(1, "b").unwrap().flush();
        let mut s = sink();
        c.drain_vm(&mut s, 1);
        assert_eq!(
            String::from_utf8(s.out.clone()).unwrap(),
            "[b] b1\r\n[b] b2\r\n[b] b3"
        );
        c.drain_all(&mut s);
        assert_eq!(
            String::from_utf8(s.out).unwrap(),
            "[b] b1\r\n[b] b2\r\n[b] b3\r\n[a] a1\r\n[a] a2\r\n"
        );
        assert!(!c.pending());
    }

    #[test]
    fn write_sanitized_for_logs() {
        let mut s = String::new();
        write_sanitized(&mut s, b"a\x1b[2Jb\x1b[31mc\x08\r\x00\xff".iter().copied()).unwrap();
        assert_eq!(s, "abc??\u{fffd}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever two VMs write, every terminal line (as shown) is empty,
        /// a VM's, or the hypervisor's; escapes are SGR only; no control
        /// characters but `\r`, `\n`, tab, backspace and ESC (in SGR); the
        /// output is bounded by what the queues hold.
        #[test]
        fn terminal_lines_belong_to_someone(
            writes in proptest::collection::vec(
                (0usize..2, proptest::collection::vec(
                    prop_oneof![
                        any::<u8>(),
                        Just(b'\r'),
                        Just(b'\n'),
                        Just(0x08u8),
                        Just(0x1bu8),
                        Just(b'['),
                        Just(b'm'),
                        Just(b';'),
                    ],
                    0..300,
                ), any::<bool>(), 0usize..40),
                1..20,
            )
        ) {
            let mut c = console();
            let mut s = sink();
            let mut hv_lines = 0usize;
            for (vm, bytes, flush, budget) in &writes {
                let v = c.vm(*vm, ["a", "bb"][*vm]).unwrap();
                v.write(bytes, 0);
                if *flush {
                    v.flush();
                }
                if *budget == 0 && c.hypervisor_write(b"ferrovisor: real\n") {
                    hv_lines += 1;
                }
                c.pump(&mut s, *budget);
            }
            while c.pump(&mut s, 50) {}
            let out = String::from_utf8_lossy(&s.out).into_owned();
            for ch in out.chars() {
                prop_assert!(
                    !is_hidden_char(ch) || matches!(ch, '\r' | '\n' | '\t' | '\u{8}' | '\u{1b}'),
                    "{ch:?} in {out:?}"
                );
            }
            let mut rest = out.as_str();
            while let Some(i) = rest.find('\u{1b}') {
                let body = &rest[i + 1..];
                prop_assert!(body.starts_with('['), "{out:?}");
                let end = body[1..].find(|c: char| !(c.is_ascii_digit() || c == ';')).unwrap();
                prop_assert!(body[1 + end..].starts_with('m'), "{out:?}");
                rest = &body[1 + end..];
            }
            let mut real = 0;
            for line in render(&out) {
                // (A prefix alone shows as `[a]`: trailing blanks are cut.)
                let padded = format!("{line} ");
                let ok = line.is_empty()
                    || padded.starts_with("[a] ")
                    || padded.starts_with("[bb] ")
                    || line == "ferrovisor: real"
                    || (line.starts_with("ferrovisor: VM '") && line.ends_with("dropped (queue full)"));
                prop_assert!(ok, "line {line:?} in {out:?}");
                real += usize::from(line == "ferrovisor: real");
            }
            prop_assert_eq!(real, hv_lines);
            let input: usize = writes.iter().map(|w| w.1.len()).sum();
            // At most: every input byte as U+FFFD with a prefix per byte, plus
            // the hypervisor's lines.
            prop_assert!(out.len() <= input * 12 + writes.len() * 24 + hv_lines * 20 + 8);
        }

        /// The sanitiser never panics and emits only printable characters,
        /// tabs, backspaces, line ends and SGR sequences of at most
        /// `SGR_MAX` parameter bytes.
        #[test]
        fn sanitizer_tokens(bytes in proptest::collection::vec(any::<u8>(), 0..500)) {
            let mut s = Sanitizer::new();
            let mut ok = true;
            let mut check = |t: Token<'_>| match t {
                Token::Char(c) => {
                    let s = core::str::from_utf8(c).unwrap_or("\u{1}");
                    ok &= s.chars().count() == 1 && !s.chars().any(is_hidden_char);
                }
                Token::Sgr(p) => ok &= p.len() <= SGR_MAX && p.iter().all(|b| b.is_ascii_digit() || *b == b';'),
                _ => {}
            };
            for b in bytes {
                s.feed(b, &mut check);
            }
            s.finish(&mut check);
            prop_assert!(ok);
        }
    }
}
