//! What a VM owns in host memory, and the guarantee that it gets all of it
//! back.
//!
//! A [`VmMemory`] holds one VM's guest RAM, as 2 MiB chunks of host frames, and
//! a private reserve of frames for its G-stage table: the 16 KiB root plus every
//! intermediate table that mapping *all* of its RAM with 2 MiB leaves can ever
//! need ([`fv_stage2::tables_to_map`]). Both are taken from a [`FrameSource`]
//! when the VM is created; afterwards the G-stage table draws frames from the
//! reserve only, so mapping guest RAM on first touch never fails for lack of
//! memory, however committed the host is.
//!
//! Ownership is RAII: the chunks and the reserve each free everything they
//! hold when dropped. Creation therefore cannot leak: whichever step fails (a
//! chunk, a reserve frame, the root, mapping an image's chunks), what was taken
//! so far is dropped and returned to the source. [`VmMemory::release`] (or
//! dropping a `VmMemory`) returns every chunk and every table frame, used or
//! not. Freed frames go back as they are: the source tracks them as dirty and
//! [`VmMemory`] clears a dirty chunk before a guest first sees it.
//!
//! Portable and host-tested: the hypervisor's [`FrameSource`] is its global
//! frame allocator over raw physical memory; the tests use an in-memory
//! [`fv_frame_alloc::FrameAllocator`] with fault injection.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

extern crate alloc;

use alloc::vec::Vec;
use core::fmt;
use core::ops::Range as Span;
use fv_addr::{GuestPhysAddr, HostPhysAddr, Range, MEGA_PAGE_SIZE, PAGE_SIZE};
use fv_frame_alloc::FrameError;
use fv_stage2::{GStage, Mode, Perms, Stage2Error, TableMemory, ROOT_ALIGN, ROOT_FRAMES};

/// Guest RAM is handed out and mapped in chunks of this size (2 MiB leaves).
pub const CHUNK: u64 = MEGA_PAGE_SIZE;
/// Frames in a chunk.
const CHUNK_FRAMES: usize = (CHUNK / PAGE_SIZE) as usize;

/// Where a VM's frames come from, and how their contents are reached.
///
/// [`VmMemory`] passes only frames it got from [`FrameSource::alloc`] and still
/// holds to `zero`, `read_u64` and `write_u64` (the hypervisor's
/// implementation relies on that to touch physical memory safely).
pub trait FrameSource {
    /// `frames` contiguous free frames starting at a multiple of `align` bytes,
    /// the caller's alone until it frees them.
    fn alloc(&mut self, frames: usize, align: u64) -> Result<HostPhysAddr, FrameError>;
    /// Returns frames obtained from `alloc`.
    fn free(&mut self, addr: HostPhysAddr, frames: usize) -> Result<(), FrameError>;
    /// Whether the frames may hold a previous owner's data (so must be cleared
    /// before a guest sees them).
    fn needs_clearing(&self, addr: HostPhysAddr, frames: usize) -> bool;
    /// Bytes that are free now (for error messages).
    fn free_bytes(&self) -> u64;
    /// Zeroes `len` bytes at `addr`.
    fn zero(&mut self, addr: HostPhysAddr, len: u64);
    /// The 8-byte word at `addr` (8-byte aligned).
    fn read_u64(&self, addr: HostPhysAddr) -> u64;
    /// Writes the 8-byte word at `addr` (8-byte aligned).
    fn write_u64(&mut self, addr: HostPhysAddr, value: u64);
}

/// What can go wrong with a VM's memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryError {
    /// The source could not provide the frames for its RAM or page tables
    /// (`needed` bytes in all, `free` bytes free when creation began).
    OutOfMemory {
        /// RAM plus page-table bytes the VM needs.
        needed: u64,
        /// Bytes the source had free.
        free: u64,
    },
    /// The heap could not hold the VM's chunk lists.
    NoHeap,
    /// The RAM size is zero or not a multiple of 2 MiB.
    BadSize,
    /// The RAM range goes beyond the G-stage mode's guest-physical space.
    OutOfRange,
    /// An address or span is not (entirely) guest RAM of this VM.
    NotRam,
    /// The G-stage table refused a mapping (a bug: the reserve was counted short).
    Stage2(Stage2Error),
}

