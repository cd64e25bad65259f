//! The boot package: what the host tool hands the hypervisor.
//!
//! QEMU loads the hypervisor with `-kernel` and the package with `-initrd`; the
//! hypervisor finds it through `/chosen/linux,initrd-start` and `linux,initrd-end`
//! and calls [`Package::parse`]. Parsing validates everything up front (with checked
//! arithmetic and without allocating), so iterating afterwards cannot fail.
//!
//! # Format, version 2 (all integers little-endian)
//!
//! ```text
//! offset  size  header
//!      0     8  magic b"FVBOOTPK"
//!      8     4  version (2; version 1 had a CRC-32 as its checksum and no device or switch tables)
//!     12     4  vm_count (1..=MAX_VMS)
//!     16     8  total_size: bytes of the package (the input may be longer; the rest is ignored)
//!     24     4  checksum: [`checksum`] (a 64-bit word hash folded to 32 bits) of bytes [0, total_size) with this field as zero
//!     28     4  switch_count (0..=MAX_SWITCHES)
//!     32     8  switch table offset (0 when switch_count is 0): switch_count records (see `devices`)
//!     40     8  reserved, zero
//!     48        vm_count VM records of VM_RECORD_SIZE (160) bytes each
//!
//! VM record
//!      0     8  name offset         8  name length        (UTF-8, 1..=MAX_NAME_LEN bytes, no control characters)
//!     16     8  cmdline offset     24  cmdline length     (UTF-8, 0..=MAX_CMDLINE_LEN bytes, no NUL)
//!     32     4  vcpus (1..=MAX_VCPUS)
//!     36     4  flags (VmFlags: bit 0 CONSOLE_UART, 1 AUTOSTART, 2 CONSOLE_VIRTIO; unknown bits are rejected)
//!     40     8  memory_bytes (non-zero multiple of 2 MiB; RAM is [GUEST_RAM_BASE, +memory_bytes))
//!     48     8  entry GPA (even, inside the file-backed part of a segment)
//!     56     8  DTB GPA (4 KiB aligned; [dtb, dtb + DTB_SLOT_SIZE) inside RAM)
//!     64     8  segment table offset
//!     72     4  segment count (1..=MAX_SEGMENTS)
//!     76     4  has_initrd (0 or 1)
//!     80    32  initrd: a segment record (all zero when has_initrd is 0; mem_size = data length > 0)
//!    112     4  scheduling weight (0 = the default, DEFAULT_WEIGHT; else 1..=MAX_WEIGHT)
//!    116     4  pinned hart + 1 (0 = not pinned; else the vCPUs run only on hart value - 1, < MAX_PIN_HART)
//!    120     8  device table offset (0 when the device count is 0)
//!    128     4  device count (0..=MAX_DEVICES): device records (see `devices`)
//!    132    28  reserved, zero
//!
//! segment record (SEGMENT_RECORD_SIZE = 32 bytes)
//!      0     8  gpa
//!      8     8  data offset (0 when data length is 0)
//!     16     8  data length (bytes copied from the package)
//!     24     8  mem_size (>= data length, > 0; the rest is zero-filled: ELF bss)
//! ```
//!
//! Version 2 added the device and switch tables (VirtIO devices served from the
//! machine's own, issue #9) and replaced version 1's CRC-32 with a faster word
//! hash (issue #12); version 1 packages are refused.
//!
//! Everything a VM record points at (strings, segment and device tables, blobs) lies after the
//! VM table and inside `total_size`. Records may point at the same blob: VMs
//! booting the same kernel or initrd share one copy (the builder writes each
//! distinct blob once).
//!
//! **Page-copy guarantee.** A blob's data offset is congruent to its GPA modulo
//! [`PAGE_SIZE`], the 4 KiB pages around the blob lie inside the package, and the
//! bytes in those pages before and after the blob are zero. No two pieces of one VM
//! (segments, initrd, DTB slot) share a guest page. So the hypervisor may copy whole
//! pages: package page `align_down(data_offset)` + i goes to guest page
//! `align_down(gpa)` + i, then the remaining pages up to `align_up(gpa + mem_size)`
//! are zeroed. Copying byte-exactly is equally correct.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(any(test, feature = "alloc"))]
extern crate alloc;

