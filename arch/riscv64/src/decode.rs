//! Decoding a trapped guest load/store into an MMIO access.
//!
//! On a guest-page fault the hardware reports the guest-physical address
//! (`htval << 2 | stval & 3`) and, where it can, a *transformed* instruction in
//! `htinst` (privileged spec, "Transformed Instruction or Pseudoinstruction for
//! mtinst or htinst"). When `htinst` is zero the hypervisor reads the instruction
//! itself. Either way this module turns the bits into what the core needs: load
//! or store, width, register, and instruction length. Portable and host-tested
//! (exhaustively over the 16-bit space against a reference decoder).
//!
//! # What reaches an emulated device, by extension the guest is told about
//!
//! Emulated: the integer loads and stores of I (LB, LH, LW, LD, LBU, LHU,
//! LWU, SB, SH, SW, SD), of C/Zca (C.LW, C.LD, C.SW, C.SD, C.LWSP, C.LDSP,
//! C.SWSP, C.SDSP) and of Zcb (C.LBU, C.LHU, C.LH, C.SB, C.SH).
//!
//! Deliberately [`DecodeError::Unsupported`], which the core turns into an
//! access fault injected into the guest (and counted), as hardware raises for
//! an access a device region does not support:
//! - floating-point loads/stores (F, D, Zfh/Zfhmin FLH/FSH, Zcd C.FLD/C.FSD/
//!   C.FLDSP/C.FSDSP): no device register is FP, and completing one would
//!   write FP state;
//! - AMOs and LR/SC (A, Zaamo, Zalrsc, Zacas, Zabha, opcode AMO): devices
//!   are not atomic;
//! - cache-block operations (Zicbom, Zicboz `cbo.*`, opcode MISC-MEM):
//!   devices are not cached;
//! - vector loads/stores (V is never advertised; they share LOAD-FP/STORE-FP).
//!
//! Whether `htinst` reports these transformed or is zero (and the instruction
//! is fetched), their opcode is neither LOAD nor STORE, so both paths agree.
//!
//! When `htinst` is zero the instruction is fetched with two HLVX.HU at `pc`
//! and, only if the first halfword says it is 32 bits, `pc + 2`: each is
//! translated on its own, so a 32-bit instruction straddling a page boundary
//! is read correctly, and a 16-bit one (2-byte aligned) never straddles one.
//! A fetch that faults gives no instruction: an access fault for the guest.

use fv_vm::AccessWidth;

/// A decoded guest memory-access instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemInsn {
    /// Load or store, with its register.
    pub op: MemOp,
    /// Access width.
    pub width: AccessWidth,
    /// Instruction length in bytes (2 for compressed, 4 otherwise).
    pub len: u8,
}

/// Direction of a decoded access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemOp {
    /// A load into `rd`, sign- or zero-extended.
    Load {
        /// Destination register.
        rd: u8,
        /// Whether the value is sign-extended.
        signed: bool,
    },
    /// A store of register `rs2`.
    Store {
        /// Source register.
        rs2: u8,
    },
}

/// Why an instruction could not be decoded as an MMIO access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Not an integer load or store (AMO, LR/SC, floating point, cache-block op, vector, anything else).
    Unsupported,
    /// `htinst` holds a pseudoinstruction: the fault happened during the guest's
    /// own VS-stage page-table walk, not in an instruction's data access.
    ImplicitPageTableAccess,
}

/// What `htinst` tells about a guest-page fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Htinst {
    /// Zero: nothing known, the hypervisor must read the instruction.
    Unknown,
    /// A transformed load/store.
    Insn(MemInsn),
}

fn bits(insn: u32, hi: u32, lo: u32) -> u32 {
    (insn >> lo) & ((1 << (hi - lo + 1)) - 1)
}

fn width_of(funct3: u32) -> AccessWidth {
    match funct3 & 0b11 {
        0 => AccessWidth::Byte,
        1 => AccessWidth::Half,
        2 => AccessWidth::Word,
        _ => AccessWidth::Double,
    }
}