impl fmt::Display for MemoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemoryError::OutOfMemory { needed, free } => write!(
                f,
                "not enough free memory: needs {} KiB (RAM and page tables), {} KiB free",
                needed >> 10,
                free >> 10
            ),
            MemoryError::NoHeap => f.write_str("no heap left for the VM's memory lists"),
            MemoryError::BadSize => f.write_str("RAM size is zero or not a multiple of 2 MiB"),
            MemoryError::OutOfRange => {
                f.write_str("RAM beyond the guest-physical space of the G-stage mode")
            }
            MemoryError::NotRam => f.write_str("not guest RAM"),
            MemoryError::Stage2(e) => write!(f, "G-stage table: {e}"),
        }
    }
}

/// Frames taken from `source`: each one freed when this is dropped.
#[derive(Debug)]
struct Held<S: FrameSource> {
    source: S,
    /// Start of each run held.
    runs: Vec<HostPhysAddr>,
    /// Frames per run.
    frames: usize,
}

impl<S: FrameSource> Held<S> {
    /// Room for `n` runs of `frames` frames; nothing taken yet.
    fn with_capacity(source: S, n: usize, frames: usize) -> Result<Self, MemoryError> {
        let mut runs = Vec::new();
        runs.try_reserve_exact(n).map_err(|_| MemoryError::NoHeap)?;
        Ok(Self {
            source,
            runs,
            frames,
        })
    }

    /// Takes one more run aligned to `align` (room was reserved for it).
    fn take(&mut self, align: u64) -> Result<HostPhysAddr, FrameError> {
        if self.runs.len() == self.runs.capacity() {
            return Err(FrameError::OutOfFrames);
        }
        let hpa = self.source.alloc(self.frames, align)?;
        self.runs.push(hpa);
        Ok(hpa)
    }

    /// Bytes held.
    fn bytes(&self) -> u64 {
        self.runs.len() as u64 * self.frames as u64 * PAGE_SIZE
    }
}

impl<S: FrameSource> Drop for Held<S> {
    fn drop(&mut self) {
        for hpa in self.runs.drain(..) {
            // Frames this holds: freeing them cannot fail but by a bug in
            // the source, and then there is nothing better to do.
            let _ = self.source.free(hpa, self.frames);
        }
    }
}

/// The frames a VM's G-stage table is built from, all taken at creation:
/// the root and a fixed set of single frames. [`TableMemory::alloc_table`]
/// hands out only these, so the table never takes from the shared pool. All of
/// them (in the table or not) go back to the source when this is dropped,
/// which is what dropping the VM's [`GStage`] does.
#[derive(Debug)]
pub struct TableReserve<S: FrameSource + Clone> {
    /// The 16 KiB root.
    root: Held<S>,
    /// Whether the root is in the table.
    root_used: bool,
    /// Every single frame of the reserve.
    frames: Held<S>,
    /// Those not in the table now (room for all of them was reserved).
    spare: Vec<HostPhysAddr>,
}

impl<S: FrameSource + Clone> TableReserve<S> {
    /// Takes the root and `tables` single frames from `source`. On failure
    /// what was taken is freed.
    fn new(source: S, tables: usize) -> Result<Self, MemoryError> {
        let mut root = Held::with_capacity(source.clone(), 1, ROOT_FRAMES)?;
        let mut frames = Held::with_capacity(source, tables, 1)?;
        let mut spare = Vec::new();
        spare
            .try_reserve_exact(tables)
            .map_err(|_| MemoryError::NoHeap)?;
        let short = |_| MemoryError::OutOfMemory { needed: 0, free: 0 };
        root.take(ROOT_ALIGN).map_err(short)?;
        for _ in 0..tables {
            spare.push(frames.take(PAGE_SIZE).map_err(short)?);
        }
        Ok(Self {
            root,
            root_used: false,
            frames,
            spare,
        })
    }

    /// Frames held, root included, whether in the table or not.
    pub fn frames(&self) -> usize {
        self.root.runs.len() * ROOT_FRAMES + self.frames.runs.len()
    }

    /// Single frames not in the table now.
    pub fn spare(&self) -> usize {
        self.spare.len()
    }

    fn word(table: HostPhysAddr, index: usize) -> HostPhysAddr {
        HostPhysAddr::new(table.raw().wrapping_add(index as u64 * 8))
    }
}

impl<S: FrameSource + Clone> TableMemory for TableReserve<S> {
    fn alloc_table(&mut self, frames: usize, align: u64) -> Result<HostPhysAddr, Stage2Error> {
        let t = match (frames, self.root.runs.first()) {
            (ROOT_FRAMES, Some(&root)) if !self.root_used && align <= ROOT_ALIGN => {
                self.root_used = true;
                root
            }
            (1, _) if align <= PAGE_SIZE => self.spare.pop().ok_or(Stage2Error::OutOfMemory)?,
            _ => return Err(Stage2Error::OutOfMemory),
        };
        self.root.source.zero(t, frames as u64 * PAGE_SIZE);
        Ok(t)
    }

