//! `execute` against a mock hypervisor: the exact reply to every command and
//! every refusal.
#![allow(clippy::unwrap_used, clippy::panic)] // test code: a panic is how a test fails

mod common;

use common::{run, Mock, MIB};
use fv_mgmt::*;

#[test]
fn vm_list() {
    let mut m = Mock::new();
    assert_eq!(
        run(&mut m, "vm list"),
        "  #  NAME    STATE                  VCPUS  MEMORY  RESIDENT  HARTS
* 0  linux0  running                    2    256M       12M  0,1
  1  test    stopped (powered off)      1     16M        4M  0
  2  spare   defined                    1     64M         0  -
* console input goes to this VM
"
    );
    assert_eq!(run(&mut Mock::empty(), "vm list"), "no VMs\n");
}

#[test]
fn vm_info() {
    let mut m = Mock::new();
    assert_eq!(
        run(&mut m, "vm info linux0"),
        "\
name:     linux0
index:    0
state:    running
vcpus:    2
memory:   256M (12M resident)
vmid:     1
weight:   1
harts:    0,1
console:  has the input
VCPU  STATE    HART  PINNED  RUN-TIME
   0  running     0  no        0.617s
   1  blocked     1  yes       0.617s
"
    );
    assert_eq!(
        run(&mut m, "vm info spare"),
        "\
name:     spare
index:    2
state:    defined
vcpus:    1
memory:   64M (0 resident)
vmid:     -
weight:   1
harts:    -
console:  -
VCPU  STATE    HART  PINNED  RUN-TIME
   0  stopped     -  no        0.000s
"
    );
}

const LINUX0_STATS: &str = "\
VM 'linux0': running
  VCPU  HART  STATE    RUN-TIME  MIGRATIONS  EXITS  SBI  IRQS  EXCEPTIONS
     0     0  running    0.617s           1    325  300    45           0
     1     1  blocked    0.617s           2    398  378    45           0
   all                   1.234s           3    723  678    90           0
  exits by reason: sbi=678 mmio-write=5 wfi=40
    vcpu 0: sbi=300 mmio-write=5 wfi=20
    vcpu 1: sbi=378 wfi=20
  sbi calls by extension: base=10 time=660 hsm=8
    vcpu 0: base=10 time=290
    vcpu 1: time=370 hsm=8
  interrupts injected: timer=85 external=5
    vcpu 0: timer=40 external=5
    vcpu 1: timer=45
";

#[test]
fn stats_of_one_vm() {
    let mut m = Mock::new();
    assert_eq!(run(&mut m, "stats linux0"), LINUX0_STATS);
    // One vCPU: no per-vCPU breakdown (it would repeat the totals).
    assert_eq!(
        run(&mut m, "stats test"),
        "\
VM 'test': stopped (powered off)
  VCPU  HART  STATE    RUN-TIME  MIGRATIONS  EXITS  SBI  IRQS  EXCEPTIONS
     0     0  stopped    0.000s           0      7    7     0           2
   all                   0.000s           0      7    7     0           2
  exits by reason: sbi=7
  sbi calls by extension: base=4 dbcn=3
  interrupts injected: none
"
    );
    // A VM without resources has no counters to show.
    assert_eq!(run(&mut m, "stats spare"), "VM 'spare': defined\n");
}

