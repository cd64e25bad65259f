//! VM devices beyond the console (virtio-blk, virtio-net, virtio-rng) and the
//! machine's switches: their records, how they decode and the rules they follow.
//!
//! ```text
//! device record (DEVICE_RECORD_SIZE = 32 bytes)
//!      0     1  kind: 1 block, 2 net, 3 rng
//!      1     1  guest slot (< GUEST_VIRTIO_SLOTS)
//!      2     2  flags: block bit 0 = read-only; zero for the other kinds
//!      4     2  net: switch index (< switch count); zero for the other kinds
//!      6     6  net: MAC address; zero for the other kinds
//!     12     4  reserved, zero
//!     16     8  block, rng: the machine's virtio-mmio device at this base serves it; net: zero
//!     24     8  reserved, zero
//!
//! switch record (SWITCH_RECORD_SIZE = 32 bytes)
//!      0     8  name offset     8  name length   (like a VM name)
//!     16     8  uplink: base of the machine's virtio-net that is the switch's uplink, 0 = none
//!     24     8  reserved, zero
//! ```

use crate::{read_u64, BootPkgError, GuestPhysAddr, MAX_NAME_LEN, PAGE_SIZE};

/// Bytes of a device record.
pub const DEVICE_RECORD_SIZE: usize = 32;
/// Bytes of a switch record.
pub const SWITCH_RECORD_SIZE: usize = 32;
/// Where guest virtio-mmio slot 0 is; slot `s` is at
/// `GUEST_VIRTIO_BASE + s * GUEST_VIRTIO_STRIDE` (QEMU `virt`'s layout).
pub const GUEST_VIRTIO_BASE: GuestPhysAddr = GuestPhysAddr::new(0x1000_1000);
/// Distance between guest virtio-mmio slots.
pub const GUEST_VIRTIO_STRIDE: u64 = 0x1000;
/// Guest virtio-mmio slots every VM has.
pub const GUEST_VIRTIO_SLOTS: u8 = 8;
/// PLIC source of guest slot 0; slot `s` has source `GUEST_VIRTIO_FIRST_IRQ + s`.
pub const GUEST_VIRTIO_FIRST_IRQ: u32 = 1;
/// The virtio-console's slot when [`crate::VmFlags::CONSOLE_VIRTIO`] is set;
/// devices then use the others.
pub const CONSOLE_SLOT: u8 = 0;
/// Devices one VM may have (every guest slot).
pub const MAX_DEVICES: usize = GUEST_VIRTIO_SLOTS as usize;
/// Switches one package may define.
pub const MAX_SWITCHES: usize = 16;

const KIND_BLOCK: u8 = 1;
const KIND_NET: u8 = 2;
const KIND_RNG: u8 = 3;
const FLAG_READ_ONLY: u16 = 1;

/// A VM device beyond the console.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmDevice {
    /// The guest virtio-mmio slot it sits in (see [`GUEST_VIRTIO_BASE`]).
    pub slot: u8,
    /// What it is and what serves it.
    pub kind: DeviceKind,
}

impl VmDevice {
    /// Where the device's registers are in guest-physical memory.
    pub fn gpa(&self) -> GuestPhysAddr {
        slot_gpa(self.slot)
    }

    /// The device's PLIC source.
    pub fn irq(&self) -> u32 {
        GUEST_VIRTIO_FIRST_IRQ + u32::from(self.slot)
    }
}

/// Guest-physical address of guest virtio-mmio slot `slot`.
pub fn slot_gpa(slot: u8) -> GuestPhysAddr {
    GuestPhysAddr::new(GUEST_VIRTIO_BASE.raw() + u64::from(slot) * GUEST_VIRTIO_STRIDE)
}

/// What a [`VmDevice`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceKind {
    /// virtio-blk served from the machine's own virtio-blk whose virtio-mmio
    /// registers are at `host_base`.
    Block {
        /// Base of the machine's virtio-mmio device.
        host_base: u64,
        /// The guest may not write (`VIRTIO_BLK_F_RO`).
        read_only: bool,
    },
    /// virtio-net: a port on a switch.
    Net {
        /// Index into [`crate::Package::switches`].
        switch: u16,
        /// The NIC's MAC address (unicast, not zero, unique in the package).
        mac: [u8; 6],
    },
    /// virtio-rng fed from the machine's own virtio-rng at `host_base` (several
    /// VMs may share one).
    Rng {
        /// Base of the machine's virtio-mmio device.
        host_base: u64,
    },
}

impl DeviceKind {
    /// The machine device serving it, if any.
    pub fn host_base(&self) -> Option<u64> {
        match *self {
            DeviceKind::Block { host_base, .. } | DeviceKind::Rng { host_base } => Some(host_base),
            DeviceKind::Net { .. } => None,
        }
    }
}

