//! A virtual PLIC (RISC-V Platform-Level Interrupt Controller Specification
//! v1.0.0, register layout of SiFive's `sifive,plic-1.0.0`).
//!
//! # Design note: the interrupt path
//!
//! ```text
//!  device model ──IrqSink::set_level(src, level)──► InterruptController ──► take_changed()
//!  (UART, ...)         (wire level, any time)        (Plic today,             │
//!                                                     APLIC+IMSIC later)      ▼
//!                                      core: set/clear hvip.VSEIP on that vCPU,
//!                                            kick its hart if it runs elsewhere
//! ```
//!
//! * Devices only know a source number and a level; they never learn which
//!   controller or vCPU handles them. Every [`InterruptController`] takes
//!   levels through [`IrqSink`] and is programmed by the guest through
//!   [`MmioDevice`], so a device, the bus and [`crate::VmDevices`] do not
//!   change when the controller does.
//! * The controller's output is a level per vCPU: "this vCPU's VS-level
//!   external interrupt should be pending" ([`InterruptController::pending_for`]).
//!   The core learns about changes by draining
//!   [`InterruptController::take_changed`] after anything that may move a
//!   line, and only then touches `hvip` (its own hart) or sends an IPI (a hart
//!   running another vCPU of the VM). The controller never calls into the core.
//! * An AIA replacement implements the same trait: an emulated APLIC takes
//!   the same `set_level` calls and, in MSI delivery mode, writes the
//!   interrupt identity into the target vCPU's IMSIC guest interrupt file; the
//!   hardware then raises VSEIP by itself, so that controller reports
//!   `pending_for = false` and no changes, and the core needs no new path.
//!
//! # This PLIC
//!
//! * Sources `1..=ndev` (`riscv,ndev` in the guest device tree); source 0 does
//!   not exist. Contexts `0..contexts`; context `i` is vCPU `i`'s S-mode (in
//!   the guest: VS-mode) external interrupt, the numbering
//!   `fv_platform::build_guest_fdt` writes into `interrupts-extended`. (QEMU's
//!   `2 * hart + 1` S-context numbering exists because real harts also have an
//!   M-mode context; guests have none.)
//! * Priorities and thresholds are WARL with [`MAX_PRIORITY`] + 1 levels
//!   (3 bits, as QEMU's `virt` PLIC).
//! * A context's external interrupt is asserted when some source is pending,
//!   enabled for that context, and has a priority above the context's
//!   threshold.
//! * **Claim** (read of the claim/complete register) returns the
//!   highest-priority source that is pending and enabled for the context, ties
//!   broken by the lowest ID, and clears its pending bit; sources with
//!   priority 0 ("never interrupt") are never returned; 0 when there is none.
//!   As the spec says, the threshold does not affect claims (a hart may set its
//!   threshold to the maximum and poll by claiming).
//! * **Gateways.** After a claim the source's gateway forwards nothing more
//!   until a **completion** (write of the source ID to the claim/complete
//!   register). A completion is ignored unless the ID names a source that is
//!   enabled for the completing context and has been claimed. Level-triggered
//!   sources (the default) become pending on assertion and again on completion
//!   if still asserted; deasserting does not withdraw a request already
//!   pending (spec: "the gateway does not have the facility to retract an
//!   interrupt request"). Edge-triggered sources ([`Plic::set_trigger`]) become
//!   pending on a rising edge; one rising edge while the source is claimed is
//!   remembered and made pending on completion, further ones are merged.
//! * Registers are 32 bits wide: any access that is not a naturally aligned
//!   32-bit access, or that hits a reserved offset, reads 0 and is ignored.
//!   Pending bits are read-only.

#[cfg(test)]
mod tests;

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use crate::{access_ok, AccessWidth, DeviceCtx, InterruptController, IrqSink, MmioDevice};

/// Offset of source 0's priority register; source `n` is at `4 * n`.
pub const PRIORITY_BASE: u64 = 0x0;
/// Offset of the pending bit array (32 sources per word).
pub const PENDING_BASE: u64 = 0x1000;
/// Offset of context 0's enable bit array.
pub const ENABLE_BASE: u64 = 0x2000;
/// Distance between two contexts' enable arrays.
pub const ENABLE_STRIDE: u64 = 0x80;
/// Offset of context 0's threshold register.
pub const CONTEXT_BASE: u64 = 0x20_0000;
/// Distance between two contexts' threshold/claim pages.
pub const CONTEXT_STRIDE: u64 = 0x1000;
/// Offset of the threshold register within a context's page.
pub const CONTEXT_THRESHOLD: u64 = 0x0;
/// Offset of the claim/complete register within a context's page.
pub const CONTEXT_CLAIM: u64 = 0x4;
/// Largest number of sources (IDs `1..=1023`).
pub const MAX_SOURCES: u32 = 1023;
/// Largest number of contexts.
pub const MAX_CONTEXTS: u32 = 15872;
/// Highest priority (and threshold) value; the registers keep the low 3 bits.
pub const MAX_PRIORITY: u32 = 7;

