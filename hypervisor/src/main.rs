//! Ferrovisor, the bare-metal hypervisor binary (RISC-V, HS-mode).
//!
//! Power-on path: OpenSBI jumps to `_start` (boot.rs) → [`rust_main`] reads the
//! DTB OpenSBI handed over, checks for the H extension, probes the hart, sets up
//! the frame allocator, reads the boot package (QEMU's `-initrd`), creates every
//! VM, starts the other harts, and every hart enters its run loop
//! ([`sched::run_hart`]), where guest exits are handled.
#![no_std]
#![no_main]
#![deny(missing_docs)]

extern crate alloc;

mod boot;
mod console;
mod ctrl;
mod heap;
mod hostdev;
mod mem;
mod mgmt;
mod net;
mod pmu;
mod sbi;
mod sched;
mod vconsole;
mod vdisk;
mod vm;

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use fv_addr::{HostPhysAddr, Range, PAGE_SIZE};
use fv_arch_riscv64::firmware::{self, ShutdownReason};
use fv_arch_riscv64::regs::{self, num, Henvcfg};
use fv_arch_riscv64::vcpu::{HartFeatures, RiscvVcpu};
use fv_arch_riscv64::{csr, trap};
use fv_platform::{IsaExtensions, PlatformInfo};
use fv_stage2::Mode;

/// `time` at the hypervisor's first instruction (for the boot-latency figure).
pub static BOOT_TIME: AtomicU64 = AtomicU64::new(0);

/// Physical address of QEMU's SiFive test finisher, if the DTB's poweroff
/// syscon is one (its poweroff value is FINISHER_PASS, 0x5555).
static FINISHER: AtomicU64 = AtomicU64::new(0);

/// Turns the machine off. A failure must be visible to whoever started the
/// machine: OpenSBI's SRST always powers QEMU off with exit status 0, so on
/// failure the hypervisor writes FINISHER_FAIL with exit code 1 to the test
/// finisher itself when the DTB describes one.
pub fn power_off(reason: ShutdownReason) -> ! {
    console::drain_all();
    let finisher = FINISHER.load(Ordering::Relaxed);
    if reason == ShutdownReason::Failure && finisher != 0 {
        // SAFETY: the address is the test finisher's register from the DTB
        // (identity-mapped MMIO, owned by the hypervisor); writing FINISHER_FAIL
        // with code 1 ends the machine, which is what we want here.
        unsafe { core::ptr::write_volatile(finisher as *mut u32, (1 << 16) | 0x3333) };
        // QEMU ends the machine asynchronously: calling SRST now would let
        // OpenSBI write FINISHER_PASS behind our FAIL and sometimes win. Give
        // the finisher a moment (it never returns on QEMU), then fall back.
        let until =
            csr::time().saturating_add(sched::HOST.get().map_or(10_000_000, |h| h.timebase));
        while csr::time() < until {
            core::hint::spin_loop();
        }
    }
    firmware::shutdown(reason)
}

fn fatal(msg: core::fmt::Arguments<'_>) -> ! {
    console::force_unlock();
    console::write_fmt(format_args!("ferrovisor: FATAL: {}\n", msg));
    power_off(ShutdownReason::Failure)
}

fn fatal_trap(t: &trap::HostTrap) -> ! {
    fatal(format_args!(
        "trap in hypervisor: scause={:#x} stval={:#x} sepc={:#x}",
        t.scause, t.stval, t.sepc
    ))
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    fatal(format_args!("panic: {}", info))
}

/// `ticks` of a `timebase` Hz clock in µs.
pub fn ticks_to_us(ticks: u64, timebase: u64) -> u64 {
    ticks.saturating_mul(1_000_000) / timebase.max(1)
}

fn enable_host_fpu() {
    // SAFETY: turning the FPU on (FS = Initial) lets the world switch save and
    // restore guest FP registers; the hypervisor itself uses no FP.
    unsafe { csr::set::<{ num::SSTATUS }>(regs::fs::INITIAL) };
}