    fn free_table(&mut self, addr: HostPhysAddr, frames: usize) {
        if frames == ROOT_FRAMES && self.root.runs.first() == Some(&addr) {
            self.root_used = false;
        } else if frames == 1
            && self.frames.runs.contains(&addr)
            && !self.spare.contains(&addr)
            && self.spare.len() < self.spare.capacity()
        {
            self.spare.push(addr);
        }
    }

    fn read_pte(&self, table: HostPhysAddr, index: usize) -> u64 {
        self.root.source.read_u64(Self::word(table, index))
    }

    fn write_pte(&mut self, table: HostPhysAddr, index: usize, pte: u64) {
        self.root.source.write_u64(Self::word(table, index), pte);
    }
}

/// One VM's guest RAM and G-stage table (see the crate documentation).
#[derive(Debug)]
pub struct VmMemory<S: FrameSource + Clone> {
    /// Guest-physical range of its RAM.
    ram: Range<GuestPhysAddr>,
    /// The 2 MiB chunks backing it, in guest order.
    chunks: Held<S>,
    /// Whether each chunk is mapped (cleared and in the table).
    mapped: Vec<bool>,
    /// Whether each chunk must be cleared before the guest sees it.
    needs_zero: Vec<bool>,
    /// The G-stage table, built from the reserve only.
    gstage: GStage<TableReserve<S>>,
}

impl<S: FrameSource + Clone> VmMemory<S> {
    /// Takes everything a VM with RAM `ram` can ever need from `source`: the
    /// G-stage root, the reserve of intermediate tables for all of its RAM
    /// (2 MiB leaves) and the RAM chunks, in that order; then maps the chunks
    /// every span of `map_now` (the images it boots from) lies in. On any
    /// error everything taken so far is given back.
    pub fn new(
        source: S,
        mode: Mode,
        ram: Range<GuestPhysAddr>,
        map_now: impl IntoIterator<Item = (GuestPhysAddr, u64)>,
    ) -> Result<Self, MemoryError> {
        if ram.size == 0 || !ram.size.is_multiple_of(CHUNK) || !ram.start.is_aligned(CHUNK) {
            return Err(MemoryError::BadSize);
        }
        let tables = fv_stage2::tables_to_map(mode, ram.start, ram.size, CHUNK)
            .ok_or(MemoryError::OutOfRange)?;
        let nchunks = usize::try_from(ram.size / CHUNK).map_err(|_| MemoryError::BadSize)?;
        let needed = ram
            .size
            .saturating_add((ROOT_FRAMES as u64 + tables as u64) * PAGE_SIZE);
        let free = source.free_bytes();
        let short = MemoryError::OutOfMemory { needed, free };
        if needed > free {
            return Err(short);
        }
        let mut mapped = Vec::new();
        mapped
            .try_reserve_exact(nchunks)
            .map_err(|_| MemoryError::NoHeap)?;
        let mut needs_zero = Vec::new();
        needs_zero
            .try_reserve_exact(nchunks)
            .map_err(|_| MemoryError::NoHeap)?;
        let reserve = TableReserve::new(source.clone(), tables).map_err(|e| match e {
            MemoryError::OutOfMemory { .. } => short,
            e => e,
        })?;
        let mut chunks = Held::with_capacity(source, nchunks, CHUNK_FRAMES)?;
        for _ in 0..nchunks {
            let hpa = chunks.take(CHUNK).map_err(|_| short)?;
            needs_zero.push(chunks.source.needs_clearing(hpa, CHUNK_FRAMES));
            mapped.push(false);
        }
        let gstage = GStage::new(reserve, mode).map_err(MemoryError::Stage2)?;
        let mut mem = Self {
            ram,
            chunks,
            mapped,
            needs_zero,
            gstage,
        };
        for (gpa, len) in map_now {
            mem.map_span(gpa, len)?;
        }
        Ok(mem)
    }

    /// Guest-physical range of the RAM.
    pub fn ram(&self) -> Range<GuestPhysAddr> {
        self.ram
    }

    /// The `hgatp` value for its G-stage table with `vmid`.
    pub fn hgatp(&self, vmid: u16) -> u64 {
        self.gstage.hgatp(vmid)
    }

    /// Frames taken for page tables (root and reserve, used or not).
    pub fn table_frames(&self) -> usize {
        self.gstage.memory().frames()
    }

