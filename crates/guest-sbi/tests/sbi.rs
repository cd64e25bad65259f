//! Every function and every error path of `handle`, against a recording mock VM.
// Test code: a panic is how a test fails.
#![allow(clippy::panic, clippy::unwrap_used)]

mod common;

use common::{Event, MockVm, RAM_BASE, RAM_END};
use fv_addr::GuestPhysAddr;
use fv_guest_sbi::{
    probe_extension, ConsoleError, Fence, FwftFeature, FwftSetError, HartState, HsmError,
    ResetKind, ResetReason, SbiError, SbiOutcome, SbiRet, SuspendType, DBCN_MAX_CHUNK, EXTENSIONS,
};

// Extension IDs as the spec writes them (not taken from the crate).
const BASE: u64 = 0x10;
const TIME: u64 = 0x5449_4D45;
const IPI: u64 = 0x0073_5049;
const RFENCE: u64 = 0x5246_4E43;
const HSM: u64 = 0x0048_534D;
const SRST: u64 = 0x5352_5354;
const DBCN: u64 = 0x4442_434E;
const PMU: u64 = 0x0050_4D55;
const SUSP: u64 = 0x5355_5350;
const FWFT: u64 = 0x4657_4654;
const DBTR: u64 = 0x4442_5452;
const CPPC: u64 = 0x4350_5043;
const NACL: u64 = 0x4E41_434C;
const STA: u64 = 0x0053_5441;

const ALL_HARTS: u64 = u64::MAX;

fn err(e: SbiError) -> SbiRet {
    SbiRet::err(e)
}

fn ok(v: u64) -> SbiRet {
    SbiRet::success(v)
}

fn a(args: &[u64]) -> [u64; 6] {
    let mut r = [0; 6];
    r[..args.len()].copy_from_slice(args);
    r
}

// ---------------------------------------------------------------- BASE

#[test]
fn base_spec_version_is_2_0() {
    let mut vm = MockVm::new(1);
    assert_eq!(vm.ret(BASE, 0, a(&[])), ok(0x0200_0000));
}

#[test]
fn base_ids_come_from_the_vm() {
    let mut vm = MockVm::new(1);
    assert_eq!(vm.ret(BASE, 1, a(&[])), ok(0xF0F0));
    assert_eq!(vm.ret(BASE, 2, a(&[])), ok(0x0001_0002));
    assert_eq!(vm.ret(BASE, 4, a(&[])), ok(0x11));
    assert_eq!(vm.ret(BASE, 5, a(&[])), ok(0x22));
    assert_eq!(vm.ret(BASE, 6, a(&[])), ok(0x33));
    assert!(vm.events.is_empty());
}

#[test]
fn probe_reports_exactly_the_supported_extensions() {
    let mut vm = MockVm::new(1);
    for eid in [
        0x00, 0x01, 0x02, BASE, TIME, IPI, RFENCE, HSM, SRST, DBCN, SUSP, FWFT, PMU,
    ] {
        assert_eq!(vm.ret(BASE, 3, a(&[eid])), ok(1), "eid {eid:#x}");
        assert!(EXTENSIONS.contains(&eid));
    }
    assert_eq!(EXTENSIONS.len(), 13);
    let unsupported = [
        0x03,
        0x04,
        0x05,
        0x06,
        0x07,
        0x08,
        0x09,
        0x0F,
        DBTR,
        CPPC,
        NACL,
        STA,
        0x0900_0000, // vendor range
        0x0A00_0000, // firmware range
        0x1_0000_0010,
        BASE | 1 << 63,
        u64::MAX,
    ];
    for eid in unsupported {
        assert_eq!(vm.ret(BASE, 3, a(&[eid])), ok(0), "eid {eid:#x}");
        assert_eq!(probe_extension(eid), 0);
    }
}

#[test]
fn base_unknown_function_is_not_supported() {
    let mut vm = MockVm::new(1);
    for fid in [7, 8, 0x1_0000_0000, u64::MAX] {
        assert_eq!(vm.ret(BASE, fid, a(&[])), err(SbiError::NotSupported));
    }
}

// ---------------------------------------------------------------- TIME

#[test]
fn time_set_timer() {
    let mut vm = MockVm::new(1);
    assert_eq!(vm.ret(TIME, 0, a(&[0x1234_5678_9abc])), ok(0));
    assert_eq!(vm.ret(TIME, 0, a(&[u64::MAX])), ok(0));
    assert_eq!(
        vm.events,
        [Event::SetTimer(0x1234_5678_9abc), Event::SetTimer(u64::MAX)]
    );
}

#[test]
fn time_unknown_function_does_nothing() {
    let mut vm = MockVm::new(1);
    assert_eq!(vm.ret(TIME, 1, a(&[5])), err(SbiError::NotSupported));
    assert!(vm.events.is_empty());
}

// ---------------------------------------------------------------- IPI

#[test]
fn ipi_mask_bits_are_relative_to_base() {
    let mut vm = MockVm::new(8);
    assert_eq!(vm.ret(IPI, 0, a(&[0b1001, 3])), ok(0));
    assert_eq!(vm.events, [Event::Ipi(3), Event::Ipi(6)]);
}

#[test]
fn ipi_base_minus_one_targets_everyone_including_the_caller() {
    let mut vm = MockVm::new(3);
    vm.current = 1;
    assert_eq!(vm.ret(IPI, 0, a(&[0, ALL_HARTS])), ok(0));
    assert_eq!(vm.events, [Event::Ipi(0), Event::Ipi(1), Event::Ipi(2)]);
}

