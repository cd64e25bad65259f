# Helpers of /init (sourced; POSIX sh, busybox ash in the guest). Kept apart
# so scripts/guest-linux/test_guest_tools.py can run them on the host.

# fv_console CMDLINE: the console device /init must open itself, or nothing.
# Linux's /dev/console is the last `console=` given; when that is hvc0 (the
# virtio-console, which appears only once virtio_mmio is loaded) the kernel
# had no /dev/console to give init, so /init opens /dev/hvc0.
fv_console() {
    last=""
    for arg in $1; do
        case "$arg" in
            console=*) last=${arg#console=}; last=${last%%,*} ;;
        esac
    done
    case "$last" in
        hvc[0-9]*) echo "/dev/$last" ;;
    esac
}

# fv_module_order LOAD_ORDER_FILE: the modules to load, virtio_mmio first
# (when listed: the console may depend on it), then the rest in file order.
fv_module_order() {
    if grep -qx virtio_mmio "$1"; then
        echo virtio_mmio
    fi
    while read -r mod; do
        [ -n "$mod" ] && [ "$mod" != virtio_mmio ] && echo "$mod"
    done < "$1"
    return 0
}

# fv_wait_char DEV TRIES: waits until DEV is a character device, checking
# TRIES times 0.1 s apart; fails if it never is.
fv_wait_char() {
    n=0
    while [ ! -c "$1" ]; do
        n=$((n + 1))
        [ "$n" -le "$2" ] || return 1
        sleep 0.1 2>/dev/null || sleep 1
    done
    return 0
}
