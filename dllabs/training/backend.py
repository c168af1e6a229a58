"""Which Keras backend the stages run on: ``base.backend`` (tensorflow, jax or torch).

Keras reads its backend once, from ``KERAS_BACKEND``, when it is first imported, and every Keras
stage imports it with its first ``dllabs`` import. So each Keras stage calls :func:`select_backend`
first (:mod:`dllabs.training.startup`), before its imports: it reads ``base.backend`` from
``params.yaml`` (as :mod:`dllabs.params` reads it; no Keras), checks the backend's package is
installed, and sets the variable, with the settings each backend needs before it starts:
deterministic GPU kernels, no GPU at all where ``base.device`` is ``cpu``, and on x86-64 XLA's CPU
code capped at AVX2, as the stage commands cap oneDNN's (``ONEDNN_MAX_CPU_ISA``), so an AVX-512
machine runs the same instructions as an AVX2 one. ``params.yaml`` decides, not a ``KERAS_BACKEND``
already in the environment: DVC tracks the param, so a run is always reproduced on the backend it
recorded.

:func:`quiet_tensorflow_start` keeps TensorFlow's start-up notices off a stage's stderr, so that a
failing stage prints its one error line alone.

Imports no Keras.
"""

from __future__ import annotations

import atexit
import importlib.abc
import importlib.util
import os
import platform
import subprocess
import sys
from contextlib import suppress
from pathlib import Path
from types import ModuleType

from dllabs.errors import ParamsError
from dllabs.params import read_yaml

BACKENDS = ("tensorflow", "jax", "torch")
DEFAULT_BACKEND = "tensorflow"
# What installs each backend's package (pyproject.toml's extras; tensorflow is a dependency).
INSTALL = {"jax": 'make install EXTRAS="dev jax"', "torch": 'make install EXTRAS="dev torch"'}


def configured(params_file: str | Path = "params.yaml") -> tuple[str, str]:
    """``(base.backend, base.device)`` from ``params_file``, read as the stages read it; the
    defaults where it is missing or refused (the stage's own params check then reports the file,
    in one line)."""
    try:
        params = read_yaml(params_file)
    except ParamsError:
        return DEFAULT_BACKEND, "auto"
    base = params.get("base") if isinstance(params, dict) else None
    if not isinstance(base, dict):
        return DEFAULT_BACKEND, "auto"
    return base.get("backend", DEFAULT_BACKEND), base.get("device", "auto")


def select_backend(params_file: str | Path = "params.yaml") -> str:
    """Set ``KERAS_BACKEND`` (and the backend's start-up settings) from ``params_file``.

    Raises :class:`ParamsError` for an unknown backend, one whose package is missing, or when
    Keras was already imported on another backend in this process.
    """
    backend, device = configured(params_file)
    if backend not in BACKENDS:
        raise ParamsError(f"base.backend is {backend!r}; expected one of {', '.join(BACKENDS)}")
    if importlib.util.find_spec(backend) is None:
        raise ParamsError(
            f"base.backend is {backend!r} but the {backend} package is not installed "
            f"for {sys.executable} ({INSTALL.get(backend, 'make install')}, or put the project's "
            ".venv/bin first on PATH, as make does)"
        )
    keras = sys.modules.get("keras")
    if keras is not None and keras.backend.backend() != backend:
        raise ParamsError(
            f"base.backend is {backend!r} but Keras is already running on "
            f"{keras.backend.backend()} in this process"
        )
    os.environ["KERAS_BACKEND"] = backend
    if backend == "jax":
        # XLA picks GPU kernels by speed unless told to keep to deterministic ones, and compiles
        # CPU code for the host's widest vectors unless capped (a flag already set wins).
        flags = os.environ.get("XLA_FLAGS", "").split()
        if not any(flag.startswith("--xla_gpu_deterministic_ops") for flag in flags):
            flags.append("--xla_gpu_deterministic_ops=true")
        x86 = platform.machine() in ("x86_64", "AMD64")
        if x86 and not any(flag.startswith("--xla_cpu_max_isa") for flag in flags):
            flags.append("--xla_cpu_max_isa=AVX2")
        os.environ["XLA_FLAGS"] = " ".join(flags)
        # Allocate GPU memory as needed, as TensorFlow's memory growth does here, so that queued
        # experiments can share a GPU (JAX takes 75% of it up front by default).
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
        if device == "cpu":
            os.environ["JAX_PLATFORMS"] = "cpu"
    elif backend == "torch":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
        if device == "cpu":
            os.environ["CUDA_VISIBLE_DEVICES"] = ""
    return backend


