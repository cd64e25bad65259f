//! Turning a kernel file into segments and an entry point, and placing the initrd
//! and the DTB slot in the VM's RAM.
//!
//! Three formats are recognised:
//! - **ELF64 RISC-V** (`ET_EXEC`): every `PT_LOAD` segment at its physical address
//!   (`p_paddr`), entry `e_entry` translated from virtual to physical through the
//!   segment containing it.
//! - **Linux RISC-V `Image`**: 64-byte header with magic `"RISCV\0\0\0"` at 48 and
//!   `"RSC\x05"` at 56; loaded at RAM base + `text_offset` (offset 8), covering
//!   `image_size` (offset 16) bytes; entry at the load address.
//! - anything else is a **flat binary** loaded and entered at RAM base + 2 MiB.
//!
//! Layout of a VM's RAM: the DTB slot at RAM end − 2 MiB, the initrd just below it
//! (4 KiB aligned), the kernel wherever its format puts it.

use std::fmt;

use fv_bootpkg::{DTB_SLOT_SIZE, GUEST_RAM_BASE};

use crate::MIB;

const PAGE: u64 = 4096;
/// Where a flat binary is loaded, relative to RAM base.
pub const RAW_LOAD_OFFSET: u64 = 2 * MIB;
/// The DTB slot sits this far below the end of RAM.
pub const DTB_FROM_END: u64 = 2 * MIB;

const EM_RISCV: u16 = 243;
const ET_EXEC: u16 = 2;
const PT_LOAD: u32 = 1;
const PHDR_SIZE: usize = 56;

/// Which format a kernel file was recognised as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelFormat {
    /// ELF64 RISC-V executable.
    Elf,
    /// Linux RISC-V `Image`.
    LinuxImage,
    /// Flat binary.
    Raw,
}

impl fmt::Display for KernelFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KernelFormat::Elf => "ELF64 RISC-V",
            KernelFormat::LinuxImage => "Linux RISC-V Image",
            KernelFormat::Raw => "flat binary",
        })
    }
}

/// A piece of guest memory: `data` at `gpa`, zeros up to `mem_size`.
#[derive(Clone, PartialEq, Eq)]
pub struct LoadSegment {
    /// Guest physical address.
    pub gpa: u64,
    /// Bytes to copy.
    pub data: Vec<u8>,
    /// Bytes covered (≥ `data.len()`).
    pub mem_size: u64,
}

impl fmt::Debug for LoadSegment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "LoadSegment {{ gpa: {:#x}, data: {} bytes, mem_size: {:#x} }}",
            self.gpa,
            self.data.len(),
            self.mem_size
        )
    }
}

impl LoadSegment {
    fn end(&self) -> u64 {
        self.gpa.saturating_add(self.mem_size)
    }
}

/// A loaded kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelImage {
    /// The format it was recognised as.
    pub format: KernelFormat,
    /// First `pc` (guest physical).
    pub entry: u64,
    /// The pieces, sorted by GPA, non-overlapping, no two sharing a 4 KiB page.
    pub segments: Vec<LoadSegment>,
}

/// Where everything of one VM goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmLayout {
    /// The kernel.
    pub kernel: KernelImage,
    /// Start of the DTB slot.
    pub dtb_gpa: u64,
    /// Where the initrd goes, if there is one.
    pub initrd_gpa: Option<u64>,
}

