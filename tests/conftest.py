"""Shared fixtures: the repository's default params, and a scratch folder to run stages in."""

from __future__ import annotations

import contextlib
import copy
import fcntl
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import zlib
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from PIL import Image

from dllabs.labs.registry import LABS

REPO = Path(__file__).resolve().parents[1]
DVC = [sys.executable, "-m", "dvc"]
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


# A corpus small enough for tests, in which words share contexts (king and queen, man and woman).
TINY_CORPUS = [
    ["the", "king", "rules", "the", "land"],
    ["the", "queen", "rules", "the", "land"],
    ["a", "man", "walks", "the", "dog"],
    ["a", "woman", "walks", "the", "dog"],
] * 25


DOWNLOAD_ARGS = [
    "--images",
    "data/raw/images",
    "--anomaly",
    "data/raw/anomaly",
    "--text",
    "data/raw/text",
    "--text-eval",
    "data/raw/text_eval",
]
PREPROCESS_ARGS = [
    "--raw-images",
    "data/raw/images",
    "--raw-anomaly",
    "data/raw/anomaly",
    "--images",
    "data/processed/images",
    "--images-summary",
    "data/processed/images.json",
    "--series",
    "data/processed/series.npz",
    "--series-summary",
    "data/processed/series.json",
]
TOKENIZE_ARGS = [
    "--raw-text",
    "data/raw/text",
    "--corpus",
    "data/processed/corpus.txt",
    "--summary",
    "data/processed/corpus.json",
]


def fails(main, args: list[str], capsys: pytest.CaptureFixture) -> str:
    """Run a stage expecting a clean failure: exit code 1, no traceback, one error line last."""
    with pytest.raises(SystemExit) as caught:
        main(args)
    assert caught.value.code == 1
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    last = err.splitlines()[-1]
    assert ": error: " in last, err
    return last


