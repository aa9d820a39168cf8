"""Helpers shared by the robustness tests (stateful, fuzz, fork, torture,
leaks, durability, crash regressions).

The main one is :func:`run_child`: code that could crash the interpreter
runs in a fresh subprocess, so a crash is a test failure with the child's
output, not the end of the test run.  The child inherits the environment,
so under ``make sanitize`` (LD_PRELOAD of libasan, ASAN_OPTIONS) or
``make valgrind`` the child is checked by the same tools.
"""

import os
import signal
import subprocess
import sys
import textwrap

import pytest

# Under valgrind every child runs 20-50 times slower: timeouts scale.
SLOWDOWN = float(os.environ.get("IOMMAP_TEST_SLOWDOWN", "1"))


def describe_exit(code):
    if code < 0:
        try:
            return "killed by %s" % signal.Signals(-code).name
        except ValueError:
            return "killed by signal %d" % -code
    return "exit status %d" % code


def run_child(code, *, timeout=60, env=None, expect_exit=0, args=()):
    """Runs ``code`` (dedented) in ``python -c``; fails the test unless the
    child exits with ``expect_exit`` within ``timeout`` seconds (scaled by
    IOMMAP_TEST_SLOWDOWN).  Returns the CompletedProcess (text output)."""
    child_env = dict(os.environ)
    if env:
        child_env.update(env)
    try:
        proc = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code), *args],
            capture_output=True,
            text=True,
            timeout=timeout * SLOWDOWN,
            env=child_env,
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(
            "child did not finish in %.0f s (deadlock?)\nstdout:\n%s\nstderr:\n%s"
            % (timeout * SLOWDOWN, _text(e.stdout), _text(e.stderr))
        )
    if proc.returncode != expect_exit:
        pytest.fail(
            "child: %s (expected %s)\nstdout:\n%s\nstderr:\n%s"
            % (describe_exit(proc.returncode), describe_exit(expect_exit), proc.stdout, proc.stderr)
        )
    return proc


def _text(b):
    if b is None:
        return ""
    return b.decode(errors="replace") if isinstance(b, bytes) else b