#[test]
fn stats_of_everything() {
    let mut m = Mock::new();
    let want = format!(
        "{LINUX0_STATS}
VM 'test': stopped (powered off)
  VCPU  HART  STATE    RUN-TIME  MIGRATIONS  EXITS  SBI  IRQS  EXCEPTIONS
     0     0  stopped    0.000s           0      7    7     0           2
   all                   0.000s           0      7    7     0           2
  exits by reason: sbi=7
  sbi calls by extension: base=4 dbcn=3
  interrupts injected: none

VM 'spare': defined

HART  HARTID  VCPUS  RUN-TIME  IDLE-TIME  IDLE
   0       0      3    0.800s     0.200s   20%
   1       1      1    0.600s     0.400s   40%
memory: 512M total, 200M free; uptime 12.345s
"
    );
    assert_eq!(run(&mut m, "stats"), want);
    let mut e = Mock::empty();
    e.host.timebase_hz = 0;
    assert_eq!(
        run(&mut e, "stats"),
        "\
no VMs

HART  HARTID  VCPUS       RUN-TIME      IDLE-TIME  IDLE
   0       0      3  8000000 ticks  2000000 ticks   20%
   1       1      1  6000000 ticks  4000000 ticks   40%
memory: 512M total, 200M free; uptime 123456789 ticks
"
    );
}

#[test]
fn logs() {
    let mut m = Mock::new();
    assert_eq!(
        run(&mut m, "log"),
        "ferrovisor: boot\nferrovisor: VM 'test' powered off\n"
    );
    assert_eq!(run(&mut m, "log 1"), "ferrovisor: VM 'test' powered off\n");
    m.log.clear();
    assert_eq!(run(&mut m, "log"), "(the log is empty)\n");
    // Console history: CR dropped, the unfinished prompt line shown.
    assert_eq!(
        run(&mut m, "vm log linux0"),
        "Linux version 6.12\nWelcome\n/ # \n"
    );
    assert_eq!(run(&mut m, "vm log linux0 1"), "/ # \n");
    assert_eq!(
        run(&mut m, "vm log test"),
        "(no console output from VM 'test' yet)\n"
    );
    // What a guest prints cannot drive the operator's terminal.
    m.vms[1]
        .console
        .as_mut()
        .unwrap()
        .push(b"\x1b]0;pwned\x07\x1b[2Jok\n");
    // (escape sequences are dropped, see `console_out::Sanitizer`).
    assert_eq!(run(&mut m, "vm log test"), "ok\n");
}

#[test]
fn default_log_length_is_twenty_lines() {
    let mut m = Mock::new();
    m.log.clear();
    for i in 0..30 {
        m.log.push(format!("line {i}\n").as_bytes());
    }
    let out = run(&mut m, "log");
    assert_eq!(out.lines().count(), DEFAULT_LOG_LINES);
    assert!(out.starts_with("line 10\n") && out.ends_with("line 29\n"));
    assert_eq!(run(&mut m, "log 100").lines().count(), 30);
}

#[test]
fn help() {
    let out = run(&mut Mock::new(), "help");
    assert!(
        out.starts_with("commands:\n  vm list          list VMs: state, vCPUs, memory, harts\n")
    );
    for (usage, about) in USAGE {
        assert!(
            out.contains(&format!("  {usage:<15}  {about}\n")),
            "{usage}"
        );
    }
    assert!(out.ends_with(
        "keys:
  Ctrl-A c       enter or leave the management shell
  Ctrl-A n       console input to the next VM
  Ctrl-A 0..9    console input to the VM with that index (see 'vm list')
  Ctrl-A h       this help
  Ctrl-A Ctrl-A  send Ctrl-A
"
    ));
    assert_eq!(run(&mut Mock::new(), "?"), out);
}

#[test]
fn console_focus() {
    let mut m = Mock::new();
    assert_eq!(
        run(&mut m, "console test"),
        "console input goes to VM 'test'\n"
    );
    assert_eq!(m.focus, 1);
    assert!(run(&mut m, "vm list").contains("\n* 1  test "));
    assert_eq!(
        run(&mut m, "console spare"),
        "error: cannot switch console input to VM 'spare': it has no console\n"
    );
    assert_eq!(m.focus, 1);
    assert_eq!(
        run(&mut m, "console ghost"),
        "error: no VM named 'ghost' (see 'vm list')\n"
    );
}