#[cfg(any(test, feature = "alloc"))]
mod builder;
mod check;
mod devices;
mod error;
mod sum;

use core::fmt;

pub use fv_addr::GuestPhysAddr;

#[cfg(any(test, feature = "alloc"))]
pub use builder::{PackageBuilder, VmDescriptor};
pub use devices::{
    mac_is_valid, slot_gpa, DeviceKind, DeviceRule, SwitchRule, SwitchSpec, VmDevice, CONSOLE_SLOT,
    DEVICE_RECORD_SIZE, GUEST_VIRTIO_BASE, GUEST_VIRTIO_FIRST_IRQ, GUEST_VIRTIO_SLOTS,
    GUEST_VIRTIO_STRIDE, MAX_DEVICES, MAX_SWITCHES, SWITCH_RECORD_SIZE,
};
pub use error::{BootPkgError, Part};
pub use sum::checksum;

/// The 8 bytes every package starts with.
pub const MAGIC: [u8; 8] = *b"FVBOOTPK";
/// The format version this crate reads and writes.
pub const FORMAT_VERSION: u32 = 2;
/// Size of the package header in bytes.
pub const HEADER_SIZE: usize = 48;
/// Scheduling weight of a VM that asks for none.
pub const DEFAULT_WEIGHT: u32 = 100;
/// Largest scheduling weight.
pub const MAX_WEIGHT: u32 = 10_000;
/// Harts a VM can be pinned to: `0..MAX_PIN_HART`.
pub const MAX_PIN_HART: u32 = 64;

/// How a VM's vCPUs are scheduled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmSched {
    /// Share of CPU time relative to other vCPUs on the same hart (1..=[`MAX_WEIGHT`]).
    pub weight: u32,
    /// The hart (logical CPU index) every vCPU of the VM is pinned to, if any.
    pub pin: Option<u32>,
}

impl Default for VmSched {
    fn default() -> Self {
        Self {
            weight: DEFAULT_WEIGHT,
            pin: None,
        }
    }
}

/// Size of one VM record in bytes.
pub const VM_RECORD_SIZE: usize = 160;
/// Size of one segment record in bytes.
pub const SEGMENT_RECORD_SIZE: usize = 32;
/// Most VMs one package may describe.
pub const MAX_VMS: usize = 16;
/// Most vCPUs one VM may have.
pub const MAX_VCPUS: u32 = 64;
/// Most kernel segments one VM may have.
pub const MAX_SEGMENTS: usize = 64;
/// Longest VM name, in bytes.
pub const MAX_NAME_LEN: usize = 64;
/// Longest kernel command line, in bytes.
pub const MAX_CMDLINE_LEN: usize = 4096;
/// Guest RAM starts here in every VM (as on `qemu-system-riscv64 -M virt`).
pub const GUEST_RAM_BASE: GuestPhysAddr = GuestPhysAddr::new(0x8000_0000);
/// Guest RAM sizes are multiples of this (the hypervisor maps RAM in 2 MiB runs).
pub const MEMORY_GRANULE: u64 = 2 << 20;
/// Bytes reserved at the DTB GPA for the device tree the hypervisor generates.
pub const DTB_SLOT_SIZE: u64 = 64 << 10;
/// Page size the blob alignment refers to.
pub const PAGE_SIZE: u64 = fv_addr::PAGE_SIZE;

/// Byte offset of the checksum field in the header.
pub(crate) const CHECKSUM_OFFSET: usize = 24;

bitflags::bitflags! {
    /// Per-VM options. Unknown bits are rejected by the parser, so new flags need a
    /// new format version or a reader that knows them.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct VmFlags: u32 {
        /// The VM's console is the virtual ns16550a UART (at GPA `0x1000_0000`).
        const CONSOLE_UART = 1 << 0;
        /// The hypervisor starts the VM at boot rather than waiting to be told.
        const AUTOSTART = 1 << 1;
        /// The VM also has a virtio-console (virtio-mmio at GPA `0x1000_1000`,
        /// interrupt 1) and console input goes to it rather than to the UART
        /// (`console: virtio` in the config). Added in format version 1 as a
        /// new bit: older readers refuse a package that sets it (unknown
        /// flag), packages without it read as before.
        const CONSOLE_VIRTIO = 1 << 2;
    }
}

