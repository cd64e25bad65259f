//! Tests of the parser and the builder.
#![allow(clippy::unwrap_used, clippy::panic)]

extern crate std;

use alloc::vec;
use alloc::vec::Vec;
use proptest::prelude::*;

use super::*;

const MIB: u64 = 1 << 20;
const RAM: u64 = GUEST_RAM_BASE.raw();

fn gpa(raw: u64) -> GuestPhysAddr {
    GuestPhysAddr::new(raw)
}

struct Sample {
    text: Vec<u8>,
    data: Vec<u8>,
    initrd: Vec<u8>,
    beta: Vec<u8>,
}

fn sample_data() -> Sample {
    Sample {
        text: (0..5000u32).map(|i| (i % 251) as u8 + 1).collect(),
        data: vec![0xaa; 300],
        initrd: (0..9000u32).map(|i| (i % 13) as u8).collect(),
        beta: vec![0x6f, 0, 0, 0],
    }
}

fn alpha<'a>(s: &'a Sample, segs: &'a [Segment<'a>]) -> VmDescriptor<'a> {
    VmDescriptor {
        sched: crate::VmSched::default(),
        name: "alpha",
        vcpus: 4,
        memory_bytes: 64 * MIB,
        entry: gpa(RAM + 0x20_0000),
        dtb_gpa: gpa(RAM + 62 * MIB),
        initrd: Some(Segment {
            gpa: gpa(RAM + 60 * MIB),
            data: &s.initrd,
            mem_size: s.initrd.len() as u64,
        }),
        cmdline: "console=ttyS0 earlycon",
        flags: VmFlags::CONSOLE_UART | VmFlags::AUTOSTART,
        segments: segs,
        devices: &[],
    }
}

fn alpha_segments(s: &Sample) -> [Segment<'_>; 2] {
    [
        Segment {
            gpa: gpa(RAM + 0x20_0000),
            data: &s.text,
            mem_size: s.text.len() as u64,
        },
        // Not page aligned, with bss.
        Segment {
            gpa: gpa(RAM + 0x30_0123),
            data: &s.data,
            mem_size: 0x5000,
        },
    ]
}

fn build_sample() -> Vec<u8> {
    let s = sample_data();
    let segs = alpha_segments(&s);
    let beta_segs = [Segment {
        gpa: gpa(RAM + 0x20_0000),
        data: &s.beta,
        mem_size: 4,
    }];
    let mut b = PackageBuilder::new();
    b.add_vm(&alpha(&s, &segs)).unwrap();
    b.add_vm(&VmDescriptor {
        sched: crate::VmSched::default(),
        name: "beta",
        vcpus: 1,
        memory_bytes: 16 * MIB,
        entry: gpa(RAM + 0x20_0000),
        dtb_gpa: gpa(RAM + 14 * MIB),
        initrd: None,
        cmdline: "",
        flags: VmFlags::empty(),
        segments: &beta_segs,
        devices: &[],
    })
    .unwrap();
    b.build()
}

fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

fn get64(b: &[u8], at: usize) -> u64 {
    read_u64(b, at).unwrap()
}

/// Recomputes the checksum after a deliberate edit.
fn reseal(b: &mut [u8]) {
    let c = package_checksum(b);
    put32(b, CHECKSUM_OFFSET, c);
}

/// Applies `edit`, reseals, parses.
fn parse_edited(edit: impl FnOnce(&mut Vec<u8>)) -> Result<(), BootPkgError> {
    let mut b = build_sample();
    edit(&mut b);
    reseal(&mut b);
    Package::parse(&b).map(|_| ())
}

const VM0: usize = HEADER_SIZE;
const VM1: usize = HEADER_SIZE + VM_RECORD_SIZE;

#[test]
fn round_trip() {
    let bytes = build_sample();
    assert_eq!(bytes.len() % PAGE_SIZE as usize, 0);
    let pkg = Package::parse(&bytes).unwrap();
    assert_eq!(pkg.vm_count(), 2);
    let s = sample_data();
    let vms: Vec<_> = pkg.vms().collect();
    assert_eq!(vms.len(), 2);

    let a = &vms[0];
    assert_eq!(a.name, "alpha");
    assert_eq!(a.vcpus, 4);
    assert_eq!(a.memory_bytes, 64 * MIB);
    assert_eq!(a.entry, gpa(RAM + 0x20_0000));
    assert_eq!(a.dtb_gpa, gpa(RAM + 62 * MIB));
    assert_eq!(a.cmdline, "console=ttyS0 earlycon");
    assert_eq!(a.flags, VmFlags::CONSOLE_UART | VmFlags::AUTOSTART);
    let initrd = a.initrd.unwrap();
    assert_eq!(initrd.gpa, gpa(RAM + 60 * MIB));
    assert_eq!(initrd.data, &s.initrd[..]);
    assert_eq!(initrd.mem_size, s.initrd.len() as u64);
    let segs: Vec<_> = a.segments().collect();
    assert_eq!(segs, alpha_segments(&s));
    assert_eq!(a.segment_count(), 2);

    let b = &vms[1];
    assert_eq!(b.name, "beta");
    assert_eq!(b.initrd, None);
    assert_eq!(b.cmdline, "");
    assert_eq!(b.flags, VmFlags::empty());
    assert_eq!(b.segments().next().unwrap().data, &s.beta[..]);
}

