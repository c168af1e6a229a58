"""The one fit helper every supervised Keras training uses, and saving what it trained.

:func:`fit` compiles and trains a model with early stopping (best weights restored), an optional
ReduceLROnPlateau, a per-epoch timer and DVCLive curves (one ``Live`` per model, ``dvcyaml=False``
so ``dvc.yaml`` stays hand-written). Given a :class:`~dllabs.training.resume.Checkpoint` it keeps
the run's state at every epoch's end, and a killed run continues where it stopped.
:func:`fit_and_save` writes the model folder and its curves all-or-nothing
(:func:`dllabs.outputs.staged_outputs`). (Lab 4's Keras CBOW engine runs its own loop, one
``model.fit`` per epoch to draw fresh windows and noise words, with the same divergence guard:
:mod:`dllabs.labs.keras_cbow`.)
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import keras
import numpy as np

from dllabs.data.datasets import ImageBatches
from dllabs.models.builders import make_optimizer
from dllabs.models.inputs import MODEL_FILE, SUMMARY_FILE
from dllabs.outputs import StagedOutputs, save_json, staged_outputs
from dllabs.params import Training
from dllabs.provenance import platform_record
from dllabs.training import cluster
from dllabs.training.callbacks import (
    DIVERGENCE_FACTOR,
    DivergenceGuard,
    EpochTimer,
    chance_loss,
    dvclive_callback,
)
from dllabs.training.devices import RunDevice
from dllabs.training.resume import Checkpoint, KeepCheckpoint, fingerprint
from dllabs.tuning.pruning import trial_callbacks

if TYPE_CHECKING:
    from dvclive import Live

# What fit trains on: (x, y) arrays, or a dataset that batches and orders them itself.
Batches = tuple[np.ndarray, np.ndarray] | keras.utils.PyDataset
Loss = str | keras.losses.Loss


@dataclass(frozen=True)
class FitResult:
    """What a training run did, written next to the model for ``evaluate`` to report."""

    epochs_trained: int
    best_epoch: int
    best_val_loss: float
    seconds_per_epoch: float
    train_seconds: float
    device: str
    device_kind: str
    mixed_precision: bool
    backend: str
    # The saved model's validation figures (``val_loss`` -> ``loss``, ``val_accuracy`` ->
    # ``accuracy``): the best epoch's where early stopping restores its weights, else the last's.
    validation: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def batch_arrays(*batches: Batches) -> list[Any]:
    """The arrays behind ``fit``'s inputs, for a checkpoint's fingerprint: ``(x, y)`` tuples as
    they are, and a dataset's ``x`` and ``y`` (on disk or in memory, hashed a block at a time)."""
    arrays: list[Any] = []
    for b in batches:
        arrays += [a for a in (b.x, b.y) if a is not None] if hasattr(b, "x") else list(b)
    return arrays


def describe_batches(batches: Batches) -> dict[str, Any] | str:
    """How a dataset orders its batches (part of what a checkpoint must match); arrays: Keras."""
    if not isinstance(batches, keras.utils.PyDataset):
        return "arrays"
    keys = ("batch_size", "shuffle", "seed")
    return {"type": type(batches).__name__, **{k: getattr(batches, k, None) for k in keys}}


@dataclass(frozen=True)
class Curves:
    """Where :func:`fit` logs each epoch with DVCLive (process 0 only).

    :meth:`to` a folder of its own, one run per model; or :meth:`phase` of a run that several
    training phases share (lab 5's feature extraction, then fine-tuning): the phase logs under
    its name and its epochs count on from ``after``, those of the phases before it. The caller
    ends a shared run.
    """

    folder: Path | None = None
    run: Live | None = None
    name: str = ""
    after: int = 0

    @classmethod
    def to(cls, folder: str | Path | None) -> Curves:
        return cls(folder=None if folder is None else Path(folder))

    @classmethod
    def phase(cls, run: Live | None, name: str, after: int = 0) -> Curves:
        return cls(run=run, name=name, after=after)

    def callback(self) -> keras.callbacks.Callback | None:
        if self.run is not None:
            return dvclive_callback(self.run, self.name)
        return None if self.folder is None else dvclive_callback(self.folder)


def training_callbacks(
    model: keras.Model, training: Training, loss: Loss, params_key: str
) -> tuple[EpochTimer, list[keras.callbacks.Callback]]:
    """The epoch timer, the divergence guard (its advice naming ``params_key``'s learning rate),
    early stopping on the validation loss (best weights restored) and LR reduction, as
    ``training`` sets them."""
    timer = EpochTimer()
    chance = chance_loss(model, loss)
    key = f"{params_key}." if params_key else ""
    advice = f"lower {key}learning_rate (now {training.learning_rate:g})"
    guard = DivergenceGuard(chance * DIVERGENCE_FACTOR if chance else None, advice)
    callbacks: list[keras.callbacks.Callback] = [timer, guard]
    if training.patience:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=training.patience, restore_best_weights=True
            )
        )
    if training.reduce_lr_patience:
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor="val_loss",
                factor=training.reduce_lr_factor,
                patience=training.reduce_lr_patience,
                min_lr=training.learning_rate * 1e-3,
            )
        )
    return timer, callbacks


