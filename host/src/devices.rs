//! VM devices served by the hypervisor from the machine's own devices (issue
//! #9): what a config asks for ([`Devices`]: disks, NICs, entropy, switches),
//! the rules for MAC addresses ([`MacAddr`]) and port forwards
//! ([`PortForward`]), and the slot plan ([`plan`]): which of the machine's
//! virtio-mmio slots each physical device QEMU gets lands in, and which slot of
//! its own memory map each VM device gets.
//!
//! # The machine's slots (QEMU `virt`)
//!
//! `qemu-system-riscv64 -M virt` has [`MACHINE_VIRTIO_SLOTS`] (8) virtio-mmio
//! transports at `0x1000_1000 + i * 0x1000` (i = 0..8) with interrupt `i + 1`.
//! QEMU creates their buses so that a `-device virtio-*-device` goes into the
//! free transport with the *highest* address: the k-th virtio-mmio device on
//! the command line (k = 0, 1, ...) sits at `0x1000_8000 - k * 0x1000` with
//! interrupt `8 - k` ([`host_slot`]). `-drive` and `-netdev` take no slot.
//!
//! The host tool puts them on the command line in this order
//! ([`crate::qemu::device_args`]), which is the order of [`DevicePlan::host`]
//! (the boot-package contract's convention):
//!
//! 1. Every disk: VM by VM in file order, each VM's disks in order. One
//!    physical virtio-blk per VM disk.
//! 2. One virtio-rng if any VM has `rng: true`; the VMs' virtio-rng devices
//!    are all fed from it.
//! 3. One virtio-net per switch with `uplink: true`, in `machine.switches`
//!    order.
//! 4. [`RESERVED_HOST_SLOTS`] devices of the hypervisor's own, after all of
//!    these (none yet; the host control channel will be one).
//!
//! So a config needs `disks + (1 if any rng) + uplinks + RESERVED_HOST_SLOTS`
//! slots, at most 8. VM NICs need no slot of the machine: they are ports of
//! the hypervisor's switches.
//!
//! # A VM's slots
//!
//! Every VM's memory map has the same 8 virtio-mmio slots, `0x1000_1000 +
//! i * 0x1000` with interrupt `i + 1` at the VM's PLIC ([`guest_slot`]). Slot 0
//! (`0x1000_1000`) is the virtio-console's (`console: virtio`) and is kept for
//! it either way, so a VM has [`MAX_VM_DEVICES`] (7) slots for its disks,
//! NICs and virtio-rng, given out from slot 1 up in that order: disks in
//! order, then NICs in order, then the virtio-rng ([`DevicePlan::vms`]).
//! Linux names the disks `vda`, `vdb`, ... in the order it probes them.
//!
//! The boot package carries the plan ([`crate::package::package_devices`]):
//! each VM device with its slot and, for a disk or the rng, the base of the
//! machine's device serving it; each switch with its uplink's base.

use std::fmt;
use std::net::Ipv4Addr;
use std::path::PathBuf;

/// virtio-mmio slots of QEMU's `virt` machine.
pub const MACHINE_VIRTIO_SLOTS: usize = 8;
/// Address of the lowest virtio-mmio slot (on the machine and in every VM).
pub const VIRTIO_MMIO_BASE: u64 = 0x1000_1000;
/// Distance between two virtio-mmio slots.
pub const VIRTIO_MMIO_STRIDE: u64 = 0x1000;
/// Interrupt of the lowest slot; slot `i` has `VIRTIO_MMIO_FIRST_IRQ + i`.
pub const VIRTIO_MMIO_FIRST_IRQ: u32 = 1;
/// Slots of the machine kept for devices of the hypervisor's own, placed
/// after the config's devices. None yet; the host control channel will be one.
pub const RESERVED_HOST_SLOTS: usize = 0;
/// virtio-mmio slots in a VM's memory map (the boot package's).
pub const GUEST_VIRTIO_SLOTS: usize = fv_bootpkg::GUEST_VIRTIO_SLOTS as usize;
/// A VM's slots kept for the virtio-console (slot 0, `0x1000_1000`,
/// [`fv_bootpkg::CONSOLE_SLOT`]), used or not.
pub const GUEST_CONSOLE_SLOTS: usize = fv_bootpkg::CONSOLE_SLOT as usize + 1;
/// Most disks + NICs + virtio-rng one VM may have.
pub const MAX_VM_DEVICES: usize = GUEST_VIRTIO_SLOTS - GUEST_CONSOLE_SLOTS;
/// Disk images are whole 512-byte sectors.
pub const SECTOR_SIZE: u64 = 512;
/// Most switches per machine (the boot package's limit).
pub const MAX_SWITCHES: usize = fv_bootpkg::MAX_SWITCHES;
/// The MAC address the host tool gives the first uplink's virtio-net of the
/// machine ([`uplink_mac`]; not QEMU's default 52:54:00:12:34:56, which a VM
/// NIC may well be given).
pub const UPLINK_MAC: MacAddr = MacAddr([0x52, 0x54, 0x00, 0xfe, 0x00, 0x01]);
/// QEMU user-mode network: where a port forward goes unless it names an address
/// (the first address its DHCP server hands out).
pub const USER_NET_GUEST: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);
/// QEMU user-mode network: the gateway, which is the host's loopback.
pub const USER_NET_GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
/// QEMU user-mode network: its DNS server.
pub const USER_NET_DNS: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 3);
/// The host address port forwards listen on: loopback only.
pub const FORWARD_HOST_ADDR: Ipv4Addr = Ipv4Addr::LOCALHOST;

