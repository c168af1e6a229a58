"""Where a stage trains: seeding, the device, data parallelism over devices and processes.

:func:`setup_run` seeds everything (``keras.utils.set_random_seed`` and each backend's
determinism switches), picks the device (``base.device``: a GPU when the backend sees one, its
memory taken as needed so queued experiments can share it), spreads training over
``base.devices`` (data parallel) and over the processes of a multi-process run
(:mod:`dllabs.training.cluster`), and turns on mixed precision where it pays off. It returns a
:class:`RunDevice`, which every later call takes as an argument: nothing about the run is kept in
a module.

Backend-specific calls (TensorFlow, JAX, PyTorch) live here and only here, behind a backend
check; :mod:`dllabs.training.backend` chooses the backend before Keras is imported.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import keras
import numpy as np

from dllabs.errors import ParamsError
from dllabs.params import Base
from dllabs.training import cluster

MIN_MIXED_PRECISION_CAPABILITY = (7, 0)


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
    processes: int = 1  # processes training together (dllabs.training.cluster)
    process_index: int = 0
    seed: int = 0  # base.seed: fit draws each epoch's order of array inputs from it

    @property
    def predict_replicas(self) -> int:
        """The devices each prediction batch is split over: JAX splits it over every replica
        (so it must divide evenly); the other backends predict on one device."""
        return self.replicas if self.backend == "jax" else 1

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


def setup_run(base: Base, parallel: bool = True, multi_process: bool = False) -> RunDevice:
    """Seed, choose the device and precision; call before building any model.

    Determinism per backend: TensorFlow's op determinism; on JAX, XLA's deterministic GPU ops
    (set before JAX starts, :mod:`dllabs.training.backend`; its CPU kernels are deterministic); on
    PyTorch, deterministic algorithms where they exist (a warning, not an error, where they do not).
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
    device = replace(device, seed=base.seed)
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
    if joined is not None:  # JAX (dllabs.training.cluster refuses other backends)
        import jax

        devices = [
            d
            for p in range(joined.processes)
            for d in [
                d for d in jax.devices() if d.process_index == p and d.platform == device.kind
            ][:count]
        ]
        # auto_shard_dataset=False: the batches fit gives each process are already its share.
        keras.distribution.set_distribution(
            keras.distribution.DataParallel(devices=devices, auto_shard_dataset=False)
        )
        per_process = f" x{count}" if count > 1 else ""
        description = f"{device.description}{per_process} on {joined.processes} processes"
        return replace(
            device,
            replicas=len(devices),
            processes=joined.processes,
            process_index=joined.index,
            description=description,
        )
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
