//! Scheduler behaviour over simulated time: fairness, starvation, WFI sleepers,
//! work stealing and balancing.
#![allow(clippy::unwrap_used, clippy::panic)] // test code: a panic is how a test fails

mod common;

use common::{Behaviour, Sim, MS, TB};
use fv_sched::{SchedConfig, VcpuKey};

/// Two CPU-bound vCPUs pinned to hart 0 of a 2-hart machine (hart 1 idle and
/// stealing, which must not take them) get CPU time in the ratio of their weights,
/// within 5 %, after 1 s and after 10 s.
fn pinned_pair_shares(w1: u32, w2: u32) {
    let mut sim = Sim::new(2);
    sim.steal = true;
    sim.balance_every = Some(100 * MS);
    let a = sim.add(Some(0), Behaviour::CpuBound, w1, Some(0));
    let b = sim.add(Some(0), Behaviour::CpuBound, w2, Some(0));
    let want = f64::from(w2) / f64::from(w1);
    for secs in [1, 10] {
        sim.run_until(secs * TB);
        let (ra, rb) = (sim.vcpu(a).ran, sim.vcpu(b).ran);
        assert_eq!(ra + rb, secs * TB, "hart 0 never idles");
        let got = rb as f64 / ra as f64;
        assert!(
            (got / want - 1.0).abs() <= 0.05,
            "weights {w1}:{w2} after {secs} s: ran {ra}:{rb}, ratio {got:.4}, want {want}"
        );
    }
    assert!(sim.migrations.is_empty(), "pinned vCPUs never move");
    // Hart 1 had nothing to run the whole time.
    let idle = sim.sched.hart_stats(1, sim.now).unwrap().idle_ticks;
    assert_eq!(idle, 10 * TB);
    assert_eq!(sim.sched.hart_stats(0, sim.now).unwrap().idle_ticks, 0);
}

#[test]
fn fairness_weights_1_to_2_pinned() {
    pinned_pair_shares(1, 2);
    pinned_pair_shares(100, 200);
    pinned_pair_shares(5000, 10000);
}

#[test]
fn fairness_weights_1_to_1_pinned() {
    pinned_pair_shares(100, 100);
    pinned_pair_shares(1, 1);
}

#[test]
fn fairness_weights_1_to_4_pinned() {
    pinned_pair_shares(100, 400);
    pinned_pair_shares(250, 1000);
}

/// Two VMs of two CPU-bound vCPUs each, all pinned to one hart, VM weights 1:2:
/// the VMs' total shares are 1:2 within 5 %, and the vCPUs within a VM share
/// equally.
#[test]
fn fairness_two_vms_two_vcpus_each() {
    let mut sim = Sim::new(2);
    sim.steal = true;
    let vm_a: Vec<VcpuKey> = (0..2)
        .map(|_| sim.add(Some(0), Behaviour::CpuBound, 100, Some(0)))
        .collect();
    let vm_b: Vec<VcpuKey> = (0..2)
        .map(|_| sim.add(Some(0), Behaviour::CpuBound, 200, Some(0)))
        .collect();
    sim.run_until(10 * TB);
    let ra: u64 = vm_a.iter().map(|&k| sim.vcpu(k).ran).sum();
    let rb: u64 = vm_b.iter().map(|&k| sim.vcpu(k).ran).sum();
    let ratio = rb as f64 / ra as f64;
    assert!((ratio / 2.0 - 1.0).abs() <= 0.05, "ratio {ratio}");
    for vm in [&vm_a, &vm_b] {
        let (x, y) = (sim.vcpu(vm[0]).ran as f64, sim.vcpu(vm[1]).ran as f64);
        assert!((x / y - 1.0).abs() <= 0.05, "{x} vs {y}");
    }
}

