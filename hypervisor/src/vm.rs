//! VMs as the hypervisor holds them: guest RAM, the G-stage table, HSM states,
//! console, and the state shared between the harts that run a VM's vCPUs.

use crate::mem::{self, GlobalFrames};
use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use fv_addr::{GuestPhysAddr, HostPhysAddr, Range, PAGE_SIZE};
use fv_bootpkg::VmSpec;
use fv_devices::plic::Plic;
use fv_devices::uart16550::Uart16550;
use fv_devices::virtio_mmio::VirtioMmio;
use fv_devices::{DeviceId, VmDevices};
use fv_mgmt::{AtomicExitCounts, AtomicIrqCounts, AtomicSbiCounts, Ring};
use fv_virtio::console::Console;
use fv_virtio::net::Net;

/// Console history kept per VM.
pub const HISTORY_BYTES: usize = 16 * 1024;
use fv_guest_sbi::HsmStates;
use fv_stage2::Mode;
use fv_vm::{GuestMemory, GuestMemoryError, Lifecycle, VcpuBoot, VcpuFences};
use fv_vm_memory::{MemoryError, VmMemory};
use spin::Mutex;

/// Guest RAM is handed out and mapped in 2 MiB chunks.
pub const CHUNK: u64 = fv_vm_memory::CHUNK;

/// Where every VM's virtual PLIC sits (as on QEMU `virt`).
pub const GUEST_PLIC_BASE: GuestPhysAddr = GuestPhysAddr::new(0x0c00_0000);
/// Interrupt sources of the virtual PLIC.
pub const GUEST_PLIC_NDEV: u32 = 32;
/// Where every VM's virtual ns16550a sits (as on QEMU `virt`).
pub const GUEST_UART_BASE: GuestPhysAddr = GuestPhysAddr::new(0x1000_0000);
/// The UART's PLIC source (as on QEMU `virt`).
pub const GUEST_UART_IRQ: u32 = 10;
/// Where a VM's virtio-console sits (`console: virtio`): QEMU `virt`'s first
/// virtio-mmio slot. (QEMU itself fills its slots from the last one down;
/// the first is used here so the address does not depend on a slot count.)
pub const GUEST_VIRTIO_CONSOLE_BASE: GuestPhysAddr = GuestPhysAddr::new(0x1000_1000);
/// The virtio-console's PLIC source (the first slot's, as on QEMU `virt`).
pub const GUEST_VIRTIO_CONSOLE_IRQ: u32 = 1;
/// Host input the virtio-console holds for its receive queue (more waits in
/// [`VmInner::input`]).
const HVC_INPUT_BYTES: usize = 256;
/// Guest output the virtio-console takes per drain (one `process` call
/// copies at most this much per chain; see `fv_virtio::console`).
pub const HVC_OUTPUT_BYTES: usize = 4096;

/// Where a VM's virtio-console puts what the guest transmits: a buffer of
/// [`HVC_OUTPUT_BYTES`] reserved up front, drained into the console
/// multiplexer after every `process` (so no guest memory is read while the
/// console lock is held), as much at a time as the VM's console queue surely
/// takes (`console::guest_output_room`). While it holds bytes, a transmit
/// chain that does not fit waits in its queue: the guest is held back rather
/// than its output dropped.
#[derive(Debug)]
pub struct HvcOutput(Vec<u8>);

impl HvcOutput {
    fn new() -> Result<Self, CreateError> {
        let mut v = Vec::new();
        v.try_reserve_exact(HVC_OUTPUT_BYTES)
            .map_err(|_| CreateError::OutOfMemory)?;
        Ok(Self(v))
    }

    /// What the guest transmitted and the console has not taken yet, oldest first.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// The console took the first `n` bytes.
    pub fn consume(&mut self, n: usize) {
        self.0.drain(..n.min(self.0.len()));
    }

    /// Forgets the bytes (keeps the reservation).
    pub fn clear(&mut self) {
        self.0.clear();
    }
}

impl fv_virtio::console::ConsoleOutput for HvcOutput {
    fn write(&mut self, bytes: &[u8]) {
        // `room` bounds what the device writes: never grows past the reservation.
        let n = bytes.len().min(self.room());
        self.0.extend_from_slice(bytes.get(..n).unwrap_or(&[]));
    }

