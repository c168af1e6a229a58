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
import pickle
import tarfile
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
# Pillow's own refusal threshold (twice its warning one): a 179-megapixel image decodes to about
# 540 MB of RGB; a forged header claiming 20000x20000 would need 1.2 GB before any check.
MAX_IMAGE_PIXELS = 2 * 89_478_485
_BLOCK = 2**20
# Byte-order marks of the encodings that hold NUL bytes (UTF-32's first: it starts as UTF-16's).
_WIDE_BOMS = ((codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"),
              (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16"))  # fmt: skip
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (``.gz`` or plain) into an array, checking header and payload size."""
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                raw = handle.read()
        else:
            raw = path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: unreadable or truncated gzip file ({exc})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(f"{path}: bad IDX header (expected magic 0x0000 then a type code)")
    ndim = raw[3]
    header_size = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header_size:
        raise DataError(f"{path}: bad IDX header ({ndim} dimensions)")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header_size != expected:
        raise DataError(
            f"{path}: IDX payload is {len(raw) - header_size} bytes, header shape {shape} "
            f"needs {expected} (truncated or corrupt file)"
        )
    return (
        np.frombuffer(raw, dtype=dtype, offset=header_size)
        .reshape(shape)
        .astype(dtype.newbyteorder("="))
    )


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
    """One image file as uint8 ``(height, width, channels)``: converted to ``L`` (grayscale) or
    ``RGB``, resized bilinearly to ``size`` (height, width).

    16-bit greyscale (PNG, TIFF) is scaled to 8 bits, 65535 -> 255, where Pillow's own conversion
    would clip every value above 255 to white; floating-point images, which have no agreed scale,
    are refused. So is an image above ``MAX_IMAGE_PIXELS``, from its header, before decoding.
    """
    from PIL import Image, UnidentifiedImageError

    mode = "L" if color_mode == "grayscale" else "RGB"
    height, width = size
    try:
        with warnings.catch_warnings():
            # Pillow warns from half our limit on; the check below is the one that decides.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(file) as image:
                if image.width * image.height > MAX_IMAGE_PIXELS:
                    raise DataError(_too_large(file, image.width, image.height))
                eight_bit = _eight_bit(image, file)
                pixels = eight_bit.convert(mode).resize((width, height), Image.Resampling.BILINEAR)
                array = np.asarray(pixels, dtype=np.uint8)
    except Image.DecompressionBombError as exc:  # past Pillow's own limit, raised while opening
        raise DataError(f"{file}: {one_line(exc)} ({_REFUSED})") from None
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        raise DataError(f"{file}: unreadable image ({one_line(exc)})") from None
    return array[..., np.newaxis] if array.ndim == 2 else array


_REFUSED = "refused unread: a decompression bomb, or a picture to scale down first"


def _too_large(file: Path, width: int, height: int) -> str:
    return f"{file}: {width}x{height} pixels, more than {MAX_IMAGE_PIXELS:,} ({_REFUSED})"


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
    found = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
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
        class_dir = folder / name
        if not class_dir.is_dir():
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


def read_labelled_csv(path: str | Path, label_column: int | str | None) -> LabelledRows:
    """Read a numeric table with one label column (``None``: a table of features only).

    The layout is detected from the first line: comma-separated or whitespace-separated (UCR), with
    or without a header row. ``label_column`` is a header name or a 0-based index (-1 = last).
    Every other cell must be a finite number; the first bad cell is named by row and column.
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
    has_header = not all(_is_number(c) for c in cells)
    try:
        frame = pd.read_csv(
            path,
            sep=sep,
            header=0 if has_header else None,
            dtype=str,
            keep_default_na=False,
            engine="python" if sep != "," else "c",
            skip_blank_lines=True,
        )
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{path}: not a well-formed table ({one_line(exc)})") from None
    columns = [str(c) for c in frame.columns]
    frame.columns = columns
    if label_column is None:
        label_name = None
    elif isinstance(label_column, int):
        if not -len(columns) <= label_column < len(columns):
            raise DataError(
                f"{path}: label column index {label_column} out of range ({len(columns)} columns)"
            )
        label_name = columns[label_column]
    else:
        if label_column not in columns:
            hint = (
                f"columns: {', '.join(columns[:12])}"
                if has_header
                else "the file has no header row"
            )
            raise DataError(f"{path}: no label column {label_column!r} ({hint})")
        label_name = label_column
    features = frame if label_name is None else frame.drop(columns=[label_name])
    numeric = features.apply(pd.to_numeric, errors="coerce")
    bad = ~np.isfinite(numeric.to_numpy(dtype=float, na_value=np.nan))
    if bad.any():
        row, col = np.argwhere(bad)[0]
        line = int(row) + (2 if has_header else 1)
        value = features.iat[int(row), int(col)]
        column = features.columns[int(col)]
        raise DataError(f"{path}: row {line}, column {column!r}: expected a number, got {value!r}")
    if len(frame) == 0:
        raise DataError(f"{path}: no data rows")
    if label_name is None:
        return LabelledRows(x=numeric.to_numpy(dtype=np.float32), labels=np.array([], dtype=str))
    labels = frame[label_name].str.strip()
    if (labels == "").any():
        line = int(np.argmax((labels == "").to_numpy())) + (2 if has_header else 1)
        raise DataError(f"{path}: row {line}, column {label_name!r}: missing label")
    labels = labels.map(_canonical_label)
    return LabelledRows(x=numeric.to_numpy(dtype=np.float32), labels=labels.to_numpy(dtype=str))


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
    "ImageFiles",
    "ImageSet",
    "LabelledRows",
    "canonical_label",
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
