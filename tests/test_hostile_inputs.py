"""Files a user or an attacker might hand the pipeline. Each one is read correctly, or refused
with one line naming it: exit status 1, nothing half-written, and nothing it holds is run.

One test (or a few) per defect found by probing a fresh clone: crafted files of every format the
project loads, 16-bit images, decompression bombs, files without line ends, links out of an image
folder and loops of links, a full disk, malformed params, NaN reconstruction errors, and error
messages that named the copy under ``data/raw`` instead of the user's own file.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dllabs import outputs
from dllabs.data.readers import MAX_IMAGE_PIXELS, check_text_file, decode_image
from dllabs.errors import DataError, ParamsError
from dllabs.labs.word2vec import MAX_SENTENCE_WORDS, split_long_sentences, train_cbow
from dllabs.outputs import load_npz, save_json, save_npz
from dllabs.params import CBOW, load_params
from stages import download, evaluate, preprocess, threshold_anomaly
from tests.helpers.data import CreatesAFile, make_image_folder, png_header_only
from tests.helpers.repo import REPO
from tests.helpers.stages import DOWNLOAD_ARGS, PREPROCESS_ARGS, fails

THRESHOLD_ARGS = [
    "--errors",
    "errors.npz",
    "--threshold",
    "threshold.json",
    "--validation",
    "validation.json",
]


def sixteen_bit_folder(root: Path) -> dict[str, np.ndarray]:
    """Two classes of 16-bit greyscale PNGs (mode I;16), dark and mid-grey; returns the values."""
    rng = np.random.default_rng(0)
    values = {
        "dark": rng.integers(0, 20000, (6, 8, 8)),
        "grey": rng.integers(30000, 40000, (6, 8, 8)),
    }
    for name, images in values.items():
        (root / name).mkdir(parents=True)
        for i, image in enumerate(images.astype(np.uint16)):
            Image.fromarray(image).save(root / name / f"{i}.png")
    return values


@pytest.fixture
def pets(tmp_path: Path) -> Path:
    """An image folder inside the project (``workdir``'s folder, which is ``tmp_path``)."""
    folder = tmp_path / "pets"
    make_image_folder(folder, {"cat": 6, "dog": 6})
    return folder


def use_folder(workdir, folder: Path, **more) -> Path:
    return workdir(**{"data.images": "folder", "data.images_dir": str(folder), **more})


# --- 2. no file the project loads can run code ---------------------------------------------------


def test_a_crafted_npz_is_refused_without_being_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "created-by-the-pickle"
    np.savez(tmp_path / "arrays.npz", x=np.array([CreatesAFile(marker)], dtype=object))
    with pytest.raises(DataError, match=r"arrays.npz: not a readable .npz file"):
        load_npz(tmp_path / "arrays.npz")
    assert not marker.exists()


def test_a_params_file_with_a_python_tag_is_refused_without_running_it(tmp_path: Path) -> None:
    marker = tmp_path / "created-by-yaml"
    params = tmp_path / "params.yaml"
    params.write_text(f'base: !!python/object/apply:builtins.open ["{marker}", "w"]\n')
    with pytest.raises(
        ParamsError, match="not valid YAML at line 1, column 7: could not determine"
    ):
        load_params(params)
    assert not marker.exists()


def lambda_model(tmp_path: Path, marker: Path) -> Path:
    """A .keras file whose Lambda layer's bytecode creates ``marker`` when the model is built."""
    import keras

    # The path is a constant of the bytecode (Keras cannot store a closure or defaults).
    creates = eval(f"lambda x: x * float(open({str(marker)!r}, 'w').close() is None)")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Lambda(creates)])
    marker.unlink()  # building the model above ran it once
    model.save(tmp_path / "crafted.keras")
    return tmp_path / "crafted.keras"


def test_a_keras_file_with_python_bytecode_is_refused_without_running_it(tmp_path: Path) -> None:
    import keras

    from dllabs.models.loading import load_model

    marker = tmp_path / "created-by-the-lambda"
    crafted = lambda_model(tmp_path, marker)
    with pytest.raises(DataError, match=r"crafted.keras: holds a Lambda layer's Python bytecode"):
        load_model(crafted)
    assert not marker.exists()
    keras.models.load_model(crafted, safe_mode=False)  # the control: unsafely, it does run code
    assert marker.exists()


