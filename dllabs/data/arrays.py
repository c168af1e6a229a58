"""Arrays as plain ``.npy`` files, written and read a block of rows at a time.

``preprocess`` writes each image split as one C-order ``.npy`` file (:class:`NpyWriter`), so a
folder larger than memory streams through it a chunk of decoded images at a time; the bytes are
exactly ``numpy.save``'s, so the same arrays always give the same files (DVC sees no change).

Training stages read rows on demand (:class:`NpyRows`) with ``os.preadv`` into a fresh buffer. Not
``np.load(mmap_mode="r")``: pages of a mapped file count in the process's resident set, so reading
a 1.5 GB split once through a mapping shows 1.5 GB peak RSS; read through the page cache, the same
pass keeps only the rows asked for.

Imports no TensorFlow (``preprocess`` writes these files).
"""

from __future__ import annotations

import math
import os
import threading
import weakref
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from dllabs.errors import DataError
from dllabs.outputs import npy_header

_FORMAT = np.lib.format


def header_bytes(shape: tuple[int, ...], dtype: np.dtype) -> bytes:
    """The ``.npy`` header ``numpy.save`` writes for a C-order array of ``shape`` and ``dtype``."""
    import io

    buffer = io.BytesIO()
    header = {
        "descr": _FORMAT.dtype_to_descr(np.dtype(dtype)),
        "fortran_order": False,
        "shape": tuple(int(n) for n in shape),
    }
    try:
        _FORMAT.write_array_header_1_0(buffer, header)
    except ValueError:  # a header over 64 KiB (a huge structured dtype): version 2.0, as np.save
        buffer = io.BytesIO()
        _FORMAT.write_array_header_2_0(buffer, header)
    return buffer.getvalue()


class NpyWriter:
    """Write one ``.npy`` file of ``shape`` rows in blocks: the header first, then each block.

    Closing checks that exactly ``shape[0]`` rows arrived, so a short file is never left looking
    complete (and :class:`~dllabs.outputs.StagedOutputs` removes it when the stage fails).
    """

    def __init__(self, path: str | Path, shape: tuple[int, ...], dtype: np.dtype | type) -> None:
        self.path = Path(path)
        self.shape = tuple(int(n) for n in shape)
        self.dtype = np.dtype(dtype)
        if self.dtype.hasobject:
            raise ValueError(f"{self.path}: dtype {self.dtype} holds objects; not storable")
        self.rows = 0
        self._file = self.path.open("wb")
        self._file.write(header_bytes(self.shape, self.dtype))

    def write(self, block: np.ndarray) -> None:
        """Append rows (shape ``(k, *shape[1:])``, the file's dtype) after those written."""
        block = np.asarray(block)
        if block.shape[1:] != self.shape[1:] or block.dtype != self.dtype:
            raise ValueError(
                f"{self.path}: rows of shape {block.shape[1:]} {block.dtype}, expected "
                f"{self.shape[1:]} {self.dtype}"
            )
        if self.rows + len(block) > self.shape[0]:
            raise ValueError(f"{self.path}: more than the {self.shape[0]} rows announced")
        self._file.write(np.ascontiguousarray(block).data)
        self.rows += len(block)

    def close(self) -> None:
        if self._file.closed:
            return
        self._file.close()
        if self.rows != self.shape[0]:
            raise ValueError(f"{self.path}: {self.rows} rows written of {self.shape[0]} announced")

    def __enter__(self) -> NpyWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is None:
            self.close()
        else:  # the error in flight matters, not the row count
            self._file.close()


def save_npy(path: str | Path, array: np.ndarray) -> None:
    """``numpy.save`` without pickles: the same bytes, written the way :class:`NpyWriter` does."""
    array = np.asarray(array)
    with NpyWriter(path, array.shape, array.dtype) as writer:
        writer.write(array)


def load_npy(path: str | Path) -> np.ndarray:
    """A whole ``.npy`` file in memory (never unpickling), with a one-line error naming it. Its
    header is checked against the file's size first (:class:`NpyRows`), so a header claiming more
    than the file holds is refused before anything is allocated."""
    path = Path(path)
    NpyRows(path)
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npy file ({exc})") from None


RowIndex = int | slice | Sequence[int] | np.ndarray