/// Bytes of pending (or one context's enable) bits for the largest PLIC.
const BITS_BLOCK_SIZE: u64 = 0x80;

/// Size of the register block of a PLIC with `contexts` contexts: up to the
/// end of the last context's threshold/claim page.
pub const fn plic_size(contexts: u32) -> u64 {
    CONTEXT_BASE + contexts as u64 * CONTEXT_STRIDE
}

/// Why a PLIC could not be built or configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlicError {
    /// The number of sources is 0 or above [`MAX_SOURCES`].
    BadSourceCount,
    /// The number of contexts is 0 or above [`MAX_CONTEXTS`].
    BadContextCount,
    /// A source number is 0 or above the PLIC's `ndev`.
    BadSource,
}

impl fmt::Display for PlicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PlicError::BadSourceCount => "PLIC source count must be 1..=1023",
            PlicError::BadContextCount => "PLIC context count must be 1..=15872",
            PlicError::BadSource => "no such PLIC source",
        })
    }
}

/// How a source's gateway turns its wire into requests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Trigger {
    /// Level-sensitive (the default; what 16550s and virtio-mmio use).
    #[default]
    Level,
    /// Rising-edge-sensitive.
    Edge,
}

/// What an offset in the register block names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reg {
    Priority(u32),
    Pending(usize),
    Enable { ctx: u32, word: usize },
    Threshold(u32),
    Claim(u32),
    Reserved,
}

/// A virtual PLIC. See the [module documentation](self).
#[derive(Clone, Debug)]
pub struct Plic {
    ndev: u32,
    contexts: u32,
    /// 32-bit words per bit array: `(ndev + 1).div_ceil(32)`.
    words: usize,
    /// Per source (index 0 unused, always 0).
    priority: Vec<u32>,
    /// Bits of the sources that exist (bit 0 of word 0 clear).
    valid: Vec<u32>,
    /// IP bits.
    pending: Vec<u32>,
    /// Claimed and not yet completed: the gateway holds further requests.
    in_service: Vec<u32>,
    /// Current wire level.
    line: Vec<u32>,
    /// Edge-triggered sources.
    edge: Vec<u32>,
    /// Edge-triggered sources that saw a rising edge while in service.
    edge_latched: Vec<u32>,
    /// `contexts * words` enable words, context-major.
    enable: Vec<u32>,
    /// Per context.
    threshold: Vec<u32>,
    /// Per-context EIP bits (bitmap over contexts).
    eip: Vec<u32>,
    /// Per-context level last returned by `take_changed`.
    reported: Vec<u32>,
}

fn word_bit(n: u32) -> (usize, u32) {
    ((n / 32) as usize, 1u32 << (n % 32))
}

fn get_bit(bits: &[u32], n: u32) -> bool {
    let (w, b) = word_bit(n);
    bits.get(w).is_some_and(|word| word & b != 0)
}

fn put_bit(bits: &mut [u32], n: u32, on: bool) {
    let (w, b) = word_bit(n);
    if let Some(word) = bits.get_mut(w) {
        if on {
            *word |= b;
        } else {
            *word &= !b;
        }
    }
}

impl Plic {
    /// A PLIC with sources `1..=ndev` and `contexts` contexts (one per vCPU),
    /// everything disabled, every source level-triggered.
    pub fn new(ndev: u32, contexts: u32) -> Result<Self, PlicError> {
        if ndev == 0 || ndev > MAX_SOURCES {
            return Err(PlicError::BadSourceCount);
        }
        if contexts == 0 || contexts > MAX_CONTEXTS {
            return Err(PlicError::BadContextCount);
        }
        let words = (ndev as usize + 1).div_ceil(32);
        let ctx_words = (contexts as usize).div_ceil(32);
        let mut valid = vec![0u32; words];
        for src in 1..=ndev {
            put_bit(&mut valid, src, true);
        }
        Ok(Self {
            ndev,
            contexts,
            words,
            priority: vec![0; ndev as usize + 1],
            valid,
            pending: vec![0; words],
            in_service: vec![0; words],
            line: vec![0; words],
            edge: vec![0; words],
            edge_latched: vec![0; words],
            enable: vec![0; words * contexts as usize],
            threshold: vec![0; contexts as usize],
            eip: vec![0; ctx_words],
            reported: vec![0; ctx_words],
        })
    }

    /// Number of sources (`riscv,ndev`).
    pub fn ndev(&self) -> u32 {
        self.ndev
    }

