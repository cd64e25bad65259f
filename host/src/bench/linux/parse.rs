//! Reading the Linux guest's console: its readiness marker and the status line
//! before it, and the `BENCH:` lines of the in-guest benchmarks.

use crate::bench::parse::{parse_bench_line, split_vm_prefix, LineError};

/// The line the initramfs prints once userspace is up.
pub const READY_MARKER: &str = "FERROVISOR-GUEST-READY";

/// The shape of the initramfs's status line, printed just before the marker.
pub const STATUS_SHAPE: &str =
    "ferrovisor-guest: kernel <release>, <n> cpu(s), modules: <list>, uptime <seconds>s";

const STATUS_PREFIX: &str = "ferrovisor-guest: kernel ";

/// What a boot reported up to the marker.
#[derive(Clone, Debug, PartialEq)]
pub struct BootStatus {
    /// `uname -r`.
    pub release: String,
    /// CPUs the guest saw (`nproc`).
    pub cpus: u32,
    /// The guest's `/proc/uptime` when it printed the line, seconds.
    pub uptime_s: f64,
    /// Index (in the lines given) of the marker line.
    pub marker_index: usize,
}

fn malformed(line: &str, problem: impl Into<String>) -> LineError {
    LineError::Malformed {
        line: line.to_string(),
        problem: problem.into(),
    }
}

/// The console lines of one guest: those prefixed `[vm] ` when `vm` is given
/// (under the hypervisor), with the prefix removed; all lines otherwise (bare
/// QEMU, where the kernel's own `[    1.234] ` timestamps must not be taken for a
/// VM prefix). Each comes with its index in `lines`.
pub fn guest_lines<'a, S: AsRef<str>>(
    lines: &'a [S],
    vm: Option<&'a str>,
) -> impl Iterator<Item = (usize, &'a str)> + 'a {
    lines.iter().enumerate().filter_map(move |(i, l)| {
        let l = l.as_ref();
        match vm {
            Some(name) => match split_vm_prefix(l) {
                (Some(p), rest) if p == name => Some((i, rest)),
                _ => None,
            },
            None => Some((i, l.trim_start())),
        }
    })
}

/// Whether `line` (a guest line, prefix removed) is the readiness marker.
pub fn is_marker(line: &str) -> bool {
    line.trim_end() == READY_MARKER
}

/// Reads one status line (`ferrovisor-guest: kernel …, uptime 4.48s`); `None`
/// if it is not one at all.
pub fn parse_status_line(line: &str) -> Option<Result<(String, u32, f64), LineError>> {
    let rest = line.trim_end().strip_prefix(STATUS_PREFIX)?;
    let bad = |what: &str| malformed(line, format!("{what}; expected `{STATUS_SHAPE}`"));
    let Some((release, rest)) = rest.split_once(", ") else {
        return Some(Err(bad("no kernel release")));
    };
    let Some((cpus, rest)) = rest.split_once(" cpu(s), ") else {
        return Some(Err(bad("no cpu count")));
    };
    let Ok(cpus) = cpus.trim().parse::<u32>() else {
        return Some(Err(bad(&format!("cpu count `{cpus}` is not a number"))));
    };
    // The module list may contain anything but the uptime is always last.
    let Some((_, uptime)) = rest.rsplit_once(", uptime ") else {
        return Some(Err(bad("no uptime")));
    };
    let Some(uptime) = uptime.strip_suffix('s') else {
        return Some(Err(bad(&format!("uptime `{uptime}` has no `s`"))));
    };
    match uptime.parse::<f64>() {
        Ok(u) if u.is_finite() && u >= 0.0 => Some(Ok((release.to_string(), cpus, u))),
        _ => Some(Err(bad(&format!("uptime `{uptime}` is not a number")))),
    }
}

/// Finds the guest's first readiness marker and the status line before it (the
/// last one before the marker: a late kernel message may come in between).
pub fn parse_boot<S: AsRef<str>>(lines: &[S], vm: Option<&str>) -> Result<BootStatus, LineError> {
    let who = vm.map(|v| format!("[{v}] ")).unwrap_or_default();
    let mut status: Option<(String, u32, f64)> = None;
    for (i, line) in guest_lines(lines, vm) {
        if is_marker(line) {
            let Some((release, cpus, uptime_s)) = status else {
                return Err(LineError::Missing(format!(
                    "{who}{STATUS_SHAPE}` before `{who}{READY_MARKER}"
                )));
            };
            return Ok(BootStatus {
                release,
                cpus,
                uptime_s,
                marker_index: i,
            });
        }
        if let Some(parsed) = parse_status_line(line) {
            status = Some(parsed?);
        }
    }
    Err(LineError::Missing(format!("{who}{READY_MARKER}")))
}

/// A benchmark's result line in the guest: `BENCH: <name> <ns> ns`.
pub const RESULT_SHAPE: &str = "BENCH: <name> <nanoseconds> ns";

/// The suffix the guest's timing function appends to a benchmark's name when
/// its command failed.
pub const FAILED_SUFFIX: &str = "-FAILED";

/// One result line: which benchmark and how long it took.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Benchmark name.
    pub name: String,
    /// Nanoseconds.
    pub ns: f64,
}

