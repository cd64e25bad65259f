//! `parse` on hand-built trees: the variations real firmware produces, and
//! every way a tree can be malformed.
#![allow(clippy::unwrap_used, clippy::panic)] // test code: a panic is how a test fails

mod common;

use common::{cpu, get32, platform, put32, reg2, N};
use fv_addr::{HostPhysAddr, Range};
use fv_platform::dtb::{Dtb, DtbError, MAX_DEPTH};
use fv_platform::{parse, AplicDelivery, IsaExtensions, PlatformError, PrivMode};

fn r(start: u64, size: u64) -> Range<HostPhysAddr> {
    Range::<HostPhysAddr>::new(HostPhysAddr::new(start), size).unwrap()
}

fn bad(node: &'static str, property: &'static str) -> PlatformError {
    PlatformError::BadProperty { node, property }
}

#[test]
fn baseline_platform() {
    let p = parse(&platform().dtb()).unwrap();
    assert_eq!(p.memory, vec![r(0x8000_0000, 0x1000_0000)]);
    assert_eq!(p.harts.len(), 2);
    assert_eq!(p.harts[1].mmu_type, Some(fv_platform::MmuType::Sv48));
    assert_eq!(p.timebase_frequency, 10_000_000);
    let plic = p.plic.unwrap();
    assert_eq!(plic.context(1, PrivMode::Supervisor), Some(3));
    assert_eq!(plic.contexts.len(), 2);
    assert_eq!(p.uart.unwrap().base, HostPhysAddr::new(0x1000_0000));
}

#[test]
fn memreserve_entries_are_reserved() {
    let blob = platform().dtb_with_reserve(&[(0x8000_0000, 0x20_0000), (0x8f00_0000, 0x1000)]);
    let p = parse(&blob).unwrap();
    assert_eq!(
        p.reserved,
        vec![r(0x8000_0000, 0x20_0000), r(0x8f00_0000, 0x1000)]
    );
}

#[test]
fn reserved_memory_children_and_memreserve_together() {
    let t = platform().child(
        N::new("reserved-memory")
            .u32("#address-cells", 2)
            .u32("#size-cells", 2)
            .null("ranges")
            .child(
                N::new("fw@80000000")
                    .cells("reg", &reg2(0x8000_0000, 0x6_0000))
                    .null("no-map"),
            )
            .child(
                N::new("disabled@81000000")
                    .cells("reg", &reg2(0x8100_0000, 0x1000))
                    .str("status", "disabled"),
            )
            // Dynamically placed: no reg, nothing to record.
            .child(N::new("pool").cells("size", &[0, 0x10_0000])),
    );
    let p = parse(&t.dtb_with_reserve(&[(0x9000_0000, 0x1000)])).unwrap();
    assert_eq!(
        p.reserved,
        vec![r(0x8000_0000, 0x6_0000), r(0x9000_0000, 0x1000)]
    );
}

#[test]
fn several_memory_nodes_and_entries() {
    let t = platform()
        .edit("memory@80000000", |m| {
            m.cells(
                "reg",
                &[
                    0,
                    0x8000_0000,
                    0,
                    0x1000_0000,
                    0x1,
                    0,
                    0,
                    0x4000_0000,
                    0x2,
                    0,
                    0,
                    0,
                ],
            )
        })
        .child(
            N::new("memory@c0000000")
                .str("device_type", "memory")
                .cells("reg", &reg2(0xc000_0000, 0x1000)),
        )
        .child(
            N::new("memory@d0000000")
                .str("device_type", "memory")
                .str("status", "disabled")
                .cells("reg", &reg2(0xd000_0000, 0x1000)),
        );
    let p = parse(&t.dtb()).unwrap();
    // The empty entry and the disabled node are dropped.
    assert_eq!(
        p.memory,
        vec![
            r(0x8000_0000, 0x1000_0000),
            r(0x1_0000_0000, 0x4000_0000),
            r(0xc000_0000, 0x1000)
        ]
    );
}

