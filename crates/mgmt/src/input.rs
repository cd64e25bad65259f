//! Console input escapes, as QEMU's `-serial mon:stdio` does with Ctrl-A.
//!
//! Every byte typed on the hypervisor's console goes through one
//! [`ConsoleInput`]. Outside the management shell, bytes go to the VM that has
//! the console focus; inside it, to the shell's line editor. Ctrl-A starts an
//! escape; the next byte says what to do:
//!
//! | keys           | event                                            |
//! | -------------- | ------------------------------------------------ |
//! | Ctrl-A c       | enter the management shell, or leave it          |
//! | Ctrl-A n       | console focus to the next VM                     |
//! | Ctrl-A 0..9    | console focus to the VM with that index          |
//! | Ctrl-A h, ?    | show the escape keys                             |
//! | Ctrl-A Ctrl-A  | a literal Ctrl-A (to the guest, or the shell)    |
//! | Ctrl-A other   | [`Input::UnknownEscape`]; the byte is not passed on |

/// Ctrl-A, the escape byte.
pub const ESCAPE_BYTE: u8 = 0x01;

/// The escape keys, for people (what to print on [`Input::Help`]).
pub const ESCAPE_HELP: &str = "\
Ctrl-A c       enter or leave the management shell
Ctrl-A n       console input to the next VM
Ctrl-A 0..9    console input to the VM with that index (see 'vm list')
Ctrl-A h       this help
Ctrl-A Ctrl-A  send Ctrl-A
";

/// Which VM should get the console focus.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum VmSelect {
    /// The next VM (by index) that can take input, wrapping around.
    Next,
    /// The VM with this index (0..=9).
    Index(u8),
}

/// What one input byte means.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Input {
    /// A byte for the VM that has the console focus.
    Guest(u8),
    /// A byte for the management shell's line editor.
    Shell(u8),
    /// The shell was entered (print a banner and a prompt).
    EnterShell,
    /// The shell was left (input goes to the focused VM again).
    LeaveShell,
    /// Move the console focus.
    SwitchVm(VmSelect),
    /// Show [`ESCAPE_HELP`].
    Help,
    /// Ctrl-A followed by a byte with no meaning (that byte is swallowed).
    UnknownEscape(u8),
}

/// The escape state machine.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct ConsoleInput {
    shell: bool,
    escape: bool,
}

impl ConsoleInput {
    /// Input goes to the guests; no escape pending.
    pub const fn new() -> Self {
        ConsoleInput {
            shell: false,
            escape: false,
        }
    }

    /// Whether input currently goes to the management shell.
    pub fn in_shell(&self) -> bool {
        self.shell
    }

    /// Whether a Ctrl-A was seen and the next byte completes the escape.
    pub fn escape_pending(&self) -> bool {
        self.escape
    }

    /// Leaves the shell without an escape (for example after `console NAME`);
    /// true if it was in the shell.
    pub fn leave_shell(&mut self) -> bool {
        core::mem::replace(&mut self.shell, false)
    }

    /// Enters the shell without an escape; true if it was not in it already.
    pub fn enter_shell(&mut self) -> bool {
        !core::mem::replace(&mut self.shell, true)
    }

    /// Takes one typed byte; `None` when it only starts an escape.
    pub fn feed(&mut self, byte: u8) -> Option<Input> {
        if !core::mem::replace(&mut self.escape, false) {
            if byte == ESCAPE_BYTE {
                self.escape = true;
                return None;
            }
            return Some(self.pass(byte));
        }
        Some(match byte {
            ESCAPE_BYTE => self.pass(ESCAPE_BYTE),
            b'c' | b'C' => {
                self.shell = !self.shell;
                if self.shell {
                    Input::EnterShell
                } else {
                    Input::LeaveShell
                }
            }
            b'n' | b'N' => Input::SwitchVm(VmSelect::Next),
            b'0'..=b'9' => Input::SwitchVm(VmSelect::Index(byte - b'0')),
            b'h' | b'H' | b'?' => Input::Help,
            other => Input::UnknownEscape(other),
        })
    }

