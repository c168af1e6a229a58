"""The repository under test and commands run in it (or in a copy of it): ``sh`` runs a command
with the venv first on ``PATH``, as ``make`` does; ``copy_repository`` copies what git tracks."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


DVC = [sys.executable, "-m", "dvc"]


def sh(
    cmd: list[str] | str,
    cwd: Path,
    check: bool = True,
    timeout: float | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """Run a command with the venv's ``bin`` first on PATH, as `make` does for DVC's workers.

    Output goes through files, not pipes, and only the command itself is waited for: a DVC queue
    worker it started lives on as a daemon holding the command's stdout, and waiting for the end
    of a pipe would then wait for that worker. Past ``timeout`` seconds the command and its
    children are killed and TimeoutExpired raised. ``env`` adds variables to the environment.
    """
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    env = {**os.environ, "PATH": path, **(env or {})}
    with tempfile.TemporaryFile("w+") as stdout, tempfile.TemporaryFile("w+") as stderr:
        process = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=env,
            stdout=stdout,
            stderr=stderr,
            text=True,
            shell=isinstance(cmd, str),
            executable="/bin/bash" if isinstance(cmd, str) else None,
            start_new_session=True,
        )
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise
        stdout.seek(0)
        stderr.seek(0)
        result = subprocess.CompletedProcess(cmd, process.returncode, stdout.read(), stderr.read())
    if check:
        shown = cmd if isinstance(cmd, str) else " ".join(cmd)
        assert result.returncode == 0, f"{shown} failed:\n{result.stdout}\n{result.stderr}"
    return result


def copy_repository(dest: Path) -> Path:
    """The repository's files that git would track (what a fresh clone or a DVC queue sees)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for name in listed:
        if (REPO / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    return dest


def copy_of(baseline: Path, dest: Path) -> Path:
    """A copy of a reproduced repository, its git history and DVC cache included."""
    shutil.copytree(baseline, dest, symlinks=True, dirs_exist_ok=True)
    return dest


def commit_all(root: Path, message: str) -> None:
    """``git add -A`` and commit, as a throwaway identity."""
    sh(["git", "add", "-A"], root)
    sh(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message], root)


def stop_queue_workers(root: Path) -> None:
    """Stop the DVC queue workers of the repository at ``root``, for good.

    `dvc queue stop` asks them through the queue's broker. A worker whose idle monitor died (a
    race in kombu's file broker, seen in CI) neither exits by itself nor always hears the
    request, and would outlive the tests: such a worker is killed by the pid it recorded.
    """
    sh([*DVC, "queue", "stop"], root, check=False, timeout=60)
    for pid_file in (root / ".dvc" / "tmp" / "exps" / "celery").glob("*.pid"):
        pid = pid_file.read_text().strip()
        command = Path(f"/proc/{pid}/cmdline")  # Linux: only a live worker, never a reused pid
        if pid.isdigit() and command.is_file() and b"queue-worker" in command.read_bytes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
