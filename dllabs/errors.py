"""One exception type for bad params or bad data, and the wrapper that reports it.

Stages raise :class:`LabError` with a message that names the param key or the file and what was
expected. :func:`stage_errors` turns it into a single ``error: ...`` line on stderr and exit code 1,
so users see the cause rather than a traceback; Ctrl-C gives one line and exit code 130.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager


class LabError(Exception):
    """A problem with the user's params or data, reported as one line (no traceback)."""


class ParamsError(LabError):
    """``params.yaml`` is missing, malformed, or fails the schema."""


class DataError(LabError):
    """A raw or processed data file is missing, corrupt, or not what the stage expects."""


def one_line(exc: BaseException, limit: int = 300) -> str:
    """A library's exception text folded onto one line and cut short, to quote inside ours."""
    return " ".join(str(exc).split())[:limit]


@contextmanager
def stage_errors(stage: str) -> Iterator[None]:
    """Run a stage body; report a :class:`LabError` as one line and exit non-zero."""
    try:
        yield
    except LabError as exc:
        message = " ".join(str(exc).split())  # always one line
        print(f"{stage}: error: {message}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:  # Ctrl-C: staged outputs are already discarded
        print(f"{stage}: interrupted; its outputs were left as they were", file=sys.stderr)
        sys.exit(130)
