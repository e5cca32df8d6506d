# ptycho-harness — every target creates .venv when missing (idempotent, fast when installed).
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST := $(PY) -m pytest
# `make test` and `make test-unit` run on PYTEST_WORKERS pytest-xdist processes. 2, not `-n auto`:
# this project's machines and CI have 2 cores, and each worker holds TensorFlow (~2 GB resident)
# and lets its ops use every core, so more workers than cores only add memory and contention; a
# bigger machine may pass PYTEST_WORKERS=N (0: one process, no xdist). --dist loadgroup with the
# scheduler of tests/conftest.py: the modules whose module fixture trains a model or runs a CLI
# cycle run whole on one worker and are dealt out first, then the integration tests, then the
# quick ones, so no long test is left for the end.
PYTEST_WORKERS ?= 2
XDIST := -n $(PYTEST_WORKERS) --dist loadgroup
# mini-swe-agent, a third-party agent CLI for tests/orchestrator/agent_cli, installed as users install
# agent CLIs (pipx-like): its own virtual environment, its `mini` exposed in .tools/bin/.
MINI_SWE_AGENT_VERSION := 2.4.6
MINI_VENV := .tools/mini-venv
MINI_STAMP := $(MINI_VENV)/.installed-$(MINI_SWE_AGENT_VERSION)

.PHONY: venv run test test-unit test-slow test-browser browser-deps test-agents agent-mini lint bench study-quick report clean baseline test-baseline

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## Main job: one full supervisor→worker cycle of the builtin harness on this repo's own plan.
run: $(STAMP)
	$(PY) -m orchestrator main-job

## Default test suite (slow and browser tests excluded; pytest exit 5 = nothing collected fails).
test: $(STAMP)
	$(PYTEST) -q $(XDIST)

## Fast tests only: the default suite less the `integration` modules (they train models, start
## Dask clusters, wait on leases or spawn a command line). `make test` (and CI) still runs them.
test-unit: $(STAMP)
	$(PYTEST) -q $(XDIST) -m "not integration and not slow and not browser and not agent_cli"

## Lint the whole repository (ruff; configuration in pyproject.toml).
lint: $(STAMP)
	$(VENV)/bin/ruff check .

## Iterative baseline extra (pty-chi): the CPU torch wheel first, then .[baseline] (idempotent).
BASELINE_STAMP := $(VENV)/.baseline-installed
baseline: $(BASELINE_STAMP)

$(BASELINE_STAMP): $(STAMP) pyproject.toml
	$(PY) -m pip install --quiet 'torch==2.13.0'
	$(PY) -m pip install --quiet -e '.[dev,baseline]'
	touch $(BASELINE_STAMP)

## The baseline tests; fails (not skips) when pty-chi cannot be imported.
test-baseline: $(BASELINE_STAMP)
	$(PY) -c 'from ptycho.baseline import check_importable; check_importable()'
	$(PYTEST) -q -m baseline

## mini-swe-agent in .tools/mini-venv (its dependencies never touch .venv); `mini` in .tools/bin/.
agent-mini: $(MINI_STAMP)

$(MINI_STAMP):
	rm -rf $(MINI_VENV)
	$(PYTHON) -m venv $(MINI_VENV)
	$(MINI_VENV)/bin/python -m pip install --quiet 'mini-swe-agent==$(MINI_SWE_AGENT_VERSION)'
	mkdir -p .tools/bin
	ln -sf ../mini-venv/bin/mini .tools/bin/mini
	touch $@

## The loop driven by a real agent CLI (marker agent_cli): installs mini-swe-agent first; fails if it is missing.
test-agents: $(STAMP) $(MINI_STAMP)
	MINI_SWE_AGENT=$(CURDIR)/.tools/bin/mini $(PYTEST) -q -m agent_cli --timeout=900 --durations=0 -rA

## One process (no xdist) for the slow, baseline, browser and agent tests: each slow test or
## reconstruction already keeps both cores busy, and the agent tests report their own wall times.
test-slow: $(STAMP)
	$(PYTEST) -q -m slow --timeout=1800

## Headless Chromium from Debian's packages (needs root or sudo).
browser-deps:
	@command -v chromium >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; }

test-browser: $(STAMP) browser-deps
	$(PYTEST) -q -m browser

bench: $(STAMP)
	$(PY) benchmarks/bench_model.py
	$(PY) benchmarks/bench_orchestrator.py
	$(PY) benchmarks/bench_report.py
	$(PY) benchmarks/bench_grouping.py
	$(PY) benchmarks/bench_sync.py

study-quick: $(STAMP)
	$(PY) -m dose_study --quick --output-dir out/study_quick

report: $(STAMP)
	$(PY) -m orchestrator report --html out/report.html

clean:
	rm -rf $(VENV) .tools .pytest_cache out
