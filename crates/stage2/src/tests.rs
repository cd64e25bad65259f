//! Host tests (std, unwrap and panics are fine here).
#![allow(clippy::unwrap_used, clippy::panic)]

extern crate std;

use super::*;
use fv_addr::{GIGA_PAGE_SIZE, MEGA_PAGE_SIZE};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::vec;
use std::vec::Vec;

/// Where the test memory pretends to live in host-physical space.
const MEM_BASE: u64 = 0x2_0000_0000;

/// A Vec-backed [`TableMemory`] with a frame budget and fault injection. It
/// panics (failing the test) on any read/write/free of a frame that is not
/// currently allocated, so use-after-free and double free are caught.
#[derive(Clone, Debug, PartialEq, Eq)]
struct TestMem {
    words: Vec<u64>,
    /// Per frame: allocated?
    used: Vec<bool>,
    /// Further `alloc_table` calls that may succeed (`None` = unlimited).
    allocs_left: Option<usize>,
    alloc_calls: usize,
}

impl TestMem {
    fn new(frames: usize) -> Self {
        Self {
            words: vec![0; frames * ENTRIES],
            used: vec![false; frames],
            allocs_left: None,
            alloc_calls: 0,
        }
    }

    fn allocated(&self) -> usize {
        self.used.iter().filter(|u| **u).count()
    }

    fn frame_of(&self, addr: u64) -> usize {
        assert!(addr >= MEM_BASE, "address {addr:#x} below test memory");
        let f = ((addr - MEM_BASE) / PAGE_SIZE) as usize;
        assert!(f < self.used.len(), "address {addr:#x} beyond test memory");
        f
    }

    fn word_index(&self, table: HostPhysAddr, index: usize) -> usize {
        let addr = table.raw() + index as u64 * 8;
        let f = self.frame_of(addr);
        assert!(self.used[f], "access to free frame at {addr:#x}");
        ((addr - MEM_BASE) / 8) as usize
    }

    /// State that must be identical before and after a failed operation.
    fn snapshot(&self) -> (Vec<u64>, Vec<bool>) {
        let words = self
            .words
            .chunks(ENTRIES)
            .zip(&self.used)
            .flat_map(|(c, u)| if *u { c.to_vec() } else { vec![0; ENTRIES] })
            .collect();
        (words, self.used.clone())
    }
}

impl TableMemory for TestMem {
    fn alloc_table(&mut self, frames: usize, align: u64) -> Result<HostPhysAddr, Stage2Error> {
        self.alloc_calls += 1;
        if let Some(left) = &mut self.allocs_left {
            if *left == 0 {
                return Err(Stage2Error::OutOfMemory);
            }
            *left -= 1;
        }
        let stride = (align / PAGE_SIZE) as usize;
        let mut f = 0;
        while f + frames <= self.used.len() {
            if self.used[f..f + frames].iter().all(|u| !u) {
                for g in f..f + frames {
                    self.used[g] = true;
                }
                // Zeroed, as the contract says.
                self.words[f * ENTRIES..(f + frames) * ENTRIES].fill(0);
                return Ok(HostPhysAddr::new(MEM_BASE + f as u64 * PAGE_SIZE));
            }
            f += stride;
        }
        Err(Stage2Error::OutOfMemory)
    }

    fn free_table(&mut self, addr: HostPhysAddr, frames: usize) {
        let f = self.frame_of(addr.raw());
        for g in f..f + frames {
            assert!(self.used[g], "double free of frame {g}");
            self.used[g] = false;
            // Poison: a dangling walk through a freed table would see garbage.
            self.words[g * ENTRIES..(g + 1) * ENTRIES].fill(0xdead_beef_dead_beef);
        }
    }

    fn read_pte(&self, table: HostPhysAddr, index: usize) -> u64 {
        self.words[self.word_index(table, index)]
    }

    fn write_pte(&mut self, table: HostPhysAddr, index: usize, pte: u64) {
        let i = self.word_index(table, index);
        self.words[i] = pte;
    }
}

fn gpa(a: u64) -> GuestPhysAddr {
    GuestPhysAddr::new(a)
}

fn hpa(a: u64) -> HostPhysAddr {
    HostPhysAddr::new(a)
}

fn new(mode: Mode) -> GStage<TestMem> {
    GStage::new(TestMem::new(1024), mode).unwrap()
}

/// The raw entry for `g` at `level` of the tree (walking down from the root).
fn entry_at(gs: &GStage<TestMem>, g: u64, level: usize) -> u64 {
    let mut table = gs.root();
    let mut l = gs.mode().root_level();
    loop {
        let mask = if l == gs.mode().root_level() {
            ROOT_ENTRIES
        } else {
            ENTRIES
        } - 1;
        let e = gs
            .memory()
            .read_pte(table, ((g >> entry_shift(l)) as usize) & mask);
        if l == level {
            return e;
        }
        assert!(
            e & 1 == 1 && !pte::is_leaf(e),
            "no table above level {level}"
        );
        table = hpa(pte::ppn(e) << 12);
        l -= 1;
    }
}

const LEAF_RW: u64 = 0b1101_0111; // D A - U - W R V

// ---- bit positions, pinned to the privileged spec ----

