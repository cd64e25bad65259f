//! ISA strings: parsing host harts' and deriving the guest's.
#![allow(clippy::unwrap_used, clippy::panic)] // test code: a panic is how a test fails

use fv_platform::{
    guest_isa, isa_string_from_list, IsaExtensions, MmuType, GUEST_EXTENSION_ALLOW_LIST,
};

/// Single-letter extensions sit at their `misa` bit: bit = letter - 'A'
/// (privileged spec, table "Encoding of Extensions field in misa").
#[test]
fn single_letters_are_at_their_misa_bits() {
    let pins = [
        ('A', IsaExtensions::A),
        ('B', IsaExtensions::B),
        ('C', IsaExtensions::C),
        ('D', IsaExtensions::D),
        ('F', IsaExtensions::F),
        ('H', IsaExtensions::H),
        ('I', IsaExtensions::I),
        ('M', IsaExtensions::M),
        ('Q', IsaExtensions::Q),
        ('V', IsaExtensions::V),
    ];
    for (letter, flag) in pins {
        assert_eq!(flag.bits(), 1 << (letter as u32 - 'A' as u32), "{letter}");
    }
    assert_eq!(IsaExtensions::A.bits(), 1 << 0);
    assert_eq!(IsaExtensions::H.bits(), 1 << 7);
    assert_eq!(IsaExtensions::V.bits(), 1 << 21);
    // Multi-letter extensions stay clear of misa's 26 letter bits.
    let multi = IsaExtensions::all().bits() & !((1 << 26) - 1);
    assert_eq!(multi.trailing_zeros(), 32);
    assert_eq!(IsaExtensions::all().bits().count_ones(), 35);
}

#[test]
fn parses_qemu_isa_string() {
    let e = IsaExtensions::from_isa_string(
        "rv64imafdch_zicbom_zicboz_zicntr_zicsr_zifencei_zihpm_zba_zbb_zbs_sstc_svadu_svvptc",
    )
    .unwrap();
    let want = IsaExtensions::I
        | IsaExtensions::M
        | IsaExtensions::A
        | IsaExtensions::F
        | IsaExtensions::D
        | IsaExtensions::C
        | IsaExtensions::H
        | IsaExtensions::ZICBOM
        | IsaExtensions::ZICBOZ
        | IsaExtensions::ZICNTR
        | IsaExtensions::ZICSR
        | IsaExtensions::ZIFENCEI
        | IsaExtensions::ZIHPM
        | IsaExtensions::ZBA
        | IsaExtensions::ZBB
        | IsaExtensions::ZBS
        | IsaExtensions::SSTC
        | IsaExtensions::SVADU
        | IsaExtensions::SVVPTC;
    assert_eq!(e, want);
}

#[test]
fn isa_string_variants() {
    // `g` = imafd + zicsr + zifencei.
    assert_eq!(
        IsaExtensions::from_isa_string("rv64gc").unwrap(),
        IsaExtensions::I
            | IsaExtensions::M
            | IsaExtensions::A
            | IsaExtensions::F
            | IsaExtensions::D
            | IsaExtensions::C
            | IsaExtensions::ZICSR
            | IsaExtensions::ZIFENCEI
    );
    // Versions after letters and names, upper case, unknown extensions.
    assert_eq!(
        IsaExtensions::from_isa_string("RV64I2P1M2P0H1P0_Zicbom1p0_sstc_xfoo_zkr2").unwrap(),
        IsaExtensions::I
            | IsaExtensions::M
            | IsaExtensions::H
            | IsaExtensions::ZICBOM
            | IsaExtensions::SSTC
            | IsaExtensions::ZKR
    );
    // `p` between digits is a version separator; on its own it is not one of ours.
    assert_eq!(
        IsaExtensions::from_isa_string("rv64i2p1").unwrap(),
        IsaExtensions::I
    );
    // A multi-letter name glued to the letters (old, malformed strings).
    assert_eq!(
        IsaExtensions::from_isa_string("rv64imsstc").unwrap(),
        IsaExtensions::I | IsaExtensions::M | IsaExtensions::SSTC
    );
    // Aia names.
    assert_eq!(
        IsaExtensions::from_isa_string("rv64i_smaia_ssaia").unwrap(),
        IsaExtensions::I | IsaExtensions::SMAIA | IsaExtensions::SSAIA
    );
    assert_eq!(
        IsaExtensions::from_isa_string("rv32i").unwrap(),
        IsaExtensions::I
    );
    assert_eq!(IsaExtensions::from_isa_string("x86_64"), None);
    assert_eq!(IsaExtensions::from_isa_string("rv"), None);
    assert_eq!(IsaExtensions::from_isa_string(""), None);
}

