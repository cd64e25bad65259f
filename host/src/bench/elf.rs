//! The hypervisor image's size, read from its ELF file: loadable segments by
//! permission (text, read-only data, initialised data), and the zero-fill part
//! split by section into `.bss` (cleared at boot) and `.noinit` (boot stacks and
//! heap, reserved but never cleared). A small reader of its own: every field is
//! read with bounds checks, nothing else of the file is interpreted.

use std::fmt;

const PT_LOAD: u32 = 1;
const PF_X: u32 = 1;
const PF_W: u32 = 2;
const SHT_NOBITS: u32 = 8;
const SHF_ALLOC: u64 = 2;
const EHDR_SIZE: usize = 64;
const PHDR_SIZE: usize = 56;
const SHDR_SIZE: usize = 64;

/// Why an ELF file could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ElfError {
    /// Not an ELF file (bad magic).
    NotElf,
    /// An ELF file that is not 64-bit little-endian.
    Unsupported(&'static str),
    /// A header field points outside the file or overflows.
    Truncated(&'static str),
}

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ElfError::NotElf => f.write_str("not an ELF file"),
            ElfError::Unsupported(what) => write!(f, "unsupported ELF: {what}"),
            ElfError::Truncated(what) => write!(f, "malformed ELF: {what} outside the file"),
        }
    }
}

impl std::error::Error for ElfError {}

/// Sizes of a loadable image, in bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageSize {
    /// File bytes of executable segments.
    pub text: u64,
    /// File bytes of read-only, non-executable segments.
    pub rodata: u64,
    /// File bytes of writable segments.
    pub data: u64,
    /// Zero-filled bytes of all segments (`p_memsz - p_filesz`, alignment padding
    /// included).
    pub zero_fill: u64,
    /// Allocated `NOBITS` sections not named `.noinit*`.
    pub bss: u64,
    /// Allocated `NOBITS` sections named `.noinit*`.
    pub noinit: u64,
    /// Memory the loaded image spans: lowest to highest segment address.
    pub span: u64,
}

impl ImageSize {
    /// Bytes the loader copies from the file: text + rodata + data.
    pub fn loadable(&self) -> u64 {
        self.text + self.rodata + self.data
    }
}

fn bytes<const N: usize>(b: &[u8], off: usize, what: &'static str) -> Result<[u8; N], ElfError> {
    off.checked_add(N)
        .and_then(|end| b.get(off..end))
        .and_then(|s| s.try_into().ok())
        .ok_or(ElfError::Truncated(what))
}

fn u16_at(b: &[u8], off: usize, what: &'static str) -> Result<u16, ElfError> {
    bytes::<2>(b, off, what).map(u16::from_le_bytes)
}

fn u32_at(b: &[u8], off: usize, what: &'static str) -> Result<u32, ElfError> {
    bytes::<4>(b, off, what).map(u32::from_le_bytes)
}

fn u64_at(b: &[u8], off: usize, what: &'static str) -> Result<u64, ElfError> {
    bytes::<8>(b, off, what).map(u64::from_le_bytes)
}

fn table_entry(
    base: u64,
    index: usize,
    size: usize,
    what: &'static str,
) -> Result<usize, ElfError> {
    usize::try_from(base)
        .ok()
        .and_then(|b| index.checked_mul(size).and_then(|o| b.checked_add(o)))
        .ok_or(ElfError::Truncated(what))
}

/// A NUL-terminated name at `off` in the string table at `table`.
fn name_at(b: &[u8], table: usize, off: u32) -> Option<&str> {
    let start = table.checked_add(usize::try_from(off).ok()?)?;
    let rest = b.get(start..)?;
    let end = rest.iter().position(|&c| c == 0)?;
    std::str::from_utf8(rest.get(..end)?).ok()
}