#[test]
fn isa_extensions_only_cpu() {
    let t = platform().edit("cpus/cpu@1", |c| {
        c.without("riscv,isa").str("riscv,isa-base", "rv64i").strs(
            "riscv,isa-extensions",
            &["i", "m", "a", "h", "zicsr", "sstc", "svnapot"],
        )
    });
    let p = parse(&t.dtb()).unwrap();
    let h = p.hart(1).unwrap();
    assert_eq!(h.isa, "rv64imah_zicsr_sstc_svnapot");
    assert_eq!(
        h.extensions,
        IsaExtensions::I
            | IsaExtensions::M
            | IsaExtensions::A
            | IsaExtensions::H
            | IsaExtensions::ZICSR
            | IsaExtensions::SSTC
            | IsaExtensions::SVNAPOT
    );
    // Intersection with hart 0 (rv64imafdc_zicsr_zifencei).
    assert_eq!(
        p.common_extensions(),
        IsaExtensions::I | IsaExtensions::M | IsaExtensions::A | IsaExtensions::ZICSR
    );
}

#[test]
fn isa_extensions_list_wins_over_isa_string() {
    let t = platform().edit("cpus/cpu@0", |c| {
        c.strs("riscv,isa-extensions", &["i", "m", "sstc"])
    });
    let p = parse(&t.dtb()).unwrap();
    assert_eq!(p.harts[0].isa, "rv64imafdc_zicsr_zifencei");
    assert_eq!(
        p.harts[0].extensions,
        IsaExtensions::I | IsaExtensions::M | IsaExtensions::SSTC
    );
}

#[test]
fn disabled_harts_two_cell_hartids_and_sorting() {
    let t = platform()
        .edit("cpus", |c| {
            c.u32("#address-cells", 2)
                .remove("cpu@0")
                .remove("cpu@1")
                .child(cpu(5, 0x15).cells("reg", &[0, 5]))
                .child(cpu(2, 0x12).cells("reg", &[0, 2]).str("status", "disabled"))
                .child(N::new("cpu-map").child(N::new("cluster0")))
        })
        .edit("soc/plic@c000000", |p| {
            p.cells("interrupts-extended", &[0x15, 9, 0x12, 9])
        });
    let p = parse(&t.dtb()).unwrap();
    assert_eq!(
        p.harts
            .iter()
            .map(|h| (h.hartid, h.enabled))
            .collect::<Vec<_>>(),
        [(2, false), (5, true)]
    );
    let plic = p.plic.unwrap();
    assert_eq!(plic.context(5, PrivMode::Supervisor), Some(0));
    assert_eq!(plic.context(2, PrivMode::Supervisor), Some(1));
}

#[test]
fn timebase_forms() {
    let u64_tb = platform().edit("cpus", |c| c.u64("timebase-frequency", 25_000_000));
    assert_eq!(parse(&u64_tb.dtb()).unwrap().timebase_frequency, 25_000_000);
    let per_cpu = platform()
        .edit("cpus", |c| c.without("timebase-frequency"))
        .edit("cpus/cpu@1", |c| c.u32("timebase-frequency", 1_000_000));
    assert_eq!(parse(&per_cpu.dtb()).unwrap().timebase_frequency, 1_000_000);
    let none = platform().edit("cpus", |c| c.without("timebase-frequency"));
    assert_eq!(parse(&none.dtb()), Err(PlatformError::MissingTimebase));
    let zero = platform().edit("cpus", |c| c.u32("timebase-frequency", 0));
    assert_eq!(parse(&zero.dtb()), Err(bad("cpus", "timebase-frequency")));
    let odd = platform().edit("cpus", |c| c.bytes("timebase-frequency", vec![1, 2, 3]));
    assert_eq!(parse(&odd.dtb()), Err(bad("cpus", "timebase-frequency")));
}

