//! The subcommands that act on a running instance: `ps`, `vm`, `stats`,
//! `logs`, `console`. Human output by default, `--json` for scripts; every
//! failure is one `ferrovisor: error: ...` line on stderr and exit status 1.

use std::io::{self, IsTerminal, Read, Write};
use std::time::Duration;

use fv_ctrl::Kind;

pub use super::client::CtlError;
use super::client::{self, Client};
use super::records;
use super::runtime;
use crate::bench::json::Json;

/// How long `ps` waits for an instance's VM count.
const PS_TIMEOUT: Duration = Duration::from_secs(5);

/// The detach key of `ferrovisor console` (Ctrl-]).
pub const DETACH: u8 = 0x1d;

/// `ferrovisor ps`: running instances (and stale directories, removed).
pub fn ps(json: bool) -> Result<(), CtlError> {
    let base = runtime::base_dir();
    let mut rows = Vec::new();
    for d in runtime::list(&base) {
        let alive = d.alive();
        let vms = if alive {
            Client::connect_to(d.clone())
                .and_then(|mut c| {
                    c.set_timeout(PS_TIMEOUT);
                    c.request("vm list")
                })
                .map(|r| r.len().to_string())
                .unwrap_or_else(|_| "-".into())
        } else {
            "-".into()
        };
        let started = d
            .info("started")
            .and_then(|s| s.parse::<u64>().ok())
            .map_or(0, |s| runtime::now_secs().saturating_sub(s));
        rows.push((
            d.name.clone(),
            d.pid().unwrap_or(0),
            if alive { "running" } else { "stale (removed)" },
            vms,
            started,
            d.info("config").unwrap_or_default(),
        ));
        if !alive {
            d.remove();
        }
    }
    if json {
        let arr = rows
            .iter()
            .map(|(n, pid, st, vms, up, cfg)| {
                Json::obj([
                    ("name", Json::str(n.clone())),
                    ("pid", Json::Num(f64::from(*pid))),
                    (
                        "state",
                        Json::str(if *st == "running" { "running" } else { "stale" }),
                    ),
                    ("vms", vms.parse::<f64>().map_or(Json::Null, Json::Num)),
                    ("uptime_s", Json::Num(*up as f64)),
                    ("config", Json::str(cfg.clone())),
                    ("dir", Json::str(base.join(n).display().to_string())),
                ])
            })
            .collect();
        print!("{}", Json::Arr(arr).pretty());
        return Ok(());
    }
    if rows.is_empty() {
        println!(
            "no running instances (runtime directory {})",
            base.display()
        );
        return Ok(());
    }
    println!(
        "{:<24} {:>8} {:<16} {:>4} {:>8}  CONFIG",
        "NAME", "PID", "STATE", "VMS", "UPTIME"
    );
    for (n, pid, st, vms, up, cfg) in rows {
        println!("{n:<24} {pid:>8} {st:<16} {vms:>4} {:>7}s  {cfg}", up);
    }
    Ok(())
}

/// Runs one management command line: human text, or with `json` the
/// records as JSON (an action prints `{"ok": true}`, a refusal `{"error":
/// {"code": ..., "msg": ...}}` besides the message on stderr).
pub fn command(instance: Option<&str>, line: &str, json: bool) -> Result<(), CtlError> {
    let mut c = Client::connect(instance)?;
    if json {
        let recs = c.request(line).inspect_err(|e| {
            // Scripts get the refusal as JSON too (the message also goes to
            // stderr, and the status is 1).
            if let CtlError::Refused(r) = e {
                print!("{}", Json::obj([("error", r.record.to_json())]).pretty());
            }
        })?;
        let j = if recs.is_empty() {
            Json::obj([("ok", Json::Bool(true))])
        } else {
            records::to_json(&recs)
        };
        print!("{}", j.pretty());
    } else {
        let text = c.request_human(line)?;
        print!("{text}");
    }
    Ok(())
}

/// Checks that VM `vm` exists on the instance.
fn check_vm(c: &mut Client, vm: &str) -> Result<(), CtlError> {
    c.request(&format!("vm info {vm}")).map(|_| ())
}

fn write_console(frame: &client::OwnedFrame, out: &mut impl Write) {
    if frame.kind == Kind::Console {
        if let Some((_, data)) = fv_ctrl::split_console(&frame.payload) {
            let _ = out.write_all(data);
            let _ = out.flush();
        }
    }
}

