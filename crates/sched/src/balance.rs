//! Load balancing across every hart's queue.

use crate::queue::best_move;
use crate::{Migration, RunQueue, VcpuKey};
use core::ops::DerefMut;

/// Evens out the weighted loads ([`RunQueue::load`]) of `queues` by moving
/// runnable, unpinned, not running vCPUs. Repeatedly makes the single move that
/// reduces the sum of squared loads the most, until no move reduces it; so pinned
/// vCPUs never move, and queues already as even as their vCPUs allow are left
/// alone (no ping-pong). `on_move` is called for each move, in order, while the
/// queues are still held: the hypervisor moves the vCPU's state there. Returns the
/// number of moves.
///
/// `queues` may be the queues themselves (`&mut [&mut RunQueue]`) or the lock
/// guards of the hypervisor's per-hart locks. Work is bounded: at most twice the
/// number of queued vCPUs moves.
///
/// Context: any hart holding every queue's lock (taken in hart order), e.g. the
/// boot hart every 100 ms.
pub fn balance<Q>(queues: &mut [Q], mut on_move: impl FnMut(Migration)) -> usize
where
    Q: DerefMut<Target = RunQueue>,
{
    let total: usize = queues.iter().map(|q| q.len()).sum();
    let mut moves = 0;
    for _ in 0..total.saturating_mul(2) {
        let Some((src, dst, key)) = best_global_move(queues) else {
            break;
        };
        let Some((a, b)) = pair_mut(queues, src, dst) else {
            break;
        };
        match a.migrate_to(b, key) {
            Ok(m) => {
                on_move(m);
                moves += 1;
            }
            Err(_) => break,
        }
    }
    moves
}

/// The move `(source index, destination index, key)` with the largest gain over
/// all pairs of queues; ties go to the earliest pair in index order.
fn best_global_move<Q>(queues: &[Q]) -> Option<(usize, usize, VcpuKey)>
where
    Q: DerefMut<Target = RunQueue>,
{
    let mut best: Option<(u64, usize, usize, VcpuKey)> = None;
    for (si, s) in queues.iter().enumerate() {
        for (di, d) in queues.iter().enumerate() {
            if si == di {
                continue;
            }
            if let Some((gain, key)) = best_move(s, d.load()) {
                if best.is_none_or(|b| gain > b.0) {
                    best = Some((gain, si, di, key));
                }
            }
        }
    }
    best.map(|(_, s, d, k)| (s, d, k))
}

/// Two distinct elements of a slice, mutably; `None` if `a == b` or either is out
/// of bounds.
pub(crate) fn pair_mut<T>(s: &mut [T], a: usize, b: usize) -> Option<(&mut T, &mut T)> {
    if a == b {
        return None;
    }
    let (lo, hi) = (a.min(b), a.max(b));
    let (left, right) = s.split_at_mut_checked(hi)?;
    let x = left.get_mut(lo)?;
    let y = right.first_mut()?;
    Some(if a < b { (x, y) } else { (y, x) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pair_mut_bounds() {
        let mut v = [1, 2, 3];
        assert!(pair_mut(&mut v, 1, 1).is_none());
        assert!(pair_mut(&mut v, 0, 3).is_none());
        assert!(pair_mut(&mut v, 3, 0).is_none());
        let (x, y) = pair_mut(&mut v, 2, 0).unwrap();
        assert_eq!((*x, *y), (3, 1));
        *x = 30;
        *y = 10;
        let (x, y) = pair_mut(&mut v, 0, 2).unwrap();
        assert_eq!((*x, *y), (10, 30));
    }
}

#[cfg(test)]
mod balance_tests {
    use super::*;
    use crate::{SchedConfig, State, VcpuParams};
    use std::sync::Mutex;
    use std::vec::Vec;

    fn queues(n: usize) -> Vec<RunQueue> {
        (0..n)
            .map(|h| RunQueue::new(h, SchedConfig::new(100, 10, 5).unwrap()))
            .collect()
    }

    fn add(q: &mut RunQueue, key: u32, weight: u32, pin: Option<usize>) {
        q.add(
            VcpuKey(key),
            VcpuParams {
                weight,
                pin,
                stopped: false,
            },
        )
        .unwrap();
    }

    fn loads(qs: &[RunQueue]) -> Vec<u64> {
        qs.iter().map(RunQueue::load).collect()
    }

    #[test]
    fn spreads_equal_vcpus_evenly() {
        let mut qs = queues(3);
        for i in 0..6 {
            add(&mut qs[0], i, 100, None);
        }
        let mut seen = Vec::new();
        let mut refs: Vec<&mut RunQueue> = qs.iter_mut().collect();
        let n = balance(&mut refs, |m| seen.push(m));
        assert_eq!(n, 4);
        assert_eq!(seen.len(), 4);
        assert_eq!(loads(&qs), [200, 200, 200]);
        for m in seen {
            assert_eq!(m.from, 0);
            assert!(qs[m.to].contains(m.key));
        }
    }

    #[test]
    fn weighted_loads() {
        // 300 + 100 + 100 + 100 on one hart: best split is 300 | 300.
        let mut qs = queues(2);
        add(&mut qs[0], 0, 300, None);
        for i in 1..4 {
            add(&mut qs[0], i, 100, None);
        }
        let mut refs: Vec<&mut RunQueue> = qs.iter_mut().collect();
        balance(&mut refs, |_| {});
        assert_eq!(loads(&qs), [300, 300]);
    }

    #[test]
    fn pinned_running_blocked_stay() {
        let mut qs = queues(2);
        add(&mut qs[0], 0, 100, Some(0));
        add(&mut qs[0], 1, 100, Some(0));
        add(&mut qs[0], 2, 100, None);
        add(&mut qs[0], 3, 100, None);
        add(&mut qs[0], 4, 100, None);
        assert_eq!(qs[0].pick(0).unwrap().key, VcpuKey(0));
        qs[0].block(VcpuKey(4)).unwrap();
        let mut refs: Vec<&mut RunQueue> = qs.iter_mut().collect();
        balance(&mut refs, |_| {});
        // 0 and 1 pinned, 4 blocked (no load): 2 and 3 are the only candidates,
        // and moving both gives 200 | 200.
        for key in [0, 1, 4] {
            assert!(qs[0].contains(VcpuKey(key)));
        }
        assert!(qs[1].contains(VcpuKey(2)) && qs[1].contains(VcpuKey(3)));
        assert_eq!(qs[0].state(VcpuKey(0)), Ok(State::Running));
    }

    #[test]
    fn nothing_movable_stops_early() {
        let mut qs = queues(2);
        add(&mut qs[0], 0, 100, Some(0));
        add(&mut qs[0], 1, 100, Some(0));
        let mut refs: Vec<&mut RunQueue> = qs.iter_mut().collect();
        assert_eq!(balance(&mut refs, |_| {}), 0);
        let mut none: [&mut RunQueue; 0] = [];
        assert_eq!(balance(&mut none, |_| {}), 0);
    }

    #[test]
    fn works_on_lock_guards() {
        let locks: Vec<Mutex<RunQueue>> = queues(2).into_iter().map(Mutex::new).collect();
        for i in 0..4 {
            add(&mut locks[0].lock().unwrap(), i, 100, None);
        }
        let mut guards: Vec<_> = locks.iter().map(|l| l.lock().unwrap()).collect();
        assert_eq!(balance(&mut guards, |_| {}), 2);
        drop(guards);
        assert_eq!(locks[1].lock().unwrap().load(), 200);
    }
}
