"""Parsers for raw data files, each failing with one line that names the file (and row/column).

- IDX (MNIST, Fashion-MNIST), gzip-compressed or not;
- CIFAR-10's pickled batches, through an unpickler that admits only NumPy arrays and builtins;
- tar archives, extracted only when no member escapes the target folder;
- image folders (one sub-folder per class, or split folders holding those: ``train/``,
  ``training_set/``, ``val/``, ``test/`` and the other names in ``SPLIT_ALIASES``);
- numeric CSV files with a label column, and UCR's whitespace-separated layout (label first);
- UTF-8 text files.

Hostile or broken files fail with one line too, in bounded memory: text and CSV files are scanned
in 1 MiB blocks before a parser reads them, so a file without line ends (or a binary one) is
refused at its first long line, and an image whose header promises more pixels than
``MAX_IMAGE_PIXELS`` is refused before it is decoded.
"""

from __future__ import annotations

import codecs
import gzip
import math
import pickle
import tarfile
import unicodedata
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dllabs.errors import DataError, one_line

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
SPLIT_NAMES = ("train", "val", "test")
# A split folder's usual names, matched in any case (``training_set``/``test_set``: Kaggle's).
SPLIT_ALIASES = {
    "train": ("train", "training", "training_set"),
    "val": ("val", "valid", "validation"),
    "test": ("test", "testing", "test_set"),
}
LAYOUTS = (
    "expected <folder>/<class>/<image>, or <folder>/<split>/<class>/<image> with splits "
    + ", ".join("|".join(names) for names in SPLIT_ALIASES.values())
)
# A line of text or CSV longer than this is refused. Real rows and paragraphs are far shorter (a
# CSV row of 10,000 numbers is about 100 KB); a file without line ends would otherwise be read
# whole as one "line" by the parsers, whatever its size.
MAX_LINE_BYTES = 32 * 2**20
# A table wider than this is refused from its first line. The widest rows the labs are meant for
# are flattened pictures (CIFAR's 3,072 values; a 256x256 greyscale image's 65,536); parsing a
# million columns took minutes and gigabytes before anything could be said of the file.
MAX_CSV_COLUMNS = 100_000
# Cells parsed at a time: pandas holds a block as Python strings, about 60 bytes a cell.
_CSV_BLOCK_CELLS = 2**20
_FLOAT32_MAX = float(np.finfo(np.float32).max)
# Pillow's own refusal threshold (twice its warning one): a 179-megapixel image decodes to about
# 540 MB of RGB; a forged header claiming 20000x20000 would need 1.2 GB before any check.
MAX_IMAGE_PIXELS = 2 * 89_478_485
# An IDX payload larger than this is refused from its header: MNIST's training images are 47 MB,
# EMNIST's largest split about 550 MB; a forged header would otherwise size the read.
MAX_IDX_BYTES = 2**31
_BLOCK = 2**20
# Byte-order marks of the encodings that hold NUL bytes (UTF-32's first: it starts as UTF-16's).
_WIDE_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32"),
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (``.gz`` or plain) into an array, checking header and payload size.

    The header's dimensions say how many bytes follow, so that is all that is decompressed: a
    small gzip that inflates to gigabytes (or a header that claims more than ``MAX_IDX_BYTES``)
    is refused having read one block past what the header allows.
    """
    path = Path(path)
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb") as handle:
            head = handle.read(4)
            if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in _IDX_DTYPES:
                raise DataError(f"{path}: bad IDX header (expected magic 0x0000 then a type code)")
            ndim = head[3]
            sizes = handle.read(4 * ndim)
            if ndim == 0 or len(sizes) < 4 * ndim:
                raise DataError(f"{path}: bad IDX header ({ndim} dimensions)")
            shape = tuple(int.from_bytes(sizes[4 * i : 4 * i + 4], "big") for i in range(ndim))
            dtype = np.dtype(_IDX_DTYPES[head[2]])
            expected = math.prod(shape) * dtype.itemsize  # Python integers: no overflow
            if expected > MAX_IDX_BYTES:
                raise DataError(
                    f"{path}: header shape {shape} needs {expected} bytes, more than the "
                    f"{_size(MAX_IDX_BYTES)} limit (a corrupt file, or a data set to store as an "
                    "image folder, which is read a block at a time)"
                )
            # np.empty maps pages only as they are written: memory follows the bytes that arrive.
            payload = np.empty(expected, dtype=np.uint8)
            got = _read_into(handle, memoryview(payload))
            if got < expected:
                raise DataError(
                    f"{path}: IDX payload is {got} bytes, header shape {shape} needs {expected} "
                    "(truncated or corrupt file)"
                )
            extra = len(handle.read(_BLOCK))
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: unreadable or truncated gzip file ({one_line(exc)})") from None
    if extra:
        total = f"{expected + extra} bytes" if extra < _BLOCK else f"over {expected + extra} bytes"
        raise DataError(
            f"{path}: IDX payload is {total}, more bytes than its header's shape {shape} allows "
            f"(it needs {expected}; a corrupt file or a decompression bomb)"
        )
    return payload.view(dtype).reshape(shape).astype(dtype.newbyteorder("="), copy=False)


def _read_into(handle: Any, buffer: memoryview) -> int:
    """Fill ``buffer`` from ``handle`` a block at a time; the number of bytes read."""
    got = 0
    while got < len(buffer):
        count = handle.readinto(buffer[got : got + _BLOCK])
        if not count:
            break
        got += count
    return got


def check_pixels(file: Path, what: str, x: Any, layout: tuple[str, ...]) -> np.ndarray:
    """``x`` as the uint8 images of a named dataset, ``layout`` naming its axes: refused in one
    line when it holds other values (float pixels would become black images when cast) or has
    another number of axes (a fourth would give five-dimensional images)."""
    x = np.asarray(x)
    if x.dtype != np.uint8:
        raise DataError(f"{file}: {what} holds {x.dtype} values; expected uint8 pixels")
    if x.ndim != len(layout):
        raise DataError(f"{file}: {what} has shape {x.shape}; expected ({', '.join(layout)})")
    return x


def check_labels(file: Path, what: str, labels: Any, images: int, classes: int) -> np.ndarray:
    """``labels`` as int64 class indices, one per image, each in ``0..classes - 1``: a label that
    is missing, extra or out of range would silently pair images with the wrong classes."""
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise DataError(f"{file}: {what} has shape {labels.shape}; expected one label per image")
    if labels.dtype.kind not in "iu":
        raise DataError(f"{file}: {what} holds {labels.dtype} values; expected integer labels")
    if len(labels) != images:
        raise DataError(f"{file}: {what}: {len(labels)} labels for {images} images")
    outside = np.flatnonzero((labels < 0) | (labels >= classes))
    if len(outside):
        row = int(outside[0])
        raise DataError(
            f"{file}: {what}: label {labels[row]} at row {row + 1}; expected 0 to {classes - 1}"
        )
    return labels.astype(np.int64)


class _ArraysOnlyUnpickler(pickle.Unpickler):
    """Unpickle CIFAR batches (dicts of bytes, lists and NumPy arrays) and nothing else."""

    _ALLOWED: frozenset[tuple[str, str]] = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
        }
    )

    def find_class(self, module: str, name: str) -> type:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def read_cifar_batch(path: str | Path) -> dict:
    """Read one CIFAR-10 python batch (a pickled dict with byte-string keys)."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            return _ArraysOnlyUnpickler(handle, encoding="bytes").load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError) as exc:
        raise DataError(f"{path}: not a readable CIFAR batch ({exc})") from None


