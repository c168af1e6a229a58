"""The ``dl-labs`` command (also ``python -m dllabs``): ``dl-labs predict <lab> ...`` and
``dl-labs tune <lab> ...``."""

from __future__ import annotations

import sys

USAGE = """usage: dl-labs {predict,tune} LAB ...

  predict   predict with a lab's trained model on new data (dl-labs predict --help)
  tune      search a lab's params with Optuna, every trial a DVC experiment (dl-labs tune --help)
"""


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["predict"]:
        from dllabs.prediction.command import main as predict

        predict(argv[1:])
    elif argv[:1] == ["tune"]:
        from dllabs.tuning.command import main as tune

        tune(argv[1:])
    elif argv[:1] in (["-h"], ["--help"]):
        print(USAGE, end="")
    else:
        print(USAGE, end="", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
