"""download -> preprocess -> tokenize, run as DVC runs them, on data the tests make."""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import json
import pickle
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np

from dllabs.data import sources
from dllabs.data.fetch import RemoteFile, file_hash
from dllabs.tooling import code_deps
from stages import download, preprocess
from stages import tokenize as tokenize_stage
from tests.helpers.data import make_image_folder
from tests.helpers.repo import REPO
from tests.helpers.stages import DOWNLOAD_ARGS, PREPROCESS_ARGS, TOKENIZE_ARGS, fails, run_stage


def run_all() -> None:
    download.main(DOWNLOAD_ARGS)
    preprocess.main(PREPROCESS_ARGS)
    tokenize_stage.main(TOKENIZE_ARGS)


def load(path: str) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` file, or of a folder of ``.npy`` files (processed images)."""
    if Path(path).is_dir():
        return {f.stem: np.load(f, allow_pickle=False) for f in sorted(Path(path).glob("*.npy"))}
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def test_defaults_run_offline_end_to_end(workdir) -> None:
    workdir()
    run_all()
    for folder, source in [
        ("images", "digits"),
        ("anomaly", "digits"),
        ("text", "lee"),
        ("text_eval", "gensim_eval"),
    ]:
        manifest = json.loads(Path(f"data/raw/{folder}/manifest.json").read_text())
        assert manifest["source"] == source
        for name, info in manifest["files"].items():
            assert info["sha256"] == file_hash(Path(f"data/raw/{folder}") / name)
    assert {p.name for p in Path("data/raw/text_eval").iterdir()} >= set(sources.TEXT_EVAL_FILES)

    images = load("data/processed/images")
    assert images["x_train"].dtype == np.uint8 and images["x_train"].shape[1:] == (8, 8, 1)
    assert images["x_train"].max() == 255  # digits' 0..16 mapped onto 0..255
    assert len(images["y_train"]) + len(images["y_val"]) + len(images["y_test"]) == 1797
    assert len(images["y_test"]) == 270 and len(images["y_val"]) == 270
    assert images["class_names"].tolist() == [str(d) for d in range(10)]
    summary = json.loads(Path("data/processed/images.json").read_text())
    assert summary["splits"]["test"]["rows"] == 270
    assert sum(summary["splits"]["train"]["per_class"].values()) == len(images["y_train"])

    series = load("data/processed/series.npz")
    assert series["y_val"].dtype == np.int8 and set(series["y_test"].tolist()) == {0, 1}
    assert set(series["label_train"].tolist()) == {"0"}  # digit 0 is normal; nothing else trains
    assert series["row_shape"].tolist() == [8, 8]
    assert series["x_train"].min() >= 0.0 and series["x_train"].max() <= 1.0

    corpus = Path("data/processed/corpus.txt").read_text().splitlines()
    counts = json.loads(Path("data/processed/corpus.json").read_text())
    assert len(corpus) == counts["sentences_kept"] == 300  # Lee's 300 articles, one per line
    assert counts["sentence_method"] == "lines" and counts["tokens"] > 30000
    assert "the" not in {w for line in corpus for w in line.split()}


def test_outputs_are_byte_for_byte_reproducible(workdir) -> None:
    workdir()
    run_all()
    paths = [
        "data/raw/images/digits.npz",
        "data/processed/series.npz",
        "data/processed/corpus.txt",
        "data/processed/images.json",
    ]
    paths += sorted(str(f) for f in Path("data/processed/images").iterdir())
    assert len(paths) == 4 + 7  # x_ and y_ of three splits, and the class names
    first = {p: file_hash(p) for p in paths}
    run_all()
    assert {p: file_hash(p) for p in paths} == first


def test_misspelt_source_fails_naming_the_key_and_writes_nothing(workdir) -> None:
    root = workdir(**{"data.images": "mnits"})
    result = run_stage("download", *DOWNLOAD_ARGS, cwd=root)
    assert result.returncode == 1
    assert "data.images = 'mnits'" in result.stderr and "did you mean 'mnist'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (root / "data").exists()


def test_validation_happens_before_argument_parsing(workdir) -> None:
    """`python -m stages.download` with a bad param names the param, even without arguments."""
    root = workdir(**{"data.imagez": "digits"})
    result = run_stage("download", cwd=root)
    assert (
        result.returncode == 1
        and "unknown key data.imagez; did you mean data.images?" in result.stderr
    )


def test_failed_download_leaves_previous_outputs_untouched(
    workdir, tmp_path, monkeypatch, capsys
) -> None:
    workdir()
    download.main(DOWNLOAD_ARGS)
    before = file_hash("data/raw/images/digits.npz")
    monkeypatch.setenv("DL_LABS_MIRROR", str(tmp_path / "empty-mirror"))
    workdir(**{"data.images": "mnist"})
    err = fails(download.main, DOWNLOAD_ARGS, capsys)
    assert "mnist.npz" in err and "DL_LABS_MIRROR" in err
    assert file_hash("data/raw/images/digits.npz") == before
    assert sorted(p.name for p in Path("data/raw").iterdir()) == [
        "anomaly",
        "images",
        "text",
        "text_eval",
    ]


def test_unreachable_origin_points_to_the_mirror_and_defaults(workdir, monkeypatch, capsys) -> None:
    import socket

    with socket.socket() as probe:  # a loopback port with nothing listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setitem(
        sources.REMOTE, "ecg5000", (RemoteFile("ecg.csv", f"http://127.0.0.1:{port}/ecg.csv"),)
    )
    workdir(**{"data.anomaly": "ecg5000"})
    monkeypatch.setattr(sources, "fetch", lambda remote: _fetch_no_retry(remote))
    err = fails(download.main, DOWNLOAD_ARGS, capsys)
    assert "ecg.csv: cannot reach" in err and "DL_LABS_MIRROR" in err and "digits" in err
    assert not any(Path("data/raw").rglob("*"))  # at most the empty parent folder


def _fetch_no_retry(remote: RemoteFile):
    from dllabs.data.fetch import fetch

    return fetch(remote, retries=0, progress=False)


def ecg_like_csv(rows: int = 60, width: int = 12) -> str:
    """Headerless CSV like TensorFlow's ecg.csv: values, then the label (1 = normal)."""
    rng = np.random.default_rng(0)
    labels = np.where(np.arange(rows) % 3 == 0, 2, 1)
    values = rng.normal(size=(rows, width)) + labels[:, None]
    return "".join(
        ",".join(f"{v:.5f}" for v in row) + f",{lab}\n"
        for row, lab in zip(values, labels, strict=True)
    )


def test_remote_sources_through_a_mirror_folder(workdir, tmp_path, monkeypatch) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "ecg.csv").write_text(ecg_like_csv())
    book = (
        "Header\n*** START OF THE PROJECT GUTENBERG EBOOK X ***\n"
        "Alice ran fast. The rabbit ran faster.\n"
        "*** END OF THE PROJECT GUTENBERG EBOOK X ***\nLicence text.\n"
    )
    (mirror / "11-0.txt").write_text(book)
    monkeypatch.setenv("DL_LABS_MIRROR", str(mirror))
    workdir(**{"data.anomaly": "ecg5000", "data.text": "alice"})
    run_all()
    manifest = json.loads(Path("data/raw/anomaly/manifest.json").read_text())
    assert manifest["source"] == "ecg5000"
    assert manifest["files"]["ecg.csv"]["sha256"] == file_hash(
        mirror / "ecg.csv"
    )  # recorded, so dvc.lock pins it
    assert manifest["files"]["ecg.csv"]["origin"].startswith("https://")  # origin, not the mirror
    series = load("data/processed/series.npz")
    assert set(series["label_train"].tolist()) == {"1"} and series["row_shape"].tolist() == [12]
    assert json.loads(Path("data/processed/corpus.json").read_text())["gutenberg_stripped"]
    assert "licence" not in Path("data/processed/corpus.txt").read_text()


def test_expected_hash_in_params_is_enforced(workdir, tmp_path, monkeypatch, capsys) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "ecg.csv").write_text(ecg_like_csv())
    monkeypatch.setenv("DL_LABS_MIRROR", str(mirror))
    workdir(**{"data.anomaly": "ecg5000", "data.ecg_sha256": "0" * 64})
    err = fails(download.main, DOWNLOAD_ARGS, capsys)
    assert "checksum mismatch" in err and "0" * 64 in err and file_hash(mirror / "ecg.csv") in err
    workdir(**{"data.anomaly": "ecg5000", "data.ecg_sha256": file_hash(mirror / "ecg.csv")})
    download.main(DOWNLOAD_ARGS)
    assert Path("data/raw/anomaly/ecg.csv").is_file()


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes(), mtime=0)


def pin(
    monkeypatch, source: str, files: dict[str, bytes], mirror: Path, algorithm: str = "sha256"
) -> None:
    """Register crafted files for ``source`` under their real names, pinned to their hashes."""
    mirror.mkdir(exist_ok=True)
    remotes = []
    for name, payload in files.items():
        (mirror / name).write_bytes(payload)
        digest = hashlib.new(algorithm, payload).hexdigest()
        remotes.append(RemoteFile(name, f"https://example.invalid/{name}", f"{algorithm}:{digest}"))
    monkeypatch.setitem(sources.REMOTE, source, tuple(remotes))
    monkeypatch.setenv("DL_LABS_MIRROR", str(mirror))


def test_fashion_mnist_layout_is_read_with_its_official_test_split(
    workdir, tmp_path, monkeypatch
) -> None:
    rng = np.random.default_rng(1)
    x_train, y_train = rng.integers(0, 256, (100, 28, 28)), np.arange(100) % 10
    x_test, y_test = rng.integers(0, 256, (30, 28, 28)), np.arange(30) % 10
    files = {
        "train-images-idx3-ubyte.gz": idx_bytes(x_train),
        "train-labels-idx1-ubyte.gz": idx_bytes(y_train),
        "t10k-images-idx3-ubyte.gz": idx_bytes(x_test),
        "t10k-labels-idx1-ubyte.gz": idx_bytes(y_test),
    }
    pin(monkeypatch, "fashion_mnist", files, tmp_path / "mirror", algorithm="md5")
    workdir(**{"data.images": "fashion_mnist", "data.split.val_fraction": 0.2})
    download.main(DOWNLOAD_ARGS)
    preprocess.main(PREPROCESS_ARGS)
    images = load("data/processed/images")
    assert np.array_equal(images["x_test"][..., 0], x_test)  # the official test split, untouched
    assert len(images["y_val"]) == 20 and len(images["y_train"]) == 80
    assert images["class_names"][0] == "T-shirt/top"


def test_mnist_npz_layout(workdir, tmp_path, monkeypatch) -> None:
    rng = np.random.default_rng(2)
    buffer = io.BytesIO()
    np.savez(
        buffer,
        x_train=rng.integers(0, 256, (100, 28, 28), dtype=np.uint8),
        y_train=np.arange(100) % 10,
        x_test=rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
        y_test=np.arange(20) % 10,
    )
    pin(monkeypatch, "mnist", {"mnist.npz": buffer.getvalue()}, tmp_path / "mirror")
    workdir(**{"data.images": "mnist"})
    download.main(DOWNLOAD_ARGS)
    preprocess.main(PREPROCESS_ARGS)
    images = load("data/processed/images")
    assert images["x_train"].shape[1:] == (28, 28, 1) and len(images["y_test"]) == 20


def cifar_tarball(rng: np.random.Generator) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            batch = {
                b"data": rng.integers(0, 256, (20, 3072), dtype=np.uint8),
                b"labels": [i % 10 for i in range(20)],
            }
            payload = pickle.dumps(batch)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return buffer.getvalue()


def test_cifar10_tarball_is_extracted_and_read_as_rgb(workdir, tmp_path, monkeypatch) -> None:
    pin(
        monkeypatch,
        "cifar10",
        {"cifar-10-python.tar.gz": cifar_tarball(np.random.default_rng(3))},
        tmp_path / "mirror",
    )
    workdir(**{"data.images": "cifar10"})
    download.main(DOWNLOAD_ARGS)
    preprocess.main(PREPROCESS_ARGS)
    images = load("data/processed/images")
    assert images["x_train"].shape[1:] == (32, 32, 3)
    assert len(images["y_train"]) + len(images["y_val"]) == 100 and len(images["y_test"]) == 20
    assert images["class_names"][-1] == "truck"


def test_image_folder_is_resized_and_split(workdir, tmp_path) -> None:
    folder = tmp_path / "pets"
    make_image_folder(folder, {"cat": 20, "dog": 20})
    (folder / "notes.txt").write_text("not an image")
    workdir(
        **{
            "data.images": "folder",
            "data.images_dir": str(folder),
            "data.image_size": [16, 16],
            "data.color_mode": "grayscale",
        }
    )
    download.main(DOWNLOAD_ARGS)
    preprocess.main(PREPROCESS_ARGS)
    images = load("data/processed/images")
    assert images["x_train"].shape[1:] == (16, 16, 1)
    assert images["class_names"].tolist() == ["cat", "dog"]
    assert len(images["y_test"]) == 6 and np.bincount(images["y_test"]).tolist() == [3, 3]


def split_folder_arrays(workdir, folder: Path, splits: dict[str, dict[str, int]]) -> dict:
    """Make a folder of split folders of class folders, download and preprocess it at 8x8."""
    for split, classes in splits.items():
        make_image_folder(folder / split, classes)
    workdir(**{"data.images": "folder", "data.images_dir": str(folder), "data.image_size": [8, 8]})
    download.main(DOWNLOAD_ARGS)
    preprocess.main(PREPROCESS_ARGS)
    return load("data/processed/images")


def test_image_folder_with_its_own_splits_keeps_them(workdir, tmp_path) -> None:
    splits = {"train": {"cat": 10, "dog": 10}, "test": {"cat": 3, "dog": 4}}
    images = split_folder_arrays(workdir, tmp_path / "pets", splits)
    assert images["x_test"].shape == (7, 8, 8, 3)
    assert len(images["y_train"]) + len(images["y_val"]) == 20


def test_kaggle_layout_reads_classes_not_split_folders(workdir, tmp_path, capsys) -> None:
    images = split_folder_arrays(
        workdir,
        tmp_path / "cats_and_dogs",
        {"training_set": {"cats": 8, "dogs": 6}, "test_set": {"cats": 2, "dogs": 3}},
    )
    assert images["class_names"].tolist() == ["cats", "dogs"]
    assert np.bincount(images["y_test"]).tolist() == [2, 3]
    out = capsys.readouterr().out
    assert "preprocess: test: 5 images: cats: 2, dogs: 3" in out
    assert re.search(r"preprocess: train: \d+ images: cats: \d+, dogs: \d+", out)


def test_a_single_class_folder_is_refused(workdir, tmp_path, capsys) -> None:
    folder = tmp_path / "cats"
    make_image_folder(folder, {"cat": 5})
    workdir(**{"data.images": "folder", "data.images_dir": str(folder)})
    err = fails(download.main, DOWNLOAD_ARGS, capsys)
    assert f"{folder}: one class folder (cat); a classifier needs two or more" in err
    assert not Path("data/raw").exists() or not any(Path("data/raw").iterdir())


def test_a_mixed_layout_is_refused_at_download_naming_the_users_folder(
    workdir, tmp_path, capsys
) -> None:
    folder = tmp_path / "pets"
    make_image_folder(folder / "train", {"cat": 2, "dog": 2})
    make_image_folder(folder / "extra", {"cat": 2, "dog": 2})
    workdir(**{"data.images": "folder", "data.images_dir": str(folder)})
    err = fails(download.main, DOWNLOAD_ARGS, capsys)
    assert f"{folder}: mixes split folders (train) with other folders (extra)" in err


def test_empty_class_folder_is_refused_at_download_naming_the_users_folder(
    workdir, tmp_path, capsys
) -> None:
    folder = tmp_path / "pets"
    make_image_folder(folder, {"cat": 5})
    (folder / "dog").mkdir()
    workdir(**{"data.images": "folder", "data.images_dir": str(folder)})
    err = fails(download.main, DOWNLOAD_ARGS, capsys)
    assert f"{folder}/dog: class folder has no images" in err
    assert not Path("data/raw").exists() or not any(Path("data/raw").iterdir())


def test_a_folder_streams_through_preprocess_in_chunks_writing_the_in_memory_arrays(
    workdir, tmp_path, monkeypatch
) -> None:
    """Chunks of 4 images (crossing class and split boundaries) give the bytes one chunk of all
    gives, and those hold what decoding the whole folder in memory and splitting it gives."""
    from dllabs.data.readers import ImageFiles, read_image_folder
    from dllabs.data.splits import stratified_indices
    from dllabs.params import load_params

    folder = tmp_path / "pets"
    make_image_folder(folder, {"cat": 11, "dog": 9, "eel": 10})
    workdir(**{"data.images": "folder", "data.images_dir": str(folder), "data.image_size": [7, 9]})
    download.main(DOWNLOAD_ARGS)
    decoded: list[int] = []
    decode = ImageFiles.decode
    monkeypatch.setattr(
        ImageFiles,
        "decode",
        lambda self, *a: decoded.append(len(decode(self, *a))) or decode(self, *a),
    )
    written = {}
    for chunk in (4, 1000):
        monkeypatch.setattr(preprocess, "DECODE_CHUNK", chunk)
        preprocess.main(PREPROCESS_ARGS)
        written[chunk] = {f.name: f.read_bytes() for f in Path("data/processed/images").iterdir()}
        assert max(decoded) <= chunk and sum(decoded) == 30
        decoded.clear()
    assert written[4] == written[1000]
    assert sorted(written[4]) == [
        "class_names.npy",
        "x_test.npy",
        "x_train.npy",
        "x_val.npy",
        "y_test.npy",
        "y_train.npy",
        "y_val.npy",
    ]

    params = load_params()
    whole = read_image_folder(folder, (7, 9), "rgb")
    split = params.data.split
    rows = stratified_indices(whole.y, split.val_fraction, split.test_fraction, params.base.seed)
    images = load("data/processed/images")
    for name in ("train", "val", "test"):
        assert np.array_equal(images[f"x_{name}"], whole.x[getattr(rows, name)])
        assert np.array_equal(images[f"y_{name}"], whole.y[getattr(rows, name)])


def test_an_unreadable_image_met_while_streaming_leaves_no_output(
    workdir, tmp_path, capsys, monkeypatch
) -> None:
    folder = tmp_path / "pets"
    make_image_folder(folder, {"cat": 12, "dog": 12})
    broken = folder / "dog" / "7.png"
    broken.write_bytes(b"\x89PNG not really")
    workdir(**{"data.images": "folder", "data.images_dir": str(folder)})
    download.main(DOWNLOAD_ARGS)
    monkeypatch.setattr(preprocess, "DECODE_CHUNK", 3)  # several chunks are written before it
    err = fails(preprocess.main, PREPROCESS_ARGS, capsys)
    # The user's file, by its path inside the project (the copy under data/raw is not theirs).
    assert "error: pets/dog/7.png: unreadable image" in err
    assert not Path("data/processed").exists() or not any(Path("data/processed").iterdir())


def test_csv_source_with_label_column_and_bad_cells(workdir, tmp_path, capsys) -> None:
    good = tmp_path / "fraud.csv"
    rows = ["Time,V1,V2,Amount,Class"] + [
        f"{i},{i % 7}.5,{-i},{i * 2}.0,{int(i % 5 == 0)}" for i in range(80)
    ]
    good.write_text("\n".join(rows) + "\n")
    workdir(
        **{
            "data.anomaly": "csv",
            "data.csv_path": str(good),
            "data.label_column": "Class",
            "data.normal_label": 0,
            "data.anomaly_scaling": "standard",
        }
    )
    download.main(DOWNLOAD_ARGS)
    preprocess.main(PREPROCESS_ARGS)
    series = load("data/processed/series.npz")
    assert series["x_train"].shape[1] == 4 and set(series["label_train"].tolist()) == {"0"}
    assert set(series["y_val"].tolist()) == {0, 1}

    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join([*rows[:10], "10,1.5,oops,3.0,0", *rows[11:]]) + "\n")
    workdir(
        **{
            "data.anomaly": "csv",
            "data.csv_path": str(bad),
            "data.label_column": "Class",
            "data.normal_label": 0,
        }
    )
    download.main(DOWNLOAD_ARGS)
    err = fails(preprocess.main, PREPROCESS_ARGS, capsys)
    assert "bad.csv: row 11, column 'V2': expected a number, got 'oops'" in err


def test_unknown_normal_label_is_named(workdir, capsys) -> None:
    workdir(**{"data.normal_label": 42})
    download.main(DOWNLOAD_ARGS)
    err = fails(preprocess.main, PREPROCESS_ARGS, capsys)
    assert "data.normal_label: 42 not among the labels" in err


def test_text_file_source(workdir, tmp_path) -> None:
    text = tmp_path / "story.txt"
    text.write_text(
        "Cats chase mice quickly. Dogs chase cats slowly.\n\nBirds sing songs loudly.\n"
    )
    workdir(**{"data.text": "file", "data.text_path": str(text)})
    download.main(DOWNLOAD_ARGS)
    tokenize_stage.main(TOKENIZE_ARGS)
    assert Path("data/processed/corpus.txt").read_text().splitlines() == [
        "cats chase mice quickly",
        "dogs chase cats slowly",
        "birds sing songs loudly",
    ]


def test_missing_byo_file_is_named(workdir, tmp_path, capsys) -> None:
    workdir(**{"data.text": "file", "data.text_path": str(tmp_path / "nope.txt")})
    err = fails(download.main, DOWNLOAD_ARGS, capsys)
    assert "data.text_path:" in err and "nope.txt is not a file" in err


def assert_runs_without_deep_learning_imports(root: Path, code: str) -> None:
    """Run ``code`` in a fresh interpreter in ``root``; fail if it imported TensorFlow and co."""
    check = (
        "import sys\n"
        "heavy = {'tensorflow', 'keras', 'torch', 'jax'}\n"
        "# a None entry keeps a package out (the start-up's jax under TensorFlow): no import\n"
        "loaded = [name for name, module in sys.modules.items() if module is not None]\n"
        "heavy = sorted(m for m in loaded if m.split('.')[0] in heavy)\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code + check], cwd=root, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]


def test_data_stages_never_import_tensorflow(workdir) -> None:
    """download, preprocess and tokenize must not pay TensorFlow's import time."""
    assert_runs_without_deep_learning_imports(
        workdir(),
        "from stages import download, preprocess, tokenize\n"
        f"download.main({DOWNLOAD_ARGS!r})\n"
        f"preprocess.main({PREPROCESS_ARGS!r})\n"
        f"tokenize.main({TOKENIZE_ARGS!r})\n",
    )


def test_gensim_cbow_stage_never_imports_tensorflow(workdir, tmp_path) -> None:
    """With the default engine, lab 4 trains on a tiny text without TensorFlow's import time."""
    text = tmp_path / "tiny.txt"
    text.write_text("The cat sat on the mat near the dog.\nA dog sat on a log by the cat.\n" * 20)
    root = workdir(
        **{"data.text": "file", "data.text_path": str(text), "cbow.epochs": 2, "cbow.min_count": 1}
    )
    assert_runs_without_deep_learning_imports(
        root,
        "from stages import download, tokenize, train_cbow\n"
        f"download.main({DOWNLOAD_ARGS!r})\n"
        f"tokenize.main({TOKENIZE_ARGS!r})\n"
        "train_cbow.main(['--corpus', 'data/processed/corpus.txt', '--model', 'models/cbow',"
        " '--plots', 'plots/cbow'])\n",
    )
    training = json.loads((root / "models/cbow/training.json").read_text())
    assert training["engine"] == "gensim" and training["vocab_size"] >= 5  # cat, sat, mat, dog, log
    # Run as a stage (python -m), its start-up comes first: it too must leave Keras unimported.
    assert_runs_without_deep_learning_imports(
        root,
        "import runpy, sys\n"
        "sys.argv = ['train_cbow', '--help']\n"
        "try:\n"
        "    runpy.run_module('stages.train_cbow', run_name='__main__')\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n",
    )


def test_dvc_yaml_stage_commands_match_the_argument_lists() -> None:
    """The arguments these tests pass are the ones dvc.yaml passes."""
    import yaml

    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for name, args in (
        ("download", DOWNLOAD_ARGS),
        ("preprocess", PREPROCESS_ARGS),
        ("tokenize", TOKENIZE_ARGS),
    ):
        assert stages[name]["cmd"].split()[-len(args) :] == args


def test_only_the_stages_that_run_keras_start_it_and_the_others_import_none_of_it(workdir) -> None:
    """A stage whose code can import Keras starts with ``start_keras_stage`` (backend, cluster);
    the others do not, and importing them (``python -m`` would) loads no deep-learning package."""
    keras_import = re.compile(r"^\s*(import keras|from keras)", re.M)
    plain = []
    for path in sorted((REPO / "stages").glob("[a-z]*.py")):
        files = code_deps.source_closure(f"stages.{path.stem}", REPO)
        code = [(REPO / f).read_text() for f in files if f.endswith(".py")]
        runs_keras = any(keras_import.search(text) for text in code)
        starts = f'start_keras_stage("{path.stem}"' in path.read_text()
        assert runs_keras == starts, path.name
        if not runs_keras:
            plain.append(path.stem)
    assert {"download", "preprocess", "tokenize", "threshold_anomaly", "evaluate"} <= set(plain)
    assert_runs_without_deep_learning_imports(
        workdir(), "".join(f"import stages.{name}\n" for name in plain)
    )


def test_the_start_up_imports_keras_without_scikit_learn_and_matplotlib_yet_both_import_after(
    workdir,
) -> None:
    """Keras loads scikit-learn and matplotlib for features no stage uses (0.9 s a stage); the
    start-up keeps them out of Keras's import, and a stage that needs them imports them later."""
    probe = (
        "import sys\n"
        "print(*(name in sys.modules for name in ('keras', 'sklearn', 'matplotlib')))\n"
        "import matplotlib.pyplot as plt, sklearn.metrics as metrics\n"
        "print(metrics.accuracy_score([0, 1], [0, 1]), callable(plt.figure))\n"
    )
    started = "from dllabs.training.startup import start_keras_stage\nstart_keras_stage('x')\n"
    root = workdir(**{"base.backend": "tensorflow"})
    command = [sys.executable, "-c", started + probe]
    done = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["True", "False", "False", "1.0", "True"]


def test_a_tensorflow_stage_does_not_import_jax_with_tensorflow(workdir) -> None:
    """TensorFlow's TFLite converter imports JAX when it is installed; the start-up keeps it out
    of a TensorFlow stage (a TensorFlow import without the start-up is the control)."""
    probe = "import sys, tensorflow\nprint(sys.modules.get('jax') is not None)\n"
    started = "from dllabs.training.startup import start_keras_stage\nstart_keras_stage('x')\n"
    root = workdir(**{"base.backend": "tensorflow"})
    for code, expected in ((started + probe, "False"), (probe, None)):
        command = [sys.executable, "-c", code]
        done = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        if expected is not None:
            assert done.stdout.split() == [expected]
        elif importlib.util.find_spec("jax") is not None:  # the control: without the start-up
            assert done.stdout.split() == ["True"]
