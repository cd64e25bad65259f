//! All harts' queues behind one object, addressed by key.

use crate::balance::{balance, pair_mut};
use crate::queue::best_move;
use crate::{
    HartStats, Migration, Pick, RunQueue, SchedConfig, SchedError, State, VcpuInfo, VcpuKey,
    VcpuParams, VcpuStats,
};
use alloc::vec::Vec;

/// Every hart's [`RunQueue`], with operations addressed by [`VcpuKey`] alone
/// (the scheduler finds the queue). Guarantees each key is in exactly one queue
/// and each pinned vCPU in its hart's queue.
///
/// For a hypervisor that guards all scheduling state with one lock (and for
/// tests). A hypervisor with per-hart locks uses [`RunQueue`] and [`balance`]
/// directly; the semantics are the same. Per-key operations search the queues:
/// O(total vCPUs).
///
/// Context: every method needs the lock that guards the `Scheduler`. The per-hart
/// ones (`pick`, `slice_end`, `should_preempt`, `steal`) are called by that hart;
/// the per-key ones follow the context of the [`RunQueue`] method of the same name
/// (`account`, `block`, `wake`, `stop`, `start` by the hart the vCPU is queued on,
/// [`Scheduler::hart_of`]); the rest by any hart.
#[derive(Clone, Debug)]
pub struct Scheduler {
    queues: Vec<RunQueue>,
}

impl Scheduler {
    /// A scheduler for harts `0..harts`, every queue with `config`.
    ///
    /// # Errors
    ///
    /// [`SchedError::BadConfig`] if `harts` is 0, [`SchedError::OutOfMemory`].
    pub fn new(harts: usize, config: SchedConfig) -> Result<Self, SchedError> {
        if harts == 0 {
            return Err(SchedError::BadConfig);
        }
        let mut queues = Vec::new();
        queues
            .try_reserve_exact(harts)
            .map_err(|_| SchedError::OutOfMemory)?;
        queues.extend((0..harts).map(|h| RunQueue::new(h, config)));
        Ok(Scheduler { queues })
    }

    /// Number of harts.
    pub fn harts(&self) -> usize {
        self.queues.len()
    }

    /// All queues, indexed by hart.
    pub fn queues(&self) -> &[RunQueue] {
        &self.queues
    }

    /// One hart's queue.
    pub fn queue(&self, hart: usize) -> Option<&RunQueue> {
        self.queues.get(hart)
    }

    /// The hart whose queue holds `key`.
    pub fn hart_of(&self, key: VcpuKey) -> Option<usize> {
        self.queues.iter().position(|q| q.contains(key))
    }

    /// Adds a vCPU to its pinned hart or, unpinned, to the hart with the least
    /// total weight queued (any state), then the fewest vCPUs, then the lowest
    /// index. Returns the hart.
    ///
    /// # Errors
    ///
    /// [`SchedError::BadHart`] for a pin beyond the last hart, then as
    /// [`RunQueue::add`] (plus [`SchedError::DuplicateKey`] if any queue has it).
    pub fn add(&mut self, key: VcpuKey, params: VcpuParams) -> Result<usize, SchedError> {
        let hart = match params.pin {
            Some(p) => p,
            None => self
                .queues
                .iter()
                .min_by_key(|q| {
                    let weight: u64 = q.iter().map(|v| u64::from(v.weight)).sum();
                    (weight, q.len(), q.hart())
                })
                .map_or(0, RunQueue::hart),
        };
        self.add_to(hart, key, params).map(|()| hart)
    }

