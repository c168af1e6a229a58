"""The text lab's hostile inputs (issue 31, items 12, 18 and 19), each made by its test.

- A text of any size is tokenized in memory that does not grow with it, and into the corpus the
  whole text gave: Gutenberg's markers found by a first scan, paragraphs split one at a time
  (a long one once it reaches a bound), Punkt trained on a bounded sample.
- A CBOW ``model.json`` whose settings are of the wrong type or out of range is one line.
- A ``cbow.min_count`` that leaves fewer words than ``evaluate_cbow`` can map is refused by
  ``train_cbow`` before it trains, so that no stage after it fails and DVC deletes nothing.
"""

from __future__ import annotations

import json
import re
import string
import subprocess
import sys
import unicodedata
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from dllabs.data import text as text_module
from dllabs.data.text import (
    clean_sentence,
    sentence_method,
    split_sentences,
    stopword_set,
    tokenize,
)
from dllabs.errors import DataError
from dllabs.labs.word2vec import probe_report, train_cbow
from dllabs.models.word2vec_files import load_word2vec, save_vectors, save_word2vec
from dllabs.params import CBOW, Tokenize
from stages import evaluate_cbow as evaluate_stage
from stages import train_cbow as train_stage
from tests.helpers.data import TINY_CORPUS
from tests.helpers.repo import REPO
from tests.helpers.stages import fails
from tests.memory import measure, python
from tests.test_text import options

TRAIN_ARGS = ["--corpus", "corpus.txt", "--model", "models/cbow", "--plots", "plots/cbow"]
EVALUATE_ARGS = [
    "--model",
    "models/cbow",
    "--text-eval",
    "text_eval",
    "--metrics",
    "metrics/cbow.json",
    "--report",
    "reports/cbow_probes.md",
    "--plots",
    "plots/evaluate/cbow",
]

# --- a Gutenberg-style book, made here ------------------------------------------------------------

STOP = [
    "the",
    "and",
    "of",
    "to",
    "a",
    "in",
    "was",
    "she",
    "he",
    "it",
    "that",
    "with",
    "had",
    "as",
    "for",
    "her",
    "his",
    "not",
    "at",
    "but",
    "on",
    "be",
    "you",
    "all",
    "so",
]
SYLLABLES = [
    "ka",
    "lo",
    "mi",
    "ra",
    "sen",
    "tu",
    "vel",
    "dor",
    "an",
    "shi",
    "pre",
    "qua",
    "bel",
    "fin",
    "gar",
    "hol",
    "ix",
    "jor",
    "nem",
    "op",
    "sta",
    "wil",
    "ye",
    "zu",
]
HEADER = (
    "The Project Gutenberg eBook of A Generated Tale\n\n"
    "This eBook is for the use of anyone anywhere in the United States.\n\n"
    "Title: A Generated Tale\n\n"
    "*** START OF THE PROJECT GUTENBERG EBOOK A GENERATED TALE ***\n\n"
)
FOOTER = (
    "\n*** END OF THE PROJECT GUTENBERG EBOOK A GENERATED TALE ***\n\n"
    "Section 1. General Terms of Use and Redistributing Project Gutenberg works\n"
)


