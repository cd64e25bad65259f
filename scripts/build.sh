#!/usr/bin/env bash
# Builds the bare-metal binaries (release, riscv64gc-unknown-none-elf): the
# hypervisor `ferrovisor-hv` and every guest under guests/ (all but the `rt`
# library). Keeps going after a failure so every broken crate is reported, then
# exits non-zero if any failed.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

TARGET=riscv64gc-unknown-none-elf
say() { echo "[build] $*"; }

crates=(ferrovisor-hv)
for manifest in guests/*/Cargo.toml; do
    dir=$(dirname "$manifest")
    [ "$(basename "$dir")" = rt ] && continue
    name=$(sed -nE '0,/^name *= *"([^"]+)".*/s//\1/p' "$manifest")
    [ -n "$name" ] && crates+=("$name")
done

failed=()
for crate in "${crates[@]}"; do
    say "cargo build --release --target $TARGET -p $crate"
    if ! cargo build --release --target "$TARGET" -p "$crate"; then
        echo "[build] ERROR: $crate does not build (see the compiler output above)" >&2
        failed+=("$crate")
    fi
done

if [ ${#failed[@]} -ne 0 ]; then
    echo "[build] FAILED: ${failed[*]} ($(( ${#crates[@]} - ${#failed[@]} ))/${#crates[@]} built)" >&2
    exit 1
fi
say "all ${#crates[@]} built: ${crates[*]} (target/$TARGET/release/)"
