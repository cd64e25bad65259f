//! cpu-hog's `probe=` output, and the scheduler's behaviour read from it.
//!
//! Each probing vCPU reads `time` in a tight loop and reports every *gap* (two
//! consecutive reads further apart than a threshold): the stretches in which it
//! did not run. Under Ferrovisor every VM's `time` is the host's, so the probes
//! of several VMs sharing one hart lie on one timeline, and on that timeline
//! each gap of one VM either
//!
//! - ends with the *same* VM resuming and no other VM running in between (an
//!   exit handled without switching, or QEMU stalling the whole machine): a
//!   *self gap*; or
//! - contains another VM's run: the hart switched. The time from this VM's last
//!   read to the next VM's first read is one *vCPU switch* (exit, the
//!   scheduler's pick, loading the other vCPU, entry), and the time from a VM's
//!   first read after a switch to its last read before the next switch away is
//!   one *time slice* as the guest saw it.

use crate::bench::linux::parse::guest_lines;
use crate::bench::parse::LineError;

/// One VM's probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    /// The median of the SBI null calls timed first, ticks.
    pub null_call_ticks: u64,
    /// The probe's start (guest `time`, which is the host's), ticks.
    pub start: u64,
    /// How long it probed, ticks.
    pub ticks: u64,
    /// Reads of `time`.
    pub reads: u64,
    /// Gaps not kept (the guest's buffer was full).
    pub dropped: u64,
    /// The shortest gap recorded, ticks.
    pub threshold: u64,
    /// Ticks per second.
    pub timebase: u64,
    /// The gaps, in order.
    pub gaps: Vec<Gap>,
}

/// A stretch in which a probing vCPU did not run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gap {
    /// The last read before it (absolute ticks).
    pub start: u64,
    /// Its length, ticks: the first read after it is at `start + len`.
    pub len: u64,
}

impl Gap {
    /// The first read after it.
    pub fn end(&self) -> u64 {
        self.start.saturating_add(self.len)
    }
}

const NULL_PREFIX: &str = "INFO: probe: null-call median ";
const HEADER_PREFIX: &str = "INFO: probe: start ";
const GAPS_PREFIX: &str = "PROBE:";
/// The header's shape, for error messages.
pub const HEADER_SHAPE: &str =
    "INFO: probe: start <t0> ticks <n> reads <n> gaps <n> dropped <n> threshold <n> timebase <hz>";

fn malformed(line: &str, problem: &str) -> LineError {
    LineError::Malformed {
        line: line.to_string(),
        problem: problem.to_string(),
    }
}

/// Reads the probe of VM `vm` (its lines prefixed `[vm] `), or of the bare guest
/// (`None`: every line). Every gap the header announces must be there.
pub fn parse_probe<S: AsRef<str>>(lines: &[S], vm: Option<&str>) -> Result<Probe, LineError> {
    let mut null_call = None;
    let mut header: Option<(&str, [u64; 7])> = None;
    let mut gaps = Vec::new();
    for (_, line) in guest_lines(lines, vm) {
        if let Some(rest) = line.strip_prefix(NULL_PREFIX) {
            let v = rest
                .split_whitespace()
                .next()
                .and_then(|t| t.parse::<u64>().ok())
                .ok_or_else(|| malformed(line, "null-call median is not a number"))?;
            if null_call.replace(v).is_some() {
                return Err(LineError::Duplicate {
                    what: "the null-call median".into(),
                    line: line.into(),
                });
            }
        } else if line.starts_with(HEADER_PREFIX) {
            let v = parse_header(line)?;
            if header.replace((line, v)).is_some() {
                return Err(LineError::Duplicate {
                    what: "the probe header".into(),
                    line: line.into(),
                });
            }
        } else if let Some(rest) = line.strip_prefix(GAPS_PREFIX) {
            for item in rest.split_whitespace() {
                let parsed = item
                    .split_once('+')
                    .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)));
                let Some((off, len)) = parsed else {
                    return Err(malformed(line, "expected `<offset>+<length>` items"));
                };
                gaps.push((off, len));
            }
        }
    }
    let (line, [start, ticks, reads, count, dropped, threshold, timebase]) =
        header.ok_or_else(|| LineError::Missing(HEADER_SHAPE.into()))?;
    let null_call_ticks =
        null_call.ok_or_else(|| LineError::Missing(format!("{NULL_PREFIX}<ticks> of <n>")))?;
    if gaps.len() as u64 != count {
        return Err(malformed(
            line,
            &format!("announces {count} gaps but {} were printed", gaps.len()),
        ));
    }
    if timebase == 0 {
        return Err(malformed(line, "timebase 0"));
    }
    Ok(Probe {
        null_call_ticks,
        start,
        ticks,
        reads,
        dropped,
        threshold,
        timebase,
        gaps: gaps
            .into_iter()
            .map(|(off, len)| Gap {
                start: start.saturating_add(off),
                len,
            })
            .collect(),
    })
}

