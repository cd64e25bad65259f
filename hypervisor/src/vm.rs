//! VMs as the hypervisor holds them: guest RAM, the G-stage table, HSM states,
//! console, and the state shared between the harts that run a VM's vCPUs.

use crate::mem::{self, FrameTables, FRAMES};
use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use fv_addr::{GuestPhysAddr, HostPhysAddr, Range, MEGA_PAGE_SIZE, PAGE_SIZE};
use fv_bootpkg::VmSpec;
use fv_devices::plic::Plic;
use fv_devices::uart16550::Uart16550;
use fv_devices::{DeviceId, VmDevices};
use fv_mgmt::{AtomicExitCounts, AtomicIrqCounts, AtomicSbiCounts, Ring};

/// Console history kept per VM.
pub const HISTORY_BYTES: usize = 16 * 1024;
/// Longest console line held back before it is printed anyway.
pub const LINE_BYTES: usize = 512;
use fv_guest_sbi::HsmStates;
use fv_stage2::{GStage, Mode, Perms};
use fv_vm::{GuestMemory, GuestMemoryError, VcpuBoot};
use spin::Mutex;

/// Guest RAM is handed out and mapped in 2 MiB chunks.
pub const CHUNK: u64 = MEGA_PAGE_SIZE;

/// Where every VM's virtual PLIC sits (as on QEMU `virt`).
pub const GUEST_PLIC_BASE: GuestPhysAddr = GuestPhysAddr::new(0x0c00_0000);
/// Interrupt sources of the virtual PLIC.
pub const GUEST_PLIC_NDEV: u32 = 32;
/// Where every VM's virtual ns16550a sits (as on QEMU `virt`).
pub const GUEST_UART_BASE: GuestPhysAddr = GuestPhysAddr::new(0x1000_0000);
/// The UART's PLIC source (as on QEMU `virt`).
pub const GUEST_UART_IRQ: u32 = 10;

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

/// VM run state values (in [`Vm::state`]).
pub mod state {
    /// Running (vCPUs may be scheduled).
    pub const RUNNING: u8 = 0;
    /// Being rebooted: no vCPU may enter the guest.
    pub const REBOOTING: u8 = 1;
    /// Stopped for good.
    pub const STOPPED: u8 = 2;
    /// Paused by the operator: no vCPU is scheduled, guest time stands still.
    pub const PAUSED: u8 = 3;
    /// Stopped and its memory freed (`vm destroy`); `vm start` builds it again.
    pub const DESTROYED: u8 = 4;
}

/// Per-vCPU requests other harts make (IPIs, starts, fences), and where it runs.
#[derive(Debug)]
pub struct VcpuShared {
    /// Logical CPU (hart) whose run queue holds the vCPU.
    pub cpu: AtomicUsize,
    /// `hvip` bits to assert on the next entry.
    pub pending_irq: AtomicU64,
    /// Fence requests ([`FENCE_I`], [`FENCE_VVMA`]).
    pub fence: AtomicU32,
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
    /// The VM's G-stage table.
    pub gstage: Option<GStage<FrameTables>>,
    /// Host frames backing each 2 MiB chunk of guest RAM.
    pub chunks: Vec<HostPhysAddr>,
    /// Whether a chunk is mapped (zeroed and in the G-stage table).
    pub mapped: Vec<bool>,
    /// Whether a chunk must be cleared before the guest sees it (it may hold a
    /// previous owner's data).
    pub needs_zero: Vec<bool>,
    /// HSM state of every vCPU.
    pub hsm: HsmStates,
    /// The VM's emulated devices and its interrupt controller.
    pub devices: VmDevices,
    /// The console UART on the device bus.
    pub uart: Option<DeviceId>,
    /// Console input not yet taken by the UART (its receive FIFO was full).
    pub input: VecDeque<u8>,
    /// The last console output (for `vm log`).
    pub history: Ring,
    /// Console output: the current line, printed when it ends (so lines of
    /// different VMs never interleave), when the VM waits (WFI), or after a
    /// short while (`sched::flush_stale_lines`).
    pub line: Vec<u8>,
    /// Host `time` when `line` got its first byte.
    pub line_since: u64,
    /// Why the VM stopped, once it has.
    pub stop_reason: Option<StopReason>,
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
    /// Run state ([`state`]).
    pub state: AtomicU8,
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
}