#[test]
fn vms_booting_the_same_images_share_them() {
    let s = sample_data();
    let segs = alpha_segments(&s);
    let one = {
        let mut b = PackageBuilder::new();
        b.add_vm(&alpha(&s, &segs)).unwrap();
        b.build()
    };
    let mut b = PackageBuilder::new();
    b.add_vm(&alpha(&s, &segs)).unwrap();
    b.add_vm(&VmDescriptor {
        name: "alpha2",
        ..alpha(&s, &segs)
    })
    .unwrap();
    // The same data segment at another offset within its page is not shared.
    let moved = [
        segs[0],
        Segment {
            gpa: gpa(RAM + 0x30_0456),
            ..segs[1]
        },
    ];
    b.add_vm(&VmDescriptor {
        name: "alpha3",
        segments: &moved,
        ..alpha(&s, &segs)
    })
    .unwrap();
    let three = b.build();
    // Only the strings, records and one page for the moved segment are added.
    let page = PAGE_SIZE as usize;
    assert!(
        three.len() <= one.len() + 2 * page,
        "{} bytes for three VMs sharing images, {} for one",
        three.len(),
        one.len()
    );
    let pkg = Package::parse(&three).unwrap();
    let vms: Vec<_> = pkg.vms().collect();
    assert_eq!(vms.len(), 3);
    for (vm, want) in vms.iter().zip([&segs, &segs, &moved]) {
        let got: Vec<_> = vm.segments().collect();
        assert_eq!(&got[..], &want[..], "{}", vm.name);
        assert_eq!(vm.initrd.unwrap().data, &s.initrd[..]);
    }
    // One copy of the kernel text and of the initrd in the whole package.
    let count = |needle: &[u8]| three.windows(needle.len()).filter(|w| *w == needle).count();
    assert_eq!(count(&s.text), 1);
    assert_eq!(count(&s.initrd), 1);
}

#[test]
fn blobs_are_congruent_to_their_gpa_and_zero_padded() {
    let bytes = build_sample();
    let pkg = Package::parse(&bytes).unwrap();
    let base = bytes.as_ptr() as usize;
    for vm in pkg.vms() {
        for seg in vm.segments().chain(vm.initrd) {
            let off = seg.data.as_ptr() as usize - base;
            assert_eq!(off as u64 % PAGE_SIZE, seg.gpa.raw() % PAGE_SIZE);
            let page_start = off - off % PAGE_SIZE as usize;
            let end = off + seg.data.len();
            let page_end = end.next_multiple_of(PAGE_SIZE as usize);
            assert!(bytes[page_start..off].iter().all(|&b| b == 0));
            assert!(bytes[end..page_end].iter().all(|&b| b == 0));
        }
    }
}

#[test]
fn header_layout_is_pinned() {
    let bytes = build_sample();
    assert_eq!(&bytes[0..8], b"FVBOOTPK");
    assert_eq!(read_u32(&bytes, 8).unwrap(), 2);
    assert_eq!(read_u32(&bytes, 12).unwrap(), 2);
    assert_eq!(get64(&bytes, 16), bytes.len() as u64);
    let mut zeroed = bytes.clone();
    put32(&mut zeroed, 24, 0);
    assert_eq!(read_u32(&bytes, 24).unwrap(), checksum(&zeroed));
    // VM record fields.
    assert_eq!(read_u32(&bytes, VM0 + 32).unwrap(), 4); // vcpus
    assert_eq!(read_u32(&bytes, VM0 + 36).unwrap(), 0b11); // flags
    assert_eq!(get64(&bytes, VM0 + 40), 64 * MIB);
    assert_eq!(get64(&bytes, VM0 + 48), RAM + 0x20_0000);
    assert_eq!(get64(&bytes, VM0 + 56), RAM + 62 * MIB);
    assert_eq!(read_u32(&bytes, VM0 + 72).unwrap(), 2);
    assert_eq!(read_u32(&bytes, VM0 + 76).unwrap(), 1);
    assert_eq!(get64(&bytes, VM0 + 80), RAM + 60 * MIB);
    let name_off = get64(&bytes, VM0) as usize;
    assert_eq!(&bytes[name_off..name_off + 5], b"alpha");
}

#[test]
fn flag_bits_are_pinned() {
    assert_eq!(VmFlags::CONSOLE_UART.bits(), 1 << 0);
    assert_eq!(VmFlags::AUTOSTART.bits(), 1 << 1);
    assert_eq!(VmFlags::CONSOLE_VIRTIO.bits(), 1 << 2);
    assert_eq!(VmFlags::all().bits(), 0b111);
}

/// CONSOLE_VIRTIO round-trips at bit 2 of the record's flags word; bit 3 is
/// still unknown and refused.
#[test]
fn console_virtio_flag_encoding() {
    let mut b = build_sample();
    put32(&mut b, VM0 + 36, 0b111);
    reseal(&mut b);
    let pkg = Package::parse(&b).unwrap();
    let vm = pkg.vms().next().unwrap();
    assert_eq!(
        vm.flags,
        VmFlags::CONSOLE_UART | VmFlags::AUTOSTART | VmFlags::CONSOLE_VIRTIO
    );
    assert_eq!(
        parse_edited(|b| put32(b, VM0 + 36, 1 << 3)),
        Err(BootPkgError::UnknownFlags {
            vm: 0,
            bits: 1 << 3
        })
    );
}