def outcome(main, args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    """Run a command's ``main(args)``: its exit status, standard output and standard error."""
    try:
        main(args)
        status = 0
    except SystemExit as exc:
        status = int(exc.code or 0)
    out, err = capsys.readouterr()
    return status, out, err


def make_image_folder(root: Path, classes: dict[str, int], size=(12, 10)) -> None:
    rng = np.random.default_rng(4)
    for name, count in classes.items():
        (root / name).mkdir(parents=True)
        for i in range(count):
            pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.{'png' if i % 2 else 'bmp'}")


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims ``width`` x ``height`` pixels, with almost no data behind it:
    a few hundred bytes that would take gigabytes to decode."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )
    return path


class CreatesAFile:
    """Unpickled, it opens (so creates) the file it names: a stand-in for any code a crafted
    pickle could run. Tests check that the file never appears."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple:
        return (open, (str(self.path), "w"))


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


def set_key(params: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``a.b.c`` in a nested mapping, like ``dvc exp run -S a.b.c=value``."""
    *parents, last = dotted.split(".")
    node = params
    for part in parents:
        node = node[part]
    node[last] = value


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


def run_stage(module: str, *args: str, cwd: Path, env: dict[str, str] | None = None):
    """Run ``python -m stages.<module>`` as DVC would; return the completed process."""
    return subprocess.run(
        [sys.executable, "-m", f"stages.{module}", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONHASHSEED": "0", **(env or {})},
        capture_output=True,
        text=True,
        check=False,
    )


def copy_repository(dest: Path) -> Path:
    """The repository's files that git would track (what a fresh clone or a DVC queue sees)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for name in listed:
        if (REPO / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    return dest


def shrink_pipeline(root: Path) -> None:
    """Each lab's ``quick`` params (:mod:`dllabs.labs.registry`: one epoch per training section,
    one transfer draw): a quick `dvc repro` that still runs every stage (the wiring, not the
    numbers, is under test). Set in ``conf/config.yaml``, which
    `dvc exp run` composes into ``params.yaml``, and in ``params.yaml`` for `dvc repro`."""
    from dllabs.tooling.presets import compose_yaml

    path = root / "conf" / "config.yaml"
    params = yaml.safe_load(path.read_text(encoding="utf-8"))
    for key, value in (item for lab in LABS.values() for item in lab.quick.items()):
        set_key(params, key, value)
    path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    (root / "params.yaml").write_text(compose_yaml((), root / "conf"), encoding="utf-8")


def needs_baseline(item: pytest.Item) -> bool:
    return "reproduced_baseline" in getattr(item, "fixturenames", ())


def baseline_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run's base folder, above each pytest-xdist worker's own: where the baseline is built."""
    shared = tmp_path_factory.getbasetemp()
    return shared.parent if os.environ.get("PYTEST_XDIST_WORKER") else shared


def build_baseline(shared: Path) -> Path:
    """The baseline under ``shared``, built unless it is there: whoever holds the file lock first
    (the background builder or a test's fixture) builds it while the others wait."""
    root = shared / "reproduced-baseline"
    with (shared / "reproduced-baseline.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (root / ".git").is_dir():
            building = copy_repository(Path(tempfile.mkdtemp(dir=shared)))
            shrink_pipeline(building)
            sh(["git", "init", "-q"], building)
            commit_all(building, "copy")
            # Each stage records the params it reads, for tests/test_dvc_yaml.py.
            param_reads_log(root).unlink(missing_ok=True)  # a failed build's
            reads = {
                "DL_LABS_PARAM_READS": str(param_reads_log(root)),
                "PYTHONPATH": str(REPO / "tests" / "param_reads"),
            }
            sh([*DVC, "repro"], building, env=reads)
            commit_all(building, "baseline")
            building.rename(root)  # whole or not at all, should the build fail
    return root


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
    code = "import sys; from pathlib import Path; from tests.conftest import build_baseline; "
    code += "build_baseline(Path(sys.argv[1]))"
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


def param_reads_log(baseline: Path) -> Path:
    """Where the baseline's `dvc repro` recorded each stage's reads of params
    (``tests/param_reads/param_recorder.py``), beside the baseline itself."""
    return baseline.with_name(f"{baseline.name}.param-reads.jsonl")


def copy_of(baseline: Path, dest: Path) -> Path:
    """A copy of a reproduced repository, its git history and DVC cache included."""
    shutil.copytree(baseline, dest, symlinks=True, dirs_exist_ok=True)
    return dest


def sh(
    cmd: list[str] | str,
    cwd: Path,
    check: bool = True,
    timeout: float | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """Run a command with the venv's ``bin`` first on PATH, as `make` does for DVC's workers.

    Output goes through files, not pipes, and only the command itself is waited for: a DVC queue
    worker it started lives on as a daemon holding the command's stdout, and waiting for the end
    of a pipe would then wait for that worker. Past ``timeout`` seconds the command and its
    children are killed and TimeoutExpired raised. ``env`` adds variables to the environment.
    """
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    env = {**os.environ, "PATH": path, **(env or {})}
    with tempfile.TemporaryFile("w+") as stdout, tempfile.TemporaryFile("w+") as stderr:
        process = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=env,
            stdout=stdout,
            stderr=stderr,
            text=True,
            shell=isinstance(cmd, str),
            executable="/bin/bash" if isinstance(cmd, str) else None,
            start_new_session=True,
        )
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise
        stdout.seek(0)
        stderr.seek(0)
        result = subprocess.CompletedProcess(cmd, process.returncode, stdout.read(), stderr.read())
    if check:
        shown = cmd if isinstance(cmd, str) else " ".join(cmd)
        assert result.returncode == 0, f"{shown} failed:\n{result.stdout}\n{result.stderr}"
    return result


def stop_queue_workers(root: Path) -> None:
    """Stop the DVC queue workers of the repository at ``root``, for good.

    `dvc queue stop` asks them through the queue's broker. A worker whose idle monitor died (a
    race in kombu's file broker, seen in CI) neither exits by itself nor always hears the
    request, and would outlive the tests: such a worker is killed by the pid it recorded.
    """
    sh([*DVC, "queue", "stop"], root, check=False, timeout=60)
    for pid_file in (root / ".dvc" / "tmp" / "exps" / "celery").glob("*.pid"):
        pid = pid_file.read_text().strip()
        command = Path(f"/proc/{pid}/cmdline")  # Linux: only a live worker, never a reused pid
        if pid.isdigit() and command.is_file() and b"queue-worker" in command.read_bytes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)


def commit_all(root: Path, message: str) -> None:
    """``git add -A`` and commit, as a throwaway identity."""
    sh(["git", "add", "-A"], root)
    sh(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message], root)