#[test]
fn ipi_invalid_hart_sends_nothing_at_all() {
    let mut vm = MockVm::new(4);
    // Harts 0..3 are valid; bit 4 names hart 4, which is not: nobody gets one.
    assert_eq!(
        vm.ret(IPI, 0, a(&[0b1_1111, 0])),
        err(SbiError::InvalidParam)
    );
    assert_eq!(vm.ret(IPI, 0, a(&[0b1, 4])), err(SbiError::InvalidParam));
    assert_eq!(
        vm.ret(IPI, 0, a(&[0b1, 1 << 40])),
        err(SbiError::InvalidParam)
    );
    assert!(vm.events.is_empty());
}

#[test]
fn ipi_base_plus_bit_overflow_is_invalid() {
    let mut vm = MockVm::new(4);
    // (u64::MAX - 1) + 2 would wrap to hart 0.
    assert_eq!(
        vm.ret(IPI, 0, a(&[0b100, u64::MAX - 1])),
        err(SbiError::InvalidParam)
    );
    assert_eq!(
        vm.ret(IPI, 0, a(&[1 << 63, 1 << 63])),
        err(SbiError::InvalidParam)
    );
    assert!(vm.events.is_empty());
}

#[test]
fn ipi_zero_mask_is_a_successful_no_op() {
    let mut vm = MockVm::new(2);
    assert_eq!(vm.ret(IPI, 0, a(&[0, 0])), ok(0));
    assert_eq!(vm.ret(IPI, 0, a(&[0, 99])), ok(0));
    assert!(vm.events.is_empty());
}

#[test]
fn ipi_sixty_four_vcpus() {
    let mut vm = MockVm::new(64);
    assert_eq!(vm.ret(IPI, 0, a(&[u64::MAX, 0])), ok(0));
    assert_eq!(vm.events, (0..64).map(Event::Ipi).collect::<Vec<_>>());
    vm.events.clear();
    assert_eq!(
        vm.ret(IPI, 0, a(&[u64::MAX, 1])),
        err(SbiError::InvalidParam)
    );
    assert_eq!(
        vm.ret(IPI, 0, a(&[1 << 63, 1])),
        err(SbiError::InvalidParam)
    );
    assert!(vm.events.is_empty());
    assert_eq!(vm.ret(IPI, 0, a(&[1 << 63, 0])), ok(0));
    assert_eq!(vm.events, [Event::Ipi(63)]);
}

#[test]
fn ipi_more_vcpus_than_mask_bits_needs_a_base() {
    let mut vm = MockVm::new(100);
    assert_eq!(vm.ret(IPI, 0, a(&[1 | 1 << 35, 64])), ok(0));
    assert_eq!(vm.events, [Event::Ipi(64), Event::Ipi(99)]);
    vm.events.clear();
    assert_eq!(
        vm.ret(IPI, 0, a(&[1 << 36, 64])),
        err(SbiError::InvalidParam)
    );
    assert!(vm.events.is_empty());
    assert_eq!(vm.ret(IPI, 0, a(&[0, ALL_HARTS])), ok(0));
    assert_eq!(vm.events.len(), 100);
}

#[test]
fn ipi_unknown_function() {
    let mut vm = MockVm::new(2);
    assert_eq!(vm.ret(IPI, 1, a(&[1, 0])), err(SbiError::NotSupported));
    assert!(vm.events.is_empty());
}

// ---------------------------------------------------------------- RFENCE

#[test]
fn rfence_fence_i() {
    let mut vm = MockVm::new(4);
    assert_eq!(vm.ret(RFENCE, 0, a(&[0b110, 0])), ok(0));
    assert_eq!(
        vm.events,
        [Event::Fence(1, Fence::I), Event::Fence(2, Fence::I)]
    );
}

/// A remote fence is complete when the call returns: the core is asked to
/// wait once, after every target's request, and never for a rejected call.
#[test]
fn rfence_waits_for_targets_once_after_all_requests() {
    let mut vm = MockVm::new(4);
    assert_eq!(vm.ret(RFENCE, 1, a(&[0b1011, 0, 0, 0])), ok(0));
    assert_eq!(vm.fence_waits, [3]);
    // A bad hart mask is refused before anything is requested.
    assert_ne!(vm.ret(RFENCE, 1, a(&[0b1, 9, 0, 0])).error, 0);
    assert_eq!(vm.fence_waits, [3]);
}

#[test]
fn rfence_sfence_vma_range() {
    let mut vm = MockVm::new(2);
    assert_eq!(
        vm.ret(RFENCE, 1, a(&[0, ALL_HARTS, 0x4000_0000, 0x2000])),
        ok(0)
    );
    let f = Fence::Vma {
        start: 0x4000_0000,
        size: 0x2000,
    };
    assert_eq!(vm.events, [Event::Fence(0, f), Event::Fence(1, f)]);
    assert!(!f.covers_all());
}