/// Reads the sizes of the ELF64 little-endian image in `b`.
pub fn image_size(b: &[u8]) -> Result<ImageSize, ElfError> {
    if b.get(..4) != Some(b"\x7fELF".as_slice()) {
        return Err(ElfError::NotElf);
    }
    if b.get(4) != Some(&2) {
        return Err(ElfError::Unsupported("not 64-bit"));
    }
    if b.get(5) != Some(&1) {
        return Err(ElfError::Unsupported("not little-endian"));
    }
    if b.len() < EHDR_SIZE {
        return Err(ElfError::Truncated("the ELF header"));
    }
    let phoff = u64_at(b, 0x20, "e_phoff")?;
    let shoff = u64_at(b, 0x28, "e_shoff")?;
    let phentsize = usize::from(u16_at(b, 0x36, "e_phentsize")?);
    let phnum = usize::from(u16_at(b, 0x38, "e_phnum")?);
    let shentsize = usize::from(u16_at(b, 0x3a, "e_shentsize")?);
    let shnum = usize::from(u16_at(b, 0x3c, "e_shnum")?);
    let shstrndx = usize::from(u16_at(b, 0x3e, "e_shstrndx")?);
    if phnum != 0 && phentsize < PHDR_SIZE {
        return Err(ElfError::Unsupported("program header entries too small"));
    }

    // Both tables must lie wholly inside the file.
    if phnum != 0 && table_entry(phoff, phnum, phentsize, "the program headers")? > b.len() {
        return Err(ElfError::Truncated("the program headers"));
    }
    if shnum != 0 && table_entry(shoff, shnum, shentsize, "the section headers")? > b.len() {
        return Err(ElfError::Truncated("the section headers"));
    }

    let mut size = ImageSize::default();
    let (mut low, mut high) = (u64::MAX, 0u64);
    for i in 0..phnum {
        let ph = table_entry(phoff, i, phentsize, "a program header")?;
        if u32_at(b, ph, "p_type")? != PT_LOAD {
            continue;
        }
        let flags = u32_at(b, ph + 4, "p_flags")?;
        let paddr = u64_at(b, ph + 24, "p_paddr")?;
        let filesz = u64_at(b, ph + 32, "p_filesz")?;
        let memsz = u64_at(b, ph + 40, "p_memsz")?;
        if flags & PF_X != 0 {
            size.text += filesz;
        } else if flags & PF_W != 0 {
            size.data += filesz;
        } else {
            size.rodata += filesz;
        }
        size.zero_fill += memsz.saturating_sub(filesz);
        low = low.min(paddr);
        high = high.max(paddr.saturating_add(memsz));
    }
    size.span = high.saturating_sub(low);

    if shnum != 0 && shentsize >= SHDR_SIZE {
        let strtab_hdr = table_entry(shoff, shstrndx, shentsize, "e_shstrndx")?;
        let strtab = usize::try_from(u64_at(b, strtab_hdr + 24, "the name table offset")?)
            .map_err(|_| ElfError::Truncated("the section name table"))?;
        for i in 0..shnum {
            let sh = table_entry(shoff, i, shentsize, "a section header")?;
            let kind = u32_at(b, sh + 4, "sh_type")?;
            let flags = u64_at(b, sh + 8, "sh_flags")?;
            if kind != SHT_NOBITS || flags & SHF_ALLOC == 0 {
                continue;
            }
            let len = u64_at(b, sh + 32, "sh_size")?;
            let name = name_at(b, strtab, u32_at(b, sh, "sh_name")?).unwrap_or("");
            if name.starts_with(".noinit") {
                size.noinit += len;
            } else {
                size.bss += len;
            }
        }
    } else {
        size.bss = size.zero_fill;
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    struct Seg {
        flags: u32,
        paddr: u64,
        filesz: u64,
        memsz: u64,
    }

    /// A minimal ELF64 LE file: the header, `segs` as program headers (plus one
    /// non-LOAD), and section headers for `sections` (name, type, flags, size).
    fn elf(segs: &[Seg], sections: &[(&str, u32, u64, u64)]) -> Vec<u8> {
        let phoff = 64u64;
        let phnum = segs.len() + 1;
        let strtab_off = phoff as usize + phnum * PHDR_SIZE;
        let mut strtab = vec![0u8];
        let mut name_offs = Vec::new();
        for (name, ..) in sections {
            name_offs.push(strtab.len() as u32);
            strtab.extend_from_slice(name.as_bytes());
            strtab.push(0);
        }
        let shstr_name = strtab.len() as u32;
        strtab.extend_from_slice(b".shstrtab\0");
        let shoff = (strtab_off + strtab.len()).next_multiple_of(8);
        let shnum = sections.len() + 2; // null + sections + .shstrtab

        let mut b = vec![0u8; 64];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[6] = 1;
        b[0x10..0x12].copy_from_slice(&2u16.to_le_bytes());
        b[0x12..0x14].copy_from_slice(&243u16.to_le_bytes());
        b[0x20..0x28].copy_from_slice(&phoff.to_le_bytes());
        b[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
        b[0x34..0x36].copy_from_slice(&64u16.to_le_bytes());
        b[0x36..0x38].copy_from_slice(&(PHDR_SIZE as u16).to_le_bytes());
        b[0x38..0x3a].copy_from_slice(&(phnum as u16).to_le_bytes());
        b[0x3a..0x3c].copy_from_slice(&(SHDR_SIZE as u16).to_le_bytes());
        b[0x3c..0x3e].copy_from_slice(&(shnum as u16).to_le_bytes());
        b[0x3e..0x40].copy_from_slice(&((shnum - 1) as u16).to_le_bytes());
        for s in segs {
            let mut ph = vec![0u8; PHDR_SIZE];
            ph[0..4].copy_from_slice(&PT_LOAD.to_le_bytes());
            ph[4..8].copy_from_slice(&s.flags.to_le_bytes());
            ph[16..24].copy_from_slice(&s.paddr.to_le_bytes());
            ph[24..32].copy_from_slice(&s.paddr.to_le_bytes());
            ph[32..40].copy_from_slice(&s.filesz.to_le_bytes());
            ph[40..48].copy_from_slice(&s.memsz.to_le_bytes());
            b.extend(ph);
        }
        // A GNU_STACK header, which must not count.
        let mut ph = vec![0u8; PHDR_SIZE];
        ph[0..4].copy_from_slice(&0x6474_e551u32.to_le_bytes());
        ph[40..48].copy_from_slice(&0x10000u64.to_le_bytes());
        b.extend(ph);
        b.extend(&strtab);
        b.resize(shoff, 0);
        b.extend(vec![0u8; SHDR_SIZE]); // null section
        let mut sh = |name: u32, kind: u32, flags: u64, offset: u64, size: u64| {
            let mut h = vec![0u8; SHDR_SIZE];
            h[0..4].copy_from_slice(&name.to_le_bytes());
            h[4..8].copy_from_slice(&kind.to_le_bytes());
            h[8..16].copy_from_slice(&flags.to_le_bytes());
            h[24..32].copy_from_slice(&offset.to_le_bytes());
            h[32..40].copy_from_slice(&size.to_le_bytes());
            b.extend(h);
        };
        for ((_, kind, flags, size), name) in sections.iter().zip(&name_offs) {
            sh(*name, *kind, *flags, 0, *size);
        }
        sh(shstr_name, 3, 0, strtab_off as u64, strtab.len() as u64);
        b
    }

    /// The hypervisor's layout: text R+X, rodata R, data+bss+noinit RW.
    fn hypervisor_like() -> Vec<u8> {
        elf(
            &[
                Seg {
                    flags: 5,
                    paddr: 0x8020_0000,
                    filesz: 0x177e0,
                    memsz: 0x177e0,
                },
                Seg {
                    flags: 4,
                    paddr: 0x8021_8000,
                    filesz: 0x3d18,
                    memsz: 0x3d18,
                },
                Seg {
                    flags: 6,
                    paddr: 0x8021_c000,
                    filesz: 0x178,
                    memsz: 0x88_2000,
                },
            ],
            &[
                (".text", 1, 6, 0x177e0),
                (".rodata", 1, 2, 0x3d18),
                (".data", 1, 3, 0x178),
                (".bss", SHT_NOBITS, 3, 0x1e0),
                (".noinit", SHT_NOBITS, 3, 0x88_0000),
                // Not allocated: must not count.
                (".debug_info", 1, 0, 0x1000),
                (".tbss-like", SHT_NOBITS, 0, 0x40),
            ],
        )
    }

    #[test]
    fn sizes_by_segment_and_section() {
        let s = image_size(&hypervisor_like()).unwrap();
        assert_eq!(
            s,
            ImageSize {
                text: 0x177e0,
                rodata: 0x3d18,
                data: 0x178,
                zero_fill: 0x88_2000 - 0x178,
                bss: 0x1e0,
                noinit: 0x88_0000,
                span: 0x8021_c000 + 0x88_2000 - 0x8020_0000,
            }
        );
        assert_eq!(s.loadable(), 0x177e0 + 0x3d18 + 0x178);
    }

    #[test]
    fn without_section_headers_all_zero_fill_is_bss() {
        let mut b = hypervisor_like();
        b[0x3c..0x3e].copy_from_slice(&0u16.to_le_bytes());
        let s = image_size(&b).unwrap();
        assert_eq!(s.bss, 0x88_2000 - 0x178);
        assert_eq!(s.noinit, 0);
    }

    #[test]
    fn rejects_non_elf_and_wrong_class() {
        assert_eq!(image_size(b"hello world"), Err(ElfError::NotElf));
        assert_eq!(image_size(&[]), Err(ElfError::NotElf));
        let mut b = hypervisor_like();
        b[4] = 1;
        assert_eq!(image_size(&b), Err(ElfError::Unsupported("not 64-bit")));
        let mut b = hypervisor_like();
        b[5] = 2;
        assert_eq!(
            image_size(&b),
            Err(ElfError::Unsupported("not little-endian"))
        );
    }

    #[test]
    fn truncated_files_are_errors_not_panics() {
        let full = hypervisor_like();
        for len in [16, 63, 64, 100, 64 + PHDR_SIZE * 2, full.len() - 1] {
            let r = image_size(&full[..len]);
            assert!(r.is_err(), "len {len}: {r:?}");
        }
        let mut b = full.clone();
        b[0x20..0x28].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(image_size(&b), Err(ElfError::Truncated(_))));
    }
}
