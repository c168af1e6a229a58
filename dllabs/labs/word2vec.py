"""Word2Vec (CBOW) training and evaluation with gensim, for the word-embedding lab.

Training is deterministic with one worker, a fixed seed and a fixed ``PYTHONHASHSEED`` (gensim
hashes words when it seeds each vector; ``dvc.yaml`` sets the variable). Evaluation uses the sets
gensim ships: WordSim-353 and SimLex-999 (Spearman correlation of cosine similarity with human
scores, and the share of pairs out of vocabulary) and Google's analogy questions (accuracy on
the questions whose words are all known, and the share of questions that are).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from dllabs.errors import DataError
from dllabs.evaluation.stats import bootstrap, spearman, wilson
from dllabs.params import CBOW

WORDSIM, SIMLEX, ANALOGIES = "wordsim353.tsv", "simlex999.txt", "questions-words.txt"
# gensim's training stops reading a sentence at 10,000 words (MAX_WORDS_IN_BATCH in its compiled
# loop) without a word of warning, so longer ones are cut into pieces of at most this many.
MAX_SENTENCE_WORDS = 10_000
# The fewest words evaluate_cbow can evaluate: its PCA map projects onto two axes, which takes at
# least two points. Probes and similarity scores cope with any vocabulary.
MIN_VOCABULARY = 2


def read_corpus(path: str | Path) -> list[list[str]]:
    """One sentence per line, tokens separated by spaces (what ``tokenize`` writes).

    Read a line at a time, each word kept once however often it occurs: a list then holds 8 bytes
    per token where a string of its own took about 60, and the text is never held whole.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: not found; run the tokenize stage (dvc repro)")
    words: dict[str, str] = {}
    sentences: list[list[str]] = []
    try:
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                for piece in line.splitlines():  # the line ends splitlines() knows, as before
                    if tokens := piece.split():
                        sentences.append([words.setdefault(word, word) for word in tokens])
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path}: not UTF-8 text ({exc.reason}); expected tokenize's corpus"
        ) from None
    if not sentences:
        raise DataError(f"{path}: empty corpus")
    return sentences


def split_long_sentences(
    sentences: list[list[str]], limit: int = MAX_SENTENCE_WORDS
) -> tuple[list[list[str]], int]:
    """Sentences of at most ``limit`` words, and how many were split to get there.

    A text without sentence ends (one long line, a list of words) becomes one huge "sentence";
    cut into pieces, every word is trained on, where gensim would learn from its first 10,000.
    """
    split = 0
    pieces: list[list[str]] = []
    for sentence in sentences:
        if len(sentence) <= limit:
            pieces.append(sentence)
            continue
        split += 1
        pieces += [sentence[start : start + limit] for start in range(0, len(sentence), limit)]
    return pieces, split


def check_vocabulary(sentences: list[list[str]], min_count: int, corpus: str | Path) -> None:
    """Refuse, before training, a ``cbow.min_count`` that leaves too few words to evaluate: the
    failure would come two stages later, after DVC had deleted the lab's metrics and report."""
    counts = Counter(word for sentence in sentences for word in sentence)
    kept = sum(1 for count in counts.values() if count >= min_count)
    if not kept:
        raise DataError(_no_frequent_word(min_count, len(counts)))
    if kept < MIN_VOCABULARY:
        raise DataError(
            f"cbow.min_count = {min_count} leaves {kept} word{'' if kept == 1 else 's'} in the "
            f"vocabulary of {corpus} ({len(counts)} distinct words); evaluate_cbow needs at least "
            f"{MIN_VOCABULARY} (its PCA map has two axes); lower cbow.min_count or use a larger "
            "text"
        )


def _no_frequent_word(min_count: int, distinct: int) -> str:
    return (
        f"no word occurs {min_count} times in the corpus ({distinct} distinct words); "
        "lower cbow.min_count or use a larger text"
    )


