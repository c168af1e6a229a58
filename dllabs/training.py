"""The one fit helper every Keras stage uses, and the run set-up it depends on.

:func:`setup_run` seeds everything (``keras.utils.set_random_seed`` and each backend's
determinism switches), picks the device (``base.device``: a GPU when the backend sees one, its
memory taken as needed so queued experiments can share it), spreads training over
``base.devices`` (data parallel) and over the processes of a multi-process run
(:mod:`dllabs.cluster`), and turns on mixed precision where it pays off.
:func:`fit` compiles and trains a model with early stopping (best weights restored), an optional
ReduceLROnPlateau, a per-epoch timer and DVCLive curves (one ``Live`` per model, ``dvcyaml=False``
so ``dvc.yaml`` stays hand-written). Given a ``dllabs.resume.Checkpoint`` it keeps the run's state
at every epoch's end, and a killed run continues where it stopped. Stages save the result
atomically through ``dllabs.outputs.staged_outputs``.

Backend-specific calls (TensorFlow, JAX, PyTorch) live here and only here, behind a backend
check; :mod:`dllabs.backend` chooses the backend before Keras is imported.
"""

from __future__ import annotations

import os
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import keras
import numpy as np

from dllabs import cluster
from dllabs.datasets import ImageBatches
from dllabs.errors import LabError, ParamsError
from dllabs.inputs import MODEL_FILE, SUMMARY_FILE
from dllabs.models import make_optimizer
from dllabs.outputs import StagedOutputs, save_json, staged_outputs
from dllabs.params import Base, Training
from dllabs.provenance import platform_record
from dllabs.resume import Checkpoint, KeepCheckpoint, fingerprint

MIN_MIXED_PRECISION_CAPABILITY = (7, 0)
_run_seed = 0  # base.seed, once setup_run has run: the epoch order of fit's array inputs
# What fit trains on: (x, y) arrays, or a dataset that batches and orders them itself.
Batches = tuple[np.ndarray, np.ndarray] | keras.utils.PyDataset


@dataclass(frozen=True)
class Accelerator:
    """A GPU as the Keras backend reports it."""

    name: str
    compute_capability: tuple[int, int] | None


@dataclass(frozen=True)
class RunDevice:
    """Where a stage trains, recorded in its outputs."""

    kind: str  # "cpu" or "gpu"
    description: str
    mixed_precision: bool
    backend: str
    replicas: int = 1  # devices training in data parallel (base.devices), over every process
    processes: int = 1  # processes training together (dllabs.cluster)
    process_index: int = 0

    @property
    def share(self) -> tuple[int, int]:
        """(this process, processes): which part of the data this process reads."""
        return self.process_index, self.processes


def sum_over_processes(values: np.ndarray) -> np.ndarray:
    """``values`` summed over the processes of a multi-process run (as is in one process)."""
    if cluster.current() is None:
        return values
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(values)).sum(axis=0)


def choose_device(requested: str, gpus: list[Accelerator], mixed_precision: str) -> RunDevice:
    """Pure device choice: ``auto`` prefers a GPU, ``gpu`` insists on one, ``cpu`` uses none."""
    backend = keras.backend.backend()
    if requested == "gpu" and not gpus:
        raise ParamsError(
            f"base.device is 'gpu' but {backend} sees no GPU on this machine; "
            "use 'auto' (GPU when present) or 'cpu'"
        )
    if requested == "cpu" or not gpus:
        return RunDevice("cpu", "CPU", False, backend)
    gpu = gpus[0]
    capability = gpu.compute_capability
    mixed = (
        mixed_precision == "auto"
        and capability is not None
        and tuple(capability) >= MIN_MIXED_PRECISION_CAPABILITY
    )
    cc = f", compute capability {capability[0]}.{capability[1]}" if capability else ""
    more = f" (+{len(gpus) - 1} more)" if len(gpus) > 1 else ""
    return RunDevice("gpu", f"{gpu.name}{cc}{more}", mixed, backend)