/// A switch (machine level).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SwitchSpec<'a> {
    /// Its name (unique in the package).
    pub name: &'a str,
    /// Base of the machine's virtio-net that is its uplink, if it has one.
    pub uplink: Option<u64>,
}

/// Encodes `d` as a device record (the builder's; the parser only decodes).
#[cfg(any(test, feature = "alloc"))]
pub(crate) fn encode_device(d: &VmDevice) -> [u8; DEVICE_RECORD_SIZE] {
    let mut r = [0u8; DEVICE_RECORD_SIZE];
    r[1] = d.slot;
    match d.kind {
        DeviceKind::Block {
            host_base,
            read_only,
        } => {
            r[0] = KIND_BLOCK;
            let flags = if read_only { FLAG_READ_ONLY } else { 0 };
            r[2..4].copy_from_slice(&flags.to_le_bytes());
            r[16..24].copy_from_slice(&host_base.to_le_bytes());
        }
        DeviceKind::Net { switch, mac } => {
            r[0] = KIND_NET;
            r[4..6].copy_from_slice(&switch.to_le_bytes());
            r[6..12].copy_from_slice(&mac);
        }
        DeviceKind::Rng { host_base } => {
            r[0] = KIND_RNG;
            r[16..24].copy_from_slice(&host_base.to_le_bytes());
        }
    }
    r
}

/// Decodes a device record (structure only: kinds, flags, reserved bytes).
pub(crate) fn decode_device(vm: u32, index: u32, r: &[u8]) -> Result<VmDevice, BootPkgError> {
    let bad = BootPkgError::BadDevice { vm, device: index };
    if r.len() != DEVICE_RECORD_SIZE {
        return Err(BootPkgError::Truncated);
    }
    let flags = u16::from_le_bytes([r[2], r[3]]);
    let switch = u16::from_le_bytes([r[4], r[5]]);
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&r[6..12]);
    let base = read_u64(r, 16)?;
    if r[12..16].iter().chain(&r[24..32]).any(|&b| b != 0) {
        return Err(BootPkgError::ReservedNonZero { vm: Some(vm) });
    }
    let no_net_fields = switch == 0 && mac == [0; 6];
    let kind = match r[0] {
        KIND_BLOCK if flags & !FLAG_READ_ONLY == 0 && no_net_fields => DeviceKind::Block {
            host_base: base,
            read_only: flags & FLAG_READ_ONLY != 0,
        },
        KIND_NET if flags == 0 && base == 0 => DeviceKind::Net { switch, mac },
        KIND_RNG if flags == 0 && no_net_fields => DeviceKind::Rng { host_base: base },
        _ => return Err(bad),
    };
    Ok(VmDevice { slot: r[1], kind })
}

/// Whether `mac` is a unicast address other than all zeros.
pub fn mac_is_valid(mac: &[u8; 6]) -> bool {
    mac[0] & 1 == 0 && *mac != [0; 6]
}

/// A host base is non-zero and page aligned.
fn base_ok(base: u64) -> bool {
    base != 0 && base.is_multiple_of(PAGE_SIZE)
}

/// The rules for one VM's devices alone: slots in range, unique, not the
/// console's when it has a virtio-console; MACs valid; bases aligned; switch
/// indices below `switch_count`.
pub(crate) fn check_vm_devices(
    vm: u32,
    devices: impl Iterator<Item = VmDevice> + Clone,
    console_virtio: bool,
    switch_count: usize,
) -> Result<(), BootPkgError> {
    for (k, d) in devices.clone().enumerate() {
        let device = u32::try_from(k).unwrap_or(u32::MAX);
        let err = |reason| BootPkgError::DeviceRule { vm, device, reason };
        if d.slot >= GUEST_VIRTIO_SLOTS {
            return Err(err(DeviceRule::SlotOutOfRange));
        }
        if console_virtio && d.slot == CONSOLE_SLOT {
            return Err(err(DeviceRule::ConsoleSlot));
        }
        if devices.clone().take(k).any(|o| o.slot == d.slot) {
            return Err(err(DeviceRule::SlotTaken));
        }
        match d.kind {
            DeviceKind::Net { switch, mac } => {
                if usize::from(switch) >= switch_count {
                    return Err(err(DeviceRule::NoSuchSwitch));
                }
                if !mac_is_valid(&mac) {
                    return Err(err(DeviceRule::BadMac));
                }
            }
            DeviceKind::Block { host_base, .. } | DeviceKind::Rng { host_base } => {
                if !base_ok(host_base) {
                    return Err(err(DeviceRule::BadHostBase));
                }
            }
        }
    }
    Ok(())
}

