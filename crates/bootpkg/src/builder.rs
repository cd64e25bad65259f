//! Writing packages (feature `alloc`).

use alloc::string::String;
use alloc::vec::Vec;

use crate::check::{check_vm, Extent, Facts};
use crate::devices::{self, encode_device};
use crate::{
    package_checksum, BootPkgError, GuestPhysAddr, Segment, SwitchSpec, VmDevice, VmFlags,
    CHECKSUM_OFFSET, FORMAT_VERSION, HEADER_SIZE, MAGIC, MAX_SWITCHES, MAX_VMS, PAGE_SIZE,
    SEGMENT_RECORD_SIZE, SWITCH_RECORD_SIZE, VM_RECORD_SIZE,
};

/// One VM to put in a package: the same information [`crate::VmSpec`] gives back.
#[derive(Clone, Copy, Debug)]
pub struct VmDescriptor<'a> {
    /// The VM's name (unique in the package).
    pub name: &'a str,
    /// Number of vCPUs.
    pub vcpus: u32,
    /// Guest RAM size.
    pub memory_bytes: u64,
    /// The boot vCPU's first `pc`.
    pub entry: GuestPhysAddr,
    /// Where the hypervisor writes the guest device tree.
    pub dtb_gpa: GuestPhysAddr,
    /// The initial ramdisk (`mem_size` must equal its length).
    pub initrd: Option<Segment<'a>>,
    /// The kernel command line.
    pub cmdline: &'a str,
    /// Per-VM options.
    pub flags: VmFlags,
    /// How the VM's vCPUs are scheduled.
    pub sched: crate::VmSched,
    /// The kernel image's pieces.
    pub segments: &'a [Segment<'a>],
    /// Devices beyond the console (disks, NICs, rng), in guest-slot order by
    /// convention; NICs index switches added with [`PackageBuilder::add_switch`].
    pub devices: &'a [VmDevice],
}

#[derive(Debug)]
struct Blob {
    gpa: u64,
    data: Vec<u8>,
    mem_size: u64,
}

impl Blob {
    fn from_segment(s: &Segment<'_>) -> Self {
        Blob {
            gpa: s.gpa.raw(),
            data: s.data.to_vec(),
            mem_size: s.mem_size,
        }
    }
}

#[derive(Debug)]
struct OwnedVm {
    name: String,
    cmdline: String,
    vcpus: u32,
    flags: VmFlags,
    sched: crate::VmSched,
    memory_bytes: u64,
    entry: u64,
    dtb_gpa: u64,
    initrd: Option<Blob>,
    segments: Vec<Blob>,
    devices: Vec<VmDevice>,
}

#[derive(Debug)]
struct OwnedSwitch {
    name: String,
    uplink: Option<u64>,
}

/// Collects VMs (checking each as the parser would) and writes the package.
#[derive(Debug, Default)]
pub struct PackageBuilder {
    vms: Vec<OwnedVm>,
    switches: Vec<OwnedSwitch>,
}