def place_batches(
    train: Batches, val: Batches, training: Training, device: RunDevice
) -> tuple[Batches, Batches]:
    """The batches each step of this process trains and validates on.

    Training arrays become a dataset whose epoch ``e`` order is drawn from ``(base.seed, e)``
    (Keras's own shuffle=True repeats one seeded permutation every epoch, measured), as the image
    stages' datasets do. JAX splits each batch evenly over its devices; in a multi-process run
    each process feeds its share of every global batch.
    """
    if not isinstance(train, keras.utils.PyDataset):
        train = ImageBatches(*train, training.batch_size, shuffle=True, seed=device.seed)
    if device.replicas > 1 and device.backend == "jax":
        if not isinstance(val, keras.utils.PyDataset):
            val = ImageBatches(*val, training.batch_size)
        train, val = train.split_over(device.replicas), val.split_over(device.replicas)
    if device.processes > 1:
        train, val = train.share(*device.share), val.share(*device.share)
    return train, val


def resume_from(
    checkpoint: Checkpoint,
    model: keras.Model,
    identity: dict[str, object],
    batches: tuple[Batches, Batches],
    callbacks: list[keras.callbacks.Callback],
    epochs: tuple[int, int],
) -> tuple[KeepCheckpoint, int]:
    """A callback that keeps the run's state at every epoch's end (it goes last: it saves and
    restores the other callbacks' state), and the epoch to train from: after the last one a
    killed run of the same training (same ``identity``, model and data) saved, else the first."""
    keeper = KeepCheckpoint(
        checkpoint, fingerprint(model, batch_arrays(*batches), identity), callbacks
    )
    return keeper, keeper.restore(model, *epochs)


def fit(
    model: keras.Model,
    train: Batches,
    val: Batches,
    training: Training,
    device: RunDevice,
    curves: Curves | None = None,
    *,
    loss: Loss = "sparse_categorical_crossentropy",
    metrics: Sequence[str | keras.metrics.Metric] | None = None,
    extra_callbacks: Sequence[keras.callbacks.Callback] = (),
    verbose: int = 2,
    params_key: str = "",
    checkpoint: Checkpoint | None = None,
) -> FitResult:
    """Compile and train ``model``; validation loss drives early stopping and LR reduction.

    ``train`` and ``val`` are ``(x, y)`` arrays or datasets
    (:class:`~dllabs.data.datasets.ImageBatches`) that fix their own batches and order
    (:func:`place_batches`). ``curves`` says where DVCLive logs the epochs. A diverging run raises
    :class:`~dllabs.training.callbacks.TrainingDiverged` naming ``params_key`` (the params section
    of ``training``). With a ``checkpoint`` (from :func:`dllabs.training.resume.resumable`), the
    state is saved at every epoch's end, and a checkpoint left by a killed run of the same
    training is resumed: its epochs' logs go to DVCLive again and training continues after its
    last epoch. A killed multi-process run starts over: its checkpoint would be on process 0's
    disk only.
    """
    curves = curves or Curves()
    model.compile(
        optimizer=make_optimizer(training),
        loss=loss,
        metrics=["accuracy"] if metrics is None else list(metrics),
    )
    timer, callbacks = training_callbacks(model, training, loss, params_key)
    callbacks[2:2] = extra_callbacks
    if device.process_index == 0:  # a trial of `dl-labs tune` reports each epoch to its study
        callbacks += trial_callbacks()
    # DVCLive also writes signal files at the repository's root: process 0's alone (see cluster).
    live = curves.callback() if device.process_index == 0 else None
    if live is not None:
        callbacks.append(live)
    train, val = place_batches(train, val, training, device)
    if device.processes > 1:
        checkpoint = None
        verbose = verbose if device.process_index == 0 else 0
    end_epoch, first_epoch, earlier_logs = curves.after + training.epochs, curves.after, []
    if checkpoint is not None:
        identity = {
            "training": training.model_dump(mode="json"),
            "initial_epoch": curves.after,
            "loss": loss,
            "metrics": None if metrics is None else list(metrics),
            "device": asdict(device),
            "batches": [describe_batches(b) for b in (train, val)],
        }
        keeper, first_epoch = resume_from(
            checkpoint, model, identity, (train, val), callbacks, (curves.after, end_epoch)
        )
        callbacks.append(keeper)
        earlier_logs = list(keeper.logs)
        for epoch, logs in enumerate(earlier_logs if live is not None else [], curves.after):
            live.on_epoch_end(epoch, dict(logs))  # the curves before the interruption
    if hasattr(train, "from_epoch"):
        train = train.from_epoch(first_epoch)  # a resumed run's batches are those it would have had
    history = _train(
        model, train, val, training, device, callbacks, (first_epoch, end_epoch), verbose
    )
    epochs = [dict(logs) for logs in earlier_logs] + [
        {name: values[i] for name, values in history.history.items()}
        for i in range(len(history.history.get("val_loss", [])))
    ]
    return _result(epochs, timer, training, device)