def gutenberg_book(megabytes: float, seed: int = 0, blank_lines: bool = True) -> str:
    """About ``megabytes`` of prose between Gutenberg's markers: Zipf-distributed made-up words
    and stop words in hard-wrapped paragraphs, with what trips sentence splitters and cleaners
    (``Mr.``, initials, numbers, quotes, dashes, ellipses, accents, multi-line ``[Illustration]``
    captions). ``blank_lines=False`` leaves no blank line between paragraphs: one paragraph."""
    rng = np.random.default_rng(seed)
    words: list[str] = []
    for i, length in enumerate(rng.integers(1, 4, 20_000)):
        word = "".join(SYLLABLES[j] for j in rng.integers(0, len(SYLLABLES), length))
        words.append(word + ("\u00e9" if i % 97 == 0 else ""))
    vocabulary = STOP + words
    odds = 1.0 / np.arange(1, len(vocabulary) + 1) ** 1.05
    odds, drawn = odds / odds.sum(), len(vocabulary)
    pool: list[str] = []
    used = 0
    parts, size, chapter = [HEADER], len(HEADER), 0
    gap = "\n\n" if blank_lines else "\n"
    while size < megabytes * 2**20:
        chapter += 1
        chunk = [f"CHAPTER {chapter}.{gap}"]
        for _ in range(int(rng.integers(20, 60))):
            paragraph = []
            for _ in range(int(rng.integers(1, 8))):
                n = int(rng.integers(4, 28))
                if used + n > len(pool):
                    pool, used = [vocabulary[k] for k in rng.choice(drawn, 2**17, p=odds)], 0
                sentence, used = pool[used : used + n], used + n
                sentence[0] = sentence[0].capitalize()
                roll, at = rng.random(), int(rng.integers(0, n))
                if roll < 0.08:
                    sentence.insert(at, "Mr. " + sentence[-1].capitalize())
                elif roll < 0.12:
                    sentence.insert(at, "Dr. J. " + sentence[-1].capitalize())
                elif roll < 0.16:
                    sentence.insert(at, str(int(rng.integers(1, 2000))))
                elif roll < 0.2:
                    sentence[at] += ","
                elif roll < 0.23:
                    sentence[at] += "\u2014"
                end = str(rng.choice([".", ".", ".", "?", "!", "...", '"']))
                said = " ".join(sentence)
                paragraph.append(f"\u201c{said}.\u201d" if end == '"' else said + end)
            lines, line = [], ""
            for word in " ".join(paragraph).split(" "):
                if line and len(line) + 1 + len(word) > 72:
                    lines.append(line)
                    line = word
                else:
                    line = f"{line} {word}" if line else word
            chunk.append("\n".join([*lines, line]) + gap)
            if rng.random() < 0.03:
                chunk.append(f"[Illustration: a caption that spans\n    two lines]{gap}")
        parts.append("".join(chunk))
        size += len(parts[-1])
    return "".join([*parts, FOOTER])


# Odd but valid layouts: whitespace-only lines of every kind, line ends that only Python's
# splitlines() reads as such, CRLF, a tag across a blank line, tags in tags, and (at the end of
# the book) a tag never closed.
ODDITIES = (
    "\n \t \n\x0c\nA line with a form\x0cfeed and a\u2028line separator. Next one!\r\n"
    "\u3000\r\n[Illustration: a tag\n\nacross a blank line] Words after it. More words here.\n\n"
    "The tag [ILLUSTRATION] in capitals, and [Illustration: nested [Illustration: x] here].\n\n"
    + " ".join(f"Line {i} of a long one, {i} stops in it." for i in range(100))
    + "\n\n"
)
UNCLOSED = "\nThe end has an open [Illustration: and nothing after it\n"


# --- the whole-text algorithm before streaming: the reference the corpus must match ---------------

_START = re.compile(r"^\s*\*{3}\s*START OF (?:THE|THIS) PROJECT GUTENBERG E-?BOOK.*$", re.I | re.M)
_END = re.compile(
    r"^\s*(?:\*{3}\s*END OF (?:THE|THIS) PROJECT GUTENBERG E-?BOOK"
    r"|End of (?:the )?Project Gutenberg).*$",
    re.I | re.M,
)
_ILLUSTRATION = re.compile(r"\[Illustration[^\]]*\]", re.I)
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]*[A-Z0-9])")
_WORDS = re.compile(r"\w+(?:['-]\w+)*|[^\w\s]")


def whole_text_corpus(text: str, opts: Tokenize, source: str = "file") -> tuple[str, dict]:
    """The corpus and counts as ``tokenize`` made them from the whole text in memory."""
    characters = len(text)
    stripped = False
    if opts.strip_gutenberg:
        text, tags = _ILLUSTRATION.subn(" ", text)
        start = _START.search(text)
        end = _END.search(text, start.end() if start else 0)
        stripped = bool(start or end or tags)
        if start or end:
            text = text[start.end() if start else 0 : end.start() if end else len(text)]
    method = sentence_method(opts.sentences, source)
    if method == "lines":
        sentences = [line.strip() for line in text.splitlines() if line.strip()]
    else:
        paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", text) if p.strip()]
        if method == "regex":
            sentences = [s for p in paragraphs for s in _SENTENCE_END.split(p) if s.strip()]
        else:
            from nltk.tokenize.punkt import PunktSentenceTokenizer

            splitter = PunktSentenceTokenizer("\n\n".join(paragraphs))
            sentences = [s for p in paragraphs for s in splitter.tokenize(p)]
    stop = stopword_set(opts.stopwords, opts.extra_stopwords)
    counts: Counter[str] = Counter()
    corpus, before, stopped, short = [], 0, 0, 0
    for sentence in sentences:
        words = _WORDS.findall(clean_sentence(sentence, opts))
        before += len(words)
        kept = [w for w in words if w.lower() not in stop and len(w) >= opts.min_token_length]
        stopped += sum(1 for w in words if w.lower() in stop)
        short += sum(1 for w in words if w.lower() not in stop and len(w) < opts.min_token_length)
        if len(kept) >= opts.min_sentence_tokens:
            corpus.append(" ".join(kept) + "\n")
            counts.update(kept)
    report = {
        "gutenberg_stripped": stripped,
        "sentence_method": method,
        "characters_in": characters,
        "sentences_found": len(sentences),
        "sentences_kept": len(corpus),
        "tokens_before_stopwords": before,
        "stopwords_removed": stopped,
        "short_tokens_removed": short,
        "tokens": sum(counts.values()),
        "vocabulary": len(counts),
        "top_words": counts.most_common(20),
    }
    return "".join(corpus), report