    /// Number of contexts (= vCPUs).
    pub fn contexts(&self) -> u32 {
        self.contexts
    }

    /// Sets how source `src`'s gateway samples its wire (host configuration,
    /// matching how the device behind it signals).
    pub fn set_trigger(&mut self, src: u32, trigger: Trigger) -> Result<(), PlicError> {
        if src == 0 || src > self.ndev {
            return Err(PlicError::BadSource);
        }
        put_bit(&mut self.edge, src, trigger == Trigger::Edge);
        put_bit(&mut self.edge_latched, src, false);
        Ok(())
    }

    /// Whether context `ctx`'s external interrupt (its EIP bit) is asserted.
    pub fn context_irq(&self, ctx: u32) -> bool {
        get_bit(&self.eip, ctx)
    }

    fn valid_source(&self, src: u32) -> bool {
        src != 0 && src <= self.ndev
    }

    fn priority_of(&self, src: u32) -> u32 {
        self.priority.get(src as usize).copied().unwrap_or(0)
    }

    fn enable_words(&self, ctx: u32) -> &[u32] {
        let start = (ctx as usize).saturating_mul(self.words);
        self.enable
            .get(start..start.saturating_add(self.words))
            .unwrap_or_default()
    }

    fn enabled(&self, ctx: u32, src: u32) -> bool {
        ctx < self.contexts && get_bit(self.enable_words(ctx), src)
    }

    /// Calls `f(src)` for each source pending and enabled for `ctx`, in ID order.
    fn for_each_candidate(&self, ctx: u32, mut f: impl FnMut(u32) -> bool) {
        for (w, (&p, &e)) in self.pending.iter().zip(self.enable_words(ctx)).enumerate() {
            let mut cand = p & e;
            while cand != 0 {
                let src = w as u32 * 32 + cand.trailing_zeros();
                if !f(src) {
                    return;
                }
                cand &= cand - 1;
            }
        }
    }

    /// Whether `ctx` should see its external interrupt.
    fn compute_eip(&self, ctx: u32) -> bool {
        let threshold = self
            .threshold
            .get(ctx as usize)
            .copied()
            .unwrap_or(u32::MAX);
        let mut fire = false;
        self.for_each_candidate(ctx, |src| {
            fire = self.priority_of(src) > threshold;
            !fire
        });
        fire
    }

    /// The source a claim by `ctx` would return (0: none).
    fn best(&self, ctx: u32) -> u32 {
        let (mut best, mut best_prio) = (0, 0);
        self.for_each_candidate(ctx, |src| {
            let prio = self.priority_of(src);
            if prio > best_prio {
                best = src;
                best_prio = prio;
            }
            best_prio < MAX_PRIORITY
        });
        best
    }

    fn update_ctx(&mut self, ctx: u32) {
        let fire = self.compute_eip(ctx);
        put_bit(&mut self.eip, ctx, fire);
    }

    fn update_all(&mut self) {
        for ctx in 0..self.contexts {
            self.update_ctx(ctx);
        }
    }

    fn claim(&mut self, ctx: u32) -> u32 {
        let src = self.best(ctx);
        if src != 0 {
            put_bit(&mut self.pending, src, false);
            put_bit(&mut self.in_service, src, true);
            self.update_all();
        }
        src
    }

    fn complete(&mut self, ctx: u32, src: u32) {
        if !self.valid_source(src) || !self.enabled(ctx, src) || !get_bit(&self.in_service, src) {
            return;
        }
        put_bit(&mut self.in_service, src, false);
        let again = if get_bit(&self.edge, src) {
            let latched = get_bit(&self.edge_latched, src);
            put_bit(&mut self.edge_latched, src, false);
            latched
        } else {
            get_bit(&self.line, src)
        };
        if again {
            put_bit(&mut self.pending, src, true);
            self.update_all();
        }
    }

    fn decode(&self, offset: u64) -> Reg {
        if offset < PENDING_BASE {
            let src = u32::try_from((offset - PRIORITY_BASE) / 4).unwrap_or(0);
            if self.valid_source(src) {
                return Reg::Priority(src);
            }
        } else if offset < PENDING_BASE + BITS_BLOCK_SIZE {
            let word = ((offset - PENDING_BASE) / 4) as usize;
            if word < self.words {
                return Reg::Pending(word);
            }
        } else if (ENABLE_BASE..ENABLE_BASE + ENABLE_STRIDE * MAX_CONTEXTS as u64).contains(&offset)
        {
            let rel = offset - ENABLE_BASE;
            let ctx = (rel / ENABLE_STRIDE) as u32;
            let word = ((rel % ENABLE_STRIDE) / 4) as usize;
            if ctx < self.contexts && word < self.words {
                return Reg::Enable { ctx, word };
            }
        } else if offset >= CONTEXT_BASE {
            let rel = offset - CONTEXT_BASE;
            if let Ok(ctx) = u32::try_from(rel / CONTEXT_STRIDE) {
                if ctx < self.contexts {
                    match rel % CONTEXT_STRIDE {
                        CONTEXT_THRESHOLD => return Reg::Threshold(ctx),
                        CONTEXT_CLAIM => return Reg::Claim(ctx),
                        _ => {}
                    }
                }
            }
        }
        Reg::Reserved
    }

