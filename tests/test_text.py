"""The CBOW lab's text preparation, step by step, on crafted text with a Gutenberg header."""

from __future__ import annotations

import pytest

from dllabs.data.text import (
    clean_sentence,
    sentence_method,
    split_sentences,
    stopword_set,
    strip_gutenberg,
    tokenize,
)
from dllabs.errors import DataError, ParamsError
from dllabs.params import Tokenize

GUTENBERG = """\
The Project Gutenberg eBook of A Tiny Tale

This eBook is for the use of anyone anywhere in the United States.

*** START OF THE PROJECT GUTENBERG EBOOK A TINY TALE ***

CHAPTER 1.

The White Rabbit ran past Alice in 1865. Alice\u2019s sister was reading a book!
Was it dull? The Rabbit\u2014very late\u2014took a watch out of its waistcoat-pocket.

[Illustration] Mr. Rabbit said: \u201cOh dear, oh dear!\u201d

*** END OF THE PROJECT GUTENBERG EBOOK A TINY TALE ***

Section 1. General Terms of Use and Redistributing Project Gutenberg electronic works
"""


def options(**changes) -> Tokenize:
    base = dict(
        strip_gutenberg=True,
        remove_special=True,
        remove_digits=True,
        remove_punctuation=True,
        lowercase=True,
        sentences="punkt",
        stopwords="bundled",
        extra_stopwords=[],
        min_token_length=2,
        min_sentence_tokens=2,
    )
    return Tokenize(**{**base, **changes})


def test_strip_gutenberg_keeps_only_the_book() -> None:
    body, stripped = strip_gutenberg(GUTENBERG)
    assert stripped
    assert "White Rabbit" in body
    assert "United States" not in body and "Redistributing" not in body and "START OF" not in body
    assert "Illustration" not in body


def test_strip_gutenberg_leaves_plain_text_alone() -> None:
    text = "Alice was beginning to get very tired.\n"
    assert strip_gutenberg(text) == (text, False)


def test_strip_gutenberg_older_marker_style() -> None:
    text = (
        "header\n*** START OF THIS PROJECT GUTENBERG EBOOK X ***\n"
        "body\nEnd of Project Gutenberg's X\nlicence"
    )
    body, stripped = strip_gutenberg(text)
    assert stripped and body.strip() == "body"


def test_sentences_span_wrapped_lines_and_keep_abbreviations() -> None:
    body, _ = strip_gutenberg(GUTENBERG)
    sentences = split_sentences(body, "punkt")
    assert "Was it dull?" in sentences
    joined = [s for s in sentences if s.startswith("The Rabbit")]
    assert joined and "waistcoat-pocket." in joined[0]  # a sentence that crossed a line break
    assert any("Mr. Rabbit said" in s for s in sentences)


def test_regex_and_line_sentence_splitters() -> None:
    assert split_sentences("One two. Three four! Five?\n\nSix", "regex") == [
        "One two.",
        "Three four!",
        "Five?",
        "Six",
    ]
    assert split_sentences("first line\n\nsecond line\n", "lines") == ["first line", "second line"]


def test_auto_takes_lee_articles_whole_and_splits_prose_with_punkt() -> None:
    assert sentence_method("auto", "lee") == "lines"
    assert sentence_method("auto", "alice") == "punkt"
    assert sentence_method("auto", "file") == "punkt"
    assert sentence_method("regex", "lee") == "regex"  # an explicit choice wins
    article = "First sentence here. Second sentence there.\nAnother article. Its quiet ending.\n"
    lee, report = tokenize(article, options(sentences="auto"), source="lee")
    assert report.sentence_method == "lines" and len(lee) == 2
    prose, report = tokenize(article, options(sentences="auto"), source="alice")
    assert report.sentence_method == "punkt" and len(prose) == 4


