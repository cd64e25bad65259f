use super::*;
use crate::NullSink;
use std::vec::Vec;

fn rd(p: &mut Plic, off: u64) -> u32 {
    let mut sink = NullSink;
    p.read(off, AccessWidth::Word, &mut DeviceCtx::new(&mut sink, 0, 0)) as u32
}

fn wr(p: &mut Plic, off: u64, v: u32) {
    let mut sink = NullSink;
    p.write(
        off,
        AccessWidth::Word,
        u64::from(v),
        &mut DeviceCtx::new(&mut sink, 0, 0),
    );
}

fn prio(src: u32) -> u64 {
    PRIORITY_BASE + 4 * u64::from(src)
}
fn pending_word(w: u32) -> u64 {
    PENDING_BASE + 4 * u64::from(w)
}
fn enable_word(ctx: u32, w: u32) -> u64 {
    ENABLE_BASE + ENABLE_STRIDE * u64::from(ctx) + 4 * u64::from(w)
}
fn threshold(ctx: u32) -> u64 {
    CONTEXT_BASE + CONTEXT_STRIDE * u64::from(ctx) + CONTEXT_THRESHOLD
}
fn claim_reg(ctx: u32) -> u64 {
    CONTEXT_BASE + CONTEXT_STRIDE * u64::from(ctx) + CONTEXT_CLAIM
}

fn enable(p: &mut Plic, ctx: u32, src: u32) {
    let off = enable_word(ctx, src / 32);
    let v = rd(p, off) | 1 << (src % 32);
    wr(p, off, v);
}

fn disable(p: &mut Plic, ctx: u32, src: u32) {
    let off = enable_word(ctx, src / 32);
    let v = rd(p, off) & !(1 << (src % 32));
    wr(p, off, v);
}

fn claim(p: &mut Plic, ctx: u32) -> u32 {
    rd(p, claim_reg(ctx))
}

fn complete(p: &mut Plic, ctx: u32, src: u32) {
    wr(p, claim_reg(ctx), src);
}

fn drain(p: &mut Plic) -> Vec<(u32, bool)> {
    core::iter::from_fn(|| p.take_changed()).collect()
}

#[test]
fn layout_matches_spec() {
    assert_eq!(PRIORITY_BASE, 0x0);
    assert_eq!(PENDING_BASE, 0x1000);
    assert_eq!(ENABLE_BASE, 0x2000);
    assert_eq!(ENABLE_STRIDE, 0x80);
    assert_eq!(CONTEXT_BASE, 0x20_0000);
    assert_eq!(CONTEXT_STRIDE, 0x1000);
    assert_eq!(CONTEXT_THRESHOLD, 0x0);
    assert_eq!(CONTEXT_CLAIM, 0x4);
    assert_eq!(MAX_SOURCES, 1023);
    assert_eq!(MAX_CONTEXTS, 15872);
    assert_eq!(prio(1023), 0xffc);
    assert_eq!(pending_word(31), 0x107c);
    assert_eq!(enable_word(1, 0), 0x2080);
    assert_eq!(enable_word(2, 31), 0x217c);
    assert_eq!(enable_word(15871, 0), 0x1f_1f80);
    assert_eq!(enable_word(15871, 31), 0x1f_1ffc);
    assert_eq!(threshold(15871), 0x3ff_f000);
    assert_eq!(claim_reg(15871), 0x3ff_f004);
    assert_eq!(plic_size(1), 0x20_1000);
    assert_eq!(plic_size(MAX_CONTEXTS), 0x400_0000);
    assert_eq!(MAX_PRIORITY, 7);
}

#[test]
fn largest_plic_reaches_the_spec_addresses() {
    let mut p = Plic::new(MAX_SOURCES, MAX_CONTEXTS).unwrap();
    assert_eq!(p.size(), 0x400_0000);
    wr(&mut p, 0xffc, 5);
    assert_eq!(rd(&mut p, 0xffc), 5);
    wr(&mut p, 0x1f_1ffc, u32::MAX);
    assert_eq!(rd(&mut p, 0x1f_1ffc), u32::MAX, "sources 992..=1023 exist");
    wr(&mut p, 0x1f_1f80, u32::MAX);
    assert_eq!(
        rd(&mut p, 0x1f_1f80),
        u32::MAX - 1,
        "source 0 bit hardwired"
    );
    wr(&mut p, 0x3ff_f000, 3);
    assert_eq!(rd(&mut p, 0x3ff_f000), 3);
    p.set_level(1023, true);
    assert_eq!(rd(&mut p, 0x107c), 1 << 31);
    assert!(p.context_irq(15871));
    assert_eq!(rd(&mut p, 0x3ff_f004), 1023);
    // 0x1f2000..0x200000 is reserved.
    wr(&mut p, 0x1f_2000, u32::MAX);
    assert_eq!(rd(&mut p, 0x1f_2000), 0);
    assert_eq!(rd(&mut p, 0x1f_fffc), 0);
}

