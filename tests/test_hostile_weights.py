"""Weights files named by ``transfer.weights`` (issue 31, items 7 and 8): a PyTorch state dict or
an HDF5 file whose metadata claims more than the model needs is refused with one line naming the
file, the tensor or dataset and what was expected, before anything it claims is allocated; the
legitimate files still load to exactly the weights they held.

Every crafted file is made here, a few hundred bytes to a few MB. Memory is measured in a child
process (:mod:`tests.memory`), whose watchdog kills it past a bound, so that a regression fails
its test rather than the machine.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import zipfile
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest

from dllabs.errors import DataError, ParamsError
from dllabs.models import efficientnet_lite, torch_state
from dllabs.models.applications import application_base
from dllabs.models.torch_state import read_state_dict
from tests.helpers.repo import REPO
from tests.memory import Measured, measure, python
from tests.torch_files import Storage, torch_save

LITE, MOBILENET, SIZE = "efficientnet_lite0", "mobilenet_v2", [32, 32]
ZEROS = np.zeros(1, np.float32)
STEM = (32, 3, 3, 3)  # _conv_stem.weight
STEM_STRIDES = (27, 9, 3, 1)

# SHA-256 of the weights (each one's shape, then its float32 bytes, in the model's order) that
# the packaged ImageNet state dict gave EfficientNet-Lite0 before the reader checked shapes first
# (commit 9459b77): without the top at 32x32, and with it. Loading copies and transposes, with no
# arithmetic, so the digest is the same on any machine.
PACKAGED_WITHOUT_TOP = "cedb27358b32dec92b7bf8bcd8edecd03f65f76320c008c0e01895f2b24d458c"
PACKAGED_WITH_TOP = "77b9f158247dc53a687de897709b76ddfd4013ea950cc099131737f0c2ef767b"

# Children that import TensorFlow print its start-up notices on stderr whatever the log level.
QUIET = {"TF_CPP_MIN_LOG_LEVEL": "3"}
READ_STATE_DICT = """import sys
from dllabs.errors import stage_errors
from dllabs.models.torch_state import read_state_dict
with stage_errors("train_transfer"):
    read_state_dict(sys.argv[1])
"""
APPLICATION_BASE = """import sys
from dllabs.errors import stage_errors
from dllabs.models.applications import application_base
with stage_errors("train_transfer"):
    application_base(sys.argv[1], [32, 32], sys.argv[2])