def train_cbow(
    sentences: list[list[str]],
    params: CBOW | None,
    seed: int,
    on_epoch_loss: Callable[[int, float], None] | None = None,
) -> Any:
    """Train gensim Word2Vec in CBOW mode (``sg=0``); ``params=None`` keeps gensim's defaults.

    Sentences longer than gensim reads are split first (:func:`split_long_sentences`).
    """
    from gensim.models import Word2Vec
    from gensim.models.callbacks import CallbackAny2Vec

    class EpochLoss(CallbackAny2Vec):
        """gensim reports a running total within one train() call; log each epoch's share."""

        def __init__(self) -> None:
            self.epoch, self.total = 0, 0.0

        def on_epoch_end(self, model: Any) -> None:
            total = model.get_latest_training_loss()
            self.epoch += 1
            if on_epoch_loss is not None:
                on_epoch_loss(self.epoch, total - self.total)
            self.total = total

    options: dict[str, Any] = {"sg": 0, "seed": seed, "workers": 1, "compute_loss": True}
    if params is not None:
        options.update(
            vector_size=params.vector_size,
            window=params.window,
            min_count=params.min_count,
            negative=params.negative,
            hs=int(params.hs),
            sample=params.sample,
            alpha=params.alpha,
            epochs=params.epochs,
            workers=params.workers,
        )
    counts = Counter(word for sentence in sentences for word in sentence)
    min_count = options.get("min_count", 5)  # gensim's default
    if not any(count >= min_count for count in counts.values()):
        raise DataError(_no_frequent_word(min_count, len(counts)))
    sentences, _ = split_long_sentences(sentences)
    return Word2Vec(sentences, callbacks=[EpochLoss()], **options)


def evaluate_vectors(vectors: Any, eval_dir: str | Path) -> dict[str, dict[str, Any]]:
    """Word-similarity and analogy scores, each with its coverage (small corpora cover little),
    the number of items scored (``n``) and a 95% interval: a seeded bootstrap over word pairs for
    Spearman's rho, Wilson for analogy accuracy.
    """
    from scipy.stats import spearmanr

    eval_dir = Path(eval_dir)
    scores: dict[str, dict[str, Any]] = {}
    for name, file in (("wordsim353", WORDSIM), ("simlex999", SIMLEX)):
        gold, model, oov = word_pair_similarities(vectors, eval_dir / file)
        entry: dict[str, Any] = {"n": len(gold), "oov": round(oov, 6)}
        if len(gold) < 3:  # too few pairs in the vocabulary for a correlation
            scores[name] = {**entry, "spearman": None}
            continue

        entry["spearman"] = _round(float(spearmanr(gold, model)[0]))
        entry["ci95"] = {"spearman": bootstrap(spearman, gold, model)}
        scores[name] = entry
    accuracy, sections = vectors.evaluate_word_analogies(str(eval_dir / ANALOGIES))
    total = next((s for s in sections if s["section"] == "Total accuracy"), sections[-1])
    correct, answered = len(total["correct"]), len(total["correct"]) + len(total["incorrect"])
    questions = sum(
        1
        for line in (eval_dir / ANALOGIES).read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith(":")
    )
    scores["analogy"] = {
        "n": answered,
        "accuracy": _round(accuracy) if answered else 0.0,
        "coverage": round(answered / questions, 6) if questions else 0.0,
    }
    if answered:
        scores["analogy"]["ci95"] = {"accuracy": wilson(correct, answered)}
    return scores


