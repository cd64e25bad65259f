//! Prometheus metrics of a running instance (issue 11, point 4): the
//! records of one `stats` request (the hypervisor's machine line protocol:
//! `host`, `vm`, `vcpu`, `hart`) as a Prometheus text exposition (format
//! 0.0.4, what `promtool check metrics` reads; [`exposition`]), and a
//! checker of that format ([`check_exposition`]) for the tests.
//!
//! Times come in timer ticks and are converted to seconds with the `host`
//! record's `timebase`. The hypervisor reports run time per vCPU and busy
//! (`run_ticks`) and idle time per hart; it does not report a vCPU's wait or
//! steal time, so there are no such metrics. Counters restart from zero when
//! a VM is rebooted or started again (the hypervisor's own counters do).

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

use super::records::Record;

type Labels = Vec<(String, String)>;
type FCounter = Family<Labels, Counter<f64, AtomicU64>>;
type FGauge = Family<Labels, Gauge<f64, AtomicU64>>;

/// VM states the hypervisor reports (`ferrovisor_vm_state` has one series
/// per state, 1 for the VM's current one).
pub const VM_STATES: [&str; 6] = [
    "defined",
    "running",
    "paused",
    "rebooting",
    "stopped",
    "destroyed",
];

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn num(r: &Record, key: &str) -> f64 {
    r.get(key)
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
}

struct Families {
    reg: Registry,
}

impl Families {
    fn counter(&mut self, name: &str, help: &str) -> FCounter {
        let f = FCounter::default();
        self.reg.register(name, help, f.clone());
        f
    }

    fn gauge(&mut self, name: &str, help: &str) -> FGauge {
        let f = FGauge::default();
        self.reg.register(name, help, f.clone());
        f
    }
}

/// The Prometheus text exposition of the records of a `stats` reply.
/// `up` is 0 when the hypervisor did not answer (then `records` is empty).
pub fn exposition(records: &[Record], up: bool) -> String {
    let mut f = Families {
        reg: Registry::default(),
    };
    // Counter names are given without `_total`: the encoder adds it to
    // their samples (and [`to_prometheus_text`] to their HELP and TYPE).
    let [up_g, uptime, host_mem, host_free, state, vm_mem, vm_res, vm_vcpus] = [
        (
            "ferrovisor_up",
            "Whether the hypervisor answered this scrape (1) or not (0)",
        ),
        (
            "ferrovisor_host_uptime_seconds",
            "Time since the hypervisor booted",
        ),
        (
            "ferrovisor_host_memory_bytes",
            "Memory the hypervisor manages for guests",
        ),
        (
            "ferrovisor_host_memory_free_bytes",
            "Memory the hypervisor has not given to any VM",
        ),
        (
            "ferrovisor_vm_state",
            "The VM's state: 1 for its current state, 0 for the others",
        ),
        ("ferrovisor_vm_memory_bytes", "The VM's configured memory"),
        (
            "ferrovisor_vm_resident_bytes",
            "Guest memory the hypervisor has mapped for the VM",
        ),
        ("ferrovisor_vm_vcpus", "The VM's number of vCPUs"),
    ]
    .map(|(n, h)| f.gauge(n, h));
    let [run, migrations, exceptions, exits, sbi, irqs, busy, idle] = [
        (
            "ferrovisor_vcpu_run_seconds",
            "Time the vCPU has run on a hart (wait and steal time are not reported)",
        ),
        (
            "ferrovisor_vcpu_migrations",
            "Times the vCPU moved to another hart",
        ),
        (
            "ferrovisor_vcpu_exceptions",
            "Guest exceptions the hypervisor handled for the vCPU",
        ),
        (
            "ferrovisor_vcpu_exits",
            "Guest exits of the vCPU, by reason",
        ),
        (
            "ferrovisor_vcpu_sbi_calls",
            "SBI calls of the vCPU, by SBI extension",
        ),
        (
            "ferrovisor_vcpu_interrupts_injected",
            "Interrupts injected into the vCPU, by kind",
        ),
        ("ferrovisor_hart_busy_seconds", "Time the hart ran vCPUs"),
        ("ferrovisor_hart_idle_seconds", "Time the hart was idle"),
    ]
    .map(|(n, h)| f.counter(n, h));

    up_g.get_or_create(&Vec::new())
        .set(if up { 1.0 } else { 0.0 });
    let timebase = records
        .iter()
        .find(|r| r.kind == "host")
        .map(|h| num(h, "timebase"))
        .filter(|&t| t > 0.0)
        .unwrap_or(10_000_000.0);
    let secs = |r: &Record, key: &str| num(r, key) / timebase;
    for r in records {
        match r.kind.as_str() {
            "host" => {
                uptime
                    .get_or_create(&Vec::new())
                    .set(secs(r, "uptime_ticks"));
                host_mem.get_or_create(&Vec::new()).set(num(r, "memory"));
                host_free.get_or_create(&Vec::new()).set(num(r, "free"));
            }
            "vm" => {
                let vm = r.get("name").unwrap_or("?");
                let now = r.get("state").unwrap_or("?");
                for s in VM_STATES {
                    let v = if s == now { 1.0 } else { 0.0 };
                    state
                        .get_or_create(&labels(&[("vm", vm), ("state", s)]))
                        .set(v);
                }
                let l = labels(&[("vm", vm)]);
                vm_mem.get_or_create(&l).set(num(r, "memory"));
                vm_res.get_or_create(&l).set(num(r, "resident"));
                vm_vcpus.get_or_create(&l).set(num(r, "vcpus"));
            }
            "vcpu" => {
                let vm = r.get("vm").unwrap_or("?");
                let vcpu = r.get("vcpu").unwrap_or("?");
                let l = labels(&[("vm", vm), ("vcpu", vcpu)]);
                run.get_or_create(&l).inc_by(secs(r, "run_ticks"));
                migrations.get_or_create(&l).inc_by(num(r, "migrations"));
                exceptions.get_or_create(&l).inc_by(num(r, "exceptions"));
                for (k, v) in &r.fields {
                    let Some((group, name)) = k.split_once('.') else {
                        continue;
                    };
                    let (fam, label) = match group {
                        "exit" => (&exits, "reason"),
                        "sbi" => (&sbi, "extension"),
                        "irq" => (&irqs, "kind"),
                        _ => continue,
                    };
                    let v = v.parse::<f64>().unwrap_or(0.0);
                    fam.get_or_create(&labels(&[("vm", vm), ("vcpu", vcpu), (label, name)]))
                        .inc_by(v);
                }
            }
            "hart" => {
                let l = labels(&[("hart", r.get("hartid").unwrap_or("?"))]);
                busy.get_or_create(&l).inc_by(secs(r, "run_ticks"));
                idle.get_or_create(&l).inc_by(secs(r, "idle_ticks"));
            }
            _ => {}
        }
    }
    let mut open = String::new();
    // Writing to a String cannot fail.
    let _ = encode(&mut open, &f.reg);
    to_prometheus_text(&open)
}