/// What went wrong loading or placing a kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoadError {
    /// The file is empty.
    Empty,
    /// An ELF file that is not a 64-bit little-endian RISC-V executable.
    UnsupportedElf(String),
    /// An ELF or Image header field points outside the file or overflows.
    Malformed(String),
    /// The file has nothing to load.
    NothingToLoad,
    /// Two segments overlap.
    Overlap {
        /// First segment's GPA.
        first: u64,
        /// Second segment's GPA.
        second: u64,
    },
    /// The entry point is not inside any loaded segment.
    EntryOutside(u64),
    /// A segment lies outside the VM's RAM.
    OutsideRam {
        /// Segment start.
        start: u64,
        /// Segment end.
        end: u64,
        /// RAM end.
        ram_end: u64,
    },
    /// The VM's memory is too small for what has to go in it.
    NoRoom(String),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Empty => f.write_str("the kernel file is empty"),
            LoadError::UnsupportedElf(why) => write!(f, "unsupported ELF file: {why}"),
            LoadError::Malformed(why) => write!(f, "malformed kernel file: {why}"),
            LoadError::NothingToLoad => f.write_str("the ELF file has no loadable segment"),
            LoadError::Overlap { first, second } => {
                write!(f, "kernel segments at {first:#x} and {second:#x} overlap")
            }
            LoadError::EntryOutside(e) => {
                write!(f, "entry point {e:#x} is not inside a loaded segment")
            }
            LoadError::OutsideRam {
                start,
                end,
                ram_end,
            } => write!(
                f,
                "kernel segment {start:#x}..{end:#x} lies outside the VM's RAM {:#x}..{ram_end:#x}",
                GUEST_RAM_BASE.raw()
            ),
            LoadError::NoRoom(why) => write!(f, "does not fit: {why}"),
        }
    }
}

impl std::error::Error for LoadError {}

fn malformed(why: &str) -> LoadError {
    LoadError::Malformed(why.into())
}

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(off..off + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(off..off + 8)?.try_into().ok()?))
}

/// Recognises the format of `bytes`.
pub fn detect(bytes: &[u8]) -> KernelFormat {
    if bytes.starts_with(b"\x7fELF") {
        KernelFormat::Elf
    } else if bytes.get(48..56) == Some(b"RISCV\0\0\0") && bytes.get(56..60) == Some(b"RSC\x05") {
        KernelFormat::LinuxImage
    } else {
        KernelFormat::Raw
    }
}

/// Loads a kernel file's contents.
pub fn load_kernel(bytes: &[u8]) -> Result<KernelImage, LoadError> {
    if bytes.is_empty() {
        return Err(LoadError::Empty);
    }
    let ram = GUEST_RAM_BASE.raw();
    match detect(bytes) {
        KernelFormat::Elf => load_elf(bytes),
        KernelFormat::LinuxImage => {
            let text_offset = u64_at(bytes, 8).ok_or_else(|| malformed("short Image header"))?;
            let image_size = u64_at(bytes, 16).ok_or_else(|| malformed("short Image header"))?;
            let gpa = ram
                .checked_add(text_offset)
                .ok_or_else(|| malformed("Image text_offset overflows"))?;
            let mem_size = image_size.max(bytes.len() as u64);
            Ok(KernelImage {
                format: KernelFormat::LinuxImage,
                entry: gpa,
                segments: vec![LoadSegment {
                    gpa,
                    data: bytes.to_vec(),
                    mem_size,
                }],
            })
        }
        KernelFormat::Raw => {
            let gpa = ram + RAW_LOAD_OFFSET;
            Ok(KernelImage {
                format: KernelFormat::Raw,
                entry: gpa,
                segments: vec![LoadSegment {
                    gpa,
                    data: bytes.to_vec(),
                    mem_size: bytes.len() as u64,
                }],
            })
        }
    }
}

