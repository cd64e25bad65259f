//! virtio-blk (§5.2): one request queue, requests parsed and checked here and
//! carried out by a [`BlockBackend`].
//!
//! A request (§5.2.6) is a device-readable header `struct virtio_blk_req {
//! le32 type; le32 reserved; le64 sector; }`, then data (device-readable for
//! writes, device-writable for reads and `GET_ID`), then one device-writable
//! status byte: the last writable byte of the chain.
//!
//! * `VIRTIO_BLK_T_IN` / `T_OUT`: data length a multiple of 512, sectors
//!   `sector .. sector + len / 512` within the capacity (checked arithmetic),
//!   else `VIRTIO_BLK_S_IOERR`. A write to a read-only disk
//!   (`VIRTIO_BLK_F_RO`) is `VIRTIO_BLK_S_IOERR` and writes nothing.
//! * `VIRTIO_BLK_T_FLUSH`: the backend's flush (offered as `VIRTIO_BLK_F_FLUSH`).
//! * `VIRTIO_BLK_T_GET_ID`: up to 20 bytes of the device ID string.
//! * Anything else: `VIRTIO_BLK_S_UNSUPP`.
//! * A header shorter than 16 bytes: `VIRTIO_BLK_S_IOERR`. A chain with no
//!   writable byte for the status cannot be answered: it is returned with
//!   used length 0 and counted ([`DeviceError::NoWritable`]).
//!
//! The used length is the number of bytes written into the writable part:
//! the data read from the disk plus the status byte.
//!
//! Two models share those checks:
//!
//! * [`Blk`] carries requests out synchronously over a [`BlockBackend`], a
//!   sector at a time through a 512-byte bounce buffer (tests, host tools).
//! * [`AsyncBlk`] hands reads, writes and flushes to a physical disk as
//!   [`BlkRequest`]s whose data are the guest's own buffers (guest-physical
//!   segments, for [`crate::dma::host_segments`]), and completes each when
//!   the disk has ([`AsyncBlk::finish`]). The hypervisor serves VM disks
//!   with it.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use fv_addr::GuestPhysAddr;
use fv_vm::GuestMemory;

use crate::buffer::{Buffer, BufferError, Reader, Segment, Writer};
use crate::device::{DeviceError, Handled, VirtioDevice};
use crate::device_id;
use crate::dma::{byte_at, sub_segments};
use crate::feature::bit;
use crate::mmio::MmioTransport;

/// Feature bit: maximum size of any single segment is in `size_max`.
pub const VIRTIO_BLK_F_SIZE_MAX: u32 = 1;
/// Feature bit: maximum number of segments in a request is in `seg_max`.
pub const VIRTIO_BLK_F_SEG_MAX: u32 = 2;
/// Feature bit: disk-style geometry specified in `geometry`.
pub const VIRTIO_BLK_F_GEOMETRY: u32 = 4;
/// Feature bit: the device is read-only.
pub const VIRTIO_BLK_F_RO: u32 = 5;
/// Feature bit: block size of disk is in `blk_size`.
pub const VIRTIO_BLK_F_BLK_SIZE: u32 = 6;
/// Feature bit: cache flush command support.
pub const VIRTIO_BLK_F_FLUSH: u32 = 9;
/// Feature bit: device exports information on optimal I/O alignment.
pub const VIRTIO_BLK_F_TOPOLOGY: u32 = 10;
/// Feature bit: the device can toggle its cache between writeback and writethrough.
pub const VIRTIO_BLK_F_CONFIG_WCE: u32 = 11;
/// Feature bit: the device supports multiqueue.
pub const VIRTIO_BLK_F_MQ: u32 = 12;
/// Feature bit: the device can support discard commands.
pub const VIRTIO_BLK_F_DISCARD: u32 = 13;
/// Feature bit: the device can support write zeroes commands.
pub const VIRTIO_BLK_F_WRITE_ZEROES: u32 = 14;

