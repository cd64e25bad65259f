//! RISC-V G-stage page tables.
//!
//! With the hypervisor extension, every guest-physical address (GPA) a guest uses
//! goes through a second translation, the G-stage, whose root is named by the
//! `hgatp` CSR (RISC-V privileged spec, "Hypervisor Extension", section
//! "Two-Stage Address Translation"). The G-stage formats Sv39x4, Sv48x4 and Sv57x4
//! are Sv39/Sv48/Sv57 with the root table widened by two bits: the root holds 2048
//! entries (16 KiB, 16 KiB aligned) and the guest-physical space is 41, 50 or 59
//! bits wide. Leaf PTEs must have U=1 (G-stage accesses count as U-mode accesses);
//! for non-leaf PTEs U, A and D are reserved and kept 0, as is G.
//!
//! [`GStage`] builds and edits such a tree. It never touches memory itself: tables
//! are obtained, read and written through a [`TableMemory`] — raw physical memory
//! in the hypervisor, a `Vec` in host tests.
//!
//! # Fences
//!
//! The caller issues HFENCE.GVMA; this crate only says when one is needed:
//! * [`GStage::map`] only ever fills entries that were invalid, so it never
//!   requires a fence for safety. A hart may still hold the old "invalid" view
//!   and take a guest-page fault on a freshly mapped address; the fault handler
//!   then fences (HFENCE.GVMA for that GPA/VMID) and lets the guest retry.
//! * [`GStage::unmap`] returns `Ok(true)` when it changed a valid entry (removed a
//!   leaf, split a large leaf, unlinked an emptied table). The caller must then
//!   execute HFENCE.GVMA for this VMID on every hart that may run the guest before
//!   the unmapped host frames are reused, and before the table frames it handed to
//!   [`TableMemory::free_table`] are reused (see there).
//!
//! Every operation either completes or fails without changing the tree and
//! without leaking table frames: the tables an operation needs are counted by a
//! dry run and allocated before the first entry is written.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use core::fmt;
use fv_addr::{GuestPhysAddr, HostPhysAddr, PAGE_SIZE};

pub mod hgatp;
pub mod pte;

pub use pte::PteFlags;

/// Entries in a non-root table (4 KiB / 8 bytes).
pub const ENTRIES: usize = 512;
/// Entries in the root table of an x4 mode (16 KiB / 8 bytes).
pub const ROOT_ENTRIES: usize = 2048;
/// Frames (4 KiB) in the root table of an x4 mode.
pub const ROOT_FRAMES: usize = 4;
/// Alignment of the root table of an x4 mode, in bytes.
pub const ROOT_ALIGN: u64 = 16 * 1024;
/// Host physical addresses are at most 56 bits wide (a 44-bit PPN of 4 KiB pages).
pub const HPA_BITS: u32 = 56;
/// The highest level at which this crate places leaves (level 2 = 1 GiB).
const MAX_LEAF_LEVEL: usize = 2;
/// Bits of GPA translated per level (below the root).
const LEVEL_BITS: u32 = 9;
/// log2 of the page size.
const PAGE_SHIFT: u32 = 12;

/// A G-stage translation mode, as written to `hgatp.MODE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Three levels, 41-bit guest-physical addresses (`hgatp.MODE` = 8).
    Sv39x4,
    /// Four levels, 50-bit guest-physical addresses (`hgatp.MODE` = 9).
    Sv48x4,
    /// Five levels, 59-bit guest-physical addresses (`hgatp.MODE` = 10).
    Sv57x4,
}

impl Mode {
    /// The `hgatp.MODE` encoding.
    pub const fn hgatp_mode(self) -> u64 {
        match self {
            Mode::Sv39x4 => hgatp::MODE_SV39X4,
            Mode::Sv48x4 => hgatp::MODE_SV48X4,
            Mode::Sv57x4 => hgatp::MODE_SV57X4,
        }
    }

