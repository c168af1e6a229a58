"""Peak memory of a command, measured, and bounded while it runs: how the hostile-input tests show
that a crafted file is refused in bounded memory rather than after allocating what it claims.

The peak is the kernel's own figure for the process (``os.wait4``'s ``ru_maxrss``), as
``benchmarks/streaming.py`` records it. A watchdog reads the resident set every 20 ms and kills
the process group past ``kill_at_mb``: a regression then fails its test quickly instead of
driving the machine into swap or the kernel's OOM killer (a crafted file once reached 23.5 GB).
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
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(
            cmd, cwd=cwd, env=full_env, stdout=out, stderr=err, text=True,
            start_new_session=True,
        )  # fmt: skip
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
        _, status, usage = os.wait4(process.pid, 0)
        finished.set()
        watchdog.join()
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Measured(
            returncode=process.returncode,
            stdout=out.read(),
            stderr=err.read(),
            peak_mb=usage.ru_maxrss / 1024,  # Linux: kilobytes
            killed=killed.is_set(),
        )


def python(*args: str) -> list[str]:
    """``python <args>`` with this interpreter (the venv's)."""
    return [sys.executable, *args]
