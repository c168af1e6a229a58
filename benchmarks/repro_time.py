"""Where ``dvc repro``'s time goes, stage by stage, in a clone of this repository's HEAD.

For each stage of ``dvc.yaml``, in the pipeline's order, with the committed outputs of the stages
before it in place:

- ``dvc``: ``dvc repro --single-item --force <stage>``, the wall time DVC takes to run it (its own
  bookkeeping: hashing deps and outs, the run cache, the lock file, plus the command);
- ``command``: the stage's command run directly (the same ``${py}`` variables), its wall time;
- ``start``: the stage's module run with ``--help`` (interpreter start-up, the stage's start-up
  and imports, reading the params: what every run of the stage pays before its work);
- ``training``: the seconds the stage's own record says it trained (``train_seconds`` in the
  summaries and metrics it writes), where it trains.

So ``dvc - command`` is DVC's share, ``start`` the import share, ``training`` the model fitting,
and the rest of ``command`` the stage's own other work (loading data, evaluation, writing).
Runs in a clone with a copy of the DVC cache of its own (``benchmarks/clones.py``); the workspace
is not touched. Writes ``benchmarks/results/repro_time.json``.

    python benchmarks/repro_time.py [--repeats 1]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from clones import BIN, ROOT, sh, workspace  # benchmarks/clones.py, beside this script

RESULTS = ROOT / "benchmarks" / "results" / "repro_time.json"


def stages_in_order(repo: Path) -> list[str]:
    """Every stage as DVC names it, in an order that runs each after what it depends on."""
    from dvc.repo import Repo

    with Repo(str(repo)) as dvc_repo:
        graph = dvc_repo.index.graph
        import networkx as nx

        return [stage.name for stage in reversed(list(nx.topological_sort(graph)))]


def stage_command(repo: Path, name: str) -> list[str]:
    """The stage's command as DVC would run it (``${py}`` and ``${item}`` filled in)."""
    from dvc.repo import Repo

    with Repo(str(repo)) as dvc_repo:
        stage = next(s for s in dvc_repo.index.stages if s.name == name)
        return ["bash", "-c", stage.cmd]


def timed(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    environment = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **(env or {})}
    done = subprocess.run(args, cwd=cwd, env=environment, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{shlex.join(args)} failed: {(done.stderr + done.stdout)[-3000:]}")
    return time.perf_counter() - start


def training_seconds(repo: Path, name: str) -> float | None:
    """``train_seconds`` summed over the JSON files in the model folders the stage writes, or
    None for a stage that trains nothing (an evaluation copies its lab's figure into its
    metrics: not counted twice)."""
    lock = yaml.safe_load((repo / "dvc.lock").read_text(encoding="utf-8"))["stages"][name]
    total, found = 0.0, False
    for out in lock.get("outs", []):
        path = repo / out["path"]
        if not out["path"].startswith("models/") or not path.is_dir():
            continue
        for file in sorted(path.rglob("*.json")):
            for match in re.finditer(r'"train_seconds":\s*([0-9.]+)', file.read_text()):
                total, found = total + float(match[1]), True
    return round(total, 1) if found else None


def measure(repo: Path) -> list[dict]:
    rows = []
    for name in stages_in_order(repo):
        module = name.split("@")[0]
        start = timed([sys.executable, "-m", f"stages.{module}", "--help"], repo)
        dvc_seconds = timed([str(BIN / "dvc"), "repro", "--single-item", "--force", name], repo)
        command = timed(stage_command(repo, name), repo)
        rows.append(
            {
                "stage": name,
                "dvc": round(dvc_seconds, 1),
                "command": round(command, 1),
                "start": round(start, 2),
                "training": training_seconds(repo, name),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1, help="measurements of each stage")
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory(prefix="repro-time-") as folder:
        repo = workspace(Path(folder))
        head = sh(["git", "rev-parse", "--short", "HEAD"], repo).strip()
        for _ in range(args.repeats):
            runs.append(measure(repo))
    totals = {
        key: round(sum(row[key] or 0 for row in runs[-1]), 1)
        for key in ("dvc", "command", "start", "training")
    }
    result = {"commit": head, "machine": os.uname().machine, "runs": runs, "totals": totals}
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(totals))


if __name__ == "__main__":
    main()