    /// The mode an `hgatp.MODE` value names (`None` for Bare and reserved values).
    pub const fn from_hgatp_mode(mode: u64) -> Option<Self> {
        match mode {
            hgatp::MODE_SV39X4 => Some(Mode::Sv39x4),
            hgatp::MODE_SV48X4 => Some(Mode::Sv48x4),
            hgatp::MODE_SV57X4 => Some(Mode::Sv57x4),
            _ => None,
        }
    }

    /// Number of table levels.
    pub const fn levels(self) -> usize {
        match self {
            Mode::Sv39x4 => 3,
            Mode::Sv48x4 => 4,
            Mode::Sv57x4 => 5,
        }
    }

    /// Width of the guest-physical address space in bits (2 more than the
    /// corresponding Sv mode's virtual addresses).
    pub const fn gpa_bits(self) -> u32 {
        PAGE_SHIFT + LEVEL_BITS * (self.levels() as u32) + 2
    }

    /// One past the highest guest-physical address the mode translates.
    pub const fn gpa_limit(self) -> u64 {
        1 << self.gpa_bits()
    }

    /// Level of the root table (the leaves of 4 KiB pages are level 0).
    const fn root_level(self) -> usize {
        self.levels() - 1
    }
}

bitflags::bitflags! {
    /// Access permissions of a mapping. The bit values are those of the R, W and X
    /// bits of a PTE ([`PteFlags::R`], [`PteFlags::W`], [`PteFlags::X`]).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct Perms: u64 {
        /// Readable.
        const R = 1 << 1;
        /// Writable (requires R: W without R is a reserved encoding).
        const W = 1 << 2;
        /// Executable.
        const X = 1 << 3;
    }
}

impl Perms {
    /// Read, write, execute: ordinary guest RAM.
    pub const RWX: Perms = Perms::R.union(Perms::W).union(Perms::X);

    /// Whether these permissions can be encoded in a leaf: at least one of R/W/X,
    /// and W only together with R.
    pub const fn is_valid_leaf(self) -> bool {
        !self.is_empty() && (!self.contains(Perms::W) || self.contains(Perms::R))
    }
}

/// What can go wrong while editing G-stage tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage2Error {
    /// An address or size is not a multiple of 4 KiB.
    Misaligned,
    /// The guest-physical range goes beyond the mode's guest-physical space, or the
    /// host-physical range beyond 56 bits.
    OutOfRange,
    /// Part of the guest-physical range is already mapped.
    AlreadyMapped,
    /// [`TableMemory::alloc_table`] could not provide a table.
    OutOfMemory,
    /// The permissions are empty or W without R (reserved encodings for a leaf).
    InvalidPerms,
    /// [`TableMemory::alloc_table`] returned a misaligned address or one beyond
    /// the 56-bit physical space (a bug in the memory provider).
    BadTableMemory,
}

impl fmt::Display for Stage2Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Stage2Error::Misaligned => "address or size not 4 KiB aligned",
            Stage2Error::OutOfRange => "address range beyond the translatable space",
            Stage2Error::AlreadyMapped => "guest-physical range already mapped",
            Stage2Error::OutOfMemory => "no memory for a page table",
            Stage2Error::InvalidPerms => "permissions empty or write without read",
            Stage2Error::BadTableMemory => "table memory returned a bad address",
        };
        f.write_str(s)
    }
}

/// How the page-table code reaches and obtains memory for tables. Implemented by
/// the hypervisor (raw physical memory) and by tests (a Vec).
pub trait TableMemory {
    /// Allocates `frames` zeroed, physically contiguous 4 KiB frames aligned to
    /// `align` bytes (the root of an x4 table is 4 frames aligned to 16 KiB).
    fn alloc_table(&mut self, frames: usize, align: u64) -> Result<HostPhysAddr, Stage2Error>;
    /// Returns frames obtained from `alloc_table`.
    ///
    /// When called from [`GStage::unmap`], the table was unlinked from a live tree
    /// and other harts may still hold cached entries of it until the caller's
    /// HFENCE.GVMA that follows the unmap; an implementation that can hand the
    /// frames to someone else in the meantime must defer their reuse until that
    /// fence. Tables freed by a failed `map`/`unmap` were never linked and may be
    /// reused at once; so may everything [`GStage::destroy`] frees if the guest no
    /// longer runs and its VMID has been fenced.
    fn free_table(&mut self, addr: HostPhysAddr, frames: usize);
    /// Reads the 8-byte entry `index` of the table at `table`.
    fn read_pte(&self, table: HostPhysAddr, index: usize) -> u64;
    /// Writes the 8-byte entry `index` of the table at `table`.
    fn write_pte(&mut self, table: HostPhysAddr, index: usize, pte: u64);
}