// ---------------------------------------------------------------------------
// MAC addresses.

/// An Ethernet MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// Parses `xx:xx:xx:xx:xx:xx` (six bytes, two hex digits each, either case).
    /// Only the syntax; see [`MacAddr::nic_problem`] for what a NIC may use.
    pub fn parse(text: &str) -> Result<MacAddr, String> {
        let bad = || {
            format!(
                "`{text}` is not a MAC address: expected six two-digit hex bytes separated by `:`, e.g. 02:00:00:00:00:01"
            )
        };
        let mut out = [0u8; 6];
        let mut parts = text.split(':');
        for byte in &mut out {
            let p = parts.next().ok_or_else(bad)?;
            if p.len() != 2 || !p.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(bad());
            }
            *byte = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(MacAddr(out))
    }

    /// The default MAC of NIC `index` (0-based) of the VM named `vm`: `02`
    /// (locally administered, unicast), then the five high-order bytes of the
    /// 64-bit FNV-1a hash of the text `<vm>/<index>` (e.g. `web/0`). Stable for
    /// as long as the VM keeps its name and the NIC its place in `nics`.
    pub fn derived(vm: &str, index: usize) -> MacAddr {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in format!("{vm}/{index}").bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        let b = h.to_be_bytes();
        MacAddr([0x02, b[0], b[1], b[2], b[3], b[4]])
    }

    /// A group (multicast or broadcast) address: bit 0 of the first byte.
    pub fn is_multicast(self) -> bool {
        self.0[0] & 1 != 0
    }

    /// Why a NIC may not have this address (all zero, or multicast), if so.
    pub fn nic_problem(self) -> Option<String> {
        if self.0 == [0; 6] {
            return Some(format!("{self} is not a usable MAC address (all zero)"));
        }
        if self.is_multicast() {
            return Some(format!(
                "{self} is a multicast address (bit 0 of the first byte is set); a NIC needs a unicast one, e.g. with first byte 02 (locally administered)"
            ));
        }
        None
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MacAddr({self})")
    }
}

/// The MAC address of the machine's virtio-net that is the `n`-th uplink
/// (0-based, in `machine.switches` order): [`UPLINK_MAC`] with `n` added to
/// its last byte. No VM NIC may use one of the config's uplinks' MACs.
pub fn uplink_mac(n: usize) -> MacAddr {
    let mut m = UPLINK_MAC;
    m.0[5] = m.0[5].wrapping_add(n as u8);
    m
}

// ---------------------------------------------------------------------------
// Port forwards.

/// A port forward's protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    /// As in the config and in QEMU's `hostfwd`.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// A host port forwarded into an uplink switch's network (QEMU user-mode
/// networking's `hostfwd`): connections to (or datagrams for)
/// `127.0.0.1:host_port` on the host go to `guest_addr:guest_port` on the
/// switch's side of QEMU's network, `10.0.2.0/24`.
///
/// Syntax: `PROTO:HOSTPORT:GUESTPORT` or `PROTO:HOSTPORT:GUESTADDR:GUESTPORT`,
/// e.g. `tcp:8080:80` (host 127.0.0.1:8080 to 10.0.2.15:80, the address
/// QEMU's DHCP server hands out first) or `udp:5353:10.0.2.16:53`. `PROTO` is
/// `tcp` or `udp`; ports are decimal `1..=65535`; `GUESTADDR` is an address of
/// `10.0.2.0/24` other than the network, broadcast, gateway (`.2`) and DNS
/// (`.3`) addresses. The host side always listens on 127.0.0.1 only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortForward {
    /// TCP or UDP.
    pub protocol: Protocol,
    /// The port on 127.0.0.1.
    pub host_port: u16,
    /// Where in QEMU's user network it goes.
    pub guest_addr: Ipv4Addr,
    /// The port there.
    pub guest_port: u16,
}

impl PortForward {
    /// The syntax, for messages.
    pub const SYNTAX: &'static str =
        "PROTO:HOSTPORT:GUESTPORT or PROTO:HOSTPORT:GUESTADDR:GUESTPORT, e.g. tcp:8080:80";

