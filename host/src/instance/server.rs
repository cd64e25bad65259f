//! The instance server inside `ferrovisor run`: it owns the control channel
//! to the hypervisor (QEMU's `qemu-ctl.sock`) and serves `api.sock`.
//!
//! * Clients' first frame must be `Hello` with the instance's token.
//! * `Request`, `RequestHuman` and `Input` frames are relayed to the
//!   hypervisor under a fresh id; its reply goes back to the client under the
//!   client's id. While the channel is down the relay answers itself
//!   (`error code=unavailable`, or `code=gone` once QEMU has exited).
//! * `Subscribe` with `console vm=NAME [history=1] [follow=0]` streams that
//!   VM's console output (after its log so far with `history=1`; with
//!   `follow=0` only the history), `events` streams the hypervisor's events.
//! * Console output of every VM is appended to `logs/<vm>.log`.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use fv_ctrl::{Decoder, Kind};

use super::client::HOST_FRAME;
use super::records;
use super::runtime::InstanceDir;

type Conn = Arc<Mutex<UnixStream>>;

/// How long a request waits for the control channel to come up.
const LINK_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug)]
enum Sub {
    Console(String),
    Events,
}

#[derive(Debug, Default)]
struct Logs {
    files: HashMap<String, File>,
}

#[derive(Debug)]
struct Shared {
    dir: InstanceDir,
    token: String,
    hv: Mutex<Option<UnixStream>>,
    /// QEMU has exited: requests get `code=gone`.
    ended: AtomicBool,
    next_id: AtomicU32,
    /// hypervisor id -> (client, client's id)
    pending: Mutex<HashMap<u32, (Conn, u32)>>,
    subs: Mutex<Vec<(Conn, Sub)>>,
    logs: Mutex<Logs>,
}

/// A running instance server; [`Server::shutdown`] ends it.
#[derive(Debug)]
pub struct Server {
    shared: Arc<Shared>,
}

fn send(conn: &Conn, kind: Kind, id: u32, payload: &[u8]) -> io::Result<()> {
    let mut buf = Vec::new();
    fv_ctrl::encode(kind, id, payload, &mut buf)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{e:?}")))?;
    let mut s = conn.lock().map_err(|_| io::Error::other("poisoned"))?;
    s.write_all(&buf)
}

fn reply_error(conn: &Conn, id: u32, code: &str, msg: &str) {
    let line = format!(
        "error code={code} msg=\"{}\"\n",
        msg.replace(['"', '\\'], "'")
    );
    let _ = send(conn, Kind::Reply, id, line.as_bytes());
}

impl Server {
    /// Binds `api.sock` and starts the threads: one accepting clients, one
    /// connecting to QEMU's control socket (retrying while QEMU starts) and
    /// reading the hypervisor's frames.
    pub fn start(dir: InstanceDir, token: String) -> io::Result<Server> {
        let listener = UnixListener::bind(dir.api_socket())?;
        let shared = Arc::new(Shared {
            dir,
            token,
            hv: Mutex::new(None),
            ended: AtomicBool::new(false),
            next_id: AtomicU32::new(1),
            pending: Mutex::new(HashMap::new()),
            subs: Mutex::new(Vec::new()),
            logs: Mutex::new(Logs::default()),
        });
        let s = shared.clone();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let s = s.clone();
                thread::spawn(move || serve_client(&s, stream));
            }
        });
        let s = shared.clone();
        thread::spawn(move || hv_link(&s));
        Ok(Server { shared })
    }

    /// QEMU has exited: fail what waits, close subscriptions.
    pub fn shutdown(&self) {
        let s = &self.shared;
        s.ended.store(true, Ordering::Release);
        if let Ok(mut hv) = s.hv.lock() {
            if let Some(h) = hv.take() {
                let _ = h.shutdown(std::net::Shutdown::Both);
            }
        }
        fail_pending(s);
        if let Ok(mut subs) = s.subs.lock() {
            for (c, _) in subs.drain(..) {
                if let Ok(c) = c.lock() {
                    let _ = c.shutdown(std::net::Shutdown::Both);
                }
            }
        }
    }
}

