//! The command parser: every command, every error, and random input.
#![allow(clippy::unwrap_used, clippy::panic)] // test code: a panic is how a test fails

use fv_mgmt::{parse, parse_bytes, Command, ParseError, VmName, MAX_LINE_LEN, MAX_NAME_LEN};
use proptest::prelude::*;

fn n(s: &str) -> VmName<'_> {
    VmName::new(s).unwrap()
}

#[test]
fn every_command() {
    let cases: Vec<(&str, Command<'_>)> = vec![
        ("vm list", Command::VmList),
        ("vm info web", Command::VmInfo { name: n("web") }),
        ("vm start web", Command::VmStart { name: n("web") }),
        ("vm pause web", Command::VmPause { name: n("web") }),
        ("vm resume web", Command::VmResume { name: n("web") }),
        ("vm stop web", Command::VmStop { name: n("web") }),
        ("vm reboot web", Command::VmReboot { name: n("web") }),
        ("vm destroy web", Command::VmDestroy { name: n("web") }),
        (
            "vm log web",
            Command::VmLog {
                name: n("web"),
                lines: None,
            },
        ),
        (
            "vm log web 50",
            Command::VmLog {
                name: n("web"),
                lines: Some(50),
            },
        ),
        ("stats", Command::Stats { name: None }),
        (
            "stats web",
            Command::Stats {
                name: Some(n("web")),
            },
        ),
        ("log", Command::Log { lines: None }),
        ("log 5", Command::Log { lines: Some(5) }),
        ("console web", Command::Console { name: n("web") }),
        ("help", Command::Help),
        ("?", Command::Help),
    ];
    for (line, want) in cases {
        assert_eq!(parse(line), Ok(want), "{line}");
        // The canonical text reads back to the same command.
        if line != "?" {
            assert_eq!(want.to_string(), line);
        }
    }
}

#[test]
fn blanks_case_and_line_endings() {
    assert_eq!(
        parse("  VM\tPause   web \r\n"),
        Ok(Command::VmPause { name: n("web") })
    );
    assert_eq!(parse("Stats"), Ok(Command::Stats { name: None }));
    assert_eq!(parse("HELP\n"), Ok(Command::Help));
    // Names keep their case.
    assert_eq!(parse("vm info Web"), Ok(Command::VmInfo { name: n("Web") }));
    assert_eq!(parse_bytes(b"log 007"), Ok(Command::Log { lines: Some(7) }));
}

#[test]
fn names_follow_the_config_rule() {
    for ok in ["a", "0", "vm-1", "a.b_c-D", &"x".repeat(MAX_NAME_LEN)] {
        assert!(VmName::is_valid(ok), "{ok}");
        assert!(matches!(
            parse(&format!("vm info {ok}")),
            Ok(Command::VmInfo { .. })
        ));
    }
    let long = "x".repeat(MAX_NAME_LEN + 1);
    for bad in ["-a", ".a", "_a", "a/b", "a=b", "a\"", "a'", "a*", &long] {
        assert!(!VmName::is_valid(bad), "{bad}");
        let line = format!("vm info {bad}");
        assert_eq!(
            parse(&line),
            Err(ParseError::BadName { name: bad }),
            "{bad}"
        );
    }
    assert!(!VmName::is_valid(""));
}