#[test]
fn rfence_whole_address_space_encodings_are_normalised() {
    let mut vm = MockVm::new(1);
    assert_eq!(vm.ret(RFENCE, 1, a(&[1, 0, 0, 0])), ok(0));
    assert_eq!(vm.ret(RFENCE, 1, a(&[1, 0, 0xdead_0000, u64::MAX])), ok(0));
    assert_eq!(vm.ret(RFENCE, 2, a(&[1, 0, 0, 0, 7])), ok(0));
    let all = Fence::Vma {
        start: 0,
        size: u64::MAX,
    };
    let all_asid = Fence::VmaAsid {
        start: 0,
        size: u64::MAX,
        asid: 7,
    };
    assert_eq!(
        vm.events,
        [
            Event::Fence(0, all),
            Event::Fence(0, all),
            Event::Fence(0, all_asid)
        ]
    );
    assert!(all.covers_all() && all_asid.covers_all() && !Fence::I.covers_all());
}

#[test]
fn rfence_sfence_vma_asid() {
    let mut vm = MockVm::new(3);
    assert_eq!(
        vm.ret(RFENCE, 2, a(&[0b100, 0, 0x1000, 0x1000, 0x42])),
        ok(0)
    );
    assert_eq!(
        vm.events,
        [Event::Fence(
            2,
            Fence::VmaAsid {
                start: 0x1000,
                size: 0x1000,
                asid: 0x42
            }
        )]
    );
}

#[test]
fn rfence_range_may_end_exactly_at_the_top() {
    let mut vm = MockVm::new(1);
    assert_eq!(
        vm.ret(RFENCE, 1, a(&[1, 0, 0xffff_ffff_ffff_f000, 0x1000])),
        ok(0)
    );
    assert_eq!(vm.events.len(), 1);
}

#[test]
fn rfence_wrapping_range_is_invalid_address_and_does_nothing() {
    let mut vm = MockVm::new(2);
    for fid in [1, 2] {
        assert_eq!(
            vm.ret(RFENCE, fid, a(&[0b11, 0, 0xffff_ffff_ffff_f000, 0x1001, 1])),
            err(SbiError::InvalidAddress)
        );
        assert_eq!(
            vm.ret(RFENCE, fid, a(&[0b11, 0, u64::MAX, 2, 1])),
            err(SbiError::InvalidAddress)
        );
    }
    assert!(vm.events.is_empty());
}

#[test]
fn rfence_empty_range_is_a_successful_no_op() {
    let mut vm = MockVm::new(2);
    assert_eq!(vm.ret(RFENCE, 1, a(&[0b11, 0, 0x1000, 0])), ok(0));
    assert_eq!(vm.ret(RFENCE, 2, a(&[0b11, 0, 0x1000, 0, 3])), ok(0));
    assert!(vm.events.is_empty());
}

#[test]
fn rfence_invalid_mask_fences_nobody() {
    let mut vm = MockVm::new(2);
    assert_eq!(
        vm.ret(RFENCE, 0, a(&[0b111, 0])),
        err(SbiError::InvalidParam)
    );
    assert_eq!(
        vm.ret(RFENCE, 1, a(&[0b111, 0, 0, 0])),
        err(SbiError::InvalidParam)
    );
    assert_eq!(
        vm.ret(RFENCE, 2, a(&[0b10, u64::MAX - 1, 0, 0, 1])),
        err(SbiError::InvalidParam)
    );
    // Both the mask and the range are bad: the hart list is checked first.
    assert_eq!(
        vm.ret(RFENCE, 1, a(&[0b111, 0, u64::MAX, 2])),
        err(SbiError::InvalidParam)
    );
    assert!(vm.events.is_empty());
}

#[test]
fn rfence_hfence_and_unknown_are_not_supported() {
    let mut vm = MockVm::new(2);
    for fid in 3..=6 {
        assert_eq!(
            vm.ret(RFENCE, fid, a(&[1, 0, 0, 0, 1])),
            err(SbiError::NotSupported)
        );
    }
    assert_eq!(vm.ret(RFENCE, 7, a(&[1, 0])), err(SbiError::NotSupported));
    assert!(vm.events.is_empty());
}

// ---------------------------------------------------------------- HSM

#[test]
fn hsm_hart_start() {
    let mut vm = MockVm::new(2);
    assert_eq!(vm.ret(HSM, 0, a(&[1, RAM_BASE + 0x20_0000, 0xabcd])), ok(0));
    assert_eq!(
        vm.events,
        [Event::StartVcpu {
            vcpu: 1,
            start_addr: RAM_BASE + 0x20_0000,
            opaque: 0xabcd
        }]
    );
    assert_eq!(vm.states[1], HartState::StartPending);
}

#[test]
fn hsm_hart_start_invalid_hartid() {
    let mut vm = MockVm::new(2);
    for hartid in [2, 64, 1 << 32, u64::MAX] {
        assert_eq!(
            vm.ret(HSM, 0, a(&[hartid, RAM_BASE, 0])),
            err(SbiError::InvalidParam)
        );
    }
    // Invalid hart id wins over an invalid address.
    assert_eq!(vm.ret(HSM, 0, a(&[2, 0, 0])), err(SbiError::InvalidParam));
    assert!(vm.events.is_empty());
}

#[test]
fn hsm_hart_start_of_a_non_stopped_hart_is_already_available() {
    let mut vm = MockVm::new(2);
    for state in [
        HartState::Started,
        HartState::StartPending,
        HartState::StopPending,
        HartState::Suspended,
        HartState::SuspendPending,
        HartState::ResumePending,
    ] {
        vm.states[1] = state;
        assert_eq!(
            vm.ret(HSM, 0, a(&[1, RAM_BASE, 0])),
            err(SbiError::AlreadyAvailable),
            "{state:?}"
        );
        // The state is checked before the address.
        assert_eq!(
            vm.ret(HSM, 0, a(&[1, 0, 0])),
            err(SbiError::AlreadyAvailable)
        );
    }
    // The caller itself.
    assert_eq!(
        vm.ret(HSM, 0, a(&[0, RAM_BASE, 0])),
        err(SbiError::AlreadyAvailable)
    );
    assert!(vm.events.is_empty());
}

