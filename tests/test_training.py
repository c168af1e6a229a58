"""The fit helper: determinism, device choice, early stopping, DVCLive curves."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest

from dllabs.errors import ParamsError
from dllabs.models import build_mlp
from dllabs.params import MLP, Base
from dllabs.training import Accelerator, choose_device, fit, setup_run

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
    result = fit(model, (x[:45], y[:45]), (x[45:], y[45:]), mlp, device, live_dir, verbose=0)
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
    wild = MLP(**{**mlp.model_dump(), "learning_rate": 5.0, "epochs": 30, "patience": 2,
                  "reduce_lr_patience": 0})  # fmt: skip
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
    monkeypatch.setattr("dllabs.training.visible_gpus", lambda: [])
    assert setup_run(Base(**{**base.model_dump(), "device": "auto"})).kind == "cpu"
    with pytest.raises(ParamsError, match=r"base\.device is 'gpu'"):
        setup_run(Base(**{**base.model_dump(), "device": "gpu"}))