/// The result of a software walk: where a guest-physical address goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    /// The host-physical address (including the offset within the page).
    pub hpa: HostPhysAddr,
    /// Permissions of the leaf.
    pub perms: Perms,
    /// Size of the leaf page in bytes (4 KiB, 2 MiB, 1 GiB ...).
    pub page_size: u64,
}

/// Bytes covered by one entry at `level`.
const fn entry_shift(level: usize) -> u32 {
    PAGE_SHIFT + LEVEL_BITS * level as u32
}

/// A table as the walks see it: a real one, or one that a dry run pretends exists.
#[derive(Clone, Copy)]
enum Node {
    /// A table in memory.
    Real(HostPhysAddr),
    /// A table `map` would allocate: all entries invalid.
    Empty,
    /// A table `unmap` would allocate to split a leaf: entry `i` is
    /// `first + i * step` in PPN units.
    Leaves { first: u64, step: u64 },
}

/// Tables allocated before an operation writes anything, chained through their
/// entry 0 (stored as `address | 1` so that a table at address 0 still links).
#[derive(Default)]
struct Pool {
    head: u64,
    len: usize,
}

/// Whether a walk only counts the tables it would need, or edits the tree.
enum Pass {
    Count(usize),
    Apply(Pool),
}

/// How many tables below the root a tree needs to map every page of
/// `[gpa, gpa + size)` with leaves of `leaf_size` bytes (4 KiB, 2 MiB or
/// 1 GiB), when nothing else is mapped: at each level from the leaves' up to
/// (not including) the root, one table per region that a table there covers
/// (512 leaves' worth) which the range touches. Mapping the range piece by
/// piece in any order with leaves of that size never needs more, and once all
/// of it is mapped it has needed exactly this many. The root ([`ROOT_FRAMES`]
/// frames) comes on top.
///
/// `None` if `leaf_size` is none of those sizes, `gpa` or `size` is not a
/// multiple of it, or the range goes beyond the mode's guest-physical space.
pub fn tables_to_map(mode: Mode, gpa: GuestPhysAddr, size: u64, leaf_size: u64) -> Option<usize> {
    let leaf_level = (0..=MAX_LEAF_LEVEL).find(|&l| 1u64 << entry_shift(l) == leaf_size)?;
    let start = gpa.raw();
    if !start.is_multiple_of(leaf_size) || !size.is_multiple_of(leaf_size) {
        return None;
    }
    let end = start.checked_add(size)?;
    if end > mode.gpa_limit() {
        return None;
    }
    if size == 0 {
        return Some(0);
    }
    let last = end - 1;
    let mut tables = 0usize;
    for level in leaf_level..mode.root_level() {
        // A table at `level` covers what one entry of the level above does.
        let shift = entry_shift(level + 1);
        let n = (last >> shift) - (start >> shift) + 1;
        tables = tables.checked_add(usize::try_from(n).ok()?)?;
    }
    Some(tables)
}

/// A G-stage page-table tree.
///
/// Call [`GStage::destroy`] to give the table frames back; dropping a `GStage`
/// drops the memory object without returning them to it (a memory object that
/// owns its frames, like `fv-vm-memory`'s table reserve, frees them itself).
#[derive(Debug)]
pub struct GStage<M: TableMemory> {
    mem: M,
    mode: Mode,
    root: HostPhysAddr,
    /// Frames used by tables, root included.
    frames: usize,
}