    fn room(&self) -> usize {
        HVC_OUTPUT_BYTES.saturating_sub(self.0.len())
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A VM's virtio-console device as it sits on the bus.
pub type HvcDevice = VirtioMmio<Console<HvcOutput>>;

/// A VM's virtio-net NIC as it sits on the bus: a port of a switch.
pub type NicDevice = VirtioMmio<Net<crate::net::SwitchPort>>;

/// A NIC the VM has (from its boot package device records).
#[derive(Clone, Copy, Debug)]
pub struct Nic {
    /// The device on the bus.
    pub dev: DeviceId,
    /// Its switch (index into the package's switches).
    pub switch: u16,
    /// Its MAC.
    pub mac: [u8; 6],
}

/// A NIC to create: guest slot, switch, MAC.
#[derive(Clone, Copy, Debug)]
pub struct NicSpec {
    /// Guest virtio-mmio slot.
    pub slot: u8,
    /// Switch index.
    pub switch: u16,
    /// MAC.
    pub mac: [u8; 6],
}

/// What the guest sees besides its images: its device tree and the NICs
/// that tree describes.
#[derive(Debug)]
pub struct GuestSetup {
    /// The guest DTB.
    pub dtb: Vec<u8>,
    /// Its virtio-net NICs.
    pub nics: Vec<NicSpec>,
}

/// Guest-physical base of virtio-mmio slot `slot` (QEMU `virt`'s layout).
pub fn virtio_slot_base(slot: u8) -> GuestPhysAddr {
    fv_bootpkg::slot_gpa(slot)
}

/// PLIC source of virtio-mmio slot `slot`.
pub fn virtio_slot_irq(slot: u8) -> u32 {
    fv_bootpkg::GUEST_VIRTIO_FIRST_IRQ + u32::from(slot)
}

/// Why a VM stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The guest powered off (SBI SRST shutdown, no reason).
    PowerOff,
    /// The guest powered off reporting a system failure (SRST reason 1).
    GuestFailure,
    /// The hypervisor stopped it: it did something the hypervisor cannot let it continue from.
    Fault,
    /// The operator stopped it (`vm stop`).
    Operator,
}

impl StopReason {
    /// Whether this counts as a clean end: the guest powered off, or the
    /// operator stopped it on purpose. Only a guest-reported failure or a stop
    /// by the hypervisor make the machine's exit status say "failed".
    pub fn is_clean(self) -> bool {
        matches!(self, StopReason::PowerOff | StopReason::Operator)
    }
}

/// Per-vCPU requests other harts make (IPIs, starts, fences), and where it runs.
#[derive(Debug)]
pub struct VcpuShared {
    /// Logical CPU (hart) whose run queue holds the vCPU.
    pub cpu: AtomicUsize,
    /// `hvip` bits to assert on the next entry.
    pub pending_irq: AtomicU64,
    /// Fence requests ([`FENCE_I`], [`FENCE_VVMA`]) and whether it is in the
    /// guest: a remote fence waits for a vCPU in the guest to take it.
    pub fences: VcpuFences,
    /// HSM start request.
    pub start: Mutex<Option<VcpuBoot>>,
    /// Level of the vCPU's external interrupt line (its PLIC context).
    pub eip: AtomicBool,
    /// Whether the vCPU is between `load` and `put` on some hart.
    pub running: AtomicBool,
    /// Exits by reason.
    pub exits: AtomicExitCounts,
    /// SBI calls by extension.
    pub sbi: AtomicSbiCounts,
    /// Virtual interrupts raised for it, by kind.
    pub irqs: AtomicIrqCounts,
    /// Faults injected into it.
    pub injected: AtomicU64,
    /// Ticks it ran.
    pub run_ticks: AtomicU64,
    /// Times it moved to another hart.
    pub migrations: AtomicU64,
    /// Firmware events for its SBI PMU.
    pub fw_events: crate::pmu::FwCounts,
}

/// Fence request: `fence.i` before the next entry.
pub const FENCE_I: u32 = 1;
/// Fence request: `hfence.vvma` (all of this VMID's VS-stage entries) before the next entry.
pub const FENCE_VVMA: u32 = 2;

/// The lock-protected part of a VM.
pub struct VmInner {
    /// The VM's RAM chunks and G-stage table, with the reserve of table
    /// frames that mapping all of its RAM can need (`None` once destroyed).
    pub memory: Option<VmMemory<GlobalFrames>>,
    /// HSM state of every vCPU.
    pub hsm: HsmStates,
    /// The VM's emulated devices and its interrupt controller.
    pub devices: VmDevices,
    /// The console UART on the device bus.
    pub uart: Option<DeviceId>,
    /// The virtio-console on the device bus (`console: virtio`): it gets the
    /// console input then, and the UART none.
    pub hvc: Option<DeviceId>,
    /// Its virtio-net NICs.
    pub nics: Vec<Nic>,
    /// Console input not yet taken by the console device (the UART's receive
    /// FIFO or the virtio-console's input buffer was full).
    pub input: VecDeque<u8>,
    /// The last console output, raw (for `vm log`; what reaches the
    /// terminal is queued in `console`).
    pub history: Ring,
    /// Why the VM stopped, once it has.
    pub stop_reason: Option<StopReason>,
    /// Its disks (virtio-blk served from host block devices).
    pub disks: Vec<crate::vdisk::VmDisk>,
    /// Its entropy devices (virtio-rng fed by host entropy devices).
    pub rngs: Vec<crate::vdisk::VmRng>,
    /// Counters.
    pub stats: VmStats,
}

/// Per-VM counters.
#[derive(Clone, Copy, Debug, Default)]
pub struct VmStats {
    /// Lazy RAM mappings made (first touches of a 2 MiB chunk).
    pub ram_faults: u64,
}

/// One VM.
pub struct Vm {
    /// Index in the VM table.
    pub id: usize,
    /// Name from the boot package.
    pub name: String,
    /// VMID in hgatp.
    pub vmid: u16,
    /// `hgatp` value for its vCPUs (changes when the VM is re-created).
    pub hgatp: AtomicU64,
    /// G-stage translation mode.
    pub mode: Mode,
    /// Guest RAM range.
    pub ram: Range<GuestPhysAddr>,
    /// What the package says about it (images are reloaded from here on reboot).
    pub spec: VmSpec<'static>,
    /// Run state: every transition is one atomic step ([`Lifecycle`]).
    pub state: Lifecycle,
    /// Bumped on every reboot; vCPUs reset themselves when they see it change.
    pub generation: AtomicU32,
    /// Host `time` when it was paused (valid in [`state::PAUSED`]).
    pub paused_at: AtomicU64,
    /// Host ticks spent paused, all pauses together: guest time lags host time
    /// by this much (`htimedelta = -paused_ticks`), so guest clocks and timers
    /// do not jump across a pause.
    pub paused_ticks: AtomicU64,
    /// Cross-hart per-vCPU state.
    pub vcpus: Vec<VcpuShared>,
    /// Everything else, under a lock.
    pub inner: Mutex<VmInner>,
    /// The guest DTB (regenerated never: identical across reboots).
    pub dtb: Vec<u8>,
    /// Host bytes used for this VM outside guest RAM (tables + descriptor), at creation.
    pub overhead_bytes: AtomicU64,
    /// Its images are not yet copied into guest RAM: the hart that first runs
    /// its boot vCPU does that ([`Vm::load_pending_images`]), so VMs start
    /// while others still load, on every hart at once.
    pub images_pending: AtomicBool,
    /// Its virtio-console has work a bounded `device_side_effects` left
    /// (finished from the boot hart's loop: `sched::service_virtio`).
    pub hvc_pending: AtomicBool,
    /// Frames wait for one of its NICs, or a NIC has work a bounded
    /// `device_side_effects` left (done by whoever can take its lock next:
    /// a sender, or the boot hart's poll).
    pub net_pending: AtomicBool,
    /// Its disks or entropy devices have work left: requests at a host
    /// device, waiting for one, or waiting for entropy (polled from the boot
    /// hart's loop: `sched::service_virtio`).
    pub io_pending: AtomicBool,
}

/// Why creating a VM failed.
#[derive(Debug)]
pub enum CreateError {
    /// The heap could not hold the VM's descriptors.
    OutOfMemory,
    /// Its RAM and page tables could not be had, or its RAM not mapped.
    Memory(MemoryError),
    /// A bad boot package entry.
    BadImage(&'static str),
    /// A device the VM's record asks for cannot be made (e.g. its host
    /// device is missing, of another type, or taken).
    Device {
        /// The guest slot of the device.
        slot: u8,
        /// Why.
        why: &'static str,
    },
}

impl core::fmt::Display for CreateError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            CreateError::OutOfMemory => f.write_str("no heap left for the VM's descriptors"),
            CreateError::Memory(e) => write!(f, "{e}"),
            CreateError::BadImage(what) => write!(f, "bad boot package entry: {what}"),
            CreateError::Device { slot, why } => write!(f, "device in guest slot {slot}: {why}"),
        }
    }
}

