//! Cross-hart fence handshakes: how one hart makes sure another has dropped
//! stale translations before it goes on.
//!
//! * [`VcpuFences`]: fence requests to one vCPU (SBI remote fences, a
//!   migration). The vCPU takes its requests on every guest entry, right
//!   after announcing it is entering; the requester, having made its request,
//!   waits while [`VcpuFences::must_wait`] — the vCPU is in the guest and has
//!   not taken the request yet. Once that is false the target either fenced
//!   or is out of the guest and fences before it enters again, which is what
//!   SBI's remote fences promise when they return.
//! * [`EpochFence`]: one request to every hart (drop every G-stage
//!   translation before a VM's frames are reused). Each hart acknowledges the
//!   newest epoch at its next loop or guest entry; the requester waits for
//!   every online hart to reach its epoch.
//!
//! Both are store-then-load handshakes on each side (request then read the
//! target's flag; announce then read the requests), so every access is
//! `SeqCst`: with Release/Acquire alone RISC-V may perform each side's load
//! before its store, and both sides would miss each other.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

/// Fence requests to one vCPU and whether it is in the guest.
#[derive(Debug, Default)]
pub struct VcpuFences {
    /// Requested fences (bits chosen by the caller), not yet taken.
    requested: AtomicU32,
    /// In the guest, or about to enter it with its requests already taken.
    in_guest: AtomicBool,
}

impl VcpuFences {
    /// No request, not in the guest.
    pub const fn new() -> VcpuFences {
        VcpuFences {
            requested: AtomicU32::new(0),
            in_guest: AtomicBool::new(false),
        }
    }

    /// Requests the fences in `bits` (any hart). Then kick the vCPU's hart
    /// and wait while [`VcpuFences::must_wait`], if the caller needs the fence
    /// done before it goes on.
    pub fn request(&self, bits: u32) {
        self.requested.fetch_or(bits, Ordering::SeqCst);
    }

    /// Whether a requester of `bits` must keep waiting: the vCPU is in the
    /// guest and has not taken the request.
    pub fn must_wait(&self, bits: u32) -> bool {
        self.in_guest.load(Ordering::SeqCst) && self.requested.load(Ordering::SeqCst) & bits != 0
    }

    /// The vCPU is about to enter the guest (its own hart): announces it, then
    /// takes the requests, which it must perform before it enters.
    pub fn enter(&self) -> u32 {
        self.in_guest.store(true, Ordering::SeqCst);
        self.requested.swap(0, Ordering::SeqCst)
    }

    /// The vCPU left the guest (or did not enter after all).
    pub fn leave(&self) {
        self.in_guest.store(false, Ordering::SeqCst);
    }

    /// Drops every request (the vCPU is reset: its state starts afresh).
    pub fn clear(&self) {
        self.requested.store(0, Ordering::SeqCst);
    }

    /// Whether the vCPU is in the guest (statistics only: it may change at once).
    pub fn in_guest(&self) -> bool {
        self.in_guest.load(Ordering::SeqCst)
    }
}

/// One fence request to every hart of `N`, by epochs.
#[derive(Debug)]
pub struct EpochFence<const N: usize> {
    epoch: AtomicU64,
    seen: [AtomicU64; N],
    online: [AtomicBool; N],
}

impl<const N: usize> Default for EpochFence<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> EpochFence<N> {
    /// No request yet, no hart online.
    pub const fn new() -> Self {
        EpochFence {
            epoch: AtomicU64::new(0),
            seen: [const { AtomicU64::new(0) }; N],
            online: [const { AtomicBool::new(false) }; N],
        }
    }

    /// Hart `hart` takes part from now on (it has run no guest before).
    pub fn set_online(&self, hart: usize) {
        if let Some(o) = self.online.get(hart) {
            o.store(true, Ordering::SeqCst);
        }
    }

    /// A new request: returns its epoch. The caller performs the fence on its
    /// own hart ([`EpochFence::check`]), kicks the others, and waits while
    /// [`EpochFence::must_wait`] for each.
    pub fn request(&self) -> u64 {
        self.epoch.fetch_add(1, Ordering::SeqCst).wrapping_add(1)
    }

    /// Hart `hart` catches up: calls `fence` once if a request is newer than
    /// the last one it performed. Cheap when there is none (one load).
    pub fn check(&self, hart: usize, fence: impl FnOnce()) {
        let epoch = self.epoch.load(Ordering::SeqCst);
        let Some(seen) = self.seen.get(hart) else {
            return;
        };
        if seen.load(Ordering::SeqCst) < epoch {
            fence();
            seen.fetch_max(epoch, Ordering::SeqCst);
        }
    }