#[test]
fn hsm_hart_start_address_must_be_guest_ram() {
    let mut vm = MockVm::new(2);
    for addr in [
        0,
        0x1000_0000,
        RAM_BASE - 2,
        RAM_END - 1,
        RAM_END,
        u64::MAX - 1,
        u64::MAX,
    ] {
        assert_eq!(
            vm.ret(HSM, 0, a(&[1, addr, 0])),
            err(SbiError::InvalidAddress),
            "{addr:#x}"
        );
    }
    assert!(vm.events.is_empty());
    assert_eq!(vm.states[1], HartState::Stopped);
    // The last two bytes of RAM still hold a compressed instruction.
    assert_eq!(vm.ret(HSM, 0, a(&[1, RAM_END - 2, 0])), ok(0));
}

#[test]
fn hsm_hart_start_lost_race_is_already_available() {
    let mut vm = MockVm::new(2);
    vm.start_error = Some(HsmError::IllegalTransition {
        from: HartState::StartPending,
        to: HartState::StartPending,
    });
    assert_eq!(
        vm.ret(HSM, 0, a(&[1, RAM_BASE, 0])),
        err(SbiError::AlreadyAvailable)
    );
    vm.start_error = Some(HsmError::InvalidVcpu);
    assert_eq!(vm.ret(HSM, 0, a(&[1, RAM_BASE, 0])), err(SbiError::Failed));
}

#[test]
fn hsm_hart_stop_stops_only_the_caller() {
    let mut vm = MockVm::new(2);
    assert_eq!(vm.call(HSM, 1, a(&[1, 2, 3])), SbiOutcome::StopSelf);
    assert!(vm.events.is_empty());
}

#[test]
fn hsm_hart_stop_from_a_confused_core_fails() {
    let mut vm = MockVm::new(2);
    vm.current = 1; // STOPPED, yet running: the core's bookkeeping is off.
    assert_eq!(vm.ret(HSM, 1, a(&[])), err(SbiError::Failed));
    vm.current = 7; // not even a vCPU
    assert_eq!(vm.ret(HSM, 1, a(&[])), err(SbiError::Failed));
}

#[test]
fn hsm_hart_get_status_reports_each_state_id() {
    let mut vm = MockVm::new(2);
    for (state, id) in [
        (HartState::Started, 0),
        (HartState::Stopped, 1),
        (HartState::StartPending, 2),
        (HartState::StopPending, 3),
        (HartState::Suspended, 4),
        (HartState::SuspendPending, 5),
        (HartState::ResumePending, 6),
    ] {
        vm.states[1] = state;
        assert_eq!(vm.ret(HSM, 2, a(&[1])), ok(id));
    }
    assert_eq!(vm.ret(HSM, 2, a(&[0])), ok(0));
}

#[test]
fn hsm_hart_get_status_invalid_hartid() {
    let mut vm = MockVm::new(2);
    for hartid in [2, 1 << 40, u64::MAX] {
        assert_eq!(vm.ret(HSM, 2, a(&[hartid])), err(SbiError::InvalidParam));
    }
}

#[test]
fn hsm_suspend_retentive_ignores_resume_addr() {
    let mut vm = MockVm::new(1);
    assert_eq!(
        vm.call(HSM, 3, a(&[0, 0, 0])),
        SbiOutcome::Suspend(SuspendType::Retentive)
    );
    assert_eq!(
        vm.call(HSM, 3, a(&[0, u64::MAX, 5])),
        SbiOutcome::Suspend(SuspendType::Retentive)
    );
    assert!(vm.events.is_empty());
}

#[test]
fn hsm_suspend_non_retentive() {
    let mut vm = MockVm::new(1);
    assert_eq!(
        vm.call(HSM, 3, a(&[0x8000_0000, RAM_BASE + 0x100, 0x77])),
        SbiOutcome::Suspend(SuspendType::NonRetentive {
            resume_addr: GuestPhysAddr::new(RAM_BASE + 0x100),
            opaque: 0x77
        })
    );
}

#[test]
fn hsm_suspend_non_retentive_bad_resume_addr() {
    let mut vm = MockVm::new(1);
    for addr in [0, RAM_END - 1, RAM_END, u64::MAX] {
        assert_eq!(
            vm.ret(HSM, 3, a(&[0x8000_0000, addr, 0])),
            err(SbiError::InvalidAddress)
        );
    }
}

#[test]
fn hsm_suspend_reserved_types_are_invalid_param() {
    let mut vm = MockVm::new(1);
    for t in [
        0x0000_0001u64, // reserved
        0x0FFF_FFFF,
        0x8000_0001, // reserved
        0x8FFF_FFFF,
    ] {
        assert_eq!(
            vm.ret(HSM, 3, a(&[t, RAM_BASE, 0])),
            err(SbiError::InvalidParam),
            "{t:#x}"
        );
    }
    assert!(vm.events.is_empty());
}