"""


def digest(model: keras.Model) -> str:
    sha = hashlib.sha256()
    for weight in model.get_weights():
        sha.update(str(weight.shape).encode())
        sha.update(np.ascontiguousarray(weight, np.float32).tobytes())
    return sha.hexdigest()


def refusal(run: Measured) -> str:
    """The one error line of a child that refused its input: exit 1, no traceback, not killed."""
    assert not run.killed, "killed by the watchdog, past its bound"
    assert run.returncode == 1, run.stderr[-2000:]
    assert "Traceback" not in run.stderr, run.stderr[-2000:]
    errors = [line for line in run.stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1 and run.stderr.rstrip().endswith(errors[0]), run.stderr[-2000:]
    return errors[0]


@pytest.fixture(scope="module")
def packaged_state() -> dict[str, np.ndarray]:
    return read_state_dict(efficientnet_lite.weights_file())


# --- 7. state dicts: checked against the model before a storage is read ------------------------


def test_the_packaged_weights_load_exactly_as_before() -> None:
    path = str(efficientnet_lite.weights_file())
    assert digest(application_base(LITE, SIZE, path)) == PACKAGED_WITHOUT_TOP
    assert digest(application_base(LITE, SIZE, "imagenet")) == PACKAGED_WITHOUT_TOP
    with_top = efficientnet_lite.pretrained((32, 32, 3), include_top=True)
    assert digest(with_top) == PACKAGED_WITH_TOP


@pytest.mark.parametrize("layout", ["legacy", "zip"])
def test_the_packaged_tensors_read_back_from_either_layout(
    layout: str, packaged_state: dict, tmp_path: Path
) -> None:
    """Rewritten C-ordered by torch_save, the packaged tensors (permuted strides in the package)
    come back equal from both layouts and load into the model."""
    path = torch_save(tmp_path / "copy.pth", packaged_state, layout)
    again = read_state_dict(path)
    assert all(np.array_equal(again[name], packaged_state[name]) for name in packaged_state)
    assert digest(application_base(LITE, SIZE, str(path))) == PACKAGED_WITHOUT_TOP


@pytest.mark.parametrize("layout", ["legacy", "zip"])
def test_a_tensor_is_checked_against_the_model_before_any_storage_is_read(
    layout: str, packaged_state: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = {**packaged_state, "_conv_head.weight": np.zeros((1280, 321, 1, 1), np.float32)}
    path = torch_save(tmp_path / "wide.pth", state, layout)

    def unread(*args, **kwargs):
        pytest.fail("a storage was read before the shapes were checked")

    monkeypatch.setattr(torch_state, "_read_storage", unread)
    with pytest.raises(
        DataError,
        match=r"^transfer.weights: .*wide.pth: tensor _conv_head.weight has shape "
        r"\(1280, 321, 1, 1\), which does not fit the Keras layer top_conv: expected "
        r"\(1280, 320, 1, 1\)$",
    ):
        application_base(LITE, SIZE, str(path))


@pytest.mark.parametrize(
    ("shape", "strides", "storage"),
    [
        ((10**6, 10**6), (0, 0), 1),  # the probe's: every element the one stored
        (STEM, (1, 1, 1, 1), 864),  # overlapping
        (STEM, (54, 18, 6, 2), 2 * 864),  # every other element: gaps
        (STEM, (27, 9, 3, 0), 864),  # a zero stride on a dimension of three
    ],
)
def test_strides_that_are_not_a_dense_layout_are_refused(
    shape: tuple, strides: tuple, storage: int, tmp_path: Path
) -> None:
    path = torch_save(
        tmp_path / "strided.pth",
        {"_conv_stem.weight": (np.zeros(storage, np.float32), shape, strides)},
        "zip",
    )
    with pytest.raises(
        DataError,
        match=rf"strided.pth: tensor _conv_stem.weight has strides {re.escape(str(strides))} "
        rf"for shape {re.escape(str(shape))}: not a dense layout",
    ):
        read_state_dict(path)


def test_dense_layouts_in_any_dimension_order_are_read(tmp_path: Path) -> None:
    """The package stores its kernels channels-last (strides (1, 32, 288, 96) for the stem), and
    a dimension of one may have any stride: both read as the same values."""
    values = np.arange(864, dtype=np.float32)
    channels_last = values.reshape(3, 3, 3, 32).transpose(3, 2, 0, 1)  # (32, 3, 3, 3)
    column = values[:32].reshape(32, 1, 1, 1)
    path = torch_save(
        tmp_path / "orders.pth",
        {
            "stem": (values, STEM, (1, 32, 288, 96)),
            "column": (values[:32], (32, 1, 1, 1), (1, 512, 7, 512)),
        },
        "zip",
    )
    state = read_state_dict(path)
    assert np.array_equal(state["stem"], channels_last)
    assert np.array_equal(state["column"], column)


def test_a_storage_larger_than_its_tensors_is_refused_unread(tmp_path: Path) -> None:
    path = torch_save(
        tmp_path / "spare.pth",
        {"_conv_stem.weight": (np.zeros(865, np.float32), STEM, STEM_STRIDES)},
        "legacy",
    )
    with pytest.raises(
        DataError,
        match=r"spare.pth: storage 0 holds 865 elements but its tensor \(_conv_stem.weight\) "
        r"uses 864",
    ):
        read_state_dict(path)


def crafted_state_dict(kind: str, folder: Path) -> Path:
    """The probe's files: zero strides over one element (429 bytes), at two sizes; a legacy
    file whose storage claims 10**12 floats (369 bytes); a zip whose deflated storage inflates
    to 1 GiB behind a tensor of the stem's shape (1 MB; the probe's was 2 GB in 1.9 MB, and
    half is made twice as fast and fails the same way)."""
    path = folder / f"{kind}.pth"
    if kind == "zero-strides":
        return torch_save(path, {"_conv_stem.weight": (ZEROS, (10**6, 10**6), (0, 0))}, "zip")
    if kind == "zero-strides-30000":
        return torch_save(path, {"_conv_stem.weight": (ZEROS, (30000, 30000), (0, 0))}, "zip")
    if kind == "claims-10-12":
        storage = Storage(10**12, data=np.zeros(4, np.float32))
        return torch_save(path, {"_conv_stem.weight": (storage, (10**12,), (1,))}, "legacy")
    assert kind == "inflates"
    return torch_save(
        path,
        {"_conv_stem.weight": (Storage(2**28), STEM, STEM_STRIDES)},
        "zip",
        zipfile.ZIP_DEFLATED,
    )


@pytest.fixture(scope="module")
def reading_the_packaged_file() -> Measured:
    """The control: a process that imports only the reader (and NumPy) reading the legitimate
    19 MB state dict."""
    run = measure(python("-c", READ_STATE_DICT, str(efficientnet_lite.weights_file())), cwd=REPO)
    assert run.returncode == 0, run.stderr
    return run


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        (
            "zero-strides",
            r"tensor _conv_stem.weight has strides \(0, 0\) for shape "
            r"\(1000000, 1000000\): not a dense layout",
        ),
        ("zero-strides-30000", r"tensor _conv_stem.weight has strides \(0, 0\)"),
        (
            "claims-10-12",
            r"the file ends 3,999,999,999,984 bytes before the storages it "
            r"declares do",
        ),
        (
            "inflates",
            r"storage 0 holds 268,435,456 elements but its tensor "
            r"\(_conv_stem.weight\) uses 864",
        ),
    ],
    ids=["zero-strides", "zero-strides-30000", "claims-10-12", "inflates"],
)
def test_crafted_state_dicts_are_refused_in_bounded_memory(
    kind: str, message: str, reading_the_packaged_file: Measured, tmp_path: Path
) -> None:
    """Before the checks, measured here: a traceback (`_ArrayMemoryError`, 3.64 TiB); killed
    past 3 GB; a `MemoryError` traceback; the 1 GiB storage read and copied, 2,081 MB. Bound:
    the interpreter with NumPy and the reader is about 33 MB here; refusing must cost less than
    reading the legitimate 19 MB file (54 MB), and never 128 MB. The watchdog stops a regression
    at 512 MB."""
    path = crafted_state_dict(kind, tmp_path)
    assert path.stat().st_size < 2**21
    run = measure(python("-c", READ_STATE_DICT, str(path)), cwd=REPO, kill_at_mb=512)
    line = refusal(run)
    assert line.startswith(f"train_transfer: error: {path}: ")
    assert re.search(message, line), line
    assert run.peak_mb < min(128, reading_the_packaged_file.peak_mb), run.peak_mb


@pytest.mark.slow
def test_a_deflated_storage_of_another_shape_is_refused_before_it_is_inflated(
    packaged_state: dict, tmp_path: Path
) -> None:
    """Through `application_base`, as `train_transfer` calls it: the packaged state dict with the
    head convolution a deflated 1 GiB tensor (1 MB of zip); before the check it peaked at
    2,940 MB and ended in a traceback. Bound: a process that imports TensorFlow and builds the
    base takes 800 to 900 MB here, so the bound is the control's peak, the same process loading
    the legitimate 19 MB file, plus 32 MB of slack for the allocator; the watchdog stops a
    regression 512 MB above it."""
    control = measure(
        python("-c", APPLICATION_BASE, LITE, str(efficientnet_lite.weights_file())),
        cwd=REPO,
        env=QUIET,
    )
    assert control.returncode == 0, control.stderr[-2000:]
    state = {**packaged_state, "_conv_head.weight": (Storage(2**28), (2**28,), (1,))}
    path = torch_save(tmp_path / "head.pth", state, "zip", zipfile.ZIP_DEFLATED)
    assert path.stat().st_size < 20 * 2**20
    run = measure(
        python("-c", APPLICATION_BASE, LITE, str(path)),
        cwd=REPO,
        env=QUIET,
        kill_at_mb=control.peak_mb + 512,
    )
    assert refusal(run) == (
        f"train_transfer: error: transfer.weights: {path}: tensor _conv_head.weight has shape "
        "(268435456,), which does not fit the Keras layer top_conv: expected (1280, 320, 1, 1)"
    )
    assert run.peak_mb < control.peak_mb + 32, (run.peak_mb, control.peak_mb)


# --- 8. HDF5 weights: shapes read with h5py against the model's before Keras loads them --------


@pytest.fixture(scope="module")
def mobilenet(tmp_path_factory: pytest.TempPathFactory) -> tuple[keras.Model, Path, Path]:
    """MobileNetV2 without its top at 32x32 (2.2 million weights), saved by Keras both ways:
    ``.weights.h5`` and the legacy whole-model ``.h5`` (the layout of Keras's own downloads)."""
    folder = tmp_path_factory.mktemp("mobilenet")
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(32, 32, 3))
    model.save_weights(folder / "mobilenet.weights.h5")
    model.save(folder / "mobilenet.h5")
    return model, folder / "mobilenet.weights.h5", folder / "mobilenet.h5"


