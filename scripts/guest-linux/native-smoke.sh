#!/usr/bin/env bash
# Boots the Linux guest of scripts/fetch-linux.sh natively on QEMU (no
# hypervisor) and checks it: marker, shell, nproc == SMP, free, interrupts,
# the virtio modules bound to virtio-mmio devices (vda, eth0, virtio_rng),
# modprobe, Ctrl-C, reboot (boots a second time), then poweroff (QEMU must
# exit by itself). Prints the wall time from QEMU's start to the marker.
# Usage: scripts/guest-linux/native-smoke.sh [SMP...]   (default: 2)
#   env: FV_SMOKE_OUT=DIR keeps transcripts/JSON there (default: a temp dir)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
"$HERE/../fetch-linux.sh" --quiet >/dev/null
# shellcheck disable=SC1091
. "${XDG_CACHE_HOME:-$HOME/.cache}/ferrovisor/linux/current.env"
OUT=${FV_SMOKE_OUT:-$(mktemp -d)}
mkdir -p "$OUT"
[ $# -gt 0 ] || set -- 2
fail=0
for smp in "$@"; do
    log="$OUT/native-smp$smp.log" json="$OUT/native-smp$smp.json"
    if python3 "$HERE/drive.py" --quiet --log "$log" --json "$json" \
        --fail-on 'Kernel panic' --fail-on 'ferrovisor-guest: insmod' \
        --timeout 90 --expect 'FERROVISOR-GUEST-READY' \
        --timeout 20 --expect '# $' \
        --send 'nproc' --expect "^$smp\n" --expect '# $' \
        --send 'free -m' --expect '^Mem: +[0-9]+.*\n' --expect '# $' \
        --send 'cat /proc/interrupts' --expect 'riscv-timer' --expect '# $' \
        --send 'cat /proc/partitions' --expect ' vda\n' --expect '# $' \
        --send 'ip -o link' --expect ': eth0: ' --expect '# $' \
        --send 'cat /sys/class/misc/hw_random/rng_current' --expect '^virtio_rng' --expect '# $' \
        --send 'rmmod virtio_net net_failover failover && modprobe virtio_net && lsmod | grep -c failover' \
        --expect '^2\n' --expect '# $' \
        --send 'sleep 60' --sleep 0.5 --send-raw '\x03' --expect '# $' \
        --send 'echo status=$?' --expect 'status=130' --expect '# $' \
        --send 'reboot' --timeout 90 --expect 'reboot: Restarting system' \
        --expect 'FERROVISOR-GUEST-READY' --timeout 20 --expect '# $' \
        --send 'poweroff' --timeout 30 --wait-exit 0 \
        -- timeout 240 qemu-system-riscv64 -M virt -smp "$smp" -m 1G -nographic \
        -kernel "$FV_LINUX_IMAGE" -initrd "$FV_LINUX_INITRD" -append console=ttyS0 \
        -blockdev null-co,node-name=disk0,size=8388608 -device virtio-blk-device,drive=disk0 \
        -netdev hubport,id=net0,hubid=0 -device virtio-net-device,netdev=net0 \
        -device virtio-rng-device; then
        python3 - "$json" "$smp" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
marks = [s["end"] for s in d["steps"] if s["step"] == "expect" and s["arg"] == "FERROVISOR-GUEST-READY"]
off = [s for s in d["steps"] if s["step"] == "wait-exit"][0]
reboot = [s for s in d["steps"] if s["step"] == "send" and s["arg"] == "reboot"][0]
print(f"smp={sys.argv[2]}: boot to marker {marks[0]:.2f}s; reboot -> marker {marks[1] - reboot['start']:.2f}s; "
      f"poweroff -> QEMU exit {off['end'] - off['start']:.2f}s; PASS")
PY
    else
        echo "smp=$smp: FAIL (transcript: $log)"
        fail=1
    fi
done
exit $fail
