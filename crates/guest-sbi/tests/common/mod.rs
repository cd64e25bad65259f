//! A mock VM for the SBI layer: records every request and checks that
//! `handle` only ever asks for validated work (the `SbiEnv` contract).
#![allow(dead_code)]

use std::collections::VecDeque;

use fv_addr::GuestPhysAddr;
use fv_guest_sbi::{
    handle, ConsoleError, Fence, FwEvent, FwftFeature, FwftSetError, HartState, HsmError, PmuRaw,
    SbiCall, SbiEnv, SbiOutcome, SbiRet, VcpuPmu, DBCN_MAX_CHUNK,
};

pub const RAM_BASE: u64 = 0x8000_0000;
pub const RAM_SIZE: u64 = 0x100_0000;
pub const RAM_END: u64 = RAM_BASE + RAM_SIZE;

/// One piece of work the SBI layer asked the VM for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    StartVcpu {
        vcpu: usize,
        start_addr: u64,
        opaque: u64,
    },
    SetTimer(u64),
    Ipi(usize),
    Fence(usize, Fence),
    ConsoleWrite {
        gpa: u64,
        len: u64,
    },
    ConsoleRead {
        gpa: u64,
        len: u64,
    },
    Putchar(u8),
    FwftSet {
        feature: FwftFeature,
        value: u64,
        lock: bool,
    },
}

#[derive(Debug)]
pub struct MockVm {
    pub states: Vec<HartState>,
    pub current: usize,
    pub events: Vec<Event>,
    /// Bytes waiting to be read from the console.
    pub input: VecDeque<u8>,
    /// Most bytes one console_write accepts (None: all).
    pub write_limit: Option<u64>,
    /// What console_write/console_read report instead of the real count (a buggy core).
    pub console_count_override: Option<u64>,
    /// Error every console operation fails with.
    pub console_error: Option<ConsoleError>,
    /// Error start_vcpu fails with (a lost race).
    pub start_error: Option<HsmError>,
    /// For each `remote_fences_issued` call: how many fences had been
    /// requested by then.
    pub fence_waits: Vec<usize>,
    /// FWFT: the offered features and their values (absent: not offered).
    pub fwft: Vec<(FwftFeature, u64)>,
    /// FWFT: locked features.
    pub fwft_locks: Vec<FwftFeature>,
    /// FWFT: what `fwft_set` answers (None: accept).
    pub fwft_set_error: Option<FwftSetError>,
    /// The calling vCPU's PMU.
    pub pmu: VcpuPmu,
    /// The calling vCPU's hardware totals; `fw` holds its firmware counts.
    pub raw: PmuRaw,
    /// Firmware events counted on each vCPU.
    pub fw_events: Vec<[u64; fv_guest_sbi::pmu::NUM_FW_COUNTERS]>,
}

impl MockVm {
    /// `count` vCPUs, vCPU 0 STARTED and running, the rest STOPPED.
    pub fn new(count: usize) -> Self {
        let mut states = vec![HartState::Stopped; count];
        states[0] = HartState::Started;
        Self {
            states,
            current: 0,
            events: Vec::new(),
            input: VecDeque::new(),
            write_limit: None,
            console_count_override: None,
            console_error: None,
            start_error: None,
            fence_waits: Vec::new(),
            fwft: vec![
                (FwftFeature::MisalignedExcDeleg, 1),
                (FwftFeature::PteAdHwUpdating, 0),
            ],
            fwft_locks: Vec::new(),
            fwft_set_error: None,
            pmu: VcpuPmu::new(),
            raw: PmuRaw::default(),
            fw_events: vec![[0; fv_guest_sbi::pmu::NUM_FW_COUNTERS]; count],
        }
    }

    /// Runs one call.
    pub fn call(&mut self, eid: u64, fid: u64, args: [u64; 6]) -> SbiOutcome {
        handle(self, &SbiCall::new(eid, fid, args))
    }

    /// Runs one call that must return to the guest.
    pub fn ret(&mut self, eid: u64, fid: u64, args: [u64; 6]) -> SbiRet {
        match self.call(eid, fid, args) {
            SbiOutcome::Return(r) => r,
            other => panic!("expected Return, got {other:?}"),
        }
    }

    fn check_vcpu(&self, vcpu: usize) {
        assert!(
            vcpu < self.states.len(),
            "SBI layer passed invalid vCPU {vcpu}"
        );
    }

    fn in_ram(gpa: u64, len: u64) -> bool {
        gpa >= RAM_BASE && gpa.checked_add(len).is_some_and(|end| end <= RAM_END)
    }

    fn check_console_range(gpa: GuestPhysAddr, len: u64) {
        assert!((1..=DBCN_MAX_CHUNK).contains(&len), "console len {len}");
        assert!(
            Self::in_ram(gpa.raw(), len),
            "console range {gpa}+{len} not RAM"
        );
    }
}

impl SbiEnv for MockVm {
    fn pmu(&mut self) -> &mut VcpuPmu {
        &mut self.pmu
    }

    fn pmu_raw(&self) -> PmuRaw {
        PmuRaw {
            fw: self.fw_events[self.current],
            ..self.raw
        }
    }

