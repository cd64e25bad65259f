//! An interactive QEMU run: its serial console read as it arrives (complete
//! lines with their arrival time, and the unfinished last line, where a shell
//! prompt waits), and input sent to it.
//!
//! Serial output is read as a terminal shows it: a carriage return goes back to
//! the start of the line and what follows overwrites it. Every line goes to a
//! log file as it is completed (QEMU's stderr prefixed `[qemu stderr] `; an
//! unfinished last line when QEMU ends).

use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use crate::qemu::QemuConfig;
use crate::testing::Pattern;

/// One complete console line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// When its newline arrived, measured from QEMU's start.
    pub at: Duration,
    /// The text as a terminal would show it (carriage returns applied).
    pub text: String,
}

/// Why waiting on the console did not succeed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConsoleError {
    /// What was awaited did not come in time.
    Timeout {
        /// What was awaited.
        what: String,
        /// How long we waited.
        waited: Duration,
    },
    /// QEMU closed its output (exited) first.
    Ended {
        /// What was awaited.
        what: String,
        /// Its exit status, if known.
        status: Option<String>,
    },
    /// A line matched a failure pattern (panic, trap dump, …).
    Failure {
        /// The line.
        line: String,
        /// The pattern it matched.
        pattern: String,
    },
    /// Reading, writing or starting failed.
    Io(String),
}

impl fmt::Display for ConsoleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConsoleError::Timeout { what, waited } => {
                write!(
                    f,
                    "timed out after {:.1} s waiting for {what}",
                    waited.as_secs_f64()
                )
            }
            ConsoleError::Ended { what, status } => write!(
                f,
                "QEMU ended ({}) before {what}",
                status.as_deref().unwrap_or("status unknown")
            ),
            ConsoleError::Failure { line, pattern } => {
                write!(f, "failure line (matched {pattern}): `{line}`")
            }
            ConsoleError::Io(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for ConsoleError {}

enum Event {
    Serial(Instant, Vec<u8>),
    SerialClosed,
    Stderr(String),
}

/// After a failure line, keep reading this long (a trap dump spans lines).
const FAILURE_GRACE: Duration = Duration::from_secs(1);

/// A running QEMU with its console.
#[derive(Debug)]
pub struct Console {
    child: Child,
    stdin: Option<ChildStdin>,
    events: Receiver<EventBox>,
    start: Instant,
    log: File,
    log_path: PathBuf,
    lines: Vec<Line>,
    partial: Vec<u8>,
    /// Where the next byte of the unfinished line goes (after a `\r`: 0).
    cursor: usize,
    serial_closed: bool,
    exit: Option<ExitStatus>,
    failure_patterns: Vec<Pattern>,
    failure: Option<(String, String)>,
    stderr_tail: Vec<String>,
}

/// [`Event`] wrapped so that [`Console`] can derive `Debug`.
struct EventBox(Event);

impl fmt::Debug for EventBox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Event::Serial(_, b) => write!(f, "Serial({} bytes)", b.len()),
            Event::SerialClosed => f.write_str("SerialClosed"),
            Event::Stderr(l) => write!(f, "Stderr({l:?})"),
        }
    }
}

