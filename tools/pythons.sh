#!/usr/bin/env bash
# The test matrix: the whole suite, built with IOMMAP_WERROR=1, on every
# supported CPython.
#
#   tools/pythons.sh host 3.10 3.11 ...  interpreters this machine carries
#                                        (found under $PYENV_ROOT/versions)
#   tools/pythons.sh sid 3.14 3.15       Debian unstable's interpreters, in a
#                                        chroot (built on first use, reused)
#   tools/pythons.sh chroot              only build (or refresh) the chroot
#
# Each version gets a fresh venv and runs `make test` in a clone of the
# repository's files, committed or not (build/pythons/tree on the
# host, /work/iommap in the chroot).  Every version's
# result is one line, `python3.X: ...`, written to stdout and appended to
# $SUMMARY (if set); the script exits non-zero if any version failed or is
# missing.  Arguments NAME=value before the versions go into the tests'
# environment: the suite's IOMMAP_* knobs, or TESTS=tests/test_x.py for
# make test to run only some tests.  Versions named in $FULL_PYTHONS get
# none of the IOMMAP_* knobs: they run the suite's own counts.
#
# Environment:
#   PYENV_ROOT   where the host's interpreters live (default /root/.pyenv)
#   CHROOT       the Debian chroot (default /var/cache/iommap-chroot); kept
#                outside the repository, reused while it has what it needs
#   SID_MIRROR   Debian mirror (default http://deb.debian.org/debian)
#   SUITE        the chroot's Debian release (default sid)
#   DEB_ARCH     its architecture (default the machine's; tools/arches.sh
#                sources this script for chroots of other architectures)
#   SUMMARY      a file collecting the summary lines
#   LOGDIR       where each version's full output goes (default build/pythons)
#   FULL_PYTHONS versions that ignore the IOMMAP_* knobs given
set -euo pipefail

