"""PyTorch state dicts (``.pth``/``.pt`` files of named tensors) read as NumPy arrays, without
torch, through an unpickler that admits only what a state dict is made of.

``torch.save`` pickles the dict, and ``torch.load`` of an untrusted file can run any code its
pickle names. Here the pickle may name only ``collections.OrderedDict``, the tensor rebuild function
(``torch._utils._rebuild_tensor_v2``) and the typed storage classes (``torch.FloatStorage``, ...);
anything else, ``os.system`` or ``builtins.eval`` included, is refused before it is called, and
nothing named is ever imported (the torch names are stand-ins defined here). Both of torch's file
layouts are read:

- the legacy one (torch < 1.6, or ``_use_new_zipfile_serialization=False``): pickles of a magic
  number, a protocol version and the system's sizes, then the dict, then the storage keys, then
  each storage's element count and raw bytes;
- the zip one (torch >= 1.6): ``<name>/data.pkl`` and the raw bytes of each storage in
  ``<name>/data/<key>``.

Reading is in two steps, so that nothing a file claims is allocated before it is checked.
:func:`open_state_dict` reads the pickle alone: every tensor's name, shape and element type, with
its strides checked to be a dense layout (no zero, overlapping or gapped strides) inside its
storage, and every storage's declared size checked against the bytes the file holds for it (the
rest of the file, or its zip entry's size). The caller then compares the tensors with the model's
weights and :meth:`StateDictFile.read` reads only the storages of the tensors it asks for, each no
larger than those tensors, through a bounded reader: a deflated entry inflates no further than its
declared size. A file that is truncated, or not a state dict, fails with one line naming it.
"""

from __future__ import annotations

import io
import math
import os
import pickle
import struct
import zipfile
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from dllabs.errors import DataError, one_line

_MAGIC = 0x1950A86A20F9469CFC6C  # torch/serialization.py MAGIC_NUMBER
_PROTOCOL = 1001
# A state dict of a few hundred tensors pickles to tens of KB; a "dict" far larger than this is
# not one, and is refused before it is unpickled.
MAX_PICKLE_BYTES = 64 * 2**20
_BLOCK = 2**20  # bytes read (and inflated) at a time


@dataclass(frozen=True)
class _StorageType:
    """What ``torch.FloatStorage`` and its kin stand for here: an element type."""

    name: str
    dtype: np.dtype


_STORAGES = {
    name: _StorageType(name, np.dtype(dtype).newbyteorder("<"))
    for name, dtype in (
        ("FloatStorage", np.float32),
        ("DoubleStorage", np.float64),
        ("HalfStorage", np.float16),
        ("LongStorage", np.int64),
        ("IntStorage", np.int32),
        ("ShortStorage", np.int16),
        ("CharStorage", np.int8),
        ("ByteStorage", np.uint8),
        ("BoolStorage", np.bool_),
    )
}


@dataclass
class _Storage:
    """A storage the pickle refers to by key, and where its bytes lie: the legacy layout's byte
    offset of its element count, or the zip entry that holds it."""

    key: str
    kind: _StorageType
    size: int
    where: int | str = -1

    @property
    def nbytes(self) -> int:
        return self.size * self.kind.dtype.itemsize


@dataclass(frozen=True)
class _Tensor:
    """A tensor as the pickle describes it: a view (offset, shape, strides) into a storage."""

    storage: _Storage
    offset: int
    shape: tuple[int, ...]
    strides: tuple[int, ...]

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class TensorInfo:
    """A tensor of a state dict file as its pickle describes it, before any of it is read."""

    shape: tuple[int, ...]
    dtype: np.dtype