#[test]
fn pte_fields_match_spec() {
    assert_eq!(PteFlags::V.bits(), 1 << 0);
    assert_eq!(PteFlags::R.bits(), 1 << 1);
    assert_eq!(PteFlags::W.bits(), 1 << 2);
    assert_eq!(PteFlags::X.bits(), 1 << 3);
    assert_eq!(PteFlags::U.bits(), 1 << 4);
    assert_eq!(PteFlags::G.bits(), 1 << 5);
    assert_eq!(PteFlags::A.bits(), 1 << 6);
    assert_eq!(PteFlags::D.bits(), 1 << 7);
    assert_eq!(pte::RSW_MASK, 0x300);
    assert_eq!(pte::PPN_SHIFT, 10);
    assert_eq!(pte::PPN_MASK, 0x003f_ffff_ffff_fc00); // bits 53..=10
    assert_eq!(pte::PBMT_MASK, 0x6000_0000_0000_0000); // bits 62..=61
    assert_eq!(pte::N, 0x8000_0000_0000_0000);
    // A PPN of all ones fills exactly bits 53..10.
    assert_eq!(pte::make(u64::MAX, 0), pte::PPN_MASK);
    assert_eq!(pte::ppn(0x0000_0000_2000_0401), 0x8_0001);
    assert_eq!(pte::table(0x8_0001), 0x2000_0401);
    // Perms share the PTE's R/W/X bits.
    assert_eq!(Perms::R.bits(), PteFlags::R.bits());
    assert_eq!(Perms::W.bits(), PteFlags::W.bits());
    assert_eq!(Perms::X.bits(), PteFlags::X.bits());
}

#[test]
fn hgatp_fields_match_spec() {
    assert_eq!(hgatp::MODE_SHIFT, 60);
    assert_eq!(hgatp::VMID_SHIFT, 44);
    assert_eq!(hgatp::VMID_MASK, 0x3fff);
    assert_eq!(hgatp::PPN_MASK, 0xfff_ffff_ffff);
    assert_eq!(hgatp::MODE_BARE, 0);
    assert_eq!(Mode::Sv39x4.hgatp_mode(), 8);
    assert_eq!(Mode::Sv48x4.hgatp_mode(), 9);
    assert_eq!(Mode::Sv57x4.hgatp_mode(), 10);
    for m in [Mode::Sv39x4, Mode::Sv48x4, Mode::Sv57x4] {
        assert_eq!(Mode::from_hgatp_mode(m.hgatp_mode()), Some(m));
    }
    assert_eq!(Mode::from_hgatp_mode(0), None);
    let v = hgatp::encode(9, 0x3fff, 0xfff_ffff_ffff);
    assert_eq!(v, 0x93ff_ffff_ffff_ffff); // bits 59..58 stay zero
    let v = hgatp::encode(8, 0x1234, 0x8_0004);
    assert_eq!(v, 0x8000_0000_0000_0000 | (0x1234 << 44) | 0x8_0004);
    assert_eq!(hgatp::mode(v), 8);
    assert_eq!(hgatp::vmid(v), 0x1234);
    assert_eq!(hgatp::ppn(v), 0x8_0004);
    // VMID beyond 14 bits does not spill into MODE.
    assert_eq!(hgatp::encode(0, 0xffff, 0), 0x3fff << 44);
}

#[test]
fn mode_geometry() {
    assert_eq!(Mode::Sv39x4.gpa_bits(), 41);
    assert_eq!(Mode::Sv48x4.gpa_bits(), 50);
    assert_eq!(Mode::Sv57x4.gpa_bits(), 59);
    assert_eq!(Mode::Sv39x4.levels(), 3);
    assert_eq!(Mode::Sv48x4.levels(), 4);
}

#[test]
fn new_allocates_aligned_16k_root_and_hgatp_names_it() {
    let gs = new(Mode::Sv48x4);
    assert!(gs.root().is_aligned(16 * 1024));
    assert_eq!(gs.table_frames(), 4);
    assert_eq!(gs.memory().allocated(), 4);
    let h = gs.hgatp(7);
    assert_eq!(h >> 60, 9);
    assert_eq!((h >> 44) & 0x3fff, 7);
    assert_eq!((h & 0xfff_ffff_ffff) << 12, gs.root().raw());
    assert_eq!(h & (0b11 << 58), 0);
}

#[test]
fn new_fails_cleanly_without_memory() {
    let mut mem = TestMem::new(16);
    mem.allocs_left = Some(0);
    assert_eq!(
        GStage::new(mem, Mode::Sv39x4).map(|_| ()),
        Err(Stage2Error::OutOfMemory)
    );
}

/// A provider that returns a misaligned root is caught, and its frames returned.
#[test]
fn misaligned_root_from_provider_is_rejected() {
    use std::cell::RefCell;
    use std::rc::Rc;
    #[derive(Debug, Default)]
    struct Bad {
        freed: Rc<RefCell<Vec<(u64, usize)>>>,
    }
    impl TableMemory for Bad {
        fn alloc_table(&mut self, _: usize, _: u64) -> Result<HostPhysAddr, Stage2Error> {
            Ok(hpa(0x8000_1000))
        }
        fn free_table(&mut self, addr: HostPhysAddr, frames: usize) {
            self.freed.borrow_mut().push((addr.raw(), frames));
        }
        fn read_pte(&self, _: HostPhysAddr, _: usize) -> u64 {
            0
        }
        fn write_pte(&mut self, _: HostPhysAddr, _: usize, _: u64) {}
    }
    let bad = Bad::default();
    let freed = bad.freed.clone();
    let r = GStage::new(bad, Mode::Sv39x4);
    assert_eq!(r.map(|_| ()).unwrap_err(), Stage2Error::BadTableMemory);
    assert_eq!(*freed.borrow(), vec![(0x8000_1000, ROOT_FRAMES)]);
}

