#!/usr/bin/env bash
# Runs one test guest directly on QEMU (no hypervisor; OpenSBI is the SBI).
#
#   guests/run-bare.sh GUEST [extra qemu args …]
#   e.g. guests/run-bare.sh smp-test -smp 4
#        guests/run-bare.sh timer-test -cpu rv64,sstc=false
#
# Builds the guest (release, riscv64gc-unknown-none-elf) unless NO_BUILD=1,
# runs `qemu-system-riscv64 -M virt -nographic -bios default -kernel <elf>`
# bounded by TIMEOUT seconds (default 120), keeps the serial log in
# target/qemu-logs/bare-<guest>.log (LOG=path to override), and exits 0 only if
# the log has a DONE line, failed=0 and no FAIL line.
set -euo pipefail

if [ $# -lt 1 ]; then
    echo "usage: $0 GUEST [qemu args...]" >&2
    exit 2
fi
guest=$1
shift

root=$(cd "$(dirname "$0")/.." && pwd)
target=riscv64gc-unknown-none-elf
elf=$root/target/$target/release/$guest
timeout_s=${TIMEOUT:-120}
log=${LOG:-$root/target/qemu-logs/bare-$guest.log}
mkdir -p "$(dirname "$log")"

if [ "${NO_BUILD:-0}" != 1 ]; then
    (cd "$root" && cargo build --quiet --release --target "$target" -p "$guest")
fi
if [ ! -f "$elf" ]; then
    echo "run-bare: no guest image at $elf" >&2
    exit 2
fi

set +e
timeout --kill-after=5 "$timeout_s" \
    qemu-system-riscv64 -M virt -nographic -bios default -kernel "$elf" "$@" \
    </dev/null 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e

if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    echo "run-bare: $guest: TIMEOUT after ${timeout_s}s (log: $log)" >&2
    exit 1
fi
if grep -q '^FAIL:' "$log"; then
    echo "run-bare: $guest: FAIL lines present (log: $log)" >&2
    exit 1
fi
if ! grep -Eq "^DONE: $guest passed=[0-9]+ failed=0" "$log"; then
    echo "run-bare: $guest: no successful DONE line (qemu exit $rc, log: $log)" >&2
    exit 1
fi
echo "run-bare: $guest: ok (log: $log)" >&2
