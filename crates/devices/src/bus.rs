//! The MMIO bus: devices at guest-physical ranges, dispatched by address.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::any::Any;
use core::fmt;

use fv_addr::{GuestPhysAddr, Range};

use crate::{AccessWidth, DeviceCtx, MmioDevice};

/// Names a device on an [`MmioBus`] (stable for the bus's lifetime).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeviceId(u32);

/// Why a device could not be placed on a bus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BusError {
    /// The device's [`MmioDevice::size`] is 0.
    EmptyDevice,
    /// `base + size` wraps past the end of the address space.
    Overflow,
    /// The range shares at least one byte with a device already placed.
    Overlap,
    /// The bus has handed out every [`DeviceId`] (2^32 insertions).
    TooManyDevices,
    /// [`crate::VmDevices`] already has an interrupt controller.
    ControllerPresent,
}

impl fmt::Display for BusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BusError::EmptyDevice => "device has size 0",
            BusError::Overflow => "device range wraps the address space",
            BusError::Overlap => "device range overlaps another device",
            BusError::TooManyDevices => "no device IDs left",
            BusError::ControllerPresent => "the VM already has an interrupt controller",
        })
    }
}

struct Entry {
    id: DeviceId,
    range: Range<GuestPhysAddr>,
    device: Box<dyn MmioDevice>,
}

/// Devices mapped at disjoint guest-physical ranges.
///
/// Each device occupies `[base, base + device.size())`. An access is sent to
/// the device whose range holds its first byte, at `addr - base`; the device
/// itself rejects an access that runs past its end (reads 0, writes ignored).
/// Values are masked to the access width both ways.
#[derive(Default)]
pub struct MmioBus {
    /// Sorted by range start; ranges are disjoint.
    entries: Vec<Entry>,
    next_id: u32,
}

impl fmt::Debug for MmioBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|e| (e.id, e.range)))
            .finish()
    }
}

impl MmioBus {
    /// An empty bus.
    pub const fn new() -> Self {
        Self {
            entries: Vec::new(),
            next_id: 0,
        }
    }

    /// Places `device` at `base`, covering `device.size()` bytes.
    pub fn insert(
        &mut self,
        base: GuestPhysAddr,
        device: Box<dyn MmioDevice>,
    ) -> Result<DeviceId, BusError> {
        let range = Self::range_for(base, device.size())?;
        if !self.is_free(&range) {
            return Err(BusError::Overlap);
        }
        let id = DeviceId(self.next_id);
        self.next_id = self
            .next_id
            .checked_add(1)
            .ok_or(BusError::TooManyDevices)?;
        let at = self.entries.partition_point(|e| e.range.start < base);
        self.entries.insert(at, Entry { id, range, device });
        Ok(id)
    }

    /// The range `[base, base + size)`, checked.
    pub(crate) fn range_for(
        base: GuestPhysAddr,
        size: u64,
    ) -> Result<Range<GuestPhysAddr>, BusError> {
        if size == 0 {
            return Err(BusError::EmptyDevice);
        }
        Range::new(base, size).map_err(|_| BusError::Overflow)
    }

    /// Whether no device occupies any byte of `range`.
    pub fn is_free(&self, range: &Range<GuestPhysAddr>) -> bool {
        !self.entries.iter().any(|e| e.range.overlaps(range))
    }