/// A piece of guest memory to fill: `data` at `gpa`, then zeros up to `mem_size`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Segment<'a> {
    /// Where the piece starts in guest physical memory.
    pub gpa: GuestPhysAddr,
    /// The bytes to copy to `gpa`.
    pub data: &'a [u8],
    /// Bytes of guest memory the piece covers (at least `data.len()`); the part past
    /// the data is zero (ELF bss).
    pub mem_size: u64,
}

impl fmt::Debug for Segment<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Segment")
            .field("gpa", &self.gpa)
            .field("data_len", &self.data.len())
            .field("mem_size", &self.mem_size)
            .finish()
    }
}

/// One VM as the package describes it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct VmSpec<'a> {
    /// The VM's name (unique in the package).
    pub name: &'a str,
    /// Number of vCPUs, `1..=MAX_VCPUS`.
    pub vcpus: u32,
    /// Guest RAM size; RAM is at [`GUEST_RAM_BASE`].
    pub memory_bytes: u64,
    /// The boot vCPU's first `pc`.
    pub entry: GuestPhysAddr,
    /// Where the hypervisor writes the guest's device tree (`a1` at entry); the
    /// [`DTB_SLOT_SIZE`] bytes there are reserved for it.
    pub dtb_gpa: GuestPhysAddr,
    /// The initial ramdisk, placed at its GPA and reported in `/chosen`.
    pub initrd: Option<Segment<'a>>,
    /// The kernel command line (`/chosen/bootargs`).
    pub cmdline: &'a str,
    /// Per-VM options.
    pub flags: VmFlags,
    /// How the VM's vCPUs are scheduled.
    pub sched: VmSched,
    /// The VM's segment records (validated), `SEGMENT_RECORD_SIZE` bytes each.
    segment_table: &'a [u8],
    /// The VM's device records (validated), `DEVICE_RECORD_SIZE` bytes each.
    device_table: &'a [u8],
    /// The whole package, which the segment records point into.
    package: &'a [u8],
}

impl<'a> VmSpec<'a> {
    /// The kernel image's pieces, in package order.
    pub fn segments(&self) -> impl Iterator<Item = Segment<'a>> + 'a {
        self.segments_iter()
    }

    pub(crate) fn segments_iter(&self) -> impl Iterator<Item = Segment<'a>> + Clone + 'a {
        let package = self.package;
        self.segment_table
            .chunks_exact(SEGMENT_RECORD_SIZE)
            .filter_map(move |rec| decode_blob(package, rec, 0, 0, Part::Segment(0)).ok())
    }

    /// Number of kernel segments.
    pub fn segment_count(&self) -> usize {
        self.segment_table.len() / SEGMENT_RECORD_SIZE
    }

    /// The VM's devices beyond the console, in package order (the host tool
    /// writes them in config order: disks, NICs, rng).
    pub fn devices(&self) -> impl Iterator<Item = VmDevice> + Clone + 'a {
        self.device_table
            .chunks_exact(DEVICE_RECORD_SIZE)
            .filter_map(|r| devices::decode_device(0, 0, r).ok())
    }

    /// Number of devices beyond the console.
    pub fn device_count(&self) -> usize {
        self.device_table.len() / DEVICE_RECORD_SIZE
    }
}

impl fmt::Debug for VmSpec<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VmSpec")
            .field("name", &self.name)
            .field("vcpus", &self.vcpus)
            .field("memory_bytes", &self.memory_bytes)
            .field("entry", &self.entry)
            .field("dtb_gpa", &self.dtb_gpa)
            .field("initrd", &self.initrd)
            .field("cmdline", &self.cmdline)
            .field("flags", &self.flags)
            .field("sched", &self.sched)
            .field("segments", &self.segment_count())
            .field("devices", &self.device_count())
            .finish()
    }
}

