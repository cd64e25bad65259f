//! The decoder against an independent reference: every load/store form of
//! RV64GC + Zcb written down as its fixed-bit constraints, the way the
//! RISC-V opcode tables (riscv-opcodes) list them (`hi..lo=value`,
//! `bit=value`, `hi..lo!=value`), with the field that names its data register,
//! its width and its signedness. The reference matches an instruction against
//! those rows; it shares no code with the decoder under test.
//!
//! Both directions are checked: every encoding a row matches must decode to
//! that row's access, and every encoding no load/store row matches must be
//! `Unsupported` (never a wrong decode, never a panic). The 16-bit space is
//! checked exhaustively; the 32-bit space exhaustively over every bit the
//! decoder may look at (opcode, funct3, rd, rs2) and randomly over the rest.
//!
//! The decoder computes no effective address: the hardware reports the
//! guest-physical address of the faulting access (`htval`/`stval`), so base
//! register and offset are not part of its result and not compared here.

use super::*;
use proptest::prelude::*;

/// What a row of the reference table says an encoding is.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// An integer load (sign- or zero-extending) into the register in `reg`.
    Load { signed: bool },
    /// An integer store of the register in `reg`.
    Store,
    /// A memory access the MMIO path deliberately does not emulate (the
    /// decoder must say `Unsupported`; the guest gets an access fault).
    NotEmulated,
}

/// Where a row's data register sits.
#[derive(Clone, Copy, Debug)]
enum Reg {
    /// rd' / rs2' of the CL/CS formats: bits 4:2, register x8 + value.
    Prime4to2,
    /// rd of CI and of the 32-bit I format: bits 11:7.
    Rd11to7,
    /// rs2 of the CSS format: bits 6:2.
    Rs2Css,
    /// rs2 of the 32-bit S format: bits 24:20.
    Rs2S,
    /// No integer register (floating point, vector, AMO, cache-block op).
    None,
}

/// One row: mnemonic, constraints, access.
struct Row {
    name: &'static str,
    fields: &'static str,
    kind: Kind,
    reg: Reg,
    bytes: u64,
}

const fn row(name: &'static str, fields: &'static str, kind: Kind, reg: Reg, bytes: u64) -> Row {
    Row {
        name,
        fields,
        kind,
        reg,
        bytes,
    }
}

const LU: Kind = Kind::Load { signed: false };
const LS: Kind = Kind::Load { signed: true };
const ST: Kind = Kind::Store;
const NO: Kind = Kind::NotEmulated;

/// RV64 compressed loads and stores (unprivileged spec, "RVC Instruction Set
/// Listings"; Zc* spec, "Zcb instructions"). A full-register load (C.LD,
/// C.LDSP) is reported unsigned: there is nothing to extend.
const COMPRESSED: &[Row] = &[
    row("c.lw", "1..0=0 15..13=2", LS, Reg::Prime4to2, 4),
    row("c.ld", "1..0=0 15..13=3", LU, Reg::Prime4to2, 8),
    row("c.sw", "1..0=0 15..13=6", ST, Reg::Prime4to2, 4),
    row("c.sd", "1..0=0 15..13=7", ST, Reg::Prime4to2, 8),
    row("c.lbu", "1..0=0 15..13=4 12..10=0", LU, Reg::Prime4to2, 1),
    row(
        "c.lhu",
        "1..0=0 15..13=4 12..10=1 6=0",
        LU,
        Reg::Prime4to2,
        2,
    ),
    row(
        "c.lh",
        "1..0=0 15..13=4 12..10=1 6=1",
        LS,
        Reg::Prime4to2,
        2,
    ),
    row("c.sb", "1..0=0 15..13=4 12..10=2", ST, Reg::Prime4to2, 1),
    row(
        "c.sh",
        "1..0=0 15..13=4 12..10=3 6=0",
        ST,
        Reg::Prime4to2,
        2,
    ),
    // rd = 0 is reserved for C.LWSP / C.LDSP.
    row("c.lwsp", "1..0=2 15..13=2 11..7!=0", LS, Reg::Rd11to7, 4),
    row("c.ldsp", "1..0=2 15..13=3 11..7!=0", LU, Reg::Rd11to7, 8),
    row("c.swsp", "1..0=2 15..13=6", ST, Reg::Rs2Css, 4),
    row("c.sdsp", "1..0=2 15..13=7", ST, Reg::Rs2Css, 8),
    // Floating point (Zcd): not emulated.
    row("c.fld", "1..0=0 15..13=1", NO, Reg::None, 8),
    row("c.fsd", "1..0=0 15..13=5", NO, Reg::None, 8),
    row("c.fldsp", "1..0=2 15..13=1", NO, Reg::None, 8),
    row("c.fsdsp", "1..0=2 15..13=5", NO, Reg::None, 8),
];