#[test]
fn construction_limits() {
    assert_eq!(Plic::new(0, 1).unwrap_err(), PlicError::BadSourceCount);
    assert_eq!(Plic::new(1024, 1).unwrap_err(), PlicError::BadSourceCount);
    assert_eq!(Plic::new(1, 0).unwrap_err(), PlicError::BadContextCount);
    assert_eq!(Plic::new(1, 15873).unwrap_err(), PlicError::BadContextCount);
    let mut p = Plic::new(31, 2).unwrap();
    assert_eq!((p.ndev(), p.contexts(), p.num_sources()), (31, 2, 31));
    assert_eq!(p.size(), 0x20_2000);
    assert_eq!(p.set_trigger(0, Trigger::Edge), Err(PlicError::BadSource));
    assert_eq!(p.set_trigger(32, Trigger::Edge), Err(PlicError::BadSource));
    assert_eq!(p.set_trigger(31, Trigger::Edge), Ok(()));
}

#[test]
fn priority_registers_are_warl_3_bits_and_source_0_does_not_exist() {
    let mut p = Plic::new(40, 1).unwrap();
    wr(&mut p, prio(0), 7);
    assert_eq!(rd(&mut p, prio(0)), 0);
    for (v, expect) in [(1, 1), (7, 7), (8, 0), (0xffff_ffff, 7), (0x13, 3)] {
        wr(&mut p, prio(40), v);
        assert_eq!(rd(&mut p, prio(40)), expect);
    }
    wr(&mut p, prio(41), 7);
    assert_eq!(rd(&mut p, prio(41)), 0, "no source 41");
    wr(&mut p, threshold(0), 0xffff_fff9);
    assert_eq!(rd(&mut p, threshold(0)), 1);
}

#[test]
fn pending_bits_are_read_only_and_packed_32_per_word() {
    let mut p = Plic::new(40, 1).unwrap();
    p.set_level(1, true);
    p.set_level(31, true);
    p.set_level(32, true);
    p.set_level(40, true);
    p.set_level(0, true);
    p.set_level(41, true);
    p.set_level(u32::MAX, true);
    assert_eq!(rd(&mut p, pending_word(0)), 1 << 1 | 1 << 31);
    assert_eq!(rd(&mut p, pending_word(1)), 1 << 0 | 1 << 8);
    assert_eq!(rd(&mut p, pending_word(2)), 0, "past ndev");
    wr(&mut p, pending_word(0), 0);
    wr(&mut p, pending_word(1), u32::MAX);
    assert_eq!(rd(&mut p, pending_word(0)), 1 << 1 | 1 << 31);
    assert_eq!(rd(&mut p, pending_word(1)), 1 << 0 | 1 << 8);
}

#[test]
fn enable_bits_hardwire_nonexistent_sources_to_zero() {
    let mut p = Plic::new(40, 3).unwrap();
    wr(&mut p, enable_word(1, 0), u32::MAX);
    wr(&mut p, enable_word(1, 1), u32::MAX);
    assert_eq!(rd(&mut p, enable_word(1, 0)), 0xffff_fffe);
    assert_eq!(rd(&mut p, enable_word(1, 1)), 0x1ff, "sources 32..=40");
    assert_eq!(rd(&mut p, enable_word(1, 2)), 0);
    assert_eq!(rd(&mut p, enable_word(0, 0)), 0, "contexts are independent");
    assert_eq!(rd(&mut p, enable_word(2, 0)), 0);
    wr(&mut p, enable_word(3, 0), u32::MAX);
    assert_eq!(rd(&mut p, enable_word(3, 0)), 0, "no context 3");
}

