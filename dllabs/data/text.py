"""The CBOW lab's text preparation, offline, in memory that does not grow with the text.

The lab's steps: strip the Project Gutenberg header and footer, remove special characters and
digits, remove punctuation, lowercase, split into sentences and words, remove stop words.

Sentence boundaries need the punctuation that cleaning removes, so sentences are split first and
each sentence is then cleaned and tokenized. NLTK's data packages (``punkt``, ``stopwords``) cannot
be downloaded here, so the defaults need none: a Punkt sentence splitter *trained on the corpus
itself* (unsupervised, as Punkt was designed) and a bundled copy of NLTK's English stop-word list.
``sentences: nltk`` and ``stopwords: nltk`` use NLTK's data where it is installed.

The text is read a line at a time and never held whole: a corpus of any size is tokenized in
bounded memory, in time linear in its size. The corpus is the one the whole text would give:

- Gutenberg's START and END markers are found by a first scan of the lines; a second reads the
  book between them.
- Paragraphs (lines up to a blank line) are split one at a time, as they always were. A paragraph
  longer than :data:`PARAGRAPH_CHARS` (a text without blank lines is one paragraph) is split once
  it reaches that length, and its last sentence, which may go on, is carried into the rest.
- Punkt learns from the first :data:`SAMPLE_CHARS` characters (at most :data:`SAMPLE_TOKENS`
  tokens), a bounded sample: its training keeps every token of its text in memory, about 250 bytes
  each, and takes time that grows faster than the text. A book shorter than the sample (nearly all
  of Project Gutenberg) trains on all of itself, as before.

What can differ from splitting the whole text at once, on purpose: a text longer than the sample
is split by what Punkt learnt from its sample, and one with a paragraph over 1 MiB (no blank
lines) learns from it cut into lines; a sentence longer than ``PARAGRAPH_CHARS`` is cut where a
line or a space reaches that length, a run of that many characters without a space anywhere; an
``[Illustration`` tag not closed within :data:`TAG_CHARS` characters is kept as text rather than
removing everything up to the next ``]``. These bounds also keep every regular expression NLTK
runs well inside the 5 s it allows each one: past it, the whole text failed.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from itertools import chain
from pathlib import Path

from dllabs.data.readers import check_text_file
from dllabs.errors import DataError, ParamsError
from dllabs.params import Tokenize

# Punkt's training sample: a long novel fits. Training on it takes about 350 MB, and the stage
# peaks near 560 MB (190 MB of them NLTK's imports), text of any size or kind.
SAMPLE_CHARS = 8 * 2**20
SAMPLE_TOKENS = 1_500_000
# A paragraph is split into sentences once it reaches this length (see the module's docstring),
# and Punkt learns from lines of at most _TRAINING_LINE_CHARS. NLTK runs each of its regular
# expressions under a 5 s limit; a 1 MiB paragraph dense in full stops took longer to split, and
# once past the limit tokenize fails.
PARAGRAPH_CHARS = 2**16
_TRAINING_LINE_CHARS = 2**20
# An "[Illustration" tag not closed within this many characters is text (captions take a few
# lines); lines are held while a tag is open.
TAG_CHARS = 2**16
# A sentence is cleaned a piece of about this size at a time, and the corpus written in blocks of
# about this size.
_PIECE_CHARS = 2**18
_WRITE_CHARS = 2**20

_START = re.compile(r"^\s*\*{3}\s*START OF (?:THE|THIS) PROJECT GUTENBERG E-?BOOK.*$", re.I | re.M)
_END = re.compile(
    r"^\s*(?:\*{3}\s*END OF (?:THE|THIS) PROJECT GUTENBERG E-?BOOK"
    r"|End of (?:the )?Project Gutenberg).*$",
    re.I | re.M,
)
_ILLUSTRATION = re.compile(r"\[Illustration[^\]]*\]", re.I)
_TAG_START = re.compile(r"\[Illustration", re.I)
# Typographic characters mapped to their ASCII meaning before "special" characters are dropped.
_ASCII_PUNCT = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u2013": "-",
        "\u2014": " - ",
        "\u2026": "...",
    }
)
_PUNCTUATION = re.compile(f"[{re.escape(string.punctuation)}]")
_DIGITS = re.compile(r"\d+")
_WORDS = re.compile(r"\w+(?:['-]\w+)*|[^\w\s]")
_REGEX_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]*[A-Z0-9])")
# Same as " ".join(line.split()) (both use Unicode's whitespace), without a list of every word.
_WHITESPACE = re.compile(r"\s+")
_SPACE = re.compile(r"\s")
# At least as many as Punkt's tokens: a word, or one punctuation mark.
_SAMPLE_TOKEN = re.compile(r"\w+|[^\w\s]")
# Where a long sentence is cut into pieces: after whitespace, before an ASCII character. No token
# spans whitespace, no case or Unicode normalisation joins across it before such a character.
_PIECE_CUT = re.compile(r"\s(?=[!-~])")

Lines = Callable[[], Iterable[str]]  # a fresh pass over a text's lines at each call
Spans = Callable[[str], Iterable[tuple[int, int]]]  # a paragraph's sentences as (start, end)


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


@dataclass
class GutenbergMarkers:
    """Where the book lies: the line numbers of the START and END markers (after illustration tags
    are removed), how many tags there were and how many characters the text has."""

    start: int | None = None
    end: int | None = None
    tags: int = 0
    characters: int = 0

    @property
    def stripped(self) -> bool:
        return self.start is not None or self.end is not None or self.tags > 0


def text_lines(text: str) -> Iterator[str]:
    """The lines of ``text``, each with its ``\\n``, as a file yields them."""
    start = 0
    while (end := text.find("\n", start)) >= 0:
        yield text[start : end + 1]
        start = end + 1
    if start < len(text):
        yield text[start:]


def file_lines(path: str | Path) -> Iterator[str]:
    """The lines of a UTF-8 text file, one at a time: a BOM is dropped and any line end is read as
    ``\\n``, as :func:`dllabs.data.readers.read_text` reads the whole file."""
    path = Path(path)
    try:
        with path.open(encoding="utf-8-sig") as handle:
            yield from handle
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    except OSError as exc:
        raise DataError(f"{path}: unreadable ({exc.strerror})") from None


class _Counted:
    """Lines passed through, their characters counted."""

    def __init__(self, lines: Iterable[str]) -> None:
        self.lines, self.characters = iter(lines), 0

    def __iter__(self) -> Iterator[str]:
        for line in self.lines:
            self.characters += len(line)
            yield line


class _Illustrations:
    """Lines with ``[Illustration ...]`` tags replaced by a space, as one ``re.sub`` over the whole
    text replaces them, tags that span lines included: from where a tag opens, lines are held until
    it closes. A tag not closed within ``TAG_CHARS`` (or up to twice that) is text. Counts the tags
    it removed."""

    def __init__(self) -> None:
        self.removed = 0

    def strip(self, lines: Iterable[str]) -> Iterator[str]:
        prefix = ""  # the held line's text before the tag: final, never matched again
        held: list[str] = []  # from an unclosed tag's "[" on; no "]" in it
        size = 0
        for line in lines:
            if not held and "[" not in line:
                yield line
                continue
            if held and "]" not in line:
                held.append(line)
                size += len(line)
                # Give up every tag open for more than TAG_CHARS; waiting for twice that keeps the
                # work linear when every line opens a tag that never closes.
                if size > 2 * TAG_CHARS:
                    text = "".join(held)
                    start = _TAG_START.search(text, len(text) - TAG_CHARS)
                    ready = prefix + (text if start is None else text[: start.start()])
                    cut = ready.rfind("\n") + 1
                    yield from text_lines(ready[:cut])
                    prefix = ready[cut:]
                    held = [] if start is None else [text[start.start() :]]
                    size = len(held[0]) if held else 0
                continue
            text, removed = _ILLUSTRATION.subn(" ", "".join(held) + line)
            self.removed += removed
            # Replacing tags leaves no new tag behind, so what follows can be matched again.
            start = _TAG_START.search(text, text.rfind("]") + 1)
            ready = prefix + (text if start is None else text[: start.start()])
            cut = len(ready) if start is None else ready.rfind("\n") + 1
            yield from text_lines(ready[:cut])
            prefix = ready[cut:]
            held = [] if start is None else [text[start.start() :]]
            size = len(held[0]) if held else 0
        yield from text_lines(prefix + "".join(held))  # a tag never closed is text


def find_gutenberg_markers(lines: Iterable[str]) -> GutenbergMarkers:
    """Scan the lines once for the first START marker and the first END marker after it (or the
    first END, without a START), counting illustration tags and characters; holds one line."""
    counted, tags = _Counted(lines), _Illustrations()
    markers, first_end = GutenbergMarkers(), None
    for number, line in enumerate(tags.strip(counted)):
        if markers.start is None:
            if _START.match(line):
                markers.start = number
            elif first_end is None and _END.match(line):
                first_end = number
        elif _END.match(line):
            markers.end = number
            break
    for _ in counted:  # the rest only counts characters
        pass
    if markers.start is None:
        markers.end = first_end
    markers.tags = tags.removed  # over the whole text unless both markers were found
    markers.characters = counted.characters
    return markers


def gutenberg_body(lines: Iterable[str], markers: GutenbergMarkers) -> Iterator[str]:
    """The lines between the markers, illustration tags removed; stops reading at the END."""
    for number, line in enumerate(_Illustrations().strip(lines)):
        if markers.end is not None and number >= markers.end:
            return
        if markers.start is None or number > markers.start:
            yield line


def strip_gutenberg(text: str) -> tuple[str, bool]:
    """Text between the Gutenberg START and END markers, without ``[Illustration]`` tags.

    Returns the text unchanged, and ``False``, when it has neither markers nor tags.
    """
    markers = find_gutenberg_markers(text_lines(text))
    return "".join(gutenberg_body(text_lines(text), markers)), markers.stripped


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
    return list(sentences(text_lines(text), method))


def sentences(lines: Iterable[str], method: str) -> Iterator[str]:
    """The sentences of a text's lines, one paragraph at a time (see the module's docstring)."""
    if method == "lines":
        return (s for line in lines for piece in line.splitlines() if (s := piece.strip()))
    if method == "regex":
        return _paragraph_sentences(lines, _regex_spans)
    if method == "punkt":
        return _punkt_sentences(lines)
    if method == "nltk":
        from nltk.tokenize.punkt import PunktTokenizer

        try:
            splitter = PunktTokenizer("english")
        except LookupError:
            raise ParamsError(
                "tokenize.sentences: 'nltk' needs NLTK's punkt_tab data, which is not installed "
                "(python -m nltk.downloader punkt_tab); use 'punkt' to train Punkt on the corpus"
            ) from None
        return _paragraph_sentences(lines, splitter.span_tokenize)
    raise ParamsError(f"tokenize.sentences: unknown method {method!r}")


def _paragraph_sentences(lines: Iterable[str], spans: Spans) -> Iterator[str]:
    """Each paragraph's lines joined with single spaces, then split by ``spans``. A paragraph that
    reaches ``PARAGRAPH_CHARS`` is split then: every sentence but the last is final, since what
    follows cannot move a boundary before it, and the last goes on with the next lines."""
    parts: list[str] = []
    size, limit = 0, PARAGRAPH_CHARS
    for line in lines:
        words = _words(line, PARAGRAPH_CHARS)  # a long line, a piece at a time
        first = next(words, None)
        if first is None:  # a blank line ends the paragraph
            if parts:
                text = " ".join(parts)
                yield from (text[start:end] for start, end in spans(text))
                parts, size, limit = [], 0, PARAGRAPH_CHARS
            continue
        for piece in chain([first], words):
            parts.append(piece)
            size += len(piece) + 1
            if size <= limit:
                continue
            text = " ".join(parts)
            last = None
            for span in spans(text):
                if last is not None:
                    yield text[last[0] : last[1]]
                last = span
            if last is None or last[0] == 0:  # one sentence longer than the limit: cut it here
                if last is not None:
                    yield text[last[0] : last[1]]
                parts, size, limit = [], 0, PARAGRAPH_CHARS
                continue
            parts = [text[last[0] :]]
            size = len(parts[0]) + 1
            limit = max(PARAGRAPH_CHARS, 2 * size)  # a long last sentence: not split at each line
    if parts:
        text = " ".join(parts)
        yield from (text[start:end] for start, end in spans(text))


def _words(line: str, size: int) -> Iterator[str]:
    """``" ".join(line.split())`` in pieces that single spaces join back into it, each cut at the
    first whitespace past ``size`` characters: no list of every word, no copy of a long line. A
    run of ``size`` characters without whitespace is cut where it reaches that."""
    start = 0
    while len(line) - start > size:
        space = _SPACE.search(line, start + size, start + 2 * size)
        cut = space.end() if space else start + size
        if piece := _WHITESPACE.sub(" ", line[start:cut]).strip(" "):
            yield piece
        start = cut
    if piece := _WHITESPACE.sub(" ", line[start:]).strip(" "):
        yield piece


def _at_spaces(words: str, size: int) -> Iterator[str]:
    """``words`` in pieces of at most ``size`` characters that single spaces join back into it;
    a run of more than ``size`` characters without a space is cut where it reaches that."""
    start = 0
    while len(words) - start > size:
        cut = words.rfind(" ", start, start + size + 1)
        if cut <= start:
            yield words[start : start + size]
            start += size
        else:
            yield words[start:cut]
            start = cut + 1
    yield words[start:]


def _regex_spans(text: str) -> Iterator[tuple[int, int]]:
    """``_REGEX_SENTENCE_END.split(text)``'s pieces that are not blank, as spans."""
    start = 0
    for match in _REGEX_SENTENCE_END.finditer(text):
        if text[start : match.start()].strip():
            yield start, match.start()
        start = match.end()
    if text[start:].strip():
        yield start, len(text)