/// Reads the DTB at `pa` (checking its header) as a byte slice.
fn dtb_slice(pa: u64) -> &'static [u8] {
    if pa == 0 || !pa.is_multiple_of(8) {
        fatal(format_args!("no device tree (a1 = {:#x})", pa));
    }
    let mut hdr = [0u8; 8];
    // SAFETY: OpenSBI passes the physical address of the DTB in a1; its first
    // 8 bytes are the header's magic and totalsize.
    unsafe { mem::copy_from(HostPhysAddr::new(pa), &mut hdr) };
    let magic = u32::from_be_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]);
    let size = u32::from_be_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]);
    if magic != 0xd00d_feed || size > (4 << 20) {
        fatal(format_args!("a1 = {:#x} is not a device tree", pa));
    }
    // SAFETY: the DTB's frames are reserved below and never handed out or written.
    unsafe { mem::static_slice(HostPhysAddr::new(pa), u64::from(size)) }
}

fn probe_features(plat: &PlatformInfo) -> (HartFeatures, Mode) {
    let ext = plat.common_extensions();
    let sstc = ext.contains(IsaExtensions::SSTC) && csr::probe::<{ num::STIMECMP }>().is_some();
    let hstateen = csr::probe::<{ num::HSTATEEN0 }>().is_some();
    // SAFETY: hstateen1..3 only gate VS-mode access to sstateen1..3; 0 closes them.
    let hstateen_123 = unsafe {
        u8::from(csr::probe_write::<{ num::HSTATEEN1 }>(0).is_some())
            | u8::from(csr::probe_write::<{ num::HSTATEEN2 }>(0).is_some()) << 1
            | u8::from(csr::probe_write::<{ num::HSTATEEN3 }>(0).is_some()) << 2
    };
    // VS-reachable CSRs without a VS copy that vCPUs switch when present.
    let scontext = csr::probe::<{ num::SCONTEXT }>().is_some();
    let ssaia = csr::probe::<{ num::VSISELECT }>().is_some();
    let mut want = Henvcfg::FIOM;
    if sstc {
        want |= Henvcfg::STCE;
    }
    if ext.contains(IsaExtensions::ZICBOM) {
        want |= Henvcfg::CBIE_FLUSH | Henvcfg::CBCFE;
    }
    if ext.contains(IsaExtensions::ZICBOZ) {
        want |= Henvcfg::CBZE;
    }
    if ext.contains(IsaExtensions::SVPBMT) {
        want |= Henvcfg::PBMTE;
    }
    // Svadu is off for guests until a vCPU asks through SBI FWFT.
    if ext.contains(IsaExtensions::SVADU) {
        want |= Henvcfg::ADUE;
    }
    // SAFETY: henvcfg only shapes VS/VU-mode behaviour; no guest runs yet.
    let accepted = unsafe { csr::probe_write::<{ num::HENVCFG }>(want.bits()) }.unwrap_or(0);
    let fwft_henvcfg = accepted & Henvcfg::ADUE.bits();
    let henvcfg = accepted & !fwft_henvcfg;
    // VMIDLEN: write ones to every VMID bit and see which stick (privileged spec, hgatp).
    // SAFETY: no guest runs; hgatp only affects guest translation.
    let vmid_bits = unsafe { csr::probe_write::<{ num::HGATP }>(regs::hgatp::VMID_MASK) }
        .map(|v| ((v & regs::hgatp::VMID_MASK) >> regs::hgatp::VMID_SHIFT).count_ones())
        .unwrap_or(0);
    // Prefer the shortest G-stage walk that covers guest RAM (Sv39x4: 41-bit GPAs).
    let sv39x4 = regs::hgatp::MODE_SV39X4 << regs::hgatp::MODE_SHIFT;
    let sv48x4 = regs::hgatp::MODE_SV48X4 << regs::hgatp::MODE_SHIFT;
    // SAFETY: as above; PPN 0 is never used for translation (no guest runs).
    let mode = if unsafe { csr::probe_write::<{ num::HGATP }>(sv39x4) } == Some(sv39x4) {
        Mode::Sv39x4
    } else if unsafe { csr::probe_write::<{ num::HGATP }>(sv48x4) } == Some(sv48x4) {
        Mode::Sv48x4
    } else {
        fatal(format_args!("hgatp supports neither Sv39x4 nor Sv48x4"))
    };
    // SAFETY: back to Bare until a vCPU is loaded.
    unsafe { csr::write::<{ num::HGATP }>(0) };
    (
        HartFeatures {
            sstc,
            hstateen,
            hstateen_123,
            henvcfg,
            fwft_henvcfg,
            vmid_bits,
            scontext,
            ssaia,
        },
        mode,
    )
}