impl Vm {
    /// Builds a VM from its package entry: takes all of its RAM and the frames
    /// of every G-stage table that mapping all of it can need, and maps the
    /// chunks its images and DTB go to (so a package that does not fit fails
    /// here, before any VM runs, and nothing taken is kept). The images are
    /// copied when its boot vCPU first runs ([`Vm::load_pending_images`]).
    pub fn create(
        id: usize,
        vmid: u16,
        vmid_bits: u32,
        mode: Mode,
        spec: VmSpec<'static>,
        guest: GuestSetup,
        cpus: &mut impl FnMut() -> usize,
    ) -> Result<Self, CreateError> {
        let GuestSetup {
            dtb,
            nics: nic_specs,
        } = guest;
        let ram = Range::<GuestPhysAddr>::new(fv_bootpkg::GUEST_RAM_BASE, spec.memory_bytes)
            .map_err(|_| CreateError::BadImage("RAM range overflows"))?;
        let nchunks = spec.memory_bytes / CHUNK;
        // Dropped (everything given back) if anything below fails.
        let memory = VmMemory::new(GlobalFrames, mode, ram, image_spans(&spec, &dtb))
            .map_err(CreateError::Memory)?;
        let vmid = if vmid_bits == 0 { 0 } else { vmid };
        let mut devices = VmDevices::new();
        let plic = Plic::new(GUEST_PLIC_NDEV, spec.vcpus)
            .map_err(|_| CreateError::BadImage("vCPU count"))?;
        devices
            .set_interrupt_controller(GUEST_PLIC_BASE, Box::new(plic))
            .map_err(|_| CreateError::BadImage("PLIC placement"))?;
        let uart = devices
            .add_device(GUEST_UART_BASE, Box::new(Uart16550::new(GUEST_UART_IRQ)))
            .map_err(|_| CreateError::BadImage("UART placement"))?;
        let hvc = if spec.flags.contains(fv_bootpkg::VmFlags::CONSOLE_VIRTIO) {
            let console = Console::new(HvcOutput::new()?, HVC_INPUT_BYTES);
            let dev: HvcDevice = VirtioMmio::new(console, GUEST_VIRTIO_CONSOLE_IRQ)
                .map_err(|_| CreateError::BadImage("virtio-console queues"))?;
            Some(
                devices
                    .add_device(GUEST_VIRTIO_CONSOLE_BASE, Box::new(dev))
                    .map_err(|_| CreateError::BadImage("virtio-console placement"))?,
            )
        } else {
            None
        };
        let mut nics = Vec::new();
        for n in &nic_specs {
            let net = Net::new(n.mac, crate::net::SwitchPort::new(n.switch));
            let dev: NicDevice = VirtioMmio::new(net, virtio_slot_irq(n.slot))
                .map_err(|_| CreateError::BadImage("virtio-net queues"))?;
            let id = devices
                .add_device(virtio_slot_base(n.slot), Box::new(dev))
                .map_err(|_| CreateError::BadImage("virtio-net placement"))?;
            nics.push(Nic {
                dev: id,
                switch: n.switch,
                mac: n.mac,
            });
        }
        let hgatp = memory.hgatp(vmid);
        let hsm = HsmStates::new(spec.vcpus as usize, 0)
            .map_err(|_| CreateError::BadImage("bad vCPU count"))?;
        let history = Ring::with_capacity(HISTORY_BYTES).map_err(|_| CreateError::OutOfMemory)?;
        // Last of what can fail: host devices taken here go back to the
        // registry if this fails, and nothing after it fails.
        let (disks, rngs) = crate::vdisk::create(&spec, &mut devices)?;
        let vcpus = (0..spec.vcpus)
            .map(|_| VcpuShared {
                cpu: AtomicUsize::new(cpus()),
                pending_irq: AtomicU64::new(0),
                fences: VcpuFences::new(),
                start: Mutex::new(None),
                eip: AtomicBool::new(false),
                exits: AtomicExitCounts::new(),
                sbi: AtomicSbiCounts::new(),
                irqs: AtomicIrqCounts::new(),
                injected: AtomicU64::new(0),
                run_ticks: AtomicU64::new(0),
                migrations: AtomicU64::new(0),
                fw_events: Default::default(),
                running: AtomicBool::new(false),
            })
            .collect();
        let vm = Vm {
            id,
            name: String::from(spec.name),
            vmid,
            hgatp: AtomicU64::new(hgatp),
            mode,
            ram,
            spec,
            state: Lifecycle::new(),
            generation: AtomicU32::new(0),
            paused_at: AtomicU64::new(0),
            paused_ticks: AtomicU64::new(0),
            vcpus,
            inner: Mutex::new(VmInner {
                memory: Some(memory),
                hsm,
                devices,
                uart: Some(uart),
                hvc,
                nics,
                input: VecDeque::new(),
                history,
                stop_reason: None,
                disks,
                rngs,
                stats: VmStats::default(),
            }),
            dtb,
            overhead_bytes: AtomicU64::new(0),
            images_pending: AtomicBool::new(true),
            hvc_pending: AtomicBool::new(false),
            net_pending: AtomicBool::new(false),
            io_pending: AtomicBool::new(false),
        };
        let tables = vm
            .inner
            .lock()
            .memory
            .as_ref()
            .map_or(0, |m| m.table_frames()) as u64
            * PAGE_SIZE;
        let desc = core::mem::size_of::<Vm>() as u64
            + vm.vcpus.len() as u64 * core::mem::size_of::<VcpuShared>() as u64
            + nchunks * 9
            + vm.dtb.len() as u64;
        vm.overhead_bytes.store(tables + desc, Ordering::Relaxed);
        Ok(vm)
    }