def test_each_cleaning_step() -> None:
    sentence = "Alice\u2019s 2 cats\u2014and [Illustration] \u00a7 The End!"
    assert clean_sentence(sentence, options()) == "alice s   cats   and  illustration    the end "
    kept_digits = clean_sentence(sentence, options(remove_digits=False))
    assert "2" in kept_digits
    kept_punct = clean_sentence(sentence, options(remove_punctuation=False))
    assert "'" in kept_punct and "!" in kept_punct and "\u00a7" not in kept_punct
    kept_case = clean_sentence(sentence, options(lowercase=False))
    assert "Alice" in kept_case
    kept_special = clean_sentence(sentence, options(remove_special=False, remove_punctuation=False))
    assert "\u00a7" in kept_special


def test_tokenize_end_to_end_removes_stopwords_digits_and_header() -> None:
    sentences, report = tokenize(GUTENBERG, options())
    words = {w for s in sentences for w in s}
    assert report.gutenberg_stripped
    assert {"white", "rabbit", "alice", "sister", "reading", "waistcoat", "pocket"} <= words
    assert not words & {"the", "was", "it", "of", "a", "s"}  # stop words and short tokens
    assert "1865" not in words and not any(ch.isdigit() for w in words for ch in w)
    assert "gutenberg" not in words and "redistributing" not in words
    assert all(w == w.lower() for w in words)
    assert report.stopwords_removed > 0
    assert report.tokens == sum(len(s) for s in sentences)
    assert report.vocabulary == len(words)


def test_extra_stopwords_and_minimum_lengths() -> None:
    sentences, _ = tokenize(GUTENBERG, options(extra_stopwords=["Rabbit"]))
    assert "rabbit" not in {w for s in sentences for w in s}
    sentences, _ = tokenize(GUTENBERG, options(min_sentence_tokens=4))
    assert all(len(s) >= 4 for s in sentences)


def test_stopword_sets() -> None:
    bundled = stopword_set("bundled")
    assert len(bundled) == 179 and {"the", "and", "don't", "wouldn"} <= bundled
    assert stopword_set("none") == frozenset()
    assert "rabbit" in stopword_set("none", ["Rabbit"])


def test_empty_corpus_is_a_clear_error() -> None:
    with pytest.raises(DataError, match="empty corpus"):
        tokenize("The and of. It is a. 1 2 3.", options())


def test_nltk_options_fail_clearly_without_nltk_data(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    import nltk

    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
    monkeypatch.setenv("NLTK_DATA", str(tmp_path))
    with pytest.raises(ParamsError, match=r"tokenize\.sentences: 'nltk' needs NLTK's punkt_tab"):
        split_sentences("One. Two.", "nltk")
    with pytest.raises(ParamsError, match=r"tokenize\.stopwords: 'nltk' needs NLTK's stopwords"):
        stopword_set("nltk")


def test_nltk_options_use_installed_nltk_data(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """With NLTK's data in place (here a minimal copy the test writes), both options read it."""
    import nltk
    from nltk.corpus.reader import WordListCorpusReader
    from nltk.corpus.util import LazyCorpusLoader

    (tmp_path / "corpora/stopwords").mkdir(parents=True)
    (tmp_path / "corpora/stopwords/english").write_text("the\nwhiskers\n", encoding="utf-8")
    punkt = tmp_path / "tokenizers/punkt_tab/english"
    punkt.mkdir(parents=True)
    (punkt / "abbrev_types.txt").write_text("dr\n", encoding="utf-8")  # "Dr." ends no sentence
    for name in ("collocations.tab", "sent_starters.txt", "ortho_context.tab"):
        (punkt / name).write_text("", encoding="utf-8")
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
    # fresh loaders, so neither this test nor another sees a copy cached by the other
    fresh = LazyCorpusLoader("stopwords", WordListCorpusReader, r"(?!README|\.).*")
    monkeypatch.setattr(nltk.corpus, "stopwords", fresh)
    nltk.tokenize._get_punkt_tokenizer.cache_clear()
    try:
        assert stopword_set("nltk", ["extra"]) == {"the", "whiskers", "extra"}
        text = "Dr. Smith saw the cat. It had whiskers."
        assert split_sentences(text, "nltk") == ["Dr. Smith saw the cat.", "It had whiskers."]
    finally:
        nltk.tokenize._get_punkt_tokenizer.cache_clear()
