//! A small summary of the device tree the guest was booted with.
//!
//! Nothing is assumed that the DTB does not say: hart ids, RAM, timebase and
//! ISA extensions all come from it. Read once on the boot hart before anything
//! else runs; afterwards it is immutable and shared by all harts.

use core::cell::UnsafeCell;
use core::fmt;

use fdt::node::FdtNode;
use fdt::Fdt;

/// Most harts recorded (ids beyond this many are counted but not stored).
pub const MAX_DT_HARTS: usize = 64;
const MAX_MEMORY: usize = 8;
const MAX_RESERVED: usize = 16;

/// A physical address range `[start, end)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Region {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

impl Region {
    /// `[start, start + size)`, saturating at the top of the address space.
    pub const fn with_size(start: usize, size: usize) -> Self {
        Region {
            start,
            end: start.saturating_add(size),
        }
    }

    /// Size in bytes.
    pub const fn len(&self) -> usize {
        self.end.saturating_sub(self.start)
    }

    /// True if the range holds no byte.
    pub const fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    /// True if `addr` is inside.
    pub const fn contains(&self, addr: usize) -> bool {
        self.start <= addr && addr < self.end
    }

    /// True if the two ranges share a byte.
    pub const fn overlaps(&self, other: &Region) -> bool {
        self.start < other.end && other.start < self.end
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:#x}, {:#x})", self.start, self.end)
    }
}

/// Why the device tree could not be read.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum DtbError {
    /// a1 was 0 or not 4-byte aligned.
    BadPointer,
    /// The blob did not parse (bad magic, truncated …).
    Parse(fdt::FdtError),
    /// No `/cpus` node or no usable `cpu` node in it.
    NoCpus,
    /// No `timebase-frequency` in `/cpus` or the cpu nodes.
    NoTimebase,
    /// No `/memory` region contains the guest image.
    NoRam,
}

impl fmt::Display for DtbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DtbError::BadPointer => write!(f, "null or misaligned DTB pointer"),
            DtbError::Parse(e) => write!(f, "parse error {e:?}"),
            DtbError::NoCpus => write!(f, "no usable cpu nodes"),
            DtbError::NoTimebase => write!(f, "no timebase-frequency"),
            DtbError::NoRam => write!(f, "no memory region contains the image"),
        }
    }
}

/// A fixed-capacity copy of a device-tree string (lists keep their NULs).
#[derive(Clone, Copy)]
struct FixedStr<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> FixedStr<N> {
    const fn new() -> Self {
        FixedStr {
            buf: [0; N],
            len: 0,
        }
    }

    fn set(&mut self, bytes: &[u8]) {
        let bytes = match bytes.iter().rposition(|&b| b != 0) {
            Some(last) => bytes.get(..=last).unwrap_or(&[]),
            None => &[],
        };
        let n = bytes.len().min(N);
        if let (Some(dst), Some(src)) = (self.buf.get_mut(..n), bytes.get(..n)) {
            dst.copy_from_slice(src);
        }
        self.len = n;
    }

    fn as_str(&self) -> &str {
        core::str::from_utf8(self.buf.get(..self.len).unwrap_or(&[])).unwrap_or("")
    }
}

/// What the guest knows about its machine, from the DTB.
pub struct Platform {
    /// Hart the guest was booted on (a0 at entry).
    pub boot_hart: usize,
    /// Where the DTB is (a1 at entry, `totalsize` from its header).
    pub dtb: Region,
    /// The `/memory` region that contains the guest image.
    pub ram: Region,
    /// `timebase-frequency` of the `time` CSR, in Hz.
    pub timebase_hz: u64,
    /// The guest image in memory, including its bss and hart stacks.
    pub image: Region,
    memory: [Region; MAX_MEMORY],
    memory_count: usize,
    reserved: [Region; MAX_RESERVED],
    reserved_count: usize,
    hart_ids: [usize; MAX_DT_HARTS],
    hart_count: usize,
    isa: FixedStr<512>,
    isa_extensions: FixedStr<2048>,
    bootargs: FixedStr<512>,
}

impl fmt::Debug for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Platform")
            .field("boot_hart", &self.boot_hart)
            .field("dtb", &self.dtb)
            .field("ram", &self.ram)
            .field("timebase_hz", &self.timebase_hz)
            .field("hart_count", &self.hart_count)
            .field("isa", &self.isa())
            .finish()
    }
}

