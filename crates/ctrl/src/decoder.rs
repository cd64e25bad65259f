//! The streaming frame decoder: bytes in, whole valid frames out.

use crate::{header_check, Frame, Kind, HEADER_LEN, MAGIC, TRAILER_LEN};

/// What the decoder has seen, for logs and tests.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub struct DecoderStats {
    /// Frames delivered.
    pub frames: u64,
    /// Bytes skipped while looking for a frame (garbage, damaged frames).
    pub skipped: u64,
    /// Candidate frames thrown away: a bad header check, a length over the
    /// limit or a bad CRC.
    pub bad_frames: u64,
}

/// A streaming decoder with an `N`-byte buffer: it delivers frames of up to
/// `N - OVERHEAD` payload bytes and treats longer ones as garbage.
///
/// Work is bounded: [`Decoder::push`] costs O(`bytes.len()` × `N`) in the
/// worst case (each byte thrown away may cause one rescan of the buffer),
/// O(`bytes.len()`) for a clean stream; memory is the buffer only.
#[derive(Debug)]
pub struct Decoder<const N: usize> {
    buf: [u8; N],
    len: usize,
    stats: DecoderStats,
}

impl<const N: usize> Default for Decoder<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Decoder<N> {
    /// An empty decoder.
    pub const fn new() -> Self {
        Decoder {
            buf: [0; N],
            len: 0,
            stats: DecoderStats {
                frames: 0,
                skipped: 0,
                bad_frames: 0,
            },
        }
    }

    /// The largest payload this decoder delivers.
    pub const fn max_payload(&self) -> usize {
        N.saturating_sub(crate::OVERHEAD)
    }

    /// Counters so far.
    pub fn stats(&self) -> DecoderStats {
        self.stats
    }

    /// Bytes held waiting for the rest of a frame.
    pub fn buffered(&self) -> usize {
        self.len
    }

    /// Forgets buffered bytes (a new connection).
    pub fn reset(&mut self) {
        self.len = 0;
    }

    /// Feeds `bytes`; calls `f` for every complete valid frame, in order.
    pub fn push(&mut self, mut bytes: &[u8], f: &mut dyn FnMut(Frame<'_>)) {
        while !bytes.is_empty() {
            let room = N - self.len;
            if room == 0 {
                // Cannot happen (a full buffer always holds a decision), but
                // never spin: drop one byte.
                self.drop_front(1);
                continue;
            }
            let take = room.min(bytes.len());
            let (now, later) = bytes.split_at(take);
            self.buf[self.len..self.len + take].copy_from_slice(now);
            self.len += take;
            bytes = later;
            self.scan(f);
        }
    }

    fn drop_front(&mut self, n: usize) {
        let n = n.min(self.len);
        self.buf.copy_within(n..self.len, 0);
        self.len -= n;
    }

    fn skip(&mut self, n: usize) {
        self.stats.skipped = self.stats.skipped.saturating_add(n as u64);
        self.drop_front(n);
    }

    /// Delivers every frame the buffer holds and throws away what cannot
    /// start one; leaves a possible frame's beginning buffered.
    fn scan(&mut self, f: &mut dyn FnMut(Frame<'_>)) {
        loop {
            // Find the magic (or a trailing first magic byte).
            let data = &self.buf[..self.len];
            let start = data.windows(2).position(|w| w == MAGIC).unwrap_or_else(|| {
                if data.last() == Some(&MAGIC[0]) {
                    self.len - 1
                } else {
                    self.len
                }
            });
            if start > 0 {
                self.skip(start);
            }
            if self.len < HEADER_LEN {
                return;
            }
            let head = &self.buf[..HEADER_LEN];
            let check = u16::from_le_bytes([head[10], head[11]]);
            let plen = usize::from(u16::from_le_bytes([head[8], head[9]]));
            let total = HEADER_LEN + plen + TRAILER_LEN;
            if check != header_check(&head[..10]) || total > N {
                self.stats.bad_frames = self.stats.bad_frames.saturating_add(1);
                self.skip(1);
                continue;
            }
            if self.len < total {
                return;
            }
            let body_end = HEADER_LEN + plen;
            let want = u32::from_le_bytes([
                self.buf[body_end],
                self.buf[body_end + 1],
                self.buf[body_end + 2],
                self.buf[body_end + 3],
            ]);
            if crc32fast::hash(&self.buf[..body_end]) != want {
                self.stats.bad_frames = self.stats.bad_frames.saturating_add(1);
                self.skip(1);
                continue;
            }
            let head = &self.buf[..HEADER_LEN];
            let frame = Frame {
                version: head[2],
                kind: Kind::from_byte(head[3]),
                id: u32::from_le_bytes([head[4], head[5], head[6], head[7]]),
                payload: &self.buf[HEADER_LEN..body_end],
            };
            f(frame);
            self.stats.frames = self.stats.frames.saturating_add(1);
            self.drop_front(total);
        }
    }
}
