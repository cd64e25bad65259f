//! Machine memory: the frame allocator over usable RAM, and raw access to
//! physical memory for page tables and guest RAM.
//!
//! The hypervisor runs with `satp = Bare`, so a host-physical address is also
//! the host-virtual address the hypervisor dereferences. [`hva`] is the one
//! place that turns one into the other.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use fv_addr::{HostPhysAddr, HostVirtAddr, PAGE_SIZE};
use fv_frame_alloc::FrameAllocator;
use fv_stage2::{Stage2Error, TableMemory};
use spin::Mutex;

/// Every free frame of the machine.
pub static FRAMES: Mutex<Option<FrameAllocator>> = Mutex::new(None);

/// The host-virtual address of a host-physical one (identity: satp is Bare).
pub const fn hva(hpa: HostPhysAddr) -> HostVirtAddr {
    HostVirtAddr::new(hpa.raw())
}

/// Whether RAM no one has used since power-on is known to read as zero (QEMU
/// `virt` zero-fills guest RAM when the machine is created). Then frames the
/// allocator never handed out need no clearing before a guest gets them; freed
/// frames are always cleared (the allocator tracks them as dirty).
pub static FRESH_RAM_IS_ZERO: AtomicBool = AtomicBool::new(false);

/// Zicboz block size when `cbo.zero` is usable, else 0 (set once at boot).
pub static CBOZ_BLOCK: AtomicU64 = AtomicU64::new(0);

/// Zeroes `len` bytes of physical memory at `hpa`: whole cache blocks with
/// `cbo.zero` where the hart has it, 64-bit stores for the rest.
///
/// # Safety
/// The range must be RAM owned by the caller (allocated frames), not in use by
/// anything else, and not overlapping the hypervisor image.
pub unsafe fn zero(hpa: HostPhysAddr, len: u64) {
    let addr = hva(hpa).raw();
    let block = CBOZ_BLOCK.load(Ordering::Relaxed);
    if block != 0 && addr.is_multiple_of(block) && len.is_multiple_of(block) {
        // SAFETY: the caller owns the range; block alignment checked above and
        // `cbo.zero` was probed at boot.
        unsafe { fv_arch_riscv64::cache::cbo_zero(addr, len, block) };
    } else if addr.is_multiple_of(8) && len.is_multiple_of(8) {
        // SAFETY: the caller owns the range; 8-byte alignment checked above.
        unsafe { fv_arch_riscv64::cache::store_zero(addr, len) };
    } else {
        // SAFETY: the caller owns the range; identity mapping makes hva valid.
        unsafe { core::ptr::write_bytes(addr as *mut u8, 0, len as usize) };
    }
}

/// Copies `data` to physical memory at `hpa`.
///
/// # Safety
/// As for [`zero`].
pub unsafe fn copy_to(hpa: HostPhysAddr, data: &[u8]) {
    // SAFETY: the caller owns the range; `data` cannot overlap it (it is borrowed
    // from elsewhere).
    unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), hva(hpa).raw() as *mut u8, data.len()) };
}

/// Copies physical memory at `hpa` into `buf`.
///
/// # Safety
/// The range must be RAM the caller may read (frames of a VM it holds the lock of).
pub unsafe fn copy_from(hpa: HostPhysAddr, buf: &mut [u8]) {
    // SAFETY: the caller may read the range; identity mapping makes hva valid.
    unsafe {
        core::ptr::copy_nonoverlapping(hva(hpa).raw() as *const u8, buf.as_mut_ptr(), buf.len())
    };
}

/// A byte slice over physical memory that the boot package lives in.
///
/// # Safety
/// The range must be RAM that nothing writes for the lifetime `'static` (the
/// boot package's frames are reserved and never handed out).
pub unsafe fn static_slice(hpa: HostPhysAddr, len: u64) -> &'static [u8] {
    // SAFETY: per the contract above.
    unsafe { core::slice::from_raw_parts(hva(hpa).raw() as *const u8, len as usize) }
}

/// G-stage page-table memory taken from the global frame allocator.
#[derive(Debug, Default)]
pub struct FrameTables {
    frames: usize,
}

impl TableMemory for FrameTables {
    fn alloc_table(&mut self, frames: usize, align: u64) -> Result<HostPhysAddr, Stage2Error> {
        let mut guard = FRAMES.lock();
        let fa = guard.as_mut().ok_or(Stage2Error::OutOfMemory)?;
        let hpa = fa
            .alloc_contiguous(frames, align.max(PAGE_SIZE))
            .map_err(|_| Stage2Error::OutOfMemory)?;
        // SAFETY: freshly allocated frames, owned by this table.
        unsafe { zero(hpa, frames as u64 * PAGE_SIZE) };
        self.frames += frames;
        Ok(hpa)
    }

    fn free_table(&mut self, addr: HostPhysAddr, frames: usize) {
        if let Some(fa) = FRAMES.lock().as_mut() {
            if fa.free(addr, frames).is_ok() {
                self.frames = self.frames.saturating_sub(frames);
            }
        }
    }

    fn read_pte(&self, table: HostPhysAddr, index: usize) -> u64 {
        let p = (hva(table).raw() as *const u64).wrapping_add(index);
        // SAFETY: `table` is a table frame this object allocated (the stage2 crate
        // only passes roots and tables it got from alloc_table) and index < 2048
        // (a root is 4 frames), so `p` is inside memory we own.
        unsafe { core::ptr::read_volatile(p) }
    }

    fn write_pte(&mut self, table: HostPhysAddr, index: usize, pte: u64) {
        let p = (hva(table).raw() as *mut u64).wrapping_add(index);
        // SAFETY: as in read_pte. Volatile: the hardware walker reads these.
        unsafe { core::ptr::write_volatile(p, pte) };
    }
}
