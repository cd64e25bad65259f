//! RISC-V ISA strings: what a hart has, and what a guest may be told it has.
//!
//! Host harts describe themselves with `riscv,isa` (e.g.
//! `"rv64imafdch_zicbom_zicboz_sstc_svadu"`) and, in newer device trees, with
//! `riscv,isa-base` plus the string list `riscv,isa-extensions`
//! (Linux `Documentation/devicetree/bindings/riscv/extensions.yaml`).

use alloc::string::String;
use alloc::vec::Vec;

bitflags::bitflags! {
    /// The ISA extensions Ferrovisor cares about.
    ///
    /// Single-letter extensions sit at their `misa` bit (bit = letter - 'A',
    /// privileged spec 3.1.1); multi-letter ones use bits 32 and up, which
    /// have no meaning outside this type.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct IsaExtensions: u64 {
        /// A: atomics.
        const A = 1 << 0;
        /// B: bit manipulation (= Zba + Zbb + Zbs).
        const B = 1 << 1;
        /// C: compressed instructions.
        const C = 1 << 2;
        /// D: double-precision floating point.
        const D = 1 << 3;
        /// F: single-precision floating point.
        const F = 1 << 5;
        /// H: the hypervisor extension.
        const H = 1 << 7;
        /// I: the base integer ISA.
        const I = 1 << 8;
        /// M: integer multiply/divide.
        const M = 1 << 12;
        /// Q: quad-precision floating point.
        const Q = 1 << 16;
        /// V: vectors.
        const V = 1 << 21;
        /// Sstc: supervisor timer compare (`stimecmp`, `vstimecmp`).
        const SSTC = 1 << 32;
        /// Svvptc: PTE valid-bit updates become visible without `sfence.vma`.
        const SVVPTC = 1 << 33;
        /// Svadu: hardware updating of PTE A/D bits.
        const SVADU = 1 << 34;
        /// Svnapot: NAPOT translation contiguity (64 KiB pages).
        const SVNAPOT = 1 << 35;
        /// Svpbmt: page-based memory types.
        const SVPBMT = 1 << 36;
        /// Sscofpmf: counter overflow and mode-based filtering.
        const SSCOFPMF = 1 << 37;
        /// Zba: address generation.
        const ZBA = 1 << 38;
        /// Zbb: basic bit manipulation.
        const ZBB = 1 << 39;
        /// Zbs: single-bit instructions.
        const ZBS = 1 << 40;
        /// Zbc: carry-less multiplication.
        const ZBC = 1 << 41;
        /// Zicbom: cache-block management.
        const ZICBOM = 1 << 42;
        /// Zicboz: cache-block zero.
        const ZICBOZ = 1 << 43;
        /// Zicbop: cache-block prefetch hints.
        const ZICBOP = 1 << 44;
        /// Zicntr: base counters (`cycle`, `time`, `instret`).
        const ZICNTR = 1 << 45;
        /// Zihpm: hardware performance counters.
        const ZIHPM = 1 << 46;
        /// Zifencei: `fence.i`.
        const ZIFENCEI = 1 << 47;
        /// Zicsr: CSR instructions.
        const ZICSR = 1 << 48;
        /// Zkr: entropy source (`seed` CSR).
        const ZKR = 1 << 49;
        /// Smaia: machine-level AIA CSRs.
        const SMAIA = 1 << 50;
        /// Ssaia: supervisor-level AIA CSRs.
        const SSAIA = 1 << 51;
        /// Zihintpause: `pause` hint.
        const ZIHINTPAUSE = 1 << 52;
        /// Zawrs: wait-on-reservation-set.
        const ZAWRS = 1 << 53;
        /// Svinval: fine-grained address-translation cache invalidation.
        const SVINVAL = 1 << 54;
        /// Zicond: integer conditional operations.
        const ZICOND = 1 << 55;
        /// Zfa: additional floating-point instructions.
        const ZFA = 1 << 56;
    }
}

