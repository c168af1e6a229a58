"""``reports/tune_<study>.md``: what a person looks at after a search.

The best trial (its params, its validation score and, read once after the search, its test score
with a 95% interval), the ten best trials, Optuna's parameter importances, and two figures
(``reports/tune_<study>/``): the optimization history and the slices of the most important
params.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

REPORTS = Path("reports")
TOP = 10
SLICES = 4  # params shown in the slice figure, the most important first


def report_path(study_name: str) -> Path:
    return REPORTS / f"tune_{study_name}.md"


def write_report(study: Any, settings: dict[str, Any], test: dict[str, Any] | None) -> Path:
    """Write the study's report and figures; return the report's path."""
    import optuna

    name = study.study_name
    trials = study.get_trials(deepcopy=False)
    states = optuna.trial.TrialState
    count = {s: sum(t.state == s for t in trials) for s in states}
    complete = sorted(
        (t for t in trials if t.state == states.COMPLETE), key=lambda t: t.value, reverse=True
    )
    objective = f"{settings['objective']} ({settings['metrics']})"
    lines = [
        f"# Parameter search `{name}`: lab {settings['lab']}",
        "",
        f"{len(trials)} trials: {count[states.COMPLETE]} complete, {count[states.PRUNED]} pruned, "
        f"{count[states.FAIL]} failed, {count[states.RUNNING]} running. Sampler "
        f"{settings['sampler']} (seed {settings['seed']}), pruner {settings['pruner']}; search "
        f"space `{settings['space']}`{_fixed(settings)}. Each trial is the DVC experiment "
        f"`{name}-<trial>` "
        "(`dvc exp show`, `dvc exp apply`).",
        "",
        f"The objective is the validation {objective}, maximised; no trial reads the test split. "
        "The test split is read once, after the search, for the best trial alone.",
        "",
    ]
    if not complete:
        lines += ["No trial has completed yet.", ""]
    else:
        best = complete[0]
        lines += [
            f"## Best trial: {best.number}",
            "",
            f"Validation {settings['objective']}: **{best.value:.4f}** "
            f"(experiment `{best.user_attrs.get('experiment', '')}`)",
            "",
        ]
        if test is not None:
            interval = (
                f"{test['low']:.4f} to {test['high']:.4f}, " if test.get("low") is not None else ""
            )
            shown = test["key"].removeprefix("test.")
            lines += [
                f"Test {shown}, read once: **{test['value']:.4f}** ({interval}n = "
                f"{test['n']}; experiment `{test['experiment']}`)",
                "",
            ]
        lines += ["| param | value |", "|---|---|"]
        lines += [f"| `{key}` | {_short(value)} |" for key, value in best.params.items()]
        lines += ["", f"## The {min(TOP, len(complete))} best trials", ""]
        keys = list(best.params)
        lines += [
            "| trial | validation | " + " | ".join(f"`{k}`" for k in keys) + " |",
            "|---|---|" + "---|" * len(keys),
        ]
        for t in complete[:TOP]:
            values = " | ".join(_short(t.params.get(k, "")) for k in keys)
            lines.append(f"| {t.number} | {t.value:.4f} | {values} |")
        lines += ["", *importances(study), *figures(study, complete, settings["objective"])]
    path = report_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")
    return path


def importances(study: Any) -> list[str]:
    """Optuna's parameter importances (its default evaluator, PED-ANOVA), or why there are none
    yet."""
    import optuna

    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(complete) < 2:  # Optuna would call every param equally important
        return [
            "## Parameter importances",
            "",
            "Not computed: they need two complete trials at least.",
            "",
        ]
    try:
        found = ranked_importances(study)
    except (ValueError, RuntimeError) as exc:  # a single param's value, and the like
        return ["## Parameter importances", "", f"Not computed: {exc}", ""]
    rows = [f"| `{key}` | {value:.3f} |" for key, value in found.items()]
    return [
        "## Parameter importances",
        "",
        "Optuna's PED-ANOVA: how far each param's values among the best trials lie from its "
        "values over all complete trials (the shares sum to 1).",
        "",
        "| param | importance |",
        "|---|---|",
        *rows,
        "",
    ]


def ranked_importances(study: Any) -> dict[str, float]:
    """Optuna's importances, most important first; its warnings (few trials) kept off the
    command's output."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return optuna.importance.get_param_importances(study)


def _short(value: Any) -> str:
    """A param's value as shown: floats to four significant digits."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def figures(study: Any, complete: list[Any], objective: str) -> list[str]:
    """The optimization history and the slices of the most important params, as PNG files
    beside the report; the Markdown that shows them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization import matplotlib as plots

    folder = REPORTS / f"tune_{study.study_name}"
    folder.mkdir(parents=True, exist_ok=True)
    shown = []
    with warnings.catch_warnings():
        # Optuna marks its matplotlib plots experimental; matplotlib widens the axis of a
        # history of one trial, and says so.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.simplefilter("ignore", UserWarning)
        axes = plots.plot_optimization_history(study, target_name=f"validation {objective}")
        axes.figure.set_size_inches(7, 4)
        axes.figure.savefig(folder / "history.png", dpi=100, bbox_inches="tight")
        plt.close(axes.figure)
        shown.append(
            (
                "history.png",
                "Optimization history: each complete trial's validation score and the best so far",
            )
        )
        try:
            ranked = list(ranked_importances(study)) if len(complete) > 1 else []
        except (ValueError, RuntimeError):
            ranked = []
        ranked = ranked or list(complete[0].params)
        axes = plots.plot_slice(
            study, params=ranked[:SLICES], target_name=f"validation {objective}"
        )
        panels = list(axes.flat) if hasattr(axes, "flat") else [axes]
        for panel in panels:
            # A categorical param's values (a list of filters) are long labels side by side.
            if any(not _is_number(label.get_text()) for label in panel.get_xticklabels()):
                panel.tick_params(axis="x", labelrotation=30)
                for label in panel.get_xticklabels():
                    label.set_horizontalalignment("right")
        figure = panels[0].figure
        figure.set_size_inches(3.2 * min(SLICES, len(ranked)), 3.4)
        figure.savefig(folder / "slice.png", dpi=100, bbox_inches="tight")
        plt.close(figure)
        shown.append(
            (
                "slice.png",
                "Validation score against each of the most important "
                "params, one point per complete trial",
            )
        )
    lines = ["## Figures", ""]
    for file, caption in shown:
        lines += [f"![{caption}](tune_{study.study_name}/{file})", "", f"*{caption}.*", ""]
    return lines


def _is_number(text: str) -> bool:
    """Whether a tick label reads as a number (or is blank, as numeric ticks are until drawn)."""
    try:
        float(text.replace("\N{MINUS SIGN}", "-") or 0)
    except ValueError:
        return False
    return True


def _fixed(settings: dict[str, Any]) -> str:
    """The overrides every trial got, as the command line gave them."""
    fixed = settings.get("set") or []
    return "; every trial with " + " ".join(f"`-S {o}`" for o in fixed) if fixed else ""