    /// Parses the config syntax (see the type's documentation).
    pub fn parse(text: &str) -> Result<PortForward, String> {
        let parts: Vec<&str> = text.split(':').collect();
        let (proto, host, addr, guest) = match parts.as_slice() {
            [p, h, g] => (*p, *h, None, *g),
            [p, h, a, g] => (*p, *h, Some(*a), *g),
            _ => {
                return Err(format!(
                    "`{text}` is not a port forward: expected {}",
                    Self::SYNTAX
                ))
            }
        };
        let protocol = match proto {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            _ => {
                return Err(format!(
                    "`{text}`: unknown protocol `{proto}`; expected tcp or udp ({})",
                    Self::SYNTAX
                ))
            }
        };
        let port = |p: &str, which: &str| -> Result<u16, String> {
            let digits = !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit());
            match digits.then(|| p.parse::<u16>().ok()).flatten() {
                Some(n) if n > 0 => Ok(n),
                _ => Err(format!(
                    "`{text}`: {which} port `{p}` is not a port number 1..=65535"
                )),
            }
        };
        let host_port = port(host, "host")?;
        let guest_addr = match addr {
            None => USER_NET_GUEST,
            Some(a) => {
                let ip: Ipv4Addr = a
                    .parse()
                    .map_err(|_| format!("`{text}`: guest address `{a}` is not an IPv4 address"))?;
                let [n0, n1, n2, last] = ip.octets();
                if [n0, n1, n2] != [10, 0, 2] || matches!(last, 0 | 2 | 3 | 255) {
                    return Err(format!(
                        "`{text}`: guest address {ip} is not a guest address of QEMU's user network 10.0.2.0/24 (not .0, .255, the gateway .2 or the DNS server .3)"
                    ));
                }
                ip
            }
        };
        let guest_port = port(guest, "guest")?;
        Ok(PortForward {
            protocol,
            host_port,
            guest_addr,
            guest_port,
        })
    }

    /// QEMU's `hostfwd` value: `tcp:127.0.0.1:8080-10.0.2.15:80`.
    pub fn hostfwd(&self) -> String {
        format!(
            "{}:{}:{}-{}:{}",
            self.protocol.name(),
            FORWARD_HOST_ADDR,
            self.host_port,
            self.guest_addr,
            self.guest_port
        )
    }
}

impl fmt::Display for PortForward {
    /// The config syntax, with the guest address when it is not the default.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:", self.protocol.name(), self.host_port)?;
        if self.guest_addr != USER_NET_GUEST {
            write!(f, "{}:", self.guest_addr)?;
        }
        write!(f, "{}", self.guest_port)
    }
}

// ---------------------------------------------------------------------------
// What a config asks for.

/// One VM disk: a raw image file of the host, served through one physical
/// virtio-blk of the machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Disk {
    /// The image file (expanded and made relative to the config file's
    /// directory like `kernel`).
    pub path: PathBuf,
    /// The VM may not write it (`VIRTIO_BLK_F_RO`; QEMU opens it `readonly=on`).
    pub read_only: bool,
}

/// One VM NIC: a port on a switch of the hypervisor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Nic {
    /// The switch (a name of [`Devices::switches`]).
    pub switch: String,
    /// Its MAC address: given, or [`MacAddr::derived`].
    pub mac: MacAddr,
    /// `mac` was given in the config.
    pub mac_given: bool,
}

/// The devices of one VM besides the UART and the console.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VmDevices {
    /// Disks, in order.
    pub disks: Vec<Disk>,
    /// NICs, in order.
    pub nics: Vec<Nic>,
    /// A virtio-rng, fed from the machine's entropy device.
    pub rng: bool,
}

impl VmDevices {
    /// Slots of the VM's memory map these take.
    pub fn slots(&self) -> usize {
        self.disks.len() + self.nics.len() + usize::from(self.rng)
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.slots() == 0
    }
}

/// An L2 switch inside the hypervisor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Switch {
    /// Its name (unique).
    pub name: String,
    /// Connected to the machine's own virtio-net, which QEMU backs with its
    /// user-mode network.
    pub uplink: bool,
    /// Host ports forwarded into that network (only with `uplink`).
    pub forwards: Vec<PortForward>,
}

/// The devices of a whole config.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Devices {
    /// One entry per VM, in the order of [`crate::config::Config::vms`].
    pub vms: Vec<VmDevices>,
    /// The machine's switches (`machine.switches`).
    pub switches: Vec<Switch>,
}

impl Devices {
    /// No devices for `vms` VMs.
    pub fn none(vms: usize) -> Devices {
        Devices {
            vms: vec![VmDevices::default(); vms],
            switches: Vec::new(),
        }
    }

    /// Whether any VM wants a virtio-rng.
    pub fn any_rng(&self) -> bool {
        self.vms.iter().any(|v| v.rng)
    }

    /// Disks of all VMs.
    pub fn disk_count(&self) -> usize {
        self.vms.iter().map(|v| v.disks.len()).sum()
    }

    /// Switches with an uplink.
    pub fn uplink_count(&self) -> usize {
        self.switches.iter().filter(|s| s.uplink).count()
    }

    /// The machine's virtio-mmio slots the config needs, reserved ones
    /// included (see the module documentation).
    pub fn host_slots_needed(&self) -> usize {
        RESERVED_HOST_SLOTS + self.disk_count() + usize::from(self.any_rng()) + self.uplink_count()
    }
}

// ---------------------------------------------------------------------------
// The slot plan.

/// A virtio-mmio slot: its index (0 = the lowest address), register block and
/// interrupt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Slot {
    /// 0 for `0x1000_1000`, ..., 7 for `0x1000_8000`.
    pub index: usize,
    /// Address of its register block.
    pub base: u64,
    /// Its interrupt (PLIC source or APLIC wire).
    pub irq: u32,
}

