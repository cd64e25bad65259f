//! Property tests: random operation sequences never panic, every result matches a
//! simple model of the states, and the invariants hold after every step (each key
//! in exactly one queue, pinned keys on their hart, one running vCPU per hart at
//! most, queue minimum virtual runtimes never decrease); balancing leaves no
//! improving move; fairness holds for random weights.
#![allow(clippy::unwrap_used, clippy::panic)] // test code: a panic is how a test fails

mod common;

use common::{Behaviour, Sim, TB};
use fv_sched::{
    balance, RunQueue, SchedConfig, SchedError, Scheduler, State, VcpuKey, VcpuParams, MAX_WEIGHT,
    MIN_WEIGHT,
};
use proptest::prelude::*;
use std::collections::BTreeMap;

const KEYS: u32 = 8;

#[derive(Clone, Debug)]
enum Op {
    Add {
        key: u32,
        hart: Option<usize>,
        weight: u32,
        pin: Option<usize>,
        stopped: bool,
    },
    Remove(u32),
    Pick {
        hart: usize,
        dt: u64,
    },
    Account {
        key: u32,
        ran: u64,
    },
    Block(u32),
    Wake(u32),
    Stop(u32),
    Start(u32),
    SetWeight(u32, u32),
    SetPin(u32, Option<usize>),
    Migrate(u32, usize),
    Steal(usize),
    Balance,
    Query {
        key: u32,
        hart: usize,
    },
}

fn weight() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(0u32),
        Just(MIN_WEIGHT),
        Just(MAX_WEIGHT),
        Just(MAX_WEIGHT + 1),
        1u32..=1000,
        any::<u32>(),
    ]
}

fn ran() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..100_000, any::<u64>()]
}

/// Hart indices including one past the last (for 1..=4 harts).
fn hart() -> impl Strategy<Value = usize> {
    0usize..5
}

fn op() -> impl Strategy<Value = Op> {
    let key = 0..KEYS;
    prop_oneof![
        4 => (key.clone(), proptest::option::of(hart()), weight(), proptest::option::weighted(0.3, hart()), any::<bool>())
            .prop_map(|(key, hart, weight, pin, stopped)| Op::Add { key, hart, weight, pin, stopped }),
        1 => key.clone().prop_map(Op::Remove),
        6 => (hart(), prop_oneof![0u64..50_000, any::<u64>()]).prop_map(|(hart, dt)| Op::Pick { hart, dt }),
        4 => (key.clone(), ran()).prop_map(|(key, ran)| Op::Account { key, ran }),
        2 => key.clone().prop_map(Op::Block),
        3 => key.clone().prop_map(Op::Wake),
        1 => key.clone().prop_map(Op::Stop),
        2 => key.clone().prop_map(Op::Start),
        1 => (key.clone(), weight()).prop_map(|(k, w)| Op::SetWeight(k, w)),
        1 => (key.clone(), proptest::option::of(hart())).prop_map(|(k, p)| Op::SetPin(k, p)),
        2 => (key.clone(), hart()).prop_map(|(k, h)| Op::Migrate(k, h)),
        2 => hart().prop_map(Op::Steal),
        1 => Just(Op::Balance),
        1 => (key, hart()).prop_map(|(key, hart)| Op::Query { key, hart }),
    ]
}

/// What the model knows of a vCPU.
#[derive(Clone, Copy, Debug)]
struct M {
    hart: usize,
    weight: u32,
    pin: Option<usize>,
    state: State,
}

struct Model {
    harts: usize,
    vcpus: BTreeMap<u32, M>,
    min_vruntime: Vec<u128>,
}

impl Model {
    fn get(&self, key: u32) -> Result<M, SchedError> {
        self.vcpus.get(&key).copied().ok_or(SchedError::UnknownKey)
    }

    /// The run on `hart` ends: its running vCPU (if any) becomes runnable.
    fn end_run(&mut self, hart: usize) {
        for m in self.vcpus.values_mut() {
            if m.hart == hart && m.state == State::Running {
                m.state = State::Runnable;
            }
        }
    }

