//! A layer-2 learning switch between the virtio-net NICs of VMs and an
//! optional uplink (the machine's own NIC), in the spirit of Xvisor's
//! `vmm_netswitch` bridge and Rust-Shyper's MAC-to-VM map, but portable and
//! host-tested.
//!
//! * [`Switch`]: ports ([`PortKind::Vm`] with the NIC's MAC, or
//!   [`PortKind::Uplink`]), a bounded MAC table, and [`Switch::forward`],
//!   which decides where one frame goes: unicast to the port that owns or
//!   learned the destination MAC, broadcast, multicast and unknown unicast
//!   flooded to every other port, never back to the sender. Per-port
//!   counters ([`PortStats`]).
//! * [`FrameQueue`]: a bounded queue of frames waiting for one port's
//!   receiver (a VM's receive queue, the uplink's transmit side); frames
//!   beyond its capacity are dropped and counted.
//!
//! # Anti-spoofing and the MAC table
//!
//! A VM port's MAC is fixed when the port is added and pinned in the table:
//! frames from a VM port whose source MAC is not that MAC are dropped
//! ([`DropReason::Spoofed`]), so a VM port never makes the switch learn
//! anything, and no port can ever take over another VM port's MAC (frames
//! from the uplink that claim a VM's MAC as source are dropped too). Only
//! uplink ports learn: a source MAC seen there is mapped to that port (and
//! moves when it shows up on another uplink). The learned part of the table
//! holds at most [`MAX_LEARNED`] entries; when full, the least recently seen
//! entry is replaced. Memory is therefore bounded by [`MAX_PORTS`] ports,
//! [`MAX_LEARNED`] learned entries and each queue's capacity.
//!
//! Nothing here panics on frame contents: every frame is bounds-checked
//! ([`MIN_FRAME`]..=[`MAX_FRAME`]) before its header is looked at.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

extern crate alloc;

#[cfg(test)]
extern crate std;

mod queue;

pub use queue::FrameQueue;

use alloc::vec::Vec;

/// An Ethernet (IEEE 802) MAC address.
pub type Mac = [u8; 6];

/// Length of an Ethernet header: destination MAC, source MAC, EtherType.
pub const ETH_HLEN: usize = 14;
/// Smallest frame accepted (a bare header; shorter ones are runts). Padding
/// to 60 bytes is the sender's business on a virtual link.
pub const MIN_FRAME: usize = ETH_HLEN;
/// Largest frame accepted: a 1500-byte MTU payload plus the header (no FCS,
/// no VLAN tag).
pub const MAX_FRAME: usize = 1514;
/// Most ports one switch has (VM NICs and uplinks together).
pub const MAX_PORTS: usize = 64;
/// Most MAC addresses learned from uplink ports at once.
pub const MAX_LEARNED: usize = 256;
/// The broadcast address.
pub const BROADCAST: Mac = [0xff; 6];

/// Whether `mac` is a group address (multicast or broadcast): the I/G bit,
/// the least significant bit of the first octet.
pub const fn is_multicast(mac: &Mac) -> bool {
    mac[0] & 1 != 0
}

/// Whether `mac` may be a port's own address: unicast and not all zeros.
pub fn is_valid_unicast(mac: &Mac) -> bool {
    !is_multicast(mac) && *mac != [0; 6]
}

/// The destination MAC of a frame (which must be at least [`ETH_HLEN`] long).
fn dst(frame: &[u8]) -> Option<Mac> {
    frame.get(0..6)?.try_into().ok()
}

/// The source MAC of a frame.
fn src(frame: &[u8]) -> Option<Mac> {
    frame.get(6..12)?.try_into().ok()
}

/// A port's index in its switch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortId(pub u8);

/// What sits behind a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortKind {
    /// A VM's NIC, which may only send frames with this source MAC.
    Vm {
        /// The NIC's MAC address (unicast, not zero).
        mac: Mac,
    },
    /// The machine's NIC: any source MAC but a VM port's, learned.
    Uplink,
}

/// Adding a port failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortError {
    /// The switch has [`MAX_PORTS`] ports already.
    TooManyPorts,
    /// A VM port's MAC is multicast or all zeros.
    BadMac,
    /// Another VM port on this switch has that MAC.
    DuplicateMac,
}

/// Why [`Switch::forward`] dropped a frame (each counted on the sending port).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// The sending port does not exist.
    NoSuchPort,
    /// Shorter than [`MIN_FRAME`].
    Runt,
    /// Longer than [`MAX_FRAME`].
    Oversize,
    /// The source MAC is not the sending VM port's own, or (from an uplink)
    /// is a VM port's MAC.
    Spoofed,
    /// The source MAC is a group address or all zeros.
    BadSource,
    /// A unicast frame for a MAC behind the sending port itself.
    Hairpin,
    /// No other port to deliver to.
    NoDestination,
}

