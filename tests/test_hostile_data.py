"""Raw data a careless or hostile teammate might push (``dvc push`` of a crafted ``data/raw``), and
photos and tables as users really have them: each is read correctly or refused in one line naming
the file, before ``preprocess`` commits an output, in bounded memory.

The crafted raw folders are written here as ``download`` would have written them (the files and a
``manifest.json``), then read by ``preprocess`` or by the reader it calls.
"""

from __future__ import annotations

import gzip
import pickle
import re
import struct
import unicodedata
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from dllabs.data import sources
from dllabs.data.readers import (
    MAX_CSV_COLUMNS,
    decode_image,
    list_image_folder,
    read_idx,
    read_labelled_csv,
)
from dllabs.errors import DataError
from dllabs.outputs import save_json
from stages import download, preprocess
from tests.helpers.stages import DOWNLOAD_ARGS, PREPROCESS_ARGS, fails
from tests.memory import measure, python

RAW_IMAGES = Path("data/raw/images")


def raw_source(source: str, files: dict[str, bytes]) -> Path:
    """``data/raw/images`` as ``download`` writes it for ``source``, holding ``files``."""
    for name, data in files.items():
        (RAW_IMAGES / name).parent.mkdir(parents=True, exist_ok=True)
        (RAW_IMAGES / name).write_bytes(data)
    save_json(RAW_IMAGES / "manifest.json", {"source": source, "files": {n: {} for n in files}})
    return RAW_IMAGES


def npz_bytes(**arrays: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def mnist(x_train=None, y_train=None) -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (300, 28, 28), dtype=np.uint8) if x_train is None else x_train
    y = rng.integers(0, 10, 300) if y_train is None else y_train
    test = rng.integers(0, 256, (40, 28, 28), dtype=np.uint8)
    return {"mnist.npz": npz_bytes(x_train=x, y_train=y, x_test=test, y_test=np.arange(40) % 10)}


_IDX_CODES = {"u1": 0x08, "i1": 0x09, "i2": 0x0B, "i4": 0x0C, "f4": 0x0D, "f8": 0x0E}


def idx(array: np.ndarray, dims: tuple[int, ...] | None = None) -> bytes:
    """``array`` as gzipped IDX; ``dims`` overrides the sizes the header claims."""
    code = _IDX_CODES[array.dtype.str[1:]]
    dims = array.shape if dims is None else dims
    header = bytes([0, 0, code, len(dims)]) + b"".join(struct.pack(">I", n) for n in dims)
    big_endian = array.astype(array.dtype.newbyteorder(">"))
    return gzip.compress(header + big_endian.tobytes(), compresslevel=1)


def fashion(images=None, labels=None) -> dict[str, bytes]:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (60, 28, 28), dtype=np.uint8) if images is None else images
    labels = np.arange(60, dtype=np.uint8) % 10 if labels is None else labels
    return {
        "train-images-idx3-ubyte.gz": idx(images),
        "train-labels-idx1-ubyte.gz": idx(labels),
        "t10k-images-idx3-ubyte.gz": idx(images[:20]),
        "t10k-labels-idx1-ubyte.gz": idx(np.asarray(labels[:20])),
    }


def cifar(data=None, labels=None) -> dict[str, bytes]:
    """The six batches, the first replaced by ``data``/``labels`` where given."""
    rng = np.random.default_rng(2)
    files = {}
    for i, name in enumerate([*(f"data_batch_{k}" for k in range(1, 6)), "test_batch"]):
        batch = {
            b"data": rng.integers(0, 256, (20, 3072), dtype=np.uint8),
            b"labels": [int(v) for v in np.arange(20) % 10],
        }
        if i == 0:
            batch[b"data"] = batch[b"data"] if data is None else data
            batch[b"labels"] = batch[b"labels"] if labels is None else labels
        files[f"cifar-10-batches-py/{name}"] = pickle.dumps(batch)
    return files


def read(source: str, files: dict[str, bytes]):
    return sources.read_images(raw_source(source, files), (8, 8), "grayscale")


