#!/usr/bin/env python3
"""Drives an interactive program (QEMU's serial console, Ferrovisor, ...) through
a script of steps: wait for a pattern, send a line, wait again, each step with
its own timeout, logging everything the program printed to a transcript file.

Command line (steps run in the order given; everything after `--` is the command):

  drive.py --log boot.log --timeout 60 --expect FERROVISOR-GUEST-READY \\
           --timeout 10 --expect '# $' --send nproc --expect '^\\d+$' \\
           --send poweroff --wait-exit 0 -- \\
           qemu-system-riscv64 -M virt -nographic -kernel Image -initrd initramfs.cpio.gz

  Steps:
    --expect REGEX      wait until REGEX (Python re, MULTILINE; '\\r' and terminal escape
                        sequences removed from the output before matching) matches output
                        not yet consumed; on success the output up to the end of the match
                        is consumed. Output arrives in pieces: '.*' or '$' may match a
                        partial line, so end whole-line patterns with '\\n'
                        (e.g. 'Mem:.*\\n'); a prompt is matched as '# $'.
    --send TEXT         send TEXT and a newline ("\\n"); escapes like \\x03 \\r \\n \\t decoded
    --send-raw TEXT     send TEXT as is (escapes decoded), e.g. '\\x03' for Ctrl-C
    --sleep SECONDS     pause
    --wait-exit [CODE]  wait for the program to exit; fail if CODE is given and differs
    --timeout SECONDS   timeout of the steps that follow (default 30)
  Options:
    --log FILE          transcript: the program's raw output (stdout and stderr merged)
    --json FILE         per-step results with times (seconds since the program started)
    --fail-on REGEX     fail as soon as REGEX appears anywhere (e.g. 'Kernel panic'); repeatable
    --echo              copy the program's output to our stdout as it arrives
    --keep-escapes      match against the output with terminal escape sequences left in
                        (by default ESC[...x and the like are removed before matching)
    --pty               run the program on a pseudo-terminal instead of pipes (note: QEMU's
                        -nographic then treats Ctrl-C as a signal to itself)
    --quiet             no step messages on stderr
    --kill-grace S      at the end, seconds to let the program exit before SIGTERM/SIGKILL (default 0)

  Exit status: 0 every step succeeded; 1 a step failed (timeout, early exit, wrong exit
  code, --fail-on matched); 2 bad usage or the program could not be started.
  A program still running after the last step is terminated (its process group).

As a library (stdlib only):

  from drive import Session, StepFailed
  with Session(["qemu-system-riscv64", ...], log="boot.log") as s:
      s.expect(r"FERROVISOR-GUEST-READY", timeout=60)
      s.sendline("nproc")
      m = s.expect(r"^(\\d+)$", timeout=10)
      s.sendline("poweroff")
      code = s.wait_exit(timeout=30)
"""

from __future__ import annotations

import argparse
import codecs
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from typing import IO, Optional, Sequence

DEFAULT_TIMEOUT = 30.0
# Terminal escape sequences (CSI like ESC[6n or colours, OSC, two-byte ESC x
# such as ESC c or ESC 7),
# removed from the text patterns are matched against (not from the transcript).
ESCAPE_SEQ = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[0-Z\\^-~])")
# A sequence that may still be incomplete at the end of what has arrived.
ESCAPE_PARTIAL = re.compile(r"\x1b(?:\[[0-?]*[ -/]*|\][^\x07\x1b]*\x1b?)?\Z")


class StepFailed(Exception):
    """A step did not succeed (timeout, program exit, --fail-on pattern)."""


def decode_escapes(text: str) -> bytes:
    """'\\x03', '\\r', '\\n', '\\t', '\\\\' in TEXT become the bytes they name."""
    return codecs.escape_decode(text.encode("utf-8"))[0]