/// Why creating a VM failed.
#[derive(Debug)]
pub enum CreateError {
    /// Not enough free frames for its RAM or tables.
    OutOfMemory,
    /// The G-stage table could not be built.
    Stage2(fv_stage2::Stage2Error),
    /// A bad boot package entry.
    BadImage(&'static str),
}

/// Takes `nchunks` 2 MiB chunks of frames for guest RAM, and whether each must
/// be cleared before the guest sees it.
fn alloc_ram(nchunks: usize) -> Result<(Vec<HostPhysAddr>, Vec<bool>), CreateError> {
    let mut chunks = Vec::new();
    chunks
        .try_reserve(nchunks)
        .map_err(|_| CreateError::OutOfMemory)?;
    let mut needs_zero = Vec::new();
    needs_zero
        .try_reserve(nchunks)
        .map_err(|_| CreateError::OutOfMemory)?;
    let fresh_is_zero = mem::FRESH_RAM_IS_ZERO.load(Ordering::Relaxed);
    let mut g = FRAMES.lock();
    let fa = g.as_mut().ok_or(CreateError::OutOfMemory)?;
    for _ in 0..nchunks {
        match fa.alloc_contiguous((CHUNK / PAGE_SIZE) as usize, CHUNK) {
            Ok(hpa) => {
                chunks.push(hpa);
                needs_zero.push(!fresh_is_zero || fa.is_dirty(hpa, (CHUNK / PAGE_SIZE) as usize));
            }
            Err(_) => {
                for c in &chunks {
                    let _ = fa.free(*c, (CHUNK / PAGE_SIZE) as usize);
                }
                return Err(CreateError::OutOfMemory);
            }
        }
    }
    Ok((chunks, needs_zero))
}

impl core::fmt::Display for CreateError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            CreateError::OutOfMemory => f.write_str("not enough free memory"),
            CreateError::Stage2(e) => write!(f, "G-stage table: {e}"),
            CreateError::BadImage(what) => write!(f, "bad boot package entry: {what}"),
        }
    }
}

