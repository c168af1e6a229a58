# Two commands do all set-up on a fresh machine: `make repro` and `make test`.
# Both create .venv/ when it is missing (or older than pyproject.toml) and install the project into it.

PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed
EXTRAS ?= dev

# DVC's queue workers launch `dvc` from PATH, so the venv's bin goes first for every target.
export PATH := $(BIN):$(PATH)

.PHONY: repro test lint check-reproducible install clean-venv

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS)]'
	touch $(STAMP)

install: $(STAMP)

repro: $(STAMP)
	dvc repro

test: $(STAMP)
	python -m pytest

# Rebuild the pipeline, then fail if any committed metric changed (timings under run.* excepted).
check-reproducible: $(STAMP)
	dvc repro
	python -m dllabs.drift HEAD --tolerance 0

lint: $(STAMP)
	ruff check .
	ruff format --check .

clean-venv:
	rm -rf $(VENV)
