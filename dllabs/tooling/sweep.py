"""Tabulate a queued sweep of the transfer lab over labels per class, from DVC's experiments.

Run the sweep, then write its report::

    dvc exp run --queue -S 'transfer.target_train_size=2,5,10,25,50'
    dvc queue start && dvc queue status    # wait until every experiment has run
    python -m dllabs.tooling.sweep --out reports/transfer_sweep.md --title "digits 0-4 -> 5-9"

Each row is one experiment (the latest one per size; the workspace counts as one): scratch,
feature extraction and fine-tuning as mean ± standard deviation over ``transfer.repeats`` draws,
and the paired differences with their 95% t intervals. A difference is called only when its
interval excludes zero and it is larger than one test image; otherwise the row says the draws
cannot tell the two apart.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

SIZE = "transfer.target_train_size"
METRICS = "metrics/transfer.json"
PHASES = {
    "scratch": "from scratch",
    "feature_extraction": "feature extraction",
    "fine_tune": "fine-tuning",
}
DIFFERENCES = {
    "fine_tune_minus_scratch": ("fine-tuning", "scratch"),
    "feature_extraction_minus_scratch": ("feature extraction", "scratch"),
    "fine_tune_minus_feature_extraction": ("fine-tuning", "feature extraction"),
}


def _get(row: dict[str, Any], key: str) -> Any:
    """A value of ``dvc.api.exp_show``'s row: metrics under ``file:key``, params by key."""
    for name in (f"{METRICS}:{key}", f"params.yaml:{key}", key):
        if name in row and row[name] is not None:
            return row[name]
    return None


def by_size(rows: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """The latest experiment (or the workspace) for each ``transfer.target_train_size``."""
    chosen: dict[int, dict[str, Any]] = {}
    for row in rows:
        size, accuracy = _get(row, SIZE), _get(row, "scratch.accuracy")
        if size is None or accuracy is None:
            continue
        created = str(row.get("Created") or "")
        if int(size) not in chosen or created > str(chosen[int(size)].get("Created") or ""):
            chosen[int(size)] = row
    return dict(sorted(chosen.items()))


def _verdict(mean: float, low: float, high: float, n: int, first: str, second: str) -> str:
    """Call a difference only when its interval excludes 0 and it exceeds one test image: with
    few draws a constant one-image difference has a zero-width interval, which proves little.
    """
    if abs(mean) <= 1 / n + 1e-6 or low <= 0 <= high:
        return "no clear difference"
    return f"{first} ahead" if mean > 0 else f"{second} ahead"


def report(rows: list[dict[str, Any]], title: str) -> str:
    """The sweep as Markdown."""
    sizes = by_size(rows)
    if not sizes:
        raise ValueError(f"no experiment with {SIZE} and {METRICS} found; run the sweep first")
    any_row = next(iter(sizes.values()))
    n = int(_get(any_row, "test_images"))
    lines = [
        f"# Transfer learning sweep: {title}",
        "",
        f"Test accuracy on {n} target test images, mean ± std over "
        f"{int(_get(any_row, 'repeats'))} draws of labelled images per size (the three models of "
        "a draw share its images). Differences are paired, per draw, with a 95% t interval over "
        "the draws; a difference is called only when the interval excludes 0 and the difference "
        "is more than one test image. Validation "
        "accuracy (the only thing used to choose settings) is in brackets.",
        "",
        "| labels per class | "
        + " | ".join(PHASES.values())
        + " | "
        + " | ".join(f"{a} − {b}" for a, b in DIFFERENCES.values())
        + " |",
        "|---|" + "---|" * (len(PHASES) + len(DIFFERENCES)),
    ]
    for size, row in sizes.items():
        cells = []
        for phase in PHASES:
            mean, std = _get(row, f"{phase}.accuracy"), _get(row, f"{phase}.accuracy_std")
            val = _get(row, f"{phase}.validation_accuracy")
            cells.append(f"{mean:.3f} ± {std:.3f} [{val:.3f}]")
        for key, (first, second) in DIFFERENCES.items():
            mean = _get(row, f"paired_differences.{key}.accuracy")
            low = _get(row, f"paired_differences.{key}.ci95.accuracy.low")
            high = _get(row, f"paired_differences.{key}.ci95.accuracy.high")
            cells.append(
                f"{mean:+.3f} ({low:+.3f} to {high:+.3f}): "
                f"{_verdict(mean, low, high, n, first, second)}"
            )
        lines.append(f"| {size} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dllabs.tooling.sweep",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", type=Path, required=True, help="the Markdown report to write")
    parser.add_argument("--title", default="default data", help="what the sweep ran on")
    args = parser.parse_args(argv)
    import dvc.api

    try:
        text = report(dvc.api.exp_show(), args.title)
    except ValueError as error:
        print(f"sweep: error: {error}", file=sys.stderr)
        return 1
    args.out.write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
