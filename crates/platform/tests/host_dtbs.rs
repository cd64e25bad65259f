//! `parse` on device trees captured from QEMU 10.0.2: `dumpdtb` output
//! (`qemu-*`) and the trees OpenSBI really hands its payload (`opensbi-*`,
//! read from guest memory at `a1`; see `testdata/README.md`).
#![allow(clippy::unwrap_used, clippy::panic)] // test code: a panic is how a test fails

mod common;

use common::testdata;
use fv_addr::{HostPhysAddr, Range};
use fv_platform::{
    parse, AplicDelivery, IsaExtensions, MmuType, PlatformInfo, PlicContext, PrivMode, SysconAction,
};

fn r(start: u64, size: u64) -> Range<HostPhysAddr> {
    Range::<HostPhysAddr>::new(HostPhysAddr::new(start), size).unwrap()
}

fn load(name: &str) -> PlatformInfo {
    parse(&testdata(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

const QEMU_ISA: &str = "rv64imafdch_zic64b_zicbom_zicbop_zicboz_ziccamoa_ziccif_zicclsm_ziccrse_zicntr_zicsr_zifencei_zihintntl_zihintpause_zihpm_zmmul_za64rs_zaamo_zalrsc_zawrs_zfa_zca_zcd_zba_zbb_zbc_zbs_shcounterenw_shgatpa_shtvala_shvsatpa_shvstvala_shvstvecd_ssccptr_sscounterenw_sstc_sstvala_sstvecd_ssu64xl_svadu_svvptc";

fn s_ctx(index: u32, hartid: u64) -> PlicContext {
    PlicContext {
        index,
        hartid,
        mode: PrivMode::Supervisor,
    }
}
fn m_ctx(index: u32, hartid: u64) -> PlicContext {
    PlicContext {
        index,
        hartid,
        mode: PrivMode::Machine,
    }
}

/// What every `-M virt` tree has in common.
fn assert_virt_common(p: &PlatformInfo) {
    assert_eq!(p.timebase_frequency, 10_000_000);
    let uart = p.uart.unwrap();
    assert_eq!(uart.base, HostPhysAddr::new(0x1000_0000));
    assert_eq!(uart.size, 0x100);
    assert_eq!(uart.irq, Some(10));
    assert_eq!(uart.clock, Some(3_686_400));
    assert_eq!((uart.reg_shift, uart.reg_io_width), (0, 1));
    assert_eq!(p.virtio_mmio.len(), 8);
    for (i, v) in p.virtio_mmio.iter().enumerate() {
        assert_eq!(v.reg, r(0x1000_1000 + 0x1000 * i as u64, 0x1000));
        assert_eq!(v.irq, Some(i as u32 + 1));
    }
    let syscon = r(0x10_0000, 0x1000);
    assert_eq!(
        p.poweroff,
        Some(SysconAction {
            regmap: syscon,
            offset: 0,
            value: 0x5555,
            mask: u32::MAX
        })
    );
    assert_eq!(
        p.reboot,
        Some(SysconAction {
            regmap: syscon,
            offset: 0,
            value: 0x7777,
            mask: u32::MAX
        })
    );
    assert_eq!(p.rng_seed.as_ref().map(Vec::len), Some(32));
    for h in &p.harts {
        assert!(h.enabled);
        assert_eq!(h.mmu_type, Some(MmuType::Sv57));
    }
}

#[test]
fn qemu_dumpdtb_one_hart() {
    let p = load("qemu-virt-1hart-256m.dtb");
    assert_virt_common(&p);
    assert_eq!(p.memory, vec![r(0x8000_0000, 256 << 20)]);
    assert!(p.reserved.is_empty());
    assert_eq!(p.harts.len(), 1);
    let h = &p.harts[0];
    assert_eq!(h.hartid, 0);
    assert_eq!(h.isa, QEMU_ISA);
    // QEMU also gives riscv,isa-extensions; both spellings agree.
    assert_eq!(Some(h.extensions), IsaExtensions::from_isa_string(QEMU_ISA));
    for e in [
        IsaExtensions::I,
        IsaExtensions::M,
        IsaExtensions::A,
        IsaExtensions::F,
        IsaExtensions::D,
        IsaExtensions::C,
        IsaExtensions::H,
        IsaExtensions::SSTC,
        IsaExtensions::SVADU,
        IsaExtensions::SVVPTC,
        IsaExtensions::ZICBOM,
        IsaExtensions::ZICBOZ,
        IsaExtensions::ZICNTR,
        IsaExtensions::ZIHPM,
        IsaExtensions::ZICSR,
        IsaExtensions::ZIFENCEI,
        IsaExtensions::ZBA,
        IsaExtensions::ZBB,
        IsaExtensions::ZBS,
        IsaExtensions::ZAWRS,
    ] {
        assert!(h.extensions.contains(e), "{e:?}");
    }
    for e in [
        IsaExtensions::V,
        IsaExtensions::SVNAPOT,
        IsaExtensions::SVPBMT,
        IsaExtensions::SSCOFPMF,
        IsaExtensions::SMAIA,
        IsaExtensions::SSAIA,
        IsaExtensions::ZKR,
    ] {
        assert!(!h.extensions.contains(e), "{e:?}");
    }
    // dumpdtb still lists the M-mode context (interrupt 11) before the S-mode one.
    let plic = p.plic.clone().unwrap();
    assert_eq!(plic.base, HostPhysAddr::new(0xc00_0000));
    assert_eq!(plic.size, 0x60_0000);
    assert_eq!(plic.ndev, 95);
    assert_eq!(plic.contexts, vec![m_ctx(0, 0), s_ctx(1, 0)]);
    assert_eq!(plic.context(0, PrivMode::Supervisor), Some(1));
    assert_eq!(p.clint, Some(r(0x200_0000, 0x1_0000)));
    assert!(p.aclint_mtimer.is_empty() && p.aclint_mswi.is_none() && p.aclint_sswi.is_none());
    assert!(p.aplic.is_none() && p.imsic.is_none());
    assert_eq!((p.initrd, p.bootargs.as_deref()), (None, None));
}

#[test]
fn qemu_dumpdtb_four_harts_2g() {
    let p = load("qemu-virt-4hart-2g.dtb");
    assert_virt_common(&p);
    assert_eq!(p.memory, vec![r(0x8000_0000, 2 << 30)]);
    assert_eq!(
        p.harts.iter().map(|h| h.hartid).collect::<Vec<_>>(),
        [0, 1, 2, 3]
    );
    let plic = p.plic.clone().unwrap();
    let want: Vec<PlicContext> = (0..4)
        .flat_map(|h| [m_ctx(2 * h as u32, h), s_ctx(2 * h as u32 + 1, h)])
        .collect();
    assert_eq!(plic.contexts, want);
    assert_eq!(plic.context(3, PrivMode::Machine), Some(6));
}

#[test]
fn qemu_cpu_options_change_the_isa() {
    let no_sstc = load("qemu-virt-nosstc.dtb");
    let e = no_sstc.harts[0].extensions;
    assert!(!e.contains(IsaExtensions::SSTC));
    assert!(e.contains(IsaExtensions::H));
    assert!(!no_sstc.harts[0].isa.contains("_sstc"));

    let no_h = load("qemu-virt-noh.dtb");
    let e = no_h.harts[0].extensions;
    assert!(!e.contains(IsaExtensions::H));
    assert!(e.contains(IsaExtensions::SSTC));
    assert!(no_h.harts[0].isa.starts_with("rv64imafdc_"));
    assert!(!no_h.common_extensions().contains(IsaExtensions::H));
}

#[test]
fn qemu_aia_aplic_imsic() {
    let p = load("qemu-virt-aia-4hart.dtb");
    assert_virt_common(&p);
    assert!(p.plic.is_none());
    // The M-level domain at 0xc000000 (msi-parent = M-level IMSIC) is skipped.
    let aplic = p.aplic.unwrap();
    assert_eq!(aplic.base, HostPhysAddr::new(0xd00_0000));
    assert_eq!(aplic.size, 0x8000);
    assert_eq!(aplic.num_sources, 96);
    assert_eq!(aplic.delivery, AplicDelivery::Msi);
    let imsic = p.imsic.unwrap();
    assert_eq!(imsic.base, HostPhysAddr::new(0x2800_0000));
    assert_eq!(imsic.size, 0x2_0000);
    assert_eq!(imsic.guest_index_bits, 3);
    assert_eq!(imsic.num_ids, 255);
    assert_eq!(imsic.harts, vec![0, 1, 2, 3]);
    // Each hart owns 2^3 pages: its S-level file and 7 guest files.
    assert_eq!(
        imsic.interrupt_file(0),
        Some(HostPhysAddr::new(0x2800_0000))
    );
    assert_eq!(
        imsic.interrupt_file(3),
        Some(HostPhysAddr::new(0x2801_8000))
    );
    assert_eq!(imsic.interrupt_file(4), None);
    // Devices hang off the APLIC with two cells: the first is the source.
    assert_eq!(p.uart.unwrap().irq, Some(10));
}

#[test]
fn qemu_aplic_direct_mode() {
    let p = load("qemu-virt-aplic-direct-2hart.dtb");
    assert!(p.plic.is_none() && p.imsic.is_none());
    let aplic = p.aplic.unwrap();
    assert_eq!(aplic.base, HostPhysAddr::new(0xd00_0000));
    assert_eq!(
        aplic.delivery,
        AplicDelivery::Direct {
            idc_harts: vec![0, 1]
        }
    );
}

#[test]
fn qemu_aclint() {
    let p = load("qemu-virt-aclint-2hart.dtb");
    assert_eq!(p.clint, None);
    assert_eq!(p.aclint_mswi, Some(r(0x200_0000, 0x4000)));
    assert_eq!(
        p.aclint_mtimer,
        vec![r(0x200_bff8, 0x4008), r(0x200_4000, 0x7ff8)]
    );
    assert_eq!(p.aclint_sswi, Some(r(0x2f0_0000, 0x4000)));
}

/// What OpenSBI's own reservation looks like (fw_dynamic in QEMU 10.0.2).
fn opensbi_reserved() -> Vec<Range<HostPhysAddr>> {
    vec![r(0x8000_0000, 0x4_0000), r(0x8004_0000, 0x2_0000)]
}

#[test]
fn opensbi_one_hart() {
    let p = load("opensbi-virt-1hart-256m.dtb");
    assert_virt_common(&p);
    assert_eq!(p.memory, vec![r(0x8000_0000, 256 << 20)]);
    assert_eq!(p.reserved, opensbi_reserved());
    assert_eq!(p.harts.len(), 1);
    assert_eq!(p.harts[0].isa, QEMU_ISA);
    // OpenSBI rewrote the M-mode context to 0xffffffff: only S-mode is left.
    let plic = p.plic.clone().unwrap();
    assert_eq!(plic.base, HostPhysAddr::new(0xc00_0000));
    assert_eq!(plic.contexts, vec![s_ctx(1, 0)]);
    assert_eq!(plic.context(0, PrivMode::Machine), None);
    assert_eq!(p.initrd, None);
}

#[test]
fn opensbi_four_harts_with_initrd() {
    let p = load("opensbi-virt-4hart-512m-initrd.dtb");
    assert_virt_common(&p);
    assert_eq!(p.memory, vec![r(0x8000_0000, 512 << 20)]);
    assert_eq!(p.reserved, opensbi_reserved());
    assert_eq!(
        p.harts.iter().map(|h| h.hartid).collect::<Vec<_>>(),
        [0, 1, 2, 3]
    );
    let plic = p.plic.clone().unwrap();
    assert_eq!(
        plic.contexts,
        vec![s_ctx(1, 0), s_ctx(3, 1), s_ctx(5, 2), s_ctx(7, 3)]
    );
    assert!(plic.contexts.iter().all(|c| c.mode == PrivMode::Supervisor));
    // QEMU placed the 4 KiB -initrd file here.
    assert_eq!(p.initrd, Some(r(0x9020_0000, 0x1000)));
    assert_eq!(p.bootargs, None);
    assert!(p
        .common_extensions()
        .contains(IsaExtensions::H | IsaExtensions::SSTC));
}

#[test]
fn opensbi_aia_four_harts() {
    let p = load("opensbi-virt-aia-4hart-512m.dtb");
    assert_virt_common(&p);
    assert_eq!(p.reserved, opensbi_reserved());
    assert!(p.plic.is_none());
    let aplic = p.aplic.unwrap();
    assert_eq!(aplic.base, HostPhysAddr::new(0xd00_0000));
    assert_eq!(aplic.delivery, AplicDelivery::Msi);
    let imsic = p.imsic.unwrap();
    assert_eq!(
        (imsic.base, imsic.size),
        (HostPhysAddr::new(0x2800_0000), 0x2_0000)
    );
    assert_eq!(imsic.guest_index_bits, 3);
    assert_eq!(imsic.harts, vec![0, 1, 2, 3]);
}

#[test]
fn opensbi_aia_two_harts_initrd_bootargs() {
    let p = load("opensbi-virt-aia-2hart-initrd.dtb");
    assert_virt_common(&p);
    assert_eq!(p.memory, vec![r(0x8000_0000, 256 << 20)]);
    assert_eq!(p.reserved, opensbi_reserved());
    assert_eq!(p.harts.len(), 2);
    assert_eq!(p.initrd, Some(r(0x8820_0000, 0x1000)));
    assert_eq!(p.bootargs.as_deref(), Some("console=ttyS0 earlycon"));
    // Without aia-guests the IMSIC has no guest files.
    let imsic = p.imsic.unwrap();
    assert_eq!((imsic.size, imsic.guest_index_bits), (0x2000, 0));
    assert_eq!(
        imsic.interrupt_file(1),
        Some(HostPhysAddr::new(0x2800_1000))
    );
    assert_eq!(p.aplic.unwrap().delivery, AplicDelivery::Msi);
}

/// Every captured tree is also well-formed for the `fdt` crate, and both
/// readers agree on the node count and on /memory.
#[test]
fn fdt_crate_agrees_on_captured_trees() {
    for (name, blob) in common::all_testdata() {
        let theirs = fdt::Fdt::new(&blob).unwrap();
        let ours = fv_platform::dtb::Dtb::parse(&blob).unwrap();
        assert_eq!(theirs.all_nodes().count(), ours.nodes().count(), "{name}");
        let region = theirs.memory().regions().next().unwrap();
        let p = parse(&blob).unwrap();
        assert_eq!(
            p.memory[0].start.raw(),
            region.starting_address as u64,
            "{name}"
        );
        assert_eq!(p.memory[0].size, region.size.unwrap() as u64, "{name}");
        assert_eq!(p.harts.len(), theirs.cpus().count(), "{name}");
    }
}
