//! Fixed sets of counters: exits by reason, SBI calls by extension, interrupts
//! injected by kind. Each set is an array indexed by a small enum, so recording
//! is one add and a snapshot is a copy.

use core::marker::PhantomData;
use core::sync::atomic::{AtomicU64, Ordering};

/// A key of a fixed counter set (an enum with a known list of values).
pub trait CounterKey: Copy + Eq + 'static {
    /// Every key, in display order; `ALL[k.index()] == k`.
    const ALL: &'static [Self];
    /// Position of this key in [`CounterKey::ALL`].
    fn index(self) -> usize;
    /// Short lower-case name used in replies (`mmio-read`, `hsm`, ...).
    fn name(self) -> &'static str;
}

/// A set of `N` counters indexed by `K`. Counters saturate instead of wrapping.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Counts<K, const N: usize> {
    values: [u64; N],
    _key: PhantomData<K>,
}

impl<K: CounterKey, const N: usize> Default for Counts<K, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: CounterKey, const N: usize> Counts<K, N> {
    /// All counters zero.
    pub const fn new() -> Self {
        Counts {
            values: [0; N],
            _key: PhantomData,
        }
    }

    /// The counter for `k`.
    pub fn get(&self, k: K) -> u64 {
        self.values.get(k.index()).copied().unwrap_or(0)
    }

    /// Sets the counter for `k`.
    pub fn set(&mut self, k: K, value: u64) {
        if let Some(v) = self.values.get_mut(k.index()) {
            *v = value;
        }
    }

    /// Adds `n` to the counter for `k`.
    pub fn add(&mut self, k: K, n: u64) {
        if let Some(v) = self.values.get_mut(k.index()) {
            *v = v.saturating_add(n);
        }
    }

    /// Adds one to the counter for `k`.
    pub fn record(&mut self, k: K) {
        self.add(k, 1);
    }

    /// Sum of all counters.
    pub fn total(&self) -> u64 {
        self.values.iter().fold(0u64, |a, &v| a.saturating_add(v))
    }

    /// Whether every counter is zero.
    pub fn is_zero(&self) -> bool {
        self.values.iter().all(|&v| v == 0)
    }

    /// Adds every counter of `other` to this set.
    pub fn merge(&mut self, other: &Self) {
        for (a, &b) in self.values.iter_mut().zip(other.values.iter()) {
            *a = a.saturating_add(b);
        }
    }

    /// Every key with its counter, in [`CounterKey::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (K, u64)> + '_ {
        K::ALL.iter().map(move |&k| (k, self.get(k)))
    }

    /// The keys whose counter is not zero, with their counters.
    pub fn nonzero(&self) -> impl Iterator<Item = (K, u64)> + '_ {
        self.iter().filter(|&(_, v)| v != 0)
    }
}

/// A set of `N` counters indexed by `K` that several harts may bump at once
/// (relaxed atomic adds); [`AtomicCounts::snapshot`] reads them all.
#[derive(Debug)]
pub struct AtomicCounts<K, const N: usize> {
    values: [AtomicU64; N],
    _key: PhantomData<K>,
}

impl<K: CounterKey, const N: usize> Default for AtomicCounts<K, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: CounterKey, const N: usize> AtomicCounts<K, N> {
    /// All counters zero (usable in a `static`).
    pub const fn new() -> Self {
        AtomicCounts {
            values: [const { AtomicU64::new(0) }; N],
            _key: PhantomData,
        }
    }

