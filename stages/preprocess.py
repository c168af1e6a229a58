"""Stage ``preprocess``: raw data to split arrays that the training stages read.

Images (MLP, CNN and transfer labs):
  uint8 ``(n, height, width, channels)`` arrays on a 0..255 scale with integer labels; models
  rescale inside themselves, so nothing here is normalised. A deterministic, stratified
  train/val/test split from ``base.seed``; a source's own test split (MNIST, Fashion-MNIST,
  CIFAR-10, a ``test/`` folder) is kept, and validation is carved from its training rows.
  Written as a folder of plain ``.npy`` files (``x_train.npy``, ``y_train.npy``, ... and
  ``class_names.npy``) that training stages read a batch of rows at a time. An image folder is
  split on its file list and decoded ``DECODE_CHUNK`` images at a time straight into its split's
  file, so a folder larger than memory passes through in bounded memory.

Series (anomaly lab):
  float32 rows. Training holds normal rows only; validation and test hold both, labelled
  ``1 = anomaly``. Scaling (``data.anomaly_scaling``) is fitted on the training rows only.

Each output gets a small JSON beside it with shapes, class names and counts.
Imports no TensorFlow.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dllabs.data import sources
from dllabs.data.arrays import NpyWriter, save_npy
from dllabs.data.readers import ImageFiles, ImageSet, canonical_label
from dllabs.data.splits import anomaly_indices, fit_scaler, stratified_indices
from dllabs.errors import DataError, stage_errors
from dllabs.outputs import save_json, save_npz, staged_outputs
from dllabs.params import Params, load_params
from dllabs.stage_args import parse_paths

# Images decoded from a folder at once: about 20 MB at 160x160 RGB, whatever the folder's size.
DECODE_CHUNK = 256


def split_images(raw: sources.RawImages, params: Params) -> dict[str, ImageSet]:
    """Train/val/test image sets: the source's own splits where it has them, else stratified."""
    split, seed = params.data.split, params.base.seed
    train, val, test = raw.train, raw.val, raw.test
    test_fraction = 0.0 if test is not None else split.test_fraction
    val_fraction = 0.0 if val is not None else split.val_fraction
    if test_fraction or val_fraction:
        # Fractions are of all rows; with a source test split they apply to its training rows.
        names = train.class_names
        idx = stratified_indices(train.y, val_fraction, test_fraction, seed, raw.named(), names)
        pick = {  # take(): image files are picked by row too, still undecoded
            part: ImageSet(train.x.take(rows, axis=0), train.y[rows], names)
            for part, rows in vars(idx).items()
        }
        train = pick["train"]
        val = pick["val"] if val is None else val
        test = pick["test"] if test is None else test
    return {"train": train, "val": val, "test": test}


def save_image_sets(folder: Path, sets: dict[str, ImageSet]) -> None:
    """One ``.npy`` per array in ``folder``: ``x_<split>``, ``y_<split>`` and ``class_names``.

    Images still in files are decoded ``DECODE_CHUNK`` at a time and appended to their split's
    file (its header, with the known shape, written first); the bytes are ``numpy.save``'s either
    way, so in-memory and streamed sources give files alike, and reruns identical ones.
    """
    for split, images in sets.items():
        x = images.x
        with NpyWriter(folder / f"x_{split}.npy", x.shape, x.dtype) as writer:
            for start in range(0, len(x), DECODE_CHUNK):
                stop = start + DECODE_CHUNK
                writer.write(x.decode(start, stop) if isinstance(x, ImageFiles) else x[start:stop])
        save_npy(folder / f"y_{split}.npy", images.y)
    save_npy(folder / "class_names.npy", np.asarray(sets["train"].class_names, dtype=str))


def image_summary(source: str, sets: dict[str, ImageSet]) -> dict:
    names = sets["train"].class_names
    return {
        "source": source,
        "class_names": names,
        "image_shape": list(sets["train"].x.shape[1:]),
        "dtype": "uint8",
        "splits": {
            split: {
                "rows": len(s.y),
                "per_class": {
                    names[k]: int(v)
                    for k, v in zip(*np.unique(s.y, return_counts=True), strict=True)
                },
            }
            for split, s in sets.items()
        },
    }