/// The seven numbers of the header, in order.
fn parse_header(line: &str) -> Result<[u64; 7], LineError> {
    const KEYS: [&str; 7] = [
        "start",
        "ticks",
        "reads",
        "gaps",
        "dropped",
        "threshold",
        "timebase",
    ];
    let rest = line.strip_prefix("INFO: probe: ").unwrap_or(line);
    let tokens: Vec<&str> = rest.split_whitespace().collect();
    let mut out = [0u64; 7];
    if tokens.len() != 2 * KEYS.len() {
        return Err(malformed(line, &format!("expected `{HEADER_SHAPE}`")));
    }
    for ((pair, key), slot) in tokens.chunks(2).zip(KEYS).zip(out.iter_mut()) {
        match pair {
            [k, v] if *k == key => {
                *slot = v
                    .parse()
                    .map_err(|_| malformed(line, &format!("`{key}` is not a number")))?;
            }
            _ => return Err(malformed(line, &format!("expected `{key} <n>`"))),
        }
    }
    Ok(out)
}

/// What one run's probes show, all in ticks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Analysis {
    /// The stretch every probe covered (the latest start to the earliest end).
    pub window_ticks: u64,
    /// Gaps (all VMs) that start inside the window.
    pub gaps: usize,
    /// vCPU switches: one VM's last read to the next VM's first read.
    pub switches: Vec<u64>,
    /// Gaps after which the same VM went on, nobody else having run.
    pub self_gaps: Vec<u64>,
    /// Time slices: a VM's first read after a switch to it, to its last read
    /// before the next switch away from it.
    pub slices: Vec<u64>,
    /// Gaps that overlap another VM's gap instead of alternating with it (two
    /// VMs seemingly not running at once, or running at once): never on one
    /// hart, unless a switch was shorter than the threshold.
    pub anomalies: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// A VM's first read after a gap. Sorts first at equal times: when a VM
    /// made only one read between two gaps, that read ends the first gap and
    /// starts the second.
    Resume,
    /// A VM's last read before a gap.
    Suspend,
}

