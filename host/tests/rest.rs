//! The REST API of a running instance (issue 11, points 3-5 and 7), against
//! a machine with two Linux VMs (`a`, `b`) started with
//! `ferrovisor run --http 127.0.0.1:0`; requests are raw HTTP/1.1 over the
//! instance's `http.sock` and over the loopback TCP port it wrote to
//! `http.addr`.
//!
//! `rest_api`, one boot:
//! - 401 without a token and with a wrong one (both audited); the
//!   read-only token reads but gets 403 on an action.
//! - `GET /v1/vms` on both listeners lists `a` and `b`; the OpenAPI document
//!   parses and every operation it lists is routed (no 404/405 from the
//!   router), an unlisted path gets 404 `no-route`.
//! - Errors as JSON: unknown VM 404, a second pause 409, malformed JSON,
//!   an unknown field, a wrong type, an unknown action and a bad VM name 400,
//!   a 100 KiB body 413.
//! - `GET /v1/events` shows `a` paused, then running; `GET /v1/vms/a` shows
//!   it paused in between. An action whose client vanishes at once leaves b
//!   running or paused, audited if it ran.
//! - `/metrics` passes the Rust-side format check (and `promtool check
//!   metrics` when promtool is installed; required when `CI` is set) and has
//!   a's exits, the harts' busy time and the VMs' states.
//! - Clients that send half a request and stall, or vanish mid-request, and
//!   junk request lines do not disturb the others.
//! - Load: 20 clients poll `/v1/vms` and `/metrics` for 20 s while both VMs
//!   run: no errors; latency p50/p99 printed.
//! - The audit log has one line per mutating request (and per refused
//!   token), in `audit.log` and from `GET /v1/audit`.
//! - Requests racing with both VMs stopping get a JSON answer or a closed
//!   connection, never a 500; the machine ends clean.
//!
//! Needs `scripts/build.sh` and `scripts/fetch-linux.sh`. Run with
//! `cargo test -p ferrovisor --test rest -- --test-threads=1 --nocapture`.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use ferrovisor::instance::metrics::check_exposition;
use ferrovisor::instance::runtime::{InstanceDir, RUNTIME_ENV};
use serde_json::Value;

use common::{Console, Vm, BOOT, COMMAND, MARKER};

const INSTANCE: &str = "rest-api";

fn runtime_base() -> PathBuf {
    PathBuf::from(format!("/tmp/fv-rest-test-{}", std::process::id()))
}

/// Where the API listens.
#[derive(Clone, Debug)]
enum Target {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

impl Target {
    fn connect(&self) -> std::io::Result<Box<dyn Stream>> {
        let s: Box<dyn Stream> = match self {
            Target::Unix(p) => {
                let s = UnixStream::connect(p)?;
                s.set_read_timeout(Some(COMMAND))?;
                Box::new(s)
            }
            Target::Tcp(a) => {
                let s = TcpStream::connect(a)?;
                s.set_read_timeout(Some(COMMAND))?;
                Box::new(s)
            }
        };
        Ok(s)
    }
}

/// A reply: status, headers (lower-case names), body.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The error code of a JSON error reply with status `status`.
    fn error(&self, status: u16) -> String {
        assert_eq!(self.status, status, "{self:?}");
        let j = self.json();
        let e = &j["error"];
        assert!(
            e["message"].as_str().is_some_and(|m| !m.is_empty()) && e["request"].is_string(),
            "{j}"
        );
        e["code"].as_str().unwrap().to_string()
    }
}

fn request_text(method: &str, path: &str, token: Option<&str>, body: Option<&[u8]>) -> Vec<u8> {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    let mut bytes = req.into_bytes();
    match body {
        Some(b) => {
            bytes.extend_from_slice(
                format!(
                    "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                    b.len()
                )
                .as_bytes(),
            );
            bytes.extend_from_slice(b);
        }
        None => bytes.extend_from_slice(b"\r\n"),
    }
    bytes
}

fn read_head(r: &mut impl BufRead) -> std::io::Result<(u16, Vec<(String, String)>)> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    Ok((status, headers))
}

