//! Host tests (std, unwrap and panics are fine here).
#![allow(clippy::unwrap_used, clippy::panic)]

extern crate std;

use super::*;
use fv_addr::{GIGA_PAGE_SIZE, MEGA_PAGE_SIZE};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::vec;
use std::vec::Vec;

fn range(start: u64, size: u64) -> Range<HostPhysAddr> {
    Range::<HostPhysAddr>::new(HostPhysAddr::new(start), size).unwrap()
}

fn hpa(a: u64) -> HostPhysAddr {
    HostPhysAddr::new(a)
}

/// Counts add up whatever happened.
fn check_counts(fa: &FrameAllocator) {
    assert_eq!(
        fa.total_frames(),
        fa.free_frames() + fa.allocated_frames() + fa.reserved_frames()
    );
}

#[test]
fn add_region_rounds_inward() {
    let mut fa = FrameAllocator::new();
    fa.add_region(range(0x8000_0800, 0x3000)).unwrap();
    // [0x8000_0800, 0x8000_3800) holds the whole frames 0x8000_1000 and 0x8000_2000.
    assert_eq!(fa.total_frames(), 2);
    assert_eq!(fa.free_frames(), 2);
    assert_eq!(
        fa.regions().collect::<Vec<_>>(),
        vec![range(0x8000_1000, 0x2000)]
    );
    let a = fa.alloc().unwrap();
    let b = fa.alloc().unwrap();
    let mut got = [a.raw(), b.raw()];
    got.sort();
    assert_eq!(got, [0x8000_1000, 0x8000_2000]);
    assert_eq!(fa.alloc(), Err(FrameError::OutOfFrames));
}

#[test]
fn region_without_whole_frame_adds_nothing() {
    let mut fa = FrameAllocator::new();
    fa.add_region(range(0x8000_0800, 0x900)).unwrap();
    fa.add_region(range(0x9000_0000, 0)).unwrap();
    assert_eq!(fa.total_frames(), 0);
    assert_eq!(fa.alloc(), Err(FrameError::OutOfFrames));
}

#[test]
fn overlapping_regions_are_rejected_adjacent_accepted() {
    let mut fa = FrameAllocator::new();
    fa.add_region(range(0x8000_0000, 0x10_0000)).unwrap();
    assert_eq!(
        fa.add_region(range(0x800f_f000, 0x2000)),
        Err(FrameError::Overlap)
    );
    assert_eq!(
        fa.add_region(range(0x7000_0000, 0x2000_0000)),
        Err(FrameError::Overlap)
    );
    // Overlap by less than a frame is still an overlap of what the caller said.
    assert_eq!(
        fa.add_region(range(0x800f_ff00, 0x1100)),
        Err(FrameError::Overlap)
    );
    assert_eq!(fa.total_frames(), 256);
    fa.add_region(range(0x8010_0000, 0x1000)).unwrap();
    fa.add_region(range(0x7fff_f000, 0x1000)).unwrap();
    assert_eq!(fa.total_frames(), 258);
}

#[test]
fn wrapping_range_is_rejected() {
    let mut fa = FrameAllocator::new();
    let bad = Range {
        start: hpa(u64::MAX - 0xfff),
        size: 0x2000,
    };
    assert_eq!(fa.add_region(bad), Err(FrameError::Overflow));
    assert_eq!(fa.reserve(bad), Err(FrameError::Overflow));
}

#[test]
fn reserved_frames_are_never_allocated() {
    let mut fa = FrameAllocator::new();
    fa.add_region(range(0x8000_0000, 16 * PAGE_SIZE)).unwrap();
    // Firmware: first 3 frames. A DTB straddling a frame boundary: 2 frames. Something
    // partly outside the region: only the inside part counts.
    fa.reserve(range(0x8000_0000, 0x3000)).unwrap();
    fa.reserve(range(0x8000_5ff0, 0x20)).unwrap();
    fa.reserve(range(0x8000_f000, 0x10_0000)).unwrap();
    fa.reserve(range(0x1000, 0x1000)).unwrap();
    assert_eq!(fa.reserved_frames(), 3 + 2 + 1);
    assert_eq!(fa.free_frames(), 10);
    check_counts(&fa);
    let mut got = Vec::new();
    while let Ok(a) = fa.alloc() {
        got.push(a.raw());
    }
    got.sort();
    let expected: Vec<u64> = [3u64, 4, 7, 8, 9, 10, 11, 12, 13, 14]
        .iter()
        .map(|i| 0x8000_0000 + i * PAGE_SIZE)
        .collect();
    assert_eq!(got, expected);
    assert_eq!(fa.allocated_frames(), 10);
    check_counts(&fa);
}