#[test]
fn lifecycle_successes() {
    let mut m = Mock::new();
    m.host.free_bytes = 400 * MIB;
    let steps = [
        ("vm pause linux0", "VM 'linux0' paused\n", VmState::Paused),
        (
            "vm resume linux0",
            "VM 'linux0' resumed\n",
            VmState::Running,
        ),
        (
            "vm reboot linux0",
            "VM 'linux0' is rebooting\n",
            VmState::Running,
        ),
        (
            "vm stop linux0",
            "VM 'linux0' stopped\n",
            VmState::Stopped(StopReason::Operator),
        ),
        (
            "vm destroy linux0",
            "VM 'linux0' destroyed; its memory is free\n",
            VmState::Destroyed,
        ),
        ("vm start linux0", "VM 'linux0' started\n", VmState::Running),
    ];
    for (line, reply, state) in steps {
        assert_eq!(run(&mut m, line), reply, "{line}");
        assert_eq!(m.vms[0].state, state, "{line}");
    }
    assert_eq!(
        m.calls,
        [
            "pause linux0",
            "resume linux0",
            "reboot linux0",
            "stop linux0",
            "destroy linux0",
            "start linux0"
        ]
    );
}

#[test]
fn destroy_frees_memory_visible_in_stats() {
    let mut m = Mock::new();
    m.host.free_bytes = 60 * MIB;
    assert!(run(&mut m, "stats").ends_with("memory: 512M total, 60M free; uptime 12.345s\n"));
    assert_eq!(
        run(&mut m, "vm start spare"),
        "error: cannot start VM 'spare': not enough free memory\n"
    );
    assert_eq!(
        run(&mut m, "vm destroy test"),
        "VM 'test' destroyed; its memory is free\n"
    );
    assert!(run(&mut m, "stats").ends_with("memory: 512M total, 64M free; uptime 12.345s\n"));
    assert_eq!(
        run(&mut m, "vm list"),
        "  #  NAME    STATE      VCPUS  MEMORY  RESIDENT  HARTS
* 0  linux0  running        2    256M       12M  0,1
  1  test    destroyed      1     16M         0  -
  2  spare   defined        1     64M         0  -
* console input goes to this VM
"
    );
    // The freed memory is what lets the other VM start.
    assert_eq!(run(&mut m, "vm start spare"), "VM 'spare' started\n");
    assert!(run(&mut m, "stats").ends_with("memory: 512M total, 62M free; uptime 12.345s\n"));
}

#[test]
fn wrong_state_for_every_action() {
    let mut m = Mock::new();
    // linux0 running, test stopped, spare defined.
    let cases = [
        (
            "vm resume linux0",
            "error: cannot resume VM 'linux0': it is running (it must be paused)\n",
        ),
        (
            "vm start linux0",
            "error: cannot start VM 'linux0': it is running (it must be defined, stopped or destroyed)\n",
        ),
        (
            "vm pause test",
            "error: cannot pause VM 'test': it is stopped (powered off) (it must be running)\n",
        ),
        (
            "vm stop test",
            "error: cannot stop VM 'test': it is stopped (powered off) (it must be running, paused or rebooting)\n",
        ),
        (
            "vm reboot spare",
            "error: cannot reboot VM 'spare': it is defined (it must be running or paused)\n",
        ),
        (
            "vm destroy spare",
            "error: cannot destroy VM 'spare': it is defined (it must be running, paused, rebooting or stopped)\n",
        ),
    ];
    for (line, reply) in cases {
        assert_eq!(run(&mut m, line), reply, "{line}");
    }
    // Nothing changed.
    assert_eq!(m.vms[0].state, VmState::Running);
    assert_eq!(m.vms[2].state, VmState::Defined);
}

#[test]
fn unknown_vm_for_every_command_that_names_one() {
    let mut m = Mock::new();
    for line in [
        "vm info ghost",
        "vm start ghost",
        "vm pause ghost",
        "vm resume ghost",
        "vm stop ghost",
        "vm reboot ghost",
        "vm destroy ghost",
        "vm log ghost",
        "stats ghost",
        "console ghost",
    ] {
        assert_eq!(
            run(&mut m, line),
            "error: no VM named 'ghost' (see 'vm list')\n",
            "{line}"
        );
    }
}

