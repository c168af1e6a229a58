"""The ``dl-labs`` command (also ``python -m dllabs``): ``dl-labs predict <lab> ...``."""

from __future__ import annotations

import sys

USAGE = """usage: dl-labs predict LAB ...

  predict   predict with a lab's trained model on new data (dl-labs predict --help)
"""


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["predict"]:
        from dllabs.prediction.command import main as predict

        predict(argv[1:])
    elif argv[:1] in (["-h"], ["--help"]):
        print(USAGE, end="")
    else:
        print(USAGE, end="", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
