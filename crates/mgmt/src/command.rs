//! The command language: one command per line, words separated by spaces or
//! tabs, keywords case-insensitive, VM names case-sensitive.
//!
//! ```text
//! vm list                 every VM, its state and placement
//! vm info NAME            one VM and its vCPUs
//! vm start NAME           create it from the configuration and run it
//! vm pause NAME           stop scheduling its vCPUs
//! vm resume NAME          schedule them again
//! vm stop NAME            stop it for good (forced)
//! vm reboot NAME          reset it and reload its images
//! vm destroy NAME         stop it and free its memory
//! vm log NAME [N]         last N lines (default 20) of its console output
//! stats [NAME]            counters per VM and vCPU (and per hart without NAME)
//! log [N]                 last N lines (default 20) of the hypervisor log
//! console NAME            send console input to that VM
//! help                    this list (also `?`)
//! ```
//!
//! [`parse`] never panics and never allocates: errors borrow the offending word
//! from the line.

use crate::model::Action;
use core::fmt;

/// Longest command line accepted, bytes (longer lines are refused whole, never truncated).
pub const MAX_LINE_LEN: usize = 256;
/// Longest VM name, bytes (as in the boot package and the host tool's config).
pub const MAX_NAME_LEN: usize = 64;
/// Lines `log` and `vm log` show when no count is given.
pub const DEFAULT_LOG_LINES: usize = 20;

/// A syntactically valid VM name: 1..=[`MAX_NAME_LEN`] characters from
/// `A-Z a-z 0-9 . _ -`, starting with a letter or digit (the host tool's rule).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct VmName<'a>(&'a str);

impl<'a> VmName<'a> {
    /// `Some` if `name` follows the naming rule.
    pub fn new(name: &'a str) -> Option<Self> {
        Self::is_valid(name).then_some(VmName(name))
    }

    /// Whether `name` follows the naming rule.
    pub fn is_valid(name: &str) -> bool {
        let b = name.as_bytes();
        !b.is_empty()
            && b.len() <= MAX_NAME_LEN
            && b.first().is_some_and(|c| c.is_ascii_alphanumeric())
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
    }

    /// The name.
    pub fn as_str(self) -> &'a str {
        self.0
    }
}

impl fmt::Display for VmName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// A parsed command. `Display` gives its canonical text, which [`parse`] reads
/// back to the same command (what a remote client sends).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Command<'a> {
    /// `vm list`.
    VmList,
    /// `vm info NAME`.
    VmInfo {
        /// The VM.
        name: VmName<'a>,
    },
    /// `vm start NAME`.
    VmStart {
        /// The VM.
        name: VmName<'a>,
    },
    /// `vm pause NAME`.
    VmPause {
        /// The VM.
        name: VmName<'a>,
    },
    /// `vm resume NAME`.
    VmResume {
        /// The VM.
        name: VmName<'a>,
    },
    /// `vm stop NAME` (forced).
    VmStop {
        /// The VM.
        name: VmName<'a>,
    },
    /// `vm reboot NAME`.
    VmReboot {
        /// The VM.
        name: VmName<'a>,
    },
    /// `vm destroy NAME`.
    VmDestroy {
        /// The VM.
        name: VmName<'a>,
    },
    /// `vm log NAME [N]`: the VM's console history.
    VmLog {
        /// The VM.
        name: VmName<'a>,
        /// Lines to show; `None` means [`DEFAULT_LOG_LINES`].
        lines: Option<usize>,
    },
    /// `stats [NAME]`.
    Stats {
        /// One VM, or all VMs and the harts.
        name: Option<VmName<'a>>,
    },
    /// `log [N]`: the hypervisor log.
    Log {
        /// Lines to show; `None` means [`DEFAULT_LOG_LINES`].
        lines: Option<usize>,
    },
    /// `console NAME`: console input goes to that VM.
    Console {
        /// The VM.
        name: VmName<'a>,
    },
    /// `help` or `?`.
    Help,
}

impl<'a> Command<'a> {
    /// The lifecycle action and its VM, for the six lifecycle commands.
    pub fn action(&self) -> Option<(Action, VmName<'a>)> {
        match *self {
            Command::VmStart { name } => Some((Action::Start, name)),
            Command::VmPause { name } => Some((Action::Pause, name)),
            Command::VmResume { name } => Some((Action::Resume, name)),
            Command::VmStop { name } => Some((Action::Stop, name)),
            Command::VmReboot { name } => Some((Action::Reboot, name)),
            Command::VmDestroy { name } => Some((Action::Destroy, name)),
            _ => None,
        }
    }

    /// The VM the command is about, if it names one.
    pub fn vm(&self) -> Option<VmName<'a>> {
        match *self {
            Command::VmInfo { name }
            | Command::VmLog { name, .. }
            | Command::Console { name }
            | Command::Stats { name: Some(name) } => Some(name),
            _ => self.action().map(|(_, n)| n),
        }
    }
}

