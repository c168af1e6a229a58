"""PyTorch state dicts read without torch: both of torch's file layouts, made here as torch makes
them; truncated or foreign files are one line; a crafted pickle runs nothing."""

from __future__ import annotations

import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

from dllabs.errors import DataError
from dllabs.models.torch_state import TensorInfo, open_state_dict, read_state_dict
from tests.helpers.data import CreatesAFile
from tests.torch_files import torch_save

ARRAYS = {
    "conv.weight": np.arange(2 * 3 * 3 * 3, dtype=np.float32).reshape(2, 3, 3, 3) / 7,
    "bn.running_var": np.array([0.5, 2.0], dtype=np.float32),
    "bn.num_batches_tracked": np.array(12, dtype=np.int64),
    # A transposed view, as torch stores a tensor made by .t(): shape (2, 3), strides (1, 2).
    "fc.weight": (np.arange(6, dtype=np.float32), (2, 3), (1, 2)),
}
EXPECTED = {
    name: value if not isinstance(value, tuple) else value[0].reshape(3, 2).T
    for name, value in ARRAYS.items()
}


@pytest.mark.parametrize("layout", ["legacy", "zip"])
def test_both_layouts_read_back_every_tensor(layout: str, tmp_path: Path) -> None:
    state = read_state_dict(torch_save(tmp_path / "w.pth", ARRAYS, layout))
    assert list(state) == list(ARRAYS)
    for name, array in EXPECTED.items():
        assert state[name].dtype == array.dtype and np.array_equal(state[name], array), name


@pytest.mark.parametrize("layout", ["legacy", "zip"])
def test_the_tensors_are_described_before_any_is_read(layout: str, tmp_path: Path) -> None:
    state = open_state_dict(torch_save(tmp_path / "w.pth", ARRAYS, layout))
    assert list(state.tensors) == list(ARRAYS)
    assert state.tensors["fc.weight"] == TensorInfo((2, 3), np.dtype(np.float32))
    assert state.tensors["bn.num_batches_tracked"] == TensorInfo((), np.dtype(np.int64))
    some = state.read(["fc.weight", "bn.running_var"])
    assert list(some) == ["fc.weight", "bn.running_var"]
    assert all(np.array_equal(some[name], EXPECTED[name]) for name in some)
    with pytest.raises(DataError, match=r"w.pth: no tensor fc.bias"):
        state.read(["fc.bias"])


def test_the_packaged_imagenet_weights_read_without_torch() -> None:
    from dllabs.models.efficientnet_lite import weights_file

    state = read_state_dict(weights_file())
    assert len(state) == 296
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_fc.weight"].shape == (1000, 1280)
    parameters = sum(v.size for k, v in state.items() if not k.endswith("num_batches_tracked"))
    assert parameters == 4_694_024


@pytest.mark.parametrize("layout", ["legacy", "zip"])
def test_a_truncated_file_is_one_line(layout: str, tmp_path: Path) -> None:
    whole = torch_save(tmp_path / "w.pth", ARRAYS, layout).read_bytes()
    (tmp_path / "cut.pth").write_bytes(whole[: len(whole) - 10])
    with pytest.raises(DataError, match=r"cut.pth: not a PyTorch state dict this reader accepts"):
        read_state_dict(tmp_path / "cut.pth")


def test_a_crafted_pickle_is_refused_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "created-by-the-pickle"
    header = b"".join(
        pickle.dumps(v, protocol=2) for v in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True})
    )
    (tmp_path / "evil.pth").write_bytes(header + pickle.dumps({"w": CreatesAFile(marker)}))
    with zipfile.ZipFile(tmp_path / "evil.zip.pth", "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps(OrderedDict(w=CreatesAFile(marker))))
    for name in ("evil.pth", "evil.zip.pth"):
        with pytest.raises(DataError, match=r"refusing io.open: a state dict does not"):
            read_state_dict(tmp_path / name)
    assert not marker.exists()


def test_a_header_may_hold_no_globals_either(tmp_path: Path) -> None:
    marker = tmp_path / "created-by-the-header"
    (tmp_path / "evil.pth").write_bytes(pickle.dumps(CreatesAFile(marker)))
    with pytest.raises(DataError, match=r"refusing io.open: a header holds plain values"):
        read_state_dict(tmp_path / "evil.pth")
    assert not marker.exists()


def test_a_tensor_past_its_storage_is_refused(tmp_path: Path) -> None:
    path = torch_save(tmp_path / "w.pth", {"w": np.zeros(4, np.float32)}, "zip")
    with zipfile.ZipFile(path) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    with zipfile.ZipFile(path, "w") as archive:  # the storage shrunk to 2 elements
        for name, data in files.items():
            archive.writestr(name, data[:8] if name.endswith("data/0") else data)
    with pytest.raises(DataError, match="storage 0 is missing or not 16 bytes"):
        read_state_dict(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "Ran out of input"),
        (b"not a pickle at all", "not a PyTorch state dict"),
        (pickle.dumps([1, 2, 3]), "no PyTorch magic number"),
    ],
)
def test_foreign_files_are_one_line(content: bytes, message: str, tmp_path: Path) -> None:
    (tmp_path / "other.pth").write_bytes(content)
    with pytest.raises(DataError, match=message):
        read_state_dict(tmp_path / "other.pth")
