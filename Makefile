PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test lint demo bench clean screenshot results

# The stamp makes set-up idempotent: it is redone only when the requirements change.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt torch
	$(PY) -m pip install --quiet -c constraints.txt -e ".[lightning,test,dev]"
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

# Lint, format and type check; the rules are in pyproject.toml ([tool.ruff], [tool.mypy]).
lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

demo: $(STAMP)
	$(PY) examples/demo.py

# docs/results.md: each paper's prediction beside the full runs of the examples.
results: $(STAMP)
	$(PY) scripts/results.py

# PNGs of the TensorBoard views of the README example and the demo under docs/ (installs chromium).
screenshot: $(STAMP)
	$(PY) scripts/screenshot.py

BENCH_VENV := .venv-bench
BENCH_PY := $(BENCH_VENV)/bin/python
BENCH_STAMP := $(BENCH_VENV)/.installed

# Benchmarks (quick mode). The peers live in their own environment, never in the package's dependencies:
# torch==2.13.0 (the local CPU wheel) first, then a complete pinned set with --no-deps so that no peer can
# swap torch for a CUDA build (see benchmarks/requirements-peers.txt). Redone only when the pins change.
$(BENCH_STAMP): pyproject.toml benchmarks/requirements-peers.txt
	test -x $(BENCH_PY) || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_PY) -m pip install --quiet --upgrade pip
	$(BENCH_PY) -m pip install --quiet torch==2.13.0
	$(BENCH_PY) -m pip install --quiet --no-deps -r benchmarks/requirements-peers.txt
	$(BENCH_PY) -m pip install --quiet --no-deps -e .
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BENCH_PY) benchmarks/hessian_engine.py --quick
	$(BENCH_PY) benchmarks/compare_peers.py --quick

clean:
	rm -rf $(VENV) runs .pytest_cache
