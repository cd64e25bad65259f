//! virtio-net, the network device (§5.1), with one receive and one transmit
//! queue and no offloads.
//!
//! * Features offered: `VIRTIO_NET_F_MAC` (the port's MAC is in the
//!   configuration space) and `VIRTIO_NET_F_STATUS` (the link is always up),
//!   plus the transport's `VIRTIO_F_VERSION_1`. No checksum or segmentation
//!   offload, no mergeable receive buffers, no control queue, no multiqueue:
//!   every frame is a whole Ethernet frame with a 12-byte
//!   [`virtio_net_hdr`](HDR_LEN) whose `flags` and `gso_type` are 0.
//! * Transmit (queue [`TRANSMITQ`]): each chain is the header and one frame.
//!   A frame shorter than [`MIN_FRAME`] or longer than [`MAX_FRAME`] bytes,
//!   a header asking for an offload that was not negotiated, or a source MAC
//!   other than the device's own is dropped and counted ([`NetStats`]); the
//!   chain is returned all the same (§5.1.6.2: the device does not write
//!   transmit buffers). Length checks come before any frame byte is read, so
//!   a chain naming gigabytes costs nothing. Valid frames go to the
//!   [`NetBackend`] (the switch port).
//! * Receive (queue [`RECEIVEQ`]): each frame the backend has waiting is
//!   written with its header (`num_buffers` = 1) into the next available
//!   chain's device-writable part. A frame too large for that chain is
//!   dropped and counted, and the chain is kept for the next frame. With no
//!   frame waiting the chain stays available ([`Handled::Later`]); the owner
//!   notifies [`RECEIVEQ`] when frames arrive. One transport `process` call
//!   fills at most one queue's worth of chains, so a flood of frames cannot
//!   hold the hypervisor.
//!
//! # What is copied
//!
//! A transmitted frame is copied once out of guest memory (into a buffer of
//! [`MAX_FRAME`] bytes), a received one once into it: the device never keeps
//! a reference to guest memory.

use alloc::vec::Vec;

use fv_vm::GuestMemory;

use crate::buffer::Buffer;
use crate::device::{DeviceError, Handled, VirtioDevice};
use crate::device_id;
use crate::feature::bit;

/// Feature bit: the device handles packets with partial checksum (not offered).
pub const VIRTIO_NET_F_CSUM: u32 = 0;
/// Feature bit: the driver handles packets with partial checksum (not offered).
pub const VIRTIO_NET_F_GUEST_CSUM: u32 = 1;
/// Feature bit: control channel offloads reconfiguration (not offered).
pub const VIRTIO_NET_F_CTRL_GUEST_OFFLOADS: u32 = 2;
/// Feature bit: the device reports a maximum MTU (not offered).
pub const VIRTIO_NET_F_MTU: u32 = 3;
/// Feature bit: the device has the MAC address in its configuration space.
pub const VIRTIO_NET_F_MAC: u32 = 5;
/// Feature bit: the driver can receive TSOv4 (not offered).
pub const VIRTIO_NET_F_GUEST_TSO4: u32 = 7;
/// Feature bit: the driver can receive TSOv6 (not offered).
pub const VIRTIO_NET_F_GUEST_TSO6: u32 = 8;
/// Feature bit: the driver can receive UFO (not offered).
pub const VIRTIO_NET_F_GUEST_UFO: u32 = 10;
/// Feature bit: the device can receive TSOv4 (not offered).
pub const VIRTIO_NET_F_HOST_TSO4: u32 = 11;
/// Feature bit: the device can receive TSOv6 (not offered).
pub const VIRTIO_NET_F_HOST_TSO6: u32 = 12;
/// Feature bit: the driver can merge receive buffers (not offered).
pub const VIRTIO_NET_F_MRG_RXBUF: u32 = 15;
/// Feature bit: the configuration status field is available.
pub const VIRTIO_NET_F_STATUS: u32 = 16;
/// Feature bit: control channel available (not offered).
pub const VIRTIO_NET_F_CTRL_VQ: u32 = 17;
/// Feature bit: multiqueue with automatic receive steering (not offered).
pub const VIRTIO_NET_F_MQ: u32 = 22;

/// Configuration `status` bit: the link is up.
pub const VIRTIO_NET_S_LINK_UP: u16 = 1;
/// Configuration `status` bit: the driver should send a gratuitous packet.
pub const VIRTIO_NET_S_ANNOUNCE: u16 = 2;

/// Header `flags` bit: the packet needs a checksum (only with `VIRTIO_NET_F_CSUM`).
pub const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;
/// Header `flags` bit: the checksum is valid (only with `VIRTIO_NET_F_GUEST_CSUM`).
pub const VIRTIO_NET_HDR_F_DATA_VALID: u8 = 2;
/// Header `gso_type`: not a GSO frame.
pub const VIRTIO_NET_HDR_GSO_NONE: u8 = 0;