#[test]
fn initrd_forms() {
    let t32 = platform().edit("chosen", |c| {
        c.u32("linux,initrd-start", 0x8800_0000)
            .u32("linux,initrd-end", 0x8810_0000)
    });
    assert_eq!(
        parse(&t32.dtb()).unwrap().initrd,
        Some(r(0x8800_0000, 0x10_0000))
    );
    let t64 = platform().edit("chosen", |c| {
        c.u64("linux,initrd-start", 0x1_0000_0000)
            .u64("linux,initrd-end", 0x1_0000_2000)
    });
    assert_eq!(
        parse(&t64.dtb()).unwrap().initrd,
        Some(r(0x1_0000_0000, 0x2000))
    );
    let backwards = platform().edit("chosen", |c| {
        c.u32("linux,initrd-start", 0x9000_0000)
            .u32("linux,initrd-end", 0x8000_0000)
    });
    assert_eq!(
        parse(&backwards.dtb()),
        Err(bad("chosen", "linux,initrd-end"))
    );
    let half = platform().edit("chosen", |c| c.u32("linux,initrd-start", 0x9000_0000));
    assert_eq!(
        parse(&half.dtb()),
        Err(PlatformError::MissingProperty {
            node: "chosen",
            property: "linux,initrd-end"
        })
    );
}

#[test]
fn bootargs_forms() {
    let t = platform().edit("chosen", |c| c.str("bootargs", "console=hvc0 quiet"));
    assert_eq!(
        parse(&t.dtb()).unwrap().bootargs.as_deref(),
        Some("console=hvc0 quiet")
    );
    let empty = platform().edit("chosen", |c| c.str("bootargs", ""));
    assert_eq!(parse(&empty.dtb()).unwrap().bootargs, None);
    let unterminated = platform().edit("chosen", |c| c.bytes("bootargs", b"abc".to_vec()));
    assert_eq!(parse(&unterminated.dtb()), Err(bad("chosen", "bootargs")));
    let no_chosen = platform().remove("chosen");
    let p = parse(&no_chosen.dtb()).unwrap();
    assert_eq!((p.bootargs, p.initrd, p.rng_seed), (None, None, None));
    // Without stdout-path the first 16550 is still the console.
    assert_eq!(p.uart.unwrap().base, HostPhysAddr::new(0x1000_0000));
}

#[test]
fn stdout_path_selects_the_uart() {
    let second = N::new("serial@10010000")
        .str("compatible", "snps,dw-apb-uart")
        .cells("reg", &reg2(0x1001_0000, 0x400))
        .u32("reg-shift", 2)
        .u32("reg-io-width", 4);
    let by_alias = platform()
        .edit("soc", |s| s.child(second.clone()))
        .child(N::new("aliases").str("serial1", "/soc/serial@10010000"))
        .edit("chosen", |c| c.str("stdout-path", "serial1:115200n8"));
    let u = parse(&by_alias.dtb()).unwrap().uart.unwrap();
    assert_eq!(u.base, HostPhysAddr::new(0x1001_0000));
    assert_eq!(
        (u.reg_shift, u.reg_io_width, u.irq, u.clock),
        (2, 4, None, None)
    );

    let by_path = platform()
        .edit("soc", |s| s.child(second.clone()))
        .edit("chosen", |c| {
            c.str("stdout-path", "/soc/serial@10010000:115200")
        });
    assert_eq!(
        parse(&by_path.dtb()).unwrap().uart.unwrap().base,
        HostPhysAddr::new(0x1001_0000)
    );

    // stdout-path at something that is not a 16550: fall back to the first one.
    let elsewhere = platform().edit("chosen", |c| c.str("stdout-path", "/soc/plic@c000000"));
    assert_eq!(
        parse(&elsewhere.dtb()).unwrap().uart.unwrap().base,
        HostPhysAddr::new(0x1000_0000)
    );
    let nowhere = platform().edit("chosen", |c| c.str("stdout-path", "serial9"));
    assert_eq!(
        parse(&nowhere.dtb()).unwrap().uart.unwrap().base,
        HostPhysAddr::new(0x1000_0000)
    );
    let disabled = platform().edit("soc/serial@10000000", |s| s.str("status", "disabled"));
    assert_eq!(parse(&disabled.dtb()).unwrap().uart, None);
}

