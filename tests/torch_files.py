"""Writing PyTorch state-dict files without torch, byte for byte as ``torch.save`` writes them
(both layouts), for the tests of :mod:`dllabs.models.torch_state` and of the weights that use it."""

from __future__ import annotations

import io
import pickle
import struct
import sys
import types
import zipfile
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

FLOAT32 = np.dtype(np.float32)
STORAGE_NAMES = {FLOAT32: "FloatStorage", np.dtype(np.int64): "LongStorage"}


@dataclass(frozen=True)
class Storage:
    """A storage as a crafted file declares it: ``size`` elements of ``dtype``. The file holds
    ``data`` whatever its length, so a file can claim more than it has; with ``data`` None it
    holds ``size`` zeros, written in blocks: a deflated entry of gigabytes costs no memory."""

    size: int
    dtype: np.dtype = FLOAT32
    data: np.ndarray | None = None

    def write(self, out: IO[bytes]) -> None:
        if self.data is not None:
            out.write(self.data.astype(self.data.dtype.newbyteorder("<")).tobytes())
            return
        left, block = self.size * self.dtype.itemsize, bytes(2**22)
        while left:
            out.write(block[: min(left, len(block))])
            left -= min(left, len(block))


@contextmanager
def torch_names() -> Iterator[types.SimpleNamespace]:
    """Stand-ins for the three torch names a state dict's pickle refers to, so that the tests
    write the bytes ``torch.save`` writes without torch installed."""
    torch, utils = types.ModuleType("torch"), types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):  # never called: only pickled by name
        raise AssertionError

    _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = (
        "torch._utils",
        "_rebuild_tensor_v2",
    )
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    storages = {}
    for name in ("FloatStorage", "LongStorage"):
        storages[name] = type(name, (), {"__module__": "torch"})
        setattr(torch, name, storages[name])
    torch._utils = utils
    saved = {name: sys.modules.get(name) for name in ("torch", "torch._utils")}
    sys.modules.update({"torch": torch, "torch._utils": utils})
    try:
        yield types.SimpleNamespace(rebuild=_rebuild_tensor_v2, storages=storages)
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


class _Tensor:
    """Pickles as torch pickles a tensor: its rebuild function, its storage by persistent id,
    offset, shape and strides (in elements)."""

    def __init__(self, names, key: str, storage: Storage, shape, strides) -> None:
        self.names, self.key, self.storage = names, key, storage
        self.shape, self.strides = tuple(shape), tuple(strides)

    def __reduce__(self):
        storage = (
            "storage",
            self.names.storages[STORAGE_NAMES[np.dtype(self.storage.dtype)]],
            self.key,
            "cpu",
            self.storage.size,
        )
        return (
            self.names.rebuild,
            (_Persistent(storage), 0, self.shape, self.strides, False, OrderedDict()),
        )


def _as_storage(value) -> tuple[Storage, tuple, tuple]:
    """An array (stored whole, C order), or ``(storage, shape, strides)`` for a strided view, the
    storage an array or a :class:`Storage`."""
    if isinstance(value, tuple):
        storage, shape, strides = value
        if not isinstance(storage, Storage):
            storage = Storage(storage.size, storage.dtype, storage)
        return storage, shape, strides
    contiguous = np.require(value, requirements="C")  # keeps 0-d arrays 0-d
    strides = tuple(s // contiguous.itemsize for s in contiguous.strides)
    flat = contiguous.reshape(-1)
    return Storage(flat.size, flat.dtype, flat), contiguous.shape, strides


class _Persistent:
    def __init__(self, pid: tuple) -> None:
        self.pid = pid


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        return obj.pid if isinstance(obj, _Persistent) else None


def torch_save(
    path: Path, arrays: dict, layout: str = "legacy", compression: int = zipfile.ZIP_STORED
) -> Path:
    """``torch.save(state_dict, path)``'s bytes for NumPy arrays, in either layout (a zip's
    entries stored, as torch stores them, or with ``compression``)."""
    stored = {name: _as_storage(value) for name, value in arrays.items()}
    with torch_names() as names:
        state = OrderedDict(
            (name, _Tensor(names, str(i), *parts)) for i, (name, parts) in enumerate(stored.items())
        )
        body = io.BytesIO()
        _Pickler(body, protocol=2).dump(state)
    storages = {str(i): storage for i, (storage, _, _) in enumerate(stored.values())}
    if layout == "zip":
        with zipfile.ZipFile(path, "w", compression) as archive:
            archive.writestr("archive/data.pkl", body.getvalue())
            for key, storage in storages.items():
                large = storage.size * storage.dtype.itemsize >= zipfile.ZIP64_LIMIT
                with archive.open(f"archive/data/{key}", "w", force_zip64=large) as entry:
                    storage.write(entry)
        return path
    header = b"".join(
        pickle.dumps(value, protocol=2)
        for value in (
            0x1950A86A20F9469CFC6C,
            1001,
            {
                "protocol_version": 1001,
                "little_endian": True,
                "type_sizes": {"short": 2, "int": 4, "long": 4},
            },
        )
    )
    with path.open("wb") as out:
        out.write(header + body.getvalue() + pickle.dumps(list(storages), protocol=2))
        for storage in storages.values():
            out.write(struct.pack("<q", storage.size))
            storage.write(out)
    return path
