//! The virtio-mmio transport (§4.2), modern interface (Version 2) only.
//!
//! [`MmioTransport`] is the register file of §4.2.2 in front of one
//! [`VirtioDevice`]: feature negotiation, device status, per-queue set-up,
//! notifications, interrupt status and the device-specific configuration
//! space at [`CONFIG`]. It is a plain state machine with no interrupt line of
//! its own: after every access (and after [`MmioTransport::process`]) the
//! owner reads [`MmioTransport::interrupt_level`] and drives the VM's
//! interrupt source (`fv_devices::virtio_mmio::VirtioMmio` does this).
//!
//! # Accesses
//!
//! Control registers (offsets below `0x100`) take 32-bit aligned accesses
//! only (§4.2.2.2); anything else, and any offset with no register, reads 0,
//! ignores writes and is counted in [`TransportStats::bad_access`]. The
//! configuration space takes 8-, 16- and 32-bit naturally aligned accesses
//! inside the device's [`VirtioDevice::config_len`]; 64-bit accesses are
//! refused as for the control registers (the driver reads 64-bit fields as two
//! 32-bit halves, with `ConfigGeneration` around them).
//!
//! # Notifications and the calling context
//!
//! A guest write to `QueueNotify` cannot touch guest memory: register
//! accesses have none. It only sets the queue's bit in a pending mask. The
//! hypervisor calls [`MmioTransport::process`] afterwards with the VM's
//! [`GuestMemory`] — on the same hart, after the trapped access completed and
//! with the VM's device lock still held (or retaken), before resuming the
//! vCPU or from a later scheduling point — and then re-reads
//! [`MmioTransport::interrupt_level`]. `process` handles at most one queue
//! size worth of chains per pending queue per call, so a notification storm
//! or a driver that refills as fast as the device consumes cannot keep the
//! hypervisor in one call: what is left stays pending
//! ([`MmioTransport::has_pending`]) for the next call. Host-side events that
//! give a device new work (console input) use [`MmioTransport::notify`].
//!
//! ```
//! use fv_addr::GuestPhysAddr;
//! use fv_virtio::mmio::{self, MmioTransport};
//! use fv_virtio::rng::{EntropySource, Rng};
//! use fv_vm::{AccessWidth, VecMemory};
//!
//! struct Zeros;
//! impl EntropySource for Zeros {
//!     fn fill(&mut self, buf: &mut [u8]) -> usize {
//!         buf.fill(0);
//!         buf.len()
//!     }
//! }
//!
//! let mut dev = MmioTransport::new(Rng::new(Zeros)).unwrap();
//! let mut ram = VecMemory::new(GuestPhysAddr::new(0x8000_0000), 0x1_0000);
//! // A VcpuExit::MmioRead / MmioWrite at offset `off` of the device's block:
//! assert_eq!(dev.read(mmio::MAGIC_VALUE, AccessWidth::Word), 0x7472_6976);
//! dev.write(mmio::QUEUE_NOTIFY, AccessWidth::Word, 0); // before DRIVER_OK: refused
//! assert_eq!(dev.stats().bad_notify, 1);
//! // After the access, with the VM's memory, then drive the interrupt line:
//! dev.process(&mut ram);
//! assert!(!dev.interrupt_level());
//! ```
//!
//! # Status (§2.1, §3.1.1)
//!
//! * Writing 0 resets the device: status, features, selectors, interrupt
//!   status, every queue, the pending mask and the device model.
//! * Otherwise the driver may only add bits; a write that clears one (other
//!   than by writing 0) is ignored and counted.
//! * `FEATURES_OK` is accepted only if the driver's features are a subset of
//!   the device's and include `VIRTIO_F_VERSION_1`; otherwise the bit stays
//!   clear, which is how the driver learns the features were refused.
//! * `DRIVER_OK` is accepted only after `FEATURES_OK`; it activates the device
//!   with the negotiated features.
//! * `DEVICE_NEEDS_RESET` is set by the device only (a queue that became
//!   unusable), together with a configuration change interrupt when the
//!   driver was running (§2.1.2).

use alloc::vec::Vec;

use fv_addr::GuestPhysAddr;
use fv_vm::{AccessWidth, GuestMemory};

use crate::buffer::Buffer;
use crate::device::{Handled, VirtioDevice};
use crate::feature::{self, bit};
use crate::queue::{Queue, QueueError};
use crate::status;

