//! The machine-readable replies: a line protocol for driving the same
//! commands from a program (the host tool over a management channel).
//!
//! # Protocol, version 1 ([`PROTOCOL_VERSION`])
//!
//! A **request** is one command line, exactly as a person types it (see
//! [`crate::command`]; [`crate::Command`]'s `Display` writes the canonical form),
//! ASCII, at most [`crate::MAX_LINE_LEN`] bytes, ended by LF (CR LF is fine).
//!
//! A **reply** is zero or more record lines followed by exactly one end line.
//! Every request gets exactly one reply, even an empty or malformed line, so a
//! client reads lines until it sees `ok` or `error`.
//!
//! ```text
//! reply   = *record end
//! record  = kind *( SP field ) LF
//! end     = "ok" LF / "error" *( SP field ) LF
//! field   = key "=" value
//! kind    = 1*( %x61-7A )                       ; vm vcpu hart host line command protocol
//! key     = 1*( ALPHA / DIGIT / "_" / "-" / "." )
//! value   = bare / quoted
//! bare    = 1*( ALPHA / DIGIT / "." / "_" / "-" / "," / ":" / "/" / "+" )
//! quoted  = DQUOTE *( %x20-21 / %x23-5B / %x5D-7E / "\\" / "\" DQUOTE / "\x" 2HEXDIG ) DQUOTE
//! ```
//!
//! Numbers are decimal, sizes in bytes, times in timer ticks (the `host`
//! record gives `timebase` in ticks per second). `\xNN` is one raw byte, so
//! `line` texts are byte-exact even when they are not UTF-8. Keys of the form
//! `group.name` (`exit.wfi`, `sbi.hsm`, `irq.timer`) are counters and are
//! left out when zero; other keys are always present unless marked optional.
//! Clients must ignore keys and record kinds they do not know. If a reply ends
//! with `error`, records before it are incomplete and should be discarded.
//!
//! Records:
//!
//! ```text
//! host     timebase uptime_ticks memory free harts
//! vm       index name state [reason] vcpus memory resident weight [vmid] [harts] focus
//! vcpu     vm vcpu state [hart] pinned run_ticks migrations exceptions exit.* sbi.* irq.*
//! hart     hart hartid vcpus run_ticks idle_ticks
//! line     text
//! protocol version
//! command  usage about
//! ```
//!
//! `state` is `defined running paused rebooting stopped destroyed`; `reason`
//! (only when stopped) is `power-off guest-failure fault operator`; `harts` is
//! a comma-separated list (left out when empty); `focus` and `pinned` are 0 or 1.
//!
//! Replies per command:
//!
//! ```text
//! vm list            vm*  ok
//! vm info NAME       host vm vcpu*  ok
//! stats NAME         host vm vcpu*  ok
//! stats              host (vm vcpu*)* hart*  ok
//! log [N], vm log NAME [N]   line*  ok
//! help               protocol command*  ok
//! lifecycle, console ok
//! ```
//!
//! Errors:
//!
//! ```text
//! error code=parse kind=<ParseError kind> msg="..."
//! error code=unknown-vm vm=NAME msg="..."
//! error code=wrong-state vm=NAME state=... [reason=...] msg="..."
//! error code=no-resources vm=NAME resource=memory|vmid|heap msg="..."
//! error code=no-console|unsupported|failed vm=NAME msg="..."
//! ```
//!
//! `msg` is the sentence the human reply would print. Example exchange:
//!
//! ```text
//! > vm pause web
//! < ok
//! > vm pause web
//! < error code=wrong-state vm=web state=paused msg="cannot pause VM 'web': it is paused (it must be running)"
//! > vm list
//! < vm index=0 name=web state=paused vcpus=2 memory=268435456 resident=12582912 weight=1 vmid=1 harts=0,1 focus=0
//! < ok
//! ```

use crate::command::{parse_bytes, Command, DEFAULT_LOG_LINES, USAGE};
use crate::counters::{CounterKey, Counts};
use crate::exec::{act, Failure};
use crate::management::Management;
use crate::model::{HartStats, HostStats, MgmtError, VcpuStats, VmState, VmSummary};
use crate::ring::RingView;
use crate::text::NameBuf;
use core::fmt::{self, Display, Write};

