"""The experiment recipes of docs/guides/experiments-and-plots.md, run as written on a copy.

The copy (of the session's reproduced baseline) has its own git repository and DVC cache, quick
params (committed, so queued experiments see them too) and the baseline commit. Then the page's
block runs as one bash script, killed with the queue's workers if it runs past RECIPE_TIMEOUT;
the assertions check what it left: the named experiment and the queued optimizer sweep with their
metrics, and a plots comparison holding every plot ID of dvc.yaml.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.helpers.repo import DVC, REPO, copy_of, sh, stop_queue_workers

# Six quick experiments take 4-5 minutes on 2 cores; a stuck queue must not take CI's hour.
RECIPE_TIMEOUT = 1200
OPTIMIZERS = {"sgd", "adagrad", "adadelta", "rmsprop", "adam"}


def readme_recipe() -> str:
    """The first ```bash block under "## Experiments" in the docs' experiments guide
    (docs/guides/experiments-and-plots.md; the README links to it)."""
    page = (REPO / "docs/guides/experiments-and-plots.md").read_text(encoding="utf-8")
    section = page.split("\n## Experiments\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    assert match, "docs/guides/experiments-and-plots.md: no bash block under ## Experiments"
    return match.group(1)


@pytest.fixture(scope="module")
def ran_recipe(reproduced_baseline: Path, tmp_path_factory: pytest.TempPathFactory):
    root = copy_of(reproduced_baseline, tmp_path_factory.mktemp("experiments"))
    try:
        try:
            result = sh(f"set -euo pipefail\n{readme_recipe()}", root, timeout=RECIPE_TIMEOUT)
        except subprocess.TimeoutExpired:
            status = sh([*DVC, "queue", "status"], root, check=False, timeout=120).stdout
            pytest.fail(f"the documented recipe ran past {RECIPE_TIMEOUT} s; the queue:\n{status}")
        yield root, result.stdout
    finally:
        stop_queue_workers(root)


def experiments(root: Path) -> dict[str, dict]:
    """Each experiment's name -> its params.yaml values, from `dvc exp show --json`."""
    shown = json.loads(sh([*DVC, "exp", "show", "--json"], root).stdout)
    found = {}
    for baseline in shown:
        for experiment in baseline.get("experiments") or []:
            for revision in experiment["revs"]:
                data = revision["data"]
                found[revision["name"]] = {
                    "params": data["params"]["params.yaml"]["data"],
                    "metrics": data["metrics"],
                }
    return found


@pytest.mark.long
def test_recipe_runs_the_named_experiment_and_the_optimizer_sweep(ran_recipe) -> None:
    root, _ = ran_recipe
    found = experiments(root)
    adam = found["adam-lr1e-3"]["params"]["mlp"]
    assert adam["optimizer"] == "adam" and adam["learning_rate"] == 0.001
    swept = {name: e for name, e in found.items() if name != "adam-lr1e-3"}
    assert {e["params"]["mlp"]["optimizer"] for e in swept.values()} == OPTIMIZERS
    for experiment in found.values():  # every experiment finished and has test metrics
        accuracy = experiment["metrics"]["metrics/mlp.json"]["data"]["test"]["accuracy"]
        assert 0.0 <= accuracy <= 1.0
    assert not re.search(r"\b(Queued|Running|Failed)\b", sh([*DVC, "queue", "status"], root).stdout)


@pytest.mark.long
def test_recipe_shows_and_compares_experiments(ran_recipe) -> None:
    root, out = ran_recipe
    assert "adam-lr1e-3" in out and "metrics/mlp.json" in out  # exp show, then metrics diff
    assert (root / "plots-diff" / "index.html").is_file()
    other = sh("dvc exp list --name-only | grep -vx adam-lr1e-3 | head -n 1", root).stdout.strip()
    shown = json.loads(sh([*DVC, "plots", "diff", "adam-lr1e-3", other, "--json"], root).stdout)
    declared = yaml.safe_load((root / "dvc.yaml").read_text())["plots"]
    ids = {next(iter(p)) if isinstance(p, dict) else p for p in declared}
    revisions = {
        plot: {rev for entry in entries for rev in entry["revisions"]}
        for plot, entries in shown["data"].items()
    }
    missing = {plot for plot in ids if revisions.get(plot) != {"adam-lr1e-3", other}}
    assert not missing, f"plot IDs not drawn for both experiments: {sorted(missing)}"


def test_a_command_leaving_a_daemon_behind_returns_without_waiting_for_it(tmp_path: Path) -> None:
    """`dvc queue start` leaves a worker holding its stdout; in CI a worker that never exited kept
    the whole test run waiting on the pipe. ``sh`` waits for the command alone."""
    result = sh("setsid sleep 120 & echo $!", tmp_path, timeout=30)  # raises if it waits 120 s
    daemon = int(result.stdout.split()[-1])
    try:
        assert Path(f"/proc/{daemon}").exists()  # still running: the command did not wait for it
    finally:
        os.kill(daemon, signal.SIGKILL)