impl Platform {
    const fn empty() -> Self {
        Platform {
            boot_hart: 0,
            dtb: Region { start: 0, end: 0 },
            ram: Region { start: 0, end: 0 },
            timebase_hz: 0,
            image: Region { start: 0, end: 0 },
            memory: [Region { start: 0, end: 0 }; MAX_MEMORY],
            memory_count: 0,
            reserved: [Region { start: 0, end: 0 }; MAX_RESERVED],
            reserved_count: 0,
            hart_ids: [0; MAX_DT_HARTS],
            hart_count: 0,
            isa: FixedStr::new(),
            isa_extensions: FixedStr::new(),
            bootargs: FixedStr::new(),
        }
    }

    /// Number of enabled harts in `/cpus`.
    pub fn hart_count(&self) -> usize {
        self.hart_count
    }

    /// Ids of the enabled harts, in DTB order (at most [`MAX_DT_HARTS`]).
    pub fn hart_ids(&self) -> &[usize] {
        self.hart_ids
            .get(..self.hart_count.min(MAX_DT_HARTS))
            .unwrap_or(&[])
    }

    /// True if `hartid` is an enabled hart in the DTB.
    pub fn has_hart(&self, hartid: usize) -> bool {
        self.hart_ids().contains(&hartid)
    }

    /// A hart id that no enabled DTB hart has (the smallest such id).
    pub fn absent_hart_id(&self) -> usize {
        (0..).find(|id| !self.has_hart(*id)).unwrap_or(usize::MAX)
    }

    /// All `/memory` regions.
    pub fn memory(&self) -> &[Region] {
        self.memory.get(..self.memory_count).unwrap_or(&[])
    }

    /// Reserved regions: `/reserved-memory` children and `/memreserve/` entries.
    pub fn reserved(&self) -> &[Region] {
        self.reserved.get(..self.reserved_count).unwrap_or(&[])
    }

    /// True if `r` overlaps memory the guest must not scribble on: the image
    /// (with stacks), the DTB, or a reserved region.
    pub fn in_use(&self, r: Region) -> bool {
        r.overlaps(&self.image)
            || r.overlaps(&self.dtb)
            || self.reserved().iter().any(|x| r.overlaps(x))
    }

    /// `riscv,isa` of the hart with the lowest id.
    pub fn isa(&self) -> &str {
        self.isa.as_str()
    }

    /// `riscv,isa-extensions` of the hart with the lowest id, as a list.
    pub fn isa_extensions(&self) -> impl Iterator<Item = &str> {
        self.isa_extensions
            .as_str()
            .split('\0')
            .filter(|s| !s.is_empty())
    }

    /// True if the hart with the lowest id has ISA extension `name` (e.g.
    /// "sstc", "h", "zicbom"), per `riscv,isa-extensions` or `riscv,isa`.
    pub fn has_extension(&self, name: &str) -> bool {
        if self.isa_extensions().any(|e| e.eq_ignore_ascii_case(name)) {
            return true;
        }
        isa_string_has(self.isa(), name)
    }

    /// True if the DTB lists Sstc (`stimecmp`) for the hart with the lowest id.
    pub fn has_sstc(&self) -> bool {
        self.has_extension("sstc")
    }

    /// `/chosen/bootargs` (empty if absent).
    pub fn bootargs(&self) -> &str {
        self.bootargs.as_str()
    }

    /// The device tree, parsed again from memory (valid while nobody
    /// overwrote it).
    pub fn fdt(&self) -> Option<Fdt<'static>> {
        // SAFETY: `dtb` is the blob the boot code was handed; `init` checked it
        // parses and recorded its size. The guest never frees or moves it.
        let bytes =
            unsafe { core::slice::from_raw_parts(self.dtb.start as *const u8, self.dtb.len()) };
        Fdt::new(bytes).ok()
    }
}

