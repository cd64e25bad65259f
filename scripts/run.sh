#!/usr/bin/env bash
# Sets up, fetches Linux, builds, and boots an unmodified Debian Linux as a VM
# under Ferrovisor in QEMU (examples/linux.yaml), landing you in its busybox shell:
#
#   scripts/setup.sh         QEMU and the pinned Rust toolchain (quick when present)
#   scripts/fetch-linux.sh   Debian's riscv64 kernel + a busybox initramfs (cached
#                            under ~/.cache/ferrovisor/linux/; quick when present)
#   scripts/make-disks.sh    the example disk images, if the config uses them
#                            (~/.cache/ferrovisor/disks/; kept once made)
#   cargo build              the hypervisor (bare metal) and the host tool
#   ferrovisor run           boots examples/linux.yaml; your terminal is the console
#
# In the guest shell (`guest:~# `): `poweroff` ends the VM and then the machine
# (exit status 0); Ctrl-C goes to the guest; Ctrl-A x quits QEMU at once.
#
# Usage: scripts/run.sh [--config FILE] [ferrovisor run options, e.g. --timeout 600]
#   --config FILE   another VM config (default examples/linux.yaml), e.g.
#                   examples/linux-multi.yaml, examples/linux-devices.yaml (a
#                   disk, a network and the virtio-console) or
#                   examples/default.yaml (needs the test guests: scripts/build.sh)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { echo "[run] $*" >&2; }

config=examples/linux.yaml
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --config) [ $# -ge 2 ] || { echo "[run] ERROR: --config needs a file" >&2; exit 2; }
                  config=$2; shift 2 ;;
        --config=*) config=${1#--config=}; shift ;;
        *) args+=("$1"); shift ;;
    esac
done

say "1/4 setup"
scripts/setup.sh
say "2/4 fetching Linux (cached after the first time)"
scripts/fetch-linux.sh >/dev/null
if grep -q 'ferrovisor/disks/' "$config"; then
    scripts/make-disks.sh
fi
say "3/4 building the hypervisor and the host tool"
cargo build --release --target riscv64gc-unknown-none-elf -p ferrovisor-hv
cargo build --release -p ferrovisor
say "4/4 booting $config"
exec cargo run --quiet --release -p ferrovisor -- run --config "$config" ${args[@]+"${args[@]}"}
