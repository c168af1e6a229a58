"""`dl-labs predict` against hostile inputs: crafted rows, `.npy` arrays, file names, special
files, and model folders whose ``summary.json`` arrives through ``--model`` or ``--rev`` from
someone else. Each is predicted correctly or refused with one line naming the file, the key and
what was expected: exit status 1, nothing on stdout, no NaN printed, memory bounded.

Every model and file is made here: a small image classifier and a small autoencoder, each
trained for one epoch on random data (what is under test is how predict treats its inputs).
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from dllabs.models.inputs import image_record, series_record
from dllabs.outputs import save_json
from dllabs.prediction import command as predict_command
from tests.helpers.repo import DVC, commit_all, sh
from tests.helpers.stages import outcome
from tests.memory import measure, python

CLASSES = ["zero", "one", "two"]
FEATURES = 4


def save_classifier(folder: Path, shape: tuple[int, int, int], pooled: bool = False) -> Path:
    """A small classifier of ``shape`` uint8 images into :data:`CLASSES`, trained one epoch on
    random images; ``pooled`` averages each channel first (cheap on large images)."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape)
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x) if pooled else keras.layers.Flatten()(x)
    model = keras.Model(inputs, keras.layers.Dense(len(CLASSES), activation="softmax")(x))
    model.compile("sgd", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    model.fit(
        rng.integers(0, 256, (16, *shape), dtype=np.uint8),
        rng.integers(0, 3, 16),
        epochs=1,
        verbose=0,
    )
    folder.mkdir(parents=True)
    model.save(folder / "model.keras")
    save_json(folder / "summary.json", {"inputs": image_record(shape, CLASSES)})
    return folder


def save_autoencoder(folder: Path, kernel: float | None = None) -> Path:
    """A small autoencoder of :data:`FEATURES` features, trained one epoch on random rows, with
    the scaling preprocess records (min-max, 0..16); ``kernel`` sets every weight instead (a
    model whose output overflows float32 on large rows)."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((FEATURES,))
    if kernel is None:
        code = keras.layers.Dense(2, activation="relu")(inputs)
        model = keras.Model(inputs, keras.layers.Dense(FEATURES)(code))
        model.compile("sgd", "mse")
        model.fit(*[np.random.default_rng(0).random((16, FEATURES))] * 2, epochs=1, verbose=0)
    else:
        constant = keras.initializers.Constant(kernel)
        layer = keras.layers.Dense(FEATURES, use_bias=False, kernel_initializer=constant)
        model = keras.Model(inputs, layer(inputs))
    folder.mkdir(parents=True)
    model.save(folder / "model.keras")
    series = {
        "features": FEATURES,
        "row_shape": [FEATURES],
        "scaling": {"method": "minmax", "shift": 0.0, "scale": 16.0},
    }
    save_json(folder / "summary.json", {"inputs": series_record(series, "mse")})
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``cnn/`` (8x8 greyscale, three classes), ``ae/`` and ``overflow/`` (autoencoders), and
    ``threshold.json``."""
    root = tmp_path_factory.mktemp("hostile-predict")
    save_classifier(root / "cnn", (8, 8, 1))
    save_autoencoder(root / "ae")
    save_autoencoder(root / "overflow", kernel=1e30)
    save_json(root / "threshold.json", {"threshold": 0.5, "method": "mean_std"})
    return root


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
    """``run(*argv)`` -> ``(exit status, stdout, stderr)`` of `dl-labs predict`, in ``tmp_path``."""
    monkeypatch.chdir(tmp_path)

    def call(*argv: str | Path) -> tuple[int, str, str]:
        return outcome(predict_command.main, [str(a) for a in argv], capsys)

    return call


def one_error_line(status: int, out: str, err: str) -> str:
    """The single error line of a refused call (exit 1, nothing on stdout)."""
    assert status == 1 and out == "", (status, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("predict: error: "), err
    return lines[0]


def digit_png(path: Path, size: tuple[int, int] = (8, 8)) -> Path:
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, size, dtype=np.uint8), "L").save(path)
    return path


def rows_csv(path: Path, rows: list[str]) -> Path:
    path.write_text("".join(f"{row}\n" for row in rows), encoding="utf-8")
    return path


