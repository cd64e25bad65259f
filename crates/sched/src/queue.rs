//! One hart's run queue.

use crate::{
    check_weight, HartStats, Migration, Pick, SchedConfig, SchedError, State, VcpuInfo, VcpuKey,
    VcpuParams, VcpuStats, VRUNTIME_SCALE,
};
use alloc::vec::Vec;
use core::cmp::Ordering;

/// One vCPU in a queue.
#[derive(Clone, Debug)]
struct Entry {
    key: VcpuKey,
    weight: u32,
    pin: Option<usize>,
    state: State,
    vruntime: u128,
    /// `now` of the last pick (0 if never picked): among equal virtual runtimes the
    /// one that waited longest runs first, and migrations prefer cache-cold vCPUs.
    last_pick: u64,
    stats: VcpuStats,
}

/// The vCPU picked and not yet accounted.
#[derive(Clone, Copy, Debug)]
struct Current {
    key: VcpuKey,
    started: u64,
    slice: u64,
}

/// Virtual runtime for `ran` ticks at `weight`.
fn vdelta(ran: u64, weight: u32) -> u128 {
    u128::from(ran).saturating_mul(VRUNTIME_SCALE) / u128::from(weight.max(1))
}

/// Order in which runnable vCPUs are picked: smallest virtual runtime, then the
/// one picked longest ago, then the smallest key.
fn pick_order(a: &Entry, b: &Entry) -> Ordering {
    (a.vruntime, a.last_pick, a.key).cmp(&(b.vruntime, b.last_pick, b.key))
}

/// The run queue of one hart: the vCPUs that live on it, their states and
/// virtual runtimes, the vCPU it is running, and its idle accounting.
///
/// The hypervisor keeps each queue behind that hart's lock; every method's doc says
/// which hart calls it, and the read-only queries (`hart`, `len`, `load`, `state`,
/// `info`, `iter`, ...) may be called by any hart holding the lock (statistics,
/// the management shell). Operations are O(number of vCPUs in the queue); none
/// blocks, panics or allocates, except [`RunQueue::add`] and migrations.
#[derive(Clone, Debug)]
pub struct RunQueue {
    hart: usize,
    config: SchedConfig,
    entries: Vec<Entry>,
    /// Never decreases: max of itself and the smallest runnable virtual runtime.
    min_vruntime: u128,
    current: Option<Current>,
    idle_since: Option<u64>,
    stats: HartStats,
}

impl RunQueue {
    /// An empty queue for hart `hart` (the index the hypervisor uses for it;
    /// pinning refers to it).
    ///
    /// Context: setup, any hart.
    pub fn new(hart: usize, config: SchedConfig) -> Self {
        RunQueue {
            hart,
            config,
            entries: Vec::new(),
            min_vruntime: 0,
            current: None,
            idle_since: None,
            stats: HartStats::default(),
        }
    }

    /// The hart this queue belongs to.
    pub fn hart(&self) -> usize {
        self.hart
    }

    /// Timing parameters.
    pub fn config(&self) -> SchedConfig {
        self.config
    }

    /// Replaces the timing parameters (they apply from the next pick).
    ///
    /// Context: any hart holding this queue's lock.
    pub fn set_config(&mut self, config: SchedConfig) {
        self.config = config;
    }

    /// Number of vCPUs in the queue, in any state.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the queue holds no vCPU.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether `key` is in this queue.
    pub fn contains(&self, key: VcpuKey) -> bool {
        self.entries.iter().any(|e| e.key == key)
    }