/// Lays the probes of VMs sharing one hart on one timeline (see the module
/// documentation). `None` if the probes never overlapped.
///
/// Only the stretch every probe covers counts, and in it each gap's start and
/// end count on their own: on one hart the VMs' suspends and resumes
/// alternate, so a gap cut by the window's edge leaves a lone resume at the
/// start or a lone suspend at the end, which pair with nothing.
pub fn analyse(probes: &[Probe]) -> Option<Analysis> {
    let from = probes.iter().map(|p| p.start).max()?;
    let to = probes
        .iter()
        .map(|p| p.start.saturating_add(p.ticks))
        .min()?;
    if to <= from {
        return None;
    }
    let mut events: Vec<(u64, Kind, usize)> = Vec::new();
    let inside = |t: u64| (from..=to).contains(&t);
    for (vm, p) in probes.iter().enumerate() {
        for g in &p.gaps {
            if inside(g.start) {
                events.push((g.start, Kind::Suspend, vm));
            }
            if inside(g.end()) {
                events.push((g.end(), Kind::Resume, vm));
            }
        }
    }
    events.sort_unstable();
    let mut a = Analysis {
        window_ticks: to - from,
        gaps: events.iter().filter(|e| e.1 == Kind::Suspend).count(),
        ..Analysis::default()
    };
    // The first read of each VM's current slice (after a switch to it).
    let mut slice_start: Vec<Option<u64>> = vec![None; probes.len()];
    for pair in events.windows(2) {
        let [(t0, k0, v0), (t1, k1, v1)] = [pair[0], pair[1]];
        match (k0, k1) {
            (Kind::Suspend, Kind::Resume) if v0 == v1 => a.self_gaps.push(t1 - t0),
            (Kind::Suspend, Kind::Resume) => {
                a.switches.push(t1 - t0);
                if let Some(s) = slice_start.get_mut(v0).and_then(Option::take) {
                    a.slices.push(t0.saturating_sub(s));
                }
                if let Some(s) = slice_start.get_mut(v1) {
                    *s = Some(t1);
                }
            }
            (Kind::Suspend, Kind::Suspend) => a.anomalies += 1,
            // A resume followed by anything: that VM runs; nothing to measure.
            (Kind::Resume, _) => {}
        }
    }
    Some(a)
}

