"""The callbacks :func:`dllabs.training.fit.fit` trains with: epoch timing, a divergence guard, and
DVCLive curves written through Keras alone (no TensorFlow import), on any backend."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np

from dllabs.errors import LabError


class EpochTimer(keras.callbacks.Callback):
    """Wall-clock seconds of every epoch (training and validation)."""

    resume_state = ("seconds",)  # a resumed run reports the epochs before the interruption too

    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []
        self._start = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.seconds.append(time.perf_counter() - self._start)


class TrainingDiverged(LabError):
    """The loss became NaN or infinite, or grew far past what guessing scores."""


class DivergenceGuard(keras.callbacks.Callback):
    """Stop a run whose loss is not finite, or exceeds ``limit`` at the end of an epoch.

    A learning rate too high for the input size sends the loss to NaN, or far above guessing's,
    within an epoch; without this check such a run trains every epoch at chance and early stopping
    (watching a loss that weight decay keeps nudging down) never fires. ``advice`` says which
    param to change.
    """

    def __init__(self, limit: float | None, advice: str) -> None:
        super().__init__()
        self.limit = limit
        self.advice = advice
        self._epoch = 0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch = epoch + 1

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(loss):
            raise TrainingDiverged(
                f"training diverged in epoch {self._epoch}, batch {batch + 1} (loss {loss}); "
                f"{self.advice}"
            )

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is None:
            return
        if not np.isfinite(loss):
            raise TrainingDiverged(
                f"training diverged in epoch {epoch + 1} (loss {loss}); {self.advice}"
            )
        if self.limit is not None and loss > self.limit:
            raise TrainingDiverged(
                f"training diverged in epoch {epoch + 1} (training loss {loss:.4g}, above the "
                f"{self.limit:.4g} allowed: {DIVERGENCE_FACTOR:g}x what guessing scores); "
                f"{self.advice}"
            )


DIVERGENCE_FACTOR = 10.0


def chance_loss(model: keras.Model, loss: Any) -> float | None:
    """Cross-entropy of a uniform guess over the model's classes (ln K); None for other losses."""
    if loss != "sparse_categorical_crossentropy":
        return None
    return float(np.log(model.output_shape[-1]))


def open_live(live_dir: str | Path) -> Any:
    """A DVCLive run that leaves ``dvc.yaml`` and experiments to DVC itself."""
    os.environ.setdefault("DVCLIVE_LOGLEVEL", "WARNING")
    from dvclive import Live

    return Live(dir=str(live_dir), dvcyaml=False, save_dvc_exp=False, report=None)


class LiveCallback(keras.callbacks.Callback):
    """Every epoch's logs into a DVCLive run, on any Keras backend.

    Metrics are named as DVCLive's own Keras callback names them (``loss`` -> ``train/loss``,
    ``val_loss`` -> ``eval/loss``), so the curves' files are the same; that callback imports
    TensorFlow, this one only Keras. ``prefix`` puts a phase's metrics under ``<prefix>/``; a run
    shared with later phases (``owns_run=False``) is left open for them to continue its steps.
    """

    def __init__(self, live: Any, prefix: str = "", owns_run: bool = True) -> None:
        super().__init__()
        self.live, self.prefix, self.owns_run = live, prefix, owns_run

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        from dvclive.utils import standardize_metric_name

        for metric, value in (logs or {}).items():
            name = f"{self.prefix}/{metric}" if self.prefix else metric
            self.live.log_metric(standardize_metric_name(name, "dvclive.keras"), value)
        self.live.next_step()

    def on_train_end(self, logs: dict | None = None) -> None:
        if self.owns_run:
            self.live.end()


def dvclive_callback(live_dir: str | Path | Any, prefix: str = "") -> keras.callbacks.Callback:
    """A :class:`LiveCallback` writing ``<live_dir>/plots/metrics/{train,eval}/*.tsv``.

    Given an open ``Live`` instead of a folder, metrics go under ``<prefix>/`` and the run stays
    open at the end of training, so a later phase continues its steps.
    """
    if isinstance(live_dir, (str, Path)):
        return LiveCallback(open_live(live_dir))
    return LiveCallback(live_dir, prefix, owns_run=False)
