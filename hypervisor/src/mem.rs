//! Machine memory: the frame allocator over usable RAM, and raw access to
//! physical memory for page tables and guest RAM.
//!
//! The hypervisor runs with `satp = Bare`, so a host-physical address is also
//! the host-virtual address the hypervisor dereferences. [`hva`] is the one
//! place that turns one into the other.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use fv_addr::{HostPhysAddr, HostVirtAddr, PAGE_SIZE};
use fv_frame_alloc::{FrameAllocator, FrameError};
use fv_vm_memory::FrameSource;
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
    let dst = hva(hpa).raw();
    let src = data.as_ptr() as u64;
    // Large aligned copies (images into guest RAM) go 64 bytes per step.
    let blocks = if dst.is_multiple_of(8) && src.is_multiple_of(8) {
        data.len() as u64 & !63
    } else {
        0
    };
    if blocks != 0 {
        // SAFETY: the caller owns [dst, dst + len); `data` cannot overlap it (it
        // is borrowed from elsewhere); both are 8-byte aligned (checked) and
        // `blocks` is a multiple of 64 no larger than the length.
        unsafe { fv_arch_riscv64::cache::copy_blocks(dst, src, blocks) };
    }
    let rest = &data[blocks as usize..];
    // SAFETY: as above, for the tail after the blocks.
    unsafe { core::ptr::copy_nonoverlapping(rest.as_ptr(), (dst + blocks) as *mut u8, rest.len()) };
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

/// VM memory (RAM chunks, G-stage table frames) from the global frame
/// allocator, reached as raw physical memory. `fv_vm_memory::VmMemory` holds
/// what it takes and gives it back on every error path and on release.
#[derive(Clone, Copy, Debug, Default)]
pub struct GlobalFrames;

impl FrameSource for GlobalFrames {
    fn alloc(&mut self, frames: usize, align: u64) -> Result<HostPhysAddr, FrameError> {
        FRAMES
            .lock()
            .as_mut()
            .ok_or(FrameError::OutOfFrames)?
            .alloc_contiguous(frames, align)
    }

    fn free(&mut self, addr: HostPhysAddr, frames: usize) -> Result<(), FrameError> {
        FRAMES
            .lock()
            .as_mut()
            .ok_or(FrameError::NotInRegion)?
            .free(addr, frames)
    }

    fn needs_clearing(&self, addr: HostPhysAddr, frames: usize) -> bool {
        !FRESH_RAM_IS_ZERO.load(Ordering::Relaxed)
            || FRAMES
                .lock()
                .as_ref()
                .is_none_or(|fa| fa.is_dirty(addr, frames))
    }

    fn free_bytes(&self) -> u64 {
        FRAMES
            .lock()
            .as_ref()
            .map_or(0, |fa| fa.free_frames() as u64 * PAGE_SIZE)
    }

    fn zero(&mut self, addr: HostPhysAddr, len: u64) {
        // SAFETY: `VmMemory` only passes frames it allocated from us and still
        // holds (a chunk not yet mapped, a table frame not yet linked), which
        // nothing else uses.
        unsafe { zero(addr, len) };
    }

    fn read_u64(&self, addr: HostPhysAddr) -> u64 {
        // SAFETY: `addr` is an aligned word of a table frame the VM holds (the
        // G-stage code only reads entries of tables it got from the reserve).
        unsafe { core::ptr::read_volatile(hva(addr).raw() as *const u64) }
    }

    fn write_u64(&mut self, addr: HostPhysAddr, value: u64) {
        // SAFETY: as in read_u64. Volatile: the hardware walker reads these.
        unsafe { core::ptr::write_volatile(hva(addr).raw() as *mut u64, value) };
    }
}
