//! The machine's own VirtIO devices, driven by the hypervisor (issue #9,
//! point 2: backends are real devices of the machine; no guest ever touches one).
//!
//! At boot [`probe`] looks at every virtio-mmio transport the host device tree
//! lists, skips empty slots (device ID 0), sets up each block and entropy
//! device with `virtio-drivers`' transport and its raw `VirtQueue` (polled:
//! no used-buffer interrupts), logs one line per device and keeps the working
//! ones in [`HOST_DEVICES`]. A VM disk takes its block device out of it
//! ([`take_blk`]) and gives it requests of several buffers
//! ([`HostBlk::submit`], completed by token with [`HostBlk::complete`]); VM
//! entropy devices share a host entropy device's pool ([`claim_rng`],
//! [`take_entropy`], [`poll_entropy`]). `VirtIOBlk` is not used: it takes one
//! data buffer per non-blocking request and flushes only by waiting. A device
//! Each network device is driven with `VirtIONetRaw` (a switch's uplink, see
//! `crate::net`). The first console device becomes the control channel
//! ([`crate::ctrl`]). A device
//! that misbehaves is logged and left out; it never stops the boot.
//!
//! Everything hardware-facing lives here: [`HostHal`], the driver crate's
//! view of the machine (DMA memory, address translation), and the one place
//! that turns a device-tree `reg` into an MMIO transport. The code is
//! arch-neutral: time comes in as a clock function.
//!
//! DMA memory: whole frames from the global frame allocator ([`crate::mem::FRAMES`]),
//! zeroed, physically contiguous, returned when the driver drops them. The
//! hypervisor runs with translation off (`satp` = Bare), so a buffer's address
//! is its physical address, and QEMU's `virt` machine has no IOMMU and
//! cache-coherent DMA, so sharing a buffer with a device is the identity: no
//! bounce buffers, no cache maintenance. A platform with non-coherent DMA or
//! an IOMMU would need both in [`HostHal::share`] / [`HostHal::unshare`].
//!
//! Limits of the driver crate (`virtio-drivers` 0.13) that matter here: its
//! blocking requests (`read_blocks`, `VirtIORng::request_entropy`), its
//! config-space reads (`read_consistent`) and the modern transport's queue
//! reset (when a driver is dropped) wait for the device without a bound.
//! Only the non-blocking queue API is used; the boot-time read below has its
//! own deadline, and a device that misses it is leaked rather than dropped
//! (dropping would free DMA memory it may still write).

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;
use core::ptr::NonNull;

use fv_addr::{HostPhysAddr, Range, PAGE_SIZE};
use fv_platform::VirtioMmio;
use fv_virtio::dma::HostSegment;
use spin::Mutex;
use virtio_drivers::device::net::VirtIONetRaw;
use virtio_drivers::queue::VirtQueue;
use virtio_drivers::transport::mmio::{MmioError, MmioTransport, MmioVersion, VirtIOHeader};
use virtio_drivers::transport::{DeviceType, DeviceTypeError, Transport};
use virtio_drivers::{BufferDirection, Hal, PhysAddr};

use crate::mem;

/// The MMIO transport of a host device: its register block lives as long as the
/// machine.
pub type HostTransport = MmioTransport<'static>;

/// Requests a host block device holds at once (its queue size; with
/// indirect descriptors every request takes one slot). QEMU's virtio-blk
/// offers up to 256; the driver keeps two arrays of this many entries
/// (shadow descriptors, indirect tables), which pass through the stack
/// when the queue is made.
pub const HOST_BLK_QUEUE: usize = 128;

/// Descriptors one host request may have (header, data pieces, status): the
/// queue size, which bounds an indirect table.
pub const HOST_BLK_MAX_DESC: usize = HOST_BLK_QUEUE;

/// Requests a host entropy device holds at once.
const HOST_RNG_QUEUE: usize = 4;

/// The bytes one host entropy request asks for.
pub const HOST_RNG_CHUNK: usize = 256;

