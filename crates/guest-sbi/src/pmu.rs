//! The SBI PMU extension (EID `0x504D55`, SBI v2.0 chapter "Performance
//! Monitoring Unit Extension") as one vCPU sees it: virtual counters that count
//! only that vCPU's own events.
//!
//! # Counters
//!
//! | index | type | CSR | counts |
//! | --- | --- | --- | --- |
//! | 0 | hardware | `cycle` (`0xC00`) | `SBI_PMU_HW_CPU_CYCLES`: host cycles while this vCPU runs guest code |
//! | 1 | — | (`time`) | not a counter: `COUNTER_GET_INFO` and every mask naming it say `SBI_ERR_INVALID_PARAM` |
//! | 2 | hardware | `instret` (`0xC02`) | `SBI_PMU_HW_INSTRUCTIONS`: instructions retired while this vCPU runs guest code |
//! | 3..=11 | firmware | — | one of the [`FwEvent`]s each |
//!
//! The core reports monotonic per-vCPU totals ([`PmuRaw`]): hardware counts
//! accumulated only between guest entry and exit of this vCPU, firmware events
//! counted by the SBI layer itself ([`crate::SbiEnv::count_fw_event`]). A
//! started counter's value is its value at start plus how much its total grew
//! since; a stopped one keeps its value. Counters keep their value when a
//! mapping is reset, as on hardware.
//!
//! # Rules beyond the spec's text
//!
//! * A counter set (`counter_idx_base`, `counter_idx_mask`) must name at least
//!   one counter and only valid ones; otherwise `SBI_ERR_INVALID_PARAM` and
//!   nothing changes. Undefined flag bits are `SBI_ERR_INVALID_PARAM` too.
//! * `COUNTER_CONFIG_MATCHING` with `SKIP_MATCH` takes the first counter of the
//!   set, which must already be configured (as OpenSBI and KVM do); without it,
//!   the first unconfigured counter of the set that can count the event.
//!   `SET_SINH`/`SET_UINH` cannot be honoured for hardware events (the guest's
//!   privilege changes without exits): `SBI_ERR_NOT_SUPPORTED`. For firmware
//!   events `SET_SINH` stops the counter from counting (every firmware event
//!   is an S-mode call) and `SET_UINH` changes nothing. `SET_VUINH`,
//!   `SET_VSINH` and `SET_MINH` hold trivially: the guest has no
//!   virtualisation, and its "M-mode" (the hypervisor) is never counted.
//! * `COUNTER_START` and `COUNTER_STOP` need configured counters. Start with
//!   one already started: `SBI_ERR_ALREADY_STARTED`, nothing changes. Stop:
//!   started counters stop; if one was already stopped the call still stops the
//!   others and releases mappings (`RESET`) but says `SBI_ERR_ALREADY_STOPPED`
//!   (Linux stops with `RESET` counters it already stopped and relies on the
//!   mapping being released).
//! * Snapshots are not implemented: `SNAPSHOT_SET_SHMEM` is
//!   `SBI_ERR_NOT_SUPPORTED`, the `INIT_SNAPSHOT`/`TAKE_SNAPSHOT` flags
//!   `SBI_ERR_NO_SHMEM`.
//! * `COUNTER_FW_READ`/`_HI` need a firmware counter (configured or not);
//!   `_HI` is always 0 on RV64.

use sbi_spec::pmu::{self, firmware_event, flags, hardware_event};

use crate::SbiError;

/// Index of the cycle counter (CSR `cycle`).
pub const COUNTER_CYCLE: usize = 0;
/// Index of the instructions-retired counter (CSR `instret`).
pub const COUNTER_INSTRET: usize = 2;
/// Index of the first firmware counter.
pub const FIRST_FW_COUNTER: usize = 3;
/// Number of firmware counters (one per [`FwEvent`]).
pub const NUM_FW_COUNTERS: usize = FwEvent::ALL.len();
/// What `NUM_COUNTERS` returns: indices `0..NUM_COUNTERS` (1 is not a counter).
pub const NUM_COUNTERS: usize = FIRST_FW_COUNTER + NUM_FW_COUNTERS;

