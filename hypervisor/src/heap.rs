//! The hypervisor's heap: a buddy allocator over a static region in .bss.
//! Holds VM descriptors, page-table bookkeeping, run queues and the parsed DTB,
//! never guest memory (which comes from the frame allocator).

use buddy_system_allocator::LockedHeap;

/// Heap size.
pub const HEAP_SIZE: usize = 8 << 20;

#[repr(C, align(4096))]
struct HeapSpace([u8; HEAP_SIZE]);

#[unsafe(link_section = ".noinit.heap")]
static mut HEAP_SPACE: HeapSpace = HeapSpace([0; HEAP_SIZE]);

#[global_allocator]
static HEAP: LockedHeap<32> = LockedHeap::empty();

/// Hands the static region to the allocator. Called once, by the boot hart, before any allocation.
pub fn init() {
    // SAFETY: called once before any other hart runs; HEAP_SPACE is used only
    // through the allocator from here on.
    unsafe {
        let start = core::ptr::addr_of_mut!(HEAP_SPACE) as usize;
        HEAP.lock().init(start, HEAP_SIZE);
    }
}

/// Bytes currently allocated on the heap.
pub fn used() -> usize {
    HEAP.lock().stats_alloc_actual()
}
