"""The dataset registry: every source the labs can read, and how ``download`` materialises it.

Three kinds of source:

- **bundled** (the offline defaults): scikit-learn's 8x8 ``digits``; gensim's Lee corpus and its
  word-similarity and analogy evaluation files. They ship with the dependencies.
- **remote**, pinned by the hash their publisher gives (:data:`REMOTE`): MNIST and CIFAR-10 by the
  SHA-256 in Keras's dataset modules, Fashion-MNIST by the MD5 sums in Zalando's README. ECG5000's
  ``ecg.csv`` and the Gutenberg text of Alice have no published hash: the SHA-256 seen on download
  is recorded in the manifest (so ``dvc.lock`` pins it), and params may give an expected one.
- **bring-your-own**: an image folder, a CSV file, a text file, copied in so DVC versions them.
  They are checked as they are copied, so that errors name the user's own files: the folder's
  layout, links (none may lead outside the folder unless ``data.follow_links`` allows it; a loop
  is refused), and text files' line ends and encoding.

Each materialised folder holds the files and a ``manifest.json`` naming the source and the SHA-256
of every file; ``preprocess`` and ``tokenize`` read the manifest, not params, to know what they got.
A bring-your-own source is recorded by its path inside the project, or else by its name alone:
the manifest is cached and pushed to shared remotes, and a home folder's path is nobody's business.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dllabs.data.fetch import RemoteFile, fetch, file_hash
from dllabs.data.fetch import copy_file as copy_bytes
from dllabs.data.readers import (
    IMAGE_SUFFIXES,
    ImageSet,
    LabelledRows,
    check_labels,
    check_pixels,
    check_text_file,
    folder_splits,
    list_image_folder,
    read_cifar_batch,
    read_idx,
    read_labelled_csv,
    safe_extract_tar,
)
from dllabs.errors import DataError, paths_shown_as
from dllabs.outputs import load_json, load_npz, save_json, save_npz

MANIFEST = "manifest.json"
KERAS_DATASETS = "https://storage.googleapis.com/tensorflow/tf-keras-datasets"
ZALANDO = "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion"

# Each file's size cap is a few times its published size: a download past it (an endless or
# hostile mirror) stops there, with one line, and leaves nothing behind.
REMOTE: dict[str, tuple[RemoteFile, ...]] = {
    # keras/src/datasets/mnist.py
    "mnist": (
        RemoteFile(
            "mnist.npz",
            f"{KERAS_DATASETS}/mnist.npz",
            "sha256:731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1",
            max_bytes=48 << 20,  # 11,490,434 bytes
        ),
    ),
    # github.com/zalandoresearch/fashion-mnist README, "Get the Data"
    "fashion_mnist": (
        RemoteFile(
            "train-images-idx3-ubyte.gz",
            f"{ZALANDO}/train-images-idx3-ubyte.gz",
            "md5:8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            max_bytes=128 << 20,  # 26,421,880 bytes
        ),
        RemoteFile(
            "train-labels-idx1-ubyte.gz",
            f"{ZALANDO}/train-labels-idx1-ubyte.gz",
            "md5:25c81989df183df01b3e8a0aad5dffbe",
            max_bytes=1 << 20,  # 29,515 bytes
        ),
        RemoteFile(
            "t10k-images-idx3-ubyte.gz",
            f"{ZALANDO}/t10k-images-idx3-ubyte.gz",
            "md5:bef4ecab320f06d8554ea6380940ec79",
            max_bytes=16 << 20,  # 4,422,102 bytes
        ),
        RemoteFile(
            "t10k-labels-idx1-ubyte.gz",
            f"{ZALANDO}/t10k-labels-idx1-ubyte.gz",
            "md5:bb300cfdad3c16e7a12a480ee83cd310",
            max_bytes=1 << 20,  # 5,148 bytes
        ),
    ),
    # keras/src/datasets/cifar10.py
    "cifar10": (
        RemoteFile(
            "cifar-10-python.tar.gz",
            "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
            "sha256:6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
            max_bytes=512 << 20,  # 170,498,071 bytes
        ),
    ),
    # The file TensorFlow's autoencoder tutorial reads; no hash is published.
    "ecg5000": (
        RemoteFile(
            "ecg.csv",
            "https://storage.googleapis.com/download.tensorflow.org/data/ecg.csv",
            max_bytes=32 << 20,  # about 5 to 8 MB (5,000 rows of 141 numbers)
        ),
    ),
    # Project Gutenberg revises its texts; no hash is published.
    "alice": (
        RemoteFile(
            "11-0.txt",
            "https://www.gutenberg.org/files/11/11-0.txt",
            max_bytes=1 << 20,  # about 170 KB
        ),
    ),
}

FASHION_MNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
CIFAR10_CLASSES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]
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
    return (dataclasses.replace(only, known_hash=f"sha256:{expected_sha256}"),)


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
            copy_bytes(cached, dest / remote.name)
    return _finish(dest, source, files)


def copy_gensim_file(dest: Path, name: str) -> str:
    """Copy one of gensim's bundled test-data files into ``dest``; return its SHA-256."""
    from gensim.test.utils import datapath

    source = Path(datapath(name))
    if not source.is_file():
        raise DataError(f"{source}: gensim's bundled {name} is missing; reinstall gensim")
    copy_bytes(source, dest / name)
    return file_hash(dest / name)