bitflags::bitflags! {
    /// Feature bits the hypervisor accepts from a host device (values pinned
    /// to the spec by `fv_virtio`'s tests).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    struct HostFeatures: u64 {
        /// `VIRTIO_BLK_F_RO`.
        const BLK_RO = 1 << fv_virtio::blk::VIRTIO_BLK_F_RO;
        /// `VIRTIO_BLK_F_FLUSH`.
        const BLK_FLUSH = 1 << fv_virtio::blk::VIRTIO_BLK_F_FLUSH;
        /// `VIRTIO_F_INDIRECT_DESC`: one queue slot per request.
        const INDIRECT_DESC = 1 << fv_virtio::feature::VIRTIO_F_INDIRECT_DESC;
        /// `VIRTIO_F_VERSION_1`.
        const VERSION_1 = 1 << fv_virtio::feature::VIRTIO_F_VERSION_1;
    }
}

/// Queue size of a host network device's two queues (QEMU offers 256).
pub const HOST_NET_QUEUE: usize = 64;

/// A driven host network device: `VirtIONetRaw`, the driver crate's
/// non-blocking interface (its `VirtIONet::send` waits for the device).
pub type HostNetDriver = VirtIONetRaw<HostHal, HostTransport, HOST_NET_QUEUE>;

/// How long the boot-time read of sector 0 may take before the device counts
/// as broken, in milliseconds (QEMU answers in microseconds).
const READ_TIMEOUT_MS: u64 = 1000;

/// The driver crate's view of the machine (see the module documentation).
#[derive(Debug)]
pub struct HostHal;

// SAFETY: `dma_alloc` returns frames the frame allocator handed out to no one
// else, zeroed, page-aligned, at their physical address (which is also their
// address for the hypervisor, satp being Bare); `dma_dealloc` gives exactly
// those back; `share` returns a buffer's own address, which is the address the
// device sees (identity mapping, no IOMMU, coherent DMA on QEMU `virt`).
unsafe impl Hal for HostHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        let got = mem::FRAMES
            .lock()
            .as_mut()
            .and_then(|fa| fa.alloc_contiguous(pages, PAGE_SIZE).ok());
        let Some(pa) = got else {
            // The driver crate turns a zero address into `Error::DmaError`.
            return (0, NonNull::dangling());
        };
        let Some(ptr) = NonNull::new(mem::hva(pa).raw() as *mut u8) else {
            return (0, NonNull::dangling());
        };
        // SAFETY: the frames were just allocated for us and are used by nothing
        // else; `pages * PAGE_SIZE` bytes fit (the allocator handed them out).
        unsafe { mem::zero(pa, pages as u64 * PAGE_SIZE) };
        (pa.raw(), ptr)
    }

    unsafe fn dma_dealloc(paddr: PhysAddr, _vaddr: NonNull<u8>, pages: usize) -> i32 {
        let freed = match mem::FRAMES.lock().as_mut() {
            Some(fa) => fa.free(HostPhysAddr::new(paddr), pages),
            None => Err(fv_frame_alloc::FrameError::NotInRegion),
        };
        if let Err(e) = freed {
            // The crate panics on a non-zero return: keep the frames (leaked)
            // and say so rather than take the hypervisor down.
            crate::log!(
                "host device DMA memory at {:#x} ({} pages) not freed: {:?}",
                paddr,
                pages,
                e
            );
        }
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        // Only the PCI transport asks (for BARs); identity like everything else.
        NonNull::new(paddr as *mut u8).unwrap_or(NonNull::dangling())
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        // Identity: every buffer the hypervisor has (image, heap, stack, frames)
        // is at its physical address, and the device sees physical addresses.
        buffer.cast::<u8>().as_ptr() as usize as PhysAddr
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {
        // Nothing to copy back or unmap: the device wrote the buffer itself.
    }
}

/// Why a virtio-mmio slot gave no usable device.
#[derive(Debug)]
pub enum HostDevError {
    /// The register block is not 4-byte aligned or too small for the
    /// virtio-mmio registers.
    BadRegion,
    /// The register block overlaps RAM: the device tree is wrong, and touching
    /// it would alias memory the hypervisor hands out.
    OverlapsRam,
    /// The transport's header is not a virtio-mmio one (magic, version).
    Transport(MmioError),
    /// The driver could not set the device up or a request failed.
    Driver(virtio_drivers::Error),
    /// The device did not complete a request before the deadline; it is left
    /// alone (leaked, not reset) from then on.
    Timeout,
    /// The device completed something other than what it was given; left
    /// alone like a timed-out one.
    Misbehaved(virtio_drivers::Error),
}

