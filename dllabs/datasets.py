"""The processed arrays that training and evaluation stages read.

Training stages ask for ``train`` and ``val`` only; the ``test`` split is read by ``evaluate``
alone, so no training decision can see it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dllabs.outputs import load_npz


@dataclass(frozen=True)
class ImageSplits:
    """uint8 NHWC images per split, with integer labels and the class names."""

    splits: dict[str, tuple[np.ndarray, np.ndarray]]
    class_names: list[str]

    @classmethod
    def load(cls, path: str | Path, splits: tuple[str, ...]) -> ImageSplits:
        names = tuple(f"{k}_{s}" for s in splits for k in "xy")
        arrays = load_npz(path, required=(*names, "class_names"))
        return cls(
            {s: (arrays[f"x_{s}"], arrays[f"y_{s}"]) for s in splits},
            arrays["class_names"].tolist(),
        )

    def __getitem__(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        return self.splits[split]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(next(iter(self.splits.values()))[0].shape[1:])

    @property
    def n_classes(self) -> int:
        return len(self.class_names)