fn fail_pending(s: &Shared) {
    let drained: Vec<(Conn, u32)> = match s.pending.lock() {
        Ok(mut p) => p.drain().map(|(_, v)| v).collect(),
        Err(_) => Vec::new(),
    };
    for (c, id) in drained {
        reply_error(&c, id, "gone", "the machine has powered off");
    }
}

/// Connects to QEMU's control socket and reads the hypervisor's frames until
/// QEMU closes it.
fn hv_link(s: &Arc<Shared>) {
    let path = s.dir.qemu_socket();
    let start = Instant::now();
    let stream = loop {
        if s.ended.load(Ordering::Acquire) {
            return;
        }
        match UnixStream::connect(&path) {
            Ok(st) => break st,
            Err(_) if start.elapsed() < Duration::from_secs(120) => {
                thread::sleep(Duration::from_millis(20))
            }
            Err(_) => return,
        }
    };
    let Ok(reader) = stream.try_clone() else {
        return;
    };
    if let Ok(mut hv) = s.hv.lock() {
        *hv = Some(stream);
    }
    read_frames(&reader, &mut |f| {
        from_hv(s, f.kind, f.id, f.payload);
        true
    });
    if let Ok(mut hv) = s.hv.lock() {
        *hv = None;
    }
    s.ended.store(true, Ordering::Release);
    fail_pending(s);
}

/// One frame from the hypervisor.
fn from_hv(s: &Shared, kind: Kind, id: u32, payload: &[u8]) {
    match kind {
        Kind::Reply | Kind::ReplyPart => {
            let target = match s.pending.lock() {
                Ok(mut p) if kind == Kind::Reply => p.remove(&id),
                Ok(p) => p.get(&id).cloned(),
                Err(_) => None,
            };
            if let Some((c, cid)) = target {
                let _ = send(&c, kind, cid, payload);
            }
        }
        Kind::Console => {
            let Some((vm, data)) = fv_ctrl::split_console(payload) else {
                return;
            };
            let Ok(mut logs) = s.logs.lock() else { return };
            if !logs.files.contains_key(vm) {
                if let Ok(f) = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(s.dir.vm_log(vm))
                {
                    logs.files.insert(vm.to_string(), f);
                }
            }
            if let Some(f) = logs.files.get_mut(vm) {
                let _ = f.write_all(data);
            }
            // Subscribers are served under the log lock, so a subscription's
            // history and its live stream never overlap or leave a gap.
            broadcast(
                s,
                kind,
                payload,
                |sub| matches!(sub, Sub::Console(v) if v == vm),
            );
        }
        Kind::Event => broadcast(s, kind, payload, |sub| matches!(sub, Sub::Events)),
        _ => {}
    }
}

fn broadcast(s: &Shared, kind: Kind, payload: &[u8], wants: impl Fn(&Sub) -> bool) {
    let Ok(mut subs) = s.subs.lock() else { return };
    subs.retain(|(c, sub)| !wants(sub) || send(c, kind, 0, payload).is_ok());
}

