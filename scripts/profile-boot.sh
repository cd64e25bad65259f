#!/usr/bin/env bash
# Profiles QEMU itself (perf record -g on the QEMU process) while the Debian
# Linux guest boots to userspace, under Ferrovisor and on bare QEMU, and prints
# where each side's host CPU time went, QEMU function by function, side by
# side, plus the wall time of each guest phase. Re-runnable: see
# docs/PERFORMANCE.md for what it found.
#
#   scripts/profile-boot.sh [--runs N] [--quiet] [--earlycon] [--top N]
#                           [--out DIR] [--hypervisor PATH]
#
#   --runs N      boots per side, interleaved (default 1); the table sums them
#   --quiet       add `quiet` to the kernel command line (default: console=ttyS0 only)
#   --earlycon    add earlycon=sbi (the early log through SBI: every phase visible)
#   --top N       rows of the function table (default 25)
#   --out DIR     where the perf data, logs and tables go (default target/profile-boot)
#
# Needs: the kernel and initramfs of scripts/fetch-linux.sh, the release builds
# (scripts/build.sh, cargo build --release -p ferrovisor) and Linux's `perf`
# (Debian package linux-perf, installed here if missing). The guest is the same
# on both sides: 2 vCPUs, 512 MiB (Ferrovisor's machine: -smp 2 -m 1G).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)

RUNS=1
TOP=25
OUT="$ROOT/target/profile-boot"
CMDLINE="console=ttyS0"
HV="$ROOT/target/riscv64gc-unknown-none-elf/release/ferrovisor-hv"
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) RUNS=$2; shift 2 ;;
        --top) TOP=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --quiet) CMDLINE="$CMDLINE quiet"; shift ;;
        --earlycon) CMDLINE="earlycon=sbi $CMDLINE"; shift ;;
        --hypervisor) HV=$2; shift 2 ;;
        -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
        *) echo "profile-boot: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
say() { echo "[profile-boot] $*" >&2; }

if ! command -v perf >/dev/null 2>&1; then
    say "perf is missing: apt-get install -y linux-perf"
    apt-get install -y linux-perf
fi
command -v perf >/dev/null || { say "perf still missing after installing linux-perf"; exit 1; }

LINUX="${FV_LINUX_DIR:-$HOME/.cache/ferrovisor/linux/current}"
KERNEL="$LINUX/Image"
INITRD="$LINUX/initramfs.cpio.gz"
for f in "$KERNEL" "$INITRD"; do
    [ -s "$f" ] || { say "$f missing: run scripts/fetch-linux.sh"; exit 1; }
done
[ -s "$HV" ] || { say "$HV missing: run scripts/build.sh"; exit 1; }
TOOL="$ROOT/target/release/ferrovisor"
[ -x "$TOOL" ] || { say "building the host tool"; cargo build --release -p ferrovisor; }

mkdir -p "$OUT"
cat >"$OUT/linux.yaml" <<EOF
machine:
  arch: riscv64
  cpus: 2
  memory: 1G
vms:
  - name: linux
    vcpus: 2
    memory: 512M
    kernel: $KERNEL
    initrd: $INITRD
    command_line: "$CMDLINE"
EOF
"$TOOL" package --config "$OUT/linux.yaml" --output "$OUT/linux.fvpkg" >/dev/null

COMMON=(-M virt -cpu rv64 -smp 2 -display none -monitor none
        -chardev stdio,id=con0,signal=off -serial chardev:con0 -bios default -no-reboot)
FV_QEMU=(qemu-system-riscv64 "${COMMON[@]}" -m 1024M -kernel "$HV" -initrd "$OUT/linux.fvpkg")
BARE_QEMU=(qemu-system-riscv64 "${COMMON[@]}" -m 512M -kernel "$KERNEL" -initrd "$INITRD"
           -append "$CMDLINE")

# The kernel's lines that end a phase (a quiet boot prints neither).
PHASES=()
case " $CMDLINE " in
    *" quiet "*) ;;
    *) PHASES=(--expect 'Linux version' --expect 'Run /init') ;;
esac

