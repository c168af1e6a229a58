"""The dataset registry: every source the labs can read, and how ``download`` materialises it.

Three kinds of source:

- **bundled** (the offline defaults): scikit-learn's 8x8 ``digits``; gensim's Lee corpus and its
  word-similarity and analogy evaluation files. They ship with the dependencies.
- **remote**, pinned by the hash their publisher gives (:data:`REMOTE`): MNIST and CIFAR-10 by the
  SHA-256 in Keras's dataset modules, Fashion-MNIST by the MD5 sums in Zalando's README. ECG5000's
  ``ecg.csv`` and the Gutenberg text of Alice have no published hash: the SHA-256 seen on download
  is recorded in the manifest (so ``dvc.lock`` pins it), and params may give an expected one.
- **bring-your-own**: an image folder, a CSV file, a text file, copied in so DVC versions them.

Each materialised folder holds the files and a ``manifest.json`` naming the source and the SHA-256
of every file; ``preprocess`` and ``tokenize`` read the manifest, not params, to know what they got.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dllabs.errors import DataError
from dllabs.fetch import RemoteFile, fetch, file_hash
from dllabs.outputs import load_json, load_npz, save_json, save_npz
from dllabs.readers import (
    IMAGE_SUFFIXES,
    ImageSet,
    LabelledRows,
    folder_splits,
    list_image_folder,
    read_cifar_batch,
    read_idx,
    read_labelled_csv,
    read_text,
    safe_extract_tar,
)

MANIFEST = "manifest.json"
KERAS_DATASETS = "https://storage.googleapis.com/tensorflow/tf-keras-datasets"
ZALANDO = "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion"

REMOTE: dict[str, tuple[RemoteFile, ...]] = {
    # keras/src/datasets/mnist.py
    "mnist": (
        RemoteFile(
            "mnist.npz",
            f"{KERAS_DATASETS}/mnist.npz",
            "sha256:731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1",
        ),
    ),
    # github.com/zalandoresearch/fashion-mnist README, "Get the Data"
    "fashion_mnist": (
        RemoteFile(
            "train-images-idx3-ubyte.gz",
            f"{ZALANDO}/train-images-idx3-ubyte.gz",
            "md5:8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        ),
        RemoteFile(
            "train-labels-idx1-ubyte.gz",
            f"{ZALANDO}/train-labels-idx1-ubyte.gz",
            "md5:25c81989df183df01b3e8a0aad5dffbe",
        ),
        RemoteFile(
            "t10k-images-idx3-ubyte.gz",
            f"{ZALANDO}/t10k-images-idx3-ubyte.gz",
            "md5:bef4ecab320f06d8554ea6380940ec79",
        ),
        RemoteFile(
            "t10k-labels-idx1-ubyte.gz",
            f"{ZALANDO}/t10k-labels-idx1-ubyte.gz",
            "md5:bb300cfdad3c16e7a12a480ee83cd310",
        ),
    ),
    # keras/src/datasets/cifar10.py
    "cifar10": (
        RemoteFile(
            "cifar-10-python.tar.gz",
            "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
            "sha256:6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
        ),
    ),
    # The file TensorFlow's autoencoder tutorial reads; no hash is published.
    "ecg5000": (
        RemoteFile(
            "ecg.csv", "https://storage.googleapis.com/download.tensorflow.org/data/ecg.csv"
        ),
    ),
    # Project Gutenberg revises its texts; no hash is published.
    "alice": (RemoteFile("11-0.txt", "https://www.gutenberg.org/files/11/11-0.txt"),),
}

FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip
LEE_CORPUS = "lee_background.cor"
TEXT_EVAL_FILES = ("wordsim353.tsv", "simlex999.txt", "questions-words.txt")


@dataclass(frozen=True)
class Materialised:
    """What ``download`` wrote for one lab: the source name and the manifest it saved."""

    source: str
    manifest: dict


def remote_files(source: str, expected_sha256: str | None = None) -> tuple[RemoteFile, ...]:
    """The pinned files of a remote source; ``expected_sha256`` pins a single unpinned file."""
    files = REMOTE[source]
    if expected_sha256 is None:
        return files
    (only,) = files
    return (RemoteFile(only.name, only.url, f"sha256:{expected_sha256}"),)


def write_digits(dest: Path) -> Materialised:
    """scikit-learn's bundled 8x8 digits (1,797 images, 4-bit intensities 0..16)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    arrays = {
        "images": digits.images.astype(np.uint8),
        "labels": digits.target.astype(np.int64),
    }
    save_npz(dest / "digits.npz", arrays)
    files = {"digits.npz": {"sha256": file_hash(dest / "digits.npz")}}
    return _finish(dest, "digits", files, origin="sklearn.datasets.load_digits")