/// Entry of the boot hart (from `_start`), with OpenSBI's `a0`/`a1`.
pub extern "C" fn rust_main(hartid: u64, dtb_pa: u64, start_time: u64) -> ! {
    BOOT_TIME.store(start_time, Ordering::Relaxed);
    heap::init();
    trap::install();
    trap::set_fatal_hook(fatal_trap);
    enable_host_fpu();
    log!(
        "Ferrovisor {} starting on hart {}",
        env!("CARGO_PKG_VERSION"),
        hartid
    );

    let dtb = dtb_slice(dtb_pa);
    let plat = match fv_platform::parse(dtb) {
        Ok(p) => p,
        Err(e) => fatal(format_args!("cannot read the device tree: {}", e)),
    };
    if let Some(u) = &plat.uart {
        console::use_uart(u.base.raw(), u.reg_shift);
    }
    if let Some(p) = plat.poweroff.as_ref().filter(|p| p.value == 0x5555) {
        FINISHER.store(
            p.regmap.start.raw() + u64::from(p.offset),
            Ordering::Relaxed,
        );
    }
    let Some(me) = plat.hart(hartid) else {
        fatal(format_args!(
            "boot hart {} is not in the device tree",
            hartid
        ))
    };
    if csr::probe::<{ num::HSTATUS }>().is_none() || !me.extensions.contains(IsaExtensions::H) {
        log!(
            "FATAL: hart {} has no hypervisor (H) extension (riscv,isa = \"{}\")",
            hartid,
            me.isa
        );
        log!("Ferrovisor needs the H extension: run QEMU with a CPU that has it (e.g. -cpu rv64).");
        power_off(ShutdownReason::Failure);
    }
    let (mut features, mode) = probe_features(&plat);
    banner(&plat, &features, mode);

    // Frames: all RAM minus firmware, reserved memory, this image, the DTB and the boot package.
    let mut fa = fv_frame_alloc::FrameAllocator::new();
    for r in &plat.memory {
        if let Err(e) = fa.add_region(*r) {
            log!("ignoring RAM region {:?}: {}", r, e);
        }
    }
    let (img_start, img_end) = boot::image_range();
    let mut reserved: Vec<Range<HostPhysAddr>> = plat.reserved.clone();
    reserved.extend(Range::new(
        HostPhysAddr::new(img_start),
        img_end - img_start,
    ));
    reserved.extend(Range::new(HostPhysAddr::new(dtb_pa), dtb.len() as u64));
    let Some(pkg_range) = plat.initrd else {
        fatal(format_args!(
            "no boot package: start QEMU with -initrd <package> (ferrovisor run does this)"
        ))
    };
    reserved.push(pkg_range);
    for r in &reserved {
        if let Err(e) = fa.reserve(*r) {
            fatal(format_args!("cannot reserve {:?}: {}", r, e));
        }
    }
    log!(
        "memory: {} MiB usable of {} MiB (image {:#x}..{:#x}, {} reserved ranges)",
        (fa.free_frames() as u64 * PAGE_SIZE) >> 20,
        (fa.total_frames() as u64 * PAGE_SIZE) >> 20,
        img_start,
        img_end,
        reserved.len()
    );
    setup_cbo_zero(&mut fa, dtb);
    if fv_platform::dtb::Dtb::parse(dtb).is_ok_and(|t| t.root().is_compatible("riscv-virtio")) {
        mem::FRESH_RAM_IS_ZERO.store(true, Ordering::Relaxed);
    }
    *mem::FRAMES.lock() = Some(fa);
    hostdev::probe(
        &plat.virtio_mmio,
        &plat.memory,
        csr::time,
        plat.timebase_frequency,
    );

    // SAFETY: the package's frames are reserved above and never written.
    let pkg_bytes = unsafe { mem::static_slice(pkg_range.start, pkg_range.size) };
    let checked_from = csr::time();
    let pkg = match fv_bootpkg::Package::parse(pkg_bytes) {
        Ok(p) => p,
        Err(e) => fatal(format_args!(
            "bad boot package at {:?}: {}",
            pkg_range.start, e
        )),
    };
    log!(
        "boot package: {} KiB checked in {} us",
        pkg.as_bytes().len() >> 10,
        ticks_to_us(
            csr::time().saturating_sub(checked_from),
            plat.timebase_frequency
        )
    );

    // VMIDs: VM i gets VMID i + 1. With too few VMID bits for every VM, run
    // without VMIDs and flush G-stage translations on every VM switch instead.
    if features.vmid_bits < 32 && pkg.vm_count() as u64 >= (1u64 << features.vmid_bits) {
        if features.vmid_bits != 0 {
            log!(
                "{} VMs need more than {} VMID bits: VMIDs off, G-stage flushed on VM switches",
                pkg.vm_count(),
                features.vmid_bits
            );
        }
        features.vmid_bits = 0;
    }
    // Harts: the boot hart is logical CPU 0; others with H follow in hart-ID order.
    let mut hartids = [0u64; boot::MAX_HARTS];
    hartids[0] = hartid;
    let mut ncpus = 1;
    for h in plat
        .harts
        .iter()
        .filter(|h| h.enabled && h.hartid != hartid)
    {
        if ncpus == boot::MAX_HARTS {
            log!(
                "hart {} not used: at most {} harts",
                h.hartid,
                boot::MAX_HARTS
            );
            continue;
        }
        if !h.extensions.contains(IsaExtensions::H) {
            log!("hart {} not used: no H extension", h.hartid);
            continue;
        }
        hartids[ncpus] = h.hartid;
        ncpus += 1;
    }
    sched::HOST.call_once(|| sched::Host {
        features,
        timebase: plat.timebase_frequency,
        ncpus,
        hartids,
    });

    // VMs.
    let guest_isa = fv_platform::guest_isa(&me.isa);
    let mut next_cpu = 0usize;
    let mut place = || {
        let c = next_cpu % ncpus;
        next_cpu += 1;
        c
    };
    let mut vms = Vec::new();
    for (i, spec) in pkg.vms().enumerate() {
        let nics = vm_nics(&spec);
        let dtb = match guest_dtb(&plat, dtb, &spec, &nics, guest_isa.as_ref()) {
            Ok(d) => d,
            Err(e) => {
                log!("VM '{}' not created: device tree: {:?}", spec.name, e);
                continue;
            }
        };
        let vmid = (i + 1) as u16;
        let pin = spec.sched.pin.map(|p| p as usize).filter(|&p| {
            let ok = p < ncpus;
            if !ok {
                log!(
                    "VM '{}' is pinned to hart {} but only {} harts run: not pinned",
                    spec.name,
                    p,
                    ncpus
                );
            }
            ok
        });
        let mut place_vm = || pin.unwrap_or_else(&mut place);
        match vm::Vm::create(
            i,
            vmid,
            features.vmid_bits,
            mode,
            spec,
            vm::GuestSetup { dtb, nics },
            &mut place_vm,
        ) {
            Ok(v) => vms.push(v),
            Err(e) => log!("VM '{}' not created: {}", spec.name, e),
        }
    }
    if vms.is_empty() {
        fatal(format_args!("no VM could be created"));
    }
    for (i, v) in vms.iter_mut().enumerate() {
        v.id = i;
    }
    let sched_config = fv_sched::SchedConfig::from_timebase(plat.timebase_frequency);
    let us = |ticks: u64| ticks.saturating_mul(1_000_000) / plat.timebase_frequency.max(1);
    log!(
        "scheduler: period {} us, min slice {} us, wake-up granularity {} us",
        us(sched_config.latency()),
        us(sched_config.min_slice()),
        us(sched_config.wakeup_granularity())
    );
    for (cpu, q) in sched::QUEUES.iter().enumerate().take(ncpus) {
        *q.lock() = Some(sched::HartQueue {
            rq: fv_sched::RunQueue::new(cpu, sched_config),
            slots: Vec::new(),
        });
    }
    for v in &vms {
        for (j, sh) in v.vcpus.iter().enumerate() {
            // SAFETY: v.hgatp selects the VM's own G-stage table, which lives in
            // the VM (and so in VMS, forever).
            let mut arch = unsafe { RiscvVcpu::new(features, v.hgatp.load(Ordering::Relaxed)) };
            if j == 0 {
                use fv_vm::Vcpu;
                arch.reset(v.boot_state());
            }
            let key = fv_sched::VcpuKey(((v.id as u32) << 16) | j as u32);
            let pin = v.spec.sched.pin.map(|p| p as usize).filter(|&p| p < ncpus);
            let params = fv_sched::VcpuParams {
                weight: v.spec.sched.weight,
                pin,
                stopped: j != 0,
            };
            let cpu = sh.cpu.load(Ordering::Relaxed);
            let mut q = sched::QUEUES[cpu].lock();
            let Some(hq) = q.as_mut() else {
                fatal(format_args!("no run queue for CPU {}", cpu))
            };
            if let Err(e) = hq.rq.add(key, params) {
                fatal(format_args!(
                    "scheduler refused vCPU {} of VM '{}': {:?}",
                    j, v.name, e
                ));
            }
            hq.slots.push(sched::Slot {
                key,
                vm: v.id,
                vcpu: j,
                arch,
                timer: None,
                generation: 0,
                paused_seen: 0,
                parked: false,
                gfence: false,
                suspend: None,
                pmu: Default::default(),
            });
        }
        sched::report_vm(v);
    }
    sched::RUNNING_VMS.store(vms.len(), Ordering::Release);
    sched::VMS.call_once(|| vms);
    connect_nics(&pkg);
    log!("heap in use: {} KiB", heap::used() >> 10);

    for (cpu, id) in hartids.iter().enumerate().take(ncpus).skip(1) {
        if let Err(e) = boot::start_secondary(*id, cpu) {
            log!("could not start hart {}: SBI error {}", id, e);
        }
    }
    sched::run_hart(0)
}