/// A mixed load on 2 harts: every vCPU, whenever runnable, runs within a bound.
///
/// Why the bound: on one queue, runnable virtual runtimes stay within
/// `D = max(period / W, min_slice / w_min)` (times `VRUNTIME_SCALE`) of each other,
/// where `period = max(latency, n * min_slice)`, `W` is the queue's runnable weight
/// and `w_min` its smallest weight: a vCPU picked at the minimum advances by at most
/// its slice over its weight. A waiting vCPU runs once the others have caught up
/// with it: each other vCPU `j` runs at most `D * w_j` ticks plus one slice, so the
/// wait is at most `max(period, min_slice * W / w_min) + 2 * period`. Using the
/// totals over both harts only makes the bound larger.
#[test]
fn no_starvation_mixed_load() {
    let config = SchedConfig::from_timebase(TB);
    let mut sim = Sim::new(2);
    sim.steal = true;
    sim.balance_every = Some(100 * MS);
    let cpu: Vec<VcpuKey> = [50, 100, 200, 400, 100]
        .iter()
        .map(|&w| sim.add(None, Behaviour::CpuBound, w, None))
        .collect();
    let pinned = sim.add(Some(1), Behaviour::CpuBound, 100, Some(1));
    let sleeper = sim.add(
        None,
        Behaviour::Sleeper {
            run: MS,
            sleep: 5 * MS,
        },
        100,
        None,
    );
    let bursty = sim.add(
        None,
        Behaviour::Bursty {
            max_burst: 30 * MS,
            max_sleep: 30 * MS,
            seed: 7,
        },
        100,
        None,
    );
    sim.run_until(5 * TB);
    let total_weight: u64 = 50 + 100 + 200 + 400 + 100 + 100 + 100 + 100;
    let w_min = 50;
    let period = config.latency().max(8 * config.min_slice());
    let bound = period.max(config.min_slice() * total_weight / w_min) + 2 * period;
    for v in &sim.vcpus {
        assert!(
            v.max_wait <= bound,
            "{:?} waited {} ticks, bound {bound}",
            v.key,
            v.max_wait
        );
        assert!(v.ran > 0, "{:?} ran", v.key);
    }
    // Every CPU-bound vCPU got a real share: at least half of what its weight
    // would give it if all CPU-bound vCPUs shared both harts perfectly.
    let cpu_weight: u64 = 50 + 100 + 200 + 400 + 100 + 100;
    for &k in cpu.iter().chain([&pinned]) {
        let w = u64::from(sim.sched.info(k).unwrap().weight);
        let fair = 2 * 5 * TB * w / cpu_weight;
        assert!(sim.vcpu(k).ran * 2 >= fair, "{k:?}");
    }
    for k in [sleeper, bursty] {
        let wakeups = sim.sched.stats(k).unwrap().wakeups;
        assert!(
            wakeups > 30,
            "{k:?} went through WFI and woke {wakeups} times"
        );
    }
}

/// Many equal CPU-bound vCPUs on one hart (more than latency / min_slice): the
/// period stretches and each still runs once per round.
#[test]
fn no_starvation_overcommit() {
    let mut sim = Sim::new(1);
    let keys: Vec<VcpuKey> = (0..50)
        .map(|_| sim.add(None, Behaviour::CpuBound, 100, None))
        .collect();
    sim.run_until(2 * TB);
    // 50 * 1 ms > 20 ms: every vCPU gets 1 ms slices and waits 49 of them.
    for &k in &keys {
        assert!(sim.vcpu(k).max_wait <= 49 * MS, "{}", sim.vcpu(k).max_wait);
        let share = sim.share(k, &keys);
        assert!((share * 50.0 - 1.0).abs() <= 0.05, "{share}");
    }
}

/// A vCPU in WFI for a second earns no credit: once it becomes CPU-bound it
/// shares the hart 1:1 with the hog that ran meanwhile, instead of running alone
/// for a second to "catch up".
#[test]
fn wfi_sleeper_banks_no_credit() {
    let mut sim = Sim::new(1);
    let hog = sim.add(None, Behaviour::CpuBound, 100, None);
    let sleeper = sim.add(None, Behaviour::SleepsUntil(TB), 100, None);
    sim.run_until(3 * TB);
    let s = sim.vcpu(sleeper);
    let h = sim.vcpu(hog);
    assert_eq!(h.ran_between(0, TB), TB, "the hog had the hart alone");
    assert_eq!(s.ran_between(0, TB), 0);
    // In the 100 ms after waking, the sleeper gets about half, not all of it.
    let window = 100 * MS;
    let got = s.ran_between(TB, TB + window);
    let slice = SchedConfig::from_timebase(TB).latency();
    assert!(
        got <= window / 2 + slice && got + slice >= window / 2,
        "sleeper ran {got} of {window}"
    );
    // And over the two seconds after waking, within 5 % of 1:1.
    let (rs, rh) = (s.ran_between(TB, 3 * TB), h.ran_between(TB, 3 * TB));
    assert!((rs as f64 / rh as f64 - 1.0).abs() <= 0.05, "{rs}:{rh}");
    // It ran promptly after waking.
    assert!(s.max_wait <= slice, "{}", s.max_wait);
}