#[test]
fn reserving_twice_counts_once() {
    let mut fa = FrameAllocator::new();
    fa.add_region(range(0x8000_0000, 16 * PAGE_SIZE)).unwrap();
    fa.reserve(range(0x8000_0000, 0x4000)).unwrap();
    fa.reserve(range(0x8000_2000, 0x4000)).unwrap();
    assert_eq!(fa.reserved_frames(), 6);
    assert_eq!(fa.free_frames(), 10);
    check_counts(&fa);
}

#[test]
fn reservation_before_region_applies_when_added() {
    let mut fa = FrameAllocator::new();
    fa.reserve(range(0x8000_2000, 0x1000)).unwrap();
    fa.add_region(range(0x8000_0000, 4 * PAGE_SIZE)).unwrap();
    assert_eq!(fa.reserved_frames(), 1);
    assert_eq!(fa.free_frames(), 3);
    for _ in 0..3 {
        assert_ne!(fa.alloc().unwrap(), hpa(0x8000_2000));
    }
    assert_eq!(fa.alloc(), Err(FrameError::OutOfFrames));
}

#[test]
fn reserving_an_allocated_frame_fails_and_changes_nothing() {
    let mut fa = FrameAllocator::new();
    fa.add_region(range(0x8000_0000, 4 * PAGE_SIZE)).unwrap();
    fa.reserve(range(0x8000_0000, 0x1000)).unwrap();
    let a = fa.alloc().unwrap();
    assert_eq!(a, hpa(0x8000_1000));
    assert_eq!(
        fa.reserve(range(0x8000_0000, 0x3000)),
        Err(FrameError::InUse)
    );
    assert_eq!(fa.reserved_frames(), 1);
    assert_eq!(fa.free_frames(), 2);
    // The failed reservation did not take effect: frame 2 is still allocatable.
    let b = fa.alloc().unwrap();
    assert_eq!(b, hpa(0x8000_2000));
    check_counts(&fa);
}

#[test]
fn exhaustion_returns_error_and_changes_nothing() {
    let mut fa = FrameAllocator::new();
    fa.add_region(range(0x8000_0000, 8 * PAGE_SIZE)).unwrap();
    for _ in 0..8 {
        fa.alloc().unwrap();
    }
    assert_eq!(fa.alloc(), Err(FrameError::OutOfFrames));
    assert_eq!(
        fa.alloc_contiguous(1, PAGE_SIZE),
        Err(FrameError::OutOfFrames)
    );
    assert_eq!(fa.free_frames(), 0);
    assert_eq!(fa.allocated_frames(), 8);
    fa.free(hpa(0x8000_3000), 1).unwrap();
    assert_eq!(fa.alloc(), Ok(hpa(0x8000_3000)));
}

#[test]
fn contiguous_exhaustion_changes_nothing() {
    let mut fa = FrameAllocator::new();
    fa.add_region(range(0x8000_0000, 8 * PAGE_SIZE)).unwrap();
    // Fragment: allocate frames 1 and 5.
    let all: Vec<_> = (0..8).map(|_| fa.alloc().unwrap()).collect();
    for (i, a) in all.iter().enumerate() {
        if i != 1 && i != 5 {
            fa.free(*a, 1).unwrap();
        }
    }
    assert_eq!(fa.free_frames(), 6);
    // Longest free run is frames 2..5 (3 frames).
    assert_eq!(
        fa.alloc_contiguous(4, PAGE_SIZE),
        Err(FrameError::OutOfFrames)
    );
    assert_eq!(fa.free_frames(), 6);
    assert_eq!(fa.alloc_contiguous(3, PAGE_SIZE), Ok(hpa(0x8000_2000)));
    assert_eq!(fa.free_frames(), 3);
    check_counts(&fa);
}