#[test]
fn claim_returns_highest_priority_then_lowest_id() {
    let mut p = Plic::new(64, 1).unwrap();
    for (src, pr) in [(3, 2), (5, 6), (9, 6), (40, 7), (41, 1), (50, 0)] {
        wr(&mut p, prio(src), pr);
        enable(&mut p, 0, src);
        p.set_level(src, true);
    }
    assert!(p.context_irq(0));
    assert_eq!(claim(&mut p, 0), 40);
    assert_eq!(rd(&mut p, pending_word(1)) & 1 << 8, 0, "claim cleared IP");
    assert_eq!(claim(&mut p, 0), 5, "tie between 5 and 9: lowest ID");
    assert_eq!(claim(&mut p, 0), 9);
    assert_eq!(claim(&mut p, 0), 3);
    assert_eq!(claim(&mut p, 0), 41);
    assert!(
        !p.context_irq(0),
        "source 50 has priority 0: never interrupts"
    );
    assert_eq!(claim(&mut p, 0), 0, "priority 0 is never claimed");
    assert_ne!(rd(&mut p, pending_word(1)) & 1 << 18, 0, "50 stays pending");
    // Raising its priority makes it claimable.
    wr(&mut p, prio(50), 1);
    assert!(p.context_irq(0));
    assert_eq!(claim(&mut p, 0), 50);
    assert_eq!(claim(&mut p, 0), 0);
}

#[test]
fn threshold_masks_notification_but_not_claim() {
    let mut p = Plic::new(8, 1).unwrap();
    wr(&mut p, prio(2), 3);
    enable(&mut p, 0, 2);
    p.set_level(2, true);
    assert!(p.context_irq(0));
    wr(&mut p, threshold(0), 3);
    assert!(!p.context_irq(0), "priority must exceed the threshold");
    wr(&mut p, threshold(0), 2);
    assert!(p.context_irq(0));
    wr(&mut p, threshold(0), 7);
    assert!(!p.context_irq(0));
    // Polling by claim works at the maximum threshold (spec, Claim Process).
    assert_eq!(claim(&mut p, 0), 2);
}

#[test]
fn enables_are_per_context_and_multicast() {
    let mut p = Plic::new(16, 2).unwrap();
    wr(&mut p, prio(7), 1);
    enable(&mut p, 1, 7);
    p.set_level(7, true);
    assert!(!p.context_irq(0));
    assert!(p.context_irq(1));
    assert_eq!(claim(&mut p, 0), 0, "not enabled for context 0");
    enable(&mut p, 0, 7);
    assert!(p.context_irq(0) && p.context_irq(1), "multicast");
    assert_eq!(claim(&mut p, 0), 7);
    assert!(!p.context_irq(0) && !p.context_irq(1));
    assert_eq!(claim(&mut p, 1), 0, "the other target lost the race");
    // Disabling on one context hides it there only.
    complete(&mut p, 0, 7); // line still high: pending again
    disable(&mut p, 0, 7);
    assert!(!p.context_irq(0) && p.context_irq(1));
}

#[test]
fn level_source_reasserts_after_complete_while_high() {
    let mut p = Plic::new(16, 1).unwrap();
    wr(&mut p, prio(10), 1);
    enable(&mut p, 0, 10);
    p.set_level(10, true);
    assert_eq!(claim(&mut p, 0), 10);
    // In service: the gateway forwards nothing, whatever the wire does.
    p.set_level(10, false);
    p.set_level(10, true);
    assert!(!p.context_irq(0));
    assert_eq!(rd(&mut p, pending_word(0)), 0);
    complete(&mut p, 0, 10);
    assert!(p.context_irq(0), "still asserted at completion");
    assert_eq!(claim(&mut p, 0), 10);
    p.set_level(10, false);
    complete(&mut p, 0, 10);
    assert!(!p.context_irq(0), "deasserted at completion");
    assert_eq!(rd(&mut p, pending_word(0)), 0);
    // A request already forwarded stays pending when the wire drops (spec).
    p.set_level(10, true);
    p.set_level(10, false);
    assert!(p.context_irq(0));
    assert_eq!(claim(&mut p, 0), 10);
    complete(&mut p, 0, 10);
    assert!(!p.context_irq(0));
}

