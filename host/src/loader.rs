//! Turning a kernel file into segments and an entry point, and placing the initrd
//! and the DTB slot in the VM's RAM.
//!
//! Two formats are recognised by their headers:
//! - **ELF64 RISC-V** (`ET_EXEC`): every `PT_LOAD` segment at its physical address
//!   (`p_paddr`), entry `e_entry` translated from virtual to physical through the
//!   segment containing it. An ELF file of another machine is refused with its
//!   architecture named.
//! - **Linux RISC-V `Image`**: 64-byte header with magic `"RISCV\0\0\0"` at 48 and
//!   `"RSC\x05"` at 56; loaded at RAM base + `text_offset` (offset 8), covering
//!   `image_size` (offset 16) bytes; entry at the load address.
//!
//! Anything else is refused ([`LoadError::UnknownFormat`], which says what the
//! file looks like) unless the config forces a **flat binary** with
//! `kernel_format: flat` ([`FormatChoice::Flat`]): loaded and entered at RAM
//! base + 2 MiB. A flat binary has no header to recognise it by, so guessing one
//! would load a text file or a compressed kernel and leave the VM faulting.
//!
//! Layout of a VM's RAM: the DTB slot at RAM end − 2 MiB, the initrd just below it
//! (4 KiB aligned), the kernel wherever its format puts it.

use std::fmt;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

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
/// Bytes at the start of a kernel file that [`identify`] needs (the ELF64 header,
/// the Linux Image header).
pub const HEADER_LEN: usize = 64;

/// The config field that forces a kernel format.
pub const FORMAT_FIELD: &str = "kernel_format";

/// How a VM's kernel file is to be read: the config's `kernel_format`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FormatChoice {
    /// `auto` (the default): ELF64 RISC-V or Linux RISC-V Image, recognised by
    /// their headers; anything else is refused.
    #[default]
    Auto,
    /// `elf`: must be an ELF64 RISC-V executable.
    Elf,
    /// `image`: must be a Linux RISC-V Image.
    LinuxImage,
    /// `flat`: a flat binary, whatever its bytes, loaded and entered at RAM base
    /// + 2 MiB.
    Flat,
}

impl FormatChoice {
    /// Every value, with its config spelling.
    pub const ALL: [(FormatChoice, &'static str); 4] = [
        (FormatChoice::Auto, "auto"),
        (FormatChoice::Elf, "elf"),
        (FormatChoice::LinuxImage, "image"),
        (FormatChoice::Flat, "flat"),
    ];

    /// The config spelling (`auto`, `elf`, `image`, `flat`).
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(c, _)| *c == self)
            .map_or("auto", |(_, n)| n)
    }

    /// Reads a config value; the error lists the accepted values.
    pub fn parse(text: &str) -> Result<FormatChoice, String> {
        Self::ALL
            .iter()
            .find(|(_, n)| *n == text.trim())
            .map(|(c, _)| *c)
            .ok_or_else(|| {
                format!(
                    "unknown kernel format `{text}`; use `auto` (the default: an ELF64 RISC-V executable or a Linux RISC-V Image, recognised by their headers), `elf`, `image` or `flat` (a flat binary, loaded and entered at RAM base + 2 MiB)"
                )
            })
    }
}

impl fmt::Display for FormatChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

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
    /// Neither ELF nor a Linux Image, and no flat binary was asked for; says what
    /// the file looks like instead.
    UnknownFormat(String),
    /// `kernel_format` names one format, the file is another (or none).
    NotTheFormat {
        /// The format the config asks for.
        wanted: FormatChoice,
        /// What the file looks like.
        found: String,
    },
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
            LoadError::UnknownFormat(found) => write!(
                f,
                "not a kernel format Ferrovisor recognises: the file looks like {found}. Accepted: an ELF64 RISC-V (riscv64) executable, or a Linux RISC-V Image (header magic `RISCV\\0\\0\\0` at byte 48); a flat binary (no header) is loaded only when forced with `{FORMAT_FIELD}: flat` in the VM's config"
            ),
            LoadError::NotTheFormat { wanted, found } => write!(
                f,
                "`{FORMAT_FIELD}: {wanted}` but the file is not {}: it looks like {found}",
                match wanted {
                    FormatChoice::Elf => "an ELF64 RISC-V executable",
                    FormatChoice::LinuxImage => "a Linux RISC-V Image",
                    FormatChoice::Auto | FormatChoice::Flat => "of that format",
                }
            ),
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