/// MagicValue: 0x74726976, "virt" in little-endian.
pub const MAGIC_VALUE: u64 = 0x000;
/// Version: 2 for the modern interface.
pub const VERSION: u64 = 0x004;
/// DeviceID: the device type (§5); 0 = no device.
pub const DEVICE_ID: u64 = 0x008;
/// VendorID.
pub const VENDOR_ID: u64 = 0x00c;
/// DeviceFeatures: 32 bits of the device's features, selected by DeviceFeaturesSel.
pub const DEVICE_FEATURES: u64 = 0x010;
/// DeviceFeaturesSel: which 32-bit word DeviceFeatures shows.
pub const DEVICE_FEATURES_SEL: u64 = 0x014;
/// DriverFeatures: 32 bits of the features the driver accepts, selected by DriverFeaturesSel.
pub const DRIVER_FEATURES: u64 = 0x020;
/// DriverFeaturesSel: which 32-bit word DriverFeatures writes.
pub const DRIVER_FEATURES_SEL: u64 = 0x024;
/// QueueSel: the queue the Queue* registers refer to.
pub const QUEUE_SEL: u64 = 0x030;
/// QueueNumMax: largest size of the selected queue; 0 if it does not exist.
pub const QUEUE_NUM_MAX: u64 = 0x034;
/// QueueNum: size of the selected queue.
pub const QUEUE_NUM: u64 = 0x038;
/// QueueReady: the selected queue is set up and usable.
pub const QUEUE_READY: u64 = 0x044;
/// QueueNotify: the driver has new buffers in the queue whose index is written.
pub const QUEUE_NOTIFY: u64 = 0x050;
/// InterruptStatus: pending interrupt causes.
pub const INTERRUPT_STATUS: u64 = 0x060;
/// InterruptACK: the driver clears the causes it has handled.
pub const INTERRUPT_ACK: u64 = 0x064;
/// Status: device status (§2.1).
pub const STATUS: u64 = 0x070;
/// QueueDescLow: descriptor table address, low 32 bits.
pub const QUEUE_DESC_LOW: u64 = 0x080;
/// QueueDescHigh: descriptor table address, high 32 bits.
pub const QUEUE_DESC_HIGH: u64 = 0x084;
/// QueueDriverLow: available ring address, low 32 bits.
pub const QUEUE_DRIVER_LOW: u64 = 0x090;
/// QueueDriverHigh: available ring address, high 32 bits.
pub const QUEUE_DRIVER_HIGH: u64 = 0x094;
/// QueueDeviceLow: used ring address, low 32 bits.
pub const QUEUE_DEVICE_LOW: u64 = 0x0a0;
/// QueueDeviceHigh: used ring address, high 32 bits.
pub const QUEUE_DEVICE_HIGH: u64 = 0x0a4;
/// SHMSel: selects a shared memory region.
pub const SHM_SEL: u64 = 0x0ac;
/// SHMLenLow: selected region length, low 32 bits (all ones: no such region).
pub const SHM_LEN_LOW: u64 = 0x0b0;
/// SHMLenHigh: selected region length, high 32 bits.
pub const SHM_LEN_HIGH: u64 = 0x0b4;
/// SHMBaseLow: selected region address, low 32 bits (all ones: no such region).
pub const SHM_BASE_LOW: u64 = 0x0b8;
/// SHMBaseHigh: selected region address, high 32 bits.
pub const SHM_BASE_HIGH: u64 = 0x0bc;
/// QueueReset: reset the selected queue (only with `VIRTIO_F_RING_RESET`, not offered).
pub const QUEUE_RESET: u64 = 0x0c0;
/// ConfigGeneration: changes whenever the configuration space may have changed.
pub const CONFIG_GENERATION: u64 = 0x0fc;
/// Start of the device-specific configuration space.
pub const CONFIG: u64 = 0x100;

/// The value of MagicValue.
pub const MAGIC: u32 = 0x7472_6976;
/// The value of Version for the modern interface.
pub const VERSION_MODERN: u32 = 2;
/// Our VendorID: "FeRV" (spec: any value; PCI-assigned IDs are not needed for MMIO).
pub const FERROVISOR_VENDOR_ID: u32 = u32::from_le_bytes(*b"FeRV");

/// InterruptStatus bit: Used Buffer Notification.
pub const VIRTIO_MMIO_INT_VRING: u32 = 1;
/// InterruptStatus bit: Configuration Change Notification.
pub const VIRTIO_MMIO_INT_CONFIG: u32 = 2;