#[test]
fn other_refusals() {
    let mut m = Mock::new();
    m.host.free_bytes = 10 * MIB;
    assert_eq!(
        run(&mut m, "vm start spare"),
        "error: cannot start VM 'spare': not enough free memory\n"
    );
    let cases = [
        (
            MgmtError::NoResources(Resource::Vmid),
            "vm start spare",
            "error: cannot start VM 'spare': no free VMID\n",
        ),
        (
            MgmtError::NoResources(Resource::Heap),
            "vm reboot linux0",
            "error: cannot reboot VM 'linux0': the hypervisor is out of heap memory\n",
        ),
        (
            MgmtError::Unsupported,
            "vm pause linux0",
            "error: cannot pause VM 'linux0': not supported by this hypervisor\n",
        ),
        (
            MgmtError::Failed,
            "vm reboot linux0",
            "error: cannot reboot VM 'linux0': it failed (see 'log')\n",
        ),
        (
            MgmtError::Unsupported,
            "console test",
            "error: cannot switch console input to VM 'test': not supported by this hypervisor\n",
        ),
        (
            MgmtError::WrongState {
                current: VmState::Destroyed,
            },
            "console test",
            "error: cannot switch console input to VM 'test': it is destroyed\n",
        ),
    ];
    for (err, line, reply) in cases {
        m.fail_next = Some(err);
        assert_eq!(run(&mut m, line), reply, "{line}");
    }
    assert_eq!(m.vms[0].state, VmState::Running);
}

#[test]
fn parse_errors_and_blank_lines() {
    let mut m = Mock::new();
    assert_eq!(run(&mut m, ""), "");
    assert_eq!(run(&mut m, "   "), "");
    assert_eq!(
        run(&mut m, "reboot"),
        "error: unknown command 'reboot' (try 'help')\n"
    );
    assert_eq!(
        run(&mut m, "vm pause"),
        "error: missing argument; usage: vm pause NAME\n"
    );
    assert_eq!(
        run(&mut m, "vm pause a b"),
        "error: unexpected argument 'b'; usage: vm pause NAME\n"
    );
    assert_eq!(
        run(&mut m, "vm info caf\u{e9}"),
        "error: non-ASCII character at column 12: commands and VM names are ASCII\n"
    );
    assert!(m.calls.is_empty());
}

/// A writer that fails after `limit` bytes.
struct Limited {
    buf: String,
    limit: usize,
}

impl core::fmt::Write for Limited {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        if self.buf.len() + s.len() > self.limit {
            return Err(core::fmt::Error);
        }
        self.buf.push_str(s);
        Ok(())
    }
}

#[test]
fn a_failing_writer_is_reported_not_a_panic() {
    for line in [
        "vm list",
        "vm info linux0",
        "stats",
        "stats linux0",
        "log",
        "vm log linux0",
        "help",
        "vm pause linux0",
        "vm info ghost",
        "frob",
    ] {
        let full = run(&mut Mock::new(), line);
        for limit in 0..full.len() {
            let mut w = Limited {
                buf: String::new(),
                limit,
            };
            let r = execute_line(line.as_bytes(), &mut Mock::new(), &mut w);
            assert!(r.is_err(), "{line} at {limit}");
            assert!(full.starts_with(&w.buf));
            let mut w = Limited {
                buf: String::new(),
                limit,
            };
            let r = execute_line_machine(line.as_bytes(), &mut Mock::new(), &mut w);
            let _ = r;
        }
    }
}

#[test]
fn works_through_dyn_management() {
    let mut m = Mock::new();
    let dm: &mut dyn Management = &mut m;
    let mut s = String::new();
    execute(
        &Command::VmPause {
            name: VmName::new("linux0").unwrap(),
        },
        dm,
        &mut s,
    )
    .unwrap();
    assert_eq!(s, "VM 'linux0' paused\n");
}