/// Recognises the format of `bytes` by its header: ELF or Linux Image; `None`
/// for anything else (a flat binary has no header to recognise).
pub fn detect(bytes: &[u8]) -> Option<KernelFormat> {
    if bytes.starts_with(b"\x7fELF") {
        Some(KernelFormat::Elf)
    } else if bytes.get(48..56) == Some(b"RISCV\0\0\0") && bytes.get(56..60) == Some(b"RSC\x05") {
        Some(KernelFormat::LinuxImage)
    } else {
        None
    }
}

/// The format a kernel file whose first bytes are `header` (at least
/// [`HEADER_LEN`] of them, or the whole file if shorter) will be loaded as under
/// `choice`, or why it cannot be: empty, an unknown format, an ELF file of another
/// machine, class or type, or not the format `choice` names.
pub fn identify(header: &[u8], choice: FormatChoice) -> Result<KernelFormat, LoadError> {
    if header.is_empty() {
        return Err(LoadError::Empty);
    }
    let found = detect(header);
    match (choice, found) {
        (FormatChoice::Flat, _) => Ok(KernelFormat::Raw),
        (FormatChoice::Auto | FormatChoice::Elf, Some(KernelFormat::Elf)) => {
            check_elf_header(header)?;
            Ok(KernelFormat::Elf)
        }
        (FormatChoice::Auto | FormatChoice::LinuxImage, Some(KernelFormat::LinuxImage)) => {
            Ok(KernelFormat::LinuxImage)
        }
        (FormatChoice::Auto, _) => Err(LoadError::UnknownFormat(describe(header))),
        (wanted, _) => Err(LoadError::NotTheFormat {
            wanted,
            found: describe(header),
        }),
    }
}

