//! Physical frame allocator.
//!
//! The bare-metal hypervisor hands every byte of usable RAM it does not itself
//! occupy to one [`FrameAllocator`]: regions of RAM are added with
//! [`FrameAllocator::add_region`], the parts that must never be handed out
//! (firmware, `/reserved-memory`, the hypervisor image, the DTB, the boot package)
//! are removed with [`FrameAllocator::reserve`], and then guest memory, page
//! tables and stacks come out of it as 4 KiB frames ([`FrameAllocator::alloc`]) or
//! aligned contiguous runs ([`FrameAllocator::alloc_contiguous`], e.g. 512 frames
//! aligned to 2 MiB so a guest's RAM can be mapped with megapages).
//!
//! Each region keeps one bit per frame (set = allocated or reserved) in a
//! heap-allocated bitmap: 32 KiB of bitmap per GiB of RAM. Searches work on whole
//! 64-bit words and aligned runs are looked for at the alignment stride, so a
//! 2 MiB run over a few GiB of RAM costs a few thousand word reads at worst.
//!
//! Every operation either succeeds completely or returns a [`FrameError`] and
//! leaves the allocator exactly as it was; frees are checked (double free, frames
//! never allocated, reserved frames, addresses outside any region) rather than
//! trusted.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

extern crate alloc;

use alloc::vec::Vec;
use core::fmt;
use fv_addr::{HostPhysAddr, Range, PAGE_SIZE};

/// Bits per bitmap word.
const WORD_BITS: usize = 64;

/// What can go wrong when managing frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// No free frame (or no free run of the requested length and alignment) is left.
    OutOfFrames,
    /// The region being added overlaps a region already added.
    Overlap,
    /// The address (or part of the run starting at it) lies outside every region.
    NotInRegion,
    /// A frame being freed is not allocated: it was already freed, or never allocated.
    DoubleFree,
    /// A frame being freed is reserved (it was never handed out).
    Reserved,
    /// A frame in a range being reserved is currently allocated.
    InUse,
    /// The address is not a multiple of 4 KiB.
    Misaligned,
    /// The requested alignment is not a power of two of at least 4096 bytes.
    BadAlignment,
    /// A run of zero frames was requested or freed.
    ZeroFrames,
    /// The range wraps around the end of the address space.
    Overflow,
    /// The heap could not hold the bitmap for a new region.
    NoMemory,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            FrameError::OutOfFrames => "no free frames left for this request",
            FrameError::Overlap => "region overlaps an existing region",
            FrameError::NotInRegion => "address is outside every RAM region",
            FrameError::DoubleFree => "frame is not allocated (double free or never allocated)",
            FrameError::Reserved => "frame is reserved and cannot be freed",
            FrameError::InUse => "frame to reserve is currently allocated",
            FrameError::Misaligned => "address is not 4 KiB aligned",
            FrameError::BadAlignment => "alignment is not a power of two >= 4096",
            FrameError::ZeroFrames => "zero frames requested",
            FrameError::Overflow => "range wraps around the address space",
            FrameError::NoMemory => "out of heap memory for the region bitmap",
        };
        f.write_str(s)
    }
}

/// The `[start, end)` byte bounds of `r`, or [`FrameError::Overflow`].
fn bounds(r: &Range<HostPhysAddr>) -> Result<(u64, u64), FrameError> {
    let start = r.start.raw();
    let end = start.checked_add(r.size).ok_or(FrameError::Overflow)?;
    Ok((start, end))
}

/// `x` rounded up to a multiple of the power of two `align`, or `None` on overflow.
fn round_up(x: u64, align: u64) -> Option<u64> {
    Some(x.checked_add(align - 1)? & !(align - 1))
}

/// `x` rounded down to a multiple of the power of two `align`.
fn round_down(x: u64, align: u64) -> u64 {
    x & !(align - 1)
}

