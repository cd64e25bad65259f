#!/usr/bin/env bash
# Installs what building and testing Ferrovisor needs, and nothing else:
#   - QEMU >= 8 for riscv64 with OpenSBI firmware and for aarch64 (Debian 12: from
#     bookworm-backports; never from trixie/sid, which would upgrade the base system),
#   - e2fsprogs (disk tests), prometheus's promtool (metrics test), chromium and
#     chromium-driver (the dashboard test drives a headless browser over WebDriver),
#   - the Rust toolchain pinned in rust-toolchain.toml, with its components and targets.
# Idempotent: when everything is present it only checks and returns quickly.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { echo "[setup] $*"; }
die() { echo "[setup] ERROR: $*" >&2; exit 1; }

QEMU_MIN_MAJOR=8
FIRMWARE=/usr/share/qemu/opensbi-riscv64-generic-fw_dynamic.bin

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "not root and no sudo: cannot install packages"
    SUDO=(sudo)
fi

qemu_major() {
    local bin=${1:-qemu-system-riscv64}
    command -v "$bin" >/dev/null 2>&1 || { echo 0; return; }
    "$bin" --version | sed -nE '1s/.*version ([0-9]+)\..*/\1/p'
}

qemu_ok() {
    local major arm
    major=$(qemu_major qemu-system-riscv64)
    arm=$(qemu_major qemu-system-aarch64)
    [ "${major:-0}" -ge "$QEMU_MIN_MAJOR" ] && [ "${arm:-0}" -ge "$QEMU_MIN_MAJOR" ] && [ -e "$FIRMWARE" ]
}

# apt's lists are refreshed only when missing or older than a day.
apt_update_if_stale() {
    local pattern=$1 fresh
    fresh=$(find /var/lib/apt/lists -maxdepth 1 -name "*${pattern}*InRelease" -mtime -1 2>/dev/null | head -n1)
    if [ -z "$fresh" ]; then
        say "apt-get update (package lists missing or older than a day)"
        "${SUDO[@]}" apt-get update
    else
        say "apt package lists are fresh; no update"
    fi
}

ensure_bookworm_backports() {
    if grep -rqs --include='*.list' --include='*.sources' 'bookworm-backports' \
        /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null; then
        say "bookworm-backports is already an apt source"
        return
    fi
    # Use the machine's own Debian mirror when it has one.
    local uri
    uri=$(grep -rhoE 'https?://[^ ]+/debian/?$' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1 || true)
    [ -n "$uri" ] || uri=$(grep -hoE '^deb +https?://[^ ]+/debian/? ' /etc/apt/sources.list 2>/dev/null | awk '{print $2}' | head -n1 || true)
    [ -n "$uri" ] || die "no Debian mirror in this machine's apt sources (/etc/apt/sources.list, /etc/apt/sources.list.d/*.sources) to add bookworm-backports from; add one there"
    say "adding bookworm-backports ($uri) as /etc/apt/sources.list.d/bookworm-backports.sources"
    "${SUDO[@]}" tee /etc/apt/sources.list.d/bookworm-backports.sources >/dev/null <<SRC
Types: deb
URIs: $uri
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    # A new source always needs its lists fetched.
    "${SUDO[@]}" apt-get update
}

install_qemu() {
    command -v apt-get >/dev/null 2>&1 || die "QEMU >= $QEMU_MIN_MAJOR is missing and apt-get is not available; install qemu-system-riscv64 and OpenSBI by hand"
    local codename=""
    # shellcheck disable=SC1091
    [ -r /etc/os-release ] && codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
    local target=()
    if [ "$codename" = bookworm ]; then
        ensure_bookworm_backports
        apt_update_if_stale bookworm-backports
        target=(-t bookworm-backports)
    else
        apt_update_if_stale "$codename"
    fi
    local pkgs=(qemu-system-misc qemu-system-arm qemu-system-data opensbi)
    # QEMU 10 packages riscv separately; older QEMU has it in qemu-system-misc.
    if apt-cache show "${target[@]}" qemu-system-riscv >/dev/null 2>&1; then
        pkgs+=(qemu-system-riscv)
    fi
    say "installing ${pkgs[*]} ${target[*]}"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${target[@]}" "${pkgs[@]}"
}

# --- QEMU -------------------------------------------------------------------
if qemu_ok; then
    say "QEMU $(qemu-system-riscv64 --version | sed -nE '1s/.*version ([^ ]+).*/\1/p') with OpenSBI firmware: ok"
