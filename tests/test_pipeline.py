"""dvc.yaml wiring: a fresh copy of the repository reproduces, and reruns only what changed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

DVC = [sys.executable, "-m", "dvc"]


def sh(cmd: list[str], cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def repo_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repository's tracked files in a new git repo, after one quick `dvc repro`."""
    root = tmp_path_factory.mktemp("repo")
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    for name in listed:
        if (REPO / name).is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, root / name)
    for section in ("mlp", "cnn", "autoencoder"):  # two epochs each keep this test quick
        edit_params(root, section, "epochs", 2)
    sh(["git", "init", "-q"], root)
    sh(["git", "-c", "user.name=t", "-c", "user.email=t@t", "add", "-A"], root)
    sh(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "copy"], root)
    sh([*DVC, "repro"], root)
    return root


def stale_stages(root: Path) -> set[str]:
    out = sh([*DVC, "status", "--json"], root)
    return set(yaml.safe_load(out) or {})


def edit_params(root: Path, section: str, key: str, value) -> None:
    path = root / "params.yaml"
    params = yaml.safe_load(path.read_text())
    params[section][key] = value
    path.write_text(yaml.safe_dump(params))


def test_second_repro_runs_nothing(repo_copy: Path) -> None:
    assert stale_stages(repo_copy) == set()
    out = sh([*DVC, "repro"], repo_copy)
    assert "Running stage" not in out


@pytest.mark.parametrize(
    ("section", "key", "value", "stale"),
    [
        ("tokenize", "min_token_length", 3, {"tokenize"}),
        ("data", "normal_label", 3, {"preprocess"}),
        ("mlp", "optimizer", "adam", {"train_mlp"}),
        ("cnn", "dropout", 0.1, {"train_cnn"}),
        ("autoencoder", "code_size", 4, {"train_autoencoder"}),
        ("anomaly", "k", 2.0, {"threshold_anomaly"}),
        (
            "base",
            "seed",
            7,
            {"preprocess", "train_mlp", "train_cnn", "train_autoencoder", "evaluate"},
        ),
    ],
)
def test_changing_a_param_reruns_only_its_stages(
    repo_copy: Path, section: str, key: str, value, stale: set[str]
) -> None:
    """`dvc status` lists the stages whose own params changed (downstream ones follow on repro)."""
    original = (repo_copy / "params.yaml").read_text()
    try:
        edit_params(repo_copy, section, key, value)
        assert stale_stages(repo_copy) == stale
    finally:
        (repo_copy / "params.yaml").write_text(original)
    assert stale_stages(repo_copy) == set()