FIRST_KERNEL = {".weights.h5": "layers/conv2d/vars/0", ".h5": "model_weights/Conv1/Conv1/kernel"}


def crafted_h5(mobilenet, suffix: str, folder: Path, change) -> Path:
    """A copy of the saved file of that suffix, ``change(file, first kernel's path)`` applied."""
    saved = mobilenet[1] if suffix == ".weights.h5" else mobilenet[2]
    path = shutil.copy(saved, folder / f"crafted{suffix}")
    with h5py.File(path, "r+") as file:
        change(file, FIRST_KERNEL[suffix])
    return Path(path)


@pytest.mark.parametrize("suffix", [".weights.h5", ".h5"])
def test_weights_keras_saved_load_exactly(mobilenet, suffix: str) -> None:
    model, weights_h5, whole_h5 = mobilenet
    base = application_base(
        MOBILENET, SIZE, str(weights_h5 if suffix == ".weights.h5" else whole_h5)
    )
    assert len(base.get_weights()) == 260
    assert all(
        np.array_equal(a, b) for a, b in zip(model.get_weights(), base.get_weights(), strict=True)
    )


def replace(shape, dtype="f4", **options):
    """A change for :func:`crafted_h5`: the first kernel replaced by a dataset of that shape,
    unallocated where no data is given."""

    def change(file: h5py.File, name: str) -> None:
        del file[name]
        file.create_dataset(name, shape=shape, dtype=dtype, **options)

    return change