impl<M: TableMemory> GStage<M> {
    /// An empty tree: a 16 KiB root of 2048 invalid entries, 16 KiB aligned.
    pub fn new(mut mem: M, mode: Mode) -> Result<Self, Stage2Error> {
        let root = mem.alloc_table(ROOT_FRAMES, ROOT_ALIGN)?;
        if !root.is_aligned(ROOT_ALIGN) || root.raw() >> HPA_BITS != 0 {
            mem.free_table(root, ROOT_FRAMES);
            return Err(Stage2Error::BadTableMemory);
        }
        Ok(Self {
            mem,
            mode,
            root,
            frames: ROOT_FRAMES,
        })
    }

    /// The translation mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Address of the root table.
    pub fn root(&self) -> HostPhysAddr {
        self.root
    }

    /// The `hgatp` value for this tree with the given VMID: MODE[63:60],
    /// VMID[57:44], PPN[43:0]. Only the low 14 bits of `vmid` fit; the caller
    /// (which knows how many VMID bits the hart implements) must not pass more.
    pub fn hgatp(&self, vmid: u16) -> u64 {
        hgatp::encode(self.mode.hgatp_mode(), vmid, self.root.raw() >> PAGE_SHIFT)
    }

    /// How many 4 KiB frames the tables use, root included.
    pub fn table_frames(&self) -> usize {
        self.frames
    }

    /// The memory object (e.g. for inspecting tables).
    pub fn memory(&self) -> &M {
        &self.mem
    }

    /// Frees every table frame (not the mapped frames) and returns the memory
    /// object. See [`TableMemory::free_table`] about fencing first.
    pub fn destroy(mut self) -> M {
        let root_level = self.mode.root_level();
        self.free_subtree(self.root, root_level);
        self.mem.free_table(self.root, ROOT_FRAMES);
        self.mem
    }

    /// Maps `[gpa, gpa + size)` to `[hpa, hpa + size)` with `perms`, using the
    /// largest leaf (1 GiB, 2 MiB, 4 KiB) that the alignment of both addresses
    /// and the remaining size allow. Leaves get V, U, A and D set besides `perms`.
    ///
    /// Errors: [`Stage2Error::Misaligned`] (not 4 KiB aligned),
    /// [`Stage2Error::OutOfRange`] (GPA beyond the mode's space, HPA beyond 56
    /// bits), [`Stage2Error::InvalidPerms`], [`Stage2Error::AlreadyMapped`] (any
    /// page of the range is mapped), [`Stage2Error::OutOfMemory`]. On error the
    /// tree is unchanged and no table frame is kept. A size of 0 maps nothing.
    ///
    /// Only invalid entries are written, so no fence is required (see the crate
    /// documentation).
    pub fn map(
        &mut self,
        gpa: GuestPhysAddr,
        hpa: HostPhysAddr,
        size: u64,
        perms: Perms,
    ) -> Result<(), Stage2Error> {
        if !perms.is_valid_leaf() {
            return Err(Stage2Error::InvalidPerms);
        }
        if !gpa.is_aligned(PAGE_SIZE)
            || !hpa.is_aligned(PAGE_SIZE)
            || !size.is_multiple_of(PAGE_SIZE)
        {
            return Err(Stage2Error::Misaligned);
        }
        if size == 0 {
            return Ok(());
        }
        let start = gpa.raw();
        let end = start.checked_add(size).ok_or(Stage2Error::OutOfRange)?;
        if end > self.mode.gpa_limit() {
            return Err(Stage2Error::OutOfRange);
        }
        let hpa_end = hpa.raw().checked_add(size).ok_or(Stage2Error::OutOfRange)?;
        if hpa_end > 1 << HPA_BITS {
            return Err(Stage2Error::OutOfRange);
        }
        let leaf = MapArgs {
            gpa0: start,
            hpa0: hpa.raw(),
            flags: (PteFlags::V | PteFlags::U | PteFlags::A | PteFlags::D).bits() | perms.bits(),
        };
        let root = Node::Real(self.root);
        let root_level = self.mode.root_level();

        let mut pass = Pass::Count(0);
        self.map_walk(root, root_level, 0, start, end, &leaf, &mut pass)?;
        let Pass::Count(needed) = pass else {
            return Err(Stage2Error::OutOfMemory);
        };
        let mut pass = Pass::Apply(self.fill_pool(needed)?);
        let result = self.map_walk(root, root_level, 0, start, end, &leaf, &mut pass);
        if let Pass::Apply(pool) = pass {
            self.drain_pool(pool);
        }
        result
    }

