#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run):
#   setup, fetching the Linux guest (cached), rustfmt, clippy (host and bare
#   metal), unit tests, bare-metal build, QEMU integration tests, Linux tests,
#   network tests, lifecycle tests.
#   Every step runs even if an earlier one failed (except setup); the script
#   exits non-zero if any step failed.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

TARGET=riscv64gc-unknown-none-elf
LOG_DIR=target/test-logs
mkdir -p "$LOG_DIR"

results=()
suite_start=$SECONDS
failed_steps=0
tests_passed=0
tests_failed=0

# step NAME COMMAND...: runs COMMAND with its output shown and logged, records the
# result, and adds up cargo's "test result:" lines.
step() {
    local name=$1
    shift
    local log="$LOG_DIR/$name.log"
    echo
    echo "=== [$name] $*"
    local start=$SECONDS
    echo "    (started $(date -u +%H:%M:%S) UTC)"
    "$@" 2>&1 | tee "$log"
    local rc=${PIPESTATUS[0]}
    local p f
    read -r p f < <(awk '/^test result:/ {
            for (i = 2; i <= NF; i++) {
                if ($i == "passed;") p += $(i - 1)
                if ($i == "failed;") f += $(i - 1)
            }
        } END { print p + 0, f + 0 }' "$log")
    tests_passed=$((tests_passed + p))
    tests_failed=$((tests_failed + f))
    if [ "$rc" -eq 0 ]; then
        results+=("ok      $name ($((SECONDS - start)) s)")
    else
        results+=("FAILED  $name ($((SECONDS - start)) s, exit $rc, log $log)")
        failed_steps=$((failed_steps + 1))
    fi
    return 0
}

# Package names from manifests.
pkg_name() { sed -nE '0,/^name *= *"([^"]+)".*/s//\1/p' "$1"; }

echo "=== [setup]"
if ! scripts/setup.sh; then
    echo "test.sh: setup failed; nothing else can run" >&2
    echo "0 passed, 1 failed"
    exit 1
fi

bare_metal=()
for manifest in arch/*/Cargo.toml hypervisor/Cargo.toml guests/*/Cargo.toml; do
    [ -f "$manifest" ] || continue
    name=$(pkg_name "$manifest")
    [ -n "$name" ] && bare_metal+=(-p "$name")
done

# The Linux guest (Debian kernel + busybox initramfs) for the Linux tests; cached
# under ~/.cache/ferrovisor/linux/, so this is quick after the first time.
step fetch-linux scripts/fetch-linux.sh --perf
step fmt cargo fmt --all --check
# --all-targets skips test targets marked `test = false` (the QEMU tests): lint them too.
clippy_host() {
    cargo clippy --all-targets -- -D warnings &&
        cargo clippy -p ferrovisor --test qemu --test linux --test containment --test lifecycle --test control --test network --test devices --test rest -- -D warnings
}

step clippy-host clippy_host
step clippy-bare-metal cargo clippy --target "$TARGET" "${bare_metal[@]}" -- -D warnings
step unit-tests cargo test
step build scripts/build.sh
step qemu-tests cargo test -p ferrovisor --test qemu -- --test-threads=1
step containment-tests cargo test -p ferrovisor --test containment -- --test-threads=1
# drive.py and mkinitramfs.py (the Linux guest's tools), without QEMU.
step guest-linux-tools python3 -m unittest discover -s scripts/guest-linux -p 'test_*.py'
# --nocapture: each step of the Linux tests, with its time, shows in the log.
step linux-tests cargo test -p ferrovisor --test linux -- --test-threads=1 --nocapture
# VMs on the hypervisor's switches: ping, uplink download, port forward, spoofing.
step network-tests cargo test -p ferrovisor --test network -- --test-threads=1 --nocapture
# Several VMs at once, pause/resume, destroy/start, fairness, overcommit (Linux
# and cpu-hog), driven through the management shell.
step lifecycle-tests cargo test -p ferrovisor --test lifecycle -- --test-threads=1 --nocapture
# A running instance managed from other processes: ps, vm, stats, logs, console
# over the control channel (two Linux VMs).
step control-tests cargo test -p ferrovisor --test control -- --test-threads=1 --nocapture
# VM disks (ext4 images, reboot, read-only, two VMs) and virtio-rng, served
# from QEMU's own devices; the images checked with debugfs afterwards.
step device-tests cargo test -p ferrovisor --test devices -- --test-threads=1
# The REST API of a running instance: HTTP on http.sock and loopback TCP,
# tokens, JSON errors, OpenAPI, events, /metrics (promtool when installed;
# required under CI), audit log, a 20-client load test (two Linux VMs).
step rest-tests cargo test -p ferrovisor --test rest -- --test-threads=1 --nocapture

echo
echo "=== summary"
for r in "${results[@]}"; do
    echo "  $r"
done
echo "  steps: $(( ${#results[@]} - failed_steps )) ok, $failed_steps failed; total $((SECONDS - suite_start)) s; QEMU logs in target/qemu-logs/"
echo "tests: $tests_passed passed, $tests_failed failed"
[ "$failed_steps" -eq 0 ]