def streamed_corpus(path: Path, opts: Tokenize, source: str = "file") -> tuple[str, dict]:
    from dllabs.data.text import tokenize_file

    written: list[str] = []
    report = tokenize_file(path, opts, source, written.append)
    return "".join(written), vars(report)


# --- 12. any size, bounded memory, the same corpus ------------------------------------------------


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bounds small enough that this test's texts cross every one of them many times; paragraphs
    still longer than its longest sentence (819 characters), which would be cut at a line end."""
    monkeypatch.setattr(text_module, "PARAGRAPH_CHARS", 1000)
    monkeypatch.setattr(text_module, "_PIECE_CHARS", 40)
    monkeypatch.setattr(text_module, "_WRITE_CHARS", 100)


@pytest.mark.parametrize("method", ["punkt", "regex", "lines"])
@pytest.mark.parametrize("blank_lines", [True, False], ids=["paragraphs", "one-paragraph"])
@pytest.mark.parametrize("blocks", ["default", "small"])
def test_streaming_gives_the_corpus_the_whole_text_gave(
    tmp_path: Path, request, method: str, blank_lines: bool, blocks: str
) -> None:
    """Block boundaries (a paragraph split early, a sentence cleaned in pieces, the corpus written
    in blocks) leave the corpus and its counts byte for byte as the whole text gave them."""
    if blocks == "small":
        request.getfixturevalue("small_blocks")
    text = gutenberg_book(0.15, seed=3, blank_lines=blank_lines)
    text = text.replace("CHAPTER 2.", "CHAPTER 2." + ODDITIES).replace(FOOTER, UNCLOSED + FOOTER)
    path = tmp_path / "book.txt"
    path.write_bytes(text.encode("utf-8"))
    opts = options(sentences=method)
    expected = whole_text_corpus(path.read_text(encoding="utf-8-sig"), opts)
    got = streamed_corpus(path, opts)
    assert got[0] == expected[0]
    assert json.loads(json.dumps(got[1])) == json.loads(json.dumps(expected[1]))
    assert got[1]["gutenberg_stripped"] and got[1]["sentences_kept"] > 100


def test_the_lee_corpus_is_tokenized_as_the_whole_text_was(tmp_path: Path, default_params) -> None:
    """The default corpus: dvc.lock pins its bytes, which streaming must not change."""
    from gensim.test.utils import datapath

    opts = Tokenize(**default_params["tokenize"])
    expected = whole_text_corpus(
        Path(datapath("lee_background.cor")).read_text("utf-8"), opts, "lee"
    )
    assert streamed_corpus(Path(datapath("lee_background.cor")), opts, "lee") == expected


def test_markers_crlf_and_a_bom_are_read_as_the_whole_text_read_them(tmp_path: Path) -> None:
    text = "\ufeff" + gutenberg_book(0.05, seed=5).replace("\n", "\r\n")
    path = tmp_path / "book.txt"
    path.write_bytes(text.encode("utf-8"))
    opts = options(sentences="regex")
    assert streamed_corpus(path, opts) == whole_text_corpus(path.read_text("utf-8-sig"), opts)
    older = "licence\n*** START OF THIS PROJECT GUTENBERG EBOOK X ***\nOne two three. Four five.\n"
    path.write_text(older + "End of Project Gutenberg's X\nfooter words here\n", encoding="utf-8")
    assert streamed_corpus(path, opts)[0] == "one two three\nfour five\n"


def test_cleaning_with_a_table_keeps_and_drops_what_cleaning_by_character_did() -> None:
    """Every code point: the translate table gives what the per-character join gave."""
    typographic = "\u2018\u2019\u201c\u201d\u2013\u2014\u2026"  # mapped to ASCII before
    everything = "".join(
        chr(c) for c in range(0x110000) if not 0xD800 <= c < 0xE000 and chr(c) not in typographic
    )
    normal = unicodedata.normalize("NFKC", everything)
    by_character = "".join(
        ch if ch.isalnum() or ch.isspace() or ch in string.punctuation else " " for ch in normal
    )
    opts = options(remove_digits=False, remove_punctuation=False, lowercase=False)
    assert clean_sentence(everything, opts) == by_character


def test_a_sentence_cleaned_in_pieces_gives_the_tokens_it_gave_whole(monkeypatch) -> None:
    """Pieces are cut after whitespace before an ASCII character, where neither NFKC (combining
    marks), lowercasing (Greek final sigma) nor a token can join across."""
    sentence = " ".join(["\u039f\u0394\u039f\u03a3 e\u0301t\u00e9 \ufb01ne don't x-ray 42nd"] * 50)
    whole, _ = tokenize(sentence, options(sentences="lines", min_sentence_tokens=1))
    monkeypatch.setattr(text_module, "_PIECE_CHARS", 7)
    pieces, _ = tokenize(sentence, options(sentences="lines", min_sentence_tokens=1))
    assert pieces == whole and "\u03bf\u03b4\u03bf\u03c2" in whole[0]


def test_an_illustration_tag_never_closed_holds_no_more_than_its_bound(monkeypatch) -> None:
    """A stray "[Illustration" whose "]" comes a book later is text, not a tag that swallows the
    book (the whole-text regex removed everything up to that "]")."""
    monkeypatch.setattr(text_module, "TAG_CHARS", 2000)
    body = "Dogs chase cats daily.\n" * 500
    text = f"Intro words here. [Illustration: stray.\n{body}Late bracket] here. Birds sing songs.\n"
    corpus, report = tokenize(text, options(sentences="regex"))
    assert corpus.count(["dogs", "chase", "cats", "daily"]) == 500
    assert corpus[-3:] == [
        ["dogs", "chase", "cats", "daily"],
        ["late", "bracket"],
        ["birds", "sing", "songs"],
    ]
    assert not report.gutenberg_stripped
    short = "Cats here. [Illustration: short\ncaption] Dogs there."
    assert tokenize(short, options(min_sentence_tokens=1))[0] == [["cats"], ["dogs"]]
    many = "[Illustration of nothing\n" * 2000 + "Last words.\n"  # each line opens one more
    (sentence,), _ = tokenize(many, options(sentences="regex"))
    assert sentence.count("illustration") == 2000 and sentence[-2:] == ["last", "words"]


def test_a_sentence_longer_than_a_paragraph_may_be_is_cut_at_a_line_end(monkeypatch) -> None:
    """The one place where the memory bound changes a corpus: a "sentence" of more than
    ``PARAGRAPH_CHARS`` (a list of words, a text without full stops) is cut where a line ends,
    every word kept."""
    monkeypatch.setattr(text_module, "PARAGRAPH_CHARS", 100)
    lines = [" ".join(f"word{chr(97 + i)}{chr(97 + j)}" for j in range(6)) for i in range(20)]
    sentences = split_sentences("\n".join(lines) + ". Next sentence here.", "regex")
    assert 1 < len(sentences) < 20 and sentences[-1] == "Next sentence here."
    assert " ".join(sentences[:-1]) == " ".join(lines) + "."


def test_punkt_learns_from_a_long_paragraph_cut_into_lines_at_spaces(monkeypatch) -> None:
    """NLTK gives each regular expression 5 s, and Punkt tokenizes its training text a line (a
    paragraph) at a time: a paragraph of many MB is cut into lines, every word kept."""
    monkeypatch.setattr(text_module, "_TRAINING_LINE_CHARS", 50)
    lines = ["Alpha beta gamma delta. " * 10 + "\n", "\n", "Short one.\n"]
    training = text_module._training_text(lines)
    assert max(len(line) for line in training.split("\n")) <= 50
    assert training.split() == "".join(lines).split()
    assert training.endswith("delta.\n\nShort one.")


def test_split_sentences_keeps_its_whole_text_interface() -> None:
    text = "One two. Three four! Five?\n\nSix seven\neight."
    assert split_sentences(text, "regex") == [
        "One two.",
        "Three four!",
        "Five?",
        "Six seven eight.",
    ]


STAGE = (
    "import sys\n"
    "from dllabs.data import text\n"
    "text.SAMPLE_CHARS = 2**20\n"  # both sizes go past the sample, as a large text does
    "from stages import tokenize\n"
    "tokenize.main(sys.argv[1:])\n"
)


def tokenize_in_a_process(tmp_path: Path, text: str, sentences: str) -> tuple[float, str]:
    """Peak RSS (MB) of the tokenize stage on ``text``, run as DVC runs it, and its corpus."""
    import yaml

    root = tmp_path / f"run-{len(text)}"
    raw = root / "data/raw/text"
    raw.mkdir(parents=True)
    (raw / "book.txt").write_text(text, encoding="utf-8")
    (raw / "manifest.json").write_text(json.dumps({"source": "file", "files": {"book.txt": {}}}))
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    params["tokenize"]["sentences"] = sentences
    (root / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    args = ["--raw-text", "data/raw/text", "--corpus", "corpus.txt", "--summary", "corpus.json"]
    done = measure(
        python("-c", STAGE, *args), cwd=root, env={"PYTHONPATH": str(REPO)}, kill_at_mb=700
    )
    assert done.returncode == 0 and not done.killed, (done.peak_mb, done.stderr[-2000:])
    return done.peak_mb, (root / "corpus.txt").read_text(encoding="utf-8")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("sentences", "blank_lines"), [("punkt", True), ("regex", False)], ids=["book", "one-paragraph"]
)
def test_tokenize_memory_does_not_grow_with_the_text(
    tmp_path: Path, sentences: str, blank_lines: bool
) -> None:
    """2 MB and 8 MB: the peak stays within 60 MB (a reading's noise and the vocabulary's growth),
    where tokenizing the whole text in memory grew by about 60 MB per MB (8 MB: over 600 MB).
    The markers are found at both ends of the larger text."""
    small, _ = tokenize_in_a_process(tmp_path, gutenberg_book(2, 1, blank_lines), sentences)
    large, corpus = tokenize_in_a_process(tmp_path, gutenberg_book(8, 2, blank_lines), sentences)
    assert large < small + 60, (small, large)
    assert large < 500, large
    assert corpus.count("\n") > 50_000
    assert not set(corpus.split()) & {"ebook", "project", "gutenberg", "redistributing"}


# --- 18. a crafted model.json -----------------------------------------------------------------


@pytest.fixture(scope="module")
def model(default_params: dict):
    params = CBOW(**{**default_params["cbow"], "vector_size": 8, "epochs": 2, "min_count": 1})
    return train_cbow(TINY_CORPUS, params, seed=1)


def crafted(model, folder: Path, **changes) -> Path:
    """The model saved, then ``model.json`` rewritten: ``settings`` keys and top-level keys."""
    save_word2vec(model, folder)
    info = json.loads((folder / "model.json").read_text())
    for key, value in changes.items():
        (info if key in info else info["settings"])[key] = value
    (folder / "model.json").write_text(json.dumps(info))
    return folder


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"seed": 1.5}, r"settings.seed = 1.5, expected a whole number from 0 to 4294967295"),
        ({"seed": 2**32}, r"settings.seed = 4294967296, expected a whole number from 0 to"),
        ({"negative": 0.5}, r"settings.negative = 0.5, expected a whole number of 0 or more"),
        ({"window": 0}, r"settings.window = 0, expected a whole number of 1 or more"),
        ({"sg": 2}, r"settings.sg = 2, expected 0 or 1"),
        ({"hs": True}, r"settings.hs = True, expected 0 or 1"),
        ({"sample": 1.5}, r"settings.sample = 1.5, expected a number from 0 to 1"),
        ({"alpha": float("nan")}, r"settings.alpha = nan, expected a number above 0"),
        ({"epochs": "5"}, r"settings.epochs = '5', expected a whole number of 1 or more"),
        ({"negative": 0}, r"output_vectors is true but settings.negative is 0"),
        ({"output_vectors": False}, r"settings.negative is 10 but output_vectors is false"),
        ({"vector_size": 0}, r"vector_size = 0, expected a whole number of 1 or more"),
    ],
)
def test_model_settings_of_the_wrong_type_or_range_are_one_line(
    model, tmp_path: Path, change: dict, message: str
) -> None:
    folder = crafted(model, tmp_path / "word2vec", **change)
    with pytest.raises(DataError, match=f"model.json: {message}"):
        load_word2vec(folder)


@pytest.mark.parametrize(("name", "value"), [("seed", 1.5), ("negative", 0.5)])
def test_predict_with_a_crafted_setting_is_one_line(
    model, tmp_path: Path, name: str, value: float
) -> None:
    """The issue's probes, through ``dl-labs predict cbow --model``."""
    folder = crafted(model, tmp_path / "cbow" / "word2vec", **{name: value})
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "dllabs",
            "predict",
            "cbow",
            "--model",
            str(folder.parent),
            "--similar",
            "king",
            "--context",
            "the",
            "land",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "PYTHONHASHSEED": "0"},
    )
    assert done.returncode == 1, done.stdout
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(f"predict: error: {folder}/model.json: settings.{name} = {value}")


