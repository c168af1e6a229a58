# Two commands do all set-up on a fresh machine: `make repro` and `make test`.
# Both create .venv/ when it is missing (or older than pyproject.toml or uv.lock) and install exactly the
# locked set (uv.lock) into it, with the project itself editable. They need only `python3` and `make`:
# uv, the locker, is bootstrapped into .tools/ at the pinned version below when it is missing.

PYTHON ?= python3
UV_VERSION := 0.13.9
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
# The stamp holds the extras of the last install; they stay until asked for others.
STAMP := $(VENV)/.installed
INSTALLED_EXTRAS := $(strip $(shell cat $(STAMP) 2>/dev/null))
# Extras to install, space- or comma-separated: `make install EXTRAS="dev gpu"` (or EXTRAS=dev,gpu)
# once, and later set-ups keep them; `make install EXTRAS=dev` goes back.
EXTRAS ?= $(or $(INSTALLED_EXTRAS),dev)

TOOLS := .tools
UV := $(CURDIR)/$(TOOLS)/bin/uv
UV_STAMP := $(TOOLS)/.uv-$(UV_VERSION)
comma := ,
EXTRAS_LIST := $(strip $(subst $(comma), ,$(EXTRAS)))
UV_EXTRAS := $(foreach extra,$(EXTRAS_LIST),--extra $(extra))

# The interpreter's real path, resolved before the venv goes on PATH (else `python3` could name the
# venv's own). Not a launcher such as a pyenv shim: uv would then recreate .venv/ on every sync.
PYTHON_EXE := $(shell $(PYTHON) -c 'import sys; print(sys.executable)')

# uv uses this interpreter and never downloads one.
export UV_PYTHON := $(PYTHON_EXE)
export UV_PYTHON_DOWNLOADS := never
# Python caches each module's bytecode on first import, as it does by default. uv, unlike pip,
# installs none, so where PYTHONDONTWRITEBYTECODE is set (many containers and CI images) every
# process would compile TensorFlow, Keras and DVC from source: 17 s instead of 7 s per stage.
# Writing the cache on first use costs less than compiling all 11,800 files at install (29 s).
export PYTHONDONTWRITEBYTECODE :=

# DVC's queue workers launch `dvc` from PATH, so the venv's bin goes first for every target.
export PATH := $(BIN):$(PATH)

.PHONY: help repro params test test-long test-quick lint docs docs-serve check-reproducible install clean-venv lock check-lock FORCE
.DEFAULT_GOAL := help

help:  ## list the targets
	@awk -F':.*## ' '/^[a-z-]+:.*## / {printf "  make %-20s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# uv itself, at the pinned version, in its own git-ignored venv (not a global uv, whatever its version).
$(UV_STAMP):
	rm -rf $(TOOLS)
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	touch $(UV_STAMP)

# --locked: fail, instead of re-locking, when pyproject.toml and uv.lock disagree. uv installs
# exactly the locked set for these extras (and removes anything else), so other extras re-sync too.
ifneq ($(EXTRAS_LIST),$(INSTALLED_EXTRAS))
$(STAMP): FORCE
endif
$(STAMP): pyproject.toml uv.lock | $(UV_STAMP)
	$(UV) sync --locked $(UV_EXTRAS)
	echo '$(EXTRAS_LIST)' > $(STAMP)

FORCE:

install: $(STAMP)  ## create .venv/ with the locked packages (EXTRAS="dev gpu" adds extras)

# --keep-going: a lab that fails leaves the other labs trained and scored (each has its own
# evaluation stage); the failure is reported at the end and the exit status is still non-zero.
repro: $(STAMP)  ## run the pipeline on the offline default data (dvc repro)
	dvc repro --keep-going

# params.yaml from conf/ (conf/config.yaml and a dataset preset), as `dvc exp run` composes it, for
# `dvc repro`: `make params` (the defaults) or `make params PRESET=photos`.
params: $(STAMP)  ## write params.yaml from conf/ (PRESET=photos for a preset)
	python -m dllabs.tooling.presets $(if $(PRESET),dataset=$(PRESET))

# Parallel on every core (at most 4; the DVC integration tests share one reproduced pipeline,
# tests/conftest.py). `python -m pytest` alone runs serially. The long end-to-end scenarios (the
# `long` marker in pyproject.toml: about 6 more minutes on 2 cores) run in `make test-long`, which
# CI runs as a second job beside this one.
test: $(STAMP)  ## run the tests except the long scenarios, in parallel (what CI's main job runs)
	python -m pytest -n auto --maxprocesses 4 --dist worksteal -m "not long"

test-long: $(STAMP)  ## run only the long end-to-end scenarios (CI's second job)
	python -m pytest -n auto --maxprocesses 4 --dist worksteal -m long

# Without the tests marked slow (the reproduced pipeline, several processes, whole training runs,
# the long scenarios): for the edit loop.
test-quick: $(STAMP)  ## run the tests except the slow end-to-end ones
	python -m pytest -n auto --maxprocesses 4 --dist worksteal -m "not slow and not long"

# Rebuild the pipeline and compare it with the committed metrics (see dllabs/tooling/reproducibility.py).
check-reproducible: $(STAMP)  ## rebuild the pipeline and compare with the committed metrics
	python -m dllabs.tooling.reproducibility --stale
	dvc repro
	python -m dllabs.tooling.reproducibility HEAD

lint: $(STAMP)  ## ruff check, ruff format --check, and dvc.yaml's code deps against the imports
	ruff check .
	ruff format --check .
	python -m dllabs.tooling.code_deps --check

# The documentation site (mkdocs.yml, docs/): offline (no web fonts, no external inventories), and
# --strict, so a broken link, anchor or API reference fails the build. NO_MKDOCS_2_WARNING silences
# the Material theme's banner about its successor, printed on every build. First, the figures under
# docs/figures/ must still be the committed run's: compared with its outputs where they are in the
# workspace, their captions with metrics/ always (`python -m dllabs.tooling.doc_figures` redraws).
docs: $(STAMP)  ## build the documentation site into site/ (offline, --strict)
	python -m dllabs.tooling.doc_figures --check
	NO_MKDOCS_2_WARNING=1 mkdocs build --strict

docs-serve: $(STAMP)  ## serve the documentation at http://127.0.0.1:8000 with live reload
	NO_MKDOCS_2_WARNING=1 mkdocs serve

# Re-resolve every dependency to the newest version pyproject.toml allows and rewrite uv.lock.
lock: | $(UV_STAMP)  ## re-resolve every dependency and rewrite uv.lock
	$(UV) lock --upgrade

# Fail when pyproject.toml and uv.lock disagree; installs nothing.
check-lock: | $(UV_STAMP)  ## fail when pyproject.toml and uv.lock disagree
	$(UV) lock --check

clean-venv:  ## remove .venv/
	rm -rf $(VENV)