/// CSR `cycle`.
pub const CSR_CYCLE: u16 = 0xC00;
/// CSR `instret`.
pub const CSR_INSTRET: u16 = 0xC02;

/// `counter_info.width` of the hardware counters: one less than their 64 bits.
const HW_WIDTH: u64 = 63;
/// `counter_info.type` (bit XLEN-1): firmware counter.
const INFO_TYPE_FW: u64 = 1 << 63;

/// A firmware event the SBI layer counts (SBI v2.0 table "PMU Firmware Events").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FwEvent {
    /// `SBI_PMU_FW_SET_TIMER` (5): `set_timer` calls (TIME and legacy).
    SetTimer,
    /// `SBI_PMU_FW_IPI_SENT` (6): IPIs this vCPU sent, one per target.
    IpiSent,
    /// `SBI_PMU_FW_IPI_RECEIVED` (7): IPIs sent to this vCPU.
    IpiReceived,
    /// `SBI_PMU_FW_FENCE_I_SENT` (8): remote `FENCE.I` requests sent, one per target.
    FenceISent,
    /// `SBI_PMU_FW_FENCE_I_RECEIVED` (9): remote `FENCE.I` requests to this vCPU.
    FenceIReceived,
    /// `SBI_PMU_FW_SFENCE_VMA_SENT` (10): remote `SFENCE.VMA` requests sent.
    SfenceVmaSent,
    /// `SBI_PMU_FW_SFENCE_VMA_RECEIVED` (11): remote `SFENCE.VMA` requests to this vCPU.
    SfenceVmaReceived,
    /// `SBI_PMU_FW_SFENCE_VMA_ASID_SENT` (12): remote ASID `SFENCE.VMA` requests sent.
    SfenceVmaAsidSent,
    /// `SBI_PMU_FW_SFENCE_VMA_ASID_RECEIVED` (13): remote ASID `SFENCE.VMA` requests to this vCPU.
    SfenceVmaAsidReceived,
}

impl FwEvent {
    /// Every counted event, in code order ([`FwEvent::index`] order).
    pub const ALL: [FwEvent; 9] = [
        FwEvent::SetTimer,
        FwEvent::IpiSent,
        FwEvent::IpiReceived,
        FwEvent::FenceISent,
        FwEvent::FenceIReceived,
        FwEvent::SfenceVmaSent,
        FwEvent::SfenceVmaReceived,
        FwEvent::SfenceVmaAsidSent,
        FwEvent::SfenceVmaAsidReceived,
    ];

    /// The spec's `event_code` (type 15, firmware).
    pub const fn code(self) -> usize {
        match self {
            FwEvent::SetTimer => firmware_event::SET_TIMER,
            FwEvent::IpiSent => firmware_event::IPI_SENT,
            FwEvent::IpiReceived => firmware_event::IPI_RECEIVED,
            FwEvent::FenceISent => firmware_event::FENCE_I_SENT,
            FwEvent::FenceIReceived => firmware_event::FENCE_I_RECEIVED,
            FwEvent::SfenceVmaSent => firmware_event::SFENCE_VMA_SENT,
            FwEvent::SfenceVmaReceived => firmware_event::SFENCE_VMA_RECEIVED,
            FwEvent::SfenceVmaAsidSent => firmware_event::SFENCE_VMA_ASID_SENT,
            FwEvent::SfenceVmaAsidReceived => firmware_event::SFENCE_VMA_ASID_RECEIVED,
        }
    }

    /// Position in [`FwEvent::ALL`] and in [`PmuRaw::fw`].
    pub fn index(self) -> usize {
        self.code() - firmware_event::SET_TIMER
    }

    fn from_code(code: usize) -> Option<Self> {
        FwEvent::ALL.iter().copied().find(|e| e.code() == code)
    }
}

/// One vCPU's monotonic event totals, as the core reports them at a call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PmuRaw {
    /// Host cycles spent running this vCPU's guest code.
    pub cycles: u64,
    /// Instructions this vCPU's guest code retired.
    pub instructions: u64,
    /// Firmware events, indexed by [`FwEvent::index`].
    pub fw: [u64; NUM_FW_COUNTERS],
}