def safe_extract_tar(archive: str | Path, target: str | Path) -> list[str]:
    """Extract a tar archive, refusing any member that would land outside ``target``.

    Links, devices and absolute or ``..`` paths are rejected before anything is written.
    Returns the extracted member names.
    """
    archive, target = Path(archive), Path(target)
    root = target.resolve()
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                destination = (root / member.name).resolve()
                if destination != root and root not in destination.parents:
                    raise DataError(f"{archive}: member {member.name!r} escapes the target folder")
                if not (member.isfile() or member.isdir()):
                    raise DataError(
                        f"{archive}: member {member.name!r} is a link or special file; refused"
                    )
            target.mkdir(parents=True, exist_ok=True)
            for member in members:
                if hasattr(tarfile, "data_filter"):
                    tar.extract(member, root, filter="data")
                else:  # Python < 3.10.12: the checks above already vetted the member
                    tar.extract(member, root)
            return [m.name for m in members]
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise DataError(f"{archive}: truncated or corrupt archive ({exc})") from None


@dataclass(frozen=True)
class ImageFiles:
    """Image files listed and labelled but not yet decoded: ``preprocess`` decodes them a block at
    a time while writing, so a folder larger than memory never sits in memory whole.

    Quacks like the uint8 ``(n, height, width, channels)`` array it decodes to where the split
    needs it: ``len``, ``shape``, ``dtype`` and ``take(rows, axis=0)``.
    """

    paths: tuple[Path, ...]
    size: tuple[int, int]  # (height, width)
    color_mode: str

    dtype = np.dtype(np.uint8)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        channels = 1 if self.color_mode == "grayscale" else 3
        return (len(self.paths), *self.size, channels)

    def take(self, rows: np.ndarray, axis: int = 0) -> ImageFiles:
        """The files at ``rows``, in that order (``axis`` 0 only, as ``ndarray.take`` is used)."""
        if axis != 0:
            raise ValueError("image files are taken along the first axis only")
        return ImageFiles(tuple(self.paths[int(i)] for i in rows), self.size, self.color_mode)

    def decode(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Files ``start:stop`` decoded and resized, as uint8 ``(k, height, width, channels)``."""
        files = self.paths[start:stop]
        out = np.empty((len(files), *self.shape[1:]), dtype=np.uint8)
        for i, file in enumerate(files):
            out[i] = decode_image(file, self.size, self.color_mode)
        return out


@dataclass(frozen=True)
class ImageSet:
    """Images as uint8 ``(n, height, width, channels)`` with integer labels and class names;
    ``x`` is :class:`ImageFiles` where the images are still files to decode."""

    x: np.ndarray | ImageFiles
    y: np.ndarray
    class_names: list[str]


def decode_image(file: Path, size: tuple[int, int], color_mode: str) -> np.ndarray:
    """One image file as uint8 ``(height, width, channels)``, as an image viewer shows it:
    turned upright by its EXIF orientation, transparent parts on white, converted to ``L``
    (grayscale) or ``RGB``, resized bilinearly to ``size`` (height, width).

    The orientation matters for photos: a phone stores a portrait photo as landscape pixels with
    a tag saying to turn it, so without the tag a "dog" folder would hold dogs lying on their
    sides. White, not the black Pillow's conversion gives, because transparent pixels usually
    hold black and a logo or a cut-out object is drawn to be seen on a light page.
    16-bit greyscale (PNG, TIFF) is scaled to 8 bits, 65535 -> 255, where Pillow's own conversion
    would clip every value above 255 to white; floating-point images, which have no agreed scale,
    are refused. So is an image above ``MAX_IMAGE_PIXELS``, from its header, before decoding.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    mode = "L" if color_mode == "grayscale" else "RGB"
    height, width = size
    try:
        with warnings.catch_warnings():
            # Pillow warns from half our limit on; the check below is the one that decides.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(file) as image:
                if image.width * image.height > MAX_IMAGE_PIXELS:
                    raise DataError(_too_large(file, image.width, image.height))
                upright = _eight_bit(ImageOps.exif_transpose(image), file)
                pixels = _on_white(upright).convert(mode)
                pixels = pixels.resize((width, height), Image.Resampling.BILINEAR)
                array = np.asarray(pixels, dtype=np.uint8)
    except Image.DecompressionBombError as exc:  # past Pillow's own limit, raised while opening
        raise DataError(f"{file}: {one_line(exc)} ({_REFUSED})") from None
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        raise DataError(f"{file}: unreadable image ({one_line(exc)})") from None
    return array[..., np.newaxis] if array.ndim == 2 else array


_REFUSED = "refused unread: a decompression bomb, or a picture to scale down first"


def _too_large(file: Path, width: int, height: int) -> str:
    return f"{file}: {width}x{height} pixels, more than {MAX_IMAGE_PIXELS:,} ({_REFUSED})"


def _on_white(image: Any) -> Any:
    """``image`` with any transparency (an alpha channel, or a palette's or greyscale's
    transparent colour) composited onto white; an opaque image unchanged."""
    from PIL import Image

    if image.mode not in ("RGBA", "RGBa", "LA", "La", "PA") and "transparency" not in image.info:
        return image
    rgba = image.convert("RGBA")
    return Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("RGB")


def _eight_bit(image: Any, file: Path) -> Any:
    """``image`` with 8 bits per channel: 16-bit greyscale scaled (not clipped) to 0..255."""
    from PIL import Image

    if image.mode.startswith("I;16") or image.mode == "I":
        values = np.asarray(image)
        if image.mode == "I" and values.size and (values.min() < 0 or values.max() > 65535):
            raise DataError(
                f"{file}: 32-bit integer pixels outside 0..65535; save it with 8 or 16 bits "
                "per channel"
            )
        scaled = (values.astype(np.uint32) * 255 + 32767) // 65535  # round to nearest
        return Image.fromarray(scaled.astype(np.uint8), mode="L")
    if image.mode == "F":
        raise DataError(
            f"{file}: floating-point pixels have no standard scale; save the image with 8 or "
            "16 bits per channel"
        )
    return image


def list_image_folder(
    folder: str | Path,
    size: tuple[int, int],
    color_mode: str,
    class_names: list[str] | None = None,
) -> ImageSet:
    """List ``folder/<class>/<image>`` files with their labels, decoding nothing yet.

    Every layout rule is checked here, before any image is decoded. ``class_names`` fixes the
    label order (for a ``val/`` or ``test/`` folder that must use the training folder's classes);
    by default it is the sorted sub-folder names. Files are in class order, sorted within a class.
    """
    folder = Path(folder)
    class_dirs = _class_dirs(folder)
    found = sorted(class_dirs)
    if not found:
        raise DataError(f"{folder}: no class sub-folders ({LAYOUTS})")
    if class_names is None and len(found) < 2:
        raise DataError(f"{folder}: one class folder ({found[0]}); a classifier needs two or more")
    names = class_names or found
    unknown = sorted(set(found) - set(names))
    if unknown:
        raise DataError(
            f"{folder}: class folder(s) {', '.join(unknown)} not in the training classes"
        )
    paths: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(names):
        class_dir = class_dirs.get(name)
        if class_dir is None:
            continue
        if not any(p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES for p in class_dir.iterdir()):
            nested = sorted(p.name for p in class_dir.iterdir() if p.is_dir())
            if nested:  # one level too deep: the classes would be read as one
                raise DataError(
                    f"{class_dir}: holds folders ({', '.join(nested[:5])}) and no images, "
                    f"so it is not a class folder; {LAYOUTS}"
                )
        files = sorted(p for p in class_dir.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(
                f"{class_dir}: class folder has no images ({', '.join(IMAGE_SUFFIXES)})"
            )
        paths += files
        labels += [label] * len(files)
    x = ImageFiles(tuple(paths), (int(size[0]), int(size[1])), color_mode)
    return ImageSet(x=x, y=np.asarray(labels, dtype=np.int64), class_names=list(names))


def _class_dirs(folder: Path) -> dict[str, Path]:
    """``folder``'s sub-folders by their names in NFC, the composed Unicode spelling.

    macOS writes "café" decomposed (NFD), most other systems and keyboards composed (NFC): the two
    print alike but compare unequal, so one class would become two, or a test folder's class would
    be missing from the training classes. Two folders whose names differ only so are refused.
    """
    dirs: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_dir() or path.name.startswith("."):
            continue
        name = unicodedata.normalize("NFC", path.name)
        if name in dirs:
            raise DataError(
                f"{folder}: class folders {dirs[name].name!r} and {path.name!r} are one name in "
                "two Unicode spellings (composed and decomposed accents); merge or rename them"
            )
        dirs[name] = path
    return dirs


def read_image_folder(
    folder: str | Path,
    size: tuple[int, int],
    color_mode: str,
    class_names: list[str] | None = None,
) -> ImageSet:
    """Read ``folder/<class>/<image>`` files into memory, resized to ``size`` (height, width):
    :func:`list_image_folder`, then every file decoded."""
    listed = list_image_folder(folder, size, color_mode, class_names)
    assert isinstance(listed.x, ImageFiles)
    return ImageSet(listed.x.decode(), listed.y, listed.class_names)


def folder_splits(folder: str | Path) -> dict[str, Path]:
    """The split sub-folders present, by split (``train``, ``val``, ``test``), recognised by their
    usual names in any case; ``{}`` for a plain class folder.

    A folder that mixes split folders with others, names one split twice, or has no training
    split is refused: read as classes, its split folders would become classes of their own.
    """
    folder = Path(folder)
    subfolders = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    splits: dict[str, Path] = {}
    for path in subfolders:
        split = next((s for s, names in SPLIT_ALIASES.items() if path.name.lower() in names), None)
        if split is None:
            continue
        if split in splits:
            raise DataError(
                f"{folder}: {splits[split].name}/ and {path.name}/ are both a {split} split"
            )
        splits[split] = path
    if not splits:
        return {}
    others = [p.name for p in subfolders if p not in splits.values()]
    if others:
        raise DataError(
            f"{folder}: mixes split folders ({', '.join(p.name for p in splits.values())}) with "
            f"other folders ({', '.join(others[:5])}); {LAYOUTS}"
        )
    if "train" not in splits:
        raise DataError(
            f"{folder}: has {', '.join(p.name + '/' for p in splits.values())} but no training "
            f"split ({'/, '.join(SPLIT_ALIASES['train'])}/)"
        )
    return {split: splits[split] for split in SPLIT_NAMES if split in splits}


@dataclass(frozen=True)
class LabelledRows:
    """Numeric feature rows with their labels (as strings, so any label type compares)."""

    x: np.ndarray
    labels: np.ndarray  # empty for a table read without a label column


def read_labelled_csv(
    path: str | Path, label_column: int | str | None, features: int | None = None
) -> LabelledRows:
    """Read a numeric table with one label column (``None``: a table of features only).

    The layout is detected from the first line: comma-separated or whitespace-separated (UCR), with
    or without a header row. ``label_column`` is a header name or a 0-based index (-1 = last).
    ``features``, where given, is the number of feature columns the caller needs (a model's input
    width): the first line is checked against it, and against ``MAX_CSV_COLUMNS``, before the rest
    is parsed. Every other cell must be a finite number within 32-bit floats (the rows are stored
    and trained as float32, where 1e39 is infinite); the first bad cell is named by row and column.
    Rows are parsed ``_CSV_BLOCK_CELLS`` cells at a time, so memory follows the result, not the
    text.
    """
    import pandas as pd

    path = Path(path)
    check_text_file(path)
    try:
        with path.open(encoding="utf-8-sig") as handle:  # Excel's "CSV UTF-8" starts with a BOM
            first = handle.readline(MAX_LINE_BYTES + 1)
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: unreadable text file ({one_line(exc)})") from None
    if not first.strip():
        raise DataError(f"{path}: empty file, expected rows of numbers with a label column")
    sep = "," if "," in first else r"\s+"
    cells = [c.strip().strip('"') for c in (first.split(",") if sep == "," else first.split())]
    if len(cells) > MAX_CSV_COLUMNS:
        raise DataError(
            f"{path}: {len(cells):,} columns; expected at most {MAX_CSV_COLUMNS:,} (one row of "
            "numbers per line, a label column among them)"
        )
    has_header = not all(_is_number(c) for c in cells)
    options = {
        "sep": sep,
        "header": 0 if has_header else None,
        "dtype": str,
        "keep_default_na": False,
        "engine": "python" if sep != "," else "c",
        "skip_blank_lines": True,
    }
    try:
        columns = [str(c) for c in pd.read_csv(path, nrows=0, **options).columns]
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{path}: not a well-formed table ({one_line(exc)})") from None
    label = _label_index(path, columns, label_column, has_header)
    if features is not None and len(columns) - (label is not None) != features:
        raise TableWidthError(path, len(columns) - (label is not None), label is not None, features)
    xs: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    first_line = 2 if has_header else 1  # the file's line of the block's first row
    try:
        blocks = pd.read_csv(path, chunksize=max(1, _CSV_BLOCK_CELLS // len(columns)), **options)
        for block in blocks:
            cells_of = block.to_numpy(dtype=object)
            feature_cells = cells_of if label is None else np.delete(cells_of, label, axis=1)
            xs.append(_float32_cells(path, feature_cells, columns, label, first_line))
            if label is not None:
                labels.append(_block_labels(path, cells_of[:, label], columns[label], first_line))
            first_line += len(block)
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{path}: not a well-formed table ({one_line(exc)})") from None
    rows = sum(len(x) for x in xs)
    if rows == 0:
        raise DataError(f"{path}: no data rows")
    x = np.concatenate(xs) if len(xs) > 1 else xs[0]
    if label is None:
        return LabelledRows(x=x, labels=np.array([], dtype=str))
    return LabelledRows(x=x, labels=np.concatenate(labels).astype(str))


class TableWidthError(DataError):
    """A table whose first line has another number of feature columns than the caller needs."""

    def __init__(self, path: Path, columns: int, labelled: bool, features: int) -> None:
        self.columns, self.features = columns, features
        found = (
            f"{columns} feature columns besides the label column"
            if labelled
            else f"{columns} columns"
        )
        super().__init__(f"{path}: {found}, the model takes {features} features")


def _label_index(
    path: Path, columns: list[str], label_column: int | str | None, has_header: bool
) -> int | None:
    """The position of the label column among ``columns`` (``None``: no label column)."""
    if label_column is None:
        return None
    if isinstance(label_column, int):
        if not -len(columns) <= label_column < len(columns):
            raise DataError(
                f"{path}: label column index {label_column} out of range ({len(columns)} columns)"
            )
        return label_column % len(columns)
    if label_column not in columns:
        hint = f"columns: {', '.join(columns[:12])}" if has_header else "the file has no header row"
        raise DataError(f"{path}: no label column {label_column!r} ({hint})")
    return columns.index(label_column)


def _float32_cells(
    path: Path, cells: np.ndarray, columns: list[str], label: int | None, first_line: int
) -> np.ndarray:
    """A block of feature cells (strings) as float32, or one line naming the first cell that is
    not a number or lies beyond float32's range."""
    import pandas as pd

    flat = pd.Series(cells.ravel(), dtype=object)
    values = pd.to_numeric(flat, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    values = values.reshape(cells.shape)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(values) | (np.abs(values) > _FLOAT32_MAX)
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        column = columns[col if label is None or col < label else col + 1]
        value = cells[row, col]
        where = f"{path}: row {first_line + row}, column {column!r}"
        if np.isfinite(values[row, col]):
            raise DataError(
                f"{where}: {str(value).strip()} is outside the range of 32-bit floats "
                f"(±{_FLOAT32_MAX:.1e})"
            )
        raise DataError(f"{where}: expected a number, got {value!r}")
    return values.astype(np.float32)


def _block_labels(path: Path, cells: np.ndarray, column: str, first_line: int) -> np.ndarray:
    """A block's labels, stripped and in one spelling each; a missing label is named."""
    labels = np.array([str(c).strip() for c in cells], dtype=object)
    missing = np.flatnonzero(labels == "")
    if len(missing):
        raise DataError(
            f"{path}: row {first_line + int(missing[0])}, column {column!r}: missing label"
        )
    return np.array([_canonical_label(text) for text in labels], dtype=object)


def canonical_label(value: object) -> str:
    """One spelling per label: '1', '1.0' and 1 are all '1'."""
    return _canonical_label(str(value))


def _canonical_label(text: str) -> str:
    try:
        number = float(text)
    except ValueError:
        return text
    return str(int(number)) if number.is_integer() else repr(number)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def check_text_file(path: str | Path, max_line_bytes: int = MAX_LINE_BYTES) -> None:
    """Scan a text file in 1 MiB blocks, before any parser reads a line of it whole: refuse NUL
    bytes (a binary file, or UTF-16 text), bytes that are not UTF-8, and any line longer than
    ``max_line_bytes``.

    Memory stays at one block whatever the file holds, and the first offending line is named.
    """
    path = Path(path)
    line, current = 1, 0  # the line being read, and its length so far
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        with path.open("rb") as handle:
            head = handle.read(4)
            for bom, name in _WIDE_BOMS:
                if head.startswith(bom):
                    raise DataError(f"{path}: {name} text; save it as UTF-8")
            handle.seek(0)
            offset = 0
            while block := handle.read(_BLOCK):
                nul = block.find(b"\0")
                if nul >= 0:
                    raise DataError(
                        f"{path}: NUL byte at byte {offset + nul}: a binary file, not UTF-8 text"
                    )
                try:
                    decoder.decode(block)
                except UnicodeDecodeError as exc:
                    at = line + block.count(b"\n", 0, max(exc.start, 0))
                    raise DataError(
                        f"{path}: not UTF-8 text (line {at}, byte {offset + exc.start}: "
                        f"{exc.reason}); save it as UTF-8"
                    ) from None
                ends = np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == ord("\n"))
                lengths = np.diff(ends, prepend=-1) - 1  # each line ended in this block
                if len(ends):
                    lengths[0] += current
                    current = len(block) - 1 - int(ends[-1])
                else:
                    current += len(block)
                too_long = np.flatnonzero(lengths > max_line_bytes)
                if len(too_long) or current > max_line_bytes:
                    at = line + (int(too_long[0]) if len(too_long) else len(ends))
                    limit = _size(max_line_bytes)
                    raise DataError(
                        f"{path}: line {at} is longer than {limit} (a file without line ends?); "
                        f"expected text with a line end at least every {limit}"
                    )
                line += len(ends)
                offset += len(block)
            try:
                decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                raise DataError(f"{path}: not UTF-8 text (it ends inside a character)") from None
    except OSError as exc:
        raise DataError(f"{path}: unreadable ({exc.strerror or one_line(exc)})") from None


def _size(count: int) -> str:
    return f"{count // 2**20} MiB" if count % 2**20 == 0 else f"{count:,} bytes"


def read_text(path: str | Path) -> str:
    """Read a UTF-8 text file (a BOM is dropped) after :func:`check_text_file`; fail clearly on
    other encodings."""
    path = Path(path)
    check_text_file(path)
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    except OSError as exc:
        raise DataError(f"{path}: unreadable ({exc.strerror})") from None


__all__ = [
    "MAX_CSV_COLUMNS",
    "ImageFiles",
    "ImageSet",
    "LabelledRows",
    "TableWidthError",
    "canonical_label",
    "check_labels",
    "check_pixels",
    "check_text_file",
    "decode_image",
    "folder_splits",
    "list_image_folder",
    "read_cifar_batch",
    "read_idx",
    "read_image_folder",
    "read_labelled_csv",
    "read_text",
    "safe_extract_tar",
]
