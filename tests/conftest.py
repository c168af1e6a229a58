"""Shared fixtures: the repository's default params, and a scratch folder to run stages in."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def default_params() -> dict[str, Any]:
    """params.yaml as committed (the offline defaults)."""
    return yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))


def set_key(params: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``a.b.c`` in a nested mapping, like ``dvc exp run -S a.b.c=value``."""
    *parents, last = dotted.split(".")
    node = params
    for part in parents:
        node = node[part]
    node[last] = value


@pytest.fixture
def workdir(tmp_path: Path, default_params: dict[str, Any], monkeypatch: pytest.MonkeyPatch):
    """A scratch folder with the default params.yaml, made the current directory.

    Returns a function ``write(**overrides)`` that rewrites params.yaml with dotted-key
    overrides (``write(**{"data.images": "mnist"})``) and returns the folder.
    """
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DL_LABS_CACHE", str(tmp_path / ".cache"))
    monkeypatch.delenv("DL_LABS_MIRROR", raising=False)

    def write(**overrides: Any) -> Path:
        params = copy.deepcopy(default_params)
        for key, value in overrides.items():
            set_key(params, key, value)
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
        return tmp_path

    write()
    return write


def run_stage(module: str, *args: str, cwd: Path, env: dict[str, str] | None = None):
    """Run ``python -m stages.<module>`` as DVC would; return the completed process."""
    return subprocess.run(
        [sys.executable, "-m", f"stages.{module}", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONHASHSEED": "0", **(env or {})},
        capture_output=True,
        text=True,
        check=False,
    )
