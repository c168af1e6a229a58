"""The fit helper: determinism, device choice, early stopping, DVCLive curves."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import numpy as np
import pytest

from dllabs.errors import ParamsError
from dllabs.models.builders import build_mlp
from dllabs.params import MLP, Base
from dllabs.training.devices import Accelerator, choose_device, setup_run
from dllabs.training.fit import Curves, fit

H200 = Accelerator("NVIDIA H200", (9, 0))
P100 = Accelerator("Tesla P100", (6, 0))


def tiny_data(n: int = 60, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = (rng.integers(0, 80, (n, 4, 4, 1)) + y[:, None, None, None] * 80).astype(np.uint8)
    return x, y


@pytest.fixture
def mlp(default_params: dict) -> MLP:
    params = copy.deepcopy(default_params["mlp"])
    params.update(hidden_units=[8], epochs=3, batch_size=16, patience=2, reduce_lr_patience=1)
    return MLP(**params)


@pytest.fixture
def base(default_params: dict) -> Base:
    return Base(**{**default_params["base"], "device": "cpu"})


def train_once(base: Base, mlp: MLP, live_dir: Path | None = None):
    device = setup_run(base)
    model = build_mlp((4, 4, 1), 3, mlp)
    x, y = tiny_data()
    curves = Curves.to(live_dir)
    result = fit(model, (x[:45], y[:45]), (x[45:], y[45:]), mlp, device, curves, verbose=0)
    return model, result


def test_two_fits_give_identical_weights(base: Base, mlp: MLP) -> None:
    first, _ = train_once(base, mlp)
    second, _ = train_once(base, mlp)
    for a, b in zip(first.get_weights(), second.get_weights(), strict=True):
        assert np.array_equal(a, b)
    other, _ = train_once(Base(**{**base.model_dump(), "seed": base.seed + 1}), mlp)
    assert not np.array_equal(first.get_weights()[0], other.get_weights()[0])


def test_fit_reports_the_run_and_writes_dvclive_curves(
    base: Base, mlp: MLP, tmp_path: Path
) -> None:
    _, result = train_once(base, mlp, tmp_path / "live")
    assert 1 <= result.epochs_trained <= 3 and 1 <= result.best_epoch <= result.epochs_trained
    assert result.device_kind == "cpu" and result.device == "CPU" and not result.mixed_precision
    assert result.seconds_per_epoch > 0
    for split in ("train", "eval"):
        for metric in ("loss", "accuracy"):
            table = (tmp_path / "live" / "plots" / "metrics" / split / f"{metric}.tsv").read_text()
            lines = table.strip().splitlines()
            assert lines[0].split("\t") == ["step", metric]
            assert len(lines) == 1 + result.epochs_trained
    assert not (tmp_path / "live" / "dvc.yaml").exists()  # dvc.yaml stays hand-written


def test_early_stopping_restores_the_best_weights(base: Base, mlp: MLP) -> None:
    # A learning rate this large diverges after the first epochs; patience stops the run.
    wild = MLP(
        **{
            **mlp.model_dump(),
            "learning_rate": 3.0,
            "epochs": 30,
            "patience": 2,
            "reduce_lr_patience": 0,
        }
    )
    _, result = train_once(base, wild)
    assert result.epochs_trained < 30
    assert result.epochs_trained - result.best_epoch == 2


@pytest.mark.parametrize(
    ("requested", "gpus", "mixed", "kind", "uses_mixed"),
    [
        ("auto", [], "auto", "cpu", False),
        ("auto", [H200], "auto", "gpu", True),
        ("auto", [H200], "off", "gpu", False),
        ("auto", [P100], "auto", "gpu", False),  # compute capability 6.0 < 7.0
        ("cpu", [H200], "auto", "cpu", False),
        ("gpu", [H200, P100], "off", "gpu", False),
    ],
)
def test_device_choice(requested, gpus, mixed, kind, uses_mixed) -> None:
    device = choose_device(requested, gpus, mixed)
    assert device.kind == kind and device.mixed_precision == uses_mixed
    if kind == "gpu":
        assert device.description.startswith(gpus[0].name)


def test_gpu_requested_without_one_is_a_clear_error() -> None:
    with pytest.raises(ParamsError, match=r"base\.device is 'gpu' but .* sees no GPU"):
        choose_device("gpu", [], "off")


def test_setup_run_uses_the_device_list(monkeypatch: pytest.MonkeyPatch, base: Base) -> None:
    monkeypatch.setattr("dllabs.training.devices.visible_gpus", lambda: [])
    assert setup_run(Base(**{**base.model_dump(), "device": "auto"})).kind == "cpu"
    with pytest.raises(ParamsError, match=r"base\.device is 'gpu'"):
        setup_run(Base(**{**base.model_dump(), "device": "gpu"}))


def test_a_diverging_run_stops_with_the_key_to_change(base: Base, mlp: MLP) -> None:
    """Loss far above guessing's (ln 3 here) stops the run in its first epochs (of 50), naming
    the key."""
    from dllabs.training.callbacks import TrainingDiverged

    wild = MLP(
        **{
            **mlp.model_dump(),
            "learning_rate": 10.0,
            "momentum": 0.9,
            "epochs": 50,
            "patience": 0,
            "reduce_lr_patience": 0,
        }
    )
    device = setup_run(base)
    model = build_mlp((4, 4, 1), 3, wild)
    x, y = tiny_data()
    with pytest.raises(TrainingDiverged, match=r"lower mlp\.learning_rate \(now 10\)") as caught:
        fit(model, (x, y), (x, y), wild, device, None, verbose=0, params_key="mlp")
    assert re.search(r"diverged in epoch [12] ", str(caught.value)), caught.value
    assert "\n" not in str(caught.value)


def test_the_guard_stops_a_nan_loss_at_once() -> None:
    from dllabs.training.callbacks import DivergenceGuard, TrainingDiverged

    guard = DivergenceGuard(limit=None, advice="lower x.learning_rate")
    guard.on_epoch_begin(2)
    guard.on_train_batch_end(0, {"loss": 1.0})
    with pytest.raises(TrainingDiverged, match=r"epoch 3, batch 5 \(loss nan\)"):
        guard.on_train_batch_end(4, {"loss": float("nan")})
    guard.on_epoch_end(0, {"loss": 1e9})  # no limit (a regression loss): only NaN stops it
    with pytest.raises(TrainingDiverged, match=r"above the 6\.931 allowed"):
        DivergenceGuard(limit=10 * np.log(2), advice="").on_epoch_end(0, {"loss": 7.0})
    DivergenceGuard(limit=10 * np.log(2), advice="").on_epoch_end(0, {"loss": 6.9})


def test_a_diverged_stage_exits_one_line_and_writes_nothing(
    workdir, tmp_path: Path, default_params: dict
) -> None:
    from tests.helpers.data import save_arrays
    from tests.helpers.stages import run_stage

    x, y = tiny_data(90)
    save_arrays(
        tmp_path / "images",
        {
            "x_train": x[:60],
            "y_train": y[:60],
            "x_val": x[60:],
            "y_val": y[60:],
            "class_names": np.array(["a", "b", "c"]),
        },
    )
    workdir(
        **{
            "mlp.learning_rate": 10.0,
            "mlp.momentum": 0.9,
            "mlp.epochs": 20,
            "mlp.hidden_units": [8],
            "base.device": "cpu",
        }
    )
    done = run_stage(
        "train_mlp",
        "--images",
        "images",
        "--model",
        "m/mlp",
        "--plots",
        "plots/mlp",
        "--validation",
        "v.json",
        cwd=tmp_path,
    )
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("train_mlp: error: training diverged in epoch")
    assert "mlp.learning_rate" in last
    assert not (tmp_path / "m").exists() and not (tmp_path / "plots").exists()
    assert not list(tmp_path.glob(".*.tmp*"))