    /// Every image the VM boots from (see [`images`]).
    fn images(&self) -> impl Iterator<Item = (GuestPhysAddr, &[u8], u64)> + '_ {
        images(&self.spec, &self.dtb)
    }

    /// Copies the kernel segments, initrd and DTB into guest RAM (boot and
    /// reboot). Returns the bytes copied.
    pub fn load_images(&self) -> Result<u64, CreateError> {
        self.copy_images(&mut self.inner.lock())
    }

    /// Loads the images if creation left them for the first run (called by
    /// the hart about to run the boot vCPU; once per VM, whoever comes first).
    /// Returns the bytes copied (0: nothing was pending).
    pub fn load_pending_images(&self) -> Result<u64, CreateError> {
        if !self.images_pending.load(Ordering::Acquire) {
            return Ok(0);
        }
        let mut inner = self.inner.lock();
        // Checked again under the lock: a reboot may have loaded them.
        if !self.images_pending.load(Ordering::Acquire) {
            return Ok(0);
        }
        self.copy_images(&mut inner)
    }

    fn copy_images(&self, inner: &mut VmInner) -> Result<u64, CreateError> {
        let memory = inner
            .memory
            .as_mut()
            .ok_or(CreateError::Memory(MemoryError::NotRam))?;
        let mut copied = 0;
        for (gpa, data, mem_size) in self.images() {
            fill(memory, gpa, data, mem_size)?;
            copied += data.len() as u64;
        }
        self.images_pending.store(false, Ordering::Release);
        Ok(copied)
    }

    /// Frees the VM's guest RAM and G-stage tables, the unused part of its
    /// table reserve included (its frames become dirty: cleared before anyone
    /// else sees them). Its vCPUs must all be out of the guest and the VM
    /// stopped. Returns the bytes freed.
    pub fn release(&self) -> u64 {
        // No hart may still hold a translation to these frames when they are
        // handed to someone else: every hart fences before anything is freed.
        crate::sched::fence_gstage_all_harts();
        let mut inner = self.inner.lock();
        // The host disks may still write this RAM: it goes only once they
        // handed every request back (else it is leaked, never reused).
        if !crate::vdisk::drain(self, &mut inner) {
            core::mem::forget(inner.memory.take());
            return 0;
        }
        // No vCPU of this VM runs, and each fences its VMID before it runs
        // again (see `Vm::recreate`), so the frames can go at once.
        inner.memory.take().map_or(0, VmMemory::release)
    }

    /// Builds the VM again from its package entry after [`Vm::release`]: new
    /// RAM and table reserve, a new G-stage table, devices and HSM reset,
    /// images reloaded. The caller then bumps the generation so vCPU 0 starts.
    /// On failure nothing is kept.
    pub fn recreate(&self) -> Result<(), CreateError> {
        let memory = VmMemory::new(
            GlobalFrames,
            self.mode,
            self.ram,
            image_spans(&self.spec, &self.dtb),
        )
        .map_err(CreateError::Memory)?;
        self.hgatp.store(memory.hgatp(self.vmid), Ordering::Release);
        {
            let mut inner = self.inner.lock();
            inner.memory = Some(memory);
            inner.stop_reason = None;
        }
        self.reset_devices();
        for v in &self.vcpus {
            v.pending_irq.store(0, Ordering::Release);
            v.fences.clear();
            *v.start.lock() = None;
            // A re-created VM is a new instance: its statistics start over
            // (a reboot keeps them: the same instance runs on).
            v.exits.reset();
            v.sbi.reset();
            v.irqs.reset();
            v.injected.store(0, Ordering::Relaxed);
            v.run_ticks.store(0, Ordering::Relaxed);
            v.migrations.store(0, Ordering::Relaxed);
        }
        self.paused_ticks.store(0, Ordering::Release);
        if let Err(e) = self.load_images() {
            self.release();
            return Err(e);
        }
        Ok(())
    }

    /// The boot vCPU's initial state.
    pub fn boot_state(&self) -> VcpuBoot {
        VcpuBoot {
            pc: self.spec.entry,
            a0: 0,
            a1: self.spec.dtb_gpa.raw(),
        }
    }

    /// Whether the VM is stopped (or destroyed): none of its vCPUs may run.
    pub fn is_stopped(&self) -> bool {
        self.state.is_stopped()
    }

    /// Gives the VM's devices, interrupt controller and interrupt lines the
    /// state of a fresh power-on (reboot and re-creation): device registers,
    /// PLIC priorities, enables and claimed sources, queued console input,
    /// every vCPU's external-interrupt level, HSM states (vCPU 0 started).
    /// Console output already transmitted is printed first.
    pub fn reset_devices(&self) {
        let mut inner = self.inner.lock();
        crate::sched::device_side_effects(self, &mut inner);
        crate::sched::hvc_flush(self, &mut inner);
        // Nothing the host disks still do may land in the RAM about to be
        // reloaded: wait for them (a disk that never answers stays with it).
        if !crate::vdisk::drain(self, &mut inner) {
            crate::log!(
                "VM '{}': reset while a host disk holds its requests",
                self.name
            );
        }
        inner.devices.reset();
        inner.input.clear();
        if let Some(id) = inner.hvc {
            let _ = inner.devices.with_device::<HvcDevice, _>(id, |d, _| {
                d.transport_mut().device_mut().clear_input();
                d.transport_mut().device_mut().output_mut().clear();
            });
        }
        for n in inner.nics.clone() {
            let _ = inner.devices.with_device::<NicDevice, _>(n.dev, |d, _| {
                d.transport().device().backend().clear();
            });
        }
        let _ = inner.hsm.reset(0);
        // The reset lowered every line: what changed is moot, the levels are 0.
        while inner.devices.take_changed().is_some() {}
        for v in &self.vcpus {
            v.eip.store(false, Ordering::Release);
        }
    }
}