/// Version of the line protocol described in this module.
pub const PROTOCOL_VERSION: u32 = 1;

/// Runs `cmd` and writes the machine-readable reply (records, then `ok` or
/// `error ...`). Returns only the writer's errors.
pub fn execute_machine<M, W>(cmd: &Command<'_>, m: &mut M, out: &mut W) -> fmt::Result
where
    M: Management + ?Sized,
    W: Write,
{
    let out: &mut dyn Write = out;
    if let Some((action, name)) = cmd.action() {
        return match act(m, action, name.as_str()) {
            Ok(()) => writeln!(out, "ok"),
            Err(e) => writeln!(out, "{}", ErrorLine::new(cmd, e, None)),
        };
    }
    let r: Result<fmt::Result, MgmtError> = match *cmd {
        Command::VmList => {
            let mut r = Ok(());
            m.for_each_vm(&mut |s| {
                if r.is_ok() {
                    r = vm_record(out, s);
                }
            });
            Ok(r)
        }
        Command::VmInfo { name } | Command::Stats { name: Some(name) } => {
            // Refuse an unknown name before writing any record.
            m.vm(name.as_str(), &mut |_| {}).and_then(|()| {
                let host = m.host();
                match host_record(out, &host) {
                    Ok(()) => vm_and_vcpus(&*m, name.as_str(), out),
                    Err(e) => Ok(Err(e)),
                }
            })
        }
        Command::Stats { name: None } => {
            let host = m.host();
            let mut r = host_record(out, &host);
            let mut count = 0usize;
            m.for_each_vm(&mut |_| count += 1);
            for i in 0..count {
                if r.is_err() {
                    break;
                }
                let mut name = NameBuf::new();
                let mut k = 0usize;
                m.for_each_vm(&mut |s| {
                    if k == i {
                        name.set(s.name);
                    }
                    k += 1;
                });
                match vm_and_vcpus(&*m, name.as_str(), out) {
                    Ok(w) => r = w,
                    Err(MgmtError::UnknownVm) => {}
                    Err(e) => {
                        return writeln!(out, "{}", ErrorLine::new(cmd, e, Some(name.as_str())));
                    }
                }
            }
            m.for_each_hart(&mut |h| {
                if r.is_ok() {
                    r = hart_record(out, h);
                }
            });
            Ok(r)
        }
        Command::Log { lines } => {
            let mut r = Ok(());
            m.with_hypervisor_log(&mut |v| {
                r = line_records(out, v.last_lines(lines.unwrap_or(DEFAULT_LOG_LINES)));
            });
            Ok(r)
        }
        Command::VmLog { name, lines } => {
            let mut r = Ok(());
            m.with_console_history(name.as_str(), &mut |v| {
                r = line_records(out, v.last_lines(lines.unwrap_or(DEFAULT_LOG_LINES)));
            })
            .map(|()| r)
        }
        Command::Console { name } => m.focus_console(name.as_str()).map(|()| Ok(())),
        Command::Help => {
            let mut r = Record::new(out, "protocol")
                .num("version", PROTOCOL_VERSION.into())
                .end();
            for (usage, about) in USAGE {
                if r.is_ok() {
                    r = Record::new(out, "command")
                        .text("usage", usage)
                        .text("about", about)
                        .end();
                }
            }
            Ok(r)
        }
        // Lifecycle commands were handled above.
        _ => Ok(Ok(())),
    };
    match r {
        Ok(Ok(())) => writeln!(out, "ok"),
        Ok(Err(e)) => Err(e),
        Err(e) => writeln!(out, "{}", ErrorLine::new(cmd, e, None)),
    }
}

/// Parses and runs one request line; every line, blank or malformed, gets a
/// reply ending in `ok` or `error`.
pub fn execute_line_machine<M, W>(line: &[u8], m: &mut M, out: &mut W) -> fmt::Result
where
    M: Management + ?Sized,
    W: Write,
{
    match parse_bytes(line) {
        Ok(cmd) => execute_machine(&cmd, m, out),
        Err(e) => Record::new(out, "error")
            .word("code", "parse")
            .word("kind", e.kind())
            .display("msg", &e)
            .end(),
    }
}

/// An `error` end line for a refused command.
struct ErrorLine<'a> {
    cmd: &'a Command<'a>,
    error: MgmtError,
    /// The VM, when it is not the one the command names (`stats`).
    vm: Option<&'a str>,
}