def normal_labels(rows: sources.RawRows, params: Params) -> list[str]:
    """The labels counted as normal: ``data.normal_label``, else the source's convention."""
    configured = params.data.normal_label
    if configured is None:
        if rows.default_normal is None:
            raise DataError(f"data.normal_label: required when data.anomaly is '{rows.source}'")
        configured = rows.default_normal
    wanted = [
        canonical_label(v) for v in (configured if isinstance(configured, list) else [configured])
    ]
    present = sorted(set(rows.rows.labels.tolist()))
    missing = [label for label in wanted if label not in present]
    if missing:
        shown = ", ".join(present[:20]) + (" ..." if len(present) > 20 else "")
        raise DataError(
            f"data.normal_label: {', '.join(missing)} not among the labels of the "
            f"{rows.source} data ({shown})"
        )
    if len(wanted) == len(present):
        raise DataError("data.normal_label: every label is normal; nothing is left as an anomaly")
    return wanted


def split_series(rows: sources.RawRows, params: Params) -> tuple[dict[str, np.ndarray], dict]:
    """Normal-only training rows, mixed validation/test rows, scaling fitted on training rows."""
    normal = normal_labels(rows, params)
    labels = rows.rows.labels
    is_anomaly = ~np.isin(labels, normal)
    split = params.data.split
    idx = anomaly_indices(
        is_anomaly, split.val_fraction, split.test_fraction, params.base.seed, what=rows.source
    )
    scaler = fit_scaler(rows.rows.x[idx.train], params.data.anomaly_scaling)
    arrays: dict[str, np.ndarray] = {"row_shape": np.asarray(rows.row_shape, dtype=np.int64)}
    counts = {}
    for name in ("train", "val", "test"):
        rows_of = getattr(idx, name)
        arrays[f"x_{name}"] = scaler.apply(rows.rows.x[rows_of])
        arrays[f"y_{name}"] = is_anomaly[rows_of].astype(np.int8)
        arrays[f"label_{name}"] = labels[rows_of]
        counts[name] = {
            "rows": len(rows_of),
            "normal": int((~is_anomaly[rows_of]).sum()),
            "anomalous": int(is_anomaly[rows_of].sum()),
        }
    summary = {
        "source": rows.source,
        "row_shape": list(rows.row_shape),
        "features": int(rows.rows.x.shape[1]),
        "normal_labels": normal,
        "anomaly_label": 1,
        "scaling": scaler.to_json(),
        "splits": counts,
    }
    return arrays, summary


def main(argv: list[str] | None = None) -> None:
    with stage_errors("preprocess"):
        params = load_params()
        args = parse_paths(
            argv,
            "preprocess",
            __doc__,
            raw_images="raw image folder",
            raw_anomaly="raw anomaly folder",
            images="output folder of .npy arrays",
            images_summary="output summary (.json)",
            series="output arrays (.npz)",
            series_summary="output summary (.json)",
        )
        size = tuple(params.data.image_size)
        with sources.shown_paths(args.raw_images):  # errors name the user's image files
            raw_images = sources.read_images(args.raw_images, size, params.data.color_mode)
            image_sets = split_images(raw_images, params)
        with sources.shown_paths(args.raw_anomaly):  # errors name the user's CSV file
            rows = sources.read_anomaly_rows(args.raw_anomaly, params.data.label_column)
        series, series_info = split_series(rows, params)
        report = counts_report(raw_images.source, image_sets, rows.source, series_info)

        # Every check has run: only writing is left, and a failure there discards it all.
        with staged_outputs() as out:
            with sources.shown_paths(args.raw_images):  # images are decoded as they are written
                save_image_sets(out.dir(args.images), image_sets)
            save_json(out.file(args.images_summary), image_summary(raw_images.source, image_sets))
            save_npz(out.file(args.series), series)
            save_json(out.file(args.series_summary), series_info)
        print("\n".join(report))


def counts_report(
    image_source: str, sets: dict[str, ImageSet], series_source: str, series_info: dict
) -> list[str]:
    """What ``preprocess`` prints: each split's shape and rows per class."""
    shapes = {split: s.x.shape for split, s in sets.items()}
    lines = [f"preprocess: images from {image_source}: {shapes}"]
    for split, images in sets.items():
        counts = np.bincount(images.y, minlength=len(images.class_names))
        pairs = [f"{c}: {n}" for c, n in zip(images.class_names, counts, strict=True)]
        more = f", ... ({len(pairs)} classes)" if len(pairs) > 20 else ""
        lines.append(
            f"preprocess: {split}: {int(counts.sum())} images: {', '.join(pairs[:20])}{more}"
        )
    lines.append(f"preprocess: series from {series_source}: {series_info['splits']}")
    return lines


if __name__ == "__main__":
    main()