def _rebuild_tensor_v2(storage: Any, offset: Any, size: Any, stride: Any, *rest: Any) -> _Tensor:
    """torch._utils._rebuild_tensor_v2's arguments, checked and kept (``rest``: requires_grad,
    backward hooks and metadata, which a state dict does not need)."""
    if not isinstance(storage, _Storage):
        raise pickle.UnpicklingError("a tensor without a storage")
    numbers = (offset, *size, *stride)
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in numbers):
        raise pickle.UnpicklingError("a tensor whose offset, size or strides are not counts")
    if len(size) != len(stride):
        raise pickle.UnpicklingError("a tensor whose size and strides differ in length")
    return _Tensor(storage, offset, tuple(size), tuple(stride))


class _StateDictUnpickler(pickle.Unpickler):
    """Admits a state dict's globals and persistent storage ids, and nothing else."""

    def __init__(self, file: IO[bytes]) -> None:
        super().__init__(file)
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name in _STORAGES:
            return _STORAGES[name]
        raise pickle.UnpicklingError(f"refusing {module}.{name}: a state dict does not need it")

    def persistent_load(self, pid: Any) -> _Storage:
        # ('storage', storage type, key, location, element count[, view metadata])
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r:.80}")
        _, kind, key, _location, size = pid[:5]
        if not isinstance(kind, _StorageType) or not isinstance(key, str):
            raise pickle.UnpicklingError("a storage of an unknown type")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise pickle.UnpicklingError("a storage whose size is not a count")
        storage = self.storages.setdefault(key, _Storage(key, kind, size))
        if (storage.kind, storage.size) != (kind, size):
            raise pickle.UnpicklingError(f"storage {key} declared twice, differently")
        return storage


class _PlainUnpickler(pickle.Unpickler):
    """The legacy layout's header and key list: plain values, no globals at all."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refusing {module}.{name}: a header holds plain values")


@contextmanager
def _reported(path: Path) -> Iterator[None]:
    """What a malformed file makes the parsers raise, as one line naming it."""
    try:
        yield
    except DataError:
        raise
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        KeyError,
        AttributeError,
        IndexError,
        struct.error,
        zipfile.BadZipFile,
        OSError,
    ) as exc:
        raise DataError(
            f"{path}: not a PyTorch state dict this reader accepts ({one_line(exc, 160)})"
        ) from None


class StateDictFile:
    """A state dict file whose pickle is read and checked, and whose storages are not read yet:
    :attr:`tensors` is what the caller compares with the weights it needs, before :meth:`read`."""

    def __init__(self, path: Path, tensors: dict[str, _Tensor], zipped: bool) -> None:
        self.path, self._tensors, self._zipped = path, tensors, zipped
        self.tensors = {
            name: TensorInfo(t.shape, t.storage.kind.dtype.newbyteorder("="))
            for name, t in tensors.items()
        }

    def read(self, names: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        """The tensors named (every one by default) as NumPy arrays in native byte order, each a
        copy. Only their storages are read, and a storage that holds more than the tensors asked
        for use is refused before a byte of it is: what is read is what they need."""
        wanted = list(self._tensors if names is None else names)
        for name in wanted:
            if name not in self._tensors:
                raise DataError(f"{self.path}: no tensor {name}")
        readers: dict[str, list[str]] = {}  # storage key -> the tensors asked for in it
        for name in wanted:
            readers.setdefault(self._tensors[name].storage.key, []).append(name)
        for key, names_in in readers.items():
            size = self._tensors[names_in[0]].storage.size
            used = sum(self._tensors[name].numel for name in names_in)
            if size > used:
                one = len(names_in) == 1
                raise DataError(
                    f"{self.path}: storage {key} holds {size:,} elements but its "
                    f"{'tensor' if one else 'tensors'} ({', '.join(names_in)}) "
                    f"{'uses' if one else 'use'} {used:,}; a storage is read only where its "
                    "tensors need all of it"
                )
        arrays = {}
        with (
            _reported(self.path),
            zipfile.ZipFile(self.path) if self._zipped else self.path.open("rb") as source,
        ):
            for names_in in readers.values():  # one storage held at a time, beside the copies
                data = _read_storage(source, self._tensors[names_in[0]].storage)
                arrays.update((name, _cut(data, self._tensors[name])) for name in names_in)
        return {name: arrays[name] for name in wanted}


def open_state_dict(path: str | Path) -> StateDictFile:
    """A PyTorch state dict file with its pickle read and every tensor's layout checked against
    its storage and every storage's size against the file, no storage read yet."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: not found")
    with _reported(path):
        zipped = zipfile.is_zipfile(path)
        if zipped:
            state = _read_zip(path)
        else:
            with path.open("rb") as handle:
                state = _read_legacy(handle)
        if not isinstance(state, dict) or not state:
            raise pickle.UnpicklingError("the pickle is not a dict of tensors")
        for name, tensor in state.items():
            if not isinstance(name, str) or not isinstance(tensor, _Tensor):
                raise pickle.UnpicklingError(f"entry {name!r:.60} is not a named tensor")
    for name, tensor in state.items():
        _check_layout(path, name, tensor)
    return StateDictFile(path, dict(state), zipped)