/// Decodes a 32-bit standard load/store (opcode LOAD 0x03 or STORE 0x23).
fn decode32(insn: u32) -> Result<(MemOp, AccessWidth), DecodeError> {
    let funct3 = bits(insn, 14, 12);
    match insn & 0x7f {
        0x03 => {
            // LB LH LW LD LBU LHU LWU; funct3 7 is reserved.
            if funct3 == 7 {
                return Err(DecodeError::Unsupported);
            }
            Ok((
                MemOp::Load {
                    rd: bits(insn, 11, 7) as u8,
                    signed: funct3 < 4 && funct3 != 3,
                },
                width_of(funct3),
            ))
        }
        0x23 => {
            if funct3 > 3 {
                return Err(DecodeError::Unsupported);
            }
            Ok((
                MemOp::Store {
                    rs2: bits(insn, 24, 20) as u8,
                },
                width_of(funct3),
            ))
        }
        _ => Err(DecodeError::Unsupported),
    }
}

/// Decodes a 16-bit compressed load/store (C.LW, C.LD, C.SW, C.SD, the
/// stack-pointer-relative forms, and Zcb's C.LBU, C.LHU, C.LH, C.SB, C.SH).
fn decode16(insn: u16) -> Result<(MemOp, AccessWidth), DecodeError> {
    let insn = u32::from(insn);
    let funct3 = bits(insn, 15, 13);
    let rd_prime = (bits(insn, 4, 2) + 8) as u8;
    match (insn & 0b11, funct3) {
        (0b00, 0b010) => Ok((
            MemOp::Load {
                rd: rd_prime,
                signed: true,
            },
            AccessWidth::Word,
        )),
        (0b00, 0b011) => Ok((
            MemOp::Load {
                rd: rd_prime,
                signed: false,
            },
            AccessWidth::Double,
        )),
        (0b00, 0b110) => Ok((MemOp::Store { rs2: rd_prime }, AccessWidth::Word)),
        (0b00, 0b111) => Ok((MemOp::Store { rs2: rd_prime }, AccessWidth::Double)),
        (0b00, 0b100) => decode_zcb(insn, rd_prime),
        (0b10, 0b010) | (0b10, 0b011) => {
            let rd = bits(insn, 11, 7) as u8;
            if rd == 0 {
                return Err(DecodeError::Unsupported); // reserved encoding
            }
            if funct3 == 0b010 {
                Ok((MemOp::Load { rd, signed: true }, AccessWidth::Word))
            } else {
                Ok((MemOp::Load { rd, signed: false }, AccessWidth::Double))
            }
        }
        (0b10, 0b110) => Ok((
            MemOp::Store {
                rs2: bits(insn, 6, 2) as u8,
            },
            AccessWidth::Word,
        )),
        (0b10, 0b111) => Ok((
            MemOp::Store {
                rs2: bits(insn, 6, 2) as u8,
            },
            AccessWidth::Double,
        )),
        _ => Err(DecodeError::Unsupported),
    }
}

/// Decodes Zcb's loads and stores: quadrant 0, funct3 100 (Zc* spec, "Zcb
/// instructions", formats CLB/CSB/CLH/CSH). Bits 12:10 are the low bits of
/// funct6 (100000 c.lbu, 100001 c.lhu/c.lh, 100010 c.sb, 100011 c.sh), bit 6
/// is `funct1` for the halfword forms (1: c.lh; must be 0 for c.sh), rs1' is at
/// 9:7 and rd'/rs2' at 4:2 (`reg`). The offset bits (6:5, 5) need no decoding:
/// the hardware reports the address. Everything else here is reserved.
fn decode_zcb(insn: u32, reg: u8) -> Result<(MemOp, AccessWidth), DecodeError> {
    let funct1 = bits(insn, 6, 6);
    match (bits(insn, 12, 10), funct1) {
        (0b000, _) => Ok((
            MemOp::Load {
                rd: reg,
                signed: false,
            },
            AccessWidth::Byte,
        )),
        (0b001, _) => Ok((
            MemOp::Load {
                rd: reg,
                signed: funct1 == 1,
            },
            AccessWidth::Half,
        )),
        (0b010, _) => Ok((MemOp::Store { rs2: reg }, AccessWidth::Byte)),
        (0b011, 0) => Ok((MemOp::Store { rs2: reg }, AccessWidth::Half)),
        _ => Err(DecodeError::Unsupported),
    }
}