#[test]
fn isa_extension_list() {
    let e = IsaExtensions::from_extension_names(["i", "m", "a", "h", "zicbom", "sstc", "zic64b"]);
    assert_eq!(
        e,
        IsaExtensions::I
            | IsaExtensions::M
            | IsaExtensions::A
            | IsaExtensions::H
            | IsaExtensions::ZICBOM
            | IsaExtensions::SSTC
    );
    assert_eq!(
        isa_string_from_list("rv64i", ["i", "m", "a", "zicsr", "sstc"]).unwrap(),
        "rv64ima_zicsr_sstc"
    );
    assert_eq!(
        isa_string_from_list("rv64i", ["zicsr"]).unwrap(),
        "rv64i_zicsr"
    );
    assert_eq!(isa_string_from_list("arm64", ["i"]), None);
}

#[test]
fn mmu_type_names() {
    for m in [MmuType::Sv39, MmuType::Sv48, MmuType::Sv57] {
        assert_eq!(MmuType::from_dt_name(m.dt_name()), Some(m));
    }
    assert_eq!(MmuType::Sv48.dt_name(), "riscv,sv48");
    assert_eq!(MmuType::from_dt_name("riscv,none"), None);
    assert_eq!(MmuType::from_dt_name("riscv,sv32"), None);
}

const QEMU_ISA: &str = "rv64imafdch_zic64b_zicbom_zicbop_zicboz_ziccamoa_ziccif_zicclsm_ziccrse_zicntr_zicsr_zifencei_zihintntl_zihintpause_zihpm_zmmul_za64rs_zaamo_zalrsc_zawrs_zfa_zca_zcd_zba_zbb_zbc_zbs_shcounterenw_shgatpa_shtvala_shvsatpa_shvstvala_shvstvecd_ssccptr_sscounterenw_sstc_sstvala_sstvecd_ssu64xl_svadu_svvptc";

#[test]
fn guest_isa_of_qemu_default_cpu() {
    let g = guest_isa(QEMU_ISA).unwrap();
    // No h, no zawrs, no svadu, no zihpm, none of the sh*/ss* property names;
    // the rest in host order.
    assert_eq!(
        g.isa,
        "rv64imafdc_zic64b_zicbom_zicbop_zicboz_ziccamoa_ziccif_zicclsm_ziccrse_zicntr_zicsr_zifencei_zihintntl_zihintpause_zmmul_za64rs_zaamo_zalrsc_zfa_zca_zcd_zba_zbb_zbc_zbs_sstc_svvptc"
    );
    assert_eq!(g.extensions[..6], ["i", "m", "a", "f", "d", "c"]);
    assert_eq!(g.extensions.len(), 6 + 26);
    // The list and the string say the same thing.
    assert_eq!(
        isa_string_from_list("rv64i", g.extensions.iter().copied()).unwrap(),
        g.isa
    );
    let e = IsaExtensions::from_isa_string(&g.isa).unwrap();
    assert!(!e.intersects(IsaExtensions::H | IsaExtensions::SVADU | IsaExtensions::ZAWRS));
    assert!(e.contains(IsaExtensions::SSTC | IsaExtensions::SVVPTC | IsaExtensions::ZICBOM));
}

#[test]
fn guest_isa_of_qemu_variants() {
    // -cpu rv64,sstc=false
    let no_sstc = QEMU_ISA.replace("_sstc", "");
    let g = guest_isa(&no_sstc).unwrap();
    assert!(!g.extensions.contains(&"sstc"));
    assert!(g.isa.starts_with("rv64imafdc_"));
    // -cpu rv64,h=false (QEMU keeps the sh* names; they are dropped either way)
    let no_h = QEMU_ISA.replacen("rv64imafdch", "rv64imafdc", 1);
    assert_eq!(guest_isa(&no_h).unwrap(), guest_isa(QEMU_ISA).unwrap());
}