/// One contiguous range of RAM and its allocation bitmap.
#[derive(Debug)]
struct Region {
    /// Start of the range as given to `add_region` (before rounding), for overlap checks.
    raw_start: u64,
    /// End of the range as given to `add_region`.
    raw_end: u64,
    /// Address of frame 0.
    base: u64,
    /// Number of frames.
    frames: usize,
    /// One bit per frame, set = allocated or reserved. Bits past `frames` in the
    /// last word are set so they never look free.
    used: Vec<u64>,
    /// One bit per frame, set = the frame was handed out and freed since the
    /// allocator was created, so it may hold someone's data.
    dirty: Vec<u64>,
    /// Frames whose bit is clear.
    free: usize,
    /// Word where the last single-frame search succeeded (next-fit).
    hint: usize,
}

impl Region {
    /// Byte address one past the last frame.
    fn end(&self) -> u64 {
        // Cannot overflow: base + frames * PAGE_SIZE was computed from a checked end.
        self.base + self.frames as u64 * PAGE_SIZE
    }

    /// The frame index range of the frames overlapping `[start, end)` (byte
    /// addresses, page aligned), or `None` if none do.
    fn index_range(&self, start: u64, end: u64) -> Option<(usize, usize)> {
        let s = start.max(self.base);
        let e = end.min(self.end());
        if s >= e {
            return None;
        }
        let first = usize::try_from((s - self.base) / PAGE_SIZE).ok()?;
        let last = usize::try_from((e - self.base) / PAGE_SIZE).ok()?;
        Some((first, last - first))
    }

    fn word(&self, w: usize) -> u64 {
        // Outside the bitmap counts as used: never handed out.
        self.used.get(w).copied().unwrap_or(u64::MAX)
    }

    /// The first used frame in `[start, start + n)`.
    fn first_used(&self, start: usize, n: usize) -> Option<usize> {
        word_masks(start, n).find_map(|(w, m)| {
            let bits = self.word(w) & m;
            (bits != 0).then(|| w * WORD_BITS + bits.trailing_zeros() as usize)
        })
    }

    /// The first free frame in `[start, start + n)`.
    fn first_free(&self, start: usize, n: usize) -> Option<usize> {
        word_masks(start, n).find_map(|(w, m)| {
            let bits = !self.word(w) & m;
            (bits != 0).then(|| w * WORD_BITS + bits.trailing_zeros() as usize)
        })
    }

    /// How many frames in `[start, start + n)` are used.
    fn count_used(&self, start: usize, n: usize) -> usize {
        word_masks(start, n)
            .map(|(w, m)| (self.word(w) & m).count_ones() as usize)
            .sum()
    }

    /// Sets or clears the bits of `[start, start + n)`.
    fn set_bits(&mut self, start: usize, n: usize, value: bool) {
        for (w, m) in word_masks(start, n) {
            if let Some(word) = self.used.get_mut(w) {
                if value {
                    *word |= m;
                } else {
                    *word &= !m;
                }
            }
        }
    }

    /// Finds `n` free frames starting at an address that is a multiple of `align`.
    fn find_run(&self, n: usize, align: u64) -> Option<usize> {
        if self.free < n || n > self.frames {
            return None;
        }
        // Candidates are first + k * stride (frame indices).
        let first_addr = round_up(self.base, align)?;
        if first_addr >= self.end() {
            return None;
        }
        let first = usize::try_from((first_addr - self.base) / PAGE_SIZE).ok()?;
        let stride = usize::try_from(align / PAGE_SIZE).ok()?;
        let last_start = self.frames - n;
        let mut from = first;
        loop {
            // Skip used frames a word at a time, then snap to the next candidate.
            let free = self.first_free(from, self.frames.checked_sub(from)?)?;
            let k = (free - first).div_ceil(stride);
            let cand = first.checked_add(k.checked_mul(stride)?)?;
            if cand > last_start {
                return None;
            }
            match self.first_used(cand, n) {
                None => return Some(cand),
                Some(used) => from = used + 1,
            }
        }
    }

