//! Property tests: whatever the ports send, frames reach only the right
//! ports, a VM port cannot poison the MAC table, and memory stays bounded.
#![allow(clippy::unwrap_used)]

use fv_netswitch::*;
use proptest::prelude::*;

const VMS: usize = 4;

fn vm_mac(i: usize) -> Mac {
    [0x52, 0x54, 0, 0, 0, i as u8 + 1]
}

/// A MAC: mostly one of the VMs', sometimes broadcast, multicast, zero, a
/// few outside hosts, or anything.
fn mac() -> impl Strategy<Value = Mac> {
    prop_oneof![
        4 => (0..VMS).prop_map(vm_mac),
        1 => Just(BROADCAST),
        1 => Just([0x01, 0, 0x5e, 0, 0, 1]),
        1 => Just([0; 6]),
        2 => (0..8u8).prop_map(|i| [0x02, 0, 0, 0, 0, i]),
        1 => any::<[u8; 6]>(),
    ]
}

fn frames() -> impl Strategy<Value = Vec<(u8, Mac, Mac, usize)>> {
    prop::collection::vec(
        (
            0..(VMS as u8 + 2),
            mac(),
            mac(),
            prop_oneof![1 => 0..14usize, 8 => 14..200usize, 1 => 1400..1600usize],
        ),
        0..200,
    )
}

fn build(f: &(u8, Mac, Mac, usize)) -> Vec<u8> {
    let mut v = vec![0u8; f.3];
    for (i, b) in f.1.iter().chain(f.2.iter()).enumerate() {
        if let Some(x) = v.get_mut(i) {
            *x = *b;
        }
    }
    v
}

proptest! {
    #[test]
    fn frames_reach_only_the_right_ports(seq in frames()) {
        let mut s = Switch::new();
        let vms: Vec<PortId> = (0..VMS).map(|i| s.add_vm_port(vm_mac(i)).unwrap()).collect();
        let up = s.add_uplink().unwrap();
        let mut delivered = vec![0u64; s.port_count()];
        for f in &seq {
            let from = PortId(f.0);
            let frame = build(f);
            let r = s.forward(from, &frame);
            let (dst, src, len) = (f.1, f.2, f.3);
            match s.kind(from) {
                None => prop_assert_eq!(r, Err(DropReason::NoSuchPort)),
                Some(_) if !(MIN_FRAME..=MAX_FRAME).contains(&len) => prop_assert!(r.is_err()),
                Some(PortKind::Vm { mac }) if src != mac => {
                    prop_assert_eq!(r, Err(DropReason::Spoofed))
                }
                Some(kind) => {
                    if kind == PortKind::Uplink && vms.iter().any(|&p| s.kind(p) == Some(PortKind::Vm { mac: src })) {
                        prop_assert_eq!(r, Err(DropReason::Spoofed));
                        continue;
                    }
                    let Ok(ports) = r else { continue };
                    // Never back to the sender.
                    prop_assert!(!ports.contains(from));
                    // A frame for a VM's MAC goes to that VM only.
                    if let Some(i) = (0..VMS).find(|&i| vm_mac(i) == dst) {
                        prop_assert_eq!(ports.iter().collect::<Vec<_>>(), vec![vms[i]]);
                    } else if is_multicast(&dst) {
                        prop_assert_eq!(ports.len(), s.port_count() - 1);
                    } else {
                        // Another host: to the uplink it was learned on, or flooded.
                        prop_assert!(ports.contains(up) || from == up);
                        // A VM port never receives a unicast frame for a MAC
                        // it was known not to own, unless flooded.
                        if ports.len() == 1 {
                            prop_assert_eq!(ports.iter().next(), Some(up));
                        }
                    }
                    for p in ports.iter() {
                        s.delivered(p, frame.len());
                        delivered[usize::from(p.0)] += 1;
                    }
                }
            }
        }
        // The VMs' MACs stay pinned to their ports; learning stays bounded.
        for (i, &p) in vms.iter().enumerate() {
            prop_assert_eq!(s.lookup(&vm_mac(i)), Some(p));
        }
        prop_assert!(s.learned_len() <= MAX_LEARNED);
        for (i, n) in delivered.iter().enumerate() {
            prop_assert_eq!(s.stats(PortId(i as u8)).unwrap().tx_frames, *n);
        }
    }

    #[test]
    fn frame_queue_stays_bounded(cap in 0..16usize, ops in prop::collection::vec(prop::option::of(0..2000usize), 0..200)) {
        let mut q = FrameQueue::new(cap);
        let (mut pushed, mut popped) = (0u64, 0u64);
        let mut model = std::collections::VecDeque::new();
        for op in ops {
            match op {
                Some(len) => {
                    pushed += 1;
                    let f = vec![len as u8; len];
                    if q.push(&f) {
                        model.push_back(f);
                    }
                }
                None => {
                    let got = q.pop();
                    if got.is_some() {
                        popped += 1;
                    }
                    prop_assert_eq!(got, model.pop_front());
                }
            }
            prop_assert!(q.len() <= cap);
        }
        prop_assert_eq!(q.queued() + q.dropped(), pushed);
        prop_assert_eq!(q.queued() - popped, q.len() as u64);
    }
}
