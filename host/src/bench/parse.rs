//! Reading figures out of a run's serial output: the guest's `BENCH:` lines and
//! the hypervisor's boot-time, memory and exit-count lines.

use std::fmt;

/// A figure bench-guest prints: `BENCH: <name> <value> <unit>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FigureSpec {
    /// The name on the `BENCH:` line.
    pub name: &'static str,
    /// The unit it must carry.
    pub unit: &'static str,
    /// What it measures (for the table).
    pub what: &'static str,
    /// Whether the two sides are compared (a ratio is shown); the others are
    /// context that must agree between the sides.
    pub compared: bool,
}

/// Every figure bench-guest prints; all must be there.
pub const GUEST_FIGURES: &[FigureSpec] = &[
    FigureSpec {
        name: "sbi_null_call_median",
        unit: "ticks",
        what: "null SBI call (sbi_get_spec_version), median of 2001",
        compared: true,
    },
    FigureSpec {
        name: "sbi_null_call_mean",
        unit: "ns",
        what: "null SBI call, mean over a batch of 10000",
        compared: true,
    },
    FigureSpec {
        name: "first_touch_2m_median",
        unit: "ticks",
        what: "first store to a fresh 2 MiB block, median",
        compared: true,
    },
    FigureSpec {
        name: "first_touch_2m_max",
        unit: "ticks",
        what: "first store to a fresh 2 MiB block, worst",
        compared: true,
    },
    FigureSpec {
        name: "second_touch_2m_median",
        unit: "ticks",
        what: "second store to the same block, median",
        compared: true,
    },
    FigureSpec {
        name: "loop_overhead_median",
        unit: "ticks",
        what: "calibration: the timing loop with nothing in it",
        compared: true,
    },
    FigureSpec {
        name: "timebase",
        unit: "Hz",
        what: "`time` tick rate (from the DTB)",
        compared: false,
    },
    FigureSpec {
        name: "first_touch_2m_blocks",
        unit: "blocks",
        what: "2 MiB blocks touched",
        compared: false,
    },
];

/// Why figures could not be read from a run's output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LineError {
    /// No line of the expected shape; the string shows the shape.
    Missing(String),
    /// A line of the right kind that cannot be read.
    Malformed {
        /// The line.
        line: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A line that must appear once appeared again.
    Duplicate {
        /// What it reports.
        what: String,
        /// The second occurrence.
        line: String,
    },
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LineError::Missing(shape) => write!(f, "no line `{shape}`"),
            LineError::Malformed { line, problem } => write!(f, "{problem}: `{line}`"),
            LineError::Duplicate { what, line } => {
                write!(f, "{what} reported twice, again in `{line}`")
            }
        }
    }
}

impl std::error::Error for LineError {}

fn malformed(line: &str, problem: impl Into<String>) -> LineError {
    LineError::Malformed {
        line: line.to_string(),
        problem: problem.into(),
    }
}

/// One `BENCH:` line.
#[derive(Clone, Debug, PartialEq)]
pub struct BenchLine {
    /// Figure name.
    pub name: String,
    /// Its value.
    pub value: f64,
    /// Its unit.
    pub unit: String,
}

/// Splits the hypervisor's `[<vm>] ` prefix off a guest's line.
pub fn split_vm_prefix(line: &str) -> (Option<&str>, &str) {
    let l = line.trim_start();
    if let Some(rest) = l.strip_prefix('[') {
        if let Some((vm, after)) = rest.split_once(']') {
            return (Some(vm), after.trim_start());
        }
    }
    (None, l)
}

/// Reads one `BENCH: <name> <value> <unit>` line (no VM prefix). `None` if it is
/// not a `BENCH:` line at all.
pub fn parse_bench_line(line: &str) -> Option<Result<BenchLine, LineError>> {
    let rest = line.strip_prefix("BENCH:")?;
    let tokens: Vec<&str> = rest.split_whitespace().collect();
    let [name, value, unit] = tokens.as_slice() else {
        return Some(Err(malformed(
            line,
            "expected `BENCH: <name> <value> <unit>`",
        )));
    };
    let value = match value.parse::<f64>() {
        Ok(v) if v.is_finite() => v,
        _ => return Some(Err(malformed(line, format!("`{value}` is not a number")))),
    };
    Some(Ok(BenchLine {
        name: (*name).to_string(),
        value,
        unit: (*unit).to_string(),
    }))
}