def copy_remote(dest: Path, source: str, expected_sha256: str | None = None) -> Materialised:
    """Fetch (or reuse from the cache) each pinned file of ``source`` and place it in ``dest``."""
    files: dict[str, dict] = {}
    for remote in remote_files(source, expected_sha256):
        cached, sha256 = fetch(remote)
        files[remote.name] = {"sha256": sha256, "pinned": remote.known_hash, "origin": remote.url}
        if remote.name.endswith((".tar.gz", ".tgz", ".tar")):
            safe_extract_tar(cached, dest)
        else:
            shutil.copyfile(cached, dest / remote.name)
    return _finish(dest, source, files)


def copy_gensim_file(dest: Path, name: str) -> str:
    """Copy one of gensim's bundled test-data files into ``dest``; return its SHA-256."""
    from gensim.test.utils import datapath

    source = Path(datapath(name))
    if not source.is_file():
        raise DataError(f"{source}: gensim's bundled {name} is missing; reinstall gensim")
    shutil.copyfile(source, dest / name)
    return file_hash(dest / name)


def write_lee(dest: Path) -> Materialised:
    """gensim's English Lee news corpus (one document per line)."""
    files = {LEE_CORPUS: {"sha256": copy_gensim_file(dest, LEE_CORPUS)}}
    return _finish(dest, "lee", files, origin="gensim.test.utils.datapath")


def write_text_eval(dest: Path) -> Materialised:
    """gensim's bundled WordSim-353, SimLex-999 and Google analogy files."""
    files = {name: {"sha256": copy_gensim_file(dest, name)} for name in TEXT_EVAL_FILES}
    return _finish(dest, "gensim_eval", files, origin="gensim.test.utils.datapath")


def copy_image_folder(dest: Path, folder: str | Path) -> Materialised:
    """Copy a bring-your-own image folder (class folders, or split folders of class folders),
    its split layout checked first so that errors name the user's folder, not the copy.
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise DataError(f"data.images_dir: {folder} is not a folder")
    folder_splits(folder)
    target = dest / "folder"
    shutil.copytree(folder, target, ignore=_keep_images_only)
    count = sum(1 for p in target.rglob("*") if p.is_file())
    if count == 0:
        raise DataError(
            f"data.images_dir: {folder} holds no images ({', '.join(IMAGE_SUFFIXES)}) in "
            "class sub-folders"
        )
    files = {"folder": {"images": count}}
    return _finish(dest, "folder", files, origin=str(folder.resolve()))


def copy_file(dest: Path, path: str | Path, source: str, key: str) -> Materialised:
    """Copy a bring-your-own CSV or text file; ``key`` names the param for error messages."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"{key}: {path} is not a file")
    shutil.copyfile(path, dest / path.name)
    files = {path.name: {"sha256": file_hash(dest / path.name)}}
    return _finish(dest, source, files, origin=str(path.resolve()))


def read_manifest(folder: str | Path) -> dict:
    """The manifest ``download`` wrote in a raw-data folder."""
    manifest = load_json(Path(folder) / MANIFEST)
    if not isinstance(manifest, dict) or "source" not in manifest or "files" not in manifest:
        raise DataError(f"{Path(folder) / MANIFEST}: not a download manifest (no source/files)")
    return manifest


def _finish(dest: Path, source: str, files: dict, **extra: str) -> Materialised:
    manifest = {"source": source, "files": files, **extra}
    save_json(dest / MANIFEST, manifest)
    return Materialised(source=source, manifest=manifest)


def _keep_images_only(directory: str, names: list[str]) -> list[str]:
    """shutil.copytree filter: skip hidden entries and files that are not images."""
    skipped = []
    for name in names:
        path = Path(directory) / name
        if name.startswith(".") or (path.is_file() and path.suffix.lower() not in IMAGE_SUFFIXES):
            skipped.append(name)
    return skipped


# --- Reading what download wrote (used by preprocess) -------------------------------------------


@dataclass(frozen=True)
class RawImages:
    """A source's images with the splits it defines itself (``None`` where it has none)."""

    source: str
    train: ImageSet
    val: ImageSet | None
    test: ImageSet | None