/// Request type: read.
pub const VIRTIO_BLK_T_IN: u32 = 0;
/// Request type: write.
pub const VIRTIO_BLK_T_OUT: u32 = 1;
/// Request type: flush.
pub const VIRTIO_BLK_T_FLUSH: u32 = 4;
/// Request type: get device ID string.
pub const VIRTIO_BLK_T_GET_ID: u32 = 8;
/// Request type: get device lifetime.
pub const VIRTIO_BLK_T_GET_LIFETIME: u32 = 10;
/// Request type: discard.
pub const VIRTIO_BLK_T_DISCARD: u32 = 11;
/// Request type: write zeroes.
pub const VIRTIO_BLK_T_WRITE_ZEROES: u32 = 13;
/// Request type: secure erase.
pub const VIRTIO_BLK_T_SECURE_ERASE: u32 = 14;

/// Status: success.
pub const VIRTIO_BLK_S_OK: u8 = 0;
/// Status: device or driver error.
pub const VIRTIO_BLK_S_IOERR: u8 = 1;
/// Status: request unsupported by the device.
pub const VIRTIO_BLK_S_UNSUPP: u8 = 2;

/// Sector size the protocol counts in, whatever the disk's block size.
pub const SECTOR_SIZE: u64 = 512;
/// Length of the device ID string returned by `GET_ID`.
pub const ID_LEN: usize = 20;
/// Size of the request header.
pub const HEADER_LEN: usize = 16;

/// Bytes of `struct virtio_blk_config` exposed: `capacity` (le64 at 0),
/// `size_max` (le32 at 8), `seg_max` (le32 at 12), `geometry` (at 16),
/// `blk_size` (le32 at 20). Only `capacity` and `seg_max` are meaningful
/// (`VIRTIO_BLK_F_SEG_MAX` is offered); the others read 0.
pub const CONFIG_LEN: u32 = 24;

/// Offset of `capacity` in the configuration space.
pub const CONFIG_CAPACITY: usize = 0;
/// Offset of `seg_max` in the configuration space.
pub const CONFIG_SEG_MAX: usize = 12;

/// Data segments a request may have (`seg_max`): a chain holds the header,
/// the data and the status, and is no longer than the queue. Without
/// `VIRTIO_BLK_F_SEG_MAX` Linux would send one data segment per request.
pub const SEG_MAX: u32 = QUEUE_SIZE as u32 - 2;

/// Queue size offered.
pub const QUEUE_SIZE: u16 = 128;

/// The backend failed an I/O.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockIoError;

/// The disk behind a virtio-blk device. Sector arguments are already checked
/// against [`capacity`](Self::capacity) by the device model.
pub trait BlockBackend: Send + 'static {
    /// Size in 512-byte sectors.
    fn capacity(&self) -> u64;
    /// Whether writes are refused (offered as `VIRTIO_BLK_F_RO`).
    fn read_only(&self) -> bool;
    /// Reads `buf.len()` bytes (a multiple of 512) from `sector` on.
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), BlockIoError>;
    /// Writes `data` (a multiple of 512 bytes) from `sector` on.
    fn write(&mut self, sector: u64, data: &[u8]) -> Result<(), BlockIoError>;
    /// Makes completed writes durable.
    fn flush(&mut self) -> Result<(), BlockIoError>;
    /// The ID string (`GET_ID`), NUL-padded.
    fn id(&self) -> [u8; ID_LEN] {
        [0; ID_LEN]
    }
}

/// A disk in a `Vec`, for tests and host tools.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemDisk {
    bytes: alloc::vec::Vec<u8>,
    read_only: bool,
}

impl MemDisk {
    /// A zeroed disk of `sectors` 512-byte sectors.
    pub fn new(sectors: usize, read_only: bool) -> Self {
        Self {
            bytes: alloc::vec![0; sectors.saturating_mul(SECTOR_SIZE as usize)],
            read_only,
        }
    }

    /// The disk contents.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The disk contents, mutably.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.bytes
    }

    fn span(&self, sector: u64, len: usize) -> Result<core::ops::Range<usize>, BlockIoError> {
        let start = usize::try_from(sector.checked_mul(SECTOR_SIZE).ok_or(BlockIoError)?)
            .map_err(|_| BlockIoError)?;
        let end = start.checked_add(len).ok_or(BlockIoError)?;
        if end > self.bytes.len() {
            return Err(BlockIoError);
        }
        Ok(start..end)
    }
}

