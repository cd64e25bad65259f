//! Ferrovisor's management command layer, independent of how commands arrive:
//! typed on the hypervisor console, or sent by the host tool over the control
//! channel (`fv-ctrl` frames; see the hypervisor's `ctrl` module).
//!
//! * [`parse`] turns a line into a typed [`Command`] (or a [`ParseError`] that
//!   says what is wrong); `Command`'s `Display` gives the canonical text back.
//! * The hypervisor implements [`Management`]: VM records ([`VmSummary`]),
//!   per-vCPU and per-hart statistics ([`VcpuStats`], [`HartStats`]), log rings,
//!   and the lifecycle operations, refusing with a [`MgmtError`]. [`Action`]
//!   holds the rule of which operation is allowed in which [`VmState`].
//! * [`execute`] runs a command and writes the reply for people (tables);
//!   [`execute_machine`] writes the same reply in the line protocol described
//!   in [`machine`], for programs.
//! * [`Ring`] keeps console history and the hypervisor log in fixed memory.
//! * [`console_out`] decides what guest console output reaches the terminal:
//!   sanitising, per-VM bounded queues, a fair non-blocking transmitter.
//! * [`ConsoleInput`] decodes Ctrl-A escapes on the console into [`Input`]
//!   events; [`LineEditor`] edits the shell's command line.
//! * Counters: [`ExitCounts`], [`SbiCounts`], [`IrqCounts`] (plain, for a vCPU's
//!   owner) and their `Atomic*` forms (bumped from any hart).
//!
//! # Wiring it into the hypervisor
//!
//! ```text
//! console byte ──► ConsoleInput::feed ──► Input::Guest(b)      → focused VM's UART input queue
//!                                    ├─► Input::Shell(b)      → LineEditor::feed
//!                                    │       Edit::Echo/Erase → echo on the console
//!                                    │       Edit::Line(l)    → execute_line(l, &mut hv, &mut console); prompt
//!                                    ├─► EnterShell/LeaveShell → banner + prompt / nothing
//!                                    ├─► SwitchVm(sel)        → move the focus (as Ctrl-A n does today)
//!                                    └─► Help / UnknownEscape → print ESCAPE_HELP
//! guest UART output ─► Ring::push (per VM) and the console, as today
//! log! lines        ─► Ring::push (hypervisor log) and the console
//! ```
//!
//! Lock order: push to a ring and release its lock before taking the console
//! lock (or the other way round, but always the same way): `log` and `vm log`
//! write to the reply's output while the ring is lent to them.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod command;
pub mod console_out;
pub mod counters;
pub mod editor;
mod exec;
pub mod input;
pub mod machine;
mod management;
pub mod model;
pub mod ring;
mod text;

pub use command::{
    parse, parse_bytes, Command, ParseError, VmName, DEFAULT_LOG_LINES, MAX_LINE_LEN, MAX_NAME_LEN,
    USAGE,
};
pub use counters::{
    AtomicCounts, AtomicExitCounts, AtomicIrqCounts, AtomicSbiCounts, CounterKey, Counts,
    ExitCounts, ExitReason, IrqCounts, IrqKind, SbiCounts, SbiExtension,
};
pub use editor::{Edit, LineEditor};
pub use exec::{execute, execute_line};
pub use input::{ConsoleInput, Input, VmSelect, ESCAPE_BYTE, ESCAPE_HELP};
pub use machine::{execute_line_machine, execute_machine, PROTOCOL_VERSION};
pub use management::Management;
pub use model::{
    Action, HartSet, HartStats, HostStats, MgmtError, Resource, StopReason, VcpuState, VcpuStats,
    VmState, VmSummary,
};
pub use ring::{Lines, Ring, RingError, RingView};