/// What a file that is no kernel Ferrovisor knows looks like, for messages: text,
/// a compressed or archive format by its magic, else its first bytes.
pub fn describe(bytes: &[u8]) -> String {
    const MAGICS: &[(&[u8], &str)] = &[
        (b"\x7fELF", "an ELF file"),
        (b"\x1f\x8b", "gzip-compressed data (a compressed kernel such as Image.gz? give the uncompressed Image)"),
        (b"\xfd7zXZ\0", "xz-compressed data (give the uncompressed kernel)"),
        (b"\x28\xb5\x2f\xfd", "zstd-compressed data (give the uncompressed kernel)"),
        (b"BZh", "bzip2-compressed data (give the uncompressed kernel)"),
        (b"\x02\x21\x4c\x18", "lz4-compressed data (give the uncompressed kernel)"),
        (b"070701", "a cpio archive (an initramfs? that goes in `initrd`)"),
        (b"070702", "a cpio archive (an initramfs? that goes in `initrd`)"),
        (b"\xd0\x0d\xfe\xed", "a device tree blob (the hypervisor makes each VM's device tree)"),
        (b"MZ", "a PE/COFF (EFI) executable without the Linux RISC-V Image header"),
    ];
    if let Some((_, what)) = MAGICS.iter().find(|(m, _)| bytes.starts_with(m)) {
        return (*what).to_string();
    }
    let text = std::str::from_utf8(bytes)
        .or_else(|e| std::str::from_utf8(&bytes[..e.valid_up_to()]))
        .ok()
        .filter(|t| {
            // All of it printable text, bar a multi-byte character cut at the end.
            !t.is_empty()
                && bytes.len() - t.len() < 4
                && t.chars()
                    .all(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t'))
        });
    if let Some(t) = text {
        let first_line = t.lines().next().unwrap_or("").trim();
        let shown: String = first_line.chars().take(40).collect();
        let more = if shown.len() < first_line.len() {
            "…"
        } else {
            ""
        };
        return format!("text (it starts `{shown}{more}`)");
    }
    let hex: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!(
        "unrecognised binary data (first bytes {}{})",
        hex.join(" "),
        if bytes.len() > 8 { " …" } else { "" }
    )
}

/// The name of ELF machine `e_machine`, for messages.
fn elf_machine_name(machine: u16) -> String {
    let name = match machine {
        0 => "no machine",
        2 => "SPARC",
        3 => "x86 (i386)",
        8 => "MIPS",
        20 => "PowerPC",
        21 => "PowerPC64",
        22 => "s390",
        40 => "Arm (32-bit)",
        43 => "SPARC V9",
        50 => "IA-64",
        62 => "x86-64",
        183 => "AArch64 (arm64)",
        243 => "RISC-V",
        247 => "eBPF",
        258 => "LoongArch",
        _ => return format!("an unknown machine (e_machine {machine})"),
    };
    format!("{name} (e_machine {machine})")
}

/// Checks the ELF header in `b` is a 64-bit little-endian RISC-V executable; the
/// error names what it is instead (its architecture, class, byte order, type).
fn check_elf_header(b: &[u8]) -> Result<(), LoadError> {
    let short = || malformed("ELF header is truncated");
    let class = b.get(4).copied();
    let data = b.get(5).copied();
    let big_endian = data == Some(2);
    let machine = b
        .get(18..20)
        .and_then(|m| m.try_into().ok())
        .map(|m: [u8; 2]| {
            if big_endian {
                u16::from_be_bytes(m)
            } else {
                u16::from_le_bytes(m)
            }
        })
        .ok_or_else(short)?;
    let bits = match class {
        Some(1) => "32-bit",
        Some(2) => "64-bit",
        _ => return Err(LoadError::UnsupportedElf("bad ELF class".into())),
    };
    // An invalid byte order is named by what else is wrong, if anything.
    let order = match data {
        Some(1) => " little-endian",
        Some(2) => " big-endian",
        _ => "",
    };
    if machine != EM_RISCV || class != Some(2) || data != Some(1) {
        let arch = if machine == EM_RISCV && class == Some(1) {
            "RISC-V (riscv32, e_machine 243)".to_string()
        } else {
            elf_machine_name(machine)
        };
        return Err(LoadError::UnsupportedElf(format!(
            "a {bits}{order} ELF file for {arch}; a kernel must be a 64-bit little-endian RISC-V (riscv64, e_machine {EM_RISCV}) executable"
        )));
    }
    let e_type = u16_at(b, 16).ok_or_else(short)?;
    if e_type != ET_EXEC {
        return Err(LoadError::UnsupportedElf(format!(
            "ELF type {e_type}; need an executable (ET_EXEC), not a relocatable or shared object"
        )));
    }
    Ok(())
}

/// How many bytes of `path` (a kernel of `format`) the boot package will hold at
/// least: the `PT_LOAD` file bytes of an ELF file (read from its program
/// headers), the whole file otherwise. Used to check, before anything is built,
/// that the machine has room for the package.
pub fn image_bytes(path: &Path, format: KernelFormat) -> io::Result<u64> {
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    if format != KernelFormat::Elf {
        return Ok(len);
    }
    let mut h = [0u8; HEADER_LEN];
    f.read_exact(&mut h)?;
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "bad ELF header");
    let phoff = u64_at(&h, 32).ok_or_else(bad)?;
    let phentsize = u64::from(u16_at(&h, 54).ok_or_else(bad)?);
    let phnum = u64::from(u16_at(&h, 56).ok_or_else(bad)?);
    if phentsize < PHDR_SIZE as u64 {
        return Err(bad());
    }
    let mut total = 0u64;
    let mut ph = [0u8; PHDR_SIZE];
    for i in 0..phnum {
        f.seek(SeekFrom::Start(phoff.saturating_add(i * phentsize)))?;
        f.read_exact(&mut ph)?;
        let memsz = u64_at(&ph, 40).unwrap_or(0);
        if u32_at(&ph, 0) == Some(PT_LOAD) && memsz != 0 {
            total = total.saturating_add(u64_at(&ph, 32).unwrap_or(0).min(memsz));
        }
    }
    Ok(total)
}

/// Loads a kernel file's contents, recognising ELF and Linux Images and refusing
/// anything else (see [`load_kernel_as`]).
pub fn load_kernel(bytes: &[u8]) -> Result<KernelImage, LoadError> {
    load_kernel_as(bytes, FormatChoice::Auto)
}

