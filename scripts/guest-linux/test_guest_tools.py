#!/usr/bin/env python3
"""Tests of drive.py and mkinitramfs.py (stdlib unittest, no QEMU, a few seconds).

Run: python3 -m unittest discover -s scripts/guest-linux -p 'test_*.py'
"""

from __future__ import annotations

import gzip
import json
import os
import stat
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import drive  # noqa: E402
import mkinitramfs  # noqa: E402

# A stand-in for a console: prints a banner and a prompt, answers lines.
FAKE_CONSOLE = r"""
import sys, time
def out(s):
    sys.stdout.write(s); sys.stdout.flush()
out("booting...\r\n")
time.sleep(0.2)
out("READY\r\nguest:~# \x1b[6n")
for line in sys.stdin:
    cmd = line.strip()
    if cmd == "nproc":
        out("nproc\r\n3\r\nguest:~# \x1b[6n")
    elif cmd == "\x03":
        out("^C\r\nguest:~# ")
    elif cmd.startswith("exit "):
        out("bye\r\n")
        sys.exit(int(cmd.split()[1]))
    elif cmd == "panic":
        out("Kernel panic - not syncing\r\n")
        time.sleep(30)
    else:
        out(cmd + ": not found\r\nguest:~# ")
"""


def console(*extra: str) -> list[str]:
    return [sys.executable, "-c", FAKE_CONSOLE, *extra]