/// A validated boot package.
#[derive(Clone, Copy, Debug)]
pub struct Package<'a> {
    /// The package bytes, exactly `total_size` long.
    bytes: &'a [u8],
    vm_count: usize,
    /// The switch records (validated), `SWITCH_RECORD_SIZE` bytes each.
    switch_table: &'a [u8],
}

impl<'a> Package<'a> {
    /// Validates everything (magic, version, sizes, checksum, every offset/length in
    /// bounds with checked arithmetic, UTF-8 names, counts ≤ [`MAX_VMS`], vcpus
    /// `1..=MAX_VCPUS`, segments, initrd and DTB slot inside the VM's RAM and not
    /// sharing a page) so that iteration afterwards cannot fail. Does not allocate.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, BootPkgError> {
        let header = bytes.get(..HEADER_SIZE).ok_or(BootPkgError::Truncated)?;
        if header.get(..8) != Some(&MAGIC[..]) {
            return Err(BootPkgError::BadMagic);
        }
        let version = read_u32(header, 8)?;
        if version != FORMAT_VERSION {
            return Err(BootPkgError::UnsupportedVersion(version));
        }
        let vm_count = read_u32(header, 12)?;
        let total_size = read_u64(header, 16)?;
        let stored_checksum = read_u32(header, CHECKSUM_OFFSET)?;
        let switch_count = read_u32(header, 28)?;
        let switch_offset = read_u64(header, 32)?;
        if read_u64(header, 40)? != 0 {
            return Err(BootPkgError::ReservedNonZero { vm: None });
        }
        let total = usize::try_from(total_size).map_err(|_| BootPkgError::Truncated)?;
        let bytes = bytes.get(..total).ok_or(BootPkgError::Truncated)?;
        let actual = package_checksum(bytes);
        if actual != stored_checksum {
            return Err(BootPkgError::ChecksumMismatch {
                stored: stored_checksum,
                computed: actual,
            });
        }
        let count = usize::try_from(vm_count).map_err(|_| BootPkgError::TooManyVms(vm_count))?;
        if count == 0 {
            return Err(BootPkgError::NoVms);
        }
        if count > MAX_VMS {
            return Err(BootPkgError::TooManyVms(vm_count));
        }
        let data_start = data_start(count);
        if total < data_start {
            return Err(BootPkgError::BadTotalSize);
        }
        let switch_table = decode_switch_table(bytes, switch_offset, switch_count, data_start)?;
        let package = Package {
            bytes,
            vm_count: count,
            switch_table,
        };
        for (k, sw) in package.switches().enumerate() {
            devices::check_switch(vm_index(k), &sw, package.switches().take(k))?;
        }
        for i in 0..count {
            let vm = decode_vm(bytes, i, data_start)?;
            let index = vm_index(i);
            // Every segment record must decode, with its blob checks.
            for (k, rec) in vm
                .segment_table
                .chunks_exact(SEGMENT_RECORD_SIZE)
                .enumerate()
            {
                decode_blob(bytes, rec, data_start, index, Part::Segment(vm_index(k)))?;
            }
            check::check_vm(index, &check::facts(&vm))?;
            // Device records: structure, then the VM's own rules, then the
            // package-wide ones against every device before each.
            for (k, rec) in vm.device_table.chunks_exact(DEVICE_RECORD_SIZE).enumerate() {
                devices::decode_device(index, vm_index(k), rec)?;
            }
            devices::check_vm_devices(
                index,
                vm.devices(),
                vm.flags.contains(VmFlags::CONSOLE_VIRTIO),
                package.switch_count(),
            )?;
            for (k, d) in vm.devices().enumerate() {
                let earlier = (0..i)
                    .filter_map(|j| decode_vm(bytes, j, data_start).ok())
                    .flat_map(|o| o.devices())
                    .chain(vm.devices().take(k));
                let uplinks = package.switches().filter_map(|s| s.uplink);
                devices::check_against(index, vm_index(k), &d, earlier, uplinks)?;
            }
            // Names are unique: compare with the VMs before this one.
            for j in 0..i {
                let other = decode_vm(bytes, j, data_start)?;
                if other.name == vm.name {
                    return Err(BootPkgError::DuplicateName { vm: index });
                }
            }
        }
        Ok(package)
    }

    /// The VMs, in package order.
    pub fn vms(&self) -> impl Iterator<Item = VmSpec<'a>> + 'a {
        let bytes = self.bytes;
        let start = data_start(self.vm_count);
        (0..self.vm_count).filter_map(move |i| decode_vm(bytes, i, start).ok())
    }

    /// Number of VMs in the package.
    pub fn vm_count(&self) -> usize {
        self.vm_count
    }

    /// The machine's switches, in package order (a NIC's `switch` indexes this).
    pub fn switches(&self) -> impl Iterator<Item = SwitchSpec<'a>> + Clone + 'a {
        let bytes = self.bytes;
        self.switch_table
            .chunks_exact(SWITCH_RECORD_SIZE)
            .enumerate()
            .filter_map(move |(k, r)| decode_switch(bytes, vm_index(k), r).ok())
    }

    /// Number of switches.
    pub fn switch_count(&self) -> usize {
        self.switch_table.len() / SWITCH_RECORD_SIZE
    }

    /// The package's bytes (`total_size` long).
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }
}

