"""Images read from disk a batch at a time: the same rows, batches and weights as in memory."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest

from dllabs.data.arrays import NpyRows, NpyWriter, save_npy
from dllabs.data.datasets import MEMORY_ENV, ImageBatches, ImageSplits
from dllabs.errors import DataError, LabError
from dllabs.models import builders
from dllabs.models.builders import PixelStats, build_cnn
from dllabs.params import CNN, Base
from dllabs.training.devices import setup_run
from dllabs.training.fit import fit
from tests.helpers.data import save_arrays


def images(n: int = 37, shape: tuple[int, ...] = (5, 4, 3), seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype=np.uint8)


def test_npy_files_have_numpy_save_bytes_however_they_are_written(tmp_path: Path) -> None:
    x = images()
    np.save(tmp_path / "numpy.npy", x)
    save_npy(tmp_path / "whole.npy", x)
    with NpyWriter(tmp_path / "blocks.npy", x.shape, x.dtype) as writer:
        for start in range(0, len(x), 10):  # blocks of 10, the last one short
            writer.write(x[start : start + 10])
    expected = (tmp_path / "numpy.npy").read_bytes()
    assert (tmp_path / "whole.npy").read_bytes() == expected
    assert (tmp_path / "blocks.npy").read_bytes() == expected
    names = np.array(["cat", "dog"])
    np.save(tmp_path / "names_np.npy", names)
    save_npy(tmp_path / "names.npy", names)
    assert (tmp_path / "names.npy").read_bytes() == (tmp_path / "names_np.npy").read_bytes()


def test_a_short_or_misshapen_write_is_refused(tmp_path: Path) -> None:
    x = images()
    short = NpyWriter(tmp_path / "short.npy", x.shape, x.dtype)
    short.write(x[:30])
    with pytest.raises(ValueError, match="30 rows written of 37 announced"):
        short.close()
    with NpyWriter(tmp_path / "bad.npy", x.shape, x.dtype) as writer:
        with pytest.raises(ValueError, match=r"rows of shape \(5, 4, 1\)"):
            writer.write(x[:3, :, :, :1])
        writer.write(x)


def test_rows_read_from_disk_equal_np_load(tmp_path: Path) -> None:
    x = images()
    save_npy(tmp_path / "x.npy", x)
    rows = NpyRows(tmp_path / "x.npy")
    assert (len(rows), rows.shape, rows.dtype, rows.nbytes) == (37, x.shape, x.dtype, x.nbytes)
    keys = [
        3,
        -1,
        np.int64(5),
        slice(None),
        slice(4, 20),
        slice(30, 100),
        slice(20, 4),
        slice(2, 30, 3),
        slice(None, None, -2),
        [7, 2, 2, 36, 0, 1, 3, 4, 5],
        np.array([], dtype=np.int64),
        np.array([-1, -37]),
        np.arange(37)[::-1],
        np.random.default_rng(1).permutation(37)[:16],
        x[:, 0, 0, 0] > 128,
        (slice(1, 5), 2),
        (4, slice(1, 3)),
    ]
    for key in keys:
        expected = x[key]
        got = rows[key]
        assert got.dtype == expected.dtype and np.array_equal(got, expected), key
    assert np.array_equal(np.asarray(rows), x) and np.array_equal(rows.load(), x)
    for bad in (37, -38, [0, 37], np.ones(5, dtype=bool), [0.5]):
        with pytest.raises(IndexError):
            rows[bad]


def test_a_truncated_or_foreign_file_is_a_one_line_error(tmp_path: Path) -> None:
    save_npy(tmp_path / "x.npy", images())
    data = (tmp_path / "x.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(data[:-7])
    with pytest.raises(DataError, match=r"cut\.npy: \d+ bytes, but its header .* needs \d+"):
        NpyRows(tmp_path / "cut.npy")
    (tmp_path / "text.npy").write_text("not numpy")
    with pytest.raises(DataError, match=r"text\.npy: not a readable \.npy file"):
        NpyRows(tmp_path / "text.npy")
    with pytest.raises(DataError, match=r"missing\.npy: not found"):
        NpyRows(tmp_path / "missing.npy")


def splits_folder(folder: Path, sizes: dict[str, int], shape=(6, 6, 3)) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {}
    for i, (split, n) in enumerate(sizes.items()):
        arrays[f"x_{split}"] = images(n, shape, seed=i)
        arrays[f"y_{split}"] = np.arange(n, dtype=np.int64) % 3
    save_arrays(folder, {**arrays, "class_names": np.array(["a", "b", "c"])})
    return arrays


def test_splits_load_into_memory_up_to_the_budget(tmp_path: Path, monkeypatch) -> None:
    arrays = splits_folder(tmp_path / "images", {"train": 200, "val": 40, "test": 40})
    per_image = 6 * 6 * 3
    monkeypatch.setenv(MEMORY_ENV, str(45 * per_image / 2**20))  # val fits, train does not
    data = ImageSplits.load(tmp_path / "images", ("train", "val"))
    assert isinstance(data["train"][0], NpyRows) and isinstance(data["val"][0], np.ndarray)
    assert data.class_names == ["a", "b", "c"] and data.input_shape == (6, 6, 3)
    for split in ("train", "val"):
        assert np.array_equal(data[split][0][:], arrays[f"x_{split}"])
        assert np.array_equal(data[split][1], arrays[f"y_{split}"])
    monkeypatch.setenv(MEMORY_ENV, "0")
    assert isinstance(ImageSplits.load(tmp_path / "images", ("val",))["val"][0], NpyRows)
    forced = ImageSplits.load(tmp_path / "images", ("train",), in_memory=True)
    assert isinstance(forced["train"][0], np.ndarray)
    monkeypatch.delenv(MEMORY_ENV)  # the default budget holds these few kilobytes
    assert isinstance(ImageSplits.load(tmp_path / "images", ("train",))["train"][0], np.ndarray)
    monkeypatch.setenv(MEMORY_ENV, "lots")
    with pytest.raises(LabError, match=f"{MEMORY_ENV}='lots': expected megabytes"):
        ImageSplits.load(tmp_path / "images", ("train",))


def test_a_missing_or_old_style_images_path_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"images: not found; expected the folder of \.npy"):
        ImageSplits.load(tmp_path / "images", ("train",))
    (tmp_path / "images.npz").write_bytes(b"PK")
    with pytest.raises(DataError, match=r"images\.npz: a file, not the folder of \.npy arrays"):
        ImageSplits.load(tmp_path / "images.npz", ("train",))
    splits_folder(tmp_path / "images", {"train": 10})
    save_npy(tmp_path / "images" / "y_train.npy", np.zeros(9, dtype=np.int64))
    with pytest.raises(DataError, match=r"x_train\.npy \(10, 6, 6, 3\) and y_train\.npy \(9,\)"):
        ImageSplits.load(tmp_path / "images", ("train",))


def test_batches_are_the_same_from_memory_and_from_disk(tmp_path: Path) -> None:
    x, y = images(50), np.arange(50) % 4
    save_npy(tmp_path / "x.npy", x)
    in_memory = ImageBatches(x, y, 16, shuffle=True, seed=7)
    on_disk = ImageBatches(NpyRows(tmp_path / "x.npy"), y, 16, shuffle=True, seed=7)
    assert len(in_memory) == 4 and in_memory.num_batches is None and in_memory.steps_per_epoch == 4
    seen = []
    for index in range(2 * len(in_memory)):  # two epochs of the endless stream
        (xa, ya), (xb, yb) = in_memory[index], on_disk[index]
        assert np.array_equal(xa, xb) and np.array_equal(ya, yb) and xa.dtype == np.uint8
        seen.append(ya)
    epoch = [np.concatenate(seen[:4]), np.concatenate(seen[4:])]
    order = [np.random.default_rng([7, e]).permutation(50) for e in (0, 1)]
    for e in (0, 1):  # each epoch visits every row once, in its own seeded order
        assert np.array_equal(epoch[e], y[order[e]])
        assert np.array_equal(in_memory[4 * e][0], x[order[e][:16]])
    assert not np.array_equal(order[0], order[1])
    assert len(in_memory[3][1]) == 2  # 50 = 3 x 16 + 2
    resumed = ImageBatches(x, y, 16, shuffle=True, seed=7, first_epoch=1)
    assert np.array_equal(resumed[0][0], in_memory[4][0])

    plain = ImageBatches(NpyRows(tmp_path / "x.npy"), None, 16)
    assert plain.num_batches == 4 and plain.steps_per_epoch is None
    assert np.array_equal(np.concatenate([plain[i][0] for i in range(4)]), x)


def test_pixel_stats_read_disk_rows_a_chunk_at_a_time(tmp_path: Path, monkeypatch) -> None:
    x = images(100, (6, 6, 3))
    save_npy(tmp_path / "x.npy", x)
    whole = PixelStats.of(x)
    monkeypatch.setattr(builders, "PIXEL_CHUNK_VALUES", 7 * 6 * 6 * 3)  # 7 images a chunk
    read = []
    rows = NpyRows(tmp_path / "x.npy")
    original = NpyRows.__getitem__
    monkeypatch.setattr(NpyRows, "__getitem__", lambda self, k: read.append(k) or original(self, k))
    chunked = PixelStats.of(rows)
    assert np.allclose(chunked.mean, whole.mean) and np.allclose(chunked.variance, whole.variance)
    assert read[0] == slice(0, 7) and len(read) == 15


@pytest.fixture
def tiny_cnn(default_params: dict) -> CNN:
    params = copy.deepcopy(default_params["cnn"])
    params.update(
        filters=[4],
        kernel_sizes=[3],
        dense_units=[8],
        epochs=2,
        batch_size=8,
        patience=0,
        reduce_lr_patience=0,
    )
    return CNN(**params)


def test_training_from_disk_gives_the_weights_training_in_memory_gives(
    tmp_path: Path, default_params: dict, tiny_cnn: CNN
) -> None:
    arrays = splits_folder(tmp_path / "images", {"train": 60, "val": 20}, shape=(8, 8, 1))
    base = Base(**{**default_params["base"], "device": "cpu"})
    weights = []
    for in_memory in (True, False):
        data = ImageSplits.load(tmp_path / "images", ("train", "val"), in_memory=in_memory)
        assert isinstance(data["train"][0], np.ndarray if in_memory else NpyRows)
        device = setup_run(base)
        model = build_cnn((8, 8, 1), 3, tiny_cnn, PixelStats.of(data["train"][0]))
        train = ImageBatches(*data["train"], tiny_cnn.batch_size, shuffle=True, seed=base.seed)
        val = ImageBatches(*data["val"], tiny_cnn.batch_size)
        result = fit(model, train, val, tiny_cnn, device, None, verbose=0)
        assert result.epochs_trained == 2
        weights.append(model.get_weights())
    assert len(arrays["y_train"]) == 60
    for a, b in zip(*weights, strict=True):
        assert np.array_equal(a, b)
