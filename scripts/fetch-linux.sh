#!/usr/bin/env bash
# Obtains an unmodified riscv64 Linux guest: Debian's kernel (trixie,
# linux-image-*-riscv64) and a small gzip initramfs built around Debian's
# busybox-static (riscv64), with the virtio modules virtio_mmio, virtio_blk,
# virtio_net (+ failover, net_failover) and virtio-rng, and ext4 (+ jbd2,
# mbcache, crc16, read from each module's depends=) with crc32c_generic (what
# mounting a metadata_csum filesystem asks the crypto API for).
#
# Packages are fetched with `apt-get download` through a PRIVATE apt
# configuration (own sources list, lists, state and cache under the cache dir,
# APT::Architectures=riscv64): the machine's apt state is never read for
# sources nor written. Only missing host tools (amd64: xz-utils, python3, ...)
# are installed with the system's apt.
#
# Idempotent: everything is cached under
#   ${XDG_CACHE_HOME:-$HOME/.cache}/ferrovisor/linux/
# keyed by package version; the private package lists are refreshed at most
# once a day, and a run with everything cached downloads nothing.
#
# With --perf it also builds a second initramfs, initramfs-perf.cpio.gz: the
# same plus Debian's `perf` (linux-perf) at /bin/perf with the dynamic loader
# and the shared libraries it needs (read from the ELF files; the packages are
# linux-perf's library dependencies, fetched the same way). The default
# initramfs stays small.
#
# Usage: scripts/fetch-linux.sh [--offline] [--refresh] [--env] [--quiet] [--perf]
#   --offline   never touch the network; use the cached lists/.debs/builds
#   --refresh   refresh the private package lists even if less than a day old
#   --env       print only shell assignments (FV_LINUX_IMAGE=..., ...) on stdout
#   --quiet     no progress messages (errors still go to stderr)
#   --perf      also build initramfs-perf.cpio.gz (current/initramfs-perf.cpio.gz)
# Environment:
#   FV_DEBIAN_MIRROR     mirror URL (default: the machine's Debian mirror)
#   FV_DEBIAN_SUITE      suite (default: trixie)
#   FV_LINUX_KERNEL_PKG  kernel package (default: what linux-image-riscv64 depends on)
#   FV_LINUX_MODULES     modules to include (default: virtio_mmio virtio_blk virtio_net virtio_rng ext4 crc32c_generic)
# Output (last lines): the paths of the kernel Image and the initramfs, also
# recorded in <cache>/current.env and as symlinks <cache>/current/{Image,initramfs.cpio.gz}.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
GUEST_DIR="$HERE/guest-linux"
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/ferrovisor/linux
ARCH=riscv64
SUITE=${FV_DEBIAN_SUITE:-trixie}
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
MODULES_WANTED=${FV_LINUX_MODULES:-virtio_mmio virtio_blk virtio_net virtio_rng ext4 crc32c_generic}
LISTS_MAX_AGE_MIN=1440
# Bump when what extract_kernel writes changes (or the default module set), so
# cached kernel dirs are redone.
KERNEL_LAYOUT=3

OFFLINE=0 REFRESH=0 ENV_ONLY=0 QUIET=0 PERF=0
for arg in "$@"; do
    case "$arg" in
        --offline) OFFLINE=1 ;;
        --refresh) REFRESH=1 ;;
        --env) ENV_ONLY=1 ;;
        --quiet|-q) QUIET=1 ;;
        --perf) PERF=1 ;;
        -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
        *) echo "[fetch-linux] ERROR: unknown argument: $arg (see --help)" >&2; exit 2 ;;
    esac
done

START=$(date +%s.%N)
say() { [ "$QUIET" = 1 ] || echo "[fetch-linux] $*" >&2; }
warn() { echo "[fetch-linux] WARNING: $*" >&2; }
die() { echo "[fetch-linux] ERROR: $*" >&2; exit 1; }
# Runs a command with its output on stderr, or, with --quiet, kept in a log that
# is shown only if the command fails.
run_shown() {
    if [ "$QUIET" = 0 ]; then
        "$@" >&2
    else
        local log rc=0
        log=$(mktemp)
        "$@" > "$log" 2>&1 || rc=$?
        [ "$rc" = 0 ] || cat "$log" >&2
        rm -f "$log"
        return "$rc"
    fi
}
elapsed() { awk -v s="$START" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }'; }