#[test]
fn ranges_translate_bus_addresses() {
    // A bus whose child address 0 is CPU address 0x4000_0000 (1 address cell, 1 size cell).
    let t = platform().child(
        N::new("bus@40000000")
            .u32("#address-cells", 1)
            .u32("#size-cells", 1)
            .str("compatible", "simple-bus")
            .cells("ranges", &[0x0, 0x0, 0x4000_0000, 0x10_0000])
            .child(
                N::new("virtio_mmio@2000")
                    .str("compatible", "virtio,mmio")
                    .cells("reg", &[0x2000, 0x1000])
                    .u32("interrupts", 7),
            ),
    );
    let p = parse(&t.dtb()).unwrap();
    assert_eq!(p.virtio_mmio.len(), 1);
    assert_eq!(p.virtio_mmio[0].reg, r(0x4000_2000, 0x1000));
    assert_eq!(p.virtio_mmio[0].irq, Some(7));

    let outside = t.clone().edit("bus@40000000/virtio_mmio@2000", |v| {
        v.cells("reg", &[0x10_0000, 0x1000])
    });
    assert_eq!(
        parse(&outside.dtb()),
        Err(PlatformError::Untranslatable {
            node: "virtio,mmio"
        })
    );
    let straddling = t.edit("bus@40000000/virtio_mmio@2000", |v| {
        v.cells("reg", &[0xf_f800, 0x1000])
    });
    assert_eq!(
        parse(&straddling.dtb()),
        Err(PlatformError::Untranslatable {
            node: "virtio,mmio"
        })
    );
}

#[test]
fn aplic_direct_and_msi_selection() {
    let imsic = |name: &str, irq: u32, ph: u32| {
        N::new(name)
            .strs("compatible", &["qemu,imsics", "riscv,imsics"])
            .cells("reg", &reg2(0x2800_0000, 0x2000))
            .u32("#interrupt-cells", 0)
            .u32("riscv,num-ids", 63)
            .cells("interrupts-extended", &[0x10, irq, 0x11, irq])
            .u32("phandle", ph)
    };
    let aplic = |name: &str, base: u64| {
        N::new(name)
            .strs("compatible", &["riscv,aplic"])
            .cells("reg", &reg2(base, 0x8000))
            .u32("#interrupt-cells", 2)
            .u32("riscv,num-sources", 63)
    };
    // MSI mode: the domain whose msi-parent is the S-level IMSIC.
    let t = platform().remove("soc/plic@c000000").edit("soc", |s| {
        s.child(imsic("imsic@24000000", 11, 0x30))
            .child(imsic("imsic@28000000", 9, 0x31))
            .child(aplic("aplic@c000000", 0xc00_0000).u32("msi-parent", 0x30))
            .child(aplic("aplic@d000000", 0xd00_0000).u32("msi-parent", 0x31))
    });
    let p = parse(&t.dtb()).unwrap();
    assert_eq!(
        p.aplic.as_ref().unwrap().base,
        HostPhysAddr::new(0xd00_0000)
    );
    assert_eq!(p.aplic.unwrap().delivery, AplicDelivery::Msi);
    assert_eq!(p.imsic.unwrap().harts, vec![0, 1]);

    // Direct mode, IDCs in hart order 1, 0.
    let t = platform().remove("soc/plic@c000000").edit("soc", |s| {
        s.child(
            aplic("aplic@c000000", 0xc00_0000).cells("interrupts-extended", &[0x10, 11, 0x11, 11]),
        )
        .child(aplic("aplic@d000000", 0xd00_0000).cells("interrupts-extended", &[0x11, 9, 0x10, 9]))
    });
    let p = parse(&t.dtb()).unwrap();
    assert_eq!(
        p.aplic.unwrap().delivery,
        AplicDelivery::Direct {
            idc_harts: vec![1, 0]
        }
    );
    assert_eq!(p.imsic, None);
}