#[test]
fn hsm_suspend_platform_types_behave_as_the_default_ones() {
    let mut vm = MockVm::new(1);
    for t in [0x1000_0000u64, 0x4000_0000, 0x7FFF_FFFF] {
        assert_eq!(
            vm.call(HSM, 3, a(&[t, 0, 0])),
            SbiOutcome::Suspend(SuspendType::Retentive),
            "{t:#x}"
        );
    }
    for t in [0x9000_0000u64, 0xC000_0000, 0xFFFF_FFFF] {
        assert_eq!(
            vm.call(HSM, 3, a(&[t, RAM_BASE + 0x40, 9])),
            SbiOutcome::Suspend(SuspendType::NonRetentive {
                resume_addr: GuestPhysAddr::new(RAM_BASE + 0x40),
                opaque: 9
            }),
            "{t:#x}"
        );
        assert_eq!(
            vm.ret(HSM, 3, a(&[t, RAM_END, 9])),
            err(SbiError::InvalidAddress),
            "{t:#x}"
        );
    }
    assert!(vm.events.is_empty());
}

#[test]
fn hsm_suspend_type_uses_only_the_low_32_bits() {
    let mut vm = MockVm::new(1);
    assert_eq!(
        vm.call(HSM, 3, a(&[0xffff_ffff_0000_0000, 0, 0])),
        SbiOutcome::Suspend(SuspendType::Retentive)
    );
    assert_eq!(
        vm.ret(HSM, 3, a(&[0x1_0000_0001, 0, 0])),
        err(SbiError::InvalidParam)
    );
    assert_eq!(
        vm.ret(HSM, 3, a(&[0xffff_ffff_8000_0000, RAM_END, 0])),
        err(SbiError::InvalidAddress)
    );
}

#[test]
fn hsm_suspend_from_a_confused_core_fails() {
    let mut vm = MockVm::new(2);
    vm.current = 1;
    assert_eq!(vm.ret(HSM, 3, a(&[0, 0, 0])), err(SbiError::Failed));
}

#[test]
fn hsm_unknown_function() {
    let mut vm = MockVm::new(2);
    for fid in [4, 5, u64::MAX] {
        assert_eq!(
            vm.ret(HSM, fid, a(&[1, RAM_BASE, 0])),
            err(SbiError::NotSupported)
        );
    }
    assert!(vm.events.is_empty());
}

// ---------------------------------------------------------------- SUSP

#[test]
fn susp_suspend_to_ram_with_every_other_vcpu_stopped() {
    let mut vm = MockVm::new(3);
    assert_eq!(
        vm.call(SUSP, 0, a(&[0, RAM_BASE + 0x200, 0x55])),
        SbiOutcome::Suspend(SuspendType::NonRetentive {
            resume_addr: GuestPhysAddr::new(RAM_BASE + 0x200),
            opaque: 0x55
        })
    );
    // sleep_type is 32 bits wide.
    assert!(matches!(
        vm.call(SUSP, 0, a(&[0xffff_ffff_0000_0000, RAM_BASE, 0])),
        SbiOutcome::Suspend(SuspendType::NonRetentive { .. })
    ));
    assert!(vm.events.is_empty());
}

#[test]
fn susp_denied_unless_every_other_vcpu_is_stopped() {
    for other in [
        HartState::Started,
        HartState::StartPending,
        HartState::StopPending,
        HartState::Suspended,
        HartState::SuspendPending,
        HartState::ResumePending,
    ] {
        let mut vm = MockVm::new(4);
        vm.current = 2;
        vm.states[0] = HartState::Stopped;
        vm.states[2] = HartState::Started;
        vm.states[3] = other;
        assert_eq!(
            vm.ret(SUSP, 0, a(&[0, RAM_BASE, 0])),
            err(SbiError::Denied),
            "{other:?}"
        );
        vm.states[3] = HartState::Stopped;
        assert!(matches!(
            vm.call(SUSP, 0, a(&[0, RAM_BASE, 0])),
            SbiOutcome::Suspend(_)
        ));
    }
}

#[test]
fn susp_reserved_and_platform_sleep_types_are_invalid_param() {
    let mut vm = MockVm::new(2);
    // Checked before the address and before the other harts' states.
    vm.states[1] = HartState::Started;
    for t in [1u64, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF] {
        assert_eq!(
            vm.ret(SUSP, 0, a(&[t, 0, 0])),
            err(SbiError::InvalidParam),
            "{t:#x}"
        );
    }
}

#[test]
fn susp_bad_resume_addr_is_invalid_address() {
    let mut vm = MockVm::new(2);
    vm.states[1] = HartState::Started;
    for addr in [0, RAM_BASE - 2, RAM_END - 1, u64::MAX] {
        assert_eq!(
            vm.ret(SUSP, 0, a(&[0, addr, 0])),
            err(SbiError::InvalidAddress),
            "{addr:#x}"
        );
    }
}

#[test]
fn susp_from_a_confused_core_fails_and_unknown_function() {
    let mut vm = MockVm::new(2);
    vm.current = 1;
    assert_eq!(vm.ret(SUSP, 0, a(&[0, RAM_BASE, 0])), err(SbiError::Failed));
    for fid in [1, u64::MAX] {
        assert_eq!(
            vm.ret(SUSP, fid, a(&[0, RAM_BASE, 0])),
            err(SbiError::NotSupported)
        );
    }
}

// ---------------------------------------------------------------- FWFT

const FWFT_SET: u64 = 0;
const FWFT_GET: u64 = 1;
const MISALIGNED: u64 = 0;
const PTE_AD: u64 = 4;