/// Reads the `BENCH:` lines of one guest (from line index `from` on) and checks
/// that each `(name, count)` of `expected` appears exactly `count` times, with
/// unit `ns`, not marked failed, and that no other name appears. Returns the
/// samples per name, in `expected` order, each in the order printed.
pub fn parse_results<S: AsRef<str>>(
    lines: &[S],
    vm: Option<&str>,
    from: usize,
    expected: &[(&str, usize)],
) -> Result<Vec<Vec<f64>>, LineError> {
    let who = vm.map(|v| format!("[{v}] ")).unwrap_or_default();
    let mut out: Vec<Vec<f64>> = vec![Vec::new(); expected.len()];
    for (i, line) in guest_lines(lines, vm) {
        if i < from {
            continue;
        }
        let Some(parsed) = parse_bench_line(line.trim_end()) else {
            continue;
        };
        let b = parsed?;
        if let Some(name) = b.name.strip_suffix(FAILED_SUFFIX) {
            return Err(malformed(
                line,
                format!(
                    "benchmark `{name}` failed in the guest (see the command's output above it)"
                ),
            ));
        }
        if b.unit != "ns" {
            return Err(malformed(line, format!("unit `{}`, expected `ns`", b.unit)));
        }
        if b.value < 0.0 {
            return Err(malformed(line, "negative time"));
        }
        let Some(k) = expected.iter().position(|(n, _)| *n == b.name) else {
            return Err(malformed(line, format!("unknown benchmark `{}`", b.name)));
        };
        let (Some(slot), Some(&(_, reps))) = (out.get_mut(k), expected.get(k)) else {
            continue;
        };
        if slot.len() == reps {
            return Err(LineError::Duplicate {
                what: format!("benchmark `{}` more than {reps} time(s)", b.name),
                line: line.to_string(),
            });
        }
        slot.push(b.value);
    }
    for ((name, reps), got) in expected.iter().zip(&out) {
        if got.len() < *reps {
            return Err(LineError::Missing(format!(
                "{who}BENCH: {name} <nanoseconds> ns` (repetition {} of {reps}) after `{who}{READY_MARKER}",
                got.len() + 1
            )));
        }
    }
    Ok(out)
}

