//! Reading the host device tree OpenSBI hands the hypervisor into [`PlatformInfo`].

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use fv_addr::{HostPhysAddr, Range};

use crate::dtb::{Dtb, DtbError, Node, Property};
use crate::isa::{isa_string_from_list, IsaExtensions, MmuType};

/// Local interrupt number of the supervisor external interrupt (`mip.SEIP`, bit 9).
pub const IRQ_S_EXT: u32 = 9;
/// Local interrupt number of the machine external interrupt (`mip.MEIP`, bit 11).
pub const IRQ_M_EXT: u32 = 11;
/// What OpenSBI writes over the interrupt number of a PLIC context it keeps for
/// itself (M-mode), so that S-mode software skips it.
pub const IRQ_UNUSABLE: u32 = 0xffff_ffff;

/// Why a device tree could not be turned into a [`PlatformInfo`].
///
/// `node` names the kind of node being read (`"cpu"`, `"plic"`, ...) and
/// `property` the property at fault; both are static so that no error path
/// allocates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlatformError {
    /// The blob is not a well-formed flattened device tree.
    Dtb(DtbError),
    /// A node the platform cannot do without (e.g. `/cpus`) is absent.
    MissingNode(&'static str),
    /// No `device_type = "memory"` node with a non-empty range.
    NoMemory,
    /// No enabled cpu node under `/cpus`.
    NoHarts,
    /// Two cpu nodes have the same hart ID.
    DuplicateHartId(u64),
    /// No `timebase-frequency` on `/cpus` or on any cpu node.
    MissingTimebase,
    /// A required property is absent.
    MissingProperty {
        /// Kind of node.
        node: &'static str,
        /// Property name.
        property: &'static str,
    },
    /// A property has the wrong length, type or value.
    BadProperty {
        /// Kind of node.
        node: &'static str,
        /// Property name.
        property: &'static str,
    },
    /// A phandle refers to no node, or to a node of the wrong kind.
    BadPhandle {
        /// Kind of node holding the reference.
        node: &'static str,
        /// Property holding the reference.
        property: &'static str,
    },
    /// `#address-cells` / `#size-cells` larger than 2 (or an address of 0 cells)
    /// where an address has to be decoded.
    UnsupportedCells {
        /// Kind of node.
        node: &'static str,
    },
    /// `start + size` of a region does not fit in 64 bits.
    AddressOverflow {
        /// Kind of node.
        node: &'static str,
    },
    /// A `reg` address lies outside every `ranges` entry of a parent bus.
    Untranslatable {
        /// Kind of node.
        node: &'static str,
    },
}

impl From<DtbError> for PlatformError {
    fn from(e: DtbError) -> Self {
        PlatformError::Dtb(e)
    }
}

impl fmt::Display for PlatformError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlatformError::Dtb(e) => write!(f, "malformed device tree: {e}"),
            PlatformError::MissingNode(n) => write!(f, "device tree has no {n} node"),
            PlatformError::NoMemory => f.write_str("device tree describes no memory"),
            PlatformError::NoHarts => f.write_str("device tree describes no enabled hart"),
            PlatformError::DuplicateHartId(id) => write!(f, "hart ID {id} appears twice"),
            PlatformError::MissingTimebase => f.write_str("no timebase-frequency"),
            PlatformError::MissingProperty { node, property } => {
                write!(f, "{node} node lacks {property}")
            }
            PlatformError::BadProperty { node, property } => {
                write!(f, "{node} node has a malformed {property}")
            }
            PlatformError::BadPhandle { node, property } => {
                write!(
                    f,
                    "{node} node's {property} refers to a missing or wrong node"
                )
            }
            PlatformError::UnsupportedCells { node } => {
                write!(f, "{node} node uses unsupported address/size cells")
            }
            PlatformError::AddressOverflow { node } => {
                write!(f, "{node} node has a region wrapping past 2^64")
            }
            PlatformError::Untranslatable { node } => {
                write!(f, "{node} node's address is outside its bus ranges")
            }
        }
    }
}

type Result<T> = core::result::Result<T, PlatformError>;

/// One hart (cpu node under `/cpus`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HartInfo {
    /// The hart ID (`reg` of the cpu node; what `mhartid` reads and SBI uses).
    pub hartid: u64,
    /// `status` is absent, `"okay"` or `"ok"` (OpenSBI-disabled harts say `"disabled"`).
    pub enabled: bool,
    /// The `riscv,isa` string; when the node only has `riscv,isa-base` and
    /// `riscv,isa-extensions`, an equivalent string built from those.
    pub isa: String,
    /// The extensions of interest, from `riscv,isa-extensions` when present
    /// (the newer, authoritative binding), else from `riscv,isa`.
    pub extensions: IsaExtensions,
    /// `mmu-type`, if it names Sv39/Sv48/Sv57.
    pub mmu_type: Option<MmuType>,
}