/// First byte after the header and VM table.
fn data_start(vm_count: usize) -> usize {
    // vm_count <= MAX_VMS, so this cannot overflow.
    HEADER_SIZE + vm_count.min(MAX_VMS) * VM_RECORD_SIZE
}

fn vm_index(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(u32::MAX)
}

/// The package's checksum ([`checksum`]) with the checksum field taken as zero.
pub(crate) fn package_checksum(bytes: &[u8]) -> u32 {
    sum::checksum_without(bytes, CHECKSUM_OFFSET)
}

pub(crate) fn read_u32(b: &[u8], off: usize) -> Result<u32, BootPkgError> {
    let end = off.checked_add(4).ok_or(BootPkgError::Truncated)?;
    let s = b.get(off..end).ok_or(BootPkgError::Truncated)?;
    let mut a = [0u8; 4];
    a.copy_from_slice(s);
    Ok(u32::from_le_bytes(a))
}

pub(crate) fn read_u64(b: &[u8], off: usize) -> Result<u64, BootPkgError> {
    let end = off.checked_add(8).ok_or(BootPkgError::Truncated)?;
    let s = b.get(off..end).ok_or(BootPkgError::Truncated)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Ok(u64::from_le_bytes(a))
}

/// `package[offset, offset + len)`, provided it lies in `[data_start, package.len())`.
fn region(
    package: &[u8],
    offset: u64,
    len: u64,
    data_start: usize,
    vm: u32,
    part: Part,
) -> Result<&[u8], BootPkgError> {
    let oob = BootPkgError::OutOfBounds { vm, part };
    let start = usize::try_from(offset).map_err(|_| oob)?;
    let len = usize::try_from(len).map_err(|_| oob)?;
    let end = start.checked_add(len).ok_or(oob)?;
    if start < data_start {
        return Err(oob);
    }
    package.get(start..end).ok_or(oob)
}

