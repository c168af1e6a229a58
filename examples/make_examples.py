"""Write the example inputs of docs/guides/predictions.md's commands (committed; rerun to remake).

From scikit-learn's bundled 8x8 digits, the offline default data: one image per digit, scaled up
to 32x32 PNGs so that ``predict`` has to resize them as ``preprocess`` would, and twelve rows of
64 pixel values (0..16) with their digit in a ``label`` column, for the anomaly detector.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

HERE = Path(__file__).resolve().parent


def main() -> None:
    digits = load_digits()
    images, labels = digits.images, digits.target
    folder = HERE / "digits"
    folder.mkdir(exist_ok=True)
    for digit in range(10):
        index = int(np.flatnonzero(labels == digit)[-1])  # the last of each digit in the set
        pixels = (images[index] * 255 / 16).round().astype(np.uint8)
        Image.fromarray(pixels, "L").resize((32, 32), Image.Resampling.NEAREST).save(
            folder / f"digit_{digit}.png"
        )
    # Six zeros (the normal digit of the default anomaly lab) and six other digits.
    rows = [
        *np.flatnonzero(labels == 0)[-6:],
        *(np.flatnonzero(labels == d)[-1] for d in (1, 3, 5, 7, 8, 9)),
    ]
    with (HERE / "digit_rows.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*(f"pixel_{i}" for i in range(64)), "label"])
        for i in rows:
            writer.writerow([*(int(v) for v in images[i].reshape(-1)), int(labels[i])])


if __name__ == "__main__":
    main()
