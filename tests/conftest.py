"""Fixtures and pytest's hooks: the repository's default params, a scratch folder to run stages
in, the reproduced baseline, the tiers' order and each worker's share of the cores. The helpers
the tests import are in ``tests/helpers/``."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers.baseline import baseline_folder, build_baseline, needs_baseline
from tests.helpers.repo import REPO
from tests.helpers.stages import set_key

# The native thread pools' sizes, as TensorFlow, OpenMP and OpenBLAS read them.
THREAD_VARIABLES = (
    "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS",
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
)


def share_the_cores(env: MutableMapping[str, str] = os.environ, cores: int | None = None) -> None:
    """Under pytest-xdist, each worker's native thread pools get its share of the cores, as
    scikit-learn's test suite does: with a pool per core in every worker (and in every process a
    test starts, which inherits these variables), TensorFlow's and OpenMP's threads spin-wait
    against each other's. On 2 cores `make test` took 570 to 622 s of CPU with it against 607 to
    632 s without (its wall time, 302 to 351 s against 331 to 346 s, moves with the machine's
    noise; measured before the registry issue, on the session machine of that time).
    Tests compare runs made under the same settings, so no expected value depends on it; a
    variable the user set is kept. ``env`` and ``cores`` are this process's unless given."""
    workers = int(env.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        if cores is None:
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
            cores = cores or os.cpu_count() or 1
        threads = str(max(1, cores // workers))
        for name in THREAD_VARIABLES:
            env.setdefault(name, threads)


share_the_cores()  # before any test module imports TensorFlow
# What dvc.yaml's stage commands and `dl-labs predict` set. Without it, importing TensorFlow here
# sets 1 (its own default) in this process's environment, and every command a test starts would
# inherit it and print TensorFlow's error-level start-up records, as a user who asked for them.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test is slow (or long) because it is marked so: one that needs the reproduced pipeline
    (a `dvc repro` of its own, then DVC commands in new processes) and is marked neither stops
    the collection, naming it. The tests that need the pipeline run last, once
    :func:`baseline_in_background` has built it (the sort is stable: each group keeps its files'
    order, the same on every worker)."""
    unmarked = [
        item.nodeid
        for item in items
        if needs_baseline(item)
        and not (item.get_closest_marker("slow") or item.get_closest_marker("long"))
    ]
    if unmarked:
        raise pytest.UsageError(
            "these tests need the reproduced pipeline but are marked neither slow nor long: "
            + ", ".join(unmarked)
        )
    items.sort(key=needs_baseline)


@pytest.fixture(scope="session")
def default_params() -> dict[str, Any]:
    """params.yaml as committed (the offline defaults)."""
    return yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))


@pytest.fixture
def workdir(tmp_path: Path, default_params: dict[str, Any], monkeypatch: pytest.MonkeyPatch):
    """A scratch folder with the default params.yaml, made the current directory.

    Returns a function ``write(**overrides)`` that rewrites params.yaml with dotted-key
    overrides (``write(**{"data.images": "mnist"})``) and returns the folder.
    """
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DL_LABS_CACHE", str(tmp_path / ".cache"))
    monkeypatch.delenv("DL_LABS_MIRROR", raising=False)

    def write(**overrides: Any) -> Path:
        params = copy.deepcopy(default_params)
        for key, value in overrides.items():
            set_key(params, key, value)
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
        return tmp_path

    write()
    return write


@pytest.fixture(scope="session", autouse=True)
def baseline_in_background(request: pytest.FixtureRequest, tmp_path_factory):
    """When a selected test needs the reproduced pipeline, start building it at once, in a process
    of its own, while the workers run the tests that need none of it (those that need it run
    last, :func:`pytest_collection_modifyitems`). Without it a worker would wait idle for the
    build (about 90 s of a 2-core run); with it, no core does. One worker starts it; each waits
    for it at the end, so that no build outlives the run (Ctrl-C stops it with the workers)."""
    if not any(needs_baseline(item) for item in request.session.items):
        yield
        return
    shared = baseline_folder(tmp_path_factory)
    try:
        (shared / "reproduced-baseline.started").open("x").close()
    except FileExistsError:  # another worker started it
        yield
        return
    code = "import sys; from pathlib import Path; "
    code += "from tests.helpers.baseline import build_baseline; build_baseline(Path(sys.argv[1]))"
    with (shared / "reproduced-baseline.log").open("w") as log:
        builder = subprocess.Popen(
            [sys.executable, "-c", code, str(shared)],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    yield
    builder.wait()


@pytest.fixture(scope="session")
def reproduced_baseline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repository's tracked files with quick params, in a new git repository, after one
    `dvc repro`, committed. The DVC integration tests each start from a copy of it, so the
    pipeline is reproduced once per test run, by :func:`baseline_in_background` (or, should that
    build fail, here, where its error is then reported).
    """
    return build_baseline(baseline_folder(tmp_path_factory))