#[test]
fn fwft_get_offered_features() {
    let mut vm = MockVm::new(1);
    assert_eq!(vm.ret(FWFT, FWFT_GET, a(&[MISALIGNED])), ok(1));
    assert_eq!(vm.ret(FWFT, FWFT_GET, a(&[PTE_AD])), ok(0));
    // feature is 32 bits wide.
    assert_eq!(vm.ret(FWFT, FWFT_GET, a(&[PTE_AD | 7 << 32])), ok(0));
}

/// Both `get` and `set` of feature `f` fail with `e`, and nothing is done.
fn fwft_get_and_set_fail(f: u64, e: SbiError) {
    let mut vm = MockVm::new(1);
    assert_eq!(vm.ret(FWFT, FWFT_GET, a(&[f])), err(e), "get {f:#x}");
    assert_eq!(vm.ret(FWFT, FWFT_SET, a(&[f, 0, 0])), err(e), "set {f:#x}");
    assert!(vm.events.is_empty());
}

#[test]
fn fwft_features_not_offered_are_not_supported() {
    for f in [1u64, 2, 3, 5] {
        fwft_get_and_set_fail(f, SbiError::NotSupported);
    }
}

#[test]
fn fwft_reserved_and_platform_features_are_denied() {
    for f in [
        6u64,
        0x3fff_ffff,
        0x4000_0000,
        0x7fff_ffff,
        0x8000_0000,
        0xc000_0000,
        0xffff_ffff,
    ] {
        fwft_get_and_set_fail(f, SbiError::Denied);
    }
}

#[test]
fn fwft_set_and_lock() {
    let mut vm = MockVm::new(1);
    assert_eq!(vm.ret(FWFT, FWFT_SET, a(&[PTE_AD, 1, 0])), ok(0));
    assert_eq!(vm.ret(FWFT, FWFT_GET, a(&[PTE_AD])), ok(1));
    assert_eq!(vm.ret(FWFT, FWFT_SET, a(&[PTE_AD, 0, 1])), ok(0));
    assert_eq!(vm.ret(FWFT, FWFT_GET, a(&[PTE_AD])), ok(0));
    // Locked: every further set fails, even to the same value; get works.
    for v in [0, 1, 2] {
        assert_eq!(
            vm.ret(FWFT, FWFT_SET, a(&[PTE_AD, v, 0])),
            err(SbiError::DeniedLocked)
        );
    }
    assert_eq!(vm.ret(FWFT, FWFT_GET, a(&[PTE_AD])), ok(0));
    assert_eq!(
        vm.events,
        vec![
            Event::FwftSet {
                feature: FwftFeature::PteAdHwUpdating,
                value: 1,
                lock: false
            },
            Event::FwftSet {
                feature: FwftFeature::PteAdHwUpdating,
                value: 0,
                lock: true
            },
        ]
    );
}

#[test]
fn fwft_set_bad_value_or_flags_is_invalid_param() {
    let mut vm = MockVm::new(1);
    for (v, flags) in [(2u64, 0u64), (u64::MAX, 0), (1, 2), (1, 1 << 63), (0, 3)] {
        assert_eq!(
            vm.ret(FWFT, FWFT_SET, a(&[PTE_AD, v, flags])),
            err(SbiError::InvalidParam),
            "value {v:#x} flags {flags:#x}"
        );
    }
    // Reserved flag bits are checked before the feature id.
    assert_eq!(
        vm.ret(FWFT, FWFT_SET, a(&[0x4000_0000, 0, 2])),
        err(SbiError::InvalidParam)
    );
    assert!(vm.events.is_empty());
}

#[test]
fn fwft_set_refused_by_the_core() {
    let mut vm = MockVm::new(1);
    vm.fwft_set_error = Some(FwftSetError::Denied);
    assert_eq!(
        vm.ret(FWFT, FWFT_SET, a(&[MISALIGNED, 0, 0])),
        err(SbiError::Denied)
    );
    vm.fwft_set_error = Some(FwftSetError::Failed);
    assert_eq!(
        vm.ret(FWFT, FWFT_SET, a(&[MISALIGNED, 0, 1])),
        err(SbiError::Failed)
    );
    assert!(vm.fwft_locks.is_empty());
    assert_eq!(vm.ret(FWFT, FWFT_GET, a(&[MISALIGNED])), ok(1));
}

#[test]
fn fwft_unknown_function() {
    let mut vm = MockVm::new(1);
    for fid in [2, 3, u64::MAX] {
        assert_eq!(
            vm.ret(FWFT, fid, a(&[PTE_AD, 1, 0])),
            err(SbiError::NotSupported)
        );
    }
    assert!(vm.events.is_empty());
}

#[test]
fn dbtr_is_absent() {
    let mut vm = MockVm::new(1);
    assert_eq!(vm.ret(BASE, 3, a(&[DBTR])), ok(0));
    for fid in 0..8 {
        assert_eq!(
            vm.ret(DBTR, fid, a(&[0, 0, 0])),
            err(SbiError::NotSupported)
        );
    }
}

// ---------------------------------------------------------------- SRST

#[test]
fn srst_every_type_and_reason() {
    let mut vm = MockVm::new(1);
    for (t, kind) in [
        (0, ResetKind::Shutdown),
        (1, ResetKind::ColdReboot),
        (2, ResetKind::WarmReboot),
    ] {
        for (r, reason) in [(0, ResetReason::NoReason), (1, ResetReason::SystemFailure)] {
            assert_eq!(
                vm.call(SRST, 0, a(&[t, r])),
                SbiOutcome::SystemReset { kind, reason }
            );
        }
    }
    assert!(vm.events.is_empty());
}