class SessionTest(unittest.TestCase):
    def test_expect_send_and_exit_status(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            log = os.path.join(tmp, "t.log")
            with drive.Session(console(), log=log) as s:
                s.expect("READY", timeout=10)
                s.expect("# $", timeout=10)  # the escape after the prompt is removed
                s.sendline("nproc")
                m = s.expect(r"^(\d+)\n", timeout=10)
                self.assertEqual(m.group(1), "3")
                s.sendline("exit 7")
                self.assertEqual(s.wait_exit(timeout=10), 7)
            with open(log, "rb") as f:
                raw = f.read()
            # The transcript is the raw output, \r and escapes included.
            self.assertIn(b"booting...\r\nREADY\r\nguest:~# \x1b[6n", raw)

    def test_expect_consumes_output(self) -> None:
        with drive.Session(console()) as s:
            s.expect("READY", timeout=10)
            with self.assertRaises(drive.StepFailed) as cm:
                s.expect("booting", timeout=0.5)  # already consumed: before the cursor
            self.assertIn("timeout", str(cm.exception))

    def test_early_exit_is_reported(self) -> None:
        with drive.Session([sys.executable, "-c", "print('hi')"]) as s:
            with self.assertRaises(drive.StepFailed) as cm:
                s.expect("never", timeout=10)
            self.assertIn("program ended", str(cm.exception))

    def test_fail_on(self) -> None:
        with drive.Session(console(), fail_on=["Kernel panic"]) as s:
            s.expect("# $", timeout=10)
            s.sendline("panic")
            with self.assertRaises(drive.StepFailed) as cm:
                s.expect("never", timeout=10)
            self.assertIn("Kernel panic", str(cm.exception))

    def test_escape_sequences_split_across_reads(self) -> None:
        s = drive.Session.__new__(drive.Session)
        s.keep_escapes = False
        s._pending = ""
        pieces = ["a\x1b", "[1;3", "4mb\x1b[0", "m\r\nc\x1b]0;t\x07d", "\x1bcE"]
        self.assertEqual("".join(s._clean(p) for p in pieces), "ab\ncdE")

    def test_decode_escapes(self) -> None:
        self.assertEqual(drive.decode_escapes(r"a\x03\n"), b"a\x03\n")


class CommandLineTest(unittest.TestCase):
    def run_drive(self, *args: str) -> tuple[int, dict]:
        with tempfile.TemporaryDirectory() as tmp:
            js = os.path.join(tmp, "r.json")
            proc = subprocess.run([sys.executable, os.path.join(HERE, "drive.py"), "--quiet",
                                   "--json", js, *args], capture_output=True, timeout=60)
            with open(js) as f:
                return proc.returncode, json.load(f)

    def test_steps_in_order(self) -> None:
        code, res = self.run_drive("--timeout", "10", "--expect", "READY", "--expect", "# $",
                                   "--send", "nproc", "--expect", r"^3\n",
                                   "--send-raw", r"\x03\n", "--expect", r"\^C",
                                   "--send", "exit 0", "--wait-exit", "0", "--", *console())
        self.assertEqual(code, 0)
        self.assertTrue(res["ok"])
        kinds = [s["step"] for s in res["steps"]]
        self.assertEqual(kinds, ["timeout", "expect", "expect", "send", "expect", "send-raw",
                                 "expect", "send", "wait-exit"])
        self.assertEqual(res["steps"][-1]["exit_status"], 0)

    def test_timeout_fails_and_kills(self) -> None:
        code, res = self.run_drive("--timeout", "0.5", "--expect", "never", "--", *console())
        self.assertEqual(code, 1)
        self.assertFalse(res["ok"])
        self.assertIn("timeout", res["steps"][-1]["error"])
        self.assertIsNotNone(res["exit_status"])  # the program was ended

    def test_wrong_exit_status(self) -> None:
        code, _ = self.run_drive("--expect", "# $", "--send", "exit 3", "--wait-exit", "0",
                                 "--", *console())
        self.assertEqual(code, 1)


def fake_busybox() -> bytes:
    names = sorted(set(mkinitramfs.REQUIRED_APPLETS) | {"ls", "zcat"})
    table = b"[\0[[\0" + b"\0".join(n.encode() for n in names) + b"\0"
    return b"\x7fELF" + b"\x01\x02junk" + table + b"\xff\xfe more binary"


def parse_newc(blob: bytes) -> dict[str, tuple[int, int, bytes, tuple[int, int]]]:
    """name -> (mode, uid, data, rdev)."""
    entries = {}
    pos = 0
    while True:
        assert blob[pos:pos + 6] == b"070701", blob[pos:pos + 6]
        f = [int(blob[pos + 6 + 8 * i: pos + 14 + 8 * i], 16) for i in range(13)]
        namesize, filesize = f[11], f[6]
        name_start = pos + 110
        name = blob[name_start:name_start + namesize - 1].decode()
        data_start = name_start + namesize + ((-(110 + namesize)) % 4)
        data = blob[data_start:data_start + filesize]
        pos = data_start + filesize + ((-filesize) % 4)
        if name == "TRAILER!!!":
            return entries
        entries[name] = (f[1], f[2], data, (f[9], f[10]))


class MkInitramfsTest(unittest.TestCase):
    def test_applet_table(self) -> None:
        applets = mkinitramfs.busybox_applets(fake_busybox())
        self.assertEqual(applets[:2], ["[", "[["])
        self.assertIn("sh", applets)
        self.assertIn("zcat", applets)
        self.assertNotIn("more", applets)

    def test_missing_applet_rejected(self) -> None:
        with self.assertRaises(ValueError):
            mkinitramfs.busybox_applets(b"[\0[[\0ls\0sh\0\0")

    def test_archive_contents(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            bb = os.path.join(tmp, "busybox")
            with open(bb, "wb") as f:
                f.write(fake_busybox())
            rootfs = os.path.join(tmp, "rootfs")
            os.makedirs(os.path.join(rootfs, "etc"))
            with open(os.path.join(rootfs, "init"), "w") as f:
                f.write("#!/bin/sh\n")
            os.chmod(os.path.join(rootfs, "init"), 0o755)
            with open(os.path.join(rootfs, "etc", "inittab"), "w") as f:
                f.write("::respawn:/bin/sh\n")
            mods = os.path.join(tmp, "mods")
            os.mkdir(mods)
            with open(os.path.join(mods, "virtio_mmio.ko"), "wb") as f:
                f.write(b"\x7fELFko")
            outs = []
            for i in range(2):
                out = os.path.join(tmp, f"i{i}.cpio.gz")
                subprocess.run([sys.executable, os.path.join(HERE, "mkinitramfs.py"),
                                "--busybox", bb, "--rootfs", rootfs, "--modules", mods,
                                "--kernel-release", "6.1.0-test", "--out", out],
                               check=True, capture_output=True, timeout=60)
                with open(out, "rb") as f:
                    outs.append(f.read())
            self.assertEqual(outs[0], outs[1], "same inputs must give the same archive")
            blob = gzip.decompress(outs[0])
            self.assertEqual(len(blob) % 512, 0)
            e = parse_newc(blob)
            mode, uid, data, _ = e["init"]
            self.assertEqual((stat.S_IFMT(mode), mode & 0o777, uid, data),
                             (stat.S_IFREG, 0o755, 0, b"#!/bin/sh\n"))
            self.assertEqual(e["etc/inittab"][0] & 0o777, 0o644)
            self.assertEqual(e["bin/busybox"][2], fake_busybox())
            self.assertEqual(stat.S_IFMT(e["bin/sh"][0]), stat.S_IFLNK)
            self.assertEqual(e["bin/sh"][2], b"busybox")
            self.assertEqual(e["sbin"][2], b"bin")
            console_mode, _, _, rdev = e["dev/console"]
            self.assertEqual((stat.S_IFMT(console_mode), rdev), (stat.S_IFCHR, (5, 1)))
            self.assertEqual(e["lib/modules/6.1.0-test/virtio_mmio.ko"][2], b"\x7fELFko")
            # Parents come before their children.
            names = list(e)
            self.assertLess(names.index("lib/modules"), names.index("lib/modules/6.1.0-test"))
            self.assertEqual(stat.S_IFMT(e["tmp"][0]), stat.S_IFDIR)
            self.assertEqual(e["tmp"][0] & 0o7777, 0o1777)


INIT_LIB = os.path.join(HERE, "rootfs", "lib", "ferrovisor", "init-lib.sh")


def init_lib(call: str, *args: str) -> tuple[int, str]:
    """Runs `call` (a shell snippet using "$1"...) after sourcing the guest
    init's helpers with the host's /bin/sh; returns (status, stdout)."""
    r = subprocess.run(["/bin/sh", "-c", f'. "{INIT_LIB}"; {call}', "sh", *args],
                       capture_output=True, text=True, timeout=30)
    return r.returncode, r.stdout


class InitLibTest(unittest.TestCase):
    """The helpers the guest's /init uses to pick hvc0 and load virtio_mmio first."""

    def test_console_is_the_last_console_arg_when_it_is_hvc(self) -> None:
        cases = {
            "console=hvc0": "/dev/hvc0\n",
            "earlycon=sbi console=hvc0 loglevel=7": "/dev/hvc0\n",
            "console=ttyS0 console=hvc0": "/dev/hvc0\n",
            "console=hvc1,115200": "/dev/hvc1\n",
            "console=hvc0 console=ttyS0": "",
            "console=ttyS0 quiet": "",
            "xconsole=hvc0": "",
            "": "",
        }
        for cmdline, want in cases.items():
            with self.subTest(cmdline=cmdline):
                self.assertEqual(init_lib('fv_console "$1"', cmdline), (0, want))

    def test_virtio_mmio_loads_first(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            order = os.path.join(tmp, "load-order")
            with open(order, "w") as f:
                f.write("failover\nnet_failover\nvirtio_net\nvirtio_mmio\n\nvirtio_rng\n")
            self.assertEqual(init_lib('fv_module_order "$1"', order),
                             (0, "virtio_mmio\nfailover\nnet_failover\nvirtio_net\nvirtio_rng\n"))
            with open(order, "w") as f:
                f.write("virtio_rng\n")
            self.assertEqual(init_lib('fv_module_order "$1"', order), (0, "virtio_rng\n"))

    def test_wait_char(self) -> None:
        self.assertEqual(init_lib('fv_wait_char /dev/null 0'), (0, ""))
        with tempfile.TemporaryDirectory() as tmp:
            # A regular file is not a character device: fails after the tries.
            path = os.path.join(tmp, "hvc0")
            open(path, "w").close()
            self.assertEqual(init_lib('fv_wait_char "$1" 2', path)[0], 1)

    def test_init_uses_the_helpers(self) -> None:
        with open(os.path.join(HERE, "rootfs", "init")) as f:
            init = f.read()
        self.assertIn(". /lib/ferrovisor/init-lib.sh", init)
        self.assertIn('fv_module_order "/lib/modules/$kver/load-order"', init)
        self.assertIn('exec <"$console" >"$console" 2>&1', init)
        # The console switch happens right after virtio_mmio, before the other modules.
        self.assertIn('if [ "$mod" = virtio_mmio ] && [ -n "$console" ]', init)


def fake_elf(needed: list[str]) -> bytes:
    """A minimal little-endian ELF64 with one PT_LOAD covering the file and a
    PT_DYNAMIC whose DT_NEEDED entries name `needed`."""
    import struct
    strtab = b"\0" + b"".join(n.encode() + b"\0" for n in needed)
    offsets, pos = [], 1
    for n in needed:
        offsets.append(pos)
        pos += len(n) + 1
    ph_off, ph_num = 64, 2
    dyn_off = ph_off + 56 * ph_num
    dyn = b"".join(struct.pack("<qQ", 1, o) for o in offsets)
    str_off = dyn_off + len(dyn) + 2 * 16
    dyn += struct.pack("<qQ", 5, 0x1000 + str_off) + struct.pack("<qQ", 0, 0)
    size = str_off + len(strtab)
    header = b"\x7fELF" + bytes([2, 1, 1]) + b"\0" * 9
    header += struct.pack("<HHIQQQIHHHHHH", 3, 243, 1, 0, ph_off, 0, 0, 64, 56, ph_num, 0, 0, 0)
    phdrs = struct.pack("<IIQQQQQQ", 1, 5, 0, 0x1000, 0x1000, size, size, 0x1000)
    phdrs += struct.pack("<IIQQQQQQ", 2, 6, dyn_off, 0x1000 + dyn_off, 0, len(dyn), len(dyn), 8)
    return header + phdrs + dyn + strtab


class ElfClosureTest(unittest.TestCase):
    def test_needed_and_closure(self) -> None:
        self.assertEqual(mkinitramfs.elf_needed(fake_elf(["liba.so.1", "libc.so.6"])),
                         ["liba.so.1", "libc.so.6"])
        self.assertEqual(mkinitramfs.elf_needed(b"#!/bin/sh\n"), [])
        with tempfile.TemporaryDirectory() as pool:
            lib = os.path.join(pool, "usr/lib/riscv64-linux-gnu")
            os.makedirs(lib)
            os.makedirs(os.path.join(pool, "usr/bin"))
            files = {
                "usr/bin/prog": fake_elf(["liba.so.1"]),
                "usr/lib/riscv64-linux-gnu/liba.so.1.2": fake_elf(["libc.so.6"]),
                "usr/lib/riscv64-linux-gnu/libc.so.6": fake_elf([]),
                "usr/lib/riscv64-linux-gnu/ld-linux-riscv64-lp64d.so.1": fake_elf([]),
                "usr/lib/riscv64-linux-gnu/unused.so.1": fake_elf([]),
            }
            for rel, data in files.items():
                with open(os.path.join(pool, rel), "wb") as f:
                    f.write(data)
            # The soname is a symlink, as in the packages.
            os.symlink("liba.so.1.2", os.path.join(lib, "liba.so.1"))
            got = {p: d for p, d, _ in mkinitramfs.elf_closure(pool, ["usr/bin/prog"])}
            self.assertEqual(sorted(got), [
                "bin/prog", "lib/ld-linux-riscv64-lp64d.so.1",
                "lib/riscv64-linux-gnu/liba.so.1", "lib/riscv64-linux-gnu/libc.so.6"])
            self.assertEqual(got["lib/riscv64-linux-gnu/liba.so.1"],
                             files["usr/lib/riscv64-linux-gnu/liba.so.1.2"])
            os.remove(os.path.join(lib, "libc.so.6"))
            with self.assertRaises(ValueError):
                mkinitramfs.elf_closure(pool, ["usr/bin/prog"])


if __name__ == "__main__":
    unittest.main()
