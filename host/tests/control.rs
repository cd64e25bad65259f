//! Managing a running instance from another terminal (issue 11): the control
//! channel (a virtconsole of the machine that the hypervisor drives, QEMU's
//! end a unix socket `ferrovisor run` owns) and the subcommands that act on
//! a running instance, against a machine with two Linux VMs (`a`, `b`).
//!
//! `control_channel`, one boot, each step a separate `ferrovisor` process
//! like a second terminal:
//! - `ps` (text and `--json`) lists the instance with the `run` process's pid
//!   and 2 VMs; `vm list --json` lists `a` and `b`.
//! - `console b` attaches to b's console: a command typed there runs in b
//!   (its output reaches the client and the machine's console as `[b]`),
//!   Ctrl-] detaches with status 0. `logs -f b`, started before, streams the
//!   same output; `logs b` shows it afterwards.
//! - `vm list` (text) lists both; `vm pause a` (then `vm info a --json`:
//!   paused), a second pause fails with status 1 and "it is paused", `vm
//!   resume a`; a client subscribed to events gets `state vm=a
//!   state=paused`, then `state=running`, and so does `ferrovisor events
//!   --json` (which also sees the stops at the end and exits 0); `stats --json` has the
//!   host, both VMs, their vCPUs and the harts; `stats a` is the table.
//! - An unknown VM (`vm info`, `vm pause`, `console`, `logs`) fails with
//!   status 1 and "no VM named"; a request of junk bytes gets a `parse`
//!   error and the instance still answers; a wrong token is refused; with a
//!   second live instance, a command without `--instance` is refused.
//! - `vm reboot b` (b boots again), `vm destroy a` (destroyed), `vm start a`
//!   (a boots again), `vm stop` of both: the machine ends clean, `logs -f`
//!   ends with status 0, and then `vm list --instance NAME` fails with
//!   status 1: no running instance of that name; `ps` lists none.
//! - A stale runtime directory (its pid dead) is reported as gone by `vm list
//!   --instance`, removed, and not listed by `ps`.
//!
//! Needs `scripts/build.sh` and `scripts/fetch-linux.sh`. Run with
//! `cargo test -p ferrovisor --test control -- --test-threads=1 --nocapture`.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use ferrovisor::instance::runtime::{InstanceDir, RUNTIME_ENV};

use common::{Console, Vm, BOOT, COMMAND, MARKER};

const INSTANCE: &str = "control-channel";

/// The runtime base of this test (short, so socket paths fit).
fn runtime_base() -> PathBuf {
    PathBuf::from(format!("/tmp/fv-control-test-{}", std::process::id()))
}