def word_pair_similarities(vectors: Any, path: Path) -> tuple[np.ndarray, np.ndarray, float]:
    """Human scores and cosine similarities of the pairs in the vocabulary, and the share of
    pairs out of it, by gensim's own rules (``evaluate_word_pairs``: tab-separated, ``#``
    comments, case-insensitive, the most frequent spelling wins), so the rho matches gensim's.
    """
    known: dict[str, str] = {}
    for key in reversed(vectors.index_to_key[:300000]):
        known[key.upper()] = key
    gold, model, oov = [], [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line or line.startswith("#"):
            continue
        parts = line.upper().split("\t")
        try:
            a, b, score = parts[0], parts[1], float(parts[2])
        except (IndexError, ValueError):
            continue
        if len(parts) != 3:
            continue
        if a not in known or b not in known:
            oov += 1
            continue
        gold.append(score)
        model.append(float(vectors.similarity(known[a], known[b])))
    total = len(gold) + oov
    return np.asarray(gold), np.asarray(model), (oov / total if total else 1.0)


def _round(value: Any) -> float:
    value = float(value)
    return round(value, 6) if np.isfinite(value) else 0.0


def similar_words(model: Any, word: str, topn: int) -> list[tuple[str, float]] | None:
    """``most_similar`` by cosine; ``None`` for a word not in the vocabulary."""
    if word not in model.wv.key_to_index:
        return None
    return [(w, float(s)) for w, s in model.wv.most_similar(word, topn=topn)]


def centre_words(
    model: Any, context: list[str], topn: int
) -> tuple[list[tuple[str, float]] | None, list[str]]:
    """``predict_output_word`` for the known words of ``context``, and the unknown ones.

    ``None`` when no context word is known; ``[]`` when the model cannot predict (gensim does it
    only for negative sampling, and raises for a model trained with hierarchical softmax alone).
    """
    known = [w for w in context if w in model.wv.key_to_index]
    missing = [w for w in context if w not in model.wv.key_to_index]
    if not known:
        return None, missing
    if not model.negative:
        return [], missing
    predicted = model.predict_output_word(known, topn=topn) or []
    return [(w, float(p)) for w, p in predicted], missing


def analogy(
    model: Any, positive: list[str], negative: list[str], topn: int
) -> tuple[list[tuple[str, float]] | None, list[str]]:
    """``most_similar(positive, negative)`` (``king - man + woman``: positive king and woman,
    negative man), or ``None`` and the words not in the vocabulary."""
    missing = [w for w in [*positive, *negative] if w not in model.wv.key_to_index]
    if missing:
        return None, missing
    found = model.wv.most_similar(positive=positive, negative=negative, topn=topn)
    return [(w, float(s)) for w, s in found], []


def probe_report(model: Any, probe_words: list[str], probe_contexts: list[list[str]]) -> str:
    """Markdown: ``most_similar`` for each probe word, ``predict_output_word`` for each context.

    Words missing from the vocabulary are reported as such, not raised.
    """
    lines = ["# CBOW probes", "", "## Nearest words (`most_similar`, top 10, cosine)", ""]
    for word in probe_words:
        similar = similar_words(model, word, 10)
        if similar is None:
            lines += [f"- **{word}**: not in the vocabulary (below `cbow.min_count` or absent)", ""]
            continue
        lines += [f"- **{word}**: {', '.join(f'{w} ({s:.3f})' for w, s in similar)}", ""]
    lines += ["## Predicted centre words (`predict_output_word`, top 10)", ""]
    for context in probe_contexts:
        shown = " ".join(context)
        predicted, missing = centre_words(model, context, 10)
        note = f" (not in the vocabulary, ignored: {', '.join(missing)})" if missing else ""
        if predicted is None:
            lines += [f"- **{shown}**: no context word is in the vocabulary", ""]
            continue
        words = ", ".join(f"{w} ({p:.3f})" for w, p in predicted)
        lines += [f"- **{shown}**{note}: {words or 'no prediction (needs negative sampling)'}", ""]
    return "\n".join(lines)


def pca_plot(vectors: Any, n_words: int, path: str | Path, title: str) -> None:
    """2-D PCA of the ``n_words`` most frequent words' vectors, each point labelled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA

    words = vectors.index_to_key[:n_words]
    points = PCA(n_components=2, random_state=0).fit_transform(
        np.stack([vectors[w] for w in words])
    )
    fig, ax = plt.subplots(figsize=(10, 8))
    ax.scatter(points[:, 0], points[:, 1], s=8, alpha=0.6)
    for word, (x, y) in zip(words, points, strict=True):
        ax.annotate(word, (x, y), fontsize=7, alpha=0.8)
    ax.set_title(title)
    ax.set_xlabel("principal component 1")
    ax.set_ylabel("principal component 2")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