/// RV64 32-bit loads and stores (unprivileged spec, "RV32/64G Instruction Set
/// Listings"; V spec for vector loads/stores; Zicbom/Zicboz; A, Zacas, Zabha).
const STANDARD: &[Row] = &[
    row("lb", "1..0=3 6..2=0x00 14..12=0", LS, Reg::Rd11to7, 1),
    row("lh", "1..0=3 6..2=0x00 14..12=1", LS, Reg::Rd11to7, 2),
    row("lw", "1..0=3 6..2=0x00 14..12=2", LS, Reg::Rd11to7, 4),
    row("ld", "1..0=3 6..2=0x00 14..12=3", LU, Reg::Rd11to7, 8),
    row("lbu", "1..0=3 6..2=0x00 14..12=4", LU, Reg::Rd11to7, 1),
    row("lhu", "1..0=3 6..2=0x00 14..12=5", LU, Reg::Rd11to7, 2),
    row("lwu", "1..0=3 6..2=0x00 14..12=6", LU, Reg::Rd11to7, 4),
    row("sb", "1..0=3 6..2=0x08 14..12=0", ST, Reg::Rs2S, 1),
    row("sh", "1..0=3 6..2=0x08 14..12=1", ST, Reg::Rs2S, 2),
    row("sw", "1..0=3 6..2=0x08 14..12=2", ST, Reg::Rs2S, 4),
    row("sd", "1..0=3 6..2=0x08 14..12=3", ST, Reg::Rs2S, 8),
    // LOAD-FP / STORE-FP: Zfh/Zfhmin, F, D, Q, and vector unit-stride,
    // strided and indexed forms (widths 0, 5, 6, 7).
    row("flh", "1..0=3 6..2=0x01 14..12=1", NO, Reg::None, 2),
    row("flw", "1..0=3 6..2=0x01 14..12=2", NO, Reg::None, 4),
    row("fld", "1..0=3 6..2=0x01 14..12=3", NO, Reg::None, 8),
    row("flq", "1..0=3 6..2=0x01 14..12=4", NO, Reg::None, 16),
    row("vle8", "1..0=3 6..2=0x01 14..12=0", NO, Reg::None, 1),
    row("vle16", "1..0=3 6..2=0x01 14..12=5", NO, Reg::None, 2),
    row("vle32", "1..0=3 6..2=0x01 14..12=6", NO, Reg::None, 4),
    row("vle64", "1..0=3 6..2=0x01 14..12=7", NO, Reg::None, 8),
    row("fsh", "1..0=3 6..2=0x09 14..12=1", NO, Reg::None, 2),
    row("fsw", "1..0=3 6..2=0x09 14..12=2", NO, Reg::None, 4),
    row("fsd", "1..0=3 6..2=0x09 14..12=3", NO, Reg::None, 8),
    row("fsq", "1..0=3 6..2=0x09 14..12=4", NO, Reg::None, 16),
    row("vse8", "1..0=3 6..2=0x09 14..12=0", NO, Reg::None, 1),
    row("vse16", "1..0=3 6..2=0x09 14..12=5", NO, Reg::None, 2),
    row("vse32", "1..0=3 6..2=0x09 14..12=6", NO, Reg::None, 4),
    row("vse64", "1..0=3 6..2=0x09 14..12=7", NO, Reg::None, 8),
    // AMO (Zaamo, Zalrsc, Zacas, Zabha): the whole opcode.
    row("amo", "1..0=3 6..2=0x0b", NO, Reg::None, 8),
    // cbo.inval/clean/flush/zero (Zicbom, Zicboz).
    row(
        "cbo",
        "1..0=3 6..2=0x03 14..12=2 11..7=0",
        NO,
        Reg::None,
        64,
    ),
];