    fn check(&mut self, s: &Scheduler) {
        let total: usize = s.queues().iter().map(RunQueue::len).sum();
        assert_eq!(total, self.vcpus.len(), "no vCPU the model does not know");
        for (&key, m) in &self.vcpus {
            let k = VcpuKey(key);
            let holders = s.queues().iter().filter(|q| q.contains(k)).count();
            assert_eq!(holders, 1, "{k:?} in exactly one queue");
            let info = s.info(k).unwrap();
            assert_eq!(info.hart, m.hart, "{k:?} hart");
            assert_eq!(info.state, m.state, "{k:?} state");
            assert_eq!(info.weight, m.weight);
            assert_eq!(info.pin, m.pin);
            if let Some(p) = m.pin {
                assert_eq!(info.hart, p, "pinned {k:?} on its hart");
            }
            assert!((MIN_WEIGHT..=MAX_WEIGHT).contains(&info.weight));
        }
        for (h, q) in s.queues().iter().enumerate() {
            assert_eq!(q.hart(), h);
            let running: Vec<VcpuKey> = q
                .iter()
                .filter(|i| i.state == State::Running)
                .map(|i| i.key)
                .collect();
            assert!(running.len() <= 1, "at most one running vCPU per hart");
            assert_eq!(q.running(), running.first().copied());
            assert_eq!(q.slice_end().is_some(), q.running().is_some());
            assert!(
                q.min_vruntime() >= self.min_vruntime[h],
                "min never decreases"
            );
            self.min_vruntime[h] = q.min_vruntime();
            let load: u64 = q
                .iter()
                .filter(|i| i.state.is_runnable())
                .map(|i| u64::from(i.weight))
                .sum();
            assert_eq!(q.load(), load);
        }
    }
}

fn weight_ok(w: u32) -> bool {
    (MIN_WEIGHT..=MAX_WEIGHT).contains(&w)
}

