//! Host tests (std, unwrap and panics are fine here).
#![allow(clippy::unwrap_used, clippy::panic)]

extern crate std;

use super::*;
use fv_addr::GIGA_PAGE_SIZE;
use fv_frame_alloc::FrameAllocator;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::vec;
use std::vec::Vec;

/// Where the test's host RAM starts.
const HOST_BASE: u64 = 0x1_0000_0000;
/// Guest RAM base of every hypervisor VM.
const RAM_BASE: u64 = 0x8000_0000;

/// Host memory for the tests: an in-memory frame allocator, the words written
/// to frames (absent = 0), and fault injection. Reaching a frame that is not
/// allocated panics (use after free).
#[derive(Debug)]
struct State {
    fa: FrameAllocator,
    words: BTreeMap<u64, u64>,
    /// `alloc` calls so far.
    allocs: usize,
    /// The `alloc` call with this index fails.
    fail_at: Option<usize>,
}

#[derive(Clone, Debug)]
struct Source(Rc<RefCell<State>>);

impl Source {
    /// `bytes` of host RAM at [`HOST_BASE`].
    fn new(bytes: u64) -> Self {
        let mut fa = FrameAllocator::new();
        fa.add_region(Range::new(HostPhysAddr::new(HOST_BASE), bytes).unwrap())
            .unwrap();
        Source(Rc::new(RefCell::new(State {
            fa,
            words: BTreeMap::new(),
            allocs: 0,
            fail_at: None,
        })))
    }

    fn free_frames(&self) -> usize {
        self.0.borrow().fa.free_frames()
    }

    fn allocated_frames(&self) -> usize {
        self.0.borrow().fa.allocated_frames()
    }

    fn allocs(&self) -> usize {
        self.0.borrow().allocs
    }

    /// Fails the `k`-th `alloc` call from now (`None`: none fails).
    fn fail_at(&self, k: Option<usize>) {
        let mut s = self.0.borrow_mut();
        s.allocs = 0;
        s.fail_at = k;
    }

    /// Takes every free frame (a fully committed host); returns how many.
    fn take_everything(&self) -> usize {
        let mut n = 0;
        while self.0.borrow_mut().fa.alloc().is_ok() {
            n += 1;
        }
        n
    }

    fn check_allocated(s: &State, addr: HostPhysAddr, len: u64) {
        let mut a = addr.raw() & !(PAGE_SIZE - 1);
        while a < addr.raw() + len {
            assert!(
                s.fa.is_allocated(HostPhysAddr::new(a)),
                "access to frame {a:#x}, which is not allocated"
            );
            a += PAGE_SIZE;
        }
    }
}

impl FrameSource for Source {
    fn alloc(&mut self, frames: usize, align: u64) -> Result<HostPhysAddr, FrameError> {
        let mut s = self.0.borrow_mut();
        let k = s.allocs;
        s.allocs += 1;
        if s.fail_at == Some(k) {
            return Err(FrameError::OutOfFrames);
        }
        s.fa.alloc_contiguous(frames, align)
    }

    fn free(&mut self, addr: HostPhysAddr, frames: usize) -> Result<(), FrameError> {
        // The words stay: the next owner must clear what it is handed.
        self.0.borrow_mut().fa.free(addr, frames)
    }

    fn needs_clearing(&self, addr: HostPhysAddr, frames: usize) -> bool {
        self.0.borrow().fa.is_dirty(addr, frames)
    }

    fn free_bytes(&self) -> u64 {
        self.free_frames() as u64 * PAGE_SIZE
    }

    fn zero(&mut self, addr: HostPhysAddr, len: u64) {
        let mut s = self.0.borrow_mut();
        Self::check_allocated(&s, addr, len);
        let keys: Vec<u64> = s
            .words
            .range(addr.raw()..addr.raw() + len)
            .map(|(k, _)| *k)
            .collect();
        for k in keys {
            s.words.remove(&k);
        }
    }

