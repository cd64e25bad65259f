//! Compressed byte/halfword loads and stores (Zcb) on the ns16550a UART the
//! DTB lists: they reach the device with the right width, register,
//! signedness and offset. Under a hypervisor they trap as guest-page faults
//! whose `htinst` QEMU leaves zero, so the hypervisor decodes the instruction
//! it fetches from guest memory.
//!
//! The instructions are emitted as `.2byte` (encoded here, pinned below to the
//! assembler's encodings), so no assembler extension flag is needed. Run only
//! when the DTB lists Zcb (else they are illegal instructions).
//!
//! Registers used: SCR (offset 7), read/write with no effect; and, with
//! `LCR.DLAB` set, DLL (offset 0), an 8-bit read/write register at a
//! halfword-aligned offset. Wider accesses act on the register at their offset
//! and carry it in the low byte (both QEMU's model and Ferrovisor's), so a
//! halfword load of DLL = 0x81 reads 0x0081: zero-extended (c.lhu) and, from
//! bit 15, sign-extended to the same (c.lh), where a byte-wide signed decode
//! would read 0xffff_ffff_ffff_ff81. LCR and DLL are restored before anything
//! is printed (on bare QEMU the firmware's console is this UART).

use core::arch::asm;

use fv_guest_rt::trap::{self, TrapInfo};
use fv_guest_rt::{println, Platform, Reporter};

/// 16550 register offsets (PC16550D data sheet, reg-shift 0).
const DLL: usize = 0;
const LCR: usize = 3;
const SCR: usize = 7;
/// LCR bit 7: divisor latch access.
const LCR_DLAB: u8 = 0x80;

/// x10 (a0), x11 (a1), x12 (a2) as 3-bit register fields (x8 + n).
const A0: u16 = 2;
const A1: u16 = 3;
const A2: u16 = 4;

/// Zcb's quadrant-0 load/store (Zc* spec, formats CLB/CSB/CLH/CSH): funct3
/// 100, `funct6_low` at 12:10, rs1' at 9:7, bit 6 and bit 5, rd'/rs2' at 4:2.
const fn zcb(funct6_low: u16, rs1: u16, bit6: u16, bit5: u16, reg: u16) -> u16 {
    (0b100 << 13) | (funct6_low << 10) | (rs1 << 7) | (bit6 << 6) | (bit5 << 5) | (reg << 2)
}
/// c.lbu rd', uimm(rs1'): uimm[0] at bit 6, uimm[1] at bit 5.
const fn c_lbu(rd: u16, rs1: u16, uimm: u16) -> u16 {
    zcb(0b000, rs1, uimm & 1, uimm >> 1, rd)
}
/// c.lhu rd', uimm(rs1'): uimm[1] at bit 5, bit 6 = 0.
const fn c_lhu(rd: u16, rs1: u16, uimm: u16) -> u16 {
    zcb(0b001, rs1, 0, uimm >> 1, rd)
}
/// c.lh rd', uimm(rs1'): bit 6 = 1.
const fn c_lh(rd: u16, rs1: u16, uimm: u16) -> u16 {
    zcb(0b001, rs1, 1, uimm >> 1, rd)
}
/// c.sb rs2', uimm(rs1').
const fn c_sb(rs2: u16, rs1: u16, uimm: u16) -> u16 {
    zcb(0b010, rs1, uimm & 1, uimm >> 1, rs2)
}
/// c.sh rs2', uimm(rs1').
const fn c_sh(rs2: u16, rs1: u16, uimm: u16) -> u16 {
    zcb(0b011, rs1, 0, uimm >> 1, rs2)
}

// The encodings rustc's LLVM assembler gives with `.option arch, +zcb`
// (a5 = x15 = 7, s0 = x8 = 0).
const _: () = {
    assert!(c_lbu(7, A0, 0) == 0x811c); // c.lbu a5, 0(a0)
    assert!(c_lbu(0, 7, 3) == 0x83e0); // c.lbu s0, 3(a5)
    assert!(c_lhu(7, A0, 2) == 0x853c); // c.lhu a5, 2(a0)
    assert!(c_lh(7, A0, 2) == 0x857c); // c.lh a5, 2(a0)
    assert!(c_sb(A1, A0, 1) == 0x894c); // c.sb a1, 1(a0)
    assert!(c_sb(0, 7, 2) == 0x8ba0); // c.sb s0, 2(a5)
    assert!(c_sh(7, A0, 2) == 0x8d3c); // c.sh a5, 2(a0)
};

// One function per instruction: the encoding is an asm `const`, the base in
// a0, the value in a1 (stores) or a2 (loads; 0 if the load trapped).
const SB_3: u16 = c_sb(A1, A0, 3);
const LBU_3: u16 = c_lbu(A2, A0, 3);
const SH_2: u16 = c_sh(A1, A0, 2);
const LHU_2: u16 = c_lhu(A2, A0, 2);
const LH_2: u16 = c_lh(A2, A0, 2);

