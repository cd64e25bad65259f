//! The management shell's line editor: a fixed buffer of [`MAX_LINE_LEN`]
//! bytes, printable characters, backspace, Ctrl-U, Ctrl-C and Enter. It tells
//! the caller what to echo; it never writes anything itself.

use crate::command::MAX_LINE_LEN;

/// What the caller should do after a byte.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Edit<'a> {
    /// Nothing (ignored control byte, part of a terminal escape sequence, the LF of CR LF).
    None,
    /// The byte was added: echo it.
    Echo(u8),
    /// Characters were removed from the end: erase that many columns
    /// (`"\x08 \x08"` each).
    Erase(usize),
    /// Refused (line full, nothing to erase): ring the bell or ignore.
    Bell,
    /// Enter: here is the line (valid until the next byte); echo a newline.
    Line(&'a [u8]),
    /// Enter on a line that overflowed: it is discarded, never run truncated.
    TooLong,
    /// Ctrl-C: the line is discarded; echo `^C` and a newline.
    Cancel,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Esc {
    /// Not in a terminal escape sequence.
    No,
    /// After ESC.
    Start,
    /// After ESC [ or ESC O: until a final byte 0x40..=0x7e.
    Body,
}

/// A one-line editor over a fixed buffer.
#[derive(Clone, Debug)]
pub struct LineEditor {
    buf: [u8; MAX_LINE_LEN],
    len: usize,
    /// Bytes were dropped because the buffer was full.
    overflow: bool,
    /// The last call returned a line; the next byte starts a new one.
    submitted: bool,
    /// The last byte was CR (a following LF is not a second Enter).
    after_cr: bool,
    esc: Esc,
}

impl Default for LineEditor {
    fn default() -> Self {
        Self::new()
    }
}

impl LineEditor {
    /// An empty line.
    pub const fn new() -> Self {
        LineEditor {
            buf: [0; MAX_LINE_LEN],
            len: 0,
            overflow: false,
            submitted: false,
            after_cr: false,
            esc: Esc::No,
        }
    }

    /// The line typed so far (for redrawing it after other output).
    pub fn line(&self) -> &[u8] {
        if self.submitted {
            &[]
        } else {
            self.buf.get(..self.len).unwrap_or(&[])
        }
    }

    /// Discards the line.
    pub fn clear(&mut self) {
        self.len = 0;
        self.overflow = false;
        self.submitted = false;
        self.esc = Esc::No;
    }

    /// Takes one byte typed in the shell.
    pub fn feed(&mut self, byte: u8) -> Edit<'_> {
        if self.submitted {
            self.clear();
        }
        let after_cr = core::mem::replace(&mut self.after_cr, false);
        match self.esc {
            Esc::Start => {
                self.esc = if matches!(byte, b'[' | b'O') {
                    Esc::Body
                } else {
                    Esc::No
                };
                return Edit::None;
            }
            Esc::Body => {
                if (0x40..=0x7e).contains(&byte) {
                    self.esc = Esc::No;
                }
                return Edit::None;
            }
            Esc::No => {}
        }
        match byte {
            b'\r' | b'\n' => {
                if byte == b'\n' && after_cr {
                    return Edit::None;
                }
                self.after_cr = byte == b'\r';
                self.submitted = true;
                if self.overflow {
                    Edit::TooLong
                } else {
                    Edit::Line(self.buf.get(..self.len).unwrap_or(&[]))
                }
            }
            0x08 | 0x7f => {
                if self.erase_char() {
                    Edit::Erase(1)
                } else {
                    Edit::Bell
                }
            }
            // Ctrl-U: erase the whole line.
            0x15 => {
                let mut n = 0;
                while self.erase_char() {
                    n += 1;
                }
                self.overflow = false;
                if n == 0 {
                    Edit::None
                } else {
                    Edit::Erase(n)
                }
            }
            // Ctrl-C.
            0x03 => {
                self.clear();
                Edit::Cancel
            }
            0x1b => {
                self.esc = Esc::Start;
                Edit::None
            }
            b'\t' => self.insert(b' '),
            b if b.is_ascii_control() => Edit::None,
            b => self.insert(b),
        }
    }

    fn insert(&mut self, b: u8) -> Edit<'static> {
        match self.buf.get_mut(self.len) {
            Some(slot) => {
                *slot = b;
                self.len += 1;
                Edit::Echo(b)
            }
            None => {
                self.overflow = true;
                Edit::Bell
            }
        }
    }

    /// Removes the last character (all bytes of a UTF-8 sequence); false if empty.
    fn erase_char(&mut self) -> bool {
        if self.len == 0 {
            return false;
        }
        let line = self.buf.get(..self.len).unwrap_or(&[]);
        // Back over continuation bytes (10xxxxxx) to the start of the character,
        // at most 3 of them.
        let mut start = self.len - 1;
        let mut k = 0;
        while k < 3 && start > 0 && line.get(start).is_some_and(|&b| b & 0xc0 == 0x80) {
            start -= 1;
            k += 1;
        }
        // Only a well-formed lead byte takes its continuation bytes with it.
        let lead_ok = line.get(start).is_some_and(|&b| b >= 0xc0);
        self.len = if k > 0 && lead_ok {
            start
        } else {
            self.len - 1
        };
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn type_str(e: &mut LineEditor, s: &[u8]) {
        for &b in s {
            let _ = e.feed(b);
        }
    }

    #[test]
    fn typing_echoes_and_enter_submits() {
        let mut e = LineEditor::new();
        assert_eq!(e.feed(b'v'), Edit::Echo(b'v'));
        assert_eq!(e.feed(b'm'), Edit::Echo(b'm'));
        assert_eq!(e.line(), b"vm");
        assert_eq!(e.feed(b'\r'), Edit::Line(b"vm"));
        // CR LF is one Enter.
        assert_eq!(e.feed(b'\n'), Edit::None);
        assert_eq!(e.line(), b"");
        assert_eq!(e.feed(b'x'), Edit::Echo(b'x'));
        assert_eq!(e.feed(b'\n'), Edit::Line(b"x"));
        // An empty line is a line (the shell just prompts again).
        assert_eq!(e.feed(b'\n'), Edit::Line(b""));
        assert_eq!(e.feed(b'\r'), Edit::Line(b""));
        assert_eq!(e.feed(b'\r'), Edit::Line(b""));
    }

    #[test]
    fn backspace_and_delete_erase() {
        let mut e = LineEditor::new();
        type_str(&mut e, b"vm lisx");
        assert_eq!(e.feed(0x7f), Edit::Erase(1));
        assert_eq!(e.feed(b't'), Edit::Echo(b't'));
        assert_eq!(e.line(), b"vm list");
        type_str(&mut e, b"\x08\x08\x08\x08\x08\x08");
        assert_eq!(e.line(), b"v");
        assert_eq!(e.feed(0x08), Edit::Erase(1));
        assert_eq!(e.feed(0x08), Edit::Bell);
        assert_eq!(e.line(), b"");
    }

    #[test]
    fn backspace_removes_a_whole_utf8_character() {
        let mut e = LineEditor::new();
        type_str(&mut e, "ab\u{e9}\u{20ac}".as_bytes()); // é (2 bytes), € (3 bytes)
        assert_eq!(e.line().len(), 7);
        assert_eq!(e.feed(0x7f), Edit::Erase(1));
        assert_eq!(e.line(), "ab\u{e9}".as_bytes());
        assert_eq!(e.feed(0x7f), Edit::Erase(1));
        assert_eq!(e.line(), b"ab");
        // A stray continuation byte goes alone.
        type_str(&mut e, &[0x80, 0x80]);
        assert_eq!(e.feed(0x7f), Edit::Erase(1));
        assert_eq!(e.line(), &[b'a', b'b', 0x80]);
    }

    #[test]
    fn ctrl_u_and_ctrl_c() {
        let mut e = LineEditor::new();
        type_str(&mut e, "vm \u{e9}".as_bytes());
        assert_eq!(e.feed(0x15), Edit::Erase(4));
        assert_eq!(e.line(), b"");
        assert_eq!(e.feed(0x15), Edit::None);
        type_str(&mut e, b"vm stop x");
        assert_eq!(e.feed(0x03), Edit::Cancel);
        assert_eq!(e.line(), b"");
        assert_eq!(e.feed(b'\r'), Edit::Line(b""));
    }

    #[test]
    fn tab_is_a_space_controls_and_arrow_keys_are_ignored() {
        let mut e = LineEditor::new();
        assert_eq!(e.feed(b'\t'), Edit::Echo(b' '));
        assert_eq!(e.feed(0x07), Edit::None);
        // Up arrow (ESC [ A), F1 (ESC O P), Delete (ESC [ 3 ~).
        for seq in [&b"\x1b[A"[..], b"\x1bOP", b"\x1b[3~"] {
            for &b in seq {
                assert_eq!(e.feed(b), Edit::None);
            }
        }
        // ESC followed by something else swallows just that byte.
        assert_eq!(e.feed(0x1b), Edit::None);
        assert_eq!(e.feed(b'x'), Edit::None);
        assert_eq!(e.feed(b'y'), Edit::Echo(b'y'));
        assert_eq!(e.line(), b" y");
    }

    #[test]
    fn overflow_rejects_the_line_instead_of_truncating() {
        let mut e = LineEditor::new();
        for _ in 0..MAX_LINE_LEN {
            assert_eq!(e.feed(b'a'), Edit::Echo(b'a'));
        }
        assert_eq!(e.feed(b'b'), Edit::Bell);
        assert_eq!(e.line().len(), MAX_LINE_LEN);
        // Erasing some does not make the dropped byte forgotten.
        assert_eq!(e.feed(0x7f), Edit::Erase(1));
        assert_eq!(e.feed(b'\r'), Edit::TooLong);
        assert_eq!(e.line(), b"");
        // The next line is fresh.
        type_str(&mut e, b"help");
        assert_eq!(e.feed(b'\r'), Edit::Line(b"help"));
        // Ctrl-U forgets an overflow along with the text.
        for _ in 0..=MAX_LINE_LEN {
            let _ = e.feed(b'a');
        }
        assert_eq!(e.feed(0x15), Edit::Erase(MAX_LINE_LEN));
        type_str(&mut e, b"log");
        assert_eq!(e.feed(b'\r'), Edit::Line(b"log"));
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_are_safe(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            let mut e = LineEditor::new();
            for b in bytes {
                let before = e.line().len();
                match e.feed(b) {
                    Edit::Line(l) => proptest::prop_assert!(l.len() <= MAX_LINE_LEN),
                    Edit::Echo(_) => proptest::prop_assert_eq!(e.line().len(), before + 1),
                    Edit::Erase(n) => proptest::prop_assert!(n >= 1 && e.line().len() < before),
                    _ => {}
                }
                proptest::prop_assert!(e.line().len() <= MAX_LINE_LEN);
            }
        }
    }
}