impl BlockBackend for MemDisk {
    fn capacity(&self) -> u64 {
        self.bytes.len() as u64 / SECTOR_SIZE
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), BlockIoError> {
        let r = self.span(sector, buf.len())?;
        buf.copy_from_slice(self.bytes.get(r).ok_or(BlockIoError)?);
        Ok(())
    }

    fn write(&mut self, sector: u64, data: &[u8]) -> Result<(), BlockIoError> {
        let r = self.span(sector, data.len())?;
        self.bytes
            .get_mut(r)
            .ok_or(BlockIoError)?
            .copy_from_slice(data);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), BlockIoError> {
        Ok(())
    }

    fn id(&self) -> [u8; ID_LEN] {
        let mut id = [0u8; ID_LEN];
        id[..7].copy_from_slice(b"memdisk");
        id
    }
}

/// Sectors `sector .. sector + len/512` lie on a disk of `capacity`
/// sectors and `len` is a multiple of 512; else `VIRTIO_BLK_S_IOERR`.
fn check_range(capacity: u64, sector: u64, len: u64) -> Result<(), u8> {
    if !len.is_multiple_of(SECTOR_SIZE) {
        return Err(VIRTIO_BLK_S_IOERR);
    }
    let end = sector
        .checked_add(len / SECTOR_SIZE)
        .ok_or(VIRTIO_BLK_S_IOERR)?;
    if end > capacity {
        return Err(VIRTIO_BLK_S_IOERR);
    }
    Ok(())
}

/// Reads the request header: (type, sector). A short header is `IOERR`.
fn read_header(r: &mut Reader<'_>, mem: &mut dyn GuestMemory) -> Result<(u32, u64), Fail> {
    let mut hdr = [0u8; HEADER_LEN];
    match r.read_exact(mem, &mut hdr) {
        Err(BufferError::ShortRead) => return Err(Fail::Status(VIRTIO_BLK_S_IOERR)),
        other => other?,
    }
    let [t0, t1, t2, t3, _, _, _, _, s0, s1, s2, s3, s4, s5, s6, s7] = hdr;
    Ok((
        u32::from_le_bytes([t0, t1, t2, t3]),
        u64::from_le_bytes([s0, s1, s2, s3, s4, s5, s6, s7]),
    ))
}

/// Device-specific features of a disk (read-only or not).
fn features(read_only: bool) -> u64 {
    let ro = if read_only { bit(VIRTIO_BLK_F_RO) } else { 0 };
    ro | bit(VIRTIO_BLK_F_FLUSH) | bit(VIRTIO_BLK_F_SEG_MAX)
}

/// `struct virtio_blk_config` of a disk of `capacity` sectors taking
/// `seg_max` data segments per request, `data.len()` bytes at `offset`.
fn read_config(capacity: u64, seg_max: u32, offset: u32, data: &mut [u8]) {
    let mut cfg = [0u8; CONFIG_LEN as usize];
    let fields: [(usize, &[u8]); 2] = [
        (CONFIG_CAPACITY, &capacity.to_le_bytes()),
        (CONFIG_SEG_MAX, &seg_max.to_le_bytes()),
    ];
    for (off, bytes) in fields {
        if let Some(dst) = cfg.get_mut(off..off + bytes.len()) {
            dst.copy_from_slice(bytes);
        }
    }
    let start = offset as usize;
    match cfg.get(start..start.saturating_add(data.len())) {
        Some(src) => data.copy_from_slice(src),
        None => data.fill(0),
    }
}

/// Counters of refused requests, by status given.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlkStats {
    /// Requests answered `VIRTIO_BLK_S_IOERR` (bad header, length or range, read-only, backend error).
    pub ioerr: u64,
    /// Requests answered `VIRTIO_BLK_S_UNSUPP`.
    pub unsupp: u64,
    /// Writes refused because the disk is read-only.
    pub read_only_writes: u64,
}

/// The virtio-blk device model.
#[derive(Debug)]
pub struct Blk<B> {
    backend: B,
    stats: BlkStats,
}

/// Why a request gets `IOERR`, before any status is written.
enum Fail {
    Status(u8),
    Buffer(BufferError),
}

