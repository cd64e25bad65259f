#!/usr/bin/env python3
"""Capture the device tree OpenSBI (QEMU's default fw_dynamic) hands its payload.

Usage: capture-opensbi-dtb.py OUT.dtb [extra qemu-system-riscv64 args...]

Boots a 4-byte payload that is just `j .` (0x0000006f), waits for OpenSBI to
jump to it, reads a1 (the DTB address) through the QEMU monitor, dumps 64 KiB
from there with `pmemsave` and trims it to the FDT header's totalsize.
"""
import os, re, socket, struct, subprocess, sys, tempfile, time

out, extra = sys.argv[1], sys.argv[2:]
tmp = tempfile.mkdtemp()
payload = os.path.join(tmp, "loop.bin")
with open(payload, "wb") as f:
    f.write(struct.pack("<I", 0x0000006F))  # j .
sock = os.path.join(tmp, "mon.sock")
raw = os.path.join(tmp, "mem.bin")
qemu = subprocess.Popen(
    ["timeout", "30", "qemu-system-riscv64", "-nographic", "-kernel", payload,
     "-monitor", f"unix:{sock},server,nowait"] + extra,
    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
time.sleep(3)
mon = socket.socket(socket.AF_UNIX)
mon.connect(sock)
mon.settimeout(0.5)

def cmd(c):
    mon.sendall((c + "\n").encode())
    time.sleep(1.0)
    data = b""
    try:
        while chunk := mon.recv(65536):
            data += chunk
    except socket.timeout:
        pass
    return data.decode(errors="replace")

cmd("")
regs = cmd("info registers")
assert re.search(r" pc +0*80200000", regs), "payload not reached"
a1 = int(re.search(r"x11/a1 +([0-9a-f]+)", regs).group(1), 16)
cmd(f'pmemsave {a1:#x} 0x10000 "{raw}"')  # quoted: a bare /path parses as a division
cmd("quit")
qemu.wait()
blob = open(raw, "rb").read()
magic, total = struct.unpack(">II", blob[:8])
assert magic == 0xD00DFEED, hex(magic)
open(out, "wb").write(blob[:total])
print(f"{out}: DTB at {a1:#x}, {total} bytes")