#[test]
fn guest_isa_filters_and_expands() {
    let g =
        guest_isa("rv64gcvh_zkr_sscofpmf_svpbmt_svnapot_smaia_ssaia_zawrs_svadu_xtheadba").unwrap();
    assert_eq!(g.isa, "rv64imafdc_zicsr_zifencei_svpbmt_svnapot");
    assert_eq!(
        g.extensions,
        ["i", "m", "a", "f", "d", "c", "zicsr", "zifencei", "svpbmt", "svnapot"]
    );
    // Duplicates collapse; case and versions are normalised.
    let g = guest_isa("RV64IMA_ZICSR2P0_zicsr_Zba").unwrap();
    assert_eq!(g.isa, "rv64ima_zicsr_zba");
    assert_eq!(guest_isa("rv32imc").unwrap().isa, "rv32imc");
    assert_eq!(guest_isa("arm64"), None);
    // Everything on the allow list survives; the list is lowercase and duplicate-free.
    let all = format!("rv64i_{}", GUEST_EXTENSION_ALLOW_LIST.join("_"));
    assert_eq!(guest_isa(&all).unwrap().isa, all);
    for (i, a) in GUEST_EXTENSION_ALLOW_LIST.iter().enumerate() {
        assert_eq!(a.to_ascii_lowercase(), *a);
        assert!(!GUEST_EXTENSION_ALLOW_LIST[i + 1..].contains(a), "{a}");
    }
}

/// How an allowed extension's instructions can reach the hypervisor.
#[derive(Debug)]
enum Reaches {
    /// Nothing it adds traps to the hypervisor (ALU ops, hints, PMA
    /// properties of RAM, translation features, gated CSRs whose gate is open).
    Nothing,
    /// Loads/stores that the MMIO decoder emulates on a device.
    EmulatedMmio,
    /// Memory accesses that get an access fault on a device (FP, AMO, CBO).
    AccessFaultOnMmio,
}

/// Every extension a guest may be told about is classified by what of it can
/// trap to the hypervisor (the audit behind `GUEST_EXTENSION_ALLOW_LIST`'s
/// doc and `fv_arch_riscv64::decode`): adding one to the list fails here
/// until someone has checked its trap paths.
#[test]
fn every_allowed_extension_has_an_audited_trap_path() {
    use Reaches::*;
    let audited: &[(&str, Reaches)] = &[
        ("zicsr", Nothing),
        ("zifencei", Nothing),
        ("zicntr", Nothing), // hcounteren CY, TM, IR are open
        ("zihintpause", Nothing),
        ("zihintntl", Nothing),
        ("zicbom", AccessFaultOnMmio),
        ("zicboz", AccessFaultOnMmio),
        ("zicbop", Nothing), // prefetch hints never fault
        ("zic64b", Nothing),
        ("ziccamoa", Nothing),
        ("ziccif", Nothing),
        ("zicclsm", Nothing),
        ("ziccrse", Nothing),
        ("zicond", Nothing),
        ("zimop", Nothing),
        ("zcmop", Nothing),
        ("zmmul", Nothing),
        ("zaamo", AccessFaultOnMmio),
        ("zalrsc", AccessFaultOnMmio),
        ("zacas", AccessFaultOnMmio),
        ("zabha", AccessFaultOnMmio),
        ("za64rs", Nothing),
        ("zfa", Nothing), // no loads or stores
        ("zfh", AccessFaultOnMmio),
        ("zfhmin", AccessFaultOnMmio),
        ("zca", EmulatedMmio),
        ("zcb", EmulatedMmio),
        ("zcd", AccessFaultOnMmio),
        ("zcf", AccessFaultOnMmio), // RV32 only
        ("zba", Nothing),
        ("zbb", Nothing),
        ("zbc", Nothing),
        ("zbs", Nothing),
        ("zbkb", Nothing),
        ("zbkc", Nothing),
        ("zbkx", Nothing),
        ("zknd", Nothing),
        ("zkne", Nothing),
        ("zknh", Nothing),
        ("sstc", Nothing), // henvcfg.STCE
        ("svvptc", Nothing),
        ("svpbmt", Nothing), // henvcfg.PBMTE
        ("svnapot", Nothing),
        ("svinval", Nothing), // hstatus.VTVM stays clear
    ];
    let names: Vec<&str> = audited.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, GUEST_EXTENSION_ALLOW_LIST);
    // Not told: Zihpm, whose counters trap (virtual instruction -> illegal).
    assert!(!GUEST_EXTENSION_ALLOW_LIST.contains(&"zihpm"));
    assert!(!guest_isa("rv64imac_zicntr_zihpm")
        .unwrap()
        .extensions
        .contains(&"zihpm"));
}
