#!/usr/bin/env python3
"""Builds Ferrovisor's small test initramfs (a gzip'd newc cpio) without root.

Contents:
  * a static busybox at /bin/busybox and a symlink per applet in /bin (the
    applet names are read from the binary itself: it is a foreign architecture,
    so it cannot be run here to ask `busybox --list`); /sbin, /usr/bin and
    /usr/sbin are symlinks to /bin;
  * the overlay tree (--rootfs: /init, /etc/inittab, ...), modes kept;
  * kernel modules (--modules: a directory of <name>.ko plus load-order and
    modules.dep, written by fetch-linux.sh) under /lib/modules/<release>/;
  * device nodes /dev/console and /dev/null (no mknod needed: they are cpio
    entries);
  * optionally (--elf-pool DIR --elf PATH ...) dynamically linked programs
    from an extracted package tree: each PATH goes to /bin, the riscv64
    dynamic loader to /lib/ld-linux-riscv64-lp64d.so.1, and every shared
    library they need (DT_NEEDED, transitively, read from the ELF files
    themselves) to /lib/riscv64-linux-gnu; a library missing from the pool
    fails the build.
Every entry is owned by root and carries the same mtime, and gzip's header
mtime is fixed, so the same inputs give a byte-identical archive.

stdlib only. Usage:
  mkinitramfs.py --busybox BIN --rootfs DIR [--modules DIR --kernel-release R]
                 [--elf-pool DIR --elf PATH ...] --out FILE.cpio.gz [--list-applets]
"""

from __future__ import annotations

import argparse
import gzip
import os
import re
import stat
import struct
import sys

# Applets /init and the tests rely on; the build fails if the binary lacks one.
REQUIRED_APPLETS = (
    "sh", "init", "mount", "insmod", "poweroff", "reboot", "halt", "cttyhack",
    "setsid", "hostname", "nproc", "free", "cat", "grep", "uname", "sync",
)
APPLET_NAME = re.compile(rb"^[a-z0-9][a-z0-9._-]*$")

# The riscv64 lp64d dynamic loader (PT_INTERP of Debian's riscv64 programs).
LOADER = "lib/ld-linux-riscv64-lp64d.so.1"
# Where the pool's shared libraries are looked for, and where they go.
LIB_DIRS = ("usr/lib/riscv64-linux-gnu", "lib/riscv64-linux-gnu", "usr/lib", "lib")
LIB_OUT = "lib/riscv64-linux-gnu"