# --- 1. reconstruction errors that are not numbers ----------------------------------------------


@pytest.mark.slow
def test_rows_beyond_float32_are_one_line_naming_the_row_and_no_warning(
    models: Path, tmp_path: Path
) -> None:
    """``1e39`` is a float64 but overflows float32, and so does ``3e38`` shifted by a recorded
    ``-3e38``: the row is refused (not scored NaN and called normal), in a new process so that
    a warning printed to stderr is seen (item 21)."""
    shifted = edit_summary(
        shutil.copytree(models / "ae", tmp_path / "shifted"), set_scaling("shift", -3e38)
    )
    edit_summary(shifted, set_scaling("scale", 1.0))
    cases = ((models / "ae", "1e39,-1e39,1,1", "--json"), (shifted, "3e38,3e38,1,1", "--csv"))
    for model, row, form in cases:
        csv_file = rows_csv(tmp_path / "rows.csv", ["1,2,3,4", row, "5,6,7,8"])
        done = subprocess.run(
            python(
                "-m",
                "dllabs",
                "predict",
                "anomaly",
                str(csv_file),
                "--model",
                str(model),
                "--threshold",
                str(models / "threshold.json"),
                form,
            ),
            capture_output=True,
            text=True,
            cwd=tmp_path,
            check=False,
            env={**os.environ, "PYTHONHASHSEED": "0"},
        )
        line = one_error_line(done.returncode, done.stdout, done.stderr)
        assert str(csv_file) in line and "row 2" in line
        assert "nan" not in (done.stdout + done.stderr).lower()


@pytest.mark.parametrize("form", [[], ["--json"], ["--csv"]])
def test_a_non_finite_reconstruction_error_is_one_line_naming_the_row(
    form: list[str], models: Path, run, tmp_path: Path
) -> None:
    """Finite rows whose reconstruction overflows float32 inside the model: never a normal row
    with error NaN or inf, and never the invalid JSON tokens NaN or Infinity."""
    csv_file = rows_csv(tmp_path / "rows.csv", ["1,2,3,4", "1e10,1e10,1e10,1e10"])
    status, out, err = run(
        "anomaly",
        csv_file,
        "--model",
        models / "overflow",
        "--threshold",
        models / "threshold.json",
        *form,
    )
    line = one_error_line(status, out, err)
    assert str(csv_file) in line and "row 2" in line and "reconstruction error" in line


def test_a_classifier_that_outputs_nan_is_one_line_naming_the_image(
    models: Path, run, tmp_path: Path
) -> None:
    folder = shutil.copytree(models / "cnn", tmp_path / "nan-model")
    model = keras.saving.load_model(folder / "model.keras")
    dense = model.layers[-1]
    dense.kernel.assign(np.full(dense.kernel.shape, np.nan, np.float32))
    model.save(folder / "model.keras")
    image = digit_png(tmp_path / "digit.png")
    status, out, err = run("cnn", image, "--model", folder, "--json")
    line = one_error_line(status, out, err)
    assert str(image) in line and "NaN" in line


# --- 2, 10, 18. model folders: summary.json checked against a schema and the model --------------


def edit_summary(folder: Path, change: Callable[[dict], object]) -> Path:
    """``folder``'s summary.json with ``change`` applied to it (in place)."""
    summary = json.loads((folder / "summary.json").read_text())
    replaced = change(summary)
    save_json(folder / "summary.json", summary if replaced is None else replaced)
    return folder


def set_input(key: str, value: object) -> Callable[[dict], None]:
    def change(summary: dict) -> None:
        summary["inputs"][key] = value

    return change


def drop_input(key: str) -> Callable[[dict], None]:
    return lambda summary: summary["inputs"].pop(key) and None


def set_scaling(key: str, value: object) -> Callable[[dict], None]:
    def change(summary: dict) -> None:
        summary["inputs"]["scaling"][key] = value

    return change