def read_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Every named tensor of a PyTorch state dict file, as NumPy arrays (copies). A caller that
    knows the shapes it needs compares them first: :func:`open_state_dict`."""
    return open_state_dict(path).read()


def _check_layout(path: Path, name: str, tensor: _Tensor) -> None:
    """A tensor must be dense, each element stored once and none skipped, in any order of its
    dimensions (torch stores a transposed or channels-last tensor so): then it spans exactly its
    element count, and that must lie within its storage."""
    expected = 1
    spans = sorted(
        (stride, n) for n, stride in zip(tensor.shape, tensor.strides, strict=True) if n > 1
    )
    dense = 0 not in tensor.strides
    for stride, n in spans:
        dense = dense and stride == expected
        expected *= n
    if not dense:
        raise DataError(
            f"{path}: tensor {name} has strides {tensor.strides} for shape {tensor.shape}: not a "
            "dense layout (each element stored once, none skipped; save tensor.contiguous())"
        )
    if tensor.offset + tensor.numel > tensor.storage.size:
        raise DataError(
            f"{path}: tensor {name} reaches past its storage ({tensor.offset:,} + "
            f"{tensor.numel:,} elements; storage {tensor.storage.key} holds "
            f"{tensor.storage.size:,})"
        )


def _read_legacy(handle: IO[bytes]) -> Any:
    magic = _PlainUnpickler(handle).load()
    if magic != _MAGIC:
        raise pickle.UnpicklingError("no PyTorch magic number at the start")
    if _PlainUnpickler(handle).load() != _PROTOCOL:
        raise pickle.UnpicklingError("an unknown PyTorch file protocol")
    info = _PlainUnpickler(handle).load()
    if not isinstance(info, dict) or info.get("little_endian") is not True:
        raise pickle.UnpicklingError("not written on a little-endian machine")
    unpickler = _StateDictUnpickler(_Bounded(handle, MAX_PICKLE_BYTES))
    state = unpickler.load()
    keys = _PlainUnpickler(handle).load()
    if not isinstance(keys, list) or sorted(keys) != sorted(unpickler.storages):
        raise pickle.UnpicklingError("the storage keys do not match the tensors")
    # Each storage follows as its element count (8 bytes) and its raw bytes, in the keys' order.
    where = handle.tell()
    for key in keys:
        storage = unpickler.storages[key]
        storage.where = where
        where += 8 + storage.nbytes
    missing = where - os.fstat(handle.fileno()).st_size
    if missing > 0:
        raise EOFError(
            f"the file ends {missing:,} bytes before the storages it declares do (truncated, or "
            "not what it claims)"
        )
    return state


def _read_zip(path: Path) -> Any:
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        pickles = [name for name in names if name.endswith("/data.pkl") and name.count("/") == 1]
        if len(pickles) != 1:
            raise pickle.UnpicklingError("a zip without one <name>/data.pkl")
        prefix = pickles[0].removesuffix("data.pkl")
        if archive.getinfo(pickles[0]).file_size > MAX_PICKLE_BYTES:
            raise pickle.UnpicklingError("a data.pkl far larger than a state dict's")
        unpickler = _StateDictUnpickler(io.BytesIO(archive.read(pickles[0])))
        state = unpickler.load()
        for key, storage in unpickler.storages.items():
            storage.where = f"{prefix}data/{key}"
            if storage.where not in names or not _entry_fits(archive, storage):
                raise pickle.UnpicklingError(
                    f"storage {key} is missing or not {storage.nbytes} bytes"
                )
    return state


def _entry_fits(archive: zipfile.ZipFile, storage: _Storage) -> bool:
    """Whether the zip entry declares the storage's size: reading it then stops there however far
    its compressed bytes would inflate."""
    assert isinstance(storage.where, str)
    return archive.getinfo(storage.where).file_size == storage.nbytes


def _read_storage(source: IO[bytes] | zipfile.ZipFile, storage: _Storage) -> np.ndarray:
    """A storage's elements, read into an array of exactly its declared size."""
    data = np.empty(storage.size, dtype=storage.kind.dtype)
    if isinstance(source, zipfile.ZipFile):
        assert isinstance(storage.where, str)
        if not _entry_fits(source, storage):
            raise pickle.UnpicklingError(f"storage {storage.key} changed since it was opened")
        with source.open(storage.where) as entry:
            _fill(entry, data)
        return data
    assert isinstance(storage.where, int)
    source.seek(storage.where)
    (count,) = struct.unpack("<q", _read_exactly(source, 8))
    if count != storage.size:
        raise pickle.UnpicklingError(
            f"storage {storage.key} holds {count} elements, not {storage.size}"
        )
    _fill(source, data)
    return data