impl fmt::Display for Command<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((a, name)) = self.action() {
            return write!(f, "vm {} {name}", a.verb());
        }
        match self {
            Command::VmList => f.write_str("vm list"),
            Command::VmInfo { name } => write!(f, "vm info {name}"),
            Command::VmLog { name, lines } => {
                write!(f, "vm log {name}")?;
                match lines {
                    Some(n) => write!(f, " {n}"),
                    None => Ok(()),
                }
            }
            Command::Stats { name: Some(name) } => write!(f, "stats {name}"),
            Command::Stats { name: None } => f.write_str("stats"),
            Command::Log { lines: Some(n) } => write!(f, "log {n}"),
            Command::Log { lines: None } => f.write_str("log"),
            Command::Console { name } => write!(f, "console {name}"),
            Command::Help => f.write_str("help"),
            // The lifecycle commands returned above.
            _ => Ok(()),
        }
    }
}

/// Every command's syntax and what it does (for `help`).
pub const USAGE: &[(&str, &str)] = &[
    ("vm list", "list VMs: state, vCPUs, memory, harts"),
    ("vm info NAME", "one VM and its vCPUs"),
    (
        "vm start NAME",
        "create a VM from the configuration and run it",
    ),
    ("vm pause NAME", "stop scheduling a VM's vCPUs"),
    ("vm resume NAME", "schedule a paused VM again"),
    ("vm stop NAME", "stop a VM for good (forced)"),
    ("vm reboot NAME", "reset a VM and reload its images"),
    ("vm destroy NAME", "stop a VM and free its memory"),
    ("vm log NAME [N]", "last N lines of a VM's console output"),
    (
        "stats [NAME]",
        "exits, SBI calls, interrupts, run time; per hart idle time",
    ),
    ("log [N]", "last N lines of the hypervisor log"),
    ("console NAME", "send console input to a VM"),
    ("help", "this list"),
];

const VM_USAGE: &str = "vm list|info|start|pause|resume|stop|reboot|destroy NAME, vm log NAME [N]";

/// Why a line is not a command. Words borrowed from the line are ASCII without
/// control characters (those are refused first), so they are safe to print.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum ParseError<'a> {
    /// Nothing but blanks (a shell just prompts again).
    Empty,
    /// Longer than [`MAX_LINE_LEN`].
    TooLong {
        /// Length of the line, bytes.
        len: usize,
    },
    /// A byte outside ASCII.
    NonAscii {
        /// Byte offset of the first one.
        position: usize,
    },
    /// A control character other than tab, CR or LF.
    ControlCharacter {
        /// Byte offset of the first one.
        position: usize,
        /// The byte.
        byte: u8,
    },
    /// The first word is no command.
    UnknownCommand {
        /// The word.
        word: &'a str,
    },
    /// `vm` without a subcommand.
    MissingSubcommand {
        /// The syntax expected.
        usage: &'static str,
    },
    /// `vm` followed by a word that is no subcommand.
    UnknownSubcommand {
        /// The word.
        word: &'a str,
    },
    /// A required argument is missing.
    MissingArgument {
        /// The syntax expected.
        usage: &'static str,
    },
    /// More words than the command takes.
    ExtraArgument {
        /// The first word too many.
        word: &'a str,
        /// The syntax expected.
        usage: &'static str,
    },
    /// Not a valid VM name.
    BadName {
        /// The word.
        name: &'a str,
    },
    /// Not a valid line count (a whole number from 1).
    BadNumber {
        /// The word.
        word: &'a str,
    },
}

impl ParseError<'_> {
    /// Token used in machine replies (`error code=parse kind=unknown-command`).
    pub fn kind(&self) -> &'static str {
        match self {
            ParseError::Empty => "empty",
            ParseError::TooLong { .. } => "too-long",
            ParseError::NonAscii { .. } => "non-ascii",
            ParseError::ControlCharacter { .. } => "control-character",
            ParseError::UnknownCommand { .. } => "unknown-command",
            ParseError::MissingSubcommand { .. } => "missing-subcommand",
            ParseError::UnknownSubcommand { .. } => "unknown-subcommand",
            ParseError::MissingArgument { .. } => "missing-argument",
            ParseError::ExtraArgument { .. } => "extra-argument",
            ParseError::BadName { .. } => "bad-name",
            ParseError::BadNumber { .. } => "bad-number",
        }
    }
}

