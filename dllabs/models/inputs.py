"""What a trained model takes as input, recorded beside it, and new data converted to match.

Each Keras lab writes a model folder (``models/mlp/``, ``models/cnn/``, ``models/autoencoder/``):
``model.keras`` and ``summary.json``, whose ``"inputs"`` entry says how ``preprocess`` turned raw
data into the model's input: the image size, colour mode, resampling and class names of an image
classifier; the features, scaling and error measure of the autoencoder. A model folder fetched
alone (``dvc artifacts get``, ``--rev``) is therefore enough to predict with, whatever dataset it
was trained on: ``dl-labs predict`` converts new images and rows with the functions here, the
same ones ``preprocess`` used.

Such a folder may come from anyone, so what predict reads from it is checked against a schema
with bounds (:func:`recorded_inputs`, :func:`transfer_draws`) and then against the model itself
(:func:`check_against_model`); a ``.npy`` array's header is checked against the model and the
file's size before it is read a block at a time (:func:`npy_images`).

Imports no TensorFlow.
"""

from __future__ import annotations

import glob
import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
)

from dllabs.data.arrays import NpyRows
from dllabs.data.readers import IMAGE_SUFFIXES, TableWidthError, decode_image, read_labelled_csv
from dllabs.data.splits import Scaler
from dllabs.errors import DataError
from dllabs.outputs import load_json
from dllabs.params import Autoencoder, ImageSize

MODEL_FILE = "model.keras"
SUMMARY_FILE = "summary.json"
RESIZE = "bilinear"  # readers.decode_image's resampling, the only one preprocess uses
# A summary.json holds a few KB (1,000 class names are about 20 KB); one arriving from a remote
# is read whole, so a larger one is refused unread.
MAX_SUMMARY_BYTES = 16 * 2**20
# The error measures: the losses params.yaml's autoencoder.loss allows.
LOSSES: tuple[str, ...] = get_args(Autoencoder.model_fields["loss"].annotation)


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

    @property
    def summary_file(self) -> Path:
        return self.folder / SUMMARY_FILE

    def summary(self) -> dict:
        return read_summary(self.summary_file)

    def inputs(self, kind: str) -> dict:
        """The recorded ``inputs`` entry, checked against its schema for ``kind`` (``images`` or
        ``rows``)."""
        return recorded_inputs(self.summary(), self.summary_file, kind)


def regular_file(path: Path) -> Path:
    """``path``, refused unless it is a regular file: a FIFO would block the read and a device
    such as ``/dev/zero`` never ends, so neither is opened."""
    if not path.exists():
        raise DataError(f"{path}: not found")
    if not path.is_file():
        raise DataError(f"{path}: not a regular file")
    return path


def read_summary(path: Path) -> dict:
    """A model folder's ``summary.json``: a JSON object of bounded size."""
    summary = load_json(path, max_bytes=MAX_SUMMARY_BYTES)
    if not isinstance(summary, dict):
        raise DataError(
            f"{path}: a JSON {type(summary).__name__}; expected a JSON object (the training "
            "stage's record of the model)"
        )
    return summary


# --- the schema of what a model folder records ----------------------------------------------------
# A model folder may come from anyone (--model, or --rev from a shared remote), so every value
# predict reads from it is checked before it sizes an allocation or picks a code path, then
# checked against the model itself (check_against_model).