def rewrite_keras_config(source: Path, target: Path, edit) -> Path:
    import zipfile

    with zipfile.ZipFile(source) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(files["config.json"])
    edit(config)
    files["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(target, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return target


def test_a_keras_file_naming_a_python_function_is_refused(tmp_path: Path) -> None:
    """Keras rebuilds only its own classes: a config naming builtins.open or os.system (or an
    unknown function) is one line, not a traceback, and nothing is called."""
    import keras

    from dllabs.models.loading import load_model

    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]).save(tmp_path / "plain.keras")
    for module, name in (("builtins", "open"), ("os", "system"), ("builtins", "no_such_function")):
        activation = {
            "module": module,
            "class_name": "function",
            "config": name,
            "registered_name": None,
        }

        def edit(config: dict, activation: dict = activation) -> None:
            config["config"]["layers"][1]["config"]["activation"] = activation

        crafted = rewrite_keras_config(tmp_path / "plain.keras", tmp_path / f"{name}.keras", edit)
        with pytest.raises(DataError, match=f"{name}.keras: not a loadable Keras model .*{name}'"):
            load_model(crafted)


def test_a_truncated_or_foreign_keras_file_is_named_as_such(tmp_path: Path) -> None:
    import keras

    from dllabs.models.loading import load_model

    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]).save(tmp_path / "whole.keras")
    whole = (tmp_path / "whole.keras").read_bytes()
    (tmp_path / "cut.keras").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "text.keras").write_text("hello")
    for name in ("cut.keras", "text.keras"):
        with pytest.raises(DataError, match=f"{name}: truncated or not a Keras file"):
            load_model(tmp_path / name)


def test_a_zip_bomb_keras_file_is_refused_unread(tmp_path: Path) -> None:
    import zipfile

    from dllabs.models.loading import load_model

    with zipfile.ZipFile(tmp_path / "bomb.keras", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("model.weights.h5", b"\0" * (64 * 2**20))  # 64 MB in about 64 KB
    with pytest.raises(DataError, match=r"bomb.keras: unpacks to 67,108,864 bytes .*zip bomb"):
        load_model(tmp_path / "bomb.keras")


# --- 3. no silent corruption ------------------------------------------------------------------


def test_16_bit_greyscale_is_scaled_to_8_bits_not_clipped(tmp_path: Path) -> None:
    values = sixteen_bit_folder(tmp_path / "pngs")
    for name, images in values.items():
        for i, image in enumerate(images):
            decoded = decode_image(tmp_path / "pngs" / name / f"{i}.png", (8, 8), "grayscale")
            assert np.array_equal(decoded[..., 0], np.round(image / 257).astype(np.uint8))
    rgb = decode_image(tmp_path / "pngs" / "grey" / "0.png", (8, 8), "rgb")
    assert rgb.shape == (8, 8, 3) and 110 < rgb.mean() < 160  # mid-grey, not white (255)


def test_16_bit_images_go_through_preprocess_as_8_bit(workdir, tmp_path: Path) -> None:
    """The probe: a folder of 16-bit PNGs came out 99.6% white (255)."""
    sixteen_bit_folder(tmp_path / "scans")
    workdir(
        **{
            "data.images": "folder",
            "data.images_dir": str(tmp_path / "scans"),
            "data.image_size": [8, 8],
            "data.color_mode": "grayscale",
        }
    )
    download.main(DOWNLOAD_ARGS)
    preprocess.main(PREPROCESS_ARGS)
    x = np.concatenate([np.load(f"data/processed/images/x_{s}.npy") for s in ("train", "val")])
    assert (x == 255).mean() < 0.01
    assert x.max() <= round(40000 / 257)


def test_floating_point_images_are_refused_with_one_line(tmp_path: Path) -> None:
    Image.fromarray(np.ones((4, 4), np.float32)).save(tmp_path / "float.tiff")
    with pytest.raises(DataError, match=r"float.tiff: floating-point pixels have no standard"):
        decode_image(tmp_path / "float.tiff", (4, 4), "grayscale")


def test_a_sentence_longer_than_gensim_reads_is_split_and_every_word_trained(
    default_params: dict,
) -> None:
    """The probe: a text with no sentence end was one sentence, and gensim learnt from its first
    10,000 words only. Words that occur only after word 10,000 must be trained too."""
    from gensim.models import Word2Vec

    first = [f"a{i % 7}" for i in range(MAX_SENTENCE_WORDS)]
    late = [f"b{i % 7}" for i in range(MAX_SENTENCE_WORDS)]
    sentences = [first + late]
    pieces, split = split_long_sentences(sentences)
    assert split == 1 and [len(p) for p in pieces] == [MAX_SENTENCE_WORDS, MAX_SENTENCE_WORDS]
    assert [word for piece in pieces for word in piece] == first + late

    params = CBOW(
        **{**default_params["cbow"], "vector_size": 8, "epochs": 2, "min_count": 1, "sample": 0.0}
    )
    options = {
        "vector_size": 8,
        "window": params.window,
        "min_count": 1,
        "sg": 0,
        "seed": 3,
        "workers": 1,
        "negative": params.negative,
        "sample": 0.0,
    }
    untrained = Word2Vec(**options)
    untrained.build_vocab(sentences)
    trained = train_cbow(sentences, params, seed=3)
    cut = Word2Vec(sentences, **{**options, "epochs": 2, "alpha": params.alpha})  # gensim alone
    for word in ("b0", "b3"):
        assert np.array_equal(cut.wv[word], untrained.wv[word])  # the defect: never trained
        assert not np.array_equal(trained.wv[word], untrained.wv[word])


def test_the_training_stage_counts_the_sentences_it_split(workdir) -> None:
    root = workdir(**{"cbow.min_count": 1, "cbow.epochs": 1, "cbow.vector_size": 8})
    words = " ".join(f"w{i % 50}" for i in range(MAX_SENTENCE_WORDS + 5))
    (root / "corpus.txt").write_text(f"{words}\nshort sentence here\n")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "stages.train_cbow",
            "--corpus",
            "corpus.txt",
            "--model",
            "m",
            "--plots",
            "p",
        ],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": str(REPO), "PYTHONHASHSEED": "0"},
    )
    assert done.returncode == 0, done.stderr
    training = json.loads((root / "m" / "training.json").read_text())
    assert (training["sentences_split"], training["sentences"]) == (1, 3)
    assert training["corpus_tokens"] == MAX_SENTENCE_WORDS + 5 + 3
    assert "1 sentence(s) longer than 10,000 words were cut into pieces" in done.stdout


