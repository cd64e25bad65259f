//! The control channel (issue 11): a virtio-console of the machine that the
//! host tool's `ferrovisor run` holds the other end of (QEMU backs it with a
//! unix socket), separate from the guests' consoles on the UART.
//!
//! [`crate::hostdev::probe`] finds the device by its type (console) among the
//! machine's virtio-mmio devices and hands it to [`install`]; it is driven with
//! `virtio-drivers`' `VirtIOConsole`. The boot hart calls [`poll`] with the
//! console poll (at most every 1 ms, at least every 20 ms while idle): it
//! reads at most [`RX_PER_POLL`] bytes, decodes them with `fv_ctrl`'s decoder
//! (any byte sequence is safe: bad frames are skipped and counted), runs each
//! request through `fv_mgmt` (the same commands as the management shell; the
//! reply in the machine line protocol or the human form), and sends, in one
//! transmit, the replies, a `state` event for every VM whose state changed
//! since the last poll, and queued console output of the VMs (at most
//! [`TX_PER_POLL`] bytes per poll). Nothing here waits for the host: input is
//! taken only when it is there, and QEMU completes a virtconsole's transmit
//! within the notify itself (it writes to its socket without blocking and
//! drops what does not fit, or everything while no one is connected), so the
//! driver's wait for the used buffer ends at once.
//!
//! The device is QEMU's, i.e. trusted as the machine is: the driver crate
//! asserts that a completed receive is not empty (QEMU never completes one
//! empty), the one way a misbehaving device could stop the hypervisor here.
//!
//! Console output reaches the channel through [`console_output`] (called for
//! every VM console byte that reaches its history): a 64 KiB queue, bytes
//! beyond it dropped and reported as a `dropped` event.

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;
use core::sync::atomic::{AtomicBool, Ordering};

use fv_ctrl::{Decoder, Kind};
use fv_mgmt::VmState;
use spin::Mutex;
use virtio_drivers::device::console::VirtIOConsole;

use crate::hostdev::{HostHal, HostTransport};
use crate::log;
use crate::sched::vms;

/// The driven control device.
pub type CtrlDriver = VirtIOConsole<HostHal, HostTransport>;

/// Bytes read from the channel per poll.
pub const RX_PER_POLL: usize = 2048;
/// Bytes of replies, events and console output sent per poll (a reply is
/// always sent whole).
pub const TX_PER_POLL: usize = 16 * 1024;
/// Console output waiting for the channel.
const CONSOLE_QUEUE: usize = 64 * 1024;
/// Biggest frame the hypervisor accepts.
const IN_FRAME: usize = fv_ctrl::HV_MAX_PAYLOAD + fv_ctrl::OVERHEAD;

struct Ctrl {
    dev: CtrlDriver,
    decoder: Box<Decoder<IN_FRAME>>,
    /// The state last reported for each VM.
    states: Vec<Option<VmState>>,
    /// Dropped console bytes already reported.
    dropped_reported: u64,
    /// A device error was logged (log it once).
    failed: bool,
}

static CTRL: Mutex<Option<Ctrl>> = Mutex::new(None);
/// The channel exists: console output is queued for it.
static UP: AtomicBool = AtomicBool::new(false);

struct ConsoleQueue {
    /// Records: VM index (u16 LE), length (u16 LE), bytes.
    bytes: VecDeque<u8>,
    dropped: u64,
}

static CONSOLE_Q: Mutex<ConsoleQueue> = Mutex::new(ConsoleQueue {
    bytes: VecDeque::new(),
    dropped: 0,
});

/// Takes the control device (the first console device of the machine);
/// `false` if there already is one.
pub fn install(dev: CtrlDriver) -> bool {
    let mut c = CTRL.lock();
    if c.is_some() {
        return false;
    }
    let mut q = CONSOLE_Q.lock();
    if q.bytes.try_reserve_exact(CONSOLE_QUEUE).is_err() {
        return false;
    }
    drop(q);
    *c = Some(Ctrl {
        dev,
        decoder: Box::new(Decoder::new()),
        states: Vec::new(),
        dropped_reported: 0,
        failed: false,
    });
    UP.store(true, Ordering::Release);
    true
}

/// Queues console output of VM `vm` for the channel (any hart; the bytes are
/// dropped and counted when the queue is full). No allocation: the queue's
/// memory is reserved by [`install`].
pub fn console_output(vm: usize, bytes: &[u8]) {
    if !UP.load(Ordering::Acquire) || bytes.is_empty() {
        return;
    }
    let mut q = CONSOLE_Q.lock();
    for chunk in bytes.chunks(4096) {
        let room = CONSOLE_QUEUE.saturating_sub(q.bytes.len());
        if chunk.len() + 4 > room {
            q.dropped = q.dropped.saturating_add(chunk.len() as u64);
            continue;
        }
        q.bytes.extend((vm as u16).to_le_bytes());
        q.bytes.extend((chunk.len() as u16).to_le_bytes());
        q.bytes.extend(chunk.iter().copied());
    }
}

