"""Which Keras backend the stages run on: ``base.backend`` (tensorflow, jax or torch).

Keras reads its backend once, from ``KERAS_BACKEND``, when it is first imported, and every Keras
stage imports it with its first ``dllabs`` import. So the ``stages`` package calls
:func:`select_backend` before any stage module loads: it reads ``base.backend`` from
``params.yaml`` (as :mod:`dllabs.params` reads it; no Keras), checks the backend's package is
installed, and sets the variable, with the settings each backend needs before it starts:
deterministic GPU kernels, no GPU at all where ``base.device`` is ``cpu``, and on x86-64 XLA's
CPU code capped at AVX2, as the stage commands cap oneDNN's (``ONEDNN_MAX_CPU_ISA``), so an
AVX-512 machine runs the same instructions as an AVX2 one. ``params.yaml`` decides, not a
``KERAS_BACKEND`` already in the environment: DVC tracks the param, so a run is always reproduced
on the backend it recorded.

Imports no Keras.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import sys
from pathlib import Path

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