fn apply(s: &mut Scheduler, m: &mut Model, now: &mut u64, op: &Op) {
    let n = m.harts;
    match *op {
        Op::Add {
            key,
            hart,
            weight,
            pin,
            stopped,
        } => {
            let params = VcpuParams {
                weight,
                pin,
                stopped,
            };
            let k = VcpuKey(key);
            let got = match hart {
                Some(h) => s.add_to(h, k, params).map(|()| h),
                None => s.add(k, params),
            };
            let target = hart.or(pin);
            let want = if target.is_some_and(|h| h >= n) || pin.is_some_and(|p| p >= n) {
                Err(SchedError::BadHart)
            } else if !weight_ok(weight) {
                Err(SchedError::BadWeight)
            } else if pin.is_some_and(|p| Some(p) != target) {
                Err(SchedError::Pinned)
            } else if m.vcpus.contains_key(&key) {
                Err(SchedError::DuplicateKey)
            } else {
                Ok(())
            };
            match (want, got) {
                (Ok(()), Ok(h)) => {
                    if let Some(t) = target {
                        assert_eq!(h, t);
                    }
                    let state = if stopped {
                        State::Stopped
                    } else {
                        State::Runnable
                    };
                    m.vcpus.insert(
                        key,
                        M {
                            hart: h,
                            weight,
                            pin,
                            state,
                        },
                    );
                }
                (want, got) => assert_eq!(want, got.map(|_| ())),
            }
        }
        Op::Remove(key) => {
            let want = m.get(key).map(|_| ());
            assert_eq!(s.remove(VcpuKey(key)).map(|_| ()), want);
            m.vcpus.remove(&key);
        }
        Op::Pick { hart, dt } => {
            *now = now.saturating_add(dt);
            let got = s.pick(hart, *now);
            if hart >= n {
                assert_eq!(got, Err(SchedError::BadHart));
                return;
            }
            m.end_run(hart);
            let got = got.unwrap();
            let any = m
                .vcpus
                .values()
                .any(|v| v.hart == hart && v.state == State::Runnable);
            assert_eq!(got.is_some(), any, "pick finds work iff some is runnable");
            if let Some(p) = got {
                let v = m.vcpus.get_mut(&p.key.0).unwrap();
                assert_eq!((v.hart, v.state), (hart, State::Runnable));
                v.state = State::Running;
                let c = s.queue(hart).unwrap().config();
                assert!(p.slice >= c.min_slice());
            }
        }
        Op::Account { key, ran } => {
            let want = m.get(key).map(|_| ());
            assert_eq!(s.account(VcpuKey(key), ran), want);
            if let Some(v) = m.vcpus.get_mut(&key) {
                if v.state == State::Running {
                    v.state = State::Runnable;
                }
            }
        }
        Op::Block(key) => {
            let got = s.block(VcpuKey(key));
            match m.vcpus.get_mut(&key) {
                None => assert_eq!(got, Err(SchedError::UnknownKey)),
                Some(v) if v.state == State::Stopped => assert_eq!(got, Err(SchedError::Stopped)),
                Some(v) => {
                    assert_eq!(got, Ok(()));
                    v.state = State::Blocked;
                }
            }
        }
        Op::Wake(key) | Op::Start(key) => {
            let (from, got) = match op {
                Op::Wake(_) => (State::Blocked, s.wake(VcpuKey(key))),
                _ => (State::Stopped, s.start(VcpuKey(key))),
            };
            match m.vcpus.get_mut(&key) {
                None => assert_eq!(got, Err(SchedError::UnknownKey)),
                Some(v) => {
                    assert_eq!(got, Ok(v.state == from));
                    if v.state == from {
                        v.state = State::Runnable;
                        let q = s.queue(v.hart).unwrap();
                        let vr = q.info(VcpuKey(key)).unwrap().vruntime;
                        assert!(vr >= q.min_vruntime(), "woken at no less than the min");
                    }
                }
            }
        }
        Op::Stop(key) => {
            let want = m.get(key).map(|_| ());
            assert_eq!(s.stop(VcpuKey(key)), want);
            if let Some(v) = m.vcpus.get_mut(&key) {
                v.state = State::Stopped;
            }
        }
        Op::SetWeight(key, w) => {
            let got = s.set_weight(VcpuKey(key), w);
            match m.vcpus.get_mut(&key) {
                None => assert_eq!(got, Err(SchedError::UnknownKey)),
                Some(_) if !weight_ok(w) => assert_eq!(got, Err(SchedError::BadWeight)),
                Some(v) => {
                    assert_eq!(got, Ok(()));
                    v.weight = w;
                }
            }
        }
        Op::SetPin(key, pin) => {
            let got = s.set_pin(VcpuKey(key), pin);
            let Some(v) = m.vcpus.get_mut(&key) else {
                assert_eq!(got, Err(SchedError::UnknownKey));
                return;
            };
            match pin {
                Some(p) if p >= n => assert_eq!(got, Err(SchedError::BadHart)),
                Some(p) if p != v.hart && v.state == State::Running => {
                    assert_eq!(got, Err(SchedError::Running))
                }
                Some(p) => {
                    let moved = got.unwrap();
                    assert_eq!(moved.is_some(), p != v.hart);
                    v.hart = p;
                    v.pin = Some(p);
                }
                None => {
                    assert_eq!(got, Ok(None));
                    v.pin = None;
                }
            }
        }
        Op::Migrate(key, to) => {
            let got = s.migrate(VcpuKey(key), to);
            let Some(v) = m.vcpus.get_mut(&key) else {
                assert_eq!(got, Err(SchedError::UnknownKey));
                return;
            };
            if to >= n {
                assert_eq!(got, Err(SchedError::BadHart));
            } else if to == v.hart {
                assert_eq!(got, Ok(None));
            } else if v.state == State::Running {
                assert_eq!(got, Err(SchedError::Running));
            } else if v.pin.is_some() {
                assert_eq!(got, Err(SchedError::Pinned));
            } else {
                let mv = got.unwrap().unwrap();
                assert_eq!((mv.from, mv.to), (v.hart, to));
                v.hart = to;
            }
        }
        Op::Steal(hart) => {
            let got = s.steal(hart);
            if hart >= n {
                assert_eq!(got, Err(SchedError::BadHart));
                return;
            }
            if let Some(mv) = got.unwrap() {
                let v = m.vcpus.get_mut(&mv.key.0).unwrap();
                assert_eq!((v.hart, v.state, v.pin), (mv.from, State::Runnable, None));
                assert_eq!(mv.to, hart);
                v.hart = hart;
            }
        }
        Op::Balance => {
            for mv in s.balance() {
                let v = m.vcpus.get_mut(&mv.key.0).unwrap();
                assert_eq!((v.hart, v.state, v.pin), (mv.from, State::Runnable, None));
                v.hart = mv.to;
            }
            assert_no_improving_move(s.queues());
        }
        Op::Query { key, hart } => {
            let k = VcpuKey(key);
            let want = m.get(key);
            assert_eq!(s.state(k), want.map(|v| v.state));
            assert_eq!(s.stats(k).is_ok(), want.is_ok());
            assert_eq!(s.hart_of(k), want.ok().map(|v| v.hart));
            assert_eq!(s.hart_stats(hart, *now).is_ok(), hart < n);
            assert_eq!(s.should_preempt(hart, *now).is_ok(), hart < n);
            assert_eq!(s.slice_end(hart).is_ok(), hart < n);
        }
    }
}

