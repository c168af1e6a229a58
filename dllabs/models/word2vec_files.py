"""Word2Vec models and word vectors stored as ``.npy`` arrays and JSON, never as pickles.

gensim's own ``save``/``load`` pickle the whole object, and unpickling runs whatever code the file
names: a model pulled from a shared DVC remote or a teammate's experiment could run commands on
every machine that evaluates or predicts with it. So a model is a folder of plain files:

- ``model.json``: the format, the vector size, the training settings and the corpus counts;
- ``vocabulary.json``: the words in index order and their corpus counts;
- ``vectors.npy``: the input vectors (gensim's ``wv.vectors``), one row per word;
- ``output_vectors.npy`` (full models only): the output weights of negative sampling (gensim's
  ``syn1neg``), which ``predict_output_word`` multiplies the averaged context vectors with.

Arrays are read with ``allow_pickle=False`` and every shape is checked against the vocabulary
before gensim sees it. :func:`load_word2vec` rebuilds a ``Word2Vec`` that answers
``most_similar``, ``predict_output_word`` and the evaluations exactly as the trained one does;
it is not meant to train further (gensim's sampling tables are not stored).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from dllabs.errors import DataError, one_line
from dllabs.outputs import load_json, save_json

FORMAT = "dl-labs word vectors"
VERSION = 1
MODEL, VOCABULARY, VECTORS, OUTPUT = (
    "model.json",
    "vocabulary.json",
    "vectors.npy",
    "output_vectors.npy",
)
# What earlier versions of the pipeline wrote with gensim's pickle-based save().
PICKLED = ("word2vec.model", "vectors.kv", "baseline.kv")
# The training settings kept with a full model: what predict_output_word and a reader need.
SETTINGS = (
    "sg",
    "cbow_mean",
    "window",
    "negative",
    "hs",
    "min_count",
    "sample",
    "alpha",
    "epochs",
    "seed",
)
# The whole-number settings' ranges (highest None: no bound). Checked before gensim sees them: a
# seed of 1.5 raised from inside NumPy's seeding, one of 2**32 from its range check.
WHOLE_SETTINGS = {
    "sg": (0, 1),
    "cbow_mean": (0, 1),
    "hs": (0, 1),
    "window": (1, None),
    "negative": (0, None),
    "min_count": (1, None),
    "epochs": (1, None),
    "seed": (0, 2**32 - 1),
}


def save_word2vec(model: Any, folder: str | Path) -> None:
    """A trained gensim ``Word2Vec``: its vectors, vocabulary, output weights and settings."""
    settings = {name: _plain(getattr(model, name)) for name in SETTINGS}
    corpus = {
        "corpus_total_words": int(model.corpus_total_words or 0),
        "corpus_count": int(model.corpus_count or 0),
    }
    has_output = bool(model.negative) and getattr(model, "syn1neg", None) is not None
    _save(
        model.wv,
        Path(folder),
        "word2vec",
        {"settings": settings, **corpus},
        model.syn1neg if has_output else None,
    )


def save_vectors(vectors: Any, folder: str | Path) -> None:
    """gensim ``KeyedVectors`` (word vectors only): enough for similarities and analogies."""
    _save(vectors, Path(folder), "vectors", {}, None)


def _save(wv: Any, folder: Path, kind: str, extra: dict, output: np.ndarray | None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    words = [str(word) for word in wv.index_to_key]
    counts = [int(wv.get_vecattr(word, "count")) for word in words] if words else []
    save_json(folder / VOCABULARY, {"words": words, "counts": counts})
    np.save(
        folder / VECTORS, np.ascontiguousarray(wv.vectors, dtype=np.float32), allow_pickle=False
    )
    if output is not None:
        np.save(folder / OUTPUT, np.ascontiguousarray(output, dtype=np.float32), allow_pickle=False)
    save_json(
        folder / MODEL,
        {
            "format": FORMAT,
            "version": VERSION,
            "kind": kind,
            "vector_size": int(wv.vector_size),
            "words": len(words),
            "output_vectors": output is not None,
            **extra,
        },
    )


def load_vectors(folder: str | Path) -> Any:
    """The ``KeyedVectors`` saved in ``folder`` (by either save function)."""
    from gensim.models import KeyedVectors

    folder = Path(folder)
    info = _read_info(folder)
    words, counts = _read_vocabulary(folder, info["words"])
    vectors = _read_array(folder / VECTORS, (len(words), info["vector_size"]))
    wv = KeyedVectors(info["vector_size"], count=0, dtype=np.float32)
    if words:
        wv.add_vectors(words, vectors)
    for word, count in zip(words, counts, strict=True):
        wv.set_vecattr(word, "count", count)
    return wv


def load_word2vec(folder: str | Path) -> Any:
    """The full ``Word2Vec`` saved in ``folder`` by :func:`save_word2vec`, ready for queries."""
    from gensim.models import Word2Vec

    folder = Path(folder)
    info = _read_info(folder)
    if info["kind"] != "word2vec":
        raise DataError(
            f"{folder / MODEL}: word vectors only, without the output weights that "
            "predict_output_word needs; expected a full Word2Vec model folder"
        )
    settings = _checked_settings(folder / MODEL, info)
    wv = load_vectors(folder)
    # No sentences: gensim only records the settings; the vectors are put in place below.
    model = Word2Vec(vector_size=info["vector_size"], workers=1, **settings)
    model.wv = wv
    model.corpus_total_words = info.get("corpus_total_words", 0)
    model.corpus_count = info.get("corpus_count", 0)
    if info.get("output_vectors"):
        model.syn1neg = _read_array(folder / OUTPUT, (len(wv), info["vector_size"]))
    return model


def _checked_settings(path: Path, info: dict) -> dict[str, int | float]:
    """A full model's settings and corpus counts, each of its type and in its range, and output
    vectors present exactly when negative sampling made them: one line for the first that is not.
    """
    settings = info.get("settings")
    if not isinstance(settings, dict) or set(settings) != set(SETTINGS):
        raise DataError(f"{path}: settings must name {', '.join(SETTINGS)}")
    for name, (lowest, highest) in WHOLE_SETTINGS.items():
        value = settings[name]
        if not _whole(value) or value < lowest or (highest is not None and value > highest):
            expected = (
                "0 or 1"
                if (lowest, highest) == (0, 1)
                else f"a whole number of {lowest} or more"
                if highest is None
                else f"a whole number from {lowest} to {highest}"
            )
            raise DataError(f"{path}: settings.{name} = {value!r}, expected {expected}")
    sample, alpha = settings["sample"], settings["alpha"]
    if not _number(sample) or not 0 <= sample < 1:
        raise DataError(f"{path}: settings.sample = {sample!r}, expected a number from 0 to 1")
    if not _number(alpha) or not alpha > 0:
        raise DataError(f"{path}: settings.alpha = {alpha!r}, expected a number above 0")
    for name in ("corpus_total_words", "corpus_count"):
        value = info.get(name, 0)
        if not _whole(value) or value < 0:
            raise DataError(f"{path}: {name} = {value!r}, expected a whole number of 0 or more")
    output, negative = info.get("output_vectors"), settings["negative"]
    if not isinstance(output, bool):
        raise DataError(f"{path}: output_vectors = {output!r}, expected true or false")
    if output and not negative:
        raise DataError(
            f"{path}: output_vectors is true but settings.negative is 0; output vectors are "
            "negative sampling's"
        )
    if negative and not output:
        raise DataError(
            f"{path}: settings.negative is {negative} but output_vectors is false; "
            "predict_output_word needs them"
        )
    return settings


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    """An int, or a finite float (JSON's NaN and Infinity parse as floats)."""
    return _whole(value) or (isinstance(value, float) and math.isfinite(value))


def _read_info(folder: Path) -> dict:
    """``model.json``, checked; a folder that holds an old pickled model is refused unread."""
    path = folder / MODEL
    if not path.is_file():
        # The old files lay in the lab's folder, which now holds this one: look in both.
        pickled = [
            f / name for f in (folder, folder.parent) for name in PICKLED if (f / name).exists()
        ]
        if pickled:
            raise DataError(
                f"{pickled[0]}: a gensim pickle from an earlier version of this project; "
                "not loaded, because unpickling can run any code the file names; retrain it "
                "(dvc repro train_cbow) or use a revision trained since"
            )
        raise DataError(f"{folder}: no {MODEL}; run the CBOW lab (dvc repro train_cbow)")
    info = _read_json(path)
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise DataError(f"{path}: not a word-vectors description (format {FORMAT!r})")
    if info.get("version") != VERSION:
        raise DataError(
            f"{path}: format version {info.get('version')!r}; this version reads {VERSION}"
        )
    kind, size, words = info.get("kind"), info.get("vector_size"), info.get("words")
    if kind not in ("word2vec", "vectors"):
        raise DataError(f"{path}: kind {kind!r}, expected 'word2vec' or 'vectors'")
    for name, value, lowest in (("vector_size", size, 1), ("words", words, 0)):
        if not _whole(value) or value < lowest:
            raise DataError(
                f"{path}: {name} = {value!r}, expected a whole number of {lowest} or more"
            )
    return info


def _read_vocabulary(folder: Path, expected: int) -> tuple[list[str], list[int]]:
    path = folder / VOCABULARY
    vocabulary = _read_json(path)
    words = vocabulary.get("words") if isinstance(vocabulary, dict) else None
    counts = vocabulary.get("counts") if isinstance(vocabulary, dict) else None
    if not isinstance(words, list) or not isinstance(counts, list):
        raise DataError(f"{path}: expected {{'words': [...], 'counts': [...]}}")
    if len(words) != expected or len(counts) != expected:
        raise DataError(
            f"{path}: {len(words)} words and {len(counts)} counts; {MODEL} says {expected}"
        )
    if not all(isinstance(word, str) for word in words) or len(set(words)) != len(words):
        raise DataError(f"{path}: words must be distinct strings")
    if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts):
        raise DataError(f"{path}: counts must be whole numbers of 0 or more")
    return words, counts


def _read_array(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """A float ``.npy`` of ``shape``; object arrays (pickles) are refused by NumPy unread."""
    if not path.is_file():
        raise DataError(f"{path}: not found (an incomplete word-vectors folder)")
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path}: not a plain .npy array ({one_line(exc)})") from None
    if array.shape != shape or array.dtype.kind != "f":
        raise DataError(
            f"{path}: {array.dtype} array of shape {array.shape}, expected float {shape} "
            "(one row per vocabulary word)"
        )
    if not np.isfinite(array).all():
        raise DataError(f"{path}: holds NaN or infinite values")
    return np.ascontiguousarray(array, dtype=np.float32)


def _read_json(path: Path) -> Any:
    if not path.exists():
        raise DataError(f"{path}: not found (an incomplete word-vectors folder)")
    return load_json(path)  # bounded in size, and only a regular file


def _plain(value: Any) -> int | float:
    """A setting as a JSON number (gensim keeps some as NumPy scalars)."""
    return value.item() if isinstance(value, np.generic) else value
