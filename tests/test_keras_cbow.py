"""The Keras CBOW engine: training, determinism, and the gensim model it is packed into."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
from gensim.models import Word2Vec

from dllabs.errors import DataError
from dllabs.labs.keras_cbow import (
    build_cbow_model,
    context_windows,
    fit_keras_cbow,
    shrink_windows,
    train_keras_cbow,
)
from dllabs.models.word2vec_files import load_word2vec, save_word2vec
from dllabs.params import CBOW
from tests.helpers.data import TINY_CORPUS as CORPUS


def make_cbow(default_params: dict, **changes: object) -> CBOW:
    settings = {
        **default_params["cbow"],
        "engine": "keras",
        "epochs": 5,
        "vector_size": 10,
        "min_count": 1,
        "keras": {"batch_size": 32, "learning_rate": 0.01},
    }
    return CBOW(**{**settings, **changes})


@pytest.fixture
def cbow(default_params: dict) -> CBOW:
    return make_cbow(default_params)


@pytest.fixture(scope="module")
def trained(default_params: dict) -> tuple[Word2Vec, keras.Model, list[float]]:
    """One negative-sampling run shared by the tests that only inspect its result."""
    losses: list[float] = []
    w2v, model = fit_keras_cbow(
        CORPUS, make_cbow(default_params), 0, lambda epoch, loss: losses.append(loss)
    )
    return w2v, model, losses


def keras_probabilities(model: keras.Model, w2v: Word2Vec, context: list[str]) -> np.ndarray:
    """The Keras model's own softmax over every vocabulary word for one context."""
    length = model.inputs[0].shape[1]
    ids = [w2v.wv.key_to_index[w] + 1 for w in context]
    x = np.array([ids + [0] * (length - len(ids))], dtype=np.int32)
    if len(model.inputs) == 2:  # negative sampling: score every word as a candidate
        x = [x, np.arange(len(w2v.wv), dtype=np.int32)[None, :]]
    logits = model.predict(x, verbose=0)[0].astype(np.float64)
    return np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()


def gensim_probabilities(w2v: Word2Vec, context: list[str]) -> np.ndarray:
    predicted = dict(w2v.predict_output_word(context, topn=len(w2v.wv)))
    return np.array([predicted[w] for w in w2v.wv.index_to_key], dtype=np.float64)


def test_context_windows_stay_inside_sentences() -> None:
    index = {"a": 0, "b": 1, "c": 2, "d": 3}
    contexts, centres = context_windows([["a", "b", "x", "c"], ["d"]], index, window=1)
    # "x" is out of vocabulary and dropped; "d" alone has no context and gives no pair
    assert centres.tolist() == [0, 1, 2]
    assert contexts.tolist() == [[0, 2], [1, 3], [2, 0]]  # ids shifted by 1, 0 = padding
    assert contexts.dtype == centres.dtype == np.int32


def test_shrunk_windows_keep_the_nearest_words() -> None:
    contexts = np.arange(1, 7, dtype=np.int32)[None, :].repeat(500, axis=0)  # window 3: 1 2 3|4 5 6
    shrunk = shrink_windows(contexts, window=3, rng=np.random.default_rng(0))
    assert np.all(shrunk[:, [2, 3]] == [3, 4])  # distance 1 is always kept
    reach = (shrunk[:, 3:] != 0).sum(axis=1)
    assert set(reach.tolist()) == {1, 2, 3}
    assert np.array_equal(reach, (shrunk[:, :3] != 0).sum(axis=1))  # same reach on both sides
    assert np.all((shrunk == 0) | (shrunk == contexts))


def test_epoch_losses_are_reported_and_decrease(trained) -> None:
    _, _, losses = trained
    assert len(losses) == 5 and all(loss > 0 for loss in losses)
    assert losses[-1] < losses[0]


def test_same_seed_same_vectors(cbow: CBOW, trained) -> None:
    first = trained[0]
    again = train_keras_cbow(CORPUS, cbow, seed=0)
    other = train_keras_cbow(CORPUS, cbow, seed=1)
    assert np.array_equal(first.wv.vectors, again.wv.vectors)
    assert np.array_equal(first.syn1neg, again.syn1neg)
    assert not np.array_equal(first.wv.vectors, other.wv.vectors)