IMAGE_CASES = {
    "class names too few": (set_input("class_names", ["zero", "one"]), "inputs.class_names"),
    "class names too many": (set_input("class_names", ["a", "b", "c", "d"]), "inputs.class_names"),
    "class names a dict": (
        set_input("class_names", {"0": "a", "1": "b", "2": "c"}),
        "inputs.class_names",
    ),
    "class names missing": (drop_input("class_names"), "inputs.class_names"),
    "class names repeated": (set_input("class_names", ["a", "a", "b"]), "inputs.class_names"),
    "class names not strings": (set_input("class_names", [0, 1, 2]), "inputs.class_names"),
    "image size as strings": (set_input("image_size", ["8", "8"]), "inputs.image_size"),
    "image size of three": (set_input("image_size", [8, 8, 8]), "inputs.image_size"),
    "image size not the model's": (set_input("image_size", [16, 16]), "inputs.image_size"),
    "colour mode cmyk": (set_input("color_mode", "cmyk"), "inputs.color_mode"),
    "colour mode not the model's": (set_input("color_mode", "rgb"), "inputs.color_mode"),
    "another resampling": (set_input("resize", "nearest"), "inputs.resize"),
    "float pixels": (set_input("dtype", "float32"), "inputs.dtype"),
    "an unknown key": (set_input("normalise", True), "inputs.normalise"),
    "summary a list": (lambda summary: [summary], "expected a JSON object"),
    "inputs a list": (lambda summary: {"inputs": [1, 2]}, "no record of the model's images"),
}

ROW_CASES = {
    "scale 0": (set_scaling("scale", 0.0), "inputs.scaling.scale"),
    "scale negative": (set_scaling("scale", -1.0), "inputs.scaling.scale"),
    "scale of the wrong length": (set_scaling("scale", [1.0, 2.0, 3.0]), "inputs.scaling.scale"),
    "scale with a zero": (set_scaling("scale", [1.0, 0.0, 1.0, 1.0]), "inputs.scaling.scale"),
    "shift NaN": (set_scaling("shift", float("nan")), "inputs.scaling.shift"),
    "shift infinite": (set_scaling("shift", [0.0, float("inf"), 0.0, 0.0]), "inputs.scaling.shift"),
    "shift of the wrong length": (set_scaling("shift", [0.0] * 5), "inputs.scaling.shift"),
    "scale a string": (set_scaling("scale", "16"), "inputs.scaling.scale"),
    "unknown scaling method": (set_scaling("method", "robust"), "inputs.scaling.method"),
    "scaling missing": (drop_input("scaling"), "inputs.scaling"),
    "unknown error measure": (set_input("error", "hinge"), "inputs.error"),
    "features not the model's": (
        lambda s: s["inputs"].update(features=5, row_shape=[5]),
        "inputs.features",
    ),
    "features as a string": (set_input("features", "4"), "inputs.features"),
    "row shape not the features": (set_input("row_shape", [2, 3]), "inputs.row_shape"),
}


@pytest.mark.parametrize("case", IMAGE_CASES)
def test_a_crafted_image_model_record_is_one_line_naming_the_key(
    case: str, models: Path, run, tmp_path: Path
) -> None:
    change, key = IMAGE_CASES[case]
    folder = edit_summary(shutil.copytree(models / "cnn", tmp_path / "cnn"), change)
    status, out, err = run("cnn", digit_png(tmp_path / "digit.png"), "--model", folder)
    line = one_error_line(status, out, err)
    assert f"{folder}/summary.json: " in line and key in line


@pytest.mark.parametrize("case", ROW_CASES)
def test_a_crafted_autoencoder_record_is_one_line_naming_the_key(
    case: str, models: Path, run, tmp_path: Path
) -> None:
    """A scale of 0 once made every row "not an anomaly" with exit status 0 (item 2)."""
    change, key = ROW_CASES[case]
    folder = edit_summary(shutil.copytree(models / "ae", tmp_path / "ae"), change)
    csv_file = rows_csv(tmp_path / "rows.csv", ["1,2,3,4", "16,16,16,16"])
    status, out, err = run(
        "anomaly", csv_file, "--model", folder, "--threshold", models / "threshold.json"
    )
    line = one_error_line(status, out, err)
    assert f"{folder}/summary.json: " in line and key in line


