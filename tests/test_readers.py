"""dllabs.data.readers on small files the tests make in tmp_path (no downloads, no fixture
files)."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
import tarfile
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from PIL import Image

from dllabs.data.readers import (
    canonical_label,
    folder_splits,
    read_cifar_batch,
    read_idx,
    read_image_folder,
    read_labelled_csv,
    read_text,
    safe_extract_tar,
)
from dllabs.errors import DataError

# --- IDX ------------------------------------------------------------------------------------

_IDX_CODES = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C, np.dtype(">f4"): 0x0D}


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode ``array`` as IDX: two zero bytes, a type code, ndim, big-endian sizes, payload."""
    code = _IDX_CODES[array.dtype]
    header = bytes([0, 0, code, array.ndim]) + b"".join(struct.pack(">I", n) for n in array.shape)
    return header + array.tobytes()


def write_idx(path: Path, array: np.ndarray) -> Path:
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


@pytest.mark.parametrize("suffix", [".gz", ""])
def test_read_idx_round_trips_images_and_labels(tmp_path: Path, suffix: str) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)  # non-square: order matters
    labels = np.array([9, 0, 3, 3, 255], dtype=np.uint8)
    x = read_idx(write_idx(tmp_path / f"images-idx3-ubyte{suffix}", images))
    y = read_idx(write_idx(tmp_path / f"labels-idx1-ubyte{suffix}", labels))
    assert x.shape == (5, 7, 3) and x.dtype == np.uint8
    np.testing.assert_array_equal(x, images)
    assert y.shape == (5,)
    np.testing.assert_array_equal(y, labels)


def test_read_idx_big_endian_types_come_back_native(tmp_path: Path) -> None:
    ints = np.array([[1, -2], [70000, -70000]], dtype=">i4")
    floats = np.array([0.5, -1.25, 1024.0], dtype=">f4")
    got_ints = read_idx(write_idx(tmp_path / "ints.idx", ints))
    got_floats = read_idx(write_idx(tmp_path / "floats.idx.gz", floats))
    assert got_ints.dtype == np.dtype(np.int32) and got_ints.dtype.isnative
    assert got_ints.tolist() == [[1, -2], [70000, -70000]]
    assert got_floats.dtype == np.dtype(np.float32) and got_floats.dtype.isnative
    assert got_floats.tolist() == [0.5, -1.25, 1024.0]


@pytest.mark.parametrize("suffix", [".gz", ""])
def test_read_idx_bad_magic_names_the_file(tmp_path: Path, suffix: str) -> None:
    data = b"\x1f\x8b" + idx_bytes(np.zeros((2, 2), dtype=np.uint8))[2:]  # not 0x0000
    path = tmp_path / f"bad-magic{suffix}"
    path.write_bytes(gzip.compress(data) if suffix else data)
    with pytest.raises(DataError, match="header") as caught:
        read_idx(path)
    assert str(path) in str(caught.value)


def test_read_idx_unknown_type_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad-type"
    path.write_bytes(bytes([0, 0, 0x07, 1]) + struct.pack(">I", 1) + b"\x00")
    with pytest.raises(DataError, match="bad IDX header"):
        read_idx(path)


@pytest.mark.parametrize("delta", [-1, +1])
def test_read_idx_payload_size_mismatch(tmp_path: Path, delta: int) -> None:
    data = idx_bytes(np.zeros((4, 3, 3), dtype=np.uint8))
    data = data[:delta] if delta < 0 else data + b"\x00"
    path = tmp_path / "images.gz"
    path.write_bytes(gzip.compress(data))
    with pytest.raises(DataError) as caught:
        read_idx(path)
    message = str(caught.value)
    assert str(path) in message
    assert f"{36 + delta} bytes" in message and "needs 36" in message


