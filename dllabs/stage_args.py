"""The stages' argument parser: every input and output path comes from ``dvc.yaml``.

Stages declare their paths by name; :func:`parse_paths` turns ``--raw-images PATH`` style options
into ``Path`` attributes. Nothing has a default, so a path is written once, in ``dvc.yaml``.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def parse_paths(
    argv: list[str] | None,
    prog: str,
    doc: str | None,
    *,
    choices: dict[str, tuple[str, ...]] | None = None,
    **paths: str,
) -> argparse.Namespace:
    """Parse required ``--name PATH`` options; keyword names use ``_`` for the option's ``-``.

    ``choices`` adds required ``--name VALUE`` options limited to the values given (a stage that
    serves several labs, such as ``evaluate_classifier``, is told which one).
    """
    summary = (doc or "").strip().splitlines()[0] if doc else None
    parser = argparse.ArgumentParser(prog=f"python -m stages.{prog}", description=summary)
    for name, allowed in (choices or {}).items():
        parser.add_argument(f"--{name.replace('_', '-')}", choices=allowed, required=True)
    for name, help_text in paths.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=Path, required=True, help=help_text)
    return parser.parse_args(argv)