#[test]
fn syscon_forms() {
    let syscon = N::new("test@100000")
        .strs("compatible", &["sifive,test0", "syscon"])
        .cells("reg", &reg2(0x10_0000, 0x1000))
        .u32("phandle", 0x40);
    let t = platform()
        .edit("soc", |s| s.child(syscon.clone()))
        .child(
            N::new("poweroff")
                .str("compatible", "syscon-poweroff")
                .u32("regmap", 0x40)
                .u32("offset", 0x10)
                .u32("mask", 0x5555),
        )
        .child(
            N::new("reboot")
                .str("compatible", "syscon-reboot")
                .u32("regmap", 0x40)
                .u32("offset", 0)
                .u32("value", 0x7777)
                .u32("mask", 0xffff),
        );
    let p = parse(&t.dtb()).unwrap();
    let off = p.poweroff.unwrap();
    assert_eq!((off.offset, off.value, off.mask), (0x10, 0x5555, 0x5555));
    let rb = p.reboot.unwrap();
    assert_eq!(
        (rb.regmap, rb.value, rb.mask),
        (r(0x10_0000, 0x1000), 0x7777, 0xffff)
    );

    let past_end = t.clone().edit("poweroff", |n| n.u32("offset", 0xffe));
    assert_eq!(
        parse(&past_end.dtb()),
        Err(bad("syscon-poweroff", "offset"))
    );
    let dangling = t.clone().edit("reboot", |n| n.u32("regmap", 0x99));
    assert_eq!(
        parse(&dangling.dtb()),
        Err(PlatformError::BadPhandle {
            node: "syscon-reboot",
            property: "regmap"
        })
    );
    let no_value = t.edit("reboot", |n| n.without("value").without("mask"));
    assert_eq!(
        parse(&no_value.dtb()),
        Err(PlatformError::MissingProperty {
            node: "syscon-reboot",
            property: "value"
        })
    );
}

#[test]
fn semantic_errors() {
    let cases: Vec<(N, PlatformError)> = vec![
        (
            platform().remove("cpus"),
            PlatformError::MissingNode("/cpus"),
        ),
        (
            platform().remove("memory@80000000"),
            PlatformError::NoMemory,
        ),
        (
            platform().edit("memory@80000000", |m| m.cells("reg", &reg2(0x8000_0000, 0))),
            PlatformError::NoMemory,
        ),
        (
            platform().edit("cpus", |c| c.remove("cpu@0").remove("cpu@1")),
            PlatformError::NoHarts,
        ),
        (
            platform()
                .edit("cpus/cpu@0", |c| c.str("status", "disabled"))
                .edit("cpus/cpu@1", |c| c.str("status", "fail")),
            PlatformError::NoHarts,
        ),
        (
            platform().edit("cpus/cpu@1", |c| c.u32("reg", 0)),
            PlatformError::DuplicateHartId(0),
        ),
        (
            platform().edit("cpus/cpu@1", |c| c.without("reg")),
            PlatformError::MissingProperty {
                node: "cpu",
                property: "reg",
            },
        ),
        (
            platform().edit("cpus/cpu@1", |c| c.bytes("reg", vec![0, 1])),
            bad("cpu", "reg"),
        ),
        (
            platform().edit("cpus/cpu@1", |c| c.str("riscv,isa", "x86_64")),
            bad("cpu", "riscv,isa"),
        ),
        (
            platform().edit("cpus/cpu@1", |c| c.without("riscv,isa")),
            PlatformError::MissingProperty {
                node: "cpu",
                property: "riscv,isa",
            },
        ),
        (
            platform().edit("cpus/cpu@1", |c| c.u32("mmu-type", 39)),
            bad("cpu", "mmu-type"),
        ),
        (
            platform().edit("cpus", |c| c.u32("#address-cells", 3)),
            PlatformError::UnsupportedCells { node: "cpus" },
        ),
        (
            platform().edit("memory@80000000", |m| m.cells("reg", &[0, 0x8000_0000, 0])),
            bad("memory", "reg"),
        ),
        (
            platform().edit("memory@80000000", |m| {
                m.cells("reg", &reg2(u64::MAX - 0xfff, 0x2000))
            }),
            PlatformError::AddressOverflow { node: "memory" },
        ),
        (
            platform().u32("#size-cells", 3),
            PlatformError::UnsupportedCells { node: "memory" },
        ),
        (
            platform().bytes("#address-cells", vec![2]),
            bad("memory", "#address-cells"),
        ),
        (
            platform().edit("soc/plic@c000000", |p| p.without("riscv,ndev")),
            PlatformError::MissingProperty {
                node: "plic",
                property: "riscv,ndev",
            },
        ),
        (
            platform().edit("soc/plic@c000000", |p| {
                p.cells("interrupts-extended", &[0x10, 9, 0x77, 9])
            }),
            PlatformError::BadPhandle {
                node: "plic",
                property: "interrupts-extended",
            },
        ),
        (
            // A specifier cut short.
            platform().edit("soc/plic@c000000", |p| {
                p.cells("interrupts-extended", &[0x10, 9, 0x11])
            }),
            bad("plic", "interrupts-extended"),
        ),
        (
            // Pointing at the PLIC itself, which is not a hart's controller.
            platform().edit("soc/plic@c000000", |p| {
                p.cells("interrupts-extended", &[0x20, 9])
            }),
            PlatformError::BadPhandle {
                node: "plic",
                property: "interrupts-extended",
            },
        ),
        (
            platform().edit("soc/serial@10000000", |s| s.without("reg")),
            PlatformError::MissingProperty {
                node: "uart",
                property: "reg",
            },
        ),
        (
            platform().edit("soc/serial@10000000", |s| s.bytes("interrupts", vec![])),
            bad("uart", "interrupts"),
        ),
        (
            platform().edit("soc/serial@10000000", |s| {
                s.bytes("clock-frequency", vec![0; 8])
            }),
            bad("uart", "clock-frequency"),
        ),
        (
            platform().edit("soc", |s| s.cells("ranges", &[1, 2, 3])),
            bad("uart", "ranges"),
        ),
    ];
    for (i, (tree, want)) in cases.into_iter().enumerate() {
        assert_eq!(parse(&tree.dtb()), Err(want), "case {i}");
    }
}