    /// Unmaps `[gpa, gpa + size)`. A larger leaf only partly inside the range is
    /// split into smaller leaves first; intermediate tables that become empty are
    /// freed. Unmapping a hole (or the part of the range beyond the mode's
    /// guest-physical space) is not an error.
    ///
    /// Returns whether a valid entry changed, in which case the caller must fence
    /// (HFENCE.GVMA for this VMID) before reusing the unmapped frames. Errors:
    /// [`Stage2Error::Misaligned`]; [`Stage2Error::OutOfMemory`] when a split
    /// needs a table that cannot be had — then nothing changed.
    pub fn unmap(&mut self, gpa: GuestPhysAddr, size: u64) -> Result<bool, Stage2Error> {
        if !gpa.is_aligned(PAGE_SIZE) || !size.is_multiple_of(PAGE_SIZE) {
            return Err(Stage2Error::Misaligned);
        }
        let start = gpa.raw();
        let end = start.saturating_add(size).min(self.mode.gpa_limit());
        if start >= end {
            return Ok(false);
        }
        let root = Node::Real(self.root);
        let root_level = self.mode.root_level();

        let mut pass = Pass::Count(0);
        self.unmap_walk(root, root_level, 0, start, end, &mut pass)?;
        let Pass::Count(needed) = pass else {
            return Err(Stage2Error::OutOfMemory);
        };
        let mut pass = Pass::Apply(self.fill_pool(needed)?);
        let result = self.unmap_walk(root, root_level, 0, start, end, &mut pass);
        if let Pass::Apply(pool) = pass {
            self.drain_pool(pool);
        }
        result
    }

    /// Software walk: the host address and permissions `gpa` maps to, or `None`.
    pub fn translate(&self, gpa: GuestPhysAddr) -> Option<(HostPhysAddr, Perms)> {
        self.lookup(gpa).map(|t| (t.hpa, t.perms))
    }

    /// Software walk with the leaf size. Follows the spec's walk: any invalid,
    /// reserved (W without R), misaligned-superpage or U=0 leaf gives `None`.
    pub fn lookup(&self, gpa: GuestPhysAddr) -> Option<Translation> {
        let g = gpa.raw();
        if g >= self.mode.gpa_limit() {
            return None;
        }
        let mut table = self.root;
        let mut level = self.mode.root_level();
        loop {
            let shift = entry_shift(level);
            let index = ((g >> shift) as usize) & (self.entries(level) - 1);
            let pte = self.mem.read_pte(table, index);
            let flags = PteFlags::from_bits_truncate(pte);
            if !flags.contains(PteFlags::V) {
                return None;
            }
            if pte::is_leaf(pte) {
                let perms = Perms::from_bits_truncate(pte);
                if !perms.is_valid_leaf() || !flags.contains(PteFlags::U) {
                    return None;
                }
                let page_size = 1u64 << shift;
                let base = pte::ppn(pte) << PAGE_SHIFT;
                if base & (page_size - 1) != 0 {
                    return None;
                }
                return Some(Translation {
                    hpa: HostPhysAddr::new(base | (g & (page_size - 1))),
                    perms,
                    page_size,
                });
            }
            level = level.checked_sub(1)?;
            table = HostPhysAddr::new(pte::ppn(pte) << PAGE_SHIFT);
        }
    }

    /// Entries in a table at `level`.
    fn entries(&self, level: usize) -> usize {
        if level == self.mode.root_level() {
            ROOT_ENTRIES
        } else {
            ENTRIES
        }
    }

    fn read(&self, node: Node, index: usize) -> u64 {
        match node {
            Node::Real(table) => self.mem.read_pte(table, index),
            Node::Empty => 0,
            Node::Leaves { first, step } => {
                first.wrapping_add(((index as u64).wrapping_mul(step)) << pte::PPN_SHIFT)
            }
        }
    }

    fn write(&mut self, node: Node, index: usize, value: u64) {
        if let Node::Real(table) = node {
            self.mem.write_pte(table, index, value);
        }
    }

