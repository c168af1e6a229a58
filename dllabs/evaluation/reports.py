"""Test-set numbers and pictures for ``evaluate``: classification metrics and image grids."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dllabs.evaluation.stats import bootstrap, macro_f1, wilson
from dllabs.labs.registry import LABS
from dllabs.provenance import describe


def classification_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, class_names: list[str]
) -> dict[str, object]:
    """Accuracy and macro F1 with their 95% intervals and the test-set size ``n``, and
    precision/recall/F1/support per class (by class name).
    """
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

    labels = list(range(len(class_names)))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    per_class = {
        name: {
            "precision": round(float(precision[i]), 6),
            "recall": round(float(recall[i]), 6),
            "f1": round(float(f1[i]), 6),
            "support": int(support[i]),
        }
        for i, name in enumerate(class_names)
    }
    n_classes = len(class_names)
    return {
        "n": len(y_true),
        "accuracy": round(float(accuracy_score(y_true, y_pred)), 6),
        "macro_f1": round(
            float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)), 6
        ),
        "ci95": {
            "accuracy": wilson(int(np.sum(y_true == y_pred)), len(y_true)),
            "macro_f1": bootstrap(lambda t, p: macro_f1(t, p, n_classes), y_true, y_pred),
        },
        "per_class": per_class,
    }


def misclassified_grid(
    images: np.ndarray,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    class_names: list[str],
    path: str | Path,
    title: str,
    limit: int = 36,
) -> int:
    """Save a PNG grid of (up to ``limit``) misclassified images titled 'true -> predicted'.

    Returns how many test images were misclassified in all.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    wrong = np.flatnonzero(y_true != y_pred)
    shown = wrong[:limit]
    columns = 6
    rows = max(1, int(np.ceil(len(shown) / columns)))
    fig, axes = plt.subplots(
        rows, columns, figsize=(columns * 1.6, rows * 1.8 + 0.6), squeeze=False
    )
    for ax in axes.flat:
        ax.axis("off")
    for ax, index in zip(axes.flat, shown, strict=False):
        image = images[index]
        gray = image.shape[-1] == 1
        ax.imshow(image[..., 0] if gray else image, cmap="gray" if gray else None, vmin=0, vmax=255)
        ax.set_title(f"{class_names[y_true[index]]} -> {class_names[y_pred[index]]}", fontsize=8)
    if not len(shown):
        axes.flat[0].text(0.5, 0.5, "no misclassified test images", ha="center", va="center")
    summary = (
        f"{title}: {len(wrong)} of {len(y_true)} test images misclassified (true -> predicted)"
    )
    fig.suptitle(summary, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return len(wrong)


def error_histogram(
    errors: np.ndarray, is_anomaly: np.ndarray, threshold: float, path: str | Path
) -> None:
    """Histogram of test reconstruction errors, normal vs anomalous, with the threshold line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    is_anomaly = np.asarray(is_anomaly, dtype=bool)
    bins = np.histogram_bin_edges(errors, bins=50)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.hist(errors[~is_anomaly], bins=bins, alpha=0.6, label=f"normal ({(~is_anomaly).sum()})")
    ax.hist(errors[is_anomaly], bins=bins, alpha=0.6, label=f"anomalous ({is_anomaly.sum()})")
    ax.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.4f}")
    ax.set_xlabel("reconstruction error")
    ax.set_ylabel("test rows")
    ax.set_title("Test reconstruction errors")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def reconstructions_figure(
    rows: np.ndarray,
    reconstructed: np.ndarray,
    row_shape: tuple[int, ...],
    labels: list[str],
    path: str | Path,
) -> None:
    """Inputs next to their reconstructions: images as images, series as line plots."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(rows)
    as_image = len(row_shape) == 2
    fig, axes = plt.subplots(
        2 if as_image else 1, n, figsize=(n * 1.8, 4 if as_image else 2.4), squeeze=False
    )
    for i in range(n):
        if as_image:
            for row, data, name in ((0, rows[i], "input"), (1, reconstructed[i], "reconstruction")):
                ax = axes[row, i]
                ax.imshow(np.asarray(data).reshape(row_shape), cmap="gray")
                ax.set_title(f"{labels[i]} {name}" if row == 0 else name, fontsize=7)
                ax.axis("off")
        else:
            ax = axes[0, i]
            ax.plot(rows[i], label="input")
            ax.plot(reconstructed[i], label="reconstruction")
            ax.fill_between(range(len(rows[i])), rows[i], reconstructed[i], alpha=0.3, color="red")
            ax.set_title(labels[i], fontsize=8)
            ax.tick_params(labelsize=6)
    if not as_image:
        axes[0, 0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# Views of the lab registry, by lab name: the metrics file's name, and the summary's pictures.
LAB_FILES = {name: Path(lab.metrics).name for name, lab in LABS.items()}
PLOT_FILES = {title: path for lab in LABS.values() for title, path in lab.plots.items()}


def results_table(labs: dict[str, dict]) -> str:
    """Every lab's headline test metrics with their 95% interval and test-set size, one row each
    (labs missing from ``labs`` are left out).

    The same table opens ``reports/summary.md`` and the documentation's pages (``python -m
    dllabs.tooling.result_tables``), so the published numbers are the committed metrics, never typed
    by hand.
    """
    rows = [
        "| lab | model | metric | test value | 95% interval | n |",
        "|---|---|---|---|---|---|",
        *(
            row
            for name, lab in LABS.items()
            if name in labs
            for row in lab.rows(lab.label, labs[name])
        ),
    ]
    return "\n".join(rows) + "\n"


def runs_table(labs: dict[str, dict]) -> str:
    """Where and how long each lab trained, and on what platform (``run`` in each metrics file)."""
    rows = ["| lab | device | training time | platform |", "|---|---|---|---|"]
    for lab, metrics in labs.items():
        run = metrics.get("run", {})
        seconds = run.get("train_seconds")
        time_ = "-" if seconds is None else f"{seconds:.1f} s"
        platform = describe(run["platform"]) if run.get("platform") else "not recorded"
        rows.append(f"| {lab} | {run.get('device', '-')} | {time_} | {platform} |")
    return "\n".join(rows) + "\n"


def summary_markdown(labs: dict[str, dict], architectures: dict[str, str]) -> str:
    """One Markdown page with every lab's headline test metrics, device and training time.

    Meant to be read in a pull request, where relative links do not resolve: the architecture
    tables (``architectures``: title -> table) are inlined as collapsed sections, and the plots
    are named with the commands that render them.
    """
    lines = [
        "# Lab results",
        "",
        "Test-split metrics written by each lab's evaluation stage (`dvc metrics show` lists every "
        "number), each with its 95% interval and the number of test items `n`: Wilson for "
        "proportions, a seeded bootstrap for F1, AUC and Spearman's rho, and for the transfer lab "
        "a t interval over its draws of labelled images.",
        "",
        results_table(labs),
        "## Runs",
        "",
        "Device, training time and platform of the run that produced each number. Timings differ "
        "between runs; on the same platform every other number reproduces exactly.",
        "",
        runs_table(labs),
        "## Architectures",
        "",
        "Layer by layer, with output shapes, activation sizes and parameters.",
        "",
        *(
            line
            for title, table in architectures.items()
            for line in (f"<details><summary>{title}</summary>", "", _body(table), "</details>", "")
        ),
        "## Plots",
        "",
        "`dvc plots show` renders every training curve, confusion matrix and ROC/PR curve; "
        "`dvc plots diff main` compares them with another revision. Images (DVC outputs, present "
        "after `dvc repro` or `dvc pull`):",
        "",
        *(f"- [{title}](../plots/evaluate/{name})" for title, name in PLOT_FILES.items()),
        "",
    ]
    return "\n".join(lines)


def _body(markdown: str) -> str:
    """``markdown`` without its leading ``#`` title line, so it nests under another heading."""
    lines = markdown.strip().splitlines()
    return "\n".join(lines[1:] if lines and lines[0].startswith("# ") else lines).strip() + "\n"


def run_info(training: dict) -> dict:
    """Where and how long a model trained (timings differ between runs), and the platform."""
    return {
        "device": training["device"],
        "train_seconds": round(training["train_seconds"], 2),
        "platform": training.get("platform"),
    }
