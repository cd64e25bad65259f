#!/usr/bin/env bash
# Sets up, builds, and boots the VMs of examples/default.yaml under Ferrovisor in QEMU.
# Extra arguments go to `ferrovisor run` (e.g. --timeout 60).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/setup.sh
scripts/build.sh
exec cargo run --release -p ferrovisor -- run --config examples/default.yaml "$@"