impl From<BufferError> for Fail {
    fn from(e: BufferError) -> Self {
        Fail::Buffer(e)
    }
}

impl<B: BlockBackend> Blk<B> {
    /// A block device over `backend`.
    pub fn new(backend: B) -> Self {
        Self {
            backend,
            stats: BlkStats::default(),
        }
    }

    /// The disk.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The disk, mutably.
    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }

    /// Refused requests.
    pub fn stats(&self) -> &BlkStats {
        &self.stats
    }

    fn check_range(&self, sector: u64, len: u64) -> Result<(), Fail> {
        check_range(self.backend.capacity(), sector, len).map_err(Fail::Status)
    }

    fn request(
        &mut self,
        buffer: &Buffer,
        data: &mut Writer<'_>,
        mem: &mut dyn GuestMemory,
    ) -> Result<(), Fail> {
        let mut r = buffer.reader();
        let (ty, sector) = read_header(&mut r, mem)?;
        let io = |_| Fail::Status(VIRTIO_BLK_S_IOERR);
        let mut sec = [0u8; SECTOR_SIZE as usize];
        match ty {
            VIRTIO_BLK_T_IN => {
                self.check_range(sector, data.remaining())?;
                let mut s = sector;
                while data.remaining() > 0 {
                    self.backend.read(s, &mut sec).map_err(io)?;
                    data.write_all(mem, &sec)?;
                    s += 1;
                }
                Ok(())
            }
            VIRTIO_BLK_T_OUT => {
                if self.backend.read_only() {
                    self.stats.read_only_writes += 1;
                    return Err(Fail::Status(VIRTIO_BLK_S_IOERR));
                }
                self.check_range(sector, r.remaining())?;
                let mut s = sector;
                while r.remaining() > 0 {
                    r.read_exact(mem, &mut sec)?;
                    self.backend.write(s, &sec).map_err(io)?;
                    s += 1;
                }
                Ok(())
            }
            VIRTIO_BLK_T_FLUSH => self.backend.flush().map_err(io),
            VIRTIO_BLK_T_GET_ID => {
                data.write(mem, &self.backend.id())?;
                Ok(())
            }
            _ => Err(Fail::Status(VIRTIO_BLK_S_UNSUPP)),
        }
    }
}

impl<B: BlockBackend> VirtioDevice for Blk<B> {
    fn device_id(&self) -> u32 {
        device_id::BLOCK
    }

    fn features(&self) -> u64 {
        features(self.backend.read_only())
    }

    fn num_queues(&self) -> u16 {
        1
    }

    fn queue_max_size(&self, _queue: u16) -> u16 {
        QUEUE_SIZE
    }

    fn config_len(&self) -> u32 {
        CONFIG_LEN
    }

    fn read_config(&self, offset: u32, data: &mut [u8]) {
        read_config(self.backend.capacity(), SEG_MAX, offset, data);
    }

    fn handle(
        &mut self,
        queue: u16,
        buffer: &Buffer,
        mem: &mut dyn GuestMemory,
    ) -> Result<Handled, DeviceError> {
        if queue != 0 {
            return Err(DeviceError::BadQueue);
        }
        let w = buffer.writer();
        let Some(data_len) = w.remaining().checked_sub(1) else {
            return Err(DeviceError::NoWritable);
        };
        let (mut data, mut status) = w.split_at(data_len);
        let code = match self.request(buffer, &mut data, mem) {
            Ok(()) => VIRTIO_BLK_S_OK,
            Err(Fail::Status(s)) => s,
            Err(Fail::Buffer(BufferError::Memory(e))) => {
                return Err(DeviceError::Buffer(BufferError::Memory(e)))
            }
            Err(Fail::Buffer(_)) => VIRTIO_BLK_S_IOERR,
        };
        match code {
            VIRTIO_BLK_S_IOERR => self.stats.ioerr += 1,
            VIRTIO_BLK_S_UNSUPP => self.stats.unsupp += 1,
            _ => {}
        }
        status.write_all(mem, &[code])?;
        Ok(Handled::Used(data.written().saturating_add(1)))
    }
}

