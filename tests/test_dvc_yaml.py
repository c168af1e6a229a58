"""dvc.yaml checked against the code: each stage lists exactly the params it reads and the
project files it runs.

DVC reruns a stage only when something it lists changes. A param a stage reads but does not list
leaves its results stale after ``dvc exp run -S key=value`` (the transfer lab once built its base
from ``cnn.preset`` without listing it); a source file it imports but does not list leaves it
stale after a code change. Listing more reruns stages for nothing. So both lists are derived here
and compared with ``dvc.yaml`` both ways:

- **params**: the reproduced baseline's ``dvc repro`` (``tests/conftest.py``) runs every stage
  with ``tests/param_reads/param_recorder.py`` recording each key it reads. Keys read only under
  settings that the quick baseline does not run (a dataset source, a GPU) are in
  :data:`READ_ELSEWHERE`, each with the setting that reads it; such a key must still appear in
  the code the stage runs. ``base.backend`` is read before anything else by the Keras stages'
  start-up (it picks Keras's backend), so it counts for every stage that can import Keras.
- **source files**: :mod:`dllabs.tooling.code_deps` derives them from the imports and writes them;
  here they are compared too, so that a hand edit of ``dvc.yaml`` that the writer would undo fails.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from dllabs.tooling import code_deps
from tests.helpers.baseline import param_reads_log
from tests.helpers.repo import REPO

# Keys a stage reads only under settings the quick baseline does not run: key -> the setting.
READ_ELSEWHERE: dict[str, dict[str, str]] = {
    "download": {
        "data.images_dir": "data.images: folder",
        "data.follow_links": "data.images: folder",
        "data.csv_path": "data.anomaly: csv",
        "data.ecg_sha256": "data.anomaly: ecg (a download)",
        "data.text_path": "data.text: file",
        "data.alice_sha256": "data.text: alice (a download)",
    },
    "train_cbow": {
        "cbow.keras.batch_size": "cbow.engine: keras",
        "cbow.keras.learning_rate": "cbow.engine: keras",
    },
    "train_transfer": {
        "transfer.input_size": "transfer.base: an ImageNet base (the photos preset)",
        "transfer.weights": "transfer.base: an ImageNet base (the photos preset)",
    },
}


# --- what the code imports: dllabs.tooling.code_deps, which also writes dvc.yaml's code deps -----


def source_closure(module: str) -> frozenset[str]:
    return code_deps.source_closure(module, REPO)


def imports_keras(files: frozenset[str]) -> bool:
    return any(
        re.search(r"^\s*(import keras|from keras)", (REPO / f).read_text(), re.M)
        for f in files
        if f.endswith(".py")
    )


# --- what dvc.yaml lists --------------------------------------------------------------------------


def stages_of(dvc_yaml: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every stage, ``foreach`` stages expanded (``evaluate_classifier@mlp``), ``${item}``
    substituted in its command, deps and params."""
    expanded: dict[str, dict[str, Any]] = {}
    for name, stage in dvc_yaml["stages"].items():
        if "foreach" not in stage:
            expanded[name] = stage
            continue
        for item in stage["foreach"]:
            text = yaml.safe_dump(stage["do"]).replace("${item}", str(item))
            expanded[f"{name}@{item}"] = yaml.safe_load(text)
    return expanded


def stage_module(stage: dict[str, Any]) -> tuple[str, str | None]:
    """(``stages.<name>``, the ``--lab`` argument or None) from a stage's command."""
    words = stage["cmd"].split()
    module = next(w for w in words if w.startswith("stages."))
    lab = words[words.index("--lab") + 1] if "--lab" in words else None
    return module, lab