def test_a_model_without_negative_sampling_reports_no_prediction(default_params) -> None:
    """``cbow.hs: true, cbow.negative: 0`` is valid; gensim predicts centre words only with
    negative sampling, so the probes say so instead of raising."""
    params = CBOW(
        **{
            **default_params["cbow"],
            "vector_size": 8,
            "epochs": 1,
            "min_count": 1,
            "negative": 0,
            "hs": True,
        }
    )
    report = probe_report(train_cbow(TINY_CORPUS, params, seed=1), [], [["the", "land"]])
    assert "no prediction (needs negative sampling)" in report


# --- 19. a vocabulary too small to evaluate ---------------------------------------------------


def corpus_with(path: Path, frequent: list[str], times: int = 30) -> None:
    """``times`` sentences, each with the ``frequent`` words and a word of its own."""
    path.write_text("".join(" ".join([*frequent, f"rare{i}"]) + "\n" for i in range(times)))


def test_a_vocabulary_too_small_to_evaluate_is_refused_before_training(workdir, capsys) -> None:
    """`dvc exp run -S cbow.min_count=450` on Lee left one word: evaluate_cbow's PCA raised,
    and DVC had already deleted the lab's metrics and probe report."""
    root = workdir(**{"cbow.min_count": 20, "cbow.epochs": 1})
    corpus_with(root / "corpus.txt", ["alpha"])
    err = fails(train_stage.main, TRAIN_ARGS, capsys)
    assert err == (
        "train_cbow: error: cbow.min_count = 20 leaves 1 word in the vocabulary of corpus.txt "
        "(31 distinct words); evaluate_cbow needs at least 2 (its PCA map has two "
        "axes); lower cbow.min_count or use a larger text"
    )
    assert not (root / "models").exists() and not (root / "plots").exists()