def visible_gpus() -> list[Accelerator]:
    """The GPUs the Keras backend can use, with their compute capability where it says."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        found = []
        for device in tf.config.list_physical_devices("GPU"):
            details = tf.config.experimental.get_device_details(device)
            name = details.get("device_name", device.name)
            found.append(Accelerator(name, details.get("compute_capability")))
        return found
    if backend == "jax":
        import jax

        return [
            Accelerator(d.device_kind, _capability(getattr(d, "compute_capability", None)))
            for d in jax.devices()
            if d.platform == "gpu"
        ]
    if backend == "torch":
        import torch

        return [
            Accelerator(torch.cuda.get_device_name(i), tuple(torch.cuda.get_device_capability(i)))
            for i in range(torch.cuda.device_count())
        ]
    return []


def _capability(value: Any) -> tuple[int, int] | None:
    """``"8.6"`` (JAX's spelling) as ``(8, 6)``."""
    try:
        major, minor = str(value).split(".")[:2]
        return int(major), int(minor)
    except ValueError:
        return None


def predict_evenly(model: keras.Model, x: np.ndarray, device: RunDevice) -> np.ndarray:
    """``model.predict`` on every row of ``x``, also where JAX's data parallelism needs each batch
    split evenly over the devices: the rows are padded to a multiple of the devices, predicted
    in batches of a multiple of them, and the padding's outputs dropped."""
    replicas = device.replicas if device.backend == "jax" else 1
    padding = -len(x) % replicas
    padded = np.concatenate([x, np.zeros((padding, *x.shape[1:]), x.dtype)]) if padding else x
    return model.predict(padded, batch_size=32 * replicas, verbose=0)[: len(x)]


def setup_run(base: Base, parallel: bool = True, multi_process: bool = False) -> RunDevice:
    """Seed, choose the device and precision; call before building any model.

    Determinism per backend: TensorFlow's op determinism; on JAX, XLA's deterministic GPU ops
    (set before JAX starts, :mod:`dllabs.backend`; its CPU kernels are deterministic); on PyTorch,
    deterministic algorithms where they exist (a warning, not an error, where they do not).
    ``parallel=False`` keeps to one device whatever ``base.devices`` says (evaluation: every test
    row must count, and JAX's data parallelism splits each batch evenly). A stage that can train
    on several processes says so with ``multi_process``; the others refuse to start on several.
    """
    joined = cluster.current()
    if joined is not None and not (multi_process and parallel):
        raise cluster.one_process_only(joined)
    device = choose_device(base.device, visible_gpus(), base.mixed_precision)
    if device.backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if device.kind == "cpu" and gpus:
            tf.config.set_visible_devices([], "GPU")
        for gpu in gpus if device.kind == "gpu" else []:
            tf.config.experimental.set_memory_growth(gpu, True)
        tf.config.experimental.enable_op_determinism()
    elif device.backend == "torch":
        import torch

        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    device = data_parallel(device, base.devices if parallel else 1)
    keras.utils.set_random_seed(base.seed)
    global _run_seed
    _run_seed = base.seed
    keras.mixed_precision.set_global_policy(
        "mixed_float16" if device.mixed_precision else "float32"
    )
    return device


def local_devices(backend: str, kind: str) -> list[Any]:
    """The devices of ``kind`` (``cpu``, ``gpu``) the backend can train on, in order: TensorFlow's
    logical devices (a CPU split into several is how tests simulate them), JAX's devices."""
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.config.list_logical_devices(kind.upper())
    if backend == "jax":
        import jax

        return [d for d in jax.local_devices() if d.platform == kind]
    import torch

    return [f"cuda:{i}" for i in range(torch.cuda.device_count())] if kind == "gpu" else ["cpu"]


def data_parallel(device: RunDevice, requested: int | str) -> RunDevice:
    """Train on ``requested`` devices (``all``: every one of the chosen kind) by data parallelism:
    TensorFlow's ``MirroredStrategy`` or JAX's ``keras.distribution.DataParallel``, set for the
    whole process. Each batch of ``batch_size`` is split across the devices (the batch size is the
    global batch), and their gradients are averaged every step. One device sets nothing.

    In a multi-process run ``requested`` counts each process's devices, and ``DataParallel``
    spans those of every process; each process feeds its own share of every batch (:func:`fit`).
    """
    available = local_devices(device.backend, device.kind)
    count = len(available) if requested == "all" else int(requested)
    if count > len(available):
        raise ParamsError(
            f"base.devices is {requested} but {device.backend} sees {len(available)} "
            f"{device.kind.upper()} device(s) here"
        )
    joined = cluster.current()
    if joined is not None:  # JAX (dllabs.cluster refuses other backends)
        import jax

        devices = [d for p in range(joined.processes)
                   for d in [d for d in jax.devices() if d.process_index == p
                             and d.platform == device.kind][:count]]  # fmt: skip
        # auto_shard_dataset=False: the batches fit gives each process are already its share.
        keras.distribution.set_distribution(
            keras.distribution.DataParallel(devices=devices, auto_shard_dataset=False)
        )
        per_process = f" x{count}" if count > 1 else ""
        description = f"{device.description}{per_process} on {joined.processes} processes"
        return replace(device, replicas=len(devices), processes=joined.processes,
                       process_index=joined.index, description=description)  # fmt: skip
    if device.backend == "tensorflow":
        import tensorflow as tf

        names = [d.name for d in available[:count]]
        tf.distribute.experimental_set_strategy(
            tf.distribute.MirroredStrategy(names) if count > 1 else None
        )
    elif device.backend == "jax":
        keras.distribution.set_distribution(
            keras.distribution.DataParallel(devices=available[:count]) if count > 1 else None
        )
    elif count > 1:
        raise ParamsError(
            f"base.devices is {requested}: data-parallel training here needs base.backend "
            "tensorflow or jax"
        )
    if count == 1:
        return device
    return replace(device, replicas=count, description=f"{device.description} x{count}")


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
    (:class:`~dllabs.datasets.ImageBatches`) that fix their own batches and order; training arrays
    are batched by one, its epoch order drawn from ``base.seed`` (as :func:`setup_run` set it) and
    the epoch.
    With a ``checkpoint`` (from ``dllabs.resume.resumable``), the state is saved at every epoch's
    end, and a checkpoint left by a killed run of the same training is resumed: its epochs' logs
    go to DVCLive again and training continues after its last epoch.
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
    # DVCLive also writes signal files at the repository's root: process 0's alone (see cluster).
    logs_curves = live_dir is not None and cluster.is_primary()
    live = dvclive_callback(live_dir, live_prefix) if logs_curves else None
    if live is not None:
        callbacks.append(live)
    if not isinstance(train, keras.utils.PyDataset):
        # Keras's own shuffle=True repeats one seeded permutation every epoch (measured); these
        # batches draw epoch e's order from (base.seed, e), as the image stages' do.
        train = ImageBatches(*train, training.batch_size, shuffle=True, seed=_run_seed)
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
    val_losses = [logs["val_loss"] for logs in earlier_logs] + history.history.get("val_loss", [])
    best = int(np.argmin(val_losses))
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
    )


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
    and the ``inputs`` record from :mod:`dllabs.inputs`, what predicting on new data needs) and
    ``plots`` (DVCLive folder), as parsed from the stage's command line. Pass ``outputs`` to write
    within a stage's own transaction (when it saves more files that must succeed or fail together).
    """
    with nullcontext(outputs) if outputs is not None else staged_outputs() as out:
        result = fit(model, train, val, training, device, out.dir(paths.plots), **fit_options)
        folder = out.dir(paths.model)
        model.save(folder / MODEL_FILE)
        summary = {**result.to_json(), "inputs": inputs, "platform": platform_record()}
        save_json(folder / SUMMARY_FILE, summary)
    return result


TRAINING_PATHS = {
    "images": "processed images (folder of .npy arrays)",
    "model": "output model folder (model.keras, summary.json)",
    "plots": "output DVCLive folder",
}