/// Extension names (lowercase, as in ISA strings) and their flags.
const NAMED: &[(&str, IsaExtensions)] = &[
    ("a", IsaExtensions::A),
    ("b", IsaExtensions::B),
    ("c", IsaExtensions::C),
    ("d", IsaExtensions::D),
    ("f", IsaExtensions::F),
    ("h", IsaExtensions::H),
    ("i", IsaExtensions::I),
    ("m", IsaExtensions::M),
    ("q", IsaExtensions::Q),
    ("v", IsaExtensions::V),
    ("sstc", IsaExtensions::SSTC),
    ("svvptc", IsaExtensions::SVVPTC),
    ("svadu", IsaExtensions::SVADU),
    ("svnapot", IsaExtensions::SVNAPOT),
    ("svpbmt", IsaExtensions::SVPBMT),
    ("sscofpmf", IsaExtensions::SSCOFPMF),
    ("zba", IsaExtensions::ZBA),
    ("zbb", IsaExtensions::ZBB),
    ("zbs", IsaExtensions::ZBS),
    ("zbc", IsaExtensions::ZBC),
    ("zicbom", IsaExtensions::ZICBOM),
    ("zicboz", IsaExtensions::ZICBOZ),
    ("zicbop", IsaExtensions::ZICBOP),
    ("zicntr", IsaExtensions::ZICNTR),
    ("zihpm", IsaExtensions::ZIHPM),
    ("zifencei", IsaExtensions::ZIFENCEI),
    ("zicsr", IsaExtensions::ZICSR),
    ("zkr", IsaExtensions::ZKR),
    ("smaia", IsaExtensions::SMAIA),
    ("ssaia", IsaExtensions::SSAIA),
    ("zihintpause", IsaExtensions::ZIHINTPAUSE),
    ("zawrs", IsaExtensions::ZAWRS),
    ("svinval", IsaExtensions::SVINVAL),
    ("zicond", IsaExtensions::ZICOND),
    ("zfa", IsaExtensions::ZFA),
];

/// What `g` stands for: IMAFD plus Zicsr and Zifencei (unprivileged spec, "G").
const G_EXPANSION: IsaExtensions = IsaExtensions::I
    .union(IsaExtensions::M)
    .union(IsaExtensions::A)
    .union(IsaExtensions::F)
    .union(IsaExtensions::D)
    .union(IsaExtensions::ZICSR)
    .union(IsaExtensions::ZIFENCEI);

impl IsaExtensions {
    /// The flag for one extension name (`"h"`, `"Zicbom"`, ...), case-insensitive.
    /// `"g"` yields its whole expansion.
    pub fn from_ext_name(name: &str) -> IsaExtensions {
        if name.eq_ignore_ascii_case("g") {
            return G_EXPANSION;
        }
        NAMED
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map_or(IsaExtensions::empty(), |&(_, f)| f)
    }

    /// The extensions named by a `riscv,isa` string; `None` unless it starts
    /// with `rv32` or `rv64`. Unknown extensions are ignored.
    pub fn from_isa_string(isa: &str) -> Option<IsaExtensions> {
        let parts = IsaParts::split(isa)?;
        let mut ext = IsaExtensions::empty();
        parts.for_each_name(|n| ext |= IsaExtensions::from_ext_name(n));
        Some(ext)
    }

    /// The extensions named by a `riscv,isa-extensions` list (`"i"`, `"m"`, `"zicbom"`, ...).
    pub fn from_extension_names<'n>(names: impl IntoIterator<Item = &'n str>) -> IsaExtensions {
        names.into_iter().fold(IsaExtensions::empty(), |acc, n| {
            acc | IsaExtensions::from_ext_name(n)
        })
    }
}

/// The address-translation scheme a hart supports (`mmu-type` in its cpu node).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MmuType {
    /// Sv39: 3-level, 39-bit virtual addresses.
    Sv39,
    /// Sv48: 4-level, 48-bit virtual addresses.
    Sv48,
    /// Sv57: 5-level, 57-bit virtual addresses.
    Sv57,
}

impl MmuType {
    /// The device-tree value: `"riscv,sv39"`, `"riscv,sv48"` or `"riscv,sv57"`.
    pub const fn dt_name(self) -> &'static str {
        match self {
            MmuType::Sv39 => "riscv,sv39",
            MmuType::Sv48 => "riscv,sv48",
            MmuType::Sv57 => "riscv,sv57",
        }
    }

    /// Parses a device-tree `mmu-type` value; `None` for anything else
    /// (including `"riscv,none"` and `"riscv,sv32"`).
    pub fn from_dt_name(s: &str) -> Option<MmuType> {
        match s {
            "riscv,sv39" => Some(MmuType::Sv39),
            "riscv,sv48" => Some(MmuType::Sv48),
            "riscv,sv57" => Some(MmuType::Sv57),
            _ => None,
        }
    }
}

/// An ISA string cut into its parts.
struct IsaParts<'s> {
    /// `"rv32"` or `"rv64"`, lowercase.
    xlen: &'static str,
    /// The single-letter run after the prefix (`"imafdch"`).
    letters: &'s str,
    /// Multi-letter extensions glued to the letter run without `_` (malformed, tolerated).
    glued: &'s str,
    /// Everything after the first `_`.
    multi: &'s str,
}