impl VmInner {
    /// Makes sure the chunk holding `gpa` is zeroed and mapped (a guest's
    /// first touch). Returns whether this call mapped it (false: it already
    /// was). Takes no memory: the tables come from the VM's reserve.
    pub fn ensure_mapped(&mut self, gpa: GuestPhysAddr) -> Result<bool, CreateError> {
        let memory = self
            .memory
            .as_mut()
            .ok_or(CreateError::Memory(MemoryError::NotRam))?;
        let mapped = memory.ensure_mapped(gpa).map_err(CreateError::Memory)?;
        if mapped {
            self.stats.ram_faults += 1;
        }
        Ok(mapped)
    }

    /// Bytes of guest RAM mapped so far.
    pub fn resident_bytes(&self) -> u64 {
        self.memory.as_ref().map_or(0, VmMemory::resident_bytes)
    }
}

/// Every image a VM boots from: (where, bytes, size in guest RAM) of the
/// kernel segments, the initrd and the DTB.
fn images<'a>(
    spec: &VmSpec<'a>,
    dtb: &'a [u8],
) -> impl Iterator<Item = (GuestPhysAddr, &'a [u8], u64)> + 'a {
    spec.segments()
        .map(|seg| (seg.gpa, seg.data, seg.mem_size))
        .chain(spec.initrd.map(|i| (i.gpa, i.data, i.mem_size)))
        .chain(core::iter::once((spec.dtb_gpa, dtb, dtb.len() as u64)))
}

/// The guest-RAM spans the images take (mapped when the VM is created).
fn image_spans<'a>(
    spec: &VmSpec<'a>,
    dtb: &'a [u8],
) -> impl Iterator<Item = (GuestPhysAddr, u64)> + 'a {
    images(spec, dtb).map(|(gpa, data, mem_size)| (gpa, mem_size.max(data.len() as u64)))
}