/// Size of the register block the device tree should declare (`reg`), as
/// QEMU's `virt` machine does: the control registers plus 0x100 bytes of
/// configuration space (more than any device here has).
pub const MMIO_SIZE: u64 = 0x200;

/// Most queues a device may have (one pending bit each).
pub const MAX_QUEUES: u16 = 64;

/// Reserved feature bits the transport implements and always offers.
pub const TRANSPORT_FEATURES: u64 = bit(feature::VIRTIO_F_VERSION_1)
    | bit(feature::VIRTIO_F_INDIRECT_DESC)
    | bit(feature::VIRTIO_F_EVENT_IDX);

/// The reserved range (bits 24..=49), which devices may not claim.
const RESERVED_MASK: u64 =
    ((1u64 << (feature::RESERVED_LAST + 1)) - 1) & !((1u64 << feature::RESERVED_FIRST) - 1);

/// Building a transport failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportError {
    /// The device has no queues or more than [`MAX_QUEUES`].
    BadQueueCount,
}

/// Everything the transport refused or that went wrong, counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// Accesses with a wrong width or alignment, or at an offset with no register.
    pub bad_access: u64,
    /// Register writes refused in the current state (status bits cleared,
    /// DRIVER_OK before FEATURES_OK, features or queue set-up at the wrong
    /// time, e.g. QueueReady before FEATURES_OK).
    pub bad_write: u64,
    /// FEATURES_OK refused: driver features not a subset of the device's, or no VERSION_1.
    pub features_refused: u64,
    /// QueueReady refused: bad size or ring layout.
    pub queue_setup_refused: u64,
    /// Notifications for a queue that does not exist or is not ready, or before DRIVER_OK.
    pub bad_notify: u64,
    /// Chains that could not be walked (loops, bad indices, indirect misuse, addresses outside RAM).
    pub chain_errors: u64,
    /// Chains the device model refused (malformed request, no status byte).
    pub device_errors: u64,
    /// Queues that became unusable (device marked DEVICE_NEEDS_RESET).
    pub queue_errors: u64,
    /// Chains completed (used elements added).
    pub chains: u64,
    /// Asynchronous completions dropped: the device was reset (or broken)
    /// while the request was in flight.
    pub stale_completions: u64,
}

/// A virtio-mmio device: the transport registers in front of device `D`.
#[derive(Debug)]
pub struct MmioTransport<D> {
    device: D,
    queues: Vec<Queue>,
    status: u32,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    /// The driver set a feature bit above 63 (never offered).
    driver_features_beyond: bool,
    queue_sel: u32,
    interrupt_status: u32,
    config_generation: u32,
    pending: u64,
    /// Bumped on every reset: a chain taken ([`Handled::InFlight`]) under an
    /// older epoch is never completed into the new rings.
    epoch: u64,
    stats: TransportStats,
}

impl<D: VirtioDevice> MmioTransport<D> {
    /// A transport in its reset state in front of `device`.
    pub fn new(device: D) -> Result<Self, TransportError> {
        let n = device.num_queues();
        if n == 0 || n > MAX_QUEUES {
            return Err(TransportError::BadQueueCount);
        }
        let queues = (0..n)
            .map(|q| Queue::new(device.queue_max_size(q)))
            .collect();
        Ok(Self {
            device,
            queues,
            status: 0,
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            driver_features_beyond: false,
            queue_sel: 0,
            interrupt_status: 0,
            config_generation: 0,
            pending: 0,
            epoch: 0,
            stats: TransportStats::default(),
        })
    }

    /// The device model.
    pub fn device(&self) -> &D {
        &self.device
    }

    /// The device model, mutably (host-side input, e.g. console bytes; follow
    /// with [`notify`](Self::notify)).
    pub fn device_mut(&mut self) -> &mut D {
        &mut self.device
    }

    /// The counters.
    pub fn stats(&self) -> &TransportStats {
        &self.stats
    }

    /// The device status register.
    pub fn status(&self) -> u32 {
        self.status
    }

    /// The queues, by index.
    pub fn queues(&self) -> &[Queue] {
        &self.queues
    }

    /// The features the device offers (device bits plus [`TRANSPORT_FEATURES`]).
    pub fn device_features(&self) -> u64 {
        (self.device.features() & !RESERVED_MASK) | TRANSPORT_FEATURES
    }