impl<'s> IsaParts<'s> {
    fn split(isa: &'s str) -> Option<Self> {
        let prefix = isa.get(..4)?;
        let xlen = if prefix.eq_ignore_ascii_case("rv64") {
            "rv64"
        } else if prefix.eq_ignore_ascii_case("rv32") {
            "rv32"
        } else {
            return None;
        };
        let rest = isa.get(4..)?;
        let (single, multi) = rest.split_once('_').unwrap_or((rest, ""));
        // A multi-letter extension starts with z, s or x; one glued to the
        // letter run (no underscore) ends the single-letter part.
        let cut = single
            .find(|c: char| matches!(c.to_ascii_lowercase(), 'z' | 's' | 'x'))
            .unwrap_or(single.len());
        let (letters, glued) = single.split_at_checked(cut)?;
        Some(IsaParts {
            xlen,
            letters,
            glued,
            multi,
        })
    }

    /// Calls `f` with each extension name: every letter as a one-character
    /// string, then each multi-letter name with any version suffix removed.
    fn for_each_name(&self, mut f: impl FnMut(&'s str)) {
        let bytes = self.letters.as_bytes();
        for (i, &b) in bytes.iter().enumerate() {
            if !b.is_ascii_alphabetic() {
                continue; // version digits
            }
            // `p` between digits separates major and minor version ("i2p1").
            let prev_digit = i > 0 && bytes.get(i - 1).is_some_and(u8::is_ascii_digit);
            let next_digit = bytes.get(i + 1).is_some_and(u8::is_ascii_digit);
            if b.eq_ignore_ascii_case(&b'p') && prev_digit && next_digit {
                continue;
            }
            if let Some(s) = self.letters.get(i..i + 1) {
                f(s);
            }
        }
        let glued = core::iter::once(self.glued);
        for tok in glued.chain(self.multi.split('_')) {
            let name = strip_version(tok);
            if !name.is_empty() {
                f(name);
            }
        }
    }
}

/// Removes a trailing version (`"1p0"`, `"2"`) from a multi-letter extension name.
fn strip_version(tok: &str) -> &str {
    let t = tok.trim_end_matches(|c: char| c.is_ascii_digit());
    if t.len() == tok.len() {
        return tok;
    }
    if let Some(before_p) = t.strip_suffix(['p', 'P']) {
        if before_p.ends_with(|c: char| c.is_ascii_digit()) {
            return before_p.trim_end_matches(|c: char| c.is_ascii_digit());
        }
    }
    t
}

/// Builds an ISA string from `riscv,isa-base` (`"rv64i"`) and a
/// `riscv,isa-extensions` list: single letters after the base, multi-letter
/// names joined with `_`. `None` unless the base starts with `rv32`/`rv64`.
pub fn isa_string_from_list<'n>(
    base: &str,
    extensions: impl IntoIterator<Item = &'n str> + Clone,
) -> Option<String> {
    let prefix = base.get(..4)?;
    if !prefix.eq_ignore_ascii_case("rv64") && !prefix.eq_ignore_ascii_case("rv32") {
        return None;
    }
    let mut s = String::new();
    s.push_str(&prefix.to_ascii_lowercase());
    // The base's own letter ("i" of "rv64i"), then the listed letters.
    let mut letters = base.get(4..)?.to_ascii_lowercase();
    for e in extensions.clone() {
        if e.len() == 1 && e.bytes().all(|b| b.is_ascii_alphabetic()) {
            let l = e.to_ascii_lowercase();
            if !letters.contains(l.as_str()) {
                letters.push_str(&l);
            }
        }
    }
    s.push_str(&letters);
    for e in extensions {
        if e.len() > 1 {
            s.push('_');
            s.push_str(&e.to_ascii_lowercase());
        }
    }
    Some(s)
}

/// Single-letter extensions a VS-mode guest may be told about, in canonical
/// order. Not `h` (Ferrovisor does not offer nested virtualisation), not `v` or
/// `q` (vector and 128-bit FP state are not switched between vCPUs).
const GUEST_LETTERS: &[&str] = &["i", "m", "a", "f", "d", "c", "b"];