class NpyRows:
    """The rows of a C-order ``.npy`` file, read from disk when indexed and never mapped.

    Indexing takes what NumPy takes along the first axis (an int, a slice, an array of ints in
    any order and with repeats, or a boolean mask) and returns an ordinary array; ``len``,
    ``shape``, ``dtype`` and ``nbytes`` describe the file without reading it. Reads use
    ``os.preadv`` (no shared file position), so threads may read at once, and each run of
    consecutive rows is one system call.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"{self.path}: not found; run the stage that writes it (dvc repro)")
        try:
            with self.path.open("rb") as handle:
                shape, fortran, dtype = npy_header(handle)
                self.offset = handle.tell()
        except (OSError, ValueError, EOFError) as exc:
            raise DataError(f"{self.path}: not a readable .npy file ({exc})") from None
        if fortran and len(shape) > 1:
            raise DataError(
                f"{self.path}: saved in Fortran order, whose rows cannot be read a block at a "
                "time; save it with np.save(path, np.ascontiguousarray(array))"
            )
        if dtype.hasobject or not shape:
            raise DataError(
                f"{self.path}: expected an array of rows with a plain dtype, got shape {shape}, "
                f"dtype {dtype}"
            )
        self.shape: tuple[int, ...] = tuple(shape)
        self.dtype: np.dtype = dtype
        self.row_bytes = math.prod(shape[1:]) * dtype.itemsize  # Python integers: no overflow
        expected = self.offset + self.row_bytes * self.shape[0]
        size = self.path.stat().st_size
        if size != expected:
            raise DataError(
                f"{self.path}: {size} bytes, but its header ({self.shape}, {dtype}) needs "
                f"{expected} (truncated or corrupt file)"
            )
        self._fd: int | None = None
        self._pid = -1
        self._lock = threading.RLock()

    # --- what the file holds ---------------------------------------------------------------

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def nbytes(self) -> int:
        return self.row_bytes * self.shape[0]

    def __repr__(self) -> str:
        return f"NpyRows({str(self.path)!r}, shape={self.shape}, dtype={self.dtype})"

    # --- reading -----------------------------------------------------------------------------

    def __getitem__(self, key: RowIndex | tuple) -> np.ndarray:
        if isinstance(key, tuple) and key and key[0] is not Ellipsis:
            rows, rest = key[0], key[1:]  # rows read first, then NumPy indexes within them
            if isinstance(rows, (int, np.integer)):
                return self[rows][rest]
            return self[rows][(slice(None), *rest)]
        if isinstance(key, (int, np.integer)):
            index = int(key) + (len(self) if key < 0 else 0)
            if not 0 <= index < len(self):
                raise IndexError(f"row {key} out of range for {len(self)} rows")
            return self._read_run(index, index + 1)[0]
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            if step == 1:
                return self._read_run(start, max(start, stop))
            return self._gather(np.arange(start, stop, step))
        index = np.asarray(key)
        if index.dtype == bool:
            if index.shape != (len(self),):
                raise IndexError(f"boolean index of shape {index.shape} for {len(self)} rows")
            return self._gather(np.flatnonzero(index))
        if index.ndim != 1 or (index.size and not np.issubdtype(index.dtype, np.integer)):
            raise IndexError(f"rows must be an int, a slice or a 1-d int/bool array, got {key!r}")
        index = index.astype(np.int64, copy=False)
        index = np.where(index < 0, index + len(self), index)
        if index.size and (index.min() < 0 or index.max() >= len(self)):
            raise IndexError(f"row index out of range for {len(self)} rows")
        return self._gather(index)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        rows = self._read_run(0, len(self))
        return rows if dtype is None else rows.astype(dtype, copy=False)

    def load(self) -> np.ndarray:
        """Every row, in memory."""
        return self._read_run(0, len(self))

    def _gather(self, index: np.ndarray) -> np.ndarray:
        """Rows ``index`` in that order: the distinct rows read in file order, run by run."""
        if index.size < 2 or bool(np.all(np.diff(index) > 0)):
            unique, inverse = index, None
        else:
            unique, inverse = np.unique(index, return_inverse=True)
        out = np.empty((len(unique), *self.shape[1:]), dtype=self.dtype)
        breaks = np.flatnonzero(np.diff(unique) != 1) + 1
        for first, last in zip(
            np.concatenate(([0], breaks)), np.concatenate((breaks, [len(unique)])), strict=True
        ):
            if last > first:
                self._read_into(out[first:last], int(unique[first]))
        return out if inverse is None else out[inverse.reshape(-1)]

    def _read_run(self, start: int, stop: int) -> np.ndarray:
        out = np.empty((stop - start, *self.shape[1:]), dtype=self.dtype)
        self._read_into(out, start)
        return out

    def _read_into(self, out: np.ndarray, first_row: int) -> None:
        """Fill ``out`` (contiguous rows) from row ``first_row`` on."""
        view = memoryview(out.reshape(-1).view(np.uint8))
        position = self.offset + first_row * self.row_bytes
        done = 0
        while done < len(view):
            read = self._pread(view[done:], position + done)
            if read <= 0:
                raise DataError(f"{self.path}: ended early (truncated while being read?)")
            done += read

    def _pread(self, buffer: memoryview, position: int) -> int:
        if hasattr(os, "preadv"):
            return os.preadv(self._descriptor(), [buffer], position)
        with self._lock:  # no positional reads here (Windows): one seek-and-read at a time
            fd = self._descriptor()
            os.lseek(fd, position, os.SEEK_SET)
            data = os.read(fd, len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def _descriptor(self) -> int:
        """This process's descriptor of the file, opened on first use (and again after a fork)."""
        if self._fd is None or self._pid != os.getpid():
            with self._lock:
                if self._fd is None or self._pid != os.getpid():
                    fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
                    weakref.finalize(self, os.close, fd)
                    self._fd, self._pid = fd, os.getpid()
        return self._fd

    def __getstate__(self) -> dict:
        """Picklable for multiprocessing workers: each process opens the file itself."""
        state = dict(self.__dict__)
        state.update(_fd=None, _pid=-1, _lock=None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _lock=threading.RLock())
