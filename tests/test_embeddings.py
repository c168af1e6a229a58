"""The word-embedding lab: determinism, tiny corpora, probes with unknown words, high OOV."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

from dllabs.data.sources import write_text_eval
from dllabs.errors import DataError, ParamsError
from dllabs.labs.word2vec import (
    evaluate_vectors,
    probe_report,
    read_corpus,
    train_cbow,
    word_pair_similarities,
)
from dllabs.params import CBOW, validate_params
from tests.helpers.data import TINY_CORPUS as CORPUS


@pytest.fixture
def cbow(default_params: dict) -> CBOW:
    return CBOW(**{**default_params["cbow"], "epochs": 5, "vector_size": 10, "min_count": 1})


def test_same_seed_same_vectors(cbow: CBOW) -> None:
    """Across processes gensim also needs a fixed PYTHONHASHSEED (dvc.yaml sets it)."""
    first = train_cbow(CORPUS, cbow, seed=3)
    second = train_cbow(CORPUS, cbow, seed=3)
    other = train_cbow(CORPUS, cbow, seed=4)
    assert np.array_equal(first.wv.vectors, second.wv.vectors)
    assert not np.array_equal(first.wv.vectors, other.wv.vectors)
    assert first.sg == 0  # CBOW, not skip-gram


def test_epoch_losses_are_reported_and_decrease(cbow: CBOW) -> None:
    losses: list[float] = []
    train_cbow(
        CORPUS, CBOW(**{**cbow.model_dump(), "epochs": 10}), 0, lambda e, loss: losses.append(loss)
    )
    assert len(losses) == 10 and all(loss > 0 for loss in losses)
    assert losses[-1] < losses[0]


def test_corpus_with_no_frequent_word_is_a_clear_error(cbow: CBOW) -> None:
    with pytest.raises(DataError, match="no word occurs 5 times"):
        train_cbow([["one", "two"]], CBOW(**{**cbow.model_dump(), "min_count": 5}), 0)


def test_read_corpus(tmp_path: Path) -> None:
    (tmp_path / "c.txt").write_text("a b c\n\nd e\n")
    assert read_corpus(tmp_path / "c.txt") == [["a", "b", "c"], ["d", "e"]]
    (tmp_path / "odd.txt").write_text("a b\x0cc d\r\ne\u2028f\n", newline="")
    assert read_corpus(tmp_path / "odd.txt") == [["a", "b"], ["c", "d"], ["e"], ["f"]]


def test_read_corpus_keeps_each_word_once(tmp_path: Path) -> None:
    """A word repeated across the corpus is one string: a list holds 8 bytes per token, where
    a string for each took about 60 (train_cbow on a 29 MB corpus: 557 MB, now 280 MB)."""
    (tmp_path / "c.txt").write_text("".join(f"king rules land{i % 7}\n" for i in range(50)))
    sentences = read_corpus(tmp_path / "c.txt")
    assert len({id(word) for sentence in sentences for word in sentence}) == 1 + 1 + 7
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(DataError, match="empty corpus"):
        read_corpus(tmp_path / "empty.txt")


def test_probes_report_unknown_words_instead_of_failing(cbow: CBOW) -> None:
    model = train_cbow(CORPUS, cbow, seed=0)
    report = probe_report(
        model, ["king", "unicorn"], [["the", "rules"], ["flying", "saucer"], ["walks", "spaceship"]]
    )
    assert "**unicorn**: not in the vocabulary" in report
    assert "**king**: " in report and "(0." in report.split("**king**: ")[1].splitlines()[0]
    assert "**flying saucer**: no context word is in the vocabulary" in report
    assert "not in the vocabulary, ignored: spaceship" in report


def test_evaluation_with_high_oov(tmp_path: Path, cbow: CBOW) -> None:
    write_text_eval(tmp_path)
    scores = evaluate_vectors(train_cbow(CORPUS, cbow, seed=0).wv, tmp_path)
    assert scores["wordsim353"]["oov"] > 0.95 and scores["simlex999"]["oov"] > 0.95
    for name in ("wordsim353", "simlex999"):
        pairs = scores[name]
        assert (pairs["spearman"] is None) == (pairs["n"] < 3)  # no correlation from 2 pairs
        if pairs["spearman"] is not None:
            assert -1.0 <= pairs["spearman"] <= 1.0
    assert 0.0 <= scores["analogy"]["coverage"] < 0.05
    assert 0.0 <= scores["analogy"]["accuracy"] <= 1.0


def test_word_pair_scores_match_gensims_own_evaluation(tmp_path: Path, cbow: CBOW) -> None:
    """The rho behind the bootstrap interval is the one gensim's evaluate_word_pairs gives."""
    write_text_eval(tmp_path)
    vectors = train_cbow(CORPUS * 4, cbow, seed=0).wv
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text(
        "# word1\tword2\tscore\nKing\tqueen\t8.0\nman\twoman\t7.5\nking\tdog\t1.0\n"
        "queen\tland\t2.0\nman\tzebra\t3.0\nbroken line\ndog\tland\t1.5\n"
    )
    _, rho, oov = vectors.evaluate_word_pairs(str(pairs))
    gold, model, share = word_pair_similarities(vectors, pairs)
    assert len(gold) == 5 and share == pytest.approx(oov / 100)
    assert spearmanr(gold, model)[0] == pytest.approx(rho[0], abs=1e-12)
    scores = evaluate_vectors(vectors, tmp_path)
    ci = scores["wordsim353"].get("ci95", {}).get("spearman")
    if ci:
        assert ci["low"] <= scores["wordsim353"]["spearman"] <= ci["high"]


def test_cbow_needs_an_output_layer(default_params: dict) -> None:
    params = copy.deepcopy(default_params)
    params["cbow"].update(negative=0, hs=False)
    with pytest.raises(ParamsError, match=r"cbow\.negative is 0 and cbow\.hs is false"):
        validate_params(params)
