"""Keep the README's result tables equal to the committed metrics and reports.

``python -m dllabs.readme`` rewrites, in ``README.md``:

- the block between :data:`START` and :data:`END` from the metrics files that ``dvc.yaml``
  declares (the same tables that open ``reports/summary.md``);
- each ``<!-- include: reports/FILE.md -->`` ... ``<!-- /include -->`` block with that committed
  report's body (its title line dropped), for reports such as the transfer sweeps.

``--check`` changes nothing and fails when the README is stale. Run it after committing a new
``dvc repro``; the test suite runs the check, so hand-typed numbers cannot go stale again.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from dllabs.drift import declared_metrics
from dllabs.reports import LAB_FILES, results_table, runs_table

START = "<!-- results: written by `python -m dllabs.readme` from metrics/; do not edit by hand -->"
END = "<!-- /results -->"
INCLUDE = re.compile(r"(<!-- include: (?P<path>[^ ]+) -->\n)(?P<body>.*?)(<!-- /include -->)", re.S)


def metrics_paths(dvc_yaml: Path) -> dict[str, Path]:
    """Each lab's metrics file, as ``dvc.yaml`` declares it (the only place the paths live)."""
    by_name = {Path(path).name: dvc_yaml.parent / path for path in declared_metrics(dvc_yaml)}
    return {lab: by_name[name] for lab, name in LAB_FILES.items()}


def render(root: Path) -> str:
    """The generated block, markers included."""
    labs = {
        lab: json.loads(path.read_text(encoding="utf-8"))
        for lab, path in metrics_paths(root / "dvc.yaml").items()
    }
    return "\n".join([START, "", results_table(labs), runs_table(labs), END])


def updated(readme: str, block: str, root: Path = Path(".")) -> str:
    """``readme`` with its results block replaced by ``block`` and its includes refreshed."""
    start, end = readme.find(START), readme.find(END)
    if start < 0 or end < start:
        raise ValueError(f"README.md: the markers {START!r} and {END!r} are missing")
    readme = readme[:start] + block + readme[end + len(END) :]

    def include(match: re.Match[str]) -> str:
        lines = (root / match["path"]).read_text(encoding="utf-8").strip().splitlines()
        body = "\n".join(lines[1:] if lines and lines[0].startswith("# ") else lines).strip()
        return f"{match[1]}\n{body}\n\n{match[4]}"

    return INCLUDE.sub(include, readme)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dllabs.readme", description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if README.md is stale")
    parser.add_argument("--root", type=Path, default=Path("."), help="repository root")
    args = parser.parse_args(argv)
    readme_path = args.root / "README.md"
    readme = readme_path.read_text(encoding="utf-8")
    try:
        new = updated(readme, render(args.root), args.root)
    except (ValueError, OSError, KeyError) as error:
        print(f"readme: error: {error}", file=sys.stderr)
        return 2
    if new == readme:
        print("readme: README.md's results match metrics/")
        return 0
    if args.check:
        print(
            "readme: error: README.md's results differ from metrics/; run "
            "`python -m dllabs.readme` and commit README.md",
            file=sys.stderr,
        )
        return 1
    readme_path.write_text(new, encoding="utf-8")
    print("readme: README.md's results rewritten from metrics/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