/// True if a `riscv,isa` string ("rv64imafdch_zicbom_sstc") lists `name`.
pub fn isa_string_has(isa: &str, name: &str) -> bool {
    let lower_isa = isa.trim();
    let rest = lower_isa
        .get(..4)
        .filter(|p| p.eq_ignore_ascii_case("rv64") || p.eq_ignore_ascii_case("rv32"))
        .and_then(|_| lower_isa.get(4..))
        .unwrap_or(lower_isa);
    let mut parts = rest.split('_');
    let single = parts.next().unwrap_or("");
    if name.len() == 1 {
        let c = name
            .as_bytes()
            .first()
            .map(u8::to_ascii_lowercase)
            .unwrap_or(0);
        let has = |x: u8| single.bytes().any(|b| b.to_ascii_lowercase() == x);
        return has(c) || (has(b'g') && b"imafd".contains(&c));
    }
    parts.any(|p| p.eq_ignore_ascii_case(name))
}

struct PlatformCell(UnsafeCell<Platform>);

// SAFETY: the cell is written only by `init`, on the boot hart, before any
// other hart is started and before any shared reference is handed out; after
// that it is only read.
unsafe impl Sync for PlatformCell {}

static PLATFORM: PlatformCell = PlatformCell(UnsafeCell::new(Platform::empty()));

extern "C" {
    static __fv_image_start: u8;
    static __fv_image_end: u8;
}

fn be_cells(bytes: &[u8], cells: usize) -> Option<usize> {
    match cells {
        1 => Some(u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?) as usize),
        2 => Some(u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?) as usize),
        _ => None,
    }
}

fn prop_u64(node: FdtNode<'_, '_>, name: &str) -> Option<u64> {
    let p = node.property(name)?;
    match p.value.len() {
        4 => be_cells(p.value, 1).map(|v| v as u64),
        8 => be_cells(p.value, 2).map(|v| v as u64),
        _ => None,
    }
}

fn prop_str<'a>(node: FdtNode<'_, 'a>, name: &str) -> Option<&'a str> {
    let p = node.property(name)?;
    core::str::from_utf8(p.value)
        .ok()
        .map(|s| s.trim_end_matches('\0'))
}

fn enabled(node: FdtNode<'_, '_>) -> bool {
    match prop_str(node, "status") {
        None => true,
        Some(s) => s == "okay" || s == "ok",
    }
}

/// Reads the DTB at `dtb` and records the summary; called once by the boot hart.
pub(crate) fn init(boot_hart: usize, dtb: usize) -> Result<&'static Platform, DtbError> {
    if dtb == 0 || !dtb.is_multiple_of(4) {
        return Err(DtbError::BadPointer);
    }
    // SAFETY: the boot protocol passes the DTB's address in a1; the header is
    // read first and its `totalsize` bounds the slice.
    let fdt = unsafe { Fdt::from_ptr(dtb as *const u8) }.map_err(DtbError::Parse)?;
    // SAFETY: only the boot hart runs, and no reference to the platform has
    // been handed out yet (see `PlatformCell`).
    let p = unsafe { &mut *PLATFORM.0.get() };
    p.boot_hart = boot_hart;
    p.dtb = Region::with_size(dtb, fdt.total_size());
    // Linker-script symbols; only their addresses are used.
    p.image = Region {
        start: core::ptr::addr_of!(__fv_image_start) as usize,
        end: core::ptr::addr_of!(__fv_image_end) as usize,
    };

    // Harts.
    let cpus = fdt.find_node("/cpus").ok_or(DtbError::NoCpus)?;
    let cpu_cells = cpus.cell_sizes().address_cells;
    let mut lowest: Option<(usize, FdtNode<'_, '_>)> = None;
    let mut timebase = prop_u64(cpus, "timebase-frequency");
    for cpu in cpus.children() {
        if prop_str(cpu, "device_type") != Some("cpu") || !enabled(cpu) {
            continue;
        }
        let Some(id) = cpu
            .property("reg")
            .and_then(|r| be_cells(r.value, cpu_cells))
        else {
            continue;
        };
        if let Some(slot) = p.hart_ids.get_mut(p.hart_count) {
            *slot = id;
        }
        p.hart_count += 1;
        if timebase.is_none() {
            timebase = prop_u64(cpu, "timebase-frequency");
        }
        if lowest.is_none_or(|(l, _)| id < l) {
            lowest = Some((id, cpu));
        }
    }
    let (_, first) = lowest.ok_or(DtbError::NoCpus)?;
    if let Some(isa) = first.property("riscv,isa") {
        p.isa.set(isa.value);
    }
    if let Some(ext) = first.property("riscv,isa-extensions") {
        p.isa_extensions.set(ext.value);
    }
    p.timebase_hz = timebase.filter(|t| *t != 0).ok_or(DtbError::NoTimebase)?;

    if let Some(args) = fdt
        .find_node("/chosen")
        .and_then(|c| c.property("bootargs"))
    {
        p.bootargs.set(args.value);
    }

    // Memory and reservations.
    let root = fdt.find_node("/").ok_or(DtbError::NoRam)?;
    for node in root.children() {
        let is_memory = prop_str(node, "device_type") == Some("memory")
            || node.name == "memory"
            || node.name.starts_with("memory@");
        if is_memory && enabled(node) {
            for r in node.reg().into_iter().flatten() {
                let region = Region::with_size(r.starting_address as usize, r.size.unwrap_or(0));
                if let Some(slot) = p.memory.get_mut(p.memory_count) {
                    *slot = region;
                    p.memory_count += 1;
                }
                if region.contains(p.image.start) {
                    p.ram = region;
                }
            }
        }
        if node.name == "reserved-memory" {
            for child in node.children() {
                for r in child.reg().into_iter().flatten() {
                    let region =
                        Region::with_size(r.starting_address as usize, r.size.unwrap_or(0));
                    if let Some(slot) = p.reserved.get_mut(p.reserved_count) {
                        *slot = region;
                        p.reserved_count += 1;
                    }
                }
            }
        }
    }
    for r in fdt.memory_reservations() {
        let region = Region::with_size(r.address() as usize, r.size());
        if let Some(slot) = p.reserved.get_mut(p.reserved_count) {
            *slot = region;
            p.reserved_count += 1;
        }
    }
    if p.ram.is_empty() {
        return Err(DtbError::NoRam);
    }
    Ok(p)
}