/// What an asynchronous request asks of the physical disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlkOp {
    /// `VIRTIO_BLK_T_IN`: read into the data segments (device-writable).
    Read,
    /// `VIRTIO_BLK_T_OUT`: write the data segments (device-readable).
    Write,
    /// `VIRTIO_BLK_T_FLUSH`: no data.
    Flush,
}

/// A checked request [`AsyncBlk`] took, for a physical disk to carry out
/// (its data by DMA straight to or from the guest's buffers) and for
/// [`AsyncBlk::finish`] to return afterwards.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlkRequest {
    /// The chain's head index.
    pub head: u16,
    /// The transport epoch it was taken under ([`MmioTransport::epoch`]).
    pub epoch: u64,
    /// What to do.
    pub op: BlkOp,
    /// First sector (range already checked against the capacity).
    pub sector: u64,
    /// The data, guest-physical, a multiple of 512 bytes in total (none for a flush).
    pub data: Vec<Segment>,
    /// Bytes of `data`.
    pub data_len: u64,
    /// Where the status byte goes.
    pub status: GuestPhysAddr,
}

/// A virtio-blk device whose reads, writes and flushes go to a physical disk
/// asynchronously, without copying (issue #9 point 2).
///
/// [`handle`](VirtioDevice::handle) parses and checks each request as the
/// synchronous [`Blk`] does, answers what needs no disk itself (bad header,
/// range or length, writes to a read-only disk, `GET_ID`, unsupported
/// types, empty reads and writes), and queues the rest as [`BlkRequest`]s
/// ([`Handled::InFlight`]). The hypervisor takes them with
/// [`take_submitted`](Self::take_submitted), gives them to the disk and, when
/// the disk is done, calls [`finish`](Self::finish), which writes the status
/// byte and completes the chain through the transport.
///
/// At most [`QUEUE_SIZE`] requests are outstanding (queued or at the disk):
/// beyond that the device answers [`Handled::Later`] and the chains wait in
/// the ring, so a guest can never make the hypervisor hold more than that.
/// A reset forgets the queued ones and starts a new epoch: requests still at
/// the disk complete into nothing ([`MmioTransport::complete`] drops them).
#[derive(Debug)]
pub struct AsyncBlk {
    capacity: u64,
    read_only: bool,
    id: [u8; ID_LEN],
    seg_max: u32,
    epoch: u64,
    outstanding: u32,
    submitted: VecDeque<BlkRequest>,
    stats: BlkStats,
}

impl AsyncBlk {
    /// A disk of `capacity` sectors, read-only or not, with ID string `id`.
    pub fn new(capacity: u64, read_only: bool, id: [u8; ID_LEN]) -> Self {
        Self {
            capacity,
            read_only,
            id,
            seg_max: SEG_MAX,
            epoch: 0,
            outstanding: 0,
            submitted: VecDeque::new(),
            stats: BlkStats::default(),
        }
    }

    /// Offers `seg_max` (1 ..= [`SEG_MAX`]) data segments per request
    /// instead of [`SEG_MAX`] (a physical disk that takes fewer descriptors);
    /// a request with more is answered `VIRTIO_BLK_S_IOERR`.
    pub fn with_seg_max(mut self, seg_max: u32) -> Self {
        self.seg_max = seg_max.clamp(1, SEG_MAX);
        self
    }

    /// Refused requests.
    pub fn stats(&self) -> &BlkStats {
        &self.stats
    }

