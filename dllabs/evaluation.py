"""What every ``evaluate_*`` stage shares: loading a saved model safely, and where it trained.

Each lab has its own evaluation stage (``evaluate_classifier@mlp``, ``@cnn``,
``evaluate_anomaly``, ``evaluate_cbow``, ``evaluate_transfer``), so one lab's failure or change
leaves the others' metrics alone; ``evaluate`` then collects them into ``reports/summary.md``.
These stages are the only readers of the test split.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from dllabs.errors import DataError

if TYPE_CHECKING:
    import keras


def load_model(path: Path) -> keras.Model:
    """A saved ``.keras`` model, loaded without running any serialized code."""
    import keras  # here, so that the gensim-only stages never import TensorFlow

    if not path.is_file():
        raise DataError(f"{path}: not found; run the training stage that writes it (dvc repro)")
    try:
        return keras.models.load_model(path, safe_mode=True)
    except (OSError, ValueError) as exc:
        raise DataError(
            f"{path}: not a loadable Keras model ({' '.join(str(exc).split())[:200]})"
        ) from None


def run_info(training: dict) -> dict:
    """Where and how long a model trained (timings differ between runs), and the platform."""
    return {
        "device": training["device"],
        "train_seconds": round(training["train_seconds"], 2),
        "platform": training.get("platform"),
    }
