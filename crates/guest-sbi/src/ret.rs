//! `struct sbiret` and the standard SBI error codes (SBI v2.0 §3, table
//! "Standard SBI Errors", plus the three codes SBI v3.0 adds, which FWFT uses).

use sbi_spec::binary as spec;

/// Converts one of `sbi-spec`'s `usize` error constants into the signed value
/// the guest sees in `a0` (the constants are two's-complement negatives).
const fn code(raw: usize) -> i64 {
    raw as isize as i64
}

/// A standard SBI error code (SBI v2.0 §3). Each variant's value is what the
/// guest reads in `a0` (`sbiret.error`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(i64)]
pub enum SbiError {
    /// `SBI_ERR_FAILED` (-1): failed for unspecified or unknown other reasons.
    Failed = code(spec::RET_ERR_FAILED),
    /// `SBI_ERR_NOT_SUPPORTED` (-2): unknown extension or function, or a
    /// function this implementation does not provide.
    NotSupported = code(spec::RET_ERR_NOT_SUPPORTED),
    /// `SBI_ERR_INVALID_PARAM` (-3): an argument is out of range or reserved.
    InvalidParam = code(spec::RET_ERR_INVALID_PARAM),
    /// `SBI_ERR_DENIED` (-4): the request is not allowed.
    Denied = code(spec::RET_ERR_DENIED),
    /// `SBI_ERR_INVALID_ADDRESS` (-5): an address argument is not valid.
    InvalidAddress = code(spec::RET_ERR_INVALID_ADDRESS),
    /// `SBI_ERR_ALREADY_AVAILABLE` (-6): the target is already available
    /// (e.g. `hart_start` on a hart that is not STOPPED).
    AlreadyAvailable = code(spec::RET_ERR_ALREADY_AVAILABLE),
    /// `SBI_ERR_ALREADY_STARTED` (-7): the operation was already started.
    AlreadyStarted = code(spec::RET_ERR_ALREADY_STARTED),
    /// `SBI_ERR_ALREADY_STOPPED` (-8): the operation was already stopped.
    AlreadyStopped = code(spec::RET_ERR_ALREADY_STOPPED),
    /// `SBI_ERR_NO_SHMEM` (-9): shared memory is not available.
    NoShmem = code(spec::RET_ERR_NO_SHMEM),
    /// `SBI_ERR_INVALID_STATE` (-10): invalid state.
    InvalidState = code(spec::RET_ERR_INVALID_STATE),
    /// `SBI_ERR_BAD_RANGE` (-11): bad (or invalid) range.
    BadRange = code(spec::RET_ERR_BAD_RANGE),
    /// `SBI_ERR_TIMEOUT` (-12, SBI v3.0): the operation timed out.
    Timeout = code(spec::RET_ERR_TIMEOUT),
    /// `SBI_ERR_IO` (-13, SBI v3.0): an input/output error.
    Io = code(spec::RET_ERR_IO),
    /// `SBI_ERR_DENIED_LOCKED` (-14, SBI v3.0): denied because the target is
    /// locked (e.g. an FWFT feature set with the LOCK flag).
    DeniedLocked = code(spec::RET_ERR_DENIED_LOCKED),
}

impl SbiError {
    /// Every standard error code, in table order.
    pub const ALL: [SbiError; 14] = [
        SbiError::Failed,
        SbiError::NotSupported,
        SbiError::InvalidParam,
        SbiError::Denied,
        SbiError::InvalidAddress,
        SbiError::AlreadyAvailable,
        SbiError::AlreadyStarted,
        SbiError::AlreadyStopped,
        SbiError::NoShmem,
        SbiError::InvalidState,
        SbiError::BadRange,
        SbiError::Timeout,
        SbiError::Io,
        SbiError::DeniedLocked,
    ];

    /// The value of `sbiret.error` for this error.
    pub const fn code(self) -> i64 {
        self as i64
    }

    /// The error with this `sbiret.error` value, if it is a standard one.
    pub fn from_code(code: i64) -> Option<Self> {
        Self::ALL.iter().copied().find(|e| e.code() == code)
    }
}

/// `struct sbiret { long error; long value; }`: what the guest reads in `a0`
/// (`error`) and `a1` (`value`) after an SBI call returns.
///
/// For the legacy extensions (EIDs 0x00..0x0F), which return only in `a0`,
/// [`crate::handle`] puts the legacy return value in `error` and the caller's
/// own `a1` in `value`, so the core can write both registers unconditionally
/// and `a1` still comes back unchanged, as the legacy convention requires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SbiRet {
    /// `sbiret.error`, written to `a0`: 0 (`SBI_SUCCESS`) or a negative [`SbiError`] code.
    pub error: i64,
    /// `sbiret.value`, written to `a1`.
    pub value: u64,
}

impl SbiRet {
    /// `SBI_SUCCESS` (0) with `value`.
    pub const fn success(value: u64) -> Self {
        Self { error: 0, value }
    }

    /// The error `e`; `value` is 0.
    pub const fn err(e: SbiError) -> Self {
        Self {
            error: e.code(),
            value: 0,
        }
    }

    /// The raw value for register `a0`.
    pub const fn a0(&self) -> u64 {
        self.error as u64
    }

    /// The raw value for register `a1`.
    pub const fn a1(&self) -> u64 {
        self.value
    }
}

impl From<Result<u64, SbiError>> for SbiRet {
    fn from(r: Result<u64, SbiError>) -> Self {
        match r {
            Ok(v) => SbiRet::success(v),
            Err(e) => SbiRet::err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_match_the_spec_table() {
        // SBI v2.0 §3, "Standard SBI Errors".
        let expected: [(SbiError, i64); 14] = [
            (SbiError::Failed, -1),
            (SbiError::NotSupported, -2),
            (SbiError::InvalidParam, -3),
            (SbiError::Denied, -4),
            (SbiError::InvalidAddress, -5),
            (SbiError::AlreadyAvailable, -6),
            (SbiError::AlreadyStarted, -7),
            (SbiError::AlreadyStopped, -8),
            (SbiError::NoShmem, -9),
            (SbiError::InvalidState, -10),
            (SbiError::BadRange, -11),
            (SbiError::Timeout, -12),
            (SbiError::Io, -13),
            (SbiError::DeniedLocked, -14),
        ];
        for (e, c) in expected {
            assert_eq!(e.code(), c, "{e:?}");
            assert_eq!(SbiError::from_code(c), Some(e));
        }
        assert_eq!(SbiError::from_code(0), None);
        assert_eq!(SbiError::from_code(-15), None);
    }

    #[test]
    fn register_encoding() {
        let r = SbiRet::err(SbiError::InvalidParam);
        assert_eq!(r.a0(), 0xffff_ffff_ffff_fffd);
        assert_eq!(r.a1(), 0);
        let s = SbiRet::success(0x1234);
        assert_eq!((s.a0(), s.a1()), (0, 0x1234));
        assert_eq!(
            SbiRet::from(Err(SbiError::Denied)),
            SbiRet::err(SbiError::Denied)
        );
        assert_eq!(SbiRet::from(Ok(7)), SbiRet::success(7));
    }
}
