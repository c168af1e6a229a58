"""The lab registry (``dllabs/labs/registry.py``) against ``dvc.yaml``, ``conf/`` and the docs:
every stage belongs to one lab (or is shared), and what each record names exists."""

from __future__ import annotations

import copy
import dataclasses
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from dllabs.labs import registry
from dllabs.labs.registry import LABS, SHARED_STAGES, Lab
from dllabs.tooling.reproducibility import declared_metrics
from tests.helpers.repo import REPO


def expanded_stages(dvc_yaml: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every stage by the name DVC gives it (a ``foreach`` stage's as ``stage@item``)."""
    stages = {}
    for name, stage in dvc_yaml["stages"].items():
        for item in stage.get("foreach", [None]):
            body = stage.get("do", stage)
            stages[name if item is None else f"{name}@{item}"] = yaml.safe_load(
                yaml.safe_dump(body).replace("${item}", str(item))
            )
    return stages


def outs_of(stage: dict[str, Any]) -> set[str]:
    entries = [*stage.get("outs", []), *stage.get("metrics", []), *stage.get("plots", [])]
    return {next(iter(e)) if isinstance(e, dict) else e for e in entries}


def problems(dvc_yaml: dict[str, Any], labs: dict[str, Lab]) -> list[str]:
    """One line per way ``dvc.yaml`` and the registry disagree."""
    stages = expanded_stages(dvc_yaml)
    found = []
    for stage in stages:
        owners = [lab.name for lab in labs.values() if stage in lab.stages]
        if stage in SHARED_STAGES:
            owners.append("shared")
        if len(owners) != 1:
            found.append(f"{stage}: belongs to {owners or 'no lab'}; expected exactly one")
    for lab in labs.values():
        found += [f"{lab.name}: no stage {s} in dvc.yaml" for s in lab.stages if s not in stages]
        outs = set().union(*(outs_of(stages[s]) for s in lab.stages if s in stages))
        for path in (lab.model, lab.metrics):
            if path not in outs:
                found.append(f"{lab.name}: {path} is no output of its stages")
    return found


@pytest.fixture(scope="module")
def dvc_yaml() -> dict[str, Any]:
    return yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))


def test_every_stage_belongs_to_one_lab_and_each_lab_writes_its_model_and_metrics(
    dvc_yaml,
) -> None:
    assert problems(dvc_yaml, LABS) == []


def test_a_stage_that_belongs_to_no_lab_is_found(dvc_yaml) -> None:
    edited = copy.deepcopy(dvc_yaml)
    edited["stages"]["train_gan"] = {"cmd": "python -m stages.train_gan", "outs": ["models/gan"]}
    assert problems(edited, LABS) == ["train_gan: belongs to no lab; expected exactly one"]


def test_a_stage_claimed_twice_or_left_out_is_found(dvc_yaml) -> None:
    labs = {**LABS, "mlp": dataclasses.replace(LABS["mlp"], stages=("train_mlp", "train_cnn"))}
    assert problems(dvc_yaml, labs) == [
        "train_cnn: belongs to ['mlp', 'cnn']; expected exactly one",
        "evaluate_classifier@mlp: belongs to no lab; expected exactly one",
        "mlp: metrics/mlp.json is no output of its stages",
    ]


def test_each_record_names_what_exists(dvc_yaml) -> None:
    stages = expanded_stages(dvc_yaml)
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    assert set(declared_metrics(REPO / "dvc.yaml")) >= {lab.metrics for lab in LABS.values()}
    for lab in LABS.values():
        assert (REPO / "docs" / "labs" / f"{lab.name}.md").is_file(), lab.name
        assert set(lab.multi_process) <= set(lab.stages), lab.name
        for key in lab.quick:  # every quick setting overrides a key the composed params have
            node = params
            for part in key.split("."):
                node = node[part]
        outs = {out for s in lab.stages for out in outs_of(stages[s])}
        for path in lab.plots.values():  # pictures of its evaluation stage
            assert any(f"plots/evaluate/{path}".startswith(out) for out in outs), path
        if lab.search is None:
            assert lab.no_search, lab.name
            continue
        assert {lab.search.stage, lab.search.test_stage} <= set(lab.stages), lab.name
        assert lab.search.objective in lab.search.objectives
        assert lab.search.validation in outs_of(stages[lab.search.stage]), lab.name
        if lab.search.history is not None:
            assert lab.search.history in outs, lab.name  # an output of one of its stages


def test_the_tables_that_used_to_be_kept_by_hand_read_the_registry() -> None:
    from dllabs.tooling import reproducibility
    from dllabs.training import cluster
    from dllabs.tuning import labs as tuning_labs

    # The stages declare it at start-up (so that the cluster code, which every training stage
    # runs, need not read the registry); the registry's records must say the same.
    declared = {
        path.stem
        for path in (REPO / "stages").glob("*.py")
        if f'start_keras_stage("{path.stem}", multi_process=True)' in path.read_text()
    }
    assert declared == set(registry.multi_process_stages()) == {"train_mlp", "train_cnn"}
    assert "multi_process_stages" not in Path(cluster.__file__).read_text()
    assert {"n", "vocab_size", "repeats", "test_images"} <= reproducibility.COUNTS
    assert set(tuning_labs.LABS) == {name for name, lab in LABS.items() if lab.search}
    assert set(tuning_labs.NO_VALIDATION) == {name for name, lab in LABS.items() if not lab.search}
    assert {"mlp", "cnn", "anomaly", "transfer"} <= set(tuning_labs.LABS)
    assert tuning_labs.LABS["cnn"].test_metrics == LABS["cnn"].metrics


def test_an_unknown_lab_is_named_with_the_labs_there_are() -> None:
    with pytest.raises(KeyError, match="unknown lab 'gan'; expected one of mlp, cnn, anomaly"):
        registry.lab_named("gan")
    assert registry.lab_of_stage("threshold_anomaly") == "anomaly"
    assert registry.lab_of_stage("download") is None


def test_the_registry_imports_nothing_heavy() -> None:
    code = (
        "import sys, dllabs.labs.registry\n"
        "heavy = {'numpy', 'tensorflow', 'keras', 'jax', 'torch', 'sklearn'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr
