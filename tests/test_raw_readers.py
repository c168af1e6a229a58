"""Raw-file parsers on files the tests make: IDX, tar archives, CIFAR batches, images, CSV, text."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dllabs.errors import DataError
from dllabs.readers import (
    folder_splits,
    read_cifar_batch,
    read_idx,
    read_image_folder,
    read_labelled_csv,
    read_text,
    safe_extract_tar,
)


def idx(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def test_idx_round_trip_gzip_and_plain(tmp_path: Path) -> None:
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    labels = np.array([7, 3], dtype=np.uint8)
    (tmp_path / "images.gz").write_bytes(gzip.compress(idx(images)))
    (tmp_path / "labels").write_bytes(idx(labels))
    assert np.array_equal(read_idx(tmp_path / "images.gz"), images)
    assert np.array_equal(read_idx(tmp_path / "labels"), labels)


def test_idx_bad_header_and_size(tmp_path: Path) -> None:
    (tmp_path / "bad").write_bytes(b"\x12\x34\x08\x01" + (3).to_bytes(4, "big") + b"abc")
    with pytest.raises(DataError, match=r"bad: bad IDX header"):
        read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(idx(np.zeros((4, 2), dtype=np.uint8))[:-3])
    with pytest.raises(
        DataError, match=r"short: IDX payload is 5 bytes, header shape \(4, 2\) needs 8"
    ):
        read_idx(tmp_path / "short")


def test_truncated_gzip_names_the_file(tmp_path: Path) -> None:
    blob = gzip.compress(idx(np.zeros((50, 28, 28), dtype=np.uint8)))
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(
        DataError, match=r"t10k-images-idx3-ubyte\.gz: unreadable or truncated gzip"
    ):
        read_idx(tmp_path / "t10k-images-idx3-ubyte.gz")


def tarball(path: Path, members: list[tarfile.TarInfo], payload: bytes = b"data") -> None:
    with tarfile.open(path, "w:gz") as tar:
        for info in members:
            if info.isfile():
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
            else:
                tar.addfile(info)


def test_safe_extract_good_archive(tmp_path: Path) -> None:
    tarball(tmp_path / "ok.tar.gz", [tarfile.TarInfo("pkg/a.bin"), tarfile.TarInfo("pkg/b.bin")])
    names = safe_extract_tar(tmp_path / "ok.tar.gz", tmp_path / "out")
    assert names == ["pkg/a.bin", "pkg/b.bin"]
    assert (tmp_path / "out" / "pkg" / "a.bin").read_bytes() == b"data"


@pytest.mark.parametrize("name", ["../evil.txt", "pkg/../../evil.txt", "/tmp/evil-absolute.txt"])
def test_safe_extract_rejects_escaping_members(tmp_path: Path, name: str) -> None:
    tarball(tmp_path / "bad.tar.gz", [tarfile.TarInfo("pkg/fine.txt"), tarfile.TarInfo(name)])
    with pytest.raises(DataError, match="escapes the target folder"):
        safe_extract_tar(tmp_path / "bad.tar.gz", tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists() and not Path("/tmp/evil-absolute.txt").exists()
    assert not (tmp_path / "out" / "pkg" / "fine.txt").exists()  # nothing written at all


def test_safe_extract_rejects_links(tmp_path: Path) -> None:
    link = tarfile.TarInfo("pkg/link")
    link.type = tarfile.SYMTYPE
    link.linkname = "../../outside"
    tarball(tmp_path / "link.tar.gz", [link])
    with pytest.raises(DataError, match="is a link or special file"):
        safe_extract_tar(tmp_path / "link.tar.gz", tmp_path / "out")
    assert not (tmp_path / "out" / "pkg" / "link").exists()


def test_truncated_archive(tmp_path: Path) -> None:
    tarball(tmp_path / "ok.tar.gz", [tarfile.TarInfo("a.bin")], payload=os.urandom(50_000))
    blob = (tmp_path / "ok.tar.gz").read_bytes()
    (tmp_path / "cut.tar.gz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match=r"cut\.tar\.gz: truncated or corrupt archive"):
        safe_extract_tar(tmp_path / "cut.tar.gz", tmp_path / "out")


def test_cifar_batch_loads_arrays_and_refuses_code(tmp_path: Path) -> None:
    batch = {b"data": np.arange(12, dtype=np.uint8).reshape(2, 6), b"labels": [1, 2]}
    (tmp_path / "data_batch_1").write_bytes(pickle.dumps(batch))
    loaded = read_cifar_batch(tmp_path / "data_batch_1")
    assert np.array_equal(loaded[b"data"], batch[b"data"]) and loaded[b"labels"] == [1, 2]

    class Exploit:
        def __reduce__(self):
            return (os.system, ("touch pwned",))

    (tmp_path / "evil").write_bytes(pickle.dumps({b"data": Exploit()}))
    with pytest.raises(DataError, match="refusing to load"):
        read_cifar_batch(tmp_path / "evil")
    assert not Path("pwned").exists()


def save_image(path: Path, size=(10, 12), mode="RGB", fmt=None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(0).integers(0, 256, (*size, 3), dtype=np.uint8)
    Image.fromarray(pixels).convert(mode).save(path, format=fmt)


def test_image_folder_shapes_labels_and_modes(tmp_path: Path) -> None:
    for name in ("b_dog", "a_cat"):
        for i in range(3):
            save_image(tmp_path / "pets" / name / f"{i}.png")
    save_image(tmp_path / "pets" / "a_cat" / "extra.BMP", fmt="BMP")
    rgb = read_image_folder(tmp_path / "pets", (6, 5), "rgb")
    assert rgb.x.shape == (7, 6, 5, 3) and rgb.x.dtype == np.uint8
    assert rgb.class_names == ["a_cat", "b_dog"] and rgb.y.tolist() == [0, 0, 0, 0, 1, 1, 1]
    gray = read_image_folder(tmp_path / "pets", (4, 4), "grayscale")
    assert gray.x.shape == (7, 4, 4, 1)


def test_image_folder_errors_name_the_folder_or_file(tmp_path: Path) -> None:
    save_image(tmp_path / "pets" / "cat" / "0.png")
    (tmp_path / "pets" / "dog").mkdir()
    with pytest.raises(DataError, match=r"pets/dog: class folder has no images"):
        read_image_folder(tmp_path / "pets", (4, 4), "rgb")
    (tmp_path / "pets" / "dog" / "broken.png").write_bytes(b"not a png at all")
    with pytest.raises(DataError, match=r"dog/broken\.png: unreadable image"):
        read_image_folder(tmp_path / "pets", (4, 4), "rgb")
    with pytest.raises(DataError, match="no class sub-folders"):
        read_image_folder(tmp_path / "pets" / "cat", (4, 4), "rgb")


def test_folder_split_detection(tmp_path: Path) -> None:
    (tmp_path / "plain" / "cat").mkdir(parents=True)
    assert folder_splits(tmp_path / "plain") == []
    for split in ("train", "test"):
        (tmp_path / "split" / split / "cat").mkdir(parents=True)
    assert folder_splits(tmp_path / "split") == ["train", "test"]
    (tmp_path / "nosplit" / "val").mkdir(parents=True)
    with pytest.raises(DataError, match="no train/ sub-folder"):
        folder_splits(tmp_path / "nosplit")


def test_csv_with_header_and_named_label(tmp_path: Path) -> None:
    path = tmp_path / "fraud.csv"
    path.write_text('Time,V1,"Amount",Class\n0,1.5,10,0\n1,-2.5,20,"1"\n')
    rows = read_labelled_csv(path, "Class")
    assert rows.x.tolist() == [[0, 1.5, 10], [1, -2.5, 20]] and rows.labels.tolist() == ["0", "1"]


def test_headerless_csv_label_last_like_ecg(tmp_path: Path) -> None:
    path = tmp_path / "ecg.csv"
    path.write_text("0.1,0.2,0.3,1.0\n0.4,0.5,0.6,2.0\n")
    rows = read_labelled_csv(path, -1)
    assert rows.x.shape == (2, 3) and rows.labels.tolist() == ["1", "2"]


def test_ucr_whitespace_layout_label_first(tmp_path: Path) -> None:
    path = tmp_path / "ECG5000_TRAIN.txt"
    path.write_text("  1.0000000e+00  -1.1e-01  2.5e-01\n  3.0000000e+00   4.2e-01 -9.0e-02\n")
    rows = read_labelled_csv(path, 0)
    assert rows.labels.tolist() == ["1", "3"]
    assert np.allclose(rows.x, [[-0.11, 0.25], [0.42, -0.09]])


@pytest.mark.parametrize(
    ("line", "expected"),
    [("1,,3,0", r"row 3, column 'b': expected a number, got ''"),
     ("1,2,abc,0", r"row 3, column 'c': expected a number, got 'abc'"),
     ("1,2,inf,0", r"row 3, column 'c': expected a number, got 'inf'")],
)  # fmt: skip
def test_csv_bad_cells_are_named(tmp_path: Path, line: str, expected: str) -> None:
    path = tmp_path / "t.csv"
    path.write_text(f"a,b,c,label\n1,2,3,0\n{line}\n")
    with pytest.raises(DataError, match=expected):
        read_labelled_csv(path, "label")


def test_csv_unknown_label_column_and_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match=r"no label column 'Class' \(columns: a, b\)"):
        read_labelled_csv(path, "Class")
    with pytest.raises(DataError, match="label column index 5 out of range"):
        read_labelled_csv(path, 5)
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="empty file"):
        read_labelled_csv(tmp_path / "empty.csv", 0)


def test_read_text_encodings(tmp_path: Path) -> None:
    (tmp_path / "bom.txt").write_bytes("\ufeffAlice".encode())
    assert read_text(tmp_path / "bom.txt") == "Alice"
    (tmp_path / "latin.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin\.txt: not UTF-8 text"):
        read_text(tmp_path / "latin.txt")