/// What a counter counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Event {
    Cycles,
    Instructions,
    Fw(FwEvent),
}

impl Event {
    fn raw(self, raw: &PmuRaw) -> u64 {
        match self {
            Event::Cycles => raw.cycles,
            Event::Instructions => raw.instructions,
            Event::Fw(e) => raw.fw.get(e.index()).copied().unwrap_or(0),
        }
    }

    /// The event `event_idx` names (type in bits 19:16, code in 15:0), if
    /// this implementation can count it; `event_data` must be 0 (no event
    /// supported here uses it).
    fn decode(event_idx: u64, event_data: u64) -> Result<Event, SbiError> {
        if event_idx >> 20 != 0 {
            return Err(SbiError::InvalidParam);
        }
        let ty = (event_idx >> 16) as usize;
        let code = (event_idx & 0xffff) as usize;
        let event = match ty {
            pmu::event_type::HARDWARE_GENERAL => match code {
                hardware_event::CPU_CYCLES => Some(Event::Cycles),
                hardware_event::INSTRUCTIONS => Some(Event::Instructions),
                _ => None,
            },
            pmu::event_type::FIRMWARE => FwEvent::from_code(code).map(Event::Fw),
            _ => None,
        };
        match event {
            Some(e) if event_data == 0 => Ok(e),
            _ => Err(SbiError::NotSupported),
        }
    }

    fn is_hardware(self) -> bool {
        !matches!(self, Event::Fw(_))
    }
}

/// Which counters can count `event`.
fn can_count(idx: usize, event: Event) -> bool {
    match event {
        Event::Cycles => idx == COUNTER_CYCLE,
        Event::Instructions => idx == COUNTER_INSTRET,
        Event::Fw(_) => (FIRST_FW_COUNTER..NUM_COUNTERS).contains(&idx),
    }
}

/// Whether `idx` is a counter at all.
fn is_counter(idx: usize) -> bool {
    idx < NUM_COUNTERS && idx != 1
}

#[derive(Clone, Copy, Debug, Default)]
struct Counter {
    /// The configured event (`None`: free).
    event: Option<Event>,
    started: bool,
    /// `SET_SINH` on a firmware event: never counts.
    inhibited: bool,
    /// The value when stopped, or at the moment it was started.
    value: u64,
    /// The event's raw total when it was started.
    raw_at_start: u64,
}

impl Counter {
    fn current(&self, raw: &PmuRaw) -> u64 {
        match self.event {
            Some(e) if self.started && !self.inhibited => self
                .value
                .wrapping_add(e.raw(raw).wrapping_sub(self.raw_at_start)),
            _ => self.value,
        }
    }

    fn start(&mut self, raw: &PmuRaw) {
        if let Some(e) = self.event {
            self.raw_at_start = e.raw(raw);
            self.started = true;
        }
    }

    fn stop(&mut self, raw: &PmuRaw) {
        self.value = self.current(raw);
        self.started = false;
    }
}

/// One vCPU's PMU: the state of its [`NUM_COUNTERS`] virtual counters.
#[derive(Clone, Debug, Default)]
pub struct VcpuPmu {
    counters: [Counter; NUM_COUNTERS],
}

/// The counter indices of a (`counter_idx_base`, `counter_idx_mask`) set, or
/// `SBI_ERR_INVALID_PARAM` if it is empty or names anything but counters.
fn counter_set(base: u64, mask: u64) -> Result<impl Iterator<Item = usize> + Clone, SbiError> {
    if mask == 0 {
        return Err(SbiError::InvalidParam);
    }
    let top = 63 - u64::from(mask.leading_zeros());
    let last = base.checked_add(top).ok_or(SbiError::InvalidParam)?;
    if last >= NUM_COUNTERS as u64 {
        return Err(SbiError::InvalidParam);
    }
    // base + top < NUM_COUNTERS, so every index fits a usize.
    let set = (0..=top)
        .filter(move |i| mask & (1 << i) != 0)
        .map(move |i| (base + i) as usize);
    if set.clone().all(is_counter) {
        Ok(set)
    } else {
        Err(SbiError::InvalidParam)
    }
}