// ---------------------------------------------------------------------------
// Structure of the blob itself.

/// Header field offsets.
const TOTALSIZE: usize = 4;
const OFF_DT_STRUCT: usize = 8;
const OFF_DT_STRINGS: usize = 12;
const OFF_MEM_RSVMAP: usize = 16;
const VERSION: usize = 20;
const LAST_COMP_VERSION: usize = 24;
const SIZE_DT_STRINGS: usize = 32;
const SIZE_DT_STRUCT: usize = 36;

fn dtb_err(blob: &[u8]) -> DtbError {
    match Dtb::parse(blob) {
        Err(e) => {
            assert_eq!(parse(blob), Err(PlatformError::Dtb(e)));
            e
        }
        Ok(_) => panic!("accepted"),
    }
}

/// A blob whose structure block is exactly `tokens` (big-endian words), with
/// the strings block `strings` after it.
fn raw_blob(tokens: &[u32], strings: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; 40];
    put32(&mut b, 0, 0xd00d_feed);
    put32(&mut b, OFF_MEM_RSVMAP, 40);
    b.extend_from_slice(&[0; 16]); // empty reservation block
    let off_struct = b.len();
    for t in tokens {
        b.extend_from_slice(&t.to_be_bytes());
    }
    let off_strings = b.len();
    b.extend_from_slice(strings);
    let total = b.len();
    put32(&mut b, TOTALSIZE, total as u32);
    put32(&mut b, OFF_DT_STRUCT, off_struct as u32);
    put32(&mut b, OFF_DT_STRINGS, off_strings as u32);
    put32(&mut b, VERSION, 17);
    put32(&mut b, LAST_COMP_VERSION, 16);
    put32(&mut b, SIZE_DT_STRINGS, strings.len() as u32);
    put32(&mut b, SIZE_DT_STRUCT, (off_strings - off_struct) as u32);
    b
}