#[test]
fn srst_reserved_and_vendor_types_are_invalid_param() {
    let mut vm = MockVm::new(1);
    for t in [3, 0xEFFF_FFFF, 0xF000_0000, 0xFFFF_FFFF] {
        assert_eq!(
            vm.ret(SRST, 0, a(&[t, 0])),
            err(SbiError::InvalidParam),
            "{t:#x}"
        );
    }
}

#[test]
fn srst_reserved_and_unimplemented_reasons_are_invalid_param() {
    let mut vm = MockVm::new(1);
    for r in [
        2,
        0xDFFF_FFFF,
        0xE000_0000,
        0xEFFF_FFFF,
        0xF000_0000,
        0xFFFF_FFFF,
    ] {
        assert_eq!(
            vm.ret(SRST, 0, a(&[0, r])),
            err(SbiError::InvalidParam),
            "{r:#x}"
        );
    }
}

#[test]
fn srst_arguments_use_only_the_low_32_bits() {
    let mut vm = MockVm::new(1);
    assert_eq!(
        vm.call(SRST, 0, a(&[0x5_0000_0001, 0x7_0000_0000])),
        SbiOutcome::SystemReset {
            kind: ResetKind::ColdReboot,
            reason: ResetReason::NoReason
        }
    );
}

#[test]
fn srst_unknown_function() {
    let mut vm = MockVm::new(1);
    assert_eq!(vm.ret(SRST, 1, a(&[0, 0])), err(SbiError::NotSupported));
}

// ---------------------------------------------------------------- DBCN

#[test]
fn dbcn_write() {
    let mut vm = MockVm::new(1);
    assert_eq!(vm.ret(DBCN, 0, a(&[13, RAM_BASE + 0x10, 0])), ok(13));
    assert_eq!(
        vm.events,
        [Event::ConsoleWrite {
            gpa: RAM_BASE + 0x10,
            len: 13
        }]
    );
}

#[test]
fn dbcn_write_is_chunked_and_may_be_partial() {
    let mut vm = MockVm::new(1);
    assert_eq!(
        vm.ret(DBCN, 0, a(&[10_000, RAM_BASE, 0])),
        ok(DBCN_MAX_CHUNK)
    );
    assert_eq!(
        vm.events,
        [Event::ConsoleWrite {
            gpa: RAM_BASE,
            len: DBCN_MAX_CHUNK
        }]
    );
    vm.write_limit = Some(7);
    assert_eq!(vm.ret(DBCN, 0, a(&[100, RAM_BASE, 0])), ok(7));
    vm.write_limit = Some(0);
    assert_eq!(vm.ret(DBCN, 0, a(&[100, RAM_BASE, 0])), ok(0));
}

#[test]
fn dbcn_count_never_exceeds_the_request() {
    let mut vm = MockVm::new(1);
    vm.console_count_override = Some(1_000_000);
    assert_eq!(vm.ret(DBCN, 0, a(&[10, RAM_BASE, 0])), ok(10));
    assert_eq!(
        vm.ret(DBCN, 1, a(&[10_000, RAM_BASE, 0])),
        ok(DBCN_MAX_CHUNK)
    );
}

#[test]
fn dbcn_buffer_outside_guest_ram_is_invalid_param() {
    let mut vm = MockVm::new(1);
    for fid in [0, 1] {
        for (len, addr) in [
            (1, 0),
            (1, 0x1000_0000), // the UART: MMIO, not RAM
            (1, RAM_BASE - 1),
            (2, RAM_BASE - 1), // straddles the start
            (2, RAM_END - 1),  // straddles the end
            (1, RAM_END),
            (16, u64::MAX - 3), // wraps
            (u64::MAX, RAM_BASE),
            (0x100_0001, RAM_BASE), // whole request checked, not just the first chunk
        ] {
            assert_eq!(
                vm.ret(DBCN, fid, a(&[len, addr, 0])),
                err(SbiError::InvalidParam),
                "fid {fid} {len:#x}@{addr:#x}"
            );
        }
    }
    assert!(vm.events.is_empty());
}

#[test]
fn dbcn_nonzero_base_addr_hi_is_invalid_param() {
    // XLEN = 64: base_addr_hi is address bits 64 and up, never guest RAM.
    let mut vm = MockVm::new(1);
    for fid in [0, 1] {
        assert_eq!(
            vm.ret(DBCN, fid, a(&[4, RAM_BASE, 1])),
            err(SbiError::InvalidParam)
        );
        assert_eq!(
            vm.ret(DBCN, fid, a(&[0, RAM_BASE, u64::MAX])),
            err(SbiError::InvalidParam)
        );
    }
    assert!(vm.events.is_empty());
}

#[test]
fn dbcn_zero_bytes_touches_nothing() {
    let mut vm = MockVm::new(1);
    assert_eq!(vm.ret(DBCN, 0, a(&[0, 0, 0])), ok(0));
    assert_eq!(vm.ret(DBCN, 1, a(&[0, u64::MAX, 0])), ok(0));
    assert!(vm.events.is_empty());
}

