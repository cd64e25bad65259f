//! A walked descriptor chain as guest-physical segments, and cursors over it.
//!
//! [`Buffer::walk`] follows a [`DescriptorChain`] to its end and records each
//! non-empty descriptor as a [`Segment`]: first the device-readable ones, then
//! the device-writable ones (§2.7.4: the driver places writable descriptors
//! after readable ones; a chain that does not is refused). Totals are checked
//! to fit the used ring's 32-bit length. [`Reader`] and [`Writer`] then move
//! bytes between the device and those segments, crossing segment boundaries,
//! through [`GuestMemory`] (every byte checked against the VM's RAM there).

use alloc::vec::Vec;

use fv_addr::GuestPhysAddr;
use fv_vm::{GuestMemory, GuestMemoryError};

use crate::queue::{ChainError, DescriptorChain};

/// One contiguous guest-physical span of a chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Start of the span.
    pub addr: GuestPhysAddr,
    /// Length in bytes (never 0, and `addr + len` does not wrap).
    pub len: u32,
    /// Whether the device may write it (`VIRTQ_DESC_F_WRITE`).
    pub writable: bool,
}

/// A cursor operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BufferError {
    /// The readable part ended before the requested bytes were read.
    ShortRead,
    /// The writable part ended before the bytes were written.
    ShortWrite,
    /// A segment byte is not guest RAM of this VM.
    Memory(GuestMemoryError),
}

/// A descriptor chain's segments, readable ones first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Buffer {
    head: u16,
    segments: Vec<Segment>,
    readable_len: u32,
    writable_len: u32,
}

impl Buffer {
    /// Walks `chain` to its end. Zero-length descriptors are skipped.
    pub fn walk(mut chain: DescriptorChain, mem: &mut dyn GuestMemory) -> Result<Self, ChainError> {
        let mut b = Buffer {
            head: chain.head(),
            segments: Vec::new(),
            readable_len: 0,
            writable_len: 0,
        };
        while let Some(d) = chain.next_descriptor(mem)? {
            let writable = d.is_write();
            if !writable && b.writable_len > 0 {
                return Err(ChainError::ReadableAfterWritable);
            }
            if d.addr.checked_add(u64::from(d.len)).is_err() {
                return Err(ChainError::AddressOverflow);
            }
            if d.len == 0 {
                continue;
            }
            let total = if writable {
                &mut b.writable_len
            } else {
                &mut b.readable_len
            };
            *total = total
                .checked_add(d.len)
                .ok_or(ChainError::TotalLengthOverflow)?;
            b.readable_len
                .checked_add(b.writable_len)
                .ok_or(ChainError::TotalLengthOverflow)?;
            b.segments.push(Segment {
                addr: d.addr,
                len: d.len,
                writable,
            });
        }
        Ok(b)
    }

    /// The chain's head index (for [`crate::queue::Queue::add_used`]).
    pub fn head(&self) -> u16 {
        self.head
    }

    /// All segments, readable first.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Total bytes of the device-readable part.
    pub fn readable_len(&self) -> u32 {
        self.readable_len
    }

    /// Total bytes of the device-writable part.
    pub fn writable_len(&self) -> u32 {
        self.writable_len
    }

    /// A cursor at the start of the readable part.
    pub fn reader(&self) -> Reader<'_> {
        Reader(Cursor::new(self.part(false)))
    }

    /// A cursor at the start of the writable part.
    pub fn writer(&self) -> Writer<'_> {
        Writer(Cursor::new(self.part(true)))
    }

    fn part(&self, writable: bool) -> &[Segment] {
        let split = self.segments.partition_point(|s| !s.writable);
        let (r, w) = self.segments.split_at(split);
        if writable {
            w
        } else {
            r
        }
    }
}

/// Position within a list of segments, moving at most `limit` more bytes.
#[derive(Clone, Debug)]
struct Cursor<'a> {
    segs: &'a [Segment],
    /// Offset into `segs[0]`.
    off: u32,
    /// Bytes moved so far.
    done: u32,
    /// Bytes this cursor may still move.
    limit: u64,
    /// Bytes left in `segs` from `off` on (ignoring `limit`).
    left: u64,
}

impl<'a> Cursor<'a> {
    fn new(segs: &'a [Segment]) -> Self {
        Self {
            segs,
            off: 0,
            done: 0,
            limit: u64::MAX,
            left: segs.iter().map(|s| u64::from(s.len)).sum(),
        }
    }

    fn remaining(&self) -> u64 {
        self.left.min(self.limit)
    }

    /// The next span of at most `max` bytes, advancing past it.
    fn take(&mut self, max: u64) -> Option<(GuestPhysAddr, u32)> {
        let (first, rest) = self.segs.split_first()?;
        let left = first.len.saturating_sub(self.off);
        let n = u32::try_from(max.min(self.limit))
            .unwrap_or(u32::MAX)
            .min(left);
        if n == 0 {
            return None;
        }
        let addr = first.addr.checked_add(u64::from(self.off)).ok()?;
        self.off += n;
        self.done = self.done.saturating_add(n);
        self.limit -= u64::from(n);
        self.left = self.left.saturating_sub(u64::from(n));
        if self.off >= first.len {
            self.segs = rest;
            self.off = 0;
        }
        Some((addr, n))
    }

