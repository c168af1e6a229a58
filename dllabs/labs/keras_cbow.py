"""CBOW word2vec written in Keras layers: the same model gensim trains with ``sg=0``.

CBOW ("continuous bag of words") learns word vectors by guessing a word from its neighbours:

1. **Context embedding.** Each of the up to ``2 * window`` words around a position is looked up
   in a table of vectors (one row per word; these rows are the word vectors we keep).
2. **Average.** The context vectors are averaged into one vector ``h``. Sentences are short at
   their ends, so contexts are padded with id 0; the average skips the padding.
3. **Output layer.** ``h`` scores candidate centre words against a second table of vectors:

   - *negative sampling* (``cbow.negative > 0``, what gensim does by default): score the true
     centre word and ``negative`` random "noise" words (drawn in proportion to count^0.75) with a
     dot product each, and train a sigmoid to say 1 for the true word and 0 for the noise;
   - *full softmax* (``cbow.negative == 0`` with ``cbow.hs: true``): a dense layer scores every
     word of the vocabulary and a softmax picks the centre word. Keras has no hierarchical
     softmax (gensim's ``hs``), so the exact softmax that it approximates stands in for it.

Word ids are gensim's own (``build_vocab``: most frequent first). In the context input word ``i``
is id ``i + 1`` because id 0 is the padding; the output side has no padding and uses ``i``.
After training, the weights are packed into a gensim ``Word2Vec`` (input table -> ``wv.vectors``,
output table -> ``syn1neg``), so ``most_similar``, ``predict_output_word``, ``save`` and the
evaluation code work as for the gensim engine.

As in gensim, each epoch reshuffles the examples, draws new noise words, and gives every example
a random reach of 1 to ``window`` words per side (near words count more), and the learning rate
decays linearly. Differences, kept on purpose to keep the model plain: frequent words are not
down-sampled (``cbow.sample`` is not used) and the optimizer is Adam (``cbow.keras.learning_rate``,
``cbow.keras.batch_size``) rather than gensim's one-example-at-a-time SGD with ``alpha``. Training
is deterministic for a given seed on CPU.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
from gensim.models import Word2Vec
from keras import layers, ops

from dllabs.errors import DataError
from dllabs.params import CBOW
from dllabs.training.callbacks import DivergenceGuard

PAD = 0  # context id of "no word here"
NOISE_EXPONENT = 0.75  # word2vec's unigram^0.75 noise distribution
FINAL_RATE_SHARE = 0.01  # the learning rate decays linearly to this share of cbow.keras's


class MaskedMean(layers.Layer):
    """Average the context vectors, ignoring padded positions (id 0)."""

    def call(self, vectors: Any, ids: Any) -> Any:
        mask = ops.expand_dims(ops.cast(ops.not_equal(ids, PAD), vectors.dtype), -1)
        total = ops.sum(vectors * mask, axis=1)
        count = ops.maximum(ops.sum(mask, axis=1), 1.0)  # an all-padding row stays zero
        return total / count


class CandidateScores(layers.Layer):
    """Dot product of the context average with each candidate word's output vector."""

    def call(self, context: Any, candidates: Any) -> Any:
        return ops.einsum("bd,bkd->bk", context, candidates)


