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

Every tensor's shape, strides and offset are checked against its storage before the array is cut
from it; a file that is truncated, or not a state dict, fails with one line naming it.
"""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
from collections import OrderedDict
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


@dataclass(frozen=True)
class _StorageType:
    """What ``torch.FloatStorage`` and its kin stand for here: an element type."""

    name: str
    dtype: np.dtype


_STORAGES = {
    name: _StorageType(name, np.dtype(dtype).newbyteorder("<"))
    for name, dtype in (
        ("FloatStorage", np.float32), ("DoubleStorage", np.float64),
        ("HalfStorage", np.float16), ("LongStorage", np.int64), ("IntStorage", np.int32),
        ("ShortStorage", np.int16), ("CharStorage", np.int8), ("ByteStorage", np.uint8),
        ("BoolStorage", np.bool_),
    )
}  # fmt: skip


@dataclass
class _Storage:
    """A storage the pickle refers to by key; its bytes are read after the pickle."""

    key: str
    kind: _StorageType
    size: int
    data: np.ndarray | None = None


@dataclass(frozen=True)
class _Tensor:
    """A tensor as the pickle describes it: a view (offset, shape, strides) into a storage."""

    storage: _Storage
    offset: int
    shape: tuple[int, ...]
    strides: tuple[int, ...]


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


def read_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """The named tensors of a PyTorch state dict file, as little-endian NumPy arrays (copies)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: not found")
    try:
        if zipfile.is_zipfile(path):
            state = _read_zip(path)
        else:
            with path.open("rb") as handle:
                state = _read_legacy(handle)
        return _arrays(state)
    except DataError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, AttributeError,
            IndexError, struct.error, zipfile.BadZipFile, OSError) as exc:  # fmt: skip
        raise DataError(
            f"{path}: not a PyTorch state dict this reader accepts ({one_line(exc, 160)})"
        ) from None


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
    if not isinstance(keys, list) or set(keys) != set(unpickler.storages):
        raise pickle.UnpicklingError("the storage keys do not match the tensors")
    for key in keys:
        storage = unpickler.storages[key]
        (count,) = struct.unpack("<q", _read_exactly(handle, 8))
        if count != storage.size:
            raise pickle.UnpicklingError(
                f"storage {key} holds {count} elements, not {storage.size}"
            )
        raw = _read_exactly(handle, count * storage.kind.dtype.itemsize)
        storage.data = np.frombuffer(raw, dtype=storage.kind.dtype)
    return state


def _read_zip(path: Path) -> Any:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [name for name in names if name.endswith("/data.pkl") and name.count("/") == 1]
        if len(pickles) != 1:
            raise pickle.UnpicklingError("a zip without one <name>/data.pkl")
        prefix = pickles[0].removesuffix("data.pkl")
        if archive.getinfo(pickles[0]).file_size > MAX_PICKLE_BYTES:
            raise pickle.UnpicklingError("a data.pkl far larger than a state dict's")
        unpickler = _StateDictUnpickler(io.BytesIO(archive.read(pickles[0])))
        state = unpickler.load()
        for key, storage in unpickler.storages.items():
            member = f"{prefix}data/{key}"
            expected = storage.size * storage.kind.dtype.itemsize
            if member not in names or archive.getinfo(member).file_size != expected:
                raise pickle.UnpicklingError(f"storage {key} is missing or not {expected} bytes")
            storage.data = np.frombuffer(archive.read(member), dtype=storage.kind.dtype)
    return state


def _arrays(state: Any) -> dict[str, np.ndarray]:
    if not isinstance(state, dict) or not state:
        raise pickle.UnpicklingError("the pickle is not a dict of tensors")
    arrays = {}
    for name, tensor in state.items():
        if not isinstance(name, str) or not isinstance(tensor, _Tensor):
            raise pickle.UnpicklingError(f"entry {name!r:.60} is not a named tensor")
        data = tensor.storage.data
        assert data is not None  # every storage was read before this
        last = tensor.offset + sum((n - 1) * s for n, s in zip(tensor.shape, tensor.strides,
                                                                  strict=True) if n)  # fmt: skip
        if 0 in tensor.shape:
            arrays[name] = np.zeros(tensor.shape, dtype=data.dtype.newbyteorder("="))
            continue
        if last >= len(data):
            raise pickle.UnpicklingError(f"tensor {name} reaches past its storage")
        view = np.lib.stride_tricks.as_strided(
            data[tensor.offset :], shape=tensor.shape,
            strides=tuple(s * data.itemsize for s in tensor.strides),
        )  # fmt: skip
        arrays[name] = np.array(view, dtype=data.dtype.newbyteorder("="))
    return arrays


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