def test_the_records_the_training_stages_write_are_accepted(
    models: Path, run, tmp_path: Path
) -> None:
    """The checks refuse nothing the pipeline writes: per-feature (``standard``) scaling, and
    the unscaled digits of the summaries above."""
    folder = shutil.copytree(models / "ae", tmp_path / "ae")
    edit_summary(folder, set_scaling("scale", [16.0, 8.0, 4.0, 2.0]))
    edit_summary(folder, set_scaling("shift", [0.0, 1.0, 2.0, 3.0]))
    edit_summary(folder, set_scaling("method", "standard"))
    csv_file = rows_csv(tmp_path / "rows.csv", ["1,2,3,4", "16,16,16,16"])
    status, out, err = run(
        "anomaly", csv_file, "--model", folder, "--threshold", models / "threshold.json", "--json"
    )
    assert status == 0, err
    assert [row["row"] for row in json.loads(out)] == [1, 2]
    status, out, err = run("cnn", digit_png(tmp_path / "digit.png"), "--model", models / "cnn")
    assert status == 0, err


TRANSFER_CASES = {
    "no draws": (lambda s: s.update(repeats=[]), "repeats"),
    "a draw without the variant": (lambda s: s.update(repeats=[{"scratch": {}}]), "repeats"),
    "accuracy a string": (
        lambda s: s["repeats"][0]["fine_tune"].update(val_accuracy="high"),
        "val_accuracy",
    ),
    "repeats a dict": (lambda s: s.update(repeats={"0": {}}), "repeats"),
}


@pytest.mark.parametrize("case", TRANSFER_CASES)
def test_a_crafted_transfer_summary_is_one_line_naming_the_key(
    case: str, models: Path, run, tmp_path: Path
) -> None:
    folder = tmp_path / "transfer"
    (folder / "repeat_0").mkdir(parents=True)
    for variant in predict_command.TRANSFER_VARIANTS:
        shutil.copy(models / "cnn" / "model.keras", folder / "repeat_0" / f"{variant}.keras")
    draw = {variant: {"val_accuracy": 0.5} for variant in predict_command.TRANSFER_VARIANTS}
    summary = {"inputs": image_record((8, 8, 1), CLASSES), "repeats": [draw]}
    save_json(folder / "summary.json", summary)
    image = digit_png(tmp_path / "digit.png")
    status, _, err = run("transfer", image, "--model", folder)
    assert status == 0, err  # the uncrafted folder predicts
    change, key = TRANSFER_CASES[case]
    edit_summary(folder, change)
    line = one_error_line(*run("transfer", image, "--model", folder))
    assert f"{folder}/summary.json: " in line and key in line


def test_a_huge_recorded_image_size_is_refused_before_allocating(
    models: Path, tmp_path: Path
) -> None:
    """``image_size: [100000, 100000]`` once grew predict to 23.5 GB (item 10): refused from the
    record, in a new process whose memory is measured and bounded."""
    folder = edit_summary(
        shutil.copytree(models / "cnn", tmp_path / "cnn"), set_input("image_size", [100000, 100000])
    )
    image = digit_png(tmp_path / "digit.png")
    done = measure(
        python("-m", "dllabs", "predict", "cnn", str(image), "--model", str(folder)),
        cwd=tmp_path,
        kill_at_mb=1024,
    )
    assert not done.killed, f"killed at {done.peak_mb:.0f} MB"
    line = one_error_line(done.returncode, done.stdout, done.stderr)
    assert f"{folder}/summary.json: inputs.image_size" in line and "1024" in line
    assert done.peak_mb < 1024


