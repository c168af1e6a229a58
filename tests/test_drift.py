"""The reproducibility check reads `dvc metrics diff --json` and flags real changes only."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from dllabs.drift import drifted, dvc_executable

DIFF = {
    "metrics/cnn.json": {
        "run.train_seconds": {"old": 20.3, "new": 29.8, "diff": 9.5},
        "test.accuracy": {"old": 0.992593, "new": 0.985185, "diff": -0.007408},
    },
    "metrics/cbow.json": {
        "engine": {"old": "gensim", "new": "keras"},
        "wordsim353.spearman": {"old": 0.3226, "new": 0.3226, "diff": 0.0},
    },
    "metrics/transfer.json": {"scratch.accuracy": {"old": None, "new": 0.96}},
}


def test_timings_are_ignored_and_every_other_change_is_named() -> None:
    assert drifted(DIFF, tolerance=0.0) == [
        "metrics/cbow.json: engine: gensim -> keras",
        "metrics/cnn.json: test.accuracy: 0.992593 -> 0.985185",
        "metrics/transfer.json: scratch.accuracy: None -> 0.96",
    ]


def test_tolerance_admits_small_numeric_changes_only() -> None:
    changes = drifted(DIFF, tolerance=0.01)
    assert not any("test.accuracy" in line for line in changes)
    assert any("engine" in line for line in changes) and any("None" in line for line in changes)


def test_no_change_is_no_drift() -> None:
    same = {"metrics/mlp.json": {"test.accuracy": {"old": 0.97, "new": 0.97, "diff": 0.0}}}
    assert drifted(same, tolerance=0.0) == [] and drifted({}, tolerance=0.0) == []


def test_dvc_beside_the_interpreter_comes_first(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """Run as ``.venv/bin/python -m dllabs.drift`` without the venv on PATH, it still finds dvc."""
    bin_dir = tmp_path / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    monkeypatch.setattr(sys, "executable", str(bin_dir / "python"))
    monkeypatch.setenv("PATH", str(tmp_path / "elsewhere"))
    assert dvc_executable() == "dvc"  # nothing beside it, nothing on PATH: left to the shell
    (bin_dir / "dvc").write_text("#!/bin/sh\n")
    assert Path(dvc_executable()) == bin_dir / "dvc"