impl Vm {
    /// Builds a VM from its package entry: allocates all of its RAM, builds the
    /// G-stage root and maps the chunks its images and DTB go to (so a package
    /// that does not fit fails here, before any VM runs). The images are copied
    /// when its boot vCPU first runs ([`Vm::load_pending_images`]).
    pub fn create(
        id: usize,
        vmid: u16,
        vmid_bits: u32,
        mode: Mode,
        spec: VmSpec<'static>,
        dtb: Vec<u8>,
        cpus: &mut impl FnMut() -> usize,
    ) -> Result<Self, CreateError> {
        let ram = Range::<GuestPhysAddr>::new(fv_bootpkg::GUEST_RAM_BASE, spec.memory_bytes)
            .map_err(|_| CreateError::BadImage("RAM range overflows"))?;
        if !spec.memory_bytes.is_multiple_of(CHUNK) || spec.memory_bytes == 0 {
            return Err(CreateError::BadImage("RAM size is not a multiple of 2 MiB"));
        }
        let nchunks = (spec.memory_bytes / CHUNK) as usize;
        let (chunks, needs_zero) = alloc_ram(nchunks)?;
        let gstage = GStage::new(FrameTables::default(), mode).map_err(CreateError::Stage2)?;
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
        let hgatp = gstage.hgatp(vmid);
        let hsm = HsmStates::new(spec.vcpus as usize, 0)
            .map_err(|_| CreateError::BadImage("bad vCPU count"))?;
        let vcpus = (0..spec.vcpus)
            .map(|_| VcpuShared {
                cpu: AtomicUsize::new(cpus()),
                pending_irq: AtomicU64::new(0),
                fence: AtomicU32::new(0),
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
            state: AtomicU8::new(state::RUNNING),
            generation: AtomicU32::new(0),
            paused_at: AtomicU64::new(0),
            paused_ticks: AtomicU64::new(0),
            vcpus,
            inner: Mutex::new(VmInner {
                gstage: Some(gstage),
                mapped: alloc::vec![false; nchunks],
                needs_zero,
                chunks,
                hsm,
                devices,
                uart: Some(uart),
                input: VecDeque::new(),
                line: {
                    let mut v = Vec::new();
                    v.try_reserve_exact(LINE_BYTES)
                        .map_err(|_| CreateError::OutOfMemory)?;
                    v
                },
                line_since: 0,
                history: Ring::with_capacity(HISTORY_BYTES)
                    .map_err(|_| CreateError::OutOfMemory)?,
                stop_reason: None,
                stats: VmStats::default(),
            }),
            dtb,
            overhead_bytes: AtomicU64::new(0),
            images_pending: AtomicBool::new(true),
        };
        vm.map_images()?;
        let tables = vm
            .inner
            .lock()
            .gstage
            .as_ref()
            .map_or(0, |g| g.table_frames()) as u64
            * PAGE_SIZE;
        let desc = core::mem::size_of::<Vm>() as u64
            + vm.vcpus.len() as u64 * core::mem::size_of::<VcpuShared>() as u64
            + nchunks as u64 * 9
            + vm.dtb.len() as u64;
        vm.overhead_bytes.store(tables + desc, Ordering::Relaxed);
        Ok(vm)
    }

    /// Every image the VM boots from: (where, bytes, size in guest RAM) of
    /// the kernel segments, the initrd and the DTB.
    fn images(&self) -> impl Iterator<Item = (GuestPhysAddr, &[u8], u64)> + '_ {
        let spec = self.spec;
        spec.segments()
            .map(|seg| (seg.gpa, seg.data, seg.mem_size))
            .chain(spec.initrd.map(|i| (i.gpa, i.data, i.mem_size)))
            .chain(core::iter::once((
                spec.dtb_gpa,
                self.dtb.as_slice(),
                self.dtb.len() as u64,
            )))
    }

    /// Checks that every image lies in guest RAM and maps the chunks they go
    /// to (no copying).
    fn map_images(&self) -> Result<(), CreateError> {
        let mut inner = self.inner.lock();
        for (gpa, data, mem_size) in self.images() {
            let total = mem_size.max(data.len() as u64);
            if !self.ram.contains_span(gpa, total) {
                return Err(CreateError::BadImage("segment outside guest RAM"));
            }
            let mut off = 0;
            while off < total {
                let at = gpa
                    .checked_add(off)
                    .map_err(|_| CreateError::BadImage("overflow"))?;
                inner.ensure_mapped(self.ram, at)?;
                off += CHUNK - at.offset_from(self.ram.start).unwrap_or(0) % CHUNK;
            }
        }
        Ok(())
    }

    /// Copies the kernel segments, initrd and DTB into guest RAM (boot and reboot).
    pub fn load_images(&self) -> Result<(), CreateError> {
        self.copy_images(&mut self.inner.lock())
    }

    /// Loads the images if creation left them for the first run (called by
    /// the hart about to run the boot vCPU; once per VM, whoever comes first).
    pub fn load_pending_images(&self) -> Result<(), CreateError> {
        if !self.images_pending.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut inner = self.inner.lock();
        // Checked again under the lock: a reboot may have loaded them.
        if !self.images_pending.load(Ordering::Acquire) {
            return Ok(());
        }
        self.copy_images(&mut inner)
    }

    fn copy_images(&self, inner: &mut VmInner) -> Result<(), CreateError> {
        for (gpa, data, mem_size) in self.images() {
            inner.fill(self.ram, gpa, data, mem_size)?;
        }
        self.images_pending.store(false, Ordering::Release);
        Ok(())
    }