def test_a_crafted_model_folder_from_a_revision_is_named_by_revision_and_path(
    models: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """Through ``--rev`` a model folder comes from a shared remote: the same checks, and the
    error names the file as ``REV:path`` (not the temporary copy it was read into)."""
    root = tmp_path / "repo"
    root.mkdir()
    sh(["git", "init", "-q"], root)
    sh([*DVC, "init", "-q"], root)
    folder = edit_summary(
        shutil.copytree(models / "cnn", root / "models" / "cnn"), set_input("color_mode", "cmyk")
    )
    sh([*DVC, "add", "-q", "models/cnn"], root)
    commit_all(root, "a crafted model folder")
    shutil.copy(models / "cnn" / "summary.json", folder / "summary.json")  # the workspace's: fine
    image = digit_png(tmp_path / "digit.png")
    monkeypatch.chdir(root)

    def call(*argv: str) -> tuple[int, str, str]:
        try:
            predict_command.main(["cnn", str(image), *argv])
            status = 0
        except SystemExit as exc:
            status = int(exc.code or 0)
        return status, *capsys.readouterr()

    status, _, err = call()
    assert status == 0, err
    line = one_error_line(*call("--rev", "HEAD"))
    assert "HEAD:models/cnn/summary.json: inputs.color_mode" in line
    assert "dl-labs-predict-" not in line


# --- 9. .npy arrays: the header checked first, then read a batch at a time ----------------------


def npy_header_only(path: Path, shape: tuple[int, ...], dtype: str = "|u1") -> Path:
    """A 128-byte ``.npy`` file whose header claims ``shape``, with no data behind it."""
    header = repr({"descr": dtype, "fortran_order": False, "shape": shape}).encode("latin1")
    header += b" " * (128 - 10 - len(header) - 1) + b"\n"
    path.write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header)
    assert path.stat().st_size == 128
    return path


def test_an_npy_header_claiming_a_trillion_images_is_refused_in_bounded_memory(
    models: Path, tmp_path: Path
) -> None:
    npy = npy_header_only(tmp_path / "x.npy", (10**12, 8, 8, 1))
    done = measure(
        python("-m", "dllabs", "predict", "cnn", str(npy), "--model", str(models / "cnn")),
        cwd=tmp_path,
        kill_at_mb=1024,
    )
    assert not done.killed, f"killed at {done.peak_mb:.0f} MB"
    line = one_error_line(done.returncode, done.stdout, done.stderr)
    assert f"{npy}: 128 bytes, but its header ((1000000000000, 8, 8, 1), uint8) needs" in line
    assert done.peak_mb < 1024


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (lambda p: np.save(p, np.zeros((3, 8, 8, 1), np.float32)), "dtype float32, expected uint8"),
        (lambda p: np.save(p, np.zeros((3, 8, 8, 2), np.uint8)), "images of shape (8, 8, 2)"),
        (lambda p: np.save(p, np.zeros((8, 8), np.uint8)), "images of shape (8,)"),
        (lambda p: np.save(p, np.array([None, 1], dtype=object)), "dtype object"),
        (
            lambda p: npy_header_only(p, (2, 8, 8, 1)),
            "128 bytes, but its header ((2, 8, 8, 1), uint8) needs 256",
        ),
        (
            lambda p: Path(p).write_bytes(b"\x93NUMPY\x09\x00" + b"\0" * 40),
            ".npy format version 9.0",
        ),
        (
            lambda p: Path(p).write_bytes(np.lib.format.magic(1, 0) + b"\xff\x7f" + b"{" * 64),
            "not a readable .npy",
        ),
    ],
)
def test_a_bad_npy_array_is_one_line_naming_it(
    content, message: str, models: Path, run, tmp_path: Path
) -> None:
    npy = tmp_path / "x.npy"
    content(npy)
    status, out, err = run("cnn", npy, "--model", models / "cnn")
    line = one_error_line(status, out, err)
    assert f"{npy}: " in line and message in line


def test_a_fortran_ordered_npy_is_refused_naming_the_fix(models: Path, run, tmp_path) -> None:
    x = np.zeros((3, 8, 8, 1), np.uint8)
    npy = tmp_path / "x.npy"
    with npy.open("wb") as handle:
        np.lib.format.write_array(handle, np.asfortranarray(x))
    line = one_error_line(*run("cnn", npy, "--model", models / "cnn"))
    assert f"{npy}: " in line and "Fortran order" in line


def test_npy_images_are_read_a_batch_at_a_time_with_the_answers_of_the_whole_array(
    models: Path, run, tmp_path: Path
) -> None:
    """600 images (more than two batches), greyscale without a channel axis: the answers of
    the model on the whole array, in order."""
    x = np.random.default_rng(2).integers(0, 256, (600, 8, 8), dtype=np.uint8)
    np.save(tmp_path / "x.npy", x)
    status, out, err = run(
        "cnn", tmp_path / "x.npy", "--model", models / "cnn", "--json", "--top", "1"
    )
    assert status == 0, err
    records = json.loads(out)
    model = keras.saving.load_model(models / "cnn" / "model.keras")
    expected = model.predict(x[..., np.newaxis], verbose=0).argmax(axis=1)
    assert [r["input"] for r in records] == [f"{tmp_path / 'x.npy'}[{i}]" for i in range(600)]
    assert [r["predictions"][0]["class"] for r in records] == [CLASSES[k] for k in expected]