/// Counters of one port. "rx" is into the switch (from the port), "tx" out
/// of it (to the port).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Frames accepted from the port.
    pub rx_frames: u64,
    /// Bytes of those frames.
    pub rx_bytes: u64,
    /// Frames forwarded to the port.
    pub tx_frames: u64,
    /// Bytes of those frames.
    pub tx_bytes: u64,
    /// Frames from the port that were flooded (broadcast, multicast, unknown unicast).
    pub flooded: u64,
    /// Frames from the port dropped: runts.
    pub drop_runt: u64,
    /// Frames from the port dropped: oversize.
    pub drop_oversize: u64,
    /// Frames from the port dropped: spoofed source MAC.
    pub drop_spoofed: u64,
    /// Frames from the port dropped: group or zero source MAC.
    pub drop_bad_source: u64,
    /// Frames from the port dropped: destination behind the sender, or no other port.
    pub drop_no_destination: u64,
}

impl PortStats {
    /// All frames from the port that were dropped.
    pub fn dropped(&self) -> u64 {
        self.drop_runt
            + self.drop_oversize
            + self.drop_spoofed
            + self.drop_bad_source
            + self.drop_no_destination
    }
}

/// A set of destination ports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ports(u64);

impl Ports {
    /// No port.
    pub const EMPTY: Ports = Ports(0);

    /// Whether `port` is in the set.
    pub fn contains(&self, port: PortId) -> bool {
        port.0 < 64 && self.0 & (1 << port.0) != 0
    }

    /// Number of ports in the set.
    pub fn len(&self) -> usize {
        self.0.count_ones() as usize
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0 == 0
    }

    fn insert(&mut self, port: PortId) {
        if port.0 < 64 {
            self.0 |= 1 << port.0;
        }
    }

    /// The ports, in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = PortId> + '_ {
        let bits = self.0;
        (0..64u8).filter(move |i| bits & (1 << i) != 0).map(PortId)
    }
}

#[derive(Clone, Copy, Debug)]
struct Port {
    kind: PortKind,
    stats: PortStats,
}

#[derive(Clone, Copy, Debug)]
struct Learned {
    mac: Mac,
    port: PortId,
    /// When it was last seen (the switch's frame counter).
    seen: u64,
}

/// An L2 learning switch (see the crate docs).
#[derive(Clone, Debug, Default)]
pub struct Switch {
    ports: Vec<Port>,
    learned: Vec<Learned>,
    clock: u64,
}

impl Switch {
    /// A switch with no ports.
    pub fn new() -> Self {
        Self::default()
    }

    fn add(&mut self, kind: PortKind) -> Result<PortId, PortError> {
        if self.ports.len() >= MAX_PORTS {
            return Err(PortError::TooManyPorts);
        }
        let id = PortId(self.ports.len() as u8);
        self.ports.push(Port {
            kind,
            stats: PortStats::default(),
        });
        Ok(id)
    }

    /// Adds a VM NIC with MAC `mac`.
    pub fn add_vm_port(&mut self, mac: Mac) -> Result<PortId, PortError> {
        if !is_valid_unicast(&mac) {
            return Err(PortError::BadMac);
        }
        if self.vm_port_of(&mac).is_some() {
            return Err(PortError::DuplicateMac);
        }
        // A MAC learned from an uplink before is now a VM's: forget it.
        self.learned.retain(|l| l.mac != mac);
        self.add(PortKind::Vm { mac })
    }

    /// Adds an uplink port (learns source MACs).
    pub fn add_uplink(&mut self) -> Result<PortId, PortError> {
        self.add(PortKind::Uplink)
    }

    /// Number of ports.
    pub fn port_count(&self) -> usize {
        self.ports.len()
    }

    /// What sits behind `port`.
    pub fn kind(&self, port: PortId) -> Option<PortKind> {
        self.ports.get(usize::from(port.0)).map(|p| p.kind)
    }

    /// The counters of `port`.
    pub fn stats(&self, port: PortId) -> Option<&PortStats> {
        self.ports.get(usize::from(port.0)).map(|p| &p.stats)
    }

    /// Number of learned MAC table entries (at most [`MAX_LEARNED`]).
    pub fn learned_len(&self) -> usize {
        self.learned.len()
    }

    /// The port `mac` is reached through: a VM port's own MAC, or a learned one.
    pub fn lookup(&self, mac: &Mac) -> Option<PortId> {
        self.vm_port_of(mac)
            .or_else(|| self.learned.iter().find(|l| l.mac == *mac).map(|l| l.port))
    }