    /// Frees the VM's guest RAM and G-stage tables (its frames become dirty:
    /// cleared before anyone else sees them). Its vCPUs must all be out of the
    /// guest and the VM stopped. Returns the bytes freed.
    pub fn release(&self) -> u64 {
        let mut inner = self.inner.lock();
        let mut freed = 0;
        {
            let mut g = FRAMES.lock();
            if let Some(fa) = g.as_mut() {
                for c in inner.chunks.drain(..) {
                    if fa.free(c, (CHUNK / PAGE_SIZE) as usize).is_ok() {
                        freed += CHUNK;
                    }
                }
            }
        }
        if let Some(g) = inner.gstage.take() {
            freed += g.table_frames() as u64 * PAGE_SIZE;
            // No vCPU of this VM runs, and each fences its VMID before it runs
            // again (see `Vm::recreate`), so the tables can go at once.
            let _tables: FrameTables = g.destroy();
        }
        inner.mapped.iter_mut().for_each(|m| *m = false);
        inner.needs_zero.clear();
        freed
    }

    /// Builds the VM again from its package entry after [`Vm::release`]: new
    /// RAM, a new G-stage table, devices and HSM reset, images reloaded. The
    /// caller then bumps the generation so vCPU 0 starts.
    pub fn recreate(&self) -> Result<(), CreateError> {
        let nchunks = (self.ram.size / CHUNK) as usize;
        let (chunks, needs_zero) = alloc_ram(nchunks)?;
        let gstage = match GStage::new(FrameTables::default(), self.mode) {
            Ok(g) => g,
            Err(e) => {
                let mut g = FRAMES.lock();
                if let Some(fa) = g.as_mut() {
                    for c in &chunks {
                        let _ = fa.free(*c, (CHUNK / PAGE_SIZE) as usize);
                    }
                }
                return Err(CreateError::Stage2(e));
            }
        };
        self.hgatp.store(gstage.hgatp(self.vmid), Ordering::Release);
        {
            let mut inner = self.inner.lock();
            inner.gstage = Some(gstage);
            inner.chunks = chunks;
            inner.needs_zero = needs_zero;
            inner.mapped.iter_mut().for_each(|m| *m = false);
            inner.devices.reset();
            inner.input.clear();
            let _ = inner.hsm.reset(0);
            inner.stop_reason = None;
        }
        for v in &self.vcpus {
            v.pending_irq.store(0, Ordering::Release);
            v.fence.store(0, Ordering::Release);
            v.eip.store(false, Ordering::Release);
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
        matches!(
            self.state.load(Ordering::Acquire),
            state::STOPPED | state::DESTROYED
        )
    }
}

impl VmInner {
    /// Index of the chunk holding `gpa`, if it is RAM.
    fn chunk_of(ram: Range<GuestPhysAddr>, gpa: GuestPhysAddr) -> Option<usize> {
        if !ram.contains(gpa) {
            return None;
        }
        Some((gpa.offset_from(ram.start).ok()? / CHUNK) as usize)
    }

    /// Makes sure the chunk holding `gpa` is zeroed and mapped. Returns whether
    /// this call mapped it (false: it already was).
    pub fn ensure_mapped(
        &mut self,
        ram: Range<GuestPhysAddr>,
        gpa: GuestPhysAddr,
    ) -> Result<bool, CreateError> {
        let idx = Self::chunk_of(ram, gpa).ok_or(CreateError::BadImage("not guest RAM"))?;
        if self.mapped.get(idx).copied().unwrap_or(true) {
            return Ok(false);
        }
        let hpa = *self
            .chunks
            .get(idx)
            .ok_or(CreateError::BadImage("not guest RAM"))?;
        if self.needs_zero.get(idx).copied().unwrap_or(true) {
            // SAFETY: the chunk was allocated for this VM at creation and is not yet
            // mapped, so neither the guest nor anything else uses it.
            unsafe { mem::zero(hpa, CHUNK) };
            if let Some(z) = self.needs_zero.get_mut(idx) {
                *z = false;
            }
        }
        let gpa_chunk = ram
            .start
            .checked_add(idx as u64 * CHUNK)
            .map_err(|_| CreateError::BadImage("RAM range overflows"))?;
        self.gstage
            .as_mut()
            .ok_or(CreateError::OutOfMemory)?
            .map(gpa_chunk, hpa, CHUNK, Perms::R | Perms::W | Perms::X)
            .map_err(CreateError::Stage2)?;
        if let Some(m) = self.mapped.get_mut(idx) {
            *m = true;
        }
        self.stats.ram_faults += 1;
        Ok(true)
    }

