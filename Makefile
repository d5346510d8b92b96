# recforge developer entry points. Every target creates .venv on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# MovieLens copies: RECFORGE_DATA_DIR if set, else ../shared/data when it exists (our dev machines),
# else the user cache / a verified download (see README).
ifeq ($(origin RECFORGE_DATA_DIR), undefined)
  ifneq ($(wildcard ../shared/data/ml-100k),)
    export RECFORGE_DATA_DIR := $(abspath ../shared/data)
  endif
endif

.PHONY: venv demo test lint typecheck pytest bench clean

venv: $(STAMP)

# torch is pinned to the CPU wheel for dev/CI; the package itself declares torch>=2.4.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/recforge train --model biased_mf --data ml-100k --split random:0.2 --out runs/demo
	$(BIN)/recforge recommend runs/demo --user 1 -k 10

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest -q

test: lint typecheck pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/ml100k_folds.py

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