// ---- leaf selection ----

#[test]
fn largest_leaf_is_chosen() {
    let mut gs = new(Mode::Sv39x4);
    // 1 GiB + 2 MiB + 4 KiB at a 1 GiB aligned GPA and HPA.
    let g = 0x4000_0000;
    let h = 0x1_c000_0000;
    let size = GIGA_PAGE_SIZE + MEGA_PAGE_SIZE + PAGE_SIZE;
    gs.map(gpa(g), hpa(h), size, Perms::R | Perms::W).unwrap();

    // Root entry 1: a 1 GiB leaf.
    let e = entry_at(&gs, g, 2);
    assert_eq!(e & 0xff, LEAF_RW);
    assert_eq!(pte::ppn(e), h >> 12);
    // Next GiB: a pointer (only V) to a table whose entry 0 is a 2 MiB leaf ...
    let e = entry_at(&gs, g + GIGA_PAGE_SIZE, 2);
    assert_eq!(e & 0x3ff, 1, "non-leaf must have only V set");
    let e = entry_at(&gs, g + GIGA_PAGE_SIZE, 1);
    assert_eq!(e & 0xff, LEAF_RW);
    assert_eq!(pte::ppn(e), (h + GIGA_PAGE_SIZE) >> 12);
    // ... and entry 1 a pointer to a table with one 4 KiB leaf.
    let g4 = g + GIGA_PAGE_SIZE + MEGA_PAGE_SIZE;
    assert_eq!(entry_at(&gs, g4, 1) & 0x3ff, 1);
    let e = entry_at(&gs, g4, 0);
    assert_eq!(e & 0xff, LEAF_RW);
    assert_eq!(pte::ppn(e), (h + GIGA_PAGE_SIZE + MEGA_PAGE_SIZE) >> 12);
    assert_eq!(entry_at(&gs, g4 + PAGE_SIZE, 0), 0);
    // Root + one L1 + one L0.
    assert_eq!(gs.table_frames(), 4 + 2);

    assert_eq!(
        gs.lookup(gpa(g + 0x1234_5678)).unwrap().page_size,
        GIGA_PAGE_SIZE
    );
    assert_eq!(
        gs.lookup(gpa(g + GIGA_PAGE_SIZE + 0x1_2345))
            .unwrap()
            .page_size,
        MEGA_PAGE_SIZE
    );
    assert_eq!(gs.lookup(gpa(g4 + 0x345)).unwrap().page_size, PAGE_SIZE);
}

#[test]
fn hpa_alignment_limits_leaf_size() {
    let mut gs = new(Mode::Sv39x4);
    // GPA 1 GiB aligned, HPA only 2 MiB aligned: 2 MiB leaves.
    gs.map(
        gpa(0x4000_0000),
        hpa(0x8020_0000),
        GIGA_PAGE_SIZE,
        Perms::RWX,
    )
    .unwrap();
    assert_eq!(gs.table_frames(), 5);
    for i in [0u64, 1, 511] {
        let t = gs.lookup(gpa(0x4000_0000 + i * MEGA_PAGE_SIZE)).unwrap();
        assert_eq!(t.page_size, MEGA_PAGE_SIZE);
        assert_eq!(t.hpa, hpa(0x8020_0000 + i * MEGA_PAGE_SIZE));
    }
    // GPA 2 MiB aligned, HPA only 4 KiB aligned: 4 KiB leaves.
    let mut gs = new(Mode::Sv39x4);
    gs.map(
        gpa(0x8000_0000),
        hpa(0x8000_1000),
        MEGA_PAGE_SIZE,
        Perms::RWX,
    )
    .unwrap();
    assert_eq!(gs.table_frames(), 6);
    assert_eq!(gs.lookup(gpa(0x8010_0000)).unwrap().page_size, PAGE_SIZE);
    assert_eq!(gs.translate(gpa(0x801f_f000)).unwrap().0, hpa(0x8020_0000));
}

#[test]
fn unaligned_start_uses_small_leaves_then_large() {
    let mut gs = new(Mode::Sv39x4);
    // Starts 4 KiB before a 2 MiB boundary, both addresses congruent mod 2 MiB.
    let g = 0x801f_f000;
    let h = 0x1_001f_f000;
    gs.map(gpa(g), hpa(h), PAGE_SIZE + 2 * MEGA_PAGE_SIZE, Perms::R)
        .unwrap();
    assert_eq!(gs.lookup(gpa(g)).unwrap().page_size, PAGE_SIZE);
    assert_eq!(
        gs.lookup(gpa(g + PAGE_SIZE)).unwrap().page_size,
        MEGA_PAGE_SIZE
    );
    assert_eq!(
        gs.lookup(gpa(g + PAGE_SIZE + MEGA_PAGE_SIZE))
            .unwrap()
            .page_size,
        MEGA_PAGE_SIZE
    );
    assert_eq!(gs.translate(gpa(g + 2 * MEGA_PAGE_SIZE + PAGE_SIZE)), None);
}

// ---- translate ----