    /// One 4 KiB table from the memory provider, checked.
    fn alloc_frame(&mut self) -> Result<HostPhysAddr, Stage2Error> {
        let t = self.mem.alloc_table(1, PAGE_SIZE)?;
        if !t.is_aligned(PAGE_SIZE) || t.raw() >> HPA_BITS != 0 {
            self.mem.free_table(t, 1);
            return Err(Stage2Error::BadTableMemory);
        }
        Ok(t)
    }

    /// Allocates `n` tables up front; on failure frees those it got.
    fn fill_pool(&mut self, n: usize) -> Result<Pool, Stage2Error> {
        let mut pool = Pool::default();
        for _ in 0..n {
            match self.alloc_frame() {
                Ok(t) => {
                    self.mem.write_pte(t, 0, pool.head);
                    pool.head = t.raw() | 1;
                    pool.len += 1;
                }
                Err(e) => {
                    self.drain_pool(pool);
                    return Err(e);
                }
            }
        }
        Ok(pool)
    }

    /// Takes a zeroed table out of the pool.
    fn take(&mut self, pool: &mut Pool) -> Result<HostPhysAddr, Stage2Error> {
        if pool.len == 0 {
            // The dry run counted fewer tables than the edit needs: only possible
            // if the memory provider's reads are inconsistent.
            return Err(Stage2Error::OutOfMemory);
        }
        let t = HostPhysAddr::new(pool.head & !1);
        pool.head = self.mem.read_pte(t, 0);
        pool.len -= 1;
        self.mem.write_pte(t, 0, 0);
        Ok(t)
    }

    /// Frees every table left in the pool.
    fn drain_pool(&mut self, mut pool: Pool) {
        while pool.len > 0 {
            if let Ok(t) = self.take(&mut pool) {
                self.mem.free_table(t, 1);
            }
        }
    }

    /// Frees every table below `table` (a table at `level`), not `table` itself.
    fn free_subtree(&mut self, table: HostPhysAddr, level: usize) {
        let Some(child_level) = level.checked_sub(1) else {
            return;
        };
        for index in 0..self.entries(level) {
            let pte = self.mem.read_pte(table, index);
            if pte & PteFlags::V.bits() != 0 && !pte::is_leaf(pte) {
                let child = HostPhysAddr::new(pte::ppn(pte) << PAGE_SHIFT);
                self.free_subtree(child, child_level);
                self.mem.free_table(child, 1);
                self.frames = self.frames.saturating_sub(1);
            }
        }
    }

    /// Whether every entry of the (non-root) table is invalid.
    fn table_is_empty(&self, table: HostPhysAddr) -> bool {
        (0..ENTRIES).all(|i| self.mem.read_pte(table, i) & PteFlags::V.bits() == 0)
    }

    /// Maps the part `[start, end)` that lies under `node`, a table at `level`
    /// whose entry 0 starts at guest-physical `base`.
    #[allow(clippy::too_many_arguments)]
    fn map_walk(
        &mut self,
        node: Node,
        level: usize,
        base: u64,
        start: u64,
        end: u64,
        leaf: &MapArgs,
        pass: &mut Pass,
    ) -> Result<(), Stage2Error> {
        let shift = entry_shift(level);
        let size = 1u64 << shift;
        let mut cur = start;
        while cur < end {
            let index = ((cur - base) >> shift) as usize;
            let e_start = base + ((index as u64) << shift);
            let e_end = e_start + size;
            let t = end.min(e_end);
            let pte = self.read(node, index);
            let valid = pte & PteFlags::V.bits() != 0;
            let hpa = leaf.hpa0 + (cur - leaf.gpa0);
            if !valid
                && level <= MAX_LEAF_LEVEL
                && cur == e_start
                && t == e_end
                && hpa & (size - 1) == 0
            {
                if matches!(pass, Pass::Apply(_)) {
                    self.write(node, index, pte::make(hpa >> PAGE_SHIFT, leaf.flags));
                }
            } else if valid && (pte::is_leaf(pte) || level == 0) {
                return Err(Stage2Error::AlreadyMapped);
            } else {
                // Misaligned ranges never reach here at level 0 (the entry is
                // always a whole page), so there is a level below.
                let child_level = level.checked_sub(1).ok_or(Stage2Error::Misaligned)?;
                let child = if valid {
                    Node::Real(HostPhysAddr::new(pte::ppn(pte) << PAGE_SHIFT))
                } else {
                    match pass {
                        Pass::Count(n) => {
                            *n += 1;
                            Node::Empty
                        }
                        Pass::Apply(pool) => {
                            let table = self.take(pool)?;
                            self.write(node, index, pte::table(table.raw() >> PAGE_SHIFT));
                            self.frames += 1;
                            Node::Real(table)
                        }
                    }
                };
                self.map_walk(child, child_level, e_start, cur, t, leaf, pass)?;
            }
            cur = t;
        }
        Ok(())
    }