# ---------------------------------------------------------------- host tools
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    SUDO=(sudo)
fi

ensure_host_tools() {
    local missing=() tool pkg
    for pair in xz:xz-utils python3:python3 dpkg-deb:dpkg tar:tar apt-get:apt gpgv:gpgv; do
        tool=${pair%%:*} pkg=${pair#*:}
        command -v "$tool" >/dev/null 2>&1 || missing+=("$pkg")
    done
    [ -e "$KEYRING" ] || missing+=(debian-archive-keyring)
    [ ${#missing[@]} -eq 0 ] && return
    [ "$OFFLINE" = 0 ] || die "missing host packages (${missing[*]}) and --offline given"
    if [ ${#SUDO[@]} -ne 0 ] && ! command -v sudo >/dev/null 2>&1; then
        die "not root and no sudo: cannot install ${missing[*]}"
    fi
    say "installing host packages: ${missing[*]}"
    if ! run_shown "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"; then
        say "apt-get update (system lists) and retry"
        run_shown "${SUDO[@]}" apt-get -q update
        run_shown "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
    fi
}

# ---------------------------------------------------------------- private apt
# The machine's Debian mirror: $FV_DEBIAN_MIRROR, else the first
# non-security `URIs:` of deb822 sources, else the first non-security `deb`
# line; empty if the machine has none (the caller then stops: no mirror is
# ever guessed).
machine_mirror() {
    local uri=""
    if [ -n "${FV_DEBIAN_MIRROR:-}" ]; then
        echo "$FV_DEBIAN_MIRROR"; return
    fi
    for f in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        uri=$(awk 'tolower($1) == "uris:" { for (i = 2; i <= NF; i++) if ($i !~ /security/) { print $i; exit } }' "$f")
        [ -n "$uri" ] && break
    done
    if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
        uri=$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z+]+:\/\//) { if ($i !~ /security/) print $i; break } }' /etc/apt/sources.list | head -n1)
    fi
    echo "$uri"
}

# The mirror this run uses, found once (`resolve_mirror`).
MIRROR=""
resolve_mirror() {
    MIRROR=$(machine_mirror)
    [ -n "$MIRROR" ] || die "no Debian mirror in this machine's apt sources (/etc/apt/sources.list, /etc/apt/sources.list.d/*.sources); add one there or set FV_DEBIAN_MIRROR"
}

APT_DIR="$CACHE/apt"
# Writes $1 only when its content changes (keeps mtimes meaningful).
write_if_changed() {
    local path=$1 content=$2
    if [ ! -f "$path" ] || [ "$(cat "$path")" != "$content" ]; then
        printf '%s\n' "$content" > "$path.tmp" && mv "$path.tmp" "$path"
    fi
}

setup_private_apt() {
    local mirror sandbox_user
    mirror=$MIRROR
    mkdir -p "$APT_DIR"/{apt.conf.d,preferences.d,sources.list.d,trusted.gpg.d,lists/partial,archives/partial,log}
    [ -f "$APT_DIR/status" ] || : > "$APT_DIR/status"   # no package is "installed"
    write_if_changed "$APT_DIR/sources.list" \
        "deb [arch=$ARCH signed-by=$KEYRING] $mirror $SUITE main"
    sandbox_user=$(id -un)
    # Network-related settings of the machine's apt (proxies, date checks) are
    # carried over; nothing else of its configuration is read.
    local carried
    carried=$(env -u APT_CONFIG apt-config dump 2>/dev/null |
        grep -E '^Acquire::(https?|ftp)::[Pp]roxy|^Acquire::(https?::)?(Check-Valid-Until|Check-Date|Retries|Max-ValidTime) ' || true)
    write_if_changed "$APT_DIR/apt.conf" "// Private apt configuration of scripts/fetch-linux.sh (generated).
Dir::Etc::main \"/dev/null\";
Dir::Etc::Parts \"$APT_DIR/apt.conf.d\";
Dir::Etc::SourceList \"$APT_DIR/sources.list\";
Dir::Etc::SourceParts \"$APT_DIR/sources.list.d\";
Dir::Etc::Preferences \"/dev/null\";
Dir::Etc::PreferencesParts \"$APT_DIR/preferences.d\";
Dir::Etc::Trusted \"$APT_DIR/trusted.gpg\";
Dir::Etc::TrustedParts \"$APT_DIR/trusted.gpg.d\";
Dir::State \"$APT_DIR\";
Dir::State::Lists \"$APT_DIR/lists\";
Dir::State::status \"$APT_DIR/status\";
Dir::Cache \"$APT_DIR\";
Dir::Cache::archives \"$APT_DIR/archives\";
Dir::Cache::srcpkgcache \"\";
Dir::Log \"$APT_DIR/log\";
APT::Architecture \"$ARCH\";
APT::Architectures { \"$ARCH\"; };
APT::Sandbox::User \"$sandbox_user\";
Acquire::Languages \"none\";
Acquire::GzipIndexes \"true\";
$carried"
    export APT_CONFIG="$APT_DIR/apt.conf"
}

# Whether apt has lists for the configured mirror and suite (apt names them
# after the URI without its scheme, slashes made underscores: host_debian_...).
lists_present() {
    local prefix
    prefix=$(echo "$MIRROR" | sed -E 's#^[a-z+]+://##; s#/+$##; s#/#_#g')
    [ -f "$APT_DIR/lists/${prefix}_dists_${SUITE}_InRelease" ] &&
        compgen -G "$APT_DIR/lists/${prefix}_dists_${SUITE}_main_binary-${ARCH}_Packages*" >/dev/null
}

# Refreshes the private lists when missing, older than a day (by our own stamp:
# apt gives list files the server's date, not the download's), the sources
# changed, or --refresh.
refresh_lists() {
    local stamp="$APT_DIR/lists/.updated"
    if [ "$OFFLINE" = 1 ]; then
        say "offline: not refreshing package lists"
        return
    fi
    if [ "$REFRESH" = 0 ] && lists_present && [ -f "$stamp" ] &&
        [ -n "$(find "$stamp" -mmin -"$LISTS_MAX_AGE_MIN" -newer "$APT_DIR/sources.list" 2>/dev/null)" ]; then
        say "package lists ($SUITE/$ARCH) are less than a day old; not refreshing"
        return
    fi
    say "apt-get update (private lists: $SUITE main $ARCH from $MIRROR)"
    if run_shown apt-get -q --error-on=any update; then
        touch "$stamp"
    elif lists_present; then
        warn "apt-get update failed; using the existing (older) package lists"
    else
        die "apt-get update failed and there are no package lists"
    fi
}

# Field $2 of package $1's candidate (e.g. Version, Depends, Size).
pkg_field() {
    apt-cache show --no-all-versions "$1:$ARCH" 2>/dev/null |
        awk -v f="$2" 'index($0, f ": ") == 1 { print substr($0, length(f) + 3); exit }'
}

# ---------------------------------------------------------------- downloads
DEB_DIR="$CACHE/debs"
# Directory-name form of a version: without the epoch ("1:1.37.0-6" -> 1.37.0-6).
vdir() { echo "${1#*:}"; }
deb_path() { echo "$DEB_DIR/${1}_${2//:/%3a}_${ARCH}.deb"; }

# Removes the entries of directory $1 whose names do not start with $2.
prune() {
    local entry
    for entry in "$1"/*; do
        [ -e "$entry" ] || continue
        case "${entry##*/}" in
            "$2"*) ;;
            *) say "removing old ${entry#"$CACHE"/}"; rm -rf "$entry" ;;
        esac
    done
}

download_deb() {
    local pkg=$1 ver=$2 path size tmp
    path=$(deb_path "$pkg" "$ver")
    if [ -s "$path" ]; then
        say "cached: $(basename "$path")"
        return
    fi
    [ "$OFFLINE" = 0 ] || die "$(basename "$path") is not cached and --offline given"
    size=$(pkg_field "$pkg" Size)
    say "downloading $pkg $ver ($(awk -v s="${size:-0}" 'BEGIN { printf "%.1f", s / 1048576 }') MiB)"
    tmp=$(mktemp -d "$DEB_DIR/.dl.XXXXXX")
    (cd "$tmp" && run_shown apt-get -q download "$pkg:$ARCH=$ver") || { rm -rf "$tmp"; die "apt-get download $pkg=$ver failed"; }
    mv "$tmp"/*.deb "$path"
    rmdir "$tmp"
    # The cache keeps one version per package: drop older .debs (the kernel's is
    # ~110 MB) and what was extracted or built from them.
    local old
    for old in "$DEB_DIR/${pkg}"_*.deb; do
        [ "$old" = "$path" ] || { say "removing old $(basename "$old")"; rm -f "$old"; }
    done
    case "$pkg" in
        busybox-static) prune "$CACHE/busybox" "$(vdir "$ver")" ;;
        linux-image-*) prune "$CACHE/kernel" "$(vdir "$ver")" ;;
        linux-perf) prune "$CACHE/perf" "$(vdir "$ver")" ;;
    esac
}

# ---------------------------------------------------------------- kernel
# Module name as the kernel sees it ("virtio-rng" -> "virtio_rng").
modname() { local n=${1##*/}; n=${n%.ko.xz}; n=${n%.ko}; echo "${n//-/_}"; }

# Extracts Image, config, System.map and the module closure of
# $MODULES_WANTED (decompressed, plus load-order and modules.dep) into $1
# from the kernel .deb $2. The package has no modules.dep, so dependencies are
# read from each module's .modinfo ("depends=a,b"), a pass per level.
extract_kernel() {
    local out=$1 deb=$2 tmp listing kver moddir round mod path d
    tmp="$out.tmp"
    rm -rf "$tmp"; mkdir -p "$tmp/modules" "$tmp/x"
    say "listing $(basename "$deb")"
    listing="$tmp/files.txt"
    dpkg-deb --fsys-tarfile "$deb" | tar -t > "$listing"
    kver=$(sed -nE 's#^\./boot/vmlinux-(.*)$#\1#p' "$listing" | head -n1)
    [ -n "$kver" ] || die "no boot/vmlinux-* in $(basename "$deb")"
    moddir=./usr/lib/modules/$kver
    grep -qxF "$moddir/" "$listing" || moddir=./lib/modules/$kver
    # Module name ("virtio-rng" -> virtio_rng) -> archive path, for every module.
    declare -A where=()
    while read -r mod path; do
        where[$mod]=$path
    done < <(awk '/\.ko(\.xz)?$/ { n = $0; sub(/.*\//, "", n); sub(/\.ko(\.xz)?$/, "", n); gsub(/-/, "_", n); print n, $0 }' "$listing")

    local extract=("./boot/vmlinux-$kver" "./boot/config-$kver" "./boot/System.map-$kver")
    local meta=() f
    for f in modules.builtin modules.order; do
        grep -qxF "$moddir/$f" "$listing" && meta+=("$moddir/$f")
    done
    extract+=("${meta[@]}")
    declare -A state=() deps=()
    local queue=() need=() absent=()
    for mod in $MODULES_WANTED; do queue+=("$(modname "$mod")"); done
    round=0
    while :; do
        need=() absent=()
        for mod in "${queue[@]}"; do
            [ -n "${state[$mod]:-}" ] && continue
            if [ -n "${where[$mod]:-}" ]; then
                extract+=("${where[$mod]}"); need+=("$mod"); state[$mod]=pending
            else
                absent+=("$mod")
            fi
        done
        [ ${#extract[@]} -eq 0 ] && [ ${#absent[@]} -eq 0 ] && break
        round=$((round + 1))
        if [ ${#extract[@]} -ne 0 ]; then
            say "extracting (pass $round): $(printf '%s ' "${extract[@]##*/}")"
            dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp/x" "${extract[@]}"
        fi
        extract=()
        for mod in "${absent[@]}"; do
            if [ -f "$tmp/x/$moddir/modules.builtin" ] &&
                grep -qE "/(${mod}|${mod//_/-})\.ko\$" "$tmp/x/$moddir/modules.builtin"; then
                say "module $mod is built into the kernel"
                state[$mod]=builtin
            else
                die "module $mod is neither in $(basename "$deb") nor built in"
            fi
        done
        queue=()
        for mod in "${need[@]}"; do
            path="$tmp/x/${where[$mod]}"
            case "$path" in
                *.xz) xz -dc "$path" > "$tmp/modules/$mod.ko" ;;
                *) cp "$path" "$tmp/modules/$mod.ko" ;;
            esac
            state[$mod]=yes
            d=$(tr '\0' '\n' < "$tmp/modules/$mod.ko" | sed -n 's/^depends=//p' | head -n1)
            deps[$mod]=${d//,/ }
            for d in ${deps[$mod]}; do queue+=("$(modname "$d")"); done
        done
    done
    # Load order: dependencies first (depth-first post-order).
    declare -A placed=()
    local order=() order_save=() i
    place() {
        local m=$1 dep
        [ -n "${placed[$m]:-}" ] && return
        placed[$m]=1
        for dep in ${deps[$m]:-}; do place "$(modname "$dep")"; done
        [ "${state[$m]:-}" = yes ] && order+=("$m")
        return 0
    }
    for mod in $MODULES_WANTED; do place "$(modname "$mod")"; done
    printf '%s\n' "${order[@]}" > "$tmp/modules/load-order"
    # modules.dep as depmod writes it: every module with its transitive
    # dependencies, the one to load first last (busybox modprobe reads this).
    : > "$tmp/modules/modules.dep"
    local line closure m
    for mod in "${order[@]}"; do
        placed=() order_save=("${order[@]}") order=()
        place "$mod"
        closure=("${order[@]}") order=("${order_save[@]}")
        line="$mod.ko:"
        for ((i = ${#closure[@]} - 1; i >= 0; i--)); do
            m=${closure[i]}
            [ "$m" = "$mod" ] || line+=" $m.ko"
        done
        echo "$line" >> "$tmp/modules/modules.dep"
    done

    mv "$tmp/x/boot/vmlinux-$kver" "$tmp/Image"
    mv "$tmp/x/boot/config-$kver" "$tmp/config"
    mv "$tmp/x/boot/System.map-$kver" "$tmp/System.map"
    for f in "${meta[@]}"; do mv "$tmp/x/$f" "$tmp/modules/${f##*/}"; done
    echo "$kver" > "$tmp/release"
    echo "$KERNEL_LAYOUT" > "$tmp/layout"
    rm -rf "$tmp/x"
    # A flat RISC-V Image has the magic "RSC\x05" at offset 56.
    [ "$(dd if="$tmp/Image" bs=1 skip=56 count=3 status=none)" = RSC ] ||
        die "boot/vmlinux-$kver is not a flat RISC-V Image"
    rm -rf "$out"
    mv "$tmp" "$out"
}

# ---------------------------------------------------------------- main
ensure_host_tools
mkdir -p "$CACHE" "$DEB_DIR"
# One run at a time per cache (test runners may start several).
exec 9> "$CACHE/.lock"
if ! flock -n 9; then
    say "another fetch-linux.sh is running on this cache; waiting"
    flock 9
fi
resolve_mirror
setup_private_apt
refresh_lists

KERNEL_PKG=${FV_LINUX_KERNEL_PKG:-}
KERNEL_VER="" BUSYBOX_VER=""
if lists_present; then
    if [ -z "$KERNEL_PKG" ]; then
        KERNEL_PKG=$(pkg_field linux-image-riscv64 Depends | grep -oE 'linux-image-[^ ,]+-riscv64' | head -n1)
        [ -n "$KERNEL_PKG" ] || die "cannot resolve linux-image-riscv64 in the $SUITE lists"
    fi
    KERNEL_VER=$(pkg_field "$KERNEL_PKG" Version)
    BUSYBOX_VER=$(pkg_field busybox-static Version)
    [ -n "$KERNEL_VER" ] || die "package $KERNEL_PKG not found in $SUITE"
    [ -n "$BUSYBOX_VER" ] || die "package busybox-static not found in $SUITE"
elif [ "$OFFLINE" = 1 ] && [ -f "$CACHE/current.env" ]; then
    # shellcheck disable=SC1091
    . "$CACHE/current.env"
    KERNEL_PKG=${FV_LINUX_KERNEL_PKG:-$FV_LINUX_PACKAGE} KERNEL_VER=$FV_LINUX_PACKAGE_VERSION
    BUSYBOX_VER=$FV_BUSYBOX_VERSION
else
    die "no package lists (run without --offline once)"
fi
say "kernel: $KERNEL_PKG $KERNEL_VER; busybox-static $BUSYBOX_VER"

KERNEL_DIR="$CACHE/kernel/$(vdir "$KERNEL_VER")"
BUSYBOX_DIR="$CACHE/busybox/$(vdir "$BUSYBOX_VER")"
# The module set is part of the kernel dir's key (the default keeps the plain name).
mods_key=$(echo "$MODULES_WANTED" | tr ' ' '\n' | sort | tr '\n' ' ')
if [ "$mods_key" != "crc32c_generic ext4 virtio_blk virtio_mmio virtio_net virtio_rng " ]; then
    KERNEL_DIR+="-m$(echo "$mods_key" | sha256sum | cut -c1-8)"
fi

if [ -f "$KERNEL_DIR/Image" ] && [ "$(cat "$KERNEL_DIR/layout" 2>/dev/null)" = "$KERNEL_LAYOUT" ]; then
    say "cached: kernel $KERNEL_VER in $KERNEL_DIR"
else
    download_deb "$KERNEL_PKG" "$KERNEL_VER"
    mkdir -p "$CACHE/kernel"
    extract_kernel "$KERNEL_DIR" "$(deb_path "$KERNEL_PKG" "$KERNEL_VER")"
    say "kernel $(cat "$KERNEL_DIR/release") extracted; modules (load order): $(tr '\n' ' ' < "$KERNEL_DIR/modules/load-order")"
fi
KREL=$(cat "$KERNEL_DIR/release")

if [ -x "$BUSYBOX_DIR/busybox" ]; then
    say "cached: busybox $BUSYBOX_VER"
else
    download_deb busybox-static "$BUSYBOX_VER"
    rm -rf "$BUSYBOX_DIR.tmp"; mkdir -p "$BUSYBOX_DIR.tmp"
    dpkg-deb --fsys-tarfile "$(deb_path busybox-static "$BUSYBOX_VER")" |
        tar -x -C "$BUSYBOX_DIR.tmp" --wildcards '*/bin/busybox'
    bb=$(find "$BUSYBOX_DIR.tmp" -name busybox -type f | head -n1)
    [ -n "$bb" ] || die "no busybox binary in busybox-static $BUSYBOX_VER"
    mv "$bb" "$BUSYBOX_DIR.tmp/busybox.bin"
    find "$BUSYBOX_DIR.tmp" -mindepth 1 -maxdepth 1 -type d -exec rm -rf {} +
    mv "$BUSYBOX_DIR.tmp/busybox.bin" "$BUSYBOX_DIR.tmp/busybox"
    rm -rf "$BUSYBOX_DIR"; mv "$BUSYBOX_DIR.tmp" "$BUSYBOX_DIR"
    say "busybox $BUSYBOX_VER extracted"
fi

# The initramfs is keyed by both versions plus a hash of what shapes it
# (overlay files, the builder, the module set).
inputs_hash=$( (cd "$GUEST_DIR" && find rootfs mkinitramfs.py -type f -print0 | sort -z |
    xargs -0 sha256sum; find rootfs -type f -perm /111 | sort; cat "$KERNEL_DIR/modules/load-order" "$KERNEL_DIR/modules/modules.dep") |
    sha256sum | cut -c1-12)
INITRD_DIR="$CACHE/initramfs/linux-$(vdir "$KERNEL_VER")_busybox-$(vdir "$BUSYBOX_VER")_$inputs_hash"
INITRD="$INITRD_DIR/initramfs.cpio.gz"
if [ -s "$INITRD" ]; then
    say "cached: initramfs $INITRD"
else
    say "building initramfs ($KREL, busybox $BUSYBOX_VER)"
    mkdir -p "$INITRD_DIR"
    # Only the .ko files and modules.dep/load-order go into the image.
    modstage="$INITRD_DIR/modules.stage"
    rm -rf "$modstage"; mkdir -p "$modstage"
    cp "$KERNEL_DIR"/modules/*.ko "$KERNEL_DIR/modules/load-order" "$KERNEL_DIR/modules/modules.dep" "$modstage/"
    if ! python3 "$GUEST_DIR/mkinitramfs.py" --busybox "$BUSYBOX_DIR/busybox" \
        --rootfs "$GUEST_DIR/rootfs" --modules "$modstage" --kernel-release "$KREL" \
        --out "$INITRD" 2> "$INITRD_DIR/build.log"; then
        cat "$INITRD_DIR/build.log" >&2
        die "initramfs build failed"
    fi
    [ "$QUIET" = 1 ] || cat "$INITRD_DIR/build.log" >&2
    rm -rf "$modstage"
    [ -s "$INITRD" ] || die "initramfs build failed"
    prune "$CACHE/initramfs" "linux-$(vdir "$KERNEL_VER")_busybox-$(vdir "$BUSYBOX_VER")_"
fi

# ---------------------------------------------------------------- perf (--perf)
# linux-perf and the packages of its Depends closure that can hold shared
# libraries (lib*; not their -stdlib/-common/-minimal/-modules data packages):
# mkinitramfs.py takes from them only the libraries perf really needs.
perf_packages() {
    apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts \
        --no-breaks --no-replaces --no-enhances "linux-perf:$ARCH" 2>/dev/null |
        grep -E '^[a-z0-9]' | sed 's/:.*//' | sort -u |
        grep -E '^(linux-perf$|lib|zlib)' | grep -vE -- '-(stdlib|common|minimal|modules.*|perl|data|bin|utils)$'
}

INITRD_PERF=""
if [ "$PERF" = 1 ]; then
    PERF_VER=$(pkg_field linux-perf Version)
    [ -n "$PERF_VER" ] || die "package linux-perf not found in $SUITE"
    PERF_DIR="$CACHE/perf/$(vdir "$PERF_VER")"
    perf_pkgs=$(perf_packages | tr '\n' ' ')
    if [ "$(cat "$PERF_DIR/pool.done" 2>/dev/null)" = "$perf_pkgs" ]; then
        say "cached: linux-perf $PERF_VER and its libraries"
    else
        rm -rf "$PERF_DIR"; mkdir -p "$PERF_DIR/pool"
        for pkg in $perf_pkgs; do
            ver=$(pkg_field "$pkg" Version)
            [ -n "$ver" ] || die "package $pkg (needed by linux-perf) not found"
            download_deb "$pkg" "$ver"
            dpkg-deb -x "$(deb_path "$pkg" "$ver")" "$PERF_DIR/pool"
        done
        echo "$perf_pkgs" > "$PERF_DIR/pool.done"
    fi
    INITRD_PERF="$INITRD_DIR/initramfs-perf.cpio.gz"
    if [ -s "$INITRD_PERF" ] && [ "$(cat "$INITRD_DIR/perf.version" 2>/dev/null)" = "$PERF_VER" ]; then
        say "cached: initramfs with perf $INITRD_PERF"
    else
        say "building initramfs with perf ($PERF_VER)"
        modstage="$INITRD_DIR/modules.stage"
        rm -rf "$modstage"; mkdir -p "$modstage"
        cp "$KERNEL_DIR"/modules/*.ko "$KERNEL_DIR/modules/load-order" "$KERNEL_DIR/modules/modules.dep" "$modstage/"
        if ! python3 "$GUEST_DIR/mkinitramfs.py" --busybox "$BUSYBOX_DIR/busybox" \
            --rootfs "$GUEST_DIR/rootfs" --modules "$modstage" --kernel-release "$KREL" \
            --elf-pool "$PERF_DIR/pool" --elf usr/bin/perf \
            --out "$INITRD_PERF" 2> "$INITRD_DIR/build-perf.log"; then
            cat "$INITRD_DIR/build-perf.log" >&2
            die "initramfs (perf) build failed"
        fi
        [ "$QUIET" = 1 ] || cat "$INITRD_DIR/build-perf.log" >&2
        rm -rf "$modstage"
        echo "$PERF_VER" > "$INITRD_DIR/perf.version"
    fi
fi

# Stable names for consumers.
mkdir -p "$CACHE/current"
if [ -n "$INITRD_PERF" ]; then
    ln -sfn "$INITRD_PERF" "$CACHE/current/initramfs-perf.cpio.gz"
fi
ln -sfn "$KERNEL_DIR/Image" "$CACHE/current/Image"
ln -sfn "$INITRD" "$CACHE/current/initramfs.cpio.gz"
ENV_TEXT="FV_LINUX_IMAGE=$KERNEL_DIR/Image
FV_LINUX_INITRD=$INITRD
FV_LINUX_RELEASE=$KREL
FV_LINUX_PACKAGE=$KERNEL_PKG
FV_LINUX_PACKAGE_VERSION=$KERNEL_VER
FV_BUSYBOX_VERSION=$BUSYBOX_VER"
write_if_changed "$CACHE/current.env" "$ENV_TEXT"

if [ "$ENV_ONLY" = 1 ]; then
    echo "$ENV_TEXT"
else
    say "done in $(elapsed) s: Linux $KREL ($KERNEL_PKG $KERNEL_VER), busybox-static $BUSYBOX_VER"
    echo "kernel:    $KERNEL_DIR/Image ($(( $(stat -c %s "$KERNEL_DIR/Image") / 1024 )) KiB)"
    echo "initramfs: $INITRD ($(( $(stat -c %s "$INITRD") / 1024 )) KiB)"
    if [ -n "$INITRD_PERF" ]; then
        echo "with perf: $INITRD_PERF ($(( $(stat -c %s "$INITRD_PERF") / 1024 )) KiB)"
    fi
fi