#[test]
fn translate_mapped_unmapped_and_offsets() {
    let mut gs = new(Mode::Sv48x4);
    gs.map(
        gpa(0x8000_0000),
        hpa(0x9000_0000),
        0x3000,
        Perms::R | Perms::X,
    )
    .unwrap();
    assert_eq!(
        gs.translate(gpa(0x8000_0000)),
        Some((hpa(0x9000_0000), Perms::R | Perms::X))
    );
    assert_eq!(
        gs.translate(gpa(0x8000_2abc)),
        Some((hpa(0x9000_2abc), Perms::R | Perms::X))
    );
    assert_eq!(gs.translate(gpa(0x8000_3000)), None);
    assert_eq!(gs.translate(gpa(0x7fff_ffff)), None);
    assert_eq!(gs.translate(gpa(0)), None);
    assert_eq!(gs.translate(gpa(1 << 50)), None);
    assert_eq!(gs.translate(gpa(u64::MAX)), None);
    // Leaf flags: V U A D + perms, nothing else.
    let e = entry_at(&gs, 0x8000_0000, 0);
    assert_eq!(e & 0x3ff, 0b1101_1011);
}

// ---- ranges ----

#[test]
fn sv39x4_range_limit_is_41_bits() {
    let mut gs = new(Mode::Sv39x4);
    let top = 1u64 << 41;
    gs.map(gpa(top - PAGE_SIZE), hpa(0x8000_0000), PAGE_SIZE, Perms::R)
        .unwrap();
    assert_eq!(
        gs.translate(gpa(top - 1)),
        Some((hpa(0x8000_0fff), Perms::R))
    );
    assert_eq!(
        gs.map(gpa(top), hpa(0x8000_0000), PAGE_SIZE, Perms::R),
        Err(Stage2Error::OutOfRange)
    );
    assert_eq!(
        gs.map(
            gpa(top - PAGE_SIZE),
            hpa(0x8000_0000),
            2 * PAGE_SIZE,
            Perms::R
        ),
        Err(Stage2Error::OutOfRange)
    );
    // The root index uses two extra bits: the top GiB is root entry 2047.
    gs.map(
        gpa(top - 2 * GIGA_PAGE_SIZE),
        hpa(0x4000_0000),
        GIGA_PAGE_SIZE,
        Perms::R,
    )
    .unwrap();
    let root_e = gs.memory().read_pte(gs.root(), 2046);
    assert!(pte::is_leaf(root_e));
    assert_eq!(pte::ppn(root_e), 0x4000_0000 >> 12);
    assert!(gs.memory().read_pte(gs.root(), 2047) & 1 == 1);
    assert_eq!(gs.memory().read_pte(gs.root(), 2045), 0);
}

#[test]
fn sv48x4_range_limit_is_50_bits() {
    let mut gs = new(Mode::Sv48x4);
    let top = 1u64 << 50;
    gs.map(gpa(top - PAGE_SIZE), hpa(0x8000_0000), PAGE_SIZE, Perms::R)
        .unwrap();
    assert_eq!(
        gs.translate(gpa(top - 8)),
        Some((hpa(0x8000_0ff8), Perms::R))
    );
    assert_eq!(
        gs.map(gpa(top), hpa(0x8000_0000), PAGE_SIZE, Perms::R),
        Err(Stage2Error::OutOfRange)
    );
    // Root entry 2047 covers the top 512 GiB.
    assert!(gs.memory().read_pte(gs.root(), 2047) & 1 == 1);
    // A GPA beyond Sv39x4 but inside Sv48x4.
    gs.map(gpa(1 << 45), hpa(0x8000_0000), PAGE_SIZE, Perms::R)
        .unwrap();
    assert!(gs.memory().read_pte(gs.root(), 64) & 1 == 1);
}

#[test]
fn hpa_range_limit_is_56_bits() {
    let mut gs = new(Mode::Sv39x4);
    let top = 1u64 << 56;
    gs.map(gpa(0), hpa(top - PAGE_SIZE), PAGE_SIZE, Perms::R)
        .unwrap();
    assert_eq!(gs.translate(gpa(0)), Some((hpa(top - PAGE_SIZE), Perms::R)));
    assert_eq!(
        gs.map(gpa(PAGE_SIZE), hpa(top), PAGE_SIZE, Perms::R),
        Err(Stage2Error::OutOfRange)
    );
    assert_eq!(
        gs.map(gpa(PAGE_SIZE), hpa(!0xfff_u64), PAGE_SIZE, Perms::R),
        Err(Stage2Error::OutOfRange)
    );
}

#[test]
fn bad_arguments_are_rejected() {
    let mut gs = new(Mode::Sv39x4);
    let before = gs.memory().snapshot();
    for p in [Perms::empty(), Perms::W, Perms::W | Perms::X] {
        assert_eq!(
            gs.map(gpa(0), hpa(0), PAGE_SIZE, p),
            Err(Stage2Error::InvalidPerms)
        );
    }
    assert_eq!(
        gs.map(gpa(0x800), hpa(0), PAGE_SIZE, Perms::R),
        Err(Stage2Error::Misaligned)
    );
    assert_eq!(
        gs.map(gpa(0), hpa(0x800), PAGE_SIZE, Perms::R),
        Err(Stage2Error::Misaligned)
    );
    assert_eq!(
        gs.map(gpa(0), hpa(0), 0x800, Perms::R),
        Err(Stage2Error::Misaligned)
    );
    assert_eq!(
        gs.map(gpa(!0xfff_u64), hpa(0), 2 * PAGE_SIZE, Perms::R),
        Err(Stage2Error::OutOfRange)
    );
    assert_eq!(
        gs.unmap(gpa(0x800), PAGE_SIZE),
        Err(Stage2Error::Misaligned)
    );
    assert_eq!(gs.unmap(gpa(0), 0x800), Err(Stage2Error::Misaligned));
    assert_eq!(gs.map(gpa(0), hpa(0), 0, Perms::R), Ok(()));
    assert_eq!(gs.memory().snapshot(), before);
    // X-only and R-only are legal leaves.
    gs.map(gpa(0), hpa(0), PAGE_SIZE, Perms::X).unwrap();
    gs.map(gpa(PAGE_SIZE), hpa(0), PAGE_SIZE, Perms::R).unwrap();
    assert_eq!(gs.translate(gpa(0)), Some((hpa(0), Perms::X)));
}

