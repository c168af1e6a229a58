"""``dl-labs predict``: every lab's trained model on new data, from this workspace or any revision.

The lab sheets end with "make predictions on new data". Each lab reads what its training recorded
beside the model (:mod:`dllabs.models.inputs`), so a model trained on another dataset converts its
inputs as it was trained:

- ``mlp``, ``cnn``, ``transfer``: image files, folders or glob patterns (or ``.npy`` arrays of
  images at the model's size) -> the top-k classes with their probabilities;
- ``anomaly``: a CSV or UCR file of rows -> reconstruction error, the saved threshold, the flag;
- ``cbow``: ``most_similar`` for words, ``predict_output_word`` for a context, and analogies,
  with out-of-vocabulary words reported in the output;
- ``imagenet``: the top ImageNet classes of the pretrained EfficientNet-Lite0 itself, before any
  transfer (the lab sheet's first step: load a pretrained network and use it), offline.

``--rev`` (a commit, branch, tag or experiment name) reads that revision's models through DVC
from the local cache or the configured remote, into a temporary folder: the workspace is not
touched. Bad input gives one line naming it and exit status 1, with nothing on stdout: the
output is spooled to a temporary file and printed once every input has been predicted.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import math
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dllabs.errors import DataError, stage_errors
from dllabs.labs.registry import LABS
from dllabs.models.inputs import (
    SUMMARY_FILE,
    ModelFolder,
    check_against_model,
    image_chunks,
    image_paths,
    image_shape,
    read_rows,
    read_summary,
    recorded_inputs,
    regular_file,
    transfer_draws,
)
from dllabs.outputs import load_json
from dllabs.prediction.batches import Predictor
from dllabs.prediction.revisions import Source, model_source
from dllabs.training.backend import quiet_tensorflow_start

BATCH = 256  # images decoded and predicted at a time; the next batch is decoded meanwhile
# Large images make smaller batches: the decoded batch, the one decoded meanwhile and the model's
# float32 copy stay near 5 x this many bytes (a batch of 256 RGB images is 12 MB at 128x128, but
# 768 MB at 1024x1024; so those go 10 at a time).
BATCH_BYTES = 32 * 2**20
# Output is written here first and copied to stdout once every input has been predicted: a bad
# file halfway through leaves no partial table, and a large output waits on disk, not in memory.
SPOOL_BYTES = 8 * 2**20

# Where the pipeline writes each lab's models (dvc.yaml's outputs and artifacts).
THRESHOLD_PATH = "models/anomaly_threshold.json"
TRANSFER_VARIANTS = ("scratch", "feature_extraction", "fine_tune")


# --- the labs ---------------------------------------------------------------------------------


@dataclass
class Table:
    """What to print: ``records`` (JSON's items, in order; a generator is consumed once, as
    :func:`write` prints) and the columns of the text table and CSV, whose rows are each
    record's ``rows_of`` (by default the record itself)."""

    columns: list[str]
    records: Iterable[dict[str, Any]]
    rows_of: Callable[[dict[str, Any]], list[dict[str, Any]]] | None = None
    note: str = ""
    decimals: int = 4  # of numbers in the table (JSON and CSV keep 6)


def load_keras(path: Path) -> Any:
    """The model at ``path``. TensorFlow's native notices while it starts (CUDA stubs, absl) are
    dropped: they would fill a user's terminal on every call. Python errors still show."""
    from dllabs.models.loading import load_model

    if path.exists():
        regular_file(path)  # a FIFO or a device: load_model would call it missing
    return load_model(path)


def checked_model(model_file: Path, record: dict, where: Path | str) -> Any:
    """The model at ``model_file``, checked against its ``inputs`` record (read from ``where``)."""
    model = load_keras(model_file)
    check_against_model(record, model, where, model_file)
    return model