# --- 3 and 17. raw image sources that are not what their format says ------------------------------

RNG = np.random.default_rng(5)
BAD_RAW = {
    "cifar float pixels": (
        "cifar10",
        cifar(data=RNG.random((20, 3072))),
        r"data_batch_1: b'data' holds float64 values; expected uint8 pixels",
    ),
    "cifar labels fewer than rows": (
        "cifar10",
        cifar(data=np.zeros((40, 3072), np.uint8), labels=[0] * 30),
        r"data_batch_1: b'labels': 30 labels for 40 images",
    ),
    "cifar wrong row width": (
        "cifar10",
        cifar(data=np.zeros((20, 2000), np.uint8)),
        r"data_batch_1: b'data' has shape \(20, 2000\); expected \(rows, 3072\)",
    ),
    "cifar label 42": (
        "cifar10",
        cifar(labels=[42] + [0] * 19),
        r"data_batch_1: b'labels': label 42 at row 1; expected 0 to 9",
    ),
    "cifar label 200": (
        "cifar10",
        cifar(labels=[0] * 19 + [200]),
        r"data_batch_1: b'labels': label 200 at row 20; expected 0 to 9",
    ),
    "cifar negative label": (
        "cifar10",
        cifar(labels=[-1] + [0] * 19),
        r"data_batch_1: b'labels': label -1 at row 1; expected 0 to 9",
    ),
    "cifar string labels": (
        "cifar10",
        cifar(labels=["cat"] * 20),
        r"data_batch_1: b'labels' holds <U3 values; expected integer labels",
    ),
    "mnist labels fewer than images": (
        "mnist",
        mnist(y_train=np.arange(150) % 10),
        r"mnist.npz: y_train: 150 labels for 300 images",
    ),
    "mnist float64 pixels": (
        "mnist",
        mnist(x_train=RNG.random((300, 28, 28))),
        r"mnist.npz: x_train holds float64 values; expected uint8 pixels",
    ),
    "mnist 4-D images": (
        "mnist",
        mnist(x_train=np.zeros((300, 28, 28, 1), np.uint8)),
        r"mnist.npz: x_train has shape \(300, 28, 28, 1\); expected \(images, height, width\)",
    ),
    "mnist 2-D labels": (
        "mnist",
        mnist(y_train=np.zeros((300, 1), np.int64)),
        r"mnist.npz: y_train has shape \(300, 1\); expected one label per image",
    ),
    "idx float64 pixels": (
        "fashion_mnist",
        fashion(images=RNG.random((60, 28, 28))),
        r"train-images-idx3-ubyte.gz: IDX payload holds float64 values; expected uint8 pixels",
    ),
    "idx 2-D labels": (
        "fashion_mnist",
        fashion(labels=np.zeros((60, 2), np.uint8)),
        r"train-labels-idx1-ubyte.gz: IDX payload has shape \(60, 2\); expected one label",
    ),
    "idx label 10": (
        "fashion_mnist",
        fashion(labels=np.full(60, 10, np.uint8)),
        r"train-labels-idx1-ubyte.gz: IDX payload: label 10 at row 1; expected 0 to 9",
    ),
}


@pytest.mark.parametrize("case", BAD_RAW, ids=list(BAD_RAW))
def test_crafted_raw_images_are_refused_naming_the_file(case: str, workdir) -> None:
    source, files, message = BAD_RAW[case]
    with pytest.raises(DataError, match=message):
        read(source, files)


@pytest.mark.parametrize(
    "source, files",
    [
        ("cifar10", cifar(labels=[-3] + [0] * 19)),
        ("fashion_mnist", fashion(labels=np.zeros((60, 2), np.uint8))),
        ("mnist", mnist(y_train=np.arange(150) % 10)),
    ],
)
def test_preprocess_refuses_bad_labels_before_replacing_its_outputs(
    source: str, files: dict[str, bytes], workdir, capsys
) -> None:
    """The probe: negative CIFAR labels and 2-D IDX labels replaced data/processed, then failed
    with np.bincount's traceback. Every check now runs before the outputs are committed."""
    workdir()
    download.main(DOWNLOAD_ARGS)
    preprocess.main(PREPROCESS_ARGS)
    before = {p: p.read_bytes() for p in Path("data/processed").rglob("*") if p.is_file()}
    raw_source(source, files)
    fails(preprocess.main, PREPROCESS_ARGS, capsys)
    after = {p: p.read_bytes() for p in Path("data/processed").rglob("*") if p.is_file()}
    assert after == before


