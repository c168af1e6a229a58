"""The reproducibility check, in two parts (``make check-reproducible`` runs both).

``python -m dllabs.tooling.reproducibility --stale`` needs no training: it fails when
``params.yaml`` is not the composition of ``conf/`` (``dllabs.tooling.presets``), or when the
committed ``dvc.lock`` no longer matches the code and params, that is when a stage's command, a
source file it depends on (one that no stage produces) or one of its params changed but the results
were not recomputed and committed, or when a committed metrics or report file (``cache: false``)
differs from the hash that ``dvc.lock`` records for it.

``python -m dllabs.tooling.reproducibility [REV]``, after ``dvc repro``, compares every metric in
the metrics files ``dvc.yaml`` declares with the ones committed at ``REV`` (default ``HEAD``):

- same platform (the ``run.platform`` fingerprint of the new run equals the committed one: CPU
  model and instruction-set level, OS, Python, backend, library versions, kernel settings): every
  metric must be identical, tolerance 0, because the pipeline is deterministic there;
- another platform: floating-point kernels differ, so each headline metric (one that carries a
  95% interval under ``ci95``) may move by at most its tolerance, the interval's half-width and
  never less than one test item (:func:`dllabs.evaluation.stats.tolerance`); the other numbers
  (losses, epochs, thresholds) are shown when they moved but not judged. Strings, counts (test-set
  sizes, vocabulary, parameters) and the set of metrics must match on any platform.

Keys under ``run.`` (timings, device, the platform itself) are never compared. The check prints
a table of each metric: committed, now, tolerance, verdict.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from dllabs.evaluation.stats import tolerance
from dllabs.labs.registry import count_keys
from dllabs.provenance import describe, fingerprint

IGNORED_PREFIXES = ("run.",)
# Counts that no floating-point kernel can change: on any platform they must match exactly.
COUNTS = count_keys()


# --- part (a): is the committed dvc.lock stale? --------------------------------------------------


def stale_entries(root: str | Path = ".") -> list[str]:
    """One line per way ``dvc.lock`` disagrees with the code, params and committed results."""
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    lock_path = Path(root) / "dvc.lock"
    locked = yaml.safe_load(lock_path.read_text(encoding="utf-8")) if lock_path.is_file() else {}
    locked_stages = (locked or {}).get("stages", {})
    from dllabs.tooling.presets import stale_params

    params_reason = stale_params(Path(root) / "params.yaml", Path(root) / "conf")
    lines: list[str] = [f"params.yaml: {params_reason}"] if params_reason else []
    with Repo(str(root)) as repo:
        stages = [s for s in repo.index.stages if s.name]  # pipeline stages only
        produced = {out.def_path for stage in stages for out in stage.outs}
        for stage in stages:
            if stage.name not in locked_stages:
                lines.append(f"{stage.name}: not in dvc.lock (never reproduced and committed)")
                continue
            if stage.changed_stage():
                lines.append(f"{stage.name}: its command in dvc.yaml changed")
            for dep in stage.deps:
                if isinstance(dep, ParamsDependency):
                    for keys in dep.status().values():
                        lines += [f"{stage.name}: param {k} {state}" for k, state in keys.items()]
                elif dep.def_path not in produced:
                    lines += [
                        f"{stage.name}: {path} {state}" for path, state in dep.status().items()
                    ]
            for out in stage.outs:
                if not out.use_cache:  # committed to git: must be the file dvc.lock describes
                    lines += [
                        f"{stage.name}: committed {path} {state} (not what dvc.lock records)"
                        for path, state in out.status().items()
                    ]
    return lines


# --- part (b): did the metrics reproduce? ---------------------------------------------------------


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists and scalars are leaves."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{path}."))
        else:
            flat[path] = value
    return flat


@dataclass(frozen=True)
class Row:
    """One metric's verdict."""

    file: str
    metric: str
    committed: Any
    now: Any
    tolerance: str
    verdict: str

    @property
    def failed(self) -> bool:
        return self.verdict.startswith("FAIL")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def headline_tolerances(flat: dict[str, Any]) -> dict[str, float]:
    """``{metric: tolerance}`` for every metric with a ``ci95`` interval beside it."""
    found = {}
    for key, low in flat.items():
        if not key.endswith(".low") or ".ci95." not in key:
            continue
        parent, name = key[: -len(".low")].rsplit(".ci95.", 1)
        metric = f"{parent}.{name}" if parent else name
        value, high, n = flat.get(metric), flat.get(f"{key[:-4]}.high"), flat.get(f"{parent}.n")
        if _is_number(value) and _is_number(high) and _is_number(n) and n > 0:
            found[metric] = tolerance(value, {"low": low, "high": high}, int(n))
    return found