    /// Number of vCPUs competing for the hart ([`State::Runnable`] or
    /// [`State::Running`]).
    pub fn nr_runnable(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| e.state.is_runnable())
            .count()
    }

    /// Weighted load: the sum of the weights of the vCPUs competing for the hart.
    /// Balancing evens this out.
    pub fn load(&self) -> u64 {
        self.entries
            .iter()
            .filter(|e| e.state.is_runnable())
            .map(|e| u64::from(e.weight))
            .sum()
    }

    /// The vCPU picked and still running, if any.
    pub fn running(&self) -> Option<VcpuKey> {
        self.current.map(|c| c.key)
    }

    /// The queue's minimum virtual runtime (never decreases).
    pub fn min_vruntime(&self) -> u128 {
        self.min_vruntime
    }

    /// Adds a vCPU. It joins at the queue's minimum virtual runtime: no credit, no
    /// debt.
    ///
    /// Context: any hart holding this queue's lock (VM creation).
    ///
    /// # Errors
    ///
    /// [`SchedError::BadWeight`], [`SchedError::Pinned`] if `params.pin` names
    /// another hart, [`SchedError::DuplicateKey`], [`SchedError::OutOfMemory`].
    pub fn add(&mut self, key: VcpuKey, params: VcpuParams) -> Result<(), SchedError> {
        let weight = check_weight(params.weight)?;
        if params.pin.is_some_and(|p| p != self.hart) {
            return Err(SchedError::Pinned);
        }
        if self.contains(key) {
            return Err(SchedError::DuplicateKey);
        }
        self.entries
            .try_reserve(1)
            .map_err(|_| SchedError::OutOfMemory)?;
        self.entries.push(Entry {
            key,
            weight,
            pin: params.pin,
            state: if params.stopped {
                State::Stopped
            } else {
                State::Runnable
            },
            vruntime: self.min_vruntime,
            last_pick: 0,
            stats: VcpuStats::default(),
        });
        Ok(())
    }

    /// Removes a vCPU (VM destroyed) and returns its final counters. Removing the
    /// running vCPU ends its run without charging it.
    ///
    /// Context: this queue's hart, or any hart holding this queue's lock while the
    /// vCPU is not running.
    ///
    /// # Errors
    ///
    /// [`SchedError::UnknownKey`].
    pub fn remove(&mut self, key: VcpuKey) -> Result<VcpuStats, SchedError> {
        let i = self.index(key)?;
        let e = self.entries.swap_remove(i);
        if self.running() == Some(key) {
            self.current = None;
        }
        self.update_min();
        Ok(e.stats)
    }

    /// Chooses what hart runs next: the runnable vCPU with the smallest virtual
    /// runtime, now [`State::Running`], with its time slice. `None` means nothing is
    /// runnable: the hart is idle from `now` (see [`RunQueue::hart_stats`]) and
    /// should try [`RunQueue::pull_from`] before sleeping.
    ///
    /// A run still open (picked, not yet ended by `account`, `block`, `stop` or
    /// `remove`) is ended first and charged `now - start` ticks.
    ///
    /// Context: this queue's hart only, `now` = its `time`.
    pub fn pick(&mut self, now: u64) -> Option<Pick> {
        if let Some(cur) = self.current {
            // The run was never ended: charge it the elapsed time.
            let _ = self.account(cur.key, now.saturating_sub(cur.started));
        }
        let mut nr: u64 = 0;
        let mut total: u64 = 0;
        for e in self.entries.iter().filter(|e| e.state == State::Runnable) {
            nr = nr.saturating_add(1);
            total = total.saturating_add(u64::from(e.weight));
        }
        let min_slice = self.config.min_slice;
        let period = self.config.latency.max(nr.saturating_mul(min_slice));
        let Some(e) = self
            .entries
            .iter_mut()
            .filter(|e| e.state == State::Runnable)
            .min_by(|a, b| pick_order(a, b))
        else {
            if self.idle_since.is_none() {
                self.idle_since = Some(now);
                self.stats.idle_periods += 1;
            }
            return None;
        };
        let share = u128::from(period) * u128::from(e.weight) / u128::from(total.max(1));
        let slice = u64::try_from(share).unwrap_or(u64::MAX).max(min_slice);
        e.state = State::Running;
        e.last_pick = now;
        e.stats.picks = e.stats.picks.saturating_add(1);
        let key = e.key;
        self.current = Some(Current {
            key,
            started: now,
            slice,
        });
        if let Some(since) = self.idle_since.take() {
            self.stats.idle_ticks = self
                .stats
                .idle_ticks
                .saturating_add(now.saturating_sub(since));
        }
        self.stats.picks = self.stats.picks.saturating_add(1);
        Some(Pick { key, slice })
    }

    /// Charges `ran` ticks of CPU time to a vCPU (its virtual runtime advances by
    /// `ran * VRUNTIME_SCALE / weight`). If it is the running vCPU, its run ends and
    /// it is runnable again. Works in any state, so the time of a run that ended
    /// with [`RunQueue::block`] or [`RunQueue::stop`] can be charged afterwards.
    ///
    /// Context: this queue's hart, at the end of a run.
    ///
    /// # Errors
    ///
    /// [`SchedError::UnknownKey`].
    pub fn account(&mut self, key: VcpuKey, ran: u64) -> Result<(), SchedError> {
        let e = self.entry_mut(key)?;
        e.vruntime = e.vruntime.saturating_add(vdelta(ran, e.weight));
        e.stats.run_ticks = e.stats.run_ticks.saturating_add(ran);
        if e.state == State::Running {
            e.state = State::Runnable;
        }
        if self.running() == Some(key) {
            self.current = None;
        }
        self.update_min();
        Ok(())
    }

    /// Blocks a vCPU (WFI with nothing pending, retentive suspend): it is not picked
    /// until [`RunQueue::wake`]. Blocking the running vCPU ends its run (charge it
    /// with [`RunQueue::account`]). Blocking a blocked vCPU does nothing.
    ///
    /// Context: this queue's hart.
    ///
    /// # Errors
    ///
    /// [`SchedError::UnknownKey`]; [`SchedError::Stopped`] if it is stopped.
    pub fn block(&mut self, key: VcpuKey) -> Result<(), SchedError> {
        let e = self.entry_mut(key)?;
        match e.state {
            State::Stopped => return Err(SchedError::Stopped),
            State::Blocked => return Ok(()),
            State::Runnable | State::Running => e.state = State::Blocked,
        }
        if self.running() == Some(key) {
            self.current = None;
        }
        self.update_min();
        Ok(())
    }

    /// Makes a blocked vCPU runnable (it has an interrupt pending). Its virtual
    /// runtime is raised to the queue's minimum, so time spent blocked earns no
    /// credit. Returns whether it was blocked; a runnable, running or stopped vCPU
    /// is left as it is (a stopped one needs [`RunQueue::start`]).
    ///
    /// Context: this queue's hart (the hypervisor notices pending interrupts of its
    /// vCPUs after a kick).
    ///
    /// # Errors
    ///
    /// [`SchedError::UnknownKey`].
    pub fn wake(&mut self, key: VcpuKey) -> Result<bool, SchedError> {
        self.make_runnable(key, State::Blocked)
    }

    /// Stops a vCPU (HSM stop, VM stopped or paused): it is not picked until
    /// [`RunQueue::start`]. Stopping the running vCPU ends its run (charge it with
    /// [`RunQueue::account`]). Stopping a stopped vCPU does nothing.
    ///
    /// Context: this queue's hart.
    ///
    /// # Errors
    ///
    /// [`SchedError::UnknownKey`].
    pub fn stop(&mut self, key: VcpuKey) -> Result<(), SchedError> {
        let e = self.entry_mut(key)?;
        e.state = State::Stopped;
        if self.running() == Some(key) {
            self.current = None;
        }
        self.update_min();
        Ok(())
    }

    /// Makes a stopped vCPU runnable (HSM start, VM resumed), at no less than the
    /// queue's minimum virtual runtime. Returns whether it was stopped; a vCPU in
    /// any other state is left as it is.
    ///
    /// Context: this queue's hart.
    ///
    /// # Errors
    ///
    /// [`SchedError::UnknownKey`].
    pub fn start(&mut self, key: VcpuKey) -> Result<bool, SchedError> {
        self.make_runnable(key, State::Stopped)
    }

    /// Changes a vCPU's weight; it applies to time charged from now on.
    ///
    /// Context: any hart holding this queue's lock.
    ///
    /// # Errors
    ///
    /// [`SchedError::UnknownKey`], [`SchedError::BadWeight`].
    pub fn set_weight(&mut self, key: VcpuKey, weight: u32) -> Result<(), SchedError> {
        let weight = check_weight(weight)?;
        self.entry_mut(key)?.weight = weight;
        Ok(())
    }

    /// Pins a vCPU to this queue's hart (`Some(self.hart())`) or unpins it
    /// (`None`). To pin it elsewhere, move it first ([`RunQueue::migrate_to`]
    /// before pinning, or [`crate::Scheduler::set_pin`]).
    ///
    /// Context: any hart holding this queue's lock.
    ///
    /// # Errors
    ///
    /// [`SchedError::UnknownKey`]; [`SchedError::Pinned`] if `pin` names another
    /// hart.
    pub fn set_pin(&mut self, key: VcpuKey, pin: Option<usize>) -> Result<(), SchedError> {
        let hart = self.hart;
        let e = self.entry_mut(key)?;
        if pin.is_some_and(|p| p != hart) {
            return Err(SchedError::Pinned);
        }
        e.pin = pin;
        Ok(())
    }

    /// When the running vCPU's slice should end, given who is runnable now; `None`
    /// when nothing is running. Without competitors, or with competitors ahead of
    /// it, that is the end of the slice [`RunQueue::pick`] gave it. When a runnable
    /// vCPU is behind it (typically one just woken), the slice ends as soon as the
    /// running vCPU, charged up to then, is more than the wake-up granularity
    /// ahead of that vCPU — but never before it has run the minimum slice.
    ///
    /// Context: this queue's hart. After waking a vCPU while another runs, re-arm
    /// the host timer for `min(slice_end, guest timer)`.
    pub fn slice_end(&self) -> Option<u64> {
        let cur = self.current?;
        let Some(running) = self.entries.iter().find(|e| e.key == cur.key) else {
            return Some(cur.started.saturating_add(cur.slice));
        };
        let behind = self
            .entries
            .iter()
            .filter(|e| e.state == State::Runnable)
            .map(|e| e.vruntime)
            .min();
        let mut ran = cur.slice;
        if let Some(v) = behind {
            // Smallest `ran` with
            //   running.vruntime + vdelta(ran) > v + vdelta(granularity),
            // i.e. floor(ran * SCALE / w) > d with d = v + vdelta(gran) - running:
            // ran = ceil((d + 1) * w / SCALE), or 0 if d < 0.
            let w = u128::from(running.weight.max(1));
            let target = v.saturating_add(vdelta(self.config.wakeup_granularity, running.weight));
            let needed = match target.checked_sub(running.vruntime) {
                None => 0,
                Some(d) => d
                    .saturating_add(1)
                    .saturating_mul(w)
                    .div_ceil(VRUNTIME_SCALE),
            };
            let needed = u64::try_from(needed).unwrap_or(u64::MAX);
            ran = needed.clamp(self.config.min_slice.min(cur.slice), cur.slice);
        }
        Some(cur.started.saturating_add(ran))
    }

    /// Whether the running vCPU's slice is over at `now` ([`RunQueue::slice_end`])
    /// and another vCPU is runnable, so the hypervisor should switch. `false` when
    /// nothing runs or nothing else is runnable.
    ///
    /// Context: this queue's hart, after a host interrupt or kick while a vCPU runs.
    pub fn should_preempt(&self, now: u64) -> bool {
        let others = self.entries.iter().any(|e| e.state == State::Runnable);
        others && self.slice_end().is_some_and(|end| now >= end)
    }

    /// A vCPU's state.
    ///
    /// # Errors
    ///
    /// [`SchedError::UnknownKey`].
    pub fn state(&self, key: VcpuKey) -> Result<State, SchedError> {
        self.entry(key).map(|e| e.state)
    }

    /// A vCPU's counters.
    ///
    /// # Errors
    ///
    /// [`SchedError::UnknownKey`].
    pub fn stats(&self, key: VcpuKey) -> Result<VcpuStats, SchedError> {
        self.entry(key).map(|e| e.stats)
    }

    /// Everything about one vCPU.
    ///
    /// # Errors
    ///
    /// [`SchedError::UnknownKey`].
    pub fn info(&self, key: VcpuKey) -> Result<VcpuInfo, SchedError> {
        self.entry(key).map(|e| self.info_of(e))
    }

    /// Every vCPU in the queue (in no particular order).
    pub fn iter(&self) -> impl Iterator<Item = VcpuInfo> + '_ {
        self.entries.iter().map(|e| self.info_of(e))
    }

    /// The hart's counters; `idle_ticks` includes an idle period under way at `now`.
    ///
    /// Context: any hart holding this queue's lock (statistics).
    pub fn hart_stats(&self, now: u64) -> HartStats {
        let mut s = self.stats;
        if let Some(since) = self.idle_since {
            s.idle_ticks = s.idle_ticks.saturating_add(now.saturating_sub(since));
        }
        s
    }

    /// Work stealing: moves one vCPU from `src` (a busier hart) to this queue, if
    /// that makes the two loads more even. The vCPU chosen is runnable, unpinned and
    /// not running; among those, the one whose move evens the loads best, then the
    /// one picked longest ago. Returns what moved, or `None`.
    ///
    /// Context: this queue's hart when [`RunQueue::pick`] found nothing, holding both
    /// queues' locks (taken in hart order).
    pub fn pull_from(&mut self, src: &mut RunQueue) -> Option<Migration> {
        let key = best_move(src, self.load())?.1;
        src.migrate_to(self, key).ok()
    }

    /// Moves a vCPU from this queue to `dst`, keeping its lag behind this queue's
    /// minimum virtual runtime (a blocked vCPU's banked credit is dropped). Any
    /// state but running moves.
    ///
    /// Context: any hart holding both queues' locks (taken in hart order).
    ///
    /// # Errors
    ///
    /// [`SchedError::UnknownKey`] if it is not in this queue,
    /// [`SchedError::Running`], [`SchedError::Pinned`] if it is pinned to a hart
    /// other than `dst`'s, [`SchedError::DuplicateKey`] if `dst` already holds the
    /// key, [`SchedError::OutOfMemory`].
    pub fn migrate_to(
        &mut self,
        dst: &mut RunQueue,
        key: VcpuKey,
    ) -> Result<Migration, SchedError> {
        let i = self.index(key)?;
        let Some(e) = self.entries.get(i) else {
            return Err(SchedError::UnknownKey);
        };
        if e.state == State::Running {
            return Err(SchedError::Running);
        }
        if e.pin.is_some_and(|p| p != dst.hart) {
            return Err(SchedError::Pinned);
        }
        if dst.contains(key) {
            return Err(SchedError::DuplicateKey);
        }
        dst.entries
            .try_reserve(1)
            .map_err(|_| SchedError::OutOfMemory)?;
        let mut e = self.entries.swap_remove(i);
        let lag = e.vruntime.saturating_sub(self.min_vruntime);
        e.vruntime = dst.min_vruntime.saturating_add(lag);
        e.stats.migrations = e.stats.migrations.saturating_add(1);
        dst.entries.push(e);
        self.update_min();
        self.stats.migrations_out = self.stats.migrations_out.saturating_add(1);
        dst.stats.migrations_in = dst.stats.migrations_in.saturating_add(1);
        Ok(Migration {
            key,
            from: self.hart,
            to: dst.hart,
        })
    }

    /// Runnable, unpinned, not running vCPUs: the ones balancing may move, as
    /// `(key, weight, last_pick)`.
    pub(crate) fn movable(&self) -> impl Iterator<Item = (VcpuKey, u64, u64)> + '_ {
        self.entries
            .iter()
            .filter(|e| e.state == State::Runnable && e.pin.is_none())
            .map(|e| (e.key, u64::from(e.weight), e.last_pick))
    }

    fn make_runnable(&mut self, key: VcpuKey, from: State) -> Result<bool, SchedError> {
        let min = self.min_vruntime;
        let e = self.entry_mut(key)?;
        if e.state != from {
            return Ok(false);
        }
        e.state = State::Runnable;
        e.vruntime = e.vruntime.max(min);
        e.stats.wakeups = e.stats.wakeups.saturating_add(1);
        self.update_min();
        Ok(true)
    }

    fn update_min(&mut self) {
        let least = self
            .entries
            .iter()
            .filter(|e| e.state.is_runnable())
            .map(|e| e.vruntime)
            .min();
        if let Some(v) = least {
            self.min_vruntime = self.min_vruntime.max(v);
        }
    }

    fn index(&self, key: VcpuKey) -> Result<usize, SchedError> {
        self.entries
            .iter()
            .position(|e| e.key == key)
            .ok_or(SchedError::UnknownKey)
    }

    fn entry(&self, key: VcpuKey) -> Result<&Entry, SchedError> {
        self.entries
            .iter()
            .find(|e| e.key == key)
            .ok_or(SchedError::UnknownKey)
    }

    fn entry_mut(&mut self, key: VcpuKey) -> Result<&mut Entry, SchedError> {
        self.entries
            .iter_mut()
            .find(|e| e.key == key)
            .ok_or(SchedError::UnknownKey)
    }

    fn info_of(&self, e: &Entry) -> VcpuInfo {
        VcpuInfo {
            key: e.key,
            hart: self.hart,
            weight: e.weight,
            pin: e.pin,
            state: e.state,
            vruntime: e.vruntime,
            stats: e.stats,
        }
    }
}