/// A 16550-compatible UART.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Uart {
    /// Start of the register block.
    pub base: HostPhysAddr,
    /// Length of the register block in bytes.
    pub size: u64,
    /// Its interrupt number at its interrupt controller (first cell of `interrupts`).
    pub irq: Option<u32>,
    /// `reg-shift`: registers are `1 << reg_shift` bytes apart (default 0).
    pub reg_shift: u32,
    /// `reg-io-width`: access width in bytes (default 1).
    pub reg_io_width: u32,
    /// `clock-frequency` of the UART's input clock in Hz.
    pub clock: Option<u32>,
}

/// A privilege level a PLIC context or an AIA file delivers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrivMode {
    /// S-mode (HS-mode for the hypervisor): local interrupt 9.
    Supervisor,
    /// M-mode (OpenSBI's): local interrupt 11.
    Machine,
}

/// One usable PLIC context.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlicContext {
    /// Context number (position in `interrupts-extended`): selects the enable
    /// bits at `0x2000 + 0x80 * index` and threshold/claim at `0x200000 + 0x1000 * index`.
    pub index: u32,
    /// The hart it interrupts.
    pub hartid: u64,
    /// The privilege level it interrupts.
    pub mode: PrivMode,
}

/// The platform-level interrupt controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plic {
    /// Start of the register block.
    pub base: HostPhysAddr,
    /// Length of the register block.
    pub size: u64,
    /// `riscv,ndev`: number of interrupt sources (IDs `1..=ndev`).
    pub ndev: u32,
    /// The usable contexts; contexts OpenSBI marked unusable are left out.
    pub contexts: Vec<PlicContext>,
}

impl Plic {
    /// The context that interrupts `hartid` at `mode`, if any.
    pub fn context(&self, hartid: u64, mode: PrivMode) -> Option<u32> {
        self.contexts
            .iter()
            .find(|c| c.hartid == hartid && c.mode == mode)
            .map(|c| c.index)
    }
}

/// How an APLIC domain delivers interrupts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AplicDelivery {
    /// As MSIs to an IMSIC (`msi-parent`).
    Msi,
    /// Directly, through one interrupt delivery control (IDC) per hart: the
    /// hart IDs in IDC order.
    Direct {
        /// `idc_harts[i]` is the hart IDC `i` interrupts.
        idc_harts: Vec<u64>,
    },
}

/// The S-level APLIC domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Aplic {
    /// Start of the domain's register block.
    pub base: HostPhysAddr,
    /// Length of the register block.
    pub size: u64,
    /// `riscv,num-sources`.
    pub num_sources: u32,
    /// MSI or direct delivery.
    pub delivery: AplicDelivery,
}

/// The S-level IMSIC (one interrupt file per hart, each followed by its guest files).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Imsic {
    /// Start of the first register region.
    pub base: HostPhysAddr,
    /// Length of the first register region.
    pub size: u64,
    /// `riscv,guest-index-bits` (default 0): each hart owns `2^bits` 4 KiB
    /// pages, the S-level file then `2^bits - 1` guest files.
    pub guest_index_bits: u32,
    /// `riscv,num-ids`: highest interrupt identity.
    pub num_ids: u32,
    /// Hart IDs in interrupt-file order.
    pub harts: Vec<u64>,
}

impl Imsic {
    /// The S-level interrupt file of `hartid`, assuming the single-region
    /// layout QEMU uses (file `i` at `base + i * 2^(guest_index_bits + 12)`).
    /// `None` if the hart has no file or the file lies outside the region.
    pub fn interrupt_file(&self, hartid: u64) -> Option<HostPhysAddr> {
        let i = self.harts.iter().position(|&h| h == hartid)? as u64;
        let stride = 1u64.checked_shl(self.guest_index_bits.checked_add(12)?)?;
        let off = i.checked_mul(stride)?;
        if off.checked_add(stride)? > self.size {
            return None;
        }
        self.base.checked_add(off).ok()
    }
}

/// A register write that powers off or resets the machine (`syscon-poweroff`,
/// `syscon-reboot`): write `value` under `mask` at `regmap.start + offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SysconAction {
    /// The syscon's register block (`regmap` target's `reg`).
    pub regmap: Range<HostPhysAddr>,
    /// Byte offset of the register in the block.
    pub offset: u32,
    /// Value to write.
    pub value: u32,
    /// Bits of the register to change (default all).
    pub mask: u32,
}