#[test]
fn errors_say_what_is_wrong() {
    use ParseError::*;
    let cases: Vec<(&str, ParseError<'_>, &str)> = vec![
        ("", Empty, "empty line"),
        ("  \t\r\n", Empty, "empty line"),
        (
            "frobnicate now",
            UnknownCommand { word: "frobnicate" },
            "unknown command 'frobnicate' (try 'help')",
        ),
        (
            "vm",
            MissingSubcommand {
                usage: "vm list|info|start|pause|resume|stop|reboot|destroy NAME, vm log NAME [N]",
            },
            "missing subcommand; usage: vm list|info|start|pause|resume|stop|reboot|destroy NAME, vm log NAME [N]",
        ),
        (
            "vm explode web",
            UnknownSubcommand { word: "explode" },
            "unknown command 'vm explode' (try 'help')",
        ),
        (
            "vm info",
            MissingArgument {
                usage: "vm info NAME",
            },
            "missing argument; usage: vm info NAME",
        ),
        (
            "vm destroy",
            MissingArgument {
                usage: "vm destroy NAME",
            },
            "missing argument; usage: vm destroy NAME",
        ),
        (
            "console",
            MissingArgument {
                usage: "console NAME",
            },
            "missing argument; usage: console NAME",
        ),
        (
            "vm log",
            MissingArgument {
                usage: "vm log NAME [N]",
            },
            "missing argument; usage: vm log NAME [N]",
        ),
        (
            "vm list all",
            ExtraArgument {
                word: "all",
                usage: "vm list",
            },
            "unexpected argument 'all'; usage: vm list",
        ),
        (
            "vm stop a b",
            ExtraArgument {
                word: "b",
                usage: "vm stop NAME",
            },
            "unexpected argument 'b'; usage: vm stop NAME",
        ),
        (
            "stats a b",
            ExtraArgument {
                word: "b",
                usage: "stats [NAME]",
            },
            "unexpected argument 'b'; usage: stats [NAME]",
        ),
        (
            "log 5 6",
            ExtraArgument {
                word: "6",
                usage: "log [N]",
            },
            "unexpected argument '6'; usage: log [N]",
        ),
        (
            "vm log a 5 6",
            ExtraArgument {
                word: "6",
                usage: "vm log NAME [N]",
            },
            "unexpected argument '6'; usage: vm log NAME [N]",
        ),
        (
            "help me",
            ExtraArgument {
                word: "me",
                usage: "help",
            },
            "unexpected argument 'me'; usage: help",
        ),
        (
            "stats -x",
            BadName { name: "-x" },
            "'-x' is not a valid VM name (1 to 64 characters from A-Z a-z 0-9 . _ -, starting with a letter or digit)",
        ),
        (
            "log ten",
            BadNumber { word: "ten" },
            "'ten' is not a valid line count (a whole number from 1)",
        ),
        (
            "log 0",
            BadNumber { word: "0" },
            "'0' is not a valid line count (a whole number from 1)",
        ),
        (
            "log +5",
            BadNumber { word: "+5" },
            "'+5' is not a valid line count (a whole number from 1)",
        ),
        (
            "log 99999999999999999999999",
            BadNumber {
                word: "99999999999999999999999",
            },
            "'99999999999999999999999' is not a valid line count (a whole number from 1)",
        ),
        (
            "vm log web -1",
            BadNumber { word: "-1" },
            "'-1' is not a valid line count (a whole number from 1)",
        ),
        (
            "vm info caf\u{e9}",
            NonAscii { position: 11 },
            "non-ASCII character at column 12: commands and VM names are ASCII",
        ),
        (
            "vm list\x1b[A",
            ControlCharacter {
                position: 7,
                byte: 0x1b,
            },
            "control character 0x1b at column 8",
        ),
        (
            "vm\0list",
            ControlCharacter {
                position: 2,
                byte: 0,
            },
            "control character 0x00 at column 3",
        ),
        (
            "vm list\x7f",
            ControlCharacter {
                position: 7,
                byte: 0x7f,
            },
            "control character 0x7f at column 8",
        ),
    ];
    for (line, err, msg) in cases {
        let got = parse(line);
        assert_eq!(got, Err(err), "{line:?}");
        assert_eq!(err.to_string(), msg, "{line:?}");
    }
}

#[test]
fn over_long_lines_are_refused_whole() {
    let max = format!("vm info {}", "a".repeat(MAX_LINE_LEN - 8));
    assert_eq!(max.len(), MAX_LINE_LEN);
    // Exactly the limit parses far enough to reject the (too long) name...
    assert!(matches!(parse(&max), Err(ParseError::BadName { .. })));
    // ...one more byte is refused before anything else is looked at.
    let over = format!("{max}a");
    assert_eq!(
        parse(&over),
        Err(ParseError::TooLong {
            len: MAX_LINE_LEN + 1
        })
    );
    assert_eq!(
        parse(&over).unwrap_err().to_string(),
        "line too long (257 bytes; at most 256)"
    );
    let spaces = format!("help{}", " ".repeat(MAX_LINE_LEN));
    assert!(matches!(parse(&spaces), Err(ParseError::TooLong { .. })));
    // Invalid UTF-8 as bytes.
    assert_eq!(
        parse_bytes(b"vm info \xff"),
        Err(ParseError::NonAscii { position: 8 })
    );
}