def images_per_batch(record: dict) -> int:
    """:data:`BATCH`, or fewer where that many images would pass :data:`BATCH_BYTES`."""
    return max(1, min(BATCH, BATCH_BYTES // math.prod(image_shape(record))))


def predict_images(model: Any, record: dict, specs: list[str], top: int) -> Table:
    """Top-``top`` classes per image, images converted as ``preprocess`` converted the model's
    training images; the next chunk is decoded while the model predicts the current one. The
    inputs are listed (and every ``.npy`` header checked) now, the images read as the table's
    records are consumed."""
    names = record["class_names"]
    top = min(top, len(names))
    batch = images_per_batch(record)
    chunks = image_chunks(image_paths(specs), record, batch)

    def records() -> Iterator[dict[str, Any]]:
        predict = Predictor(model, batch)
        with ThreadPoolExecutor(max_workers=1) as decoder:
            pending = decoder.submit(next, chunks, None)
            while (chunk := pending.result()) is not None:
                pending = decoder.submit(next, chunks, None)
                labels, images = chunk
                probabilities = predict(images).astype(np.float64)
                bad = np.flatnonzero(~np.isfinite(probabilities).all(axis=1))
                if len(bad):
                    raise DataError(
                        f"{labels[bad[0]]}: the model's output is NaN or infinite "
                        f"({', '.join(str(v) for v in probabilities[bad[0]][:4])}): a model "
                        "whose weights are not finite"
                    )
                ranked = np.argsort(-probabilities, axis=1, kind="stable")[:, :top]
                for name, p, best in zip(labels, probabilities, ranked, strict=True):
                    predictions = [
                        {"class": names[k], "probability": round(float(p[k]), 6)} for k in best
                    ]
                    yield {"input": name, "predictions": predictions}

    def rows_of(record: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            {"input": record["input"], "rank": r + 1, **entry}
            for r, entry in enumerate(record["predictions"])
        ]

    return Table(["input", "rank", "class", "probability"], records(), rows_of)


def predict_rows(model: Any, record: dict, threshold: float, path: str, label_column: Any) -> Table:
    """Reconstruction error per row against the saved threshold: above it, an anomaly. An error
    that is not a finite number compares false with any threshold, so it would pass as a normal
    row: it is refused instead, naming the row."""
    from dllabs.labs.anomaly import reconstruction_errors

    rows = read_rows(path, record, label_column)
    reconstructed = Predictor(model, BATCH)(rows.x).astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):  # checked just below
        errors = reconstruction_errors(rows.x, reconstructed, record["error"])
    bad = np.flatnonzero(~np.isfinite(errors))
    if len(bad):
        more = f", and {len(bad) - 1} more row(s)" if len(bad) > 1 else ""
        raise DataError(
            f"{path}: data row {bad[0] + 1}: reconstruction error {errors[bad[0]]}{more}: the "
            "autoencoder's output overflowed or is NaN on it, so it cannot be compared with the "
            "threshold (rows far outside the training range, or a model whose weights are not "
            "finite)"
        )
    out = []
    for i, error in enumerate(errors):
        row = {
            "row": i + 1,
            "error": round(float(error), 6),
            "threshold": round(threshold, 6),
            "anomaly": bool(error > threshold),
        }
        if rows.labels is not None:
            row["label"] = str(rows.labels[i])
        out.append(row)
    flagged = sum(r["anomaly"] for r in out)
    columns = ["row", "error", "threshold", "anomaly"] + (
        ["label"] if rows.labels is not None else []
    )
    note = f"{flagged} of {len(out)} rows above the threshold {threshold:.6g}"
    return Table(columns, out, note=note, decimals=6)


def parse_analogy(text: str) -> tuple[list[str], list[str]]:
    """``king - man + woman`` -> positive [king, woman], negative [man]."""
    tokens = text.replace("+", " + ").replace("-", " - ").split()
    positive: list[str] = []
    negative: list[str] = []
    sign = "+"
    for token in tokens:
        if token in "+-":
            sign = token
            continue
        (positive if sign == "+" else negative).append(token.lower())
        sign = "+"
    if not positive:
        raise DataError(
            f"--analogy {text!r}: expected words joined by + and -, as 'king - man + woman'"
        )
    return positive, negative


def query_words(model: Any, args: argparse.Namespace) -> Table:
    """``most_similar``, ``predict_output_word`` and analogies; unknown words become rows that
    say so, not errors."""
    from dllabs.labs.word2vec import analogy, centre_words, similar_words

    rows: list[dict[str, Any]] = []

    def add(query: str, found: list[tuple[str, float]] | None, missing: list[str]) -> None:
        note = f"not in the vocabulary: {', '.join(missing)}" if missing else ""
        if not found:
            rows.append(
                {
                    "query": query,
                    "rank": "",
                    "word": "",
                    "score": "",
                    "note": note or "no prediction (needs negative sampling)",
                }
            )
        for rank, (word, score) in enumerate(found or [], start=1):
            rows.append(
                {"query": query, "rank": rank, "word": word, "score": round(score, 6), "note": note}
            )

    for word in args.similar or []:
        word = word.lower()
        found = similar_words(model, word, args.top)
        add(f"similar {word}", found, [word] if found is None else [])
    if args.context:
        context = [w.lower() for w in args.context]
        found, missing = centre_words(model, context, args.top)
        add(f"context {' '.join(context)}", found, missing)
    for text in args.analogy or []:
        positive, negative = parse_analogy(text)
        found, missing = analogy(model, positive, negative, args.top)
        shown = " + ".join(positive) + "".join(f" - {w}" for w in negative)
        add(f"analogy {shown}", found, missing)
    return Table(["query", "rank", "word", "score", "note"], rows)


def transfer_model(
    source: Source, folder: str, variant: str, repeat: int | None
) -> tuple[Path, dict, str, Path]:
    """The transfer model file of ``variant``: draw ``repeat``, or by default the draw with the
    best validation accuracy (the test split plays no part in the choice); with its checked
    inputs record, the choice in words and the summary it came from."""
    where = source.path(f"{folder}/{SUMMARY_FILE}")
    summary = read_summary(where)
    if "not_applicable" in summary:
        raise DataError(f"{folder}: the transfer lab did not apply: {summary['not_applicable']}")
    inputs = recorded_inputs(summary, where, "images")
    draws = transfer_draws(summary, where)
    if repeat is None:
        repeat = max(range(len(draws)), key=lambda r: draws[r][variant]["val_accuracy"])
    elif not 0 <= repeat < len(draws):
        raise DataError(f"--repeat {repeat}: {folder} holds draws 0 to {len(draws) - 1}")
    chosen = f"repeat {repeat} of {len(draws)}, {variant}"
    return source.path(f"{folder}/repeat_{repeat}/{variant}.keras"), inputs, chosen, where


# --- the command line -------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--rev", help="a commit, branch, tag or experiment name (default: the workspace)"
    )
    common.add_argument("--model", help="the model folder (default: the pipeline's, under models/)")
    form = common.add_mutually_exclusive_group()
    form.add_argument("--json", dest="format", action="store_const", const="json")
    form.add_argument("--csv", dest="format", action="store_const", const="csv")
    common.set_defaults(format="table")
    common.add_argument("--top", type=int, default=3, help="how many classes or words (default 3)")

    main = argparse.ArgumentParser(
        prog="dl-labs predict", description="Predict with a lab's trained model on new data."
    )
    labs = main.add_subparsers(dest="lab", required=True, metavar="LAB")
    for lab, help_text in (("mlp", "lab 1: the feedforward network"), ("cnn", "lab 2: the CNN")):
        images = labs.add_parser(lab, parents=[common], help=help_text)
        images.add_argument(
            "inputs", nargs="+", help="image files, folders, glob patterns or .npy arrays"
        )
    transfer = labs.add_parser("transfer", parents=[common], help="lab 5: a transfer model")
    transfer.add_argument(
        "inputs", nargs="+", help="image files, folders, glob patterns or .npy arrays"
    )
    transfer.add_argument("--variant", choices=TRANSFER_VARIANTS, default="fine_tune")
    transfer.add_argument("--repeat", type=int, help="which draw (default: best on validation)")
    anomaly = labs.add_parser("anomaly", parents=[common], help="lab 3: the autoencoder detector")
    anomaly.add_argument("rows", help="a CSV or UCR (whitespace-separated) file of rows")
    anomaly.add_argument(
        "--label-column", help="the rows' label column: a header name or an index (-1 = last)"
    )
    anomaly.add_argument("--threshold", help=f"threshold file (default: {THRESHOLD_PATH})")
    cbow = labs.add_parser("cbow", parents=[common], help="lab 4: the CBOW word vectors")
    cbow.add_argument("--similar", nargs="+", metavar="WORD", help="most_similar for each word")
    cbow.add_argument(
        "--context", nargs="+", metavar="WORD", help="predict_output_word for a context"
    )
    cbow.add_argument("--analogy", action="append", metavar="EXPR", help="'king - man + woman'")
    imagenet = labs.add_parser(
        "imagenet",
        parents=[common],
        help="lab 5, step 1: the ImageNet classes of the pretrained EfficientNet-Lite0",
    )
    imagenet.add_argument(
        "inputs", nargs="+", help="image files, folders, glob patterns or .npy arrays"
    )
    return main