#[test]
fn every_truncation_is_an_error() {
    let bytes = build_sample();
    for len in 0..bytes.len() {
        assert!(Package::parse(&bytes[..len]).is_err(), "len {len}");
    }
    assert!(Package::parse(&bytes).is_ok());
}

#[test]
fn trailing_bytes_are_ignored() {
    let mut bytes = build_sample();
    let total = bytes.len();
    bytes.extend_from_slice(&[0xff; 100]);
    let pkg = Package::parse(&bytes).unwrap();
    assert_eq!(pkg.as_bytes().len(), total);
}

#[test]
fn header_errors() {
    let mut b = build_sample();
    b[0] = b'X';
    assert_eq!(Package::parse(&b).unwrap_err(), BootPkgError::BadMagic);
    assert_eq!(
        parse_edited(|b| put32(b, 8, 3)),
        Err(BootPkgError::UnsupportedVersion(3))
    );
    // Version 1 (CRC-32) packages are refused, not misread.
    assert_eq!(
        parse_edited(|b| put32(b, 8, 1)),
        Err(BootPkgError::UnsupportedVersion(1))
    );
    assert_eq!(parse_edited(|b| put32(b, 12, 0)), Err(BootPkgError::NoVms));
    assert_eq!(
        parse_edited(|b| put32(b, 12, 17)),
        Err(BootPkgError::TooManyVms(17))
    );
    assert_eq!(
        parse_edited(|b| put32(b, 40, 1)),
        Err(BootPkgError::ReservedNonZero { vm: None })
    );
    // total_size larger than the input.
    assert_eq!(
        parse_edited(|b| {
            let t = b.len() as u64;
            put64(b, 16, t + 1)
        }),
        Err(BootPkgError::Truncated)
    );
    assert_eq!(
        parse_edited(|b| put64(b, 16, u64::MAX)),
        Err(BootPkgError::Truncated)
    );
    let mut b = build_sample();
    b[4000] ^= 1;
    assert!(matches!(
        Package::parse(&b),
        Err(BootPkgError::ChecksumMismatch { .. })
    ));
}

#[test]
fn record_errors() {
    use BootPkgError as E;
    assert_eq!(
        parse_edited(|b| put32(b, VM0 + 32, 0)),
        Err(E::BadVcpuCount { vm: 0, vcpus: 0 })
    );
    assert_eq!(
        parse_edited(|b| put32(b, VM1 + 32, 65)),
        Err(E::BadVcpuCount { vm: 1, vcpus: 65 })
    );
    assert_eq!(
        parse_edited(|b| put64(b, VM0 + 40, 63 * MIB)),
        Err(E::BadMemorySize {
            vm: 0,
            bytes: 63 * MIB
        })
    );
    assert_eq!(
        parse_edited(|b| put64(b, VM0 + 40, 0)),
        Err(E::BadMemorySize { vm: 0, bytes: 0 })
    );
    let huge = u64::MAX - (2 * MIB - 1);
    assert_eq!(
        parse_edited(|b| put64(b, VM0 + 40, huge)),
        Err(E::BadMemorySize { vm: 0, bytes: huge })
    );
    assert_eq!(
        parse_edited(|b| put32(b, VM0 + 36, 1 << 7)),
        Err(E::UnknownFlags {
            vm: 0,
            bits: 1 << 7
        })
    );
    assert_eq!(
        parse_edited(|b| put32(b, VM0 + 76, 2)),
        Err(E::BadInitrdMarker { vm: 0, value: 2 })
    );
    assert_eq!(
        parse_edited(|b| put32(b, VM1 + 76, 1)),
        // An initrd marked present with an all-zero record: empty.
        Err(E::BadSegmentSize {
            vm: 1,
            part: Part::Initrd
        })
    );
    assert_eq!(
        parse_edited(|b| b[VM0 + 120] = 1),
        Err(E::ReservedNonZero { vm: Some(0) })
    );
    assert_eq!(
        parse_edited(|b| put32(b, VM0 + 72, 0)),
        Err(E::NoSegments { vm: 0 })
    );
    assert_eq!(
        parse_edited(|b| put32(b, VM0 + 72, 65)),
        Err(E::TooManySegments { vm: 0, count: 65 })
    );
}

#[test]
fn string_errors() {
    use BootPkgError as E;
    // Name not UTF-8.
    assert_eq!(
        parse_edited(|b| {
            let off = get64(b, VM0) as usize;
            b[off] = 0xff;
        }),
        Err(E::BadName { vm: 0 })
    );
    // Empty name.
    assert_eq!(
        parse_edited(|b| put64(b, VM1 + 8, 0)),
        Err(E::BadName { vm: 1 })
    );
    // Control character.
    assert_eq!(
        parse_edited(|b| {
            let off = get64(b, VM0) as usize;
            b[off] = b'\n';
        }),
        Err(E::BadName { vm: 0 })
    );
    // Duplicate: make beta's name point at alpha's.
    assert_eq!(
        parse_edited(|b| {
            let off = get64(b, VM0);
            put64(b, VM1, off);
            put64(b, VM1 + 8, 5);
        }),
        Err(E::DuplicateName { vm: 1 })
    );
    // Command line with NUL.
    assert_eq!(
        parse_edited(|b| {
            let off = get64(b, VM0 + 16) as usize;
            b[off] = 0;
        }),
        Err(E::BadCommandLine { vm: 0 })
    );
}

