"""Pipeline stages: one module per ``dvc.yaml`` stage, each with a ``main()``.

``dvc.yaml`` runs ``python -m stages.<name>`` and passes every input and output path on the
command line, so ``dvc.yaml`` alone shows the data flow.

Importing this package first sets the Keras backend from ``params.yaml``'s ``base.backend``
(:mod:`dllabs.training.backend`), before any stage module imports Keras, then joins the other
processes of a multi-process run when a launcher started several (:mod:`dllabs.training.cluster`):
both must happen before JAX starts. In a stage's own process it also keeps TensorFlow's start-up
notices off stderr, should the stage import TensorFlow, so that an error is the one line printed.
"""

import sys

from dllabs.errors import ParamsError
from dllabs.training.backend import quiet_tensorflow_start, select_backend
from dllabs.training.cluster import join


def _stage() -> str | None:
    """The stage this process runs (``python -m stages.<name>``), from its command line."""
    argv = getattr(sys, "orig_argv", [])
    module = argv[argv.index("-m") + 1] if "-m" in argv[:-1] else ""
    return module.removeprefix("stages.") if module.startswith("stages.") else None


if _stage() is not None:
    quiet_tensorflow_start()
try:
    join(select_backend(), stage=_stage())
except ParamsError as exc:
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(1)