/// Decodes raw instruction bits as fetched from guest memory (the low 16 bits
/// decide whether it is compressed).
pub fn decode_insn(insn: u32) -> Result<MemInsn, DecodeError> {
    if insn & 0b11 == 0b11 {
        let (op, width) = decode32(insn)?;
        Ok(MemInsn { op, width, len: 4 })
    } else {
        let (op, width) = decode16(insn as u16)?;
        Ok(MemInsn { op, width, len: 2 })
    }
}

/// Decodes `htinst` after a guest-page fault.
pub fn decode_htinst(htinst: u64) -> Result<Htinst, DecodeError> {
    if htinst == 0 {
        return Ok(Htinst::Unknown);
    }
    let insn = htinst as u32;
    if htinst >> 32 != 0 {
        return Err(DecodeError::Unsupported);
    }
    // Pseudoinstructions for implicit VS-stage page-table accesses: 0x2000/0x2020
    // (32-bit read/write) and 0x3000/0x3020 (64-bit read/write).
    if matches!(insn, 0x2000 | 0x2020 | 0x3000 | 0x3020) {
        return Err(DecodeError::ImplicitPageTableAccess);
    }
    match insn & 0b11 {
        // Transformed standard instruction: bit 1 set, 32-bit original.
        0b11 => {
            let (op, width) = decode32(insn)?;
            Ok(Htinst::Insn(MemInsn { op, width, len: 4 }))
        }
        // Transformed compressed instruction: bit 1 clear, 16-bit original.
        0b01 => {
            let (op, width) = decode32(insn | 0b10)?;
            Ok(Htinst::Insn(MemInsn { op, width, len: 2 }))
        }
        _ => Err(DecodeError::Unsupported),
    }
}

/// A CSR read that writes nothing: `csrrs rd, csr, x0` / `csrrc rd, csr, x0`
/// or their immediate forms with `uimm = 0` (`csrr`, `rdcycle`, ...), as
/// `(rd, csr)`. Anything else (a write, another opcode, a 64-bit value that
/// is not a 32-bit instruction) is `None`.
pub fn decode_csr_read(insn: u64) -> Option<(u8, u16)> {
    const SYSTEM: u32 = 0x73;
    let insn = u32::try_from(insn).ok()?;
    if insn & 0x7f != SYSTEM {
        return None;
    }
    let rd = ((insn >> 7) & 31) as u8;
    let funct3 = (insn >> 12) & 7;
    let rs1 = (insn >> 15) & 31;
    // 2 CSRRS, 3 CSRRC, 6 CSRRSI, 7 CSRRCI: with rs1/uimm = 0 they only read.
    if !matches!(funct3, 2 | 3 | 6 | 7) || rs1 != 0 {
        return None;
    }
    Some((rd, (insn >> 20) as u16))
}

