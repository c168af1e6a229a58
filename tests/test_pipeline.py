"""dvc.yaml wiring: a fresh copy of the repository reproduces, and reruns only what changed."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import commit_all, copy_repository, sh, shrink_epochs

DVC = [sys.executable, "-m", "dvc"]


@pytest.fixture(scope="module")
def repo_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repository's tracked files in a new git repo, after one quick `dvc repro`."""
    root = copy_repository(tmp_path_factory.mktemp("repo"))
    shrink_epochs(root)  # two epochs each keep this test quick
    sh(["git", "init", "-q"], root)
    commit_all(root, "copy")
    sh([*DVC, "repro"], root)
    return root


def stale_stages(root: Path) -> set[str]:
    out = sh([*DVC, "status", "--json"], root).stdout
    return set(yaml.safe_load(out) or {})


def edit_params(root: Path, section: str, key: str, value) -> None:
    """Set ``section.key`` (the section may be dotted: ``transfer.head``)."""
    path = root / "params.yaml"
    params = yaml.safe_load(path.read_text())
    node = params
    for part in section.split("."):
        node = node[part]
    node[key] = value
    path.write_text(yaml.safe_dump(params))


def test_second_repro_runs_nothing(repo_copy: Path) -> None:
    assert stale_stages(repo_copy) == set()
    out = sh([*DVC, "repro"], repo_copy).stdout
    assert "Running stage" not in out


@pytest.mark.parametrize(
    ("section", "key", "value", "stale"),
    [
        ("tokenize", "min_token_length", 3, {"tokenize"}),
        ("data", "normal_label", 3, {"preprocess"}),
        ("mlp", "optimizer", "adam", {"train_mlp"}),
        ("cnn", "dropout", 0.1, {"train_cnn", "pretrain_base"}),  # the base is lab 2's CNN
        ("cnn", "batch_size", 32, {"train_cnn", "evaluate"}),
        ("transfer.head", "dropout", 0.1, {"train_transfer"}),  # the base is not retrained
        ("transfer.fine_tune", "learning_rate", 0.001, {"train_transfer"}),
        ("transfer.pretrain", "learning_rate", 0.001, {"pretrain_base"}),
        ("transfer", "target_train_size", 5, {"train_transfer", "evaluate"}),
        ("autoencoder", "code_size", 4, {"train_autoencoder"}),
        ("anomaly", "k", 2.0, {"threshold_anomaly"}),
        ("cbow", "window", 3, {"train_cbow"}),
        ("cbow", "probe_words", ["fire"], {"evaluate"}),
        (
            "base",
            "seed",
            7,
            {
                "preprocess",
                "train_mlp",
                "train_cnn",
                "train_autoencoder",
                "train_cbow",
                "pretrain_base",
                "train_transfer",
                "evaluate",
            },
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


@pytest.mark.parametrize(
    ("section", "key", "value", "reruns"),
    [
        ("cbow", "window", 3, {"train_cbow", "evaluate"}),
        ("mlp", "learning_rate", 0.01, {"train_mlp", "evaluate"}),
        ("transfer.head", "dense_units", [16], {"train_transfer", "evaluate"}),
    ],
)
def test_a_param_change_rebuilds_its_stage_and_evaluate_only(
    repo_copy: Path, section: str, key: str, value, reruns: set[str]
) -> None:
    """What `dvc repro` runs, downstream stages included.

    A real run: `dvc repro --dry` runs nothing, so it cannot see that a stage's outputs will change
    and lists only the stages whose own dependencies changed. Restoring the params afterwards
    brings the earlier results back from DVC's run cache.
    """
    original = (repo_copy / "params.yaml").read_text()
    try:
        edit_params(repo_copy, section, key, value)
        out = sh([*DVC, "repro"], repo_copy).stdout
    finally:
        (repo_copy / "params.yaml").write_text(original)
        sh([*DVC, "repro"], repo_copy)
    assert set(re.findall(r"Running stage '(\w+)'", out)) == reruns
    assert stale_stages(repo_copy) == set()
