# LocalSOC: the README's commands. `make run` and `make test` set everything up themselves.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
ENV ?= demo
HOST ?= 127.0.0.1
PORT ?= 3000
# pytest-xdist workers of `make test` (a test file runs on one worker; 1 = serial): two keep
# both cores busy (the suite is CPU-bound on one core serially)
TEST_WORKERS ?= 2

export KEDRO_DISABLE_TELEMETRY := true
export DVC_NO_ANALYTICS := 1
export BENTOML_DO_NOT_TRACK := true
export TF_CPP_MIN_LOG_LEVEL := 2
export PYTHONHASHSEED := 0

.PHONY: help setup run paper test serve plots exp viz bench lint lock clean
.DEFAULT_GOAL := help

help: ## this list of targets (the Makefile's double-hash comments)
	@awk 'BEGIN {FS = ":[^#]*## "} /^[a-z][a-z_-]*:.*## / {printf "  make %-6s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# uv installs the pinned set in well under a minute (pip: ~5 minutes on 2 cores), trusting the
# system's certificates as pip does; pip is the fallback when uv cannot reach an index (uv does
# not read pip.conf's find-links). --compile-bytecode writes the .pyc files at install, as pip
# does: without them, where PYTHONDONTWRITEBYTECODE is set (this machine, CI), every process
# compiled TensorFlow and the rest from source, 8-9 CPU s more per stage and per test process
UV_PIN := $(shell grep -m1 '^uv==' requirements.lock)

$(VENV)/.deps: requirements.lock | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check "$(UV_PIN)"
	$(BIN)/uv pip install --quiet --system-certs --compile-bytecode --python $(BIN)/python \
	  -r requirements.lock \
	  || $(BIN)/pip install --quiet --disable-pip-version-check -r requirements.lock
	touch $@

$(VENV)/.built: $(VENV)/.deps pyproject.toml setup.py $(wildcard native/*.pyx)
	$(BIN)/pip install --quiet --disable-pip-version-check --no-build-isolation --no-deps -e .
	touch $@

setup: $(VENV)/.built ## virtualenv, pinned dependencies, Cython kernels

run: setup ## the whole demo study on the embedded simulated data, through `dvc repro` (only what changed runs)
	$(BIN)/python -m localsoc.command_line run --env $(ENV)

paper: setup ## the study at the paper's library sizes (50,422 global spectra; conf/paper: 53 min on 2 cores), through DVC
	$(BIN)/python -m localsoc.command_line run --env paper

test: setup ## the test suite (TEST_WORKERS=2: on two pytest-xdist processes, a file on one)
	$(BIN)/python -m pytest $(if $(filter-out 1,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadfile)

serve: setup ## the prediction service on HOST:PORT (default 127.0.0.1:3000), serving the bundle in data/06_models/bento_tag.txt; no API key unless LOCALSOC_API_KEY is set
	$(BIN)/bentoml serve localsoc.serving.service:LocalSOCService --host $(HOST) --port $(PORT)

plots: setup ## the study's interactive plots, offline: dvc_plots/index.html (after make run)
	$(BIN)/dvc plots show

# plain `dvc exp show` lists every declared parameter and dependency (~110 parameter and ~150
# code/data columns, each cut to an ellipsis at 120 columns): this keeps the changed ones and
# the headline metrics (tests/pipelines/test_headline_metrics.py runs it at 120 columns)
EXP_SHOW := exp show --no-pager --only-changed --keep 'rmse|coverage|drmse'
exp: setup ## the experiments (dvc exp run -S ...) with their changed parameters and headline metrics, in 120 columns
	$(BIN)/dvc $(EXP_SHOW)

# kedro viz build writes to build/ (setuptools' folder too, hence the check); Google Fonts and
# the unused analytics template are dropped so that nothing is fetched from the network
viz: setup ## the pipelines as a static kedro-viz page, offline: data/08_reporting/pipeline/ (open it with python -m http.server -d data/08_reporting/pipeline)
	@test ! -e build || { echo "make viz: build/ exists and kedro-viz writes there; make clean first" >&2; exit 1; }
	$(BIN)/kedro viz build
	rm -rf data/08_reporting/pipeline build/telemetry.html && mkdir -p data/08_reporting && mv build data/08_reporting/pipeline
	perl -0pi -e 's/<link[^>]*fonts\.g(oogleapis|static)\.com[^>]*>\s*//g' data/08_reporting/pipeline/{index,404}.html

bench: run ## the benchmark scripts under bench/ (figures go to BENCHMARKS.md), after the demo study (four of them read its outputs)
	for script in bench/*.py; do case $$script in bench/_*|bench/compare_studies.py) continue;; esac; \
	  $(BIN)/python $$script || exit 1; done

lint: setup ## ruff on the Python, hadolint on the Dockerfile
	$(BIN)/ruff check src tests bench examples tools
	$(BIN)/hadolint Dockerfile

lock: ## refresh requirements.lock from the current virtualenv, and its runtime part (the image's pins)
	(echo "# Full pin set (pip freeze of a working install, Python 3.11, CPU). Regenerate with: make lock"; \
	 $(BIN)/pip freeze --exclude-editable | grep -v '^localsoc') > requirements.lock
	$(BIN)/python tools/runtime_lock.py

clean: ## remove the virtualenv and the built kernels
	rm -rf $(VENV) build src/localsoc/_native/*.so src/localsoc/_native/*.c native/*.c