def write_lee(dest: Path) -> Materialised:
    """gensim's English Lee news corpus (one document per line)."""
    files = {LEE_CORPUS: {"sha256": copy_gensim_file(dest, LEE_CORPUS)}}
    return _finish(dest, "lee", files, origin="gensim.test.utils.datapath")


def write_text_eval(dest: Path) -> Materialised:
    """gensim's bundled WordSim-353, SimLex-999 and Google analogy files."""
    files = {name: {"sha256": copy_gensim_file(dest, name)} for name in TEXT_EVAL_FILES}
    return _finish(dest, "gensim_eval", files, origin="gensim.test.utils.datapath")


def copy_image_folder(dest: Path, folder: str | Path, follow_links: bool = False) -> Materialised:
    """Copy a bring-your-own image folder (class folders, or split folders of class folders):
    images only, links checked (:func:`image_tree`), then its layout checked with every error
    naming the user's folder, not the copy.
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise DataError(f"data.images_dir: {folder} is not a folder")
    target = dest / "folder"
    target.mkdir()
    count = 0
    for relative, named in image_tree(folder, follow_links):
        if named.is_dir():  # empty ones too: the layout check names an empty class folder
            (target / relative).mkdir()
            continue
        copy_bytes(named, target / relative)
        count += 1
    if count == 0:
        raise DataError(
            f"data.images_dir: {folder} holds no images ({', '.join(IMAGE_SUFFIXES)}) in "
            "class sub-folders"
        )
    with paths_shown_as(target, folder):
        list_images(target, (1, 1), "grayscale")  # the layout rules, before anything is decoded
    files = {"folder": {"images": count}}
    return _finish(dest, "folder", files, origin=shown_name(folder))


def image_tree(folder: Path, follow_links: bool) -> Iterator[tuple[Path, Path]]:
    """``(path inside folder, what to read)`` of every folder and image under ``folder``, sorted,
    each folder before what it holds; hidden entries and files that are not images are left out.

    A link is followed to what it names when that lies inside ``folder``; a link leading outside
    it would copy an outside file into the project (then into the DVC cache and any remote), so
    it is refused unless ``follow_links``. A link back to a folder above it (a loop) and a broken
    link are refused. Each refusal is one line naming the link in the user's folder.
    """
    root = folder.resolve()

    def walk(real: Path, relative: Path, above: tuple[Path, ...]) -> Iterator[tuple[Path, Path]]:
        for entry in sorted(os.scandir(real), key=lambda e: e.name):
            if entry.name.startswith("."):
                continue
            inside, named = relative / entry.name, Path(entry.path)
            shown = folder / inside
            if entry.is_symlink():
                try:
                    named = named.resolve(strict=True)
                except (OSError, RuntimeError):  # missing target, or a loop of links
                    raise DataError(
                        f"data.images_dir: {shown} is a broken link or a loop of links"
                    ) from None
                if not named.is_relative_to(root) and not follow_links:
                    raise DataError(
                        f"data.images_dir: {shown} links to {named}, outside the folder; refused "
                        "(copy the files in, or set data.follow_links: true to copy what such "
                        "links name)"
                    )
            if named.is_dir():
                if named in above:
                    raise DataError(
                        f"data.images_dir: {shown} links back to {named}, a folder above it "
                        "(a loop)"
                    )
                yield inside, named
                yield from walk(named, inside, (*above, named))
            elif named.is_file() and inside.suffix.lower() in IMAGE_SUFFIXES:  # the link's name
                yield inside, named

    return walk(root, Path(), (root,))


def copy_file(dest: Path, path: str | Path, source: str, key: str) -> Materialised:
    """Copy a bring-your-own CSV or text file; ``key`` names the param for error messages.

    The file is scanned first (:func:`~dllabs.data.readers.check_text_file`): a binary file or one
    without line ends is refused here, naming the user's file, before a byte is copied.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"{key}: {path} is not a file")
    check_text_file(path)
    copy_bytes(path, dest / path.name)
    files = {path.name: {"sha256": file_hash(dest / path.name)}}
    return _finish(dest, source, files, origin=shown_name(path))


