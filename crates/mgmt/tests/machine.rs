//! The machine-readable replies against a mock hypervisor, and a tiny client
//! that reads them back the way the host tool will.
#![allow(clippy::unwrap_used, clippy::panic)] // test code: a panic is how a test fails

mod common;

use common::{run_machine, Mock};
use fv_mgmt::*;
use std::collections::BTreeMap;

#[test]
fn vm_list() {
    let mut m = Mock::new();
    assert_eq!(
        run_machine(&mut m, "vm list"),
        "\
vm index=0 name=linux0 state=running vcpus=2 memory=268435456 resident=12582912 weight=1 vmid=1 harts=0,1 focus=1
vm index=1 name=test state=stopped reason=power-off vcpus=1 memory=16777216 resident=4194304 weight=2 vmid=2 harts=0 focus=0
vm index=2 name=spare state=defined vcpus=1 memory=67108864 resident=0 weight=1 focus=0
ok
"
    );
    assert_eq!(run_machine(&mut Mock::empty(), "vm list"), "ok\n");
}

const HOST: &str =
    "host timebase=10000000 uptime_ticks=123456789 memory=536870912 free=209715200 harts=2\n";
const LINUX0: &str = "\
vm index=0 name=linux0 state=running vcpus=2 memory=268435456 resident=12582912 weight=1 vmid=1 harts=0,1 focus=1
vcpu vm=linux0 vcpu=0 state=running hart=0 pinned=0 run_ticks=6170000 migrations=1 exceptions=0 exit.sbi=300 exit.mmio-write=5 exit.wfi=20 sbi.base=10 sbi.time=290 irq.timer=40 irq.external=5
vcpu vm=linux0 vcpu=1 state=blocked hart=1 pinned=1 run_ticks=6170000 migrations=2 exceptions=0 exit.sbi=378 exit.wfi=20 sbi.time=370 sbi.hsm=8 irq.timer=45
";

#[test]
fn vm_info_and_stats_of_one_vm() {
    let mut m = Mock::new();
    let want = format!("{HOST}{LINUX0}ok\n");
    assert_eq!(run_machine(&mut m, "vm info linux0"), want);
    assert_eq!(run_machine(&mut m, "stats linux0"), want);
}

#[test]
fn stats_of_everything() {
    let mut m = Mock::new();
    assert_eq!(
        run_machine(&mut m, "stats"),
        format!(
            "{HOST}{LINUX0}\
vm index=1 name=test state=stopped reason=power-off vcpus=1 memory=16777216 resident=4194304 weight=2 vmid=2 harts=0 focus=0
vcpu vm=test vcpu=0 state=stopped hart=0 pinned=0 run_ticks=1000 migrations=0 exceptions=2 exit.sbi=7 sbi.base=4 sbi.dbcn=3
vm index=2 name=spare state=defined vcpus=1 memory=67108864 resident=0 weight=1 focus=0
vcpu vm=spare vcpu=0 state=stopped pinned=0 run_ticks=0 migrations=0 exceptions=0
hart hart=0 hartid=0 vcpus=3 run_ticks=8000000 idle_ticks=2000000
hart hart=1 hartid=1 vcpus=1 run_ticks=6000000 idle_ticks=4000000
ok
"
        )
    );
}

#[test]
fn logs_are_byte_exact() {
    let mut m = Mock::new();
    assert_eq!(
        run_machine(&mut m, "log"),
        "line text=\"ferrovisor: boot\"\nline text=\"ferrovisor: VM 'test' powered off\"\nok\n"
    );
    assert_eq!(
        run_machine(&mut m, "vm log linux0 2"),
        "line text=\"Welcome\\x0d\"\nline text=\"/ # \"\nok\n"
    );
    m.vms[1]
        .console
        .as_mut()
        .unwrap()
        .push(b"a\"b\\c\x1b\xff\xc3\xa9\n");
    assert_eq!(
        run_machine(&mut m, "vm log test"),
        "line text=\"a\\\"b\\\\c\\x1b\\xff\\xc3\\xa9\"\nok\n"
    );
    assert_eq!(run_machine(&mut Mock::empty(), "log 3").lines().count(), 3);
    m.log.clear();
    assert_eq!(run_machine(&mut m, "log"), "ok\n");
}

#[test]
fn help_lists_the_protocol_and_commands() {
    let out = run_machine(&mut Mock::new(), "help");
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("protocol version=1"));
    assert_eq!(
        lines.next(),
        Some("command usage=\"vm list\" about=\"list VMs: state, vCPUs, memory, harts\"")
    );
    assert_eq!(
        out.lines().filter(|l| l.starts_with("command ")).count(),
        USAGE.len()
    );
    assert!(out.ends_with("\nok\n"));
}