    /// Table frames not yet in the G-stage table.
    pub fn spare_table_frames(&self) -> usize {
        self.gstage.memory().spare()
    }

    /// Bytes of guest RAM mapped so far (touched, or holding an image).
    pub fn resident_bytes(&self) -> u64 {
        self.mapped.iter().filter(|m| **m).count() as u64 * CHUNK
    }

    /// Host bytes held in all: RAM chunks and table frames.
    pub fn held_bytes(&self) -> u64 {
        self.chunks.bytes() + self.table_frames() as u64 * PAGE_SIZE
    }

    /// Index of the chunk holding `gpa`, if it is RAM.
    fn chunk_of(&self, gpa: GuestPhysAddr) -> Option<usize> {
        if !self.ram.contains(gpa) {
            return None;
        }
        usize::try_from(gpa.offset_from(self.ram.start).ok()? / CHUNK).ok()
    }

    /// Makes sure the chunk holding `gpa` is cleared (if it needs it) and
    /// mapped. Returns whether this call mapped it (false: it already was).
    /// Never takes memory from the source: the tables come from the reserve.
    pub fn ensure_mapped(&mut self, gpa: GuestPhysAddr) -> Result<bool, MemoryError> {
        let idx = self.chunk_of(gpa).ok_or(MemoryError::NotRam)?;
        if self.mapped.get(idx).copied().unwrap_or(true) {
            return Ok(false);
        }
        let hpa = *self.chunks.runs.get(idx).ok_or(MemoryError::NotRam)?;
        if self.needs_zero.get(idx).copied().unwrap_or(true) {
            self.chunks.source.zero(hpa, CHUNK);
            if let Some(z) = self.needs_zero.get_mut(idx) {
                *z = false;
            }
        }
        let gpa_chunk = self
            .ram
            .start
            .checked_add(idx as u64 * CHUNK)
            .map_err(|_| MemoryError::NotRam)?;
        self.gstage
            .map(gpa_chunk, hpa, CHUNK, Perms::RWX)
            .map_err(MemoryError::Stage2)?;
        if let Some(m) = self.mapped.get_mut(idx) {
            *m = true;
        }
        Ok(true)
    }

    /// Maps every chunk of `[gpa, gpa + len)`, and calls `f(hpa, span)` for
    /// each piece of it inside one chunk, in order: `hpa` is where the piece is
    /// in host memory and `span` its offsets within `[0, len)`. Fails (having
    /// called `f` for nothing) if the span is not all guest RAM.
    pub fn for_each_piece(
        &mut self,
        gpa: GuestPhysAddr,
        len: u64,
        mut f: impl FnMut(HostPhysAddr, Span<u64>),
    ) -> Result<(), MemoryError> {
        if !self.ram.contains_span(gpa, len) {
            return Err(MemoryError::NotRam);
        }
        let mut done = 0u64;
        while done < len {
            let at = gpa.checked_add(done).map_err(|_| MemoryError::NotRam)?;
            self.ensure_mapped(at)?;
            let in_ram = at
                .offset_from(self.ram.start)
                .map_err(|_| MemoryError::NotRam)?;
            let idx = usize::try_from(in_ram / CHUNK).map_err(|_| MemoryError::NotRam)?;
            let chunk = *self.chunks.runs.get(idx).ok_or(MemoryError::NotRam)?;
            let in_chunk = in_ram % CHUNK;
            let n = (CHUNK - in_chunk).min(len - done);
            let hpa = chunk
                .checked_add(in_chunk)
                .map_err(|_| MemoryError::NotRam)?;
            f(hpa, done..done + n);
            done += n;
        }
        Ok(())
    }

    /// Maps every chunk of `[gpa, gpa + len)`.
    pub fn map_span(&mut self, gpa: GuestPhysAddr, len: u64) -> Result<(), MemoryError> {
        self.for_each_piece(gpa, len, |_, _| {})
    }

    /// Where `gpa` is in host memory, if its chunk is mapped (a software walk
    /// of the G-stage table).
    pub fn translate(&self, gpa: GuestPhysAddr) -> Option<HostPhysAddr> {
        self.gstage.translate(gpa).map(|(hpa, _)| hpa)
    }

    /// Gives every chunk and every table frame (used or not) back to the
    /// source at once and returns the bytes given back. The guest must no
    /// longer run and its VMID must have been fenced before anyone reuses them.
    pub fn release(self) -> u64 {
        let bytes = self.held_bytes();
        // The chunks and the reserve (owned by the table) free themselves.
        drop(self);
        bytes
    }
}

#[cfg(test)]
mod tests;