def shown_name(path: Path) -> str:
    """A user's file or folder as the manifest records it: its path inside the project (the
    working directory) when it lies there, else its name alone."""
    real, project = path.resolve(), Path.cwd().resolve()
    return real.relative_to(project).as_posix() if real.is_relative_to(project) else real.name


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


# --- Reading what download wrote (used by preprocess) -------------------------------------------


@dataclass(frozen=True)
class RawImages:
    """A source's images with the splits it defines itself (``None`` where it has none), and the
    name errors call it by (the user's folder, for an image folder)."""

    source: str
    train: ImageSet
    val: ImageSet | None
    test: ImageSet | None
    shown: str = ""

    def named(self) -> str:
        return self.shown or self.source


def list_images(
    folder: Path, size: tuple[int, int], color_mode: str
) -> tuple[ImageSet, ImageSet | None, ImageSet | None]:
    """An image folder's train, val and test sets, listed (not decoded); val and test are
    ``None`` unless the folder has split folders, which must use the training classes."""
    present = folder_splits(folder)
    if not present:
        return list_image_folder(folder, size, color_mode), None, None
    train = list_image_folder(present["train"], size, color_mode)
    others = {
        name: list_image_folder(present[name], size, color_mode, train.class_names)
        for name in ("val", "test")
        if name in present
    }
    return train, others.get("val"), others.get("test")


def shown_paths(raw_dir: str | Path) -> AbstractContextManager[None]:
    """Errors about the copy of a bring-your-own source in ``raw_dir`` name the user's own folder
    or file (as the manifest records it): ``pets/cats/1.jpg``, not
    ``data/raw/images/folder/...``; ``sensors.csv``, not ``data/raw/anomaly/sensors.csv``.
    """
    manifest = read_manifest(raw_dir)
    origin = manifest.get("origin")
    if manifest["source"] == "folder":
        return paths_shown_as(Path(raw_dir) / "folder", origin or "data.images_dir")
    if manifest["source"] in ("csv", "file") and origin and len(manifest["files"]) == 1:
        (name,) = manifest["files"]
        return paths_shown_as(Path(raw_dir) / name, origin)
    return nullcontext()


