//! `build_guest_fdt`: build, then read back with our own `parse` and with the
//! `fdt` crate.
#![allow(clippy::unwrap_used, clippy::panic)] // test code: a panic is how a test fails

use fv_addr::{GuestPhysAddr, HostPhysAddr, Range};
use fv_platform::dtb::Dtb;
use fv_platform::{
    build_guest_fdt, guest_isa, guest_plic_size, parse, FdtWriteError, GuestFdtConfig, GuestPlic,
    GuestSyscon, GuestUart, GuestVirtioMmio, IsaExtensions, MmuType, PrivMode, Stdout,
    SYSCON_POWEROFF_VALUE, SYSCON_REBOOT_VALUE,
};

const HOST_ISA: &str =
    "rv64imafdch_zicbom_zicboz_zicntr_zicsr_zifencei_zihpm_zba_zbb_zbs_sstc_svadu_svvptc";

fn gpa_range(start: u64, size: u64) -> Range<GuestPhysAddr> {
    Range::<GuestPhysAddr>::new(GuestPhysAddr::new(start), size).unwrap()
}

fn with_config<R>(vcpus: u32, f: impl FnOnce(&mut GuestFdtConfig<'_>) -> R) -> R {
    let isa = guest_isa(HOST_ISA).unwrap();
    let seed = [0x5a; 32];
    let mut cfg = GuestFdtConfig {
        cbom_block_size: Some(64),
        cboz_block_size: Some(64),
        vcpus,
        memory: gpa_range(0x8000_0000, 128 << 20),
        timebase_frequency: 10_000_000,
        isa: &isa.isa,
        isa_extensions: &isa.extensions,
        mmu_type: MmuType::Sv48,
        bootargs: Some("console=ttyS0 earlycon quiet"),
        initrd: Some(gpa_range(0x8800_0000, 0x10_0000)),
        stdout: Stdout::Uart,
        uart: Some(GuestUart {
            base: GuestPhysAddr::new(0x1000_0000),
            irq: 10,
        }),
        plic: Some(GuestPlic {
            base: GuestPhysAddr::new(0xc00_0000),
            ndev: 31,
        }),
        syscon: Some(GuestSyscon {
            base: GuestPhysAddr::new(0x10_0000),
            poweroff_value: SYSCON_POWEROFF_VALUE,
            reboot_value: SYSCON_REBOOT_VALUE,
        }),
        virtio_mmio: &[],
        rng_seed: Some(&seed),
    };
    f(&mut cfg)
}

fn hr(start: u64, size: u64) -> Range<HostPhysAddr> {
    Range::<HostPhysAddr>::new(HostPhysAddr::new(start), size).unwrap()
}

#[test]
fn round_trip_through_our_parser() {
    let blob = with_config(4, |c| build_guest_fdt(c)).unwrap();
    let p = parse(&blob).unwrap();
    assert_eq!(p.memory, vec![hr(0x8000_0000, 128 << 20)]);
    assert!(p.reserved.is_empty());
    assert_eq!(p.timebase_frequency, 10_000_000);
    assert_eq!(p.harts.len(), 4);
    let want_isa = guest_isa(HOST_ISA).unwrap();
    assert_eq!(
        want_isa.isa,
        "rv64imafdc_zicbom_zicboz_zicntr_zicsr_zifencei_zba_zbb_zbs_sstc_svvptc"
    );
    for (i, h) in p.harts.iter().enumerate() {
        assert_eq!(h.hartid, i as u64);
        assert!(h.enabled);
        assert_eq!(h.isa, want_isa.isa);
        assert_eq!(h.mmu_type, Some(MmuType::Sv48));
        assert!(!h.extensions.contains(IsaExtensions::H));
        assert!(!h.extensions.contains(IsaExtensions::SVADU));
        assert!(h
            .extensions
            .contains(IsaExtensions::SSTC | IsaExtensions::SVVPTC | IsaExtensions::ZICBOM));
    }
    let uart = p.uart.unwrap();
    assert_eq!(
        (uart.base, uart.size),
        (HostPhysAddr::new(0x1000_0000), 0x100)
    );
    assert_eq!((uart.irq, uart.clock), (Some(10), Some(3_686_400)));
    let plic = p.plic.unwrap();
    assert_eq!(plic.base, HostPhysAddr::new(0xc00_0000));
    assert_eq!(plic.size, guest_plic_size(4));
    assert_eq!(plic.size, 0x20_4000);
    assert_eq!(plic.ndev, 31);
    // Context i is vCPU i's S-mode external interrupt; nothing else.
    for i in 0..4u32 {
        assert_eq!(plic.context(u64::from(i), PrivMode::Supervisor), Some(i));
    }
    assert_eq!(plic.contexts.len(), 4);
    let off = p.poweroff.unwrap();
    assert_eq!(
        (off.regmap, off.offset, off.value),
        (hr(0x10_0000, 0x1000), 0, 0x5555)
    );
    assert_eq!(p.reboot.unwrap().value, 0x7777);
    assert_eq!(p.initrd, Some(hr(0x8800_0000, 0x10_0000)));
    assert_eq!(p.bootargs.as_deref(), Some("console=ttyS0 earlycon quiet"));
    assert_eq!(p.rng_seed, Some(vec![0x5a; 32]));
    assert!(p.aplic.is_none() && p.imsic.is_none() && p.clint.is_none());
    assert!(p.virtio_mmio.is_empty());
}

#[test]
fn node_layout_is_what_linux_expects() {
    let blob = with_config(2, |c| build_guest_fdt(c)).unwrap();
    let dtb = Dtb::parse(&blob).unwrap();
    let cpus = dtb.find_path("/cpus").unwrap();
    assert_eq!(cpus.property("#address-cells").unwrap().as_u32(), Some(1));
    assert_eq!(cpus.property("#size-cells").unwrap().as_u32(), Some(0));
    // Linux reads timebase-frequency as one u32 cell.
    assert_eq!(cpus.property("timebase-frequency").unwrap().value.len(), 4);
    for i in 0..2u32 {
        let cpu = dtb.find_path(&format!("/cpus/cpu@{i}")).unwrap();
        assert_eq!(cpu.device_type(), Some("cpu"));
        assert_eq!(cpu.property("reg").unwrap().as_u32(), Some(i));
        assert_eq!(cpu.property("status").unwrap().as_str(), Some("okay"));
        assert!(cpu.is_compatible("riscv"));
        assert_eq!(
            cpu.property("mmu-type").unwrap().as_str(),
            Some("riscv,sv48")
        );
        assert_eq!(
            cpu.property("riscv,isa-base").unwrap().as_str(),
            Some("rv64i")
        );
        let exts: Vec<&str> = cpu
            .property("riscv,isa-extensions")
            .unwrap()
            .as_str_list()
            .unwrap()
            .collect();
        assert_eq!(exts, guest_isa(HOST_ISA).unwrap().extensions);
        let intc = cpu.children().next().unwrap();
        assert_eq!(intc.name(), "interrupt-controller");
        assert!(intc.is_compatible("riscv,cpu-intc"));
        assert!(intc
            .property("interrupt-controller")
            .unwrap()
            .value
            .is_empty());
        assert_eq!(intc.property("#interrupt-cells").unwrap().as_u32(), Some(1));
        assert!(intc.phandle().is_some());
    }
    let chosen = dtb.find_path("/chosen").unwrap();
    assert_eq!(
        chosen.property("stdout-path").unwrap().as_str(),
        Some("/soc/serial@10000000")
    );
    assert_eq!(
        chosen
            .property("linux,initrd-start")
            .unwrap()
            .as_u32_or_u64(),
        Some(0x8800_0000)
    );
    assert_eq!(
        chosen.property("linux,initrd-end").unwrap().as_u32_or_u64(),
        Some(0x8810_0000)
    );
    assert_eq!(
        dtb.find_path("/aliases")
            .unwrap()
            .property("serial0")
            .unwrap()
            .as_str(),
        Some("/soc/serial@10000000")
    );
    let plic = dtb.find_path("/soc/plic@c000000").unwrap();
    assert!(plic.is_compatible("sifive,plic-1.0.0") && plic.is_compatible("riscv,plic0"));
    assert!(plic.property("interrupt-controller").is_some());
    assert_eq!(plic.property("#interrupt-cells").unwrap().as_u32(), Some(1));
    let serial = dtb.find_path("/soc/serial@10000000").unwrap();
    assert_eq!(
        serial.property("interrupt-parent").unwrap().as_u32(),
        plic.phandle()
    );
    assert!(dtb
        .find_path("/soc/test@100000")
        .unwrap()
        .is_compatible("syscon"));
    assert!(dtb
        .find_path("/poweroff")
        .unwrap()
        .is_compatible("syscon-poweroff"));
}

#[test]
fn round_trip_through_the_fdt_crate() {
    let blob = with_config(3, |c| build_guest_fdt(c)).unwrap();
    let fdt = fdt::Fdt::new(&blob).unwrap();
    assert_eq!(fdt.cpus().count(), 3);
    for (i, cpu) in fdt.cpus().enumerate() {
        assert_eq!(cpu.ids().first(), i);
        assert_eq!(cpu.timebase_frequency(), 10_000_000);
        assert_eq!(
            cpu.property("riscv,isa").and_then(|p| p.as_str()),
            Some(guest_isa(HOST_ISA).unwrap().isa.as_str())
        );
    }
    let mem = fdt.memory().regions().next().unwrap();
    assert_eq!(mem.starting_address as usize, 0x8000_0000);
    assert_eq!(mem.size, Some(128 << 20));
    let chosen = fdt.chosen();
    assert_eq!(chosen.bootargs(), Some("console=ttyS0 earlycon quiet"));
    assert_eq!(chosen.stdout().unwrap().name, "serial@10000000");
    let uart = fdt.find_compatible(&["ns16550a"]).unwrap();
    assert_eq!(
        uart.reg().unwrap().next().unwrap().starting_address as usize,
        0x1000_0000
    );
    assert_eq!(uart.interrupts().unwrap().next(), Some(10));
    let plic = fdt.find_node("/soc/plic").unwrap();
    let ext: Vec<u32> = plic
        .property("interrupts-extended")
        .unwrap()
        .value
        .chunks(4)
        .map(|c| u32::from_be_bytes(c.try_into().unwrap()))
        .collect();
    // (intc phandle, 9) per vCPU, in vCPU order.
    assert_eq!(ext.len(), 6);
    for (i, pair) in ext.chunks(2).enumerate() {
        assert_eq!(pair[1], 9);
        let intc = fdt.find_phandle(pair[0]).unwrap();
        assert_eq!(intc.compatible().unwrap().first(), "riscv,cpu-intc");
        let cpu = fdt.find_node(&format!("/cpus/cpu@{i}")).unwrap();
        assert!(cpu
            .children()
            .any(|c| c.property("phandle").unwrap().as_usize() == Some(pair[0] as usize)));
    }
}

#[test]
fn minimal_guest() {
    let blob = with_config(1, |c| {
        c.uart = None;
        c.plic = None;
        c.syscon = None;
        c.stdout = Stdout::None;
        c.bootargs = None;
        c.initrd = None;
        c.rng_seed = None;
        c.isa_extensions = &[];
        build_guest_fdt(c)
    })
    .unwrap();
    let p = parse(&blob).unwrap();
    assert_eq!(p.harts.len(), 1);
    assert!(p.uart.is_none() && p.plic.is_none() && p.poweroff.is_none());
    assert!(p.initrd.is_none() && p.bootargs.is_none() && p.rng_seed.is_none());
    let dtb = Dtb::parse(&blob).unwrap();
    let cpu = dtb.find_path("/cpus/cpu@0").unwrap();
    assert!(cpu.property("riscv,isa-extensions").is_none());
    assert!(dtb.find_path("/aliases").is_none());
    assert!(dtb
        .find_path("/chosen")
        .unwrap()
        .property("stdout-path")
        .is_none());
}

#[test]
fn uart_without_plic_has_no_interrupt() {
    let blob = with_config(1, |c| {
        c.plic = None;
        build_guest_fdt(c)
    })
    .unwrap();
    let uart = parse(&blob).unwrap().uart.unwrap();
    assert_eq!(uart.irq, None);
}

#[test]
fn many_vcpus() {
    let blob = with_config(64, |c| build_guest_fdt(c)).unwrap();
    let p = parse(&blob).unwrap();
    assert_eq!(p.harts.len(), 64);
    assert_eq!(p.harts[63].hartid, 63);
    // cpu@3f: unit addresses are hex.
    assert!(Dtb::parse(&blob)
        .unwrap()
        .find_path("/cpus/cpu@3f")
        .is_some());
    assert_eq!(p.plic.unwrap().context(63, PrivMode::Supervisor), Some(63));
}

/// A virtio-mmio transport at QEMU `virt`'s first slot: `/soc/virtio_mmio@10001000`
/// with `compatible = "virtio,mmio"`, its register block, its PLIC source and
/// the PLIC as interrupt parent; our parser and the `fdt` crate both find it.
#[test]
fn virtio_mmio_node() {
    const SLOT: [GuestVirtioMmio; 1] = [GuestVirtioMmio {
        base: GuestPhysAddr::new(0x1000_1000),
        size: 0x200,
        irq: 1,
    }];
    let blob = with_config(2, |c| {
        c.virtio_mmio = &SLOT;
        build_guest_fdt(c)
    })
    .unwrap();
    let dtb = Dtb::parse(&blob).unwrap();
    let node = dtb.find_path("/soc/virtio_mmio@10001000").unwrap();
    assert!(node.is_compatible("virtio,mmio"));
    let plic = dtb.find_path("/soc/plic@c000000").unwrap();
    assert_eq!(
        node.property("interrupt-parent").unwrap().as_u32(),
        plic.phandle()
    );
    assert_eq!(node.property("interrupts").unwrap().as_u32(), Some(1));
    let reg = node.property("reg").unwrap().value;
    assert_eq!(reg.len(), 16, "two cells address, two cells size");
    assert_eq!(&reg[..8], &0x1000_1000u64.to_be_bytes());
    assert_eq!(&reg[8..], &0x200u64.to_be_bytes());
    let p = parse(&blob).unwrap();
    assert_eq!(p.virtio_mmio.len(), 1);
    assert_eq!(p.virtio_mmio[0].reg, hr(0x1000_1000, 0x200));
    assert_eq!(p.virtio_mmio[0].irq, Some(1));
    let fdt = fdt::Fdt::new(&blob).unwrap();
    let n = fdt.find_compatible(&["virtio,mmio"]).unwrap();
    assert_eq!(n.name, "virtio_mmio@10001000");
    // Without one, no node.
    let blob = with_config(1, |c| build_guest_fdt(c)).unwrap();
    assert!(Dtb::parse(&blob)
        .unwrap()
        .find_compatible("virtio,mmio")
        .next()
        .is_none());
    // Its irq must be a PLIC source; its block must not be empty or wrap.
    let bad = |v: GuestVirtioMmio| {
        let slot: &'static [GuestVirtioMmio] = Box::leak(Box::new([v]));
        with_config(1, |c| {
            c.virtio_mmio = slot;
            build_guest_fdt(c).unwrap_err()
        })
    };
    let ok = SLOT[0];
    assert_eq!(
        bad(GuestVirtioMmio { irq: 0, ..ok }),
        FdtWriteError::BadPlic
    );
    assert_eq!(
        bad(GuestVirtioMmio { irq: 32, ..ok }),
        FdtWriteError::BadPlic
    );
    assert_eq!(
        bad(GuestVirtioMmio { size: 0, ..ok }),
        FdtWriteError::BadVirtioMmio
    );
    assert_eq!(
        bad(GuestVirtioMmio {
            base: GuestPhysAddr::new(u64::MAX - 0xff),
            ..ok
        }),
        FdtWriteError::BadVirtioMmio
    );
}

#[test]
fn config_errors() {
    let err = |f: &dyn Fn(&mut GuestFdtConfig<'_>)| {
        with_config(2, |c| {
            f(c);
            build_guest_fdt(c).unwrap_err()
        })
    };
    assert_eq!(err(&|c| c.vcpus = 0), FdtWriteError::BadVcpuCount);
    assert_eq!(err(&|c| c.vcpus = 15873), FdtWriteError::BadVcpuCount);
    assert_eq!(err(&|c| c.memory.size = 0), FdtWriteError::BadMemory);
    assert_eq!(
        err(&|c| c.memory = Range {
            start: GuestPhysAddr::new(u64::MAX - 10),
            size: 100
        }),
        FdtWriteError::BadMemory
    );
    assert_eq!(
        err(&|c| c.initrd = Some(Range {
            start: GuestPhysAddr::new(u64::MAX),
            size: 2
        })),
        FdtWriteError::BadInitrd
    );
    assert_eq!(
        err(&|c| c.timebase_frequency = 1 << 32),
        FdtWriteError::BadTimebase
    );
    assert_eq!(
        err(&|c| c.timebase_frequency = 0),
        FdtWriteError::BadTimebase
    );
    assert_eq!(err(&|c| c.isa = "x86"), FdtWriteError::BadIsa);
    assert_eq!(err(&|c| c.isa = ""), FdtWriteError::BadIsa);
    assert_eq!(
        err(&|c| {
            c.uart = None;
        }),
        FdtWriteError::StdoutWithoutUart
    );
    assert_eq!(
        err(&|c| c.plic = Some(GuestPlic {
            base: GuestPhysAddr::new(0xc00_0000),
            ndev: 0
        })),
        FdtWriteError::BadPlic
    );
    assert_eq!(
        err(&|c| c.plic = Some(GuestPlic {
            base: GuestPhysAddr::new(0xc00_0000),
            ndev: 1024
        })),
        FdtWriteError::BadPlic
    );
    assert_eq!(
        err(&|c| c.plic = Some(GuestPlic {
            base: GuestPhysAddr::new(0xc00_0000),
            ndev: 9
        })),
        FdtWriteError::BadPlic
    );
    assert_eq!(
        err(&|c| c.bootargs = Some("a\0b")),
        FdtWriteError::Fdt(vm_fdt::Error::InvalidString)
    );
}
