//! A fixed-capacity byte ring for console history and the hypervisor log.
//!
//! [`Ring::push`] appends and overwrites the oldest bytes once full; it never
//! allocates. Storage is whatever owns the bytes: a `Box<[u8]>` made once with
//! [`Ring::with_capacity`], or an array in a `static` with [`Ring::new`] (usable
//! before the heap exists). Readers take a [`RingView`]: the contents as two
//! slices (oldest part, newest part), split into lines at `\n`.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;

/// The storage could not be allocated.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RingError {
    /// The heap has no room for the requested capacity.
    OutOfMemory,
}

impl fmt::Display for RingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RingError::OutOfMemory => f.write_str("out of memory for the ring buffer"),
        }
    }
}

/// A byte ring over storage `S`.
#[derive(Clone, Debug)]
pub struct Ring<S = Box<[u8]>> {
    storage: S,
    /// Where the next byte goes.
    head: usize,
    /// Bytes held (at most the capacity).
    len: usize,
    /// Bytes ever pushed.
    pushed: u64,
}

impl<S> Ring<S> {
    /// An empty ring over `storage` (its length is the capacity).
    pub const fn new(storage: S) -> Self {
        Ring {
            storage,
            head: 0,
            len: 0,
            pushed: 0,
        }
    }
}

impl Ring<Box<[u8]>> {
    /// An empty ring holding up to `capacity` bytes, allocated now and never again.
    pub fn with_capacity(capacity: usize) -> Result<Self, RingError> {
        let mut v = Vec::new();
        v.try_reserve_exact(capacity)
            .map_err(|_| RingError::OutOfMemory)?;
        v.resize(capacity, 0);
        Ok(Ring::new(v.into_boxed_slice()))
    }
}

impl<S: AsRef<[u8]>> Ring<S> {
    /// Most bytes it holds.
    pub fn capacity(&self) -> usize {
        self.storage.as_ref().len()
    }

    /// Bytes it holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes ever pushed (held or overwritten).
    pub fn pushed(&self) -> u64 {
        self.pushed
    }

    /// The contents, oldest first.
    pub fn view(&self) -> RingView<'_> {
        let buf = self.storage.as_ref();
        let cap = buf.len();
        let len = self.len.min(cap);
        let head = self.head.min(cap);
        if head >= len {
            // Contiguous: [head - len, head).
            RingView::new(buf.get(head - len..head).unwrap_or(&[]), &[])
        } else {
            // Wrapped: the tail of the buffer, then its start up to head.
            let older = buf.get(cap - (len - head)..).unwrap_or(&[]);
            RingView::new(older, buf.get(..head).unwrap_or(&[]))
        }
    }
}

impl<S: AsRef<[u8]> + AsMut<[u8]>> Ring<S> {
    /// Appends `bytes`, overwriting the oldest bytes when full. With more bytes
    /// than the capacity, only their last `capacity` bytes are kept.
    pub fn push(&mut self, bytes: &[u8]) {
        self.pushed = self.pushed.saturating_add(bytes.len() as u64);
        let buf = self.storage.as_mut();
        let cap = buf.len();
        if cap == 0 || bytes.is_empty() {
            return;
        }
        let bytes = bytes.get(bytes.len().saturating_sub(cap)..).unwrap_or(&[]);
        let n = bytes.len();
        let head = self.head.min(cap - 1);
        let first = n.min(cap - head);
        let (a, b) = bytes.split_at(first);
        if let Some(dst) = buf.get_mut(head..head + first) {
            dst.copy_from_slice(a);
        }
        if let Some(dst) = buf.get_mut(..b.len()) {
            dst.copy_from_slice(b);
        }
        self.head = (head + n) % cap;
        self.len = self.len.saturating_add(n).min(cap);
    }

    /// Forgets the contents (the count of bytes pushed stays).
    pub fn clear(&mut self) {
        self.head = 0;
        self.len = 0;
    }
}

/// Bytes of a ring, oldest first, as two slices (the second continues the first).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct RingView<'a> {
    older: &'a [u8],
    newer: &'a [u8],
}

impl<'a> RingView<'a> {
    /// A view of `older` followed by `newer`.
    pub const fn new(older: &'a [u8], newer: &'a [u8]) -> Self {
        RingView { older, newer }
    }

    /// The two parts, oldest first.
    pub fn as_slices(&self) -> (&'a [u8], &'a [u8]) {
        (self.older, self.newer)
    }

    /// Bytes in the view.
    pub fn len(&self) -> usize {
        self.older.len() + self.newer.len()
    }