def build_cbow_model(
    vocab_size: int,
    vector_size: int,
    context_length: int,
    negative: int,
    seed: int | None = None,
) -> keras.Model:
    """The CBOW network; returns logits (apply sigmoid or softmax in the loss).

    Inputs: ``context`` ids (``context_length`` of them, word ``i`` as ``i + 1``, 0 = padding) and,
    with ``negative > 0``, ``candidates``: output-side word ids to score (any number of them; in
    training the centre word then ``negative`` noise words). With ``negative == 0`` the output is
    one logit per vocabulary word. Initial weights follow word2vec: small random input vectors,
    zero output vectors.
    """
    context = keras.Input(shape=(context_length,), dtype="int32", name="context")
    vectors = layers.Embedding(
        vocab_size + 1,  # + the padding row
        vector_size,
        embeddings_initializer=keras.initializers.RandomUniform(
            -0.5 / vector_size, 0.5 / vector_size, seed=seed
        ),
        name="context_embedding",
    )(context)
    mean = MaskedMean(name="context_mean")(vectors, context)
    if negative > 0:
        candidates = keras.Input(shape=(None,), dtype="int32", name="candidates")
        targets = layers.Embedding(
            vocab_size, vector_size, embeddings_initializer="zeros", name="output_embedding"
        )(candidates)
        scores = CandidateScores(name="scores")(mean, targets)
        return keras.Model([context, candidates], scores, name="cbow_negative_sampling")
    scores = layers.Dense(vocab_size, use_bias=False, kernel_initializer="zeros", name="output")(
        mean
    )
    return keras.Model(context, scores, name="cbow_softmax")


def context_windows(
    sentences: list[list[str]], key_to_index: dict[str, int], window: int
) -> tuple[np.ndarray, np.ndarray]:
    """Training pairs: ``(contexts, centres)``, int32, one row per in-vocabulary word.

    Out-of-vocabulary words are dropped first (as gensim does). Sentences are laid end to end with
    ``window`` padding ids between them, so one sliding window covers the whole corpus without
    a context ever crossing a sentence boundary. Words with no context at all are skipped.
    """
    gap = [PAD] * window
    ids: list[int] = list(gap)
    for sentence in sentences:
        ids += [key_to_index[w] + 1 for w in sentence if w in key_to_index]
        ids += gap
    stream = np.asarray(ids, dtype=np.int32)
    spans = np.lib.stride_tricks.sliding_window_view(stream, 2 * window + 1)
    centres = spans[:, window]
    contexts = np.concatenate([spans[:, :window], spans[:, window + 1 :]], axis=1)
    keep = (centres != PAD) & (contexts != PAD).any(axis=1)
    return np.ascontiguousarray(contexts[keep]), centres[keep] - 1


def shrink_windows(contexts: np.ndarray, window: int, rng: np.random.Generator) -> np.ndarray:
    """Give each row a random reach of 1 to ``window`` words per side; pad the words beyond it.

    This is word2vec's (and gensim's) "reduced window": near words are seen more often than far
    ones, which in effect weights the context by closeness. Drawn afresh every epoch.
    """
    reach = rng.integers(1, window + 1, size=(len(contexts), 1))
    distance = np.concatenate([np.arange(window, 0, -1), np.arange(1, window + 1)])
    return np.where(distance[None, :] <= reach, contexts, PAD).astype(np.int32)


class EpochLoss(keras.callbacks.Callback):
    """Pass each epoch's mean training loss to ``report(epoch_from_1, loss)``."""

    def __init__(self, report: Callable[[int, float], None] | None) -> None:
        super().__init__()
        self.report = report

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.report is not None and logs is not None:
            self.report(epoch + 1, float(logs["loss"]))


