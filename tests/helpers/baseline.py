"""The reproduced baseline the DVC integration tests share: the repository with each lab's quick
params, in a new git repository, after one ``dvc repro``, committed. ``tests/conftest.py`` builds
it once per run (in the background while other tests run)."""

from __future__ import annotations

import fcntl
import os
import tempfile
from pathlib import Path

import pytest
import yaml

from dllabs.labs.registry import LABS
from tests.helpers.repo import DVC, REPO, commit_all, copy_repository, sh
from tests.helpers.stages import set_key


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


def param_reads_log(baseline: Path) -> Path:
    """Where the baseline's `dvc repro` recorded each stage's reads of params
    (``tests/param_reads/param_recorder.py``), beside the baseline itself."""
    return baseline.with_name(f"{baseline.name}.param-reads.jsonl")