    /// Adds a vCPU to a given hart's queue.
    ///
    /// # Errors
    ///
    /// [`SchedError::BadHart`] for `hart` or a pin beyond the last hart,
    /// [`SchedError::BadWeight`], [`SchedError::Pinned`] if pinned to another hart,
    /// [`SchedError::DuplicateKey`] if any queue has the key,
    /// [`SchedError::OutOfMemory`].
    pub fn add_to(
        &mut self,
        hart: usize,
        key: VcpuKey,
        params: VcpuParams,
    ) -> Result<(), SchedError> {
        if hart >= self.queues.len() || params.pin.is_some_and(|p| p >= self.queues.len()) {
            return Err(SchedError::BadHart);
        }
        crate::check_weight(params.weight)?;
        if params.pin.is_some_and(|p| p != hart) {
            return Err(SchedError::Pinned);
        }
        if self.hart_of(key).is_some() {
            return Err(SchedError::DuplicateKey);
        }
        self.queue_mut(hart)?.add(key, params)
    }

    /// Removes a vCPU; see [`RunQueue::remove`].
    ///
    /// # Errors
    ///
    /// [`SchedError::UnknownKey`].
    pub fn remove(&mut self, key: VcpuKey) -> Result<VcpuStats, SchedError> {
        self.owner_mut(key)?.remove(key)
    }

    /// Picks what `hart` runs next; see [`RunQueue::pick`].
    ///
    /// # Errors
    ///
    /// [`SchedError::BadHart`].
    pub fn pick(&mut self, hart: usize, now: u64) -> Result<Option<Pick>, SchedError> {
        Ok(self.queue_mut(hart)?.pick(now))
    }

    /// Charges CPU time; see [`RunQueue::account`].
    ///
    /// # Errors
    ///
    /// [`SchedError::UnknownKey`].
    pub fn account(&mut self, key: VcpuKey, ran: u64) -> Result<(), SchedError> {
        self.owner_mut(key)?.account(key, ran)
    }

    /// Blocks a vCPU; see [`RunQueue::block`].
    ///
    /// # Errors
    ///
    /// [`SchedError::UnknownKey`], [`SchedError::Stopped`].
    pub fn block(&mut self, key: VcpuKey) -> Result<(), SchedError> {
        self.owner_mut(key)?.block(key)
    }

    /// Wakes a blocked vCPU; see [`RunQueue::wake`].
    ///
    /// # Errors
    ///
    /// [`SchedError::UnknownKey`].
    pub fn wake(&mut self, key: VcpuKey) -> Result<bool, SchedError> {
        self.owner_mut(key)?.wake(key)
    }

    /// Stops a vCPU; see [`RunQueue::stop`].
    ///
    /// # Errors
    ///
    /// [`SchedError::UnknownKey`].
    pub fn stop(&mut self, key: VcpuKey) -> Result<(), SchedError> {
        self.owner_mut(key)?.stop(key)
    }

    /// Starts a stopped vCPU; see [`RunQueue::start`].
    ///
    /// # Errors
    ///
    /// [`SchedError::UnknownKey`].
    pub fn start(&mut self, key: VcpuKey) -> Result<bool, SchedError> {
        self.owner_mut(key)?.start(key)
    }

    /// Changes a vCPU's weight; see [`RunQueue::set_weight`].
    ///
    /// # Errors
    ///
    /// [`SchedError::UnknownKey`], [`SchedError::BadWeight`].
    pub fn set_weight(&mut self, key: VcpuKey, weight: u32) -> Result<(), SchedError> {
        self.owner_mut(key)?.set_weight(key, weight)
    }

