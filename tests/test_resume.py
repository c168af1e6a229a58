"""Interrupted training resumes: killed stages continue and end as uninterrupted runs do.

The stage tests kill a real training with SIGKILL right after a known epoch's checkpoint
(``tests.killed_run``), run the stage again, and compare everything it wrote with an uninterrupted
run's in a separate process: weights bit for bit, the run summary, and every DVCLive curve, which
must hold each epoch once. The models have Dropout (the seed-generator state must come back) and
stop early after the kill (early stopping's counters and best weights must come back).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from contextlib import nullcontext
from pathlib import Path

import keras
import numpy as np
import pytest

from dllabs.errors import LabError
from dllabs.models.builders import build_mlp
from dllabs.params import MLP, Base
from dllabs.training.devices import setup_run
from dllabs.training.fit import fit
from dllabs.training.resume import Checkpoint, TrainingState, resumable
from tests.helpers.data import save_arrays
from tests.helpers.repo import REPO
from tests.helpers.stages import run_stage
from tests.test_training import tiny_data
from tests.test_transfer import images as transfer_images


def run_killed(folder: str, epoch: int, stage: str, *args: str, cwd: Path):
    """:func:`run_stage`, SIGKILLed once the checkpoint in ``folder`` holds ``epoch`` epochs."""
    return subprocess.run(
        [sys.executable, "-m", "tests.killed_run", folder, str(epoch), stage, *args],
        cwd=cwd,
        env={**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        check=False,
    )


def overlapping_images(path: Path) -> None:
    """Three classes whose pixel ranges overlap: validation loss falls, then rises as the model
    learns the training rows' noise, so early stopping fires."""
    rng = np.random.default_rng(0)
    y = np.arange(120) % 3
    x = (rng.integers(0, 160, (120, 4, 4, 1)) + y[:, None, None, None] * 20).astype(np.uint8)
    save_arrays(
        path,
        {
            "x_train": x[:60],
            "y_train": y[:60],
            "x_val": x[60:],
            "y_val": y[60:],
            "class_names": np.array(["a", "b", "c"]),
        },
    )


MLP_PARAMS = {
    "mlp.hidden_units": [32],
    "mlp.dropout": 0.3,
    "mlp.learning_rate": 0.01,
    "mlp.batch_size": 8,
    "mlp.epochs": 40,
    "mlp.patience": 4,
    "mlp.reduce_lr_patience": 2,
    "base.device": "cpu",
}


def mlp_args(folder: str) -> list[str]:
    return [
        "--images",
        "images",
        "--model",
        f"{folder}/mlp",
        "--plots",
        f"{folder}/plots",
        "--validation",
        f"{folder}/validation.json",
    ]


def weights(path: Path) -> list[np.ndarray]:
    return keras.saving.load_model(path).get_weights()


def assert_same_weights(path: Path, reference: Path) -> None:
    for ours, theirs in zip(weights(path), weights(reference), strict=True):
        assert np.array_equal(ours, theirs)


def assert_same_curves(plots: Path, reference: Path) -> None:
    """Every DVCLive table as the uninterrupted run wrote it: each step once, the same values."""
    tables = sorted(p.relative_to(reference) for p in reference.rglob("*.tsv"))
    assert tables and sorted(p.relative_to(plots) for p in plots.rglob("*.tsv")) == tables
    for table in tables:
        rows = (plots / table).read_text().splitlines()
        assert rows == (reference / table).read_text().splitlines(), table
        steps = [int(row.split("\t")[0]) for row in rows[1:]]
        assert steps == list(range(steps[0], steps[0] + len(steps))), table


def without_timings(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if "seconds" not in k and k != "platform"}