#[test]
fn bounds_errors() {
    use BootPkgError as E;
    let oob = |part| Err(E::OutOfBounds { vm: 0, part });
    assert_eq!(parse_edited(|b| put64(b, VM0, u64::MAX)), oob(Part::Name));
    assert_eq!(
        parse_edited(|b| put64(b, VM0 + 8, u64::MAX)),
        oob(Part::Name)
    );
    // Strings may not point into the header or VM table.
    assert_eq!(parse_edited(|b| put64(b, VM0, 0)), oob(Part::Name));
    assert_eq!(
        parse_edited(|b| put64(b, VM0 + 24, 1 << 40)),
        oob(Part::CommandLine)
    );
    assert_eq!(
        parse_edited(|b| put64(b, VM0 + 64, u64::MAX - 8)),
        oob(Part::SegmentTable)
    );
    let seg0 = |b: &Vec<u8>| get64(b, VM0 + 64) as usize;
    assert_eq!(
        parse_edited(|b| {
            let s = seg0(b);
            put64(b, s + 16, u64::MAX)
        }),
        oob(Part::Segment(0))
    );
    assert_eq!(
        parse_edited(|b| {
            let t = b.len() as u64;
            put64(b, VM0 + 88, t)
        }),
        oob(Part::Initrd)
    );
}

#[test]
fn blob_alignment_and_padding_errors() {
    use BootPkgError as E;
    let seg0 = |b: &Vec<u8>| get64(b, VM0 + 64) as usize;
    // Offset no longer congruent to the GPA.
    assert_eq!(
        parse_edited(|b| {
            let s = seg0(b);
            let off = get64(b, s + 8);
            put64(b, s + 8, off + 1);
        }),
        Err(E::Misaligned {
            vm: 0,
            part: Part::Segment(0)
        })
    );
    // Empty blob with an offset.
    assert_eq!(
        parse_edited(|b| {
            let s = seg0(b);
            put64(b, s + 16, 0);
        }),
        Err(E::Misaligned {
            vm: 0,
            part: Part::Segment(0)
        })
    );
    // A non-zero byte right after segment 1's data (same page).
    assert_eq!(
        parse_edited(|b| {
            let s = seg0(b) + SEGMENT_RECORD_SIZE;
            let end = (get64(b, s + 8) + get64(b, s + 16)) as usize;
            b[end] = 1;
        }),
        Err(E::NonZeroPadding {
            vm: 0,
            part: Part::Segment(1)
        })
    );
}

#[test]
fn placement_errors_in_parsed_packages() {
    use BootPkgError as E;
    let seg0 = |b: &Vec<u8>| get64(b, VM0 + 64) as usize;
    // Segment 1 moved below RAM (keeping its page offset).
    assert_eq!(
        parse_edited(|b| {
            let s = seg0(b) + SEGMENT_RECORD_SIZE;
            put64(b, s, 0x123);
        }),
        Err(E::OutsideRam {
            vm: 0,
            part: Part::Segment(1)
        })
    );
    // Segment 1 moved into segment 0's last page.
    assert_eq!(
        parse_edited(|b| {
            let s = seg0(b) + SEGMENT_RECORD_SIZE;
            put64(b, s, RAM + 0x20_1123);
        }),
        Err(E::Overlap {
            vm: 0,
            first: Part::Segment(0),
            second: Part::Segment(1)
        })
    );
    // DTB slot on top of the initrd.
    assert_eq!(
        parse_edited(|b| put64(b, VM0 + 56, RAM + 60 * MIB)),
        Err(E::Overlap {
            vm: 0,
            first: Part::Initrd,
            second: Part::Dtb
        })
    );
    // DTB slot past the end of RAM.
    assert_eq!(
        parse_edited(|b| put64(b, VM0 + 56, RAM + 64 * MIB - 0x1000)),
        Err(E::OutsideRam {
            vm: 0,
            part: Part::Dtb
        })
    );
    assert_eq!(
        parse_edited(|b| put64(b, VM0 + 56, RAM + 62 * MIB + 8)),
        Err(E::Misaligned {
            vm: 0,
            part: Part::Dtb
        })
    );
    // Entry outside the file-backed image (in segment 1's bss).
    assert_eq!(
        parse_edited(|b| put64(b, VM0 + 48, RAM + 0x30_2000)),
        Err(E::EntryNotInImage { vm: 0 })
    );
    assert_eq!(
        parse_edited(|b| put64(b, VM0 + 48, RAM + 0x20_0001)),
        Err(E::Misaligned {
            vm: 0,
            part: Part::Entry
        })
    );
}