    fn read_u64(&self, addr: HostPhysAddr) -> u64 {
        let s = self.0.borrow();
        Self::check_allocated(&s, addr, 8);
        s.words.get(&addr.raw()).copied().unwrap_or(0)
    }

    fn write_u64(&mut self, addr: HostPhysAddr, value: u64) {
        let mut s = self.0.borrow_mut();
        Self::check_allocated(&s, addr, 8);
        s.words.insert(addr.raw(), value);
    }
}

/// The error of a creation that must fail (a `VmMemory` is too big to print).
fn err<S: FrameSource + Clone>(r: Result<VmMemory<S>, MemoryError>) -> MemoryError {
    match r {
        Ok(_) => panic!("creation succeeded"),
        Err(e) => e,
    }
}

fn gpa(a: u64) -> GuestPhysAddr {
    GuestPhysAddr::new(a)
}

fn ram(base: u64, size: u64) -> Range<GuestPhysAddr> {
    Range::new(gpa(base), size).unwrap()
}

const MODES: [Mode; 3] = [Mode::Sv39x4, Mode::Sv48x4, Mode::Sv57x4];

/// Reserve frames (besides the root) for `ram` in `mode`.
fn reserve_for(mode: Mode, ram: Range<GuestPhysAddr>) -> usize {
    fv_stage2::tables_to_map(mode, ram.start, ram.size, CHUNK).unwrap()
}

/// On a host with nothing left after creation, every chunk of the VM's RAM
/// can be mapped (in any order), the reserve is used up exactly, and the
/// shared pool is never asked for a frame.
#[test]
fn full_host_maps_all_ram_from_the_reserve() {
    let cases = [
        (RAM_BASE, 16 * CHUNK),
        (RAM_BASE, GIGA_PAGE_SIZE),
        (RAM_BASE, GIGA_PAGE_SIZE + CHUNK),
        (RAM_BASE, 3 * GIGA_PAGE_SIZE + 5 * CHUNK),
        // Across the 512 GiB boundary (a second L2 table in Sv48x4).
        (512 * GIGA_PAGE_SIZE - 4 * CHUNK, 8 * CHUNK),
    ];
    for mode in MODES {
        for (base, size) in cases {
            let r = ram(base, size);
            let src = Source::new(size + 16 * CHUNK);
            let mut mem = VmMemory::new(src.clone(), mode, r, [(gpa(base), 1)]).unwrap();
            let reserve = reserve_for(mode, r);
            assert_eq!(mem.table_frames(), ROOT_FRAMES + reserve);
            let left = src.take_everything();
            assert!(left > 0);
            assert_eq!(src.free_frames(), 0);
            src.fail_at(Some(0));
            let n = size / CHUNK;
            for i in (0..n).rev() {
                let g = gpa(base + i * CHUNK + 0x1238);
                let fresh = mem.ensure_mapped(g);
                assert_eq!(fresh, Ok(i != 0), "{mode:?} {base:#x}+{size:#x}: chunk {i}");
                let hpa = mem.translate(g).unwrap();
                assert_eq!(hpa.raw() % CHUNK, 0x1238);
            }
            assert_eq!(src.allocs(), 0, "{mode:?}: the shared pool was asked");
            assert_eq!(mem.spare_table_frames(), 0, "{mode:?}: reserve not exact");
            assert_eq!(mem.resident_bytes(), size);
            // Mapping again is a no-op.
            assert_eq!(mem.ensure_mapped(gpa(base)), Ok(false));
            let before = src.free_frames();
            let freed = mem.release();
            assert_eq!(freed, size + (ROOT_FRAMES + reserve) as u64 * PAGE_SIZE);
            assert_eq!(
                src.free_frames() as u64 * PAGE_SIZE,
                before as u64 * PAGE_SIZE + freed
            );
        }
    }
}

