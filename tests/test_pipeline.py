"""dvc.yaml wiring: a fresh copy of the repository reproduces, and reruns only what changed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.helpers.repo import DVC, copy_of, sh


@pytest.fixture(scope="module")
def repo_copy(reproduced_baseline: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repository's tracked files in a new git repo, after one quick `dvc repro`."""
    return copy_of(reproduced_baseline, tmp_path_factory.mktemp("repo"))


def stale_stages(root: Path) -> set[str]:
    """The stages `dvc status` lists, through DVC's Python API: what the CLI prints, without a
    new process (and DVC's imports) per call."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:  # it names stages by their path from the current folder
        return {name.rsplit("dvc.yaml:", 1)[-1] for name in repo.status()}


def edit_params(root: Path, section: str, key: str, value) -> None:
    """Set ``section.key`` (the section may be dotted: ``transfer.head``)."""
    path = root / "params.yaml"
    params = yaml.safe_load(path.read_text())
    node = params
    for part in section.split("."):
        node = node[part]
    node[key] = value
    path.write_text(yaml.safe_dump(params))


@pytest.mark.slow
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
        ("cnn", "batch_size", 32, {"train_cnn", "evaluate_classifier@cnn"}),
        # Lab 5's pipeline base and its scratch baseline are built from cnn.preset's blocks.
        ("cnn", "preset", "lenet5", {"train_cnn", "pretrain_base", "train_transfer"}),
        ("transfer.head", "dropout", 0.1, {"train_transfer"}),  # the base is not retrained
        ("transfer.fine_tune", "learning_rate", 0.001, {"train_transfer"}),
        ("transfer.pretrain", "learning_rate", 0.001, {"pretrain_base"}),
        ("transfer", "target_train_size", 5, {"train_transfer"}),
        ("transfer", "repeats", 2, {"train_transfer"}),
        ("transfer", "target_classes", [6, 7, 8, 9], {"pretrain_base", "train_transfer"}),
        ("autoencoder", "code_size", 4, {"train_autoencoder"}),
        ("anomaly", "k", 2.0, {"threshold_anomaly"}),
        ("cbow", "window", 3, {"train_cbow"}),
        ("cbow", "probe_words", ["fire"], {"evaluate_cbow"}),
        ("autoencoder", "loss", "mse", {"train_autoencoder", "evaluate_anomaly"}),
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
                "evaluate_classifier@mlp",
                "evaluate_classifier@cnn",
                "evaluate_anomaly",
                "evaluate_transfer",
            },
        ),
    ],
)
@pytest.mark.slow
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


@pytest.mark.slow
def test_param_changes_rebuild_their_labs_and_a_failing_lab_leaves_the_others_evaluated(
    reproduced_baseline: Path, tmp_path: Path
) -> None:
    """What `dvc repro --keep-going` runs, downstream stages included, after an MLP and a
    transfer-head param change, with the CBOW lab broken: those labs' training and evaluation
    stages, never the data stages, the other labs (the CNN, the anomaly detector) or the
    pretrained base. The CBOW stage fails with its one-line reason and only what needs it (its
    evaluation, the summary) waits.

    A real run: `dvc repro --dry` runs nothing, so it cannot see that a stage's outputs will change
    and lists only the stages whose own dependencies changed. One run for the three changes keeps
    this to one retraining of each lab; which stage each param belongs to is the test above. The
    summary after a successful change is in the long scenarios (tests/test_remote.py's
    experiment, the docs' recipe in tests/test_experiments.py).
    """
    root = copy_of(reproduced_baseline, tmp_path)
    untouched = {lab: (root / f"metrics/{lab}.json").read_bytes() for lab in ("cnn", "anomaly")}
    mlp_before = (root / "metrics/mlp.json").read_text()
    edit_params(root, "mlp", "learning_rate", 0.02)
    edit_params(root, "transfer.head", "dense_units", [16])
    edit_params(root, "cbow", "min_count", 100000)
    result = sh([*DVC, "repro", "--keep-going"], root, check=False)
    assert result.returncode != 0
    assert set(re.findall(r"Running stage '([\w@]+)'", result.stdout)) == {
        "train_mlp",
        "evaluate_classifier@mlp",
        "train_cbow",
        "train_transfer",
        "evaluate_transfer",
    }
    assert "train_cbow: error: no word occurs 100000 times in the corpus" in result.stderr
    assert (root / "metrics/mlp.json").read_text() != mlp_before
    assert {lab: (root / f"metrics/{lab}.json").read_bytes() for lab in untouched} == untouched
    # DVC removed train_cbow's outputs before running it, so the CBOW evaluation waits as well
    assert stale_stages(root) == {"train_cbow", "evaluate_cbow", "evaluate"}
