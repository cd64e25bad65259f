//! The client library: finds an instance, connects to its `api.sock`,
//! presents its token and exchanges `fv_ctrl` frames with its `run` process.
//! Every `ferrovisor` subcommand that acts on a running instance uses it (and
//! a REST front end would too).

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fv_ctrl::{Decoder, Kind};

use super::records::{self, Record, ReplyError};
use super::runtime::{self, InstanceDir};

/// How long a request may wait for its reply.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest frame a host-side decoder takes.
pub const HOST_FRAME: usize = fv_ctrl::MAX_PAYLOAD + fv_ctrl::OVERHEAD;

/// Why a command on a running instance failed.
#[derive(Debug)]
pub enum CtlError {
    /// No instance is running.
    NoneRunning,
    /// Several are, and none was named.
    Ambiguous(Vec<String>),
    /// None of that name is running.
    NoInstance(String),
    /// Its `run` process has exited (its directory was stale and is removed),
    /// or it went away during the command.
    Gone(String, String),
    /// It refused our token.
    Auth(String),
    /// The hypervisor refused the command (unknown VM, wrong state, ...).
    Refused(ReplyError),
    /// No reply in time (instance, seconds waited).
    Timeout(String, u64),
    /// A socket or file operation failed.
    Io(String, io::Error),
}

impl std::fmt::Display for CtlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CtlError::NoneRunning => f.write_str(
                "no instance is running (start one with `ferrovisor run --config FILE`)",
            ),
            CtlError::Ambiguous(names) => write!(
                f,
                "several instances are running ({}): choose one with --instance NAME",
                names.join(", ")
            ),
            CtlError::NoInstance(n) => write!(
                f,
                "no running instance named `{n}` (`ferrovisor ps` lists them)"
            ),
            CtlError::Gone(n, why) => write!(f, "instance `{n}` is gone: {why}"),
            CtlError::Auth(n) => write!(f, "instance `{n}` refused our token"),
            CtlError::Refused(e) => write!(f, "{}", e.msg),
            CtlError::Timeout(n, secs) => {
                write!(f, "instance `{n}` did not answer within {secs} s")
            }
            CtlError::Io(what, e) => write!(f, "{what}: {e}"),
        }
    }
}

impl std::error::Error for CtlError {}

/// A frame with its payload owned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedFrame {
    /// Its kind.
    pub kind: Kind,
    /// Its id.
    pub id: u32,
    /// Its payload.
    pub payload: Vec<u8>,
}

/// The running instance called `name`, or the only one when `name` is `None`.
pub fn resolve(name: Option<&str>) -> Result<InstanceDir, CtlError> {
    let base = runtime::base_dir();
    match name {
        Some(n) => {
            let d = InstanceDir::new(&base, n);
            if !runtime::valid_name(n) || !d.dir.is_dir() {
                return Err(CtlError::NoInstance(n.to_string()));
            }
            Ok(d)
        }
        None => {
            let live: Vec<InstanceDir> = runtime::list(&base)
                .into_iter()
                .filter(|d| d.alive())
                .collect();
            match live.len() {
                0 => Err(CtlError::NoneRunning),
                1 => Ok(live.into_iter().next().ok_or(CtlError::NoneRunning)?),
                _ => Err(CtlError::Ambiguous(
                    live.into_iter().map(|d| d.name).collect(),
                )),
            }
        }
    }
}

/// Sends frames on a connection (clonable across threads).
#[derive(Clone, Debug)]
pub struct FrameWriter {
    stream: Arc<UnixStream>,
    next_id: Arc<AtomicU32>,
}

impl FrameWriter {
    /// Sends one frame with a fresh id; returns the id.
    pub fn send(&self, kind: Kind, payload: &[u8]) -> io::Result<u32> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut buf = Vec::new();
        fv_ctrl::encode(kind, id, payload, &mut buf)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{e:?}")))?;
        (&*self.stream).write_all(&buf)?;
        Ok(id)
    }

    /// Sends console input for VM `vm`.
    pub fn send_input(&self, vm: &str, data: &[u8]) -> io::Result<u32> {
        let mut payload = Vec::new();
        payload.push(vm.len() as u8);
        payload.extend_from_slice(vm.as_bytes());
        payload.extend_from_slice(data);
        self.send(Kind::Input, &payload)
    }
}

/// A connection to an instance's `api.sock`.
#[derive(Debug)]
pub struct Client {
    /// The instance.
    pub instance: InstanceDir,
    stream: UnixStream,
    writer: FrameWriter,
    decoder: Box<Decoder<HOST_FRAME>>,
    queued: VecDeque<OwnedFrame>,
    timeout: Duration,
}

impl Client {
    /// Connects to the instance `name` (or the only one) and presents its token.
    pub fn connect(name: Option<&str>) -> Result<Client, CtlError> {
        let instance = resolve(name)?;
        Client::connect_to(instance)
    }