    /// Whether the disk is read-only (`VIRTIO_BLK_F_RO`).
    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// Requests taken since the last call and not yet given to the disk,
    /// oldest first (call after every `process`).
    pub fn take_submitted(&mut self) -> impl Iterator<Item = BlkRequest> + '_ {
        self.submitted.drain(..)
    }

    /// Whether requests wait for [`take_submitted`](Self::take_submitted).
    pub fn has_submitted(&self) -> bool {
        !self.submitted.is_empty()
    }

    /// Requests queued or at the disk in the current epoch.
    pub fn outstanding(&self) -> u32 {
        self.outstanding
    }

    fn parse(&mut self, buffer: &Buffer, mem: &mut dyn GuestMemory) -> Result<Parsed, Fail> {
        let mut r = buffer.reader();
        let (ty, sector) = read_header(&mut r, mem)?;
        let segs = buffer.segments();
        let readable = u64::from(buffer.readable_len());
        let writable = u64::from(buffer.writable_len());
        // The status byte is the last writable byte (checked by the caller).
        let data_w = writable.saturating_sub(1);
        let (op, data) = match ty {
            VIRTIO_BLK_T_IN => {
                check_range(self.capacity, sector, data_w).map_err(Fail::Status)?;
                (BlkOp::Read, sub_segments(segs, readable, data_w))
            }
            VIRTIO_BLK_T_OUT => {
                if self.read_only {
                    self.stats.read_only_writes += 1;
                    return Err(Fail::Status(VIRTIO_BLK_S_IOERR));
                }
                let len = readable.saturating_sub(HEADER_LEN as u64);
                check_range(self.capacity, sector, len).map_err(Fail::Status)?;
                (BlkOp::Write, sub_segments(segs, HEADER_LEN as u64, len))
            }
            VIRTIO_BLK_T_FLUSH => (BlkOp::Flush, Vec::new()),
            VIRTIO_BLK_T_GET_ID => {
                let (mut data, _) = buffer.writer().split_at(data_w);
                data.write(mem, &self.id)?;
                return Ok(Parsed::Done(data.written()));
            }
            _ => return Err(Fail::Status(VIRTIO_BLK_S_UNSUPP)),
        };
        if data.len() > self.seg_max as usize {
            return Err(Fail::Status(VIRTIO_BLK_S_IOERR));
        }
        let data_len: u64 = data.iter().map(|s| u64::from(s.len)).sum();
        if op != BlkOp::Flush && data_len == 0 {
            // Nothing to move: done (a physical device takes no empty buffer).
            return Ok(Parsed::Done(0));
        }
        Ok(Parsed::Disk(op, sector, data, data_len))
    }

    /// Completes `req` (which the disk finished with status `status`,
    /// `VIRTIO_BLK_S_*`) into the guest's rings: writes the status byte and
    /// returns the chain with the data length read plus 1 (or 1 for anything
    /// but a successful read). A request of an older epoch is dropped (the
    /// device was reset meanwhile; its pages were never anyone else's).
    pub fn finish(
        transport: &mut MmioTransport<AsyncBlk>,
        req: &BlkRequest,
        status: u8,
        mem: &mut dyn GuestMemory,
    ) -> bool {
        if req.epoch != transport.epoch() {
            transport.complete(REQUESTQ, req.head, 0, req.epoch, mem);
            return false;
        }
        let dev = transport.device_mut();
        dev.outstanding = dev.outstanding.saturating_sub(1);
        if status == VIRTIO_BLK_S_IOERR {
            dev.stats.ioerr += 1;
        }
        let len = match (status, req.op) {
            (VIRTIO_BLK_S_OK, BlkOp::Read) => {
                u32::try_from(req.data_len.saturating_add(1)).unwrap_or(u32::MAX)
            }
            _ => 1,
        };
        let len = if mem.write(req.status, &[status]).is_ok() {
            len
        } else {
            0
        };
        let done = transport.complete(REQUESTQ, req.head, len, req.epoch, mem);
        // A slot is free again: chains held back by the limit may go now.
        transport.notify(REQUESTQ);
        done
    }
}

/// What `AsyncBlk::parse` made of a request.
enum Parsed {
    /// Answered here: this many data bytes written.
    Done(u32),
    /// For the disk.
    Disk(BlkOp, u64, Vec<Segment>, u64),
}

/// Index of the request queue.
pub const REQUESTQ: u16 = 0;

impl VirtioDevice for AsyncBlk {
    fn device_id(&self) -> u32 {
        device_id::BLOCK
    }

    fn features(&self) -> u64 {
        features(self.read_only)
    }

    fn num_queues(&self) -> u16 {
        1
    }

    fn queue_max_size(&self, _queue: u16) -> u16 {
        QUEUE_SIZE
    }

    fn config_len(&self) -> u32 {
        CONFIG_LEN
    }

    fn read_config(&self, offset: u32, data: &mut [u8]) {
        read_config(self.capacity, self.seg_max, offset, data);
    }