class _Record(BaseModel):
    """No unknown keys and no coercion: ``"8"`` is not 8, ``true`` is not 1."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


Finite = Annotated[float, Field(allow_inf_nan=False)]
PositiveFinite = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class ImageInputs(_Record):
    """The ``inputs`` entry of an image classifier, as :func:`image_record` writes it."""

    kind: Literal["images"]
    # The bounds of params.yaml's data.image_size (4 to 1024): no model the pipeline trains
    # takes more (the built-in datasets are 8 to 32 px, the ImageNet base 224), and 1024x1024
    # RGB is 3 MiB an image, so a batch of them still fits in memory (predict sizes its batches
    # by bytes). The model's own input shape must then agree (check_against_model).
    image_size: ImageSize
    color_mode: Literal["grayscale", "rgb"]
    resize: Literal["bilinear"]
    dtype: Literal["uint8"]
    class_names: Annotated[list[str], Field(min_length=1)]

    @field_validator("class_names")
    @classmethod
    def _distinct(cls, names: list[str]) -> list[str]:
        seen: set[str] = set()
        for name in names:
            if name in seen:
                raise ValueError(f"{name!r} appears more than once")
            seen.add(name)
        return names


class Scaling(_Record):
    """``(x - shift) / scale``: one number for every feature, or a list of one per feature."""

    method: Literal["minmax", "standard", "none"]
    shift: Annotated[list[Finite], Field(min_length=1)]
    scale: Annotated[list[PositiveFinite], Field(min_length=1)]

    @field_validator("shift", "scale", mode="before")
    @classmethod
    def _one_for_all(cls, value: Any) -> Any:
        # Scaler.to_json writes a single number where one applies to every feature.
        return value if isinstance(value, list) else [value]


class RowInputs(_Record):
    """The ``inputs`` entry of the autoencoder, as :func:`series_record` writes it."""

    kind: Literal["rows"]
    features: Annotated[int, Field(ge=1)]
    row_shape: Annotated[list[Annotated[int, Field(ge=1)]], Field(min_length=1, max_length=3)]
    scaling: Scaling
    error: str
    normal_labels: Any = None  # shown to no one by predict

    @field_validator("error")
    @classmethod
    def _known_loss(cls, error: str) -> str:
        if error not in LOSSES:
            raise ValueError(f"{error!r} is not a loss the autoencoder trains with")
        return error


class _Phase(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True, frozen=True)

    val_accuracy: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]


class _Draw(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True, frozen=True)

    scratch: _Phase
    feature_extraction: _Phase
    fine_tune: _Phase


class _TransferDraws(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True, frozen=True)

    repeats: Annotated[list[_Draw], Field(min_length=1)]


_SIDE = TypeAdapter(ImageSize).json_schema()["items"]  # the bounds of one side, in pixels
EXPECTED = {
    "kind": "'images' or 'rows'",
    "image_size": f"[height, width] in pixels, whole numbers from {_SIDE['minimum']} to "
    f"{_SIDE['maximum']} (params.yaml's data.image_size range)",
    "color_mode": "'grayscale' or 'rgb'",
    "resize": "'bilinear', the resampling preprocess uses",
    "dtype": "'uint8', the pixels preprocess stores",
    "class_names": "a list of distinct class names (strings), one per output of the model",
    "features": "a whole number of features, 1 or more",
    "row_shape": "a list of whole numbers whose product is the number of features",
    "scaling": "an object with method, shift and scale",
    "scaling.method": "'minmax', 'standard' or 'none'",
    "scaling.shift": "a finite number, or a list of one per feature",
    "scaling.scale": "a finite number above 0, or a list of one per feature",
    "error": f"one of the autoencoder's losses: {', '.join(map(repr, LOSSES))}",
    "repeats": "a list of the draws, each with scratch, feature_extraction and fine_tune",
    "repeats.scratch.val_accuracy": "a number from 0 to 1",
    "repeats.feature_extraction.val_accuracy": "a number from 0 to 1",
    "repeats.fine_tune.val_accuracy": "a number from 0 to 1",
}


def _validated(schema: type[BaseModel], raw: dict, where: Path | str, prefix: str) -> BaseModel:
    """``raw`` checked against ``schema``; the first bad key as one line: the file, the key (with
    ``prefix``, as the file nests it), the value found and what was expected."""
    try:
        return schema.model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
    first = min(errors, key=lambda e: e["type"] != "extra_forbidden")  # unknown keys first
    loc = first["loc"]
    key = prefix + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
    names = ".".join(p for p in loc if isinstance(p, str))
    expected = next(
        (EXPECTED[k] for k in (names, names.rpartition(".")[0], str(loc[0])) if k in EXPECTED),
        "what the training stage writes",
    )
    if first["type"] == "extra_forbidden":
        raise DataError(
            f"{where}: unknown key {key}; expected only {', '.join(schema.model_fields)}"
        )
    if first["type"] == "missing":
        raise DataError(f"{where}: missing key {key}; expected {expected}")
    value: Any = raw
    for part in loc:
        try:
            value = value[part]
        except (KeyError, IndexError, TypeError):
            break
    if first["type"] == "literal_error":  # pydantic's message would repeat the expected values
        raise DataError(f"{where}: {key} = {_short(value)}; expected {expected}")
    reason = first["msg"].removeprefix("Value error, ")
    reason = reason[:1].lower() + reason[1:]
    raise DataError(f"{where}: {key} = {_short(value)}: {reason}; expected {expected}")


def _short(value: Any, limit: int = 60) -> str:
    """A value from a JSON file as it was written there, cut short."""
    text = json.dumps(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def recorded_inputs(summary: dict, where: Path | str, kind: str) -> dict:
    """``summary``'s ``inputs`` entry (read from ``where``), checked to be of ``kind`` and
    against its schema: every value within bounds, before any of them sizes an allocation."""
    record = summary.get("inputs")
    if not isinstance(record, dict) or record.get("kind") != kind:
        raise DataError(
            f"{where}: no record of the model's {kind} inputs "
            "(a model trained before they were recorded: run dvc repro)"
        )
    if kind == "images":
        return _validated(ImageInputs, record, where, "inputs.").model_dump()
    rows = _validated(RowInputs, record, where, "inputs.").model_dump()
    features = rows["features"]
    for key in ("shift", "scale"):
        values = rows["scaling"][key]
        if len(values) not in (1, features):
            raise DataError(
                f"{where}: inputs.scaling.{key} holds {len(values)} numbers; expected one, or one "
                f"per feature ({features})"
            )
    if math.prod(rows["row_shape"]) != features:
        raise DataError(
            f"{where}: inputs.row_shape = {rows['row_shape']} holds {math.prod(rows['row_shape'])} "
            f"values; expected {EXPECTED['row_shape']} ({features})"
        )
    return rows


def transfer_draws(summary: dict, where: Path | str) -> list[dict]:
    """The transfer lab's draws in ``summary`` (read from ``where``), each with every variant's
    validation accuracy, checked against their schema."""
    return _validated(_TransferDraws, summary, where, "").model_dump()["repeats"]


def check_against_model(record: dict, model: Any, where: Path | str, model_file: Path) -> None:
    """A checked ``inputs`` record (read from ``where``) against the model it describes: the
    input shape and, for a classifier, one class name per output. Either can be swapped for
    another alone, so the record's bounds are not enough."""
    taken, given = _one_shape(model.input_shape), _one_shape(model.output_shape)
    if record["kind"] == "images":
        channels = 1 if record["color_mode"] == "grayscale" else 3
        expected = (*record["image_size"], channels)
        if taken is None or len(taken) != 4 or given is None or len(given) != 2:
            raise DataError(
                f"{model_file}: takes {model.input_shape} and gives {model.output_shape}; an image "
                "classifier takes (height, width, channels) and gives one output per class"
            )
        for key, want, got in zip(
            ("image_size", "image_size", "color_mode"), expected, taken[1:], strict=True
        ):
            if got is not None and got != want:
                raise DataError(
                    f"{where}: inputs.{key} says images of {expected} (height, width, channels); "
                    f"the model ({model_file}) takes {tuple(taken[1:])}"
                )
        if given[1] != len(record["class_names"]):
            raise DataError(
                f"{where}: inputs.class_names holds {len(record['class_names'])} names; the model "
                f"({model_file}) gives {given[1]} outputs, expected one name per output"
            )
        return
    features = record["features"]
    if taken is None or taken[1:] != (features,) or given is None or given[1:] != (features,):
        raise DataError(
            f"{where}: inputs.features = {features}; the model ({model_file}) takes rows of "
            f"{model.input_shape} and gives {model.output_shape}, expected ({features},) for both"
        )