// ---- conflicts ----

#[test]
fn already_mapped_changes_nothing() {
    let mut gs = new(Mode::Sv39x4);
    gs.map(
        gpa(0x8000_0000),
        hpa(0x1_0000_0000),
        MEGA_PAGE_SIZE,
        Perms::RWX,
    )
    .unwrap();
    gs.map(gpa(0x8040_0000), hpa(0x1_0000_0000), PAGE_SIZE, Perms::RWX)
        .unwrap();
    let before = gs.memory().snapshot();
    let frames = gs.table_frames();
    let cases = [
        // Exactly the same.
        (0x8000_0000, MEGA_PAGE_SIZE),
        // A page inside the 2 MiB leaf.
        (0x8010_0000, PAGE_SIZE),
        // A range that starts in a hole (needing new tables) and ends in the leaf.
        (0x7fe0_0000 - 8 * PAGE_SIZE, MEGA_PAGE_SIZE + 16 * PAGE_SIZE),
        // The 1 GiB around both: would be a 1 GiB leaf if it were free.
        (0x8000_0000, GIGA_PAGE_SIZE),
        // A range whose last page hits the 4 KiB leaf.
        (0x8020_0000, MEGA_PAGE_SIZE + PAGE_SIZE),
    ];
    for (g, size) in cases {
        assert_eq!(
            gs.map(gpa(g), hpa(0x2_0000_0000), size, Perms::R),
            Err(Stage2Error::AlreadyMapped),
            "{g:#x}+{size:#x}"
        );
        assert_eq!(gs.memory().snapshot(), before);
        assert_eq!(gs.table_frames(), frames);
    }
    // Right next to them is fine.
    gs.map(
        gpa(0x8020_0000),
        hpa(0x2_0000_0000),
        MEGA_PAGE_SIZE,
        Perms::R,
    )
    .unwrap();
    gs.map(gpa(0x8040_1000), hpa(0x2_0000_0000), PAGE_SIZE, Perms::R)
        .unwrap();
}

// ---- fault injection ----

/// Runs `op` with allocation budgets 0, 1, 2, ... until it succeeds; each failure
/// must be OutOfMemory and leave the memory (tables and allocation state)
/// exactly as before. Returns the number of tables the operation needed.
fn inject<F>(gs: &mut GStage<TestMem>, mut op: F) -> usize
where
    F: FnMut(&mut GStage<TestMem>) -> Result<(), Stage2Error>,
{
    let before = gs.memory().snapshot();
    let frames = gs.table_frames();
    for budget in 0.. {
        gs.mem.allocs_left = Some(budget);
        let r = op(gs);
        gs.mem.allocs_left = None;
        match r {
            Ok(()) => return budget,
            Err(e) => {
                assert_eq!(e, Stage2Error::OutOfMemory, "budget {budget}");
                assert_eq!(
                    gs.memory().snapshot(),
                    before,
                    "budget {budget}: state changed"
                );
                assert_eq!(gs.table_frames(), frames);
            }
        }
        assert!(budget < 100, "never succeeded");
    }
    unreachable!()
}

#[test]
fn map_out_of_tables_at_every_point_rolls_back() {
    let mut gs = new(Mode::Sv48x4);
    // Some existing mappings so that part of the path already exists.
    gs.map(
        gpa(0x80_0000_0000 - GIGA_PAGE_SIZE),
        hpa(0x1000_0000),
        PAGE_SIZE,
        Perms::R,
    )
    .unwrap();
    let frames = gs.table_frames();
    let allocated = gs.memory().allocated();
    // 16 MiB (4 megapages each side) straddling the 512 GiB boundary with a 4 KiB-only
    // HPA: needs tables under both root entries 0 and 1, at every level.
    let g = 0x80_0000_0000 - 4 * MEGA_PAGE_SIZE;
    let h = 0x3_0000_1000;
    let needed = inject(&mut gs, |gs| {
        gs.map(gpa(g), hpa(h), 8 * MEGA_PAGE_SIZE, Perms::RWX)
    });
    // Below root entry 0 the L2 and the L1 of GiB 511 exist already (the earlier
    // mapping): 4 new L0. Below root entry 1: L2, L1 and 4 L0.
    assert_eq!(needed, 4 + 2 + 4);
    assert_eq!(gs.table_frames(), frames + needed);
    assert_eq!(gs.memory().allocated(), allocated + needed);
    for off in (0..8 * MEGA_PAGE_SIZE).step_by(0x3_3000) {
        assert_eq!(gs.translate(gpa(g + off)), Some((hpa(h + off), Perms::RWX)));
    }
    // Everything is exercised through the provider only.
    assert_eq!(gs.memory().allocated(), gs.table_frames());
}