/// Enables `cbo.zero` for zeroing guest RAM if every hart has Zicboz and the
/// instruction works in S-mode (tried on a scratch frame).
fn setup_cbo_zero(fa: &mut fv_frame_alloc::FrameAllocator, dtb: &[u8]) {
    let Ok(tree) = fv_platform::dtb::Dtb::parse(dtb) else {
        return;
    };
    let mut block: Option<u64> = None;
    for node in tree.nodes().filter(|n| n.device_type() == Some("cpu")) {
        let b = node
            .property("riscv,cboz-block-size")
            .and_then(|p| p.as_u32())
            .map(u64::from);
        match (block, b) {
            (None, Some(b)) => block = Some(b),
            (Some(x), Some(b)) if x == b => {}
            _ => return,
        }
    }
    let Some(block) = block.filter(|b| b.is_power_of_two() && *b >= 8 && *b <= PAGE_SIZE) else {
        return;
    };
    let Ok(scratch) = fa.alloc() else { return };
    // SAFETY: the scratch frame was just allocated and is ours; page-aligned,
    // so block-aligned.
    let ok = unsafe { fv_arch_riscv64::cache::probe_cbo_zero(scratch.raw()) };
    let _ = fa.free(scratch, 1);
    if ok {
        mem::CBOZ_BLOCK.store(block, Ordering::Relaxed);
        log!("guest RAM is zeroed with cbo.zero ({} byte blocks)", block);
    }
}