def leaf_keys(params: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key, value in params.items():
        if isinstance(value, dict):
            keys += leaf_keys(value, f"{prefix}{key}.")
        else:
            keys.append(f"{prefix}{key}")
    return keys


def listed_params(stage: dict[str, Any], all_keys: list[str]) -> set[str]:
    """The leaf keys a stage's ``params:`` covers (a section stands for every key under it)."""
    listed: set[str] = set()
    for entry in stage.get("params", []):
        if isinstance(entry, dict):  # another params file: none in this project
            raise AssertionError(f"unexpected params entry {entry}")
        under = [k for k in all_keys if k == entry or k.startswith(f"{entry}.")]
        assert under, f"params entry {entry!r} names no key of params.yaml"
        listed.update(under)
    return listed


def listed_sources(stage: dict[str, Any]) -> set[str]:
    """The project files among a stage's deps (data and models are other stages' outputs)."""
    return {d for d in stage.get("deps", []) if code_deps.is_code(d)}


# --- the comparison -------------------------------------------------------------------------------


def recorded_reads(log: Path) -> dict[tuple[str, str | None], set[str]]:
    """(stage module, ``--lab``) -> the keys its processes read, from the recorder's log."""
    reads: dict[tuple[str, str | None], set[str]] = {}
    for line in log.read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        argv = entry["argv"]
        lab = argv[argv.index("--lab") + 1] if "--lab" in argv else None
        reads.setdefault((entry["module"], lab), set()).update(entry["keys"])
    return reads


def disagreements(
    dvc_yaml: dict[str, Any],
    reads: dict[tuple[str, str | None], set[str]],
    params: dict[str, Any],
) -> list[str]:
    """One line per way ``dvc.yaml`` differs from what each stage reads and runs."""
    all_keys = leaf_keys(params)
    problems = []
    for name, stage in stages_of(dvc_yaml).items():
        module, lab = stage_module(stage)
        sources = source_closure(module)
        if (module, lab) not in reads:
            problems.append(f"{name}: no record of its run (did the baseline run it?)")
            continue
        read = set(reads[module, lab]) | set(READ_ELSEWHERE.get(name, {}))
        if imports_keras(sources):
            read.add("base.backend")
        listed = listed_params(stage, all_keys)
        if read - listed:
            problems.append(f"{name}: reads params it does not list: {sorted(read - listed)}")
        if listed - read:
            problems.append(f"{name}: lists params it never reads: {sorted(listed - read)}")
        deps = listed_sources(stage)
        if sources - deps:
            problems.append(f"{name}: runs files it does not list: {sorted(sources - deps)}")
        if deps - sources:
            problems.append(f"{name}: lists files it never runs: {sorted(deps - sources)}")
    return problems


@pytest.fixture(scope="module")
def derived(reproduced_baseline: Path) -> tuple[dict, dict, dict]:
    dvc_yaml = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    return dvc_yaml, recorded_reads(param_reads_log(reproduced_baseline)), params


@pytest.mark.slow
def test_every_stage_lists_exactly_the_params_it_reads_and_the_files_it_runs(derived) -> None:
    assert disagreements(*derived) == []


@pytest.mark.slow
def test_a_param_dropped_from_a_stage_is_found(derived) -> None:
    """The check fails when a stage stops listing a key it reads: ``cnn.preset`` from the
    transfer lab's stages (what once left lab 5 stale after ``-S cnn.preset=lenet5``)."""
    dvc_yaml, reads, params = derived
    for stage in ("pretrain_base", "train_transfer"):
        edited = copy.deepcopy(dvc_yaml)
        edited["stages"][stage]["params"].remove("cnn.preset")
        assert disagreements(edited, reads, params) == [
            f"{stage}: reads params it does not list: ['cnn.preset']"
        ]


@pytest.mark.slow
def test_a_source_file_dropped_or_added_is_found(derived) -> None:
    dvc_yaml, reads, params = derived
    edited = copy.deepcopy(dvc_yaml)
    edited["stages"]["train_mlp"]["deps"].remove("dllabs/training/fit.py")
    edited["stages"]["tokenize"]["deps"].append("dllabs/training/fit.py")
    assert sorted(disagreements(edited, reads, params)) == [
        "tokenize: lists files it never runs: ['dllabs/training/fit.py']",
        "train_mlp: runs files it does not list: ['dllabs/training/fit.py']",
    ]


def test_keys_read_elsewhere_are_in_the_code_the_stage_runs() -> None:
    """An allowance in :data:`READ_ELSEWHERE` must name an attribute the stage's code reads."""
    dvc_yaml = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))
    stages = stages_of(dvc_yaml)
    for name, keys in READ_ELSEWHERE.items():
        code = "".join(
            (REPO / f).read_text()
            for f in source_closure(stage_module(stages[name])[0])
            if f.endswith(".py")
        )
        for key in keys:
            assert f".{key.rsplit('.', 1)[-1]}" in code, f"{name}: {key} is read nowhere"