def _fill(stream: IO[bytes], data: np.ndarray) -> None:
    """``data``'s bytes from ``stream``, a block at a time: a zip entry is inflated block by
    block rather than all at once beside the array."""
    view = memoryview(data).cast("B")
    done = 0
    while done < len(view):
        count = stream.readinto(view[done : done + _BLOCK])
        if not count:
            raise EOFError(f"the file ends {len(view) - done} bytes early (truncated)")
        done += count


def _cut(data: np.ndarray, tensor: _Tensor) -> np.ndarray:
    """The tensor's elements from its storage (layout and extent checked when opened)."""
    native = data.dtype.newbyteorder("=")
    if tensor.numel == 0:
        return np.zeros(tensor.shape, dtype=native)
    view = np.lib.stride_tricks.as_strided(
        data[tensor.offset :],
        shape=tensor.shape,
        strides=tuple(s * data.itemsize for s in tensor.strides),
    )
    return np.array(view, dtype=native)


def _read_exactly(handle: IO[bytes], count: int) -> bytes:
    data = handle.read(count)
    if len(data) != count:
        raise EOFError(f"the file ends {count - len(data)} bytes early (truncated)")
    return data


class _Bounded:
    """A file read through a limit: the dict's pickle may not run on past ``limit`` bytes. It
    reads no further than asked, so the storages that follow the pickle start where it ends."""

    def __init__(self, handle: IO[bytes], limit: int) -> None:
        self.handle, self.left = handle, limit

    def _take(self, data: bytes) -> bytes:
        self.left -= len(data)
        if self.left < 0:
            raise pickle.UnpicklingError("a pickle far larger than a state dict's")
        return data

    def read(self, size: int = -1) -> bytes:
        return self._take(self.handle.read(self.left + 1 if size is None or size < 0 else size))

    def readline(self, size: int = -1) -> bytes:
        return self._take(self.handle.readline(self.left + 1 if size < 0 else size))

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(memoryview(buffer)))
        memoryview(buffer)[: len(data)] = data
        return len(data)