/// A virtio-mmio transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirtioMmio {
    /// Its register block.
    pub reg: Range<HostPhysAddr>,
    /// Its interrupt number at its interrupt controller.
    pub irq: Option<u32>,
}

/// What the hypervisor needs to know about the machine, read from its device tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlatformInfo {
    /// RAM: every `reg` entry of every enabled `device_type = "memory"` node
    /// (empty entries dropped), in blob order.
    pub memory: Vec<Range<HostPhysAddr>>,
    /// Memory that is not ours: every `/reserved-memory` child's `reg`, then
    /// the header's `/memreserve/` entries.
    pub reserved: Vec<Range<HostPhysAddr>>,
    /// The harts, sorted by hart ID.
    pub harts: Vec<HartInfo>,
    /// Frequency of the `time` CSR in Hz.
    pub timebase_frequency: u64,
    /// The console UART: the `/chosen` `stdout-path` node if it is a 16550,
    /// else the first enabled 16550.
    pub uart: Option<Uart>,
    /// The PLIC, if the machine has one.
    pub plic: Option<Plic>,
    /// The S-level APLIC domain, if the machine has AIA.
    pub aplic: Option<Aplic>,
    /// The S-level IMSIC, if the machine has one.
    pub imsic: Option<Imsic>,
    /// A SiFive-style CLINT (`riscv,clint0` / `sifive,clint0`).
    pub clint: Option<Range<HostPhysAddr>>,
    /// ACLINT MTIMER regions (`riscv,aclint-mtimer`), in `reg` order.
    pub aclint_mtimer: Vec<Range<HostPhysAddr>>,
    /// ACLINT MSWI (`riscv,aclint-mswi`).
    pub aclint_mswi: Option<Range<HostPhysAddr>>,
    /// ACLINT SSWI (`riscv,aclint-sswi`).
    pub aclint_sswi: Option<Range<HostPhysAddr>>,
    /// virtio-mmio transports, sorted by address.
    pub virtio_mmio: Vec<VirtioMmio>,
    /// How to power the machine off (`syscon-poweroff`).
    pub poweroff: Option<SysconAction>,
    /// How to reset the machine (`syscon-reboot`).
    pub reboot: Option<SysconAction>,
    /// `/chosen` `linux,initrd-start` .. `linux,initrd-end`.
    pub initrd: Option<Range<HostPhysAddr>>,
    /// `/chosen` `bootargs` (`None` when absent or empty).
    pub bootargs: Option<String>,
    /// `/chosen` `rng-seed`: entropy from the firmware (QEMU provides 32 bytes).
    pub rng_seed: Option<Vec<u8>>,
}

impl PlatformInfo {
    /// The extensions every enabled hart has.
    pub fn common_extensions(&self) -> IsaExtensions {
        self.harts
            .iter()
            .filter(|h| h.enabled)
            .fold(IsaExtensions::all(), |acc, h| acc & h.extensions)
    }

    /// The hart with ID `hartid`.
    pub fn hart(&self, hartid: u64) -> Option<&HartInfo> {
        self.harts.iter().find(|h| h.hartid == hartid)
    }
}

/// Parses the host device tree (the blob OpenSBI passes in `a1`).
///
/// Never panics: any malformed input yields a [`PlatformError`]. Properties of
/// nodes the hypervisor does not use are not looked at.
pub fn parse(dtb: &[u8]) -> core::result::Result<PlatformInfo, PlatformError> {
    let dtb = Dtb::parse(dtb)?;
    let (harts, intcs, cpu_timebase) = parse_harts(&dtb)?;
    let timebase_frequency = parse_timebase(&dtb, cpu_timebase)?;
    let memory = parse_memory(&dtb)?;
    let reserved = parse_reserved(&dtb)?;
    let chosen = parse_chosen(&dtb)?;
    let uart = parse_uart(&dtb, chosen.stdout)?;
    let plic = parse_plic(&dtb, &intcs)?;
    let imsic = parse_imsic(&dtb, &intcs)?;
    let aplic = parse_aplic(&dtb, &intcs)?;
    let clint = first_enabled(&dtb, &["riscv,clint0", "sifive,clint0"])
        .map(|n| first_reg(n, "clint"))
        .transpose()?;
    let aclint_mtimer = match first_enabled(&dtb, &["riscv,aclint-mtimer"]) {
        Some(n) => reg_ranges(n, "aclint-mtimer")?,
        None => Vec::new(),
    };
    let aclint_mswi = first_enabled(&dtb, &["riscv,aclint-mswi"])
        .map(|n| first_reg(n, "aclint-mswi"))
        .transpose()?;
    let aclint_sswi = first_enabled(&dtb, &["riscv,aclint-sswi"])
        .map(|n| first_reg(n, "aclint-sswi"))
        .transpose()?;
    let virtio_mmio = parse_virtio(&dtb)?;
    let poweroff = parse_syscon(&dtb, "syscon-poweroff")?;
    let reboot = parse_syscon(&dtb, "syscon-reboot")?;
    Ok(PlatformInfo {
        memory,
        reserved,
        harts,
        timebase_frequency,
        uart,
        plic,
        aplic,
        imsic,
        clint,
        aclint_mtimer,
        aclint_mswi,
        aclint_sswi,
        virtio_mmio,
        poweroff,
        reboot,
        initrd: chosen.initrd,
        bootargs: chosen.bootargs,
        rng_seed: chosen.rng_seed,
    })
}