else
    say "QEMU >= $QEMU_MIN_MAJOR for riscv64 and aarch64 (or the OpenSBI firmware) is missing; installing"
    install_qemu
    qemu_ok || die "after installing, qemu-system-riscv64 is version $(qemu_major qemu-system-riscv64) and qemu-system-aarch64 version $(qemu_major qemu-system-aarch64) (need >= $QEMU_MIN_MAJOR for both), or $FIRMWARE is missing"
    say "QEMU $(qemu-system-riscv64 --version | sed -nE '1s/.*version ([^ ]+).*/\1/p'): ok"
fi

# --- e2fsprogs ----------------------------------------------------------------
# The disk tests build ext4 images on the host (`mke2fs -d`) and read them back
# after the machine exits (`debugfs -R 'cat /f'`).
if command -v mke2fs >/dev/null 2>&1 && command -v debugfs >/dev/null 2>&1; then
    say "e2fsprogs (mke2fs, debugfs): ok"
else
    command -v apt-get >/dev/null 2>&1 || die "e2fsprogs (mke2fs, debugfs) is missing and apt-get is not available"
    say "e2fsprogs is missing; installing"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends e2fsprogs
    command -v mke2fs >/dev/null 2>&1 && command -v debugfs >/dev/null 2>&1 || die "e2fsprogs installed but mke2fs/debugfs not found"
fi

# --- promtool (the REST test checks /metrics with `promtool check metrics`) ---
if command -v promtool >/dev/null 2>&1; then
    say "promtool: ok ($(command -v promtool))"
else
    command -v apt-get >/dev/null 2>&1 || die "promtool is missing and apt-get is not available; install Prometheus's promtool by hand"
    codename=""
    # shellcheck disable=SC1091
    [ -r /etc/os-release ] && codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
    apt_update_if_stale "$codename"
    say "promtool is missing; installing the prometheus package (it provides promtool)"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus
    command -v promtool >/dev/null 2>&1 || die "after installing prometheus, promtool is still missing"
    say "promtool: ok"
fi

# --- chromium + chromium-driver (the dashboard test drives headless chromium over WebDriver) ---
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    say "chromium and chromedriver: ok"
else
    command -v apt-get >/dev/null 2>&1 || die "chromium/chromedriver are missing and apt-get is not available"
    codename=""
    # shellcheck disable=SC1091
    [ -r /etc/os-release ] && codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
    apt_update_if_stale "$codename"
    say "chromium or chromedriver is missing; installing chromium and chromium-driver (about 100 MB)"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium chromium-driver fonts-dejavu-core
    command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 || die "after installing, chromium or chromedriver is still missing"
    say "chromium and chromedriver: ok"
fi

# --- Rust toolchain -----------------------------------------------------------
command -v rustup >/dev/null 2>&1 || die "rustup is not installed; it provides the pinned toolchain (rust-toolchain.toml)"
channel=$(sed -nE 's/^channel *= *"([^"]+)".*/\1/p' rust-toolchain.toml)
components=$(sed -nE 's/^components *= *\[(.*)\].*/\1/p' rust-toolchain.toml | tr -d '" ' | tr ',' ' ')
targets=$(sed -nE 's/^targets *= *\[(.*)\].*/\1/p' rust-toolchain.toml | tr -d '" ' | tr ',' ' ')
[ -n "$channel" ] || die "no channel in rust-toolchain.toml"

toolchain_ok() {
    rustup toolchain list 2>/dev/null | grep -q "^${channel}-" || return 1
    local installed_c installed_t c t
    installed_c=$(rustup component list --installed --toolchain "$channel" 2>/dev/null)
    for c in $components; do
        grep -q "^${c}" <<<"$installed_c" || return 1
    done
    installed_t=$(rustup target list --installed --toolchain "$channel" 2>/dev/null)
    for t in $targets; do
        grep -qx "$t" <<<"$installed_t" || return 1
    done
}

if toolchain_ok; then
    say "Rust $channel with components [$components] and targets [$targets]: ok"
else
    say "installing Rust $channel with components [$components] and targets [$targets]"
    args=(toolchain install "$channel" --profile minimal)
    for c in $components; do args+=(--component "$c"); done
    for t in $targets; do args+=(--target "$t"); done
    rustup "${args[@]}"
    toolchain_ok || die "Rust $channel is still incomplete after rustup toolchain install"
    say "Rust $channel: ok"
fi
say "done"
