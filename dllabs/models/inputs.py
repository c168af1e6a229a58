"""What a trained model takes as input, recorded beside it, and new data converted to match.

Each Keras lab writes a model folder (``models/mlp/``, ``models/cnn/``, ``models/autoencoder/``):
``model.keras`` and ``summary.json``, whose ``"inputs"`` entry says how ``preprocess`` turned raw
data into the model's input: the image size, colour mode, resampling and class names of an image
classifier; the features, scaling and error measure of the autoencoder. A model folder fetched
alone (``dvc artifacts get``, ``--rev``) is therefore enough to predict with, whatever dataset it
was trained on: ``dl-labs predict`` converts new images and rows with the functions here, the
same ones ``preprocess`` used.

Imports no TensorFlow.
"""

from __future__ import annotations

import glob
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dllabs.data.readers import IMAGE_SUFFIXES, decode_image, read_labelled_csv
from dllabs.data.splits import Scaler
from dllabs.errors import DataError
from dllabs.outputs import load_json

MODEL_FILE = "model.keras"
SUMMARY_FILE = "summary.json"
RESIZE = "bilinear"  # readers.decode_image's resampling, the only one preprocess uses


def image_record(input_shape: tuple[int, ...], class_names: list[str]) -> dict:
    """The ``inputs`` entry of an image classifier: how to turn an image file into its input."""
    height, width, channels = (int(d) for d in input_shape)
    return {
        "kind": "images",
        "image_size": [height, width],
        "color_mode": "grayscale" if channels == 1 else "rgb",
        "resize": RESIZE,
        "dtype": "uint8",  # 0..255; the model rescales inside itself
        "class_names": [str(name) for name in class_names],
    }


def series_record(series_summary: dict, loss: str) -> dict:
    """The ``inputs`` entry of the autoencoder: the features it reads, the scaling fitted on its
    training rows (``preprocess``), and the loss its reconstruction error is measured with."""
    return {
        "kind": "rows",
        "features": int(series_summary["features"]),
        "row_shape": [int(d) for d in series_summary["row_shape"]],
        "scaling": series_summary["scaling"],
        "error": loss,
        "normal_labels": series_summary.get("normal_labels"),
    }


@dataclass(frozen=True)
class ModelFolder:
    """A model folder: ``model.keras`` and the ``summary.json`` recorded beside it."""

    folder: Path

    @property
    def model_file(self) -> Path:
        return self.folder / MODEL_FILE

    def summary(self) -> dict:
        return load_json(self.folder / SUMMARY_FILE)

    def inputs(self, kind: str) -> dict:
        """The recorded ``inputs`` entry, checked to be of ``kind`` (``images`` or ``rows``)."""
        return recorded_inputs(self.summary(), self.folder / SUMMARY_FILE, kind)


def recorded_inputs(summary: dict, where: Path | str, kind: str) -> dict:
    """``summary``'s ``inputs`` entry (read from ``where``), checked to be of ``kind``."""
    record = summary.get("inputs")
    if not isinstance(record, dict) or record.get("kind") != kind:
        raise DataError(
            f"{where}: no record of the model's {kind} inputs "
            "(a model trained before they were recorded: run dvc repro)"
        )
    return record


# --- images ---------------------------------------------------------------------------------


def image_paths(specs: Iterable[str]) -> list[Path]:
    """Image files from files, folders (every image under them, sorted) and glob patterns, in the
    order given; a name that matches nothing is refused, naming it."""
    found: list[Path] = []
    for spec in specs:
        path = Path(spec).expanduser()
        if path.is_dir():
            files = sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            )
            if not files:
                raise DataError(f"{path}: folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
            found += files
        elif path.is_file():
            found.append(path)
        elif glob.has_magic(spec):
            matches = sorted(Path(p) for p in glob.glob(str(path), recursive=True))
            files = [p for p in matches if p.is_file()]
            if not files:
                raise DataError(f"{spec}: no file matches the pattern")
            found += files
        else:
            raise DataError(f"{path}: not found")
    return found


def image_array(path: Path, record: dict) -> np.ndarray:
    """A ``.npy`` array of images already at the model's size: uint8 ``(n, height, width[,
    channels])`` on a 0..255 scale, as ``preprocess`` writes them."""
    try:
        x = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable .npy array ({exc})") from None
    height, width = record["image_size"]
    channels = 1 if record["color_mode"] == "grayscale" else 3
    if x.ndim == 3 and channels == 1:
        x = x[..., np.newaxis]
    if x.shape[1:] != (height, width, channels):
        raise DataError(
            f"{path}: images of shape {tuple(x.shape[1:])}, the model takes "
            f"({height}, {width}, {channels}) (n, height, width, channels)"
        )
    if x.dtype != np.uint8:
        raise DataError(f"{path}: dtype {x.dtype}, expected uint8 pixels (0..255)")
    return x


def decode_images(files: list[Path], record: dict) -> np.ndarray:
    """Image files converted and resized exactly as ``preprocess`` converted the model's training
    images: uint8 ``(n, height, width, channels)``."""
    size = tuple(record["image_size"])
    out = np.empty((len(files), *size, 1 if record["color_mode"] == "grayscale" else 3), np.uint8)
    for i, file in enumerate(files):
        out[i] = decode_image(file, size, record["color_mode"])
    return out


def image_chunks(
    files: list[Path], record: dict, chunk: int
) -> Iterator[tuple[list[str], np.ndarray]]:
    """``(names, images)`` a chunk at a time: ``.npy`` arrays row by row (``name[i]``), image
    files decoded ``chunk`` at a time, so any number of images passes in bounded memory."""

    def decoded(paths: list[Path]) -> tuple[list[str], np.ndarray]:
        return [str(p) for p in paths], decode_images(paths, record)

    pending: list[Path] = []
    for file in files:
        if file.suffix.lower() != ".npy":
            pending.append(file)
            if len(pending) == chunk:
                yield decoded(pending)
                pending = []
            continue
        if pending:
            yield decoded(pending)
            pending = []
        array = image_array(file, record)
        for start in range(0, len(array), chunk):
            rows = range(start, min(start + chunk, len(array)))
            yield [f"{file}[{i}]" for i in rows], array[rows.start : rows.stop]
    if pending:
        yield decoded(pending)


# --- rows -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rows:
    """Rows to score, scaled as the autoencoder's training rows were, with labels if given."""

    x: np.ndarray
    labels: np.ndarray | None


def read_rows(path: str | Path, record: dict, label_column: int | str | None = None) -> Rows:
    """A CSV or UCR (whitespace-separated) file of feature rows, with or without a header and a
    label column, checked against the model's features and scaled with its training scaling."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: not found")
    features = record["features"]
    table = read_labelled_csv(path, label_column)
    columns = table.x.shape[1]
    if columns != features:
        what = (
            f"{columns} feature columns besides the label column"
            if label_column is not None
            else f"{columns} columns"
        )
        hint = (
            "; pass --label-column to name the label column"
            if label_column is None and columns == features + 1
            else ""
        )
        raise DataError(f"{path}: {what}, the model takes {features} features{hint}")
    labels = table.labels if label_column is not None else None
    return Rows(Scaler.from_json(record["scaling"]).apply(table.x), labels)