def test_result_is_a_gensim_cbow_model_with_gensims_vocabulary(trained) -> None:
    w2v, model, _ = trained
    assert isinstance(w2v, Word2Vec) and w2v.sg == 0
    reference = Word2Vec(vector_size=10, min_count=1, sg=0, workers=1)
    reference.build_vocab(CORPUS)
    assert w2v.wv.index_to_key == reference.wv.index_to_key
    assert w2v.corpus_total_words == reference.corpus_total_words
    embedding = model.get_layer("context_embedding").get_weights()[0]
    assert embedding.shape == (len(w2v.wv) + 1, 10)  # row 0 is the padding
    assert np.array_equal(w2v.wv.vectors, embedding[1:])
    assert np.array_equal(w2v.syn1neg, model.get_layer("output_embedding").get_weights()[0])


def test_predict_output_word_matches_the_keras_model(trained) -> None:
    w2v, model, _ = trained
    context = ["the", "rules", "land"]
    expected = keras_probabilities(model, w2v, context)
    actual = gensim_probabilities(w2v, context)
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-6)
    assert w2v.predict_output_word(context, topn=1)[0][0] == w2v.wv.index_to_key[expected.argmax()]


def test_softmax_variant_trains_and_predicts(default_params: dict) -> None:
    params = make_cbow(default_params, negative=0, hs=True)
    losses: list[float] = []
    w2v, model = fit_keras_cbow(CORPUS, params, 0, lambda epoch, loss: losses.append(loss))
    assert model.get_layer("output").get_weights()[0].shape == (10, len(w2v.wv))
    assert losses[-1] < losses[0]
    context = ["a", "walks", "dog"]
    np.testing.assert_allclose(
        gensim_probabilities(w2v, context),
        keras_probabilities(model, w2v, context),
        rtol=1e-4,
        atol=1e-6,
    )
    assert len(w2v.predict_output_word(context, topn=3)) == 3


def test_padding_does_not_change_the_average() -> None:
    model = build_cbow_model(vocab_size=5, vector_size=4, context_length=6, negative=2, seed=0)
    mean = keras.Model(model.inputs[0], model.get_layer("context_mean").output)
    table = model.get_layer("context_embedding").get_weights()[0]
    ids = np.array([[3, 0, 0, 0, 0, 0], [3, 0, 5, 0, 0, 0], [0] * 6], dtype=np.int32)
    averages = mean.predict(ids, verbose=0)
    np.testing.assert_allclose(averages[0], table[3], rtol=1e-6)
    np.testing.assert_allclose(averages[1], (table[3] + table[5]) / 2, rtol=1e-6)
    assert np.array_equal(averages[2], np.zeros(4))  # nothing to average: zeros, not NaN


def test_save_and_load_round_trip(trained, tmp_path: Path) -> None:
    """The Keras engine's packed model is stored and read back like the gensim engine's."""
    w2v = trained[0]
    save_word2vec(w2v, tmp_path / "word2vec")
    loaded = load_word2vec(tmp_path / "word2vec")
    assert np.array_equal(loaded.wv.vectors, w2v.wv.vectors)
    assert np.array_equal(loaded.syn1neg, w2v.syn1neg)
    assert loaded.predict_output_word(["king", "land"]) == w2v.predict_output_word(["king", "land"])
    assert loaded.wv.most_similar("king") == w2v.wv.most_similar("king")


def test_corpus_with_no_frequent_word_is_a_clear_error(cbow: CBOW) -> None:
    with pytest.raises(DataError, match="no word occurs 5 times"):
        train_keras_cbow([["one", "two"]], CBOW(**{**cbow.model_dump(), "min_count": 5}), 0)


def test_corpus_without_any_context_is_a_clear_error(cbow: CBOW) -> None:
    with pytest.raises(DataError, match="no sentence has two in-vocabulary words"):
        train_keras_cbow([["one"], ["one"]], cbow, 0)