impl PackageBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of VMs added so far.
    pub fn vm_count(&self) -> usize {
        self.vms.len()
    }

    /// Checks a switch with the parser's rules (name, uplink base, both unique)
    /// and adds it; returns its index, which NICs name. Add switches before
    /// the VMs whose NICs use them.
    pub fn add_switch(&mut self, name: &str, uplink: Option<u64>) -> Result<u16, BootPkgError> {
        let index = u32::try_from(self.switches.len()).unwrap_or(u32::MAX);
        if self.switches.len() >= MAX_SWITCHES {
            return Err(BootPkgError::TooManySwitches(index.saturating_add(1)));
        }
        let spec = SwitchSpec { name, uplink };
        let earlier = self.switches.iter().map(|s| SwitchSpec {
            name: &s.name,
            uplink: s.uplink,
        });
        devices::check_switch(index, &spec, earlier)?;
        self.switches.push(OwnedSwitch {
            name: name.into(),
            uplink,
        });
        u16::try_from(index).map_err(|_| BootPkgError::TooManySwitches(index))
    }

    /// Checks `vm` with the parser's rules and adds a copy of it.
    pub fn add_vm(&mut self, vm: &VmDescriptor<'_>) -> Result<(), BootPkgError> {
        let index = u32::try_from(self.vms.len()).unwrap_or(u32::MAX);
        if self.vms.len() >= MAX_VMS {
            return Err(BootPkgError::TooManyVms(index.saturating_add(1)));
        }
        let facts = Facts {
            name: vm.name,
            cmdline: vm.cmdline,
            vcpus: vm.vcpus,
            memory_bytes: vm.memory_bytes,
            entry: vm.entry.raw(),
            dtb_gpa: vm.dtb_gpa.raw(),
            initrd: vm.initrd.map(Extent::from),
            segments: vm.segments.iter().copied().map(Extent::from),
        };
        check_vm(index, &facts)?;
        if vm.sched.weight == 0 || vm.sched.weight > crate::MAX_WEIGHT {
            return Err(BootPkgError::BadWeight {
                vm: index,
                value: vm.sched.weight,
            });
        }
        if vm.sched.pin.is_some_and(|p| p >= crate::MAX_PIN_HART) {
            return Err(BootPkgError::BadPin {
                vm: index,
                value: vm.sched.pin.map_or(0, |p| p.saturating_add(1)),
            });
        }
        if self.vms.iter().any(|v| v.name == vm.name) {
            return Err(BootPkgError::DuplicateName { vm: index });
        }
        if vm.devices.len() > crate::MAX_DEVICES {
            return Err(BootPkgError::TooManyDevices {
                vm: index,
                count: u32::try_from(vm.devices.len()).unwrap_or(u32::MAX),
            });
        }
        devices::check_vm_devices(
            index,
            vm.devices.iter().copied(),
            vm.flags.contains(VmFlags::CONSOLE_VIRTIO),
            self.switches.len(),
        )?;
        for (k, d) in vm.devices.iter().enumerate() {
            let earlier = self
                .vms
                .iter()
                .flat_map(|v| v.devices.iter().copied())
                .chain(vm.devices.iter().copied().take(k));
            let uplinks = self.switches.iter().filter_map(|s| s.uplink);
            let device = u32::try_from(k).unwrap_or(u32::MAX);
            devices::check_against(index, device, d, earlier, uplinks)?;
        }
        self.vms.push(OwnedVm {
            name: vm.name.into(),
            cmdline: vm.cmdline.into(),
            vcpus: vm.vcpus,
            flags: vm.flags,
            sched: vm.sched,
            memory_bytes: vm.memory_bytes,
            entry: vm.entry.raw(),
            dtb_gpa: vm.dtb_gpa.raw(),
            initrd: vm.initrd.as_ref().map(Blob::from_segment),
            segments: vm.segments.iter().map(Blob::from_segment).collect(),
            devices: vm.devices.to_vec(),
        });
        Ok(())
    }

    /// Writes the package. With no VM added the result is a package that
    /// [`crate::Package::parse`] rejects with [`BootPkgError::NoVms`].
    pub fn build(&self) -> Vec<u8> {
        let page = PAGE_SIZE as usize;
        let mut out = alloc::vec![0u8; HEADER_SIZE + self.vms.len() * VM_RECORD_SIZE];
        put(&mut out, 0, &MAGIC);
        put(&mut out, 8, &FORMAT_VERSION.to_le_bytes());
        put(&mut out, 12, &(self.vms.len() as u32).to_le_bytes());

        // Switch table, segment and device tables and strings first; blob
        // offsets are patched in later.
        if !self.switches.is_empty() {
            let table = out.len();
            out.resize(table + self.switches.len() * SWITCH_RECORD_SIZE, 0);
            put(&mut out, 28, &(self.switches.len() as u32).to_le_bytes());
            put_u64(&mut out, 32, table as u64);
            for (k, sw) in self.switches.iter().enumerate() {
                let name = out.len();
                out.extend_from_slice(sw.name.as_bytes());
                let rec = table + k * SWITCH_RECORD_SIZE;
                put_u64(&mut out, rec, name as u64);
                put_u64(&mut out, rec + 8, sw.name.len() as u64);
                put_u64(&mut out, rec + 16, sw.uplink.unwrap_or(0));
            }
        }
        let mut seg_tables = Vec::with_capacity(self.vms.len());
        for vm in &self.vms {
            seg_tables.push(out.len());
            out.resize(out.len() + vm.segments.len() * SEGMENT_RECORD_SIZE, 0);
        }
        for (i, vm) in self.vms.iter().enumerate() {
            if vm.devices.is_empty() {
                continue;
            }
            let rec = HEADER_SIZE + i * VM_RECORD_SIZE;
            let table = out.len() as u64;
            put_u64(&mut out, rec + 120, table);
            put(
                &mut out,
                rec + 128,
                &(vm.devices.len() as u32).to_le_bytes(),
            );
            for d in &vm.devices {
                out.extend_from_slice(&encode_device(d));
            }
        }

        let mut strings = Vec::with_capacity(self.vms.len());
        for vm in &self.vms {
            let name = out.len();
            out.extend_from_slice(vm.name.as_bytes());
            let cmdline = out.len();
            out.extend_from_slice(vm.cmdline.as_bytes());
            strings.push((name, cmdline));
        }

        // Blobs already written: a VM whose kernel or initrd is byte for byte
        // one written before (at the same offset within a page) points at it.
        let mut placed: Vec<(&Blob, u64)> = Vec::new();
        for (i, vm) in self.vms.iter().enumerate() {
            let rec = HEADER_SIZE + i * VM_RECORD_SIZE;
            let (name, cmdline) = strings[i];
            put_u64(&mut out, rec, name as u64);
            put_u64(&mut out, rec + 8, vm.name.len() as u64);
            put_u64(&mut out, rec + 16, cmdline as u64);
            put_u64(&mut out, rec + 24, vm.cmdline.len() as u64);
            put(&mut out, rec + 32, &vm.vcpus.to_le_bytes());
            put(&mut out, rec + 36, &vm.flags.bits().to_le_bytes());
            put(&mut out, rec + 112, &vm.sched.weight.to_le_bytes());
            put(
                &mut out,
                rec + 116,
                &vm.sched
                    .pin
                    .map_or(0, |p| p.saturating_add(1))
                    .to_le_bytes(),
            );
            put_u64(&mut out, rec + 40, vm.memory_bytes);
            put_u64(&mut out, rec + 48, vm.entry);
            put_u64(&mut out, rec + 56, vm.dtb_gpa);
            put_u64(&mut out, rec + 64, seg_tables[i] as u64);
            put(
                &mut out,
                rec + 72,
                &(vm.segments.len() as u32).to_le_bytes(),
            );
            if let Some(initrd) = &vm.initrd {
                put(&mut out, rec + 76, &1u32.to_le_bytes());
                let offset = place_shared(&mut out, &mut placed, initrd, page);
                write_segment_record(&mut out, rec + 80, initrd, offset);
            }
            for (k, seg) in vm.segments.iter().enumerate() {
                let offset = place_shared(&mut out, &mut placed, seg, page);
                write_segment_record(
                    &mut out,
                    seg_tables[i] + k * SEGMENT_RECORD_SIZE,
                    seg,
                    offset,
                );
            }
        }
        // Pad to a whole page so every blob's last page lies inside the package.
        out.resize(out.len().next_multiple_of(page), 0);
        let total = out.len() as u64;
        put_u64(&mut out, 16, total);
        let checksum = package_checksum(&out);
        put(&mut out, CHECKSUM_OFFSET, &checksum.to_le_bytes());
        out
    }
}