    /// Number of devices on the bus.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the bus has no devices.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn entry_at(&mut self, addr: GuestPhysAddr) -> Option<&mut Entry> {
        let after = self.entries.partition_point(|e| e.range.start <= addr);
        let entry = self.entries.get_mut(after.checked_sub(1)?)?;
        entry.range.contains(addr).then_some(entry)
    }

    fn entry(&self, id: DeviceId) -> Option<&Entry> {
        self.entries.iter().find(|e| e.id == id)
    }

    fn entry_mut(&mut self, id: DeviceId) -> Option<&mut Entry> {
        self.entries.iter_mut().find(|e| e.id == id)
    }

    /// The device whose range holds `addr`.
    pub fn find(&self, addr: GuestPhysAddr) -> Option<DeviceId> {
        let after = self.entries.partition_point(|e| e.range.start <= addr);
        let entry = self.entries.get(after.checked_sub(1)?)?;
        entry.range.contains(addr).then_some(entry.id)
    }

    /// The range device `id` occupies.
    pub fn range(&self, id: DeviceId) -> Option<Range<GuestPhysAddr>> {
        self.entry(id).map(|e| e.range)
    }

    /// Device `id` as its concrete type, if it is a `T`.
    pub fn device<T: MmioDevice>(&self, id: DeviceId) -> Option<&T> {
        let dev: &dyn Any = &*self.entry(id)?.device;
        dev.downcast_ref::<T>()
    }

    /// Device `id` as its concrete type, if it is a `T` (for host-side calls
    /// such as feeding console input or taking console output).
    pub fn device_mut<T: MmioDevice>(&mut self, id: DeviceId) -> Option<&mut T> {
        let dev: &mut dyn Any = &mut *self.entry_mut(id)?.device;
        dev.downcast_mut::<T>()
    }

    /// A guest load at `addr`: the device's value masked to `width`, or `None`
    /// if no device holds `addr` (the core then injects a load access fault).
    pub fn read(
        &mut self,
        addr: GuestPhysAddr,
        width: AccessWidth,
        ctx: &mut DeviceCtx<'_>,
    ) -> Option<u64> {
        let entry = self.entry_at(addr)?;
        let offset = addr.offset_from(entry.range.start).ok()?;
        Some(entry.device.read(offset, width, ctx) & width.mask())
    }

    /// A guest store at `addr`; `false` if no device holds `addr` (the core
    /// then injects a store/AMO access fault).
    #[must_use]
    pub fn write(
        &mut self,
        addr: GuestPhysAddr,
        width: AccessWidth,
        value: u64,
        ctx: &mut DeviceCtx<'_>,
    ) -> bool {
        let Some(entry) = self.entry_at(addr) else {
            return false;
        };
        let Ok(offset) = addr.offset_from(entry.range.start) else {
            return false;
        };
        entry.device.write(offset, width, value & width.mask(), ctx);
        true
    }

    /// Resets every device (in address order).
    pub fn reset(&mut self, ctx: &mut DeviceCtx<'_>) {
        for e in &mut self.entries {
            e.device.reset(ctx);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NullSink;

    /// Echoes the offset of each access; remembers the last write.
    struct Echo {
        size: u64,
        last_write: Option<(u64, AccessWidth, u64)>,
        resets: u32,
    }

    impl Echo {
        fn boxed(size: u64) -> Box<dyn MmioDevice> {
            Box::new(Echo {
                size,
                last_write: None,
                resets: 0,
            })
        }
    }

    impl MmioDevice for Echo {
        fn size(&self) -> u64 {
            self.size
        }
        fn read(&mut self, offset: u64, _w: AccessWidth, _ctx: &mut DeviceCtx<'_>) -> u64 {
            // Deliberately wider than any access: the bus must mask it.
            offset | 0xffff_ffff_0000_0000
        }
        fn write(&mut self, offset: u64, w: AccessWidth, value: u64, _ctx: &mut DeviceCtx<'_>) {
            self.last_write = Some((offset, w, value));
        }
        fn reset(&mut self, _ctx: &mut DeviceCtx<'_>) {
            self.resets += 1;
        }
    }

    fn gpa(a: u64) -> GuestPhysAddr {
        GuestPhysAddr::new(a)
    }

    #[test]
    fn dispatch_by_address_with_offset() {
        let mut bus = MmioBus::new();
        let a = bus.insert(gpa(0x1000_0000), Echo::boxed(0x100)).unwrap();
        let b = bus.insert(gpa(0x0c00_0000), Echo::boxed(0x1000)).unwrap();
        assert_ne!(a, b);
        let mut sink = NullSink;
        let mut ctx = DeviceCtx::new(&mut sink, 0, 0);
        assert_eq!(
            bus.read(gpa(0x1000_0005), AccessWidth::Byte, &mut ctx),
            Some(5)
        );
        assert_eq!(
            bus.read(gpa(0x0c00_0ffc), AccessWidth::Word, &mut ctx),
            Some(0xffc)
        );
        assert_eq!(
            bus.read(gpa(0x1000_0000), AccessWidth::Double, &mut ctx),
            Some(0xffff_ffff_0000_0000)
        );
        assert_eq!(
            bus.read(gpa(0x1000_0100), AccessWidth::Byte, &mut ctx),
            None
        );
        assert_eq!(
            bus.read(gpa(0x0bff_ffff), AccessWidth::Byte, &mut ctx),
            None
        );
        assert_eq!(bus.read(gpa(0), AccessWidth::Byte, &mut ctx), None);
        assert_eq!(bus.read(gpa(u64::MAX), AccessWidth::Byte, &mut ctx), None);
        assert!(bus.write(gpa(0x1000_0003), AccessWidth::Half, 0x1_2345, &mut ctx));
        assert!(!bus.write(gpa(0x2000_0000), AccessWidth::Byte, 1, &mut ctx));
        let echo = bus.device_mut::<Echo>(a).unwrap();
        assert_eq!(echo.last_write, Some((3, AccessWidth::Half, 0x2345)));
        assert_eq!(bus.find(gpa(0x0c00_0010)), Some(b));
        assert_eq!(bus.find(gpa(0x0c00_1000)), None);
        assert_eq!(
            bus.range(b),
            Some(Range::new(gpa(0x0c00_0000), 0x1000).unwrap())
        );
        assert_eq!(bus.len(), 2);
    }

    #[test]
    fn rejects_overlaps_empty_and_wrapping() {
        let mut bus = MmioBus::new();
        bus.insert(gpa(0x1000), Echo::boxed(0x1000)).unwrap();
        assert_eq!(
            bus.insert(gpa(0x1fff), Echo::boxed(1)).unwrap_err(),
            BusError::Overlap
        );
        assert_eq!(
            bus.insert(gpa(0x0800), Echo::boxed(0x801)).unwrap_err(),
            BusError::Overlap
        );
        assert_eq!(
            bus.insert(gpa(0x0), Echo::boxed(0x10000)).unwrap_err(),
            BusError::Overlap
        );
        assert_eq!(
            bus.insert(gpa(0x3000), Echo::boxed(0)).unwrap_err(),
            BusError::EmptyDevice
        );
        assert_eq!(
            bus.insert(gpa(u64::MAX), Echo::boxed(2)).unwrap_err(),
            BusError::Overflow
        );
        // Adjacent ranges are fine.
        bus.insert(gpa(0x2000), Echo::boxed(0x10)).unwrap();
        bus.insert(gpa(0x0800), Echo::boxed(0x800)).unwrap();
        // The last byte of the address space cannot be covered (ranges are
        // half-open with an end that fits in 64 bits).
        bus.insert(gpa(u64::MAX - 1), Echo::boxed(1)).unwrap();
        assert_eq!(
            bus.insert(gpa(u64::MAX), Echo::boxed(1)).unwrap_err(),
            BusError::Overflow
        );
        assert_eq!(bus.len(), 4);
    }

    #[test]
    fn downcast_to_the_wrong_type_is_none() {
        struct Other;
        impl MmioDevice for Other {
            fn size(&self) -> u64 {
                4
            }
            fn read(&mut self, _: u64, _: AccessWidth, _: &mut DeviceCtx<'_>) -> u64 {
                0
            }
            fn write(&mut self, _: u64, _: AccessWidth, _: u64, _: &mut DeviceCtx<'_>) {}
            fn reset(&mut self, _: &mut DeviceCtx<'_>) {}
        }
        let mut bus = MmioBus::new();
        let id = bus.insert(gpa(0), Box::new(Other)).unwrap();
        assert!(bus.device::<Echo>(id).is_none());
        assert!(bus.device::<Other>(id).is_some());
        assert!(bus.device_mut::<Other>(DeviceId(7)).is_none());
    }

    #[test]
    fn reset_reaches_every_device() {
        let mut bus = MmioBus::new();
        let a = bus.insert(gpa(0x1000), Echo::boxed(0x10)).unwrap();
        let b = bus.insert(gpa(0x0), Echo::boxed(0x10)).unwrap();
        let mut sink = NullSink;
        bus.reset(&mut DeviceCtx::new(&mut sink, 0, 0));
        assert_eq!(bus.device::<Echo>(a).unwrap().resets, 1);
        assert_eq!(bus.device::<Echo>(b).unwrap().resets, 1);
    }
}
