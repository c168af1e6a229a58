"""CBOW models stored as ``.npy`` arrays and JSON: they round-trip exactly, and a crafted file
(a pickle that would create a file when loaded) is refused unread, with one line."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dllabs.errors import DataError
from dllabs.labs.word2vec import train_cbow
from dllabs.models.word2vec_files import load_vectors, load_word2vec, save_vectors, save_word2vec
from dllabs.params import CBOW
from tests.helpers.data import TINY_CORPUS, CreatesAFile
from tests.helpers.repo import REPO


@pytest.fixture(scope="module")
def model(default_params: dict):
    params = CBOW(**{**default_params["cbow"], "vector_size": 8, "epochs": 5, "min_count": 1})
    return train_cbow(TINY_CORPUS, params, seed=1)


def test_a_saved_model_answers_every_query_as_the_trained_one(model, tmp_path: Path) -> None:
    """Same machine, same arrays: the answers are bit-identical."""
    save_word2vec(model, tmp_path / "word2vec")
    loaded = load_word2vec(tmp_path / "word2vec")
    assert loaded.wv.index_to_key == model.wv.index_to_key
    assert [loaded.wv.get_vecattr(w, "count") for w in loaded.wv.index_to_key] == [
        model.wv.get_vecattr(w, "count") for w in model.wv.index_to_key
    ]
    assert np.array_equal(loaded.wv.vectors, model.wv.vectors)
    assert np.array_equal(loaded.syn1neg, model.syn1neg)
    assert loaded.wv.most_similar("king") == model.wv.most_similar("king")
    assert loaded.wv.most_similar(["king", "woman"], ["man"]) == model.wv.most_similar(
        ["king", "woman"], ["man"]
    )
    assert loaded.predict_output_word(["the", "land"]) == model.predict_output_word(["the", "land"])
    assert (loaded.sg, loaded.window, loaded.negative, loaded.corpus_total_words) == (
        0,
        model.window,
        model.negative,
        model.corpus_total_words,
    )
    assert not any(path.suffix in (".model", ".kv", ".pkl") for path in tmp_path.rglob("*"))


def test_saving_twice_writes_the_same_bytes(model, tmp_path: Path) -> None:
    """DVC sees an unchanged output when the model is unchanged."""
    save_word2vec(model, tmp_path / "a")
    save_word2vec(model, tmp_path / "b")
    for file in (tmp_path / "a").iterdir():
        assert file.read_bytes() == (tmp_path / "b" / file.name).read_bytes(), file.name


def test_word_vectors_alone_round_trip_and_are_not_a_full_model(model, tmp_path: Path) -> None:
    save_vectors(model.wv, tmp_path / "baseline")
    vectors = load_vectors(tmp_path / "baseline")
    assert vectors.most_similar("queen") == model.wv.most_similar("queen")
    with pytest.raises(DataError, match="without the output weights that predict_output_word"):
        load_word2vec(tmp_path / "baseline")


def test_a_pickled_model_is_refused_without_being_read(tmp_path: Path) -> None:
    """gensim's old format: a folder holding word2vec.model is refused before it is opened."""
    marker = tmp_path / "created-by-the-pickle"
    folder = tmp_path / "cbow"
    folder.mkdir()
    (folder / "word2vec.model").write_bytes(pickle.dumps(CreatesAFile(marker)))
    with pytest.raises(DataError, match=r"word2vec.model: a gensim pickle .* not loaded"):
        load_word2vec(folder)
    assert not marker.exists()


def test_an_object_array_is_refused_without_being_unpickled(model, tmp_path: Path) -> None:
    marker = tmp_path / "created-by-the-pickle"
    save_word2vec(model, tmp_path / "word2vec")
    crafted = np.array([CreatesAFile(marker)], dtype=object)
    for name in ("vectors.npy", "output_vectors.npy"):
        np.save(tmp_path / "word2vec" / name, crafted, allow_pickle=True)
        with pytest.raises(DataError, match=f"{name}: not a plain .npy array"):
            load_word2vec(tmp_path / "word2vec")
        save_word2vec(model, tmp_path / "word2vec")
    assert not marker.exists()


@pytest.mark.parametrize(
    ("file", "change", "message"),
    [
        ("model.json", {"format": "gensim"}, "not a word-vectors description"),
        ("model.json", {"version": 2}, "format version 2; this version reads 1"),
        ("model.json", {"words": 3}, "vocabulary.json: 10 words and 10 counts; model.json says 3"),
        (
            "model.json",
            {"vector_size": 4},
            r"vectors.npy: float32 array of shape \(10, 8\), "
            r"expected float \(10, 4\)",
        ),
        ("vocabulary.json", {"counts": None}, "expected {'words'"),
        ("model.json", {"settings": {"sg": 0}}, "settings must name sg, cbow_mean"),
    ],
)
def test_an_inconsistent_folder_is_one_line_naming_the_file(
    model, tmp_path: Path, file: str, change: dict, message: str
) -> None:
    folder = tmp_path / "word2vec"
    save_word2vec(model, folder)
    data = json.loads((folder / file).read_text())
    (folder / file).write_text(json.dumps({**data, **change}))
    with pytest.raises(DataError, match=message):
        load_word2vec(folder)


def test_predict_refuses_a_crafted_model_with_one_line_and_runs_nothing(tmp_path: Path) -> None:
    """The probe of the issue: `dl-labs predict cbow --model DIR` on a crafted pickle."""
    marker = tmp_path / "created-by-the-pickle"
    folder = tmp_path / "cbow"
    folder.mkdir()
    (folder / "word2vec.model").write_bytes(pickle.dumps(CreatesAFile(marker)))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "dllabs",
            "predict",
            "cbow",
            "--model",
            str(folder),
            "--similar",
            "king",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(f"predict: error: {folder}/word2vec.model: a gensim pickle")
    assert not marker.exists()