    /// The features the driver accepted (valid once `FEATURES_OK` is set).
    pub fn driver_features(&self) -> u64 {
        self.driver_features
    }

    /// Whether the interrupt line should be asserted (InterruptStatus != 0).
    pub fn interrupt_level(&self) -> bool {
        self.interrupt_status != 0
    }

    /// Whether some queue has been notified and not fully processed.
    pub fn has_pending(&self) -> bool {
        self.pending != 0
    }

    /// Device reset (Status written 0, or VM reset): everything back to the
    /// state [`new`](Self::new) left it in, except the counters and
    /// ConfigGeneration (which only ever moves on, so a driver comparing it
    /// across a reset never mistakes two configurations for one).
    pub fn reset(&mut self) {
        self.status = 0;
        self.device_features_sel = 0;
        self.driver_features_sel = 0;
        self.driver_features = 0;
        self.driver_features_beyond = false;
        self.queue_sel = 0;
        self.interrupt_status = 0;
        self.pending = 0;
        self.epoch = self.epoch.wrapping_add(1);
        for q in &mut self.queues {
            q.reset();
        }
        self.device.reset();
    }

    /// The current epoch: moves on every reset. A chain the device took
    /// ([`Handled::InFlight`]) is completed with the epoch it was taken under.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Returns chain `head` of queue `queue`, taken earlier as
    /// [`Handled::InFlight`] under `epoch`, to the driver with `len` bytes
    /// written, and raises the used-buffer interrupt if the driver wants one.
    /// A chain of an older epoch (the device was reset since) is dropped:
    /// its rings are gone. Returns whether it was added to the used ring.
    pub fn complete(
        &mut self,
        queue: u16,
        head: u16,
        len: u32,
        epoch: u64,
        mem: &mut dyn GuestMemory,
    ) -> bool {
        if epoch != self.epoch
            || self.status & status::DRIVER_OK == 0
            || self.status & status::DEVICE_NEEDS_RESET != 0
        {
            self.stats.stale_completions += 1;
            return false;
        }
        let Some(q) = self.queues.get_mut(usize::from(queue)) else {
            return false;
        };
        let done = q
            .add_used(mem, head, len)
            .and_then(|()| q.needs_interrupt(mem));
        match done {
            Ok(irq) => {
                self.stats.chains += 1;
                if irq {
                    self.interrupt_status |= VIRTIO_MMIO_INT_VRING;
                }
                true
            }
            Err(e) => {
                self.queue_broken(e);
                false
            }
        }
    }

    /// Tells the guest the configuration space changed (ConfigGeneration
    /// moves; a configuration change interrupt once the driver is running).
    pub fn config_changed(&mut self) {
        self.config_generation = self.config_generation.wrapping_add(1);
        if self.status & status::DRIVER_OK != 0 {
            self.interrupt_status |= VIRTIO_MMIO_INT_CONFIG;
        }
    }

    /// A host-side notification of queue `queue` (new input for the device):
    /// processed by the next [`process`](Self::process). Ignored for a queue
    /// that does not exist.
    pub fn notify(&mut self, queue: u16) {
        if queue < MAX_QUEUES && usize::from(queue) < self.queues.len() {
            self.pending |= 1 << queue;
        }
    }

    fn selected(&self) -> Option<&Queue> {
        self.queues.get(usize::try_from(self.queue_sel).ok()?)
    }

    fn selected_mut(&mut self) -> Option<&mut Queue> {
        self.queues.get_mut(usize::try_from(self.queue_sel).ok()?)
    }