// ---------------------------------------------------------------------------
// Property helpers.

fn bad(node: &'static str, property: &'static str) -> PlatformError {
    PlatformError::BadProperty { node, property }
}

fn missing(node: &'static str, property: &'static str) -> PlatformError {
    PlatformError::MissingProperty { node, property }
}

/// An optional `<u32>` property; present but malformed is an error.
fn opt_u32(n: Node<'_, '_>, ctx: &'static str, name: &'static str) -> Result<Option<u32>> {
    n.property(name)
        .map(|p| p.as_u32().ok_or(bad(ctx, name)))
        .transpose()
}

/// An optional `<u32>` or `<u64>` property.
fn opt_u32_or_u64(n: Node<'_, '_>, ctx: &'static str, name: &'static str) -> Result<Option<u64>> {
    n.property(name)
        .map(|p| p.as_u32_or_u64().ok_or(bad(ctx, name)))
        .transpose()
}

/// An optional string property.
fn opt_str<'a>(n: Node<'_, 'a>, ctx: &'static str, name: &'static str) -> Result<Option<&'a str>> {
    n.property(name)
        .map(|p| p.as_str().ok_or(bad(ctx, name)))
        .transpose()
}

/// `#address-cells` / `#size-cells` of a bus node, with the spec's defaults (2 / 1).
fn bus_cells(bus: Node<'_, '_>, ctx: &'static str) -> Result<(u32, u32)> {
    let ac = opt_u32(bus, ctx, "#address-cells")?.unwrap_or(2);
    let sc = opt_u32(bus, ctx, "#size-cells")?.unwrap_or(1);
    Ok((ac, sc))
}

/// The `reg` entries of `node` as raw `(address, size)` pairs in its parent's
/// address space.
fn raw_reg(node: Node<'_, '_>, ctx: &'static str) -> Result<Vec<(u64, u64)>> {
    let parent = node.parent().ok_or(bad(ctx, "reg"))?;
    let (ac, sc) = bus_cells(parent, ctx)?;
    if ac == 0 || ac > 2 || sc > 2 {
        return Err(PlatformError::UnsupportedCells { node: ctx });
    }
    let prop = node.property("reg").ok_or(missing(ctx, "reg"))?;
    let mut cells = prop.cells().ok_or(bad(ctx, "reg"))?;
    if !cells.remaining().is_multiple_of((ac + sc) as usize) {
        return Err(bad(ctx, "reg"));
    }
    let mut out = Vec::new();
    while cells.remaining() > 0 {
        let a = cells.read(ac).ok_or(bad(ctx, "reg"))?;
        let s = cells.read(sc).ok_or(bad(ctx, "reg"))?;
        out.push((a, s));
    }
    Ok(out)
}

/// Translates `[addr, addr + size)` from the address space `node` sits in up
/// to the root's, through each ancestor bus's `ranges`. A bus with no or an
/// empty `ranges` maps 1:1.
fn translate(node: Node<'_, '_>, mut addr: u64, size: u64, ctx: &'static str) -> Result<u64> {
    let mut bus = node.parent();
    while let Some(b) = bus {
        let Some(up) = b.parent() else { break };
        if let Some(ranges) = b.property("ranges").filter(|p| !p.value.is_empty()) {
            let (cac, csc) = bus_cells(b, ctx)?;
            let (pac, _) = bus_cells(up, ctx)?;
            if cac > 2 || csc > 2 || pac > 2 || cac + pac + csc == 0 {
                return Err(PlatformError::UnsupportedCells { node: ctx });
            }
            let mut cells = ranges.cells().ok_or(bad(ctx, "ranges"))?;
            if !cells.remaining().is_multiple_of((cac + pac + csc) as usize) {
                return Err(bad(ctx, "ranges"));
            }
            let mut found = None;
            while cells.remaining() > 0 {
                let child = cells.read(cac).ok_or(bad(ctx, "ranges"))?;
                let parent = cells.read(pac).ok_or(bad(ctx, "ranges"))?;
                let len = cells.read(csc).ok_or(bad(ctx, "ranges"))?;
                let Some(off) = addr.checked_sub(child) else {
                    continue;
                };
                if off.checked_add(size).is_some_and(|end| end <= len) {
                    found = Some(
                        parent
                            .checked_add(off)
                            .ok_or(PlatformError::AddressOverflow { node: ctx })?,
                    );
                    break;
                }
            }
            addr = found.ok_or(PlatformError::Untranslatable { node: ctx })?;
        }
        bus = Some(up);
    }
    Ok(addr)
}