def read_images(raw_dir: str | Path, size: tuple[int, int], color_mode: str) -> RawImages:
    """Load the image source in ``raw_dir`` as uint8 NHWC arrays on a 0..255 scale.

    ``size`` and ``color_mode`` apply to image folders only; the named datasets keep their own.
    An image folder is listed, not decoded (its sets hold :class:`~dllabs.readers.ImageFiles`):
    it may not fit in memory, so ``preprocess`` decodes it a block at a time as it writes.
    """
    raw_dir = Path(raw_dir)
    source = read_manifest(raw_dir)["source"]
    digit_names = [str(d) for d in range(10)]
    if source == "digits":
        arrays = load_npz(raw_dir / "digits.npz", required=("images", "labels"))
        # 4-bit intensities 0..16 -> 0..255, so every image source shares one pixel scale.
        x = np.round(arrays["images"].astype(np.float64) * (255.0 / 16.0)).astype(np.uint8)
        return RawImages(source, ImageSet(x[..., None], arrays["labels"], digit_names), None, None)
    if source == "mnist":
        arrays = load_npz(
            raw_dir / "mnist.npz", required=("x_train", "y_train", "x_test", "y_test")
        )
        train = ImageSet(
            arrays["x_train"][..., None], arrays["y_train"].astype(np.int64), digit_names
        )
        test = ImageSet(arrays["x_test"][..., None], arrays["y_test"].astype(np.int64), digit_names)
        return RawImages(source, train, None, test)
    if source == "fashion_mnist":
        splits = {}
        for split, prefix in (("train", "train"), ("test", "t10k")):
            x = read_idx(raw_dir / f"{prefix}-images-idx3-ubyte.gz")
            y = read_idx(raw_dir / f"{prefix}-labels-idx1-ubyte.gz").astype(np.int64)
            if len(x) != len(y) or x.ndim != 3:
                raise DataError(
                    f"{raw_dir}: {prefix} images {x.shape} do not match labels {y.shape}"
                )
            splits[split] = ImageSet(x[..., None], y, FASHION_MNIST_CLASSES)
        return RawImages(source, splits["train"], None, splits["test"])
    if source == "cifar10":
        batches = raw_dir / "cifar-10-batches-py"
        train = _cifar_batches([batches / f"data_batch_{i}" for i in range(1, 6)])
        test = _cifar_batches([batches / "test_batch"])
        return RawImages(source, train, None, test)
    if source == "folder":
        folder = raw_dir / "folder"
        present = folder_splits(folder)
        if not present:
            return RawImages(source, list_image_folder(folder, size, color_mode), None, None)
        train = list_image_folder(present["train"], size, color_mode)
        others = {
            name: list_image_folder(present[name], size, color_mode, train.class_names)
            for name in ("val", "test")
            if name in present
        }
        return RawImages(source, train, others.get("val"), others.get("test"))
    raise DataError(f"{raw_dir / MANIFEST}: unknown image source {source!r}")


def _cifar_batches(paths: list[Path]) -> ImageSet:
    xs, ys = [], []
    for path in paths:
        batch = read_cifar_batch(path)
        try:
            data, labels = batch[b"data"], batch[b"labels"]
        except (KeyError, TypeError):
            raise DataError(f"{path}: CIFAR batch without data/labels") from None
        xs.append(np.asarray(data, dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        ys.append(np.asarray(labels, dtype=np.int64))
    return ImageSet(np.concatenate(xs), np.concatenate(ys), CIFAR10_CLASSES)


@dataclass(frozen=True)
class RawRows:
    """Feature rows of the anomaly source, their labels, and the source's conventions."""

    source: str
    rows: LabelledRows
    row_shape: tuple[int, ...]
    default_normal: str | None


def read_anomaly_rows(raw_dir: str | Path, label_column: int | str | None) -> RawRows:
    """Load the anomaly source in ``raw_dir`` as float rows with string labels."""
    raw_dir = Path(raw_dir)
    manifest = read_manifest(raw_dir)
    source = manifest["source"]
    if source == "digits":
        arrays = load_npz(raw_dir / "digits.npz", required=("images", "labels"))
        images = arrays["images"]
        rows = LabelledRows(
            images.reshape(len(images), -1).astype(np.float32), arrays["labels"].astype(str)
        )
        return RawRows(source, rows, tuple(images.shape[1:]), "0")
    (name,) = manifest["files"]
    if source == "ecg5000":  # 140 values, then the label; 1 = normal
        rows = read_labelled_csv(raw_dir / name, -1 if label_column is None else label_column)
        return RawRows(source, rows, (rows.x.shape[1],), "1")
    if source == "csv":
        if label_column is None:
            raise DataError("data.label_column: required when data.anomaly is 'csv'")
        rows = read_labelled_csv(raw_dir / name, label_column)
        return RawRows(source, rows, (rows.x.shape[1],), None)
    raise DataError(f"{raw_dir / MANIFEST}: unknown anomaly source {source!r}")


def read_text_source(raw_dir: str | Path) -> tuple[str, str]:
    """The source name and the full text of the corpus in ``raw_dir``."""
    raw_dir = Path(raw_dir)
    manifest = read_manifest(raw_dir)
    (name,) = manifest["files"]
    return manifest["source"], read_text(raw_dir / name)