impl Console {
    /// Starts QEMU as `cfg` says, its stdin a pipe we write to; every line is
    /// checked against `failure_patterns`.
    pub fn spawn(
        cfg: &QemuConfig,
        log_path: &Path,
        failure_patterns: Vec<Pattern>,
    ) -> io::Result<Console> {
        if let Some(dir) = log_path.parent() {
            fs::create_dir_all(dir)?;
        }
        let mut log = File::create(log_path)?;
        writeln!(log, "# {}", cfg.command_line())?;
        let start = Instant::now();
        let mut child = Command::new(&cfg.binary)
            .args(cfg.args())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot start {}: {e}", cfg.binary.display()),
                )
            })?;
        let (tx, rx) = mpsc::channel();
        if let Some(mut out) = child.stdout.take() {
            let tx = tx.clone();
            thread::spawn(move || {
                let mut buf = vec![0u8; 4096];
                loop {
                    match out.read(&mut buf) {
                        Ok(0) | Err(_) => {
                            let _ = tx.send(EventBox(Event::SerialClosed));
                            return;
                        }
                        Ok(n) => {
                            let chunk = buf.get(..n).unwrap_or_default().to_vec();
                            if tx
                                .send(EventBox(Event::Serial(Instant::now(), chunk)))
                                .is_err()
                            {
                                return;
                            }
                        }
                    }
                }
            });
        }
        if let Some(err) = child.stderr.take() {
            let tx = tx.clone();
            thread::spawn(move || {
                for line in BufReader::new(err).lines() {
                    let Ok(line) = line else { return };
                    if tx.send(EventBox(Event::Stderr(line))).is_err() {
                        return;
                    }
                }
            });
        }
        drop(tx);
        let stdin = child.stdin.take();
        Ok(Console {
            child,
            stdin,
            events: rx,
            start,
            log,
            log_path: log_path.to_path_buf(),
            lines: Vec::new(),
            partial: Vec::new(),
            cursor: 0,
            serial_closed: false,
            exit: None,
            failure_patterns,
            failure: None,
            stderr_tail: Vec::new(),
        })
    }

    /// The log file.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Every complete line so far.
    pub fn lines(&self) -> &[Line] {
        &self.lines
    }

    /// The unfinished last line.
    pub fn partial(&self) -> String {
        String::from_utf8_lossy(&self.partial).into_owned()
    }

    /// Time since QEMU was started.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// The last lines QEMU wrote to stderr.
    pub fn stderr_tail(&self) -> &[String] {
        &self.stderr_tail
    }

    fn take(&mut self, ev: Event) {
        match ev {
            Event::Serial(at, bytes) => {
                let at = at.saturating_duration_since(self.start);
                for b in bytes {
                    match b {
                        b'\n' => {
                            let text = String::from_utf8_lossy(&self.partial).into_owned();
                            self.partial.clear();
                            self.cursor = 0;
                            let _ = writeln!(self.log, "{text}");
                            if self.failure.is_none() {
                                if let Some(p) =
                                    self.failure_patterns.iter().find(|p| p.matches(&text))
                                {
                                    self.failure = Some((text.clone(), p.to_string()));
                                }
                            }
                            self.lines.push(Line { at, text });
                        }
                        // As on a terminal: back to the line's start, what follows
                        // overwrites (the hypervisor re-prefixes a line after a
                        // carriage return; line editors redraw with it).
                        b'\r' => self.cursor = 0,
                        _ => {
                            match self.partial.get_mut(self.cursor) {
                                Some(slot) => *slot = b,
                                None => self.partial.push(b),
                            }
                            self.cursor += 1;
                        }
                    }
                }
            }
            Event::SerialClosed => self.serial_closed = true,
            Event::Stderr(line) => {
                let _ = writeln!(self.log, "[qemu stderr] {line}");
                if self.stderr_tail.len() == 20 {
                    self.stderr_tail.remove(0);
                }
                self.stderr_tail.push(line);
            }
        }
        let _ = self.log.flush();
    }

    /// Takes whatever arrives for `d`.
    fn drain_for(&mut self, d: Duration) {
        let until = Instant::now() + d;
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            match self.events.recv_timeout(left) {
                Ok(EventBox(ev)) => self.take(ev),
                Err(_) => break,
            }
        }
    }

    fn failure_error(&mut self) -> Option<ConsoleError> {
        let (line, pattern) = self.failure.clone()?;
        self.drain_for(FAILURE_GRACE);
        Some(ConsoleError::Failure { line, pattern })
    }

    fn status_text(&mut self) -> Option<String> {
        if self.exit.is_none() {
            // Output closed: QEMU is exiting; give it a moment.
            let until = Instant::now() + Duration::from_secs(2);
            while self.exit.is_none() && Instant::now() < until {
                self.exit = self.child.try_wait().ok().flatten();
                if self.exit.is_none() {
                    thread::sleep(Duration::from_millis(20));
                }
            }
        }
        self.exit.map(|s| s.to_string())
    }

    /// Waits until `check(lines, partial)` answers, reading output as it comes,
    /// for at most `timeout`. `what` names it in errors.
    pub fn wait_for<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&[Line], &str) -> Option<T>,
    ) -> Result<T, ConsoleError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self.failure_error() {
                return Err(e);
            }
            if let Some(t) = check(&self.lines, &String::from_utf8_lossy(&self.partial)) {
                return Ok(t);
            }
            if self.serial_closed {
                return Err(ConsoleError::Ended {
                    what: what.to_string(),
                    status: self.status_text(),
                });
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return Err(ConsoleError::Timeout {
                    what: what.to_string(),
                    waited: timeout,
                });
            };
            match self.events.recv_timeout(left) {
                Ok(EventBox(ev)) => {
                    self.take(ev);
                    // Take everything already queued before judging.
                    while let Ok(EventBox(ev)) = self.events.try_recv() {
                        self.take(ev);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => self.serial_closed = true,
            }
        }
    }

    /// Sends `text` to the console.
    pub fn send(&mut self, text: &str) -> Result<(), ConsoleError> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| ConsoleError::Io("QEMU's input is closed".into()))?;
        stdin
            .write_all(text.as_bytes())
            .and_then(|()| stdin.flush())
            .map_err(|e| ConsoleError::Io(format!("cannot write to QEMU: {e}")))
    }

    /// Waits (at most `timeout`) for QEMU to exit by itself, reading its output
    /// to the end; returns its exit status.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus, ConsoleError> {
        let what = "QEMU to exit";
        let deadline = Instant::now() + timeout;
        match self.wait_for(what, timeout, |_, _| None::<()>) {
            Ok(()) | Err(ConsoleError::Ended { .. }) => {}
            Err(e) => return Err(e),
        }
        // Its output is closed; the process itself follows.
        let deadline = deadline.max(Instant::now() + Duration::from_secs(5));
        loop {
            if let Some(s) = self.exit.or_else(|| self.child.try_wait().ok().flatten()) {
                self.exit = Some(s);
                // The rest of QEMU's output (stderr may trail): until both
                // readers have finished, within reason.
                let until = Instant::now() + Duration::from_secs(2);
                while let Some(left) = until.checked_duration_since(Instant::now()) {
                    match self.events.recv_timeout(left) {
                        Ok(EventBox(ev)) => self.take(ev),
                        Err(_) => break,
                    }
                }
                return Ok(s);
            }
            if Instant::now() >= deadline {
                return Err(ConsoleError::Timeout {
                    what: what.to_string(),
                    waited: timeout,
                });
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        if !self.partial.is_empty() {
            let _ = write!(self.log, "{}", String::from_utf8_lossy(&self.partial));
        }
        let how = match self.exit.or_else(|| self.child.try_wait().ok().flatten()) {
            Some(s) => format!("exited: {s}"),
            None => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                "killed".to_string()
            }
        };
        let _ = writeln!(
            self.log,
            "\n# qemu {how} ({:.1} s)",
            self.start.elapsed().as_secs_f64()
        );
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;
    use crate::config::{Arch, Machine};

    fn fake_qemu(dir: &Path, script: &str) -> QemuConfig {
        fs::create_dir_all(dir).unwrap();
        let path = dir.join("fake-qemu.sh");
        fs::write(&path, script).unwrap();
        let mut perms = fs::metadata(&path).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        fs::set_permissions(&path, perms).unwrap();
        let m = Machine {
            arch: Arch::Riscv64,
            cpus: 1,
            memory_bytes: 1 << 30,
            cpu: None,
            options: None,
        };
        QemuConfig {
            binary: path,
            ..QemuConfig::new(&m, Path::new("hv"), None)
        }
    }

    /// A shell script standing in for QEMU: a prompt without a newline, input
    /// echoed back, output lines with their times, a clean exit.
    #[test]
    fn prompt_send_and_exit() {
        let dir = std::env::temp_dir().join(format!("fv-console-{}", std::process::id()));
        let cfg = fake_qemu(
            &dir,
            "#!/bin/sh\necho 'boot\r'\nprintf '[vm] READY\\r[vm] \\n[vm] 12345\\rab\\n'\nprintf 'guest:~# '\nread line\necho \"got $line\"\necho oops >&2\nexit 0\n",
        );
        let log = dir.join("c.log");
        let mut c = Console::spawn(&cfg, &log, vec![]).unwrap();
        let at = c
            .wait_for("the marker", Duration::from_secs(10), |lines, _| {
                lines.iter().find(|l| l.text == "[vm] READY").map(|l| l.at)
            })
            .unwrap();
        assert!(at < Duration::from_secs(10));
        c.wait_for("a prompt", Duration::from_secs(10), |_, p| {
            (p == "guest:~# ").then_some(())
        })
        .unwrap();
        c.send("hello\n").unwrap();
        c.wait_for("the answer", Duration::from_secs(10), |lines, _| {
            // The prompt had no newline: the answer completes its line.
            lines
                .iter()
                .any(|l| l.text == "guest:~# got hello")
                .then_some(())
        })
        .unwrap();
        let status = c.wait_exit(Duration::from_secs(10)).unwrap();
        assert!(status.success());
        let texts: Vec<&str> = c.lines().iter().map(|l| l.text.as_str()).collect();
        // A carriage return rewinds: the re-prefix overwrites the prefix, "ab"
        // overwrites "[v".
        assert_eq!(
            texts,
            ["boot", "[vm] READY", "abm] 12345", "guest:~# got hello"]
        );
        assert!(c.stderr_tail().contains(&"oops".to_string()));
        drop(c);
        let text = fs::read_to_string(&log).unwrap();
        // (QEMU's stderr may land anywhere between the serial lines.)
        assert!(text.contains("boot\n[vm] READY\nabm] 12345\n"), "{text}");
        assert!(text.contains("got hello\n"), "{text}");
        assert!(text.contains("[qemu stderr] oops"), "{text}");
        assert!(text.contains("# qemu exited"), "{text}");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn timeout_end_and_failure_are_reported() {
        let dir = std::env::temp_dir().join(format!("fv-console-e-{}", std::process::id()));
        let cfg = fake_qemu(&dir, "#!/bin/sh\necho start\nexec sleep 30\n");
        let mut c = Console::spawn(&cfg, &dir.join("t.log"), vec![]).unwrap();
        let t0 = Instant::now();
        let e = c
            .wait_for("the marker", Duration::from_millis(300), |_, _| None::<()>)
            .unwrap_err();
        assert!(matches!(e, ConsoleError::Timeout { .. }), "{e:?}");
        assert!(e.to_string().contains("waiting for the marker"), "{e}");
        assert!(t0.elapsed() < Duration::from_secs(5));
        drop(c); // kills the sleeping script
        assert!(fs::read_to_string(dir.join("t.log"))
            .unwrap()
            .contains("# qemu killed"));

        let cfg = fake_qemu(&dir, "#!/bin/sh\necho start\nexit 3\n");
        let mut c = Console::spawn(&cfg, &dir.join("e.log"), vec![]).unwrap();
        let e = c
            .wait_for("the marker", Duration::from_secs(10), |_, _| None::<()>)
            .unwrap_err();
        match e {
            ConsoleError::Ended { status, .. } => {
                assert!(status.unwrap().contains('3'));
            }
            other => panic!("{other:?}"),
        }

        let cfg = fake_qemu(
            &dir,
            "#!/bin/sh\necho '[    1.0] Kernel panic - not syncing'\necho trace\nexec sleep 30\n",
        );
        let mut c = Console::spawn(
            &cfg,
            &dir.join("f.log"),
            vec![Pattern::Contains("Kernel panic".into())],
        )
        .unwrap();
        let e = c
            .wait_for("the marker", Duration::from_secs(10), |_, _| None::<()>)
            .unwrap_err();
        assert!(
            matches!(&e, ConsoleError::Failure { line, .. } if line.contains("Kernel panic")),
            "{e:?}"
        );
        // The grace period collected the rest of the dump.
        assert!(c.lines().iter().any(|l| l.text == "trace"));
        let _ = fs::remove_dir_all(&dir);
    }
}