def run(args: argparse.Namespace, source: Source) -> Table:
    """The lab's table for the parsed command line."""
    if args.top < 1:
        raise DataError(f"--top {args.top}: expected 1 or more")
    if args.lab == "imagenet":
        if args.rev or args.model:
            raise DataError(
                "predict imagenet: the network installed with the project; no --rev or --model"
            )
        from dllabs.models import efficientnet_lite

        model = efficientnet_lite.imagenet_classifier()
        size = efficientnet_lite.IMAGE_SIZE
        record = {
            "image_size": [size, size],
            "color_mode": "rgb",
            "class_names": efficientnet_lite.imagenet_class_names(),
        }
        table = predict_images(model, record, args.inputs, args.top)
        table.note = "EfficientNet-Lite0 trained on ImageNet (1,000 classes), as installed"
        return table
    folder = args.model or LABS[args.lab].model
    if args.lab == "cbow":
        if not (args.similar or args.context or args.analogy):
            raise DataError("predict cbow: give --similar, --context or --analogy")
        from dllabs.models.word2vec_files import load_word2vec

        model = load_word2vec(_cbow_folder(source.path(folder)))
        return query_words(model, args)
    if args.lab == "anomaly":
        local = ModelFolder(source.path(folder))
        record = local.inputs("rows")
        from dllabs.labs.anomaly import saved_threshold

        threshold_file = source.path(args.threshold or THRESHOLD_PATH)
        if threshold_file.exists():
            regular_file(threshold_file)
        threshold = saved_threshold(load_json(threshold_file), threshold_file)
        label_column = _column(args.label_column)
        model = checked_model(local.model_file, record, local.summary_file)
        return predict_rows(model, record, threshold, args.rows, label_column)
    if args.lab == "transfer":
        model_file, record, chosen, where = transfer_model(
            source, folder, args.variant, args.repeat
        )
        table = predict_images(
            checked_model(model_file, record, where), record, args.inputs, args.top
        )
        table.note = f"transfer model: {chosen}"
        return table
    local = ModelFolder(source.path(folder))
    record = local.inputs("images")
    model = checked_model(local.model_file, record, local.summary_file)
    return predict_images(model, record, args.inputs, args.top)


