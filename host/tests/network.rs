//! Network integration tests: Debian's kernel with its own virtio_net module
//! in VMs whose NICs are ports of the hypervisor's switches.
//!
//! - `two_vms_on_a_switch`: two Linux VMs on one switch (no uplink), static
//!   addresses; each sees its NIC with the MAC the package gave it; they
//!   ping each other. Then VM b turns hostile: with another source MAC its
//!   pings get no answer (the frames are dropped as spoofed), with a 2000-byte
//!   MTU a large ping gets none either (oversize frames dropped); with its own
//!   MAC and MTU back, pings work again and VM a was never disturbed. At
//!   power-off the hypervisor's counters show the spoofed and oversize drops
//!   on b's NIC and none on a's.
//! - `uplink_http_and_port_forward`: a VM on a switch whose uplink is the
//!   machine's virtio-net (QEMU user networking): it downloads a file from an
//!   HTTP server this test runs on 127.0.0.1 (reached at the gateway,
//!   10.0.2.2) and its SHA-256 matches; then a host client reaches busybox
//!   `httpd` in the VM through a QEMU port forward on 127.0.0.1.
//!
//! - `hostile_nic_beside_linux`: hostile-test attacks its own NIC on the
//!   switch while two Linux VMs ping each other over it; see the test.
//!
//! Each test writes a config with `machine.switches` and per-VM `nics`
//! (`target/qemu-cases/network-<test>.yaml`) and drives `ferrovisor run` on
//! it. Logs: `target/qemu-logs/network-<test>.log`.
//!
//! Needs `scripts/build.sh` and `scripts/fetch-linux.sh`. Run with
//! `cargo test -p ferrovisor --test network -- --test-threads=1`.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::thread;
use std::time::Duration;

use common::{Console, Vm, BOOT, COMMAND, MARKER, PROMPT};

/// `ferrovisor run --timeout`: the hard limit of a whole test.
const HARD_LIMIT_S: u64 = 900;

const MAC_A: [u8; 6] = [0x52, 0x54, 0x00, 0xab, 0x00, 0x01];
const MAC_B: [u8; 6] = [0x52, 0x54, 0x00, 0xab, 0x00, 0x02];
const MAC_H: [u8; 6] = [0x52, 0x54, 0x00, 0xab, 0x00, 0x03];