#[test]
fn contiguous_runs_are_aligned() {
    let mut fa = FrameAllocator::new();
    // Region starts just past a 2 MiB boundary: the first aligned run is one megapage in.
    fa.add_region(range(0x8000_1000, 8 * MEGA_PAGE_SIZE))
        .unwrap();
    let a = fa.alloc_contiguous(512, MEGA_PAGE_SIZE).unwrap();
    assert_eq!(a, hpa(0x8020_0000));
    let b = fa.alloc_contiguous(512, MEGA_PAGE_SIZE).unwrap();
    assert_eq!(b, hpa(0x8040_0000));
    // 16 KiB alignment (an x4 page-table root).
    let c = fa.alloc_contiguous(4, 0x4000).unwrap();
    assert!(c.is_aligned(0x4000));
    assert_eq!(c, hpa(0x8000_4000));
    // Something aligned to more than the region offers.
    assert_eq!(
        fa.alloc_contiguous(1, GIGA_PAGE_SIZE),
        Err(FrameError::OutOfFrames)
    );
    assert_eq!(
        fa.alloc_contiguous(1, 1 << 63),
        Err(FrameError::OutOfFrames)
    );
    check_counts(&fa);
    for r in [a, b] {
        assert!(fa.is_allocated(r));
        assert!(fa.is_allocated(r.checked_add(511 * PAGE_SIZE).unwrap()));
    }
}

#[test]
fn contiguous_skips_reserved_and_allocated_frames() {
    let mut fa = FrameAllocator::new();
    fa.add_region(range(0x8000_0000, 8 * MEGA_PAGE_SIZE))
        .unwrap();
    // The first megapage is partly firmware, the third has one allocated-looking
    // reserved frame in its middle.
    fa.reserve(range(0x8000_0000, 0x6_0000)).unwrap();
    fa.reserve(range(0x8050_0000, 0x1000)).unwrap();
    let a = fa.alloc_contiguous(512, MEGA_PAGE_SIZE).unwrap();
    assert_eq!(a, hpa(0x8020_0000));
    let b = fa.alloc_contiguous(512, MEGA_PAGE_SIZE).unwrap();
    assert_eq!(b, hpa(0x8060_0000));
    // Unaligned request still fits in the first megapage after the firmware.
    let c = fa.alloc_contiguous(16, PAGE_SIZE).unwrap();
    assert_eq!(c, hpa(0x8006_0000));
}

#[test]
fn bad_arguments() {
    let mut fa = FrameAllocator::new();
    fa.add_region(range(0x8000_0000, 8 * PAGE_SIZE)).unwrap();
    for align in [0, 1, 2048, 3 * 4096, 4097] {
        assert_eq!(fa.alloc_contiguous(1, align), Err(FrameError::BadAlignment));
    }
    assert_eq!(
        fa.alloc_contiguous(0, PAGE_SIZE),
        Err(FrameError::ZeroFrames)
    );
    assert_eq!(
        fa.alloc_contiguous(usize::MAX, PAGE_SIZE),
        Err(FrameError::OutOfFrames)
    );
    assert_eq!(fa.free(hpa(0x8000_0000), 0), Err(FrameError::ZeroFrames));
    assert_eq!(fa.free_frames(), 8);
}

#[test]
fn free_is_checked() {
    let mut fa = FrameAllocator::new();
    fa.add_region(range(0x8000_0000, 8 * PAGE_SIZE)).unwrap();
    fa.reserve(range(0x8000_0000, 0x1000)).unwrap();
    let run = fa.alloc_contiguous(3, PAGE_SIZE).unwrap();
    assert_eq!(run, hpa(0x8000_1000));
    let before = (fa.free_frames(), fa.allocated_frames());

    assert_eq!(fa.free(hpa(0x8000_1800), 1), Err(FrameError::Misaligned));
    assert_eq!(fa.free(hpa(0x9000_0000), 1), Err(FrameError::NotInRegion));
    assert_eq!(fa.free(hpa(0x7fff_f000), 2), Err(FrameError::NotInRegion));
    // A run running off the end of the region.
    assert_eq!(fa.free(hpa(0x8000_7000), 2), Err(FrameError::NotInRegion));
    assert_eq!(fa.free(hpa(!0xfff_u64), 2), Err(FrameError::NotInRegion));
    assert_eq!(
        fa.free(hpa(0x8000_1000), usize::MAX),
        Err(FrameError::NotInRegion)
    );
    assert_eq!(fa.free(hpa(0x8000_0000), 1), Err(FrameError::Reserved));
    // Reserved frame at the start of a run that is otherwise allocated.
    assert_eq!(fa.free(hpa(0x8000_0000), 2), Err(FrameError::Reserved));
    // Never allocated.
    assert_eq!(fa.free(hpa(0x8000_5000), 1), Err(FrameError::DoubleFree));
    // Run whose tail was never allocated: nothing is freed.
    assert_eq!(fa.free(hpa(0x8000_1000), 4), Err(FrameError::DoubleFree));
    assert_eq!((fa.free_frames(), fa.allocated_frames()), before);
    assert!(fa.is_allocated(hpa(0x8000_1000)));

    // Freeing the run in pieces works, then each piece is a double free.
    fa.free(hpa(0x8000_2000), 1).unwrap();
    assert_eq!(fa.free(hpa(0x8000_2000), 1), Err(FrameError::DoubleFree));
    // A run containing the already-freed frame: nothing is freed.
    assert_eq!(fa.free(hpa(0x8000_1000), 3), Err(FrameError::DoubleFree));
    assert!(fa.is_allocated(hpa(0x8000_1000)));
    assert!(fa.is_allocated(hpa(0x8000_3000)));
    fa.free(hpa(0x8000_1000), 1).unwrap();
    fa.free(hpa(0x8000_3000), 1).unwrap();
    assert_eq!(fa.free_frames(), 7);
    assert_eq!(fa.allocated_frames(), 0);
    check_counts(&fa);
}

