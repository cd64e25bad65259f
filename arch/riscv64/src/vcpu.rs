//! [`RiscvVcpu`]: the [`fv_vm::Vcpu`] implementation for the H extension.
//!
//! A vCPU is *loaded* on a hart ([`RiscvVcpu::load`]) before it runs: its VS
//! CSRs, `hgatp`, `htimedelta`, delegation and FP registers are then live in the
//! hardware, and every [`Vcpu`] method works on the live CSRs. [`RiscvVcpu::put`]
//! saves them back so another vCPU can use the hart.
//!
//! # State a VS-mode guest reaches that has no VS copy
//!
//! With V=1, `sstatus`, `sie`, `stvec`, `sscratch`, `sepc`, `scause`, `stval`,
//! `sip`, `satp` and `stimecmp` are redirected to their `vs*` copies, which
//! [`RiscvVcpu::load`]/[`RiscvVcpu::put`] switch. Everything else a guest can
//! reach is either switched here too or closed to it:
//!
//! | state | handled |
//! | --- | --- |
//! | `scounteren` | switched (`VsCsrs`), 0 at reset |
//! | `senvcfg` | switched, 0 at reset (writable bits limited by `henvcfg`) |
//! | `sstateen0` | switched when Smstateen (`hstateen0.SE0` opens it; its bits read 0 in VS-mode since the matching `hstateen0` bits are 0) |
//! | `sstateen1..3` | closed: `hstateen1..3` = 0 where HS-mode can write them (virtual instruction), else already illegal (`mstateen1..3.SE` = 0) |
//! | `scontext` (Sdtrig) | switched when the hart has it (probed: Smstateen, which would gate it, is optional) |
//! | `vsiselect` (Ssaia) | switched when the hart has it; `vsireg` reaches only the IMSIC guest file (none: `hstatus.VGEIN` = 0) |
//! | other AIA state (`stopei`, `stopi`, ...) | `hstateen0.AIA`/`IMSIC`/`CSRIND` = 0 when Smstateen; otherwise the `vs*` copies above |
//! | `f0..f31`, `fcsr` | switched (`FpRegs`): restored at every load, saved when `sstatus.FS` is Dirty |
//! | vector state (`v0..v31`, `vstart`, `vxsat`, `vxrm`, `vcsr`, `vl`, `vtype`) | closed: V is never advertised (`fv_platform` guest ISA) and the guest runs with HS `sstatus.VS` = Off, so every vector instruction and CSR access is illegal whatever `vsstatus.VS` says. Switching 32 × VLEN bits per vCPU switch costs more than guests gain under TCG |
//! | `cycle`, `instret` | `hcounteren` CY/IR clear: reads trap (virtual instruction) and are emulated from this vCPU's virtual counters (`hypervisor/src/pmu.rs`), which count only while it runs guest code ([`RiscvVcpu::guest_counts`]) |
//! | `hpmcounterN` | `hcounteren` HPM bits clear: virtual instruction, injected as illegal |
//! | `time` | `hcounteren.TM` set, offset by the per-vCPU `htimedelta` |
//! | `stimecmp` | VS-mode reaches `vstimecmp` (switched) with Sstc (`henvcfg.STCE`); without Sstc, virtual instruction, injected as illegal. The hypervisor's own `stimecmp` is never reachable |
//! | `scountovf` (Sscofpmf) | bits masked by `hcounteren` (all HPM bits clear): reads 0 |
//! | `seed` (Zkr) | never accessible in VS-mode (virtual instruction or illegal); not advertised |
//! | `jvt`, `srmcfg`, `ssp`, CTR | not advertised; closed by `hstateen0`/`henvcfg` bits left 0 |

use crate::csr;
use crate::decode::{decode_htinst, decode_insn, DecodeError, Htinst, MemInsn, MemOp};
use crate::regs::{self, exception, num, Counteren, Hstatus, Sstatus};
use crate::switch::{enter_guest, SwitchContext};
use core::arch::asm;
use fv_addr::GuestPhysAddr;
use fv_vm::{
    Access, AccessWidth, GuestException, HostInterrupt, Vcpu, VcpuBoot, VcpuExit, VirtualInterrupt,
};

/// The WFI instruction's encoding.
const INSN_WFI: u64 = 0x1050_0073;

