#!/usr/bin/env bash
# Creates the disk images examples/linux-devices.yaml gives its VM, once:
#
#   ~/.cache/ferrovisor/disks/data.img    64 MiB ext4, read-write in the VM (/dev/vda)
#   ~/.cache/ferrovisor/disks/tools.img   16 MiB ext4, read-only in the VM (/dev/vdb)
#
# An image that exists is left alone (data.img holds what the VM wrote), so this
# is quick after the first time; --force makes both anew. Both are raw images
# (what a config's `disks:` take) built with `mke2fs -d` from a small directory,
# sparse, owned by the user running this.
#
# Usage: scripts/make-disks.sh [--force] [--quiet]
# Environment: XDG_CACHE_HOME (default ~/.cache), as scripts/fetch-linux.sh.
set -euo pipefail

DIR=${XDG_CACHE_HOME:-$HOME/.cache}/ferrovisor/disks
FORCE=0 QUIET=0
for arg in "$@"; do
    case "$arg" in
        --force) FORCE=1 ;;
        --quiet|-q) QUIET=1 ;;
        -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
        *) echo "[make-disks] ERROR: unknown argument: $arg (see --help)" >&2; exit 2 ;;
    esac
done

say() { [ "$QUIET" = 1 ] || echo "[make-disks] $*" >&2; }
die() { echo "[make-disks] ERROR: $*" >&2; exit 1; }

MKE2FS=$(command -v mke2fs || true)
[ -n "$MKE2FS" ] || [ ! -x /usr/sbin/mke2fs ] || MKE2FS=/usr/sbin/mke2fs
[ -n "$MKE2FS" ] || [ ! -x /sbin/mke2fs ] || MKE2FS=/sbin/mke2fs
[ -n "$MKE2FS" ] || die "mke2fs is missing: install e2fsprogs (apt-get install e2fsprogs)"

mkdir -p "$DIR"

# make_image NAME SIZE LABEL FILL: an ext4 image of SIZE with label LABEL whose root
# directory is what the function FILL puts into the directory it is given.
make_image() {
    local name=$1 size=$2 label=$3 fill=$4
    local img="$DIR/$name"
    if [ -f "$img" ] && [ "$FORCE" = 0 ]; then
        say "$img: exists, kept"
        return
    fi
    local src
    src=$(mktemp -d)
    "$fill" "$src"
    rm -f "$img.tmp"
    # mke2fs says "Creating regular file" on stdout even with -q.
    "$MKE2FS" -q -F -t ext4 -L "$label" -d "$src" "$img.tmp" "$size" >/dev/null
    rm -rf "$src"
    mv -f "$img.tmp" "$img"
    say "$img: $size ext4 (label $label)"
}

fill_data() {
    cat >"$1/README" <<'EOF'
The read-write disk of examples/linux-devices.yaml (scripts/make-disks.sh).
In the VM: mount /dev/vda /mnt; what you write here stays in
~/.cache/ferrovisor/disks/data.img on the host.
EOF
}

fill_tools() {
    mkdir -p "$1/bin"
    cat >"$1/README" <<'EOF'
The read-only disk of examples/linux-devices.yaml (scripts/make-disks.sh).
In the VM: mount -o ro /dev/vdb /opt; writes to it fail with an I/O error.
EOF
    cat >"$1/bin/hello" <<'EOF'
#!/bin/sh
echo "hello from the read-only disk"
EOF
    chmod 755 "$1/bin/hello"
}

make_image data.img 64M data fill_data
make_image tools.img 16M tools fill_tools