#[test]
fn error_kinds_are_distinct_tokens() {
    let errs = [
        ParseError::Empty,
        ParseError::TooLong { len: 0 },
        ParseError::NonAscii { position: 0 },
        ParseError::ControlCharacter {
            position: 0,
            byte: 0,
        },
        ParseError::UnknownCommand { word: "" },
        ParseError::MissingSubcommand { usage: "" },
        ParseError::UnknownSubcommand { word: "" },
        ParseError::MissingArgument { usage: "" },
        ParseError::ExtraArgument {
            word: "",
            usage: "",
        },
        ParseError::BadName { name: "" },
        ParseError::BadNumber { word: "" },
    ];
    let kinds: std::collections::BTreeSet<_> = errs.iter().map(|e| e.kind()).collect();
    assert_eq!(kinds.len(), errs.len());
}

fn name_strategy() -> impl Strategy<Value = String> {
    "[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
}

/// Builds a command from generated parts (commands borrow their names).
fn build<'a>(kind: u8, name: &'a str, lines: Option<usize>) -> Command<'a> {
    let name = VmName::new(name).unwrap();
    match kind % 13 {
        0 => Command::VmList,
        1 => Command::VmInfo { name },
        2 => Command::VmStart { name },
        3 => Command::VmPause { name },
        4 => Command::VmResume { name },
        5 => Command::VmStop { name },
        6 => Command::VmReboot { name },
        7 => Command::VmDestroy { name },
        8 => Command::VmLog { name, lines },
        9 => Command::Stats { name: Some(name) },
        10 => Command::Stats { name: None },
        11 => Command::Log { lines },
        _ => Command::Console { name },
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn never_panics_on_any_string(s in any::<String>()) {
        let r = parse(&s);
        if s.len() > MAX_LINE_LEN {
            prop_assert_eq!(r, Err(ParseError::TooLong { len: s.len() }));
        } else if !s.is_ascii() {
            let non_ascii = matches!(r, Err(ParseError::NonAscii { .. }));
            prop_assert!(non_ascii);
        }
        if let Err(e) = r {
            prop_assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn never_panics_on_any_bytes(b in proptest::collection::vec(any::<u8>(), 0..400)) {
        if let Ok(cmd) = parse_bytes(&b) {
            // Whatever parses re-parses from its canonical text.
            let text = cmd.to_string();
            prop_assert_eq!(parse(&text), Ok(cmd));
        }
    }

    #[test]
    fn never_panics_on_command_like_words(
        words in proptest::collection::vec(
            prop_oneof![
                Just("vm".to_string()), Just("list".to_string()), Just("info".to_string()),
                Just("log".to_string()), Just("stats".to_string()), Just("console".to_string()),
                Just("help".to_string()), Just("destroy".to_string()), "[ -~]{0,8}", "[0-9]{1,25}",
            ],
            0..6,
        ),
        sep in "[ \t]{1,3}",
    ) {
        let line = words.join(&sep);
        if let Ok(cmd) = parse(&line) {
            let text = cmd.to_string();
            prop_assert_eq!(parse(&text), Ok(cmd));
        }
    }

    #[test]
    fn canonical_text_round_trips(
        kind in any::<u8>(),
        name in name_strategy(),
        lines in proptest::option::of(1usize..=usize::MAX),
    ) {
        let cmd = build(kind, &name, lines);
        let text = cmd.to_string();
        prop_assert!(text.len() <= MAX_LINE_LEN);
        prop_assert_eq!(parse(&text), Ok(cmd));
    }
}
