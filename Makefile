# Every action the project takes; .ci/run calls these same targets.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
C_FILES := $(sort $(wildcard src/iommap/_core/*.c src/iommap/_core/*.h))
DIST ?= dist
DIST_VENV ?= .venv-dist

.PHONY: venv install dev test demo lint format dist dist-check clean

$(PY):
	$(PYTHON) -m venv $(VENV)

venv: $(PY)

# Installs the package with its test extras; IOMMAP_WERROR=1 makes C warnings errors.
install: $(PY)
	IOMMAP_WERROR=1 $(PY) -m pip install -q '.[test]'

# The pinned linters and build front end (the `dev` extra), beside the package.
dev: install
	$(PY) -m pip install -q '.[dev]'

test: install
	$(PY) -m pytest tests -q

demo: install
	$(PY) -m iommap demo

# ruff (lint and format), clang-format, mypy --strict (the package and
# examples/), and stubtest of the stubs against the installed module.
lint: dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/clang-format --dry-run -Werror $(C_FILES)
	$(PY) -m mypy
	$(PY) -m mypy.stubtest --mypy-config-file pyproject.toml iommap

# Rewrites the sources the way `make lint` wants them.
format: dev
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .
	$(VENV)/bin/clang-format -i $(C_FILES)

# An sdist, then a wheel built from that sdist (what `python -m build` does).
dist: dev
	rm -rf $(DIST)
	IOMMAP_WERROR=1 $(PY) -m build --outdir $(DIST) .

# Proves the sdist is complete and the wheel works: checks their contents,
# installs the wheel into a fresh venv and runs the tests from outside the
# source tree, so they import the installed package.
dist-check: dist
	$(PY) .ci/check_dist.py $(DIST) $(C_FILES)
	rm -rf $(DIST_VENV)
	$(PYTHON) -m venv $(DIST_VENV)
	$(DIST_VENV)/bin/python -m pip install -q "$$(ls $(DIST)/*.whl)[test]"
	cd "$$(mktemp -d)" && $(CURDIR)/$(DIST_VENV)/bin/python -m pytest $(CURDIR)/tests -q -p no:cacheprovider

clean:
	rm -rf build $(DIST) $(DIST_VENV) src/*.egg-info src/iommap/*.so .pytest_cache .mypy_cache .ruff_cache
