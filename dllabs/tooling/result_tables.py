"""Keep the result tables of the README and the documentation equal to the committed metrics.

``python -m dllabs.tooling.result_tables`` rewrites two kinds of block, in ``README.md`` and in
every page under ``docs/``:

- ``<!-- generated: KIND [LAB] ... -->`` ... ``<!-- /generated -->``: a table written from the
  metrics files that ``dvc.yaml`` declares. ``results`` is every lab's headline test metrics with
  their 95% intervals and test-set sizes (the table that opens ``reports/summary.md``),
  ``results LAB`` the rows of one lab; ``runs`` (or ``runs LAB``) is the device, training time and
  platform of each run; ``headline`` is the short table of the README, one headline metric per
  model (each lab's ``headline`` in :mod:`dllabs.labs.registry`). ``LAB`` is a lab's name
  there.
- ``<!-- include: PATH -->`` ... ``<!-- /include -->``: the body of a committed file (``PATH``
  from the repository root, its ``#`` title line dropped), such as the transfer sweeps under
  ``reports/`` or a benchmark's table under ``benchmarks/results/``.

``--check`` changes nothing and fails, naming each stale file, when any block differs from what
the metrics and reports say. Run the command after committing a new ``dvc repro``; the test suite
runs the check, so hand-typed numbers cannot go stale.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from dllabs.evaluation.reports import results_table, runs_table
from dllabs.labs.registry import LABS
from dllabs.tooling.reproducibility import declared_metrics

PROG = "python -m dllabs.tooling.result_tables"
END = "<!-- /generated -->"
# Markers count only at the start of a line, so that prose may quote them.
GENERATED = re.compile(
    r"^<!-- generated: (?P<spec>[a-z]+(?: [a-z]+)?)(?:;[^\n]*)? -->\n"
    r"(?P<body>.*?)^<!-- /generated -->",
    re.S | re.M,
)
INCLUDE = re.compile(
    r"^(<!-- include: (?P<path>[^ ]+) -->\n)(?P<body>.*?)^(<!-- /include -->)", re.S | re.M
)
MARKERS = re.compile(r"^<!-- (generated:|include:|/generated -->|/include -->)", re.M)
KINDS = ("results", "runs", "headline")


def opener(spec: str) -> str:
    """The first line of a generated block (it names what wrote the block)."""
    return f"<!-- generated: {spec}; written by `{PROG}` from metrics/, do not edit by hand -->"


def metrics_paths(dvc_yaml: Path) -> dict[str, Path]:
    """Each lab's metrics file, as ``dvc.yaml`` declares it (the only place the paths live)."""
    declared = {Path(path).as_posix() for path in declared_metrics(dvc_yaml)}
    missing = [lab.metrics for lab in LABS.values() if lab.metrics not in declared]
    if missing:
        raise ValueError(f"{dvc_yaml}: declares no metrics file {', '.join(missing)}")
    return {name: dvc_yaml.parent / lab.metrics for name, lab in LABS.items()}


def load_labs(root: Path) -> dict[str, dict]:
    """Every lab's committed metrics, by lab name."""
    return {
        lab: json.loads(path.read_text(encoding="utf-8"))
        for lab, path in metrics_paths(root / "dvc.yaml").items()
    }


def headline_table(labs: dict[str, dict]) -> str:
    """The README's short table: the rows of
    :func:`~dllabs.evaluation.reports.results_table` whose metric is one of the lab's
    ``headline`` metrics (:mod:`dllabs.labs.registry`), one per model. A transfer lab that did not
    apply keeps its one "not applicable" row."""
    header, rule, *_ = results_table({}).strip().splitlines()
    kept = [
        row
        for name, lab in LABS.items()
        if name in labs
        for row in lab.rows(lab.label, labs[name])
        if row.split("|")[3].strip() in lab.headline
    ]
    return "\n".join([header, rule, *kept]) + "\n"


def render(spec: str, labs: dict[str, dict]) -> str:
    """The table of a generated block: ``results``, ``runs`` or ``headline``, with an optional
    lab (``results mlp``)."""
    kind, _, lab = spec.partition(" ")
    if kind not in KINDS:
        raise ValueError(f"unknown generated block {spec!r}; expected one of {', '.join(KINDS)}")
    if lab:
        if lab not in labs or kind == "headline":
            raise ValueError(
                f"unknown generated block {spec!r}; a lab is one of {', '.join(labs)} "
                "after results or runs"
            )
        labs = {lab: labs[lab]}
    build = {"results": results_table, "runs": runs_table, "headline": headline_table}[kind]
    return build(labs)


def _body(path: Path) -> str:
    """A file's text without its leading ``#`` title line."""
    lines = path.read_text(encoding="utf-8").strip().splitlines()
    return "\n".join(lines[1:] if lines and lines[0].startswith("# ") else lines).strip()


def updated(text: str, labs: dict[str, dict], root: Path = Path(".")) -> str:
    """``text`` with each generated block rewritten from ``labs`` and each include refreshed
    from the files under ``root``."""
    markers = [match[1] for match in MARKERS.finditer(text)]
    openers = sum(1 for marker in markers if not marker.startswith("/"))
    blocks = len(GENERATED.findall(text)) + len(INCLUDE.findall(text))
    if not openers == len(markers) - openers == blocks:
        raise ValueError(
            f"{len(markers)} markers make {blocks} whole blocks; each "
            f"'<!-- generated: KIND -->' needs its '{END}' and each '<!-- include: PATH -->' "
            "its '<!-- /include -->', on lines of their own"
        )

    def generated(match: re.Match[str]) -> str:
        return f"{opener(match['spec'])}\n\n{render(match['spec'], labs)}\n{END}"

    def include(match: re.Match[str]) -> str:
        return f"{match[1]}\n{_body(root / match['path'])}\n\n{match[4]}"

    return INCLUDE.sub(include, GENERATED.sub(generated, text))


def documents(root: Path) -> list[Path]:
    """``README.md`` and the documentation's pages: every file that may hold blocks."""
    return [root / "README.md", *sorted((root / "docs").rglob("*.md"))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__)
    parser.add_argument(
        "--check", action="store_true", help="change nothing; fail if any file is stale"
    )
    parser.add_argument("--root", type=Path, default=Path("."), help="repository root")
    args = parser.parse_args(argv)
    try:
        labs = load_labs(args.root)
    except (ValueError, OSError, KeyError) as error:
        print(f"result_tables: error: {error}", file=sys.stderr)
        return 2
    stale: list[tuple[Path, str]] = []
    for path in documents(args.root):
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8")
        if not MARKERS.search(text):
            continue
        shown = path.relative_to(args.root).as_posix()
        try:
            new = updated(text, labs, args.root)
        except (ValueError, OSError) as error:
            print(f"result_tables: error: {shown}: {error}", file=sys.stderr)
            return 2
        if new != text:
            stale.append((path, new))
    names = ", ".join(path.relative_to(args.root).as_posix() for path, _ in stale)
    if not stale:
        print("result_tables: every generated table and include matches metrics/ and reports/")
        return 0
    if args.check:
        print(
            f"result_tables: error: {names}: the tables differ from metrics/ and reports/; "
            f"run `{PROG}` and commit the files",
            file=sys.stderr,
        )
        return 1
    for path, new in stale:
        path.write_text(new, encoding="utf-8")
    print(f"result_tables: rewrote {names} from metrics/ and reports/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