#[test]
fn unmap_split_out_of_tables_at_every_point_changes_nothing() {
    let mut gs = new(Mode::Sv39x4);
    gs.map(
        gpa(0x4000_0000),
        hpa(0x1_0000_0000),
        GIGA_PAGE_SIZE,
        Perms::RWX,
    )
    .unwrap();
    gs.map(
        gpa(0x8000_0000),
        hpa(0x2_0000_0000),
        GIGA_PAGE_SIZE,
        Perms::RWX,
    )
    .unwrap();
    // Punch 4 KiB holes at the far end of one gigapage and the start of the next:
    // 2 splits on each side.
    let needed = inject(&mut gs, |gs| {
        gs.unmap(gpa(0x8000_0000 - PAGE_SIZE), 2 * PAGE_SIZE)
            .map(|fence| assert!(fence))
    });
    assert_eq!(needed, 4);
    assert_eq!(gs.table_frames(), 4 + 4);
    assert_eq!(gs.translate(gpa(0x7fff_f000)), None);
    assert_eq!(gs.translate(gpa(0x8000_0000)), None);
    assert_eq!(
        gs.translate(gpa(0x7fff_e000)),
        Some((hpa(0x1_3fff_e000), Perms::RWX))
    );
    assert_eq!(
        gs.translate(gpa(0x8000_1000)),
        Some((hpa(0x2_0000_1000), Perms::RWX))
    );
}

// ---- unmap ----

#[test]
fn unmap_splits_a_megapage() {
    let mut gs = new(Mode::Sv39x4);
    let g = 0x8020_0000;
    let h = 0x1_0040_0000;
    gs.map(gpa(g), hpa(h), MEGA_PAGE_SIZE, Perms::R | Perms::W)
        .unwrap();
    assert_eq!(gs.table_frames(), 5);
    assert_eq!(gs.unmap(gpa(g + 0x10_0000), PAGE_SIZE), Ok(true));
    assert_eq!(gs.table_frames(), 6);
    for p in 0..512u64 {
        let t = gs.lookup(gpa(g + p * PAGE_SIZE + 0x10));
        if p == 256 {
            assert_eq!(t, None);
        } else {
            let t = t.unwrap();
            assert_eq!(t.hpa, hpa(h + p * PAGE_SIZE + 0x10));
            assert_eq!(t.perms, Perms::R | Perms::W);
            assert_eq!(t.page_size, PAGE_SIZE);
        }
    }
    // Split leaves keep all flags (V U A D R W).
    assert_eq!(entry_at(&gs, g, 0) & 0x3ff, LEAF_RW);
    // Unmapping the rest frees the L0 and L1 tables.
    assert_eq!(gs.unmap(gpa(g), MEGA_PAGE_SIZE), Ok(true));
    assert_eq!(gs.table_frames(), 4);
    assert_eq!(gs.memory().allocated(), 4);
    // Now it is a hole.
    assert_eq!(gs.unmap(gpa(g), MEGA_PAGE_SIZE), Ok(false));
}

#[test]
fn unmap_splits_a_gigapage() {
    let mut gs = new(Mode::Sv48x4);
    let g = 0x1_0000_0000;
    let h = 0x4_0000_0000;
    gs.map(gpa(g), hpa(h), GIGA_PAGE_SIZE, Perms::RWX).unwrap();
    let frames = gs.table_frames();
    // Unmap [g + 3M, g + 6M + 8K): the megapage at 4M goes whole, the ones at
    // 2M and 6M are split into 4 KiB pages.
    let start = g + 0x30_0000;
    let len = 0x10_0000 + MEGA_PAGE_SIZE + 2 * PAGE_SIZE;
    assert_eq!(gs.unmap(gpa(start), len), Ok(true));
    // One L1 table and two L0 tables.
    assert_eq!(gs.table_frames(), frames + 3);
    let unmapped = start..start + len;
    let mut seen_sizes = BTreeMap::new();
    for p in (0..GIGA_PAGE_SIZE).step_by(PAGE_SIZE as usize) {
        let t = gs.lookup(gpa(g + p));
        if unmapped.contains(&(g + p)) {
            assert_eq!(t, None, "{:#x}", g + p);
        } else {
            let t = t.unwrap_or_else(|| panic!("{:#x} lost", g + p));
            assert_eq!(t.hpa, hpa(h + p));
            assert_eq!(t.perms, Perms::RWX);
            *seen_sizes.entry(t.page_size).or_insert(0u64) += 1;
        }
    }
    // Two megapages became 4 KiB pages; 509 megapages remain (one is gone).
    let small = 2 * 512 - (len - MEGA_PAGE_SIZE) / PAGE_SIZE;
    assert_eq!(seen_sizes.get(&PAGE_SIZE), Some(&small));
    assert_eq!(seen_sizes.get(&MEGA_PAGE_SIZE), Some(&(509 * 512)));
    assert_eq!(seen_sizes.get(&GIGA_PAGE_SIZE), None);
    // Unmap everything: all intermediate tables go.
    assert_eq!(gs.unmap(gpa(0), 1 << 50), Ok(true));
    assert_eq!(gs.table_frames(), 4);
    assert_eq!(gs.memory().allocated(), 4);
}

#[test]
fn unmap_holes_and_beyond_range() {
    let mut gs = new(Mode::Sv39x4);
    assert_eq!(gs.unmap(gpa(0x8000_0000), GIGA_PAGE_SIZE), Ok(false));
    assert_eq!(gs.unmap(gpa(1 << 41), PAGE_SIZE), Ok(false));
    assert_eq!(gs.unmap(gpa(!0xfff_u64), !0xfff_u64), Ok(false));
    assert_eq!(gs.unmap(gpa(0), 0), Ok(false));
    gs.map(gpa(0x8000_0000), hpa(0x8000_0000), PAGE_SIZE, Perms::R)
        .unwrap();
    // A range extending beyond the guest space still unmaps the inside part.
    assert_eq!(gs.unmap(gpa(0), !0xfff_u64), Ok(true));
    assert_eq!(gs.translate(gpa(0x8000_0000)), None);
    assert_eq!(gs.table_frames(), 4);
}