impl<'a> ErrorLine<'a> {
    fn new(cmd: &'a Command<'a>, error: MgmtError, vm: Option<&'a str>) -> Self {
        ErrorLine { cmd, error, vm }
    }
}

impl Display for ErrorLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.vm.or(self.cmd.vm().map(|n| n.as_str()));
        let mut rec = Record::new(f, "error").word("code", self.error.code());
        if let Some(name) = name {
            rec = rec.word("vm", name);
        }
        match self.error {
            MgmtError::WrongState { current } => rec = rec.state(current),
            MgmtError::NoResources(r) => rec = rec.word("resource", r.name()),
            _ => {}
        }
        let failure = Failure::new(self.cmd, name.unwrap_or(""), self.error);
        rec.display("msg", &failure).finish()
    }
}

/// One record line being written; the first write error sticks.
struct Record<'w> {
    out: &'w mut dyn Write,
    r: fmt::Result,
}

impl<'w> Record<'w> {
    fn new(out: &'w mut dyn Write, kind: &str) -> Self {
        let r = out.write_str(kind);
        Record { out, r }
    }

    fn key(&mut self, key: &str) -> bool {
        if self.r.is_ok() {
            self.r = write!(self.out, " {key}=");
        }
        self.r.is_ok()
    }

    fn num(mut self, key: &str, v: u64) -> Self {
        if self.key(key) {
            self.r = write!(self.out, "{v}");
        }
        self
    }

    fn flag(self, key: &str, v: bool) -> Self {
        self.num(key, u64::from(v))
    }

    /// A value that is usually a bare word; quoted if it is not one.
    fn word(mut self, key: &str, v: &str) -> Self {
        if self.key(key) {
            self.r = if is_bare(v) {
                self.out.write_str(v)
            } else {
                write_quoted(self.out, v.bytes())
            };
        }
        self
    }

    /// Free text: always quoted.
    fn text(mut self, key: &str, v: &str) -> Self {
        if self.key(key) {
            self.r = write_quoted(self.out, v.bytes());
        }
        self
    }

    fn display(mut self, key: &str, v: &dyn Display) -> Self {
        if self.key(key) {
            self.r = write_display_quoted(self.out, v);
        }
        self
    }

    fn bytes(mut self, key: &str, v: impl Iterator<Item = u8>) -> Self {
        if self.key(key) {
            self.r = write_quoted(self.out, v);
        }
        self
    }

    fn state(self, s: VmState) -> Self {
        let rec = self.word("state", s.name());
        match s {
            VmState::Stopped(reason) => rec.word("reason", reason.name()),
            _ => rec,
        }
    }

    fn counters<K: CounterKey, const N: usize>(mut self, group: &str, c: &Counts<K, N>) -> Self {
        for (k, v) in c.nonzero() {
            if self.r.is_ok() {
                self.r = write!(self.out, " {group}.{}={v}", k.name());
            }
        }
        self
    }

    /// Ends the line without a newline (for `Display`).
    fn finish(self) -> fmt::Result {
        self.r
    }

    fn end(self) -> fmt::Result {
        self.r?;
        self.out.write_char('\n')
    }
}

fn is_bare(v: &str) -> bool {
    !v.is_empty()
        && v.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b',' | b':' | b'/' | b'+')
        })
}

fn escape_byte(out: &mut dyn Write, b: u8) -> fmt::Result {
    match b {
        b'\\' => out.write_str("\\\\"),
        b'"' => out.write_str("\\\""),
        0x20..=0x7e => out.write_char(char::from(b)),
        _ => write!(out, "\\x{b:02x}"),
    }
}

fn write_quoted(out: &mut dyn Write, bytes: impl Iterator<Item = u8>) -> fmt::Result {
    out.write_char('"')?;
    for b in bytes {
        escape_byte(out, b)?;
    }
    out.write_char('"')
}