#[test]
fn builder_rejects_bad_placement() {
    use BootPkgError as E;
    let s = sample_data();
    let segs = alpha_segments(&s);
    let base = alpha(&s, &segs);

    let mut b = PackageBuilder::new();
    // Overlapping segments.
    let overlapping = [
        segs[0],
        Segment {
            gpa: gpa(RAM + 0x20_0800),
            data: &s.data,
            mem_size: 300,
        },
    ];
    assert_eq!(
        b.add_vm(&VmDescriptor {
            sched: crate::VmSched::default(),
            segments: &overlapping,
            ..base
        }),
        Err(E::Overlap {
            vm: 0,
            first: Part::Segment(0),
            second: Part::Segment(1)
        })
    );
    // Segment running past the end of RAM.
    let past_end = [Segment {
        gpa: gpa(RAM + 64 * MIB - 0x100),
        data: &s.data,
        mem_size: 0x200,
    }];
    assert_eq!(
        b.add_vm(&VmDescriptor {
            sched: crate::VmSched::default(),
            segments: &past_end,
            entry: gpa(RAM + 64 * MIB - 0x100),
            ..base
        }),
        Err(E::OutsideRam {
            vm: 0,
            part: Part::Segment(0)
        })
    );
    // Below RAM.
    let below = [Segment {
        gpa: gpa(0x1000_0000),
        data: &s.data,
        mem_size: 300,
    }];
    assert_eq!(
        b.add_vm(&VmDescriptor {
            sched: crate::VmSched::default(),
            segments: &below,
            ..base
        }),
        Err(E::OutsideRam {
            vm: 0,
            part: Part::Segment(0)
        })
    );
    // Initrd overlapping the kernel.
    assert_eq!(
        b.add_vm(&VmDescriptor {
            sched: crate::VmSched::default(),
            initrd: Some(Segment {
                gpa: gpa(RAM + 0x30_0000),
                data: &s.initrd,
                mem_size: s.initrd.len() as u64,
            }),
            ..base
        }),
        Err(E::Overlap {
            vm: 0,
            first: Part::Segment(1),
            second: Part::Initrd
        })
    );
    // Initrd overlapping the DTB slot.
    assert_eq!(
        b.add_vm(&VmDescriptor {
            sched: crate::VmSched::default(),
            initrd: Some(Segment {
                gpa: gpa(RAM + 62 * MIB - 0x1000),
                data: &s.initrd,
                mem_size: s.initrd.len() as u64,
            }),
            ..base
        }),
        Err(E::Overlap {
            vm: 0,
            first: Part::Initrd,
            second: Part::Dtb
        })
    );
    // DTB slot on the kernel.
    assert_eq!(
        b.add_vm(&VmDescriptor {
            sched: crate::VmSched::default(),
            dtb_gpa: gpa(RAM + 0x20_0000),
            ..base
        }),
        Err(E::Overlap {
            vm: 0,
            first: Part::Segment(0),
            second: Part::Dtb
        })
    );
    // bss smaller than data.
    let shrunk = [Segment {
        mem_size: 10,
        ..segs[0]
    }];
    assert_eq!(
        b.add_vm(&VmDescriptor {
            sched: crate::VmSched::default(),
            segments: &shrunk,
            ..base
        }),
        Err(E::BadSegmentSize {
            vm: 0,
            part: Part::Segment(0)
        })
    );
    assert_eq!(
        b.add_vm(&VmDescriptor { vcpus: 65, ..base }),
        Err(E::BadVcpuCount { vm: 0, vcpus: 65 })
    );
    assert_eq!(
        b.add_vm(&VmDescriptor {
            sched: crate::VmSched::default(),
            segments: &[],
            ..base
        }),
        Err(E::NoSegments { vm: 0 })
    );
    assert_eq!(b.vm_count(), 0);
    b.add_vm(&base).unwrap();
    assert_eq!(b.add_vm(&base), Err(E::DuplicateName { vm: 1 }));
}

#[test]
fn builder_limits_vm_count() {
    let s = sample_data();
    let segs = alpha_segments(&s);
    let mut b = PackageBuilder::new();
    let names: Vec<std::string::String> = (0..=MAX_VMS).map(|i| std::format!("vm{i}")).collect();
    for name in &names[..MAX_VMS] {
        b.add_vm(&VmDescriptor {
            sched: crate::VmSched::default(),
            name,
            ..alpha(&s, &segs)
        })
        .unwrap();
    }
    assert_eq!(
        b.add_vm(&VmDescriptor {
            sched: crate::VmSched::default(),
            name: &names[MAX_VMS],
            ..alpha(&s, &segs)
        }),
        Err(BootPkgError::TooManyVms(17))
    );
    let bytes = b.build();
    assert_eq!(Package::parse(&bytes).unwrap().vm_count(), MAX_VMS);
}

#[test]
fn empty_builder_gives_rejected_package() {
    let bytes = PackageBuilder::new().build();
    assert_eq!(Package::parse(&bytes).unwrap_err(), BootPkgError::NoVms);
}