def test_nan_reconstruction_errors_stop_the_threshold_stage(workdir, capsys) -> None:
    """The probe: a NaN among the training errors gave threshold NaN, exit 0 and F1 0.000."""
    workdir()
    errors = np.linspace(0.1, 1.0, 40)
    errors[[3, 17]] = np.nan
    save_npz(
        "errors.npz",
        {
            "error_train": errors,
            "error_val": np.linspace(0.1, 2, 20),
            "y_val": (np.arange(20) > 14).astype(np.int8),
        },
    )
    err = fails(threshold_anomaly.main, THRESHOLD_ARGS, capsys)
    assert (
        "errors.npz: error_train: 2 of 40 reconstruction errors are NaN or infinite (rows 3, "
        "17): the autoencoder diverged"
    ) in err
    assert not Path("threshold.json").exists()


def test_a_saved_threshold_that_is_not_a_number_is_refused() -> None:
    from dllabs.labs.anomaly import saved_threshold

    assert saved_threshold({"threshold": 0.25}, "t.json") == 0.25
    for bad in (float("nan"), float("inf"), None, "0.3", True):
        with pytest.raises(DataError, match=r"t.json: threshold .*expected a finite number"):
            saved_threshold({"threshold": bad}, "t.json")


# --- 4. bounded memory on hostile files -------------------------------------------------------


def test_a_file_of_nul_bytes_is_refused_at_download_naming_it(workdir, tmp_path, capsys) -> None:
    """The probe: `truncate -s 2G` as data.csv_path peaked at 4.4 GB and died with a traceback;
    download first wrote a 2 GB copy. Here 64 MiB (sparse where the file system allows)."""
    hostile = tmp_path / "zeros.csv"
    with hostile.open("wb") as handle:
        handle.truncate(64 * 2**20)
    workdir(**{"data.anomaly": "csv", "data.csv_path": str(hostile), "data.label_column": -1})
    err = fails(download.main, DOWNLOAD_ARGS, capsys)
    assert f"error: {hostile}: NUL byte at byte 0: a binary file, not UTF-8 text" in err
    assert not Path("data/raw").exists() or not any(Path("data/raw").iterdir())


