"""Peak memory of a command, measured, and bounded while it runs: how the hostile-input tests show
that a crafted file is refused in bounded memory rather than after allocating what it claims.

The peak is the kernel's own figure for the process (``os.wait4``'s ``ru_maxrss``), as
``benchmarks/streaming.py`` records it, taken by a small Python process that starts the command and
waits for it. Not by the test process itself: a child forked from it counts the test process's
resident set (pytest with NumPy, pandas and Pillow: about 200 MB) as its own until it runs the
command, so ``ru_maxrss`` would never show less. A watchdog reads the resident set every 20 ms
and kills the process group past ``kill_at_mb``: a regression then fails its test quickly instead
of driving the machine into swap or the kernel's OOM killer (a crafted file once reached 23.5 GB).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

# A test's command may not pass this however it fails: above every bound the tests assert.
KILL_AT_MB = 3072


@dataclass(frozen=True)
class Measured:
    """What the command printed, its exit status, and its peak resident set in MB."""

    returncode: int
    stdout: str
    stderr: str
    peak_mb: float
    killed: bool  # by the watchdog, past ``kill_at_mb``


def _rss_mb(pid: int) -> float:
    """The resident set of ``pid`` and of its children, in MB (Linux ``/proc``)."""
    total = 0.0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            with open(f"/proc/{current}/status", encoding="ascii") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) / 1024
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except (OSError, ValueError):
            continue
        pending += [int(child) for child in children]
    return total


def measure(
    cmd: list[str],
    cwd: str | Path | None = None,
    env: dict[str, str] | None = None,
    kill_at_mb: float = KILL_AT_MB,
    timeout: float = 600,
) -> Measured:
    """Run ``cmd`` to its end and return its output, exit status and peak memory.

    ``env`` adds to this process's environment. The peak is ``ru_maxrss`` of the command's own
    process: a command that starts another (a ``dvc`` call) is measured by its largest process.
    """
    full_env = {**os.environ, "PYTHONHASHSEED": "0", **(env or {})}
    killed = threading.Event()
    with (
        tempfile.TemporaryFile("w+") as out,
        tempfile.TemporaryFile("w+") as err,
        tempfile.NamedTemporaryFile("r") as peak,
    ):
        process = subprocess.Popen(
            [sys.executable, "-c", _WAITER, peak.name, *cmd],
            cwd=cwd,
            env=full_env,
            stdout=out,
            stderr=err,
            text=True,
            start_new_session=True,
        )
        finished = threading.Event()

        def watch() -> None:
            deadline = time.monotonic() + timeout
            while not finished.wait(0.02):
                if _rss_mb(process.pid) > kill_at_mb or time.monotonic() > deadline:
                    killed.set()
                    os.killpg(process.pid, signal.SIGKILL)
                    return

        watchdog = threading.Thread(target=watch, daemon=True)
        watchdog.start()
        process.wait()
        finished.set()
        watchdog.join()
        out.seek(0)
        err.seek(0)
        recorded = peak.read().strip()
        return Measured(
            returncode=process.returncode,
            stdout=out.read(),
            stderr=err.read(),
            peak_mb=int(recorded) / 1024 if recorded else float("nan"),  # Linux: kilobytes
            killed=killed.is_set(),
        )


# Started fresh (about 10 MB), it starts the command, waits for it, writes the command's
# ``ru_maxrss`` to the file named first and exits with the command's status.
_WAITER = """
import os, subprocess, sys
process = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(process.pid, 0)
with open(sys.argv[1], "w") as peak:
    peak.write(str(usage.ru_maxrss))
code = os.waitstatus_to_exitcode(status)
sys.exit(128 - code if code < 0 else code)
"""


def python(*args: str) -> list[str]:
    """``python <args>`` with this interpreter (the venv's)."""
    return [sys.executable, *args]