@pytest.mark.slow
def test_a_killed_stage_resumes_and_ends_as_an_uninterrupted_run(workdir) -> None:
    root = workdir(**MLP_PARAMS)
    overlapping_images(root / "images")
    done = run_stage("train_mlp", *mlp_args("ref"), cwd=root)
    assert done.returncode == 0, done.stderr
    assert not (root / "ref" / ".resume").exists()  # a clean finish leaves no checkpoint
    reference = json.loads((root / "ref" / "mlp" / "summary.json").read_text())
    # Killed in the last epoch before early stopping fires: the rerun must stop after one epoch,
    # with the best weights and learning rate of before the kill (patience 4, reduced after 2).
    kill_after = reference["epochs_trained"] - 1
    assert reference["best_epoch"] < kill_after and reference["epochs_trained"] < 40

    killed = run_killed("run/.resume/mlp", kill_after, "train_mlp", *mlp_args("run"), cwd=root)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert (root / "run" / ".resume" / "mlp" / "state.npz").is_file()
    assert not (root / "run" / "mlp").exists()

    resumed = run_stage("train_mlp", *mlp_args("run"), cwd=root)
    assert resumed.returncode == 0, resumed.stderr
    assert (
        f"train_mlp: resuming an interrupted run from its checkpoint after epoch {kill_after} "
        "(run/.resume/mlp)\n"
    ) in resumed.stdout
    assert f"Epoch {kill_after + 1}/40" in resumed.stdout
    assert f"Epoch {kill_after}/40" not in resumed.stdout
    assert not (root / "run" / ".resume").exists()
    assert_same_weights(root / "run/mlp/model.keras", root / "ref/mlp/model.keras")
    summary = json.loads((root / "run" / "mlp" / "summary.json").read_text())
    assert without_timings(summary) == without_timings(reference)
    assert_same_curves(root / "run" / "plots", root / "ref" / "plots")
    learning_rates = (root / "run/plots/plots/metrics/train/learning_rate.tsv").read_text()
    assert len(set(learning_rates.splitlines()[1 : kill_after + 1])) > 1  # reduced before the kill


TRANSFER_PARAMS = {
    "base.device": "cpu",
    "cnn.filters": [4, 8],
    "cnn.kernel_sizes": [3],
    "cnn.dense_units": [],
    "cnn.augment.rotation": 0.0,
    "cnn.augment.zoom": 0.0,
    "cnn.augment.translation": 0.0,
    "transfer.repeats": 1,
    "transfer.target_train_size": 4,
    "transfer.trainable_base_layers": 0,
    "transfer.head.dense_units": [8],
    "transfer.head.dropout": 0.3,
    "transfer.augment": {"flip": "horizontal", "rotation": 0.0, "zoom": 0.0, "translation": 0.0},
    "transfer.fine_tune.unfreeze": 2,
    **{
        f"transfer.{phase}.{key}": value
        for phase in ("pretrain", "feature_extraction", "fine_tune")
        for key, value in (
            ("epochs", 3),
            ("batch_size", 8),
            ("patience", 0),
            ("reduce_lr_patience", 0),
        )
    },
}