def test_a_line_longer_than_the_limit_is_refused_before_any_parser_reads_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pandas as pd

    from dllabs.data.readers import read_labelled_csv

    path = tmp_path / "one-line.csv"
    path.write_bytes(b"1,2,3\n4,5,6\n" + b"7," * (20 * 2**20))  # 40 MB, no line end
    monkeypatch.setattr(pd, "read_csv", lambda *a, **k: pytest.fail("the parser read the file"))
    with pytest.raises(DataError, match=r"one-line.csv: line 3 is longer than 32 MiB"):
        read_labelled_csv(path, -1)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"a\nb\n" + b"x" * 5000 + b"\nc", "line 3 is longer than 4,096 bytes"),
        (b"x" * 3000 + b"\n" + b"y" * 3000, None),
        ("ok\nsnow \u2603\n".encode() + b"\xff\n", r"not UTF-8 text \(line 3, byte 12"),
        ("\ufeffwith a BOM\n".encode("utf-16"), "UTF-16 text; save it as UTF-8"),
        ("caf\u00e9".encode()[:-1], "ends inside a character"),
    ],
)
def test_text_files_are_scanned_in_blocks(tmp_path: Path, content: bytes, message) -> None:
    path = tmp_path / "text.txt"
    path.write_bytes(content)
    if message is None:
        check_text_file(path, max_line_bytes=4096)
        return
    with pytest.raises(DataError, match=message):
        check_text_file(path, max_line_bytes=4096)


def test_the_line_scan_counts_lines_across_blocks(tmp_path: Path) -> None:
    """Lines that end in a later 1 MiB block than they start in, the long one among them."""
    path = tmp_path / "blocks.txt"
    short = b"y" * 999 + b"\n"
    path.write_bytes(short * 1500 + b"z" * (3 * 2**20) + b"\n" + short)
    check_text_file(path, max_line_bytes=3 * 2**20)
    with pytest.raises(DataError, match="line 1501 is longer than"):
        check_text_file(path, max_line_bytes=3 * 2**20 - 1)


def test_a_sparse_file_is_copied_no_larger_than_it_is(tmp_path: Path) -> None:
    from dllabs.data.fetch import copy_file

    source = tmp_path / "sparse.bin"
    with source.open("wb") as handle:
        handle.seek(8 * 2**20)
        handle.write(b"data in the middle")
        handle.truncate(32 * 2**20)
    copy_file(source, tmp_path / "copy.bin")
    copied = tmp_path / "copy.bin"
    assert copied.stat().st_size == source.stat().st_size
    with source.open("rb") as a, copied.open("rb") as b:
        assert all(a.read(2**20) == b.read(2**20) for _ in range(32))
    # Blocks on disk: at most the source's (and a block of slack) where the source has holes.
    assert copied.stat().st_blocks <= source.stat().st_blocks + 8


def test_a_decompression_bomb_is_refused_unread(workdir, pets, capsys) -> None:
    """The probe: a PNG claiming 20000x20000 pixels ended in Pillow's DecompressionBombError
    (`dl-labs predict` meets it in tests/test_predict.py)."""
    bomb = png_header_only(pets / "dog" / "huge.png", 20000, 20000)
    assert bomb.stat().st_size < 200 and MAX_IMAGE_PIXELS < 20000 * 20000
    with pytest.raises(DataError, match=r"huge.png: .*400000000 pixels.*refused unread"):
        decode_image(bomb, (8, 8), "rgb")
    use_folder(workdir, pets)
    download.main(DOWNLOAD_ARGS)
    err = fails(preprocess.main, PREPROCESS_ARGS, capsys)
    assert "error: pets/dog/huge.png: Image size (400000000 pixels) exceeds" in err
    assert not Path("data/processed").exists() or not any(Path("data/processed").iterdir())