# One boot under perf: QEMU's start to the marker, then the shell's prompt and
# poweroff -f. drive.py records when each phase's line appeared.
profile_one() {
    local side=$1 run=$2
    shift 2
    local data="$OUT/$side-$run.perf.data"
    say "$side run $run: perf record -g -o $data -- $*"
    python3 scripts/guest-linux/drive.py --quiet --log "$OUT/$side-$run.log" \
        --json "$OUT/$side-$run.json" --fail-on 'Kernel panic' --fail-on 'ferrovisor: (FATAL|TRAP)' \
        --timeout 300 "${PHASES[@]}" \
        --expect 'FERROVISOR-GUEST-READY' --expect '# $' --send 'poweroff -f' --wait-exit \
        -- perf record -q -g -o "$data" -- "$@" </dev/null
}

for run in $(seq 1 "$RUNS"); do
    if [ $((run % 2)) = 1 ]; then order="ferrovisor bare"; else order="bare ferrovisor"; fi
    for side in $order; do
        if [ "$side" = ferrovisor ]; then profile_one ferrovisor "$run" "${FV_QEMU[@]}"
        else profile_one bare "$run" "${BARE_QEMU[@]}"; fi
    done
done

# Self samples per symbol (QEMU functions, host kernel functions, JIT code
# shows as [unknown] or perf-<pid>.map), summed over the runs of each side.
symbols() {
    local side=$1
    for run in $(seq 1 "$RUNS"); do
        perf report -i "$OUT/$side-$run.perf.data" --stdio --no-children -g none \
            --sort sym -F sample,sym 2>/dev/null | grep -v '^#' | grep -v '^$' || true
    done | awk '{ n=$1; $1=""; sub(/^ +/, "");
                  if ($0 ~ /^\[[.k]\] 0x[0-9a-f]+$/) $0 = "[.] (unresolved addresses: TCG-generated code, stripped QEMU code)";
                  s[$0]+=n; t+=n }
                END { for (k in s) printf "%d\t%s\n", s[k], k; printf "%d\t__total__\n", t }'
}
symbols ferrovisor >"$OUT/ferrovisor.symbols"
symbols bare >"$OUT/bare.symbols"

python3 - "$OUT" "$TOP" "$RUNS" "$CMDLINE" <<'PY'
import json, sys
out, top, runs, cmdline = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
def load(side):
    d = {}
    for line in open(f"{out}/{side}.symbols"):
        n, name = line.rstrip("\n").split("\t", 1)
        d[name] = int(n)
    return d
fv, bare = load("ferrovisor"), load("bare")
tf, tb = fv.pop("__total__", 0), bare.pop("__total__", 0)
print(f"QEMU profile, Linux boot to the shell and poweroff -f ({cmdline!r}), {runs} run(s) per side")
print(f"samples: ferrovisor {tf}, bare QEMU {tb}, extra {tf - tb} ({(tf / tb if tb else 0):.2f}x)\n")
print(f"{'extra':>7} {'ferrovisor':>10} {'bare':>7}  function (self samples, sorted by extra)")
names = sorted(set(fv) | set(bare), key=lambda k: fv.get(k, 0) - bare.get(k, 0), reverse=True)
for k in names[:top]:
    print(f"{fv.get(k, 0) - bare.get(k, 0):>7} {fv.get(k, 0):>10} {bare.get(k, 0):>7}  {k[:90]}")
print("\nguest phases, wall seconds since QEMU's start (median over runs):")
steps = ["FERROVISOR-GUEST-READY", "shell prompt"]
if " quiet" not in cmdline:
    steps = ["'Linux version' printed", "'Run /init'"] + steps
def phases(side):
    per = []
    for r in range(1, runs + 1):
        try:
            j = json.load(open(f"{out}/{side}-{r}.json"))
        except (OSError, ValueError):
            continue
        ts = [s["end"] for s in j["steps"] if s["step"] == "expect" and s.get("ok")]
        per.append(ts[:len(steps)])
    cols = list(zip(*per)) if per else []
    return [sorted(c)[len(c) // 2] for c in cols]
pf, pb = phases("ferrovisor"), phases("bare")
print(f"   {'phase end':<26} {'ferrovisor':>10} {'bare':>8} {'ratio':>6}")
for i, name in enumerate(steps):
    if i < len(pf) and i < len(pb) and pf[i] is not None and pb[i] is not None:
        print(f"   {name:<26} {pf[i]:>10.2f} {pb[i]:>8.2f} {pf[i] / pb[i]:>5.2f}x")
PY
say "data, logs and symbol tables in $OUT"