/// prometheus-client writes OpenMetrics, where a counter family `x` has
/// samples `x_total`; the Prometheus text format names the family
/// `x_total` too, and has no `# EOF`.
fn to_prometheus_text(open: &str) -> String {
    let counters: Vec<&str> = open
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(open.len() + 64);
    for line in open.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|p| {
            let rest = line.strip_prefix(p)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(&name)
                .then(|| format!("{p}{name}_total {tail}"))
        });
        // A family without labels: `name{} 1.0` -> `name 1.0`.
        let line = renamed.as_deref().unwrap_or(line).replacen("{} ", " ", 1);
        out.push_str(&line);
        out.push('\n');
    }
    out
}

fn valid_metric_name(n: &str) -> bool {
    let mut b = n.bytes();
    b.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_' || c == b':')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':')
}

/// Checks a Prometheus text exposition: every family has `# HELP` and then
/// `# TYPE` before its samples, names are valid and carry the `ferrovisor_`
/// prefix, counters end in `_total` (and nothing else does), values are
/// numbers, label sets are well formed, every sample belongs to the family
/// declared last. The error names the line.
pub fn check_exposition(text: &str) -> Result<(), String> {
    let mut helped: Vec<String> = Vec::new();
    let mut typed: Vec<(String, String)> = Vec::new();
    if text.is_empty() {
        return Err("an empty exposition".into());
    }
    for (i, line) in text.lines().enumerate() {
        let at = |what: &str| format!("line {}: {what}: {line:?}", i + 1);
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (kw, name, val) = (parts.next(), parts.next(), parts.next());
            let (Some(kw), Some(name), Some(val)) = (kw, name, val) else {
                return Err(at("a comment that is not HELP, TYPE or UNIT"));
            };
            if !valid_metric_name(name) || !name.starts_with("ferrovisor_") {
                return Err(at("invalid metric name or no ferrovisor_ prefix"));
            }
            match kw {
                "HELP" if !val.is_empty() => helped.push(name.to_string()),
                "TYPE"
                    if [
                        "counter",
                        "gauge",
                        "info",
                        "histogram",
                        "summary",
                        "unknown",
                    ]
                    .contains(&val) =>
                {
                    if !helped.iter().any(|h| h == name) {
                        return Err(at("TYPE before HELP"));
                    }
                    if (val == "counter") != name.ends_with("_total") {
                        return Err(at("a counter whose name does not end in _total, or a _total that is not a counter"));
                    }
                    typed.push((name.to_string(), val.to_string()));
                }
                _ => return Err(at("bad HELP or TYPE")),
            }
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .ok_or_else(|| at("a sample without a value"))?;
        if value.parse::<f64>().is_err() {
            return Err(at("a value that is not a number"));
        }
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, Some(l)),
            None => (series, None),
        };
        if let Some(l) = labels {
            let inner = l.strip_suffix('}').ok_or_else(|| at("unclosed labels"))?;
            for pair in inner.split("\",").filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once("=\"").ok_or_else(|| at("bad label"))?;
                if !valid_metric_name(k) || k.contains(':') || v.contains('\n') {
                    return Err(at("bad label"));
                }
            }
        }
        if !valid_metric_name(name) {
            return Err(at("invalid sample name"));
        }
        if typed.last().map(|(f, _)| f.as_str()) != Some(name) {
            return Err(at(
                "a sample that is not of the family whose HELP and TYPE came last",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::instance::records::parse_reply;

    const STATS: &str = "host timebase=10000000 uptime_ticks=50000000 memory=1073741824 free=536870912 harts=2\n\
        vm index=0 name=a state=running vcpus=1 memory=268435456 resident=1000 weight=1 harts=0 focus=1\n\
        vcpu vm=a vcpu=0 state=running hart=0 pinned=0 run_ticks=20000000 migrations=3 exceptions=7 exit.wfi=5 exit.sbi=9 sbi.time=4 irq.timer=2\n\
        hart hart=0 hartid=0 vcpus=1 run_ticks=30000000 idle_ticks=10000000\nok\n";

    #[test]
    fn stats_become_a_valid_exposition() {
        let recs = parse_reply(STATS).unwrap();
        let text = exposition(&recs, true);
        check_exposition(&text).unwrap();
        for want in [
            "ferrovisor_up 1.0",
            "ferrovisor_host_uptime_seconds 5.0",
            "ferrovisor_vcpu_run_seconds_total{vm=\"a\",vcpu=\"0\"} 2.0",
            "ferrovisor_vcpu_exits_total{vm=\"a\",vcpu=\"0\",reason=\"wfi\"} 5.0",
            "ferrovisor_vcpu_sbi_calls_total{vm=\"a\",vcpu=\"0\",extension=\"time\"} 4.0",
            "ferrovisor_vcpu_interrupts_injected_total{vm=\"a\",vcpu=\"0\",kind=\"timer\"} 2.0",
            "ferrovisor_vm_state{vm=\"a\",state=\"running\"} 1.0",
            "ferrovisor_vm_state{vm=\"a\",state=\"paused\"} 0.0",
            "ferrovisor_hart_idle_seconds_total{hart=\"0\"} 1.0",
        ] {
            assert!(text.contains(want), "{want} not in\n{text}");
        }
        // The hypervisor gone: only `up`, still valid.
        let down = exposition(&[], false);
        check_exposition(&down).unwrap();
        assert!(down.contains("ferrovisor_up 0.0"), "{down}");
        assert!(
            text.contains("# TYPE ferrovisor_vcpu_exits_total counter"),
            "{text}"
        );
        assert!(!text.contains("# EOF"), "{text}");
    }

    #[test]
    fn the_checker_refuses_bad_expositions() {
        for bad in [
            "# HELP ferrovisor_y_total Y\n# TYPE ferrovisor_x_total counter\nferrovisor_x_total 1\n",
            "ferrovisor_x_total 1\n",
            "# HELP ferrovisor_x X\n# TYPE ferrovisor_x counter\nferrovisor_x 1\n",
            "# HELP ferrovisor_x_total X\n# TYPE ferrovisor_x_total gauge\nferrovisor_x_total 1\n",
            "# HELP ferrovisor_x X\n# TYPE ferrovisor_x gauge\nferrovisor_x one\n",
            "# HELP ferrovisor_x X\n# TYPE ferrovisor_x gauge\nferrovisor_y 1\n",
            "# HELP x X\n# TYPE x gauge\nx 1\n",
            "# HELP ferrovisor_x X\n# TYPE ferrovisor_x gauge\nferrovisor_x{9a=\"b\"} 1\n",
            "# HELP ferrovisor_x X\n# TYPE ferrovisor_x gauge\nferrovisor_x{a=\"b\" 1\n",
            "",
        ] {
            assert!(check_exposition(bad).is_err(), "accepted {bad:?}");
        }
        check_exposition(
            "# HELP ferrovisor_x_total X\n# TYPE ferrovisor_x_total counter\nferrovisor_x_total{a=\"b\",c=\"d\"} 1\n",
        )
        .unwrap();
    }
}