    /// Whether the view is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every byte, oldest first.
    pub fn bytes(&self) -> impl Iterator<Item = u8> + 'a {
        self.older.iter().chain(self.newer.iter()).copied()
    }

    /// The byte at offset `i`.
    pub fn get(&self, i: usize) -> Option<u8> {
        match i.checked_sub(self.older.len()) {
            None => self.older.get(i).copied(),
            Some(j) => self.newer.get(j).copied(),
        }
    }

    /// Bytes `[start, end)` (clamped to the view).
    pub fn slice(&self, start: usize, end: usize) -> RingView<'a> {
        let end = end.min(self.len());
        let start = start.min(end);
        let split = self.older.len();
        let older = self
            .older
            .get(start.min(split)..end.min(split))
            .unwrap_or(&[]);
        let newer = self
            .newer
            .get(start.saturating_sub(split)..end.saturating_sub(split))
            .unwrap_or(&[]);
        RingView { older, newer }
    }

    /// Copies the bytes into `dst` (as many as fit); returns how many.
    pub fn copy_to(&self, dst: &mut [u8]) -> usize {
        let mut n = 0;
        for (d, s) in dst.iter_mut().zip(self.bytes()) {
            *d = s;
            n += 1;
        }
        n
    }

    /// Offset of the first `byte` at or after `from`.
    fn find(&self, from: usize, byte: u8) -> Option<usize> {
        let split = self.older.len();
        if from < split {
            if let Some(p) = self
                .older
                .get(from..)
                .and_then(|s| s.iter().position(|&b| b == byte))
            {
                return Some(from + p);
            }
        }
        let j = from.saturating_sub(split);
        self.newer
            .get(j..)
            .and_then(|s| s.iter().position(|&b| b == byte))
            .map(|p| split + j + p)
    }

    /// The last `n` lines: from just after the `n`-th `\n` counted back from the
    /// end (a final `\n` ends the last line rather than starting an empty one).
    /// With fewer lines, everything, including an oldest line whose start was
    /// overwritten.
    pub fn last_lines(&self, n: usize) -> RingView<'a> {
        let len = self.len();
        if n == 0 {
            return self.slice(len, len);
        }
        let mut end = len;
        if self.get(len.wrapping_sub(1)) == Some(b'\n') {
            end -= 1;
        }
        let mut seen = 0;
        let mut start = 0;
        // Walk back over the newer part, then the older one.
        let split = self.older.len();
        let parts = [(split, self.newer), (0, self.older)];
        'outer: for (base, part) in parts {
            let upto = end.saturating_sub(base).min(part.len());
            for (i, &b) in part.get(..upto).unwrap_or(&[]).iter().enumerate().rev() {
                if b == b'\n' {
                    seen += 1;
                    if seen == n {
                        start = base + i + 1;
                        break 'outer;
                    }
                }
            }
        }
        self.slice(start, len)
    }

    /// The lines, oldest first, without their `\n`. An unterminated last line
    /// is included; a final `\n` does not add an empty line.
    pub fn lines(&self) -> Lines<'a> {
        Lines {
            view: *self,
            pos: 0,
        }
    }
}

/// Iterator over the lines of a [`RingView`].
#[derive(Clone, Debug)]
pub struct Lines<'a> {
    view: RingView<'a>,
    pos: usize,
}

impl<'a> Iterator for Lines<'a> {
    type Item = RingView<'a>;

