"""Stage ``evaluate``: every lab's test results on one page, ``reports/summary.md``.

Each lab is scored by its own stage (``evaluate_classifier@mlp``, ``evaluate_classifier@cnn``,
``evaluate_anomaly``, ``evaluate_cbow``, ``evaluate_transfer``), so a change to one lab reruns
that lab's evaluation and this summary only, and a lab that fails (``dvc repro --keep-going``)
leaves the others' metrics written. This stage runs last and reads only what they wrote: the
metrics JSON of every lab and the architecture tables of the image classifiers.
"""

from __future__ import annotations

from pathlib import Path

from dllabs.errors import DataError, one_line, stage_errors
from dllabs.evaluation.reports import results_table, runs_table, summary_markdown
from dllabs.labs.registry import LABS, classifier_labs
from dllabs.outputs import load_json, staged_outputs
from dllabs.stage_args import parse_paths


def lab_metrics(lab: str, path: Path) -> dict:
    """A lab's metrics file, checked to hold what the summary shows (one line naming the file
    and the missing entry, where a hand-edited or foreign file would end in a traceback)."""
    metrics = load_json(path)
    try:
        results_table({lab: metrics})
        runs_table({lab: metrics})
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        problem = f"no {exc.args[0]!r} entry" if isinstance(exc, KeyError) else one_line(exc)
        raise DataError(
            f"{path}: not the metrics lab {lab}'s evaluation stage writes ({problem}); "
            "rerun it (dvc repro)"
        ) from None
    return metrics


def main(argv: list[str] | None = None) -> None:
    with stage_errors("evaluate"):
        args = parse_paths(
            argv,
            "evaluate",
            __doc__,
            **{f"{lab}_metrics": f"lab {lab}'s metrics (.json)" for lab in LABS},
            **{f"{lab}_report": f"{lab.upper()} architecture (.md)" for lab in classifier_labs()},
            summary="output summary of every lab (.md)",
        )
        labs = {lab: lab_metrics(lab, getattr(args, f"{lab}_metrics")) for lab in LABS}
        architectures = {
            f"{name.upper()} architecture": getattr(args, f"{name}_report").read_text("utf-8")
            for name in classifier_labs()
        }
        with staged_outputs() as out:
            out.file(args.summary).write_text(summary_markdown(labs, architectures), "utf-8")
        print(f"evaluate: {args.summary}: the results of {len(labs)} labs")


if __name__ == "__main__":
    main()