/// What the hart offers that changes how guests are run (probed once at boot).
#[derive(Clone, Copy, Debug, Default)]
pub struct HartFeatures {
    /// Sstc: `stimecmp` / `vstimecmp` exist and `henvcfg.STCE` could be set.
    pub sstc: bool,
    /// Smstateen: `hstateen0` exists.
    pub hstateen: bool,
    /// Which of `hstateen1..3` HS-mode may write (bit i-1 for `hstateen<i>`:
    /// each needs its `mstateen<i>.SE` from the firmware; without it VS-mode
    /// cannot reach `sstateen<i>` either).
    pub hstateen_123: u8,
    /// The `henvcfg` value guests run with (what the hart accepted).
    pub henvcfg: u64,
    /// `henvcfg` bits the hart accepts that each vCPU switches on for itself
    /// through SBI FWFT (today `ADUE`, for `PTE_AD_HW_UPDATING`); off after reset.
    pub fwft_henvcfg: u64,
    /// How many VMID bits `hgatp` implements (0: no VMIDs, flush on every VM switch).
    pub vmid_bits: u32,
    /// Sdtrig's `scontext` exists (probed): VS-mode reaches the real one.
    pub scontext: bool,
    /// Ssaia's `vsiselect` exists (probed).
    pub ssaia: bool,
}

/// What one hart's CSRs that [`RiscvVcpu::load`] writes but that are not
/// per-vCPU state hold: one per hart, owned by its run loop, so a vCPU switch
/// writes only what changes. `Default` = nothing known (the first load writes
/// everything).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HartCsrs {
    /// `hedeleg`, `hideleg`, `hcounteren` and `hstateen0..3` hold the values
    /// every vCPU runs with.
    constant: bool,
    /// What `hgatp` holds, if a load wrote it.
    hgatp: Option<u64>,
    /// What `henvcfg` holds, if a load wrote it.
    henvcfg: Option<u64>,
}