/// No runnable, unpinned, non-running vCPU could move to a less loaded queue and
/// make the pair strictly more even.
fn assert_no_improving_move(queues: &[RunQueue]) {
    for s in queues {
        for d in queues {
            if s.hart() == d.hart() {
                continue;
            }
            for v in s.iter() {
                if v.state == State::Runnable && v.pin.is_none() {
                    assert!(
                        d.load() + u64::from(v.weight) >= s.load(),
                        "{:?} could still move from {} to {}",
                        v.key,
                        s.hart(),
                        d.hart()
                    );
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_operations_match_the_model(
        harts in 1usize..=4,
        ops in proptest::collection::vec(op(), 0..200),
    ) {
        let mut s = Scheduler::new(harts, SchedConfig::new(1000, 10, 5).unwrap()).unwrap();
        let mut m = Model { harts, vcpus: BTreeMap::new(), min_vruntime: vec![0; harts] };
        let mut now = 0u64;
        for op in &ops {
            apply(&mut s, &mut m, &mut now, op);
            m.check(&s);
        }
    }

    #[test]
    fn balance_leaves_no_improving_move(
        vcpus in proptest::collection::vec(
            (0usize..4, 1u32..=500, any::<bool>(), 0u8..4),
            0..24,
        ),
        harts in 1usize..=4,
    ) {
        let cfg = SchedConfig::from_timebase(TB);
        let mut qs: Vec<RunQueue> = (0..harts).map(|h| RunQueue::new(h, cfg)).collect();
        let mut before = BTreeMap::new();
        for (i, &(hart, weight, pinned, state)) in vcpus.iter().enumerate() {
            let hart = hart % harts;
            let key = VcpuKey(i as u32);
            let pin = pinned.then_some(hart);
            qs[hart].add(key, VcpuParams { weight, pin, stopped: state == 3 }).unwrap();
            match state {
                1 => qs[hart].block(key).unwrap(),
                2 => { qs[hart].pick(0); }
                _ => {}
            }
            before.insert(key, hart);
        }
        let total_load: u64 = qs.iter().map(RunQueue::load).sum();
        let fixed: Vec<(VcpuKey, usize)> = qs
            .iter()
            .flat_map(|q| q.iter().map(move |i| (i, q.hart())))
            .filter(|(i, _)| i.state != State::Runnable || i.pin.is_some())
            .map(|(i, h)| (i.key, h))
            .collect();
        let mut moves = Vec::new();
        let mut refs: Vec<&mut RunQueue> = qs.iter_mut().collect();
        let n = balance(&mut refs, |mv| moves.push(mv));
        prop_assert_eq!(n, moves.len());
        prop_assert!(n <= 2 * vcpus.len());
        prop_assert_eq!(qs.iter().map(RunQueue::load).sum::<u64>(), total_load);
        for (key, hart) in fixed {
            prop_assert!(qs[hart].contains(key), "{:?} must not move", key);
        }
        let mut at = before;
        for mv in &moves {
            prop_assert_eq!(at.get(&mv.key).copied(), Some(mv.from));
            at.insert(mv.key, mv.to);
        }
        for (key, hart) in at {
            prop_assert!(qs[hart].contains(key));
        }
        assert_no_improving_move(&qs);
    }

    #[test]
    fn pull_from_never_worsens_balance(
        src_w in proptest::collection::vec((1u32..=1000, any::<bool>()), 0..10),
        dst_w in proptest::collection::vec(1u32..=1000, 0..4),
    ) {
        let cfg = SchedConfig::from_timebase(TB);
        let mut src = RunQueue::new(0, cfg);
        let mut dst = RunQueue::new(1, cfg);
        for (i, &(w, pinned)) in src_w.iter().enumerate() {
            src.add(VcpuKey(i as u32), VcpuParams { weight: w, pin: pinned.then_some(0), stopped: false }).unwrap();
        }
        for (i, &w) in dst_w.iter().enumerate() {
            dst.add(VcpuKey(100 + i as u32), VcpuParams { weight: w, ..VcpuParams::default() }).unwrap();
        }
        src.pick(0);
        let (s0, d0) = (src.load(), dst.load());
        match dst.pull_from(&mut src) {
            Some(mv) => {
                let v = dst.info(mv.key).unwrap();
                prop_assert_eq!(v.pin, None);
                prop_assert_eq!(v.state, State::Runnable);
                let (s1, d1) = (src.load(), dst.load());
                prop_assert!(s1.abs_diff(d1) < s0.abs_diff(d0));
            }
            None => {
                prop_assert_eq!((src.load(), dst.load()), (s0, d0));
                for v in src.iter() {
                    if v.state == State::Runnable && v.pin.is_none() {
                        prop_assert!(d0 + u64::from(v.weight) >= s0);
                    }
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Two CPU-bound vCPUs on one hart with random weights (ratio up to 10) get
    /// shares within 5 % of their weights over two simulated seconds.
    #[test]
    fn fairness_random_weights(w1 in 1u32..=1000, k in 1u32..=10, frac in 0u32..100) {
        let w2 = (w1 * k + frac * w1 / 100).clamp(1, MAX_WEIGHT);
        let mut sim = Sim::new(1);
        let a = sim.add(None, Behaviour::CpuBound, w1, Some(0));
        let b = sim.add(None, Behaviour::CpuBound, w2, Some(0));
        sim.run_until(2 * TB);
        let got = sim.vcpu(b).ran as f64 / sim.vcpu(a).ran as f64;
        let want = f64::from(w2) / f64::from(w1);
        prop_assert!((got / want - 1.0).abs() <= 0.05, "{}:{} got {}", w1, w2, got);
    }

    /// Random mixes of behaviours, harts and mechanisms: the simulation's own
    /// invariant checks hold at every step, and every tick of every hart is
    /// either charged to exactly one vCPU or counted idle.
    #[test]
    fn random_simulations_conserve_time(
        harts in 1usize..=3,
        steal in any::<bool>(),
        balance_ms in proptest::option::of(5u64..200),
        preempt in any::<bool>(),
        vcpus in proptest::collection::vec(
            (0u8..4, 1u32..=1000, proptest::option::weighted(0.3, 0usize..3), any::<u64>()),
            1..8,
        ),
    ) {
        let mut sim = Sim::new(harts);
        sim.steal = steal;
        sim.balance_every = balance_ms.map(|ms| ms * common::MS);
        sim.preempt_on_wake = preempt;
        for &(kind, weight, pin, seed) in &vcpus {
            let behaviour = match kind {
                0 => Behaviour::CpuBound,
                1 => Behaviour::Sleeper { run: 1 + seed % 50_000, sleep: 1 + (seed >> 20) % 100_000 },
                2 => Behaviour::Bursty { max_burst: 100_000, max_sleep: 200_000, seed },
                _ => Behaviour::SleepsUntil(seed % TB),
            };
            let pin = pin.map(|p| p % harts);
            sim.add(pin, behaviour, weight, pin);
        }
        sim.run_until(TB / 2);
        let ran: u64 = sim.vcpus.iter().map(|v| v.ran).sum();
        let idle: u64 = (0..harts).map(|h| sim.sched.hart_stats(h, sim.now).unwrap().idle_ticks).sum();
        prop_assert_eq!(ran + idle, harts as u64 * TB / 2);
    }
}