    fn count_fw_event(&mut self, vcpu: usize, event: FwEvent) {
        self.check_vcpu(vcpu);
        self.fw_events[vcpu][event.index()] += 1;
    }

    fn vcpu_count(&self) -> usize {
        self.states.len()
    }

    fn current_vcpu(&self) -> usize {
        self.current
    }

    fn hart_state(&self, vcpu: usize) -> HartState {
        self.check_vcpu(vcpu);
        self.states[vcpu]
    }

    fn start_vcpu(
        &mut self,
        vcpu: usize,
        start_addr: GuestPhysAddr,
        opaque: u64,
    ) -> Result<(), HsmError> {
        self.check_vcpu(vcpu);
        assert!(
            Self::in_ram(start_addr.raw(), 2),
            "start_addr {start_addr} not RAM"
        );
        assert_eq!(
            self.states[vcpu],
            HartState::Stopped,
            "start of non-stopped vCPU"
        );
        self.events.push(Event::StartVcpu {
            vcpu,
            start_addr: start_addr.raw(),
            opaque,
        });
        if let Some(e) = self.start_error {
            return Err(e);
        }
        self.states[vcpu] = HartState::StartPending;
        Ok(())
    }

    fn set_timer(&mut self, stime_value: u64) {
        self.events.push(Event::SetTimer(stime_value));
    }

    fn send_ipi(&mut self, vcpu: usize) {
        self.check_vcpu(vcpu);
        self.events.push(Event::Ipi(vcpu));
    }

    fn remote_fences_issued(&mut self) {
        let n = self
            .events
            .iter()
            .filter(|e| matches!(e, Event::Fence(..)))
            .count();
        self.fence_waits.push(n);
    }

    fn remote_fence(&mut self, vcpu: usize, fence: Fence) {
        self.check_vcpu(vcpu);
        if let Fence::Vma { start, size } | Fence::VmaAsid { start, size, .. } = fence {
            assert!(size > 0, "empty fence range");
            assert!(
                size - 1 <= u64::MAX - start,
                "fence range {start:#x}+{size:#x} wraps"
            );
        }
        self.events.push(Event::Fence(vcpu, fence));
    }

    fn is_guest_ram(&self, gpa: GuestPhysAddr, len: u64) -> bool {
        assert!(len >= 1, "is_guest_ram with len 0");
        assert!(gpa.checked_add(len).is_ok(), "is_guest_ram range wraps");
        Self::in_ram(gpa.raw(), len)
    }

    fn console_write(&mut self, gpa: GuestPhysAddr, len: u64) -> Result<u64, ConsoleError> {
        Self::check_console_range(gpa, len);
        self.events.push(Event::ConsoleWrite {
            gpa: gpa.raw(),
            len,
        });
        if let Some(e) = self.console_error {
            return Err(e);
        }
        if let Some(n) = self.console_count_override {
            return Ok(n);
        }
        Ok(self.write_limit.map_or(len, |l| l.min(len)))
    }

    fn console_read(&mut self, gpa: GuestPhysAddr, len: u64) -> Result<u64, ConsoleError> {
        Self::check_console_range(gpa, len);
        self.events.push(Event::ConsoleRead {
            gpa: gpa.raw(),
            len,
        });
        if let Some(e) = self.console_error {
            return Err(e);
        }
        if let Some(n) = self.console_count_override {
            return Ok(n);
        }
        let n = (self.input.len() as u64).min(len);
        self.input.drain(..n as usize);
        Ok(n)
    }

    fn console_putchar(&mut self, byte: u8) -> Result<(), ConsoleError> {
        self.events.push(Event::Putchar(byte));
        match self.console_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn console_getchar(&mut self) -> Option<u8> {
        self.input.pop_front()
    }

    fn fwft_get(&self, feature: FwftFeature) -> Option<u64> {
        self.fwft
            .iter()
            .find(|(f, _)| *f == feature)
            .map(|(_, v)| *v)
    }

    fn fwft_locked(&self, feature: FwftFeature) -> bool {
        self.fwft_locks.contains(&feature)
    }

    fn fwft_set(
        &mut self,
        feature: FwftFeature,
        value: u64,
        lock: bool,
    ) -> Result<(), FwftSetError> {
        assert!(
            self.fwft_get(feature).is_some(),
            "set of unoffered {feature:?}"
        );
        assert!(!self.fwft_locked(feature), "set of locked {feature:?}");
        assert!(feature.value_is_valid(value), "invalid value {value}");
        self.events.push(Event::FwftSet {
            feature,
            value,
            lock,
        });
        if let Some(e) = self.fwft_set_error {
            return Err(e);
        }
        for (f, v) in &mut self.fwft {
            if *f == feature {
                *v = value;
            }
        }
        if lock {
            self.fwft_locks.push(feature);
        }
        Ok(())
    }

    fn impl_id(&self) -> u64 {
        0xF0F0
    }

    fn impl_version(&self) -> u64 {
        0x0001_0002
    }

    fn mvendorid(&self) -> u64 {
        0x11
    }

    fn marchid(&self) -> u64 {
        0x22
    }

    fn mimpid(&self) -> u64 {
        0x33
    }
}
