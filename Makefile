# Two commands do all set-up on a fresh machine:  `make run` (default sweep)  and  `make test` (test suite).
# Both create .venv on first use, installing the CPU build of torch first, then evoexp with pinned versions.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.evoexp-installed

.PHONY: run test test-all lint bench clean-store

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q 'torch==2.13.*'
	$(PY) -m pip install -q -c constraints.txt -e '.[dev,bench,search]'
	$(PY) -m pip install -q -c constraints.txt --no-deps hydra-optuna-sweeper  # it declares optuna<3; works with 4.2
	touch $(STAMP)

run: $(STAMP)
	./multirun.sh

test: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

test-all: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	$(PY) benchmarks/bench_engine.py
	$(PY) benchmarks/bench_verifier.py
	$(PY) benchmarks/bench_sweep.py