#[test]
fn dbcn_console_errors() {
    let mut vm = MockVm::new(1);
    vm.console_error = Some(ConsoleError::Io);
    assert_eq!(vm.ret(DBCN, 0, a(&[4, RAM_BASE, 0])), err(SbiError::Failed));
    assert_eq!(vm.ret(DBCN, 1, a(&[4, RAM_BASE, 0])), err(SbiError::Failed));
    assert_eq!(vm.ret(DBCN, 2, a(&[b'x'.into()])), err(SbiError::Failed));
    vm.console_error = Some(ConsoleError::Denied);
    assert_eq!(vm.ret(DBCN, 0, a(&[4, RAM_BASE, 0])), err(SbiError::Denied));
    assert_eq!(vm.ret(DBCN, 1, a(&[4, RAM_BASE, 0])), err(SbiError::Denied));
    assert_eq!(vm.ret(DBCN, 2, a(&[b'x'.into()])), err(SbiError::Denied));
}

#[test]
fn dbcn_read() {
    let mut vm = MockVm::new(1);
    assert_eq!(vm.ret(DBCN, 1, a(&[8, RAM_BASE + 8, 0])), ok(0));
    vm.input.extend(b"hello");
    assert_eq!(vm.ret(DBCN, 1, a(&[3, RAM_BASE + 8, 0])), ok(3));
    assert_eq!(vm.ret(DBCN, 1, a(&[8, RAM_BASE + 8, 0])), ok(2));
    assert_eq!(
        vm.events,
        [
            Event::ConsoleRead {
                gpa: RAM_BASE + 8,
                len: 8
            },
            Event::ConsoleRead {
                gpa: RAM_BASE + 8,
                len: 3
            },
            Event::ConsoleRead {
                gpa: RAM_BASE + 8,
                len: 8
            },
        ]
    );
}

#[test]
fn dbcn_write_byte_uses_the_low_8_bits() {
    let mut vm = MockVm::new(1);
    assert_eq!(vm.ret(DBCN, 2, a(&[0x4142])), ok(0));
    assert_eq!(vm.events, [Event::Putchar(0x42)]);
}

#[test]
fn dbcn_unknown_function() {
    let mut vm = MockVm::new(1);
    assert_eq!(
        vm.ret(DBCN, 3, a(&[4, RAM_BASE, 0])),
        err(SbiError::NotSupported)
    );
    assert!(vm.events.is_empty());
}

// ---------------------------------------------------------------- legacy

/// Legacy calls return only a0; the caller's a1 must come back unchanged.
const CALLER_A1: u64 = 0x5eed_a1a1;

#[test]
fn legacy_set_timer() {
    let mut vm = MockVm::new(1);
    let r = vm.ret(0x00, 0, a(&[0x9999, CALLER_A1]));
    assert_eq!((r.a0(), r.a1()), (0, CALLER_A1));
    assert_eq!(vm.events, [Event::SetTimer(0x9999)]);
}

#[test]
fn legacy_calls_ignore_the_fid() {
    let mut vm = MockVm::new(1);
    let r = vm.ret(0x00, 0xdead, a(&[5, CALLER_A1]));
    assert_eq!((r.error, r.value), (0, CALLER_A1));
    assert_eq!(vm.events, [Event::SetTimer(5)]);
}

#[test]
fn legacy_console_putchar() {
    let mut vm = MockVm::new(1);
    let r = vm.ret(0x01, 0, a(&[0x1_0a, CALLER_A1]));
    assert_eq!((r.error, r.value), (0, CALLER_A1));
    assert_eq!(vm.events, [Event::Putchar(b'\n')]);
    vm.console_error = Some(ConsoleError::Io);
    let r = vm.ret(0x01, 0, a(&[b'a'.into(), CALLER_A1]));
    assert_eq!((r.error, r.value), (-1, CALLER_A1));
}

#[test]
fn legacy_console_getchar() {
    let mut vm = MockVm::new(1);
    let r = vm.ret(0x02, 0, a(&[0, CALLER_A1]));
    assert_eq!((r.error, r.value), (-1, CALLER_A1));
    vm.input.extend([b'q', 0xff]);
    let r = vm.ret(0x02, 0, a(&[0, CALLER_A1]));
    assert_eq!((r.error, r.value), (i64::from(b'q'), CALLER_A1));
    // 0xff is a byte, not the "no byte" -1.
    let r = vm.ret(0x02, 0, a(&[0, CALLER_A1]));
    assert_eq!((r.error, r.value), (0xff, CALLER_A1));
    let r = vm.ret(0x02, 0, a(&[0, CALLER_A1]));
    assert_eq!(r.error, -1);
}

#[test]
fn legacy_unsupported_extensions_return_not_supported_in_a0_only() {
    let mut vm = MockVm::new(2);
    for eid in 0x03..=0x0F {
        // e.g. legacy send_ipi / remote fences / shutdown with plausible args
        let r = vm.ret(eid, 0, a(&[RAM_BASE, CALLER_A1, 0, 0]));
        assert_eq!((r.error, r.value), (-2, CALLER_A1), "eid {eid:#x}");
    }
    assert!(vm.events.is_empty());
}

// ---------------------------------------------------------------- unknown

#[test]
fn unknown_extensions_are_not_supported() {
    let mut vm = MockVm::new(2);
    for eid in [
        0x11,
        DBTR,
        CPPC,
        NACL,
        STA,
        0x0900_0000,
        0x0A00_0000,
        TIME | 1 << 32, // stray upper bits in a7
        HSM | 0xffff_ffff_0000_0000,
        u64::MAX,
    ] {
        assert_eq!(
            vm.ret(eid, 0, a(&[1, 0])),
            err(SbiError::NotSupported),
            "{eid:#x}"
        );
    }
    assert!(vm.events.is_empty());
}
