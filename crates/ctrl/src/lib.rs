//! The control channel between the host tool and the running hypervisor:
//! framing only. The hypervisor reads it from a virtio-console of the machine
//! (QEMU backs it with a unix socket the host tool owns), and the host tool
//! speaks the same frames to its own clients on the instance's `api.sock`.
//!
//! # Frames, version 1 ([`VERSION`])
//!
//! ```text
//! offset size  field
//!  0      2    magic "FV" (0x46 0x56)
//!  2      1    version (1)
//!  3      1    kind (see [`Kind`]; unknown kinds are delivered, not dropped)
//!  4      4    id, little endian: a request's id, echoed by its reply; 0 for events
//!  8      2    payload length, little endian, at most the decoder's limit
//! 10      2    header check: low 16 bits of the CRC-32 of bytes 0..10
//! 12      n    payload
//! 12+n    4    CRC-32 of bytes 0..12+n, little endian
//! ```
//!
//! The header check lets the decoder throw away a false header (garbage that
//! happens to start with the magic) at once instead of waiting for the
//! payload it claims; the trailing CRC catches damaged payloads. After any
//! bad frame the decoder skips one byte and looks for the next magic, so a
//! stream resynchronises after garbage and no sequence of bytes can make it
//! stop delivering later valid frames.
//!
//! Payloads are defined by the kinds ([`Kind`]): requests carry one command
//! line of `fv_mgmt`'s command language and get a reply in its line protocol
//! (`fv_mgmt::machine`) or its human form; events are one record line of that
//! protocol; console frames carry a VM name and raw console bytes
//! ([`encode_console`], [`split_console`]).
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

extern crate alloc;
#[cfg(test)]
extern crate std;

mod decoder;

pub use decoder::{Decoder, DecoderStats};

/// The frame format version this crate writes.
pub const VERSION: u8 = 1;
/// The two magic bytes every frame starts with.
pub const MAGIC: [u8; 2] = *b"FV";
/// Header bytes before the payload.
pub const HEADER_LEN: usize = 12;
/// Trailer bytes after the payload (the CRC-32).
pub const TRAILER_LEN: usize = 4;
/// Bytes a frame adds to its payload.
pub const OVERHEAD: usize = HEADER_LEN + TRAILER_LEN;
/// The largest payload the format can carry (its length field is 16 bits).
pub const MAX_PAYLOAD: usize = u16::MAX as usize;
/// The largest payload the hypervisor accepts (requests are short: a command
/// line or a burst of console input), and the size of its reply chunks.
pub const HV_MAX_PAYLOAD: usize = 1024;
/// Longest VM name in a console frame (as `fv_mgmt::MAX_NAME_LEN`).
pub const MAX_NAME_LEN: usize = 64;

/// What a frame is.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Kind {
    /// Host → hypervisor: one command line; the reply is in the machine line
    /// protocol.
    Request,
    /// Host → hypervisor: one command line; the reply is the human text the
    /// management shell prints.
    RequestHuman,
    /// Host → hypervisor: console input for a VM ([`encode_console`] payload);
    /// the reply is `ok` or an `error` line.
    Input,
    /// Hypervisor → host: the last (or only) part of a reply to the request
    /// with the same id.
    Reply,
    /// Hypervisor → host: a part of a reply; more parts follow.
    ReplyPart,
    /// Hypervisor → host: an asynchronous event, one record line, id 0.
    Event,
    /// Hypervisor → host: console output of a VM ([`encode_console`]
    /// payload), id 0.
    Console,
    /// Client → instance server: the instance's token (first frame).
    Hello,
    /// Client → instance server: what to stream to this client (a record
    /// line such as `console vm=NAME history=1`).
    Subscribe,
    /// A kind this version does not know (the byte is kept).
    Other(u8),
}

impl Kind {
    /// The byte on the wire.
    pub const fn to_byte(self) -> u8 {
        match self {
            Kind::Request => 1,
            Kind::RequestHuman => 2,
            Kind::Input => 3,
            Kind::Reply => 4,
            Kind::ReplyPart => 5,
            Kind::Event => 6,
            Kind::Console => 7,
            Kind::Hello => 8,
            Kind::Subscribe => 9,
            Kind::Other(b) => b,
        }
    }

    /// The kind a byte stands for.
    pub const fn from_byte(b: u8) -> Kind {
        match b {
            1 => Kind::Request,
            2 => Kind::RequestHuman,
            3 => Kind::Input,
            4 => Kind::Reply,
            5 => Kind::ReplyPart,
            6 => Kind::Event,
            7 => Kind::Console,
            8 => Kind::Hello,
            9 => Kind::Subscribe,
            b => Kind::Other(b),
        }
    }
}

/// One decoded frame, borrowing its payload from the decoder.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Frame<'a> {
    /// The sender's format version (this crate writes [`VERSION`]; a
    /// receiver refuses what it does not speak).
    pub version: u8,
    /// What the frame is.
    pub kind: Kind,
    /// The request id (0 for events).
    pub id: u32,
    /// The payload.
    pub payload: &'a [u8],
}

/// Why a frame could not be written.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum EncodeError {
    /// The payload is longer than [`MAX_PAYLOAD`].
    TooLong,
    /// The output buffer is too small for the frame.
    NoRoom,
    /// A console payload's VM name is empty or longer than [`MAX_NAME_LEN`].
    BadName,
}

fn header_check(head: &[u8]) -> u16 {
    (crc32fast::hash(head) & 0xffff) as u16
}