def soft_link(file: h5py.File, name: str) -> None:
    del file[name]
    file[name] = h5py.SoftLink(f"/{name.split('/')[0]}")  # to the group at the top


def external_link(file: h5py.File, name: str) -> None:
    del file[name]
    file[name] = h5py.ExternalLink("/dev/zero", "/")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            replace((3, 3, 3, 33)),
            r"does not fit mobilenet_v2 without its top at input 32x32x3: "
            r"dataset {kernel} has shape \(3, 3, 3, 33\), expected "
            r"\(3, 3, 3, 32\)",
        ),
        (
            replace((3, 3, 3, 32), data=np.zeros((3, 3, 3, 32)), compression="gzip"),
            r"dataset {kernel} is stored with filters \(deflate\)",
        ),
        (
            replace((3, 3, 3, 32), chunks=(9, 3, 3, 32), maxshape=(None, 3, 3, 32)),
            r"dataset {kernel} is stored in chunks of \(9, 3, 3, 32\), larger than its shape",
        ),
        (
            replace((3, 3, 3, 32), dtype=h5py.string_dtype()),
            r"dataset {kernel} holds object values; the model's weights are float32",
        ),
        (soft_link, r"{kernel} is a link \(SoftLink\)"),
        (external_link, r"{kernel} is a link \(ExternalLink\)"),
    ],
    ids=["shape", "gzip", "chunks", "strings", "soft-link", "external-link"],
)
@pytest.mark.parametrize("suffix", [".weights.h5", ".h5"])
def test_crafted_weights_h5_are_refused_naming_the_dataset(
    mobilenet, suffix: str, change, message: str, tmp_path: Path
) -> None:
    path = crafted_h5(mobilenet, suffix, tmp_path, change)
    kernel = FIRST_KERNEL[suffix]
    if suffix == ".h5" and "expected" in message:  # a legacy file's paths are not Keras 3's
        message = message.split(", expected")[0] + ", which no weight of the model has"
    pattern = rf"^transfer.weights: {re.escape(str(path))}.*" + message.format(kernel=kernel)
    with pytest.raises(ParamsError, match=pattern):
        application_base(MOBILENET, SIZE, str(path))