/// Writes `data` at `gpa` and zeroes the rest up to `mem_size`, mapping
/// chunks as needed.
fn fill(
    memory: &mut VmMemory<GlobalFrames>,
    gpa: GuestPhysAddr,
    data: &[u8],
    mem_size: u64,
) -> Result<(), CreateError> {
    let total = mem_size.max(data.len() as u64);
    memory
        .for_each_piece(gpa, total, |hpa, span| {
            let n = (span.end - span.start) as usize;
            let from = data.get(span.start as usize..).unwrap_or(&[]);
            let part = from.get(..n.min(from.len())).unwrap_or(&[]);
            // SAFETY: [hpa, hpa + n) lies inside one of this VM's chunks, which
            // only this VM (whose lock the caller holds) uses.
            unsafe {
                mem::copy_to(hpa, part);
                if part.len() < n {
                    mem::zero(
                        HostPhysAddr::new(hpa.raw() + part.len() as u64),
                        (n - part.len()) as u64,
                    );
                }
            }
        })
        .map_err(CreateError::Memory)
}

/// Guest memory access through the VM's G-stage mapping (so the guest can only
/// ever name its own RAM).
pub struct GStageMemory<'a> {
    /// The VM's RAM and G-stage table (`VmInner::memory`, its lock held).
    pub memory: &'a mut Option<VmMemory<GlobalFrames>>,
    /// The VM's RAM range.
    pub ram: Range<GuestPhysAddr>,
}

