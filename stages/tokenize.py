"""Stage ``tokenize``: the CBOW lab's data preparation.

Strip the Project Gutenberg header and footer when present; split into sentences; remove special
characters and digits; remove punctuation; lowercase; split into words; remove stop words. Runs
offline (see ``dllabs.data.text``). Writes one sentence per line, tokens separated by spaces, and a
JSON of counts. Imports no TensorFlow.
"""

from __future__ import annotations

from dataclasses import asdict

from dllabs.cli import parse_paths
from dllabs.data import sources
from dllabs.data.text import tokenize
from dllabs.errors import stage_errors
from dllabs.outputs import save_json, staged_outputs
from dllabs.params import load_params


def main(argv: list[str] | None = None) -> None:
    with stage_errors("tokenize"):
        params = load_params()
        args = parse_paths(
            argv, "tokenize", __doc__,
            raw_text="raw text folder", corpus="output corpus, one sentence per line",
            summary="output counts (.json)",
        )  # fmt: skip
        source, text = sources.read_text_source(args.raw_text)
        sentences, report = tokenize(text, params.tokenize, source)
        with staged_outputs() as out:
            corpus = out.file(args.corpus)
            corpus.write_text("".join(" ".join(s) + "\n" for s in sentences), encoding="utf-8")
            save_json(out.file(args.summary), {"source": source, **asdict(report)})
        print(
            f"tokenize: {source}: {report.sentences_kept} sentences, {report.tokens} tokens, "
            f"vocabulary {report.vocabulary}"
        )


if __name__ == "__main__":
    main()