/// The best vCPU to move from `src` to a queue of load `dst_load`: `(gain, key)`, where the gain `w * (src_load - dst_load - w)` is
/// half the drop in the sum of squared loads. Only strictly improving moves
/// (`dst_load + w < src_load`) qualify; ties go to the vCPU picked longest ago,
/// then the smallest key.
pub(crate) fn best_move(src: &RunQueue, dst_load: u64) -> Option<(u64, VcpuKey)> {
    let src_load = src.load();
    src.movable()
        .filter(|&(_, w, _)| dst_load.saturating_add(w) < src_load)
        .map(|(key, w, last)| (w.saturating_mul(src_load - dst_load - w), last, key))
        .min_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)))
        .map(|(gain, _, key)| (gain, key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DEFAULT_WEIGHT, MAX_WEIGHT};
    use std::vec::Vec;

    fn cfg() -> SchedConfig {
        SchedConfig::new(100, 10, 5).unwrap()
    }

    fn k(n: u32) -> VcpuKey {
        VcpuKey(n)
    }

    fn weighted(weight: u32) -> VcpuParams {
        VcpuParams {
            weight,
            ..VcpuParams::default()
        }
    }

    /// A queue on hart 0 with runnable vCPUs of the given weights, keys 0, 1, ...
    fn queue(weights: &[u32]) -> RunQueue {
        let mut q = RunQueue::new(0, cfg());
        for (i, &w) in weights.iter().enumerate() {
            q.add(k(i as u32), weighted(w)).unwrap();
        }
        q
    }

    fn vr(q: &RunQueue, key: u32) -> u128 {
        q.info(k(key)).unwrap().vruntime
    }

    #[test]
    fn new_queue_is_empty() {
        let q = RunQueue::new(3, cfg());
        assert_eq!(q.hart(), 3);
        assert_eq!(q.config(), cfg());
        assert!(q.is_empty());
        assert_eq!(q.len(), 0);
        assert_eq!(q.nr_runnable(), 0);
        assert_eq!(q.load(), 0);
        assert_eq!(q.running(), None);
        assert_eq!(q.min_vruntime(), 0);
        assert_eq!(q.iter().count(), 0);
    }

    #[test]
    fn set_config_applies_to_next_pick() {
        let mut q = queue(&[100]);
        let c = SchedConfig::new(40, 4, 0).unwrap();
        q.set_config(c);
        assert_eq!(q.config(), c);
        assert_eq!(q.pick(0).unwrap().slice, 40);
    }

    #[test]
    fn add_states_and_errors() {
        let mut q = RunQueue::new(1, cfg());
        q.add(k(1), VcpuParams::default()).unwrap();
        q.add(
            k(2),
            VcpuParams {
                stopped: true,
                pin: Some(1),
                weight: 7,
            },
        )
        .unwrap();
        let a = q.info(k(1)).unwrap();
        assert_eq!(
            (a.state, a.weight, a.pin, a.hart),
            (State::Runnable, DEFAULT_WEIGHT, None, 1)
        );
        let b = q.info(k(2)).unwrap();
        assert_eq!((b.state, b.weight, b.pin), (State::Stopped, 7, Some(1)));
        assert_eq!(q.len(), 2);
        assert_eq!(q.nr_runnable(), 1);
        assert_eq!(q.load(), u64::from(DEFAULT_WEIGHT));
        assert!(q.contains(k(2)) && !q.contains(k(3)));

        assert_eq!(
            q.add(k(1), VcpuParams::default()),
            Err(SchedError::DuplicateKey)
        );
        assert_eq!(q.add(k(3), weighted(0)), Err(SchedError::BadWeight));
        assert_eq!(
            q.add(k(3), weighted(MAX_WEIGHT + 1)),
            Err(SchedError::BadWeight)
        );
        let elsewhere = VcpuParams {
            pin: Some(0),
            ..VcpuParams::default()
        };
        assert_eq!(q.add(k(3), elsewhere), Err(SchedError::Pinned));
        assert_eq!(q.len(), 2, "refused adds change nothing");
    }

    #[test]
    fn add_joins_at_min_vruntime() {
        let mut q = queue(&[100, 100]);
        q.account(k(0), 50).unwrap();
        q.account(k(1), 80).unwrap();
        let min = q.min_vruntime();
        assert_eq!(min, vdelta(50, 100));
        q.add(k(2), VcpuParams::default()).unwrap();
        assert_eq!(vr(&q, 2), min);
    }

    #[test]
    fn remove_returns_stats_and_raises_min() {
        let mut q = queue(&[100, 100]);
        q.account(k(1), 30).unwrap();
        q.account(k(0), 10).unwrap();
        assert_eq!(q.min_vruntime(), vdelta(10, 100));
        let s = q.remove(k(0)).unwrap();
        assert_eq!(s.run_ticks, 10);
        assert_eq!(q.min_vruntime(), vdelta(30, 100));
        assert_eq!(q.remove(k(0)), Err(SchedError::UnknownKey));
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn remove_running_ends_run() {
        let mut q = queue(&[100]);
        q.pick(0).unwrap();
        q.remove(k(0)).unwrap();
        assert_eq!(q.running(), None);
        assert_eq!(q.pick(5), None);
    }

    #[test]
    fn pick_smallest_vruntime() {
        let mut q = queue(&[100, 100, 100]);
        q.account(k(0), 30).unwrap();
        q.account(k(1), 10).unwrap();
        q.account(k(2), 20).unwrap();
        let p = q.pick(0).unwrap();
        assert_eq!(p.key, k(1));
        assert_eq!(q.running(), Some(k(1)));
        assert_eq!(q.state(k(1)), Ok(State::Running));
        assert_eq!(q.nr_runnable(), 3, "running counts as competing");
        assert_eq!(q.stats(k(1)).unwrap().picks, 1);
    }

    #[test]
    fn pick_ties_go_to_longest_waiting_then_smallest_key() {
        let mut q = queue(&[100, 100, 100]);
        // All at vruntime 0, never picked: smallest key first.
        assert_eq!(q.pick(10).unwrap().key, k(0));
        q.account(k(0), 0).unwrap();
        // Still all equal; 0 was picked at 10, 1 and 2 never.
        assert_eq!(q.pick(20).unwrap().key, k(1));
        q.account(k(1), 0).unwrap();
        assert_eq!(q.pick(30).unwrap().key, k(2));
        q.account(k(2), 0).unwrap();
        assert_eq!(q.pick(40).unwrap().key, k(0));
    }

    #[test]
    fn pick_never_chooses_blocked_or_stopped() {
        let mut q = queue(&[100, 100, 100]);
        q.block(k(0)).unwrap();
        q.stop(k(1)).unwrap();
        for t in 0..5 {
            assert_eq!(q.pick(t * 100).unwrap().key, k(2));
            q.account(k(2), 100).unwrap();
        }
        q.block(k(2)).unwrap();
        assert_eq!(q.pick(600), None);
    }

    #[test]
    fn slices_split_latency_by_weight() {
        let mut q = queue(&[100]);
        assert_eq!(q.pick(0).unwrap().slice, 100, "alone: the whole latency");

        let mut q = queue(&[100, 300]);
        let p = q.pick(0).unwrap();
        assert_eq!((p.key, p.slice), (k(0), 25));
        q.account(k(0), 25).unwrap();
        let p = q.pick(25).unwrap();
        assert_eq!((p.key, p.slice), (k(1), 75));
    }

    #[test]
    fn slices_never_below_min_slice() {
        // Weight 1 against 1000: its share of 100 ticks is 0; it gets min_slice.
        let mut q = queue(&[1, 1000]);
        let p = q.pick(0).unwrap();
        assert_eq!(p.key, k(0));
        assert_eq!(p.slice, 10);
    }

    #[test]
    fn period_stretches_with_many_runnable() {
        // 20 runnable * min_slice 10 = 200 > latency 100: equal slices of 10.
        let mut q = queue(&[100; 20]);
        assert_eq!(q.pick(0).unwrap().slice, 10);
        // Weights 1:19 of the 20 vCPUs' total: period 200 * 1900/3800... check one heavy.
        let mut weights = [100u32; 20];
        weights[0] = 1000;
        let mut q = queue(&weights);
        // Total 2900; vCPU 0 gets 200 * 1000 / 2900 = 68.
        assert_eq!(q.pick(0).unwrap().slice, 68);
    }

    #[test]
    fn pick_ends_an_open_run_charging_elapsed_time() {
        let mut q = queue(&[100, 100]);
        assert_eq!(q.pick(1000).unwrap().key, k(0));
        // No account: the next pick charges 0 the 40 ticks since 1000.
        assert_eq!(q.pick(1040).unwrap().key, k(1));
        let s = q.stats(k(0)).unwrap();
        assert_eq!(s.run_ticks, 40);
        assert_eq!(q.state(k(0)), Ok(State::Runnable));
        assert_eq!(vr(&q, 0), vdelta(40, 100));
        // A clock that went backwards charges nothing rather than panicking.
        assert_eq!(q.pick(0).unwrap().key, k(1));
        assert_eq!(q.stats(k(1)).unwrap().run_ticks, 0);
    }

    #[test]
    fn account_advances_vruntime_by_weight() {
        let mut q = queue(&[100, 200, 1]);
        for i in 0..3 {
            q.account(k(i), 1000).unwrap();
        }
        assert_eq!(vr(&q, 0), 1000 * VRUNTIME_SCALE / 100);
        assert_eq!(vr(&q, 1), 1000 * VRUNTIME_SCALE / 200);
        assert_eq!(vr(&q, 2), 1000 * VRUNTIME_SCALE);
        assert_eq!(q.stats(k(2)).unwrap().run_ticks, 1000);
        assert_eq!(q.account(k(9), 1), Err(SchedError::UnknownKey));
    }

    #[test]
    fn account_ends_the_run() {
        let mut q = queue(&[100]);
        let p = q.pick(0).unwrap();
        q.account(p.key, 7).unwrap();
        assert_eq!(q.running(), None);
        assert_eq!(q.state(p.key), Ok(State::Runnable));
    }

    #[test]
    fn account_keeps_blocked_and_stopped_states() {
        let mut q = queue(&[100, 100]);
        q.pick(0).unwrap();
        q.block(k(0)).unwrap();
        q.account(k(0), 9).unwrap();
        assert_eq!(q.state(k(0)), Ok(State::Blocked));
        assert_eq!(q.stats(k(0)).unwrap().run_ticks, 9);
        q.stop(k(1)).unwrap();
        q.account(k(1), 3).unwrap();
        assert_eq!(q.state(k(1)), Ok(State::Stopped));
    }

    #[test]
    fn account_saturates() {
        let mut q = queue(&[1]);
        for _ in 0..4 {
            q.account(k(0), u64::MAX).unwrap();
        }
        assert_eq!(q.stats(k(0)).unwrap().run_ticks, u64::MAX);
        assert!(vr(&q, 0) >= u128::from(u64::MAX) * VRUNTIME_SCALE);
        assert!(q.pick(0).is_some());
    }

    #[test]
    fn block_transitions_and_errors() {
        let mut q = queue(&[100, 100, 100]);
        q.pick(0).unwrap();
        q.block(k(0)).unwrap();
        assert_eq!(q.state(k(0)), Ok(State::Blocked));
        assert_eq!(q.running(), None, "blocking the running vCPU ends its run");
        q.block(k(1)).unwrap();
        assert_eq!(q.state(k(1)), Ok(State::Blocked));
        q.block(k(1)).unwrap();
        assert_eq!(
            q.state(k(1)),
            Ok(State::Blocked),
            "blocking twice is harmless"
        );
        q.stop(k(2)).unwrap();
        assert_eq!(q.block(k(2)), Err(SchedError::Stopped));
        assert_eq!(q.state(k(2)), Ok(State::Stopped));
        assert_eq!(q.block(k(7)), Err(SchedError::UnknownKey));
        assert_eq!(q.load(), 0);
    }

    #[test]
    fn wake_clamps_to_min_vruntime() {
        let mut q = queue(&[100, 100]);
        q.block(k(0)).unwrap();
        // vCPU 1 runs alone for a long time.
        for t in 0..50 {
            q.pick(t * 100).unwrap();
            q.account(k(1), 100).unwrap();
        }
        assert_eq!(vr(&q, 0), 0);
        assert_eq!(q.wake(k(0)), Ok(true));
        assert_eq!(q.state(k(0)), Ok(State::Runnable));
        assert_eq!(vr(&q, 0), q.min_vruntime());
        assert_eq!(q.min_vruntime(), vr(&q, 1));
        assert_eq!(q.stats(k(0)).unwrap().wakeups, 1);
    }

    #[test]
    fn wake_keeps_debt() {
        let mut q = queue(&[100, 100]);
        q.account(k(0), 500).unwrap();
        q.block(k(0)).unwrap();
        q.account(k(1), 100).unwrap();
        assert_eq!(q.wake(k(0)), Ok(true));
        assert_eq!(
            vr(&q, 0),
            vdelta(500, 100),
            "a vCPU ahead keeps its vruntime"
        );
    }

    #[test]
    fn wake_other_states() {
        let mut q = queue(&[100, 100]);
        assert_eq!(q.wake(k(0)), Ok(false), "runnable");
        q.pick(0).unwrap();
        assert_eq!(q.wake(k(0)), Ok(false), "running");
        assert_eq!(q.state(k(0)), Ok(State::Running));
        q.stop(k(1)).unwrap();
        assert_eq!(q.wake(k(1)), Ok(false), "stopped needs start");
        assert_eq!(q.state(k(1)), Ok(State::Stopped));
        assert_eq!(q.wake(k(5)), Err(SchedError::UnknownKey));
        assert_eq!(q.stats(k(0)).unwrap().wakeups, 0);
    }

    #[test]
    fn stop_and_start() {
        let mut q = queue(&[100, 100]);
        q.pick(0).unwrap();
        q.stop(k(0)).unwrap();
        assert_eq!(q.running(), None);
        assert_eq!(q.state(k(0)), Ok(State::Stopped));
        q.stop(k(0)).unwrap();
        q.block(k(1)).unwrap();
        q.stop(k(1)).unwrap();
        assert_eq!(q.state(k(1)), Ok(State::Stopped), "stop overrides blocked");
        assert_eq!(q.stop(k(4)), Err(SchedError::UnknownKey));

        assert_eq!(q.start(k(0)), Ok(true));
        assert_eq!(q.state(k(0)), Ok(State::Runnable));
        assert_eq!(q.start(k(0)), Ok(false));
        assert_eq!(q.start(k(4)), Err(SchedError::UnknownKey));
        assert_eq!(q.stats(k(0)).unwrap().wakeups, 1);
    }

    #[test]
    fn start_clamps_to_min_vruntime() {
        let mut q = queue(&[100]);
        q.add(
            k(1),
            VcpuParams {
                stopped: true,
                ..VcpuParams::default()
            },
        )
        .unwrap();
        q.account(k(0), 1000).unwrap();
        q.start(k(1)).unwrap();
        assert_eq!(vr(&q, 1), vdelta(1000, 100));
    }

    #[test]
    fn set_weight_changes_future_charges() {
        let mut q = queue(&[100]);
        q.account(k(0), 100).unwrap();
        q.set_weight(k(0), 400).unwrap();
        q.account(k(0), 100).unwrap();
        assert_eq!(vr(&q, 0), vdelta(100, 100) + vdelta(100, 400));
        assert_eq!(q.info(k(0)).unwrap().weight, 400);
        assert_eq!(q.load(), 400);
        assert_eq!(q.set_weight(k(0), 0), Err(SchedError::BadWeight));
        assert_eq!(
            q.set_weight(k(0), MAX_WEIGHT + 1),
            Err(SchedError::BadWeight)
        );
        assert_eq!(q.set_weight(k(1), 5), Err(SchedError::UnknownKey));
        assert_eq!(q.info(k(0)).unwrap().weight, 400);
    }

    #[test]
    fn set_pin_only_to_own_hart() {
        let mut q = RunQueue::new(2, cfg());
        q.add(k(0), VcpuParams::default()).unwrap();
        q.set_pin(k(0), Some(2)).unwrap();
        assert_eq!(q.info(k(0)).unwrap().pin, Some(2));
        assert_eq!(q.set_pin(k(0), Some(1)), Err(SchedError::Pinned));
        assert_eq!(q.info(k(0)).unwrap().pin, Some(2));
        q.set_pin(k(0), None).unwrap();
        assert_eq!(q.info(k(0)).unwrap().pin, None);
        assert_eq!(q.set_pin(k(1), None), Err(SchedError::UnknownKey));
    }

    #[test]
    fn should_preempt_rules() {
        let mut q = queue(&[100, 100]);
        assert!(!q.should_preempt(0), "nothing running");
        q.block(k(1)).unwrap();
        assert_eq!(q.pick(0).unwrap().key, k(0));
        assert!(!q.should_preempt(1000), "nobody else runnable");
        // vCPU 1 wakes at vruntime 0 (the minimum: vCPU 0 has not been charged yet).
        q.wake(k(1)).unwrap();
        assert!(!q.should_preempt(9), "below the minimum slice");
        assert!(q.should_preempt(10), "10 ticks ahead, granularity 5");

        // With a granularity of 20 ticks, the boundary is 20.
        let mut q = queue(&[100, 100]);
        q.set_config(SchedConfig::new(100, 10, 20).unwrap());
        q.block(k(1)).unwrap();
        q.pick(0).unwrap();
        q.wake(k(1)).unwrap();
        assert!(!q.should_preempt(15));
        assert!(!q.should_preempt(20), "exactly the granularity ahead");
        assert!(q.should_preempt(21), "more than the granularity ahead");

        // A runnable vCPU ahead of the running one never preempts it.
        let mut q = queue(&[100, 100]);
        q.set_config(SchedConfig::new(200, 10, 5).unwrap());
        q.account(k(1), 60).unwrap();
        assert_eq!(q.pick(0).unwrap().slice, 100);
        assert!(!q.should_preempt(64), "1 is still 60 ticks ahead");
        assert!(
            q.should_preempt(66),
            "0 is now more than 5 ticks ahead of 1"
        );
    }

    #[test]
    fn should_preempt_when_slice_used_up() {
        let mut q = queue(&[100, 100]);
        q.account(k(1), 1000).unwrap();
        let p = q.pick(0).unwrap();
        assert_eq!((p.key, p.slice), (k(0), 50));
        // vCPU 0 is far behind vCPU 1, but its slice is over at 50.
        assert!(!q.should_preempt(49));
        assert!(q.should_preempt(50));
    }

    #[test]
    fn slice_end_values() {
        let mut q = queue(&[100, 100]);
        q.set_config(SchedConfig::new(200, 10, 20).unwrap());
        assert_eq!(q.slice_end(), None, "nothing running");
        q.block(k(1)).unwrap();
        let p = q.pick(1000).unwrap();
        assert_eq!(p.slice, 200);
        assert_eq!(q.slice_end(), Some(1200), "alone: the whole slice");
        // 1 wakes level with 0: 0 must get more than 20 ticks ahead.
        q.wake(k(1)).unwrap();
        assert_eq!(q.slice_end(), Some(1021));
        assert!(!q.should_preempt(1020));
        assert!(q.should_preempt(1021));
        // Far ahead competitors leave the slice as it was.
        let mut q = queue(&[100, 100]);
        q.account(k(1), 10_000).unwrap();
        q.pick(0).unwrap();
        assert_eq!(q.slice_end(), Some(50));
        // A competitor far behind cuts it to the minimum slice, not less.
        let mut q = queue(&[100, 100]);
        q.account(k(0), 10_000).unwrap();
        q.stop(k(1)).unwrap();
        q.pick(0).unwrap();
        q.start(k(1)).unwrap();
        q.account(k(1), 0).unwrap();
        // start clamped 1 to the minimum, which is 0's vruntime: level again.
        assert_eq!(q.slice_end(), Some(10));
    }

    #[test]
    fn slice_end_scales_with_weights() {
        // Running at weight 256 against a weight-128 competitor charged 30 ticks:
        // it is 60 ticks (at weight 256) ahead. With a granularity of 16 ticks the
        // running vCPU must run more than 76 ticks. (Powers of two keep the
        // virtual runtimes exact.)
        let mut q = queue(&[256, 128]);
        q.set_config(SchedConfig::new(1000, 10, 16).unwrap());
        q.account(k(1), 30).unwrap();
        assert_eq!(q.pick(0).unwrap().key, k(0));
        assert_eq!(q.slice_end(), Some(77));
        assert!(!q.should_preempt(76));
        assert!(q.should_preempt(77));
    }

    #[test]
    fn queries_on_unknown_keys() {
        let q = queue(&[100]);
        assert_eq!(q.state(k(1)), Err(SchedError::UnknownKey));
        assert_eq!(q.stats(k(1)), Err(SchedError::UnknownKey));
        assert_eq!(q.info(k(1)), Err(SchedError::UnknownKey));
        let all: Vec<_> = q.iter().map(|i| i.key).collect();
        assert_eq!(all, [k(0)]);
    }

    #[test]
    fn idle_accounting() {
        let mut q = queue(&[100]);
        q.block(k(0)).unwrap();
        assert_eq!(q.pick(100), None);
        assert_eq!(q.pick(150), None, "still the same idle period");
        assert_eq!(q.hart_stats(170).idle_ticks, 70, "includes the open period");
        q.wake(k(0)).unwrap();
        q.pick(200).unwrap();
        q.account(k(0), 50).unwrap();
        let s = q.hart_stats(1000);
        assert_eq!((s.idle_ticks, s.idle_periods, s.picks), (100, 1, 1));
        q.block(k(0)).unwrap();
        assert_eq!(q.pick(300), None);
        q.wake(k(0)).unwrap();
        q.pick(310).unwrap();
        let s = q.hart_stats(1000);
        assert_eq!((s.idle_ticks, s.idle_periods, s.picks), (110, 2, 2));
    }

    #[test]
    fn migrate_to_keeps_lag() {
        let mut a = queue(&[100, 100]);
        let mut b = RunQueue::new(1, cfg());
        b.add(k(9), VcpuParams::default()).unwrap();
        b.account(k(9), 5000).unwrap();
        a.account(k(0), 100).unwrap();
        a.account(k(1), 300).unwrap();
        // vCPU 1 is 200 ticks' worth behind... ahead of a's minimum.
        let m = a.migrate_to(&mut b, k(1)).unwrap();
        assert_eq!(
            m,
            Migration {
                key: k(1),
                from: 0,
                to: 1
            }
        );
        assert_eq!(
            vr(&b, 1),
            vdelta(5000, 100) + vdelta(300, 100) - vdelta(100, 100)
        );
        assert!(!a.contains(k(1)) && b.contains(k(1)));
        assert_eq!(b.info(k(1)).unwrap().hart, 1);
        assert_eq!(b.stats(k(1)).unwrap().migrations, 1);
        assert_eq!(a.hart_stats(0).migrations_out, 1);
        assert_eq!(b.hart_stats(0).migrations_in, 1);
    }

    #[test]
    fn migrate_to_drops_blocked_credit() {
        let mut a = queue(&[100, 100]);
        let mut b = RunQueue::new(1, cfg());
        a.block(k(0)).unwrap();
        a.account(k(1), 1000).unwrap();
        b.add(k(5), VcpuParams::default()).unwrap();
        b.account(k(5), 10).unwrap();
        a.migrate_to(&mut b, k(0)).unwrap();
        assert_eq!(b.state(k(0)), Ok(State::Blocked));
        assert_eq!(vr(&b, 0), b.min_vruntime());
    }

    #[test]
    fn migrate_to_errors() {
        let mut a = RunQueue::new(0, cfg());
        let mut b = RunQueue::new(1, cfg());
        a.add(k(0), VcpuParams::default()).unwrap();
        a.add(
            k(1),
            VcpuParams {
                pin: Some(0),
                ..VcpuParams::default()
            },
        )
        .unwrap();
        a.add(k(2), VcpuParams::default()).unwrap();
        b.add(k(2), VcpuParams::default()).unwrap();
        assert_eq!(a.migrate_to(&mut b, k(7)), Err(SchedError::UnknownKey));
        assert_eq!(a.migrate_to(&mut b, k(1)), Err(SchedError::Pinned));
        assert_eq!(a.migrate_to(&mut b, k(2)), Err(SchedError::DuplicateKey));
        assert_eq!(a.pick(0).unwrap().key, k(0));
        assert_eq!(a.migrate_to(&mut b, k(0)), Err(SchedError::Running));
        assert_eq!((a.len(), b.len()), (3, 1), "refused moves change nothing");
        // A vCPU pinned to the destination's hart may move there.
        let mut c = RunQueue::new(0, cfg());
        assert!(a.migrate_to(&mut c, k(1)).is_ok());
    }

    #[test]
    fn pull_from_takes_waiting_unpinned_work() {
        let mut busy = RunQueue::new(0, cfg());
        let mut idle = RunQueue::new(1, cfg());
        let pinned = VcpuParams {
            pin: Some(0),
            ..VcpuParams::default()
        };
        busy.add(k(0), VcpuParams::default()).unwrap();
        busy.add(k(1), pinned).unwrap();
        busy.add(k(2), VcpuParams::default()).unwrap();
        assert_eq!(busy.pick(0).unwrap().key, k(0));
        // 0 is running and 1 pinned: only 2 may move.
        let m = idle.pull_from(&mut busy).unwrap();
        assert_eq!(
            m,
            Migration {
                key: k(2),
                from: 0,
                to: 1
            }
        );
        // Now busy has 0 (running) and 1 (pinned): nothing movable.
        assert_eq!(idle.pull_from(&mut busy), None);
    }

    #[test]
    fn pull_from_only_when_it_evens_the_load() {
        let mut src = queue(&[100]);
        let mut dst = RunQueue::new(1, cfg());
        // Taking the only runnable vCPU would just move the imbalance.
        assert_eq!(dst.pull_from(&mut src), None);
        dst.add(k(7), VcpuParams::default()).unwrap();
        src.add(k(1), VcpuParams::default()).unwrap();
        // 200 vs 100: moving 100 gives 100 vs 200, no better.
        assert_eq!(dst.pull_from(&mut src), None);
        // Blocked vCPUs are not load.
        src.add(k(2), VcpuParams::default()).unwrap();
        src.block(k(2)).unwrap();
        assert_eq!(dst.pull_from(&mut src), None);
        src.add(k(3), VcpuParams::default()).unwrap();
        assert!(
            dst.pull_from(&mut src).is_some(),
            "300 vs 100 evens to 200/200"
        );
    }

    #[test]
    fn pull_from_prefers_best_fit_then_coldest() {
        // Loads 100 + 300 + 100 on src: moving 300 to an empty queue gives
        // 200/300 (gain 300*200 = 60000), moving 100 gives 400/100 (gain 40000).
        let mut src = queue(&[100, 300, 100]);
        let mut dst = RunQueue::new(1, cfg());
        assert_eq!(dst.pull_from(&mut src).unwrap().key, k(1));

        // Equal weights: the one picked longest ago moves.
        let mut src = queue(&[100, 100, 100]);
        src.pick(10).unwrap(); // 0 at t=10 (all vruntimes 0, smallest key)
        src.account(k(0), 0).unwrap();
        src.pick(20).unwrap(); // 1
        src.account(k(1), 0).unwrap();
        src.pick(30).unwrap(); // 2, running
        let mut dst = RunQueue::new(1, cfg());
        assert_eq!(dst.pull_from(&mut src).unwrap().key, k(0));
    }
}
