//! End to end: bytes typed on the console through the escape decoder and the
//! line editor into `execute_line`, the way the hypervisor wires them.
#![allow(clippy::unwrap_used, clippy::panic)] // test code: a panic is how a test fails

mod common;

use common::Mock;
use fv_mgmt::*;

/// A console as the hypervisor would drive it: what the guest got, what the
/// operator saw.
struct Console {
    input: ConsoleInput,
    editor: LineEditor,
    guest: Vec<(usize, u8)>,
    screen: String,
}

impl Console {
    fn new() -> Self {
        Console {
            input: ConsoleInput::new(),
            editor: LineEditor::new(),
            guest: Vec::new(),
            screen: String::new(),
        }
    }

    fn type_bytes(&mut self, m: &mut Mock, bytes: &[u8]) {
        for &b in bytes {
            match self.input.feed(b) {
                None => {}
                Some(Input::Guest(b)) => self.guest.push((m.focus, b)),
                Some(Input::Shell(b)) => match self.editor.feed(b) {
                    Edit::Echo(c) => self.screen.push(char::from(c)),
                    Edit::Erase(n) => {
                        for _ in 0..n {
                            self.screen.push_str("\x08 \x08");
                        }
                    }
                    Edit::Line(line) => {
                        self.screen.push('\n');
                        execute_line(line, m, &mut self.screen).unwrap();
                        self.screen.push_str("fv> ");
                    }
                    Edit::TooLong => {
                        self.screen.push_str("\nerror: line too long\nfv> ");
                    }
                    Edit::Cancel => self.screen.push_str("^C\nfv> "),
                    Edit::Bell | Edit::None => {}
                },
                Some(Input::EnterShell) => self.screen.push_str("[shell]\nfv> "),
                Some(Input::LeaveShell) => {
                    self.editor.clear();
                    self.screen.push_str("[left shell]\n");
                }
                Some(Input::SwitchVm(VmSelect::Index(i))) => m.focus = usize::from(i),
                Some(Input::SwitchVm(VmSelect::Next)) => m.focus = (m.focus + 1) % m.vms.len(),
                Some(Input::Help | Input::UnknownEscape(_)) => self.screen.push_str(ESCAPE_HELP),
            }
        }
    }
}

#[test]
fn a_session() {
    let mut m = Mock::new();
    let mut c = Console::new();
    c.type_bytes(&mut m, b"ls\r");
    assert_eq!(c.guest, [(0, b'l'), (0, b's'), (0, b'\r')]);
    c.type_bytes(&mut m, b"\x01c");
    c.type_bytes(&mut m, b"vm paus\x7fse linux0\r");
    assert_eq!(m.vms[0].state, VmState::Paused);
    c.type_bytes(&mut m, b"vm frob\r\r");
    c.type_bytes(&mut m, b"vm stop linux0\x03");
    assert_eq!(m.vms[0].state, VmState::Paused, "Ctrl-C discards the line");
    c.type_bytes(&mut m, b"\x01c");
    c.type_bytes(&mut m, b"\x011x\x01\x01");
    assert_eq!(c.guest[3..], [(1, b'x'), (1, 0x01)]);
    assert_eq!(
        c.screen,
        "[shell]\nfv> vm paus\x08 \x08se linux0\nVM 'linux0' paused\nfv> vm frob\n\
         error: unknown command 'vm frob' (try 'help')\nfv> \nfv> vm stop linux0^C\nfv> \
         [left shell]\n"
    );
}

#[test]
fn an_over_long_line_runs_nothing() {
    let mut m = Mock::new();
    let mut c = Console::new();
    c.type_bytes(&mut m, b"\x01c");
    let mut line = b"vm destroy linux0".to_vec();
    line.extend(std::iter::repeat_n(b' ', MAX_LINE_LEN));
    line.extend_from_slice(b"x\r");
    c.type_bytes(&mut m, &line);
    assert!(c.screen.ends_with("\nerror: line too long\nfv> "));
    assert!(m.calls.is_empty());
    assert_eq!(m.vms[0].state, VmState::Running);
}