def _one_shape(shape: Any) -> tuple | None:
    """A model's input or output shape, or None when it has several."""
    if isinstance(shape, tuple | list) and all(d is None or isinstance(d, int) for d in shape):
        return tuple(shape)
    return None


# --- images ---------------------------------------------------------------------------------


def image_paths(specs: Iterable[str]) -> list[Path]:
    """Image files from files, folders (every image under them, sorted) and glob patterns, in the
    order given; a name that matches nothing, or names no regular file, is refused, naming it."""
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
        elif path.exists() or not glob.has_magic(spec):
            found.append(regular_file(path))
        else:
            matches = sorted(Path(p) for p in glob.glob(str(path), recursive=True))
            files = [p for p in matches if p.is_file()]
            if not files:
                raise DataError(f"{spec}: no file matches the pattern")
            found += files
    return found


def image_shape(record: dict) -> tuple[int, int, int]:
    """``(height, width, channels)`` of the images a checked ``inputs`` record describes."""
    height, width = record["image_size"]
    return height, width, 1 if record["color_mode"] == "grayscale" else 3


@dataclass(frozen=True)
class NpyImages:
    """A ``.npy`` array of uint8 images checked against the model (:func:`npy_images`), read a
    block of images at a time: memory holds one block, however large the file."""

    rows: NpyRows
    shape: tuple[int, int, int]  # (height, width, channels), as the model takes them

    def blocks(self, size: int) -> Iterator[tuple[range, np.ndarray]]:
        """``(indices, images)`` of at most ``size`` images each, in order."""
        for start in range(0, len(self.rows), size):
            block = self.rows[start : start + size]
            yield range(start, start + len(block)), block.reshape(len(block), *self.shape)


