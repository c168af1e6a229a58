"""Stage ``tokenize``: the CBOW lab's data preparation.

Strip the Project Gutenberg header and footer when present; split into sentences; remove special
characters and digits; remove punctuation; lowercase; split into words; remove stop words. Runs
offline (see ``dllabs.data.text``). Writes one sentence per line, tokens separated by spaces, and a
JSON of counts. The text is read a line at a time and the corpus written a block of sentences at a
time, so memory stays bounded whatever the text's size. Imports no TensorFlow.
"""

from __future__ import annotations

from dataclasses import asdict

from dllabs.data import sources
from dllabs.data.text import tokenize_file
from dllabs.errors import stage_errors
from dllabs.outputs import save_json, staged_outputs
from dllabs.params import load_params
from dllabs.stage_args import parse_paths


def main(argv: list[str] | None = None) -> None:
    with stage_errors("tokenize"):
        params = load_params()
        args = parse_paths(
            argv,
            "tokenize",
            __doc__,
            raw_text="raw text folder",
            corpus="output corpus, one sentence per line",
            summary="output counts (.json)",
        )
        source, path = sources.text_file(args.raw_text)
        # Errors name the user's own text file, not its copy under data/raw/text.
        with sources.shown_paths(args.raw_text), staged_outputs() as out:
            with out.file(args.corpus).open("w", encoding="utf-8") as corpus:
                report = tokenize_file(path, params.tokenize, source, corpus.write)
            save_json(out.file(args.summary), {"source": source, **asdict(report)})
        print(
            f"tokenize: {source}: {report.sentences_kept} sentences, {report.tokens} tokens, "
            f"vocabulary {report.vocabulary}"
        )


if __name__ == "__main__":
    main()