    /// Adds `n` to the counter for `k` (wraps after 2^64, which no run reaches).
    pub fn add(&self, k: K, n: u64) {
        if let Some(v) = self.values.get(k.index()) {
            v.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Adds one to the counter for `k`.
    pub fn record(&self, k: K) {
        self.add(k, 1);
    }

    /// The counter for `k`.
    pub fn get(&self, k: K) -> u64 {
        self.values
            .get(k.index())
            .map_or(0, |v| v.load(Ordering::Relaxed))
    }

    /// A copy of every counter (each read atomically; the set is not one snapshot).
    pub fn snapshot(&self) -> Counts<K, N> {
        let mut c = Counts::new();
        for (dst, src) in c.values.iter_mut().zip(self.values.iter()) {
            *dst = src.load(Ordering::Relaxed);
        }
        c
    }

    /// Sets every counter to zero (for example when a VM is created again).
    pub fn reset(&self) {
        for v in &self.values {
            v.store(0, Ordering::Relaxed);
        }
    }
}

macro_rules! counter_key {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident { $( $(#[$vmeta:meta])* $variant:ident => $text:literal, )+ }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
        $vis enum $name { $( $(#[$vmeta])* $variant, )+ }

        impl $name {
            /// How many keys there are.
            pub const COUNT: usize = [$($name::$variant),+].len();
        }

        impl CounterKey for $name {
            const ALL: &'static [Self] = &[$($name::$variant),+];
            fn index(self) -> usize {
                self as usize
            }
            fn name(self) -> &'static str {
                match self { $( $name::$variant => $text, )+ }
            }
        }
    };
}

counter_key! {
    /// Why a vCPU left the guest: one key per kind of `fv_vm::VcpuExit`, with
    /// host interrupts split by cause.
    pub enum ExitReason {
        /// `ecall` from VS-mode: an SBI call.
        Sbi => "sbi",
        /// Load from an emulated device (guest-page fault decoded as MMIO).
        MmioRead => "mmio-read",
        /// Store to an emulated device (guest-page fault decoded as MMIO).
        MmioWrite => "mmio-write",
        /// Guest-page fault not expressed as MMIO (first touch of RAM, unbacked address).
        GuestPageFault => "page-fault",
        /// The guest executed `wfi`.
        Wfi => "wfi",
        /// Virtual-instruction exception not emulated.
        VirtualInstruction => "virtual-insn",
        /// Host supervisor timer interrupt (end of slice, emulated guest timer).
        HostTimer => "host-timer",
        /// Host supervisor software interrupt (an IPI from another hart).
        HostIpi => "host-ipi",
        /// Host supervisor external interrupt.
        HostExternal => "host-external",
        /// Any other host interrupt cause.
        HostOther => "host-other",
        /// A trap the hypervisor does not handle (the VM is stopped).
        Unhandled => "unhandled",
    }
}

counter_key! {
    /// SBI extension a guest called, by extension ID (SBI specification v2.0
    /// plus the extensions `sbi-spec` knows from later versions).
    pub enum SbiExtension {
        /// Legacy extensions, EIDs 0x00..=0x0F (SBI v0.1).
        Legacy => "legacy",
        /// Base extension, EID 0x10.
        Base => "base",
        /// Timer extension, EID 0x54494D45 "TIME".
        Time => "time",
        /// IPI extension, EID 0x735049 "sPI".
        Ipi => "ipi",
        /// RFENCE extension, EID 0x52464E43 "RFNC".
        Rfence => "rfence",
        /// Hart state management extension, EID 0x48534D "HSM".
        Hsm => "hsm",
        /// System reset extension, EID 0x53525354 "SRST".
        Srst => "srst",
        /// Performance monitoring unit extension, EID 0x504D55 "PMU".
        Pmu => "pmu",
        /// Debug console extension, EID 0x4442434E "DBCN".
        Dbcn => "dbcn",
        /// System suspend extension, EID 0x53555350 "SUSP".
        Susp => "susp",
        /// CPPC extension, EID 0x43505043 "CPPC".
        Cppc => "cppc",
        /// Nested acceleration extension, EID 0x4E41434C "NACL".
        Nacl => "nacl",
        /// Steal-time accounting extension, EID 0x535441 "STA".
        Sta => "sta",
        /// Supervisor software events extension, EID 0x535345 "SSE".
        Sse => "sse",
        /// Firmware features extension, EID 0x46574654 "FWFT".
        Fwft => "fwft",
        /// Debug triggers extension, EID 0x44425452 "DBTR".
        Dbtr => "dbtr",
        /// Message proxy extension, EID 0x4D505859 "MPXY".
        Mpxy => "mpxy",
        /// Any other EID (experimental, vendor, firmware or unknown).
        Other => "other",
    }
}

impl SbiExtension {
    /// The extension an `ecall` with `a7 = eid` addresses.
    pub fn from_eid(eid: u64) -> Self {
        const BASE: u64 = sbi_spec::base::EID_BASE as u64;
        const TIME: u64 = sbi_spec::time::EID_TIME as u64;
        const IPI: u64 = sbi_spec::spi::EID_SPI as u64;
        const RFNC: u64 = sbi_spec::rfnc::EID_RFNC as u64;
        const HSM: u64 = sbi_spec::hsm::EID_HSM as u64;
        const SRST: u64 = sbi_spec::srst::EID_SRST as u64;
        const PMU: u64 = sbi_spec::pmu::EID_PMU as u64;
        const DBCN: u64 = sbi_spec::dbcn::EID_DBCN as u64;
        const SUSP: u64 = sbi_spec::susp::EID_SUSP as u64;
        const CPPC: u64 = sbi_spec::cppc::EID_CPPC as u64;
        const NACL: u64 = sbi_spec::nacl::EID_NACL as u64;
        const STA: u64 = sbi_spec::sta::EID_STA as u64;
        const SSE: u64 = sbi_spec::sse::EID_SSE as u64;
        const FWFT: u64 = sbi_spec::fwft::EID_FWFT as u64;
        const DBTR: u64 = sbi_spec::dbtr::EID_DBTR as u64;
        const MPXY: u64 = sbi_spec::mpxy::EID_MPXY as u64;
        match eid {
            0x00..=0x0F => SbiExtension::Legacy,
            BASE => SbiExtension::Base,
            TIME => SbiExtension::Time,
            IPI => SbiExtension::Ipi,
            RFNC => SbiExtension::Rfence,
            HSM => SbiExtension::Hsm,
            SRST => SbiExtension::Srst,
            PMU => SbiExtension::Pmu,
            DBCN => SbiExtension::Dbcn,
            SUSP => SbiExtension::Susp,
            CPPC => SbiExtension::Cppc,
            NACL => SbiExtension::Nacl,
            STA => SbiExtension::Sta,
            SSE => SbiExtension::Sse,
            FWFT => SbiExtension::Fwft,
            DBTR => SbiExtension::Dbtr,
            MPXY => SbiExtension::Mpxy,
            _ => SbiExtension::Other,
        }
    }
}

counter_key! {
    /// Virtual interrupt injected into a vCPU (the VS-level interrupts of the
    /// privileged specification: VSSIP, VSTIP, VSEIP in `hvip`).
    pub enum IrqKind {
        /// Virtual supervisor software interrupt (VSSIP): an IPI.
        Software => "software",
        /// Virtual supervisor timer interrupt (VSTIP).
        Timer => "timer",
        /// Virtual supervisor external interrupt (VSEIP): from the VM's PLIC.
        External => "external",
    }
}

/// Exits by reason.
pub type ExitCounts = Counts<ExitReason, { ExitReason::COUNT }>;
/// SBI calls by extension.
pub type SbiCounts = Counts<SbiExtension, { SbiExtension::COUNT }>;
/// Interrupts injected by kind.
pub type IrqCounts = Counts<IrqKind, { IrqKind::COUNT }>;
/// Exits by reason, shared between harts.
pub type AtomicExitCounts = AtomicCounts<ExitReason, { ExitReason::COUNT }>;
/// SBI calls by extension, shared between harts.
pub type AtomicSbiCounts = AtomicCounts<SbiExtension, { SbiExtension::COUNT }>;
/// Interrupts injected by kind, shared between harts.
pub type AtomicIrqCounts = AtomicCounts<IrqKind, { IrqKind::COUNT }>;

#[cfg(test)]
mod tests {
    use super::*;

    fn keys_consistent<K: CounterKey + core::fmt::Debug>(count: usize) {
        assert_eq!(K::ALL.len(), count);
        for (i, &k) in K::ALL.iter().enumerate() {
            assert_eq!(k.index(), i, "{k:?}");
            let name = k.name();
            assert!(!name.is_empty());
            assert!(name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'));
            // Names are unique.
            assert_eq!(K::ALL.iter().filter(|o| o.name() == name).count(), 1);
        }
    }

    #[test]
    fn key_lists_are_complete_and_ordered() {
        keys_consistent::<ExitReason>(ExitReason::COUNT);
        keys_consistent::<SbiExtension>(SbiExtension::COUNT);
        keys_consistent::<IrqKind>(IrqKind::COUNT);
        assert_eq!(ExitReason::COUNT, 11);
        assert_eq!(SbiExtension::COUNT, 18);
        assert_eq!(IrqKind::COUNT, 3);
    }

    /// EIDs as the SBI specification writes them (v2.0 chapter headings; SSE,
    /// FWFT, DBTR, MPXY from v3.0).
    #[test]
    fn eids_match_the_sbi_spec() {
        let spec: [(u64, SbiExtension); 16] = [
            (0x10, SbiExtension::Base),
            (0x5449_4D45, SbiExtension::Time),
            (0x0073_5049, SbiExtension::Ipi),
            (0x5246_4E43, SbiExtension::Rfence),
            (0x0048_534D, SbiExtension::Hsm),
            (0x5352_5354, SbiExtension::Srst),
            (0x0050_4D55, SbiExtension::Pmu),
            (0x4442_434E, SbiExtension::Dbcn),
            (0x5355_5350, SbiExtension::Susp),
            (0x4350_5043, SbiExtension::Cppc),
            (0x4E41_434C, SbiExtension::Nacl),
            (0x0053_5441, SbiExtension::Sta),
            (0x0053_5345, SbiExtension::Sse),
            (0x4657_4654, SbiExtension::Fwft),
            (0x4442_5452, SbiExtension::Dbtr),
            (0x4D50_5859, SbiExtension::Mpxy),
        ];
        for (eid, ext) in spec {
            assert_eq!(SbiExtension::from_eid(eid), ext, "{eid:#x}");
        }
        for eid in 0..=0x0F {
            assert_eq!(SbiExtension::from_eid(eid), SbiExtension::Legacy);
        }
        // Experimental, vendor and firmware ranges, and nonsense.
        for eid in [0x11, 0x0800_0000, 0x0900_0000, 0x0A00_0000, u64::MAX] {
            assert_eq!(SbiExtension::from_eid(eid), SbiExtension::Other, "{eid:#x}");
        }
    }

    #[test]
    fn counts_add_merge_total_saturate() {
        let mut a = ExitCounts::new();
        assert!(a.is_zero());
        a.record(ExitReason::Wfi);
        a.record(ExitReason::Wfi);
        a.add(ExitReason::Sbi, 5);
        assert_eq!(a.get(ExitReason::Wfi), 2);
        assert_eq!(a.get(ExitReason::Sbi), 5);
        assert_eq!(a.get(ExitReason::MmioRead), 0);
        assert_eq!(a.total(), 7);
        let nz: std::vec::Vec<_> = a.nonzero().collect();
        assert_eq!(nz, [(ExitReason::Sbi, 5), (ExitReason::Wfi, 2)]);
        let mut b = ExitCounts::new();
        b.set(ExitReason::Sbi, u64::MAX);
        a.merge(&b);
        assert_eq!(a.get(ExitReason::Sbi), u64::MAX);
        assert_eq!(a.total(), u64::MAX);
        a.add(ExitReason::Sbi, 1);
        assert_eq!(a.get(ExitReason::Sbi), u64::MAX);
    }

    #[test]
    fn atomic_counts_snapshot_and_reset() {
        static C: AtomicSbiCounts = AtomicSbiCounts::new();
        C.record(SbiExtension::Hsm);
        C.add(SbiExtension::Time, 3);
        let s = C.snapshot();
        assert_eq!(s.get(SbiExtension::Hsm), 1);
        assert_eq!(s.get(SbiExtension::Time), 3);
        assert_eq!(C.get(SbiExtension::Time), 3);
        assert_eq!(s.total(), 4);
        C.reset();
        assert!(C.snapshot().is_zero());
    }
}