    /// Finds one free frame, starting at the hint word.
    fn find_one(&self) -> Option<usize> {
        if self.free == 0 {
            return None;
        }
        let words = self.used.len();
        let hint = self.hint.min(words);
        (hint..words).chain(0..hint).find_map(|w| {
            let word = self.word(w);
            (word != u64::MAX).then(|| w * WORD_BITS + word.trailing_ones() as usize)
        })
    }
}

/// Splits the bit range `[start, start + n)` into (word index, mask) pairs.
fn word_masks(start: usize, n: usize) -> impl Iterator<Item = (usize, u64)> {
    let end = start.saturating_add(n);
    let mut i = start;
    core::iter::from_fn(move || {
        if i >= end {
            return None;
        }
        let bit = i % WORD_BITS;
        let take = (WORD_BITS - bit).min(end - i);
        let mask = if take == WORD_BITS {
            u64::MAX
        } else {
            ((1u64 << take) - 1) << bit
        };
        let w = i / WORD_BITS;
        i += take;
        Some((w, mask))
    })
}

/// The physical frame allocator: a set of RAM regions, each with a bitmap.
///
/// Frames are counted three ways: `total_frames() == free_frames() +
/// allocated_frames() + reserved_frames()`.
#[derive(Debug, Default)]
pub struct FrameAllocator {
    regions: Vec<Region>,
    /// Page-rounded `[start, end)` byte ranges passed to `reserve`. Kept so that
    /// regions added later honour them and so frees of reserved frames are caught.
    reservations: Vec<(u64, u64)>,
    reserved: usize,
}

impl FrameAllocator {
    /// An allocator with no RAM.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds usable RAM. The range is rounded inward to whole 4 KiB frames; a range
    /// holding no whole frame is accepted and adds nothing. It must not overlap a
    /// region added before ([`FrameError::Overlap`]). Reservations already made
    /// apply to the new region too.
    pub fn add_region(&mut self, r: Range<HostPhysAddr>) -> Result<(), FrameError> {
        let (raw_start, raw_end) = bounds(&r)?;
        if raw_start == raw_end {
            return Ok(());
        }
        if self
            .regions
            .iter()
            .any(|g| raw_start < g.raw_end && g.raw_start < raw_end)
        {
            return Err(FrameError::Overlap);
        }
        let base = round_up(raw_start, PAGE_SIZE).ok_or(FrameError::Overflow)?;
        let end = round_down(raw_end, PAGE_SIZE);
        if end <= base {
            return Ok(());
        }
        let frames = usize::try_from((end - base) / PAGE_SIZE).map_err(|_| FrameError::Overflow)?;
        let words = frames.div_ceil(WORD_BITS);
        let mut used = Vec::new();
        used.try_reserve_exact(words)
            .map_err(|_| FrameError::NoMemory)?;
        used.resize(words, 0);
        let mut dirty = Vec::new();
        dirty
            .try_reserve_exact(words)
            .map_err(|_| FrameError::NoMemory)?;
        dirty.resize(words, 0);
        self.regions
            .try_reserve(1)
            .map_err(|_| FrameError::NoMemory)?;
        let mut region = Region {
            raw_start,
            raw_end,
            base,
            frames,
            used,
            dirty,
            free: frames,
            hint: 0,
        };
        // Padding bits past the last frame are permanently "used".
        let pad = words * WORD_BITS - frames;
        region.set_bits(frames, pad, true);
        for &(s, e) in &self.reservations {
            if let Some((first, n)) = region.index_range(s, e) {
                let newly = n - region.count_used(first, n);
                region.set_bits(first, n, true);
                region.free -= newly;
                self.reserved += newly;
            }
        }
        self.regions.push(region);
        Ok(())
    }