fn store(insn: u16, base: usize, v: u64) -> Result<(), TrapInfo> {
    let t = trap::expect_trap(|| match insn {
        // SAFETY: base + offset is the UART register the caller names (a
        // device the DTB lists); a trap is expected-and-skipped. .2byte is
        // one 16-bit instruction that writes no register.
        SB_3 => unsafe {
            asm!(".2byte {i}", i = const SB_3, in("a0") base, in("a1") v, options(nostack))
        },
        // SAFETY: as above.
        SH_2 => unsafe {
            asm!(".2byte {i}", i = const SH_2, in("a0") base, in("a1") v, options(nostack))
        },
        _ => {}
    });
    t.map_or(Ok(()), Err)
}

fn load(insn: u16, base: usize) -> Result<u64, TrapInfo> {
    let mut v: u64 = 0;
    let t = trap::expect_trap(|| match insn {
        // SAFETY: as in `store`; the instruction writes only a2 (skipped, and
        // a2 kept, if it traps).
        LBU_3 => unsafe {
            asm!(".2byte {i}", i = const LBU_3, in("a0") base, inout("a2") v, options(nostack))
        },
        // SAFETY: as above.
        LHU_2 => unsafe {
            asm!(".2byte {i}", i = const LHU_2, in("a0") base, inout("a2") v, options(nostack))
        },
        // SAFETY: as above.
        LH_2 => unsafe {
            asm!(".2byte {i}", i = const LH_2, in("a0") base, inout("a2") v, options(nostack))
        },
        _ => {}
    });
    t.map_or(Ok(v), Err)
}

/// The first ns16550a the DTB lists with reg-shift 0: its base address.
fn uart(p: &Platform) -> Option<usize> {
    let fdt = p.fdt()?;
    let node = fdt.find_compatible(&["ns16550a"])?;
    let shift = node.property("reg-shift").and_then(|s| s.as_usize());
    if shift.unwrap_or(0) != 0 {
        return None;
    }
    let reg = node.reg()?.next()?;
    Some(reg.starting_address as usize)
}

fn check_value(r: &Reporter, check: &str, got: Result<u64, TrapInfo>, want: u64) {
    match got {
        Ok(v) => r.check(
            check,
            v == want,
            format_args!("read {v:#x}, expected {want:#x}"),
        ),
        Err(t) => r.check(check, false, format_args!("trapped: {t}")),
    };
}

/// The Zcb loads and stores on the UART (skipped, with an INFO line, when
/// the DTB lists no Zcb or no ns16550a).
pub fn zcb_on_uart(p: &Platform, r: &Reporter) {
    if !p.has_extension("zcb") {
        println!("INFO: isolation-test: the DTB does not list Zcb: Zcb MMIO checks not run");
        return;
    }
    let Some(base) = uart(p) else {
        println!(
            "INFO: isolation-test: no ns16550a (reg-shift 0) in the DTB: Zcb MMIO checks not run"
        );
        return;
    };
    println!("INFO: isolation-test: Zcb loads/stores on the UART at {base:#x}");

    // Each instruction is checked against the plain 32-bit `sb`/`lbu`.
    // c.sb stores the low byte of a1 at SCR (a0 = base + 4, offset 3:
    // uimm[0] and uimm[1] both set).
    let scr = base + SCR;
    let scr_base = scr - 3;
    let res = store(SB_3, scr_base, 0x1234_5678_9abc_dea5).and_then(|()| trap::try_load_u8(scr));
    check_value(r, "zcb-c-sb", res.map(u64::from), 0xa5);
    // c.lbu zero-extends (bit 7 set: a sign-extending decode would show).
    let res = store_u8(scr, 0xc3).and_then(|()| load(LBU_3, scr_base));
    check_value(r, "zcb-c-lbu", res, 0xc3);

    // Halfword forms on DLL (offset 0 while LCR.DLAB is set): a0 = base - 2,
    // offset 2. Nothing is printed until LCR and DLL are restored.
    let lcr = base + LCR;
    let dll = base + DLL;
    let old_lcr = match trap::try_load_u8(lcr) {
        Ok(v) => v,
        Err(t) => {
            r.fail("zcb-uart-lcr", format_args!("lbu of LCR trapped: {t}"));
            return;
        }
    };
    let dlab = store_u8(lcr, old_lcr | LCR_DLAB).and_then(|()| trap::try_load_u8(dll));
    let old_dll = match dlab {
        Ok(v) => v,
        Err(t) => {
            let _ = store_u8(lcr, old_lcr);
            r.fail(
                "zcb-uart-dll",
                format_args!("setting DLAB or reading DLL trapped: {t}"),
            );
            return;
        }
    };
    let dll_base = dll - 2;
    let sh = store(SH_2, dll_base, 0xffff_ffff_ffff_5a81).and_then(|()| trap::try_load_u8(dll));
    let lhu = store_u8(dll, 0x81).and_then(|()| load(LHU_2, dll_base));
    let lh = store_u8(dll, 0x81).and_then(|()| load(LH_2, dll_base));
    let restored = store_u8(dll, old_dll).and_then(|()| store_u8(lcr, old_lcr));
    check_value(r, "zcb-c-sh", sh.map(u64::from), 0x81);
    check_value(r, "zcb-c-lhu", lhu, 0x81);
    // Sign-extended from bit 15 of 0x0081: still 0x81.
    check_value(r, "zcb-c-lh", lh, 0x81);
    if let Err(t) = restored {
        r.fail(
            "zcb-uart-restore",
            format_args!("restoring DLL/LCR trapped: {t}"),
        );
    }
}