/// Entry of a secondary hart (from `_start_secondary`).
pub extern "C" fn secondary_main(_hartid: u64, cpu: usize) -> ! {
    trap::install();
    enable_host_fpu();
    sched::run_hart(cpu)
}

/// A property every cpu node of the host DTB has with the same value.
fn cpu_u32(dtb: &[u8], name: &str) -> Option<u32> {
    let tree = fv_platform::dtb::Dtb::parse(dtb).ok()?;
    let mut value = None;
    for node in tree.nodes().filter(|n| n.device_type() == Some("cpu")) {
        let v = node.property(name).and_then(|p| p.as_u32())?;
        if value.is_some_and(|x| x != v) {
            return None;
        }
        value = Some(v);
    }
    value
}

/// The virtio-net NICs the package gives a VM.
fn vm_nics(spec: &fv_bootpkg::VmSpec<'_>) -> Vec<vm::NicSpec> {
    spec.devices()
        .filter_map(|d| match d.kind {
            fv_bootpkg::DeviceKind::Net { switch, mac } => Some(vm::NicSpec {
                slot: d.slot,
                switch,
                mac,
            }),
            _ => None,
        })
        .collect()
}

/// The package's switches.
fn switch_plans<'a>(pkg: &fv_bootpkg::Package<'a>) -> Vec<net::SwitchPlan<'a>> {
    pkg.switches()
        .map(|s| net::SwitchPlan {
            name: s.name,
            uplink: s.uplink,
        })
        .collect()
}