def test_idx_dimensions_whose_product_overflows_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "huge-idx3-ubyte"
    path.write_bytes(bytes([0, 0, 0x08, 4]) + struct.pack(">IIII", *[0xFFFFFFFF] * 4))
    with pytest.raises(DataError, match=r"huge-idx3-ubyte: header shape .* needs \d+ bytes"):
        read_idx(path)


def gzip_of_zeros(path: Path, header: bytes, zeros: int) -> Path:
    """A gzip file of ``header`` then ``zeros`` zero bytes, compressed a block at a time."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: the gzip container
    block = bytes(2**20)
    with path.open("wb") as out:
        out.write(compressor.compress(header))
        for _ in range(zeros // len(block)):
            out.write(compressor.compress(block))
        out.write(compressor.flush())
    return path


def test_an_idx_gzip_bomb_is_refused_in_bounded_memory(tmp_path: Path) -> None:
    """The probe: a 1.4 MB IDX gzip reached 3.0 GB before its one-line error. The header's
    dimensions bound what is decompressed: here 1,000 images of 28x28 (784 KB) followed by
    768 MiB of zeros, in under a megabyte of gzip."""
    header = bytes([0, 0, 0x08, 3]) + struct.pack(">III", 1000, 28, 28)
    bomb = gzip_of_zeros(tmp_path / "bomb-idx3-ubyte.gz", header, 768 * 2**20)
    assert bomb.stat().st_size < 2**20
    code = "import sys\nfrom dllabs.data.readers import read_idx\nread_idx(sys.argv[1])"
    result = measure(python("-c", code, str(bomb)), kill_at_mb=1500)
    assert not result.killed, f"killed at {result.peak_mb:.0f} MB"
    assert "more bytes than its header's shape (1000, 28, 28) allows" in result.stderr
    # The interpreter with NumPy is about 40 MB; the bound leaves room for the 784 KB payload and
    # the decompressor's buffers, and sits far below the 768 MiB the bomb inflates to.
    assert result.peak_mb < 200, result.peak_mb


def test_an_idx_header_claiming_more_than_the_limit_is_refused_unread(tmp_path: Path) -> None:
    header = bytes([0, 0, 0x08, 3]) + struct.pack(">III", 10**9, 64, 64)
    path = tmp_path / "claims-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(header + bytes(100)))
    with pytest.raises(
        DataError,
        match=r"claims-idx3-ubyte.gz: header shape \(1000000000, 64, "
        r"64\) needs 4096000000000 bytes, more than the .* limit",
    ):
        read_idx(path)


# --- 1 and 13. tables: every value must fit float32, and the header is checked first -------------


@pytest.mark.parametrize("cell", ["1e39", "-1e39", "1e300", "-3.5e38"])
def test_a_csv_value_beyond_float32_is_named(cell: str, tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text(f"a,b,label\n1,2,0\n3,{cell},1\n")
    with pytest.raises(
        DataError,
        match=rf"rows.csv: row 3, column 'b': {cell} is outside the "
        r"range of 32-bit floats \(±3.4e\+38\)",
    ):
        read_labelled_csv(path, "label")


def test_the_largest_float32_values_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text("a,b,label\n3.4e38,-3.4e38,0\n1,2,1\n")
    rows = read_labelled_csv(path, "label")
    assert np.isfinite(rows.x).all() and rows.x[0, 0] == np.float32(3.4e38)


def test_preprocess_refuses_a_value_beyond_float32_naming_the_users_file(
    workdir, tmp_path, capsys
) -> None:
    """The probe: preprocess wrote inf into series.npz, and train_autoencoder then blamed its
    sigmoid. The error now names the user's file, not its copy under data/raw/anomaly."""
    table = tmp_path / "sensors.csv"
    rows = ["t,v,label"] + [f"{i},{i % 5}.5,{int(i % 6 == 0)}" for i in range(60)]
    rows[7] = "6,1e39,0"
    table.write_text("\n".join(rows) + "\n")
    workdir(
        **{
            "data.anomaly": "csv",
            "data.csv_path": str(table),
            "data.label_column": "label",
            "data.normal_label": 0,
        }
    )
    download.main(DOWNLOAD_ARGS)
    err = fails(preprocess.main, PREPROCESS_ARGS, capsys)
    # The user's file by its path inside the project (tmp_path is the project here).
    assert (
        "error: sensors.csv: row 8, column 'v': 1e39 is outside the range of 32-bit floats" in err
    )
    assert "data/raw" not in err
    assert not Path("data/processed").exists() or not any(Path("data/processed").iterdir())


