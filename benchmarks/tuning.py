"""Parameter search (``dl-labs tune``), measured side by side in one run on this machine.

1. **Pruning**: the same seeded TPE search of lab 2's CNN on the default digits, ``--trials N``
   with the median pruner and ``N`` without: the epochs trained (a pruned trial's up to its
   pruning, the others' as their validation metrics record), the wall time, and the best
   validation accuracy each search found.
2. **Workers**: ``M`` trials of lab 1's MLP with ``--workers 1`` and with ``--workers 2``:
   trials per hour.
3. **A trial's overhead**: the CNN's training as one trial (``dvc exp run --temp``, one stage
   forced), as ``python -m stages.train_cnn`` in the workspace, and inside a warm Python process
   (Keras imported before the clock starts), in turn, ``--repeats`` times each.

Each search runs in a clone of this repository's HEAD with its outputs checked out from a copy of
its DVC cache of its own (as ``benchmarks/dvc_queue.py`` does), so only the trials' stages run and
no search finds another's trainings in the run cache. The test split is left unread
(``--no-test``). Writes ``benchmarks/results/tuning.json``.

    python benchmarks/tuning.py [--trials 12] [--worker-trials 6] [--repeats 3] [--only PART]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from clones import BIN, ROOT, sh, workspace  # benchmarks/clones.py, beside this script

RESULTS = ROOT / "benchmarks" / "results" / "tuning.json"
PARTS = ("overhead", "workers", "pruning")


def tune(repo: Path, *args: str) -> float:
    """Run ``dl-labs tune`` with ``args``; its wall-clock seconds."""
    start = time.perf_counter()
    sh([sys.executable, "-m", "dllabs", "tune", *args, "--no-test"], repo)
    return time.perf_counter() - start


def study_epochs(repo: Path, name: str) -> dict:
    """Epochs trained by each trial of study ``name``, and its best validation value."""
    import optuna

    sys.path.insert(0, str(repo))
    from dllabs.tuning import experiments

    os.chdir(repo)  # the experiments' git refs are the clone's
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{repo / '.tune/studies.db'}")
    base = experiments.baseline()
    epochs, states = [], []
    for trial in study.trials:
        states.append(trial.state.name)
        if trial.state == optuna.trial.TrialState.PRUNED:
            epochs.append(int(trial.user_attrs["pruned_at_epoch"]))
        elif trial.state == optuna.trial.TrialState.COMPLETE:
            ref = experiments.experiment_ref(trial.user_attrs["experiment"], base)
            record = experiments.read_metrics(ref, "metrics/validation/cnn.json")
            epochs.append(int(record["epochs_trained"]))
    return {
        "trials": len(study.trials),
        "states": states,
        "epochs": epochs,
        "total_epochs": sum(epochs),
        "best_validation_accuracy": study.best_value,
    }


def pruning(folder: Path, trials: int) -> dict:
    found = {}
    for name, pruner in (("bench-median", "median"), ("bench-none", "none")):
        repo = workspace(folder / name)
        seconds = tune(repo, "cnn", "--study", name, "--trials", str(trials), "--pruner", pruner)
        found[pruner] = {"seconds": round(seconds, 1), **study_epochs(repo, name)}
    median, none = found["median"], found["none"]
    found["epochs_saved"] = round(1 - median["total_epochs"] / none["total_epochs"], 3)
    found["time_saved"] = round(1 - median["seconds"] / none["seconds"], 3)
    found["same_best"] = median["best_validation_accuracy"] == none["best_validation_accuracy"]
    return found


def workers(folder: Path, trials: int) -> dict:
    found = {}
    for count in (1, 2):
        repo = workspace(folder / f"workers-{count}")
        seconds = tune(
            repo,
            "mlp",
            "--study",
            f"bench-workers-{count}",
            "--trials",
            str(trials),
            "--workers",
            str(count),
            "--pruner",
            "none",
        )
        per_hour = round(trials * 3600 / seconds, 1)
        found[f"workers_{count}"] = {"seconds": round(seconds, 1), "trials_per_hour": per_hour}
    found["speedup"] = round(found["workers_1"]["seconds"] / found["workers_2"]["seconds"], 2)
    return found


STAGE_ARGS = [
    "--images",
    "data/processed/images",
    "--model",
    ".bench/model",
    "--plots",
    ".bench/plots",
    "--validation",
    ".bench/validation.json",
]
# Keras imported and the process warm before the clock starts: training as the tuning process
# itself would run it, with no process, DVC or import of its own.
IN_PROCESS = """
import sys, time
import keras  # noqa: F401
from stages import train_cnn
start = time.perf_counter()
train_cnn.main(sys.argv[1:])
print(time.perf_counter() - start)
"""


def overhead(repo: Path, repeats: int) -> dict:
    """The CNN's training three ways, ``repeats`` times each in turn (medians): as a trial
    (``dvc exp run --temp``, the stage forced), as the stage's own process in the workspace, and
    inside a warm Python process."""
    import statistics

    runs: dict[str, list[float]] = {"trial": [], "stage": [], "in_process": []}
    for _ in range(repeats):
        start = time.perf_counter()
        sh([str(BIN / "dvc"), "exp", "run", "--temp", "-f", "-s", "train_cnn"], repo)
        runs["trial"].append(time.perf_counter() - start)
        start = time.perf_counter()
        sh([sys.executable, "-m", "stages.train_cnn", *STAGE_ARGS], repo)
        runs["stage"].append(time.perf_counter() - start)
        runs["in_process"].append(
            float(sh([sys.executable, "-c", IN_PROCESS, *STAGE_ARGS], repo).split()[-1])
        )
    median = {key: round(statistics.median(values), 1) for key, values in runs.items()}
    return {
        "repeats": repeats,
        "seconds": {k: [round(v, 1) for v in vs] for k, vs in runs.items()},
        "median_seconds": median,
        "trial_over_stage": round(median["trial"] / median["stage"], 2),
        "trial_over_in_process": round(median["trial"] / median["in_process"], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12, help="trials of each pruning search")
    parser.add_argument("--worker-trials", type=int, default=6, help="trials of each worker run")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each overhead case")
    parser.add_argument(
        "--only",
        choices=PARTS,
        action="append",
        help="measure this part alone (the others' results are kept)",
    )
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from dllabs.provenance import platform_record

    parts = args.only or list(PARTS)
    results = json.loads(RESULTS.read_text()) if args.only and RESULTS.is_file() else {}
    with tempfile.TemporaryDirectory() as folder:
        for part in parts:
            if part == "overhead":
                found = overhead(workspace(Path(folder) / "overhead"), args.repeats)
            elif part == "workers":
                found = workers(Path(folder), args.worker_trials)
            else:
                found = pruning(Path(folder), args.trials)
            command = ["python", "benchmarks/tuning.py", *sys.argv[1:]]
            results[part] = {**found, "command": " ".join(command), "platform": platform_record()}
    RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(
        json.dumps(
            {part: {k: v for k, v in results[part].items() if k != "platform"} for part in parts},
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