/// Fails creation at every allocation in turn (the root, each reserve frame,
/// each chunk) and then in the image mapping: each time the allocator ends
/// up exactly as before.
#[test]
fn failed_create_gives_everything_back() {
    for mode in MODES {
        // 8 chunks across a 1 GiB boundary: two L1 tables (and an L2 in Sv48x4 ...).
        let r = ram(4 * GIGA_PAGE_SIZE - 3 * CHUNK, 8 * CHUNK);
        let images = [
            (gpa(r.start.raw() + CHUNK + 0x1000), 3 * CHUNK),
            (gpa(r.end().raw() - 0x100), 0x100),
        ];
        let src = Source::new(64 * CHUNK);
        // Some frames in use elsewhere, some dirty.
        let other = VmMemory::new(src.clone(), mode, ram(RAM_BASE, 2 * CHUNK), []).unwrap();
        let dirty = VmMemory::new(src.clone(), mode, ram(RAM_BASE, 4 * CHUNK), []).unwrap();
        dirty.release();
        let free = src.free_frames();
        let allocated = src.allocated_frames();
        let steps = 1 + reserve_for(mode, r) + 8;
        for k in 0..steps {
            src.fail_at(Some(k));
            let e = err(VmMemory::new(src.clone(), mode, r, images));
            assert!(
                matches!(e, MemoryError::OutOfMemory { .. }),
                "{mode:?} step {k}: {e:?}"
            );
            assert_eq!(src.allocs(), k + 1, "{mode:?}: went on after a failure");
            assert_eq!(src.free_frames(), free, "{mode:?} step {k}: leaked");
            assert_eq!(src.allocated_frames(), allocated);
        }
        // The image mapping fails last: a span past the end of RAM.
        src.fail_at(None);
        let bad = [images[0], (gpa(r.end().raw() - 0x100), 0x101)];
        assert_eq!(
            err(VmMemory::new(src.clone(), mode, r, bad)),
            MemoryError::NotRam
        );
        assert_eq!(src.allocs(), steps);
        assert_eq!(src.free_frames(), free, "{mode:?}: image failure leaked");
        // And without failures it succeeds after exactly `steps` allocations.
        src.fail_at(None);
        let mem = VmMemory::new(src.clone(), mode, r, images).unwrap();
        assert_eq!(src.allocs(), steps);
        assert_eq!(mem.resident_bytes(), 5 * CHUNK);
        mem.release();
        assert_eq!(src.free_frames(), free);
        other.release();
        assert_eq!(src.allocated_frames(), 0);
    }
}

/// A VM too big for what is left fails before taking anything, saying how
/// much it needs and how much is free.
#[test]
fn too_big_fails_before_taking_anything() {
    let src = Source::new(64 * CHUNK);
    let e = err(VmMemory::new(
        src.clone(),
        Mode::Sv39x4,
        ram(RAM_BASE, 64 * CHUNK),
        [],
    ));
    assert_eq!(
        e,
        MemoryError::OutOfMemory {
            needed: 64 * CHUNK + 5 * PAGE_SIZE,
            free: 64 * CHUNK
        }
    );
    assert_eq!(
        std::format!("{e}"),
        "not enough free memory: needs 131092 KiB (RAM and page tables), 131072 KiB free"
    );
    assert_eq!(src.allocs(), 0);
    // Enough frames in number but no free 2 MiB run (one frame of each is
    // taken): fails at the first chunk, cleanly.
    let taken: Vec<HostPhysAddr> = (0..64)
        .map(|i| {
            let h = HostPhysAddr::new(HOST_BASE + i * CHUNK + PAGE_SIZE);
            src.0
                .borrow_mut()
                .fa
                .reserve(Range::new(h, PAGE_SIZE).unwrap())
                .unwrap();
            h
        })
        .collect();
    let e = err(VmMemory::new(
        src.clone(),
        Mode::Sv39x4,
        ram(RAM_BASE, 62 * CHUNK),
        [],
    ));
    assert!(matches!(e, MemoryError::OutOfMemory { .. }), "{e:?}");
    assert_eq!(src.allocs(), 1 + 1 + 1, "root, reserve frame, first chunk");
    assert_eq!(src.allocated_frames(), 0);
    assert_eq!(taken.len(), 64);
}