const BEGIN: u32 = 1;
const END_NODE: u32 = 2;
const PROP: u32 = 3;
const NOP: u32 = 4;
const END: u32 = 9;

#[test]
fn raw_blob_helper_makes_valid_trees() {
    // root { a { } ; p = <1>; } with NOPs sprinkled in; "a" padded to one word.
    let blob = raw_blob(
        &[
            NOP,
            BEGIN,
            0,
            NOP,
            BEGIN,
            u32::from_be_bytes(*b"a\0\0\0"),
            END_NODE,
            PROP,
            4,
            0,
            1,
            END_NODE,
            NOP,
            END,
        ],
        b"p\0",
    );
    let dtb = Dtb::parse(&blob).unwrap();
    let root = dtb.root();
    assert_eq!(root.children().map(|c| c.name()).collect::<Vec<_>>(), ["a"]);
    // A property after a child node still belongs to its node.
    assert_eq!(root.property("p").unwrap().as_u32(), Some(1));
    assert_eq!(dtb.find_path("/a").unwrap().parent(), Some(root));
}

#[test]
fn header_errors() {
    let good = platform().dtb();
    assert_eq!(dtb_err(&good[..39]), DtbError::TruncatedHeader);
    assert_eq!(dtb_err(&[]), DtbError::TruncatedHeader);
    let mut b = good.clone();
    b[0] = 0;
    assert_eq!(dtb_err(&b), DtbError::BadMagic);
    assert_eq!(dtb_err(&good[..good.len() - 1]), DtbError::BadTotalSize);
    let mut b = good.clone();
    put32(&mut b, TOTALSIZE, 39);
    assert_eq!(dtb_err(&b), DtbError::BadTotalSize);
    let mut b = good.clone();
    put32(&mut b, VERSION, 16);
    assert_eq!(dtb_err(&b), DtbError::UnsupportedVersion);
    let mut b = good.clone();
    put32(&mut b, LAST_COMP_VERSION, 18);
    assert_eq!(dtb_err(&b), DtbError::UnsupportedVersion);
    let mut b = good.clone();
    put32(&mut b, OFF_DT_STRUCT, get32(&good, OFF_DT_STRUCT) + 2);
    assert_eq!(dtb_err(&b), DtbError::Misaligned);
    let mut b = good.clone();
    put32(&mut b, OFF_MEM_RSVMAP, 44);
    assert_eq!(dtb_err(&b), DtbError::Misaligned);
    for (field, value) in [
        (OFF_DT_STRUCT, 0xffff_fff0),
        (SIZE_DT_STRUCT, 0xffff_fff0),
        (OFF_DT_STRINGS, 0xffff_ffff),
        (SIZE_DT_STRINGS, good.len() as u32),
        (OFF_MEM_RSVMAP, 0xffff_fff8),
        (OFF_MEM_RSVMAP, 0),
    ] {
        let mut b = good.clone();
        put32(&mut b, field, value);
        assert_eq!(dtb_err(&b), DtbError::BlockOutOfBounds, "field {field}");
    }
    // A reservation block running to the end without its terminator.
    let mut b = good.clone();
    let total = b.len();
    put32(&mut b, OFF_MEM_RSVMAP, (total - 8) as u32 & !7);
    b[total - 8..].fill(0xff);
    assert_eq!(dtb_err(&b), DtbError::UnterminatedMemReserve);
    // Bytes past totalsize are ignored.
    let mut longer = good.clone();
    longer.extend_from_slice(&[0xaa; 64]);
    assert!(parse(&longer).is_ok());
}

