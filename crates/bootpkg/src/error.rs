//! What can be wrong with a boot package.

use core::fmt;

/// Which part of a VM an error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// The VM's name.
    Name,
    /// The kernel command line.
    CommandLine,
    /// The table of segment records.
    SegmentTable,
    /// Kernel segment number `n` (0-based, in package order).
    Segment(u32),
    /// The initial ramdisk.
    Initrd,
    /// The slot reserved for the guest device tree.
    Dtb,
    /// The entry point.
    Entry,
    /// The table of device records.
    DeviceTable,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Part::Name => f.write_str("name"),
            Part::CommandLine => f.write_str("command line"),
            Part::SegmentTable => f.write_str("segment table"),
            Part::Segment(n) => write!(f, "segment {n}"),
            Part::Initrd => f.write_str("initrd"),
            Part::Dtb => f.write_str("DTB slot"),
            Part::Entry => f.write_str("entry point"),
            Part::DeviceTable => f.write_str("device table"),
        }
    }
}

/// Why a package was rejected (by [`crate::Package::parse`]) or a VM refused (by the
/// builder). `vm` is the 0-based index of the VM record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootPkgError {
    /// The bytes end before the header, the VM table or `total_size`.
    Truncated,
    /// A VM's scheduling weight is above [`crate::MAX_WEIGHT`].
    BadWeight {
        /// The VM record.
        vm: u32,
        /// The weight found.
        value: u32,
    },
    /// A VM's pinned hart is not below [`crate::MAX_PIN_HART`].
    BadPin {
        /// The VM record.
        vm: u32,
        /// The field's value (hart + 1).
        value: u32,
    },
    /// The package does not start with [`crate::MAGIC`].
    BadMagic,
    /// The format version is not [`crate::FORMAT_VERSION`].
    UnsupportedVersion(u32),
    /// The checksum in the header does not match the package's bytes.
    ChecksumMismatch {
        /// The checksum stored in the header.
        stored: u32,
        /// The checksum of the bytes.
        computed: u32,
    },
    /// `total_size` is smaller than the header and VM table.
    BadTotalSize,
    /// A reserved field is not zero (`vm` is `None` for the header).
    ReservedNonZero {
        /// The VM record, or `None` for the header.
        vm: Option<u32>,
    },
    /// The package describes no VM.
    NoVms,
    /// More than [`crate::MAX_VMS`] VMs.
    TooManyVms(u32),
    /// An offset/length pair points outside the package's data area.
    OutOfBounds {
        /// The VM record.
        vm: u32,
        /// What the offset belongs to.
        part: Part,
    },
    /// The name is empty, too long, not UTF-8 or contains control characters.
    BadName {
        /// The VM record.
        vm: u32,
    },
    /// Two VMs have the same name.
    DuplicateName {
        /// The second VM record with the name.
        vm: u32,
    },
    /// The command line is too long, not UTF-8 or contains a NUL byte.
    BadCommandLine {
        /// The VM record.
        vm: u32,
    },
    /// The vCPU count is outside `1..=MAX_VCPUS`.
    BadVcpuCount {
        /// The VM record.
        vm: u32,
        /// The count found.
        vcpus: u32,
    },
    /// The memory size is zero, not a multiple of [`crate::MEMORY_GRANULE`], or RAM
    /// would end beyond the 64-bit address space.
    BadMemorySize {
        /// The VM record.
        vm: u32,
        /// The size found.
        bytes: u64,
    },
    /// The flags have bits no [`crate::VmFlags`] constant defines.
    UnknownFlags {
        /// The VM record.
        vm: u32,
        /// The flag word found.
        bits: u32,
    },
    /// The initrd marker is neither 0 nor 1.
    BadInitrdMarker {
        /// The VM record.
        vm: u32,
        /// The marker found.
        value: u32,
    },
    /// The VM has no kernel segment.
    NoSegments {
        /// The VM record.
        vm: u32,
    },
    /// More than [`crate::MAX_SEGMENTS`] kernel segments.
    TooManySegments {
        /// The VM record.
        vm: u32,
        /// The count found.
        count: u32,
    },
    /// A segment's `mem_size` is zero or smaller than its data, or the initrd's
    /// `mem_size` differs from its (non-empty) data length.
    BadSegmentSize {
        /// The VM record.
        vm: u32,
        /// The segment.
        part: Part,
    },
    /// A blob's offset is not congruent to its GPA modulo the page size (or an empty
    /// blob has a non-zero offset), the DTB slot is not page aligned, or the entry
    /// point is odd.
    Misaligned {
        /// The VM record.
        vm: u32,
        /// The part.
        part: Part,
    },
    /// The bytes sharing a page with a blob are not zero.
    NonZeroPadding {
        /// The VM record.
        vm: u32,
        /// The blob.
        part: Part,
    },
    /// A piece lies (partly) outside the VM's RAM.
    OutsideRam {
        /// The VM record.
        vm: u32,
        /// The piece.
        part: Part,
    },
    /// Two pieces of one VM overlap or share a guest page.
    Overlap {
        /// The VM record.
        vm: u32,
        /// One piece.
        first: Part,
        /// The other piece.
        second: Part,
    },
    /// The entry point is not inside the file-backed part of a kernel segment.
    EntryNotInImage {
        /// The VM record.
        vm: u32,
    },
    /// More than [`crate::MAX_DEVICES`] devices in one VM.
    TooManyDevices {
        /// The VM record.
        vm: u32,
        /// The count found.
        count: u32,
    },
    /// A device record has an unknown kind, or flags or fields its kind does not use.
    BadDevice {
        /// The VM record.
        vm: u32,
        /// The device record (0-based within the VM).
        device: u32,
    },
    /// A device breaks a rule of [`crate::DeviceRule`].
    DeviceRule {
        /// The VM record.
        vm: u32,
        /// The device record (0-based within the VM).
        device: u32,
        /// The rule.
        reason: crate::DeviceRule,
    },
    /// More than [`crate::MAX_SWITCHES`] switches.
    TooManySwitches(u32),
    /// A switch record points outside the package or its name is not UTF-8.
    SwitchOutOfBounds {
        /// The switch record.
        switch: u32,
    },
    /// A switch breaks a rule of [`crate::SwitchRule`].
    BadSwitch {
        /// The switch record.
        switch: u32,
        /// The rule.
        reason: crate::SwitchRule,
    },
}