/// [`counter_set`], and `flags` must use only the `defined` bits
/// (`SBI_ERR_INVALID_PARAM` otherwise).
fn checked_set(
    base: u64,
    mask: u64,
    flags: u64,
    defined: u64,
) -> Result<impl Iterator<Item = usize> + Clone, SbiError> {
    let set = counter_set(base, mask)?;
    if flags & !defined != 0 {
        return Err(SbiError::InvalidParam);
    }
    Ok(set)
}

/// Configuration flags this implementation defines (bits 0..=7).
const CFG_FLAGS: u64 = 0xff;
const START_FLAGS: u64 = 0b11;
const STOP_FLAGS: u64 = 0b11;

const fn flag(bits: usize) -> u64 {
    bits as u64
}

impl VcpuPmu {
    /// All counters free, stopped and zero (a vCPU after reset).
    pub fn new() -> Self {
        Self::default()
    }

    /// Back to [`VcpuPmu::new`]'s state (the vCPU was reset).
    pub fn reset(&mut self) {
        *self = Self::new();
    }

    /// The value of counter `idx` now, if it is a counter.
    pub fn counter_value(&self, idx: usize, raw: &PmuRaw) -> Option<u64> {
        if is_counter(idx) {
            self.counters.get(idx).map(|c| c.current(raw))
        } else {
            None
        }
    }

    /// What the guest reads from counter CSR `csr` (`cycle` or `instret`);
    /// `None` for any other CSR.
    pub fn read_csr(&self, csr: u16, raw: &PmuRaw) -> Option<u64> {
        match csr {
            CSR_CYCLE => self.counter_value(COUNTER_CYCLE, raw),
            CSR_INSTRET => self.counter_value(COUNTER_INSTRET, raw),
            _ => None,
        }
    }

    /// Handles PMU function `fid` with arguments `args`, `raw` being the
    /// calling vCPU's totals now. Returns `sbiret.value` or the error.
    pub fn call(&mut self, fid: u64, args: [u64; 6], raw: &PmuRaw) -> Result<u64, SbiError> {
        let [a0, a1, a2, a3, a4, _] = args;
        let fid = usize::try_from(fid).map_err(|_| SbiError::NotSupported)?;
        match fid {
            pmu::NUM_COUNTERS => Ok(NUM_COUNTERS as u64),
            pmu::COUNTER_GET_INFO => counter_info(a0),
            pmu::COUNTER_CONFIG_MATCHING => self.config_matching(a0, a1, a2, a3, a4, raw),
            pmu::COUNTER_START => self.start(a0, a1, a2, a3, raw),
            pmu::COUNTER_STOP => self.stop(a0, a1, a2, raw),
            pmu::COUNTER_FW_READ => self.fw_read(a0, raw),
            pmu::COUNTER_FW_READ_HI => self.fw_read(a0, raw).map(|_| 0),
            pmu::SNAPSHOT_SET_SHMEM => Err(SbiError::NotSupported),
            // EVENT_GET_INFO and later are SBI v3.0: not in the version we report.
            _ => Err(SbiError::NotSupported),
        }
    }