def write(table: Table, form: str, out: Any = None) -> None:
    """``table`` as ``json``, ``csv`` or an aligned text table, on ``out`` (standard output).

    Every record is predicted and formatted into a temporary file first (in memory while small),
    then copied out: an error on a later input leaves nothing printed, and memory holds no more
    than the spool's limit however many records there are. JSON holds no NaN or Infinity (not
    JSON); the text table shows control characters in file and class names as escapes, so that
    a newline in a name cannot split a row or an escape sequence reach the terminal (CSV quotes
    such names and JSON escapes them, both exactly).
    """
    out = out or sys.stdout
    rows_of = table.rows_of or (lambda record: [record])
    with _spool() as spool:
        if form == "json":
            _write_json(table.records, spool)
        elif form == "csv":
            writer = csv.DictWriter(spool, fieldnames=table.columns, lineterminator="\n")
            writer.writeheader()
            for record in table.records:
                writer.writerows(rows_of(record))
        else:
            _write_text(table, rows_of, spool)
        spool.seek(0)
        shutil.copyfileobj(spool, out)


@contextmanager
def _spool() -> Iterator[Any]:
    # surrogateescape: a file name that is not UTF-8 travels through as its own bytes
    with tempfile.SpooledTemporaryFile(
        SPOOL_BYTES, mode="w+", encoding="utf-8", errors="surrogateescape", newline=""
    ) as spool:
        yield spool


def _write_json(records: Iterable[dict[str, Any]], out: Any) -> None:
    """``json.dump(list(records), out, indent=2)``, a record at a time."""
    first = True
    for record in records:
        try:
            text = json.dumps(record, indent=2, allow_nan=False)
        except ValueError:  # predict_* refuse such numbers first; this keeps the promise anyway
            raise DataError(
                f"{str(record)[:200]}: holds a number that is not finite, which JSON cannot hold"
            ) from None
        out.write(("[\n" if first else ",\n") + "\n".join(f"  {line}" for line in text.split("\n")))
        first = False
    out.write("[]\n" if first else "\n]\n")


def _write_text(table: Table, rows_of: Callable, out: Any) -> None:
    """The aligned table: cells are spooled as JSON lines while the columns' widths are found,
    then laid out."""

    def cell(value: Any) -> str:
        return f"{value:.{table.decimals}f}" if isinstance(value, float) else printable(str(value))

    widths = [len(c) for c in table.columns]
    with _spool() as cells:
        for record in table.records:
            for row in rows_of(record):
                line = [cell(row.get(c, "")) for c in table.columns]
                widths = [max(w, len(v)) for w, v in zip(widths, line, strict=True)]
                cells.write(json.dumps(line) + "\n")
        cells.seek(0)
        for line in itertools.chain([table.columns], (json.loads(text) for text in cells)):
            out.write(
                "  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip() + "\n"
            )


def printable(text: str) -> str:
    """``text`` with every character that is not printable (control characters, line and
    paragraph separators, bidirectional overrides, unpaired surrogates) as its Python escape:
    ``a\\nb`` for a newline."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def main(argv: list[str] | None = None) -> None:
    quiet_tensorflow_start()  # its start-up notices would bury the one line of an error
    args = parser().parse_args(argv)
    with stage_errors("predict"), model_source(args.rev) as source:
        table = run(args, source)
        write(table, args.format)
        if table.note:
            print(f"predict: {table.note}", file=sys.stderr)


def _cbow_folder(folder: Path) -> Path:
    """The CBOW lab's folder holds the model in ``word2vec/``; the model folder itself is also
    accepted (``--model models/cbow/word2vec``)."""
    return folder / "word2vec" if (folder / "word2vec").is_dir() else folder


def _column(value: str | None) -> int | str | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return value