def test_a_table_wider_than_the_limit_is_refused_from_its_first_line(tmp_path: Path) -> None:
    """The probe: a CSV of 1M columns took preprocess 186 s and 5.7 GB."""
    path = tmp_path / "wide.csv"
    line = ",".join(["1"] * (MAX_CSV_COLUMNS + 1))
    path.write_text(line + "\n" + line + "\n")
    with pytest.raises(
        DataError,
        match=rf"wide.csv: {MAX_CSV_COLUMNS + 1:,} columns; expected at "
        rf"most {MAX_CSV_COLUMNS:,}",
    ):
        read_labelled_csv(path, -1)


def test_a_table_of_the_wrong_width_is_refused_from_its_first_line(tmp_path: Path) -> None:
    """The probe: `predict anomaly` parsed a 100k-column file whole (20 s, 1.3 GB) before saying
    the column count was wrong; the expected count is checked against the first line."""
    path = tmp_path / "rows.csv"
    path.write_text("\n".join(",".join(["1"] * 50) for _ in range(4)) + "\n")
    with pytest.raises(
        DataError,
        match=r"rows.csv: 49 feature columns besides the label column, "
        r"the model takes 140 features",
    ):
        read_labelled_csv(path, -1, features=140)
    with pytest.raises(DataError, match=r"rows.csv: 50 columns, the model takes 140 features"):
        read_labelled_csv(path, None, features=140)
    assert read_labelled_csv(path, -1, features=49).x.shape == (4, 49)


@pytest.mark.slow
def test_a_wide_table_is_parsed_in_bounded_memory(tmp_path: Path) -> None:
    """Wide but within the limit: 20,000 columns of 300 rows (12 MB of text, 24 MB as float32).
    Parsed whole as strings (pandas ``dtype=str``, then each column converted) this peaked at
    391 MB, about 60 bytes a cell; parsed a block of rows at a time it needs the float32 result
    and one block."""
    path = tmp_path / "wide.csv"
    rng = np.random.default_rng(0)
    with path.open("w") as out:
        for _ in range(300):
            out.write(",".join(map(str, rng.integers(0, 9, 20_000))) + ",0\n")
    code = (
        "import sys\nfrom dllabs.data.readers import read_labelled_csv\n"
        "print(read_labelled_csv(sys.argv[1], -1).x.shape)"
    )
    result = measure(python("-c", code, str(path)), kill_at_mb=2000)
    assert result.returncode == 0, result.stderr
    assert "(300, 20000)" in result.stdout
    # Measured 218 MB: pandas and NumPy (about 110 MB), the 24 MB result and a block of a
    # million cells as Python strings. The bound sits between that and the 391 MB of parsing whole.
    assert result.peak_mb < 300, result.peak_mb


# --- 4. photos as phones and editors save them -------------------------------------------------


def two_colour_photo(path: Path, orientation: int | None, mode: str = "RGB") -> Path:
    """A 40x20 picture, red on its left half and blue on the right, with an EXIF orientation."""
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :20, 0] = 255
    pixels[:, 20:, 2] = 255
    image = Image.fromarray(pixels).convert(mode)
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    image.save(path, exif=exif)
    return path