    fn handle(
        &mut self,
        queue: u16,
        buffer: &Buffer,
        mem: &mut dyn GuestMemory,
    ) -> Result<Handled, DeviceError> {
        if queue != REQUESTQ {
            return Err(DeviceError::BadQueue);
        }
        if self.outstanding >= u32::from(QUEUE_SIZE) {
            return Ok(Handled::Later);
        }
        let Some(status_off) = u64::from(buffer.writable_len()).checked_sub(1) else {
            return Err(DeviceError::NoWritable);
        };
        let readable = u64::from(buffer.readable_len());
        let status_gpa = byte_at(buffer.segments(), readable.saturating_add(status_off))
            .ok_or(DeviceError::NoWritable)?;
        let (code, written) = match self.parse(buffer, mem) {
            Ok(Parsed::Disk(op, sector, data, data_len)) => {
                self.outstanding += 1;
                self.submitted.push_back(BlkRequest {
                    head: buffer.head(),
                    epoch: self.epoch,
                    op,
                    sector,
                    data,
                    data_len,
                    status: status_gpa,
                });
                return Ok(Handled::InFlight);
            }
            Ok(Parsed::Done(n)) => (VIRTIO_BLK_S_OK, n),
            Err(Fail::Status(s)) => (s, 0),
            Err(Fail::Buffer(BufferError::Memory(e))) => {
                return Err(DeviceError::Buffer(BufferError::Memory(e)))
            }
            Err(Fail::Buffer(_)) => (VIRTIO_BLK_S_IOERR, 0),
        };
        match code {
            VIRTIO_BLK_S_IOERR => self.stats.ioerr += 1,
            VIRTIO_BLK_S_UNSUPP => self.stats.unsupp += 1,
            _ => {}
        }
        mem.write(status_gpa, &[code])
            .map_err(|e| DeviceError::Buffer(BufferError::Memory(e)))?;
        Ok(Handled::Used(written.saturating_add(1)))
    }

    fn reset(&mut self) {
        self.epoch = self.epoch.wrapping_add(1);
        self.outstanding = 0;
        self.submitted.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_match_spec() {
        assert_eq!(VIRTIO_BLK_F_SIZE_MAX, 1);
        assert_eq!(VIRTIO_BLK_F_SEG_MAX, 2);
        assert_eq!(VIRTIO_BLK_F_GEOMETRY, 4);
        assert_eq!(VIRTIO_BLK_F_RO, 5);
        assert_eq!(VIRTIO_BLK_F_BLK_SIZE, 6);
        assert_eq!(VIRTIO_BLK_F_FLUSH, 9);
        assert_eq!(VIRTIO_BLK_F_TOPOLOGY, 10);
        assert_eq!(VIRTIO_BLK_F_CONFIG_WCE, 11);
        assert_eq!(VIRTIO_BLK_F_MQ, 12);
        assert_eq!(VIRTIO_BLK_F_DISCARD, 13);
        assert_eq!(VIRTIO_BLK_F_WRITE_ZEROES, 14);
        assert_eq!(VIRTIO_BLK_T_IN, 0);
        assert_eq!(VIRTIO_BLK_T_OUT, 1);
        assert_eq!(VIRTIO_BLK_T_FLUSH, 4);
        assert_eq!(VIRTIO_BLK_T_GET_ID, 8);
        assert_eq!(VIRTIO_BLK_T_GET_LIFETIME, 10);
        assert_eq!(VIRTIO_BLK_T_DISCARD, 11);
        assert_eq!(VIRTIO_BLK_T_WRITE_ZEROES, 13);
        assert_eq!(VIRTIO_BLK_T_SECURE_ERASE, 14);
        assert_eq!(VIRTIO_BLK_S_OK, 0);
        assert_eq!(VIRTIO_BLK_S_IOERR, 1);
        assert_eq!(VIRTIO_BLK_S_UNSUPP, 2);
        assert_eq!((SECTOR_SIZE, ID_LEN, HEADER_LEN), (512, 20, 16));
        assert_eq!((CONFIG_CAPACITY, CONFIG_SEG_MAX, CONFIG_LEN), (0, 12, 24));
    }
}
