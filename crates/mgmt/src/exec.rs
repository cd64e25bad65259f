//! Running a command against a [`Management`] and writing the human-readable
//! reply.

use crate::command::{parse_bytes, Command, ParseError, VmName, DEFAULT_LOG_LINES, USAGE};
use crate::counters::{CounterKey, Counts, ExitCounts, IrqCounts, SbiCounts};
use crate::input::ESCAPE_HELP;
use crate::management::Management;
use crate::model::{Action, HartStats, MgmtError, VcpuStats, VmState, VmSummary};
use crate::ring::RingView;
use crate::text::{write_sanitized, Align, NameBuf, Opt, Percent, Size, Table, Ticks};
use core::fmt::{self, Display, Write};

/// Runs `cmd` and writes the reply for people: tables for queries, one line
/// for actions, `error: ...` lines for refusals. Returns only the writer's
/// errors; refusals are part of the reply.
pub fn execute<M, W>(cmd: &Command<'_>, m: &mut M, out: &mut W) -> fmt::Result
where
    M: Management + ?Sized,
    W: Write,
{
    let out: &mut dyn Write = out;
    if let Some((action, name)) = cmd.action() {
        return match act(m, action, name.as_str()) {
            Ok(()) => writeln!(out, "{}", Done { action, name }),
            Err(e) => writeln!(out, "error: {}", Failure::of(cmd, e)),
        };
    }
    let r = match *cmd {
        Command::VmList => return vm_list(&*m, out),
        Command::VmInfo { name } => vm_info(&*m, name.as_str(), out),
        Command::VmLog { name, lines } => {
            let n = lines.unwrap_or(DEFAULT_LOG_LINES);
            let mut r = Ok(());
            let q = m.with_console_history(name.as_str(), &mut |v| {
                r = write_lines(out, v.last_lines(n), &NoOutput(name));
            });
            q.map(|()| r)
        }
        Command::Stats { name: Some(name) } => {
            let hz = m.host().timebase_hz;
            vm_stats(&*m, name.as_str(), hz, out)
        }
        Command::Stats { name: None } => return all_stats(&*m, out),
        Command::Log { lines } => {
            let n = lines.unwrap_or(DEFAULT_LOG_LINES);
            let mut r = Ok(());
            m.with_hypervisor_log(&mut |v| {
                r = write_lines(out, v.last_lines(n), &"(the log is empty)");
            });
            return r;
        }
        Command::Console { name } => m
            .focus_console(name.as_str())
            .map(|()| writeln!(out, "console input goes to VM '{name}'")),
        Command::Help => return help(out),
        // Lifecycle commands were handled above.
        _ => Ok(Ok(())),
    };
    match r {
        Ok(written) => written,
        Err(e) => writeln!(out, "error: {}", Failure::of(cmd, e)),
    }
}

/// Parses and runs one line. A blank line writes nothing; a line that does not
/// parse writes `error: <why>`.
pub fn execute_line<M, W>(line: &[u8], m: &mut M, out: &mut W) -> fmt::Result
where
    M: Management + ?Sized,
    W: Write,
{
    match parse_bytes(line) {
        Ok(cmd) => execute(&cmd, m, out),
        Err(ParseError::Empty) => Ok(()),
        Err(e) => writeln!(out, "error: {e}"),
    }
}

pub(crate) fn act<M: Management + ?Sized>(
    m: &mut M,
    action: Action,
    name: &str,
) -> Result<(), MgmtError> {
    match action {
        Action::Start => m.start(name),
        Action::Pause => m.pause(name),
        Action::Resume => m.resume(name),
        Action::Stop => m.stop(name),
        Action::Reboot => m.reboot(name),
        Action::Destroy => m.destroy(name),
    }
}

/// What a successful action reports.
struct Done<'a> {
    action: Action,
    name: VmName<'a>,
}

impl Display for Done<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.name;
        match self.action {
            Action::Start => write!(f, "VM '{n}' started"),
            Action::Pause => write!(f, "VM '{n}' paused"),
            Action::Resume => write!(f, "VM '{n}' resumed"),
            Action::Stop => write!(f, "VM '{n}' stopped"),
            Action::Reboot => write!(f, "VM '{n}' is rebooting"),
            Action::Destroy => write!(f, "VM '{n}' destroyed; its memory is free"),
        }
    }
}

/// Why a command about a VM was refused, in words (without `error: `).
pub(crate) struct Failure<'a> {
    cmd: &'a Command<'a>,
    /// The VM refused (the one the command names, or for `stats` the one at hand).
    name: &'a str,
    error: MgmtError,
}

impl<'a> Failure<'a> {
    pub(crate) fn new(cmd: &'a Command<'a>, name: &'a str, error: MgmtError) -> Self {
        Failure { cmd, name, error }
    }

