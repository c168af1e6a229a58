"""The one fit helper every Keras stage uses, and saving what it trained.

:func:`fit` compiles and trains a model with early stopping (best weights restored), an optional
ReduceLROnPlateau, a per-epoch timer and DVCLive curves (one ``Live`` per model, ``dvcyaml=False``
so ``dvc.yaml`` stays hand-written). Given a :class:`~dllabs.training.resume.Checkpoint` it keeps
the run's state at every epoch's end, and a killed run continues where it stopped.
:func:`fit_and_save` writes the model folder and its curves all-or-nothing
(:func:`dllabs.outputs.staged_outputs`).
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

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

# What fit trains on: (x, y) arrays, or a dataset that batches and orders them itself.
Batches = tuple[np.ndarray, np.ndarray] | keras.utils.PyDataset


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


def fit(
    model: keras.Model,
    train: Batches,
    val: Batches,
    training: Training,
    device: RunDevice,
    live_dir: str | Path | Any | None,
    loss: str | keras.losses.Loss = "sparse_categorical_crossentropy",
    metrics: list[Any] | None = None,
    extra_callbacks: list[keras.callbacks.Callback] | None = None,
    verbose: int = 2,
    initial_epoch: int = 0,
    live_prefix: str = "",
    params_key: str = "",
    checkpoint: Checkpoint | None = None,
) -> FitResult:
    """Compile and train ``model``; validation loss drives early stopping and LR reduction.

    ``live_dir`` is a DVCLive folder (one run per model), or an open ``dvclive.Live`` that several
    training phases share: each phase then logs under ``live_prefix`` and steps run on from the
    previous phase (pass ``initial_epoch``); the caller ends the run. A diverging run raises
    :class:`TrainingDiverged` naming ``params_key`` (the params section of ``training``).
    ``train`` and ``val`` are ``(x, y)`` arrays or datasets
    (:class:`~dllabs.data.datasets.ImageBatches`) that fix their own batches and order; training
    arrays are batched by one, its epoch order drawn from ``device.seed`` (``base.seed``, from
    :func:`setup_run`) and the epoch.
    With a ``checkpoint`` (from ``dllabs.training.resume.resumable``), the state is saved at every
    epoch's end, and a checkpoint left by a killed run of the same training is resumed: its epochs'
    logs go to DVCLive again and training continues after its last epoch.
    """
    model.compile(
        optimizer=make_optimizer(training),
        loss=loss,
        metrics=["accuracy"] if metrics is None else metrics,
    )
    timer = EpochTimer()
    chance = chance_loss(model, loss)
    key = f"{params_key}." if params_key else ""
    advice = f"lower {key}learning_rate (now {training.learning_rate:g})"
    guard = DivergenceGuard(chance * DIVERGENCE_FACTOR if chance else None, advice)
    callbacks: list[keras.callbacks.Callback] = [timer, guard, *(extra_callbacks or [])]
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
    if device.process_index == 0:  # a trial of `dl-labs tune` reports each epoch to its study
        callbacks += trial_callbacks()
    # DVCLive also writes signal files at the repository's root: process 0's alone (see cluster).
    logs_curves = live_dir is not None and device.process_index == 0
    live = dvclive_callback(live_dir, live_prefix) if logs_curves else None
    if live is not None:
        callbacks.append(live)
    if not isinstance(train, keras.utils.PyDataset):
        # Keras's own shuffle=True repeats one seeded permutation every epoch (measured); these
        # batches draw epoch e's order from (base.seed, e), as the image stages' do.
        train = ImageBatches(*train, training.batch_size, shuffle=True, seed=device.seed)
    if device.replicas > 1 and device.backend == "jax":  # JAX splits each batch evenly
        if not isinstance(val, keras.utils.PyDataset):
            val = ImageBatches(*val, training.batch_size)
        train, val = train.split_over(device.replicas), val.split_over(device.replicas)
    if device.processes > 1:
        # Each process feeds its share of every global batch. A killed multi-process run starts
        # over: its checkpoint would be on process 0's disk only.
        train, val = train.share(*device.share), val.share(*device.share)
        checkpoint = None
        verbose = verbose if device.process_index == 0 else 0
    end_epoch, first_epoch, earlier_logs = initial_epoch + training.epochs, initial_epoch, []
    if checkpoint is not None:
        identity = {"training": training.model_dump(mode="json"), "initial_epoch": initial_epoch,
                    "loss": loss, "metrics": metrics, "device": asdict(device),
                    "batches": [describe_batches(b) for b in (train, val)]}  # fmt: skip
        keeper = KeepCheckpoint(
            checkpoint, fingerprint(model, batch_arrays(train, val), identity), callbacks
        )
        callbacks.append(keeper)  # last: it saves and restores the other callbacks' state
        first_epoch = keeper.restore(model, initial_epoch, end_epoch)
        earlier_logs = list(keeper.logs)
        for epoch, logs in enumerate(earlier_logs if live is not None else [], initial_epoch):
            live.on_epoch_end(epoch, dict(logs))  # the curves before the interruption
    if hasattr(train, "from_epoch"):
        train = train.from_epoch(first_epoch)  # a resumed run's batches are those it would have had
    try:
        history = model.fit(
            train,
            validation_data=val,
            validation_batch_size=None if hasattr(val, "num_batches") else training.batch_size,
            initial_epoch=first_epoch,
            epochs=end_epoch,
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
    epochs = [dict(logs) for logs in earlier_logs] + [
        {name: values[i] for name, values in history.history.items()}
        for i in range(len(history.history.get("val_loss", [])))
    ]
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
    return {**figures, "best_epoch": result.best_epoch, "epochs_trained": result.epochs_trained,
            "n": rows}  # fmt: skip


def fit_and_save(
    model: keras.Model,
    train: Batches,
    val: Batches,
    training: Training,
    device: RunDevice,
    paths: Any,
    inputs: dict,
    outputs: StagedOutputs | None = None,
    **fit_options: Any,
) -> FitResult:
    """:func:`fit`, then save the model folder and its DVCLive folder all-or-nothing.

    ``paths`` has ``model`` (the model folder: ``model.keras``, and ``summary.json`` with the run
    and the ``inputs`` record from :mod:`dllabs.models.inputs`, what predicting on new data needs),
    ``plots`` (DVCLive folder) and, where the stage writes one, ``validation`` (its
    :func:`validation_metrics` file), as parsed from the stage's command line. Pass ``outputs`` to
    write within a stage's own transaction (when it saves more files that must succeed or fail
    together).
    """
    with nullcontext(outputs) if outputs is not None else staged_outputs() as out:
        result = fit(model, train, val, training, device, out.dir(paths.plots), **fit_options)
        folder = out.dir(paths.model)
        model.save(folder / MODEL_FILE)
        summary = {**result.to_json(), "inputs": inputs, "platform": platform_record()}
        save_json(folder / SUMMARY_FILE, summary)
        if getattr(paths, "validation", None) is not None:
            save_json(out.file(paths.validation), validation_metrics(result, len(val_labels(val))))
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
