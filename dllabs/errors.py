"""The exceptions for bad params (:class:`ParamsError`) and bad data (:class:`DataError`), both a
:class:`LabError`, and the wrapper that reports them.

Stages raise a :class:`LabError` with a message that names the param key or the file and what was
expected. :func:`stage_errors` turns it into a single ``error: ...`` line on stderr and exit code 1,
so users see the cause rather than a traceback; Ctrl-C gives one line and exit code 130.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

from dllabs.processes import distributed


class LabError(Exception):
    """A problem with the user's params or data, reported as one line (no traceback)."""


class ParamsError(LabError):
    """``params.yaml`` is missing, malformed, or fails the schema."""


class DataError(LabError):
    """A raw or processed data file is missing, corrupt, or not what the stage expects."""


def one_line(exc: BaseException, limit: int = 300) -> str:
    """A library's exception text folded onto one line and cut short, to quote inside ours."""
    return " ".join(str(exc).split())[:limit]


def os_error(exc: OSError, path: str | Path | None = None) -> str:
    """An operating-system error as ``path: reason (ENAME)``, ``path`` defaulting to the file the
    error names: "data/raw: No space left on device (ENOSPC)"."""
    where = path if path is not None else exc.filename
    reason = exc.strerror or one_line(exc) or type(exc).__name__
    code = f" ({errno.errorcode[exc.errno]})" if exc.errno in errno.errorcode else ""
    return f"{where}: {reason}{code}" if where is not None else f"{reason}{code}"


@contextmanager
def paths_shown_as(actual: str | Path, shown: str | Path) -> Iterator[None]:
    """Errors raised in the block name ``shown`` where they say ``actual``: a copy of the user's
    folder is reported as the folder they gave, so that the message points at their file."""
    try:
        yield
    except LabError as exc:
        raise type(exc)(str(exc).replace(str(actual), str(shown))) from None


@contextmanager
def stage_errors(stage: str) -> Iterator[None]:
    """Run a stage body; report a :class:`LabError` as one line and exit non-zero. An operating-
    system error (a full disk, a folder without write permission) is one line too, naming its
    file: the stage's outputs are already discarded (:func:`dllabs.outputs.staged_outputs`)."""
    try:
        yield
    except LabError as exc:
        message = " ".join(str(exc).split())  # always one line
        print(f"{stage}: error: {message}", file=sys.stderr)
        _exit(1)
    except OSError as exc:
        print(f"{stage}: error: {' '.join(os_error(exc).split())}", file=sys.stderr)
        _exit(1)
    except KeyboardInterrupt:  # Ctrl-C: staged outputs are already discarded
        print(f"{stage}: interrupted; its outputs were left as they were", file=sys.stderr)
        sys.exit(130)


def _exit(code: int) -> NoReturn:
    """``sys.exit``, except in a multi-process run: the other processes cannot finish without
    this one, and Python's exit would wait for them at JAX's shutdown barrier, then abort."""
    if distributed():
        sys.stderr.flush()
        sys.stdout.flush()
        os._exit(code)
    sys.exit(code)