/// The `BENCH:` figures of one guest, in the order printed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GuestFigures {
    /// Every `BENCH:` line, each name once.
    pub lines: Vec<BenchLine>,
}

impl GuestFigures {
    /// The value of figure `name`.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.lines.iter().find(|l| l.name == name).map(|l| l.value)
    }
}

/// Collects the `BENCH:` lines of one guest from a run's serial lines: those
/// prefixed `[vm] ` when `vm` is given (under the hypervisor), unprefixed ones
/// otherwise (bare QEMU). Every figure of [`GUEST_FIGURES`] must be there once,
/// with its unit.
pub fn parse_guest_output<S: AsRef<str>>(
    lines: &[S],
    vm: Option<&str>,
) -> Result<GuestFigures, LineError> {
    let mut figures = GuestFigures::default();
    for line in lines {
        let line = line.as_ref();
        let (prefix, rest) = split_vm_prefix(line);
        if prefix != vm {
            continue;
        }
        let Some(parsed) = parse_bench_line(rest) else {
            continue;
        };
        let b = parsed?;
        if figures.get(&b.name).is_some() {
            return Err(LineError::Duplicate {
                what: format!("BENCH figure `{}`", b.name),
                line: line.to_string(),
            });
        }
        figures.lines.push(b);
    }
    for spec in GUEST_FIGURES {
        let Some(b) = figures.lines.iter().find(|l| l.name == spec.name) else {
            let who = vm.map(|v| format!("[{v}] ")).unwrap_or_default();
            return Err(LineError::Missing(format!(
                "{who}BENCH: {} <value> {}",
                spec.name, spec.unit
            )));
        };
        if b.unit != spec.unit {
            return Err(malformed(
                &format!("BENCH: {} {} {}", b.name, b.value, b.unit),
                format!("unit `{}`, expected `{}`", b.unit, spec.unit),
            ));
        }
    }
    Ok(figures)
}

/// A VM as the hypervisor reports it after creating it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmReport {
    /// Its name.
    pub name: String,
    /// Its VMID.
    pub vmid: u64,
    /// vCPUs.
    pub vcpus: u64,
    /// Guest RAM in MiB.
    pub ram_mib: u64,
    /// What the hypervisor holds for it besides guest RAM (G-stage tables,
    /// descriptors), in bytes.
    pub overhead_bytes: u64,
}

/// What the hypervisor reports about itself in one run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HypervisorFigures {
    /// `time` ticks from the hypervisor's first instruction to the first guest
    /// instruction.
    pub first_entry_ticks: u64,
    /// The same in microseconds (the hypervisor's own conversion).
    pub first_entry_us: u64,
    /// One per VM created, in order.
    pub vms: Vec<VmReport>,
    /// Heap in use once every VM is created, KiB.
    pub heap_kib: u64,
    /// Guest exits handled in the whole run (from the final line), when printed.
    pub exits: Option<u64>,
}

const HV: &str = "ferrovisor: ";
const FIRST_ENTRY: &str = "first guest entry ";
const FIRST_ENTRY_SHAPE: &str =
    "ferrovisor: first guest entry <ticks> ticks (<us> us) after the hypervisor's first instruction";
const HEAP: &str = "heap in use: ";
const HEAP_SHAPE: &str = "ferrovisor: heap in use: <n> KiB";
const VM_SHAPE: &str =
    "ferrovisor: VM '<name>': vmid <n> vcpus <n> ram <n> MiB, hypervisor overhead <bytes> bytes";

fn number(token: &str, line: &str, what: &str) -> Result<u64, LineError> {
    token
        .parse::<u64>()
        .map_err(|_| malformed(line, format!("{what} `{token}` is not a whole number")))
}

fn parse_first_entry(rest: &str, line: &str) -> Result<(u64, u64), LineError> {
    let tokens: Vec<&str> = rest.split_whitespace().collect();
    match tokens.as_slice() {
        [ticks, "ticks", us, "us)", ..] => {
            let us = us
                .strip_prefix('(')
                .ok_or_else(|| malformed(line, format!("expected `{FIRST_ENTRY_SHAPE}`")))?;
            Ok((
                number(ticks, line, "tick count")?,
                number(us, line, "microseconds")?,
            ))
        }
        _ => Err(malformed(line, format!("expected `{FIRST_ENTRY_SHAPE}`"))),
    }
}