    /// For a command that names its VM.
    fn of(cmd: &'a Command<'a>, error: MgmtError) -> Self {
        Failure::new(cmd, cmd.vm().map_or("", |n| n.as_str()), error)
    }
}

impl Display for Failure<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.name;
        let action = self.cmd.action().map(|(a, _)| a);
        if self.error == MgmtError::UnknownVm {
            return write!(f, "no VM named '{name}' (see 'vm list')");
        }
        match (action, *self.cmd) {
            (Some(a), _) => write!(f, "cannot {} VM '{name}': ", a.verb())?,
            (None, Command::VmInfo { .. }) => write!(f, "cannot show VM '{name}': ")?,
            (None, Command::VmLog { .. }) => {
                write!(f, "cannot show the console output of VM '{name}': ")?
            }
            (None, Command::Stats { .. }) => write!(f, "cannot show statistics of VM '{name}': ")?,
            (None, Command::Console { .. }) => {
                write!(f, "cannot switch console input to VM '{name}': ")?
            }
            (None, _) => f.write_str("cannot do that: ")?,
        }
        match self.error {
            MgmtError::WrongState { current } => {
                write!(f, "it is {current}")?;
                match action {
                    Some(a) => write!(f, " (it must be {})", a.needs()),
                    None => Ok(()),
                }
            }
            MgmtError::NoResources(r) => f.write_str(r.describe()),
            MgmtError::NoConsole => f.write_str("it has no console"),
            MgmtError::Unsupported => f.write_str("not supported by this hypervisor"),
            MgmtError::Failed => f.write_str("it failed (see 'log')"),
            MgmtError::UnknownVm => Ok(()),
        }
    }
}

struct NoOutput<'a>(VmName<'a>);

impl Display for NoOutput<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "(no console output from VM '{}' yet)", self.0)
    }
}

fn write_lines(out: &mut dyn Write, view: RingView<'_>, empty: &dyn Display) -> fmt::Result {
    if view.is_empty() {
        return writeln!(out, "{empty}");
    }
    for line in view.lines() {
        write_sanitized(out, line.bytes())?;
        out.write_char('\n')?;
    }
    Ok(())
}

fn vm_list<M: Management + ?Sized>(m: &M, out: &mut dyn Write) -> fmt::Result {
    use Align::{Left as L, Right as R};
    let head: [&dyn Display; 8] = [
        &"",
        &"#",
        &"NAME",
        &"STATE",
        &"VCPUS",
        &"MEMORY",
        &"RESIDENT",
        &"HARTS",
    ];
    let mut t = Table::new([L, R, L, L, R, R, R, L], [0, 1, 2, 2, 2, 2, 2, 2]);
    t.measure(head);
    let mut n = 0usize;
    let mut focus = false;
    m.for_each_vm(&mut |s| {
        n += 1;
        focus |= s.console_focus;
        let mark = if s.console_focus { "*" } else { " " };
        t.measure([
            &mark,
            &s.index,
            &s.name,
            &s.state,
            &s.vcpus,
            &Size(s.memory_bytes),
            &Size(s.resident_bytes),
            &s.harts,
        ]);
    });
    if n == 0 {
        return writeln!(out, "no VMs");
    }
    t.row(out, head)?;
    let mut r = Ok(());
    m.for_each_vm(&mut |s| {
        let mark = if s.console_focus { "*" } else { " " };
        if r.is_ok() {
            r = t.row(
                out,
                [
                    &mark,
                    &s.index,
                    &s.name,
                    &s.state,
                    &s.vcpus,
                    &Size(s.memory_bytes),
                    &Size(s.resident_bytes),
                    &s.harts,
                ],
            );
        }
    });
    r?;
    if focus {
        writeln!(out, "* console input goes to this VM")?;
    }
    Ok(())
}

/// A query's outcome: the VM's refusal, or the writer's result.
type Query = Result<fmt::Result, MgmtError>;

fn vm_info<M: Management + ?Sized>(m: &M, name: &str, out: &mut dyn Write) -> Query {
    let hz = m.host().timebase_hz;
    let mut r = Ok(());
    m.vm(name, &mut |s| r = write_summary(out, s))?;
    if r.is_err() {
        return Ok(r);
    }
    use Align::{Left as L, Right as R};
    let head: [&dyn Display; 5] = [&"VCPU", &"STATE", &"HART", &"PINNED", &"RUN-TIME"];
    let mut t = Table::new([R, L, R, L, R], [0, 2, 2, 2, 2]);
    t.measure(head);
    let mut n = 0usize;
    let row = |v: &VcpuStats, f: &mut dyn FnMut([&dyn Display; 5])| {
        let pinned = if v.pinned { "yes" } else { "no" };
        f([
            &v.vcpu,
            &v.state,
            &Opt(v.hart),
            &pinned,
            &Ticks {
                ticks: v.run_ticks,
                hz,
            },
        ]);
    };
    m.for_each_vcpu(name, &mut |v| {
        n += 1;
        row(v, &mut |c| t.measure(c));
    })?;
    if n == 0 {
        return Ok(Ok(()));
    }
    if let Err(e) = t.row(out, head) {
        return Ok(Err(e));
    }
    m.for_each_vcpu(name, &mut |v| {
        row(v, &mut |c| {
            if r.is_ok() {
                r = t.row(out, c);
            }
        });
    })?;
    Ok(r)
}

