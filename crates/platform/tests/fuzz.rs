//! Property tests: no input makes the readers panic, and what the writer
//! produces reads back.
#![allow(clippy::unwrap_used, clippy::panic)] // test code: a panic is how a test fails

mod common;

use std::sync::OnceLock;

use fv_addr::{GuestPhysAddr, Range};
use fv_platform::dtb::Dtb;
use fv_platform::{
    build_guest_fdt, guest_isa, parse, GuestFdtConfig, GuestPlic, GuestSyscon, GuestUart,
    IsaExtensions, MmuType, Stdout, GUEST_EXTENSION_ALLOW_LIST,
};
use proptest::prelude::*;

fn real_dtbs() -> &'static [(String, Vec<u8>)] {
    static DTBS: OnceLock<Vec<(String, Vec<u8>)>> = OnceLock::new();
    DTBS.get_or_init(common::all_testdata)
}

/// Parses with both entry points; panics are the only failure.
fn exercise(blob: &[u8]) {
    if let Ok(dtb) = Dtb::parse(blob) {
        // Walk everything the reader offers.
        for n in dtb.nodes() {
            let _ = (
                n.name(),
                n.parent(),
                n.children().count(),
                n.is_enabled(),
                n.phandle(),
            );
            for p in n.properties() {
                let _ = (p.as_str(), p.as_u32_or_u64(), p.cells().map(|c| c.count()));
                let _ = p.as_str_list().map(|l| l.count());
            }
        }
    }
    if let Ok(p) = parse(blob) {
        assert!(!p.memory.is_empty());
        assert!(p.harts.iter().any(|h| h.enabled));
        assert!(p.timebase_frequency != 0);
        if let Some(imsic) = &p.imsic {
            for &h in &imsic.harts {
                let _ = imsic.interrupt_file(h);
            }
        }
        for h in &p.harts {
            let _ = guest_isa(&h.isa);
        }
    }
}

