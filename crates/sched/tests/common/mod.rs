//! A deterministic discrete-event simulation of harts running vCPUs under the
//! scheduler, the way the hypervisor's run loop drives it: pick, run for the slice
//! (or until the vCPU executes WFI), account, block; wake on a timer; idle harts
//! steal; a periodic balance; optional wake-up preemption.
#![allow(dead_code)]

use fv_sched::{Migration, SchedConfig, Scheduler, State, VcpuKey, VcpuParams};

/// Ticks per second of the simulated `time` CSR (QEMU virt's 10 MHz).
pub const TB: u64 = 10_000_000;
/// One millisecond.
pub const MS: u64 = TB / 1000;

/// What a simulated vCPU does with the CPU.
#[derive(Clone, Copy, Debug)]
pub enum Behaviour {
    /// Never executes WFI.
    CpuBound,
    /// Runs `run` ticks, then WFI for `sleep` ticks, forever.
    Sleeper { run: u64, sleep: u64 },
    /// Bursts of 1..=`max_burst` ticks separated by 1..=`max_sleep` ticks of WFI,
    /// lengths from a generator seeded with `seed`.
    Bursty {
        max_burst: u64,
        max_sleep: u64,
        seed: u64,
    },
    /// In WFI until tick `until`, then CPU-bound.
    SleepsUntil(u64),
}

/// One simulated vCPU and what was observed of it.
#[derive(Debug)]
pub struct SimVcpu {
    pub key: VcpuKey,
    pub behaviour: Behaviour,
    pub pin: Option<usize>,
    rng: u64,
    /// CPU ticks left before its next WFI (`u64::MAX`: never).
    burst_left: u64,
    /// When its WFI ends.
    wake_at: Option<u64>,
    /// Since when it has been runnable without running.
    waiting_since: Option<u64>,
    /// Whether its current wait began with a wake-up from WFI.
    woken: bool,
    /// Longest time it was runnable without running.
    pub max_wait: u64,
    /// Longest time from a wake-up from WFI to running.
    pub max_wake_wait: u64,
    /// Total ticks it ran.
    pub ran: u64,
    /// Every run: (start, end, hart).
    pub runs: Vec<(u64, u64, usize)>,
}

impl SimVcpu {
    /// Ticks it ran within `[from, to)`.
    pub fn ran_between(&self, from: u64, to: u64) -> u64 {
        self.runs
            .iter()
            .map(|&(s, e, _)| e.min(to).saturating_sub(s.max(from)))
            .sum()
    }

    fn next_random(&mut self, max: u64) -> u64 {
        // Knuth's MMIX LCG; the high bits are the good ones.
        self.rng = self
            .rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        1 + (self.rng >> 33) % max.max(1)
    }

    fn next_burst(&mut self) -> u64 {
        match self.behaviour {
            Behaviour::CpuBound | Behaviour::SleepsUntil(_) => u64::MAX,
            Behaviour::Sleeper { run, .. } => run.max(1),
            Behaviour::Bursty { max_burst, .. } => self.next_random(max_burst),
        }
    }

    fn next_sleep(&mut self) -> u64 {
        match self.behaviour {
            Behaviour::CpuBound | Behaviour::SleepsUntil(_) => u64::MAX,
            Behaviour::Sleeper { sleep, .. } => sleep.max(1),
            Behaviour::Bursty { max_sleep, .. } => self.next_random(max_sleep),
        }
    }
}

/// A running vCPU on a hart.
#[derive(Clone, Copy, Debug)]
struct Run {
    key: VcpuKey,
    start: u64,
    end: u64,
}

/// The simulation.
#[derive(Debug)]
pub struct Sim {
    pub sched: Scheduler,
    pub vcpus: Vec<SimVcpu>,
    harts: Vec<Option<Run>>,
    pub now: u64,
    /// Idle harts call `Scheduler::steal` before sleeping.
    pub steal: bool,
    /// Period of `Scheduler::balance`, if any.
    pub balance_every: Option<u64>,
    next_balance: u64,
    /// After a wake, the woken vCPU's hart cuts its running slice to `slice_end`.
    pub preempt_on_wake: bool,
    /// Every migration made.
    pub migrations: Vec<(u64, Migration)>,
}

impl Sim {
    /// `harts` harts with the default configuration for [`TB`].
    pub fn new(harts: usize) -> Self {
        Self::with_config(harts, SchedConfig::from_timebase(TB))
    }

    pub fn with_config(harts: usize, config: SchedConfig) -> Self {
        Sim {
            sched: Scheduler::new(harts, config).unwrap(),
            vcpus: Vec::new(),
            harts: vec![None; harts],
            now: 0,
            steal: false,
            balance_every: None,
            next_balance: 0,
            preempt_on_wake: false,
            migrations: Vec::new(),
        }
    }

    /// Adds a vCPU where the scheduler places it (`hart` = None) or on `hart`.
    pub fn add(
        &mut self,
        hart: Option<usize>,
        behaviour: Behaviour,
        weight: u32,
        pin: Option<usize>,
    ) -> VcpuKey {
        let key = VcpuKey(self.vcpus.len() as u32);
        let params = VcpuParams {
            weight,
            pin,
            stopped: false,
        };
        match hart {
            Some(h) => self.sched.add_to(h, key, params).unwrap(),
            None => {
                self.sched.add(key, params).unwrap();
            }
        }
        let seed = match behaviour {
            Behaviour::Bursty { seed, .. } => seed,
            _ => 0,
        };
        let mut v = SimVcpu {
            key,
            behaviour,
            pin,
            rng: seed,
            burst_left: 0,
            wake_at: None,
            waiting_since: Some(self.now),
            woken: false,
            max_wait: 0,
            max_wake_wait: 0,
            ran: 0,
            runs: Vec::new(),
        };
        v.burst_left = v.next_burst();
        if let Behaviour::SleepsUntil(t) = behaviour {
            self.sched.block(key).unwrap();
            v.wake_at = Some(t);
            v.waiting_since = None;
        }
        self.vcpus.push(v);
        key
    }