impl fmt::Display for ParseError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ParseError::Empty => f.write_str("empty line"),
            ParseError::TooLong { len } => {
                write!(f, "line too long ({len} bytes; at most {MAX_LINE_LEN})")
            }
            ParseError::NonAscii { position } => write!(
                f,
                "non-ASCII character at column {}: commands and VM names are ASCII",
                position.saturating_add(1)
            ),
            ParseError::ControlCharacter { position, byte } => write!(
                f,
                "control character 0x{byte:02x} at column {}",
                position.saturating_add(1)
            ),
            ParseError::UnknownCommand { word } => {
                write!(f, "unknown command '{word}' (try 'help')")
            }
            ParseError::MissingSubcommand { usage } => {
                write!(f, "missing subcommand; usage: {usage}")
            }
            ParseError::UnknownSubcommand { word } => {
                write!(f, "unknown command 'vm {word}' (try 'help')")
            }
            ParseError::MissingArgument { usage } => {
                write!(f, "missing argument; usage: {usage}")
            }
            ParseError::ExtraArgument { word, usage } => {
                write!(f, "unexpected argument '{word}'; usage: {usage}")
            }
            ParseError::BadName { name } => write!(
                f,
                "'{name}' is not a valid VM name (1 to {MAX_NAME_LEN} characters from \
                 A-Z a-z 0-9 . _ -, starting with a letter or digit)"
            ),
            ParseError::BadNumber { word } => write!(
                f,
                "'{word}' is not a valid line count (a whole number from 1)"
            ),
        }
    }
}

/// Parses one command line (a trailing CR/LF is fine).
pub fn parse(line: &str) -> Result<Command<'_>, ParseError<'_>> {
    parse_bytes(line.as_bytes())
}

/// Parses one command line given as bytes (what a console or channel delivers).
pub fn parse_bytes(line: &[u8]) -> Result<Command<'_>, ParseError<'_>> {
    if line.len() > MAX_LINE_LEN {
        return Err(ParseError::TooLong { len: line.len() });
    }
    for (position, &byte) in line.iter().enumerate() {
        if !byte.is_ascii() {
            return Err(ParseError::NonAscii { position });
        }
        if byte.is_ascii_control() && !is_blank(byte) {
            return Err(ParseError::ControlCharacter { position, byte });
        }
    }
    let text = core::str::from_utf8(line).map_err(|e| ParseError::NonAscii {
        position: e.valid_up_to(),
    })?;
    let mut words = text
        .split(|c: char| is_blank(c as u8))
        .filter(|w| !w.is_empty());
    let Some(first) = words.next() else {
        return Err(ParseError::Empty);
    };
    let (cmd, usage) = if is(first, "vm") {
        let Some(sub) = words.next() else {
            return Err(ParseError::MissingSubcommand { usage: VM_USAGE });
        };
        vm_subcommand(sub, &mut words)?
    } else if is(first, "stats") {
        let name = words.next().map(name).transpose()?;
        (Command::Stats { name }, "stats [NAME]")
    } else if is(first, "log") {
        let lines = words.next().map(count).transpose()?;
        (Command::Log { lines }, "log [N]")
    } else if is(first, "console") {
        let usage = "console NAME";
        let name = required_name(words.next(), usage)?;
        (Command::Console { name }, usage)
    } else if is(first, "help") || first == "?" {
        (Command::Help, "help")
    } else {
        return Err(ParseError::UnknownCommand { word: first });
    };
    match words.next() {
        Some(word) => Err(ParseError::ExtraArgument { word, usage }),
        None => Ok(cmd),
    }
}

fn vm_subcommand<'a>(
    sub: &'a str,
    words: &mut impl Iterator<Item = &'a str>,
) -> Result<(Command<'a>, &'static str), ParseError<'a>> {
    if is(sub, "list") {
        return Ok((Command::VmList, "vm list"));
    }
    if is(sub, "log") {
        let usage = "vm log NAME [N]";
        let name = required_name(words.next(), usage)?;
        let lines = words.next().map(count).transpose()?;
        return Ok((Command::VmLog { name, lines }, usage));
    }
    type Make = for<'n> fn(VmName<'n>) -> Command<'n>;
    let table: [(&str, &'static str, Make); 7] = [
        ("info", "vm info NAME", |name| Command::VmInfo { name }),
        ("start", "vm start NAME", |name| Command::VmStart { name }),
        ("pause", "vm pause NAME", |name| Command::VmPause { name }),
        ("resume", "vm resume NAME", |name| Command::VmResume {
            name,
        }),
        ("stop", "vm stop NAME", |name| Command::VmStop { name }),
        ("reboot", "vm reboot NAME", |name| Command::VmReboot {
            name,
        }),
        ("destroy", "vm destroy NAME", |name| Command::VmDestroy {
            name,
        }),
    ];
    for (word, usage, make) in table {
        if is(sub, word) {
            let name = required_name(words.next(), usage)?;
            return Ok((make(name), usage));
        }
    }
    Err(ParseError::UnknownSubcommand { word: sub })
}

fn is_blank(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn is(word: &str, keyword: &str) -> bool {
    word.eq_ignore_ascii_case(keyword)
}

fn name(word: &str) -> Result<VmName<'_>, ParseError<'_>> {
    VmName::new(word).ok_or(ParseError::BadName { name: word })
}

fn required_name<'a>(
    word: Option<&'a str>,
    usage: &'static str,
) -> Result<VmName<'a>, ParseError<'a>> {
    match word {
        Some(w) => name(w),
        None => Err(ParseError::MissingArgument { usage }),
    }
}

fn count(word: &str) -> Result<usize, ParseError<'_>> {
    let bad = ParseError::BadNumber { word };
    if !word.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad);
    }
    match word.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(bad),
    }
}