    /// A guest load of `width` bytes at `offset`.
    pub fn read(&mut self, offset: u64, width: AccessWidth) -> u64 {
        if offset >= CONFIG {
            return self.read_config(offset - CONFIG, width);
        }
        if width != AccessWidth::Word || !offset.is_multiple_of(4) {
            self.stats.bad_access += 1;
            return 0;
        }
        let v: u32 = match offset {
            MAGIC_VALUE => MAGIC,
            VERSION => VERSION_MODERN,
            DEVICE_ID => self.device.device_id(),
            VENDOR_ID => FERROVISOR_VENDOR_ID,
            DEVICE_FEATURES => match self.device_features_sel {
                0 => self.device_features() as u32,
                1 => (self.device_features() >> 32) as u32,
                _ => 0,
            },
            QUEUE_NUM_MAX => self.selected().map_or(0, |q| u32::from(q.max_size())),
            QUEUE_READY => self.selected().map_or(0, |q| u32::from(q.ready())),
            INTERRUPT_STATUS => self.interrupt_status,
            STATUS => self.status,
            // No shared memory regions: length -1 and base
            // 0xffff_ffff_ffff_ffff, as for a non-existent region (§4.2.2).
            SHM_LEN_LOW | SHM_LEN_HIGH | SHM_BASE_LOW | SHM_BASE_HIGH => u32::MAX,
            CONFIG_GENERATION => self.config_generation,
            // Write-only registers read 0.
            DEVICE_FEATURES_SEL | DRIVER_FEATURES | DRIVER_FEATURES_SEL | QUEUE_SEL | QUEUE_NUM
            | QUEUE_NOTIFY | INTERRUPT_ACK | QUEUE_DESC_LOW | QUEUE_DESC_HIGH
            | QUEUE_DRIVER_LOW | QUEUE_DRIVER_HIGH | QUEUE_DEVICE_LOW | QUEUE_DEVICE_HIGH
            | SHM_SEL => 0,
            _ => {
                self.stats.bad_access += 1;
                0
            }
        };
        u64::from(v)
    }

    /// A guest store of the low `width` bytes of `value` at `offset`.
    pub fn write(&mut self, offset: u64, width: AccessWidth, value: u64) {
        if offset >= CONFIG {
            return self.write_config(offset - CONFIG, width, value);
        }
        if width != AccessWidth::Word || !offset.is_multiple_of(4) {
            self.stats.bad_access += 1;
            return;
        }
        let v = value as u32;
        match offset {
            DEVICE_FEATURES_SEL => self.device_features_sel = v,
            DRIVER_FEATURES_SEL => self.driver_features_sel = v,
            DRIVER_FEATURES => self.write_driver_features(v),
            QUEUE_SEL => self.queue_sel = v,
            // A value too large for any queue becomes 0, so QueueReady is refused.
            QUEUE_NUM => match self.selected_mut() {
                Some(q) if !q.ready() => {
                    q.set_size(u16::try_from(v).unwrap_or(0));
                }
                _ => self.stats.bad_write += 1,
            },
            QUEUE_READY => self.write_queue_ready(v),
            QUEUE_NOTIFY => self.write_queue_notify(v),
            INTERRUPT_ACK => self.interrupt_status &= !v,
            STATUS => self.write_status(v),
            QUEUE_DESC_LOW | QUEUE_DESC_HIGH | QUEUE_DRIVER_LOW | QUEUE_DRIVER_HIGH
            | QUEUE_DEVICE_LOW | QUEUE_DEVICE_HIGH => self.write_queue_addr(offset, v),
            SHM_SEL => {}
            _ => self.stats.bad_access += 1,
        }
    }

    fn write_driver_features(&mut self, v: u32) {
        let s = self.status;
        if s & status::DRIVER == 0 || s & status::FEATURES_OK != 0 {
            self.stats.bad_write += 1;
            return;
        }
        let v = u64::from(v);
        match self.driver_features_sel {
            0 => self.driver_features = (self.driver_features & !0xffff_ffff) | v,
            1 => self.driver_features = (self.driver_features & 0xffff_ffff) | (v << 32),
            // Words beyond 64 bits: the device offers nothing there, so any
            // bit the driver sets makes FEATURES_OK fail.
            _ => self.driver_features_beyond |= v != 0,
        }
    }

    fn write_queue_addr(&mut self, offset: u64, v: u32) {
        let Some(q) = self.selected_mut() else {
            self.stats.bad_write += 1;
            return;
        };
        if q.ready() {
            self.stats.bad_write += 1;
            return;
        }
        let (mut d, mut a, mut u) = q.addresses();
        let slot = match offset {
            QUEUE_DESC_LOW | QUEUE_DESC_HIGH => &mut d,
            QUEUE_DRIVER_LOW | QUEUE_DRIVER_HIGH => &mut a,
            _ => &mut u,
        };
        let raw = slot.raw();
        let raw = if offset.is_multiple_of(8) {
            (raw & !0xffff_ffff) | u64::from(v)
        } else {
            (raw & 0xffff_ffff) | (u64::from(v) << 32)
        };
        *slot = GuestPhysAddr::new(raw);
        q.set_addresses(d, a, u);
    }