/// Builds the package's switches with every VM NIC as a port, and connects
/// each NIC's device to its port. Once, after the VM table exists.
fn connect_nics(pkg: &fv_bootpkg::Package<'_>) {
    let plans = switch_plans(pkg);
    if plans.is_empty() {
        return;
    }
    let mut devs = Vec::new();
    let mut nics = Vec::new();
    for v in sched::vms() {
        for n in &v.inner.lock().nics {
            devs.push((v, n.dev));
            nics.push(net::NicPlan {
                vm: v.id,
                switch: n.switch,
                mac: n.mac,
            });
        }
    }
    let ports = net::init(&plans, &nics);
    for ((v, dev), port) in devs.into_iter().zip(ports) {
        let Some(port) = port else { continue };
        if let Some(d) = v.inner.lock().devices.device_mut::<vm::NicDevice>(dev) {
            d.transport_mut().device_mut().backend_mut().connect(port);
        }
    }
}

fn guest_dtb(
    plat: &PlatformInfo,
    plat_dtb: &[u8],
    spec: &fv_bootpkg::VmSpec<'_>,
    nics: &[vm::NicSpec],
    isa: Option<&fv_platform::GuestIsa>,
) -> Result<Vec<u8>, fv_platform::FdtWriteError> {
    let Some(isa) = isa else {
        return Err(fv_platform::FdtWriteError::BadIsa);
    };
    let memory = Range::new(fv_bootpkg::GUEST_RAM_BASE, spec.memory_bytes)
        .map_err(|_| fv_platform::FdtWriteError::BadMemory)?;
    let initrd = spec
        .initrd
        .and_then(|s| Range::new(s.gpa, s.data.len() as u64).ok());
    let cmdline = (!spec.cmdline.is_empty()).then_some(spec.cmdline);
    let seed = guest_rng_seed(plat.rng_seed.as_deref().unwrap_or(&[]), spec.name);
    // The console in slot 0 (if any), then the devices in slot order: Linux
    // probes them in device-tree order, so the disk in the lowest slot is vda.
    let console = spec
        .flags
        .contains(fv_bootpkg::VmFlags::CONSOLE_VIRTIO)
        .then_some(fv_platform::GuestVirtioMmio {
            base: vm::GUEST_VIRTIO_CONSOLE_BASE,
            size: fv_virtio::mmio::MMIO_SIZE,
            irq: vm::GUEST_VIRTIO_CONSOLE_IRQ,
        });
    let mut slots: Vec<u8> = spec
        .devices()
        .filter(|d| !matches!(d.kind, fv_bootpkg::DeviceKind::Net { .. }))
        .map(|d| d.slot)
        .chain(nics.iter().map(|n| n.slot))
        .collect();
    slots.sort_unstable();
    let virtio: Vec<fv_platform::GuestVirtioMmio> = console
        .into_iter()
        .chain(slots.into_iter().map(|s| fv_platform::GuestVirtioMmio {
            base: vm::virtio_slot_base(s),
            size: fv_virtio::mmio::MMIO_SIZE,
            irq: vm::virtio_slot_irq(s),
        }))
        .collect();
    let virtio_mmio: &[fv_platform::GuestVirtioMmio] = &virtio;
    let cfg = fv_platform::GuestFdtConfig {
        vcpus: spec.vcpus,
        memory,
        timebase_frequency: plat.timebase_frequency,
        isa: &isa.isa,
        isa_extensions: &isa.extensions,
        mmu_type: fv_platform::MmuType::Sv39,
        bootargs: cmdline,
        initrd,
        stdout: fv_platform::Stdout::Uart,
        uart: Some(fv_platform::GuestUart {
            base: vm::GUEST_UART_BASE,
            irq: vm::GUEST_UART_IRQ,
        }),
        plic: Some(fv_platform::GuestPlic {
            base: vm::GUEST_PLIC_BASE,
            ndev: vm::GUEST_PLIC_NDEV,
        }),
        syscon: None,
        virtio_mmio,
        rng_seed: Some(&seed),
        cbom_block_size: cpu_u32(plat_dtb, "riscv,cbom-block-size"),
        cboz_block_size: cpu_u32(plat_dtb, "riscv,cboz-block-size"),
    };
    fv_platform::build_guest_fdt(&cfg)
}