impl fmt::Display for HostDevError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostDevError::BadRegion => f.write_str("register block misaligned or too small"),
            HostDevError::OverlapsRam => f.write_str("register block overlaps RAM"),
            HostDevError::Transport(e) => write!(f, "transport: {e}"),
            HostDevError::Driver(e) => write!(f, "driver: {e}"),
            HostDevError::Timeout => f.write_str("request timed out (device abandoned)"),
            HostDevError::Misbehaved(e) => write!(f, "device misbehaved: {e} (device abandoned)"),
        }
    }
}

/// A host block device the hypervisor drives.
pub struct HostBlk {
    /// Its virtio-mmio register block.
    pub base: HostPhysAddr,
    /// Its interrupt at the host interrupt controller (not used yet: the
    /// hypervisor polls).
    pub irq: Option<u32>,
    /// virtio-mmio version 1 (legacy) or 2 (modern).
    pub version: MmioVersion,
    /// Size in 512-byte sectors.
    pub capacity: u64,
    /// The device refuses writes (`VIRTIO_BLK_F_RO`).
    pub read_only: bool,
    /// CRC-32 of sector 0 as read at boot (`None`: empty or unreadable).
    pub sector0_crc: Option<u32>,
    /// The device flushes its write cache on `VIRTIO_BLK_T_FLUSH`
    /// (`VIRTIO_BLK_F_FLUSH` negotiated); without it writes are durable
    /// when they complete.
    pub flush: bool,
    /// The transport (interrupts off: requests are polled).
    transport: HostTransport,
    /// The request queue (on the heap: it is large).
    queue: Box<VirtQueue<HostHal, HOST_BLK_QUEUE>>,
}

impl fmt::Debug for HostBlk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostBlk")
            .field("base", &self.base)
            .field("irq", &self.irq)
            .field("version", &self.version)
            .field("capacity", &self.capacity)
            .field("read_only", &self.read_only)
            .field("sector0_crc", &self.sector0_crc)
            .finish_non_exhaustive()
    }
}

/// A host entropy device the hypervisor drives.
pub struct HostRng {
    /// Its virtio-mmio register block.
    pub base: HostPhysAddr,
    /// Its interrupt at the host interrupt controller (not used yet).
    pub irq: Option<u32>,
    /// virtio-mmio version 1 (legacy) or 2 (modern).
    pub version: MmioVersion,
    /// The transport (interrupts off).
    transport: HostTransport,
    /// The request queue.
    queue: Box<VirtQueue<HostHal, HOST_RNG_QUEUE>>,
    /// The buffer of the request at the device, if one is (token, bytes):
    /// on the heap, leaked if the device never gives it back.
    pending: Option<(u16, Box<[u8; HOST_RNG_CHUNK]>)>,
}

impl fmt::Debug for HostRng {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostRng")
            .field("base", &self.base)
            .field("irq", &self.irq)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// A host network device the hypervisor drives (a switch's uplink).
pub struct HostNet {
    /// Its virtio-mmio register block.
    pub base: HostPhysAddr,
    /// Its interrupt at the host interrupt controller (not used: polled).
    pub irq: Option<u32>,
    /// virtio-mmio version 1 (legacy) or 2 (modern).
    pub version: MmioVersion,
    /// Its MAC address (QEMU's, not a VM's: VMs keep their own).
    pub mac: [u8; 6],
    /// The driver (interrupts off).
    pub driver: HostNetDriver,
}

impl fmt::Debug for HostNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostNet")
            .field("base", &self.base)
            .field("irq", &self.irq)
            .field("version", &self.version)
            .field("mac", &self.mac)
            .finish_non_exhaustive()
    }
}

/// The host devices found at boot, sorted by address. Filled once by
/// [`probe`] before any VM exists; whoever serves a VM's virtual device from
/// one of them takes it out (`Vec::remove`), so each physical device has at
/// most one user and no guest ever reaches its registers.
#[derive(Debug, Default)]
pub struct HostDevices {
    /// Block devices.
    pub blk: Vec<HostBlk>,
    /// Entropy devices.
    pub rng: Vec<HostRng>,
    /// Network devices.
    pub net: Vec<HostNet>,
}

/// The registry of host devices (see [`HostDevices`]).
pub static HOST_DEVICES: Mutex<HostDevices> = Mutex::new(HostDevices {
    blk: Vec::new(),
    rng: Vec::new(),
    net: Vec::new(),
});