/// Decodes VM record `i` structurally: every region it references is in bounds,
/// strings are UTF-8, reserved fields are zero. Semantic checks are in `check`.
fn decode_vm(package: &[u8], i: usize, data_start: usize) -> Result<VmSpec<'_>, BootPkgError> {
    let vm = vm_index(i);
    let base = i
        .checked_mul(VM_RECORD_SIZE)
        .and_then(|o| o.checked_add(HEADER_SIZE))
        .ok_or(BootPkgError::Truncated)?;
    let end = base
        .checked_add(VM_RECORD_SIZE)
        .ok_or(BootPkgError::Truncated)?;
    let rec = package.get(base..end).ok_or(BootPkgError::Truncated)?;

    let name_bytes = region(
        package,
        read_u64(rec, 0)?,
        read_u64(rec, 8)?,
        data_start,
        vm,
        Part::Name,
    )?;
    let name = core::str::from_utf8(name_bytes).map_err(|_| BootPkgError::BadName { vm })?;
    let cmdline_bytes = region(
        package,
        read_u64(rec, 16)?,
        read_u64(rec, 24)?,
        data_start,
        vm,
        Part::CommandLine,
    )?;
    let cmdline =
        core::str::from_utf8(cmdline_bytes).map_err(|_| BootPkgError::BadCommandLine { vm })?;
    let vcpus = read_u32(rec, 32)?;
    let flag_bits = read_u32(rec, 36)?;
    let flags = VmFlags::from_bits(flag_bits).ok_or(BootPkgError::UnknownFlags {
        vm,
        bits: flag_bits,
    })?;
    let memory_bytes = read_u64(rec, 40)?;
    let entry = GuestPhysAddr::new(read_u64(rec, 48)?);
    let dtb_gpa = GuestPhysAddr::new(read_u64(rec, 56)?);
    let seg_off = read_u64(rec, 64)?;
    let seg_count = read_u32(rec, 72)?;
    let count = usize::try_from(seg_count).map_err(|_| BootPkgError::TooManySegments {
        vm,
        count: seg_count,
    })?;
    if count == 0 {
        return Err(BootPkgError::NoSegments { vm });
    }
    if count > MAX_SEGMENTS {
        return Err(BootPkgError::TooManySegments {
            vm,
            count: seg_count,
        });
    }
    // count <= MAX_SEGMENTS: no overflow.
    let table_len = (count * SEGMENT_RECORD_SIZE) as u64;
    let segment_table = region(
        package,
        seg_off,
        table_len,
        data_start,
        vm,
        Part::SegmentTable,
    )?;
    let initrd_rec = rec.get(80..112).ok_or(BootPkgError::Truncated)?;
    let initrd = match read_u32(rec, 76)? {
        0 => {
            if initrd_rec.iter().any(|&b| b != 0) {
                return Err(BootPkgError::ReservedNonZero { vm: Some(vm) });
            }
            None
        }
        1 => Some(decode_blob(
            package,
            initrd_rec,
            data_start,
            vm,
            Part::Initrd,
        )?),
        value => return Err(BootPkgError::BadInitrdMarker { vm, value }),
    };
    if rec.get(132..).is_none_or(|r| r.iter().any(|&b| b != 0)) {
        return Err(BootPkgError::ReservedNonZero { vm: Some(vm) });
    }
    let dev_off = read_u64(rec, 120)?;
    let dev_count = read_u32(rec, 128)?;
    let too_many = BootPkgError::TooManyDevices {
        vm,
        count: dev_count,
    };
    let dev_n = usize::try_from(dev_count).map_err(|_| too_many)?;
    if dev_n > MAX_DEVICES {
        return Err(too_many);
    }
    let device_table = if dev_n == 0 {
        if dev_off != 0 {
            return Err(BootPkgError::ReservedNonZero { vm: Some(vm) });
        }
        &[][..]
    } else {
        // dev_n <= MAX_DEVICES: no overflow.
        region(
            package,
            dev_off,
            (dev_n * DEVICE_RECORD_SIZE) as u64,
            data_start,
            vm,
            Part::DeviceTable,
        )?
    };
    let weight = match read_u32(rec, 112)? {
        0 => DEFAULT_WEIGHT,
        w if w <= MAX_WEIGHT => w,
        value => return Err(BootPkgError::BadWeight { vm, value }),
    };
    let pin = match read_u32(rec, 116)? {
        0 => None,
        p if p <= MAX_PIN_HART => Some(p - 1),
        value => return Err(BootPkgError::BadPin { vm, value }),
    };
    let sched = VmSched { weight, pin };
    Ok(VmSpec {
        sched,
        name,
        vcpus,
        memory_bytes,
        entry,
        dtb_gpa,
        initrd,
        cmdline,
        flags,
        segment_table,
        device_table,
        package,
    })
}