/// Multi-letter extensions a VS-mode guest may be told about.
///
/// Only extensions that work in VS/VU-mode without the hypervisor emulating
/// anything. Most are unprivileged instructions that simply execute; a few need
/// the hypervisor to open a gate, which it must do when it passes them on:
/// Sstc (`henvcfg.STCE`), Svpbmt (`henvcfg.PBMTE`), Zicbom (`henvcfg.CBIE`,
/// `CBCFE`), Zicboz (`henvcfg.CBZE`), Zicntr (`hcounteren` CY, TM, IR).
///
/// The one thing they make the hypervisor decode is a load or store to an
/// emulated device (a guest-page fault outside RAM). `fv-arch-riscv64`'s
/// `decode` emulates the integer loads/stores of I, C/Zca and Zcb; the FP ones
/// (F, D, Zfh/Zfhmin, Zcd), AMOs (A, Zaamo, Zalrsc, Zacas, Zabha) and
/// cache-block ops (Zicbom, Zicboz) get an access fault, as from a device
/// that does not support them. Of virtual-instruction exceptions only WFI is
/// emulated; none of these extensions raises one once its gate is open.
/// `tests/isa.rs` pins this classification for every entry.
///
/// Deliberately absent: Svadu (only if the hypervisor sets `henvcfg.ADUE`),
/// Zawrs (`wrs` traps with `hstatus.VTW`), Sscofpmf (overflow interrupts are
/// not virtualised), Zkr (`seed` raises a virtual-instruction exception in
/// VS-mode), Zihpm (`hcounteren` keeps the `hpmcounter`s closed, as the
/// host's counters would leak between VMs, so a read raises a
/// virtual-instruction exception the guest sees as an illegal instruction,
/// where Zihpm promises the CSRs exist), Smaia/Ssaia (no virtual AIA), and
/// everything unknown.
pub const GUEST_EXTENSION_ALLOW_LIST: &[&str] = &[
    // Base and counters.
    "zicsr",
    "zifencei",
    "zicntr",
    // Hints and cache blocks.
    "zihintpause",
    "zihintntl",
    "zicbom",
    "zicboz",
    "zicbop",
    "zic64b",
    "ziccamoa",
    "ziccif",
    "zicclsm",
    "ziccrse",
    "zicond",
    "zimop",
    "zcmop",
    // Integer, atomics.
    "zmmul",
    "zaamo",
    "zalrsc",
    "zacas",
    "zabha",
    "za64rs",
    // Floating point and compressed.
    "zfa",
    "zfh",
    "zfhmin",
    "zca",
    "zcb",
    "zcd",
    "zcf",
    // Bit manipulation and scalar crypto.
    "zba",
    "zbb",
    "zbc",
    "zbs",
    "zbkb",
    "zbkc",
    "zbkx",
    "zknd",
    "zkne",
    "zknh",
    // Supervisor-level, virtualised by the H extension itself.
    "sstc",
    "svvptc",
    "svpbmt",
    "svnapot",
    "svinval",
];

/// The ISA a guest is told about (see [`guest_isa`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestIsa {
    /// The `riscv,isa` string, e.g. `"rv64imafdc_zicsr_zifencei_sstc"`.
    pub isa: String,
    /// The same extensions as a `riscv,isa-extensions` list: letters first
    /// (`"i"`, `"m"`, ...), then multi-letter names.
    pub extensions: Vec<&'static str>,
}

/// The guest's ISA derived from a host hart's `riscv,isa` string: the host's
/// letters without `h` (and without `v`, `q`), and of its multi-letter
/// extensions only those in [`GUEST_EXTENSION_ALLOW_LIST`], in the host's
/// order. `g` is expanded to `imafd_zicsr_zifencei`. `None` unless the string
/// starts with `rv32` or `rv64`.
pub fn guest_isa(host_isa: &str) -> Option<GuestIsa> {
    let parts = IsaParts::split(host_isa)?;
    let mut has_letter = [false; GUEST_LETTERS.len()];
    let mut multi: Vec<&'static str> = Vec::new();
    let add_multi = |multi: &mut Vec<&'static str>, name: &str| {
        if let Some(&allowed) = GUEST_EXTENSION_ALLOW_LIST
            .iter()
            .find(|a| a.eq_ignore_ascii_case(name))
        {
            if !multi.contains(&allowed) {
                multi.push(allowed);
            }
        }
    };
    parts.for_each_name(|name| {
        if name.eq_ignore_ascii_case("g") {
            for l in ["i", "m", "a", "f", "d"] {
                if let Some(i) = GUEST_LETTERS.iter().position(|&g| g == l) {
                    if let Some(h) = has_letter.get_mut(i) {
                        *h = true;
                    }
                }
            }
            add_multi(&mut multi, "zicsr");
            add_multi(&mut multi, "zifencei");
        } else if name.len() == 1 {
            if let Some(i) = GUEST_LETTERS
                .iter()
                .position(|g| g.eq_ignore_ascii_case(name))
            {
                if let Some(h) = has_letter.get_mut(i) {
                    *h = true;
                }
            }
        } else {
            add_multi(&mut multi, name);
        }
    });

    let mut isa = String::from(parts.xlen);
    let mut extensions = Vec::new();
    for (&letter, &present) in GUEST_LETTERS.iter().zip(has_letter.iter()) {
        if present {
            isa.push_str(letter);
            extensions.push(letter);
        }
    }
    for name in multi {
        isa.push('_');
        isa.push_str(name);
        extensions.push(name);
    }
    Some(GuestIsa { isa, extensions })
}