    fn register_ok(&self, offset: u64, width: AccessWidth) -> bool {
        width == AccessWidth::Word && access_ok(offset, width, self.size())
    }
}

impl MmioDevice for Plic {
    fn size(&self) -> u64 {
        plic_size(self.contexts)
    }

    fn read(&mut self, offset: u64, width: AccessWidth, _ctx: &mut DeviceCtx<'_>) -> u64 {
        if !self.register_ok(offset, width) {
            return 0;
        }
        let value = match self.decode(offset) {
            Reg::Priority(src) => self.priority_of(src),
            Reg::Pending(word) => self.pending.get(word).copied().unwrap_or(0),
            Reg::Enable { ctx, word } => self.enable_words(ctx).get(word).copied().unwrap_or(0),
            Reg::Threshold(ctx) => self.threshold.get(ctx as usize).copied().unwrap_or(0),
            Reg::Claim(ctx) => self.claim(ctx),
            Reg::Reserved => 0,
        };
        u64::from(value)
    }

    fn write(&mut self, offset: u64, width: AccessWidth, value: u64, _ctx: &mut DeviceCtx<'_>) {
        if !self.register_ok(offset, width) {
            return;
        }
        let v32 = (value & 0xffff_ffff) as u32;
        match self.decode(offset) {
            Reg::Priority(src) => {
                if let Some(p) = self.priority.get_mut(src as usize) {
                    *p = v32 & MAX_PRIORITY;
                }
                self.update_all();
            }
            Reg::Enable { ctx, word } => {
                let mask = self.valid.get(word).copied().unwrap_or(0);
                let index = (ctx as usize)
                    .saturating_mul(self.words)
                    .saturating_add(word);
                if let Some(e) = self.enable.get_mut(index) {
                    *e = v32 & mask;
                }
                self.update_ctx(ctx);
            }
            Reg::Threshold(ctx) => {
                if let Some(t) = self.threshold.get_mut(ctx as usize) {
                    *t = v32 & MAX_PRIORITY;
                }
                self.update_ctx(ctx);
            }
            Reg::Claim(ctx) => self.complete(ctx, v32),
            Reg::Pending(_) | Reg::Reserved => {}
        }
    }

    /// Clears everything the guest programs and every request in flight.
    /// Trigger modes (host configuration) and wire levels (the devices' state)
    /// stay; an asserted level-triggered wire is pending again at once.
    fn reset(&mut self, _ctx: &mut DeviceCtx<'_>) {
        self.priority.fill(0);
        self.enable.fill(0);
        self.threshold.fill(0);
        self.in_service.fill(0);
        self.edge_latched.fill(0);
        for ((p, &l), &e) in self.pending.iter_mut().zip(&self.line).zip(&self.edge) {
            *p = l & !e;
        }
        self.update_all();
    }
}

impl IrqSink for Plic {
    /// Sets the wire level of source `irq` (ignored for 0 and above `ndev`).
    fn set_level(&mut self, irq: u32, level: bool) {
        if !self.valid_source(irq) {
            return;
        }
        let was = get_bit(&self.line, irq);
        put_bit(&mut self.line, irq, level);
        if !level || get_bit(&self.pending, irq) {
            return;
        }
        let in_service = get_bit(&self.in_service, irq);
        if get_bit(&self.edge, irq) {
            if was {
                return;
            }
            if in_service {
                put_bit(&mut self.edge_latched, irq, true);
                return;
            }
        } else if in_service {
            return;
        }
        put_bit(&mut self.pending, irq, true);
        self.update_all();
    }
}

impl InterruptController for Plic {
    fn num_sources(&self) -> u32 {
        self.ndev
    }

    fn pending_for(&self, vcpu: u32) -> bool {
        self.context_irq(vcpu)
    }

    fn take_changed(&mut self) -> Option<(u32, bool)> {
        for (w, (e, r)) in self.eip.iter().zip(self.reported.iter_mut()).enumerate() {
            let diff = *e ^ *r;
            if diff != 0 {
                let bit = diff.trailing_zeros();
                *r ^= 1 << bit;
                let ctx = w as u32 * 32 + bit;
                return Some((ctx, *e & (1 << bit) != 0));
            }
        }
        None
    }
}