/// The `reg` entries of `node` as host-physical ranges.
fn reg_ranges(node: Node<'_, '_>, ctx: &'static str) -> Result<Vec<Range<HostPhysAddr>>> {
    raw_reg(node, ctx)?
        .into_iter()
        .map(|(a, s)| {
            let a = translate(node, a, s, ctx)?;
            Range::<HostPhysAddr>::new(HostPhysAddr::new(a), s)
                .map_err(|_| PlatformError::AddressOverflow { node: ctx })
        })
        .collect()
}

/// The first `reg` entry of `node`.
fn first_reg(node: Node<'_, '_>, ctx: &'static str) -> Result<Range<HostPhysAddr>> {
    reg_ranges(node, ctx)?
        .first()
        .copied()
        .ok_or(bad(ctx, "reg"))
}

/// First cell of `interrupts` (the interrupt number for PLIC and APLIC parents).
fn first_interrupt(node: Node<'_, '_>, ctx: &'static str) -> Result<Option<u32>> {
    match node.property("interrupts") {
        None => Ok(None),
        Some(p) => {
            let mut cells = p.cells().ok_or(bad(ctx, "interrupts"))?;
            Ok(Some(cells.next().ok_or(bad(ctx, "interrupts"))?))
        }
    }
}

/// The first enabled node compatible with any of `compats`, in blob order.
fn first_enabled<'d, 'a>(dtb: &'d Dtb<'a>, compats: &[&str]) -> Option<Node<'d, 'a>> {
    dtb.nodes()
        .find(|n| n.is_enabled() && compats.iter().any(|c| n.is_compatible(c)))
}

/// `interrupts-extended` decoded as `(phandle of the controller, first cell of
/// its specifier)`, the specifier length coming from each controller's
/// `#interrupt-cells`. Empty when the property is absent.
fn interrupts_extended(
    dtb: &Dtb<'_>,
    node: Node<'_, '_>,
    ctx: &'static str,
) -> Result<Vec<(u32, Option<u32>)>> {
    const P: &str = "interrupts-extended";
    let Some(prop) = node.property(P) else {
        return Ok(Vec::new());
    };
    let mut cells = prop.cells().ok_or(bad(ctx, P))?;
    let mut out = Vec::new();
    while let Some(phandle) = cells.next() {
        let target = dtb.find_phandle(phandle).ok_or(PlatformError::BadPhandle {
            node: ctx,
            property: P,
        })?;
        let n = target
            .property("#interrupt-cells")
            .and_then(|p| p.as_u32())
            .ok_or(PlatformError::BadPhandle {
                node: ctx,
                property: P,
            })?;
        let mut first = None;
        for i in 0..n {
            let c = cells.next().ok_or(bad(ctx, P))?;
            if i == 0 {
                first = Some(c);
            }
        }
        out.push((phandle, first));
    }
    Ok(out)
}

/// Hart ID of the hart whose local interrupt controller has `phandle`.
fn intc_hart(intcs: &[(u32, u64)], phandle: u32, ctx: &'static str) -> Result<u64> {
    intcs
        .iter()
        .find(|&&(ph, _)| ph == phandle)
        .map(|&(_, h)| h)
        .ok_or(PlatformError::BadPhandle {
            node: ctx,
            property: "interrupts-extended",
        })
}

// ---------------------------------------------------------------------------
// The parts.

type Harts = (Vec<HartInfo>, Vec<(u32, u64)>, Option<u64>);