@pytest.mark.parametrize("orientation", [3, 6, 8])
@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_exif_orientation_is_applied_as_a_viewer_shows_the_photo(
    orientation: int, suffix: str, tmp_path: Path
) -> None:
    photo = two_colour_photo(tmp_path / f"phone{suffix}", orientation)
    with Image.open(photo) as opened:
        shown = ImageOps.exif_transpose(opened).convert("RGB").resize((10, 16), Image.BILINEAR)
        stored = opened.convert("RGB").resize((10, 16), Image.BILINEAR)
    decoded = decode_image(photo, (16, 10), "rgb")
    np.testing.assert_array_equal(decoded, np.asarray(shown))
    assert not np.array_equal(decoded, np.asarray(stored))  # the control: the tag matters


def test_transparent_pixels_are_composited_on_white(tmp_path: Path) -> None:
    """A transparent background is white, as an image viewer and a browser show it, not the
    black (or whatever colour) its invisible pixels happen to hold."""
    pixels = np.zeros((8, 8, 4), np.uint8)  # transparent black
    pixels[2:6, 2:6] = (200, 0, 0, 255)  # an opaque red square
    pixels[0, 0] = (0, 0, 0, 128)  # half-transparent black
    Image.fromarray(pixels, "RGBA").save(tmp_path / "logo.png")
    decoded = decode_image(tmp_path / "logo.png", (8, 8), "rgb")
    assert (decoded[7, 7] == 255).all()
    assert tuple(decoded[3, 3]) == (200, 0, 0)
    assert 125 <= decoded[0, 0, 0] <= 129  # half of white
    grey = decode_image(tmp_path / "logo.png", (8, 8), "grayscale")
    assert grey[7, 7, 0] == 255


def test_a_palette_image_with_a_transparent_colour_is_composited_on_white(tmp_path: Path) -> None:
    image = Image.new("P", (6, 6), 0)
    image.putpalette([0, 0, 0, 0, 200, 0])
    image.paste(1, (0, 0, 3, 6))
    image.save(tmp_path / "icon.png", transparency=0)
    decoded = decode_image(tmp_path / "icon.png", (6, 6), "rgb")
    assert tuple(decoded[0, 0]) == (0, 200, 0)
    assert tuple(decoded[0, 5]) == (255, 255, 255)


# --- smaller things: class names -------------------------------------------------------------


def test_class_folder_names_are_normalised_to_nfc(tmp_path: Path) -> None:
    decomposed = unicodedata.normalize("NFD", "café")
    for name in (decomposed, "tea"):
        (tmp_path / name).mkdir()
        Image.new("L", (4, 4)).save(tmp_path / name / "1.png")
    listed = list_image_folder(tmp_path, (4, 4), "grayscale")
    assert listed.class_names == ["café", "tea"]
    assert unicodedata.is_normalized("NFC", listed.class_names[0])
    assert len(listed.x) == 2


def test_two_spellings_of_one_class_name_are_refused(tmp_path: Path) -> None:
    composed, decomposed = (unicodedata.normalize(form, "café") for form in ("NFC", "NFD"))
    for name in (composed, decomposed):
        (tmp_path / name).mkdir()
        Image.new("L", (4, 4)).save(tmp_path / name / "1.png")
    message = f"class folders {decomposed!r} and {composed!r} are one name in two Unicode spellings"
    with pytest.raises(DataError, match=re.escape(message)):
        list_image_folder(tmp_path, (4, 4), "grayscale")


# --- arrays from a shared remote: headers checked against what the file holds -----------------