fn parse_vm(rest: &str, line: &str) -> Result<VmReport, LineError> {
    let bad = || malformed(line, format!("expected `{VM_SHAPE}`"));
    let (name, figures) = rest.split_once("': ").ok_or_else(bad)?;
    let tokens: Vec<&str> = figures.split_whitespace().collect();
    match tokens.as_slice() {
        ["vmid", vmid, "vcpus", vcpus, "ram", ram, "MiB,", "hypervisor", "overhead", bytes, "bytes"] => {
            Ok(VmReport {
                name: name.to_string(),
                vmid: number(vmid, line, "vmid")?,
                vcpus: number(vcpus, line, "vcpus")?,
                ram_mib: number(ram, line, "ram")?,
                overhead_bytes: number(bytes, line, "overhead")?,
            })
        }
        _ => Err(bad()),
    }
}

fn once<T>(slot: &mut Option<T>, value: T, what: &str, line: &str) -> Result<(), LineError> {
    if slot.is_some() {
        return Err(LineError::Duplicate {
            what: what.to_string(),
            line: line.to_string(),
        });
    }
    *slot = Some(value);
    Ok(())
}

/// Reads the hypervisor's figures from a run's serial lines. The first-entry,
/// heap and at least one VM line must be there (once each, one line per VM name);
/// the exit count is optional.
pub fn parse_hypervisor_output<S: AsRef<str>>(lines: &[S]) -> Result<HypervisorFigures, LineError> {
    let mut first_entry = None;
    let mut heap = None;
    let mut exits = None;
    let mut vms: Vec<VmReport> = Vec::new();
    for line in lines {
        let line = line.as_ref();
        let Some(rest) = line.trim_start().strip_prefix(HV) else {
            continue;
        };
        if let Some(r) = rest.strip_prefix(FIRST_ENTRY) {
            once(
                &mut first_entry,
                parse_first_entry(r, line)?,
                "first guest entry",
                line,
            )?;
        } else if let Some(r) = rest.strip_prefix(HEAP) {
            let kib = match r.split_whitespace().collect::<Vec<_>>().as_slice() {
                [n, "KiB"] => number(n, line, "heap size")?,
                _ => return Err(malformed(line, format!("expected `{HEAP_SHAPE}`"))),
            };
            once(&mut heap, kib, "heap in use", line)?;
        } else if let Some(r) = rest.strip_prefix("VM '") {
            // Other VM lines ("VM 'x' powered off") have no "': vmid".
            if r.contains("': vmid ") {
                let vm = parse_vm(r, line)?;
                if vms.iter().any(|v| v.name == vm.name) {
                    return Err(LineError::Duplicate {
                        what: format!("VM '{}'", vm.name),
                        line: line.to_string(),
                    });
                }
                vms.push(vm);
            }
        } else if rest.starts_with("all VMs stopped") {
            if let Some(r) = rest.strip_suffix(" exits handled") {
                let n = r.rsplit(' ').next().unwrap_or("");
                once(
                    &mut exits,
                    number(n, line, "exit count")?,
                    "exit count",
                    line,
                )?;
            }
        }
    }
    let (first_entry_ticks, first_entry_us) =
        first_entry.ok_or_else(|| LineError::Missing(FIRST_ENTRY_SHAPE.into()))?;
    let heap_kib = heap.ok_or_else(|| LineError::Missing(HEAP_SHAPE.into()))?;
    if vms.is_empty() {
        return Err(LineError::Missing(VM_SHAPE.into()));
    }
    Ok(HypervisorFigures {
        first_entry_ticks,
        first_entry_us,
        vms,
        heap_kib,
        exits,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    /// What bench-guest printed under Ferrovisor (a real run, VM named `bench`).
    const UNDER_FERROVISOR: &str = "\
ferrovisor: Ferrovisor 0.1.0 starting on hart 0
ferrovisor: memory: 502 MiB usable of 512 MiB (image 0x80200000..0x80a9e000, 5 reserved ranges)
ferrovisor: VM 'bench': vmid 1 vcpus 1 ram 256 MiB, hypervisor overhead 23927 bytes
ferrovisor: heap in use: 30 KiB
ferrovisor: first guest entry 320799 ticks (32079 us) after the hypervisor's first instruction
[bench] BENCH: timebase 10000000 Hz
[bench] BENCH: loop_overhead_median 1 ticks
[bench] BENCH: sbi_null_call_median 173 ticks
[bench] BENCH: sbi_null_call_mean 27626 ns
[bench] PASS: bench-guest/sbi-null-call
[bench] INFO: bench-guest: first touch of 64 blocks of 2 MiB from 0x80400000 to 0x88200000
[bench] BENCH: first_touch_2m_median 68619 ticks
[bench] BENCH: first_touch_2m_max 100761 ticks
[bench] BENCH: second_touch_2m_median 6 ticks
[bench] BENCH: first_touch_2m_blocks 64 blocks
[bench] PASS: bench-guest/first-touch
[bench] DONE: bench-guest passed=2 failed=0
ferrovisor: VM 'bench' powered off
ferrovisor: all VMs stopped (all clean); 12083 exits handled";

    /// The same guest on bare QEMU (no prefix).
    const BARE: &str = "\
OpenSBI v1.5.1
BENCH: timebase 10000000 Hz
BENCH: loop_overhead_median 1 ticks
BENCH: sbi_null_call_median 26 ticks
BENCH: sbi_null_call_mean 3412 ns
PASS: bench-guest/sbi-null-call
BENCH: first_touch_2m_median 91071 ticks
BENCH: first_touch_2m_max 113002 ticks
BENCH: second_touch_2m_median 3 ticks
BENCH: first_touch_2m_blocks 64 blocks
DONE: bench-guest passed=2 failed=0";

    fn lines(s: &str) -> Vec<&str> {
        s.lines().collect()
    }

    fn without(s: &str, needle: &str) -> Vec<String> {
        s.lines()
            .filter(|l| !l.contains(needle))
            .map(String::from)
            .collect()
    }

    #[test]
    fn guest_figures_under_ferrovisor() {
        let g = parse_guest_output(&lines(UNDER_FERROVISOR), Some("bench")).unwrap();
        assert_eq!(g.get("sbi_null_call_median"), Some(173.0));
        assert_eq!(g.get("sbi_null_call_mean"), Some(27626.0));
        assert_eq!(g.get("first_touch_2m_median"), Some(68619.0));
        assert_eq!(g.get("first_touch_2m_max"), Some(100761.0));
        assert_eq!(g.get("second_touch_2m_median"), Some(6.0));
        assert_eq!(g.get("loop_overhead_median"), Some(1.0));
        assert_eq!(g.get("timebase"), Some(10_000_000.0));
        assert_eq!(g.get("first_touch_2m_blocks"), Some(64.0));
        assert_eq!(g.lines.len(), 8);
        assert_eq!(g.lines[0].unit, "Hz");
    }

    #[test]
    fn guest_figures_on_bare_qemu() {
        let g = parse_guest_output(&lines(BARE), None).unwrap();
        assert_eq!(g.get("sbi_null_call_median"), Some(26.0));
        assert_eq!(g.get("first_touch_2m_median"), Some(91071.0));
    }

    #[test]
    fn prefix_selects_the_guest() {
        // Looking for unprefixed lines in the hypervisor's output finds none.
        let e = parse_guest_output(&lines(UNDER_FERROVISOR), None).unwrap_err();
        assert!(matches!(e, LineError::Missing(_)), "{e:?}");
        // Another VM's lines are not ours.
        let e = parse_guest_output(&lines(UNDER_FERROVISOR), Some("other")).unwrap_err();
        assert_eq!(
            e,
            LineError::Missing("[other] BENCH: sbi_null_call_median <value> ticks".into())
        );
    }

    #[test]
    fn every_missing_figure_is_named() {
        for spec in GUEST_FIGURES {
            let needle = format!("BENCH: {} ", spec.name);
            let e = parse_guest_output(&without(BARE, &needle), None).unwrap_err();
            assert_eq!(
                e,
                LineError::Missing(format!("BENCH: {} <value> {}", spec.name, spec.unit)),
                "{}",
                spec.name
            );
            assert!(e.to_string().contains(spec.name));
        }
    }

    #[test]
    fn malformed_bench_lines_are_errors() {
        let e = parse_bench_line("BENCH: sbi_null_call_median ticks").unwrap();
        assert!(matches!(e, Err(LineError::Malformed { .. })), "{e:?}");
        let e = parse_bench_line("BENCH: sbi_null_call_median many ticks").unwrap();
        assert!(
            e.as_ref()
                .unwrap_err()
                .to_string()
                .contains("`many` is not a number"),
            "{e:?}"
        );
        let e = parse_bench_line("BENCH: x NaN ticks").unwrap();
        assert!(e.is_err());
        assert!(parse_bench_line("INFO: BENCH: x 1 y").is_none());
        assert_eq!(
            parse_bench_line("BENCH: a 1.5 us").unwrap().unwrap(),
            BenchLine {
                name: "a".into(),
                value: 1.5,
                unit: "us".into()
            }
        );
    }

    #[test]
    fn wrong_unit_and_duplicates_are_errors() {
        let text = BARE.replace(
            "sbi_null_call_median 26 ticks",
            "sbi_null_call_median 26 ns",
        );
        let e = parse_guest_output(&lines(&text), None).unwrap_err();
        assert!(e.to_string().contains("expected `ticks`"), "{e}");
        let text = format!("{BARE}\nBENCH: timebase 1 Hz");
        let e = parse_guest_output(&lines(&text), None).unwrap_err();
        assert!(matches!(e, LineError::Duplicate { .. }), "{e:?}");
    }

    #[test]
    fn hypervisor_figures() {
        let h = parse_hypervisor_output(&lines(UNDER_FERROVISOR)).unwrap();
        assert_eq!(
            h,
            HypervisorFigures {
                first_entry_ticks: 320799,
                first_entry_us: 32079,
                vms: vec![VmReport {
                    name: "bench".into(),
                    vmid: 1,
                    vcpus: 1,
                    ram_mib: 256,
                    overhead_bytes: 23927,
                }],
                heap_kib: 30,
                exits: Some(12083),
            }
        );
    }

    #[test]
    fn hypervisor_figures_with_four_vms_and_no_exit_count() {
        let mut text = String::new();
        for i in 1..=4 {
            text.push_str(&format!(
                "ferrovisor: VM 'bench-{i}': vmid {i} vcpus 1 ram 256 MiB, hypervisor overhead {} bytes\n",
                20000 + i
            ));
        }
        text.push_str("ferrovisor: heap in use: 61 KiB\n");
        text.push_str("ferrovisor: first guest entry 10 ticks (1 us) after the hypervisor's first instruction\n");
        text.push_str("ferrovisor: VM 'bench-1' powered off\nferrovisor: all VMs stopped\n");
        let h = parse_hypervisor_output(&lines(&text)).unwrap();
        assert_eq!(h.vms.len(), 4);
        assert_eq!(h.vms[3].name, "bench-4");
        assert_eq!(h.vms[3].vmid, 4);
        assert_eq!(h.vms[3].overhead_bytes, 20004);
        assert_eq!(h.heap_kib, 61);
        assert_eq!(h.exits, None);
    }

    #[test]
    fn missing_hypervisor_lines_are_named() {
        let e =
            parse_hypervisor_output(&without(UNDER_FERROVISOR, "first guest entry")).unwrap_err();
        assert_eq!(e, LineError::Missing(FIRST_ENTRY_SHAPE.into()));
        let e = parse_hypervisor_output(&without(UNDER_FERROVISOR, "heap in use")).unwrap_err();
        assert_eq!(e, LineError::Missing(HEAP_SHAPE.into()));
        let e =
            parse_hypervisor_output(&without(UNDER_FERROVISOR, "hypervisor overhead")).unwrap_err();
        assert_eq!(e, LineError::Missing(VM_SHAPE.into()));
        assert!(e.to_string().contains("hypervisor overhead"));
    }

    #[test]
    fn malformed_hypervisor_lines_are_errors() {
        let bad = [
            "ferrovisor: first guest entry soon ticks (1 us) after the hypervisor's first instruction",
            "ferrovisor: first guest entry 5 ticks 1 us) after",
            "ferrovisor: heap in use: 30 MiB",
            "ferrovisor: VM 'x': vmid 1 vcpus 1 ram 256 MiB, hypervisor overhead lots bytes",
            "ferrovisor: VM 'x': vmid 1 vcpus 1 ram 256 MiB",
            "ferrovisor: all VMs stopped; many exits handled",
        ];
        for line in bad {
            let e = parse_hypervisor_output(&[line]).unwrap_err();
            assert!(matches!(e, LineError::Malformed { .. }), "{line}: {e:?}");
        }
        let twice = format!("{UNDER_FERROVISOR}\nferrovisor: heap in use: 31 KiB");
        assert!(matches!(
            parse_hypervisor_output(&lines(&twice)).unwrap_err(),
            LineError::Duplicate { .. }
        ));
    }
}