fn write_summary(out: &mut dyn Write, s: &VmSummary<'_>) -> fmt::Result {
    writeln!(out, "name:     {}", s.name)?;
    writeln!(out, "index:    {}", s.index)?;
    writeln!(out, "state:    {}", s.state)?;
    writeln!(out, "vcpus:    {}", s.vcpus)?;
    writeln!(
        out,
        "memory:   {} ({} resident)",
        Size(s.memory_bytes),
        Size(s.resident_bytes)
    )?;
    writeln!(out, "vmid:     {}", Opt(s.vmid))?;
    writeln!(out, "weight:   {}", s.weight)?;
    writeln!(out, "harts:    {}", s.harts)?;
    let focus = if s.console_focus {
        "has the input"
    } else {
        "-"
    };
    writeln!(out, "console:  {focus}")
}

/// Per-VM totals over its vCPUs.
#[derive(Default)]
struct Totals {
    run_ticks: u64,
    migrations: u64,
    exceptions: u64,
    exits: ExitCounts,
    sbi: SbiCounts,
    irqs: IrqCounts,
    vcpus: usize,
}

fn vm_stats<M: Management + ?Sized>(m: &M, name: &str, hz: u64, out: &mut dyn Write) -> Query {
    let mut state = VmState::Defined;
    let mut shown = NameBuf::new();
    m.vm(name, &mut |s| {
        state = s.state;
        shown.set(s.name);
    })?;
    if let Err(e) = writeln!(out, "VM '{}': {state}", shown.as_str()) {
        return Ok(Err(e));
    }
    if !state.holds_resources() {
        return Ok(Ok(()));
    }
    use Align::{Left as L, Right as R};
    let head: [&dyn Display; 9] = [
        &"VCPU",
        &"HART",
        &"STATE",
        &"RUN-TIME",
        &"MIGRATIONS",
        &"EXITS",
        &"SBI",
        &"IRQS",
        &"EXCEPTIONS",
    ];
    let mut t = Table::new([R, R, L, R, R, R, R, R, R], [2, 2, 2, 2, 2, 2, 2, 2, 2]);
    t.measure(head);
    let mut tot = Totals::default();
    let row = |v: &VcpuStats, f: &mut dyn FnMut([&dyn Display; 9])| {
        f([
            &v.vcpu,
            &Opt(v.hart),
            &v.state,
            &Ticks {
                ticks: v.run_ticks,
                hz,
            },
            &v.migrations,
            &v.exits.total(),
            &v.sbi.total(),
            &v.irqs.total(),
            &v.exceptions_injected,
        ]);
    };
    m.for_each_vcpu(name, &mut |v| {
        tot.vcpus += 1;
        tot.run_ticks = tot.run_ticks.saturating_add(v.run_ticks);
        tot.migrations = tot.migrations.saturating_add(v.migrations);
        tot.exceptions = tot.exceptions.saturating_add(v.exceptions_injected);
        tot.exits.merge(&v.exits);
        tot.sbi.merge(&v.sbi);
        tot.irqs.merge(&v.irqs);
        row(v, &mut |c| t.measure(c));
    })?;
    let total_ticks = Ticks {
        ticks: tot.run_ticks,
        hz,
    };
    let (te, ts, ti) = (tot.exits.total(), tot.sbi.total(), tot.irqs.total());
    let all: [&dyn Display; 9] = [
        &"all",
        &"",
        &"",
        &total_ticks,
        &tot.migrations,
        &te,
        &ts,
        &ti,
        &tot.exceptions,
    ];
    t.measure(all);
    let mut r = t.row(out, head);
    m.for_each_vcpu(name, &mut |v| {
        row(v, &mut |c| {
            if r.is_ok() {
                r = t.row(out, c);
            }
        });
    })?;
    if r.is_ok() {
        r = t.row(out, all);
    }
    let per_vcpu = tot.vcpus > 1;
    if r.is_ok() {
        r = section(m, name, out, per_vcpu, "exits by reason", &tot.exits, |v| {
            &v.exits
        })?;
    }
    if r.is_ok() {
        r = section(
            m,
            name,
            out,
            per_vcpu,
            "sbi calls by extension",
            &tot.sbi,
            |v| &v.sbi,
        )?;
    }
    if r.is_ok() {
        r = section(
            m,
            name,
            out,
            per_vcpu,
            "interrupts injected",
            &tot.irqs,
            |v| &v.irqs,
        )?;
    }
    Ok(r)
}