class Session:
    """A running program whose merged stdout/stderr is read by a background thread."""

    def __init__(self, argv: Sequence[str], log: Optional[str] = None, echo: bool = False,
                 pty: bool = False, fail_on: Sequence[str] = (), quiet: bool = True,
                 keep_escapes: bool = False) -> None:
        self.argv = list(argv)
        self.echo = echo
        self.quiet = quiet
        self.fail_on = [re.compile(p, re.MULTILINE) for p in fail_on]
        self._log: Optional[IO[bytes]] = open(log, "wb") if log else None
        self._cond = threading.Condition()
        self._text = ""          # everything received, '\r' (and escapes) removed
        self._pending = ""       # a possibly incomplete escape sequence at the end
        self.keep_escapes = keep_escapes
        self._cursor = 0         # start of unconsumed output in _text
        self._eof = False
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._fail_match: Optional[str] = None
        self.start_time = time.monotonic()
        if pty:
            import tty
            master, slave = os.openpty()
            tty.setraw(slave)
            self.proc = subprocess.Popen(self.argv, stdin=slave, stdout=slave, stderr=slave,
                                         start_new_session=True, close_fds=True)
            os.close(slave)
            self._rfd, self._wfd = master, master
        else:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                         start_new_session=True, bufsize=0)
            assert self.proc.stdout is not None and self.proc.stdin is not None
            self._rfd, self._wfd = self.proc.stdout.fileno(), self.proc.stdin.fileno()
        self._reader = threading.Thread(target=self._read_loop, daemon=True)
        self._reader.start()

    # -- plumbing -------------------------------------------------------------
    def now(self) -> float:
        """Seconds since the program was started."""
        return time.monotonic() - self.start_time

    def note(self, msg: str) -> None:
        if not self.quiet:
            print(f"[drive +{self.now():7.3f}s] {msg}", file=sys.stderr, flush=True)

    def _read_loop(self) -> None:
        while True:
            try:
                chunk = os.read(self._rfd, 65536)
            except OSError:  # pty: EIO once the program has closed it
                chunk = b""
            if self._log:
                if chunk:
                    self._log.write(chunk)
                self._log.flush()
            if chunk and self.echo:
                sys.stdout.buffer.write(chunk)
                sys.stdout.buffer.flush()
            with self._cond:
                if chunk:
                    text = self._clean(self._decoder.decode(chunk))
                    start = max(0, len(self._text) - 4096)
                    self._text += text
                    if self._fail_match is None:
                        for pat in self.fail_on:
                            m = pat.search(self._text, start)
                            if m:
                                self._fail_match = f"{pat.pattern!r} appeared: {m.group(0)!r}"
                                break
                else:
                    self._eof = True
                self._cond.notify_all()
            if not chunk:
                return

    def _clean(self, text: str) -> str:
        text = text.replace("\r", "")
        if self.keep_escapes:
            return text
        text = self._pending + text
        self._pending = ""
        partial = ESCAPE_PARTIAL.search(text)
        if partial and len(text) - partial.start() < 64:
            self._pending = text[partial.start():]
            text = text[:partial.start()]
        return ESCAPE_SEQ.sub("", text)

    def _check_fail_on(self) -> None:
        if self._fail_match is not None:
            raise StepFailed(f"--fail-on {self._fail_match}")

    @property
    def output(self) -> str:
        """Everything the program printed so far ('\\r' removed)."""
        with self._cond:
            return self._text

    def tail(self, chars: int = 2000) -> str:
        """The last CHARS characters of output."""
        with self._cond:
            return self._text[-chars:]

    # -- steps ------------------------------------------------------------------
    def expect(self, pattern: str, timeout: float = DEFAULT_TIMEOUT) -> re.Match[str]:
        """Waits until PATTERN matches unconsumed output; consumes up to the match end."""
        regex = re.compile(pattern, re.MULTILINE)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                m = regex.search(self._text, self._cursor)
                if m:
                    self._cursor = m.end()
                    self.note(f"matched {pattern!r}: {m.group(0)[:80]!r}")
                    return m
                self._check_fail_on()
                if self._eof:
                    code = self.proc.poll()
                    raise StepFailed(f"program ended (exit status {code}) before {pattern!r} appeared")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise StepFailed(f"timeout ({timeout:g}s) waiting for {pattern!r}")
                self._cond.wait(min(left, 0.5))

    def send(self, data: bytes | str) -> None:
        """Writes DATA (str is UTF-8 encoded) to the program's input."""
        if isinstance(data, str):
            data = data.encode("utf-8")
        self._check_fail_on()
        if self.proc.poll() is not None:
            raise StepFailed(f"program ended (exit status {self.proc.returncode}) before send")
        self.note(f"send {data!r}")
        try:
            os.write(self._wfd, data)
        except OSError as e:
            raise StepFailed(f"cannot write to the program: {e}") from e

    def sendline(self, line: str) -> None:
        """Sends LINE followed by a newline."""
        self.send(line + "\n")

    def wait_exit(self, timeout: float = DEFAULT_TIMEOUT, expect_code: Optional[int] = None) -> int:
        """Waits for the program to exit and returns its exit status."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired as e:
            raise StepFailed(f"timeout ({timeout:g}s) waiting for the program to exit") from e
        self._reader.join(2)
        self.note(f"program exited with status {code}")
        self._check_fail_on()
        if expect_code is not None and code != expect_code:
            raise StepFailed(f"program exited with status {code}, expected {expect_code}")
        return code

    def close(self, grace: float = 0.0) -> Optional[int]:
        """Ends the program if still running (SIGTERM, then SIGKILL, to its process
        group) and closes the transcript. Returns the exit status."""
        if self.proc.poll() is None and grace > 0:
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if self.proc.poll() is not None:
                break
            self.note(f"terminating the program ({sig.name})")
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                continue
        self._reader.join(2)
        for f in (self.proc.stdin, self.proc.stdout):
            if f is not None:
                try:
                    f.close()
                except OSError:
                    pass
        if self._rfd == self._wfd:  # pty master
            try:
                os.close(self._rfd)
            except OSError:
                pass
        if self._log:
            self._log.close()
            self._log = None
        return self.proc.returncode

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- command line -------------------------------------------------------------------
class _Step(argparse.Action):
    """Appends (kind, value) to namespace.steps, keeping command-line order."""

    def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[override]
        steps = getattr(namespace, "steps", None) or []
        steps.append((self.dest, values))
        namespace.steps = steps


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    if "--" not in argv:
        raise SystemExit("drive.py: the command goes after `--` (see --help)")
    split = list(argv).index("--")
    own, command = list(argv[:split]), list(argv[split + 1:])
    p = argparse.ArgumentParser(prog="drive.py", usage="drive.py [options] [steps] -- COMMAND...",
                                description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--log")
    p.add_argument("--json")
    p.add_argument("--fail-on", action="append", default=[])
    p.add_argument("--echo", action="store_true")
    p.add_argument("--pty", action="store_true")
    p.add_argument("--keep-escapes", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--kill-grace", type=float, default=0.0)
    p.add_argument("--expect", action=_Step)
    p.add_argument("--send", action=_Step)
    p.add_argument("--send-raw", action=_Step)
    p.add_argument("--sleep", action=_Step, type=float)
    p.add_argument("--wait-exit", action=_Step, nargs="?", const=None, type=int)
    p.add_argument("--timeout", action=_Step, type=float)
    ns = p.parse_args(own)
    if not command:
        p.error("no command after --")
    if not getattr(ns, "steps", None):
        ns.steps = []
    return ns, command


def main(argv: Sequence[str]) -> int:
    own = list(argv[: list(argv).index("--")]) if "--" in argv else list(argv)
    if "-h" in own or "--help" in own:
        print(__doc__)
        return 0
    try:
        ns, command = parse_args(argv)
    except SystemExit as e:
        if e.code not in (0, None):
            print(e.code if isinstance(e.code, str) else "drive.py: bad usage", file=sys.stderr)
        return 2
    try:
        s = Session(command, log=ns.log, echo=ns.echo, pty=ns.pty, fail_on=ns.fail_on,
                    quiet=ns.quiet, keep_escapes=ns.keep_escapes)
    except OSError as e:
        print(f"drive.py: cannot start {command[0]}: {e}", file=sys.stderr)
        return 2
    s.note(f"started pid {s.proc.pid}: {' '.join(command)}")
    timeout = DEFAULT_TIMEOUT
    results: list[dict[str, object]] = []
    status = 0
    try:
        for kind, value in ns.steps:
            start = s.now()
            entry: dict[str, object] = {"step": kind.replace("_", "-"), "arg": value, "start": round(start, 3)}
            results.append(entry)
            try:
                if kind == "timeout":
                    timeout = float(value)
                elif kind == "expect":
                    entry["match"] = s.expect(value, timeout).group(0)
                elif kind == "send":
                    s.send(decode_escapes(value) + b"\n")
                elif kind == "send_raw":
                    s.send(decode_escapes(value))
                elif kind == "sleep":
                    time.sleep(float(value))
                elif kind == "wait_exit":
                    entry["exit_status"] = s.wait_exit(timeout, value)
                entry["ok"] = True
            except StepFailed as e:
                entry["ok"] = False
                entry["error"] = str(e)
                print(f"[drive +{s.now():7.3f}s] FAILED: --{entry['step']} {value!r}: {e}",
                      file=sys.stderr)
                print("[drive] last output:\n" + s.tail(1500), file=sys.stderr)
                status = 1
                break
            finally:
                entry["end"] = round(s.now(), 3)
    finally:
        code = s.close(ns.kill_grace)
        if ns.json:
            with open(ns.json, "w") as f:
                json.dump({"command": command, "ok": status == 0, "exit_status": code,
                           "steps": results}, f, indent=1)
    if status == 0:
        s.note("all steps succeeded")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