def test_the_smallest_vocabulary_is_trained_and_evaluated(workdir, capsys) -> None:
    from dllabs.data.sources import write_text_eval

    root = workdir(**{"cbow.min_count": 20, "cbow.epochs": 1, "cbow.pca_words": 80})
    corpus_with(root / "corpus.txt", ["alpha", "beta"])
    (root / "text_eval").mkdir()
    write_text_eval(root / "text_eval")
    train_stage.main(TRAIN_ARGS)
    evaluate_stage.main(EVALUATE_ARGS)
    metrics = json.loads((root / "metrics/cbow.json").read_text())
    assert metrics["vocab_size"] == 2
    assert (root / "plots/evaluate/cbow/pca.png").is_file()


def test_evaluate_refuses_a_model_too_small_to_map_in_one_line(
    workdir, capsys, default_params
) -> None:
    """A model trained before train_cbow refused such a vocabulary: one line, not a traceback."""
    from dllabs.data.sources import write_text_eval

    root = workdir()
    params = CBOW(**{**default_params["cbow"], "vector_size": 8, "epochs": 1, "min_count": 6})
    one_word = train_cbow([["alpha", "rare"], ["alpha", "other"]] * 3, params, seed=1)
    save_word2vec(one_word, root / "models/cbow/word2vec")
    save_vectors(one_word.wv, root / "models/cbow/baseline")
    training = {
        "engine": "gensim",
        "vocab_size": 1,
        "corpus_tokens": 12,
        "final_loss": 0.0,
        "device": "CPU (gensim)",
        "train_seconds": 0.1,
    }
    (root / "models/cbow/training.json").write_text(json.dumps(training))
    (root / "text_eval").mkdir()
    write_text_eval(root / "text_eval")
    err = fails(evaluate_stage.main, EVALUATE_ARGS, capsys)
    assert err == (
        "evaluate_cbow: error: models/cbow/word2vec: 1 word in the vocabulary; its PCA map needs "
        "at least 2; retrain with a lower cbow.min_count (dvc repro train_cbow)"
    )
    assert not (root / "metrics").exists() and not (root / "reports").exists()