#[derive(Clone, Debug)]
enum Mutation {
    /// Set one byte.
    Byte(usize, u8),
    /// Overwrite an aligned word with a value likely to matter (tokens,
    /// lengths, offsets, cell counts, phandles).
    Word(usize, u32),
    /// Cut the blob short, fixing up totalsize so the header still checks.
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let word = prop_oneof![
        Just(0u32),
        Just(1),
        Just(2),
        Just(3),
        Just(4),
        Just(9),
        Just(0xffff_ffff),
        Just(0x8000_0000),
        0u32..0x40,
        any::<u32>(),
    ];
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(o, b)| Mutation::Byte(o, b)),
        (any::<usize>(), word).prop_map(|(o, w)| Mutation::Word(o, w)),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn apply(blob: &mut Vec<u8>, m: &Mutation) {
    let len = blob.len();
    match *m {
        Mutation::Byte(o, b) => blob[o % len] = b,
        Mutation::Word(o, w) => {
            let o = (o % (len / 4)) * 4;
            blob[o..o + 4].copy_from_slice(&w.to_be_bytes());
        }
        Mutation::Truncate(n) => {
            let n = n % len;
            blob.truncate(n.max(40));
            let total = blob.len() as u32;
            blob[4..8].copy_from_slice(&total.to_be_bytes());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn mutated_real_dtbs_never_panic(
        which in any::<usize>(),
        muts in prop::collection::vec(mutation(), 1..6),
    ) {
        let dtbs = real_dtbs();
        let mut blob = dtbs[which % dtbs.len()].1.clone();
        for m in &muts {
            apply(&mut blob, m);
        }
        exercise(&blob);
    }

    #[test]
    fn mutated_synthetic_dtbs_never_panic(
        reserve in any::<bool>(),
        muts in prop::collection::vec(mutation(), 1..4),
    ) {
        let t = common::platform();
        let mut blob = if reserve { t.dtb_with_reserve(&[(0x8000_0000, 0x1000)]) } else { t.dtb() };
        for m in &muts {
            apply(&mut blob, m);
        }
        exercise(&blob);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..1024)) {
        exercise(&bytes);
    }

    #[test]
    fn random_bytes_behind_a_valid_header_never_panic(
        body in prop::collection::vec(any::<u8>(), 0..512),
        off_struct in 0u32..600,
        off_strings in 0u32..600,
        size_struct in 0u32..600,
        size_strings in 0u32..600,
    ) {
        let mut blob = vec![0u8; 40];
        blob.extend_from_slice(&[0; 16]);
        blob.extend_from_slice(&body);
        let total = blob.len() as u32;
        for (i, v) in [0xd00d_feed, total, off_struct & !3, off_strings, 40, 17, 16, 0, size_strings, size_struct]
            .into_iter()
            .enumerate()
        {
            blob[i * 4..i * 4 + 4].copy_from_slice(&u32::to_be_bytes(v));
        }
        exercise(&blob);
    }

    #[test]
    fn isa_parsing_never_panics(s in "\\PC{0,64}", t in "(rv64|RV32|rv)[a-z0-9_]{0,40}") {
        let _ = IsaExtensions::from_isa_string(&s);
        let _ = IsaExtensions::from_isa_string(&t);
        let _ = guest_isa(&s);
        if let Some(g) = guest_isa(&t) {
            // Idempotent, and only allowed names.
            prop_assert_eq!(guest_isa(&g.isa), Some(g.clone()));
            for e in &g.extensions {
                prop_assert!(e.len() == 1 || GUEST_EXTENSION_ALLOW_LIST.contains(e), "{}", e);
                prop_assert!(*e != "h" && *e != "v");
            }
        }
    }

    #[test]
    fn guest_fdt_round_trips(
        vcpus in 1u32..40,
        mem_start in (0u64..0x1_0000).prop_map(|p| p << 20),
        mem_size in 1u64..(1 << 40),
        timebase in 1u64..u64::from(u32::MAX),
        ndev in 1u32..1024,
        uart in any::<bool>(),
        plic in any::<bool>(),
        syscon in any::<bool>(),
        bootargs in proptest::option::of("[ -~]{0,40}"),
        seed in proptest::option::of(prop::collection::vec(any::<u8>(), 0..64)),
        mmu in prop_oneof![Just(MmuType::Sv39), Just(MmuType::Sv48), Just(MmuType::Sv57)],
    ) {
        let isa = guest_isa("rv64imafdch_zicsr_zifencei_sstc_svvptc").unwrap();
        let cfg = GuestFdtConfig {
            cbom_block_size: Some(64),
            cboz_block_size: None,
            vcpus,
            memory: Range { start: GuestPhysAddr::new(mem_start), size: mem_size },
            timebase_frequency: timebase,
            isa: &isa.isa,
            isa_extensions: &isa.extensions,
            mmu_type: mmu,
            bootargs: bootargs.as_deref(),
            initrd: None,
            stdout: if uart { Stdout::Uart } else { Stdout::None },
            uart: uart.then_some(GuestUart { base: GuestPhysAddr::new(0x1000_0000), irq: 1 }),
            plic: plic.then_some(GuestPlic { base: GuestPhysAddr::new(0xc00_0000), ndev }),
            syscon: syscon.then_some(GuestSyscon {
                base: GuestPhysAddr::new(0x10_0000),
                poweroff_value: 0x5555,
                reboot_value: 0x7777,
            }),
            virtio_mmio: &[],
            rng_seed: seed.as_deref(),
        };
        let blob = build_guest_fdt(&cfg).unwrap();
        let p = parse(&blob).unwrap();
        prop_assert_eq!(p.harts.len(), vcpus as usize);
        prop_assert_eq!(p.memory[0].start.raw(), mem_start);
        prop_assert_eq!(p.memory[0].size, mem_size);
        prop_assert_eq!(p.timebase_frequency, timebase);
        prop_assert!(p.harts.iter().all(|h| h.mmu_type == Some(mmu) && h.isa == isa.isa));
        prop_assert_eq!(p.uart.is_some(), uart);
        prop_assert_eq!(p.plic.as_ref().map(|p| (p.ndev, p.contexts.len())), plic.then_some((ndev, vcpus as usize)));
        prop_assert_eq!(p.poweroff.is_some(), syscon);
        prop_assert_eq!(p.bootargs, bootargs.filter(|b| !b.is_empty()));
        prop_assert_eq!(p.rng_seed, seed);
    }
}