    /// Unmaps the part `[start, end)` that lies under `node`, a table at `level`
    /// whose entry 0 starts at guest-physical `base`. Returns whether a valid
    /// entry changed.
    fn unmap_walk(
        &mut self,
        node: Node,
        level: usize,
        base: u64,
        start: u64,
        end: u64,
        pass: &mut Pass,
    ) -> Result<bool, Stage2Error> {
        let shift = entry_shift(level);
        let size = 1u64 << shift;
        let mut changed = false;
        let mut cur = start;
        while cur < end {
            let index = ((cur - base) >> shift) as usize;
            let e_start = base + ((index as u64) << shift);
            let e_end = e_start + size;
            let t = end.min(e_end);
            let pte = self.read(node, index);
            let whole = cur == e_start && t == e_end;
            if pte & PteFlags::V.bits() == 0 {
                // A hole.
            } else if whole {
                if let Pass::Apply(_) = pass {
                    self.write(node, index, 0);
                    if !pte::is_leaf(pte) && level > 0 {
                        let child = HostPhysAddr::new(pte::ppn(pte) << PAGE_SHIFT);
                        self.free_subtree(child, level - 1);
                        self.mem.free_table(child, 1);
                        self.frames = self.frames.saturating_sub(1);
                    }
                    changed = true;
                }
            } else {
                let child_level = level.checked_sub(1).ok_or(Stage2Error::Misaligned)?;
                if pte::is_leaf(pte) {
                    // Split: a table of leaves one level down, same flags.
                    let step = 1u64 << (LEVEL_BITS * child_level as u32);
                    match pass {
                        Pass::Count(n) => {
                            *n += 1;
                            let child = Node::Leaves { first: pte, step };
                            self.unmap_walk(child, child_level, e_start, cur, t, pass)?;
                        }
                        Pass::Apply(pool) => {
                            let table = self.take(pool)?;
                            for i in 0..ENTRIES {
                                let leaf = pte.wrapping_add((i as u64 * step) << pte::PPN_SHIFT);
                                self.mem.write_pte(table, i, leaf);
                            }
                            self.write(node, index, pte::table(table.raw() >> PAGE_SHIFT));
                            self.frames += 1;
                            self.unmap_walk(Node::Real(table), child_level, e_start, cur, t, pass)?;
                            changed = true;
                        }
                    }
                } else {
                    let table = HostPhysAddr::new(pte::ppn(pte) << PAGE_SHIFT);
                    let child = Node::Real(table);
                    changed |= self.unmap_walk(child, child_level, e_start, cur, t, pass)?;
                    if matches!(pass, Pass::Apply(_)) && self.table_is_empty(table) {
                        self.write(node, index, 0);
                        self.mem.free_table(table, 1);
                        self.frames = self.frames.saturating_sub(1);
                        changed = true;
                    }
                }
            }
            cur = t;
        }
        Ok(changed)
    }
}

/// What every leaf of one `map` call shares.
struct MapArgs {
    /// First guest-physical address of the call.
    gpa0: u64,
    /// Host-physical address `gpa0` maps to.
    hpa0: u64,
    /// Flag bits of every leaf.
    flags: u64,
}

#[cfg(test)]
mod tests;
