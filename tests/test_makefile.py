"""`make help`, the Makefile's default goal, lists every target a user runs, with what it does."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tests.helpers.repo import REPO


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_alone_lists_the_targets_with_what_each_does() -> None:
    listed = subprocess.run(["make", "-s"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    lines = dict(re.findall(r"^  make (\S+) +(.+)$", listed.stdout, re.MULTILINE))
    targets = set(re.findall(r"^([a-z-]+):", (REPO / "Makefile").read_text(), re.MULTILINE))
    assert set(lines) == targets - {"FORCE"}
    assert "run the pipeline" in lines["repro"] and "tests" in lines["test"]