/// Size of `struct virtio_net_hdr` with `VIRTIO_F_VERSION_1` (flags,
/// gso_type, hdr_len, gso_size, csum_start, csum_offset, num_buffers).
pub const HDR_LEN: u32 = 12;
/// Offset of `num_buffers` in the header.
pub const HDR_NUM_BUFFERS: usize = 10;

/// Index of `receiveq1`.
pub const RECEIVEQ: u16 = 0;
/// Index of `transmitq1`.
pub const TRANSMITQ: u16 = 1;

/// Bytes of configuration space: `mac[6]` and `le16 status` (the fields
/// after it exist only with features not offered).
pub const CONFIG_LEN: u32 = 8;
/// Offset of `status` in the configuration space.
pub const CONFIG_STATUS: u32 = 6;

/// Ethernet header length (destination, source, EtherType).
pub const ETH_HLEN: usize = 14;
/// Shortest frame accepted (shorter: a runt).
pub const MIN_FRAME: usize = ETH_HLEN;
/// Longest frame accepted: 1500 bytes of payload plus the header.
pub const MAX_FRAME: usize = 1514;

/// Queue size offered for both queues.
pub const QUEUE_SIZE: u16 = 256;

/// Frames too large for the receive chain dropped per chain before the
/// chain is left for later (bounds one chain's work).
const RX_DROPS_PER_CHAIN: usize = 16;

/// Where the device's frames come from and go to (a switch port).
pub trait NetBackend: Send + 'static {
    /// The guest sent `frame` (whole Ethernet frame, [`MIN_FRAME`] to
    /// [`MAX_FRAME`] bytes, source MAC checked).
    fn transmit(&mut self, frame: &[u8]);

    /// The next frame for the guest, if one waits.
    fn receive(&mut self) -> Option<Vec<u8>>;
}

/// What the device dropped and passed on, counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Frames the guest sent that went to the backend.
    pub tx_frames: u64,
    /// Bytes of those frames (without header).
    pub tx_bytes: u64,
    /// Transmit chains shorter than the header plus [`MIN_FRAME`].
    pub tx_runt: u64,
    /// Transmit chains longer than the header plus [`MAX_FRAME`].
    pub tx_oversize: u64,
    /// Frames with a source MAC other than the device's.
    pub tx_spoofed: u64,
    /// Headers asking for an offload that was not negotiated.
    pub tx_bad_header: u64,
    /// Frames written into the guest's receive buffers.
    pub rx_frames: u64,
    /// Bytes of those frames (without header).
    pub rx_bytes: u64,
    /// Frames dropped because the receive chain was too small for them.
    pub rx_too_big: u64,
}

/// The virtio-net device model.
#[derive(Debug)]
pub struct Net<B> {
    mac: [u8; 6],
    backend: B,
    stats: NetStats,
    /// A transmitted frame, read out of guest memory.
    frame: Vec<u8>,
}

impl<B: NetBackend> Net<B> {
    /// A NIC with address `mac` connected to `backend`.
    pub fn new(mac: [u8; 6], backend: B) -> Self {
        Self {
            mac,
            backend,
            stats: NetStats::default(),
            frame: Vec::new(),
        }
    }

    /// The NIC's MAC address.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// The counters.
    pub fn stats(&self) -> &NetStats {
        &self.stats
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The backend, mutably.
    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }

    fn config(&self) -> [u8; CONFIG_LEN as usize] {
        let mut c = [0u8; CONFIG_LEN as usize];
        let (mac, status) = c.split_at_mut(6);
        mac.copy_from_slice(&self.mac);
        status.copy_from_slice(&VIRTIO_NET_S_LINK_UP.to_le_bytes());
        c
    }

    fn transmit(&mut self, buffer: &Buffer, mem: &mut dyn GuestMemory) -> Result<(), DeviceError> {
        let len = u64::from(buffer.readable_len());
        let hdr = u64::from(HDR_LEN);
        if len < hdr + MIN_FRAME as u64 {
            self.stats.tx_runt += 1;
            return Ok(());
        }
        if len > hdr + MAX_FRAME as u64 {
            self.stats.tx_oversize += 1;
            return Ok(());
        }
        let mut r = buffer.reader();
        let mut h = [0u8; HDR_LEN as usize];
        r.read_exact(mem, &mut h)?;
        let [flags, gso_type, ..] = h;
        if flags & VIRTIO_NET_HDR_F_NEEDS_CSUM != 0 || gso_type != VIRTIO_NET_HDR_GSO_NONE {
            self.stats.tx_bad_header += 1;
            return Ok(());
        }
        let n = (len - hdr) as usize;
        self.frame.clear();
        if self.frame.try_reserve(MAX_FRAME).is_err() {
            return Ok(());
        }
        self.frame.resize(n, 0);
        r.read_exact(mem, &mut self.frame)?;
        if self.frame.get(6..12) != Some(&self.mac[..]) {
            self.stats.tx_spoofed += 1;
            return Ok(());
        }
        self.stats.tx_frames += 1;
        self.stats.tx_bytes += n as u64;
        self.backend.transmit(&self.frame);
        Ok(())
    }