/// Runs `ferrovisor ARGS` (a client, as from another terminal).
fn fv(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ferrovisor"))
        .args(args)
        .env(RUNTIME_ENV, runtime_base())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let r = (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    eprintln!("    $ ferrovisor {} -> {}", args.join(" "), r.0);
    r
}

/// `ferrovisor ARGS` must succeed; its stdout.
fn ok(args: &[&str]) -> String {
    let (code, out, err) = fv(args);
    assert_eq!(code, 0, "ferrovisor {args:?} failed: {err}{out}");
    out
}

/// `ferrovisor ARGS` must fail with status 1 and `needle` in its error.
fn refused(args: &[&str], needle: &str) {
    let (code, out, err) = fv(args);
    assert_eq!(code, 1, "ferrovisor {args:?} should fail: {out}{err}");
    assert!(
        err.starts_with("ferrovisor: error: ") && err.contains(needle),
        "ferrovisor {args:?}: {err:?} should say {needle:?}"
    );
}

/// A client process whose stdout is collected as it comes.
struct Bg {
    child: Child,
    out: Arc<Mutex<String>>,
}

impl Bg {
    fn spawn(args: &[&str]) -> Bg {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ferrovisor"))
            .args(args)
            .env(RUNTIME_ENV, runtime_base())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = Arc::new(Mutex::new(String::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let out = out.clone();
            let mut stream = stream;
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    out.lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            });
        }
        Bg { child, out }
    }

    fn wait_for(&self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.out.lock().unwrap().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "no {needle:?} within {timeout:?}; got {:?}",
                self.out.lock().unwrap()
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(bytes).unwrap();
        stdin.flush().unwrap();
    }

    fn exit_code(&mut self, timeout: Duration) -> i32 {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s.code().unwrap_or(-1);
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                panic!(
                    "still running after {timeout:?}: {:?}",
                    self.out.lock().unwrap()
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_marker(c: &mut Console, vm: &str, since: usize) {
    let marker = format!("[{vm}] {MARKER}");
    let deadline = Instant::now() + BOOT;
    loop {
        if c.text.matches(&marker).count() > since {
            c.note(&format!("{vm}: userspace marker #{}", since + 1));
            return;
        }
        assert!(Instant::now() < deadline, "{vm}: no userspace marker");
        c.idle_for(Duration::from_millis(500));
    }
}

/// Reads frames from `s` until one satisfies `want`; its payload as text.
fn read_until(s: &mut UnixStream, want: impl Fn(fv_ctrl::Kind, u32) -> bool) -> String {
    s.set_read_timeout(Some(COMMAND)).unwrap();
    let mut dec: Box<fv_ctrl::Decoder<70000>> = Box::new(fv_ctrl::Decoder::new());
    let mut got = None;
    let mut rb = [0u8; 4096];
    while got.is_none() {
        let n = s.read(&mut rb).unwrap();
        assert!(n > 0, "connection closed before the frame");
        dec.push(&rb[..n], &mut |f| {
            if got.is_none() && want(f.kind, f.id) {
                got = Some(String::from_utf8_lossy(f.payload).into_owned());
            }
        });
    }
    got.unwrap()
}

/// One frame exchange on a raw connection to `api.sock`: the reply's text.
fn raw_exchange(s: &mut UnixStream, kind: fv_ctrl::Kind, id: u32, payload: &[u8]) -> String {
    let mut buf = Vec::new();
    fv_ctrl::encode(kind, id, payload, &mut buf).unwrap();
    s.write_all(&buf).unwrap();
    read_until(s, |k, i| i == id && k == fv_ctrl::Kind::Reply)
}

/// The next event on a connection subscribed to events.
fn next_event(s: &mut UnixStream) -> String {
    read_until(s, |k, _| k == fv_ctrl::Kind::Event)
}

fn json_field_count(json: &str, key: &str) -> usize {
    json.matches(&format!("\"{key}\":")).count()
}

#[test]
fn control_channel() {
    let base = runtime_base();
    let _ = std::fs::remove_dir_all(&base);
    // `ferrovisor run` (spawned by Console) finds the runtime base here too.
    std::env::set_var(RUNTIME_ENV, &base);
    let vms = [Vm::linux("a", 1, 256), Vm::linux("b", 1, 256)];
    let config = common::write_config(INSTANCE, 2, &vms);
    let mut c = Console::spawn(INSTANCE, &config, 600, &vms);
    let dir = InstanceDir::new(&base, INSTANCE);

    // The instance is listed as soon as `run` serves it.
    let deadline = Instant::now() + COMMAND;
    while !dir.api_socket().exists() {
        assert!(
            Instant::now() < deadline,
            "no {}",
            dir.api_socket().display()
        );
        c.idle_for(Duration::from_millis(200));
    }
    let pid = c.pid().to_string();
    let ps = ok(&["ps"]);
    let row = ps
        .lines()
        .find(|l| l.starts_with(INSTANCE))
        .unwrap_or_else(|| panic!("ps: {ps}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[1], pid, "ps: {row}");
    assert_eq!(cols[2], "running", "ps: {row}");
    assert_eq!(cols[3], "2", "ps: {row}");
    let ps = ok(&["ps", "--json"]);
    assert!(ps.contains(&format!("\"pid\": {pid}")), "{ps}");
    assert!(ps.contains("\"vms\": 2"), "{ps}");
    let list = ok(&["vm", "list", "--json"]);
    assert!(
        list.contains("\"name\": \"a\"") && list.contains("\"name\": \"b\""),
        "{list}"
    );
    assert_eq!(json_field_count(&list, "state"), 2, "{list}");

    wait_marker(&mut c, "a", 0);
    wait_marker(&mut c, "b", 0);

    // logs -f b follows; console b runs a command in b.
    let follow = Bg::spawn(&["logs", "-f", "b", "--instance", INSTANCE]);
    follow.wait_for(MARKER, COMMAND);
    let mut con = Bg::spawn(&["console", "b"]);
    con.wait_for("Ctrl-] detaches", COMMAND);
    con.send(b"echo ctl-$((6*7))\n");
    con.wait_for("ctl-42", COMMAND);
    c.wait_anywhere("b's answer on the machine console", COMMAND, |l| {
        l == "[b] ctl-42"
    });
    assert!(!c.text.contains("[a] ctl-42"), "the input reached a");
    con.send(b"\x1d");
    assert_eq!(con.exit_code(COMMAND), 0);
    con.wait_for("detached from VM `b`", COMMAND);
    follow.wait_for("ctl-42", COMMAND);
    let logs = ok(&["logs", "b"]);
    assert!(logs.contains(MARKER) && logs.contains("ctl-42"), "{logs}");
    let logs_a = ok(&["logs", "a"]);
    assert!(
        logs_a.contains(MARKER) && !logs_a.contains("ctl-42"),
        "{logs_a}"
    );

    // Lifecycle and statistics; state changes also come as events.
    let mut events = UnixStream::connect(dir.api_socket()).unwrap();
    let token = dir.token().unwrap();
    assert_eq!(
        raw_exchange(&mut events, fv_ctrl::Kind::Hello, 1, token.as_bytes()),
        "ok\n"
    );
    assert_eq!(
        raw_exchange(&mut events, fv_ctrl::Kind::Subscribe, 2, b"events"),
        "ok\n"
    );
    let mut events_cli = Bg::spawn(&["events", "--json"]);
    // Subscribed once it waits (nothing to print yet); give it a moment.
    thread::sleep(Duration::from_secs(1));
    let human = ok(&["vm", "list"]);
    assert!(human.contains(" a ") && human.contains(" b "), "{human}");
    assert_eq!(ok(&["vm", "pause", "a"]).trim(), "VM 'a' paused");
    let ev = next_event(&mut events);
    assert_eq!(ev, "state vm=a state=paused");
    let info = ok(&["vm", "info", "a", "--json"]);
    assert!(info.contains("\"state\": \"paused\""), "{info}");
    refused(&["vm", "pause", "a"], "it is paused");
    ok(&["vm", "resume", "a", "--json"]);
    assert_eq!(next_event(&mut events), "state vm=a state=running");
    events_cli.wait_for(r#"{"event":"state","vm":"a","state":"paused"}"#, COMMAND);
    events_cli.wait_for(r#"{"event":"state","vm":"a","state":"running"}"#, COMMAND);
    let stats = ok(&["stats", "--json"]);
    assert!(stats.contains("\"host\""), "{stats}");
    assert!(stats.contains("\"timebase\": 10000000"), "{stats}");
    assert!(stats.contains("\"vcpus\": ["), "{stats}");
    assert_eq!(json_field_count(&stats, "hartid"), 2, "{stats}");
    let stats_a = ok(&["stats", "a"]);
    assert!(stats_a.contains("VM 'a': running"), "{stats_a}");

    // Unknown VMs, junk, a wrong token.
    refused(&["vm", "info", "nosuch"], "no VM named 'nosuch'");
    refused(&["vm", "pause", "nosuch", "--json"], "no VM named 'nosuch'");
    let (_, out, _) = fv(&["vm", "info", "nosuch", "--json"]);
    assert!(out.contains("\"code\": \"unknown-vm\""), "{out}");
    refused(&["console", "nosuch"], "no VM named 'nosuch'");
    refused(&["logs", "nosuch"], "no VM named 'nosuch'");
    let mut s = UnixStream::connect(dir.api_socket()).unwrap();
    assert_eq!(
        raw_exchange(&mut s, fv_ctrl::Kind::Hello, 1, token.as_bytes()),
        "ok\n"
    );
    let junk: Vec<u8> = (0..600u32).map(|i| (i * 37 % 256) as u8).collect();
    let r = raw_exchange(&mut s, fv_ctrl::Kind::Request, 2, &junk);
    assert!(r.starts_with("error code=parse"), "{r}");
    let r = raw_exchange(&mut s, fv_ctrl::Kind::Other(77), 3, b"x");
    assert!(r.starts_with("error code=unsupported-kind"), "{r}");
    let r = raw_exchange(&mut s, fv_ctrl::Kind::Request, 4, b"vm list");
    assert!(
        r.contains("vm index=1 name=b") && r.ends_with("ok\n"),
        "{r}"
    );
    let mut bad = UnixStream::connect(dir.api_socket()).unwrap();
    let r = raw_exchange(&mut bad, fv_ctrl::Kind::Hello, 1, b"wrong");
    assert!(r.starts_with("error code=auth"), "{r}");

    // Another live instance: a command must name one.
    let other = InstanceDir::new(&base, "other");
    other.create(&[]).unwrap();
    refused(&["vm", "list"], "several instances are running");
    other.remove();

    // Reboot, destroy, start.
    ok(&["vm", "reboot", "b"]);
    wait_marker(&mut c, "b", 1);
    ok(&["vm", "destroy", "a"]);
    let list = ok(&["vm", "list", "--json"]);
    assert!(list.contains("\"state\": \"destroyed\""), "{list}");
    refused(&["vm", "pause", "a"], "it is destroyed");
    ok(&["vm", "start", "a"]);
    wait_marker(&mut c, "a", 1);

    // The end: both stopped, the machine powers off, the instance is gone.
    ok(&["vm", "stop", "a"]);
    ok(&["vm", "stop", "b"]);
    c.expect_machine_end(true);
    let mut follow = follow;
    assert_eq!(follow.exit_code(COMMAND), 0);
    follow.wait_for("has ended", COMMAND);
    assert_eq!(events_cli.exit_code(COMMAND), 0);
    events_cli.wait_for(
        r#"{"event":"state","vm":"b","state":"stopped","reason":"operator"}"#,
        COMMAND,
    );
    refused(
        &["vm", "list", "--instance", INSTANCE],
        &format!("no running instance named `{INSTANCE}`"),
    );
    refused(&["vm", "list"], "no instance is running");
    assert!(!dir.dir.exists());

    // A stale directory: its pid is dead.
    let stale = InstanceDir::new(&base, "stale");
    stale.create(&[]).unwrap();
    std::fs::write(stale.pid_file(), "999999999\n").unwrap();
    refused(&["vm", "list", "--instance", "stale"], "is gone");
    assert!(!stale.dir.exists(), "the stale directory was not removed");
    assert!(ok(&["ps"]).starts_with("no running instances"));
    let _ = std::fs::remove_dir_all(&base);
}