    /// Moves up to `len` bytes, calling `f(addr, start, n)` per span; returns bytes moved.
    fn each(
        &mut self,
        len: usize,
        mut f: impl FnMut(GuestPhysAddr, usize, usize) -> Result<(), GuestMemoryError>,
    ) -> Result<usize, BufferError> {
        let mut pos = 0;
        while pos < len {
            let Some((addr, n)) = self.take((len - pos) as u64) else {
                break;
            };
            let n = n as usize;
            f(addr, pos, n).map_err(BufferError::Memory)?;
            pos += n;
        }
        Ok(pos)
    }

    /// Splits into a cursor over the next `len` bytes and one over the rest.
    fn split_at(self, len: u64) -> (Self, Self) {
        let mut head = self.clone();
        head.limit = head.limit.min(len);
        head.done = 0;
        let mut tail = self;
        let mut left = len;
        while left > 0 {
            match tail.take(left) {
                Some((_, n)) => left -= u64::from(n),
                None => break,
            }
        }
        tail.done = 0;
        (head, tail)
    }
}

/// Reads the device-readable part of a [`Buffer`] in order.
#[derive(Clone, Debug)]
pub struct Reader<'a>(Cursor<'a>);

impl Reader<'_> {
    /// Bytes not yet read.
    pub fn remaining(&self) -> u64 {
        self.0.remaining()
    }

    /// Bytes read so far.
    pub fn consumed(&self) -> u32 {
        self.0.done
    }

    /// Fills `buf` entirely, or fails with [`BufferError::ShortRead`] (having
    /// read what there was).
    pub fn read_exact(
        &mut self,
        mem: &mut dyn GuestMemory,
        buf: &mut [u8],
    ) -> Result<(), BufferError> {
        if self.read(mem, buf)? < buf.len() {
            return Err(BufferError::ShortRead);
        }
        Ok(())
    }

    /// Reads up to `buf.len()` bytes; returns how many.
    pub fn read(
        &mut self,
        mem: &mut dyn GuestMemory,
        buf: &mut [u8],
    ) -> Result<usize, BufferError> {
        self.0.each(buf.len(), |addr, start, n| {
            let dst = buf
                .get_mut(start..start + n)
                .ok_or(GuestMemoryError::Overflow)?;
            mem.read(addr, dst)
        })
    }
}

/// Writes the device-writable part of a [`Buffer`] in order.
#[derive(Clone, Debug)]
pub struct Writer<'a>(Cursor<'a>);

impl Writer<'_> {
    /// Bytes that can still be written.
    pub fn remaining(&self) -> u64 {
        self.0.remaining()
    }

    /// Bytes written so far: the used length to report.
    pub fn written(&self) -> u32 {
        self.0.done
    }

    /// Writes all of `data`, or fails with [`BufferError::ShortWrite`] (having
    /// written what fitted).
    pub fn write_all(&mut self, mem: &mut dyn GuestMemory, data: &[u8]) -> Result<(), BufferError> {
        if self.write(mem, data)? < data.len() {
            return Err(BufferError::ShortWrite);
        }
        Ok(())
    }

    /// Writes as much of `data` as fits; returns how many bytes.
    pub fn write(&mut self, mem: &mut dyn GuestMemory, data: &[u8]) -> Result<usize, BufferError> {
        self.0.each(data.len(), |addr, start, n| {
            let src = data
                .get(start..start + n)
                .ok_or(GuestMemoryError::Overflow)?;
            mem.write(addr, src)
        })
    }

    /// A writer over the next `len` bytes and one over the rest (for a
    /// trailing status byte: `split_at(remaining - 1)`). Both start with
    /// [`written`](Self::written) at 0.
    pub fn split_at(self, len: u64) -> (Self, Self) {
        let (h, t) = self.0.split_at(len);
        (Writer(h), Writer(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fv_vm::VecMemory;

    fn seg(addr: u64, len: u32, writable: bool) -> Segment {
        Segment {
            addr: GuestPhysAddr::new(addr),
            len,
            writable,
        }
    }

    #[test]
    fn reader_and_writer_cross_segments() {
        let base = 0x8000_0000;
        let mut mem = VecMemory::new(GuestPhysAddr::new(base), 0x1000);
        mem.write(GuestPhysAddr::new(base), &[1, 2, 3]).unwrap();
        mem.write(GuestPhysAddr::new(base + 0x100), &[4, 5, 6])
            .unwrap();
        let b = Buffer {
            head: 0,
            segments: alloc::vec![
                seg(base, 3, false),
                seg(base + 0x100, 3, false),
                seg(base + 0x200, 2, true),
                seg(base + 0x300, 4, true),
            ],
            readable_len: 6,
            writable_len: 6,
        };
        let mut r = b.reader();
        let mut hdr = [0u8; 4];
        r.read_exact(&mut mem, &mut hdr).unwrap();
        assert_eq!(hdr, [1, 2, 3, 4]);
        assert_eq!(r.remaining(), 2);
        assert_eq!(
            r.read_exact(&mut mem, &mut hdr),
            Err(BufferError::ShortRead)
        );
        let mut w = b.writer();
        w.write_all(&mut mem, &[9, 8, 7]).unwrap();
        assert_eq!(w.written(), 3);
        assert_eq!(
            w.write_all(&mut mem, &[1, 1, 1, 1]),
            Err(BufferError::ShortWrite)
        );
        let mut out = [0u8; 4];
        mem.read(GuestPhysAddr::new(base + 0x300), &mut out)
            .unwrap();
        assert_eq!(out, [7, 1, 1, 1]);
    }
}