/// 32 bytes of entropy for one guest's `/chosen/rng-seed`: the firmware's seed
/// mixed with the VM's name and the boot time, so no two VMs (and no two boots)
/// share a seed. Linux credits it to its pool; without it every syscall pays
/// for an uninitialised random generator.
fn guest_rng_seed(host_seed: &[u8], name: &str) -> [u8; 32] {
    // splitmix64 over the inputs: a mixing function, not a CSPRNG; the entropy
    // comes from the firmware seed.
    fn mix(mut z: u64) -> u64 {
        z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    let mut state = mix(csr::time());
    for &b in host_seed.iter().chain(name.as_bytes()) {
        state = mix(state ^ u64::from(b));
    }
    let mut out = [0u8; 32];
    for chunk in out.chunks_mut(8) {
        state = mix(state);
        chunk.copy_from_slice(&state.to_le_bytes());
    }
    out
}

fn banner(plat: &PlatformInfo, f: &HartFeatures, mode: Mode) {
    log!(
        "platform: {} hart(s), timebase {} Hz",
        plat.harts.len(),
        plat.timebase_frequency
    );
    for h in &plat.harts {
        log!(
            "  hart {}{}: {}",
            h.hartid,
            if h.enabled { "" } else { " (disabled)" },
            h.isa
        );
    }
    for r in &plat.memory {
        log!("  RAM {:#x}..{:#x}", r.start.raw(), r.end().raw());
    }
    for r in &plat.reserved {
        log!("  reserved {:#x}..{:#x}", r.start.raw(), r.end().raw());
    }
    if let Some(u) = &plat.uart {
        log!("  UART ns16550a at {:#x} irq {:?}", u.base.raw(), u.irq);
    }
    if let Some(p) = &plat.plic {
        log!(
            "  PLIC at {:#x}, {} sources, {} contexts",
            p.base.raw(),
            p.ndev,
            p.contexts.len()
        );
    }
    if let Some(a) = &plat.aplic {
        log!("  APLIC at {:#x}, {} sources", a.base.raw(), a.num_sources);
    }
    if let Some(i) = &plat.imsic {
        log!(
            "  IMSIC at {:#x}, guest index bits {}",
            i.base.raw(),
            i.guest_index_bits
        );
    }
    if let Some(c) = &plat.clint {
        log!("  CLINT at {:#x}", c.start.raw());
    }
    for m in &plat.aclint_mtimer {
        log!("  ACLINT MTIMER at {:#x}", m.start.raw());
    }
    log!("  {} virtio-mmio slot(s)", plat.virtio_mmio.len());
    log!(
        "hart features: Sstc {}, Smstateen {} (hstateen1..3 writable {:#b}), scontext {}, Ssaia {}, VMID bits {}, henvcfg {:#x}, G-stage {:?}",
        f.sstc,
        f.hstateen,
        f.hstateen_123,
        f.scontext,
        f.ssaia,
        f.vmid_bits,
        f.henvcfg,
        mode
    );
}