def npy_images(path: Path, record: dict) -> NpyImages:
    """A ``.npy`` array of images already at the model's size: uint8 ``(n, height, width[,
    channels])`` on a 0..255 scale, as ``preprocess`` writes them. Only the header is read here:
    its order, dtype and shape are checked, and its size against the file's (:class:`NpyRows`),
    before anything is allocated."""
    rows = NpyRows(path)
    expected = image_shape(record)
    if rows.dtype != np.uint8:
        raise DataError(f"{path}: dtype {rows.dtype}, expected uint8 pixels (0..255)")
    shape = rows.shape if len(rows.shape) != 3 or expected[2] != 1 else (*rows.shape, 1)
    if tuple(shape[1:]) != expected:
        raise DataError(
            f"{path}: images of shape {tuple(shape[1:])}, the model takes {expected} "
            "(n, height, width, channels)"
        )
    return NpyImages(rows, expected)


def decode_images(files: list[Path], record: dict) -> np.ndarray:
    """Image files converted and resized exactly as ``preprocess`` converted the model's training
    images: uint8 ``(n, height, width, channels)``."""
    size = tuple(record["image_size"])
    out = np.empty((len(files), *image_shape(record)), np.uint8)
    for i, file in enumerate(files):
        out[i] = decode_image(file, size, record["color_mode"])
    return out


def image_chunks(
    files: list[Path], record: dict, chunk: int
) -> Iterator[tuple[list[str], np.ndarray]]:
    """``(names, images)`` a chunk at a time: ``.npy`` arrays read ``chunk`` images at a time
    (``name[i]``), image files decoded ``chunk`` at a time, so any number of images passes in
    bounded memory. Every array's header is checked now, before the first chunk is read."""
    arrays = {file: npy_images(file, record) for file in files if file.suffix.lower() == ".npy"}
    return _chunks(files, record, chunk, arrays)


def _chunks(
    files: list[Path], record: dict, chunk: int, arrays: dict[Path, NpyImages]
) -> Iterator[tuple[list[str], np.ndarray]]:
    def decoded(paths: list[Path]) -> tuple[list[str], np.ndarray]:
        return [str(p) for p in paths], decode_images(paths, record)

    pending: list[Path] = []
    for file in files:
        if file not in arrays:
            pending.append(file)
            if len(pending) == chunk:
                yield decoded(pending)
                pending = []
            continue
        if pending:
            yield decoded(pending)
            pending = []
        for rows, block in arrays[file].blocks(chunk):
            yield [f"{file}[{i}]" for i in rows], block
    if pending:
        yield decoded(pending)


# --- rows -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rows:
    """Rows to score, scaled as the autoencoder's training rows were, with labels if given."""

    x: np.ndarray
    labels: np.ndarray | None


# Overflow is checked for below, row by row: NumPy's warnings would only add lines to stderr.
@np.errstate(over="ignore", invalid="ignore")
def read_rows(path: str | Path, record: dict, label_column: int | str | None = None) -> Rows:
    """A CSV or UCR (whitespace-separated) file of feature rows, with or without a header and a
    label column, checked against the model's features and scaled with its training scaling.
    A row that is not finite once scaled (beyond float32's range) is refused, naming it."""
    path = regular_file(Path(path))
    features = record["features"]
    try:  # the width is checked against the file's first line, before the rows are parsed
        table = read_labelled_csv(path, label_column, features=features)
    except TableWidthError as exc:
        unnamed_label = label_column is None and exc.columns == features + 1
        hint = "; pass --label-column to name the label column" if unnamed_label else ""
        raise DataError(f"{exc}{hint}") from None
    labels = table.labels if label_column is not None else None
    x = Scaler.from_json(record["scaling"]).apply(table.x)
    bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
    if len(bad):
        raise DataError(
            f"{path}: data row {bad[0] + 1}: values beyond float32's range (about 3.4e38) once "
            "scaled as the model's training rows were; expected numbers the model can take"
        )
    return Rows(x, labels)
