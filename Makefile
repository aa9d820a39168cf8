# Every action the project takes; .ci/run calls these same targets.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: venv install test demo clean

$(PY):
	$(PYTHON) -m venv $(VENV)

venv: $(PY)

# Installs the package with its test extras; IOMMAP_WERROR=1 makes C warnings errors.
install: $(PY)
	IOMMAP_WERROR=1 $(PY) -m pip install -q '.[test]'

test: install
	$(PY) -m pytest tests -q

demo: install
	$(PY) -m iommap demo

clean:
	rm -rf build dist src/*.egg-info src/iommap/*.so .pytest_cache