def npy_claiming(shape: tuple[int, ...], payload: bytes = b"") -> bytes:
    """An ``.npy`` whose header claims ``shape`` of uint8, followed by ``payload`` only."""
    import io

    buffer = io.BytesIO()
    header = {"descr": "|u1", "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue() + payload


def test_an_npz_whose_header_claims_more_than_it_holds_is_refused(workdir) -> None:
    """The probe's 128-byte ``.npy`` claiming 10**12 images, inside ``mnist.npz``: refused from
    its header, where ``np.load`` would ask for a terabyte (``MemoryError``)."""
    import zipfile

    path = RAW_IMAGES / "mnist.npz"
    path.parent.mkdir(parents=True)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x_train.npy", npy_claiming((10**12, 28, 28)))
    with pytest.raises(
        DataError,
        match=r"mnist.npz: x_train.npy has a header for \(1000000000000, "
        r"28, 28\) uint8 \(784,000,000,000,000 bytes\) but holds 0",
    ):
        sources.load_npz(path)


def test_an_npz_of_arrays_larger_than_memory_is_refused_unread(workdir, monkeypatch) -> None:
    """Consistent sizes but more than the machine could hold: a deflated entry can claim
    gigabytes in a few kilobytes, and the zip module would inflate all it claims."""
    from dllabs import outputs

    path = RAW_IMAGES / "mnist.npz"
    path.parent.mkdir(parents=True)
    np.savez_compressed(path, x_train=np.zeros((1000, 28, 28), np.uint8))
    monkeypatch.setattr(outputs, "_memory_bytes", lambda: 1_000_000)
    with pytest.raises(
        DataError,
        match=r"mnist.npz: its arrays need 784,000 bytes, more than "
        r"half this machine's memory",
    ):
        sources.load_npz(path)


def test_an_npy_whose_header_claims_more_than_the_file_is_refused(tmp_path: Path) -> None:
    from dllabs.data.arrays import load_npy

    path = tmp_path / "y_train.npy"
    path.write_bytes(npy_claiming((10**12,), b"\0" * 16))
    with pytest.raises(
        DataError,
        match=r"y_train.npy: \d+ bytes, but its header "
        r"\(\(1000000000000,\), uint8\) needs",
    ):
        load_npy(path)


def test_every_remote_file_has_a_size_cap_of_its_own_kept_when_pinned_by_params() -> None:
    """Each cap is set from the file's published size (a few times it), not left at fetch's
    default, and pinning an unpinned file by a params hash keeps it."""
    from dllabs.data.fetch import DEFAULT_MAX_BYTES

    for files in sources.REMOTE.values():
        for remote in files:
            assert remote.max_bytes != DEFAULT_MAX_BYTES, remote.name
    (ecg,) = sources.remote_files("ecg5000", "0" * 64)
    assert ecg.max_bytes == sources.REMOTE["ecg5000"][0].max_bytes == 32 << 20
    assert ecg.known_hash == "sha256:" + "0" * 64


def test_tokenize_names_the_users_text_file_not_its_copy(workdir, capsys) -> None:
    from stages import tokenize
    from tests.helpers.stages import TOKENIZE_ARGS

    Path("story.txt").write_text("Once upon a time.\nThe end.\n", encoding="utf-8")
    workdir(**{"data.text": "file", "data.text_path": "story.txt"})
    download.main(DOWNLOAD_ARGS)
    copy = Path("data/raw/text/story.txt")
    copy.write_bytes(copy.read_bytes() + b"\xff\n")  # as a teammate's push could leave it
    err = fails(tokenize.main, TOKENIZE_ARGS, capsys)
    assert "error: story.txt: not UTF-8 text" in err and "data/raw" not in err


def test_a_json_file_past_its_bound_or_not_a_regular_file_is_refused_unread(tmp_path) -> None:
    """A model folder's summary.json or a threshold file arrives from anyone (--model, --rev): it
    is read whole, so its size is bounded first; a FIFO would block the read."""
    import os

    from dllabs.outputs import load_json

    big = tmp_path / "summary.json"
    big.write_text('{"pad": "' + "x" * 2000 + '"}')
    with pytest.raises(DataError, match=r"summary.json: over 1,000 bytes"):
        load_json(big, max_bytes=1000)
    assert load_json(big, max_bytes=4000)["pad"] == "x" * 2000
    os.mkfifo(tmp_path / "threshold.json")
    with pytest.raises(DataError, match=r"threshold.json: not a regular file"):
        load_json(tmp_path / "threshold.json")
