//! Formatting helpers shared by the human and machine replies.

use crate::command::MAX_NAME_LEN;
use core::fmt::{self, Display, Write};

/// A byte count as `256M`, `1G`, `4K`, `0`, or `1234B` when no unit divides it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Size(pub u64);

impl Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        if v == 0 {
            return f.write_str("0");
        }
        for (shift, unit) in [(40u32, "T"), (30, "G"), (20, "M"), (10, "K")] {
            if v.trailing_zeros() >= shift {
                return write!(f, "{}{unit}", v >> shift);
            }
        }
        write!(f, "{v}B")
    }
}

/// Timer ticks as seconds with milliseconds (`1.234s`); raw ticks if the
/// timebase is unknown.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ticks {
    pub ticks: u64,
    pub hz: u64,
}

impl Display for Ticks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.hz == 0 {
            return write!(f, "{} ticks", self.ticks);
        }
        let secs = self.ticks / self.hz;
        let ms = u128::from(self.ticks % self.hz) * 1000 / u128::from(self.hz);
        write!(f, "{secs}.{ms:03}s")
    }
}

/// `part` as a whole percentage of `part + rest`; `-` when both are zero.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Percent {
    pub part: u64,
    pub rest: u64,
}

impl Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = u128::from(self.part) + u128::from(self.rest);
        if whole == 0 {
            return f.write_str("-");
        }
        write!(f, "{}%", u128::from(self.part) * 100 / whole)
    }
}

/// An optional number, `-` when absent.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Opt<T>(pub Option<T>);

impl<T: Display> Display for Opt<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(v) => v.fmt(f),
            None => f.write_str("-"),
        }
    }
}

struct Counter(usize);

impl Write for Counter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0 = self.0.saturating_add(s.chars().count());
        Ok(())
    }
}

/// Characters `d` displays as.
pub(crate) fn width(d: &dyn Display) -> usize {
    let mut c = Counter(0);
    let _ = write!(c, "{d}");
    c.0
}

fn spaces(out: &mut dyn Write, n: usize) -> fmt::Result {
    for _ in 0..n {
        out.write_char(' ')?;
    }
    Ok(())
}

/// Column alignment.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Align {
    Left,
    Right,
}

/// A table printed in two passes: measure every row, then print them.
pub(crate) struct Table<const C: usize> {
    widths: [usize; C],
    align: [Align; C],
    /// Spaces before each column (the first column's is the indent).
    gap: [usize; C],
}

impl<const C: usize> Table<C> {
    pub fn new(align: [Align; C], gap: [usize; C]) -> Self {
        Table {
            widths: [0; C],
            align,
            gap,
        }
    }

    pub fn measure(&mut self, cells: [&dyn Display; C]) {
        for (w, c) in self.widths.iter_mut().zip(cells) {
            *w = (*w).max(width(c));
        }
    }

    /// Prints one row; no trailing blanks.
    pub fn row(&self, out: &mut dyn Write, cells: [&dyn Display; C]) -> fmt::Result {
        let mut line_end = 0; // last column with content
        let lens = cells.map(width);
        for (i, &l) in lens.iter().enumerate() {
            if l > 0 {
                line_end = i + 1;
            }
        }
        for (i, cell) in cells.iter().enumerate().take(line_end) {
            let w = self.widths.get(i).copied().unwrap_or(0);
            let l = lens.get(i).copied().unwrap_or(0);
            spaces(out, self.gap.get(i).copied().unwrap_or(0))?;
            let pad = w.saturating_sub(l);
            match self.align.get(i) {
                Some(Align::Right) => {
                    spaces(out, pad)?;
                    write!(out, "{cell}")?;
                }
                _ => {
                    write!(out, "{cell}")?;
                    if i + 1 < line_end {
                        spaces(out, pad)?;
                    }
                }
            }
        }
        out.write_char('\n')
    }
}

pub(crate) use crate::console_out::write_sanitized;

/// A VM name copied out of a callback (names are at most [`MAX_NAME_LEN`] bytes).
pub(crate) struct NameBuf {
    bytes: [u8; MAX_NAME_LEN],
    len: usize,
}

impl NameBuf {
    pub fn new() -> Self {
        NameBuf {
            bytes: [0; MAX_NAME_LEN],
            len: 0,
        }
    }