    pub fn vcpu(&self, key: VcpuKey) -> &SimVcpu {
        &self.vcpus[key.0 as usize]
    }

    /// Runs until tick `end`; runs under way at `end` are ended and charged then.
    pub fn run_until(&mut self, end: u64) {
        if let Some(p) = self.balance_every {
            if self.next_balance <= self.now {
                self.next_balance = self.now + p;
            }
        }
        while self.now < end {
            for h in 0..self.harts.len() {
                if self.harts[h].is_none() {
                    self.dispatch(h);
                }
            }
            self.check_invariants();
            let mut t = end;
            for r in self.harts.iter().flatten() {
                t = t.min(r.end);
            }
            for v in &self.vcpus {
                if let Some(w) = v.wake_at {
                    t = t.min(w);
                }
            }
            if self.balance_every.is_some() {
                t = t.min(self.next_balance);
            }
            assert!(t > self.now || t == end, "simulation makes progress");
            self.now = t;
            for h in 0..self.harts.len() {
                if self.harts[h].is_some_and(|r| r.end == t) {
                    self.finish(h);
                }
            }
            for i in 0..self.vcpus.len() {
                if self.vcpus[i].wake_at == Some(t) {
                    self.wake(i);
                }
            }
            if let Some(p) = self.balance_every {
                if self.next_balance == t {
                    for m in self.sched.balance() {
                        self.migrations.push((t, m));
                    }
                    self.next_balance = t + p;
                }
            }
        }
        for h in 0..self.harts.len() {
            if self.harts[h].is_some() {
                self.finish(h);
            }
        }
        self.check_invariants();
    }

    fn dispatch(&mut self, h: usize) {
        let mut pick = self.sched.pick(h, self.now).unwrap();
        if pick.is_none() && self.steal {
            if let Some(m) = self.sched.steal(h).unwrap() {
                self.migrations.push((self.now, m));
                pick = self.sched.pick(h, self.now).unwrap();
            }
        }
        let Some(p) = pick else { return };
        let now = self.now;
        let v = &mut self.vcpus[p.key.0 as usize];
        let since = v
            .waiting_since
            .take()
            .expect("a picked vCPU was waiting for a hart");
        v.max_wait = v.max_wait.max(now - since);
        if std::mem::take(&mut v.woken) {
            v.max_wake_wait = v.max_wake_wait.max(now - since);
        }
        assert!(p.slice > 0);
        let end = now + p.slice.min(v.burst_left);
        self.harts[h] = Some(Run {
            key: p.key,
            start: now,
            end,
        });
    }

    fn finish(&mut self, h: usize) {
        let r = self.harts[h].take().unwrap();
        let now = self.now;
        let ran = now - r.start;
        self.sched.account(r.key, ran).unwrap();
        let v = &mut self.vcpus[r.key.0 as usize];
        v.ran += ran;
        v.runs.push((r.start, now, h));
        if v.burst_left != u64::MAX {
            v.burst_left -= ran;
        }
        if v.burst_left == 0 {
            // WFI with nothing pending.
            self.sched.block(r.key).unwrap();
            let sleep = v.next_sleep();
            v.wake_at = Some(now.saturating_add(sleep));
        } else {
            v.waiting_since = Some(now);
        }
    }

    fn wake(&mut self, i: usize) {
        let now = self.now;
        let v = &mut self.vcpus[i];
        v.wake_at = None;
        v.burst_left = v.next_burst();
        v.waiting_since = Some(now);
        v.woken = true;
        let key = v.key;
        assert_eq!(self.sched.wake(key), Ok(true));
        if !self.preempt_on_wake {
            return;
        }
        let h = self.sched.hart_of(key).unwrap();
        if let Some(run) = self.harts[h].as_mut() {
            let slice_end = self.sched.slice_end(h).unwrap().unwrap();
            run.end = run.end.min(slice_end.max(now));
            if run.end == now {
                self.finish(h);
            }
        }
    }

    /// Every vCPU is in exactly one queue, pinned ones on their hart, and the
    /// scheduler's running vCPUs are the simulation's.
    fn check_invariants(&self) {
        for v in &self.vcpus {
            let holders: Vec<usize> = (0..self.sched.harts())
                .filter(|&h| self.sched.queue(h).unwrap().contains(v.key))
                .collect();
            assert_eq!(holders.len(), 1, "{:?} in exactly one queue", v.key);
            if let Some(p) = v.pin {
                assert_eq!(holders[0], p, "pinned {:?} on its hart", v.key);
            }
        }
        for (h, run) in self.harts.iter().enumerate() {
            let q = self.sched.queue(h).unwrap();
            assert_eq!(q.running(), run.map(|r| r.key));
            if let Some(r) = run {
                assert_eq!(q.state(r.key), Ok(State::Running));
            }
        }
    }

    /// Ticks vCPU `key` ran as a share of the total ran by `keys`.
    pub fn share(&self, key: VcpuKey, keys: &[VcpuKey]) -> f64 {
        let total: u64 = keys.iter().map(|&k| self.vcpu(k).ran).sum();
        self.vcpu(key).ran as f64 / total as f64
    }
}