fn load_elf(b: &[u8]) -> Result<KernelImage, LoadError> {
    let short = || malformed("ELF header is truncated");
    match b.get(4) {
        Some(2) => {}
        Some(1) => return Err(LoadError::UnsupportedElf("32-bit ELF; need ELF64".into())),
        _ => return Err(LoadError::UnsupportedElf("bad ELF class".into())),
    }
    if b.get(5) != Some(&1) {
        return Err(LoadError::UnsupportedElf(
            "big-endian ELF; need little-endian".into(),
        ));
    }
    let e_type = u16_at(b, 16).ok_or_else(short)?;
    let machine = u16_at(b, 18).ok_or_else(short)?;
    if machine != EM_RISCV {
        return Err(LoadError::UnsupportedElf(format!(
            "ELF machine {machine}, not RISC-V ({EM_RISCV})"
        )));
    }
    if e_type != ET_EXEC {
        return Err(LoadError::UnsupportedElf(format!(
            "ELF type {e_type}; need an executable (ET_EXEC), not a relocatable or shared object"
        )));
    }
    let entry_v = u64_at(b, 24).ok_or_else(short)?;
    let phoff = usize::try_from(u64_at(b, 32).ok_or_else(short)?)
        .map_err(|_| malformed("e_phoff too large"))?;
    let phentsize = usize::from(u16_at(b, 54).ok_or_else(short)?);
    let phnum = usize::from(u16_at(b, 56).ok_or_else(short)?);
    if phentsize < PHDR_SIZE {
        return Err(malformed(
            "e_phentsize smaller than an ELF64 program header",
        ));
    }

    let mut segments = Vec::new();
    let mut entry = None;
    for i in 0..phnum {
        let at = i
            .checked_mul(phentsize)
            .and_then(|o| o.checked_add(phoff))
            .ok_or_else(|| malformed("program header table overflows"))?;
        let ph = b
            .get(at..at.saturating_add(PHDR_SIZE))
            .ok_or_else(|| malformed("program header outside the file"))?;
        let field = |o| u64_at(ph, o).ok_or_else(short);
        if u32_at(ph, 0) != Some(PT_LOAD) {
            continue;
        }
        let (offset, vaddr, paddr, filesz, memsz) =
            (field(8)?, field(16)?, field(24)?, field(32)?, field(40)?);
        if memsz == 0 {
            continue;
        }
        if filesz > memsz {
            return Err(malformed("PT_LOAD with p_filesz > p_memsz"));
        }
        paddr
            .checked_add(memsz)
            .ok_or_else(|| malformed("PT_LOAD wraps around the address space"))?;
        let start = usize::try_from(offset).map_err(|_| malformed("p_offset too large"))?;
        let len = usize::try_from(filesz).map_err(|_| malformed("p_filesz too large"))?;
        let data = b
            .get(
                start
                    ..start
                        .checked_add(len)
                        .ok_or_else(|| malformed("p_offset + p_filesz overflows"))?,
            )
            .ok_or_else(|| malformed("PT_LOAD data lies outside the file"))?;
        if entry.is_none() && entry_v >= vaddr && entry_v - vaddr < filesz {
            entry = Some(paddr + (entry_v - vaddr));
        }
        segments.push(LoadSegment {
            gpa: paddr,
            data: data.to_vec(),
            mem_size: memsz,
        });
    }
    if segments.is_empty() {
        return Err(LoadError::NothingToLoad);
    }
    let entry = entry.ok_or(LoadError::EntryOutside(entry_v))?;
    Ok(KernelImage {
        format: KernelFormat::Elf,
        entry,
        segments: merge_shared_pages(segments)?,
    })
}

/// Sorts segments and merges neighbours that share a 4 KiB page (the boot package
/// wants every piece on pages of its own). Overlapping segments are an error.
fn merge_shared_pages(mut segs: Vec<LoadSegment>) -> Result<Vec<LoadSegment>, LoadError> {
    segs.sort_by_key(|s| s.gpa);
    let mut out: Vec<LoadSegment> = Vec::with_capacity(segs.len());
    for s in segs {
        if let Some(prev) = out.last_mut() {
            if prev.end() > s.gpa {
                return Err(LoadError::Overlap {
                    first: prev.gpa,
                    second: s.gpa,
                });
            }
            let prev_last_page = (prev.end() - 1) & !(PAGE - 1);
            if s.gpa & !(PAGE - 1) <= prev_last_page {
                // Fill prev's bss and the gap with explicit zeros, then append.
                let gap = usize::try_from(s.gpa - prev.gpa)
                    .map_err(|_| malformed("segment gap too large"))?;
                prev.data.resize(gap, 0);
                prev.data.extend_from_slice(&s.data);
                prev.mem_size = s.end() - prev.gpa;
                continue;
            }
        }
        out.push(s);
    }
    Ok(out)
}

fn page_up(x: u64) -> Option<u64> {
    Some(x.checked_add(PAGE - 1)? & !(PAGE - 1))
}

