"""Test-set numbers and pictures for ``evaluate``: classification metrics and image grids."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def classification_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, class_names: list[str]
) -> dict[str, object]:
    """Accuracy, macro F1, and precision/recall/F1/support per class (by class name)."""
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
    return {
        "accuracy": round(float(accuracy_score(y_true, y_pred)), 6),
        "macro_f1": round(
            float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)), 6
        ),
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
