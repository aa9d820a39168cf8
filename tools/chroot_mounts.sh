# The mounts a chroot needs to run the suite, undone on exit; sourced by
# tools/pythons.sh and tools/wheel_chroot.sh, which define CHROOT and die().
# shellcheck shell=bash

MOUNTED=()

unmount_all() {
    local i
    for ((i = ${#MOUNTED[@]} - 1; i >= 0; i--)); do
        umount "${MOUNTED[$i]}" 2>/dev/null || umount -l "${MOUNTED[$i]}" || true
    done
    MOUNTED=()
}

# Mounts what the suite needs, first clearing anything a killed run left.
mount_all() {
    local target
    for target in dev/shm dev/pts dev sys proc; do
        while mountpoint -q "$CHROOT/$target"; do
            umount "$CHROOT/$target" 2>/dev/null || umount -l "$CHROOT/$target"
        done
    done
    trap unmount_all EXIT
    trap 'exit 130' INT TERM HUP
    # The root a mount point, as / is outside: tools the tests run (unshare
    # --propagation) refuse a root that is not one.  A bind of itself, left
    # alone if it is one already (its own file system, or a killed run's).
    if ! mountpoint -q "$CHROOT"; then mount_one "$CHROOT" --bind "$CHROOT"; fi
    mount_one "$CHROOT/proc" -t proc proc
    mount_one "$CHROOT/sys" -t sysfs sysfs
    mount_one "$CHROOT/dev" --bind /dev
    mount_one "$CHROOT/dev/pts" --bind /dev/pts
    # A private /dev/shm: POSIX shared memory inside stays inside.
    mount_one "$CHROOT/dev/shm" -t tmpfs -o mode=1777,nosuid,nodev shm
}

mount_one() {
    local target=$1
    shift
    mkdir -p "$target"
    mount "$@" "$target" || die "cannot mount $target"
    MOUNTED+=("$target")
}
