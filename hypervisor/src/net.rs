//! Networking: the switches of the boot package, the VMs' virtio-net NICs as
//! their ports, and the machine's own virtio-net as a switch's uplink
//! (issue #9, point 4).
//!
//! # Frames and locks
//!
//! Each switch ([`NetSwitch`]) is a `fv_netswitch::Switch` (forwarding
//! decisions, MAC table, counters) under its own lock, plus one bounded
//! `FrameQueue` per port under a lock of its own, and for an uplink port the
//! host driver under a third. A frame a VM transmits is handled on the exit
//! path with that VM's lock held (`VmInner`, its NIC's `process`): the switch
//! decides, a copy goes into each destination port's queue, and the
//! destination is marked ([`crate::vm::Vm::net_pending`],
//! [`NetSwitch::uplink_pending`]). No VM lock is ever taken while a switch,
//! queue or uplink lock is held, and queue and switch locks are leaves. The
//! destination's own side takes the frames out of its queue under its own
//! lock: right away, if the sender can get that lock with `try_lock` (never
//! waiting, so two VMs sending to each other cannot deadlock), else from the
//! boot hart's 1 ms poll ([`service`]). The uplink is driven the same way.
//!
//! # Copies
//!
//! Nothing is zero-copy: a VM's frame is copied out of its memory into the
//! NIC's frame buffer, into each destination queue, and from there into the
//! receiving VM's buffers or the uplink's DMA buffer; frames from the uplink
//! are copied from its DMA buffer into the queues. Every copy is bounded by
//! `fv_netswitch::MAX_FRAME`, and no guest memory is ever handed to a device.

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use fv_netswitch::{FrameQueue, Mac, PortId, Switch};
use fv_virtio::net::NetBackend;
use spin::{Mutex, Once};

use crate::hostdev::{HostNet, HOST_NET_QUEUE};
use crate::log;
use crate::sched::vms;

/// Frames one port's queue holds before it drops.
pub const PORT_QUEUE_FRAMES: usize = 128;
/// Receive buffers kept with the uplink device.
const UPLINK_RX_BUFS: usize = 32;
/// Transmit buffers (frames in flight to the uplink device at once).
const UPLINK_TX_BUFS: usize = 32;
/// Size of an uplink buffer: a header and a whole frame fit.
const UPLINK_BUF: usize = 2048;
/// Frames moved per uplink direction per service call.
const UPLINK_BUDGET: usize = 64;

/// A MAC address as `52:54:00:12:34:56`.
pub struct MacFmt(pub Mac);

impl fmt::Display for MacFmt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// Who takes the frames out of a port's queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Owner {
    /// VM number (index into `sched::vms()`).
    Vm(usize),
    /// The switch's uplink.
    Uplink,
}

struct PortSlot {
    owner: Owner,
    queue: Mutex<FrameQueue>,
}

/// The uplink's driver and its buffers.
struct Uplink {
    dev: HostNet,
    /// Receive buffers the device holds, by token.
    rx: Vec<(u16, Box<[u8]>)>,
    /// Transmit buffers the device holds (token, buffer, length given).
    tx: VecDeque<(u16, Box<[u8]>, usize)>,
    /// Transmit buffers free for use.
    tx_free: Vec<Box<[u8]>>,
    /// The device did something it should not: left alone from then on.
    broken: bool,
}

/// One switch of the boot package.
pub struct NetSwitch {
    /// Its name (from the config).
    pub name: String,
    switch: Mutex<Switch>,
    ports: Vec<PortSlot>,
    uplink: Option<Mutex<Uplink>>,
    /// The uplink's port.
    uplink_port: Option<PortId>,
    /// The uplink port has frames waiting in its queue.
    pub uplink_pending: AtomicBool,
    /// Frames the uplink device received / transmitted.
    uplink_rx: AtomicU64,
    uplink_tx: AtomicU64,
}

static SWITCHES: Once<Vec<NetSwitch>> = Once::new();