    /// Marks every frame overlapping `r` (rounded outward to 4 KiB) as never
    /// allocatable. Parts outside known regions are ignored (but remembered: a
    /// region added later honours the reservation). Reserving a frame twice is
    /// harmless; reserving a frame that is currently allocated fails with
    /// [`FrameError::InUse`] and changes nothing.
    pub fn reserve(&mut self, r: Range<HostPhysAddr>) -> Result<(), FrameError> {
        let (raw_start, raw_end) = bounds(&r)?;
        if raw_start == raw_end {
            return Ok(());
        }
        let start = round_down(raw_start, PAGE_SIZE);
        let end = round_up(raw_end, PAGE_SIZE).ok_or(FrameError::Overflow)?;
        // Check first: no allocated (used but not reserved) frame in the range.
        for region in &self.regions {
            let Some((first, n)) = region.index_range(start, end) else {
                continue;
            };
            let stop = first + n;
            let mut at = first;
            while let Some(i) = region.first_used(at, stop - at) {
                let addr = region.base + i as u64 * PAGE_SIZE;
                if !self.is_reserved(addr, 1) {
                    return Err(FrameError::InUse);
                }
                at = i + 1;
            }
        }
        self.reservations
            .try_reserve(1)
            .map_err(|_| FrameError::NoMemory)?;
        self.reservations.push((start, end));
        for region in &mut self.regions {
            if let Some((first, n)) = region.index_range(start, end) {
                let newly = n - region.count_used(first, n);
                region.set_bits(first, n, true);
                region.free -= newly;
                self.reserved += newly;
            }
        }
        Ok(())
    }

    /// Whether any of the `frames` frames at `addr` lies in a reservation.
    fn is_reserved(&self, addr: u64, frames: usize) -> bool {
        let end = addr.saturating_add((frames as u64).saturating_mul(PAGE_SIZE));
        self.reservations.iter().any(|&(s, e)| addr < e && s < end)
    }

    /// One 4 KiB frame. Its contents are whatever was there before.
    pub fn alloc(&mut self) -> Result<HostPhysAddr, FrameError> {
        for region in &mut self.regions {
            if let Some(i) = region.find_one() {
                region.set_bits(i, 1, true);
                region.free -= 1;
                region.hint = i / WORD_BITS;
                return Ok(HostPhysAddr::new(region.base + i as u64 * PAGE_SIZE));
            }
        }
        Err(FrameError::OutOfFrames)
    }

    /// `frames` contiguous frames whose first address is a multiple of `align`
    /// bytes (a power of two, at least 4096). A run never spans two regions, even
    /// adjacent ones. Fails with [`FrameError::OutOfFrames`] (changing nothing) if
    /// no such run is free.
    pub fn alloc_contiguous(
        &mut self,
        frames: usize,
        align: u64,
    ) -> Result<HostPhysAddr, FrameError> {
        if frames == 0 {
            return Err(FrameError::ZeroFrames);
        }
        if !align.is_power_of_two() || align < PAGE_SIZE {
            return Err(FrameError::BadAlignment);
        }
        for region in &mut self.regions {
            if let Some(i) = region.find_run(frames, align) {
                region.set_bits(i, frames, true);
                region.free -= frames;
                return Ok(HostPhysAddr::new(region.base + i as u64 * PAGE_SIZE));
            }
        }
        Err(FrameError::OutOfFrames)
    }