/// A periodic sleeper (1 ms of work every ~10 ms) next to a hog gets all the CPU
/// it asks for, and with wake-up preemption it runs within a couple of
/// milliseconds of waking; the hog gets the rest. Sleeping never lets it exceed
/// its fair share when it later becomes busy.
#[test]
fn periodic_sleeper_latency_and_share() {
    for preempt in [false, true] {
        let config = SchedConfig::from_timebase(TB);
        let mut sim = Sim::new(1);
        sim.preempt_on_wake = preempt;
        let hog = sim.add(None, Behaviour::CpuBound, 100, None);
        let sleeper = sim.add(
            None,
            Behaviour::Sleeper {
                run: MS,
                sleep: 9 * MS,
            },
            100,
            None,
        );
        sim.run_until(5 * TB);
        let s = sim.vcpu(sleeper);
        let h = sim.vcpu(hog);
        assert_eq!(s.ran + h.ran, 5 * TB);
        // Each cycle is 1 ms of work + 9 ms asleep + the wait for the hart.
        let cycle = 10 * MS + s.max_wake_wait;
        let cycles = 5 * TB / cycle;
        assert!(s.ran >= (cycles - 1) * MS, "sleeper ran {}", s.ran);
        let bound = if preempt {
            // The hog runs at least the minimum slice and is then preempted once
            // it is more than the granularity ahead.
            config.min_slice() + config.wakeup_granularity() + MS
        } else {
            // The hog's slice when it was alone.
            config.latency()
        };
        assert!(
            s.max_wake_wait <= bound,
            "preempt {preempt}: waited {}",
            s.max_wake_wait
        );
        if preempt {
            assert!(s.max_wake_wait < config.latency() / 4);
        }
    }
}

/// Bursty vCPUs and hogs together: the total CPU time equals the time the
/// harts had (nothing lost or double-charged), and the scheduler's counters match
/// what the simulation observed.
#[test]
fn accounting_matches_observation() {
    let mut sim = Sim::new(2);
    sim.steal = true;
    sim.balance_every = Some(50 * MS);
    sim.preempt_on_wake = true;
    for seed in 0..6 {
        sim.add(
            None,
            Behaviour::Bursty {
                max_burst: 20 * MS,
                max_sleep: 40 * MS,
                seed,
            },
            100 + 50 * seed as u32,
            None,
        );
    }
    sim.add(None, Behaviour::CpuBound, 100, None);
    sim.run_until(3 * TB);
    let total: u64 = sim.vcpus.iter().map(|v| v.ran).sum();
    let idle: u64 = (0..2)
        .map(|h| sim.sched.hart_stats(h, sim.now).unwrap().idle_ticks)
        .sum();
    assert_eq!(total + idle, 2 * 3 * TB);
    for v in &sim.vcpus {
        let st = sim.sched.stats(v.key).unwrap();
        assert_eq!(st.run_ticks, v.ran);
        assert_eq!(st.picks, v.runs.len() as u64);
        let moved = sim
            .migrations
            .iter()
            .filter(|(_, m)| m.key == v.key)
            .count();
        assert_eq!(st.migrations, moved as u64);
    }
}

/// Four unpinned CPU-bound vCPUs start on hart 0 of 2: stealing moves one to the
/// idle hart, the periodic balance another, and then nothing moves again; each
/// vCPU ends up with half a hart.
#[test]
fn balancing_spreads_cpu_bound_vcpus() {
    let mut sim = Sim::new(2);
    sim.steal = true;
    sim.balance_every = Some(100 * MS);
    let keys: Vec<VcpuKey> = (0..4)
        .map(|_| sim.add(Some(0), Behaviour::CpuBound, 100, None))
        .collect();
    sim.run_until(10 * TB);
    assert_eq!(sim.migrations.len(), 2, "{:?}", sim.migrations);
    assert!(sim.migrations.iter().all(|(_, m)| m.from == 0 && m.to == 1));
    assert!(sim.migrations.iter().all(|&(t, _)| t <= 100 * MS));
    for q in sim.sched.queues() {
        assert_eq!(q.len(), 2);
    }
    for &k in &keys {
        let share = sim.vcpu(k).ran as f64 / (10 * TB) as f64;
        assert!((share / 0.5 - 1.0).abs() <= 0.05, "{k:?}: {share}");
    }
}