impl Slot {
    /// Slot `index` of the 8 (`None` past them).
    pub fn at(index: usize) -> Option<Slot> {
        (index < MACHINE_VIRTIO_SLOTS).then(|| Slot {
            index,
            base: VIRTIO_MMIO_BASE + index as u64 * VIRTIO_MMIO_STRIDE,
            irq: VIRTIO_MMIO_FIRST_IRQ + index as u32,
        })
    }
}

/// The machine's slot that QEMU gives the virtio-mmio device at `position`
/// (0-based) among the `-device virtio-*-device` arguments: the highest free
/// one, so position 0 gets `0x1000_8000` (interrupt 8), position 7
/// `0x1000_1000` (interrupt 1), and there is none past 7.
pub fn host_slot(position: usize) -> Option<Slot> {
    Slot::at((MACHINE_VIRTIO_SLOTS - 1).checked_sub(position)?)
}

/// Slot `index` of a VM's memory map (0 is the virtio-console's): the boot
/// package's guest slots.
pub fn guest_slot(index: usize) -> Option<Slot> {
    let i = u8::try_from(index)
        .ok()
        .filter(|&i| i < fv_bootpkg::GUEST_VIRTIO_SLOTS)?;
    Some(Slot {
        index,
        base: fv_bootpkg::slot_gpa(i).raw(),
        irq: fv_bootpkg::GUEST_VIRTIO_FIRST_IRQ + u32::from(i),
    })
}

/// A physical device QEMU attaches, in command-line order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostDeviceKind {
    /// A slot of the hypervisor's own ([`RESERVED_HOST_SLOTS`]), after the
    /// config's devices; its owner puts its device on the command line.
    Reserved,
    /// The disk `disk` of VM `vm`.
    Disk {
        /// Index of the VM.
        vm: usize,
        /// Index in its `disks`.
        disk: usize,
        /// The image file.
        path: PathBuf,
        /// Opened `readonly=on`.
        read_only: bool,
    },
    /// The machine's entropy device.
    Rng,
    /// The uplink of switch `switch`.
    Uplink {
        /// Index in [`Devices::switches`].
        switch: usize,
        /// Its port forwards.
        forwards: Vec<PortForward>,
        /// The MAC address of the machine's virtio-net ([`uplink_mac`]).
        mac: MacAddr,
    },
}

/// A physical device and its slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostDevice {
    /// What it is.
    pub kind: HostDeviceKind,
    /// Where QEMU puts it.
    pub slot: Slot,
}

/// What serves a VM device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmDeviceKind {
    /// Disk `disk` of the VM, served from the physical virtio-blk at `host`.
    Disk {
        /// Index in the VM's `disks`.
        disk: usize,
        /// The physical device's slot.
        host: Slot,
        /// Read-only.
        read_only: bool,
    },
    /// NIC `nic` of the VM, a port of switch `switch`.
    Nic {
        /// Index in the VM's `nics`.
        nic: usize,
        /// Index in [`Devices::switches`].
        switch: usize,
        /// Its MAC address.
        mac: MacAddr,
    },
    /// The VM's virtio-rng, fed from the physical virtio-rng at `host`.
    Rng {
        /// The physical device's slot.
        host: Slot,
    },
}

/// A VM device and its slot in the VM's memory map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmDevice {
    /// What it is and what serves it.
    pub kind: VmDeviceKind,
    /// Its slot in the VM.
    pub slot: Slot,
}

/// Where every device goes (see the module documentation).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DevicePlan {
    /// The machine's virtio-mmio devices in QEMU command-line order (slot
    /// `0x1000_8000` first), reserved slots included.
    pub host: Vec<HostDevice>,
    /// Each VM's devices, in slot order.
    pub vms: Vec<Vec<VmDevice>>,
    /// Each switch's uplink slot, if it has one (same order as
    /// [`Devices::switches`]).
    pub uplinks: Vec<Option<Slot>>,
}

impl DevicePlan {
    /// Whether QEMU gets any virtio-mmio device of the config.
    pub fn has_host_devices(&self) -> bool {
        self.host
            .iter()
            .any(|d| !matches!(d.kind, HostDeviceKind::Reserved))
    }
}

/// A VM device, to say which one did not fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmItem {
    /// `disks[i]`.
    Disk(usize),
    /// `nics[i]`.
    Nic(usize),
    /// `rng`.
    Rng,
}

/// Why a plan cannot be made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlanError {
    /// More physical devices than the machine has virtio-mmio slots.
    MachineSlots {
        /// Slots needed (reserved ones included).
        needed: usize,
        /// The first of the config's devices, in command-line order, that
        /// found no slot once the reserved ones are set aside.
        first_unplaced: HostDeviceKind,
    },
    /// More devices in VM `vm` than its memory map has slots for.
    VmSlots {
        /// Index of the VM.
        vm: usize,
        /// Slots it needs.
        needed: usize,
        /// The first device that found no slot.
        first_unplaced: VmItem,
    },
    /// NIC `nic` of VM `vm` names a switch that is not defined.
    UnknownSwitch {
        /// Index of the VM.
        vm: usize,
        /// Index in its `nics`.
        nic: usize,
    },
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanError::MachineSlots { needed, .. } => write!(
                f,
                "{needed} virtio-mmio devices for a machine with {MACHINE_VIRTIO_SLOTS} slots"
            ),
            PlanError::VmSlots { vm, needed, .. } => write!(
                f,
                "VM {vm} has {needed} devices; a VM has {MAX_VM_DEVICES} slots for them"
            ),
            PlanError::UnknownSwitch { vm, nic } => {
                write!(f, "NIC {nic} of VM {vm} is on a switch that is not defined")
            }
        }
    }
}

