//! The PMU extension through `handle`: firmware events are counted on the
//! right vCPU, and random call sequences never panic, answer with spec error
//! codes, reject counter sets outside `0..NUM_COUNTERS`, and never let a
//! started counter go backwards.
#![allow(clippy::panic, clippy::unwrap_used)]

mod common;

use common::MockVm;
use fv_guest_sbi::pmu::{COUNTER_CYCLE, COUNTER_INSTRET, NUM_COUNTERS};
use fv_guest_sbi::{FwEvent, PmuRaw, SbiError, VcpuPmu};
use proptest::prelude::*;

const PMU: u64 = 0x0050_4D55;
const IPI: u64 = 0x0073_5049;
const RFENCE: u64 = 0x5246_4E43;
const TIME: u64 = 0x5449_4D45;
const FW: u64 = 0xf << 16;
const AUTO_START: u64 = 4;

#[test]
fn firmware_events_are_counted_per_vcpu() {
    let mut vm = MockVm::new(3);
    vm.current = 1;
    // IPI_SENT on a firmware counter, started.
    let r = vm.ret(PMU, 2, [3, 0x1ff, AUTO_START, FW | 6, 0, 0]);
    assert_eq!((r.error, r.value), (0, 3));
    // IPI to vCPUs 0 and 2: two sent by 1, one received by each target.
    assert_eq!(vm.ret(IPI, 0, [0b101, 0, 0, 0, 0, 0]).error, 0);
    assert_eq!(vm.ret(RFENCE, 0, [0b1, 0, 0, 0, 0, 0]).error, 0);
    assert_eq!(vm.ret(TIME, 0, [100, 0, 0, 0, 0, 0]).error, 0);
    assert_eq!(vm.ret(0, 0, [100, 0, 0, 0, 0, 0]).error, 0);
    let fw = |v: usize, e: FwEvent| vm.fw_events[v][e.index()];
    assert_eq!(fw(1, FwEvent::IpiSent), 2);
    assert_eq!(fw(0, FwEvent::IpiReceived), 1);
    assert_eq!(fw(2, FwEvent::IpiReceived), 1);
    assert_eq!(fw(1, FwEvent::IpiReceived), 0);
    assert_eq!(fw(1, FwEvent::FenceISent), 1);
    assert_eq!(fw(0, FwEvent::FenceIReceived), 1);
    assert_eq!(fw(1, FwEvent::SetTimer), 2);
    let r = vm.ret(PMU, 5, [3, 0, 0, 0, 0, 0]);
    assert_eq!((r.error, r.value), (0, 2));
    // A failed IPI (bad mask) counts nothing.
    assert_eq!(vm.ret(IPI, 0, [0b1000, 0, 0, 0, 0, 0]).error, -3);
    assert_eq!(vm.ret(PMU, 5, [3, 0, 0, 0, 0, 0]).value, 2);
}

#[test]
fn probe_and_num_counters() {
    let mut vm = MockVm::new(1);
    assert_eq!(vm.ret(0x10, 3, [PMU, 0, 0, 0, 0, 0]).value, 1);
    let r = vm.ret(PMU, 0, [0; 6]);
    assert_eq!((r.error, r.value), (0, NUM_COUNTERS as u64));
}

/// One random PMU call.
fn call() -> impl Strategy<Value = (u64, [u64; 6])> {
    let small = prop_oneof![0u64..16, Just(u64::MAX), any::<u64>()];
    let mask = prop_oneof![0u64..0x1000, Just(u64::MAX), any::<u64>()];
    let flags = prop_oneof![0u64..0x100, any::<u64>()];
    let event = prop_oneof![
        Just(1u64),
        Just(2u64),
        (0u64..24).prop_map(|c| FW | c),
        0u64..0x40000,
        any::<u64>()
    ];
    (
        prop_oneof![8 => 0u64..9, 1 => any::<u64>()],
        small.clone(),
        mask,
        flags,
        event,
        prop_oneof![Just(0u64), any::<u64>()],
    )
        .prop_map(|(fid, a0, a1, a2, a3, a4)| (fid, [a0, a1, a2, a3, a4, 0]))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn random_sequences_keep_the_rules(
        calls in proptest::collection::vec((call(), 0u64..1000, 0u64..1000, 0usize..9), 1..40),
    ) {
        let mut pmu = VcpuPmu::new();
        let mut raw = PmuRaw::default();
        for ((fid, args), dc, di, fw) in calls {
            let before: Vec<_> = (0..NUM_COUNTERS).map(|i| pmu.counter_value(i, &raw)).collect();
            let was_started: Vec<bool> = (0..NUM_COUNTERS)
                .map(|i| {
                    // Started iff the value follows the totals: probe with a larger total.
                    let mut more = raw;
                    more.cycles += 1;
                    more.instructions += 1;
                    more.fw.iter_mut().for_each(|f| *f += 1);
                    pmu.counter_value(i, &more) != pmu.counter_value(i, &raw)
                })
                .collect();
            // Time passes; totals only grow.
            raw.cycles += dc;
            raw.instructions += di;
            raw.fw[fw] += 1;
            for i in 0..NUM_COUNTERS {
                if was_started[i] {
                    prop_assert!(pmu.counter_value(i, &raw) >= before[i], "counter {} went back", i);
                }
            }
            let result = pmu.call(fid, args, &raw);
            if let Err(e) = result {
                prop_assert!(SbiError::ALL.contains(&e));
            }
            // Counter sets outside 0..NUM_COUNTERS are rejected.
            let (base, mask) = (args[0], args[1]);
            let outside = mask == 0
                || (0..64).any(|b| mask & (1 << b) != 0
                    && base.checked_add(b).is_none_or(|i| i >= NUM_COUNTERS as u64 || i == 1));
            if (2..=4).contains(&fid) && outside {
                prop_assert_eq!(result, Err(SbiError::InvalidParam));
            }
            if fid == 2 {
                if let Ok(idx) = result {
                    prop_assert!(idx < NUM_COUNTERS as u64 && idx != 1);
                }
            }
        }
        // Only cycle and instret are readable as CSRs.
        prop_assert!(pmu.read_csr(0xC00, &raw) == pmu.counter_value(COUNTER_CYCLE, &raw));
        prop_assert!(pmu.read_csr(0xC02, &raw) == pmu.counter_value(COUNTER_INSTRET, &raw));
        prop_assert!(pmu.read_csr(0xC01, &raw).is_none());
    }
}