    /// Writes `data` at `gpa` and zeroes up to `mem_size`, mapping chunks as needed.
    fn fill(
        &mut self,
        ram: Range<GuestPhysAddr>,
        gpa: GuestPhysAddr,
        data: &[u8],
        mem_size: u64,
    ) -> Result<(), CreateError> {
        if !ram.contains_span(gpa, mem_size.max(data.len() as u64)) {
            return Err(CreateError::BadImage("segment outside guest RAM"));
        }
        let mut off = 0u64;
        let total = mem_size.max(data.len() as u64);
        while off < total {
            let at = gpa
                .checked_add(off)
                .map_err(|_| CreateError::BadImage("overflow"))?;
            self.ensure_mapped(ram, at)?;
            let idx = Self::chunk_of(ram, at).ok_or(CreateError::BadImage("not guest RAM"))?;
            let in_chunk = at
                .offset_from(ram.start)
                .map_err(|_| CreateError::BadImage("overflow"))?
                % CHUNK;
            let n = (CHUNK - in_chunk).min(total - off);
            let hpa = self.chunks[idx]
                .checked_add(in_chunk)
                .map_err(|_| CreateError::BadImage("overflow"))?;
            let data_end = (data.len() as u64).min(off + n);
            // SAFETY: [hpa, hpa+n) lies inside one of this VM's chunks.
            unsafe {
                if off < data_end {
                    mem::copy_to(hpa, &data[off as usize..data_end as usize]);
                }
                let copied = data_end.saturating_sub(off);
                if copied < n {
                    mem::zero(
                        hpa.checked_add(copied)
                            .map_err(|_| CreateError::BadImage("overflow"))?,
                        n - copied,
                    );
                }
            }
            off += n;
        }
        Ok(())
    }
}

/// Guest memory access through the VM's G-stage mapping (so the guest can only
/// ever name its own RAM).
pub struct GStageMemory<'a> {
    /// The VM's locked state.
    pub inner: &'a mut VmInner,
    /// The VM's RAM range.
    pub ram: Range<GuestPhysAddr>,
}

impl GStageMemory<'_> {
    /// Calls `f` for each host-physical piece (never crossing a page) of
    /// `[gpa, gpa + len)`, mapping untouched RAM first.
    fn walk(
        &mut self,
        gpa: GuestPhysAddr,
        len: usize,
        mut f: impl FnMut(HostPhysAddr, core::ops::Range<usize>),
    ) -> Result<(), GuestMemoryError> {
        if !self.ram.contains_span(gpa, len as u64) {
            return Err(GuestMemoryError::NotRam);
        }
        let mut done = 0usize;
        while done < len {
            let at = gpa
                .checked_add(done as u64)
                .map_err(|_| GuestMemoryError::Overflow)?;
            // Untouched RAM reads as zeros: map it (zeroed) so reads and writes agree.
            self.inner
                .ensure_mapped(self.ram, at)
                .map_err(|_| GuestMemoryError::NotRam)?;
            let (hpa, _) = self
                .inner
                .gstage
                .as_ref()
                .ok_or(GuestMemoryError::NotRam)?
                .translate(at)
                .ok_or(GuestMemoryError::NotRam)?;
            let n = ((PAGE_SIZE - at.page_offset()) as usize).min(len - done);
            f(hpa, done..done + n);
            done += n;
        }
        Ok(())
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