/// Idle stealing alone spreads two vCPUs queued on one hart.
#[test]
fn stealing_alone_spreads_two() {
    let mut sim = Sim::new(2);
    sim.steal = true;
    let a = sim.add(Some(0), Behaviour::CpuBound, 100, None);
    let b = sim.add(Some(0), Behaviour::CpuBound, 100, None);
    sim.run_until(TB);
    assert_eq!(sim.migrations.len(), 1);
    assert_eq!(sim.vcpu(a).ran + sim.vcpu(b).ran, 2 * TB);
    assert!(sim.vcpu(a).ran >= TB - 20 * MS && sim.vcpu(b).ran >= TB - 20 * MS);
}

/// Pinned vCPUs stay on their hart while unpinned ones around them are spread:
/// two pinned to hart 0 and four unpinned on hart 0 of 3 harts end 2 / 2 / 2.
#[test]
fn balancing_never_moves_pinned() {
    let mut sim = Sim::new(3);
    sim.steal = true;
    sim.balance_every = Some(100 * MS);
    let pinned: Vec<VcpuKey> = (0..2)
        .map(|_| sim.add(Some(0), Behaviour::CpuBound, 100, Some(0)))
        .collect();
    let free: Vec<VcpuKey> = (0..4)
        .map(|_| sim.add(Some(0), Behaviour::CpuBound, 100, None))
        .collect();
    sim.run_until(5 * TB);
    for &k in &pinned {
        assert_eq!(sim.sched.hart_of(k), Some(0));
        assert_eq!(sim.sched.stats(k).unwrap().migrations, 0);
        assert!(sim.vcpu(k).runs.iter().all(|&(_, _, h)| h == 0));
    }
    for &k in &free {
        assert_ne!(sim.sched.hart_of(k), Some(0), "{k:?} moved off hart 0");
    }
    for q in sim.sched.queues() {
        assert_eq!(q.nr_runnable(), 2);
    }
    assert!(sim.migrations.iter().all(|(_, m)| !pinned.contains(&m.key)));
}

/// Balancing by weight: a heavy vCPU and three light ones on 2 harts end up
/// heavy alone vs the three light (300 | 300), and shares follow.
#[test]
fn balancing_by_weight() {
    let mut sim = Sim::new(2);
    sim.steal = true;
    sim.balance_every = Some(100 * MS);
    let heavy = sim.add(Some(0), Behaviour::CpuBound, 300, None);
    let light: Vec<VcpuKey> = (0..3)
        .map(|_| sim.add(Some(0), Behaviour::CpuBound, 100, None))
        .collect();
    sim.run_until(5 * TB);
    let hh = sim.sched.hart_of(heavy).unwrap();
    for &k in &light {
        assert_ne!(sim.sched.hart_of(k), Some(hh));
    }
    let loads: Vec<u64> = sim.sched.queues().iter().map(|q| q.load()).collect();
    assert_eq!(loads, [300, 300]);
}

/// Sleepers that wake on a busy hart while another hart idles get pulled over.
#[test]
fn idle_hart_pulls_woken_vcpus() {
    let mut sim = Sim::new(2);
    sim.steal = true;
    let hog = sim.add(Some(0), Behaviour::CpuBound, 100, Some(0));
    let sleepers: Vec<VcpuKey> = (0..3)
        .map(|i| {
            sim.add(
                Some(0),
                Behaviour::Sleeper {
                    run: 2 * MS,
                    sleep: (3 + i) * MS,
                },
                100,
                None,
            )
        })
        .collect();
    sim.run_until(2 * TB);
    // Hart 1 did most of the sleepers' work and the hog kept most of hart 0.
    let on_hart1: u64 = sleepers
        .iter()
        .flat_map(|&k| sim.vcpu(k).runs.iter())
        .filter(|r| r.2 == 1)
        .map(|r| r.1 - r.0)
        .sum();
    let all: u64 = sleepers.iter().map(|&k| sim.vcpu(k).ran).sum();
    assert!(on_hart1 * 10 >= all * 9, "{on_hart1} of {all}");
    assert!(sim.vcpu(hog).ran >= 2 * TB * 9 / 10);
}