/// Writes one frame into `out`; returns its length ([`OVERHEAD`] + payload).
pub fn encode_into(
    kind: Kind,
    id: u32,
    payload: &[u8],
    out: &mut [u8],
) -> Result<usize, EncodeError> {
    let len = u16::try_from(payload.len()).map_err(|_| EncodeError::TooLong)?;
    let total = payload.len() + OVERHEAD;
    let out = out.get_mut(..total).ok_or(EncodeError::NoRoom)?;
    let (head, rest) = out.split_at_mut(HEADER_LEN);
    head[..2].copy_from_slice(&MAGIC);
    head[2] = VERSION;
    head[3] = kind.to_byte();
    head[4..8].copy_from_slice(&id.to_le_bytes());
    head[8..10].copy_from_slice(&len.to_le_bytes());
    let check = header_check(&head[..10]);
    head[10..12].copy_from_slice(&check.to_le_bytes());
    let (body, trailer) = rest.split_at_mut(payload.len());
    body.copy_from_slice(payload);
    let mut h = crc32fast::Hasher::new();
    h.update(head);
    h.update(body);
    trailer.copy_from_slice(&h.finalize().to_le_bytes());
    Ok(total)
}

/// A sink frames can be appended to (a `Vec<u8>` with `alloc`, a fixed
/// buffer on the hypervisor).
pub trait FrameSink {
    /// Appends `bytes`; `false` if they do not fit (nothing is appended then).
    fn append(&mut self, bytes: &[&[u8]]) -> bool;
}

/// Appends one frame to `sink` without an intermediate buffer.
pub fn encode(
    kind: Kind,
    id: u32,
    payload: &[u8],
    sink: &mut dyn FrameSink,
) -> Result<(), EncodeError> {
    encode_parts(kind, id, &[payload], sink)
}

/// Appends one frame whose payload is the concatenation of `parts`.
pub fn encode_parts(
    kind: Kind,
    id: u32,
    parts: &[&[u8]],
    sink: &mut dyn FrameSink,
) -> Result<(), EncodeError> {
    let n: usize = parts.iter().map(|p| p.len()).sum();
    let len = u16::try_from(n).map_err(|_| EncodeError::TooLong)?;
    let mut head = [0u8; HEADER_LEN];
    head[..2].copy_from_slice(&MAGIC);
    head[2] = VERSION;
    head[3] = kind.to_byte();
    head[4..8].copy_from_slice(&id.to_le_bytes());
    head[8..10].copy_from_slice(&len.to_le_bytes());
    let check = header_check(&head[..10]);
    head[10..12].copy_from_slice(&check.to_le_bytes());
    let mut h = crc32fast::Hasher::new();
    h.update(&head);
    for p in parts {
        h.update(p);
    }
    let crc = h.finalize().to_le_bytes();
    let mut all: [&[u8]; 8] = [&[]; 8];
    if parts.len() > 6 {
        return Err(EncodeError::TooLong);
    }
    all[0] = &head;
    for (slot, p) in all[1..].iter_mut().zip(parts) {
        *slot = p;
    }
    all[parts.len() + 1] = &crc;
    if sink.append(&all[..parts.len() + 2]) {
        Ok(())
    } else {
        Err(EncodeError::NoRoom)
    }
}

/// Appends a console frame (`kind` [`Kind::Console`] or [`Kind::Input`])
/// for VM `name` carrying `data`: payload = name length (1 byte), name, data.
pub fn encode_console(
    kind: Kind,
    id: u32,
    name: &str,
    data: &[u8],
    sink: &mut dyn FrameSink,
) -> Result<(), EncodeError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(EncodeError::BadName);
    }
    let n = [name.len() as u8];
    encode_parts(kind, id, &[&n, name.as_bytes(), data], sink)
}

/// Splits a console payload into the VM name and the data; `None` if it is
/// malformed (empty or overlong name, not UTF-8, shorter than it says).
pub fn split_console(payload: &[u8]) -> Option<(&str, &[u8])> {
    let (&n, rest) = payload.split_first()?;
    let n = usize::from(n);
    if n == 0 || n > MAX_NAME_LEN {
        return None;
    }
    let name = rest.get(..n)?;
    let data = rest.get(n..)?;
    Some((core::str::from_utf8(name).ok()?, data))
}

/// A fixed buffer that frames are appended to (no allocation).
#[derive(Debug)]
pub struct FixedSink<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> FixedSink<'a> {
    /// An empty sink over `buf`.
    pub fn new(buf: &'a mut [u8]) -> Self {
        FixedSink { buf, len: 0 }
    }

    /// What was appended so far.
    pub fn bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&[])
    }

    /// Bytes appended so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing was appended.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes still free.
    pub fn room(&self) -> usize {
        self.buf.len() - self.len
    }

    /// Forgets what was appended.
    pub fn clear(&mut self) {
        self.len = 0;
    }
}

impl FrameSink for FixedSink<'_> {
    fn append(&mut self, parts: &[&[u8]]) -> bool {
        let n: usize = parts.iter().map(|p| p.len()).sum();
        if n > self.room() {
            return false;
        }
        for p in parts {
            let end = self.len + p.len();
            if let Some(dst) = self.buf.get_mut(self.len..end) {
                dst.copy_from_slice(p);
            }
            self.len = end;
        }
        true
    }
}

impl FrameSink for alloc::vec::Vec<u8> {
    fn append(&mut self, parts: &[&[u8]]) -> bool {
        for p in parts {
            self.extend_from_slice(p);
        }
        true
    }
}

#[cfg(test)]
mod tests;