    fn pass(&self, byte: u8) -> Input {
        if self.shell {
            Input::Shell(byte)
        } else {
            Input::Guest(byte)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn feed_all(c: &mut ConsoleInput, bytes: &[u8]) -> Vec<Input> {
        bytes.iter().filter_map(|&b| c.feed(b)).collect()
    }

    #[test]
    fn plain_bytes_go_to_the_guest() {
        let mut c = ConsoleInput::new();
        assert_eq!(
            feed_all(&mut c, b"ls\r"),
            [Input::Guest(b'l'), Input::Guest(b's'), Input::Guest(b'\r')]
        );
        assert!(!c.in_shell());
    }

    #[test]
    fn ctrl_a_c_toggles_the_shell() {
        let mut c = ConsoleInput::new();
        assert_eq!(c.feed(ESCAPE_BYTE), None);
        assert!(c.escape_pending());
        assert_eq!(c.feed(b'c'), Some(Input::EnterShell));
        assert!(c.in_shell() && !c.escape_pending());
        assert_eq!(
            feed_all(&mut c, b"vm"),
            [Input::Shell(b'v'), Input::Shell(b'm')]
        );
        assert_eq!(feed_all(&mut c, b"\x01c"), [Input::LeaveShell]);
        assert!(!c.in_shell());
        assert_eq!(feed_all(&mut c, b"x"), [Input::Guest(b'x')]);
    }

    #[test]
    fn ctrl_a_ctrl_a_sends_ctrl_a_where_input_goes() {
        let mut c = ConsoleInput::new();
        assert_eq!(feed_all(&mut c, b"\x01\x01"), [Input::Guest(0x01)]);
        // The literal Ctrl-A does not start another escape.
        assert_eq!(feed_all(&mut c, b"c"), [Input::Guest(b'c')]);
        c.enter_shell();
        assert_eq!(feed_all(&mut c, b"\x01\x01"), [Input::Shell(0x01)]);
    }

    #[test]
    fn vm_switching_help_and_unknown() {
        let mut c = ConsoleInput::new();
        assert_eq!(
            feed_all(&mut c, b"\x01n\x010\x017\x019\x01h\x01?\x01z"),
            [
                Input::SwitchVm(VmSelect::Next),
                Input::SwitchVm(VmSelect::Index(0)),
                Input::SwitchVm(VmSelect::Index(7)),
                Input::SwitchVm(VmSelect::Index(9)),
                Input::Help,
                Input::Help,
                Input::UnknownEscape(b'z'),
            ]
        );
        // Escapes work the same inside the shell, and do not leave it.
        c.enter_shell();
        assert_eq!(
            feed_all(&mut c, b"\x01n"),
            [Input::SwitchVm(VmSelect::Next)]
        );
        assert!(c.in_shell());
        // The byte after an unknown escape is ordinary input again.
        assert_eq!(
            feed_all(&mut c, b"\x01xy"),
            [Input::UnknownEscape(b'x'), Input::Shell(b'y')]
        );
    }

    #[test]
    fn enter_and_leave_report_changes() {
        let mut c = ConsoleInput::new();
        assert!(c.enter_shell());
        assert!(!c.enter_shell());
        assert!(c.leave_shell());
        assert!(!c.leave_shell());
    }

    #[test]
    fn any_byte_sequence_is_accepted() {
        // Exhaustive over every pair after Ctrl-A, in and out of the shell.
        for shell in [false, true] {
            for b in 0..=255u8 {
                let mut c = ConsoleInput::new();
                if shell {
                    c.enter_shell();
                }
                assert_eq!(c.feed(ESCAPE_BYTE), None);
                assert!(c.feed(b).is_some());
                assert!(!c.escape_pending());
            }
        }
    }
}