/// One parsed constraint: `(insn >> lo) & mask` equals (or, `ne`, differs from) `value`.
#[derive(Clone, Copy, Debug)]
struct Constraint {
    lo: u32,
    mask: u32,
    value: u32,
    ne: bool,
}

fn number(s: &str) -> u32 {
    if let Some(h) = s.strip_prefix("0x") {
        u32::from_str_radix(h, 16).unwrap()
    } else {
        s.parse().unwrap()
    }
}

fn parse(fields: &str) -> Vec<Constraint> {
    fields
        .split_whitespace()
        .map(|c| {
            let (range, value, ne) = match c.split_once("!=") {
                Some((r, v)) => (r, v, true),
                None => {
                    let (r, v) = c.split_once('=').unwrap();
                    (r, v, false)
                }
            };
            let (hi, lo) = match range.split_once("..") {
                Some((h, l)) => (number(h), number(l)),
                None => (number(range), number(range)),
            };
            assert!(hi >= lo && hi < 32, "{c}");
            let mask = u32::MAX >> (31 - (hi - lo));
            let value = number(value);
            assert!(value <= mask, "{c}");
            Constraint {
                lo,
                mask,
                value,
                ne,
            }
        })
        .collect()
}

/// A table with its constraints parsed once.
struct Reference {
    rows: Vec<(&'static Row, Vec<Constraint>)>,
}

impl Reference {
    fn new(table: &'static [Row]) -> Self {
        Reference {
            rows: table.iter().map(|r| (r, parse(r.fields))).collect(),
        }
    }

    /// The one row matching `insn` (a row overlap is a table bug).
    fn lookup(&self, insn: u32) -> Option<&'static Row> {
        let mut hits = self.rows.iter().filter(|(_, cs)| {
            cs.iter()
                .all(|c| (((insn >> c.lo) & c.mask) == c.value) != c.ne)
        });
        let first = hits.next().map(|(r, _)| *r);
        if let Some((other, _)) = hits.next() {
            panic!(
                "{insn:#x} matches both {} and {}",
                first.map_or("", |r| r.name),
                other.name
            );
        }
        first
    }

    /// What the decoder should say about `insn` of length `len`.
    fn expect(&self, insn: u32, len: u8) -> Result<MemInsn, DecodeError> {
        let Some(row) = self.lookup(insn) else {
            return Err(DecodeError::Unsupported);
        };
        let reg = match row.reg {
            Reg::Prime4to2 => 8 + ((insn >> 2) & 7),
            Reg::Rd11to7 => (insn >> 7) & 31,
            Reg::Rs2Css => (insn >> 2) & 31,
            Reg::Rs2S => (insn >> 20) & 31,
            Reg::None => return Err(DecodeError::Unsupported),
        } as u8;
        let op = match row.kind {
            Kind::Load { signed } => MemOp::Load { rd: reg, signed },
            Kind::Store => MemOp::Store { rs2: reg },
            Kind::NotEmulated => return Err(DecodeError::Unsupported),
        };
        let width = AccessWidth::from_bytes(row.bytes).expect("an integer access width");
        Ok(MemInsn { op, width, len })
    }

