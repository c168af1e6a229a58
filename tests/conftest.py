"""Shared fixtures: the repository's default params, and a scratch folder to run stages in."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


# A corpus small enough for tests, in which words share contexts (king and queen, man and woman).
TINY_CORPUS = [
    ["the", "king", "rules", "the", "land"],
    ["the", "queen", "rules", "the", "land"],
    ["a", "man", "walks", "the", "dog"],
    ["a", "woman", "walks", "the", "dog"],
] * 25


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


def copy_repository(dest: Path) -> Path:
    """The repository's files that git would track (what a fresh clone or a DVC queue sees)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    for name in listed:
        if (REPO / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    return dest


QUICK_SECTIONS = ("mlp", "cnn", "autoencoder", "cbow", "transfer.pretrain",
                  "transfer.feature_extraction", "transfer.fine_tune")  # fmt: skip


def shrink_epochs(root: Path, epochs: int = 2) -> None:
    """Set every training section's ``epochs`` in ``root/params.yaml``: quick pipeline runs."""
    path = root / "params.yaml"
    params = yaml.safe_load(path.read_text(encoding="utf-8"))
    for section in QUICK_SECTIONS:
        set_key(params, f"{section}.epochs", epochs)
    path.write_text(yaml.safe_dump(params), encoding="utf-8")


def sh(cmd: list[str] | str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    """Run a command with the venv's ``bin`` first on PATH, as `make` does for DVC's workers."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False,
        shell=isinstance(cmd, str), executable="/bin/bash" if isinstance(cmd, str) else None,
    )  # fmt: skip
    if check:
        shown = cmd if isinstance(cmd, str) else " ".join(cmd)
        assert result.returncode == 0, f"{shown} failed:\n{result.stdout}\n{result.stderr}"
    return result


def commit_all(root: Path, message: str) -> None:
    """``git add -A`` and commit, as a throwaway identity."""
    sh(["git", "add", "-A"], root)
    sh(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message], root)