def fit_keras_cbow(
    sentences: list[list[str]],
    params: CBOW,
    seed: int,
    on_epoch_loss: Callable[[int, float], None] | None = None,
) -> tuple[Word2Vec, keras.Model]:
    """Train the Keras CBOW model; return it with the gensim model its weights were packed into."""
    keras.utils.set_random_seed(seed)
    negative = params.negative  # 0: full softmax (gensim's hs has no Keras counterpart)
    w2v = Word2Vec(
        vector_size=params.vector_size,
        window=params.window,
        min_count=params.min_count,
        sg=0,
        hs=0,
        # gensim's predict_output_word needs negative > 0; it then reads syn1neg, which holds the
        # output vectors of either variant, so the softmax variant records 1 here.
        negative=max(negative, 1),
        sample=0.0,
        epochs=params.epochs,
        seed=seed,
        workers=1,
    )
    w2v.build_vocab(_checked(sentences, params.min_count))
    vocab_size = len(w2v.wv)
    contexts, centres = context_windows(sentences, w2v.wv.key_to_index, params.window)
    if len(centres) == 0:
        raise DataError(
            "no sentence has two in-vocabulary words, so CBOW has no context to learn from; "
            "lower cbow.min_count or use a larger text"
        )

    model = build_cbow_model(vocab_size, params.vector_size, 2 * params.window, negative, seed)
    steps = params.epochs * -(-len(centres) // params.keras.batch_size)  # batches in all
    rate = params.keras.learning_rate
    model.compile(
        # linear decay over the whole run, as gensim decays alpha; it ends at 1% of the start
        optimizer=keras.optimizers.Adam(
            keras.optimizers.schedules.PolynomialDecay(rate, steps, rate * FINAL_RATE_SHARE)
        ),
        loss=keras.losses.BinaryCrossentropy(from_logits=True)
        if negative
        else keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=True,  # XLA and 16 batches per call: tiny batches pay less per-step overhead
        steps_per_execution=16,
    )
    rng = np.random.default_rng(seed)
    counts = np.array([w2v.wv.get_vecattr(w, "count") for w in w2v.wv.index_to_key], np.float64)
    noise = counts**NOISE_EXPONENT / np.sum(counts**NOISE_EXPONENT)
    labels = np.zeros((len(centres), 1 + negative), np.float32)
    labels[:, 0] = 1.0  # column 0 is the true centre word, the rest are noise words
    # The guard of every other Keras training: a NaN or infinite loss stops the run in one line.
    # Not resumable, unlike fit's trainings: each epoch draws its windows and noise words from
    # one generator, and the run takes minutes.
    advice = f"lower cbow.keras.learning_rate (now {rate:g})"
    callbacks = [EpochLoss(on_epoch_loss), DivergenceGuard(None, advice)]
    for epoch in range(params.epochs):
        # One fit() call per epoch: fresh (seeded) shuffle, window reaches and noise words.
        order = rng.permutation(len(centres))
        x: Any = shrink_windows(contexts[order], params.window, rng)
        y = centres[order]
        if negative:
            noise_ids = rng.choice(vocab_size, size=(len(y), negative), p=noise).astype(np.int32)
            x, y = [x, np.concatenate([y[:, None], noise_ids], axis=1)], labels
        model.fit(
            x,
            y,
            batch_size=params.keras.batch_size,
            epochs=epoch + 1,
            initial_epoch=epoch,
            shuffle=False,
            callbacks=callbacks,
            verbose=0,
        )
    pack_weights(model, w2v)
    return w2v, model


def train_keras_cbow(
    sentences: list[list[str]],
    params: CBOW,
    seed: int,
    on_epoch_loss: Callable[[int, float], None] | None = None,
) -> Word2Vec:
    """Train CBOW in Keras; return a gensim ``Word2Vec`` (the same API as the gensim engine)."""
    return fit_keras_cbow(sentences, params, seed, on_epoch_loss)[0]


def pack_weights(model: keras.Model, w2v: Word2Vec) -> None:
    """Copy the trained tables into gensim: input rows (minus padding) and output vectors."""
    w2v.wv.vectors[:] = model.get_layer("context_embedding").get_weights()[0][1:]
    if "output_embedding" in {layer.name for layer in model.layers}:
        output = model.get_layer("output_embedding").get_weights()[0]
    else:
        output = model.get_layer("output").get_weights()[0].T  # Dense kernel is (vector, vocab)
    w2v.syn1neg = np.ascontiguousarray(output, dtype=np.float32)
    w2v.wv.fill_norms(force=True)


def _checked(sentences: list[list[str]], min_count: int) -> list[list[str]]:
    """The corpus, or a one-line error when no word is frequent enough to get a vector."""
    counts = Counter(word for sentence in sentences for word in sentence)
    if not any(count >= min_count for count in counts.values()):
        raise DataError(
            f"no word occurs {min_count} times in the corpus ({len(counts)} distinct words); "
            "lower cbow.min_count or use a larger text"
        )
    return sentences