fn version_str(v: MmioVersion) -> &'static str {
    match v {
        MmioVersion::Legacy => "virtio-mmio v1 (legacy)",
        MmioVersion::Modern => "virtio-mmio v2",
    }
}

/// Probes every virtio-mmio slot in `slots` (the host device tree's), drives
/// the block and entropy devices found and logs one line per device and a
/// summary. `ram` is the machine's RAM (a slot overlapping it is refused);
/// `now` reads a clock of `ticks_per_sec` ticks per second (for deadlines).
/// Call once, with the frame allocator set up and before any VM exists.
pub fn probe(
    slots: &[VirtioMmio],
    ram: &[Range<HostPhysAddr>],
    now: fn() -> u64,
    ticks_per_sec: u64,
) {
    let mut found = HostDevices::default();
    let mut empty = 0usize;
    for slot in slots {
        let base = slot.reg.start.raw();
        let transport = match open(slot, ram) {
            Ok(Some(t)) => t,
            Ok(None) => {
                empty += 1;
                continue;
            }
            Err(e) => {
                crate::log!("host virtio-mmio at {:#x}: {}", base, e);
                continue;
            }
        };
        let version = transport.version();
        match transport.device_type() {
            DeviceType::Block => match init_blk(slot, version, transport, now, ticks_per_sec) {
                Ok(b) => {
                    let crc = match b.sector0_crc {
                        Some(c) => alloc::format!("sector 0 crc32 {c:#010x}"),
                        None => alloc::string::String::from("no sector 0"),
                    };
                    crate::log!(
                        "host virtio-blk at {:#x} ({}): {} sectors, {}, {}",
                        base,
                        version_str(version),
                        b.capacity,
                        if b.read_only { "ro" } else { "rw" },
                        crc
                    );
                    found.blk.push(b);
                }
                Err(e) => crate::log!("host virtio-blk at {:#x}: not used: {}", base, e),
            },
            DeviceType::EntropySource => match init_rng(slot, version, transport) {
                Ok(r) => {
                    crate::log!("host virtio-rng at {:#x} ({})", base, version_str(version));
                    found.rng.push(r);
                }
                Err(e) => crate::log!("host virtio-rng at {:#x}: not used: {}", base, e),
            },
            DeviceType::Console => match crate::ctrl::CtrlDriver::new(transport) {
                Ok(driver) => {
                    if crate::ctrl::install(driver) {
                        crate::log!(
                            "host virtio-console at {:#x} ({}): control channel",
                            base,
                            version_str(version)
                        );
                    } else {
                        crate::log!(
                            "host virtio-console at {:#x}: not used (there is a control channel already)",
                            base
                        );
                    }
                }
                Err(e) => crate::log!(
                    "host virtio-console at {:#x}: not used: driver: {}",
                    base,
                    e
                ),
            },
            DeviceType::Network => match HostNetDriver::new(transport) {
                Ok(mut driver) => {
                    driver.disable_interrupts();
                    let mac = driver.mac_address();
                    crate::log!(
                        "host virtio-net at {:#x} ({}): mac {}",
                        base,
                        version_str(version),
                        crate::net::MacFmt(mac)
                    );
                    found.net.push(HostNet {
                        base: slot.reg.start,
                        irq: slot.irq,
                        version,
                        mac,
                        driver,
                    });
                }
                Err(e) => crate::log!("host virtio-net at {:#x}: not used: driver: {}", base, e),
            },
            other => crate::log!(
                "host virtio-mmio at {:#x}: {:?} device not driven",
                base,
                other
            ),
        }
    }
    crate::log!(
        "host devices: {} virtio-blk, {} virtio-rng, {} virtio-net ({} virtio-mmio slots, {} empty)",
        found.blk.len(),
        found.rng.len(),
        found.net.len(),
        slots.len(),
        empty
    );
    *HOST_DEVICES.lock() = found;
}