/// One counter breakdown of a VM: its total, then (with `per_vcpu`) each
/// vCPU's counts that are not all zero.
fn section<M: Management + ?Sized, K: CounterKey, const N: usize>(
    m: &M,
    name: &str,
    out: &mut dyn Write,
    per_vcpu: bool,
    what: &str,
    total: &Counts<K, N>,
    pick: fn(&VcpuStats) -> &Counts<K, N>,
) -> Query {
    let mut r = breakdown(out, what, total);
    if r.is_ok() && per_vcpu && !total.is_zero() {
        m.for_each_vcpu(name, &mut |v| {
            if r.is_ok() {
                r = breakdown_vcpu(out, v.vcpu, pick(v));
            }
        })?;
    }
    Ok(r)
}

fn counts<K: CounterKey, const N: usize>(out: &mut dyn Write, c: &Counts<K, N>) -> fmt::Result {
    if c.is_zero() {
        return writeln!(out, " none");
    }
    for (k, v) in c.nonzero() {
        write!(out, " {}={v}", k.name())?;
    }
    writeln!(out)
}

fn breakdown<K: CounterKey, const N: usize>(
    out: &mut dyn Write,
    what: &str,
    c: &Counts<K, N>,
) -> fmt::Result {
    write!(out, "  {what}:")?;
    counts(out, c)
}

fn breakdown_vcpu<K: CounterKey, const N: usize>(
    out: &mut dyn Write,
    vcpu: u32,
    c: &Counts<K, N>,
) -> fmt::Result {
    if c.is_zero() {
        return Ok(());
    }
    write!(out, "    vcpu {vcpu}:")?;
    counts(out, c)
}

fn all_stats<M: Management + ?Sized>(m: &M, out: &mut dyn Write) -> fmt::Result {
    let host = m.host();
    let hz = host.timebase_hz;
    let mut count = 0usize;
    m.for_each_vm(&mut |_| count += 1);
    for i in 0..count {
        // Copy the name out so no callback is live while the VM is queried.
        let mut name = NameBuf::new();
        let mut k = 0usize;
        m.for_each_vm(&mut |s| {
            if k == i {
                name.set(s.name);
            }
            k += 1;
        });
        match vm_stats(m, name.as_str(), hz, out) {
            Ok(r) => r?,
            // Gone since it was counted.
            Err(MgmtError::UnknownVm) => continue,
            Err(e) => writeln!(
                out,
                "error: {}",
                Failure::new(&Command::Stats { name: None }, name.as_str(), e)
            )?,
        }
        writeln!(out)?;
    }
    if count == 0 {
        writeln!(out, "no VMs")?;
        writeln!(out)?;
    }
    use Align::Right as R;
    let head: [&dyn Display; 6] = [
        &"HART",
        &"HARTID",
        &"VCPUS",
        &"RUN-TIME",
        &"IDLE-TIME",
        &"IDLE",
    ];
    let mut t = Table::new([R; 6], [0, 2, 2, 2, 2, 2]);
    t.measure(head);
    let row = |h: &HartStats, f: &mut dyn FnMut([&dyn Display; 6])| {
        f([
            &h.hart,
            &h.hartid,
            &h.vcpus,
            &Ticks {
                ticks: h.run_ticks,
                hz,
            },
            &Ticks {
                ticks: h.idle_ticks,
                hz,
            },
            &Percent {
                part: h.idle_ticks,
                rest: h.run_ticks,
            },
        ]);
    };
    m.for_each_hart(&mut |h| row(h, &mut |c| t.measure(c)));
    let mut r = t.row(out, head);
    m.for_each_hart(&mut |h| {
        row(h, &mut |c| {
            if r.is_ok() {
                r = t.row(out, c);
            }
        });
    });
    r?;
    writeln!(
        out,
        "memory: {} total, {} free; uptime {}",
        Size(host.memory_bytes),
        Size(host.free_bytes),
        Ticks {
            ticks: host.uptime_ticks,
            hz
        }
    )
}

fn help(out: &mut dyn Write) -> fmt::Result {
    writeln!(out, "commands:")?;
    let w = USAGE.iter().map(|(u, _)| u.len()).max().unwrap_or(0);
    for (usage, about) in USAGE {
        writeln!(out, "  {usage:<w$}  {about}")?;
    }
    writeln!(out, "keys:")?;
    for line in ESCAPE_HELP.lines() {
        writeln!(out, "  {line}")?;
    }
    Ok(())
}