def _punkt_sentences(lines: Iterable[str]) -> Iterator[str]:
    """Punkt trained on the text's first lines (the sample), then splitting every paragraph."""
    from nltk.tokenize.punkt import PunktSentenceTokenizer

    lines = iter(lines)
    held: list[str] = []
    characters = tokens = 0
    for line in lines:
        held.append(line)
        characters += len(line)
        tokens += sum(1 for _ in _SAMPLE_TOKEN.finditer(line))
        if characters >= SAMPLE_CHARS or tokens >= SAMPLE_TOKENS:
            break
    splitter = PunktSentenceTokenizer(_training_text(held))  # trained on this corpus
    source = chain(held, lines)  # the held lines are freed once split
    del held
    yield from _paragraph_sentences(source, splitter.span_tokenize)


def _training_text(lines: list[str]) -> str:
    """The paragraphs of ``lines`` separated by blank lines, cut to the sample's bounds: for a
    text shorter than the sample, exactly what Punkt learnt from before texts were streamed."""
    paragraphs: list[str] = []
    parts: list[str] = []
    size = 0
    for line in lines:
        words = _words(line, PARAGRAPH_CHARS)
        first = next(words, None)
        if first is None:
            if parts:
                paragraphs.append(" ".join(parts))
                parts = []
            continue
        for piece in chain([first], words):
            parts.append(piece)
            size += len(piece) + 1
            if size > SAMPLE_CHARS:  # the rest of a long line is not learnt from
                break
        if size > SAMPLE_CHARS:
            break
    if parts:
        paragraphs.append(" ".join(parts))
    # A paragraph is one line to Punkt; a longer one is cut into lines at spaces, which changes
    # only whether Punkt sees a word that starts a line (so its case says less).
    text = "\n\n".join("\n".join(_at_spaces(p, _TRAINING_LINE_CHARS)) for p in paragraphs)
    end = len(text)
    for count, token in enumerate(_SAMPLE_TOKEN.finditer(text), 1):
        if count > SAMPLE_TOKENS or token.end() > SAMPLE_CHARS:
            end = token.start()
            break
    return text[:end]


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