def _train(
    model: keras.Model,
    train: Batches,
    val: Batches,
    training: Training,
    device: RunDevice,
    callbacks: list[keras.callbacks.Callback],
    epochs: tuple[int, int],
    verbose: int,
) -> keras.callbacks.History:
    """``model.fit`` from epoch ``epochs[0]`` up to ``epochs[1]``; a peer of a multi-process run
    that went away ends this process in one line, nothing written."""
    try:
        return model.fit(
            train,
            validation_data=val,
            validation_batch_size=None if hasattr(val, "num_batches") else training.batch_size,
            initial_epoch=epochs[0],
            epochs=epochs[1],
            steps_per_epoch=getattr(train, "steps_per_epoch", None),
            shuffle=False,  # the dataset orders its batches itself
            callbacks=callbacks,
            verbose=verbose,
        )
    except Exception as exc:
        reason = cluster.lost_peer(exc) if device.processes > 1 else None
        if reason is not None:
            cluster.abandon(
                f"training stopped: another of the {device.processes} processes went away "
                f"({reason}); nothing written"
            )
        raise


def _result(
    epochs: list[dict[str, float]], timer: EpochTimer, training: Training, device: RunDevice
) -> FitResult:
    """What the run did, from every epoch's logs (those before a resume included)."""
    val_losses = [logs["val_loss"] for logs in epochs]
    best = int(np.argmin(val_losses))
    kept = epochs[best if training.patience else len(epochs) - 1]  # EarlyStopping restores best
    return FitResult(
        epochs_trained=len(val_losses),
        best_epoch=best + 1,
        best_val_loss=float(val_losses[best]),
        seconds_per_epoch=float(np.mean(timer.seconds)),
        train_seconds=float(np.sum(timer.seconds)),
        device=device.description,
        device_kind=device.kind,
        mixed_precision=device.mixed_precision,
        backend=device.backend,
        validation={
            name.removeprefix("val_"): float(value)
            for name, value in sorted(kept.items())
            if name.startswith("val_")
        },
    )


def validation_metrics(result: FitResult, rows: int) -> dict[str, Any]:
    """A trained model's validation figures, as its stage writes them
    (``metrics/validation/<lab>.json``): what choosing settings may look at (``dl-labs tune``
    maximises one of them), the test split unread."""
    figures = {name: round(value, 6) for name, value in result.validation.items()}
    return {
        **figures,
        "best_epoch": result.best_epoch,
        "epochs_trained": result.epochs_trained,
        "n": rows,
    }


class TrainingPaths(Protocol):
    """A training stage's output paths, as parsed from its command line (:data:`TRAINING_PATHS`);
    ``validation`` where the stage writes one."""

    model: Path
    plots: Path


def fit_and_save(
    model: keras.Model,
    train: Batches,
    val: Batches,
    training: Training,
    device: RunDevice,
    paths: TrainingPaths,
    inputs: dict[str, object],
    outputs: StagedOutputs | None = None,
    *,
    loss: Loss = "sparse_categorical_crossentropy",
    metrics: Sequence[str | keras.metrics.Metric] | None = None,
    params_key: str = "",
    checkpoint: Checkpoint | None = None,
) -> FitResult:
    """:func:`fit`, then save the model folder and its DVCLive folder all-or-nothing.

    ``paths`` has ``model`` (the model folder: ``model.keras``, and ``summary.json`` with the run
    and the ``inputs`` record from :mod:`dllabs.models.inputs`, what predicting on new data needs),
    ``plots`` (DVCLive folder) and, where the stage writes one, ``validation`` (its
    :func:`validation_metrics` file). Pass ``outputs`` to write within a stage's own transaction
    (when it saves more files that must succeed or fail together).
    """
    with nullcontext(outputs) if outputs is not None else staged_outputs() as out:
        curves = Curves.to(out.dir(paths.plots))
        options = {"loss": loss, "metrics": metrics, "params_key": params_key}
        result = fit(model, train, val, training, device, curves, checkpoint=checkpoint, **options)
        folder = out.dir(paths.model)
        model.save(folder / MODEL_FILE)
        summary = {**result.to_json(), "inputs": inputs, "platform": platform_record()}
        save_json(folder / SUMMARY_FILE, summary)
        validation = getattr(paths, "validation", None)
        if validation is not None:
            save_json(out.file(validation), validation_metrics(result, len(val_labels(val))))
    return result


def val_labels(val: Batches) -> np.ndarray:
    """The validation labels behind ``fit``'s ``val`` (arrays or a dataset)."""
    return val.y if hasattr(val, "y") else val[1]


TRAINING_PATHS = {
    "images": "processed images (folder of .npy arrays)",
    "model": "output model folder (model.keras, summary.json)",
    "plots": "output DVCLive folder",
    "validation": "output validation metrics of the saved model (.json)",
}
