//! The machine's own VirtIO devices, driven by the hypervisor (issue #9,
//! point 2: backends are real devices of the machine; no guest ever touches one).
//!
//! At boot [`probe`] looks at every virtio-mmio transport the host device tree
//! lists, skips empty slots (device ID 0), initialises each block device with
//! `virtio_drivers::device::blk::VirtIOBlk` and each entropy device with
//! `VirtIORng`, each network device with `VirtIONetRaw` (a switch's uplink,
//! see `crate::net`), logs one line per device and keeps the working ones in
//! [`HOST_DEVICES`] for the VMs' virtual devices to be served from. The first
//! console device becomes the control channel ([`crate::ctrl`]). A device
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
//! reset (when a driver is dropped) wait for the device without a bound. The
//! boot-time read below uses the non-blocking request API with its own
//! deadline instead, and a device that misses it is leaked rather than dropped
//! (dropping would wait for it and free DMA memory it may still write).

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;
use core::ptr::NonNull;

use fv_addr::{HostPhysAddr, Range, PAGE_SIZE};
use fv_platform::VirtioMmio;
use spin::Mutex;
use virtio_drivers::device::blk::{BlkReq, BlkResp, VirtIOBlk, SECTOR_SIZE};
use virtio_drivers::device::net::VirtIONetRaw;
use virtio_drivers::device::rng::VirtIORng;
use virtio_drivers::transport::mmio::{MmioError, MmioTransport, MmioVersion, VirtIOHeader};
use virtio_drivers::transport::{DeviceType, DeviceTypeError, Transport};
use virtio_drivers::{BufferDirection, Hal, PhysAddr};

use crate::mem;

/// The MMIO transport of a host device: its register block lives as long as the
/// machine.
pub type HostTransport = MmioTransport<'static>;

/// A driven host block device.
pub type HostBlkDriver = VirtIOBlk<HostHal, HostTransport>;

/// A driven host entropy device.
pub type HostRngDriver = VirtIORng<HostHal, HostTransport>;

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
    /// The driver (interrupts off: requests are polled).
    #[expect(
        dead_code,
        reason = "VM disks will be served from it (issue #9); only the boot-time read uses it yet"
    )]
    pub driver: HostBlkDriver,
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
    /// The driver (interrupts off).
    #[expect(
        dead_code,
        reason = "VMs' virtio-rng will be served from it (issue #9); nothing reads it yet"
    )]
    pub driver: HostRngDriver,
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
            DeviceType::EntropySource => match HostRngDriver::new(transport) {
                Ok(mut driver) => {
                    driver.disable_interrupts();
                    crate::log!("host virtio-rng at {:#x} ({})", base, version_str(version));
                    found.rng.push(HostRng {
                        base: slot.reg.start,
                        irq: slot.irq,
                        version,
                        driver,
                    });
                }
                Err(e) => crate::log!("host virtio-rng at {:#x}: not used: driver: {}", base, e),
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

/// Sets up a block device and reads its sector 0 (with a deadline).
fn init_blk(
    slot: &VirtioMmio,
    version: MmioVersion,
    transport: HostTransport,
    now: fn() -> u64,
    ticks_per_sec: u64,
) -> Result<HostBlk, HostDevError> {
    let mut driver = HostBlkDriver::new(transport).map_err(HostDevError::Driver)?;
    driver.disable_interrupts();
    let capacity = driver.capacity();
    let read_only = driver.readonly();
    let sector0_crc = if capacity == 0 {
        None
    } else {
        let timeout = ticks_per_sec.saturating_mul(READ_TIMEOUT_MS) / 1000;
        let deadline = now().saturating_add(timeout);
        match read_sector0(&mut driver, || now() >= deadline) {
            Ok(c) => Some(c),
            Err(e @ (HostDevError::Timeout | HostDevError::Misbehaved(_))) => {
                // The device may still write the request's buffers and queue:
                // never free them, never reset it (that could wait forever).
                core::mem::forget(driver);
                return Err(e);
            }
            Err(e) => {
                crate::log!(
                    "host virtio-blk at {:#x}: sector 0 unreadable: {}",
                    slot.reg.start.raw(),
                    e
                );
                None
            }
        }
    };
    Ok(HostBlk {
        base: slot.reg.start,
        irq: slot.irq,
        version,
        capacity,
        read_only,
        sector0_crc,
        driver,
    })
}

/// The buffers of one read request: on the heap (identity-mapped, so the
/// device can reach them), and leaked if the device never gives them back.
struct ReadScratch {
    req: BlkReq,
    resp: BlkResp,
    buf: [u8; SECTOR_SIZE],
}

/// Reads sector 0 through the driver and returns its CRC-32. Polls until
/// `expired()`; on [`HostDevError::Timeout`] or [`HostDevError::Misbehaved`]
/// the buffers stay with the device (leaked) and the caller must not drop or
/// reset the driver.
fn read_sector0(
    driver: &mut HostBlkDriver,
    expired: impl Fn() -> bool,
) -> Result<u32, HostDevError> {
    let mut s = Box::new(ReadScratch {
        req: BlkReq::default(),
        resp: BlkResp::default(),
        buf: [0; SECTOR_SIZE],
    });
    let ReadScratch { req, resp, buf } = &mut *s;
    // SAFETY: `req`, `buf` and `resp` live in `s`, which is not touched until
    // the request completes (`complete_read_blocks` succeeds) and is leaked
    // if it does not.
    let token =
        unsafe { driver.read_blocks_nb(0, req, buf, resp) }.map_err(HostDevError::Driver)?;
    loop {
        if driver.peek_used().is_some() {
            break;
        }
        if expired() {
            core::mem::forget(s);
            return Err(HostDevError::Timeout);
        }
        core::hint::spin_loop();
    }
    // SAFETY: the same buffers as passed to `read_blocks_nb` with `token`.
    let done = unsafe { driver.complete_read_blocks(token, req, buf, resp) };
    let _ = driver.ack_interrupt();
    match done {
        Ok(()) => Ok(crc32fast::hash(buf)),
        // The chain was not given back (another token, nothing used): the
        // device still holds the buffers.
        Err(e @ (virtio_drivers::Error::WrongToken | virtio_drivers::Error::NotReady)) => {
            core::mem::forget(s);
            Err(HostDevError::Misbehaved(e))
        }
        // The device answered with an error status: the buffers are back.
        Err(e) => Err(HostDevError::Driver(e)),
    }
}