    fn vm_port_of(&self, mac: &Mac) -> Option<PortId> {
        self.ports
            .iter()
            .position(|p| p.kind == PortKind::Vm { mac: *mac })
            .map(|i| PortId(i as u8))
    }

    fn learn(&mut self, mac: Mac, port: PortId) {
        let now = self.clock;
        if let Some(l) = self.learned.iter_mut().find(|l| l.mac == mac) {
            // Moves if it shows up on another uplink.
            l.port = port;
            l.seen = now;
            return;
        }
        let entry = Learned {
            mac,
            port,
            seen: now,
        };
        if self.learned.len() < MAX_LEARNED {
            if self.learned.try_reserve(1).is_ok() {
                self.learned.push(entry);
            }
            return;
        }
        if let Some(oldest) = self.learned.iter_mut().min_by_key(|l| l.seen) {
            *oldest = entry;
        }
    }

    /// Decides where `frame`, received from port `from`, goes; counts it.
    /// The caller then delivers a copy to every port of the result (which
    /// never contains `from`) and counts each with [`Switch::delivered`].
    pub fn forward(&mut self, from: PortId, frame: &[u8]) -> Result<Ports, DropReason> {
        let r = self.decide(from, frame);
        self.clock = self.clock.wrapping_add(1);
        let Some(port) = self.ports.get_mut(usize::from(from.0)) else {
            return r;
        };
        let s = &mut port.stats;
        match r {
            Ok(_) => {
                s.rx_frames += 1;
                s.rx_bytes += frame.len() as u64;
            }
            Err(DropReason::Runt) => s.drop_runt += 1,
            Err(DropReason::Oversize) => s.drop_oversize += 1,
            Err(DropReason::Spoofed) => s.drop_spoofed += 1,
            Err(DropReason::BadSource) => s.drop_bad_source += 1,
            Err(DropReason::Hairpin | DropReason::NoDestination) => s.drop_no_destination += 1,
            Err(DropReason::NoSuchPort) => {}
        }
        r
    }

    fn decide(&mut self, from: PortId, frame: &[u8]) -> Result<Ports, DropReason> {
        let kind = self.kind(from).ok_or(DropReason::NoSuchPort)?;
        if frame.len() < MIN_FRAME {
            return Err(DropReason::Runt);
        }
        if frame.len() > MAX_FRAME {
            return Err(DropReason::Oversize);
        }
        let (Some(dst), Some(src)) = (dst(frame), src(frame)) else {
            return Err(DropReason::Runt);
        };
        match kind {
            PortKind::Vm { mac } if src != mac => return Err(DropReason::Spoofed),
            PortKind::Vm { .. } => {}
            PortKind::Uplink => {
                if !is_valid_unicast(&src) {
                    return Err(DropReason::BadSource);
                }
                if self.vm_port_of(&src).is_some() {
                    return Err(DropReason::Spoofed);
                }
                self.learn(src, from);
            }
        }
        let mut out = Ports::EMPTY;
        match (!is_multicast(&dst)).then(|| self.lookup(&dst)).flatten() {
            Some(p) if p == from => return Err(DropReason::Hairpin),
            Some(p) => out.insert(p),
            None => {
                for i in 0..self.ports.len() {
                    let p = PortId(i as u8);
                    if p != from {
                        out.insert(p);
                    }
                }
                if let Some(port) = self.ports.get_mut(usize::from(from.0)) {
                    port.stats.flooded += 1;
                }
            }
        }
        if out.is_empty() {
            return Err(DropReason::NoDestination);
        }
        Ok(out)
    }