impl std::error::Error for PlanError {}

/// Places every device (see the module documentation for the order).
pub fn plan(devices: &Devices) -> Result<DevicePlan, PlanError> {
    let mut order: Vec<HostDeviceKind> = Vec::new();
    for (vm, v) in devices.vms.iter().enumerate() {
        for (disk, d) in v.disks.iter().enumerate() {
            order.push(HostDeviceKind::Disk {
                vm,
                disk,
                path: d.path.clone(),
                read_only: d.read_only,
            });
        }
    }
    if devices.any_rng() {
        order.push(HostDeviceKind::Rng);
    }
    for (n, (switch, s)) in devices
        .switches
        .iter()
        .enumerate()
        .filter(|(_, s)| s.uplink)
        .enumerate()
    {
        order.push(HostDeviceKind::Uplink {
            switch,
            forwards: s.forwards.clone(),
            mac: uplink_mac(n),
        });
    }
    order.extend(std::iter::repeat_n(
        HostDeviceKind::Reserved,
        RESERVED_HOST_SLOTS,
    ));
    let needed = order.len();
    // The config's devices get the slots the reserved ones leave.
    let room = MACHINE_VIRTIO_SLOTS - RESERVED_HOST_SLOTS;
    if needed > MACHINE_VIRTIO_SLOTS {
        return Err(PlanError::MachineSlots {
            needed,
            first_unplaced: order.swap_remove(room),
        });
    }
    let mut host = Vec::with_capacity(needed);
    for (position, kind) in order.into_iter().enumerate() {
        let Some(slot) = host_slot(position) else {
            continue; // not reached: `needed` fits
        };
        host.push(HostDevice { kind, slot });
    }
    let slot_of = |want: &dyn Fn(&HostDeviceKind) -> bool| {
        host.iter().find(|h| want(&h.kind)).map(|h| h.slot)
    };
    let rng_slot = slot_of(&|k| matches!(k, HostDeviceKind::Rng));
    let mut vms = Vec::with_capacity(devices.vms.len());
    for (vm, v) in devices.vms.iter().enumerate() {
        let mut items: Vec<(VmItem, VmDeviceKind)> = Vec::new();
        for (disk, d) in v.disks.iter().enumerate() {
            let host = slot_of(
                &|k| matches!(k, HostDeviceKind::Disk { vm: a, disk: b, .. } if *a == vm && *b == disk),
            );
            // Every disk got a host slot above, or the plan failed there.
            let Some(host) = host else {
                continue;
            };
            items.push((
                VmItem::Disk(disk),
                VmDeviceKind::Disk {
                    disk,
                    host,
                    read_only: d.read_only,
                },
            ));
        }
        for (nic, n) in v.nics.iter().enumerate() {
            let Some(switch) = devices.switches.iter().position(|s| s.name == n.switch) else {
                return Err(PlanError::UnknownSwitch { vm, nic });
            };
            items.push((
                VmItem::Nic(nic),
                VmDeviceKind::Nic {
                    nic,
                    switch,
                    mac: n.mac,
                },
            ));
        }
        if let (true, Some(host)) = (v.rng, rng_slot) {
            items.push((VmItem::Rng, VmDeviceKind::Rng { host }));
        }
        let needed = items.len();
        let mut placed = Vec::with_capacity(needed);
        for (i, (item, kind)) in items.into_iter().enumerate() {
            let Some(slot) = guest_slot(GUEST_CONSOLE_SLOTS + i) else {
                return Err(PlanError::VmSlots {
                    vm,
                    needed,
                    first_unplaced: item,
                });
            };
            placed.push(VmDevice { kind, slot });
        }
        vms.push(placed);
    }
    let uplinks = (0..devices.switches.len())
        .map(|s| slot_of(&|k| matches!(k, HostDeviceKind::Uplink { switch, .. } if *switch == s)))
        .collect();
    Ok(DevicePlan { host, vms, uplinks })
}

