# Two commands do all set-up on a fresh machine:  `make run` (default sweep)  and  `make test` (test suite).
# Both create .venv on first use, installing the CPU build of torch first, then evoexp with pinned versions.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.evoexp-installed

.PHONY: run test test-all lint bench clean-store

# The peer libraries (the `peers` extra: snnTorch, SpikingJelly, Norse) install with --no-deps: their declared
# torchvision/torchaudio pull CUDA builds and only their dataset code needs them.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q 'torch==2.13.*'
	$(PY) -m pip install -q -c constraints.txt -e '.[dev,bench,search]'
	$(PY) -m pip install -q --no-deps -c constraints.txt snntorch spikingjelly norse
	$(PY) -m pip install -q -c constraints.txt 'torch==2.13.*' nir nirtorch h5py loguru tqdm
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