    /// Pins a vCPU to `pin` (moving it there first if needed) or unpins it
    /// (`None`). Returns the move, if one was made.
    ///
    /// # Errors
    ///
    /// [`SchedError::UnknownKey`], [`SchedError::BadHart`], [`SchedError::Running`]
    /// if it must move but is running; otherwise as [`RunQueue::migrate_to`].
    pub fn set_pin(
        &mut self,
        key: VcpuKey,
        pin: Option<usize>,
    ) -> Result<Option<Migration>, SchedError> {
        let from = self.hart_of(key).ok_or(SchedError::UnknownKey)?;
        let Some(to) = pin else {
            self.queue_mut(from)?.set_pin(key, None)?;
            return Ok(None);
        };
        if to >= self.queues.len() {
            return Err(SchedError::BadHart);
        }
        if from == to {
            self.queue_mut(from)?.set_pin(key, Some(to))?;
            return Ok(None);
        }
        let (src, dst) = pair_mut(&mut self.queues, from, to).ok_or(SchedError::BadHart)?;
        // Unpin first so the move is allowed; restore the old pin if it fails.
        let old = src.info(key)?.pin;
        src.set_pin(key, None)?;
        match src.migrate_to(dst, key) {
            Ok(m) => {
                dst.set_pin(key, Some(to))?;
                Ok(Some(m))
            }
            Err(e) => {
                src.set_pin(key, old)?;
                Err(e)
            }
        }
    }

    /// Moves a vCPU to hart `to`; `None` if it is there already. See
    /// [`RunQueue::migrate_to`].
    ///
    /// # Errors
    ///
    /// [`SchedError::UnknownKey`], [`SchedError::BadHart`], [`SchedError::Running`],
    /// [`SchedError::Pinned`], [`SchedError::OutOfMemory`].
    pub fn migrate(&mut self, key: VcpuKey, to: usize) -> Result<Option<Migration>, SchedError> {
        let from = self.hart_of(key).ok_or(SchedError::UnknownKey)?;
        if to >= self.queues.len() {
            return Err(SchedError::BadHart);
        }
        if from == to {
            return Ok(None);
        }
        let (src, dst) = pair_mut(&mut self.queues, from, to).ok_or(SchedError::BadHart)?;
        src.migrate_to(dst, key).map(Some)
    }

    /// Work stealing for an idle `hart`: pulls one vCPU from the other queue that
    /// offers the best move ([`RunQueue::pull_from`]); ties go to the lowest hart.
    ///
    /// # Errors
    ///
    /// [`SchedError::BadHart`].
    pub fn steal(&mut self, hart: usize) -> Result<Option<Migration>, SchedError> {
        let dst_load = self.queue(hart).ok_or(SchedError::BadHart)?.load();
        let mut best: Option<(u64, usize)> = None;
        for (i, q) in self.queues.iter().enumerate() {
            if i == hart {
                continue;
            }
            if let Some((gain, _)) = best_move(q, dst_load) {
                if best.is_none_or(|b| gain > b.0) {
                    best = Some((gain, i));
                }
            }
        }
        let Some((_, src)) = best else {
            return Ok(None);
        };
        let (dst, src) = pair_mut(&mut self.queues, hart, src).ok_or(SchedError::BadHart)?;
        Ok(dst.pull_from(src))
    }

    /// Balances all queues; see [`balance`]. Returns the moves made.
    pub fn balance(&mut self) -> Vec<Migration> {
        let mut moves = Vec::new();
        let mut queues: Vec<&mut RunQueue> = self.queues.iter_mut().collect();
        balance(&mut queues, |m| moves.push(m));
        moves
    }

    /// Whether `hart` should cut its running vCPU's slice short; see
    /// [`RunQueue::should_preempt`].
    ///
    /// # Errors
    ///
    /// [`SchedError::BadHart`].
    pub fn should_preempt(&self, hart: usize, now: u64) -> Result<bool, SchedError> {
        Ok(self
            .queue(hart)
            .ok_or(SchedError::BadHart)?
            .should_preempt(now))
    }

    /// When `hart`'s running vCPU's slice should end; see [`RunQueue::slice_end`].
    ///
    /// # Errors
    ///
    /// [`SchedError::BadHart`].
    pub fn slice_end(&self, hart: usize) -> Result<Option<u64>, SchedError> {
        Ok(self.queue(hart).ok_or(SchedError::BadHart)?.slice_end())
    }

    /// A vCPU's state.
    ///
    /// # Errors
    ///
    /// [`SchedError::UnknownKey`].
    pub fn state(&self, key: VcpuKey) -> Result<State, SchedError> {
        self.owner(key)?.state(key)
    }

    /// A vCPU's counters.
    ///
    /// # Errors
    ///
    /// [`SchedError::UnknownKey`].
    pub fn stats(&self, key: VcpuKey) -> Result<VcpuStats, SchedError> {
        self.owner(key)?.stats(key)
    }

    /// Everything about one vCPU.
    ///
    /// # Errors
    ///
    /// [`SchedError::UnknownKey`].
    pub fn info(&self, key: VcpuKey) -> Result<VcpuInfo, SchedError> {
        self.owner(key)?.info(key)
    }

    /// Every vCPU, hart by hart.
    pub fn iter(&self) -> impl Iterator<Item = VcpuInfo> + '_ {
        self.queues.iter().flat_map(RunQueue::iter)
    }

    /// A hart's counters; see [`RunQueue::hart_stats`].
    ///
    /// # Errors
    ///
    /// [`SchedError::BadHart`].
    pub fn hart_stats(&self, hart: usize, now: u64) -> Result<HartStats, SchedError> {
        Ok(self.queue(hart).ok_or(SchedError::BadHart)?.hart_stats(now))
    }

    fn queue_mut(&mut self, hart: usize) -> Result<&mut RunQueue, SchedError> {
        self.queues.get_mut(hart).ok_or(SchedError::BadHart)
    }

    fn owner(&self, key: VcpuKey) -> Result<&RunQueue, SchedError> {
        self.queues
            .iter()
            .find(|q| q.contains(key))
            .ok_or(SchedError::UnknownKey)
    }

    fn owner_mut(&mut self, key: VcpuKey) -> Result<&mut RunQueue, SchedError> {
        self.queues
            .iter_mut()
            .find(|q| q.contains(key))
            .ok_or(SchedError::UnknownKey)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DEFAULT_WEIGHT, MAX_WEIGHT};

    fn cfg() -> SchedConfig {
        SchedConfig::new(100, 10, 5).unwrap()
    }

    fn k(n: u32) -> VcpuKey {
        VcpuKey(n)
    }

    fn pinned(hart: usize) -> VcpuParams {
        VcpuParams {
            pin: Some(hart),
            ..VcpuParams::default()
        }
    }

    #[test]
    fn new_needs_a_hart() {
        assert_eq!(
            Scheduler::new(0, cfg()).map(|s| s.harts()),
            Err(SchedError::BadConfig)
        );
        let s = Scheduler::new(3, cfg()).unwrap();
        assert_eq!(s.harts(), 3);
        assert_eq!(s.queues().len(), 3);
        for (i, q) in s.queues().iter().enumerate() {
            assert_eq!(q.hart(), i);
            assert_eq!(q.config(), cfg());
        }
        assert!(s.queue(3).is_none());
    }

    #[test]
    fn add_places_on_least_loaded_or_pinned_hart() {
        let mut s = Scheduler::new(2, cfg()).unwrap();
        assert_eq!(s.add(k(0), VcpuParams::default()), Ok(0));
        assert_eq!(s.add(k(1), VcpuParams::default()), Ok(1));
        let heavy = VcpuParams {
            weight: 300,
            ..VcpuParams::default()
        };
        assert_eq!(s.add(k(2), heavy), Ok(0));
        assert_eq!(s.add(k(3), VcpuParams::default()), Ok(1));
        assert_eq!(s.add(k(4), pinned(0)), Ok(0));
        // Stopped vCPUs count too: placement is for VM creation.
        let stopped = VcpuParams {
            stopped: true,
            ..VcpuParams::default()
        };
        assert_eq!(s.add(k(5), stopped), Ok(1));
        assert_eq!(s.hart_of(k(5)), Some(1));
        assert_eq!(s.hart_of(k(6)), None);
        assert_eq!(s.iter().count(), 6);
    }

    #[test]
    fn add_errors() {
        let mut s = Scheduler::new(2, cfg()).unwrap();
        s.add(k(0), VcpuParams::default()).unwrap();
        assert_eq!(s.add(k(1), pinned(2)), Err(SchedError::BadHart));
        assert_eq!(
            s.add_to(2, k(1), VcpuParams::default()),
            Err(SchedError::BadHart)
        );
        assert_eq!(s.add_to(0, k(1), pinned(1)), Err(SchedError::Pinned));
        let bad = VcpuParams {
            weight: MAX_WEIGHT + 1,
            ..VcpuParams::default()
        };
        assert_eq!(s.add(k(1), bad), Err(SchedError::BadWeight));
        assert_eq!(
            s.add_to(1, k(0), VcpuParams::default()),
            Err(SchedError::DuplicateKey)
        );
        assert_eq!(
            s.add(k(0), VcpuParams::default()),
            Err(SchedError::DuplicateKey)
        );
        assert_eq!(s.iter().count(), 1);
        s.add_to(1, k(1), pinned(1)).unwrap();
        assert_eq!(s.hart_of(k(1)), Some(1));
    }

    #[test]
    fn per_key_operations_find_the_queue() {
        let mut s = Scheduler::new(2, cfg()).unwrap();
        s.add_to(1, k(7), VcpuParams::default()).unwrap();
        assert_eq!(s.pick(1, 0).unwrap().map(|p| p.key), Some(k(7)));
        assert_eq!(s.pick(0, 0), Ok(None));
        assert_eq!(s.state(k(7)), Ok(State::Running));
        assert_eq!(s.should_preempt(1, 0), Ok(false));
        s.account(k(7), 40).unwrap();
        assert_eq!(s.stats(k(7)).unwrap().run_ticks, 40);
        s.block(k(7)).unwrap();
        assert_eq!(s.wake(k(7)), Ok(true));
        s.stop(k(7)).unwrap();
        assert_eq!(s.start(k(7)), Ok(true));
        s.set_weight(k(7), 5).unwrap();
        let info = s.info(k(7)).unwrap();
        assert_eq!(
            (info.hart, info.weight, info.state),
            (1, 5, State::Runnable)
        );
        assert_eq!(s.remove(k(7)).unwrap().run_ticks, 40);
        assert_eq!(s.hart_of(k(7)), None);
    }

    #[test]
    fn unknown_keys_and_harts() {
        let mut s = Scheduler::new(1, cfg()).unwrap();
        let u = k(3);
        assert_eq!(s.remove(u), Err(SchedError::UnknownKey));
        assert_eq!(s.account(u, 1), Err(SchedError::UnknownKey));
        assert_eq!(s.block(u), Err(SchedError::UnknownKey));
        assert_eq!(s.wake(u), Err(SchedError::UnknownKey));
        assert_eq!(s.stop(u), Err(SchedError::UnknownKey));
        assert_eq!(s.start(u), Err(SchedError::UnknownKey));
        assert_eq!(s.set_weight(u, DEFAULT_WEIGHT), Err(SchedError::UnknownKey));
        assert_eq!(s.set_pin(u, None), Err(SchedError::UnknownKey));
        assert_eq!(s.migrate(u, 0), Err(SchedError::UnknownKey));
        assert_eq!(s.state(u), Err(SchedError::UnknownKey));
        assert_eq!(s.stats(u), Err(SchedError::UnknownKey));
        assert_eq!(s.info(u), Err(SchedError::UnknownKey));
        assert_eq!(s.pick(1, 0), Err(SchedError::BadHart));
        assert_eq!(s.steal(1), Err(SchedError::BadHart));
        assert_eq!(s.should_preempt(1, 0), Err(SchedError::BadHart));
        assert_eq!(s.slice_end(1), Err(SchedError::BadHart));
        assert_eq!(s.slice_end(0), Ok(None));
        assert_eq!(s.hart_stats(1, 0), Err(SchedError::BadHart));
        assert!(s.hart_stats(0, 0).is_ok());
    }

    #[test]
    fn set_pin_moves_and_pins() {
        let mut s = Scheduler::new(3, cfg()).unwrap();
        s.add_to(0, k(0), VcpuParams::default()).unwrap();
        let m = s.set_pin(k(0), Some(2)).unwrap();
        assert_eq!(
            m,
            Some(Migration {
                key: k(0),
                from: 0,
                to: 2
            })
        );
        assert_eq!(s.info(k(0)).unwrap().pin, Some(2));
        assert_eq!(s.hart_of(k(0)), Some(2));
        // Re-pinning a pinned vCPU elsewhere moves it again.
        assert!(s.set_pin(k(0), Some(1)).unwrap().is_some());
        assert_eq!(s.hart_of(k(0)), Some(1));
        assert_eq!(s.set_pin(k(0), Some(1)), Ok(None));
        assert_eq!(s.set_pin(k(0), Some(3)), Err(SchedError::BadHart));
        assert_eq!(s.set_pin(k(0), None), Ok(None));
        assert_eq!(s.info(k(0)).unwrap().pin, None);
        assert_eq!(s.hart_of(k(0)), Some(1), "unpinning does not move");
    }

    #[test]
    fn set_pin_refused_while_running_changes_nothing() {
        let mut s = Scheduler::new(2, cfg()).unwrap();
        s.add_to(0, k(0), pinned(0)).unwrap();
        s.pick(0, 0).unwrap();
        assert_eq!(s.set_pin(k(0), Some(1)), Err(SchedError::Running));
        assert_eq!(s.info(k(0)).unwrap().pin, Some(0));
        assert_eq!(s.hart_of(k(0)), Some(0));
    }

    #[test]
    fn migrate_checks() {
        let mut s = Scheduler::new(2, cfg()).unwrap();
        s.add_to(0, k(0), VcpuParams::default()).unwrap();
        s.add_to(0, k(1), pinned(0)).unwrap();
        assert_eq!(s.migrate(k(0), 0), Ok(None));
        assert_eq!(s.migrate(k(0), 2), Err(SchedError::BadHart));
        assert_eq!(s.migrate(k(1), 1), Err(SchedError::Pinned));
        assert_eq!(
            s.migrate(k(0), 1),
            Ok(Some(Migration {
                key: k(0),
                from: 0,
                to: 1
            }))
        );
        s.pick(1, 0).unwrap();
        assert_eq!(s.migrate(k(0), 0), Err(SchedError::Running));
        assert_eq!(s.stats(k(0)).unwrap().migrations, 1);
    }

    #[test]
    fn steal_takes_from_busiest() {
        let mut s = Scheduler::new(3, cfg()).unwrap();
        for i in 0..2 {
            s.add_to(0, k(i), VcpuParams::default()).unwrap();
        }
        for i in 2..5 {
            s.add_to(1, k(i), VcpuParams::default()).unwrap();
        }
        let m = s.steal(2).unwrap().unwrap();
        assert_eq!((m.from, m.to), (1, 2));
        // Now 200/200/100: another steal by hart 2 would not even anything out.
        assert_eq!(s.steal(2), Ok(None));
    }

    #[test]
    fn balance_spreads_and_reports_moves() {
        let mut s = Scheduler::new(2, cfg()).unwrap();
        for i in 0..4 {
            s.add_to(0, k(i), VcpuParams::default()).unwrap();
        }
        let moves = s.balance();
        assert_eq!(moves.len(), 2);
        for m in &moves {
            assert_eq!((m.from, m.to), (0, 1));
            assert_eq!(s.hart_of(m.key), Some(1));
        }
        assert_eq!(s.queue(0).unwrap().load(), s.queue(1).unwrap().load());
        assert!(s.balance().is_empty(), "balanced queues stay put");
    }
}