#[test]
fn unmap_frees_only_tables_that_become_empty() {
    let mut gs = new(Mode::Sv48x4);
    gs.map(gpa(0x8000_0000), hpa(0x8000_0000), PAGE_SIZE, Perms::R)
        .unwrap();
    gs.map(gpa(0x8000_2000), hpa(0x8000_2000), PAGE_SIZE, Perms::R)
        .unwrap();
    assert_eq!(gs.table_frames(), 4 + 3);
    assert_eq!(gs.unmap(gpa(0x8000_0000), PAGE_SIZE), Ok(true));
    assert_eq!(gs.table_frames(), 4 + 3);
    assert!(gs.translate(gpa(0x8000_2000)).is_some());
    assert_eq!(gs.unmap(gpa(0x8000_2000), PAGE_SIZE), Ok(true));
    assert_eq!(gs.table_frames(), 4);
    assert_eq!(gs.memory().allocated(), 4);
    for i in 0..ROOT_ENTRIES {
        assert_eq!(gs.memory().read_pte(gs.root(), i), 0);
    }
}

#[test]
fn destroy_frees_everything() {
    let mut gs = new(Mode::Sv48x4);
    gs.map(
        gpa(0x8000_0000),
        hpa(0x1_0000_1000),
        3 * MEGA_PAGE_SIZE,
        Perms::RWX,
    )
    .unwrap();
    gs.map(
        gpa(0x40_0000_0000),
        hpa(0x4000_0000),
        GIGA_PAGE_SIZE,
        Perms::R,
    )
    .unwrap();
    gs.map(
        gpa((1 << 50) - PAGE_SIZE),
        hpa(0x4000_0000),
        PAGE_SIZE,
        Perms::R,
    )
    .unwrap();
    assert!(gs.table_frames() > 4 + 5);
    assert_eq!(gs.memory().allocated(), gs.table_frames());
    let mem = gs.destroy();
    assert_eq!(mem.allocated(), 0);
}

#[test]
fn error_display() {
    assert_eq!(
        std::format!("{}", Stage2Error::AlreadyMapped),
        "guest-physical range already mapped"
    );
}

// ---- tables a range needs ----