/// The platform summary (after boot).
pub fn get() -> &'static Platform {
    // SAFETY: after `init` the cell is never written again (see `PlatformCell`).
    unsafe { &*PLATFORM.0.get() }
}

/// Address ranges (`reg` and `ranges` of every node but `/memory` and
/// `/cpus`) the DTB says something lives at; calls `f` for each.
pub fn for_each_device_range(fdt: &Fdt<'_>, mut f: impl FnMut(&str, Region)) {
    walk(fdt.find_node("/"), 2, 1, &mut f, 0);
}

fn walk(
    node: Option<FdtNode<'_, '_>>,
    parent_addr_cells: usize,
    parent_size_cells: usize,
    f: &mut impl FnMut(&str, Region),
    depth: usize,
) {
    let Some(node) = node else { return };
    if depth > 16 {
        return;
    }
    let own = node.cell_sizes();
    let skip = node.name == "cpus" || node.name == "memory" || node.name.starts_with("memory@");
    if !skip && depth > 0 {
        if let Some(reg) = node.property("reg") {
            let stride = (parent_addr_cells + parent_size_cells) * 4;
            if stride > 0 && parent_addr_cells <= 2 && parent_size_cells <= 2 {
                for entry in reg.value.chunks_exact(stride) {
                    let addr = be_cells(entry, parent_addr_cells);
                    let size = entry
                        .get(parent_addr_cells * 4..)
                        .and_then(|s| be_cells(s, parent_size_cells));
                    if let (Some(a), Some(s)) = (addr, size) {
                        f(node.name, Region::with_size(a, s));
                    }
                }
            }
        }
        // `ranges`: (child address, parent address, size) triples; the parent
        // side is what the CPU sees.
        if let Some(ranges) = node.property("ranges") {
            let stride = (own.address_cells + parent_addr_cells + own.size_cells) * 4;
            if stride > 0 && parent_addr_cells <= 2 && own.size_cells <= 2 {
                for entry in ranges.value.chunks_exact(stride) {
                    let paddr = entry
                        .get(own.address_cells * 4..)
                        .and_then(|s| be_cells(s, parent_addr_cells));
                    let size = entry
                        .get((own.address_cells + parent_addr_cells) * 4..)
                        .and_then(|s| be_cells(s, own.size_cells));
                    if let (Some(a), Some(s)) = (paddr, size) {
                        f(node.name, Region::with_size(a, s));
                    }
                }
            }
        }
    }
    if skip {
        return;
    }
    for child in node.children() {
        walk(Some(child), own.address_cells, own.size_cells, f, depth + 1);
    }
}
