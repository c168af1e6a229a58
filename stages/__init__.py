"""Pipeline stages: one module per ``dvc.yaml`` stage, each with a ``main()``.

``dvc.yaml`` runs ``python -m stages.<name>`` and passes every input and output path on the
command line, so ``dvc.yaml`` alone shows the data flow.

Importing this package first sets the Keras backend from ``params.yaml``'s ``base.backend``
(:mod:`dllabs.backend`), before any stage module imports Keras.
"""

import sys

from dllabs.backend import select_backend
from dllabs.errors import ParamsError

try:
    select_backend()
except ParamsError as exc:
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(1)
