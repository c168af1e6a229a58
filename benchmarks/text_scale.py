"""Benchmark: the text lab on large and hostile texts: ``tokenize``'s peak RSS and time, before
and after it streamed the text (issue 31, item 12), and what ``train_cbow`` then holds.

1. **Books**: Gutenberg-style books of ``--sizes`` MB (default 4, 10 and 40; made by
   ``tests/test_hostile_text.py``'s generator: Zipf-distributed words, hard-wrapped paragraphs,
   abbreviations, quotes, illustration captions), tokenized with the default params (Punkt) by this
   checkout and by ``--before`` (a revision from before streaming, exported with ``git archive``).
   Each run is the stage as DVC runs it, in a process of its own; the peak is that process's
   ``ru_maxrss`` (:mod:`tests.memory`). Records whether both wrote the same corpus: they do for a
   text shorter than Punkt's training sample (8 MiB), not past it, where Punkt now learns from the
   sample only.
2. **Hostile texts** (``--hostile`` MB each, this checkout only): the book without a blank line
   (one paragraph), a single line as long as ``check_text_file`` allows (one sentence with
   ``lines`` splitting; many with Punkt), a text as dense in tokens as prose gets (the worst Punkt
   sample), and an ``[Illustration`` tag opened on every line, never closed.
3. **train_cbow** on each book's corpus, one epoch (``cbow.epochs``), by this checkout and by
   ``--before``: it holds the whole corpus as lists of words (gensim's baseline trains on the same
   lists), so its memory grows with the corpus; each word kept once, it grows more slowly.

Times include the interpreter's imports (NLTK's alone import scikit-learn and pandas: about 190
MB and, without cached bytecode, 10 s). Results go to ``benchmarks/results/text_scale.json``.

    python benchmarks/text_scale.py                     # about 15 min on 2 CPU cores
    python benchmarks/text_scale.py --sizes 4 --hostile 4 --skip before   # a quick look
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dllabs.provenance import platform_record  # noqa: E402
from tests.memory import measure, python  # noqa: E402
from tests.test_hostile_text import gutenberg_book  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "text_scale.json"
BEFORE = "ccd3798~1"  # the last revision that tokenized the whole text in memory
KILL_AT_MB = 6144  # the whole-text stage took 2.3 GB for 40 MB; a bound above, not a target


def export(rev: str, dest: Path) -> Path:
    """The files of ``rev`` (``git archive``) in ``dest``."""
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", rev], cwd=REPO, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest


def workdir(root: Path, text: Path, overrides: dict[str, Any]) -> Path:
    """A scratch project folder whose ``data/raw/text`` holds ``text`` as ``download`` leaves it."""
    raw = root / "data" / "raw" / "text"
    raw.mkdir(parents=True)
    (raw / text.name).symlink_to(text)
    (raw / "manifest.json").write_text(json.dumps({"source": "file", "files": {text.name: {}}}))
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    for dotted, value in overrides.items():
        section, key = dotted.split(".")
        params[section][key] = value
    (root / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    return root


def run(code: Path, root: Path, module: str, *args: str) -> dict:
    """``python -m stages.<module> <args>`` with ``code`` first on the path: peak MB and seconds."""
    start = time.perf_counter()
    done = measure(
        python("-m", f"stages.{module}", *args),
        cwd=root,
        env={"PYTHONPATH": str(code)},
        kill_at_mb=KILL_AT_MB,
        timeout=3600,
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{module} failed in {root}: {done.stderr[-2000:]}")
    return {"peak_mb": round(done.peak_mb), "seconds": round(seconds, 1)}


def tokenize(code: Path, root: Path) -> dict:
    result = run(
        code,
        root,
        "tokenize",
        "--raw-text",
        "data/raw/text",
        "--corpus",
        "corpus.txt",
        "--summary",
        "corpus.json",
    )
    summary = json.loads((root / "corpus.json").read_text())
    corpus = (root / "corpus.txt").read_bytes()
    return {
        **result,
        "corpus_md5": hashlib.md5(corpus).hexdigest(),
        **{k: summary[k] for k in ("sentences_kept", "tokens", "vocabulary")},
    }


def hostile_texts(folder: Path, megabytes: float) -> dict[str, tuple[Path, dict[str, Any]]]:
    """Each hostile text's file and the params it is tokenized with."""
    size = int(megabytes * 2**20)
    texts: dict[str, tuple[str, dict[str, Any]]] = {
        "one paragraph": (gutenberg_book(megabytes, 7, blank_lines=False), {}),
        # the longest line check_text_file lets through (32 MiB), whatever --hostile says: one
        # sentence (lines), or a paragraph of sentences (Punkt)
        "one long line, lines": (
            "Word " * (31 * 2**20 // 5) + "\n",
            {"tokenize.sentences": "lines"},
        ),
        "one long line, Punkt": ("Word word. " * (31 * 2**20 // 11) + "\n", {}),
        "dense tokens": (
            "".join(
                f"{chr(97 + i % 26)}{chr(97 + i // 26 % 26)}{'. ' if i % 3 else ', '}"
                + ("\n" if i % 20 == 19 else "")
                for i in range(size // 4)
            ),
            {},
        ),
        "unclosed tags": ("[Illustration of nothing\n" * (size // 25), {}),
    }
    files = {}
    for name, (text, overrides) in texts.items():
        path = folder / f"{re.sub(r'[^a-z]+', '_', name.lower())}.txt"
        path.write_text(text, encoding="utf-8")
        files[name] = (path, overrides)
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[4, 10, 40], help="books, MB")
    parser.add_argument("--hostile", type=float, default=10, help="hostile texts' size, MB")
    parser.add_argument("--before", default=BEFORE, help="revision from before streaming")
    parser.add_argument(
        "--skip", action="append", default=[], choices=["before", "hostile", "train"]
    )
    args = parser.parse_args()
    results: dict[str, Any] = {
        "platform": platform_record(),
        "books": {},
        "hostile": {},
        "train_cbow": {},
        "before": args.before,
    }
    with tempfile.TemporaryDirectory(prefix="text-scale-") as scratch:
        tmp = Path(scratch)
        before = None if "before" in args.skip else export(args.before, tmp / "before")
        for megabytes in args.sizes:
            book = tmp / f"book_{megabytes:g}MB.txt"
            book.write_text(gutenberg_book(megabytes, seed=1), encoding="utf-8")
            roots = {"after": workdir(tmp / f"after_{megabytes:g}", book, {"cbow.epochs": 1})}
            entry: dict[str, Any] = {"bytes": book.stat().st_size}
            entry["after"] = tokenize(REPO, roots["after"])
            if before is not None:
                roots["before"] = workdir(tmp / f"before_{megabytes:g}", book, {"cbow.epochs": 1})
                entry["before"] = tokenize(before, roots["before"])
                entry["same_corpus"] = entry["before"]["corpus_md5"] == entry["after"]["corpus_md5"]
            if "train" not in args.skip:
                trained = results["train_cbow"][f"{megabytes:g} MB book"] = {}
                for name, root in roots.items():
                    trained[name] = run(
                        REPO if name == "after" else before,
                        root,
                        "train_cbow",
                        "--corpus",
                        "corpus.txt",
                        "--model",
                        "models/cbow",
                        "--plots",
                        "plots/cbow",
                    )
                    trained[name]["corpus_bytes"] = (root / "corpus.txt").stat().st_size
            results["books"][f"{megabytes:g} MB"] = entry
            print(f"book {megabytes:g} MB: {json.dumps(entry)}", flush=True)
            book.unlink()
        if "hostile" not in args.skip:
            for name, (path, overrides) in hostile_texts(tmp, args.hostile).items():
                root = workdir(tmp / f"hostile_{path.stem}", path, overrides)
                entry = {"bytes": path.stat().st_size, "after": tokenize(REPO, root)}
                results["hostile"][name] = entry
                print(f"hostile {name}: {json.dumps(entry)}", flush=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