/// Reads the hypervisor's per-reason exit counts of VM `vm` (`ferrovisor: VM
/// '<vm>' exits: sbi 1515 mmio-read 12122 …`, printed when the VM stops);
/// `None` if there is no such line.
pub fn parse_exit_kinds<S: AsRef<str>>(
    lines: &[S],
    vm: &str,
) -> Result<Option<Vec<(String, u64)>>, LineError> {
    let head = format!("ferrovisor: VM '{vm}' exits:");
    let Some(line) = lines
        .iter()
        .map(AsRef::as_ref)
        .find(|l| l.trim_start().starts_with(&head))
    else {
        return Ok(None);
    };
    let rest = line.trim_start().get(head.len()..).unwrap_or_default();
    let tokens: Vec<&str> = rest.split_whitespace().collect();
    tokens
        .chunks(2)
        .map(|pair| match pair {
            [kind, n] => n
                .parse::<u64>()
                .map(|n| (kind.to_string(), n))
                .map_err(|_| malformed(line, format!("count `{n}` is not a whole number"))),
            _ => Err(malformed(line, "expected `<reason> <count>` pairs")),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// Whether the console's unfinished last line is a shell prompt (`… # `,
/// possibly followed by the line editor's cursor query `ESC[6n`).
pub fn is_prompt(partial: &str) -> bool {
    let p = partial.trim_end_matches("\u{1b}[6n");
    p.ends_with("# ")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    /// The end of a real boot under Ferrovisor (console=ttyS0), VM `linux`.
    const UNDER_FERROVISOR: &str = "\
ferrovisor: first guest entry 3375184 ticks (337518 us) after the hypervisor's first instruction
[linux] [    6.339926] Freeing unused kernel image (initmem) memory: 2684K
[linux] [    6.357998] Run /init as init process
[linux] ferrovisor-guest: kernel 6.12.107+deb13-riscv64, 2 cpu(s), modules: virtio_mmio virtio_blk failover net_failover virtio_net virtio_rng, uptime 4.48s
[linux] FERROVISOR-GUEST-READY
[linux] 
[linux] BusyBox v1.37.0 (Debian 1:1.37.0-6+b9) built-in shell (ash)
[linux] guest:~# \u{1b}[6nfvb cpu_loop fvc 20000
[linux] BENCH: cpu_loop 1228658300 ns
[linux] guest:~# \u{1b}[6nfvb syscall_loop dd if=/dev/zero of=/dev/null bs=1 count=100000
[linux] 100000+0 records in
[linux] 100000+0 records out
[linux] BENCH: syscall_loop 1489983100 ns
[linux] guest:~# \u{1b}[6nfvb cpu_loop fvc 20000
[linux] BENCH: cpu_loop 1203497300 ns
[linux] guest:~# \u{1b}[6nfvb syscall_loop dd if=/dev/zero of=/dev/null bs=1 count=100000
[linux] BENCH: syscall_loop 1390497700 ns
[linux] guest:~# \u{1b}[6npoweroff -f
ferrovisor: VM 'linux' powered off";

    /// The same on bare QEMU (quiet), where kernel lines look like a prefix.
    const BARE: &str = "\
OpenSBI v1.5.1
[    0.000000] Linux version 6.12.107+deb13-riscv64
ferrovisor-guest: kernel 6.12.107+deb13-riscv64, 2 cpu(s), modules: none, uptime 4.50s
[    4.600000] random: crng init done
FERROVISOR-GUEST-READY
guest:~# fvb cpu_loop fvc 20000
BENCH: cpu_loop 1176294500 ns";

    fn lines(s: &str) -> Vec<&str> {
        s.lines().collect()
    }

    fn each<'a>(names: &[&'a str], reps: usize) -> Vec<(&'a str, usize)> {
        names.iter().map(|n| (*n, reps)).collect()
    }

    #[test]
    fn boot_under_ferrovisor() {
        let l = lines(UNDER_FERROVISOR);
        let b = parse_boot(&l, Some("linux")).unwrap();
        assert_eq!(b.release, "6.12.107+deb13-riscv64");
        assert_eq!(b.cpus, 2);
        assert_eq!(b.uptime_s, 4.48);
        assert_eq!(b.marker_index, 4);
        assert_eq!(l[b.marker_index], "[linux] FERROVISOR-GUEST-READY");
    }

    #[test]
    fn boot_on_bare_qemu_with_a_kernel_line_in_between() {
        let b = parse_boot(&lines(BARE), None).unwrap();
        assert_eq!(b.cpus, 2);
        assert_eq!(b.uptime_s, 4.5);
        assert_eq!(b.marker_index, 4);
    }

    #[test]
    fn missing_marker_and_status_line_are_named() {
        let no_marker: Vec<&str> = lines(UNDER_FERROVISOR)
            .into_iter()
            .filter(|l| !l.contains(READY_MARKER))
            .collect();
        let e = parse_boot(&no_marker, Some("linux")).unwrap_err();
        assert_eq!(
            e,
            LineError::Missing("[linux] FERROVISOR-GUEST-READY".into())
        );
        let no_status: Vec<&str> = lines(BARE)
            .into_iter()
            .filter(|l| !l.starts_with("ferrovisor-guest"))
            .collect();
        let e = parse_boot(&no_status, None).unwrap_err();
        assert!(matches!(e, LineError::Missing(_)), "{e:?}");
        let text = e.to_string();
        assert!(text.contains("uptime <seconds>s"), "{text}");
        assert!(text.contains(READY_MARKER), "{text}");
        // Another VM's marker is not ours.
        let e = parse_boot(&lines(UNDER_FERROVISOR), Some("other")).unwrap_err();
        assert_eq!(
            e,
            LineError::Missing("[other] FERROVISOR-GUEST-READY".into())
        );
    }

    #[test]
    fn status_line_fields() {
        assert_eq!(
            parse_status_line(
                "ferrovisor-guest: kernel 6.1.0, 1 cpu(s), modules: none, uptime 12.00s"
            ),
            Some(Ok(("6.1.0".into(), 1, 12.0)))
        );
        assert_eq!(
            parse_status_line("ferrovisor-guest: insmod x: failed"),
            None
        );
        assert_eq!(parse_status_line("FERROVISOR-GUEST-READY"), None);
        for bad in [
            "ferrovisor-guest: kernel 6.1.0",
            "ferrovisor-guest: kernel 6.1.0, two cpu(s), modules: none, uptime 1.00s",
            "ferrovisor-guest: kernel 6.1.0, 2 cpu(s), modules: none",
            "ferrovisor-guest: kernel 6.1.0, 2 cpu(s), modules: none, uptime 1.00",
            "ferrovisor-guest: kernel 6.1.0, 2 cpu(s), modules: none, uptime soon s",
            "ferrovisor-guest: kernel 6.1.0, 2 cpu(s), modules: none, uptime -1s",
        ] {
            let r = parse_status_line(bad).unwrap();
            assert!(
                matches!(r, Err(LineError::Malformed { .. })),
                "{bad}: {r:?}"
            );
        }
        // A malformed status line before the marker is an error, not skipped.
        let text = "ferrovisor-guest: kernel x, 2 cpu(s), modules: none, uptime ?s\nFERROVISOR-GUEST-READY";
        assert!(matches!(
            parse_boot(&lines(text), None),
            Err(LineError::Malformed { .. })
        ));
    }

    #[test]
    fn results_per_benchmark() {
        let l = lines(UNDER_FERROVISOR);
        let r = parse_results(
            &l,
            Some("linux"),
            4,
            &each(&["cpu_loop", "syscall_loop"], 2),
        )
        .unwrap();
        assert_eq!(
            r,
            vec![
                vec![1_228_658_300.0, 1_203_497_300.0],
                vec![1_489_983_100.0, 1_390_497_700.0]
            ]
        );
        let r = parse_results(&lines(BARE), None, 0, &each(&["cpu_loop"], 1)).unwrap();
        assert_eq!(r, vec![vec![1_176_294_500.0]]);
    }

    #[test]
    fn results_ignore_the_echoed_command_and_lines_before_from() {
        // The command as typed never contains `BENCH:` (it is written BEN\CH:).
        let text = "guest:~# fvb(){ …;echo BEN\\CH: $n $((T-s)) ns;}\nBENCH: cpu_loop 5 ns\nBENCH: cpu_loop 7 ns";
        let r = parse_results(&lines(text), None, 2, &each(&["cpu_loop"], 1)).unwrap();
        assert_eq!(r, vec![vec![7.0]]);
    }

    #[test]
    fn missing_failed_and_extra_results_are_errors() {
        let l = lines(UNDER_FERROVISOR);
        let e = parse_results(
            &l,
            Some("linux"),
            0,
            &each(&["cpu_loop", "syscall_loop", "pages_anon"], 2),
        )
        .unwrap_err();
        assert_eq!(
            e,
            LineError::Missing(
                "[linux] BENCH: pages_anon <nanoseconds> ns` (repetition 1 of 2) after `[linux] FERROVISOR-GUEST-READY".into()
            )
        );
        let e = parse_results(
            &l,
            Some("linux"),
            0,
            &each(&["cpu_loop", "syscall_loop"], 3),
        )
        .unwrap_err();
        assert!(e.to_string().contains("repetition 3 of 3"), "{e}");
        let e = parse_results(
            &l,
            Some("linux"),
            0,
            &each(&["cpu_loop", "syscall_loop"], 1),
        )
        .unwrap_err();
        assert!(matches!(e, LineError::Duplicate { .. }), "{e:?}");
        let e = parse_results(&l, Some("linux"), 0, &each(&["cpu_loop"], 2)).unwrap_err();
        assert!(
            e.to_string().contains("unknown benchmark `syscall_loop`"),
            "{e}"
        );

        let failed = "BENCH: pages_tmpfs-FAILED 123 ns";
        let e = parse_results(&[failed], None, 0, &each(&["pages_tmpfs"], 1)).unwrap_err();
        assert!(
            e.to_string().contains("benchmark `pages_tmpfs` failed"),
            "{e}"
        );
        let e = parse_results(
            &["BENCH: cpu_loop 5 ticks"],
            None,
            0,
            &each(&["cpu_loop"], 1),
        )
        .unwrap_err();
        assert!(e.to_string().contains("expected `ns`"), "{e}");
        let e = parse_results(
            &["BENCH: cpu_loop five ns"],
            None,
            0,
            &each(&["cpu_loop"], 1),
        )
        .unwrap_err();
        assert!(matches!(e, LineError::Malformed { .. }), "{e:?}");
        let e = parse_results(&["BENCH: cpu_loop -5 ns"], None, 0, &each(&["cpu_loop"], 1))
            .unwrap_err();
        assert!(e.to_string().contains("negative"), "{e}");
    }

    #[test]
    fn results_with_different_counts_per_name() {
        let text = "BENCH: warmup_cpu_loop 9 ns\nBENCH: cpu_loop 5 ns\nBENCH: cpu_loop 6 ns";
        let r = parse_results(
            &lines(text),
            None,
            0,
            &[("warmup_cpu_loop", 1), ("cpu_loop", 2)],
        )
        .unwrap();
        assert_eq!(r, vec![vec![9.0], vec![5.0, 6.0]]);
        let e = parse_results(
            &lines(text),
            None,
            0,
            &[("warmup_cpu_loop", 2), ("cpu_loop", 2)],
        )
        .unwrap_err();
        assert!(e.to_string().contains("warmup_cpu_loop"), "{e}");
    }

    #[test]
    fn exit_kinds() {
        let text = "ferrovisor: VM 'linux' exits: sbi 1515 mmio-read 12122 wfi 7\nferrovisor: VM 'linux' powered off";
        assert_eq!(
            parse_exit_kinds(&lines(text), "linux").unwrap(),
            Some(vec![
                ("sbi".to_string(), 1515),
                ("mmio-read".to_string(), 12122),
                ("wfi".to_string(), 7)
            ])
        );
        assert_eq!(parse_exit_kinds(&lines(text), "other").unwrap(), None);
        assert_eq!(
            parse_exit_kinds(&lines(UNDER_FERROVISOR), "linux").unwrap(),
            None
        );
        for bad in [
            "ferrovisor: VM 'linux' exits: sbi",
            "ferrovisor: VM 'linux' exits: sbi many",
        ] {
            assert!(
                matches!(
                    parse_exit_kinds(&[bad], "linux"),
                    Err(LineError::Malformed { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn prompts() {
        assert!(is_prompt("guest:~# "));
        assert!(is_prompt("guest:~# \u{1b}[6n"));
        assert!(is_prompt("[linux] guest:/tmp# \u{1b}[6n"));
        assert!(!is_prompt("guest:~# ls"));
        assert!(!is_prompt("100000+0 records in"));
        assert!(!is_prompt(""));
    }

    #[test]
    fn guest_lines_strip_only_the_vm_prefix() {
        let l = lines(UNDER_FERROVISOR);
        let g: Vec<(usize, &str)> = guest_lines(&l, Some("linux")).take(2).collect();
        assert_eq!(
            g[0],
            (
                1,
                "[    6.339926] Freeing unused kernel image (initmem) memory: 2684K"
            )
        );
        let b = lines(BARE);
        let g: Vec<&str> = guest_lines(&b, None).map(|(_, s)| s).collect();
        assert_eq!(g.len(), b.len());
        assert_eq!(g[1], "[    0.000000] Linux version 6.12.107+deb13-riscv64");
    }
}