def test_read_idx_truncated_gzip_names_the_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    packed = gzip.compress(idx_bytes(rng.integers(0, 256, size=(50, 28, 28), dtype=np.uint8)))
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(packed[: len(packed) // 2])
    with pytest.raises(DataError, match="truncated") as caught:
        read_idx(path)
    assert str(path) in str(caught.value)


def test_read_idx_missing_file_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nowhere\.gz"):
        read_idx(tmp_path / "nowhere.gz")


# --- tar archives ------------------------------------------------------------------------------


def make_tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return path


def file_member(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def all_files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_safe_extract_tar_extracts_a_good_archive(tmp_path: Path) -> None:
    folder = tarfile.TarInfo("batches")
    folder.type = tarfile.DIRTYPE
    archive = make_tar(
        tmp_path / "good.tar.gz",
        [
            (folder, None),
            file_member("batches/data_batch_1", b"one"),
            file_member("batches/readme.html", b"<p>hi</p>"),
        ],
    )
    target = tmp_path / "out"
    names = safe_extract_tar(archive, target)
    assert names == ["batches", "batches/data_batch_1", "batches/readme.html"]
    assert (target / "batches" / "data_batch_1").read_bytes() == b"one"
    assert (target / "batches" / "readme.html").read_bytes() == b"<p>hi</p>"


def _symlink_out() -> tuple[tarfile.TarInfo, None]:
    link = tarfile.TarInfo("innocent")
    link.type = tarfile.SYMTYPE
    link.linkname = "../outside/evil"
    return link, None


def _hardlink_out() -> tuple[tarfile.TarInfo, None]:
    link = tarfile.TarInfo("innocent")
    link.type = tarfile.LNKTYPE
    link.linkname = "/etc/passwd"
    return link, None


@pytest.mark.parametrize(
    "bad",
    [
        lambda outside: file_member("../outside/evil", b"pwned"),
        lambda outside: file_member("sub/../../outside/evil", b"pwned"),
        lambda outside: file_member(str(outside / "evil"), b"pwned"),
        lambda outside: _symlink_out(),
        lambda outside: _hardlink_out(),
    ],
    ids=["dotdot", "nested-dotdot", "absolute", "symlink", "hardlink"],
)
def test_safe_extract_tar_refuses_escaping_members_and_writes_nothing(tmp_path, bad) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    target = tmp_path / "out"
    # A harmless member first: refusal must happen before anything at all is extracted.
    archive = make_tar(
        tmp_path / "evil.tar.gz",
        [file_member("ok.txt", b"fine"), bad(outside)],
    )
    with pytest.raises(DataError) as caught:
        safe_extract_tar(archive, target)
    assert str(archive) in str(caught.value)
    assert list(outside.iterdir()) == []
    assert not target.exists() or all_files(target) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.tar.gz", "outside"]


def test_safe_extract_tar_sibling_prefix_is_not_inside(tmp_path: Path) -> None:
    # "out-evil" starts with "out" but is not inside it: a string-prefix check would let it pass.
    archive = make_tar(tmp_path / "a.tar.gz", [file_member("../out-evil/x", b"pwned")])
    with pytest.raises(DataError, match="escapes"):
        safe_extract_tar(archive, tmp_path / "out")
    assert not (tmp_path / "out-evil").exists()


def test_safe_extract_tar_truncated_archive_is_a_data_error(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    archive = make_tar(
        tmp_path / "full.tar.gz",
        [file_member("data.bin", rng.integers(0, 256, 64 * 1024, dtype=np.uint8).tobytes())],
    )
    truncated = tmp_path / "cut.tar.gz"
    truncated.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(DataError, match="truncated or corrupt") as caught:
        safe_extract_tar(truncated, tmp_path / "out")
    assert str(truncated) in str(caught.value)


def test_safe_extract_tar_not_an_archive_is_a_data_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"this is not a tarball at all" * 10)
    with pytest.raises(DataError, match=r"junk\.tar\.gz"):
        safe_extract_tar(junk, tmp_path / "out")


# --- CIFAR batches -----------------------------------------------------------------------------


class _Py2StylePickler(pickle._Pickler):  # type: ignore[name-defined]
    """Writes bytes as Python 2 ``str`` opcodes, as in the real CIFAR-10 python batches."""

    dispatch: ClassVar[dict] = dict(pickle._Pickler.dispatch)  # type: ignore[attr-defined]

    def save_bytes(self, obj: bytes) -> None:
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_bytes


def py2_cifar_pickle(batch: dict) -> bytes:
    buffer = io.BytesIO()
    _Py2StylePickler(buffer, protocol=2).dump(batch)
    # NumPy 1.x (which wrote the published files) lived at numpy.core.
    return buffer.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def cifar_batch(n: int = 4) -> dict:
    rng = np.random.default_rng(3)
    return {
        b"batch_label": b"training batch 1 of 5",
        b"labels": [int(v) for v in rng.integers(0, 10, n)],
        b"data": rng.integers(0, 256, size=(n, 3 * 32 * 32), dtype=np.uint8),
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }


@pytest.mark.parametrize("style", ["python3", "python2"])
def test_read_cifar_batch_loads_arrays_and_labels(tmp_path: Path, style: str) -> None:
    batch = cifar_batch()
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps(batch) if style == "python3" else py2_cifar_pickle(batch))
    loaded = read_cifar_batch(path)
    assert loaded[b"labels"] == batch[b"labels"]
    assert loaded[b"batch_label"] == b"training batch 1 of 5"
    assert isinstance(loaded[b"data"], np.ndarray)
    assert loaded[b"data"].dtype == np.uint8
    np.testing.assert_array_equal(loaded[b"data"], batch[b"data"])


class _Exploit:
    def __reduce__(self):
        return (os.system, ("true",))


def test_read_cifar_batch_refuses_a_pickle_that_calls_os_system(tmp_path: Path) -> None:
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": _Exploit(), b"labels": [1]}))
    assert b"system" in path.read_bytes()  # the crafted pickle does reference os.system
    with pytest.raises(DataError, match="system") as caught:
        read_cifar_batch(path)
    assert str(path) in str(caught.value)


def test_read_cifar_batch_refuses_other_globals(tmp_path: Path) -> None:
    path = tmp_path / "test_batch"
    path.write_bytes(pickle.dumps({b"data": Path("x"), b"labels": []}))
    with pytest.raises(DataError, match="refusing"):
        read_cifar_batch(path)


def test_read_cifar_batch_truncated_or_junk_is_a_data_error(tmp_path: Path) -> None:
    good = pickle.dumps(cifar_batch())
    cut = tmp_path / "cut"
    cut.write_bytes(good[: len(good) // 2])
    junk = tmp_path / "junk"
    junk.write_bytes(b"\x00\x01 not a pickle")
    for path in (cut, junk):
        with pytest.raises(DataError) as caught:
            read_cifar_batch(path)
        assert str(path) in str(caught.value)


# --- image folders ----------------------------------------------------------------------------


def save_image(path: Path, color: tuple[int, int, int], size: tuple[int, int] = (12, 9)) -> None:
    """A solid-colour RGB image, ``size`` = (width, height), format from the suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)


RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def make_class_folder(root: Path) -> Path:
    save_image(root / "cat" / "a.png", RED)
    save_image(root / "cat" / "b.bmp", RED, size=(30, 20))
    save_image(root / "dog" / "x.png", BLUE, size=(5, 5))
    save_image(root / "ant" / "deep.PNG", GREEN)  # upper-case suffix
    (root / "dog" / "notes.txt").write_text("not an image", encoding="utf-8")
    (root / ".hidden").mkdir()
    return root


def test_read_image_folder_rgb_resizes_and_labels_by_sorted_class(tmp_path: Path) -> None:
    root = make_class_folder(tmp_path / "images")
    images = read_image_folder(root, size=(6, 10), color_mode="rgb")  # (height, width)
    assert images.class_names == ["ant", "cat", "dog"]
    assert images.x.shape == (4, 6, 10, 3) and images.x.dtype == np.uint8
    assert images.y.tolist() == [0, 1, 1, 2]
    assert images.y.dtype == np.int64
    # Solid colours survive resizing, so each image can be matched to its class.
    assert images.x[0].reshape(-1, 3).tolist() == [list(GREEN)] * 60
    assert images.x[1].reshape(-1, 3).tolist() == [list(RED)] * 60
    assert images.x[2].reshape(-1, 3).tolist() == [list(RED)] * 60
    assert images.x[3].reshape(-1, 3).tolist() == [list(BLUE)] * 60


def test_read_image_folder_grayscale_has_one_channel(tmp_path: Path) -> None:
    root = make_class_folder(tmp_path / "images")
    images = read_image_folder(root, size=(4, 4), color_mode="grayscale")
    assert images.x.shape == (4, 4, 4, 1)
    expected_red = round(0.299 * 255)  # ITU-R 601-2 luma, as PIL's "L" conversion
    assert abs(int(images.x[1, 0, 0, 0]) - expected_red) <= 1
    assert len(np.unique(images.x[1])) == 1


def test_read_image_folder_uses_the_given_class_order(tmp_path: Path) -> None:
    root = tmp_path / "val"
    save_image(root / "cat" / "a.png", RED)
    save_image(root / "dog" / "b.png", BLUE)
    # A validation folder may lack one of the training classes ("ant") and must keep its labels.
    images = read_image_folder(root, (3, 3), "rgb", class_names=["dog", "ant", "cat"])
    assert images.class_names == ["dog", "ant", "cat"]
    assert images.y.tolist() == [0, 2]
    assert images.x[0, 0, 0].tolist() == list(BLUE)


def test_read_image_folder_unknown_class_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "val"
    save_image(root / "cat" / "a.png", RED)
    save_image(root / "zebra" / "b.png", BLUE)
    with pytest.raises(DataError, match="zebra"):
        read_image_folder(root, (3, 3), "rgb", class_names=["cat", "dog"])


def test_read_image_folder_empty_class_folder_is_named(tmp_path: Path) -> None:
    root = tmp_path / "images"
    save_image(root / "cat" / "a.png", RED)
    (root / "empty_class").mkdir()
    (root / "empty_class" / "readme.txt").write_text("no images here", encoding="utf-8")
    with pytest.raises(DataError) as caught:
        read_image_folder(root, (3, 3), "rgb")
    assert str(root / "empty_class") in str(caught.value)


def test_read_image_folder_without_class_folders_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "flat"
    save_image(root / "a.png", RED)
    with pytest.raises(DataError, match="no class sub-folders"):
        read_image_folder(root, (3, 3), "rgb")


def test_read_image_folder_unreadable_image_is_named(tmp_path: Path) -> None:
    root = tmp_path / "images"
    save_image(root / "cat" / "a.png", RED)
    save_image(root / "dog" / "c.png", BLUE)
    broken = root / "cat" / "b.png"
    broken.write_bytes(b"\x89PNG garbage, not really an image" * 3)
    with pytest.raises(DataError) as caught:
        read_image_folder(root, (3, 3), "rgb")
    assert str(broken) in str(caught.value)
    assert "a.png" not in str(caught.value)


def test_folder_splits_detection(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    save_image(plain / "cat" / "a.png", RED)
    assert folder_splits(plain) == {}

    split = tmp_path / "split"
    for name in ("test", "train"):
        save_image(split / name / "cat" / "a.png", RED)
    (split / "val.txt").write_text("a file, not a split folder", encoding="utf-8")
    assert list(folder_splits(split).items()) == [
        ("train", split / "train"),
        ("test", split / "test"),
    ]
    (split / "val").mkdir()
    assert list(folder_splits(split)) == ["train", "val", "test"]

    no_train = tmp_path / "no_train"
    save_image(no_train / "val" / "cat" / "a.png", RED)
    with pytest.raises(DataError, match="no training split"):
        folder_splits(no_train)


@pytest.mark.parametrize(
    ("train", "val", "test"),
    [
        ("training_set", None, "test_set"),
        ("Training", "Valid", "TESTING"),
        ("TRAIN", "validation", "Test"),
    ],
)
def test_split_folders_are_known_by_their_usual_names_in_any_case(
    tmp_path: Path, train: str, val: str | None, test: str
) -> None:
    """Kaggle's training_set/test_set layout included: read as classes, the split folders would
    have become two classes named after them."""
    for name in (train, val, test):
        if name:
            save_image(tmp_path / name / "cat" / "a.png", RED)
    expected = {"train": tmp_path / train, "test": tmp_path / test}
    if val:
        expected["val"] = tmp_path / val
    assert folder_splits(tmp_path) == expected


def test_ambiguous_split_layouts_are_refused(tmp_path: Path) -> None:
    both = tmp_path / "both"
    for name in ("train", "training_set", "test"):
        save_image(both / name / "cat" / "a.png", RED)
    with pytest.raises(DataError, match="train/ and training_set/ are both a train split"):
        folder_splits(both)

    mixed = tmp_path / "mixed"
    for name in ("train", "test", "dog"):
        save_image(mixed / name / "cat" / "a.png", RED)
    with pytest.raises(DataError) as caught:
        folder_splits(mixed)
    message = str(caught.value)
    assert "mixes split folders (test, train) with other folders (dog)" in message
    assert "training_set" in message and "\n" not in message  # the accepted layouts, one line


def test_a_class_folder_holding_folders_and_no_images_is_refused(tmp_path: Path) -> None:
    """A folder one level too deep (``train/training_set/cats/``) would be read as one class."""
    root = tmp_path / "train"
    save_image(root / "training_set" / "cats" / "a.png", RED)
    save_image(root / "training_set" / "dogs" / "b.png", BLUE)
    save_image(root / "other" / "c.png", GREEN)
    with pytest.raises(DataError) as caught:
        read_image_folder(root, (3, 3), "rgb")
    message = str(caught.value)
    assert message.startswith(f"{root / 'training_set'}: holds folders (cats, dogs) and no images")
    assert "<folder>/<split>/<class>/<image>" in message


def test_a_class_folder_may_keep_images_in_sub_folders_beside_its_own(tmp_path: Path) -> None:
    root = tmp_path / "images"
    save_image(root / "cat" / "a.png", RED)
    save_image(root / "cat" / "more" / "b.png", RED)
    save_image(root / "dog" / "c.png", BLUE)
    assert read_image_folder(root, (3, 3), "rgb").y.tolist() == [0, 0, 1]


def test_fewer_than_two_classes_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "images"
    save_image(root / "cat" / "a.png", RED)
    with pytest.raises(DataError, match=r"one class folder \(cat\); a classifier needs two"):
        read_image_folder(root, (3, 3), "rgb")


# --- labelled CSV ------------------------------------------------------------------------------


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_with_header_and_label_by_name(tmp_path: Path) -> None:
    path = write(
        tmp_path / "creditcard.csv",
        'Time,V1,V2,Amount,"Class"\n0,-1.36,0.07,149.62,"0"\n1,1.19,0.27,2.69,"1"\n',
    )
    rows = read_labelled_csv(path, "Class")
    assert rows.x.dtype == np.float32
    np.testing.assert_allclose(rows.x, [[0, -1.36, 0.07, 149.62], [1, 1.19, 0.27, 2.69]], rtol=1e-6)
    assert rows.labels.tolist() == ["0", "1"]


def test_csv_with_header_and_label_by_index(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", "label,a,b\ncat,1,2\ndog,3,4\n")
    rows = read_labelled_csv(path, 0)
    assert rows.x.tolist() == [[1, 2], [3, 4]]
    assert rows.labels.tolist() == ["cat", "dog"]


def test_headerless_csv_with_label_last_like_ecg5000(tmp_path: Path) -> None:
    # ECG5000's ecg.csv: 140 values, then the label (1.0 = normal); here 5 values.
    lines = [
        "-0.11,-2.83,-3.77,-4.35,-4.51,1.0",
        "-1.10,-3.99,-4.28,-4.51,-4.02,0.0",
        "0.50,0.25,0.00,-0.25,-0.50,1.0",
    ]
    path = write(tmp_path / "ecg.csv", "\n".join(lines) + "\n")
    rows = read_labelled_csv(path, -1)
    assert rows.x.shape == (3, 5)  # the first line is data, not a header
    np.testing.assert_allclose(rows.x[0], [-0.11, -2.83, -3.77, -4.35, -4.51], rtol=1e-6)
    np.testing.assert_allclose(rows.x[2], [0.5, 0.25, 0.0, -0.25, -0.5])
    assert rows.labels.tolist() == ["1", "0", "1"]


def test_ucr_whitespace_layout_with_label_first(tmp_path: Path) -> None:
    # UCR archive files: fixed-width, leading spaces, label first in scientific notation.
    text = (
        "  1.0000000e+00  -1.1252183e-01  -2.8272038e+00  -3.7738969e+00\n"
        "  2.0000000e+00  -1.1008778e+00  -3.9968398e+00  -4.2858426e+00\n"
        "  1.0000000e+00   5.0000000e-01   2.5000000e-01   0.0000000e+00\n"
    )
    path = write(tmp_path / "ECG5000_TRAIN.txt", text)
    rows = read_labelled_csv(path, 0)
    assert rows.x.shape == (3, 3)
    np.testing.assert_allclose(rows.x[0], [-0.11252183, -2.8272038, -3.7738969], rtol=1e-6)
    np.testing.assert_allclose(rows.x[2], [0.5, 0.25, 0.0])
    assert rows.labels.tolist() == ["1", "2", "1"]


def test_canonical_label_spellings() -> None:
    assert canonical_label("1.0000000e+00") == "1"
    assert canonical_label(1.0) == "1" == canonical_label(1) == canonical_label("1")
    assert canonical_label("-2.0") == "-2"
    assert canonical_label("0.5") == "0.5"
    assert canonical_label("normal") == "normal"


def test_csv_missing_cell_names_row_and_column(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", "a,b,Class\n1,2,0\n3,4,1\n5,,1\n")
    with pytest.raises(DataError) as caught:
        read_labelled_csv(path, "Class")
    message = str(caught.value)
    assert str(path) in message
    assert "row 4" in message  # 1-based line in the file, header included
    assert "'b'" in message


def test_csv_non_numeric_cell_names_row_and_column(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", "1,2,3,0\n4,5,6,1\n7,oops,9,1\n")
    with pytest.raises(DataError) as caught:
        read_labelled_csv(path, -1)
    message = str(caught.value)
    assert "row 3" in message  # no header: line 3 is the third data row
    assert "column '1'" in message
    assert "oops" in message


def test_ucr_non_numeric_cell_names_row_and_column(tmp_path: Path) -> None:
    path = write(tmp_path / "u.txt", "  1.0e+00  2.0e+00  3.0e+00\n  2.0e+00  NaN  4.0e+00\n")
    with pytest.raises(DataError, match=r"row 2, column '1'"):
        read_labelled_csv(path, 0)


def test_csv_missing_label_is_named(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", "a,b,Class\n1,2,0\n3,4,\n")
    with pytest.raises(DataError, match=r"row 3, column 'Class': missing label"):
        read_labelled_csv(path, "Class")


@pytest.mark.parametrize("label", ["label", 3, -4])
def test_csv_unknown_label_column_is_refused(tmp_path: Path, label: int | str) -> None:
    path = write(tmp_path / "t.csv", "a,b,Class\n1,2,0\n")
    with pytest.raises(DataError) as caught:
        read_labelled_csv(path, label)
    message = str(caught.value)
    assert str(path) in message
    assert str(label) in message


def test_csv_label_name_on_headerless_file_says_there_is_no_header(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", "1,2,0\n")
    with pytest.raises(DataError, match="no header"):
        read_labelled_csv(path, "Class")


def test_csv_empty_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="empty"):
        read_labelled_csv(write(tmp_path / "e.csv", ""), -1)


def test_csv_header_only_has_no_data_rows(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no data rows"):
        read_labelled_csv(write(tmp_path / "h.csv", "a,b,Class\n"), "Class")


def test_headerless_csv_with_a_bom_keeps_its_first_row(tmp_path: Path) -> None:
    # Excel's "CSV UTF-8" starts with a byte-order mark; glued to the first cell ("\ufeff1") it
    # would not parse as a number, the file would pass for one with a header, and its first
    # data row would be silently dropped.
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufeff1,2,0\n3,4,1\n".encode())
    rows = read_labelled_csv(path, -1)
    assert rows.x.tolist() == [[1, 2], [3, 4]]
    assert rows.labels.tolist() == ["0", "1"]


def test_csv_with_a_bom_and_header_finds_the_label(tmp_path: Path) -> None:
    path = tmp_path / "bom_header.csv"
    path.write_bytes("\ufeffClass,a\n1,2\n0,3\n".encode())
    rows = read_labelled_csv(path, "Class")
    assert rows.labels.tolist() == ["1", "0"]
    assert rows.x.tolist() == [[2], [3]]


def test_csv_invalid_utf8_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("caf\u00e9,x\n1,2\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1\.csv"):
        read_labelled_csv(path, -1)


# --- text --------------------------------------------------------------------------------------


def test_read_text_plain_and_with_bom(tmp_path: Path) -> None:
    text = "Alice was beginning to get very tired\u2014of sitting by her sister.\n"
    plain = tmp_path / "plain.txt"
    plain.write_bytes(text.encode("utf-8"))
    bom = tmp_path / "bom.txt"
    bom.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    assert read_text(plain) == text
    assert read_text(bom) == text  # the BOM is dropped, not returned as "\ufeff"


def test_read_text_invalid_utf8_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes(b"ok so far\n" + "na\u00efve caf\u00e9".encode("cp1252"))
    with pytest.raises(DataError) as caught:
        read_text(path)
    message = str(caught.value)
    assert str(path) in message
    assert "UTF-8" in message
    assert f"byte {len(b'ok so far') + 3}" in message  # offset of the first bad byte


def test_read_text_missing_file_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"missing\.txt"):
        read_text(tmp_path / "missing.txt")