class _SpecialToSpace(dict):
    """``str.translate`` table, filled as characters are met: letters, digits, whitespace and
    ASCII punctuation stay; any other character becomes a space."""

    def __missing__(self, code: int) -> int:
        char = chr(code)
        keep = char.isalnum() or char.isspace() or char in string.punctuation
        self[code] = code if keep else 32
        return self[code]


_SPECIAL_TO_SPACE = _SpecialToSpace()


def clean_sentence(sentence: str, options: Tokenize) -> str:
    """Apply the lab's character-level steps to one sentence."""
    text = sentence.translate(_ASCII_PUNCT)
    if options.remove_special:
        text = unicodedata.normalize("NFKC", text).translate(_SPECIAL_TO_SPACE)
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
    written: list[str] = []
    report = tokenize_lines(lambda: text_lines(text), options, source, written.append)
    return [line.split(" ") for line in "".join(written).split("\n")[:-1]], report


def tokenize_file(
    path: str | Path, options: Tokenize, source: str, write: Callable[[str], object]
) -> TokenizeReport:
    """Tokenize a UTF-8 text file into ``write``, a block of sentences at a time: one sentence a
    line, tokens separated by spaces. The file is scanned for encoding and line length first."""
    check_text_file(path)
    return tokenize_lines(lambda: file_lines(path), options, source, write)