/// The offset of a blob in `placed` with the same bytes at the same offset
/// within a page, or `blob` appended (see [`place_blob`]) and remembered.
fn place_shared<'b>(
    out: &mut Vec<u8>,
    placed: &mut Vec<(&'b Blob, u64)>,
    blob: &'b Blob,
    page: usize,
) -> u64 {
    let same = |b: &Blob| b.gpa % PAGE_SIZE == blob.gpa % PAGE_SIZE && b.data == blob.data;
    if let Some(&(_, offset)) = placed.iter().find(|(b, _)| same(b)) {
        return offset;
    }
    let offset = place_blob(out, blob, page);
    placed.push((blob, offset));
    offset
}

/// Appends `blob` on a fresh page at the offset congruent to its GPA; returns the
/// offset (0 for an empty blob, which takes no space).
fn place_blob(out: &mut Vec<u8>, blob: &Blob, page: usize) -> u64 {
    if blob.data.is_empty() {
        return 0;
    }
    let start = out.len().next_multiple_of(page) + (blob.gpa % PAGE_SIZE) as usize;
    out.resize(start, 0);
    out.extend_from_slice(&blob.data);
    start as u64
}

fn write_segment_record(out: &mut [u8], at: usize, blob: &Blob, offset: u64) {
    put_u64(out, at, blob.gpa);
    put_u64(out, at + 8, offset);
    put_u64(out, at + 16, blob.data.len() as u64);
    put_u64(out, at + 24, blob.mem_size);
}

fn put(out: &mut [u8], at: usize, bytes: &[u8]) {
    out[at..at + bytes.len()].copy_from_slice(bytes);
}

fn put_u64(out: &mut [u8], at: usize, v: u64) {
    put(out, at, &v.to_le_bytes());
}