/// Walks everything a parsed package exposes (must not panic).
fn walk(pkg: &Package<'_>) -> usize {
    let mut n = 0;
    for vm in pkg.vms() {
        n += vm.name.len() + vm.cmdline.len();
        for seg in vm.segments().chain(vm.initrd) {
            n += seg.data.len();
        }
    }
    n
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any corruption of 1..=4 bytes is caught (the checksum sees every change
    /// of a single 64-bit word, and random damage to several with probability
    /// about 1 - 2^-32).
    #[test]
    fn flipped_bytes_are_rejected(
        flips in prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..=4)
    ) {
        let mut bytes = build_sample();
        let original = bytes.clone();
        for (idx, mask) in &flips {
            let i = idx.index(bytes.len());
            bytes[i] ^= mask;
        }
        prop_assume!(bytes != original);
        prop_assert!(Package::parse(&bytes).is_err());
    }

    /// With the checksum recomputed, structural damage must still never panic;
    /// whatever parses must be fully iterable.
    #[test]
    fn resealed_corruption_never_panics(
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..=8),
        in_tables in any::<bool>(),
    ) {
        let mut bytes = build_sample();
        let table_end = HEADER_SIZE + 2 * VM_RECORD_SIZE + 3 * SEGMENT_RECORD_SIZE + 40;
        for (idx, value) in &flips {
            let i = if in_tables { idx.index(table_end) } else { idx.index(bytes.len()) };
            bytes[i] = *value;
        }
        reseal(&mut bytes);
        if let Ok(pkg) = Package::parse(&bytes) {
            walk(&pkg);
        }
    }

    /// Arbitrary input never panics.
    #[test]
    fn arbitrary_bytes_never_panic(mut bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if bytes.len() >= 8 {
            bytes[..8].copy_from_slice(&MAGIC);
        }
        if bytes.len() >= 12 {
            bytes[8..12].copy_from_slice(&1u32.to_le_bytes());
        }
        if bytes.len() >= HEADER_SIZE {
            let len = bytes.len() as u64;
            bytes[16..24].copy_from_slice(&len.to_le_bytes());
            reseal(&mut bytes);
        }
        if let Ok(pkg) = Package::parse(&bytes) {
            walk(&pkg);
        }
    }
}

#[test]
fn scheduling_fields_round_trip_and_are_checked() {
    let s = sample_data();
    let segs = alpha_segments(&s);
    let mut d = alpha(&s, &segs);
    d.sched = crate::VmSched {
        weight: 250,
        pin: Some(1),
    };
    let mut b = PackageBuilder::new();
    b.add_vm(&d).unwrap();
    let bytes = b.build();
    let pkg = Package::parse(&bytes).unwrap();
    let vm = pkg.vms().next().unwrap();
    assert_eq!(
        vm.sched,
        crate::VmSched {
            weight: 250,
            pin: Some(1)
        }
    );

    // The record's bytes 112..120 hold weight and pin + 1 (little endian).
    let rec = HEADER_SIZE;
    assert_eq!(&bytes[rec + 112..rec + 116], &250u32.to_le_bytes());
    assert_eq!(&bytes[rec + 116..rec + 120], &2u32.to_le_bytes());

    // Defaults: zero fields mean weight 100, not pinned.
    let d2 = alpha(&s, &segs);
    let mut b2 = PackageBuilder::new();
    b2.add_vm(&d2).unwrap();
    let bytes2 = b2.build();
    let vm2 = Package::parse(&bytes2).unwrap().vms().next().unwrap();
    assert_eq!(vm2.sched, crate::VmSched::default());
    assert_eq!(vm2.sched.weight, crate::DEFAULT_WEIGHT);

    // Out of range values are refused by the builder.
    for bad in [
        crate::VmSched {
            weight: 0,
            pin: None,
        },
        crate::VmSched {
            weight: crate::MAX_WEIGHT + 1,
            pin: None,
        },
        crate::VmSched {
            weight: 1,
            pin: Some(crate::MAX_PIN_HART),
        },
    ] {
        let mut d3 = alpha(&s, &segs);
        d3.sched = bad;
        assert!(matches!(
            PackageBuilder::new().add_vm(&d3),
            Err(BootPkgError::BadWeight { .. } | BootPkgError::BadPin { .. })
        ));
    }
}

mod device_tests {
    use super::*;