/// Places the DTB slot (RAM end − 2 MiB) and the initrd (just below it, 4 KiB
/// aligned) in a VM of `memory_bytes` RAM, checking the kernel lies in RAM and
/// nothing overlaps.
pub fn plan(
    kernel: KernelImage,
    initrd_len: Option<u64>,
    memory_bytes: u64,
) -> Result<VmLayout, LoadError> {
    let base = GUEST_RAM_BASE.raw();
    let ram_end = base
        .checked_add(memory_bytes)
        .ok_or_else(|| LoadError::NoRoom("memory size overflows".into()))?;
    let mut kernel_end = base;
    for s in &kernel.segments {
        let end = s.end();
        if s.gpa < base || end > ram_end || end < s.gpa {
            return Err(LoadError::OutsideRam {
                start: s.gpa,
                end,
                ram_end,
            });
        }
        kernel_end = kernel_end.max(page_up(end).unwrap_or(u64::MAX));
    }
    let dtb_gpa = ram_end
        .checked_sub(DTB_FROM_END)
        .filter(|&d| d >= base)
        .ok_or_else(|| {
            LoadError::NoRoom(format!(
                "{} MiB of RAM has no room for the DTB slot 2 MiB below its end",
                memory_bytes / MIB
            ))
        })?;
    if dtb_gpa < kernel_end {
        return Err(LoadError::NoRoom(format!(
            "the kernel ends at {kernel_end:#x}, past the DTB slot at {dtb_gpa:#x} (RAM end - 2 MiB); give the VM more memory"
        )));
    }
    debug_assert!(dtb_gpa + DTB_SLOT_SIZE <= ram_end);
    let initrd_gpa = match initrd_len {
        None => None,
        Some(len) => {
            let start = dtb_gpa
                .checked_sub(len)
                .map(|s| s & !(PAGE - 1))
                .filter(|&s| s >= kernel_end)
                .ok_or_else(|| {
                    LoadError::NoRoom(format!(
                        "the initrd ({len} bytes) does not fit between the kernel end {kernel_end:#x} and the DTB slot at {dtb_gpa:#x}; give the VM more memory"
                    ))
                })?;
            Some(start)
        }
    };
    Ok(VmLayout {
        kernel,
        dtb_gpa,
        initrd_gpa,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    const RAM: u64 = 0x8000_0000;

    /// A minimal ELF64 writer: (vaddr, paddr, data, memsz) per PT_LOAD.
    fn elf(machine: u16, class: u8, entry: u64, loads: &[(u64, u64, &[u8], u64)]) -> Vec<u8> {
        let phoff = 64usize;
        let data_start = phoff + loads.len() * PHDR_SIZE;
        let mut f = vec![0u8; data_start];
        f[0..4].copy_from_slice(b"\x7fELF");
        f[4] = class;
        f[5] = 1;
        f[6] = 1;
        f[16..18].copy_from_slice(&ET_EXEC.to_le_bytes());
        f[18..20].copy_from_slice(&machine.to_le_bytes());
        f[20..24].copy_from_slice(&1u32.to_le_bytes());
        f[24..32].copy_from_slice(&entry.to_le_bytes());
        f[32..40].copy_from_slice(&(phoff as u64).to_le_bytes());
        f[52..54].copy_from_slice(&64u16.to_le_bytes());
        f[54..56].copy_from_slice(&(PHDR_SIZE as u16).to_le_bytes());
        f[56..58].copy_from_slice(&(loads.len() as u16).to_le_bytes());
        for (i, (vaddr, paddr, data, memsz)) in loads.iter().enumerate() {
            let offset = f.len() as u64;
            f.extend_from_slice(data);
            let ph = phoff + i * PHDR_SIZE;
            f[ph..ph + 4].copy_from_slice(&PT_LOAD.to_le_bytes());
            f[ph + 8..ph + 16].copy_from_slice(&offset.to_le_bytes());
            f[ph + 16..ph + 24].copy_from_slice(&vaddr.to_le_bytes());
            f[ph + 24..ph + 32].copy_from_slice(&paddr.to_le_bytes());
            f[ph + 32..ph + 40].copy_from_slice(&(data.len() as u64).to_le_bytes());
            f[ph + 40..ph + 48].copy_from_slice(&memsz.to_le_bytes());
        }
        f
    }

    #[test]
    fn elf_segments_at_paddr() {
        let text = [0x13u8; 0x1800];
        let data = [0xaau8; 0x10];
        let f = elf(
            EM_RISCV,
            2,
            0x8020_0004,
            &[
                (0x8020_0000, 0x8020_0000, &text, 0x1800),
                (0x8020_4000, 0x8020_4000, &data, 0x2000),
            ],
        );
        let k = load_kernel(&f).unwrap();
        assert_eq!(k.format, KernelFormat::Elf);
        assert_eq!(k.entry, 0x8020_0004);
        assert_eq!(k.segments.len(), 2);
        assert_eq!(k.segments[0].gpa, 0x8020_0000);
        assert_eq!(k.segments[0].data, text);
        assert_eq!(k.segments[1].gpa, 0x8020_4000);
        assert_eq!(k.segments[1].data, data);
        assert_eq!(k.segments[1].mem_size, 0x2000);
    }

    #[test]
    fn elf_entry_translated_from_virtual() {
        let text = [1u8; 64];
        let f = elf(
            EM_RISCV,
            2,
            0xffff_ffff_8000_0010,
            &[(0xffff_ffff_8000_0000, 0x8020_0000, &text, 64)],
        );
        assert_eq!(load_kernel(&f).unwrap().entry, 0x8020_0010);
    }

    #[test]
    fn elf_segments_sharing_a_page_are_merged() {
        let text = [0x13u8; 0x100];
        let data = [0xaau8; 0x10];
        let f = elf(
            EM_RISCV,
            2,
            0x8020_0000,
            &[
                // Out of order on purpose; text has 0x40 bytes of bss.
                (0x8020_0200, 0x8020_0200, &data, 0x800),
                (0x8020_0000, 0x8020_0000, &text, 0x140),
            ],
        );
        let k = load_kernel(&f).unwrap();
        assert_eq!(k.segments.len(), 1);
        let s = &k.segments[0];
        assert_eq!(s.gpa, 0x8020_0000);
        assert_eq!(s.mem_size, 0xa00);
        assert_eq!(s.data.len(), 0x210);
        assert_eq!(&s.data[..0x100], &text[..]);
        assert!(s.data[0x100..0x200].iter().all(|&b| b == 0));
        assert_eq!(&s.data[0x200..], &data[..]);
    }

    #[test]
    fn elf_rejections() {
        let t = [0u8; 16];
        let wrong_machine = elf(62, 2, 0x8020_0000, &[(0x8020_0000, 0x8020_0000, &t, 16)]);
        assert!(
            matches!(load_kernel(&wrong_machine), Err(LoadError::UnsupportedElf(m)) if m.contains("62"))
        );
        let class32 = elf(
            EM_RISCV,
            1,
            0x8020_0000,
            &[(0x8020_0000, 0x8020_0000, &t, 16)],
        );
        assert!(
            matches!(load_kernel(&class32), Err(LoadError::UnsupportedElf(m)) if m.contains("32-bit"))
        );
        let overlapping = elf(
            EM_RISCV,
            2,
            0x8020_0000,
            &[
                (0x8020_0000, 0x8020_0000, &t, 0x2000),
                (0x8020_1000, 0x8020_1000, &t, 16),
            ],
        );
        assert_eq!(
            load_kernel(&overlapping),
            Err(LoadError::Overlap {
                first: 0x8020_0000,
                second: 0x8020_1000
            })
        );
        let bad_entry = elf(
            EM_RISCV,
            2,
            0x9000_0000,
            &[(0x8020_0000, 0x8020_0000, &t, 16)],
        );
        assert_eq!(
            load_kernel(&bad_entry),
            Err(LoadError::EntryOutside(0x9000_0000))
        );
        let none = elf(EM_RISCV, 2, 0x8020_0000, &[]);
        assert_eq!(load_kernel(&none), Err(LoadError::NothingToLoad));
        // Data pointing past the end of the file.
        let mut trunc = elf(
            EM_RISCV,
            2,
            0x8020_0000,
            &[(0x8020_0000, 0x8020_0000, &t, 16)],
        );
        trunc.truncate(trunc.len() - 1);
        assert!(matches!(load_kernel(&trunc), Err(LoadError::Malformed(_))));
        // Every truncation of a valid ELF is an error, never a panic or a raw load.
        let good = elf(
            EM_RISCV,
            2,
            0x8020_0000,
            &[(0x8020_0000, 0x8020_0000, &t, 16)],
        );
        for len in 4..good.len() {
            assert!(load_kernel(&good[..len]).is_err(), "len {len}");
        }
    }

    fn linux_image(text_offset: u64, image_size: u64, len: usize) -> Vec<u8> {
        let mut f = vec![0u8; len];
        f[8..16].copy_from_slice(&text_offset.to_le_bytes());
        f[16..24].copy_from_slice(&image_size.to_le_bytes());
        f[48..56].copy_from_slice(b"RISCV\0\0\0");
        f[56..60].copy_from_slice(b"RSC\x05");
        f
    }

    #[test]
    fn linux_image_header() {
        let f = linux_image(0x20_0000, 0x10_0000, 4096);
        assert_eq!(detect(&f), KernelFormat::LinuxImage);
        let k = load_kernel(&f).unwrap();
        assert_eq!(k.entry, RAM + 0x20_0000);
        assert_eq!(k.segments.len(), 1);
        assert_eq!(k.segments[0].gpa, RAM + 0x20_0000);
        assert_eq!(k.segments[0].data.len(), 4096);
        assert_eq!(k.segments[0].mem_size, 0x10_0000);
        // Only one magic: not an Image.
        let mut half = f.clone();
        half[56] = 0;
        assert_eq!(detect(&half), KernelFormat::Raw);
    }

    #[test]
    fn raw_binary_at_ram_plus_2m() {
        let k = load_kernel(&[0x6f, 0, 0, 0]).unwrap();
        assert_eq!(k.format, KernelFormat::Raw);
        assert_eq!(k.entry, RAM + 0x20_0000);
        assert_eq!(k.segments[0].gpa, RAM + 0x20_0000);
        assert_eq!(k.segments[0].mem_size, 4);
        assert_eq!(load_kernel(&[]), Err(LoadError::Empty));
    }

    #[test]
    fn layout_places_dtb_and_initrd_at_the_top() {
        let k = load_kernel(&[0x6f, 0, 0, 0]).unwrap();
        let l = plan(k, Some(10_000), 64 * MIB).unwrap();
        assert_eq!(l.dtb_gpa, RAM + 62 * MIB);
        let initrd = l.initrd_gpa.unwrap();
        assert_eq!(initrd % PAGE, 0);
        assert!(initrd + 10_000 <= l.dtb_gpa);
        assert!(l.dtb_gpa - initrd < 10_000 + PAGE);
        let no_initrd = plan(load_kernel(&[1, 2]).unwrap(), None, 64 * MIB).unwrap();
        assert_eq!(no_initrd.initrd_gpa, None);
    }

    #[test]
    fn layout_errors() {
        // Kernel segment beyond RAM.
        let f = linux_image(0x20_0000, 0x100_0000, 4096);
        let e = plan(load_kernel(&f).unwrap(), None, 16 * MIB).unwrap_err();
        assert!(matches!(e, LoadError::OutsideRam { .. }), "{e}");
        // Kernel reaching into the DTB slot.
        let f = linux_image(0x20_0000, 0xd0_0000, 4096);
        let e = plan(load_kernel(&f).unwrap(), None, 16 * MIB).unwrap_err();
        assert!(
            matches!(&e, LoadError::NoRoom(m) if m.contains("DTB")),
            "{e}"
        );
        // Initrd that does not fit between kernel and DTB.
        let k = load_kernel(&[0x6f, 0, 0, 0]).unwrap();
        let e = plan(k, Some(60 * MIB), 64 * MIB).unwrap_err();
        assert!(
            matches!(&e, LoadError::NoRoom(m) if m.contains("initrd")),
            "{e}"
        );
        // A flat binary in 2 MiB of RAM: the DTB slot lands on it.
        let k = load_kernel(&[0x6f, 0, 0, 0]).unwrap();
        assert!(plan(k, None, 2 * MIB).is_err());
    }
}
