# make demo: the trench workflow on a generated demo acquisition.
# make test: lint, type checks, the test suite and the doctests. Both create .venv and install what they need first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_CONF ?= configs/demo.conf

.PHONY: demo test bench clean-demo help

help:
	@echo "make demo   run the trench workflow on a generated demo acquisition"
	@echo "make test   lint (ruff), type checks (mypy), the tests and the doctests"
	@echo "make bench  run the benchmarks (quick versions)"

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml setup.py | $(PY)
	$(PY) -m pip install --quiet -e ".[test,dask]"
	touch $@

demo: $(VENV)/.installed
	$(PY) workflows/trench_workflow.py -c $(DEMO_CONF)

# Lint (ruff, numpy docstrings), types of the framework core (mypy), then the
# tests and the examples in the docstrings (doctests). Settings: pyproject.toml.
test: $(VENV)/.installed
	$(PY) -m ruff check batchlib workflows tests benchmarks docs
	$(PY) -m mypy
	$(PY) -m pytest -q --doctest-modules batchlib tests

bench: $(VENV)/.installed
	$(PY) benchmarks/run_all.py --quick

clean-demo:
	rm -rf demo_data