/// Harts, `(cpu-intc phandle, hart ID)` pairs, and the first per-cpu timebase.
fn parse_harts(dtb: &Dtb<'_>) -> Result<Harts> {
    const C: &str = "cpu";
    let cpus = dtb
        .find_path("/cpus")
        .ok_or(PlatformError::MissingNode("/cpus"))?;
    let (ac, _) = bus_cells(cpus, "cpus")?;
    if ac == 0 || ac > 2 {
        return Err(PlatformError::UnsupportedCells { node: "cpus" });
    }
    let mut harts: Vec<HartInfo> = Vec::new();
    let mut intcs = Vec::new();
    let mut timebase = None;
    for cpu in cpus
        .children()
        .filter(|c| c.device_type() == Some("cpu") || c.base_name() == "cpu")
    {
        let reg = cpu.property("reg").ok_or(missing(C, "reg"))?;
        let hartid = reg
            .cells()
            .and_then(|mut c| c.read(ac))
            .ok_or(bad(C, "reg"))?;

        let ext_list = cpu
            .property("riscv,isa-extensions")
            .map(|p| p.as_str_list().ok_or(bad(C, "riscv,isa-extensions")))
            .transpose()?;
        let isa = match opt_str(cpu, C, "riscv,isa")? {
            Some(s) => {
                if IsaExtensions::from_isa_string(s).is_none() {
                    return Err(bad(C, "riscv,isa"));
                }
                String::from(s)
            }
            None => {
                let base = opt_str(cpu, C, "riscv,isa-base")?.ok_or(missing(C, "riscv,isa"))?;
                let list = ext_list.clone().ok_or(missing(C, "riscv,isa-extensions"))?;
                isa_string_from_list(base, list).ok_or(bad(C, "riscv,isa-base"))?
            }
        };
        let extensions = match ext_list {
            Some(list) => IsaExtensions::from_extension_names(list),
            None => IsaExtensions::from_isa_string(&isa).unwrap_or_default(),
        };
        let mmu_type = opt_str(cpu, C, "mmu-type")?.and_then(MmuType::from_dt_name);

        if let Some(intc) = cpu.children().find(|c| c.is_compatible("riscv,cpu-intc")) {
            if let Some(ph) = intc.phandle() {
                intcs.push((ph, hartid));
            }
        }
        if timebase.is_none() {
            timebase = opt_u32_or_u64(cpu, C, "timebase-frequency")?;
        }
        harts.push(HartInfo {
            hartid,
            enabled: cpu.is_enabled(),
            isa,
            extensions,
            mmu_type,
        });
    }
    if !harts.iter().any(|h| h.enabled) {
        return Err(PlatformError::NoHarts);
    }
    harts.sort_by_key(|h| h.hartid);
    for pair in harts.windows(2) {
        if let [a, b] = pair {
            if a.hartid == b.hartid {
                return Err(PlatformError::DuplicateHartId(a.hartid));
            }
        }
    }
    Ok((harts, intcs, timebase))
}

fn parse_timebase(dtb: &Dtb<'_>, per_cpu: Option<u64>) -> Result<u64> {
    let cpus = dtb
        .find_path("/cpus")
        .ok_or(PlatformError::MissingNode("/cpus"))?;
    let tb = opt_u32_or_u64(cpus, "cpus", "timebase-frequency")?
        .or(per_cpu)
        .ok_or(PlatformError::MissingTimebase)?;
    if tb == 0 {
        return Err(bad("cpus", "timebase-frequency"));
    }
    Ok(tb)
}

fn parse_memory(dtb: &Dtb<'_>) -> Result<Vec<Range<HostPhysAddr>>> {
    let mut memory = Vec::new();
    for node in dtb
        .root()
        .children()
        .filter(|n| n.device_type() == Some("memory") && n.is_enabled())
    {
        memory.extend(
            reg_ranges(node, "memory")?
                .into_iter()
                .filter(|r| r.size != 0),
        );
    }
    if memory.is_empty() {
        return Err(PlatformError::NoMemory);
    }
    Ok(memory)
}

fn parse_reserved(dtb: &Dtb<'_>) -> Result<Vec<Range<HostPhysAddr>>> {
    let mut reserved = Vec::new();
    if let Some(rm) = dtb.find_path("/reserved-memory") {
        for child in rm
            .children()
            .filter(|c| c.is_enabled() && c.property("reg").is_some())
        {
            reserved.extend(
                reg_ranges(child, "reserved-memory")?
                    .into_iter()
                    .filter(|r| r.size != 0),
            );
        }
    }
    for r in dtb.mem_reserve().iter().filter(|r| r.size != 0) {
        reserved.push(
            Range::<HostPhysAddr>::new(HostPhysAddr::new(r.address), r.size)
                .map_err(|_| PlatformError::AddressOverflow { node: "memreserve" })?,
        );
    }
    Ok(reserved)
}