def tokenize_lines(
    lines: Lines, options: Tokenize, source: str, write: Callable[[str], object]
) -> TokenizeReport:
    """Tokenize the text that ``lines`` reads (twice, to find Gutenberg's markers first) into
    ``write``, and report what each step removed."""
    stop = stopword_set(options.stopwords, options.extra_stopwords)
    report = TokenizeReport(sentence_method=sentence_method(options.sentences, source))
    if options.strip_gutenberg:
        markers = find_gutenberg_markers(lines())
        report.characters_in, report.gutenberg_stripped = markers.characters, markers.stripped
        body: Iterable[str] = gutenberg_body(lines(), markers)
    else:
        body = counted = _Counted(lines())
    counts: Counter[str] = Counter()
    pending: list[str] = []
    size = 0
    for sentence in sentences(body, report.sentence_method):
        report.sentences_found += 1
        chunks = _kept_tokens(sentence, options, stop, report)
        head: list[str] = []
        for chunk in chunks:  # enough tokens to know whether the sentence is kept
            head += chunk
            if len(head) >= options.min_sentence_tokens:
                break
        if len(head) < options.min_sentence_tokens:  # then every chunk was read
            continue
        report.sentences_kept += 1
        for chunk in chain([head], chunks):  # a sentence of any length, a chunk at a time
            if not chunk:
                continue
            if chunk is not head:
                pending.append(" ")
            counts.update(chunk)
            pending.append(" ".join(chunk))
            size += len(pending[-1])
            if size > _WRITE_CHARS:
                write("".join(pending))
                pending, size = [], 0
        pending.append("\n")
    write("".join(pending))
    if not options.strip_gutenberg:
        report.characters_in = counted.characters
    report.tokens = sum(counts.values())
    report.vocabulary = len(counts)
    report.top_words = counts.most_common(20)
    if not report.sentences_kept:
        raise DataError(
            f"the text has no sentence with at least {options.min_sentence_tokens} tokens left "
            "after cleaning (empty corpus)"
        )
    return report


def _kept_tokens(
    sentence: str, options: Tokenize, stop: frozenset[str], report: TokenizeReport
) -> Iterator[list[str]]:
    """The sentence's tokens after cleaning, without stop words and short tokens (counted), in
    chunks: a piece of the sentence at a time, cut where cleaning and tokens cannot change."""
    start = 0
    while start < len(sentence):
        end = len(sentence)
        if end - start > _PIECE_CHARS:
            cut = _PIECE_CUT.search(sentence, start + _PIECE_CHARS)
            end = cut.end() if cut else end
        words = _WORDS.findall(clean_sentence(sentence[start:end], options))
        start = end
        not_stop = [word for word in words if word.lower() not in stop]
        kept = [word for word in not_stop if len(word) >= options.min_token_length]
        report.tokens_before_stopwords += len(words)
        report.stopwords_removed += len(words) - len(not_stop)
        report.short_tokens_removed += len(not_stop) - len(kept)
        yield kept