def elf_needed(data: bytes) -> list[str]:
    """DT_NEEDED names of a little-endian ELF64 file (empty if it is not one)."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return []
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    loads, dynamic = [], None
    for i in range(phnum):
        p_type, _, p_offset, p_vaddr, _, p_filesz, _, _ = struct.unpack_from(
            "<IIQQQQQQ", data, phoff + i * phentsize)
        if p_type == 1:
            loads.append((p_vaddr, p_offset, p_filesz))
        elif p_type == 2:
            dynamic = (p_offset, p_filesz)
    if dynamic is None:
        return []

    def file_offset(vaddr: int) -> int:
        for v, o, n in loads:
            if v <= vaddr < v + n:
                return o + vaddr - v
        raise ValueError(f"address {vaddr:#x} is in no PT_LOAD segment")

    entries = [struct.unpack_from("<qQ", data, dynamic[0] + i)
               for i in range(0, dynamic[1], 16)]
    strtab = next((v for t, v in entries if t == 5), None)  # DT_STRTAB
    if strtab is None:
        return []
    base = file_offset(strtab)
    names = []
    for tag, val in entries:
        if tag == 0:  # DT_NULL
            break
        if tag == 1:  # DT_NEEDED
            end = data.index(b"\0", base + val)
            names.append(data[base + val:end].decode())
    return names


def elf_closure(pool: str, programs: list[str]) -> list[tuple[str, bytes, int]]:
    """(archive path, contents, mode) of `programs` (paths in `pool`), the
    loader and every library they need."""
    def read(rel: str) -> bytes:
        with open(os.path.join(pool, rel), "rb") as f:  # follows symlinks
            return f.read()

    def find_lib(name: str) -> bytes:
        for d in LIB_DIRS:
            path = os.path.join(pool, d, name)
            if os.path.exists(path):
                with open(path, "rb") as f:
                    return f.read()
        raise ValueError(f"shared library {name} is in no package of the pool")

    out = [(f"bin/{os.path.basename(p)}", read(p), 0o755) for p in programs]
    out.append((LOADER, find_lib(os.path.basename(LOADER)), 0o755))
    todo = [data for _, data, _ in out]
    seen = {os.path.basename(LOADER)}
    while todo:
        for name in elf_needed(todo.pop()):
            if name not in seen:
                seen.add(name)
                data = find_lib(name)
                out.append((f"{LIB_OUT}/{name}", data, 0o644))
                todo.append(data)
    return out


def busybox_applets(binary: bytes) -> list[str]:
    """Reads busybox's applet name table: NUL-separated names in strcmp order,
    starting with "[" and "[["."""
    start = binary.find(b"[\0[[\0")
    if start < 0:
        raise ValueError("no applet name table found (not a busybox binary?)")
    names = [b"[", b"[["]
    pos = start + len(b"[\0[[\0")
    while True:
        end = binary.find(b"\0", pos)
        if end < 0:
            break
        name = binary[pos:end]
        if not APPLET_NAME.match(name) or len(name) > 64:
            break
        names.append(name)
        pos = end + 1
    if names != sorted(names):
        raise ValueError("applet table is not sorted: parsed the wrong strings")
    out = [n.decode("ascii") for n in names]
    missing = [a for a in REQUIRED_APPLETS if a not in out]
    if missing:
        raise ValueError(f"busybox lacks required applets: {' '.join(missing)}")
    return out


class Cpio:
    """newc ("070701") archive writer, entries owned by root."""

    def __init__(self, mtime: int) -> None:
        self.mtime = mtime
        self.ino = 1
        self.chunks: list[bytes] = []
        self.names: set[str] = set()

    def _entry(self, name: str, mode: int, data: bytes = b"",
               rdev: tuple[int, int] = (0, 0), nlink: int = 1) -> None:
        if name in self.names:
            raise ValueError(f"duplicate entry {name}")
        self.names.add(name)
        encoded = name.encode() + b"\0"
        fields = (self.ino, mode, 0, 0, nlink, self.mtime, len(data), 0, 0,
                  rdev[0], rdev[1], len(encoded), 0)
        header = b"070701" + b"".join(b"%08X" % f for f in fields)
        self.ino += 1
        self.chunks.append(header + encoded + b"\0" * ((-len(header) - len(encoded)) % 4))
        self.chunks.append(data + b"\0" * ((-len(data)) % 4))

    def directory(self, name: str, perm: int = 0o755) -> None:
        self._entry(name, stat.S_IFDIR | perm, nlink=2)

    def file(self, name: str, data: bytes, perm: int) -> None:
        self._entry(name, stat.S_IFREG | perm, data)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def chardev(self, name: str, perm: int, major: int, minor: int) -> None:
        self._entry(name, stat.S_IFCHR | perm, rdev=(major, minor))

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0, nlink=1)
        blob = b"".join(self.chunks)
        return blob + b"\0" * ((-len(blob)) % 512)


def build(args: argparse.Namespace) -> bytes:
    mtime = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
    cpio = Cpio(mtime)
    with open(args.busybox, "rb") as f:
        busybox = f.read()
    applets = busybox_applets(busybox)

    dirs = {"bin", "dev", "etc", "lib", "proc", "sys", "tmp", "run", "root", "mnt",
            "usr", "var"}
    # Overlay directories first (so their modes win), then the skeleton.
    overlay: list[tuple[str, str]] = []
    for root, subdirs, files in os.walk(args.rootfs):
        subdirs.sort()
        rel_root = os.path.relpath(root, args.rootfs)
        for d in subdirs:
            dirs.add(os.path.normpath(os.path.join(rel_root, d)))
        for name in sorted(files):
            overlay.append((os.path.normpath(os.path.join(rel_root, name)),
                            os.path.join(root, name)))
    modules: list[str] = []
    moddir = None
    if args.modules:
        if not args.kernel_release:
            raise ValueError("--modules needs --kernel-release")
        moddir = f"lib/modules/{args.kernel_release}"
        dirs.update({"lib/modules", moddir})
        modules = sorted(os.listdir(args.modules))
    elf_files: list[tuple[str, bytes, int]] = []
    if args.elf:
        if not args.elf_pool:
            raise ValueError("--elf needs --elf-pool")
        elf_files = elf_closure(args.elf_pool, args.elf)
        dirs.add(LIB_OUT)

    def add_dir_with_parents(path: str, done: set[str]) -> None:
        parent = os.path.dirname(path)
        if parent and parent not in done:
            add_dir_with_parents(parent, done)
        if path not in done:
            done.add(path)
            cpio.directory(path, 0o1777 if path == "tmp" else
                           0o700 if path == "root" else 0o755)

    done: set[str] = set()
    for d in sorted(dirs):
        add_dir_with_parents(d, done)
    for link, target in (("sbin", "bin"), ("usr/bin", "../bin"), ("usr/sbin", "../bin")):
        cpio.symlink(link, target)
    cpio.symlink("etc/mtab", "../proc/mounts")
    cpio.chardev("dev/console", 0o600, 5, 1)
    cpio.chardev("dev/null", 0o666, 1, 3)

    cpio.file("bin/busybox", busybox, 0o755)
    for applet in applets:
        if applet != "busybox":
            cpio.symlink(f"bin/{applet}", "busybox")

    for rel, src in overlay:
        with open(src, "rb") as f:
            data = f.read()
        cpio.file(rel, data, 0o755 if os.stat(src).st_mode & 0o111 else 0o644)
    for name in modules:
        with open(os.path.join(args.modules, name), "rb") as f:
            cpio.file(f"{moddir}/{name}", f.read(), 0o644)
    for rel, data, mode in elf_files:
        cpio.file(rel, data, mode)
    if args.list_applets:
        print(" ".join(applets))
    print(f"[mkinitramfs] {len(applets)} busybox applets, {len(overlay)} overlay files, "
          f"{sum(1 for m in modules if m.endswith('.ko'))} modules, "
          f"{len(elf_files)} ELF files ({', '.join(r for r, _, _ in elf_files)})",
          file=sys.stderr)
    return cpio.finish()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--busybox", required=True, help="static busybox binary")
    p.add_argument("--rootfs", required=True, help="overlay tree (/init, /etc, ...)")
    p.add_argument("--modules", help="directory of .ko files + load-order/modules.dep")
    p.add_argument("--kernel-release", help="`uname -r` of the kernel (module dir name)")
    p.add_argument("--elf-pool", help="extracted package tree --elf paths are relative to")
    p.add_argument("--elf", action="append", default=[],
                   help="program in --elf-pool to add to /bin with its libraries (repeatable)")
    p.add_argument("--out", required=True, help="output .cpio.gz")
    p.add_argument("--list-applets", action="store_true", help="print the applet list")
    args = p.parse_args()
    try:
        archive = build(args)
    except (OSError, ValueError) as e:
        print(f"[mkinitramfs] ERROR: {e}", file=sys.stderr)
        return 1
    tmp = args.out + ".tmp"
    with open(tmp, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", compresslevel=9, fileobj=raw,
                           mtime=0) as gz:
            gz.write(archive)
    os.replace(tmp, args.out)
    print(f"[mkinitramfs] wrote {args.out} ({os.path.getsize(args.out)} bytes, "
          f"{len(archive)} uncompressed)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