/// One request on a fresh connection.
fn try_http(
    t: &Target,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&[u8]>,
) -> std::io::Result<Reply> {
    let mut s = t.connect()?;
    s.write_all(&request_text(method, path, token, body))?;
    let mut r = BufReader::new(s);
    let (status, headers) = read_head(&mut r)?;
    let mut raw = Vec::new();
    r.read_to_end(&mut raw)?;
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked { dechunk(&raw) } else { raw };
    Ok(Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(p) = raw.windows(2).position(|w| w == b"\r\n") {
        let n = usize::from_str_radix(String::from_utf8_lossy(&raw[..p]).trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.extend_from_slice(&raw[p + 2..p + 2 + n]);
        raw = &raw[p + 4 + n..];
    }
    out
}

fn http(t: &Target, method: &str, path: &str, token: Option<&str>, body: Option<&[u8]>) -> Reply {
    let r =
        try_http(t, method, path, token, body).unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    eprintln!("    {method} {path} -> {}", r.status);
    r
}

/// `POST /v1/vms/{vm}/actions` with `{"action": action}`.
fn act(t: &Target, token: &str, vm: &str, action: &str) -> Reply {
    let body = format!("{{\"action\": \"{action}\"}}");
    http(
        t,
        "POST",
        &format!("/v1/vms/{vm}/actions"),
        Some(token),
        Some(body.as_bytes()),
    )
}

/// An open `GET /v1/events` stream; [`Events::wait_for`] reads it.
struct Events {
    r: BufReader<Box<dyn Stream>>,
}

impl Events {
    fn open(t: &Target, token: &str) -> Events {
        let mut s = t.connect().unwrap();
        s.write_all(&request_text("GET", "/v1/events", Some(token), None))
            .unwrap();
        let mut r = BufReader::new(s);
        let (status, headers) = read_head(&mut r).unwrap();
        assert_eq!(status, 200);
        assert!(
            headers
                .iter()
                .any(|(k, v)| k == "content-type" && v.starts_with("text/event-stream")),
            "{headers:?}"
        );
        Events { r }
    }

    /// Reads until a `data:` line contains `needle`; the events seen.
    fn wait_for(&mut self, needle: &str) -> Vec<String> {
        let deadline = Instant::now() + COMMAND;
        let mut seen = Vec::new();
        loop {
            assert!(Instant::now() < deadline, "no {needle:?} in {seen:?}");
            let mut line = String::new();
            let n = self.r.read_line(&mut line).unwrap();
            assert!(n > 0, "the event stream ended; saw {seen:?}");
            if let Some(d) = line.trim_end().strip_prefix("data:") {
                seen.push(d.trim().to_string());
                if d.contains(needle) {
                    return seen;
                }
            }
        }
    }
}

fn wait_marker(c: &mut Console, vm: &str) {
    let marker = format!("[{vm}] {MARKER}");
    let deadline = Instant::now() + BOOT;
    while !c.text.contains(&marker) {
        assert!(Instant::now() < deadline, "{vm}: no userspace marker");
        c.idle_for(Duration::from_millis(500));
    }
    c.note(&format!("{vm}: userspace"));
}

/// Runs `promtool check metrics` on `text` when promtool is installed;
/// without it, fails under CI (scripts/setup.sh installs it) and otherwise
/// says that it skipped.
fn promtool(text: &str) {
    let child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "promtool not found ({e}): CI is set, so it must be installed (scripts/setup.sh installs the `prometheus` package)"
            );
            eprintln!("NOTICE: promtool not found ({e}): `promtool check metrics` skipped (install the `prometheus` package; under CI this fails)");
            return;
        }
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("    promtool check metrics: ok");
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[test]
fn rest_api() {
    let base = runtime_base();
    let _ = std::fs::remove_dir_all(&base);
    std::env::set_var(RUNTIME_ENV, &base);
    let vms = [Vm::linux("a", 1, 256), Vm::linux("b", 1, 256)];
    let config = common::write_config(INSTANCE, 2, &vms);
    let mut c = Console::spawn_with(INSTANCE, &config, 900, &vms, &["--http", "127.0.0.1:0"]);
    let dir = InstanceDir::new(&base, INSTANCE);
    let deadline = Instant::now() + COMMAND;
    while !(dir.http_socket().exists() && dir.http_addr_file().exists()) {
        assert!(Instant::now() < deadline, "no http.sock or http.addr");
        c.idle_for(Duration::from_millis(200));
    }
    let unix = Target::Unix(dir.http_socket());
    let addr: SocketAddr = std::fs::read_to_string(dir.http_addr_file())
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(addr.ip().is_loopback());
    let tcp = Target::Tcp(addr);
    let token = dir.token().unwrap();
    let ro = std::fs::read_to_string(dir.token_ro_file())
        .unwrap()
        .trim()
        .to_string();
    assert_ne!(token, ro);
    // Every request that is not a GET, and every refused token, is audited.
    let mut audited = 0;

    // Authentication.
    assert_eq!(
        http(&unix, "GET", "/v1/vms", None, None).error(401),
        "unauthorized"
    );
    assert_eq!(
        http(&tcp, "GET", "/v1/vms", Some("wrong"), None).error(401),
        "unauthorized"
    );
    audited += 2;
    for t in [&unix, &tcp] {
        let r = http(t, "GET", "/v1/vms", Some(&token), None);
        assert_eq!(r.status, 200, "{r:?}");
        let names: Vec<String> = r.json()["vms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["name"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(names, ["a", "b"]);
    }
    assert_eq!(http(&tcp, "GET", "/v1/stats", Some(&ro), None).status, 200);
    assert_eq!(act(&unix, &ro, "a", "pause").error(403), "forbidden");
    audited += 1;

    // The OpenAPI document: every operation is routed.
    let doc = http(&unix, "GET", "/v1/openapi.json", Some(&ro), None).json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    let paths = doc["paths"].as_object().unwrap();
    let mut ops = 0;
    for (path, methods) in paths {
        for m in methods.as_object().unwrap().keys() {
            let m = m.to_uppercase();
            let p = path.replace("{name}", "a");
            ops += 1;
            if p == "/v1/events" {
                drop(Events::open(&unix, &token));
                continue;
            }
            // An action with an empty object: 400, from the handler.
            let body = (m == "POST").then_some(&b"{}"[..]);
            let r = http(&unix, &m, &p, Some(&token), body);
            assert!(
                r.status != 404 && r.status != 405,
                "{m} {path} is documented but not routed: {r:?}"
            );
            if m == "POST" {
                audited += 1;
            }
        }
    }
    assert!(ops >= 8, "{ops} operations in {doc}");
    for p in ["/v1/nosuch", "/v1/vms/a/nosuch"] {
        assert_eq!(
            http(&unix, "GET", p, Some(&token), None).error(404),
            "no-route"
        );
    }
    assert_eq!(
        http(&unix, "DELETE", "/v1/vms", Some(&token), None).error(405),
        "method-not-allowed"
    );
    audited += 1;

    // Bad requests.
    assert_eq!(
        http(&unix, "GET", "/v1/vms/nosuch", Some(&ro), None).error(404),
        "unknown-vm"
    );
    assert_eq!(
        act(&tcp, &token, "nosuch", "pause").error(404),
        "unknown-vm"
    );
    audited += 1;
    for (body, says) in [
        (&b"{\"action\": \"pause\""[..], "incomplete JSON"),
        (b"{action: pause}", "malformed JSON"),
        (
            b"{\"action\": \"pause\", \"force\": true}",
            "wrong field or type: unknown field `force`",
        ),
        (b"{\"action\": 7}", "at line 1 column 12"),
        (b"{\"action\": \"fly\"}", "unknown variant `fly`"),
        (b"\"pause\"", "invalid type: string"),
    ] {
        let r = http(&unix, "POST", "/v1/vms/a/actions", Some(&token), Some(body));
        assert_eq!(r.error(400), "bad-request");
        let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(
            msg.contains(says) && msg.starts_with("body: "),
            "{}: {msg}",
            String::from_utf8_lossy(body)
        );
        audited += 1;
    }
    let r = act(&unix, &token, "bad..name%20x", "pause");
    assert_eq!(r.error(400), "bad-request");
    assert!(r.body.contains("path parameter `name`"), "{}", r.body);
    audited += 1;
    let r = http(&unix, "GET", "/v1/vms/-x", Some(&token), None);
    assert_eq!(r.error(400), "bad-request");
    let big = vec![b' '; 100 * 1024];
    assert_eq!(
        http(&tcp, "POST", "/v1/vms/a/actions", Some(&token), Some(&big)).error(413),
        "too-large"
    );
    audited += 1;

    // Slow, vanishing and junk clients, while the others are served.
    let mut slow = unix.connect().unwrap();
    slow.write_all(b"GET /v1/vms HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let mut gone = tcp.connect().unwrap();
    gone.write_all(&request_text("GET", "/v1/stats", Some(&token), None))
        .unwrap();
    drop(gone);
    let mut junk = tcp.connect().unwrap();
    junk.write_all(b"\x00\x01 garbage \xff\r\n\r\n").unwrap();
    let mut answer = Vec::new();
    let _ = junk.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 400"),
        "{answer}"
    );
    assert_eq!(
        http(&unix, "GET", "/v1/vms", Some(&token), None).status,
        200
    );

    wait_marker(&mut c, "a");
    wait_marker(&mut c, "b");

    // Actions and events.
    let mut events = Events::open(&tcp, &token);
    let r = act(&unix, &token, "a", "pause");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["ok"], true);
    audited += 1;
    events.wait_for(r#""state":"paused""#);
    let info = http(&tcp, "GET", "/v1/vms/a", Some(&ro), None).json();
    assert_eq!(info["vms"][0]["state"], "paused", "{info}");
    assert!(
        info["vcpus"].as_array().is_some_and(|v| !v.is_empty()),
        "{info}"
    );
    let r = act(&tcp, &token, "a", "pause");
    assert_eq!(r.error(409), "wrong-state");
    assert!(r.body.contains("it is paused"), "{}", r.body);
    audited += 1;
    assert_eq!(act(&tcp, &token, "a", "resume").status, 200);
    audited += 1;
    let seen = events.wait_for(r#""state":"running""#);
    assert!(seen.last().unwrap().contains(r#""vm":"a""#), "{seen:?}");
    // A client that goes away right after sending an action: hyper may drop
    // the request before it is dispatched (then nothing happens), or the
    // action runs to its end and is audited; either way b is in a
    // consistent state and the instance answers.
    let mut vanishing = tcp.connect().unwrap();
    vanishing
        .write_all(&request_text(
            "POST",
            "/v1/vms/b/actions",
            Some(&token),
            Some(br#"{"action": "pause"}"#),
        ))
        .unwrap();
    drop(vanishing);
    c.idle_for(Duration::from_secs(2));
    let b_state = http(&unix, "GET", "/v1/vms/b", Some(&ro), None).json()["vms"][0]["state"]
        .as_str()
        .unwrap()
        .to_string();
    eprintln!("    the vanished client's pause: b is {b_state}");
    if b_state == "paused" {
        audited += 1;
        // (The event's keys come sorted.)
        events.wait_for(r#""state":"paused","vm":"b""#);
        assert_eq!(act(&unix, &token, "b", "resume").status, 200);
        audited += 1;
        events.wait_for(r#""state":"running","vm":"b""#);
    } else {
        assert_eq!(b_state, "running");
    }

    // Metrics.
    let m = http(&unix, "GET", "/metrics", Some(&ro), None);
    assert_eq!(m.status, 200);
    assert!(
        m.header("content-type")
            .is_some_and(|v| v.starts_with("text/plain; version=0.0.4")),
        "{m:?}"
    );
    check_exposition(&m.body).unwrap_or_else(|e| panic!("{e}\n{}", m.body));
    for want in [
        "ferrovisor_up 1",
        "ferrovisor_vcpu_exits_total{vm=\"a\",vcpu=\"0\",reason=",
        "ferrovisor_vcpu_run_seconds_total{vm=\"b\",vcpu=\"0\"}",
        "ferrovisor_hart_busy_seconds_total{hart=\"0\"}",
        "ferrovisor_vm_state{vm=\"b\",state=\"running\"} 1",
        "ferrovisor_vm_memory_bytes{vm=\"a\"} 268435456",
    ] {
        assert!(m.body.contains(want), "no {want:?} in\n{}", m.body);
    }
    promtool(&m.body);
    drop(slow);

    // Load: 20 clients, 20 s, alternating listeners and resources.
    let stop = Arc::new(AtomicBool::new(false));
    let lat = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(Mutex::new(Vec::new()));
    let load_start = Instant::now();
    let clients: Vec<_> = (0..20)
        .map(|i| {
            let t = if i % 2 == 0 {
                unix.clone()
            } else {
                tcp.clone()
            };
            let path = if i % 4 < 2 { "/v1/vms" } else { "/metrics" };
            let (stop, lat, errors, token) =
                (stop.clone(), lat.clone(), errors.clone(), ro.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let t0 = Instant::now();
                    match try_http(&t, "GET", path, Some(&token), None) {
                        Ok(r) if r.status == 200 => lat.lock().unwrap().push(t0.elapsed()),
                        Ok(r) => errors.lock().unwrap().push(format!("{path}: {r:?}")),
                        Err(e) => errors.lock().unwrap().push(format!("{path}: {e}")),
                    }
                }
            })
        })
        .collect();
    while load_start.elapsed() < Duration::from_secs(20) {
        c.idle_for(Duration::from_millis(500));
    }
    stop.store(true, Ordering::Relaxed);
    for cl in clients {
        cl.join().unwrap();
    }
    let mut lat = lat.lock().unwrap().clone();
    lat.sort();
    let errors = errors.lock().unwrap().clone();
    eprintln!(
        "load: 20 clients, {:.1} s, {} requests ({:.0}/s), {} errors, latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        load_start.elapsed().as_secs_f64(),
        lat.len(),
        lat.len() as f64 / load_start.elapsed().as_secs_f64(),
        errors.len(),
        percentile(&lat, 0.5).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3,
        lat.last().unwrap().as_secs_f64() * 1e3,
    );
    assert!(
        errors.is_empty(),
        "{} errors: {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
    assert!(!lat.is_empty());
    // The guests still run.
    let v = http(&unix, "GET", "/v1/vms", Some(&ro), None).json();
    for vm in v["vms"].as_array().unwrap() {
        assert_eq!(vm["state"], "running", "{v}");
    }

    // The audit log: a line per audited request, the same from the API.
    let log = std::fs::read_to_string(dir.audit_log()).unwrap();
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), audited, "{log}");
    let api = http(&unix, "GET", "/v1/audit", Some(&ro), None).json();
    assert_eq!(api["entries"].as_array().unwrap(), &lines);
    let pause = lines
        .iter()
        .find(|l| l["request"] == "POST /v1/vms/a/actions" && l["status"] == 200)
        .unwrap_or_else(|| panic!("{log}"));
    assert_eq!(pause["token"], "operator");
    assert_eq!(pause["vm"], "a");
    assert!(
        pause["peer"].as_str().unwrap().starts_with("unix:uid="),
        "{pause}"
    );
    assert!(pause["time"].as_u64().unwrap() > 1_700_000_000, "{pause}");
    assert!(
        lines.iter().any(|l| l["status"] == 401
            && l["token"] == "none"
            && l["peer"].as_str().unwrap().starts_with("tcp:127.0.0.1:")),
        "{log}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["status"] == 403 && l["token"] == "read-only"),
        "{log}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["status"] == 409 && l["result"].as_str().unwrap().contains("it is paused")),
        "{log}"
    );

    // Requests racing with the VMs stopping, then the end.
    let racing = Arc::new(AtomicBool::new(true));
    let bad = Arc::new(Mutex::new(Vec::new()));
    let racers: Vec<_> = (0..4)
        .map(|i| {
            let t = if i % 2 == 0 {
                unix.clone()
            } else {
                tcp.clone()
            };
            let (racing, bad, token) = (racing.clone(), bad.clone(), token.clone());
            thread::spawn(move || {
                let mut n = 0;
                while racing.load(Ordering::Relaxed) {
                    let r = if i < 2 {
                        try_http(&t, "GET", "/v1/vms/b", Some(&token), None)
                    } else {
                        try_http(&t, "GET", "/metrics", Some(&token), None)
                    };
                    match r {
                        Ok(r) if r.status >= 500 && r.status != 503 => {
                            bad.lock().unwrap().push(format!("{r:?}"))
                        }
                        Ok(r) if i < 2 && serde_json::from_str::<Value>(&r.body).is_err() => {
                            bad.lock().unwrap().push(format!("not JSON: {r:?}"))
                        }
                        // The instance is gone: the connection fails.
                        Err(_) => break,
                        Ok(_) => n += 1,
                    }
                }
                n
            })
        })
        .collect();
    assert_eq!(act(&unix, &token, "a", "stop").status, 200);
    let r = act(&tcp, &token, "b", "stop");
    assert!(r.status == 200 || r.status == 503, "{r:?}");
    c.expect_machine_end(true);
    racing.store(false, Ordering::Relaxed);
    let answered: usize = racers.into_iter().map(|r| r.join().unwrap()).sum();
    eprintln!("racing requests answered: {answered}");
    let bad = bad.lock().unwrap().clone();
    assert!(bad.is_empty(), "{bad:?}");
    assert!(!dir.dir.exists(), "the instance directory is left behind");
    assert!(try_http(&unix, "GET", "/v1/vms", Some(&token), None).is_err());
    let _ = std::fs::remove_dir_all(&base);
}
