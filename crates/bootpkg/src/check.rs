//! Semantic checks of one VM, shared by the parser and the builder.

use crate::{
    BootPkgError, Part, Segment, VmSpec, DTB_SLOT_SIZE, GUEST_RAM_BASE, MAX_CMDLINE_LEN,
    MAX_NAME_LEN, MAX_SEGMENTS, MAX_VCPUS, MEMORY_GRANULE, PAGE_SIZE,
};
use fv_addr::{GuestPhysAddr, Range};

type GpaRange = Range<GuestPhysAddr>;

/// Where a piece lies in guest memory.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Extent {
    pub gpa: u64,
    pub data_len: u64,
    pub mem_size: u64,
}

impl From<Segment<'_>> for Extent {
    fn from(s: Segment<'_>) -> Self {
        Extent {
            gpa: s.gpa.raw(),
            data_len: s.data.len() as u64,
            mem_size: s.mem_size,
        }
    }
}

/// What the checks look at.
pub(crate) struct Facts<'a, I> {
    pub name: &'a str,
    pub cmdline: &'a str,
    pub vcpus: u32,
    pub memory_bytes: u64,
    pub entry: u64,
    pub dtb_gpa: u64,
    pub initrd: Option<Extent>,
    pub segments: I,
}

/// The facts of a decoded VM record.
pub(crate) fn facts<'a>(vm: &VmSpec<'a>) -> Facts<'a, impl Iterator<Item = Extent> + Clone + 'a> {
    Facts {
        name: vm.name,
        cmdline: vm.cmdline,
        vcpus: vm.vcpus,
        memory_bytes: vm.memory_bytes,
        entry: vm.entry.raw(),
        dtb_gpa: vm.dtb_gpa.raw(),
        initrd: vm.initrd.map(Extent::from),
        segments: vm.segments_iter().map(Extent::from),
    }
}

/// `[align_down(gpa), align_up(gpa + size))`; `None` on overflow.
fn page_span(gpa: u64, size: u64) -> Option<GpaRange> {
    let start = GuestPhysAddr::new(gpa).align_down(PAGE_SIZE).ok()?;
    let end = GuestPhysAddr::new(gpa.checked_add(size)?)
        .align_up(PAGE_SIZE)
        .ok()?;
    GpaRange::new(start, end.offset_from(start).ok()?).ok()
}

fn seg_part(k: usize) -> Part {
    Part::Segment(u32::try_from(k).unwrap_or(u32::MAX))
}

/// Checks one VM: strings, counts, sizes, everything inside RAM, no two pieces
/// (segments, initrd, DTB slot) sharing a guest page, entry inside the image.
pub(crate) fn check_vm<I>(vm: u32, f: &Facts<'_, I>) -> Result<(), BootPkgError>
where
    I: Iterator<Item = Extent> + Clone,
{
    if f.name.is_empty() || f.name.len() > MAX_NAME_LEN || f.name.chars().any(char::is_control) {
        return Err(BootPkgError::BadName { vm });
    }
    if f.cmdline.len() > MAX_CMDLINE_LEN || f.cmdline.contains('\0') {
        return Err(BootPkgError::BadCommandLine { vm });
    }
    if !(1..=MAX_VCPUS).contains(&f.vcpus) {
        return Err(BootPkgError::BadVcpuCount { vm, vcpus: f.vcpus });
    }
    let bad_memory = BootPkgError::BadMemorySize {
        vm,
        bytes: f.memory_bytes,
    };
    if f.memory_bytes == 0 || !f.memory_bytes.is_multiple_of(MEMORY_GRANULE) {
        return Err(bad_memory);
    }
    let ram = GpaRange::new(GUEST_RAM_BASE, f.memory_bytes).map_err(|_| bad_memory)?;

    let count = f.segments.clone().count();
    if count == 0 {
        return Err(BootPkgError::NoSegments { vm });
    }
    if count > MAX_SEGMENTS {
        return Err(BootPkgError::TooManySegments {
            vm,
            count: u32::try_from(count).unwrap_or(u32::MAX),
        });
    }

    // Every piece, as the page span it occupies.
    let outside = |part| BootPkgError::OutsideRam { vm, part };
    for (k, s) in f.segments.clone().enumerate() {
        if s.mem_size == 0 || s.mem_size < s.data_len {
            return Err(BootPkgError::BadSegmentSize {
                vm,
                part: seg_part(k),
            });
        }
        if !ram.contains_span(GuestPhysAddr::new(s.gpa), s.mem_size) {
            return Err(outside(seg_part(k)));
        }
    }
    if let Some(i) = f.initrd {
        if i.data_len == 0 || i.mem_size != i.data_len {
            return Err(BootPkgError::BadSegmentSize {
                vm,
                part: Part::Initrd,
            });
        }
        if !ram.contains_span(GuestPhysAddr::new(i.gpa), i.mem_size) {
            return Err(outside(Part::Initrd));
        }
    }
    let dtb = GuestPhysAddr::new(f.dtb_gpa);
    if !dtb.is_aligned(PAGE_SIZE) {
        return Err(BootPkgError::Misaligned {
            vm,
            part: Part::Dtb,
        });
    }
    if !ram.contains_span(dtb, DTB_SLOT_SIZE) {
        return Err(outside(Part::Dtb));
    }

    // All pieces lie in RAM, whose end is page aligned, so the page spans exist.
    let span = |gpa, size, part| page_span(gpa, size).ok_or_else(|| outside(part));
    let dtb_span = span(f.dtb_gpa, DTB_SLOT_SIZE, Part::Dtb)?;
    let initrd_span = match f.initrd {
        Some(i) => Some(span(i.gpa, i.mem_size, Part::Initrd)?),
        None => None,
    };
    let overlap = |first, second| BootPkgError::Overlap { vm, first, second };
    for (k, s) in f.segments.clone().enumerate() {
        let a = span(s.gpa, s.mem_size, seg_part(k))?;
        for (j, t) in f.segments.clone().enumerate().skip(k + 1) {
            let b = span(t.gpa, t.mem_size, seg_part(j))?;
            if a.overlaps(&b) {
                return Err(overlap(seg_part(k), seg_part(j)));
            }
        }
        if let Some(b) = initrd_span {
            if a.overlaps(&b) {
                return Err(overlap(seg_part(k), Part::Initrd));
            }
        }
        if a.overlaps(&dtb_span) {
            return Err(overlap(seg_part(k), Part::Dtb));
        }
    }
    if let Some(b) = initrd_span {
        if b.overlaps(&dtb_span) {
            return Err(overlap(Part::Initrd, Part::Dtb));
        }
    }

    if !f.entry.is_multiple_of(2) {
        return Err(BootPkgError::Misaligned {
            vm,
            part: Part::Entry,
        });
    }
    let entry = GuestPhysAddr::new(f.entry);
    let in_image = f.segments.clone().any(|s| {
        GpaRange::new(GuestPhysAddr::new(s.gpa), s.data_len).is_ok_and(|r| r.contains(entry))
    });
    if !in_image {
        return Err(BootPkgError::EntryNotInImage { vm });
    }
    Ok(())
}