struct Chosen<'d, 'a> {
    stdout: Option<Node<'d, 'a>>,
    initrd: Option<Range<HostPhysAddr>>,
    bootargs: Option<String>,
    rng_seed: Option<Vec<u8>>,
}

fn parse_chosen<'d, 'a>(dtb: &'d Dtb<'a>) -> Result<Chosen<'d, 'a>> {
    const C: &str = "chosen";
    let mut out = Chosen {
        stdout: None,
        initrd: None,
        bootargs: None,
        rng_seed: None,
    };
    let Some(chosen) = dtb.find_path("/chosen") else {
        return Ok(out);
    };
    out.bootargs = opt_str(chosen, C, "bootargs")?
        .filter(|s| !s.is_empty())
        .map(String::from);
    out.rng_seed = chosen
        .property("rng-seed")
        .map(|p: Property<'_>| p.value.to_vec());

    let start = opt_u32_or_u64(chosen, C, "linux,initrd-start")?;
    let end = opt_u32_or_u64(chosen, C, "linux,initrd-end")?;
    out.initrd = match (start, end) {
        (None, None) => None,
        (Some(_), None) => return Err(missing(C, "linux,initrd-end")),
        (None, Some(_)) => return Err(missing(C, "linux,initrd-start")),
        (Some(s), Some(e)) => {
            let size = e.checked_sub(s).ok_or(bad(C, "linux,initrd-end"))?;
            Some(
                Range::<HostPhysAddr>::new(HostPhysAddr::new(s), size)
                    .map_err(|_| PlatformError::AddressOverflow { node: C })?,
            )
        }
    };

    let path = match opt_str(chosen, C, "stdout-path")? {
        Some(p) => Some(p),
        None => opt_str(chosen, C, "linux,stdout-path")?,
    };
    if let Some(path) = path {
        // "serial0:115200n8" or "/soc/serial@10000000:115200": options after ':'.
        let path = path.split(':').next().unwrap_or_default();
        out.stdout = if path.starts_with('/') {
            dtb.find_path(path)
        } else {
            dtb.find_path("/aliases")
                .and_then(|a| a.property(path))
                .and_then(|p| p.as_str())
                .and_then(|target| dtb.find_path(target))
        };
    }
    Ok(out)
}

/// Compatibles of UARTs with the 16550 register layout.
const UART_COMPATIBLES: &[&str] = &["ns16550a", "ns16550", "snps,dw-apb-uart"];

fn parse_uart(dtb: &Dtb<'_>, stdout: Option<Node<'_, '_>>) -> Result<Option<Uart>> {
    const C: &str = "uart";
    let is_uart =
        |n: &Node<'_, '_>| n.is_enabled() && UART_COMPATIBLES.iter().any(|c| n.is_compatible(c));
    let node = match stdout.filter(is_uart) {
        Some(n) => n,
        None => match dtb.nodes().find(is_uart) {
            Some(n) => n,
            None => return Ok(None),
        },
    };
    let reg = first_reg(node, C)?;
    Ok(Some(Uart {
        base: reg.start,
        size: reg.size,
        irq: first_interrupt(node, C)?,
        reg_shift: opt_u32(node, C, "reg-shift")?.unwrap_or(0),
        reg_io_width: opt_u32(node, C, "reg-io-width")?.unwrap_or(1),
        clock: opt_u32(node, C, "clock-frequency")?,
    }))
}

fn parse_plic(dtb: &Dtb<'_>, intcs: &[(u32, u64)]) -> Result<Option<Plic>> {
    const C: &str = "plic";
    let Some(node) = first_enabled(dtb, &["riscv,plic0", "sifive,plic-1.0.0"]) else {
        return Ok(None);
    };
    let reg = first_reg(node, C)?;
    let ndev = opt_u32(node, C, "riscv,ndev")?.ok_or(missing(C, "riscv,ndev"))?;
    let mut contexts = Vec::new();
    for (index, (phandle, irq)) in interrupts_extended(dtb, node, C)?.into_iter().enumerate() {
        let irq = irq.ok_or(bad(C, "interrupts-extended"))?;
        let mode = match irq {
            IRQ_S_EXT => PrivMode::Supervisor,
            IRQ_M_EXT => PrivMode::Machine,
            _ => continue, // IRQ_UNUSABLE, or not an external-interrupt line
        };
        let index = u32::try_from(index).map_err(|_| bad(C, "interrupts-extended"))?;
        contexts.push(PlicContext {
            index,
            hartid: intc_hart(intcs, phandle, C)?,
            mode,
        });
    }
    Ok(Some(Plic {
        base: reg.start,
        size: reg.size,
        ndev,
        contexts,
    }))
}

/// Hart IDs of an `interrupts-extended` list if every entry targets local
/// interrupt `irq`; `None` if the list is empty or targets anything else.
fn harts_at(
    dtb: &Dtb<'_>,
    node: Node<'_, '_>,
    intcs: &[(u32, u64)],
    irq: u32,
    ctx: &'static str,
) -> Result<Option<Vec<u64>>> {
    let list = interrupts_extended(dtb, node, ctx)?;
    if list.is_empty() || list.iter().any(|&(_, i)| i != Some(irq)) {
        return Ok(None);
    }
    let harts = list
        .iter()
        .map(|&(ph, _)| intc_hart(intcs, ph, ctx))
        .collect::<Result<Vec<u64>>>()?;
    Ok(Some(harts))
}

fn parse_imsic(dtb: &Dtb<'_>, intcs: &[(u32, u64)]) -> Result<Option<Imsic>> {
    const C: &str = "imsic";
    for node in dtb
        .find_compatible("riscv,imsics")
        .filter(|n| n.is_enabled())
    {
        let Some(harts) = harts_at(dtb, node, intcs, IRQ_S_EXT, C)? else {
            continue;
        };
        let reg = first_reg(node, C)?;
        return Ok(Some(Imsic {
            base: reg.start,
            size: reg.size,
            guest_index_bits: opt_u32(node, C, "riscv,guest-index-bits")?.unwrap_or(0),
            num_ids: opt_u32(node, C, "riscv,num-ids")?.ok_or(missing(C, "riscv,num-ids"))?,
            harts,
        }));
    }
    Ok(None)
}

fn parse_aplic(dtb: &Dtb<'_>, intcs: &[(u32, u64)]) -> Result<Option<Aplic>> {
    const C: &str = "aplic";
    for node in dtb
        .find_compatible("riscv,aplic")
        .filter(|n| n.is_enabled())
    {
        let delivery = if let Some(ph) = opt_u32(node, C, "msi-parent")? {
            let imsic = dtb.find_phandle(ph).ok_or(PlatformError::BadPhandle {
                node: C,
                property: "msi-parent",
            })?;
            if harts_at(dtb, imsic, intcs, IRQ_S_EXT, "imsic")?.is_none() {
                continue; // an M-level domain
            }
            AplicDelivery::Msi
        } else {
            match harts_at(dtb, node, intcs, IRQ_S_EXT, C)? {
                Some(idc_harts) => AplicDelivery::Direct { idc_harts },
                None => continue,
            }
        };
        let reg = first_reg(node, C)?;
        return Ok(Some(Aplic {
            base: reg.start,
            size: reg.size,
            num_sources: opt_u32(node, C, "riscv,num-sources")?
                .ok_or(missing(C, "riscv,num-sources"))?,
            delivery,
        }));
    }
    Ok(None)
}

fn parse_virtio(dtb: &Dtb<'_>) -> Result<Vec<VirtioMmio>> {
    const C: &str = "virtio,mmio";
    let mut out = Vec::new();
    for node in dtb
        .find_compatible("virtio,mmio")
        .filter(|n| n.is_enabled())
    {
        out.push(VirtioMmio {
            reg: first_reg(node, C)?,
            irq: first_interrupt(node, C)?,
        });
    }
    out.sort_by_key(|v| v.reg.start);
    Ok(out)
}

fn parse_syscon(dtb: &Dtb<'_>, compat: &'static str) -> Result<Option<SysconAction>> {
    let Some(node) = first_enabled(dtb, &[compat]) else {
        return Ok(None);
    };
    let ph = opt_u32(node, compat, "regmap")?.ok_or(missing(compat, "regmap"))?;
    let target = dtb.find_phandle(ph).ok_or(PlatformError::BadPhandle {
        node: compat,
        property: "regmap",
    })?;
    let regmap = first_reg(target, "syscon")?;
    let offset = opt_u32(node, compat, "offset")?.ok_or(missing(compat, "offset"))?;
    let mask = opt_u32(node, compat, "mask")?;
    // Legacy bindings give only `mask`, which then doubles as the value.
    let value = opt_u32(node, compat, "value")?
        .or(mask)
        .ok_or(missing(compat, "value"))?;
    if !regmap.contains_span(
        regmap
            .start
            .checked_add(u64::from(offset))
            .map_err(|_| bad(compat, "offset"))?,
        4,
    ) {
        return Err(bad(compat, "offset"));
    }
    Ok(Some(SysconAction {
        regmap,
        offset,
        value,
        mask: mask.unwrap_or(u32::MAX),
    }))
}