/// The `q`-quantile (0.0..=1.0, nearest rank) of `values`; `None` if empty.
pub fn quantile(values: &[u64], q: f64) -> Option<u64> {
    let mut v = values.to_vec();
    v.sort_unstable();
    let last = v.len().checked_sub(1)?;
    let i = ((last as f64) * q.clamp(0.0, 1.0)).round() as usize;
    v.get(i.min(last)).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(start: u64, ticks: u64, gaps: &[(u64, u64)]) -> Probe {
        Probe {
            null_call_ticks: 300,
            start,
            ticks,
            reads: 1000,
            dropped: 0,
            threshold: 200,
            timebase: 10_000_000,
            gaps: gaps
                .iter()
                .map(|&(s, l)| Gap { start: s, len: l })
                .collect(),
        }
    }

    #[test]
    fn parses_a_probe_under_the_hypervisor() {
        let lines = [
            "[a] INFO: cpu-hog: 1 hart(s) working",
            "[a] INFO: probe: null-call median 412 of 501",
            "[b] INFO: probe: null-call median 999 of 501",
            "[a] INFO: probe: start 1000 ticks 30000 reads 77 gaps 3 dropped 0 threshold 200 timebase 10000000",
            "[a] PROBE: 10+300 5000+100000",
            "[a] PROBE: 20000+250",
            "[a] DONE: cpu-hog passed=0 failed=0",
        ];
        let p = parse_probe(&lines, Some("a")).unwrap();
        assert_eq!(p.null_call_ticks, 412);
        assert_eq!((p.start, p.ticks, p.reads, p.dropped), (1000, 30000, 77, 0));
        assert_eq!((p.threshold, p.timebase), (200, 10_000_000));
        assert_eq!(
            p.gaps,
            [
                Gap {
                    start: 1010,
                    len: 300
                },
                Gap {
                    start: 6000,
                    len: 100_000
                },
                Gap {
                    start: 21000,
                    len: 250
                }
            ]
        );
        assert_eq!(p.gaps[1].end(), 106_000);
    }

    #[test]
    fn bare_lines_have_no_prefix() {
        let lines = [
            "INFO: probe: null-call median 16 of 501",
            "INFO: probe: start 5 ticks 10 reads 3 gaps 0 dropped 0 threshold 200 timebase 10000000",
        ];
        let p = parse_probe(&lines, None).unwrap();
        assert_eq!((p.null_call_ticks, p.start, p.gaps.len()), (16, 5, 0));
    }

    #[test]
    fn incomplete_or_broken_output_is_an_error() {
        let header = "INFO: probe: start 5 ticks 10 reads 3 gaps 2 dropped 0 threshold 200 timebase 10000000";
        let null = "INFO: probe: null-call median 16 of 501";
        // One gap announced twice: a line went missing.
        let e = parse_probe(&[null, header, "PROBE: 1+300"], None).unwrap_err();
        assert!(e.to_string().contains("announces 2 gaps but 1"), "{e}");
        assert!(matches!(
            parse_probe(&[null], None),
            Err(LineError::Missing(_))
        ));
        assert!(matches!(
            parse_probe(&[header, "PROBE: 1+3 2+4"], None),
            Err(LineError::Missing(_))
        ));
        let bad = parse_probe(&[null, header, "PROBE: 1-300 2+4"], None).unwrap_err();
        assert!(bad.to_string().contains("<offset>+<length>"), "{bad}");
        let swapped =
            "INFO: probe: start 5 reads 10 ticks 3 gaps 0 dropped 0 threshold 200 timebase 1";
        assert!(parse_probe(&[null, swapped], None).is_err());
        let twice = parse_probe(&[null, null, header], None).unwrap_err();
        assert!(matches!(twice, LineError::Duplicate { .. }));
    }

    #[test]
    fn two_vms_alternating_give_switches_and_slices() {
        // a runs 0..1000, switch (50) to b, which starts probing at 1050 and
        // runs to 2050, switch (40) to a, a runs 2090..3090 with one self gap
        // (30) inside, switch (60) to b, b runs 3150..4100 and a resumes at
        // 4150: its probe ends at 5000, b's at 6050.
        let a = probe(0, 5000, &[(1000, 1090), (2500, 30), (3090, 1060)]);
        let b = probe(1050, 5000, &[(2050, 1100), (4100, 2000)]);
        let r = analyse(&[a, b]).unwrap();
        // The window is 1050..5000: a's first suspend is outside it, b's last
        // resume too.
        assert_eq!(r.window_ticks, 3950);
        assert_eq!(r.switches, [40, 60, 50]);
        assert_eq!(r.self_gaps, [30]);
        // a's slice 2090..3090 (the self gap is inside it), b's 3150..4100.
        assert_eq!(r.slices, [1000, 950]);
        assert_eq!(r.anomalies, 0);
        assert_eq!(r.gaps, 4);
    }

    #[test]
    fn only_gaps_inside_the_common_window_count() {
        // b starts at 1000 and ends at 4000: a's gaps before 1000 or after
        // 4000 are left out.
        let a = probe(0, 6000, &[(100, 300), (1500, 500), (4500, 300)]);
        let b = probe(1000, 3000, &[(2100, 300)]);
        let r = analyse(&[a, b]).unwrap();
        assert_eq!(r.window_ticks, 3000);
        assert_eq!(r.gaps, 2);
        assert!(r.switches.is_empty());
        assert_eq!(r.self_gaps.len(), 2);
        assert!(analyse(&[probe(0, 10, &[]), probe(20, 10, &[])]).is_none());
        assert!(analyse(&[]).is_none());
    }

    #[test]
    fn one_read_between_two_gaps() {
        // b runs first and switches to a (which starts probing at 600); a
        // stalls (self gap 300), makes one read at 1300 and is switched out
        // (to b, 200 later).
        let a = probe(600, 5000, &[(1000, 300), (1300, 1000)]);
        let b = probe(0, 5000, &[(500, 1000)]);
        let r = analyse(&[a, b]).unwrap();
        assert_eq!(r.self_gaps, [300]);
        assert_eq!(r.switches, [200]);
        assert_eq!(r.anomalies, 0);
    }

    #[test]
    fn overlapping_gaps_are_anomalies() {
        let a = probe(0, 1000, &[(100, 500)]);
        let b = probe(0, 1000, &[(200, 500)]);
        let r = analyse(&[a, b]).unwrap();
        assert_eq!(r.anomalies, 1);
    }

    #[test]
    fn quantiles_by_nearest_rank() {
        let v = [5, 1, 4, 2, 3];
        assert_eq!(quantile(&v, 0.5), Some(3));
        assert_eq!(quantile(&v, 0.0), Some(1));
        assert_eq!(quantile(&v, 1.0), Some(5));
        assert_eq!(quantile(&v, 0.9), Some(5));
        assert_eq!(quantile(&[], 0.5), None);
    }
}