def read_images(raw_dir: str | Path, size: tuple[int, int], color_mode: str) -> RawImages:
    """Load the image source in ``raw_dir`` as uint8 NHWC arrays on a 0..255 scale.

    ``size`` and ``color_mode`` apply to image folders only; the named datasets keep their own.
    An image folder is listed, not decoded (its sets hold :class:`~dllabs.data.readers.ImageFiles`):
    it may not fit in memory, so ``preprocess`` decodes it a block at a time as it writes.
    """
    raw_dir = Path(raw_dir)
    manifest = read_manifest(raw_dir)
    source = manifest["source"]
    digit_names = [str(d) for d in range(10)]
    if source == "digits":
        path = raw_dir / "digits.npz"
        arrays = load_npz(path, required=("images", "labels"))
        images = check_pixels(path, "images", arrays["images"], ("images", "height", "width"))
        if images.size and images.max() > 16:
            raise DataError(f"{path}: images: values up to {images.max()}; expected 0 to 16")
        labels = check_labels(path, "labels", arrays["labels"], len(images), 10)
        # 4-bit intensities 0..16 -> 0..255, so every image source shares one pixel scale.
        x = np.round(images.astype(np.float64) * (255.0 / 16.0)).astype(np.uint8)
        return RawImages(source, ImageSet(x[..., None], labels, digit_names), None, None)
    if source == "mnist":
        path = raw_dir / "mnist.npz"
        arrays = load_npz(path, required=("x_train", "y_train", "x_test", "y_test"))
        train, test = (_npz_split(path, arrays, split, digit_names) for split in ("train", "test"))
        return RawImages(source, train, None, test)
    if source == "fashion_mnist":
        splits = {}
        for split, prefix in (("train", "train"), ("test", "t10k")):
            images, labels = (
                raw_dir / f"{prefix}-{kind}-idx{n}-ubyte.gz"
                for kind, n in (("images", 3), ("labels", 1))
            )
            x = check_pixels(images, "IDX payload", read_idx(images), ("images", "height", "width"))
            y = check_labels(labels, "IDX payload", read_idx(labels), len(x), 10)
            splits[split] = ImageSet(x[..., None], y, FASHION_MNIST_CLASSES)
        return RawImages(source, splits["train"], None, splits["test"])
    if source == "cifar10":
        batches = raw_dir / "cifar-10-batches-py"
        train = _cifar_batches([batches / f"data_batch_{i}" for i in range(1, 6)])
        test = _cifar_batches([batches / "test_batch"])
        return RawImages(source, train, None, test)
    if source == "folder":
        shown = f"image folder {manifest.get('origin') or 'data.images_dir'}"
        return RawImages(source, *list_images(raw_dir / "folder", size, color_mode), shown=shown)
    raise DataError(f"{raw_dir / MANIFEST}: unknown image source {source!r}")


def _npz_split(path: Path, arrays: dict[str, np.ndarray], split: str, names: list[str]) -> ImageSet:
    """``x_<split>`` and ``y_<split>`` of an ``.npz`` dataset (MNIST's layout), checked."""
    x = check_pixels(path, f"x_{split}", arrays[f"x_{split}"], ("images", "height", "width"))
    y = check_labels(path, f"y_{split}", arrays[f"y_{split}"], len(x), len(names))
    return ImageSet(x[..., None], y, names)


def _cifar_batches(paths: list[Path]) -> ImageSet:
    xs, ys = [], []
    for path in paths:
        batch = read_cifar_batch(path)
        try:
            data, labels = batch[b"data"], batch[b"labels"]
        except (KeyError, TypeError):
            raise DataError(f"{path}: CIFAR batch without data/labels") from None
        data = check_pixels(path, "b'data'", data, ("rows", "3072"))
        if data.shape[1] != 3 * 32 * 32:
            raise DataError(f"{path}: b'data' has shape {data.shape}; expected (rows, 3072)")
        ys.append(check_labels(path, "b'labels'", labels, len(data), len(CIFAR10_CLASSES)))
        xs.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
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


def text_file(raw_dir: str | Path) -> tuple[str, Path]:
    """The source name and the path of the one text file that ``download`` wrote."""
    raw_dir = Path(raw_dir)
    manifest = read_manifest(raw_dir)
    files = manifest["files"]
    if not isinstance(files, dict) or len(files) != 1:
        raise DataError(f"{raw_dir / MANIFEST}: expected one text file in 'files'")
    (name,) = files
    return manifest["source"], raw_dir / name
