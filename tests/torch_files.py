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
from pathlib import Path

import numpy as np

STORAGE_NAMES = {np.dtype(np.float32): "FloatStorage", np.dtype(np.int64): "LongStorage"}


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

    def __init__(self, names, key: str, storage: np.ndarray, shape, strides) -> None:
        self.names, self.key, self.storage = names, key, storage
        self.shape, self.strides = tuple(shape), tuple(strides)

    def __reduce__(self):
        storage = ("storage", self.names.storages[STORAGE_NAMES[self.storage.dtype]], self.key,
                   "cpu", self.storage.size)  # fmt: skip
        return (self.names.rebuild, (_Persistent(storage), 0, self.shape, self.strides, False,
                                     OrderedDict()))  # fmt: skip


def _as_storage(value) -> tuple[np.ndarray, tuple, tuple]:
    """An array (stored whole, C order), or ``(storage, shape, strides)`` for a strided view."""
    if isinstance(value, tuple):
        return value
    contiguous = np.require(value, requirements="C")  # keeps 0-d arrays 0-d
    strides = tuple(s // contiguous.itemsize for s in contiguous.strides)
    return contiguous.reshape(-1), contiguous.shape, strides


class _Persistent:
    def __init__(self, pid: tuple) -> None:
        self.pid = pid


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        return obj.pid if isinstance(obj, _Persistent) else None


def torch_save(path: Path, arrays: dict[str, np.ndarray], layout: str = "legacy") -> Path:
    """``torch.save(state_dict, path)``'s bytes for NumPy arrays, in either layout."""
    stored = {name: _as_storage(value) for name, value in arrays.items()}
    with torch_names() as names:
        state = OrderedDict((name, _Tensor(names, str(i), *parts))
                            for i, (name, parts) in enumerate(stored.items()))  # fmt: skip
        body = io.BytesIO()
        _Pickler(body, protocol=2).dump(state)
    raw = {str(i): storage.astype(storage.dtype.newbyteorder("<")).tobytes()
           for i, (storage, _, _) in enumerate(stored.values())}  # fmt: skip
    if layout == "zip":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("archive/data.pkl", body.getvalue())
            for key, data in raw.items():
                archive.writestr(f"archive/data/{key}", data)
        return path
    header = b"".join(pickle.dumps(value, protocol=2) for value in (
        0x1950A86A20F9469CFC6C, 1001,
        {"protocol_version": 1001, "little_endian": True,
         "type_sizes": {"short": 2, "int": 4, "long": 4}},
    ))  # fmt: skip
    storages = b"".join(
        struct.pack("<q", storage.size) + raw[str(i)]
        for i, (storage, _, _) in enumerate(stored.values())
    )
    keys = pickle.dumps(list(raw), protocol=2)
    path.write_bytes(header + body.getvalue() + keys + storages)
    return path
