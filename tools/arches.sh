#!/usr/bin/env bash
# The suite on other Linux architectures, each in a Debian stable chroot of
# its own, built the way tools/pythons.sh builds the unstable one (and with
# its functions): debootstrap once, mounts undone by a trap, reused while it
# has what it needs, one user at a time (flock).
#
#   tools/arches.sh chroot ARCH                  build (or complete) the chroot
#   tools/arches.sh test ARCH [NAME=value ...] [TEST ...]
#
# ARCH is i386 (32-bit x86: the kernel runs it natively), arm64 or s390x
# (64-bit big-endian); those two run under qemu-user, which binfmt_misc
# starts for their binaries (installed and enabled here if missing).  The
# chroot is /var/cache/iommap-chroot-ARCH, outside the repository.
#
# `test` builds the package with IOMMAP_WERROR=1 in a fresh venv that sees
# Debian's pytest, hypothesis and numpy (PyPI has no i386 or s390x numpy
# wheels; building numpy under emulation would take the whole budget), and
# runs pytest on the TESTs given (default: all of tests/) with the
# NAME=value arguments in its environment.  The result is one line,
# `ARCH: ok: N passed, M skipped in Ts (skipped: K reason; ...)`, on stdout
# and appended to $SUMMARY if set; the whole log is build/arches/ARCH/test.log.
#
# Environment: SID_MIRROR (the Debian mirror), SUMMARY, LOGDIR.
set -euo pipefail

usage() {
    echo "usage: $0 chroot ARCH | $0 test ARCH [NAME=value ...] [TEST ...]  (ARCH: i386, arm64, s390x)" >&2
    exit 2
}
[ $# -ge 2 ] || usage
ACTION=$1
ARCH=$2
shift 2
case "$ARCH" in
i386) QEMU= ;;
arm64) QEMU=aarch64 ;;
s390x) QEMU=s390x SUITE=oldstable ;;
*) usage ;;
esac

REPO=$(cd "$(dirname "$0")/.." && pwd)
export CHROOT=/var/cache/iommap-chroot-$ARCH
export SUITE=${SUITE:-stable} DEB_ARCH=$ARCH SID_PYTHONS=
LOGDIR=${LOGDIR:-$REPO/build/arches/$ARCH}
# The whole command line goes along: started with SIGINT ignored (in the
# background), pythons.sh starts this script again with it at its default.
# shellcheck source=tools/pythons.sh
. "$REPO/tools/pythons.sh" "$ACTION" "$ARCH" "$@"

# Debian's own test dependencies: the venv sees them (--system-site-packages).
# The whole suite (i386) also compares with vmtouch and fincore and makes
# small ext4 file systems.
WHOLE_SUITE_TOOLS="vmtouch:vmtouch util-linux-extra:fincore e2fsprogs:mkfs.ext4"
chroot_packages() {
    local pkgs="ca-certificates gcc make strace python3-dev python3-venv python3-setuptools \
python3-pytest python3-hypothesis python3-numpy" tool
    if [ "$ARCH" = i386 ]; then
        for tool in $WHOLE_SUITE_TOOLS; do pkgs="$pkgs ${tool%%:*}"; done
    fi
    printf '%s\n' "$pkgs"
}

chroot_has_pythons() {
    local tool
    if [ "$ARCH" = i386 ]; then
        for tool in $WHOLE_SUITE_TOOLS; do
            [ -x "$CHROOT/usr/bin/${tool#*:}" ] || [ -x "$CHROOT/usr/sbin/${tool#*:}" ] || return 1
        done
    fi
    [ -x "$CHROOT/usr/bin/python3" ] && [ -x "$CHROOT/usr/bin/gcc" ] &&
        [ -x "$CHROOT/usr/bin/make" ] && [ -x "$CHROOT/usr/bin/strace" ] &&
        [ -n "$(compgen -G "$CHROOT/usr/include/python3.*/Python.h")" ] &&
        for m in numpy pytest hypothesis setuptools; do
            [ -d "$CHROOT/usr/lib/python3/dist-packages/$m" ] || return 1
        done
}

# qemu-user for a foreign architecture: its binaries then run as if native.
emulation() {
    [ -n "$QEMU" ] || return 0
    if [ ! -x "/usr/bin/qemu-$QEMU-static" ] || ! command -v update-binfmts >/dev/null; then
        say "installing qemu-user-static and binfmt-support"
        apt-get install -y -qq qemu-user-static binfmt-support >/dev/null 2>&1 ||
            { apt-get update -qq && apt-get install -y -qq qemu-user-static binfmt-support >/dev/null; } ||
            die "cannot install qemu-user-static"
    fi
    if ! mountpoint -q /proc/sys/fs/binfmt_misc; then
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc || die "cannot mount binfmt_misc"
    fi
    update-binfmts --enable "qemu-$QEMU" >/dev/null 2>&1 || true
    grep -qx enabled "/proc/sys/fs/binfmt_misc/qemu-$QEMU" 2>/dev/null ||
        die "qemu-$QEMU is not registered with binfmt_misc"
}

ready() {
    mkdir -p "$LOGDIR" "$(dirname "$CHROOT")"
    exec 9>"$CHROOT.lock"
    flock 9
    emulation
    local t0
    t0=$(date +%s)
    build_chroot
    say "chroot ready: $CHROOT ($(in_chroot python3 -VV | head -1); $(($(date +%s) - t0))s)"
}

# "3 reason; 1 other reason" from pytest's -rs lines in log $1.
skip_reasons() {
    sed -nE 's/^SKIPPED \[([0-9]+)\] [^:]+(:[0-9]+)?: (.*)$/\1\t\3/p' "$1" |
        awk -F'\t' '{ n[$2] += $1 } END { for (r in n) printf "%d %s\n", n[r], r }' |
        sort -rn | paste -sd ';' | sed 's/;/; /g'
}

run_tests() {
    local knobs=() tests=() log="$LOGDIR/test.log" start rc=0 result reasons
    while [ $# -gt 0 ] && [[ "$1" =~ ^[A-Z][A-Z0-9_]*= ]]; do
        knobs+=("$1")
        shift
    done
    tests=("$@")
    [ ${#tests[@]} -gt 0 ] || tests=(tests)
    ready
    clone_tree "$CHROOT/work/iommap"
    rm -rf "$CHROOT/work/venv"
    start=$(date +%s)
    {
        in_chroot python3 -m venv --system-site-packages /work/venv &&
            in_chroot env "${knobs[@]}" make -C /work/iommap test PYTHON=python3 VENV=/work/venv \
                TESTS="-rs -p no:cacheprovider ${tests[*]}"
    } 2>&1 | tee "$log" || rc=$?
    result=$(pytest_result "$log")
    reasons=$(skip_reasons "$log")
    local line="${result:-no pytest result line}${reasons:+ (skipped: $reasons)} ($(($(date +%s) - start))s with the build)"
    if [ "$rc" -eq 0 ]; then
        summary "$ARCH: ok: $line"
    else
        summary "$ARCH: FAILED (exit $rc): $line; log $log"
    fi
    return "$rc"
}

case "$ACTION" in
chroot) ready ;;
test) run_tests "$@" ;;
*) usage ;;
esac