def test_more_datasets_than_the_model_has_weights_are_refused(mobilenet, tmp_path: Path) -> None:
    def extra(file: h5py.File, name: str) -> None:
        for i in range(3):
            file.create_dataset(f"{name}_copy{i}", data=file[name][()])

    path = crafted_h5(mobilenet, ".weights.h5", tmp_path, extra)
    with pytest.raises(
        ParamsError,
        match=r"dataset layers/conv2d/vars/0_copy0 is one more of "
        r"shape \(3, 3, 3, 32\) than the model has weights",
    ):
        application_base(MOBILENET, SIZE, str(path))


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("not.weights.h5", b"not HDF5 at all", r"not.weights.h5: not an HDF5 file"),
        (
            "model.keras",
            b"PK\x03\x04",
            r"transfer.weights = '.*model.keras': expected a "
            r".weights.h5 or .h5 file",
        ),
    ],
)
def test_files_that_are_not_hdf5_weights_are_one_line(
    name: str, content: bytes, message: str, tmp_path: Path
) -> None:
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ParamsError, match=message):
        application_base(MOBILENET, SIZE, str(tmp_path / name))


@pytest.fixture(scope="module")
def loading_mobilenet(mobilenet) -> Measured:
    """The control: `application_base` loading the legitimate ``.weights.h5`` (9 MB)."""
    run = measure(python("-c", APPLICATION_BASE, MOBILENET, str(mobilenet[1])), cwd=REPO, env=QUIET)
    assert run.returncode == 0, run.stderr[-2000:]
    return run


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".weights.h5", ".h5"])
def test_an_unallocated_dataset_is_refused_before_keras_loads_it(
    mobilenet, loading_mobilenet: Measured, suffix: str, tmp_path: Path
) -> None:
    """The probe: MobileNetV2's 9.4 MB file with one unallocated 30000x30000 dataset drove
    `train_transfer` to 15.2 GB before one line (here both layouts were killed past 3 GB).
    Bound: the control's peak (the same process loading the legitimate file; importing
    TensorFlow alone is 800 to 900 MB here) plus 32 MB of slack; the watchdog stops a
    regression 512 MB above it."""
    path = crafted_h5(mobilenet, suffix, tmp_path, replace((30000, 30000)))
    assert path.stat().st_size < 12 * 2**20
    run = measure(
        python("-c", APPLICATION_BASE, MOBILENET, str(path)),
        cwd=REPO,
        env=QUIET,
        kill_at_mb=loading_mobilenet.peak_mb + 512,
    )
    expected = (
        ", expected (3, 3, 3, 32)"
        if suffix == ".weights.h5"
        else (", which no weight of the model has")
    )
    assert refusal(run) == (
        f"train_transfer: error: transfer.weights: {path} does not fit mobilenet_v2 without its "
        f"top at input 32x32x3: dataset {FIRST_KERNEL[suffix]} has shape (30000, 30000)"
        f"{expected}"
    )
    assert run.peak_mb < loading_mobilenet.peak_mb + 32, (run.peak_mb, loading_mobilenet.peak_mb)