    /// Connects to `instance` and presents its token.
    pub fn connect_to(instance: InstanceDir) -> Result<Client, CtlError> {
        let n = instance.name.clone();
        if !instance.alive() {
            let why = match instance.pid() {
                Some(p) => format!("its `ferrovisor run` process (pid {p}) has exited"),
                None => "it has no `ferrovisor run` process".to_string(),
            };
            instance.remove();
            return Err(CtlError::Gone(n, why));
        }
        let stream = UnixStream::connect(instance.api_socket()).map_err(|e| {
            CtlError::Io(
                format!("instance `{n}`: {}", instance.api_socket().display()),
                e,
            )
        })?;
        let token = instance.token().map_err(|e| {
            CtlError::Io(
                format!("instance `{n}`: {}", instance.token_file().display()),
                e,
            )
        })?;
        let writer = FrameWriter {
            stream: Arc::new(
                stream
                    .try_clone()
                    .map_err(|e| CtlError::Io(format!("instance `{n}`"), e))?,
            ),
            next_id: Arc::new(AtomicU32::new(1)),
        };
        let mut c = Client {
            instance,
            stream,
            writer,
            decoder: Box::new(Decoder::new()),
            queued: VecDeque::new(),
            timeout: REPLY_TIMEOUT,
        };
        let reply = c.exchange(Kind::Hello, token.as_bytes())?;
        if records::parse_reply(&reply).is_err() {
            return Err(CtlError::Auth(n));
        }
        Ok(c)
    }

    /// How long a request waits for its reply (default [`REPLY_TIMEOUT`]).
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// A sender for this connection (for another thread).
    pub fn writer(&self) -> FrameWriter {
        self.writer.clone()
    }

    fn gone(&self, why: &str) -> CtlError {
        CtlError::Gone(self.instance.name.clone(), why.to_string())
    }

    /// The next frame; `None` when the instance closed the connection.
    /// `timeout` bounds the wait (`None`: wait as long as it takes).
    pub fn next_frame(
        &mut self,
        timeout: Option<Duration>,
    ) -> Result<Option<OwnedFrame>, CtlError> {
        let _ = self.stream.set_read_timeout(timeout);
        loop {
            if let Some(f) = self.queued.pop_front() {
                return Ok(Some(f));
            }
            let mut buf = [0u8; 16384];
            let n = match self.stream.read(&mut buf) {
                Ok(0) => return Ok(None),
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    let secs = timeout.map_or(0, |t| t.as_secs());
                    return Err(CtlError::Timeout(self.instance.name.clone(), secs));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return Ok(None),
            };
            let q = &mut self.queued;
            self.decoder.push(&buf[..n], &mut |f| {
                q.push_back(OwnedFrame {
                    kind: f.kind,
                    id: f.id,
                    payload: f.payload.to_vec(),
                })
            });
        }
    }

    /// Sends a frame and collects its reply text (the parts of a reply
    /// joined); frames of other ids (console, events) are set aside for
    /// [`Client::next_frame`].
    pub fn exchange(&mut self, kind: Kind, payload: &[u8]) -> Result<String, CtlError> {
        let id = self
            .writer
            .send(kind, payload)
            .map_err(|_| self.gone("the connection closed"))?;
        let mut text = Vec::new();
        let mut other = VecDeque::new();
        let result = loop {
            match self.next_frame(Some(self.timeout)) {
                Ok(Some(f)) if f.id == id && f.kind == Kind::ReplyPart => {
                    text.extend_from_slice(&f.payload)
                }
                Ok(Some(f)) if f.id == id && f.kind == Kind::Reply => {
                    text.extend_from_slice(&f.payload);
                    break Ok(String::from_utf8_lossy(&text).into_owned());
                }
                Ok(Some(f)) => other.push_back(f),
                Ok(None) => break Err(self.gone("it closed the connection")),
                Err(e) => break Err(e),
            }
        };
        other.extend(self.queued.drain(..));
        self.queued = other;
        result
    }

    /// Runs a command; its records in the machine line protocol.
    pub fn request(&mut self, line: &str) -> Result<Vec<Record>, CtlError> {
        let reply = self.exchange(Kind::Request, line.as_bytes())?;
        records::parse_reply(&reply).map_err(|e| match e.code.as_str() {
            "gone" => self.gone(&e.msg),
            _ => CtlError::Refused(e),
        })
    }

    /// Runs a command; the reply as the management shell prints it. A reply
    /// whose first line starts with `error:` is a refusal.
    pub fn request_human(&mut self, line: &str) -> Result<String, CtlError> {
        let reply = self.exchange(Kind::RequestHuman, line.as_bytes())?;
        // The relay's own errors come in the machine form.
        if reply.starts_with("error code=") {
            return match records::parse_reply(&reply) {
                Err(e) if e.code == "gone" => Err(self.gone(&e.msg)),
                Err(e) => Err(CtlError::Refused(e)),
                Ok(_) => Ok(reply),
            };
        }
        if let Some(msg) = reply.lines().find_map(|l| l.strip_prefix("error: ")) {
            return Err(CtlError::Refused(records::ReplyError {
                code: "refused".into(),
                msg: msg.to_string(),
                record: records::protocol_error(msg).record,
            }));
        }
        Ok(reply)
    }

    /// Frames already received and set aside (a subscription's history).
    pub fn take_queued(&mut self) -> Vec<OwnedFrame> {
        self.queued.drain(..).collect()
    }

    /// Asks the instance to stream something (`console vm=NAME [history=1]
    /// [follow=0]`, `events`); the stream's frames then come from
    /// [`Client::next_frame`].
    pub fn subscribe(&mut self, what: &str) -> Result<(), CtlError> {
        let reply = self.exchange(Kind::Subscribe, what.as_bytes())?;
        records::parse_reply(&reply)
            .map(|_| ())
            .map_err(CtlError::Refused)
    }
}