/// The transport of one slot; `Ok(None)` for an empty slot (device ID 0).
fn open(
    slot: &VirtioMmio,
    ram: &[Range<HostPhysAddr>],
) -> Result<Option<HostTransport>, HostDevError> {
    let base = slot.reg.start.raw();
    let size = usize::try_from(slot.reg.size).map_err(|_| HostDevError::BadRegion)?;
    if !base.is_multiple_of(4) || size < size_of::<VirtIOHeader>() {
        return Err(HostDevError::BadRegion);
    }
    if ram.iter().any(|r| r.overlaps(&slot.reg)) {
        return Err(HostDevError::OverlapsRam);
    }
    let header = NonNull::new(base as *mut VirtIOHeader).ok_or(HostDevError::BadRegion)?;
    // SAFETY: the device tree names this 4-byte-aligned block of `size` bytes
    // (checked above to hold the header, and to be outside RAM) as a
    // virtio-mmio register block; the hypervisor reaches it at its physical
    // address (satp Bare). No guest has it mapped (G-stage tables map only
    // guest RAM) and the hypervisor touches it only through this transport:
    // each slot of the device tree is probed once, and the transport is
    // dropped (resetting the device) or kept in HOST_DEVICES for good.
    match unsafe { MmioTransport::new(header, size) } {
        Ok(t) => Ok(Some(t)),
        Err(MmioError::InvalidDeviceID(DeviceTypeError::InvalidDeviceType(0))) => Ok(None),
        Err(e) => Err(HostDevError::Transport(e)),
    }
}

/// Negotiates `wanted` features, sets up queue 0 with polling (no used-buffer
/// interrupts) and sets DRIVER_OK. Returns the features and the queue.
fn init_transport<const N: usize>(
    transport: &mut HostTransport,
    wanted: HostFeatures,
) -> Result<(HostFeatures, Box<VirtQueue<HostHal, N>>), HostDevError> {
    let features = transport.begin_init(wanted);
    let mut queue = Box::new(
        VirtQueue::new(
            transport,
            0,
            features.contains(HostFeatures::INDIRECT_DESC),
            false,
        )
        .map_err(HostDevError::Driver)?,
    );
    queue.set_dev_notify(false);
    transport.finish_init();
    Ok((features, queue))
}

/// Sets up a block device and reads its sector 0 (with a deadline).
fn init_blk(
    slot: &VirtioMmio,
    version: MmioVersion,
    mut transport: HostTransport,
    now: fn() -> u64,
    ticks_per_sec: u64,
) -> Result<HostBlk, HostDevError> {
    let wanted = HostFeatures::BLK_RO
        | HostFeatures::BLK_FLUSH
        | HostFeatures::INDIRECT_DESC
        | HostFeatures::VERSION_1;
    let (features, queue) = init_transport(&mut transport, wanted)?;
    // `capacity` (le64 at 0), read as two halves; the device does not change it.
    let lo: u32 = transport
        .read_config_space(0)
        .map_err(HostDevError::Driver)?;
    let hi: u32 = transport
        .read_config_space(4)
        .map_err(HostDevError::Driver)?;
    let mut b = HostBlk {
        base: slot.reg.start,
        irq: slot.irq,
        version,
        capacity: u64::from(lo) | (u64::from(hi) << 32),
        read_only: features.contains(HostFeatures::BLK_RO),
        sector0_crc: None,
        flush: features.contains(HostFeatures::BLK_FLUSH),
        transport,
        queue,
    };
    if b.capacity == 0 {
        return Ok(b);
    }
    let timeout = ticks_per_sec.saturating_mul(READ_TIMEOUT_MS) / 1000;
    let deadline = now().saturating_add(timeout);
    match read_sector0(&mut b, || now() >= deadline) {
        Ok(c) => b.sector0_crc = Some(c),
        Err(e @ (HostDevError::Timeout | HostDevError::Misbehaved(_))) => {
            // The device may still write the request's buffers and queue:
            // never free them, never reset it (that could wait forever).
            core::mem::forget(b);
            return Err(e);
        }
        Err(e) => crate::log!(
            "host virtio-blk at {:#x}: sector 0 unreadable: {}",
            slot.reg.start.raw(),
            e
        ),
    }
    Ok(b)
}

/// Sets up an entropy device.
fn init_rng(
    slot: &VirtioMmio,
    version: MmioVersion,
    mut transport: HostTransport,
) -> Result<HostRng, HostDevError> {
    let wanted = HostFeatures::INDIRECT_DESC | HostFeatures::VERSION_1;
    let (_, queue) = init_transport(&mut transport, wanted)?;
    Ok(HostRng {
        base: slot.reg.start,
        irq: slot.irq,
        version,
        transport,
        queue,
        pending: None,
    })
}