#[test]
fn completion_is_ignored_unless_enabled_and_claimed() {
    let mut p = Plic::new(16, 2).unwrap();
    wr(&mut p, prio(4), 1);
    enable(&mut p, 0, 4);
    p.set_level(4, true);
    assert_eq!(claim(&mut p, 0), 4);
    // Context 1 does not have source 4 enabled: ignored.
    complete(&mut p, 1, 4);
    assert!(!p.context_irq(0));
    // Bogus IDs: ignored.
    for id in [0, 17, u32::MAX] {
        complete(&mut p, 0, id);
    }
    let mut sink = NullSink;
    p.write(
        claim_reg(0),
        AccessWidth::Word,
        1 << 32 | 4,
        &mut DeviceCtx::new(&mut sink, 0, 0),
    );
    assert!(p.context_irq(0), "a 32-bit register sees only the low word");
    assert_eq!(claim(&mut p, 0), 4);
    // Linux's plic_irq_eoi for a disabled irq: enable, complete, disable.
    disable(&mut p, 0, 4);
    complete(&mut p, 0, 4);
    assert_eq!(rd(&mut p, pending_word(0)), 0, "ignored while disabled");
    enable(&mut p, 0, 4);
    complete(&mut p, 0, 4);
    disable(&mut p, 0, 4);
    assert_eq!(rd(&mut p, pending_word(0)), 1 << 4, "completed: re-pended");
    // Completing a source that is not in service does nothing.
    enable(&mut p, 0, 4);
    complete(&mut p, 0, 4);
    assert_eq!(claim(&mut p, 0), 4);
    complete(&mut p, 0, 4);
    complete(&mut p, 0, 4);
    assert_eq!(claim(&mut p, 0), 4, "one claim per completion");
}

#[test]
fn edge_triggered_sources() {
    let mut p = Plic::new(8, 1).unwrap();
    p.set_trigger(3, Trigger::Edge).unwrap();
    wr(&mut p, prio(3), 1);
    enable(&mut p, 0, 3);
    p.set_level(3, true);
    assert_eq!(claim(&mut p, 0), 3);
    complete(&mut p, 0, 3);
    assert!(!p.context_irq(0), "a held level is one edge");
    // Edges while in service: remembered once.
    assert_eq!(claim(&mut p, 0), 0);
    p.set_level(3, false);
    p.set_level(3, true);
    assert_eq!(claim(&mut p, 0), 3);
    p.set_level(3, false);
    p.set_level(3, true);
    p.set_level(3, false);
    p.set_level(3, true);
    assert!(!p.context_irq(0));
    complete(&mut p, 0, 3);
    assert!(p.context_irq(0));
    assert_eq!(claim(&mut p, 0), 3);
    complete(&mut p, 0, 3);
    assert_eq!(claim(&mut p, 0), 0, "merged edges give one request");
    // An edge stays pending after the wire drops.
    p.set_level(3, false);
    p.set_level(3, true);
    p.set_level(3, false);
    assert!(p.context_irq(0));
    // Switching back to level: a low wire gives no new request on completion.
    p.set_trigger(3, Trigger::Level).unwrap();
    assert_eq!(claim(&mut p, 0), 3);
    complete(&mut p, 0, 3);
    assert!(!p.context_irq(0));
}

#[test]
fn take_changed_reports_each_context_edge_once() {
    let mut p = Plic::new(8, 40).unwrap();
    assert_eq!(p.take_changed(), None);
    wr(&mut p, prio(1), 1);
    enable(&mut p, 35, 1);
    enable(&mut p, 2, 1);
    p.set_level(1, true);
    assert_eq!(drain(&mut p), [(2, true), (35, true)]);
    assert!(p.pending_for(2) && p.pending_for(35) && !p.pending_for(0));
    assert!(!p.pending_for(40) && !p.pending_for(u32::MAX));
    // A change and its undo before anyone looks: nothing to report.
    wr(&mut p, threshold(2), 7);
    wr(&mut p, threshold(2), 0);
    assert_eq!(p.take_changed(), None);
    assert_eq!(claim(&mut p, 35), 1);
    assert_eq!(drain(&mut p), [(2, false), (35, false)]);
    complete(&mut p, 35, 1);
    assert_eq!(drain(&mut p), [(2, true), (35, true)]);
}