def compare(file: str, old: dict[str, Any], new: dict[str, Any], exact: bool) -> list[Row]:
    """Rows for every headline metric and every other metric that changed."""
    before = {k: v for k, v in flatten(old).items() if not k.startswith(IGNORED_PREFIXES)}
    after = {k: v for k, v in flatten(new).items() if not k.startswith(IGNORED_PREFIXES)}
    headline = headline_tolerances(before)
    rows = []
    for key in sorted(before.keys() | after.keys()):
        if ".ci95." in key and not exact and key in before and key in after:
            continue  # intervals move with their metric on another platform
        was, now = before.get(key, "absent"), after.get(key, "absent")
        if key not in before or key not in after:
            rows.append(Row(file, key, was, now, "-", "FAIL: metric appeared or disappeared"))
        elif exact:
            if was != now or key in headline:
                verdict = "ok: identical" if was == now else "FAIL: same platform, must be exact"
                rows.append(Row(file, key, was, now, "0", verdict))
        elif key in headline and _is_number(was) and _is_number(now):
            allowed = headline[key]
            verdict = "ok: within" if abs(now - was) <= allowed else "FAIL: beyond"
            rows.append(Row(file, key, was, now, f"{allowed:.4g}", f"{verdict} tolerance"))
        elif was != now and (
            key.rsplit(".", 1)[-1] in COUNTS or not _is_number(was) or not _is_number(now)
        ):
            rows.append(Row(file, key, was, now, "-", "FAIL: changed (platform-independent)"))
        elif was != now:
            rows.append(Row(file, key, was, now, "-", "moved (not a headline metric; not judged)"))
    return rows


def git_show(rev: str, path: str) -> dict[str, Any] | None:
    """The committed JSON at ``rev:path``, or None when it was not committed there."""
    result = subprocess.run(
        ["git", "show", f"{rev}:{path}"], capture_output=True, text=True, check=False
    )
    return json.loads(result.stdout) if result.returncode == 0 else None


def declared_metrics(dvc_yaml: Path = Path("dvc.yaml")) -> list[str]:
    """The metrics files every stage of ``dvc.yaml`` declares (a ``foreach`` stage's once per
    item, with ``${item}`` filled in)."""
    stages = yaml.safe_load(dvc_yaml.read_text(encoding="utf-8"))["stages"]
    return [
        path.replace("${item}", str(item))
        for stage in stages.values()
        for item in stage.get("foreach", [None])
        for entry in stage.get("do", stage).get("metrics", [])
        for path in [next(iter(entry)) if isinstance(entry, dict) else entry]
    ]


def check_metrics(rev: str) -> tuple[list[Row], list[str]]:
    """Rows for every declared metrics file, and one note per file on how it was judged."""
    rows: list[Row] = []
    notes = []
    for path in declared_metrics():
        old, new_path = git_show(rev, path), Path(path)
        if old is None:
            notes.append(f"{path}: not committed at {rev}; nothing to compare")
            continue
        if not new_path.is_file():
            rows.append(Row(path, "(file)", "committed", "absent", "-", "FAIL: not produced"))
            continue
        new = json.loads(new_path.read_text(encoding="utf-8"))
        old_platform = (old.get("run") or {}).get("platform") or {}
        new_platform = (new.get("run") or {}).get("platform") or {}
        exact = bool(old_platform) and fingerprint(old_platform) == fingerprint(new_platform)
        if exact:
            notes.append(f"{path}: same platform as {rev} ({describe(new_platform)}): exact")
        else:
            differs = [
                k
                for k, v in fingerprint(old_platform).items()
                if fingerprint(new_platform).get(k) != v
            ]
            notes.append(
                f"{path}: another platform than {rev} (differs in {', '.join(differs) or 'all'}; "
                f"committed: {describe(old_platform) if old_platform else 'not recorded'}; "
                f"now: {describe(new_platform)}): headline metrics within their intervals"
            )
        rows += compare(path, old, new, exact)
    return rows, notes


def table(rows: list[Row]) -> str:
    """The rows as a Markdown table."""
    lines = [
        "| file | metric | committed | now | tolerance | verdict |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r.file} | {r.metric} | {r.committed} | {r.now} | {r.tolerance} | {r.verdict} |"
        for r in rows
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dllabs.tooling.reproducibility",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("rev", nargs="?", default="HEAD", help="revision to compare with")
    parser.add_argument(
        "--stale",
        action="store_true",
        help="only check that dvc.lock matches the code and params (no training)",
    )
    args = parser.parse_args(argv)
    if args.stale:
        lines = stale_entries()
        for line in lines:
            print(f"drift: stale: {line}", file=sys.stderr)
        if lines:
            print(
                f"drift: error: dvc.lock is stale in {len(lines)} place(s): the results were not "
                "recomputed after these changes; run `dvc repro` and commit dvc.lock, metrics/ "
                "and reports/",
                file=sys.stderr,
            )
            return 1
        print("drift: dvc.lock matches the code, params and committed results")
        return 0
    rows, notes = check_metrics(args.rev)
    for note in notes:
        print(f"drift: {note}")
    print(table(rows))
    failed = [r for r in rows if r.failed]
    if failed:
        print(
            f"drift: error: {len(failed)} metric(s) did not reproduce {args.rev}", file=sys.stderr
        )
        return 1
    print(f"drift: every metric reproduces {args.rev} ({len(rows)} rows checked; run.* ignored)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
