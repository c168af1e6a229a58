"""This process's place in a run: alone, or one of several training together.

JAX's distributed runtime is the record (one per process, set by
:func:`dllabs.training.cluster.join`); this module asks it rather than keeping a copy, so
nothing here can disagree with JAX. JAX is never imported here: a process that has not imported
it cannot have joined a cluster.
"""

from __future__ import annotations

import sys


def distributed() -> bool:
    """Whether this process joined a multi-process run (``jax.distributed.initialize``)."""
    jax = sys.modules.get("jax")
    return jax is not None and jax.distributed.is_initialized()


def is_primary() -> bool:
    """Whether this process writes outputs: alone, or process 0 of a multi-process run."""
    return not distributed() or sys.modules["jax"].process_index() == 0