/// One round of the channel (boot hart; see the module documentation).
pub fn poll() {
    if !UP.load(Ordering::Acquire) {
        return;
    }
    let Some(mut guard) = CTRL.try_lock() else {
        return;
    };
    let Some(c) = guard.as_mut() else { return };
    let mut out: Vec<u8> = Vec::new();

    // Requests.
    let mut rx = [0u8; RX_PER_POLL];
    let mut n = 0;
    while n < RX_PER_POLL {
        match c.dev.recv(true) {
            Ok(Some(b)) => {
                rx[n] = b;
                n += 1;
            }
            Ok(None) => break,
            Err(e) => {
                if !c.failed {
                    c.failed = true;
                    log!("control channel: receive failed: {}", e);
                }
                break;
            }
        }
    }
    if n > 0 {
        let mut requests: Vec<(u8, Kind, u32, Vec<u8>)> = Vec::new();
        c.decoder.push(&rx[..n], &mut |f| {
            requests.push((f.version, f.kind, f.id, f.payload.to_vec()))
        });
        for (version, kind, id, payload) in requests {
            let mut reply = String::new();
            handle(version, kind, &payload, &mut reply);
            send_reply(id, reply.as_bytes(), &mut out);
        }
    }

    // State changes.
    let all = vms();
    c.states.resize(all.len(), None);
    for (vm, seen) in all.iter().zip(c.states.iter_mut()) {
        let now = crate::mgmt::vm_state(vm);
        if *seen != Some(now) {
            *seen = Some(now);
            let mut ev = String::new();
            let _ = write!(ev, "state vm={} state={}", vm.name, now.name());
            if let VmState::Stopped(r) = now {
                let _ = write!(ev, " reason={}", r.name());
            }
            let _ = fv_ctrl::encode(Kind::Event, 0, ev.as_bytes(), &mut out);
        }
    }

    // Console output.
    let dropped = {
        let mut q = CONSOLE_Q.lock();
        while out.len() < TX_PER_POLL && q.bytes.len() >= 4 {
            let h: [u8; 4] = [q.bytes[0], q.bytes[1], q.bytes[2], q.bytes[3]];
            let vm = usize::from(u16::from_le_bytes([h[0], h[1]]));
            let len = usize::from(u16::from_le_bytes([h[2], h[3]]));
            q.bytes.drain(..4);
            let len = len.min(q.bytes.len());
            let data: Vec<u8> = q.bytes.drain(..len).collect();
            if let Some(v) = all.get(vm) {
                let _ = fv_ctrl::encode_console(Kind::Console, 0, &v.name, &data, &mut out);
            }
        }
        q.dropped
    };
    if dropped > c.dropped_reported {
        c.dropped_reported = dropped;
        let ev = alloc::format!("dropped bytes={dropped}");
        let _ = fv_ctrl::encode(Kind::Event, 0, ev.as_bytes(), &mut out);
    }

    if !out.is_empty() {
        if let Err(e) = c.dev.send_bytes(&out) {
            if !c.failed {
                c.failed = true;
                log!("control channel: send failed: {}", e);
            }
        }
    }
}

/// Runs one request and writes its reply (always one).
fn handle(version: u8, kind: Kind, payload: &[u8], reply: &mut String) {
    if version != fv_ctrl::VERSION {
        let _ = writeln!(
            reply,
            "error code=version supported={} msg=\"frame version {} is not supported\"",
            fv_ctrl::VERSION,
            version
        );
        return;
    }
    match kind {
        Kind::Request => crate::mgmt::execute_machine_line(payload, reply),
        Kind::RequestHuman => crate::mgmt::execute_human_line(payload, reply),
        Kind::Input => match fv_ctrl::split_console(payload) {
            Some((name, data)) => match vms().iter().position(|v| v.name == name) {
                Some(i) => {
                    for &b in data {
                        crate::sched::queue_input(i, b);
                    }
                    let _ = writeln!(reply, "ok");
                }
                None => {
                    let _ = writeln!(
                        reply,
                        "error code=unknown-vm vm={name} msg=\"no VM named '{name}'\""
                    );
                }
            },
            None => {
                let _ = writeln!(
                    reply,
                    "error code=malformed msg=\"console input needs a VM name\""
                );
            }
        },
        other => {
            let _ = writeln!(
                reply,
                "error code=unsupported-kind kind={} msg=\"the hypervisor does not take frames of kind {}\"",
                other.to_byte(),
                other.to_byte()
            );
        }
    }
}

/// Appends `reply` as frames of at most `HV_MAX_PAYLOAD` bytes: `ReplyPart`s,
/// then one `Reply`.
fn send_reply(id: u32, reply: &[u8], out: &mut Vec<u8>) {
    let mut chunks = reply.chunks(fv_ctrl::HV_MAX_PAYLOAD).peekable();
    if chunks.peek().is_none() {
        let _ = fv_ctrl::encode(Kind::Reply, id, &[], out);
        return;
    }
    while let Some(chunk) = chunks.next() {
        let kind = if chunks.peek().is_some() {
            Kind::ReplyPart
        } else {
            Kind::Reply
        };
        let _ = fv_ctrl::encode(kind, id, chunk, out);
    }
}