#[test]
fn actions_and_errors() {
    let mut m = Mock::new();
    let cases = [
        ("vm pause linux0", "ok\n"),
        (
            "vm pause linux0",
            "error code=wrong-state vm=linux0 state=paused msg=\"cannot pause VM 'linux0': it is paused (it must be running)\"\n",
        ),
        (
            "vm start test",
            "error code=no-resources vm=test resource=memory msg=\"cannot start VM 'test': not enough free memory\"\n",
        ),
        (
            "vm stop test",
            "error code=wrong-state vm=test state=stopped reason=power-off msg=\"cannot stop VM 'test': it is stopped (powered off) (it must be running, paused or rebooting)\"\n",
        ),
        (
            "vm info ghost",
            "error code=unknown-vm vm=ghost msg=\"no VM named 'ghost' (see 'vm list')\"\n",
        ),
        (
            "stats ghost",
            "error code=unknown-vm vm=ghost msg=\"no VM named 'ghost' (see 'vm list')\"\n",
        ),
        (
            "vm log spare",
            "error code=no-console vm=spare msg=\"cannot show the console output of VM 'spare': it has no console\"\n",
        ),
        ("console test", "ok\n"),
        (
            "console spare",
            "error code=no-console vm=spare msg=\"cannot switch console input to VM 'spare': it has no console\"\n",
        ),
    ];
    m.host.free_bytes = 1;
    for (line, reply) in cases {
        assert_eq!(run_machine(&mut m, line), reply, "{line}");
    }
    for (err, code) in [
        (MgmtError::Unsupported, "unsupported"),
        (MgmtError::Failed, "failed"),
    ] {
        m.fail_next = Some(err);
        let out = run_machine(&mut m, "vm resume linux0");
        assert!(
            out.starts_with(&format!(
                "error code={code} vm=linux0 msg=\"cannot resume VM 'linux0': "
            )),
            "{out}"
        );
    }
}

#[test]
fn every_request_gets_exactly_one_end_line() {
    let mut m = Mock::new();
    for (line, reply) in [
        ("", "error code=parse kind=empty msg=\"empty line\"\n"),
        (
            "frob",
            "error code=parse kind=unknown-command msg=\"unknown command 'frob' (try 'help')\"\n",
        ),
        (
            "vm info caf\u{e9}",
            "error code=parse kind=non-ascii msg=\"non-ASCII character at column 12: commands and VM names are ASCII\"\n",
        ),
        (
            "log x",
            "error code=parse kind=bad-number msg=\"'x' is not a valid line count (a whole number from 1)\"\n",
        ),
    ] {
        assert_eq!(run_machine(&mut m, line), reply, "{line:?}");
    }
    for line in [
        "vm list",
        "stats",
        "log",
        "help",
        "vm pause linux0",
        "vm pause linux0",
        "x",
    ] {
        let out = run_machine(&mut m, line);
        let ends = out
            .lines()
            .filter(|l| *l == "ok" || l.starts_with("error "))
            .count();
        assert_eq!(ends, 1, "{line}: {out}");
        let last = out.lines().last().unwrap();
        assert!(last == "ok" || last.starts_with("error "), "{line}");
    }
}

/// A reference decoder for the grammar in `fv_mgmt::machine`: kind, then
/// `key=value` fields; values bare or quoted with `\\`, `\"`, `\xNN`.
fn decode(line: &str) -> (String, BTreeMap<String, Vec<u8>>) {
    let b = line.as_bytes();
    let kind_end = b.iter().position(|&c| c == b' ').unwrap_or(b.len());
    let kind = line[..kind_end].to_string();
    let mut fields = BTreeMap::new();
    let mut i = kind_end;
    while i < b.len() {
        assert_eq!(b[i], b' ', "{line}");
        i += 1;
        let eq = i + b[i..].iter().position(|&c| c == b'=').unwrap();
        let key = line[i..eq].to_string();
        assert!(key
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"_-.".contains(&c)));
        i = eq + 1;
        let mut val = Vec::new();
        if b[i] == b'"' {
            i += 1;
            loop {
                match b[i] {
                    b'"' => {
                        i += 1;
                        break;
                    }
                    b'\\' => {
                        match b[i + 1] {
                            b'\\' => val.push(b'\\'),
                            b'"' => val.push(b'"'),
                            b'x' => {
                                val.push(u8::from_str_radix(&line[i + 2..i + 4], 16).unwrap());
                                i += 2;
                            }
                            c => panic!("bad escape {c}"),
                        }
                        i += 2;
                    }
                    c => {
                        assert!((0x20..=0x7e).contains(&c));
                        val.push(c);
                        i += 1;
                    }
                }
            }
        } else {
            while i < b.len() && b[i] != b' ' {
                assert!(b[i].is_ascii_alphanumeric() || b".-_,:/+".contains(&b[i]));
                val.push(b[i]);
                i += 1;
            }
            assert!(!val.is_empty());
        }
        assert!(fields.insert(key, val).is_none(), "duplicate key in {line}");
    }
    (kind, fields)
}

#[test]
fn replies_follow_the_grammar_and_decode_losslessly() {
    let mut m = Mock::new();
    let nasty: Vec<u8> = (0..=255u8).filter(|&b| b != b'\n').collect();
    m.log.clear();
    m.log.push(&nasty);
    m.log.push(b"\n");
    for line in [
        "vm list",
        "stats",
        "help",
        "log",
        "vm log linux0",
        "vm stop test",
        "frob \"x\"",
    ] {
        let out = run_machine(&mut m, line);
        for l in out.lines() {
            let (kind, fields) = decode(l);
            assert!(kind.bytes().all(|c| c.is_ascii_lowercase()), "{l}");
            if kind == "line" && line == "log" {
                assert_eq!(fields["text"], nasty);
            }
            if kind == "error" {
                assert!(fields.contains_key("code") && fields.contains_key("msg"));
            }
        }
    }
    // Counters decode to the numbers the hypervisor reported.
    let out = run_machine(&mut m, "stats linux0");
    let vcpu1 = out.lines().find(|l| l.contains("vcpu=1")).unwrap();
    let (_, f) = decode(vcpu1);
    assert_eq!(f["exit.sbi"], b"378");
    assert_eq!(f["sbi.hsm"], b"8");
    assert!(!f.contains_key("exit.mmio-read"));
}