    fn next(&mut self) -> Option<RingView<'a>> {
        let len = self.view.len();
        if self.pos >= len {
            return None;
        }
        let start = self.pos;
        match self.view.find(start, b'\n') {
            Some(nl) => {
                self.pos = nl + 1;
                Some(self.view.slice(start, nl))
            }
            None => {
                self.pos = len;
                Some(self.view.slice(start, len))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn contents(v: RingView<'_>) -> Vec<u8> {
        v.bytes().collect()
    }

    fn lines(v: RingView<'_>) -> Vec<Vec<u8>> {
        v.lines().map(contents).collect()
    }

    #[test]
    fn fills_then_wraps() {
        let mut r = Ring::with_capacity(8).unwrap();
        assert!(r.is_empty());
        r.push(b"abc");
        assert_eq!(contents(r.view()), b"abc");
        assert_eq!(r.view().as_slices(), (&b"abc"[..], &b""[..]));
        r.push(b"defgh");
        assert_eq!(r.len(), 8);
        assert_eq!(contents(r.view()), b"abcdefgh");
        r.push(b"ij");
        assert_eq!(contents(r.view()), b"cdefghij");
        // Wrapped storage shows up as two slices, oldest first.
        assert_eq!(r.view().as_slices(), (&b"cdefgh"[..], &b"ij"[..]));
        r.push(b"klmnopq");
        assert_eq!(contents(r.view()), b"jklmnopq");
        assert_eq!(r.pushed(), 17);
        assert_eq!(r.capacity(), 8);
    }

    #[test]
    fn push_longer_than_capacity_keeps_the_tail() {
        let mut r = Ring::with_capacity(4).unwrap();
        r.push(b"x");
        r.push(b"0123456789");
        assert_eq!(contents(r.view()), b"6789");
        r.push(b"ab");
        assert_eq!(contents(r.view()), b"89ab");
    }

    #[test]
    fn static_array_storage_and_zero_capacity() {
        let mut r = Ring::new([0u8; 5]);
        r.push(b"hello world");
        assert_eq!(contents(r.view()), b"world");
        let mut z = Ring::new([0u8; 0]);
        z.push(b"abc");
        assert!(z.is_empty());
        assert!(z.view().is_empty());
        assert_eq!(z.pushed(), 3);
        r.clear();
        assert!(r.view().is_empty());
    }

    #[test]
    fn last_lines_counts_from_the_end() {
        let mut r = Ring::with_capacity(64).unwrap();
        r.push(b"one\ntwo\nthree\n");
        let v = r.view();
        assert_eq!(contents(v.last_lines(1)), b"three\n");
        assert_eq!(contents(v.last_lines(2)), b"two\nthree\n");
        assert_eq!(contents(v.last_lines(3)), b"one\ntwo\nthree\n");
        assert_eq!(contents(v.last_lines(99)), b"one\ntwo\nthree\n");
        assert!(v.last_lines(0).is_empty());
        // An unfinished last line counts as a line.
        r.push(b"fo");
        let v = r.view();
        assert_eq!(contents(v.last_lines(1)), b"fo");
        assert_eq!(contents(v.last_lines(2)), b"three\nfo");
        assert_eq!(lines(v), [&b"one"[..], b"two", b"three", b"fo"]);
        // Empty lines are lines.
        let mut e = Ring::with_capacity(16).unwrap();
        e.push(b"a\n\n\nb\n");
        assert_eq!(contents(e.view().last_lines(2)), b"\nb\n");
        assert_eq!(lines(e.view()), [&b"a"[..], b"", b"", b"b"]);
    }

    #[test]
    fn last_lines_across_the_wrap() {
        let mut r = Ring::with_capacity(10).unwrap();
        r.push(b"aaaa\nbbb\n");
        r.push(b"cc\ndd\n"); // 15 bytes pushed: the first 5 are overwritten
        let v = r.view();
        assert_eq!(contents(v), b"bbb\ncc\ndd\n");
        assert!(!v.as_slices().1.is_empty(), "the test must wrap");
        assert_eq!(contents(v.last_lines(1)), b"dd\n");
        assert_eq!(contents(v.last_lines(2)), b"cc\ndd\n");
        assert_eq!(lines(v.last_lines(5)), [&b"bbb"[..], b"cc", b"dd"]);
        // The oldest line lost its start to the wrap: still shown, truncated.
        r.push(b"e\n");
        assert_eq!(lines(r.view()), [&b"b"[..], b"cc", b"dd", b"e"]);
        // A line straddling the end of the storage comes out whole.
        let mut s = Ring::with_capacity(8).unwrap();
        s.push(b"xxxxxx\n"); // 7 bytes
        s.push(b"hello\n"); // wraps in the middle of "hello"
        let (older, newer) = s.view().as_slices();
        assert!(!older.is_empty() && !newer.is_empty());
        assert_eq!(lines(s.view()), [&b"x"[..], b"hello"]);
        assert_eq!(contents(s.view().last_lines(1)), b"hello\n");
    }

    #[test]
    fn view_slice_get_and_copy() {
        let v = RingView::new(b"abc", b"def");
        assert_eq!(v.len(), 6);
        assert_eq!(v.get(2), Some(b'c'));
        assert_eq!(v.get(3), Some(b'd'));
        assert_eq!(v.get(6), None);
        assert_eq!(contents(v.slice(1, 5)), b"bcde");
        assert_eq!(contents(v.slice(4, 100)), b"ef");
        assert!(v.slice(5, 2).is_empty());
        let mut buf = [0u8; 4];
        assert_eq!(v.copy_to(&mut buf), 4);
        assert_eq!(&buf, b"abcd");
    }

    /// The last `n` lines of `data` by the documented rule, computed the slow way.
    fn model_last_lines(data: &[u8], n: usize) -> Vec<u8> {
        if n == 0 {
            return Vec::new();
        }
        let body = data.strip_suffix(b"\n").unwrap_or(data);
        let starts: Vec<usize> = body
            .iter()
            .enumerate()
            .filter(|&(_, &b)| b == b'\n')
            .map(|(i, _)| i + 1)
            .collect();
        let start = if starts.len() >= n {
            starts[starts.len() - n]
        } else {
            0
        };
        data[start..].to_vec()
    }

    proptest::proptest! {
        #[test]
        fn matches_a_model(
            cap in 0usize..40,
            pushes in proptest::collection::vec(
                proptest::collection::vec(proptest::prop_oneof![proptest::prelude::Just(b'\n'), 0x61u8..0x64], 0..30),
                0..20,
            ),
            n in 0usize..8,
        ) {
            let mut r = Ring::with_capacity(cap).unwrap();
            let mut all = Vec::new();
            for p in &pushes {
                r.push(p);
                all.extend_from_slice(p);
                let kept = &all[all.len().saturating_sub(cap)..];
                proptest::prop_assert_eq!(contents(r.view()), kept);
                proptest::prop_assert_eq!(r.len(), kept.len());
                proptest::prop_assert_eq!(contents(r.view().last_lines(n)), model_last_lines(kept, n));
                let joined: Vec<u8> = lines(r.view()).join(&b'\n');
                let expect = kept.strip_suffix(b"\n").unwrap_or(kept);
                proptest::prop_assert_eq!(joined, expect);
            }
            proptest::prop_assert_eq!(r.pushed(), all.len() as u64);
        }
    }
}