/// `sb` (32-bit encoding) of `v` at `addr`.
fn store_u8(addr: usize, v: u8) -> Result<(), TrapInfo> {
    let t = trap::expect_trap(|| {
        // SAFETY: `addr` is a UART register the DTB lists; a trap is
        // expected and skipped.
        unsafe { asm!("sb {v}, 0({a})", a = in(reg) addr, v = in(reg) v, options(nostack)) };
    });
    t.map_or(Ok(()), Err)
}

/// MCR: an 8-bit read/write register at a word-aligned offset.
const MCR: usize = 4;
/// cbo.flush 0(a0): imm 2, rs1 x10, funct3 010, rd 0, MISC-MEM (Zicbom).
const CBO_FLUSH_A0: u32 = (2 << 20) | (10 << 15) | (0b010 << 12) | 0x0f;

/// A memory access the MMIO path does not emulate, on the UART: it either
/// does what the instruction says (bare QEMU's device accepts it) or raises
/// the access fault `cause` at `addr` (Ferrovisor: a defined, contained
/// outcome). Anything else (another trap, a wrong value) fails. Prints which.
fn contained(r: &Reporter, check: &str, addr: usize, cause: usize, got: Result<bool, TrapInfo>) {
    match got {
        Ok(ok) => {
            println!("INFO: isolation-test: {check}: executed");
            r.check(check, ok, format_args!("executed with a wrong result"));
        }
        Err(t) => {
            let ok = t.scause == cause && (t.stval == addr || t.stval == 0);
            if ok {
                println!("INFO: isolation-test: {check}: access fault");
            }
            r.check(
                check,
                ok,
                format_args!("{t}, expected scause {cause} at {addr:#x}"),
            );
        }
    }
}

/// AMO, FP load and cache-block flush on the UART: executed correctly or an
/// access fault, never a wrong decode (skipped without an ns16550a).
pub fn not_emulated_on_uart(p: &Platform, r: &Reporter) {
    let Some(base) = uart(p) else {
        println!("INFO: isolation-test: no ns16550a (reg-shift 0) in the DTB: AMO/FP/CBO MMIO checks not run");
        return;
    };
    let mcr = base + MCR;
    let Ok(old) = trap::try_load_u8(mcr) else {
        r.fail("mmio-mcr", format_args!("lbu of MCR at {mcr:#x} trapped"));
        return;
    };
    let old = u64::from(old);

    // amoor.w with rs2 = zero: reads MCR, writes it back unchanged.
    let mut rd: u64 = 0x5eed;
    let t = trap::expect_trap(|| {
        // SAFETY: an AMO on the UART's MCR with operand 0 leaves it unchanged;
        // a trap is expected and skipped (rd keeps its sentinel).
        unsafe {
            asm!("amoor.w {rd}, zero, ({a})", a = in(reg) mcr, rd = inout(reg) rd, options(nostack))
        };
    });
    let after = trap::try_load_u8(mcr).map(u64::from);
    let got = t.map_or(Ok(rd == old && after == Ok(old)), Err);
    contained(r, "mmio-amo", mcr, trap::STORE_ACCESS_FAULT, got);

    // flw: the register's bits in the FP register (FS is Initial).
    let mut bits: u64 = 0x5eed;
    let t = trap::expect_trap(|| {
        // SAFETY: a 32-bit FP load of the UART's MCR (no read side effect);
        // ft0 is declared clobbered; a trap is expected and skipped.
        unsafe {
            asm!(
                "fmv.w.x ft0, {s}",
                "flw ft0, 0({a})",
                "fmv.x.w {b}, ft0",
                a = in(reg) mcr,
                s = in(reg) bits,
                b = inout(reg) bits,
                out("ft0") _,
                options(nostack)
            )
        };
    });
    let got = t.map_or(Ok(bits & 0xffff_ffff == old), Err);
    contained(r, "mmio-flw", mcr, trap::LOAD_ACCESS_FAULT, got);

    if !p.has_extension("zicbom") {
        println!(
            "INFO: isolation-test: the DTB does not list Zicbom: cbo.flush on the UART not run"
        );
        return;
    }
    let t = trap::expect_trap(|| {
        // SAFETY: cbo.flush of the UART's block: a no-op for a device, or a
        // trap that is expected and skipped. No register is written.
        unsafe { asm!(".4byte {i}", i = const CBO_FLUSH_A0, in("a0") base, options(nostack)) };
    });
    contained(
        r,
        "mmio-cbo-flush",
        base,
        trap::STORE_ACCESS_FAULT,
        t.map_or(Ok(true), Err),
    );
}