#[test]
fn runs_never_span_regions() {
    let mut fa = FrameAllocator::new();
    fa.add_region(range(0x8000_0000, 2 * PAGE_SIZE)).unwrap();
    fa.add_region(range(0x8000_2000, 2 * PAGE_SIZE)).unwrap();
    assert_eq!(
        fa.alloc_contiguous(3, PAGE_SIZE),
        Err(FrameError::OutOfFrames)
    );
    assert_eq!(fa.alloc_contiguous(2, PAGE_SIZE), Ok(hpa(0x8000_0000)));
    assert_eq!(fa.alloc_contiguous(2, PAGE_SIZE), Ok(hpa(0x8000_2000)));
    // Freeing across the region boundary is rejected even though both sides are allocated.
    assert_eq!(fa.free(hpa(0x8000_1000), 2), Err(FrameError::NotInRegion));
}

#[test]
fn megapage_runs_over_gigabytes_are_fast() {
    // 4 GiB of RAM with one busy frame in every 64th megapage:
    // allocate every remaining 2 MiB run. This is ~2000 searches over a
    // million-frame bitmap; a frame-by-frame scan would take far longer.
    let mut fa = FrameAllocator::new();
    fa.add_region(range(0x8000_0000, 4 * GIGA_PAGE_SIZE))
        .unwrap();
    fa.reserve(range(0x8000_0000, 0x6_0000)).unwrap();
    let megapages = (4 * GIGA_PAGE_SIZE / MEGA_PAGE_SIZE) as usize;
    let mut singles = 0;
    for m in (1..megapages).step_by(64) {
        let at = 0x8000_0000 + m as u64 * MEGA_PAGE_SIZE + 0x5000;
        // One busy frame in the middle of the megapage blocks it for 2 MiB runs.
        fa.reserve(range(at, 1)).unwrap();
        singles += 1;
    }
    let start = std::time::Instant::now();
    let mut runs = 0;
    while let Ok(a) = fa.alloc_contiguous(512, MEGA_PAGE_SIZE) {
        assert!(a.is_aligned(MEGA_PAGE_SIZE));
        runs += 1;
    }
    let elapsed = start.elapsed();
    // megapage 0 has the firmware, and `singles` more are blocked.
    assert_eq!(runs, megapages - 1 - singles);
    assert_eq!(fa.free_frames(), 512 - 0x60 + singles * 511);
    assert!(
        elapsed < std::time::Duration::from_secs(5),
        "took {elapsed:?}"
    );
    check_counts(&fa);
}

#[test]
fn single_frames_are_found_after_wraparound() {
    let mut fa = FrameAllocator::new();
    fa.add_region(range(0x8000_0000, 256 * PAGE_SIZE)).unwrap();
    let all: Vec<_> = (0..256).map(|_| fa.alloc().unwrap()).collect();
    // Free one early frame: the next-fit hint points past it, the search must wrap.
    fa.free(all[3], 1).unwrap();
    assert_eq!(fa.alloc(), Ok(all[3]));
    assert_eq!(fa.alloc(), Err(FrameError::OutOfFrames));
}