    fn config_matching(
        &mut self,
        base: u64,
        mask: u64,
        config_flags: u64,
        event_idx: u64,
        event_data: u64,
        raw: &PmuRaw,
    ) -> Result<u64, SbiError> {
        use flags::CounterCfgFlags as F;
        let set = checked_set(base, mask, config_flags, CFG_FLAGS)?;
        let has = |f: F| config_flags & flag(f.bits()) != 0;
        let event = Event::decode(event_idx, event_data)?;
        let filtered = has(F::SET_SINH) || has(F::SET_UINH);
        if event.is_hardware() && filtered {
            return Err(SbiError::NotSupported);
        }
        let mut set = set;
        let idx = if has(F::SKIP_MATCH) {
            let idx = set.next().ok_or(SbiError::InvalidParam)?;
            let c = self.counters.get(idx).ok_or(SbiError::InvalidParam)?;
            if c.event.is_none() {
                return Err(SbiError::InvalidParam);
            }
            if !can_count(idx, event) {
                return Err(SbiError::NotSupported);
            }
            idx
        } else {
            set.find(|&i| {
                can_count(i, event) && self.counters.get(i).is_some_and(|c| c.event.is_none())
            })
            .ok_or(SbiError::NotSupported)?
        };
        let c = self.counters.get_mut(idx).ok_or(SbiError::Failed)?;
        if c.started {
            // Re-configuring a running counter (SKIP_MATCH): settle its value first.
            c.stop(raw);
        }
        c.event = Some(event);
        c.inhibited = has(F::SET_SINH);
        if has(F::CLEAR_VALUE) {
            c.value = 0;
        }
        if has(F::AUTO_START) {
            c.start(raw);
        }
        Ok(idx as u64)
    }

    fn start(
        &mut self,
        base: u64,
        mask: u64,
        start_flags: u64,
        initial_value: u64,
        raw: &PmuRaw,
    ) -> Result<u64, SbiError> {
        use flags::CounterStartFlags as F;
        let set = checked_set(base, mask, start_flags, START_FLAGS)?;
        let mut any_started = false;
        for i in set.clone() {
            let c = self.counters.get(i).ok_or(SbiError::InvalidParam)?;
            if c.event.is_none() {
                return Err(SbiError::InvalidParam);
            }
            any_started |= c.started;
        }
        if start_flags & flag(F::INIT_SNAPSHOT.bits()) != 0 {
            return Err(SbiError::NoShmem);
        }
        if any_started {
            return Err(SbiError::AlreadyStarted);
        }
        for i in set {
            if let Some(c) = self.counters.get_mut(i) {
                if start_flags & flag(F::INIT_VALUE.bits()) != 0 {
                    c.value = initial_value;
                }
                c.start(raw);
            }
        }
        Ok(0)
    }

    fn stop(
        &mut self,
        base: u64,
        mask: u64,
        stop_flags: u64,
        raw: &PmuRaw,
    ) -> Result<u64, SbiError> {
        use flags::CounterStopFlags as F;
        let set = checked_set(base, mask, stop_flags, STOP_FLAGS)?;
        for i in set.clone() {
            if self.counters.get(i).is_none_or(|c| c.event.is_none()) {
                return Err(SbiError::InvalidParam);
            }
        }
        if stop_flags & flag(F::TAKE_SNAPSHOT.bits()) != 0 {
            return Err(SbiError::NoShmem);
        }
        let mut already_stopped = false;
        for i in set {
            if let Some(c) = self.counters.get_mut(i) {
                if c.started {
                    c.stop(raw);
                } else {
                    already_stopped = true;
                }
                if stop_flags & flag(F::RESET.bits()) != 0 {
                    c.event = None;
                    c.inhibited = false;
                }
            }
        }
        if already_stopped {
            Err(SbiError::AlreadyStopped)
        } else {
            Ok(0)
        }
    }

    fn fw_read(&self, idx: u64, raw: &PmuRaw) -> Result<u64, SbiError> {
        match usize::try_from(idx) {
            Ok(i) if (FIRST_FW_COUNTER..NUM_COUNTERS).contains(&i) => {
                self.counter_value(i, raw).ok_or(SbiError::InvalidParam)
            }
            _ => Err(SbiError::InvalidParam),
        }
    }
}

