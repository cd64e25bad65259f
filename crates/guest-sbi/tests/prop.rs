//! Random calls never panic (the mock also panics on any breach of the
//! `SbiEnv` contract), always answer with a spec error code, and never do
//! anything when they fail.
// Test code: a panic is how a test fails.
#![allow(clippy::panic, clippy::unwrap_used)]

mod common;

use common::{MockVm, RAM_BASE, RAM_END};
use fv_guest_sbi::{HartState, SbiError, SbiOutcome, EXTENSIONS};
use proptest::prelude::*;

const HSM: u64 = 0x0048_534D;
const SRST: u64 = 0x5352_5354;

fn eid() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => proptest::sample::select(EXTENSIONS.to_vec()),
        1 => 0u64..=0x0F,
        1 => any::<u64>(),
    ]
}

fn fid() -> impl Strategy<Value = u64> {
    prop_oneof![4 => 0u64..8, 1 => any::<u64>()]
}

fn arg() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..80,
        Just(u64::MAX),
        Just(u64::MAX - 1),
        Just(0x8000_0000u64),
        RAM_BASE - 8..RAM_END + 8,
        Just(0xffff_ffff_ffff_f000u64),
        any::<u64>(),
    ]
}

fn state() -> impl Strategy<Value = HartState> {
    (0u64..7).prop_map(|id| HartState::from_id(id).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn random_calls_are_answered_per_spec(
        eid in eid(),
        fid in fid(),
        args in proptest::array::uniform6(arg()),
        count in 1usize..=70,
        states in proptest::collection::vec(state(), 70),
        current in 0usize..70,
        input in proptest::collection::vec(any::<u8>(), 0..4),
    ) {
        let mut vm = MockVm::new(count);
        vm.states.copy_from_slice(&states[..count]);
        vm.current = current % count;
        vm.input.extend(input);

        match vm.call(eid, fid, args) {
            SbiOutcome::Return(r) if eid <= 0x0F => {
                // Legacy: a0 only; a1 handed back unchanged.
                prop_assert_eq!(r.value, args[1]);
                prop_assert!(r.error == 0 || r.error == -1 || r.error == -2
                    || (eid == 0x02 && (0..=255).contains(&r.error)),
                    "legacy a0 {}", r.error);
            }
            SbiOutcome::Return(r) => {
                if r.error != 0 {
                    prop_assert!(SbiError::from_code(r.error).is_some(), "error {}", r.error);
                    prop_assert_eq!(r.value, 0);
                    prop_assert!(vm.events.is_empty(), "failed call did work: {:?}", vm.events);
                }
            }
            SbiOutcome::StopSelf => {
                prop_assert_eq!((eid, fid), (HSM, 1));
                prop_assert!(vm.events.is_empty());
            }
            SbiOutcome::Suspend(_) => {
                prop_assert_eq!((eid, fid), (HSM, 3));
                prop_assert!(vm.events.is_empty());
            }
            SbiOutcome::SystemReset { kind, reason } => {
                prop_assert_eq!((eid, fid), (SRST, 0));
                prop_assert_eq!(u64::from(kind.raw()), args[0] & 0xffff_ffff);
                prop_assert_eq!(u64::from(reason.raw()), args[1] & 0xffff_ffff);
            }
        }
    }

    #[test]
    fn hart_mask_targets_exactly_the_named_harts(
        mask in any::<u64>(),
        base in prop_oneof![0u64..80, Just(u64::MAX), any::<u64>()],
        count in 1usize..=100,
    ) {
        let mut vm = MockVm::new(count);
        let r = vm.ret(0x0073_5049, 0, [mask, base, 0, 0, 0, 0]);
        let named: Vec<u128> = if base == u64::MAX {
            (0..count as u128).collect()
        } else {
            (0..64).filter(|b| mask >> b & 1 == 1).map(|b| u128::from(base) + b).collect()
        };
        let all_valid = named.iter().all(|&h| h < count as u128);
        if all_valid {
            prop_assert_eq!(r.error, 0);
            let sent: Vec<u128> = vm.events.iter().map(|e| match e {
                common::Event::Ipi(v) => *v as u128,
                other => panic!("unexpected {other:?}"),
            }).collect();
            prop_assert_eq!(sent, named);
        } else {
            prop_assert_eq!(r.error, SbiError::InvalidParam.code());
            prop_assert!(vm.events.is_empty());
        }
    }
}
