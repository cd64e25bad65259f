//! Firmware Features extension (FWFT, SBI v3.0 §18): feature ids, argument
//! checks and the order of its errors. The per-vCPU values and locks live in
//! the VM core, behind [`crate::SbiEnv`]'s `fwft_*` methods.

use sbi_spec::fwft;

use crate::{SbiEnv, SbiError};

/// `flags` bit 0 of `sbi_fwft_set`: LOCK (bits XLEN-1:1 are reserved, must be 0).
pub const FWFT_FLAG_LOCK: u64 = 1;

/// A standard FWFT feature (table "FWFT Feature Types"); the discriminant is
/// the spec's 32-bit feature id. All six are per-hart ("local") features.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum FwftFeature {
    /// `MISALIGNED_EXC_DELEG` (0): misaligned access exceptions go to S-mode.
    MisalignedExcDeleg = fwft::feature_type::MISALIGNED_EXC_DELEG as u32,
    /// `LANDING_PAD` (1): Zicfilp landing pads for S-mode.
    LandingPad = fwft::feature_type::LANDING_PAD as u32,
    /// `SHADOW_STACK` (2): Zicfiss shadow stacks for S-mode.
    ShadowStack = fwft::feature_type::SHADOW_STACK as u32,
    /// `DOUBLE_TRAP` (3): Ssdbltrp double-trap detection for S-mode.
    DoubleTrap = fwft::feature_type::DOUBLE_TRAP as u32,
    /// `PTE_AD_HW_UPDATING` (4): hardware updates of PTE A/D bits (Svadu).
    PteAdHwUpdating = fwft::feature_type::PTE_AD_HW_UPDATING as u32,
    /// `POINTER_MASKING_PMLEN` (5): pointer masking length for S-mode (Ssnpm).
    PointerMaskingPmlen = fwft::feature_type::POINTER_MASKING_PMLEN as u32,
}

impl FwftFeature {
    /// Every standard feature, in id order.
    pub const ALL: [FwftFeature; 6] = [
        FwftFeature::MisalignedExcDeleg,
        FwftFeature::LandingPad,
        FwftFeature::ShadowStack,
        FwftFeature::DoubleTrap,
        FwftFeature::PteAdHwUpdating,
        FwftFeature::PointerMaskingPmlen,
    ];

    /// The spec's feature id.
    pub const fn id(self) -> u32 {
        self as u32
    }

    /// The standard feature with this id; `None` for the reserved and
    /// platform-specific ranges (none of which is implemented here).
    pub fn from_id(id: u32) -> Option<Self> {
        Self::ALL.iter().copied().find(|f| f.id() == id)
    }

    /// Whether `value` is one the spec defines for this feature: 0 or 1, or
    /// for `POINTER_MASKING_PMLEN` a PMLEN (0..=XLEN).
    pub const fn value_is_valid(self, value: u64) -> bool {
        match self {
            FwftFeature::PointerMaskingPmlen => value <= 64,
            _ => value <= 1,
        }
    }
}

/// Why the VM core refused an `sbi_fwft_set` it had been asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FwftSetError {
    /// The core does not allow this value (`SBI_ERR_DENIED`), e.g. a
    /// delegation choice it passes through from the host and cannot change.
    Denied,
    /// The hardware refused the value (`SBI_ERR_FAILED`).
    Failed,
}

/// `sbi_fwft_set(feature, value, flags)`. Checks, in this order: reserved
/// `flags` bits (`INVALID_PARAM`), the feature id (`DENIED` for reserved and
/// platform-specific ids), whether this VM offers it (`NOT_SUPPORTED`), the
/// lock (`DENIED_LOCKED`), the value (`INVALID_PARAM`); then asks the core.
pub(crate) fn set<E: SbiEnv + ?Sized>(
    env: &mut E,
    feature: u64,
    value: u64,
    flags: u64,
) -> Result<u64, SbiError> {
    if flags & !FWFT_FLAG_LOCK != 0 {
        return Err(SbiError::InvalidParam);
    }
    let feature = known_feature(env, feature)?;
    if env.fwft_locked(feature) {
        return Err(SbiError::DeniedLocked);
    }
    if !feature.value_is_valid(value) {
        return Err(SbiError::InvalidParam);
    }
    env.fwft_set(feature, value, flags & FWFT_FLAG_LOCK != 0)
        .map_err(|e| match e {
            FwftSetError::Denied => SbiError::Denied,
            FwftSetError::Failed => SbiError::Failed,
        })?;
    Ok(0)
}

/// `sbi_fwft_get(feature)`: the calling vCPU's current value.
pub(crate) fn get<E: SbiEnv + ?Sized>(env: &E, feature: u64) -> Result<u64, SbiError> {
    let feature = known_feature(env, feature)?;
    env.fwft_get(feature).ok_or(SbiError::NotSupported)
}

/// The feature a `uint32_t feature` argument names (only the low 32 bits of
/// the register count): `SBI_ERR_DENIED` for reserved and unimplemented
/// platform-specific ids, `SBI_ERR_NOT_SUPPORTED` for a standard feature this
/// VM cannot offer.
fn known_feature<E: SbiEnv + ?Sized>(env: &E, raw: u64) -> Result<FwftFeature, SbiError> {
    let feature = FwftFeature::from_id(raw as u32).ok_or(SbiError::Denied)?;
    if env.fwft_get(feature).is_none() {
        return Err(SbiError::NotSupported);
    }
    Ok(feature)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feature_ids_match_the_spec_table() {
        let expected = [
            (FwftFeature::MisalignedExcDeleg, 0),
            (FwftFeature::LandingPad, 1),
            (FwftFeature::ShadowStack, 2),
            (FwftFeature::DoubleTrap, 3),
            (FwftFeature::PteAdHwUpdating, 4),
            (FwftFeature::PointerMaskingPmlen, 5),
        ];
        for (f, id) in expected {
            assert_eq!(f.id(), id);
            assert_eq!(FwftFeature::from_id(id), Some(f));
        }
        for id in [
            6,
            0x3fff_ffff,
            0x4000_0000,
            0x8000_0000,
            0xc000_0000,
            u32::MAX,
        ] {
            assert_eq!(FwftFeature::from_id(id), None, "{id:#x}");
        }
        assert_eq!(FWFT_FLAG_LOCK, 1);
    }

    #[test]
    fn values() {
        assert!(FwftFeature::PteAdHwUpdating.value_is_valid(1));
        assert!(!FwftFeature::PteAdHwUpdating.value_is_valid(2));
        assert!(FwftFeature::PointerMaskingPmlen.value_is_valid(7));
        assert!(!FwftFeature::PointerMaskingPmlen.value_is_valid(65));
    }
}