    fn write_queue_ready(&mut self, v: u32) {
        let features = self.driver_features;
        // Queues are set up after FEATURES_OK (§3.1.1 step 7), so the ring
        // features they honour are final.
        let negotiated = self.status & status::FEATURES_OK != 0;
        let Some(q) = self.selected_mut().filter(|_| negotiated || v == 0) else {
            self.stats.bad_write += 1;
            return;
        };
        if v == 0 {
            q.set_not_ready();
            return;
        }
        if q.ready() {
            return;
        }
        q.set_features(
            features & bit(feature::VIRTIO_F_EVENT_IDX) != 0,
            features & bit(feature::VIRTIO_F_INDIRECT_DESC) != 0,
        );
        if q.set_ready().is_err() {
            self.stats.queue_setup_refused += 1;
        }
    }

    fn write_queue_notify(&mut self, v: u32) {
        let ok = self.status & status::DRIVER_OK != 0
            && v < u32::from(MAX_QUEUES)
            && self.queues.get(v as usize).is_some_and(Queue::ready);
        if ok {
            self.pending |= 1 << v;
        } else {
            self.stats.bad_notify += 1;
        }
    }

    fn write_status(&mut self, v: u32) {
        if v == 0 {
            self.reset();
            return;
        }
        // The driver cannot set DEVICE_NEEDS_RESET; it keeps what the device set.
        let mut new =
            (v & 0xff & !status::DEVICE_NEEDS_RESET) | (self.status & status::DEVICE_NEEDS_RESET);
        let old = self.status;
        if old & !new != 0 {
            self.stats.bad_write += 1;
            return;
        }
        let added = new & !old;
        if added & status::FEATURES_OK != 0 {
            let offered = self.device_features();
            let ok = self.driver_features & !offered == 0
                && !self.driver_features_beyond
                && self.driver_features & bit(feature::VIRTIO_F_VERSION_1) != 0
                && new & status::DRIVER != 0;
            if !ok {
                self.stats.features_refused += 1;
                new &= !status::FEATURES_OK;
            }
        }
        if added & status::DRIVER_OK != 0 {
            if new & status::FEATURES_OK == 0 {
                self.stats.bad_write += 1;
                new &= !status::DRIVER_OK;
            } else {
                self.device.activate(self.driver_features);
            }
        }
        self.status = new;
    }

    fn config_access(&self, offset: u64, width: AccessWidth) -> Option<u32> {
        let bytes = width.bytes();
        if bytes > 4 || !offset.is_multiple_of(bytes) {
            return None;
        }
        let end = offset.checked_add(bytes)?;
        if end > u64::from(self.device.config_len()) {
            return None;
        }
        u32::try_from(offset).ok()
    }

    fn read_config(&mut self, offset: u64, width: AccessWidth) -> u64 {
        let Some(off) = self.config_access(offset, width) else {
            self.stats.bad_access += 1;
            return 0;
        };
        let mut b = [0u8; 4];
        let n = width.bytes() as usize;
        if let Some(dst) = b.get_mut(..n) {
            self.device.read_config(off, dst);
        }
        u64::from(u32::from_le_bytes(b))
    }

    fn write_config(&mut self, offset: u64, width: AccessWidth, value: u64) {
        let Some(off) = self.config_access(offset, width) else {
            self.stats.bad_access += 1;
            return;
        };
        let b = (value as u32).to_le_bytes();
        if let Some(src) = b.get(..width.bytes() as usize) {
            self.device.write_config(off, src);
        }
    }

    fn queue_broken(&mut self, _e: QueueError) {
        self.stats.queue_errors += 1;
        self.pending = 0;
        if self.status & status::DEVICE_NEEDS_RESET == 0 {
            self.status |= status::DEVICE_NEEDS_RESET;
            if self.status & status::DRIVER_OK != 0 {
                self.interrupt_status |= VIRTIO_MMIO_INT_CONFIG;
            }
        }
    }