fn mac_str(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A NIC: VM index, switch index, MAC.
struct Nic(usize, u16, [u8; 6]);

/// A switch: name, and with an uplink its port forwards (none: no uplink).
struct Switch(&'static str, Option<Vec<String>>);

/// Writes `target/qemu-cases/network-<case>.yaml`: a 2-hart, 1 GiB machine
/// with `switches`, running `vms` with `nics`, and starts `ferrovisor run`
/// on it.
fn start(case: &str, vms: &[Vm], switches: &[Switch], nics: &[Nic]) -> Console {
    common::hypervisor_built();
    let name = format!("network-{case}");
    let mut yaml =
        String::from("machine:\n  arch: riscv64\n  cpus: 2\n  memory: 1024M\n  switches:\n");
    for Switch(sw, uplink) in switches {
        let _ = writeln!(yaml, "    - name: {sw}");
        if let Some(forwards) = uplink {
            let _ = writeln!(yaml, "      uplink: true");
            let list: Vec<String> = forwards.iter().map(|f| format!("\"{f}\"")).collect();
            let _ = writeln!(yaml, "      forwards: [{}]", list.join(", "));
        }
    }
    yaml.push_str("vms:\n");
    for (i, vm) in vms.iter().enumerate() {
        common::vm_yaml(&mut yaml, vm);
        let mine: Vec<&Nic> = nics.iter().filter(|n| n.0 == i).collect();
        if !mine.is_empty() {
            yaml.push_str("    nics:\n");
        }
        for n in mine {
            let sw = switches.get(usize::from(n.1)).map_or("?", |s| s.0);
            let _ = writeln!(
                yaml,
                "      - switch: {sw}\n        mac: \"{}\"",
                mac_str(n.2)
            );
        }
    }
    let path = common::write_yaml(&name, &yaml);
    Console::spawn(&name, &path, HARD_LIMIT_S, vms)
}

/// Waits until every VM of `names` printed its userspace marker (any order),
/// then for the first one's prompt (it has the console input).
fn boot_all(c: &mut Console, names: &[&'static str]) {
    let mut up = Vec::new();
    while up.len() < names.len() {
        let vm = c.wait_for("a VM's userspace marker", BOOT, |text| {
            let mut pos = 0;
            while let Some(end) = text[pos..].find('\n') {
                let line = &text[pos..pos + end];
                pos += end + 1;
                for name in names {
                    if line == format!("[{name}] {MARKER}") {
                        return Some((pos, *name));
                    }
                }
            }
            None
        });
        c.note(&format!("VM {vm} is up"));
        up.push(vm);
    }
    c.send("\n");
    c.expect_text(&format!("[{}] {PROMPT}", names[0]), COMMAND);
}

/// `eth0` up with `addr`; checks its MAC.
fn ifup(c: &mut Console, vm: &str, mac: [u8; 6], addr: &str) {
    let out = c.sh(vm, "cat /sys/class/net/eth0/address");
    assert!(
        out.iter().any(|l| l.trim() == mac_str(mac)),
        "{vm}: eth0 has address {out:?}, expected {}",
        mac_str(mac)
    );
    c.sh(
        vm,
        &format!("ip link set eth0 up && ip addr add {addr} dev eth0"),
    );
}

/// VMs `a` and `b` boot, get 10.0.0.1 and .2 on `eth0` and each pings the
/// other `n` times, every ping answered; `a` has the input focus then.
fn lan_up_and_ping(c: &mut Console, n: u32) {
    boot_all(c, &["a", "b"]);
    ifup(c, "a", MAC_A, "10.0.0.1/24");
    c.focus(1, "b");
    ifup(c, "b", MAC_B, "10.0.0.2/24");
    assert_eq!(ping(c, "b", &format!("-c {n} 10.0.0.1")), n, "b -> a");
    c.focus(0, "a");
    assert_eq!(ping(c, "a", &format!("-c {n} 10.0.0.2")), n, "a -> b");
}

/// `ping -c N` from `vm`; returns the packets received.
fn ping(c: &mut Console, vm: &str, args: &str) -> u32 {
    c.send(&format!("ping -W 1 {args}; echo ping-done\n"));
    let (out, _) = c.expect_vm_line(vm, "ping-done", COMMAND, |l| l == "ping-done");
    c.expect_text(&format!("[{vm}] {PROMPT}"), COMMAND);
    let line = out
        .iter()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or_else(|| panic!("no ping summary in {out:?}"));
    line.split(", ")
        .find_map(|p| p.strip_suffix(" packets received"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("bad ping summary {line:?}"))
}

/// The hypervisor's counter line for the NIC with `mac`, as `(name, value)`s.
fn nic_counters(c: &Console, vm: &str, mac: [u8; 6]) -> String {
    let want = format!("ferrovisor: VM '{vm}' virtio-net {}:", mac_str(mac));
    c.text
        .lines()
        .find(|l| l.starts_with(&want))
        .unwrap_or_else(|| panic!("no counters line `{want}`"))
        .to_string()
}

/// The number before `what` in `line` (`", 3 spoofed"` → 3).
fn count(line: &str, what: &str) -> u64 {
    let i = line
        .find(&format!(" {what}"))
        .unwrap_or_else(|| panic!("no `{what}` in {line:?}"));
    line[..i]
        .rsplit(|ch: char| !ch.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count before `{what}` in {line:?}"))
}

#[test]
fn two_vms_on_a_switch() {
    let vms = [Vm::linux("a", 1, 256), Vm::linux("b", 1, 256)];
    let mut c = start(
        "two-vms",
        &vms,
        &[Switch("lan", None)],
        &[Nic(0, 0, MAC_A), Nic(1, 0, MAC_B)],
    );
    lan_up_and_ping(&mut c, 3);
    // b spoofs another MAC: nothing it sends gets through.
    c.focus(1, "b");
    c.sh("b", "ip link set eth0 address 52:54:00:ab:00:99");
    assert_eq!(
        ping(&mut c, "b", "-c 3 10.0.0.1"),
        0,
        "spoofed pings answered"
    );
    c.sh("b", &format!("ip link set eth0 address {}", mac_str(MAC_B)));
    // Oversize frames (MTU 2000, 1900-byte pings) are dropped too.
    c.sh("b", "ip neigh flush dev eth0; ip link set eth0 mtu 2000");
    assert_eq!(
        ping(&mut c, "b", "-c 2 -s 1900 10.0.0.1"),
        0,
        "oversize pings answered"
    );
    c.sh("b", "ip link set eth0 mtu 1500");
    assert_eq!(ping(&mut c, "b", "-c 3 10.0.0.1"), 3, "b after its attack");
    c.poweroff("b");
    c.focus(0, "a");
    assert_eq!(ping(&mut c, "a", "-c 1 -w 3 10.0.0.2"), 0, "b is off");
    c.poweroff("a");
    c.expect_machine_end(true);
    let a = nic_counters(&c, "a", MAC_A);
    let b = nic_counters(&c, "b", MAC_B);
    c.note(&format!("counters: {a} / {b}"));
    assert!(count(&b, "spoofed") >= 3, "{b}");
    assert!(count(&b, "oversize") >= 2, "{b}");
    assert_eq!(
        count(&a, "spoofed") + count(&a, "oversize") + count(&a, "runt"),
        0,
        "{a}"
    );
    assert!(count(&a, "frames") > 0, "{a}");
}

/// The containment case: hostile-test's `mmio` and `net` phases, repeated
/// for as long as the machine runs, attack its own NIC on the switch two
/// Linux VMs ping each other over: bogus queue set-ups and rings of random
/// contents, then a working queue sending runts, oversize frames, frames
/// with another source MAC, offload headers that were not negotiated,
/// notification storms and floods of valid broadcasts. The Linux VMs' pings
/// all arrive, and the hostile NIC's counters show the refused accesses and
/// every kind of bad frame dropped; the operator's Ctrl-A x then stops every
/// VM cleanly.
#[test]
fn hostile_nic_beside_linux() {
    let vms = [
        Vm::linux("a", 1, 256),
        Vm::linux("b", 1, 256),
        Vm::bare("hostile", "hostile-test", 1, "phase=mmio,net count=300"),
    ];
    let mut c = start(
        "hostile",
        &vms,
        &[Switch("lan", None)],
        &[Nic(0, 0, MAC_A), Nic(1, 0, MAC_B), Nic(2, 0, MAC_H)],
    );
    lan_up_and_ping(&mut c, 5);
    let rounds = c
        .text
        .lines()
        .filter(|l| {
            l.starts_with("[hostile] INFO: hostile-test: phase net done: round")
                && l.contains(" 1 NICs,")
        })
        .count();
    c.note(&format!("hostile net rounds so far: {rounds}"));
    assert!(
        rounds > 0,
        "the hostile VM never finished a net round on its NIC"
    );
    c.note("Ctrl-A x: stop every VM");
    c.send("\x01x");
    c.expect_machine_end(true);
    let h = nic_counters(&c, "hostile", MAC_H);
    let a = nic_counters(&c, "a", MAC_A);
    c.note(&format!("counters: {h} / {a}"));
    for what in ["accesses", "runt", "oversize", "spoofed", "bad header"] {
        assert!(count(&h, what) > 0, "no {what} counted: {h}");
    }
    assert_eq!(
        count(&a, "spoofed") + count(&a, "runt") + count(&a, "oversize"),
        0,
        "{a}"
    );
}

/// Serves `body` as any path on a fresh 127.0.0.1 port (HTTP/1.0, one
/// connection at a time) until the test ends; returns the port.
fn http_server(body: Vec<u8>) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut req = [0u8; 1024];
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = s.read(&mut req);
            let head = format!(
                "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(&body);
        }
    });
    port
}

/// A port on 127.0.0.1 nobody listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn sha256_hex(data: &[u8]) -> String {
    let path = std::env::temp_dir().join(format!("fv-net-{}.bin", std::process::id()));
    std::fs::write(&path, data).unwrap();
    let out = Command::new("sha256sum").arg(&path).output().unwrap();
    let _ = std::fs::remove_file(&path);
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn uplink_http_and_port_forward() {
    // 300 KB of bytes that are not a repeating pattern.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let body: Vec<u8> = (0..300_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let want = sha256_hex(&body);
    let http = http_server(body);
    let fwd = free_port();
    let vms = [Vm::linux("web", 1, 256)];
    let mut c = start(
        "uplink",
        &vms,
        &[Switch("wan", Some(vec![format!("tcp:{fwd}:8080")]))],
        &[Nic(0, 0, MAC_A)],
    );
    c.expect_raw_line("the host virtio-net", BOOT, |l| {
        l.starts_with("ferrovisor: host virtio-net at 0x10008000 (virtio-mmio v2)")
    });
    boot_all(&mut c, &["web"]);
    ifup(&mut c, "web", MAC_A, "10.0.2.15/24");
    c.sh("web", "ip route add default via 10.0.2.2");
    let out = c.sh(
        "web",
        &format!("wget -q -O /tmp/f http://10.0.2.2:{http}/f && sha256sum /tmp/f"),
    );
    assert!(
        out.iter().any(|l| l.starts_with(&want)),
        "sha256 in the VM {out:?}, on the host {want}"
    );
    // A server in the VM, reached from the host through the forward.
    c.sh(
        "web",
        "mkdir -p /www && echo fv-served-from-the-vm > /www/index.html && httpd -p 8080 -h /www",
    );
    let mut got = String::new();
    for _ in 0..10 {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", fwd)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(20)));
            let _ = s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n");
            got.clear();
            let _ = s.read_to_string(&mut got);
            if got.contains("fv-served-from-the-vm") {
                break;
            }
        }
        thread::sleep(Duration::from_secs(1));
    }
    c.note(&format!("host client got {} bytes", got.len()));
    assert!(
        got.contains("fv-served-from-the-vm"),
        "through the port forward: {got:?}"
    );
    c.poweroff("web");
    c.expect_machine_end(true);
    let nic = nic_counters(&c, "web", MAC_A);
    assert_eq!(count(&nic, "spoofed"), 0, "{nic}");
}