#[test]
fn display_is_meaningful() {
    assert_eq!(
        std::format!("{}", FrameError::DoubleFree),
        "frame is not allocated (double free or never allocated)"
    );
}

#[derive(Clone, Debug)]
enum Op {
    Alloc,
    AllocRun {
        frames: usize,
        align_shift: u32,
    },
    /// Free the live allocation with this index (mod count), optionally only part of it.
    Free {
        which: usize,
        part: bool,
    },
    /// Free an arbitrary frame range: must fail unless every frame is allocated.
    FreeRandom {
        frame: u64,
        frames: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Alloc),
        3 => (1usize..40, 12u32..18).prop_map(|(frames, align_shift)| Op::AllocRun { frames, align_shift }),
        4 => (any::<usize>(), any::<bool>()).prop_map(|(which, part)| Op::Free { which, part }),
        1 => (0u64..300, 1usize..4).prop_map(|(frame, frames)| Op::FreeRandom { frame, frames }),
    ]
}

const BASE: u64 = 0x8000_0000;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn interleaved_alloc_free_never_hands_a_frame_out_twice(ops in proptest::collection::vec(op(), 1..300)) {
        let mut fa = FrameAllocator::new();
        // Two regions with a gap, one reservation in each.
        fa.add_region(range(BASE, 160 * PAGE_SIZE)).unwrap();
        fa.add_region(range(BASE + 192 * PAGE_SIZE, 96 * PAGE_SIZE)).unwrap();
        fa.reserve(range(BASE + 10 * PAGE_SIZE, 5 * PAGE_SIZE)).unwrap();
        fa.reserve(range(BASE + 250 * PAGE_SIZE, PAGE_SIZE)).unwrap();
        let total = fa.total_frames();
        let reserved = fa.reserved_frames();
        prop_assert_eq!(total, 256);
        prop_assert_eq!(reserved, 6);
        let is_reserved = |f: u64| (10..15).contains(&f) || f == 250;
        let in_ram = |f: u64| f < 160 || (192..288).contains(&f);

        // Frame index -> id of the allocation holding it; live allocations.
        let mut owner: BTreeMap<u64, usize> = BTreeMap::new();
        let mut live: Vec<(u64, usize, usize)> = Vec::new();
        let mut next_id = 0;

        for op in ops {
            let free_before = fa.free_frames();
            match op {
                Op::Alloc | Op::AllocRun { .. } => {
                    let (frames, align) = match op {
                        Op::AllocRun { frames, align_shift } => (frames, 1u64 << align_shift),
                        _ => (1, PAGE_SIZE),
                    };
                    let got = if frames == 1 && align == PAGE_SIZE && matches!(op, Op::Alloc) {
                        fa.alloc()
                    } else {
                        fa.alloc_contiguous(frames, align)
                    };
                    match got {
                        Ok(a) => {
                            prop_assert!(a.is_aligned(align));
                            let f0 = (a.raw() - BASE) / PAGE_SIZE;
                            for f in f0..f0 + frames as u64 {
                                prop_assert!(in_ram(f), "frame {} outside RAM", f);
                                prop_assert!(!is_reserved(f), "reserved frame {} handed out", f);
                                prop_assert!(owner.insert(f, next_id).is_none(), "frame {} handed out twice", f);
                            }
                            // Runs stay within one region.
                            prop_assert!(f0 + frames as u64 <= 160 || f0 >= 192);
                            live.push((f0, frames, next_id));
                            next_id += 1;
                            prop_assert_eq!(fa.free_frames(), free_before - frames);
                        }
                        Err(e) => {
                            prop_assert_eq!(e, FrameError::OutOfFrames);
                            prop_assert_eq!(fa.free_frames(), free_before);
                            // Cross-check against the model: no aligned free run exists.
                            let stride = align / PAGE_SIZE;
                            let exists = (0..288u64).step_by(stride as usize).any(|s| {
                                (s..s + frames as u64).all(|f| in_ram(f) && !is_reserved(f) && !owner.contains_key(&f))
                                    && (s + frames as u64 <= 160 || s >= 192)
                            });
                            prop_assert!(!exists, "a run of {} aligned {:#x} was free", frames, align);
                        }
                    }
                }
                Op::Free { which, part } => {
                    if live.is_empty() {
                        continue;
                    }
                    let i = which % live.len();
                    let (f0, frames, id) = live[i];
                    if part && frames > 1 {
                        // Free the tail half; keep the head as a smaller live allocation.
                        let keep = frames / 2;
                        let a = hpa(BASE + (f0 + keep as u64) * PAGE_SIZE);
                        prop_assert_eq!(fa.free(a, frames - keep), Ok(()));
                        for f in f0 + keep as u64..f0 + frames as u64 {
                            prop_assert_eq!(owner.remove(&f), Some(id));
                        }
                        live[i].1 = keep;
                        prop_assert_eq!(fa.free_frames(), free_before + frames - keep);
                    } else {
                        let a = hpa(BASE + f0 * PAGE_SIZE);
                        prop_assert_eq!(fa.free(a, frames), Ok(()));
                        for f in f0..f0 + frames as u64 {
                            prop_assert_eq!(owner.remove(&f), Some(id));
                        }
                        live.swap_remove(i);
                        prop_assert_eq!(fa.free_frames(), free_before + frames);
                        // Freeing it again is caught.
                        prop_assert_eq!(fa.free(a, frames), Err(FrameError::DoubleFree));
                    }
                }
                Op::FreeRandom { frame, frames } => {
                    let a = hpa(BASE + frame * PAGE_SIZE);
                    let fs = frame..frame + frames as u64;
                    let res = fa.free(a, frames);
                    let expected = if !fs.clone().all(in_ram) || !(frame + frames as u64 <= 160 || frame >= 192) {
                        Err(FrameError::NotInRegion)
                    } else if fs.clone().any(is_reserved) {
                        Err(FrameError::Reserved)
                    } else if !fs.clone().all(|f| owner.contains_key(&f)) {
                        Err(FrameError::DoubleFree)
                    } else {
                        Ok(())
                    };
                    prop_assert_eq!(res, expected);
                    if res.is_ok() {
                        // Frames freed out from under their allocations: drop those
                        // allocations from the model (free their remaining frames too).
                        let ids: std::collections::BTreeSet<usize> = fs.clone().filter_map(|f| owner.get(&f).copied()).collect();
                        for f in fs.clone() {
                            owner.remove(&f);
                        }
                        live.retain(|&(f0, n, id)| {
                            if ids.contains(&id) {
                                for f in f0..f0 + n as u64 {
                                    if owner.remove(&f).is_some() {
                                        fa.free(hpa(BASE + f * PAGE_SIZE), 1).unwrap();
                                    }
                                }
                                false
                            } else {
                                true
                            }
                        });
                    } else {
                        prop_assert_eq!(fa.free_frames(), free_before);
                    }
                }
            }
            prop_assert_eq!(fa.allocated_frames(), owner.len());
            prop_assert_eq!(fa.free_frames() + owner.len() + reserved, total);
            prop_assert_eq!(fa.reserved_frames(), reserved);
        }
        // Everything freed: back to the start.
        for (f0, frames, _) in live {
            fa.free(hpa(BASE + f0 * PAGE_SIZE), frames).unwrap();
        }
        prop_assert_eq!(fa.free_frames(), total - reserved);
        for f in 0..288u64 {
            prop_assert!(!fa.is_allocated(hpa(BASE + f * PAGE_SIZE)));
        }
    }
}

