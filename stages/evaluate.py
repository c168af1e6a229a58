"""Stage ``evaluate``: every lab's test results on one page, ``reports/summary.md``.

Each lab is scored by its own stage (``evaluate_classifier@mlp``, ``evaluate_classifier@cnn``,
``evaluate_anomaly``, ``evaluate_cbow``, ``evaluate_transfer``), so a change to one lab reruns
that lab's evaluation and this summary only, and a lab that fails (``dvc repro --keep-going``)
leaves the others' metrics written. This stage runs last and reads only what they wrote: the
metrics JSON of every lab and the architecture tables of the two image classifiers.
"""

from __future__ import annotations

from dllabs.cli import parse_paths
from dllabs.errors import stage_errors
from dllabs.outputs import load_json, staged_outputs
from dllabs.reports import LAB_FILES, summary_markdown


def main(argv: list[str] | None = None) -> None:
    with stage_errors("evaluate"):
        args = parse_paths(
            argv, "evaluate", __doc__,
            **{f"{lab}_metrics": f"lab {lab}'s metrics (.json)" for lab in LAB_FILES},
            mlp_report="MLP architecture (.md)", cnn_report="CNN architecture (.md)",
            summary="output summary of every lab (.md)",
        )  # fmt: skip
        labs = {lab: load_json(getattr(args, f"{lab}_metrics")) for lab in LAB_FILES}
        architectures = {
            f"{name.upper()} architecture": getattr(args, f"{name}_report").read_text("utf-8")
            for name in ("mlp", "cnn")
        }
        with staged_outputs() as out:
            out.file(args.summary).write_text(summary_markdown(labs, architectures), "utf-8")
        print(f"evaluate: {args.summary}: the results of {len(labs)} labs")


if __name__ == "__main__":
    main()