    /// Handles the queues notified since the last call (see the module docs
    /// for when to call it). Completed chains go to the used rings; the
    /// used-buffer interrupt is raised if a queue's driver asked for one.
    /// Does nothing until `DRIVER_OK`, or once `DEVICE_NEEDS_RESET` is set.
    pub fn process(&mut self, mem: &mut dyn GuestMemory) {
        let pending = core::mem::take(&mut self.pending);
        if self.status & status::DRIVER_OK == 0 || self.status & status::DEVICE_NEEDS_RESET != 0 {
            return;
        }
        for qi in 0..self.queues.len().min(usize::from(MAX_QUEUES)) {
            if pending & (1 << qi) == 0 {
                continue;
            }
            if let Err(e) = self.process_queue(qi, mem) {
                self.queue_broken(e);
                return;
            }
        }
    }

    fn process_queue(&mut self, qi: usize, mem: &mut dyn GuestMemory) -> Result<(), QueueError> {
        let Some(q) = self.queues.get_mut(qi) else {
            return Ok(());
        };
        if !q.ready() {
            return Ok(());
        }
        let qidx = qi as u16;
        let budget = q.size();
        let mut used = false;
        let mut more = true;
        for _ in 0..budget {
            let Some(q) = self.queues.get_mut(qi) else {
                return Ok(());
            };
            let Some(chain) = q.pop(mem)? else {
                more = false;
                break;
            };
            let head = chain.head();
            let len = match Buffer::walk(chain, mem) {
                Err(_) => {
                    self.stats.chain_errors += 1;
                    0
                }
                Ok(buf) => match self.device.handle(qidx, &buf, mem) {
                    Ok(Handled::Used(len)) => len.min(buf.writable_len()),
                    Ok(Handled::Later) => {
                        if let Some(q) = self.queues.get_mut(qi) {
                            q.undo_pop();
                        }
                        more = false;
                        break;
                    }
                    Ok(Handled::InFlight) => continue,
                    Err(_) => {
                        self.stats.device_errors += 1;
                        0
                    }
                },
            };
            if let Some(q) = self.queues.get_mut(qi) {
                q.add_used(mem, head, len)?;
            }
            self.stats.chains += 1;
            used = true;
        }
        if more {
            self.pending |= 1 << qi;
        }
        if used {
            if let Some(q) = self.queues.get_mut(qi) {
                if q.needs_interrupt(mem)? {
                    self.interrupt_status |= VIRTIO_MMIO_INT_VRING;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_offsets_match_spec() {
        let regs = [
            (MAGIC_VALUE, 0x000),
            (VERSION, 0x004),
            (DEVICE_ID, 0x008),
            (VENDOR_ID, 0x00c),
            (DEVICE_FEATURES, 0x010),
            (DEVICE_FEATURES_SEL, 0x014),
            (DRIVER_FEATURES, 0x020),
            (DRIVER_FEATURES_SEL, 0x024),
            (QUEUE_SEL, 0x030),
            (QUEUE_NUM_MAX, 0x034),
            (QUEUE_NUM, 0x038),
            (QUEUE_READY, 0x044),
            (QUEUE_NOTIFY, 0x050),
            (INTERRUPT_STATUS, 0x060),
            (INTERRUPT_ACK, 0x064),
            (STATUS, 0x070),
            (QUEUE_DESC_LOW, 0x080),
            (QUEUE_DESC_HIGH, 0x084),
            (QUEUE_DRIVER_LOW, 0x090),
            (QUEUE_DRIVER_HIGH, 0x094),
            (QUEUE_DEVICE_LOW, 0x0a0),
            (QUEUE_DEVICE_HIGH, 0x0a4),
            (SHM_SEL, 0x0ac),
            (SHM_LEN_LOW, 0x0b0),
            (SHM_LEN_HIGH, 0x0b4),
            (SHM_BASE_LOW, 0x0b8),
            (SHM_BASE_HIGH, 0x0bc),
            (QUEUE_RESET, 0x0c0),
            (CONFIG_GENERATION, 0x0fc),
            (CONFIG, 0x100),
        ];
        for (got, want) in regs {
            assert_eq!(got, want);
        }
    }

    #[test]
    fn values_match_spec() {
        assert_eq!(MAGIC, u32::from_le_bytes(*b"virt"));
        assert_eq!(MAGIC, 0x7472_6976);
        assert_eq!(VERSION_MODERN, 2);
        assert_eq!(VIRTIO_MMIO_INT_VRING, 1);
        assert_eq!(VIRTIO_MMIO_INT_CONFIG, 2);
        assert_eq!(RESERVED_MASK, 0x0003_ffff_ff00_0000);
        assert_eq!(TRANSPORT_FEATURES, (1 << 32) | (1 << 28) | (1 << 29));
    }
}