/// One line per VM device and per switch, for `ferrovisor run`'s summary:
/// where each lands in the VM and what serves it. `vm_names[i]` names VM `i`.
pub fn describe(devices: &Devices, plan: &DevicePlan, vm_names: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for (i, placed) in plan.vms.iter().enumerate() {
        let vm = vm_names.get(i).copied().unwrap_or("?");
        for d in placed {
            let at = d.slot.base;
            out.push(match d.kind {
                VmDeviceKind::Disk {
                    disk,
                    host,
                    read_only,
                } => {
                    let path = devices.vms[i].disks[disk].path.display();
                    let size = std::fs::metadata(&devices.vms[i].disks[disk].path)
                        .map_or(0, |m| m.len());
                    format!(
                        "VM `{vm}`: disk {disk} at {at:#x}: {path} ({} sectors, {}), the machine's virtio-blk at {:#x}",
                        size / SECTOR_SIZE,
                        if read_only { "read-only" } else { "read-write" },
                        host.base
                    )
                }
                VmDeviceKind::Nic { nic, switch, mac } => format!(
                    "VM `{vm}`: NIC {nic} at {at:#x}: MAC {mac}{}, on switch `{}`",
                    if devices.vms[i].nics[nic].mac_given {
                        ""
                    } else {
                        " (derived)"
                    },
                    devices.switches[switch].name
                ),
                VmDeviceKind::Rng { host } => format!(
                    "VM `{vm}`: virtio-rng at {at:#x}, fed from the machine's virtio-rng at {:#x}",
                    host.base
                ),
            });
        }
    }
    for (s, sw) in devices.switches.iter().enumerate() {
        let ports = plan
            .vms
            .iter()
            .flatten()
            .filter(|d| matches!(d.kind, VmDeviceKind::Nic { switch, .. } if switch == s))
            .count();
        let mut line = format!("switch `{}`: {ports} VM NIC(s)", sw.name);
        if let Some(slot) = plan.uplinks.get(s).copied().flatten() {
            line.push_str(&format!(
                "; uplink: the machine's virtio-net at {:#x} on QEMU's user network (VMs reach the host at {USER_NET_GATEWAY})",
                slot.base
            ));
            for f in &sw.forwards {
                line.push_str(&format!(
                    "; {}:{} ({}) -> {}:{}",
                    FORWARD_HOST_ADDR,
                    f.host_port,
                    f.protocol.name(),
                    f.guest_addr,
                    f.guest_port
                ));
            }
        }
        out.push(line);
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    fn disk(p: &str, read_only: bool) -> Disk {
        Disk {
            path: PathBuf::from(p),
            read_only,
        }
    }

    fn nic(vm: &str, i: usize, switch: &str) -> Nic {
        Nic {
            switch: switch.into(),
            mac: MacAddr::derived(vm, i),
            mac_given: false,
        }
    }

    fn switch(name: &str, uplink: bool) -> Switch {
        Switch {
            name: name.into(),
            uplink,
            forwards: Vec::new(),
        }
    }

    /// QEMU `virt` fills its slots from the top: the first device at
    /// 0x10008000 with interrupt 8 (as the hypervisor logs it in
    /// tests/qemu.rs `host_blk`), the eighth at 0x10001000 with interrupt 1.
    #[test]
    fn host_slots_fill_from_the_top() {
        let s = |p| host_slot(p).map(|s: Slot| (s.index, s.base, s.irq));
        assert_eq!(s(0), Some((7, 0x1000_8000, 8)));
        assert_eq!(s(1), Some((6, 0x1000_7000, 7)));
        assert_eq!(s(7), Some((0, 0x1000_1000, 1)));
        assert_eq!(s(8), None);
        assert_eq!(s(usize::MAX), None);
        let g = |i| guest_slot(i).map(|s: Slot| (s.base, s.irq));
        assert_eq!(g(0), Some((0x1000_1000, 1)));
        assert_eq!(
            (GUEST_VIRTIO_SLOTS, GUEST_CONSOLE_SLOTS, MAX_VM_DEVICES),
            (8, 1, 7)
        );
        // The machine's slots and a VM's have the same layout (QEMU virt's).
        for i in 0..8 {
            assert_eq!(guest_slot(i), Slot::at(i));
        }
        assert_eq!(g(1), Some((0x1000_2000, 2)));
        assert_eq!(g(7), Some((0x1000_8000, 8)));
        assert_eq!(g(8), None);
    }

    /// Disks VM by VM, then the one virtio-rng, then the uplink; VM devices
    /// from guest slot 1 up: disks, NICs, rng.
    #[test]
    fn plan_order_and_slots() {
        let devices = Devices {
            vms: vec![
                VmDevices {
                    disks: vec![disk("a0.img", false), disk("a1.img", true)],
                    nics: vec![nic("a", 0, "lan")],
                    rng: true,
                },
                VmDevices {
                    disks: vec![disk("b0.img", false)],
                    nics: vec![nic("b", 0, "lan"), nic("b", 1, "dmz")],
                    rng: true,
                },
                VmDevices::default(),
            ],
            switches: vec![switch("dmz", false), switch("lan", true)],
        };
        assert_eq!(devices.host_slots_needed(), RESERVED_HOST_SLOTS + 5);
        let p = plan(&devices).unwrap();
        let bases: Vec<(u64, &HostDeviceKind)> =
            p.host.iter().map(|h| (h.slot.base, &h.kind)).collect();
        assert_eq!(RESERVED_HOST_SLOTS, 0, "update the bases below");
        assert_eq!(bases.len(), 5);
        assert_eq!(bases[0].0, 0x1000_8000);
        assert!(matches!(
            bases[0].1,
            HostDeviceKind::Disk {
                vm: 0,
                disk: 0,
                read_only: false,
                ..
            }
        ));
        assert_eq!(bases[1].0, 0x1000_7000);
        assert!(matches!(
            bases[1].1,
            HostDeviceKind::Disk {
                vm: 0,
                disk: 1,
                read_only: true,
                ..
            }
        ));
        assert_eq!(bases[2].0, 0x1000_6000);
        assert!(matches!(
            bases[2].1,
            HostDeviceKind::Disk { vm: 1, disk: 0, .. }
        ));
        assert_eq!(bases[3], (0x1000_5000, &HostDeviceKind::Rng));
        assert_eq!(
            bases[4],
            (
                0x1000_4000,
                &HostDeviceKind::Uplink {
                    switch: 1,
                    forwards: Vec::new(),
                    mac: UPLINK_MAC
                }
            )
        );
        assert_eq!(p.uplinks, [None, Slot::at(3)]);
        let a: Vec<(u64, VmDeviceKind)> = p.vms[0].iter().map(|d| (d.slot.base, d.kind)).collect();
        assert_eq!(
            a,
            [
                (
                    0x1000_2000,
                    VmDeviceKind::Disk {
                        disk: 0,
                        host: host_slot(0).unwrap(),
                        read_only: false
                    }
                ),
                (
                    0x1000_3000,
                    VmDeviceKind::Disk {
                        disk: 1,
                        host: host_slot(1).unwrap(),
                        read_only: true
                    }
                ),
                (
                    0x1000_4000,
                    VmDeviceKind::Nic {
                        nic: 0,
                        switch: 1,
                        mac: MacAddr::derived("a", 0)
                    }
                ),
                (
                    0x1000_5000,
                    VmDeviceKind::Rng {
                        host: host_slot(3).unwrap()
                    }
                ),
            ]
        );
        let b: Vec<u64> = p.vms[1].iter().map(|d| d.slot.base).collect();
        assert_eq!(b, [0x1000_2000, 0x1000_3000, 0x1000_4000, 0x1000_5000]);
        assert!(matches!(
            p.vms[1][2].kind,
            VmDeviceKind::Nic { switch: 0, .. }
        ));
        assert!(p.vms[2].is_empty());
        assert!(p.has_host_devices());
        assert!(!plan(&Devices::none(2)).unwrap().has_host_devices());
    }

    /// Eight physical devices fit; the ninth is named.
    #[test]
    fn machine_slots_run_out() {
        let free = MACHINE_VIRTIO_SLOTS - RESERVED_HOST_SLOTS;
        let vm = |n: usize| VmDevices {
            disks: (0..n).map(|i| disk(&format!("{i}.img"), false)).collect(),
            ..VmDevices::default()
        };
        let fits = Devices {
            vms: vec![vm(free - 4), vm(3)],
            switches: vec![switch("lan", true)],
        };
        assert_eq!(fits.host_slots_needed(), MACHINE_VIRTIO_SLOTS);
        assert_eq!(plan(&fits).unwrap().host.len(), MACHINE_VIRTIO_SLOTS);
        let mut over = fits.clone();
        over.vms[1].rng = true;
        match plan(&over) {
            Err(PlanError::MachineSlots {
                needed,
                first_unplaced,
            }) => {
                assert_eq!(needed, MACHINE_VIRTIO_SLOTS + 1);
                assert!(
                    matches!(first_unplaced, HostDeviceKind::Uplink { switch: 0, .. }),
                    "{first_unplaced:?}"
                );
            }
            other => panic!("{other:?}"),
        }
        // Disks come before the uplink: the fifth disk of VM 1 is the first
        // without a slot.
        let mut over = fits;
        over.vms[1].disks.push(disk("x.img", true));
        over.vms[1].disks.push(disk("y.img", true));
        assert!(matches!(
            plan(&over),
            Err(PlanError::MachineSlots {
                needed: 10,
                first_unplaced: HostDeviceKind::Disk { vm: 1, disk: 4, .. },
            })
        ));
    }

    /// A VM has 7 slots for disks, NICs and rng; the eighth device is named.
    #[test]
    fn vm_slots_run_out() {
        let nics = |n: usize| (0..n).map(|i| nic("a", i, "lan")).collect::<Vec<_>>();
        let mut d = Devices {
            vms: vec![VmDevices {
                disks: vec![disk("a.img", false)],
                nics: nics(5),
                rng: true,
            }],
            switches: vec![switch("lan", false)],
        };
        assert_eq!(plan(&d).unwrap().vms[0].len(), MAX_VM_DEVICES);
        assert_eq!(plan(&d).unwrap().vms[0][6].slot.base, 0x1000_8000);
        d.vms[0].nics = nics(6);
        assert_eq!(
            plan(&d),
            Err(PlanError::VmSlots {
                vm: 0,
                needed: 8,
                first_unplaced: VmItem::Rng
            })
        );
        d.vms[0].rng = false;
        d.vms[0].nics = nics(7);
        assert_eq!(
            plan(&d),
            Err(PlanError::VmSlots {
                vm: 0,
                needed: 8,
                first_unplaced: VmItem::Nic(6)
            })
        );
    }

    #[test]
    fn unknown_switch_and_uplinks() {
        let mut d = Devices {
            vms: vec![VmDevices {
                nics: vec![nic("a", 0, "lan"), nic("a", 1, "wan")],
                ..VmDevices::default()
            }],
            switches: vec![switch("lan", true)],
        };
        assert_eq!(plan(&d), Err(PlanError::UnknownSwitch { vm: 0, nic: 1 }));
        // One virtio-net per uplink switch, each with its own MAC.
        d.switches.push(switch("dmz", false));
        d.switches.push(switch("wan", true));
        let p = plan(&d).unwrap();
        let up: Vec<(usize, MacAddr, u64)> = p
            .host
            .iter()
            .filter_map(|h| match &h.kind {
                HostDeviceKind::Uplink { switch, mac, .. } => Some((*switch, *mac, h.slot.base)),
                _ => None,
            })
            .collect();
        assert_eq!(
            up,
            [
                (0, UPLINK_MAC, 0x1000_8000),
                (2, uplink_mac(1), 0x1000_7000)
            ]
        );
        assert_eq!(uplink_mac(1).to_string(), "52:54:00:fe:00:02");
        assert_eq!(p.uplinks, [host_slot(0), None, host_slot(1)]);
    }

    #[test]
    fn mac_parse_and_print() {
        let m = MacAddr::parse("52:54:00:AB:cd:0f").unwrap();
        assert_eq!(m.0, [0x52, 0x54, 0x00, 0xab, 0xcd, 0x0f]);
        assert_eq!(m.to_string(), "52:54:00:ab:cd:0f");
        assert_eq!(m.nic_problem(), None);
        for bad in [
            "",
            "52:54:00:12:34",
            "52:54:00:12:34:56:78",
            "52-54-00-12-34-56",
            "5:54:00:12:34:56",
            "525:4:00:12:34:56",
            "52:54:00:12:34:5g",
            "52:54:00:12:34:+5",
            "52:54:00:12:34:56:",
        ] {
            let e = MacAddr::parse(bad).unwrap_err();
            assert!(e.contains("is not a MAC address"), "{bad}: {e}");
        }
        let zero = MacAddr::parse("00:00:00:00:00:00").unwrap();
        assert!(zero.nic_problem().unwrap().contains("all zero"));
        let multi = MacAddr::parse("01:00:5e:00:00:01").unwrap();
        assert!(multi.nic_problem().unwrap().contains("multicast"));
        let bcast = MacAddr::parse("ff:ff:ff:ff:ff:ff").unwrap();
        assert!(bcast.nic_problem().unwrap().contains("multicast"));
    }

    /// Derived MACs: locally administered unicast, stable, different per VM
    /// and per NIC, never the uplink's.
    #[test]
    fn derived_macs() {
        let a0 = MacAddr::derived("a", 0);
        assert_eq!(a0, MacAddr::derived("a", 0));
        assert_eq!(a0.0[0], 0x02);
        assert_eq!(a0.nic_problem(), None);
        // Pinned: the rule is documented, so a change is a visible change.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in b"a/0" {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        assert_eq!(a0.0[1..], h.to_be_bytes()[..5]);
        let mut seen = std::collections::HashSet::new();
        for vm in ["a", "b", "web", "db", "vm0", "vm1", "linux"] {
            for i in 0..8 {
                let m = MacAddr::derived(vm, i);
                assert!(seen.insert(m), "{vm}/{i}: {m} again");
                assert_ne!(m, UPLINK_MAC);
                assert_eq!(m.0[0] & 0x03, 0x02, "{m}: not local unicast");
            }
        }
    }

    #[test]
    fn port_forwards() {
        let f = PortForward::parse("tcp:8080:80").unwrap();
        assert_eq!(
            f,
            PortForward {
                protocol: Protocol::Tcp,
                host_port: 8080,
                guest_addr: USER_NET_GUEST,
                guest_port: 80
            }
        );
        assert_eq!(f.hostfwd(), "tcp:127.0.0.1:8080-10.0.2.15:80");
        assert_eq!(f.to_string(), "tcp:8080:80");
        let u = PortForward::parse("udp:65535:10.0.2.16:1").unwrap();
        assert_eq!(u.hostfwd(), "udp:127.0.0.1:65535-10.0.2.16:1");
        assert_eq!(u.to_string(), "udp:65535:10.0.2.16:1");
        for (bad, says) in [
            ("tcp:8080", "expected PROTO:HOSTPORT:GUESTPORT"),
            ("tcp:1:2:3:4:5", "expected PROTO"),
            ("", "expected PROTO"),
            ("sctp:80:80", "unknown protocol `sctp`"),
            ("TCP:80:80", "unknown protocol `TCP`"),
            ("tcp:0:80", "host port `0` is not a port number 1..=65535"),
            ("tcp:65536:80", "host port `65536`"),
            ("tcp:80:", "guest port ``"),
            ("tcp:+80:80", "host port `+80`"),
            ("tcp:-1:80", "host port `-1`"),
            ("tcp:080080:80", "host port `080080`"),
            ("tcp:80:99999999999999999999", "guest port"),
            ("tcp:80:10.0.2:80", "not an IPv4 address"),
            ("tcp:80:10.0.2.2:80", "not a guest address"),
            ("tcp:80:10.0.2.3:80", "not a guest address"),
            ("tcp:80:10.0.2.255:80", "not a guest address"),
            ("tcp:80:192.168.1.5:80", "not a guest address"),
        ] {
            let e = PortForward::parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
