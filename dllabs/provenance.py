"""Where a result was computed: CPU, instruction set, OS, Python, backend and library versions.

Floating-point results depend on more than seeds. oneDNN (TensorFlow) and OpenBLAS (gensim's
BLAS, through SciPy) pick kernels by the CPU's instruction set and cache sizes, so the same seed
gives slightly different weights on an AVX-512 machine than on an AVX2 one, and another library
version can change any number. Every training stage records :func:`platform_record` in its run
summary and ``evaluate`` copies it into the metrics under ``run.platform``. The drift check
(:mod:`dllabs.tooling.reproducibility`) compares the committed record with this machine's
:func:`fingerprint`: the same fingerprint means the numbers must reproduce exactly; another one
means they may move within their intervals.

Reading it costs no TensorFlow import: versions come from package metadata.
"""

from __future__ import annotations

import functools
import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("tensorflow", "keras", "numpy", "scipy", "gensim", "scikit-learn")
# Environment variables that change which kernels run (docs/guides/reproducibility.md).
KERNEL_VARIABLES = (
    "TF_ENABLE_ONEDNN_OPTS",
    "ONEDNN_MAX_CPU_ISA",
    "OPENBLAS_CORETYPE",
    "PYTHONHASHSEED",
    "OMP_NUM_THREADS",
    "KERAS_BACKEND",
)
# What else a run on another Keras backend depends on: its packages and its start-up settings
# (dllabs/training/backend.py). Recorded only for that backend, so TensorFlow's records stay as they
# were.
BACKEND_PACKAGES = {"jax": ("jax", "jaxlib"), "torch": ("torch",)}
BACKEND_VARIABLES = {"jax": ("XLA_FLAGS", "JAX_PLATFORMS"), "torch": ("CUBLAS_WORKSPACE_CONFIG",)}
# x86-64 micro-architecture levels (the psABI's), by the /proc/cpuinfo flags each one needs.
X86_LEVELS = (
    ("x86-64-v4", {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"}),
    ("x86-64-v3", {"avx2", "bmi1", "bmi2", "fma", "f16c", "movbe", "abm", "xsave"}),
    ("x86-64-v2", {"sse4_2", "sse4_1", "ssse3", "popcnt", "cx16"}),
)
# Extensions beyond the level that oneDNN uses when present.
NOTABLE_FLAGS = ("avx512_vnni", "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_tile", "amx_bf16")
# Fields of the record that decide whether two runs can be bit-identical (the kernel release and
# the host name cannot change a float; everything here can).
FINGERPRINT_FIELDS = ("cpu", "machine", "system", "python", "backend", "versions", "kernel_env")


def isa_level(flags: set[str], machine: str) -> str:
    """The x86-64 level the flags reach (``x86-64-v1`` .. ``v4``), or the machine name elsewhere."""
    if machine not in ("x86_64", "AMD64"):
        return machine
    for level, needed in X86_LEVELS:
        if needed <= flags:
            return level
    return "x86-64-v1"


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields in ``/proc/cpuinfo`` (Linux); empty elsewhere."""
    path = Path("/proc/cpuinfo")
    if not path.is_file():
        return {}
    fields: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            if fields:
                break
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def _caches() -> str:
    """Cache sizes of CPU 0 by level (``L1d 32K, L2 1024K, L3 32768K``): oneDNN blocks by them."""
    root = Path("/sys/devices/system/cpu/cpu0/cache")
    sizes = []
    for index in sorted(root.glob("index*")):
        try:
            level = (index / "level").read_text().strip()
            kind = (index / "type").read_text().strip()
            size = (index / "size").read_text().strip()
        except OSError:
            continue
        suffix = {"Data": "d", "Instruction": "i"}.get(kind, "")
        sizes.append(f"L{level}{suffix} {size}")
    return ", ".join(sizes)


def cpu_record() -> dict[str, Any]:
    """The processor: model, vendor, family/model/stepping, ISA level, notable flags, caches."""
    info = _cpuinfo()
    machine = platform.machine()
    flags = set(info.get("flags", info.get("Features", "")).split())
    return {
        "model": info.get("model name") or platform.processor() or "unknown",
        "vendor": info.get("vendor_id", info.get("CPU implementer", "unknown")),
        "family_model_stepping": "/".join(
            info.get(k, "?") for k in ("cpu family", "model", "stepping")
        ),
        "isa": isa_level(flags, machine),
        "extensions": " ".join(f for f in NOTABLE_FLAGS if f in flags),
        "caches": _caches(),
        "logical_cpus": os.cpu_count() or 0,
    }


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def keras_backend() -> str:
    """Keras's backend, without importing Keras when it is not loaded yet."""
    if "keras" in sys.modules:
        return str(sys.modules["keras"].backend.backend())
    return os.environ.get("KERAS_BACKEND", "tensorflow")


@functools.cache
def platform_record() -> dict[str, Any]:
    """Everything about this machine and environment that can change a computed number."""
    backend = keras_backend()
    packages = PACKAGES + BACKEND_PACKAGES.get(backend, ())
    variables = KERNEL_VARIABLES + BACKEND_VARIABLES.get(backend, ())
    return {
        "cpu": cpu_record(),
        "machine": platform.machine(),
        "system": platform.system(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "backend": backend,
        "versions": {package: _version(package) for package in packages},
        "kernel_env": {name: os.environ.get(name, "") for name in variables},
    }


def fingerprint(record: dict[str, Any]) -> dict[str, Any]:
    """The part of a platform record that must match for results to be bit-identical."""
    return {field: record.get(field) for field in FINGERPRINT_FIELDS}


def describe(record: dict[str, Any]) -> str:
    """One line: ``AMD EPYC (x86-64-v3), Linux, Python 3.11.7, tensorflow 2.21.0``."""
    cpu = record.get("cpu", {})
    versions = record.get("versions", {})
    return (
        f"{cpu.get('model', '?')} ({cpu.get('isa', '?')}), {record.get('system', '?')}, "
        f"Python {record.get('python', '?')}, {record.get('backend', '?')} "
        f"{versions.get(record.get('backend', ''), '')}".rstrip()
    )