/// The switch table: `count` records at `offset`, in the data area.
fn decode_switch_table(
    package: &[u8],
    offset: u64,
    count: u32,
    data_start: usize,
) -> Result<&[u8], BootPkgError> {
    let n = usize::try_from(count).map_err(|_| BootPkgError::TooManySwitches(count))?;
    if n > MAX_SWITCHES {
        return Err(BootPkgError::TooManySwitches(count));
    }
    if n == 0 {
        if offset != 0 {
            return Err(BootPkgError::ReservedNonZero { vm: None });
        }
        return Ok(&[]);
    }
    let oob = BootPkgError::SwitchOutOfBounds { switch: 0 };
    let start = usize::try_from(offset).map_err(|_| oob)?;
    // n <= MAX_SWITCHES: no overflow.
    let end = start.checked_add(n * SWITCH_RECORD_SIZE).ok_or(oob)?;
    if start < data_start {
        return Err(oob);
    }
    let table = package.get(start..end).ok_or(oob)?;
    for (k, r) in table.chunks_exact(SWITCH_RECORD_SIZE).enumerate() {
        decode_switch(package, vm_index(k), r)?;
    }
    Ok(table)
}

/// Decodes switch record `index` (structure: name in bounds and UTF-8,
/// reserved zero).
fn decode_switch<'a>(
    package: &'a [u8],
    index: u32,
    r: &[u8],
) -> Result<SwitchSpec<'a>, BootPkgError> {
    let oob = BootPkgError::SwitchOutOfBounds { switch: index };
    if read_u64(r, 24)? != 0 {
        return Err(BootPkgError::ReservedNonZero { vm: None });
    }
    let start = usize::try_from(read_u64(r, 0)?).map_err(|_| oob)?;
    let len = usize::try_from(read_u64(r, 8)?).map_err(|_| oob)?;
    let end = start.checked_add(len).ok_or(oob)?;
    let name = package
        .get(start..end)
        .and_then(|b| core::str::from_utf8(b).ok())
        .ok_or(oob)?;
    let uplink = match read_u64(r, 16)? {
        0 => None,
        base => Some(base),
    };
    Ok(SwitchSpec { name, uplink })
}

/// Decodes a segment record and checks its blob: in bounds, congruent to its GPA
/// modulo the page size, surrounded by zero bytes up to the page boundaries.
fn decode_blob<'a>(
    package: &'a [u8],
    rec: &[u8],
    data_start: usize,
    vm: u32,
    part: Part,
) -> Result<Segment<'a>, BootPkgError> {
    let gpa = read_u64(rec, 0)?;
    let offset = read_u64(rec, 8)?;
    let len = read_u64(rec, 16)?;
    let mem_size = read_u64(rec, 24)?;
    if len == 0 {
        if offset != 0 {
            return Err(BootPkgError::Misaligned { vm, part });
        }
        return Ok(Segment {
            gpa: GuestPhysAddr::new(gpa),
            data: &[],
            mem_size,
        });
    }
    let data = region(package, offset, len, data_start, vm, part)?;
    if offset % PAGE_SIZE != gpa % PAGE_SIZE {
        return Err(BootPkgError::Misaligned { vm, part });
    }
    // The surrounding pages: [align_down(offset), align_up(offset + len)).
    let oob = BootPkgError::OutOfBounds { vm, part };
    let page_start = offset - offset % PAGE_SIZE;
    let end = offset.checked_add(len).ok_or(oob)?;
    let page_end = end
        .checked_add(PAGE_SIZE - 1)
        .map(|e| e - e % PAGE_SIZE)
        .ok_or(oob)?;
    let head = package
        .get(
            usize::try_from(page_start).map_err(|_| oob)?
                ..usize::try_from(offset).map_err(|_| oob)?,
        )
        .ok_or(oob)?;
    let tail = package
        .get(usize::try_from(end).map_err(|_| oob)?..usize::try_from(page_end).map_err(|_| oob)?)
        .ok_or(oob)?;
    if head.iter().chain(tail).any(|&b| b != 0) {
        return Err(BootPkgError::NonZeroPadding { vm, part });
    }
    Ok(Segment {
        gpa: GuestPhysAddr::new(gpa),
        data,
        mem_size,
    })
}

#[cfg(test)]
mod tests;