    /// Counts a frame of `len` bytes handed to port `to`.
    pub fn delivered(&mut self, to: PortId, len: usize) {
        if let Some(p) = self.ports.get_mut(usize::from(to.0)) {
            p.stats.tx_frames += 1;
            p.stats.tx_bytes += len as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    const A: Mac = [0x52, 0x54, 0, 0, 0, 0xa];
    const B: Mac = [0x52, 0x54, 0, 0, 0, 0xb];
    const H: Mac = [0x52, 0x55, 10, 0, 2, 2];

    fn frame(dst: Mac, src: Mac, len: usize) -> Vec<u8> {
        let mut f = vec![0u8; len];
        f[..6].copy_from_slice(&dst);
        f[6..12].copy_from_slice(&src);
        f
    }

    #[test]
    fn constants() {
        assert_eq!((ETH_HLEN, MIN_FRAME, MAX_FRAME), (14, 14, 1514));
        assert!(is_multicast(&BROADCAST));
        assert!(is_multicast(&[0x01, 0, 0x5e, 0, 0, 1]));
        assert!(!is_multicast(&A));
        assert!(!is_valid_unicast(&[0; 6]));
    }

    #[test]
    fn unicast_broadcast_and_learning() {
        let mut s = Switch::new();
        let a = s.add_vm_port(A).unwrap();
        let b = s.add_vm_port(B).unwrap();
        let up = s.add_uplink().unwrap();
        // Unicast to B's pinned MAC.
        let r = s.forward(a, &frame(B, A, 60)).unwrap();
        assert_eq!(r.iter().collect::<Vec<_>>(), vec![b]);
        // Broadcast floods everywhere but the sender.
        let r = s.forward(a, &frame(BROADCAST, A, 60)).unwrap();
        assert_eq!(r.iter().collect::<Vec<_>>(), vec![b, up]);
        // Unknown unicast floods; once H is learned on the uplink, it does not.
        let r = s.forward(b, &frame(H, B, 60)).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(
            s.forward(up, &frame(B, H, 60))
                .unwrap()
                .iter()
                .collect::<Vec<_>>(),
            vec![b]
        );
        assert_eq!(s.lookup(&H), Some(up));
        assert_eq!(
            s.forward(b, &frame(H, B, 60))
                .unwrap()
                .iter()
                .collect::<Vec<_>>(),
            vec![up]
        );
        // A VM's own MAC as destination from itself: hairpin.
        assert_eq!(s.forward(a, &frame(A, A, 60)), Err(DropReason::Hairpin));
        assert_eq!(s.stats(a).unwrap().drop_no_destination, 1);
        assert_eq!(s.stats(b).unwrap().flooded, 1);
    }

    #[test]
    fn drops_are_counted() {
        let mut s = Switch::new();
        let a = s.add_vm_port(A).unwrap();
        let up = s.add_uplink().unwrap();
        assert_eq!(s.forward(a, &[0; 13]), Err(DropReason::Runt));
        assert_eq!(s.forward(a, &frame(B, A, 1515)), Err(DropReason::Oversize));
        assert!(s.forward(a, &frame(B, A, 1514)).is_ok());
        assert!(s.forward(a, &frame(B, A, 14)).is_ok());
        assert_eq!(
            s.forward(a, &frame(BROADCAST, B, 60)),
            Err(DropReason::Spoofed)
        );
        assert_eq!(
            s.forward(up, &frame(BROADCAST, A, 60)),
            Err(DropReason::Spoofed)
        );
        assert_eq!(
            s.forward(up, &frame(A, BROADCAST, 60)),
            Err(DropReason::BadSource)
        );
        assert_eq!(
            s.forward(PortId(9), &frame(A, H, 60)),
            Err(DropReason::NoSuchPort)
        );
        let st = s.stats(a).unwrap();
        assert_eq!((st.drop_runt, st.drop_oversize, st.drop_spoofed), (1, 1, 1));
        assert_eq!(st.rx_frames, 2);
        assert_eq!(s.stats(up).unwrap().dropped(), 2);
        assert_eq!(s.learned_len(), 0);
    }

    #[test]
    fn ports_are_checked() {
        let mut s = Switch::new();
        assert_eq!(s.add_vm_port([1, 0, 0, 0, 0, 1]), Err(PortError::BadMac));
        assert_eq!(s.add_vm_port([0; 6]), Err(PortError::BadMac));
        s.add_vm_port(A).unwrap();
        assert_eq!(s.add_vm_port(A), Err(PortError::DuplicateMac));
        while s.port_count() < MAX_PORTS {
            s.add_uplink().unwrap();
        }
        assert_eq!(s.add_uplink(), Err(PortError::TooManyPorts));
    }

    #[test]
    fn learned_table_is_bounded_and_entries_move() {
        let mut s = Switch::new();
        let a = s.add_vm_port(A).unwrap();
        let u1 = s.add_uplink().unwrap();
        let u2 = s.add_uplink().unwrap();
        for i in 0..(MAX_LEARNED as u32 + 10) {
            let b = i.to_be_bytes();
            let m = [0x02, 0, b[0], b[1], b[2], b[3]];
            s.forward(u1, &frame(A, m, 60)).unwrap();
        }
        assert_eq!(s.learned_len(), MAX_LEARNED);
        // The oldest ones went.
        assert_eq!(s.lookup(&[0x02, 0, 0, 0, 0, 0]), None);
        s.forward(u2, &frame(A, H, 60)).unwrap();
        assert_eq!(s.lookup(&H), Some(u2));
        s.forward(u1, &frame(A, H, 60)).unwrap();
        assert_eq!(s.lookup(&H), Some(u1));
        assert_eq!(
            s.forward(a, &frame(H, A, 60))
                .unwrap()
                .iter()
                .collect::<Vec<_>>(),
            vec![u1]
        );
    }
}