    const DISK0: u64 = 0x1000_8000;
    const DISK1: u64 = 0x1000_7000;
    const RNG: u64 = 0x1000_6000;
    const NET: u64 = 0x1000_5000;
    const MAC_A: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
    const MAC_B: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x57];

    fn blk(slot: u8, host_base: u64, read_only: bool) -> VmDevice {
        VmDevice {
            slot,
            kind: DeviceKind::Block {
                host_base,
                read_only,
            },
        }
    }

    fn nic(slot: u8, switch: u16, mac: [u8; 6]) -> VmDevice {
        VmDevice {
            slot,
            kind: DeviceKind::Net { switch, mac },
        }
    }

    fn rng(slot: u8) -> VmDevice {
        VmDevice {
            slot,
            kind: DeviceKind::Rng { host_base: RNG },
        }
    }

    /// A package with a switch "lan" (uplink NET) and "back", VM alpha with a
    /// read-write disk, a NIC and rng, VM beta with a read-only disk, a NIC
    /// on "back" and rng.
    fn build(alpha_devs: &[VmDevice], beta_devs: &[VmDevice]) -> Result<Vec<u8>, BootPkgError> {
        let s = sample_data();
        let segs = alpha_segments(&s);
        let beta_segs = [Segment {
            gpa: gpa(RAM + 0x20_0000),
            data: &s.beta,
            mem_size: 4,
        }];
        let mut b = PackageBuilder::new();
        assert_eq!(b.add_switch("lan", Some(NET))?, 0);
        assert_eq!(b.add_switch("back", None)?, 1);
        b.add_vm(&VmDescriptor {
            devices: alpha_devs,
            ..alpha(&s, &segs)
        })?;
        b.add_vm(&VmDescriptor {
            sched: crate::VmSched::default(),
            name: "beta",
            vcpus: 1,
            memory_bytes: 16 * MIB,
            entry: gpa(RAM + 0x20_0000),
            dtb_gpa: gpa(RAM + 14 * MIB),
            initrd: None,
            cmdline: "",
            flags: VmFlags::CONSOLE_VIRTIO,
            segments: &beta_segs,
            devices: beta_devs,
        })?;
        Ok(b.build())
    }

    fn good() -> (Vec<VmDevice>, Vec<VmDevice>) {
        (
            vec![blk(1, DISK0, false), nic(2, 0, MAC_A), rng(3)],
            vec![blk(1, DISK1, true), nic(2, 1, MAC_B), rng(3)],
        )
    }

    #[test]
    fn devices_and_switches_round_trip() {
        let (a, b) = good();
        let bytes = build(&a, &b).unwrap();
        let pkg = Package::parse(&bytes).unwrap();
        let sw: Vec<_> = pkg.switches().collect();
        assert_eq!(
            sw,
            [
                SwitchSpec {
                    name: "lan",
                    uplink: Some(NET)
                },
                SwitchSpec {
                    name: "back",
                    uplink: None
                }
            ]
        );
        let vms: Vec<_> = pkg.vms().collect();
        assert_eq!(vms[0].devices().collect::<Vec<_>>(), a);
        assert_eq!(vms[1].devices().collect::<Vec<_>>(), b);
        assert_eq!(vms[0].device_count(), 3);
        assert_eq!(pkg.switch_count(), 2);
    }

    #[test]
    fn records_are_pinned() {
        let (a, b) = good();
        let bytes = build(&a, &b).unwrap();
        // Header: switch count and table.
        assert_eq!(read_u32(&bytes, 28).unwrap(), 2);
        let table = get64(&bytes, 32) as usize;
        assert_eq!(&bytes[get64(&bytes, table) as usize..][..3], b"lan");
        assert_eq!(get64(&bytes, table + 8), 3);
        assert_eq!(get64(&bytes, table + 16), NET);
        assert_eq!(get64(&bytes, table + SWITCH_RECORD_SIZE + 16), 0);
        // VM beta's devices: count at 128, table at 120.
        let dev = get64(&bytes, VM1 + 120) as usize;
        assert_eq!(read_u32(&bytes, VM1 + 128).unwrap(), 3);
        let rec = &bytes[dev..dev + 3 * DEVICE_RECORD_SIZE];
        // Block: kind 1, slot 1, flags read-only, host base at 16.
        assert_eq!(&rec[..4], &[1, 1, 1, 0]);
        assert_eq!(get64(rec, 16), DISK1);
        // Net: kind 2, slot 2, switch 1, MAC at 6.
        assert_eq!(&rec[32..38], &[2, 2, 0, 0, 1, 0]);
        assert_eq!(&rec[38..44], &MAC_B);
        // Rng: kind 3, slot 3, host base.
        assert_eq!(&rec[64..66], &[3, 3]);
        assert_eq!(get64(rec, 64 + 16), RNG);
        // Guest slot layout (QEMU virt's).
        assert_eq!(slot_gpa(0).raw(), 0x1000_1000);
        assert_eq!(slot_gpa(7).raw(), 0x1000_8000);
        assert_eq!(rng(3).irq(), 4);
        assert_eq!(rng(3).gpa().raw(), 0x1000_4000);
    }

    #[test]
    fn device_rules_are_enforced_by_builder_and_parser() {
        use DeviceRule as R;
        let (a, b) = good();
        type Case = (Vec<VmDevice>, Vec<VmDevice>, u32, u32, R);
        let cases: Vec<Case> = vec![
            (
                vec![blk(8, DISK0, false)],
                b.clone(),
                0,
                0,
                R::SlotOutOfRange,
            ),
            (
                vec![blk(1, DISK0, false), rng(1)],
                b.clone(),
                0,
                1,
                R::SlotTaken,
            ),
            (a.clone(), vec![rng(0)], 1, 0, R::ConsoleSlot),
            (vec![nic(1, 2, MAC_A)], b.clone(), 0, 0, R::NoSuchSwitch),
            (
                vec![nic(1, 0, [1, 0, 0, 0, 0, 1])],
                b.clone(),
                0,
                0,
                R::BadMac,
            ),
            (vec![nic(1, 0, [0; 6])], b.clone(), 0, 0, R::BadMac),
            (a.clone(), vec![nic(1, 0, MAC_A)], 1, 0, R::DuplicateMac),
            (
                vec![blk(1, 0x1000_8004, false)],
                b.clone(),
                0,
                0,
                R::BadHostBase,
            ),
            (
                a.clone(),
                vec![blk(1, DISK0, true)],
                1,
                0,
                R::HostDeviceShared,
            ),
            (
                vec![blk(1, NET, false)],
                b.clone(),
                0,
                0,
                R::HostDeviceShared,
            ),
            (
                vec![blk(1, RNG, false), rng(2)],
                b.clone(),
                0,
                1,
                R::HostDeviceShared,
            ),
        ];
        for (alpha_devs, beta_devs, vm, device, reason) in cases {
            let want = BootPkgError::DeviceRule { vm, device, reason };
            assert_eq!(
                build(&alpha_devs, &beta_devs),
                Err(want),
                "builder: {reason}"
            );
            // The same package written without the builder's checks: the
            // parser refuses it too. Encode the bad devices over good ones.
            let mut bytes = build(&a, &b).unwrap();
            let (rec, devs) = if vm == 0 {
                (VM0, &alpha_devs)
            } else {
                (VM1, &beta_devs)
            };
            let at = get64(&bytes, rec + 120) as usize;
            if devs.len() > 3 {
                continue;
            }
            for (k, d) in devs.iter().enumerate() {
                let r = crate::devices::encode_device(d);
                bytes[at + k * DEVICE_RECORD_SIZE..][..DEVICE_RECORD_SIZE].copy_from_slice(&r);
            }
            put32(&mut bytes, rec + 128, devs.len() as u32);
            reseal(&mut bytes);
            assert_eq!(
                Package::parse(&bytes).unwrap_err(),
                want,
                "parser: {reason}"
            );
        }
    }

    #[test]
    fn malformed_device_records_and_switches_are_refused() {
        let (a, b) = good();
        let bytes = build(&a, &b).unwrap();
        let dev = get64(&bytes, VM0 + 120) as usize;
        let edit = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut c = bytes.clone();
            f(&mut c);
            reseal(&mut c);
            Package::parse(&c).map(|_| ())
        };
        let bad = Err(BootPkgError::BadDevice { vm: 0, device: 0 });
        assert_eq!(edit(&|c| c[dev] = 9), bad); // unknown kind
        assert_eq!(edit(&|c| c[dev + 2] = 2), bad); // unknown block flag
        assert_eq!(edit(&|c| c[dev + 6] = 0x52), bad); // MAC on a disk
        assert_eq!(
            edit(&|c| c[dev + 12] = 1),
            Err(BootPkgError::ReservedNonZero { vm: Some(0) })
        );
        assert_eq!(
            edit(&|c| put32(c, VM0 + 128, 9)),
            Err(BootPkgError::TooManyDevices { vm: 0, count: 9 })
        );
        assert_eq!(
            edit(&|c| put64(c, VM0 + 120, u64::MAX)),
            Err(BootPkgError::OutOfBounds {
                vm: 0,
                part: Part::DeviceTable
            })
        );
        assert_eq!(
            edit(&|c| put32(c, 28, 17)),
            Err(BootPkgError::TooManySwitches(17))
        );
        assert_eq!(
            edit(&|c| put64(c, 32, 8)),
            Err(BootPkgError::SwitchOutOfBounds { switch: 0 })
        );
        let table = get64(&bytes, 32) as usize;
        let name = get64(&bytes, table) as usize;
        assert_eq!(edit(&|c| c[name..name + 3].copy_from_slice(b"bac")), Ok(()));
        // "back" renamed "lan\0"-like duplicate: make switch 1's name "lan".
        let name1 = get64(&bytes, table + SWITCH_RECORD_SIZE) as usize;
        assert_eq!(
            edit(&|c| {
                c[name1..name1 + 3].copy_from_slice(b"lan");
                put64(c, table + SWITCH_RECORD_SIZE + 8, 3);
            }),
            Err(BootPkgError::BadSwitch {
                switch: 1,
                reason: SwitchRule::DuplicateName
            })
        );
        assert_eq!(
            edit(&|c| put64(c, table + SWITCH_RECORD_SIZE + 16, NET)),
            Err(BootPkgError::BadSwitch {
                switch: 1,
                reason: SwitchRule::DuplicateUplink
            })
        );
        let mut b2 = PackageBuilder::new();
        assert_eq!(
            b2.add_switch("", None),
            Err(BootPkgError::BadSwitch {
                switch: 0,
                reason: SwitchRule::BadName
            })
        );
        assert_eq!(
            b2.add_switch("x", Some(0x123)),
            Err(BootPkgError::BadSwitch {
                switch: 0,
                reason: SwitchRule::BadUplink
            })
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Any bytes in the device and switch tables: parse never panics, and
        /// what it accepts iterates to exactly the counted records.
        #[test]
        fn device_tables_never_panic(noise in proptest::collection::vec(any::<u8>(), 96), at in 0usize..64) {
            let (a, b) = good();
            let mut bytes = build(&a, &b).unwrap();
            let dev = get64(&bytes, VM0 + 120) as usize;
            let table = get64(&bytes, 32) as usize;
            let start = if at % 2 == 0 { dev } else { table };
            let end = (start + at + noise.len()).min(bytes.len());
            let n = end - start - at;
            bytes[start + at..end].copy_from_slice(&noise[..n]);
            reseal(&mut bytes);
            if let Ok(pkg) = Package::parse(&bytes) {
                prop_assert_eq!(pkg.switches().count(), pkg.switch_count());
                for vm in pkg.vms() {
                    prop_assert_eq!(vm.devices().count(), vm.device_count());
                }
            }
        }
    }
}