#[test]
fn only_aligned_word_accesses_reach_registers() {
    let mut p = Plic::new(8, 1).unwrap();
    let mut sink = NullSink;
    let mut ctx = DeviceCtx::new(&mut sink, 0, 0);
    for w in [AccessWidth::Byte, AccessWidth::Half, AccessWidth::Double] {
        p.write(prio(1), w, 7, &mut ctx);
    }
    p.write(prio(1) + 2, AccessWidth::Word, 7, &mut ctx);
    assert_eq!(rd(&mut p, prio(1)), 0);
    wr(&mut p, prio(1), 1);
    enable(&mut p, 0, 1);
    p.set_level(1, true);
    // Neither a wide nor a narrow read of the claim register claims.
    assert_eq!(p.read(CONTEXT_BASE, AccessWidth::Double, &mut ctx), 0);
    assert_eq!(p.read(claim_reg(0), AccessWidth::Byte, &mut ctx), 0);
    assert_eq!(p.read(claim_reg(0) + 1, AccessWidth::Word, &mut ctx), 0);
    assert!(p.context_irq(0));
    // Reserved words of a context page, and past the end.
    assert_eq!(p.read(CONTEXT_BASE + 8, AccessWidth::Word, &mut ctx), 0);
    assert_eq!(p.read(plic_size(1), AccessWidth::Word, &mut ctx), 0);
    assert_eq!(p.read(u64::MAX - 3, AccessWidth::Word, &mut ctx), 0);
    p.write(u64::MAX - 3, AccessWidth::Word, 1, &mut ctx);
    assert_eq!(p.read(claim_reg(0), AccessWidth::Word, &mut ctx), 1);
}

/// What Linux's `irq-sifive-plic.c` does: per-context threshold 0 and
/// enables, priority 1 to unmask / 0 to mask, claim in the handler, complete
/// in `irq_eoi`.
#[test]
fn linux_plic_driver_flow() {
    let (uart, virtio) = (10, 8);
    let mut p = Plic::new(95, 2).unwrap();
    for ctx in 0..2 {
        wr(&mut p, threshold(ctx), 0);
        for w in 0..3 {
            wr(&mut p, enable_word(ctx, w), 0);
        }
    }
    for src in 1..=95 {
        wr(&mut p, prio(src), 1);
    }
    enable(&mut p, 0, uart);
    enable(&mut p, 1, virtio);
    p.set_level(uart, true);
    p.set_level(virtio, true);
    assert_eq!(drain(&mut p), [(0, true), (1, true)]);
    // Hart 0's handler.
    assert_eq!(claim(&mut p, 0), uart);
    p.set_level(uart, false); // the driver serviced the device
    assert_eq!(claim(&mut p, 0), 0);
    complete(&mut p, 0, uart);
    // Hart 1's handler: mask (priority 0) while the line is still high.
    assert_eq!(claim(&mut p, 1), virtio);
    wr(&mut p, prio(virtio), 0);
    complete(&mut p, 1, virtio);
    assert!(!p.context_irq(1), "masked by priority 0");
    wr(&mut p, prio(virtio), 1);
    assert!(p.context_irq(1), "unmasked: the request waited");
    assert_eq!(drain(&mut p), [(0, false)]);
}

#[test]
fn reset_clears_guest_state_but_keeps_wires_and_triggers() {
    let mut p = Plic::new(8, 1).unwrap();
    p.set_trigger(2, Trigger::Edge).unwrap();
    wr(&mut p, prio(1), 5);
    wr(&mut p, prio(2), 5);
    wr(&mut p, threshold(0), 1);
    enable(&mut p, 0, 1);
    enable(&mut p, 0, 2);
    p.set_level(1, true);
    p.set_level(2, true);
    assert_eq!(claim(&mut p, 0), 1);
    assert!(p.context_irq(0));
    assert_eq!(drain(&mut p), [(0, true)]);
    let mut sink = NullSink;
    p.reset(&mut DeviceCtx::new(&mut sink, 0, 0));
    assert!(!p.context_irq(0));
    assert_eq!(drain(&mut p), [(0, false)]);
    assert_eq!(rd(&mut p, prio(1)), 0);
    assert_eq!(rd(&mut p, threshold(0)), 0);
    assert_eq!(rd(&mut p, enable_word(0, 0)), 0);
    assert_eq!(
        rd(&mut p, pending_word(0)),
        1 << 1,
        "asserted level source pending again; edge source needs a new edge"
    );
    wr(&mut p, prio(1), 1);
    enable(&mut p, 0, 1);
    assert_eq!(claim(&mut p, 0), 1, "no stale in-service state");
}