/// The request header (`struct virtio_blk_req`'s first 16 bytes) and status
/// byte of one host block request, on the heap (identity-mapped, so the
/// device reaches them) and never moved while the device has them.
#[derive(Debug)]
pub struct HostBlkBufs {
    hdr: [u8; fv_virtio::blk::HEADER_LEN],
    status: [u8; 1],
}

/// One request at a host block device: its own header and status buffers
/// and the data, host-physical (guest RAM of the VM that asked, or the
/// hypervisor's own memory).
#[derive(Debug)]
pub struct HostBlkRequest {
    bufs: Box<HostBlkBufs>,
    data: Vec<HostSegment>,
}

impl HostBlkRequest {
    /// A request of type `ty` (`VIRTIO_BLK_T_*`) at `sector` over `data`
    /// (device-writable segments for a read, device-readable for a write).
    pub fn new(ty: u32, sector: u64, data: Vec<HostSegment>) -> Self {
        let mut hdr = [0u8; fv_virtio::blk::HEADER_LEN];
        let (t, rest) = hdr.split_at_mut(4);
        t.copy_from_slice(&ty.to_le_bytes());
        if let Some(s) = rest.get_mut(4..12) {
            s.copy_from_slice(&sector.to_le_bytes());
        }
        Self {
            bufs: Box::new(HostBlkBufs {
                hdr,
                // Not a status the device gives: a request the device never
                // answered reads as an error.
                status: [0xff],
            }),
            data,
        }
    }

    /// The status the device wrote (`VIRTIO_BLK_S_*`; 0xff if none).
    pub fn status(&self) -> u8 {
        self.bufs.status[0]
    }

    /// The request's buffers as the driver crate takes them: header and
    /// device-readable data in, device-writable data and status out.
    ///
    /// # Safety
    ///
    /// Every data segment must be memory the caller may let the device
    /// read (and, if writable, write) until the request completes, reached
    /// at its physical address (identity mapping), and not accessed through
    /// any other reference meanwhile.
    unsafe fn buffers(&mut self) -> (Vec<&'static [u8]>, Vec<&'static mut [u8]>) {
        let mut ins: Vec<&'static [u8]> = Vec::with_capacity(self.data.len() + 1);
        let mut outs: Vec<&'static mut [u8]> = Vec::with_capacity(self.data.len() + 1);
        let bufs: *mut HostBlkBufs = &mut *self.bufs;
        // SAFETY: the header lives in a Box that outlives the request (the
        // caller keeps the HostBlkRequest until completion, or leaks it);
        // nothing else touches it while the device has it.
        ins.push(unsafe { &*core::ptr::addr_of!((*bufs).hdr) });
        for seg in &self.data {
            let ptr = crate::mem::hva(HostPhysAddr::new(seg.addr)).raw() as *mut u8;
            let len = usize::try_from(seg.len).unwrap_or(0);
            if seg.writable {
                // SAFETY: the caller's contract: the device may write this
                // memory, reached at its physical address.
                outs.push(unsafe { core::slice::from_raw_parts_mut(ptr, len) });
            } else {
                // SAFETY: as above, for reading.
                ins.push(unsafe { core::slice::from_raw_parts(ptr, len) });
            }
        }
        // SAFETY: as for the header.
        outs.push(unsafe { &mut *core::ptr::addr_of_mut!((*bufs).status) });
        (ins, outs)
    }
}

/// A host block request failed before the device had it.
#[derive(Debug)]
pub enum SubmitError {
    /// The queue has no free slot: try again after a completion.
    Full,
    /// The request is malformed (an empty or over-long data segment, too
    /// many pieces): it can never go to the device.
    Invalid(virtio_drivers::Error),
}