# Started in the background by a shell without job control (as
# test-all-pythons runs its two sides), this script and everything it starts
# would run with SIGINT and SIGQUIT ignored, and the tests that interrupt a
# child with Ctrl-C would fail.  A shell cannot undo an ignore it inherited:
# start again, once, with both at their defaults (SIGPIPE and SIGXFSZ,
# which Python ignores for itself, as they were).
ignored=$((16#$(awk '/^SigIgn:/ { print $2 }' /proc/self/status 2>/dev/null || echo 0)))
if [ -z "${IOMMAP_PYTHONS_SIGNALS:-}" ] && (((ignored >> 1) & 3)); then
    export IOMMAP_PYTHONS_SIGNALS=reset
    exec python3 -c 'import os, signal, sys
ignored = int(sys.argv[1])
for s in (signal.SIGINT, signal.SIGQUIT):
    signal.signal(s, signal.SIG_DFL)
for s in (signal.SIGPIPE, signal.SIGXFSZ):
    signal.signal(s, signal.SIG_IGN if ignored >> (s - 1) & 1 else signal.SIG_DFL)
os.execvp("bash", ["bash", *sys.argv[2:]])' "$ignored" "$0" "$@"
fi

REPO=$(cd "$(dirname "$0")/.." && pwd)
PYENV_ROOT=${PYENV_ROOT:-/root/.pyenv}
CHROOT=${CHROOT:-/var/cache/iommap-chroot}
SID_MIRROR=${SID_MIRROR:-http://deb.debian.org/debian}
# The Debian release and architecture of the chroot (tools/arches.sh sets
# them for its Debian stable chroots of other architectures).
SUITE=${SUITE:-sid}
DEB_ARCH=${DEB_ARCH:-}
LOGDIR=${LOGDIR:-$REPO/build/pythons}
FULL_PYTHONS=${FULL_PYTHONS:-}
# The versions the chroot must carry; building it installs them all at once.
SID_PYTHONS=${SID_PYTHONS:-3.14 3.15}

say() { printf '%s\n' "$*" >&2; }
die() {
    say "pythons.sh: $*"
    exit 1
}

summary() {
    printf '%s\n' "$1"
    if [ -n "${SUMMARY:-}" ]; then printf '%s\n' "$1" >>"$SUMMARY"; fi
}

# The closing line pytest printed ("584 passed, 6 skipped in 66.03s
# (0:01:06)", with or without rulers), from a log.
pytest_result() {
    grep -E '^(=+ )?[0-9]+ (passed|failed|errors?|skipped|deselected).* in [0-9.]+s' "$1" |
        tail -1 | sed -E 's/^=+ //; s/ =+$//; s/ \([0-9:]+\)$//' || true
}

# The NAME=value arguments that apply to version $1, one per line: the
# IOMMAP_* knobs are dropped for the versions in $FULL_PYTHONS.
knobs_for() {
    local ver=$1 knob
    shift
    for knob in "$@"; do
        if [[ "$knob" == IOMMAP_* && " $FULL_PYTHONS " == *" $ver "* ]]; then continue; fi
        printf '%s\n' "$knob"
    done
}

# Runs `make MAKEARGS...` for version $1, on the host or in the chroot ($2),
# with the NAME=value arguments of the command line (ARGS) that apply to
# it, logging to $LOGDIR/python$ver.log; prints the summary line, which
# names the reduced counts if there were any.
ARGS=()
run_version() {
    local ver=$1 where=$2
    shift 2
    local knobs=() label reduced log="$LOGDIR/python$ver.log" start rc=0 elapsed result
    if [ ${#ARGS[@]} -gt 0 ]; then mapfile -t knobs < <(knobs_for "$ver" "${ARGS[@]}"); fi
    reduced=$(for k in "${knobs[@]}"; do [[ "$k" == IOMMAP_* ]] && printf '%s ' "$k"; done)
    label="python$ver${reduced:+ (reduced counts: ${reduced% })}"
    local cmd=(env "${knobs[@]}" make "$@")
    if [ "$where" = chroot ]; then cmd=(in_chroot "${cmd[@]}"); fi
    mkdir -p "$LOGDIR"
    say "==== $label: ${cmd[*]}"
    start=$(date +%s)
    # The log is shown as it runs, and kept for the summary.
    "${cmd[@]}" 2>&1 | tee "$log" || rc=$?
    elapsed=$(($(date +%s) - start))
    result=$(pytest_result "$log")
    if [ "$rc" -eq 0 ]; then
        summary "$label: ok: ${result:-no pytest result line} (${elapsed}s with the build)"
    else
        summary "$label: FAILED (exit $rc): ${result:-no pytest result line} (${elapsed}s; log $log)"
    fi
    return "$rc"
}

# ---- host interpreters ------------------------------------------------------

find_host_python() {
    local ver=$1 found=""
    # The newest patch release of $ver under $PYENV_ROOT/versions.
    for dir in "$PYENV_ROOT"/versions/"$ver".*; do
        if [ -x "$dir/bin/python$ver" ] && [[ "$(basename "$dir")" =~ ^$ver\.[0-9]+$ ]]; then
            found="$dir/bin/python$ver"
        fi
    done
    [ -n "$found" ] || return 1
    # It must be what it says it is.
    "$found" -c "import sys; assert '%d.%d' % sys.version_info[:2] == '$ver'" || return 1
    printf '%s\n' "$found"
}

host() {
    local failed=0 ver py
    while [ $# -gt 0 ] && [[ "$1" =~ ^[A-Z][A-Z0-9_]*= ]]; do
        ARGS+=("$1")
        shift
    done
    [ $# -gt 0 ] || die "host: no versions given"
    mkdir -p "$LOGDIR"
    # The tree under test is cloned, so that builds never share build/ with
    # work going on in the repository.
    local tree="$LOGDIR/tree"
    clone_tree "$tree"
    for ver in "$@"; do
        if ! py=$(find_host_python "$ver"); then
            summary "python$ver: MISSING (no $PYENV_ROOT/versions/$ver.*/bin/python$ver)"
            failed=1
            continue
        fi
        local venv="$LOGDIR/venv-$ver"
        rm -rf "$venv"
        run_version "$ver" host -C "$tree" test PYTHON="$py" VENV="$venv" || failed=1
    done
    return "$failed"
}

# ---- Debian unstable in a chroot -------------------------------------------

# mount_all, unmount_all.
# shellcheck source=tools/chroot_mounts.sh
. "$REPO/tools/chroot_mounts.sh"

# Runs a command inside the chroot with nothing of the host's environment:
# no PIP_* settings (the host's find-links and local indexes do not exist
# in there), no PYTHON* variables.
in_chroot() {
    env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        HOME=/root LANG=C.UTF-8 TERM=dumb DEBIAN_FRONTEND=noninteractive \
        ${IOMMAP_REQUIRE_PEERS:+IOMMAP_REQUIRE_PEERS=$IOMMAP_REQUIRE_PEERS} \
        chroot "$CHROOT" "$@"
}

chroot_has_pythons() {
    local ver
    for ver in $SID_PYTHONS; do
        [ -x "$CHROOT/usr/bin/python$ver" ] || return 1
        [ -e "$CHROOT/usr/include/python$ver/Python.h" ] || return 1
    done
    [ -x "$CHROOT/usr/bin/gcc" ] && [ -x "$CHROOT/usr/bin/make" ] && [ -x "$CHROOT/usr/bin/strace" ] &&
        [ -x "$CHROOT/usr/bin/vmtouch" ] && [ -x "$CHROOT/usr/bin/fincore" ] &&
        [ -x "$CHROOT/usr/bin/fusermount3" ] && [ -x "$CHROOT/usr/sbin/mkfs.ext4" ]
}

# What provision installs (fuse3: libfuse for the power-cut simulator;
# e2fsprogs: mkfs.ext4 for the loop-mounted file systems of the grow tests;
# tests that must not skip).
chroot_packages() {
    local pkgs="ca-certificates gcc make strace vmtouch util-linux-extra fuse3 e2fsprogs" ver
    for ver in $SID_PYTHONS; do pkgs="$pkgs python$ver-dev python$ver-venv"; done
    printf '%s\n' "$pkgs"
}

# debootstrap (once), then the mounts, then what the suite needs.
build_chroot() {
    bootstrap
    mount_all
    provision
}

bootstrap() {
    if ! command -v debootstrap >/dev/null; then
        say "installing debootstrap"
        apt-get install -y -qq debootstrap >/dev/null 2>&1 ||
            { apt-get update -qq && apt-get install -y -qq debootstrap >/dev/null; } ||
            die "cannot install debootstrap"
    fi
    if [ ! -x "$CHROOT/usr/bin/apt-get" ]; then
        say "debootstrap: Debian $SUITE${DEB_ARCH:+ ($DEB_ARCH)} into $CHROOT"
        rm -rf "$CHROOT.partial"
        debootstrap --variant=minbase ${DEB_ARCH:+--arch="$DEB_ARCH"} "$SUITE" "$CHROOT.partial" "$SID_MIRROR" \
            >"$LOGDIR/debootstrap.log" 2>&1 ||
            die "debootstrap failed; see $LOGDIR/debootstrap.log"
        mv "$CHROOT.partial" "$CHROOT"
    fi
}

provision() {
    # The archive's Release file can be older than its Valid-Until.
    printf 'Acquire::Check-Valid-Until "false";\n' >"$CHROOT/etc/apt/apt.conf.d/99iommap"
    printf 'deb %s %s main\n' "$SID_MIRROR" "$SUITE" >"$CHROOT/etc/apt/sources.list"
    # The CA certificates this host trusts beyond Debian's (pip reaches PyPI
    # through them); `update-ca-certificates` folds them in below.
    local crt
    mkdir -p "$CHROOT/usr/local/share/ca-certificates"
    for crt in /usr/local/share/ca-certificates/*.crt; do
        [ -e "$crt" ] && cp "$crt" "$CHROOT/usr/local/share/ca-certificates/"
    done
    cp /etc/resolv.conf "$CHROOT/etc/resolv.conf" 2>/dev/null || true
    if ! chroot_has_pythons || [ ! -e "$CHROOT/etc/ssl/certs/ca-certificates.crt" ]; then
        local pkgs
        pkgs=$(chroot_packages)
        say "apt-get install in the chroot: $pkgs"
        in_chroot apt-get update -qq
        # shellcheck disable=SC2086
        in_chroot apt-get install -y -qq --no-install-recommends $pkgs >"$LOGDIR/apt.log" 2>&1 ||
            die "apt-get install failed in the chroot; see $LOGDIR/apt.log"
    fi
    in_chroot update-ca-certificates >/dev/null 2>&1 || die "update-ca-certificates failed in the chroot"
    chroot_has_pythons || die "the chroot lacks one of: $(chroot_packages)"
}

# The tree under test as one commit: the working tree's files, committed or
# not, untracked ones too (not the ignored ones).  A private index, so the
# repository's own index and working tree are left alone.
tree_commit() {
    local idx tree
    idx=$(mktemp)
    cp "$(cd "$REPO" && realpath "$(git rev-parse --git-path index)")" "$idx"
    GIT_INDEX_FILE=$idx git -C "$REPO" add -A
    tree=$(GIT_INDEX_FILE=$idx git -C "$REPO" write-tree)
    rm -f "$idx"
    GIT_AUTHOR_NAME=matrix GIT_AUTHOR_EMAIL=matrix@localhost \
        GIT_COMMITTER_NAME=matrix GIT_COMMITTER_EMAIL=matrix@localhost \
        git -C "$REPO" commit-tree "$tree" -p HEAD -m "the tree under test"
}

# Clones (or updates) $1 to hold exactly tree_commit's files.
clone_tree() {
    local dest=$1 sha
    sha=$(tree_commit)
    mkdir -p "$(dirname "$dest")"
    if [ ! -d "$dest/.git" ]; then
        rm -rf "$dest"
        git clone -q --no-checkout "$REPO" "$dest"
    fi
    # A ref outside refs/heads: the clone's checked-out branch refuses pushes.
    git -C "$REPO" push -q --force "$dest" "$sha:refs/under-test/tree"
    git -C "$dest" checkout -q --force --detach refs/under-test/tree
    git -C "$dest" clean -q -ffdx
    say "testing $(git -C "$REPO" describe --always --dirty) (as $(git -C "$dest" rev-parse --short HEAD)) in $dest"
}

sid() {
    local failed=0 ver
    while [ $# -gt 0 ] && [[ "$1" =~ ^[A-Z][A-Z0-9_]*= ]]; do
        ARGS+=("$1")
        shift
    done
    [ $# -gt 0 ] || die "sid: no versions given"
    mkdir -p "$LOGDIR" "$(dirname "$CHROOT")"
    # One user of the chroot at a time.
    exec 9>"$CHROOT.lock"
    flock 9
    build_chroot
    clone_tree "$CHROOT/work/iommap"
    for ver in "$@"; do
        if [ ! -x "$CHROOT/usr/bin/python$ver" ]; then
            summary "python$ver: MISSING (not in the chroot; SID_PYTHONS=\"$SID_PYTHONS\")"
            failed=1
            continue
        fi
        rm -rf "$CHROOT/work/venv-$ver"
        run_version "$ver" chroot -C /work/iommap test PYTHON="python$ver" VENV="/work/venv-$ver" ||
            failed=1
    done
    return "$failed"
}

chroot_only() {
    mkdir -p "$LOGDIR" "$(dirname "$CHROOT")"
    exec 9>"$CHROOT.lock"
    flock 9
    build_chroot
    say "chroot ready: $CHROOT ($(for v in $SID_PYTHONS; do in_chroot "python$v" -VV | head -1; done | paste -sd ';'))"
}

# Sourced (by tools/arches.sh): the functions only.
if [ "${BASH_SOURCE[0]}" != "$0" ]; then return 0; fi

case "${1:-}" in
host | sid)
    cmd=$1
    shift
    "$cmd" "$@"
    ;;
chroot) chroot_only ;;
*) die "usage: $0 host|sid [IOMMAP_KNOB=value ...] VERSION... | $0 chroot" ;;
esac