def write_npy(path: Path, count: int, shape: tuple[int, ...]) -> Path:
    """``count`` random uint8 images of ``shape``, written a block at a time (the test itself
    never holds the array)."""
    rng = np.random.default_rng(3)
    with path.open("wb") as handle:
        np.lib.format.write_array_header_1_0(
            handle, {"descr": "|u1", "fortran_order": False, "shape": (count, *shape)}
        )
        for start in range(0, count, 1000):
            rows = min(1000, count - start)
            handle.write(rng.integers(0, 256, (rows, *shape), dtype=np.uint8).tobytes())
    return path


@pytest.mark.slow
def test_a_large_npy_is_predicted_in_bounded_memory(models: Path, tmp_path: Path) -> None:
    """A 400 MB ``.npy`` of 128x128 RGB images (8,138 of them) peaks within 100 MB of a 29 MB
    one (600 images): the array is read a batch at a time, never whole, and the output goes
    through a temporary file. Both runs predict full batches (256 images: 12 MB as uint8, 50 MB
    as float32 inside the model), so the margin is one batch's worth of buffers."""
    shape = (128, 128, 3)
    folder = save_classifier(tmp_path / "model", shape, pooled=True)
    peaks = {}
    for name, count in (("small", 600), ("large", 400 * 2**20 // (128 * 128 * 3))):
        npy = write_npy(tmp_path / f"{name}.npy", count, shape)
        done = measure(
            python(
                "-m",
                "dllabs",
                "predict",
                "cnn",
                str(npy),
                "--model",
                str(folder),
                "--csv",
                "--top",
                "1",
            ),
            cwd=tmp_path,
            kill_at_mb=2048,
        )
        assert done.returncode == 0 and not done.killed, (done.peak_mb, done.stderr)
        assert len(done.stdout.splitlines()) == 1 + count
        peaks[name] = done.peak_mb
        npy.unlink()
    print(f"peak RSS: {peaks}")
    assert peaks["large"] < peaks["small"] + 100, peaks
    assert peaks["large"] < 1024, peaks


# --- smaller things: special files, file names with control characters --------------------------


def test_a_fifo_or_a_device_is_not_a_regular_file(models: Path, run, tmp_path: Path) -> None:
    fifo = tmp_path / "rows.csv"
    os.mkfifo(fifo)
    threshold = models / "threshold.json"
    for argv, named in (
        (["cnn", "/dev/zero", "--model", models / "cnn"], "/dev/zero"),
        (["cnn", fifo, "--model", models / "cnn"], fifo),
        (["anomaly", fifo, "--model", models / "ae", "--threshold", threshold], fifo),
        (["anomaly", "/dev/zero", "--model", models / "ae", "--threshold", threshold], "/dev/zero"),
        (["anomaly", threshold, "--model", models / "ae", "--threshold", fifo], fifo),
    ):
        line = one_error_line(*run(*argv))
        assert f"{named}: not a regular file" in line


def test_a_newline_in_a_file_name_is_escaped_in_the_table_and_exact_in_csv_and_json(
    models: Path, run, tmp_path: Path
) -> None:
    image = digit_png(tmp_path / "two\nlines\x1b[31m.png")
    status, out, err = run("cnn", image, "--model", models / "cnn", "--top", "2")
    assert status == 0, err
    lines = out.splitlines()
    assert len(lines) == 1 + 2 and "\x1b" not in out
    assert all(line.startswith(str(tmp_path / "two\\nlines\\x1b[31m.png")) for line in lines[1:])
    status, out, _ = run("cnn", image, "--model", models / "cnn", "--top", "2", "--csv")
    assert [row["input"] for row in csv.DictReader(io.StringIO(out))] == [str(image)] * 2
    status, out, _ = run("cnn", image, "--model", models / "cnn", "--json")
    assert [record["input"] for record in json.loads(out)] == [str(image)]