/// Reads and decodes frames from `reader` until it closes or `f` returns
/// `false`.
fn read_frames(mut reader: &UnixStream, f: &mut dyn FnMut(fv_ctrl::Frame<'_>) -> bool) {
    let mut dec: Box<Decoder<HOST_FRAME>> = Box::new(Decoder::new());
    let mut buf = vec![0u8; 65536];
    let mut go = true;
    while go {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        dec.push(&buf[..n], &mut |fr| {
            if go {
                go = f(fr);
            }
        });
    }
}

/// One client of `api.sock`.
fn serve_client(s: &Arc<Shared>, stream: UnixStream) {
    let Ok(writer) = stream.try_clone() else {
        return;
    };
    // A client that stops reading is dropped rather than stall the relay.
    let _ = writer.set_write_timeout(Some(Duration::from_secs(2)));
    let conn: Conn = Arc::new(Mutex::new(writer));
    let mut authed = false;
    read_frames(&stream, &mut |f| {
        if f.version != fv_ctrl::VERSION {
            reply_error(&conn, f.id, "version", "unsupported frame version");
            return true;
        }
        if !authed {
            if f.kind == Kind::Hello && f.payload == s.token.as_bytes() {
                authed = true;
                let _ = send(&conn, Kind::Reply, f.id, b"ok\n");
                return true;
            }
            reply_error(&conn, f.id, "auth", "present the instance's token first");
            return false;
        }
        match f.kind {
            Kind::Request | Kind::RequestHuman | Kind::Input => {
                relay(s, &conn, f.kind, f.id, f.payload)
            }
            Kind::Subscribe => subscribe(s, &conn, f.id, f.payload),
            Kind::Hello => {
                let _ = send(&conn, Kind::Reply, f.id, b"ok\n");
            }
            _ => reply_error(&conn, f.id, "unsupported-kind", "not a client frame"),
        }
        true
    });
    // The client left: drop its subscriptions and pending replies.
    if let Ok(mut subs) = s.subs.lock() {
        subs.retain(|(c, _)| !Arc::ptr_eq(c, &conn));
    }
    if let Ok(mut p) = s.pending.lock() {
        p.retain(|_, (c, _)| !Arc::ptr_eq(c, &conn));
    }
}

fn relay(s: &Shared, conn: &Conn, kind: Kind, id: u32, payload: &[u8]) {
    if s.ended.load(Ordering::Acquire) {
        return reply_error(conn, id, "gone", "the machine has powered off");
    }
    let hv_id = s.next_id.fetch_add(1, Ordering::Relaxed);
    let mut frame = Vec::new();
    if fv_ctrl::encode(kind, hv_id, payload, &mut frame).is_err()
        || payload.len() > fv_ctrl::HV_MAX_PAYLOAD
    {
        return reply_error(conn, id, "too-long", "request too long");
    }
    if let Ok(mut p) = s.pending.lock() {
        p.insert(hv_id, (conn.clone(), id));
    }
    // Right after `run` starts, QEMU may not listen yet: wait for the link.
    let deadline = Instant::now() + LINK_WAIT;
    while !s.ended.load(Ordering::Acquire)
        && Instant::now() < deadline
        && s.hv.lock().is_ok_and(|h| h.is_none())
    {
        thread::sleep(Duration::from_millis(20));
    }
    let sent = match s.hv.lock() {
        Ok(mut hv) => match hv.as_mut() {
            Some(h) => h.write_all(&frame).is_ok(),
            None => false,
        },
        Err(_) => false,
    };
    if !sent {
        if let Ok(mut p) = s.pending.lock() {
            p.remove(&hv_id);
        }
        reply_error(
            conn,
            id,
            "unavailable",
            "the hypervisor's control channel is not connected",
        );
    }
}

fn subscribe(s: &Shared, conn: &Conn, id: u32, payload: &[u8]) {
    let text = String::from_utf8_lossy(payload);
    let Some(r) = records::parse_line(&text) else {
        return reply_error(conn, id, "malformed", "malformed subscription");
    };
    match r.kind.as_str() {
        "events" => {
            if let Ok(mut subs) = s.subs.lock() {
                subs.push((conn.clone(), Sub::Events));
            }
            let _ = send(conn, Kind::Reply, id, b"ok\n");
        }
        "console" => {
            let Some(vm) = r.get("vm").filter(|v| super::runtime::valid_name(v)) else {
                return reply_error(conn, id, "malformed", "console needs vm=NAME");
            };
            let Ok(_logs) = s.logs.lock() else { return };
            if r.get("history") == Some("1") {
                if let Ok(bytes) = std::fs::read(s.dir.vm_log(vm)) {
                    for chunk in bytes.chunks(16384) {
                        let mut p = vec![vm.len() as u8];
                        p.extend_from_slice(vm.as_bytes());
                        p.extend_from_slice(chunk);
                        let _ = send(conn, Kind::Console, 0, &p);
                    }
                }
            }
            if r.get("follow") != Some("0") {
                if let Ok(mut subs) = s.subs.lock() {
                    subs.push((conn.clone(), Sub::Console(vm.to_string())));
                }
            }
            let _ = send(conn, Kind::Reply, id, b"ok\n");
        }
        _ => reply_error(conn, id, "malformed", "unknown subscription"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use crate::instance::client::{Client, CtlError};
    use std::os::unix::net::UnixListener;

    /// A stand-in hypervisor on `qemu-ctl.sock`: console output and an event
    /// at once, then answers `vm list` in two parts, anything else in the
    /// human form with a refusal, until told `quit`.
    fn fake_hv(listener: UnixListener) {
        let (mut s, _) = listener.accept().unwrap();
        let mut out = Vec::new();
        fv_ctrl::encode_console(Kind::Console, 0, "x", b"hello\n", &mut out).unwrap();
        fv_ctrl::encode(Kind::Event, 0, b"state vm=x state=running", &mut out).unwrap();
        // Garbage between frames is skipped by the relay's decoder.
        out.extend_from_slice(b"FV\x01garbage");
        s.write_all(&out).unwrap();
        let reader = s.try_clone().unwrap();
        let mut quit = false;
        read_frames(&reader, &mut |f| {
            let mut out = Vec::new();
            match (f.kind, f.payload) {
                (Kind::Request, b"quit") => quit = true,
                (Kind::Request, b"vm list") => {
                    fv_ctrl::encode(Kind::ReplyPart, f.id, b"vm index=0 ", &mut out).unwrap();
                    fv_ctrl::encode(Kind::Reply, f.id, b"name=x\nok\n", &mut out).unwrap();
                }
                _ => {
                    fv_ctrl::encode(Kind::Reply, f.id, b"error: no VM named 'zz'\n", &mut out)
                        .unwrap();
                }
            }
            if !out.is_empty() {
                s.write_all(&out).unwrap();
            }
            !quit
        });
    }

    #[test]
    fn relays_requests_logs_console_and_reports_the_end() {
        let base = std::env::temp_dir().join(format!("fv-srv-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let dir = InstanceDir::new(&base, "t");
        let token = dir.create(&[]).unwrap();
        let listener = UnixListener::bind(dir.qemu_socket()).unwrap();
        let hv = thread::spawn(move || fake_hv(listener));
        let server = Server::start(dir.clone(), token).unwrap();

        let mut c = Client::connect_to(dir.clone()).unwrap();
        let recs = c.request("vm list").unwrap();
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].get("name"), Some("x"));
        match c.request_human("vm info zz") {
            Err(CtlError::Refused(e)) => assert_eq!(e.msg, "no VM named 'zz'"),
            other => panic!("{other:?}"),
        }
        // The console output went to the VM's log; a history subscription
        // replays it.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read(dir.vm_log("x")).unwrap_or_default() != b"hello\n" {
            assert!(Instant::now() < deadline, "no log");
            thread::sleep(Duration::from_millis(20));
        }
        c.subscribe("console vm=x history=1 follow=0").unwrap();
        let frames = c.take_queued();
        assert_eq!(frames.len(), 1, "{frames:?}");
        assert_eq!(
            fv_ctrl::split_console(&frames[0].payload),
            Some(("x", &b"hello\n"[..]))
        );
        assert!(c.subscribe("bogus").is_err());

        // A wrong token is refused.
        let mut raw = UnixStream::connect(dir.api_socket()).unwrap();
        let mut hello = Vec::new();
        fv_ctrl::encode(Kind::Hello, 1, b"not-the-token", &mut hello).unwrap();
        raw.write_all(&hello).unwrap();
        let mut text = String::new();
        read_frames(&raw, &mut |f| {
            text = String::from_utf8_lossy(f.payload).into_owned();
            false
        });
        assert!(text.starts_with("error code=auth"), "{text}");

        // The hypervisor side goes away: requests report the end.
        let _ = c.request("quit");
        hv.join().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match c.request("vm list") {
                Err(CtlError::Gone(..)) => break,
                r => assert!(Instant::now() < deadline, "still {r:?}"),
            }
            thread::sleep(Duration::from_millis(20));
        }
        server.shutdown();
        dir.remove();
        let _ = std::fs::remove_dir_all(&base);
    }
}