    /// Frees the `frames` frames starting at `addr`, which must all be allocated
    /// and lie in one region. Checked: on [`FrameError::Misaligned`],
    /// [`FrameError::NotInRegion`], [`FrameError::Reserved`] or
    /// [`FrameError::DoubleFree`] (some frame is not allocated) nothing is freed.
    /// A run may be freed in pieces, or several runs at once if they are adjacent.
    pub fn free(&mut self, addr: HostPhysAddr, frames: usize) -> Result<(), FrameError> {
        if frames == 0 {
            return Err(FrameError::ZeroFrames);
        }
        let a = addr.raw();
        if !addr.is_aligned(PAGE_SIZE) {
            return Err(FrameError::Misaligned);
        }
        let len = (frames as u64)
            .checked_mul(PAGE_SIZE)
            .ok_or(FrameError::NotInRegion)?;
        let end = a.checked_add(len).ok_or(FrameError::NotInRegion)?;
        let reserved = self.is_reserved(a, frames);
        let region = self
            .regions
            .iter_mut()
            .find(|g| g.base <= a && a < g.end())
            .ok_or(FrameError::NotInRegion)?;
        if end > region.end() {
            return Err(FrameError::NotInRegion);
        }
        if reserved {
            return Err(FrameError::Reserved);
        }
        let first =
            usize::try_from((a - region.base) / PAGE_SIZE).map_err(|_| FrameError::NotInRegion)?;
        if region.first_free(first, frames).is_some() {
            return Err(FrameError::DoubleFree);
        }
        region.set_bits(first, frames, false);
        for (w, m) in word_masks(first, frames) {
            if let Some(word) = region.dirty.get_mut(w) {
                *word |= m;
            }
        }
        region.free += frames;
        Ok(())
    }

    /// Whether any of the `frames` frames at `addr` was freed since the
    /// allocator was created (so may hold a previous owner's data and must be
    /// cleared before someone else sees it). Frames outside every region count
    /// as dirty.
    pub fn is_dirty(&self, addr: HostPhysAddr, frames: usize) -> bool {
        let a = addr.raw();
        let Some(region) = self.regions.iter().find(|g| g.base <= a && a < g.end()) else {
            return true;
        };
        let Ok(first) = usize::try_from((a - region.base) / PAGE_SIZE) else {
            return true;
        };
        if first.saturating_add(frames) > region.frames {
            return true;
        }
        word_masks(first, frames).any(|(w, m)| region.dirty.get(w).is_none_or(|d| d & m != 0))
    }

    /// Records that the `frames` frames at `addr` have been cleared (no
    /// previous owner's data left). Addresses outside every region are ignored.
    pub fn mark_clean(&mut self, addr: HostPhysAddr, frames: usize) {
        let a = addr.raw();
        if let Some(region) = self.regions.iter_mut().find(|g| g.base <= a && a < g.end()) {
            if let Ok(first) = usize::try_from((a - region.base) / PAGE_SIZE) {
                for (w, m) in word_masks(first, frames.min(region.frames - first)) {
                    if let Some(word) = region.dirty.get_mut(w) {
                        *word &= !m;
                    }
                }
            }
        }
    }

    /// Frames that can be allocated now.
    pub fn free_frames(&self) -> usize {
        self.regions.iter().map(|g| g.free).sum()
    }

    /// Every frame in every region, whatever its state.
    pub fn total_frames(&self) -> usize {
        self.regions.iter().map(|g| g.frames).sum()
    }

    /// Frames in regions that are reserved.
    pub fn reserved_frames(&self) -> usize {
        self.reserved
    }

    /// Frames currently handed out.
    pub fn allocated_frames(&self) -> usize {
        self.total_frames() - self.free_frames() - self.reserved
    }

    /// Whether the frame containing `addr` is currently allocated (not free, not reserved).
    pub fn is_allocated(&self, addr: HostPhysAddr) -> bool {
        let a = round_down(addr.raw(), PAGE_SIZE);
        let Some(region) = self.regions.iter().find(|g| g.base <= a && a < g.end()) else {
            return false;
        };
        let i = ((a - region.base) / PAGE_SIZE) as usize;
        region.first_used(i, 1).is_some() && !self.is_reserved(a, 1)
    }

    /// The regions' page-rounded ranges, in the order they were added.
    pub fn regions(&self) -> impl Iterator<Item = Range<HostPhysAddr>> + '_ {
        self.regions.iter().map(|g| Range {
            start: HostPhysAddr::new(g.base),
            size: g.end() - g.base,
        })
    }
}

#[cfg(test)]
mod tests;