    /// Whether the requester of `epoch` must still wait for `hart`: it is
    /// online and has not performed a fence of that epoch or later.
    pub fn must_wait(&self, hart: usize, epoch: u64) -> bool {
        match (self.online.get(hart), self.seen.get(hart)) {
            (Some(o), Some(s)) => o.load(Ordering::SeqCst) && s.load(Ordering::SeqCst) < epoch,
            _ => false,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    const FENCE: u32 = 2;

    #[test]
    fn a_vcpu_out_of_the_guest_is_not_waited_for() {
        let f = VcpuFences::new();
        f.request(FENCE);
        assert!(!f.must_wait(FENCE));
        assert_eq!(f.enter(), FENCE, "taken at the next entry");
        assert!(!f.must_wait(FENCE));
    }

    #[test]
    fn a_vcpu_in_the_guest_is_waited_for_until_it_leaves() {
        let f = VcpuFences::new();
        assert_eq!(f.enter(), 0);
        f.request(FENCE);
        assert!(f.must_wait(FENCE));
        assert!(!f.must_wait(1), "only for the bits asked");
        f.leave();
        assert!(!f.must_wait(FENCE));
        assert_eq!(f.enter(), FENCE);
        f.clear();
        assert_eq!(f.enter(), 0);
    }

    /// The real thing with threads: a target vCPU runs "in the guest" with a
    /// TLB that caches a page-table version; a requester changes the version,
    /// requests a fence, kicks, waits, then tells the target "done". Whenever
    /// the target sees "done" while still in the guest, its TLB must be at
    /// least as new as the change (the fence was complete on return). Without
    /// the wait the target sees "done" with a stale TLB within a few rounds.
    #[test]
    fn remote_fence_is_complete_when_the_wait_returns() {
        for _ in 0..4 {
            let f = Arc::new(VcpuFences::new());
            let version = Arc::new(AtomicUsize::new(0));
            let done = Arc::new(AtomicUsize::new(0));
            let kick = Arc::new(AtomicBool::new(false));
            let stop = Arc::new(AtomicBool::new(false));
            const ROUNDS: usize = 300;
            let target = {
                let (f, version, done, kick, stop) = (
                    f.clone(),
                    version.clone(),
                    done.clone(),
                    kick.clone(),
                    stop.clone(),
                );
                std::thread::spawn(move || {
                    let mut tlb = 0;
                    while !stop.load(Ordering::SeqCst) {
                        if f.enter() & FENCE != 0 {
                            tlb = version.load(Ordering::SeqCst);
                        }
                        // In the guest until kicked.
                        loop {
                            let d = done.load(Ordering::SeqCst);
                            assert!(
                                tlb >= d,
                                "in the guest after fence {d} returned, TLB still at {tlb}"
                            );
                            if kick.swap(false, Ordering::SeqCst) || stop.load(Ordering::SeqCst) {
                                break;
                            }
                            std::hint::spin_loop();
                        }
                        f.leave();
                    }
                })
            };
            for round in 1..=ROUNDS {
                version.store(round, Ordering::SeqCst);
                f.request(FENCE);
                kick.store(true, Ordering::SeqCst);
                while f.must_wait(FENCE) {
                    std::hint::spin_loop();
                }
                done.store(round, Ordering::SeqCst);
            }
            stop.store(true, Ordering::SeqCst);
            target.join().unwrap();
        }
    }

    #[test]
    fn epoch_fence_waits_for_online_harts_only() {
        let e = EpochFence::<4>::new();
        e.set_online(0);
        e.set_online(1);
        let epoch = e.request();
        let mut fenced = 0;
        e.check(0, || fenced += 1);
        e.check(0, || fenced += 1);
        assert_eq!(fenced, 1, "once per epoch");
        assert!(!e.must_wait(0, epoch));
        assert!(e.must_wait(1, epoch));
        assert!(!e.must_wait(2, epoch), "offline: never ran a guest");
        assert!(!e.must_wait(9, epoch), "no such hart");
        e.check(1, || fenced += 1);
        assert!(!e.must_wait(1, epoch));
        // Two requests before a hart catches up: one fence covers both.
        let a = e.request();
        let b = e.request();
        e.check(1, || fenced += 1);
        assert!(!e.must_wait(1, a) && !e.must_wait(1, b));
        assert_eq!(fenced, 3);
    }

    /// Threads as harts: each keeps "translations" of the current frame
    /// owner; the requester reassigns the frames after its wait returns. No
    /// hart may still hold a translation to the old owner once it is
    /// reassigned.
    #[test]
    fn epoch_fence_is_complete_when_the_wait_returns() {
        const HARTS: usize = 3;
        let e = Arc::new(EpochFence::<HARTS>::new());
        let owner = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let start = Arc::new(std::sync::Barrier::new(HARTS));
        let harts: std::vec::Vec<_> = (1..HARTS)
            .map(|h| {
                let (e, owner, stop, start) =
                    (e.clone(), owner.clone(), stop.clone(), start.clone());
                e.set_online(h);
                std::thread::spawn(move || {
                    let mut cached = owner.load(Ordering::SeqCst);
                    start.wait();
                    while !stop.load(Ordering::SeqCst) {
                        e.check(h, || cached = owner.load(Ordering::SeqCst));
                        // "In the guest" for a while, using what it cached:
                        // the frames were reassigned at most once since
                        // (the reassignment waited for this hart to fence).
                        for _ in 0..200 {
                            let now = owner.load(Ordering::SeqCst);
                            assert!(now <= cached + 1, "hart {h} cached {cached}, owner {now}");
                            std::hint::spin_loop();
                        }
                    }
                })
            })
            .collect();
        e.set_online(0);
        start.wait();
        for round in 1..=300usize {
            // Destroy: fence everyone, then hand the frames to a new owner.
            let epoch = e.request();
            e.check(0, || {});
            for h in 1..HARTS {
                while e.must_wait(h, epoch) {
                    std::hint::spin_loop();
                }
            }
            owner.store(round, Ordering::SeqCst);
        }
        stop.store(true, Ordering::SeqCst);
        for h in harts {
            h.join().unwrap();
        }
    }
}
