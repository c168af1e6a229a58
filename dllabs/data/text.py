"""The CBOW lab's text preparation, offline.

The lab's steps: strip the Project Gutenberg header and footer, remove special characters and
digits, remove punctuation, lowercase, split into sentences and words, remove stop words.

Sentence boundaries need the punctuation that cleaning removes, so sentences are split first and
each sentence is then cleaned and tokenized. NLTK's data packages (``punkt``, ``stopwords``) cannot
be downloaded here, so the defaults need none: a Punkt sentence splitter *trained on the corpus
itself* (unsupervised, as Punkt was designed) and a bundled copy of NLTK's English stop-word list.
``sentences: nltk`` and ``stopwords: nltk`` use NLTK's data where it is installed.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources

from dllabs.errors import DataError, ParamsError
from dllabs.params import Tokenize

_START = re.compile(r"^\s*\*{3}\s*START OF (?:THE|THIS) PROJECT GUTENBERG E-?BOOK.*$", re.I | re.M)
_END = re.compile(
    r"^\s*(?:\*{3}\s*END OF (?:THE|THIS) PROJECT GUTENBERG E-?BOOK"
    r"|End of (?:the )?Project Gutenberg).*$",
    re.I | re.M,
)
_ILLUSTRATION = re.compile(r"\[Illustration[^\]]*\]", re.I)
# Typographic characters mapped to their ASCII meaning before "special" characters are dropped.
_ASCII_PUNCT = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"',
                              "\u2013": "-", "\u2014": " - ", "\u2026": "..."})  # fmt: skip
_PUNCTUATION = re.compile(f"[{re.escape(string.punctuation)}]")
_DIGITS = re.compile(r"\d+")
_WORDS = re.compile(r"\w+(?:['-]\w+)*|[^\w\s]")
_REGEX_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]*[A-Z0-9])")


@dataclass
class TokenizeReport:
    """Counts that describe what each step did (written next to the corpus)."""

    gutenberg_stripped: bool = False
    sentence_method: str = ""
    characters_in: int = 0
    sentences_found: int = 0
    sentences_kept: int = 0
    tokens_before_stopwords: int = 0
    stopwords_removed: int = 0
    short_tokens_removed: int = 0
    tokens: int = 0
    vocabulary: int = 0
    top_words: list[tuple[str, int]] = field(default_factory=list)


def strip_gutenberg(text: str) -> tuple[str, bool]:
    """Text between the Gutenberg START and END markers, without ``[Illustration]`` tags.

    Returns the text unchanged, and ``False``, when it has neither markers nor tags.
    """
    text, tags = _ILLUSTRATION.subn(" ", text)
    start = _START.search(text)
    end = _END.search(text, start.end() if start else 0)
    if not start and not end:
        return text, tags > 0
    body = text[start.end() if start else 0 : end.start() if end else len(text)]
    return body, True


def sentence_method(option: str, source: str) -> str:
    """Resolve ``auto``: Lee has one news article per line, each line a unit; prose gets Punkt.

    gensim's own Lee tutorial trains on whole articles, and windows that span an article's sentences
    give clearly better word similarities on this small corpus than Punkt's sentences do.
    """
    if option != "auto":
        return option
    return "lines" if source == "lee" else "punkt"


def split_sentences(text: str, method: str) -> list[str]:
    """Split raw text into sentences; paragraphs' hard line wraps are joined first."""
    if method == "lines":
        return [line.strip() for line in text.splitlines() if line.strip()]
    paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", text) if p.strip()]
    if method == "regex":
        return [s for p in paragraphs for s in _REGEX_SENTENCE_END.split(p) if s.strip()]
    if method == "punkt":
        from nltk.tokenize.punkt import PunktSentenceTokenizer

        splitter = PunktSentenceTokenizer("\n\n".join(paragraphs))  # trained on this corpus
        return [s for p in paragraphs for s in splitter.tokenize(p)]
    if method == "nltk":
        import nltk

        try:
            return [s for p in paragraphs for s in nltk.sent_tokenize(p)]
        except LookupError:
            raise ParamsError(
                "tokenize.sentences: 'nltk' needs NLTK's punkt_tab data, which is not installed "
                "(python -m nltk.downloader punkt_tab); use 'punkt' to train Punkt on the corpus"
            ) from None
    raise ParamsError(f"tokenize.sentences: unknown method {method!r}")


def stopword_set(option: str, extra: Iterable[str] = ()) -> frozenset[str]:
    """The stop words to drop: the bundled English list, NLTK's installed list, or none."""
    words: set[str] = set()
    if option == "bundled":
        text = resources.files("dllabs").joinpath("data/stopwords_en.txt").read_text("utf-8")
        words = {w.strip() for w in text.splitlines() if w.strip() and not w.startswith("#")}
    elif option == "nltk":
        try:
            from nltk.corpus import stopwords

            words = set(stopwords.words("english"))
        except LookupError:
            raise ParamsError(
                "tokenize.stopwords: 'nltk' needs NLTK's stopwords data, which is not installed "
                "(python -m nltk.downloader stopwords); use 'bundled'"
            ) from None
    elif option != "none":
        raise ParamsError(f"tokenize.stopwords: unknown option {option!r}")
    return frozenset(w.lower() for w in (*words, *extra))


def clean_sentence(sentence: str, options: Tokenize) -> str:
    """Apply the lab's character-level steps to one sentence."""
    text = sentence.translate(_ASCII_PUNCT)
    if options.remove_special:
        text = "".join(
            ch if ch.isalnum() or ch.isspace() or ch in string.punctuation else " "
            for ch in unicodedata.normalize("NFKC", text)
        )
    if options.remove_digits:
        text = _DIGITS.sub(" ", text)
    if options.remove_punctuation:
        text = _PUNCTUATION.sub(" ", text)
    if options.lowercase:
        text = text.lower()
    return text


def tokenize(
    text: str, options: Tokenize, source: str = "file"
) -> tuple[list[list[str]], TokenizeReport]:
    """Clean ``text`` into sentences of tokens, with a report of what each step removed."""
    report = TokenizeReport(characters_in=len(text))
    if options.strip_gutenberg:
        text, report.gutenberg_stripped = strip_gutenberg(text)
    stop = stopword_set(options.stopwords, options.extra_stopwords)
    counts: Counter[str] = Counter()
    corpus: list[list[str]] = []
    report.sentence_method = sentence_method(options.sentences, source)
    sentences = split_sentences(text, report.sentence_method)
    report.sentences_found = len(sentences)
    for sentence in sentences:
        words = _WORDS.findall(clean_sentence(sentence, options))
        report.tokens_before_stopwords += len(words)
        kept = []
        for word in words:
            if word.lower() in stop:
                report.stopwords_removed += 1
            elif len(word) < options.min_token_length:
                report.short_tokens_removed += 1
            else:
                kept.append(word)
        if len(kept) >= options.min_sentence_tokens:
            corpus.append(kept)
            counts.update(kept)
    report.sentences_kept = len(corpus)
    report.tokens = sum(counts.values())
    report.vocabulary = len(counts)
    report.top_words = counts.most_common(20)
    if not corpus:
        raise DataError(
            f"the text has no sentence with at least {options.min_sentence_tokens} tokens left "
            "after cleaning (empty corpus)"
        )
    return corpus, report