def test_an_image_past_the_limit_is_refused_from_its_header(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Below Pillow's own refusal, the project's limit decides (and Pillow's warning is quiet)."""
    from dllabs.data import readers

    big = png_header_only(tmp_path / "big.png", 3000, 2000)
    monkeypatch.setattr(readers, "MAX_IMAGE_PIXELS", 5_000_000)
    with pytest.raises(DataError, match=r"big.png: 3000x2000 pixels, more than 5,000,000"):
        decode_image(big, (8, 8), "rgb")


# --- 5. one line for every failure --------------------------------------------------------------


def test_a_full_disk_is_one_line_naming_the_output(workdir, capsys, monkeypatch) -> None:
    workdir()
    save_npz(
        "errors.npz",
        {
            "error_train": np.linspace(0.1, 1, 40),
            "error_val": np.linspace(0.1, 2, 20),
            "y_val": (np.arange(20) > 14).astype(np.int8),
        },
    )

    def full(path, payload) -> None:
        Path(path).write_text("{half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # as write() raises it: no name

    monkeypatch.setattr(threshold_anomaly, "save_json", full)
    err = fails(threshold_anomaly.main, THRESHOLD_ARGS, capsys)
    assert err.endswith("cannot write threshold.json: No space left on device (ENOSPC)")
    assert sorted(p.name for p in Path.cwd().iterdir()) == ["errors.npz", "params.yaml"]


def test_an_output_folder_that_cannot_be_written_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read-only folder (simulated: these tests may run as root, whom permissions do not stop)."""

    def refused(*args, dir=None, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), f"{dir}/.tmp123")

    monkeypatch.setattr(outputs.tempfile, "mkstemp", refused)
    with pytest.raises(DataError) as caught, outputs.staged_outputs() as out:
        out.file(tmp_path / "metrics" / "m.json")
    assert str(caught.value) == (
        f"cannot write {tmp_path}/metrics/m.json: Permission denied (EACCES)"
    )
    assert not (tmp_path / "metrics").exists()


def test_an_os_error_of_an_output_folder_names_the_output_not_the_temporary(
    tmp_path: Path,
) -> None:
    with pytest.raises(DataError) as caught, outputs.staged_outputs() as out:
        folder = out.dir(tmp_path / "plots")
        raise FileNotFoundError(errno.ENOENT, "No such file", str(folder / "sub" / "a.png"))
    assert str(caught.value) == f"cannot write {tmp_path}/plots/sub/a.png: No such file (ENOENT)"
    assert list(tmp_path.iterdir()) == []


def test_a_params_key_that_is_a_list_is_one_line_with_its_line(tmp_path: Path) -> None:
    """The probe: `? [a, b]` in params.yaml ended in a TypeError traceback."""
    params = tmp_path / "params.yaml"
    params.write_text((REPO / "params.yaml").read_text() + "? [a, b]\n: 1\n")
    lines = params.read_text().count("\n")
    with pytest.raises(ParamsError, match=f"at line {lines - 1}, column 3: a key must be a name"):
        load_params(params)


def test_a_metrics_file_without_its_results_is_named_by_evaluate(workdir, capsys) -> None:
    """The probe: a metrics file without `test` ended in a KeyError traceback."""
    from tests.test_evaluate import EVALUATE

    workdir()
    Path("metrics").mkdir()
    for lab in ("mlp", "cnn", "anomaly", "cbow", "transfer"):
        save_json(Path("metrics") / f"{lab}.json", {"run": {}})
    Path("reports").mkdir()
    for name in ("mlp", "cnn"):
        Path(f"reports/{name}_architecture.md").write_text("# table\n")
    err = fails(evaluate.main, EVALUATE, capsys)
    assert (
        "metrics/mlp.json: not the metrics lab mlp's evaluation stage writes (no 'test' entry)"
        in err
    )
    assert not Path("reports/summary.md").exists()


# --- 6. links in an image folder --------------------------------------------------------------


def test_a_link_to_a_file_outside_the_folder_is_refused(workdir, pets, tmp_path, capsys) -> None:
    secret = tmp_path / "secret.png"
    secret.write_bytes((pets / "cat" / "1.png").read_bytes())
    (pets / "cat" / "stolen.png").symlink_to(secret)
    use_folder(workdir, pets)
    err = fails(download.main, DOWNLOAD_ARGS, capsys)
    assert f"data.images_dir: {pets}/cat/stolen.png links to {secret}, outside the folder" in err
    assert not Path("data/raw").exists() or not any(Path("data/raw").iterdir())


def test_a_link_to_a_folder_outside_is_refused_unless_allowed(
    workdir, pets, tmp_path, capsys
) -> None:
    elsewhere = tmp_path / "more-cats"
    make_image_folder(elsewhere, {"cat": 3})
    (pets / "cat" / "more").symlink_to(elsewhere / "cat")
    use_folder(workdir, pets)
    err = fails(download.main, DOWNLOAD_ARGS, capsys)
    assert f"{pets}/cat/more links to {elsewhere}/cat, outside the folder; refused" in err

    use_folder(workdir, pets, **{"data.follow_links": True})  # the explicit opt-in
    download.main(DOWNLOAD_ARGS)
    copied = Path("data/raw/images/folder/cat/more")
    assert copied.is_dir() and not copied.is_symlink() and len(list(copied.iterdir())) == 3


def test_links_inside_the_folder_are_copied_as_what_they_name(workdir, pets) -> None:
    (pets / "dog" / "again.png").symlink_to(pets / "dog" / "1.png")
    (pets / ".store").mkdir()  # a hidden store of content-addressed blobs, linked by name
    (pets / ".store" / "f00d").write_bytes((pets / "cat" / "1.png").read_bytes())
    (pets / "cat" / "linked.png").symlink_to(pets / ".store" / "f00d")
    use_folder(workdir, pets)
    download.main(DOWNLOAD_ARGS)
    copied = Path("data/raw/images/folder")
    for name, original in (("dog/again.png", "dog/1.png"), ("cat/linked.png", "cat/1.png")):
        assert not (copied / name).is_symlink()
        assert (copied / name).read_bytes() == (pets / original).read_bytes()
    assert not (copied / ".store").exists()


@pytest.mark.parametrize("kind", ["loop", "self", "broken"])
def test_loops_and_broken_links_are_refused(kind: str, workdir, pets, capsys) -> None:
    link = pets / "cat" / "link"
    if kind == "loop":
        link.symlink_to(pets)
        expected = f"{link} links back to {pets.resolve()}, a folder above it (a loop)"
    elif kind == "self":
        link.symlink_to(link)
        expected = f"{link} is a broken link or a loop of links"
    else:
        link.symlink_to(pets / "nowhere")
        expected = f"{link} is a broken link or a loop of links"
    use_folder(workdir, pets)
    err = fails(download.main, DOWNLOAD_ARGS, capsys)
    assert expected in err


def test_the_manifest_never_records_a_home_path(
    workdir, pets, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A folder inside the project is recorded by its path there; one outside by its name."""
    use_folder(workdir, pets)
    download.main(DOWNLOAD_ARGS)
    assert json.loads(Path("data/raw/images/manifest.json").read_text())["origin"] == "pets"

    outside = tmp_path_factory.mktemp("home") / "photos"
    make_image_folder(outside, {"a": 6, "b": 6})
    csv = outside.parent / "rows.csv"
    csv.write_text("\n".join(f"{i},{i % 2}" for i in range(40)) + "\n")
    workdir(
        **{
            "data.images": "folder",
            "data.images_dir": str(outside),
            "data.anomaly": "csv",
            "data.csv_path": str(csv),
            "data.label_column": -1,
        }
    )
    download.main(DOWNLOAD_ARGS)
    for folder, name in (("images", "photos"), ("anomaly", "rows.csv")):
        manifest = Path(f"data/raw/{folder}/manifest.json").read_text()
        assert json.loads(manifest)["origin"] == name
        assert str(outside.parent) not in manifest


# --- 7. messages name what the user gave --------------------------------------------------------


def test_too_few_images_names_the_class_folders(workdir, pets, capsys) -> None:
    """The probe: one image per class was reported as classes {'0': 1, '1': 1}."""
    for extra in sorted((pets / "dog").iterdir())[1:]:
        extra.unlink()
    use_folder(workdir, pets)
    download.main(DOWNLOAD_ARGS)
    err = fails(preprocess.main, PREPROCESS_ARGS, capsys)
    assert "image folder pets: too few rows in class(es) dog (1 row) for a stratified" in err