/// `ferrovisor logs VM [-f]`: the VM's console output since the instance
/// started (and, with `follow`, as it comes until the instance ends).
pub fn logs(instance: Option<&str>, vm: &str, follow: bool) -> Result<(), CtlError> {
    let mut c = Client::connect(instance)?;
    check_vm(&mut c, vm)?;
    let what = format!("console vm={vm} history=1 follow={}", u8::from(follow));
    c.subscribe(&what)?;
    let mut out = io::stdout().lock();
    for f in c.take_queued() {
        write_console(&f, &mut out);
    }
    if !follow {
        return Ok(());
    }
    while let Some(f) = c.next_frame(None)? {
        write_console(&f, &mut out);
    }
    eprintln!("ferrovisor: instance `{}` has ended", c.instance.name);
    Ok(())
}

/// `ferrovisor events`: one line per event (the record, or with `json` a
/// JSON object with its `event` kind and fields), until the instance ends.
pub fn events(instance: Option<&str>, json: bool) -> Result<(), CtlError> {
    let mut c = Client::connect(instance)?;
    c.subscribe("events")?;
    let mut out = io::stdout().lock();
    while let Some(f) = c.next_frame(None)? {
        if f.kind != Kind::Event {
            continue;
        }
        let text = String::from_utf8_lossy(&f.payload).into_owned();
        let line = match (json, records::parse_line(&text)) {
            (true, Some(r)) => {
                let mut fields = vec![("event".to_string(), Json::str(r.kind.clone()))];
                if let Json::Obj(rest) = r.to_json() {
                    fields.extend(rest);
                }
                Json::Obj(fields).compact()
            }
            _ => text,
        };
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
    eprintln!("ferrovisor: instance `{}` has ended", c.instance.name);
    Ok(())
}

/// Raw mode for the terminal on stdin while attached; restored on drop.
struct RawMode(Option<libc::termios>);

impl RawMode {
    fn enter() -> RawMode {
        if !io::stdin().is_terminal() {
            return RawMode(None);
        }
        // SAFETY: termios is plain data; tcgetattr fills it for fd 0.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: fd 0 is a terminal (checked above) and `t` is valid memory.
        if unsafe { libc::tcgetattr(0, &mut t) } != 0 {
            return RawMode(None);
        }
        let saved = t;
        // SAFETY: cfmakeraw only edits the struct.
        unsafe { libc::cfmakeraw(&mut t) };
        // SAFETY: fd 0 is a terminal; `t` is a valid termios.
        unsafe { libc::tcsetattr(0, libc::TCSANOW, &t) };
        RawMode(Some(saved))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(t) = self.0 {
            // SAFETY: restores the attributes read from the same terminal.
            unsafe { libc::tcsetattr(0, libc::TCSANOW, &t) };
        }
    }
}

/// `ferrovisor console VM`: the VM's console until Ctrl-] (or the end of
/// stdin, or of the instance).
pub fn console(instance: Option<&str>, vm: &str) -> Result<(), CtlError> {
    let mut c = Client::connect(instance)?;
    check_vm(&mut c, vm)?;
    c.subscribe(&format!("console vm={vm}"))?;
    eprintln!(
        "ferrovisor: attached to VM `{vm}` of instance `{}`; Ctrl-] detaches",
        c.instance.name
    );
    let writer = c.writer();
    let name = c.instance.name.clone();
    let printer = std::thread::spawn(move || {
        let mut out = io::stdout().lock();
        loop {
            match c.next_frame(None) {
                Ok(Some(f)) => {
                    if f.kind == Kind::Reply {
                        if let Err(e) = records::parse_reply(&String::from_utf8_lossy(&f.payload)) {
                            eprintln!("\r\nferrovisor: input refused: {}\r", e.msg);
                        }
                    }
                    write_console(&f, &mut out);
                }
                Ok(None) | Err(_) => return,
            }
        }
    });
    let raw = RawMode::enter();
    let mut stdin = io::stdin().lock();
    let mut buf = [0u8; 256];
    let mut gone = false;
    loop {
        if printer.is_finished() {
            gone = true;
            break;
        }
        let n = match stdin.read(&mut buf) {
            Ok(0) | Err(_) => {
                // End of input: give the last line time to be answered.
                std::thread::sleep(Duration::from_millis(500));
                break;
            }
            Ok(n) => n,
        };
        let (data, detach) = match buf[..n].iter().position(|&b| b == DETACH) {
            Some(i) => (&buf[..i], true),
            None => (&buf[..n], false),
        };
        if !data.is_empty() && writer.send_input(vm, data).is_err() {
            gone = true;
            break;
        }
        if detach {
            break;
        }
    }
    drop(raw);
    if gone {
        return Err(CtlError::Gone(name, "it closed the connection".into()));
    }
    eprintln!("\r\nferrovisor: detached from VM `{vm}`");
    Ok(())
}

/// The exit status for a failed command (after printing the error).
pub fn fail(e: &CtlError) -> u8 {
    eprintln!("ferrovisor: error: {e}");
    1
}
