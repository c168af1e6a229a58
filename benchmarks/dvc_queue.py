"""DVC's experiment queue: two queued experiments run one at a time (``dvc queue start -j 1``)
against two at once (``-j 2``), in one run, on this machine.

Each experiment retrains lab 1's MLP for a fixed number of epochs (early stopping off, so every
experiment does the same work whatever its learning rate) and reruns its evaluation and the
summary; each round queues two new learning rates, so DVC's run cache restores nothing. The
workspace is a clone of this repository's HEAD with the committed outputs checked out from a
copy of its DVC cache, so only the queued stages run.

Writes the wall-clock seconds of each round, from ``dvc queue start`` until the queue is empty,
and their ratio to ``benchmarks/results/dvc_queue.json``.

    python benchmarks/dvc_queue.py [--epochs 40] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from clones import BIN, ROOT, sh, workspace  # benchmarks/clones.py, beside this script

RESULTS = ROOT / "benchmarks" / "results" / "dvc_queue.json"


def round_seconds(repo: Path, jobs: int, rates: list[float], epochs: int) -> float:
    dvc = str(BIN / "dvc")
    for rate in rates:
        sh(
            [
                dvc,
                "exp",
                "run",
                "--queue",
                "-S",
                f"mlp.learning_rate={rate}",
                "-S",
                "mlp.patience=0",
                "-S",
                f"mlp.epochs={epochs}",
            ],
            repo,
        )
    start = time.perf_counter()
    sh([dvc, "queue", "start", "-j", str(jobs)], repo)
    while "Queued" in (status := sh([dvc, "queue", "status"], repo)) or "Running" in status:
        if "Running" not in status and "Worker status: 0 active" in status:
            # A worker that found the queue empty for a moment has exited: start another.
            sh([dvc, "queue", "start", "-j", str(jobs)], repo)
        time.sleep(1)
    seconds = time.perf_counter() - start
    if "Failed" in status:
        raise SystemExit(f"a queued experiment failed:\n{status}")
    sh([dvc, "queue", "stop"], repo)  # the workers of this round
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=2, help="pairs of -j 1 / -j 2 rounds")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from dllabs.provenance import platform_record

    with tempfile.TemporaryDirectory() as folder:
        repo = workspace(Path(folder))
        rows, rate = [], 0.01
        for _ in range(args.rounds):
            for jobs in (1, 2):  # alternated, so a drift in the machine's speed hits both
                rates = [round(rate, 4), round(rate + 0.001, 4)]
                rate += 0.002
                seconds = round_seconds(repo, jobs, rates, args.epochs)
                rows.append({"jobs": jobs, "experiments": 2, "seconds": round(seconds, 1)})
                print(json.dumps(rows[-1]), flush=True)
    one = [r["seconds"] for r in rows if r["jobs"] == 1]
    two = [r["seconds"] for r in rows if r["jobs"] == 2]
    results = {
        "epochs": args.epochs,
        "rounds": rows,
        "speed_up_two_jobs": [round(a / b, 3) for a, b in zip(one, two, strict=True)],
        "platform": platform_record(),
    }
    print(json.dumps(results["speed_up_two_jobs"]))
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