impl HostBlk {
    /// Gives `req` to the device and notifies it; returns its token. A
    /// request must have no empty segment (the caller never makes one).
    ///
    /// # Safety
    ///
    /// As for [`HostBlkRequest::buffers`]: the data segments stay the
    /// device's until [`complete`](Self::complete) returns this request
    /// (the caller keeps `req` until then, or leaks it and the memory).
    pub unsafe fn submit(&mut self, req: &mut HostBlkRequest) -> Result<u16, SubmitError> {
        if req
            .data
            .iter()
            .any(|s| s.len == 0 || s.len > u64::from(u32::MAX))
            || req.data.len() + 2 > HOST_BLK_MAX_DESC
        {
            return Err(SubmitError::Invalid(virtio_drivers::Error::InvalidParam));
        }
        // SAFETY: the caller's contract.
        let (ins, mut outs) = unsafe { req.buffers() };
        // SAFETY: the buffers stay valid and untouched until `complete`
        // (the caller's contract).
        match unsafe { self.queue.add(&ins, &mut outs) } {
            Ok(token) => {
                if self.queue.should_notify() {
                    self.transport.notify(0);
                }
                Ok(token)
            }
            Err(virtio_drivers::Error::QueueFull) => Err(SubmitError::Full),
            Err(e) => Err(SubmitError::Invalid(e)),
        }
    }

    /// The token of the next request the device has completed, if any.
    pub fn peek_used(&mut self) -> Option<u16> {
        self.queue.peek_used()
    }

    /// Takes back `req`, which the device completed under `token` (the
    /// token [`peek_used`](Self::peek_used) just returned).
    ///
    /// # Safety
    ///
    /// `req` is the request [`submit`](Self::submit) returned `token` for.
    pub unsafe fn complete(
        &mut self,
        token: u16,
        req: &mut HostBlkRequest,
    ) -> Result<(), virtio_drivers::Error> {
        // SAFETY: the same buffers as at submission (the caller's contract).
        let (ins, mut outs) = unsafe { req.buffers() };
        // SAFETY: `token` names exactly these buffers.
        unsafe { self.queue.pop_used(token, &ins, &mut outs) }.map(|_| ())
    }

    /// Free queue slots.
    pub fn free_slots(&self) -> usize {
        self.queue.available_desc()
    }
}

/// Reads sector 0 through the device and returns its CRC-32. Polls until
/// `expired()`; on [`HostDevError::Timeout`] or [`HostDevError::Misbehaved`]
/// the buffers stay with the device (leaked) and the caller must not drop or
/// reset it.
fn read_sector0(b: &mut HostBlk, expired: impl Fn() -> bool) -> Result<u32, HostDevError> {
    let mut buf: Box<[u8; 512]> = Box::new([0; 512]);
    let seg = HostSegment {
        addr: buf.as_mut_ptr() as u64,
        len: 512,
        writable: true,
    };
    let mut req = HostBlkRequest::new(fv_virtio::blk::VIRTIO_BLK_T_IN, 0, alloc::vec![seg]);
    // SAFETY: `buf` (at its physical address, satp Bare) and `req` are not
    // touched until the request completes, and leaked if it does not.
    let token = match unsafe { b.submit(&mut req) } {
        Ok(t) => t,
        Err(SubmitError::Full) => {
            return Err(HostDevError::Driver(virtio_drivers::Error::QueueFull))
        }
        Err(SubmitError::Invalid(e)) => return Err(HostDevError::Driver(e)),
    };
    loop {
        if b.peek_used().is_some() {
            break;
        }
        if expired() {
            core::mem::forget(buf);
            core::mem::forget(req);
            return Err(HostDevError::Timeout);
        }
        core::hint::spin_loop();
    }
    let _ = b.transport.ack_interrupt();
    // SAFETY: the request `token` was returned for.
    match unsafe { b.complete(token, &mut req) } {
        Ok(()) if req.status() == fv_virtio::blk::VIRTIO_BLK_S_OK => Ok(crc32fast::hash(&buf[..])),
        Ok(()) => Err(HostDevError::Driver(virtio_drivers::Error::IoError)),
        // The chain was not given back (another token, nothing used): the
        // device still holds the buffers.
        Err(e) => {
            core::mem::forget(buf);
            core::mem::forget(req);
            Err(HostDevError::Misbehaved(e))
        }
    }
}