@pytest.mark.long
def test_a_killed_transfer_run_continues_its_phase_and_retrains_no_finished_one(workdir) -> None:
    """Killed in the fine-tuning phase: feature extraction is taken from its checkpoint, fine-tuning
    continues after its last epoch, the scratch baseline trains; all as an uninterrupted run."""
    from stages import pretrain_base

    root = workdir(**TRANSFER_PARAMS)
    data = transfer_images()
    arrays = {f"{k}_{s}": a for s, (x, y) in data.splits.items() for k, a in (("x", x), ("y", y))}
    save_arrays(root / "images", {**arrays, "class_names": np.array(data.class_names)})
    pretrain_base.main(["--images", "images", "--model", "pre", "--plots", "pre_plots"])

    def args(folder: str) -> list[str]:
        return [
            "--images",
            "images",
            "--pretrained",
            "pre",
            "--model",
            f"{folder}/transfer",
            "--plots",
            f"{folder}/plots",
            "--validation",
            f"{folder}/validation.json",
        ]

    done = run_stage("train_transfer", *args("ref"), cwd=root)
    assert done.returncode == 0, done.stderr
    kill_after = 3 + 1  # three feature-extraction epochs, then one of fine-tuning
    killed = run_killed(
        "run/.resume/transfer/repeat_0/fine_tune",
        kill_after,
        "train_transfer",
        *args("run"),
        cwd=root,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr

    resumed = run_stage("train_transfer", *args("run"), cwd=root)
    assert resumed.returncode == 0, resumed.stderr
    lines = [line for line in resumed.stdout.splitlines() if "interrupted run" in line]
    assert lines == [
        "train_transfer: taking the training finished by an interrupted run from its checkpoint "
        "(3 epochs; run/.resume/transfer/repeat_0/feature_extraction)",
        f"train_transfer: resuming an interrupted run from its checkpoint after epoch {kill_after} "
        "(run/.resume/transfer/repeat_0/fine_tune)",
    ]
    assert not (root / "run" / ".resume").exists()
    for phase in ("feature_extraction", "fine_tune", "scratch"):
        model = Path("transfer") / "repeat_0" / f"{phase}.keras"
        assert_same_weights(root / "run" / model, root / "ref" / model)
    summary = json.loads((root / "run/transfer/summary.json").read_text())["repeats"][0]
    reference = json.loads((root / "ref/transfer/summary.json").read_text())["repeats"][0]
    for phase in ("feature_extraction", "fine_tune", "scratch"):
        assert without_timings(summary[phase]) == without_timings(reference[phase])
    assert_same_curves(root / "run" / "plots", root / "ref" / "plots")


# --- in one process: what discards a checkpoint, and when it goes away --------------------------

BASE = Base(seed=7, device="cpu", mixed_precision="off")


@pytest.fixture
def mlp(default_params: dict) -> MLP:
    raw = {**default_params["mlp"], "hidden_units": [8], "epochs": 4, "batch_size": 16}
    return MLP(**raw)


class Interrupt(keras.callbacks.Callback):
    """Ctrl-C as epoch ``epoch`` (counted from 0) begins, after the previous one's checkpoint."""

    def __init__(self, epoch: int) -> None:
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        if epoch == self.epoch:
            raise KeyboardInterrupt


def train(
    mlp: MLP,
    checkpoint: Checkpoint,
    base: Base = BASE,
    rows: int = 60,
    interrupt: int | None = None,
):
    keras.backend.clear_session()  # layer names as a fresh process has them
    device = setup_run(base)
    model = build_mlp((4, 4, 1), 3, mlp)
    x, y = tiny_data(rows)
    extra = [Interrupt(interrupt)] if interrupt is not None else []
    return fit(
        model,
        (x[:45], y[:45]),
        (x[45:], y[45:]),
        mlp,
        device,
        None,
        verbose=0,
        extra_callbacks=extra,
        checkpoint=checkpoint,
    )


def saved(checkpoint: Checkpoint) -> TrainingState:
    with np.load(checkpoint.file, allow_pickle=False) as arrays:
        return TrainingState.from_arrays({name: arrays[name] for name in arrays.files})


@pytest.mark.parametrize("change", ["nothing", "learning_rate", "seed", "data"])
def test_only_the_same_run_resumes_a_checkpoint(
    change: str, mlp: MLP, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    checkpoint = Checkpoint(tmp_path / ".resume" / "mlp", "train_mlp")
    with pytest.raises(KeyboardInterrupt):
        train(mlp, checkpoint, interrupt=2)
    assert saved(checkpoint).epoch == 2
    other = {
        "nothing": {},
        "learning_rate": {"mlp": mlp.model_copy(update={"learning_rate": 0.02})},
        "seed": {"base": BASE.model_copy(update={"seed": 8})},
        "data": {"rows": 61},  # one more validation row
    }[change]
    result = train(**{"mlp": mlp, "checkpoint": checkpoint, **other})
    out = capsys.readouterr().out
    resuming = (
        "train_mlp: resuming an interrupted run from its checkpoint after epoch 2 "
        f"({checkpoint.folder})\n"
    )
    discarding = (
        f"train_mlp: discarding the checkpoint of an interrupted run ({checkpoint.folder}): "
        "its params, data, seed or model differ from this run's\n"
    )
    assert out == (resuming if change == "nothing" else discarding)
    assert len(saved(checkpoint).logs) == result.epochs_trained == 4  # every epoch, each once


def test_an_unreadable_checkpoint_is_discarded(
    mlp: MLP, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    checkpoint = Checkpoint(tmp_path / "mlp", "train_mlp")
    checkpoint.folder.mkdir()
    checkpoint.file.write_bytes(b"PK\x03\x04 cut short by a full disk")
    assert train(mlp, checkpoint).epochs_trained == 4
    assert "train_mlp: discarding the checkpoint of an interrupted run" in capsys.readouterr().out
    assert saved(checkpoint).epoch == 4


def test_a_checkpoint_goes_on_success_and_lab_errors_and_stays_on_interruptions(
    tmp_path: Path,
) -> None:
    def leave(error: BaseException | None, output: str = "models/mlp") -> Path:
        """The checkpoint folder a stage writing ``output`` leaves after ``error`` (or success)."""
        expected = pytest.raises(type(error)) if error else nullcontext()
        with expected, resumable(tmp_path / output, "train_mlp") as checkpoint:
            checkpoint.save(TrainingState("f", 1, False, [], [np.zeros(2)], []))
            if error:
                raise error
        return checkpoint.folder

    resume = tmp_path / "models" / ".resume"
    assert leave(None) == resume / "mlp" and not resume.exists()  # nor its parent, left empty
    assert not leave(LabError("training diverged")).exists()
    assert leave(KeyboardInterrupt()).is_dir()  # Ctrl-C: the rerun continues
    assert leave(MemoryError(), "models/transfer") == resume / "transfer"
    assert (resume / "transfer" / "state.npz").is_file()
    assert not leave(None).exists()
    assert resume.is_dir()  # another stage's checkpoint is still there