/// Some frame was queued since the last [`deliver_if_sent`].
static SENT: AtomicBool = AtomicBool::new(false);

/// A sender could not take a receiver's lock: the boot hart's poll has
/// frames to deliver (it then polls every millisecond until it has).
static UNDELIVERED: AtomicBool = AtomicBool::new(false);

/// Host `time` when an uplink last moved a frame (0: never).
static UPLINK_ACTIVE_AT: AtomicU64 = AtomicU64::new(0);

/// How long after its last frame an uplink counts as busy: 100 ms.
fn busy_window() -> u64 {
    crate::sched::host().timebase / 10
}

/// Whether the idle boot hart should poll every millisecond instead of
/// every 20: an uplink moved frames in the last 100 ms (frames from the
/// machine's network are only seen by polling), or frames wait for a VM
/// whose lock a sender could not get.
pub fn poll_soon(now: u64) -> bool {
    let at = UPLINK_ACTIVE_AT.load(Ordering::Relaxed);
    (at != 0 && now.saturating_sub(at) < busy_window()) || UNDELIVERED.load(Ordering::Acquire)
}

fn switches() -> &'static [NetSwitch] {
    SWITCHES.get().map(|v| v.as_slice()).unwrap_or(&[])
}

/// One switch as the boot package describes it.
#[derive(Clone, Copy, Debug)]
pub struct SwitchPlan<'a> {
    /// Name.
    pub name: &'a str,
    /// The host virtio-net at this register base is its uplink.
    pub uplink: Option<u64>,
}

/// A VM NIC to attach: VM number, switch index, MAC. Returns its port.
pub struct NicPlan {
    /// The VM (index into the VM table).
    pub vm: usize,
    /// The switch (index into the package's switches).
    pub switch: u16,
    /// The NIC's MAC.
    pub mac: Mac,
}

/// The switch port a VM's NIC is connected to: its `fv_virtio::net` backend.
#[derive(Debug)]
pub struct SwitchPort {
    switch: u16,
    /// Set by [`init`] once the switches exist.
    port: Option<PortId>,
}

impl SwitchPort {
    /// A NIC on switch `switch`, not connected yet.
    pub fn new(switch: u16) -> Self {
        Self { switch, port: None }
    }

    /// Whether frames wait for this port.
    pub fn has_frames(&self) -> bool {
        self.port
            .and_then(|p| port_slot(self.switch, p))
            .is_some_and(|s| !s.queue.lock().is_empty())
    }

    /// Forgets the frames waiting (VM reset).
    pub fn clear(&self) {
        if let Some(s) = self.port.and_then(|p| port_slot(self.switch, p)) {
            s.queue.lock().clear();
        }
    }

    /// Connects it to `port` of its switch (once the switches exist).
    pub fn connect(&mut self, port: PortId) {
        self.port = Some(port);
    }
}

fn port_slot(switch: u16, port: PortId) -> Option<&'static PortSlot> {
    switches()
        .get(usize::from(switch))?
        .ports
        .get(usize::from(port.0))
}

impl NetBackend for SwitchPort {
    fn transmit(&mut self, frame: &[u8]) {
        if let Some(port) = self.port {
            send(self.switch, port, frame);
        }
    }

    fn receive(&mut self) -> Option<Vec<u8>> {
        port_slot(self.switch, self.port?)?.queue.lock().pop()
    }
}

/// A frame from `from` on switch `switch`: into every destination's queue,
/// destinations marked. Takes only leaf locks (switch, queues).
fn send(switch: u16, from: PortId, frame: &[u8]) {
    let Some(sw) = switches().get(usize::from(switch)) else {
        return;
    };
    let Ok(dests) = sw.switch.lock().forward(from, frame) else {
        return;
    };
    for p in dests.iter() {
        let Some(slot) = sw.ports.get(usize::from(p.0)) else {
            continue;
        };
        if !slot.queue.lock().push(frame) {
            continue;
        }
        sw.switch.lock().delivered(p, frame.len());
        SENT.store(true, Ordering::Release);
        match slot.owner {
            Owner::Vm(id) => {
                if let Some(vm) = vms().get(id) {
                    vm.net_pending.store(true, Ordering::Release);
                }
            }
            Owner::Uplink => sw.uplink_pending.store(true, Ordering::Release),
        }
    }
}