impl GStageMemory<'_> {
    /// Calls `f` for each host-physical piece (never crossing a chunk) of
    /// `[gpa, gpa + len)`, mapping untouched RAM first (zeroed, so reads and
    /// writes agree).
    fn walk(
        &mut self,
        gpa: GuestPhysAddr,
        len: usize,
        mut f: impl FnMut(HostPhysAddr, core::ops::Range<usize>),
    ) -> Result<(), GuestMemoryError> {
        if !self.ram.contains_span(gpa, len as u64) {
            return Err(GuestMemoryError::NotRam);
        }
        self.memory
            .as_mut()
            .ok_or(GuestMemoryError::NotRam)?
            .for_each_piece(gpa, len as u64, |hpa, span| {
                f(hpa, span.start as usize..span.end as usize)
            })
            .map_err(|_| GuestMemoryError::NotRam)
    }
}

impl GuestMemory for GStageMemory<'_> {
    fn read(&mut self, gpa: GuestPhysAddr, buf: &mut [u8]) -> Result<(), GuestMemoryError> {
        let len = buf.len();
        self.walk(gpa, len, |hpa, r| {
            // SAFETY: hpa..hpa+r.len() is inside a page the G-stage table maps for
            // this VM, i.e. one of its own chunks.
            unsafe { mem::copy_from(hpa, &mut buf[r]) }
        })
    }

    fn write(&mut self, gpa: GuestPhysAddr, data: &[u8]) -> Result<(), GuestMemoryError> {
        self.walk(gpa, data.len(), |hpa, r| {
            // SAFETY: as in `read`: the page is one of this VM's own chunks.
            unsafe { mem::copy_to(hpa, &data[r]) }
        })
    }
}