    /// Copies `name`; false (and empty) if it does not fit.
    pub fn set(&mut self, name: &str) -> bool {
        match self.bytes.get_mut(..name.len()) {
            Some(dst) => {
                dst.copy_from_slice(name.as_bytes());
                self.len = name.len();
                true
            }
            None => {
                self.len = 0;
                false
            }
        }
    }

    pub fn as_str(&self) -> &str {
        // Whole `&str`s are copied in, so this is always valid UTF-8.
        core::str::from_utf8(self.bytes.get(..self.len).unwrap_or(&[])).unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::{String, ToString};

    #[test]
    fn sizes() {
        assert_eq!(Size(0).to_string(), "0");
        assert_eq!(Size(256 << 20).to_string(), "256M");
        assert_eq!(Size(3 << 29).to_string(), "1536M");
        assert_eq!(Size(2 << 30).to_string(), "2G");
        assert_eq!(Size(4096).to_string(), "4K");
        assert_eq!(Size(1 << 40).to_string(), "1T");
        assert_eq!(Size(1000).to_string(), "1000B");
        assert_eq!(Size(u64::MAX).to_string(), "18446744073709551615B");
    }

    #[test]
    fn ticks_and_percent() {
        assert_eq!(
            Ticks {
                ticks: 12_345_678,
                hz: 10_000_000
            }
            .to_string(),
            "1.234s"
        );
        assert_eq!(Ticks { ticks: 5, hz: 0 }.to_string(), "5 ticks");
        assert_eq!(
            Ticks {
                ticks: u64::MAX,
                hz: u64::MAX - 1
            }
            .to_string(),
            "1.000s"
        );
        assert_eq!(Percent { part: 1, rest: 2 }.to_string(), "33%");
        assert_eq!(Percent { part: 0, rest: 0 }.to_string(), "-");
        assert_eq!(
            Percent {
                part: u64::MAX,
                rest: 0
            }
            .to_string(),
            "100%"
        );
    }

    #[test]
    fn table_aligns_and_trims() {
        let mut t = Table::new([Align::Left, Align::Right, Align::Left], [2, 2, 2]);
        t.measure([&"NAME", &"N", &"X"]);
        t.measure([&"alpha", &12345u64, &""]);
        let mut s = String::new();
        t.row(&mut s, [&"NAME", &"N", &"X"]).unwrap();
        t.row(&mut s, [&"alpha", &12345u64, &""]).unwrap();
        t.row(&mut s, [&"b", &1u64, &"y"]).unwrap();
        assert_eq!(s, "  NAME       N  X\n  alpha  12345\n  b          1  y\n");
    }

    fn sanitize(b: &[u8]) -> String {
        let mut s = String::new();
        write_sanitized(&mut s, b.iter().copied()).unwrap();
        s
    }

    #[test]
    fn sanitizing() {
        assert_eq!(sanitize(b"hello\tworld\r"), "hello\tworld");
        assert_eq!(sanitize(b"\x1b[31mred\x07\x7f"), "red??");
        assert_eq!(
            sanitize("caf\u{e9} \u{20ac}".as_bytes()),
            "caf\u{e9} \u{20ac}"
        );
        // C1 control U+009B (a CSI to some terminals).
        assert_eq!(sanitize("a\u{9b}b".as_bytes()), "a?b");
        // Invalid: lone continuation, cut sequence, overlong, trailing lead byte.
        assert_eq!(sanitize(b"\x80x"), "\u{fffd}x");
        assert_eq!(sanitize(b"\xe2\x82x"), "\u{fffd}x");
        assert_eq!(sanitize(b"\xe0\x80\x80"), "\u{fffd}");
        assert_eq!(sanitize(b"ok\xf0"), "ok\u{fffd}");
        assert_eq!(sanitize(b"\xff\xc0"), "\u{fffd}\u{fffd}");
    }

    #[test]
    fn name_buf() {
        let mut n = NameBuf::new();
        assert!(n.set("linux0"));
        assert_eq!(n.as_str(), "linux0");
        let long = "x".repeat(MAX_NAME_LEN + 1);
        assert!(!n.set(&long));
        assert_eq!(n.as_str(), "");
        assert!(n.set(&long[..MAX_NAME_LEN]));
        assert_eq!(n.as_str().len(), MAX_NAME_LEN);
    }
}