/// Builds the switches: each VM NIC of `nics` becomes a port (in order),
/// then each switch's uplink (taken out of the host devices). Returns each
/// NIC's port, in the order of `nics`. Call once, after the VMs exist.
pub fn init(plans: &[SwitchPlan<'_>], nics: &[NicPlan]) -> Vec<Option<PortId>> {
    let mut out = vec![None; nics.len()];
    let mut built = Vec::new();
    for (i, plan) in plans.iter().enumerate() {
        let mut switch = Switch::new();
        let mut ports = Vec::new();
        for (k, nic) in nics.iter().enumerate() {
            if usize::from(nic.switch) != i {
                continue;
            }
            match switch.add_vm_port(nic.mac) {
                Ok(p) => {
                    ports.push(PortSlot {
                        owner: Owner::Vm(nic.vm),
                        queue: Mutex::new(FrameQueue::new(PORT_QUEUE_FRAMES)),
                    });
                    if let Some(o) = out.get_mut(k) {
                        *o = Some(p);
                    }
                }
                Err(e) => log!(
                    "switch '{}': NIC {} not connected: {:?}",
                    plan.name,
                    MacFmt(nic.mac),
                    e
                ),
            }
        }
        let mut uplink = plan.uplink.and_then(|base| take_uplink(plan.name, base));
        let mut uplink_port = None;
        if uplink.is_some() {
            match switch.add_uplink() {
                Ok(p) => {
                    uplink_port = Some(p);
                    ports.push(PortSlot {
                        owner: Owner::Uplink,
                        queue: Mutex::new(FrameQueue::new(PORT_QUEUE_FRAMES)),
                    });
                }
                Err(e) => {
                    log!("switch '{}': uplink not connected: {:?}", plan.name, e);
                    // Kept (never dropped: its buffers stay with the device), unused.
                    core::mem::forget(uplink.take());
                }
            }
        }
        log!(
            "switch '{}': {} port(s){}",
            plan.name,
            ports.len(),
            match &uplink {
                Some(u) => alloc::format!(", uplink virtio-net at {:#x}", u.dev.base.raw()),
                None => String::new(),
            }
        );
        built.push(NetSwitch {
            name: String::from(plan.name),
            switch: Mutex::new(switch),
            ports,
            uplink: uplink.map(Mutex::new),
            uplink_port,
            uplink_pending: AtomicBool::new(false),
            uplink_rx: AtomicU64::new(0),
            uplink_tx: AtomicU64::new(0),
        });
    }
    SWITCHES.call_once(|| built);
    out
}

/// Takes the host virtio-net at `base` out of the host devices and gives it
/// its receive buffers.
fn take_uplink(switch: &str, base: u64) -> Option<Uplink> {
    let dev = {
        let mut hd = crate::hostdev::HOST_DEVICES.lock();
        let i = hd.net.iter().position(|n| n.base.raw() == base);
        i.map(|i| hd.net.remove(i))
    };
    let Some(dev) = dev else {
        log!(
            "switch '{}': no host virtio-net at {:#x}: no uplink",
            switch,
            base
        );
        return None;
    };
    let mut up = Uplink {
        dev,
        rx: Vec::new(),
        tx: VecDeque::new(),
        tx_free: (0..UPLINK_TX_BUFS.min(HOST_NET_QUEUE / 2))
            .map(|_| vec![0u8; UPLINK_BUF].into_boxed_slice())
            .collect(),
        broken: false,
    };
    for _ in 0..UPLINK_RX_BUFS.min(HOST_NET_QUEUE) {
        let mut buf = vec![0u8; UPLINK_BUF].into_boxed_slice();
        // SAFETY: `buf` is a heap buffer that stays in `up.rx` (its heap
        // memory never moves) and is not touched until the device returns
        // its token (`poll_receive`, then `receive_complete` with it).
        match unsafe { up.dev.driver.receive_begin(&mut buf) } {
            Ok(token) => up.rx.push((token, buf)),
            Err(e) => {
                log!("switch '{}': uplink receive buffer refused: {}", switch, e);
                break;
            }
        }
    }
    Some(up)
}

/// Moves frames between the uplink of switch `sw` and its queue: completed
/// transmissions recycled, queued frames sent, received frames switched.
/// Returns whether work is left.
fn service_uplink(sw: u16, up: &mut Uplink) -> bool {
    if up.broken {
        return false;
    }
    let Some(s) = switches().get(usize::from(sw)) else {
        return false;
    };
    let Some(port) = s.uplink_port else {
        return false;
    };
    // Transmissions the device finished.
    while let Some(token) = up.dev.driver.poll_transmit() {
        let Some(i) = up.tx.iter().position(|(t, _, _)| *t == token) else {
            return uplink_broken(s, up, "completed an unknown transmit token");
        };
        let Some((t, buf, len)) = up.tx.remove(i) else {
            break;
        };
        // SAFETY: the same buffer and length as given to `transmit_begin` for `t`.
        let done = unsafe {
            up.dev
                .driver
                .transmit_complete(t, buf.get(..len).unwrap_or(&[]))
        };
        up.tx_free.push(buf);
        if done.is_err() {
            return uplink_broken(s, up, "transmit completion failed");
        }
    }
    // Frames waiting for the uplink.
    s.uplink_pending.store(false, Ordering::Release);
    let mut more = false;
    for _ in 0..UPLINK_BUDGET {
        if up.tx_free.is_empty() || !up.dev.driver.can_send() {
            more = true;
            break;
        }
        let Some(frame) = s
            .ports
            .get(usize::from(port.0))
            .and_then(|p| p.queue.lock().pop())
        else {
            break;
        };
        let Some(mut buf) = up.tx_free.pop() else {
            break;
        };
        let Ok(hdr) = up.dev.driver.fill_buffer_header(&mut buf) else {
            up.tx_free.push(buf);
            break;
        };
        let len = hdr + frame.len();
        let Some(dst) = buf.get_mut(hdr..len) else {
            up.tx_free.push(buf);
            continue;
        };
        dst.copy_from_slice(&frame);
        // SAFETY: `buf` stays in `up.tx` (heap memory, never moved) and is not
        // touched until its token completes (`poll_transmit`).
        match unsafe { up.dev.driver.transmit_begin(buf.get(..len).unwrap_or(&[])) } {
            Ok(token) => {
                up.tx.push_back((token, buf, len));
                s.uplink_tx.fetch_add(1, Ordering::Relaxed);
                UPLINK_ACTIVE_AT.store(fv_arch_riscv64::csr::time(), Ordering::Relaxed);
            }
            Err(_) => {
                up.tx_free.push(buf);
                more = true;
                break;
            }
        }
    }
    if more {
        s.uplink_pending.store(true, Ordering::Release);
    }
    // Frames the uplink received.
    let mut budget = UPLINK_BUDGET;
    while let Some(token) = up.dev.driver.poll_receive() {
        if budget == 0 {
            more = true;
            break;
        }
        budget -= 1;
        let Some(i) = up.rx.iter().position(|(t, _)| *t == token) else {
            return uplink_broken(s, up, "completed an unknown receive token");
        };
        let (_, mut buf) = up.rx.swap_remove(i);
        // SAFETY: the same buffer as given to `receive_begin` for `token`.
        let got = unsafe { up.dev.driver.receive_complete(token, &mut buf) };
        if let Ok((hdr, len)) = got {
            if let Some(frame) = buf.get(hdr..hdr.saturating_add(len)) {
                s.uplink_rx.fetch_add(1, Ordering::Relaxed);
                UPLINK_ACTIVE_AT.store(fv_arch_riscv64::csr::time(), Ordering::Relaxed);
                send(sw, port, frame);
            }
        }
        // SAFETY: as in `take_uplink`: the buffer stays in `up.rx` untouched
        // until its token completes.
        match unsafe { up.dev.driver.receive_begin(&mut buf) } {
            Ok(t) => up.rx.push((t, buf)),
            Err(_) => return uplink_broken(s, up, "receive buffer refused"),
        }
    }
    more || s.uplink_pending.load(Ordering::Acquire)
}

fn uplink_broken(s: &NetSwitch, up: &mut Uplink, what: &str) -> bool {
    log!("switch '{}': uplink {}: abandoned", s.name, what);
    up.broken = true;
    false
}

/// Delivers what waits: each marked VM's NICs (with `lock`, or `try_lock`
/// when the caller holds some VM lock, `holding`), and each uplink. Never
/// waits for a lock while holding one of its own.
pub fn deliver(holding: Option<usize>) {
    for (i, sw) in switches().iter().enumerate() {
        let Some(up) = &sw.uplink else { continue };
        let guard = if holding.is_some() {
            up.try_lock()
        } else {
            Some(up.lock())
        };
        if let Some(mut u) = guard {
            service_uplink(i as u16, &mut u);
        }
    }
    for vm in vms() {
        if Some(vm.id) == holding || !vm.net_pending.load(Ordering::Acquire) || vm.is_stopped() {
            continue;
        }
        let inner = if holding.is_some() {
            vm.inner.try_lock()
        } else {
            Some(vm.inner.lock())
        };
        match inner {
            Some(mut inner) => crate::sched::device_side_effects_local(vm, &mut inner),
            None => {
                // Its own hart holds it: the boot hart's poll delivers.
                UNDELIVERED.store(true, Ordering::Release);
                crate::sched::kick(0);
            }
        }
    }
}

/// After a VM's device work (its lock held): delivers right away what it
/// sent, if the receivers' locks are free (else the poll does).
pub fn deliver_if_sent(holding: usize) {
    if SENT.swap(false, Ordering::AcqRel) {
        deliver(Some(holding));
    }
}

/// The boot hart's poll: uplinks (frames received from the machine's
/// network) and every VM with frames waiting.
pub fn service() {
    if switches().is_empty() {
        return;
    }
    UNDELIVERED.store(false, Ordering::Release);
    deliver(None);
}

/// Logs each switch's port counters (at power-off).
pub fn report() {
    for sw in switches() {
        let s = sw.switch.lock();
        for (i, p) in sw.ports.iter().enumerate() {
            let Some(st) = s.stats(PortId(i as u8)) else {
                continue;
            };
            let who = match p.owner {
                Owner::Vm(id) => vms()
                    .get(id)
                    .map_or(String::from("?"), |v| alloc::format!("VM '{}'", v.name)),
                Owner::Uplink => String::from("uplink"),
            };
            let q = p.queue.lock();
            log!(
                "switch '{}' port {} ({}): in {} frames {} bytes, out {} frames {} bytes, flooded {}; dropped: {} runt, {} oversize, {} spoofed, {} bad source, {} no destination, {} queue full",
                sw.name,
                i,
                who,
                st.rx_frames,
                st.rx_bytes,
                st.tx_frames,
                st.tx_bytes,
                st.flooded,
                st.drop_runt,
                st.drop_oversize,
                st.drop_spoofed,
                st.drop_bad_source,
                st.drop_no_destination,
                q.dropped()
            );
        }
        if sw.uplink.is_some() {
            log!(
                "switch '{}' uplink device: {} frames received, {} sent",
                sw.name,
                sw.uplink_rx.load(Ordering::Relaxed),
                sw.uplink_tx.load(Ordering::Relaxed)
            );
        }
    }
}