/// The rules across the package, for device `device` of VM `vm` against
/// everything before it (`earlier`: devices of earlier VMs and earlier devices
/// of this one) and the switches' uplinks: no MAC twice; a block device's host
/// base used by nothing else; an rng's host base never a block device's or an
/// uplink.
pub(crate) fn check_against(
    vm: u32,
    device: u32,
    d: &VmDevice,
    mut earlier: impl Iterator<Item = VmDevice>,
    mut uplinks: impl Iterator<Item = u64>,
) -> Result<(), BootPkgError> {
    let err = |reason| BootPkgError::DeviceRule { vm, device, reason };
    match d.kind {
        DeviceKind::Net { mac, .. } => {
            if earlier.any(|o| matches!(o.kind, DeviceKind::Net { mac: m, .. } if m == mac)) {
                return Err(err(DeviceRule::DuplicateMac));
            }
        }
        DeviceKind::Block { host_base, .. } => {
            if earlier.any(|o| o.kind.host_base() == Some(host_base))
                || uplinks.any(|u| u == host_base)
            {
                return Err(err(DeviceRule::HostDeviceShared));
            }
        }
        DeviceKind::Rng { host_base } => {
            if earlier
                .any(|o| matches!(o.kind, DeviceKind::Block { host_base: b, .. } if b == host_base))
                || uplinks.any(|u| u == host_base)
            {
                return Err(err(DeviceRule::HostDeviceShared));
            }
        }
    }
    Ok(())
}

/// Checks switch `index`'s name and uplink against the switches before it.
pub(crate) fn check_switch<'a>(
    index: u32,
    s: &SwitchSpec<'a>,
    mut earlier: impl Iterator<Item = SwitchSpec<'a>>,
) -> Result<(), BootPkgError> {
    let name_ok =
        !s.name.is_empty() && s.name.len() <= MAX_NAME_LEN && !s.name.chars().any(char::is_control);
    if !name_ok {
        return Err(BootPkgError::BadSwitch {
            switch: index,
            reason: SwitchRule::BadName,
        });
    }
    if s.uplink.is_some_and(|b| !base_ok(b)) {
        return Err(BootPkgError::BadSwitch {
            switch: index,
            reason: SwitchRule::BadUplink,
        });
    }
    if let Some(o) =
        earlier.find(|o| o.name == s.name || (s.uplink.is_some() && o.uplink == s.uplink))
    {
        let reason = if o.name == s.name {
            SwitchRule::DuplicateName
        } else {
            SwitchRule::DuplicateUplink
        };
        return Err(BootPkgError::BadSwitch {
            switch: index,
            reason,
        });
    }
    Ok(())
}

/// Which device rule a package breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceRule {
    /// The slot is not below [`GUEST_VIRTIO_SLOTS`].
    SlotOutOfRange,
    /// Another device of the VM has the slot.
    SlotTaken,
    /// The slot is the virtio-console's ([`CONSOLE_SLOT`]) and the VM has one.
    ConsoleSlot,
    /// A NIC names a switch the package does not define.
    NoSuchSwitch,
    /// A MAC is multicast or all zeros.
    BadMac,
    /// Two NICs have the same MAC.
    DuplicateMac,
    /// A host base is zero or not 4 KiB aligned.
    BadHostBase,
    /// A machine device serving a disk serves something else too.
    HostDeviceShared,
}

impl core::fmt::Display for DeviceRule {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            DeviceRule::SlotOutOfRange => "guest slot out of range",
            DeviceRule::SlotTaken => "guest slot used twice",
            DeviceRule::ConsoleSlot => "guest slot is the virtio-console's",
            DeviceRule::NoSuchSwitch => "NIC on an undefined switch",
            DeviceRule::BadMac => "MAC is multicast or zero",
            DeviceRule::DuplicateMac => "MAC used twice",
            DeviceRule::BadHostBase => "host device base is zero or not page aligned",
            DeviceRule::HostDeviceShared => "a disk's host device serves something else too",
        })
    }
}

/// Which switch rule a package breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SwitchRule {
    /// The name is empty, too long, not UTF-8 or has control characters.
    BadName,
    /// Two switches have the same name.
    DuplicateName,
    /// The uplink base is not 4 KiB aligned.
    BadUplink,
    /// Two switches have the same uplink.
    DuplicateUplink,
}

impl core::fmt::Display for SwitchRule {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            SwitchRule::BadName => "bad name",
            SwitchRule::DuplicateName => "name used twice",
            SwitchRule::BadUplink => "uplink base is not page aligned",
            SwitchRule::DuplicateUplink => "uplink used twice",
        })
    }
}