    /// How many bits a row's `=` constraints leave free (for counting the
    /// encodings it matches: a check that the table is not vacuous).
    fn free_bits(&self, name: &str, width_bits: u32) -> u32 {
        let (_, cs) = self.rows.iter().find(|(r, _)| r.name == name).unwrap();
        let fixed: u32 = cs
            .iter()
            .filter(|c| !c.ne)
            .map(|c| c.mask.count_ones())
            .sum();
        width_bits - fixed
    }
}

/// The 32-bit instruction a compressed load/store stands for, transformed as
/// the privileged spec says `htinst` reports it: base register and offset
/// zero, bit 1 cleared to mark a 16-bit original.
fn transformed_from_compressed(d: MemInsn) -> u32 {
    let size = d.width.bytes().trailing_zeros();
    let insn = match d.op {
        MemOp::Load { rd, signed } => {
            let funct3 = size | if signed || size == 3 { 0 } else { 4 };
            (funct3 << 12) | (u32::from(rd) << 7) | 0x03
        }
        MemOp::Store { rs2 } => (u32::from(rs2) << 20) | (size << 12) | 0x23,
    };
    insn & !0b10
}

/// Every 16-bit encoding (bits 1:0 != 11), with the upper halfword ignored.
#[test]
fn whole_compressed_space_matches_reference() {
    let reference = Reference::new(COMPRESSED);
    let mut per_row = std::collections::HashMap::<&str, u32>::new();
    let mut decoded = 0u32;
    for insn in 0..=u16::MAX {
        if insn & 0b11 == 0b11 {
            continue;
        }
        let insn = u32::from(insn);
        let want = reference.expect(insn, 2);
        let got = decode_insn(insn);
        assert_eq!(
            got,
            want,
            "{insn:#06x} ({})",
            reference.lookup(insn).map_or("no load/store", |r| r.name)
        );
        // A compressed instruction is 16 bits: what follows it does not matter.
        assert_eq!(decode_insn(insn | 0xa5c3_0000), want, "{insn:#06x} + upper");
        if let Some(r) = reference.lookup(insn) {
            *per_row.entry(r.name).or_default() += 1;
        }
        if let Ok(d) = got {
            decoded += 1;
            // The transformed form hardware may report in htinst decodes the same.
            assert_eq!(
                decode_htinst(u64::from(transformed_from_compressed(d))),
                Ok(Htinst::Insn(d)),
                "{insn:#06x} transformed"
            );
        }
    }
    // Every row matched as many encodings as its free bits allow (C.LWSP and
    // C.LDSP: minus the 2^6 with rd = 0), and every row matched something.
    for (r, _) in &reference.rows {
        let free = 1u32 << reference.free_bits(r.name, 16);
        let want = if r.fields.contains("!=") {
            free - free / 32
        } else {
            free
        };
        assert_eq!(per_row.get(r.name), Some(&want), "{}", r.name);
    }
    // c.lw c.ld c.sw c.sd: 2^11 each; c.lbu c.sb: 2^8; c.lhu c.lh c.sh: 2^7;
    // c.lwsp c.ldsp: 2^11 - 2^6; c.swsp c.sdsp: 2^11.
    assert_eq!(
        decoded,
        4 * 2048 + 2 * 256 + 3 * 128 + 2 * (2048 - 64) + 2 * 2048
    );
}

/// Fills the bits the 32-bit decoder must ignore (rs1 19:15, imm 31:25) from `seed`.
fn with_ignored_bits(fields: u32, seed: u32) -> u32 {
    let noise = seed.wrapping_mul(0x9e37_79b9).rotate_left(13);
    (fields & 0x01f0_7fff) | (noise & 0xfe0f_8000)
}