#[test]
fn structure_errors() {
    let name_a = u32::from_be_bytes(*b"a\0\0\0");
    let cases: &[(&[u32], &[u8], DtbError)] = &[
        (&[BEGIN, 0, END_NODE], b"", DtbError::Truncated),
        (&[BEGIN, 0, END_NODE, 7, END], b"", DtbError::BadToken),
        (
            &[BEGIN, u32::from_be_bytes(*b"abcd")],
            b"",
            DtbError::BadNodeName,
        ),
        (
            &[BEGIN, u32::from_be_bytes([0xff, 0xfe, 0, 0]), END_NODE, END],
            b"",
            DtbError::BadNodeName,
        ),
        (
            &[BEGIN, 0, PROP, 4, 99, 0, END_NODE, END],
            b"p\0",
            DtbError::BadPropertyName,
        ),
        (
            &[BEGIN, 0, PROP, 4, 0, 0, END_NODE, END],
            b"pp",
            DtbError::BadPropertyName,
        ),
        (
            &[BEGIN, 0, PROP, 0x100, 0, END_NODE, END],
            b"p\0",
            DtbError::Truncated,
        ),
        (
            &[BEGIN, 0, PROP, 0xffff_fff0, 0, END_NODE, END],
            b"p\0",
            DtbError::Truncated,
        ),
        (
            &[PROP, 0, 0, BEGIN, 0, END_NODE, END],
            b"p\0",
            DtbError::PropertyOutsideNode,
        ),
        (&[END_NODE, END], b"", DtbError::Unbalanced),
        (&[BEGIN, 0, END], b"", DtbError::Unbalanced),
        (
            &[BEGIN, 0, END_NODE, END_NODE, END],
            b"",
            DtbError::Unbalanced,
        ),
        (
            &[BEGIN, 0, END_NODE, BEGIN, name_a, END_NODE, END],
            b"",
            DtbError::MultipleRoots,
        ),
        (&[NOP, END], b"", DtbError::NoRoot),
        (&[], b"", DtbError::Truncated),
    ];
    for (i, &(tokens, strings, want)) in cases.iter().enumerate() {
        assert_eq!(dtb_err(&raw_blob(tokens, strings)), want, "case {i}");
    }
}

#[test]
fn nesting_limit() {
    let nested = |depth: usize| {
        let mut t = vec![BEGIN, 0];
        for _ in 1..depth {
            t.extend([BEGIN, u32::from_be_bytes(*b"n\0\0\0")]);
        }
        t.extend(std::iter::repeat_n(END_NODE, depth));
        t.push(END);
        raw_blob(&t, b"")
    };
    let ok = nested(MAX_DEPTH);
    let dtb = Dtb::parse(&ok).unwrap();
    assert_eq!(dtb.nodes().count(), MAX_DEPTH);
    assert_eq!(dtb_err(&nested(MAX_DEPTH + 1)), DtbError::TooDeep);
}

#[test]
fn reader_lookups() {
    let blob = platform().dtb_with_reserve(&[(0x1000, 0x2000)]);
    let dtb = Dtb::parse(&blob).unwrap();
    assert_eq!(dtb.mem_reserve().len(), 1);
    assert_eq!(dtb.mem_reserve()[0].address, 0x1000);
    assert_eq!(dtb.root().name(), "");
    assert!(dtb.find_path("/").is_some());
    assert_eq!(dtb.find_path("/memory").unwrap().name(), "memory@80000000");
    assert_eq!(
        dtb.find_path("/memory@80000000").unwrap().unit_address(),
        Some("80000000")
    );
    assert!(dtb.find_path("/memory@90000000").is_none());
    assert!(dtb.find_path("memory").is_none());
    let intc = dtb.find_phandle(0x11).unwrap();
    assert_eq!(intc.parent().unwrap().name(), "cpu@1");
    assert!(dtb.find_phandle(0x12).is_none());
    assert_eq!(dtb.find_compatible("riscv,cpu-intc").count(), 2);
    let plic = dtb.find_path("/soc/plic").unwrap();
    assert_eq!(plic.base_name(), "plic");
    let compat: Vec<&str> = plic
        .property("compatible")
        .unwrap()
        .as_str_list()
        .unwrap()
        .collect();
    assert_eq!(compat, ["sifive,plic-1.0.0", "riscv,plic0"]);
    let cells: Vec<u32> = plic
        .property("interrupts-extended")
        .unwrap()
        .cells()
        .unwrap()
        .collect();
    assert_eq!(cells.len(), 8);
    assert_eq!(dtb.find_path("/cpus").unwrap().children().count(), 2);
}
