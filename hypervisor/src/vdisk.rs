//! A VM's virtio-blk and virtio-rng devices, served from the machine's own
//! devices (issue #9, points 2, 3 and 6).
//!
//! Each VM disk is an [`AsyncBlk`] behind a virtio-mmio transport in the
//! guest slot its device record names, with one host virtio-blk of its own
//! (taken out of [`hostdev::HOST_DEVICES`]). Requests the model has checked
//! go to the host device with their data where the guest put it: the
//! segments are translated through the VM's own RAM chunks
//! ([`fv_virtio::dma::host_segments`]; nothing outside the VM's RAM can be
//! named) and split where the chunks are not contiguous. Completions are
//! polled: after every device access of the VM ([`service`] from
//! `sched::device_side_effects`) and every millisecond from the boot hart
//! while the VM has requests at the host device ([`crate::vm::Vm::io_pending`]).
//!
//! Ownership of guest pages: a request's pages are the VM's RAM. They stay
//! the VM's while the host device has them because every path that frees or
//! reloads the VM's RAM first waits for the host device to hand every
//! request back ([`drain`], bounded; on a timeout the RAM is leaked rather
//! than reused). A device reset by the guest only starts a new epoch: the
//! old requests complete into nothing.
//!
//! VM virtio-rng devices take bytes from the shared pool of the host
//! entropy device their record names ([`hostdev::take_entropy`]): each byte
//! goes to one request of one VM, at most `fv_virtio::rng::MAX_REQUEST`
//! per request; a VM that finds the pool empty waits (its chain stays in the
//! ring) and is served again when the pool refills.

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use fv_addr::{GuestPhysAddr, Range};
use fv_bootpkg::{DeviceKind, VmSpec};
use fv_devices::virtio_mmio::VirtioMmio;
use fv_devices::{DeviceId, VmDevices};
use fv_virtio::blk::{
    AsyncBlk, BlkOp, BlkRequest, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP,
    VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT,
};
use fv_virtio::dma::host_segments;
use fv_virtio::rng::{EntropySource, Rng};
use fv_vm::GuestMemoryError;
use fv_vm_memory::VmMemory;

use crate::hostdev::{
    self, HostBlk, HostBlkRequest, SubmitError, HOST_BLK_MAX_DESC, HOST_BLK_QUEUE,
};
use crate::mem::GlobalFrames;
use crate::vm::{CreateError, GStageMemory, Vm, VmInner, CHUNK};

/// A VM disk as it sits on the bus.
pub type BlkDevice = VirtioMmio<AsyncBlk>;

/// A VM entropy device as it sits on the bus.
pub type RngDevice = VirtioMmio<Rng<HostEntropy>>;

/// Rounds of process / submit / complete per [`service`] call and disk.
const ROUNDS: usize = 4;

/// How long a VM's RAM may wait for its disks' requests before it is
/// freed or reloaded, in milliseconds (QEMU answers in microseconds to
/// milliseconds; the image file may be slow on a loaded host).
const DRAIN_TIMEOUT_MS: u64 = 5000;

/// Where a VM's virtio-rng gets its bytes: the shared pool of one host
/// entropy device.
#[derive(Debug)]
pub struct HostEntropy {
    base: u64,
}

impl EntropySource for HostEntropy {
    fn fill(&mut self, buf: &mut [u8]) -> usize {
        hostdev::take_entropy(self.base, buf)
    }
}

/// Counters of one VM disk beyond the transport's and the model's.
#[derive(Clone, Copy, Debug, Default)]
pub struct DiskStats {
    /// Requests given to the host device.
    pub submitted: u64,
    /// Requests the host device completed.
    pub completed: u64,
    /// Requests whose data was not all this VM's RAM, or needed more host
    /// descriptors than a request may have: answered `IOERR`, never submitted.
    pub dma_refused: u64,
    /// Requests the host device failed (an error status, or it refused them).
    pub host_errors: u64,
}

/// A request at the host device: the guest's request and the host's.
type InFlight = (BlkRequest, HostBlkRequest);