fn write_display_quoted(out: &mut dyn Write, v: &dyn Display) -> fmt::Result {
    out.write_char('"')?;
    write!(Escaper(&mut *out), "{v}")?;
    out.write_char('"')
}

/// Escapes everything written through it as the inside of a quoted value.
struct Escaper<'a>(&'a mut dyn Write);

impl Write for Escaper<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            escape_byte(self.0, b)?;
        }
        Ok(())
    }
}

fn host_record(out: &mut dyn Write, h: &HostStats) -> fmt::Result {
    Record::new(out, "host")
        .num("timebase", h.timebase_hz)
        .num("uptime_ticks", h.uptime_ticks)
        .num("memory", h.memory_bytes)
        .num("free", h.free_bytes)
        .num("harts", h.harts.into())
        .end()
}

fn vm_record(out: &mut dyn Write, s: &VmSummary<'_>) -> fmt::Result {
    let mut rec = Record::new(out, "vm")
        .num("index", s.index.into())
        .word("name", s.name)
        .state(s.state)
        .num("vcpus", s.vcpus.into())
        .num("memory", s.memory_bytes)
        .num("resident", s.resident_bytes)
        .num("weight", s.weight.into());
    if let Some(vmid) = s.vmid {
        rec = rec.num("vmid", vmid.into());
    }
    if !s.harts.is_empty() {
        let mut buf = HartsBuf::default();
        let _ = write!(buf, "{}", s.harts);
        rec = rec.word("harts", buf.as_str());
    }
    rec.flag("focus", s.console_focus).end()
}

fn vcpu_record(out: &mut dyn Write, vm: &str, v: &VcpuStats) -> fmt::Result {
    let mut rec = Record::new(out, "vcpu")
        .word("vm", vm)
        .num("vcpu", v.vcpu.into())
        .word("state", v.state.name());
    if let Some(h) = v.hart {
        rec = rec.num("hart", h.into());
    }
    rec.flag("pinned", v.pinned)
        .num("run_ticks", v.run_ticks)
        .num("migrations", v.migrations)
        .num("exceptions", v.exceptions_injected)
        .counters("exit", &v.exits)
        .counters("sbi", &v.sbi)
        .counters("irq", &v.irqs)
        .end()
}

fn hart_record(out: &mut dyn Write, h: &HartStats) -> fmt::Result {
    Record::new(out, "hart")
        .num("hart", h.hart.into())
        .num("hartid", h.hartid)
        .num("vcpus", h.vcpus.into())
        .num("run_ticks", h.run_ticks)
        .num("idle_ticks", h.idle_ticks)
        .end()
}

fn line_records(out: &mut dyn Write, view: RingView<'_>) -> fmt::Result {
    for line in view.lines() {
        Record::new(out, "line").bytes("text", line.bytes()).end()?;
    }
    Ok(())
}

/// `vm` and `vcpu` records of one VM (the VM's name as the hypervisor spells it).
fn vm_and_vcpus<M: Management + ?Sized>(
    m: &M,
    name: &str,
    out: &mut dyn Write,
) -> Result<fmt::Result, MgmtError> {
    let mut r = Ok(());
    m.vm(name, &mut |s| r = vm_record(out, s))?;
    if r.is_err() {
        return Ok(r);
    }
    m.for_each_vcpu(name, &mut |v| {
        if r.is_ok() {
            r = vcpu_record(out, name, v);
        }
    })?;
    Ok(r)
}

/// Room for a [`crate::HartSet`] written out ("0,1,...,63" is 190 bytes).
struct HartsBuf {
    buf: [u8; 192],
    len: usize,
}

impl Default for HartsBuf {
    fn default() -> Self {
        HartsBuf {
            buf: [0; 192],
            len: 0,
        }
    }
}

impl HartsBuf {
    fn as_str(&self) -> &str {
        core::str::from_utf8(self.buf.get(..self.len).unwrap_or(&[])).unwrap_or("")
    }
}

impl Write for HartsBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len.checked_add(s.len()).ok_or(fmt::Error)?;
        let dst = self.buf.get_mut(self.len..end).ok_or(fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}