# TensorFlow 2.21's libraries log through absl before anything calls absl::InitializeLog, and such
# records reach stderr whatever TF_CPP_MIN_LOG_LEVEL says: the oneDNN and CUDA-driver notices,
# each twice, as TensorFlow is imported, and "failed call to cuInit" when it first looks for a GPU
# on a machine without one (on GPU machines users report the CUDA factories' registration errors
# too; no GPU here to see them). TensorFlow's own records (the
# CPU-feature notice) do honour it.
_DEFAULT_TF_LOG_LEVEL = "3"  # as dvc.yaml's stage commands and `dl-labs predict` set it
# The filter runs as a process of its own so that what TensorFlow printed before an abort (absl's
# fatal records end the process) still reaches the terminal. It takes each line as it comes.
_STDERR_FILTER = r"""
import re, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)  # drain until the stage closes the pipe
level = int(sys.argv[1])
# An absl record: severity, MMDD, time (its seconds count from 1970 before absl is set up),
# thread, file:line.
record = re.compile(rb"([IWEF])\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [^\]\s]+:\d+\] ")
banner = b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
out = sys.stdout.buffer
for line in sys.stdin.buffer:
    found = record.match(line)
    if found and "IWEF".index(found[1].decode()) < level or level and line.rstrip() == banner:
        continue
    out.write(line)
    out.flush()
"""


def quiet_tensorflow_start() -> None:
    """Drop, from this process's stderr once TensorFlow is imported, the records its libraries log
    below ``TF_CPP_MIN_LOG_LEVEL`` (3 where unset: fatal records only), which they print whatever
    it says. Every other line passes: Python's warnings and tracebacks, fatal records,
    anything that is not an absl record.

    Installs an import hook: TensorFlow is imported when a stage first needs it, if ever."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", _DEFAULT_TF_LOG_LEVEL)
    if "tensorflow" in sys.modules or any(isinstance(f, _QuietTensorFlow) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _QuietTensorFlow())


class _QuietTensorFlow(importlib.abc.MetaPathFinder):
    """Finds ``tensorflow`` as the other finders do, with a loader that filters stderr from its
    import on. It stays in place: ``importlib.util.find_spec`` (:func:`select_backend`'s check)
    finds without importing."""

    def __init__(self) -> None:
        self._searching = False

    def find_spec(self, name: str, path: object = None, target: object = None) -> object:
        if name != "tensorflow" or self._searching:
            return None
        self._searching = True  # the search below asks every finder, this one included
        try:
            spec = importlib.util.find_spec(name)
        finally:
            self._searching = False
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def create_module(self, spec: object) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        module.__loader__ = module.__spec__.loader = self._loader  # what TensorFlow sees
        _filter_stderr(_tf_log_level())
        self._loader.exec_module(module)


def _tf_log_level() -> int:
    """``TF_CPP_MIN_LOG_LEVEL`` as TensorFlow reads it: 0 to 3, 0 for what is not a number."""
    text = os.environ.get("TF_CPP_MIN_LOG_LEVEL", "").strip()
    return min(int(text), 3) if text.isascii() and text.isdigit() else 0


def _filter_stderr(level: int) -> None:
    """File descriptor 2, where C++ libraries write, through :data:`_STDERR_FILTER` from now until
    the process exits (the libraries log again when they first look for devices, after the
    import: "failed call to cuInit" on a machine without a GPU); unfiltered if the filter cannot
    start. At exit the descriptor is restored and the filter waited for, so that its last lines
    are written before the process's status is."""
    sys.stderr.flush()
    read, write = os.pipe()
    command = [sys.executable, "-I", "-S", "-c", _STDERR_FILTER, str(level)]
    try:
        child = subprocess.Popen(command, stdin=read, stdout=2)
    except OSError:
        os.close(read)
        os.close(write)
        return
    os.close(read)
    saved = os.dup(2)
    os.dup2(write, 2)
    os.close(write)

    def restore() -> None:
        with suppress(ValueError, OSError):  # sys.stderr may be closed by now
            sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        # A process this one started and that still holds the pipe keeps the filter going; it
        # ends with that one.
        with suppress(subprocess.TimeoutExpired):
            child.wait(timeout=30)

    atexit.register(restore)