impl HartCsrs {
    /// Forgets what the hart holds (someone else wrote these CSRs): the next
    /// load writes them all.
    pub fn forget(&mut self) {
        *self = HartCsrs::default();
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct VsCsrs {
    vsstatus: u64,
    vsie: u64,
    vstvec: u64,
    vsscratch: u64,
    vsepc: u64,
    vscause: u64,
    vstval: u64,
    vsatp: u64,
    vstimecmp: u64,
    senvcfg: u64,
    scounteren: u64,
    sstateen0: u64,
    scontext: u64,
    vsiselect: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct FpRegs {
    f: [u64; 32],
    fcsr: u64,
}

#[derive(Clone, Copy, Debug)]
enum PendingMmio {
    None,
    Load {
        rd: u8,
        width: AccessWidth,
        signed: bool,
        len: u8,
    },
    Store {
        len: u8,
    },
}

/// A RISC-V virtual CPU.
#[derive(Debug)]
pub struct RiscvVcpu {
    ctx: SwitchContext,
    vs: VsCsrs,
    fp: FpRegs,
    hvip: u64,
    htimedelta: u64,
    hgatp: u64,
    features: HartFeatures,
    pending: PendingMmio,
    loaded: bool,
    /// The [`HartFeatures::fwft_henvcfg`] bits this vCPU has switched on.
    fwft_henvcfg: u64,
    /// SBI FWFT features this vCPU has locked (bit n = feature id n).
    fwft_locked: u32,
    /// Host cycles / instructions retired while this vCPU ran guest code.
    guest_cycles: u64,
    guest_instret: u64,
}

impl RiscvVcpu {
    /// A vCPU of the VM whose G-stage table and VMID are in `hgatp`.
    ///
    /// # Safety
    /// `hgatp` must select a G-stage table that maps only memory owned by this
    /// VM, and that table must outlive the vCPU: every guest access goes through it.
    pub unsafe fn new(features: HartFeatures, hgatp: u64) -> Self {
        let mut v = Self {
            ctx: SwitchContext::default(),
            vs: VsCsrs::default(),
            fp: FpRegs::default(),
            hvip: 0,
            htimedelta: 0,
            hgatp,
            features,
            pending: PendingMmio::None,
            loaded: false,
            fwft_henvcfg: 0,
            fwft_locked: 0,
            guest_cycles: 0,
            guest_instret: 0,
        };
        v.reset(VcpuBoot {
            pc: GuestPhysAddr::new(0),
            a0: 0,
            a1: 0,
        });
        v
    }

    /// Makes this vCPU the one the hart runs: writes its VS CSRs, `hgatp`,
    /// `htimedelta`, delegation and FP registers. `flush_vs` asks for the
    /// guest's VS-stage TLB entries on this hart to be dropped (another vCPU of
    /// the same VMID ran here since, or the vCPU moved harts); `flush_gstage`
    /// drops the G-stage entries of this VMID (the hart has no VMIDs and ran
    /// another VM, or the table changed). `hart` is what the hart's CSRs that
    /// are the same for every vCPU (delegation, `hcounteren`, `hstateen*`) and
    /// `hgatp`/`henvcfg` hold: only values that change are written, since under
    /// emulation every CSR write costs.
    ///
    /// Context: the hart that will run the vCPU, interrupts masked, no other
    /// vCPU loaded; `hart` belongs to this hart and saw every earlier load on it.
    pub fn load(&mut self, hart: &mut HartCsrs, flush_vs: bool, flush_gstage: bool) {
        let f = self.features;
        let henvcfg = f.henvcfg | self.fwft_henvcfg;
        // SAFETY: these CSRs only shape VS/VU-mode execution; hgatp was vouched
        // for in `new`. None of them affects HS-mode memory accesses.
        unsafe {
            if hart.hgatp != Some(self.hgatp) {
                csr::write::<{ num::HGATP }>(self.hgatp);
                hart.hgatp = Some(self.hgatp);
            }
            if !hart.constant {
                csr::write::<{ num::HEDELEG }>(regs::HEDELEG_GUEST);
                csr::write::<{ num::HIDELEG }>(regs::HIDELEG_GUEST);
                // Only `time` is read directly; cycle/instret reads trap and see
                // this vCPU's own virtual counters.
                csr::write::<{ num::HCOUNTEREN }>(Counteren::TM.bits());
                if f.hstateen {
                    csr::write::<{ num::HSTATEEN0 }>(
                        (regs::Hstateen0::SE0 | regs::Hstateen0::ENVCFG).bits(),
                    );
                    // sstateen1..3 stay closed to VS-mode (virtual instruction).
                    if f.hstateen_123 & 1 != 0 {
                        csr::write::<{ num::HSTATEEN1 }>(0);
                    }
                    if f.hstateen_123 & 2 != 0 {
                        csr::write::<{ num::HSTATEEN2 }>(0);
                    }
                    if f.hstateen_123 & 4 != 0 {
                        csr::write::<{ num::HSTATEEN3 }>(0);
                    }
                }
                hart.constant = true;
            }
            csr::write::<{ num::HTIMEDELTA }>(self.htimedelta);
            if hart.henvcfg != Some(henvcfg) {
                csr::write::<{ num::HENVCFG }>(henvcfg);
                hart.henvcfg = Some(henvcfg);
            }
            if f.hstateen {
                csr::write::<{ num::SSTATEEN0 }>(self.vs.sstateen0);
            }
            if f.scontext {
                csr::write::<{ num::SCONTEXT }>(self.vs.scontext);
            }
            if f.ssaia {
                csr::write::<{ num::VSISELECT }>(self.vs.vsiselect);
            }
            csr::write::<{ num::VSSTATUS }>(self.vs.vsstatus);
            csr::write::<{ num::VSIE }>(self.vs.vsie);
            csr::write::<{ num::VSTVEC }>(self.vs.vstvec);
            csr::write::<{ num::VSSCRATCH }>(self.vs.vsscratch);
            csr::write::<{ num::VSEPC }>(self.vs.vsepc);
            csr::write::<{ num::VSCAUSE }>(self.vs.vscause);
            csr::write::<{ num::VSTVAL }>(self.vs.vstval);
            csr::write::<{ num::VSATP }>(self.vs.vsatp);
            csr::write::<{ num::SENVCFG }>(self.vs.senvcfg);
            csr::write::<{ num::SCOUNTEREN }>(self.vs.scounteren);
            if f.sstc {
                csr::write::<{ num::VSTIMECMP }>(self.vs.vstimecmp);
            }
            csr::write::<{ num::HVIP }>(self.hvip);
        }
        if flush_gstage {
            csr::hfence_gvma_vmid(self.vmid());
        }
        if flush_vs {
            csr::hfence_vvma_all();
        }
        restore_fp(&self.fp);
        self.loaded = true;
    }

    /// Saves the live state back into the vCPU so the hart can run another one.
    /// `hart` (the one [`RiscvVcpu::load`] got) learns what `henvcfg` holds now
    /// ([`RiscvVcpu::set_fwft_henvcfg`] may have changed it while loaded).
    ///
    /// Context: the hart this vCPU is loaded on.
    pub fn put(&mut self, hart: &mut HartCsrs) {
        let f = self.features;
        hart.henvcfg = Some(f.henvcfg | self.fwft_henvcfg);
        self.vs = VsCsrs {
            vsstatus: csr::read::<{ num::VSSTATUS }>(),
            vsie: csr::read::<{ num::VSIE }>(),
            vstvec: csr::read::<{ num::VSTVEC }>(),
            vsscratch: csr::read::<{ num::VSSCRATCH }>(),
            vsepc: csr::read::<{ num::VSEPC }>(),
            vscause: csr::read::<{ num::VSCAUSE }>(),
            vstval: csr::read::<{ num::VSTVAL }>(),
            vsatp: csr::read::<{ num::VSATP }>(),
            vstimecmp: if f.sstc {
                csr::read::<{ num::VSTIMECMP }>()
            } else {
                self.vs.vstimecmp
            },
            senvcfg: csr::read::<{ num::SENVCFG }>(),
            scounteren: csr::read::<{ num::SCOUNTEREN }>(),
            sstateen0: if f.hstateen {
                csr::read::<{ num::SSTATEEN0 }>()
            } else {
                0
            },
            scontext: if f.scontext {
                csr::read::<{ num::SCONTEXT }>()
            } else {
                0
            },
            vsiselect: if f.ssaia {
                csr::read::<{ num::VSISELECT }>()
            } else {
                0
            },
        };
        self.hvip = csr::read::<{ num::HVIP }>();
        if self.ctx.guest.sstatus & regs::fs::MASK == regs::fs::DIRTY {
            save_fp(&mut self.fp);
            self.ctx.guest.sstatus = (self.ctx.guest.sstatus & !regs::fs::MASK) | regs::fs::CLEAN;
        }
        self.loaded = false;
    }

    /// Points the vCPU at a new G-stage table (its VM was re-created). Takes
    /// effect at the next [`RiscvVcpu::load`], which must fence the VMID.
    ///
    /// # Safety
    /// As for [`RiscvVcpu::new`]: `hgatp` must select a table that maps only
    /// this VM's memory and outlives the vCPU's use of it.
    pub unsafe fn set_hgatp(&mut self, hgatp: u64) {
        self.hgatp = hgatp;
    }

    /// The VMID this vCPU runs with.
    pub fn vmid(&self) -> u64 {
        (self.hgatp & regs::hgatp::VMID_MASK) >> regs::hgatp::VMID_SHIFT
    }

    /// Sets the offset added to the host's `time` to form the guest's.
    pub fn set_htimedelta(&mut self, delta: u64) {
        self.htimedelta = delta;
        if self.loaded {
            // SAFETY: htimedelta only affects what VS/VU-mode reads from `time`.
            unsafe { csr::write::<{ num::HTIMEDELTA }>(delta) };
        }
    }

    /// The host `time` at which this vCPU's own timer fires (Sstc: from
    /// `vstimecmp`), so a hart can wake to run it; `None` without Sstc (the core
    /// tracks emulated deadlines) or when no timer is armed.
    pub fn hw_timer_deadline(&self) -> Option<u64> {
        if !self.features.sstc {
            return None;
        }
        let cmp = if self.loaded {
            csr::read::<{ num::VSTIMECMP }>()
        } else {
            self.vs.vstimecmp
        };
        (cmp != u64::MAX).then(|| cmp.wrapping_sub(self.htimedelta))
    }

    /// Host cycles and instructions retired while this vCPU ran guest code,
    /// since it was created (monotonic; the hypervisor's own work between exit
    /// and entry is not included).
    pub fn guest_counts(&self) -> (u64, u64) {
        (self.guest_cycles, self.guest_instret)
    }

    /// Whether the last exit came from VU-mode (the guest's user mode).
    pub fn exited_from_user(&self) -> bool {
        self.ctx.guest.sstatus & Sstatus::SPP.bits() == 0
    }

    /// The guest's live `scounteren` (the vCPU must be loaded).
    pub fn scounteren(&self) -> u64 {
        if self.loaded {
            csr::read::<{ num::SCOUNTEREN }>()
        } else {
            self.vs.scounteren
        }
    }

    /// Completes an emulated CSR read: `rd = value`, past the 4-byte instruction.
    pub fn complete_csr_read(&mut self, rd: u8, value: u64) {
        if rd != 0 {
            if let Some(r) = self.ctx.guest.x.get_mut(usize::from(rd & 31)) {
                *r = value;
            }
        }
        self.advance(4);
    }

    /// Guest general-purpose register `i` (for logs and tests).
    pub fn gpr(&self, i: usize) -> u64 {
        self.ctx.guest.x.get(i).copied().unwrap_or(0)
    }

    /// The [`HartFeatures::fwft_henvcfg`] bits this vCPU has on (SBI FWFT).
    pub fn fwft_henvcfg(&self) -> u64 {
        self.fwft_henvcfg
    }

    /// Switches `bits` (within [`HartFeatures::fwft_henvcfg`]; others are
    /// ignored) on or off for this vCPU (SBI FWFT); live at once if loaded.
    pub fn set_fwft_henvcfg(&mut self, bits: u64, on: bool) {
        let bits = bits & self.features.fwft_henvcfg;
        if on {
            self.fwft_henvcfg |= bits;
        } else {
            self.fwft_henvcfg &= !bits;
        }
        if self.loaded {
            // SAFETY: henvcfg only shapes VS/VU-mode behaviour, and only bits
            // the hart accepted for guests are set.
            unsafe { csr::write::<{ num::HENVCFG }>(self.features.henvcfg | self.fwft_henvcfg) };
        }
    }

    /// SBI FWFT locks of this vCPU (bit n = feature id n); cleared by
    /// [`Vcpu::reset`] (hart reset), kept across suspend.
    pub fn fwft_locked(&self) -> u32 {
        self.fwft_locked
    }

    /// Locks SBI FWFT feature `id` (< 32) on this vCPU until its next reset.
    pub fn lock_fwft(&mut self, id: u32) {
        self.fwft_locked |= 1u32.checked_shl(id).unwrap_or(0);
    }

    /// Resumes the vCPU from a non-retentive suspend (SBI HSM `hart_suspend`,
    /// SUSP `system_suspend`): VS-mode at `boot.pc` with `a0`/`a1` from
    /// `boot`, `vsatp = 0` and `vsstatus.SIE = 0` (the spec's resume register
    /// state). Unlike [`Vcpu::reset`], everything else is kept: `vsie`,
    /// `vstvec`, the timer, pending interrupts (the one that woke it stays
    /// pending), FP state and the FWFT settings.
    pub fn resume_non_retentive(&mut self, boot: VcpuBoot) {
        self.ctx.guest.x = [0; 32];
        self.ctx.guest.x[10] = boot.a0;
        self.ctx.guest.x[11] = boot.a1;
        self.ctx.guest.sepc = boot.pc.raw();
        self.ctx.guest.sstatus |= Sstatus::SPP.bits();
        self.pending = PendingMmio::None;
        let sie = Sstatus::SIE.bits();
        if self.loaded {
            // SAFETY: VS CSRs only affect the guest.
            unsafe {
                csr::clear::<{ num::VSSTATUS }>(sie);
                csr::write::<{ num::VSATP }>(0);
            }
        } else {
            self.vs.vsstatus &= !sie;
            self.vs.vsatp = 0;
        }
    }

    fn decode_mem(&self) -> Result<MemInsn, DecodeError> {
        match decode_htinst(self.ctx.trap.htinst)? {
            Htinst::Insn(i) => Ok(i),
            Htinst::Unknown => {
                let insn = self.fetch_insn().ok_or(DecodeError::Unsupported)?;
                decode_insn(insn)
            }
        }
    }

    /// Reads the trapped instruction from guest memory with the guest's own translation.
    fn fetch_insn(&self) -> Option<u32> {
        let pc = self.ctx.guest.sepc;
        let guest_s = self.ctx.guest.sstatus & Sstatus::SPP.bits() != 0;
        // SAFETY: SPVP only selects the privilege HLV/HLVX use; restored below.
        unsafe {
            if guest_s {
                csr::set::<{ num::HSTATUS }>(Hstatus::SPVP.bits());
            } else {
                csr::clear::<{ num::HSTATUS }>(Hstatus::SPVP.bits());
            }
        }
        let lo = csr::hlvx_hu(pc);
        let hi = match lo {
            Some(l) if l & 3 == 3 => csr::hlvx_hu(pc.wrapping_add(2)),
            _ => Some(0),
        };
        // SAFETY: as above.
        unsafe { csr::clear::<{ num::HSTATUS }>(Hstatus::SPVP.bits()) };
        Some(u32::from(lo?) | (u32::from(hi?) << 16))
    }

    fn decode_exit(&mut self) -> VcpuExit {
        let t = self.ctx.trap;
        if t.scause & regs::CAUSE_INTERRUPT != 0 {
            let code = t.scause & !regs::CAUSE_INTERRUPT;
            return VcpuExit::HostInterrupt(match code {
                regs::interrupt::SUPERVISOR_TIMER => HostInterrupt::Timer,
                regs::interrupt::SUPERVISOR_SOFTWARE => HostInterrupt::Software,
                regs::interrupt::SUPERVISOR_EXTERNAL => HostInterrupt::External,
                c => HostInterrupt::Other(c),
            });
        }
        let x = &self.ctx.guest.x;
        match t.scause {
            exception::ECALL_FROM_VS => VcpuExit::SbiCall {
                eid: x[17],
                fid: x[16],
                args: [x[10], x[11], x[12], x[13], x[14], x[15]],
            },
            exception::LOAD_GUEST_PAGE_FAULT | exception::STORE_GUEST_PAGE_FAULT => {
                let addr = GuestPhysAddr::new((t.htval << 2) | (t.stval & 3));
                let is_load = t.scause == exception::LOAD_GUEST_PAGE_FAULT;
                match (self.decode_mem(), is_load) {
                    (
                        Ok(MemInsn {
                            op: MemOp::Load { rd, signed },
                            width,
                            len,
                        }),
                        true,
                    ) => {
                        self.pending = PendingMmio::Load {
                            rd,
                            width,
                            signed,
                            len,
                        };
                        VcpuExit::MmioRead {
                            addr,
                            width,
                            reg: rd,
                            signed,
                        }
                    }
                    (
                        Ok(MemInsn {
                            op: MemOp::Store { rs2 },
                            width,
                            len,
                        }),
                        false,
                    ) => {
                        self.pending = PendingMmio::Store { len };
                        let value = x[usize::from(rs2 & 31)] & width.mask();
                        VcpuExit::MmioWrite { addr, width, value }
                    }
                    _ => VcpuExit::GuestPageFault {
                        addr,
                        access: if is_load { Access::Load } else { Access::Store },
                    },
                }
            }
            exception::INSTRUCTION_GUEST_PAGE_FAULT => VcpuExit::GuestPageFault {
                addr: GuestPhysAddr::new((t.htval << 2) | (t.stval & 3)),
                access: Access::Fetch,
            },
            exception::VIRTUAL_INSTRUCTION => {
                if t.stval == INSN_WFI {
                    VcpuExit::Wfi
                } else {
                    VcpuExit::VirtualInstruction { insn: t.stval }
                }
            }
            cause => VcpuExit::Unhandled {
                cause,
                tval: t.stval,
                pc: self.ctx.guest.sepc,
            },
        }
    }

    fn advance(&mut self, len: u8) {
        self.ctx.guest.sepc = self.ctx.guest.sepc.wrapping_add(u64::from(len));
    }
}

impl Vcpu for RiscvVcpu {
    fn run(&mut self) -> VcpuExit {
        self.pending = PendingMmio::None;
        // Count guest execution only (HS-mode reads: OpenSBI opens mcounteren).
        let (cycle0, instret0) = (
            csr::read::<{ num::CYCLE }>(),
            csr::read::<{ num::INSTRET }>(),
        );
        // SAFETY: the vCPU is loaded (hgatp confines the guest, see `new`), we are
        // in HS-mode with interrupts masked, and guest.hstatus always has SPV set
        // (set in `reset`, and the exit path only saves what the hardware wrote
        // on a trap from V=1, which has SPV = 1).
        unsafe {
            csr::write::<{ num::HVIP }>(self.hvip);
            enter_guest(&mut self.ctx);
        }
        let (cycle1, instret1) = (
            csr::read::<{ num::CYCLE }>(),
            csr::read::<{ num::INSTRET }>(),
        );
        self.guest_cycles = self.guest_cycles.wrapping_add(cycle1.wrapping_sub(cycle0));
        self.guest_instret = self
            .guest_instret
            .wrapping_add(instret1.wrapping_sub(instret0));
        self.hvip = csr::read::<{ num::HVIP }>();
        self.decode_exit()
    }

    fn complete_sbi(&mut self, error: i64, value: u64) {
        self.ctx.guest.x[10] = error as u64;
        self.ctx.guest.x[11] = value;
        self.advance(4);
    }

    fn complete_mmio_read(&mut self, value: u64) {
        if let PendingMmio::Load {
            rd,
            width,
            signed,
            len,
        } = self.pending
        {
            let v = value & width.mask();
            let v = if signed && width != AccessWidth::Double {
                let shift = 64 - width.bytes() * 8;
                (((v << shift) as i64) >> shift) as u64
            } else {
                v
            };
            if rd != 0 {
                self.ctx.guest.x[usize::from(rd & 31)] = v;
            }
            self.advance(len);
        }
        self.pending = PendingMmio::None;
    }

    fn complete_mmio_write(&mut self) {
        if let PendingMmio::Store { len } = self.pending {
            self.advance(len);
        }
        self.pending = PendingMmio::None;
    }

    fn fault_gva(&self) -> u64 {
        self.ctx.trap.stval
    }

    fn skip_instruction(&mut self) {
        self.advance(4);
    }

    fn inject_exception(&mut self, cause: GuestException, tval: u64) {
        self.pending = PendingMmio::None;
        let g = &mut self.ctx.guest;
        let vsstatus = csr::read::<{ num::VSSTATUS }>();
        let was_s = g.sstatus & Sstatus::SPP.bits() != 0;
        let mut s = vsstatus & !(Sstatus::SPP | Sstatus::SPIE | Sstatus::SIE).bits();
        if was_s {
            s |= Sstatus::SPP.bits();
        }
        if vsstatus & Sstatus::SIE.bits() != 0 {
            s |= Sstatus::SPIE.bits();
        }
        let vstvec = csr::read::<{ num::VSTVEC }>();
        // SAFETY: VS CSRs only affect the guest.
        unsafe {
            csr::write::<{ num::VSEPC }>(g.sepc);
            csr::write::<{ num::VSCAUSE }>(cause.code());
            csr::write::<{ num::VSTVAL }>(tval);
            csr::write::<{ num::VSSTATUS }>(s);
        }
        // The guest's handler runs in VS-mode at vstvec's base (exceptions never vector).
        g.sstatus |= Sstatus::SPP.bits();
        g.sepc = vstvec & !3;
    }

    fn set_interrupt(&mut self, irq: VirtualInterrupt, pending: bool) {
        let bit = 1u64 << irq.hvip_bit();
        if pending {
            self.hvip |= bit;
        } else {
            self.hvip &= !bit;
        }
    }

    fn interrupt_pending(&self) -> bool {
        // hvip bits 2/6/10 appear in vsip at 1/5/9.
        let mut pending = (self.hvip >> 1) & 0x222;
        let (vsie, vstimecmp) = if self.loaded {
            (
                csr::read::<{ num::VSIE }>(),
                if self.features.sstc {
                    csr::read::<{ num::VSTIMECMP }>()
                } else {
                    u64::MAX
                },
            )
        } else {
            (
                self.vs.vsie,
                if self.features.sstc {
                    self.vs.vstimecmp
                } else {
                    u64::MAX
                },
            )
        };
        if self.features.sstc && csr::time().wrapping_add(self.htimedelta) >= vstimecmp {
            pending |= 1 << 5;
        }
        pending & vsie != 0
    }

    fn set_timer(&mut self, deadline: u64) -> Option<u64> {
        if self.features.sstc {
            self.vs.vstimecmp = deadline;
            if self.loaded {
                // SAFETY: vstimecmp only schedules the guest's own timer interrupt.
                unsafe { csr::write::<{ num::VSTIMECMP }>(deadline) };
            }
            None
        } else {
            self.hvip &= !(1 << VirtualInterrupt::Timer.hvip_bit());
            Some(deadline.wrapping_sub(self.htimedelta))
        }
    }

    fn reset(&mut self, boot: VcpuBoot) {
        self.ctx.guest = Default::default();
        self.ctx.guest.x[10] = boot.a0;
        self.ctx.guest.x[11] = boot.a1;
        self.ctx.guest.sepc = boot.pc.raw();
        // Enter in VS-mode (SPP = 1) with the FPU usable at HS level (FS =
        // Initial); the guest's own vsstatus.FS starts Off.
        self.ctx.guest.sstatus = Sstatus::SPP.bits() | regs::fs::INITIAL;
        self.ctx.guest.hstatus =
            (Hstatus::SPV | Hstatus::SPVP | Hstatus::VTW).bits() | regs::HSTATUS_VSXL_64;
        self.vs = VsCsrs {
            vstimecmp: u64::MAX,
            ..Default::default()
        };
        self.fp = FpRegs::default();
        self.hvip = 0;
        self.pending = PendingMmio::None;
        self.fwft_henvcfg = 0;
        self.fwft_locked = 0;
        if self.loaded {
            // Re-load so the live CSRs match the reset state, writing all of
            // them (the hart's record learns `henvcfg` again at `put`).
            self.load(&mut HartCsrs::default(), true, false);
        }
    }

    fn pc(&self) -> u64 {
        self.ctx.guest.sepc
    }
}

fn save_fp(fp: &mut FpRegs) {
    let p = fp as *mut FpRegs;
    // SAFETY: `p` points at 33 writable u64s (FpRegs is repr(C)); HS sstatus.FS
    // is on while the hypervisor runs, so the FP instructions do not trap.
    unsafe {
        asm!(
            "fsd f0, 0*8({p})", "fsd f1, 1*8({p})", "fsd f2, 2*8({p})", "fsd f3, 3*8({p})",
            "fsd f4, 4*8({p})", "fsd f5, 5*8({p})", "fsd f6, 6*8({p})", "fsd f7, 7*8({p})",
            "fsd f8, 8*8({p})", "fsd f9, 9*8({p})", "fsd f10, 10*8({p})", "fsd f11, 11*8({p})",
            "fsd f12, 12*8({p})", "fsd f13, 13*8({p})", "fsd f14, 14*8({p})", "fsd f15, 15*8({p})",
            "fsd f16, 16*8({p})", "fsd f17, 17*8({p})", "fsd f18, 18*8({p})", "fsd f19, 19*8({p})",
            "fsd f20, 20*8({p})", "fsd f21, 21*8({p})", "fsd f22, 22*8({p})", "fsd f23, 23*8({p})",
            "fsd f24, 24*8({p})", "fsd f25, 25*8({p})", "fsd f26, 26*8({p})", "fsd f27, 27*8({p})",
            "fsd f28, 28*8({p})", "fsd f29, 29*8({p})", "fsd f30, 30*8({p})", "fsd f31, 31*8({p})",
            "frcsr {t}", "sd {t}, 32*8({p})",
            p = in(reg) p, t = out(reg) _, options(nostack)
        );
    }
}

fn restore_fp(fp: &FpRegs) {
    let p = fp as *const FpRegs;
    // SAFETY: `p` points at 33 readable u64s; HS sstatus.FS is on (see save_fp).
    unsafe {
        asm!(
            "fld f0, 0*8({p})", "fld f1, 1*8({p})", "fld f2, 2*8({p})", "fld f3, 3*8({p})",
            "fld f4, 4*8({p})", "fld f5, 5*8({p})", "fld f6, 6*8({p})", "fld f7, 7*8({p})",
            "fld f8, 8*8({p})", "fld f9, 9*8({p})", "fld f10, 10*8({p})", "fld f11, 11*8({p})",
            "fld f12, 12*8({p})", "fld f13, 13*8({p})", "fld f14, 14*8({p})", "fld f15, 15*8({p})",
            "fld f16, 16*8({p})", "fld f17, 17*8({p})", "fld f18, 18*8({p})", "fld f19, 19*8({p})",
            "fld f20, 20*8({p})", "fld f21, 21*8({p})", "fld f22, 22*8({p})", "fld f23, 23*8({p})",
            "fld f24, 24*8({p})", "fld f25, 25*8({p})", "fld f26, 26*8({p})", "fld f27, 27*8({p})",
            "fld f28, 28*8({p})", "fld f29, 29*8({p})", "fld f30, 30*8({p})", "fld f31, 31*8({p})",
            "ld {t}, 32*8({p})", "fscsr {t}",
            p = in(reg) p, t = out(reg) _, options(nostack)
        );
    }
}