/// `COUNTER_GET_INFO(counter_idx)`: `csr` in bits 11:0, `width` in 17:12,
/// `type` in bit 63 (SBI v2.0 §11.7).
fn counter_info(idx: u64) -> Result<u64, SbiError> {
    match idx {
        0 => Ok(u64::from(CSR_CYCLE) | (HW_WIDTH << 12)),
        2 => Ok(u64::from(CSR_INSTRET) | (HW_WIDTH << 12)),
        i if (FIRST_FW_COUNTER as u64..NUM_COUNTERS as u64).contains(&i) => Ok(INFO_TYPE_FW),
        _ => Err(SbiError::InvalidParam),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HW: u64 = 0;
    const FW: u64 = 0xf << 16;
    const CYCLES: u64 = HW | 1;
    const INSTRUCTIONS: u64 = HW | 2;
    const SKIP_MATCH: u64 = 1;
    const CLEAR_VALUE: u64 = 2;
    const AUTO_START: u64 = 4;

    fn raw(cycles: u64, instructions: u64) -> PmuRaw {
        PmuRaw {
            cycles,
            instructions,
            fw: [0; NUM_FW_COUNTERS],
        }
    }

    #[test]
    fn constants_match_the_spec() {
        assert_eq!(pmu::EID_PMU, 0x504D55);
        assert_eq!(NUM_COUNTERS, 12);
        assert_eq!(FwEvent::SetTimer.code(), 5);
        assert_eq!(FwEvent::SfenceVmaAsidReceived.code(), 13);
        for (i, e) in FwEvent::ALL.iter().enumerate() {
            assert_eq!(e.index(), i);
        }
        // counter_info: csr 11:0, width 17:12, type bit 63.
        assert_eq!(counter_info(0), Ok(0xC00 | (63 << 12)));
        assert_eq!(counter_info(2), Ok(0xC02 | (63 << 12)));
        assert_eq!(counter_info(3), Ok(1 << 63));
        assert_eq!(counter_info(1), Err(SbiError::InvalidParam));
        assert_eq!(counter_info(12), Err(SbiError::InvalidParam));
    }

    #[test]
    fn cycles_count_only_while_started() {
        let mut p = VcpuPmu::new();
        let r = raw(1000, 500);
        assert_eq!(
            p.call(2, [0, 0b101, CLEAR_VALUE | AUTO_START, CYCLES, 0, 0], &r),
            Ok(0)
        );
        assert_eq!(p.read_csr(CSR_CYCLE, &raw(1300, 0)), Some(300));
        assert_eq!(p.call(4, [0, 1, 0, 0, 0, 0], &raw(1400, 0)), Ok(0));
        assert_eq!(p.read_csr(CSR_CYCLE, &raw(5000, 0)), Some(400));
        // Started again from 400 with an initial value.
        assert_eq!(p.call(3, [0, 1, 1, 10, 0, 0], &raw(5000, 0)), Ok(0));
        assert_eq!(p.read_csr(CSR_CYCLE, &raw(5007, 0)), Some(17));
        assert_eq!(
            p.call(3, [0, 1, 0, 0, 0, 0], &raw(5007, 0)),
            Err(SbiError::AlreadyStarted)
        );
        // Instructions go to counter 2, whatever the mask's order.
        assert_eq!(
            p.call(2, [0, 0b101, AUTO_START, INSTRUCTIONS, 0, 0], &r),
            Ok(2)
        );
        // A second cycles event finds no free counter.
        assert_eq!(
            p.call(2, [0, 0xfff & !2, 0, CYCLES, 0, 0], &r),
            Err(SbiError::NotSupported)
        );
    }

    #[test]
    fn stop_with_reset_releases_even_a_stopped_counter() {
        let mut p = VcpuPmu::new();
        let r = raw(0, 0);
        assert_eq!(p.call(2, [0, 1, 0, CYCLES, 0, 0], &r), Ok(0));
        assert_eq!(
            p.call(4, [0, 1, 1, 0, 0, 0], &r),
            Err(SbiError::AlreadyStopped)
        );
        // Free again; stopping it now is an invalid (unconfigured) counter.
        assert_eq!(p.call(2, [0, 1, 0, CYCLES, 0, 0], &r), Ok(0));
        assert_eq!(
            p.call(4, [0, 1, 1, 0, 0, 0], &r),
            Err(SbiError::AlreadyStopped)
        );
        assert_eq!(
            p.call(4, [0, 1, 0, 0, 0, 0], &r),
            Err(SbiError::InvalidParam)
        );
    }

    #[test]
    fn bad_sets_flags_and_events() {
        let mut p = VcpuPmu::new();
        let r = raw(0, 0);
        // Empty mask, the time index, beyond the last counter, base overflow.
        for (base, mask) in [(0, 0), (1, 1), (0, 2), (12, 1), (11, 2), (u64::MAX, 2)] {
            assert_eq!(
                p.call(2, [base, mask, 0, CYCLES, 0, 0], &r),
                Err(SbiError::InvalidParam),
                "{base} {mask:#x}"
            );
            assert_eq!(
                p.call(3, [base, mask, 0, 0, 0, 0], &r),
                Err(SbiError::InvalidParam)
            );
            assert_eq!(
                p.call(4, [base, mask, 0, 0, 0, 0], &r),
                Err(SbiError::InvalidParam)
            );
        }
        assert_eq!(
            p.call(2, [0, 1, 1 << 8, CYCLES, 0, 0], &r),
            Err(SbiError::InvalidParam)
        );
        // Cache, raw, unknown hardware and firmware events; event_data on a known one.
        for ev in [1 << 16, 2 << 16, 3, FW | 4, FW | 14, FW | 0xffff] {
            assert_eq!(
                p.call(2, [0, 0xffd, 0, ev, 0, 0], &r),
                Err(SbiError::NotSupported),
                "{ev:#x}"
            );
        }
        assert_eq!(
            p.call(2, [0, 1, 0, CYCLES, 7, 0], &r),
            Err(SbiError::NotSupported)
        );
        // Privilege filters on a hardware event cannot be honoured.
        assert_eq!(
            p.call(2, [0, 1, 1 << 6, CYCLES, 0, 0], &r),
            Err(SbiError::NotSupported)
        );
        // VS/VU/M inhibits hold trivially.
        assert_eq!(p.call(2, [0, 1, 0b1001_1000, CYCLES, 0, 0], &r), Ok(0));
        // SKIP_MATCH needs a configured counter.
        assert_eq!(
            p.call(2, [2, 1, SKIP_MATCH, INSTRUCTIONS, 0, 0], &r),
            Err(SbiError::InvalidParam)
        );
        assert_eq!(p.call(2, [0, 1, SKIP_MATCH, CYCLES, 0, 0], &r), Ok(0));
        // Snapshots.
        assert_eq!(
            p.call(7, [0, 0, 0, 0, 0, 0], &r),
            Err(SbiError::NotSupported)
        );
        assert_eq!(p.call(3, [0, 1, 2, 0, 0, 0], &r), Err(SbiError::NoShmem));
        assert_eq!(p.call(8, [0; 6], &r), Err(SbiError::NotSupported));
        assert_eq!(p.call(u64::MAX, [0; 6], &r), Err(SbiError::NotSupported));
    }

    #[test]
    fn firmware_counters() {
        let mut p = VcpuPmu::new();
        let mut r = raw(0, 0);
        let ipi = FW | 6;
        assert_eq!(p.call(2, [3, 0x1ff, AUTO_START, ipi, 0, 0], &r), Ok(3));
        // Inhibited in S-mode: never counts.
        assert_eq!(
            p.call(2, [3, 0x1ff, AUTO_START | (1 << 6), FW | 5, 0, 0], &r),
            Ok(4)
        );
        r.fw[FwEvent::IpiSent.index()] = 5;
        r.fw[FwEvent::SetTimer.index()] = 9;
        assert_eq!(p.call(5, [3, 0, 0, 0, 0, 0], &r), Ok(5));
        assert_eq!(p.call(6, [3, 0, 0, 0, 0, 0], &r), Ok(0));
        assert_eq!(p.call(5, [4, 0, 0, 0, 0, 0], &r), Ok(0));
        // Hardware counters and non-counters are not firmware counters.
        for i in [0, 1, 2, 12, u64::MAX] {
            assert_eq!(
                p.call(5, [i, 0, 0, 0, 0, 0], &r),
                Err(SbiError::InvalidParam)
            );
            assert_eq!(
                p.call(6, [i, 0, 0, 0, 0, 0], &r),
                Err(SbiError::InvalidParam)
            );
        }
        assert_eq!(p.call(0, [0; 6], &r), Ok(12));
    }
}