#[test]
fn tables_to_map_counts_each_level() {
    let m = MEGA_PAGE_SIZE;
    let g = GIGA_PAGE_SIZE;
    // 1 GiB of RAM at 2 GiB: one L1 table (Sv39x4); plus one L2 (Sv48x4);
    // plus one L3 (Sv57x4).
    assert_eq!(tables_to_map(Mode::Sv39x4, gpa(2 * g), g, m), Some(1));
    assert_eq!(tables_to_map(Mode::Sv48x4, gpa(2 * g), g, m), Some(2));
    assert_eq!(tables_to_map(Mode::Sv57x4, gpa(2 * g), g, m), Some(3));
    // 2 MiB more crosses into the next GiB: one more L1.
    assert_eq!(tables_to_map(Mode::Sv39x4, gpa(2 * g), g + m, m), Some(2));
    assert_eq!(tables_to_map(Mode::Sv48x4, gpa(2 * g), g + m, m), Some(3));
    // Across the 512 GiB boundary: two L1 and two L2.
    assert_eq!(
        tables_to_map(Mode::Sv48x4, gpa(512 * g - m), 2 * m, m),
        Some(4)
    );
    // 4 KiB leaves: L0 per 2 MiB touched, L1 per GiB.
    assert_eq!(
        tables_to_map(
            Mode::Sv39x4,
            gpa(2 * g - PAGE_SIZE),
            2 * PAGE_SIZE,
            PAGE_SIZE
        ),
        Some(4)
    );
    // 1 GiB leaves sit in the Sv39x4 root: no table at all.
    assert_eq!(tables_to_map(Mode::Sv39x4, gpa(2 * g), 3 * g, g), Some(0));
    assert_eq!(tables_to_map(Mode::Sv48x4, gpa(2 * g), 3 * g, g), Some(1));
    assert_eq!(tables_to_map(Mode::Sv39x4, gpa(2 * g), 0, m), Some(0));
    // Misaligned, unknown leaf size, beyond the guest-physical space.
    assert_eq!(
        tables_to_map(Mode::Sv39x4, gpa(2 * g + PAGE_SIZE), m, m),
        None
    );
    assert_eq!(
        tables_to_map(Mode::Sv39x4, gpa(2 * g), m + PAGE_SIZE, m),
        None
    );
    assert_eq!(tables_to_map(Mode::Sv39x4, gpa(2 * g), 8 * m, 4 * m), None);
    assert_eq!(
        tables_to_map(Mode::Sv39x4, gpa((1 << 41) - m), 2 * m, m),
        None
    );
    assert_eq!(
        tables_to_map(Mode::Sv39x4, gpa(u64::MAX - m + 1), m, m),
        None
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Mapping a range leaf by leaf in any order never needs more tables than
    /// `tables_to_map` says, and mapping all of it needs exactly that many.
    #[test]
    fn tables_to_map_is_exact(
        mode in prop_oneof![Just(Mode::Sv39x4), Just(Mode::Sv48x4), Just(Mode::Sv57x4)],
        boundary in prop_oneof![Just(GIGA_PAGE_SIZE), Just(512 * GIGA_PAGE_SIZE), Just(3 * GIGA_PAGE_SIZE)],
        small in any::<bool>(),
        before in 0u64..6,
        count in 1u64..12,
        seed in any::<u64>(),
    ) {
        let leaf = if small { PAGE_SIZE } else { MEGA_PAGE_SIZE };
        // `count` leaves starting `before` leaves below a GiB or 512 GiB boundary.
        let start = boundary - before * leaf;
        let Some(want) = tables_to_map(mode, gpa(start), count * leaf, leaf) else {
            return Err(TestCaseError::fail("no count"));
        };
        let mut gs = new(mode);
        // A permutation of the leaves (stride coprime to count).
        let stride = (1..=count).rev().find(|s| gcd(*s, count) == 1 && seed % 2 == 0).unwrap_or(1);
        for i in 0..count {
            let k = (i * stride + seed % count) % count;
            // HPA aligned to the leaf size only, so no larger leaf is used.
            let h = 0x4_0000_0000 + leaf + k * 2 * leaf;
            gs.map(gpa(start + k * leaf), hpa(h), leaf, Perms::RWX).unwrap();
            prop_assert!(gs.table_frames() - ROOT_FRAMES <= want);
        }
        prop_assert_eq!(gs.table_frames() - ROOT_FRAMES, want);
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

// ---- model-based property test ----

/// Pages of a small GPA window straddling a 1 GiB boundary: 4 megapages below, 4 above.
const WIN_BASE: u64 = 0x1_0000_0000 - 4 * MEGA_PAGE_SIZE;
const WIN_PAGES: u64 = 8 * 512;

#[derive(Clone, Debug)]
enum Op {
    Map {
        page: u64,
        pages: u64,
        hpage: u64,
        perms: u8,
    },
    Unmap {
        page: u64,
        pages: u64,
    },
}

fn pages_strategy() -> impl Strategy<Value = (u64, u64)> {
    prop_oneof![
        // Arbitrary small ranges.
        (0..WIN_PAGES, 1u64..40),
        // Megapage-aligned ranges of whole megapages (2 MiB leaves if HPA agrees).
        (0u64..8, 1u64..4).prop_map(|(m, n)| (m * 512, n * 512)),
        // Ranges crossing megapage boundaries.
        (0u64..8, 1u64..700).prop_map(|(m, n)| (m * 512 + 300, n)),
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (pages_strategy(), prop_oneof![(0u64..64).prop_map(|m| m * 512), 0u64..40_000], 0u8..4)
            .prop_map(|((page, pages), hpage, perms)| Op::Map { page, pages, hpage, perms }),
        2 => pages_strategy().prop_map(|(page, pages)| Op::Unmap { page, pages }),
    ]
}

fn perms_of(p: u8) -> Perms {
    [Perms::R, Perms::RWX, Perms::R | Perms::W, Perms::X][p as usize % 4]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn matches_a_page_model(ops in proptest::collection::vec(op_strategy(), 1..40), sv48 in any::<bool>()) {
        let mode = if sv48 { Mode::Sv48x4 } else { Mode::Sv39x4 };
        let mut gs = new(mode);
        // GPA page -> (HPA page, perms).
        let mut model: BTreeMap<u64, (u64, Perms)> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Map { page, pages, hpage, perms } => {
                    let pages = pages.min(WIN_PAGES - page);
                    let p = perms_of(perms);
                    let g = WIN_BASE + page * PAGE_SIZE;
                    let h = 0x1_0000_0000 + hpage * PAGE_SIZE;
                    let conflict = (page..page + pages).any(|q| model.contains_key(&q));
                    let r = gs.map(gpa(g), hpa(h), pages * PAGE_SIZE, p);
                    if conflict {
                        prop_assert_eq!(r, Err(Stage2Error::AlreadyMapped));
                    } else {
                        prop_assert_eq!(r, Ok(()));
                        for i in 0..pages {
                            model.insert(page + i, (hpage + i, p));
                        }
                    }
                }
                Op::Unmap { page, pages } => {
                    let pages = pages.min(WIN_PAGES - page);
                    let had = (page..page + pages).any(|q| model.contains_key(&q));
                    let r = gs.unmap(gpa(WIN_BASE + page * PAGE_SIZE), pages * PAGE_SIZE);
                    // A fence is needed exactly when something was mapped there.
                    prop_assert_eq!(r, Ok(had));
                    for q in page..page + pages {
                        model.remove(&q);
                    }
                }
            }
            for q in 0..WIN_PAGES {
                let want = model
                    .get(&q)
                    .map(|&(h, p)| (hpa(0x1_0000_0000 + h * PAGE_SIZE + 0x18), p));
                prop_assert_eq!(gs.translate(gpa(WIN_BASE + q * PAGE_SIZE + 0x18)), want, "page {}", q);
            }
            prop_assert_eq!(gs.memory().allocated(), gs.table_frames());
        }
        // Nothing outside the window ever got mapped.
        prop_assert_eq!(gs.translate(gpa(WIN_BASE - PAGE_SIZE)), None);
        prop_assert_eq!(gs.translate(gpa(WIN_BASE + WIN_PAGES * PAGE_SIZE)), None);
        // Unmapping the window leaves only the root.
        gs.unmap(gpa(WIN_BASE), WIN_PAGES * PAGE_SIZE).unwrap();
        prop_assert_eq!(gs.table_frames(), ROOT_FRAMES);
        let mem = gs.destroy();
        prop_assert_eq!(mem.allocated(), 0);
    }
}