    fn receive(
        &mut self,
        buffer: &Buffer,
        mem: &mut dyn GuestMemory,
    ) -> Result<Handled, DeviceError> {
        let room = u64::from(buffer.writable_len());
        if room < u64::from(HDR_LEN) {
            return Err(DeviceError::NoWritable);
        }
        for _ in 0..RX_DROPS_PER_CHAIN {
            let Some(frame) = self.backend.receive() else {
                return Ok(Handled::Later);
            };
            if u64::from(HDR_LEN) + frame.len() as u64 > room {
                self.stats.rx_too_big += 1;
                continue;
            }
            let mut h = [0u8; HDR_LEN as usize];
            if let Some(nb) = h.get_mut(HDR_NUM_BUFFERS..HDR_NUM_BUFFERS + 2) {
                nb.copy_from_slice(&1u16.to_le_bytes());
            }
            let mut w = buffer.writer();
            w.write_all(mem, &h)?;
            w.write_all(mem, &frame)?;
            self.stats.rx_frames += 1;
            self.stats.rx_bytes += frame.len() as u64;
            return Ok(Handled::Used(w.written()));
        }
        Ok(Handled::Later)
    }
}

impl<B: NetBackend> VirtioDevice for Net<B> {
    fn device_id(&self) -> u32 {
        device_id::NET
    }

    fn features(&self) -> u64 {
        bit(VIRTIO_NET_F_MAC) | bit(VIRTIO_NET_F_STATUS)
    }

    fn num_queues(&self) -> u16 {
        2
    }

    fn queue_max_size(&self, _queue: u16) -> u16 {
        QUEUE_SIZE
    }

    fn config_len(&self) -> u32 {
        CONFIG_LEN
    }

    fn read_config(&self, offset: u32, data: &mut [u8]) {
        let c = self.config();
        let start = offset as usize;
        match c.get(start..start + data.len()) {
            Some(src) => data.copy_from_slice(src),
            None => data.fill(0),
        }
    }

    fn handle(
        &mut self,
        queue: u16,
        buffer: &Buffer,
        mem: &mut dyn GuestMemory,
    ) -> Result<Handled, DeviceError> {
        match queue {
            TRANSMITQ => {
                self.transmit(buffer, mem)?;
                Ok(Handled::Used(0))
            }
            RECEIVEQ => self.receive(buffer, mem),
            _ => Err(DeviceError::BadQueue),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_match_spec() {
        assert_eq!(VIRTIO_NET_F_CSUM, 0);
        assert_eq!(VIRTIO_NET_F_GUEST_CSUM, 1);
        assert_eq!(VIRTIO_NET_F_CTRL_GUEST_OFFLOADS, 2);
        assert_eq!(VIRTIO_NET_F_MTU, 3);
        assert_eq!(VIRTIO_NET_F_MAC, 5);
        assert_eq!(VIRTIO_NET_F_GUEST_TSO4, 7);
        assert_eq!(VIRTIO_NET_F_GUEST_TSO6, 8);
        assert_eq!(VIRTIO_NET_F_GUEST_UFO, 10);
        assert_eq!(VIRTIO_NET_F_HOST_TSO4, 11);
        assert_eq!(VIRTIO_NET_F_HOST_TSO6, 12);
        assert_eq!(VIRTIO_NET_F_MRG_RXBUF, 15);
        assert_eq!(VIRTIO_NET_F_STATUS, 16);
        assert_eq!(VIRTIO_NET_F_CTRL_VQ, 17);
        assert_eq!(VIRTIO_NET_F_MQ, 22);
        assert_eq!((VIRTIO_NET_S_LINK_UP, VIRTIO_NET_S_ANNOUNCE), (1, 2));
        assert_eq!(VIRTIO_NET_HDR_F_NEEDS_CSUM, 1);
        assert_eq!(VIRTIO_NET_HDR_F_DATA_VALID, 2);
        assert_eq!(VIRTIO_NET_HDR_GSO_NONE, 0);
        assert_eq!((HDR_LEN, HDR_NUM_BUFFERS), (12, 10));
        assert_eq!((RECEIVEQ, TRANSMITQ), (0, 1));
        assert_eq!((CONFIG_LEN, CONFIG_STATUS), (8, 6));
        assert_eq!((ETH_HLEN, MIN_FRAME, MAX_FRAME), (14, 14, 1514));
    }
}
