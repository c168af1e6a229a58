"""Provenance: the platform record behind every metric, and what counts as the same platform."""

from __future__ import annotations

import json
import subprocess
import sys

from dllabs.provenance import describe, fingerprint, isa_level, platform_record

V3 = {
    "sse4_2",
    "sse4_1",
    "ssse3",
    "popcnt",
    "cx16",
    "avx2",
    "bmi1",
    "bmi2",
    "fma",
    "f16c",
    "movbe",
    "abm",
    "xsave",
}
V4 = V3 | {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"}


def test_isa_levels_follow_the_x86_64_psabi() -> None:
    assert isa_level(V4, "x86_64") == "x86-64-v4"
    assert isa_level(V3, "x86_64") == "x86-64-v3"
    assert isa_level(V3 - {"fma"}, "x86_64") == "x86-64-v2"
    assert isa_level({"sse2"}, "x86_64") == "x86-64-v1"
    assert isa_level(V4, "aarch64") == "aarch64"  # ARM machines are their own platform


def test_the_record_names_cpu_os_python_backend_and_versions() -> None:
    record = platform_record()
    assert {"model", "isa", "caches", "logical_cpus"} <= set(record["cpu"])
    assert record["python"].count(".") == 2 and record["system"]
    assert set(record["versions"]) == {
        "tensorflow",
        "keras",
        "numpy",
        "scipy",
        "gensim",
        "scikit-learn",
    }
    assert record["versions"]["numpy"][0].isdigit()
    assert "PYTHONHASHSEED" in record["kernel_env"]
    assert record["cpu"]["isa"] in describe(record)


def test_the_fingerprint_ignores_what_cannot_change_a_number() -> None:
    record = platform_record()
    rebooted = {**record, "os": record["os"] + "-another-kernel-release"}
    assert fingerprint(rebooted) == fingerprint(record)
    upgraded = {**record, "versions": {**record["versions"], "numpy": "0.0.1"}}
    assert fingerprint(upgraded) != fingerprint(record)
    other_isa = "x86-64-v3" if record["cpu"]["isa"] == "x86-64-v4" else "x86-64-v4"
    another_cpu = {**record, "cpu": {**record["cpu"], "isa": other_isa}}
    assert fingerprint(another_cpu) != fingerprint(record)


def test_reading_the_record_imports_no_tensorflow() -> None:
    code = (
        "import sys; from dllabs.provenance import platform_record; platform_record(); "
        "print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_a_run_on_another_backend_records_its_packages_and_start_up_settings() -> None:
    """jax's and jaxlib's versions and XLA_FLAGS join the record (and its fingerprint) for a run
    on JAX; a TensorFlow run's record keeps the keys above."""
    code = (
        "import json; from dllabs.provenance import fingerprint, platform_record; "
        "print(json.dumps(fingerprint(platform_record())))"
    )
    env = {"KERAS_BACKEND": "jax", "XLA_FLAGS": "--xla_cpu_max_isa=AVX2", "PATH": ""}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    record = json.loads(out.stdout)
    assert record["backend"] == "jax"
    assert {"jax", "jaxlib", "tensorflow", "keras"} <= set(record["versions"])
    assert record["kernel_env"]["XLA_FLAGS"] == "--xla_cpu_max_isa=AVX2"
    assert "XLA_FLAGS" not in platform_record()["kernel_env"]  # this process runs TensorFlow