#[test]
fn bad_ranges_take_nothing() {
    let src = Source::new(16 * CHUNK);
    let bad = [
        (ram(RAM_BASE, 0), MemoryError::BadSize),
        (ram(RAM_BASE, 3 * CHUNK / 2), MemoryError::BadSize),
        (ram(RAM_BASE + PAGE_SIZE, CHUNK), MemoryError::BadSize),
        (ram((1 << 41) - CHUNK, 2 * CHUNK), MemoryError::OutOfRange),
    ];
    for (r, want) in bad {
        assert_eq!(err(VmMemory::new(src.clone(), Mode::Sv39x4, r, [])), want);
    }
    assert_eq!(src.allocs(), 0);
}

/// `release` returns chunks and tables; the next VM that gets those frames
/// finds them cleared (chunks on first touch, tables when taken).
#[test]
fn released_frames_are_cleared_before_reuse() {
    let src = Source::new(8 * CHUNK);
    let r = ram(RAM_BASE, 4 * CHUNK);
    let free = src.free_frames();
    let mut a = VmMemory::new(src.clone(), Mode::Sv39x4, r, []).unwrap();
    let mut secrets = Vec::new();
    for i in 0..4 {
        let g = gpa(RAM_BASE + i * CHUNK + 0x40);
        a.ensure_mapped(g).unwrap();
        let h = a.translate(g).unwrap();
        src.clone().write_u64(h, 0x5ec2e7 + i);
        secrets.push(h);
    }
    assert_eq!(a.release(), 4 * CHUNK + 5 * PAGE_SIZE);
    assert_eq!(src.free_frames(), free);
    let mut b = VmMemory::new(src.clone(), Mode::Sv39x4, r, []).unwrap();
    let mut reused = 0;
    for i in 0..4 {
        let g = gpa(RAM_BASE + i * CHUNK + 0x40);
        b.ensure_mapped(g).unwrap();
        let h = b.translate(g).unwrap();
        reused += usize::from(secrets.contains(&h));
        assert_eq!(
            src.read_u64(h),
            0,
            "chunk {i}: previous owner's data visible"
        );
    }
    assert_eq!(
        reused, 4,
        "the allocator was expected to hand the same chunks out"
    );
    drop(b);
    assert_eq!(src.free_frames(), free, "drop must free like release");
}

#[test]
fn pieces_stop_at_chunk_boundaries() {
    let src = Source::new(8 * CHUNK);
    let mut m = VmMemory::new(src.clone(), Mode::Sv48x4, ram(RAM_BASE, 4 * CHUNK), []).unwrap();
    let mut pieces = vec![];
    let start = gpa(RAM_BASE + CHUNK - 0x10);
    m.for_each_piece(start, CHUNK + 0x20, |h, s| pieces.push((h, s)))
        .unwrap();
    assert_eq!(pieces.len(), 3);
    assert_eq!(pieces[0].1, 0..0x10);
    assert_eq!(pieces[1].1, 0x10..0x10 + CHUNK);
    assert_eq!(pieces[2].1, 0x10 + CHUNK..0x20 + CHUNK);
    for (i, (h, s)) in pieces.iter().enumerate() {
        assert_eq!(
            Some(*h),
            m.translate(start.checked_add(s.start).unwrap()),
            "piece {i}"
        );
    }
    assert_eq!(m.resident_bytes(), 3 * CHUNK);
    // Not all RAM: nothing called, nothing mapped.
    let mut called = false;
    let end = gpa(RAM_BASE + 4 * CHUNK - 8);
    assert_eq!(
        m.for_each_piece(end, 16, |_, _| called = true),
        Err(MemoryError::NotRam)
    );
    assert_eq!(m.ensure_mapped(gpa(RAM_BASE - 1)), Err(MemoryError::NotRam));
    assert_eq!(
        m.ensure_mapped(gpa(RAM_BASE + 4 * CHUNK)),
        Err(MemoryError::NotRam)
    );
    assert!(!called);
    assert_eq!(m.resident_bytes(), 3 * CHUNK);
}