/// One VM disk.
pub struct VmDisk {
    /// The virtio-blk on the VM's bus.
    pub id: DeviceId,
    /// Its guest slot.
    pub slot: u8,
    host: HostBlk,
    /// Requests taken from the device, not yet at the host device.
    waiting: VecDeque<BlkRequest>,
    /// Requests at the host device, by token.
    inflight: Vec<Option<InFlight>>,
    /// How many of `inflight` are `Some`.
    at_host: usize,
    /// The host device completed something it was not given: it is left
    /// alone from then on (requests fail; its RAM is never reused).
    broken: bool,
    /// Counters.
    pub stats: DiskStats,
}

impl core::fmt::Debug for VmDisk {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("VmDisk")
            .field("slot", &self.slot)
            .field("host", &self.host)
            .field("at_host", &self.at_host)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl VmDisk {
    /// The host device's register block.
    pub fn host_base(&self) -> u64 {
        self.host.base.raw()
    }
}

/// One VM entropy device.
#[derive(Debug)]
pub struct VmRng {
    /// The virtio-rng on the VM's bus.
    pub id: DeviceId,
    /// Its guest slot.
    pub slot: u8,
    /// Its last `process` left chains in the ring for want of bytes.
    starved: bool,
}

/// The ID string a VM disk answers `GET_ID` with: `fv-vd<slot>`.
fn disk_id(slot: u8) -> [u8; fv_virtio::blk::ID_LEN] {
    let mut id = [0u8; fv_virtio::blk::ID_LEN];
    let name = [b'f', b'v', b'-', b'v', b'd', b'0' + slot % 10];
    if let Some(dst) = id.get_mut(..name.len()) {
        dst.copy_from_slice(&name);
    }
    id
}

/// Puts the VM's devices beyond the console on its bus, as its records ask:
/// each disk with the host block device at its `host_base` (taken from the
/// registry: no one else uses it), each entropy device fed from the host
/// entropy device at its `host_base`. Any device that cannot be made fails
/// the whole VM (host devices taken so far go back). Network devices are
/// not served here.
pub fn create(
    spec: &VmSpec<'_>,
    devices: &mut VmDevices,
) -> Result<(Vec<VmDisk>, Vec<VmRng>), CreateError> {
    let mut disks: Vec<VmDisk> = Vec::new();
    let mut rngs = Vec::new();
    let r = create_into(spec, devices, &mut disks, &mut rngs);
    if r.is_err() {
        let mut reg = hostdev::HOST_DEVICES.lock();
        for d in disks.drain(..) {
            reg.blk.push(d.host);
        }
    }
    r.map(|()| (disks, rngs))
}

fn create_into(
    spec: &VmSpec<'_>,
    devices: &mut VmDevices,
    disks: &mut Vec<VmDisk>,
    rngs: &mut Vec<VmRng>,
) -> Result<(), CreateError> {
    for d in spec.devices() {
        let (base, irq) = (d.gpa(), d.irq());
        let fail = |why| CreateError::Device { slot: d.slot, why };
        match d.kind {
            DeviceKind::Block {
                host_base,
                read_only,
            } => {
                let host = hostdev::take_blk(host_base).map_err(fail)?;
                let model =
                    AsyncBlk::new(host.capacity, read_only || host.read_only, disk_id(d.slot));
                let dev: BlkDevice =
                    VirtioMmio::new(model, irq).map_err(|_| fail("virtio-blk queues"))?;
                let mut inflight = Vec::new();
                if inflight.try_reserve_exact(HOST_BLK_QUEUE).is_err() {
                    hostdev::HOST_DEVICES.lock().blk.push(host);
                    return Err(CreateError::OutOfMemory);
                }
                inflight.resize_with(HOST_BLK_QUEUE, || None);
                let id = match devices.add_device(base, Box::new(dev)) {
                    Ok(id) => id,
                    Err(_) => {
                        hostdev::HOST_DEVICES.lock().blk.push(host);
                        return Err(fail("slot placement"));
                    }
                };
                disks.push(VmDisk {
                    id,
                    slot: d.slot,
                    host,
                    waiting: VecDeque::new(),
                    inflight,
                    at_host: 0,
                    broken: false,
                    stats: DiskStats::default(),
                });
            }
            DeviceKind::Rng { host_base } => {
                hostdev::claim_rng(host_base).map_err(fail)?;
                let dev: RngDevice =
                    VirtioMmio::new(Rng::new(HostEntropy { base: host_base }), irq)
                        .map_err(|_| fail("virtio-rng queues"))?;
                let id = devices
                    .add_device(base, Box::new(dev))
                    .map_err(|_| fail("slot placement"))?;
                rngs.push(VmRng {
                    id,
                    slot: d.slot,
                    starved: false,
                });
            }
            DeviceKind::Net { .. } => {}
        }
    }
    Ok(())
}

/// The host address of `gpa` and how many bytes from there (up to `len`)
/// are host-contiguous RAM of this VM (never past its 2 MiB chunk).
fn translate(
    memory: &mut Option<VmMemory<GlobalFrames>>,
    ram: Range<GuestPhysAddr>,
    gpa: GuestPhysAddr,
    len: u64,
) -> Result<(u64, u64), GuestMemoryError> {
    let off = gpa
        .offset_from(ram.start)
        .map_err(|_| GuestMemoryError::NotRam)?;
    let n = len.min(CHUNK - off % CHUNK);
    let mut hpa = None;
    memory
        .as_mut()
        .ok_or(GuestMemoryError::NotRam)?
        .for_each_piece(gpa, n, |h, span| {
            if span.start == 0 {
                hpa = Some(h.raw());
            }
        })
        .map_err(|_| GuestMemoryError::NotRam)?;
    Ok((hpa.ok_or(GuestMemoryError::NotRam)?, n))
}

/// Completes `req` of the disk `id` with `status` into the guest's rings
/// and moves its interrupt line.
fn finish(
    devices: &mut VmDevices,
    memory: &mut Option<VmMemory<GlobalFrames>>,
    ram: Range<GuestPhysAddr>,
    id: DeviceId,
    req: &BlkRequest,
    status: u8,
) {
    let _ = devices.with_device::<BlkDevice, _>(id, |d, irq| {
        let mut mem = GStageMemory { memory, ram };
        AsyncBlk::finish(d.transport_mut(), req, status, &mut mem);
        d.update_line(irq);
    });
}

/// Takes back every request the host device completed. Returns how many.
fn collect(
    disk: &mut VmDisk,
    devices: &mut VmDevices,
    memory: &mut Option<VmMemory<GlobalFrames>>,
    ram: Range<GuestPhysAddr>,
) -> usize {
    let mut n = 0;
    while !disk.broken {
        let Some(token) = disk.host.peek_used() else {
            break;
        };
        let Some((req, mut hreq)) = disk
            .inflight
            .get_mut(usize::from(token))
            .and_then(Option::take)
        else {
            // Not ours: without its buffers it cannot be popped.
            disk.broken = true;
            disk.stats.host_errors += 1;
            crate::log!(
                "host virtio-blk at {:#x} completed an unknown request: abandoned",
                disk.host_base()
            );
            break;
        };
        // SAFETY: `hreq` is the request `submit` returned `token` for.
        if unsafe { disk.host.complete(token, &mut hreq) }.is_err() {
            // Still the device's: leak its buffers (and the pages stay
            // with the VM, which now never frees them: see `drain`).
            core::mem::forget(hreq);
            disk.broken = true;
            disk.stats.host_errors += 1;
            break;
        }
        disk.at_host = disk.at_host.saturating_sub(1);
        disk.stats.completed += 1;
        let status = match hreq.status() {
            s @ (VIRTIO_BLK_S_OK | VIRTIO_BLK_S_IOERR | VIRTIO_BLK_S_UNSUPP) => s,
            _ => VIRTIO_BLK_S_IOERR,
        };
        if status != VIRTIO_BLK_S_OK {
            disk.stats.host_errors += 1;
        }
        finish(devices, memory, ram, disk.id, &req, status);
        n += 1;
    }
    n
}

/// Gives waiting requests to the host device while it has room.
fn submit(
    disk: &mut VmDisk,
    devices: &mut VmDevices,
    memory: &mut Option<VmMemory<GlobalFrames>>,
    ram: Range<GuestPhysAddr>,
) {
    while disk.host.free_slots() > 0 || disk.broken {
        let Some(req) = disk.waiting.pop_front() else {
            break;
        };
        if disk.broken {
            disk.stats.host_errors += 1;
            finish(devices, memory, ram, disk.id, &req, VIRTIO_BLK_S_IOERR);
            continue;
        }
        let ty = match req.op {
            BlkOp::Read => VIRTIO_BLK_T_IN,
            BlkOp::Write => VIRTIO_BLK_T_OUT,
            BlkOp::Flush if !disk.host.flush => {
                // No write cache to flush: completed writes are durable.
                finish(devices, memory, ram, disk.id, &req, VIRTIO_BLK_S_OK);
                continue;
            }
            BlkOp::Flush => VIRTIO_BLK_T_FLUSH,
        };
        let segs = match host_segments(&req.data, HOST_BLK_MAX_DESC - 2, |gpa, len| {
            translate(memory, ram, gpa, len)
        }) {
            Ok(s) => s,
            Err(_) => {
                disk.stats.dma_refused += 1;
                finish(devices, memory, ram, disk.id, &req, VIRTIO_BLK_S_IOERR);
                continue;
            }
        };
        let mut hreq = HostBlkRequest::new(ty, req.sector, segs);
        // SAFETY: every data segment is RAM of this VM (translated through
        // its own chunks just now), which the device may read and write as
        // the request says: the guest gave these buffers to its disk. The
        // RAM is not freed or reloaded before the host device hands the
        // request back (`drain` on every such path), and the hypervisor
        // reaches guest RAM only by copies through raw pointers, never by
        // references that the device's writes could invalidate.
        match unsafe { disk.host.submit(&mut hreq) } {
            Ok(token) => match disk.inflight.get_mut(usize::from(token)) {
                Some(slot @ None) => {
                    *slot = Some((req, hreq));
                    disk.at_host += 1;
                    disk.stats.submitted += 1;
                }
                _ => {
                    // A token the queue should never give: keep the request
                    // (its buffers are the device's now) and stop using it.
                    core::mem::forget(hreq);
                    disk.broken = true;
                    disk.stats.host_errors += 1;
                }
            },
            Err(SubmitError::Full) => {
                disk.waiting.push_front(req);
                break;
            }
            Err(SubmitError::Invalid(_)) => {
                disk.stats.dma_refused += 1;
                finish(devices, memory, ram, disk.id, &req, VIRTIO_BLK_S_IOERR);
            }
        }
    }
}

/// Runs the VM's disks and entropy devices: collects host completions,
/// processes notified queues, hands new requests to the host devices.
/// Bounded: [`ROUNDS`] rounds per disk. Returns whether work is left for a
/// later call (requests at a host device or waiting for one, notified
/// queues, a starved entropy device). Call with the VM's lock held.
pub fn service(vm: &Vm, inner: &mut VmInner) -> bool {
    let VmInner {
        devices,
        memory,
        disks,
        rngs,
        ..
    } = inner;
    let ram = vm.ram;
    let mut left = false;
    for disk in disks.iter_mut() {
        for _ in 0..ROUNDS {
            let done = collect(disk, devices, memory, ram);
            let pending = devices
                .with_device::<BlkDevice, _>(disk.id, |d, irq| {
                    let mut mem = GStageMemory {
                        memory: &mut *memory,
                        ram,
                    };
                    d.process(&mut mem, irq);
                    let epoch = d.transport().epoch();
                    // Requests of an older epoch that never reached the host
                    // device are forgotten (their rings are gone).
                    disk.waiting.retain(|r| r.epoch == epoch);
                    disk.waiting
                        .extend(d.transport_mut().device_mut().take_submitted());
                    d.has_pending()
                })
                .unwrap_or(false);
            submit(disk, devices, memory, ram);
            if !pending && done == 0 {
                break;
            }
        }
        left |= disk.at_host > 0 || !disk.waiting.is_empty();
        left |= devices
            .device_mut::<BlkDevice>(disk.id)
            .is_some_and(|d| d.has_pending());
    }
    for r in rngs.iter_mut() {
        let starved = devices
            .with_device::<RngDevice, _>(r.id, |d, irq| {
                if r.starved {
                    d.transport_mut().notify(fv_virtio::rng::REQUESTQ);
                }
                let mut mem = GStageMemory {
                    memory: &mut *memory,
                    ram,
                };
                d.process(&mut mem, irq);
                let waiting = d
                    .transport()
                    .queues()
                    .first()
                    .filter(|q| q.ready())
                    .and_then(|q| q.pending(&mut mem).ok())
                    .unwrap_or(0);
                waiting > 0 || d.has_pending()
            })
            .unwrap_or(false);
        r.starved = starved;
        left |= starved;
    }
    vm.io_pending.store(left, Ordering::Release);
    left
}

/// Waits (polling, up to [`DRAIN_TIMEOUT_MS`]) until the host devices have
/// handed back every request of this VM, completing them into its rings.
/// Returns false if some host device still holds some: the VM's RAM must
/// then never be freed or reused. Call with the VM's lock held, its vCPUs
/// out of the guest.
pub fn drain(vm: &Vm, inner: &mut VmInner) -> bool {
    let VmInner {
        devices,
        memory,
        disks,
        ..
    } = inner;
    for d in disks.iter_mut() {
        d.waiting.clear();
    }
    let held: usize = disks.iter().map(|d| d.at_host).sum();
    let timebase = crate::sched::host().timebase;
    let deadline = fv_arch_riscv64::csr::time()
        .saturating_add(timebase.saturating_mul(DRAIN_TIMEOUT_MS) / 1000);
    loop {
        let mut busy = false;
        for d in disks.iter_mut() {
            collect(d, devices, memory, vm.ram);
            busy |= d.at_host > 0 && !d.broken;
        }
        if !busy {
            break;
        }
        if fv_arch_riscv64::csr::time() >= deadline {
            break;
        }
        core::hint::spin_loop();
    }
    let clean = disks.iter().all(|d| d.at_host == 0);
    if held > 0 && clean {
        crate::log!(
            "VM '{}': waited for {} request(s) at its host disks before its RAM is reused",
            vm.name,
            held
        );
    }
    if !clean {
        crate::log!(
            "VM '{}': a host disk kept requests past {} ms: its RAM is never reused",
            vm.name,
            DRAIN_TIMEOUT_MS
        );
    }
    clean
}

/// Logs each disk's and entropy device's counters (VM stop).
pub fn report(vm: &Vm, inner: &mut VmInner) {
    let VmInner {
        devices,
        disks,
        rngs,
        ..
    } = inner;
    for d in disks.iter() {
        let Some(dev) = devices.device_mut::<BlkDevice>(d.id) else {
            continue;
        };
        let t = dev.transport().stats();
        let b = dev.transport().device().stats();
        crate::log!(
            "VM '{}' virtio-blk slot {} (host {:#x}): {} chains, {} to the host, {} completed, {} host errors, {} refused DMA; refused: {} accesses, {} writes, {} notifies, {} queue set-ups, {} feature sets; {} bad chains, {} device errors, {} broken queues, {} stale completions; IOERR {}, UNSUPP {}, read-only writes {}",
            vm.name,
            d.slot,
            d.host_base(),
            t.chains,
            d.stats.submitted,
            d.stats.completed,
            d.stats.host_errors,
            d.stats.dma_refused,
            t.bad_access,
            t.bad_write,
            t.bad_notify,
            t.queue_setup_refused,
            t.features_refused,
            t.chain_errors,
            t.device_errors,
            t.queue_errors,
            t.stale_completions,
            b.ioerr,
            b.unsupp,
            b.read_only_writes
        );
    }
    for r in rngs.iter() {
        let Some(dev) = devices.device_mut::<RngDevice>(r.id) else {
            continue;
        };
        let t = dev.transport().stats();
        crate::log!(
            "VM '{}' virtio-rng slot {}: {} chains; {} bad chains, {} device errors, {} broken queues",
            vm.name,
            r.slot,
            t.chains,
            t.chain_errors,
            t.device_errors,
            t.queue_errors
        );
    }
}