impl HostRng {
    /// Moves what the device has produced into `out` (up to its room) and
    /// keeps one request at the device. Never waits. Returns the bytes added.
    pub fn poll(&mut self, out: &mut alloc::collections::VecDeque<u8>, room: usize) -> usize {
        let mut added = 0;
        if let Some((token, _)) = &self.pending {
            let token = *token;
            if self.queue.peek_used() != Some(token) {
                return 0;
            }
            let Some((_, mut buf)) = self.pending.take() else {
                return 0;
            };
            let mut outs: [&mut [u8]; 1] = [&mut buf[..]];
            // SAFETY: `buf` is the buffer submitted with `token`.
            match unsafe { self.queue.pop_used(token, &[], &mut outs) } {
                Ok(n) => {
                    let n = usize::try_from(n)
                        .unwrap_or(0)
                        .min(HOST_RNG_CHUNK)
                        .min(room);
                    out.extend(buf.iter().take(n));
                    added = n;
                }
                Err(_) => {
                    // Not given back: the device keeps the buffer for good.
                    core::mem::forget(buf);
                    return 0;
                }
            }
        }
        if self.pending.is_none() && room.saturating_sub(added) >= HOST_RNG_CHUNK {
            let mut buf = Box::new([0u8; HOST_RNG_CHUNK]);
            let mut outs: [&mut [u8]; 1] = [&mut buf[..]];
            // SAFETY: `buf` lives in `self.pending` (on the heap, not moved)
            // until the device returns it, and is leaked if it never does.
            if let Ok(token) = unsafe { self.queue.add(&[], &mut outs) } {
                if self.queue.should_notify() {
                    self.transport.notify(0);
                }
                self.pending = Some((token, buf));
            }
        }
        added
    }
}

/// Bytes of entropy kept ready per host entropy device.
const ENTROPY_POOL: usize = 1024;

/// A host entropy device shared by every VM that asked for it, with the
/// bytes it produced and nobody has taken yet. A byte is handed out once,
/// to one VM.
#[derive(Debug)]
pub struct EntropyPool {
    rng: HostRng,
    bytes: alloc::collections::VecDeque<u8>,
}

/// The host entropy devices VMs use (moved here out of [`HOST_DEVICES`] by
/// [`claim_rng`]).
pub static ENTROPY: Mutex<Vec<EntropyPool>> = Mutex::new(Vec::new());

/// Makes the host entropy device at `base` serve VMs (several may share
/// it). Fails if there is none there.
pub fn claim_rng(base: u64) -> Result<(), &'static str> {
    let mut pools = ENTROPY.lock();
    if pools.iter().any(|p| p.rng.base.raw() == base) {
        return Ok(());
    }
    let mut devs = HOST_DEVICES.lock();
    let i = devs
        .rng
        .iter()
        .position(|r| r.base.raw() == base)
        .ok_or("no host virtio-rng at that address")?;
    let rng = devs.rng.remove(i);
    let mut bytes = alloc::collections::VecDeque::new();
    bytes
        .try_reserve_exact(ENTROPY_POOL)
        .map_err(|_| "no heap for the entropy pool")?;
    pools.push(EntropyPool { rng, bytes });
    Ok(())
}

/// Fills the start of `buf` with fresh bytes of the host entropy device at
/// `base`; returns how many (0: none ready now). Never waits.
pub fn take_entropy(base: u64, buf: &mut [u8]) -> usize {
    let mut pools = ENTROPY.lock();
    let Some(p) = pools.iter_mut().find(|p| p.rng.base.raw() == base) else {
        return 0;
    };
    if p.bytes.len() < buf.len() {
        let room = ENTROPY_POOL.saturating_sub(p.bytes.len());
        p.rng.poll(&mut p.bytes, room);
    }
    let n = buf.len().min(p.bytes.len());
    for (dst, src) in buf.iter_mut().zip(p.bytes.drain(..n)) {
        *dst = src;
    }
    n
}

/// Collects what the host entropy devices produced and keeps a request at
/// each (boot hart, every poll). Returns whether any has bytes ready.
pub fn poll_entropy() -> bool {
    let mut pools = ENTROPY.lock();
    let mut ready = false;
    for p in pools.iter_mut() {
        let room = ENTROPY_POOL.saturating_sub(p.bytes.len());
        p.rng.poll(&mut p.bytes, room);
        ready |= !p.bytes.is_empty();
    }
    ready
}

/// Takes the host block device at `base` out of the registry for one VM
/// disk; fails if there is none there (missing, or already taken).
pub fn take_blk(base: u64) -> Result<HostBlk, &'static str> {
    let mut devs = HOST_DEVICES.lock();
    let i = devs
        .blk
        .iter()
        .position(|b| b.base.raw() == base)
        .ok_or("no free host virtio-blk at that address")?;
    Ok(devs.blk.remove(i))
}
