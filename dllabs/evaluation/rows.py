"""The rows each lab adds to the results table: ``| lab | model | metric | test value | 95%
interval | n |``, from the lab's metrics file. Each lab's record in :mod:`dllabs.labs.registry`
names its builder; :func:`dllabs.evaluation.reports.results_table` puts the rows together.

Formatting only: no NumPy, no Keras, so the registry that names these stays cheap to import.
"""

from __future__ import annotations

from collections.abc import Callable

TRANSFER_PHASE_NAMES = {
    "scratch": "from scratch",
    "feature_extraction": "feature extraction",
    "fine_tune": "fine-tuning",
}
RowBuilder = Callable[[str, dict], list[str]]  # (the lab's label, its metrics) -> rows


def interval(entry: dict, name: str) -> str:
    """``0.9520 to 0.9900 (wilson)`` for ``entry["ci95"][name]``, or a dash."""
    ci = entry.get("ci95", {}).get(name)
    if not ci:
        return "-"
    method = ci["method"].split(" (")[0]
    return f"{ci['low']:.4f} to {ci['high']:.4f} ({method})"


def row(lab: str, model: str, metric: str, entry: dict, name: str) -> str:
    """One row: ``entry[name]`` (± ``entry[name_std]`` when there is one), its interval and n."""
    value = entry.get(name)
    shown = "n/a" if value is None else f"{value:.4f}"
    if f"{name}_std" in entry:
        shown += f" ± {entry[f'{name}_std']:.4f}"
    return f"| {lab} | {model} | {metric} | {shown} | {interval(entry, name)} | {entry['n']} |"


def classifier_rows(model: str) -> RowBuilder:
    """Accuracy and macro F1 of an image classifier called ``model`` in the table."""

    def rows(lab: str, metrics: dict) -> list[str]:
        test = metrics["test"]
        return [
            row(lab, model, "accuracy", test, "accuracy"),
            row(lab, model, "macro F1", test, "macro_f1"),
        ]

    return rows


def anomaly_rows(lab: str, anomaly: dict) -> list[str]:
    model = f"autoencoder, threshold {anomaly['threshold']:.4g} ({anomaly['method']})"
    metrics = (
        ("ROC AUC", "roc_auc"),
        ("PR AUC", "pr_auc"),
        ("F1", "f1"),
        ("precision", "precision"),
        ("recall", "recall"),
    )
    return [row(lab, model, shown, anomaly["test"], key) for shown, key in metrics]


def cbow_rows(lab: str, cbow: dict) -> list[str]:
    models = ((f"CBOW ({cbow['engine']})", cbow), ("gensim defaults (baseline)", cbow["baseline"]))
    scores = (
        ("WordSim-353 Spearman", "wordsim353", "spearman"),
        ("SimLex-999 Spearman", "simlex999", "spearman"),
        ("analogy accuracy", "analogy", "accuracy"),
    )
    return [
        row(lab, model, metric, vectors[key], name)
        for model, vectors in models
        for metric, key, name in scores
    ]


def transfer_rows(lab: str, transfer: dict) -> list[str]:
    if "not_applicable" in transfer:
        return [f"| {lab} | - | not applicable | {transfer['not_applicable']} | - | - |"]
    per = f"{transfer['target_train_size']} labels per class, {transfer['repeats']} draws"
    rows = [
        row(lab, f"{title} ({per})", "accuracy, mean ± std", transfer[phase], "accuracy")
        for phase, title in TRANSFER_PHASE_NAMES.items()
    ]
    differences = transfer["paired_differences"]
    for key in (
        "fine_tune_minus_scratch",
        "feature_extraction_minus_scratch",
        "fine_tune_minus_feature_extraction",
    ):
        first, second = (TRANSFER_PHASE_NAMES[phase] for phase in key.split("_minus_"))
        model, metric = f"{first} minus {second}", "paired accuracy difference, mean ± std"
        rows.append(row(lab, model, metric, differences[key], "accuracy"))
    return rows