#[cfg(test)]
mod reference_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // Encodings assembled by hand from the ISA manual's tables.
    fn load(funct3: u32, rd: u32, rs1: u32, imm: u32) -> u32 {
        (imm << 20) | (rs1 << 15) | (funct3 << 12) | (rd << 7) | 0x03
    }
    fn store(funct3: u32, rs2: u32, rs1: u32) -> u32 {
        (rs2 << 20) | (rs1 << 15) | (funct3 << 12) | 0x23
    }

    #[test]
    fn standard_loads() {
        let cases = [
            (0, AccessWidth::Byte, true),
            (1, AccessWidth::Half, true),
            (2, AccessWidth::Word, true),
            (3, AccessWidth::Double, false),
            (4, AccessWidth::Byte, false),
            (5, AccessWidth::Half, false),
            (6, AccessWidth::Word, false),
        ];
        for (f3, width, signed) in cases {
            let d = decode_insn(load(f3, 17, 10, 0x7f)).unwrap();
            assert_eq!(
                d,
                MemInsn {
                    op: MemOp::Load { rd: 17, signed },
                    width,
                    len: 4
                }
            );
        }
        assert_eq!(decode_insn(load(7, 1, 1, 0)), Err(DecodeError::Unsupported));
        // lw a5, 0(a0) = 0x00052783
        assert_eq!(
            decode_insn(0x0005_2783).unwrap(),
            MemInsn {
                op: MemOp::Load {
                    rd: 15,
                    signed: true
                },
                width: AccessWidth::Word,
                len: 4
            }
        );
    }

    #[test]
    fn standard_stores() {
        for (f3, width) in [
            (0, AccessWidth::Byte),
            (1, AccessWidth::Half),
            (2, AccessWidth::Word),
            (3, AccessWidth::Double),
        ] {
            let d = decode_insn(store(f3, 31, 2)).unwrap();
            assert_eq!(
                d,
                MemInsn {
                    op: MemOp::Store { rs2: 31 },
                    width,
                    len: 4
                }
            );
        }
        assert_eq!(decode_insn(store(4, 1, 1)), Err(DecodeError::Unsupported));
        // sd a1, 8(a0) = 0x00b53423
        assert_eq!(
            decode_insn(0x00b5_3423).unwrap(),
            MemInsn {
                op: MemOp::Store { rs2: 11 },
                width: AccessWidth::Double,
                len: 4
            }
        );
    }

    #[test]
    fn compressed() {
        // c.lw a5, 0(a0) = 0x411c ; c.sd a1, 8(a0) = 0xe50c ; c.ldsp ra, 8(sp) = 0x60a2 ; c.swsp a0, 4(sp) = 0xc22a
        assert_eq!(
            decode_insn(0x411c).unwrap(),
            MemInsn {
                op: MemOp::Load {
                    rd: 15,
                    signed: true
                },
                width: AccessWidth::Word,
                len: 2
            }
        );
        assert_eq!(
            decode_insn(0xe50c).unwrap(),
            MemInsn {
                op: MemOp::Store { rs2: 11 },
                width: AccessWidth::Double,
                len: 2
            }
        );
        assert_eq!(
            decode_insn(0x60a2).unwrap(),
            MemInsn {
                op: MemOp::Load {
                    rd: 1,
                    signed: false
                },
                width: AccessWidth::Double,
                len: 2
            }
        );
        assert_eq!(
            decode_insn(0xc22a).unwrap(),
            MemInsn {
                op: MemOp::Store { rs2: 10 },
                width: AccessWidth::Word,
                len: 2
            }
        );
        // c.addi (quadrant 01) is not a memory access.
        assert_eq!(decode_insn(0x0505), Err(DecodeError::Unsupported));
        // c.fld (00, funct3 001) is floating point: unsupported for MMIO.
        assert_eq!(decode_insn(0x2108), Err(DecodeError::Unsupported));
    }

    #[test]
    fn non_memory_instructions() {
        // amoadd.w (opcode 0x2f), flw (0x07), addi (0x13)
        assert_eq!(decode_insn(0x00b5_202f), Err(DecodeError::Unsupported));
        assert_eq!(decode_insn(0x0005_2007), Err(DecodeError::Unsupported));
        assert_eq!(decode_insn(0x0015_0513), Err(DecodeError::Unsupported));
    }

    #[test]
    fn htinst_forms() {
        assert_eq!(decode_htinst(0), Ok(Htinst::Unknown));
        for p in [0x2000, 0x2020, 0x3000, 0x3020] {
            assert_eq!(decode_htinst(p), Err(DecodeError::ImplicitPageTableAccess));
        }
        // Transformed lw a5 (rs1 and offset zeroed): 0x00002783.
        assert_eq!(
            decode_htinst(0x2783),
            Ok(Htinst::Insn(MemInsn {
                op: MemOp::Load {
                    rd: 15,
                    signed: true
                },
                width: AccessWidth::Word,
                len: 4
            }))
        );
        // The same from a compressed original: bit 1 cleared.
        assert_eq!(
            decode_htinst(0x2781),
            Ok(Htinst::Insn(MemInsn {
                op: MemOp::Load {
                    rd: 15,
                    signed: true
                },
                width: AccessWidth::Word,
                len: 2
            }))
        );
        assert_eq!(decode_htinst(1 << 40), Err(DecodeError::Unsupported));
    }

    /// Zcb loads and stores, assembled by hand from the Zc* spec's encoding
    /// diagrams (quadrant 0, funct3 100, bits 12:10 = funct6 low bits,
    /// rs1' at 9:7, uimm at 6:5, rd'/rs2' at 4:2) and checked against the
    /// output of rustc's LLVM assembler (`.option arch, +zcb`) for the same
    /// mnemonics.
    #[test]
    fn zcb_compressed() {
        let load = |rd, signed, width| MemInsn {
            op: MemOp::Load { rd, signed },
            width,
            len: 2,
        };
        let store = |rs2, width| MemInsn {
            op: MemOp::Store { rs2 },
            width,
            len: 2,
        };
        // c.lbu a5, 0(a0) = 0x811c ; c.lbu s0, 3(a5) = 0x83e0 (uimm[0] = bit 6, uimm[1] = bit 5)
        assert_eq!(decode_insn(0x811c), Ok(load(15, false, AccessWidth::Byte)));
        assert_eq!(decode_insn(0x83e0), Ok(load(8, false, AccessWidth::Byte)));
        // c.lhu a5, 2(a0) = 0x853c ; c.lh a5, 2(a0) = 0x857c (bit 6 selects signed)
        assert_eq!(decode_insn(0x853c), Ok(load(15, false, AccessWidth::Half)));
        assert_eq!(decode_insn(0x857c), Ok(load(15, true, AccessWidth::Half)));
        // c.lh s1, 0(a4) = 0x8744
        assert_eq!(decode_insn(0x8744), Ok(load(9, true, AccessWidth::Half)));
        // c.sb a1, 1(a0) = 0x894c ; c.sb s0, 2(a5) = 0x8ba0
        assert_eq!(decode_insn(0x894c), Ok(store(11, AccessWidth::Byte)));
        assert_eq!(decode_insn(0x8ba0), Ok(store(8, AccessWidth::Byte)));
        // c.sh a5, 2(a0) = 0x8d3c ; with bit 6 set (0x8d7c) it is reserved.
        assert_eq!(decode_insn(0x8d3c), Ok(store(15, AccessWidth::Half)));
        assert_eq!(decode_insn(0x8d7c), Err(DecodeError::Unsupported));
        // Bits 12:10 = 1xx in quadrant 0, funct3 100 are reserved.
        for hi in 0b100..=0b111u32 {
            let insn = (0b100 << 13) | (hi << 10) | (1 << 7) | (2 << 2);
            assert_eq!(
                decode_insn(insn),
                Err(DecodeError::Unsupported),
                "{insn:#06x}"
            );
        }
        // The Zcb arithmetic ops live in quadrant 1: c.zext.b a0 = 0x9d61,
        // c.mul a0, a1 = 0x9d4d, c.not a0 = 0x9d75.
        for insn in [0x9d61, 0x9d4d, 0x9d75] {
            assert_eq!(
                decode_insn(insn),
                Err(DecodeError::Unsupported),
                "{insn:#06x}"
            );
        }
    }

    proptest! {
        #[test]
        fn decoder_never_panics(insn in any::<u32>(), ht in any::<u64>()) {
            let _ = decode_insn(insn);
            let _ = decode_htinst(ht);
        }

        #[test]
        fn decoded_registers_are_valid(insn in any::<u32>()) {
            if let Ok(d) = decode_insn(insn) {
                match d.op {
                    MemOp::Load { rd, .. } => prop_assert!(rd < 32),
                    MemOp::Store { rs2 } => prop_assert!(rs2 < 32),
                }
                prop_assert!(d.len == 2 || d.len == 4);
                prop_assert_eq!(d.len == 4, insn & 3 == 3);
            }
        }
    }

    #[test]
    fn csr_reads_decode() {
        // rdcycle a0 = csrrs a0, cycle, x0
        assert_eq!(decode_csr_read(0xC000_2573), Some((10, 0xC00)));
        // rdinstret t0 = csrrs t0, instret, x0
        assert_eq!(decode_csr_read(0xC020_22F3), Some((5, 0xC02)));
        // csrrc a0, cycle, x0 and csrrsi a0, cycle, 0
        assert_eq!(decode_csr_read(0xC000_3573), Some((10, 0xC00)));
        assert_eq!(decode_csr_read(0xC000_6573), Some((10, 0xC00)));
        // csrrs a0, cycle, a1 (a write), csrrw, not SYSTEM, not 32 bits.
        assert_eq!(decode_csr_read(0xC005_A573), None);
        assert_eq!(decode_csr_read(0xC000_1573), None);
        assert_eq!(decode_csr_read(0xC000_2533), None);
        assert_eq!(decode_csr_read(1 << 40), None);
    }
}