/// Loads a kernel file's contents as `choice` says (see [`identify`]).
pub fn load_kernel_as(bytes: &[u8], choice: FormatChoice) -> Result<KernelImage, LoadError> {
    let ram = GUEST_RAM_BASE.raw();
    let header = bytes.get(..HEADER_LEN).unwrap_or(bytes);
    match identify(header, choice)? {
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
    check_elf_header(b)?;
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
        assert_eq!(detect(&f), Some(KernelFormat::LinuxImage));
        let k = load_kernel(&f).unwrap();
        assert_eq!(k.entry, RAM + 0x20_0000);
        assert_eq!(k.segments.len(), 1);
        assert_eq!(k.segments[0].gpa, RAM + 0x20_0000);
        assert_eq!(k.segments[0].data.len(), 4096);
        assert_eq!(k.segments[0].mem_size, 0x10_0000);
        // Only one magic: not an Image.
        let mut half = f.clone();
        half[56] = 0;
        assert_eq!(detect(&half), None);
        assert!(matches!(
            load_kernel(&half),
            Err(LoadError::UnknownFormat(_))
        ));
    }

    /// A flat binary, as `kernel_format: flat` forces it.
    fn flat(bytes: &[u8]) -> KernelImage {
        load_kernel_as(bytes, FormatChoice::Flat).unwrap()
    }

    #[test]
    fn raw_binary_at_ram_plus_2m() {
        let k = flat(&[0x6f, 0, 0, 0]);
        assert_eq!(k.format, KernelFormat::Raw);
        assert_eq!(k.entry, RAM + 0x20_0000);
        assert_eq!(k.segments[0].gpa, RAM + 0x20_0000);
        assert_eq!(k.segments[0].mem_size, 4);
        assert_eq!(load_kernel(&[]), Err(LoadError::Empty));
        assert_eq!(
            load_kernel_as(&[], FormatChoice::Flat),
            Err(LoadError::Empty)
        );
    }

    #[test]
    fn layout_places_dtb_and_initrd_at_the_top() {
        let k = flat(&[0x6f, 0, 0, 0]);
        let l = plan(k, Some(10_000), 64 * MIB).unwrap();
        assert_eq!(l.dtb_gpa, RAM + 62 * MIB);
        let initrd = l.initrd_gpa.unwrap();
        assert_eq!(initrd % PAGE, 0);
        assert!(initrd + 10_000 <= l.dtb_gpa);
        assert!(l.dtb_gpa - initrd < 10_000 + PAGE);
        let no_initrd = plan(flat(&[1, 2]), None, 64 * MIB).unwrap();
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
        let k = flat(&[0x6f, 0, 0, 0]);
        let e = plan(k, Some(60 * MIB), 64 * MIB).unwrap_err();
        assert!(
            matches!(&e, LoadError::NoRoom(m) if m.contains("initrd")),
            "{e}"
        );
        // A flat binary in 2 MiB of RAM: the DTB slot lands on it.
        let k = flat(&[0x6f, 0, 0, 0]);
        assert!(plan(k, None, 2 * MIB).is_err());
    }

    /// A text file is no kernel: refused, saying it is text, which formats are
    /// accepted and how to force a flat binary; forced, it loads flat.
    #[test]
    fn text_file_is_refused_unless_forced_flat() {
        let text = b"hello, I am not a kernel\nsecond line\n";
        let e = load_kernel(text).unwrap_err();
        assert!(matches!(e, LoadError::UnknownFormat(_)), "{e}");
        let msg = e.to_string();
        for part in [
            "text (it starts `hello, I am not a kernel`)",
            "ELF64 RISC-V",
            "Linux RISC-V Image",
            "kernel_format: flat",
        ] {
            assert!(msg.contains(part), "no `{part}` in: {msg}");
        }
        let k = load_kernel_as(text, FormatChoice::Flat).unwrap();
        assert_eq!(k.format, KernelFormat::Raw);
        assert_eq!(k.entry, RAM + RAW_LOAD_OFFSET);
        assert_eq!(k.segments[0].data, text);
        // The 4-byte `j .` the harness uses is no known format either.
        assert!(matches!(
            load_kernel(&[0x6f, 0, 0, 0]),
            Err(LoadError::UnknownFormat(m)) if m.contains("6f 00 00 00")
        ));
    }

    /// `kernel_format: elf` / `image` insist on that format.
    #[test]
    fn forced_formats_must_match() {
        let t = [0u8; 16];
        let good_elf = elf(
            EM_RISCV,
            2,
            0x8020_0000,
            &[(0x8020_0000, 0x8020_0000, &t, 16)],
        );
        let image = linux_image(0x20_0000, 0x10_0000, 4096);
        assert_eq!(
            load_kernel_as(&good_elf, FormatChoice::Elf).unwrap().format,
            KernelFormat::Elf
        );
        assert_eq!(
            load_kernel_as(&image, FormatChoice::LinuxImage)
                .unwrap()
                .format,
            KernelFormat::LinuxImage
        );
        let e = load_kernel_as(&image, FormatChoice::Elf).unwrap_err();
        assert!(matches!(e, LoadError::NotTheFormat { .. }), "{e}");
        assert!(e.to_string().contains("`kernel_format: elf`"), "{e}");
        assert!(
            e.to_string().contains("PE/COFF") || e.to_string().contains("binary"),
            "{e}"
        );
        let e = load_kernel_as(&good_elf, FormatChoice::LinuxImage).unwrap_err();
        assert!(e.to_string().contains("an ELF file"), "{e}");
        // Forced flat takes an ELF file's bytes as they are.
        assert_eq!(
            load_kernel_as(&good_elf, FormatChoice::Flat)
                .unwrap()
                .segments[0]
                .data,
            good_elf
        );
    }

    /// An ELF file of another machine is refused naming its architecture.
    #[test]
    fn wrong_architecture_elf_names_it() {
        let t = [0u8; 16];
        let load = |m: u16, class: u8| {
            load_kernel(&elf(
                m,
                class,
                0x8020_0000,
                &[(0x8020_0000, 0x8020_0000, &t, 16)],
            ))
            .unwrap_err()
            .to_string()
        };
        let e = load(62, 2);
        assert!(
            e.contains("64-bit little-endian ELF file for x86-64 (e_machine 62)"),
            "{e}"
        );
        assert!(e.contains("riscv64"), "{e}");
        assert!(load(183, 2).contains("AArch64"));
        assert!(load(EM_RISCV, 1).contains("32-bit little-endian ELF file for RISC-V (riscv32"));
        assert!(load(3, 1).contains("x86 (i386)"));
        assert!(load(4242, 2).contains("unknown machine (e_machine 4242)"));
        // Big-endian: the machine is read in the file's byte order.
        let mut be = elf(0, 2, 0x8020_0000, &[(0x8020_0000, 0x8020_0000, &t, 16)]);
        be[5] = 2;
        be[18..20].copy_from_slice(&22u16.to_be_bytes());
        let e = load_kernel(&be).unwrap_err().to_string();
        assert!(e.contains("big-endian ELF file for s390"), "{e}");
    }

    #[test]
    fn describe_names_common_mistakes() {
        assert!(describe(b"\x1f\x8b\x08\0").contains("gzip"));
        assert!(describe(b"070701000000").contains("cpio"));
        assert!(describe(b"\xd0\x0d\xfe\xed").contains("device tree"));
        assert!(describe(b"#!/bin/sh\necho hi\n").contains("text (it starts `#!/bin/sh`)"));
        let long = "x".repeat(100);
        assert!(describe(long.as_bytes()).contains(&format!("`{}…`", "x".repeat(40))));
        assert_eq!(
            describe(&[0, 1, 2, 3, 4, 5, 6, 7, 8]),
            "unrecognised binary data (first bytes 00 01 02 03 04 05 06 07 …)"
        );
    }

    #[test]
    fn format_choice_values() {
        for (c, n) in FormatChoice::ALL {
            assert_eq!(FormatChoice::parse(n), Ok(c));
            assert_eq!(c.to_string(), n);
        }
        assert_eq!(FormatChoice::default(), FormatChoice::Auto);
        let e = FormatChoice::parse("binary").unwrap_err();
        assert!(e.contains("unknown kernel format `binary`"), "{e}");
        for n in ["`auto`", "`elf`", "`image`", "`flat`"] {
            assert!(e.contains(n), "{e}");
        }
    }

    /// The package holds an ELF file's PT_LOAD bytes, not the whole file.
    #[test]
    fn image_bytes_counts_loaded_data() {
        let dir = std::env::temp_dir().join(format!("fv-loader-bytes-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let text = [0x13u8; 0x1800];
        let data = [0xaau8; 0x10];
        let mut f = elf(
            EM_RISCV,
            2,
            0x8020_0000,
            &[
                (0x8020_0000, 0x8020_0000, &text, 0x1800),
                (0x8020_4000, 0x8020_4000, &data, 0x2000),
            ],
        );
        f.extend_from_slice(&[0u8; 10_000]); // symbols, say
        let p = dir.join("k.elf");
        std::fs::write(&p, &f).unwrap();
        assert_eq!(image_bytes(&p, KernelFormat::Elf).unwrap(), 0x1810);
        assert_eq!(image_bytes(&p, KernelFormat::Raw).unwrap(), f.len() as u64);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