#[test]
fn freed_frames_are_dirty_until_marked_clean() {
    let mut fa = FrameAllocator::new();
    fa.add_region(Range::new(HostPhysAddr::new(0x8000_0000), 64 * PAGE_SIZE).unwrap())
        .unwrap();
    let a = fa.alloc_contiguous(8, PAGE_SIZE).unwrap();
    assert!(!fa.is_dirty(a, 8), "never-used frames are clean");
    fa.free(a, 8).unwrap();
    assert!(fa.is_dirty(a, 8));
    assert!(fa.is_dirty(a.checked_add(7 * PAGE_SIZE).unwrap(), 1));
    assert!(!fa.is_dirty(a.checked_add(8 * PAGE_SIZE).unwrap(), 1));
    let b = fa.alloc_contiguous(8, PAGE_SIZE).unwrap();
    assert_eq!(a, b, "first fit hands the same frames back");
    assert!(fa.is_dirty(b, 8), "reallocation does not clean");
    fa.mark_clean(b, 8);
    assert!(!fa.is_dirty(b, 8));
    // Outside every region: dirty (unknown contents).
    assert!(fa.is_dirty(HostPhysAddr::new(0x1000), 1));
    assert!(
        fa.is_dirty(a, 1000),
        "a span running past the region counts as dirty"
    );
}