impl fmt::Display for BootPkgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use BootPkgError as E;
        match *self {
            E::Truncated => f.write_str("boot package is truncated"),
            E::BadWeight { vm, value } => write!(
                f,
                "VM {vm}: scheduling weight {value} is outside 1..={}",
                crate::MAX_WEIGHT
            ),
            E::BadPin { vm, value } => write!(
                f,
                "VM {vm}: pinned hart field {value} is beyond hart {}",
                crate::MAX_PIN_HART - 1
            ),
            E::BadMagic => f.write_str("not a boot package (bad magic)"),
            E::UnsupportedVersion(v) => write!(f, "unsupported boot package version {v}"),
            E::ChecksumMismatch { stored, computed } => write!(
                f,
                "boot package checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
            ),
            E::BadTotalSize => f.write_str("boot package total size is smaller than its tables"),
            E::ReservedNonZero { vm: None } => f.write_str("reserved header field is not zero"),
            E::ReservedNonZero { vm: Some(vm) } => {
                write!(f, "VM {vm}: reserved field is not zero")
            }
            E::NoVms => f.write_str("boot package describes no VM"),
            E::TooManyVms(n) => write!(f, "{n} VMs (at most {})", crate::MAX_VMS),
            E::OutOfBounds { vm, part } => write!(f, "VM {vm}: {part} lies outside the package"),
            E::BadName { vm } => write!(
                f,
                "VM {vm}: name must be 1..={} bytes of UTF-8 without control characters",
                crate::MAX_NAME_LEN
            ),
            E::DuplicateName { vm } => write!(f, "VM {vm}: name used by an earlier VM"),
            E::BadCommandLine { vm } => write!(
                f,
                "VM {vm}: command line must be at most {} bytes of UTF-8 without NUL",
                crate::MAX_CMDLINE_LEN
            ),
            E::BadVcpuCount { vm, vcpus } => write!(
                f,
                "VM {vm}: {vcpus} vCPUs (must be 1..={})",
                crate::MAX_VCPUS
            ),
            E::BadMemorySize { vm, bytes } => write!(
                f,
                "VM {vm}: memory size {bytes:#x} is not a non-zero multiple of 2 MiB"
            ),
            E::UnknownFlags { vm, bits } => write!(f, "VM {vm}: unknown flags {bits:#x}"),
            E::BadInitrdMarker { vm, value } => {
                write!(f, "VM {vm}: initrd marker {value} (must be 0 or 1)")
            }
            E::NoSegments { vm } => write!(f, "VM {vm}: no kernel segment"),
            E::TooManySegments { vm, count } => write!(
                f,
                "VM {vm}: {count} segments (at most {})",
                crate::MAX_SEGMENTS
            ),
            E::BadSegmentSize { vm, part } => write!(f, "VM {vm}: {part} has a bad size"),
            E::Misaligned { vm, part } => write!(f, "VM {vm}: {part} is misaligned"),
            E::NonZeroPadding { vm, part } => {
                write!(f, "VM {vm}: padding around {part} is not zero")
            }
            E::OutsideRam { vm, part } => write!(f, "VM {vm}: {part} lies outside guest RAM"),
            E::Overlap { vm, first, second } => {
                write!(f, "VM {vm}: {first} and {second} overlap or share a page")
            }
            E::EntryNotInImage { vm } => {
                write!(f, "VM {vm}: entry point is not inside the kernel image")
            }
            E::TooManyDevices { vm, count } => write!(
                f,
                "VM {vm}: {count} devices (at most {})",
                crate::MAX_DEVICES
            ),
            E::BadDevice { vm, device } => {
                write!(f, "VM {vm}: device {device}: malformed device record")
            }
            E::DeviceRule { vm, device, reason } => {
                write!(f, "VM {vm}: device {device}: {reason}")
            }
            E::TooManySwitches(n) => write!(f, "{n} switches (at most {})", crate::MAX_SWITCHES),
            E::SwitchOutOfBounds { switch } => {
                write!(
                    f,
                    "switch {switch}: name lies outside the package or is not UTF-8"
                )
            }
            E::BadSwitch { switch, reason } => write!(f, "switch {switch}: {reason}"),
        }
    }
}

impl core::error::Error for BootPkgError {}
