"""Reproducibility check: after ``dvc repro``, did any committed metric change?

``python -m dllabs.drift [REV] [--tolerance T]`` runs ``dvc metrics diff REV --json`` (REV defaults
to ``HEAD``, the committed metrics) and fails when a metric moved by more than ``T`` (default 0:
the pipeline is deterministic on CPU, so a fresh clone reproduces every number exactly). Keys under
``run.`` are ignored: they hold wall-clock timings and the device name, which differ from machine
to machine by nature. A metric that appears or disappears counts as a change.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

IGNORED_PREFIXES = ("run.",)


def drifted(diff: dict[str, dict[str, dict[str, Any]]], tolerance: float) -> list[str]:
    """Lines naming every metric that changed beyond ``tolerance`` in a ``dvc metrics diff``."""
    changes = []
    for path, metrics in sorted(diff.items()):
        for key, change in sorted(metrics.items()):
            if key.startswith(IGNORED_PREFIXES):
                continue
            old, new = change.get("old"), change.get("new")
            numbers = all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in (old, new)
            )
            if numbers and abs(new - old) <= tolerance:
                continue
            if not numbers and old == new:
                continue
            changes.append(f"{path}: {key}: {old} -> {new}")
    return changes


def dvc_executable() -> str:
    """The ``dvc`` beside this interpreter (the project's venv), else the one on ``PATH``."""
    beside = Path(sys.executable).parent / "dvc"
    return str(beside) if beside.is_file() else shutil.which("dvc") or "dvc"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dllabs.drift", description=__doc__)
    parser.add_argument("rev", nargs="?", default="HEAD", help="revision to compare with")
    parser.add_argument("--tolerance", type=float, default=0.0, help="largest change allowed")
    args = parser.parse_args(argv)
    result = subprocess.run(
        [dvc_executable(), "metrics", "diff", args.rev, "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        print(f"drift: error: dvc metrics diff failed: {result.stderr.strip()}", file=sys.stderr)
        return 2
    changes = drifted(json.loads(result.stdout or "{}"), args.tolerance)
    for line in changes:
        print(f"drift: {line}", file=sys.stderr)
    if changes:
        print(
            f"drift: error: {len(changes)} metric(s) differ from {args.rev} by more than "
            f"{args.tolerance:g}; the pipeline did not reproduce the committed results",
            file=sys.stderr,
        )
        return 1
    print(f"drift: every metric matches {args.rev} (tolerance {args.tolerance:g}; run.* ignored)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
