# Two commands do all set-up on a fresh machine:  `make run` (default sweep)  and  `make test` (test suite).
# Both create .venv on first use, installing the CPU build of torch first, then evoexp with pinned versions.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.evoexp-installed

.PHONY: run test test-all lint bench bench-quick docs docs-serve clean-store

# The peer libraries: snnTorch and what SpikingJelly and Norse import come with the `peers` extra; SpikingJelly and
# Norse themselves install last and with --no-deps (their declared torchvision/torchaudio do not import beside the CPU
# torch, and only their dataset code uses them), so that no pip step reports their unmet declarations.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q 'torch==2.13.*'
	$(PY) -m pip install -q -c constraints.txt 'torch==2.13.*' -e '.[dev,bench,search,docs,peers]'
	$(PY) -m pip install -q --no-deps -c constraints.txt spikingjelly norse
	touch $(STAMP)

run: $(STAMP)
	./multirun.sh

test: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

test-all: $(STAMP)
	$(PY) -m pytest -q

# ruff, the import-linter contracts of pyproject.toml (layers; the science never imports Hydra/MLflow/the job wing;
# peers are a plug-in), and mypy over the package.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy evoexp

bench: $(STAMP)
	$(PY) benchmarks/bench_engine.py
	$(PY) benchmarks/bench_verifier.py
	$(PY) benchmarks/bench_sweep.py
	$(PY) benchmarks/bench_robustness.py

# Every script in benchmarks/ in its quick mode (seconds each; CI runs it so that a benchmark cannot rot).
BENCHMARKS := $(sort $(wildcard benchmarks/*.py))
bench-quick: $(STAMP)
	set -e; for script in $(BENCHMARKS); do echo "== $$script --quick"; $(PY) $$script --quick; done

# The documentation site (mkdocs.yml, docs/): built into site/, strict (a broken link or reference fails).
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

docs-serve: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve
