"""Put on ``PYTHONPATH`` with ``DL_LABS_PARAM_READS=<file>`` set, it records which params each
stage process reads (``param_recorder`` beside it); every other process starts as usual.
Python imports ``sitecustomize`` at start-up, before ``-m stages.<name>`` runs."""

import os
import sys

_argv = getattr(sys, "orig_argv", [])
if os.environ.get("DL_LABS_PARAM_READS") and any(a.startswith("stages.") for a in _argv):
    from param_recorder import record

    record(os.environ["DL_LABS_PARAM_READS"])
