#!/bin/bash
# What a Prometheus scrape every second costs a CPU-bound guest (issue 11,
# point 4): one cpu-hog VM (1 vCPU) on a 1-hart machine under
# `ferrovisor run --http`, its progress per 500 ms of guest time compared in
# alternating 20 s phases without and with `GET /metrics` every second.
# Needs scripts/build.sh, the host tool (FERROVISOR, default
# target/debug/ferrovisor), curl and python3. Usage: scripts/scrape-cost.sh [PAIRS]
set -u
cd "$(dirname "$0")/.."
pairs=${1:-3}
fv=${FERROVISOR:-target/debug/ferrovisor}
work=target/scrape
mkdir -p $work
cat >$work/hog.yaml <<YAML
machine:
  arch: riscv64
  cpus: 1
  memory: 256M
vms:
  - name: hog
    vcpus: 1
    memory: 16M
    kernel: $PWD/target/riscv64gc-unknown-none-elf/release/cpu-hog
    command_line: "ms=500"
YAML
export FERROVISOR_RUNTIME_DIR=/tmp/fv-scrape-$$
out=$work/run.log
"$fv" run --config $work/hog.yaml --name scrape --http 127.0.0.1:0 --timeout $((pairs * 40 + 60)) </dev/null >$out 2>&1 &
pid=$!
dir=$FERROVISOR_RUNTIME_DIR/scrape
for _ in $(seq 100); do [ -S $dir/http.sock ] && break; sleep 0.2; done
sleep 10
tok=$(cat $dir/token.ro)
marks=()
for _ in $(seq "$pairs"); do
    for phase in quiet scrape; do
        marks+=("$phase:$(grep -c 'progress' $out)")
        end=$((SECONDS + 20))
        while [ $SECONDS -lt $end ]; do
            if [ $phase = scrape ]; then
                curl -s -o /dev/null --unix-socket $dir/http.sock -H "Authorization: Bearer $tok" http://x/metrics
            fi
            sleep 1
        done
    done
done
marks+=("end:$(grep -c 'progress' $out)")
kill $pid
wait $pid 2>/dev/null
rm -rf "$FERROVISOR_RUNTIME_DIR"
grep 'progress' $out | sed -E 's/.*progress ([0-9]+).*/\1/' >$work/progress.txt
python3 - "${marks[@]}" <<'PY'
import sys, statistics
p = [int(x) for x in open('target/scrape/progress.txt')]
d = [b - a for a, b in zip(p, p[1:])]
marks = [(m.split(':')[0], int(m.split(':')[1])) for m in sys.argv[1:]]
res = {'quiet': [], 'scrape': []}
for (ph, a), (_, b) in zip(marks, marks[1:]):
    seg = d[a + 1:b - 1]  # whole intervals inside the phase
    res[ph].append(statistics.mean(seg))
    print(f"{ph:6} {len(seg)} intervals, mean {statistics.mean(seg):.1f} chunks per 500 ms (min {min(seg)}, max {max(seg)})")
q, s = statistics.mean(res['quiet']), statistics.mean(res['scrape'])
print(f"quiet {q:.1f}, scraped every 1 s {s:.1f} chunks per 500 ms: cost {(q - s) / q * 100:.1f} %")
PY