/// Every combination of opcode, funct3, rd and rs2 (2^20), other bits varied.
#[test]
fn standard_space_matches_reference_on_every_decoded_field() {
    let reference = Reference::new(STANDARD);
    let mut decoded = 0u32;
    for fields in 0..(1u32 << 20) {
        // fields: opcode 6:0, rd 11:7, funct3 14:12 from the low 15 bits, rs2 24:20 from the top 5.
        let insn = with_ignored_bits((fields & 0x7fff) | ((fields >> 15) << 20), fields);
        let len = if insn & 0b11 == 0b11 { 4 } else { 2 };
        if len == 2 {
            continue; // the compressed space is checked exhaustively above
        }
        let want = reference.expect(insn, 4);
        assert_eq!(
            decode_insn(insn),
            want,
            "{insn:#010x} ({})",
            reference.lookup(insn).map_or("no load/store", |r| r.name)
        );
        if let Ok(d) = want {
            decoded += 1;
            // htinst: rs1 and the offset replaced by zero, as hardware reports
            // it (loads keep opcode, rd, funct3; stores opcode, funct3, rs2).
            let keep = match d.op {
                MemOp::Load { .. } => 0x0000_7fff,
                MemOp::Store { .. } => 0x01f0_707f,
            };
            let transformed = insn & keep;
            assert_eq!(
                decode_htinst(u64::from(transformed)),
                Ok(Htinst::Insn(d)),
                "{insn:#010x} transformed"
            );
        }
    }
    // 7 loads × 32 rd × 32 rs2 values + 4 stores × 32 rs2 × 32 rd values.
    assert_eq!(decoded, (7 + 4) * 32 * 32);
}

proptest! {
    /// Any 32-bit word: the decoder agrees with the reference.
    #[test]
    fn any_standard_word_matches_reference(insn in any::<u32>()) {
        let reference = Reference::new(STANDARD);
        let compressed = Reference::new(COMPRESSED);
        let want = if insn & 0b11 == 0b11 {
            reference.expect(insn, 4)
        } else {
            compressed.expect(insn & 0xffff, 2)
        };
        prop_assert_eq!(decode_insn(insn), want);
    }

    /// Any `htinst` value (privileged spec, "Transformed Instruction or
    /// Pseudoinstruction for mtinst or htinst"): zero is unknown, the four
    /// VS-stage pseudoinstructions are implicit accesses, a transformed
    /// load/store (bit 0 set; bit 1 clear for a 16-bit original) is what the
    /// reference says, anything else unsupported.
    #[test]
    fn any_htinst_matches_reference(
        ht in prop_oneof![any::<u64>(), any::<u32>().prop_map(u64::from)]
    ) {
        let reference = Reference::new(STANDARD);
        let low = ht as u32;
        let want = if ht == 0 {
            Ok(Htinst::Unknown)
        } else if ht >> 32 != 0 {
            Err(DecodeError::Unsupported)
        } else if [0x2000, 0x2020, 0x3000, 0x3020].contains(&low) {
            Err(DecodeError::ImplicitPageTableAccess)
        } else if low & 1 == 1 {
            let len = if low & 0b10 != 0 { 4 } else { 2 };
            reference.expect(low | 0b10, len).map(Htinst::Insn)
        } else {
            Err(DecodeError::Unsupported)
        };
        prop_assert_eq!(decode_htinst(ht), want);
    }
}

/// The not-emulated rows really are memory accesses the reference knows
/// (so "Unsupported" for them is a decision, not an omission), and each
/// gets `Unsupported` in a concrete encoding.
#[test]
fn not_emulated_forms_are_unsupported() {
    for table in [STANDARD, COMPRESSED] {
        let reference = Reference::new(table);
        for (r, cs) in &reference.rows {
            if !matches!(r.kind, Kind::NotEmulated) {
                continue;
            }
            // The smallest encoding the row matches: its fixed bits, all else 0.
            let insn = cs
                .iter()
                .filter(|c| !c.ne)
                .fold(0u32, |acc, c| acc | (c.value << c.lo));
            assert_eq!(reference.lookup(insn).map(|x| x.name), Some(r.name));
            assert_eq!(
                decode_insn(insn),
                Err(DecodeError::Unsupported),
                "{}",
                r.name
            );
        }
    }
}
